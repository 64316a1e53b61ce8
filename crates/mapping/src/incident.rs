//! Incident ATT&CK profiles: the aggregate of the contributing alerts'
//! canonical mappings, with lineage, lead adjustments, merge and split.
//!
//! # Aggregation
//!
//! For each (technique, tactic) pair any contributing alert carries:
//!
//! - **frequency** is the number of contributing alerts whose canonical set
//!   holds the pair (the technique set itself is deduplicated);
//! - **confidence** is a noisy-OR over *independent witnesses*:
//!   `1 - Π (1 - c_p)`, where each producer `p` (a rule version, the vendor's
//!   own declaration, a model version, an override) contributes the highest
//!   confidence it gave the pair on any alert. Alerts mapped by the same rule
//!   are not independent evidence that the mapping is right (the rule is the
//!   same), so repeating one rule's alert does not inflate the confidence,
//!   while two different rules agreeing does;
//! - **cap**: a pair supported only by AI candidates is capped at the highest
//!   single AI confidence behind it. Corroboration among guesses must not lift
//!   an AI-only mapping out of review; a rule or a person is needed for that.
//!   (Capping every pair by its *weakest* source instead would make an AI
//!   suggestion that agrees with a rule lower the rule's confidence.)
//! - **sources** is the set of winning sources behind the pair; **alerts**
//!   and **candidates** are the lineage back to every contributing alert and
//!   candidate.
//!
//! # Adjustments, merge and split
//!
//! Lead adjustments are [`Override`]s whose subject is the incident; the
//! approved ones are applied over the computed profile in approval order, so
//! the last approved wins and they survive every recomputation. On a merge
//! the surviving incident keeps its adjustments and takes over the absorbed
//! incident's (re-subjected, their approval times unchanged, so their relative
//! order is kept). On a split the adjustments stay with the incident that
//! keeps its identity; the new incident starts without any.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use taxonomy::{TacticId, TechniqueId};

use crate::candidate::Subject;
use crate::confidence::{Band, BandThresholds, Confidence, Source};
use crate::overrides::{Override, OverrideAction, approved_in_order};
use crate::precedence::CanonicalSet;

/// One entry of an incident profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileEntry {
    /// The technique.
    pub technique: TechniqueId,
    /// The tactic.
    pub tactic: Option<TacticId>,
    /// Contributing alerts that carry the pair.
    pub frequency: usize,
    /// Aggregated confidence.
    pub confidence: Confidence,
    /// Its band.
    pub band: Band,
    /// Sources behind the pair.
    pub sources: BTreeSet<Source>,
    /// Contributing alert ids, sorted.
    pub alerts: Vec<String>,
    /// Candidate ids behind the pair on those alerts.
    pub candidates: Vec<String>,
    /// Ids of the lead adjustments that shaped the entry, in order applied.
    pub adjustments: Vec<String>,
}

/// An incident's ATT&CK profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentProfile {
    /// The incident.
    pub incident: String,
    /// Entries ordered by technique, then tactic.
    pub entries: Vec<ProfileEntry>,
    /// Number of contributing alerts.
    pub alerts: usize,
}

impl IncidentProfile {
    /// The distinct techniques of the profile.
    pub fn techniques(&self) -> BTreeSet<&TechniqueId> {
        self.entries.iter().map(|e| &e.technique).collect()
    }

