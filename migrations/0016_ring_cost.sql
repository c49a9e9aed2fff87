-- 0016_ring_cost.sql — the doorbell lookup (0008) without planning it
-- again for every insert statement.
--
-- Why: pgwork.ring_channel ran in every insert statement's trigger (unless
-- pgwork.notify = off), and as LANGUAGE sql with SECURITY DEFINER it is
-- never inlined: its query was parsed and planned again on every call (an
-- SQL function keeps its plan only for the duration of the calling
-- statement). Measured with one client doing 5,000 single-row autocommit
-- INSERTs into a queue whose pod row is not armed (a producer storm's
-- normal case), mean execution time of the INSERT (pg_stat_statements,
-- median of 3 alternated runs on a loaded machine): 90 us with no trigger,
-- 116 us with notify = off, 242 us with that lookup (433 us when the
-- doorbell table is empty), 179 us (177 us) with this one; with a live
-- armed pod (a notification each) 1008 us before, 657 us now. The SET
-- search_path clause is not the cost (this function without it measured
-- 241 us and 171 us, the same within the noise), so it stays: the
-- function runs with its owner's rights, and the caller must not pick its
-- operators.
--
-- How: the same query in plpgsql, whose plans are kept for the session.
-- Behaviour is unchanged: VOLATILE, so under READ COMMITTED the query takes
-- a fresh snapshot at the trigger, after the INSERT wrote its rows (0015
-- relies on that); one random armed pod whose listener is alive, or NULL.
-- pgwork.doorbell_alive is not inlined (its body is SELECT EXISTS (...),
-- and inline_function refuses a body with a sublink): it stays a call.

CREATE OR REPLACE FUNCTION pgwork.ring_channel(queue_name text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT d.channel FROM pgwork.doorbell d
            WHERE d.queue = queue_name AND d.armed
              AND pgwork.doorbell_alive(d.backend_pid, d.backend_start)
            ORDER BY random()
            LIMIT 1);
END
$$;
