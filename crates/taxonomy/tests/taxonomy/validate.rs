//! Gate A on the real releases and on bundles with one flaw each.

use serde_json::json;
use taxonomy::validate::codes;
use taxonomy::{ValidationReport, validate};

use crate::bundles::{self, base, bundle, relationship, tactic, technique};
use crate::util::{self, RELEASE_FILES};

fn report_of(objects: Vec<serde_json::Value>) -> ValidationReport {
    validate(&bundles::parse(&bundle(objects)).unwrap())
}

/// (code, ATT&CK ID, STIX id) of every error.
fn errors(report: &ValidationReport) -> Vec<(String, String, String)> {
    report
        .errors()
        .map(|f| (f.code.clone(), f.attack_id.clone(), f.object.clone()))
        .collect()
}

#[test]
fn every_official_release_validates_without_error() {
    for name in RELEASE_FILES {
        let report = validate(&util::release(name));
        assert_eq!(errors(&report), vec![], "{name}");
        assert!(!report.is_blocking(), "{name}");
    }
}

#[test]
fn official_warnings_are_the_known_data_quirks() {
    // Mobile 17.1: T1415, T1419 and T1454 are revoked with no revoked-by
    // relationship in the raw bundle; count them independently.
    let name = "mobile-attack-17.1.json.gz";
    let bundle = util::raw(name);
    let with_replacement: Vec<String> = util::relationships(&bundle, "revoked-by")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let mut expected: Vec<String> = util::of_type(&bundle, "attack-pattern")
        .into_iter()
        .filter(|p| util::is_revoked(p))
        .filter(|p| !with_replacement.contains(&p["id"].as_str().unwrap().to_string()))
        .map(util::attack_id)
        .collect();
    expected.sort();
    assert_eq!(expected, ["T1415", "T1419", "T1454"]);

    let report = validate(&util::release(name));
    let got: Vec<String> = report
        .warnings()
        .filter(|f| f.code == codes::REVOKED_WITHOUT_REPLACEMENT)
        .map(|f| f.attack_id.clone())
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_clean_bundle_has_no_finding() {
    assert_eq!(report_of(base()).findings, vec![]);
}

#[test]
fn subtechnique_with_missing_parent_is_an_error_naming_it() {
    let mut objects = base();
    objects.push(technique(
        "attack-pattern--orphan",
        "T1999.001",
        &["execution"],
    ));
    let report = report_of(objects);
    assert!(report.is_blocking());
    assert_eq!(
        errors(&report),
        vec![(
            codes::MISSING_PARENT.to_string(),
            "T1999.001".to_string(),
            "attack-pattern--orphan".to_string()
        )]
    );
    let message = &report.errors().next().unwrap().message;
    assert!(
        message.contains("T1999.001") && message.contains("T1999"),
        "{message}"
    );
}

#[test]
fn duplicate_live_ids_are_errors_on_each_object() {
    let mut objects = base();
    objects.push(technique("attack-pattern--twin", "T1059", &["execution"]));
    let report = report_of(objects);
    assert_eq!(
        errors(&report),
        vec![
            (
                codes::DUPLICATE_ID.into(),
                "T1059".into(),
                "attack-pattern--t1059".into()
            ),
            (
                codes::DUPLICATE_ID.into(),
                "T1059".into(),
                "attack-pattern--twin".into()
            ),
        ]
    );
}

#[test]
fn a_revoked_object_sharing_its_replacements_id_is_normal() {
    let mut objects = base();
    let mut old = technique("attack-pattern--old", "T1059", &["execution"]);
    old["revoked"] = json!(true);
    objects.push(old);
    objects.push(relationship(
        "revoked-by",
        "attack-pattern--old",
        "attack-pattern--t1059",
    ));
    let report = report_of(objects);
    assert_eq!(report.findings, vec![]);
}

#[test]
fn a_deprecated_duplicate_is_only_a_warning() {
    let mut objects = base();
    let mut old = technique("attack-pattern--old", "T1059", &["execution"]);
    old["x_mitre_deprecated"] = json!(true);
    objects.push(old);
    let report = report_of(objects);
    assert!(!report.is_blocking());
    assert_eq!(
        report
            .warnings()
            .filter(|f| f.code == codes::DUPLICATE_ID)
            .count(),
        2
    );
}

#[test]
fn duplicate_stix_ids_are_errors() {
    let mut objects = base();
    objects.push(technique("attack-pattern--t1106", "T1106", &["execution"]));
    objects.push(technique("attack-pattern--t1106", "T1107", &["execution"]));
    let report = report_of(objects);
    assert_eq!(
        errors(&report),
        vec![(
            codes::DUPLICATE_STIX_ID.into(),
            "T1107".into(),
            "attack-pattern--t1106".into()
        )]
    );
}

#[test]
fn unknown_tactic_references_are_errors() {
    let mut objects = base();
    objects.push(technique(
        "attack-pattern--t1111",
        "T1111",
        &["execution", "stealth"],
    ));
    let report = report_of(objects);
    assert_eq!(
        errors(&report),
        vec![(
            codes::UNKNOWN_TACTIC.into(),
            "T1111".into(),
            "attack-pattern--t1111".into()
        )]
    );
    assert!(
        report
            .errors()
            .next()
            .unwrap()
            .message
            .contains("`stealth`")
    );
}

#[test]
fn unresolved_matrix_columns_are_errors() {
    let mut objects = base();
    objects[0] = bundles::matrix(&["x-mitre-tactic--exec", "x-mitre-tactic--gone"]);
    let report = report_of(objects);
    assert_eq!(
        errors(&report),
        vec![(
            codes::UNRESOLVED_TACTIC_REF.into(),
            "enterprise-attack".into(),
            "x-mitre-matrix--m".into()
        )]
    );
}

#[test]
fn inconsistent_flags_are_errors() {
    let mut objects = base();
    // A sub-technique ID without the sub-technique flag.
    let mut flagless = technique("attack-pattern--t1059-002", "T1059.002", &["execution"]);
    flagless["x_mitre_is_subtechnique"] = json!(false);
    objects.push(flagless);
    // A replacement named for an object that is not revoked.
    objects.push(technique("attack-pattern--t1106", "T1106", &["execution"]));
    objects.push(relationship(
        "revoked-by",
        "attack-pattern--t1106",
        "attack-pattern--t1059",
    ));
    let report = report_of(objects);
    assert_eq!(
        errors(&report),
        vec![
            (
                codes::INCONSISTENT_STATUS.into(),
                "T1059.002".into(),
                "attack-pattern--t1059-002".into()
            ),
            (
                codes::INCONSISTENT_STATUS.into(),
                "T1106".into(),
                "attack-pattern--t1106".into()
            ),
        ]
    );
}

#[test]
fn malformed_ids_are_errors_on_live_objects_only() {
    let mut objects = base();
    objects.push(technique("attack-pattern--bad", "T10-59", &["execution"]));
    let mut retired = technique("attack-pattern--old", "X1", &["execution"]);
    retired["x_mitre_deprecated"] = json!(true);
    objects.push(retired);
    let report = report_of(objects);
    assert_eq!(
        errors(&report),
        vec![(
            codes::MALFORMED_ID.into(),
            "T10-59".into(),
            "attack-pattern--bad".into()
        )]
    );
    assert!(
        report
            .warnings()
            .any(|f| f.code == codes::MALFORMED_ID && f.attack_id == "X1")
    );
}

#[test]
fn revoked_without_replacement_is_a_warning() {
    let mut objects = base();
    let mut old = technique("attack-pattern--old", "T1086", &["execution"]);
    old["revoked"] = json!(true);
    objects.push(old);
    let report = report_of(objects);
    assert!(!report.is_blocking());
    let warnings: Vec<(&str, &str)> = report
        .warnings()
        .map(|f| (f.code.as_str(), f.attack_id.as_str()))
        .collect();
    assert_eq!(warnings, [(codes::REVOKED_WITHOUT_REPLACEMENT, "T1086")]);
}

#[test]
fn a_release_without_techniques_is_blocked() {
    let objects = vec![
        bundles::matrix(&["x-mitre-tactic--exec"]),
        tactic("x-mitre-tactic--exec", "TA0002", "execution"),
    ];
    let report = report_of(objects);
    let codes: Vec<String> = report.errors().map(|f| f.code.clone()).collect();
    assert_eq!(codes, [codes::EMPTY_RELEASE]);
}

#[test]
fn findings_serialise_with_stable_fields() {
    let mut objects = base();
    objects.push(technique(
        "attack-pattern--orphan",
        "T1999.001",
        &["execution"],
    ));
    let value = serde_json::to_value(report_of(objects)).unwrap();
    let finding = &value["findings"][0];
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["code"], "missing_parent");
    assert_eq!(finding["object"], "attack-pattern--orphan");
    assert_eq!(finding["attack_id"], "T1999.001");
    assert!(matches!(finding["message"], serde_json::Value::String(_)));
}

#[test]
fn technique_without_attack_id_is_reported_once_and_its_procedures_say_so() {
    let mut objects = base();
    let mut no_id = technique("attack-pattern--noid", "T9999", &["execution"]);
    no_id["external_references"] = json!([]);
    no_id["name"] = json!("Nameless Trick");
    objects.push(no_id);
    objects.push(json!({"type": "intrusion-set", "id": "intrusion-set--g1", "name": "G1"}));
    objects.push(relationship(
        "uses",
        "intrusion-set--g1",
        "attack-pattern--noid",
    ));
    let report = report_of(objects);

    // One malformed_id error, on the object without an ID, and nothing else.
    assert_eq!(
        errors(&report),
        vec![(
            codes::MALFORMED_ID.into(),
            String::new(),
            "attack-pattern--noid".into()
        )]
    );
    let dangling: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.code == codes::DANGLING_PROCEDURE)
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(
        dangling,
        vec![
            "procedure relationship--uses-intrusion-set--g1-attack-pattern--noid from G1 points \
             at technique attack-pattern--noid `Nameless Trick`, which has no ATT&CK ID"
        ]
    );
}
