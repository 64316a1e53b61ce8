//! The input of every view: daily rollup rows and the filter over them.
//!
//! A rollup row is what the store keeps per org, day, tactic, technique,
//! source, severity, connector, platform and confidence band, so that a
//! matrix request never scans raw mappings. Rows here carry no org: the
//! caller has already scoped them to one.

use chrono::NaiveDate;
use mapping::{Band, Severity, Source};
use serde::{Deserialize, Serialize};

/// Canonical mappings of one day that share every key field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupRow {
    /// The day the alerts were observed (UTC).
    pub day: NaiveDate,
    /// The tactic the mapping names, as stored: a shortname (`execution`) or
    /// an ATT&CK ID (`TA0002`). Empty when the mapping names none; the row
    /// then counts in each tactic of its technique.
    pub tactic: String,
    /// The technique's exact ATT&CK ID (`T1059.001`), sub-technique apart
    /// from its parent.
    pub technique: String,
    /// Who or what mapped.
    pub source: Source,
    /// The alerts' normalized severity.
    pub severity: Severity,
    /// The alert product the alerts came from (`sysmon`, `crowdstrike`).
    pub connector: String,
    /// The platform the alerts were raised on (`Windows`), when known.
    pub platform: Option<String>,
    /// The mappings' confidence band; mappings in the `Low` band are the
    /// ones the low-confidence overlay shows.
    pub band: Band,
    /// Number of canonical mappings.
    pub count: u64,
    /// Sum of the mappings' confidence values. Rows are keyed by severity,
    /// so the severity weight is applied at query time and the weights stay
    /// configurable without rebuilding the rollups.
    pub confidence_sum: f64,
}

/// A noisy source window an admin excluded: rows of `connector` whose day
/// falls in `[from, to)` are left out of views.
///
/// Rollups are daily, so a window covers whole days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionWindow {
    /// The connector whose rows are excluded (compared case-insensitively).
    pub connector: String,
    /// First excluded day.
    pub from: NaiveDate,
    /// First day no longer excluded.
    pub to: NaiveDate,
    /// Why the window was defined, shown with the view.
    pub reason: String,
}

impl ExclusionWindow {
    /// True when this window removes the row.
    pub fn excludes(&self, row: &RollupRow) -> bool {
        row.connector.eq_ignore_ascii_case(&self.connector)
            && self.from <= row.day
            && row.day < self.to
    }
}

/// Which rows a view counts. Empty lists and `None` bounds mean "no
/// restriction"; a non-empty list keeps rows whose value is in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MatrixFilter {
    /// First day counted.
    pub from: Option<NaiveDate>,
    /// First day no longer counted (the range is half-open, `[from, to)`).
    pub to: Option<NaiveDate>,
    /// Mapping sources kept.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Severities kept.
    #[serde(default)]
    pub severities: Vec<Severity>,
    /// Connectors kept (case-insensitive).
    #[serde(default)]
    pub connectors: Vec<String>,
    /// Platforms kept (case-insensitive); rows without a platform do not
    /// match a platform filter.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Confidence bands kept.
    #[serde(default)]
    pub bands: Vec<Band>,
    /// Noisy source windows left out.
    #[serde(default)]
    pub exclusions: Vec<ExclusionWindow>,
}

/// What the filter decides about one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Counted.
    Kept,
    /// Outside the filter's dimensions.
    Filtered,
    /// Removed by the exclusion window at this index of `exclusions`.
    Excluded(usize),
}

impl MatrixFilter {
    /// True when the row's day lies in `[from, to)`.
    pub fn in_time_range(&self, row: &RollupRow) -> bool {
        self.from.is_none_or(|from| from <= row.day) && self.to.is_none_or(|to| row.day < to)
    }

    /// True when the row passes every dimension filter (everything but the
    /// time range and the exclusion windows).
    pub fn matches_dimensions(&self, row: &RollupRow) -> bool {
        let any_eq = |list: &[String], value: &str| {
            list.is_empty() || list.iter().any(|v| v.eq_ignore_ascii_case(value))
        };
        (self.sources.is_empty() || self.sources.contains(&row.source))
            && (self.severities.is_empty() || self.severities.contains(&row.severity))
            && (self.bands.is_empty() || self.bands.contains(&row.band))
            && any_eq(&self.connectors, &row.connector)
            && (self.platforms.is_empty()
                || row
                    .platform
                    .as_deref()
                    .is_some_and(|p| any_eq(&self.platforms, p)))
    }

    /// The filter's decision, time range included. A row outside the
    /// dimensions is `Filtered` even when a window would also exclude it, so
    /// that a view lists an exclusion only when it removed rows that would
    /// otherwise have counted.
    pub(crate) fn verdict(&self, row: &RollupRow, check_time: bool) -> Verdict {
        if (check_time && !self.in_time_range(row)) || !self.matches_dimensions(row) {
            return Verdict::Filtered;
        }
        match self.exclusions.iter().position(|w| w.excludes(row)) {
            Some(index) => Verdict::Excluded(index),
            None => Verdict::Kept,
        }
    }
}
