//! Anomaly flags: cells whose count in the current period spikes against
//! their own recent baseline.
//!
//! The test is a robust z-score: the baseline is the cell's counts in the
//! `baseline_periods` periods just before the current one (days without
//! activity count as zero), its centre the median and its spread the median
//! absolute deviation (MAD). Median and MAD, unlike mean and standard
//! deviation, are not dragged up by the very spikes being looked for, so one
//! earlier burst does not hide the next one.
//!
//! `score = 0.6745 x (observed - median) / max(MAD, 1)`. The 0.6745 factor
//! puts the score on the scale of a standard z-score for normal data
//! (Iglewicz and Hoaglin); flooring the MAD at one mapping keeps a perfectly
//! flat baseline (MAD 0) from turning any increase into an infinite score.
//! A cell is flagged when `score >= threshold` and `observed >= min_count`,
//! so that 0 -> 2 on a quiet cell is not reported as a spike.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use taxonomy::Release;

use crate::matrix::{Placer, cell_key};
use crate::placement::CellIndex;
use crate::rollup::{MatrixFilter, RollupRow, Verdict};

/// A matrix cell: (tactic ATT&CK ID, technique exact ATT&CK ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    /// Tactic ATT&CK ID (`TA0002`).
    pub tactic: String,
    /// Technique ATT&CK ID (`T1059.001`).
    pub technique: String,
}

/// Mappings per cell per day.
pub type DailyCounts = BTreeMap<CellKey, BTreeMap<NaiveDate, u64>>;

/// The periods an anomaly test compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyWindow {
    /// First day after the current period (the current period is
    /// `[end - period_days, end)`).
    pub end: NaiveDate,
    /// Length of the current period and of each baseline period, in days.
    pub period_days: u32,
    /// Number of baseline periods before the current one.
    pub baseline_periods: u32,
    /// Smallest observed count that can be flagged.
    pub min_count: u64,
    /// Smallest robust z-score that is flagged.
    pub threshold: f64,
}

impl AnomalyWindow {
    /// One-day periods against the previous 14 days, flagged from a robust
    /// z-score of 3.5 (Iglewicz and Hoaglin's outlier cut-off) and at least
    /// 5 mappings.
    pub fn daily(end: NaiveDate) -> Self {
        AnomalyWindow {
            end,
            period_days: 1,
            baseline_periods: 14,
            min_count: 5,
            threshold: 3.5,
        }
    }

    /// The method as text, for the UI and exports.
    pub fn text(&self) -> String {
        format!(
            "robust z-score = 0.6745 x (observed - median) / max(MAD, 1) over the previous {} \
             periods of {} day(s); flagged when >= {} and observed >= {}",
            self.baseline_periods, self.period_days, self.threshold, self.min_count
        )
    }
}

/// A flagged cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The cell.
    pub cell: CellKey,
    /// Mappings in the current period.
    pub observed: u64,
    /// Median of the baseline periods.
    pub baseline: f64,
    /// Median absolute deviation of the baseline periods.
    pub mad: f64,
    /// Robust z-score.
    pub score: f64,
}

/// Mappings per cell per day for every row that passes `filter`'s
/// dimensions and exclusion windows. The time range is not applied: the
/// anomaly test needs the days before it.
pub fn daily_counts<'a>(
    release: &Release,
    rows: impl Iterator<Item = &'a RollupRow>,
    filter: &MatrixFilter,
) -> DailyCounts {
    let placer = Placer::new(release);
    let mut index = CellIndex::new(&placer);
    let mut by_slot: rustc_hash::FxHashMap<usize, BTreeMap<NaiveDate, u64>> = Default::default();
    for row in rows {
        if filter.verdict(row, false) != Verdict::Kept {
            continue;
        }
        let at = index.resolve(row);
        // Rows no cell takes are reported by the matrix; no cell to flag here.
        let Ok(slots) = &index.resolved(at).cells else {
            continue;
        };
        for &slot in slots {
            *by_slot.entry(slot).or_default().entry(row.day).or_default() += row.count;
        }
    }
    let slots = index.slots();
    by_slot
        .into_iter()
        .map(|(slot, days)| (cell_key(slots[slot].tactic, slots[slot].technique), days))
        .collect()
}

