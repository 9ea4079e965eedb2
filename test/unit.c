/*
 * test/unit.c -- unit tests of shardproxy's pure API (shardproxy.h).
 *
 * The program includes shardproxy.c itself, with its main() renamed, so the
 * tests exercise exactly the code the proxy runs, static helpers included.
 * Built by `make unit` (under ASan/UBSan when the compiler has them).
 *
 * What is covered:
 *   - MurmurHash64A and XXH64 against the vectors of DESIGN.md, and against
 *     independent reference implementations written here from the public
 *     algorithms, for every length 0..100 (every tail length and both XXH64
 *     paths), several seeds and unaligned starts;
 *   - the Redis Cluster hash-tag rule;
 *   - Maglev: Envoy's published vectors, argument checks, and a reference
 *     implementation of DESIGN.md's pseudo-code on larger tables;
 *   - the request and reply parsers: tables of valid and invalid inputs, each
 *     fed whole, split in two at every byte, and one byte at a time, which
 *     must all give the same transcript (results, lengths, arguments).
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
    /* DESIGN.md's table (Envoy's own test values). */
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

/* DESIGN.md's pseudo-code, written independently (and slowly). */
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
        };
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            t_reply_case(t_name(name, sizeof(name), bad[i].p, bad[i].len), NULL, 0, bad[i], END_ERROR);
        t_reply_case("three replies then garbage", good, 3, bad[0], END_ERROR);
    }
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    test_hash_vectors();
    test_hash_lengths();
    test_hash_tag();
    test_maglev_vectors();
    test_maglev_args();
    test_maglev_reference();
    test_maglev_is_prime();
    test_req_parser();
    test_reply_parser();
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
