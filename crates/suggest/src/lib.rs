//! Built-in AI-assisted technique suggester learned from an ATT&CK release.
//!
//! Given an alert's text and fields, the [`Suggester`] proposes ranked
//! techniques of the release, each with a calibrated confidence, a band, and
//! the evidence behind it: the input terms and the ATT&CK text they matched
//! (technique name, description, detection text or a procedure example).
//! It needs no network and no external model: it learns from the release
//! itself and is rebuilt when a new release is activated.
//!
//! # Method
//! Chosen by measurement on Enterprise 18.1 with the evaluation split of
//! [`split`] (figures of everything tried in `bench/suggest/README.md`):
//!
//! * text is cleaned of ATT&CK markup (citations dropped, links to groups,
//!   software and campaigns masked: the actor's name points away from the
//!   technique), lower-cased and cut into words; features are words and
//!   two-word phrases, weighted tf-idf with sublinear term frequency;
//! * each live technique gets a centroid: the normalised sum of its
//!   procedure examples and of its own name, description and detection text
//!   (weighted [`SuggesterConfig::technique_text_weight`]);
//! * an input's score for a technique is its cosine with the centroid,
//!   standardised over the techniques, plus 0.3 times the standardised
//!   complement naive Bayes score learned from the same weighted counts
//!   (both train by counting, so a build takes about a second);
//! * only techniques sharing a term with the input are suggested; the
//!   nearest procedure examples are looked up for evidence;
//! * a softmax over the ten best scores gives a raw probability, which an
//!   isotonic map fitted on held-out folds of the training examples turns
//!   into the calibrated confidence;
//! * a confidence backed by weak evidence is capped and forced to review
//!   (rule in [`Suggester::suggest_with_outcome`]).
//!
//! # Figures (Enterprise 18.1, issue-5 split, release build)
//! recall@1 0.671, recall@3 0.843, recall@5 0.892, parent recall@1 0.729,
//! ECE 0.018 (targets 0.45 / 0.65 / ECE <= 0.05; BM25 baselines 0.22 / 0.38).
//! Build about 1.2 s; about 5,500 alert-sized suggestions per second on one
//! core (`cargo bench -p suggest`). Reproduce with
//! `cargo run --release -p suggest --example evaluate`.
//!
//! # Use
//! ```no_run
//! # fn demo(release: &taxonomy::Release) {
//! use suggest::{SuggestInput, Suggester, SuggesterConfig};
//!
//! let suggester = Suggester::build(release, &SuggesterConfig::default());
//! let input = SuggestInput {
//!     title: Some("Scheduled task created".into()),
//!     command_line: Some("schtasks /create /tn Updater /tr C:\\Users\\Public\\u.exe".into()),
//!     ..SuggestInput::default()
//! };
//! for s in suggester.suggest(&input) {
//!     println!("{} {:.2} capped={} {:?}", s.technique, s.confidence, s.capped, s.evidence);
//! }
//! # }
//! ```
//!
//! # External provider and KPI
//! [`provider`] optionally asks an OpenAI-compatible endpoint to re-rank the
//! built-in candidates (never adding a technique or raising a confidence);
//! [`kpi::cap_gap`] aggregates the gap between calibrated and capped
//! confidence for the KPI work.
//!
//! # Bounds
//! An input is read up to [`text::MAX_INPUT_BYTES`] bytes and
//! [`text::MAX_INPUT_TOKENS`] tokens; beyond that it is truncated (and the
//! outcome says so). Suggestions are only ever live techniques of the
//! release the suggester was built from.

pub mod calibration;
pub mod evaluate;
pub mod input;
pub mod kpi;
mod model;
pub mod provider;
pub mod split;
pub mod suggester;
pub mod text;

pub use calibration::{Calibrator, ReliabilityBin, expected_calibration_error, reliability};
pub use evaluate::{EvaluationReport, evaluate};
pub use input::{InputField, SuggestInput};
pub use kpi::{CapGap, cap_gap};
pub use provider::{
    ExternalProvider, ProviderConfig, ProviderError, ProviderOutcome, ProviderStatus,
};
pub use split::{ProcedureExample, held_out_ids, is_held_out, procedure_examples};
pub use suggester::{
    AttackSource, Band, ConfigError, Evidence, MAX_CONFIDENCE, METHOD, SuggestOutcome, Suggester,
    SuggesterConfig, Suggestion,
};