/// The cells that spike in the current period of `window`, by cell key.
pub fn anomalies(daily: &DailyCounts, window: &AnomalyWindow) -> Vec<Anomaly> {
    let period = u64::from(window.period_days.max(1));
    let periods = u64::from(window.baseline_periods);
    // Period 0 is the current one, 1..=periods the baseline, going back.

    let mut flags = Vec::new();
    for (cell, days) in daily {
        let mut totals: HashMap<u64, u64> = HashMap::new();
        for (day, count) in days {
            if *day >= window.end {
                continue;
            }
            let back = (window.end - *day).num_days().unsigned_abs();
            // `back` is at least 1 here: day 1 before `end` is in period 0.
            let k = (back - 1) / period;
            if k <= periods {
                *totals.entry(k).or_default() += count;
            }
        }
        let observed = totals.get(&0).copied().unwrap_or(0);
        if observed < window.min_count || periods == 0 {
            continue;
        }
        let baseline: Vec<f64> = (1..=periods)
            .map(|k| totals.get(&k).copied().unwrap_or(0) as f64)
            .collect();
        let centre = median(baseline.clone());
        let mad = median(baseline.iter().map(|v| (v - centre).abs()).collect());
        let score = 0.6745 * (observed as f64 - centre) / mad.max(1.0);
        if score >= window.threshold {
            flags.push(Anomaly {
                cell: cell.clone(),
                observed,
                baseline: centre,
                mad,
                score,
            });
        }
    }
    flags
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, n).expect("valid day")
    }

    fn cell() -> CellKey {
        CellKey {
            tactic: "TA0002".into(),
            technique: "T1059.001".into(),
        }
    }

    #[test]
    fn median_of_even_and_odd_lists() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn spike_after_noisy_baseline_is_scored_by_hand() {
        // Baseline days 1..=14 alternate 4 and 6: median 5, MAD 1.
        let mut days: BTreeMap<NaiveDate, u64> = (1..=14)
            .map(|d| (day(d), if d % 2 == 0 { 6 } else { 4 }))
            .collect();
        days.insert(day(15), 30);
        let daily: DailyCounts = [(cell(), days)].into_iter().collect();

        let flags = anomalies(&daily, &AnomalyWindow::daily(day(16)));

        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].observed, 30);
        assert_eq!(flags[0].baseline, 5.0);
        assert_eq!(flags[0].mad, 1.0);
        assert!((flags[0].score - 0.6745 * 25.0).abs() < 1e-9);
    }

    #[test]
    fn multi_day_periods_sum_their_days() {
        // Periods of 7 days: three baseline weeks of 7 each, current week 70.
        let mut days: BTreeMap<NaiveDate, u64> = (1..=21).map(|d| (day(d), 1)).collect();
        for d in 22..=28 {
            days.insert(day(d), 10);
        }
        let daily: DailyCounts = [(cell(), days)].into_iter().collect();
        let window = AnomalyWindow {
            end: day(29),
            period_days: 7,
            baseline_periods: 3,
            min_count: 5,
            threshold: 3.5,
        };

        let flags = anomalies(&daily, &window);

        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].observed, 70);
        assert_eq!(flags[0].baseline, 7.0);
    }

    #[test]
    fn small_counts_are_not_flagged() {
        let days: BTreeMap<NaiveDate, u64> = [(day(15), 4)].into_iter().collect();
        let daily: DailyCounts = [(cell(), days)].into_iter().collect();
        assert!(anomalies(&daily, &AnomalyWindow::daily(day(16))).is_empty());
    }
}
