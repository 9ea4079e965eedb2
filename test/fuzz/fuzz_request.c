/*
 * test/fuzz/fuzz_request.c -- libFuzzer harness for the RESP request parser.
 *
 * The input is a stream of pipelined client requests (after an optional
 * limit-selector byte, see fuzz.h).  It is framed the way input_process does
 * it: resp_req_parse on the bytes from the current request's start, then
 * resp_req_args into argv and scratch sized as input_dispatch sizes them
 * (exactly, so ASan sees any overrun), then the next request, until the bytes
 * run out, the parser wants more, or it reports an error.
 *
 * Checked on every framed request: the length consumed is > 0 and within what
 * was given; the limits hold; a multibulk request's arguments are its bulk
 * payloads, in order, each between CRLFs, the last one ending the request; an
 * inline request is one line whose arguments live in the scratch space, match
 * a plain blank split when the line has no quotes or backslashes, and never
 * outnumber the argv the proxy allocates.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#define main shardproxy_main
#include "../../shardproxy.c"
#undef main

#include "fuzz.h"

/* Check a framed multibulk request BUF[0..P->pos) and its arguments. */
static void fuzz_check_multibulk(const struct resp_req_parser *p, const char *buf,
                                 const struct resp_limits *lim)
{
    size_t cap = p->argc > 0 ? (size_t)p->argc : 1, i, end;
    struct resp_arg *argv = malloc(sizeof *argv * cap);
    char *scratch = malloc(p->pos);
    int64_t argc;

    FUZZ_CHECK(argv && scratch, "out of memory");
    FUZZ_CHECK(p->argc >= 0, "argc %lld", (long long)p->argc);
    FUZZ_CHECK((uint64_t)p->argc <= lim->max_request / 6, "argc %lld", (long long)p->argc);
    FUZZ_CHECK(!lim->max_args || (uint64_t)p->argc <= lim->max_args, "argc %lld > max_args",
               (long long)p->argc);
    FUZZ_CHECK(p->args_left == 0, "args_left %lld", (long long)p->args_left);
    argc = resp_req_args(p, buf, argv, (size_t)p->argc, scratch);
    FUZZ_CHECK(argc == p->argc, "resp_req_args gave %lld, the parser %lld", (long long)argc,
               (long long)p->argc);
    /* the header line, then each argument as $<len>\r\n<payload>\r\n */
    end = (size_t)((const char *)memchr(buf, '\n', p->pos) - buf) + 1;
    for (i = 0; i < (size_t)argc; i++) {
        const char *a = argv[i].p;
        /* compare offsets, not pointers: a wild length must not wrap the check */
        FUZZ_CHECK(a >= buf + end + 4 && (size_t)(a - buf) + 2 <= p->pos &&
                       argv[i].len <= p->pos - (size_t)(a - buf) - 2,
                   "arg %zu (offset %td, length %zu) outside the request of %zu bytes", i,
                   a - buf, argv[i].len, p->pos);
        FUZZ_CHECK(buf[end] == '$' && a[-2] == '\r' && a[-1] == '\n', "arg %zu: no header", i);
        FUZZ_CHECK(!memchr(buf + end, '\n', (size_t)(a - 1 - (buf + end))),
                   "arg %zu: header is not one line", i);
        FUZZ_CHECK(a[argv[i].len] == '\r' && a[argv[i].len + 1] == '\n',
                   "arg %zu: payload not followed by CRLF", i);
        FUZZ_CHECK(!lim->max_bulk || argv[i].len <= lim->max_bulk, "arg %zu > max_bulk", i);
        end = (size_t)(a - buf) + argv[i].len + 2;
    }
    FUZZ_CHECK(end == p->pos, "arguments end at %zu, the request at %zu", end, p->pos);
    FUZZ_CHECK(argc == 0 || p->pos <= lim->max_request, "request of %zu bytes > max_request",
               p->pos);
    free(argv);
    free(scratch);
}

