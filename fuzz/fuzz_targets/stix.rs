//! `taxonomy::parse` on arbitrary bytes, plain and gzipped.
//!
//! The first byte picks the variant: even feeds the rest as is (plain JSON,
//! or a corrupt gzip stream when it starts with the magic), odd gzips the
//! rest first so the fuzzer reaches the JSON reader behind a valid gzip
//! stream. The second byte picks which identity hints the caller gives.

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use taxonomy::{Domain, LoadHints};

/// Small cap on the decompressed size: keeps a gzip bomb within the RSS
/// limit and exercises the `TooLarge` path.
const LIMIT: u64 = 4 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let [mode, hint, rest @ ..] = data else {
        return;
    };
    let hints = match hint % 4 {
        0 => LoadHints::default(),
        1 => LoadHints {
            file_name: Some("enterprise-attack-18.1.json.gz".into()),
            ..LoadHints::default()
        },
        2 => LoadHints {
            release: Some("17.1".into()),
            domain: Some(Domain::Ics),
            ..LoadHints::default()
        },
        _ => LoadHints {
            file_name: Some("https://example.invalid/x/mobile-attack-16.1.json".into()),
            release: Some("16.1".into()),
            domain: Some(Domain::Mobile),
        },
    };

    let input = if mode % 2 == 1 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if gz.write_all(rest).is_err() {
            return;
        }
        match gz.finish() {
            Ok(bytes) => bytes,
            Err(_) => return,
        }
    } else {
        rest.to_vec()
    };

    if let Ok(release) = taxonomy::parse_with_limit(&input, &hints, LIMIT) {
        // What loads must also validate and diff against itself without a
        // panic, as `dataset load` and `dataset validate` do next.
        let _ = taxonomy::validate(&release);
        let diff = taxonomy::diff(&release, &release);
        let _ = taxonomy::to_markdown(&diff);
    }
});
