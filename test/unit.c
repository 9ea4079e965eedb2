/*
 * test/unit.c -- unit tests of shardproxy's pure API (shardproxy.h).
 *
 * The program includes shardproxy.c itself, with its main() renamed, so the
 * tests exercise exactly the code the proxy runs, static helpers included.
 * Built by `make unit` (under ASan/UBSan when the compiler has them).
 *
 * What is covered:
 *   - MurmurHash64A and XXH64 against the published vectors (Envoy's own tests), and against
 *     independent reference implementations written here from the public
 *     algorithms, for every length 0..100 (every tail length and both XXH64
 *     paths), several seeds and unaligned starts;
 *   - the Redis Cluster hash-tag rule;
 *   - Maglev: Envoy's published vectors, argument checks, and a reference
 *     implementation of the placement pseudo-code on larger tables;
 *   - the request and reply parsers: tables of valid and invalid inputs, each
 *     fed whole, split in two at every byte, and one byte at a time, which
 *     must all give the same transcript (results, lengths, arguments).
 *   - the latency histograms: bucket edges and widths, powers of two as
 *     edges, monotonic indices, exact counts below 2^k and quantiles against
 *     sorted samples;
 *   - the split merge (MGET, MSET, the integer sums) on hand-built parents,
 *     errors of backends and of the proxy, short and unexpected replies;
 *   - the config parser: defaults against the directive table, every
 *     numeric directive's range, sizes, error lines, comments, backends;
 *   - the event backend compiled in (`make unit` builds and runs this file
 *     twice: the platform's backend, then -DEVENTS_POLL): interest changes,
 *     level-triggered readiness, hang-ups, deletes that leave holes.
 *
 * The last line printed is "N passed, M failed"; the exit status is 1 when
 * anything failed.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#define main shardproxy_main
#include "../shardproxy.c"
#undef main

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ framework */

static int t_passed, t_failed;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static void t_check(int ok, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        t_passed++;
        return;
    }
    t_failed++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* T_CHECK(cond, printf-format, args...): count one check, explain a failure. */
#define T_CHECK(cond, ...) t_check((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

/* A byte string with an explicit length (literals may hold NUL bytes). */
struct t_bytes {
    const char *p;
    size_t len;
};
#define T_S(lit) { lit, sizeof(lit) - 1 }

static void *t_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* Exact-size heap copy, so ASan catches any read past the end of input. */
static char *t_dup(const char *p, size_t n)
{
    char *q = t_malloc(n);

    if (n)
        memcpy(q, p, n);
    return q;
}

/* A growable text buffer for transcripts. */
struct t_text {
    char *p;
    size_t len, cap;
};

static void t_text_add(struct t_text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        char *q;

        while (t->len + n + 1 > cap)
            cap *= 2;
        q = realloc(t->p, cap);
        if (!q) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void t_text_printf(struct t_text *t, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        t_text_add(t, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Append bytes in a readable, unambiguous form: printable ASCII as is,
 * everything else (and backslash, double quote) as \xHH. */
static void t_text_quote(struct t_text *t, const char *p, size_t n)
{
    size_t i;

    t_text_add(t, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            t_text_add(t, (const char *)&p[i], 1);
        else
            t_text_printf(t, "\\x%02x", c);
    }
    t_text_add(t, "\"", 1);
}

/* A printable rendering of an input for failure messages (truncated); the
 * result stays valid for the next 7 calls. */
static const char *t_show(const char *p, size_t n)
{
    static struct t_text ring[8];
    static unsigned next;
    struct t_text *t = &ring[next++ % 8];

    t->len = 0;
    t_text_quote(t, p, n > 80 ? 80 : n);
    if (n > 80)
        t_text_printf(t, "...(%zu bytes)", n);
    return t->p;
}

/* Copy a rendering of P[0..N) into NAME, for a test case's name. */
static const char *t_name(char *name, size_t size, const char *p, size_t n)
{
    snprintf(name, size, "%s", t_show(p, n));
    return name;
}

/* ------------------------------------------ reference hash implementations */

/* Written from the public algorithms, independently of shardproxy.c, with
 * byte-wise little-endian loads so they are right on any host. */

static uint64_t ref_load(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t ref_rotl(uint64_t v, int r)
{
    return (v << r) | (v >> (64 - r));
}

/* MurmurHash64A as libstdc++'s _Hash_bytes (tail loaded as one integer). */
static uint64_t ref_murmur(const void *data, size_t len, uint64_t seed)
{
    const uint64_t m = 0xc6a4a7935bd1e995ULL;
    const unsigned char *p = data;
    uint64_t h = seed ^ ((uint64_t)len * m);
    size_t i, blocks = len / 8;

    for (i = 0; i < blocks; i++) {
        uint64_t k = ref_load(p + 8 * i, 8) * m;

        k ^= k >> 47;
        h ^= k * m;
        h *= m;
    }
    if (len & 7) {
        h ^= ref_load(p + 8 * blocks, len & 7);
        h *= m;
    }
    h ^= h >> 47;
    h *= m;
    h ^= h >> 47;
    return h;
}

#define REF_P1 0x9E3779B185EBCA87ULL
#define REF_P2 0xC2B2AE3D27D4EB4FULL
#define REF_P3 0x165667B19E3779F9ULL
#define REF_P4 0x85EBCA77C2B2AE63ULL
#define REF_P5 0x27D4EB2F165667C5ULL

static uint64_t ref_xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * REF_P2;
    acc = ref_rotl(acc, 31);
    return acc * REF_P1;
}

static uint64_t ref_xxh_merge(uint64_t acc, uint64_t v)
{
    acc ^= ref_xxh_round(0, v);
    return acc * REF_P1 + REF_P4;
}

static uint64_t ref_xxh64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data, *end = p + len;
    uint64_t h;

    if (len >= 32) {
        uint64_t v1 = seed + REF_P1 + REF_P2, v2 = seed + REF_P2;
        uint64_t v3 = seed, v4 = seed - REF_P1;

        while (end - p >= 32) {
            v1 = ref_xxh_round(v1, ref_load(p, 8));
            v2 = ref_xxh_round(v2, ref_load(p + 8, 8));
            v3 = ref_xxh_round(v3, ref_load(p + 16, 8));
            v4 = ref_xxh_round(v4, ref_load(p + 24, 8));
            p += 32;
        }
        h = ref_rotl(v1, 1) + ref_rotl(v2, 7) + ref_rotl(v3, 12) + ref_rotl(v4, 18);
        h = ref_xxh_merge(h, v1);
        h = ref_xxh_merge(h, v2);
        h = ref_xxh_merge(h, v3);
        h = ref_xxh_merge(h, v4);
    } else {
        h = seed + REF_P5;
    }
    h += (uint64_t)len;
    while (end - p >= 8) {
        h ^= ref_xxh_round(0, ref_load(p, 8));
        h = ref_rotl(h, 27) * REF_P1 + REF_P4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= ref_load(p, 4) * REF_P1;
        h = ref_rotl(h, 23) * REF_P2 + REF_P3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)*p * REF_P5;
        h = ref_rotl(h, 11) * REF_P1;
        p++;
    }
    h ^= h >> 33;
    h *= REF_P2;
    h ^= h >> 29;
    h *= REF_P3;
    h ^= h >> 32;
    return h;
}

/* ------------------------------------------------------------- hashing */

static void test_hash_vectors(void)
{
    /* The published tables (Envoy's own test values). */
    static const struct {
        struct t_bytes in;
        uint64_t murmur, xxh;
    } v[] = {
        { T_S("foo"), 9631199822919835226ULL, 3728699739546630719ULL },
        { T_S("bar"), 11474628671133349555ULL, 5234164152756840025ULL },
        { T_S("foo\nbar"), 16306510975912980159ULL, 8917841378505826757ULL },
        { T_S("lyft"), 12847078931730529320ULL, 4400747396090729504ULL },
        { T_S(""), 6142509188972423790ULL, 17241709254077376921ULL },
    };
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *in = t_dup(v[i].in.p, v[i].in.len);
        uint64_t got;

        got = hash_murmur64a(in, v[i].in.len, HASH_SEED);
        T_CHECK(got == v[i].murmur, "hash_murmur64a(%s) = %" PRIu64 ", want %" PRIu64,
                t_show(in, v[i].in.len), got, v[i].murmur);
        got = hash_xxh64(in, v[i].in.len, 0);
        T_CHECK(got == v[i].xxh, "hash_xxh64(%s) = %" PRIu64 ", want %" PRIu64,
                t_show(in, v[i].in.len), got, v[i].xxh);
        /* The references must agree with the vectors too, or they prove nothing. */
        T_CHECK(ref_murmur(in, v[i].in.len, HASH_SEED) == v[i].murmur,
                "reference murmur disagrees with vector %s", t_show(in, v[i].in.len));
        T_CHECK(ref_xxh64(in, v[i].in.len, 0) == v[i].xxh,
                "reference xxh64 disagrees with vector %s", t_show(in, v[i].in.len));
        free(in);
    }
}

/* Every length 0..100 (every tail length, the XXH64 32-byte stripe loop),
 * bytes with the high bit set (sign-extension bugs), several seeds, and
 * starts at every alignment (the input is copied so ASan bounds it). */
static void test_hash_lengths(void)
{
    static const uint64_t seeds[] = { HASH_SEED, 0, 1, 0x123456789abcdefULL, UINT64_MAX };
    unsigned char data[128];
    size_t len, s, off;
    int bad_m = 0, bad_x = 0;

    for (len = 0; len < sizeof(data); len++)
        data[len] = (unsigned char)(len * 37 + 11 + (len > 60 ? 0x80 : 0));

    for (len = 0; len <= 100; len++) {
        for (off = 0; off < 8; off++) {
            unsigned char *buf = t_malloc(len + off);
            unsigned char *in = buf + off;

            memcpy(in, data, len);
            for (s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
                uint64_t got = hash_murmur64a(in, len, seeds[s]);
                uint64_t want = ref_murmur(data, len, seeds[s]);

                if (got != want && bad_m++ < 5)
                    fprintf(stderr, "  murmur len %zu off %zu seed %#" PRIx64
                            ": got %" PRIu64 " want %" PRIu64 "\n",
                            len, off, seeds[s], got, want);
                got = hash_xxh64(in, len, seeds[s]);
                want = ref_xxh64(data, len, seeds[s]);
                if (got != want && bad_x++ < 5)
                    fprintf(stderr, "  xxh64 len %zu off %zu seed %#" PRIx64
                            ": got %" PRIu64 " want %" PRIu64 "\n",
                            len, off, seeds[s], got, want);
            }
            free(buf);
        }
    }
    T_CHECK(bad_m == 0, "hash_murmur64a differs from the reference in %d cases", bad_m);
    T_CHECK(bad_x == 0, "hash_xxh64 differs from the reference in %d cases", bad_x);

    /* Anchors for the long paths of the references themselves, taken from
     * libxxhash's XXH64 and libstdc++'s std::_Hash_bytes on the same data. */
    {
        static const struct {
            size_t len;
            uint64_t murmur, xxh0, xxh1;
        } a[] = {
            { 8, 6308402208869595889ULL, 6326197883652792858ULL, 18140189286731826580ULL },
            { 15, 1113674927331042750ULL, 10423987395300855081ULL, 11773012492286388597ULL },
            { 33, 18247155524294766665ULL, 3885561414168193074ULL, 1140733727577939364ULL },
            { 64, 7083090658068880394ULL, 11850667913404060840ULL, 7182001372020774119ULL },
            { 100, 3624253342496962183ULL, 15935485439655903341ULL, 3792897809232408734ULL },
        };

        for (s = 0; s < sizeof(a) / sizeof(a[0]); s++) {
            T_CHECK(hash_murmur64a(data, a[s].len, HASH_SEED) == a[s].murmur &&
                    ref_murmur(data, a[s].len, HASH_SEED) == a[s].murmur,
                    "murmur of %zu bytes differs from libstdc++'s _Hash_bytes", a[s].len);
            T_CHECK(hash_xxh64(data, a[s].len, 0) == a[s].xxh0 &&
                    ref_xxh64(data, a[s].len, 0) == a[s].xxh0 &&
                    hash_xxh64(data, a[s].len, 1) == a[s].xxh1 &&
                    ref_xxh64(data, a[s].len, 1) == a[s].xxh1,
                    "xxh64 of %zu bytes differs from libxxhash", a[s].len);
        }
    }
}

static void test_hash_tag(void)
{
    static const struct {
        struct t_bytes key, tag;
    } v[] = {
        { T_S("{user1000}.following"), T_S("user1000") },
        { T_S("{user1000}.followers"), T_S("user1000") },
        { T_S("foo{}{bar}"), T_S("foo{}{bar}") },
        { T_S("foo{{bar}}zap"), T_S("{bar") },
        { T_S("foo{bar}{zap}"), T_S("bar") },
        { T_S("{}"), T_S("{}") },
        { T_S("no tag"), T_S("no tag") },
        { T_S("}{"), T_S("}{") },
        { T_S("{"), T_S("{") },
        { T_S("}"), T_S("}") },
        { T_S("abc{"), T_S("abc{") },
        { T_S("a{b}"), T_S("b") },
        { T_S("{a}b{c}"), T_S("a") },
        { T_S("x}{y}"), T_S("y") },
        { T_S("{}{b}"), T_S("{}{b}") },
        { T_S("k{\0}z"), T_S("\0") },
        { T_S("\0{t}"), T_S("t") },
        { T_S(""), T_S("") },
    };
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *key = t_dup(v[i].key.p, v[i].key.len);
        const char *start = NULL;
        size_t n = hash_tag(key, v[i].key.len, &start);
        int in_key = start && start >= key && start + n <= key + v[i].key.len;

        T_CHECK(in_key && n == v[i].tag.len && memcmp(start, v[i].tag.p, n) == 0,
                "hash_tag(%s): got length %zu%s, want %s", t_show(key, v[i].key.len), n,
                in_key ? "" : " outside the key", t_show(v[i].tag.p, v[i].tag.len));
        free(key);
    }
}

/* --------------------------------------------------------------- Maglev */

