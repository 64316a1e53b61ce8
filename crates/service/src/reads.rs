//! Taxonomy reads against the active dataset of a domain.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use taxonomy::{Domain, Release, Technique};

use crate::{
    Action, Actor, App, DatasetRef, Page, PageRequest, Result, ServiceError, StatusFilter,
    TacticList, TechniqueDetail, TechniqueFilter, TechniquePage,
};

impl App {
    /// The domain's live tactics in matrix order.
    pub async fn tactics(&self, actor: &Actor, domain: Domain) -> Result<TacticList> {
        let (dataset, release) = self.active_release(actor, domain).await?;

        let mut tactics: Vec<_> = release
            .tactics
            .iter()
            .filter(|t| t.status.is_live())
            .cloned()
            .collect();
        // Tactics a matrix lists come first, in its order; any other live
        // tactic follows in bundle order (the sort is stable).
        tactics.sort_by_key(|t| t.matrix_order.unwrap_or(usize::MAX));
        Ok(TacticList { dataset, tactics })
    }

    /// Techniques (and sub-techniques unless excluded) matching the filter,
    /// ordered by ATT&CK ID, one page at a time.
    pub async fn techniques(
        &self,
        actor: &Actor,
        domain: Domain,
        filter: &TechniqueFilter,
        page: &PageRequest,
    ) -> Result<TechniquePage> {
        let (dataset, release) = self.active_release(actor, domain).await?;
        let tactic = match &filter.tactic {
            Some(wanted) => {
                Some(
                    release
                        .tactic(wanted)
                        .ok_or_else(|| ServiceError::InvalidInput {
                            field: "tactic".into(),
                            message: format!(
                                "`{wanted}` names no tactic of {domain} {}",
                                dataset.release
                            ),
                        })?,
                )
            }
            None => None,
        };
        let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let limit = page.effective_limit();

        let mut matching: Vec<&Technique> = release
            .techniques
            .iter()
            .filter(|t| match filter.status {
                StatusFilter::Live => t.status.is_live(),
                StatusFilter::Deprecated => t.status.deprecated && !t.status.revoked,
                StatusFilter::Revoked => t.status.revoked,
                StatusFilter::All => true,
            })
            .filter(|t| !(filter.exclude_subtechniques && t.is_subtechnique))
            .filter(|t| tactic.is_none_or(|tactic| t.tactics.contains(&tactic.shortname)))
            .filter(|t| {
                filter.platform.as_ref().is_none_or(|p| {
                    t.platforms
                        .iter()
                        .any(|tp| tp.eq_ignore_ascii_case(p.trim()))
                })
            })
            .collect();
        // ATT&CK ID, then STIX id: revoked objects may share an ATT&CK ID with
        // their replacement, so the ID alone is not a total order.
        matching.sort_by(|a, b| (&a.id, &a.stix_id).cmp(&(&b.id, &b.stix_id)));
        let start = match &after {
            Some((id, stix)) => {
                matching.partition_point(|t| (t.id.as_str(), t.stix_id.as_str()) <= (id, stix))
            }
            None => 0,
        };
        let items: Vec<Technique> = matching[start..]
            .iter()
            .take(limit)
            .map(|t| (*t).clone())
            .collect();
        let next_cursor = match items.last() {
            Some(last) if start + items.len() < matching.len() => {
                Some(encode_cursor(&last.id, &last.stix_id))
            }
            _ => None,
        };
        Ok(TechniquePage {
            dataset,
            page: Page { items, next_cursor },
        })
    }

    /// One technique (any status) with its parent, sub-techniques and replacement.
    pub async fn technique(
        &self,
        actor: &Actor,
        domain: Domain,
        id: &str,
    ) -> Result<TechniqueDetail> {
        let wanted = taxonomy::TechniqueId::parse(id).map_err(|e| ServiceError::InvalidInput {
            field: "technique".into(),
            message: e.to_string(),
        })?;
        let (dataset, release) = self.active_release(actor, domain).await?;
        let technique = release
            .technique(wanted.as_str())
            .ok_or_else(|| ServiceError::NotFound {
                kind: "technique",
                id: wanted.to_string(),
            })?
            .clone();

        let parent = technique
            .parent
            .as_deref()
            .filter(|_| technique.is_subtechnique)
            .and_then(|p| release.technique(p))
            .cloned();
        let mut subtechniques: Vec<Technique> = release
            .techniques
            .iter()
            .filter(|t| t.is_subtechnique && t.parent.as_deref() == Some(technique.id.as_str()))
            .cloned()
            .collect();
        subtechniques.sort_by(|a, b| (&a.id, &a.stix_id).cmp(&(&b.id, &b.stix_id)));
        let replacement = technique
            .status
            .revoked_by
            .as_deref()
            .and_then(|r| release.technique(r))
            .cloned();
        Ok(TechniqueDetail {
            dataset,
            technique,
            parent,
            subtechniques,
            replacement,
        })
    }

    /// The active dataset of a domain and its parsed release.
    async fn active_release(
        &self,
        actor: &Actor,
        domain: Domain,
    ) -> Result<(DatasetRef, Arc<Release>)> {
        self.authorize(actor, Action::ReadTaxonomy, ("taxonomy", domain.as_str()))
            .await?;
        let dataset =
            self.store
                .active_dataset(domain)
                .await?
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "active dataset of domain",
                    id: domain.to_string(),
                })?;
        let release = self.release_of(&dataset).await?;
        let reference = DatasetRef {
            id: dataset.id,
            domain,
            release: dataset.release,
        };
        Ok((reference, release))
    }
}

/// An opaque cursor: the sort key of the last item shown.
fn encode_cursor(id: &str, stix_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{id}\n{stix_id}"))
}

fn decode_cursor(cursor: &str) -> Result<(String, String)> {
    let invalid = || ServiceError::InvalidInput {
        field: "cursor".into(),
        message: "not a cursor returned by this API".into(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (id, stix) = text.split_once('\n').ok_or_else(invalid)?;
    Ok((id.to_string(), stix.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("T1059.001", "attack-pattern--1");
        assert_eq!(
            decode_cursor(&c).unwrap(),
            ("T1059.001".to_string(), "attack-pattern--1".to_string())
        );
        assert_eq!(decode_cursor("%%%").unwrap_err().code(), "invalid_input");
        let no_separator = URL_SAFE_NO_PAD.encode("T1059");
        assert_eq!(
            decode_cursor(&no_separator).unwrap_err().code(),
            "invalid_input"
        );
    }
}
