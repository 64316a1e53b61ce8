//! AI-assisted technique suggestions (issue 5) on the active dataset of a
//! domain.
//!
//! The [`App`] keeps one built [`Suggester`] per dataset, built on first use
//! (about a second for Enterprise, off the async runtime) and keyed by
//! dataset id: activating or rolling back a dataset changes which id is
//! active, so the next request builds (or finds) the suggester of the new
//! active dataset; suggesters of datasets no longer active are dropped.
//!
//! At ingestion, the mapping engine gets `ai` candidates from
//! [`App::active_suggester`] once per batch and [`ai_candidates`] per alert
//! (pure and fast, no await), or from [`App::suggest_for_alert`] for one
//! alert.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use mapping::alert::{FieldValue, NormalizedAlert};
use mapping::candidate::{CandidateDraft, Evidence as MappingEvidence, Producer};
use mapping::{BandThresholds, Confidence, MappingCandidate, MappingContext, Source, Subject};
use serde::{Deserialize, Serialize};
use suggest::{
    CapGap, EvaluationReport, ExternalProvider, ProviderOutcome, SuggestInput, SuggestOutcome,
    Suggester, SuggesterConfig, Suggestion,
};
use taxonomy::{Domain, Release, TechniqueId};
use tokio::sync::OnceCell;

use crate::alerts::decode_stored;
use crate::{Action, Actor, App, DatasetId, DatasetRef, Result, ServiceError};

/// Most suggestions one request may ask for.
pub const MAX_SUGGESTIONS: usize = 10;

/// Longest field value copied into a candidate's evidence.
const MAX_EVIDENCE_VALUE_CHARS: usize = 300;

/// A suggester being built or built once, shared by every request that
/// waits for it.
type SuggesterCell = Arc<OnceCell<Arc<Suggester>>>;

/// The suggesters built so far and the optional external provider.
#[derive(Default)]
pub(crate) struct SuggestState {
    /// One cell per dataset id, with the dataset's domain; the cell is
    /// filled once, by whichever request comes first, while the others wait
    /// for it.
    built: Mutex<HashMap<DatasetId, (Domain, SuggesterCell)>>,
    provider: RwLock<Option<Arc<ExternalProvider>>>,
}

/// The suggester of a domain's active dataset.
#[derive(Debug, Clone)]
pub struct ActiveSuggester {
    /// The dataset it was built from.
    pub dataset: DatasetRef,
    /// The parsed release (to validate candidates against).
    pub release: Arc<Release>,
    /// The suggester.
    pub suggester: Arc<Suggester>,
}

/// Ranked suggestions for one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestionList {
    /// The dataset the suggester was built from.
    pub dataset: DatasetRef,
    /// Model version of the suggester (changes with release, method and
    /// settings).
    pub model_version: String,
    /// Ranked suggestions, best first.
    pub suggestions: Vec<Suggestion>,
    /// Only the beginning of the input was read (it exceeded the bound).
    pub input_truncated: bool,
    /// Distinct input terms the model knows (0: nothing to go on).
    pub known_terms: usize,
    /// The cap gap of these suggestions (KPI).
    pub cap_gap: CapGap,
    /// What the external provider did, when one is configured.
    pub provider: Option<ProviderReport>,
}

/// The external provider's part in a [`SuggestionList`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderReport {
    /// The model asked.
    pub model: String,
    /// Applied, fallback (with the reason) or not asked.
    #[serde(flatten)]
    pub status: suggest::ProviderStatus,
    /// Techniques it chose that were used, with their quotes.
    pub accepted: Vec<suggest::provider::ProviderChoice>,
    /// Techniques it chose that were dropped, with the reason.
    pub dropped: Vec<suggest::provider::DroppedChoice>,
}

impl From<&ProviderOutcome> for ProviderReport {
    fn from(o: &ProviderOutcome) -> Self {
        ProviderReport {
            model: o.model.clone(),
            status: o.status.clone(),
            accepted: o.accepted.clone(),
            dropped: o.dropped.clone(),
        }
    }
}

