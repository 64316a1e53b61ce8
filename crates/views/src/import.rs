//! Navigator layer import: scores read back per technique, techniques of an
//! older ATT&CK release resolved through the release diff, and a comparison
//! of a layer with the org's activity.
//!
//! The layer JSON is kept whole in [`LayerImport::raw`], so fields this
//! module does not read survive a re-export unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use taxonomy::{Release, ReleaseDiff, Technique};

use crate::matrix::{MatrixView, Placer};

/// Why a file could not be imported as Navigator layers.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not JSON at all.
    #[error("the layer file is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not a layer.
    #[error("layer {index} is not a Navigator layer: {reason}")]
    NotALayer {
        /// Position of the layer in the file (0 for a single-layer file).
        index: usize,
        /// What is missing or mistyped.
        reason: String,
    },
    /// A layer of another domain than the active release.
    #[error("layer {index} is for domain `{layer}`, the active release is {release}")]
    DomainMismatch {
        /// Position of the layer in the file.
        index: usize,
        /// The layer's domain.
        layer: String,
        /// The active release's domain.
        release: String,
    },
}

/// One technique entry of a layer, resolved against the active release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedScore {
    /// Technique ATT&CK ID in the active release.
    pub technique: String,
    /// Tactic shortname the entry names, when it names one the technique
    /// has in the active release.
    pub tactic: Option<String>,
    /// The entry's score, when it has one.
    pub score: Option<f64>,
    /// True when the entry carries something (score, colour or comment);
    /// full-matrix layers also list bare entries.
    pub annotated: bool,
    /// The ID the layer used, when it was resolved to another one.
    pub resolved_from: Option<String>,
    /// Why the entry needs a look (revoked and replaced, deprecated, ID
    /// changed, tactic dropped).
    pub flagged: Option<String>,
    /// Position of the entry in the layer's `techniques`.
    pub index: usize,
}

/// A technique entry the active release cannot place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownTechnique {
    /// The ID as the layer wrote it.
    pub technique: String,
    /// The tactic as the layer wrote it.
    pub tactic: Option<String>,
    /// The entry's score.
    pub score: Option<f64>,
    /// Why it is unknown.
    pub reason: String,
    /// Position of the entry in the layer's `techniques`.
    pub index: usize,
}

/// One imported layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerImport {
    /// Layer name.
    pub name: String,
    /// Layer domain (`enterprise-attack`).
    pub domain: String,
    /// The ATT&CK release the layer was written for, from nexus-attack's
    /// `attack_release` metadata or else `versions.attack`.
    pub attack_version: Option<String>,
    /// Entries the active release places.
    pub scores: Vec<ImportedScore>,
    /// Entries it cannot place.
    pub unknown: Vec<UnknownTechnique>,
    /// The layer as read, every field kept.
    pub raw: Value,
}

/// The layers of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedLayer {
    /// The layers, in file order.
    pub layers: Vec<LayerImport>,
    /// The file was a JSON array of layers (a multi-layer file).
    pub multi: bool,
}

impl ImportedLayer {
    /// The file as read: one layer object, or an array for a multi-layer
    /// file; fields nexus-attack does not use are kept as they were.
    pub fn to_json(&self) -> Value {
        if self.multi {
            Value::Array(self.layers.iter().map(|l| l.raw.clone()).collect())
        } else {
            self.layers
                .first()
                .map_or(Value::Null, |layer| layer.raw.clone())
        }
    }
}

/// Reads a layer file (one layer, or a JSON array of layers) and resolves
/// its techniques in `release`.
///
/// With `diff_from_older` (the diff from the layer's release to the active
/// one), IDs that changed are followed to their new ID and revoked
/// techniques to their replacement, each flagged; deprecated techniques are
/// kept and flagged; IDs the active release does not know go to `unknown`.
/// Without a diff, the active release's own revoked-by links still resolve
/// revoked techniques.
pub fn import_layer(
    json: &str,
    release: &Release,
    diff_from_older: Option<&ReleaseDiff>,
) -> Result<ImportedLayer, ImportError> {
    let value: Value = serde_json::from_str(json)?;
    let (raws, multi) = match value {
        Value::Array(items) => (items, true),
        single => (vec![single], false),
    };

    let resolver = Resolver {
        release,
        placer: Placer::new(release),
        diff: diff_from_older,
    };
    let layers = raws
        .into_iter()
        .enumerate()
        .map(|(index, raw)| import_one(index, raw, &resolver))
        .collect::<Result<_, _>>()?;
    Ok(ImportedLayer { layers, multi })
}

