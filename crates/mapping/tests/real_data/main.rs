//! Integration tests on the real data in the shared folder: ATT&CK 18.1,
//! the two SigmaHQ packs and the Sigma regression alerts.
//!
//! Every expected value is computed here from the raw files with a method of
//! its own (text scanning of the YAML, the release's objects read directly),
//! never by calling the code under test.

mod alerts;
mod contract;
mod incidents;
mod sigma;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use mapping::sigma::{SigmaImport, SigmaOptions, import_path};
use taxonomy::{LoadHints, Release};

/// The shared folder: `NEXUS_ATTACK_SHARED`, else `<workspace root>/../shared`.
pub fn shared() -> PathBuf {
    match std::env::var_os("NEXUS_ATTACK_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// Enterprise ATT&CK 18.1, parsed once.
pub fn enterprise_18_1() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let path = shared().join("attack/enterprise-attack-18.1.json.gz");
        let bytes = std::fs::read(&path).expect("read enterprise 18.1");
        let hints = LoadHints {
            file_name: Some("enterprise-attack-18.1.json.gz".into()),
            ..LoadHints::default()
        };
        taxonomy::parse(&bytes, &hints).expect("parse enterprise 18.1")
    })
}

/// Path of a Sigma pack in the shared folder.
pub fn pack(name: &str) -> PathBuf {
    shared().join("sigma").join(name)
}

/// The 2026-01-01 pack imported with default options, once.
pub fn first_pack() -> &'static SigmaImport {
    static IMPORT: OnceLock<SigmaImport> = OnceLock::new();
    IMPORT.get_or_init(|| {
        import_path(
            &pack("sigma-rules-c5e6d0ecd.tar.gz"),
            enterprise_18_1(),
            SigmaOptions::default(),
        )
        .expect("import first pack")
    })
}

/// One Sigma rule file as the tests read it: by scanning text lines, not by
/// parsing YAML.
#[derive(Debug, Clone)]
pub struct RawRule {
    /// `id:` at the top level.
    pub id: String,
    /// `status:` at the top level (comment stripped).
    pub status: String,
    /// Every `- attack.*` line, lower case, deduplicated.
    pub attack_tags: BTreeSet<String>,
}

impl RawRule {
    /// Technique ids of the `attack.tNNNN[.NNN]` tags, upper case.
    pub fn technique_ids(&self) -> BTreeSet<String> {
        let re = regex::Regex::new(r"^attack\.(t\d{4}(\.\d{3})?)$").unwrap();
        self.attack_tags
            .iter()
            .filter_map(|t| re.captures(t).map(|c| c[1].to_uppercase()))
            .collect()
    }

    /// Skipped by a default import.
    pub fn retired(&self) -> bool {
        self.status == "deprecated" || self.status == "unsupported"
    }
}

/// Every `.yml` rule of a pack, keyed by id, read by line scanning (once per pack).
pub fn raw_rules(name: &str) -> &'static BTreeMap<String, RawRule> {
    static FIRST: OnceLock<BTreeMap<String, RawRule>> = OnceLock::new();
    static SECOND: OnceLock<BTreeMap<String, RawRule>> = OnceLock::new();
    let cell = match name {
        "sigma-rules-c5e6d0ecd.tar.gz" => &FIRST,
        "sigma-rules-8eaafff1f.tar.gz" => &SECOND,
        other => panic!("no cache for pack {other}"),
    };
    cell.get_or_init(|| scan_pack(name))
}

fn scan_pack(name: &str) -> BTreeMap<String, RawRule> {
    let file = std::fs::File::open(pack(name)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let top = |line: &str, key: &str| -> Option<String> {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let value = rest.split(" #").next().unwrap_or("").trim();
        Some(value.trim_matches(|c| c == '\'' || c == '"').to_string())
    };
    let tag = regex::Regex::new(r"^\s+-\s+'?(attack\.[A-Za-z0-9._-]+)'?\s*(#.*)?$").unwrap();
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yml") {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        let mut rule = RawRule {
            id: String::new(),
            status: String::new(),
            attack_tags: BTreeSet::new(),
        };
        let mut in_tags = false;
        for line in text.lines() {
            if let Some(v) = top(line, "id") {
                rule.id = v;
            }
            if let Some(v) = top(line, "status") {
                rule.status = v;
            }
            if !line.starts_with(' ') && !line.starts_with('-') {
                in_tags = line.starts_with("tags:");
            }
            if in_tags && let Some(c) = tag.captures(line) {
                rule.attack_tags.insert(c[1].to_lowercase());
            }
        }
        assert!(!rule.id.is_empty(), "{name} has an id");
        out.insert(rule.id.clone(), rule);
    }
    out
}
