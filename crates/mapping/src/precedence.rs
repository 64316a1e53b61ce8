//! Precedence: the canonical mapping of a subject, derived from its
//! candidates and overrides, never typed in.
//!
//! The rule, for one subject:
//!
//! 1. **Base set.** If the subject has `rule` candidates, the base set is
//!    those candidates, deduplicated by (technique, tactic) keeping the highest
//!    confidence and lineage to every candidate that proposed the pair.
//!    Otherwise the base set is the `ai` candidates whose confidence reaches
//!    [`PrecedencePolicy::ai_bar`], deduplicated the same way; each such entry
//!    is flagged for review (AI-only). AI candidates below the bar never become
//!    canonical; they are listed in [`CanonicalSet::pending_review`]. When rule
//!    candidates exist, AI candidates are ignored.
//! 2. **Manual layer.** If any approved override exists for the subject, the
//!    approved overrides are applied over the base set one by one, in approval
//!    order ([`crate::overrides::approved_in_order`]), so the last approved
//!    wins per technique: `add` inserts (or takes over) the entry, `remove`
//!    deletes the entries it covers (a target without tactic covers every
//!    tactic of the technique), `replace` does both. Entries an override
//!    touched carry source `manual`, the override's confidence and lineage to
//!    the override and to any candidate that proposed the same pair.
//!    `manual` candidates, if a store keeps them as candidates, count as
//!    approved `add` overrides applied before the overrides proper.
//!
//! Techniques are kept exactly as specific as given: a sub-technique is never
//! rolled up to its parent, and a parent named beside it stays a separate entry.
//!
//! Guards: the set is flagged when it holds more distinct techniques than
//! [`PrecedencePolicy::max_techniques`], and an entry is flagged when no
//! candidate behind it links evidence (manual entries are exempt: a person
//! vouched for them and gave a reason code).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use taxonomy::{TacticId, TechniqueId};

use crate::candidate::{MappingCandidate, Subject};
use crate::confidence::{Band, BandThresholds, Confidence, Source};
use crate::overrides::{Override, OverrideAction, approved_in_order};

/// The knobs of precedence and of the over-mapping guard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrecedencePolicy {
    /// Band thresholds.
    pub thresholds: BandThresholds,
    /// The confidence an AI-only candidate needs to become canonical.
    pub ai_bar: Confidence,
    /// More distinct techniques than this on one subject is over-mapping.
    pub max_techniques: usize,
}

impl Default for PrecedencePolicy {
    /// Thresholds 0.40 / 0.70; AI-only entries need a high-band confidence
    /// (0.70); over-mapping past 10 techniques (SigmaHQ rules carry at most a
    /// handful of technique tags, the odd outlier more).
    fn default() -> Self {
        PrecedencePolicy {
            thresholds: BandThresholds::default(),
            ai_bar: Confidence::saturating(0.70),
            max_techniques: 10,
        }
    }
}

/// One entry of a canonical set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalMapping {
    /// The technique, as specific as its winning source gave it.
    pub technique: TechniqueId,
    /// The tactic, when the winning source named one.
    pub tactic: Option<TacticId>,
    /// The source that won.
    pub source: Source,
    /// The winning confidence.
    pub confidence: Confidence,
    /// Its band.
    pub band: Band,
    /// Ids of the candidates behind the entry.
    pub candidates: Vec<String>,
    /// Ids of the overrides behind the entry, in the order applied.
    pub overrides: Vec<String>,
    /// What produced the candidates and overrides behind the entry:
    /// `rule:<id>@<version>`, `vendor`, `ai:<model version>`, `override:<id>`.
    /// Incident aggregation treats each producer as one independent witness.
    pub producers: Vec<String>,
    /// Some candidate behind the entry was declared by the alert itself.
    pub vendor_declared: bool,
    /// Some candidate behind the entry links evidence (or a person vouched).
    pub evidence_linked: bool,
    /// The entry belongs in the review queue (AI-only, low band, no
    /// evidence, or in an over-mapped set).
    pub needs_review: bool,
}

