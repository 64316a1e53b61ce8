-- Incident ATT&CK profiles (issue 4), SQLite flavour. Keep in step with
-- ../postgres/0003_incidents.sql: same tables, same columns, same names.
-- Conventions as in 0001: timestamps are RFC 3339 UTC TEXT, JSON is TEXT,
-- booleans are INTEGER 0/1. Every tenant table carries org_id.
--
-- The profile itself is not stored: it is computed on read from the
-- attached alerts' current canonical mappings and the lead adjustments,
-- so it can never disagree with them.

CREATE TABLE incidents (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    title         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'contained', 'resolved', 'closed',
                      'reopened')),
    severity      TEXT NOT NULL,
    lead          TEXT,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    merged_into   TEXT REFERENCES incidents (id),
    split_from    TEXT REFERENCES incidents (id),
    -- Set by a staleness trigger, cleared by a lead adjustment or review.
    stale         INTEGER NOT NULL,
    -- JSON array of the stale reasons since the last review.
    stale_reasons TEXT NOT NULL
);
CREATE INDEX incidents_org ON incidents (org_id, created_at);
CREATE INDEX incidents_merged_into ON incidents (org_id, merged_into);

-- Attachment history: detaching sets detached_at; rows are never deleted.
CREATE TABLE incident_alerts (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    alert_id    TEXT NOT NULL REFERENCES alerts (id),
    attached_at TEXT NOT NULL,
    attached_by TEXT NOT NULL,
    detached_at TEXT,
    detached_by TEXT
);
-- One live attachment per incident and alert.
CREATE UNIQUE INDEX incident_alerts_live ON incident_alerts (org_id, incident_id, alert_id)
    WHERE detached_at IS NULL;
CREATE INDEX incident_alerts_alert ON incident_alerts (org_id, alert_id);
-- Covers the profile's and the attachment list's reads of alerts (current
-- canonical version, source uid) without touching the wide alert rows.
CREATE INDEX alerts_incident_lookup ON alerts (org_id, id, canonical_version, source_uid);

-- Evidence references of the incident record (append-only).
CREATE TABLE incident_evidence (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    kind        TEXT NOT NULL,
    ref         TEXT NOT NULL,
    added_by    TEXT NOT NULL,
    added_at    TEXT NOT NULL
);
CREATE INDEX incident_evidence_incident ON incident_evidence (org_id, incident_id);

-- Lead adjustments of an incident's canonical mapping: append-only and
-- versioned per incident. A merge does not move rows: the survivor reads
-- the adjustments of the incidents merged into it.
CREATE TABLE incident_adjustments (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES orgs (id),
    incident_id        TEXT NOT NULL REFERENCES incidents (id),
    version            INTEGER NOT NULL,
    action             TEXT NOT NULL CHECK (action IN ('add', 'remove', 'replace')),
    technique          TEXT NOT NULL,
    tactic             TEXT,
    replaces_technique TEXT,
    replaces_tactic    TEXT,
    reason             TEXT NOT NULL,
    rationale          TEXT NOT NULL,
    evidence           TEXT NOT NULL,
    confidence         REAL NOT NULL,
    actor              TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('proposed', 'approved', 'rejected')),
    approved_by        TEXT,
    approved_at        TEXT,
    supersedes         TEXT REFERENCES incident_adjustments (id),
    created_at         TEXT NOT NULL,
    UNIQUE (org_id, incident_id, version)
);

CREATE TRIGGER incident_adjustments_no_update BEFORE UPDATE ON incident_adjustments
BEGIN
    SELECT RAISE(ABORT, 'incident_adjustments is append-only');
END;
CREATE TRIGGER incident_adjustments_no_delete BEFORE DELETE ON incident_adjustments
BEGIN
    SELECT RAISE(ABORT, 'incident_adjustments is append-only');
END;
CREATE TRIGGER incident_evidence_no_update BEFORE UPDATE ON incident_evidence
BEGIN
    SELECT RAISE(ABORT, 'incident_evidence is append-only');
END;
CREATE TRIGGER incident_evidence_no_delete BEFORE DELETE ON incident_evidence
BEGIN
    SELECT RAISE(ABORT, 'incident_evidence is append-only');
END;
