//! Prints wall time and peak memory of parse + validate (and optionally a
//! diff) so the lead can quote figures without criterion.
//!
//! ```text
//! cargo run --release -p taxonomy --example measure -- FILE [OLD_FILE]
//! ```
//! With one file: parse and validate it, then list every live technique with
//! its tactic names. With two: also parse OLD_FILE and time the diff
//! OLD_FILE -> FILE and its Markdown. Peak memory is the process's `VmHWM`
//! from `/proc/self/status` (Linux), which includes the file bytes read up
//! front. Besides a human line per step, `key=value` lines feed
//! `bench/compare_mitreattack.sh`.

use std::time::Instant;

use taxonomy::{LoadHints, diff, parse, to_markdown, validate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err("usage: measure FILE [OLD_FILE]".into());
    };
    let hints = |p: &str| LoadHints {
        file_name: Some(p.to_string()),
        ..LoadHints::default()
    };

    let bytes = std::fs::read(path)?;
    let started = Instant::now();
    let release = parse(&bytes, &hints(path))?;
    let report = validate(&release);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "parse+validate {path}: {elapsed:.3} s ({} {}, {:?}; {} errors, {} warnings)",
        release.domain,
        release.version,
        release.counts(),
        report.errors().count(),
        report.warnings().count()
    );
    println!("parse_validate_seconds={elapsed:.4}");
    if std::env::var_os("MEASURE_FINDINGS").is_some() {
        for f in &report.findings {
            println!(
                "  {:?} {} {} {}",
                f.severity, f.code, f.attack_id, f.message
            );
        }
    }

    // Every live technique with its tactics' display names, what an analyst
    // view needs; mitreattack-python's equivalent is the slow part there.
    let started = Instant::now();
    let rows: Vec<(&str, Vec<&str>)> = release
        .techniques
        .iter()
        .filter(|t| t.status.is_live())
        .map(|t| {
            let tactics = t
                .tactics
                .iter()
                .filter_map(|s| release.tactic(s).map(|x| x.name.as_str()))
                .collect();
            (t.id.as_str(), tactics)
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "list {} techniques with tactics: {elapsed:.6} s",
        rows.len()
    );
    println!("list_seconds={elapsed:.6}");

    if let Some(old_path) = args.get(1) {
        let old = parse(&std::fs::read(old_path)?, &hints(old_path))?;
        let started = Instant::now();
        let changes = diff(&old, &release);
        let diffed = started.elapsed().as_secs_f64();
        let markdown = to_markdown(&changes);
        let with_markdown = started.elapsed().as_secs_f64();
        println!(
            "diff {old_path} -> {path}: {diffed:.4} s, with Markdown {with_markdown:.4} s \
             ({} techniques added, {} revoked)",
            changes.techniques.changes.added.len(),
            changes.techniques.changes.revoked.len()
        );
        println!("diff_seconds={diffed:.6}");
        println!("diff_markdown_seconds={with_markdown:.6}");
        if std::env::var_os("MEASURE_MARKDOWN").is_some() {
            println!("{markdown}");
        }
    }

    println!("peak_rss_kb={}", peak_rss_kb().unwrap_or(0));
    Ok(())
}

/// `VmHWM` (peak resident set size) in kB, from `/proc/self/status`.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
