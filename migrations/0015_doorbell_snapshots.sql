-- 0015_doorbell_snapshots.sql — the doorbell's long-transaction gap
-- (0008): a producer whose trigger found no arm, and that was still open
-- when the pod armed and probed, must not wait for the safety poll.
--
-- Why it was open: the pod probes the queue once after its arm commits,
-- but the probe cannot see a task whose transaction has not committed
-- yet. That producer rang nobody (no arm when its trigger looked) and the
-- probe missed it: it waited for a busy worker or the safety poll.
--
-- READ COMMITTED (PostgreSQL's default) is closed by the pod, no SQL: the
-- trigger is plpgsql and VOLATILE, and so is pgwork.ring_channel (0008),
-- so the doorbell lookup runs with a fresh snapshot taken at the trigger,
-- after the INSERT wrote its rows: the transaction had its xid before it.
-- A lookup that missed the arm was taken before the arm committed, so
-- that xid is below the xmax of the probe's snapshot (taken after): the
-- transaction had ended by then (the probe saw its task) or was running.
-- The pod reads the probe's snapshot (pg_current_snapshot()); when it
-- had transactions running, the pod probes again, 10 ms later, doubling,
-- until a probe's xmin has passed that xmax (every one of them has ended,
-- and that probe saw their commits). Nothing more when none was running:
-- an idle database costs the idle pod nothing extra.
--
-- REPEATABLE READ and SERIALIZABLE are this file: there every statement,
-- the lookup too, uses the snapshot the transaction took at its first
-- statement, which may predate the arm while its xid (its first write)
-- comes after the probe. Such a lookup cannot be trusted to have seen an
-- arm, so when it finds none the trigger notifies on the shared channel,
-- as pgwork.notify = on does (every pod hears it). Those producers pay
-- the notify lock whenever no pod is armed for the queue (under load,
-- mostly): set pgwork.notify = off in them to stay silent (their tasks
-- then wait for a busy worker or the safety poll), or insert in READ
-- COMMITTED. A lookup that found an arm rings that pod, as before.
--
-- SET LOCAL pgwork.notify = on stays available, and is no longer needed
-- for this race.

CREATE OR REPLACE FUNCTION pgwork.notify_new_tasks() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    setting text := current_setting('pgwork.notify', true);
    -- The lookup's snapshot is the transaction's (see above). Not READ
    -- UNCOMMITTED: PostgreSQL runs it as READ COMMITTED.
    old_snapshot boolean := current_setting('transaction_isolation')
                            IN ('repeatable read', 'serializable');
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
            IF channel IS NULL AND old_snapshot THEN
                channel := pgwork.notify_channel();
            END IF;
        END IF;
        IF channel IS NOT NULL THEN
            PERFORM pg_notify(channel, pgwork.notify_message(r.queue, r.first_run_at));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
