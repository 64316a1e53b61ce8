//! The mapping rule language: match alert fields, output techniques.
//!
//! A rule, in JSON or YAML:
//!
//! ```yaml
//! id: encoded-powershell
//! version: 3
//! title: Encoded PowerShell command line
//! author: detection-team
//! rationale: -enc hides the script; this is PowerShell execution.
//! evidence_pattern: process.cmd_line contains -enc
//! effective_date: 2026-01-15
//! confidence: 0.8
//! match:
//!   all:
//!     - field: process.file.path
//!       suffix: \powershell.exe
//!     - any:
//!         - { field: process.cmd_line, contains: [" -enc ", " -encodedcommand "] }
//!         - { field: process.cmd_line, regex: "-e(nc?)?\\s+[A-Za-z0-9+/=]{20,}" }
//!     - not: { field: user.name, in: [svc-deploy] }
//! techniques:
//!   - { id: T1059.001, tactic: execution }
//!   - { id: T1027 }
//! ```
//!
//! A condition is `all: [..]`, `any: [..]`, `not: <condition>` or a predicate
//! `{field, <operator>: operand, case_sensitive?}` with exactly one operator:
//! `equals` (text, number or boolean), `in` (list), `contains`, `prefix`,
//! `suffix` (text or list of texts: any of them), `regex`, `exists`
//! (boolean), `gt`, `gte`, `lt`, `lte` (numbers). Text comparisons ignore
//! case unless `case_sensitive: true` (Sigma matches case-insensitively, and
//! so do analysts' expectations). A field with several values (an array)
//! matches when any value does; a missing field matches only `exists: false`.
//! `exists` also sees objects and arrays: it is true when the field holds a
//! non-null value at or below it, so `null`, `{}` and `[]` count as absent
//! ([`crate::alert::NormalizedAlert::has`]).
//! Field paths are the alert's dotted paths, or `alert.*` for the normalized
//! attributes ([`crate::alert::NormalizedAlert::field`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use chrono::NaiveDate;
use regex::{Regex, RegexBuilder};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};
use taxonomy::{Release, TacticId, TechniqueId};

use crate::alert::{FieldRef, FieldSelection, NormalizedAlert};
use crate::candidate::{Evidence, validate_target};
use crate::compat::{RefStatus, check_reference};
use crate::confidence::Confidence;

/// A parsed, validated mapping rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Stable id (`sigma:<uuid>` for Sigma-derived rules).
    pub id: String,
    /// Version, from 1; each change is a new version.
    pub version: u32,
    /// Title.
    pub title: String,
    /// Author.
    pub author: String,
    /// Why the match means these techniques.
    pub rationale: String,
    /// The evidence the rule looks for, in words.
    pub evidence_pattern: Option<String>,
    /// From when the rule applies.
    pub effective_date: Option<NaiveDate>,
    /// Confidence of the candidates it produces.
    pub confidence: Confidence,
    /// The condition.
    #[serde(rename = "match")]
    pub condition: Condition,
    /// What a match maps to.
    pub techniques: Vec<RuleTechnique>,
}

/// One output of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTechnique {
    /// The technique, as specific as the rule says.
    pub id: TechniqueId,
    /// The tactic, validated against the release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tactic: Option<TacticId>,
}

/// A condition over an alert's fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every sub-condition holds (an empty list holds).
    All(Vec<Condition>),
    /// Some sub-condition holds (an empty list does not).
    Any(Vec<Condition>),
    /// The sub-condition does not hold.
    Not(Box<Condition>),
    /// A field predicate.
    Predicate(Predicate),
}

/// A test on one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// The dotted field path.
    pub field: String,
    /// The operator and operand.
    pub op: Op,
    /// Compare text case-sensitively.
    pub case_sensitive: bool,
}

/// A predicate's operator and operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Equal to a text, number or boolean.
    Equals(Operand),
    /// Equal to one of these.
    In(Vec<Operand>),
    /// Contains one of these texts.
    Contains(Vec<Needle>),
    /// Starts with one of these texts.
    Prefix(Vec<Needle>),
    /// Ends with one of these texts.
    Suffix(Vec<Needle>),
    /// Matches the regular expression (anywhere in the value).
    Regex(Pattern),
    /// The field is present (true) or absent (false).
    Exists(bool),
    /// Numerically greater than.
    Gt(f64),
    /// Numerically greater than or equal.
    Gte(f64),
    /// Numerically less than.
    Lt(f64),
    /// Numerically less than or equal.
    Lte(f64),
}

/// A text operand with its case-folded form computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needle {
    /// As written.
    pub text: String,
    folded: String,
}

impl Needle {
    fn new(text: String) -> Self {
        let folded = text.to_lowercase();
        Needle { text, folded }
    }
}

/// An `equals` / `in` operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Text.
    Text(Needle),
    /// A number: matches numeric values and text that parses to it.
    Number(f64),
    /// A boolean: matches booleans and the texts `true` / `false`.
    Bool(bool),
}

/// A compiled regular expression that compares and prints as its source.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The expression as written.
    pub source: String,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.regex.as_str() == other.regex.as_str()
    }
}

/// Why a rule is refused. `path` points at the bad part (`match.all[1].regex`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The text is neither JSON nor YAML.
    #[error("rule is not valid JSON or YAML: {0}")]
    Syntax(String),
    /// A part of the rule is missing or malformed.
    #[error("at `{path}`: {reason}")]
    Invalid {
        /// Where.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A technique the release does not allow.
    #[error("at `{path}`: technique {technique} refused: {reason}")]
    Technique {
        /// Where.
        path: String,
        /// The technique as written.
        technique: String,
        /// Unknown, revoked (with replacement), deprecated, or a tactic problem.
        reason: String,
    },
}

