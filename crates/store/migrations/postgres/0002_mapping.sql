-- Mapping engine schema (issue 3), PostgreSQL flavour. Keep in step with
-- ../sqlite/0002_mapping.sql: same tables, same columns, same names.
-- Conventions as in 0001: timestamps are RFC 3339 UTC TEXT, JSON is TEXT,
-- booleans are BIGINT 0/1. Every tenant table carries org_id.

-- One row per alert and org; `source_uid` is the alert's own id, so a
-- re-ingested alert is found instead of duplicated.
CREATE TABLE alerts (
    id                TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL REFERENCES orgs (id),
    source_uid        TEXT NOT NULL,
    format            TEXT NOT NULL CHECK (format IN ('ocsf', 'ecs', 'native')),
    time              TEXT,
    received_at       TEXT NOT NULL,
    title             TEXT NOT NULL,
    description       TEXT,
    severity          TEXT NOT NULL,
    severity_weight   DOUBLE PRECISION NOT NULL,
    connector         TEXT,
    product           TEXT,
    analytic_uid      TEXT,
    host              TEXT,
    user_name         TEXT,
    content_sha256    TEXT NOT NULL,
    raw               TEXT NOT NULL,
    normalized        TEXT NOT NULL,
    mapping_state     TEXT NOT NULL CHECK (mapping_state IN ('mapped', 'unmapped')),
    canonical_version BIGINT NOT NULL,
    stale             BIGINT NOT NULL,
    stale_reason      TEXT,
    locked            BIGINT NOT NULL,
    UNIQUE (org_id, source_uid)
);
-- Few indexes on the hot insert path: each one is a B-tree write per alert.
CREATE INDEX alerts_org_time ON alerts (org_id, time);

CREATE FUNCTION mapping_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

-- Append-only: every candidate any source proposed. Ids are content hashes
-- of the candidate, so re-mapping an alert to the same result adds nothing.
-- The key leads with the alert id (time-ordered UUID v7): inserts append
-- to the index instead of landing on random pages as a hash key would.
CREATE TABLE mapping_candidates (
    id              TEXT NOT NULL,
    org_id          TEXT NOT NULL REFERENCES orgs (id),
    alert_id        TEXT NOT NULL REFERENCES alerts (id),
    technique       TEXT NOT NULL,
    tactic          TEXT,
    source          TEXT NOT NULL CHECK (source IN ('manual', 'rule', 'ai')),
    confidence      DOUBLE PRECISION NOT NULL,
    band            TEXT NOT NULL,
    evidence        TEXT NOT NULL,
    explanation     TEXT NOT NULL,
    rule_id         TEXT,
    rule_version    BIGINT,
    model_version   TEXT,
    vendor_declared BIGINT NOT NULL,
    domain          TEXT NOT NULL,
    release         TEXT NOT NULL,
    dataset_id      TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (alert_id, id)
);

CREATE TRIGGER mapping_candidates_no_update BEFORE UPDATE ON mapping_candidates
    FOR EACH ROW EXECUTE FUNCTION mapping_refuse_change();
CREATE TRIGGER mapping_candidates_no_delete BEFORE DELETE ON mapping_candidates
    FOR EACH ROW EXECUTE FUNCTION mapping_refuse_change();

-- One row per computation of an alert's canonical set; the alert's
-- canonical_version names the current one, older versions stay as history.
CREATE TABLE canonical_sets (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    alert_id    TEXT NOT NULL REFERENCES alerts (id),
    version     BIGINT NOT NULL,
    decided_by  TEXT,
    flags       TEXT NOT NULL,
    pending     TEXT NOT NULL,
    entries     BIGINT NOT NULL,
    cause       TEXT NOT NULL,
    domain      TEXT NOT NULL,
    release     TEXT NOT NULL,
    dataset_id  TEXT,
    computed_at TEXT NOT NULL,
    PRIMARY KEY (org_id, alert_id, version)
);

-- The entries of each canonical set version, with lineage to candidates
-- and overrides.
CREATE TABLE canonical_mappings (
    org_id          TEXT NOT NULL REFERENCES orgs (id),
    alert_id        TEXT NOT NULL REFERENCES alerts (id),
    version         BIGINT NOT NULL,
    technique       TEXT NOT NULL,
    tactic          TEXT,
    source          TEXT NOT NULL CHECK (source IN ('manual', 'rule', 'ai')),
    confidence      DOUBLE PRECISION NOT NULL,
    band            TEXT NOT NULL,
    candidate_ids   TEXT NOT NULL,
    override_ids    TEXT NOT NULL,
    producers       TEXT NOT NULL,
    vendor_declared BIGINT NOT NULL,
    evidence_linked BIGINT NOT NULL,
    needs_review    BIGINT NOT NULL,
    domain          TEXT NOT NULL,
    release         TEXT NOT NULL,
    dataset_id      TEXT,
    computed_at     TEXT NOT NULL
);
CREATE INDEX canonical_mappings_alert ON canonical_mappings (org_id, alert_id, version);
CREATE INDEX canonical_mappings_technique ON canonical_mappings (org_id, technique);

