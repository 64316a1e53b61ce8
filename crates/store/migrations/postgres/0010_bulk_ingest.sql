-- Bulk ingestion writes about four mapping rows per alert (candidates, a
-- canonical set, its entries). A foreign key checks every one of them with
-- a lookup and a row lock in `alerts` and another in `orgs`; measured on
-- 50,000 alerts, those per-row checks took twice as long as inserting the
-- rows. The same guarantee is kept with one check per statement: a join of
-- the statement's new rows against `alerts`, which also demands that the
-- alert belongs to the row's org (the foreign keys did not).
--
-- The check runs with the caller's rights, so under row-level security it
-- sees the alerts of the connection's org only; a row naming another org's
-- alert is refused like one naming no alert at all.

ALTER TABLE mapping_candidates
    DROP CONSTRAINT mapping_candidates_alert_id_fkey,
    DROP CONSTRAINT mapping_candidates_org_id_fkey;
ALTER TABLE canonical_sets
    DROP CONSTRAINT canonical_sets_alert_id_fkey,
    DROP CONSTRAINT canonical_sets_org_id_fkey;
ALTER TABLE canonical_mappings
    DROP CONSTRAINT canonical_mappings_alert_id_fkey,
    DROP CONSTRAINT canonical_mappings_org_id_fkey;

CREATE FUNCTION mapping_rows_name_their_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    orphan record;
BEGIN
    -- A scalar subquery per row rather than NOT EXISTS: the latter may be
    -- planned as an anti-join over every alert, and plpgsql keeps the plan
    -- it made while the table was small, so each statement would scan a
    -- growing table. The subquery can only be a primary-key lookup.
    SELECT n.org_id, n.alert_id INTO orphan FROM new_rows n
    WHERE (SELECT a.org_id FROM alerts a WHERE a.id = n.alert_id) IS DISTINCT FROM n.org_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% row violates its foreign key: alert % of org % does not exist',
            TG_TABLE_NAME, orphan.alert_id, orphan.org_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

-- A transition table serves one event per trigger, hence two each.
CREATE TRIGGER mapping_candidates_alert_inserted AFTER INSERT ON mapping_candidates
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mapping_rows_name_their_alert();
CREATE TRIGGER mapping_candidates_alert_updated AFTER UPDATE ON mapping_candidates
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mapping_rows_name_their_alert();
CREATE TRIGGER canonical_sets_alert_inserted AFTER INSERT ON canonical_sets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mapping_rows_name_their_alert();
CREATE TRIGGER canonical_sets_alert_updated AFTER UPDATE ON canonical_sets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mapping_rows_name_their_alert();
CREATE TRIGGER canonical_mappings_alert_inserted AFTER INSERT ON canonical_mappings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mapping_rows_name_their_alert();
CREATE TRIGGER canonical_mappings_alert_updated AFTER UPDATE ON canonical_mappings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mapping_rows_name_their_alert();

-- What the foreign keys also did: no alert goes while rows name it. Alerts
-- are the evidence of record and the product never deletes one, so a
-- delete (or TRUNCATE, which skips row triggers) is refused outright.
CREATE FUNCTION alerts_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alerts are kept: % refused', TG_OP;
END;
$$;
CREATE TRIGGER alerts_no_delete BEFORE DELETE ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_refuse_delete();
CREATE TRIGGER alerts_no_truncate BEFORE TRUNCATE ON alerts
    FOR EACH STATEMENT EXECUTE FUNCTION alerts_refuse_delete();

-- An alert's raw document (about 2 KB of JSON) pushes its row past the
-- size at which PostgreSQL compresses it, with pglz by default: a sixth of
-- the server's time in a bulk ingest. LZ4 compresses JSON a little less
-- and many times faster. A server built without LZ4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE alerts ALTER COLUMN raw SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: alerts.raw stays compressed with pglz';
END;
$$;
