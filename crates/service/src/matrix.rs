//! The ATT&CK matrix of an org: rollups kept in step with canonical
//! mappings, the matrix and its drilldown, exclusion windows, exports and
//! layer imports.
//!
//! A matrix request reads rollups only (never raw mappings) and hands them
//! to the pure `views` crate; this module decides which alert dimension
//! lands in which rollup column, and keeps that decision in one place
//! ([`rollup_deltas`]) so that ingestion, recomputation and the rebuild
//! count alike.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use mapping::{Band, Severity, Source};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{
    AlertRecord, CanonicalEntryRecord, CanonicalRecord, ExclusionRecord, OrgScope, OverrideRecord,
    RollupRecord,
};
use taxonomy::{Domain, Release};
use views::{
    AnomalyWindow, ExclusionWindow, IntensityFormula, LayerOptions, MatrixFilter, MatrixView,
    Provenance, Redaction, RollupRow, ScoreBy, TechniqueTotal,
};

use crate::rollup_cache::{CachedRollups, ViewKey};
use crate::{Action, Actor, App, Result, ServiceError};

/// What a rollup rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildReport {
    /// Alerts read.
    pub alerts: usize,
    /// Current canonical mappings counted.
    pub mappings: u64,
    /// Rollup rows removed before counting again.
    pub rows_removed: u64,
}

/// An exclusion window to define.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionInput {
    /// The connector whose rows are left out.
    pub connector: String,
    /// First excluded day.
    pub from: NaiveDate,
    /// First day no longer excluded.
    pub to: NaiveDate,
    /// Why (shown with every view it applies to).
    pub reason: String,
}

/// One mapping of an alert behind a matrix cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrilldownMapping {
    /// Technique ATT&CK ID.
    pub technique: String,
    /// The tactic the mapping names, when it names one.
    pub tactic: Option<String>,
    /// Who or what mapped.
    pub source: String,
    /// Confidence, 0 to 1.
    pub confidence: f64,
    /// Confidence band.
    pub band: String,
    /// Evidence of the candidates behind the mapping.
    pub evidence: Vec<Value>,
    /// Overrides of this alert, oldest first.
    pub override_history: Vec<OverrideRecord>,
}

/// One alert behind a matrix cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrilldownAlert {
    /// The product's alert id.
    pub alert_id: String,
    /// The alert's id in its source.
    pub source_uid: String,
    /// Title.
    pub title: String,
    /// When observed.
    pub observed_at: DateTime<Utc>,
    /// Severity word.
    pub severity: String,
    /// Connector (alert product).
    pub connector: String,
    /// Host name.
    pub host: Option<String>,
    /// User name.
    pub user: Option<String>,
    /// Its mappings that count in the cell.
    pub mappings: Vec<DrilldownMapping>,
    /// Ids of the incidents holding it now.
    pub incidents: Vec<String>,
    /// Its open review items, oldest first: what an analyst may accept or
    /// reject.
    pub open_reviews: Vec<DrilldownReview>,
}

/// An open review item of an alert behind a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrilldownReview {
    /// Review item id (for `POST /api/v1/review/{id}/decide`).
    pub id: String,
    /// Why it was queued (`low_confidence`, `ai_only`, ...).
    pub reason: String,
    /// When it was queued.
    pub opened_at: DateTime<Utc>,
}

/// An incident holding alerts of a drilldown page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrilldownIncident {
    /// Incident id.
    pub id: String,
    /// Title.
    pub title: String,
    /// `open`, `contained`, `resolved`, `closed` or `reopened`.
    pub status: String,
    /// Severity word.
    pub severity: String,
    /// How many of this page's alerts it holds; summed over every page,
    /// how many of the cell's alerts.
    pub alerts_held: usize,
}

/// A page of the alerts behind a cell, with the incidents holding them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drilldown {
    /// Tactic asked for.
    pub tactic: String,
    /// Technique asked for.
    pub technique: String,
    /// The incidents holding alerts of this page, by id.
    pub incidents: Vec<DrilldownIncident>,
    /// The alerts of this page.
    pub alerts: Vec<DrilldownAlert>,
    /// Cursor of the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// Filters as the CLI and the API take them: strings, parsed here once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterInput {
    /// First day counted (`2026-01-01`).
    pub from: Option<String>,
    /// First day no longer counted.
    pub to: Option<String>,
    /// Mapping sources, comma-separated (`rule,manual`).
    pub source: Option<String>,
    /// Severities, comma-separated.
    pub severity: Option<String>,
    /// Connectors, comma-separated.
    pub connector: Option<String>,
    /// Platforms, comma-separated.
    pub platform: Option<String>,
    /// Confidence bands, comma-separated.
    pub band: Option<String>,
}

fn invalid(field: &str, message: String) -> ServiceError {
    ServiceError::InvalidInput {
        field: field.to_string(),
        message,
    }
}

