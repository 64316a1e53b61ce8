//! Alert decoding: the NDJSON reader over arbitrary bytes, and each JSON
//! line decoded as OCSF, ECS and native whatever its detected format (the
//! ingest API lets the caller force a format).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping::alert::decode_alert_as;
use mapping::{AlertFormat, read_ndjson};

fuzz_target!(|data: &[u8]| {
    let mut previous = 0;
    for line in read_ndjson(data) {
        // Line numbers are 1-based and strictly increasing (blank lines are
        // skipped, not renumbered).
        assert!(line.line > previous, "line {} after {previous}", line.line);
        previous = line.line;
    }

    for text in data.split(|&b| b == b'\n') {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(text) else {
            continue;
        };
        for format in [AlertFormat::Ocsf, AlertFormat::Ecs, AlertFormat::Native] {
            if let Ok(alert) = decode_alert_as(&value, format) {
                assert_eq!(alert.format, format);
                assert!(!alert.source_uid.is_empty(), "decoded alert without a uid");
            }
        }
    }
});
