//! The suggester: built from one release, asked for ranked techniques with
//! calibrated, evidence-capped confidence.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use taxonomy::Release;

use crate::calibration::Calibrator;
use crate::input::{InputField, SuggestInput};
use crate::model::{self, Core, FitParams, ScoreWeights, Scored, TrainingDoc};
use crate::split::{self, ProcedureExample};
use crate::text;

/// Name and revision of the method, part of every model version: a change of
/// method must change the version even for the same release and settings.
pub const METHOD: &str = "tfidf-centroid+knn+cnb/isotonic/v2";

/// The softmax that turns scores into a raw probability runs over this many
/// best scores, whatever the number of suggestions asked for, so a
/// suggestion's confidence does not depend on how many the caller wants.
const SOFTMAX_CANDIDATES: usize = 10;

/// Calibration folds are added until at least this many training examples
/// have been scored (or all folds are used).
const MIN_CALIBRATION_EXAMPLES: usize = 2_000;

/// Highest confidence ever given: a suggestion learned from text is never a
/// certainty, even where the calibration fold happened to be all right.
pub const MAX_CONFIDENCE: f64 = 0.99;

/// Tunable parameters. The defaults are the measured best on Enterprise 18.1
/// (see the crate docs); every value is part of the model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SuggesterConfig {
    /// Most suggestions returned for one input.
    pub max_suggestions: usize,
    /// Weight of a technique's own text (name twice, description, detection)
    /// against one procedure example in its centroid.
    pub technique_text_weight: f32,
    /// Features seen in fewer training documents are dropped.
    pub min_document_frequency: u32,
    /// Nearest procedure examples consulted per input (0 disables). The
    /// nearest example of a technique is the one its procedure evidence
    /// cites.
    pub neighbours: usize,
    /// Weight of the best neighbour's similarity added to a technique's
    /// score. Off by default: with the complement naive Bayes score it no
    /// longer helped (see `bench/suggest/README.md`).
    pub neighbour_weight: f32,
    /// Features found in more than this share of procedure examples are not
    /// used to find neighbours (they are in the centroids all the same).
    pub neighbour_max_df_share: f64,
    /// Weight of the complement naive Bayes score against the centroid
    /// score (both standardised over the techniques); 0 disables it.
    pub complement_weight: f32,
    /// Additive smoothing of the complement naive Bayes counts.
    pub complement_alpha: f32,
    /// Temperature of the softmax over the best (standardised) scores.
    pub softmax_temperature: f64,
    /// A matching term is *generic* when more than this share of live
    /// techniques' centroids contain it. Words of one or two characters
    /// never count as specific.
    pub generic_term_share: f64,
    /// Fewer specific (non-generic) matching terms than this, and none from a
    /// structured field, is weak evidence.
    pub min_specific_terms: usize,
    /// Confidence ceiling for weak evidence. The default sits just below the
    /// medium band, so a capped suggestion always reads as low.
    pub weak_evidence_cap: f64,
    /// Lower edge of the medium band.
    pub medium_band: f64,
    /// Lower edge of the high band.
    pub high_band: f64,
    /// Most evidence terms shown per suggestion.
    pub max_evidence_terms: usize,
}

impl Default for SuggesterConfig {
    fn default() -> Self {
        Self {
            max_suggestions: 10,
            technique_text_weight: 5.0,
            min_document_frequency: 2,
            neighbours: 10,
            neighbour_weight: 0.0,
            neighbour_max_df_share: 0.2,
            complement_weight: 0.3,
            complement_alpha: 0.3,
            softmax_temperature: 1.0,
            generic_term_share: 0.05,
            min_specific_terms: 2,
            weak_evidence_cap: 0.39,
            medium_band: 0.40,
            high_band: 0.70,
            max_evidence_terms: 5,
        }
    }
}

/// A configuration value outside its meaningful range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("suggester setting `{field}` is {value}, expected {expected}")]
pub struct ConfigError {
    /// The setting's name as in the configuration (`softmax_temperature`).
    pub field: &'static str,
    /// The value given, as text.
    pub value: String,
    /// What would be accepted.
    pub expected: &'static str,
}

impl SuggesterConfig {
    /// How the scorers are combined.
    fn score_weights(&self) -> ScoreWeights {
        ScoreWeights {
            neighbours: self.neighbours,
            neighbour: self.neighbour_weight,
            complement: self.complement_weight,
        }
    }

