//! The ATT&CK matrix of an org: rollup rows placed in (tactic, technique)
//! cells, with counts, severity-weighted intensity and confidence figures.

use std::collections::HashMap;

use mapping::{Band, Severity, Source};
use serde::{Deserialize, Serialize};
use taxonomy::{Release, Tactic, Technique};

use crate::anomaly::{Anomaly, CellKey};
use crate::placement::CellIndex;
use crate::rollup::{ExclusionWindow, MatrixFilter, RollupRow, Verdict};

/// How a cell's intensity is computed: the sum, over the cell's mappings, of
/// the alert's severity weight times the mapping's confidence.
///
/// The default weights make a critical alert mapped with certainty count as
/// much as twelve informational ones, and an AI guess at 0.3 count less than
/// a rule match at 1.0 on the same alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntensityFormula {
    /// Weight of alerts of unknown severity.
    pub unknown: f64,
    /// Weight of informational alerts.
    pub informational: f64,
    /// Weight of low-severity alerts.
    pub low: f64,
    /// Weight of medium-severity alerts.
    pub medium: f64,
    /// Weight of high-severity alerts.
    pub high: f64,
    /// Weight of critical alerts.
    pub critical: f64,
    /// Weight of fatal alerts (OCSF 6).
    pub fatal: f64,
}

impl Default for IntensityFormula {
    fn default() -> Self {
        IntensityFormula {
            // An unrated alert still counts, like an informational one.
            unknown: 0.25,
            informational: 0.25,
            low: 0.5,
            medium: 1.0,
            high: 2.0,
            critical: 3.0,
            fatal: 3.0,
        }
    }
}

/// A severity weight that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("severity weight `{severity}` is {value}; weights must be finite and not negative")]
pub struct FormulaError {
    /// The severity whose weight is wrong (`high`).
    pub severity: &'static str,
    /// The weight given.
    pub value: f64,
}

impl IntensityFormula {
    /// Checks that every weight is a finite, non-negative number, as a
    /// formula read from configuration must be before use.
    pub fn check(&self) -> Result<(), FormulaError> {
        let weights = [
            (Severity::Unknown, self.unknown),
            (Severity::Informational, self.informational),
            (Severity::Low, self.low),
            (Severity::Medium, self.medium),
            (Severity::High, self.high),
            (Severity::Critical, self.critical),
            (Severity::Fatal, self.fatal),
        ];
        match weights
            .into_iter()
            .find(|(_, w)| !w.is_finite() || *w < 0.0)
        {
            Some((severity, value)) => Err(FormulaError {
                severity: severity.as_str(),
                value,
            }),
            None => Ok(()),
        }
    }

    /// The weight of a severity.
    pub fn weight(&self, severity: Severity) -> f64 {
        match severity {
            Severity::Unknown => self.unknown,
            Severity::Informational => self.informational,
            Severity::Low => self.low,
            Severity::Medium => self.medium,
            Severity::High => self.high,
            Severity::Critical => self.critical,
            Severity::Fatal => self.fatal,
        }
    }

    /// The formula as the UI shows it next to the heatmap and the API
    /// returns it.
    pub fn text(&self) -> String {
        format!(
            "intensity = sum over the cell's mappings of severity weight x confidence; \
             severity weights: unknown {}, informational {}, low {}, medium {}, high {}, \
             critical {}, fatal {}",
            self.unknown,
            self.informational,
            self.low,
            self.medium,
            self.high,
            self.critical,
            self.fatal
        )
    }

    /// The intensity a row contributes.
    pub fn intensity(&self, row: &RollupRow) -> f64 {
        self.weight(row.severity) * row.confidence_sum
    }
}

/// Mappings per confidence band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandCounts {
    /// Low band.
    pub low: u64,
    /// Medium band.
    pub medium: u64,
    /// High band.
    pub high: u64,
}

impl BandCounts {
    fn add(&mut self, band: Band, count: u64) {
        match band {
            Band::Low => self.low += count,
            Band::Medium => self.medium += count,
            Band::High => self.high += count,
        }
    }
}

