//! Mapping one alert: rule candidates, vendor-declared candidates, and the
//! canonical set precedence derives from them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use taxonomy::{Release, TacticId, TechniqueId};

use crate::alert::{DeclaredTechnique, NormalizedAlert};
use crate::candidate::{
    CandidateDraft, Evidence, MappingCandidate, MappingContext, Producer, Subject, find_tactic,
};
use crate::compat::{RefStatus, check_reference};
use crate::confidence::{Confidence, Source};
use crate::overrides::Override;
use crate::precedence::{CanonicalSet, PrecedencePolicy, canonical};
use crate::rules::{RuleMatch, RuleSet};

/// The confidence of a vendor-declared technique unless configured: the
/// bottom of the default high band. The vendor's own detection named it, which
/// is as good as a deterministic rule, but we cannot see the vendor's logic.
pub const DEFAULT_VENDOR_CONFIDENCE: f64 = 0.70;

/// Maps alerts under one release with one rule set.
#[derive(Debug, Clone)]
pub struct Mapper<'r> {
    release: &'r Release,
    // Shared: a service keeps one compiled rule set per org and builds a
    // mapper per batch without copying thousands of rules.
    rules: Arc<RuleSet>,
    context: MappingContext,
    policy: PrecedencePolicy,
    vendor_confidence: Confidence,
}

/// Why a technique the alert declared was not mapped as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclarationStatus {
    /// Not in the release at all (a newer release's technique, or a typo).
    Unknown,
    /// Revoked in the release; mapped to its replacement when ATT&CK names a
    /// live one.
    Revoked,
    /// Deprecated in the release: not mapped (ATT&CK names no replacement).
    Deprecated,
    /// Not a technique id at all (`T1059-001`).
    Malformed,
    /// The technique was mapped, but a tactic named beside it is not one of
    /// its tactics in the release and was left out.
    TacticNotKept,
}

impl DeclarationStatus {
    /// The status word (`unknown`, `revoked`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DeclarationStatus::Unknown => "unknown",
            DeclarationStatus::Revoked => "revoked",
            DeclarationStatus::Deprecated => "deprecated",
            DeclarationStatus::Malformed => "malformed",
            DeclarationStatus::TacticNotKept => "tactic_not_kept",
        }
    }
}

/// A declared technique the mapper could not use as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarationProblem {
    /// Where in the alert.
    pub field: String,
    /// The technique as declared.
    pub technique: String,
    /// What is wrong with it in the release.
    pub status: DeclarationStatus,
    /// For a revoked technique: the live technique ATT&CK replaced it with,
    /// when it names one.
    pub replaced_by: Option<String>,
    /// The technique the declaration was mapped to: its replacement for a
    /// revoked one, itself when only a tactic was left out, none when the
    /// declaration was dropped.
    pub mapped_to: Option<String>,
    /// The problem in words.
    pub problem: String,
}

/// The candidates made for one alert, and the declarations not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMapping {
    /// Rule and vendor-declared candidates.
    pub candidates: Vec<MappingCandidate>,
    /// Declarations dropped or trimmed, with the reason.
    pub problems: Vec<DeclarationProblem>,
}

impl<'r> Mapper<'r> {
    /// A mapper with the default policy and vendor confidence; `rules` may
    /// be a [`RuleSet`] or an `Arc` of one shared with other mappers.
    pub fn new(
        release: &'r Release,
        rules: impl Into<Arc<RuleSet>>,
        dataset_id: Option<String>,
    ) -> Self {
        Mapper {
            release,
            rules: rules.into(),
            context: MappingContext::of(release, dataset_id),
            policy: PrecedencePolicy::default(),
            vendor_confidence: Confidence::saturating(DEFAULT_VENDOR_CONFIDENCE),
        }
    }

