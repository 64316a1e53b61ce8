//! Incidents: the record, its alert attachments (with history), evidence
//! references and lead adjustments, plus the one query the profile needs.
//!
//! The profile is not stored: [`Store::incident_profile_rows`] reads the
//! current canonical entries of every live attached alert in one statement
//! and the service aggregates them, so the profile cannot drift from the
//! alerts' mappings.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::alerts::{get, get_opt_ts, get_ts, p};
use crate::batch::{Val, in_list, insert_rows};
use crate::{AlertId, Backend, Context, OrgId, OrgScope, Store, StoreError, Tx, ts};

crate::records::id_type!(
    /// Identifies an incident.
    IncidentId
);

/// One stored incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// The product's id.
    pub id: IncidentId,
    /// Its org.
    pub org_id: OrgId,
    /// Title.
    pub title: String,
    /// `open`, `contained`, `resolved`, `closed` or `reopened`.
    pub status: String,
    /// Severity word (`low`, `medium`, `high`, `critical`, ...).
    pub severity: String,
    /// The incident lead, when named.
    pub lead: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last change of the record, its alerts, evidence or adjustments.
    pub updated_at: DateTime<Utc>,
    /// The incident this one was merged into, once merged.
    pub merged_into: Option<IncidentId>,
    /// The incident this one was split from.
    pub split_from: Option<IncidentId>,
    /// True while a staleness trigger waits for a lead's review.
    pub stale: bool,
    /// The stale reasons since the last review (JSON text, an array).
    pub stale_reasons: String,
}

/// A live attachment: the alert's ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedAlert {
    /// The product's alert id.
    pub alert_id: AlertId,
    /// The alert's own id in its source.
    pub source_uid: String,
    /// When it was attached.
    pub attached_at: DateTime<Utc>,
}

/// One evidence reference of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Id.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// The incident.
    pub incident_id: IncidentId,
    /// What kind of reference (`ticket`, `url`, `file`, `note`, ...).
    pub kind: String,
    /// The reference itself.
    pub reference: String,
    /// Who added it.
    pub added_by: String,
    /// When.
    pub added_at: DateTime<Utc>,
}

/// One lead adjustment row (append-only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdjustmentRecord {
    /// Id.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// The incident it was made on (a merge does not move it).
    pub incident_id: IncidentId,
    /// Per-incident sequence number, from 1.
    pub version: i64,
    /// `add`, `remove` or `replace`.
    pub action: String,
    /// Technique added (add, replace) or removed (remove).
    pub technique: String,
    /// Its tactic.
    pub tactic: Option<String>,
    /// For replace: the technique replaced.
    pub replaces_technique: Option<String>,
    /// For replace: its tactic.
    pub replaces_tactic: Option<String>,
    /// Reason code.
    pub reason: String,
    /// The lead's rationale (required).
    pub rationale: String,
    /// Evidence references behind it (JSON text, an array).
    pub evidence: String,
    /// Confidence the entry gets.
    pub confidence: f64,
    /// Who made it.
    pub actor: String,
    /// `proposed`, `approved` or `rejected`.
    pub status: String,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When; orders "last approved wins".
    pub approved_at: Option<DateTime<Utc>>,
    /// The adjustment it supersedes.
    pub supersedes: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// The live alerts of an incident and their current canonical entries, as
/// the profile reads them ([`Store::incident_profile_rows`]): one row per
/// (alert, entry), and one row without an entry for an alert that has none.
///
/// Held as one text, each value a range of it, so that reading 10,000
/// alerts allocates a few buffers instead of a string per value.
#[derive(Debug, Clone, Default)]
pub struct ProfileRows {
    columns: Columns,
    confidence: Vec<Option<f64>>,
    /// Row indices ordered by alert id, then technique and tactic.
    order: Vec<usize>,
}

/// One row of [`ProfileRows`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileRowRef<'a> {
    /// The product's alert id.
    pub alert_id: &'a str,
    /// The alert's own id in its source.
    pub source_uid: &'a str,
    /// The canonical entry, if the alert has any.
    pub entry: Option<ProfileEntryRef<'a>>,
}

/// One current canonical entry of an attached alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileEntryRef<'a> {
    /// The technique.
    pub technique: &'a str,
    /// The tactic.
    pub tactic: Option<&'a str>,
    /// The winning source.
    pub source: &'a str,
    /// The winning confidence.
    pub confidence: f64,
    /// Candidate ids (JSON text, an array).
    pub candidate_ids: &'a str,
    /// Override ids (JSON text, an array).
    pub override_ids: &'a str,
    /// Producers (JSON text, an array).
    pub producers: &'a str,
    /// ATT&CK release the entry was computed under.
    pub release: &'a str,
}

/// The text columns of [`ProfileRows`], in the order of the statement.
const PROFILE_COLUMNS: [&str; 10] = [
    "alert_id",
    "source_uid",
    "technique",
    "tactic",
    "source",
    "confidence",
    "candidate_ids",
    "override_ids",
    "producers",
    "release",
];

/// Separates the values of one aggregated column. An ASCII control
/// character: ids, ATT&CK ids, sources, numbers and JSON text (which
/// escapes control characters) never hold it; a source uid could, and then
/// the counts disagree and the rows are read one by one instead.
const SEPARATOR: u8 = 0x1e;

/// The values of [`ProfileRows`]: one text, and for each column of
/// [`PROFILE_COLUMNS`] each row's range in it.
#[derive(Debug, Clone, Default)]
struct Columns {
    text: String,
    ranges: Vec<Vec<(usize, usize)>>,
}

impl Columns {
    fn new() -> Columns {
        Columns {
            text: String::new(),
            ranges: vec![Vec::new(); PROFILE_COLUMNS.len()],
        }
    }

    /// The rows of the profile's aggregated read (one text per attachment:
    /// alert id, source uid and mapping copy joined by [`UNIT_SEPARATOR`],
    /// attachments joined by [`SEPARATOR`]), as ranges of that text: an
    /// alert without entries gives one row without an entry, an alert with
    /// entries a row per entry. `None` unless it holds exactly
    /// `attachments` copies, each with the fields it should.
    ///
    /// Every separator is one ASCII byte, so the text is cut as bytes with
    /// `memchr`: a `str::split` per level cost a generic character search
    /// per field, a third of the profile's time in the client.
    fn from_copies(text: String, attachments: usize) -> Option<Columns> {
        let mut ranges = vec![Vec::with_capacity(attachments * 3 / 2); PROFILE_COLUMNS.len()];
        let bytes = text.as_bytes();
        let mut seen = 0;
        let mut start = 0;
        while attachments > 0 && start <= bytes.len() {
            let end = memchr::memchr(SEPARATOR, &bytes[start..]).map_or(bytes.len(), |i| start + i);
            seen += 1;
            push_copy(&mut ranges, bytes, start, end)?;
            start = end + 1;
        }
        (seen == attachments).then_some(Columns { text, ranges })
    }

    /// Appends the rows of `other` after these.
    fn append(&mut self, other: Columns) {
        let offset = self.text.len();
        self.text.push_str(&other.text);
        for (column, more) in self.ranges.iter_mut().zip(other.ranges) {
            column.extend(more.into_iter().map(|(s, e)| (s + offset, e + offset)));
        }
    }

    fn push(&mut self, column: usize, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.ranges[column].push((start, self.text.len()));
    }

    fn rows(&self) -> usize {
        self.ranges.first().map_or(0, Vec::len)
    }

    fn get(&self, column: usize, row: usize) -> &str {
        let (start, end) = self.ranges[column][row];
        &self.text[start..end]
    }
}

/// Some live attachments of an incident, read by one statement of the
/// profile (see [`Store::incident_profile_rows`]).
#[derive(Debug, Clone)]
struct ProfilePart {
    /// The incidents whose attachments these are.
    holders: Vec<String>,
    /// Only alert ids from this one on.
    from: Option<String>,
    /// Only alert ids before this one.
    before: Option<String>,
}