/// Mappings per source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounts {
    /// Manual overrides.
    pub manual: u64,
    /// Deterministic rules.
    pub rule: u64,
    /// AI-assisted suggestions.
    pub ai: u64,
}

impl SourceCounts {
    fn add(&mut self, source: Source, count: u64) {
        match source {
            Source::Manual => self.manual += count,
            Source::Rule => self.rule += count,
            Source::Ai => self.ai += count,
        }
    }
}

/// A tactic column of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacticColumn {
    /// ATT&CK ID (`TA0002`).
    pub id: String,
    /// Shortname (`execution`), what Navigator layers name.
    pub shortname: String,
    /// Display name (`Execution`).
    pub name: String,
}

/// One matrix cell: a (tactic, technique) pair with activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Tactic ATT&CK ID (`TA0002`).
    pub tactic: String,
    /// Tactic shortname (`execution`).
    pub tactic_shortname: String,
    /// Tactic display name.
    pub tactic_name: String,
    /// Technique ATT&CK ID at the exact level (`T1059.001`).
    pub technique: String,
    /// Technique display name.
    pub technique_name: String,
    /// The parent technique of a sub-technique, so the UI can group it.
    pub parent: Option<String>,
    /// Mappings counted in this cell.
    pub count: u64,
    /// Severity-weighted intensity (see [`IntensityFormula`]).
    pub intensity: f64,
    /// Mappings in the low confidence band.
    pub low_confidence: u64,
    /// `low_confidence / count`, the overlay the heatmap shows.
    pub low_confidence_share: f64,
    /// Mappings per confidence band.
    pub bands: BandCounts,
    /// Mappings per source.
    pub sources: SourceCounts,
    /// A spike against the cell's own baseline, when one was found.
    pub anomaly: Option<Anomaly>,
}

/// Activity of one technique at its exact ID, each mapping counted once
/// however many tactics it was shown under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TechniqueTotal {
    /// Technique ATT&CK ID (`T1059.001`).
    pub technique: String,
    /// Mappings.
    pub count: u64,
    /// Severity-weighted intensity.
    pub intensity: f64,
    /// Mappings in the low confidence band.
    pub low_confidence: u64,
}

/// An exclusion window that removed rows from this view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedExclusion {
    /// The window.
    pub window: ExclusionWindow,
    /// Mappings it removed.
    pub mappings_removed: u64,
}

/// Rows that count in no cell, reported instead of silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnplacedRow {
    /// The technique as stored.
    pub technique: String,
    /// The tactic as stored.
    pub tactic: String,
    /// Mappings.
    pub count: u64,
    /// Why no cell takes them.
    pub reason: String,
}

/// The matrix of one org for one release under one filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixView {
    /// The intensity formula, as text.
    pub formula: String,
    /// The domain of the release (`enterprise-attack`).
    pub domain: String,
    /// The release version (`18.1`).
    pub release: String,
    /// The filter the view was computed with.
    pub filter: MatrixFilter,
    /// Live tactic columns, in matrix order.
    pub tactics: Vec<TacticColumn>,
    /// Cells with activity, by tactic column then technique ID (so each
    /// sub-technique follows its parent).
    pub cells: Vec<Cell>,
    /// Per-technique totals at the exact ID, without double counting.
    pub techniques: Vec<TechniqueTotal>,
    /// Exclusion windows that removed rows, in filter order.
    pub exclusions_applied: Vec<AppliedExclusion>,
    /// Rows no cell takes (unknown technique or tactic); their mappings are
    /// still in `techniques`.
    pub unplaced: Vec<UnplacedRow>,
}

impl MatrixView {
    /// Puts anomaly flags on their cells; flags of cells without activity
    /// in this view are ignored (the view shows cells with activity only).
    pub fn attach_anomalies(&mut self, flags: &[Anomaly]) {
        let by_key: HashMap<(&str, &str), &Anomaly> = flags
            .iter()
            .map(|a| ((a.cell.tactic.as_str(), a.cell.technique.as_str()), a))
            .collect();
        for cell in &mut self.cells {
            if let Some(flag) = by_key.get(&(cell.tactic.as_str(), cell.technique.as_str())) {
                cell.anomaly = Some((*flag).clone());
            }
        }
    }

