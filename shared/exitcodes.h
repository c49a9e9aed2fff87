/*
 * exitcodes.h — the exit codes of the pgwork binary and of its worker
 * processes, in one place: a protocol (STYLE §6). Commands return them to
 * the shell (main.c's --help prints them); a worker's code tells the
 * supervisor whether to restart it. A worker that exits with the
 * configuration code is never restarted, as a supervisor that exits with
 * it should not be: the same number means the same thing on both sides.
 */
#ifndef PGWORK_EXITCODES_H
#define PGWORK_EXITCODES_H

/* Exit codes of every command of the binary. */
enum exit_code {
    EXIT_OK = 0,
    EXIT_FAILURE_GENERIC = 1, /* runtime failure (database unreachable, ...) */
    EXIT_USAGE = 2,           /* bad command line */
    EXIT_CONFIG = 3,          /* bad configuration: do not restart */
    EXIT_BAD_INPUT = 4,       /* bad payload, queue name or task id */
    EXIT_NOTHING_TO_DO = 5,   /* cancel: a task given had finished already (done, dead,
                                 cancelled): left as it was */
};

/* Worker exit codes, as the supervisor's pool reads them. */
enum worker_exit {
    /* asked to stop, stopped */
    WORKER_EXIT_OK = EXIT_OK,
    /* lost the database or similar: restart with backoff */
    WORKER_EXIT_ERROR = EXIT_FAILURE_GENERIC,
    /* configuration problem: do not respawn */
    WORKER_EXIT_FATAL = EXIT_CONFIG,
};

#endif
