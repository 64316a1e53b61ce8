//! Calibration: turning a raw score into the probability that the suggestion
//! is right, and measuring how well that worked.
//!
//! The map is an isotonic regression (pool-adjacent-violators) fitted on
//! held-out examples: it only assumes that a higher raw score is never less
//! likely to be right, which holds for the suggester's scores, and needs no
//! parametric shape (Platt scaling would force a sigmoid).

use serde::{Deserialize, Serialize};

/// A monotone, piecewise-linear map from raw score to probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    /// Block centres (mean raw score of each pooled block), ascending.
    xs: Vec<f64>,
    /// Probability of being right in each block, non-decreasing.
    ys: Vec<f64>,
}

impl Calibrator {
    /// The identity map on `[0, 1]`, used when a release has too few
    /// procedure examples to fit on.
    pub fn identity() -> Self {
        Self {
            xs: vec![0.0, 1.0],
            ys: vec![0.0, 1.0],
        }
    }

    /// Fits the map on `(raw score, was right)` pairs. Falls back to
    /// [`Calibrator::identity`] when given no pair.
    pub fn fit(samples: &[(f64, bool)]) -> Self {
        let mut sorted: Vec<(f64, bool)> = samples
            .iter()
            .copied()
            .filter(|(x, _)| x.is_finite())
            .collect();
        if sorted.is_empty() {
            return Self::identity();
        }
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));

        // Pool adjacent violators: each block keeps (sum x, sum y, count);
        // a block whose mean is not above its predecessor's merges into it.
        let mut blocks: Vec<(f64, f64, f64)> = Vec::with_capacity(sorted.len());
        for (x, right) in sorted {
            blocks.push((x, if right { 1.0 } else { 0.0 }, 1.0));
            while blocks.len() > 1 {
                let (x2, y2, n2) = blocks[blocks.len() - 1];
                let (x1, y1, n1) = blocks[blocks.len() - 2];
                if y1 / n1 < y2 / n2 {
                    break;
                }
                blocks.pop();
                let last = blocks.len() - 1;
                blocks[last] = (x1 + x2, y1 + y2, n1 + n2);
            }
        }

        Self {
            xs: blocks.iter().map(|(x, _, n)| x / n).collect(),
            ys: blocks.iter().map(|(_, y, n)| y / n).collect(),
        }
    }

    /// The probability for a raw score: linear between block centres,
    /// constant beyond the first and last, always within `[0, 1]`.
    pub fn apply(&self, raw: f64) -> f64 {
        if !raw.is_finite() {
            return 0.0;
        }
        // A map read back from storage could be malformed; it then acts as
        // the identity rather than panicking on a missing point.
        if self.xs.is_empty() || self.xs.len() != self.ys.len() {
            return raw.clamp(0.0, 1.0);
        }
        let last = self.xs.len() - 1;
        let p = if raw <= self.xs[0] {
            self.ys[0]
        } else if raw >= self.xs[last] {
            self.ys[last]
        } else {
            let i = self.xs.partition_point(|&x| x <= raw);
            let (x0, x1, y0, y1) = (self.xs[i - 1], self.xs[i], self.ys[i - 1], self.ys[i]);
            if x1 > x0 {
                y0 + (y1 - y0) * (raw - x0) / (x1 - x0)
            } else {
                y1
            }
        };
        p.clamp(0.0, 1.0)
    }
}

/// One bin of a reliability table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of the bin (inclusive).
    pub lower: f64,
    /// Upper edge of the bin (exclusive, inclusive for the last).
    pub upper: f64,
    /// Samples in the bin.
    pub count: usize,
    /// Mean confidence of the samples in the bin.
    pub mean_confidence: f64,
    /// Share of the samples that were right.
    pub accuracy: f64,
}