fn import_one(index: usize, raw: Value, resolver: &Resolver) -> Result<LayerImport, ImportError> {
    let not_a_layer = |reason: &str| ImportError::NotALayer {
        index,
        reason: reason.to_string(),
    };
    let map = raw
        .as_object()
        .ok_or_else(|| not_a_layer("expected a JSON object"))?;
    let name = map
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| not_a_layer("`name` is missing or not a string"))?
        .to_string();
    let release_domain = resolver.release.domain.as_str();
    // Layers before format 4.0 spelled domains `mitre-enterprise` and
    // `mitre-mobile`; a layer without a domain is read as the active one.
    let domain = match map.get("domain").and_then(Value::as_str) {
        None => release_domain.to_string(),
        Some("mitre-enterprise") => "enterprise-attack".to_string(),
        Some("mitre-mobile") => "mobile-attack".to_string(),
        Some(other) => other.to_string(),
    };
    if domain != release_domain {
        return Err(ImportError::DomainMismatch {
            index,
            layer: domain,
            release: release_domain.to_string(),
        });
    }
    let attack_version = attack_version(map);

    let entries: &[Value] = match map.get("techniques") {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(_) => return Err(not_a_layer("`techniques` is not an array")),
    };
    let mut scores = Vec::new();
    let mut unknown = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(id) = entry.get("techniqueID").and_then(Value::as_str) else {
            return Err(not_a_layer(&format!(
                "technique entry {i} has no string `techniqueID`"
            )));
        };
        let tactic = entry
            .get("tactic")
            .and_then(Value::as_str)
            .map(str::to_string);
        let score = entry.get("score").and_then(Value::as_f64);
        let text = |field: &str| {
            entry
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        let annotated = score.is_some() || text("color") || text("comment");

        match resolver.resolve(id) {
            Ok(resolved) => {
                let mut flags: Vec<String> = resolved.flag.into_iter().collect();
                let tactic = match tactic {
                    Some(t) if !resolved.technique.tactics.iter().any(|own| own == &t) => {
                        flags.push(format!(
                            "{} is not under tactic {t} in {}; tactic dropped",
                            resolved.technique.id, resolver.release.version
                        ));
                        None
                    }
                    other => other,
                };
                scores.push(ImportedScore {
                    technique: resolved.technique.id.clone(),
                    tactic,
                    score,
                    annotated,
                    resolved_from: resolved.from,
                    flagged: (!flags.is_empty()).then(|| flags.join("; ")),
                    index: i,
                });
            }
            Err(reason) => unknown.push(UnknownTechnique {
                technique: id.to_string(),
                tactic,
                score,
                reason,
                index: i,
            }),
        }
    }

    Ok(LayerImport {
        name,
        domain,
        attack_version,
        scores,
        unknown,
        raw,
    })
}

fn attack_version(map: &serde_json::Map<String, Value>) -> Option<String> {
    // nexus-attack writes `attack_release` = "enterprise-attack 18.1".
    let from_metadata = map
        .get("metadata")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| m.get("name").and_then(Value::as_str) == Some("attack_release"))
        .and_then(|m| m.get("value").and_then(Value::as_str))
        .and_then(|v| v.split_whitespace().last())
        .map(str::to_string);
    from_metadata.or_else(|| {
        map.get("versions")
            .and_then(|v| v.get("attack"))
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

struct Resolver<'r> {
    release: &'r Release,
    placer: Placer<'r>,
    diff: Option<&'r ReleaseDiff>,
}

struct Resolved<'r> {
    technique: &'r Technique,
    from: Option<String>,
    flag: Option<String>,
}

impl<'r> Resolver<'r> {
    fn versions(&self) -> String {
        match self.diff {
            Some(d) => format!("between {} and {}", d.old.release, d.new.release),
            None => format!("in {}", self.release.version),
        }
    }

