//! The learned scoring core: tf-idf features, one centroid per technique,
//! complement naive Bayes weights over the same counts, and an inverted index
//! of procedure examples for nearest-neighbour search.
//!
//! Method (chosen by measurement, see the crate docs): a technique's score is
//! the cosine between the input and the technique's centroid (the normalised
//! sum of its procedure examples and, weighted up, its own name, description
//! and detection text), optionally plus a bonus for the most similar single
//! procedure example, standardised over the techniques and added to the
//! standardised complement naive Bayes score.

use std::collections::HashMap;

use crate::text;

/// A document to learn from: a technique's own text or one procedure example.
#[derive(Debug, Clone)]
pub(crate) struct TrainingDoc {
    /// Index of the technique (in the suggester's technique list).
    pub technique: u32,
    /// Unigram and bigram feature strings.
    pub features: Vec<String>,
    /// Weight of the document in its technique's centroid.
    pub weight: f32,
}

/// Parameters of one fit, taken from the suggester configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FitParams {
    pub min_document_frequency: u32,
    pub complement_alpha: f32,
    pub neighbour_max_df_share: f64,
}

/// Marks a centroid feature that no procedure example contributed.
const NO_PROCEDURE: u32 = u32::MAX;

/// A sparse vector: (feature id, weight), sorted by feature id.
pub(crate) type SparseVec = Vec<(u32, f32)>;

/// The fitted core. Procedure indices refer to the `procedures` slice given
/// to [`Core::fit`], technique indices to the suggester's technique list.
#[derive(Debug, Clone)]
pub(crate) struct Core {
    vocabulary: HashMap<String, u32>,
    terms: Vec<String>,
    idf: Vec<f32>,
    /// Per technique, its normalised centroid.
    centroid_rows: Vec<SparseVec>,
    /// Parallel to `centroid_rows`: the first procedure example with each
    /// feature, or [`NO_PROCEDURE`].
    centroid_sources: Vec<Vec<u32>>,
    /// Per feature, (technique, centroid weight, complement naive Bayes
    /// weight): one posting list serves both scorers.
    postings: Vec<Vec<(u32, f32, f32)>>,
    /// Per technique, log of its complement mass (see [`Core::score`]).
    complement_log_mass: Vec<f32>,
    /// Per feature, (procedure, weight); empty for features too common to
    /// tell neighbours apart.
    procedure_postings: Vec<Vec<(u32, f32)>>,
    /// Per procedure, its technique.
    procedure_technique: Vec<u32>,
    /// Per procedure, its feature ids, sorted.
    procedure_features: Vec<Vec<u32>>,
}

/// How the scorers are combined, taken from the suggester configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScoreWeights {
    pub neighbours: usize,
    pub neighbour: f32,
    pub complement: f32,
}

/// The scores of one input.
#[derive(Debug, Clone)]
pub(crate) struct Scored {
    /// The input's normalised tf-idf vector.
    pub query: SparseVec,
    /// Per technique, the centroid cosine alone: positive exactly when the
    /// technique shares a term with the input.
    pub lexical: Vec<f32>,
    /// Per technique, the combined score that ranks (standardised, so it
    /// can be negative).
    pub scores: Vec<f32>,
    /// Per technique, the most similar neighbour procedure, if any.
    pub best_neighbour: Vec<Option<u32>>,
}

