-- The org of new alerts checked once per statement, PostgreSQL flavour (issue
-- 3 speed). Keep in step with ../sqlite/0016_alert_org_checked_once.sql.
--
-- The foreign key from `alerts.org_id` to `orgs` ran its check query once per
-- inserted alert: with the server's CPU time measured over 200,000 alerts of a
-- bulk ingest, dropping it saved about a tenth. Every alert a store
-- transaction writes belongs to the transaction's own org (`nexus.org`, which
-- row-level security already holds each row to, 0007), so that org is checked
-- and locked once per statement; a row of any other org (a transaction that
-- may see every org, or a login without the setting) is still checked on its
-- own. The lock is the one the foreign key took (FOR KEY SHARE): the org
-- cannot go while the statement's transaction is open.

ALTER TABLE alerts DROP CONSTRAINT alerts_org_id_fkey;

CREATE FUNCTION alert_org_must_exist(org TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM orgs o WHERE o.id = org FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alerts row violates its foreign key: org % does not exist', org
            USING ERRCODE = 'foreign_key_violation';
    END IF;
END;
$$;

CREATE FUNCTION alerts_name_the_session_org() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    session_org TEXT := current_setting('nexus.org', true);
BEGIN
    -- '*' and an unset setting name no one org: the row trigger below checks
    -- each row instead.
    IF session_org IS NOT NULL AND session_org NOT IN ('', '*') THEN
        PERFORM alert_org_must_exist(session_org);
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION alerts_name_their_org() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM alert_org_must_exist(NEW.org_id);
    RETURN NEW;
END;
$$;

CREATE TRIGGER alerts_session_org_exists BEFORE INSERT ON alerts
    FOR EACH STATEMENT EXECUTE FUNCTION alerts_name_the_session_org();
-- The condition is evaluated per row without calling the function, so a row
-- of the session's org costs one comparison.
CREATE TRIGGER alerts_other_org_exists BEFORE INSERT ON alerts
    FOR EACH ROW WHEN (NEW.org_id IS DISTINCT FROM current_setting('nexus.org', true))
    EXECUTE FUNCTION alerts_name_their_org();
CREATE TRIGGER alerts_org_changed BEFORE UPDATE OF org_id ON alerts
    FOR EACH ROW WHEN (NEW.org_id IS DISTINCT FROM OLD.org_id)
    EXECUTE FUNCTION alerts_name_their_org();

-- What the foreign key also did (ON DELETE / ON UPDATE NO ACTION): no org
-- goes or changes its id while alerts name it. A check for the org's alerts
-- would see, under row-level security, only the alerts of the deleting
-- transaction's own org; the product never deletes an org nor changes its
-- id, so both are refused outright, as is TRUNCATE (which skips row
-- triggers).
CREATE FUNCTION orgs_refuse_removal() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- NEW and OLD are null in the statement-level TRUNCATE trigger.
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id = OLD.id THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'orgs are kept: % refused (alerts name their org)', TG_OP
        USING ERRCODE = 'foreign_key_violation';
END;
$$;

CREATE TRIGGER orgs_no_removal BEFORE DELETE OR UPDATE OF id ON orgs
    FOR EACH ROW EXECUTE FUNCTION orgs_refuse_removal();
CREATE TRIGGER orgs_no_truncate BEFORE TRUNCATE ON orgs
    FOR EACH STATEMENT EXECUTE FUNCTION orgs_refuse_removal();