    /// The total of one technique at its exact ID, zero when it had none.
    pub fn technique_count(&self, technique: &str) -> u64 {
        self.techniques
            .iter()
            .find(|t| t.technique.eq_ignore_ascii_case(technique))
            .map_or(0, |t| t.count)
    }
}

/// Resolves rows to the cells they count in.
pub(crate) struct Placer<'r> {
    release: &'r Release,
    techniques: HashMap<String, &'r Technique>,
    /// Position of each tactic ATT&CK ID among the release's tactics, which
    /// are in matrix order.
    order: HashMap<&'r str, usize>,
}

impl<'r> Placer<'r> {
    pub(crate) fn new(release: &'r Release) -> Self {
        let mut techniques: HashMap<String, &Technique> = HashMap::new();
        for t in &release.techniques {
            // A live object wins over a revoked one that carries the same ID.
            let key = t.id.to_ascii_uppercase();
            match techniques.get(&key) {
                Some(existing) if existing.status.is_live() => {}
                _ => {
                    techniques.insert(key, t);
                }
            }
        }
        let order = release
            .tactics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        Placer {
            release,
            techniques,
            order,
        }
    }

    pub(crate) fn technique(&self, id: &str) -> Option<&'r Technique> {
        self.techniques
            .get(&id.trim().to_ascii_uppercase())
            .copied()
    }

    pub(crate) fn order(&self, tactic_id: &str) -> usize {
        self.order.get(tactic_id).copied().unwrap_or(usize::MAX)
    }

    /// The technique and tactics a row counts in, or why it counts in none.
    pub(crate) fn place(
        &self,
        row: &RollupRow,
    ) -> Result<(&'r Technique, Vec<&'r Tactic>), String> {
        let Some(technique) = self.technique(&row.technique) else {
            return Err(format!(
                "technique {} is not in {} {}",
                row.technique, self.release.domain, self.release.version
            ));
        };
        let named = row.tactic.trim();
        if named.is_empty() {
            let tactics = self.release.tactics_of(technique);
            if tactics.is_empty() {
                return Err(format!(
                    "technique {} has no tactic in the release",
                    technique.id
                ));
            }
            return Ok((technique, tactics));
        }
        match self.release.tactic(named) {
            Some(tactic) => Ok((technique, vec![tactic])),
            None => Err(format!(
                "tactic {named} is not in {} {}",
                self.release.domain, self.release.version
            )),
        }
    }
}

