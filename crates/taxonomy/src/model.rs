//! The ATT&CK model of one release of one domain, as parsed from STIX.
//!
//! Every object keeps its STIX id (the key that stays stable across releases
//! and that diffs match on) and its ATT&CK external ID as published. IDs are
//! kept as published strings here: a malformed ID in a bundle is a Gate A
//! finding for the validator to report, not a reason to refuse the parse.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ATT&CK domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Domain {
    /// `enterprise-attack`
    #[serde(rename = "enterprise-attack")]
    Enterprise,
    /// `mobile-attack`
    #[serde(rename = "mobile-attack")]
    Mobile,
    /// `ics-attack`
    #[serde(rename = "ics-attack")]
    Ics,
}

impl Domain {
    /// All domains, in a stable order.
    pub const ALL: [Domain; 3] = [Domain::Enterprise, Domain::Mobile, Domain::Ics];

    /// The domain as ATT&CK spells it (`enterprise-attack`).
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Enterprise => "enterprise-attack",
            Domain::Mobile => "mobile-attack",
            Domain::Ics => "ics-attack",
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An input that names no known ATT&CK domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ATT&CK domain `{0}` (expected enterprise-attack, mobile-attack or ics-attack)")]
pub struct UnknownDomain(pub String);

impl FromStr for Domain {
    type Err = UnknownDomain;

    /// Accepts the ATT&CK spelling and the short forms `enterprise`, `mobile`, `ics`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "enterprise-attack" | "enterprise" => Ok(Domain::Enterprise),
            "mobile-attack" | "mobile" => Ok(Domain::Mobile),
            "ics-attack" | "ics" => Ok(Domain::Ics),
            _ => Err(UnknownDomain(s.to_string())),
        }
    }
}

/// Status flags shared by every ATT&CK object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `x_mitre_deprecated`.
    pub deprecated: bool,
    /// STIX `revoked`.
    pub revoked: bool,
    /// ATT&CK ID of the replacement named by a `revoked-by` relationship.
    pub revoked_by: Option<String>,
}

impl Status {
    /// Neither revoked nor deprecated.
    pub fn is_live(&self) -> bool {
        !self.deprecated && !self.revoked
    }
}

/// One `kill_chain_phases` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillChainPhase {
    /// `mitre-attack`, `mitre-mobile-attack`, `mitre-ics-attack`.
    pub kill_chain_name: String,
    /// The tactic shortname (`execution`).
    pub phase_name: String,
}

/// An adversary objective (`TA0002 Execution`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tactic {
    /// STIX id (`x-mitre-tactic--...`).
    pub stix_id: String,
    /// ATT&CK ID (`TA0002`).
    pub id: String,
    /// Display name (`Execution`).
    pub name: String,
    /// `x_mitre_shortname` (`execution`), what kill-chain phases refer to.
    pub shortname: String,
    /// Position in the domain's matrix, from 0; `None` when no matrix lists it.
    pub matrix_order: Option<usize>,
    /// Description text.
    pub description: String,
    /// `x_mitre_version` (`1.0`).
    pub version: String,
    /// STIX `modified` timestamp as published.
    pub modified: String,
    /// Deprecated / revoked flags.
    pub status: Status,
}

/// A technique or sub-technique (`T1059`, `T1059.001`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Technique {
    /// STIX id (`attack-pattern--...`).
    pub stix_id: String,
    /// ATT&CK ID as published (`T1059.001`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// `x_mitre_is_subtechnique`.
    pub is_subtechnique: bool,
    /// ATT&CK ID of the parent technique (from `subtechnique-of`, else from the ID).
    pub parent: Option<String>,
    /// Tactic shortnames from the kill-chain phases, in bundle order.
    pub tactics: Vec<String>,
    /// The kill-chain phases as published.
    pub kill_chain_phases: Vec<KillChainPhase>,
    /// `x_mitre_platforms`.
    pub platforms: Vec<String>,
    /// Description text.
    pub description: String,
    /// `x_mitre_detection` text (absent from recent releases: empty then).
    pub detection: String,
    /// `x_mitre_version` (`1.2`).
    pub version: String,
    /// STIX `modified` timestamp as published.
    pub modified: String,
    /// Deprecated / revoked flags.
    pub status: Status,
}

/// A matrix (`x-mitre-matrix`): the ordered list of a domain's tactics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// STIX id.
    pub stix_id: String,
    /// ATT&CK external ID (`enterprise-attack`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Tactic STIX ids in matrix order.
    pub tactic_refs: Vec<String>,
    /// `x_mitre_version`.
    pub version: String,
    /// STIX `modified` timestamp.
    pub modified: String,
    /// Deprecated / revoked flags.
    pub status: Status,
}

