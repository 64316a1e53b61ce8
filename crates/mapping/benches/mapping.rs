//! Decode + map throughput with every Sigma rule of the 2026-01-01 pack
//! loaded, and incident profile recomputation over 10,000 alerts.
//!
//! Run with `cargo bench -p mapping`; criterion prints alerts/s
//! ("thrpt", elements per second).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mapping::alert::{decode_alert_str, read_ndjson};
use mapping::incident::{Incident, profile};
use mapping::rules::RuleSet;
use mapping::sigma::{SigmaOptions, import_path};
use mapping::{BandThresholds, Mapper, Subject};
use taxonomy::LoadHints;

fn shared() -> PathBuf {
    match std::env::var_os("NEXUS_ATTACK_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn bench(c: &mut Criterion) {
    let bytes = std::fs::read(shared().join("attack/enterprise-attack-18.1.json.gz")).unwrap();
    let hints = LoadHints {
        file_name: Some("enterprise-attack-18.1.json.gz".into()),
        ..LoadHints::default()
    };
    let release = taxonomy::parse(&bytes, &hints).unwrap();
    let pack = shared().join("sigma/sigma-rules-c5e6d0ecd.tar.gz");
    let import = import_path(&pack, &release, SigmaOptions::default()).unwrap();
    let rules = RuleSet::new(import.mapping_rules);
    eprintln!("{} rules loaded ({} indexed)", rules.len(), rules.indexed());
    let mapper = Mapper::new(&release, rules, None);

    let text =
        std::fs::read_to_string(shared().join("alerts/sigma-regression-alerts.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();

    let mut group = c.benchmark_group("alerts");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(decode_alert_str(line).unwrap());
            }
        })
    });
    group.bench_function("decode_and_map", |b| {
        b.iter(|| {
            for line in &lines {
                let alert = decode_alert_str(line).unwrap();
                let subject = Subject::alert(alert.source_uid.clone());
                black_box(mapper.map(&subject, &alert, &[]));
            }
        })
    });
    group.finish();

    // An incident of 10,000 alerts, cycling through the regression alerts.
    let sets: Vec<_> = read_ndjson(text.as_bytes())
        .map(|l| l.result.unwrap())
        .map(|a| {
            let (_, set) = mapper.map(&Subject::alert(a.source_uid.clone()), &a, &[]);
            set
        })
        .collect();
    let alerts = (0..10_000)
        .map(|i| {
            let mut set = sets[i % sets.len()].clone();
            set.subject = Subject::alert(format!("alert-{i}"));
            set
        })
        .collect();
    let incident = Incident {
        id: "inc-bench".into(),
        alerts,
        adjustments: vec![],
    };
    let thresholds = BandThresholds::default();
    c.bench_function("incident_profile_10k_alerts", |b| {
        b.iter(|| black_box(profile(&incident, &thresholds)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
