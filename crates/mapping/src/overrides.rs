//! Manual overrides of a canonical mapping (alerts) and lead adjustments
//! (incidents): add, remove or replace a technique, with a reason code.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taxonomy::{Release, TacticId, TechniqueId};

use crate::candidate::{Subject, SubjectKind, TargetError, validate_target};
use crate::confidence::{Confidence, ConfidenceError};

/// What an override does to the canonical set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideAction {
    /// Adds the target mapping.
    Add,
    /// Removes every canonical entry the target matches.
    Remove,
    /// Removes the entries `replaces` matches and adds the target.
    Replace,
}

impl FromStr for OverrideAction {
    type Err = OverrideError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "add" => Ok(OverrideAction::Add),
            "remove" => Ok(OverrideAction::Remove),
            "replace" => Ok(OverrideAction::Replace),
            _ => Err(OverrideError::UnknownAction(s.to_string())),
        }
    }
}

/// Why a person changed a mapping. Required on every override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The technique is wrong.
    WrongTechnique,
    /// A technique is missing.
    MissingTechnique,
    /// The technique is right but the sub-technique is wrong or missing.
    WrongSubtechnique,
    /// The alert is a false positive: no technique applies.
    FalsePositive,
    /// A new ATT&CK release moved or replaced the technique.
    TaxonomyUpdate,
    /// Anything else (explain in the notes).
    Other,
}

impl ReasonCode {
    /// Every reason code, as the API spells them.
    pub const ALL: [&'static str; 6] = [
        "wrong_technique",
        "missing_technique",
        "wrong_subtechnique",
        "false_positive",
        "taxonomy_update",
        "other",
    ];
}

impl FromStr for ReasonCode {
    type Err = OverrideError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "wrong_technique" => Ok(ReasonCode::WrongTechnique),
            "missing_technique" => Ok(ReasonCode::MissingTechnique),
            "wrong_subtechnique" => Ok(ReasonCode::WrongSubtechnique),
            "false_positive" => Ok(ReasonCode::FalsePositive),
            "taxonomy_update" => Ok(ReasonCode::TaxonomyUpdate),
            "other" => Ok(ReasonCode::Other),
            _ => Err(OverrideError::UnknownReason {
                code: s.to_string(),
            }),
        }
    }
}

/// Where an override stands. Only approved overrides change a canonical set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideStatus {
    /// Made by an analyst, waiting for a lead.
    Proposed,
    /// In force (a lead's override is approved when made).
    Approved,
    /// Turned down; kept for history.
    Rejected,
}

/// A (technique, optional tactic) an override names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    /// The technique, as specific as the person gave it.
    pub technique: TechniqueId,
    /// The tactic. In `remove` and in `replaces`, no tactic matches every
    /// entry of the technique.
    pub tactic: Option<TacticId>,
}

impl Target {
    /// True when `self`, used as a pattern, covers the entry `(technique, tactic)`.
    pub fn covers(&self, technique: &TechniqueId, tactic: Option<&TacticId>) -> bool {
        &self.technique == technique && (self.tactic.is_none() || self.tactic.as_ref() == tactic)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tactic {
            Some(t) => write!(f, "{} ({t})", self.technique),
            None => write!(f, "{}", self.technique),
        }
    }
}

/// A validated manual override of a subject's canonical mapping, or a lead
/// adjustment of an incident profile. Overrides are never edited: a change
/// is a new override with a higher version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    /// The store's id.
    pub id: String,
    /// The alert or incident.
    pub subject: Subject,
    /// Per-subject sequence number, from 1.
    pub version: u32,
    /// Add, remove or replace.
    pub action: OverrideAction,
    /// Added (add, replace) or removed (remove) mapping.
    pub target: Target,
    /// For replace: the mapping it replaces.
    pub replaces: Option<Target>,
    /// Why.
    pub reason: ReasonCode,
    /// Free text; required for incident adjustments (the lead's rationale).
    pub notes: Option<String>,
    /// Confidence the canonical entry gets (1.0 unless the person says otherwise).
    pub confidence: Confidence,
    /// Who made it.
    pub actor: String,
    /// Proposed, approved or rejected.
    pub status: OverrideStatus,
    /// When it was approved (or made, for a lead). Orders "last approved wins".
    pub decided_at: Option<DateTime<Utc>>,
}

/// An override as a user sends it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverrideRequest {
    /// `add`, `remove` or `replace`.
    pub action: String,
    /// The technique to add, remove or replace with.
    pub technique: String,
    /// Its tactic (id or shortname).
    #[serde(default)]
    pub tactic: Option<String>,
    /// For replace: the technique replaced.
    #[serde(default)]
    pub replaces_technique: Option<String>,
    /// For replace: the tactic replaced.
    #[serde(default)]
    pub replaces_tactic: Option<String>,
    /// One of [`ReasonCode::ALL`]; required.
    #[serde(default)]
    pub reason: Option<String>,
    /// Notes, or the rationale of an incident adjustment.
    #[serde(default)]
    pub notes: Option<String>,
    /// Confidence of the manual entry; 1.0 when absent.
    #[serde(default)]
    pub confidence: Option<f64>,
}

