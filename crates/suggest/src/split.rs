//! Procedure examples of a release and the deterministic splits over them.
//!
//! Evaluation split (issue 5): an example is held out when the SHA-256 of its
//! relationship's STIX id string, read as a big-endian integer, is 0 modulo 5.
//! Calibration folds: a training example's fold is the SHA-256 of
//! `calibration:` followed by its STIX id, modulo 5, a rule independent of
//! the first, so the evaluation split stays untouched.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use taxonomy::Release;

/// Prefix of the calibration-fold hash input.
const CALIBRATION_SALT: &str = "calibration:";

/// One procedure example a suggester can learn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcedureExample {
    /// STIX id of the `uses` relationship.
    pub stix_id: String,
    /// STIX id of the technique.
    pub technique_stix_id: String,
    /// ATT&CK ID of the technique (`T1053.005`).
    pub technique_id: String,
    /// The procedure text as published.
    pub description: String,
}

/// The release's procedure examples: relationships that are neither revoked
/// nor deprecated, point at a live technique of the release and have a
/// non-blank description. In the release's order.
pub fn procedure_examples(release: &Release) -> Vec<ProcedureExample> {
    let live: HashMap<&str, &str> = release
        .techniques
        .iter()
        .filter(|t| t.status.is_live())
        .map(|t| (t.stix_id.as_str(), t.id.as_str()))
        .collect();
    release
        .procedures
        .iter()
        .filter(|p| p.status.is_live() && !p.description.trim().is_empty())
        .filter_map(|p| {
            let technique_id = live.get(p.technique_stix_id.as_str())?;
            Some(ProcedureExample {
                stix_id: p.stix_id.clone(),
                technique_stix_id: p.technique_stix_id.clone(),
                technique_id: (*technique_id).to_string(),
                description: p.description.clone(),
            })
        })
        .collect()
}

/// SHA-256 of `text`, read as a big-endian integer, modulo `m` (m > 0).
pub fn sha256_mod(text: &str, m: u32) -> u32 {
    let digest = Sha256::digest(text.as_bytes());
    // Long division one byte at a time: (acc * 256 + byte) mod m never
    // leaves u64 for any u32 modulus.
    let m = u64::from(m.max(1));
    let rest = digest
        .iter()
        .fold(0u64, |acc, &byte| (acc * 256 + u64::from(byte)) % m);
    rest as u32
}

/// Whether the evaluation holds this procedure example out.
pub fn is_held_out(relationship_stix_id: &str) -> bool {
    sha256_mod(relationship_stix_id, 5) == 0
}

/// Number of calibration folds.
pub const CALIBRATION_FOLDS: u32 = 5;

/// The calibration fold (0 to 4) of a training example: SHA-256 of
/// `calibration:` followed by its STIX id, modulo [`CALIBRATION_FOLDS`].
pub fn calibration_fold(relationship_stix_id: &str) -> u32 {
    sha256_mod(
        &format!("{CALIBRATION_SALT}{relationship_stix_id}"),
        CALIBRATION_FOLDS,
    )
}

/// The STIX ids the evaluation holds out of a release.
pub fn held_out_ids(release: &Release) -> HashSet<String> {
    procedure_examples(release)
        .into_iter()
        .map(|p| p.stix_id)
        .filter(|id| is_held_out(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent route to the same residue: 256 = 51 * 5 + 1, so every
    /// power of 256 is 1 modulo 5 and a big-endian number is congruent to the
    /// sum of its bytes.
    fn byte_sum_mod5(text: &str) -> u32 {
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|&b| u32::from(b))
            .sum::<u32>()
            % 5
    }

    #[test]
    fn split_matches_python_hashlib() {
        // Values from Python:
        // int.from_bytes(hashlib.sha256(s.encode()).digest(), "big") % 5
        let cases = [
            ("relationship--00038d0e-7fc7-41c3-9055-edb4d87ea912", 2),
            ("relationship--000aa4d0-315e-40d7-b2b6-76e91ecf0fe8", 3),
            ("relationship--00192a5f-9dc0-445a-b010-d77bd08aac93", 3),
            ("relationship--001ecf24-8276-40d2-ba05-2d20e5c53ec9", 0),
            ("relationship--0023f0a7-26ae-40ec-ac6e-9dacf5217fb9", 2),
            ("relationship--0024d82d-97ea-4dc5-81a1-8738862e1f3b", 1),
            ("", 4),
        ];
        for (id, expected) in cases {
            assert_eq!(sha256_mod(id, 5), expected, "{id}");
            assert_eq!(is_held_out(id), expected == 0, "{id}");
        }
    }

    #[test]
    fn long_division_agrees_with_byte_sum() {
        for i in 0..500 {
            let id = format!("relationship--{i:08x}-0000-4000-8000-000000000000");
            assert_eq!(sha256_mod(&id, 5), byte_sum_mod5(&id), "{id}");
        }
    }

    #[test]
    fn about_one_in_five_is_held_out_and_calibration_is_independent() {
        let ids: Vec<String> = (0..5000).map(|i| format!("relationship--{i}")).collect();
        let held = ids.iter().filter(|id| is_held_out(id)).count();
        let calibration = ids.iter().filter(|id| calibration_fold(id) == 0).count();
        let both = ids
            .iter()
            .filter(|id| is_held_out(id) && calibration_fold(id) == 0)
            .count();
        // Binomial(5000, 0.2): mean 1000, sd 28; 5 sd either side.
        assert!((860..=1140).contains(&held), "{held}");
        assert!((860..=1140).contains(&calibration), "{calibration}");
        // Independent rules: about 1/25 in both.
        assert!((120..=280).contains(&both), "{both}");
    }
}
