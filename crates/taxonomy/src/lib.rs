//! The ATT&CK knowledge model: STIX 2.0 / 2.1 parsing, Gate A validation,
//! release diffs and the dataset lifecycle rules.
//!
//! Pure logic: bytes in, values out. Fetching files or URLs and storing
//! results belong to other crates.

pub mod diff;
pub mod ids;
pub mod lifecycle;
pub mod model;
pub mod parse;
pub mod validate;

pub use diff::{ReleaseDiff, diff, to_markdown};
pub use ids::{IdError, TacticId, TechniqueId};
pub use model::{
    Domain, IdentitySource, KillChainPhase, Matrix, Procedure, Release, ReleaseCounts, Status,
    Tactic, Technique, UnknownDomain,
};
pub use parse::{IdentityField, LoadHints, MAX_BUNDLE_BYTES, ParseError, parse, parse_with_limit};
pub use validate::{Finding, Severity, ValidationReport, validate};
