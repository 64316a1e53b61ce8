//! Roles and the permission matrix, as data, in one place.
//!
//! The server and the CLI never decide who may do what: every use case asks
//! [`allows`] and audits a refusal. Later issues add actions to [`Action`] and
//! one row to [`MATRIX`] each.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role carried by an API token or an operator.
///
/// Org roles, least to most: viewer, analyst, lead, engineer, admin. The
/// platform-wide roles (steward, platform-admin) act across orgs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads the taxonomy and its own org's data.
    Viewer,
    /// Works alerts and mappings.
    Analyst,
    /// Owns incidents' ATT&CK profiles.
    Lead,
    /// Writes mapping rules and imports rule packs.
    Engineer,
    /// Administers one org: tokens, audit.
    Admin,
    /// ATT&CK data steward: runs the dataset lifecycle for every org.
    Steward,
    /// Operates the whole platform.
    PlatformAdmin,
}

impl Role {
    /// Every role, least to most privileged.
    pub const ALL: [Role; 7] = [
        Role::Viewer,
        Role::Analyst,
        Role::Lead,
        Role::Engineer,
        Role::Admin,
        Role::Steward,
        Role::PlatformAdmin,
    ];

    /// The role as written in tokens, the CLI and the API (`platform-admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Lead => "lead",
            Role::Engineer => "engineer",
            Role::Admin => "admin",
            Role::Steward => "steward",
            Role::PlatformAdmin => "platform-admin",
        }
    }

    /// True for the roles that act across orgs.
    pub fn is_platform(self) -> bool {
        matches!(self, Role::Steward | Role::PlatformAdmin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role `{0}` (expected viewer, analyst, lead, engineer, admin, steward or platform-admin)"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Accepts `platform-admin` and `platform_admin`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// A use case that needs a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read tactics and techniques of an active dataset.
    ReadTaxonomy,
    /// List datasets, read validation reports and diffs.
    ReadDatasets,
    /// Load a release as a new dataset.
    DatasetLoad,
    /// Run Gate A on a loaded dataset.
    DatasetValidate,
    /// Approve a validated dataset (four-eyes rule applies on top).
    DatasetApprove,
    /// Reject a dataset.
    DatasetReject,
    /// Activate an approved dataset.
    DatasetActivate,
    /// Roll a domain back to its previous dataset.
    DatasetRollback,
    /// Poll a release source and load what is new.
    DatasetSync,
    /// Apply the reference migrations suggested by an activation.
    DatasetMigrate,
    /// Create orgs.
    ManageOrgs,
    /// Create and revoke API tokens.
    ManageTokens,
    /// Read the audit log.
    ReadAudit,
    /// Verify the audit chain.
    VerifyAudit,
    /// Ingest alerts (mapped at ingestion).
    AlertIngest,
    /// Read alerts, their mappings, rules, the review queue.
    ReadMappings,
    /// Create, update, roll back and import mapping rules.
    RuleWrite,
    /// Override a mapping (a proposal unless the role may approve).
    OverrideCreate,
    /// Apply overrides at once and approve or reject proposals.
    OverrideApprove,
    /// Accept, reject or correct review items.
    ReviewWork,
    /// Ask the AI-assisted suggester for techniques (and its evaluation).
    Suggest,
    /// Create incidents, attach and detach alerts, merge, split, change
    /// status and severity, add evidence.
    IncidentWrite,
    /// Adjust an incident's canonical mapping (lead or above).
    IncidentAdjust,
    /// Export a matrix view (Navigator layer, CSV): the file leaves the
    /// platform, so it is permission-checked and audited.
    MatrixExport,
    /// Define exclusion windows and rebuild the matrix rollups of an org.
    MatrixAdmin,
    /// Read and acknowledge notifications (arbitration locks for leads,
    /// misuse signals for admins, a broken audit chain for platform admins).
    ReadNotifications,
}

impl Action {
    /// The action as written in the audit log and in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadTaxonomy => "read_taxonomy",
            Action::ReadDatasets => "read_datasets",
            Action::DatasetLoad => "dataset_load",
            Action::DatasetValidate => "dataset_validate",
            Action::DatasetApprove => "dataset_approve",
            Action::DatasetReject => "dataset_reject",
            Action::DatasetActivate => "dataset_activate",
            Action::DatasetRollback => "dataset_rollback",
            Action::DatasetSync => "dataset_sync",
            Action::DatasetMigrate => "dataset_migrate",
            Action::ManageOrgs => "manage_orgs",
            Action::ManageTokens => "manage_tokens",
            Action::ReadAudit => "read_audit",
            Action::VerifyAudit => "verify_audit",
            Action::Suggest => "suggest",
            Action::AlertIngest => "alert_ingest",
            Action::ReadMappings => "read_mappings",
            Action::RuleWrite => "rule_write",
            Action::OverrideCreate => "override_create",
            Action::OverrideApprove => "override_approve",
            Action::ReviewWork => "review_work",
            Action::IncidentWrite => "incident_write",
            Action::IncidentAdjust => "incident_adjust",
            Action::MatrixExport => "matrix_export",
            Action::MatrixAdmin => "matrix_admin",
            Action::ReadNotifications => "read_notifications",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Role::{Admin, Analyst, Engineer, Lead, PlatformAdmin, Steward, Viewer};

/// Every action with the roles allowed to perform it.
///
/// Org roles do not inherit the steward's dataset rights: the lifecycle is a
/// platform duty, whatever an org admin may do inside an org.
pub const MATRIX: &[(Action, &[Role])] = &[
    (
        Action::ReadTaxonomy,
        &[
            Viewer,
            Analyst,
            Lead,
            Engineer,
            Admin,
            Steward,
            PlatformAdmin,
        ],
    ),
    (
        Action::ReadDatasets,
        &[
            Viewer,
            Analyst,
            Lead,
            Engineer,
            Admin,
            Steward,
            PlatformAdmin,
        ],
    ),
    (Action::DatasetLoad, &[Steward, PlatformAdmin]),
    (Action::DatasetValidate, &[Steward, PlatformAdmin]),
    (Action::DatasetApprove, &[Steward, PlatformAdmin]),
    (Action::DatasetReject, &[Steward, PlatformAdmin]),
    (Action::DatasetActivate, &[Steward, PlatformAdmin]),
    (Action::DatasetRollback, &[Steward, PlatformAdmin]),
    (Action::DatasetSync, &[Steward, PlatformAdmin]),
    (Action::DatasetMigrate, &[Steward, PlatformAdmin]),
    (Action::ManageOrgs, &[PlatformAdmin]),
    (Action::ManageTokens, &[Admin, PlatformAdmin]),
    (Action::ReadAudit, &[Admin, Steward, PlatformAdmin]),
    (Action::VerifyAudit, &[Admin, Steward, PlatformAdmin]),
    (Action::AlertIngest, &[Engineer, Admin, PlatformAdmin]),
    (
        Action::ReadMappings,
        &[Viewer, Analyst, Lead, Engineer, Admin, PlatformAdmin],
    ),
    (Action::RuleWrite, &[Engineer, Admin, PlatformAdmin]),
    (
        Action::OverrideCreate,
        &[Analyst, Lead, Engineer, Admin, PlatformAdmin],
    ),
    (Action::OverrideApprove, &[Lead, Admin, PlatformAdmin]),
    (Action::ReviewWork, &[Analyst, Lead, Admin, PlatformAdmin]),
    // Suggestions are working material for mapping, and with an external
    // provider each one may leave the platform: viewers only read.
    (
        Action::Suggest,
        &[Analyst, Lead, Engineer, Admin, Steward, PlatformAdmin],
    ),
    (
        Action::IncidentWrite,
        &[Analyst, Lead, Engineer, Admin, PlatformAdmin],
    ),
    // "Lead or above" in the role order viewer < analyst < lead < engineer < admin.
    (
        Action::IncidentAdjust,
        &[Lead, Engineer, Admin, PlatformAdmin],
    ),
    // Exports carry an org's activity out of the platform: analysts and up,
    // never a read-only viewer.
    (
        Action::MatrixExport,
        &[Analyst, Lead, Engineer, Admin, PlatformAdmin],
    ),
    (Action::MatrixAdmin, &[Admin, PlatformAdmin]),
    // Notifications name actors and what they did: the people who act on
    // them, not every reader of the org.
    (Action::ReadNotifications, &[Lead, Admin, PlatformAdmin]),
];

/// Whether `role` may perform `action`, read from [`MATRIX`].
pub fn allows(role: Role, action: Action) -> bool {
    MATRIX
        .iter()
        .find(|(a, _)| *a == action)
        .is_some_and(|(_, roles)| roles.contains(&role))
}

/// The permission matrix as a Markdown table: one row per action of
/// [`MATRIX`], one column per role of [`Role::ALL`]. A cell says `org` when
/// the role may act within its own org, `platform` when a platform role may
/// act across orgs, and `no` when the action is refused (and audited as
/// denied).
///
/// `docs/access-control.md` embeds this output between marker comments;
/// `nexus-attack docs roles` prints it, and a CLI test fails when the two
/// differ, so the document cannot drift from the code.
pub fn role_matrix_markdown() -> String {
    let mut md = String::from(
        "`org`: allowed within the role's own org. `platform`: allowed, and the \
         role is not bound to one org. `no`: refused, and the refusal is audited.\n\n",
    );

    md.push_str("| action |");
    for role in Role::ALL {
        md.push_str(&format!(" {role} |"));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(Role::ALL.len()));
    md.push('\n');

    for (action, _) in MATRIX {
        md.push_str(&format!("| `{action}` |"));
        for role in Role::ALL {
            let cell = match (allows(role, *action), role.is_platform()) {
                (false, _) => "no",
                (true, false) => "org",
                (true, true) => "platform",
            };
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_exactly_one_row() {
        let all = [
            Action::ReadTaxonomy,
            Action::ReadDatasets,
            Action::DatasetLoad,
            Action::DatasetValidate,
            Action::DatasetApprove,
            Action::DatasetReject,
            Action::DatasetActivate,
            Action::DatasetRollback,
            Action::DatasetSync,
            Action::DatasetMigrate,
            Action::ManageOrgs,
            Action::ManageTokens,
            Action::ReadAudit,
            Action::VerifyAudit,
            Action::AlertIngest,
            Action::ReadMappings,
            Action::RuleWrite,
            Action::OverrideCreate,
            Action::OverrideApprove,
            Action::ReviewWork,
            Action::Suggest,
            Action::IncidentWrite,
            Action::IncidentAdjust,
            Action::MatrixExport,
            Action::MatrixAdmin,
            Action::ReadNotifications,
        ];
        for action in all {
            let rows = MATRIX.iter().filter(|(a, _)| *a == action).count();
            assert_eq!(rows, 1, "{action}");
        }
        assert_eq!(MATRIX.len(), all.len());
    }

    #[test]
    fn viewer_reads_but_cannot_approve() {
        assert!(allows(Role::Viewer, Action::ReadTaxonomy));
        assert!(!allows(Role::Viewer, Action::DatasetApprove));
        assert!(!allows(Role::Admin, Action::DatasetActivate));
        assert!(allows(Role::Steward, Action::DatasetActivate));
        assert!(!allows(Role::Steward, Action::ManageTokens));
    }

    #[test]
    fn role_matrix_markdown_has_a_row_per_action_and_a_cell_per_role() {
        let md = role_matrix_markdown();
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(rows.len(), MATRIX.len());

        let header = md.lines().find(|l| l.starts_with("| action |")).unwrap();
        assert_eq!(
            header,
            "| action | viewer | analyst | lead | engineer | admin | steward | platform-admin |"
        );
        // Rule writing: engineers and admins in their org, platform admins anywhere.
        let rule_write = rows
            .iter()
            .find(|r| r.starts_with("| `rule_write` |"))
            .unwrap();
        assert_eq!(
            *rule_write,
            "| `rule_write` | no | no | no | org | org | no | platform |"
        );
    }

    #[test]
    fn roles_parse_in_both_spellings() {
        assert_eq!(
            "platform_admin".parse::<Role>().unwrap(),
            Role::PlatformAdmin
        );
        assert_eq!(
            "Platform-Admin".parse::<Role>().unwrap(),
            Role::PlatformAdmin
        );
        assert!("root".parse::<Role>().is_err());
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
    }
}
