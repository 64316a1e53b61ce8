-- Checks of bench/kill_ingest.sh after the restart, for SQLite and
-- PostgreSQL alike. Expects a temporary table `acked (uid)` holding every
-- uid the server acknowledged, and one org named `kill` holding the run.
-- Every row is `check|value`; all but the counts must read 0.
SELECT 'acknowledged', count(*) FROM acked;
SELECT 'acknowledged_missing', count(*) FROM acked k
 WHERE NOT EXISTS (SELECT 1 FROM alerts a
                    WHERE a.org_id = (SELECT id FROM orgs WHERE name = 'kill')
                      AND a.source_uid = k.uid);
SELECT 'alerts_stored', count(*) FROM alerts;
-- Half-mapped, alert side: the alert names a canonical version that is not
-- stored, or its state disagrees with that version's entries.
SELECT 'alerts_without_current_set', count(*) FROM alerts a
 WHERE NOT EXISTS (SELECT 1 FROM canonical_sets s
                    WHERE s.org_id = a.org_id AND s.alert_id = a.id
                      AND s.version = a.canonical_version);
SELECT 'mapped_with_empty_set', count(*) FROM alerts a
  JOIN canonical_sets s ON s.org_id = a.org_id AND s.alert_id = a.id
                       AND s.version = a.canonical_version
 WHERE a.mapping_state = 'mapped' AND s.entries = 0;
SELECT 'unmapped_with_entries', count(*) FROM alerts a
  JOIN canonical_sets s ON s.org_id = a.org_id AND s.alert_id = a.id
                       AND s.version = a.canonical_version
 WHERE a.mapping_state = 'unmapped' AND s.entries > 0;
-- Half-mapped, set side: a set whose entry rows are not all there.
SELECT 'sets_with_missing_entries', count(*) FROM canonical_sets s
 WHERE s.entries <> (SELECT count(*) FROM canonical_mappings m
                      WHERE m.org_id = s.org_id AND m.alert_id = s.alert_id
                        AND m.version = s.version);
-- Half-mapped, candidate side: candidates stored without any set, and
-- mapped alerts without the candidates their set derives from.
SELECT 'candidates_without_set', count(DISTINCT c.alert_id) FROM mapping_candidates c
 WHERE NOT EXISTS (SELECT 1 FROM canonical_sets s
                    WHERE s.org_id = c.org_id AND s.alert_id = c.alert_id);
SELECT 'mapped_without_candidates', count(*) FROM alerts a
 WHERE a.mapping_state = 'mapped'
   AND NOT EXISTS (SELECT 1 FROM mapping_candidates c WHERE c.alert_id = a.id);
-- Matrix rollups written in the same transactions: their count is the
-- number of current canonical mappings.
SELECT 'rollup_count_minus_current_mappings',
       (SELECT coalesce(sum(count), 0) FROM matrix_rollups)
     - (SELECT count(*) FROM canonical_mappings m
          JOIN alerts a ON a.org_id = m.org_id AND a.id = m.alert_id
                       AND a.canonical_version = m.version);
