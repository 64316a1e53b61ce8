//! Release diffs: the right values on real releases (computed from the raw
//! JSON), the JSON shape, and a golden Markdown changelog of a small pair.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::Value;
use taxonomy::{LoadHints, diff, to_markdown};

use crate::util;

/// (ATT&CK ID, version, revoked, deprecated) per attack-pattern STIX id.
fn raw_patterns(name: &str) -> HashMap<String, (String, String, bool, bool)> {
    let bundle = util::raw(name);
    util::of_type(&bundle, "attack-pattern")
        .into_iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                (
                    util::attack_id(p),
                    p["x_mitre_version"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    util::is_revoked(p),
                    util::is_deprecated(p),
                ),
            )
        })
        .collect()
}

fn ids(entries: &[taxonomy::diff::DiffEntry]) -> BTreeSet<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

#[test]
fn enterprise_16_1_to_17_1_revokes_t1574_002_for_t1574_001() {
    let (old_name, new_name) = (
        "enterprise-attack-16.1.json.gz",
        "enterprise-attack-17.1.json.gz",
    );
    let d = diff(&util::release(old_name), &util::release(new_name));

    // Independently: attack-patterns revoked in 17.1 but not in 16.1, with
    // their revoked-by target.
    let (old, new) = (raw_patterns(old_name), raw_patterns(new_name));
    let new_bundle = util::raw(new_name);
    let new_ids = util::attack_ids_by_stix(&new_bundle);
    let replacement: HashMap<String, String> = util::relationships(&new_bundle, "revoked-by")
        .into_iter()
        .map(|(s, t)| (s, new_ids[&t].clone()))
        .collect();
    let expected: BTreeMap<String, Option<String>> = new
        .iter()
        .filter(|(stix, n)| n.2 && !old.get(*stix).is_some_and(|o| o.2))
        .map(|(stix, n)| (n.0.clone(), replacement.get(stix).cloned()))
        .collect();
    assert_eq!(
        expected,
        BTreeMap::from([("T1574.002".to_string(), Some("T1574.001".to_string()))])
    );

    let got: BTreeMap<String, Option<String>> = d
        .techniques
        .changes
        .revoked
        .iter()
        .map(|e| (e.id.clone(), e.replaced_by.clone()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn enterprise_17_1_to_18_1_adds_twelve_techniques_and_versions_match_raw() {
    let (old_name, new_name) = (
        "enterprise-attack-17.1.json.gz",
        "enterprise-attack-18.1.json.gz",
    );
    let d = diff(&util::release(old_name), &util::release(new_name));
    let (old, new) = (raw_patterns(old_name), raw_patterns(new_name));

    let added: BTreeSet<String> = new
        .iter()
        .filter(|(stix, n)| !old.contains_key(*stix) && !n.2 && !n.3)
        .map(|(_, n)| n.0.clone())
        .collect();
    assert_eq!(added.len(), 12);
    for id in ["T1677", "T1678", "T1679", "T1680", "T1681"] {
        assert!(added.contains(id), "{id}");
    }
    assert_eq!(ids(&d.techniques.changes.added), added);

    // Major / minor among objects live on both sides, by integer comparison.
    let split = |v: &str| -> (u32, u32) {
        let (a, b) = v.split_once('.').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let mut major = BTreeSet::new();
    let mut minor = BTreeSet::new();
    for (stix, n) in &new {
        let Some(o) = old.get(stix) else { continue };
        if o.2 || o.3 || n.2 || n.3 {
            continue;
        }
        let (ov, nv) = (split(&o.1), split(&n.1));
        if nv.0 > ov.0 {
            major.insert(n.0.clone());
        } else if nv.0 == ov.0 && nv.1 > ov.1 {
            minor.insert(n.0.clone());
        }
    }
    assert_eq!(ids(&d.techniques.changes.major), major);
    assert_eq!(ids(&d.techniques.changes.minor), minor);
    assert_eq!((major.len(), minor.len()), (4, 58));
    let summary = d.summary();
    assert_eq!(
        (
            summary.techniques.added,
            summary.techniques.major,
            summary.techniques.minor
        ),
        (12, 4, 58)
    );

    let removed: BTreeSet<String> = old
        .iter()
        .filter(|(stix, _)| !new.contains_key(*stix))
        .map(|(_, o)| o.0.clone())
        .collect();
    assert_eq!(ids(&d.techniques.changes.removed), removed);
    assert!(d.techniques.changes.revoked.is_empty());
}

#[test]
fn json_has_the_contract_shape() {
    let d = diff(
        &util::release("enterprise-attack-16.1.json.gz"),
        &util::release("enterprise-attack-17.1.json.gz"),
    );
    let v: Value = serde_json::to_value(&d).unwrap();
    assert_eq!(v["old"]["domain"], "enterprise-attack");
    assert_eq!(v["old"]["release"], "16.1");
    assert_eq!(v["new"]["release"], "17.1");
    for kind in ["tactics", "techniques", "matrices"] {
        for category in [
            "added",
            "major",
            "minor",
            "deprecated",
            "revoked",
            "removed",
        ] {
            assert!(v[kind][category].is_array(), "{kind}.{category}");
        }
    }
    assert!(v["tactics"]["renamed"].is_array());
    assert!(v["tactics"]["splits"].is_array());
    let revoked = &v["techniques"]["revoked"][0];
    assert_eq!(revoked["id"], "T1574.002");
    assert_eq!(revoked["replaced_by"], "T1574.001");
    assert!(
        revoked["stix_id"]
            .as_str()
            .unwrap()
            .starts_with("attack-pattern--")
    );
    assert_eq!(revoked["name"], "DLL Side-Loading");
    assert!(revoked["old_version"].is_string() && revoked["new_version"].is_string());
    assert_eq!(
        v["platforms"]["added"],
        serde_json::json!(["ESXi", "Network Devices"])
    );
    assert_eq!(v["platforms"]["removed"], serde_json::json!(["Network"]));

    // The JSON reads back into the same diff.
    let back: taxonomy::ReleaseDiff = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
}

#[test]
fn a_release_diffed_with_itself_is_empty() {
    let r = util::release("ics-attack-18.1.json.gz");
    let d = diff(&r, &r);
    assert!(d.is_empty());
    assert!(to_markdown(&d).ends_with("No changes.\n"));
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_release(name: &str) -> taxonomy::Release {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let hints = LoadHints {
        file_name: Some(name.into()),
        ..LoadHints::default()
    };
    taxonomy::parse(&bytes, &hints).unwrap()
}

/// Compares with a golden file; `UPDATE_GOLDEN=1` rewrites it instead.
fn golden(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(actual, expected, "golden file {name} differs");
}

#[test]
fn small_pair_shows_every_kind_of_change() {
    let old = fixture_release("enterprise-attack-1.0.json");
    let new = fixture_release("enterprise-attack-2.0.json");
    assert!(!taxonomy::validate(&old).is_blocking());
    assert!(!taxonomy::validate(&new).is_blocking());
    let d = diff(&old, &new);
    let c = &d.techniques.changes;

    // What the fixture files were written to contain.
    assert_eq!(
        ids(&c.added),
        BTreeSet::from(["T1006.001".into(), "T1010".into()])
    );
    assert_eq!(ids(&c.major), BTreeSet::from(["T1002".into()]));
    assert_eq!(c.major[0].old_name.as_deref(), Some("Command Interpreter"));
    assert_eq!(
        ids(&c.minor),
        BTreeSet::from([
            "T1001".into(),
            "T1003".into(),
            "T1006".into(),
            "T1009".into()
        ])
    );
    assert_eq!(ids(&c.deprecated), BTreeSet::from(["T1007".into()]));
    assert_eq!(c.revoked.len(), 1);
    assert_eq!(
        (
            c.revoked[0].id.as_str(),
            c.revoked[0].replaced_by.as_deref()
        ),
        ("T1005", Some("T1006"))
    );
    assert_eq!(ids(&c.removed), BTreeSet::from(["T1008".into()]));

    // A renamed tactic is a rename, not a move of its techniques.
    assert_eq!(d.tactics.renamed.len(), 1);
    assert_eq!(d.tactics.renamed[0].old.shortname, "initial-access");
    assert_eq!(d.tactics.renamed[0].new.name, "Initial Foothold");
    let moved: Vec<&str> = d
        .techniques
        .tactic_changes
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(moved, ["T1003", "T1009"]);

    // Stealth split from Defense Evasion; Collection merged into Execution.
    assert_eq!(d.tactics.splits.len(), 1);
    assert_eq!(d.tactics.splits[0].tactic.id, "TA0112");
    assert_eq!(d.tactics.splits[0].from[0].tactic.id, "TA0005");
    assert_eq!(d.tactics.splits[0].from[0].techniques, ["T1003"]);
    assert_eq!(d.tactics.merges.len(), 1);
    assert_eq!(d.tactics.merges[0].tactic.id, "TA0009");
    assert_eq!(d.tactics.merges[0].into[0].techniques, ["T1009"]);
    assert_eq!(
        ids(&d.tactics.changes.added),
        BTreeSet::from(["TA0112".into()])
    );
    assert_eq!(
        ids(&d.tactics.changes.deprecated),
        BTreeSet::from(["TA0009".into()])
    );

    assert_eq!(d.matrices.columns.len(), 1);
    assert_eq!(d.platforms.added, ["ESXi"]);
    assert_eq!(d.platforms.removed, ["Network"]);

    golden("enterprise-attack-1.0-to-2.0.md", &to_markdown(&d));
    let json = serde_json::to_string_pretty(&d).unwrap() + "\n";
    golden("enterprise-attack-1.0-to-2.0.json", &json);
}