impl RuleError {
    fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        RuleError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Parses a rule written in JSON or YAML and validates it against `release`.
pub fn parse_rule(text: &str, release: &Release) -> Result<Rule, RuleError> {
    // YAML 1.2 is a superset of JSON, so one parser reads both.
    let value: Value = serde_yaml::from_str(text).map_err(|e| RuleError::Syntax(e.to_string()))?;
    parse_rule_value(&value, release)
}

/// Validates a rule already parsed into a JSON value.
pub fn parse_rule_value(value: &Value, release: &Release) -> Result<Rule, RuleError> {
    let obj = value
        .as_object()
        .ok_or_else(|| RuleError::invalid("", "a rule must be a mapping/object"))?;
    const KNOWN: [&str; 10] = [
        "id",
        "version",
        "title",
        "author",
        "rationale",
        "evidence_pattern",
        "effective_date",
        "confidence",
        "match",
        "techniques",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(RuleError::invalid(
            k.as_str(),
            format!("unknown key (expected one of: {})", KNOWN.join(", ")),
        ));
    }

    let id = required_text(obj, "id")?;
    let version = match obj.get("version") {
        None => return Err(RuleError::invalid("version", "missing (a number from 1)")),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
            .ok_or_else(|| RuleError::invalid("version", "must be a whole number from 1"))?
            as u32,
    };
    let title = required_text(obj, "title")?;
    let author = required_text(obj, "author")?;
    let rationale = required_text(obj, "rationale")?;
    let evidence_pattern = optional_text(obj, "evidence_pattern")?;
    let effective_date = match optional_text(obj, "effective_date")? {
        None => None,
        Some(s) => Some(NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|e| {
            RuleError::invalid(
                "effective_date",
                format!("`{s}` is not a YYYY-MM-DD date: {e}"),
            )
        })?),
    };
    let confidence = obj
        .get("confidence")
        .ok_or_else(|| RuleError::invalid("confidence", "missing (a number in 0..=1)"))?
        .as_f64()
        .ok_or_else(|| RuleError::invalid("confidence", "must be a number in 0..=1"))
        .and_then(|c| {
            Confidence::new(c).map_err(|e| RuleError::invalid("confidence", e.to_string()))
        })?;
    let condition = parse_condition(
        obj.get("match")
            .ok_or_else(|| RuleError::invalid("match", "missing (the condition)"))?,
        "match",
    )?;
    let techniques = parse_techniques(obj.get("techniques"), release)?;

    Ok(Rule {
        id,
        version,
        title,
        author,
        rationale,
        evidence_pattern,
        effective_date,
        confidence,
        condition,
        techniques,
    })
}

fn required_text(obj: &Map<String, Value>, key: &str) -> Result<String, RuleError> {
    optional_text(obj, key)?.ok_or_else(|| RuleError::invalid(key, "missing or empty"))
}

fn optional_text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, RuleError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(RuleError::invalid(key, "must be text")),
    }
}

fn parse_techniques(
    value: Option<&Value>,
    release: &Release,
) -> Result<Vec<RuleTechnique>, RuleError> {
    let items = value
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            RuleError::invalid("techniques", "must be a non-empty list of {id, tactic?}")
        })?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("techniques[{i}]");
        // `- T1059.001` is accepted as shorthand for `- {id: T1059.001}`.
        let (raw, tactic) = match item {
            Value::String(s) => (s.as_str(), None),
            Value::Object(m) => {
                // A misspelt key (`tactc`, a per-technique `confidance`)
                // would otherwise be dropped without a word.
                if let Some(k) = m.keys().find(|k| !matches!(k.as_str(), "id" | "tactic")) {
                    return Err(RuleError::invalid(
                        format!("{path}.{k}"),
                        "unknown key (a technique has `id` and an optional `tactic`)",
                    ));
                }
                let raw = m.get("id").and_then(Value::as_str).ok_or_else(|| {
                    RuleError::invalid(format!("{path}.id"), "missing technique id")
                })?;
                let tactic = match m.get("tactic") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(t.as_str()),
                    Some(_) => {
                        return Err(RuleError::invalid(format!("{path}.tactic"), "must be text"));
                    }
                };
                (raw, tactic)
            }
            _ => return Err(RuleError::invalid(path, "must be {id, tactic?} or an id")),
        };
        let refuse = |reason: String| RuleError::Technique {
            path: format!("{path}.id"),
            technique: raw.to_string(),
            reason,
        };
        let id = TechniqueId::parse(raw).map_err(|e| refuse(e.to_string()))?;
        match check_reference(id.as_str(), release) {
            RefStatus::Live => {}
            other => return Err(refuse(other.describe(release))),
        }
        let tactic = validate_target(release, &id, tactic).map_err(|e| RuleError::Technique {
            path: format!("{path}.tactic"),
            technique: raw.to_string(),
            reason: e.to_string(),
        })?;
        out.push(RuleTechnique { id, tactic });
    }
    Ok(out)
}

const OPERATORS: [&str; 11] = [
    "equals", "in", "contains", "prefix", "suffix", "regex", "exists", "gt", "gte", "lt", "lte",
];

