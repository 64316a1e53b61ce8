-- The org of new alerts checked once per statement (issue 3 speed), SQLite
-- flavour. Keep in step with ../postgres/0016_alert_org_checked_once.sql.
--
-- SQLite keeps the foreign key from `alerts.org_id` to `orgs`: its check is a
-- lookup in the same process, not a query planned and run per row. The file
-- keeps both databases' migration histories in step.
SELECT 1;
