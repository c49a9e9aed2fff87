-- 0014_limit_whole_budget.sql — a capped queue's claim may take all the
-- slots the cap has left, not one (issue 14: "a capped queue runs at its
-- cap").
--
-- 0012's pgwork.limit_budget gives a claim one task once the cap has
-- fewer free slots than the claim's batch, so that a worker does not hold
-- a batch of slow tasks (running, by the count) while it runs them one
-- after the other and other workers idle. With batch = "auto" the batch
-- is already sized by the tasks' time (about 20 ms of work; slow tasks one
-- at a time), and the rule only costs: a claim of a queue capped at 50
-- asked for a batch past 50 and got one task, each claim under the
-- queue's lock (measured: 0.01x the uncapped rate with no-op tasks).
--
-- This overload (one more argument, `whole`): when whole is true, take =
-- least(batch, free slots). Workers with batch = "auto" pass true; a fixed
-- batch passes false and keeps 0012's rule. The 6-argument function stays
-- as it was, for pods that still call it. Everything else (the lock, the
-- fresh count, the rate) is 0012's.
--
-- cap_bound (returned): the cap decided take — with whole, the claim
-- filled the cap: asking another worker for help would only make it claim
-- nothing.

CREATE OR REPLACE FUNCTION pgwork.limit_budget(
    queue_name text, cap integer, rate_count integer, rate_period_ms bigint, batch integer,
    claimer text, whole boolean,
    OUT take integer, OUT at timestamptz, OUT wait_ms bigint, OUT cap_bound boolean,
    OUT other text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    known pgwork.queue_limits;
    running integer;
    started integer;
    oldest timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(1886156652, hashtext(queue_name));  -- 'pgwl', as 0012
    take := batch;
    cap_bound := false;

    SELECT * INTO known FROM pgwork.queue_limits l WHERE l.queue = queue_name;
    IF NOT FOUND THEN
        INSERT INTO pgwork.queue_limits (queue, concurrency, rate_count, rate_period_ms, set_by)
        VALUES (queue_name, cap, limit_budget.rate_count, limit_budget.rate_period_ms, claimer)
        ON CONFLICT (queue) DO NOTHING;
    ELSIF known.concurrency <> cap OR known.rate_count <> limit_budget.rate_count
          OR known.rate_period_ms <> limit_budget.rate_period_ms THEN
        -- The claim statement records this pod's values (0012 says why
        -- not here).
        other := format('concurrency = %s, rate = %s per %s ms (set by %s)', known.concurrency,
                        known.rate_count, known.rate_period_ms, known.set_by);
    END IF;

    IF cap > 0 THEN
        SELECT count(*) INTO running
        FROM pgwork.tasks t WHERE t.queue = queue_name AND t.state = 'running';
        IF cap - running <= batch AND whole THEN
            take := greatest(cap - running, 0);
            cap_bound := true;
        ELSIF cap - running < batch THEN
            take := least(greatest(cap - running, 0), 1);
            cap_bound := true;
        END IF;
    END IF;
    -- The start time, after the count (0012 took it before): completions
    -- do not wait for this lock (worker/worker.c, worker_claim_taken), so
    -- one may commit between the lock and the count, and the count rightly
    -- leaves its tasks out; their finished_at (its now()) must then be
    -- before these starts, or the rows' own times would show them running
    -- beside these. Still under the lock: starts keep the order they were
    -- granted in, which the rate needs.
    at := clock_timestamp();

    IF limit_budget.rate_count > 0 THEN
        DELETE FROM pgwork.limit_starts s
        WHERE s.queue = queue_name
          AND s.started_at < at - limit_budget.rate_period_ms * interval '1 millisecond';
        SELECT count(*) INTO started FROM pgwork.limit_starts s WHERE s.queue = queue_name;
        IF limit_budget.rate_count - started < take THEN
            take := greatest(limit_budget.rate_count - started, 0);
            cap_bound := false;
        END IF;
        IF take = 0 AND started >= limit_budget.rate_count THEN
            SELECT s.started_at INTO oldest FROM pgwork.limit_starts s
            WHERE s.queue = queue_name
            ORDER BY s.started_at
            OFFSET started - limit_budget.rate_count LIMIT 1;
            wait_ms := greatest(1, ceil(extract(epoch FROM
                (oldest + limit_budget.rate_period_ms * interval '1 millisecond') - at) * 1000)
                + 1)::bigint;
        END IF;
    END IF;
END
$$;

-- A slot of queue_name freed while the worker that held it claims the
-- queue again anyway (its claim counts, under the lock, after this
-- commits, and takes the slot): announce the queue to the waiting pods, as
-- pgwork.limit_ring does, but without its shared lock — each lock taken
-- by a completion also queued the claims behind it (measured: ~10 ms a
-- claim at cap 50 and 4 workers). Without the lock a claim that sets
-- waiting at this moment may be missed; no slot is lost by that, the
-- worker's own next claim takes it. Returns true (for a WHERE clause).
CREATE OR REPLACE FUNCTION pgwork.limit_nudge(queue_name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pgwork.queue_limits l WHERE l.queue = queue_name AND l.waiting) THEN
        PERFORM pg_notify(pgwork.notify_channel(), pgwork.notify_message(queue_name, now()));
    END IF;
    RETURN true;
END
$$;
