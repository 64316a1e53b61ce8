//! The evaluation behind `nexus-attack suggest evaluate`: train without the
//! held-out procedure examples, then suggest for each of them.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use taxonomy::Release;

use crate::calibration::{ReliabilityBin, expected_calibration_error, reliability};
use crate::input::SuggestInput;
use crate::split::{self, ProcedureExample};
use crate::suggester::{METHOD, Suggester, SuggesterConfig};

/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 10;

/// Figures of one evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// Release evaluated (`enterprise-attack 18.1`).
    pub release: String,
    /// Method name and revision.
    pub method: String,
    /// Model version of the suggester trained for the evaluation.
    pub model_version: String,
    /// Share of held-out examples whose technique is the first suggestion.
    pub recall_at_1: f64,
    /// Share whose technique is among the first three.
    pub recall_at_3: f64,
    /// Share whose technique is among the first five.
    pub recall_at_5: f64,
    /// Share whose first suggestion has the right parent technique
    /// (`T1059.001` and `T1059.003` share `T1059`).
    pub parent_recall_at_1: f64,
    /// Expected calibration error (10 equal-width bins) of the first
    /// suggestion's calibrated confidence (`raw_confidence`, before the cap).
    pub ece: f64,
    /// Reliability table of that confidence (the bins behind `ece`).
    pub reliability: Vec<ReliabilityBin>,
    /// The same ECE for the effective (capped) confidence.
    pub ece_capped: f64,
    /// Share of first suggestions whose confidence the evidence cap bounded.
    pub capped_share: f64,
    /// Recall@1 among first suggestions that were capped (weak evidence).
    pub capped_recall_at_1: f64,
    /// Recall@1 among first suggestions that were not capped.
    pub uncapped_recall_at_1: f64,
    /// Held-out examples.
    pub held_out: usize,
    /// Examples trained on.
    pub trained_on: usize,
    /// Training examples of the calibration fold.
    pub calibration_examples: usize,
    /// Seconds to build the suggester (both fits and calibration).
    pub build_seconds: f64,
    /// Held-out suggestions per second.
    pub suggestions_per_second: f64,
}

/// Trains on the release's procedure examples outside the evaluation split
/// and measures suggestions for the held-out ones (see [`crate::split`]).
pub fn evaluate(release: &Release, config: &SuggesterConfig) -> EvaluationReport {
    let held_out_ids = split::held_out_ids(release);
    let held_out: Vec<ProcedureExample> = split::procedure_examples(release)
        .into_iter()
        .filter(|p| held_out_ids.contains(&p.stix_id))
        .collect();

    let started = Instant::now();
    let suggester = Suggester::build_excluding(release, config, &held_out_ids);
    let build_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut hits = [0usize; 3];
    let mut parent_hits = 0usize;
    let mut top: Vec<(f64, bool)> = Vec::with_capacity(held_out.len());
    let mut top_capped: Vec<(f64, bool)> = Vec::with_capacity(held_out.len());
    let (mut answered, mut capped, mut capped_right, mut uncapped_right) = (0usize, 0, 0, 0);
    for example in &held_out {
        let suggestions = suggester.suggest(&SuggestInput::text(example.description.as_str()));
        let rank = suggestions
            .iter()
            .position(|s| s.technique == example.technique_id);
        for (hit, k) in hits.iter_mut().zip([1, 3, 5]) {
            *hit += usize::from(rank.is_some_and(|r| r < k));
        }
        let right = rank == Some(0);
        match suggestions.first() {
            Some(first) => {
                answered += 1;
                parent_hits +=
                    usize::from(parent(&first.technique) == parent(&example.technique_id));
                top.push((first.raw_confidence, right));
                top_capped.push((first.confidence, right));
                if first.capped {
                    capped += 1;
                    capped_right += usize::from(right);
                } else {
                    uncapped_right += usize::from(right);
                }
            }
            // No suggestion: a miss at confidence zero.
            None => {
                top.push((0.0, false));
                top_capped.push((0.0, false));
            }
        }
    }
    let suggest_seconds = started.elapsed().as_secs_f64();

    let n = held_out.len();
    let share = |k: usize, of: usize| if of == 0 { 0.0 } else { k as f64 / of as f64 };
    EvaluationReport {
        release: suggester.release_version().to_string(),
        method: METHOD.to_string(),
        model_version: suggester.model_version().to_string(),
        recall_at_1: share(hits[0], n),
        recall_at_3: share(hits[1], n),
        recall_at_5: share(hits[2], n),
        parent_recall_at_1: share(parent_hits, n),
        ece: expected_calibration_error(&top, ECE_BINS),
        reliability: reliability(&top, ECE_BINS),
        ece_capped: expected_calibration_error(&top_capped, ECE_BINS),
        capped_share: share(capped, n),
        capped_recall_at_1: share(capped_right, capped),
        uncapped_recall_at_1: share(uncapped_right, answered - capped),
        held_out: n,
        trained_on: suggester.procedure_count(),
        calibration_examples: suggester.calibration_examples(),
        build_seconds,
        suggestions_per_second: if suggest_seconds > 0.0 {
            n as f64 / suggest_seconds
        } else {
            0.0
        },
    }
}

/// The parent technique ID: the part before the dot.
fn parent(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_sub_and_technique() {
        assert_eq!(parent("T1059.001"), "T1059");
        assert_eq!(parent("T1059"), "T1059");
    }
}
