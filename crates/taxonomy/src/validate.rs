//! Gate A: the checks a release must pass before it may be activated.
//!
//! Errors block activation and name each object that failed; warnings are
//! reported and do not block. Checks are lenient where official ATT&CK data
//! is legitimately untidy (a revoked object may keep an ID its replacement
//! reuses; a deprecated sub-technique may have lost its `subtechnique-of`
//! relationship) and strict where a live object would mislead a mapping.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ids::{TacticId, TechniqueId};
use crate::model::{Release, Status, Technique};
use crate::parse::is_attack_kill_chain;

/// Stable finding codes: scripts and the API match on these strings.
pub mod codes {
    /// Two live objects of one kind share an ATT&CK ID.
    pub const DUPLICATE_ID: &str = "duplicate_id";
    /// Two objects share a STIX id.
    pub const DUPLICATE_STIX_ID: &str = "duplicate_stix_id";
    /// Two live tactics share a shortname, so kill-chain phases are ambiguous.
    pub const DUPLICATE_SHORTNAME: &str = "duplicate_shortname";
    /// An ATT&CK ID is absent or not of the expected shape.
    pub const MALFORMED_ID: &str = "malformed_id";
    /// A tactic has no `x_mitre_shortname`, so no kill-chain phase can name it.
    pub const MISSING_SHORTNAME: &str = "missing_shortname";
    /// A sub-technique's parent technique is not in the release.
    pub const MISSING_PARENT: &str = "missing_parent";
    /// A sub-technique's parent is itself a sub-technique, or does not match
    /// the sub-technique's ID prefix.
    pub const INVALID_PARENT: &str = "invalid_parent";
    /// A live sub-technique's parent is revoked or deprecated.
    pub const PARENT_NOT_LIVE: &str = "parent_not_live";
    /// A kill-chain phase names no tactic of the release.
    pub const UNKNOWN_TACTIC: &str = "unknown_tactic";
    /// A live technique sits under a revoked or deprecated tactic.
    pub const TACTIC_NOT_LIVE: &str = "tactic_not_live";
    /// A live technique has no ATT&CK kill-chain phase, so no matrix cell.
    pub const NO_TACTIC: &str = "no_tactic";
    /// A matrix lists a tactic STIX id that is not in the release.
    pub const UNRESOLVED_TACTIC_REF: &str = "unresolved_tactic_ref";
    /// A live tactic appears in no matrix.
    pub const TACTIC_NOT_IN_MATRIX: &str = "tactic_not_in_matrix";
    /// Status flags contradict each other or the ID shape.
    pub const INCONSISTENT_STATUS: &str = "inconsistent_status";
    /// A revoked object names no replacement.
    pub const REVOKED_WITHOUT_REPLACEMENT: &str = "revoked_without_replacement";
    /// A revoked object's replacement is itself revoked or deprecated.
    pub const REPLACEMENT_NOT_LIVE: &str = "replacement_not_live";
    /// A procedure example points at a technique that is not in the release.
    pub const DANGLING_PROCEDURE: &str = "dangling_procedure";
    /// The release has no live tactic or no live technique.
    pub const EMPTY_RELEASE: &str = "empty_release";
    /// The release has no matrix, so tactics have no order.
    pub const NO_MATRIX: &str = "no_matrix";
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Blocks activation.
    Error,
    /// Reported; does not block.
    Warning,
}

/// One Gate A finding about one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code from [`codes`].
    pub code: String,
    /// STIX id of the object concerned (empty for release-wide findings).
    pub object: String,
    /// ATT&CK ID of the object concerned, as published (may be empty).
    pub attack_id: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// The outcome of Gate A for one release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// Every finding, errors first, then by code and ATT&CK ID.
    pub findings: Vec<Finding>,
}

impl ValidationReport {
    /// The findings that block activation.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// The findings that do not block activation.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    /// True when at least one error blocks activation.
    pub fn is_blocking(&self) -> bool {
        self.errors().next().is_some()
    }
}

