//! ATT&CK Navigator layers (layer format 4.5): export of a matrix view,
//! multi-layer files and a validator of the format.
//!
//! A layer names techniques per tactic column (`techniqueID` + `tactic`
//! shortname), so each matrix cell becomes one layer entry and a technique
//! shown under several tactics keeps its per-tactic score.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use taxonomy::Release;

use crate::matrix::{Cell, MatrixView};

/// The layer format version this module writes and validates.
pub const LAYER_FORMAT_VERSION: &str = "4.5";

/// The Navigator version written into `versions.navigator`: the first
/// Navigator release that reads layer format 4.5.
pub const NAVIGATOR_VERSION: &str = "5.1.0";

/// Gradient colours, from no activity (white) to the most active cell (red).
const GRADIENT: [&str; 3] = ["#ffffff", "#ffe766", "#ff6666"];

/// Which cell figure becomes the layer score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreBy {
    /// Raw number of mappings.
    #[default]
    Count,
    /// Severity-weighted intensity.
    Intensity,
}

impl ScoreBy {
    /// The name written into the layer (`count`, `intensity`).
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreBy::Count => "count",
            ScoreBy::Intensity => "intensity",
        }
    }

    fn score(self, cell: &Cell) -> f64 {
        match self {
            ScoreBy::Count => cell.count as f64,
            ScoreBy::Intensity => cell.intensity,
        }
    }

    /// The score as written: counts stay integers in the JSON.
    fn score_value(self, cell: &Cell) -> Value {
        match self {
            ScoreBy::Count => json!(cell.count),
            ScoreBy::Intensity => json!(cell.intensity),
        }
    }
}

/// Who produced a layer and when, written into the layer `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The org the activity belongs to.
    pub org: String,
    /// When the view was computed (RFC 3339); given by the caller so that
    /// the export itself stays a pure function.
    pub generated_at: String,
    /// Who asked for the export (user or token name), when known.
    pub requested_by: Option<String>,
}

/// How a view becomes a layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerOptions {
    /// Layer name.
    pub name: String,
    /// Layer description.
    pub description: String,
    /// List every technique of the release, unannotated ones included (no
    /// score), instead of the annotated ones only.
    pub full_matrix: bool,
    /// Which figure becomes the score.
    pub score: ScoreBy,
    /// Provenance written into the layer metadata.
    pub provenance: Provenance,
}

/// The ATT&CK major version Navigator expects in `versions.attack` (`18`
/// for release `18.1`); the full release goes into the layer metadata.
fn attack_major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// Writes a view as a Navigator layer (format 4.5).
///
/// Each cell becomes a technique entry with its tactic shortname, score,
/// a comment and metadata (count, intensity, confidence bands, sources,
/// anomaly); the layer metadata carries the provenance, the release, the
/// filter, the exclusions applied, the intensity formula and a confidence
/// summary. With `full_matrix`, every live technique of the release gets an
/// entry in each of its tactics, unannotated ones without a score.
pub fn navigator_layer(view: &MatrixView, release: &Release, options: &LayerOptions) -> Value {
    let mut techniques: Vec<Value> = Vec::new();
    let expanded: HashSet<(&str, &str)> = view
        .cells
        .iter()
        .filter_map(|c| Some((c.tactic.as_str(), c.parent.as_deref()?)))
        .collect();
    for cell in &view.cells {
        let show_subs = expanded.contains(&(cell.tactic.as_str(), cell.technique.as_str()));
        techniques.push(cell_entry(cell, options.score, show_subs));
    }

    if options.full_matrix {
        let annotated: HashSet<(&str, &str)> = view
            .cells
            .iter()
            .map(|c| (c.tactic_shortname.as_str(), c.technique.as_str()))
            .collect();
        for technique in release.techniques.iter().filter(|t| t.status.is_live()) {
            let tactics = release.tactics_of(technique);
            if tactics.is_empty() {
                // No column to put it in: an entry without a tactic still
                // lists it, and Navigator applies it wherever it appears.
                techniques.push(json!({
                    "techniqueID": technique.id,
                    "enabled": true,
                    "comment": "",
                    "metadata": [],
                    "links": [],
                    "showSubtechniques": false,
                }));
                continue;
            }
            for tactic in tactics {
                if annotated.contains(&(tactic.shortname.as_str(), technique.id.as_str())) {
                    continue;
                }
                techniques.push(json!({
                    "techniqueID": technique.id,
                    "tactic": tactic.shortname,
                    "enabled": true,
                    "comment": "",
                    "metadata": [],
                    "links": [],
                    "showSubtechniques": false,
                }));
            }
        }
    }

    let max_score = view
        .cells
        .iter()
        .map(|c| options.score.score(c))
        .fold(0.0_f64, f64::max);
    // A gradient needs minValue < maxValue; an empty view still gets one.
    let max_value = if max_score > 0.0 { max_score } else { 1.0 };

    json!({
        "name": options.name,
        "versions": {
            "attack": attack_major(&release.version),
            "navigator": NAVIGATOR_VERSION,
            "layer": LAYER_FORMAT_VERSION,
        },
        "domain": release.domain.as_str(),
        "description": options.description,
        "filters": { "platforms": platforms(view, release) },
        "sorting": 0,
        "layout": {
            "layout": "side",
            "aggregateFunction": "average",
            "showID": true,
            "showName": true,
            "showAggregateScores": false,
            "countUnscored": false,
            "expandedSubtechniques": "annotated",
        },
        "hideDisabled": false,
        "techniques": techniques,
        "gradient": {
            "colors": GRADIENT,
            "minValue": 0,
            "maxValue": max_value,
        },
        "legendItems": [
            { "label": "no activity", "color": GRADIENT[0] },
            { "label": format!("highest {}: {}", options.score.as_str(), max_score), "color": GRADIENT[2] },
        ],
        "metadata": layer_metadata(view, release, options),
        "links": [],
        "showTacticRowBackground": false,
        "tacticRowBackground": "#dddddd",
        "selectTechniquesAcrossTactics": true,
        "selectSubtechniquesWithParent": false,
        "selectVisibleTechniques": false,
    })
}

