/*
 * main.c — the pgwork command line: parse arguments, load the config,
 * dispatch to one command. Nothing here talks to the database itself.
 *
 * Order matters for the exit codes: the whole command line is parsed before
 * the config is loaded (a typo is exit 2 whatever the config says), and the
 * connection strings are checked before anything connects or forks (exit 3,
 * with the password hidden, instead of every worker logging libpq's parse
 * error, which quotes a bad URL whole).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "supervisor.h"
#include "../web/web.h"
#include "../shared/config.h"
#include "../shared/log.h"

#ifndef PGWORK_VERSION
#define PGWORK_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pgwork [OPTIONS] COMMAND [ARGS] [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  run                      run the supervisor and its workers\n"
            "  migrate                  apply the database migrations\n"
            "  enqueue [--unique-key KEY] QUEUE [PAYLOAD]\n"
            "                           add a task (JSON payload, stdin when absent);\n"
            "                           prints the new task id. With a KEY no second\n"
            "                           task is made while one of the queue with that key\n"
            "                           is pending or running: prints that one's id\n"
            "  status [--json] [QUEUE...]\n"
            "                           tasks per queue: PENDING (due now), SCHEDULED\n"
            "                           (pending, due later), RUNNING, DONE, DEAD, and the\n"
            "                           age of the oldest pending and running task; every\n"
            "                           queue in the database, or those named. --json: one\n"
            "                           object {\"queues\": [{\"queue\", \"pending_due\",\n"
            "                           \"pending_scheduled\", \"running\", \"done\", \"dead\",\n"
            "                           \"oldest_pending_age_seconds\",\n"
            "                           \"oldest_running_age_seconds\",\n"
            "                           \"next_scheduled_in_seconds\"}, ...]} (ages null\n"
            "                           when there is no such task)\n"
            "  requeue-dead QUEUE | --all-queues | --id ID [--id ID...]\n"
            "                           move dead tasks back to pending: attempts 0, due\n"
            "                           now, last_error kept until the next failure; of\n"
            "                           one queue, of every queue, or by task id (each\n"
            "                           must be dead); prints how many\n"
            "  cancel ID...             cancel tasks (pgwork.cancel): a pending one\n"
            "                           never runs; a running one is stopped by the pod\n"
            "                           that runs it (its process group, or its\n"
            "                           statement) within a second; both end cancelled,\n"
            "                           never retried. A task already done, dead or\n"
            "                           cancelled is left as it was (exit 5)\n"
            "  pause QUEUE...           no pod claims from these queues until resumed\n"
            "                           (pgwork.pause); running tasks finish\n"
            "  resume QUEUE...          claim from them again (pgwork.resume)\n"
            "  web                      serve the dashboard on web.listen, a process of its\n"
            "                           own (token: web.token_file or PGWORK_WEB_TOKEN)\n"
            "  check-config             validate the config file (and the connection\n"
            "                           strings' syntax) as run would, and exit: a file\n"
            "                           without a queue is an error (exit 3) for both\n"
            "  --version                print the version\n"
            "  --help                   print this text\n"
            "\n"
            "options (before or after the command):\n"
            "  -c, --config FILE        config file (default: $PGWORK_CONFIG, else\n"
            "                           built-in defaults)\n"
            "  -h, --help / -V, --version  this text / the version\n"
            "  --                       end of options: a queue name may then start\n"
            "                           with '-' (pgwork status -- -q)\n"
            "\n"
            "environment:\n"
            "  PGWORK_CONFIG            config file when -c is not given\n"
            "  PGWORK_DATABASE_URL      connection string when database.conninfo is\n"
            "                           empty; libpq's PG* variables apply too\n"
            "\n"
            "exit codes:\n"
            "  0  success\n"
            "  1  runtime failure (database unreachable, query failed, ...)\n"
            "  2  bad command line\n"
            "  3  bad configuration (also a malformed connection string)\n"
            "  4  bad input (payload is not JSON, bad queue name, a task given to\n"
            "     requeue-dead --id that does not exist or is not dead, a task given\n"
            "     to cancel that does not exist)\n"
            "  5  nothing to do: a task given to cancel had finished already (done,\n"
            "     dead or cancelled); the others given were cancelled\n");
}

enum command {
    CMD_RUN,
    CMD_MIGRATE,
    CMD_ENQUEUE,
    CMD_STATUS,
    CMD_REQUEUE_DEAD,
    CMD_CANCEL,
    CMD_PAUSE,
    CMD_RESUME,
    CMD_CHECK_CONFIG,
    CMD_WEB,
};

/* A command and its arguments, parsed before anything else happens. */
struct invocation {
    enum command command;
    const char *queue;      /* enqueue */
    const char *payload;    /* enqueue: NULL = stdin */
    const char *unique_key; /* enqueue: NULL = none */
    struct cli_status_options status;
    struct cli_requeue_options requeue;
    int64_t *ids;              /* requeue.ids, cancel's ids, owned */
    int id_count;              /* cancel */
    const char *const *queues; /* pause, resume: points into args */
    int queue_count;
    bool help;   /* COMMAND --help: print the usage, do nothing else */
    char **args; /* the command and its arguments, owned: status.queues points into it */
};