    /// The frequency of a technique over all its tactics: contributing alerts
    /// that carry it at least once.
    pub fn technique_frequency(&self, technique: &TechniqueId) -> usize {
        self.entries
            .iter()
            .filter(|e| &e.technique == technique)
            .flat_map(|e| e.alerts.iter())
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// An incident as the profile needs it: its alerts' canonical sets and its
/// lead adjustments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The incident id.
    pub id: String,
    /// Canonical sets of the contributing alerts (subject = the alert).
    pub alerts: Vec<CanonicalSet>,
    /// Lead adjustments (overrides whose subject is this incident).
    pub adjustments: Vec<Override>,
}

/// Why a merge or split is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncidentError {
    /// A split side would be empty.
    #[error(
        "splitting incident {incident} needs alerts on both sides ({moved} of {total} selected)"
    )]
    EmptySide {
        /// The incident.
        incident: String,
        /// Alerts selected to move.
        moved: usize,
        /// Alerts in the incident.
        total: usize,
    },
    /// A split names alerts the incident does not hold.
    #[error("incident {incident} does not hold alert(s) {}", alerts.join(", "))]
    NotInIncident {
        /// The incident.
        incident: String,
        /// The missing alert ids.
        alerts: Vec<String>,
    },
    /// Merging an incident with itself.
    #[error("cannot merge incident {0} with itself")]
    SelfMerge(String),
}

type Key = (TechniqueId, Option<TacticId>);

/// One canonical entry of a contributing alert, borrowed: everything the
/// aggregation reads of it. `I` is how the entry holds its ids: owned
/// strings in a [`CanonicalSet`], text borrowed from storage when the
/// caller reads the entries without building sets.
#[derive(Debug, Clone, Copy)]
pub struct AlertEntry<'i, I> {
    /// The alert carrying the entry.
    pub alert: &'i str,
    /// The technique.
    pub technique: &'i TechniqueId,
    /// The tactic.
    pub tactic: Option<&'i TacticId>,
    /// The winning source.
    pub source: Source,
    /// The winning confidence.
    pub confidence: Confidence,
    /// Candidate ids behind the entry.
    pub candidates: &'i [I],
    /// Producer keys of the entry: who independently produced it (a rule
    /// version, the vendor, a model version, an override).
    pub producers: &'i [I],
}

/// What the alerts say about one pair. It borrows from the entries: a
/// 10,000-alert incident feeds tens of thousands of (alert, entry) rows,
/// and copying each id into the accumulator cost more than the arithmetic.
#[derive(Default)]
struct Acc<'i> {
    /// Contributing alerts, as they come; sorted and deduplicated at the end.
    alerts: Vec<&'i str>,
    candidates: Vec<&'i str>,
    sources: BTreeSet<Source>,
    by_producer: BTreeMap<Producer<'i>, f64>,
    max_ai: f64,
}

/// A witness of a pair: a producer key, or for an entry without producer
/// keys, the alert itself, whose key is `alert:<id>`. Compared as that key
/// text, so witnesses are told apart and multiplied in the same order as
/// when every key was a built string.
#[derive(Debug, Clone, Copy)]
enum Producer<'i> {
    Key(&'i str),
    Alert(&'i str),
}

/// The key prefix of [`Producer::Alert`].
const ALERT_PREFIX: &str = "alert:";

/// Orders `key` against the key `alert:<alert>` without building it.
fn cmp_key_with_alert(key: &str, alert: &str) -> std::cmp::Ordering {
    let key = key.as_bytes();
    let prefix = ALERT_PREFIX.as_bytes();
    if key.len() < prefix.len() {
        // A key shorter than the prefix sorts by the prefix's first bytes,
        // and before it when it is one of its beginnings.
        return key.cmp(&prefix[..key.len()]).then(std::cmp::Ordering::Less);
    }
    key[..prefix.len()]
        .cmp(prefix)
        .then_with(|| key[prefix.len()..].cmp(alert.as_bytes()))
}

impl Ord for Producer<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Producer::Key(a), Producer::Key(b)) | (Producer::Alert(a), Producer::Alert(b)) => {
                a.cmp(b)
            }
            (Producer::Key(key), Producer::Alert(alert)) => cmp_key_with_alert(key, alert),
            (Producer::Alert(alert), Producer::Key(key)) => {
                cmp_key_with_alert(key, alert).reverse()
            }
        }
    }
}

impl PartialOrd for Producer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Producer<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Producer<'_> {}

