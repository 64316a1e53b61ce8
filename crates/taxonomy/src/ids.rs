//! Validated ATT&CK identifiers.
//!
//! ATT&CK external IDs are the stable names users type (`T1059.001`, `TA0002`);
//! parsing them once here means every other crate can rely on their shape.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not an ATT&CK identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} ID (expected {expected})")]
pub struct IdError {
    /// The rejected input.
    pub input: String,
    /// The kind of identifier that was expected.
    pub kind: &'static str,
    /// The expected shape, for the user.
    pub expected: &'static str,
}

/// A technique or sub-technique ID: `T` + 4 digits, optionally `.` + 3 digits.
///
/// Parsing is case-insensitive on the leading letter (Sigma tags are lower
/// case) and always displays upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TechniqueId(String);

impl TechniqueId {
    /// Parses `T1059`, `T1059.001`, `t1059.001`; rejects `T1059-1`, `T105`.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let err = || IdError {
            input: input.to_string(),
            kind: "technique",
            expected: "T followed by 4 digits, optionally .NNN",
        };
        let s = input.trim();
        let rest = s.strip_prefix(['T', 't']).ok_or_else(err)?;
        let (main, sub) = match rest.split_once('.') {
            Some((m, s)) => (m, Some(s)),
            None => (rest, None),
        };
        let digits = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(main, 4) || sub.is_some_and(|s| !digits(s, 3)) {
            return Err(err());
        }
        Ok(Self(format!("T{rest}")))
    }

    /// The ID as ATT&CK spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `T1059.001`, false for `T1059`.
    pub fn is_subtechnique(&self) -> bool {
        self.0.contains('.')
    }

    /// The parent technique of a sub-technique; a technique is its own parent.
    pub fn parent(&self) -> TechniqueId {
        match self.0.split_once('.') {
            Some((p, _)) => TechniqueId(p.to_string()),
            None => self.clone(),
        }
    }
}

/// A tactic ID: `TA` + 4 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TacticId(String);

impl TacticId {
    /// Parses `TA0002` (case-insensitive prefix).
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        let ok = s.len() == 6
            && s[..2].eq_ignore_ascii_case("TA")
            && s[2..].bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(IdError {
                input: input.to_string(),
                kind: "tactic",
                expected: "TA followed by 4 digits",
            });
        }
        Ok(Self(format!("TA{}", &s[2..])))
    }

    /// The ID as ATT&CK spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! id_traits {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_traits!(TechniqueId);
id_traits!(TacticId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technique_ids_parse_and_normalise() {
        assert_eq!(
            TechniqueId::parse("t1059.001").unwrap().as_str(),
            "T1059.001"
        );
        assert_eq!(
            TechniqueId::parse("T1059").unwrap().parent().as_str(),
            "T1059"
        );
        assert_eq!(
            TechniqueId::parse("T1059.001").unwrap().parent().as_str(),
            "T1059"
        );
        for bad in [
            "t1059-1", "T105", "T10590", "T1059.01", "TA0001", "", "T1059.",
        ] {
            assert!(TechniqueId::parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn tactic_ids_parse() {
        assert_eq!(TacticId::parse("ta0002").unwrap().as_str(), "TA0002");
        assert!(TacticId::parse("TA002").is_err());
        assert!(TacticId::parse("T1059").is_err());
    }
}