    /// Replaces the precedence policy.
    pub fn with_policy(mut self, policy: PrecedencePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Replaces the confidence given to vendor-declared techniques.
    pub fn with_vendor_confidence(mut self, confidence: Confidence) -> Self {
        self.vendor_confidence = confidence;
        self
    }

    /// The rule set.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The policy.
    pub fn policy(&self) -> &PrecedencePolicy {
        &self.policy
    }

    /// The release context candidates are stamped with.
    pub fn context(&self) -> &MappingContext {
        &self.context
    }

    /// Every candidate the rules and the alert's own declarations give.
    pub fn candidates(&self, subject: &Subject, alert: &NormalizedAlert) -> AlertMapping {
        let mut candidates = Vec::new();
        for hit in self.rules.evaluate(alert) {
            self.rule_candidates(subject, &hit, &mut candidates);
        }
        let mut problems: Vec<DeclarationProblem> = alert
            .malformed
            .iter()
            .map(|m| DeclarationProblem {
                field: m.field.clone(),
                technique: m.value.clone(),
                status: DeclarationStatus::Malformed,
                replaced_by: None,
                mapped_to: None,
                problem: "not a technique id (T followed by 4 digits, optionally .NNN)".into(),
            })
            .collect();
        for d in &alert.declared {
            self.declared_candidates(subject, d, &mut candidates, &mut problems);
        }
        AlertMapping {
            candidates,
            problems,
        }
    }

    /// Candidates plus the canonical set precedence derives with `overrides`.
    pub fn map(
        &self,
        subject: &Subject,
        alert: &NormalizedAlert,
        overrides: &[Override],
    ) -> (AlertMapping, CanonicalSet) {
        let mapping = self.candidates(subject, alert);
        let set = canonical(subject, &mapping.candidates, overrides, &self.policy);
        (mapping, set)
    }

    fn rule_candidates(
        &self,
        subject: &Subject,
        hit: &RuleMatch<'_>,
        out: &mut Vec<MappingCandidate>,
    ) {
        let rule = hit.rule;
        let matched: Vec<String> = hit
            .evidence
            .iter()
            .map(|e| format!("{} = `{}` ({})", e.field, e.value, e.matched))
            .collect();
        for t in &rule.techniques {
            let explanation = format!(
                "rule `{}` v{} \"{}\" matched {}; {}",
                rule.id,
                rule.version,
                rule.title,
                if matched.is_empty() {
                    "(no field)".to_string()
                } else {
                    matched.join(", ")
                },
                rule.rationale
            );
            let draft = CandidateDraft {
                subject: subject.clone(),
                technique: t.id.clone(),
                tactic: t.tactic.clone(),
                source: Source::Rule,
                confidence: rule.confidence,
                evidence: hit.evidence.clone(),
                explanation,
                producer: Producer {
                    rule_id: Some(rule.id.clone()),
                    rule_version: Some(rule.version),
                    ..Producer::default()
                },
                vendor_declared: false,
            };
            out.push(MappingCandidate::from_draft(
                draft,
                &self.context,
                &self.policy.thresholds,
            ));
        }
    }

    /// A declared technique becomes one rule-source candidate per declared
    /// tactic that is one of its tactics in the release (or one without
    /// tactic). A technique the release revoked is mapped to the live
    /// technique ATT&CK replaced it with, and says so; an unknown or
    /// deprecated one, or a revoked one without live replacement, is
    /// reported, not mapped: the release is what mappings are validated
    /// against. Every declaration not mapped as declared is in `problems`.
    fn declared_candidates(
        &self,
        subject: &Subject,
        d: &DeclaredTechnique,
        out: &mut Vec<MappingCandidate>,
        problems: &mut Vec<DeclarationProblem>,
    ) {
        let problem = |status, replaced_by: Option<&str>, mapped_to: Option<&TechniqueId>, text| {
            DeclarationProblem {
                field: d.field.clone(),
                technique: d.technique.to_string(),
                status,
                replaced_by: replaced_by.map(str::to_string),
                mapped_to: mapped_to.map(TechniqueId::to_string),
                problem: text,
            }
        };
        let status = check_reference(d.technique.as_str(), self.release);
        let at = format!("{} {}", self.release.domain, self.release.version);
        // The technique the declaration maps to, and what the evidence says
        // about the substitution, if any.
        let (mapped, substitution) = match &status {
            RefStatus::Live => (d.technique.clone(), None),
            RefStatus::Revoked {
                replaced_by: Some(replacement),
            } => match TechniqueId::parse(replacement)
                .ok()
                .filter(|r| check_reference(r.as_str(), self.release) == RefStatus::Live)
            {
                Some(r) => {
                    let note = format!("revoked in {at}, replaced by {r}: mapped to {r}");
                    problems.push(problem(
                        DeclarationStatus::Revoked,
                        Some(replacement),
                        Some(&r),
                        note.clone(),
                    ));
                    (r, Some(note))
                }
                None => {
                    let text = format!(
                        "{}; the replacement is not live there, so it is not mapped",
                        status.describe(self.release)
                    );
                    problems.push(problem(
                        DeclarationStatus::Revoked,
                        Some(replacement),
                        None,
                        text,
                    ));
                    return;
                }
            },
            other => {
                let kind = match other {
                    RefStatus::Deprecated => DeclarationStatus::Deprecated,
                    RefStatus::Revoked { .. } => DeclarationStatus::Revoked,
                    _ => DeclarationStatus::Unknown,
                };
                let text = format!("{}: not mapped", other.describe(self.release));
                problems.push(problem(kind, None, None, text));
                return;
            }
        };
        let Some(technique) = self.release.technique(mapped.as_str()) else {
            return;
        };

        let mut tactics: Vec<TacticId> = Vec::new();
        for raw in &d.tactics {
            let fits = find_tactic(self.release, raw).filter(|t| {
                technique
                    .tactics
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&t.shortname))
            });
            match fits.and_then(|t| TacticId::parse(&t.id).ok()) {
                Some(id) if !tactics.contains(&id) => tactics.push(id),
                Some(_) => {}
                None => problems.push(problem(
                    DeclarationStatus::TacticNotKept,
                    None,
                    Some(&mapped),
                    format!(
                        "tactic `{raw}` is not one of the tactics of {mapped} in {at} ({}); \
                         kept without it",
                        technique.tactics.join(", ")
                    ),
                )),
            }
        }
        let tactic_choices: Vec<Option<TacticId>> = if tactics.is_empty() {
            vec![None]
        } else {
            tactics.into_iter().map(Some).collect()
        };

