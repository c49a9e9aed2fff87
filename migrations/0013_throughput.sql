-- 0013_throughput.sql — tasks finished per queue and minute, for the
-- dashboard's chart (issue 15): done attempts and failed ones (retried or
-- dead), as the pods' workers counted them.
--
-- Each pod adds its own counts once a minute, one upsert for every queue
-- that finished something in the minute that just ended (none when
-- nothing did: an idle pod writes nothing), and once more at a graceful
-- shutdown for the minute in progress (supervisor/throughput.c). Several
-- pods add into the same rows. The same statement deletes a small batch of
-- rows older than a day.
--
-- The key leads with the minute: the dashboard reads the last hour of
-- every queue as one range scan (60 rows per queue, whatever the tasks
-- table holds), and the deletion walks the oldest rows from the start.
CREATE TABLE pgwork.throughput (
    minute timestamptz NOT NULL,
    queue text NOT NULL,
    done bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue)
);
