/*
 * test_resolver.c — supervisor/resolver.c: which conninfos need a lookup
 * outside libpq, the lists the connection is made with, and a real lookup
 * through the child process (/etc/hosts: localhost).
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "suites.h"
#include "../../supervisor/resolver.h"

static bool needs(const char *conninfo)
{
    char *hosts = NULL, *ports = NULL;
    bool needed = resolver_needed(conninfo, &hosts, &ports);
    free(hosts);
    free(ports);
    return needed;
}

START_TEST(test_needed)
{
    unsetenv("PGHOST");
    unsetenv("PGHOSTADDR");
    unsetenv("PGPORT");
    ck_assert(needs("host=db.example"));
    ck_assert(needs("postgresql://user:secret@db.example:5433/app"));
    ck_assert(needs("host=/tmp,db.example"));
    ck_assert(!needs("host=/var/run/postgresql"));
    ck_assert(!needs("host=127.0.0.1"));
    ck_assert(!needs("host=::1"));
    ck_assert(!needs("host=db.example hostaddr=10.0.0.1"));
    ck_assert(!needs(""));
    ck_assert(!needs("appdb")); /* a bare database name */
    setenv("PGHOST", "db.example", 1);
    ck_assert(needs("dbname=app"));
    setenv("PGHOSTADDR", "10.0.0.1", 1);
    ck_assert(!needs("dbname=app"));
    unsetenv("PGHOSTADDR");
    unsetenv("PGHOST");

    char *hosts = NULL, *ports = NULL;
    ck_assert(resolver_needed("host=a.example,b.example port=5432,6432", &hosts, &ports));
    ck_assert_str_eq(hosts, "a.example,b.example");
    ck_assert_str_eq(ports, "5432,6432");
    free(hosts);
    free(ports);
    ck_assert(resolver_needed("host=a.example port=5432", &hosts, &ports));
    ck_assert_ptr_null(ports); /* one port applies to every host: left alone */
    free(hosts);
}
END_TEST

START_TEST(test_expand)
{
    struct resolver_lists l;
    /* Every address of a name is tried, as libpq would. */
    ck_assert_int_eq(resolver_expand("db.example", NULL, "::1|127.0.0.1", &l), 0);
    ck_assert_str_eq(l.host, "db.example,db.example");
    ck_assert_str_eq(l.hostaddr, "::1,127.0.0.1");
    ck_assert_ptr_null(l.port);
    resolver_lists_free(&l);

    /* Sockets keep an empty hostaddr; a port list follows its hosts. */
    ck_assert_int_eq(resolver_expand("/tmp,a.example,10.1.1.1", "5432,6432,7432",
                                     ",10.0.0.1|10.0.0.2,10.1.1.1", &l),
                     0);
    ck_assert_str_eq(l.host, "/tmp,a.example,a.example,10.1.1.1");
    ck_assert_str_eq(l.hostaddr, ",10.0.0.1,10.0.0.2,10.1.1.1");
    ck_assert_str_eq(l.port, "5432,6432,6432,7432");
    resolver_lists_free(&l);

    /* An answer that does not match the hosts is refused. */
    ck_assert_int_eq(resolver_expand("a.example,b.example", NULL, "10.0.0.1", &l), -1);
    ck_assert_ptr_null(l.host);
    ck_assert_int_eq(resolver_expand("a.example", NULL, "10.0.0.1,10.0.0.2", &l), -1);
}
END_TEST

/* The child really resolves (localhost is in /etc/hosts), and a name that
 * cannot exist fails with the reason. */
static int resolve(const char *hosts, struct resolver_lists *l, char *why, size_t len)
{
    struct resolver r;
    resolver_init(&r);
    ck_assert_int_eq(resolver_start(&r, strdup(hosts), NULL), 0);
    for (int i = 0; i < 200; i++) {
        struct pollfd p = {.fd = resolver_fd(&r), .events = POLLIN};
        ck_assert_int_ge(poll(&p, 1, 100), 0);
        if (resolver_read(&r, l, why, len) == 1)
            return l->host != NULL ? 0 : -1;
    }
    resolver_cancel(&r);
    ck_abort_msg("no answer from the resolver child within 20 s");
    return -1;
}

START_TEST(test_child)
{
    struct resolver_lists l;
    char why[256] = "";
    ck_assert_int_eq(resolve("localhost,/tmp", &l, why, sizeof(why)), 0);
    ck_assert_msg(strstr(l.hostaddr, "127.0.0.1") != NULL, "hostaddr %s", l.hostaddr);
    ck_assert_msg(strncmp(l.host, "localhost", 9) == 0, "host %s", l.host);
    ck_assert_msg(l.hostaddr[strlen(l.hostaddr) - 1] == ',', "the socket's empty item: %s",
                  l.hostaddr);
    resolver_lists_free(&l);
    ck_assert_int_eq(resolve("no-such-host.invalid", &l, why, sizeof(why)), -1);
    ck_assert_msg(strstr(why, "no-such-host.invalid") != NULL, "reason: %s", why);
}
END_TEST

Suite *resolver_suite(void)
{
    Suite *s = suite_create("resolver");
    TCase *tc = tcase_create("resolver");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_needed);
    tcase_add_test(tc, test_expand);
    tcase_add_test(tc, test_child);
    suite_add_tcase(s, tc);
    return s;
}