fn parse_condition(value: &Value, path: &str) -> Result<Condition, RuleError> {
    let obj = value.as_object().ok_or_else(|| {
        RuleError::invalid(
            path,
            "a condition must be a mapping: all, any, not or a predicate",
        )
    })?;
    let list = |key: &str, items: &Value| -> Result<Vec<Condition>, RuleError> {
        let items = items
            .as_array()
            .ok_or_else(|| RuleError::invalid(format!("{path}.{key}"), "must be a list"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, c)| parse_condition(c, &format!("{path}.{key}[{i}]")))
            .collect()
    };
    let combinators: Vec<&str> = ["all", "any", "not"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if !combinators.is_empty() {
        if let Some(extra) = obj.keys().find(|k| k.as_str() != combinators[0]) {
            return Err(RuleError::invalid(
                format!("{path}.{extra}"),
                format!(
                    "unknown key beside `{}`, which must be the only key of its mapping",
                    combinators[0]
                ),
            ));
        }
        let (key, inner) = obj
            .iter()
            .next()
            .ok_or_else(|| RuleError::invalid(path, "empty"))?;
        return match key.as_str() {
            "all" => Ok(Condition::All(list("all", inner)?)),
            "any" => Ok(Condition::Any(list("any", inner)?)),
            _ => Ok(Condition::Not(Box::new(parse_condition(
                inner,
                &format!("{path}.not"),
            )?))),
        };
    }
    parse_predicate(obj, path).map(Condition::Predicate)
}

fn parse_predicate(obj: &Map<String, Value>, path: &str) -> Result<Predicate, RuleError> {
    let field = match obj.get("field") {
        Some(Value::String(f)) if !f.trim().is_empty() => f.trim().to_string(),
        Some(_) => {
            return Err(RuleError::invalid(
                format!("{path}.field"),
                "must be a dotted path",
            ));
        }
        None => {
            return Err(RuleError::invalid(
                path,
                "expected all, any, not, or a predicate with `field`",
            ));
        }
    };
    let case_sensitive = match obj.get("case_sensitive") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(RuleError::invalid(
                format!("{path}.case_sensitive"),
                "must be true or false",
            ));
        }
    };
    let mut ops = obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "field" | "case_sensitive"));
    // Beside a known operator, any other key is a mistake to name (a
    // misspelt `case_sensitve` must not read as "two operators").
    let has_operator = obj.keys().any(|k| OPERATORS.contains(&k.as_str()));
    if let Some(k) = ops
        .clone()
        .find(|k| has_operator && !OPERATORS.contains(&k.as_str()))
    {
        return Err(RuleError::invalid(
            format!("{path}.{k}"),
            format!(
                "unknown key (a predicate has `field`, `case_sensitive` and one operator of: {})",
                OPERATORS.join(", ")
            ),
        ));
    }
    let (Some(op_key), None) = (ops.next(), ops.next()) else {
        return Err(RuleError::invalid(
            path,
            format!(
                "a predicate needs exactly one operator of: {}",
                OPERATORS.join(", ")
            ),
        ));
    };
    let op_path = format!("{path}.{op_key}");
    let operand = &obj[op_key.as_str()];
    let number = || {
        operand
            .as_f64()
            .ok_or_else(|| RuleError::invalid(&op_path, "must be a number"))
    };
    let op = match op_key.as_str() {
        "equals" => Op::Equals(parse_operand(operand, &op_path)?),
        "in" => {
            let items = operand
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| RuleError::invalid(&op_path, "must be a non-empty list"))?;
            let parsed = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_operand(v, &format!("{op_path}[{i}]")))
                .collect::<Result<_, _>>()?;
            Op::In(parsed)
        }
        "contains" => Op::Contains(parse_needles(operand, &op_path)?),
        "prefix" => Op::Prefix(parse_needles(operand, &op_path)?),
        "suffix" => Op::Suffix(parse_needles(operand, &op_path)?),
        "regex" => {
            let source = operand
                .as_str()
                .ok_or_else(|| RuleError::invalid(&op_path, "must be a regular expression text"))?;
            let regex = RegexBuilder::new(source)
                .case_insensitive(!case_sensitive)
                .build()
                .map_err(|e| {
                    RuleError::invalid(&op_path, format!("bad regular expression: {e}"))
                })?;
            Op::Regex(Pattern {
                source: source.to_string(),
                regex,
            })
        }
        "exists" => Op::Exists(
            operand
                .as_bool()
                .ok_or_else(|| RuleError::invalid(&op_path, "must be true or false"))?,
        ),
        "gt" => Op::Gt(number()?),
        "gte" => Op::Gte(number()?),
        "lt" => Op::Lt(number()?),
        "lte" => Op::Lte(number()?),
        other => {
            return Err(RuleError::invalid(
                format!("{path}.{other}"),
                format!(
                    "unknown operator (expected one of: {})",
                    OPERATORS.join(", ")
                ),
            ));
        }
    };
    Ok(Predicate {
        field,
        op,
        case_sensitive,
    })
}

fn parse_operand(value: &Value, path: &str) -> Result<Operand, RuleError> {
    match value {
        Value::String(s) => Ok(Operand::Text(Needle::new(s.clone()))),
        Value::Number(n) => n
            .as_f64()
            .map(Operand::Number)
            .ok_or_else(|| RuleError::invalid(path, "number out of range")),
        Value::Bool(b) => Ok(Operand::Bool(*b)),
        _ => Err(RuleError::invalid(
            path,
            "must be a text, number or boolean",
        )),
    }
}

fn parse_needles(value: &Value, path: &str) -> Result<Vec<Needle>, RuleError> {
    let texts: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .ok_or_else(|| RuleError::invalid(format!("{path}[{i}]"), "must be text"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(RuleError::invalid(
                path,
                "must be a text or a list of texts",
            ));
        }
    };
    if texts.is_empty() || texts.iter().any(|t| t.is_empty()) {
        return Err(RuleError::invalid(
            path,
            "needs at least one non-empty text",
        ));
    }
    Ok(texts
        .into_iter()
        .map(|t| Needle::new(t.to_string()))
        .collect())
}

// ---------------------------------------------------------------- writing back

