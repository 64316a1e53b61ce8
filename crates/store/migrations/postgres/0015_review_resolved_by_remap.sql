-- Review items closed by a re-map, PostgreSQL flavour. Keep in step with
-- ../sqlite/0015_review_resolved_by_remap.sql.
--
-- A new state, `resolved_by_remap`: the product closed the item because a
-- recomputation of the alert's canonical set (a rule change, an alert
-- update, a dataset activation, an override or an arbitration) removed the
-- item's reason. It is kept apart from `accepted`, which says a person
-- found the mapping right.
--
-- Altered in place, as in 0009: the table keeps its row-level security
-- policy (0007), its grants and its indexes. `review_queue_state_check` is
-- the name PostgreSQL gave the column's CHECK in 0002.
ALTER TABLE review_queue DROP CONSTRAINT review_queue_state_check;
ALTER TABLE review_queue ADD CONSTRAINT review_queue_state_check CHECK (
    state IN ('open', 'accepted', 'rejected', 'corrected', 'resolved_by_remap'));
