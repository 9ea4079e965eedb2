/*
 * shardproxy.h -- the I/O-free part of shardproxy's API.
 *
 * Everything declared here is pure: no sockets, no globals touched, no
 * allocation that outlives the call unless the caller owns it.  It exists so
 * that test programs and fuzz harnesses can link the exact code the proxy runs
 * (hashing, Maglev placement, the RESP parsers) without an event loop.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#ifndef SHARDPROXY_H
#define SHARDPROXY_H

#include <stddef.h>
#include <stdint.h>

#define SHARDPROXY_VERSION "0.1.0"

/* ---------------------------------------------------------------- hashing */

/* MurmurHash64A, as libstdc++'s 64-bit _Hash_bytes and Envoy's
 * MurmurHash::murmurHash2 compute it.  Envoy seeds it with HASH_SEED. */
#define HASH_SEED 0xc70f6907ULL
uint64_t hash_murmur64a(const void *data, size_t len, uint64_t seed);

/* XXH64, the public xxHash 64-bit algorithm (used for Maglev permutations). */
uint64_t hash_xxh64(const void *data, size_t len, uint64_t seed);

/* The part of KEY that is hashed under the Redis Cluster hash-tag rule: the
 * text between the first '{' and the first '}' after it, when that text is not
 * empty; otherwise the whole key.  Returns its length and stores its start. */
size_t hash_tag(const char *key, size_t len, const char **start);

/* ----------------------------------------------------------------- Maglev */

#define MAGLEV_DEFAULT_SIZE 65537u
#define MAGLEV_MAX_SIZE 5000011u
#define MAGLEV_MAX_BACKENDS 4096

/* Fill TABLE[0..m-1] with backend indexes (0..n-1, in the caller's order) by
 * Envoy's Maglev algorithm: backends sorted by identity string, permutation
 * from XXH64(id, seed 0 / seed 1), normalized weights.  M must be prime and at
 * least N; every weight at least 1.  Returns 0, or -1 on bad arguments. */
int maglev_build(uint16_t *table, uint32_t m, const char *const *ids,
                 const uint32_t *weights, int n);

/* 1 if N is prime, else 0 (trial division; N <= MAGLEV_MAX_SIZE is fast). */
int maglev_is_prime(uint64_t n);

/* ----------------------------------------------------------- RESP parsing */

/* Result of a parser step. */
enum resp_result {
    RESP_OK,    /* one complete message framed */
    RESP_AGAIN, /* need more bytes; state saved, call again with the same buffer grown */
    RESP_ERROR  /* broken framing; the reason is in the parser's err field */
};

/* Limits a request must respect (a client is an untrusted peer). */
struct resp_limits {
    uint64_t max_request;  /* largest request in bytes (max_request_size) */
    uint32_t max_inline;   /* longest inline command line, CRLF excluded */
    uint32_t max_args;     /* most array elements, 0 = no limit beyond max_request */
    uint64_t max_bulk;     /* largest bulk string, 0 = no limit beyond max_request */
};

/* Resumable state of the request parser.  Zero it (resp_req_init) before the
 * first byte of each request.  The parser never copies: it only walks the
 * caller's buffer, which always starts at the request's first byte. */
struct resp_req_parser {
    int state;           /* where in the request we stopped (private enum) */
    int inline_req;      /* 1 when the request is an inline command */
    size_t pos;          /* bytes of the request already consumed */
    int64_t args_left;   /* bulk strings still expected in the array */
    int64_t argc;        /* declared array length (inline: 0 for a blank line, else 1;
                            resp_req_args gives the real count) */
    int64_t bulk_left;   /* bytes of the current bulk (payload + CRLF) still to skip */
    const char *err;     /* on RESP_ERROR: what was wrong, for "-ERR Protocol error: ..." */
};

/* One argument of a framed request: a pointer into the request bytes, or into
 * the caller's scratch space for inline arguments that needed unquoting. */
struct resp_arg {
    const char *p; /* first byte */
    size_t len;    /* length in bytes */
};

void resp_req_init(struct resp_req_parser *p);

/* Frame one request at BUF[0..LEN).  On RESP_OK, p->pos is the request's
 * length in bytes; an empty request (blank inline line, "*0") is RESP_OK with
 * p->argc == 0 and should be skipped by the caller. */
enum resp_result resp_req_parse(struct resp_req_parser *p, const char *buf,
                                size_t len, const struct resp_limits *lim);

/* Fill ARGV[0..cap) with the arguments of a request already framed by
 * resp_req_parse (P is the parser that returned RESP_OK).  Inline arguments
 * may be quoted as redis-cli and Redis's sdssplitargs accept ("a b", 'x',
 * "\x41\n"); unquoted bytes go to SCRATCH, which must hold at least the
 * request's length.  Returns argc, or -1 for an inline line with unbalanced
 * quotes (a protocol error). */
int64_t resp_req_args(const struct resp_req_parser *p, const char *buf,
                      struct resp_arg *argv, size_t cap, char *scratch);

/* Resumable state of the reply parser: framing only.  A reply is complete
 * when every element it announced has been seen, so a single counter of
 * pending elements replaces a stack of nested arrays. */
struct resp_reply_parser {
    size_t pos;        /* bytes of the reply already consumed */
    int64_t pending;   /* elements still to read (1 at the start) */
    int64_t bulk_left; /* bytes of the current bulk (payload + CRLF) still to skip */
    const char *err;   /* on RESP_ERROR: what was wrong */
};

/* Largest bulk or array a backend may announce; beyond it the stream is
 * considered garbage and the connection is dropped. */
#define RESP_MAX_REPLY_BULK (1ULL << 32)
#define RESP_MAX_REPLY_ARRAY (1LL << 31)

void resp_reply_init(struct resp_reply_parser *p);

/* Frame one RESP2 or RESP3 reply at BUF[0..LEN).  On RESP_OK, p->pos is its
 * length.  Every RESP3 type is framed: map %, set ~, push >, attribute |
 * (framed with the reply it precedes), null _, boolean #, double ",", big
 * number (, verbatim string = and blob error !.  Streamed strings and
 * aggregates ("$?", "*?"), which Redis never sends, are errors. */
enum resp_result resp_reply_parse(struct resp_reply_parser *p, const char *buf,
                                  size_t len);

#endif /* SHARDPROXY_H */
