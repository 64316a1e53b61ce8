//! Bad input gets a structured error that says what is wrong and where.

use std::io::Write;

use serde_json::json;
use taxonomy::{Domain, LoadHints, ParseError};

use crate::bundles::{base, bundle};
use crate::util;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn hints(file_name: &str) -> LoadHints {
    LoadHints {
        file_name: Some(file_name.into()),
        ..LoadHints::default()
    }
}

#[test]
fn truncated_gzip_of_a_real_release_is_a_gzip_error() {
    let bytes = util::bytes("enterprise-attack-18.1.json.gz");
    let cut = &bytes[..bytes.len() / 2];
    let err = taxonomy::parse(cut, &hints("enterprise-attack-18.1.json.gz")).unwrap_err();
    match &err {
        ParseError::Gzip { decompressed, .. } => assert!(*decompressed > 0),
        other => panic!("expected a gzip error, got {other}"),
    }
    assert!(err.to_string().contains("truncated or corrupt"), "{err}");
}

#[test]
fn gzip_cut_inside_its_trailer_is_still_an_error() {
    let gz = gzip(&bundle(base()));
    for cut in [gz.len() - 1, gz.len() - 6, 12] {
        let err = taxonomy::parse(&gz[..cut], &hints("enterprise-attack-1.0.json.gz")).unwrap_err();
        assert!(
            matches!(err, ParseError::Gzip { .. }),
            "cut at {cut}: {err}"
        );
    }
    // The whole stream is fine.
    assert!(taxonomy::parse(&gz, &hints("enterprise-attack-1.0.json.gz")).is_ok());
}

#[test]
fn invalid_json_reports_line_column_and_offset() {
    let text = b"{\"type\": \"bundle\",\n  \"objects\": [}\n";
    let err = taxonomy::parse(text, &hints("enterprise-attack-1.0.json")).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("invalid JSON at line 2, column 15 (byte 33): "),
        "{shown}"
    );
    assert!(
        !shown.contains("at line 2 column"),
        "position printed twice: {shown}"
    );
    match err {
        ParseError::Json {
            line,
            column,
            offset,
            ..
        } => {
            // The `}` is on line 2, column 15, byte 33 (counted by hand).
            assert_eq!((line, column, offset), (2, 15, 33));
            assert_eq!(text[offset], b'}');
        }
        other => panic!("expected a JSON error, got {other}"),
    }
}

#[test]
fn json_cut_short_is_a_json_error() {
    let full = bundle(base());
    let err = taxonomy::parse(&full[..full.len() - 10], &hints("x.json")).unwrap_err();
    assert!(matches!(err, ParseError::Json { .. }), "{err}");
    let err = taxonomy::parse(b"", &hints("x.json")).unwrap_err();
    assert!(matches!(err, ParseError::Json { .. }), "{err}");
}

#[test]
fn json_that_is_not_a_bundle_is_refused() {
    for text in [
        json!([1, 2, 3]),
        json!({"type": "indicator", "objects": []}),
        json!({"objects": []}),
        json!({"type": "bundle"}),
        json!({"type": "bundle", "objects": {"a": 1}}),
        json!({"type": "bundle", "objects": [{"type": "attack-pattern"}]}),
    ] {
        let bytes = serde_json::to_vec(&text).unwrap();
        let err = taxonomy::parse(&bytes, &hints("enterprise-attack-1.0.json")).unwrap_err();
        assert!(
            matches!(err, ParseError::NotABundle { .. }),
            "{text}: {err}"
        );
    }
}

#[test]
fn a_malformed_field_of_a_kept_object_names_the_object_and_field() {
    let mut objects = base();
    objects[2]["kill_chain_phases"] = json!("execution");
    let err = taxonomy::parse(&bundle(objects), &hints("enterprise-attack-1.0.json")).unwrap_err();
    assert!(
        matches!(&err, ParseError::InvalidObject { object, field, .. }
            if object == "attack-pattern--t1059" && *field == "kill_chain_phases"),
        "{err}"
    );

    // The same flaw on an object the model does not keep is no reason to refuse.
    let mut objects = base();
    objects.push(json!({"type": "malware", "id": "malware--x", "x_mitre_platforms": "Windows"}));
    assert!(taxonomy::parse(&bundle(objects), &hints("enterprise-attack-1.0.json")).is_ok());
}

