//! The one error type of the use cases, with stable codes.

use taxonomy::lifecycle::LifecycleError;

use crate::access::{Action, Role};

/// How a [`ServiceError`] should be answered; the server maps each kind to
/// one HTTP status in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something malformed (400).
    InvalidInput,
    /// No valid credentials (401).
    Unauthenticated,
    /// Valid credentials, not allowed (403).
    Forbidden,
    /// Missing, or owned by another tenant (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// Well-formed but refused on its content (422).
    Unprocessable,
    /// Something outside the caller's control broke (500).
    Internal,
    /// A dependency is down (503).
    Unavailable,
}

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The object does not exist or belongs to another tenant: both answer
    /// the same so that IDs of other tenants cannot be probed.
    #[error("{kind} `{}` not found", echo(id))]
    NotFound {
        /// Kind of object (`dataset`, `technique`, `org`).
        kind: &'static str,
        /// The identifier asked for.
        id: String,
    },
    /// A `diff` side is neither a stored dataset id nor a file or URL that
    /// can be read.
    #[error(
        "`{}` is neither a known dataset id nor a readable file or URL ({reason})",
        echo(input)
    )]
    UnknownDiffSide {
        /// What the caller gave.
        input: String,
        /// Why reading it as a file or URL failed.
        reason: String,
    },
    /// An input field is malformed.
    #[error("invalid {field}: {message}")]
    InvalidInput {
        /// The field or argument at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A lifecycle rule refuses the action (`invalid_transition`, `four_eyes`).
    #[error("dataset {dataset}: {source}")]
    Lifecycle {
        /// The dataset concerned.
        dataset: String,
        /// The refused transition.
        #[source]
        source: LifecycleError,
    },
    /// The role does not allow the action.
    #[error("role {role} may not {action}")]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// The refused action.
        action: Action,
    },
    /// The approver of a proposal is the person who made it (four-eyes rule
    /// for analysts' override proposals).
    #[error("`{actor}` proposed override {id} and cannot also decide it (four-eyes rule)")]
    SelfApproval {
        /// The override proposal.
        id: String,
        /// The actor who tried to decide it.
        actor: String,
    },
    /// The bearer token is missing, malformed, unknown or revoked.
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// The change conflicts with stored state (a duplicate name, a
    /// concurrent change).
    #[error("{0}")]
    Conflict(String),
    /// The change conflicts with the current state of one object, which
    /// `details` describes: the incident a merged incident's alerts serve
    /// now, the state a review item or an override proposal is in, the
    /// version stored meanwhile. A client decides what to do next from
    /// them instead of parsing the message. Answered like
    /// [`ServiceError::Conflict`] (`conflict`, 409).
    #[error("{message}")]
    StateConflict {
        /// What conflicts, for a person.
        message: String,
        /// The current state, as a JSON object.
        details: serde_json::Value,
    },
    /// The bundle could not be parsed.
    #[error("cannot parse {}: {message}", echo(source_name))]
    Parse {
        /// The file, URL or upload that failed.
        source_name: String,
        /// The parser's explanation.
        message: String,
        /// Where in the input, when known (`line 3 column 7`).
        location: Option<String>,
    },
    /// The bundle is larger than the configured cap once decompressed (a
    /// gzip bomb, or the wrong file); decompression stopped at the cap.
    #[error(
        "{} is larger than {limit} bytes once decompressed; refusing to load it",
        echo(source_name)
    )]
    TooLarge {
        /// The file, URL or upload that was refused.
        source_name: String,
        /// The cap in bytes (`AppConfig::max_bundle_bytes`).
        limit: u64,
    },
    /// Gate A found errors, so the action is blocked.
    #[error("dataset {dataset} failed validation with {errors} error(s); first: {first}")]
    ValidationFailed {
        /// The dataset concerned.
        dataset: String,
        /// Number of error findings.
        errors: usize,
        /// The first error finding, for a one-line answer.
        first: String,
    },
    /// A release could not be fetched from its file or URL.
    #[error("cannot read {}: {message}", echo(source_name))]
    Fetch {
        /// The path or URL.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A bug or a crashed worker; the message is for operators, not clients.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Longest echo of caller input in a message, in characters.
const MAX_ECHO_CHARS: usize = 80;

/// Caller input as echoed in an error: cut to [`MAX_ECHO_CHARS`] characters
/// and an ellipsis, so that a 100,000-character id does not come back whole
/// in a message, a log line or a response body.
pub fn echo(input: &str) -> std::borrow::Cow<'_, str> {
    match input.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]).into(),
        None => input.into(),
    }
}