impl Core {
    /// Learns from technique documents and procedure documents.
    pub fn fit(
        technique_count: usize,
        technique_docs: &[TrainingDoc],
        procedures: &[&TrainingDoc],
        params: FitParams,
    ) -> Self {
        let docs: Vec<&TrainingDoc> = technique_docs
            .iter()
            .chain(procedures.iter().copied())
            .collect();

        // Document frequency, counted once per document.
        let mut df: HashMap<&str, u32> = HashMap::new();
        for doc in &docs {
            let mut seen: Vec<&str> = doc.features.iter().map(String::as_str).collect();
            seen.sort_unstable();
            seen.dedup();
            for feature in seen {
                *df.entry(feature).or_insert(0) += 1;
            }
        }

        // The frequency floor filters the noise of procedure examples (typos,
        // one-off names); a word of a technique's own text is always kept, so
        // a release with few or no procedure examples still has a vocabulary.
        let own_text: std::collections::HashSet<&str> = technique_docs
            .iter()
            .flat_map(|d| d.features.iter().map(String::as_str))
            .collect();
        // Sorted terms give feature ids that do not depend on hash order, so
        // two builds from the same release are identical.
        let mut kept: Vec<(&str, u32)> = df
            .into_iter()
            .filter(|&(t, n)| n >= params.min_document_frequency.max(1) || own_text.contains(t))
            .collect();
        kept.sort_unstable();
        let n_docs = docs.len() as f32;
        let terms: Vec<String> = kept.iter().map(|(t, _)| (*t).to_string()).collect();
        let idf: Vec<f32> = kept
            .iter()
            .map(|&(_, n)| ((1.0 + n_docs) / (1.0 + n as f32)).ln() + 1.0)
            .collect();
        let vocabulary: HashMap<String, u32> = terms
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();

        let mut core = Core {
            vocabulary,
            terms,
            idf,
            centroid_rows: Vec::with_capacity(technique_count),
            centroid_sources: Vec::with_capacity(technique_count),
            postings: Vec::new(),
            complement_log_mass: Vec::new(),
            procedure_postings: Vec::new(),
            procedure_technique: procedures.iter().map(|d| d.technique).collect(),
            procedure_features: Vec::with_capacity(procedures.len()),
        };

        // Centroids: weighted sum of normalised document vectors. Each entry
        // also remembers the first procedure example that brought the
        // feature in, for evidence ([`NO_PROCEDURE`] when only the
        // technique's own text has it).
        let mut sums: Vec<HashMap<u32, (f32, u32)>> = vec![HashMap::new(); technique_count];
        for (d, doc) in docs.iter().enumerate() {
            let procedure = d
                .checked_sub(technique_docs.len())
                .map_or(NO_PROCEDURE, |p| p as u32);
            let v = core.vectorize(doc.features.iter().map(String::as_str));
            for &(f, w) in &v {
                let entry = sums[doc.technique as usize]
                    .entry(f)
                    .or_insert((0.0, NO_PROCEDURE));
                entry.0 += doc.weight * w;
                if entry.1 == NO_PROCEDURE {
                    entry.1 = procedure;
                }
            }
        }
        let mut mass_rows: Vec<SparseVec> = Vec::with_capacity(technique_count);
        for sum in sums {
            let mut row: Vec<(u32, (f32, u32))> = sum.into_iter().collect();
            row.sort_unstable_by_key(|&(f, _)| f);
            let raw: SparseVec = row.iter().map(|&(f, (w, _))| (f, w)).collect();
            let mut weights = raw.clone();
            normalize(&mut weights);
            mass_rows.push(raw);
            core.centroid_rows.push(weights);
            core.centroid_sources
                .push(row.iter().map(|&(_, (_, p))| p).collect());
        }

        // Complement naive Bayes (Rennie et al. 2003) over the same weighted
        // tf-idf mass: technique c scores sum_f x_f * -log(comp(c, f) / Z(c))
        // with comp(c, f) = total(f) + alpha - mass(c, f) and Z(c) its sum over
        // the vocabulary. Split as |x| * log Z(c) - sum_f x_f log(total(f) +
        // alpha) + sum over c's features of x_f log((total(f) + alpha) /
        // comp(c, f)); the middle term is the same for every technique and
        // is dropped, the last is sparse and shares the centroid postings.
        let alpha = params.complement_alpha.max(1e-6);
        let mut total = vec![0.0f32; core.terms.len()];
        for row in &mass_rows {
            for &(f, m) in row {
                total[f as usize] += m;
            }
        }
        let vocabulary_mass: f32 = total.iter().sum::<f32>() + alpha * core.terms.len() as f32;
        core.postings = vec![Vec::new(); core.terms.len()];
        for (t, (row, mass)) in core.centroid_rows.iter().zip(&mass_rows).enumerate() {
            let own: f32 = mass.iter().map(|&(_, m)| m).sum();
            core.complement_log_mass
                .push((vocabulary_mass - own).max(f32::MIN_POSITIVE).ln());
            for (&(f, w), &(_, m)) in row.iter().zip(mass) {
                let all = total[f as usize] + alpha;
                let complement = (all - m).max(alpha);
                core.postings[f as usize].push((t as u32, w, (all / complement).ln()));
            }
        }

        // Neighbour index over procedure examples.
        let vectors: Vec<SparseVec> = procedures
            .iter()
            .map(|d| core.vectorize(d.features.iter().map(String::as_str)))
            .collect();
        let mut procedure_df = vec![0usize; core.terms.len()];
        for v in &vectors {
            for &(f, _) in v {
                procedure_df[f as usize] += 1;
            }
        }
        let max_df = (params.neighbour_max_df_share * procedures.len() as f64).ceil() as usize;
        core.procedure_postings = vec![Vec::new(); core.terms.len()];
        for (p, v) in vectors.iter().enumerate() {
            for &(f, w) in v {
                if procedure_df[f as usize] <= max_df.max(1) {
                    core.procedure_postings[f as usize].push((p as u32, w));
                }
            }
            core.procedure_features
                .push(v.iter().map(|&(f, _)| f).collect());
        }

        core
    }

