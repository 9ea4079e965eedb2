/*
 * test/fuzz/fuzz_split.c -- differential harness: the parsers must not care
 * how the bytes arrive.
 *
 * The input (after an optional limit-selector byte, see fuzz.h) is parsed as
 * a stream of requests, and separately as a stream of replies, three ways:
 * whole; in chunks whose sizes come from a PRNG seeded with a hash of the
 * input; one byte at a time.  Each way yields a transcript: per message the
 * result code, the length consumed, and for requests the parser's argc and
 * inline flag, resp_req_args's count and every argument's bytes, up to the
 * first error or the point where the parser wants bytes that never come.
 * The transcripts must be equal; a difference is an abort().
 *
 * Chunked feeding follows the parser contract, as input_process and
 * bconn_replies do: the buffer handed over always starts at the current
 * message's first byte and only grows; after RESP_AGAIN the parser is called
 * again with the same state and more bytes; it is never called with no
 * bytes.  Each call gets a fresh heap copy of exactly the bytes received, so
 * ASan also catches a read past the end and a pointer kept across calls.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#define main shardproxy_main
#include "../../shardproxy.c"
#undef main

#include "fuzz.h"

/* ------------------------------------------------------------ transcript */

struct transcript {
    unsigned char *p; /* the record bytes */
    size_t len, cap;
};

static void ts_add(struct transcript *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n)
            cap *= 2;
        t->p = realloc(t->p, cap);
        FUZZ_CHECK(t->p != NULL, "out of memory");
        t->cap = cap;
    }
    memcpy(t->p + t->len, p, n);
    t->len += n;
}

static void ts_u64(struct transcript *t, uint64_t v) { ts_add(t, &v, sizeof v); }

/* ------------------------------------------------------------- schedules */

/* How the bytes are delivered: whole, one at a time, or chunks from a PRNG. */
enum sched_kind { SCHED_WHOLE, SCHED_BYTES, SCHED_RANDOM };

struct sched {
    enum sched_kind kind;
    uint64_t rng; /* xorshift64 state (SCHED_RANDOM) */
};

