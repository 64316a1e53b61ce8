-- The current mapping of each attached alert, kept on its live attachment
-- (issue 4 speed), PostgreSQL flavour. Keep in step with
-- ../sqlite/0012_incident_mapping_copy.sql.
--
-- An incident's profile read every attached alert and its current canonical
-- entries through a join per alert: on PostgreSQL two index probes per
-- alert, or a hash of every alert and mapping of the org, 60 to 140 ms for
-- 10,000 alerts. The attachment now carries the alert's source uid and its
-- current canonical entries, so the profile is one range of the
-- live-attachment index. The store writes the copy when it attaches an
-- alert and whenever an alert's current canonical version changes, in the
-- same transaction (Tx::attach_alerts, Tx::set_current_mapping); the
-- canonical tables stay the record.
--
-- `mapping`: the entries, each as technique, tactic, source, confidence
-- (exact text), candidate ids, override ids, producers and release joined
-- by U+001F, entries joined by U+001D; empty when the alert has none; NULL
-- until written, which makes the profile read the join instead.
ALTER TABLE incident_alerts ADD COLUMN source_uid TEXT;
ALTER TABLE incident_alerts ADD COLUMN mapping TEXT;
-- Row security binds a table owner that is no superuser (0007): see every org.
SELECT set_config('nexus.org', '*', true);
UPDATE incident_alerts SET
    source_uid = (SELECT a.source_uid FROM alerts a
        WHERE a.org_id = incident_alerts.org_id AND a.id = incident_alerts.alert_id),
    mapping = COALESCE((SELECT string_agg(m.technique || chr(31) || COALESCE(m.tactic, '')
            || chr(31) || m.source || chr(31) || CAST(m.confidence AS TEXT) || chr(31) || m.candidate_ids
            || chr(31) || m.override_ids || chr(31) || m.producers || chr(31) || m.release, chr(29))
        FROM alerts a JOIN canonical_mappings m ON m.org_id = a.org_id AND m.alert_id = a.id
            AND m.version = a.canonical_version
        WHERE a.org_id = incident_alerts.org_id AND a.id = incident_alerts.alert_id), '')
WHERE detached_at IS NULL;