    /// The normalised tf-idf vector (sublinear tf) of a feature sequence;
    /// unknown features are ignored.
    pub fn vectorize<'a>(&self, features: impl Iterator<Item = &'a str>) -> SparseVec {
        self.vectorize_weighted(features.map(|f| (f, 1.0)))
    }

    /// Like [`Core::vectorize`], each occurrence counting `weight` times: a
    /// term seen once in a field of weight 0.5 adds 0.5 to its frequency.
    /// Frequencies below one stay linear, above one grow logarithmically.
    pub fn vectorize_weighted<'a>(
        &self,
        features: impl Iterator<Item = (&'a str, f32)>,
    ) -> SparseVec {
        let mut tf: HashMap<u32, f32> = HashMap::new();
        for (feature, weight) in features {
            if let Some(&id) = self.vocabulary.get(feature) {
                *tf.entry(id).or_insert(0.0) += weight;
            }
        }
        let mut v: SparseVec = tf
            .into_iter()
            .filter(|&(_, n)| n > 0.0)
            .map(|(f, n)| {
                let tf = if n >= 1.0 { 1.0 + n.ln() } else { n };
                (f, tf * self.idf[f as usize])
            })
            .collect();
        v.sort_unstable_by_key(|&(f, _)| f);
        normalize(&mut v);
        v
    }

    /// Scores every technique for a query vector: the centroid cosine plus
    /// the neighbour bonus, and the complement naive Bayes score, each
    /// standardised over the techniques (so their scales agree) and summed
    /// with `weights.complement` on the second.
    pub fn score(&self, query: SparseVec, weights: ScoreWeights) -> Scored {
        let n_techniques = self.centroid_rows.len();
        let mut lexical = vec![0.0f32; n_techniques];
        let query_mass: f32 = query.iter().map(|&(_, w)| w).sum();
        let mut complement: Vec<f32> = self
            .complement_log_mass
            .iter()
            .map(|&z| query_mass * z)
            .collect();
        for &(f, qw) in &query {
            for &(t, cw, nw) in &self.postings[f as usize] {
                lexical[t as usize] += qw * cw;
                complement[t as usize] += qw * nw;
            }
        }
        let mut scores = lexical.clone();
        let (neighbours, neighbour_weight) = (weights.neighbours, weights.neighbour);

        // Nearest procedure examples: accumulate similarities over the
        // touched procedures only, then keep the best per technique among
        // the top `neighbours`.
        let mut best_neighbour = vec![None; n_techniques];
        if neighbours > 0 && !self.procedure_technique.is_empty() {
            // A dense accumulator plus the list of touched procedures is
            // cheaper than a hash map at a few thousand hits per input.
            let mut similarity = vec![0.0f32; self.procedure_technique.len()];
            let mut touched: Vec<u32> = Vec::new();
            for &(f, qw) in &query {
                for &(p, pw) in &self.procedure_postings[f as usize] {
                    if similarity[p as usize] == 0.0 {
                        touched.push(p);
                    }
                    similarity[p as usize] += qw * pw;
                }
            }
            let mut ranked: Vec<(u32, f32)> = touched
                .into_iter()
                .map(|p| (p, similarity[p as usize]))
                .collect();
            let k = neighbours.min(ranked.len());
            if k > 0 {
                ranked
                    .select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                ranked.truncate(k);
                ranked.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            }
            let mut bonus = vec![0.0f32; n_techniques];
            for (p, sim) in ranked {
                let t = self.procedure_technique[p as usize] as usize;
                if best_neighbour[t].is_none() {
                    best_neighbour[t] = Some(p);
                    bonus[t] = sim;
                }
            }
            for (score, b) in scores.iter_mut().zip(bonus) {
                *score += neighbour_weight * b;
            }
        }

        standardize(&mut scores);
        standardize(&mut complement);
        for (score, c) in scores.iter_mut().zip(&complement) {
            *score += weights.complement * c;
        }

        Scored {
            query,
            lexical,
            scores,
            best_neighbour,
        }
    }

    /// The feature id of a term, if the model knows it.
    pub fn feature(&self, term: &str) -> Option<u32> {
        self.vocabulary.get(term).copied()
    }

    /// The term of a feature id.
    pub fn term(&self, feature: u32) -> &str {
        &self.terms[feature as usize]
    }

    /// The weight of a feature in a technique's centroid (0 when absent).
    pub fn centroid_weight(&self, technique: u32, feature: u32) -> f32 {
        let row = &self.centroid_rows[technique as usize];
        row.binary_search_by_key(&feature, |&(f, _)| f)
            .map(|i| row[i].1)
            .unwrap_or(0.0)
    }

    /// The first procedure example of a technique that contains a feature.
    pub fn first_procedure_with(&self, technique: u32, feature: u32) -> Option<u32> {
        let row = &self.centroid_rows[technique as usize];
        let i = row.binary_search_by_key(&feature, |&(f, _)| f).ok()?;
        Some(self.centroid_sources[technique as usize][i]).filter(|&p| p != NO_PROCEDURE)
    }

    /// How many technique centroids contain a feature: the measure of how
    /// generic a matching term is.
    pub fn technique_frequency(&self, feature: u32) -> usize {
        self.postings[feature as usize].len()
    }

    /// Whether a procedure example contains a feature.
    pub fn procedure_has(&self, procedure: u32, feature: u32) -> bool {
        self.procedure_features[procedure as usize]
            .binary_search(&feature)
            .is_ok()
    }

    /// Number of features in the vocabulary.
    pub fn vocabulary_size(&self) -> usize {
        self.terms.len()
    }
}

