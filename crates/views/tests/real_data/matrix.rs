//! Matrix placement, totals, filters, exclusions and anomalies.

use std::collections::{BTreeMap, BTreeSet};

use mapping::{Band, Severity, Source};
use serde_json::Value;
use views::{
    AnomalyWindow, ExclusionWindow, IntensityFormula, MatrixFilter, RollupRow, anomalies,
    daily_counts, matrix,
};

use crate::{day, enterprise_18_1, external_id, raw_18_1, raw_tactic_ids, raw_techniques, row};

fn view(rows: &[RollupRow], filter: &MatrixFilter) -> views::MatrixView {
    matrix(
        enterprise_18_1(),
        rows.iter(),
        filter,
        &IntensityFormula::default(),
    )
}

/// Cell counts by (tactic ID, technique ID).
fn cells(view: &views::MatrixView) -> BTreeMap<(String, String), u64> {
    view.cells
        .iter()
        .map(|c| ((c.tactic.clone(), c.technique.clone()), c.count))
        .collect()
}

/// A live technique of the raw bundle with at least three tactics.
fn multi_tactic_technique() -> (String, Vec<String>) {
    let mut candidates: Vec<(String, Vec<String>)> = raw_techniques()
        .into_iter()
        .filter(|(_, phases)| phases.len() >= 3)
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .next()
        .expect("a multi-tactic technique")
}

#[test]
fn tactic_columns_follow_the_raw_matrix_order() {
    let raw = raw_18_1();
    let tactic_by_stix: BTreeMap<&str, &str> = raw
        .iter()
        .filter(|o| o["type"] == "x-mitre-tactic")
        .filter_map(|o| Some((o["id"].as_str()?, external_id(o)?)))
        .collect();
    let matrix_object = raw
        .iter()
        .find(|o| o["type"] == "x-mitre-matrix")
        .expect("a matrix object");
    let expected: Vec<&str> = matrix_object["tactic_refs"]
        .as_array()
        .expect("tactic_refs")
        .iter()
        .filter_map(Value::as_str)
        .map(|stix| tactic_by_stix[stix])
        .collect();

    // One row per tactic, each for a technique of that tactic, given in
    // reverse matrix order so that sorting is the code's doing.
    let raw_techniques = raw_techniques();
    let ids = raw_tactic_ids();
    let mut rows = Vec::new();
    for tactic_id in expected.iter().rev() {
        let shortname = ids
            .iter()
            .find(|(_, id)| id == tactic_id)
            .map(|(s, _)| s.clone())
            .expect("tactic shortname");
        let mut techniques: Vec<&String> = raw_techniques
            .iter()
            .filter(|(_, phases)| phases.contains(&shortname))
            .map(|(id, _)| id)
            .collect();
        techniques.sort();
        rows.push(row(day(1), tactic_id, techniques[0], 1));
    }

    let view = view(&rows, &MatrixFilter::default());

    let columns: Vec<&str> = view.tactics.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(columns, expected);
    let cell_order: Vec<&str> = view.cells.iter().map(|c| c.tactic.as_str()).collect();
    assert_eq!(cell_order, expected);
}

#[test]
fn a_row_without_tactic_counts_in_each_tactic_once_per_technique() {
    let (technique, phases) = multi_tactic_technique();
    let ids = raw_tactic_ids();
    let rows = vec![row(day(1), "", &technique, 7)];

    let view = view(&rows, &MatrixFilter::default());

    let expected: BTreeMap<(String, String), u64> = phases
        .iter()
        .map(|p| ((ids[p].clone(), technique.clone()), 7))
        .collect();
    assert_eq!(cells(&view), expected);
    assert_eq!(view.techniques.len(), 1);
    assert_eq!(view.technique_count(&technique), 7);
}

