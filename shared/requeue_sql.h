/*
 * requeue_sql.h — the one statement that moves dead tasks back to pending,
 * shared by `pgwork requeue-dead` (supervisor/cli_requeue.c) and the
 * dashboard's requeue actions (web/queries.c). Each builds its statement
 * as REQUEUE_WITH(selector) "SELECT " REQUEUE_COUNTS plus what it reads.
 */
#ifndef PGWORK_REQUEUE_SQL_H
#define PGWORK_REQUEUE_SQL_H

/*
 * One statement: move the dead tasks back to pending and announce each
 * queue touched the way the insert trigger does (pgwork.notify_channel()
 * and pgwork.notify_message(), migration 0006): an UPDATE fires no insert
 * trigger, and without the notification the tasks would wait for the
 * safety poll. The notification is sent at commit, with the rows. A CTE
 * with a volatile function is always run whole; the final SELECT reads it
 * so it is not skipped.
 *
 * Unique keys (migration 0007) stay unique: a dead task whose key a
 * pending or running task holds stays dead, and of several dead tasks
 * with one free key only the newest moves. A holder committed after the
 * statement's snapshot makes it fail with a unique violation: it is run
 * again (cli_requeue_dead; the dashboard answers 409).
 */
/* clang-format off */
#define REQUEUE_WITH(selector)                                                              \
    "WITH dead AS ("                                                                        \
    " SELECT id, queue, unique_key FROM pgwork.tasks"                                       \
    " WHERE state = 'dead' AND " selector                                                   \
    " FOR UPDATE), "                                                                        \
    "free_keys AS ("                                                                        \
    " SELECT DISTINCT ON (d.queue, d.unique_key) d.id FROM dead d"                          \
    " WHERE d.unique_key IS NOT NULL"                                                       \
    "   AND NOT EXISTS (SELECT 1 FROM pgwork.tasks l"                                       \
    "                   WHERE l.queue = d.queue AND l.unique_key = d.unique_key"            \
    "                     AND l.state IN ('pending', 'running'))"                           \
    " ORDER BY d.queue, d.unique_key, d.id DESC), "                                         \
    "moved AS ("                                                                            \
    " UPDATE pgwork.tasks t SET state = 'pending', attempts = 0, run_at = now(),"           \
    "  locked_by = NULL, locked_until = NULL, finished_at = NULL"                           \
    " FROM dead d"                                                                          \
    " WHERE t.id = d.id AND (d.unique_key IS NULL OR d.id IN (SELECT id FROM free_keys))"   \
    " RETURNING t.id, t.queue), "                                                           \
    "notified AS ("                                                                         \
    " SELECT pg_notify(pgwork.notify_channel(), pgwork.notify_message(q.queue, now()))"     \
    " FROM (SELECT DISTINCT queue FROM moved) q) "

/* Moved, queues announced, left dead for their key. */
#define REQUEUE_COUNTS                                                                      \
    "(SELECT count(*) FROM moved), (SELECT count(*) FROM notified),"                        \
    " (SELECT count(*) FROM dead) - (SELECT count(*) FROM moved)"

/* clang-format on */

#endif
