/*
 * test/fuzz/fuzz_config.c -- libFuzzer harness for the configuration parser.
 *
 * The input is a config file's text, handed to config_parse as the proxy's
 * config_load would after reading the file.  It is parsed without resolving, as
 * for --route/--table, so addresses are checked for shape but never looked
 * up: no DNS, no file I/O.  A config that parses is checked (its Maglev table
 * maps every slot to a backend) and freed; one that does not must say why
 * with a "fuzz.conf:" prefix.
 *
 * table_size accepts primes up to 5000011 and a config may hold up to 4096
 * backends, so one input can ask for a large Maglev build; `make fuzz` caps
 * inputs at 4096 bytes to keep that bounded.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#define main shardproxy_main
#include "../../shardproxy.c"
#undef main

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    struct config *c;

    err[0] = '\0';
    c = config_parse("fuzz.conf", (const char *)data, size, 0, 0, err, sizeof err);
    if (!c) {
        FUZZ_CHECK(!strncmp(err, "fuzz.conf:", 10), "error without the file name: '%s'", err);
        FUZZ_CHECK(!strchr(err, '\n'), "error spans lines: '%s'", err);
        return 0;
    }
    FUZZ_CHECK(c->nlistens > 0 && c->nbackends > 0, "a config without listen or backend");
    FUZZ_CHECK(c->nbackends <= MAGLEV_MAX_BACKENDS, "%d backends", c->nbackends);
    FUZZ_CHECK(c->table && c->table_size >= (uint64_t)c->nbackends &&
                   c->table_size <= MAGLEV_MAX_SIZE && maglev_is_prime(c->table_size),
               "table_size %llu", (unsigned long long)c->table_size);
    {
        uint64_t s;
        int i;
        for (s = 0; s < c->table_size; s++)
            FUZZ_CHECK(c->table[s] < c->nbackends, "slot %llu -> %u",
                       (unsigned long long)s, (unsigned)c->table[s]);
        for (i = 0; i < c->nbackends; i++) {
            const struct config_backend *b = &c->backends[i];
            FUZZ_CHECK(b->id == (b->name ? b->name : b->addr), "backend %d identity", i);
            FUZZ_CHECK(b->weight >= 1 && b->weight <= 1000000, "backend %d weight %u", i,
                       b->weight);
            FUZZ_CHECK(b->db >= 0, "backend %d db %lld", i, (long long)b->db);
            FUZZ_CHECK(!b->user || b->password, "backend %d: a user without a password", i);
        }
    }
    config_free(c);
    return 0;
}
