-- 0005_notify_absolute_due.sql — a future task's notification carries its
-- due time, not a delay.
--
-- Until now a queue whose new rows were all in the future was announced as
-- "<delay_ms> <queue>", the delay measured when the rows were inserted. But
-- a notification leaves at commit: a task due 1 s after its insert, in a
-- transaction that committed 4 s later, was woken 1 s after the commit,
-- already 3 s late (and a task due in 10 minutes inside a 10-minute
-- transaction waited for the safety poll). Now the payload is
--
--   @<run_at in ms since the epoch> <queue>
--
-- on the database's clock; the supervisor compares it with that clock (it
-- measures the offset on every poll) at delivery, so a task already due at
-- commit starts at commit. "0 <queue>" (due now) is unchanged, and pods
-- still understand "<delay_ms> <queue>" (a producer's own pg_notify, or an
-- older trigger); an older pod ignores "@…" payloads with a warning and
-- finds those tasks at its safety poll — migrate before rolling the pods.
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
            message := '@' || ceil(extract(epoch FROM r.first_run_at) * 1000)::bigint::text
                       || ' ' || r.queue;
        END IF;
        IF octet_length(message) > 7999 THEN
            message := '*';
        END IF;
        PERFORM pg_notify(channel, message);
    END LOOP;
    RETURN NULL;
END
$$;