/// The UUID halfway between two UUIDs, as the lowercase text the ids are
/// stored as; `None` unless both are UUIDs and one lies between them.
fn middle_id(low: &str, high: &str) -> Option<String> {
    let low = uuid::Uuid::parse_str(low).ok()?.as_u128();
    let high = uuid::Uuid::parse_str(high).ok()?.as_u128();
    let middle = low.checked_add(high.checked_sub(low)? / 2)?;
    (middle > low).then(|| uuid::Uuid::from_u128(middle).hyphenated().to_string())
}

/// The live attachments of `holders` (id, lowest and highest alert id) cut
/// in two parts of about the same size: the holders in two groups when
/// there are several (an incident and those merged into it), else the one
/// incident's alerts at the middle of their id range (alert ids are UUIDv7
/// texts, which grow with time); one part when there is nothing to cut.
/// `None` when no holder holds an alert.
fn profile_halves(
    holders: Vec<(String, Option<String>, Option<String>)>,
) -> Option<(ProfilePart, Option<ProfilePart>)> {
    let whole = |holders| ProfilePart {
        holders,
        from: None,
        before: None,
    };
    let mut holding: Vec<_> = holders.into_iter().filter(|h| h.1.is_some()).collect();
    match holding.len() {
        0 => None,
        1 => {
            let (id, low, high) = holding.remove(0);
            let middle = low.zip(high).and_then(|(l, h)| middle_id(&l, &h));
            Some(match middle {
                Some(middle) => (
                    ProfilePart {
                        holders: vec![id.clone()],
                        from: None,
                        before: Some(middle.clone()),
                    },
                    Some(ProfilePart {
                        holders: vec![id],
                        from: Some(middle),
                        before: None,
                    }),
                ),
                None => (whole(vec![id]), None),
            })
        }
        n => {
            let mut ids: Vec<String> = holding.into_iter().map(|h| h.0).collect();
            let rest = ids.split_off(n / 2);
            Some((whole(ids), Some(whole(rest))))
        }
    }
}

/// Pushes the rows of the one attachment at `bytes[start..end]` (see
/// [`Columns::from_copies`]); `None` when it is not shaped as a copy.
fn push_copy(
    ranges: &mut [Vec<(usize, usize)>],
    bytes: &[u8],
    start: usize,
    end: usize,
) -> Option<()> {
    let copy = &bytes[start..end];
    // Neither an alert id nor a copy holds the unit separator; a source uid
    // may, so it is what lies between the first and the last.
    let first = start + memchr::memchr(UNIT_SEPARATOR, copy)?;
    let last = start + memchr::memrchr(UNIT_SEPARATOR, copy)?;
    if first == last {
        return None;
    }
    let (alert, uid) = ((start, first), (first + 1, last));
    let mapping = last + 1;
    if mapping == end {
        ranges[0].push(alert);
        ranges[1].push(uid);
        for column in &mut ranges[2..] {
            column.push((0, 0));
        }
        return Some(());
    }
    // Each entry is 8 fields joined by the field separator; entries are
    // joined by the entry separator, and the last ends the copy.
    let fields = ranges.len() - 2;
    let mut field = 0;
    let mut field_start = mapping;
    let ends = memchr::memchr2_iter(FIELD_SEPARATOR, ENTRY_SEPARATOR, &bytes[mapping..end])
        .map(|i| mapping + i)
        .chain(std::iter::once(end));
    for at in ends {
        if field == fields {
            return None;
        }
        ranges[2 + field].push((field_start, at));
        field += 1;
        field_start = at + 1;
        if at == end || bytes[at] == ENTRY_SEPARATOR {
            let (technique_start, technique_end) = ranges[2][ranges[2].len() - 1];
            if field != fields || technique_start == technique_end {
                return None;
            }
            ranges[0].push(alert);
            ranges[1].push(uid);
            field = 0;
        }
    }
    Some(())
}

impl ProfileRows {
    /// Builds the rows from their columns, in [`PROFILE_COLUMNS`] order:
    /// ordered by alert id, then technique and tactic, each row once.
    fn new(columns: Columns) -> Result<ProfileRows, StoreError> {
        let rows = columns.rows();
        let confidence = (0..rows)
            .map(|row| match columns.get(5, row) {
                "" => Ok(None),
                text => text
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        what: "canonical_mappings.confidence".into(),
                        reason: format!("`{text}`: {e}"),
                    }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Ordered by alert, then pair; an alert attached both to an
        // incident and to one merged into it comes twice, identically, and
        // counts once.
        let key = |row: &usize| {
            let col = |i: usize| columns.get(i, *row);
            (col(0), col(2), col(3))
        };
        let mut order: Vec<usize> = (0..rows).collect();
        // One incident's attachments come in the order of the index, by
        // alert id, with each copy's entries in order: then the rows are
        // strictly ordered already and the sort (some 200,000 comparisons of
        // three texts for 10,000 alerts) is skipped.
        if !order.windows(2).all(|w| key(&w[0]) < key(&w[1])) {
            order.sort_by(|a, b| key(a).cmp(&key(b)));
            order.dedup_by(|a, b| key(a) == key(b));
        }
        Ok(ProfileRows {
            columns,
            confidence,
            order,
        })
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when the incident holds no live alert.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The rows, ordered by alert id.
    pub fn iter(&self) -> impl Iterator<Item = ProfileRowRef<'_>> + '_ {
        self.order.iter().map(|&row| self.row(row))
    }

    fn row(&self, row: usize) -> ProfileRowRef<'_> {
        let col = |i: usize| self.columns.get(i, row);
        let entry = match (col(2), self.confidence[row]) {
            ("", _) | (_, None) => None,
            (technique, Some(confidence)) => Some(ProfileEntryRef {
                technique,
                tactic: Some(col(3)).filter(|t| !t.is_empty()),
                source: col(4),
                confidence,
                candidate_ids: col(6),
                override_ids: col(7),
                producers: col(8),
                release: col(9),
            }),
        };
        ProfileRowRef {
            alert_id: col(0),
            source_uid: col(1),
            entry,
        }
    }
}

/// One incident as the org's incident list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSummaryRecord {
    /// The product's id.
    pub id: IncidentId,
    /// Title.
    pub title: String,
    /// Status.
    pub status: String,
    /// Severity word.
    pub severity: String,
    /// Live attached alerts.
    pub alert_count: i64,
    /// Last change of the record, its alerts, evidence or adjustments.
    pub updated_at: DateTime<Utc>,
    /// The incident it was merged into, once merged.
    pub merged_into: Option<IncidentId>,
    /// True while a staleness trigger waits for a lead's review.
    pub stale: bool,
}

const INCIDENT_COLUMNS: [&str; 13] = [
    "id",
    "org_id",
    "title",
    "status",
    "severity",
    "lead",
    "created_by",
    "created_at",
    "updated_at",
    "merged_into",
    "split_from",
    "stale",
    "stale_reasons",
];

const ADJUSTMENT_COLUMNS: [&str; 19] = [
    "id",
    "org_id",
    "incident_id",
    "version",
    "action",
    "technique",
    "tactic",
    "replaces_technique",
    "replaces_tactic",
    "reason",
    "rationale",
    "evidence",
    "confidence",
    "actor",
    "status",
    "approved_by",
    "approved_at",
    "supersedes",
    "created_at",
];

const ATTACH_COLUMNS: [&str; 8] = [
    "id",
    "org_id",
    "incident_id",
    "alert_id",
    "attached_at",
    "attached_by",
    "source_uid",
    "mapping",
];

fn incident_from_row(row: &AnyRow) -> Result<IncidentRecord, StoreError> {
    let t = "incidents";
    Ok(IncidentRecord {
        id: IncidentId(get(row, t, "id")?),
        org_id: OrgId(get(row, t, "org_id")?),
        title: get(row, t, "title")?,
        status: get(row, t, "status")?,
        severity: get(row, t, "severity")?,
        lead: get(row, t, "lead")?,
        created_by: get(row, t, "created_by")?,
        created_at: get_ts(row, t, "created_at")?,
        updated_at: get_ts(row, t, "updated_at")?,
        merged_into: get::<Option<String>>(row, t, "merged_into")?.map(IncidentId),
        split_from: get::<Option<String>>(row, t, "split_from")?.map(IncidentId),
        stale: get::<i64>(row, t, "stale")? != 0,
        stale_reasons: get(row, t, "stale_reasons")?,
    })
}