/// A procedure example: the description of a `uses` relationship from a
/// group, software or campaign to a technique.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Procedure {
    /// STIX id of the relationship.
    pub stix_id: String,
    /// STIX id of the group, software or campaign that uses the technique.
    pub source_ref: String,
    /// Name of that group, software or campaign, when the bundle has it.
    pub source_name: Option<String>,
    /// STIX id of the technique.
    pub technique_stix_id: String,
    /// ATT&CK ID of the technique, when the bundle has it.
    pub technique_id: Option<String>,
    /// The procedure text.
    pub description: String,
    /// Relationship revoked or deprecated.
    pub status: Status,
}

/// Where a release's identity came from, reported back to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The bundle's `x-mitre-collection` object.
    Collection,
    /// The file name (`enterprise-attack-18.1.json.gz`).
    FileName,
    /// `--release` / `--domain` given by the caller.
    Caller,
}

/// One parsed release of one domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The domain.
    pub domain: Domain,
    /// The release version (`18.1`).
    pub version: String,
    /// Where the release version came from. The domain comes from the
    /// bundle itself whenever its matrix or tactics name one (every official
    /// release does); sources that disagree are refused at parse time.
    pub identity_source: IdentitySource,
    /// STIX spec version of the bundle (`2.0`, `2.1`).
    pub spec_version: String,
    /// Hex SHA-256 of the bytes as given (compressed if they were gzipped).
    pub sha256: String,
    /// Tactics, in matrix order where a matrix gives one, then bundle order.
    pub tactics: Vec<Tactic>,
    /// Techniques and sub-techniques, in bundle order.
    pub techniques: Vec<Technique>,
    /// Matrices.
    pub matrices: Vec<Matrix>,
    /// Procedure examples.
    pub procedures: Vec<Procedure>,
}

impl Release {
    /// Every platform named by a technique of the release.
    pub fn platforms(&self) -> BTreeSet<String> {
        self.techniques
            .iter()
            .flat_map(|t| t.platforms.iter().cloned())
            .collect()
    }

    /// The technique with this ATT&CK ID, preferring a live object over a
    /// revoked or deprecated one that carries the same ID.
    pub fn technique(&self, id: &str) -> Option<&Technique> {
        let mut found = None;
        for t in self
            .techniques
            .iter()
            .filter(|t| t.id.eq_ignore_ascii_case(id))
        {
            if t.status.is_live() {
                return Some(t);
            }
            found.get_or_insert(t);
        }
        found
    }

    /// The sub-techniques whose parent is this technique ID, in bundle order
    /// (revoked and deprecated ones included: filter on `status` as needed).
    pub fn subtechniques<'a>(&'a self, parent_id: &'a str) -> impl Iterator<Item = &'a Technique> {
        self.techniques.iter().filter(move |t| {
            t.is_subtechnique
                && t.parent
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case(parent_id))
        })
    }

    /// The tactics a technique sits under (its matrix columns), in the
    /// technique's kill-chain order; shortnames no tactic has are skipped
    /// (Gate A reports them as `unknown_tactic`).
    pub fn tactics_of(&self, technique: &Technique) -> Vec<&Tactic> {
        technique
            .tactics
            .iter()
            .filter_map(|shortname| {
                // A live tactic wins over a retired one with the same shortname.
                let mut matches = self.tactics.iter().filter(|t| &t.shortname == shortname);
                let first = matches.next()?;
                if first.status.is_live() {
                    return Some(first);
                }
                Some(matches.find(|t| t.status.is_live()).unwrap_or(first))
            })
            .collect()
    }

    /// The tactic with this ATT&CK ID or shortname.
    pub fn tactic(&self, id_or_shortname: &str) -> Option<&Tactic> {
        self.tactics.iter().find(|t| {
            t.id.eq_ignore_ascii_case(id_or_shortname)
                || t.shortname.eq_ignore_ascii_case(id_or_shortname)
        })
    }

    /// Counts as the `dataset load` contract reports them.
    pub fn counts(&self) -> ReleaseCounts {
        let live = |s: &Status| s.is_live();
        ReleaseCounts {
            tactics: self.tactics.iter().filter(|t| live(&t.status)).count(),
            techniques: self
                .techniques
                .iter()
                .filter(|t| live(&t.status) && !t.is_subtechnique)
                .count(),
            subtechniques: self
                .techniques
                .iter()
                .filter(|t| live(&t.status) && t.is_subtechnique)
                .count(),
            deprecated: self
                .techniques
                .iter()
                .filter(|t| t.status.deprecated && !t.status.revoked)
                .count(),
            revoked: self.techniques.iter().filter(|t| t.status.revoked).count(),
            procedures: self.procedures.len(),
        }
    }
}

/// Object counts of a release. `tactics`, `techniques` and `subtechniques`
/// exclude revoked and deprecated objects; `deprecated` and `revoked` count
/// attack-patterns in those states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCounts {
    /// Live tactics.
    pub tactics: usize,
    /// Live techniques (not sub-techniques).
    pub techniques: usize,
    /// Live sub-techniques.
    pub subtechniques: usize,
    /// Deprecated (and not revoked) attack-patterns.
    pub deprecated: usize,
    /// Revoked attack-patterns.
    pub revoked: usize,
    /// Procedure examples kept.
    pub procedures: usize,
}
