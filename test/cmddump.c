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
 *     name  arity  kind  flags  specs
 *
 * kind is the enum cmd_kind constant's name (CMD_ONE ...); flags is "write"
 * for a CMD_WRITE row, else "-".  specs is "-"
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
 * With --keys it instead reads commands from stdin, one a line, arguments
 * separated by one tab, and prints for each one line: how the proxy routes
 * it and the keys it routes on, tab-separated:
 *
 *     KIND [KEY...]       KIND as above; the keys: for CMD_ONE the argument at
 *                         specs[0].start (as the proxy's dispatch takes it),
 *                         for any other row with key specs (CMD_SAME,
 *                         CMD_SPLIT, a refused keyed command) cmd_keys()'s;
 *                         none for rows without key specs
 *     unknown             no row (cmd_find / cmd_find_sub)
 *     arity               the row's arity refuses the argument count
 *     error               cmd_keys() says the arguments do not fit
 *
 * test/keycheck.py compares that with a live redis-server's COMMAND GETKEYS.
 * Of the proxy's internals it uses only cmd_find(), cmd_find_sub(),
 * cmd_keys() and the row fields printed above.
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

/* Print how the proxy routes ARGV (see --keys above). */
static void cmddump_keys(const struct resp_arg *argv, int64_t argc)
{
    const struct command *cmd = cmd_find(argv[0].p, argv[0].len);
    int64_t *pos, n = 0, i;

    if (cmd && cmd->kind == CMD_CONTAINER && argc > 1)
        cmd = cmd_find_sub(cmd, &argv[1]);
    if (!cmd) {
        puts("unknown");
        return;
    }
    if (cmd->arity >= 0 ? argc != cmd->arity : argc < -cmd->arity) {
        puts("arity");
        return;
    }
    pos = malloc(sizeof *pos * (size_t)(argc + 1));
    if (!pos)
        abort();
    if (cmd->kind == CMD_ONE) {
        pos[n++] = cmd->specs[0].start;
    } else if (cmd->nspecs > 0) { /* CMD_SAME, CMD_SPLIT; CMD_REFUSE rows with keys */
        n = cmd_keys(cmd, argv, argc, pos);
        if (n < 0) {
            puts("error");
            free(pos);
            return;
        }
    }
    fputs(cmddump_kind(cmd->kind), stdout);
    for (i = 0; i < n; i++)
        printf("\t%.*s", (int)argv[pos[i]].len, argv[pos[i]].p);
    putchar('\n');
    free(pos);
}

/* --keys: one command per stdin line, arguments separated by tabs. */
static int cmddump_keys_main(void)
{
    static char line[65536];

    while (fgets(line, sizeof line, stdin)) {
        struct resp_arg argv[256];
        int64_t argc = 0;
        char *p = line, *end = line + strcspn(line, "\n");

        *end = '\0';
        while (argc < (int64_t)(sizeof argv / sizeof argv[0])) {
            char *tab = strchr(p, '\t');
            argv[argc].p = p;
            argv[argc].len = tab ? (size_t)(tab - p) : strlen(p);
            argc++;
            if (!tab)
                break;
            p = tab + 1;
        }
        if (argc == 0 || argv[0].len == 0)
            puts("unknown");
        else
            cmddump_keys(argv, argc);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const size_t nslots = sizeof cmd_table[0].specs / sizeof cmd_table[0].specs[0];
    size_t i, j;

    cmd_init();
    if (argc > 1 && !strcmp(argv[1], "--keys"))
        return cmddump_keys_main();
    for (i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++) {
        const struct command *c = &cmd_table[i];
        size_t n = c->nspecs;

        printf("%s\t%d\t%s\t%s\t", c->name, c->arity, cmddump_kind(c->kind),
               c->flags & CMD_WRITE ? "write" : "-");
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
