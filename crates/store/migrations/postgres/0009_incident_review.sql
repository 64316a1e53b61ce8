-- Stale incidents in the review queue (issue 4 part 5), PostgreSQL flavour.
-- Keep in step with ../sqlite/0009_incident_review.sql.
--
-- A review item is about one subject: an alert (as before) or an incident
-- whose profile a staleness trigger made stale. `alert_id` becomes
-- nullable, `incident_id` is new, and exactly one of the two is set. As for
-- alerts, an incident has at most one open item per reason.
--
-- Altered in place: the table keeps its row-level security policy (0007),
-- its grants and its indexes. Validating the new constraint scans every
-- existing row whatever the policy (row security filters queries, not the
-- checks of ALTER TABLE), so no `nexus.org` is needed here.
ALTER TABLE review_queue ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE review_queue ADD COLUMN incident_id TEXT REFERENCES incidents (id);
ALTER TABLE review_queue ADD CONSTRAINT review_queue_one_subject CHECK (
    (alert_id IS NOT NULL AND incident_id IS NULL)
    OR (alert_id IS NULL AND incident_id IS NOT NULL));

-- One open item per incident and reason, beside review_queue_one_open (per
-- alert and reason). A NULL never equals another in a unique index, so each
-- index leaves the other subject's items alone.
CREATE UNIQUE INDEX review_queue_one_open_incident ON review_queue (org_id, incident_id, reason)
    WHERE state = 'open';