static void invocation_free(struct invocation *inv)
{
    free(inv->ids);
    free(inv->args);
}

/* A command-line mistake: one line naming the command, then a pointer to
 * --help. Returns EXIT_USAGE. */
static int usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "pgwork: %s: ", command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see pgwork --help)\n");
    return EXIT_USAGE;
}

/* The option getopt_long just refused, for a message. */
static const char *bad_option(char **argv, int optopt_char)
{
    static char short_opt[3];
    if (optopt_char != 0) {
        snprintf(short_opt, sizeof(short_opt), "-%c", optopt_char);
        return short_opt;
    }
    return argv[optind - 1];
}

/* `status [--json] [QUEUE...]`: argv[0] is the command. */
static int parse_status(int argc, char **argv, struct invocation *inv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 0; /* a fresh scan of this argv (GNU getopt) */
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (opt == 'j')
            inv->status.json = true;
        else if (opt == 'h')
            inv->help = true;
        else
            return usage_error(argv[0], "unknown option %s", bad_option(argv, optopt));
    }
    inv->status.queues = (const char *const *)argv + optind;
    inv->status.queue_count = argc - optind;
    return EXIT_OK;
}

/* enqueue [--unique-key KEY] QUEUE [PAYLOAD]: options before the queue
 * only, so a payload that starts with '-' (a JSON number) is a payload. */
static int parse_enqueue(int argc, char **argv, struct invocation *inv)
{
    static const struct option options[] = {
        {"unique-key", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "+:", options, NULL)) != -1) {
        if (opt == 'k')
            inv->unique_key = optarg;
        else if (opt == 'h')
            inv->help = true;
        else if (opt == ':')
            return usage_error(argv[0], "%s needs a key", argv[optind - 1]);
        else
            return usage_error(argv[0], "unknown option %s", bad_option(argv, optopt));
    }
    if (inv->help)
        return EXIT_OK;
    int args = argc - optind;
    if (args < 1 || args > 2)
        return usage_error(argv[0], "give a QUEUE and at most one PAYLOAD");
    inv->queue = argv[optind];
    inv->payload = args == 2 ? argv[optind + 1] : NULL;
    return EXIT_OK;
}

