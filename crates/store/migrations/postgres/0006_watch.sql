-- The watch (issue 7): periodic audit chain verification and misuse
-- signals notify admins.
--
-- A broken audit chain concerns the whole platform, so a notification may
-- belong to no org (`org_id` NULL, for platform admins). Signals name what
-- they are about in `subject` (the actor) so that one is raised per window,
-- not per event; `read_by` records who acknowledged a notification.
ALTER TABLE notifications ALTER COLUMN org_id DROP NOT NULL;
ALTER TABLE notifications ADD COLUMN subject TEXT;
ALTER TABLE notifications ADD COLUMN read_by TEXT;
CREATE INDEX notifications_subject ON notifications (kind, subject, created_at);

-- The misuse scans read recent denials and recent overrides of every org.
CREATE INDEX audit_log_denials ON audit_log (at) WHERE outcome = 'denied';
CREATE INDEX overrides_created ON overrides (created_at);