/// Suggestions for a stored alert or incident: what was read and the
/// ranked list. Nothing is stored; the alert's or incident's canonical
/// mapping does not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectSuggestions {
    /// `alert` or `incident`.
    pub subject: String,
    /// The product's id of the alert or incident.
    pub id: String,
    /// Alerts whose text was read (1 for an alert).
    pub alerts_read: usize,
    /// Live alerts of the incident left unread because the input was full
    /// (0 for an alert).
    pub alerts_unread: usize,
    /// Evidence references of the incident read (0 for an alert).
    pub evidence_read: usize,
    /// The ranked suggestions and the model that made them.
    pub list: SuggestionList,
}

/// The evaluation of a domain's active dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestEvaluation {
    /// The dataset evaluated.
    pub dataset: DatasetRef,
    /// Recall, calibration and speed figures.
    pub report: EvaluationReport,
}

impl App {
    /// Uses `provider` to re-rank suggestions from now on (`None` turns it
    /// off). See [`suggest::provider`] for the policy.
    pub fn set_ai_provider(&self, provider: Option<ExternalProvider>) {
        let mut slot = self
            .suggesters
            .provider
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *slot = provider.map(Arc::new);
    }

    /// The suggester settings of this app: the defaults with the bands of
    /// the mapping policy, so a suggestion's band reads the same as its
    /// candidate's.
    pub fn suggester_config(&self) -> SuggesterConfig {
        let thresholds = self.config.mapping.policy.thresholds;
        let defaults = SuggesterConfig::default();
        SuggesterConfig {
            medium_band: thresholds.medium(),
            high_band: thresholds.high(),
            // The cap must keep a weak suggestion in the low band.
            weak_evidence_cap: defaults
                .weak_evidence_cap
                .min(thresholds.medium() - 0.01)
                .max(0.0),
            ..defaults
        }
    }

