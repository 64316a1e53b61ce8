//! Incident profiles built from the regression alerts, one incident per host.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;

use mapping::alert::read_ndjson;
use mapping::incident::{Incident, merge, profile, split};
use mapping::rules::RuleSet;
use mapping::{BandThresholds, CanonicalSet, Mapper, Subject};

use crate::{enterprise_18_1, first_pack, raw_rules, shared};

/// (host, alert id, canonical set, technique ids of the alert's rule by hand).
fn mapped_alerts() -> Vec<(String, String, CanonicalSet, BTreeSet<String>)> {
    let raw = raw_rules("sigma-rules-c5e6d0ecd.tar.gz");
    let mapper = Mapper::new(
        enterprise_18_1(),
        RuleSet::new(first_pack().mapping_rules.clone()),
        None,
    );
    let text =
        std::fs::read_to_string(shared().join("alerts/sigma-regression-alerts.ndjson")).unwrap();
    read_ndjson(BufReader::new(text.as_bytes()))
        .map(|line| {
            let alert = line.result.unwrap();
            let id = alert.source_uid.clone();
            let (_, set) = mapper.map(&Subject::alert(id.clone()), &alert, &[]);
            let by_hand = raw[alert.analytic_uid.as_deref().unwrap()].technique_ids();
            (alert.host.clone().unwrap(), id, set, by_hand)
        })
        .collect()
}

fn incident_of(
    id: &str,
    host: &str,
    alerts: &[(String, String, CanonicalSet, BTreeSet<String>)],
) -> Incident {
    Incident {
        id: id.into(),
        alerts: alerts
            .iter()
            .filter(|a| a.0 == host)
            .map(|a| a.2.clone())
            .collect(),
        adjustments: vec![],
    }
}

/// Technique -> number of the host's alerts whose rule carries it, by hand.
fn frequencies_by_hand(
    host: &str,
    alerts: &[(String, String, CanonicalSet, BTreeSet<String>)],
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (h, _, _, techniques) in alerts {
        if h == host {
            for t in techniques {
                *out.entry(t.clone()).or_default() += 1;
            }
        }
    }
    out
}

fn frequencies(incident: &Incident) -> BTreeMap<String, usize> {
    let p = profile(incident, &BandThresholds::default());
    p.techniques()
        .into_iter()
        .map(|t| (t.to_string(), p.technique_frequency(t)))
        .collect()
}

#[test]
fn a_host_incident_has_the_union_of_its_alerts_techniques() {
    let alerts = mapped_alerts();
    let hosts: BTreeSet<&String> = alerts.iter().map(|a| &a.0).collect();
    for host in hosts {
        let incident = incident_of("inc-1", host, &alerts);
        assert_eq!(
            frequencies(&incident),
            frequencies_by_hand(host, &alerts),
            "{host}"
        );
        let p = profile(&incident, &BandThresholds::default());
        assert_eq!(p.alerts, alerts.iter().filter(|a| &a.0 == host).count());
        for e in &p.entries {
            assert_eq!(e.frequency, e.alerts.len());
            assert!(!e.candidates.is_empty());
        }
    }
}

#[test]
fn merge_sums_frequencies_and_split_restores_both_profiles() {
    let alerts = mapped_alerts();
    let by_hand_1 = frequencies_by_hand("host-01.corp.example", &alerts);
    let by_hand_2 = frequencies_by_hand("host-02.corp.example", &alerts);
    let shared_techniques: Vec<&String> = by_hand_1
        .keys()
        .filter(|t| by_hand_2.contains_key(*t))
        .collect();
    assert!(
        !shared_techniques.is_empty(),
        "hosts 1 and 2 share a technique"
    );

    let a = incident_of("inc-a", "host-01.corp.example", &alerts);
    let b = incident_of("inc-b", "host-02.corp.example", &alerts);
    let merged = merge(&a, &b).unwrap();
    let freq = frequencies(&merged);
    for t in by_hand_1.keys().chain(by_hand_2.keys()) {
        let sum = by_hand_1.get(t).unwrap_or(&0) + by_hand_2.get(t).unwrap_or(&0);
        assert_eq!(freq[t], sum, "{t}");
    }
    let union: BTreeSet<&String> = by_hand_1.keys().chain(by_hand_2.keys()).collect();
    assert_eq!(freq.len(), union.len(), "each shared technique kept once");

    let moved: Vec<String> = b.alerts.iter().map(|s| s.subject.id.clone()).collect();
    let (left, right) = split(&merged, &moved, "inc-b2").unwrap();
    assert_eq!(frequencies(&left), by_hand_1);
    assert_eq!(frequencies(&right), by_hand_2);
    assert_eq!(left.id, "inc-a");
    assert_eq!(right.id, "inc-b2");
}
