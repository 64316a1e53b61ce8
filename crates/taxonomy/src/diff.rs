//! What changed between two releases of a domain, as data and as Markdown.
//!
//! Objects are matched by STIX id, the one key ATT&CK keeps stable across
//! releases (ATT&CK IDs can move: a technique demoted to a sub-technique gets
//! a new ID under the same STIX id). Version categories follow ATT&CK's own
//! changelog: a major version bump means the object's scope changed, a minor
//! one a description or reference edit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::{Domain, Matrix, Release, Status, Tactic, Technique};

/// Which release a diff side is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    /// The domain.
    pub domain: Domain,
    /// The release version (`18.1`).
    pub release: String,
}

/// One changed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// ATT&CK ID in the new release (the old one for removed objects).
    pub id: String,
    /// STIX id, the matching key.
    pub stix_id: String,
    /// Name in the new release (the old one for removed objects).
    pub name: String,
    /// `x_mitre_version` in the old release; `None` for added objects.
    pub old_version: Option<String>,
    /// `x_mitre_version` in the new release; `None` for removed objects.
    pub new_version: Option<String>,
    /// ATT&CK ID of the replacement, for revoked objects that name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// The ATT&CK ID in the old release when it changed (a technique that
    /// became a sub-technique keeps its STIX id and gets a new ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_id: Option<String>,
    /// The name in the old release when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_name: Option<String>,
}

/// Objects of one kind, by change category. Each object appears at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// New in the new release (and live there).
    pub added: Vec<DiffEntry>,
    /// Major version went up.
    pub major: Vec<DiffEntry>,
    /// Minor version went up, major unchanged.
    pub minor: Vec<DiffEntry>,
    /// Version changed otherwise (went down, or is not `MAJOR.MINOR`).
    pub other: Vec<DiffEntry>,
    /// Revoked or deprecated in the old release, live again in the new one.
    pub restored: Vec<DiffEntry>,
    /// Newly deprecated.
    pub deprecated: Vec<DiffEntry>,
    /// Newly revoked, with `replaced_by` where the new release names one.
    pub revoked: Vec<DiffEntry>,
    /// In the old release, absent from the new one.
    pub removed: Vec<DiffEntry>,
}

/// How many objects fall in each category of a [`Changes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCounts {
    /// Added objects.
    pub added: usize,
    /// Major version changes.
    pub major: usize,
    /// Minor version changes.
    pub minor: usize,
    /// Other version changes.
    pub other: usize,
    /// Restored objects.
    pub restored: usize,
    /// Newly deprecated objects.
    pub deprecated: usize,
    /// Newly revoked objects.
    pub revoked: usize,
    /// Removed objects.
    pub removed: usize,
}

/// A diff in figures, for logs and the change summary `dataset sync` stores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSummary {
    /// Tactic counts.
    pub tactics: CategoryCounts,
    /// Tactics renamed.
    pub tactics_renamed: usize,
    /// Technique and sub-technique counts.
    pub techniques: CategoryCounts,
    /// Live techniques that changed tactics.
    pub techniques_moved: usize,
    /// Matrix counts.
    pub matrices: CategoryCounts,
    /// Platforms added.
    pub platforms_added: usize,
    /// Platforms removed.
    pub platforms_removed: usize,
}

impl Changes {
    /// The number of objects per category.
    pub fn counts(&self) -> CategoryCounts {
        CategoryCounts {
            added: self.added.len(),
            major: self.major.len(),
            minor: self.minor.len(),
            other: self.other.len(),
            restored: self.restored.len(),
            deprecated: self.deprecated.len(),
            revoked: self.revoked.len(),
            removed: self.removed.len(),
        }
    }

    /// True when no object changed.
    pub fn is_empty(&self) -> bool {
        self.categories().iter().all(|(_, v)| v.is_empty())
    }

    /// The categories with their JSON names, in changelog order.
    pub fn categories(&self) -> [(&'static str, &Vec<DiffEntry>); 8] {
        [
            ("added", &self.added),
            ("major", &self.major),
            ("minor", &self.minor),
            ("other", &self.other),
            ("restored", &self.restored),
            ("deprecated", &self.deprecated),
            ("revoked", &self.revoked),
            ("removed", &self.removed),
        ]
    }
}

/// A tactic as changelog entries name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TacticRef {
    /// ATT&CK ID (`TA0005`).
    pub id: String,
    /// Shortname (`defense-evasion`).
    pub shortname: String,
    /// Display name.
    pub name: String,
}

