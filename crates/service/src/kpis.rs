//! Operational KPIs of an org's ATT&CK mapping: coverage, human
//! corrections, confidence, staleness, speed, provenance, denials, taxonomy
//! upkeep, matrix latency, anomalies and the AI evidence cap.
//!
//! Each KPI answers its value with the numerator and denominator it came
//! from and its definition. The definitions live once, in
//! [`KPI_DEFINITIONS`]: the API documentation and `docs/kpis.md` quote
//! them, and a test keeps the document in step.
//!
//! The store reads compact facts of the org over the window; everything
//! here is counting, so that a test can count the same rows itself.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use mapping::{Severity, Source};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{
    DatasetFilter, KpiAiCandidateRow, KpiAlertRow, KpiMappingRow, KpiReviewRow, KpiWindow, OrgScope,
};
use taxonomy::Domain;
use taxonomy::lifecycle::DatasetState;
use views::{AnomalyWindow, MatrixFilter};

use crate::matrix::{connector_of, rollup_row, window as exclusion_window};
use crate::{Action, Actor, App, Dataset, Result, ServiceError};

/// A dimension the KPIs can be broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiDimension {
    /// Mapping source: manual, rule, ai.
    Source,
    /// Alert severity.
    Severity,
    /// Connector (alert product) the alert came through.
    Connector,
}

impl KpiDimension {
    /// The dimension as the API and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            KpiDimension::Source => "source",
            KpiDimension::Severity => "severity",
            KpiDimension::Connector => "connector",
        }
    }
}

impl FromStr for KpiDimension {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "source" => Ok(KpiDimension::Source),
            "severity" => Ok(KpiDimension::Severity),
            "connector" => Ok(KpiDimension::Connector),
            other => Err(ServiceError::InvalidInput {
                field: "by".into(),
                message: format!("`{other}` is not source, severity or connector"),
            }),
        }
    }
}

/// What one KPI means, written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KpiDefinition {
    /// Stable name (`coverage`).
    pub name: &'static str,
    /// Unit of the value: `ratio` (0 to 1), `seconds`, `count`,
    /// `count_per_day`, `confidence`.
    pub unit: &'static str,
    /// What the value is.
    pub definition: &'static str,
    /// Dimensions it can be broken down by.
    pub dimensions: &'static [KpiDimension],
}

const ALERT_DIMENSIONS: &[KpiDimension] = &[KpiDimension::Severity, KpiDimension::Connector];
const ALL_DIMENSIONS: &[KpiDimension] = &[
    KpiDimension::Source,
    KpiDimension::Severity,
    KpiDimension::Connector,
];