/// Why an override request is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverrideError {
    /// No reason code.
    #[error("an override needs a reason code (one of: {})", ReasonCode::ALL.join(", "))]
    MissingReason,
    /// A reason code that does not exist.
    #[error("unknown reason code `{code}` (expected one of: {})", ReasonCode::ALL.join(", "))]
    UnknownReason {
        /// The code as given.
        code: String,
    },
    /// An action that does not exist.
    #[error("unknown override action `{0}` (expected add, remove or replace)")]
    UnknownAction(String),
    /// A malformed technique id.
    #[error("field `{field}`: {source}")]
    BadId {
        /// The request field.
        field: &'static str,
        /// The parse error.
        source: taxonomy::IdError,
    },
    /// Replace without the mapping it replaces.
    #[error("a replace override needs `replaces`, the technique it replaces")]
    ReplaceWithoutOld,
    /// A replace whose target is the very mapping it replaces: it would
    /// change nothing, and is more likely a slip than an intent.
    #[error("a replace override must name another mapping than the one it replaces")]
    ReplaceWithItself,
    /// `replaces_*` given on add or remove.
    #[error("`replaces` is only allowed on a replace override")]
    OldWithoutReplace,
    /// The technique or tactic does not fit the release.
    #[error("field `{field}`: {source}")]
    Target {
        /// The request field.
        field: &'static str,
        /// What is wrong.
        source: TargetError,
    },
    /// Confidence out of range.
    #[error("field `confidence`: {0}")]
    Confidence(ConfidenceError),
    /// An incident adjustment without rationale.
    #[error("a lead adjustment of an incident needs a rationale (field `rationale`)")]
    MissingRationale,
    /// An add or replace naming a revoked or deprecated technique: it would
    /// put a dead technique into the canonical mapping.
    #[error(
        "field `technique`: {technique} is {status} in {release}{}",
        replaced_by.as_ref().map(|r| format!(", replaced by {r}")).unwrap_or_default()
    )]
    NotLive {
        /// The technique as given.
        technique: String,
        /// `revoked` or `deprecated`.
        status: &'static str,
        /// The release checked.
        release: String,
        /// ATT&CK's replacement, when it names one.
        replaced_by: Option<String>,
    },
    /// No actor.
    #[error("an override needs the actor who made it")]
    MissingActor,
}

/// The store-side facts of a new override: identity, order and approval.
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideMeta {
    /// The store's id.
    pub id: String,
    /// The subject.
    pub subject: Subject,
    /// The next per-subject version.
    pub version: u32,
    /// Who.
    pub actor: String,
    /// Proposed (analyst) or approved (lead).
    pub status: OverrideStatus,
    /// Approval time, for approved overrides.
    pub decided_at: Option<DateTime<Utc>>,
}

impl OverrideRequest {
    /// Validates the request against the release it applies under.
    ///
    /// Refuses a missing or unknown reason code, a replace without the
    /// replaced technique, a technique unknown to the release, a tactic that
    /// is not one of the technique's tactics and, on an incident, an empty
    /// rationale.
    pub fn validate(
        self,
        release: &Release,
        meta: OverrideMeta,
    ) -> Result<Override, OverrideError> {
        let reason: ReasonCode = match self.reason.as_deref().map(str::trim) {
            None | Some("") => return Err(OverrideError::MissingReason),
            Some(r) => r.parse()?,
        };
        let action: OverrideAction = self.action.parse()?;
        if meta.actor.trim().is_empty() {
            return Err(OverrideError::MissingActor);
        }
        let notes = self.notes.filter(|n| !n.trim().is_empty());
        if meta.subject.kind == SubjectKind::Incident && notes.is_none() {
            return Err(OverrideError::MissingRationale);
        }

        let target = parse_target(
            release,
            &self.technique,
            self.tactic.as_deref(),
            "technique",
        )?;
        // Removing a dead technique is how a mapping gets rid of it; adding
        // one is refused, with ATT&CK's replacement to use instead.
        let dead = release
            .technique(target.technique.as_str())
            .filter(|found| action != OverrideAction::Remove && !found.status.is_live());
        if let Some(found) = dead {
            return Err(OverrideError::NotLive {
                technique: target.technique.to_string(),
                status: if found.status.revoked {
                    "revoked"
                } else {
                    "deprecated"
                },
                release: release.version.clone(),
                replaced_by: found.status.revoked_by.clone(),
            });
        }
        let replaces = match (action, self.replaces_technique.as_deref()) {
            (OverrideAction::Replace, None) => return Err(OverrideError::ReplaceWithoutOld),
            (OverrideAction::Replace, Some(old)) => Some(parse_old_target(
                old,
                self.replaces_tactic.as_deref(),
                release,
            )?),
            (_, Some(_)) => return Err(OverrideError::OldWithoutReplace),
            (_, None) => None,
        };
        if replaces.as_ref() == Some(&target) {
            return Err(OverrideError::ReplaceWithItself);
        }
        let confidence = match self.confidence {
            Some(c) => Confidence::new(c).map_err(OverrideError::Confidence)?,
            None => Confidence::CERTAIN,
        };

        Ok(Override {
            id: meta.id,
            subject: meta.subject,
            version: meta.version,
            action,
            target,
            replaces,
            reason,
            notes,
            confidence,
            actor: meta.actor,
            status: meta.status,
            decided_at: meta.decided_at,
        })
    }
}

