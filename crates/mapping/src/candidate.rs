//! Mapping candidates: one proposed (subject, technique[, tactic]) with its
//! source, confidence, evidence and provenance.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use taxonomy::{Domain, Release, TacticId, TechniqueId};

use crate::confidence::{Band, BandThresholds, Confidence, Source};

/// What a mapping is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// One alert.
    Alert,
    /// One incident.
    Incident,
}

/// The alert or incident a mapping belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    /// Alert or incident.
    pub kind: SubjectKind,
    /// The product's id of the alert or incident.
    pub id: String,
}

impl Subject {
    /// An alert subject.
    pub fn alert(id: impl Into<String>) -> Self {
        Subject {
            kind: SubjectKind::Alert,
            id: id.into(),
        }
    }

    /// An incident subject.
    pub fn incident(id: impl Into<String>) -> Self {
        Subject {
            kind: SubjectKind::Incident,
            id: id.into(),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            SubjectKind::Alert => "alert",
            SubjectKind::Incident => "incident",
        };
        write!(f, "{kind} {}", self.id)
    }
}

/// One piece of evidence behind a candidate: which field, what it held and
/// what in it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Dotted field path (`process.cmd_line`, `alert.analytic_uid`).
    pub field: String,
    /// The field's value in the subject.
    pub value: String,
    /// What matched: the rule's operand, or the span the suggester relied on.
    pub matched: String,
}

/// What produced a candidate, in enough detail to reproduce it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Producer {
    /// Mapping rule id, for `rule` candidates.
    pub rule_id: Option<String>,
    /// Mapping rule version, for `rule` candidates.
    pub rule_version: Option<u32>,
    /// Model version, for `ai` candidates.
    pub model_version: Option<String>,
    /// Override id, for `manual` candidates.
    pub override_id: Option<String>,
}

/// The ATT&CK data a mapping was made under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingContext {
    /// The domain (`enterprise-attack`).
    pub domain: Domain,
    /// The release version (`18.1`).
    pub release: String,
    /// The dataset id the store gave the loaded release, when known.
    pub dataset_id: Option<String>,
}

impl MappingContext {
    /// The context of a release, with the store's dataset id.
    pub fn of(release: &Release, dataset_id: Option<String>) -> Self {
        MappingContext {
            domain: release.domain,
            release: release.version.clone(),
            dataset_id,
        }
    }
}

/// Why a technique or tactic cannot be mapped under a release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The technique id is not in the release at all.
    #[error("technique {technique} does not exist in {domain} {release}")]
    UnknownTechnique {
        /// The technique asked for.
        technique: String,
        /// The release's domain.
        domain: Domain,
        /// The release version.
        release: String,
    },
    /// The tactic names no tactic of the release.
    #[error("tactic `{tactic}` does not exist in {domain} {release}")]
    UnknownTactic {
        /// The tactic as given.
        tactic: String,
        /// The release's domain.
        domain: Domain,
        /// The release version.
        release: String,
    },
    /// The tactic exists but the technique does not serve it.
    #[error("tactic {tactic} is not a tactic of technique {technique} (its tactics: {allowed})")]
    TacticNotOfTechnique {
        /// The technique.
        technique: String,
        /// The tactic id.
        tactic: String,
        /// The technique's tactics, comma-separated shortnames.
        allowed: String,
    },
}

/// Finds a tactic by ATT&CK id (`TA0002`), shortname (`execution`,
/// `command_and_control`) or display name (`Command and Control`).
pub fn find_tactic<'r>(release: &'r Release, input: &str) -> Option<&'r taxonomy::Tactic> {
    let trimmed = input.trim();
    if let Some(t) = release.tactic(trimmed) {
        return Some(t);
    }
    // Vendors and Sigma spell shortnames with spaces or underscores and any case.
    let normalised: String = trimmed
        .chars()
        .map(|c| match c {
            ' ' | '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    release.tactics.iter().find(|t| {
        t.shortname.eq_ignore_ascii_case(&normalised) || t.name.eq_ignore_ascii_case(trimmed)
    })
}

