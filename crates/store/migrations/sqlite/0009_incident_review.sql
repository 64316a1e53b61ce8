-- Stale incidents in the review queue (issue 4 part 5), SQLite flavour.
-- Keep in step with ../postgres/0009_incident_review.sql.
--
-- A review item is about one subject: an alert (as before) or an incident
-- whose profile a staleness trigger made stale. `alert_id` becomes
-- nullable, `incident_id` is new, and exactly one of the two is set. As for
-- alerts, an incident has at most one open item per reason.
--
-- SQLite cannot drop a NOT NULL or add a table CHECK in place, so the table
-- is rebuilt: made anew, filled from the old one, which is dropped, and
-- renamed; its indexes are made again under their old names. No table
-- references review_queue, so the drop breaks no foreign key; the migration
-- runs in one transaction, so a failure leaves the old table as it was.
CREATE TABLE review_queue_rebuilt (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs (id),
    alert_id     TEXT REFERENCES alerts (id),
    reason       TEXT NOT NULL CHECK (reason IN ('low_confidence', 'ai_only', 'stale',
                     'conflict', 'over_mapping', 'no_evidence')),
    detail       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'accepted', 'rejected', 'corrected')),
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
                                  resolved_at, resolved_by, resolution, interactions)
SELECT id, org_id, alert_id, reason, detail, state, opened_at,
       resolved_at, resolved_by, resolution, interactions
FROM review_queue;
DROP TABLE review_queue;
ALTER TABLE review_queue_rebuilt RENAME TO review_queue;

-- One open item per alert and reason (as in 0002), and per incident and
-- reason. A NULL never equals another in a unique index, so each index
-- leaves the other subject's items alone.
CREATE UNIQUE INDEX review_queue_one_open ON review_queue (org_id, alert_id, reason)
    WHERE state = 'open';
CREATE UNIQUE INDEX review_queue_one_open_incident ON review_queue (org_id, incident_id, reason)
    WHERE state = 'open';
CREATE INDEX review_queue_org_state ON review_queue (org_id, state, opened_at);
