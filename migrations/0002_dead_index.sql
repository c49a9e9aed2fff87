-- 0002_dead_index.sql — count dead tasks per queue without scanning the
-- table (metrics' queue depth, `pgwork status`). Dead rows are few, so the
-- partial index is small.
CREATE INDEX tasks_dead_idx ON pgwork.tasks (queue) WHERE state = 'dead';
