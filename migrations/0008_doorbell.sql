-- 0008_doorbell.sql — the doorbell (DESIGN §1.8): producers notify only
-- when a notification can wake someone.
--
-- Why: a transaction that sent a NOTIFY takes a database-wide lock at
-- commit and holds it through its WAL flush, so notifying commits run one
-- at a time (`make bench`: 8 producers of single-row inserts into a served
-- queue ran at 0.20x the rate without notifications). Most of those
-- notifications woke nobody: every worker was busy already, and a busy
-- worker finds new tasks by itself (it claims until a claim comes back
-- short).
--
-- How: a pod *arms* a queue — one row per (queue, pod) in pgwork.doorbell,
-- armed = true — while it has an idle worker waiting on it, and disarms it
-- when its last idle worker has been woken. The trigger notifies a queue
-- only when some pod armed it, and then rings ONE armed pod, on that pod's
-- own channel ('pgwork_ring_<its listener's backend pid>'): one task wakes
-- one worker in the whole deployment, not one per pod. Under load (every
-- worker busy) inserts send nothing and never take the notify lock.
--
-- The race: a task committed after a worker's last claim but before the
-- arm committed was announced to nobody. After an arm commits, the pod
-- probes the queue once, and finds it.
--
-- A pod that died leaves its rows behind: rows whose listener backend is
-- gone (no longer in pg_stat_activity, or a different backend with its pid)
-- are skipped, so a dead pod never swallows a ring, and pods delete them
-- within minutes. The table is UNLOGGED: it is written often and small,
-- and after a crash or a failover it is empty — every pod reconnects then
-- and arms again.
--
-- Producers:
--   SET pgwork.notify = off;   -- silent, as before (0003): nothing is sent,
--                              -- idle workers find the rows at their safety
--                              -- poll unless announced by hand
--   SET pgwork.notify = on;    -- always notify, on the shared channel
--                              -- (pgwork.notify_channel(), every pod hears
--                              -- it): the behaviour before this migration
--   (unset, anything else)     -- the doorbell
-- Pods still LISTEN on the shared channel: a hand-made
--   SELECT pg_notify('pgwork_tasks', '0 ' || 'emails');
-- rings every pod, as before.

CREATE UNLOGGED TABLE pgwork.doorbell (
    queue text NOT NULL,
    pod text NOT NULL,                -- the pod's "<hostname>:<incarnation>"
    channel text NOT NULL,            -- where to ring it
    backend_pid integer NOT NULL,     -- its listener's backend
    backend_start timestamptz,        -- that backend's start (a reused pid is not it)
    armed boolean NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, pod)
);

-- Whether the listener backend of a doorbell row still runs. Reads that
-- one backend's entry (pg_stat_get_activity(pid)), not the whole view.
-- backend_start is NULL for a backend the caller may not see in full:
-- then the pid alone decides.
CREATE FUNCTION pgwork.doorbell_alive(pid integer, started timestamptz) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_get_activity(pid) a
                   WHERE a.backend_start IS NULL OR started IS NULL
                      OR a.backend_start = started)
$$;

-- The channel of one armed pod of queue_name whose listener is alive, NULL
-- when there is none. SECURITY DEFINER: producers that may insert into
-- pgwork.tasks need no privilege on pgwork.doorbell. Plain reads: no lock
-- but the table's AccessShareLock, which no producer waits for.
CREATE FUNCTION pgwork.ring_channel(queue_name text) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.channel FROM pgwork.doorbell d
    WHERE d.queue = queue_name AND d.armed
      AND pgwork.doorbell_alive(d.backend_pid, d.backend_start)
    ORDER BY random()
    LIMIT 1
$$;

-- The trigger: still statement-level, still one notification per queue per
-- statement (a 10,000-row INSERT sends one per queue), payloads as 0006.
CREATE OR REPLACE FUNCTION pgwork.notify_new_tasks() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    setting text := current_setting('pgwork.notify', true);
    channel text;
    r record;
BEGIN
    IF setting = 'off' THEN
        RETURN NULL;
    END IF;
    FOR r IN
        SELECT n.queue, min(n.run_at) AS first_run_at
        FROM new_tasks n
        WHERE n.state = 'pending'
        GROUP BY n.queue
    LOOP
        IF setting = 'on' THEN
            channel := pgwork.notify_channel();
        ELSE
            channel := pgwork.ring_channel(r.queue);
        END IF;
        IF channel IS NOT NULL THEN
            PERFORM pg_notify(channel, pgwork.notify_message(r.queue, r.first_run_at));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
