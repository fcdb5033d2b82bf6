/*  parser/uuencode.c: files uuencoded inside a text body.
    Old Exchange and Outlook setups, scanners, fax gateways and Unix
    `uuencode FILE | mail` pipelines put "begin 644 NAME" ... "end" blocks
    (GNU `uuencode -m`: "begin-base64 644 NAME" ... "====") into
    text/plain; GMime leaves them as text. cm_uu_next() finds the next
    block and decodes it. It is strict, because a person's text must never
    be lost: a block is taken only when its begin line is exactly the
    keyword, 3-4 octal digits and a name, every line decodes with the
    length its first character announces (all lines but the last the same
    length), and the end line follows; anything else stays text. A line
    shorter than its length character says is read with the missing
    characters as zero (spaces that transit stripped), but only in a
    block that such an encoder and such stripping explain as a whole.
    Bounded work: an attempt stops at its first bad line, a begin line is
    never a valid data line, so each line is read by at most one attempt
    and the scan is linear in the text.
    Ownership: see parser/uuencode.h. Errors: -1 only out of memory. */
#include "uuencode.h"
#include "message.h"
#include "../common/buf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One line of text: [s, s + len) without its CR LF; next is the offset
   of the following line. */
typedef struct {
    const char *s;
    size_t len;
    size_t next;
} s_line_t;

static bool
s_line_at (const char *text, size_t len, size_t pos, s_line_t *line)
{
    if (pos >= len)
        return false;
    const char *nl = memchr (text + pos, '\n', len - pos);
    size_t end = nl ? (size_t) (nl - text) : len;
    line->s = text + pos;
    line->len = end - pos;
    line->next = nl ? end + 1 : len;
    if (line->len && line->s [line->len - 1] == '\r')
        line->len--;
    return true;
}

/* Line length without trailing blanks. */
static size_t
s_trimmed (const s_line_t *line)
{
    size_t n = line->len;
    while (n && (line->s [n - 1] == ' ' || line->s [n - 1] == '\t'))
        n--;
    return n;
}

static bool
s_line_is (const s_line_t *line, const char *word)
{
    size_t n = strlen (word);
    return s_trimmed (line) == n && memcmp (line->s, word, n) == 0;
}

/* "KEYWORD MODE NAME": a single space each side of 3-4 octal digits and
   a name that is not blank. *base64 tells which keyword. */
static bool
s_begin_line (const s_line_t *line, bool *base64, char **name)
{
    size_t k;
    if (line->len > 13 && memcmp (line->s, "begin-base64 ", 13) == 0) {
        *base64 = true;
        k = 13;
    }
    else
    if (line->len > 6 && memcmp (line->s, "begin ", 6) == 0) {
        *base64 = false;
        k = 6;
    }
    else
        return false;
    size_t digits = 0;
    while (k < line->len && line->s [k] >= '0' && line->s [k] <= '7') {
        k++;
        digits++;
    }
    if (digits < 3 || digits > 4 || k >= line->len || line->s [k] != ' ')
        return false;
    k++;
    size_t end = s_trimmed (line);
    if (end <= k || line->s [k] == ' ' || line->s [k] == '\t')
        return false;
    *name = strndup (line->s + k, end - k);
    return true;
}

/* Classic uuencode: each line is a length character (32 + n, n <= 63,
   '`' for 0) and ceil(n / 3) groups of four characters in 0x20-0x60.
   Encoders that do not pad the last group, those that add a checksum
   character and lines whose trailing spaces (zeros) were stripped are
   all read. The block ends with a zero-length line ("`",
   or a space that transport may have stripped) and "end". 1 decoded, 0
   not a block, -1 out of memory.
   A line shorter than its length character says is read with the
   missing characters as zero (as binascii.a2b_uu and uudecode do): an
   old encoder wrote zero as a space and transit stripped the trailing
   ones. Then a length character and a few capitals are all that a line
   of prose needs to pass, so a block with such a line is taken only
   when all of it is what that encoder and that stripping leave
   (s_stripped_ok). */