/// Every KPI, in report order.
pub const KPI_DEFINITIONS: &[KpiDefinition] = &[
    KpiDefinition {
        name: "coverage",
        unit: "ratio",
        definition: "Alerts observed in the window whose current canonical set has at least one \
                     mapping (by source: at least one mapping from that source), over all alerts \
                     observed in the window.",
        dimensions: ALL_DIMENSIONS,
    },
    KpiDefinition {
        name: "override_rate",
        unit: "ratio",
        definition: "Alerts observed in the window with at least one approved manual override, \
                     over all alerts observed in the window.",
        dimensions: ALERT_DIMENSIONS,
    },
    KpiDefinition {
        name: "correction_rate",
        unit: "ratio",
        definition: "Review items opened in the window and resolved as corrected, over review \
                     items opened in the window and resolved by a person (accepted, rejected or \
                     corrected; items the product resolved itself, by a `system:` actor, such as \
                     those a re-map closed as `resolved_by_remap`, are left out). An analyst's \
                     correction counts once a lead approves it; until then its item is open.",
        dimensions: ALERT_DIMENSIONS,
    },
    KpiDefinition {
        name: "low_confidence_ratio",
        unit: "ratio",
        definition: "Current canonical mappings of alerts observed in the window in the low \
                     confidence band, over all those mappings.",
        dimensions: ALL_DIMENSIONS,
    },
    KpiDefinition {
        name: "stale_rate",
        unit: "ratio",
        definition: "Alerts observed in the window whose mapping is marked stale, over all alerts \
                     observed in the window.",
        dimensions: ALERT_DIMENSIONS,
    },
    KpiDefinition {
        name: "mean_time_to_map",
        unit: "seconds",
        definition: "Mean time from an alert's arrival to the first computation of a canonical \
                     set with at least one mapping, over alerts observed in the window that were \
                     ever mapped (numerator: total seconds; denominator: those alerts).",
        dimensions: ALERT_DIMENSIONS,
    },
    KpiDefinition {
        name: "mean_time_to_validate",
        unit: "seconds",
        definition: "Mean time from a review item's opening to its resolution by a person (for \
                     an analyst's correction, to the lead's approval), over review items opened \
                     in the window and resolved by a person (numerator: total seconds; \
                     denominator: those items). Items the product resolved itself (a `system:` \
                     actor: a re-mapping, including `resolved_by_remap`, a merge, a finished \
                     incident) measure no analyst and are left out; details carry their count.",
        dimensions: ALERT_DIMENSIONS,
    },
    KpiDefinition {
        name: "review_queue_depth",
        unit: "count",
        definition: "Review items opened in the window that are still open.",
        dimensions: ALERT_DIMENSIONS,
    },
    KpiDefinition {
        name: "interactions_per_correction",
        unit: "count",
        definition: "Actions recorded on review items opened in the window and resolved as \
                     corrected, over those items.",
        dimensions: ALERT_DIMENSIONS,
    },
    KpiDefinition {
        name: "full_provenance_share",
        unit: "ratio",
        definition: "Current canonical mappings of alerts observed in the window that carry a \
                     source, a confidence from 0 to 1, a dataset, a release and a versioned \
                     producer (rule id and version, AI model version, or the manual override), \
                     over all those mappings. Vendor-declared techniques name no version.",
        dimensions: ALL_DIMENSIONS,
    },
    KpiDefinition {
        name: "privileged_denials",
        unit: "count",
        definition: "Audit events of the org in the window whose outcome is denied (a role \
                     refused an action).",
        dimensions: &[],
    },
    KpiDefinition {
        name: "taxonomy_adoption_lag",
        unit: "seconds",
        definition: "Mean time from a dataset's load to its activation, over datasets loaded in \
                     the window that were ever activated (platform-wide: the taxonomy is shared).",
        dimensions: &[],
    },
    KpiDefinition {
        name: "taxonomy_update_success_rate",
        unit: "ratio",
        definition: "Datasets loaded in the window that reached validated or active (state \
                     validated, approved, active, retired or rolled_back), over all datasets \
                     loaded in the window (platform-wide).",
        dimensions: &[],
    },
    KpiDefinition {
        name: "matrix_query_p95",
        unit: "seconds",
        definition: "95th percentile latency of successful GET /api/v1/matrix requests served by \
                     this process since it started, as the upper bound of the Prometheus latency \
                     bucket that holds it (denominator: requests observed); null outside the \
                     serving process or before any request.",
        dimensions: &[],
    },
    KpiDefinition {
        name: "anomaly_count",
        unit: "count_per_day",
        definition: "Matrix cells flagged as anomalous (daily spike test of the matrix view), \
                     summed over each day of the window (at most its last 366 days; an open \
                     start begins at the org's first activity), over the days of the window.",
        dimensions: ALL_DIMENSIONS,
    },
    KpiDefinition {
        name: "ai_cap_gap",
        unit: "confidence",
        definition: "Mean amount by which the evidence cap lowered the calibrated confidence of \
                     AI candidates created in the window (0 for uncapped ones), read from each \
                     candidate's stated calibrated value (two decimals); numerator: total gap, \
                     denominator: AI candidates; details carry the capped share and largest gap.",
        dimensions: ALERT_DIMENSIONS,
    },
];

/// The definition of a KPI by name.
pub fn kpi_definition(name: &str) -> Option<&'static KpiDefinition> {
    KPI_DEFINITIONS.iter().find(|d| d.name == name)
}

