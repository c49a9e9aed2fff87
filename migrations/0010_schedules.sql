-- 0010_schedules.sql — periodic tasks: one row per schedule, the claim of
-- its ticks.
--
-- A schedule (config: schedule "NAME" { cron | every, queue, payload, ... })
-- makes exactly one task per tick however many pods run it, with no leader.
-- Every pod that runs the schedule tries to claim each tick with one
-- statement that also makes the task (supervisor/ticks.c), a compare-and-set
-- on this table's row for the schedule:
--
--   WITH claim AS (
--     INSERT INTO pgwork.schedules AS s (name, last_tick, ...)
--     SELECT $name, $tick, ... WHERE $tick <= now()
--     ON CONFLICT (name) DO UPDATE
--       SET previous_tick = s.last_tick, last_tick = excluded.last_tick, ...
--       WHERE s.last_tick < excluded.last_tick
--     RETURNING s.previous_tick, s.last_tick)
--   INSERT INTO pgwork.tasks (queue, payload, priority, run_at)
--   SELECT $queue, $payload, $priority, last_tick FROM claim
--   WHERE previous_tick IS NOT NULL;
--
-- Why a compare-and-set on one row rather than a unique (schedule, tick)
-- key:
--  - the table stays one row per schedule: nothing to clean up, however
--    long the schedule runs;
--  - ticks only move forward: a tick at or before the last one made is
--    never made, so a pod that comes late (a slow loop, a clock behind the
--    others) cannot make an old tick the others have passed, and a tick
--    missed while no pod ran is made once, late — the newest due one —
--    not once per missed tick;
--  - two pods claiming the same tick serialise on the row lock; the second
--    re-reads the committed row, finds last_tick = its tick, and makes
--    nothing. The task and the claim commit together or not at all.
--
-- Clocks: whether a tick is due is the database's judgement (`$tick <=
-- now()`), never a pod's; pods arm their timers on the database's clock as
-- they measure it (its offset from their monotonic clock, sampled by every
-- statement), so a pod whose own clock is off neither fires early nor
-- makes a tick before its time. The comparison that decides who makes a
-- tick compares ticks, not clocks.
--
-- A schedule seen for the first time gets its row with the newest due tick
-- as last_tick and previous_tick NULL, and no task: a schedule added at
-- 14:00 with cron "0 3 * * *" does not make 03:00's task late; its first
-- task is the next tick's.
--
-- The other columns describe the schedule as the pod that made the last
-- tick saw it, for `pgwork status`, `pgwork web` and any SQL client: what
-- the schedule is, where its tasks go, when its next tick is.

CREATE TABLE pgwork.schedules (
    name text PRIMARY KEY,           -- schedule "NAME" in the config
    last_tick timestamptz NOT NULL,  -- the newest tick claimed (its task's run_at)
    previous_tick timestamptz,       -- the tick claimed before it; NULL: first sighting, no task
    next_tick timestamptz,           -- the tick after last_tick, by the claiming pod's config
    queue text NOT NULL,             -- where its tasks go
    spec text NOT NULL,              -- "cron 0 3 * * * Europe/Berlin", "every 30s"
    made_by text NOT NULL,           -- the pod (hostname:incarnation) that claimed last_tick
    made_at timestamptz NOT NULL DEFAULT now() -- when, on the database's clock
);

COMMENT ON TABLE pgwork.schedules IS
    'One row per schedule: the compare-and-set of its ticks (one task per tick, all pods together).';
