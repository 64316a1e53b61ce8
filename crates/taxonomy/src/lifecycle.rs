//! The dataset lifecycle as a pure state machine.
//!
//! `loaded -> validated -> approved -> active`, plus `rejected`, `retired` and
//! `rolled_back`. Storage and audit live elsewhere; this module only answers
//! "may this action happen to a dataset in this state, and what state follows".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a dataset stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetState {
    /// Parsed and stored, not yet validated.
    Loaded,
    /// Gate A found no error.
    Validated,
    /// A second steward approved it.
    Approved,
    /// The one dataset of its domain that reads are served from.
    Active,
    /// Gate A found errors, or a steward rejected it.
    Rejected,
    /// Superseded by the activation of another dataset of the domain.
    Retired,
    /// Deactivated by a rollback.
    RolledBack,
}

impl DatasetState {
    /// Every state, in lifecycle order.
    pub const ALL: [DatasetState; 7] = [
        DatasetState::Loaded,
        DatasetState::Validated,
        DatasetState::Approved,
        DatasetState::Active,
        DatasetState::Rejected,
        DatasetState::Retired,
        DatasetState::RolledBack,
    ];

    /// The state as stored and shown (`rolled_back`).
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetState::Loaded => "loaded",
            DatasetState::Validated => "validated",
            DatasetState::Approved => "approved",
            DatasetState::Active => "active",
            DatasetState::Rejected => "rejected",
            DatasetState::Retired => "retired",
            DatasetState::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for DatasetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no dataset state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dataset state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for DatasetState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// Something that may happen to a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    /// Gate A passed.
    ValidatePass,
    /// Gate A found errors.
    ValidateFail,
    /// A steward approves.
    Approve,
    /// A steward rejects.
    Reject,
    /// Make it the active dataset of its domain.
    Activate,
    /// Another dataset of the domain was activated.
    Retire,
    /// A rollback deactivates the current active dataset.
    RollBack,
    /// A rollback reactivates the previously active dataset.
    Reactivate,
}

impl LifecycleAction {
    /// The action as written in errors and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleAction::ValidatePass | LifecycleAction::ValidateFail => "validate",
            LifecycleAction::Approve => "approve",
            LifecycleAction::Reject => "reject",
            LifecycleAction::Activate => "activate",
            LifecycleAction::Retire => "retire",
            LifecycleAction::RollBack => "roll back",
            LifecycleAction::Reactivate => "reactivate",
        }
    }
}

impl fmt::Display for LifecycleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a lifecycle action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The action does not apply to a dataset in this state.
    #[error("cannot {action} a dataset that is {from}{}", expected_hint(*action))]
    InvalidTransition {
        /// The dataset's current state.
        from: DatasetState,
        /// The refused action.
        action: LifecycleAction,
    },
    /// The approver is the steward who loaded the dataset.
    #[error("`{actor}` loaded this dataset and cannot also approve it (four-eyes rule)")]
    FourEyes {
        /// The actor who tried to approve.
        actor: String,
    },
}

impl LifecycleError {
    /// Stable error code (`invalid_transition`, `four_eyes`).
    pub fn code(&self) -> &'static str {
        match self {
            LifecycleError::InvalidTransition { .. } => "invalid_transition",
            LifecycleError::FourEyes { .. } => "four_eyes",
        }
    }
}

fn expected_hint(action: LifecycleAction) -> &'static str {
    match action {
        LifecycleAction::ValidatePass | LifecycleAction::ValidateFail => {
            " (only a loaded dataset can be validated)"
        }
        LifecycleAction::Approve => " (only a validated dataset can be approved)",
        LifecycleAction::Reject => {
            " (only a loaded, validated or approved dataset can be rejected)"
        }
        LifecycleAction::Activate => " (only an approved dataset can be activated)",
        LifecycleAction::Retire | LifecycleAction::RollBack => " (it is not active)",
        LifecycleAction::Reactivate => " (only a retired dataset can be reactivated)",
    }
}