/// One KPI value with what it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpi {
    /// Stable name.
    pub name: &'static str,
    /// The value; `None` when the denominator is zero or nothing was
    /// measured.
    pub value: Option<f64>,
    /// What was counted or summed.
    pub numerator: Option<f64>,
    /// What it was divided by; `None` for plain counts.
    pub denominator: Option<f64>,
    /// Unit of the value.
    pub unit: &'static str,
    /// What the value means.
    pub definition: &'static str,
    /// Extra figures some KPIs carry (the cap gap's capped share, the
    /// review items the product resolved itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl Kpi {
    fn of(name: &'static str) -> Self {
        let definition = kpi_definition(name);
        Kpi {
            name,
            value: None,
            numerator: None,
            denominator: None,
            unit: definition.map_or("", |d| d.unit),
            definition: definition.map_or("", |d| d.definition),
            detail: None,
        }
    }

    fn ratio(name: &'static str, numerator: f64, denominator: f64) -> Self {
        Kpi {
            value: (denominator > 0.0).then(|| numerator / denominator),
            numerator: Some(numerator),
            denominator: Some(denominator),
            ..Kpi::of(name)
        }
    }

    fn count(name: &'static str, count: f64) -> Self {
        Kpi {
            value: Some(count),
            numerator: Some(count),
            ..Kpi::of(name)
        }
    }
}

/// The KPIs of one segment of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiSegment {
    /// The segment's value of the dimension (`high`, `rule`, a connector).
    pub key: String,
    /// The KPIs that can be broken down by the dimension.
    pub kpis: Vec<Kpi>,
}

/// Every KPI of an org over a window, optionally broken down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiReport {
    /// The org's name.
    pub org: String,
    /// First instant counted.
    pub from: Option<DateTime<Utc>>,
    /// First instant no longer counted.
    pub to: Option<DateTime<Utc>>,
    /// Every KPI over the whole org.
    pub kpis: Vec<Kpi>,
    /// The breakdown dimension asked for.
    pub by: Option<KpiDimension>,
    /// One entry per value of the dimension, in key order.
    pub segments: Vec<KpiSegment>,
}

/// What a KPI request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KpiRequest {
    /// First day counted (`YYYY-MM-DD`, or an RFC 3339 time).
    pub from: Option<String>,
    /// First day no longer counted.
    pub to: Option<String>,
    /// Breakdown dimension.
    pub by: Option<KpiDimension>,
}

/// Matrix latency measured by the serving process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatrixLatency {
    /// 95th percentile, in seconds.
    pub p95_seconds: f64,
    /// Requests observed.
    pub requests: u64,
}

/// The facts a report is counted from.
struct Facts {
    alerts: Vec<KpiAlertRow>,
    mappings: Vec<KpiMappingRow>,
    reviews: Vec<KpiReviewRow>,
    ai: Vec<KpiAiCandidateRow>,
    denials: i64,
    datasets: Vec<Dataset>,
    /// Alert id to (severity, connector).
    dims: HashMap<String, (String, String)>,
}

/// One segment: which rows it keeps.
#[derive(Clone, Copy)]
enum Segment<'a> {
    All,
    Of(KpiDimension, &'a str),
}

impl Facts {
    fn alert_in(&self, alert_id: &str, segment: Segment<'_>) -> bool {
        match segment {
            Segment::All => true,
            Segment::Of(KpiDimension::Source, _) => true,
            Segment::Of(KpiDimension::Severity, key) => {
                self.dims.get(alert_id).is_some_and(|(s, _)| s == key)
            }
            Segment::Of(KpiDimension::Connector, key) => {
                self.dims.get(alert_id).is_some_and(|(_, c)| c == key)
            }
        }
    }

    fn mapping_in(&self, m: &KpiMappingRow, segment: Segment<'_>) -> bool {
        match segment {
            Segment::Of(KpiDimension::Source, key) => m.source == key,
            other => self.alert_in(&m.alert_id, other),
        }
    }
}

