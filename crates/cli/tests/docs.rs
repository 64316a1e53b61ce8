//! Generated documentation stays in step with the code: the role matrix in
//! docs/access-control.md is exactly what `nexus-attack docs roles` prints.

use std::path::PathBuf;
use std::process::Command;

use service::access::{Action, Role, allows};

const BEGIN: &str = "<!-- BEGIN generated: nexus-attack docs roles -->";
const END: &str = "<!-- END generated: nexus-attack docs roles -->";
const REGENERATE: &str = "regenerate it with `cargo run -p nexus-attack -- docs roles` and paste \
     the output between the marker comments of docs/access-control.md";

fn access_control_doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/access-control.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text between the marker comments, without the newlines that frame it.
fn generated_block(doc: &str) -> &str {
    let start = doc
        .find(BEGIN)
        .unwrap_or_else(|| panic!("docs/access-control.md lacks `{BEGIN}`"));
    let end = doc
        .find(END)
        .unwrap_or_else(|| panic!("docs/access-control.md lacks `{END}`"));
    assert!(start < end, "the END marker comes before the BEGIN marker");
    doc[start + BEGIN.len()..end].trim_matches('\n')
}

/// The cell of the doc's table for an action (as written in the audit log)
/// and a role.
fn cell<'d>(block: &'d str, action: &str, role: &str) -> &'d str {
    let split = |line: &'d str| -> Vec<&'d str> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect()
    };
    let header = block
        .lines()
        .find(|l| l.starts_with("| action |"))
        .expect("the table has a header row");
    let column = split(header)
        .iter()
        .position(|h| *h == role)
        .unwrap_or_else(|| panic!("no column for role {role}"));
    let row = block
        .lines()
        .find(|l| l.starts_with(&format!("| `{action}` |")))
        .unwrap_or_else(|| panic!("no row for action {action}"));
    split(row)[column]
}

#[test]
fn access_control_doc_matches_the_generated_role_matrix() {
    let output = Command::new(env!("CARGO_BIN_EXE_nexus-attack"))
        .args(["docs", "roles"])
        // The command needs no database; pointing at a path that cannot
        // exist proves it does not open one.
        .env(
            "NEXUS_ATTACK_DATABASE",
            "sqlite:///nonexistent/dir/never.db",
        )
        .output()
        .expect("nexus-attack runs");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert_eq!(printed, service::access::role_matrix_markdown());

    let doc = access_control_doc();
    let block = generated_block(&doc);
    assert!(
        block == printed.trim_matches('\n'),
        "docs/access-control.md's role matrix differs from the code; {REGENERATE}\n\
         --- in the doc ---\n{block}\n--- from the code ---\n{printed}"
    );
}

#[test]
fn documented_cells_agree_with_the_permission_check() {
    let doc = access_control_doc();
    let block = generated_block(&doc);

    // Spot checks written from DESIGN.md's security section, not from the
    // matrix: the permission function and the published table must both say so.
    let expected = [
        (Role::Viewer, Action::RuleWrite, "no"),
        (Role::Viewer, Action::ReadTaxonomy, "org"),
        (Role::Engineer, Action::RuleWrite, "org"),
        (Role::Admin, Action::DatasetActivate, "no"),
        (Role::Analyst, Action::DatasetApprove, "no"),
        (Role::Steward, Action::DatasetApprove, "platform"),
        (Role::Steward, Action::ManageTokens, "no"),
        (Role::PlatformAdmin, Action::ManageOrgs, "platform"),
    ];
    for (role, action, want) in expected {
        assert_eq!(allows(role, action), want != "no", "{role} {action}");
        assert_eq!(
            cell(block, action.as_str(), role.as_str()),
            want,
            "{role} {action} in docs/access-control.md; {REGENERATE}"
        );
    }

    // And every cell of the table, read back from the document, agrees with
    // the permission check and the role's scope.
    let rows = block.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, service::access::MATRIX.len(), "{REGENERATE}");
    for (action, _) in service::access::MATRIX {
        for role in Role::ALL {
            let want = match (allows(role, *action), role.is_platform()) {
                (false, _) => "no",
                (true, false) => "org",
                (true, true) => "platform",
            };
            assert_eq!(
                cell(block, action.as_str(), role.as_str()),
                want,
                "{role} {action}; {REGENERATE}"
            );
        }
    }
}