/// Computes the profile of an incident (see the module documentation).
pub fn profile(incident: &Incident, thresholds: &BandThresholds) -> IncidentProfile {
    let alerts: BTreeSet<&str> = incident
        .alerts
        .iter()
        .map(|set| set.subject.id.as_str())
        .collect();
    let entries = incident.alerts.iter().flat_map(|set| {
        set.entries.iter().map(|e| AlertEntry {
            alert: set.subject.id.as_str(),
            technique: &e.technique,
            tactic: e.tactic.as_ref(),
            source: e.source,
            confidence: e.confidence,
            candidates: e.candidates.as_slice(),
            producers: e.producers.as_slice(),
        })
    });
    profile_of_entries(
        &incident.id,
        alerts.len(),
        entries,
        &incident.adjustments,
        thresholds,
    )
}

/// [`profile`] over the canonical entries of `alerts` contributing alerts,
/// read without building their canonical sets (the same rule, one
/// implementation). `adjustments` are the incident's lead adjustments.
pub fn profile_of_entries<'i, I: AsRef<str> + 'i>(
    incident: &str,
    alerts: usize,
    entries: impl IntoIterator<Item = AlertEntry<'i, I>>,
    adjustments: &[Override],
    thresholds: &BandThresholds,
) -> IncidentProfile {
    let mut acc: BTreeMap<(&TechniqueId, Option<&TacticId>), Acc> = BTreeMap::new();
    for e in entries {
        let a = acc.entry((e.technique, e.tactic)).or_default();
        a.alerts.push(e.alert);
        a.candidates.extend(e.candidates.iter().map(|c| c.as_ref()));
        a.sources.insert(e.source);
        let c = e.confidence.value();
        if e.source == Source::Ai {
            a.max_ai = a.max_ai.max(c);
        }
        // A set built without producer keys: count the alert as its own witness.
        let alone = e.producers.is_empty().then_some(Producer::Alert(e.alert));
        let keyed = e.producers.iter().map(|p| Producer::Key(p.as_ref()));
        for p in alone.into_iter().chain(keyed) {
            let best = a.by_producer.entry(p).or_insert(0.0);
            *best = best.max(c);
        }
    }

    let mut entries: BTreeMap<Key, ProfileEntry> = acc
        .into_iter()
        .map(|((technique, tactic), a)| {
            let key = (technique.clone(), tactic.cloned());
            let miss: f64 = a.by_producer.values().map(|c| 1.0 - c).product();
            let mut value = 1.0 - miss;
            if a.sources.iter().all(|s| *s == Source::Ai) {
                value = value.min(a.max_ai);
            }
            let confidence = Confidence::saturating(value);
            let mut alerts = a.alerts;
            alerts.sort_unstable();
            alerts.dedup();
            let mut candidates = a.candidates;
            candidates.sort_unstable();
            candidates.dedup();
            let entry = ProfileEntry {
                technique: key.0.clone(),
                tactic: key.1.clone(),
                frequency: alerts.len(),
                confidence,
                band: thresholds.band(confidence),
                sources: a.sources,
                alerts: alerts.into_iter().map(str::to_string).collect(),
                candidates: candidates.into_iter().map(str::to_string).collect(),
                adjustments: Vec::new(),
            };
            (key, entry)
        })
        .collect();

    apply_adjustments(&mut entries, incident, adjustments, thresholds);
    IncidentProfile {
        incident: incident.to_string(),
        entries: entries.into_values().collect(),
        alerts,
    }
}