fn list(value: &Option<String>) -> Vec<String> {
    value
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn day(field: &str, value: &Option<String>) -> Result<Option<NaiveDate>> {
    let Some(text) = value.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    // A full timestamp is accepted and cut to its day: rollups are daily.
    let date_part = text.get(..10).unwrap_or(text);
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d")
        .map(Some)
        .map_err(|e| invalid(field, format!("`{text}` is not a YYYY-MM-DD day: {e}")))
}

fn parse_band(text: &str) -> Option<Band> {
    serde_json::from_value(Value::String(text.trim().to_ascii_lowercase())).ok()
}

fn parse_severity(text: &str) -> Option<Severity> {
    serde_json::from_value(Value::String(text.trim().to_ascii_lowercase())).ok()
}

impl FilterInput {
    /// The filter, or which field is wrong.
    pub fn parse(&self) -> Result<MatrixFilter> {
        let from = day("from", &self.from)?;
        let to = day("to", &self.to)?;
        if let (Some(from), Some(to)) = (from, to)
            && to <= from
        {
            return Err(invalid("to", format!("{to} is not after from {from}")));
        }
        let sources = list(&self.source)
            .iter()
            .map(|s| {
                Source::from_str(s)
                    .map_err(|_| invalid("source", format!("`{s}` is not manual, rule or ai")))
            })
            .collect::<Result<_>>()?;
        let severities = list(&self.severity)
            .iter()
            .map(|s| {
                parse_severity(s).ok_or_else(|| {
                    invalid(
                        "severity",
                        format!(
                            "`{s}` is not unknown, informational, low, medium, high, critical \
                             or fatal"
                        ),
                    )
                })
            })
            .collect::<Result<_>>()?;
        let bands = list(&self.band)
            .iter()
            .map(|s| {
                parse_band(s)
                    .ok_or_else(|| invalid("band", format!("`{s}` is not low, medium or high")))
            })
            .collect::<Result<_>>()?;
        Ok(MatrixFilter {
            from,
            to,
            sources,
            severities,
            connectors: list(&self.connector),
            platforms: list(&self.platform),
            bands,
            exclusions: Vec::new(),
        })
    }
}

/// The connector a rollup counts an alert under: the connector it came
/// through, else the product that raised it.
pub(crate) fn connector_of(connector: Option<&str>, product: Option<&str>) -> String {
    connector
        .or(product)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// The platform an alert was raised on, from the fields the common formats
/// use for it (OCSF `device.os`, ECS `host.os`, native `platform`); empty
/// when the alert does not say. A field may be nested (`{"host": {"os":
/// {"type": ...}}}`) or written with dotted keys as Elastic's flattened
/// documents do (`{"host.os.type": ...}`, `{"host.os": {"type": ...}}`).
fn platform_of(raw: &str) -> String {
    let Ok(PlatformKeys(keys)) = serde_json::from_str::<PlatformKeys>(raw) else {
        return String::new();
    };
    platform_in(&keys)
}

/// [`platform_of`] a document decoded already.
pub(crate) fn platform_in(document: &serde_json::Map<String, Value>) -> String {
    let at = |path: &str| {
        let segments: Vec<&str> = path.split('.').collect();
        text_at(document, &segments)
    };
    [
        "device.os.type",
        "device.os.name",
        "host.os.type",
        "host.os.platform",
        "host.os.family",
        // Last of ECS's: the product's name ("Mac OS X", "Ubuntu"), where
        // an agent fills no type, platform or family.
        "host.os.name",
        "platform",
    ]
    .into_iter()
    .find_map(at)
    .map(platform_name)
    .unwrap_or_default()
}

/// The text at `segments` under `map`, however the document splits the
/// path into keys: nested (`host` / `os` / `type`), dotted (`host.os.type`)
/// or both (`host.os` / `type`, `host` / `os.type`). The nested form is
/// tried first; a list counts with its first text, as Elastic's flattened
/// fields come as lists.
fn text_at<'a>(map: &'a serde_json::Map<String, Value>, segments: &[&str]) -> Option<&'a str> {
    (1..=segments.len()).find_map(|k| {
        let value = map.get(&segments[..k].join("."))?;
        let value = match value {
            Value::Array(items) => items.iter().find(|v| v.is_string())?,
            other => other,
        };
        match (&segments[k..], value) {
            ([], Value::String(s)) => Some(s.trim()).filter(|s| !s.is_empty()),
            ([], _) => None,
            (rest, Value::Object(inner)) => text_at(inner, rest),
            _ => None,
        }
    })
}

/// The top-level keys that can name a platform, decoded; the rest of the
/// document is skipped without being built. Ingestion asks this of every
/// mapped alert, and a whole `Value` per alert cost as much as decoding the
/// alert itself. A key given twice keeps its last value, as a whole
/// `Value` would.
struct PlatformKeys(serde_json::Map<String, Value>);