fn severity_word(raw: &str) -> String {
    Severity::from_word(raw).as_str().to_string()
}

/// A sum that starts at +0 (an empty float sum is -0, which prints oddly).
fn sum(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |sum, v| sum + v)
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

/// A producer that names a version: `rule:ID@N` (N at least 1), `ai:MODEL`,
/// `manual:ID`.
fn versioned_producer(producer: &str) -> bool {
    if let Some(rule) = producer.strip_prefix("rule:") {
        return rule.rsplit_once('@').is_some_and(|(id, version)| {
            id != "?" && !id.is_empty() && version.parse::<i64>().is_ok_and(|v| v >= 1)
        });
    }
    if let Some(model) = producer.strip_prefix("ai:") {
        return !model.is_empty() && model != "?";
    }
    producer
        .strip_prefix("manual:")
        .is_some_and(|id| !id.is_empty())
}

/// Whether a current canonical mapping carries full provenance.
pub(crate) fn full_provenance(m: &KpiMappingRow) -> bool {
    let producers: Vec<String> = serde_json::from_str(&m.producers).unwrap_or_default();
    let overrides: Vec<String> = serde_json::from_str(&m.override_ids).unwrap_or_default();
    Source::from_str(&m.source).is_ok()
        && (0.0..=1.0).contains(&m.confidence)
        && m.dataset_id
            .as_deref()
            .is_some_and(|d| !d.trim().is_empty())
        && !m.release.trim().is_empty()
        && (producers.iter().any(|p| versioned_producer(p)) || !overrides.is_empty())
}

/// The calibrated (before the cap) confidence an AI candidate's
/// explanation states, and whether it says the cap applied.
pub(crate) fn stated_calibration(explanation: &str) -> Option<(f64, bool)> {
    let rest = explanation.split_once("calibrated confidence ")?.1;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let raw = number.trim_end_matches('.').parse::<f64>().ok()?;
    Some((raw, explanation.contains("; capped at ")))
}