fn parse_target(
    release: &Release,
    technique: &str,
    tactic: Option<&str>,
    field: &'static str,
) -> Result<Target, OverrideError> {
    let technique =
        TechniqueId::parse(technique).map_err(|source| OverrideError::BadId { field, source })?;
    let tactic = validate_target(release, &technique, tactic)
        .map_err(|source| OverrideError::Target { field, source })?;
    Ok(Target { technique, tactic })
}

/// The replaced mapping may name a technique the release no longer knows
/// (that is what `taxonomy_update` overrides fix), so only its shape is checked.
fn parse_old_target(
    technique: &str,
    tactic: Option<&str>,
    release: &Release,
) -> Result<Target, OverrideError> {
    // Named as the API and the incident adjustments spell the field.
    let field = "replaces";
    let technique =
        TechniqueId::parse(technique).map_err(|source| OverrideError::BadId { field, source })?;
    let tactic = match tactic {
        None => None,
        Some(t) => {
            let found =
                crate::candidate::find_tactic(release, t).ok_or_else(|| OverrideError::Target {
                    field: "replaces_tactic",
                    source: TargetError::UnknownTactic {
                        tactic: t.to_string(),
                        domain: release.domain,
                        release: release.version.clone(),
                    },
                })?;
            TacticId::parse(&found.id).ok()
        }
    };
    Ok(Target { technique, tactic })
}

/// The approved overrides of one subject in the order they take effect:
/// by approval time, then version. Applying them in this order makes the
/// last approved win.
pub fn approved_in_order<'o>(subject: &Subject, overrides: &'o [Override]) -> Vec<&'o Override> {
    let mut approved: Vec<&Override> = overrides
        .iter()
        .filter(|o| &o.subject == subject && o.status == OverrideStatus::Approved)
        .collect();
    approved.sort_by_key(|a| (a.decided_at, a.version));
    approved
}