/// Shifts and scales values to mean 0 and standard deviation 1 (all zeros
/// when they are all equal).
fn standardize(values: &mut [f32]) {
    let n = values.len() as f32;
    if n == 0.0 {
        return;
    }
    let mean = values.iter().sum::<f32>() / n;
    let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let sd = variance.sqrt();
    for v in values.iter_mut() {
        *v = if sd > 0.0 { (*v - mean) / sd } else { 0.0 };
    }
}

/// Scales a sparse vector to unit length (left alone when all zero).
fn normalize(v: &mut SparseVec) {
    let norm = v.iter().map(|&(_, w)| w * w).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, w) in v.iter_mut() {
            *w /= norm;
        }
    }
}

/// Feature strings of a text: cleaned, tokenized, unigrams and bigrams.
pub(crate) fn text_features(raw: &str) -> Vec<String> {
    text::features(&text::tokens(&text::clean(raw), usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(technique: u32, text: &str) -> TrainingDoc {
        TrainingDoc {
            technique,
            features: text_features(text),
            weight: 1.0,
        }
    }

    const PARAMS: FitParams = FitParams {
        min_document_frequency: 1,
        complement_alpha: 0.3,
        neighbour_max_df_share: 1.0,
    };

    #[test]
    fn idf_follows_the_smoothed_formula() {
        // Three documents; "task" is in two of them: idf = ln(4/3) + 1.
        let techniques = [doc(0, "scheduled task"), doc(1, "registry run key")];
        let procedure = doc(0, "created a task");
        let core = Core::fit(2, &techniques, &[&procedure], PARAMS);
        let task = core.feature("task").expect("known term");
        assert!((core.idf[task as usize] - ((4.0f32 / 3.0).ln() + 1.0)).abs() < 1e-6);
        assert_eq!(core.technique_frequency(task), 1);
        assert!(core.procedure_has(0, task));
        // "created" is only in the procedure example, "scheduled" only in
        // the technique's own text.
        let created = core.feature("created").expect("known term");
        let scheduled = core.feature("scheduled").expect("known term");
        assert_eq!(core.first_procedure_with(0, created), Some(0));
        assert_eq!(core.first_procedure_with(0, scheduled), None);
        assert_eq!(core.first_procedure_with(1, created), None);
        assert_eq!(core.feature("unknown"), None);
    }

    #[test]
    fn scores_prefer_the_matching_centroid() {
        let techniques = [
            doc(0, "scheduled task schtasks"),
            doc(1, "registry run key"),
        ];
        let procedures = [
            doc(0, "used schtasks to create a task"),
            doc(1, "added a run key"),
        ];
        let refs: Vec<&TrainingDoc> = procedures.iter().collect();
        let core = Core::fit(2, &techniques, &refs, PARAMS);
        let q = core.vectorize(["schtasks", "task"].into_iter());
        let weights = ScoreWeights {
            neighbours: 1,
            neighbour: 0.2,
            complement: 0.3,
        };
        let scored = core.score(q, weights);
        assert!(scored.lexical[0] > 0.0);
        assert_eq!(scored.lexical[1], 0.0);
        // Two techniques, standardised: +1 and -1 on each scorer.
        assert!((scored.scores[0] - 1.3).abs() < 1e-5, "{:?}", scored.scores);
        assert!((scored.scores[1] + 1.3).abs() < 1e-5, "{:?}", scored.scores);
        assert_eq!(scored.best_neighbour, [Some(0), None]);
    }

    /// The sparse complement naive Bayes score equals the textbook dense
    /// formula up to a constant shared by all techniques: compared after
    /// standardising both over the techniques.
    #[test]
    fn complement_scores_match_the_dense_formula() {
        let techniques = [
            doc(0, "scheduled task schtasks"),
            doc(1, "registry run key"),
            doc(2, "scheduled registry service"),
        ];
        let procedures = [
            doc(0, "used schtasks to create a task"),
            doc(1, "added a run key"),
        ];
        let refs: Vec<&TrainingDoc> = procedures.iter().collect();
        let params = FitParams {
            min_document_frequency: 1,
            complement_alpha: 0.5,
            neighbour_max_df_share: 1.0,
        };
        let core = Core::fit(3, &techniques, &refs, params);
        let query = core.vectorize(["schtasks", "task", "registry"].into_iter());

        // Dense: mass[c][f] = sum over c's documents of weight * tf-idf.
        let n = core.vocabulary_size();
        let mut mass = vec![vec![0.0f64; n]; 3];
        for d in techniques.iter().chain(procedures.iter()) {
            for (f, w) in core.vectorize(d.features.iter().map(String::as_str)) {
                mass[d.technique as usize][f as usize] += f64::from(d.weight * w);
            }
        }
        let mut dense: Vec<f32> = (0..3)
            .map(|c| {
                let complement: Vec<f64> = (0..n)
                    .map(|f| (0..3).filter(|&o| o != c).map(|o| mass[o][f]).sum::<f64>() + 0.5)
                    .collect();
                let z: f64 = complement.iter().sum();
                query
                    .iter()
                    .map(|&(f, x)| f64::from(x) * -(complement[f as usize] / z).ln())
                    .sum::<f64>() as f32
            })
            .collect();
        standardize(&mut dense);

        let weights = ScoreWeights {
            neighbours: 0,
            neighbour: 0.0,
            complement: 1.0,
        };
        let scored = core.score(query, weights);
        let mut lexical = scored.lexical.clone();
        standardize(&mut lexical);
        for c in 0..3 {
            let complement = scored.scores[c] - lexical[c];
            assert!(
                (complement - dense[c]).abs() < 1e-4,
                "{c}: {complement} vs {}",
                dense[c]
            );
        }
    }

    #[test]
    fn vectors_are_unit_length() {
        let techniques = [doc(0, "alpha beta beta gamma")];
        let core = Core::fit(1, &techniques, &[], PARAMS);
        let v = core.vectorize(["alpha", "beta", "beta", "zzz"].into_iter());
        let norm: f32 = v.iter().map(|(_, w)| w * w).sum();
        assert!((norm - 1.0).abs() < 1e-6);
        assert_eq!(v.len(), 2);
    }
}