/// A tactic whose name or shortname changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacticRename {
    /// STIX id.
    pub stix_id: String,
    /// The tactic as it was.
    pub old: TacticRef,
    /// The tactic as it is.
    pub new: TacticRef,
}

/// Techniques that moved from or to one tactic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacticTechniques {
    /// The other tactic.
    pub tactic: TacticRef,
    /// ATT&CK IDs of the techniques that moved, sorted.
    pub techniques: Vec<String>,
}

/// A tactic new in this release that took techniques from existing tactics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacticSplit {
    /// The new tactic.
    pub tactic: TacticRef,
    /// Where its techniques were before, per old tactic.
    pub from: Vec<TacticTechniques>,
}

/// A tactic retired in this release (revoked, deprecated or removed) whose
/// techniques moved to other tactics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacticMerge {
    /// The retired tactic.
    pub tactic: TacticRef,
    /// Where its techniques went, per new tactic.
    pub into: Vec<TacticTechniques>,
}

/// Tactic changes: the common categories plus renames, splits and merges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TacticChanges {
    /// Added, versioned, deprecated, revoked, removed tactics.
    #[serde(flatten)]
    pub changes: Changes,
    /// Tactics whose name or shortname changed.
    pub renamed: Vec<TacticRename>,
    /// New tactics that took techniques from existing ones.
    pub splits: Vec<TacticSplit>,
    /// Retired tactics whose techniques went elsewhere.
    pub merges: Vec<TacticMerge>,
}

/// A technique whose tactics changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TechniqueMove {
    /// ATT&CK ID in the new release.
    pub id: String,
    /// STIX id.
    pub stix_id: String,
    /// Name in the new release.
    pub name: String,
    /// Tactics in the old release, in kill-chain order.
    pub old_tactics: Vec<TacticRef>,
    /// Tactics in the new release, in kill-chain order.
    pub new_tactics: Vec<TacticRef>,
}

/// Technique and sub-technique changes, plus moves between tactics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TechniqueChanges {
    /// Added, versioned, deprecated, revoked, removed techniques.
    #[serde(flatten)]
    pub changes: Changes,
    /// Live techniques whose set of tactics changed.
    pub tactic_changes: Vec<TechniqueMove>,
}

/// A matrix whose tactic columns changed (added, removed or reordered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixColumns {
    /// ATT&CK ID of the matrix.
    pub id: String,
    /// STIX id.
    pub stix_id: String,
    /// Name.
    pub name: String,
    /// Tactic ATT&CK IDs in the old column order.
    pub old_tactics: Vec<String>,
    /// Tactic ATT&CK IDs in the new column order.
    pub new_tactics: Vec<String>,
}

/// Matrix changes, plus column changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixChanges {
    /// Added, versioned, deprecated, revoked, removed matrices.
    #[serde(flatten)]
    pub changes: Changes,
    /// Matrices whose tactic columns changed.
    pub columns: Vec<MatrixColumns>,
}

/// Platforms that appear or disappear among live techniques.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformChanges {
    /// Named by a live technique of the new release only.
    pub added: Vec<String>,
    /// Named by a live technique of the old release only.
    pub removed: Vec<String>,
}

/// Everything that changed from one release to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDiff {
    /// The old release.
    pub old: ReleaseRef,
    /// The new release.
    pub new: ReleaseRef,
    /// Tactic changes.
    pub tactics: TacticChanges,
    /// Technique and sub-technique changes.
    pub techniques: TechniqueChanges,
    /// Matrix changes.
    pub matrices: MatrixChanges,
    /// Platform changes.
    pub platforms: PlatformChanges,
}

impl ReleaseDiff {
    /// The diff in figures.
    pub fn summary(&self) -> DiffSummary {
        DiffSummary {
            tactics: self.tactics.changes.counts(),
            tactics_renamed: self.tactics.renamed.len(),
            techniques: self.techniques.changes.counts(),
            techniques_moved: self.techniques.tactic_changes.len(),
            matrices: self.matrices.changes.counts(),
            platforms_added: self.platforms.added.len(),
            platforms_removed: self.platforms.removed.len(),
        }
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.tactics.changes.is_empty()
            && self.tactics.renamed.is_empty()
            && self.tactics.splits.is_empty()
            && self.tactics.merges.is_empty()
            && self.techniques.changes.is_empty()
            && self.techniques.tactic_changes.is_empty()
            && self.matrices.changes.is_empty()
            && self.matrices.columns.is_empty()
            && self.platforms.added.is_empty()
            && self.platforms.removed.is_empty()
    }
}