    /// The new ID of an ID the diff says changed (a technique demoted to a
    /// sub-technique keeps its STIX id and gets a new ATT&CK ID).
    fn renamed(&self, id: &str) -> Option<&'r str> {
        let diff = self.diff?;
        diff.techniques
            .changes
            .categories()
            .into_iter()
            .flat_map(|(_, entries)| entries.iter())
            .find(|e| {
                e.old_id
                    .as_deref()
                    .is_some_and(|old| old.eq_ignore_ascii_case(id))
            })
            .map(|e| e.id.as_str())
    }

    /// The replacement the diff names for a revoked ID.
    fn diff_replacement(&self, id: &str) -> Option<&'r str> {
        self.diff?
            .techniques
            .changes
            .revoked
            .iter()
            .find(|e| e.id.eq_ignore_ascii_case(id))
            .and_then(|e| e.replaced_by.as_deref())
    }

    fn resolve(&self, layer_id: &str) -> Result<Resolved<'r>, String> {
        let id = layer_id.trim().to_ascii_uppercase();
        let renamed = self
            .renamed(&id)
            .filter(|new| !new.eq_ignore_ascii_case(&id))
            .and_then(|new| self.placer.technique(new));
        if let Some(t) = renamed {
            return Ok(Resolved {
                technique: t,
                from: Some(layer_id.to_string()),
                flag: Some(format!(
                    "ID changed from {id} to {} {}",
                    t.id,
                    self.versions()
                )),
            });
        }

        let Some(found) = self.placer.technique(&id) else {
            let removed = self.diff.is_some_and(|d| {
                d.techniques
                    .changes
                    .removed
                    .iter()
                    .any(|e| e.id.eq_ignore_ascii_case(&id))
            });
            return Err(if removed {
                format!("{id} was removed {}", self.versions())
            } else {
                format!(
                    "{id} is not in {} {}",
                    self.release.domain, self.release.version
                )
            });
        };
        if found.status.is_live() {
            return Ok(Resolved {
                technique: found,
                from: None,
                flag: None,
            });
        }
        if !found.status.revoked {
            return Ok(Resolved {
                technique: found,
                from: None,
                flag: Some(format!("{id} is deprecated in {}", self.release.version)),
            });
        }

        // Follow revoked-by links; ATT&CK has chains (A revoked by B, later
        // B revoked by C), and a cycle must not loop forever.
        let mut current = found;
        for _ in 0..8 {
            let next = current
                .status
                .revoked_by
                .as_deref()
                .or_else(|| self.diff_replacement(&current.id))
                .and_then(|r| self.placer.technique(r));
            match next {
                Some(t) if t.status.is_live() => {
                    return Ok(Resolved {
                        technique: t,
                        from: Some(layer_id.to_string()),
                        flag: Some(format!(
                            "{id} is revoked in {}, replaced by {}",
                            self.release.version, t.id
                        )),
                    });
                }
                Some(t) if t.status.revoked => current = t,
                _ => break,
            }
        }
        Err(format!(
            "{id} is revoked in {} and no live replacement is named",
            self.release.version
        ))
    }
}

/// Whether a technique shows in the layer, in the org's activity, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComparisonStatus {
    /// Annotated in the layer and seen in the org.
    Both,
    /// Annotated in the layer only (e.g. a threat actor's technique the org
    /// has no detection activity for).
    LayerOnly,
    /// Seen in the org only.
    OrgOnly,
}

/// One technique of a layer-versus-org comparison, at the exact ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Technique ATT&CK ID in the active release.
    pub technique: String,
    /// Highest score the layer gives it across tactics, when it scores it.
    pub layer_score: Option<f64>,
    /// The org's mappings of it (per-technique total, no double counting).
    pub org_count: u64,
    /// Where it shows.
    pub status: ComparisonStatus,
}

/// Compares a layer's annotated techniques with the org's activity in a
/// view, by technique ID in ascending order.
pub fn compare(layer: &LayerImport, view: &MatrixView) -> Vec<Comparison> {
    let mut layer_scores: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for s in layer.scores.iter().filter(|s| s.annotated) {
        let slot = layer_scores.entry(s.technique.as_str()).or_insert(None);
        if let Some(score) = s.score {
            *slot = Some(slot.map_or(score, |old: f64| old.max(score)));
        }
    }
    let org: BTreeMap<&str, u64> = view
        .techniques
        .iter()
        .filter(|t| t.count > 0)
        .map(|t| (t.technique.as_str(), t.count))
        .collect();

    let mut ids: Vec<&str> = layer_scores.keys().chain(org.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let org_count = org.get(id).copied().unwrap_or(0);
            let status = match (layer_scores.contains_key(id), org_count > 0) {
                (true, true) => ComparisonStatus::Both,
                (true, false) => ComparisonStatus::LayerOnly,
                _ => ComparisonStatus::OrgOnly,
            };
            Comparison {
                technique: id.to_string(),
                layer_score: layer_scores.get(id).copied().flatten(),
                org_count,
                status,
            }
        })
        .collect()
}
