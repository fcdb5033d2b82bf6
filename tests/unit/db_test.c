/*  tests/unit/db_test.c: common/db.c against a real PostgreSQL: prepared
    statements are transparent (same results, binary parameters and
    results, errors reported), survive the session losing them (DISCARD
    ALL, a reset connection) and give way to unnamed statements when many
    different texts are run. Usage: casemail-db-test CONNINFO. Prints
    "ok - ..." / "not ok - ..." lines; exits 1 when any failed. */
#include "db.h"
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_failed;

static void
s_check (const char *what, int cond, const char *detail)
{
    printf ("%s - db: %s%s%s\n", cond ? "ok" : "not ok", what,
            cond || !detail ? "" : ": ", cond || !detail ? "" : detail);
    if (!cond)
        s_failed++;
}

/* The single value of a one-row query with one text parameter. */
static char *
s_value (cm_db_t *db, const char *sql, const char *param)
{
    const char *p [] = { param };
    PGresult *res = cm_db_query (db, sql, param ? 1 : 0, p);
    char *v = res && PQntuples (res) == 1 && cm_db_get (res, 0, 0)
            ? strdup (cm_db_get (res, 0, 0)) : NULL;
    PQclear (res);
    return v;
}

static int
s_equals (cm_db_t *db, const char *sql, const char *param, const char *want)
{
    char *v = s_value (db, sql, param);
    int ok = v && strcmp (v, want) == 0;
    free (v);
    return ok;
}

/* Sends SELECT length, md5 of a size-byte text on db and checks the
   answer against the other session's md5 of the same text: whether the
   session was non-blocking while it was out (want_async), and that it
   blocks again after. flush: push it out with cm_db_flush first, waiting
   for the socket in between (at most 30 s), else cm_db_receive sends it. */
static bool
s_big_send (cm_db_t *db, cm_db_t *other, size_t size, bool want_async, bool flush)
{
    char *big = malloc (size + 1);
    if (!big)
        return false;
    for (size_t i = 0; i < size; i++)
        big [i] = (char) ('a' + (i * 7 + i / 26) % 26);
    big [size] = 0;
    char *want = s_value (other, "SELECT length($1::text)::text || ' ' || md5($1::text)", big);
    const char *p [] = { big };
    bool ok = want && cm_db_send_binary (db, "SELECT length($1::text)::text || ' ' || md5($1::text)",
                                         1, p, NULL, NULL, 0) == 0;
    ok = ok && (PQisnonblocking (cm_db_conn (db)) == 1) == want_async;
    int fr = 0;
    for (int waits = 0; ok && flush && (fr = cm_db_flush (db)) == 1 && waits < 300; waits++) {
        struct pollfd pfd = { .fd = PQsocket (cm_db_conn (db)), .events = POLLOUT };
        poll (&pfd, 1, 100);
    }
    ok = ok && fr == 0;
    PGresult *got = ok ? cm_db_receive (db) : NULL;
    ok = ok && got && strcmp (cm_db_get (got, 0, 0), want) == 0
         && PQisnonblocking (cm_db_conn (db)) == 0;
    PQclear (got);
    free (want);
    free (big);
    return ok;
}