/// Several layers as one file: a JSON array, as Navigator opens it.
pub fn multi_layer(layers: Vec<Value>) -> Value {
    Value::Array(layers)
}

fn platforms(view: &MatrixView, release: &Release) -> Vec<String> {
    if !view.filter.platforms.is_empty() {
        return view.filter.platforms.clone();
    }
    let live: BTreeSet<&str> = release
        .techniques
        .iter()
        .filter(|t| t.status.is_live())
        .flat_map(|t| t.platforms.iter().map(String::as_str))
        .collect();
    live.into_iter().map(str::to_string).collect()
}

fn meta(name: &str, value: impl Into<String>) -> Value {
    json!({ "name": name, "value": value.into() })
}

fn cell_entry(cell: &Cell, score: ScoreBy, show_subtechniques: bool) -> Value {
    let mut metadata = vec![
        meta("count", cell.count.to_string()),
        meta("intensity", cell.intensity.to_string()),
        meta("low_confidence", cell.low_confidence.to_string()),
        meta(
            "confidence_bands",
            format!(
                "low {}, medium {}, high {}",
                cell.bands.low, cell.bands.medium, cell.bands.high
            ),
        ),
        meta(
            "sources",
            format!(
                "manual {}, rule {}, ai {}",
                cell.sources.manual, cell.sources.rule, cell.sources.ai
            ),
        ),
    ];
    if let Some(anomaly) = &cell.anomaly {
        metadata.push(json!({ "divider": true }));
        metadata.push(meta(
            "anomaly",
            format!(
                "observed {} against baseline median {} (robust z {:.2})",
                anomaly.observed, anomaly.baseline, anomaly.score
            ),
        ));
    }
    json!({
        "techniqueID": cell.technique,
        "tactic": cell.tactic_shortname,
        "score": score.score_value(cell),
        "comment": format!(
            "{} mappings, intensity {:.2}, {:.0}% low confidence",
            cell.count,
            cell.intensity,
            cell.low_confidence_share * 100.0
        ),
        "enabled": true,
        "metadata": metadata,
        "links": [],
        "showSubtechniques": show_subtechniques,
    })
}