/// Checks that `technique` exists in `release` and, when a tactic is given,
/// that it is one of the technique's tactics there; answers the tactic's id.
pub fn validate_target(
    release: &Release,
    technique: &TechniqueId,
    tactic: Option<&str>,
) -> Result<Option<TacticId>, TargetError> {
    let Some(found) = release.technique(technique.as_str()) else {
        return Err(TargetError::UnknownTechnique {
            technique: technique.to_string(),
            domain: release.domain,
            release: release.version.clone(),
        });
    };
    let Some(tactic) = tactic else {
        return Ok(None);
    };

    let unknown = || TargetError::UnknownTactic {
        tactic: tactic.to_string(),
        domain: release.domain,
        release: release.version.clone(),
    };
    let resolved = find_tactic(release, tactic).ok_or_else(unknown)?;
    let id = TacticId::parse(&resolved.id).map_err(|_| unknown())?;
    if !found
        .tactics
        .iter()
        .any(|s| s.eq_ignore_ascii_case(&resolved.shortname))
    {
        return Err(TargetError::TacticNotOfTechnique {
            technique: technique.to_string(),
            tactic: id.to_string(),
            allowed: found.tactics.join(", "),
        });
    }
    Ok(Some(id))
}

/// One proposed mapping of a subject to a technique, never changed once made
/// (the store appends candidates, it does not update them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingCandidate {
    /// Stable id derived from subject, target and producer, so re-running the
    /// same rule over the same alert yields the same id (idempotent ingest).
    pub id: String,
    /// The alert or incident.
    pub subject: Subject,
    /// The technique, exactly as specific as the source gave it.
    pub technique: TechniqueId,
    /// The tactic, when the source named one; always one of the technique's
    /// tactics in the release.
    pub tactic: Option<TacticId>,
    /// Manual, rule or AI.
    pub source: Source,
    /// How sure the source is.
    pub confidence: Confidence,
    /// The band of `confidence` under the thresholds in force when made.
    pub band: Band,
    /// Which fields supported the mapping.
    pub evidence: Vec<Evidence>,
    /// Why, in a sentence an analyst can read.
    pub explanation: String,
    /// Mapping rule id, for rule candidates.
    pub rule_id: Option<String>,
    /// Mapping rule version, for rule candidates.
    pub rule_version: Option<u32>,
    /// Model version, for AI candidates.
    pub model_version: Option<String>,
    /// The alert itself carried this technique (OCSF `attacks`, ECS `threat`).
    pub vendor_declared: bool,
    /// ATT&CK domain the mapping was made under.
    pub domain: Domain,
    /// ATT&CK release version the mapping was made under.
    pub release: String,
    /// Dataset id of that release, when known.
    pub dataset_id: Option<String>,
}

/// Everything needed to make a candidate, before its id and band are derived.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateDraft {
    /// The alert or incident.
    pub subject: Subject,
    /// The technique.
    pub technique: TechniqueId,
    /// The tactic, already validated.
    pub tactic: Option<TacticId>,
    /// The source.
    pub source: Source,
    /// The confidence.
    pub confidence: Confidence,
    /// Evidence.
    pub evidence: Vec<Evidence>,
    /// Explanation.
    pub explanation: String,
    /// Rule, model or override that produced it.
    pub producer: Producer,
    /// Declared by the alert itself.
    pub vendor_declared: bool,
}

impl MappingCandidate {
    /// Completes a draft: derives the id and the band.
    pub fn from_draft(
        draft: CandidateDraft,
        context: &MappingContext,
        thresholds: &BandThresholds,
    ) -> Self {
        let id = candidate_id(&draft, context);
        MappingCandidate {
            id,
            band: thresholds.band(draft.confidence),
            subject: draft.subject,
            technique: draft.technique,
            tactic: draft.tactic,
            source: draft.source,
            confidence: draft.confidence,
            evidence: draft.evidence,
            explanation: draft.explanation,
            rule_id: draft.producer.rule_id,
            rule_version: draft.producer.rule_version,
            model_version: draft.producer.model_version,
            vendor_declared: draft.vendor_declared,
            domain: context.domain,
            release: context.release.clone(),
            dataset_id: context.dataset_id.clone(),
        }
    }