static uint64_t sched_rand(struct sched *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

/* Bytes received so far HAVE (<= SIZE): how many there are after the next
 * read. */
static size_t sched_next(struct sched *s, size_t have, size_t size)
{
    size_t left = size - have, n;

    if (left == 0)
        return size;
    switch (s->kind) {
    case SCHED_WHOLE:
        return size;
    case SCHED_BYTES:
        return have + 1;
    default:
        switch (sched_rand(s) % 4) { /* mostly small reads, some large */
        case 0: n = 1; break;
        case 1: n = 1 + sched_rand(s) % 4; break;
        case 2: n = 1 + sched_rand(s) % 32; break;
        default: n = 1 + sched_rand(s) % left; break;
        }
        return have + MIN(n, left);
    }
}

/* A fresh exact-size heap copy of DATA[OFF..HAVE) for one parser call. */
static char *chunk_copy(char *old, const uint8_t *data, size_t off, size_t have)
{
    free(old);
    return fuzz_copy(data + off, have - off);
}

/* --------------------------------------------------------------- requests */

static void split_requests(const uint8_t *data, size_t size, const struct resp_limits *lim,
                           struct sched *s, struct transcript *t)
{
    size_t off = 0, have = sched_next(s, 0, size);

    while (off < size) {
        struct resp_req_parser p;
        enum resp_result rc;
        char *buf = NULL;

        if (off == have) /* never called with no bytes: wait for the next read */
            have = sched_next(s, have, size);
        resp_req_init(&p);
        for (;;) {
            buf = chunk_copy(buf, data, off, have);
            rc = resp_req_parse(&p, buf, have - off, lim);
            if (rc != RESP_AGAIN || have == size)
                break;
            have = sched_next(s, have, size);
        }
        ts_u64(t, (uint64_t)rc);
        if (rc != RESP_OK) {
            free(buf);
            return;
        }
        ts_u64(t, p.pos);
        ts_u64(t, (uint64_t)p.argc);
        ts_u64(t, (uint64_t)p.inline_req);
        {
            size_t cap = p.inline_req ? p.pos / 2 + 2 : (size_t)p.argc, i;
            struct resp_arg *argv = malloc(sizeof *argv * (cap ? cap : 1));
            char *scratch = malloc(p.pos);
            int64_t argc;

            FUZZ_CHECK(argv && scratch, "out of memory");
            argc = resp_req_args(&p, buf, argv, cap, scratch);
            FUZZ_CHECK(argc <= (int64_t)cap, "argc %lld > argv %zu", (long long)argc, cap);
            ts_u64(t, (uint64_t)argc);
            for (i = 0; argc > 0 && i < (size_t)argc; i++) {
                const char *base = p.inline_req ? scratch : buf, *a = argv[i].p;
                FUZZ_CHECK(a >= base && (size_t)(a - base) <= p.pos &&
                               argv[i].len <= p.pos - (size_t)(a - base),
                           "arg %zu (length %zu) outside the request of %zu bytes", i,
                           argv[i].len, p.pos);
                ts_u64(t, argv[i].len);
                ts_add(t, argv[i].p, argv[i].len);
            }
            free(argv);
            free(scratch);
        }
        off += p.pos;
        free(buf);
    }
    ts_u64(t, 99); /* clean end: every byte framed */
}

/* ---------------------------------------------------------------- replies */

static void split_replies(const uint8_t *data, size_t size, struct sched *s,
                          struct transcript *t)
{
    size_t off = 0, have = sched_next(s, 0, size);

    while (off < size) {
        struct resp_reply_parser p;
        enum resp_result rc;
        char *buf = NULL;

        if (off == have)
            have = sched_next(s, have, size);
        resp_reply_init(&p);
        for (;;) {
            buf = chunk_copy(buf, data, off, have);
            rc = resp_reply_parse(&p, buf, have - off);
            if (rc != RESP_AGAIN || have == size)
                break;
            have = sched_next(s, have, size);
        }
        free(buf);
        ts_u64(t, (uint64_t)rc);
        if (rc != RESP_OK)
            return;
        ts_u64(t, p.pos);
        off += p.pos;
    }
    ts_u64(t, 99);
}

/* ------------------------------------------------------------------ entry */

/* Where two transcripts first differ, for the report. */
static size_t ts_diff(const struct transcript *a, const struct transcript *b)
{
    size_t i, n = MIN(a->len, b->len);

    for (i = 0; i < n && a->p[i] == b->p[i]; i++)
        ;
    return i;
}

static void compare(const char *what, const char *how, const struct transcript *whole,
                    const struct transcript *t)
{
    FUZZ_CHECK(whole->len == t->len && !memcmp(whole->p, t->p, t->len),
               "%s fed %s differ from %s fed whole (transcripts of %zu and %zu bytes, first "
               "difference at byte %zu, i.e. record %zu)",
               what, how, what, t->len, whole->len, ts_diff(whole, t), ts_diff(whole, t) / 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct resp_limits *lim = fuzz_limits(&data, &size);
    struct transcript whole = {0, 0, 0}, t = {0, 0, 0};
    struct sched s;
    uint64_t seed = 0xcbf29ce484222325ULL; /* FNV-1a of the input seeds the PRNG */
    size_t i;

    for (i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 0x100000001b3ULL;
    seed |= 1; /* xorshift needs a non-zero state */

    s.kind = SCHED_WHOLE;
    split_requests(data, size, lim, &s, &whole);
    s.kind = SCHED_BYTES;
    split_requests(data, size, lim, &s, &t);
    compare("requests", "byte by byte", &whole, &t);
    t.len = 0;
    s.kind = SCHED_RANDOM;
    s.rng = seed;
    split_requests(data, size, lim, &s, &t);
    compare("requests", "in random chunks", &whole, &t);

    whole.len = t.len = 0;
    s.kind = SCHED_WHOLE;
    split_replies(data, size, &s, &whole);
    s.kind = SCHED_BYTES;
    split_replies(data, size, &s, &t);
    compare("replies", "byte by byte", &whole, &t);
    t.len = 0;
    s.kind = SCHED_RANDOM;
    s.rng = seed;
    split_replies(data, size, &s, &t);
    compare("replies", "in random chunks", &whole, &t);

    free(whole.p);
    free(t.p);
    return 0;
}
