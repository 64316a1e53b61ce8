//! Taxonomy reads on Enterprise 18.1, checked against values computed
//! directly from the raw bundle with serde_json.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::helpers::{TestApp, enterprise_18_raw};

fn objects(kind: &str) -> impl Iterator<Item = &'static Value> {
    enterprise_18_raw()["objects"]
        .as_array()
        .expect("bundle objects")
        .iter()
        .filter(move |o| o["type"] == kind)
}

fn attack_id(object: &Value) -> Option<String> {
    object["external_references"]
        .as_array()?
        .iter()
        .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
        .as_str()
        .map(str::to_string)
}

fn is_live(object: &Value) -> bool {
    object["revoked"] != true && object["x_mitre_deprecated"] != true
}

/// Tactic IDs in the order of the matrix's `tactic_refs`.
pub fn expected_tactic_order() -> Vec<String> {
    let by_stix: BTreeMap<&str, String> = objects("x-mitre-tactic")
        .filter_map(|t| Some((t["id"].as_str()?, attack_id(t)?)))
        .collect();
    let matrices: Vec<&Value> = objects("x-mitre-matrix").filter(|m| is_live(m)).collect();
    assert_eq!(matrices.len(), 1, "Enterprise has one matrix");
    matrices[0]["tactic_refs"]
        .as_array()
        .expect("tactic_refs")
        .iter()
        .map(|r| by_stix[r.as_str().expect("tactic ref")].clone())
        .collect()
}

/// Live technique and sub-technique IDs of a tactic shortname and platform.
pub fn expected_techniques(
    shortname: Option<&str>,
    platform: Option<&str>,
    subtechniques: bool,
) -> BTreeSet<String> {
    objects("attack-pattern")
        .filter(|t| is_live(t))
        .filter(|t| subtechniques || t["x_mitre_is_subtechnique"] != true)
        .filter(|t| {
            shortname.is_none_or(|s| {
                t["kill_chain_phases"]
                    .as_array()
                    .is_some_and(|phases| phases.iter().any(|p| p["phase_name"] == s))
            })
        })
        .filter(|t| {
            platform.is_none_or(|p| {
                t["x_mitre_platforms"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|x| x == p))
            })
        })
        .filter_map(attack_id)
        .collect()
}

/// The IDs of every item of every page of `path`, in order.
async fn walk(app: &TestApp, token: &str, path: &str, limit: usize) -> Vec<String> {
    app.all_pages(token, path, limit)
        .await
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect()
}

/// Every taxonomy assertion, on an app where Enterprise 18.1 is active.
pub async fn check_enterprise_18(app: &TestApp, token: &str) {
    tactics_follow_the_matrix(app, token).await;
    filters_match_the_raw_bundle(app, token).await;
    pagination_walks_everything_once(app, token).await;
    t1574_lists_its_subtechniques(app, token).await;
    revoked_technique_shows_its_replacement(app, token).await;
    bad_filters_are_refused(app, token).await;
}

async fn tactics_follow_the_matrix(app: &TestApp, token: &str) {
    let answer = app
        .get("/api/v1/taxonomy/enterprise-attack/tactics", token)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("tactic list")
        .iter()
        .map(|t| t["id"].as_str().expect("tactic id"))
        .collect();
    let expected = expected_tactic_order();
    assert_eq!(expected.len(), 14);
    assert_eq!(ids, expected, "{}: tactics in matrix order", app.backend);
    assert_eq!(body["meta"]["dataset"]["release"], "18.1");
    assert_eq!(body["meta"]["next_cursor"], Value::Null);

    // The short domain spelling reads the same list.
    let short = app.get("/api/v1/taxonomy/enterprise/tactics", token).await;
    assert_eq!(short.json()["data"], body["data"]);
}

async fn filters_match_the_raw_bundle(app: &TestApp, token: &str) {
    let cases: [(&str, Option<&str>, Option<&str>, bool); 4] = [
        (
            "tactic=TA0003&platform=Linux",
            Some("persistence"),
            Some("Linux"),
            true,
        ),
        ("tactic=execution", Some("execution"), None, true),
        (
            "platform=macOS&subtechniques=false",
            None,
            Some("macOS"),
            false,
        ),
        (
            "tactic=TA0040&platform=Windows",
            Some("impact"),
            Some("Windows"),
            true,
        ),
    ];
    for (query, shortname, platform, subtechniques) in cases {
        let path = format!("/api/v1/taxonomy/enterprise-attack/techniques?{query}");
        let got: BTreeSet<String> = walk(app, token, &path, 500).await.into_iter().collect();
        let expected = expected_techniques(shortname, platform, subtechniques);
        assert!(!expected.is_empty(), "{query} selects something");
        assert_eq!(got, expected, "{}: {query}", app.backend);
    }
}