/// Compares two releases, matching objects by STIX id.
pub fn diff(old: &Release, new: &Release) -> ReleaseDiff {
    let old_tactics = TacticIndex::new(&old.tactics);
    let new_tactics = TacticIndex::new(&new.tactics);

    let tactic_changes = changes(&old.tactics, &new.tactics, tactic_view);
    let technique_changes = changes(&old.techniques, &new.techniques, technique_view);
    let matrix_changes = changes(&old.matrices, &new.matrices, matrix_view);

    let moves = technique_moves(old, new, &old_tactics, &new_tactics);
    let (splits, merges) = splits_and_merges(old, new, &old_tactics, &new_tactics);

    ReleaseDiff {
        old: ReleaseRef {
            domain: old.domain,
            release: old.version.clone(),
        },
        new: ReleaseRef {
            domain: new.domain,
            release: new.version.clone(),
        },
        tactics: TacticChanges {
            changes: tactic_changes,
            renamed: renames(&old.tactics, &new.tactics),
            splits,
            merges,
        },
        techniques: TechniqueChanges {
            changes: technique_changes,
            tactic_changes: moves,
        },
        matrices: MatrixChanges {
            changes: matrix_changes,
            columns: matrix_columns(old, new),
        },
        platforms: platform_changes(old, new),
    }
}

/// The fields every diffed object has.
struct View<'a> {
    stix_id: &'a str,
    id: &'a str,
    name: &'a str,
    version: &'a str,
    status: &'a Status,
}

fn tactic_view(t: &Tactic) -> View<'_> {
    View {
        stix_id: &t.stix_id,
        id: &t.id,
        name: &t.name,
        version: &t.version,
        status: &t.status,
    }
}

fn technique_view(t: &Technique) -> View<'_> {
    View {
        stix_id: &t.stix_id,
        id: &t.id,
        name: &t.name,
        version: &t.version,
        status: &t.status,
    }
}

fn matrix_view(m: &Matrix) -> View<'_> {
    View {
        stix_id: &m.stix_id,
        id: &m.id,
        name: &m.name,
        version: &m.version,
        status: &m.status,
    }
}

/// How a version moved.
#[derive(Debug, PartialEq, Eq)]
enum VersionChange {
    Same,
    Major,
    Minor,
    Other,
}

/// Compares `MAJOR.MINOR` versions; anything unparseable that differs is `Other`.
fn version_change(old: &str, new: &str) -> VersionChange {
    if old == new {
        return VersionChange::Same;
    }
    let parse = |v: &str| -> Option<(u64, u64)> {
        let (major, minor) = v.trim().split_once('.').unwrap_or((v.trim(), "0"));
        Some((major.parse().ok()?, minor.parse().ok()?))
    };
    match (parse(old), parse(new)) {
        (Some(o), Some(n)) if o == n => VersionChange::Same,
        (Some(o), Some(n)) if n.0 > o.0 => VersionChange::Major,
        (Some(o), Some(n)) if n.0 == o.0 && n.1 > o.1 => VersionChange::Minor,
        _ => VersionChange::Other,
    }
}