#[test]
fn a_row_naming_a_tactic_counts_there_only_and_totals_add_up() {
    let (technique, phases) = multi_tactic_technique();
    let ids = raw_tactic_ids();
    // Named by shortname in one row, by TA ID in another, none in a third.
    let rows = vec![
        row(day(1), &phases[0], &technique, 2),
        row(day(1), &ids[&phases[1]], &technique, 3),
        row(day(2), "", &technique, 4),
    ];

    let view = view(&rows, &MatrixFilter::default());

    let mut expected: BTreeMap<(String, String), u64> = phases
        .iter()
        .map(|p| ((ids[p].clone(), technique.clone()), 4))
        .collect();
    *expected
        .get_mut(&(ids[&phases[0]].clone(), technique.clone()))
        .expect("cell") += 2;
    *expected
        .get_mut(&(ids[&phases[1]].clone(), technique.clone()))
        .expect("cell") += 3;
    assert_eq!(cells(&view), expected);
    assert_eq!(view.technique_count(&technique), 2 + 3 + 4);
}

#[test]
fn sub_techniques_count_apart_from_their_parent() {
    let rows = vec![
        row(day(1), "execution", "T1059", 5),
        row(day(1), "execution", "T1059.001", 3),
        row(day(1), "execution", "t1059.003", 1),
    ];

    let view = view(&rows, &MatrixFilter::default());

    let totals: BTreeMap<&str, u64> = view
        .techniques
        .iter()
        .map(|t| (t.technique.as_str(), t.count))
        .collect();
    assert_eq!(
        totals,
        BTreeMap::from([("T1059", 5), ("T1059.001", 3), ("T1059.003", 1)])
    );
    let order: Vec<(&str, Option<&str>)> = view
        .cells
        .iter()
        .map(|c| (c.technique.as_str(), c.parent.as_deref()))
        .collect();
    assert_eq!(
        order,
        vec![
            ("T1059", None),
            ("T1059.001", Some("T1059")),
            ("T1059.003", Some("T1059"))
        ]
    );
    assert_eq!(view.cells[1].technique_name, "PowerShell");
}

#[test]
fn intensity_and_low_confidence_share_follow_the_formula() {
    let mut high = row(day(1), "execution", "T1059.001", 2);
    high.confidence_sum = 1.5;
    let mut low = row(day(1), "execution", "T1059.001", 2);
    low.severity = Severity::Critical;
    low.band = Band::Low;
    low.source = Source::Ai;
    low.confidence_sum = 0.5;

    let view = view(&[high, low], &MatrixFilter::default());

    // By hand: high weight 2 x 1.5 + critical weight 3 x 0.5.
    let cell = &view.cells[0];
    assert_eq!(cell.count, 4);
    assert!((cell.intensity - 4.5).abs() < 1e-12);
    assert_eq!(cell.low_confidence, 2);
    assert_eq!(cell.low_confidence_share, 0.5);
    assert_eq!((cell.sources.rule, cell.sources.ai), (2, 2));
    assert!(view.formula.contains("severity weight x confidence"));
    assert!(view.formula.contains("critical 3"));
}

#[test]
fn each_filter_dimension_keeps_what_it_names() {
    let base = row(day(5), "execution", "T1059.001", 1);
    let variant = |f: &dyn Fn(&mut RollupRow)| {
        let mut r = base.clone();
        f(&mut r);
        r
    };
    let rows = vec![
        base.clone(),
        variant(&|r| {
            r.day = day(20);
            r.count = 2;
        }),
        variant(&|r| {
            r.source = Source::Ai;
            r.count = 4;
        }),
        variant(&|r| {
            r.severity = Severity::Low;
            r.count = 8;
        }),
        variant(&|r| {
            r.connector = "CrowdStrike".into();
            r.count = 16;
        }),
        variant(&|r| {
            r.platform = Some("Linux".into());
            r.count = 32;
        }),
        variant(&|r| {
            r.platform = None;
            r.count = 64;
        }),
        variant(&|r| {
            r.band = Band::Low;
            r.count = 128;
        }),
    ];
    let total = |filter: MatrixFilter| view(&rows, &filter).technique_count("T1059.001");

    assert_eq!(total(MatrixFilter::default()), 255);
    let time = MatrixFilter {
        from: Some(day(10)),
        to: Some(day(21)),
        ..MatrixFilter::default()
    };
    assert_eq!(total(time), 2);
    let to_is_exclusive = MatrixFilter {
        to: Some(day(20)),
        ..MatrixFilter::default()
    };
    assert_eq!(total(to_is_exclusive), 255 - 2);
    let sources = MatrixFilter {
        sources: vec![Source::Ai],
        ..MatrixFilter::default()
    };
    assert_eq!(total(sources), 4);
    let severities = MatrixFilter {
        severities: vec![Severity::Low, Severity::Critical],
        ..MatrixFilter::default()
    };
    assert_eq!(total(severities), 8);
    let connectors = MatrixFilter {
        connectors: vec!["crowdstrike".into()],
        ..MatrixFilter::default()
    };
    assert_eq!(total(connectors), 16);
    let platforms = MatrixFilter {
        platforms: vec!["linux".into()],
        ..MatrixFilter::default()
    };
    assert_eq!(total(platforms), 32);
    let bands = MatrixFilter {
        bands: vec![Band::Medium, Band::High],
        ..MatrixFilter::default()
    };
    assert_eq!(total(bands), 255 - 128);
}