    /// Checks every setting's range, so a mistyped configuration is refused
    /// with the setting's name instead of silently giving odd suggestions.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, value: String, expected| {
            Err(ConfigError {
                field,
                value,
                expected,
            })
        };
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !(1..=100).contains(&self.max_suggestions) {
            return err(
                "max_suggestions",
                self.max_suggestions.to_string(),
                "1 to 100",
            );
        }
        if !(self.technique_text_weight.is_finite() && self.technique_text_weight >= 0.0) {
            return err(
                "technique_text_weight",
                self.technique_text_weight.to_string(),
                "a finite number >= 0",
            );
        }
        if !(self.neighbour_weight.is_finite() && self.neighbour_weight >= 0.0) {
            return err(
                "neighbour_weight",
                self.neighbour_weight.to_string(),
                "a finite number >= 0",
            );
        }
        if !(self.complement_weight.is_finite() && self.complement_weight >= 0.0) {
            return err(
                "complement_weight",
                self.complement_weight.to_string(),
                "a finite number >= 0",
            );
        }
        if !(self.complement_alpha.is_finite() && self.complement_alpha > 0.0) {
            return err(
                "complement_alpha",
                self.complement_alpha.to_string(),
                "a finite number > 0",
            );
        }
        if !unit(self.neighbour_max_df_share) {
            return err(
                "neighbour_max_df_share",
                self.neighbour_max_df_share.to_string(),
                "0 to 1",
            );
        }
        if !(self.softmax_temperature.is_finite() && self.softmax_temperature > 0.0) {
            return err(
                "softmax_temperature",
                self.softmax_temperature.to_string(),
                "a finite number > 0",
            );
        }
        if !unit(self.generic_term_share) {
            return err(
                "generic_term_share",
                self.generic_term_share.to_string(),
                "0 to 1",
            );
        }
        if !unit(self.weak_evidence_cap) {
            return err(
                "weak_evidence_cap",
                self.weak_evidence_cap.to_string(),
                "0 to 1",
            );
        }
        if !(unit(self.medium_band) && unit(self.high_band) && self.medium_band <= self.high_band) {
            return err(
                "medium_band",
                format!("{} (high_band {})", self.medium_band, self.high_band),
                "0 <= medium_band <= high_band <= 1",
            );
        }
        Ok(())
    }
}

/// Confidence band, from the configured edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Below the medium edge.
    Low,
    /// From the medium edge to below the high edge.
    Medium,
    /// At or above the high edge.
    High,
}

/// Which ATT&CK text a matching term was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackSource {
    /// The technique's name.
    Name,
    /// The technique's description.
    Description,
    /// The technique's detection text.
    Detection,
    /// A procedure example of the technique.
    Procedure,
}

/// One piece of evidence: input terms and the ATT&CK text they matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The input field the terms were found in (a structured field first
    /// when a term occurs in several).
    pub input_field: InputField,
    /// The matching terms (lower-cased words or two-word phrases).
    pub input_terms: Vec<String>,
    /// Where in ATT&CK they matched.
    pub attack_source: AttackSource,
    /// A short excerpt of that ATT&CK text around the first term.
    pub attack_excerpt: String,
    /// STIX id of the procedure example, for [`AttackSource::Procedure`].
    pub procedure_stix_id: Option<String>,
    /// Share of the technique's lexical score these terms carry (0 to 1).
    pub weight: f64,
}

/// One suggested technique.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// ATT&CK ID (`T1053.005`), always a live technique of the release.
    pub technique: String,
    /// Technique name.
    pub name: String,
    /// Effective confidence: calibrated, then capped on weak evidence.
    pub confidence: f64,
    /// Calibrated confidence before the evidence cap; `raw_confidence -
    /// confidence` is the cap gap tracked as a KPI.
    pub raw_confidence: f64,
    /// Band of the effective confidence.
    pub band: Band,
    /// The model's uncalibrated score, for diagnostics.
    pub score: f64,
    /// Whether the evidence cap lowered (or bounded) the confidence.
    pub capped: bool,
    /// Why the cap applies, in words for the analyst.
    pub cap_reason: Option<String>,
    /// Must go to the review queue whatever its confidence (weak evidence).
    pub forced_review: bool,
    /// Evidence, strongest first.
    pub evidence: Vec<Evidence>,
}