impl<'de> Deserialize<'de> for PlatformKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = PlatformKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PlatformKeys, A::Error> {
                let mut keys = serde_json::Map::new();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let root = key.split('.').next().unwrap_or_default();
                    if matches!(root, "device" | "host" | "platform") {
                        keys.insert(key.into_owned(), map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(PlatformKeys(keys))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

/// Linux distributions as ECS `host.os.family` and `host.os.platform` name
/// them (`debian`, `redhat`, `amzn`, `sles`, ...), without the word Linux;
/// a name counts when its first word starts with one (`rhel8`).
const LINUX_DISTRIBUTIONS: [&str; 17] = [
    "debian", "ubuntu", "redhat", "rhel", "centos", "fedora", "suse", "sles", "opensuse", "amzn",
    "amazon", "alpine", "arch", "rocky", "alma", "gentoo", "kali",
];

/// ATT&CK's platform spelling for the common OS words.
fn platform_name(os: &str) -> String {
    let lower = os.to_ascii_lowercase();
    let first_word = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    if lower.contains("windows") {
        "Windows".into()
    } else if lower.contains("android") {
        // Before "linux": Android reports itself as Linux too.
        "Android".into()
    } else if ["ios", "ipados", "iphone"].contains(&first_word) {
        "iOS".into()
    } else if lower.contains("mac") || lower.contains("darwin") {
        "macOS".into()
    } else if lower.contains("linux")
        || LINUX_DISTRIBUTIONS
            .iter()
            .any(|d| first_word.starts_with(d))
    {
        "Linux".into()
    } else {
        os.to_string()
    }
}

/// The UTC day an alert counts on: when it happened, else when it arrived.
fn day_of(alert: &AlertRecord) -> NaiveDate {
    alert.time.unwrap_or(alert.received_at).date_naive()
}

/// The rollup changes of `entries` of one alert: `sign` 1 adds them, -1
/// removes them.
pub(crate) fn rollup_deltas(
    alert: &AlertRecord,
    entries: &[CanonicalEntryRecord],
    sign: i64,
) -> Vec<RollupRecord> {
    if entries.is_empty() {
        return Vec::new();
    }
    rollup_deltas_on(alert, &platform_of(&alert.raw), entries, sign)
}

/// [`rollup_deltas`] of an alert whose platform is known.
fn rollup_deltas_on(
    alert: &AlertRecord,
    platform: &str,
    entries: &[CanonicalEntryRecord],
    sign: i64,
) -> Vec<RollupRecord> {
    if entries.is_empty() {
        return Vec::new();
    }
    let day = day_of(alert);
    let connector = connector_of(alert.connector.as_deref(), alert.product.as_deref());
    let platform = platform.to_string();
    let severity = Severity::from_word(&alert.severity).as_str().to_string();
    // Each alert counts once at a technique: the entry naming the smallest
    // tactic (none sorts first) carries the alert, its siblings in other
    // tactics only their cells.
    let mut first_tactic: std::collections::HashMap<String, &str> = Default::default();
    for e in entries {
        let technique = e.technique.trim().to_ascii_uppercase();
        let tactic = e.tactic.as_deref().unwrap_or("");
        let slot = first_tactic.entry(technique).or_insert(tactic);
        if tactic < *slot {
            *slot = tactic;
        }
    }
    let mut carried = std::collections::HashSet::new();
    entries
        .iter()
        .map(|e| RollupRecord {
            day,
            tactic: e.tactic.clone().unwrap_or_default(),
            technique: e.technique.trim().to_ascii_uppercase(),
            source: e.source.clone(),
            severity: severity.clone(),
            connector: connector.clone(),
            platform: platform.clone(),
            band: e.band.clone(),
            count: sign,
            alerts: {
                let technique = e.technique.trim().to_ascii_uppercase();
                let tactic = e.tactic.as_deref().unwrap_or("");
                let first = first_tactic.get(&technique).is_some_and(|t| *t == tactic);
                if first && carried.insert(technique) {
                    sign
                } else {
                    0
                }
            },
            confidence_sum: sign as f64 * e.confidence,
        })
        .collect()
}

/// The rollup changes of a newly stored alert and its first canonical set.
/// `platform` is the alert's ([`platform_in`] its document, read while the
/// document was decoded anyway).
pub(crate) fn ingest_deltas(
    alert: &AlertRecord,
    platform: &str,
    set: &CanonicalRecord,
) -> Vec<RollupRecord> {
    rollup_deltas_on(alert, platform, &set.entries, 1)
}

/// The rollup changes of an alert whose canonical set goes from `old` to
/// `new`.
pub(crate) fn change_deltas(
    alert: &AlertRecord,
    old: Option<&CanonicalRecord>,
    new: Option<&CanonicalRecord>,
) -> Vec<RollupRecord> {
    let mut deltas = old.map_or_else(Vec::new, |o| rollup_deltas(alert, &o.entries, -1));
    deltas.extend(new.map_or_else(Vec::new, |n| rollup_deltas(alert, &n.entries, 1)));
    deltas
}

/// The rollup changes of an alert whose content (day, severity,
/// connector, platform) changes while its canonical set stays.
pub(crate) fn content_deltas(
    before: &AlertRecord,
    after: &AlertRecord,
    current: Option<&CanonicalRecord>,
) -> Vec<RollupRecord> {
    let Some(current) = current else {
        return Vec::new();
    };
    let mut deltas = rollup_deltas(before, &current.entries, -1);
    deltas.extend(rollup_deltas(after, &current.entries, 1));
    deltas
}

fn corrupt(column: &str, value: &str) -> ServiceError {
    ServiceError::Store(store::StoreError::Corrupt {
        what: format!("matrix_rollups.{column}"),
        reason: format!("`{value}` is not a known value"),
    })
}

pub(crate) fn rollup_row(r: RollupRecord) -> Result<RollupRow> {
    let source = Source::from_str(&r.source).map_err(|_| corrupt("source", &r.source))?;
    let severity = parse_severity(&r.severity).ok_or_else(|| corrupt("severity", &r.severity))?;
    let band = parse_band(&r.band).ok_or_else(|| corrupt("band", &r.band))?;
    Ok(RollupRow {
        day: r.day,
        tactic: r.tactic,
        technique: r.technique,
        source,
        severity,
        connector: r.connector,
        platform: (!r.platform.is_empty()).then_some(r.platform),
        band,
        count: u64::try_from(r.count).map_err(|_| corrupt("count", &r.count.to_string()))?,
        confidence_sum: r.confidence_sum,
    })
}

/// Per-technique totals counting each alert once per technique (the
/// rollups' `alerts` column), where the view counts mappings. Intensity is
/// the rows' intensity scaled by their share of alerts among mappings,
/// exact when the mappings of one technique on one alert share their
/// confidence, as those from one rule do.
fn technique_totals(
    rows: &[RollupRow],
    alerts: &[i64],
    filter: &MatrixFilter,
    formula: &IntensityFormula,
) -> Vec<TechniqueTotal> {
    // Keyed by the borrowed ID: rows repeat a few hundred techniques
    // thousands of times, so a key is allocated once per technique only.
    let mut totals: std::collections::HashMap<&str, TechniqueTotal> = Default::default();
    for (row, &alerts) in rows.iter().zip(alerts) {
        let kept = filter.in_time_range(row)
            && filter.matches_dimensions(row)
            && !filter.exclusions.iter().any(|w| w.excludes(row));
        let alerts = u64::try_from(alerts).unwrap_or(0);
        if !kept || alerts == 0 || row.count == 0 {
            continue;
        }
        let total = totals
            .entry(row.technique.as_str())
            .or_insert_with(|| TechniqueTotal {
                technique: row.technique.clone(),
                count: 0,
                intensity: 0.0,
                low_confidence: 0,
            });
        total.count += alerts;
        total.intensity += formula.intensity(row) * alerts as f64 / row.count as f64;
        if row.band == Band::Low {
            total.low_confidence += alerts;
        }
    }
    let mut totals: Vec<TechniqueTotal> = totals.into_values().collect();
    totals.sort_by(|a, b| a.technique.cmp(&b.technique));
    totals
}

pub(crate) fn window(e: &ExclusionRecord) -> ExclusionWindow {
    ExclusionWindow {
        connector: e.connector.clone(),
        from: e.from,
        to: e.to,
        reason: e.reason.clone(),
    }
}

/// The first day after today (UTC): the end of an open time range.
fn tomorrow() -> NaiveDate {
    Utc::now().date_naive() + Duration::days(1)
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

impl App {
    /// The matrix of an org for the active release of `domain`, computed
    /// from rollups, with the org's exclusion windows applied and anomaly
    /// flags on cells that spike on the last day of the range.
    pub async fn matrix(
        &self,
        actor: &Actor,
        org: &str,
        domain: Domain,
        filter: MatrixFilter,
    ) -> Result<MatrixView> {
        self.authorize(actor, Action::ReadMappings, ("matrix", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let (view, _) = self.view(&scope, domain, filter).await?;
        Ok(view)
    }

    /// The view and the release it was computed for.
    async fn view(
        &self,
        scope: &OrgScope,
        domain: Domain,
        mut filter: MatrixFilter,
    ) -> Result<(MatrixView, std::sync::Arc<Release>)> {
        // The org's audit head (are cached rows current?) and the active
        // release (which layout?) in one read: on PostgreSQL every read is
        // a round trip to the server. The head is read before the rows:
        // rows cached under a head are then never older than it.
        let (head, dataset) = self
            .store
            .org_audit_head_and_active_dataset(scope, domain)
            .await?;
        let dataset = dataset.ok_or_else(|| ServiceError::NotFound {
            kind: "active dataset of domain",
            id: domain.to_string(),
        })?;
        let release = self.release_of_active(domain, &dataset).await?;

        // The anomaly test compares the range's last day with the days
        // before it, so the read reaches back past `from` by the baseline.
        let anomaly = AnomalyWindow::daily(filter.to.unwrap_or_else(tomorrow));
        let baseline_start = anomaly.end - Duration::days(i64::from(anomaly.baseline_periods) + 1);
        let read_from = filter.from.map(|f| f.min(baseline_start));
        let rollups = self.rollups(scope, head, read_from, filter.to).await?;
        let key = ViewKey {
            dataset,
            filter: filter.clone(),
            anomaly_end: anomaly.end,
        };
        if let Some(view) = rollups.view(&key) {
            return Ok((MatrixView::clone(&view), release));
        }
        let (rows, alerts) = (&rollups.rows, &rollups.alerts);
        filter
            .exclusions
            .extend(rollups.exclusions.iter().map(window));

        let formula = IntensityFormula::default();
        let mut view = views::matrix(&release, rows.iter(), &filter, &formula);
        view.techniques = technique_totals(rows, alerts, &filter, &formula);
        // Only the anomaly window's days matter to the flags.
        let daily = views::daily_counts(
            &release,
            rows.iter().filter(|r| r.day >= baseline_start),
            &filter,
        );
        view.attach_anomalies(&views::anomalies(&daily, &anomaly));
        rollups.keep_view(key, std::sync::Arc::new(view.clone()));
        Ok((view, release))
    }

    /// The org's rollup rows of a day range, from the cache while the org's
    /// audit `head`, read before calling, says nothing changed (see
    /// [`crate::rollup_cache`]).
    async fn rollups(
        &self,
        scope: &OrgScope,
        head: i64,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<std::sync::Arc<CachedRollups>> {
        let key = (scope.org().clone(), from, to);
        if let Some(hit) = self.rollup_cache.get(&key, head) {
            return Ok(hit);
        }
        let records = self.store.rollups(scope, from, to).await?;
        // Exclusion windows are written with an org audit event too, so
        // they are as current as the rows under the same head.
        let exclusions = self.store.exclusions(scope).await?;
        let alerts: Vec<i64> = records.iter().map(|r| r.alerts).collect();
        let rows = records
            .into_iter()
            .map(rollup_row)
            .collect::<Result<Vec<_>>>()?;
        let read = std::sync::Arc::new(CachedRollups::new(rows, alerts, exclusions));
        self.rollup_cache.put(key, head, read.clone());
        Ok(read)
    }

    /// The parsed release of `dataset`, the active dataset of `domain` as
    /// read with the org's audit head: parsed releases are cached by dataset
    /// id, and a dataset's content never changes, so only an activation
    /// (a new id here) makes it read and parse anything.
    async fn release_of_active(
        &self,
        domain: Domain,
        dataset: &store::DatasetId,
    ) -> Result<std::sync::Arc<Release>> {
        if let Some(release) = self.cached(dataset) {
            return Ok(release);
        }
        // Gone between the two reads (nothing deletes a dataset today):
        // answered as if no dataset were active.
        let dataset = self
            .store
            .dataset(dataset)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "active dataset of domain",
                id: domain.to_string(),
            })?;
        self.release_of(&dataset).await
    }

    pub(crate) async fn matrix_release(&self, domain: Domain) -> Result<std::sync::Arc<Release>> {
        let dataset =
            self.store
                .active_dataset(domain)
                .await?
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "active dataset of domain",
                    id: domain.to_string(),
                })?;
        self.release_of(&dataset).await
    }

    /// Rebuilds the org's rollups from its current canonical mappings, in
    /// one transaction, and audits it. On SQLite the transaction holds the
    /// write lock from the start, so no ingestion lands between the read
    /// and the write; on PostgreSQL an ingestion running at the same time
    /// may be counted twice or missed, so run it in a quiet moment.
    pub async fn rebuild_matrix(&self, actor: &Actor, org: &str) -> Result<RebuildReport> {
        self.authorize(actor, Action::MatrixAdmin, ("matrix", org))
            .await?;
        let scope = self.scope(actor, org).await?;

        let mut tx = self.store.begin_in(&scope).await?;
        let rows_removed = store::rollups::clear(&mut tx, &scope).await?;
        let (mut alerts, mut mappings) = (0usize, 0u64);
        let mut after = None;
        loop {
            let page = self.store.alerts_page(&scope, after.as_ref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            alerts += page.len();
            let mut deltas = Vec::new();
            for alert in &page {
                let current = self
                    .store
                    .canonical(&scope, &alert.id, alert.canonical_version)
                    .await?;
                if let Some(current) = current {
                    mappings += current.entries.len() as u64;
                    deltas.extend(rollup_deltas(alert, &current.entries, 1));
                }
            }
            store::rollups::apply_delta(&mut tx, &scope, deltas).await?;
        }
        let report = RebuildReport {
            alerts,
            mappings,
            rows_removed,
        };
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "matrix_rebuild",
            ("matrix", scope.org().as_str()),
            json!(report),
        ))
        .await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Defines an exclusion window (org admin), audited.
    pub async fn add_exclusion(
        &self,
        actor: &Actor,
        org: &str,
        input: ExclusionInput,
    ) -> Result<ExclusionRecord> {
        self.authorize(actor, Action::MatrixAdmin, ("matrix_exclusion", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let connector = input.connector.trim();
        if connector.is_empty() {
            return Err(invalid("connector", "a connector is required".into()));
        }
        if input.to <= input.from {
            return Err(invalid(
                "to",
                format!("{} is not after from {}", input.to, input.from),
            ));
        }
        if input.reason.trim().is_empty() {
            return Err(invalid("reason", "a reason is required".into()));
        }

        let record = ExclusionRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: scope.org().clone(),
            connector: connector.to_string(),
            from: input.from,
            to: input.to,
            reason: input.reason.trim().to_string(),
            created_by: actor.name.clone(),
            created_at: store::now(),
        };
        let mut tx = self.store.begin_in(&scope).await?;
        store::rollups::insert_exclusion(&mut tx, &record).await?;
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "matrix_exclusion_add",
            ("matrix_exclusion", record.id.as_str()),
            json!(record),
        ))
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The org's exclusion windows.
    pub async fn exclusions(&self, actor: &Actor, org: &str) -> Result<Vec<ExclusionRecord>> {
        self.authorize(actor, Action::ReadMappings, ("matrix_exclusion", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        Ok(self.store.exclusions(&scope).await?)
    }

    /// The alerts behind one cell, a page at a time: each with its mappings
    /// that count in the cell, their source, confidence, evidence, the
    /// alert's override history and open review items; beside them the
    /// incidents holding the page's alerts. Rows are filtered exactly as the
    /// matrix counts them (platform included: the alert's own platform, as
    /// its rollup row records it), so the alerts of every page together
    /// match the cell's count. A page may hold fewer alerts than `limit`
    /// while `next_cursor` is set.
    #[allow(clippy::too_many_arguments)]
    pub async fn matrix_drilldown(
        &self,
        actor: &Actor,
        org: &str,
        domain: Domain,
        tactic: &str,
        technique: &str,
        filter: MatrixFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Drilldown> {
        self.authorize(actor, Action::ReadMappings, ("matrix", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let release = self.matrix_release(domain).await?;
        let Some(cell_tactic) = release.tactic(tactic.trim()) else {
            return Err(invalid(
                "tactic",
                format!("`{tactic}` is not a tactic of {}", release.version),
            ));
        };
        let technique = technique.trim().to_ascii_uppercase();
        let Some(known) = release.techniques.iter().find(|t| t.id == technique) else {
            return Err(invalid(
                "technique",
                format!("`{technique}` is not a technique of {}", release.version),
            ));
        };
        let tactics_of_technique: Vec<String> = release
            .tactics_of(known)
            .iter()
            .map(|t| t.id.clone())
            .collect();
        let exclusions: Vec<ExclusionWindow> = self
            .store
            .exclusions(&scope)
            .await?
            .iter()
            .map(window)
            .collect();

        let limit = limit.clamp(1, 500);
        let cursor = cursor.map(crate::id_cursor).transpose()?;
        let (rows, next_cursor) = self
            .cell_page(&scope, &technique, &filter, cursor.as_deref(), limit)
            .await?;

        // Evidence and override history of the whole page in two reads,
        // not two per mapping row: under load each read queues for a
        // connection.
        let page_alerts: Vec<store::AlertId> = {
            let mut ids: Vec<&str> = rows.iter().map(|r| r.alert_id.as_str()).collect();
            ids.dedup();
            ids.into_iter()
                .map(|a| store::AlertId(a.to_string()))
                .collect()
        };
        let mut candidates_by_alert: std::collections::HashMap<
            String,
            Vec<store::CandidateRecord>,
        > = Default::default();
        for c in self
            .store
            .candidates_of_alerts(&scope, &page_alerts)
            .await?
        {
            candidates_by_alert
                .entry(c.alert_id.to_string())
                .or_default()
                .push(c);
        }
        let mut overrides_by_alert: std::collections::HashMap<String, Vec<OverrideRecord>> =
            Default::default();
        for o in self.store.overrides_of_alerts(&scope, &page_alerts).await? {
            overrides_by_alert
                .entry(o.alert_id.to_string())
                .or_default()
                .push(o);
        }

        let mut alerts: Vec<DrilldownAlert> = Vec::new();
        let mut platforms: std::collections::HashMap<String, Option<String>> = Default::default();
        for r in rows {
            // The cell takes a mapping that names its tactic, or one that
            // names none when the technique belongs to the tactic.
            let in_cell = match r.tactic.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                Some(named) => release
                    .tactic(named)
                    .is_some_and(|t| t.id == cell_tactic.id),
                None => tactics_of_technique.contains(&cell_tactic.id),
            };
            if !in_cell {
                continue;
            }
            // The platform lives in the raw alert only: read it when a
            // platform filter needs it, once per alert.
            let platform = if filter.platforms.is_empty() {
                None
            } else if let Some(known) = platforms.get(&r.alert_id) {
                known.clone()
            } else {
                let found = self
                    .store
                    .alert(&scope, &r.alert_id)
                    .await?
                    .map(|a| platform_of(&a.raw))
                    .filter(|p| !p.is_empty());
                platforms.insert(r.alert_id.clone(), found.clone());
                found
            };
            let row = RollupRow {
                day: r.observed_at.date_naive(),
                tactic: r.tactic.clone().unwrap_or_default(),
                technique: r.technique.clone(),
                source: Source::from_str(&r.source).map_err(|_| corrupt("source", &r.source))?,
                severity: Severity::from_word(&r.severity),
                connector: connector_of(r.connector.as_deref(), r.product.as_deref()),
                platform,
                band: parse_band(&r.band).ok_or_else(|| corrupt("band", &r.band))?,
                count: 1,
                confidence_sum: r.confidence,
            };
            if !filter.matches_dimensions(&row) || exclusions.iter().any(|w| w.excludes(&row)) {
                continue;
            }
            let mapping = drilldown_mapping(
                &r,
                candidates_by_alert
                    .get(&r.alert_id)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                overrides_by_alert
                    .get(&r.alert_id)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            );
            match alerts.last_mut() {
                Some(last) if last.alert_id == r.alert_id => last.mappings.push(mapping),
                _ => alerts.push(DrilldownAlert {
                    alert_id: r.alert_id.clone(),
                    source_uid: r.source_uid,
                    title: r.title,
                    observed_at: r.observed_at,
                    severity: r.severity,
                    connector: row.connector,
                    host: r.host,
                    user: r.user,
                    mappings: vec![mapping],
                    incidents: Vec::new(),
                    open_reviews: Vec::new(),
                }),
            }
        }
        let incidents = self
            .attach_incidents_and_reviews(&scope, &mut alerts)
            .await?;

        Ok(Drilldown {
            tactic: cell_tactic.id.clone(),
            technique,
            incidents,
            alerts,
            next_cursor,
        })
    }

    /// The mapping rows of one drilldown page and the cursor of the next.
    /// A page never ends inside an alert: the rows of the last alert of a
    /// full read may continue on the next one, so they are left to the next
    /// page, whose cursor is the last alert kept. When one alert fills the
    /// whole read, the read grows until the alert ends.
    async fn cell_page(
        &self,
        scope: &OrgScope,
        technique: &str,
        filter: &MatrixFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<store::CellMappingRecord>, Option<String>)> {
        let mut fetch = limit;
        loop {
            let mut rows = self
                .store
                .cell_mappings(
                    scope,
                    technique,
                    filter.from.map(start_of),
                    filter.to.map(start_of),
                    cursor,
                    i64::try_from(fetch).unwrap_or(i64::MAX),
                )
                .await?;
            if rows.len() < fetch {
                return Ok((rows, None));
            }
            let last = rows.last().map(|r| r.alert_id.clone()).unwrap_or_default();
            let first_of_last = rows.iter().position(|r| r.alert_id == last).unwrap_or(0);
            if first_of_last > 0 {
                rows.truncate(first_of_last);
                let next = rows.last().map(|r| r.alert_id.clone());
                return Ok((rows, next));
            }
            fetch = fetch.saturating_mul(2);
        }
    }

    /// Fills each alert's incidents and open review items, and answers the
    /// incidents holding the alerts with how many of them each holds.
    async fn attach_incidents_and_reviews(
        &self,
        scope: &OrgScope,
        alerts: &mut [DrilldownAlert],
    ) -> Result<Vec<DrilldownIncident>> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<store::AlertId> = alerts
            .iter()
            .map(|a| store::AlertId(a.alert_id.clone()))
            .collect();
        let holdings = self.store.incidents_holding(scope, &ids).await?;
        let reviews = self.store.open_reviews_of(scope, &ids).await?;

        let mut incidents: Vec<DrilldownIncident> = Vec::new();
        for h in holdings {
            if let Some(alert) = alerts
                .iter_mut()
                .find(|a| a.alert_id == h.alert_id.as_str())
            {
                alert.incidents.push(h.incident_id.to_string());
            }
            match incidents.last_mut() {
                Some(last) if last.id == h.incident_id.as_str() => last.alerts_held += 1,
                _ => incidents.push(DrilldownIncident {
                    id: h.incident_id.to_string(),
                    title: h.title,
                    status: h.status,
                    severity: h.severity,
                    alerts_held: 1,
                }),
            }
        }
        for r in reviews {
            if let Some(alert) = alerts.iter_mut().find(|a| {
                r.alert_id
                    .as_ref()
                    .is_some_and(|id| a.alert_id == id.as_str())
            }) {
                alert.open_reviews.push(DrilldownReview {
                    id: r.id,
                    reason: r.reason,
                    opened_at: r.opened_at,
                });
            }
        }
        Ok(incidents)
    }

    /// The view as an ATT&CK Navigator layer (format 4.5), validated, with
    /// an audit event naming the user and the scope.
    pub async fn export_navigator(
        &self,
        actor: &Actor,
        org: &str,
        domain: Domain,
        filter: MatrixFilter,
        full_matrix: bool,
    ) -> Result<Value> {
        self.authorize(actor, Action::MatrixExport, ("matrix_export", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let (view, release) = self.view(&scope, domain, filter.clone()).await?;

        let options = LayerOptions {
            name: format!("{org} ATT&CK activity"),
            description: format!(
                "Canonical mappings of {org}, {} {}",
                release.domain, release.version
            ),
            full_matrix,
            score: ScoreBy::Count,
            provenance: Provenance {
                org: org.to_string(),
                generated_at: store::now().to_rfc3339(),
                requested_by: Some(actor.name.clone()),
            },
        };
        let layer = views::navigator_layer(&view, &release, &options);
        if let Err(problems) = views::validate_layer(&layer) {
            return Err(ServiceError::Internal(format!(
                "the exported layer does not validate: {problems:?}"
            )));
        }
        self.audit_export(actor, &scope, "navigator", &filter, full_matrix, None)
            .await?;
        Ok(layer)
    }

    /// The view as CSV (one row per cell), or with `drilldown` the alerts
    /// behind the view's cells with the redaction asked for; audited.
    pub async fn export_csv(
        &self,
        actor: &Actor,
        org: &str,
        domain: Domain,
        filter: MatrixFilter,
        redaction: &Redaction,
    ) -> Result<String> {
        self.authorize(actor, Action::MatrixExport, ("matrix_export", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let (view, _) = self.view(&scope, domain, filter.clone()).await?;
        let csv = views::view_csv(&view).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.audit_export(actor, &scope, "csv", &filter, false, Some(redaction))
            .await?;
        Ok(csv)
    }

    async fn audit_export(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        format: &str,
        filter: &MatrixFilter,
        full_matrix: bool,
        redaction: Option<&Redaction>,
    ) -> Result<()> {
        let details = json!({
            "format": format,
            "user": actor.name,
            "filter": filter,
            "full_matrix": full_matrix,
            "redaction": redaction,
        });
        let mut tx = self.store.begin_in(scope).await?;
        tx.append_audit(&self.org_event(
            actor,
            scope,
            "matrix_export",
            ("matrix", scope.org().as_str()),
            details,
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Compares a Navigator layer (one layer or a multi-layer file) with
    /// the org's activity under `filter`.
    pub async fn import_layer(
        &self,
        actor: &Actor,
        org: &str,
        domain: Domain,
        filter: MatrixFilter,
        layer_json: &str,
    ) -> Result<Value> {
        self.authorize(actor, Action::ReadMappings, ("matrix", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let (view, release) = self.view(&scope, domain, filter).await?;
        let imported = views::import_layer(layer_json, &release, None)
            .map_err(|e| invalid("layer", e.to_string()))?;
        let layers: Vec<Value> = imported
            .layers
            .iter()
            .map(|layer| {
                json!({
                    "name": layer.name,
                    "domain": layer.domain,
                    "attack_version": layer.attack_version,
                    "unknown": layer.unknown,
                    "comparison": views::compare(layer, &view),
                })
            })
            .collect();
        Ok(json!({"layers": layers, "release": release.version}))
    }
}

/// One drilldown mapping with the evidence of its winning candidates and
/// its alert's override history, from rows read for the whole page.
fn drilldown_mapping(
    r: &store::CellMappingRecord,
    candidates: &[store::CandidateRecord],
    overrides: &[OverrideRecord],
) -> DrilldownMapping {
    let candidate_ids: Vec<String> = serde_json::from_str(&r.candidate_ids).unwrap_or_default();
    let evidence = candidates
        .iter()
        .filter(|c| candidate_ids.contains(&c.id))
        .flat_map(|c| match serde_json::from_str::<Value>(&c.evidence) {
            Ok(Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(_) => Vec::new(),
        })
        .collect();
    DrilldownMapping {
        technique: r.technique.clone(),
        tactic: r.tactic.clone(),
        source: r.source.clone(),
        confidence: r.confidence,
        band: r.band.clone(),
        evidence,
        override_history: overrides.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_come_from_the_os_fields_in_attack_spelling() {
        assert_eq!(
            platform_of(r#"{"device": {"os": {"name": "Windows 11"}}}"#),
            "Windows"
        );
        assert_eq!(
            platform_of(r#"{"host": {"os": {"type": "linux"}}}"#),
            "Linux"
        );
        assert_eq!(platform_of(r#"{"device": {"hostname": "h"}}"#), "");
        // The first field in order that names something wins, past blanks
        // and values that are not text, whatever else the alert carries.
        assert_eq!(
            platform_of(
                r#"{"finding_info": {"uid": "x", "attacks": [{"t": 1}]},
                    "device": {"os": {"type": " ", "name": 7}},
                    "host": {"os": {"family": "darwin"}}, "platform": "Linux"}"#
            ),
            "macOS"
        );
        assert_eq!(platform_of(r#"{"platform": "Android"}"#), "Android");
        // A key given twice counts with its last value, as in a whole
        // JSON value.
        assert_eq!(
            platform_of(
                r#"{"device": {"os": {"name": "Windows"}}, "device": {"os": {"name": "Linux"}}}"#
            ),
            "Linux"
        );
        assert_eq!(
            platform_of(r#"{"platform": "Windows", "x": 1, "platform": "linux"}"#),
            "Linux"
        );
        // Escaped keys are read as keys.
        assert_eq!(platform_of(r#"{"pl\u0061tform": "macos"}"#), "macOS");
        assert_eq!(platform_of(r#"{"device": "laptop"}"#), "");
        // Dotted keys, whole or in part, name the same fields.
        assert_eq!(platform_of(r#"{"host.os.type": "windows"}"#), "Windows");
        assert_eq!(
            platform_of(r#"{"host.os": {"family": "debian linux"}}"#),
            "Linux"
        );
        assert_eq!(
            platform_of(r#"{"host.name": "h1", "device.os.name": "macOS 15"}"#),
            "macOS"
        );
        assert_eq!(platform_of(r#"{"host.hostname": "h1"}"#), "");
        assert_eq!(
            platform_of(r#"{"host": {"os.type": "windows"}}"#),
            "Windows"
        );
        // Flattened fields come as lists; distributions are Linux.
        assert_eq!(platform_of(r#"{"host.os.type": ["windows"]}"#), "Windows");
        assert_eq!(platform_of(r#"{"host.os": {"family": "debian"}}"#), "Linux");
        assert_eq!(
            platform_of(r#"{"host": {"os": {"platform": "centos"}}}"#),
            "Linux"
        );
        assert_eq!(platform_of(r#"{"host.os.type": [1, []]}"#), "");
        assert_eq!(platform_of(r#"{"host.os.platform": "rhel8"}"#), "Linux");
        assert_eq!(platform_of(r#"{"host.os.platform": "amzn"}"#), "Linux");
        // ECS's name of the system counts where nothing more specific does.
        assert_eq!(
            platform_of(r#"{"host": {"os": {"name": "Mac OS X"}}}"#),
            "macOS"
        );
        assert_eq!(platform_of(r#"{"host.os.name": "Ubuntu"}"#), "Linux");
        // Mobile systems in ATT&CK's spelling, whatever the version.
        assert_eq!(platform_of(r#"{"platform": "Android 14"}"#), "Android");
        assert_eq!(
            platform_of(r#"{"host.os": {"family": "android", "type": "linux"}}"#),
            "Linux",
            "the type comes first"
        );
        assert_eq!(platform_of(r#"{"device.os.name": "iOS 17.4"}"#), "iOS");
        assert_eq!(platform_of(r#"{"device.os.name": "iPadOS"}"#), "iOS");
        assert_eq!(platform_of(r#"{"platform": "BIOS"}"#), "BIOS");
        assert_eq!(
            platform_of(r#"{"host.os": {"name": "Ubuntu", "type": "windows"}}"#),
            "Windows"
        );
        assert_eq!(
            platform_of(r#"{"device.os.name": "Oracle Solaris 11.4"}"#),
            "Oracle Solaris 11.4"
        );
        assert_eq!(platform_of(r#"["Windows"]"#), "");
        assert_eq!(platform_of("not json"), "");
    }

    #[test]
    fn filters_refuse_unknown_words_with_their_field() {
        let input = FilterInput {
            band: Some("hgh".into()),
            ..FilterInput::default()
        };
        match input.parse() {
            Err(ServiceError::InvalidInput { field, .. }) => assert_eq!(field, "band"),
            other => panic!("expected a band error, got {other:?}"),
        }
        let ok = FilterInput {
            source: Some("rule, manual".into()),
            from: Some("2026-01-01".into()),
            to: Some("2026-02-01T00:00:00Z".into()),
            ..FilterInput::default()
        }
        .parse()
        .unwrap();
        assert_eq!(ok.sources, vec![Source::Rule, Source::Manual]);
        assert_eq!(ok.to, NaiveDate::from_ymd_opt(2026, 2, 1));
    }
}
