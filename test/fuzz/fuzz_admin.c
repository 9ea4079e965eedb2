/*
 * test/fuzz/fuzz_admin.c -- libFuzzer harness for the admin socket's command
 * interpreter.
 *
 * The input is what an admin client writes: command lines.  It is appended to
 * an admin connection's input buffer and run by admin_process, the function
 * admin_read calls; when the output bound stops it, the output is dropped (as
 * if admin_flush had written it) and processing goes on, the way the loop
 * alternates the two.  stats, stats json, metrics, backends, route and
 * clients thereby run their writers over a server state built once:
 *
 *   - the config parsed from a fixed text (three backends, one named with a
 *     quote and a backslash so the JSON and Prometheus escaping run, an admin
 *     path, table_size 1009), parsed without resolving: no DNS;
 *   - srv.backends made the way backend_apply makes them, minus the connect:
 *     backend_new per config line, slots counted from the Maglev table; one
 *     connection marked up, one failed, counters, latency samples and a
 *     last_error with control bytes filled in;
 *   - per-command stats for a few commands, and one idle client record (no
 *     socket) for `clients`.
 *
 * `reload` re-reads srv.cfg->path, which is a path that does not exist, so it
 * only ever takes the "configuration unchanged" branch (and logs an error
 * line): no backend is connected, nothing is written.  admin_close is never
 * reached (fd is -1), so nothing is closed either.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 */
#define main shardproxy_main
#include "../../shardproxy.c"
#undef main

#include "fuzz.h"

static const char fuzz_admin_conf[] =
    "# fixed config of the admin harness\n"
    "listen 127.0.0.1:6380\n"
    "listen /tmp/shardproxy-fuzz.sock\n"
    "backend 127.0.0.1:7001 name=alpha weight=2 password=s3cret db=3\n"
    "backend [::1]:7002\n"
    "backend /tmp/redis-fuzz.sock name=we\"ird\\name\n"
    "table_size 1009\n"
    "timeout 500\n"
    "admin /tmp/shardproxy-fuzz-admin.sock\n"
    "admin_mode 0660\n";

/* Never created: `reload` must fail without touching anything. */
#define FUZZ_ADMIN_PATH "/nonexistent/shardproxy-fuzz/admin.conf"

/* A client record for `clients`: no socket, never read or written. */
static struct client fuzz_client;

static void fuzz_admin_init(void)
{
    static const char *const cmds[] = {"get", "set", "mget", "ping"};
    char err[1024];
    struct config *c;
    uint64_t s;
    int i, j;

    log_threshold = LOG_ERROR;
    cmd_init();
    c = config_parse(FUZZ_ADMIN_PATH, fuzz_admin_conf, sizeof fuzz_admin_conf - 1, 0, 0, err,
                     sizeof err);
    if (!c) {
        fprintf(stderr, "fuzz_admin: fixed config does not parse: %s\n", err);
        abort();
    }
    srv.cfg = c;
    srv.nworkers = 1; /* alone: reports read this process's stats block */
    srv.ctl_fd = -1;
    stats_init(1);
    srv.start_time = time(NULL) - 3600;
    srv.now_us = clock_now_us();
    srv.admin_fd = -1;
    /* backend_apply, less bconn_connect */
    srv.backends = xmalloc(sizeof *srv.backends * (size_t)c->nbackends);
    for (i = 0; i < c->nbackends; i++) {
        struct backend *b =
            backend_new(&c->backends[i], (int)c->backend_connections, (int)c->databases,
                        (int)c->blocking_connections);
        b->index = i;
        srv.all = xrealloc(srv.all, sizeof *srv.all * (size_t)(srv.nall + 1));
        srv.all[srv.nall++] = b;
        srv.backends[i] = b;
    }
    srv.nbackends = c->nbackends;
    for (s = 0; s < c->table_size; s++)
        srv.backends[c->table[s]]->slots++;
    srv.split_child = xmalloc(sizeof *srv.split_child * (size_t)c->nbackends);
    for (i = 0; i < c->nbackends; i++)
        srv.split_child[i] = -1;
    /* something for the writers to report */
    srv.backends[0]->conns[0].state = BCONN_UP;
    srv.backends[0]->conns[0].inflight = 2;
    srv.backends[2]->conns[0].state = BCONN_BACKOFF;
    snprintf(srv.backends[2]->sh->last_error, sizeof srv.backends[2]->sh->last_error,
             "connect: \"refused\" \\ \x01\t\x7f");
    for (i = 0; i < c->nbackends; i++) {
        struct backend *b = srv.backends[i];
        b->sh->st.requests = 1000u * (unsigned)(i + 1);
        b->sh->st.responses = b->sh->st.requests - 3;
        b->sh->st.errors = 7;
        b->sh->st.bytes_in = 123456789;
        for (j = 0; j < 40; j++)
            hist_add(&b->sh->latency, (1ULL << (j % 30)) + (uint64_t)i * 17);
    }
    for (i = 0; i < (int)ARRAY_LEN(cmds); i++) {
        struct cmd_stats *cs = req_cmd_stats(cmd_find(cmds[i], strlen(cmds[i])));
        cs->calls = 10u * (unsigned)(i + 1);
        cs->errors = (unsigned)i;
        for (j = 0; j < i * 5 + 1; j++)
            hist_add(&cs->latency, (uint64_t)j * 997);
    }
    srv.st->connections_accepted = 42;
    srv.st->commands = 4242;
    fuzz_client.fd = -1;
    fuzz_client.id = 17;
    snprintf(fuzz_client.addr, sizeof fuzz_client.addr, "127.0.0.1:50000");
    fuzz_client.name = "fuzz-client";
    fuzz_client.created_us = srv.now_us - 5000000;
    fuzz_client.last_us = srv.now_us - 1000000;
    fuzz_client.npending = 1;
    srv.clients = &fuzz_client;
    srv.nclients = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready, echo;
    struct admin a;

    if (!ready) {
        fuzz_admin_init();
        echo = getenv("FUZZ_ADMIN_ECHO") != NULL; /* show the replies (debugging seeds) */
        ready = 1;
    }
    memset(&a, 0, sizeof a);
    a.fd = -1;
    buf_append(&a.in, data, size);
    for (;;) {
        size_t before = buf_len(&a.in);
        admin_process(&a);
        FUZZ_CHECK(buf_len(&a.out) <= ADMIN_OUT_MAX + 4 * 1024 * 1024,
                   "%zu bytes of output after one pass", buf_len(&a.out));
        if (echo && buf_len(&a.out) > 0)
            fwrite(a.out.data + a.out.r, 1, buf_len(&a.out), stdout);
        if (buf_len(&a.out) > 0)
            buf_consume(&a.out, buf_len(&a.out)); /* admin_flush wrote it */
        if (a.closing || buf_len(&a.in) == before)
            break;
    }
    if (!a.closing) { /* every complete line was run; what is left is short */
        FUZZ_CHECK(buf_len(&a.in) == 0 || !memchr(a.in.data + a.in.r, '\n', buf_len(&a.in)),
                   "a complete line was left unprocessed");
        FUZZ_CHECK(buf_len(&a.in) <= ADMIN_LINE_MAX, "%zu bytes of partial line kept",
                   buf_len(&a.in));
    }
    FUZZ_CHECK(srv.cfg && srv.nbackends == 3, "reload changed the running config");
    buf_free(&a.in);
    buf_free(&a.out);
    return 0;
}