/// Runs every Gate A check on a release.
pub fn validate(release: &Release) -> ValidationReport {
    let mut v = Validator {
        release,
        findings: Vec::new(),
    };

    v.check_stix_ids();
    v.check_tactics();
    v.check_techniques();
    v.check_matrices();
    v.check_revocations();
    v.check_procedures();
    v.check_not_empty();

    let mut findings = v.findings;
    findings.sort_by(|a, b| {
        (a.severity, &a.code, &a.attack_id, &a.object).cmp(&(
            b.severity,
            &b.code,
            &b.attack_id,
            &b.object,
        ))
    });
    ValidationReport { findings }
}

/// An object of any kind, seen through what the checks need.
struct Object<'r> {
    kind: &'static str,
    stix_id: &'r str,
    id: &'r str,
    name: &'r str,
    status: &'r Status,
}

struct Validator<'r> {
    release: &'r Release,
    findings: Vec<Finding>,
}

impl<'r> Validator<'r> {
    fn push(&mut self, severity: Severity, code: &str, o: &Object<'_>, message: String) {
        self.findings.push(Finding {
            severity,
            code: code.to_string(),
            object: o.stix_id.to_string(),
            attack_id: o.id.to_string(),
            message,
        });
    }

    /// Error for a live object, warning for a revoked or deprecated one: a
    /// flaw in retired data cannot mislead a new mapping.
    fn severity_for(status: &Status) -> Severity {
        if status.is_live() {
            Severity::Error
        } else {
            Severity::Warning
        }
    }