fn layer_metadata(view: &MatrixView, release: &Release, options: &LayerOptions) -> Vec<Value> {
    let provenance = &options.provenance;
    let (count, low) = view.techniques.iter().fold((0u64, 0u64), |(c, l), t| {
        (c + t.count, l + t.low_confidence)
    });
    let low_share = if count == 0 {
        0.0
    } else {
        low as f64 / count as f64
    };
    let exclusions = view
        .exclusions_applied
        .iter()
        .map(|e| {
            format!(
                "{} [{}, {}) {} mappings: {}",
                e.window.connector, e.window.from, e.window.to, e.mappings_removed, e.window.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut metadata = vec![
        meta("generator", "nexus-attack"),
        meta("org", provenance.org.clone()),
        meta("generated_at", provenance.generated_at.clone()),
    ];
    if let Some(who) = &provenance.requested_by {
        metadata.push(meta("requested_by", who.clone()));
    }
    metadata.extend([
        meta(
            "attack_release",
            format!("{} {}", release.domain, release.version),
        ),
        meta("score", options.score.as_str()),
        meta("formula", view.formula.clone()),
        meta(
            "filters",
            serde_json::to_string(&view.filter).unwrap_or_else(|e| format!("unprintable: {e}")),
        ),
        meta(
            "exclusions_applied",
            if exclusions.is_empty() {
                "none".to_string()
            } else {
                exclusions
            },
        ),
        meta(
            "confidence",
            format!(
                "{count} mappings, {low} in the low band ({:.1}%)",
                low_share * 100.0
            ),
        ),
    ]);
    metadata
}

/// One way a layer departs from the layer format 4.5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerProblem {
    /// JSON pointer to the offending value (`/techniques/3/score`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for LayerProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects problems while walking a layer.
struct Checker {
    problems: Vec<LayerProblem>,
}

/// The JSON type of a value, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|hex| {
        matches!(hex.len(), 3 | 6 | 8) && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// `T` + 4 digits, optionally `.` + 3 digits: the shape of every ATT&CK
/// technique ID in all three domains.
fn is_technique_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('T') else {
        return false;
    };
    let (base, sub) = match rest.split_once('.') {
        Some((base, sub)) => (base, Some(sub)),
        None => (rest, None),
    };
    let digits = |d: &str, n: usize| d.len() == n && d.chars().all(|c| c.is_ascii_digit());
    digits(base, 4) && sub.is_none_or(|s| digits(s, 3))
}

/// Tactic shortnames are lowercase words joined by hyphens.
fn is_shortname(s: &str) -> bool {
    !s.is_empty()
        && s.split('-')
            .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()))
}

