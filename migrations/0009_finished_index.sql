-- 0009_finished_index.sql — finished tasks by queue, state and finish
-- time, for retention (DESIGN §2: done tasks are deleted after the queue's
-- `retention`, dead and cancelled ones after `dead_retention`).
--
-- Each pod's supervisor deletes, in small batches, the finished tasks of
-- its queues that are older than their retention, and asks when the next
-- one will be. Both are range scans from the oldest entry of one
-- (queue, state) here: a batch reads about as many index entries as it
-- deletes, however many younger finished tasks the table keeps. Pending
-- and running rows never enter the index, so claims and their indexes are
-- as they were; a completion adds one entry. ('cancelled' is named before
-- that state exists: it matches nothing until then.)
--
-- Note: CREATE INDEX (not CONCURRENTLY: migrations run in a transaction)
-- blocks INSERTs into pgwork.tasks while it reads the table. On a large
-- table, build it by hand first, then migrate:
--   CREATE INDEX CONCURRENTLY tasks_finished_idx ON pgwork.tasks (queue, state, finished_at)
--       WHERE state IN ('done', 'dead', 'cancelled');

CREATE INDEX IF NOT EXISTS tasks_finished_idx ON pgwork.tasks (queue, state, finished_at)
    WHERE state IN ('done', 'dead', 'cancelled');
