/*
 * cmddump.c -- print shardproxy's command table (cmd_table[]) as text, one
 * line per row, for test/commands.bats to compare with a live redis-server's
 * COMMAND reply (test/cmdcheck.py does the comparing).
 *
 * It includes shardproxy.c itself, with main renamed, so it sees the exact
 * static table the proxy routes with.  Build from the repository root:
 *
 *     cc -std=c99 -o cmddump test/cmddump.c && ./cmddump
 *
 * Output, one line per row, in table order, fields separated by one tab:
 *
 *     name  arity  kind  specs
 *
 * kind is the enum cmd_kind constant's name (CMD_ONE ...).  specs is "-"
 * when the row has none, else its nspecs key specs separated by one space,
 * each one of:
 *
 *     index:I,range:LASTKEY,KEYSTEP,LIMIT
 *     index:I,keynum:KEYNUMIDX,FIRSTKEY,KEYSTEP
 *     keyword:WORD:STARTFROM,range:...      keyword:WORD:STARTFROM,keynum:...
 *     unknown
 *
 * which is the form cmdcheck.py builds from the server's key specs.  A row
 * whose nspecs exceeds specs[] or whose unused specs[] slots are not KS_NONE
 * gets a fifth field saying so, which the check reports as a mismatch.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#define main shardproxy_main
#include "../shardproxy.c"
#undef main

#include <stdio.h>
#include <string.h>

/* The name of enum cmd_kind value K, as written in the source. */
static const char *cmddump_kind(int k)
{
    static char other[32];

    switch (k) {
    case CMD_ONE: return "CMD_ONE";
    case CMD_SPLIT: return "CMD_SPLIT";
    case CMD_SAME: return "CMD_SAME";
    case CMD_LOCAL: return "CMD_LOCAL";
    case CMD_ANY: return "CMD_ANY";
    case CMD_ALL: return "CMD_ALL";
    case CMD_REFUSE: return "CMD_REFUSE";
    case CMD_CONTAINER: return "CMD_CONTAINER";
    default:
        snprintf(other, sizeof other, "CMD_?%d", k);
        return other;
    }
}

/* Print key spec S in the canonical text form described above. */
static void cmddump_spec(const struct cmd_keyspec *s)
{
    if (s->find == 'u') {
        fputs("unknown", stdout);
        return;
    }
    if (s->keyword)
        printf("keyword:%s:%d,", s->keyword, s->start);
    else
        printf("index:%d,", s->start);
    if (s->find == 'r')
        printf("range:%d,%d,%d", s->a, s->b, s->c);
    else if (s->find == 'n')
        printf("keynum:%d,%d,%d", s->a, s->b, s->c);
    else
        printf("find?%d:%d,%d,%d", s->find, s->a, s->b, s->c);
}

int main(void)
{
    const size_t nslots = sizeof cmd_table[0].specs / sizeof cmd_table[0].specs[0];
    size_t i, j;

    for (i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++) {
        const struct command *c = &cmd_table[i];
        size_t n = c->nspecs;

        printf("%s\t%d\t%s\t", c->name, c->arity, cmddump_kind(c->kind));
        if (n > nslots)
            n = nslots;
        if (n == 0)
            fputs("-", stdout);
        for (j = 0; j < n; j++) {
            if (j)
                putchar(' ');
            cmddump_spec(&c->specs[j]);
        }
        if (c->nspecs > nslots) {
            printf("\tnspecs %d exceeds specs[%d]", c->nspecs, (int)nslots);
        } else {
            for (j = c->nspecs; j < nslots; j++) {
                const struct cmd_keyspec *s = &c->specs[j];
                if (s->keyword || s->start || s->find || s->a || s->b || s->c) {
                    printf("\tspecs[%d] is set but nspecs is %d", (int)j, c->nspecs);
                    break;
                }
            }
        }
        putchar('\n');
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
