//! Sources, confidence values and confidence bands.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Who or what proposed a mapping candidate.
///
/// The derived order is the precedence order: `Ai < Rule < Manual`, so
/// `max()` over sources picks the one that wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The AI-assisted text suggester.
    Ai,
    /// A deterministic mapping rule (own rules, rule packs, vendor-declared context).
    Rule,
    /// A person: an analyst's or lead's override.
    Manual,
}

impl Source {
    /// The source as the API spells it (`manual`, `rule`, `ai`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ai => "ai",
            Source::Rule => "rule",
            Source::Manual => "manual",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mapping source `{0}` (expected manual, rule or ai)")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ai" => Ok(Source::Ai),
            "rule" => Ok(Source::Rule),
            "manual" => Ok(Source::Manual),
            _ => Err(UnknownSource(s.to_string())),
        }
    }
}

/// Why a number is not a confidence or a set of band thresholds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfidenceError {
    /// Outside 0.0..=1.0, or not a number.
    #[error("confidence {0} is outside 0.0..=1.0")]
    OutOfRange(f64),
    /// Thresholds not in the order 0 < medium < high <= 1.
    #[error(
        "band thresholds must satisfy 0 < medium < high <= 1 (got medium {medium}, high {high})"
    )]
    Thresholds {
        /// The lower bound of the medium band.
        medium: f64,
        /// The lower bound of the high band.
        high: f64,
    },
}

/// How sure a source is of a mapping: a finite number in `0.0..=1.0`.
///
/// Built only through [`Confidence::new`] (or deserialisation, which calls it),
/// so every value held is in range.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Confidence(f64);

impl Confidence {
    /// Certain: what a person's override carries unless they say otherwise.
    pub const CERTAIN: Confidence = Confidence(1.0);

    /// Validates `value`; NaN, infinities and values outside `0..=1` are refused.
    pub fn new(value: f64) -> Result<Self, ConfidenceError> {
        if value.is_finite() && (0.0..=1.0).contains(&value) {
            Ok(Confidence(value))
        } else {
            Err(ConfidenceError::OutOfRange(value))
        }
    }

    /// Clamps any finite number into range (NaN becomes 0): for values this
    /// crate computes itself, such as aggregates, where rounding may stray.
    pub fn saturating(value: f64) -> Self {
        if value.is_nan() {
            Confidence(0.0)
        } else {
            Confidence(value.clamp(0.0, 1.0))
        }
    }

    /// The number.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Confidence {
    type Error = ConfidenceError;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Confidence::new(value)
    }
}

impl From<Confidence> for f64 {
    fn from(c: Confidence) -> f64 {
        c.0
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

/// A coarse reading of a confidence, what the review queue and the matrix show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Below the medium threshold.
    Low,
    /// From the medium threshold up to (excluding) the high threshold.
    Medium,
    /// From the high threshold up.
    High,
}

impl Band {
    /// The band as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Low => "low",
            Band::Medium => "medium",
            Band::High => "high",
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the bands start: `low < medium <= medium band < high <= high band`.
///
/// The default is the design's `low < 0.40 <= medium < 0.70 <= high`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawThresholds")]
pub struct BandThresholds {
    medium: f64,
    high: f64,
}

/// Unvalidated thresholds, as configuration files spell them.
#[derive(Deserialize)]
struct RawThresholds {
    medium: f64,
    high: f64,
}

impl TryFrom<RawThresholds> for BandThresholds {
    type Error = ConfidenceError;

    fn try_from(raw: RawThresholds) -> Result<Self, Self::Error> {
        BandThresholds::new(raw.medium, raw.high)
    }
}

impl Default for BandThresholds {
    fn default() -> Self {
        BandThresholds {
            medium: 0.40,
            high: 0.70,
        }
    }
}

impl BandThresholds {
    /// Validates `0 < medium < high <= 1`: a band may not be empty, and a
    /// confidence of 0 is always low.
    pub fn new(medium: f64, high: f64) -> Result<Self, ConfidenceError> {
        let ordered = medium.is_finite() && high.is_finite() && 0.0 < medium && medium < high;
        if ordered && high <= 1.0 {
            Ok(BandThresholds { medium, high })
        } else {
            Err(ConfidenceError::Thresholds { medium, high })
        }
    }

    /// The lowest confidence of the medium band.
    pub fn medium(&self) -> f64 {
        self.medium
    }

    /// The lowest confidence of the high band.
    pub fn high(&self) -> f64 {
        self.high
    }

    /// The band of a confidence.
    pub fn band(&self, confidence: Confidence) -> Band {
        let c = confidence.value();
        if c >= self.high {
            Band::High
        } else if c >= self.medium {
            Band::Medium
        } else {
            Band::Low
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_order_is_manual_rule_ai() {
        let mut sources = vec![Source::Rule, Source::Manual, Source::Ai];
        sources.sort();
        assert_eq!(sources, vec![Source::Ai, Source::Rule, Source::Manual]);
        assert_eq!("MANUAL".parse::<Source>().unwrap(), Source::Manual);
        assert!("human".parse::<Source>().is_err());
    }

    #[test]
    fn confidence_rejects_out_of_range_and_nan() {
        for bad in [-0.01, 1.0001, f64::NAN, f64::INFINITY] {
            assert!(Confidence::new(bad).is_err(), "{bad} must be refused");
        }
        assert_eq!(Confidence::new(0.0).unwrap().value(), 0.0);
        assert_eq!(Confidence::new(1.0).unwrap().value(), 1.0);
        assert!(serde_json::from_str::<Confidence>("1.5").is_err());
        assert_eq!(
            serde_json::from_str::<Confidence>("0.25").unwrap().value(),
            0.25
        );
        assert_eq!(Confidence::saturating(1.0000001).value(), 1.0);
        assert_eq!(Confidence::saturating(f64::NAN).value(), 0.0);
    }

    #[test]
    fn default_bands_follow_the_design_boundaries() {
        let t = BandThresholds::default();
        let band = |v: f64| t.band(Confidence::new(v).unwrap());
        assert_eq!(band(0.0), Band::Low);
        assert_eq!(band(0.399), Band::Low);
        assert_eq!(band(0.40), Band::Medium);
        assert_eq!(band(0.699), Band::Medium);
        assert_eq!(band(0.70), Band::High);
        assert_eq!(band(1.0), Band::High);
    }

    #[test]
    fn thresholds_are_configurable_and_validated() {
        let t = BandThresholds::new(0.5, 0.9).unwrap();
        assert_eq!(t.band(Confidence::new(0.7).unwrap()), Band::Medium);
        assert!(BandThresholds::new(0.7, 0.4).is_err());
        assert!(BandThresholds::new(0.0, 0.4).is_err());
        assert!(BandThresholds::new(0.4, 1.2).is_err());
        assert!(serde_json::from_str::<BandThresholds>(r#"{"medium":0.8,"high":0.3}"#).is_err());
        let parsed: BandThresholds = serde_json::from_str(r#"{"medium":0.3,"high":0.6}"#).unwrap();
        assert_eq!((parsed.medium(), parsed.high()), (0.3, 0.6));
    }
}
