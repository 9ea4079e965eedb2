/*
 * test/fuzz/fuzz.h -- helpers shared by the libFuzzer harnesses.
 *
 * Included by each harness after "../../shardproxy.c" (so the proxy's own
 * types and static functions are in scope).  Nothing here touches the proxy's
 * globals.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#ifndef SHARDPROXY_FUZZ_H
#define SHARDPROXY_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: say which and where, then abort() so libFuzzer keeps
 * the input as a crash.  The message goes to stdout: `make fuzz` runs
 * fuzz_admin with stderr closed (-close_fd_mask=2) to silence the proxy's log
 * lines, and libFuzzer's own report goes to a copy of stderr it keeps. */
#define FUZZ_CHECK(cond, ...)                                                   \
    do {                                                                        \
        if (!(cond)) {                                                          \
            printf("fuzz invariant failed at %s:%d: %s: ", __FILE__, __LINE__,  \
                   #cond);                                                      \
            printf(__VA_ARGS__);                                                \
            printf("\n");                                                       \
            fflush(stdout);                                                     \
            abort();                                                            \
        }                                                                       \
    } while (0)

/*
 * Request limits for one input.  An input whose first byte is below 0x10
 * (no RESP request or reply starts that way) uses that byte to pick a limit
 * set from this table and is parsed from its second byte on; any other input
 * is parsed whole under the proxy's realistic limits (entry 0).  The tiny
 * sets push the limit checks to the edges a real peer reaches only with
 * megabytes of input.
 */
static const struct resp_limits fuzz_limit_sets[16] = {
    /* max_request, max_inline, max_args, max_bulk */
    {1024 * 1024, 64 * 1024, 0, 0},  /* realistic: 1 MiB requests, Redis's inline bound */
    {PREAUTH_MAX_REQUEST, MAX_INLINE, PREAUTH_MAX_ARGS, PREAUTH_MAX_BULK}, /* before AUTH */
    {0, 0, 0, 0},
    {1, 1, 1, 1},
    {5, 2, 0, 0},
    {6, 3, 1, 0},
    {7, 4, 0, 1},
    {12, 5, 2, 0},
    {16, 8, 0, 2},
    {17, 15, 3, 3},
    {32, 16, 0, 0},
    {64, 31, 4, 8},
    {100, 63, 0, 0},
    {256, 64, 16, 64},
    {4ULL << 30, UINT32_MAX, 0, 0}, /* the largest max_request_size the config takes */
    {4096, 100, 1000, 4000},
};

/* Pick the limits for DATA[0..SIZE) and strip the selector byte if any. */
static inline const struct resp_limits *fuzz_limits(const uint8_t **data, size_t *size)
{
    if (*size > 0 && (*data)[0] < 0x10) {
        const struct resp_limits *lim = &fuzz_limit_sets[(*data)[0]];
        (*data)++;
        (*size)--;
        return lim;
    }
    return &fuzz_limit_sets[0];
}

/* A heap copy of DATA: the parsers must never read past what they are given,
 * and ASan sees that only on an exact-size allocation. */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    if (!p)
        abort();
    if (size)
        memcpy(p, data, size);
    return p;
}

#endif /* SHARDPROXY_FUZZ_H */