int
main (int argc, char **argv)
{
    if (argc != 2) {
        fprintf (stderr, "usage: casemail-db-test CONNINFO\n");
        return 2;
    }
    char err [512];
    cm_db_t *db = cm_db_connect (argv [1], "casemail-db-test", err, sizeof err);
    s_check ("connects", db != NULL, err);
    if (!db)
        return 1;
    cm_db_t *other = cm_db_connect (argv [1], "casemail-db-test-2", err, sizeof err);
    s_check ("a second session connects", other != NULL, err);
    if (!other)
        return 1;

    /* db.sh gives the database other defaults (a LATIN1 client encoding,
       SERIALIZABLE): a casemail session sets its own */
    s_check ("the session's client encoding is UTF8, whatever the database's default",
             s_equals (db, "SELECT current_setting('client_encoding')", NULL, "UTF8"), NULL);
    s_check ("its transactions are READ COMMITTED, whatever the database's default",
             s_equals (db, "SELECT current_setting('transaction_isolation')", NULL,
                       "read committed"), NULL);
    s_check ("a text in any script goes in and out as UTF-8",
             s_equals (db, "SELECT $1::text || octet_length($1::text)", "\xd0\xa1\xe4\xb8\x8d\xf0\x9f\x8e\xa3",
                       "\xd0\xa1\xe4\xb8\x8d\xf0\x9f\x8e\xa3" "9"), NULL);

    const char *q = "SELECT upper($1::text) || '-' || length($1::text)";
    int same = 1;
    for (int i = 0; i < 20 && same; i++)
        same = s_equals (db, q, "abc", "ABC-3");
    s_check ("a statement run 20 times gives the same result each time", same, NULL);
    const char *np [] = { NULL };
    PGresult *nr = cm_db_query (db, "SELECT coalesce($1::text, 'was null')", 1, np);
    s_check ("a NULL parameter is SQL NULL",
             nr && strcmp (cm_db_get (nr, 0, 0), "was null") == 0, cm_db_error (db));
    PQclear (nr);

    /* past the re-preparing (every 1,000 runs), inside a transaction too */
    int again = 1;
    for (int i = 0; i < 1500 && again; i++)
        again = s_equals (db, q, "abc", "ABC-3");
    cm_db_exec (db, "BEGIN", 0, NULL);
    for (int i = 0; i < 1000 && again; i++)
        again = s_equals (db, q, "abcd", "ABCD-4");
    cm_db_exec (db, "COMMIT", 0, NULL);
    s_check ("a statement run 2,500 times, prepared anew on the way, gives the same result",
             again, cm_db_error (db));
    PGresult *ps = cm_db_query (db, "SELECT count(*)::text FROM pg_prepared_statements"
                                " WHERE statement = $1", 1, &q);
    s_check ("and is prepared on the session once",
             ps && strcmp (cm_db_get (ps, 0, 0), "1") == 0, ps ? cm_db_get (ps, 0, 0) : cm_db_error (db));
    PQclear (ps);

    /* binary parameter in, binary result out: bytes with NULs intact */
    const char bytes [] = { 'a', 0, 'b', '\n', (char) 0xff, 0 };
    const char *bp [] = { bytes };
    int len [] = { (int) sizeof bytes }, fmt [] = { 1 };
    int bin_ok = 1;
    for (int i = 0; i < 3 && bin_ok; i++) {
        PGresult *res = cm_db_query_binary (db, "SELECT $1::bytea", 1, bp, len, fmt, 1);
        bin_ok = res && PQgetlength (res, 0, 0) == (int) sizeof bytes
                 && memcmp (PQgetvalue (res, 0, 0), bytes, sizeof bytes) == 0;
        PQclear (res);
    }
    s_check ("binary parameters and results keep every byte", bin_ok, NULL);

    /* binary arrays: unnested row by row, NULLs and odd bytes intact */
    cm_db_array_t *ai = cm_db_array_new (CM_DB_INT8), *at = cm_db_array_new (CM_DB_TEXT),
                  *ab = cm_db_array_new (CM_DB_BYTEA);
    const long long nums [] = { 1, -2, 9007199254740993LL };
    const char *texts [] = { "plain", NULL, "quote ' \" \\ {a,b} \xc3\xa9" };
    /* the byte array with its room made first, the others grown */
    s_check ("an array reserves room for its elements",
             cm_db_array_reserve (ab, 3, 2 * sizeof bytes) == 0, NULL);
    for (int i = 0; i < 3; i++) {
        cm_db_array_add_int8 (ai, nums [i]);
        cm_db_array_add_text (at, texts [i]);
        cm_db_array_add (ab, i == 1 ? NULL : bytes, i == 2 ? 0 : sizeof bytes);
    }
    const char *av [] = { cm_db_array_data (ai), cm_db_array_data (at), cm_db_array_data (ab) };
    int al [] = { cm_db_array_len (ai), cm_db_array_len (at), cm_db_array_len (ab) };
    int af [] = { 1, 1, 1 };
    PGresult *ar = cm_db_query_binary (db,
        "SELECT n::text, t, encode(b, 'hex') FROM unnest($1::bigint[], $2::text[], $3::bytea[])"
        " WITH ORDINALITY AS u (n, t, b, o) ORDER BY o", 3, av, al, af, 0);
    int arr_ok = ar && PQntuples (ar) == 3
        && strcmp (PQgetvalue (ar, 0, 0), "1") == 0 && strcmp (PQgetvalue (ar, 1, 0), "-2") == 0
        && strcmp (PQgetvalue (ar, 2, 0), "9007199254740993") == 0
        && strcmp (PQgetvalue (ar, 0, 1), "plain") == 0 && PQgetisnull (ar, 1, 1)
        && strcmp (PQgetvalue (ar, 2, 1), texts [2]) == 0
        && strcmp (PQgetvalue (ar, 0, 2), "6100620aff00") == 0 && PQgetisnull (ar, 1, 2)
        && strcmp (PQgetvalue (ar, 2, 2), "") == 0;
    s_check ("binary arrays unnest to the rows added (numbers, NULLs, quotes, bytes)",
             arr_ok, ar ? NULL : cm_db_error (db));
    PQclear (ar);
    cm_db_array_destroy (&ai);
    cm_db_array_destroy (&at);
    cm_db_array_destroy (&ab);
    cm_db_array_t *empty = cm_db_array_new (CM_DB_TEXT);
    const char *ev [] = { cm_db_array_data (empty) };
    int el [] = { cm_db_array_len (empty) };
    PGresult *er = cm_db_query_binary (db, "SELECT cardinality($1::text[])::text", 1, ev, el, af, 0);
    s_check ("an empty binary array is an empty array", er && strcmp (PQgetvalue (er, 0, 0), "0") == 0,
             er ? PQgetvalue (er, 0, 0) : cm_db_error (db));
    PQclear (er);
    cm_db_array_destroy (&empty);

    /* errors: reported with the server's text, and the session goes on */
    PGresult *bad = cm_db_query (db, "SELECT 1 / $1::int", 1, (const char *[]) { "0" });
    s_check ("a failing statement returns NULL", bad == NULL, NULL);
    PQclear (bad);
    s_check ("and names the error", strstr (cm_db_error (db), "division by zero") != NULL,
             cm_db_error (db));
    s_check ("the same statement then works with other values",
             s_equals (db, "SELECT (10 / $1::int)::text", "5", "2"), cm_db_error (db));
    PGresult *syn = cm_db_query (db, "SELECT FROM WHERE $1", 1, (const char *[]) { "x" });
    s_check ("a statement that cannot be prepared reports its own error",
             syn == NULL && strstr (cm_db_error (db), "syntax") != NULL, cm_db_error (db));
    PQclear (syn);

    /* inside a transaction, rolled back: prepared statements outlive it */
    cm_db_exec (db, "BEGIN", 0, NULL);
    s_equals (db, "SELECT 'in a transaction' || $1::text", "!", "in a transaction!");
    cm_db_exec (db, "ROLLBACK", 0, NULL);
    s_check ("a statement first prepared in a rolled-back transaction runs after it",
             s_equals (db, "SELECT 'in a transaction' || $1::text", "!", "in a transaction!"),
             cm_db_error (db));

    /* the session forgets its statements: they are run again unnamed */
    s_check ("DISCARD ALL runs", cm_db_exec (db, "DISCARD ALL", 0, NULL) == 0, cm_db_error (db));
    s_check ("a statement prepared before DISCARD ALL still runs",
             s_equals (db, q, "xy", "XY-2"), cm_db_error (db));
    s_check ("and runs again after that", s_equals (db, q, "xyz", "XYZ-3"), cm_db_error (db));
    s_check ("after DISCARD ALL the session is still READ COMMITTED and UTF8",
             s_equals (db, "SELECT current_setting('transaction_isolation') || ' '"
                           " || current_setting('client_encoding')", NULL, "read committed UTF8"),
             cm_db_error (db));

    /* statements lost inside a transaction: that transaction fails (as
       any error there does), and after it everything runs again */
    cm_db_exec (db, "BEGIN", 0, NULL);
    s_check ("DEALLOCATE ALL inside a transaction runs",
             cm_db_exec (db, "DEALLOCATE ALL", 0, NULL) == 0, cm_db_error (db));
    char *lost = s_value (db, q, "in");
    s_check ("a lost statement fails its transaction, saying why",
             lost == NULL && strstr (cm_db_error (db), "does not exist") != NULL, cm_db_error (db));
    free (lost);
    cm_db_exec (db, "ROLLBACK", 0, NULL);
    s_check ("after the rollback it runs again", s_equals (db, q, "out", "OUT-3"), cm_db_error (db));
    cm_db_exec (db, "BEGIN", 0, NULL);
    s_check ("and inside the next transaction too", s_equals (db, q, "next", "NEXT-4"),
             cm_db_error (db));
    cm_db_exec (db, "COMMIT", 0, NULL);

    /* a statement in flight: the session takes nothing else until its
       result is received */
    const char *sp [] = { "sent" };
    s_check ("a statement is sent without waiting",
             cm_db_send_binary (db, "SELECT upper($1::text)", 1, sp, NULL, NULL, 0) == 0,
             cm_db_error (db));
    PGresult *refused = cm_db_query (db, q, 1, sp);
    s_check ("another statement meanwhile is refused, saying why",
             refused == NULL && strstr (cm_db_error (db), "still running") != NULL,
             cm_db_error (db));
    PQclear (refused);
    PGresult *got = cm_db_receive (db);
    s_check ("the sent statement's result arrives intact",
             got && strcmp (cm_db_get (got, 0, 0), "SENT") == 0, cm_db_error (db));
    PQclear (got);
    s_check ("then the session works again", s_equals (db, q, "again", "AGAIN-5"),
             cm_db_error (db));
    /* A statement bigger than the socket takes at once but within
       CM_DB_ASYNC_SEND_MAX goes out without waiting: the session is
       non-blocking while it is out, cm_db_flush sends more of it, and
       cm_db_receive the rest; then the session blocks again. Bigger ones
       are written at once. */
    s_check ("a statement within the limit goes out without waiting (1 MB)",
             s_big_send (db, other, 1u << 20, true, true), cm_db_error (db));
    s_check ("and cm_db_receive alone sends what is left of one (1.5 MB)",
             s_big_send (db, other, 3u << 19, true, false), cm_db_error (db));
    s_check ("a statement over the limit is written at once (8 MB)",
             s_big_send (db, other, 8u << 20, false, true), cm_db_error (db));
    s_check ("a flush with nothing out does nothing", cm_db_flush (db) == 0, NULL);
    s_check ("and the session runs ordinary statements after them",
             s_equals (db, q, "after", "AFTER-5"), cm_db_error (db));
    cm_db_send_binary (db, "SELECT 1 / $1::int", 1, (const char *[]) { "0" }, NULL, NULL, 0);
    got = cm_db_receive (db);
    s_check ("a sent statement that fails returns NULL with the reason",
             got == NULL && strstr (cm_db_error (db), "division by zero") != NULL,
             cm_db_error (db));
    PQclear (got);

    /* the session is killed: one reset, and prepared statements work */
    char *pid = s_value (db, "SELECT pg_backend_pid()::text", NULL);
    s_check ("a live session is intact", cm_db_intact (db), cm_db_error (db));
    s_check ("the other session ends this one",
             pid && s_equals (other, "SELECT pg_terminate_backend($1::int)::text", pid, "true"),
             cm_db_error (other));
    free (pid);
    s_check ("a statement on the killed session fails", s_value (db, q, "k") == NULL, NULL);
    s_check ("a killed session is not intact (nor made so)", !cm_db_intact (db)
             && !cm_db_intact (db), NULL);
    s_check ("the connection resets", cm_db_alive (db), cm_db_error (db));
    s_check ("the reset session is intact", cm_db_intact (db), cm_db_error (db));
    s_check ("statements prepared before the reset run on the new session",
             s_equals (db, q, "after", "AFTER-5"), cm_db_error (db));
    s_check ("the new session is READ COMMITTED and UTF8 too",
             s_equals (db, "SELECT current_setting('transaction_isolation') || ' '"
                           " || current_setting('client_encoding')", NULL, "read committed UTF8"),
             cm_db_error (db));

    /* many different texts (built SQL): past the cache they run unnamed */
    int many = 1;
    char sql [128], want [32];
    for (int i = 0; i < 400 && many; i++) {
        snprintf (sql, sizeof sql, "SELECT (%d + $1::int)::text", i);
        snprintf (want, sizeof want, "%d", i + 1);
        many = s_equals (db, sql, "1", want);
    }
    s_check ("400 different statement texts all run", many, cm_db_error (db));
    s_check ("statements prepared earlier still run after them",
             s_equals (db, q, "end", "END-3"), cm_db_error (db));
    PGresult *count = cm_db_query (db, "SELECT count(*)::text FROM pg_prepared_statements", 0, NULL);
    s_check ("the session keeps at most 256 prepared statements",
             count && atoi (cm_db_get (count, 0, 0)) <= 256 && atoi (cm_db_get (count, 0, 0)) > 0,
             count ? cm_db_get (count, 0, 0) : cm_db_error (db));
    PQclear (count);

    cm_db_destroy (&other);
    cm_db_destroy (&db);
    return s_failed ? 1 : 0;
}
