//! Compatibility of a technique reference with a release: is the id still
//! live there, deprecated, revoked (and by what), or unknown?

use serde::{Deserialize, Serialize};
use taxonomy::Release;

/// Where a technique id stands in a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RefStatus {
    /// Present, neither revoked nor deprecated.
    Live,
    /// Present but deprecated (ATT&CK gives no replacement).
    Deprecated,
    /// Revoked; `replaced_by` is the live technique the revocation chain
    /// ends at, when ATT&CK names one.
    Revoked {
        /// The replacement's ATT&CK id.
        replaced_by: Option<String>,
    },
    /// Not in the release at all.
    Unknown,
}

impl RefStatus {
    /// The status word (`live`, `deprecated`, `revoked`, `unknown`).
    pub fn as_str(&self) -> &'static str {
        match self {
            RefStatus::Live => "live",
            RefStatus::Deprecated => "deprecated",
            RefStatus::Revoked { .. } => "revoked",
            RefStatus::Unknown => "unknown",
        }
    }

    /// The replacement of a revoked technique.
    pub fn replaced_by(&self) -> Option<&str> {
        match self {
            RefStatus::Revoked { replaced_by } => replaced_by.as_deref(),
            _ => None,
        }
    }

    /// A sentence for a refusal or a report.
    pub fn describe(&self, release: &Release) -> String {
        let at = format!("{} {}", release.domain, release.version);
        match self {
            RefStatus::Live => format!("live in {at}"),
            RefStatus::Deprecated => format!("deprecated in {at}"),
            RefStatus::Revoked {
                replaced_by: Some(r),
            } => format!("revoked in {at}, replaced by {r}"),
            RefStatus::Revoked { replaced_by: None } => {
                format!("revoked in {at}, no replacement given")
            }
            RefStatus::Unknown => format!("unknown in {at}"),
        }
    }
}

/// Checks a technique id (any case) against a release. Revocations are
/// followed to their end (A revoked by B revoked by C answers C), so a
/// migration suggestion never points at another revoked object.
pub fn check_reference(technique_id: &str, release: &Release) -> RefStatus {
    let Some(found) = release.technique(technique_id.trim()) else {
        return RefStatus::Unknown;
    };
    if found.status.revoked {
        let mut replaced_by = found.status.revoked_by.clone();
        // Bounded walk: a cycle in broken data must not hang the caller.
        for _ in 0..16 {
            let Some(next) = replaced_by.as_deref().and_then(|id| release.technique(id)) else {
                break;
            };
            if !next.status.revoked {
                break;
            }
            match &next.status.revoked_by {
                Some(further) => replaced_by = Some(further.clone()),
                None => break,
            }
        }
        return RefStatus::Revoked { replaced_by };
    }
    if found.status.deprecated {
        return RefStatus::Deprecated;
    }
    RefStatus::Live
}

/// One mapping whose technique is not live in a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatFinding {
    /// The technique as referenced.
    pub technique: String,
    /// Its status in the release.
    pub status: RefStatus,
    /// How many references (mappings, rules) use it.
    pub references: usize,
}

/// Checks many references at once (the dataset compatibility check): every
/// distinct technique that is not live, with how often it is referenced,
/// ordered by technique id.
pub fn check_references<'a>(
    technique_ids: impl IntoIterator<Item = &'a str>,
    release: &Release,
) -> Vec<CompatFinding> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for id in technique_ids {
        *counts.entry(id.trim().to_ascii_uppercase()).or_default() += 1;
    }
    counts
        .into_iter()
        .filter_map(|(technique, references)| {
            let status = check_reference(&technique, release);
            (status != RefStatus::Live).then_some(CompatFinding {
                technique,
                status,
                references,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candidate::tests::tiny_release;

    #[test]
    fn statuses_in_a_small_release() {
        let r = tiny_release();
        assert_eq!(check_reference("t1059.001", &r), RefStatus::Live);
        assert_eq!(check_reference("T1064", &r), RefStatus::Deprecated);
        assert_eq!(
            check_reference("T1086", &r),
            RefStatus::Revoked {
                replaced_by: Some("T1059.001".into())
            }
        );
        assert_eq!(check_reference("T1685", &r), RefStatus::Unknown);
        assert_eq!(
            check_reference("T1086", &r).replaced_by(),
            Some("T1059.001")
        );
    }

    #[test]
    fn revocation_chains_end_at_a_live_technique() {
        let mut r = tiny_release();
        // T1003.001 revoked by T1086, itself revoked by T1059.001.
        let t = r
            .techniques
            .iter_mut()
            .find(|t| t.id == "T1003.001")
            .unwrap();
        t.status.revoked = true;
        t.status.revoked_by = Some("T1086".into());
        assert_eq!(
            check_reference("T1003.001", &r).replaced_by(),
            Some("T1059.001")
        );
    }

    #[test]
    fn many_references_are_counted_per_technique() {
        let r = tiny_release();
        let found = check_references(["T1086", "t1086", "T1059", "T9999", "T1064"], &r);
        let summary: Vec<(&str, &str, usize)> = found
            .iter()
            .map(|f| (f.technique.as_str(), f.status.as_str(), f.references))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("T1064", "deprecated", 1),
                ("T1086", "revoked", 2),
                ("T9999", "unknown", 1)
            ]
        );
    }
}