/// The state that `action` leads to from `from`, or why it is refused.
pub fn transition(
    from: DatasetState,
    action: LifecycleAction,
) -> Result<DatasetState, LifecycleError> {
    use DatasetState as S;
    use LifecycleAction as A;

    let to = match (from, action) {
        (S::Loaded, A::ValidatePass) => S::Validated,
        (S::Loaded, A::ValidateFail) => S::Rejected,
        (S::Validated, A::Approve) => S::Approved,
        (S::Loaded | S::Validated | S::Approved, A::Reject) => S::Rejected,
        (S::Approved, A::Activate) => S::Active,
        (S::Active, A::Retire) => S::Retired,
        (S::Active, A::RollBack) => S::RolledBack,
        // Only a dataset that was superseded can come back: a rolled-back one
        // was deliberately withdrawn and must go through activation again.
        (S::Retired, A::Reactivate) => S::Active,
        _ => return Err(LifecycleError::InvalidTransition { from, action }),
    };
    Ok(to)
}

/// Approval under the four-eyes rule: the state change, and a refusal when
/// the approver is the steward who loaded the dataset.
pub fn approve(
    from: DatasetState,
    loaded_by: &str,
    approver: &str,
) -> Result<DatasetState, LifecycleError> {
    let to = transition(from, LifecycleAction::Approve)?;
    // Actor names are compared case-insensitively so that `Alice` cannot
    // approve what `alice` loaded.
    if loaded_by.trim().eq_ignore_ascii_case(approver.trim()) {
        return Err(LifecycleError::FourEyes {
            actor: approver.to_string(),
        });
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_reaches_active() {
        let s = transition(DatasetState::Loaded, LifecycleAction::ValidatePass).unwrap();
        assert_eq!(s, DatasetState::Validated);
        let s = approve(s, "alice", "bob").unwrap();
        assert_eq!(s, DatasetState::Approved);
        let s = transition(s, LifecycleAction::Activate).unwrap();
        assert_eq!(s, DatasetState::Active);
        assert_eq!(
            transition(s, LifecycleAction::RollBack).unwrap(),
            DatasetState::RolledBack
        );
        assert_eq!(
            transition(s, LifecycleAction::Retire).unwrap(),
            DatasetState::Retired
        );
    }

    #[test]
    fn activating_an_unvalidated_dataset_names_its_state() {
        let err = transition(DatasetState::Loaded, LifecycleAction::Activate).unwrap_err();
        assert_eq!(err.code(), "invalid_transition");
        assert_eq!(
            err,
            LifecycleError::InvalidTransition {
                from: DatasetState::Loaded,
                action: LifecycleAction::Activate
            }
        );
        assert!(err.to_string().contains("loaded"), "{err}");
    }

    #[test]
    fn loader_cannot_approve() {
        let err = approve(DatasetState::Validated, "alice", "Alice").unwrap_err();
        assert_eq!(err.code(), "four_eyes");
        // A state error wins over the four-eyes rule: approving a loaded
        // dataset is wrong whoever does it.
        let err = approve(DatasetState::Loaded, "alice", "alice").unwrap_err();
        assert_eq!(err.code(), "invalid_transition");
    }

    #[test]
    fn only_listed_transitions_are_allowed() {
        let actions = [
            LifecycleAction::ValidatePass,
            LifecycleAction::ValidateFail,
            LifecycleAction::Approve,
            LifecycleAction::Reject,
            LifecycleAction::Activate,
            LifecycleAction::Retire,
            LifecycleAction::RollBack,
            LifecycleAction::Reactivate,
        ];
        let allowed: usize = DatasetState::ALL
            .iter()
            .flat_map(|s| actions.iter().map(move |a| transition(*s, *a)))
            .filter(Result::is_ok)
            .count();
        // Counted by hand from the table in `transition`: 2 + 1 + 3 + 1 + 2 + 1.
        assert_eq!(allowed, 10);
        for terminal in [DatasetState::Rejected, DatasetState::RolledBack] {
            assert!(actions.iter().all(|a| transition(terminal, *a).is_err()));
        }
    }

    #[test]
    fn states_round_trip_through_strings() {
        for s in DatasetState::ALL {
            assert_eq!(s.as_str().parse::<DatasetState>().unwrap(), s);
        }
        assert!("Active".parse::<DatasetState>().is_err());
    }
}