fn adjustment_from_row(row: &AnyRow) -> Result<AdjustmentRecord, StoreError> {
    let t = "incident_adjustments";
    Ok(AdjustmentRecord {
        id: get(row, t, "id")?,
        org_id: OrgId(get(row, t, "org_id")?),
        incident_id: IncidentId(get(row, t, "incident_id")?),
        version: get(row, t, "version")?,
        action: get(row, t, "action")?,
        technique: get(row, t, "technique")?,
        tactic: get(row, t, "tactic")?,
        replaces_technique: get(row, t, "replaces_technique")?,
        replaces_tactic: get(row, t, "replaces_tactic")?,
        reason: get(row, t, "reason")?,
        rationale: get(row, t, "rationale")?,
        evidence: get(row, t, "evidence")?,
        confidence: get(row, t, "confidence")?,
        actor: get(row, t, "actor")?,
        status: get(row, t, "status")?,
        approved_by: get(row, t, "approved_by")?,
        approved_at: get_opt_ts(row, t, "approved_at")?,
        supersedes: get(row, t, "supersedes")?,
        created_at: get_ts(row, t, "created_at")?,
    })
}

/// SQL: the incidents whose live attachments are the alerts of incident
/// `incident` in org `org` (placeholders or column names). An incident
/// holds its own attachments while unmerged; a merge writes no attachment
/// but points the absorbed incident, and every incident merged into it
/// before, at the survivor (`survivor_id`, the end of the merge chain),
/// whose alerts their attachments are from then on. A merged incident
/// holds none itself.
fn holders(org: &str, incident: &str) -> String {
    format!(
        "SELECT h.id FROM incidents h WHERE h.org_id = {org} \
         AND ((h.id = {incident} AND h.survivor_id IS NULL) OR h.survivor_id = {incident})"
    )
}

/// The ids of [`holders`] of `incident`, read first: a statement over the
/// attachments then names them in a plain `IN` list, which both databases
/// serve from the live-attachment index whatever their statistics say (a
/// subquery there let PostgreSQL without statistics scan the whole org).
async fn holder_ids(
    conn: &mut AnyConnection,
    scope: &OrgScope,
    incident: &IncidentId,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(&holders("$1", "$2"))
        .bind(scope.org().as_str())
        .bind(incident.as_str())
        .fetch_all(conn)
        .await
        .context(|| format!("reading the incidents holding the alerts of {incident}"))?;
    rows.iter().map(|row| get(row, "incidents", "id")).collect()
}

/// The `survivor_id` of an incident (see [`Store::incident_survivor`]).
async fn survivor_of(
    conn: &mut AnyConnection,
    scope: &OrgScope,
    id: &IncidentId,
) -> Result<Option<IncidentId>, StoreError> {
    let row = sqlx::query("SELECT survivor_id FROM incidents WHERE org_id = $1 AND id = $2")
        .bind(scope.org().as_str())
        .bind(id.as_str())
        .fetch_optional(conn)
        .await
        .context(|| format!("reading the survivor of incident {id}"))?;
    Ok(row
        .as_ref()
        .map(|r| get::<Option<String>>(r, "incidents", "survivor_id"))
        .transpose()?
        .flatten()
        .map(IncidentId))
}

/// The alerts an incident holds live (its own attachments and those of the
/// incidents merged into it), ordered by id, each once.
async fn held_alert_ids(
    conn: &mut AnyConnection,
    backend: Backend,
    scope: &OrgScope,
    incident: &IncidentId,
) -> Result<Vec<AlertId>, StoreError> {
    let held_by = holder_ids(conn, scope, incident).await?;
    if held_by.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT DISTINCT alert_id FROM incident_alerts \
         WHERE org_id = {} AND {} AND detached_at IS NULL ORDER BY alert_id",
        p(backend, 1),
        in_ids(backend, "incident_id", 1, &held_by)
    );
    let mut query = sqlx::query(&sql).bind(scope.org().as_str());
    for h in &held_by {
        query = query.bind(h.as_str());
    }
    let rows = query
        .fetch_all(conn)
        .await
        .context(|| format!("reading the alert ids of incident {incident}"))?;
    rows.iter()
        .map(|row| Ok(AlertId(get(row, "incident_alerts", "alert_id")?)))
        .collect()
}

/// `<column> IN (...)` over `ids`, placeholders from `offset + 1` on.
fn in_ids(backend: Backend, column: &str, offset: usize, ids: &[String]) -> String {
    format!("{column} IN ({})", in_list(backend, offset, ids.len()))
}

/// Separates the alert id, source uid and mapping copy of one attachment
/// in the profile's read.
const UNIT_SEPARATOR: u8 = 0x1c;
/// Separates the fields of one entry in an attachment's mapping copy.
const FIELD_SEPARATOR: u8 = 0x1f;
/// Separates the entries of an attachment's mapping copy.
const ENTRY_SEPARATOR: u8 = 0x1d;

/// The current canonical entries of alert `alert` of org `org` (column
/// names of the outer statement), as its attachment keeps them (migration 0012): technique, tactic,
/// source, confidence (exact text), candidate ids, override ids, producers
/// and release joined by [`FIELD_SEPARATOR`], entries by
/// [`ENTRY_SEPARATOR`]; empty when the alert has none.
fn mapping_copy(backend: Backend, org: &str, alert: &str) -> String {
    let (chr, confidence) = match backend {
        Backend::Sqlite => ("char", "printf('%!.17g', m.confidence)"),
        Backend::Postgres => ("chr", "CAST(m.confidence AS TEXT)"),
    };
    let fields = [
        "m.technique",
        "COALESCE(m.tactic, '')",
        "m.source",
        confidence,
        "m.candidate_ids",
        "m.override_ids",
        "m.producers",
        "m.release",
    ]
    .join(&format!(" || {chr}({}) || ", u32::from(FIELD_SEPARATOR)));
    format!(
        "COALESCE((SELECT string_agg({fields}, {chr}({})) \
         FROM alerts a JOIN canonical_mappings m ON m.org_id = a.org_id \
         AND m.alert_id = a.id AND m.version = a.canonical_version \
         WHERE a.org_id = {org} AND a.id = {alert}), '')",
        u32::from(ENTRY_SEPARATOR)
    )
}

/// The key of the advisory lock that orders, within an org, the writing of
/// attachments' mapping copies against changes of alerts' current
/// canonical versions on PostgreSQL (see [`Tx::attach_alerts`]).
const COPY_LOCK: &str = "hashtext('nexus.incident_mapping_copy'), hashtext($1)";

impl Tx {
    /// Inserts a new incident.
    pub async fn insert_incident(&mut self, i: &IncidentRecord) -> Result<(), StoreError> {
        let backend = self.backend;
        let row: Vec<Val> = vec![
            i.id.0.clone().into(),
            i.org_id.0.clone().into(),
            i.title.clone().into(),
            i.status.clone().into(),
            i.severity.clone().into(),
            i.lead.clone().into(),
            i.created_by.clone().into(),
            ts(&i.created_at).into(),
            ts(&i.updated_at).into(),
            i.merged_into.as_ref().map(|m| m.0.clone()).into(),
            i.split_from.as_ref().map(|m| m.0.clone()).into(),
            i.stale.into(),
            i.stale_reasons.clone().into(),
        ];
        insert_rows(
            self.conn(),
            backend,
            "incidents",
            &INCIDENT_COLUMNS,
            vec![row],
            false,
        )
        .await?;
        Ok(())
    }