/// The reliability table behind the expected calibration error: one entry
/// per non-empty equal-width bin.
pub fn reliability(samples: &[(f64, bool)], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut sum_conf = vec![0.0; bins];
    let mut sum_right = vec![0.0; bins];
    let mut count = vec![0usize; bins];
    for &(conf, right) in samples {
        // Confidence 1.0 belongs to the last bin, not to an eleventh one.
        let bin = ((conf.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sum_conf[bin] += conf;
        sum_right[bin] += if right { 1.0 } else { 0.0 };
        count[bin] += 1;
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let n = count[b] as f64;
            ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: count[b],
                mean_confidence: sum_conf[b] / n,
                accuracy: sum_right[b] / n,
            }
        })
        .collect()
}

/// Expected calibration error over `bins` equal-width confidence bins:
/// the sample-weighted mean of |mean confidence - accuracy| per bin.
/// Zero for no sample.
pub fn expected_calibration_error(samples: &[(f64, bool)], bins: usize) -> f64 {
    let total = samples.len() as f64;
    if total == 0.0 {
        return 0.0;
    }
    reliability(samples, bins)
        .iter()
        .map(|b| (b.count as f64 / total) * (b.mean_confidence - b.accuracy).abs())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators() {
        // Scores 0.1..0.4 with outcomes F T F T: (T, F) at 0.2/0.3 violate
        // monotonicity and pool into one block at x = 0.25, y = 0.5.
        let c = Calibrator::fit(&[(0.1, false), (0.2, true), (0.3, false), (0.4, true)]);
        assert_eq!(c.xs, [0.1, 0.25, 0.4]);
        assert_eq!(c.ys, [0.0, 0.5, 1.0]);
        assert_eq!(c.apply(0.0), 0.0);
        assert!((c.apply(0.175) - 0.25).abs() < 1e-12);
        assert_eq!(c.apply(0.9), 1.0);
        assert_eq!(c.apply(f64::NAN), 0.0);
    }

    #[test]
    fn isotonic_output_is_monotone() {
        let samples: Vec<(f64, bool)> = (0..200)
            .map(|i| (f64::from(i) / 200.0, (i * 7919) % 13 < (i / 20)))
            .collect();
        let c = Calibrator::fit(&samples);
        let mut previous = 0.0;
        for i in 0..=100 {
            let p = c.apply(f64::from(i) / 100.0);
            assert!(p >= previous - 1e-12, "not monotone at {i}");
            previous = p;
        }
    }

    #[test]
    fn a_malformed_stored_map_acts_as_identity() {
        let c: Calibrator = serde_json::from_str(r#"{"xs": [], "ys": [0.5]}"#).expect("json");
        assert_eq!(c.apply(0.3), 0.3);
        assert_eq!(c.apply(7.0), 1.0);
    }

    #[test]
    fn empty_fit_is_identity() {
        assert_eq!(Calibrator::fit(&[]), Calibrator::identity());
        assert_eq!(Calibrator::identity().apply(0.3), 0.3);
    }

    #[test]
    fn ece_by_hand() {
        // Bin 0.9-1.0: two samples at 0.95, one right -> |0.95 - 0.5| = 0.45, weight 2/4.
        // Bin 0.2-0.3: two samples at 0.25, none right -> 0.25, weight 2/4.
        let samples = [(0.95, true), (0.95, false), (0.25, false), (0.25, false)];
        let ece = expected_calibration_error(&samples, 10);
        assert!((ece - (0.5 * 0.45 + 0.5 * 0.25)).abs() < 1e-12, "{ece}");
        assert_eq!(expected_calibration_error(&[(1.0, true)], 10), 0.0);
        assert_eq!(expected_calibration_error(&[], 10), 0.0);
        let table = reliability(&samples, 10);
        assert_eq!(table.len(), 2);
        assert_eq!(
            (table[0].lower, table[0].count, table[0].accuracy),
            (0.2, 2, 0.0)
        );
        assert_eq!(
            (table[1].upper, table[1].count, table[1].accuracy),
            (1.0, 2, 0.5)
        );
    }
}