typedef struct {
    int lines;          /* data lines */
    int full;           /* the length of the lines before the last */
    bool short_line;    /* a line shorter than its length says */
    bool whole_line;    /* a line exactly as long as its length says */
    bool backquote;     /* a '`' anywhere: zero was not written as a space */
    size_t expected;    /* characters the data lines should have */
    size_t present;     /* characters they have */
} s_uu_shape_t;

/* Whether a block with short lines is one that stripping explains:
   45-byte lines (the width of the encoders that write zero as a space;
   the last line 1-45), no '`' (an encoder that writes it for zero
   leaves no trailing space to strip), the zero-length line there as a
   space or empty (terminator: ' ' so, '`' a backquote, 0 none), and
   the encoding still shows: a 45-byte line is whole, or less than half
   of the characters are missing. Blocks without short lines pass. */
static bool
s_stripped_ok (const s_uu_shape_t *shape, int terminator)
{
    if (!shape->short_line)
        return true;
    if (shape->backquote || terminator != ' ' || shape->full > 45
    ||  (shape->lines > 1 && shape->full != 45))
        return false;
    return shape->whole_line || 2 * (shape->expected - shape->present) < shape->expected;
}

static int
s_decode_uu (const char *text, size_t len, size_t *pos, cm_buf_t *out)
{
    s_line_t line;
    s_uu_shape_t shape = { .full = -1 };
    bool last = false;  /* a shorter line was read: only the end may follow */
    while (s_line_at (text, len, *pos, &line)) {
        *pos = line.next;
        if ((line.len == 1 && (line.s [0] == '`' || line.s [0] == ' '))
        ||  (line.len == 0 && shape.full >= 0)) {
            /* the zero-length line: "end" must follow at once */
            int terminator = line.len && line.s [0] == '`' ? '`' : ' ';
            if (!s_line_at (text, len, *pos, &line) || !s_line_is (&line, "end"))
                return 0;
            *pos = line.next;
            return s_stripped_ok (&shape, terminator);
        }
        if (s_line_is (&line, "end") && shape.full >= 0)
            return s_stripped_ok (&shape, 0);   /* some encoders leave the zero-length line out */
        if (last || line.len == 0)
            return 0;
        unsigned char c = (unsigned char) line.s [0];
        if (c < 0x20 || c > 0x60)
            return 0;
        int n = (c - 0x20) & 0x3F;
        if (n == 0)
            return 0;
        size_t chars = line.len - 1;
        size_t least = ((size_t) n * 4 + 2) / 3;    /* the bits of n bytes */
        size_t groups = ((size_t) n + 2) / 3 * 4;   /* padded to groups of 4 */
        /* a short line could have lost trailing spaces only if it does
           not end in one */
        if (chars > groups + 1 || (chars < least && line.s [line.len - 1] == ' '))
            return 0;
        if (shape.full < 0)
            shape.full = n;
        if (n > shape.full)
            return 0;
        if (n < shape.full)
            last = true;
        shape.lines++;
        if (chars < least)
            shape.short_line = true;
        else
        if (n == shape.full)
            shape.whole_line = true;
        if (memchr (line.s, '`', line.len))
            shape.backquote = true;
        shape.expected += groups;
        shape.present += chars < groups ? chars : groups;
        unsigned char quad [4], bytes [3];
        int have = 0;
        for (size_t i = 0; i < groups; i += 4) {
            for (int j = 0; j < 4; j++) {
                size_t at = 1 + i + (size_t) j;
                unsigned char d = at <= chars ? (unsigned char) line.s [at] : ' ';
                if (d < 0x20 || d > 0x60)
                    return 0;
                quad [j] = (unsigned char) ((d - 0x20) & 0x3F);
            }
            bytes [0] = (unsigned char) (quad [0] << 2 | quad [1] >> 4);
            bytes [1] = (unsigned char) (quad [1] << 4 | quad [2] >> 2);
            bytes [2] = (unsigned char) (quad [2] << 6 | quad [3]);
            int take = n - have < 3 ? n - have : 3;
            if (cm_buf_append (out, bytes, (size_t) take))
                return -1;
            have += take;
        }
        if (chars == groups + 1) {
            unsigned char d = (unsigned char) line.s [chars];
            if (d < 0x20 || d > 0x60)
                return 0;
        }
    }
    return 0;   /* the text ended inside the block */
}