/* Envoy's Maglev construction, written independently from its description (and slowly). */
static int ref_maglev(uint16_t *table, uint32_t m, const char *const *ids,
                      const uint32_t *weights, int n)
{
    int *order = t_malloc(sizeof(int) * (size_t)n);
    uint64_t *offset = t_malloc(sizeof(uint64_t) * (size_t)n);
    uint64_t *skip = t_malloc(sizeof(uint64_t) * (size_t)n);
    uint64_t *next = t_malloc(sizeof(uint64_t) * (size_t)n);
    double *w = t_malloc(sizeof(double) * (size_t)n);
    double *target = t_malloc(sizeof(double) * (size_t)n);
    char *taken = t_malloc(m);
    double sum = 0, max_w = 0;
    uint64_t filled = 0, iteration = 1;
    int i, j;

    for (i = 0; i < n; i++)
        sum += weights[i];
    for (i = 0; i < n; i++) {
        w[i] = weights[i] / sum;
        if (w[i] > max_w)
            max_w = w[i];
        order[i] = i;
    }
    /* insertion sort by identity, bytewise */
    for (i = 1; i < n; i++) {
        int v = order[i];

        for (j = i; j > 0 && strcmp(ids[order[j - 1]], ids[v]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = v;
    }
    for (i = 0; i < n; i++) {
        offset[i] = ref_xxh64(ids[i], strlen(ids[i]), 0) % m;
        skip[i] = ref_xxh64(ids[i], strlen(ids[i]), 1) % (m - 1) + 1;
        target[i] = 0.0;
        next[i] = 0;
    }
    memset(taken, 0, m);
    while (filled < m) {
        for (j = 0; j < n && filled < m; j++) {
            int b = order[j];
            uint64_t c;

            if ((double)iteration * w[b] < target[b])
                continue;
            target[b] += max_w;
            c = (offset[b] + skip[b] * next[b]) % m;
            while (taken[c]) {
                next[b]++;
                c = (offset[b] + skip[b] * next[b]) % m;
            }
            taken[c] = 1;
            table[c] = (uint16_t)b;
            next[b]++;
            filled++;
        }
        iteration++;
    }
    free(order), free(offset), free(skip), free(next), free(w), free(target), free(taken);
    return 0;
}

static void t_maglev_vector(const char *what, uint32_t m, const char *const *ids,
                            const uint32_t *weights, int n, const uint16_t *want)
{
    uint16_t *table = t_malloc(sizeof(uint16_t) * m);
    struct t_text got = { 0, 0, 0 };
    int rc;
    uint32_t i;

    rc = maglev_build(table, m, ids, weights, n);
    T_CHECK(rc == 0, "maglev_build(%s) returned %d", what, rc);
    if (rc == 0) {
        int same = 1;

        for (i = 0; i < m; i++) {
            t_text_printf(&got, " %u", table[i]);
            same &= table[i] == want[i];
        }
        T_CHECK(same, "maglev_build(%s): got%s", what, got.p);
    }
    free(got.p);
    free(table);
}

static void test_maglev_vectors(void)
{
    static const char *const addrs[] = { "127.0.0.1:90", "127.0.0.1:91", "127.0.0.1:92",
                                         "127.0.0.1:93", "127.0.0.1:94", "127.0.0.1:95" };
    static const char *const names[] = { "90", "91", "92", "93", "94", "95" };
    static const uint32_t ones[] = { 1, 1, 1, 1, 1, 1 };
    static const uint32_t w12[] = { 1, 2 };
    static const uint16_t want_addrs[] = { 2, 4, 0, 1, 5, 0, 3 };
    static const uint16_t want_names[] = { 2, 5, 0, 3, 4, 1, 0 };
    static const uint16_t want_w[] = { 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1 };

    t_maglev_vector("127.0.0.1:90..95, M=7", 7, addrs, ones, 6, want_addrs);
    t_maglev_vector("names 90..95, M=7", 7, names, ones, 6, want_names);
    t_maglev_vector("127.0.0.1:90 w1, :91 w2, M=17", 17, addrs, w12, 2, want_w);
}

static void test_maglev_args(void)
{
    static const char *const ids[] = { "a", "b", "c", "d", "e", "f", "g", "h" };
    static const uint32_t ones[] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    static const uint32_t zero[] = { 1, 0, 1 };
    uint16_t table[64];
    int i;

    T_CHECK(maglev_build(table, 8, ids, ones, 3) == -1, "maglev_build accepted m=8 (not prime)");
    T_CHECK(maglev_build(table, 9, ids, ones, 3) == -1, "maglev_build accepted m=9 (not prime)");
    T_CHECK(maglev_build(table, 1, ids, ones, 1) == -1, "maglev_build accepted m=1 (not prime)");
    T_CHECK(maglev_build(table, 0, ids, ones, 1) == -1, "maglev_build accepted m=0");
    T_CHECK(maglev_build(table, 5, ids, ones, 6) == -1, "maglev_build accepted m=5 < n=6");
    T_CHECK(maglev_build(table, 7, ids, ones, 8) == -1, "maglev_build accepted m=7 < n=8");
    T_CHECK(maglev_build(table, 7, ids, zero, 3) == -1, "maglev_build accepted a weight of 0");
    T_CHECK(maglev_build(table, 7, ids, ones, 0) == -1, "maglev_build accepted n=0");
    T_CHECK(maglev_build(table, 7, ids, ones, -1) == -1, "maglev_build accepted n=-1");

    /* m == n is allowed; equal weights then give each backend one slot. */
    T_CHECK(maglev_build(table, 7, ids, ones, 7) == 0, "maglev_build refused m == n == 7");
    {
        int seen[7] = { 0 }, ok = 1;

        for (i = 0; i < 7; i++) {
            if (table[i] < 7)
                seen[table[i]]++;
            else
                ok = 0;
        }
        for (i = 0; i < 7; i++)
            ok &= seen[i] == 1;
        T_CHECK(ok, "maglev_build(m == n == 7) did not give each backend one slot");
    }
    /* one backend owns everything */
    T_CHECK(maglev_build(table, 2, ids, ones, 1) == 0, "maglev_build refused one backend, m=2");
    T_CHECK(table[0] == 0 && table[1] == 0, "maglev_build(one backend) left foreign slots");
}

static void test_maglev_reference(void)
{
    static const char *const c3[] = { "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003" };
    static const uint32_t w3[] = { 1, 1, 1 };
    static const char *const c5[] = { "cache-e", "cache-a", "[::1]:7001", "cache-c", "10.0.0.2:6379" };
    static const uint32_t w5[] = { 1, 2, 3, 1, 5 };
    static const char *const c10[] = { "10.0.0.10:6379", "10.0.0.9:6379", "10.0.0.8:6379",
                                       "10.0.0.7:6379", "10.0.0.6:6379", "10.0.0.5:6379",
                                       "10.0.0.4:6379", "10.0.0.3:6379", "10.0.0.2:6379",
                                       "10.0.0.1:6379" };
    static const uint32_t w10[] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 100 };
    static const struct {
        const char *what;
        uint32_t m;
        const char *const *ids;
        const uint32_t *w;
        int n;
    } v[] = {
        { "3 equal, M=65537", 65537, c3, w3, 3 },
        { "5 weighted, M=65537", 65537, c5, w5, 5 },
        { "5 weighted, M=251", 251, c5, w5, 5 },
        { "10 reverse-sorted, one heavy, M=65537", 65537, c10, w10, 10 },
        { "10 reverse-sorted, one heavy, M=11", 11, c10, w10, 10 },
        { "3 equal, M=5000011", MAGLEV_MAX_SIZE, c3, w3, 3 },
    };
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint16_t *got = t_malloc(sizeof(uint16_t) * v[i].m);
        uint16_t *want = t_malloc(sizeof(uint16_t) * v[i].m);
        uint32_t s, diff = 0, first = 0;
        int rc = maglev_build(got, v[i].m, v[i].ids, v[i].w, v[i].n);

        ref_maglev(want, v[i].m, v[i].ids, v[i].w, v[i].n);
        T_CHECK(rc == 0, "maglev_build(%s) returned %d", v[i].what, rc);
        for (s = 0; rc == 0 && s < v[i].m; s++)
            if (got[s] != want[s] && diff++ == 0)
                first = s;
        T_CHECK(diff == 0, "maglev_build(%s) differs from the reference in %" PRIu32
                " slots, first slot %" PRIu32 ": got %u want %u", v[i].what, diff, first,
                diff ? (unsigned)got[first] : 0u, diff ? (unsigned)want[first] : 0u);
        free(got);
        free(want);
    }

    /* Shares follow weights: 1:2:3:1:5 of 65537 within 1%. */
    {
        uint16_t *t = t_malloc(sizeof(uint16_t) * 65537);
        uint32_t count[5] = { 0 }, s;
        int ok = 1, b;

        maglev_build(t, 65537, c5, w5, 5);
        for (s = 0; s < 65537; s++)
            if (t[s] < 5)
                count[t[s]]++;
        for (b = 0; b < 5; b++) {
            double share = count[b] / 65537.0, want = w5[b] / 12.0;

            ok &= share > want - 0.01 && share < want + 0.01;
        }
        T_CHECK(ok, "maglev shares %u %u %u %u %u do not follow weights 1 2 3 1 5",
                count[0], count[1], count[2], count[3], count[4]);
        free(t);
    }
}

/* A table built in slices (as a reload builds it, maglev_step with a small
 * budget) is the table built at once, slot for slot, whatever the slice. */
static void test_maglev_steps(void)
{
    static const char *const ids[] = {"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379",
                                      "10.0.0.4:6379"};
    static const uint32_t weights[] = {1, 2, 3, 1};
    static const uint64_t budgets[] = {1, 7, 1000, 65537};
    const uint32_t m = 65537;
    uint16_t *whole = malloc(sizeof *whole * m), *sliced = malloc(sizeof *sliced * m);
    size_t b;

    T_CHECK(maglev_build(whole, m, ids, weights, 4) == 0, "maglev_build failed");
    for (b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
        struct maglev_state st;
        uint64_t steps = 0;
        uint32_t s, diff = 0;
        T_CHECK(maglev_start(&st, sliced, m, ids, weights, 4) == 0, "maglev_start failed");
        while (!maglev_step(&st, budgets[b]))
            steps++;
        free(st.owned); /* the caller's once done */
        for (s = 0; s < m; s++)
            diff += whole[s] != sliced[s];
        T_CHECK(diff == 0, "budget %" PRIu64 ": %" PRIu32 " slots differ", budgets[b], diff);
        T_CHECK(budgets[b] >= 65537 || steps > 1, "budget %" PRIu64 ": done in one step",
                budgets[b]);
    }
    free(whole);
    free(sliced);
}

static void test_maglev_is_prime(void)
{
    static const struct {
        uint64_t n;
        int prime;
    } v[] = {
        { 0, 0 }, { 1, 0 }, { 2, 1 }, { 3, 1 }, { 4, 0 }, { 5, 1 }, { 7, 1 }, { 9, 0 },
        { 17, 1 }, { 25, 0 }, { 49, 0 }, { 251, 1 }, { 65536, 0 }, { 65537, 1 },
        { 1000001, 0 }, { 4999999, 1 }, { 5000011, 1 }, { 5000017, 0 }, { 5000077, 1 },
        { 5004169, 0 }, /* 2237^2 */
        { 2147483647, 1 },
    };
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        T_CHECK(maglev_is_prime(v[i].n) == v[i].prime, "maglev_is_prime(%" PRIu64 ") = %d",
                v[i].n, maglev_is_prime(v[i].n));
}

/* ------------------------------------------------------- request parser */

/* Feed DATA[0..LEN) to the request parser the way the proxy's read loop
 * does: bytes arrive in chunks ending at CUTS[0..NCUTS) and then LEN; the
 * parser is called whenever the current request's bytes have grown, with a
 * buffer (an exact-size heap copy) that starts at the request's first byte;
 * after RESP_OK the next request starts right after it with a fresh parser.
 * Returns a transcript: one line per framed request ("OK len=.. argc=..
 * args..."), then "ERROR" (parser error or unbalanced quotes) or "AGAIN"
 * (bytes left over) if so.  The caller frees it. */
static char *t_req_feed(const char *data, size_t len, const size_t *cuts, size_t ncuts,
                        const struct resp_limits *lim)
{
    enum { CAP = 4096 };
    static struct resp_arg argv[CAP];
    struct t_text t = { 0, 0, 0 };
    struct resp_req_parser p;
    size_t off = 0, fed = 0, step;

    resp_req_init(&p);
    for (step = 0; step <= ncuts; step++) {
        size_t avail = step < ncuts ? cuts[step] : len;

        while (off < avail && avail - off > fed) {
            char *buf = t_dup(data + off, avail - off);
            enum resp_result r = resp_req_parse(&p, buf, avail - off, lim);

            if (r == RESP_AGAIN) {
                fed = avail - off;
                free(buf);
                break;
            }
            if (r != RESP_OK) {
                if (r == RESP_ERROR && p.err)
                    t_text_printf(&t, "ERROR\n");
                else
                    t_text_printf(&t, "ERROR(result %d, err %s)\n", (int)r, p.err ? "set" : "NULL");
                free(buf);
                return t.p;
            } else {
                char *scratch = t_malloc(p.pos);
                int64_t n = resp_req_args(&p, buf, argv, CAP, scratch), i;

                if (n < 0) {
                    t_text_printf(&t, "ERROR\n");
                    free(scratch);
                    free(buf);
                    return t.p;
                }
                /* p.argc is the declared count for arrays; for inline
                 * requests only "0 when blank" is relied upon (the words are
                 * counted by resp_req_args, which handles quoting). */
                if (p.inline_req ? (p.argc == 0) == (n == 0) : p.argc == n)
                    t_text_printf(&t, "OK len=%zu argc=ok n=%" PRId64, p.pos, n);
                else
                    t_text_printf(&t, "OK len=%zu argc=%" PRId64 "(inline=%d) n=%" PRId64, p.pos,
                                  p.argc, p.inline_req, n);
                for (i = 0; i < n && i < CAP; i++) {
                    t_text_add(&t, " ", 1);
                    t_text_quote(&t, argv[i].p, argv[i].len);
                }
                t_text_add(&t, "\n", 1);
                off += p.pos;
                fed = 0;
                resp_req_init(&p);
                free(scratch);
                free(buf);
            }
        }
    }
    if (off < len)
        t_text_printf(&t, "AGAIN\n");
    if (!t.p)
        t_text_add(&t, "", 0);
    return t.p;
}

/* Feed whole, split in two at every byte, and one byte at a time (the last
 * two only for inputs of at most MAX_SPLIT bytes); every transcript must be
 * the same.  Returns the whole-input transcript (caller frees). */
