//! Shared helpers: where the real data lives, and an independent reading of
//! raw bundles (a plain `serde_json::Value` walk, no code under test) that
//! expected values are computed from.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use taxonomy::{LoadHints, Release};

/// `NEXUS_ATTACK_SHARED`, else `<workspace root>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("NEXUS_ATTACK_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// Path of a file under `shared/attack`.
pub fn attack_file(name: &str) -> PathBuf {
    shared_dir().join("attack").join(name)
}

/// Every ATT&CK release file shipped in `shared/attack`.
pub const RELEASE_FILES: [&str; 8] = [
    "enterprise-attack-15.1.json.gz",
    "enterprise-attack-16.1.json.gz",
    "enterprise-attack-17.1.json.gz",
    "enterprise-attack-18.1.json.gz",
    "ics-attack-17.1.json.gz",
    "ics-attack-18.1.json.gz",
    "mobile-attack-17.1.json.gz",
    "mobile-attack-18.1.json.gz",
];

/// The raw bytes of a shared release file.
pub fn bytes(name: &str) -> Vec<u8> {
    let path = attack_file(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Parses a shared release file with its file name as the only hint; cached
/// because several tests read the same large releases.
pub fn release(name: &str) -> Release {
    static CACHE: OnceLock<Mutex<HashMap<String, Release>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().unwrap().get(name) {
        return r.clone();
    }
    let hints = LoadHints {
        file_name: Some(name.to_string()),
        ..LoadHints::default()
    };
    let parsed = taxonomy::parse(&bytes(name), &hints)
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    cache
        .lock()
        .unwrap()
        .insert(name.to_string(), parsed.clone());
    parsed
}

/// A shared release file as a `serde_json::Value`, decompressed with
/// `GzDecoder` and `from_reader`: a different path from the parser's. Cached:
/// building a `Value` of Enterprise in a debug build takes seconds.
pub fn raw(name: &str) -> Arc<Value> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(name) {
        return Arc::clone(v);
    }
    let file = std::fs::File::open(attack_file(name)).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    let value: Arc<Value> = Arc::new(serde_json::from_str(&text).unwrap());
    cache
        .lock()
        .unwrap()
        .insert(name.to_string(), Arc::clone(&value));
    value
}

/// The bundle's objects.
pub fn objects(bundle: &Value) -> &Vec<Value> {
    bundle["objects"].as_array().expect("objects array")
}

/// The objects of one STIX type.
pub fn of_type<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
    objects(bundle)
        .iter()
        .filter(|o| o["type"] == kind)
        .collect()
}

/// The ATT&CK external ID of a raw object.
pub fn attack_id(o: &Value) -> String {
    o["external_references"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["source_name"].as_str().is_some_and(|s| {
                ["mitre-attack", "mitre-mobile-attack", "mitre-ics-attack"].contains(&s)
            })
        })
        .and_then(|r| r["external_id"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// `revoked` of a raw object.
pub fn is_revoked(o: &Value) -> bool {
    o["revoked"].as_bool().unwrap_or(false)
}

/// `x_mitre_deprecated` of a raw object.
pub fn is_deprecated(o: &Value) -> bool {
    o["x_mitre_deprecated"].as_bool().unwrap_or(false)
}

/// Neither revoked nor deprecated.
pub fn is_live(o: &Value) -> bool {
    !is_revoked(o) && !is_deprecated(o)
}

/// STIX id -> ATT&CK ID of every object that has one.
pub fn attack_ids_by_stix(bundle: &Value) -> HashMap<String, String> {
    objects(bundle)
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_string(), attack_id(o)))
        .filter(|(_, id)| !id.is_empty())
        .collect()
}

/// Raw relationships of one type, as (source, target) STIX ids.
pub fn relationships(bundle: &Value, kind: &str) -> Vec<(String, String)> {
    of_type(bundle, "relationship")
        .into_iter()
        .filter(|r| r["relationship_type"] == kind && is_live(r))
        .map(|r| {
            (
                r["source_ref"].as_str().unwrap().to_string(),
                r["target_ref"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
