/*  tests/unit/selftest.c: runs the self-test of each common/ module and of
    the parser's message library. --list names them, --test NAME runs one,
    -v shows detail. Prints "ok - NAME" / "not ok - NAME" and ends with
    "N passed, N failed"; exits 1 when any failed. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "buf.h"
#include "bus.h"
#include "imap.h"
#include "json.h"
#include "log.h"
#include "ews.h"
#include "oauth.h"
#include "route.h"
#include "seal.h"
#include "smtp.h"
#include "../../parser/message.h"
#include "../../parser/tnef.h"

typedef struct {
    const char *name;
    int (*run) (bool verbose);
} selftest_t;

static const selftest_t TESTS [] = {
    { "buf", cm_buf_test },
    { "json", cm_json_test },
    { "log", cm_log_test },
    { "seal", cm_seal_test },
    { "route", cm_route_test },
    { "bus", cm_bus_test },
    { "imap", cm_imap_selftest },
    { "smtp", cm_smtp_selftest },
    { "oauth", cm_oauth_selftest },
    { "ews", cm_ews_selftest },
    { "message", cm_message_selftest },
    { "tnef", cm_tnef_selftest },
};

int
main (int argc, char **argv)
{
    bool verbose = false, list = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "-v") == 0)
            verbose = true;
        else if (strcmp (argv [i], "--list") == 0)
            list = true;
        else if (strcmp (argv [i], "--test") == 0 && i + 1 < argc)
            only = argv [++i];
        else {
            fprintf (stderr, "usage: casemail-selftest [--list] [--test NAME] [-v]\n");
            return 2;
        }
    }
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS [0]; i++) {
        if (list) {
            printf ("%s\n", TESTS [i].name);
            continue;
        }
        if (only && strcmp (only, TESTS [i].name))
            continue;
        int rc = TESTS [i].run (verbose);
        printf ("%s - selftest %s\n", rc == 0 ? "ok" : "not ok", TESTS [i].name);
        rc == 0 ? passed++ : failed++;
    }
    if (list)
        return 0;
    if (only && passed + failed == 0) {
        fprintf (stderr, "casemail-selftest: no test named %s\n", only);
        return 2;
    }
    printf ("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
