-- Review items closed by a re-map, SQLite flavour. Keep in step with
-- ../postgres/0015_review_resolved_by_remap.sql.
--
-- A new state, `resolved_by_remap`: the product closed the item because a
-- recomputation of the alert's canonical set (a rule change, an alert
-- update, a dataset activation, an override or an arbitration) removed the
-- item's reason. It is kept apart from `accepted`, which says a person
-- found the mapping right.
--
-- SQLite cannot change a CHECK in place, so the table is rebuilt as in
-- 0009: made anew, filled from the old one, which is dropped, and renamed;
-- its indexes are made again under their old names. No table references
-- review_queue, so the drop breaks no foreign key; the migration runs in one
-- transaction, so a failure leaves the old table as it was.
CREATE TABLE review_queue_rebuilt (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs (id),
    alert_id     TEXT REFERENCES alerts (id),
    reason       TEXT NOT NULL CHECK (reason IN ('low_confidence', 'ai_only', 'stale',
                     'conflict', 'over_mapping', 'no_evidence')),
    detail       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'accepted', 'rejected', 'corrected',
                     'resolved_by_remap')),
    opened_at    TEXT NOT NULL,
    resolved_at  TEXT,
    resolved_by  TEXT,
    resolution   TEXT,
    interactions INTEGER NOT NULL,
    incident_id  TEXT REFERENCES incidents (id),
    CONSTRAINT review_queue_one_subject CHECK (
        (alert_id IS NOT NULL AND incident_id IS NULL)
        OR (alert_id IS NULL AND incident_id IS NOT NULL))
);
INSERT INTO review_queue_rebuilt (id, org_id, alert_id, reason, detail, state, opened_at,
                                  resolved_at, resolved_by, resolution, interactions,
                                  incident_id)
SELECT id, org_id, alert_id, reason, detail, state, opened_at,
       resolved_at, resolved_by, resolution, interactions, incident_id
FROM review_queue;
DROP TABLE review_queue;
ALTER TABLE review_queue_rebuilt RENAME TO review_queue;

CREATE UNIQUE INDEX review_queue_one_open ON review_queue (org_id, alert_id, reason)
    WHERE state = 'open';
CREATE UNIQUE INDEX review_queue_one_open_incident ON review_queue (org_id, incident_id, reason)
    WHERE state = 'open';
CREATE INDEX review_queue_org_state ON review_queue (org_id, state, opened_at);