/// A suggestion run with what the suggester did to the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestOutcome {
    /// Ranked suggestions, best first.
    pub suggestions: Vec<Suggestion>,
    /// The input exceeded [`text::MAX_INPUT_BYTES`] or
    /// [`text::MAX_INPUT_TOKENS`] and only its beginning was read.
    pub input_truncated: bool,
    /// Distinct input features the model knows.
    pub known_terms: usize,
}

/// A live technique of the release, with what evidence needs.
#[derive(Debug, Clone)]
struct TechniqueEntry {
    id: String,
    name: String,
    description: String,
    detection: String,
    /// Feature ids of name, description and detection, sorted.
    name_features: Vec<u32>,
    description_features: Vec<u32>,
    detection_features: Vec<u32>,
}

/// The built-in suggester of one release. Immutable once built; share it
/// between threads freely.
#[derive(Debug, Clone)]
pub struct Suggester {
    config: SuggesterConfig,
    techniques: Vec<TechniqueEntry>,
    /// The procedure examples trained on (index = procedure index of `core`).
    procedures: Vec<ProcedureExample>,
    /// Per procedure example, its text cleaned of ATT&CK markup (for
    /// excerpts).
    procedure_texts: Vec<String>,
    core: Core,
    calibrator: Calibrator,
    calibration_examples: usize,
    model_version: String,
    release_version: String,
}

impl Suggester {
    /// Builds the suggester from every procedure example of the release.
    ///
    /// Building does not refuse a configuration: out-of-range values are
    /// clamped where they would break arithmetic. Call
    /// [`SuggesterConfig::validate`] first to refuse them with a message.
    pub fn build(release: &Release, config: &SuggesterConfig) -> Self {
        Self::build_excluding(release, config, &HashSet::new())
    }

    /// Builds the suggester without the procedure examples whose relationship
    /// STIX ids are in `held_out` (for evaluation).
    ///
    /// Calibration is fitted on folds carved from the training examples by
    /// a second hash rule ([`split::calibration_fold`]): for each fold used, a
    /// model learns from the other training examples and scores that fold;
    /// folds are added until 2,000 examples are scored. The final model then
    /// learns from all training examples.
    pub fn build_excluding(
        release: &Release,
        config: &SuggesterConfig,
        held_out: &HashSet<String>,
    ) -> Self {
        let technique_count = release
            .techniques
            .iter()
            .filter(|t| t.status.is_live())
            .count();
        let index: HashMap<&str, u32> = release
            .techniques
            .iter()
            .filter(|t| t.status.is_live())
            .enumerate()
            .map(|(i, t)| (t.stix_id.as_str(), i as u32))
            .collect();
        let procedures: Vec<ProcedureExample> = split::procedure_examples(release)
            .into_iter()
            .filter(|p| !held_out.contains(&p.stix_id))
            .collect();

        let technique_docs: Vec<TrainingDoc> = release
            .techniques
            .iter()
            .filter(|t| t.status.is_live())
            .enumerate()
            .map(|(i, t)| TrainingDoc {
                technique: i as u32,
                features: model::text_features(&format!(
                    "{name}. {name}. {}\n{}",
                    t.description,
                    t.detection,
                    name = t.name
                )),
                weight: config.technique_text_weight,
            })
            .collect();
        // `procedure_examples` keeps only examples of live techniques, the
        // same set `index` is built from, so the lookup cannot miss.
        let procedure_docs: Vec<TrainingDoc> = procedures
            .iter()
            .map(|p| TrainingDoc {
                technique: index[p.technique_stix_id.as_str()],
                features: model::text_features(&p.description),
                weight: 1.0,
            })
            .collect();
        let params = FitParams {
            min_document_frequency: config.min_document_frequency,
            complement_alpha: config.complement_alpha,
            neighbour_max_df_share: config.neighbour_max_df_share,
        };

        // Calibration: score each fold with a model that never saw it. Fold
        // 0 alone is enough for a large release; a small one (Mobile, ICS)
        // uses further folds until enough examples are scored, at the cost of
        // one more fit per fold.
        let mut samples: Vec<(f64, bool)> = Vec::new();
        let mut calibration_examples = 0;
        for fold in 0..split::CALIBRATION_FOLDS {
            if calibration_examples >= MIN_CALIBRATION_EXAMPLES {
                break;
            }
            let (scored, rest): (Vec<usize>, Vec<usize>) = (0..procedures.len())
                .partition(|&i| split::calibration_fold(&procedures[i].stix_id) == fold);
            if scored.is_empty() {
                continue;
            }
            let rest_docs: Vec<&TrainingDoc> = rest.iter().map(|&i| &procedure_docs[i]).collect();
            let fitted = Core::fit(technique_count, &technique_docs, &rest_docs, params);
            for &i in &scored {
                samples.extend(calibration_samples(&fitted, &procedure_docs[i], config));
            }
            calibration_examples += scored.len();
        }
        let calibrator = if samples.is_empty() {
            Calibrator::identity()
        } else {
            Calibrator::fit(&samples)
        };

        let all_docs: Vec<&TrainingDoc> = procedure_docs.iter().collect();
        let core = Core::fit(technique_count, &technique_docs, &all_docs, params);

        let techniques = live_techniques(release, &core);

        Self {
            model_version: model_version(release, config, held_out),
            procedure_texts: procedures
                .iter()
                .map(|p| text::clean(&p.description))
                .collect(),
            release_version: format!("{} {}", release.domain, release.version),
            config: config.clone(),
            techniques,
            procedures,
            core,
            calibrator,
            calibration_examples,
        }
    }