impl Checker {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(LayerProblem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn expect(&mut self, path: &str, value: &Value, ok: bool, wanted: &str) -> bool {
        if !ok {
            self.problem(path, format!("must be {wanted}, found {}", kind(value)));
        }
        ok
    }

    fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                self.expect(path, other, false, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, value: &Value) {
        self.expect(path, value, value.is_boolean(), "a boolean");
    }

    fn number(&mut self, path: &str, value: &Value) -> Option<f64> {
        if self.expect(path, value, value.is_number(), "a number") {
            value.as_f64()
        } else {
            None
        }
    }

    fn color(&mut self, path: &str, value: &Value, allow_empty: bool) {
        let wrong = self
            .string(path, value)
            .filter(|s| !(is_hex_color(s) || (allow_empty && s.is_empty())));
        if let Some(s) = wrong {
            self.problem(
                path,
                format!("`{s}` is not a hex colour (#rgb, #rrggbb, #rrggbbaa)"),
            );
        }
    }

    fn one_of(&mut self, path: &str, value: &Value, allowed: &[&str]) {
        let wrong = self
            .string(path, value)
            .filter(|s| !allowed.contains(&s.as_str()));
        if let Some(s) = wrong {
            self.problem(path, format!("`{s}` is not one of {}", allowed.join(", ")));
        }
    }

    fn array<'v>(&mut self, path: &str, value: &'v Value) -> &'v [Value] {
        match value {
            Value::Array(items) => items,
            other => {
                self.expect(path, other, false, "an array");
                &[]
            }
        }
    }

    fn object<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.expect(path, other, false, "an object");
                None
            }
        }
    }

    /// `metadata`: `[{name, value}]` or `[{divider: true}]`.
    fn metadata(&mut self, path: &str, value: &Value) {
        for (i, item) in self.array(path, value).iter().enumerate() {
            let at = format!("{path}/{i}");
            let Some(map) = self.object(&at, item) else {
                continue;
            };
            if let Some(divider) = map.get("divider") {
                self.boolean(&format!("{at}/divider"), divider);
                continue;
            }
            for field in ["name", "value"] {
                match map.get(field) {
                    Some(v) => {
                        self.string(&format!("{at}/{field}"), v);
                    }
                    None => self.problem(&at, format!("metadata entry lacks `{field}`")),
                }
            }
        }
    }

    /// `links`: `[{label, url}]` or `[{divider: true}]`.
    fn links(&mut self, path: &str, value: &Value) {
        for (i, item) in self.array(path, value).iter().enumerate() {
            let at = format!("{path}/{i}");
            let Some(map) = self.object(&at, item) else {
                continue;
            };
            if let Some(divider) = map.get("divider") {
                self.boolean(&format!("{at}/divider"), divider);
                continue;
            }
            for field in ["label", "url"] {
                match map.get(field) {
                    Some(v) => {
                        self.string(&format!("{at}/{field}"), v);
                    }
                    None => self.problem(&at, format!("link lacks `{field}`")),
                }
            }
        }
    }

    fn technique(&mut self, at: &str, item: &Value) {
        let Some(map) = self.object(at, item) else {
            return;
        };
        match map.get("techniqueID") {
            Some(v) => {
                let path = format!("{at}/techniqueID");
                if let Some(id) = self.string(&path, v).filter(|id| !is_technique_id(id)) {
                    self.problem(
                        &path,
                        format!("`{id}` is not a technique ID (T1234 or T1234.001)"),
                    );
                }
            }
            None => self.problem(at, "technique entry lacks `techniqueID`"),
        }
        for (field, value) in map {
            let path = format!("{at}/{field}");
            match field.as_str() {
                "tactic" => {
                    if let Some(s) = self.string(&path, value).filter(|s| !is_shortname(s)) {
                        self.problem(&path, format!("`{s}` is not a tactic shortname"));
                    }
                }
                "score" => {
                    self.number(&path, value);
                }
                "color" => self.color(&path, value, true),
                "comment" => {
                    self.string(&path, value);
                }
                "enabled" | "showSubtechniques" => self.boolean(&path, value),
                "metadata" => self.metadata(&path, value),
                "links" => self.links(&path, value),
                _ => {}
            }
        }
    }

    fn layout(&mut self, path: &str, value: &Value) {
        let Some(map) = self.object(path, value) else {
            return;
        };
        for (field, value) in map {
            let at = format!("{path}/{field}");
            match field.as_str() {
                "layout" => self.one_of(&at, value, &["side", "flat", "mini"]),
                "aggregateFunction" => {
                    self.one_of(&at, value, &["average", "min", "max", "sum"]);
                }
                "expandedSubtechniques" => self.one_of(&at, value, &["none", "annotated", "all"]),
                "showID" | "showName" | "showAggregateScores" | "countUnscored" => {
                    self.boolean(&at, value);
                }
                _ => {}
            }
        }
    }

    fn gradient(&mut self, path: &str, value: &Value) {
        let Some(map) = self.object(path, value) else {
            return;
        };
        match map.get("colors") {
            Some(colors) => {
                let items = self.array(&format!("{path}/colors"), colors);
                if colors.is_array() && items.len() < 2 {
                    self.problem(
                        &format!("{path}/colors"),
                        "a gradient needs at least 2 colours",
                    );
                }
                for (i, c) in items.iter().enumerate() {
                    self.color(&format!("{path}/colors/{i}"), c, false);
                }
            }
            None => self.problem(path, "gradient lacks `colors`"),
        }
        let mut bound = |field: &str| match map.get(field) {
            Some(v) => self.number(&format!("{path}/{field}"), v),
            None => {
                self.problem(path, format!("gradient lacks `{field}`"));
                None
            }
        };
        let (min, max) = (bound("minValue"), bound("maxValue"));
        match (min, max) {
            (Some(min), Some(max)) if min > max => {
                self.problem(path, format!("minValue {min} is above maxValue {max}"));
            }
            _ => {}
        }
    }
}

