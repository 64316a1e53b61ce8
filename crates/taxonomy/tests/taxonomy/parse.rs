//! Parsing the real releases: counts, identity, relationships, texts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use taxonomy::{Domain, IdentitySource, LoadHints, ParseError, ReleaseCounts};

use crate::util::{self, RELEASE_FILES};

/// Counts computed from the raw JSON the way the `dataset load` contract
/// defines them.
fn raw_counts(name: &str) -> (usize, usize, usize, usize, usize) {
    let bundle = util::raw(name);
    let tactics = util::of_type(&bundle, "x-mitre-tactic");
    let patterns = util::of_type(&bundle, "attack-pattern");
    let live_tactics = tactics.iter().filter(|t| util::is_live(t)).count();
    let is_sub = |p: &&&serde_json::Value| p["x_mitre_is_subtechnique"] == true;
    let techniques = patterns
        .iter()
        .filter(|p| util::is_live(p))
        .filter(|p| !is_sub(p))
        .count();
    let subtechniques = patterns
        .iter()
        .filter(|p| util::is_live(p))
        .filter(is_sub)
        .count();
    let revoked = patterns.iter().filter(|p| util::is_revoked(p)).count();
    let deprecated = patterns
        .iter()
        .filter(|p| util::is_deprecated(p) && !util::is_revoked(p))
        .count();
    (live_tactics, techniques, subtechniques, revoked, deprecated)
}

#[test]
fn enterprise_18_1_has_the_reference_counts() {
    let release = util::release("enterprise-attack-18.1.json.gz");
    let c = release.counts();

    // The figures published in shared/README.md and issue 2 ...
    assert_eq!(
        (
            c.tactics,
            c.techniques,
            c.subtechniques,
            c.revoked,
            c.deprecated
        ),
        (14, 216, 475, 132, 12)
    );
    // ... and the same figures counted from the raw JSON.
    assert_eq!(
        (
            c.tactics,
            c.techniques,
            c.subtechniques,
            c.revoked,
            c.deprecated
        ),
        raw_counts("enterprise-attack-18.1.json.gz")
    );
    assert_eq!(release.techniques.len(), 835);
}

#[test]
fn every_shared_release_parses_with_counts_matching_raw_json() {
    for name in RELEASE_FILES {
        let c: ReleaseCounts = util::release(name).counts();
        assert_eq!(
            (
                c.tactics,
                c.techniques,
                c.subtechniques,
                c.revoked,
                c.deprecated
            ),
            raw_counts(name),
            "{name}"
        );
    }
}

#[test]
fn identity_comes_from_collection_or_file_name() {
    // (file, domain, release, spec version, source): per shared/README.md the
    // Enterprise files and Mobile 18.1 are STIX 2.0 without a collection.
    let expected = [
        (
            "enterprise-attack-15.1.json.gz",
            Domain::Enterprise,
            "15.1",
            "2.0",
            IdentitySource::FileName,
        ),
        (
            "enterprise-attack-18.1.json.gz",
            Domain::Enterprise,
            "18.1",
            "2.0",
            IdentitySource::FileName,
        ),
        (
            "mobile-attack-18.1.json.gz",
            Domain::Mobile,
            "18.1",
            "2.0",
            IdentitySource::FileName,
        ),
        (
            "mobile-attack-17.1.json.gz",
            Domain::Mobile,
            "17.1",
            "2.1",
            IdentitySource::Collection,
        ),
        (
            "ics-attack-17.1.json.gz",
            Domain::Ics,
            "17.1",
            "2.1",
            IdentitySource::Collection,
        ),
        (
            "ics-attack-18.1.json.gz",
            Domain::Ics,
            "18.1",
            "2.1",
            IdentitySource::Collection,
        ),
    ];
    for (name, domain, version, spec, source) in expected {
        let r = util::release(name);
        assert_eq!(
            (
                r.domain,
                r.version.as_str(),
                r.spec_version.as_str(),
                r.identity_source
            ),
            (domain, version, spec, source),
            "{name}"
        );
    }
}

#[test]
fn collection_identity_needs_no_hint_and_rejects_a_contradicting_caller() {
    let bytes = util::bytes("ics-attack-18.1.json.gz");

    let bare = taxonomy::parse(&bytes, &LoadHints::default()).unwrap();
    assert_eq!((bare.domain, bare.version.as_str()), (Domain::Ics, "18.1"));

    let agreeing = LoadHints {
        release: Some("18.1".into()),
        domain: Some(Domain::Ics),
        file_name: Some("renamed.json.gz".into()),
    };
    assert!(taxonomy::parse(&bytes, &agreeing).is_ok());

    let wrong_release = LoadHints {
        release: Some("17.1".into()),
        ..LoadHints::default()
    };
    let err = taxonomy::parse(&bytes, &wrong_release).unwrap_err();
    assert!(
        matches!(&err, ParseError::IdentityConflict { first, second, .. } if first == "18.1" && second == "17.1"),
        "{err}"
    );

    let wrong_domain = LoadHints {
        domain: Some(Domain::Enterprise),
        ..LoadHints::default()
    };
    let err = taxonomy::parse(&bytes, &wrong_domain).unwrap_err();
    assert!(
        matches!(&err, ParseError::IdentityConflict { first, second, .. } if first == "ics-attack" && second == "enterprise-attack"),
        "{err}"
    );
}