    fn objects(&self) -> impl Iterator<Item = Object<'r>> {
        let r = self.release;
        let tactics = r.tactics.iter().map(|t| Object {
            kind: "tactic",
            stix_id: &t.stix_id,
            id: &t.id,
            name: &t.name,
            status: &t.status,
        });
        let techniques = r.techniques.iter().map(technique_object);
        let matrices = r.matrices.iter().map(|m| Object {
            kind: "matrix",
            stix_id: &m.stix_id,
            id: &m.id,
            name: &m.name,
            status: &m.status,
        });
        tactics.chain(techniques).chain(matrices)
    }

    fn check_stix_ids(&mut self) {
        let mut seen = HashSet::new();
        let dupes: Vec<Object<'r>> = self.objects().filter(|o| !seen.insert(o.stix_id)).collect();
        for o in dupes {
            let message = format!(
                "{} {} `{}` repeats STIX id {} already used by another object",
                o.kind, o.id, o.name, o.stix_id
            );
            self.push(Severity::Error, codes::DUPLICATE_STIX_ID, &o, message);
        }
    }

    fn check_tactics(&mut self) {
        let r = self.release;
        for t in &r.tactics {
            let o = tactic_object(t);
            let well_formed = TacticId::parse(&t.id).is_ok_and(|id| id.as_str() == t.id);
            if !well_formed {
                let message = malformed_message(&o, "TA followed by 4 digits");
                self.push(
                    Self::severity_for(&t.status),
                    codes::MALFORMED_ID,
                    &o,
                    message,
                );
            }
            if t.shortname.is_empty() {
                let message = format!(
                    "tactic {} `{}` has no x_mitre_shortname, so no technique can refer to it",
                    t.id, t.name
                );
                self.push(
                    Self::severity_for(&t.status),
                    codes::MISSING_SHORTNAME,
                    &o,
                    message,
                );
            }
        }

        let objects: Vec<Object<'r>> = r.tactics.iter().map(tactic_object).collect();
        self.check_duplicates(&objects, |o| o.id.to_string(), codes::DUPLICATE_ID, "ID");
        let shortnames: Vec<Object<'r>> = r
            .tactics
            .iter()
            .filter(|t| !t.shortname.is_empty())
            .map(tactic_object)
            .collect();
        let shortname_of: HashMap<&str, &str> = r
            .tactics
            .iter()
            .map(|t| (t.stix_id.as_str(), t.shortname.as_str()))
            .collect();
        self.check_duplicates(
            &shortnames,
            |o| {
                shortname_of
                    .get(o.stix_id)
                    .copied()
                    .unwrap_or_default()
                    .to_string()
            },
            codes::DUPLICATE_SHORTNAME,
            "shortname",
        );
    }

    /// Reports objects that share a key: an error between live objects, a
    /// warning when a deprecated object shares it. Revoked objects are
    /// exempt: ATT&CK keeps them beside their replacement, sometimes under
    /// the same ID, and lookups prefer the live one.
    fn check_duplicates(
        &mut self,
        objects: &[Object<'r>],
        key: impl Fn(&Object<'r>) -> String,
        code: &str,
        what: &str,
    ) {
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, o) in objects.iter().enumerate() {
            let k = key(o);
            if !o.status.revoked && !k.is_empty() {
                groups.entry(k).or_default().push(i);
            }
        }
        let mut groups: Vec<(String, Vec<usize>)> =
            groups.into_iter().filter(|(_, g)| g.len() > 1).collect();
        groups.sort();
        for (k, group) in groups {
            let live = group
                .iter()
                .filter(|&&i| objects[i].status.is_live())
                .count();
            let severity = if live > 1 {
                Severity::Error
            } else {
                Severity::Warning
            };
            for &i in &group {
                let o = &objects[i];
                let others: Vec<&str> = group
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| objects[j].stix_id)
                    .collect();
                let message = format!(
                    "{} {what} `{k}` of {} ({}) is also used by {}",
                    o.kind,
                    o.stix_id,
                    describe_status(o.status),
                    others.join(", ")
                );
                self.push(severity, code, o, message);
            }
        }
    }

    fn check_techniques(&mut self) {
        let r = self.release;
        let objects: Vec<Object<'r>> = r.techniques.iter().map(technique_object).collect();
        self.check_duplicates(&objects, |o| o.id.to_string(), codes::DUPLICATE_ID, "ID");

        let mut by_id: HashMap<&str, Vec<&Technique>> = HashMap::new();
        for t in &r.techniques {
            by_id.entry(t.id.as_str()).or_default().push(t);
        }
        let tactics_by_shortname: HashMap<&str, &Status> = r
            .tactics
            .iter()
            .map(|t| (t.shortname.as_str(), &t.status))
            .collect();

        for t in &r.techniques {
            let o = technique_object(t);
            let severity = Self::severity_for(&t.status);
            let parsed = TechniqueId::parse(&t.id)
                .ok()
                .filter(|id| id.as_str() == t.id);
            match &parsed {
                None => {
                    let message = malformed_message(&o, "T followed by 4 digits, optionally .NNN");
                    self.push(severity, codes::MALFORMED_ID, &o, message);
                }
                Some(id) if id.is_subtechnique() != t.is_subtechnique => {
                    let message = format!(
                        "technique {} `{}` has x_mitre_is_subtechnique = {} but its ID {} a \
                         sub-technique ID",
                        t.id,
                        t.name,
                        t.is_subtechnique,
                        if id.is_subtechnique() { "is" } else { "is not" }
                    );
                    self.push(severity, codes::INCONSISTENT_STATUS, &o, message);
                }
                Some(_) => {}
            }

            if t.is_subtechnique {
                self.check_parent(t, &o, parsed.as_ref(), &by_id);
            }
            self.check_technique_tactics(t, &o, &tactics_by_shortname);
        }
    }

    fn check_parent(
        &mut self,
        t: &Technique,
        o: &Object<'_>,
        id: Option<&TechniqueId>,
        by_id: &HashMap<&str, Vec<&Technique>>,
    ) {
        let severity = Self::severity_for(&t.status);
        let Some(parent_id) = t.parent.as_deref() else {
            let message = format!(
                "sub-technique {} `{}` names no parent technique",
                t.id, t.name
            );
            self.push(severity, codes::MISSING_PARENT, o, message);
            return;
        };
        let Some(parents) = by_id.get(parent_id) else {
            let message = format!(
                "sub-technique {} `{}` names parent {parent_id}, which is not in the release",
                t.id, t.name
            );
            self.push(severity, codes::MISSING_PARENT, o, message);
            return;
        };

        if let Some(id) = id.filter(|id| id.parent().as_str() != parent_id) {
            let message = format!(
                "sub-technique {} `{}` has parent {parent_id} but its ID implies {}",
                t.id,
                t.name,
                id.parent()
            );
            self.push(severity, codes::INVALID_PARENT, o, message);
        }
        if parents.iter().all(|p| p.is_subtechnique) {
            let message = format!(
                "sub-technique {} `{}` has parent {parent_id}, which is itself a sub-technique",
                t.id, t.name
            );
            self.push(severity, codes::INVALID_PARENT, o, message);
        }
        if t.status.is_live() && !parents.iter().any(|p| p.status.is_live()) {
            let message = format!(
                "live sub-technique {} `{}` has parent {parent_id}, which is {}",
                t.id,
                t.name,
                describe_status(&parents[0].status)
            );
            self.push(Severity::Warning, codes::PARENT_NOT_LIVE, o, message);
        }
    }

    fn check_technique_tactics(
        &mut self,
        t: &Technique,
        o: &Object<'_>,
        tactics_by_shortname: &HashMap<&str, &Status>,
    ) {
        let severity = Self::severity_for(&t.status);
        let mut any = false;
        for phase in t
            .kill_chain_phases
            .iter()
            .filter(|p| is_attack_kill_chain(p))
        {
            any = true;
            match tactics_by_shortname.get(phase.phase_name.as_str()) {
                None => {
                    let message = format!(
                        "technique {} `{}` refers to tactic `{}` ({}), which is not in the \
                         release",
                        t.id, t.name, phase.phase_name, phase.kill_chain_name
                    );
                    self.push(severity, codes::UNKNOWN_TACTIC, o, message);
                }
                Some(status) if t.status.is_live() && !status.is_live() => {
                    let message = format!(
                        "live technique {} `{}` sits under tactic `{}`, which is {}",
                        t.id,
                        t.name,
                        phase.phase_name,
                        describe_status(status)
                    );
                    self.push(Severity::Warning, codes::TACTIC_NOT_LIVE, o, message);
                }
                Some(_) => {}
            }
        }
        if !any && t.status.is_live() {
            let message = format!(
                "live technique {} `{}` has no ATT&CK kill-chain phase, so no matrix cell",
                t.id, t.name
            );
            self.push(Severity::Warning, codes::NO_TACTIC, o, message);
        }
    }

    fn check_matrices(&mut self) {
        let r = self.release;
        if r.matrices.is_empty() {
            self.findings.push(Finding {
                severity: Severity::Warning,
                code: codes::NO_MATRIX.to_string(),
                object: String::new(),
                attack_id: String::new(),
                message: "the release has no x-mitre-matrix, so tactics have no matrix order"
                    .to_string(),
            });
            return;
        }

        let tactic_ids: HashSet<&str> = r.tactics.iter().map(|t| t.stix_id.as_str()).collect();
        let mut listed = HashSet::new();
        for m in &r.matrices {
            let o = Object {
                kind: "matrix",
                stix_id: &m.stix_id,
                id: &m.id,
                name: &m.name,
                status: &m.status,
            };
            if m.id.is_empty() {
                let message = malformed_message(&o, "the domain name, e.g. enterprise-attack");
                self.push(
                    Self::severity_for(&m.status),
                    codes::MALFORMED_ID,
                    &o,
                    message,
                );
            }
            for tactic_ref in &m.tactic_refs {
                listed.insert(tactic_ref.as_str());
                if !tactic_ids.contains(tactic_ref.as_str()) {
                    let message = format!(
                        "matrix {} `{}` lists tactic {tactic_ref}, which is not in the release",
                        m.id, m.name
                    );
                    self.push(
                        Self::severity_for(&m.status),
                        codes::UNRESOLVED_TACTIC_REF,
                        &o,
                        message,
                    );
                }
            }
        }

        let unlisted: Vec<Object<'r>> = r
            .tactics
            .iter()
            .filter(|t| t.status.is_live() && !listed.contains(t.stix_id.as_str()))
            .map(tactic_object)
            .collect();
        for o in unlisted {
            let message = format!(
                "live tactic {} `{}` appears in no matrix, so it has no column",
                o.id, o.name
            );
            self.push(Severity::Warning, codes::TACTIC_NOT_IN_MATRIX, &o, message);
        }
    }

    fn check_revocations(&mut self) {
        let live_by_id: HashMap<&str, bool> = {
            let mut m: HashMap<&str, bool> = HashMap::new();
            for o in self.objects() {
                *m.entry(o.id).or_default() |= o.status.is_live();
            }
            m
        };
        let objects: Vec<Object<'r>> = self.objects().collect();
        for o in &objects {
            match (&o.status.revoked_by, o.status.revoked) {
                (Some(by), false) => {
                    let message = format!(
                        "{} {} `{}` names replacement {by} but is not revoked",
                        o.kind, o.id, o.name
                    );
                    self.push(Severity::Error, codes::INCONSISTENT_STATUS, o, message);
                }
                (None, true) => {
                    let message = format!(
                        "revoked {} {} `{}` names no replacement (no revoked-by relationship)",
                        o.kind, o.id, o.name
                    );
                    self.push(
                        Severity::Warning,
                        codes::REVOKED_WITHOUT_REPLACEMENT,
                        o,
                        message,
                    );
                }
                (Some(by), true) if !live_by_id.get(by.as_str()).copied().unwrap_or(false) => {
                    let message = format!(
                        "revoked {} {} `{}` is replaced by {by}, which is not live in this \
                         release",
                        o.kind, o.id, o.name
                    );
                    self.push(Severity::Warning, codes::REPLACEMENT_NOT_LIVE, o, message);
                }
                _ => {}
            }
        }
    }

    fn check_procedures(&mut self) {
        let r = self.release;
        // A target that is in the release but has no ATT&CK ID is already
        // reported once as `malformed_id`; its procedures only point there.
        let without_id: HashMap<&str, &str> = r
            .techniques
            .iter()
            .filter(|t| t.id.is_empty())
            .map(|t| (t.stix_id.as_str(), t.name.as_str()))
            .collect();
        for p in r.procedures.iter().filter(|p| p.technique_id.is_none()) {
            let source = p.source_name.as_deref().unwrap_or(&p.source_ref);
            let message = match without_id.get(p.technique_stix_id.as_str()) {
                Some(name) => format!(
                    "procedure {} from {source} points at technique {} `{name}`, which has no \
                     ATT&CK ID",
                    p.stix_id, p.technique_stix_id
                ),
                None => format!(
                    "procedure {} from {source} points at {}, which is not in the release",
                    p.stix_id, p.technique_stix_id
                ),
            };
            self.findings.push(Finding {
                severity: Severity::Warning,
                code: codes::DANGLING_PROCEDURE.to_string(),
                object: p.stix_id.clone(),
                attack_id: String::new(),
                message,
            });
        }
    }

    fn check_not_empty(&mut self) {
        let counts = self.release.counts();
        if counts.tactics == 0 || counts.techniques == 0 {
            self.findings.push(Finding {
                severity: Severity::Error,
                code: codes::EMPTY_RELEASE.to_string(),
                object: String::new(),
                attack_id: String::new(),
                message: format!(
                    "the release has {} live tactics and {} live techniques; an ATT&CK release \
                     needs both",
                    counts.tactics, counts.techniques
                ),
            });
        }
    }
}

fn tactic_object(t: &crate::model::Tactic) -> Object<'_> {
    Object {
        kind: "tactic",
        stix_id: &t.stix_id,
        id: &t.id,
        name: &t.name,
        status: &t.status,
    }
}

fn technique_object(t: &Technique) -> Object<'_> {
    Object {
        kind: if t.is_subtechnique {
            "sub-technique"
        } else {
            "technique"
        },
        stix_id: &t.stix_id,
        id: &t.id,
        name: &t.name,
        status: &t.status,
    }
}

fn malformed_message(o: &Object<'_>, expected: &str) -> String {
    if o.id.is_empty() {
        format!(
            "{} {} `{}` has no ATT&CK ID (no mitre-attack external reference)",
            o.kind, o.stix_id, o.name
        )
    } else {
        format!(
            "{} {} `{}` has ATT&CK ID `{}`, expected {expected}",
            o.kind, o.stix_id, o.name, o.id
        )
    }
}

fn describe_status(s: &Status) -> &'static str {
    match (s.revoked, s.deprecated) {
        (true, _) => "revoked",
        (false, true) => "deprecated",
        (false, false) => "live",
    }
}