/* GNU uuencode -m: base64 lines of four-character groups, all but the
   last the same length, '=' padding only at the end of the last, then
   "====". 1 decoded, 0 not a block, -1 out of memory. */
static int
s_decode_b64 (const char *text, size_t len, size_t *pos, cm_buf_t *out)
{
    s_line_t line;
    size_t full = 0;
    bool last = false;
    while (s_line_at (text, len, *pos, &line)) {
        *pos = line.next;
        if (s_line_is (&line, "===="))
            return 1;
        size_t n = s_trimmed (&line);
        if (last || n == 0 || n % 4)
            return 0;
        if (!full)
            full = n;
        if (n > full)
            return 0;
        if (n < full)
            last = true;
        for (size_t i = 0; i < n; i += 4) {
            int v [4], pad = 0;
            for (int j = 0; j < 4; j++) {
                unsigned char c = (unsigned char) line.s [i + (size_t) j];
                if (c == '=' && i + 4 == n && j >= 2) {
                    v [j] = 0;
                    pad++;
                    continue;
                }
                if (pad || (v [j] = cm_base64_value (c)) < 0)
                    return 0;
            }
            unsigned char bytes [3] = {
                (unsigned char) (v [0] << 2 | v [1] >> 4),
                (unsigned char) (v [1] << 4 | v [2] >> 2),
                (unsigned char) (v [2] << 6 | v [3]) };
            if (cm_buf_append (out, bytes, (size_t) (3 - pad)))
                return -1;
            if (pad)
                last = true;
        }
    }
    return 0;
}

int
cm_uu_next (const char *text, size_t len, size_t *pos, cm_uu_block_t *block)
{
    memset (block, 0, sizeof *block);
    s_line_t line;
    while (s_line_at (text, len, *pos, &line)) {
        size_t start = *pos;
        *pos = line.next;
        bool base64 = false;
        char *name = NULL;
        if (line.len < 6 || line.s [0] != 'b' || !s_begin_line (&line, &base64, &name))
            continue;
        if (!name)
            return -1;
        cm_buf_t out;
        cm_buf_init (&out, 0);
        size_t after = *pos;
        int rc = base64 ? s_decode_b64 (text, len, &after, &out)
                        : s_decode_uu (text, len, &after, &out);
        unsigned char *data = NULL;
        size_t size = 0;
        if (rc == 1 && !(data = (unsigned char *) cm_buf_take (&out, &size)))
            rc = -1;
        if (rc != 1) {
            /* not a block: it stays text, and the scan goes on from the
               line after its begin line */
            cm_buf_free (&out);
            free (name);
            if (rc < 0)
                return -1;
            continue;
        }
        block->start = start;
        block->end = after;
        block->name = name;
        block->data = data;
        block->size = size;
        *pos = after;
        return 1;
    }
    *pos = len;
    return 0;
}

void
cm_uu_block_free (cm_uu_block_t *block)
{
    free (block->name);
    free (block->data);
    block->name = NULL;
    block->data = NULL;
}

/* ------------------------------------------------------------ self-test */

/* 110 bytes (0x00-0x63 and "%PDF tail\n") as `uuencode` and
   `uuencode -m` write them. */
static const char s_uu_lines [] =
    "M``$\"`P0%!@<(\"0H+#`T.#Q`1$A,4%187&!D:&QP='A\\@(2(C)\"4F)R@I*BLL\n"
    "M+2XO,#$R,S0U-C<X.3H[/#T^/T!!0D-$149'2$E*2TQ-3D]045)35%565UA9\n"
    "46EM<75Y?8&%B8R501$8@=&%I;`H`\n"
    "`\n";
static const char s_b64_lines [] =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\n"
    "OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiYyVQREYgdGFpbAo=\n";
/* 55 bytes ("PK\3\4", 0x01-0x1d, 12 zeros, "tail", 6 zeros) written
   with spaces for zero, trailing spaces stripped. */
