-- Bulk ingestion, SQLite flavour. SQLite checks a foreign key with an
-- in-process index lookup, cheap enough to keep per row, so the foreign
-- keys that ../postgres/0010_bulk_ingest.sql replaces stay here, and raw
-- documents are not compressed by SQLite at all. What that migration adds
-- besides is mirrored: alerts are never deleted.
CREATE TRIGGER alerts_no_delete BEFORE DELETE ON alerts
BEGIN
    SELECT RAISE(ABORT, 'alerts are kept: DELETE refused');
END;
