//! Sigma re-imports on a real database (SQLite always, PostgreSQL when
//! `NEXUS_ATTACK_TEST_POSTGRES` is set): a rule changes when what it maps
//! changes, whatever its dates say. Expected techniques are written here
//! from the YAML of each test, not read from the code under test.

use std::collections::BTreeMap;
use std::path::Path;

use service::{App, Role};
use store::testing::databases;

mod support;
use support::{app_with_acme, member, shared};

const DATED: &str = "11111111-aaaa-4aaa-8aaa-111111111111";
const UNDATED: &str = "22222222-bbbb-4bbb-8bbb-222222222222";
const BAD_DATE: &str = "33333333-cccc-4ccc-8ccc-333333333333";

/// A Sigma rule with `id`, the extra `meta` lines (dates) and one
/// technique tag.
fn sigma(id: &str, meta: &str, technique: &str) -> String {
    format!(
        "title: rule {id}\nid: {id}\nstatus: test\nlevel: high\n{meta}\
         tags:\n    - attack.{technique}\nlogsource: {{product: windows}}\n\
         detection: {{sel: {{Image|endswith: x.exe}}, condition: sel}}\n"
    )
}

/// Writes the pack: the dated rule and the undated one with `technique`,
/// the one with an unreadable date with `bad_date_technique`.
fn write_pack(dir: &Path, technique: &str, bad_date_technique: &str) {
    let files = [
        ("dated.yml", sigma(DATED, "date: 2025-03-12\n", technique)),
        ("undated.yml", sigma(UNDATED, "", technique)),
        (
            "bad-date.yml",
            sigma(BAD_DATE, "date: 2025-13-45\n", bad_date_technique),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// The org's active rules: id -> (version, techniques).
async fn active(app: &App, actor: &service::Actor) -> BTreeMap<String, (i64, Vec<String>)> {
    app.list_rules(actor, "acme", Some("active"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let techniques = r.techniques.into_iter().map(|(t, _)| t).collect();
            (r.id, (r.version, techniques))
        })
        .collect()
}

/// Trial finding: re-importing a pack where only a rule's tags changed
/// (`attack.t1105` -> `attack.t1003`) reported every rule unchanged and
/// kept the old techniques, because change was read from `date` /
/// `modified`; a rule without a readable date stayed at version 1 for ever,
/// and an unreadable date was dropped without a word.
#[tokio::test]
async fn a_rule_whose_tags_changed_is_a_new_version_whatever_its_dates() {
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let engineer = member(&acme, "eve", Role::Engineer);
        let pack = tempfile::tempdir().unwrap();

        write_pack(pack.path(), "t1105", "t1105");
        let first = app
            .import_sigma(&engineer, "acme", pack.path())
            .await
            .unwrap();
        assert_eq!((first.new_versions, first.unchanged), (3, 0), "{label}");
        let warned: Vec<(&str, &str)> = first
            .report
            .warnings
            .iter()
            .map(|w| (w.rule.as_str(), w.file.as_str()))
            .collect();
        assert_eq!(warned, [(BAD_DATE, "bad-date.yml")], "{label}");
        assert!(
            first.report.warnings[0].message.contains("2025-13-45"),
            "{label}: {:?}",
            first.report.warnings
        );
        let rules = active(&app, &engineer).await;
        let id = |sigma: &str| format!("sigma:{sigma}");
        assert_eq!(
            rules[&id(DATED)],
            (20250312, vec!["T1105".into()]),
            "{label}"
        );
        assert_eq!(rules[&id(UNDATED)], (1, vec!["T1105".into()]), "{label}");
        assert_eq!(rules[&id(BAD_DATE)], (1, vec!["T1105".into()]), "{label}");

        // Only the tags change, not one date: two rules map differently.
        write_pack(pack.path(), "t1003", "t1105");
        let second = app
            .import_sigma(&engineer, "acme", pack.path())
            .await
            .unwrap();
        assert_eq!((second.new_versions, second.unchanged), (2, 1), "{label}");
        let rules = active(&app, &engineer).await;
        assert_eq!(
            rules[&id(DATED)],
            (20250313, vec!["T1003".into()]),
            "{label}"
        );
        assert_eq!(rules[&id(UNDATED)], (2, vec!["T1003".into()]), "{label}");
        assert_eq!(rules[&id(BAD_DATE)], (1, vec!["T1105".into()]), "{label}");

        // The same pack again: nothing new.
        let third = app
            .import_sigma(&engineer, "acme", pack.path())
            .await
            .unwrap();
        assert_eq!((third.new_versions, third.unchanged), (0, 3), "{label}");

        // The first pack again: its versions become active again, none is
        // stored anew.
        write_pack(pack.path(), "t1105", "t1105");
        let back = app
            .import_sigma(&engineer, "acme", pack.path())
            .await
            .unwrap();
        assert_eq!((back.new_versions, back.unchanged), (2, 1), "{label}");
        let rules = active(&app, &engineer).await;
        assert_eq!(
            rules[&id(DATED)],
            (20250312, vec!["T1105".into()]),
            "{label}"
        );
        assert_eq!(rules[&id(UNDATED)], (1, vec!["T1105".into()]), "{label}");
        let all = app.list_rules(&engineer, "acme", None).await.unwrap();
        assert_eq!(all.len(), 5, "{label}: three first versions, two second");
    }
}

/// A real pack imported twice stores nothing the second time.
#[tokio::test]
async fn a_shared_pack_imported_twice_is_unchanged_the_second_time() {
    let pack = shared().join("sigma/sigma-rules-8eaafff1f.tar.gz");
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let engineer = member(&acme, "eve", Role::Engineer);
        let first = app.import_sigma(&engineer, "acme", &pack).await.unwrap();
        assert!(first.new_versions > 0, "{label}");
        let again = app.import_sigma(&engineer, "acme", &pack).await.unwrap();
        assert_eq!(
            (again.new_versions, again.unchanged),
            (0, first.new_versions),
            "{label}"
        );
    }
}