    /// The suggester of `domain`'s active dataset, built on first use.
    pub async fn active_suggester(&self, actor: &Actor, domain: Domain) -> Result<ActiveSuggester> {
        self.authorize(actor, Action::Suggest, ("suggester", domain.as_str()))
            .await?;
        let dataset =
            self.store
                .active_dataset(domain)
                .await?
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "active dataset of domain",
                    id: domain.to_string(),
                })?;
        let release = self.release_of(&dataset).await?;

        let cell = {
            let mut built = self
                .suggesters
                .built
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Only active datasets are asked for: keep the other domains'
            // suggesters, drop this domain's older ones.
            built.retain(|id, (of, _)| *id == dataset.id || *of != domain);
            built
                .entry(dataset.id.clone())
                .or_insert_with(|| (domain, Arc::default()))
                .1
                .clone()
        };
        let config = self.suggester_config();
        let for_build = release.clone();
        let suggester = cell
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || Arc::new(Suggester::build(&for_build, &config)))
                    .await
                    .map_err(|e| {
                        ServiceError::Internal(format!("the suggester build stopped: {e}"))
                    })
            })
            .await?
            .clone();

        Ok(ActiveSuggester {
            dataset: DatasetRef {
                id: dataset.id,
                domain,
                release: dataset.release,
            },
            release,
            suggester,
        })
    }

    /// Ranked technique suggestions for text and fields, at most `limit`
    /// (default and maximum [`MAX_SUGGESTIONS`]), re-ranked by the external
    /// provider when one is set.
    pub async fn suggest_text(
        &self,
        actor: &Actor,
        domain: Domain,
        input: &SuggestInput,
        limit: Option<usize>,
    ) -> Result<SuggestionList> {
        let limit = check_limit(limit)?;
        let active = self.active_suggester(actor, domain).await?;

        let outcome = active.suggester.suggest_with_outcome(input);
        let provider = self.provider();
        let (mut suggestions, report) = match provider {
            Some(p) => {
                let outcome = p.rerank(input, outcome.suggestions.clone()).await;
                let report = ProviderReport::from(&outcome);
                (outcome.suggestions, Some(report))
            }
            None => (outcome.suggestions.clone(), None),
        };
        suggestions.truncate(limit);

        Ok(list(&active, &outcome, suggestions, report))
    }

    /// Suggestions for many inputs with the same suggester, in order (the
    /// built-in suggester only: a batch does not call the provider per line).
    pub async fn suggest_batch(
        &self,
        actor: &Actor,
        domain: Domain,
        inputs: &[SuggestInput],
        limit: Option<usize>,
    ) -> Result<Vec<SuggestionList>> {
        let limit = check_limit(limit)?;
        let active = self.active_suggester(actor, domain).await?;
        Ok(inputs
            .iter()
            .map(|input| {
                let outcome = active.suggester.suggest_with_outcome(input);
                let mut suggestions = outcome.suggestions.clone();
                suggestions.truncate(limit);
                list(&active, &outcome, suggestions, None)
            })
            .collect())
    }

    /// `ai` mapping candidates for one alert under the active dataset of
    /// `domain` (see [`ai_candidates`]).
    pub async fn suggest_for_alert(
        &self,
        actor: &Actor,
        domain: Domain,
        subject: &Subject,
        alert: &NormalizedAlert,
    ) -> Result<Vec<MappingCandidate>> {
        let active = self.active_suggester(actor, domain).await?;
        Ok(ai_candidates(
            &active,
            subject,
            alert,
            &self.config.mapping.policy.thresholds,
        ))
    }

    /// Ranked suggestions for a stored alert (by the product's id or its
    /// source uid) of the org, from the text and fields the mapping engine
    /// gives the suggester at ingestion (see [`alert_input`]). Another
    /// org's alert is `not_found`, as a missing one.
    pub async fn suggest_for_stored_alert(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        limit: Option<usize>,
    ) -> Result<SubjectSuggestions> {
        self.authorize(actor, Action::Suggest, ("alert", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let alert = self
            .store
            .alert(&scope, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "alert",
                id: id.to_string(),
            })?;
        let (input, _) = alert_input(&decode_stored(&alert)?);

        let list = self
            .suggest_text(actor, Domain::Enterprise, &input, limit)
            .await?;
        Ok(SubjectSuggestions {
            subject: "alert".into(),
            id: alert.id.to_string(),
            alerts_read: 1,
            alerts_unread: 0,
            evidence_read: 0,
            list,
        })
    }

    /// Ranked suggestions for a stored incident of the org, from its title,
    /// the text and fields of its live alerts (see [`incident_input`]) and
    /// its evidence references. Alerts are read in id order until the
    /// suggester's input bound is reached; the answer says how many were
    /// left unread. Another org's incident is `not_found`.
    pub async fn suggest_for_incident(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        limit: Option<usize>,
    ) -> Result<SubjectSuggestions> {
        self.authorize(actor, Action::Suggest, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let record =
            self.store
                .incident(&scope, id)
                .await?
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "incident",
                    id: id.to_string(),
                })?;
        let attached = self.store.incident_alerts(&scope, &record.id).await?;
        let evidence: Vec<String> = self
            .store
            .incident_evidence(&scope, &record.id)
            .await?
            .into_iter()
            .map(|e| e.reference)
            .collect();

        let mut inputs = Vec::new();
        let mut read_bytes = record.title.len() + evidence.iter().map(String::len).sum::<usize>();
        for attachment in &attached {
            // The suggester reads only the first MAX_INPUT_BYTES of an
            // input: alerts past that would cost a read and count nothing.
            if read_bytes >= suggest::text::MAX_INPUT_BYTES {
                break;
            }
            let Some(alert) = self
                .store
                .alert(&scope, attachment.alert_id.as_str())
                .await?
            else {
                continue;
            };
            let (input, _) = alert_input(&decode_stored(&alert)?);
            read_bytes += input.fields().iter().map(|(_, v)| v.len()).sum::<usize>();
            inputs.push(input);
        }
        let input = incident_input(&record.title, &inputs, &evidence);

        let list = self
            .suggest_text(actor, Domain::Enterprise, &input, limit)
            .await?;
        Ok(SubjectSuggestions {
            subject: "incident".into(),
            id: record.id.to_string(),
            alerts_read: inputs.len(),
            alerts_unread: attached.len() - inputs.len(),
            evidence_read: evidence.len(),
            list,
        })
    }

    /// Evaluates the suggester method on the active dataset of `domain`
    /// with the issue-5 split (trains without the held-out examples; takes a
    /// few seconds).
    pub async fn suggest_evaluate(
        &self,
        actor: &Actor,
        domain: Domain,
    ) -> Result<SuggestEvaluation> {
        let active = self.active_suggester(actor, domain).await?;
        let config = self.suggester_config();
        let release = active.release.clone();
        let report = tokio::task::spawn_blocking(move || suggest::evaluate(&release, &config))
            .await
            .map_err(|e| ServiceError::Internal(format!("the evaluation stopped: {e}")))?;
        Ok(SuggestEvaluation {
            dataset: active.dataset,
            report,
        })
    }

    fn provider(&self) -> Option<Arc<ExternalProvider>> {
        self.suggesters
            .provider
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn check_limit(limit: Option<usize>) -> Result<usize> {
    match limit {
        None => Ok(MAX_SUGGESTIONS),
        Some(n) if (1..=MAX_SUGGESTIONS).contains(&n) => Ok(n),
        Some(n) => Err(ServiceError::InvalidInput {
            field: "limit".into(),
            message: format!("limit must be from 1 to {MAX_SUGGESTIONS}, got {n}"),
        }),
    }
}

fn list(
    active: &ActiveSuggester,
    outcome: &SuggestOutcome,
    suggestions: Vec<Suggestion>,
    provider: Option<ProviderReport>,
) -> SuggestionList {
    SuggestionList {
        dataset: active.dataset.clone(),
        model_version: active.suggester.model_version().to_string(),
        cap_gap: suggest::cap_gap(&suggestions),
        suggestions,
        input_truncated: outcome.input_truncated,
        known_terms: outcome.known_terms,
        provider,
    }
}

/// Where each suggester input field is read from in an alert, first match
/// wins: OCSF paths, then ECS, then the Sysmon event data some OCSF
/// producers keep under `unmapped`.
const FIELD_PATHS: [(&str, &[&str]); 5] = [
    (
        "command_line",
        &[
            "process.cmd_line",
            "process.command_line",
            "unmapped.event_data.CommandLine",
        ],
    ),
    (
        "process_name",
        &[
            "process.file.path",
            "process.file.name",
            "process.name",
            "process.executable",
            "unmapped.event_data.Image",
        ],
    ),
    (
        "parent_process",
        &[
            "process.parent_process.file.path",
            "process.parent_process.file.name",
            "process.parent.executable",
            "process.parent.name",
            "unmapped.event_data.ParentImage",
        ],
    ),
    (
        "event_id",
        &["unmapped.event_id", "event.code", "winlog.event_id"],
    ),
    (
        "registry_path",
        &[
            "registry.path",
            "reg_key.path",
            "unmapped.event_data.TargetObject",
        ],
    ),
];

/// The suggester input of an alert, with the dotted path each structured
/// field was read from (for evidence).
pub fn alert_input(alert: &NormalizedAlert) -> (SuggestInput, HashMap<&'static str, String>) {
    let mut input = SuggestInput {
        title: Some(alert.title.clone()).filter(|t| !t.trim().is_empty()),
        description: alert.description.clone(),
        ..SuggestInput::default()
    };
    // The detection rule's name says what it looks for, often better than
    // a generic title; it reads as free text.
    if let Some(name) = alert.analytic_name.as_ref().filter(|n| **n != alert.title) {
        input.text = name.clone();
    }
    let mut paths = HashMap::new();
    for (field, candidates) in FIELD_PATHS {
        let Some((path, value)) = candidates.iter().find_map(|p| {
            let values = alert.fields.get(*p)?;
            let text = values.first().map(FieldValue::as_text)?;
            let text = text.trim();
            (!text.is_empty()).then(|| (*p, text.to_string()))
        }) else {
            continue;
        };
        paths.insert(field, path.to_string());
        let slot = match field {
            "command_line" => &mut input.command_line,
            "process_name" => &mut input.process_name,
            "parent_process" => &mut input.parent_process,
            "event_id" => &mut input.event_id,
            _ => &mut input.registry_path,
        };
        *slot = Some(value);
    }
    (input, paths)
}

/// The suggester input of an incident: its title and its alerts' titles,
/// then the distinct values of each field over its alerts' inputs (first
/// seen first, one per line), and its evidence references as analyst notes.
/// An event ID goes into the event field only when every alert that has one
/// agrees: the field expands one well-known ID into words, and a list of
/// IDs is none, so differing IDs are read as text instead.
pub fn incident_input(title: &str, alerts: &[SuggestInput], evidence: &[String]) -> SuggestInput {
    let titles =
        distinct(std::iter::once(title).chain(alerts.iter().filter_map(|a| a.title.as_deref())));
    let event_ids = distinct(alerts.iter().filter_map(|a| a.event_id.as_deref()));
    let (event_id, event_words) = match event_ids.as_slice() {
        [one] => (Some(one.to_string()), Vec::new()),
        many => (
            None,
            many.iter()
                .map(|id| format!("event {id}"))
                .collect::<Vec<_>>(),
        ),
    };
    let mut text = distinct(alerts.iter().map(|a| a.text.as_str()));
    text.extend(event_words.iter().map(String::as_str));
    let notes = distinct(
        alerts
            .iter()
            .filter_map(|a| a.analyst_notes.as_deref())
            .chain(evidence.iter().map(String::as_str)),
    );

    SuggestInput {
        text: text.join("\n"),
        title: lines(titles),
        description: field(alerts, |a| a.description.as_deref()),
        command_line: field(alerts, |a| a.command_line.as_deref()),
        process_name: field(alerts, |a| a.process_name.as_deref()),
        parent_process: field(alerts, |a| a.parent_process.as_deref()),
        event_id,
        registry_path: field(alerts, |a| a.registry_path.as_deref()),
        analyst_notes: lines(notes),
    }
}

/// The non-blank values, trimmed, each once, in first-seen order.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for value in values.map(str::trim).filter(|v| !v.is_empty()) {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

/// Values one per line, or `None` when there is none.
fn lines(values: Vec<&str>) -> Option<String> {
    Some(values.join("\n")).filter(|v| !v.is_empty())
}

/// One field over many inputs: its distinct values, one per line.
fn field<'a>(
    inputs: &'a [SuggestInput],
    get: impl Fn(&'a SuggestInput) -> Option<&'a str>,
) -> Option<String> {
    lines(distinct(inputs.iter().filter_map(get)))
}

/// `ai` mapping candidates for an alert: the suggester's ranked
/// suggestions as drafts with source `ai`, the model version, the evidence
/// (alert field, its value, the terms and ATT&CK text they matched) and an
/// explanation; confidence is the suggester's capped value. Only live
/// techniques of the release pass (the suggester proposes no other, and
/// [`MappingCandidate::validated`] checks again); precedence keeps them
/// below rules and manual mappings, and the AI bar of the policy decides
/// which may become canonical, the others wait for review.
pub fn ai_candidates(
    active: &ActiveSuggester,
    subject: &Subject,
    alert: &NormalizedAlert,
    thresholds: &BandThresholds,
) -> Vec<MappingCandidate> {
    let (input, paths) = alert_input(alert);
    let context = MappingContext::of(&active.release, Some(active.dataset.id.to_string()));
    let model_version = active.suggester.model_version().to_string();
    let fields: HashMap<suggest::InputField, String> = input.fields().into_iter().collect();

    active
        .suggester
        .suggest(&input)
        .into_iter()
        .filter_map(|s| {
            let technique = TechniqueId::parse(&s.technique).ok()?;
            let live = active
                .release
                .technique(technique.as_str())
                .is_some_and(|t| t.status.is_live());
            if !live {
                return None;
            }
            let evidence = s
                .evidence
                .iter()
                .map(|e| MappingEvidence {
                    field: field_path(e.input_field, &paths),
                    value: fields
                        .get(&e.input_field)
                        .map(|v| v.chars().take(MAX_EVIDENCE_VALUE_CHARS).collect())
                        .unwrap_or_default(),
                    matched: format!(
                        "{} ~ ATT&CK {}: {}",
                        e.input_terms.join(", "),
                        source_word(e.attack_source),
                        e.attack_excerpt
                    ),
                })
                .collect();
            let draft = CandidateDraft {
                subject: subject.clone(),
                technique,
                tactic: None,
                source: Source::Ai,
                confidence: Confidence::saturating(s.confidence),
                evidence,
                explanation: explanation(&s),
                producer: Producer {
                    model_version: Some(model_version.clone()),
                    ..Producer::default()
                },
                vendor_declared: false,
            };
            MappingCandidate::validated(draft, &active.release, &context, thresholds).ok()
        })
        .collect()
}

/// The alert field an evidence input field came from.
fn field_path(field: suggest::InputField, paths: &HashMap<&'static str, String>) -> String {
    use suggest::InputField as F;
    let key = match field {
        F::Text => return "alert.analytic_name".into(),
        F::Title => return "alert.title".into(),
        F::Description => return "alert.description".into(),
        F::AnalystNotes => return "alert.analyst_notes".into(),
        F::CommandLine => "command_line",
        F::ProcessName => "process_name",
        F::ParentProcess => "parent_process",
        F::EventId => "event_id",
        F::RegistryPath => "registry_path",
    };
    paths.get(key).cloned().unwrap_or_else(|| key.to_string())
}

fn source_word(source: suggest::AttackSource) -> &'static str {
    match source {
        suggest::AttackSource::Name => "name",
        suggest::AttackSource::Description => "description",
        suggest::AttackSource::Detection => "detection",
        suggest::AttackSource::Procedure => "procedure example",
    }
}