impl Condition {
    /// The condition in the rule language's JSON form (what [`parse_rule`] reads).
    pub fn to_value(&self) -> Value {
        match self {
            Condition::All(items) => {
                json!({ "all": items.iter().map(Self::to_value).collect::<Vec<_>>() })
            }
            Condition::Any(items) => {
                json!({ "any": items.iter().map(Self::to_value).collect::<Vec<_>>() })
            }
            Condition::Not(inner) => json!({ "not": inner.to_value() }),
            Condition::Predicate(p) => {
                let mut m = Map::new();
                m.insert("field".into(), Value::String(p.field.clone()));
                let (key, operand) = p.op.to_parts();
                m.insert(key.into(), operand);
                if p.case_sensitive {
                    m.insert("case_sensitive".into(), Value::Bool(true));
                }
                Value::Object(m)
            }
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl Operand {
    /// The operand as evidence shows it (text unquoted).
    fn as_text(&self) -> String {
        match self {
            Operand::Text(n) => n.text.clone(),
            Operand::Number(x) => x.to_string(),
            Operand::Bool(b) => b.to_string(),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Operand::Text(n) => Value::String(n.text.clone()),
            Operand::Number(x) => json!(x),
            Operand::Bool(b) => Value::Bool(*b),
        }
    }
}

impl Op {
    fn to_parts(&self) -> (&'static str, Value) {
        let texts = |ns: &[Needle]| {
            Value::Array(ns.iter().map(|n| Value::String(n.text.clone())).collect())
        };
        match self {
            Op::Equals(o) => ("equals", o.to_value()),
            Op::In(os) => (
                "in",
                Value::Array(os.iter().map(Operand::to_value).collect()),
            ),
            Op::Contains(ns) => ("contains", texts(ns)),
            Op::Prefix(ns) => ("prefix", texts(ns)),
            Op::Suffix(ns) => ("suffix", texts(ns)),
            Op::Regex(p) => ("regex", Value::String(p.source.clone())),
            Op::Exists(b) => ("exists", Value::Bool(*b)),
            Op::Gt(x) => ("gt", json!(x)),
            Op::Gte(x) => ("gte", json!(x)),
            Op::Lt(x) => ("lt", json!(x)),
            Op::Lte(x) => ("lte", json!(x)),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, operand) = self.op.to_parts();
        write!(f, "{} {key} {operand}", self.field)
    }
}

impl Rule {
    /// The rule in the JSON form [`parse_rule`] reads.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// What the rule maps (see [`mapping_content`]).
    pub fn mapping_content(&self) -> Value {
        mapping_content(&self.to_value())
    }
}

/// What a rule maps, read from its JSON definition (as [`Rule::to_value`]
/// writes it and the store keeps it): its `match`, its `techniques` with
/// their tactics, and its `confidence`. Two definitions with the same
/// content map every alert alike; the rest (title, author, rationale,
/// evidence pattern, dates) describes the rule. A Sigma re-import compares
/// this rather than the rule's dates, which authors often leave alone when
/// they change a tag. The order of the techniques does not count: each
/// output is a candidate of its own.
pub fn mapping_content(definition: &Value) -> Value {
    let mut techniques: Vec<Value> = match definition.get("techniques") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    techniques.sort_by_cached_key(Value::to_string);
    json!({
        "match": definition.get("match"),
        "techniques": techniques,
        "confidence": definition.get("confidence"),
    })
}

// ---------------------------------------------------------------- evaluation

impl Condition {
    /// Evaluates the condition; on a match, answers the evidence of the
    /// predicates that made it hold (none from inside a `not`).
    pub fn evaluate(&self, alert: &NormalizedAlert) -> Option<Vec<Evidence>> {
        let mut evidence = Vec::new();
        self.eval_into(alert, &mut evidence).then_some(evidence)
    }

    /// Adds every path this condition tests that is not a normalized
    /// attribute (those do not come from the field map).
    fn raw_fields_into(&self, out: &mut BTreeSet<String>) {
        match self {
            Condition::All(items) | Condition::Any(items) => {
                items.iter().for_each(|c| c.raw_fields_into(out))
            }
            Condition::Not(inner) => inner.raw_fields_into(out),
            Condition::Predicate(p) => {
                if !NormalizedAlert::is_attribute(&p.field) {
                    out.insert(p.field.clone());
                }
            }
        }
    }

    fn eval_into(&self, alert: &NormalizedAlert, evidence: &mut Vec<Evidence>) -> bool {
        match self {
            Condition::All(items) => {
                let mark = evidence.len();
                let ok = items.iter().all(|c| c.eval_into(alert, evidence));
                if !ok {
                    evidence.truncate(mark);
                }
                ok
            }
            Condition::Any(items) => items.iter().any(|c| {
                let mark = evidence.len();
                let ok = c.eval_into(alert, evidence);
                if !ok {
                    evidence.truncate(mark);
                }
                ok
            }),
            Condition::Not(inner) => !inner.eval_into(alert, &mut Vec::new()),
            Condition::Predicate(p) => match p.matches(alert) {
                Some(e) => {
                    evidence.push(e);
                    true
                }
                None => false,
            },
        }
    }
}

impl Predicate {
    /// Tests the predicate; on a match, the evidence (field, value, operand).
    pub fn matches(&self, alert: &NormalizedAlert) -> Option<Evidence> {
        let field = alert.field(&self.field);
        if let Op::Exists(want) = self.op {
            // An object or array counts when it holds a value; its evidence
            // value stays empty rather than dumping the subtree.
            let present = alert.has(&self.field);
            return (present == want).then(|| Evidence {
                field: self.field.clone(),
                value: match &field {
                    FieldRef::One(s) => s.to_string(),
                    FieldRef::Many(vs) => vs
                        .first()
                        .map(|v| v.as_text().into_owned())
                        .unwrap_or_default(),
                    FieldRef::Missing => String::new(),
                },
                matched: if want { "exists" } else { "absent" }.into(),
            });
        }
        let hit = |text: &str, number: Option<f64>| -> Option<String> { self.test(text, number) };
        let (value, matched) = match field {
            FieldRef::Missing => return None,
            FieldRef::One(s) => {
                let number = s.trim().parse().ok();
                let matched = hit(&s, number)?;
                (s.into_owned(), matched)
            }
            FieldRef::Many(values) => values.iter().find_map(|v| {
                let text = v.as_text();
                hit(&text, v.as_number()).map(|m| (text.into_owned(), m))
            })?,
        };
        Some(Evidence {
            field: self.field.clone(),
            value,
            matched,
        })
    }

    /// Tests one value; answers the operand that matched.
    fn test(&self, text: &str, number: Option<f64>) -> Option<String> {
        let folded;
        let hay: &str = if self.case_sensitive {
            text
        } else {
            folded = text.to_lowercase();
            &folded
        };
        let case_sensitive = self.case_sensitive;
        fn pick(n: &Needle, case_sensitive: bool) -> &str {
            if case_sensitive { &n.text } else { &n.folded }
        }
        let operand_hit = |o: &Operand| -> bool {
            match o {
                Operand::Text(n) => hay == pick(n, case_sensitive),
                Operand::Number(x) => number == Some(*x),
                Operand::Bool(b) => hay.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
            }
        };
        let first = |ns: &[Needle], f: &dyn Fn(&str) -> bool| {
            ns.iter()
                .find(|n| f(pick(n, case_sensitive)))
                .map(|n| n.text.clone())
        };
        match &self.op {
            Op::Equals(o) => operand_hit(o).then(|| o.as_text()),
            Op::In(os) => os.iter().find(|o| operand_hit(o)).map(Operand::as_text),
            Op::Contains(ns) => first(ns, &|n| hay.contains(n)),
            Op::Prefix(ns) => first(ns, &|n| hay.starts_with(n)),
            Op::Suffix(ns) => first(ns, &|n| hay.ends_with(n)),
            Op::Regex(p) => p.regex.find(text).map(|m| m.as_str().to_string()),
            Op::Exists(_) => None,
            Op::Gt(x) => number.filter(|n| n > x).map(|_| format!("> {x}")),
            Op::Gte(x) => number.filter(|n| n >= x).map(|_| format!(">= {x}")),
            Op::Lt(x) => number.filter(|n| n < x).map(|_| format!("< {x}")),
            Op::Lte(x) => number.filter(|n| n <= x).map(|_| format!("<= {x}")),
        }
    }
}

// ---------------------------------------------------------------- rule set

/// The field whose equality the rule set indexes.
pub const ANALYTIC_FIELD: &str = "alert.analytic_uid";

/// A set of rules indexed for evaluation.
///
/// Rules that require `alert.analytic_uid` to equal (or be `in`) given
/// values, at the top or as a direct child of a top-level `all`, are found
/// through a hash map from the case-folded value; every other rule is tried
/// on every alert. Sigma-derived rules are all of the first kind, so an
/// alert costs one hash lookup plus the general rules.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_analytic: HashMap<String, Vec<usize>>,
    general: Vec<usize>,
    /// The raw field paths some rule tests.
    raw_fields: BTreeSet<String>,
}

/// A rule that matched an alert, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMatch<'r> {
    /// The rule.
    pub rule: &'r Rule,
    /// What matched.
    pub evidence: Vec<Evidence>,
}

impl RuleSet {
    /// Indexes the rules. A later rule with the same id replaces an earlier one.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut set = RuleSet::default();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for rule in rules {
            match by_id.get(&rule.id) {
                Some(&i) => set.rules[i] = rule,
                None => {
                    by_id.insert(rule.id.clone(), set.rules.len());
                    set.rules.push(rule);
                }
            }
        }
        for (i, rule) in set.rules.iter().enumerate() {
            rule.condition.raw_fields_into(&mut set.raw_fields);
            match analytic_keys(&rule.condition) {
                Some(keys) => keys
                    .into_iter()
                    .for_each(|k| set.by_analytic.entry(k).or_default().push(i)),
                None => set.general.push(i),
            }
        }
        set
    }

    /// The rules, in the order given (later duplicates replaced in place).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The raw fields the rules read: decoding an alert for these rules
    /// needs no other field in its field map.
    pub fn field_selection(&self) -> FieldSelection {
        FieldSelection::Only(self.raw_fields.clone())
    }

    /// Number of rules found through the analytic-uid index.
    pub fn indexed(&self) -> usize {
        self.rules.len() - self.general.len()
    }

    /// Every rule that matches the alert, in rule order.
    pub fn evaluate<'r>(&'r self, alert: &NormalizedAlert) -> Vec<RuleMatch<'r>> {
        let mut hits: Vec<usize> = Vec::new();
        if let Some(uid) = &alert.analytic_uid
            && let Some(found) = self.by_analytic.get(&uid.to_lowercase())
        {
            hits.extend(found);
        }
        hits.extend(&self.general);
        hits.sort_unstable();
        hits.dedup();
        hits.into_iter()
            .filter_map(|i| {
                let rule = &self.rules[i];
                rule.condition
                    .evaluate(alert)
                    .map(|evidence| RuleMatch { rule, evidence })
            })
            .collect()
    }
}