/* `requeue-dead QUEUE | --all-queues | --id ID...`: exactly one of them. */
static int parse_requeue(int argc, char **argv, struct invocation *inv)
{
    static const struct option options[] = {
        {"all-queues", no_argument, NULL, 'a'},
        {"id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool all = false;
    int opt;
    inv->ids = calloc((size_t)argc, sizeof(*inv->ids)); /* at most one id per argument */
    if (inv->ids == NULL) {
        fprintf(stderr, "pgwork: out of memory\n");
        return EXIT_FAILURE_GENERIC;
    }
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (opt == 'a') {
            all = true;
        } else if (opt == 'h') {
            inv->help = true;
        } else if (opt == 'i') {
            char *end;
            errno = 0;
            long long id = strtoll(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || id <= 0)
                return usage_error(argv[0], "bad task id \"%s\": not a positive integer", optarg);
            inv->ids[inv->requeue.id_count++] = id;
        } else if (opt == ':') {
            return usage_error(argv[0], "%s needs a task id", argv[optind - 1]);
        } else {
            return usage_error(argv[0], "unknown option %s", bad_option(argv, optopt));
        }
    }
    if (inv->help)
        return EXIT_OK;
    int queues = argc - optind;
    int selectors = (queues > 0) + all + (inv->requeue.id_count > 0);
    if (selectors == 0)
        return usage_error(argv[0], "name a QUEUE, or give --all-queues or --id ID");
    if (selectors > 1)
        return usage_error(argv[0], "give one of QUEUE, --all-queues or --id, not several");
    if (queues > 1)
        return usage_error(argv[0], "one queue at a time (or --all-queues)");
    if (queues == 1) {
        inv->requeue.scope = CLI_REQUEUE_QUEUE;
        inv->requeue.queue = argv[optind];
    } else if (all) {
        inv->requeue.scope = CLI_REQUEUE_ALL;
    } else {
        inv->requeue.scope = CLI_REQUEUE_IDS;
        inv->requeue.ids = inv->ids;
    }
    return EXIT_OK;
}

/* `cancel ID...`: positive integers. */
static int parse_cancel(int argc, char **argv, struct invocation *inv)
{
    if (argc < 2)
        return usage_error(argv[0], "give the id of at least one task");
    inv->ids = calloc((size_t)argc, sizeof(*inv->ids));
    if (inv->ids == NULL) {
        fprintf(stderr, "pgwork: out of memory\n");
        return EXIT_FAILURE_GENERIC;
    }
    for (int i = 1; i < argc; i++) {
        char *end;
        errno = 0;
        long long id = strtoll(argv[i], &end, 10);
        if (errno != 0 || end == argv[i] || *end != '\0' || id <= 0)
            return usage_error(argv[0], "bad task id \"%s\": not a positive integer", argv[i]);
        inv->ids[inv->id_count++] = id;
    }
    return EXIT_OK;
}

/* The command at argv[0] and its arguments into inv; EXIT_OK or the exit
 * code of a mistake (reported). */
static int parse_command(int argc, char **argv, struct invocation *inv)
{
    const char *command = argv[0];
    int args = argc - 1;
    if (strcmp(command, "run") == 0 && args == 0) {
        inv->command = CMD_RUN;
    } else if (strcmp(command, "check-config") == 0 && args == 0) {
        inv->command = CMD_CHECK_CONFIG;
    } else if (strcmp(command, "web") == 0 && args == 0) {
        inv->command = CMD_WEB;
    } else if (strcmp(command, "migrate") == 0 && args == 0) {
        inv->command = CMD_MIGRATE;
    } else if (strcmp(command, "enqueue") == 0 && args >= 1) {
        inv->command = CMD_ENQUEUE;
        return parse_enqueue(argc, argv, inv);
    } else if (strcmp(command, "status") == 0) {
        inv->command = CMD_STATUS;
        return parse_status(argc, argv, inv);
    } else if (strcmp(command, "requeue-dead") == 0) {
        inv->command = CMD_REQUEUE_DEAD;
        return parse_requeue(argc, argv, inv);
    } else if (strcmp(command, "cancel") == 0) {
        inv->command = CMD_CANCEL;
        return parse_cancel(argc, argv, inv);
    } else if ((strcmp(command, "pause") == 0 || strcmp(command, "resume") == 0) && args >= 1) {
        inv->command = strcmp(command, "pause") == 0 ? CMD_PAUSE : CMD_RESUME;
        inv->queues = (const char *const *)argv + 1;
        inv->queue_count = args;
    } else {
        fprintf(stderr, "pgwork: unknown command or wrong arguments: %s\n", command);
        usage(stderr);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* What the global options asked for, beside the config file. */
enum global_action {
    GLOBAL_NONE,    /* run the command */
    GLOBAL_HELP,    /* -h, --help (also `help`) */
    GLOBAL_VERSION, /* -V, --version (also `version`) */
};

/* Options of a command that take the next argument as their value: it is
 * passed on untouched even when it looks like a global option. */
static bool takes_value(const char *command, const char *arg)
{
    return command != NULL &&
           ((strcmp(command, "requeue-dead") == 0 && strcmp(arg, "--id") == 0) ||
            (strcmp(command, "enqueue") == 0 && strcmp(arg, "--unique-key") == 0));
}

/* Whether the command parses its own options with getopt, which reads a
 * `--` itself (`status -- -q`); the others take positional arguments only,
 * so their `--` is dropped here. */
static bool parses_options(const char *command)
{
    return strcmp(command, "status") == 0 || strcmp(command, "requeue-dead") == 0 ||
           strcmp(command, "enqueue") == 0;
}

/*
 * Take the global options (-c FILE, -cFILE, --config FILE, --config=FILE,
 * -h, --help, -V, --version) out of argv wherever they stand, before or
 * after the command, as most CLIs allow; a Kubernetes `args:` list follows
 * an ENTRYPOINT of `pgwork run`. A `--` ends them: what follows is the
 * command or its arguments, whatever it looks like. The first other
 * argument is the command; it and the rest, in order, go into cmd (argc
 * entries at most, NULL-terminated). Returns EXIT_OK, or EXIT_USAGE after
 * saying why. The last -c wins.
 */
static int split_global_options(int argc, char **argv, const char **config_path,
                                enum global_action *action, char **cmd, int *cmd_count)
{
    int n = 0;
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *command = n > 0 ? cmd[0] : NULL;
        if (!options || arg[0] != '-' || arg[1] == '\0') {
            cmd[n++] = argv[i];
        } else if (strcmp(arg, "--") == 0) {
            options = false;
            if (command != NULL && parses_options(command))
                cmd[n++] = argv[i];
        } else if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pgwork: %s needs a config file (see pgwork --help)\n", arg);
                return EXIT_USAGE;
            }
            *config_path = argv[++i];
        } else if (strncmp(arg, "--config=", 9) == 0) {
            *config_path = arg + 9;
        } else if (strncmp(arg, "-c", 2) == 0) {
            *config_path = arg + 2;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *action = GLOBAL_HELP;
        } else if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
            if (*action == GLOBAL_NONE)
                *action = GLOBAL_VERSION;
        } else if (command == NULL) {
            fprintf(stderr, "pgwork: unknown option %s\n", arg);
            usage(stderr);
            return EXIT_USAGE;
        } else {
            cmd[n++] = argv[i]; /* the command's own option */
            if (takes_value(command, arg) && i + 1 < argc)
                cmd[n++] = argv[++i];
        }
    }
    cmd[n] = NULL;
    *cmd_count = n;
    return EXIT_OK;
}

