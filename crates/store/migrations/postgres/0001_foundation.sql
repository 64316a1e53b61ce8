-- Foundation schema (issue 2), PostgreSQL flavour. Keep in step with
-- ../sqlite/0001_foundation.sql: same tables, same columns, same names.
-- Timestamps are TEXT in RFC 3339 UTC with milliseconds (sortable); JSON is
-- TEXT; booleans are BIGINT 0/1 (the Any driver knows no portable boolean).

CREATE TABLE orgs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE datasets (
    id                   TEXT PRIMARY KEY,
    domain               TEXT NOT NULL,
    release              TEXT NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('loaded', 'validated', 'approved',
                             'active', 'rejected', 'retired', 'rolled_back')),
    sha256               TEXT NOT NULL,
    source               TEXT NOT NULL,
    identity_source      TEXT NOT NULL,
    spec_version         TEXT NOT NULL,
    counts               TEXT NOT NULL,
    validation_report    TEXT,
    validation_errors    BIGINT,
    validation_warnings  BIGINT,
    change_summary       TEXT,
    compatibility_report TEXT,
    loaded_by            TEXT NOT NULL,
    loaded_at            TEXT NOT NULL,
    validated_by         TEXT,
    validated_at         TEXT,
    approved_by          TEXT,
    approved_at          TEXT,
    activated_by         TEXT,
    activated_at         TEXT,
    rejected_by          TEXT,
    rejected_at          TEXT,
    rejection_reason     TEXT,
    retired_at           TEXT,
    rolled_back_at       TEXT,
    previous_active      TEXT REFERENCES datasets (id)
);

-- One active dataset per domain, enforced by the database itself.
CREATE UNIQUE INDEX datasets_one_active_per_domain ON datasets (domain) WHERE state = 'active';
-- The same bytes are one dataset while it is alive: a copy may be loaded
-- again only once the first is rejected or rolled back.
CREATE UNIQUE INDEX datasets_live_sha256 ON datasets (sha256)
    WHERE state NOT IN ('rejected', 'rolled_back');

-- The bundle exactly as given, so a dataset can be re-parsed for diffs.
CREATE TABLE dataset_bundles (
    dataset_id TEXT PRIMARY KEY REFERENCES datasets (id),
    bytes      BYTEA NOT NULL
);

CREATE TABLE tactics (
    dataset_id   TEXT NOT NULL REFERENCES datasets (id),
    stix_id      TEXT NOT NULL,
    attack_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    shortname    TEXT NOT NULL,
    matrix_order BIGINT,
    description  TEXT NOT NULL,
    version      TEXT NOT NULL,
    modified     TEXT NOT NULL,
    deprecated   BIGINT NOT NULL,
    revoked      BIGINT NOT NULL,
    revoked_by   TEXT,
    PRIMARY KEY (dataset_id, stix_id)
);

CREATE TABLE techniques (
    dataset_id        TEXT NOT NULL REFERENCES datasets (id),
    stix_id           TEXT NOT NULL,
    attack_id         TEXT NOT NULL,
    name              TEXT NOT NULL,
    is_subtechnique   BIGINT NOT NULL,
    parent_id         TEXT,
    tactics           TEXT NOT NULL,
    kill_chain_phases TEXT NOT NULL,
    platforms         TEXT NOT NULL,
    description       TEXT NOT NULL,
    detection         TEXT NOT NULL,
    version           TEXT NOT NULL,
    modified          TEXT NOT NULL,
    deprecated        BIGINT NOT NULL,
    revoked           BIGINT NOT NULL,
    revoked_by        TEXT,
    PRIMARY KEY (dataset_id, stix_id)
);
CREATE INDEX techniques_attack_id ON techniques (dataset_id, attack_id);

CREATE TABLE procedures (
    dataset_id        TEXT NOT NULL REFERENCES datasets (id),
    stix_id           TEXT NOT NULL,
    source_ref        TEXT NOT NULL,
    source_name       TEXT,
    technique_stix_id TEXT NOT NULL,
    technique_id      TEXT,
    description       TEXT NOT NULL,
    deprecated        BIGINT NOT NULL,
    revoked           BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, stix_id)
);

CREATE TABLE matrices (
    dataset_id  TEXT NOT NULL REFERENCES datasets (id),
    stix_id     TEXT NOT NULL,
    attack_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    tactic_refs TEXT NOT NULL,
    version     TEXT NOT NULL,
    modified    TEXT NOT NULL,
    deprecated  BIGINT NOT NULL,
    revoked     BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, stix_id)
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    role          TEXT NOT NULL,
    label         TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE INDEX api_tokens_org ON api_tokens (org_id);

-- Append-only, hash-chained. `seq` is assigned by the store under the
-- audit_head row lock so that the chain has no gaps and no forks.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at          TEXT NOT NULL,
    org_id      TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, seq);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

-- TRUNCATE bypasses row triggers on PostgreSQL; refuse it too.
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- The chain's tip. Updating this single row first in an append transaction
-- serialises concurrent appends on both databases; verification also checks
-- that the last event matches it, which catches a truncated log.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Applied reference migrations: new records beside the originals, which are
-- never rewritten.
CREATE TABLE reference_migrations (
    id            TEXT PRIMARY KEY,
    org_id        TEXT REFERENCES orgs (id),
    dataset_id    TEXT NOT NULL REFERENCES datasets (id),
    ref_kind      TEXT NOT NULL,
    ref_id        TEXT NOT NULL,
    old_technique TEXT NOT NULL,
    new_technique TEXT NOT NULL,
    applied_by    TEXT NOT NULL,
    applied_at    TEXT NOT NULL,
    UNIQUE (dataset_id, ref_kind, ref_id)
);