fn alert_kpis(facts: &Facts, segment: Segment<'_>) -> Vec<Kpi> {
    let alerts: Vec<&KpiAlertRow> = facts
        .alerts
        .iter()
        .filter(|a| facts.alert_in(&a.id, segment))
        .collect();
    let total = alerts.len() as f64;
    let covered = match segment {
        Segment::Of(KpiDimension::Source, key) => facts
            .mappings
            .iter()
            .filter(|m| m.source == key)
            .map(|m| m.alert_id.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        _ => alerts.iter().filter(|a| a.current_entries > 0).count(),
    };
    let mut out = vec![Kpi::ratio("coverage", covered as f64, total)];
    if matches!(segment, Segment::Of(KpiDimension::Source, _)) {
        return out;
    }
    let overridden = alerts.iter().filter(|a| a.approved_overrides > 0).count();
    let stale = alerts.iter().filter(|a| a.stale).count();
    let times: Vec<f64> = alerts
        .iter()
        .filter_map(|a| Some(seconds(a.received_at, a.first_mapped_at?)))
        .collect();
    out.push(Kpi::ratio("override_rate", overridden as f64, total));
    out.push(Kpi::ratio("stale_rate", stale as f64, total));
    out.push(Kpi::ratio(
        "mean_time_to_map",
        sum(&times),
        times.len() as f64,
    ));
    out
}

fn mapping_kpis(facts: &Facts, segment: Segment<'_>) -> Vec<Kpi> {
    let mappings: Vec<&KpiMappingRow> = facts
        .mappings
        .iter()
        .filter(|m| facts.mapping_in(m, segment))
        .collect();
    let total = mappings.len() as f64;
    let low = mappings.iter().filter(|m| m.band == "low").count();
    let full = mappings.iter().filter(|m| full_provenance(m)).count();
    vec![
        Kpi::ratio("low_confidence_ratio", low as f64, total),
        Kpi::ratio("full_provenance_share", full as f64, total),
    ]
}

/// Whether a review item's resolver is the product itself
/// (`system:recompute`, `system:merge`, `system:status`, ...).
pub(crate) fn is_system_actor(resolved_by: &str) -> bool {
    resolved_by.starts_with("system:")
}

fn review_kpis(facts: &Facts, segment: Segment<'_>) -> Vec<Kpi> {
    let reviews: Vec<&KpiReviewRow> = facts
        .reviews
        .iter()
        .filter(|r| facts.alert_in(&r.alert_id, segment))
        .collect();
    // Only a person validates: an item the product resolved itself (a
    // re-mapping, a merge, a finished incident) took no analyst's time, and
    // counting it would pull the mean towards the product's own speed.
    let (system, resolved): (Vec<&&KpiReviewRow>, Vec<&&KpiReviewRow>) = reviews
        .iter()
        .filter(|r| r.state != "open")
        .partition(|r| r.resolved_by.as_deref().is_some_and(is_system_actor));
    let corrected: Vec<&&KpiReviewRow> = resolved
        .iter()
        .copied()
        .filter(|r| r.state == "corrected")
        .collect();
    let open = reviews.len() - resolved.len() - system.len();
    let validate: Vec<f64> = resolved
        .iter()
        .filter_map(|r| Some(seconds(r.opened_at, r.resolved_at?)))
        .collect();
    let interactions: i64 = corrected.iter().map(|r| r.interactions).sum();
    vec![
        Kpi::ratio(
            "correction_rate",
            corrected.len() as f64,
            resolved.len() as f64,
        ),
        Kpi {
            detail: Some(json!({"system_resolved": system.len()})),
            ..Kpi::ratio(
                "mean_time_to_validate",
                sum(&validate),
                validate.len() as f64,
            )
        },
        Kpi::count("review_queue_depth", open as f64),
        Kpi::ratio(
            "interactions_per_correction",
            interactions as f64,
            corrected.len() as f64,
        ),
    ]
}

fn cap_gap_kpi(facts: &Facts, segment: Segment<'_>) -> Kpi {
    let suggestions: Vec<suggest::Suggestion> = facts
        .ai
        .iter()
        .filter(|c| facts.alert_in(&c.alert_id, segment))
        .filter_map(|c| {
            let (raw, capped) = stated_calibration(&c.explanation)?;
            Some(suggest::Suggestion {
                technique: c.technique.clone(),
                name: String::new(),
                confidence: c.confidence,
                raw_confidence: raw,
                band: suggest::Band::Low,
                score: 0.0,
                capped,
                cap_reason: None,
                forced_review: capped,
                evidence: Vec::new(),
            })
        })
        .collect();
    let gap = suggest::cap_gap(&suggestions);
    Kpi {
        detail: Some(json!(gap)),
        ..Kpi::ratio(
            "ai_cap_gap",
            gap.mean_gap * gap.suggestions as f64,
            gap.suggestions as f64,
        )
    }
}

fn dataset_kpis(facts: &Facts) -> Vec<Kpi> {
    let lags: Vec<f64> = facts
        .datasets
        .iter()
        .filter_map(|d| Some(seconds(d.loaded_at, d.activated_at?)))
        .collect();
    let reached = facts
        .datasets
        .iter()
        .filter(|d| {
            matches!(
                d.state,
                DatasetState::Validated
                    | DatasetState::Approved
                    | DatasetState::Active
                    | DatasetState::Retired
                    | DatasetState::RolledBack
            )
        })
        .count();
    vec![
        Kpi::ratio("taxonomy_adoption_lag", sum(&lags), lags.len() as f64),
        Kpi::ratio(
            "taxonomy_update_success_rate",
            reached as f64,
            facts.datasets.len() as f64,
        ),
    ]
}

fn latency_kpi(latency: Option<MatrixLatency>) -> Kpi {
    match latency {
        Some(l) if l.requests > 0 => Kpi {
            value: Some(l.p95_seconds),
            denominator: Some(l.requests as f64),
            ..Kpi::of("matrix_query_p95")
        },
        _ => Kpi::of("matrix_query_p95"),
    }
}

/// Puts KPIs in the order of [`KPI_DEFINITIONS`].
fn ordered(mut kpis: Vec<Kpi>) -> Vec<Kpi> {
    let rank = |k: &Kpi| {
        KPI_DEFINITIONS
            .iter()
            .position(|d| d.name == k.name)
            .unwrap_or(usize::MAX)
    };
    kpis.sort_by_key(rank);
    kpis
}

/// Reads `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
fn instant(field: &str, text: &Option<String>) -> Result<Option<DateTime<Utc>>> {
    let Some(text) = text.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| Some(d.and_time(chrono::NaiveTime::MIN).and_utc()))
        .map_err(|_| ServiceError::InvalidInput {
            field: field.to_string(),
            message: format!("`{text}` is neither a YYYY-MM-DD day nor an RFC 3339 time"),
        })
}

