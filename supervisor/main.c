/*
 * main.c — the pgwork command line: parse arguments, load the config,
 * dispatch to one command. Nothing here talks to the database itself.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "supervisor.h"
#include "../shared/config.h"
#include "../shared/log.h"

#ifndef PGWORK_VERSION
#define PGWORK_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
    fprintf(out, "usage: pgwork [-c FILE] COMMAND [ARGS]\n"
                 "\n"
                 "commands:\n"
                 "  run                      run the supervisor and its workers\n"
                 "  migrate                  apply the database migrations\n"
                 "  enqueue QUEUE [PAYLOAD]  add a task (JSON payload, stdin when absent);\n"
                 "                           prints the new task id\n"
                 "  check-config             validate the config file and exit\n"
                 "  --version                print the version\n"
                 "  --help                   print this text\n"
                 "\n"
                 "options:\n"
                 "  -c, --config FILE        config file (default: $PGWORK_CONFIG, else\n"
                 "                           built-in defaults)\n"
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
                 "  3  bad configuration\n"
                 "  4  bad input (payload is not JSON, bad queue name)\n");
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = getenv("PGWORK_CONFIG");
    int opt;

    while ((opt = getopt_long(argc, argv, "+c:hV", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case 'V':
            printf("pgwork %s\n", PGWORK_VERSION);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *command = argv[optind++];
    if (strcmp(command, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(command, "version") == 0) {
        printf("pgwork %s\n", PGWORK_VERSION);
        return EXIT_OK;
    }

    struct pgwork_config *config = NULL;
    char err[1024];
    if (config_load(config_path, &config, err, sizeof(err)) != 0) {
        fprintf(stderr, "pgwork: %s\n", err);
        return EXIT_CONFIG;
    }
    log_init(strcmp(command, "run") == 0 ? "supervisor" : "cli", -1, config->log.level,
             strcmp(command, "run") == 0 ? config->log.format : LOG_FORMAT_TEXT);

    int rc;
    if (strcmp(command, "run") == 0 && optind == argc) {
        return supervisor_run(config); /* takes ownership of config */
    } else if (strcmp(command, "check-config") == 0 && optind == argc) {
        printf("%s: ok (%d queue%s)\n", config->path[0] ? config->path : "(defaults)",
               config->queue_count, config->queue_count == 1 ? "" : "s");
        rc = EXIT_OK;
    } else if (strcmp(command, "migrate") == 0 && optind == argc) {
        rc = cli_migrate(config);
    } else if (strcmp(command, "enqueue") == 0 && (argc - optind == 1 || argc - optind == 2)) {
        rc = cli_enqueue(config, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL);
    } else {
        fprintf(stderr, "pgwork: unknown command or wrong arguments: %s\n", command);
        usage(stderr);
        rc = EXIT_USAGE;
    }
    config_free(config);
    return rc;
}