fn changes<T>(old: &[T], new: &[T], view: impl Fn(&T) -> View<'_>) -> Changes {
    let old_by_stix: HashMap<&str, View<'_>> = old
        .iter()
        .map(|o| {
            let v = view(o);
            (v.stix_id, v)
        })
        .collect();
    let new_stix: BTreeSet<&str> = new.iter().map(|n| view(n).stix_id).collect();
    let mut out = Changes::default();

    for n in new.iter().map(&view) {
        let Some(o) = old_by_stix.get(n.stix_id) else {
            let entry = entry(None, &n);
            if n.status.revoked {
                out.revoked.push(entry);
            } else if n.status.deprecated {
                out.deprecated.push(entry);
            } else {
                out.added.push(entry);
            }
            continue;
        };

        let entry = entry(Some(o), &n);
        if n.status.revoked && !o.status.revoked {
            out.revoked.push(entry);
        } else if n.status.deprecated && !n.status.revoked && !o.status.deprecated {
            out.deprecated.push(entry);
        } else if !n.status.is_live() {
            // Still retired: later edits to a retired object matter to no one.
        } else if !o.status.is_live() {
            out.restored.push(entry);
        } else {
            match version_change(o.version, n.version) {
                VersionChange::Same => {}
                VersionChange::Major => out.major.push(entry),
                VersionChange::Minor => out.minor.push(entry),
                VersionChange::Other => out.other.push(entry),
            }
        }
    }

    for o in old.iter().map(&view) {
        if !new_stix.contains(o.stix_id) {
            out.removed.push(DiffEntry {
                id: o.id.to_string(),
                stix_id: o.stix_id.to_string(),
                name: o.name.to_string(),
                old_version: Some(o.version.to_string()),
                new_version: None,
                replaced_by: None,
                old_id: None,
                old_name: None,
            });
        }
    }

    for list in [
        &mut out.added,
        &mut out.major,
        &mut out.minor,
        &mut out.other,
        &mut out.restored,
        &mut out.deprecated,
        &mut out.revoked,
        &mut out.removed,
    ] {
        list.sort_by(|a, b| (&a.id, &a.stix_id).cmp(&(&b.id, &b.stix_id)));
    }
    out
}

fn entry(old: Option<&View<'_>>, new: &View<'_>) -> DiffEntry {
    DiffEntry {
        id: new.id.to_string(),
        stix_id: new.stix_id.to_string(),
        name: new.name.to_string(),
        old_version: old.map(|o| o.version.to_string()),
        new_version: Some(new.version.to_string()),
        replaced_by: new.status.revoked_by.clone(),
        old_id: old.filter(|o| o.id != new.id).map(|o| o.id.to_string()),
        old_name: old
            .filter(|o| o.name != new.name)
            .map(|o| o.name.to_string()),
    }
}

fn renames(old: &[Tactic], new: &[Tactic]) -> Vec<TacticRename> {
    let old_by_stix: HashMap<&str, &Tactic> = old.iter().map(|t| (t.stix_id.as_str(), t)).collect();
    let mut out: Vec<TacticRename> = new
        .iter()
        .filter_map(|n| {
            let o = old_by_stix.get(n.stix_id.as_str())?;
            (o.name != n.name || o.shortname != n.shortname).then(|| TacticRename {
                stix_id: n.stix_id.clone(),
                old: tactic_ref(o),
                new: tactic_ref(n),
            })
        })
        .collect();
    out.sort_by(|a, b| a.new.id.cmp(&b.new.id));
    out
}

fn tactic_ref(t: &Tactic) -> TacticRef {
    TacticRef {
        id: t.id.clone(),
        shortname: t.shortname.clone(),
        name: t.name.clone(),
    }
}

/// Resolves a technique's kill-chain phase names to tactics of its release.
struct TacticIndex<'a> {
    by_shortname: HashMap<&'a str, &'a Tactic>,
}

impl<'a> TacticIndex<'a> {
    fn new(tactics: &'a [Tactic]) -> Self {
        // A live tactic wins over a retired one with the same shortname.
        let mut by_shortname: HashMap<&str, &Tactic> = HashMap::new();
        for t in tactics {
            let slot = by_shortname.entry(t.shortname.as_str()).or_insert(t);
            if !slot.status.is_live() && t.status.is_live() {
                *slot = t;
            }
        }
        Self { by_shortname }
    }

    /// The tactics of a technique as (matching key, reference). The key is
    /// the tactic's STIX id, so a renamed tactic is not mistaken for a move;
    /// an unresolved shortname is its own key.
    fn of(&self, t: &Technique) -> Vec<(String, TacticRef)> {
        t.tactics
            .iter()
            .map(
                |shortname| match self.by_shortname.get(shortname.as_str()) {
                    Some(tactic) => (tactic.stix_id.clone(), tactic_ref(tactic)),
                    None => (
                        format!("shortname:{shortname}"),
                        TacticRef {
                            id: String::new(),
                            shortname: shortname.clone(),
                            name: shortname.clone(),
                        },
                    ),
                },
            )
            .collect()
    }
}