-- Mapping rules, one row per version; at most one active version per rule.
CREATE TABLE rules (
    org_id         TEXT NOT NULL REFERENCES orgs (id),
    id             TEXT NOT NULL,
    version        BIGINT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('draft', 'active', 'retired')),
    title          TEXT NOT NULL,
    definition     TEXT NOT NULL,
    author         TEXT NOT NULL,
    rationale      TEXT NOT NULL,
    evidence_pattern TEXT,
    effective_date TEXT,
    pack_id        TEXT,
    created_by     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (org_id, id, version)
);
CREATE UNIQUE INDEX rules_one_active ON rules (org_id, id) WHERE status = 'active';
CREATE INDEX rules_org_status ON rules (org_id, status);

-- The techniques each rule version maps to (for the compatibility check).
CREATE TABLE rule_techniques (
    org_id       TEXT NOT NULL REFERENCES orgs (id),
    rule_id      TEXT NOT NULL,
    rule_version BIGINT NOT NULL,
    technique    TEXT NOT NULL,
    tactic       TEXT
);
CREATE INDEX rule_techniques_rule ON rule_techniques (org_id, rule_id, rule_version);

-- Bumped on every rule change of an org, so that every service node knows
-- when its compiled rule index is out of date.
CREATE TABLE rule_revisions (
    org_id   TEXT PRIMARY KEY REFERENCES orgs (id),
    revision BIGINT NOT NULL
);

CREATE TABLE rule_pack_imports (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    dataset_id  TEXT,
    report      TEXT NOT NULL,
    imported_by TEXT NOT NULL,
    imported_at TEXT NOT NULL
);
CREATE INDEX rule_pack_imports_org ON rule_pack_imports (org_id, imported_at);

-- Append-only: a decision on a proposal is a new row that supersedes it.
CREATE TABLE overrides (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES orgs (id),
    alert_id           TEXT NOT NULL REFERENCES alerts (id),
    version            BIGINT NOT NULL,
    action             TEXT NOT NULL CHECK (action IN ('add', 'remove', 'replace')),
    technique          TEXT NOT NULL,
    tactic             TEXT,
    replaces_technique TEXT,
    replaces_tactic    TEXT,
    reason             TEXT NOT NULL,
    notes              TEXT,
    confidence         DOUBLE PRECISION NOT NULL,
    actor              TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('proposed', 'approved', 'rejected')),
    approved_by        TEXT,
    approved_at        TEXT,
    supersedes         TEXT REFERENCES overrides (id),
    created_at         TEXT NOT NULL,
    UNIQUE (org_id, alert_id, version)
);
CREATE INDEX overrides_technique ON overrides (org_id, technique);

CREATE TRIGGER overrides_no_update BEFORE UPDATE ON overrides
    FOR EACH ROW EXECUTE FUNCTION mapping_refuse_change();
CREATE TRIGGER overrides_no_delete BEFORE DELETE ON overrides
    FOR EACH ROW EXECUTE FUNCTION mapping_refuse_change();

CREATE TABLE review_queue (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs (id),
    alert_id     TEXT NOT NULL REFERENCES alerts (id),
    reason       TEXT NOT NULL CHECK (reason IN ('low_confidence', 'ai_only', 'stale',
                     'conflict', 'over_mapping', 'no_evidence')),
    detail       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'accepted', 'rejected', 'corrected')),
    opened_at    TEXT NOT NULL,
    resolved_at  TEXT,
    resolved_by  TEXT,
    resolution   TEXT,
    interactions BIGINT NOT NULL
);
-- One open item per alert and reason.
CREATE UNIQUE INDEX review_queue_one_open ON review_queue (org_id, alert_id, reason)
    WHERE state = 'open';
CREATE INDEX review_queue_org_state ON review_queue (org_id, state, opened_at);

-- Messages for incident leads (arbitration locks).
CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs (id),
    recipient  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    alert_id   TEXT REFERENCES alerts (id),
    message    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    read_at    TEXT
);
CREATE INDEX notifications_org ON notifications (org_id, created_at);