/*
 * The command line into *config_path and inv. Returns -1 to go on, or the
 * exit code when nothing more is to be done: help or version printed, or
 * a mistake reported.
 */
static int read_command_line(int argc, char **argv, const char **config_path,
                             struct invocation *inv)
{
    enum global_action action = GLOBAL_NONE;
    char **cmd = calloc((size_t)argc + 1, sizeof(*cmd));
    int cmd_count = 0;
    inv->args = cmd;
    if (cmd == NULL) {
        fprintf(stderr, "pgwork: out of memory\n");
        return EXIT_FAILURE_GENERIC;
    }
    int rc = split_global_options(argc, argv, config_path, &action, cmd, &cmd_count);
    if (rc == EXIT_OK && action == GLOBAL_NONE && cmd_count > 0) {
        if (strcmp(cmd[0], "help") == 0)
            action = GLOBAL_HELP;
        else if (strcmp(cmd[0], "version") == 0)
            action = GLOBAL_VERSION;
    }
    if (rc == EXIT_OK && action == GLOBAL_NONE && cmd_count == 0) {
        usage(stderr);
        rc = EXIT_USAGE;
    }
    if (rc == EXIT_OK && action == GLOBAL_HELP)
        usage(stdout);
    else if (rc == EXIT_OK && action == GLOBAL_VERSION)
        printf("pgwork %s\n", PGWORK_VERSION);
    else if (rc == EXIT_OK) {
        rc = parse_command(cmd_count, cmd, inv);
        if (rc == EXIT_OK && inv->help)
            usage(stdout);
        else if (rc == EXIT_OK)
            rc = -1;
    }
    return rc;
}

