//! Mapping one alert: rule candidates, vendor-declared candidates, and the
//! canonical set precedence derives from them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use taxonomy::{Release, TacticId};

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

/// A declared technique the mapper could not use as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarationProblem {
    /// Where in the alert.
    pub field: String,
    /// The technique declared.
    pub technique: String,
    /// What is wrong (unknown, revoked with replacement, deprecated, tactic).
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
        let mut problems = Vec::new();
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
    /// tactic that is one of its tactics in the release (or one without tactic).
    /// Techniques not live in the release are reported, not mapped: the
    /// release is what mappings are validated against.
    fn declared_candidates(
        &self,
        subject: &Subject,
        d: &DeclaredTechnique,
        out: &mut Vec<MappingCandidate>,
        problems: &mut Vec<DeclarationProblem>,
    ) {
        let problem = |text: String| DeclarationProblem {
            field: d.field.clone(),
            technique: d.technique.to_string(),
            problem: text,
        };
        let status = check_reference(d.technique.as_str(), self.release);
        if status != RefStatus::Live {
            problems.push(problem(status.describe(self.release)));
            return;
        }
        let Some(technique) = self.release.technique(d.technique.as_str()) else {
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
                None => problems.push(problem(format!(
                    "tactic `{raw}` is not one of its tactics in {} {} ({}); kept without it",
                    self.release.domain,
                    self.release.version,
                    technique.tactics.join(", ")
                ))),
            }
        }
        let tactic_choices: Vec<Option<TacticId>> = if tactics.is_empty() {
            vec![None]
        } else {
            tactics.into_iter().map(Some).collect()
        };

        for tactic in tactic_choices {
            let draft = CandidateDraft {
                subject: subject.clone(),
                technique: d.technique.clone(),
                tactic,
                source: Source::Rule,
                confidence: self.vendor_confidence,
                evidence: vec![Evidence {
                    field: d.field.clone(),
                    value: d.technique.to_string(),
                    matched: "declared by the alert".into(),
                }],
                explanation: format!(
                    "the alert declares {} ({}) in `{}`",
                    d.technique, technique.name, d.field
                ),
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
                ("T1059".into(), None, true, 0.7),
            ]
        );
        let problems: Vec<(&str, &str)> = mapping
            .problems
            .iter()
            .map(|p| (p.technique.as_str(), p.problem.as_str()))
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0]
                .1
                .contains("`Execution` is not one of its tactics")
        );
        assert_eq!(
            problems[1],
            (
                "T1086",
                "revoked in enterprise-attack 18.1, replaced by T1059.001"
            )
        );
        assert_eq!(problems[2], ("T1685", "unknown in enterprise-attack 18.1"));

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