fn apply_adjustments(
    entries: &mut BTreeMap<Key, ProfileEntry>,
    incident: &str,
    adjustments: &[Override],
    thresholds: &BandThresholds,
) {
    let subject = Subject::incident(incident);
    for o in approved_in_order(&subject, adjustments) {
        let remove = match o.action {
            OverrideAction::Add => None,
            OverrideAction::Remove => Some(&o.target),
            OverrideAction::Replace => o.replaces.as_ref(),
        };
        if let Some(pattern) = remove {
            entries.retain(|(technique, tactic), _| !pattern.covers(technique, tactic.as_ref()));
        }
        if o.action == OverrideAction::Remove {
            continue;
        }
        let key = (o.target.technique.clone(), o.target.tactic.clone());
        // An added pair that alerts also carry keeps their frequency and lineage.
        let entry = entries.entry(key).or_insert_with(|| ProfileEntry {
            technique: o.target.technique.clone(),
            tactic: o.target.tactic.clone(),
            frequency: 0,
            confidence: o.confidence,
            band: thresholds.band(o.confidence),
            sources: BTreeSet::new(),
            alerts: Vec::new(),
            candidates: Vec::new(),
            adjustments: Vec::new(),
        });
        entry.confidence = o.confidence;
        entry.band = thresholds.band(o.confidence);
        entry.sources.insert(Source::Manual);
        entry.adjustments.push(o.id.clone());
    }
}

/// Merges `absorbed` into `survivor`: the union of their alerts (an alert in
/// both counts once) and of their adjustments, under the survivor's id.
pub fn merge(survivor: &Incident, absorbed: &Incident) -> Result<Incident, IncidentError> {
    if survivor.id == absorbed.id {
        return Err(IncidentError::SelfMerge(survivor.id.clone()));
    }
    let mut alerts = survivor.alerts.clone();
    let held: BTreeSet<&str> = survivor
        .alerts
        .iter()
        .map(|s| s.subject.id.as_str())
        .collect();
    alerts.extend(
        absorbed
            .alerts
            .iter()
            .filter(|s| !held.contains(s.subject.id.as_str()))
            .cloned(),
    );
    let mut adjustments = survivor.adjustments.clone();
    let subject = Subject::incident(survivor.id.clone());
    adjustments.extend(absorbed.adjustments.iter().map(|o| Override {
        subject: subject.clone(),
        ..o.clone()
    }));
    Ok(Incident {
        id: survivor.id.clone(),
        alerts,
        adjustments,
    })
}

