/*  cli/main.c: casemail, the command-line client of the router's API.
    A table maps the first word to the file that implements it; each
    command returns the exit code (cli.h). See docs/CLI.md. */
#include "cli.h"
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

const char *cli_argv0 = "casemail";

typedef struct {
    const char *name;
    int (*run) (int argc, char **argv);
    const char *summary;
} s_command_t;

static const s_command_t s_commands [] = {
    { "up",         cli_stack_up,        "start the local stack (database, router, stages)" },
    { "down",       cli_stack_down,      "stop the local stack" },
    { "route",      cli_route_main,      "add, change, test, start and stop email routes" },
    { "stage",      cli_stage_main,      "list the pipeline stages the router sees" },
    { "incident",   cli_incident_main,   "list and show incidents, send incident email" },
    { "inbox",      cli_inbox_main,      "list inbound messages" },
    { "attachment", cli_attachment_main, "download an attachment" },
    { "outbox",     cli_outbox_main,     "list outbound incident email" },
    { NULL, NULL, NULL }
};

static void
s_usage (FILE *out)
{
    fprintf (out, "usage: casemail COMMAND [ARGS]\n\ncommands:\n");
    for (const s_command_t *c = s_commands; c->name; c++)
        fprintf (out, "  %-11s %s\n", c->name, c->summary);
    fprintf (out, "\n'casemail COMMAND --help' describes a command; "
             "docs/CLI.md has the reference.\n");
}

int
main (int argc, char **argv)
{
    if (argc > 0)
        cli_argv0 = argv [0];
    if (argc < 2) {
        s_usage (stderr);
        return CLI_USAGE;
    }
    const char *word = argv [1];
    if (strcmp (word, "--help") == 0 || strcmp (word, "-h") == 0
    ||  strcmp (word, "help") == 0) {
        s_usage (stdout);
        return CLI_OK;
    }
    if (word [0] == '-') {
        cli_err ("unknown option %s", word);
        return CLI_USAGE;
    }
    for (const s_command_t *c = s_commands; c->name; c++)
        if (strcmp (c->name, word) == 0) {
            if (curl_global_init (CURL_GLOBAL_DEFAULT)) {
                cli_err ("cannot initialise libcurl");
                return CLI_FAIL;
            }
            int rc = c->run (argc - 1, argv + 1);
            if ((fflush (stdout) || ferror (stdout)) && rc == CLI_OK) {
                cli_err ("cannot write the output");
                rc = CLI_FAIL;
            }
            curl_global_cleanup ();
            return rc;
        }
    cli_err ("unknown command '%s' (see 'casemail --help')", word);
    return CLI_USAGE;
}