    /// Ranked suggestions for an input, best first, at most
    /// `max_suggestions`. Empty when the input has no term the model knows.
    pub fn suggest(&self, input: &SuggestInput) -> Vec<Suggestion> {
        self.suggest_with_outcome(input).suggestions
    }

    /// Like [`Suggester::suggest`], also saying whether the input was
    /// truncated and how many known terms it had.
    ///
    /// # Evidence cap
    /// A suggestion's evidence is *weak* when fewer than `min_specific_terms`
    /// (2) of its matching terms are specific and none of its specific terms
    /// comes from a structured field (command line, process, parent process,
    /// event ID, registry path). A term is specific when it is a word of three
    /// characters or more, or a two-word phrase, found in at most
    /// `generic_term_share` (5%) of the live techniques' centroids. Weak
    /// evidence caps the confidence at `weak_evidence_cap` (0.39, below the
    /// medium band), sets `capped` and `forced_review`, and says why in
    /// `cap_reason`; `raw_confidence` keeps the calibrated value before the
    /// cap.
    pub fn suggest_with_outcome(&self, input: &SuggestInput) -> SuggestOutcome {
        let (fields, input_truncated) = self.read_input(input);
        let field_features: Vec<(InputField, u32)> = fields
            .iter()
            .flat_map(|(field, features)| {
                features
                    .iter()
                    .filter_map(move |f| self.core.feature(f).map(|id| (*field, id)))
            })
            .collect();
        let query = self
            .core
            .vectorize_weighted(fields.iter().flat_map(|(field, features)| {
                let weight = field.weight();
                features.iter().map(move |f| (f.as_str(), weight))
            }));
        let known_terms = query.len();
        if query.is_empty() {
            return SuggestOutcome {
                suggestions: Vec::new(),
                input_truncated,
                known_terms,
            };
        }

        let scored = self.core.score(query, self.config.score_weights());
        let ranked = rank(&scored.scores, &scored.lexical, self.config.max_suggestions);
        let raw = probabilities(&scored.scores, &ranked, self.config.softmax_temperature);
        let suggestions = ranked
            .iter()
            .zip(raw)
            .take(self.config.max_suggestions)
            .map(|(&t, raw)| self.suggestion(t, raw, &scored, &field_features))
            .collect();

        SuggestOutcome {
            suggestions,
            input_truncated,
            known_terms,
        }
    }

    /// The model version: a hash of the release identity, the method, the
    /// configuration and the held-out set.
    pub fn model_version(&self) -> &str {
        &self.model_version
    }

