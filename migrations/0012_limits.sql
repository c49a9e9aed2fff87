-- 0012_limits.sql — a queue's concurrency cap and rate limit, held for
-- every pod together (issue 14; config keys queue.concurrency, queue.rate).
--
-- Only queues with a limit use anything here: their claim is a statement
-- of its own (worker/task.c, limited_claim_format) that first calls
-- pgwork.limit_budget(); queues without a limit keep the plain claim and
-- pay nothing, not even an index (the running count below walks
-- tasks_running_idx, which every claim already maintains).
--
-- How the count is made atomic with the claim: an advisory *transaction*
-- lock per limited queue (pg_advisory_xact_lock(key, hashtext(queue)): it
-- goes with the transaction, nothing stays in the session, so PgBouncer's
-- transaction pooling is fine). The claim statement takes it through
-- limit_budget, and counts inside limit_budget *after* the lock is granted:
-- the function is VOLATILE, so in READ COMMITTED each of its statements
-- takes a fresh snapshot, which sees every claim that held the lock before
-- (they committed before releasing it). A count in the claim statement
-- itself would use the statement's snapshot, taken before the lock wait,
-- and miss them. Rows become running only by a claim, and a limited
-- queue's claims hold the lock, so "at most N running" holds; completions
-- only lower the count, unlocked.
--
-- Chosen over a counter row (running + 1 at claim, - 1 at each outcome):
-- a counter must be kept right by every path that ends a run (done, retry,
-- dead, release, a dead worker's requeue, an expired lease, a deleted row),
-- and drifts for ever when one is missed; the count of running rows is
-- right by construction. It costs a walk of the running rows (and of the
-- index entries finished rows left until vacuum) per limited claim.
--
-- Rate: pgwork.limit_starts keeps each start of a rate-limited queue
-- (pruned to the period by each claim, so it holds about N rows a queue):
-- starts survive `keep_done = false` deletes and retention, which would
-- take tasks.started_at with them. A start's time is clock_timestamp()
-- taken under the lock, so starts are recorded in the order they were
-- granted, and a claim allows at most N - (starts in [t - period, t]): no
-- closed window of one period ever holds more than N starts.
--
-- Waking: a worker that finds the cap reached sleeps. Its claim sets
-- queue_limits.waiting when the cap left due tasks behind; a completion of
-- a capped queue calls pgwork.limit_ring(), which sends the queue's
-- notification (as an INSERT would) only while waiting is set. The ring
-- takes the same advisory lock in shared mode, so completions do not wait
-- for each other, and either the ring sees a claim's waiting flag or that
-- claim's count sees the completion. Rate-limited tasks are woken by the
-- supervisor's timer at the moment budget returns (limit_budget says when).
--
-- Pods whose configs disagree: each claim enforces its own pod's values
-- against the shared count, so the largest cap and rate hold for the total
-- (a pod with the smaller value stops earlier); queue_limits remembers the
-- values last used, and limit_budget reports a change to the worker, which
-- logs a warning.

CREATE TABLE IF NOT EXISTS pgwork.queue_limits (
    queue          text PRIMARY KEY,
    concurrency    integer NOT NULL DEFAULT 0,   -- as the last claim's pod has it
    rate_count     integer NOT NULL DEFAULT 0,
    rate_period_ms bigint  NOT NULL DEFAULT 0,
    set_by         text,                         -- locked_by of that claim
    waiting        boolean NOT NULL DEFAULT false -- due tasks held back by the cap
);

CREATE TABLE IF NOT EXISTS pgwork.limit_starts (
    queue      text        NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS limit_starts_idx ON pgwork.limit_starts (queue, started_at);

-- The budget of one claim of a limited queue, under the queue's lock:
-- take = how many tasks it may start now (at most batch; when the cap is
-- nearly reached only one, so a batch of long tasks is not stuck behind
-- one worker while others wait), at = the start time to record,
-- wait_ms = when the rate allows the next start (NULL: not rate-bound),
-- cap_bound = the cap decided take, other = the limits another pod used
-- last when they differ from these (NULL otherwise).
CREATE OR REPLACE FUNCTION pgwork.limit_budget(
    queue_name text, cap integer, rate_count integer, rate_period_ms bigint, batch integer,
    claimer text,
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
    PERFORM pg_advisory_xact_lock(1886156652, hashtext(queue_name));  -- 'pgwl'
    at := clock_timestamp();
    take := batch;
    cap_bound := false;

    SELECT * INTO known FROM pgwork.queue_limits l WHERE l.queue = queue_name;
    IF NOT FOUND THEN
        INSERT INTO pgwork.queue_limits (queue, concurrency, rate_count, rate_period_ms, set_by)
        VALUES (queue_name, cap, limit_budget.rate_count, limit_budget.rate_period_ms, claimer)
        ON CONFLICT (queue) DO NOTHING;
    ELSIF known.concurrency <> cap OR known.rate_count <> limit_budget.rate_count
          OR known.rate_period_ms <> limit_budget.rate_period_ms THEN
        -- The claim statement records this pod's values (its one UPDATE
        -- of the row, with the waiting flag): a second UPDATE of the row
        -- in the same statement, here, would fail it ("tuple to be updated
        -- was already modified by an operation triggered by the current
        -- command").
        other := format('concurrency = %s, rate = %s per %s ms (set by %s)', known.concurrency,
                        known.rate_count, known.rate_period_ms, known.set_by);
    END IF;

    IF cap > 0 THEN
        SELECT count(*) INTO running
        FROM pgwork.tasks t WHERE t.queue = queue_name AND t.state = 'running';
        IF cap - running < batch THEN
            take := least(greatest(cap - running, 0), 1);
            cap_bound := true;
        END IF;
    END IF;

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
            -- The next start is allowed once enough starts have left the
            -- window: the (started - rate_count + 1)th oldest.
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

-- A slot of queue_name may have freed (a completion, a failure, a
-- release): announce the queue, as an INSERT would, while a claim left due
-- tasks waiting for the cap. Returns true (for use in a WHERE clause).
CREATE OR REPLACE FUNCTION pgwork.limit_ring(queue_name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1886156652, hashtext(queue_name));
    IF EXISTS (SELECT 1 FROM pgwork.queue_limits l WHERE l.queue = queue_name AND l.waiting) THEN
        PERFORM pg_notify(pgwork.notify_channel(), pgwork.notify_message(queue_name, now()));
    END IF;
    RETURN true;
END
$$;
