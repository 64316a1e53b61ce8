-- Alert rows kept whole in their page (issue 3 speed), SQLite flavour. Keep
-- in step with ../postgres/0013_alert_rows_inline.sql.
--
-- PostgreSQL's threshold for shrinking a row has no counterpart here: SQLite
-- stores the document packed (store::packed) and spills long rows to
-- overflow pages by itself. Nothing to change; the file keeps both
-- databases' migration histories in step.
SELECT 1;