/// The case-folded analytic uids a rule requires, when it requires one.
fn analytic_keys(condition: &Condition) -> Option<Vec<String>> {
    let from_predicate = |p: &Predicate| -> Option<Vec<String>> {
        if p.field != ANALYTIC_FIELD {
            return None;
        }
        let text = |o: &Operand| match o {
            Operand::Text(n) => Some(n.folded.clone()),
            _ => None,
        };
        match &p.op {
            Op::Equals(o) => text(o).map(|k| vec![k]),
            Op::In(os) => os.iter().map(text).collect(),
            _ => None,
        }
    };
    match condition {
        Condition::Predicate(p) => from_predicate(p),
        Condition::All(items) => items.iter().find_map(|c| match c {
            Condition::Predicate(p) => from_predicate(p),
            _ => None,
        }),
        _ => None,
    }
}

impl Condition {
    /// `alert.analytic_uid equals <uid>` (case-insensitive): the condition of
    /// rules derived from a detection rule pack such as Sigma.
    pub fn analytic_uid_equals(uid: &str) -> Condition {
        Condition::Predicate(Predicate {
            field: ANALYTIC_FIELD.to_string(),
            op: Op::Equals(Operand::Text(Needle::new(uid.to_string()))),
            case_sensitive: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::decode_alert;
    use crate::candidate::tests::tiny_release;

    const RULE: &str = r#"
id: encoded-powershell
version: 3
title: Encoded PowerShell command line
author: detection-team
rationale: -enc hides the script; this is PowerShell execution.
evidence_pattern: process.cmd_line contains -enc
effective_date: 2026-01-15
confidence: 0.8
match:
  all:
    - field: process.file.path
      suffix: \powershell.exe
    - any:
        - { field: process.cmd_line, contains: [" -enc ", " -encodedcommand "] }
        - { field: process.cmd_line, regex: "-e(nc?)?\\s+[A-Za-z0-9+/=]{20,}" }
    - not: { field: alert.user, in: [svc-deploy] }
techniques:
  - { id: T1059.001, tactic: execution }
  - T1059
"#;

    fn alert(cmd: &str, user: &str, pid: serde_json::Value) -> NormalizedAlert {
        decode_alert(&json!({
            "uid": "a-1", "title": "t", "user": user,
            "fields": {"process": {
                "cmd_line": cmd,
                "file": {"path": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\PowerShell.exe"},
                "pid": pid,
                "tags": ["a", "B"]
            }}
        }))
        .unwrap()
    }

    fn predicate(yaml: &str) -> Condition {
        parse_condition(&serde_yaml::from_str::<Value>(yaml).unwrap(), "match").unwrap()
    }

    fn err(text: &str) -> RuleError {
        parse_rule(text, &tiny_release()).unwrap_err()
    }

    #[test]
    fn a_full_rule_parses_and_round_trips() {
        let r = tiny_release();
        let rule = parse_rule(RULE, &r).unwrap();
        assert_eq!(rule.id, "encoded-powershell");
        assert_eq!(rule.version, 3);
        assert_eq!(rule.effective_date, NaiveDate::from_ymd_opt(2026, 1, 15));
        assert_eq!(rule.confidence.value(), 0.8);
        let outputs: Vec<(String, Option<String>)> = rule
            .techniques
            .iter()
            .map(|t| (t.id.to_string(), t.tactic.as_ref().map(|t| t.to_string())))
            .collect();
        assert_eq!(
            outputs,
            vec![
                ("T1059.001".into(), Some("TA0002".into())),
                ("T1059".into(), None)
            ]
        );
        // What we write back, we read back: the JSON form is a valid rule too.
        let json_text = rule.to_value().to_string();
        assert_eq!(parse_rule(&json_text, &r).unwrap(), rule);
    }

    #[test]
    fn the_rule_matches_with_evidence() {
        let rule = parse_rule(RULE, &tiny_release()).unwrap();
        let hit = alert(
            "powershell.exe -enc SQBFAFgAIABoAGkAZABkAGUAbgA=",
            "alice",
            json!(1),
        );
        let evidence = rule.condition.evaluate(&hit).unwrap();
        let fields: Vec<(&str, &str)> = evidence
            .iter()
            .map(|e| (e.field.as_str(), e.matched.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("process.file.path", "\\powershell.exe"),
                ("process.cmd_line", " -enc ")
            ]
        );
        // Excluded user: the `not` branch fails the rule.
        let excluded = alert(
            "powershell.exe -enc SQBFAFgAIABoAGkAZABkAGUAbgA=",
            "SVC-deploy",
            json!(1),
        );
        assert_eq!(rule.condition.evaluate(&excluded), None);
        // No encoded command.
        assert_eq!(
            rule.condition
                .evaluate(&alert("powershell.exe -nop", "alice", json!(1))),
            None
        );
        // The regex branch alone.
        let regex_only = alert(
            "powershell -e SQBFAFgAIABoAGkAZABkAGUAbgA=",
            "alice",
            json!(1),
        );
        let ev = rule.condition.evaluate(&regex_only).unwrap();
        assert_eq!(ev[1].matched, "-e SQBFAFgAIABoAGkAZABkAGUAbgA=");
    }

    #[test]
    fn every_operator() {
        let a = alert("Net User /add", "alice", json!("42"));
        let holds = |yaml: &str| predicate(yaml).evaluate(&a).is_some();
        assert!(holds("{field: process.cmd_line, equals: net user /add}"));
        assert!(!holds(
            "{field: process.cmd_line, equals: net user /add, case_sensitive: true}"
        ));
        assert!(holds(
            "{field: process.cmd_line, equals: Net User /add, case_sensitive: true}"
        ));
        assert!(holds("{field: process.cmd_line, in: [x, NET USER /ADD]}"));
        assert!(holds("{field: process.cmd_line, contains: USER}"));
        assert!(!holds(
            "{field: process.cmd_line, contains: USER, case_sensitive: true}"
        ));
        assert!(holds("{field: process.cmd_line, prefix: [foo, net]}"));
        assert!(holds("{field: process.cmd_line, suffix: /ADD}"));
        assert!(holds("{field: process.cmd_line, regex: '^net\\s+user'}"));
        assert!(!holds(
            "{field: process.cmd_line, regex: '^net\\s+user', case_sensitive: true}"
        ));
        assert!(holds("{field: process.cmd_line, exists: true}"));
        assert!(holds("{field: process.nothing, exists: false}"));
        assert!(!holds("{field: process.nothing, exists: true}"));
        assert!(!holds("{field: process.nothing, contains: x}"));
        // Numbers compare numerically, also when the alert holds them as text.
        assert!(holds("{field: process.pid, gt: 41}"));
        assert!(holds("{field: process.pid, gte: 42}"));
        assert!(!holds("{field: process.pid, lt: 42}"));
        assert!(holds("{field: process.pid, lte: 42}"));
        assert!(holds("{field: process.pid, equals: 42}"));
        assert!(holds("{field: process.pid, equals: '42'}"));
        // Multi-valued fields: any value.
        assert!(holds("{field: process.tags, equals: b}"));
        assert!(!holds("{any: []}"));
        assert!(holds("{all: []}"));
        assert!(holds("{not: {field: process.tags, equals: c}}"));
        assert!(holds("{field: alert.title, equals: t}"));
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        let bad_regex = RULE.replace("regex: \"-e(nc?)?", "regex: \"-e(nc?");
        assert_eq!(
            path_of(&err(&bad_regex)),
            "match.all[1].any[1].regex",
            "{}",
            err(&bad_regex)
        );
        let bad_op = RULE.replace("suffix:", "endswith:");
        assert_eq!(path_of(&err(&bad_op)), "match.all[0].endswith");
        let two_ops = RULE.replace(
            "suffix: \\powershell.exe",
            "suffix: \\powershell.exe\n      prefix: x",
        );
        assert_eq!(path_of(&err(&two_ops)), "match.all[0]");
        let no_field = RULE.replace("- not: { field: alert.user,", "- not: { name: alert.user,");
        assert_eq!(path_of(&err(&no_field)), "match.all[2].not");
        assert_eq!(
            path_of(&err(&RULE.replace("version: 3", "version: 0"))),
            "version"
        );
        assert_eq!(
            path_of(&err(&RULE.replace("confidence: 0.8", "confidence: 1.8"))),
            "confidence"
        );
        assert_eq!(
            path_of(&err(&RULE.replace("author: detection-team\n", ""))),
            "author"
        );
        assert_eq!(path_of(&err(&RULE.replace("title:", "titel:"))), "titel");
        assert_eq!(
            path_of(&err(&RULE.replace(
                "effective_date: 2026-01-15",
                "effective_date: 15/01/2026"
            ))),
            "effective_date"
        );
        assert!(matches!(err("{ not yaml"), RuleError::Syntax(_)));
    }

    #[test]
    fn misspelt_keys_are_named_wherever_they_are() {
        let cases = [
            // Top level.
            (
                RULE.replace("confidence: 0.8", "confidance: 0.8"),
                "confidance",
            ),
            // Beside the right spelling.
            (
                RULE.replace("confidence: 0.8", "confidence: 0.8\nconfidance: 0.9"),
                "confidance",
            ),
            // In a technique.
            (
                RULE.replace(
                    "{ id: T1059.001, tactic: execution }",
                    "{ id: T1059.001, tactc: execution }",
                ),
                "techniques[0].tactc",
            ),
            (
                RULE.replace(
                    "{ id: T1059.001, tactic: execution }",
                    "{ id: T1059.001, confidance: 0.9 }",
                ),
                "techniques[0].confidance",
            ),
            // In a predicate, beside its operator.
            (
                RULE.replace(
                    "suffix: \\powershell.exe",
                    "suffix: \\powershell.exe\n      case_sensitve: true",
                ),
                "match.all[0].case_sensitve",
            ),
            // Beside a combinator.
            (
                RULE.replace("match:\n  all:", "match:\n  confidance: 1\n  all:"),
                "match.confidance",
            ),
        ];
        for (text, path) in cases {
            assert_ne!(text, RULE, "the case for {path} changes the rule");
            let e = err(&text);
            assert_eq!(path_of(&e), path, "{e}");
            assert!(e.to_string().contains("unknown key"), "{e}");
        }
    }

    fn path_of(e: &RuleError) -> String {
        match e {
            RuleError::Invalid { path, .. } | RuleError::Technique { path, .. } => path.clone(),
            RuleError::Syntax(_) => "(syntax)".into(),
        }
    }

    #[test]
    fn techniques_are_checked_against_the_release() {
        let unknown = err(&RULE.replace("- T1059\n", "- T1685\n"));
        assert_eq!(path_of(&unknown), "techniques[1].id");
        assert!(
            unknown
                .to_string()
                .contains("unknown in enterprise-attack 18.1"),
            "{unknown}"
        );
        let revoked = err(&RULE.replace("- T1059\n", "- T1086\n"));
        assert!(
            revoked.to_string().contains("replaced by T1059.001"),
            "{revoked}"
        );
        let deprecated = err(&RULE.replace("- T1059\n", "- T1064\n"));
        assert!(
            deprecated.to_string().contains("deprecated"),
            "{deprecated}"
        );
        let tactic = err(&RULE.replace("tactic: execution", "tactic: persistence"));
        assert_eq!(path_of(&tactic), "techniques[0].tactic");
        let malformed = err(&RULE.replace("- T1059\n", "- t1059-1\n"));
        assert_eq!(path_of(&malformed), "techniques[1].id");
        let empty = err(&RULE.replace(
            "  - { id: T1059.001, tactic: execution }\n  - T1059\n",
            "  []\n",
        ));
        assert_eq!(path_of(&empty), "techniques");
    }

    #[test]
    fn the_index_finds_analytic_rules_and_still_runs_general_rules() {
        let r = tiny_release();
        let analytic = |id: &str, uid: &str| {
            parse_rule(
                &format!(
                    "{{id: {id}, version: 1, title: t, author: a, rationale: r, confidence: 0.7, \
                     match: {{all: [{{field: alert.analytic_uid, equals: {uid}}}]}}, techniques: [T1003]}}"
                ),
                &r,
            )
            .unwrap()
        };
        let general = parse_rule(
            "{id: g, version: 1, title: t, author: a, rationale: r, confidence: 0.5, \
             match: {field: alert.title, contains: dump}, techniques: [T1003.001]}",
            &r,
        )
        .unwrap();
        let set = RuleSet::new(vec![
            analytic("r1", "ABC-1"),
            analytic("r2", "def-2"),
            general,
            analytic("r1", "abc-9"),
        ]);
        assert_eq!(set.len(), 3, "a later r1 replaces the first");
        assert_eq!(set.indexed(), 2);

        let alert = |uid: &str, title: &str| {
            decode_alert(&json!({"uid": "x", "title": title, "rule_uid": uid})).unwrap()
        };
        let ids = |a: &NormalizedAlert| -> Vec<String> {
            set.evaluate(a).iter().map(|m| m.rule.id.clone()).collect()
        };
        assert_eq!(ids(&alert("ABC-9", "nothing")), vec!["r1"]);
        assert_eq!(ids(&alert("abc-1", "nothing")), Vec::<String>::new());
        assert_eq!(ids(&alert("DEF-2", "lsass dump")), vec!["r2", "g"]);
    }

    #[test]
    fn rules_read_only_the_raw_fields_they_test_and_decode_the_same_through_them() {
        let r = tiny_release();
        let rule = |id: &str, condition: &str| {
            parse_rule(
                &format!(
                    "{{id: {id}, version: 1, title: t, author: a, rationale: r, confidence: 0.7, \
                     match: {condition}, techniques: [T1003]}}"
                ),
                &r,
            )
            .unwrap()
        };
        let set = RuleSet::new(vec![
            rule("a", "{field: alert.analytic_uid, equals: x}"),
            rule(
                "b",
                "{all: [{field: process.name, equals: procdump.exe}, \
                 {not: {any: [{field: alert.title, contains: test}, \
                 {field: process.args, contains: '-accepteula'}]}}]}",
            ),
            rule("c", "{field: alert.custom, exists: true}"),
        ]);
        let want: BTreeSet<String> = ["alert.custom", "process.args", "process.name"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(set.field_selection(), FieldSelection::Only(want));

        // An alert decoded through the selection matches the same rules
        // with the same evidence as one decoded whole.
        let doc = json!({"uid": "u", "title": "lsass", "rule_uid": "x",
                         "fields": {"process": {"name": "procdump.exe", "args": ["-ma"]},
                                    "alert": {"custom": 1}, "other": "o"}});
        let whole = decode_alert(&doc).unwrap();
        let kept = crate::alert::decode_alert_keeping(&doc, &set.field_selection()).unwrap();
        assert_eq!(kept.fields.len(), 3);
        let hits = |a: &NormalizedAlert| -> Vec<(String, Vec<Evidence>)> {
            set.evaluate(a)
                .into_iter()
                .map(|m| (m.rule.id.clone(), m.evidence))
                .collect()
        };
        assert_eq!(hits(&kept), hits(&whole));
        assert_eq!(
            hits(&kept)
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    /// Regression: `exists` saw only scalars, so an object (`unmapped`) or
    /// an array of objects (`finding_info.attacks`) was absent to it.
    #[test]
    fn exists_sees_objects_and_arrays_with_or_without_a_field_selection() {
        let doc = json!({
            "class_uid": 2004,
            "finding_info": {"uid": "f-1", "title": "t",
                             "attacks": [{"technique": {"uid": "T1059"}}],
                             "empty_list": [], "nulls": [null, {"x": null}]},
            "unmapped": {"event_data": {"Image": "C:\\x.exe"}},
            "empty_object": {},
            "nothing": null,
            "kibana.alert.rule.name": "dotted"
        });
        let cases = [
            ("unmapped", true),
            ("unmapped.event_data", true),
            ("finding_info.attacks", true),
            ("finding_info.attacks.technique", true),
            ("finding_info.empty_list", false),
            ("finding_info.nulls", false),
            ("empty_object", false),
            ("nothing", false),
            ("kibana.alert", true),
            ("kibana.alert.rule.name", true),
            ("absent", false),
        ];
        let whole = decode_alert(&doc).unwrap();
        let r = tiny_release();
        for (field, present) in cases {
            let set = RuleSet::new([true, false].map(|want| {
                parse_rule(
                    &format!(
                        "{{id: {field}-{want}, version: 1, title: t, author: a, rationale: r, \
                         confidence: 0.7, match: {{field: {field}, exists: {want}}}, \
                         techniques: [T1003]}}"
                    ),
                    &r,
                )
                .unwrap()
            }));
            let kept = crate::alert::decode_alert_keeping(&doc, &set.field_selection()).unwrap();
            for alert in [&whole, &kept] {
                let hits: Vec<String> = set
                    .evaluate(alert)
                    .into_iter()
                    .map(|m| m.rule.id.clone())
                    .collect();
                assert_eq!(hits, [format!("{field}-{present}")], "{field}");
            }
            // Only the presence is kept, not the subtree below it.
            assert!(
                kept.fields.keys().all(|k| k == field),
                "{field}: {:?}",
                kept.fields
            );
        }
    }
}