async fn pagination_walks_everything_once(app: &TestApp, token: &str) {
    let ids = walk(
        app,
        token,
        "/api/v1/taxonomy/enterprise-attack/techniques",
        100,
    )
    .await;
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no item twice across pages");
    assert_eq!(
        ids.len(),
        216 + 475,
        "README counts: techniques + sub-techniques"
    );
    assert_eq!(unique, expected_techniques(None, None, true));

    // The first page without `limit` holds the default 50.
    let first = app
        .get("/api/v1/taxonomy/enterprise-attack/techniques", token)
        .await;
    let body = first.json();
    assert_eq!(body["data"].as_array().map(Vec::len), Some(50));
    assert_eq!(body["meta"]["limit"], 50);
    assert!(body["meta"]["next_cursor"].is_string());
}

async fn t1574_lists_its_subtechniques(app: &TestApp, token: &str) {
    let answer = app
        .get("/api/v1/taxonomy/enterprise-attack/techniques/T1574", token)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["data"]["technique"]["id"], "T1574");

    let subs = body["data"]["subtechniques"]
        .as_array()
        .expect("subtechniques");
    assert!(
        subs.iter()
            .all(|s| s["id"].as_str().is_some_and(|id| id.starts_with("T1574.")))
    );
    let live: BTreeSet<String> = subs
        .iter()
        .filter(|s| s["status"]["revoked"] != true && s["status"]["deprecated"] != true)
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    let expected: BTreeSet<String> = expected_techniques(None, None, true)
        .into_iter()
        .filter(|id| id.starts_with("T1574."))
        .collect();
    assert!(expected.len() >= 10, "T1574 has many sub-techniques");
    assert_eq!(live, expected, "{}", app.backend);
}

/// A revoked technique whose ATT&CK ID no other object reuses, and the ID
/// of the technique its `revoked-by` relationship points to.
fn revoked_with_replacement() -> (String, String) {
    let patterns: Vec<&Value> = objects("attack-pattern").collect();
    let by_stix: BTreeMap<&str, &Value> = patterns
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, *p)))
        .collect();
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for p in &patterns {
        if let Some(id) = attack_id(p) {
            *uses.entry(id).or_default() += 1;
        }
    }
    let mut pairs: Vec<(String, String)> = objects("relationship")
        .filter(|r| r["relationship_type"] == "revoked-by")
        .filter_map(|r| {
            let source = by_stix.get(r["source_ref"].as_str()?)?;
            let target = by_stix.get(r["target_ref"].as_str()?)?;
            let (old, new) = (attack_id(source)?, attack_id(target)?);
            (source["revoked"] == true && uses[&old] == 1 && is_live(target)).then_some((old, new))
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .next()
        .expect("18.1 has revoked techniques")
}

async fn revoked_technique_shows_its_replacement(app: &TestApp, token: &str) {
    let (old, new) = revoked_with_replacement();
    let answer = app
        .get(
            &format!("/api/v1/taxonomy/enterprise-attack/techniques/{old}"),
            token,
        )
        .await;
    assert_eq!(answer.status, 200, "{old}: {}", answer.text());
    let body = answer.json();
    assert_eq!(body["data"]["technique"]["id"], old.as_str());
    assert_eq!(body["data"]["technique"]["status"]["revoked"], true);
    assert_eq!(
        body["data"]["replacement"]["id"],
        new.as_str(),
        "{old} -> {new}"
    );

    // Revoked techniques are listed only when asked for.
    let revoked = walk(
        app,
        token,
        "/api/v1/taxonomy/enterprise-attack/techniques?status=revoked",
        500,
    )
    .await;
    assert!(revoked.contains(&old));
    let live = walk(
        app,
        token,
        "/api/v1/taxonomy/enterprise-attack/techniques",
        500,
    )
    .await;
    assert!(!live.contains(&old));
}

async fn bad_filters_are_refused(app: &TestApp, token: &str) {
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("status=alive", "status"),
        ("subtechniques=maybe", "subtechniques"),
    ] {
        let answer = app
            .get(
                &format!("/api/v1/taxonomy/enterprise-attack/techniques?{query}"),
                token,
            )
            .await;
        assert_eq!(answer.status, 400, "{query}");
        let error = crate::helpers::error_of(&answer);
        assert_eq!(error["code"], "invalid_input");
        assert_eq!(error["details"]["field"], field, "{query}");
    }

    // A typo in a filter name is refused, not ignored.
    let typo = app
        .get(
            "/api/v1/taxonomy/enterprise-attack/techniques?tatic=TA0003",
            token,
        )
        .await;
    assert_eq!(typo.status, 400);
    assert_eq!(crate::helpers::error_of(&typo)["code"], "invalid_input");

    let unknown = app.get("/api/v1/taxonomy/pre-attack/tactics", token).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(
        crate::helpers::error_of(&unknown)["details"]["field"],
        "domain"
    );

    let missing = app
        .get("/api/v1/taxonomy/enterprise-attack/techniques/T9999", token)
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(crate::helpers::error_of(&missing)["code"], "not_found");
}