/// Splits the alerts `moved` out of `incident` into a new incident `new_id`;
/// answers (the remaining incident, the new one). Both sides must keep at
/// least one alert, and every moved alert must belong to the incident.
pub fn split(
    incident: &Incident,
    moved: &[String],
    new_id: &str,
) -> Result<(Incident, Incident), IncidentError> {
    let held: BTreeSet<&str> = incident
        .alerts
        .iter()
        .map(|s| s.subject.id.as_str())
        .collect();
    let missing: Vec<String> = moved
        .iter()
        .filter(|id| !held.contains(id.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(IncidentError::NotInIncident {
            incident: incident.id.clone(),
            alerts: missing,
        });
    }
    let moving: BTreeSet<&str> = moved.iter().map(String::as_str).collect();
    let (out, keep): (Vec<CanonicalSet>, Vec<CanonicalSet>) = incident
        .alerts
        .iter()
        .cloned()
        .partition(|s| moving.contains(s.subject.id.as_str()));
    if out.is_empty() || keep.is_empty() {
        return Err(IncidentError::EmptySide {
            incident: incident.id.clone(),
            moved: out.len(),
            total: incident.alerts.len(),
        });
    }
    let remaining = Incident {
        id: incident.id.clone(),
        alerts: keep,
        adjustments: incident.adjustments.clone(),
    };
    let created = Incident {
        id: new_id.to_string(),
        alerts: out,
        adjustments: Vec::new(),
    };
    Ok((remaining, created))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overrides::OverrideStatus;
    use crate::precedence::tests::{cand, override_of};
    use crate::precedence::{PrecedencePolicy, canonical};

    /// The canonical set of alert `id` from (technique, source, confidence, producer).
    fn alert(id: &str, mappings: &[(&str, Source, f64, &str)]) -> CanonicalSet {
        let cands: Vec<_> = mappings
            .iter()
            .map(|(t, s, c, p)| cand(id, t, None, *s, *c, p))
            .collect();
        let policy = PrecedencePolicy {
            ai_bar: Confidence::new(0.0).unwrap(),
            ..PrecedencePolicy::default()
        };
        canonical(&Subject::alert(id), &cands, &[], &policy)
    }

    fn incident(id: &str, alerts: Vec<CanonicalSet>) -> Incident {
        Incident {
            id: id.into(),
            alerts,
            adjustments: vec![],
        }
    }

    fn entry<'p>(p: &'p IncidentProfile, technique: &str) -> &'p ProfileEntry {
        p.entries
            .iter()
            .find(|e| e.technique.as_str() == technique)
            .unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn witnesses_order_as_their_key_text() {
        // Keys around the `alert:` prefix, and alerts whose built key would
        // fall between them.
        let keys = [
            "",
            "a",
            "ai:m1",
            "alert",
            "alert:",
            "alert:a",
            "alert:b1",
            "alert;",
            "alerts",
            "rule:r1@1",
            "vendor",
        ];
        let alerts = ["", "a", "b", "b1", "zz"];
        let witnesses: Vec<(Producer, String)> = keys
            .iter()
            .map(|k| (Producer::Key(k), k.to_string()))
            .chain(
                alerts
                    .iter()
                    .map(|a| (Producer::Alert(a), format!("alert:{a}"))),
            )
            .collect();
        for (p, p_text) in &witnesses {
            for (q, q_text) in &witnesses {
                assert_eq!(p.cmp(q), p_text.cmp(q_text), "{p_text:?} vs {q_text:?}");
            }
        }
    }

    #[test]
    fn noisy_or_counts_each_rule_once() {
        let inc = incident(
            "i1",
            vec![
                alert("a1", &[("T1059", Source::Rule, 0.6, "r1")]),
                alert("a2", &[("T1059", Source::Rule, 0.6, "r1")]),
                alert(
                    "a3",
                    &[
                        ("T1059", Source::Rule, 0.5, "r2"),
                        ("T1003", Source::Rule, 0.3, "r2"),
                    ],
                ),
            ],
        );
        let p = profile(&inc, &BandThresholds::default());
        let e = entry(&p, "T1059");
        assert_eq!(e.frequency, 3);
        assert_eq!(e.alerts, vec!["a1", "a2", "a3"]);
        assert_eq!(e.candidates.len(), 3);
        // Two independent rules: 1 - (1 - 0.6)(1 - 0.5) = 0.8, not 1 - 0.4^2 * 0.5.
        assert!(close(e.confidence.value(), 0.8), "{}", e.confidence);
        assert_eq!(e.band, Band::High);
        assert_eq!(e.sources, BTreeSet::from([Source::Rule]));
        assert_eq!(entry(&p, "T1003").frequency, 1);
        assert_eq!(p.alerts, 3);
    }

    #[test]
    fn ai_only_pairs_are_capped_at_their_best_single_confidence() {
        let inc = incident(
            "i1",
            vec![
                alert("a1", &[("T1078", Source::Ai, 0.5, "m1")]),
                alert("a2", &[("T1078", Source::Ai, 0.6, "m2")]),
                alert("a3", &[("T1003", Source::Ai, 0.5, "m1")]),
                alert("a4", &[("T1003", Source::Rule, 0.5, "r1")]),
            ],
        );
        let p = profile(&inc, &BandThresholds::default());
        assert!(close(entry(&p, "T1078").confidence.value(), 0.6));
        // An AI suggestion agreeing with a rule adds to it.
        assert!(close(entry(&p, "T1003").confidence.value(), 0.75));
        assert_eq!(
            entry(&p, "T1003").sources,
            BTreeSet::from([Source::Ai, Source::Rule])
        );
    }

    #[test]
    fn lead_adjustments_win_and_survive_recomputation() {
        let i = Subject::incident("i1");
        let mut inc = incident(
            "i1",
            vec![
                alert(
                    "a1",
                    &[
                        ("T1059", Source::Rule, 0.6, "r1"),
                        ("T1003", Source::Rule, 0.6, "r1"),
                    ],
                ),
                alert("a2", &[("T1059", Source::Rule, 0.6, "r1")]),
            ],
        );
        inc.adjustments = vec![
            override_of(
                i.clone(),
                1,
                10,
                "remove",
                "T1003",
                None,
                OverrideStatus::Approved,
            ),
            override_of(
                i.clone(),
                2,
                20,
                "add",
                "T1059",
                None,
                OverrideStatus::Approved,
            ),
            override_of(
                i.clone(),
                3,
                30,
                "add",
                "T1078",
                None,
                OverrideStatus::Approved,
            ),
            override_of(
                i.clone(),
                4,
                40,
                "remove",
                "T1078",
                None,
                OverrideStatus::Proposed,
            ),
        ];
        let p = profile(&inc, &BandThresholds::default());
        let techniques: Vec<String> = p.techniques().iter().map(|t| t.to_string()).collect();
        assert_eq!(techniques, vec!["T1059", "T1078"]);
        let t1059 = entry(&p, "T1059");
        assert_eq!(t1059.frequency, 2, "an adjusted pair keeps its alerts");
        assert_eq!(t1059.confidence.value(), 1.0);
        assert_eq!(
            t1059.sources,
            BTreeSet::from([Source::Manual, Source::Rule])
        );
        assert_eq!(t1059.adjustments, vec!["ov-2"]);
        assert_eq!(entry(&p, "T1078").frequency, 0);

        // A new alert arrives: the adjustments still hold.
        inc.alerts
            .push(alert("a3", &[("T1003", Source::Rule, 0.9, "r2")]));
        let p = profile(&inc, &BandThresholds::default());
        assert!(p.entries.iter().all(|e| e.technique.as_str() != "T1003"));
        assert_eq!(entry(&p, "T1059").frequency, 2);
    }

    #[test]
    fn merge_and_split_keep_adjustments_and_refuse_bad_input() {
        let mut a = incident(
            "A",
            vec![alert("a1", &[("T1059", Source::Rule, 0.6, "r1")])],
        );
        let mut b = incident(
            "B",
            vec![
                alert("b1", &[("T1059", Source::Rule, 0.6, "r1")]),
                alert("a1", &[("T1059", Source::Rule, 0.6, "r1")]),
            ],
        );
        a.adjustments = vec![override_of(
            Subject::incident("A"),
            1,
            10,
            "add",
            "T1078",
            None,
            OverrideStatus::Approved,
        )];
        b.adjustments = vec![override_of(
            Subject::incident("B"),
            1,
            5,
            "add",
            "T1003",
            None,
            OverrideStatus::Approved,
        )];
        let m = merge(&a, &b).unwrap();
        assert_eq!(m.alerts.len(), 2, "a1 in both counts once");
        let p = profile(&m, &BandThresholds::default());
        assert_eq!(entry(&p, "T1059").frequency, 2);
        assert_eq!(
            entry(&p, "T1003").adjustments,
            vec!["ov-1"],
            "B's adjustment followed"
        );
        assert_eq!(entry(&p, "T1078").adjustments, vec!["ov-1"]);
        assert!(
            m.adjustments
                .iter()
                .all(|o| o.subject == Subject::incident("A"))
        );
        assert_eq!(
            merge(&a, &a).unwrap_err(),
            IncidentError::SelfMerge("A".into())
        );

        let (left, right) = split(&m, &["b1".to_string()], "C").unwrap();
        assert_eq!(left.adjustments.len(), 2);
        assert!(right.adjustments.is_empty());
        assert_eq!(
            entry(&profile(&right, &BandThresholds::default()), "T1059").alerts,
            vec!["b1"]
        );
        assert!(matches!(
            split(&m, &[], "C").unwrap_err(),
            IncidentError::EmptySide {
                moved: 0,
                total: 2,
                ..
            }
        ));
        assert!(matches!(
            split(&m, &["a1".into(), "b1".into()], "C").unwrap_err(),
            IncidentError::EmptySide { moved: 2, .. }
        ));
        assert!(matches!(
            split(&m, &["zz".into()], "C").unwrap_err(),
            IncidentError::NotInIncident { .. }
        ));
    }
}
