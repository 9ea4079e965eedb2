/*
 * test/fuzz/fuzz_reply.c -- libFuzzer harness for the RESP reply parser.
 *
 * The input is what a backend sends: a stream of RESP2 or RESP3 replies.  It is framed
 * the way bconn_replies does it (resp_reply_parse from each reply's first
 * byte, resp_reply_init after each), until the bytes run out, the parser
 * wants more, or it reports an error.
 *
 * Checked on every reply: the length consumed is > 0 and within what was
 * given; the reply starts with a RESP type byte and ends in CRLF; nothing is
 * left pending.  Each step is also compared with a small recursive-descent
 * parser written here from the RESP2 and RESP3 grammars and the limits shardproxy.h
 * documents (result and length must agree), so a framing slip that stays in
 * bounds is caught too.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#define main shardproxy_main
#include "../../shardproxy.c"
#undef main

#include "fuzz.h"

/* ------------------------------------------------------- reference parser */

/* Strict decimal: optional '-', then 1 to 19 digits, value within int64. */
static int ref_number(const char *p, size_t n, int64_t *out)
{
    size_t i = 0, digits;
    int neg = 0;
    uint64_t v = 0;

    if (n > 0 && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    digits = n - i;
    if (digits == 0 || digits > 19)
        return -1;
    for (; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0'); /* 19 digits fit in uint64 */
    }
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

/* A RESP3 scalar line's text (CRLF excluded) as the RESP3 spec defines it:
 * null empty, boolean t/f, big number [sign] digits, double a decimal or
 * exponent number, inf, -inf or nan. */
static int ref_scalar(char t, const char *p, size_t n)
{
    size_t i = 0;
    int64_t v;

    if (t == ':')
        return ref_number(p, n, &v) == 0;
    if (t == '_')
        return n == 0;
    if (t == '#')
        return n == 1 && (*p == 't' || *p == 'f');
    if (t == '(') {
        if (n > 0 && (*p == '-' || *p == '+'))
            i = 1;
        if (i == n)
            return 0;
        for (; i < n; i++)
            if (!isdigit((unsigned char)p[i]))
                return 0;
        return 1;
    }
    if (t == ',') {
        if (n == 0)
            return 0;
        for (; i < n; i++)
            if (!isdigit((unsigned char)p[i]) && !memchr(".eE+-infa", p[i], 9))
                return 0;
        return 1;
    }
    return 1; /* + and -: any text */
}

/* Frame one reply at BUF[*pos..len): RESP_OK with *pos past it, RESP_AGAIN
 * when the bytes end first, RESP_ERROR on a grammar or limit violation. */
static enum resp_result ref_reply(const char *buf, size_t len, size_t *pos)
{
    const char *nl;
    size_t start = *pos, line;
    int64_t n, i, elems;
    char t;

    if (start >= len)
        return RESP_AGAIN;
    nl = memchr(buf + start, '\n', len - start);
    if (!nl)
        return len - start > RESP_MAX_REPLY_LINE ? RESP_ERROR : RESP_AGAIN;
    line = (size_t)(nl - buf); /* index of '\n' */
    if (line < start + 2 || buf[line - 1] != '\r')
        return RESP_ERROR;
    *pos = line + 1;
    t = buf[start];
    switch (t) {
    case '+': case '-': case ':': case '_': case '#': case ',': case '(':
        return ref_scalar(t, buf + start + 1, line - 1 - start - 1) ? RESP_OK : RESP_ERROR;
    case '$': case '=': case '!':
        if (ref_number(buf + start + 1, line - 1 - start - 1, &n) != 0 ||
            n < (t == '$' ? -1 : 0) || n > (int64_t)RESP_MAX_REPLY_BULK ||
            (t == '=' && n < 4))
            return RESP_ERROR;
        if (n == -1)
            return RESP_OK;
        if ((uint64_t)(len - *pos) < (uint64_t)n + 2)
            return RESP_AGAIN;
        *pos += (size_t)n + 2;
        return buf[*pos - 2] == '\r' && buf[*pos - 1] == '\n' ? RESP_OK : RESP_ERROR;
    case '*': case '~': case '>': case '%': case '|':
        if (ref_number(buf + start + 1, line - 1 - start - 1, &n) != 0 ||
            n < (t == '*' ? -1 : 0) || n > RESP_MAX_REPLY_ARRAY)
            return RESP_ERROR;
        elems = t == '%' || t == '|' ? 2 * n : n;
        for (i = 0; i < elems; i++) {
            enum resp_result r = ref_reply(buf, len, pos);
            if (r != RESP_OK)
                return r;
        }
        /* an attribute is followed by the reply it annotates */
        return t == '|' ? ref_reply(buf, len, pos) : RESP_OK;
    default:
        return RESP_ERROR;
    }
}

/* Inputs up to this size are also checked against the reference (its
 * recursion depth is bounded by the input size / 4). */
#define REF_MAX_INPUT (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    size_t off = 0;

    while (off < size) {
        struct resp_reply_parser p;
        enum resp_result rc, want;
        size_t avail = size - off, ref_pos = 0;

        resp_reply_init(&p);
        rc = resp_reply_parse(&p, buf + off, avail);
        FUZZ_CHECK(rc == RESP_OK || rc == RESP_AGAIN || rc == RESP_ERROR, "result %d", (int)rc);
        if (size <= REF_MAX_INPUT) {
            want = ref_reply(buf + off, avail, &ref_pos);
            FUZZ_CHECK(rc == want, "at offset %zu: parser says %d, reference %d", off, (int)rc,
                       (int)want);
            FUZZ_CHECK(rc != RESP_OK || p.pos == ref_pos,
                       "at offset %zu: parser framed %zu bytes, reference %zu", off, p.pos,
                       ref_pos);
        }
        if (rc == RESP_ERROR) {
            FUZZ_CHECK(p.err && p.err[0], "an error without a reason");
            break;
        }
        FUZZ_CHECK(p.pos <= avail, "consumed %zu of %zu bytes", p.pos, avail);
        if (rc == RESP_AGAIN)
            break;
        FUZZ_CHECK(p.pos >= 3, "a reply of %zu bytes", p.pos);
        FUZZ_CHECK(strchr("+-:$*_#,(=!%~>|", buf[off]) && buf[off] != '\0', "reply starts with %#x",
                   (unsigned)(unsigned char)buf[off]);
        FUZZ_CHECK(buf[off + p.pos - 2] == '\r' && buf[off + p.pos - 1] == '\n',
                   "reply does not end in CRLF");
        FUZZ_CHECK(p.pending == 0 && p.bulk_left == 0, "pending %lld, bulk_left %lld",
                   (long long)p.pending, (long long)p.bulk_left);
        off += p.pos;
    }
    free(buf);
    return 0;
}
