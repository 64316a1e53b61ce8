//! Speed of the suggester on Enterprise 18.1: model build, and suggestions
//! for alert-sized inputs (an alert's title, description, command line,
//! process and event ID, a few hundred bytes). Run with
//! `cargo bench -p suggest`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use suggest::{SuggestInput, Suggester, SuggesterConfig};
use taxonomy::parse::{LoadHints, parse};

fn release() -> taxonomy::Release {
    let shared = std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let bytes = std::fs::read(shared.join("attack/enterprise-attack-18.1.json.gz"))
        .expect("Enterprise 18.1 bundle in the shared folder");
    let hints = LoadHints {
        file_name: Some("enterprise-attack-18.1.json.gz".into()),
        ..LoadHints::default()
    };
    parse(&bytes, &hints).expect("Enterprise 18.1 parses")
}

/// Alert-sized inputs in the shape of the shared Sigma alert feed.
fn alerts() -> Vec<SuggestInput> {
    let alert = |title: &str, description: &str, command_line: &str, process: &str, event: &str| {
        SuggestInput {
            title: Some(title.into()),
            description: Some(description.into()),
            command_line: Some(command_line.into()),
            process_name: Some(process.into()),
            parent_process: Some(r"C:\Windows\explorer.exe".into()),
            event_id: Some(event.into()),
            ..SuggestInput::default()
        }
    };
    vec![
        alert(
            "Scheduled Task Creation Via Schtasks.EXE",
            "Detects the creation of scheduled tasks by user accounts via the schtasks utility.",
            r"schtasks /create /tn Updater /tr C:\Users\Public\u.exe /sc onlogon /ru System",
            r"C:\Windows\System32\schtasks.exe",
            "1",
        ),
        alert(
            "Suspicious Encoded PowerShell Command Line",
            "Detects suspicious powershell process starts with base64 encoded commands.",
            "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA",
            r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
            "4688",
        ),
        alert(
            "LSASS Process Memory Dump Files",
            "Detects creation of files with names used by different memory dumping tools to create a memory dump of the LSASS process memory, which contains user credentials.",
            r"procdump.exe -accepteula -ma lsass.exe C:\Temp\lsass.dmp",
            r"C:\Tools\procdump.exe",
            "11",
        ),
        alert(
            "Shadow Copies Deletion Using Operating Systems Utilities",
            "Shadow Copies deletion using operating systems utilities.",
            "vssadmin.exe delete shadows /all /quiet",
            r"C:\Windows\System32\vssadmin.exe",
            "1",
        ),
    ]
}

fn benches(c: &mut Criterion) {
    let release = release();
    let config = SuggesterConfig::default();

    let mut build = c.benchmark_group("build");
    build.sample_size(10);
    build.bench_function("enterprise-18.1", |b| {
        b.iter(|| Suggester::build(black_box(&release), &config))
    });
    build.finish();

    let suggester = Suggester::build(&release, &config);
    let inputs = alerts();
    let mut suggest = c.benchmark_group("suggest");
    suggest.throughput(Throughput::Elements(inputs.len() as u64));
    suggest.bench_function("alerts", |b| {
        b.iter(|| {
            for input in &inputs {
                black_box(suggester.suggest(black_box(input)));
            }
        })
    });
    suggest.finish();
}

criterion_group!(suggest_benches, benches);
criterion_main!(suggest_benches);