/* Run a command other than `run` with its config; the exit code. */
static int run_cli_command(const struct invocation *inv, const struct pgwork_config *config)
{
    char err[2048];
    switch (inv->command) {
    case CMD_RUN:
        break; /* main's */
    case CMD_CHECK_CONFIG:
        /* The verdict `run` would give: a file it refuses is not "ok". */
        if (supervisor_check_config(config, err, sizeof(err)) != 0) {
            fprintf(stderr, "pgwork: %s\n", err);
            return EXIT_CONFIG;
        }
        if (config->schedule_count > 0)
            printf("%s: ok (%d queue%s, %d schedule%s)\n",
                   config->path[0] ? config->path : "(defaults)", config->queue_count,
                   config->queue_count == 1 ? "" : "s", config->schedule_count,
                   config->schedule_count == 1 ? "" : "s");
        else
            printf("%s: ok (%d queue%s)\n", config->path[0] ? config->path : "(defaults)",
                   config->queue_count, config->queue_count == 1 ? "" : "s");
        return EXIT_OK;
    case CMD_MIGRATE:
        return cli_migrate(config);
    case CMD_ENQUEUE:
        return cli_enqueue(config, inv->queue, inv->payload, inv->unique_key);
    case CMD_STATUS:
        return cli_status(config, &inv->status);
    case CMD_REQUEUE_DEAD:
        return cli_requeue_dead(config, &inv->requeue);
    case CMD_CANCEL:
        return cli_cancel(config, inv->ids, inv->id_count);
    case CMD_PAUSE:
    case CMD_RESUME:
        return cli_pause(config, inv->queues, inv->queue_count, inv->command == CMD_RESUME);
    case CMD_WEB:
        return web_main(config);
    }
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    const char *config_path = getenv("PGWORK_CONFIG");
    struct invocation inv = {0};
    int rc = read_command_line(argc, argv, &config_path, &inv);
    if (rc >= 0) {
        invocation_free(&inv);
        return rc;
    }

    struct pgwork_config *config = NULL;
    char err[2048];
    if (config_load(config_path, &config, err, sizeof(err)) != 0) {
        fprintf(stderr, "pgwork: %s\n", err);
        invocation_free(&inv);
        return EXIT_CONFIG;
    }
    bool run = inv.command == CMD_RUN;
    bool web = inv.command == CMD_WEB; /* a server too: its log as configured */
    log_init(run   ? "supervisor"
             : web ? "web"
                   : "cli",
             -1, config->log.level, run || web ? config->log.format : LOG_FORMAT_TEXT);

    if (cli_check_conninfo(config, err, sizeof(err)) != EXIT_OK) {
        if (run || web)
            log_error("%s", err); /* the supervisor's stderr is JSON lines */
        else
            fprintf(stderr, "pgwork: %s\n", err);
        rc = EXIT_CONFIG;
    } else if (run) {
        invocation_free(&inv);
        return supervisor_run(config); /* takes ownership of config */
    } else {
        rc = run_cli_command(&inv, config);
    }
    config_free(config);
    invocation_free(&inv);
    return rc;
}