static const char *const s_uu_stripped [2] = {
    "M4$L#! $\" P0%!@<(\"0H+# T.#Q 1$A,4%187&!D:&QP=",
    "*=&%I;"
};
static const char s_uu_stripped_sha [] =
    "7ea49437965b88deeda845f397841c8e9e1394b1744b87f312c2c3d229aee7e1";
static const char s_uu_sha [] = "9ab918ea6e566c798df4e9c30b7e0683cdd84b5492493523d01f41b65bb302d6";

static bool
s_is_sample (const unsigned char *data, size_t size)
{
    if (size != 110)
        return false;
    for (int i = 0; i < 100; i++)
        if (data [i] != i)
            return false;
    return memcmp (data + 100, "%PDF tail\n", 10) == 0;
}

#define s_check cm_message_check
#define s_parse cm_message_parse_parts

int
cm_uu_selftest (bool verbose)
{
    int failures = 0;
    char reason [256] = "";
    char body [2048];

    /* the decoder alone */
    snprintf (body, sizeof body, "x\nbegin 644 a.bin\n%send\ny\n", s_uu_lines);
    size_t pos = 0;
    cm_uu_block_t b;
    int rc = cm_uu_next (body, strlen (body), &pos, &b);
    failures += s_check (rc == 1 && s_is_sample (b.data, b.size) && strcmp (b.name, "a.bin") == 0
                         && b.start == 2 && strcmp (body + b.end, "y\n") == 0 && pos == b.end,
                         "uuencode: block found and decoded", verbose);
    cm_uu_block_free (&b);
    failures += s_check (cm_uu_next (body, strlen (body), &pos, &b) == 0 && pos == strlen (body),
                         "uuencode: one block only", verbose);

    /* a top-level text body; CRLF lines and the name's path dropped */
    cm_buf_t crlf;
    cm_buf_init (&crlf, 0);
    snprintf (body, sizeof body, "Please see the report.\nbegin 0644 C:\\scans\\..\\report.pdf\n%send\n"
              "Regards,\nAnn\n", s_uu_lines);
    for (const char *p = body; *p; p++)
        cm_buf_append (&crlf, *p == '\n' ? "\r\n" : p, *p == '\n' ? 2 : 1);
    cm_message_t *m = s_parse ("", crlf.data ? crlf.data : "", NULL, reason, sizeof reason);
    cm_buf_free (&crlf);
    failures += s_check (m && m->nattachments == 1
                         && strcmp (m->attachments [0].filename, "report.pdf") == 0
                         && strcmp (m->attachments [0].content_type, "application/pdf") == 0
                         && s_is_sample (m->attachments [0].data, m->attachments [0].size)
                         && strcmp (m->attachments [0].sha256, s_uu_sha) == 0
                         && !m->attachments [0].is_inline,
                         "uuencode: file in a text body becomes an attachment", verbose);
    failures += s_check (m && strcmp (m->text, "Please see the report.\r\n[attachment: report.pdf]\r\n"
                                               "Regards,\r\nAnn\r\n") == 0,
                         "uuencode: block replaced by a marker line in the text", verbose);
    if (m && verbose)
        printf ("selftest: uuencode text [%s]\n", m->text);
    cm_message_destroy (&m);

    /* GNU uuencode -m, in a text/plain part of multipart/mixed, with a
       name that a bidi override would disguise */
    snprintf (body, sizeof body, "--B\nContent-Type: text/plain; charset=utf-8\n"
              "Content-Transfer-Encoding: 8bit\n\nScan from the fax gateway, se\xC3\xB1or:\n"
              "begin-base64 600 /tmp/scan\xE2\x80\xAE" "fdp.exe\n%s====\nend of message\n"
              "--B\nContent-Type: text/plain; name=notes.txt\nContent-Disposition: attachment\n\n"
              "begin 644 kept.bin\n%send\n--B--\n", s_b64_lines, s_uu_lines);
    m = s_parse ("Content-Type: multipart/mixed; boundary=B\n", body, NULL, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 2
                         && strcmp (m->attachments [0].filename, "scanfdp.exe") == 0
                         && strcmp (m->attachments [0].content_type, "application/x-msdownload") == 0
                         && s_is_sample (m->attachments [0].data, m->attachments [0].size)
                         && strcmp (m->attachments [1].filename, "notes.txt") == 0
                         && strstr ((const char *) m->attachments [1].data, "begin 644 kept.bin"),
                         "uuencode -m in a text part; a text attachment is left as it is", verbose);
    failures += s_check (m && strcmp (m->text, "Scan from the fax gateway, se\xC3\xB1or:\n"
                                               "[attachment: scanfdp.exe]\nend of message") == 0,
                         "uuencode -m: marker, the rest of the text kept", verbose);
    if (m && verbose)
        printf ("selftest: uuencode -m text [%s]\n", m->text);
    cm_message_destroy (&m);

    /* not blocks: all of it stays text */
    static const char *texts [] = {
        "To send it, type\nbegin 644 notes.txt\nand then the lines, and\nend\n",
        "> begin 644 report.pdf\n> M``$\n> end\n",
        "begin 644 report.pdf\nend\n",
        "begin 6448 report.pdf\n`\nend\n",
        "begin 64 report.pdf\n`\nend\n",
        "begin  644 report.pdf\n`\nend\n",
        "begin 644 \n`\nend\n",
        "begin-base64 644 x.bin\nQUJD\nQUJDRA==\nQUJD\n====\n",
        "begin-base64 644 x.bin\nQUJDRA=\n====\n",
        "begin-base64 644 x.bin\nQUJDRA==\n",
        /* prose: capitals, digits and punctuation are all uuencode
           characters and a line's first one reads as a length, so a
           short line is as good as stripped; none of these is a block
           that a space-for-zero encoder and stripping explain */
        "Steps:\nbegin 644 plan.txt\nOK\nend\nThanks\n",
        "begin 644 plan.txt\nMOVE DB TO HOST B\nEND\nend\n",
        "begin 644 plan.txt\nMOVE DB TO HOST B\nEND\n\nend\n",
        "begin 644 plan.txt\nOK\n\nend\n",
        "To unpack:\nbegin 644 backup.tar\nTHEN RUN IT\n\nend\n",
        "begin 644 notes.txt\nMAKE SURE THE BACKUP IS DONE BEFORE THE MOVE\nDONE\n\nend\n",
        "begin 644 n.txt\nMAKE SURE THE BACKUP IS DONE BEFORE THE MOVE\nDONE\n`\nend\n",
        "begin 644 list.txt\nCHECK LOGS\nA\n\nend\n",
        "begin 644 a.txt\nNOTE: SEE 1.2\n \nend\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts [0]; i++) {
        m = s_parse ("", texts [i], NULL, reason, sizeof reason);
        char what [160];
        snprintf (what, sizeof what, "uuencode: not a block, text untouched: %.60s", texts [i]);
        for (char *p = what; *p; p++)
            if (*p == '\n')
                *p = '|';
        failures += s_check (m && m->nattachments == 0 && strcmp (m->text, texts [i]) == 0,
                             what, verbose);
        cm_message_destroy (&m);
    }
    /* cut short, a line of the wrong length, a changing length */
    size_t lines = strlen (s_uu_lines);
    const char *second = strchr (s_uu_lines, '\n') + 1;
    const char *third = strchr (second, '\n') + 1;
    struct { const char *what; char text [1024]; } broken [3];
    snprintf (broken [0].text, sizeof broken [0].text, "Hi\nbegin 644 r.pdf\n%.*s", (int) (third - s_uu_lines),
              s_uu_lines);
    broken [0].what = "uuencode: truncated block (no end) stays text";
    snprintf (broken [1].text, sizeof broken [1].text, "Hi\nbegin 644 r.pdf\n%.*s%s end\n",
              (int) (third - s_uu_lines - 2), s_uu_lines, third);
    broken [1].what = "uuencode: two lines run together stay text";
    snprintf (broken [2].text, sizeof broken [2].text, "Hi\nbegin 644 r.pdf\n%s%.*send\n",
              third, (int) lines, s_uu_lines);
    broken [2].what = "uuencode: a short line before full ones stays text";
    for (int i = 0; i < 3; i++) {
        m = s_parse ("", broken [i].text, NULL, reason, sizeof reason);
        failures += s_check (m && m->nattachments == 0 && strcmp (m->text, broken [i].text) == 0,
                             broken [i].what, verbose);
        cm_message_destroy (&m);
    }

    /* spaces for zero (old encoders, binascii.b2a_uu (backtick=False)),
       and the trailing ones stripped in transit: lines shorter than
       their length character says, the zero-length line empty or the
       space it is; without it, the block is not one such an encoder
       writes and stays text */
    static const struct { const char *zero, *what; bool taken; } ends [] = {
        { "\n", "uuencode: trailing spaces stripped, the missing characters read as zero", true },
        { " \n", "uuencode: ... the zero-length line a space", true },
        { "", "uuencode: ... no zero-length line: text", false },
    };
    for (size_t i = 0; i < sizeof ends / sizeof ends [0]; i++) {
        snprintf (body, sizeof body, "Scan:\nbegin 644 stripped.zip\n%s\n%s\n%send\nBye\n",
                  s_uu_stripped [0], s_uu_stripped [1], ends [i].zero);
        m = s_parse ("", body, NULL, reason, sizeof reason);
        failures += s_check (m && (ends [i].taken
                             ? m->nattachments == 1 && m->attachments [0].size == 55
                               && strcmp (m->attachments [0].filename, "stripped.zip") == 0
                               && strcmp (m->attachments [0].sha256, s_uu_stripped_sha) == 0
                               && strcmp (m->text, "Scan:\n[attachment: stripped.zip]\nBye\n") == 0
                             : m->nattachments == 0 && strcmp (m->text, body) == 0),
                             ends [i].what, verbose);
        cm_message_destroy (&m);
    }
    /* damaged, the block stays text: a short line that still ends in a
       space (it lost no trailing spaces), one with a character uuencode
       does not write */
    static const struct { const char *tail, *what; } damaged [] = {
        { " ", "uuencode: a short line ending in a space stays text" },
        { "a", "uuencode: a short line that is not uuencode stays text" },
    };
    for (size_t i = 0; i < sizeof damaged / sizeof damaged [0]; i++) {
        snprintf (body, sizeof body, "begin 644 stripped.zip\n%s\n%s%s\n\nend\n",
                  s_uu_stripped [0], s_uu_stripped [1], damaged [i].tail);
        m = s_parse ("", body, NULL, reason, sizeof reason);
        failures += s_check (m && m->nattachments == 0 && strcmp (m->text, body) == 0,
                             damaged [i].what, verbose);
        cm_message_destroy (&m);
    }

    /* a quoted begin line before a real block does not hide it */
    snprintf (body, sizeof body, "begin 644 see below\nbegin 644 a.gif\n%send\n", s_uu_lines);
    m = s_parse ("", body, NULL, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 1
                         && strcmp (m->attachments [0].content_type, "image/gif") == 0
                         && strcmp (m->text, "begin 644 see below\n[attachment: a.gif]\n") == 0,
                         "uuencode: a failed begin line stays, the block after it is taken", verbose);
    cm_message_destroy (&m);

    /* uuencoded files count as MIME parts */
    cm_buf_t many;
    cm_buf_init (&many, 0);
    for (int i = 0; i < 20; i++)
        cm_buf_printf (&many, "begin 644 f%d.bin\n%send\n", i, s_uu_lines);
    cm_limits_t limits;
    cm_limits_default (&limits);
    limits.max_parts = 10;
    m = s_parse ("", many.data ? many.data : "", &limits, reason, sizeof reason);
    failures += s_check (!m && strcmp (reason, "more than 10 MIME parts and uuencoded files") == 0,
                         "uuencode: files count against the parts limit", verbose);
    cm_message_destroy (&m);
    m = s_parse ("", many.data ? many.data : "", NULL, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 20 && strcmp (m->attachments [19].filename, "f19.bin") == 0,
                         "uuencode: twenty files in one body", verbose);
    cm_message_destroy (&m);
    cm_buf_free (&many);
    return failures;
}