#[test]
fn stix_2_0_release_comes_from_caller_when_the_file_name_lacks_it() {
    let bytes = util::bytes("mobile-attack-18.1.json.gz");

    let hints = LoadHints {
        file_name: Some("/downloads/mobile-attack.json.gz".into()),
        release: Some("18.1".into()),
        domain: None,
    };
    let r = taxonomy::parse(&bytes, &hints).unwrap();
    assert_eq!(
        (r.domain, r.version.as_str(), r.identity_source),
        (Domain::Mobile, "18.1", IdentitySource::Caller)
    );

    let err = taxonomy::parse(&bytes, &LoadHints::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::MissingIdentity {
                field: taxonomy::IdentityField::Release
            }
        ),
        "{err}"
    );

    // The file name says 18.1; a caller saying 17.1 is a mistake to report.
    let hints = LoadHints {
        file_name: Some("mobile-attack-18.1.json.gz".into()),
        release: Some("17.1".into()),
        domain: None,
    };
    let err = taxonomy::parse(&bytes, &hints).unwrap_err();
    assert!(matches!(err, ParseError::IdentityConflict { .. }), "{err}");

    // The bundle's matrix says mobile; a file named for Enterprise is wrong.
    let hints = LoadHints {
        file_name: Some("enterprise-attack-18.1.json.gz".into()),
        ..LoadHints::default()
    };
    let err = taxonomy::parse(&bytes, &hints).unwrap_err();
    assert!(matches!(err, ParseError::IdentityConflict { .. }), "{err}");
}

#[test]
fn sha256_is_of_the_bytes_as_given_and_plain_json_parses_the_same() {
    let name = "enterprise-attack-18.1.json.gz";
    let gz = util::release(name);
    // Computed with `sha256sum` on the shared file.
    assert_eq!(
        gz.sha256,
        "8d946254d7ed0c521215e166221ba83b17b3e0672fc28556964f3dc4dbb329c2"
    );

    let plain = serde_json::to_vec(&*util::raw(name)).unwrap();
    let hints = LoadHints {
        file_name: Some("enterprise-attack-18.1.json".into()),
        ..LoadHints::default()
    };
    let from_plain = taxonomy::parse(&plain, &hints).unwrap();
    assert_ne!(from_plain.sha256, gz.sha256);
    assert_eq!(from_plain.techniques, gz.techniques);
    assert_eq!(from_plain.tactics, gz.tactics);
    assert_eq!(from_plain.procedures, gz.procedures);
}

#[test]
fn tactics_follow_matrix_order() {
    for name in RELEASE_FILES {
        let bundle = util::raw(name);
        let ids = util::attack_ids_by_stix(&bundle);
        // The first live matrix's columns, then tactics only retired matrices list.
        let mut matrices = util::of_type(&bundle, "x-mitre-matrix");
        matrices.sort_by_key(|m| !util::is_live(m));
        let mut expected: Vec<String> = Vec::new();
        for m in matrices {
            for r in m["tactic_refs"].as_array().unwrap() {
                let id = ids[r.as_str().unwrap()].clone();
                if !expected.contains(&id) {
                    expected.push(id);
                }
            }
        }
        let got: Vec<String> = util::release(name)
            .tactics
            .iter()
            .map(|t| t.id.clone())
            .collect();
        assert_eq!(got, expected, "{name}");
    }
    let enterprise = util::release("enterprise-attack-18.1.json.gz");
    assert_eq!(enterprise.tactics[0].id, "TA0043", "Reconnaissance leads");
    assert_eq!(enterprise.tactics[13].id, "TA0040", "Impact closes");
}

#[test]
fn subtechnique_parents_come_from_relationships_or_the_id() {
    for name in [
        "enterprise-attack-17.1.json.gz",
        "mobile-attack-18.1.json.gz",
    ] {
        let bundle = util::raw(name);
        let ids = util::attack_ids_by_stix(&bundle);
        let by_relationship: HashMap<String, String> =
            util::relationships(&bundle, "subtechnique-of")
                .into_iter()
                .map(|(s, t)| (s, ids[&t].clone()))
                .collect();
        let release = util::release(name);
        let mut fallbacks = BTreeSet::new();
        for t in release.techniques.iter().filter(|t| t.is_subtechnique) {
            let expected = match by_relationship.get(&t.stix_id) {
                Some(parent) => parent.clone(),
                None => {
                    fallbacks.insert(t.id.clone());
                    t.id[..5].to_string()
                }
            };
            assert_eq!(
                t.parent.as_deref(),
                Some(expected.as_str()),
                "{name} {}",
                t.id
            );
        }
        for t in release.techniques.iter().filter(|t| !t.is_subtechnique) {
            assert_eq!(t.parent, None, "{name} {}", t.id);
        }
        if name.starts_with("enterprise") {
            // The two sub-techniques ATT&CK left without a relationship.
            assert_eq!(
                fallbacks,
                BTreeSet::from(["T1053.001".to_string(), "T1547.011".to_string()])
            );
        }
    }
}