static char *t_req_all_splits(const char *what, const char *data, size_t len,
                              const struct resp_limits *lim, size_t max_split)
{
    char *whole = t_req_feed(data, len, NULL, 0, lim);
    size_t k, *cuts;
    int bad = 0;

    if (len > max_split)
        return whole;
    for (k = 1; k < len && !bad; k++) {
        char *t = t_req_feed(data, len, &k, 1, lim);

        if (strcmp(t, whole) != 0) {
            bad = 1;
            fprintf(stderr, "  %s: split at %zu of %s:\n  whole:\n%s  split:\n%s", what, k,
                    t_show(data, len), whole, t);
        }
        free(t);
    }
    T_CHECK(!bad, "request parser: %s: splitting in two changes the result", what);

    cuts = t_malloc(sizeof(size_t) * len);
    for (k = 0; k < len; k++)
        cuts[k] = k + 1;
    {
        char *t = t_req_feed(data, len, cuts, len, lim);

        T_CHECK(strcmp(t, whole) == 0,
                "request parser: %s: byte-at-a-time changes the result:\n  whole:\n%s  bytes:\n%s",
                what, whole, t);
        free(t);
    }
    free(cuts);
    return whole;
}

/* Expected transcript line for a request of LEN bytes with the given args. */
static void t_req_expect(struct t_text *t, size_t len, const struct t_bytes *args, int n)
{
    int i;

    t_text_printf(t, "OK len=%zu argc=ok n=%d", len, n);
    for (i = 0; i < n; i++) {
        t_text_add(t, " ", 1);
        t_text_quote(t, args[i].p, args[i].len);
    }
    t_text_add(t, "\n", 1);
}

enum t_end { END_CLEAN, END_AGAIN, END_ERROR };

/* One request of a case: its bytes and the arguments it must yield. */
struct t_req {
    struct t_bytes raw;
    struct t_bytes args[6];
    int argc;
};

static void t_req_case(const char *what, const struct t_req *reqs, int nreqs,
                       struct t_bytes tail, enum t_end end, const struct resp_limits *lim)
{
    struct t_text in = { 0, 0, 0 }, want = { 0, 0, 0 };
    char *got;
    int i;

    for (i = 0; i < nreqs; i++) {
        t_text_add(&in, reqs[i].raw.p, reqs[i].raw.len);
        t_req_expect(&want, reqs[i].raw.len, reqs[i].args, reqs[i].argc);
    }
    t_text_add(&in, tail.p, tail.len);
    if (end == END_AGAIN)
        t_text_printf(&want, "AGAIN\n");
    else if (end == END_ERROR)
        t_text_printf(&want, "ERROR\n");
    if (!want.p)
        t_text_add(&want, "", 0);

    got = t_req_all_splits(what, in.p, in.len, lim, 4096);
    T_CHECK(strcmp(got, want.p) == 0, "request parser: %s: input %s\n  want:\n%s  got:\n%s",
            what, t_show(in.p, in.len), want.p, got);
    free(got);
    free(in.p);
    free(want.p);
}

static void test_req_parser(void)
{
    static const struct resp_limits lim = { 512ULL << 20, 64, 0, 0 };
    static const struct resp_limits small = { 64, 64, 0, 0 };
    static const struct t_bytes none = { "", 0 };
    /* Requests that frame and yield the listed arguments. */
    static const struct t_req ping = { T_S("*1\r\n$4\r\nPING\r\n"), { T_S("PING") }, 1 };
    static const struct t_req set = { T_S("*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"),
                                      { T_S("SET"), T_S("foo"), T_S("bar") }, 3 };
    static const struct t_req get_a = { T_S("*2\r\n$3\r\nGET\r\n$1\r\na\r\n"),
                                        { T_S("GET"), T_S("a") }, 2 };
    static const struct t_req get_b = { T_S("*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"),
                                        { T_S("GET"), T_S("b") }, 2 };
    static const struct t_req binary = {
        T_S("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8\r\na\r\n\0b\r\nc\r\n"),
        { T_S("SET"), T_S("k"), T_S("a\r\n\0b\r\nc") }, 3 };
    static const struct t_req two_empty = { T_S("*2\r\n$0\r\n\r\n$0\r\n\r\n"),
                                            { T_S(""), T_S("") }, 2 };
    static const struct t_req star0 = { T_S("*0\r\n"), { T_S("") }, 0 };
    static const struct t_req blank = { T_S("\r\n"), { T_S("") }, 0 };
    static const struct t_req spaces = { T_S("  \t \r\n"), { T_S("") }, 0 };
    static const struct t_req i_ping = { T_S("PING\r\n"), { T_S("PING") }, 1 };
    static const struct t_req i_set = { T_S("set foo bar\r\n"),
                                        { T_S("set"), T_S("foo"), T_S("bar") }, 3 };
    static const struct t_req i_ws = { T_S("  get \t  foo   \r\n"), { T_S("get"), T_S("foo") }, 2 };
    static const struct t_req i_quoted = { T_S("set \"a b\" 'c d' \"\\x41\\n\"\r\n"),
                                           { T_S("set"), T_S("a b"), T_S("c d"), T_S("A\n") }, 4 };
    static const struct t_req i_escapes = {
        T_S("echo \"q\\\"x\" 'it\\'s' \"\\\\\" \"\\t\\r\\a\\b\" \"\\xfF\\x00z\"\r\n"),
        { T_S("echo"), T_S("q\"x"), T_S("it's"), T_S("\\"), T_S("\t\r\a\b"), T_S("\xff\0z") }, 6 };
    static const struct t_req i_empty_arg = { T_S("set k \"\"\r\n"),
                                              { T_S("set"), T_S("k"), T_S("") }, 3 };
    static const struct t_req i_single_raw = { T_S("echo 'a\\nb'\r\n"),
                                               { T_S("echo"), T_S("a\\nb") }, 2 };
    static const struct t_req i_max = { /* "echo " and 59 digits: 64 bytes */
        T_S("echo 01234567890123456789012345678901234567890123456789012345678\r\n"),
        { T_S("echo"), T_S("01234567890123456789012345678901234567890123456789012345678") }, 2 };

    struct t_req r[4];

    t_req_case("PING", &ping, 1, none, END_CLEAN, &lim);
    t_req_case("SET foo bar", &set, 1, none, END_CLEAN, &lim);
    r[0] = get_a, r[1] = get_b, r[2] = set;
    t_req_case("pipeline of three", r, 3, none, END_CLEAN, &lim);
    t_req_case("binary payload with CRLF and NUL", &binary, 1, none, END_CLEAN, &lim);
    t_req_case("empty bulk strings", &two_empty, 1, none, END_CLEAN, &lim);
    t_req_case("*0", &star0, 1, none, END_CLEAN, &lim);
    t_req_case("blank line", &blank, 1, none, END_CLEAN, &lim);
    t_req_case("line of spaces", &spaces, 1, none, END_CLEAN, &lim);
    t_req_case("inline PING", &i_ping, 1, none, END_CLEAN, &lim);
    t_req_case("inline set", &i_set, 1, none, END_CLEAN, &lim);
    t_req_case("inline with extra whitespace", &i_ws, 1, none, END_CLEAN, &lim);
    t_req_case("inline with quotes", &i_quoted, 1, none, END_CLEAN, &lim);
    t_req_case("inline escapes", &i_escapes, 1, none, END_CLEAN, &lim);
    t_req_case("inline empty quoted argument", &i_empty_arg, 1, none, END_CLEAN, &lim);
    t_req_case("inline single quotes keep backslash-n", &i_single_raw, 1, none, END_CLEAN, &lim);
    t_req_case("inline of exactly max_inline bytes", &i_max, 1, none, END_CLEAN, &lim);
    r[0] = blank, r[1] = i_ping, r[2] = star0, r[3] = ping;
    t_req_case("blank, inline, *0, array pipelined", r, 4, none, END_CLEAN, &lim);
    r[0] = i_set, r[1] = binary, r[2] = i_quoted;
    t_req_case("inline and arrays pipelined", r, 3, none, END_CLEAN, &lim);
    t_req_case("request under max_request", &get_a, 1, none, END_CLEAN, &small);

    /* Incomplete: everything framed so far, then AGAIN. */
    {
        static const struct t_bytes partial_bulk = T_S("*2\r\n$3\r\nGET\r\n$10\r\n01234");
        static const struct t_bytes partial_inline = T_S("GET fo");
        static const struct t_bytes big_bulk = T_S("*2\r\n$3\r\nGET\r\n$100000000\r\nab");

        t_req_case("partial bulk", NULL, 0, partial_bulk, END_AGAIN, &lim);
        t_req_case("PING then a partial inline", &ping, 1, partial_inline, END_AGAIN, &lim);
        t_req_case("large declared bulk under the limit", NULL, 0, big_bulk, END_AGAIN, &lim);
    }

    /* Broken framing. */
    {
        static const struct {
            const char *what;
            struct t_bytes in;
        } bad[] = {
            { "negative array length", T_S("*-5\r\n") },
            { "non-numeric array length", T_S("*abc\r\n") },
            { "empty array length", T_S("*\r\n") },
            { "array length with junk", T_S("*1x\r\n$4\r\nPING\r\n") },
            { "overflowing array length", T_S("*99999999999999999999\r\n") },
            { "non-numeric bulk length", T_S("*1\r\n$abc\r\n") },
            { "empty bulk length", T_S("*1\r\n$\r\n") },
            { "negative bulk length", T_S("*1\r\n$-1\r\n") },
            { "minus zero bulk length (fuzz find)", T_S("*2\r\n$3\r\nGET\r\n$-0\r\n\r\n") },
            { "minus zero array length", T_S("*-0\r\n") },
            { "overflowing bulk length", T_S("*1\r\n$99999999999999999999\r\n") },
            { "bulk over max_request", T_S("*1\r\n$1000000000000\r\n") },
            { "second bulk over max_request", T_S("*2\r\n$3\r\nGET\r\n$600000000\r\n") },
            { "integer element", T_S("*1\r\n:1\r\n") },
            { "simple string element", T_S("*1\r\n+OK\r\n") },
            { "nested array", T_S("*1\r\n*1\r\n") },
            { "unbalanced double quote", T_S("set \"a b\r\n") },
            { "unbalanced single quote", T_S("set 'a\r\n") },
            { "closing quote followed by a letter", T_S("set \"a\"b\r\n") },
            { "inline one byte over max_inline", /* "echo " and 60 digits */
              T_S("echo 012345678901234567890123456789012345678901234567890123456789\r\n") },
            { "inline over max_inline without newline",
              T_S("echo 0123456789012345678901234567890123456789012345678901234567890123456789") },
        };
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            t_req_case(bad[i].what, NULL, 0, bad[i].in, END_ERROR, &lim);
        /* good requests first, then an error */
        t_req_case("PING then garbage", &i_ping, 1, bad[1].in, END_ERROR, &lim);
        r[0] = set, r[1] = i_ping;
        t_req_case("pipeline then unbalanced quote", r, 2, bad[15].in, END_ERROR, &lim);
        {
            static const struct t_bytes over = T_S("*2\r\n$3\r\nGET\r\n$100\r\n");

            t_req_case("bulk over a small max_request", NULL, 0, over, END_ERROR, &small);
        }
    }

    /* Behaviour not pinned by the contract: only the split-invariance is
     * checked (bare LF, leading zeros, junk after a bulk, huge counts). */
    {
        static const struct t_bytes loose[] = {
            T_S("PING\n"),
            T_S("set a b\nget a\n"),
            T_S("*01\r\n$4\r\nPING\r\n"),
            T_S("*1\r\n$04\r\nPING\r\n"),
            T_S("*1\r\n$3\r\nfooXY*1\r\n$4\r\nPING\r\n"),
            T_S("*1\n$4\r\nPING\r\n"),
            T_S("*1\r\n$4\nPING\r\n"),
            T_S("*1000000\r\n$1\r\na\r\n"),
            T_S("*+1\r\n$4\r\nPING\r\n"),
            T_S("set \"\\xZZ\"\r\n"),
            T_S("set a\r\r\n"),
            T_S("\0\0\0\r\n"),
        };
        size_t i;

        for (i = 0; i < sizeof(loose) / sizeof(loose[0]); i++) {
            free(t_req_all_splits("loose input", loose[i].p, loose[i].len, &lim, 4096));
            free(t_req_all_splits("loose input, small limits", loose[i].p, loose[i].len,
                                  &small, 4096));
        }
    }

    /* Many arguments, and one large bulk (split only at a few points). */
    {
        struct t_text in = { 0, 0, 0 }, want = { 0, 0, 0 };
        char *got;
        int i;

        t_text_printf(&in, "*300\r\n$4\r\nMGET\r\n");
        for (i = 1; i < 300; i++)
            t_text_printf(&in, "$%d\r\nk%d\r\n", i < 10 ? 2 : i < 100 ? 3 : 4, i);
        t_text_printf(&want, "OK len=%zu argc=ok n=300 \"MGET\"", in.len);
        for (i = 1; i < 300; i++)
            t_text_printf(&want, " \"k%d\"", i);
        t_text_printf(&want, "\n");
        got = t_req_all_splits("300 arguments", in.p, in.len, &lim, 1 << 20);
        T_CHECK(strcmp(got, want.p) == 0, "request parser: 300 arguments:\n  got %.200s", got);
        free(got), free(in.p), free(want.p);
    }
    {
        size_t n = 1 << 20, hdr, k;
        char *in = t_malloc(n + 64), *whole;
        struct resp_req_parser p;
        struct resp_arg argv[4];
        char *scratch;
        int ok = 1;

        hdr = (size_t)sprintf(in, "*2\r\n$4\r\nECHO\r\n$%zu\r\n", n);
        memset(in + hdr, 'x', n);
        memcpy(in + hdr + n, "\r\n", 2);
        whole = t_req_feed(in, hdr + n + 2, NULL, 0, &lim);
        for (k = 1; k < hdr + n + 2; k += k < 64 ? 1 : 65521) {
            char *t = t_req_feed(in, hdr + n + 2, &k, 1, &lim);

            ok &= strcmp(t, whole) == 0;
            free(t);
        }
        T_CHECK(ok, "request parser: 1 MiB bulk: splits change the result");
        resp_req_init(&p);
        ok = resp_req_parse(&p, in, hdr + n + 2, &lim) == RESP_OK && p.pos == hdr + n + 2;
        scratch = t_malloc(p.pos);
        ok = ok && resp_req_args(&p, in, argv, 4, scratch) == 2 && argv[1].len == n &&
             argv[1].p == in + hdr;
        T_CHECK(ok, "request parser: 1 MiB bulk not framed in place");
        free(scratch), free(whole), free(in);
    }
}

/* --------------------------------------------------------- reply parser */

