-- 0004_due_index_not_for_claims.sql — tasks_due_idx serves the
-- supervisor's poll only, never a worker's claim; run_at must be finite.
--
-- Why: the claim (ORDER BY priority, run_at, id LIMIT n) belongs on
-- tasks_claim_idx, which hands out the first n rows in order. But when the
-- table's statistics say "hardly anything pending" — a new install, or
-- statistics taken while the queue was empty, which is a queue's usual
-- state — the planner expects one row and prefers tasks_due_idx followed
-- by a Sort: every claim then reads and sorts the whole backlog (`make
-- bench` measured 25 ms per claim with 50,000 pending, and a burst
-- drained at a fifth of the usual rate until autovacuum re-analyzed).
--
-- The fix: the index's predicate gains a condition that is always true
-- (priority is NOT NULL) but that the claim does not state, so the planner
-- cannot prove the claim's rows are in the index and never uses it there.
-- The poll and `pgwork status` state it and keep their one-probe plans.
--
-- Note: CREATE INDEX (not CONCURRENTLY: migrations run in a transaction)
-- blocks INSERTs into pgwork.tasks while it builds. On a large table, build
-- the new index by hand first (the names below), then migrate:
--   CREATE INDEX CONCURRENTLY tasks_poll_idx ON pgwork.tasks (queue, run_at)
--       WHERE state = 'pending' AND priority IS NOT NULL;

CREATE INDEX IF NOT EXISTS tasks_poll_idx ON pgwork.tasks (queue, run_at)
    WHERE state = 'pending' AND priority IS NOT NULL;

DROP INDEX pgwork.tasks_due_idx;

-- And run_at must be a real time. 'infinity' and '-infinity' are valid
-- timestamps, but no arithmetic works on them: one such row made every
-- claim of its queue and the supervisor's poll of every queue fail
-- ("cannot subtract infinite timestamps"). Now the INSERT fails instead,
-- naming this constraint. (A far-future run_at is fine.)
ALTER TABLE pgwork.tasks ADD CONSTRAINT tasks_run_at_finite CHECK (isfinite(run_at));