/* Check a framed inline request BUF[0..P->pos) and its arguments. */
static void fuzz_check_inline(const struct resp_req_parser *p, const char *buf,
                              const struct resp_limits *lim)
{
    size_t line = p->pos - 1, cap = p->pos / 2 + 2, i, sum = 0;
    struct resp_arg *argv = malloc(sizeof *argv * cap);
    char *scratch = malloc(p->pos);
    int64_t argc;
    int quoted;

    FUZZ_CHECK(argv && scratch, "out of memory");
    FUZZ_CHECK(buf[p->pos - 1] == '\n', "inline request does not end in \\n");
    FUZZ_CHECK(!memchr(buf, '\n', p->pos - 1), "inline request holds two lines");
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    FUZZ_CHECK(line <= lim->max_inline, "inline line of %zu bytes > max_inline", line);
    FUZZ_CHECK(p->argc == 0 || p->argc == 1, "inline argc %lld", (long long)p->argc);
    argc = resp_req_args(p, buf, argv, cap, scratch);
    FUZZ_CHECK(argc >= -1 && argc <= (int64_t)cap, "inline argc %lld, argv holds %zu",
               (long long)argc, cap);
    FUZZ_CHECK(argc != 0 || p->argc == 0, "parser saw words, resp_req_args none");
    FUZZ_CHECK(p->argc != 0 || argc == 0, "parser saw a blank line, resp_req_args %lld",
               (long long)argc);
    for (i = 0; argc > 0 && i < (size_t)argc; i++) {
        FUZZ_CHECK(argv[i].p >= scratch && argv[i].p + argv[i].len <= scratch + p->pos,
                   "inline arg %zu outside the scratch space", i);
        sum += argv[i].len;
    }
    FUZZ_CHECK(sum <= line, "inline args hold %zu bytes, the line %zu", sum, line);
    /* no quotes, no escapes: the arguments are the blank-separated words */
    quoted = memchr(buf, '"', line) || memchr(buf, '\'', line) || memchr(buf, '\\', line);
    if (!quoted) {
        size_t pos = 0, n = 0;
        for (;;) {
            size_t start;
            while (pos < line && isspace((unsigned char)buf[pos]))
                pos++;
            if (pos == line)
                break;
            start = pos;
            while (pos < line && !isspace((unsigned char)buf[pos]))
                pos++;
            FUZZ_CHECK((int64_t)n < argc && argv[n].len == pos - start &&
                           !memcmp(argv[n].p, buf + start, pos - start),
                       "inline word %zu differs from a blank split", n);
            n++;
        }
        FUZZ_CHECK((int64_t)n == argc, "blank split gives %zu words, resp_req_args %lld", n,
                   (long long)argc);
    }
    free(argv);
    free(scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct resp_limits *lim = fuzz_limits(&data, &size);
    char *buf = fuzz_copy(data, size);
    size_t off = 0;

    while (off < size) {
        struct resp_req_parser p;
        enum resp_result rc;
        size_t avail = size - off;

        resp_req_init(&p);
        rc = resp_req_parse(&p, buf + off, avail, lim);
        FUZZ_CHECK(rc == RESP_OK || rc == RESP_AGAIN || rc == RESP_ERROR, "result %d", (int)rc);
        if (rc == RESP_ERROR) {
            FUZZ_CHECK(p.err && p.err[0], "an error without a reason");
            break;
        }
        FUZZ_CHECK(p.pos <= avail, "consumed %zu of %zu bytes", p.pos, avail);
        if (rc == RESP_AGAIN)
            break;
        FUZZ_CHECK(p.pos > 0, "a request of 0 bytes");
        FUZZ_CHECK(p.inline_req == (buf[off] != '*'), "inline_req %d for a request starting %#x",
                   p.inline_req, (unsigned)(unsigned char)buf[off]);
        if (p.inline_req)
            fuzz_check_inline(&p, buf + off, lim);
        else
            fuzz_check_multibulk(&p, buf + off, lim);
        off += p.pos;
    }
    free(buf);
    return 0;
}