#[test]
fn revoked_by_names_the_replacement() {
    let name = "enterprise-attack-17.1.json.gz";
    let bundle = util::raw(name);
    let ids = util::attack_ids_by_stix(&bundle);
    let expected: BTreeMap<String, String> = util::relationships(&bundle, "revoked-by")
        .into_iter()
        .filter(|(s, _)| s.starts_with("attack-pattern--"))
        .map(|(s, t)| (ids[&s].clone(), ids[&t].clone()))
        .collect();
    let release = util::release(name);
    let got: BTreeMap<String, String> = release
        .techniques
        .iter()
        .filter_map(|t| Some((t.id.clone(), t.status.revoked_by.clone()?)))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        release
            .technique("T1574.002")
            .unwrap()
            .status
            .revoked_by
            .as_deref(),
        Some("T1574.001")
    );
    assert_eq!(got.len(), 132);
}

#[test]
fn procedures_are_uses_relationships_to_techniques() {
    let name = "enterprise-attack-18.1.json.gz";
    let bundle = util::raw(name);
    let names: HashMap<&str, &str> = util::objects(&bundle)
        .iter()
        .filter_map(|o| Some((o["id"].as_str()?, o["name"].as_str()?)))
        .collect();
    let expected: Vec<(String, Option<String>, String)> = util::of_type(&bundle, "relationship")
        .into_iter()
        .filter(|r| r["relationship_type"] == "uses")
        .filter(|r| {
            r["target_ref"]
                .as_str()
                .unwrap()
                .starts_with("attack-pattern--")
        })
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                names
                    .get(r["source_ref"].as_str().unwrap())
                    .map(|n| n.to_string()),
                r["description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let got: Vec<(String, Option<String>, String)> = util::release(name)
        .procedures
        .iter()
        .map(|p| {
            (
                p.stix_id.clone(),
                p.source_name.clone(),
                p.description.clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
    assert!(
        got.iter().all(|(_, n, _)| n.is_some()),
        "every source is named"
    );
}

#[test]
fn texts_platforms_and_phases_are_kept() {
    for name in [
        "enterprise-attack-17.1.json.gz",
        "enterprise-attack-18.1.json.gz",
    ] {
        let bundle = util::raw(name);
        let raw: HashMap<&str, &serde_json::Value> = util::of_type(&bundle, "attack-pattern")
            .into_iter()
            .map(|p| (p["id"].as_str().unwrap(), p))
            .collect();
        let release = util::release(name);
        let mut with_detection = 0;
        for t in &release.techniques {
            let p = raw[t.stix_id.as_str()];
            assert_eq!(t.description, p["description"].as_str().unwrap_or_default());
            assert_eq!(
                t.detection,
                p["x_mitre_detection"].as_str().unwrap_or_default()
            );
            assert_eq!(t.version, p["x_mitre_version"].as_str().unwrap_or_default());
            assert_eq!(t.modified, p["modified"].as_str().unwrap());
            let platforms: Vec<&str> = p["x_mitre_platforms"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(t.platforms, platforms);
            let phases: Vec<&str> = p["kill_chain_phases"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| k["phase_name"].as_str().unwrap())
                .collect();
            assert_eq!(t.tactics, phases, "{}", t.id);
            with_detection += usize::from(!t.detection.is_empty());
        }
        // ATT&CK 18 replaced detection text with detection strategies.
        let expected = if name.contains("17.1") { 726 } else { 0 };
        assert_eq!(with_detection, expected, "{name}");
    }
}

#[test]
fn lookups_answer_from_the_release() {
    let name = "enterprise-attack-18.1.json.gz";
    let bundle = util::raw(name);
    let ids = util::attack_ids_by_stix(&bundle);
    let t1059_stix = ids.iter().find(|(_, id)| *id == "T1059").unwrap().0.clone();
    let mut expected: Vec<String> = util::relationships(&bundle, "subtechnique-of")
        .into_iter()
        .filter(|(_, target)| *target == t1059_stix)
        .map(|(source, _)| ids[&source].clone())
        .collect();
    expected.sort();

    let release = util::release(name);
    let mut got: Vec<String> = release
        .subtechniques("T1059")
        .map(|t| t.id.clone())
        .collect();
    got.sort();
    assert_eq!(got, expected);
    assert!(got.contains(&"T1059.013".to_string()));

    // T1055.011 Extra Window Memory Injection: defense-evasion, privilege-escalation.
    let technique = release.technique("T1055.011").unwrap();
    let tactics: Vec<&str> = release
        .tactics_of(technique)
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(tactics, ["TA0005", "TA0004"]);
}