/// Most days the anomaly count walks through.
const MAX_ANOMALY_DAYS: i64 = 366;

impl App {
    /// The KPIs of an org over a window, optionally broken down by source,
    /// severity or connector. `latency` is the matrix latency the serving
    /// process measured, when there is one.
    ///
    /// Needs [`Action::ReadAudit`]: the KPIs count the org's audit denials
    /// and summarise its whole activity, an org admin's view (platform
    /// roles may ask for any org).
    pub async fn kpis(
        &self,
        actor: &Actor,
        org: &str,
        request: &KpiRequest,
        latency: Option<MatrixLatency>,
    ) -> Result<KpiReport> {
        self.authorize(actor, Action::ReadAudit, ("kpis", org))
            .await?;
        let org_record = self.org_by_name(actor, org).await?;
        let scope = OrgScope::new(org_record.id.clone());
        let window = KpiWindow {
            from: instant("from", &request.from)?,
            to: instant("to", &request.to)?,
        };
        if let (Some(from), Some(to)) = (window.from, window.to)
            && to <= from
        {
            return Err(ServiceError::InvalidInput {
                field: "to".into(),
                message: format!("{to} is not after from {from}"),
            });
        }

        let alerts = self.store.kpi_alerts(&scope, &window).await?;
        let dims = alerts
            .iter()
            .map(|a| {
                let connector = connector_of(a.connector.as_deref(), a.product.as_deref());
                (a.id.clone(), (severity_word(&a.severity), connector))
            })
            .collect();
        let in_window = |at: DateTime<Utc>| {
            window.from.is_none_or(|f| at >= f) && window.to.is_none_or(|t| at < t)
        };
        let datasets = self
            .store
            .list_datasets(&DatasetFilter::default())
            .await?
            .into_iter()
            .filter(|d| in_window(d.loaded_at))
            .collect();
        let facts = Facts {
            mappings: self.store.kpi_mappings(&scope, &window).await?,
            reviews: self.store.kpi_reviews(&scope, &window).await?,
            ai: self.store.kpi_ai_candidates(&scope, &window).await?,
            denials: self.store.kpi_denials(&scope, &window).await?,
            datasets,
            alerts,
            dims,
        };

        let mut kpis = self
            .segment_kpis(&facts, &scope, &window, Segment::All)
            .await?;
        kpis.push(Kpi::count("privileged_denials", facts.denials as f64));
        kpis.extend(dataset_kpis(&facts));
        kpis.push(latency_kpi(latency));
        let mut segments = Vec::new();
        if let Some(by) = request.by {
            for key in segment_keys(&facts, by) {
                let segment = Segment::Of(by, &key);
                let kpis = self.segment_kpis(&facts, &scope, &window, segment).await?;
                segments.push(KpiSegment {
                    key: key.clone(),
                    kpis: ordered(
                        kpis.into_iter()
                            .filter(|k| {
                                kpi_definition(k.name).is_some_and(|d| d.dimensions.contains(&by))
                            })
                            .collect(),
                    ),
                });
            }
        }
        Ok(KpiReport {
            org: org_record.name,
            from: window.from,
            to: window.to,
            kpis: ordered(kpis),
            by: request.by,
            segments,
        })
    }

