//! Loading Enterprise 18.1 into a fresh SQLite file: the insert alone (the
//! release parsed beforehand) and parse + insert together, as
//! `dataset load` does. Target: under 1.5 s on the team's 2-core machine.
//!
//! `cargo bench -p store --bench load`

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use store::testing::TestDatabase;
use store::{DatasetId, NewDataset, Store};
use taxonomy::{LoadHints, Release};

const FILE: &str = "enterprise-attack-18.1.json.gz";

fn bundle() -> Vec<u8> {
    let shared = std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    std::fs::read(shared.join("attack").join(FILE)).expect("the shared Enterprise 18.1 bundle")
}

fn parse(bytes: &[u8]) -> Release {
    let hints = LoadHints {
        file_name: Some(FILE.into()),
        ..LoadHints::default()
    };
    taxonomy::parse(bytes, &hints).expect("Enterprise 18.1 parses")
}

async fn insert(store: &Store, release: &Release, bytes: &[u8]) {
    let mut tx = store.begin_all().await.expect("begin");
    tx.insert_dataset(&NewDataset {
        id: DatasetId::generate(),
        release,
        bundle: bytes,
        source: FILE.into(),
        loaded_by: "bench".into(),
        loaded_at: store::now(),
        change_summary: None,
    })
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
}

fn load(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let bytes = bundle();
    let release = parse(&bytes);
    let fresh_store = || {
        let db = TestDatabase::sqlite();
        let store = runtime.block_on(db.store());
        (db, store)
    };

    let mut group = c.benchmark_group("sqlite load enterprise 18.1");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("insert parsed release", |b| {
        b.iter_batched(
            fresh_store,
            |(db, store)| {
                runtime.block_on(insert(&store, &release, &bytes));
                (db, store)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("parse and insert", |b| {
        b.iter_batched(
            fresh_store,
            |(db, store)| {
                let release = parse(&bytes);
                runtime.block_on(insert(&store, &release, &bytes));
                (db, store)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
