-- 0003_notify_switch.sql — a switch for bulk producers: inserts made while
-- the setting pgwork.notify is 'off' send no notification.
--
--   SET LOCAL pgwork.notify = off;              -- this transaction only
--   SET pgwork.notify = off;                    -- this session
--   PGOPTIONS='-c pgwork.notify=off' ./loader   -- a whole program, unchanged
--
-- Why: PostgreSQL serialises the commits of transactions that sent a NOTIFY
-- (a database-wide lock taken at commit, so the notification queue stays
-- in commit order). Many small notifying transactions therefore commit one
-- at a time: `make bench` measures single-row INSERTs from 8 clients with
-- the trigger at about a third of the rate without it, with most backends
-- waiting on that lock (Lock:object). With the switch off they run at the
-- rate without the trigger. Nothing changes for anyone who does not set it:
-- the default (unset, or any value but 'off') notifies as before, so idle
-- pickup latency is untouched.
--
-- The price, for the switched-off inserts only: nothing announces them.
-- Busy workers still find them (a worker keeps claiming until a claim comes
-- back short, DESIGN §1.3); idle workers find them at the next safety poll
-- (workers.safety_poll_interval, 60 s by default) unless the producer
-- announces its queue once when it is done, in a transaction of its own:
--
--   SELECT pg_notify('pgwork_tasks', '0 ' || 'emails');   -- "0 <queue>": due now
--
-- Only the function changes; the trigger and its statement-level,
-- one-notification-per-queue behaviour stay as 0001 made them.

CREATE OR REPLACE FUNCTION pgwork.notify_new_tasks() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    channel text;
    r record;
    message text;
BEGIN
    IF current_setting('pgwork.notify', true) = 'off' THEN
        RETURN NULL;
    END IF;
    channel := coalesce(nullif(current_setting('pgwork.notify_channel', true), ''),
                        'pgwork_tasks');
    FOR r IN
        SELECT n.queue,
               bool_or(n.run_at <= now()) AS any_due,
               min(n.run_at) AS first_run_at
        FROM new_tasks n
        WHERE n.state = 'pending'
        GROUP BY n.queue
    LOOP
        IF r.any_due THEN
            message := '0 ' || r.queue;
        ELSE
            message := greatest(0, ceil(extract(epoch FROM r.first_run_at - clock_timestamp())
                                        * 1000))::bigint::text || ' ' || r.queue;
        END IF;
        IF octet_length(message) > 7999 THEN
            message := '*';
        END IF;
        PERFORM pg_notify(channel, message);
    END LOOP;
    RETURN NULL;
END
$$;
