//! CSV quoting and redaction.

use mapping::{Band, Severity, Source};
use views::{DrilldownRow, Redaction, drilldown_csv, view_csv};

use crate::navigator::small_view;

fn drilldown() -> Vec<DrilldownRow> {
    let base = DrilldownRow {
        alert_id: "alert-1".into(),
        observed_at: "2026-03-01T10:00:00Z".into(),
        host: Some("WS-FINANCE-01".into()),
        user: Some("alice".into()),
        connector: "sysmon".into(),
        technique: "T1059.001".into(),
        tactic: Some("TA0002".into()),
        source: Source::Rule,
        confidence: 0.95,
        band: Band::High,
        severity: Severity::High,
        explanation: "rule \"ps, encoded\"\nmatched CommandLine".into(),
    };
    let mut second = base.clone();
    second.alert_id = "alert-2".into();
    second.user = Some("WS-FINANCE-01".into());
    second.explanation = "=HYPERLINK(\"http://x\")".into();
    vec![base, second]
}

#[test]
fn commas_quotes_and_newlines_are_quoted_and_read_back() {
    let rows = drilldown();

    let text = drilldown_csv(&rows, &Redaction::default()).expect("csv");

    // RFC 4180 by hand: the field is quoted and inner quotes are doubled.
    assert!(
        text.contains("\"rule \"\"ps, encoded\"\"\nmatched CommandLine\""),
        "{text}"
    );
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), 2);
    assert_eq!(&records[0][11], rows[0].explanation.as_str());
    assert_eq!(&records[0][2], "WS-FINANCE-01");
    // A formula is neutralized with a leading quote.
    assert_eq!(&records[1][11], "'=HYPERLINK(\"http://x\")");
}

#[test]
fn redaction_hides_identifiers_with_stable_keyed_hashes() {
    let rows = drilldown();
    let keyed = Redaction {
        host: true,
        user: true,
        alert_id: false,
        key: Some(b"export-key".to_vec()),
    };

    let text = drilldown_csv(&rows, &keyed).expect("csv");

    assert!(
        format!("{keyed:?}").contains("<hidden>"),
        "the key never prints"
    );

    assert!(
        !text.contains("WS-FINANCE-01") && !text.contains("alice"),
        "{text}"
    );
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    let (host_1, host_2) = (&records[0][2], &records[1][2]);
    assert_eq!(host_1, host_2, "same host, same token");
    assert!(host_1.starts_with("h-") && host_1.len() == 18, "{host_1}");
    // Row 2's user has the host's name but is another field: another token.
    assert_ne!(&records[1][3], host_1);
    assert_eq!(&records[0][0], "alert-1");
    let other_key = Redaction {
        key: Some(b"another-key".to_vec()),
        ..keyed.clone()
    };
    let other = drilldown_csv(&rows, &other_key).expect("csv");
    assert!(!other.contains(host_1));

    let plain = Redaction {
        alert_id: true,
        key: None,
        ..keyed
    };
    let text = drilldown_csv(&rows, &plain).expect("csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let first = reader.records().next().expect("row").expect("record");
    assert_eq!(
        (&first[0], &first[2], &first[3]),
        ("redacted", "redacted", "redacted")
    );
}

#[test]
fn view_csv_has_one_row_per_cell_in_matrix_order() {
    let view = small_view();

    let text = view_csv(&view).expect("csv");

    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().expect("header").clone();
    assert_eq!(&header[2], "technique");
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), view.cells.len());
    for (record, cell) in records.iter().zip(&view.cells) {
        assert_eq!(&record[0], cell.tactic.as_str());
        assert_eq!(&record[2], cell.technique.as_str());
        assert_eq!(record[5].parse::<u64>().expect("count"), cell.count);
    }
}