    async fn segment_kpis(
        &self,
        facts: &Facts,
        scope: &OrgScope,
        window: &KpiWindow,
        segment: Segment<'_>,
    ) -> Result<Vec<Kpi>> {
        let mut kpis = alert_kpis(facts, segment);
        kpis.extend(mapping_kpis(facts, segment));
        if !matches!(segment, Segment::Of(KpiDimension::Source, _)) {
            kpis.extend(review_kpis(facts, segment));
            kpis.push(cap_gap_kpi(facts, segment));
        }
        kpis.push(self.anomaly_kpi(scope, window, segment).await?);
        Ok(kpis)
    }

    /// Cells the matrix view flags as anomalous, summed over the days of
    /// the window, per day.
    async fn anomaly_kpi(
        &self,
        scope: &OrgScope,
        window: &KpiWindow,
        segment: Segment<'_>,
    ) -> Result<Kpi> {
        let name = "anomaly_count";
        let Some(dataset) = self.store.active_dataset(Domain::Enterprise).await? else {
            return Ok(Kpi {
                detail: Some(json!({"reason": "no active enterprise-attack dataset"})),
                ..Kpi::of(name)
            });
        };
        let release = self.release_of(&dataset).await?;
        let end = window.to.map_or_else(
            || Utc::now().date_naive() + Duration::days(1),
            // The first day no longer counted: a window ending mid-day still
            // counts that day.
            |t| {
                let day = t.date_naive();
                if t == day.and_time(chrono::NaiveTime::MIN).and_utc() {
                    day
                } else {
                    day + Duration::days(1)
                }
            },
        );
        let records = self.store.rollups(scope, None, Some(end)).await?;
        let first_activity = records.iter().map(|r| r.day).min();
        let start = match (window.from.map(|f| f.date_naive()), first_activity) {
            (Some(from), _) => from,
            (None, Some(first)) => first,
            (None, None) => end,
        }
        .max(end - Duration::days(MAX_ANOMALY_DAYS));
        let rows = records
            .into_iter()
            .map(rollup_row)
            .collect::<Result<Vec<_>>>()?;

        let mut filter = MatrixFilter::default();
        match segment {
            Segment::All => {}
            Segment::Of(KpiDimension::Source, key) => {
                filter.sources = Source::from_str(key).into_iter().collect();
            }
            Segment::Of(KpiDimension::Severity, key) => {
                filter.severities = vec![Severity::from_word(key)];
            }
            Segment::Of(KpiDimension::Connector, key) => filter.connectors = vec![key.to_string()],
        }
        filter.exclusions.extend(
            self.store
                .exclusions(scope)
                .await?
                .iter()
                .map(exclusion_window),
        );
        let daily = views::daily_counts(&release, rows.iter(), &filter);
        let mut flagged = 0usize;
        let mut days = 0usize;
        let mut day = start;
        while day < end {
            flagged +=
                views::anomalies(&daily, &AnomalyWindow::daily(day + Duration::days(1))).len();
            days += 1;
            day += Duration::days(1);
        }
        Ok(Kpi {
            detail: Some(json!({"cells_flagged": flagged, "first_day": start, "end_day": end})),
            ..Kpi::ratio(name, flagged as f64, days as f64)
        })
    }
}

