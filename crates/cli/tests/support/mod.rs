//! Set-up shared by the CLI's integration tests: the shared data folder and
//! a run of the real binary against one database.
//!
//! Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The shared real data (`NEXUS_ATTACK_SHARED`, or `../shared` beside the
/// repository).
pub fn shared() -> PathBuf {
    std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// A file of the shared data, as an argument.
pub fn path(rel: &str) -> String {
    shared().join(rel).display().to_string()
}

/// What one run of the binary printed.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON; the run must have succeeded.
    pub fn json(&self) -> Value {
        assert!(self.ok, "command failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// A failure with one line on stderr carrying `code`.
    pub fn fails_with(&self, code: &str) {
        assert!(!self.ok, "expected a failure, got: {}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(lines[0].starts_with("error"), "{}", lines[0]);
        assert!(lines[0].contains(code), "`{code}` in: {}", lines[0]);
    }
}

/// Runs the binary against database `db`, with none of the environment
/// that could point it elsewhere (another database, an AI service) or
/// change what it prints.
pub fn run(db: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_nexus-attack"))
        .arg("--database")
        .arg(db)
        .args(args)
        .env_remove("NEXUS_ATTACK_DATABASE")
        .env_remove("NEXUS_ATTACK_LOG")
        .env_remove("NEXUS_ATTACK_LOG_FORMAT")
        .env_remove("NEXUS_ATTACK_AI_URL")
        .output()
        .expect("run nexus-attack");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
