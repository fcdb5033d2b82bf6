/*  tests/fuzz/fuzz_message.c: libFuzzer harness on the path from raw
    message to the incident record, without the database: the parser's
    message library (parse, subject tag, quote split) and what the parser
    stage derives from the record. Built by `make fuzz` with clang's
    -fsanitize=fuzzer,address,undefined. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../parser/message.h"

static void
s_walk (const cm_message_t *m, int depth)
{
    /* touch what store.c reads, so a bad pointer or length shows */
    size_t sum = strlen (m->subject) + strlen (m->from_addr) + strlen (m->from_name)
               + strlen (m->to) + strlen (m->cc) + strlen (m->text) + strlen (m->new_text);
    for (size_t i = 0; i < m->nreferences; i++)
        sum += strlen (m->references [i]);
    for (size_t i = 0; i < m->nattachments; i++) {
        const cm_attachment_t *a = &m->attachments [i];
        sum += strlen (a->filename) + strlen (a->content_type) + strlen (a->sha256);
        if (a->size)
            sum += a->data [0] + a->data [a->size - 1];
        if (a->nested_index >= 0 && (size_t) a->nested_index >= m->nnested)
            abort ();
    }
    char *stripped = cm_subject_strip (m->subject);
    free (stripped);
    (void) cm_subject_tag (m->subject, "INC");
    (void) sum;
    for (size_t i = 0; i < m->nnested; i++)
        s_walk (m->nested [i], depth + 1);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    cm_limits_t limits;
    cm_limits_default (&limits);
    char reason [512];
    cm_message_t *m = cm_message_parse ((const char *) data, size, &limits, reason, sizeof reason);
    if (m)
        s_walk (m, 0);
    else if (!reason [0])
        abort ();               /* a rejection always says why */
    cm_message_destroy (&m);
    return 0;
}
