/*  common/json.h: JSON text for people's terminals and other programs.
    jansson escapes only the C0 controls; text from mail may also carry
    C1 controls (U+0080..U+009F, where U+009B is a CSI like ESC [) and
    bidirectional controls that make a terminal or an editor show text
    other than it is. cm_json_dumps () writes those as \uXXXX: the same
    JSON data for a program, nothing a terminal acts on.

    The text returned is the caller's (free ()); NULL when jansson
    fails or memory runs out. */
#ifndef CM_JSON_H
#define CM_JSON_H
#include <jansson.h>
#include <stdbool.h>

/* json_dumps (json, flags), with C1 and bidi controls as \uXXXX. */
char *cm_json_dumps (const json_t *json, size_t flags);
int cm_json_test (bool verbose);
#endif
