-- Incident merges without per-alert writes (issue 4 speed), SQLite flavour.
-- Keep in step with ../postgres/0008_incident_speed.sql.
--
-- A merge used to end every live attachment of the absorbed incident and
-- attach each alert again to the survivor: 20,000 row writes, with their
-- index and (on PostgreSQL) foreign-key work, to merge two 10,000-alert
-- incidents. Now attachments stay where they were made and serve the
-- incident at the end of their incident's merge chain: `survivor_id`, set
-- by the merge on the absorbed incident and on every incident merged into
-- it before (kept flat, so no reader follows a chain). A merged incident
-- holds no alert itself; the survivor holds its own and theirs.
ALTER TABLE incidents ADD COLUMN survivor_id TEXT REFERENCES incidents (id);
CREATE INDEX incidents_survivor ON incidents (org_id, survivor_id);

-- Incidents merged before this migration had their alerts moved already;
-- they point at the end of their chain all the same, like later ones.
WITH RECURSIVE chain (id, survivor) AS (
    SELECT id, id FROM incidents WHERE merged_into IS NULL
    UNION ALL
    SELECT i.id, chain.survivor FROM incidents i JOIN chain ON i.merged_into = chain.id
)
UPDATE incidents SET survivor_id = chain.survivor
FROM chain WHERE incidents.id = chain.id AND incidents.merged_into IS NOT NULL;
