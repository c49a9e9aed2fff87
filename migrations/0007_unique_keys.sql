-- 0007_unique_keys.sql — unique keys: at most one live task per
-- (queue, unique_key).
--
-- A task may carry a unique_key. While a task of the same queue with the
-- same key is pending or running, no second one is made: the partial
-- unique index below refuses it, so any client can enqueue with
--
--   INSERT INTO pgwork.tasks (queue, payload, unique_key)
--   VALUES ('emails', '{"user": 42}', 'welcome-42')
--   ON CONFLICT DO NOTHING;
--
-- (or name the index's columns and predicate as the conflict target:
-- ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL
-- AND state IN ('pending', 'running') DO NOTHING). Once the task is done or
-- dead the key is free again. Tasks without a key (NULL) never enter the
-- index: the unkeyed pay nothing for it, and their claims and completions
-- write no extra index entry.
--
-- pgwork.enqueue gains the key as its fifth argument and returns the id of
-- the task that holds the key when one does — the new task's, or the one
-- already there. The old four-argument function is replaced, not
-- overloaded: both would match a call with fewer arguments.

-- Adding a column without a default rewrites nothing. The length check is
-- NOT VALID so that adding it does not scan the table (every existing row is
-- NULL anyway); it holds for every row written from now on. 1000 bytes keep
-- an index entry well under btree's ~2700-byte limit.
ALTER TABLE pgwork.tasks ADD COLUMN unique_key text;
ALTER TABLE pgwork.tasks ADD CONSTRAINT tasks_unique_key_length
    CHECK (octet_length(unique_key) BETWEEN 1 AND 1000) NOT VALID;

-- Building the index reads the table once, holding off inserts meanwhile
-- (a migration runs in a transaction: no CONCURRENTLY); every row is
-- NULL-keyed, so the index starts empty.

CREATE UNIQUE INDEX tasks_unique_key_idx ON pgwork.tasks (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');

DROP FUNCTION pgwork.enqueue(text, jsonb, timestamptz, integer);

-- Read committed (the default): INSERT ... ON CONFLICT waits for a
-- concurrent inserter of the same key to commit or roll back, and the
-- SELECT after it, a statement of its own, sees what that one committed.
-- The loop covers the holder finishing between the two statements (the
-- key is free again: insert anew). Under repeatable read or serializable a
-- holder the snapshot cannot see is a serialization failure, raised by
-- PostgreSQL; the loop's bound is only a guard.
CREATE FUNCTION pgwork.enqueue(queue text, payload jsonb DEFAULT '{}'::jsonb,
                               run_at timestamptz DEFAULT now(), priority integer DEFAULT 0,
                               unique_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    task_id bigint;
BEGIN
    FOR attempt IN 1..10 LOOP
        INSERT INTO pgwork.tasks (queue, payload, run_at, priority, unique_key)
        VALUES (enqueue.queue, coalesce(enqueue.payload, '{}'::jsonb),
                coalesce(enqueue.run_at, now()), coalesce(enqueue.priority, 0),
                enqueue.unique_key)
        ON CONFLICT DO NOTHING
        RETURNING id INTO task_id;
        IF task_id IS NOT NULL THEN
            RETURN task_id;
        END IF;
        SELECT t.id INTO task_id
        FROM pgwork.tasks t
        WHERE t.queue = enqueue.queue AND t.unique_key = enqueue.unique_key
          AND t.state IN ('pending', 'running');
        IF task_id IS NOT NULL THEN
            RETURN task_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'pgwork.enqueue: the unique key % of queue % keeps changing hands',
        enqueue.unique_key, enqueue.queue
        USING ERRCODE = 'serialization_failure';
END
$$;
