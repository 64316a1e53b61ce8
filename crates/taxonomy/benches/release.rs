//! Criterion benchmarks for the issue 2 speed targets: parse + validate
//! Enterprise 18.1 (gzipped, in memory) under 0.3 s, and diff 17.1 -> 18.1
//! (both parsed) under 0.6 s.
//!
//! ```text
//! cargo bench -p taxonomy --bench release
//! ```

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use taxonomy::{LoadHints, diff, parse, validate};

fn shared_file(name: &str) -> (Vec<u8>, LoadHints) {
    let dir = match std::env::var_os("NEXUS_ATTACK_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let path = dir.join("attack").join(name);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let hints = LoadHints {
        file_name: Some(name.to_string()),
        ..LoadHints::default()
    };
    (bytes, hints)
}

fn release_benches(c: &mut Criterion) {
    let (new_bytes, new_hints) = shared_file("enterprise-attack-18.1.json.gz");
    let (old_bytes, old_hints) = shared_file("enterprise-attack-17.1.json.gz");

    c.bench_function("parse+validate enterprise 18.1 (gz)", |b| {
        b.iter(|| {
            let release = parse(black_box(&new_bytes), &new_hints).expect("18.1 parses");
            validate(&release)
        })
    });

    let old = parse(&old_bytes, &old_hints).expect("17.1 parses");
    let new = parse(&new_bytes, &new_hints).expect("18.1 parses");
    c.bench_function("diff enterprise 17.1 -> 18.1", |b| {
        b.iter(|| diff(black_box(&old), black_box(&new)))
    });
}

criterion_group! {
    name = benches;
    // Ten samples keep a run under a minute on the shared 2-core machine.
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8));
    targets = release_benches
}
criterion_main!(benches);
