//! The evidence-cap KPI: how far the evidence cap pulls confidence below the
//! calibrated value, over any set of suggestions.
//!
//! Every [`Suggestion`] carries both values (`raw_confidence` before the cap,
//! `confidence` after it); this module only aggregates them, so the KPI work
//! can feed it a day of ingestion, one alert, or a test set alike.

use serde::{Deserialize, Serialize};

use crate::suggester::Suggestion;

/// Aggregate of the gap between calibrated (`raw_confidence`) and effective
/// (`confidence`) confidence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CapGap {
    /// Suggestions counted.
    pub suggestions: usize,
    /// Of those, how many the evidence cap marked as capped.
    pub capped: usize,
    /// `capped / suggestions`; 0 when there is none.
    pub capped_share: f64,
    /// Mean of `raw_confidence - confidence` over every suggestion (0 for
    /// the uncapped ones); 0 when there is none.
    pub mean_gap: f64,
    /// Mean gap over the capped suggestions only; 0 when none is capped.
    pub mean_gap_when_capped: f64,
    /// Largest single gap.
    pub max_gap: f64,
}

/// The cap gap of `suggestions`.
///
/// A gap is never negative: the cap only ever lowers a confidence, and a
/// value that would read as a negative gap (a caller mixing up the fields)
/// counts as 0 rather than hiding real gaps in the mean.
pub fn cap_gap<'a>(suggestions: impl IntoIterator<Item = &'a Suggestion>) -> CapGap {
    let mut out = CapGap::default();
    let mut total_gap = 0.0;
    let mut capped_gap = 0.0;
    for s in suggestions {
        let gap = (s.raw_confidence - s.confidence).max(0.0);
        out.suggestions += 1;
        total_gap += gap;
        out.max_gap = out.max_gap.max(gap);
        if s.capped {
            out.capped += 1;
            capped_gap += gap;
        }
    }
    if out.suggestions > 0 {
        out.capped_share = out.capped as f64 / out.suggestions as f64;
        out.mean_gap = total_gap / out.suggestions as f64;
    }
    if out.capped > 0 {
        out.mean_gap_when_capped = capped_gap / out.capped as f64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suggester::Band;

    fn suggestion(raw: f64, confidence: f64, capped: bool) -> Suggestion {
        Suggestion {
            technique: "T1059".into(),
            name: "Command and Scripting Interpreter".into(),
            confidence,
            raw_confidence: raw,
            band: Band::Low,
            score: 0.0,
            capped,
            cap_reason: None,
            forced_review: capped,
            evidence: Vec::new(),
        }
    }

    #[test]
    fn empty_input_gives_zeros() {
        assert_eq!(cap_gap(&[]), CapGap::default());
    }

    #[test]
    fn gaps_are_averaged_over_all_and_over_capped() {
        let list = [
            suggestion(0.80, 0.39, true),
            suggestion(0.50, 0.39, true),
            suggestion(0.90, 0.90, false),
            suggestion(0.20, 0.20, true),
        ];
        let kpi = cap_gap(&list);
        assert_eq!(kpi.suggestions, 4);
        assert_eq!(kpi.capped, 3);
        assert!((kpi.capped_share - 0.75).abs() < 1e-12);
        // Gaps 0.41, 0.11, 0, 0: mean 0.13 overall, 0.52 / 3 when capped.
        assert!((kpi.mean_gap - 0.13).abs() < 1e-12, "{}", kpi.mean_gap);
        assert!((kpi.mean_gap_when_capped - 0.52 / 3.0).abs() < 1e-12);
        assert!((kpi.max_gap - 0.41).abs() < 1e-12);
    }

    #[test]
    fn a_negative_gap_counts_as_zero() {
        let kpi = cap_gap(&[suggestion(0.3, 0.5, false)]);
        assert_eq!(kpi.mean_gap, 0.0);
        assert_eq!(kpi.max_gap, 0.0);
    }
}
