//! Values read from and written to the database.
//!
//! These are plain records: no policy. The service crate decides who may
//! create or change them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taxonomy::lifecycle::DatasetState;
use taxonomy::{Domain, IdentitySource, ReleaseCounts};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A fresh, time-ordered identifier (UUID v7), good for cursors.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            /// The identifier as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }
    };
}
pub(crate) use id_type;

id_type!(
    /// Identifies a dataset (one loaded release).
    DatasetId
);
id_type!(
    /// Identifies an org (a tenant).
    OrgId
);
id_type!(
    /// Identifies an API token (not its secret).
    TokenId
);
id_type!(
    /// Identifies a reference-migration record.
    MigrationId
);

/// One loaded release of one domain, with its lifecycle history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Dataset identifier.
    pub id: DatasetId,
    /// ATT&CK domain.
    pub domain: Domain,
    /// Release version (`18.1`).
    pub release: String,
    /// Lifecycle state.
    pub state: DatasetState,
    /// Hex SHA-256 of the bundle bytes as given.
    pub sha256: String,
    /// Where the bundle came from (a path, a URL, `upload`).
    pub source: String,
    /// Where domain and release were read from.
    pub identity_source: IdentitySource,
    /// STIX spec version of the bundle.
    pub spec_version: String,
    /// Object counts.
    pub counts: ReleaseCounts,
    /// Gate A error count, once validated.
    pub validation_errors: Option<i64>,
    /// Gate A warning count, once validated.
    pub validation_warnings: Option<i64>,
    /// Who loaded it.
    pub loaded_by: String,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
    /// Who validated it.
    pub validated_by: Option<String>,
    /// When it was validated.
    pub validated_at: Option<DateTime<Utc>>,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When it was approved.
    pub approved_at: Option<DateTime<Utc>>,
    /// Who last activated it.
    pub activated_by: Option<String>,
    /// When it was last activated.
    pub activated_at: Option<DateTime<Utc>>,
    /// Who rejected it.
    pub rejected_by: Option<String>,
    /// When it was rejected.
    pub rejected_at: Option<DateTime<Utc>>,
    /// Why it was rejected.
    pub rejection_reason: Option<String>,
    /// When a newer activation retired it.
    pub retired_at: Option<DateTime<Utc>>,
    /// When a rollback deactivated it.
    pub rolled_back_at: Option<DateTime<Utc>>,
    /// The dataset that was active in the domain when this one was activated:
    /// the one a rollback returns to.
    pub previous_active: Option<DatasetId>,
}

/// What a new dataset row is made of; the taxonomy rows come from the release.
#[derive(Debug, Clone)]
pub struct NewDataset<'a> {
    /// Identifier to use.
    pub id: DatasetId,
    /// The parsed release.
    pub release: &'a taxonomy::Release,
    /// The bundle bytes exactly as given (kept to re-parse for diffs).
    pub bundle: &'a [u8],
    /// Where the bundle came from.
    pub source: String,
    /// Who loads it.
    pub loaded_by: String,
    /// When.
    pub loaded_at: DateTime<Utc>,
    /// Change summary against the domain's active dataset, as JSON.
    pub change_summary: Option<serde_json::Value>,
}

/// A lifecycle change to write: the new state and the columns it stamps.
#[derive(Debug, Clone)]
pub struct StateChange {
    /// The state the dataset must be in for the change to apply (optimistic
    /// check: a concurrent change makes the update touch no row).
    pub from: DatasetState,
    /// The new state.
    pub to: DatasetState,
    /// Who makes the change.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Rejection reason, for `rejected`.
    pub reason: Option<String>,
    /// Previously active dataset, recorded on activation.
    pub previous_active: Option<DatasetId>,
}

/// Filter for [`crate::Store::list_datasets`].
#[derive(Debug, Clone, Default)]
pub struct DatasetFilter {
    /// Only this domain.
    pub domain: Option<Domain>,
    /// Only this state.
    pub state: Option<DatasetState>,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    /// Org identifier.
    pub id: OrgId,
    /// Unique display name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// An API token as stored: the SHA-256 of its secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Token identifier.
    pub id: TokenId,
    /// The org the token acts for.
    pub org_id: OrgId,
    /// Role name as stored.
    pub role: String,
    /// Human label.
    pub label: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// How an audited attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by the permission check or a policy rule.
    Denied,
    /// Attempted and failed.
    Failed,
}

impl Outcome {
    /// The outcome as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Outcome::Ok),
            "denied" => Some(Outcome::Denied),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// The org concerned; `None` for platform actions.
    pub org_id: Option<OrgId>,
    /// Who acted.
    pub actor: String,
    /// What was attempted (`dataset_activate`).
    pub action: String,
    /// Kind of the target (`dataset`, `token`, `org`).
    pub target_kind: String,
    /// Identifier of the target.
    pub target_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Extra facts (reason, counts, error code).
    pub details: serde_json::Value,
}

/// A stored audit event, chained to the one before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When it was appended.
    pub at: DateTime<Utc>,
    /// The org concerned; `None` for platform actions.
    pub org_id: Option<OrgId>,
    /// Who acted.
    pub actor: String,
    /// What was attempted.
    pub action: String,
    /// Kind of the target.
    pub target_kind: String,
    /// Identifier of the target.
    pub target_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Extra facts.
    pub details: serde_json::Value,
    /// Hash of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over this event's canonical serialization, `prev_hash` included.
    pub hash: String,
}

/// Result of re-computing the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// True when every hash and link matches.
    pub ok: bool,
    /// Events checked.
    pub events: i64,
    /// The first event whose hash or link does not match.
    pub first_bad_seq: Option<i64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

/// One stored record that names a technique, wherever it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TechniqueReference {
    /// Table-level kind of the record (`reference_migration`).
    pub kind: String,
    /// Identifier of the record.
    pub id: String,
    /// The org owning it, for tenant records.
    pub org_id: Option<OrgId>,
    /// The technique ID it names.
    pub technique_id: String,
}

/// A migration applied to a stored reference: a new record beside the
/// original, which is never rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceMigration {
    /// Identifier of this record.
    pub id: MigrationId,
    /// The org owning the migrated reference, if any.
    pub org_id: Option<OrgId>,
    /// The dataset whose activation suggested the migration.
    pub dataset_id: DatasetId,
    /// Kind of the original record.
    pub ref_kind: String,
    /// Identifier of the original record.
    pub ref_id: String,
    /// The technique the original names.
    pub old_technique: String,
    /// The technique the new record names.
    pub new_technique: String,
    /// Who applied it.
    pub applied_by: String,
    /// When.
    pub applied_at: DateTime<Utc>,
}