/// Computes the matrix of `rows` under `filter` for `release`.
///
/// A row that names a tactic counts in that tactic; a row that names none
/// counts in each tactic of its technique. `techniques` counts every row
/// once, at its exact technique ID, whatever the number of cells it shows
/// in. Rows whose technique or tactic the release does not know are listed
/// in `unplaced`.
pub fn matrix<'a>(
    release: &Release,
    rows: impl Iterator<Item = &'a RollupRow>,
    filter: &MatrixFilter,
    formula: &IntensityFormula,
) -> MatrixView {
    let placer = Placer::new(release);
    let mut index = CellIndex::new(&placer);
    let mut cells: Vec<Option<Cell>> = Vec::new();
    let mut totals: Vec<Option<TechniqueTotal>> = Vec::new();
    let mut removed = vec![0u64; filter.exclusions.len()];
    let mut unplaced: rustc_hash::FxHashMap<usize, (&'a RollupRow, u64)> = Default::default();

    for row in rows {
        match filter.verdict(row, true) {
            Verdict::Filtered => continue,
            Verdict::Excluded(index) => {
                removed[index] += row.count;
                continue;
            }
            Verdict::Kept => {}
        }
        let intensity = formula.intensity(row);
        let low = if row.band == Band::Low { row.count } else { 0 };

        let at = index.resolve(row);
        let resolved = index.resolved(at);
        if totals.len() <= resolved.total {
            totals.resize(resolved.total + 1, None);
        }
        let total = totals[resolved.total].get_or_insert_with(|| TechniqueTotal {
            technique: index.totals()[resolved.total].clone(),
            count: 0,
            intensity: 0.0,
            low_confidence: 0,
        });
        total.count += row.count;
        total.intensity += intensity;
        total.low_confidence += low;

        let slots = match &resolved.cells {
            Ok(slots) => slots,
            Err(_) => {
                unplaced.entry(at).or_insert((row, 0)).1 += row.count;
                continue;
            }
        };
        for &slot in slots {
            if cells.len() <= slot {
                cells.resize(slot + 1, None);
            }
            let cell = cells[slot].get_or_insert_with(|| {
                let placed = index.slots()[slot];
                empty_cell(placed.tactic, placed.technique)
            });
            cell.count += row.count;
            cell.intensity += intensity;
            cell.low_confidence += low;
            cell.bands.add(row.band, row.count);
            cell.sources.add(row.source, row.count);
        }
    }

    let cells = index
        .slots_in_matrix_order()
        .into_iter()
        .filter_map(|slot| cells.get_mut(slot).and_then(Option::take))
        .map(|mut cell| {
            cell.low_confidence_share = share(cell.low_confidence, cell.count);
            cell
        })
        .collect();
    let mut techniques: Vec<TechniqueTotal> = totals.into_iter().flatten().collect();
    techniques.sort_by(|a, b| a.technique.cmp(&b.technique));
    let mut unplaced: Vec<UnplacedRow> = unplaced
        .into_iter()
        .map(|(at, (row, count))| UnplacedRow {
            technique: row.technique.clone(),
            tactic: row.tactic.clone(),
            count,
            reason: index
                .resolved(at)
                .cells
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    unplaced.sort_by(|a, b| {
        (&a.technique, &a.tactic, &a.reason).cmp(&(&b.technique, &b.tactic, &b.reason))
    });
    let exclusions_applied = filter
        .exclusions
        .iter()
        .zip(removed)
        .filter(|(_, n)| *n > 0)
        .map(|(window, mappings_removed)| AppliedExclusion {
            window: window.clone(),
            mappings_removed,
        })
        .collect();
    MatrixView {
        formula: formula.text(),
        domain: release.domain.as_str().to_string(),
        release: release.version.clone(),
        filter: filter.clone(),
        tactics: release
            .tactics
            .iter()
            .filter(|t| t.status.is_live())
            .map(|t| TacticColumn {
                id: t.id.clone(),
                shortname: t.shortname.clone(),
                name: t.name.clone(),
            })
            .collect(),
        cells,
        techniques,
        exclusions_applied,
        unplaced,
    }
}

/// The cell key of a placed row, shared with the anomaly counts.
pub(crate) fn cell_key(tactic: &Tactic, technique: &Technique) -> CellKey {
    CellKey {
        tactic: tactic.id.clone(),
        technique: technique.id.clone(),
    }
}

fn empty_cell(tactic: &Tactic, technique: &Technique) -> Cell {
    Cell {
        tactic: tactic.id.clone(),
        tactic_shortname: tactic.shortname.clone(),
        tactic_name: tactic.name.clone(),
        technique: technique.id.clone(),
        technique_name: technique.name.clone(),
        parent: technique.parent.clone(),
        count: 0,
        intensity: 0.0,
        low_confidence: 0,
        low_confidence_share: 0.0,
        bands: BandCounts::default(),
        sources: SourceCounts::default(),
        anomaly: None,
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_formula_passes_its_check_and_bad_weights_do_not() {
        assert_eq!(IntensityFormula::default().check(), Ok(()));
        let negative = IntensityFormula {
            high: -1.0,
            ..IntensityFormula::default()
        };
        let err = negative.check().expect_err("negative weight");
        assert_eq!((err.severity, err.value), ("high", -1.0));
        let nan = IntensityFormula {
            low: f64::NAN,
            ..IntensityFormula::default()
        };
        assert_eq!(nan.check().map_err(|e| e.severity), Err("low"));
    }
}