fn technique_moves(
    old: &Release,
    new: &Release,
    old_tactics: &TacticIndex<'_>,
    new_tactics: &TacticIndex<'_>,
) -> Vec<TechniqueMove> {
    let old_by_stix: HashMap<&str, &Technique> = old
        .techniques
        .iter()
        .map(|t| (t.stix_id.as_str(), t))
        .collect();
    let mut out: Vec<TechniqueMove> = new
        .techniques
        .iter()
        .filter(|n| n.status.is_live())
        .filter_map(|n| {
            let o = old_by_stix.get(n.stix_id.as_str())?;
            let before = old_tactics.of(o);
            let after = new_tactics.of(n);
            let keys = |v: &[(String, TacticRef)]| -> BTreeSet<String> {
                v.iter().map(|(k, _)| k.clone()).collect()
            };
            (keys(&before) != keys(&after)).then(|| TechniqueMove {
                id: n.id.clone(),
                stix_id: n.stix_id.clone(),
                name: n.name.clone(),
                old_tactics: before.into_iter().map(|(_, r)| r).collect(),
                new_tactics: after.into_iter().map(|(_, r)| r).collect(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.id, &a.stix_id).cmp(&(&b.id, &b.stix_id)));
    out
}

/// Splits: a tactic new in `new` that holds techniques which, in `old`, sat
/// under a tactic that no longer holds them. Merges: a tactic live in `old`
/// and retired or gone in `new` whose techniques now sit under other tactics.
fn splits_and_merges(
    old: &Release,
    new: &Release,
    old_tactics: &TacticIndex<'_>,
    new_tactics: &TacticIndex<'_>,
) -> (Vec<TacticSplit>, Vec<TacticMerge>) {
    let old_tactic_stix: BTreeSet<&str> = old.tactics.iter().map(|t| t.stix_id.as_str()).collect();
    let live_new_tactic: HashMap<&str, &Tactic> = new
        .tactics
        .iter()
        .filter(|t| t.status.is_live())
        .map(|t| (t.stix_id.as_str(), t))
        .collect();
    let old_by_stix: HashMap<&str, &Technique> = old
        .techniques
        .iter()
        .map(|t| (t.stix_id.as_str(), t))
        .collect();

    // new tactic key -> old tactic key -> techniques; and the reverse.
    type Moves = BTreeMap<String, (TacticRef, BTreeMap<String, (TacticRef, BTreeSet<String>)>)>;
    let mut split_moves: Moves = BTreeMap::new();
    let mut merge_moves: Moves = BTreeMap::new();
    for n in new.techniques.iter().filter(|n| n.status.is_live()) {
        let Some(o) = old_by_stix.get(n.stix_id.as_str()) else {
            continue;
        };
        let before = old_tactics.of(o);
        let after = new_tactics.of(n);
        let left: Vec<&(String, TacticRef)> = before
            .iter()
            .filter(|(k, _)| !after.iter().any(|(a, _)| a == k))
            .collect();
        let joined: Vec<&(String, TacticRef)> = after
            .iter()
            .filter(|(k, _)| !before.iter().any(|(b, _)| b == k))
            .collect();
        for (to_key, to_ref) in &joined {
            if old_tactic_stix.contains(to_key.as_str()) {
                continue;
            }
            for (from_key, from_ref) in &left {
                split_moves
                    .entry(to_key.clone())
                    .or_insert_with(|| (to_ref.clone(), BTreeMap::new()))
                    .1
                    .entry(from_key.clone())
                    .or_insert_with(|| (from_ref.clone(), BTreeSet::new()))
                    .1
                    .insert(n.id.clone());
            }
        }
        for (from_key, from_ref) in &left {
            if live_new_tactic.contains_key(from_key.as_str()) {
                continue;
            }
            for (to_key, to_ref) in &joined {
                merge_moves
                    .entry(from_key.clone())
                    .or_insert_with(|| (from_ref.clone(), BTreeMap::new()))
                    .1
                    .entry(to_key.clone())
                    .or_insert_with(|| (to_ref.clone(), BTreeSet::new()))
                    .1
                    .insert(n.id.clone());
            }
        }
    }

    let flatten = |m: BTreeMap<String, (TacticRef, BTreeSet<String>)>| -> Vec<TacticTechniques> {
        let mut v: Vec<TacticTechniques> = m
            .into_values()
            .map(|(tactic, techniques)| TacticTechniques {
                tactic,
                techniques: techniques.into_iter().collect(),
            })
            .collect();
        v.sort_by(|a, b| a.tactic.cmp(&b.tactic));
        v
    };
    let mut splits: Vec<TacticSplit> = split_moves
        .into_values()
        .map(|(tactic, from)| TacticSplit {
            tactic,
            from: flatten(from),
        })
        .collect();
    splits.sort_by(|a, b| a.tactic.cmp(&b.tactic));
    let mut merges: Vec<TacticMerge> = merge_moves
        .into_values()
        .map(|(tactic, into)| TacticMerge {
            tactic,
            into: flatten(into),
        })
        .collect();
    merges.sort_by(|a, b| a.tactic.cmp(&b.tactic));
    (splits, merges)
}

fn matrix_columns(old: &Release, new: &Release) -> Vec<MatrixColumns> {
    let attack_ids = |r: &Release, refs: &[String]| -> Vec<String> {
        refs.iter()
            .map(|stix| {
                r.tactics
                    .iter()
                    .find(|t| &t.stix_id == stix)
                    .map_or_else(|| stix.clone(), |t| t.id.clone())
            })
            .collect()
    };
    let mut out: Vec<MatrixColumns> = new
        .matrices
        .iter()
        .filter_map(|n| {
            let o = old.matrices.iter().find(|o| o.stix_id == n.stix_id)?;
            (o.tactic_refs != n.tactic_refs).then(|| MatrixColumns {
                id: n.id.clone(),
                stix_id: n.stix_id.clone(),
                name: n.name.clone(),
                old_tactics: attack_ids(old, &o.tactic_refs),
                new_tactics: attack_ids(new, &n.tactic_refs),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn platform_changes(old: &Release, new: &Release) -> PlatformChanges {
    let live = |r: &Release| -> BTreeSet<String> {
        r.techniques
            .iter()
            .filter(|t| t.status.is_live())
            .flat_map(|t| t.platforms.iter().cloned())
            .collect()
    };
    let (before, after) = (live(old), live(new));
    PlatformChanges {
        added: after.difference(&before).cloned().collect(),
        removed: before.difference(&after).cloned().collect(),
    }
}

/// Renders a diff as a readable Markdown changelog.
pub fn to_markdown(d: &ReleaseDiff) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# ATT&CK changes: {} {} → {} {}\n",
        d.old.domain, d.old.release, d.new.domain, d.new.release
    );
    if d.is_empty() {
        md.push_str("No changes.\n");
        return md;
    }

    summary_table(&mut md, d);

    if !d.platforms.added.is_empty() || !d.platforms.removed.is_empty() {
        md.push_str("## Platforms\n\n");
        if !d.platforms.added.is_empty() {
            let _ = writeln!(md, "- Added: {}", d.platforms.added.join(", "));
        }
        if !d.platforms.removed.is_empty() {
            let _ = writeln!(md, "- Removed: {}", d.platforms.removed.join(", "));
        }
        md.push('\n');
    }

    let t = &d.tactics;
    if !t.changes.is_empty()
        || !t.renamed.is_empty()
        || !t.splits.is_empty()
        || !t.merges.is_empty()
    {
        md.push_str("## Tactics\n\n");
        categories_md(&mut md, &t.changes);
        if !t.renamed.is_empty() {
            md.push_str("### Renamed\n\n");
            for r in &t.renamed {
                let _ = writeln!(
                    md,
                    "- {}: {} (`{}`) → {} (`{}`)",
                    r.new.id, r.old.name, r.old.shortname, r.new.name, r.new.shortname
                );
            }
            md.push('\n');
        }
        if !t.splits.is_empty() {
            md.push_str("### Split\n\n");
            for s in &t.splits {
                for from in &s.from {
                    let _ = writeln!(
                        md,
                        "- {} {} takes {} from {}: {}",
                        s.tactic.id,
                        s.tactic.name,
                        plural(from.techniques.len(), "technique"),
                        tactic_label(&from.tactic),
                        from.techniques.join(", ")
                    );
                }
            }
            md.push('\n');
        }
        if !t.merges.is_empty() {
            md.push_str("### Merged\n\n");
            for m in &t.merges {
                for into in &m.into {
                    let _ = writeln!(
                        md,
                        "- {} {} gives {} to {}: {}",
                        m.tactic.id,
                        m.tactic.name,
                        plural(into.techniques.len(), "technique"),
                        tactic_label(&into.tactic),
                        into.techniques.join(", ")
                    );
                }
            }
            md.push('\n');
        }
    }

    let t = &d.techniques;
    if !t.changes.is_empty() || !t.tactic_changes.is_empty() {
        md.push_str("## Techniques and sub-techniques\n\n");
        categories_md(&mut md, &t.changes);
        if !t.tactic_changes.is_empty() {
            md.push_str("### Tactic changes\n\n");
            for m in &t.tactic_changes {
                let names = |v: &[TacticRef]| {
                    v.iter()
                        .map(|r| r.shortname.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    md,
                    "- {} {}: {} → {}",
                    m.id,
                    m.name,
                    names(&m.old_tactics),
                    names(&m.new_tactics)
                );
            }
            md.push('\n');
        }
    }

    let m = &d.matrices;
    if !m.changes.is_empty() || !m.columns.is_empty() {
        md.push_str("## Matrices\n\n");
        categories_md(&mut md, &m.changes);
        if !m.columns.is_empty() {
            md.push_str("### Column changes\n\n");
            for c in &m.columns {
                let _ = writeln!(
                    md,
                    "- {} {}: {} → {}",
                    c.id,
                    c.name,
                    c.old_tactics.join(", "),
                    c.new_tactics.join(", ")
                );
            }
            md.push('\n');
        }
    }

    while md.ends_with("\n\n") {
        md.pop();
    }
    md
}

fn summary_table(md: &mut String, d: &ReleaseDiff) {
    md.push_str(
        "| | added | major | minor | other | restored | deprecated | revoked | removed |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for (label, c) in [
        ("Tactics", &d.tactics.changes),
        ("Techniques", &d.techniques.changes),
        ("Matrices", &d.matrices.changes),
    ] {
        let _ = write!(md, "| {label} |");
        for (_, list) in c.categories() {
            let _ = write!(md, " {} |", list.len());
        }
        md.push('\n');
    }
    md.push('\n');
}

fn categories_md(md: &mut String, c: &Changes) {
    let titles = [
        "Added",
        "Major version changes",
        "Minor version changes",
        "Other version changes",
        "Restored",
        "Deprecated",
        "Revoked",
        "Removed",
    ];
    for ((category, list), title) in c.categories().into_iter().zip(titles) {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(md, "### {title}\n");
        for e in list {
            let _ = writeln!(md, "- {}", entry_md(category, e));
        }
        md.push('\n');
    }
}

fn entry_md(category: &str, e: &DiffEntry) -> String {
    let mut line = format!("{} {}", e.id, e.name);
    let version = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    match category {
        "added" => {
            let _ = write!(line, " (v{})", version(&e.new_version));
        }
        "removed" => {
            let _ = write!(line, " (was v{})", version(&e.old_version));
        }
        "revoked" => match &e.replaced_by {
            Some(by) => {
                let _ = write!(line, ", replaced by {by}");
            }
            None => line.push_str(", no replacement named"),
        },
        _ => {
            if e.old_version.is_some() && e.old_version != e.new_version {
                let _ = write!(
                    line,
                    " (v{} → v{})",
                    version(&e.old_version),
                    version(&e.new_version)
                );
            }
        }
    }
    if let Some(old_id) = &e.old_id {
        let _ = write!(line, "; was {old_id}");
    }
    if let Some(old_name) = &e.old_name {
        let _ = write!(line, "; renamed from {old_name}");
    }
    line
}

fn tactic_label(t: &TacticRef) -> String {
    if t.id.is_empty() {
        format!("`{}`", t.shortname)
    } else {
        format!("{} {}", t.id, t.name)
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_numerically() {
        assert_eq!(version_change("1.2", "1.2"), VersionChange::Same);
        assert_eq!(version_change("1.9", "1.10"), VersionChange::Minor);
        assert_eq!(version_change("1.9", "2.0"), VersionChange::Major);
        assert_eq!(version_change("2.0", "10.0"), VersionChange::Major);
        assert_eq!(version_change("2.1", "2.0"), VersionChange::Other);
        assert_eq!(version_change("", "1.0"), VersionChange::Other);
        assert_eq!(version_change("1", "1.0"), VersionChange::Same);
    }
}
