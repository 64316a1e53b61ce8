-- Row-level security (issue 7): on PostgreSQL the database itself keeps each
-- org's rows apart, behind the store's own `org_id` filters, so that a query
-- that forgets its filter still sees nothing of another org.
-- ../sqlite/0007_row_security.sql is its empty twin: SQLite has no RLS.
--
-- The store sets `nexus.org` on every connection and transaction it hands
-- out (Store::conn_in, begin_in, conn_all, begin_all):
--   an org id  that org's rows;
--   '*'        every org's rows and the platform's rows without an org
--              (deliberate cross-org work: a token looked up by its hash,
--              audit chain verification, platform roles' listings, the
--              watch, the dataset lifecycle and reference migrations);
--   unset, ''  nothing: no row is visible and none may be written.
--
-- A superuser or a role with BYPASSRLS ignores every policy, so pooled
-- connections `SET ROLE nexus_app`, the role made here; FORCE makes the
-- policies bind the tables' owner as well. Migrations run as the login, so a
-- later migration that rewrites tenant rows as an owner that is no superuser
-- must first `SET LOCAL nexus.org = '*'`.

-- Roles are cluster-wide: another database of the cluster may have made it
-- already, or be making it right now (tests migrate many databases at
-- once); a login without CREATEROLE cannot make it at all and then relies on
-- FORCE alone.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nexus_app') THEN
        CREATE ROLE nexus_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation OR insufficient_privilege THEN
        NULL;
END
$$;

-- What the application does with the tables, and no more: no DDL, no
-- TRUNCATE, nothing on the migration history, no rewriting of the audit log
-- (its triggers refuse that too). Default privileges cover the tables of
-- later migrations run by the same login.
DO $$
DECLARE
    schema_name TEXT := current_schema();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nexus_app') THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO nexus_app', schema_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO nexus_app',
                   schema_name);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO nexus_app', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO nexus_app', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                   'GRANT USAGE, SELECT ON SEQUENCES TO nexus_app', schema_name);
    REVOKE INSERT, UPDATE, DELETE ON _sqlx_migrations FROM nexus_app;
    REVOKE UPDATE, DELETE ON audit_log FROM nexus_app;

    -- A login that is no superuser must be granted the role to SET ROLE to
    -- it. If that fails, the store keeps the login's own rights, which FORCE
    -- still binds.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'nexus_app', 'MEMBER') THEN
        BEGIN
            EXECUTE 'GRANT nexus_app TO ' || quote_ident(current_user);
        EXCEPTION
            WHEN OTHERS THEN
                RAISE NOTICE 'could not grant nexus_app to %: %', current_user, SQLERRM;
        END;
    END IF;
END
$$;

-- One policy per tenant table (every table with an `org_id`), for every
-- command: USING hides other orgs' rows from reads, updates and deletes;
-- WITH CHECK refuses writing one. A row without an org (a platform audit
-- event, a platform notification, a migration of a shared reference) is
-- reached only through '*'. The setting is read once per statement (the
-- sub-selects become init plans), not once per row.
DO $$
DECLARE
    tenant_table TEXT;
    visible CONSTANT TEXT := 'org_id = (SELECT current_setting(''nexus.org'', true)) '
                             'OR (SELECT current_setting(''nexus.org'', true)) = ''*''';
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY[
        'api_tokens', 'audit_log', 'reference_migrations',
        'alerts', 'mapping_candidates', 'canonical_sets', 'canonical_mappings',
        'rules', 'rule_techniques', 'rule_revisions', 'rule_pack_imports',
        'overrides', 'review_queue', 'notifications',
        'incidents', 'incident_alerts', 'incident_evidence', 'incident_adjustments',
        'matrix_rollups', 'matrix_exclusions'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format('CREATE POLICY org_isolation ON %I USING (%s) WITH CHECK (%s)',
                       tenant_table, visible, visible);
    END LOOP;
END
$$;