/// The values of `by` present in the facts, sorted.
fn segment_keys(facts: &Facts, by: KpiDimension) -> Vec<String> {
    let keys: BTreeSet<String> = match by {
        KpiDimension::Source => facts.mappings.iter().map(|m| m.source.clone()).collect(),
        KpiDimension::Severity => facts.dims.values().map(|(s, _)| s.clone()).collect(),
        KpiDimension::Connector => facts.dims.values().map(|(_, c)| c.clone()).collect(),
    };
    keys.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kpi_has_one_definition() {
        let names: BTreeSet<&str> = KPI_DEFINITIONS.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), KPI_DEFINITIONS.len());
        assert_eq!(names.len(), 16);
        for d in KPI_DEFINITIONS {
            assert!(!d.definition.is_empty(), "{}", d.name);
        }
    }

    #[test]
    fn the_kpi_page_quotes_every_definition() {
        let page = include_str!("../../../docs/kpis.md");
        for d in KPI_DEFINITIONS {
            let row = format!("| `{}` | {} |", d.name, d.unit);
            assert!(
                page.contains(&row),
                "docs/kpis.md lacks the row of {}",
                d.name
            );
            assert!(
                page.contains(d.definition),
                "docs/kpis.md has another definition of {}",
                d.name
            );
        }
    }

    #[test]
    fn the_stated_calibration_is_read_back() {
        let capped = "AI suggestion T1059 (Command): calibrated confidence 0.62 from matching \
                      terms powershell; capped at 0.35: weak evidence";
        assert_eq!(stated_calibration(capped), Some((0.62, true)));
        let plain =
            "AI suggestion T1003 (X): calibrated confidence 0.80 from matching terms (none)";
        assert_eq!(stated_calibration(plain), Some((0.80, false)));
        assert_eq!(stated_calibration("external provider"), None);
    }

    /// A review row opened at `opened` seconds past midnight, resolved
    /// `after` seconds later by `by` in `state`, or still open.
    fn review(
        alert: &str,
        state: &str,
        opened: i64,
        resolved: Option<(i64, &str)>,
    ) -> KpiReviewRow {
        let at = |s: i64| DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(s);
        KpiReviewRow {
            alert_id: alert.into(),
            state: state.into(),
            opened_at: at(opened),
            resolved_at: resolved.map(|(after, _)| at(opened + after)),
            resolved_by: resolved.map(|(_, by)| by.to_string()),
            interactions: if state == "corrected" { 3 } else { 1 },
        }
    }

    /// The mean time to validate measured the product's own resolutions
    /// too (a re-mapping resolves an item within milliseconds), so it
    /// reported the product's speed as the analysts'.
    #[test]
    fn system_resolutions_are_no_analyst_validations() {
        let reviews = vec![
            review("a1", "accepted", 0, Some((100, "ann"))),
            review("a2", "corrected", 0, Some((300, "lea"))),
            review("a3", "rejected", 0, Some((200, "ann"))),
            review("a4", "accepted", 0, Some((1, "system:recompute"))),
            review("", "accepted", 0, Some((2, "system:status"))),
            review("", "accepted", 0, Some((5, "system:merge"))),
            review("a5", "open", 0, None),
        ];
        let facts = Facts {
            alerts: Vec::new(),
            mappings: Vec::new(),
            reviews,
            ai: Vec::new(),
            denials: 0,
            datasets: Vec::new(),
            dims: HashMap::new(),
        };
        let kpis = review_kpis(&facts, Segment::All);
        let kpi = |name: &str| kpis.iter().find(|k| k.name == name).unwrap().clone();

        // Three items resolved by people: 100 + 300 + 200 seconds.
        let validate = kpi("mean_time_to_validate");
        assert_eq!(
            (validate.numerator, validate.denominator, validate.value),
            (Some(600.0), Some(3.0), Some(200.0))
        );
        assert_eq!(validate.detail, Some(json!({"system_resolved": 3})));
        // One of the three corrected; the product never corrects.
        let correction = kpi("correction_rate");
        assert_eq!(
            (correction.numerator, correction.denominator),
            (Some(1.0), Some(3.0))
        );
        let per_correction = kpi("interactions_per_correction");
        assert_eq!(per_correction.value, Some(3.0));
        // The open item alone waits; the system's resolutions are no
        // longer open either.
        assert_eq!(kpi("review_queue_depth").value, Some(1.0));
    }

    #[test]
    fn versioned_producers() {
        assert!(versioned_producer("rule:sigma-1@2"));
        assert!(!versioned_producer("rule:?@0"));
        assert!(!versioned_producer("vendor"));
        assert!(versioned_producer("ai:tfidf-18.1-abc"));
        assert!(!versioned_producer("ai:?"));
        assert!(versioned_producer("manual:c-1"));
    }
}