        let (matched, explanation) = match &substitution {
            None => (
                "declared by the alert".to_string(),
                format!(
                    "the alert declares {} ({}) in `{}`",
                    d.technique, technique.name, d.field
                ),
            ),
            Some(note) => (
                format!("declared by the alert as {}, {note}", d.technique),
                format!(
                    "the alert declares {} in `{}`, which ATT&CK revoked and replaced by {} ({}) \
                     in {at}: mapped to the replacement",
                    d.technique, d.field, mapped, technique.name
                ),
            ),
        };
        for tactic in tactic_choices {
            let draft = CandidateDraft {
                subject: subject.clone(),
                technique: mapped.clone(),
                tactic,
                source: Source::Rule,
                confidence: self.vendor_confidence,
                evidence: vec![Evidence {
                    field: d.field.clone(),
                    value: d.technique.to_string(),
                    matched: matched.clone(),
                }],
                explanation: explanation.clone(),
                producer: Producer::default(),
                vendor_declared: true,
            };
            out.push(MappingCandidate::from_draft(
                draft,
                &self.context,
                &self.policy.thresholds,
            ));
        }
    }
}

/// The declarations of `alert` that `release` does not take as declared
/// (the `problems` of [`Mapper::candidates`] without running any rule), for
/// reporting them beside a stored mapping.
pub fn declaration_problems(release: &Release, alert: &NormalizedAlert) -> Vec<DeclarationProblem> {
    let mapper = Mapper::new(release, RuleSet::default(), None);
    let subject = Subject::alert(alert.source_uid.as_str());
    mapper.candidates(&subject, alert).problems
}

/// How one alert's canonical mapping would change under a new rule set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatedChange {
    /// The alert.
    pub subject: Subject,
    /// (technique, tactic) pairs of the canonical set now.
    pub before: Vec<(String, Option<String>)>,
    /// (technique, tactic) pairs under the new rules.
    pub after: Vec<(String, Option<String>)>,
}

