//! Tiny hand-written STIX bundles for the checks the official data never
//! trips. Built with `json!` so each test shows exactly what it feeds in.

use serde_json::{Value, json};

/// A tactic object.
pub fn tactic(stix: &str, id: &str, shortname: &str) -> Value {
    json!({
        "type": "x-mitre-tactic", "id": stix, "name": shortname,
        "x_mitre_shortname": shortname, "x_mitre_version": "1.0",
        "modified": "2025-01-01T00:00:00.000Z",
        "external_references": [{"source_name": "mitre-attack", "external_id": id}]
    })
}

/// An attack-pattern under the given tactic shortnames.
pub fn technique(stix: &str, id: &str, tactics: &[&str]) -> Value {
    let phases: Vec<Value> = tactics
        .iter()
        .map(|t| json!({"kill_chain_name": "mitre-attack", "phase_name": t}))
        .collect();
    json!({
        "type": "attack-pattern", "id": stix, "name": format!("Technique {id}"),
        "x_mitre_is_subtechnique": id.contains('.'), "x_mitre_version": "1.0",
        "x_mitre_platforms": ["Windows"], "kill_chain_phases": phases,
        "modified": "2025-01-01T00:00:00.000Z",
        "external_references": [{"source_name": "mitre-attack", "external_id": id}]
    })
}

/// A matrix listing the given tactic STIX ids.
pub fn matrix(tactic_refs: &[&str]) -> Value {
    json!({
        "type": "x-mitre-matrix", "id": "x-mitre-matrix--m", "name": "Enterprise ATT&CK",
        "tactic_refs": tactic_refs, "x_mitre_version": "1.0",
        "external_references": [{"source_name": "mitre-attack", "external_id": "enterprise-attack"}]
    })
}

/// A relationship.
pub fn relationship(kind: &str, source: &str, target: &str) -> Value {
    json!({
        "type": "relationship", "id": format!("relationship--{kind}-{source}-{target}"),
        "relationship_type": kind, "source_ref": source, "target_ref": target
    })
}

/// A STIX 2.0 bundle around the objects.
pub fn bundle(objects: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "bundle", "id": "bundle--test", "spec_version": "2.0", "objects": objects
    }))
    .unwrap()
}

/// A minimal valid release: one tactic, a matrix, a technique and its
/// sub-technique. Tests add the flaw they are about.
pub fn base() -> Vec<Value> {
    vec![
        matrix(&["x-mitre-tactic--exec"]),
        tactic("x-mitre-tactic--exec", "TA0002", "execution"),
        technique("attack-pattern--t1059", "T1059", &["execution"]),
        technique("attack-pattern--t1059-001", "T1059.001", &["execution"]),
        relationship(
            "subtechnique-of",
            "attack-pattern--t1059-001",
            "attack-pattern--t1059",
        ),
    ]
}

/// Parses a test bundle as release 1.0 of the domain its matrix names.
pub fn parse(bytes: &[u8]) -> Result<taxonomy::Release, taxonomy::ParseError> {
    let hints = taxonomy::LoadHints {
        release: Some("1.0".into()),
        ..Default::default()
    };
    taxonomy::parse(bytes, &hints)
}
