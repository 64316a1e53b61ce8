//! Navigator layer import: round trip, unknown fields, older releases,
//! comparison with org activity.

use std::collections::BTreeMap;

use serde_json::json;
use views::{ComparisonStatus, ScoreBy, compare, import_layer, multi_layer, navigator_layer};

use crate::navigator::{options, small_view};
use crate::{enterprise_16_1, enterprise_18_1, external_id, raw_18_1};

/// (technique, tactic) -> score of the scored entries.
fn scores_of(import: &views::LayerImport) -> BTreeMap<(String, Option<String>), f64> {
    import
        .scores
        .iter()
        .filter_map(|s| Some(((s.technique.clone(), s.tactic.clone()), s.score?)))
        .collect()
}

#[test]
fn reimporting_an_exported_layer_gives_the_same_scores() {
    let view = small_view();
    let release = enterprise_18_1();
    for score in [ScoreBy::Count, ScoreBy::Intensity] {
        for full_matrix in [false, true] {
            let layer = navigator_layer(&view, release, &options(full_matrix, score));

            let imported = import_layer(&layer.to_string(), release, None).expect("import");

            let expected: BTreeMap<(String, Option<String>), f64> = view
                .cells
                .iter()
                .map(|c| {
                    let value = match score {
                        ScoreBy::Count => c.count as f64,
                        ScoreBy::Intensity => c.intensity,
                    };
                    (
                        (c.technique.clone(), Some(c.tactic_shortname.clone())),
                        value,
                    )
                })
                .collect();
            let layer_import = &imported.layers[0];
            assert_eq!(scores_of(layer_import), expected);
            assert!(layer_import.unknown.is_empty());
            assert!(layer_import.scores.iter().all(|s| s.flagged.is_none()));
            assert_eq!(layer_import.attack_version.as_deref(), Some("18.1"));
            assert_eq!(imported.to_json(), layer);
        }
    }
}

#[test]
fn fields_the_import_does_not_use_survive_a_re_export() {
    let view = small_view();
    let release = enterprise_18_1();
    let mut first = navigator_layer(&view, release, &options(false, ScoreBy::Count));
    first["x_vendor_extension"] = json!({ "ticket": "SOC-42" });
    first["techniques"][0]["x_note"] = json!("keep me");
    let second = navigator_layer(&view, release, &options(false, ScoreBy::Intensity));
    let file = multi_layer(vec![first.clone(), second.clone()]);

    let imported = import_layer(&file.to_string(), release, None).expect("import");

    assert!(imported.multi);
    assert_eq!(imported.layers.len(), 2);
    let again = imported.to_json();
    assert_eq!(again, file);
    assert_eq!(again[0]["x_vendor_extension"]["ticket"], "SOC-42");
    assert_eq!(again[0]["techniques"][0]["x_note"], "keep me");
}

/// The replacement the raw 18.1 bundle names for a revoked technique,
/// through its `revoked-by` relationship.
fn raw_replacement(id: &str) -> String {
    let raw = raw_18_1();
    let revoked = raw
        .iter()
        .find(|o| o["type"] == "attack-pattern" && external_id(o) == Some(id))
        .expect("technique in raw 18.1");
    assert_eq!(revoked["revoked"], true, "{id} is revoked in 18.1");
    let target = raw
        .iter()
        .find(|o| {
            o["type"] == "relationship"
                && o["relationship_type"] == "revoked-by"
                && o["source_ref"] == revoked["id"]
        })
        .and_then(|r| r["target_ref"].as_str())
        .expect("revoked-by relationship");
    let replacement = raw
        .iter()
        .find(|o| o["id"] == target)
        .expect("replacement object");
    external_id(replacement)
        .expect("replacement ID")
        .to_string()
}

#[test]
fn a_layer_of_an_older_release_resolves_revoked_techniques_with_a_flag() {
    let old = enterprise_16_1();
    let new = enterprise_18_1();
    let diff = taxonomy::diff(old, new);
    // Live in 16.1, revoked by 17.1 and still revoked in 18.1.
    let revoked = "T1574.002";
    assert!(old.technique(revoked).expect("in 16.1").status.is_live());
    let replacement = raw_replacement(revoked);
    assert_eq!(replacement, "T1574.001");
    let layer = json!({
        "name": "threat actor X (16.1)",
        "versions": { "attack": "16", "navigator": "5.1.0", "layer": "4.5" },
        "domain": "enterprise-attack",
        "techniques": [
            { "techniqueID": revoked, "tactic": "persistence", "score": 5 },
            { "techniqueID": "T1059.001", "tactic": "execution", "score": 2 },
            { "techniqueID": "T9999", "score": 1 },
        ],
    });

    let imported = import_layer(&layer.to_string(), new, Some(&diff)).expect("import");

    let layer_import = &imported.layers[0];
    assert_eq!(layer_import.attack_version.as_deref(), Some("16"));
    assert_eq!(layer_import.scores.len(), 2);
    let resolved = &layer_import.scores[0];
    assert_eq!(resolved.technique, replacement);
    assert_eq!(resolved.resolved_from.as_deref(), Some(revoked));
    assert_eq!(resolved.score, Some(5.0));
    let flag = resolved.flagged.as_deref().expect("flagged");
    assert!(
        flag.contains("revoked") && flag.contains(&replacement),
        "{flag}"
    );
    assert_eq!(layer_import.scores[1].technique, "T1059.001");
    assert_eq!(layer_import.scores[1].flagged, None);
    assert_eq!(layer_import.unknown.len(), 1);
    assert_eq!(layer_import.unknown[0].technique, "T9999");
}

