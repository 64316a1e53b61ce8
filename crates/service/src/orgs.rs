//! Orgs, API tokens and authentication.

use std::collections::HashMap;
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use store::{OrgScope, TokenRecord};
use subtle::ConstantTimeEq;

use crate::{
    Action, Actor, App, NewToken, Org, OrgId, Outcome, Principal, Result, Role, Secret,
    ServiceError, TokenId, audit_event,
};

/// Every token secret starts with this, so that leaked secrets are easy to
/// recognise (secret scanners) and other strings are refused early.
pub const TOKEN_PREFIX: &str = "nxa_";

/// Random bytes in a secret: 256 bits.
const SECRET_BYTES: usize = 32;

/// Longest org name.
const MAX_ORG_NAME: usize = 100;

fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Orgs kept at most; past that the cache starts over.
const MAX_CACHED_ORGS: usize = 10_000;

/// Orgs read before, by name and by id, so that the org lookup every
/// request makes (a route names the caller's org by name) is no round trip
/// to the database.
///
/// An org row never changes once created: nothing renames or removes an
/// org (the store has no statement that updates or deletes one). A kept org
/// is therefore exactly what the database holds, whichever process created
/// it, and an entry never needs invalidating. A name or id not found is not
/// kept: another process may create that org at any moment. Were orgs ever
/// renamed or removed, this cache would have to be checked against a
/// version read with each request, as the matrix rollups are.
#[derive(Default)]
pub(crate) struct OrgCache {
    orgs: RwLock<OrgMaps>,
}

#[derive(Default)]
struct OrgMaps {
    by_name: HashMap<String, Org>,
    by_id: HashMap<OrgId, Org>,
}

impl OrgCache {
    /// The org named `name`, if read before.
    fn by_name(&self, name: &str) -> Option<Org> {
        // A poisoned lock only means a panic elsewhere mid-insert; each map
        // still holds whole orgs.
        let maps = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        maps.by_name.get(name).cloned()
    }

    /// The org whose id is `id`, if read before.
    fn by_id(&self, id: &str) -> Option<Org> {
        let maps = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        maps.by_id.get(&OrgId::from(id)).cloned()
    }

    /// Keeps an org read from the database, and hands it back.
    fn keep(&self, org: Org) -> Org {
        let mut maps = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        if maps.by_id.len() >= MAX_CACHED_ORGS && !maps.by_id.contains_key(&org.id) {
            *maps = OrgMaps::default();
        }
        maps.by_name.insert(org.name.clone(), org.clone());
        maps.by_id.insert(org.id.clone(), org.clone());
        org
    }
}

fn unauthenticated() -> ServiceError {
    // One answer for unknown, malformed and revoked tokens: the caller
    // learns nothing about which tokens exist.
    ServiceError::Unauthenticated("invalid or revoked token".into())
}

impl App {
    /// Creates an org with a unique name.
    pub async fn create_org(&self, actor: &Actor, name: &str) -> Result<Org> {
        let action = Action::ManageOrgs;
        self.authorize(actor, action, ("org", name)).await?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_ORG_NAME {
            return Err(ServiceError::InvalidInput {
                field: "name".into(),
                message: format!("an org name has 1 to {MAX_ORG_NAME} characters"),
            });
        }
        if name.chars().any(char::is_control) {
            return Err(ServiceError::InvalidInput {
                field: "name".into(),
                message: "an org name cannot contain control characters".into(),
            });
        }

        let org = Org {
            id: OrgId::generate(),
            name: name.to_string(),
            created_at: store::now(),
        };
        let event = store::NewAuditEvent {
            org_id: Some(org.id.clone()),
            ..audit_event(
                actor,
                "org_create",
                ("org", org.id.as_str()),
                Outcome::Ok,
                json!({"name": org.name}),
            )
        };
        // The org's own scope: it writes a shared row and the org's event.
        let mut tx = self.store.begin_in(&OrgScope::new(org.id.clone())).await?;
        tx.insert_org(&org).await?;
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(org)
    }

    /// Every org, by name: the platform's own listing (role
    /// `platform_admin`); an org role sees its own org through
    /// [`App::org_by_name`].
    pub async fn list_orgs(&self, actor: &Actor) -> Result<Vec<Org>> {
        self.authorize(actor, Action::ManageOrgs, ("org", "*"))
            .await?;
        Ok(self.store.list_orgs().await?)
    }

    /// Finds an org by name or id. Org roles only see their own org; any
    /// other answers `not_found`, like a missing one.
    pub async fn org_by_name(&self, actor: &Actor, name: &str) -> Result<Org> {
        let not_found = || ServiceError::NotFound {
            kind: "org",
            id: name.to_string(),
        };
        // A name is tried before an id, cached or not, as the store would.
        let org = match self.orgs.by_name(name) {
            Some(org) => org,
            None => match self.store.org_by_name(name).await? {
                Some(org) => self.orgs.keep(org),
                None => match self.orgs.by_id(name) {
                    Some(org) => org,
                    None => self
                        .store
                        .org(&OrgId::from(name))
                        .await?
                        .map(|org| self.orgs.keep(org))
                        .ok_or_else(not_found)?,
                },
            },
        };
        if !actor.role.is_platform() && actor.org.as_ref() != Some(&org.id) {
            return Err(not_found());
        }
        Ok(org)
    }

