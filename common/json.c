/*  common/json.c: jansson's text with C1 and bidi controls escaped
    (see json.h). */
#include "json.h"
#include "buf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The code point of a control at p that must be escaped (C1, bidi:
   cm_text_control; jansson escaped C0 already), and its length in *n;
   0 when p starts anything else. JSON text from jansson is valid
   UTF-8, and p is at the start of a character or at ASCII. */
static unsigned
s_control (const unsigned char *p, size_t *n)
{
    unsigned cp;
    if ((p [0] & 0xe0) == 0xc0 && p [1]) {
        cp = ((p [0] & 0x1fu) << 6) | (p [1] & 0x3fu);
        *n = 2;
    }
    else if ((p [0] & 0xf0) == 0xe0 && p [1] && p [2]) {
        cp = ((p [0] & 0x0fu) << 12) | ((p [1] & 0x3fu) << 6) | (p [2] & 0x3fu);
        *n = 3;
    }
    else
        return 0;
    return cp >= 0x80 && cm_text_control (cp) ? cp : 0;
}

char *
cm_json_dumps (const json_t *json, size_t flags)
{
    char *text = json_dumps (json, flags);
    if (!text)
        return NULL;
    size_t extra = 0, n;
    for (const unsigned char *p = (unsigned char *) text; *p; p++)
        if (s_control (p, &n))
            extra += 6 - n;
    if (!extra)
        return text;
    size_t len = strlen (text);
    char *out = malloc (len + extra + 1), *o = out;
    if (out) {
        for (const unsigned char *p = (unsigned char *) text; *p; ) {
            unsigned cp = s_control (p, &n);
            if (cp) {
                o += sprintf (o, "\\u%04X", cp);
                p += n;
            }
            else
                *o++ = (char) *p++;
        }
        *o = 0;
    }
    free (text);
    return out;
}

int
cm_json_test (bool verbose)
{
    /* CSI as C1, NEL, a right-to-left override, an isolate, LRM, ALM,
       then characters beside them that stay as they are: e-acute, the
       euro sign, U+2010 (a hyphen), U+00A0 */
    json_t *j = json_pack ("{s:s}", "k\xc2\x9b",
                           "\xc2\x9b" "31m\xc2\x85 \xe2\x80\xae" "txt.exe\xe2\x81\xa6"
                           "\xe2\x80\x8e\xd8\x9c|\xc3\xa9\xe2\x82\xac\xe2\x80\x90\xc2\xa0");
    char *text = cm_json_dumps (j, JSON_COMPACT);
    const char *want = "{\"k\\u009B\":\"\\u009B31m\\u0085 \\u202Etxt.exe\\u2066\\u200E"
                       "\\u061C|\xc3\xa9\xe2\x82\xac\xe2\x80\x90\xc2\xa0\"}";
    int rc = text && strcmp (text, want) == 0 ? 0 : -1;
    if (verbose)
        printf ("  %s\n", text ? text : "(null)");
    /* the same data back */
    json_t *back = text ? json_loads (text, 0, NULL) : NULL;
    if (!back || !json_equal (back, j))
        rc = -1;
    json_decref (back);
    free (text);
    json_decref (j);
    /* nothing to escape: jansson's text as it is */
    j = json_pack ("[s, i]", "plain \xc3\xa9", 5);
    text = cm_json_dumps (j, JSON_COMPACT);
    if (!text || strcmp (text, "[\"plain \xc3\xa9\",5]") != 0)
        rc = -1;
    free (text);
    json_decref (j);
    return rc;
}
