-- Row-level security (issue 7), SQLite flavour: SQLite has none, so this
-- migration only keeps the two folders' names in step with
-- ../postgres/0007_row_security.sql. On SQLite the store's own `org_id`
-- filters are the tenant boundary, and every tenant query takes an OrgScope.
SELECT 1;