/// Checks a layer against the Navigator layer format 4.5: required fields
/// (`name`, `versions.layer`, `domain`), the type of every known field,
/// the allowed values of enumerations, technique IDs, tactic shortnames and
/// colours. Unknown fields are allowed, as Navigator ignores them.
pub fn validate_layer(layer: &Value) -> Result<(), Vec<LayerProblem>> {
    let mut check = Checker {
        problems: Vec::new(),
    };
    let Some(map) = check.object("", layer) else {
        return Err(check.problems);
    };

    for required in ["name", "versions", "domain"] {
        if !map.contains_key(required) {
            check.problem("", format!("layer lacks `{required}`"));
        }
    }
    for (field, value) in map {
        let path = format!("/{field}");
        match field.as_str() {
            "name" | "description" => {
                check.string(&path, value);
            }
            "versions" => {
                let Some(versions) = check.object(&path, value) else {
                    continue;
                };
                for (key, v) in versions {
                    if matches!(key.as_str(), "attack" | "navigator" | "layer") {
                        check.string(&format!("{path}/{key}"), v);
                    }
                }
                match versions.get("layer").and_then(Value::as_str) {
                    Some(LAYER_FORMAT_VERSION) => {}
                    Some(other) => check.problem(
                        &format!("{path}/layer"),
                        format!("layer format `{other}` is not {LAYER_FORMAT_VERSION}"),
                    ),
                    None => check.problem(&path, "versions lacks `layer`"),
                }
            }
            "domain" => {
                check.one_of(
                    &path,
                    value,
                    &["enterprise-attack", "mobile-attack", "ics-attack"],
                );
            }
            "filters" => {
                let platforms = check
                    .object(&path, value)
                    .and_then(|filters| filters.get("platforms"));
                if let Some(platforms) = platforms {
                    let at = format!("{path}/platforms");
                    for (i, p) in check.array(&at, platforms).iter().enumerate() {
                        check.string(&format!("{at}/{i}"), p);
                    }
                }
            }
            "sorting" => {
                let wrong = check
                    .number(&path, value)
                    .filter(|n| ![0.0, 1.0, 2.0, 3.0].contains(n));
                if let Some(n) = wrong {
                    check.problem(&path, format!("sorting {n} is not 0, 1, 2 or 3"));
                }
            }
            "layout" => check.layout(&path, value),
            "hideDisabled"
            | "showTacticRowBackground"
            | "selectTechniquesAcrossTactics"
            | "selectSubtechniquesWithParent"
            | "selectVisibleTechniques" => check.boolean(&path, value),
            "tacticRowBackground" => check.color(&path, value, false),
            "techniques" => {
                for (i, item) in check.array(&path, value).iter().enumerate() {
                    check.technique(&format!("{path}/{i}"), item);
                }
            }
            "gradient" => check.gradient(&path, value),
            "legendItems" => {
                for (i, item) in check.array(&path, value).iter().enumerate() {
                    let at = format!("{path}/{i}");
                    let Some(legend) = check.object(&at, item) else {
                        continue;
                    };
                    match legend.get("label") {
                        Some(v) => {
                            check.string(&format!("{at}/label"), v);
                        }
                        None => check.problem(&at, "legend item lacks `label`"),
                    }
                    match legend.get("color") {
                        Some(v) => check.color(&format!("{at}/color"), v, false),
                        None => check.problem(&at, "legend item lacks `color`"),
                    }
                }
            }
            "metadata" => check.metadata(&path, value),
            "links" => check.links(&path, value),
            _ => {}
        }
    }

    if check.problems.is_empty() {
        Ok(())
    } else {
        Err(check.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        json!({
            "name": "x",
            "versions": { "attack": "18", "navigator": "5.1.0", "layer": "4.5" },
            "domain": "enterprise-attack",
            "techniques": [{ "techniqueID": "T1059.001", "tactic": "execution", "score": 3 }],
        })
    }

    #[test]
    fn minimal_layer_is_valid() {
        assert_eq!(validate_layer(&minimal()), Ok(()));
    }

    #[test]
    fn each_broken_field_is_reported_at_its_path() {
        let mut layer = minimal();
        layer["domain"] = json!("enterprise");
        layer["versions"]["layer"] = json!("4.4");
        layer["techniques"][0]["techniqueID"] = json!("t1059-1");
        layer["techniques"][0]["score"] = json!("high");
        layer["techniques"][0]["tactic"] = json!("Execution");
        layer["techniques"][0]["metadata"] = json!([{ "name": "a" }]);
        layer["gradient"] = json!({ "colors": ["#fff"], "minValue": 5, "maxValue": 1 });
        layer["legendItems"] = json!([{ "label": "l", "color": "red" }]);
        layer["layout"] = json!({ "layout": "wide", "expandedSubtechniques": "some" });
        layer.as_object_mut().expect("object").remove("name");

        let problems = validate_layer(&layer).expect_err("invalid layer");
        let paths: BTreeSet<&str> = problems.iter().map(|p| p.path.as_str()).collect();

        let expected: BTreeSet<&str> = [
            "",
            "/domain",
            "/versions/layer",
            "/techniques/0/techniqueID",
            "/techniques/0/score",
            "/techniques/0/tactic",
            "/techniques/0/metadata/0",
            "/gradient/colors",
            "/gradient",
            "/legendItems/0/color",
            "/layout/layout",
            "/layout/expandedSubtechniques",
        ]
        .into_iter()
        .collect();
        assert_eq!(paths, expected, "{problems:#?}");
    }

    #[test]
    fn technique_id_shapes() {
        assert!(is_technique_id("T1059"));
        assert!(is_technique_id("T0800"));
        assert!(is_technique_id("T1059.001"));
        assert!(!is_technique_id("T1059.1"));
        assert!(!is_technique_id("TA0002"));
        assert!(!is_technique_id("t1059"));
    }
}
