//! Analyst views over mapped activity: the ATT&CK matrix with counts and
//! severity-weighted intensity, anomaly flags, ATT&CK Navigator layers
//! (export, validation, import, comparison) and CSV exports.
//!
//! Pure logic: rollup rows and a parsed [`taxonomy::Release`] in, values out.
//! The `store` crate keeps the rollups (per org, day, tactic, technique,
//! source, severity, connector, platform and confidence band); `server` and
//! `cli` feed them here and serve what comes back.
//!
//! The flow for one matrix request: [`matrix::matrix`] filters
//! [`rollup::RollupRow`]s with a [`rollup::MatrixFilter`] and places them in
//! (tactic, technique) cells; [`anomaly::daily_counts`] and
//! [`anomaly::anomalies`] flag cells that spike against their own baseline,
//! and [`matrix::MatrixView::attach_anomalies`] puts the flags on the cells.
//! The view then goes out as JSON, as a Navigator layer
//! ([`navigator::navigator_layer`]) or as CSV ([`csv_export::view_csv`]).

#![warn(missing_docs)]

pub mod anomaly;
pub mod csv_export;
pub mod import;
pub mod matrix;
pub mod navigator;
mod placement;
pub mod rollup;

pub use anomaly::{Anomaly, AnomalyWindow, CellKey, DailyCounts, anomalies, daily_counts};
pub use csv_export::{CsvError, DrilldownRow, Redaction, drilldown_csv, view_csv};
pub use import::{
    Comparison, ComparisonStatus, ImportError, ImportedLayer, ImportedScore, LayerImport,
    UnknownTechnique, compare, import_layer,
};
pub use matrix::{
    AppliedExclusion, BandCounts, Cell, FormulaError, IntensityFormula, MatrixView, SourceCounts,
    TacticColumn, TechniqueTotal, UnplacedRow, matrix,
};
pub use navigator::{
    LAYER_FORMAT_VERSION, LayerOptions, LayerProblem, NAVIGATOR_VERSION, Provenance, ScoreBy,
    multi_layer, navigator_layer, validate_layer,
};
pub use rollup::{ExclusionWindow, MatrixFilter, RollupRow};