/// Counts flip-flops on a subject: an approved override that undoes the
/// effect of the previous approved override on the same technique (added
/// then removed, or removed then added again). The store locks a subject for
/// arbitration when this reaches its configured threshold.
pub fn flip_flops(subject: &Subject, overrides: &[Override]) -> usize {
    // Last effect per technique: true = present after the override, false = removed.
    let mut last: BTreeMap<&TechniqueId, bool> = BTreeMap::new();
    let mut flips = 0;
    for o in approved_in_order(subject, overrides) {
        let mut effects: Vec<(&TechniqueId, bool)> = Vec::new();
        match o.action {
            OverrideAction::Add => effects.push((&o.target.technique, true)),
            OverrideAction::Remove => effects.push((&o.target.technique, false)),
            OverrideAction::Replace => {
                if let Some(old) = &o.replaces {
                    effects.push((&old.technique, false));
                }
                effects.push((&o.target.technique, true));
            }
        }
        for (technique, present) in effects {
            if let Some(previous) = last.insert(technique, present)
                && previous != present
            {
                flips += 1;
            }
        }
    }
    flips
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candidate::tests::tiny_release;

    fn meta(subject: Subject) -> OverrideMeta {
        OverrideMeta {
            id: "ov-1".into(),
            subject,
            version: 1,
            actor: "lead-1".into(),
            status: OverrideStatus::Approved,
            decided_at: None,
        }
    }

    fn request(action: &str, technique: &str) -> OverrideRequest {
        OverrideRequest {
            action: action.into(),
            technique: technique.into(),
            reason: Some("missing_technique".into()),
            ..OverrideRequest::default()
        }
    }

    fn refuse(req: OverrideRequest, subject: Subject) -> OverrideError {
        req.validate(&tiny_release(), meta(subject)).unwrap_err()
    }

    #[test]
    fn a_valid_override() {
        let mut req = request("add", "t1078");
        req.tactic = Some("Persistence".into());
        req.confidence = Some(0.9);
        let o = req
            .validate(&tiny_release(), meta(Subject::alert("a1")))
            .unwrap();
        assert_eq!(o.action, OverrideAction::Add);
        assert_eq!(o.reason, ReasonCode::MissingTechnique);
        assert_eq!(o.target.to_string(), "T1078 (TA0003)");
        assert_eq!(o.confidence.value(), 0.9);
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["reason"], "missing_technique");
        assert_eq!(json["status"], "approved");
    }

    #[test]
    fn a_dead_technique_can_be_removed_but_not_added() {
        let alert = || Subject::alert("a1");
        match refuse(request("add", "T1086"), alert()) {
            OverrideError::NotLive {
                status,
                replaced_by,
                ..
            } => assert_eq!(
                (status, replaced_by.as_deref()),
                ("revoked", Some("T1059.001"))
            ),
            other => panic!("expected NotLive, got {other:?}"),
        }
        let mut replace = request("replace", "T1064");
        replace.replaces_technique = Some("T1059".into());
        assert!(matches!(
            refuse(replace, alert()),
            OverrideError::NotLive {
                status: "deprecated",
                ..
            }
        ));
        let mut remove = request("remove", "T1086");
        remove.reason = Some("taxonomy_update".into());
        let o = remove.validate(&tiny_release(), meta(alert())).unwrap();
        assert_eq!(o.action, OverrideAction::Remove);
    }

    #[test]
    fn refusals() {
        let alert = || Subject::alert("a1");
        let mut no_reason = request("add", "T1059");
        no_reason.reason = None;
        assert_eq!(refuse(no_reason, alert()), OverrideError::MissingReason);
        let mut blank = request("add", "T1059");
        blank.reason = Some("  ".into());
        assert_eq!(refuse(blank, alert()), OverrideError::MissingReason);
        let mut unknown = request("add", "T1059");
        unknown.reason = Some("because".into());
        let e = refuse(unknown, alert());
        assert!(e.to_string().contains("wrong_subtechnique"), "{e}");
        assert!(matches!(
            refuse(request("swap", "T1059"), alert()),
            OverrideError::UnknownAction(_)
        ));
        assert_eq!(
            refuse(request("replace", "T1059"), alert()),
            OverrideError::ReplaceWithoutOld
        );
        let mut same = request("replace", "T1059");
        same.replaces_technique = Some("T1059".into());
        assert_eq!(refuse(same, alert()), OverrideError::ReplaceWithItself);
        let mut old_on_add = request("add", "T1059");
        old_on_add.replaces_technique = Some("T1003".into());
        assert_eq!(
            refuse(old_on_add, alert()),
            OverrideError::OldWithoutReplace
        );
        // Trial finding: the messages named `replaces_technique`, a field
        // the API does not have; it is `replaces` there.
        for e in [
            OverrideError::ReplaceWithoutOld,
            OverrideError::OldWithoutReplace,
        ] {
            let text = e.to_string();
            assert!(text.contains("`replaces`"), "{text}");
            assert!(!text.contains("replaces_technique"), "{text}");
        }
        let mut bad_old = request("replace", "T1059");
        bad_old.replaces_technique = Some("t1059-1".into());
        assert!(matches!(
            refuse(bad_old, alert()),
            OverrideError::BadId {
                field: "replaces",
                ..
            }
        ));
        assert!(matches!(
            refuse(request("add", "T1685"), alert()),
            OverrideError::Target {
                field: "technique",
                ..
            }
        ));
        let mut wrong_tactic = request("add", "T1059");
        wrong_tactic.tactic = Some("persistence".into());
        assert!(matches!(
            refuse(wrong_tactic, alert()),
            OverrideError::Target { .. }
        ));
        assert!(matches!(
            refuse(request("add", "T1059-1"), alert()),
            OverrideError::BadId { .. }
        ));
        let mut high = request("add", "T1059");
        high.confidence = Some(2.0);
        assert!(matches!(
            refuse(high, alert()),
            OverrideError::Confidence(_)
        ));
        // Incidents: the lead's rationale is required.
        assert_eq!(
            refuse(request("add", "T1059"), Subject::incident("i1")),
            OverrideError::MissingRationale
        );
    }

    #[test]
    fn a_taxonomy_update_may_replace_a_revoked_technique() {
        let mut req = request("replace", "T1059.001");
        req.replaces_technique = Some("T1086".into());
        req.reason = Some("taxonomy_update".into());
        let o = req
            .validate(&tiny_release(), meta(Subject::alert("a1")))
            .unwrap();
        assert_eq!(o.replaces.unwrap().technique.as_str(), "T1086");
    }
}
