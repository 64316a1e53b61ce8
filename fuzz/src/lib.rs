//! Shared inputs for the fuzz targets: the real Enterprise release that rule
//! and Sigma parsing validate against, and real alerts that parsed rules are
//! evaluated on. Read once per fuzzing process from `$NEXUS_ATTACK_SHARED`
//! (default: `../shared` next to the checkout), never copied into the repo.

use std::path::PathBuf;
use std::sync::OnceLock;

use mapping::NormalizedAlert;
use taxonomy::{LoadHints, Release};

/// The shared data folder.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("NEXUS_ATTACK_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

/// Enterprise 18.1, parsed once. A fuzzing run without the shared data is
/// meaningless, so a missing file stops the run with the path it looked for.
pub fn release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let path = shared_dir().join("attack/enterprise-attack-18.1.json.gz");
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("fuzzing needs {}: {e}", path.display()));
        let hints = LoadHints {
            file_name: Some("enterprise-attack-18.1.json.gz".into()),
            ..LoadHints::default()
        };
        taxonomy::parse(&bytes, &hints)
            .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
    })
}

/// The shared OCSF regression alerts (every line decodes), for evaluating
/// parsed rules on real field shapes.
pub fn alerts() -> &'static [NormalizedAlert] {
    static ALERTS: OnceLock<Vec<NormalizedAlert>> = OnceLock::new();
    ALERTS.get_or_init(|| {
        let path = shared_dir().join("alerts/sigma-regression-alerts.ndjson");
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("fuzzing needs {}: {e}", path.display()));
        mapping::read_ndjson(std::io::BufReader::new(file))
            .filter_map(|line| line.result.ok())
            .collect()
    })
}