impl ServiceError {
    /// The stable snake_case error code clients and scripts rely on.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::NotFound { .. } | ServiceError::UnknownDiffSide { .. } => "not_found",
            ServiceError::InvalidInput { .. } => "invalid_input",
            ServiceError::Lifecycle { source, .. } => source.code(),
            ServiceError::Forbidden { .. } => "forbidden",
            ServiceError::SelfApproval { .. } => "four_eyes",
            ServiceError::Unauthenticated(_) => "unauthenticated",
            ServiceError::Conflict(_) | ServiceError::StateConflict { .. } => "conflict",
            ServiceError::Parse { .. } => "parse_error",
            ServiceError::TooLarge { .. } => "too_large",
            ServiceError::ValidationFailed { .. } => "validation_failed",
            ServiceError::Fetch { .. } => "fetch_failed",
            ServiceError::Store(store::StoreError::InvalidUrl { .. }) => "invalid_config",
            // A deadlock is a conflict with another writer, whose message
            // says to try again; the store itself is up.
            ServiceError::Store(
                store::StoreError::Conflict { .. } | store::StoreError::Contention { .. },
            ) => "conflict",
            // One code whether the database never answered (at start) or
            // stopped answering (a pool timeout): the client's answer is the
            // same, retry once it is back.
            ServiceError::Store(
                store::StoreError::Unreachable { .. } | store::StoreError::Unavailable { .. },
            ) => "database_unavailable",
            ServiceError::Store(_) | ServiceError::Internal(_) => "internal",
        }
    }

    /// How to answer it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::NotFound { .. } | ServiceError::UnknownDiffSide { .. } => {
                ErrorKind::NotFound
            }
            ServiceError::InvalidInput { .. }
            | ServiceError::Parse { .. }
            | ServiceError::TooLarge { .. } => ErrorKind::InvalidInput,
            ServiceError::Lifecycle { source, .. } => match source {
                LifecycleError::InvalidTransition { .. } => ErrorKind::Conflict,
                LifecycleError::FourEyes { .. } => ErrorKind::Forbidden,
            },
            ServiceError::Forbidden { .. } | ServiceError::SelfApproval { .. } => {
                ErrorKind::Forbidden
            }
            ServiceError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            ServiceError::Conflict(_) | ServiceError::StateConflict { .. } => ErrorKind::Conflict,
            ServiceError::ValidationFailed { .. } => ErrorKind::Unprocessable,
            ServiceError::Fetch { .. } => ErrorKind::InvalidInput,
            ServiceError::Store(
                store::StoreError::Conflict { .. } | store::StoreError::Contention { .. },
            ) => ErrorKind::Conflict,
            ServiceError::Store(
                store::StoreError::Unreachable { .. } | store::StoreError::Unavailable { .. },
            ) => ErrorKind::Unavailable,
            ServiceError::Store(_) | ServiceError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Structured context for the error body (`field`, `location`), when any.
    pub fn details(&self) -> Option<serde_json::Value> {
        match self {
            ServiceError::NotFound { kind, id } => {
                Some(serde_json::json!({"kind": kind, "id": echo(id)}))
            }
            ServiceError::UnknownDiffSide { input, .. } => {
                Some(serde_json::json!({"input": echo(input)}))
            }
            ServiceError::InvalidInput { field, .. } => Some(serde_json::json!({"field": field})),
            ServiceError::SelfApproval { id, actor } => {
                Some(serde_json::json!({"override": id, "actor": actor}))
            }
            ServiceError::Lifecycle { dataset, source } => match source {
                LifecycleError::InvalidTransition { from, action } => Some(serde_json::json!({
                    "dataset": dataset, "state": from.as_str(), "action": action.as_str()
                })),
                LifecycleError::FourEyes { actor } => {
                    Some(serde_json::json!({"dataset": dataset, "actor": actor}))
                }
            },
            ServiceError::Parse {
                source_name,
                location,
                ..
            } => Some(serde_json::json!({"source": source_name, "location": location})),
            ServiceError::TooLarge { source_name, limit } => {
                Some(serde_json::json!({"source": source_name, "limit": limit}))
            }
            ServiceError::ValidationFailed {
                dataset, errors, ..
            } => Some(serde_json::json!({"dataset": dataset, "errors": errors})),
            ServiceError::Forbidden { role, action } => {
                Some(serde_json::json!({"role": role.as_str(), "action": action.as_str()}))
            }
            ServiceError::StateConflict { details, .. } => Some(details.clone()),
            _ => None,
        }
    }
}