    /// Creates a token for an org (named or by id) with a role; the secret is
    /// returned once and only its SHA-256 is stored.
    ///
    /// An org admin mints tokens for its own org only, with an org role no
    /// higher than its own; platform roles need a platform admin.
    pub async fn create_token(
        &self,
        actor: &Actor,
        org: &str,
        role: Role,
        label: Option<&str>,
    ) -> Result<NewToken> {
        let action = Action::ManageTokens;
        self.authorize(actor, action, ("org", org)).await?;
        let org = self.org_by_name(actor, org).await?;
        let escalates = !actor.role.is_platform() && (role.is_platform() || role > actor.role);
        if escalates {
            let details = json!({"code": "forbidden", "requested_role": role.as_str()});
            self.audit_outcome(
                actor,
                action.as_str(),
                ("org", org.id.as_str()),
                Outcome::Denied,
                details,
            )
            .await?;
            return Err(ServiceError::Forbidden {
                role: actor.role,
                action,
            });
        }

        let mut random = [0_u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
        let label = label
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or(role.as_str())
            .to_string();
        let record = TokenRecord {
            id: TokenId::generate(),
            org_id: org.id.clone(),
            role: role.as_str().to_string(),
            label: label.clone(),
            secret_sha256: secret_sha256(&secret),
            created_at: store::now(),
            revoked_at: None,
        };
        let event = store::NewAuditEvent {
            org_id: Some(org.id.clone()),
            ..audit_event(
                actor,
                "token_create",
                ("token", record.id.as_str()),
                Outcome::Ok,
                json!({"role": role.as_str(), "label": label}),
            )
        };

        let mut tx = self.store.begin_in(&OrgScope::new(org.id.clone())).await?;
        tx.insert_token(&record).await?;
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(NewToken {
            id: record.id,
            org,
            role,
            label,
            secret: Secret(secret),
        })
    }

    /// Revokes a token of the actor's org (any org's for platform roles);
    /// later authentications with it fail. Another org's token answers
    /// `not_found`, like a missing one.
    pub async fn revoke_token(&self, actor: &Actor, token: &TokenId) -> Result<()> {
        let action = Action::ManageTokens;
        self.authorize(actor, action, ("token", token.as_str()))
            .await?;
        let not_found = || ServiceError::NotFound {
            kind: "token",
            id: token.to_string(),
        };
        let record = self.store.token(token).await?.ok_or_else(not_found)?;
        if !actor.role.is_platform() && actor.org.as_ref() != Some(&record.org_id) {
            return Err(not_found());
        }
        // Past the tenant check, so this tells nothing about other orgs.
        if record.revoked_at.is_some() {
            return Err(ServiceError::Conflict(format!(
                "token {token} is already revoked"
            )));
        }
        let scope = OrgScope::new(record.org_id.clone());
        let event = store::NewAuditEvent {
            org_id: Some(record.org_id.clone()),
            ..audit_event(
                actor,
                "token_revoke",
                ("token", token.as_str()),
                Outcome::Ok,
                json!({}),
            )
        };

        let mut tx = self.store.begin_in(&scope).await?;
        if !tx.revoke_token(&scope, token, &store::now()).await? {
            return Err(not_found());
        }
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Resolves a bearer secret (with or without the `Bearer ` prefix) to
    /// its principal; unknown, malformed and revoked tokens all fail with
    /// `unauthenticated`.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        let secret = bearer.trim();
        let secret = match secret.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => secret[7..].trim(),
            _ => secret,
        };
        if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 128 {
            return Err(unauthenticated());
        }

        let presented = secret_sha256(secret);
        // The lookup goes by the hash of a 256-bit random secret, so its
        // timing says nothing useful; the comparison is constant-time anyway
        // so that no code path compares secret material byte by byte.
        let Some((token, org)) = self.store.token_and_org_by_hash(&presented).await? else {
            return Err(unauthenticated());
        };
        let same: bool = token
            .secret_sha256
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into();
        if !same || token.revoked_at.is_some() {
            return Err(unauthenticated());
        }
        let role: Role = token.role.parse().map_err(|_| unauthenticated())?;
        // The use case behind the request looks the org up by name next.
        let org = self.orgs.keep(org);
        Ok(Principal {
            token_id: token.id,
            org: org.id,
            org_name: org.name,
            role,
            label: token.label,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_as_plain_sha256() {
        // sha256("abc"), from FIPS 180-2 appendix B.1.
        assert_eq!(
            secret_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
