-- 0011_pause_cancel.sql — paused queues and cancelled tasks (issue 13
-- items 3 and 4).
--
--   SELECT pgwork.pause('emails');    -- no pod claims from the queue
--   SELECT pgwork.resume('emails');   -- they claim again
--   SELECT pgwork.cancel(42);         -- task 42 ends 'cancelled'
--
-- Pause: a queue is paused while it has a row in pgwork.paused_queues. The
-- claim itself refuses a paused queue (the workers' claim reads this table,
-- one index probe), so no claim whose statement starts after pause() commits
-- takes a task of the queue, on any pod, whatever became of the notification
-- below; a pod started later honours it the same way. Running tasks finish.
--
-- Cancel: a pending task becomes 'cancelled' at once (finished_at set; the
-- claim only takes pending rows, so it never runs). A running one becomes
-- 'cancelled' at once too: the outcome its worker would write later is
-- refused (every worker update requires state = 'running'), and the pod
-- that runs it is told to stop it. last_error says who cancelled it when.
-- A task already done, dead or cancelled is left alone.
--
-- The pods hear both on the task channel (pgwork.notify_channel(), 0006),
-- as payloads no task notification can be (those start with a digit, '@'
-- or are "*"):
--   "!pause <queue>"            the queue is paused now
--   "!resume <queue>"           the queue may be claimed again
--   "!paused"                   a queue name too long for a payload was paused
--                               or resumed: read the table again
--   "!cancel <id> <locked_by>"  task <id>, running under <locked_by>, was
--                               cancelled: its pod stops it
-- A notification is a hint here too: the pods read pgwork.paused_queues at
-- every poll (on each (re)connect and every safety poll).

-- 'cancelled' joins the states (DESIGN §2). NOT VALID: every existing row
-- passed the narrower check, so nothing is scanned; it holds for every row
-- written from now on.
ALTER TABLE pgwork.tasks DROP CONSTRAINT tasks_state_check;
ALTER TABLE pgwork.tasks ADD CONSTRAINT tasks_state_check
    CHECK (state IN ('pending', 'running', 'done', 'dead', 'cancelled')) NOT VALID;

CREATE TABLE pgwork.paused_queues (
    queue     text        PRIMARY KEY CHECK (queue <> ''),
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text        NOT NULL DEFAULT session_user
);

COMMENT ON TABLE pgwork.paused_queues IS
    'pgwork: queues no pod claims from (pgwork.pause / pgwork.resume)';

-- The payload announcing a paused or resumed queue.
CREATE FUNCTION pgwork.pause_message(verb text, queue_name text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN octet_length(m) > 7999 THEN '!paused' ELSE m END
    FROM (SELECT '!' || verb || ' ' || queue_name AS m) x
$$;

-- true: the queue is paused now; false: it was paused already.
CREATE FUNCTION pgwork.pause(queue text) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    added boolean;
BEGIN
    INSERT INTO pgwork.paused_queues (queue) VALUES (pause.queue)
    ON CONFLICT DO NOTHING;
    added := FOUND;
    -- Sent even when it was paused already: a pod that missed the first
    -- notification hears this one.
    PERFORM pg_notify(pgwork.notify_channel(), pgwork.pause_message('pause', pause.queue));
    RETURN added;
END
$$;

-- true: the queue was paused and is not now; false: it was not paused.
CREATE FUNCTION pgwork.resume(queue text) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    removed boolean;
BEGIN
    DELETE FROM pgwork.paused_queues p WHERE p.queue = resume.queue;
    removed := FOUND;
    PERFORM pg_notify(pgwork.notify_channel(), pgwork.pause_message('resume', resume.queue));
    RETURN removed;
END
$$;

-- The task's state before the call: 'pending' or 'running' — it is
-- 'cancelled' now; 'done', 'dead' or 'cancelled' — nothing changed; NULL —
-- no such task. The row is locked first, so a worker finishing the task at
-- the same moment either commits its outcome before (then this sees it
-- finished) or finds the task cancelled (then its outcome is refused).
CREATE FUNCTION pgwork.cancel(task_id bigint) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    prior record;
    who text := session_user
        || coalesce(' (' || nullif(current_setting('application_name', true), '') || ')', '');
BEGIN
    SELECT t.state, t.locked_by INTO prior
    FROM pgwork.tasks t WHERE t.id = task_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF prior.state NOT IN ('pending', 'running') THEN
        RETURN prior.state;
    END IF;
    UPDATE pgwork.tasks t
    SET state = 'cancelled',
        finished_at = now(),
        locked_until = NULL,
        last_error = 'cancelled by ' || who || ' at ' || now()::text
            || CASE WHEN prior.state = 'running'
                    THEN ' while running on ' || coalesce(prior.locked_by, '?') ELSE '' END
    WHERE t.id = task_id;
    IF prior.state = 'running' AND prior.locked_by IS NOT NULL THEN
        PERFORM pg_notify(pgwork.notify_channel(),
                          '!cancel ' || task_id::text || ' ' || prior.locked_by);
    END IF;
    RETURN prior.state;
END
$$;