    /// Writes the mutable fields of an incident record (status, severity,
    /// lead, title, merged_into, stale flag and reasons, updated_at).
    pub async fn update_incident(
        &mut self,
        scope: &OrgScope,
        i: &IncidentRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE incidents SET title = $1, status = $2, severity = $3, lead = $4, \
             updated_at = $5, merged_into = $6, stale = $7, stale_reasons = $8 \
             WHERE org_id = $9 AND id = $10",
        )
        .bind(i.title.as_str())
        .bind(i.status.as_str())
        .bind(i.severity.as_str())
        .bind(i.lead.as_deref())
        .bind(ts(&i.updated_at))
        .bind(i.merged_into.as_ref().map(|m| m.0.clone()))
        .bind(i64::from(i.stale))
        .bind(i.stale_reasons.as_str())
        .bind(scope.org().as_str())
        .bind(i.id.as_str())
        .execute(self.conn())
        .await
        .context(|| format!("updating incident {}", i.id))?;
        Ok(())
    }

    /// [`Store::incident_alert_ids`] inside the transaction: with the
    /// incident locked, what a change decides on stays true until it commits.
    pub async fn incident_alert_ids(
        &mut self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Vec<AlertId>, StoreError> {
        let backend = self.backend;
        held_alert_ids(self.conn(), backend, scope, incident).await
    }

    /// Attaches alerts to an incident. An alert already attached to it live
    /// is left as it is: attaching is idempotent, so a second attach of the
    /// same alert (one the caller did not know of yet) writes nothing and
    /// is no error. Answers the attachments made. Each attachment gets its
    /// copy of the alert's source uid and current canonical entries
    /// (migration 0012), written with the row: filled in by an update
    /// instead, every row would be written twice.
    pub async fn attach_alerts(
        &mut self,
        scope: &OrgScope,
        incident: &IncidentId,
        alerts: &[AlertId],
        by: &str,
        at: &DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let backend = self.backend;
        // On PostgreSQL another transaction could be changing one of these
        // alerts' mapping right now: its refresh of the copies
        // (Tx::set_current_mapping) cannot see these rows before this one
        // commits, and the copies read here cannot see its change before
        // that one commits. The lock makes one wait for the other, so the
        // later one always sees the earlier one's rows; mapping changes take
        // it shared and never wait for each other.
        if backend == Backend::Postgres {
            sqlx::query(&format!("SELECT 1 FROM pg_advisory_xact_lock({COPY_LOCK})"))
                .bind(scope.org().as_str())
                .execute(self.conn())
                .await
                .context(|| format!("locking the mapping copies of org {}", scope.org()))?;
        }
        let copy = mapping_copy(backend, "b.org_id", "b.id");
        let mut copies: HashMap<String, (String, String)> = HashMap::with_capacity(alerts.len());
        for chunk in alerts.chunks(1000) {
            let sql = format!(
                "SELECT b.id, b.source_uid, {copy} AS mapping FROM alerts b \
                 WHERE b.org_id = {} AND b.id IN ({})",
                p(backend, 1),
                in_list(backend, 1, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope.org().as_str());
            for a in chunk {
                query = query.bind(a.as_str());
            }
            let rows = query
                .fetch_all(self.conn())
                .await
                .context(|| format!("reading the mappings of the alerts attached to {incident}"))?;
            for row in &rows {
                let t = "alerts";
                copies.insert(
                    get(row, t, "id")?,
                    (get(row, t, "source_uid")?, get(row, t, "mapping")?),
                );
            }
        }
        let rows = alerts
            .iter()
            .map(|a| {
                // An alert not read here is refused by the foreign key.
                let (uid, mapping) = copies.remove(a.as_str()).unzip();
                vec![
                    uuid::Uuid::now_v7().to_string().into(),
                    scope.org().0.clone().into(),
                    incident.0.clone().into(),
                    a.0.clone().into(),
                    ts(at).into(),
                    by.into(),
                    uid.into(),
                    mapping.into(),
                ]
            })
            .collect();
        // The unique index on live attachments (`incident_alerts_live`)
        // skips an alert attached already; the foreign key still refuses an
        // alert that does not exist.
        insert_rows(
            self.conn(),
            backend,
            "incident_alerts",
            &ATTACH_COLUMNS,
            rows,
            true,
        )
        .await
    }

    /// Rewrites the mapping copies of the live attachments of `alerts`
    /// (migration 0012) after their current canonical version changed, in
    /// the transaction of the change.
    pub(crate) async fn refresh_mapping_copies(
        &mut self,
        scope: &OrgScope,
        alerts: &[&AlertId],
    ) -> Result<(), StoreError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let backend = self.backend;
        // Shared: see Tx::attach_alerts.
        if backend == Backend::Postgres {
            sqlx::query(&format!(
                "SELECT 1 FROM pg_advisory_xact_lock_shared({COPY_LOCK})"
            ))
            .bind(scope.org().as_str())
            .execute(self.conn())
            .await
            .context(|| format!("locking the mapping copies of org {}", scope.org()))?;
        }
        let copy = mapping_copy(
            backend,
            "incident_alerts.org_id",
            "incident_alerts.alert_id",
        );
        for chunk in alerts.chunks(500) {
            let sql = format!(
                "UPDATE incident_alerts SET mapping = {copy} \
                 WHERE org_id = {} AND detached_at IS NULL AND alert_id IN ({})",
                p(backend, 1),
                in_list(backend, 1, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope.org().as_str());
            for a in chunk {
                query = query.bind(a.as_str());
            }
            query
                .execute(self.conn())
                .await
                .context(|| "refreshing the mapping copies of incident attachments".to_string())?;
        }
        Ok(())
    }

    /// Ends the live attachments of `alerts` to an incident (its own, and
    /// those of the incidents merged into it, which serve it); the rows
    /// stay as history. Returns the attachments ended.
    pub async fn detach_alerts(
        &mut self,
        scope: &OrgScope,
        incident: &IncidentId,
        alerts: &[AlertId],
        by: &str,
        at: &DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let backend = self.backend;
        let held_by = holder_ids(self.conn(), scope, incident).await?;
        if held_by.is_empty() {
            return Ok(0);
        }
        let mut ended = 0;
        for chunk in alerts.chunks(500) {
            let sql = format!(
                "UPDATE incident_alerts SET detached_at = {}, detached_by = {} \
                 WHERE org_id = {} AND incident_id IN ({}) AND detached_at IS NULL \
                 AND alert_id IN ({})",
                p(backend, 1),
                p(backend, 2),
                p(backend, 3),
                in_list(backend, 3, held_by.len()),
                in_list(backend, 3 + held_by.len(), chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(ts(at))
                .bind(by)
                .bind(scope.org().as_str());
            for h in &held_by {
                query = query.bind(h.as_str());
            }
            for a in chunk {
                query = query.bind(a.as_str());
            }
            let done = query
                .execute(self.conn())
                .await
                .context(|| format!("detaching alerts from incident {incident}"))?;
            ended += done.rows_affected();
        }
        Ok(ended)
    }

    /// Reads incidents of the scope inside this transaction, locked until
    /// it ends, in id order. A merge decides on what it reads here, not on
    /// what it read before: two opposite merges of the same pair would
    /// otherwise both pass the "not merged yet" check. PostgreSQL locks the
    /// rows (`FOR UPDATE`, in one order so two merges never deadlock);
    /// SQLite's write transaction already holds the database's write lock.
    pub async fn lock_incidents(
        &mut self,
        scope: &OrgScope,
        ids: &[&IncidentId],
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        let backend = self.backend;
        let lock = match backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT {} FROM incidents WHERE org_id = {} AND id IN ({}) ORDER BY id{lock}",
            INCIDENT_COLUMNS.join(", "),
            p(backend, 1),
            in_list(backend, 1, ids.len())
        );
        let mut query = sqlx::query(&sql).bind(scope.org().as_str());
        for id in ids {
            query = query.bind(id.as_str());
        }
        let rows = query
            .fetch_all(self.conn())
            .await
            .context(|| "locking incidents".to_string())?;
        rows.iter().map(incident_from_row).collect()
    }

    /// [`Store::incident_survivor`] inside this transaction.
    pub async fn incident_survivor(
        &mut self,
        scope: &OrgScope,
        id: &IncidentId,
    ) -> Result<Option<IncidentId>, StoreError> {
        survivor_of(self.conn(), scope, id).await
    }

    /// The highest version of the adjustments made on the incident itself
    /// (0 when it has none), read inside this transaction: with the
    /// incident locked ([`Tx::lock_incidents`]), the next adjustment takes
    /// the version after it without racing a concurrent one.
    pub async fn last_adjustment_version(
        &mut self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) AS version FROM incident_adjustments \
             WHERE org_id = $1 AND incident_id = $2",
        )
        .bind(scope.org().as_str())
        .bind(incident.as_str())
        .fetch_one(self.conn())
        .await
        .context(|| format!("reading the last adjustment version of incident {incident}"))?;
        get(&row, "incident_adjustments", "version")
    }

    /// Merges incident `absorbed` into `survivor` as far as attachments go,
    /// without writing one: the absorbed incident's attachments, and those
    /// of every incident merged into it before, serve the survivor from now
    /// on (see [`holders`]). Answers (alerts the survivor gains, alerts both
    /// held), counted before. The caller marks `absorbed` merged.
    pub async fn merge_incident(
        &mut self,
        scope: &OrgScope,
        survivor: &IncidentId,
        absorbed: &IncidentId,
    ) -> Result<(u64, u64), StoreError> {
        let backend = self.backend;
        let kept = holder_ids(self.conn(), scope, survivor).await?;
        let gone = holder_ids(self.conn(), scope, absorbed).await?;
        let live = |offset: usize, n: usize| {
            // An empty list holds nothing (an incident always holds itself
            // while unmerged, so only a caller's mistake gets here).
            let list = if n == 0 {
                "NULL".to_string()
            } else {
                in_list(backend, offset, n)
            };
            format!(
                "SELECT alert_id FROM incident_alerts WHERE org_id = {} \
                 AND incident_id IN ({list}) AND detached_at IS NULL",
                p(backend, offset)
            )
        };
        // EXCEPT and DISTINCT are set operations on both databases (hashed
        // or sorted): no per-alert probe, whatever the statistics say.
        let (g, k) = (gone.len(), kept.len());
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM ({} EXCEPT {}) gained) AS gained, \
             (SELECT COUNT(DISTINCT alert_id) FROM ({}) held) AS held",
            live(1, g),
            live(2 + g, k),
            live(3 + g + k, g)
        );
        let mut query = sqlx::query(&sql);
        for list in [&gone, &kept, &gone] {
            query = query.bind(scope.org().as_str());
            for h in list {
                query = query.bind(h.as_str());
            }
        }
        let row = query
            .fetch_one(self.conn())
            .await
            .context(|| format!("counting the alerts of incidents {survivor} and {absorbed}"))?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(get::<i64>(&row, "incident_alerts", name)?).unwrap_or(0))
        };
        let (gained, held) = (count("gained")?, count("held")?);

        // Kept flat: whatever served `absorbed` serves `survivor` now.
        sqlx::query(
            "UPDATE incidents SET survivor_id = $1 \
             WHERE org_id = $2 AND (id = $3 OR survivor_id = $3)",
        )
        .bind(survivor.as_str())
        .bind(scope.org().as_str())
        .bind(absorbed.as_str())
        .execute(self.conn())
        .await
        .context(|| format!("merging incident {absorbed} into {survivor}"))?;
        Ok((gained, held.saturating_sub(gained)))
    }

    /// Appends an evidence reference.
    pub async fn insert_evidence(&mut self, e: &EvidenceRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO incident_evidence (id, org_id, incident_id, kind, ref, added_by, \
             added_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id.as_str())
        .bind(e.org_id.as_str())
        .bind(e.incident_id.as_str())
        .bind(e.kind.as_str())
        .bind(e.reference.as_str())
        .bind(e.added_by.as_str())
        .bind(ts(&e.added_at))
        .execute(self.conn())
        .await
        .context(|| format!("adding evidence to incident {}", e.incident_id))?;
        Ok(())
    }

    /// Appends a lead adjustment.
    pub async fn insert_adjustment(&mut self, a: &AdjustmentRecord) -> Result<(), StoreError> {
        let backend = self.backend;
        let row: Vec<Val> = vec![
            a.id.clone().into(),
            a.org_id.0.clone().into(),
            a.incident_id.0.clone().into(),
            a.version.into(),
            a.action.clone().into(),
            a.technique.clone().into(),
            a.tactic.clone().into(),
            a.replaces_technique.clone().into(),
            a.replaces_tactic.clone().into(),
            a.reason.clone().into(),
            a.rationale.clone().into(),
            a.evidence.clone().into(),
            a.confidence.into(),
            a.actor.clone().into(),
            a.status.clone().into(),
            a.approved_by.clone().into(),
            a.approved_at.as_ref().map(ts).into(),
            a.supersedes.clone().into(),
            ts(&a.created_at).into(),
        ];
        insert_rows(
            self.conn(),
            backend,
            "incident_adjustments",
            &ADJUSTMENT_COLUMNS,
            vec![row],
            false,
        )
        .await?;
        Ok(())
    }

    /// The scope's incidents, neither merged nor finished (resolved or
    /// closed), whose profile has an entry computed under another release
    /// of `domain` than `release`: a live alert they hold (their own, or
    /// through an incident merged into them) whose current canonical
    /// mapping has such an entry. One statement for the whole org, in id
    /// order.
    pub async fn incidents_mapped_outside(
        &mut self,
        scope: &OrgScope,
        domain: &str,
        release: &str,
    ) -> Result<Vec<IncidentId>, StoreError> {
        // On PostgreSQL the incidents found are locked, in id order (the
        // order a merge locks its pair in, so the two never deadlock), as
        // every other staleness trigger locks its incident before it
        // queues it: the caller then adds its reason to the review item as
        // it is once a concurrent trigger has committed, instead of
        // overwriting that trigger's reason. SQLite's write transaction
        // already holds the database's write lock.
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF i",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT i.id FROM incidents i WHERE i.org_id = $1 AND i.merged_into IS NULL \
             AND i.status NOT IN ('resolved', 'closed') AND i.id IN ({}) \
             ORDER BY i.id{lock}",
            MAPPED_OUTSIDE
        );
        self.mapped_outside(scope, domain, release, &sql, &[]).await
    }

    /// Those of `among` whose profile has an entry computed under another
    /// release of `domain` than `release` (see
    /// [`Tx::incidents_mapped_outside`]), whatever their state, in id order;
    /// locks nothing (the caller locked `among` already).
    pub async fn incidents_among_mapped_outside(
        &mut self,
        scope: &OrgScope,
        domain: &str,
        release: &str,
        among: &[IncidentId],
    ) -> Result<Vec<IncidentId>, StoreError> {
        let mut found = Vec::new();
        for chunk in among.chunks(400) {
            // Numbered on SQLite too: the driver binds a bare `?` by its own
            // count, from the first argument, whatever `$n` come before.
            let ids: Vec<String> = (4..4 + chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT i.id FROM incidents i WHERE i.org_id = $1 AND i.id IN ({}) \
                 AND i.id IN ({MAPPED_OUTSIDE}) ORDER BY i.id",
                ids.join(", ")
            );
            found.extend(
                self.mapped_outside(scope, domain, release, &sql, chunk)
                    .await?,
            );
        }
        found.sort();
        Ok(found)
    }

    /// Runs a statement built around [`MAPPED_OUTSIDE`]: org, domain,
    /// release, then `ids`.
    async fn mapped_outside(
        &mut self,
        scope: &OrgScope,
        domain: &str,
        release: &str,
        sql: &str,
        ids: &[IncidentId],
    ) -> Result<Vec<IncidentId>, StoreError> {
        let mut query = sqlx::query(sql)
            .bind(scope.org().as_str())
            .bind(domain)
            .bind(release);
        for id in ids {
            query = query.bind(id.as_str());
        }
        let rows = query.fetch_all(self.conn()).await.context(|| {
            format!(
                "finding incidents of org {} mapped outside {release}",
                scope.org()
            )
        })?;
        rows.iter()
            .map(|row| Ok(IncidentId(get(row, "incidents", "id")?)))
            .collect()
    }
}