#[test]
fn exclusion_windows_remove_their_rows_and_are_listed() {
    let mut crowdstrike = row(day(3), "execution", "T1059.001", 10);
    crowdstrike.connector = "crowdstrike".into();
    let rows = vec![
        row(day(1), "execution", "T1059.001", 1),
        row(day(2), "execution", "T1059.001", 2),
        row(day(3), "execution", "T1059.001", 4),
        crowdstrike,
    ];
    let noisy = ExclusionWindow {
        connector: "Sysmon".into(),
        from: day(2),
        to: day(3),
        reason: "agent upgrade storm".into(),
    };
    let unused = ExclusionWindow {
        connector: "zeek".into(),
        from: day(1),
        to: day(9),
        reason: "no zeek rows".into(),
    };
    let filter = MatrixFilter {
        exclusions: vec![noisy.clone(), unused],
        ..MatrixFilter::default()
    };

    let view = view(&rows, &filter);

    assert_eq!(view.technique_count("T1059.001"), 1 + 4 + 10);
    assert_eq!(view.exclusions_applied.len(), 1);
    assert_eq!(view.exclusions_applied[0].window, noisy);
    assert_eq!(view.exclusions_applied[0].mappings_removed, 2);
}

#[test]
fn unknown_techniques_and_tactics_are_reported_not_dropped() {
    let rows = vec![
        row(day(1), "", "T9999", 3),
        row(day(1), "no-such-tactic", "T1059.001", 2),
    ];

    let view = view(&rows, &MatrixFilter::default());

    assert!(view.cells.is_empty());
    let unplaced: BTreeSet<(&str, u64)> = view
        .unplaced
        .iter()
        .map(|u| (u.technique.as_str(), u.count))
        .collect();
    assert_eq!(unplaced, BTreeSet::from([("T9999", 3), ("T1059.001", 2)]));
    assert_eq!(view.technique_count("T9999"), 3);
}

#[test]
fn a_constructed_spike_is_flagged_and_flat_data_is_not() {
    // 14 flat days of 6 on T1059.001, then 40 on day 15; T1003.001 flat at 6
    // throughout, the spike day included.
    let mut rows: Vec<RollupRow> = (1..=14)
        .map(|d| row(day(d), "execution", "T1059.001", 6))
        .collect();
    rows.push(row(day(15), "execution", "T1059.001", 40));
    rows.extend((1..=15).map(|d| row(day(d), "credential-access", "T1003.001", 6)));
    let filter = MatrixFilter {
        from: Some(day(15)),
        to: Some(day(16)),
        ..MatrixFilter::default()
    };
    let release = enterprise_18_1();

    let daily = daily_counts(release, rows.iter(), &filter);
    let flags = anomalies(&daily, &AnomalyWindow::daily(day(16)));
    let mut view = view(&rows, &filter);
    view.attach_anomalies(&flags);

    // By hand: median 6, MAD 0 floored to 1, score 0.6745 x 34.
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].cell.technique, "T1059.001");
    assert_eq!(flags[0].observed, 40);
    assert_eq!(flags[0].baseline, 6.0);
    assert!((flags[0].score - 0.6745 * 34.0).abs() < 1e-9);
    let flagged: Vec<&str> = view
        .cells
        .iter()
        .filter(|c| c.anomaly.is_some())
        .map(|c| c.technique.as_str())
        .collect();
    assert_eq!(flagged, vec!["T1059.001"]);
    assert_eq!(view.technique_count("T1059.001"), 40);
}