#[test]
fn an_unknown_domain_is_a_structured_error() {
    // From the file name, when the bundle says nothing.
    let no_matrix = bundle(vec![json!({"type": "identity", "id": "identity--x"})]);
    let err = taxonomy::parse(&no_matrix, &hints("pre-attack-10.0.json")).unwrap_err();
    assert!(
        matches!(&err, ParseError::UnknownDomain { value, .. } if value == "pre-attack"),
        "{err}"
    );

    // From the bundle's matrix.
    let mut objects = base();
    objects[0]["external_references"][0]["external_id"] = json!("pre-attack");
    let err = taxonomy::parse(&bundle(objects), &LoadHints::default()).unwrap_err();
    assert!(
        matches!(&err, ParseError::UnknownDomain { value, .. } if value == "pre-attack"),
        "{err}"
    );
    assert!(err.to_string().contains("x-mitre-matrix"), "{err}");
}

#[test]
fn a_bundle_saying_nothing_about_its_domain_takes_the_callers() {
    let no_matrix = bundle(vec![json!({"type": "identity", "id": "identity--x"})]);
    let err = taxonomy::parse(&no_matrix, &LoadHints::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::MissingIdentity {
                field: taxonomy::IdentityField::Domain
            }
        ),
        "{err}"
    );
    let hints = LoadHints {
        domain: Some(Domain::Ics),
        release: Some("v2.0".into()),
        file_name: None,
    };
    let release = taxonomy::parse(&no_matrix, &hints).unwrap();
    assert_eq!(
        (release.domain, release.version.as_str()),
        (Domain::Ics, "2.0")
    );
}

/// A gzip stream of `plain_len` spaces, written in 1 MiB chunks so the test
/// never holds the plain bytes.
fn gzip_of_spaces(plain_len: u64) -> Vec<u8> {
    let chunk = vec![b' '; 1 << 20];
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut left = plain_len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        encoder.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    encoder.finish().unwrap()
}

#[test]
fn gzip_bomb_is_refused_at_the_default_cap_of_256_mib() {
    // 1 MiB past 256 MiB: one byte over would do, the margin keeps the
    // intent obvious.
    let bomb = gzip_of_spaces(257 * 1024 * 1024);
    assert!(bomb.len() < 1024 * 1024, "the bomb is small on disk");
    let err = taxonomy::parse(&bomb, &hints("enterprise-attack-1.0.json.gz")).unwrap_err();
    match err {
        ParseError::TooLarge { limit } => assert_eq!(limit, 268_435_456),
        other => panic!("expected too large, got {other}"),
    }
}

#[test]
fn gzip_bomb_is_refused_at_a_configured_cap() {
    let bomb = gzip_of_spaces(64 * 1024 * 1024);
    let err = taxonomy::parse_with_limit(&bomb, &hints("enterprise-attack-1.0.json.gz"), 1 << 20)
        .unwrap_err();
    match &err {
        ParseError::TooLarge { limit } => assert_eq!(*limit, 1_048_576),
        other => panic!("expected too large, got {other}"),
    }
    assert!(err.to_string().contains("1048576 bytes"), "{err}");

    // A real bundle under the same cap still parses: the cap is on size only.
    let small = gzip(&bundle(base()));
    assert!(
        taxonomy::parse_with_limit(&small, &hints("enterprise-attack-1.0.json.gz"), 1 << 20)
            .is_ok()
    );
}

#[test]
fn not_a_bundle_without_position_says_no_line_0_column_0() {
    let err = taxonomy::parse(
        br#"{"type": "indicator"}"#,
        &hints("enterprise-attack-1.0.json"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a STIX bundle: top-level `type` is `indicator`, expected `bundle`"
    );
}