/* Like t_req_feed, for replies: "OK len=N" per reply, then ERROR/AGAIN. */
static char *t_reply_feed(const char *data, size_t len, const size_t *cuts, size_t ncuts)
{
    struct t_text t = { 0, 0, 0 };
    struct resp_reply_parser p;
    size_t off = 0, fed = 0, step;

    resp_reply_init(&p);
    for (step = 0; step <= ncuts; step++) {
        size_t avail = step < ncuts ? cuts[step] : len;

        while (off < avail && avail - off > fed) {
            char *buf = t_dup(data + off, avail - off);
            enum resp_result r = resp_reply_parse(&p, buf, avail - off);

            free(buf);
            if (r == RESP_AGAIN) {
                fed = avail - off;
                break;
            }
            if (r != RESP_OK) {
                if (r == RESP_ERROR && p.err)
                    t_text_printf(&t, "ERROR\n");
                else
                    t_text_printf(&t, "ERROR(result %d, err %s)\n", (int)r, p.err ? "set" : "NULL");
                return t.p;
            }
            t_text_printf(&t, "OK len=%zu\n", p.pos);
            off += p.pos;
            fed = 0;
            resp_reply_init(&p);
        }
    }
    if (off < len)
        t_text_printf(&t, "AGAIN\n");
    if (!t.p)
        t_text_add(&t, "", 0);
    return t.p;
}

/* Replies REPLIES[0..N) concatenated with TAIL must give one OK line per
 * reply, then END; whole, split at every byte, and byte by byte. */
static void t_reply_case(const char *what, const struct t_bytes *replies, int n,
                         struct t_bytes tail, enum t_end end)
{
    struct t_text in = { 0, 0, 0 }, want = { 0, 0, 0 };
    char *whole, *t;
    size_t k, *cuts;
    int i, bad = 0;

    for (i = 0; i < n; i++) {
        t_text_add(&in, replies[i].p, replies[i].len);
        t_text_printf(&want, "OK len=%zu\n", replies[i].len);
    }
    t_text_add(&in, tail.p, tail.len);
    if (end == END_AGAIN)
        t_text_printf(&want, "AGAIN\n");
    else if (end == END_ERROR)
        t_text_printf(&want, "ERROR\n");

    whole = t_reply_feed(in.p, in.len, NULL, 0);
    T_CHECK(strcmp(whole, want.p) == 0, "reply parser: %s: input %s\n  want:\n%s  got:\n%s",
            what, t_show(in.p, in.len), want.p, whole);
    for (k = 1; k < in.len && !bad; k++) {
        t = t_reply_feed(in.p, in.len, &k, 1);
        if (strcmp(t, whole) != 0) {
            bad = 1;
            fprintf(stderr, "  %s: split at %zu of %s:\n  whole:\n%s  split:\n%s", what, k,
                    t_show(in.p, in.len), whole, t);
        }
        free(t);
    }
    T_CHECK(!bad, "reply parser: %s: splitting in two changes the result", what);
    cuts = t_malloc(sizeof(size_t) * in.len);
    for (k = 0; k < in.len; k++)
        cuts[k] = k + 1;
    t = t_reply_feed(in.p, in.len, cuts, in.len);
    T_CHECK(strcmp(t, whole) == 0, "reply parser: %s: byte-at-a-time changes the result:\n%s",
            what, t);
    free(t), free(cuts), free(whole), free(in.p), free(want.p);
}

