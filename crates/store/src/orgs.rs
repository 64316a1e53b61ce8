//! Orgs and API tokens.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{
    Context, Org, OrgId, OrgScope, Store, StoreError, TokenId, TokenRecord, Tx, parse_ts, ts,
};

fn corrupt(what: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn text(row: &AnyRow, table: &str, column: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(column)
        .map_err(|e| corrupt(&format!("{table}.{column}"), e))
}

fn org_from_row(row: &AnyRow) -> Result<Org, StoreError> {
    Ok(Org {
        id: OrgId(text(row, "orgs", "id")?),
        name: text(row, "orgs", "name")?,
        created_at: parse_ts("orgs.created_at", &text(row, "orgs", "created_at")?)?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let revoked: Option<String> = row
        .try_get("revoked_at")
        .map_err(|e| corrupt("api_tokens.revoked_at", e))?;
    Ok(TokenRecord {
        id: TokenId(text(row, "api_tokens", "id")?),
        org_id: OrgId(text(row, "api_tokens", "org_id")?),
        role: text(row, "api_tokens", "role")?,
        label: text(row, "api_tokens", "label")?,
        secret_sha256: text(row, "api_tokens", "secret_sha256")?,
        created_at: parse_ts(
            "api_tokens.created_at",
            &text(row, "api_tokens", "created_at")?,
        )?,
        revoked_at: revoked
            .map(|r| parse_ts("api_tokens.revoked_at", &r))
            .transpose()?,
    })
}

const TOKEN_COLUMNS: &str = "id, org_id, role, label, secret_sha256, created_at, revoked_at";

impl Tx {
    /// Creates an org; a duplicate name is a [`StoreError::Conflict`].
    ///
    /// An org row is never changed or removed afterwards (the store has no
    /// statement for either): the service keeps orgs in memory once read,
    /// and relies on it.
    pub async fn insert_org(&mut self, org: &Org) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.id.as_str())
            .bind(org.name.as_str())
            .bind(ts(&org.created_at))
            .execute(self.conn())
            .await
            .context(|| format!("org `{}`", org.name))?;
        Ok(())
    }

    /// Stores a token (its secret's hash only).
    pub async fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, org_id, role, label, secret_sha256, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token.id.as_str())
        .bind(token.org_id.as_str())
        .bind(token.role.as_str())
        .bind(token.label.as_str())
        .bind(token.secret_sha256.as_str())
        .bind(ts(&token.created_at))
        .bind(token.revoked_at.as_ref().map(ts))
        .execute(self.conn())
        .await
        .context(|| format!("token {}", token.id))?;
        Ok(())
    }

    /// Marks a token of the scope's org revoked; false when the org has no
    /// such live token.
    pub async fn revoke_token(
        &mut self,
        scope: &OrgScope,
        id: &TokenId,
        at: &chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE id = $2 AND org_id = $3 AND revoked_at IS NULL",
        )
        .bind(ts(at))
        .bind(id.as_str())
        .bind(scope.org().as_str())
        .execute(self.conn())
        .await
        .context(|| format!("revoking token {id}"))?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// An org by its unique name.
    pub async fn org_by_name(&self, name: &str) -> Result<Option<Org>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM orgs WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("looking up org `{name}`"))?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// An org by id.
    pub async fn org(&self, id: &OrgId) -> Result<Option<Org>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM orgs WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("reading org {id}"))?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// Every org, by name.
    pub async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM orgs ORDER BY name")
            .fetch_all(&mut *self.conn_shared().await?)
            .await
            .context(|| "listing orgs".to_string())?;
        rows.iter().map(org_from_row).collect()
    }

    /// The token whose secret hashes to `secret_sha256`, revoked or not.
    ///
    /// The lookup is by an index on the hash: a timing difference can only
    /// reveal something about a hash of a random secret, not the secret.
    pub async fn token_by_hash(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_sha256 = $1");
        let row = sqlx::query(&sql)
            .bind(secret_sha256)
            .fetch_optional(&mut *self.conn_all().await?)
            .await
            .context(|| "looking up a token".to_string())?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// [`Store::token_by_hash`] with the token's org, in one statement: an
    /// authentication needs both, and it is on every request's path.
    pub async fn token_and_org_by_hash(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<(TokenRecord, Org)>, StoreError> {
        // The token's org is not known before the token is found: the
        // statement reads as every org ('*').
        let sql = format!(
            "SELECT t.id, t.org_id, t.role, t.label, t.secret_sha256, t.created_at, \
             t.revoked_at, o.name AS org_name, o.created_at AS org_created_at \
             FROM api_tokens t JOIN orgs o ON o.id = t.org_id \
             WHERE t.secret_sha256 = $1 AND {}",
            self.statement_scope("'*'")
        );
        let row = sqlx::query(&sql)
            .bind(secret_sha256)
            .fetch_optional(&mut *self.conn_shared().await?)
            .await
            .context(|| "looking up a token".to_string())?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token = token_from_row(&row)?;
        let org = Org {
            id: token.org_id.clone(),
            name: text(&row, "orgs", "org_name")?,
            created_at: parse_ts("orgs.created_at", &text(&row, "orgs", "org_created_at")?)?,
        };
        Ok(Some((token, org)))
    }

    /// A token by id, whatever its org (for platform roles and for
    /// checking ownership before a scoped change).
    pub async fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn_all().await?)
            .await
            .context(|| format!("reading token {id}"))?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// The tokens of one org, oldest first.
    pub async fn list_tokens(&self, scope: &OrgScope) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE org_id = $1 ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("listing tokens of org {}", scope.org()))?;
        rows.iter().map(token_from_row).collect()
    }
}
