-- Text compared byte by byte (issue 3 speed), PostgreSQL flavour. Keep in
-- step with ../sqlite/0014_text_compares_bytewise.sql.
--
-- Every key of the hot tables is text (UUIDs, org ids, source uids,
-- technique ids), and PostgreSQL compares text under the database's
-- collation: with `C.UTF-8` or `en_US.UTF-8` each comparison in an index
-- goes through the C library's `strcoll`. In a bulk ingest that was a tenth
-- of the server's work (B-tree inserts and the lookups of 0010's checks).
-- Under the `C` collation a comparison is a `memcmp`. Every text column of
-- every table gets it, so that no join or comparison mixes two collations
-- (an index serves a comparison only under its own collation).
--
-- Orders change only where the database's collation was not byte order:
-- text now sorts as SQLite has always sorted it (BINARY), so both
-- databases answer in the same order. `C.UTF-8` orders valid UTF-8 as its
-- bytes already. A later migration's text columns must say COLLATE "C"
-- too; the store's conformance tests check every column.
--
-- The rows stay as they are; every index on a text column is built again
-- (about 5 s per million alerts, measured), and writes wait meanwhile. A
-- column named by a row-level security policy cannot change, so the
-- policies of 0007 are dropped and made again, the same, in this
-- transaction.
SELECT set_config('nexus.org', '*', true);
DO $$
DECLARE
    tenant_table TEXT;
    tenant_tables TEXT[];
    col RECORD;
    visible CONSTANT TEXT := 'org_id = (SELECT current_setting(''nexus.org'', true)) '
                             'OR (SELECT current_setting(''nexus.org'', true)) = ''*''';
BEGIN
    SELECT array_agg(tablename ORDER BY tablename) INTO tenant_tables
    FROM pg_policies
    WHERE schemaname = current_schema() AND policyname = 'org_isolation';
    FOREACH tenant_table IN ARRAY coalesce(tenant_tables, ARRAY[]::TEXT[]) LOOP
        EXECUTE format('DROP POLICY org_isolation ON %I', tenant_table);
    END LOOP;

    FOR col IN
        SELECT c.table_name, c.column_name, a.attcompression::TEXT AS compression
        FROM information_schema.columns c
        JOIN pg_attribute a
          ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass
         AND a.attname = c.column_name
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = current_schema()
          AND t.table_type = 'BASE TABLE'
          AND c.data_type = 'text'
          AND c.collation_name IS DISTINCT FROM 'C'
          AND c.table_name <> '_sqlx_migrations'
        ORDER BY c.table_name, c.ordinal_position
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE TEXT COLLATE "C"',
                       col.table_name, col.column_name);
        -- A new type takes the default compression; 0010's LZ4 for
        -- alerts.raw must stay.
        IF col.compression IN ('p', 'l') THEN
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION %s',
                           col.table_name, col.column_name,
                           CASE col.compression WHEN 'l' THEN 'lz4' ELSE 'pglz' END);
        END IF;
    END LOOP;

    FOREACH tenant_table IN ARRAY coalesce(tenant_tables, ARRAY[]::TEXT[]) LOOP
        EXECUTE format('CREATE POLICY org_isolation ON %I USING (%s) WITH CHECK (%s)',
                       tenant_table, visible, visible);
    END LOOP;
END
$$;