/// `rules simulate`: maps each alert with the current and the proposed rule
/// set (same release, policy and overrides) and lists the alerts whose
/// canonical (technique, tactic) pairs would change. Alerts are streamed, so
/// memory stays flat in their number.
pub fn simulate<'a>(
    current: &Mapper<'_>,
    proposed: &Mapper<'_>,
    alerts: impl IntoIterator<Item = (Subject, &'a NormalizedAlert, &'a [Override])>,
) -> Vec<SimulatedChange> {
    let pairs = |set: &CanonicalSet| -> Vec<(String, Option<String>)> {
        set.entries
            .iter()
            .map(|e| {
                (
                    e.technique.to_string(),
                    e.tactic.as_ref().map(|t| t.to_string()),
                )
            })
            .collect()
    };
    alerts
        .into_iter()
        .filter_map(|(subject, alert, overrides)| {
            let (_, now) = current.map(&subject, alert, overrides);
            let (_, then) = proposed.map(&subject, alert, overrides);
            let (before, after) = (pairs(&now), pairs(&then));
            (before != after).then_some(SimulatedChange {
                subject,
                before,
                after,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::decode_alert;
    use crate::candidate::tests::tiny_release;
    use crate::rules::parse_rule;
    use serde_json::json;

    fn summary(m: &AlertMapping) -> Vec<(String, Option<String>, bool, f64)> {
        m.candidates
            .iter()
            .map(|c| {
                (
                    c.technique.to_string(),
                    c.tactic.as_ref().map(|t| t.to_string()),
                    c.vendor_declared,
                    c.confidence.value(),
                )
            })
            .collect()
    }

    #[test]
    fn vendor_declared_techniques_become_rule_candidates() {
        let r = tiny_release();
        let mapper = Mapper::new(&r, RuleSet::default(), Some("ds-9".into()));
        let alert = decode_alert(&json!({
            "class_uid": 2004,
            "finding_info": {"uid": "f1", "title": "x", "attacks": [
                {"technique": {"uid": "T1078"}, "tactics": [{"name": "Persistence"}, {"uid": "TA0001"}, {"name": "Execution"}]},
                {"technique": {"uid": "T1086"}},
                {"technique": {"uid": "T1685"}},
                {"technique": {"uid": "T1064"}},
                {"technique": {"uid": "T1059-001"}},
                {"technique": {"uid": "T1059"}}
            ]}
        }))
        .unwrap();
        let subject = Subject::alert("f1");
        let (mapping, set) = mapper.map(&subject, &alert, &[]);
        assert_eq!(
            summary(&mapping),
            vec![
                // Tactic ids are read before names.
                ("T1078".into(), Some("TA0001".into()), true, 0.7),
                ("T1078".into(), Some("TA0003".into()), true, 0.7),
                // T1086 is revoked in the release and replaced by T1059.001.
                ("T1059.001".into(), None, true, 0.7),
                ("T1059".into(), None, true, 0.7),
            ]
        );
        let problems: Vec<(&str, &str, Option<&str>, Option<&str>)> = mapping
            .problems
            .iter()
            .map(|p| {
                (
                    p.technique.as_str(),
                    p.status.as_str(),
                    p.replaced_by.as_deref(),
                    p.mapped_to.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            problems,
            vec![
                ("T1059-001", "malformed", None, None),
                ("T1078", "tactic_not_kept", None, Some("T1078")),
                ("T1086", "revoked", Some("T1059.001"), Some("T1059.001")),
                ("T1685", "unknown", None, None),
                ("T1064", "deprecated", None, None),
            ]
        );
        assert!(
            mapping.problems[1]
                .problem
                .contains("`Execution` is not one of the tactics of T1078"),
            "{}",
            mapping.problems[1].problem
        );
        assert_eq!(
            mapping.problems[2].problem,
            "revoked in enterprise-attack 18.1, replaced by T1059.001: mapped to T1059.001"
        );
        assert_eq!(
            mapping.problems[3].problem,
            "unknown in enterprise-attack 18.1: not mapped"
        );
        // The replacement's candidate says what was declared and why it moved.
        let replaced = &mapping.candidates[2];
        assert_eq!(replaced.evidence[0].value, "T1086");
        assert!(
            replaced.explanation.contains("declares T1086")
                && replaced.explanation.contains("replaced by T1059.001"),
            "{}",
            replaced.explanation
        );
        // The same report without rules, as the alert view asks for it.
        assert_eq!(declaration_problems(&r, &alert), mapping.problems);

        assert_eq!(set.decided_by, Some(Source::Rule));
        assert!(
            set.entries
                .iter()
                .all(|e| e.vendor_declared && e.evidence_linked)
        );
        assert_eq!(set.entries[0].producers, vec!["vendor"]);
        assert_eq!(mapping.candidates[0].dataset_id.as_deref(), Some("ds-9"));
        assert_eq!(
            mapping.candidates[0].evidence[0].field,
            "finding_info.attacks"
        );
    }

    #[test]
    fn a_revoked_declaration_without_live_replacement_is_not_mapped() {
        let mut r = tiny_release();
        // T1086's replacement revoked in turn, with no replacement of its own.
        for t in r.techniques.iter_mut() {
            if t.id.as_str() == "T1059.001" {
                t.status.revoked = true;
            }
        }
        let mapper = Mapper::new(&r, RuleSet::default(), None);
        let alert = decode_alert(&json!({
            "uid": "n1", "title": "t", "techniques": [{"id": "T1086"}]
        }))
        .unwrap();
        let mapping = mapper.candidates(&Subject::alert("n1"), &alert);
        assert!(mapping.candidates.is_empty(), "{:?}", mapping.candidates);
        assert_eq!(mapping.problems.len(), 1);
        let p = &mapping.problems[0];
        assert_eq!(p.status, DeclarationStatus::Revoked);
        assert_eq!(p.replaced_by.as_deref(), Some("T1059.001"));
        assert_eq!(p.mapped_to, None);
    }

    #[test]
    fn simulation_lists_only_alerts_whose_mapping_changes() {
        let r = tiny_release();
        let rule = |version: u32, technique: &str| {
            parse_rule(
                &format!(
                    "{{id: enc, version: {version}, title: t, author: a, rationale: r, \
                     confidence: 0.8, match: {{field: alert.title, contains: powershell}}, \
                     techniques: [{technique}]}}"
                ),
                &r,
            )
            .unwrap()
        };
        let current = Mapper::new(&r, RuleSet::new([rule(1, "T1059")]), None);
        let proposed = Mapper::new(&r, RuleSet::new([rule(2, "T1059.001")]), None);
        let a1 = decode_alert(&json!({"uid": "a1", "title": "PowerShell -enc"})).unwrap();
        let a2 = decode_alert(&json!({"uid": "a2", "title": "net user"})).unwrap();
        let changes = simulate(
            &current,
            &proposed,
            [
                (Subject::alert("a1"), &a1, &[][..]),
                (Subject::alert("a2"), &a2, &[][..]),
            ],
        );
        assert_eq!(
            changes,
            vec![SimulatedChange {
                subject: Subject::alert("a1"),
                before: vec![("T1059".into(), None)],
                after: vec![("T1059.001".into(), None)],
            }]
        );
    }

    #[test]
    fn rules_and_declarations_together() {
        let r = tiny_release();
        let rule = parse_rule(
            "{id: lsass, version: 2, title: LSASS dump, author: a, rationale: dumping lsass, \
             confidence: 0.9, match: {field: process.cmd_line, contains: lsass}, \
             techniques: [{id: T1003.001, tactic: credential-access}]}",
            &r,
        )
        .unwrap();
        let mapper = Mapper::new(&r, RuleSet::new([rule]), None)
            .with_vendor_confidence(Confidence::new(0.6).unwrap());
        let alert = decode_alert(&json!({
            "uid": "n1", "title": "t",
            "fields": {"process": {"cmd_line": "procdump -ma LSASS.exe"}},
            "techniques": [{"id": "T1003.001", "tactic": "TA0006"}]
        }))
        .unwrap();
        let (mapping, set) = mapper.map(&Subject::alert("n1"), &alert, &[]);
        assert_eq!(
            summary(&mapping),
            vec![
                ("T1003.001".into(), Some("TA0006".into()), false, 0.9),
                ("T1003.001".into(), Some("TA0006".into()), true, 0.6),
            ]
        );
        let rule_cand = &mapping.candidates[0];
        assert_eq!(rule_cand.rule_id.as_deref(), Some("lsass"));
        assert_eq!(rule_cand.rule_version, Some(2));
        assert_eq!(rule_cand.evidence[0].value, "procdump -ma LSASS.exe");
        assert!(
            rule_cand.explanation.contains("rule `lsass` v2"),
            "{}",
            rule_cand.explanation
        );
        // One canonical entry, the higher confidence, lineage to both.
        assert_eq!(set.entries.len(), 1);
        assert_eq!(set.entries[0].confidence.value(), 0.9);
        assert_eq!(set.entries[0].candidates.len(), 2);
        assert!(set.entries[0].vendor_declared);
    }
}
