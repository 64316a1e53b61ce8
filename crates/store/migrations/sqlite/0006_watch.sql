-- The watch (issue 7): periodic audit chain verification and misuse
-- signals notify admins.
--
-- A broken audit chain concerns the whole platform, so a notification may
-- belong to no org (`org_id` NULL, for platform admins). Signals name what
-- they are about in `subject` (the actor) so that one is raised per window,
-- not per event; `read_by` records who acknowledged a notification.
-- SQLite cannot drop NOT NULL in place: the table is rebuilt, rows kept.
CREATE TABLE notifications_rebuilt (
    id         TEXT PRIMARY KEY,
    org_id     TEXT REFERENCES orgs (id),
    recipient  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    subject    TEXT,
    alert_id   TEXT REFERENCES alerts (id),
    message    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    read_at    TEXT,
    read_by    TEXT
);
INSERT INTO notifications_rebuilt (id, org_id, recipient, kind, alert_id, message, created_at,
                                   read_at)
    SELECT id, org_id, recipient, kind, alert_id, message, created_at, read_at
    FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_rebuilt RENAME TO notifications;
CREATE INDEX notifications_org ON notifications (org_id, created_at);
CREATE INDEX notifications_subject ON notifications (kind, subject, created_at);

-- The misuse scans read recent denials and recent overrides of every org.
CREATE INDEX audit_log_denials ON audit_log (at) WHERE outcome = 'denied';
CREATE INDEX overrides_created ON overrides (created_at);
