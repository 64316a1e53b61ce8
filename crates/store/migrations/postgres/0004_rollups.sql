-- Matrix rollups and exclusion windows (issue 6), PostgreSQL flavour. Keep in
-- step with ../sqlite/0004_rollups.sql: same tables, same columns.

-- Canonical mappings of an org counted per day and dimension, maintained at
-- ingestion and on every canonical change, so that a matrix request reads a
-- few thousand rows instead of scanning raw mappings. `tactic` is '' when
-- the mapping names none (the view then counts it in each tactic of its
-- technique); `platform` is '' when the alert does not say. The key leads
-- with (org_id, day): every matrix query is one org over a day range.
-- `count` counts canonical mappings (what a cell shows); `alerts` counts
-- each alert once per technique: a Sigma rule naming two tactics of one
-- technique gives an alert two mappings but one alert at the technique, so
-- per-technique totals come from `alerts` and never double count.
CREATE TABLE matrix_rollups (
    org_id         TEXT NOT NULL REFERENCES orgs (id),
    day            TEXT NOT NULL,
    tactic         TEXT NOT NULL,
    technique      TEXT NOT NULL,
    source         TEXT NOT NULL,
    severity       TEXT NOT NULL,
    connector      TEXT NOT NULL,
    platform       TEXT NOT NULL,
    band           TEXT NOT NULL,
    count          BIGINT NOT NULL,
    alerts         BIGINT NOT NULL,
    confidence_sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (org_id, day, tactic, technique, source, severity, connector, platform, band)
);

-- Noisy source windows an org admin excluded from views: rows of
-- `connector` whose day is in [from_day, to_day).
CREATE TABLE matrix_exclusions (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs (id),
    connector  TEXT NOT NULL,
    from_day   TEXT NOT NULL,
    to_day     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX matrix_exclusions_org ON matrix_exclusions (org_id, from_day);