    /// The release the suggester was built from (`enterprise-attack 18.1`).
    pub fn release_version(&self) -> &str {
        &self.release_version
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SuggesterConfig {
        &self.config
    }

    /// Live techniques it can suggest.
    pub fn technique_count(&self) -> usize {
        self.techniques.len()
    }

    /// Procedure examples it learned from.
    pub fn procedure_count(&self) -> usize {
        self.procedures.len()
    }

    /// Procedure examples of the calibration fold (each gives up to ten
    /// candidate samples to the calibration map).
    pub fn calibration_examples(&self) -> usize {
        self.calibration_examples
    }

    /// Distinct features (words and two-word phrases) in its vocabulary.
    pub fn vocabulary_size(&self) -> usize {
        self.core.vocabulary_size()
    }

    /// Fields with their features, within the input bounds.
    fn read_input(&self, input: &SuggestInput) -> (Vec<(InputField, Vec<String>)>, bool) {
        let mut bytes_left = text::MAX_INPUT_BYTES;
        let mut tokens_left = text::MAX_INPUT_TOKENS;
        let mut truncated = false;
        let mut out = Vec::new();
        for (field, value) in input.fields() {
            if bytes_left == 0 || tokens_left == 0 {
                truncated = true;
                break;
            }
            let cut = text::truncate(&value, bytes_left);
            truncated |= cut.len() < value.len();
            bytes_left -= cut.len();
            let tokens = text::tokens(&text::clean(cut), tokens_left);
            // The tokenizer stops at the limit: a full budget means there
            // may have been more.
            truncated |= tokens.len() == tokens_left;
            tokens_left -= tokens.len();
            out.push((field, text::features(&tokens)));
        }
        (out, truncated)
    }

    fn suggestion(
        &self,
        technique: u32,
        raw: f64,
        scored: &Scored,
        field_features: &[(InputField, u32)],
    ) -> Suggestion {
        let entry = &self.techniques[technique as usize];

        // Terms of the input that the technique's centroid shares, with
        // their contribution to the lexical score.
        let mut matched: Vec<(u32, f64)> = scored
            .query
            .iter()
            .map(|&(f, qw)| (f, f64::from(qw * self.core.centroid_weight(technique, f))))
            .filter(|&(_, c)| c > 0.0)
            .collect();
        matched.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let lexical: f64 = matched.iter().map(|(_, c)| c).sum();

        let generic_limit =
            (self.config.generic_term_share * self.techniques.len() as f64).max(1.0);
        let specific: Vec<u32> = matched
            .iter()
            .map(|&(f, _)| f)
            .filter(|&f| {
                // Two-character words ("rc", "sh", "10") match by accident
                // too easily (any binary blob is full of them) to count as
                // specific on their own.
                let term = self.core.term(f);
                (term.contains(' ') || term.chars().nth(2).is_some())
                    && self.core.technique_frequency(f) as f64 <= generic_limit
            })
            .collect();
        let field_evidence = field_features
            .iter()
            .any(|&(field, f)| field.is_structured() && specific.contains(&f));
        let weak = specific.len() < self.config.min_specific_terms && !field_evidence;

        let raw_confidence = self.calibrator.apply(raw).min(MAX_CONFIDENCE);
        let (confidence, cap_reason) = if weak {
            let reason = match specific.len() {
                0 => "no specific term of the input matches this technique".to_string(),
                n => format!(
                    "only {n} specific matching term(s), fewer than {}, and no structured-field evidence",
                    self.config.min_specific_terms
                ),
            };
            (
                raw_confidence.min(self.config.weak_evidence_cap),
                Some(reason),
            )
        } else {
            (raw_confidence, None)
        };

        // Evidence shows the specific terms; generic ones ("file", "used")
        // only when nothing specific matched, so there is always something
        // to check.
        let shown: Vec<(u32, f64)> = if specific.is_empty() {
            matched.clone()
        } else {
            matched
                .iter()
                .copied()
                .filter(|(f, _)| specific.contains(f))
                .collect()
        };
        let evidence = self.evidence(technique, entry, &shown, lexical, scored, field_features);
        Suggestion {
            technique: entry.id.clone(),
            name: entry.name.clone(),
            confidence,
            raw_confidence,
            band: self.band(confidence),
            score: f64::from(scored.scores[technique as usize]),
            capped: weak,
            cap_reason,
            forced_review: weak,
            evidence,
        }
    }

    fn evidence(
        &self,
        technique: u32,
        entry: &TechniqueEntry,
        matched: &[(u32, f64)],
        lexical: f64,
        scored: &Scored,
        field_features: &[(InputField, u32)],
    ) -> Vec<Evidence> {
        const EXCERPT_WIDTH: usize = 80;
        let neighbour = scored.best_neighbour[technique as usize];
        let mut out: Vec<Evidence> = Vec::new();
        for &(f, contribution) in matched.iter().take(self.config.max_evidence_terms) {
            let term = self.core.term(f);
            let input_field = field_features
                .iter()
                .filter(|&&(_, g)| g == f)
                .map(|&(field, _)| field)
                .min_by_key(|field| (!field.is_structured(), *field))
                .unwrap_or(InputField::Text);
            let has = |features: &[u32]| features.binary_search(&f).is_ok();

            let (attack_source, attack_excerpt, procedure_stix_id) = if has(&entry.name_features) {
                (AttackSource::Name, entry.name.clone(), None)
            } else if has(&entry.description_features) {
                let excerpt = text::excerpt(&entry.description, term, EXCERPT_WIDTH)
                    .unwrap_or_else(|| text::head(&entry.description, 2 * EXCERPT_WIDTH));
                (AttackSource::Description, excerpt, None)
            } else if has(&entry.detection_features) {
                let excerpt = text::excerpt(&entry.detection, term, EXCERPT_WIDTH)
                    .unwrap_or_else(|| text::head(&entry.detection, 2 * EXCERPT_WIDTH));
                (AttackSource::Detection, excerpt, None)
            } else {
                // The term came from the technique's procedure examples:
                // cite the nearest one that has it, else the first one.
                let procedure = neighbour
                    .filter(|&p| self.core.procedure_has(p, f))
                    .or_else(|| self.core.first_procedure_with(technique, f));
                let Some(p) = procedure else { continue };
                let cleaned = &self.procedure_texts[p as usize];
                let excerpt = text::excerpt(cleaned, term, EXCERPT_WIDTH)
                    .unwrap_or_else(|| text::head(cleaned, 2 * EXCERPT_WIDTH));
                let stix_id = self.procedures[p as usize].stix_id.clone();
                (AttackSource::Procedure, excerpt, Some(stix_id))
            };

            let weight = if lexical > 0.0 {
                contribution / lexical
            } else {
                0.0
            };
            // Terms of the same field matched in the same ATT&CK text are one
            // piece of evidence.
            if let Some(e) = out.iter_mut().find(|e| {
                e.input_field == input_field
                    && e.attack_source == attack_source
                    && e.procedure_stix_id == procedure_stix_id
            }) {
                e.input_terms.push(term.to_string());
                e.weight += weight;
                continue;
            }
            out.push(Evidence {
                input_field,
                input_terms: vec![term.to_string()],
                attack_source,
                attack_excerpt,
                procedure_stix_id,
                weight,
            });
        }
        out
    }

    fn band(&self, confidence: f64) -> Band {
        if confidence >= self.config.high_band {
            Band::High
        } else if confidence >= self.config.medium_band {
            Band::Medium
        } else {
            Band::Low
        }
    }
}

/// `(raw probability, right)` for each of the best candidates a fitted
/// model gives a procedure example it did not learn from. Every candidate is
/// a sample, not just the first: later suggestions are shown with a
/// confidence too, and their raw probabilities are low in a way the first
/// one's rarely are. An example the model cannot score is a miss at zero.
fn calibration_samples(
    core: &Core,
    doc: &TrainingDoc,
    config: &SuggesterConfig,
) -> Vec<(f64, bool)> {
    let query = core.vectorize(doc.features.iter().map(String::as_str));
    let scored = core.score(query, config.score_weights());
    let ranked = rank(&scored.scores, &scored.lexical, SOFTMAX_CANDIDATES);
    let raw = probabilities(&scored.scores, &ranked, config.softmax_temperature);
    let mut samples: Vec<(f64, bool)> = ranked
        .iter()
        .zip(raw)
        .map(|(&t, p)| (p, t == doc.technique))
        .collect();
    if samples.is_empty() {
        samples.push((0.0, false));
    }
    samples
}

/// Live techniques of the release, in bundle order, with their texts and
/// the features of each text in the fitted vocabulary.
fn live_techniques(release: &Release, core: &Core) -> Vec<TechniqueEntry> {
    let features = |text: &str| {
        let mut ids: Vec<u32> = model::text_features(text)
            .iter()
            .filter_map(|f| core.feature(f))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    release
        .techniques
        .iter()
        .filter(|t| t.status.is_live())
        .map(|t| TechniqueEntry {
            id: t.id.clone(),
            name: t.name.clone(),
            description: text::clean(&t.description),
            detection: text::clean(&t.detection),
            name_features: features(&t.name),
            description_features: features(&t.description),
            detection_features: features(&t.detection),
        })
        .collect()
}

/// The `k` best-scoring techniques that share at least one term with the
/// input (positive `lexical` score), best first, ties by index so the order
/// is deterministic. Selecting before sorting keeps this linear in the
/// number of techniques.
fn rank(scores: &[f32], lexical: &[f32], k: usize) -> Vec<u32> {
    let order = |a: &u32, b: &u32| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then(a.cmp(b))
    };
    if k == 0 {
        return Vec::new();
    }
    let mut ranked: Vec<u32> = (0..scores.len() as u32)
        .filter(|&t| lexical[t as usize] > 0.0)
        .collect();
    if ranked.len() > k {
        ranked.select_nth_unstable_by(k - 1, order);
        ranked.truncate(k);
    }
    ranked.sort_unstable_by(order);
    ranked
}

/// Softmax probabilities of the ranked techniques, normalised over the
/// [`SOFTMAX_CANDIDATES`] best scores of *all* techniques, matching or not:
/// one faint match among techniques that score about as well without any
/// shared term is no certainty.
fn probabilities(scores: &[f32], ranked: &[u32], temperature: f64) -> Vec<f64> {
    if ranked.is_empty() {
        return Vec::new();
    }
    let mut best: Vec<f32> = scores.to_vec();
    let k = SOFTMAX_CANDIDATES.min(best.len());
    best.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    best.truncate(k);
    let top = best.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let temperature = temperature.max(1e-6);
    let weight = |s: f32| (f64::from(s - top) / temperature).exp();
    let total: f64 = best.iter().map(|&s| weight(s)).sum();
    ranked
        .iter()
        .map(|&t| weight(scores[t as usize]) / total)
        .collect()
}

/// Hash of what determines the model: method, release identity and bytes,
/// configuration, held-out set.
fn model_version(
    release: &Release,
    config: &SuggesterConfig,
    held_out: &HashSet<String>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(METHOD.as_bytes());
    hasher.update(b"\0");
    hasher.update(release.domain.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(release.version.as_bytes());
    hasher.update(b"\0");
    hasher.update(release.sha256.as_bytes());
    hasher.update(b"\0");
    // Serializing a plain struct of numbers cannot fail; the fallback keeps
    // the version defined all the same.
    hasher
        .update(serde_json::to_vec(config).unwrap_or_else(|_| format!("{config:?}").into_bytes()));
    let mut held: Vec<&String> = held_out.iter().collect();
    held.sort_unstable();
    for id in held {
        hasher.update(b"\0");
        hasher.update(id.as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    format!("suggest-{}", &digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_over_the_best_ten_of_all_techniques() {
        // Twenty techniques; only technique 3 matches the input, at 1.0, the
        // others score 0.0: its probability is e^(1/T) / (e^(1/T) + 9 * e^0)
        // over the ten best, whether or not they match.
        let mut scores = vec![0.0f32; 20];
        scores[3] = 1.0;
        let mut lexical = vec![0.0f32; 20];
        lexical[3] = 0.2;
        let ranked = rank(&scores, &lexical, 10);
        assert_eq!(ranked, [3]);
        let p = probabilities(&scores, &ranked, 0.5);
        let expected = 2.0f64.exp() / (2.0f64.exp() + 9.0);
        assert!((p[0] - expected).abs() < 1e-6, "{} vs {expected}", p[0]);
    }

    use taxonomy::{Domain, IdentitySource, Procedure, Status, Technique};

    fn technique(stix: &str, id: &str, name: &str, description: &str, status: Status) -> Technique {
        Technique {
            stix_id: stix.into(),
            id: id.into(),
            name: name.into(),
            is_subtechnique: id.contains('.'),
            parent: id.split_once('.').map(|(p, _)| p.to_string()),
            tactics: vec!["execution".into()],
            kill_chain_phases: Vec::new(),
            platforms: vec!["Windows".into()],
            description: description.into(),
            detection: String::new(),
            version: "1.0".into(),
            modified: "2025-01-01T00:00:00Z".into(),
            status,
        }
    }

    fn procedure(stix: &str, technique_stix: &str, description: &str) -> Procedure {
        Procedure {
            stix_id: stix.into(),
            source_ref: "malware--x".into(),
            source_name: Some("X".into()),
            technique_stix_id: technique_stix.into(),
            technique_id: None,
            description: description.into(),
            status: Status::default(),
        }
    }

    /// Two live techniques, one revoked one, a handful of procedures.
    fn tiny_release(procedures: Vec<Procedure>) -> Release {
        let revoked = Status {
            revoked: true,
            ..Status::default()
        };
        Release {
            domain: Domain::Enterprise,
            version: "0.1".into(),
            identity_source: IdentitySource::Caller,
            spec_version: "2.0".into(),
            sha256: "00".into(),
            tactics: Vec::new(),
            techniques: vec![
                technique(
                    "attack-pattern--a",
                    "T1053.005",
                    "Scheduled Task",
                    "Adversaries may abuse the Windows Task Scheduler (schtasks) to run code.",
                    Status::default(),
                ),
                technique(
                    "attack-pattern--b",
                    "T1547.001",
                    "Registry Run Keys",
                    "Adversaries may add a Run key in the registry to run code at logon.",
                    Status::default(),
                ),
                technique(
                    "attack-pattern--c",
                    "T1064",
                    "Scripting",
                    "Adversaries may use schtasks scripts registry run keys.",
                    revoked,
                ),
            ],
            matrices: Vec::new(),
            procedures,
        }
    }

    #[test]
    fn a_release_without_procedures_still_suggests_from_technique_text() {
        let release = tiny_release(Vec::new());
        let suggester = Suggester::build(&release, &SuggesterConfig::default());
        assert_eq!(
            (suggester.technique_count(), suggester.procedure_count()),
            (2, 0)
        );
        assert_eq!(suggester.calibration_examples(), 0);
        let suggestions = suggester.suggest(&SuggestInput::text("schtasks task scheduler"));
        let ids: Vec<&str> = suggestions.iter().map(|s| s.technique.as_str()).collect();
        // The revoked T1064 also mentions schtasks but is never suggested.
        assert_eq!(ids, ["T1053.005"]);
    }

    #[test]
    fn procedures_of_revoked_techniques_and_blank_ones_are_not_learned() {
        let release = tiny_release(vec![
            procedure(
                "relationship--1",
                "attack-pattern--a",
                "X created a scheduled task.",
            ),
            procedure("relationship--2", "attack-pattern--c", "X ran a script."),
            procedure("relationship--3", "attack-pattern--b", "   "),
        ]);
        let suggester = Suggester::build(&release, &SuggesterConfig::default());
        assert_eq!(suggester.procedure_count(), 1);
        let held: HashSet<String> = ["relationship--1".to_string()].into();
        let without = Suggester::build_excluding(&release, &SuggesterConfig::default(), &held);
        assert_eq!(without.procedure_count(), 0);
        assert_ne!(without.model_version(), suggester.model_version());
    }

    #[test]
    fn an_empty_release_suggests_nothing() {
        let mut release = tiny_release(Vec::new());
        release.techniques.clear();
        let suggester = Suggester::build(&release, &SuggesterConfig::default());
        assert!(
            suggester
                .suggest(&SuggestInput::text("schtasks"))
                .is_empty()
        );
    }

    #[test]
    fn config_validation_names_the_setting() {
        assert_eq!(SuggesterConfig::default().validate(), Ok(()));
        let bad = SuggesterConfig {
            softmax_temperature: 0.0,
            ..SuggesterConfig::default()
        };
        let e = bad.validate().expect_err("zero temperature");
        assert_eq!(e.field, "softmax_temperature");
        assert!(e.to_string().contains("softmax_temperature"));
        let bands = SuggesterConfig {
            medium_band: 0.8,
            high_band: 0.7,
            ..SuggesterConfig::default()
        };
        assert_eq!(bands.validate().expect_err("bands").field, "medium_band");
        let none = SuggesterConfig {
            max_suggestions: 0,
            ..SuggesterConfig::default()
        };
        assert_eq!(none.validate().expect_err("zero").field, "max_suggestions");
    }

    #[test]
    fn suggester_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Suggester>();
    }

    #[test]
    fn rank_orders_by_score_then_index() {
        let all = [1.0; 5];
        assert_eq!(rank(&[0.2, 0.5, 0.2, -1.0], &all, 10), [1, 0, 2, 3]);
        assert_eq!(rank(&[0.2, 0.5, 0.2, 0.3, 0.1], &all, 2), [1, 3]);
        // Only techniques sharing a term with the input are candidates.
        assert_eq!(rank(&[0.2, 0.5, 0.3], &[1.0, 0.0, 1.0], 10), [2, 0]);
        assert!(rank(&[0.5], &[0.0], 10).is_empty());
        assert!(rank(&[0.5], &[1.0], 0).is_empty());
    }
}