/// SQL: the incidents of org `$1` holding a live alert whose current
/// canonical mapping has an entry of domain `$2` computed under another
/// release than `$3`. The attachments serve the end of their incident's
/// merge chain (see [`holders`]): `COALESCE(survivor_id, id)` names the
/// incident whose profile the alert feeds.
const MAPPED_OUTSIDE: &str = "SELECT COALESCE(h.survivor_id, h.id) FROM incident_alerts ia \
     JOIN incidents h ON h.org_id = ia.org_id AND h.id = ia.incident_id \
     JOIN alerts a ON a.org_id = ia.org_id AND a.id = ia.alert_id \
     JOIN canonical_mappings m ON m.org_id = a.org_id AND m.alert_id = a.id \
     AND m.version = a.canonical_version \
     WHERE ia.org_id = $1 AND ia.detached_at IS NULL AND m.domain = $2 AND m.release <> $3";

impl Store {
    /// One incident of the scope.
    pub async fn incident(
        &self,
        scope: &OrgScope,
        id: &str,
    ) -> Result<Option<IncidentRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM incidents WHERE org_id = $1 AND id = $2",
            INCIDENT_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(id)
            .fetch_optional(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading incident {id}"))?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// The end of a merged incident's merge chain: the incident its alerts
    /// serve now (`survivor_id`, which a later merge of the incident it was
    /// merged into moves on). `None` for an incident that is not merged, or
    /// not the scope's.
    pub async fn incident_survivor(
        &self,
        scope: &OrgScope,
        id: &IncidentId,
    ) -> Result<Option<IncidentId>, StoreError> {
        survivor_of(&mut *self.conn_in(scope).await?, scope, id).await
    }

    /// A page of the scope's incidents, most recently updated first (ties
    /// by id, descending), strictly after `before` (the `(updated_at, id)`
    /// of the last incident of the previous page).
    pub async fn incidents_page(
        &self,
        scope: &OrgScope,
        before: Option<(&DateTime<Utc>, &IncidentId)>,
        limit: i64,
    ) -> Result<Vec<IncidentSummaryRecord>, StoreError> {
        let select = format!(
            "SELECT i.id, i.title, i.status, i.severity, i.updated_at, \
             i.merged_into, i.stale, (SELECT COUNT(DISTINCT ia.alert_id) FROM incident_alerts ia \
             WHERE ia.org_id = i.org_id AND ia.incident_id IN ({}) AND ia.detached_at IS NULL) \
             AS alert_count FROM incidents i WHERE i.org_id = $1",
            holders("i.org_id", "i.id")
        );
        let mut conn = self.conn_in(scope).await?;
        let rows = match before {
            // Timestamps are stored as fixed-width RFC 3339 text in UTC, so
            // text order is time order on both databases.
            Some((at, id)) => {
                let sql = format!(
                    "{select} AND (i.updated_at < $2 OR (i.updated_at = $2 AND i.id < $3)) \
                     ORDER BY i.updated_at DESC, i.id DESC LIMIT $4"
                );
                sqlx::query(&sql)
                    .bind(scope.org().as_str())
                    .bind(ts(at))
                    .bind(id.as_str())
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await
            }
            None => {
                let sql = format!("{select} ORDER BY i.updated_at DESC, i.id DESC LIMIT $2");
                sqlx::query(&sql)
                    .bind(scope.org().as_str())
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await
            }
        }
        .context(|| "listing incidents".to_string())?;
        rows.iter()
            .map(|row| {
                let t = "incidents";
                Ok(IncidentSummaryRecord {
                    id: IncidentId(get(row, t, "id")?),
                    title: get(row, t, "title")?,
                    status: get(row, t, "status")?,
                    severity: get(row, t, "severity")?,
                    alert_count: get(row, t, "alert_count")?,
                    updated_at: get_ts(row, t, "updated_at")?,
                    merged_into: get::<Option<String>>(row, t, "merged_into")?.map(IncidentId),
                    stale: get::<i64>(row, t, "stale")? != 0,
                })
            })
            .collect()
    }

    /// The ids of the incidents merged into `id`, directly or through a
    /// chain of merges.
    pub async fn incidents_merged_into(
        &self,
        scope: &OrgScope,
        id: &IncidentId,
    ) -> Result<Vec<IncidentId>, StoreError> {
        let mut conn = self.conn_in(scope).await?;
        let mut found = Vec::new();
        let mut frontier = vec![id.clone()];
        while let Some(next) = frontier.pop() {
            let rows =
                sqlx::query("SELECT id FROM incidents WHERE org_id = $1 AND merged_into = $2")
                    .bind(scope.org().as_str())
                    .bind(next.as_str())
                    .fetch_all(&mut *conn)
                    .await
                    .context(|| format!("reading incidents merged into {next}"))?;
            for row in &rows {
                let merged = IncidentId(get(row, "incidents", "id")?);
                if merged != *id && !found.contains(&merged) {
                    found.push(merged.clone());
                    frontier.push(merged);
                }
            }
        }
        Ok(found)
    }

    /// The ids of the alerts attached to an incident now, ordered; read
    /// from the live-attachment index alone, for merge, split, attach and
    /// detach, which need nothing else.
    pub async fn incident_alert_ids(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Vec<AlertId>, StoreError> {
        let mut conn = self.conn_in(scope).await?;
        held_alert_ids(&mut conn, self.backend, scope, incident).await
    }

    /// The live attachments of an incident, ordered by alert id.
    pub async fn incident_alerts(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Vec<AttachedAlert>, StoreError> {
        // CROSS JOIN: a fixed join order on SQLite (see
        // `incident_profile_rows`), a plain join on PostgreSQL. An alert
        // attached to the incident and to one merged into it is listed
        // once, with its first attachment.
        let mut conn = self.conn_in(scope).await?;
        let held_by = holder_ids(&mut conn, scope, incident).await?;
        if held_by.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT ia.alert_id, a.source_uid, MIN(ia.attached_at) AS attached_at \
             FROM incident_alerts ia CROSS JOIN alerts a \
             WHERE ia.org_id = {} AND {} AND ia.detached_at IS NULL \
             AND a.org_id = ia.org_id AND a.id = ia.alert_id \
             GROUP BY ia.alert_id, a.source_uid ORDER BY ia.alert_id",
            p(self.backend, 1),
            in_ids(self.backend, "ia.incident_id", 1, &held_by)
        );
        let mut query = sqlx::query(&sql).bind(scope.org().as_str());
        for h in &held_by {
            query = query.bind(h.as_str());
        }
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .context(|| format!("reading the alerts of incident {incident}"))?;
        rows.iter()
            .map(|row| {
                let t = "incident_alerts";
                Ok(AttachedAlert {
                    alert_id: AlertId(get(row, t, "alert_id")?),
                    source_uid: get(row, t, "source_uid")?,
                    attached_at: get_ts(row, t, "attached_at")?,
                })
            })
            .collect()
    }

    /// The live alerts of an incident and the current canonical entries of
    /// those alerts, answered as one aggregated row (the profile of a
    /// 10,000-alert incident must take < 50 ms).
    pub async fn incident_profile_rows(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<ProfileRows, StoreError> {
        // The attachments carry each alert's source uid and current
        // canonical entries (migration 0012), so this reads one range of the
        // live-attachment index per holding incident and no alert or mapping
        // row: the join per alert it replaces took 60 to 140 ms for 10,000
        // alerts on PostgreSQL. The driver's cost per value (about 0.5 us
        // through the Any driver), not the database's, made one aggregated
        // row cheaper than a row per alert: the database joins the texts of
        // the attachments into one and they are split apart here.
        let holders = self.profile_holders(scope, incident).await?;
        // The database spends most of the statement joining the texts; two
        // halves of the attachments read on two connections at once take
        // about half as long when a core is free.
        let Some((first, second)) = profile_halves(holders) else {
            return Ok(ProfileRows::default());
        };
        let read = |part| self.profile_copies(scope, incident, part);
        let columns = match second {
            Some(second) => match tokio::try_join!(read(first), read(second))? {
                (Some(mut columns), Some(more)) => {
                    columns.append(more);
                    Some(columns)
                }
                _ => None,
            },
            None => read(first).await?,
        };
        match columns {
            Some(columns) => ProfileRows::new(columns),
            None => self.incident_profile_rows_one_by_one(scope, incident).await,
        }
    }

    /// The incidents holding the live alerts of `incident` (see
    /// [`holders`]), each with the lowest and highest alert id it holds:
    /// one statement, where reading the holders and then the range took
    /// two round trips more.
    async fn profile_holders(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Vec<(String, Option<String>, Option<String>)>, StoreError> {
        let range = |f: &str| {
            format!(
                "(SELECT {f}(ia.alert_id) FROM incident_alerts ia WHERE ia.org_id = h.org_id \
                 AND ia.incident_id = h.id AND ia.detached_at IS NULL)"
            )
        };
        let sql = format!(
            "SELECT h.id, {} AS low, {} AS high FROM ({}) hs JOIN incidents h ON h.id = hs.id \
             WHERE h.org_id = $1 AND {}",
            range("MIN"),
            range("MAX"),
            holders("$1", "$2"),
            self.statement_scope("$1")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(incident.as_str())
            .fetch_all(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("reading the incidents holding the alerts of {incident}"))?;
        let t = "incidents";
        rows.iter()
            .map(|row| {
                Ok((
                    get(row, t, "id")?,
                    get(row, t, "low")?,
                    get(row, t, "high")?,
                ))
            })
            .collect()
    }

    /// The profile rows of one part of an incident's attachments: one
    /// aggregated row, split here. `None` when the text does not hold
    /// exactly the part's attachments (see [`Columns::from_copies`]).
    async fn profile_copies(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
        part: ProfilePart,
    ) -> Result<Option<Columns>, StoreError> {
        // One aggregate of one text per attachment: alert id, source uid
        // and mapping copy joined by U+001C (each aggregate costs about a
        // microsecond per row on PostgreSQL here).
        let (chr, separator, org, offset) = match self.backend {
            Backend::Sqlite => ("char", "?", "?", 1),
            Backend::Postgres => ("chr", "$1", "$2", 2),
        };
        let unit = format!("{chr}({})", u32::from(UNIT_SEPARATOR));
        let mut sql = format!(
            "SELECT COUNT(*) AS n, \
             string_agg(alert_id || {unit} || source_uid || {unit} || mapping, {separator}) AS copies \
             FROM incident_alerts WHERE org_id = {org} AND {} AND detached_at IS NULL AND {}",
            in_ids(self.backend, "incident_id", offset, &part.holders),
            self.statement_scope(org)
        );
        let mut next = offset + part.holders.len();
        for (bound, op) in [(&part.from, ">="), (&part.before, "<")] {
            if bound.is_some() {
                next += 1;
                sql.push_str(&format!(" AND alert_id {op} {}", p(self.backend, next)));
            }
        }
        let mut query = sqlx::query(&sql)
            .bind(char::from(SEPARATOR).to_string())
            .bind(scope.org().as_str());
        for h in &part.holders {
            query = query.bind(h.as_str());
        }
        for bound in [&part.from, &part.before].into_iter().flatten() {
            query = query.bind(bound.as_str());
        }
        // The statement chooses its org itself: no round trip to set it.
        let row = query
            .fetch_one(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("reading the mappings of incident {incident}"))?;
        let t = "incident_alerts";
        let rows = usize::try_from(get::<i64>(&row, t, "n")?).unwrap_or(0);
        let copies: Option<String> = get(&row, t, "copies")?;
        Ok(Columns::from_copies(copies.unwrap_or_default(), rows))
    }

    /// [`Store::incident_profile_rows`] a row at a time, for the rare
    /// incident whose values hold the separator.
    async fn incident_profile_rows_one_by_one(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<ProfileRows, StoreError> {
        let mut conn = self.conn_in(scope).await?;
        let held_by = holder_ids(&mut conn, scope, incident).await?;
        if held_by.is_empty() {
            return Ok(ProfileRows::default());
        }
        let sql = format!(
            "SELECT ia.alert_id, a.source_uid, m.technique, m.tactic, m.source, \
             m.confidence, m.candidate_ids, m.override_ids, m.producers, m.release \
             FROM incident_alerts ia CROSS JOIN alerts a \
             LEFT JOIN canonical_mappings m ON m.org_id = a.org_id AND m.alert_id = a.id \
             AND m.version = a.canonical_version \
             WHERE ia.org_id = {} AND {} AND ia.detached_at IS NULL \
             AND a.org_id = ia.org_id AND a.id = ia.alert_id",
            p(self.backend, 1),
            in_ids(self.backend, "ia.incident_id", 1, &held_by)
        );
        let mut query = sqlx::query(&sql).bind(scope.org().as_str());
        for h in &held_by {
            query = query.bind(h.as_str());
        }
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .context(|| format!("reading the mappings of incident {incident}"))?;

        let t = "canonical_mappings";
        let mut columns = Columns::new();
        for row in &rows {
            for (i, name) in PROFILE_COLUMNS.iter().enumerate() {
                let value = if *name == "confidence" {
                    get::<Option<f64>>(row, t, name)?.map(|c| c.to_string())
                } else {
                    get::<Option<String>>(row, t, name)?
                };
                columns.push(i, value.as_deref().unwrap_or_default());
            }
        }
        ProfileRows::new(columns)
    }

    /// Evidence references of an incident, oldest first.
    pub async fn incident_evidence(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Vec<EvidenceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org_id, incident_id, kind, ref, added_by, added_at \
             FROM incident_evidence WHERE org_id = $1 AND incident_id = $2 \
             ORDER BY added_at, id",
        )
        .bind(scope.org().as_str())
        .bind(incident.as_str())
        .fetch_all(&mut *self.conn_in(scope).await?)
        .await
        .context(|| format!("reading the evidence of incident {incident}"))?;
        rows.iter()
            .map(|row| {
                let t = "incident_evidence";
                Ok(EvidenceRecord {
                    id: get(row, t, "id")?,
                    org_id: OrgId(get(row, t, "org_id")?),
                    incident_id: IncidentId(get(row, t, "incident_id")?),
                    kind: get(row, t, "kind")?,
                    reference: get(row, t, "ref")?,
                    added_by: get(row, t, "added_by")?,
                    added_at: get_ts(row, t, "added_at")?,
                })
            })
            .collect()
    }

    /// The adjustment rows made on any of `incidents`, oldest first.
    pub async fn incident_adjustments(
        &self,
        scope: &OrgScope,
        incidents: &[IncidentId],
    ) -> Result<Vec<AdjustmentRecord>, StoreError> {
        if incidents.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM incident_adjustments WHERE org_id = {} AND incident_id IN ({}) \
             ORDER BY created_at, version",
            ADJUSTMENT_COLUMNS.join(", "),
            p(self.backend, 1),
            in_list(self.backend, 1, incidents.len())
        );
        let mut query = sqlx::query(&sql).bind(scope.org().as_str());
        for i in incidents {
            query = query.bind(i.as_str());
        }
        let rows = query
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| "reading incident adjustments".to_string())?;
        rows.iter().map(adjustment_from_row).collect()
    }

    /// The stored alerts named by `refs` (product ids or source uids), as
    /// `(ref, alert id)` pairs; refs that name nothing in the scope are
    /// left out, so another org's alert looks exactly like a missing one.
    pub async fn resolve_alert_refs(
        &self,
        scope: &OrgScope,
        refs: &[String],
    ) -> Result<Vec<(String, AlertId)>, StoreError> {
        let mut by_id = std::collections::HashMap::new();
        let mut by_uid = std::collections::HashMap::new();
        let mut conn = self.conn_in(scope).await?;
        for chunk in refs.chunks(400) {
            let sql = format!(
                "SELECT id, source_uid FROM alerts WHERE org_id = {} AND (id IN ({}) \
                 OR source_uid IN ({}))",
                p(self.backend, 1),
                in_list(self.backend, 1, chunk.len()),
                in_list(self.backend, 1 + chunk.len(), chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope.org().as_str());
            for r in chunk.iter().chain(chunk) {
                query = query.bind(r.as_str());
            }
            let rows = query
                .fetch_all(&mut *conn)
                .await
                .context(|| "resolving alert references".to_string())?;
            for row in &rows {
                let id: String = get(row, "alerts", "id")?;
                let uid: String = get(row, "alerts", "source_uid")?;
                by_uid.insert(uid, AlertId(id.clone()));
                by_id.insert(id.clone(), AlertId(id));
            }
        }
        // A product id wins over a source uid that happens to be equal.
        Ok(refs
            .iter()
            .filter_map(|r| {
                by_id
                    .get(r)
                    .or_else(|| by_uid.get(r))
                    .map(|a| (r.clone(), a.clone()))
            })
            .collect())
    }
}

/// One live attachment of an alert to an incident, with the incident's
/// summary: what a matrix drilldown lists beside the alerts of a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentHoldingRecord {
    /// The incident.
    pub incident_id: IncidentId,
    /// Its title.
    pub title: String,
    /// Its status.
    pub status: String,
    /// Its severity word.
    pub severity: String,
    /// The alert it holds.
    pub alert_id: AlertId,
}

impl Store {
    /// The live attachments of `alerts` to the scope's incidents, ordered by
    /// incident and alert. Another org's alert ids find nothing.
    pub async fn incidents_holding(
        &self,
        scope: &OrgScope,
        alerts: &[AlertId],
    ) -> Result<Vec<IncidentHoldingRecord>, StoreError> {
        let mut found = Vec::new();
        let mut conn = self.conn_in(scope).await?;
        for chunk in alerts.chunks(400) {
            let sql = format!(
                // An attachment of a merged incident serves the end of its
                // merge chain (see `holders`); an alert attached to both is
                // listed once.
                "SELECT DISTINCT i.id, i.title, i.status, i.severity, ia.alert_id \
                 FROM incident_alerts ia JOIN incidents h \
                 ON h.org_id = ia.org_id AND h.id = ia.incident_id \
                 JOIN incidents i ON i.org_id = h.org_id AND i.id = COALESCE(h.survivor_id, h.id) \
                 WHERE ia.org_id = {} AND ia.detached_at IS NULL AND ia.alert_id IN ({})",
                p(self.backend, 1),
                in_list(self.backend, 1, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope.org().as_str());
            for alert in chunk {
                query = query.bind(alert.as_str());
            }
            let rows = query
                .fetch_all(&mut *conn)
                .await
                .context(|| "reading the incidents holding alerts".to_string())?;
            for row in &rows {
                let t = "incidents";
                found.push(IncidentHoldingRecord {
                    incident_id: IncidentId(get(row, t, "id")?),
                    title: get(row, t, "title")?,
                    status: get(row, t, "status")?,
                    severity: get(row, t, "severity")?,
                    alert_id: AlertId(get(row, "incident_alerts", "alert_id")?),
                });
            }
        }
        // Chunks each come back in the database's order: sort once here.
        found.sort_by(|a, b| {
            (a.incident_id.as_str(), a.alert_id.as_str())
                .cmp(&(b.incident_id.as_str(), b.alert_id.as_str()))
        });
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middle_id_lies_strictly_between_and_sorts_as_text() {
        let low = "01a244ef-cbde-715d-b5f0-85244d8d0187";
        let high = "01a244ef-d3ed-7388-853f-c810d6f3e905";
        let middle = middle_id(low, high).expect("two distant ids have a middle");
        assert!(low < middle.as_str() && middle.as_str() < high, "{middle}");
        // Halfway as numbers: the distances to each end differ by at most one.
        let n = |s: &str| uuid::Uuid::parse_str(s).map(|u| u.as_u128()).unwrap_or(0);
        let (below, above) = (n(&middle) - n(low), n(high) - n(&middle));
        assert!(below.abs_diff(above) <= 1, "{below} {above}");
        // Adjacent or equal ids, and ids that are not UUIDs, are not cut.
        assert_eq!(middle_id(low, low), None);
        assert_eq!(
            middle_id(
                "01a244ef-cbde-715d-b5f0-85244d8d0187",
                "01a244ef-cbde-715d-b5f0-85244d8d0188"
            ),
            None
        );
        assert_eq!(middle_id("a-1", "a-9"), None);
    }

    #[test]
    fn one_holder_is_cut_in_the_middle_and_several_in_two_groups() {
        let id = |s: &str| s.to_string();
        let (a, b) = profile_halves(vec![(
            id("i1"),
            Some(id("01a244ef-cbde-715d-b5f0-85244d8d0187")),
            Some(id("01a244ef-d3ed-7388-853f-c810d6f3e905")),
        )])
        .expect("a holder with alerts");
        let b = b.expect("two distant ids are cut");
        assert_eq!((a.from.as_ref(), b.before.as_ref()), (None, None));
        assert_eq!(a.before, b.from);
        assert_eq!(
            (a.holders.clone(), b.holders.clone()),
            (vec![id("i1")], vec![id("i1")])
        );

        // A holder without live alerts is left out; one alert is one part.
        let (one, none) = profile_halves(vec![
            (id("i1"), None, None),
            (id("i2"), Some(id("x")), Some(id("x"))),
        ])
        .expect("one holder with alerts");
        assert!(none.is_none());
        assert_eq!(
            (one.holders, one.from, one.before),
            (vec![id("i2")], None, None)
        );
        assert!(profile_halves(vec![(id("i1"), None, None)]).is_none());

        let some = |s: &str| (id(s), Some(id("a")), Some(id("b")));
        let (a, b) = profile_halves(vec![some("i1"), some("i2"), some("i3")]).expect("holders");
        assert_eq!(a.holders, vec![id("i1")]);
        assert_eq!(b.map(|b| b.holders), Some(vec![id("i2"), id("i3")]));
    }

    #[test]
    fn copies_are_cut_into_rows_and_halves_append_in_order() {
        let entry = |technique: &str| {
            [
                technique, "TA0002", "rule", "0.5", "[\"c\"]", "[]", "[\"p\"]", "18.1",
            ]
            .join("\u{1f}")
        };
        let copy = |alert: &str, uid: &str, entries: &[&str]| {
            let mapping: Vec<String> = entries.iter().map(|t| entry(t)).collect();
            format!("{alert}\u{1c}{uid}\u{1c}{}", mapping.join("\u{1d}"))
        };
        let first = [
            copy("a1", "u1", &["T1059", "T1190"]),
            copy("a2", "u\u{1c}2", &[]),
        ];
        let mut columns = Columns::from_copies(first.join("\u{1e}"), 2).expect("two copies");
        let more = Columns::from_copies(copy("a3", "u3", &["T1046"]), 1).expect("one copy");
        columns.append(more);
        let rows = ProfileRows::new(columns).expect("rows");
        let seen: Vec<(&str, &str, Option<&str>)> = rows
            .iter()
            .map(|r| (r.alert_id, r.source_uid, r.entry.map(|e| e.technique)))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a1", "u1", Some("T1059")),
                ("a1", "u1", Some("T1190")),
                ("a2", "u\u{1c}2", None),
                ("a3", "u3", Some("T1046")),
            ]
        );

        // A count that disagrees, a missing field or an empty technique is
        // not a copy.
        assert!(Columns::from_copies(first.join("\u{1e}"), 3).is_none());
        assert!(Columns::from_copies("a1\u{1c}u1\u{1c}T1059\u{1f}TA0002".into(), 1).is_none());
        assert!(Columns::from_copies(copy("a1", "u1", &[""]), 1).is_none());
        assert!(Columns::from_copies(format!("{}\u{1d}", copy("a1", "u1", &["T1"])), 1).is_none());
        assert!(Columns::from_copies("a1\u{1c}u1".into(), 1).is_none());
    }
}