#[test]
fn a_layer_of_another_domain_is_refused() {
    let layer = json!({ "name": "ics", "domain": "ics-attack", "techniques": [] });

    let err = import_layer(&layer.to_string(), enterprise_18_1(), None).expect_err("refused");

    assert!(
        matches!(err, views::ImportError::DomainMismatch { .. }),
        "{err}"
    );
}

#[test]
fn malformed_files_get_errors_that_say_where() {
    let release = enterprise_18_1();
    assert!(matches!(
        import_layer("{not json", release, None),
        Err(views::ImportError::Json(_))
    ));
    let no_id =
        json!([{ "name": "a", "techniques": [] }, { "name": "b", "techniques": [{ "score": 1 }] }]);
    match import_layer(&no_id.to_string(), release, None) {
        Err(views::ImportError::NotALayer { index, reason }) => {
            assert_eq!(index, 1);
            assert!(reason.contains("techniqueID"), "{reason}");
        }
        other => panic!("expected NotALayer, got {other:?}"),
    }
}

#[test]
fn comparison_sorts_techniques_into_both_layer_only_and_org_only() {
    // The small view has T1078, T1059, T1059.001 and T1003.001.
    let view = small_view();
    let layer = json!({
        "name": "intel",
        "versions": { "layer": "4.5" },
        "domain": "enterprise-attack",
        "techniques": [
            { "techniqueID": "T1059.001", "tactic": "execution", "score": 7 },
            { "techniqueID": "T1566", "comment": "phishing seen in the report" },
            { "techniqueID": "T1110" },
        ],
    });
    let imported = import_layer(&layer.to_string(), enterprise_18_1(), None).expect("import");

    let rows = compare(&imported.layers[0], &view);

    let got: Vec<(&str, Option<f64>, u64, ComparisonStatus)> = rows
        .iter()
        .map(|c| (c.technique.as_str(), c.layer_score, c.org_count, c.status))
        .collect();
    assert_eq!(
        got,
        vec![
            ("T1003.001", None, 2, ComparisonStatus::OrgOnly),
            ("T1059", None, 1, ComparisonStatus::OrgOnly),
            ("T1059.001", Some(7.0), 4, ComparisonStatus::Both),
            ("T1078", None, 3, ComparisonStatus::OrgOnly),
            ("T1566", None, 0, ComparisonStatus::LayerOnly),
        ]
    );
}

#[test]
fn deprecated_techniques_are_kept_with_a_flag() {
    let raw = raw_18_1();
    let deprecated = raw
        .iter()
        .filter(|o| {
            o["type"] == "attack-pattern" && o["x_mitre_deprecated"] == true && o["revoked"] != true
        })
        .find_map(external_id)
        .expect("a deprecated technique in raw 18.1");
    let layer = json!({
        "name": "old intel",
        "domain": "enterprise-attack",
        "techniques": [{ "techniqueID": deprecated, "score": 1 }],
    });

    let imported = import_layer(&layer.to_string(), enterprise_18_1(), None).expect("import");

    let score = &imported.layers[0].scores[0];
    assert_eq!(score.technique, deprecated);
    assert_eq!(score.resolved_from, None);
    let flag = score.flagged.as_deref().expect("flagged");
    assert!(flag.contains("deprecated"), "{flag}");
}

#[test]
fn an_id_the_diff_says_changed_resolves_to_the_new_id() {
    // No Enterprise release pair in the shared folder moves an ID under the
    // same STIX id, so the diff gets one such entry, shaped as taxonomy
    // writes it for a technique demoted to a sub-technique.
    let mut diff = taxonomy::diff(enterprise_16_1(), enterprise_18_1());
    diff.techniques
        .changes
        .major
        .push(taxonomy::diff::DiffEntry {
            id: "T1059.001".into(),
            stix_id: "attack-pattern--test".into(),
            name: "PowerShell".into(),
            old_version: Some("1.0".into()),
            new_version: Some("2.0".into()),
            replaced_by: None,
            old_id: Some("T1086".into()),
            old_name: None,
        });
    let layer = json!({
        "name": "renamed",
        "domain": "enterprise-attack",
        "techniques": [{ "techniqueID": "T1086", "tactic": "execution", "score": 3 }],
    });

    let imported =
        import_layer(&layer.to_string(), enterprise_18_1(), Some(&diff)).expect("import");

    let score = &imported.layers[0].scores[0];
    assert_eq!(score.technique, "T1059.001");
    assert_eq!(score.tactic.as_deref(), Some("execution"));
    assert_eq!(score.resolved_from.as_deref(), Some("T1086"));
    assert!(
        score
            .flagged
            .as_deref()
            .is_some_and(|f| f.contains("ID changed"))
    );
}