/// One sentence for the analyst.
fn explanation(s: &Suggestion) -> String {
    let terms: Vec<&str> = s
        .evidence
        .iter()
        .flat_map(|e| e.input_terms.iter().map(String::as_str))
        .take(5)
        .collect();
    let mut text = format!(
        "AI suggestion {} ({}): calibrated confidence {:.2} from matching terms {}",
        s.technique,
        s.name,
        s.raw_confidence,
        if terms.is_empty() {
            "(none)".to_string()
        } else {
            terms.join(", ")
        }
    );
    if let Some(reason) = &s.cap_reason {
        text.push_str(&format!("; capped at {:.2}: {reason}", s.confidence));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(title: &str, command_line: &str, event_id: Option<&str>) -> SuggestInput {
        SuggestInput {
            title: Some(title.into()),
            command_line: Some(command_line.into()),
            event_id: event_id.map(str::to_string),
            ..SuggestInput::default()
        }
    }

    #[test]
    fn incident_input_keeps_each_value_once_in_first_seen_order() {
        let alerts = [
            alert(
                "Shadow copies deleted",
                "vssadmin delete shadows /all",
                Some("1"),
            ),
            alert("Shadow copies deleted", "wmic shadowcopy delete", Some("1")),
            alert(
                "Shadow copies deleted",
                "vssadmin delete shadows /all",
                None,
            ),
        ];
        let input = incident_input("Ransomware on host-02", &alerts, &["TICKET-7".into()]);

        assert_eq!(
            input.title.as_deref(),
            Some("Ransomware on host-02\nShadow copies deleted")
        );
        assert_eq!(
            input.command_line.as_deref(),
            Some("vssadmin delete shadows /all\nwmic shadowcopy delete")
        );
        assert_eq!(input.event_id.as_deref(), Some("1"));
        assert_eq!(input.analyst_notes.as_deref(), Some("TICKET-7"));
        assert_eq!(input.text, "");
        assert_eq!(input.description, None);
    }

    #[test]
    fn differing_event_ids_are_read_as_text() {
        let alerts = [
            alert("Task created", "schtasks /create", Some("4698")),
            alert("Process created", "cmd.exe /c whoami", Some("1")),
        ];
        let input = incident_input("Persistence", &alerts, &[]);

        assert_eq!(input.event_id, None);
        assert_eq!(input.text, "event 4698\nevent 1");
        assert_eq!(input.analyst_notes, None);
    }
}
