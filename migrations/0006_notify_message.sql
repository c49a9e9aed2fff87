-- 0006_notify_message.sql — the notification rule in one place.
--
-- The insert trigger and `pgwork requeue-dead` both announce tasks on the
-- task channel, and each spelled the channel rule and the payload format
-- itself. Now two functions do, and both use them (so does a producer that
-- announces a queue by hand, see 0003):
--
--   pgwork.notify_channel()          the channel: the setting
--                                    pgwork.notify_channel when set, else
--                                    'pgwork_tasks'
--   pgwork.notify_message(queue, t)  the payload announcing queue's task(s)
--                                    due at t (the earliest of them):
--     "0 <queue>"          due now (t <= now());
--     "@<t in ms since the epoch> <queue>"
--                          due later, on the database's clock (0005);
--     "*"                  the queue name is too long for a payload
--                          (8000 bytes): something may be due anywhere.
--
-- The supervisor reads these payloads in listener_parse_notification
-- (supervisor/listener.c); it also still understands "<delay_ms> <queue>"
-- from older producers. Nothing changes on the wire: the trigger sends
-- exactly what 0005 made it send.

CREATE OR REPLACE FUNCTION pgwork.notify_channel() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(nullif(current_setting('pgwork.notify_channel', true), ''), 'pgwork_tasks')
$$;

CREATE OR REPLACE FUNCTION pgwork.notify_message(queue_name text, due_at timestamptz)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN octet_length(m.message) > 7999 THEN '*' ELSE m.message END
    FROM (SELECT CASE WHEN due_at <= now() THEN '0 ' || queue_name
                      ELSE '@' || ceil(extract(epoch FROM due_at) * 1000)::bigint::text
                           || ' ' || queue_name
                 END AS message) m
$$;

-- Only the function changes; the trigger and its statement-level,
-- one-notification-per-queue behaviour stay as 0001 made them. A queue's
-- earliest pending run_at is due now exactly when any of them is.
CREATE OR REPLACE FUNCTION pgwork.notify_new_tasks() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    channel text;
    r record;
BEGIN
    IF current_setting('pgwork.notify', true) = 'off' THEN
        RETURN NULL;
    END IF;
    channel := pgwork.notify_channel();
    FOR r IN
        SELECT n.queue, min(n.run_at) AS first_run_at
        FROM new_tasks n
        WHERE n.state = 'pending'
        GROUP BY n.queue
    LOOP
        PERFORM pg_notify(channel, pgwork.notify_message(r.queue, r.first_run_at));
    END LOOP;
    RETURN NULL;
END
$$;
