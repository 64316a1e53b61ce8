//! The append-only, hash-chained audit log.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use taxonomy::Domain;
use taxonomy::lifecycle::DatasetState;

use crate::{
    AuditEvent, AuditVerification, Context, DatasetId, NewAuditEvent, OrgId, OrgScope, Outcome,
    Store, StoreError, Tx, now, parse_ts, ts,
};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const AUDIT_COLUMNS: &str =
    "seq, at, org_id, actor, action, target_kind, target_id, outcome, details, prev_hash, hash";

/// SHA-256 (hex) over an event's canonical serialization: a JSON array of
/// its fields as stored text (`seq, at, org_id, actor, action, target_kind,
/// target_id, outcome, details, prev_hash`; an absent org is ""). A JSON
/// array of strings is unambiguous (no field can run into the next), and
/// hashing the stored `details` text rather than a re-serialised value keeps
/// the hash independent of JSON key order.
pub fn canonical_hash(fields: [&str; 10]) -> String {
    let canonical = serde_json::to_string(&fields).unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// The raw stored fields of one row, as hashed.
struct RawEvent {
    seq: i64,
    at: String,
    org_id: Option<String>,
    actor: String,
    action: String,
    target_kind: String,
    target_id: String,
    outcome: String,
    details: String,
    prev_hash: String,
    hash: String,
}

impl RawEvent {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let get = |c: &str| -> Result<String, StoreError> {
            row.try_get::<String, _>(c)
                .map_err(|e| corrupt(&format!("audit_log.{c}"), e))
        };
        Ok(RawEvent {
            seq: row
                .try_get("seq")
                .map_err(|e| corrupt("audit_log.seq", e))?,
            at: get("at")?,
            org_id: row
                .try_get("org_id")
                .map_err(|e| corrupt("audit_log.org_id", e))?,
            actor: get("actor")?,
            action: get("action")?,
            target_kind: get("target_kind")?,
            target_id: get("target_id")?,
            outcome: get("outcome")?,
            details: get("details")?,
            prev_hash: get("prev_hash")?,
            hash: get("hash")?,
        })
    }

    fn computed_hash(&self) -> String {
        canonical_hash([
            &self.seq.to_string(),
            &self.at,
            self.org_id.as_deref().unwrap_or(""),
            &self.actor,
            &self.action,
            &self.target_kind,
            &self.target_id,
            &self.outcome,
            &self.details,
            &self.prev_hash,
        ])
    }

    fn into_event(self) -> Result<AuditEvent, StoreError> {
        Ok(AuditEvent {
            seq: self.seq,
            at: parse_ts("audit_log.at", &self.at)?,
            org_id: self.org_id.map(OrgId),
            actor: self.actor,
            action: self.action,
            target_kind: self.target_kind,
            target_id: self.target_id,
            outcome: Outcome::parse(&self.outcome)
                .ok_or_else(|| corrupt("audit_log.outcome", &self.outcome))?,
            details: serde_json::from_str(&self.details)
                .map_err(|e| corrupt("audit_log.details", e))?,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

fn corrupt(what: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

async fn append(conn: &mut AnyConnection, event: &NewAuditEvent) -> Result<AuditEvent, StoreError> {
    // Taking the head row first serialises appenders: on PostgreSQL the
    // UPDATE holds its row lock until commit, on SQLite the transaction
    // already holds the write lock.
    sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await
        .context(|| "locking the audit head".to_string())?;
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .context(|| "reading the audit head".to_string())?;
    let seq: i64 = head
        .try_get("seq")
        .map_err(|e| corrupt("audit_head.seq", e))?;
    let prev_hash: String = head
        .try_get("hash")
        .map_err(|e| corrupt("audit_head.hash", e))?;

    let raw = RawEvent {
        seq,
        at: ts(&now()),
        org_id: event.org_id.as_ref().map(|o| o.0.clone()),
        actor: event.actor.clone(),
        action: event.action.clone(),
        target_kind: event.target_kind.clone(),
        target_id: event.target_id.clone(),
        outcome: event.outcome.as_str().to_string(),
        details: serde_json::to_string(&event.details).unwrap_or_else(|_| "null".into()),
        prev_hash,
        hash: String::new(),
    };
    let hash = raw.computed_hash();
    let raw = RawEvent { hash, ..raw };

    sqlx::query(
        "INSERT INTO audit_log (seq, at, org_id, actor, action, target_kind, target_id, \
         outcome, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(raw.seq)
    .bind(raw.at.as_str())
    .bind(raw.org_id.as_deref())
    .bind(raw.actor.as_str())
    .bind(raw.action.as_str())
    .bind(raw.target_kind.as_str())
    .bind(raw.target_id.as_str())
    .bind(raw.outcome.as_str())
    .bind(raw.details.as_str())
    .bind(raw.prev_hash.as_str())
    .bind(raw.hash.as_str())
    .execute(&mut *conn)
    .await
    .context(|| format!("appending audit event {seq}"))?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(raw.hash.as_str())
        .execute(&mut *conn)
        .await
        .context(|| "moving the audit head".to_string())?;
    raw.into_event()
}

impl Tx {
    /// Appends an event; it lands only if the transaction commits.
    pub async fn append_audit(&mut self, event: &NewAuditEvent) -> Result<AuditEvent, StoreError> {
        append(self.conn(), event).await
    }
}

impl Store {
    /// Appends an event in its own transaction (for denials and failures,
    /// which change nothing else).
    pub async fn append_audit(&self, event: &NewAuditEvent) -> Result<AuditEvent, StoreError> {
        // An event of an org is written as that org; a platform event (no
        // org) needs the platform's rows, which only the cross-org scope
        // reaches.
        let mut tx = match &event.org_id {
            Some(org) => self.begin_in(&OrgScope::new(org.clone())).await?,
            None => self.begin_all().await?,
        };
        let stored = tx.append_audit(event).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// The sequence number of the org's last audit event (0 when it has
    /// none). Every change to an org's tenant data appends an event of that
    /// org in its transaction, so a cache of derived data keyed by this
    /// number knows when it went stale.
    pub async fn org_audit_head(&self, scope: &OrgScope) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(seq) AS head FROM audit_log WHERE org_id = $1")
            .bind(scope.org().as_str())
            .fetch_one(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading the last audit event of org {}", scope.org()))?;
        let head: Option<i64> =
            sqlx::Row::try_get(&row, "head").map_err(|e| StoreError::Corrupt {
                what: "audit_log.seq".into(),
                reason: e.to_string(),
            })?;
        Ok(head.unwrap_or(0))
    }

    /// The org's audit head ([`Store::org_audit_head`]) and the id of the
    /// active dataset of `domain`, read together in one statement: the two
    /// checks a cached matrix answer rests on (its rows are current while
    /// the head stays, its layout while the active dataset does), made in
    /// one round trip on every matrix request. `None` when the domain has
    /// no active dataset.
    pub async fn org_audit_head_and_active_dataset(
        &self,
        scope: &OrgScope,
        domain: Domain,
    ) -> Result<(i64, Option<DatasetId>), StoreError> {
        let sql = format!(
            "SELECT (SELECT MAX(seq) FROM audit_log WHERE org_id = $1) AS head, \
             (SELECT id FROM datasets WHERE domain = $2 AND state = $3) AS dataset_id \
             WHERE {}",
            self.statement_scope("$1")
        );
        let row = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(domain.as_str())
            .bind(DatasetState::Active.as_str())
            .fetch_one(&mut *self.conn_shared().await?)
            .await
            .context(|| {
                format!(
                    "reading the last audit event of org {} and the active {domain} dataset",
                    scope.org()
                )
            })?;
        let head: Option<i64> = row
            .try_get("head")
            .map_err(|e| corrupt("audit_log.seq", e))?;
        let dataset: Option<String> = row
            .try_get("dataset_id")
            .map_err(|e| corrupt("datasets.id", e))?;
        Ok((head.unwrap_or(0), dataset.map(DatasetId)))
    }

    /// Events newest first, below `before_seq` when given; `scope` limits
    /// them to one org's events, `None` shows every event (platform roles).
    pub async fn list_audit(
        &self,
        scope: Option<&OrgScope>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log \
             WHERE ($1 IS NULL OR org_id = $1) AND seq < $2 ORDER BY seq DESC LIMIT $3"
        );
        let mut conn = match scope {
            Some(scope) => self.conn_in(scope).await?,
            None => self.conn_all().await?,
        };
        let rows = sqlx::query(&sql)
            .bind(scope.map(|s| s.org().as_str()))
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
            .context(|| "listing audit events".to_string())?;
        rows.iter()
            .map(|r| RawEvent::from_row(r)?.into_event())
            .collect()
    }

    /// Re-computes every hash and link of the chain, in pages, and checks
    /// that the last event is the recorded head (a truncated tail shows).
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        const PAGE: i64 = 5_000;
        let mut conn = self.conn_all().await?;
        let mut expected_prev = GENESIS_HASH.to_string();
        let mut expected_seq = 1_i64;
        let mut events = 0_i64;
        let fail = |events, seq, problem: String| AuditVerification {
            ok: false,
            events,
            first_bad_seq: Some(seq),
            problem: Some(problem),
        };

        loop {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(expected_seq)
                .bind(PAGE)
                .fetch_all(&mut *conn)
                .await
                .context(|| "reading the audit log".to_string())?;
            let page_len = rows.len();
            for row in &rows {
                let raw = RawEvent::from_row(row)?;
                events += 1;
                if raw.seq != expected_seq {
                    let problem = format!("event {expected_seq} is missing");
                    return Ok(fail(events, expected_seq, problem));
                }
                if raw.prev_hash != expected_prev {
                    let problem = "prev_hash does not match the previous event".to_string();
                    return Ok(fail(events, raw.seq, problem));
                }
                if raw.computed_hash() != raw.hash {
                    let problem = "hash does not match the event's content".to_string();
                    return Ok(fail(events, raw.seq, problem));
                }
                expected_prev = raw.hash;
                expected_seq += 1;
            }
            if i64::try_from(page_len).unwrap_or(PAGE) < PAGE {
                break;
            }
        }

        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *conn)
            .await
            .context(|| "reading the audit head".to_string())?;
        let head_seq: i64 = head
            .try_get("seq")
            .map_err(|e| corrupt("audit_head.seq", e))?;
        let head_hash: String = head
            .try_get("hash")
            .map_err(|e| corrupt("audit_head.hash", e))?;
        if head_seq != expected_seq - 1 || head_hash != expected_prev {
            let problem = format!(
                "the log ends at event {} but the recorded head is event {head_seq}",
                expected_seq - 1
            );
            return Ok(fail(events, expected_seq, problem));
        }
        Ok(AuditVerification {
            ok: true,
            events,
            first_bad_seq: None,
            problem: None,
        })
    }
}