/// Why a canonical set or one of its entries is queued for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReviewFlag {
    /// More distinct techniques than the policy allows.
    OverMapping {
        /// Distinct techniques in the set.
        techniques: usize,
        /// The policy's limit.
        limit: usize,
    },
    /// No candidate behind the entry links evidence.
    NoEvidence {
        /// The technique.
        technique: TechniqueId,
    },
    /// The entry stands on AI candidates alone.
    AiOnly {
        /// The technique.
        technique: TechniqueId,
    },
    /// The entry's confidence is in the low band.
    LowConfidence {
        /// The technique.
        technique: TechniqueId,
    },
}

/// The canonical mapping of one subject, with the reasons to review it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalSet {
    /// The alert or incident.
    pub subject: Subject,
    /// The precedence level that decided the set: `None` when no source
    /// proposed anything admissible (unmapped); `manual` with no entries when
    /// a person removed every mapping (e.g. a false positive).
    pub decided_by: Option<Source>,
    /// The entries, ordered by technique then tactic.
    pub entries: Vec<CanonicalMapping>,
    /// Review flags of the set and its entries.
    pub flags: Vec<ReviewFlag>,
    /// AI candidates below the bar, queued for review instead of mapped.
    pub pending_review: Vec<String>,
}

impl CanonicalSet {
    /// True when the set has no entry.
    pub fn is_unmapped(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when the set or an entry is flagged, or AI candidates wait.
    pub fn needs_review(&self) -> bool {
        !self.flags.is_empty() || !self.pending_review.is_empty()
    }

    /// The distinct techniques of the set.
    pub fn techniques(&self) -> Vec<&TechniqueId> {
        let mut ids: Vec<&TechniqueId> = self.entries.iter().map(|e| &e.technique).collect();
        ids.dedup();
        ids
    }
}

type Key = (TechniqueId, Option<TacticId>);

/// Derives the canonical set of `subject` from its candidates and overrides
/// (see the module documentation for the rule). Candidates and overrides of
/// other subjects are ignored, so a caller may pass a batch.
pub fn canonical(
    subject: &Subject,
    candidates: &[MappingCandidate],
    overrides: &[Override],
    policy: &PrecedencePolicy,
) -> CanonicalSet {
    let mine = || candidates.iter().filter(|c| &c.subject == subject);
    let rule: Vec<&MappingCandidate> = mine().filter(|c| c.source == Source::Rule).collect();
    let ai: Vec<&MappingCandidate> = mine().filter(|c| c.source == Source::Ai).collect();
    let manual: Vec<&MappingCandidate> = mine().filter(|c| c.source == Source::Manual).collect();
    let approved = approved_in_order(subject, overrides);

    let mut pending_review = Vec::new();
    let (mut entries, mut decided_by) = if !rule.is_empty() {
        (dedupe(&rule, policy), Some(Source::Rule))
    } else {
        let (admitted, below): (Vec<&MappingCandidate>, Vec<&MappingCandidate>) = ai
            .iter()
            .partition(|c| c.confidence.value() >= policy.ai_bar.value());
        pending_review.extend(below.iter().map(|c| c.id.clone()));
        let decided = (!admitted.is_empty()).then_some(Source::Ai);
        (dedupe(&admitted, policy), decided)
    };

    if !manual.is_empty() || !approved.is_empty() {
        decided_by = Some(Source::Manual);
        let all_mine: Vec<&MappingCandidate> = mine().collect();
        for c in &manual {
            let key = (c.technique.clone(), c.tactic.clone());
            let mut entry = manual_entry(&key, c.confidence, &all_mine, policy);
            entry.producers.push(producer_of(c));
            entries.insert(key, entry);
        }
        for o in &approved {
            apply_override(&mut entries, o, &all_mine, policy);
        }
    }

    let mut entries: Vec<CanonicalMapping> = entries.into_values().collect();
    let flags = review_flags(&mut entries, policy);
    CanonicalSet {
        subject: subject.clone(),
        decided_by,
        entries,
        flags,
        pending_review,
    }
}

fn dedupe(
    candidates: &[&MappingCandidate],
    policy: &PrecedencePolicy,
) -> BTreeMap<Key, CanonicalMapping> {
    let mut out: BTreeMap<Key, CanonicalMapping> = BTreeMap::new();
    for c in candidates {
        let key = (c.technique.clone(), c.tactic.clone());
        let entry = out.entry(key).or_insert_with(|| CanonicalMapping {
            technique: c.technique.clone(),
            tactic: c.tactic.clone(),
            source: c.source,
            confidence: c.confidence,
            band: c.band,
            candidates: Vec::new(),
            overrides: Vec::new(),
            producers: Vec::new(),
            vendor_declared: false,
            evidence_linked: false,
            needs_review: false,
        });
        if c.confidence.value() > entry.confidence.value() {
            entry.confidence = c.confidence;
        }
        entry.candidates.push(c.id.clone());
        let producer = producer_of(c);
        if !entry.producers.contains(&producer) {
            entry.producers.push(producer);
        }
        entry.vendor_declared |= c.vendor_declared;
        entry.evidence_linked |= c.has_evidence();
    }
    for entry in out.values_mut() {
        entry.band = policy.thresholds.band(entry.confidence);
    }
    out
}

/// The producer key of a candidate (see [`CanonicalMapping::producers`]).
fn producer_of(c: &MappingCandidate) -> String {
    match c.source {
        Source::Rule if c.vendor_declared => "vendor".to_string(),
        Source::Rule => format!(
            "rule:{}@{}",
            c.rule_id.as_deref().unwrap_or("?"),
            c.rule_version.unwrap_or(0)
        ),
        Source::Ai => format!("ai:{}", c.model_version.as_deref().unwrap_or("?")),
        Source::Manual => format!("manual:{}", c.id),
    }
}

/// A manual entry for `key`, with lineage to every candidate of the subject
/// that proposed the same pair.
fn manual_entry(
    key: &Key,
    confidence: Confidence,
    candidates: &[&MappingCandidate],
    policy: &PrecedencePolicy,
) -> CanonicalMapping {
    let same: Vec<&&MappingCandidate> = candidates
        .iter()
        .filter(|c| c.technique == key.0 && c.tactic == key.1)
        .collect();
    CanonicalMapping {
        technique: key.0.clone(),
        tactic: key.1.clone(),
        source: Source::Manual,
        confidence,
        band: policy.thresholds.band(confidence),
        candidates: same.iter().map(|c| c.id.clone()).collect(),
        overrides: Vec::new(),
        producers: Vec::new(),
        vendor_declared: same.iter().any(|c| c.vendor_declared),
        evidence_linked: true,
        needs_review: false,
    }
}

fn apply_override(
    entries: &mut BTreeMap<Key, CanonicalMapping>,
    o: &Override,
    candidates: &[&MappingCandidate],
    policy: &PrecedencePolicy,
) {
    let remove = match o.action {
        OverrideAction::Add => None,
        OverrideAction::Remove => Some(&o.target),
        OverrideAction::Replace => o.replaces.as_ref(),
    };
    if let Some(pattern) = remove {
        entries.retain(|(technique, tactic), _| !pattern.covers(technique, tactic.as_ref()));
    }
    if matches!(o.action, OverrideAction::Add | OverrideAction::Replace) {
        let key = (o.target.technique.clone(), o.target.tactic.clone());
        let mut entry = manual_entry(&key, o.confidence, candidates, policy);
        if let Some(previous) = entries.get(&key) {
            entry.overrides = previous.overrides.clone();
        }
        entry.overrides.push(o.id.clone());
        entry.producers = entry
            .overrides
            .iter()
            .map(|id| format!("override:{id}"))
            .collect();
        entries.insert(key, entry);
    }
}

/// Flags the set and marks each flagged entry as needing review.
fn review_flags(entries: &mut [CanonicalMapping], policy: &PrecedencePolicy) -> Vec<ReviewFlag> {
    let mut flags = Vec::new();
    let mut techniques: Vec<&TechniqueId> = entries.iter().map(|e| &e.technique).collect();
    techniques.dedup();
    let over_mapped = techniques.len() > policy.max_techniques;
    if over_mapped {
        flags.push(ReviewFlag::OverMapping {
            techniques: techniques.len(),
            limit: policy.max_techniques,
        });
    }
    for e in entries.iter_mut() {
        let technique = e.technique.clone();
        // Over-mapping flags the set, not one entry: the reviewer decides
        // which of them to keep, so each is under review.
        e.needs_review =
            over_mapped || !e.evidence_linked || e.source == Source::Ai || e.band == Band::Low;
        if !e.evidence_linked {
            flags.push(ReviewFlag::NoEvidence {
                technique: technique.clone(),
            });
        }
        if e.source == Source::Ai {
            flags.push(ReviewFlag::AiOnly {
                technique: technique.clone(),
            });
        }
        if e.band == Band::Low {
            flags.push(ReviewFlag::LowConfidence { technique });
        }
    }
    flags
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::candidate::tests::tiny_release;
    use crate::candidate::{CandidateDraft, Evidence, MappingContext, Producer};
    use crate::overrides::{OverrideMeta, OverrideRequest, OverrideStatus};
    use chrono::TimeZone;

    pub(crate) fn tid(s: &str) -> TechniqueId {
        TechniqueId::parse(s).unwrap()
    }

    pub(crate) fn cand(
        subject: &str,
        technique: &str,
        tactic: Option<&str>,
        source: Source,
        confidence: f64,
        producer: &str,
    ) -> MappingCandidate {
        let r = tiny_release();
        let producer = match source {
            Source::Rule => Producer {
                rule_id: Some(producer.into()),
                rule_version: Some(1),
                ..Producer::default()
            },
            Source::Ai => Producer {
                model_version: Some(producer.into()),
                ..Producer::default()
            },
            Source::Manual => Producer {
                override_id: Some(producer.into()),
                ..Producer::default()
            },
        };
        let draft = CandidateDraft {
            subject: Subject::alert(subject),
            technique: tid(technique),
            tactic: tactic.map(|t| TacticId::parse(t).unwrap()),
            source,
            confidence: Confidence::new(confidence).unwrap(),
            evidence: vec![Evidence {
                field: "f".into(),
                value: "v".into(),
                matched: "m".into(),
            }],
            explanation: "test".into(),
            producer,
            vendor_declared: false,
        };
        MappingCandidate::from_draft(
            draft,
            &MappingContext::of(&r, None),
            &BandThresholds::default(),
        )
    }

    pub(crate) fn override_of(
        subject: Subject,
        version: u32,
        minute: u32,
        action: &str,
        technique: &str,
        replaces: Option<&str>,
        status: OverrideStatus,
    ) -> Override {
        let request = OverrideRequest {
            action: action.into(),
            technique: technique.into(),
            replaces_technique: replaces.map(str::to_string),
            reason: Some("wrong_technique".into()),
            notes: Some("lead rationale".into()),
            ..OverrideRequest::default()
        };
        let meta = OverrideMeta {
            id: format!("ov-{version}"),
            subject,
            version,
            actor: "lead-1".into(),
            status,
            decided_at: Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, minute, 0).unwrap()),
        };
        request.validate(&tiny_release(), meta).unwrap()
    }

    use chrono::Utc;

    fn summary(set: &CanonicalSet) -> Vec<(String, Option<String>, Source, f64)> {
        set.entries
            .iter()
            .map(|e| {
                (
                    e.technique.to_string(),
                    e.tactic.as_ref().map(|t| t.to_string()),
                    e.source,
                    e.confidence.value(),
                )
            })
            .collect()
    }

    #[test]
    fn rules_win_over_ai_and_dedupe_keeps_max_with_all_lineage() {
        let a = Subject::alert("a1");
        let cands = vec![
            cand("a1", "T1059.001", Some("TA0002"), Source::Rule, 0.6, "r1"),
            cand("a1", "T1059.001", Some("TA0002"), Source::Rule, 0.8, "r2"),
            cand("a1", "T1059", None, Source::Rule, 0.5, "r1"),
            cand("a1", "T1003", None, Source::Ai, 0.95, "m1"),
            cand("other", "T1078", None, Source::Rule, 0.9, "r1"),
        ];
        let set = canonical(&a, &cands, &[], &PrecedencePolicy::default());
        assert_eq!(set.decided_by, Some(Source::Rule));
        // The sub-technique stays, and its parent named beside it stays too.
        assert_eq!(
            summary(&set),
            vec![
                ("T1059".into(), None, Source::Rule, 0.5),
                ("T1059.001".into(), Some("TA0002".into()), Source::Rule, 0.8),
            ]
        );
        assert_eq!(
            set.entries[1].candidates,
            vec![cands[0].id.clone(), cands[1].id.clone()]
        );
        assert_eq!(set.entries[1].producers, vec!["rule:r1@1", "rule:r2@1"]);
        assert_eq!(set.entries[1].band, Band::High);
        assert!(!set.entries[1].needs_review);
        assert!(set.pending_review.is_empty());
    }

    #[test]
    fn ai_only_entries_need_the_bar_and_are_flagged() {
        let a = Subject::alert("a1");
        let cands = vec![
            cand("a1", "T1003", None, Source::Ai, 0.75, "m1"),
            cand("a1", "T1078", None, Source::Ai, 0.5, "m1"),
        ];
        let set = canonical(&a, &cands, &[], &PrecedencePolicy::default());
        assert_eq!(set.decided_by, Some(Source::Ai));
        assert_eq!(
            summary(&set),
            vec![("T1003".into(), None, Source::Ai, 0.75)]
        );
        assert!(set.entries[0].needs_review);
        assert_eq!(
            set.flags,
            vec![ReviewFlag::AiOnly {
                technique: tid("T1003")
            }]
        );
        assert_eq!(set.pending_review, vec![cands[1].id.clone()]);

        let strict = PrecedencePolicy {
            ai_bar: Confidence::new(0.9).unwrap(),
            ..PrecedencePolicy::default()
        };
        let set = canonical(&a, &cands, &[], &strict);
        assert!(set.is_unmapped());
        assert_eq!(set.decided_by, None);
        assert_eq!(set.pending_review.len(), 2);
    }

    #[test]
    fn approved_overrides_apply_in_order_and_the_last_wins() {
        let a = Subject::alert("a1");
        let cands = vec![
            cand("a1", "T1059", None, Source::Rule, 0.8, "r1"),
            cand("a1", "T1003", None, Source::Rule, 0.8, "r1"),
        ];
        let ov = |v, minute, action, technique, replaces, status| {
            override_of(a.clone(), v, minute, action, technique, replaces, status)
        };
        let overrides = vec![
            // Applied third (latest approval), although its version is lowest.
            ov(1, 30, "add", "T1003.001", None, OverrideStatus::Approved),
            ov(2, 10, "remove", "T1003", None, OverrideStatus::Approved),
            ov(
                3,
                20,
                "replace",
                "T1059.001",
                Some("T1059"),
                OverrideStatus::Approved,
            ),
            ov(4, 40, "remove", "T1059.001", None, OverrideStatus::Proposed),
            ov(5, 50, "remove", "T1003.001", None, OverrideStatus::Rejected),
        ];
        let set = canonical(&a, &cands, &overrides, &PrecedencePolicy::default());
        assert_eq!(set.decided_by, Some(Source::Manual));
        assert_eq!(
            summary(&set),
            vec![
                ("T1003.001".into(), None, Source::Manual, 1.0),
                ("T1059.001".into(), None, Source::Manual, 1.0),
            ]
        );
        assert_eq!(set.entries[0].overrides, vec!["ov-1"]);
        assert_eq!(set.entries[1].overrides, vec!["ov-3"]);

        // Remove after add: the later approval wins.
        let flip = vec![
            ov(1, 10, "add", "T1078", None, OverrideStatus::Approved),
            ov(2, 20, "remove", "T1078", None, OverrideStatus::Approved),
        ];
        let set = canonical(&a, &cands, &flip, &PrecedencePolicy::default());
        assert_eq!(
            set.techniques()
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>(),
            vec!["T1003", "T1059"]
        );
        assert_eq!(crate::overrides::flip_flops(&a, &flip), 1);

        // A false positive: everything removed, and a person decided so.
        let fp = vec![
            ov(1, 10, "remove", "T1059", None, OverrideStatus::Approved),
            ov(2, 20, "remove", "T1003", None, OverrideStatus::Approved),
        ];
        let set = canonical(&a, &cands, &fp, &PrecedencePolicy::default());
        assert!(set.is_unmapped());
        assert_eq!(set.decided_by, Some(Source::Manual));
    }

    #[test]
    fn an_override_on_a_rule_technique_keeps_its_candidate_lineage() {
        let a = Subject::alert("a1");
        let cands = vec![cand("a1", "T1059", None, Source::Rule, 0.5, "r1")];
        let add = override_of(
            a.clone(),
            1,
            0,
            "add",
            "T1059",
            None,
            OverrideStatus::Approved,
        );
        let set = canonical(&a, &cands, &[add], &PrecedencePolicy::default());
        assert_eq!(set.entries.len(), 1);
        assert_eq!(set.entries[0].source, Source::Manual);
        assert_eq!(set.entries[0].candidates, vec![cands[0].id.clone()]);
        assert_eq!(set.entries[0].producers, vec!["override:ov-1"]);
    }

    #[test]
    fn over_mapping_and_missing_evidence_are_flagged() {
        let a = Subject::alert("a1");
        let mut cands: Vec<MappingCandidate> = ["T1059", "T1059.001", "T1003"]
            .iter()
            .map(|t| cand("a1", t, None, Source::Rule, 0.9, "r1"))
            .collect();
        cands[2].evidence.clear();
        let policy = PrecedencePolicy {
            max_techniques: 2,
            ..PrecedencePolicy::default()
        };
        let set = canonical(&a, &cands, &[], &policy);
        assert_eq!(
            set.flags,
            vec![
                ReviewFlag::OverMapping {
                    techniques: 3,
                    limit: 2
                },
                ReviewFlag::NoEvidence {
                    technique: tid("T1003")
                },
            ]
        );
        assert!(set.entries[0].needs_review, "T1003 has no evidence");
        assert!(set.needs_review());
    }

    /// Trial finding: an over-mapped set was flagged `over_mapping` and
    /// queued, yet every entry said `needs_review: false`. Each entry of an
    /// over-mapped set is under review; one technique fewer, none is.
    #[test]
    fn every_entry_of_an_over_mapped_set_needs_review() {
        let a = Subject::alert("a1");
        let cands: Vec<MappingCandidate> = ["T1003", "T1003.001", "T1059", "T1059.001", "T1078"]
            .iter()
            .map(|t| cand("a1", t, None, Source::Rule, 0.9, "r1"))
            .collect();
        let policy = PrecedencePolicy {
            max_techniques: 4,
            ..PrecedencePolicy::default()
        };
        let set = canonical(&a, &cands, &[], &policy);
        assert_eq!(
            set.flags,
            vec![ReviewFlag::OverMapping {
                techniques: 5,
                limit: 4
            }]
        );
        let flagged = set.entries.iter().filter(|e| e.needs_review).count();
        assert_eq!(flagged, 5);

        let set = canonical(&a, &cands[..4], &[], &policy);
        assert!(set.flags.is_empty());
        assert!(set.entries.iter().all(|e| !e.needs_review));
    }

    #[test]
    fn a_low_confidence_rule_entry_goes_to_review() {
        let a = Subject::alert("a1");
        let cands = vec![cand("a1", "T1059", None, Source::Rule, 0.2, "r1")];
        let set = canonical(&a, &cands, &[], &PrecedencePolicy::default());
        assert_eq!(set.entries[0].band, Band::Low);
        assert_eq!(
            set.flags,
            vec![ReviewFlag::LowConfidence {
                technique: tid("T1059")
            }]
        );
    }

    #[test]
    fn no_candidates_no_overrides_is_unmapped() {
        let set = canonical(
            &Subject::alert("a1"),
            &[],
            &[],
            &PrecedencePolicy::default(),
        );
        assert!(set.is_unmapped());
        assert!(!set.needs_review());
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["decided_by"], serde_json::Value::Null);
        assert_eq!(json["subject"]["kind"], "alert");
    }
}
