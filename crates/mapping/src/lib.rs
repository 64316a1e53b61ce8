//! Mapping candidates, confidence, precedence, rule language, rule packs and
//! incident aggregation: the pure logic of nexus-attack's mapping engine.
//!
//! No SQL, no HTTP, no async: values in, values out. The `store` crate
//! persists what this crate produces; `server` and `cli` expose it.
//!
//! The flow for one alert: [`alert::decode_alert`] turns OCSF, ECS or
//! native JSON into a [`alert::NormalizedAlert`]; [`engine::Mapper`] runs
//! the [`rules::RuleSet`] over it and reads its vendor-declared techniques,
//! producing [`candidate::MappingCandidate`]s; [`precedence::canonical`]
//! derives the canonical set from candidates and [`overrides::Override`]s.
//! Incidents aggregate their alerts' canonical sets in [`incident`].
//!
//! Around that flow: [`rules::parse_rule`] reads and validates mapping rules,
//! [`sigma`] turns a Sigma pack into mapping rules with a tag report,
//! [`compat::check_reference`] says whether a technique is still live in a
//! release, [`engine::simulate`] previews a rule change, and [`staleness`]
//! names the changes that make a mapping stale.

#![warn(missing_docs)]

pub mod alert;
pub mod candidate;
pub mod compat;
pub mod confidence;
pub mod engine;
pub mod incident;
pub mod overrides;
pub mod precedence;
pub mod rule_location;
pub mod rules;
pub mod sigma;
pub mod staleness;

/// Version of the JSON shapes this crate serializes (candidates, canonical
/// sets, overrides, incident profiles, import reports). Bumped on any
/// breaking change; additive fields keep it.
pub const MAPPING_CONTRACT_VERSION: &str = "1";

pub use alert::{
    AlertFormat, DeclaredTechnique, DecodeError, FieldSelection, NormalizedAlert, Severity,
    decode_alert, decode_alert_keeping, read_ndjson,
};
pub use candidate::{Evidence, MappingCandidate, MappingContext, Subject, SubjectKind};
pub use compat::{RefStatus, check_reference};
pub use confidence::{Band, BandThresholds, Confidence, Source};
pub use engine::Mapper;
pub use overrides::{Override, OverrideAction, OverrideStatus, ReasonCode};
pub use precedence::{CanonicalMapping, CanonicalSet, PrecedencePolicy, canonical};
pub use rule_location::{TextLocation, locate_rule_path};
pub use rules::{Rule, RuleError, RuleSet, parse_rule};