    /// Completes a draft made outside this crate (e.g. by the AI suggester),
    /// first checking its technique and tactic against the release it claims.
    pub fn validated(
        draft: CandidateDraft,
        release: &Release,
        context: &MappingContext,
        thresholds: &BandThresholds,
    ) -> Result<Self, TargetError> {
        let tactic = draft.tactic.as_ref().map(|t| t.as_str().to_string());
        validate_target(release, &draft.technique, tactic.as_deref())?;
        Ok(Self::from_draft(draft, context, thresholds))
    }

    /// True when at least one piece of evidence links the candidate to its subject.
    pub fn has_evidence(&self) -> bool {
        !self.evidence.is_empty()
    }
}

fn candidate_id(draft: &CandidateDraft, context: &MappingContext) -> String {
    let mut h = Sha256::new();
    let parts: [&str; 10] = [
        match draft.subject.kind {
            SubjectKind::Alert => "alert",
            SubjectKind::Incident => "incident",
        },
        &draft.subject.id,
        draft.technique.as_str(),
        draft.tactic.as_ref().map_or("", |t| t.as_str()),
        draft.source.as_str(),
        draft.producer.rule_id.as_deref().unwrap_or(""),
        &draft
            .producer
            .rule_version
            .map_or(String::new(), |v| v.to_string()),
        draft.producer.model_version.as_deref().unwrap_or(""),
        draft.producer.override_id.as_deref().unwrap_or(""),
        &context.release,
    ];
    // A separator byte that cannot occur in ids keeps ("a","bc") apart from ("ab","c").
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    h.update(if draft.vendor_declared { b"v" } else { b"-" });
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use taxonomy::{IdentitySource, KillChainPhase, Status, Tactic, Technique};

    fn tactic(id: &str, short: &str, name: &str) -> Tactic {
        Tactic {
            stix_id: format!("x-mitre-tactic--{short}"),
            id: id.into(),
            name: name.into(),
            shortname: short.into(),
            matrix_order: None,
            description: String::new(),
            version: "1.0".into(),
            modified: String::new(),
            status: Status::default(),
        }
    }

    fn technique(id: &str, tactics: &[&str], status: Status) -> Technique {
        Technique {
            stix_id: format!("attack-pattern--{id}"),
            id: id.into(),
            name: format!("name of {id}"),
            is_subtechnique: id.contains('.'),
            parent: id.split_once('.').map(|(p, _)| p.to_string()),
            tactics: tactics.iter().map(|s| s.to_string()).collect(),
            kill_chain_phases: tactics
                .iter()
                .map(|s| KillChainPhase {
                    kill_chain_name: "mitre-attack".into(),
                    phase_name: s.to_string(),
                })
                .collect(),
            platforms: vec!["Windows".into()],
            description: String::new(),
            detection: String::new(),
            version: "1.0".into(),
            modified: String::new(),
            status,
        }
    }

    /// A small hand-built release: T1059 (+ .001) execution, T1003 (+ .001)
    /// credential access, T1078 in four tactics, T1086 revoked by T1059.001,
    /// T1064 deprecated.
    pub(crate) fn tiny_release() -> Release {
        let revoked = Status {
            revoked: true,
            deprecated: false,
            revoked_by: Some("T1059.001".into()),
        };
        let deprecated = Status {
            deprecated: true,
            ..Status::default()
        };
        let live = Status::default;
        Release {
            domain: Domain::Enterprise,
            version: "18.1".into(),
            identity_source: IdentitySource::Caller,
            spec_version: "2.0".into(),
            sha256: String::new(),
            tactics: vec![
                tactic("TA0002", "execution", "Execution"),
                tactic("TA0006", "credential-access", "Credential Access"),
                tactic("TA0005", "defense-evasion", "Defense Evasion"),
                tactic("TA0003", "persistence", "Persistence"),
                tactic("TA0004", "privilege-escalation", "Privilege Escalation"),
                tactic("TA0001", "initial-access", "Initial Access"),
                tactic("TA0011", "command-and-control", "Command and Control"),
            ],
            techniques: vec![
                technique("T1059", &["execution"], live()),
                technique("T1059.001", &["execution"], live()),
                technique("T1003", &["credential-access"], live()),
                technique("T1003.001", &["credential-access"], live()),
                technique(
                    "T1078",
                    &[
                        "defense-evasion",
                        "persistence",
                        "privilege-escalation",
                        "initial-access",
                    ],
                    live(),
                ),
                technique("T1086", &["execution"], revoked),
                technique("T1064", &["defense-evasion", "execution"], deprecated),
            ],
            matrices: vec![],
            procedures: vec![],
        }
    }

    fn tid(s: &str) -> TechniqueId {
        TechniqueId::parse(s).unwrap()
    }

    #[test]
    fn tactics_are_found_by_id_shortname_and_name() {
        let r = tiny_release();
        for input in [
            "TA0011",
            "ta0011",
            "command-and-control",
            "command_and_control",
        ] {
            assert_eq!(find_tactic(&r, input).unwrap().id, "TA0011", "{input}");
        }
        assert_eq!(find_tactic(&r, "Command and Control").unwrap().id, "TA0011");
        assert!(find_tactic(&r, "stealth").is_none());
    }

    #[test]
    fn a_tactic_must_belong_to_the_technique() {
        let r = tiny_release();
        assert_eq!(
            validate_target(&r, &tid("T1078"), Some("persistence")).unwrap(),
            Some(TacticId::parse("TA0003").unwrap())
        );
        assert_eq!(validate_target(&r, &tid("T1059.001"), None).unwrap(), None);
        let err = validate_target(&r, &tid("T1059"), Some("persistence")).unwrap_err();
        assert!(
            matches!(err, TargetError::TacticNotOfTechnique { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("execution"), "{err}");
        assert!(matches!(
            validate_target(&r, &tid("T1685"), None).unwrap_err(),
            TargetError::UnknownTechnique { .. }
        ));
        assert!(matches!(
            validate_target(&r, &tid("T1059"), Some("stealth")).unwrap_err(),
            TargetError::UnknownTactic { .. }
        ));
    }

    #[test]
    fn candidate_ids_are_stable_and_distinguish_producers() {
        let r = tiny_release();
        let ctx = MappingContext::of(&r, Some("ds-1".into()));
        let draft = CandidateDraft {
            subject: Subject::alert("a-1"),
            technique: tid("T1059.001"),
            tactic: None,
            source: Source::Rule,
            confidence: Confidence::new(0.75).unwrap(),
            evidence: vec![],
            explanation: "x".into(),
            producer: Producer {
                rule_id: Some("r-1".into()),
                rule_version: Some(1),
                ..Producer::default()
            },
            vendor_declared: false,
        };
        let t = BandThresholds::default();
        let a = MappingCandidate::from_draft(draft.clone(), &ctx, &t);
        let b = MappingCandidate::from_draft(draft.clone(), &ctx, &t);
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        assert_eq!(a.band, Band::High);
        assert_eq!(a.release, "18.1");
        assert_eq!(a.dataset_id.as_deref(), Some("ds-1"));

        let mut v2 = draft.clone();
        v2.producer.rule_version = Some(2);
        assert_ne!(MappingCandidate::from_draft(v2, &ctx, &t).id, a.id);

        let mut wrong = draft;
        wrong.tactic = Some(TacticId::parse("TA0006").unwrap());
        assert!(matches!(
            MappingCandidate::validated(wrong, &r, &ctx, &t).unwrap_err(),
            TargetError::TacticNotOfTechnique { .. }
        ));
    }
}