static void test_reply_parser(void)
{
    static const struct t_bytes none = { "", 0 };
    char name[256];
    static const struct t_bytes good[] = {
        T_S("+OK\r\n"),
        T_S("+\r\n"),
        T_S("-ERR x\r\n"),
        T_S("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        T_S(":123\r\n"),
        T_S(":-5\r\n"),
        T_S(":0\r\n"),
        T_S("$-1\r\n"),
        T_S("$0\r\n\r\n"),
        T_S("$5\r\na\r\n\0b\r\n"),
        T_S("$3\r\nfoo\r\n"),
        T_S("*-1\r\n"),
        T_S("*0\r\n"),
        T_S("*2\r\n$3\r\nfoo\r\n$-1\r\n"),
        T_S("*2\r\n*0\r\n*-1\r\n"),
        /* three deep, mixed types: [[1, ["a", nil]], "foo", -E x] */
        T_S("*3\r\n*2\r\n:1\r\n*2\r\n+a\r\n$-1\r\n$3\r\nfoo\r\n-E x\r\n"),
        T_S("*1\r\n*1\r\n*1\r\n*0\r\n"),
        T_S("*3\r\n$1\r\n\r\r\n$1\r\n\n\r\n$2\r\n\r\n\r\n"),
        /* RESP3, as Redis 7.0 sends it to a HELLO 3 client */
        T_S("_\r\n"),
        T_S("#t\r\n"),
        T_S("#f\r\n"),
        T_S(",1.5\r\n"),
        T_S(",-inf\r\n"),
        T_S(",nan\r\n"),
        T_S(",3.0000000000000001e-05\r\n"),
        T_S("(3492890328409238509324850943850943825024385\r\n"),
        T_S("(-12\r\n"),
        T_S("=15\r\ntxt:Some string\r\n"),
        T_S("!21\r\nSYNTAX invalid syntax\r\n"),
        T_S("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n"),
        T_S("%0\r\n"),
        T_S("~3\r\n$1\r\na\r\n#t\r\n_\r\n"),
        T_S("~0\r\n"),
        T_S(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"),
        /* an attribute is framed with the reply it annotates */
        T_S("|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2\r\n:9\r\n"),
        T_S("|0\r\n:7\r\n"),
        /* HELLO 3's reply: a map holding an empty array */
        T_S("%2\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"),
        T_S("*2\r\n%1\r\n$1\r\nk\r\n~1\r\n,1\r\n|1\r\n+a\r\n+b\r\n_\r\n"),
    };
    size_t i, n = sizeof(good) / sizeof(good[0]);

    for (i = 0; i < n; i++)
        t_reply_case(t_name(name, sizeof(name), good[i].p, good[i].len), &good[i], 1, none, END_CLEAN);
    t_reply_case("every reply above pipelined", good, (int)n, none, END_CLEAN);

    {
        static const struct t_bytes again[] = {
            T_S("+OK"), T_S("+OK\r"), T_S("$3\r\nfoo"), T_S("$3\r\nfoo\r"), T_S("*2\r\n:1\r\n"),
            T_S("*1\r\n*1\r\n*1\r\n"), T_S(":12"),
            T_S("$4294967296\r\n"), /* RESP_MAX_REPLY_BULK itself is allowed */
            T_S("*2147483648\r\n"), /* RESP_MAX_REPLY_ARRAY itself is allowed */
            T_S("%1\r\n+k\r\n"), T_S("|1\r\n+k\r\n+v\r\n"), T_S("~2\r\n_\r\n"),
            T_S("=15\r\ntxt:Some"),
        };
        for (i = 0; i < sizeof(again) / sizeof(again[0]); i++)
            t_reply_case(t_name(name, sizeof(name), again[i].p, again[i].len), NULL, 0, again[i], END_AGAIN);
        t_reply_case("two replies then a partial one", good, 2, again[2], END_AGAIN);
    }
    {
        static const struct t_bytes bad[] = {
            T_S("?x\r\n"),
            T_S("$-5\r\n"),
            T_S("$-2\r\n"),
            T_S("*abc\r\n"),
            T_S("*-2\r\n"),
            T_S("$abc\r\n"),
            T_S("$\r\n"),
            T_S("$3\r\nfooXY"),
            T_S("$3\r\nfoo\rX"),
            T_S("$0\r\nXY"),
            T_S("*1\r\n$3\r\nfooXY"),
            T_S("*2\r\n:1\r\n?\r\n"),
            T_S("$99999999999999999999\r\n"),
            T_S("*99999999999999999999\r\n"),
            T_S("$4294967297\r\n"),
            T_S("*2147483649\r\n"),
            T_S("_x\r\n"),
            T_S("#x\r\n"),
            T_S("#\r\n"),
            T_S(",\r\n"),
            T_S(",1z\r\n"),
            T_S("(\r\n"),
            T_S("(1a\r\n"),
            T_S("=3\r\ntxt\r\n"), /* a verbatim string holds at least "txt:" */
            T_S("=-1\r\n"),
            T_S("!-1\r\n"),
            T_S("%-1\r\n"),
            T_S("~-1\r\n"),
            T_S("|-1\r\n"),
            T_S("%1073741824x\r\n"),
            T_S("$?\r\n"), /* streamed types: Redis never sends them */
            T_S("*?\r\n"),
            T_S("%2147483649\r\n"),
        };
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            t_reply_case(t_name(name, sizeof(name), bad[i].p, bad[i].len), NULL, 0, bad[i], END_ERROR);
        t_reply_case("three replies then garbage", good, 3, bad[0], END_ERROR);
    }
}

/* ---------------------------------------------------------- histograms */

/* splitmix64: a small deterministic generator for the random sweeps. */
static uint64_t t_rand_state = 0x9e3779b97f4a7c15ULL;

static uint64_t t_rand(void)
{
    uint64_t z = (t_rand_state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A random value of random magnitude: uniform over bit lengths 0..BITS. */
static uint64_t t_rand_mag(unsigned bits)
{
    unsigned len = (unsigned)(t_rand() % (bits + 1));

    return len == 0 ? 0 : t_rand() >> (64 - len);
}

static int t_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The bucket of V as the histogram comment describes it, written
 * independently: exact below
 * 32, else the 32 sub-buckets of V's power of two; one last bucket from
 * 2^HIST_MAX_BITS on. */
static unsigned ref_hist_index(uint64_t v)
{
    unsigned msb = 0;

    if (v < 32)
        return (unsigned)v;
    if (v >= 1ULL << HIST_MAX_BITS)
        return HIST_BUCKETS - 1;
    while ((v >> msb) > 1)
        msb++;
    return 32 + (msb - 5) * 32 + (unsigned)(v / (1ULL << (msb - 5)) - 32);
}

static void test_hist_constants(void)
{
    T_CHECK(HIST_SUB == 32, "HIST_SUB %u, want 32", HIST_SUB);
    T_CHECK(HIST_SUB == 1u << HIST_SUB_BITS, "HIST_SUB is 2^HIST_SUB_BITS");
    T_CHECK(HIST_MAX_BITS > HIST_SUB_BITS && HIST_MAX_BITS < 64, "HIST_MAX_BITS %d in range",
            HIST_MAX_BITS);
    /* 32 exact buckets, 32 per power of two from 2^5 to 2^(MAX-1), and at least one for
     * the samples of 2^MAX_BITS and above. */
    T_CHECK(HIST_BUCKETS >= 32 + (HIST_MAX_BITS - 5) * 32, "HIST_BUCKETS %d too small",
            (int)HIST_BUCKETS);
}

static void test_hist_buckets(void)
{
    unsigned i, k, bad;
    uint64_t v, low, width, prev_end = 0;

    /* Below 32, one bucket per value. */
    for (bad = 0, v = 0; v < 32; v++) {
        low = hist_low(hist_index(v), &width);
        bad += hist_index(v) != v || low != v || width != 1;
    }
    T_CHECK(bad == 0, "%u of the values 0..31 not in their own exact bucket", bad);

    /* Known indices: 32..63 are still exact, 64 and 65 share a bucket of width 2. */
    T_CHECK(hist_index(32) == 32 && hist_index(63) == 63, "32 and 63: %u %u", hist_index(32),
            hist_index(63));
    T_CHECK(hist_index(64) == 64 && hist_index(65) == 64 && hist_index(66) == 65,
            "64 65 66: %u %u %u", hist_index(64), hist_index(65), hist_index(66));
    T_CHECK(hist_index(1000) == 32 + 4 * 32 + 30, "hist_index(1000) = %u", hist_index(1000));

    /* Every bucket: contiguous with the previous, at most 1/32 of its low edge wide,
     * and both its ends map back to it. */
    for (bad = 0, i = 0; i < HIST_BUCKETS; i++) {
        low = hist_low(i, &width);
        if (low != prev_end || width == 0 || (i >= 32 && width * 32 > low) ||
            hist_index(low) != i || hist_index(low + width - 1) != i) {
            if (bad++ < 5)
                T_CHECK(0, "bucket %u: low %" PRIu64 " width %" PRIu64 " (previous ended at %"
                        PRIu64 "), index(low)=%u index(end)=%u", i, low, width, prev_end,
                        hist_index(low), hist_index(low + width - 1));
        }
        prev_end = low + width;
    }
    T_CHECK(bad == 0, "%u buckets with a bad edge or width", bad);
    T_CHECK(prev_end >= 1ULL << HIST_MAX_BITS, "the buckets end at %" PRIu64 ", before 2^%d",
            prev_end, HIST_MAX_BITS);

    /* Every power of two is the low edge of its bucket (Prometheus le = 2^k - 1 is exact),
     * 2^HIST_MAX_BITS included: it starts the bucket of the larger samples. */
    for (k = 0; k <= HIST_MAX_BITS; k++) {
        low = hist_low(hist_index(1ULL << k), &width);
        T_CHECK(low == 1ULL << k, "2^%u is in the bucket starting at %" PRIu64, k, low);
    }

    /* Values from 2^HIST_MAX_BITS on all land in the last bucket. */
    for (bad = 0, k = HIST_MAX_BITS; k < 64; k++) {
        bad += hist_index(1ULL << k) != HIST_BUCKETS - 1;
        bad += hist_index((1ULL << k) + (t_rand() >> (64 - k))) != HIST_BUCKETS - 1;
    }
    bad += hist_index(UINT64_MAX) != HIST_BUCKETS - 1;
    T_CHECK(bad == 0, "%u values >= 2^%d outside the last bucket", bad, HIST_MAX_BITS);

    /* A sweep of 0..2^20: monotonic, in range, in the bucket the reference says, and
     * inside its bucket's [low, low + width). */
    {
        unsigned prev = 0, nonmono = 0, range = 0, ref = 0, inside = 0;
        for (v = 0; v <= 1u << 20; v++) {
            unsigned idx = hist_index(v);
            nonmono += idx < prev;
            range += idx >= HIST_BUCKETS;
            ref += idx != ref_hist_index(v);
            low = hist_low(idx < HIST_BUCKETS ? idx : 0, &width);
            inside += v < low || v >= low + width;
            prev = idx;
        }
        T_CHECK(nonmono == 0, "hist_index decreases %u times over 0..2^20", nonmono);
        T_CHECK(range == 0, "hist_index >= HIST_BUCKETS %u times over 0..2^20", range);
        T_CHECK(ref == 0, "hist_index differs from the reference %u times over 0..2^20", ref);
        T_CHECK(inside == 0, "%u values of 0..2^20 outside [low, low+width) of their bucket",
                inside);
    }

    /* Random 64-bit values of every magnitude, sorted: the indices must be sorted too. */
    {
        enum { N = 20000 };
        uint64_t *vals = t_malloc(sizeof *vals * N);
        unsigned n, nonmono = 0, range = 0, inside = 0, ref = 0;
        for (n = 0; n < N; n++)
            vals[n] = t_rand_mag(64);
        qsort(vals, N, sizeof *vals, t_cmp_u64);
        for (n = 0; n < N; n++) {
            unsigned idx = hist_index(vals[n]);
            range += idx >= HIST_BUCKETS;
            nonmono += n > 0 && idx < hist_index(vals[n - 1]);
            if (vals[n] < 1ULL << HIST_MAX_BITS) {
                low = hist_low(idx < HIST_BUCKETS ? idx : 0, &width);
                inside += vals[n] < low || vals[n] >= low + width;
                ref += idx != ref_hist_index(vals[n]);
            }
        }
        T_CHECK(nonmono == 0, "hist_index not monotonic over random values (%u)", nonmono);
        T_CHECK(range == 0, "hist_index >= HIST_BUCKETS for %u random values", range);
        T_CHECK(inside == 0, "%u random values outside their bucket", inside);
        T_CHECK(ref == 0, "%u random values in another bucket than the reference's", ref);
        free(vals);
    }
}

static void test_hist_counts(void)
{
    enum { N = 5000 };
    static struct hist h;
    uint64_t *vals = t_malloc(sizeof *vals * N);
    uint64_t sum = 0, max = 0, bucketed = 0;
    unsigned n, k, i;

    memset(&h, 0, sizeof h);
    for (n = 0; n < N; n++) {
        if (n % 10 == 0) /* just below and at every power of two, the top ones included */
            vals[n] = (1ULL << (n / 10 % (HIST_MAX_BITS + 3))) - (n / 10 % 2);
        else if (n % 10 == 1) /* the top sub-bucket below 2^HIST_MAX_BITS */
            vals[n] = (1ULL << HIST_MAX_BITS) - 1 - t_rand() % (1ULL << (HIST_MAX_BITS - 6));
        else
            vals[n] = t_rand_mag(HIST_MAX_BITS + 3);
        hist_add(&h, vals[n]);
        sum += vals[n];
        if (vals[n] > max)
            max = vals[n];
    }
    T_CHECK(h.count == N, "count %" PRIu64 ", want %d", h.count, (int)N);
    T_CHECK(h.sum == sum, "sum %" PRIu64 ", want %" PRIu64, h.sum, sum);
    T_CHECK(h.max == max, "max %" PRIu64 ", want %" PRIu64, h.max, max);
    for (i = 0; i < HIST_BUCKETS; i++)
        bucketed += h.b[i];
    T_CHECK(bucketed == N, "buckets hold %" PRIu64 " samples, want %d", bucketed, (int)N);

    for (k = 0; k <= HIST_MAX_BITS; k++) {
        uint64_t want = 0;
        for (n = 0; n < N; n++)
            want += vals[n] < 1ULL << k;
        T_CHECK(hist_below_pow2(&h, k) == want, "hist_below_pow2(k=%u) = %" PRIu64
                ", %" PRIu64 " samples are below 2^%u", k, hist_below_pow2(&h, k), want, k);
    }
    free(vals);

    /* An empty histogram counts nothing below any power. */
    memset(&h, 0, sizeof h);
    for (k = 0; k <= HIST_MAX_BITS; k++)
        T_CHECK(hist_below_pow2(&h, k) == 0, "empty histogram: below 2^%u is %" PRIu64, k,
                hist_below_pow2(&h, k));
}

static void t_hist_quantiles(const char *what, const uint64_t *vals, unsigned n)
{
    static const unsigned permille[] = {0, 1, 10, 100, 250, 500, 750, 900, 950, 990, 999, 1000};
    static struct hist h;
    uint64_t *sorted = t_malloc(sizeof *sorted * n);
    unsigned i;

    memset(&h, 0, sizeof h);
    for (i = 0; i < n; i++) {
        hist_add(&h, vals[i]);
        sorted[i] = vals[i];
    }
    qsort(sorted, n, sizeof *sorted, t_cmp_u64);
    for (i = 0; i < ARRAY_LEN(permille); i++) {
        uint64_t rank = ((uint64_t)permille[i] * n + 999) / 1000; /* ceil(q n) */
        uint64_t x, got = hist_quantile(&h, permille[i] / 1000.0);
        uint64_t diff;
        if (rank < 1)
            rank = 1;
        x = sorted[rank - 1];
        diff = got > x ? got - x : x - got;
        T_CHECK(got <= h.max, "%s: q=%u/1000 gives %" PRIu64 ", above the max %" PRIu64, what,
                permille[i], got, h.max);
        if (x < 32)
            T_CHECK(got == x, "%s: q=%u/1000 gives %" PRIu64 ", the exact value is %" PRIu64,
                    what, permille[i], got, x);
        else
            T_CHECK(diff * 32 <= x, "%s: q=%u/1000 gives %" PRIu64 ", more than 1/32 from %"
                    PRIu64, what, permille[i], got, x);
    }
    free(sorted);
}

static void test_hist_quantile(void)
{
    enum { N = 10007 };
    static struct hist h;
    uint64_t *vals = t_malloc(sizeof *vals * N);
    unsigned i;

    memset(&h, 0, sizeof h);
    T_CHECK(hist_quantile(&h, 0.5) == 0 && hist_quantile(&h, 0.0) == 0 &&
                hist_quantile(&h, 1.0) == 0, "empty histogram: quantiles not 0");

    for (i = 0; i < N; i++)
        vals[i] = t_rand_mag(HIST_MAX_BITS - 1);
    t_hist_quantiles("random magnitudes", vals, N);
    for (i = 0; i < N; i++)
        vals[i] = 1000 + t_rand() % 9000; /* a typical latency band */
    t_hist_quantiles("1000..9999", vals, N);
    for (i = 0; i < N; i++)
        vals[i] = t_rand() % 32;
    t_hist_quantiles("exact range", vals, N);
    vals[0] = 7;
    t_hist_quantiles("one small sample", vals, 1);
    vals[0] = 123457;
    t_hist_quantiles("one large sample", vals, 1);
    vals[0] = 100, vals[1] = 1000000;
    t_hist_quantiles("two far apart", vals, 2);

    /* The middle of a bucket is never reported above the largest sample. */
    memset(&h, 0, sizeof h);
    hist_add(&h, 64); /* bucket [64, 66) */
    T_CHECK(hist_quantile(&h, 0.5) == 64, "single 64: median %" PRIu64, hist_quantile(&h, 0.5));
    memset(&h, 0, sizeof h);
    hist_add(&h, 1ULL << 40); /* far beyond the last bucket's low edge */
    T_CHECK(hist_quantile(&h, 1.0) <= 1ULL << 40, "huge sample: quantile above the max");
    free(vals);
}

/* ------------------------------------------------------------ split merge */

/* Three backends for the children to point at (only cfg.id and refs are used). */
static struct backend t_backends[3];

static void t_backends_init(void)
{
    static const char *const ids[] = {"b0", "b1", "b2"};
    unsigned i;

    memset(t_backends, 0, sizeof t_backends);
    for (i = 0; i < ARRAY_LEN(t_backends); i++)
        t_backends[i].cfg.id = ids[i];
}

/* A split parent for merge M with NCHILD children, none answered yet; KEYMAP
 * (NKEYS entries) for MGET. */
static struct req *t_parent(uint8_t merge, uint32_t nchild, const uint32_t *keymap,
                            uint32_t nkeys)
{
    struct req *p = req_new();
    uint32_t i;

    p->role = REQ_PARENT;
    p->merge = merge;
    p->nchild = nchild;
    p->pending = nchild;
    p->child = t_malloc(sizeof *p->child * nchild);
    for (i = 0; i < nchild; i++) {
        struct req *ch = req_new();
        ch->role = REQ_CHILD;
        ch->parent = p;
        req_set_backend(ch, &t_backends[i % ARRAY_LEN(t_backends)]);
        p->child[i] = ch;
    }
    if (keymap) {
        p->keymap = t_malloc(sizeof *p->keymap * nkeys);
        memcpy(p->keymap, keymap, sizeof *p->keymap * nkeys);
        p->nkeys = nkeys;
    }
    return p;
}

/* Child I of P answered the N bytes REPLY; a few junk bytes are consumed first so
 * the reply does not start at offset 0 of its buffer. */
static void t_child_reply(struct req *p, uint32_t i, const char *reply, size_t n,
                          int proxy_error)
{
    struct req *ch = p->child[i];

    buf_append(&ch->reply, "JUNK", 4);
    buf_append(&ch->reply, reply, n);
    buf_consume(&ch->reply, 4);
    ch->done = 1;
    ch->proxy_error = (uint8_t)proxy_error;
    p->pending--;
}

/* Merge P, compare its reply with WANT[0..WANTLEN), check the children were
 * released, and free P. */
static void t_merge_expect(const char *what, struct req *p, const char *want, size_t wantlen)
{
    size_t len;
    unsigned i;

    complete_merge(p);
    len = buf_len(&p->reply);
    T_CHECK(len == wantlen && !memcmp(p->reply.data + p->reply.r, want, wantlen),
            "%s: merged %s, want %s", what, t_show(p->reply.data + p->reply.r, len),
            t_show(want, wantlen));
    T_CHECK(p->child == NULL && p->nchild == 0, "%s: children not released", what);
    for (i = 0; i < ARRAY_LEN(t_backends); i++)
        T_CHECK(t_backends[i].refs == 0, "%s: backend %s keeps %" PRIu64 " refs", what,
                t_backends[i].cfg.id, t_backends[i].refs);
    req_free(p);
}

#define T_REPLY(p, i, lit) t_child_reply((p), (i), lit, sizeof(lit) - 1, 0)
#define T_MERGE(what, p, lit) t_merge_expect((what), (p), lit, sizeof(lit) - 1)

static void test_merge_mget(void)
{
    /* Keys 0..4: key 0 and 3 on child 1, keys 1 and 4 on child 0, key 2 on child 2. */
    static const uint32_t keymap[] = {1, 0, 2, 1, 0};
    struct req *p;

    t_backends_init();

    p = t_parent(MERGE_ARRAY, 3, keymap, 5);
    T_REPLY(p, 0, "*2\r\n$-1\r\n$0\r\n\r\n");          /* key 1: nil, key 4: "" */
    T_REPLY(p, 1, "*2\r\n$2\r\nv0\r\n$-1\r\n");        /* key 0: "v0", key 3: nil */
    T_REPLY(p, 2, "*1\r\n$7\r\na\r\n\0b\r\n\r\n");     /* key 2: binary, CRLF and NUL */
    T_MERGE("MGET 5 keys over 3 children", p,
            "*5\r\n$2\r\nv0\r\n$-1\r\n$7\r\na\r\n\0b\r\n\r\n$-1\r\n$0\r\n\r\n");

    p = t_parent(MERGE_ARRAY, 3, keymap, 5); /* all nil */
    T_REPLY(p, 0, "*2\r\n$-1\r\n$-1\r\n");
    T_REPLY(p, 1, "*2\r\n$-1\r\n$-1\r\n");
    T_REPLY(p, 2, "*1\r\n$-1\r\n");
    T_MERGE("MGET all nil", p, "*5\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n");

    {
        static const uint32_t one[] = {0};
        p = t_parent(MERGE_ARRAY, 1, one, 1);
        T_REPLY(p, 0, "*1\r\n$3\r\nabc\r\n");
        T_MERGE("MGET one key", p, "*1\r\n$3\r\nabc\r\n");
    }

    p = t_parent(MERGE_ARRAY, 3, keymap, 5);
    T_REPLY(p, 0, "*1\r\n$-1\r\n"); /* two keys map to child 0 */
    T_REPLY(p, 1, "*2\r\n$2\r\nv0\r\n$-1\r\n");
    T_REPLY(p, 2, "*1\r\n$1\r\nx\r\n");
    T_MERGE("MGET short child array", p, "-ERR backend b0 sent a short reply\r\n");

    p = t_parent(MERGE_ARRAY, 3, keymap, 5);
    T_REPLY(p, 0, "*2\r\n$-1\r\n$0\r\n\r\n");
    T_REPLY(p, 1, "*2\r\n$2\r\nv0\r\n$5\r\nab\r\n"); /* its last element is cut */
    T_REPLY(p, 2, "*1\r\n$1\r\nx\r\n");
    T_MERGE("MGET truncated element", p, "-ERR backend b1 sent a short reply\r\n");

    p = t_parent(MERGE_ARRAY, 3, keymap, 5);
    T_REPLY(p, 0, "*2\r\n$-1\r\n$0\r\n\r\n");
    T_REPLY(p, 1, ":2\r\n");
    T_REPLY(p, 2, "*1\r\n$1\r\nx\r\n");
    T_MERGE("MGET child sent an integer", p, "-ERR backend b1 sent an unexpected reply\r\n");

    p = t_parent(MERGE_ARRAY, 3, keymap, 5);
    T_REPLY(p, 0, "*2\r\n$-1\r\n$0\r\n\r\n");
    T_REPLY(p, 1, "*2\r\n$2\r\nv0\r\n$-1\r\n");
    T_REPLY(p, 2, "-WRONGTYPE Operation against a key\r\n");
    T_MERGE("MGET child error", p,
            "-ERR backend b2 failed: WRONGTYPE Operation against a key\r\n");
}

static void test_merge_ok_sum(void)
{
    struct req *p;

    t_backends_init();

    p = t_parent(MERGE_OK, 3, NULL, 0);
    T_REPLY(p, 0, "+OK\r\n");
    T_REPLY(p, 1, "+OK\r\n");
    T_REPLY(p, 2, "+OK\r\n");
    T_MERGE("MSET all OK", p, "+OK\r\n");

    p = t_parent(MERGE_OK, 3, NULL, 0);
    T_REPLY(p, 0, "+OK\r\n");
    T_REPLY(p, 1, "-OOM command not allowed\r\n");
    T_REPLY(p, 2, "+OK\r\n");
    T_MERGE("MSET one error", p, "-ERR backend b1 failed: OOM command not allowed\r\n");

    p = t_parent(MERGE_OK, 3, NULL, 0);
    T_REPLY(p, 0, "+OK\r\n");
    T_REPLY(p, 1, "+OK\r\n");
    T_REPLY(p, 2, "+QUEUED\r\n");
    T_MERGE("MSET not OK", p, "-ERR backend b2 sent an unexpected reply\r\n");

    p = t_parent(MERGE_OK, 2, NULL, 0);
    T_REPLY(p, 0, "+OK\r\n");
    T_REPLY(p, 1, ":1\r\n");
    T_MERGE("MSET integer", p, "-ERR backend b1 sent an unexpected reply\r\n");

    /* The first failing child in child order names the failure. */
    p = t_parent(MERGE_OK, 3, NULL, 0);
    T_REPLY(p, 0, "+OK\r\n");
    T_REPLY(p, 1, "-ERR first\r\n");
    T_REPLY(p, 2, "-ERR second\r\n");
    T_MERGE("MSET two errors", p, "-ERR backend b1 failed: ERR first (also failed: b2)\r\n");

    /* Every backend refused alike: that is what one Redis would say, as it is. */
    p = t_parent(MERGE_OK, 2, NULL, 0);
    T_REPLY(p, 0, "-ERR Library 'lib' already exists\r\n");
    T_REPLY(p, 1, "-ERR Library 'lib' already exists\r\n");
    T_MERGE("same error everywhere", p, "-ERR Library 'lib' already exists\r\n");

    /* An error the proxy made for a child (timeout, connection lost) goes through as is. */
    p = t_parent(MERGE_OK, 3, NULL, 0);
    T_REPLY(p, 0, "+OK\r\n");
    t_child_reply(p, 1, "+OK\r\n", 5, 0);
    {
        static const char err[] = "-ERR backend b2 timed out after 1000 ms\r\n";
        t_child_reply(p, 2, err, sizeof err - 1, 1);
        T_MERGE("MSET proxy error passes through", p,
                "-ERR backend b2 timed out after 1000 ms\r\n");
    }

    p = t_parent(MERGE_SUM, 3, NULL, 0);
    {
        static const char err[] = "-ERR backend b0 connection lost\r\n";
        t_child_reply(p, 0, err, sizeof err - 1, 1);
    }
    T_REPLY(p, 1, ":1\r\n");
    T_REPLY(p, 2, "-ERR real\r\n");
    T_MERGE("SUM proxy error first", p, "-ERR backend b0 connection lost (also failed: b2)\r\n");

    p = t_parent(MERGE_SUM, 3, NULL, 0);
    T_REPLY(p, 0, ":3\r\n");
    T_REPLY(p, 1, ":0\r\n");
    T_REPLY(p, 2, ":1000000000000\r\n");
    T_MERGE("SUM", p, ":1000000000003\r\n");

    p = t_parent(MERGE_SUM, 3, NULL, 0);
    T_REPLY(p, 0, ":-7\r\n");
    T_REPLY(p, 1, ":2\r\n");
    T_REPLY(p, 2, ":-1\r\n");
    T_MERGE("SUM with negatives", p, ":-6\r\n");

    p = t_parent(MERGE_SUM, 2, NULL, 0);
    T_REPLY(p, 0, ":0\r\n");
    T_REPLY(p, 1, ":0\r\n");
    T_MERGE("SUM of zeros", p, ":0\r\n");

    p = t_parent(MERGE_SUM, 3, NULL, 0);
    T_REPLY(p, 0, ":3\r\n");
    T_REPLY(p, 1, "$1\r\n3\r\n");
    T_REPLY(p, 2, ":1\r\n");
    T_MERGE("SUM bulk reply", p, "-ERR backend b1 sent an unexpected reply\r\n");

    p = t_parent(MERGE_SUM, 3, NULL, 0);
    T_REPLY(p, 0, ":3\r\n");
    T_REPLY(p, 1, ":2\r\n");
    T_REPLY(p, 2, ":12x\r\n");
    T_MERGE("SUM non-integer", p, "-ERR backend b2 sent an unexpected reply\r\n");

    p = t_parent(MERGE_SUM, 2, NULL, 0);
    T_REPLY(p, 0, "+OK\r\n");
    T_REPLY(p, 1, ":2\r\n");
    T_MERGE("SUM status reply", p, "-ERR backend b0 sent an unexpected reply\r\n");

    p = t_parent(MERGE_SUM, 2, NULL, 0);
    T_REPLY(p, 0, ":1\r\n");
    T_REPLY(p, 1, "-NOPERM this user has no permissions\r\n");
    T_MERGE("SUM child error", p,
            "-ERR backend b1 failed: NOPERM this user has no permissions\r\n");

    /* A long backend error is cut to its first 200 bytes. */
    {
        char longerr[400], want[400];
        int n;
        p = t_parent(MERGE_SUM, 2, NULL, 0);
        memset(longerr, 'x', sizeof longerr);
        longerr[0] = '-';
        memcpy(longerr + 301, "\r\n", 2); /* 300 bytes of message */
        t_child_reply(p, 0, longerr, 303, 0);
        T_REPLY(p, 1, ":1\r\n");
        n = snprintf(want, sizeof want, "-ERR backend b0 failed: %.200s\r\n", longerr + 1);
        t_merge_expect("SUM long error", p, want, (size_t)n);
    }
}

/* Make SCAN parent P one that scanned backend AT of 3, topology tag 5. */
static void t_scan_parent(struct req *p, uint32_t at)
{
    p->scan_at = at;
    p->scan_nb = 3;
    p->scan_tag = 5;
}

/* The merges of commands sent to every backend: KEYS, SCRIPT EXISTS, SCRIPT
 * KILL, LASTSAVE, SLOWLOG GET, RANDOMKEY, and SCAN's cursor arithmetic. */
static void test_merge_fanout(void)
{
    struct req *p;

    p = t_parent(MERGE_CONCAT, 3, NULL, 0);
    T_REPLY(p, 0, "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    T_REPLY(p, 1, "*0\r\n");
    T_REPLY(p, 2, "*1\r\n$1\r\nc\r\n");
    T_MERGE("KEYS", p, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");

    p = t_parent(MERGE_AND, 2, NULL, 0);
    T_REPLY(p, 0, "*3\r\n:1\r\n:1\r\n:0\r\n");
    T_REPLY(p, 1, "*3\r\n:1\r\n:0\r\n:0\r\n");
    T_MERGE("SCRIPT EXISTS", p, "*3\r\n:1\r\n:0\r\n:0\r\n");

    p = t_parent(MERGE_AND, 2, NULL, 0);
    T_REPLY(p, 0, "*1\r\n:1\r\n");
    T_REPLY(p, 1, "*2\r\n:1\r\n:1\r\n");
    T_MERGE("SCRIPT EXISTS, counts differ", p, "-ERR backend b1 sent an unexpected reply\r\n");

    p = t_parent(MERGE_ANYOK, 2, NULL, 0);
    T_REPLY(p, 0, "-NOTBUSY No scripts in execution right now.\r\n");
    T_REPLY(p, 1, "+OK\r\n");
    T_MERGE("SCRIPT KILL, one killed", p, "+OK\r\n");

    p = t_parent(MERGE_ANYOK, 2, NULL, 0);
    T_REPLY(p, 0, "-NOTBUSY No scripts in execution right now.\r\n");
    T_REPLY(p, 1, "-NOTBUSY No scripts in execution right now.\r\n");
    T_MERGE("SCRIPT KILL, none", p, "-NOTBUSY No scripts in execution right now.\r\n");

    p = t_parent(MERGE_MIN, 3, NULL, 0);
    T_REPLY(p, 0, ":1700000005\r\n");
    T_REPLY(p, 1, ":1700000001\r\n");
    T_REPLY(p, 2, ":1700000009\r\n");
    T_MERGE("LASTSAVE", p, ":1700000001\r\n");

    p = t_parent(MERGE_SLOWLOG, 2, NULL, 0);
    T_REPLY(p, 0, "*1\r\n*6\r\n:7\r\n:1700000000\r\n:12\r\n*1\r\n$3\r\nGET\r\n$9\r\n1.2.3.4:5\r\n$0\r\n\r\n");
    T_REPLY(p, 1, "*0\r\n");
    T_MERGE("SLOWLOG GET", p,
            "*1\r\n*6\r\n:7\r\n:1700000000\r\n:12\r\n*1\r\n$3\r\nGET\r\n$9\r\n1.2.3.4:5\r\n$2\r\nb0\r\n");

    p = t_parent(MERGE_RANDOM, 3, NULL, 0);
    T_REPLY(p, 0, "$-1\r\n");
    T_REPLY(p, 1, "$3\r\nkey\r\n");
    T_REPLY(p, 2, "$-1\r\n");
    T_MERGE("RANDOMKEY, one has keys", p, "$3\r\nkey\r\n");

    p = t_parent(MERGE_RANDOM, 2, NULL, 0);
    p->proto = 3;
    T_REPLY(p, 0, "_\r\n");
    T_REPLY(p, 1, "_\r\n");
    T_MERGE("RANDOMKEY, RESP3, empty", p, "_\r\n");

    /* cursor = (backend cursor * backends + backend index) * 16 + tag */
    p = t_parent(MERGE_SCAN, 1, NULL, 0);
    t_scan_parent(p, 1);
    T_REPLY(p, 0, "*2\r\n$2\r\n17\r\n*1\r\n$1\r\nk\r\n");
    T_MERGE("SCAN mid-backend", p, "*2\r\n$3\r\n837\r\n*1\r\n$1\r\nk\r\n");

    p = t_parent(MERGE_SCAN, 1, NULL, 0);
    t_scan_parent(p, 1);
    T_REPLY(p, 0, "*2\r\n$1\r\n0\r\n*0\r\n");
    T_MERGE("SCAN backend done: the next one's start", p, "*2\r\n$2\r\n37\r\n*0\r\n");

    p = t_parent(MERGE_SCAN, 1, NULL, 0);
    t_scan_parent(p, 2);
    T_REPLY(p, 0, "*2\r\n$1\r\n0\r\n*0\r\n");
    T_MERGE("SCAN last backend done", p, "*2\r\n$1\r\n0\r\n*0\r\n");

    p = t_parent(MERGE_SCAN, 1, NULL, 0);
    t_scan_parent(p, 0);
    T_REPLY(p, 0, "*2\r\n$20\r\n18446744073709551615\r\n*0\r\n");
    T_MERGE("SCAN cursor too large", p, "-ERR backend b0 cursor too large for the proxy\r\n");

    p = t_parent(MERGE_SCAN, 1, NULL, 0);
    t_scan_parent(p, 0);
    T_REPLY(p, 0, "*2\r\n$2\r\nx1\r\n*0\r\n");
    T_MERGE("SCAN garbage cursor", p, "-ERR backend b0 sent an unexpected reply\r\n");
}

/* Which calls block, and their own timeouts in milliseconds (0: forever, or
 * a value Redis refuses at once). */
static void test_cmd_blocks(void)
{
    static const struct {
        const char *args[8]; /* the call, NULL-terminated */
        int blocks;
        uint64_t ms;
    } v[] = {
        {{"blpop", "a", "b", "0.5", NULL}, 1, 500},
        {{"brpop", "a", "2", NULL}, 1, 2000},
        {{"bzpopmin", "a", "0", NULL}, 1, 0},
        {{"blmove", "a", "b", "LEFT", "RIGHT", "1.0001", NULL}, 1, 1001},
        {{"blmpop", "0.25", "1", "a", "LEFT", NULL}, 1, 250},
        {{"bzmpop", "-1", "1", "a", "MIN", NULL}, 1, 0},
        {{"blpop", "a", "abc", NULL}, 1, 0},
        {{"xread", "COUNT", "1", "BLOCK", "300", "STREAMS", "s", "$"}, 1, 300},
        {{"xread", "COUNT", "1", "STREAMS", "s", "0", NULL}, 0, 0},
        {{"xreadgroup", "GROUP", "g", "c", "STREAMS", "block", ">", NULL}, 0, 0},
        {{"xreadgroup", "GROUP", "block", "c", "STREAMS", "s", ">", NULL}, 0, 0},
        {{"xreadgroup", "GROUP", "g", "streams", "BLOCK", "2500", "STREAMS", "s"}, 1, 2500},
        {{"xread", "COUNT", "block", "STREAMS", "s", "0", NULL}, 0, 0},
        {{"get", "a", NULL}, 0, 0},
    };
    size_t i;

    cmd_init();
    for (i = 0; i < ARRAY_LEN(v); i++) {
        struct resp_arg argv[8];
        int64_t argc = 0;
        uint64_t ms = 12345;
        const struct command *cmd;
        int got;
        while (argc < 8 && v[i].args[argc]) {
            argv[argc].p = v[i].args[argc];
            argv[argc].len = strlen(v[i].args[argc]);
            argc++;
        }
        cmd = cmd_find(argv[0].p, argv[0].len);
        T_CHECK(cmd != NULL, "%s: not in the table", v[i].args[0]);
        if (!cmd)
            continue;
        got = cmd_blocks(cmd, argv, argc, &ms);
        T_CHECK(got == v[i].blocks && (!got || ms == v[i].ms),
                "case %zu (%s): blocks %d ms %" PRIu64 ", want %d %" PRIu64, i, v[i].args[0], got,
                ms, v[i].blocks, v[i].ms);
    }
}

/* ---------------------------------------------------------- configuration */

#define T_MIN_CONF "listen 127.0.0.1:1\nbackend 127.0.0.1:2\n"

/* Parse TEXT as the file "t.conf" (no DNS); NULL on error, with ERR set. */
static struct config *t_conf(const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    return config_parse("t.conf", text, strlen(text), 0, 0, err, errlen);
}

/* TEXT must fail with an error that starts with WANT_PREFIX ("t.conf:N: ") and
 * contains WANT_SUB. */
static void t_conf_fails(const char *what, const char *text, const char *want_prefix,
                         const char *want_sub)
{
    char err[1024];
    struct config *c = t_conf(text, err, sizeof err);

    T_CHECK(c == NULL, "%s: accepted", what);
    T_CHECK(!strncmp(err, want_prefix, strlen(want_prefix)) && strstr(err, want_sub) != NULL,
            "%s: error '%s', want '%s...%s...'", what, err, want_prefix, want_sub);
    config_free(c);
}

/* A size as written in the config, parsed here independently of config_size. */
static uint64_t t_size(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 10);

    if (!strcmp(end, "kb"))
        v <<= 10;
    else if (!strcmp(end, "mb"))
        v <<= 20;
    else if (!strcmp(end, "gb"))
        v <<= 30;
    return v;
}

static void test_config_defaults(void)
{
    char err[1024];
    struct config *c = t_conf(T_MIN_CONF, err, sizeof err);
    size_t i;

    T_CHECK(c != NULL, "minimal config rejected: %s", err);
    if (!c)
        return;
    /* Known values. */
    T_CHECK(c->timeout_ms == 1000, "timeout_ms %" PRIu64, c->timeout_ms);
    T_CHECK(c->connect_timeout_ms == 1000, "connect_timeout_ms %" PRIu64, c->connect_timeout_ms);
    T_CHECK(c->table_size == 65537, "table_size %" PRIu64, c->table_size);
    T_CHECK(c->client_output_limit == 1024ULL * 1024 * 1024, "client_output_limit %" PRIu64,
            c->client_output_limit);
    T_CHECK(c->client_output_soft_limit == 64ULL * 1024 * 1024,
            "client_output_soft_limit %" PRIu64, c->client_output_soft_limit);
    T_CHECK(c->client_output_soft_seconds == 60, "client_output_soft_seconds %" PRIu64,
            c->client_output_soft_seconds);
    T_CHECK(c->max_request_size == 512ULL * 1024 * 1024, "max_request_size %" PRIu64,
            c->max_request_size);
    T_CHECK(c->admin_mode == 0600, "admin_mode %" PRIo64, c->admin_mode);
    T_CHECK(c->hash_tags == 1, "hash_tags %" PRIu64, c->hash_tags);
    T_CHECK(c->log_level == LOG_INFO, "log_level %" PRIu64, c->log_level);
    T_CHECK(c->backend_connections == 1, "backend_connections %" PRIu64, c->backend_connections);
    T_CHECK(c->max_clients == 10000, "max_clients %" PRIu64, c->max_clients);
    T_CHECK(c->client_max_pending == 1000, "client_max_pending %" PRIu64, c->client_max_pending);
    T_CHECK(c->client_timeout == 0, "client_timeout %" PRIu64, c->client_timeout);
    T_CHECK(c->backend_db == 0, "backend_db %" PRIu64, c->backend_db);
    /* Directives without a default. */
    T_CHECK(c->admin == NULL && c->npasswords == 0 && c->passwords == NULL &&
                c->backend_password == NULL && c->backend_user == NULL,
            "admin, password or backend_* set by default");
    T_CHECK(c->table_size_line == 0, "table_size_line %ld without a table_size line",
            c->table_size_line);
    T_CHECK(c->resolve == 0, "resolve %d", c->resolve);
    T_CHECK(c->path && !strcmp(c->path, "t.conf"), "path '%s'", c->path ? c->path : "(null)");
    T_CHECK(c->nlistens == 1 && !strcmp(c->listens[0].addr, "127.0.0.1:1") &&
                c->listens[0].salen == 0, "listens");
    T_CHECK(c->nbackends == 1, "nbackends %d", c->nbackends);
    if (c->nbackends == 1) {
        struct config_backend *b = &c->backends[0];
        T_CHECK(!strcmp(b->addr, "127.0.0.1:2") && b->name == NULL && b->id == b->addr,
                "backend addr/name/id");
        T_CHECK(b->weight == 1 && b->db == 0 && b->password == NULL && b->user == NULL &&
                    b->line == 2 && b->salen == 0,
                "backend defaults: weight %u db %lld line %ld", (unsigned)b->weight,
                (long long)b->db, b->line);
    }
    T_CHECK(c->table != NULL, "no Maglev table");
    if (c->table) {
        uint64_t s, bad = 0;
        for (s = 0; s < c->table_size; s++)
            bad += c->table[s] != 0;
        T_CHECK(bad == 0, "%" PRIu64 " slots of a one-backend table not on backend 0", bad);
    }
    T_CHECK(c->nrestart_lines == 1 && !strcmp(c->restart_lines[0], "listen 127.0.0.1:1"),
            "restart_lines: %d, first '%s'", c->nrestart_lines,
            c->nrestart_lines ? c->restart_lines[0] : "");

    /* Every default of the table, parsed here on its own. */
    for (i = 0; i < ARRAY_LEN(config_directives); i++) {
        const struct config_directive *d = &config_directives[i];
        uint64_t want, got;
        if (!d->def)
            continue;
        if (d->parse == config_parse_number || d->parse == config_parse_table_size ||
            d->parse == config_parse_workers) {
            want = strtoull(d->def, NULL, 10);
            got = *(uint64_t *)((char *)c + d->offset);
        } else if (d->parse == config_parse_size) {
            want = t_size(d->def);
            got = *(uint64_t *)((char *)c + d->offset);
        } else if (d->parse == config_parse_bool) {
            want = !strcmp(d->def, "on") || !strcmp(d->def, "yes");
            got = *(uint64_t *)((char *)c + d->offset);
        } else if (d->parse == config_parse_mode) {
            want = strtoull(d->def, NULL, 8);
            got = c->admin_mode;
        } else if (d->parse == config_parse_log_level) {
            static const char *const names[] = {"error", "warn", "info", "debug"};
            for (want = 0; want < 4 && strcmp(names[want], d->def); want++)
                ;
            got = c->log_level;
        } else {
            T_CHECK(0, "default of '%s' has no independent check here", d->name);
            continue;
        }
        T_CHECK(got == want, "'%s' default '%s': field %" PRIu64 ", want %" PRIu64, d->name,
                d->def, got, want);
    }
    config_free(c);
}

/* NAME VALUE appended to the minimal config (so on line 3). */
static struct config *t_conf_one(const char *name, const char *value, char *err, size_t errlen)
{
    char text[512];

    snprintf(text, sizeof text, T_MIN_CONF "%s %s\n", name, value);
    return t_conf(text, err, errlen);
}

static void test_config_ranges(void)
{
    size_t i;
    int tested = 0;

    for (i = 0; i < ARRAY_LEN(config_directives); i++) {
        const struct config_directive *d = &config_directives[i];
        char v[64], err[1024];
        struct config *c;
        uint64_t top;
        if (d->parse != config_parse_number && d->parse != config_parse_size &&
            d->parse != config_parse_workers)
            continue;
        tested++;
        /* The largest value that can be written is INT64_MAX (no suffix). */
        top = d->max > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : d->max;

        snprintf(v, sizeof v, "%" PRIu64, d->min);
        c = t_conf_one(d->name, v, err, sizeof err);
        T_CHECK(c && *(uint64_t *)((char *)c + d->offset) == d->min, "%s %s (the min): %s",
                d->name, v, c ? "wrong value" : err);
        config_free(c);

        snprintf(v, sizeof v, "%" PRIu64, top);
        c = t_conf_one(d->name, v, err, sizeof err);
        T_CHECK(c && *(uint64_t *)((char *)c + d->offset) == top, "%s %s (the max): %s",
                d->name, v, c ? "wrong value" : err);
        config_free(c);

        if (d->min > 0)
            snprintf(v, sizeof v, "%" PRIu64, d->min - 1);
        else
            snprintf(v, sizeof v, "-1");
        c = t_conf_one(d->name, v, err, sizeof err);
        T_CHECK(c == NULL && !strncmp(err, "t.conf:3: ", 10) && strstr(err, d->name),
                "%s %s (below the min) accepted or bad error '%s'", d->name, v, err);
        config_free(c);

        if (d->max < UINT64_MAX)
            snprintf(v, sizeof v, "%" PRIu64, d->max + 1);
        else
            snprintf(v, sizeof v, "18446744073709551616"); /* 2^64 */
        c = t_conf_one(d->name, v, err, sizeof err);
        T_CHECK(c == NULL && !strncmp(err, "t.conf:3: ", 10) && strstr(err, d->name),
                "%s %s (above the max) accepted or bad error '%s'", d->name, v, err);
        config_free(c);

        /* Not a number at all, and no argument. */
        c = t_conf_one(d->name, "12abc", err, sizeof err);
        T_CHECK(c == NULL && !strncmp(err, "t.conf:3: ", 10), "%s 12abc: accepted", d->name);
        config_free(c);
        c = t_conf_one(d->name, "", err, sizeof err);
        T_CHECK(c == NULL && !strncmp(err, "t.conf:3: ", 10), "%s without a value accepted",
                d->name);
        config_free(c);
        c = t_conf_one(d->name, "1 2", err, sizeof err);
        T_CHECK(c == NULL && !strncmp(err, "t.conf:3: ", 10), "%s with two values accepted",
                d->name);
        config_free(c);
    }
    T_CHECK(tested >= 8, "only %d numeric directives found", tested);
    {
        /* workers auto: the online CPUs, within the directive's range */
        char err[1024];
        struct config *c = t_conf_one("workers", "auto", err, sizeof err);
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        uint64_t want = cpus < 1 ? 1 : cpus > WORKERS_MAX ? WORKERS_MAX : (uint64_t)cpus;
        T_CHECK(c && c->workers == want, "workers auto: %s, %" PRIu64 " for %ld CPUs",
                c ? "parsed" : err, c ? c->workers : 0, cpus);
        config_free(c);
        c = t_conf_one("workers", "Auto", err, sizeof err);
        T_CHECK(c == NULL && strstr(err, "workers"), "workers Auto accepted");
        config_free(c);
    }
}

static void test_config_sizes(void)
{
    static const struct {
        const char *text;
        uint64_t want; /* 0: rejected */
    } sizes[] = {
        {"1024", 1024},
        {"4096b", 4096},
        {"64kb", 64ULL << 10},
        {"64KB", 64ULL << 10},
        {"64k", 64ULL << 10},
        {"3mb", 3ULL << 20},
        {"3M", 3ULL << 20},
        {"1gb", 1ULL << 30},
        {"4gb", 4ULL << 30},      /* the max of max_request_size */
        {"4096mb", 4ULL << 30},
        {"4097mb", 0},            /* above it */
        {"5gb", 0},
        {"1kb", 1024},            /* the min */
        {"1023b", 0},
        {"0kb", 0},
        {"kb", 0},
        {"12tb", 0},
        {"12 kb", 0},             /* two words */
        {"-1kb", 0},
        {"1.5mb", 0},
        {"mb1", 0},
    };
    size_t i;

    for (i = 0; i < ARRAY_LEN(sizes); i++) {
        char err[1024];
        struct config *c = t_conf_one("max_request_size", sizes[i].text, err, sizeof err);
        if (sizes[i].want)
            T_CHECK(c && c->max_request_size == sizes[i].want,
                    "max_request_size %s: %s %" PRIu64 ", want %" PRIu64, sizes[i].text,
                    c ? "got" : err, c ? c->max_request_size : 0, sizes[i].want);
        else
            T_CHECK(!c && !strncmp(err, "t.conf:3: ", 10), "max_request_size %s accepted (%s)",
                    sizes[i].text, err);
        config_free(c);
    }
    {
        char err[1024];
        struct config *c = t_conf_one("client_output_limit", "16gb", err, sizeof err);
        T_CHECK(c && c->client_output_limit == 16ULL << 30, "client_output_limit 16gb: %s",
                c ? "wrong value" : err);
        config_free(c);
    }
}

static void test_config_errors(void)
{
    t_conf_fails("unknown directive on line 3",
                 "listen 127.0.0.1:1\n# comment\nbogus 1\nbackend 127.0.0.1:2\n", "t.conf:3: ",
                 "unknown directive 'bogus'");
    t_conf_fails("non-prime table_size on line 2",
                 "listen 127.0.0.1:1\ntable_size 65536\nbackend 127.0.0.1:2\n", "t.conf:2: ",
                 "not prime");
    t_conf_fails("table_size 1 below the min", "table_size 1\n" T_MIN_CONF, "t.conf:1: ",
                 "table_size");
    t_conf_fails("duplicate listen on line 4",
                 "listen 127.0.0.1:1\nbackend 127.0.0.1:2\n\nlisten 127.0.0.1:1\n", "t.conf:4: ",
                 "duplicate listen address '127.0.0.1:1'");
    t_conf_fails("duplicate backend on line 3",
                 "listen 127.0.0.1:1\nbackend 127.0.0.1:2\nbackend 127.0.0.1:2\n", "t.conf:3: ",
                 "duplicate backend identity");
    t_conf_fails("duplicate backend name",
                 "listen 127.0.0.1:1\nbackend 127.0.0.1:2 name=a\nbackend 127.0.0.1:3 name=a\n",
                 "t.conf:3: ", "duplicate backend identity 'a'");
    t_conf_fails("user without password reports the backend's line",
                 "listen 127.0.0.1:1\nbackend 127.0.0.1:2\nbackend 127.0.0.1:3 user=u\n"
                 "hash_tags off\n\n# end\n",
                 "t.conf:3: ", "a user needs a password");
    t_conf_fails("backend_user without a password reports the first backend's line",
                 "listen 127.0.0.1:1\nbackend_user u\n\nbackend 127.0.0.1:2 name=x\n",
                 "t.conf:4: ", "backend x: a user needs a password");
    t_conf_fails("table smaller than the backends reports table_size's line",
                 "table_size 2\nlisten 127.0.0.1:1\nbackend 127.0.0.1:2\nbackend 127.0.0.1:3\n"
                 "backend 127.0.0.1:4\n",
                 "t.conf:1: ", "smaller than the number of backends");
    t_conf_fails("no backend: reported at the last line", "listen 127.0.0.1:1\n\n\n",
                 "t.conf:3: ", "no 'backend'");
    t_conf_fails("no listen", "backend 127.0.0.1:2\n", "t.conf:1: ", "no 'listen'");
    t_conf_fails("empty file", "", "t.conf:", "no 'listen'");
    t_conf_fails("bad backend option", T_MIN_CONF "backend 127.0.0.1:3 color=red\n",
                 "t.conf:3: ", "color=red");
    t_conf_fails("weight 0", T_MIN_CONF "backend 127.0.0.1:3 weight=0\n", "t.conf:3: ",
                 "weight");
    t_conf_fails("weight too large", T_MIN_CONF "backend 127.0.0.1:3 weight=1000001\n",
                 "t.conf:3: ", "weight");
    t_conf_fails("db negative", T_MIN_CONF "backend 127.0.0.1:3 db=-1\n", "t.conf:3: ", "db");
    t_conf_fails("empty name", T_MIN_CONF "backend 127.0.0.1:3 name=\n", "t.conf:3: ", "name");
    t_conf_fails("bad backend address", T_MIN_CONF "backend 127.0.0.1\n", "t.conf:3: ",
                 "bad address");
    t_conf_fails("bad port", T_MIN_CONF "backend 127.0.0.1:65536\n", "t.conf:3: ",
                 "bad address");
    t_conf_fails("bad listen address", "listen nohost\nbackend 127.0.0.1:2\n", "t.conf:1: ",
                 "bad address");
    t_conf_fails("hash_tags maybe", T_MIN_CONF "hash_tags maybe\n", "t.conf:3: ", "on or off");
    t_conf_fails("log_level loud", T_MIN_CONF "log_level loud\n", "t.conf:3: ", "log_level");
    t_conf_fails("admin_mode 0800", T_MIN_CONF "admin_mode 0800\n", "t.conf:3: ", "octal");
    t_conf_fails("admin_mode 01000", T_MIN_CONF "admin_mode 01000\n", "t.conf:3: ", "octal");
    t_conf_fails("admin_mode 068", T_MIN_CONF "admin_mode 068\n", "t.conf:3: ", "octal");
    t_conf_fails("admin_mode 9", T_MIN_CONF "admin_mode 9\n", "t.conf:3: ", "octal");
    t_conf_fails("admin_mode 0x1ff", T_MIN_CONF "admin_mode 0x1ff\n", "t.conf:3: ", "octal");
    t_conf_fails("admin_mode -1", T_MIN_CONF "admin_mode -1\n", "t.conf:3: ", "octal");
    t_conf_fails("password without a value", T_MIN_CONF "password\n", "t.conf:3: ", "password");
    {
        char err[1024];
        static const char text[] = "listen 127.0.0.1:1\nback\0end 127.0.0.1:2\n";
        struct config *c = config_parse("t.conf", text, sizeof text - 1, 0, 0, err, sizeof err);
        T_CHECK(!c && !strncmp(err, "t.conf:2: ", 10) && strstr(err, "NUL"),
                "NUL byte on line 2: '%s'", err);
        config_free(c);
    }
}

static void test_config_syntax(void)
{
    char err[1024];
    struct config *c;

    /* Comments, blank lines, whitespace, CRLF and a last line without a newline. */
    c = t_conf("# a comment\n"
               "\n"
               "   \t \n"
               "   # an indented comment\n"
               "listen\t127.0.0.1:1   # trailing comment\r\n"
               "backend   127.0.0.1:2 weight=2#3\n",
               err, sizeof err);
    T_CHECK(c == NULL && !strncmp(err, "t.conf:6: ", 10), "'#' inside a word is not a comment: %s",
            c ? "accepted" : err);
    config_free(c);
    c = t_conf("# a comment\n"
               "\n"
               "   \t \n"
               "   # an indented comment\n"
               "listen\t127.0.0.1:1   # trailing comment\r\n"
               "backend   127.0.0.1:2 # weight=0 is commented out\n"
               "timeout 250",
               err, sizeof err);
    T_CHECK(c != NULL, "comments and blanks: %s", err);
    if (c) {
        T_CHECK(c->nlistens == 1 && !strcmp(c->listens[0].addr, "127.0.0.1:1"), "listen '%s'",
                c->nlistens ? c->listens[0].addr : "");
        T_CHECK(c->nbackends == 1 && c->backends[0].weight == 1 && c->backends[0].line == 6,
                "backend weight %u line %ld", c->nbackends ? (unsigned)c->backends[0].weight : 0,
                c->nbackends ? c->backends[0].line : 0);
        T_CHECK(c->timeout_ms == 250, "timeout on the unterminated last line: %" PRIu64,
                c->timeout_ms);
        T_CHECK(c->nrestart_lines == 1 && !strcmp(c->restart_lines[0], "listen 127.0.0.1:1"),
                "restart line normalised: '%s'", c->nrestart_lines ? c->restart_lines[0] : "");
    }
    config_free(c);

    /* Other directives, a later line overriding an earlier one. */
    c = t_conf(T_MIN_CONF "hash_tags off\ntimeout 5\ntimeout 0\nlog_level debug\n"
               "client_timeout 30\nmax_clients 7\nconnect_timeout 3\nbackend_connections 4\n"
               "table_size 7\nclient_max_pending 9\nclient_output_limit 2mb\n",
               err, sizeof err);
    T_CHECK(c != NULL, "directives: %s", err);
    if (c) {
        T_CHECK(c->hash_tags == 0 && c->timeout_ms == 0 && c->log_level == LOG_DEBUG &&
                    c->client_timeout == 30 && c->max_clients == 7 &&
                    c->connect_timeout_ms == 3 && c->backend_connections == 4 &&
                    c->table_size == 7 && c->client_max_pending == 9 &&
                    c->client_output_limit == 2ULL << 20,
                "directive values");
        T_CHECK(c->table_size_line == 11, "table_size_line %ld, want 11", c->table_size_line);
    }
    config_free(c);
    c = t_conf(T_MIN_CONF "hash_tags yes\nlog_level error\n", err, sizeof err);
    T_CHECK(c && c->hash_tags == 1 && c->log_level == LOG_ERROR, "hash_tags yes, log_level error");
    config_free(c);
    c = t_conf(T_MIN_CONF "admin_mode 777\n", err, sizeof err);
    T_CHECK(c && c->admin_mode == 0777, "admin_mode 777: %s", c ? "wrong value" : err);
    config_free(c);
    c = t_conf(T_MIN_CONF "admin_mode 0\n", err, sizeof err);
    T_CHECK(c && c->admin_mode == 0, "admin_mode 0: %s", c ? "wrong value" : err);
    config_free(c);
    c = t_conf(T_MIN_CONF "hash_tags no\nlog_level warn\n", err, sizeof err);
    T_CHECK(c && c->hash_tags == 0 && c->log_level == LOG_WARN, "hash_tags no, log_level warn");
    config_free(c);
}

static void test_config_passwords_backends(void)
{
    char err[1024];
    struct config *c;

    c = t_conf(T_MIN_CONF "password first\npassword second\npassword first\n", err, sizeof err);
    T_CHECK(c && c->npasswords == 3 && !strcmp(c->passwords[0], "first") &&
                !strcmp(c->passwords[1], "second") && !strcmp(c->passwords[2], "first"),
            "repeated password: %s", c ? "wrong list" : err);
    config_free(c);

    c = t_conf("listen 127.0.0.1:1\n"
               "backend_password dflt\n"
               "backend_db 3\n"
               "backend 127.0.0.1:2 weight=3 name=alpha db=5 user=u password=p\n"
               "backend 127.0.0.1:3\n"
               "backend [::1]:4 db=0 weight=1000000\n"
               "backend /tmp/redis.sock user=v\n"
               "backend 127.0.0.1:5 password=a password=b name=x name=y\n",
               err, sizeof err);
    T_CHECK(c != NULL, "backend options: %s", err);
    if (c && c->nbackends == 5) {
        struct config_backend *b = c->backends;
        T_CHECK(!strcmp(b[0].addr, "127.0.0.1:2") && b[0].name && !strcmp(b[0].name, "alpha") &&
                    !strcmp(b[0].id, "alpha") && b[0].weight == 3 && b[0].db == 5 &&
                    b[0].user && !strcmp(b[0].user, "u") && b[0].password &&
                    !strcmp(b[0].password, "p") && b[0].line == 4,
                "backend with every option");
        T_CHECK(!strcmp(b[1].id, "127.0.0.1:3") && b[1].name == NULL && b[1].weight == 1 &&
                    b[1].db == 3 && b[1].user == NULL && b[1].password &&
                    !strcmp(b[1].password, "dflt") && b[1].line == 5,
                "backend with the backend_* defaults: db %lld", (long long)b[1].db);
        T_CHECK(!strcmp(b[2].id, "[::1]:4") && b[2].db == 0 && b[2].weight == 1000000 &&
                    b[2].password && !strcmp(b[2].password, "dflt"),
                "IPv6 backend, db=0 kept over backend_db 3: db %lld", (long long)b[2].db);
        T_CHECK(!strcmp(b[3].id, "/tmp/redis.sock") && b[3].user && !strcmp(b[3].user, "v") &&
                    b[3].password && !strcmp(b[3].password, "dflt"),
                "UNIX backend: user= with backend_password");
        T_CHECK(b[4].password && !strcmp(b[4].password, "b") && b[4].name &&
                    !strcmp(b[4].name, "y") && !strcmp(b[4].id, "y"),
                "repeated options: the last wins");
    } else if (c) {
        T_CHECK(0, "%d backends, want 5", c->nbackends);
    }
    config_free(c);

    /* backend_user applies to every backend without user=; backend_password too. */
    c = t_conf("listen 127.0.0.1:1\nbackend_user dfltu\nbackend_password pw\n"
               "backend 127.0.0.1:2\nbackend 127.0.0.1:3 user=own password=ownpw\n",
               err, sizeof err);
    T_CHECK(c && c->nbackends == 2 && c->backends[0].user &&
                !strcmp(c->backends[0].user, "dfltu") && c->backends[0].password &&
                !strcmp(c->backends[0].password, "pw") && c->backends[1].user &&
                !strcmp(c->backends[1].user, "own") && c->backends[1].password &&
                !strcmp(c->backends[1].password, "ownpw") &&
                c->backend_user && !strcmp(c->backend_user, "dfltu") && c->backend_password &&
                !strcmp(c->backend_password, "pw"),
            "backend_user/backend_password defaults: %s", c ? "wrong values" : err);
    config_free(c);
}

static void test_config_restart_lines(void)
{
    char err[1024];
    struct config *c;

    c = t_conf("listen   127.0.0.1:1\n"
               "backend 127.0.0.1:2\n"
               "admin /tmp/shardproxy-test.sock\n"
               "timeout 10\n"
               "listen /tmp/shardproxy-test-listen.sock   # comment\n"
               "admin_mode 660\n"
               "password x\n",
               err, sizeof err);
    T_CHECK(c != NULL, "restart lines config: %s", err);
    if (c) {
        static const char *const want[] = {
            "listen 127.0.0.1:1", "admin /tmp/shardproxy-test.sock",
            "listen /tmp/shardproxy-test-listen.sock", "admin_mode 660"};
        int i;
        T_CHECK(c->nrestart_lines == 4, "%d restart lines, want 4", c->nrestart_lines);
        for (i = 0; i < c->nrestart_lines && i < 4; i++)
            T_CHECK(!strcmp(c->restart_lines[i], want[i]), "restart line %d '%s', want '%s'", i,
                    c->restart_lines[i], want[i]);
        T_CHECK(c->admin && !strcmp(c->admin, "/tmp/shardproxy-test.sock"), "admin '%s'",
                c->admin ? c->admin : "(null)");
        T_CHECK(c->admin_mode == 0660, "admin_mode %" PRIo64 ", want 660", c->admin_mode);
        T_CHECK(c->nlistens == 2 && !strcmp(c->listens[1].addr,
                                            "/tmp/shardproxy-test-listen.sock"),
                "second listen");
    }
    config_free(c);
}

/* ------------------------------------------------------------------ main */

/* ----------------------------------------------------------- event backend */

/* The backend compiled in (EV_BACKEND): interest changes, readiness,
 * hang-ups, deletion, and many descriptors at once (the poll backend's
 * dense array fills its holes on delete). */
static int t_ev_find(int n, int fd, unsigned *mask)
{
    int i;

    *mask = 0;
    for (i = 0; i < n; i++)
        if (ev.fired[i].fd == fd)
            *mask |= ev.fired[i].mask; /* kqueue reports each filter apart */
    return *mask != 0;
}

static void test_ev(void)
{
    int sp[2], pipes[40][2], i, n, live = 0;
    unsigned m = 0;

    T_CHECK(ev_init(1024) == 0, "ev_init (%s): %s", EV_BACKEND, strerror(errno));
    T_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0, "socketpair");
    /* registered for reading, nothing to read: no event */
    T_CHECK(ev_set(sp[0], EV_READ) == 0, "ev_set read");
    n = ev_wait(0);
    T_CHECK(!t_ev_find(n, sp[0], &m), "idle socket reported (%u)", m);
    /* writable interest: a socket with room is writable at once */
    T_CHECK(ev_set(sp[0], EV_READ | EV_WRITE) == 0, "ev_set read|write");
    n = ev_wait(100);
    T_CHECK(t_ev_find(n, sp[0], &m) && (m & EV_WRITE) && !(m & EV_READ),
            "want writable only, got %u", m);
    /* data arrives: readable; write interest dropped: not writable */
    T_CHECK(write(sp[1], "x", 1) == 1, "write");
    T_CHECK(ev_set(sp[0], EV_READ) == 0, "ev_set read again");
    n = ev_wait(100);
    T_CHECK(t_ev_find(n, sp[0], &m) && m == EV_READ, "want readable only, got %u", m);
    /* level-triggered: still readable while unread */
    n = ev_wait(100);
    T_CHECK(t_ev_find(n, sp[0], &m) && (m & EV_READ), "not reported again (%u)", m);
    /* no interest: the unread byte is not reported */
    T_CHECK(ev_set(sp[0], 0) == 0, "ev_set 0");
    n = ev_wait(0);
    T_CHECK(!t_ev_find(n, sp[0], &m), "reported without interest (%u)", m);
    /* the peer goes: a hang-up (or EOF) with read interest */
    T_CHECK(ev_set(sp[0], EV_READ) == 0, "ev_set read after 0");
    close(sp[1]);
    n = ev_wait(100);
    T_CHECK(t_ev_find(n, sp[0], &m) && (m & (EV_READ | EV_ERR)), "hang-up not seen (%u)", m);
    /* many descriptors, deleted in an order that punches holes */
    for (i = 0; i < 40; i++) {
        T_CHECK(pipe(pipes[i]) == 0, "pipe %d", i);
        T_CHECK(ev_set(pipes[i][0], EV_READ) == 0, "ev_set pipe %d", i);
    }
    for (i = 0; i < 40; i += 3) {
        ev_del(pipes[i][0]);
        T_CHECK(ev.mask[pipes[i][0]] == 0, "mask of deleted fd %d", pipes[i][0]);
    }
    for (i = 0; i < 40; i++)
        T_CHECK(write(pipes[i][1], "y", 1) == 1, "write pipe %d", i);
    n = ev_wait(100);
    for (i = 0; i < 40; i++) {
        int seen = t_ev_find(n, pipes[i][0], &m);
        T_CHECK(seen == (i % 3 != 0), "pipe %d: seen %d after %s", i, seen,
                i % 3 ? "registering" : "deleting");
        live += seen;
    }
    T_CHECK(live == 40 - 14, "events for 26 live pipes, got %d", live);
    for (i = 0; i < 40; i++) {
        ev_del(pipes[i][0]);
        close(pipes[i][0]);
        close(pipes[i][1]);
    }
    ev_del(sp[0]);
    close(sp[0]);
    ev_free();
}

int main(void)
{
    test_hash_vectors();
    test_hash_lengths();
    test_hash_tag();
    test_maglev_vectors();
    test_maglev_args();
    test_maglev_reference();
    test_maglev_is_prime();
    test_maglev_steps();
    test_req_parser();
    test_reply_parser();
    test_hist_constants();
    test_hist_buckets();
    test_hist_counts();
    test_hist_quantile();
    test_merge_mget();
    test_merge_ok_sum();
    test_merge_fanout();
    test_cmd_blocks();
    test_config_defaults();
    test_config_ranges();
    test_config_sizes();
    test_config_errors();
    test_config_syntax();
    test_config_passwords_backends();
    test_config_restart_lines();
    test_ev();
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
