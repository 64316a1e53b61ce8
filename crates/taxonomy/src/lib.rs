//! The ATT&CK knowledge model: STIX 2.0 / 2.1 parsing, Gate A validation,
//! release diffs and the dataset lifecycle rules.
//!
//! Pure logic: bytes in, values out. Fetching files or URLs and storing
//! results belong to other crates.

pub mod ids;
pub mod model;

pub use ids::{IdError, TacticId, TechniqueId};
pub use model::{
    Domain, IdentitySource, KillChainPhase, Matrix, Procedure, Release, ReleaseCounts, Status,
    Tactic, Technique, UnknownDomain,
};
