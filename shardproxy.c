/*
 * shardproxy -- a Redis sharding proxy in one C file.
 *
 * Clients speak RESP to shardproxy as if it were one Redis server.  Each
 * command is routed by its key to one of N independent Redis backends chosen
 * by a Maglev table whose placement is exactly Envoy's redis_proxy (cluster
 * lb_policy MAGLEV, hash tags on), so a deployment can swap Envoy out without
 * moving a key.  Multi-key commands are split per backend and merged; every
 * client gets its replies in request order over shared, pipelined backend
 * connections.  One event loop (epoll, kqueue or poll()), libc and POSIX only.
 *
 * Copyright (c) 2026 the shardproxy authors.  MIT licence (see LICENSE).
 *
 * Sections, bottom-up: each uses only what comes before it (two forward
 * declarations are the exceptions and say why: stats_info_merge, and
 * admin_clients, which a worker's control channel answers with; and
 * bconn_touch lives with the fd table, because client_close needs it).
 *
 *   leaves, no sockets of their own and no server state
 *     tunables and limits . utility macros
 *     clock            clock_     the monotonic clock
 *     logging          log_       timestamped lines on stderr, untrusted bytes escaped
 *     buffers          buf_       growable byte queues
 *     network I/O      net_       read/write/accept results, listening sockets
 *     event backends   ev_        epoll, kqueue or poll() behind one interface
 *     hashing          hash_      MurmurHash64A, XXH64, hash tags
 *     string sets      set_       a client's channels and patterns
 *     Maglev           maglev_    Envoy-compatible lookup table, built in resumable slices
 *     RESP parsing     resp_      resumable request and reply framing, no I/O
 *     RESP encoding    enc_       replies and requests the proxy builds
 *     histograms       hist_      fixed log-linear latency histograms
 *     command table    cmd_       the Redis 7.0 command table, key extraction
 *   the data model: config, requests (with the FIFO diagram), backend
 *     connections (with their state machine), stats X-macros, clients,
 *     admin connections, struct call, the server, signal flags
 *   the core, in the order a request meets it
 *     descriptors      fd_        the fd -> connection table
 *     request records  req_       allocation, per-command counters
 *     clients          client_    accept, close, max_clients, idle timers
 *     client output    reply_     the reply FIFO, local replies, output limit, writes
 *     completion       complete_  replies matched to records, split merges
 *     backend conns    bconn_     connect, handshake, read, write, timers
 *     stats blocks     stats_     per-process stats in one shared mapping, sums
 *     backends         backend_   the set of backends, their state, the reload swap
 *     routing          route_     key -> backend; forward, split, fan out, CROSSSLOT, WAIT
 *     pub/sub          sub_       (P|S)(UN)SUBSCRIBE, MONITOR: stream connections
 *     stats            stats_     text, JSON, Prometheus and INFO, from the X-macros
 *     local commands   local_     PING ECHO QUIT SELECT HELLO AUTH CLIENT INFO
 *     reading, dispatch input_    read, frame, look up, check, route
 *   the periphery
 *     configuration    config_    directive table (defaults, reload rule), parse, load
 *     reload           reload_    SIGHUP and admin `reload`
 *     control          ctl_       the master's control socket to each worker
 *     admin            admin_     the admin socket
 *     signals          sig_       handlers only set flags
 *     event loop       loop_      the wait, accepts, timers, one write per connection
 *     master           master_    `workers N`: fork, supervise, reload all, drain
 *     main
 *
 * The life of a GET.  loop_run waits (ev_wait); loop_event finds the client in the fd
 * table and calls input_read, which reads into the shared buffer (net_read)
 * and hands it to input_process.  resp_req_parse frames the request;
 * input_dispatch splits it into arguments (resp_req_args), finds its row
 * (cmd_find), checks arity and AUTH and calls input_route, which for a
 * one-key command calls route_forward with route_backend(key) (hash_tag,
 * hash_murmur64a, the Maglev table).  route_forward picks the client's
 * connection to that backend (bconn_pick), makes a record (req_new), puts
 * it on the client's FIFO (reply_push), appends the request's bytes to the
 * connection's output and the record to its FIFO (bconn_push).  At the end
 * of the pass loop_flush writes each connection once (bconn_flush).  When
 * the reply arrives, loop_event calls bconn_read; bconn_replies frames it
 * (resp_reply_parse) and pops the connection's FIFO head; complete_reply
 * sends it straight to the client's output when the record heads the
 * client's FIFO (reply_emit, reply_pop, reply_release), else keeps it in the
 * record; loop_flush then writes the client once (reply_flush).
 *
 * Build: cc -std=c99 -O2 shardproxy.c -o shardproxy  (no libraries).  Any
 * tunable below can be changed with -DNAME=VALUE.
 */

#define _POSIX_C_SOURCE 200809L

/* The event backend (see ev_): the platform's own, unless one is forced. */
#if !defined(EVENTS_POLL) && !defined(EVENTS_EPOLL) && !defined(EVENTS_KQUEUE)
#if defined(__linux__)
#define EVENTS_EPOLL
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#define EVENTS_KQUEUE
#else
#define EVENTS_POLL
#endif
#endif
#if defined(EVENTS_KQUEUE) && defined(__APPLE__)
#define _DARWIN_C_SOURCE /* struct kevent's types are hidden by _POSIX_C_SOURCE alone */
#endif

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) && defined(__GLIBC__) && !defined(SO_REUSEPORT)
#include <asm/socket.h> /* glibc hides SO_REUSEPORT under strict POSIX */
#endif
#if defined(EVENTS_EPOLL)
#include <sys/epoll.h>
#elif defined(EVENTS_KQUEUE)
#include <sys/event.h>
#endif

#include "shardproxy.h"

/* ================================================== tunables and limits */
/* Compile-time knobs; each may be overridden with -DNAME=VALUE. */

#ifndef READ_CHUNK
#define READ_CHUNK (64 * 1024) /* bytes asked of read() per call */
#endif
#ifndef MAX_INLINE
#define MAX_INLINE (64 * 1024) /* longest inline command line (Redis: 64 KiB) */
#endif
#ifndef RECONNECT_MIN_MS
#define RECONNECT_MIN_MS 100 /* first retry delay after a failed connect */
/* What a blocking command's reply may take past its own timeout at least,
 * whatever `timeout` says: Redis answers an expired block on its next event
 * loop pass, up to 100 ms (its cron period) late. */
#define BLOCK_GRACE_MS 500
#endif
#ifndef RECONNECT_MAX_MS
#define RECONNECT_MAX_MS 5000 /* backoff ceiling */
#endif
#ifndef PEER_CHECK_MS
#define PEER_CHECK_MS 10 /* a worker in backoff reads the others' view at most this often */
#endif
#ifndef PUBLISH_EVERY_MS
#define PUBLISH_EVERY_MS 10 /* how stale the gauges other workers read may be */
#endif
#ifndef BUF_SPARE
#define BUF_SPARE 1024 /* smallest-size buffer allocations kept for reuse (0: none, so
                          that a sanitizer sees every free) */
#endif
#ifndef DATABASES_MAX
#define DATABASES_MAX 1024 /* largest `databases`: each costs two pools per backend */
#endif
#ifndef ACCEPT_PAUSE_MS
#define ACCEPT_PAUSE_MS 100 /* accept() hit EMFILE/ENFILE: wait this long */
#endif
#ifndef ACCEPT_BATCH
#define ACCEPT_BATCH 256 /* connections accepted per loop pass at most */
#endif
#ifndef WORKERS_MAX
#define WORKERS_MAX 256 /* largest `workers` */
#endif
#ifndef WORKER_RESTART_MS
#define WORKER_RESTART_MS 1000 /* a worker that died within this of its start waits this long */
#endif
#ifndef CTL_TIMEOUT_MS
#define CTL_TIMEOUT_MS 10000 /* a worker's answer to the master (a reload may build a big table) */
#endif
#ifndef LISTEN_BACKLOG
#define LISTEN_BACKLOG 511 /* listen() backlog of the data listeners (Redis: 511) */
#endif
#ifndef MAGLEV_STEP_SLOTS
#define MAGLEV_STEP_SLOTS 100000 /* Maglev slots a reload builds per loop pass */
#endif
#ifndef DRAIN_IDLE_MS
#define DRAIN_IDLE_MS 50 /* shutdown_grace: a client idle this long is let go (half-closed) */
#endif
#ifndef SHUTDOWN_GRACE_MS
#define SHUTDOWN_GRACE_MS 10000 /* drain bound on SIGTERM when timeout is 0 */
#endif
#ifndef REPLY_ERR_MAX
#define REPLY_ERR_MAX 512 /* longest error line the proxy builds */
#endif
#ifndef SPLIT_INLINE_KEYS
#define SPLIT_INLINE_KEYS 16 /* split key maps up to this size need no malloc */
#endif
#ifndef CLIENT_IDLE_US
#define CLIENT_IDLE_US 1000000 /* a client quiet this long gives its buffers back */
#endif
#ifndef CLIENT_TIMER_US
#define CLIENT_TIMER_US 100000 /* how often client timers run */
#endif
#ifndef CLIENT_FD_RESERVE
#define CLIENT_FD_RESERVE 32 /* descriptors kept from clients for reconnects and refusals (Redis: 32) */
#endif
#ifndef PREAUTH_MAX_ARGS
#define PREAUTH_MAX_ARGS 10 /* before AUTH: most arguments in a request (Redis's limit) */
#endif
#ifndef PREAUTH_MAX_BULK
#define PREAUTH_MAX_BULK (16 * 1024) /* before AUTH: largest argument (Redis's limit) */
#endif
#ifndef PREAUTH_MAX_REQUEST
#define PREAUTH_MAX_REQUEST (PREAUTH_MAX_BULK * (PREAUTH_MAX_ARGS + 1)) /* before AUTH: largest request */
#endif
#ifndef ADMIN_MAX_CONNS
#define ADMIN_MAX_CONNS 256 /* admin connections at once */
#endif
#ifndef ADMIN_LINE_MAX
#define ADMIN_LINE_MAX 4096 /* longest admin command line */
#endif
#ifndef ADMIN_OUT_MAX
#define ADMIN_OUT_MAX (1 << 20) /* unwritten admin reply bytes before reading pauses */
#endif
#ifndef ADMIN_BACKLOG
#define ADMIN_BACKLOG 64 /* listen() backlog of the admin socket */
#endif
#ifndef EV_BATCH
#define EV_BATCH 1024 /* events taken from epoll/kqueue per wait; the rest wait a pass */
#endif
#ifndef REPORT_CHUNK
#define REPORT_CHUNK 512 /* SIGUSR1 report bytes written per write(), never more than PIPE_BUF */
#endif

/* ======================================================= utility macros */
/* Small helpers every section uses. */

#define UNUSED(x) ((void)(x))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__) || defined(__clang__)

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))

#else

#define PRINTF_LIKE(f, a)
#define NORETURN

#endif

/* ================================================================ clock */
/* clock_: the monotonic clock the loop reads once per pass. */

static uint64_t clock_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ============================================================== logging */
/* Timestamped lines on stderr, untrusted bytes escaped; fatal startup errors; allocation. */

/* Severity of a log line; the config's log_level drops what is above it. */
enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

static enum log_level log_threshold = LOG_INFO; /* set from the config */
static char log_tag[24];                        /* "worker N: " in a worker, else "" */

/* Write one line "2026-11-24T15:40:00.123Z [level] message" to stderr. */
static void log_at(enum log_level level, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void log_at(enum log_level level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (level > log_threshold)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] %s",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000L, names[level], log_tag);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

/* Copy at most OUTLEN-1 printable characters of untrusted bytes into OUT,
 * escaping everything else as \xHH, so client data can never forge log
 * lines or terminal escapes.  Long input is cut and marked with "...". */
static const char *log_escape(const char *p, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;

    for (i = 0; i < len && o + 8 < outlen; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    if (i < len && o + 4 <= outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* Fatal error: log and exit 1.  Used during startup, and once the loop
 * runs only when the event wait itself fails (or a listener or backend
 * connection cannot be registered with it), when nothing can go on. */
static NORETURN void die(const char *fmt, ...) PRINTF_LIKE(1, 2);
static NORETURN void die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_at(LOG_ERROR, "%s", msg);
    exit(1);
}

/* malloc that treats exhaustion as fatal.  Out of memory with a bounded
 * design means the limits are wrong for the machine; limping on would
 * misdeliver replies, which is worse than a restart. */
static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        log_at(LOG_ERROR, "out of memory allocating %zu bytes", n);
        abort();
    }
    return p;
}

static void *xrealloc(void *old, size_t n)
{
    void *p = realloc(old, n ? n : 1);
    if (!p) {
        log_at(LOG_ERROR, "out of memory allocating %zu bytes", n);
        abort();
    }
    return p;
}

/* calloc, likewise: zeroed memory whose pages are touched only when used. */
static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        log_at(LOG_ERROR, "out of memory allocating %zu x %zu bytes", n, size);
        abort();
    }
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ============================================================== buffers */
/* buf_: growable byte queues; an idle one holds no memory. */

/* A byte queue: bytes [r, w) of data are pending; cap is the allocation.
 * An empty buffer may hold no allocation at all (data == NULL), which is how
 * idle clients keep their memory near zero. */
struct buf {
    char *data; /* allocation, or NULL */
    size_t r;   /* first unread byte */
    size_t w;   /* one past the last written byte */
    size_t cap; /* bytes allocated */
};

/* The first allocation of every buffer. */
#define BUF_MIN 256

/* Allocations of BUF_MIN bytes given back, kept for the next buffer that
 * needs one.  A client at -P 1 takes its output buffer for each reply and
 * gives it back once written (so an idle client holds none); a loop pass
 * does that for many clients at once, which is more than malloc's own
 * per-size cache holds, and the chunks would go through its slower general
 * bins each time.  A leaf's only state: it holds memory, not connections. */
#if BUF_SPARE > 0
static struct {
    char *p[BUF_SPARE]; /* spare allocations */
    int n;              /* entries in p */
} buf_spare;
#endif

/* A spare BUF_MIN allocation, or NULL. */
static char *buf_spare_get(void)
{
#if BUF_SPARE > 0
    if (buf_spare.n > 0)
        return buf_spare.p[--buf_spare.n];
#endif
    return NULL;
}

/* Keep P, a BUF_MIN allocation, for a later buffer; else free it. */
static void buf_spare_put(char *p)
{
#if BUF_SPARE > 0
    if (buf_spare.n < BUF_SPARE) {
        buf_spare.p[buf_spare.n++] = p;
        return;
    }
#endif
    free(p);
}

static size_t buf_len(const struct buf *b) { return b->w - b->r; }

/* Make room for at least N more bytes after w, compacting before growing. */
static void buf_reserve(struct buf *b, size_t n)
{
    size_t cap;

    if (b->cap - b->w >= n)
        return;
    if (b->r > 0) { /* slide pending bytes to the front */
        memmove(b->data, b->data + b->r, b->w - b->r);
        b->w -= b->r;
        b->r = 0;
        if (b->cap - b->w >= n)
            return;
    }
    if (b->cap == 0 && n <= BUF_MIN && (b->data = buf_spare_get()) != NULL) {
        b->cap = BUF_MIN;
        return;
    }
    cap = b->cap ? b->cap : BUF_MIN;
    while (cap - b->w < n)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    buf_reserve(b, n);
    memcpy(b->data + b->w, p, n);
    b->w += n;
}

static void buf_append_str(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

static void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->data + b->w, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->w += (size_t)n;
}

/* Drop N bytes from the front; an emptied buffer rewinds to offset 0. */
static void buf_consume(struct buf *b, size_t n)
{
    b->r += n;
    if (b->r == b->w)
        b->r = b->w = 0;
}

/* Give B's allocation back: to the spare list if it has the first size. */
static void buf_free(struct buf *b)
{
    if (b->cap == BUF_MIN)
        buf_spare_put(b->data);
    else
        free(b->data);
    b->data = NULL;
    b->r = b->w = b->cap = 0;
}

/* Free the spare list (at exit, for leak checkers). */
static void buf_spare_free(void)
{
    char *p;

    while ((p = buf_spare_get()) != NULL)
        free(p);
}

/* ========================================================== network I/O */
/* net_: every socket call and its errno triage in one place. */

/* What a read, write or accept came to.  Callers decide what each means for
 * their connection; none of them looks at errno except to log it. */
enum net_result {
    NET_OK,    /* bytes moved (or a descriptor accepted) */
    NET_AGAIN, /* nothing now: wait for readiness (EAGAIN, EWOULDBLOCK) */
    NET_EOF,   /* read: the peer closed its side */
    NET_ERR    /* the socket is broken; errno says why */
};

static int net_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* TCP options for every proxied TCP socket, client or backend: no Nagle
 * delay (a proxy adds latency enough), and keepalive so a peer that vanished
 * without a FIN is found eventually. */
static void net_tcp_options(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

/* read() up to N bytes into P; *GOT is set on NET_OK.  EINTR is retried. */
static enum net_result net_read(int fd, char *p, size_t n, size_t *got)
{
    for (;;) {
        ssize_t r = read(fd, p, n);
        if (r > 0) {
            *got = (size_t)r;
            return NET_OK;
        }
        if (r == 0)
            return NET_EOF;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? NET_AGAIN : NET_ERR;
    }
}

/* One write() of up to N bytes from P; *PUT is set on NET_OK. */
static enum net_result net_write(int fd, const char *p, size_t n, size_t *put)
{
    for (;;) {
        ssize_t r = write(fd, p, n);
        if (r >= 0) {
            *put = (size_t)r;
            return r > 0 || n == 0 ? NET_OK : NET_AGAIN;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? NET_AGAIN : NET_ERR;
    }
}

/* accept() one connection from LFD into *FD (and its peer into *SS, if
 * given).  NET_AGAIN: none waiting, or one that aborted before we took it;
 * NET_ERR: the process is out of descriptors or memory (errno says which). */
static enum net_result net_accept(int lfd, int *fd, struct sockaddr_storage *ss)
{
    for (;;) {
        socklen_t len = sizeof *ss;
        *fd = accept(lfd, (struct sockaddr *)ss, &len);
        if (*fd >= 0)
            return NET_OK;
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        return errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM
                   ? NET_ERR
                   : NET_AGAIN;
    }
}

/* Is something listening on the UNIX socket PATH?  A socket file left by a
 * process that died refuses the connect; a live one accepts it. */
static int net_unix_in_use(const struct sockaddr_un *un)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), live;

    if (fd < 0)
        return 0;
    live = connect(fd, (const struct sockaddr *)un, sizeof *un) == 0;
    close(fd);
    return live;
}

/* The socket option that lets several sockets listen on one TCP address
 * with the kernel spreading connections over them: Linux's SO_REUSEPORT,
 * FreeBSD's SO_REUSEPORT_LB.  Elsewhere (where SO_REUSEPORT only lets the
 * last socket win) and with -DNET_NO_REUSEPORT, workers share one
 * inherited listening socket instead. */
#if defined(NET_NO_REUSEPORT)
#undef NET_REUSEPORT
#elif defined(SO_REUSEPORT_LB)
#define NET_REUSEPORT SO_REUSEPORT_LB
#elif defined(SO_REUSEPORT) && defined(__linux__)
#define NET_REUSEPORT SO_REUSEPORT
#endif

#if defined(NET_REUSEPORT)
#define NET_SHARING "reuseport" /* -V: how workers share a TCP listen address */
#else
#define NET_SHARING "shared"
#endif

/* A non-blocking listening socket on SA.  For a UNIX path: a stale socket
 * file is replaced, a live one (another proxy serving it) or a file that is
 * not a socket is an error; with MODE non-zero the socket is created
 * owner-only and then given MODE, so it is never reachable with a looser
 * mode, even briefly.  With REUSEPORT (TCP, where NET_REUSEPORT exists)
 * more sockets may listen on the same address.  Returns the descriptor, or
 * -1 with the reason in ERR. */
static int net_listen(const struct sockaddr_storage *sa, socklen_t salen, int backlog,
                      unsigned mode, int reuseport, char *err, size_t errlen)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    int fd, one = 1, rc;
    struct stat st;
    mode_t old = 0;

    if (sa->ss_family == AF_UNIX && lstat(un->sun_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "exists and is not a socket");
            return -1;
        }
        if (net_unix_in_use(un)) {
            snprintf(err, errlen, "in use by a running process");
            return -1;
        }
        unlink(un->sun_path); /* stale, from an earlier run */
    }
    fd = socket(sa->ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (sa->ss_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
#if defined(NET_REUSEPORT)
    if (reuseport && sa->ss_family != AF_UNIX &&
        setsockopt(fd, SOL_SOCKET, NET_REUSEPORT, &one, sizeof one) < 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        return -1;
    }
#else
    UNUSED(reuseport);
#endif
    if (mode)
        old = umask(0177);
    rc = bind(fd, (const struct sockaddr *)sa, salen);
    if (mode)
        umask(old);
    if (rc < 0) {
        snprintf(err, errlen, "bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if ((mode && chmod(un->sun_path, (mode_t)mode) < 0) || listen(fd, backlog) < 0 ||
        net_nonblock(fd) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ======================================================= event backends */
/* ev_: readiness for many descriptors, behind one interface with three
 * implementations chosen at compile time (like Redis's ae): epoll on
 * Linux, kqueue on the BSDs and macOS, poll() anywhere (-DEVENTS_POLL, or
 * `make EVENTS=poll`).  Registration is incremental: the loop says what a
 * descriptor's interest is now (ev_set) and a system call is made only
 * when that differs from what is registered, so a pass costs what its
 * active descriptors cost, not what every open one does.  Level-triggered
 * everywhere: what is not handled in one pass is reported in the next. */

#define EV_READ 1u  /* interest and event: readable (or EOF) */
#define EV_WRITE 2u /* interest and event: writable (or a connect finished) */
#define EV_ERR 4u   /* event only: hang-up or error, reported whatever the interest */

/* One descriptor's events from the last ev_wait. */
struct ev_fired {
    int fd;        /* the descriptor */
    unsigned mask; /* EV_READ | EV_WRITE | EV_ERR */
};

/* The backend's state, sized for descriptors 0 .. maxfds-1. */
static struct ev_state {
    uint8_t *mask;           /* fd -> registered interest, EV_ERR set when registered at all */
    struct ev_fired *fired;  /* what the last ev_wait returned */
#if defined(EVENTS_EPOLL)
    int epfd;                   /* the epoll instance */
    struct epoll_event *events; /* epoll_wait's array, EV_BATCH entries */
#elif defined(EVENTS_KQUEUE)
    int kq;                  /* the kqueue */
    struct kevent *events;   /* kevent's output array, EV_BATCH entries */
#else
    struct pollfd *pfds;     /* dense array of registered descriptors */
    uint32_t *pidx;          /* fd -> its index in pfds */
    size_t npfds;            /* entries in pfds */
    size_t cap;              /* allocation of pfds and fired */
#endif
} ev;

#if defined(EVENTS_EPOLL)
#define EV_BACKEND "epoll"
#elif defined(EVENTS_KQUEUE)
#define EV_BACKEND "kqueue"
#else
#define EV_BACKEND "poll"
#endif

/* Set up for descriptors below MAXFDS.  Returns 0, or -1 with errno. */
static int ev_init(int maxfds)
{
    ev.mask = xcalloc((size_t)maxfds, 1); /* pages of fds never opened stay untouched */
#if defined(EVENTS_EPOLL)
    ev.fired = xmalloc(sizeof *ev.fired * EV_BATCH);
    ev.events = xmalloc(sizeof *ev.events * EV_BATCH);
    ev.epfd = epoll_create1(EPOLL_CLOEXEC);
    return ev.epfd < 0 ? -1 : 0;
#elif defined(EVENTS_KQUEUE)
    ev.fired = xmalloc(sizeof *ev.fired * EV_BATCH);
    ev.events = xmalloc(sizeof *ev.events * EV_BATCH);
    ev.kq = kqueue();
    if (ev.kq >= 0)
        fcntl(ev.kq, F_SETFD, FD_CLOEXEC);
    return ev.kq < 0 ? -1 : 0;
#else
    ev.pidx = xmalloc(sizeof *ev.pidx * (size_t)maxfds);
    return 0;
#endif
}

/* Release what ev_init made. */
static void ev_free(void)
{
#if defined(EVENTS_EPOLL)
    close(ev.epfd);
    free(ev.events);
#elif defined(EVENTS_KQUEUE)
    close(ev.kq);
    free(ev.events);
#else
    free(ev.pfds);
    free(ev.pidx);
#endif
    free(ev.fired);
    free(ev.mask);
    memset(&ev, 0, sizeof ev);
}

#if defined(EVENTS_KQUEUE)
/* Add (ON) or delete FD's FILTER.  Returns kevent's result. */
static int ev_kqueue_filter(int fd, short filter, int on)
{
    struct kevent ke;

    EV_SET(&ke, (uintptr_t)fd, filter, on ? EV_ADD : EV_DELETE, 0, 0, NULL);
    return kevent(ev.kq, &ke, 1, NULL, 0, NULL);
}
#endif

/* Make FD's interest exactly WANT (EV_READ | EV_WRITE, or 0: hang-ups
 * only), registering FD the first time.  Returns 0, or -1 with errno when
 * the kernel refuses (out of memory, or epoll's max_user_watches). */
static int ev_set(int fd, unsigned want)
{
    unsigned had = ev.mask[fd];
    unsigned now = want | EV_ERR; /* EV_ERR marks "registered" */

    if (had == now)
        return 0;
#if defined(EVENTS_EPOLL)
    {
        struct epoll_event ee;

        memset(&ee, 0, sizeof ee);
        ee.events = (want & EV_READ ? EPOLLIN : 0u) | (want & EV_WRITE ? EPOLLOUT : 0u);
        ee.data.fd = fd;
        if (epoll_ctl(ev.epfd, had ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ee) < 0)
            return -1;
    }
#elif defined(EVENTS_KQUEUE)
    if (((had ^ now) & EV_READ) && ev_kqueue_filter(fd, EVFILT_READ, (int)(now & EV_READ)) < 0)
        return -1;
    if (((had ^ now) & EV_WRITE) && ev_kqueue_filter(fd, EVFILT_WRITE, (int)(now & EV_WRITE)) < 0)
        return -1;
#else
    if (!had) {
        if (ev.npfds == ev.cap) {
            ev.cap = ev.cap ? ev.cap * 2 : 256;
            ev.pfds = xrealloc(ev.pfds, sizeof *ev.pfds * ev.cap);
            ev.fired = xrealloc(ev.fired, sizeof *ev.fired * ev.cap);
        }
        ev.pidx[fd] = (uint32_t)ev.npfds;
        ev.pfds[ev.npfds].fd = fd;
        ev.pfds[ev.npfds].revents = 0;
        ev.npfds++;
    }
    ev.pfds[ev.pidx[fd]].events =
        (short)((want & EV_READ ? POLLIN : 0) | (want & EV_WRITE ? POLLOUT : 0));
#endif
    ev.mask[fd] = (uint8_t)now;
    return 0;
}

/* Forget FD before it is closed.  epoll needs the explicit delete: it
 * keys registrations on the open file, which a forked process may still
 * hold after this one closes its descriptor. */
static void ev_del(int fd)
{
    unsigned had = ev.mask[fd];

    if (!had)
        return;
#if defined(EVENTS_EPOLL)
    epoll_ctl(ev.epfd, EPOLL_CTL_DEL, fd, NULL);
#elif defined(EVENTS_KQUEUE)
    if (had & EV_READ)
        (void)ev_kqueue_filter(fd, EVFILT_READ, 0);
    if (had & EV_WRITE)
        (void)ev_kqueue_filter(fd, EVFILT_WRITE, 0);
#else
    {
        uint32_t i = ev.pidx[fd];
        ev.pfds[i] = ev.pfds[--ev.npfds]; /* the last entry fills the hole */
        ev.pidx[ev.pfds[i].fd] = i;
    }
#endif
    ev.mask[fd] = 0;
}

/* Wait up to TIMEOUT_MS (-1: forever) for events; they are left in
 * ev.fired.  Returns how many (0 on timeout or a signal). */
static int ev_wait(int timeout_ms)
{
    int n = 0;
#if defined(EVENTS_EPOLL)
    int i, rc = epoll_wait(ev.epfd, ev.events, EV_BATCH, timeout_ms);

    if (rc < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    for (i = 0; i < rc; i++) {
        uint32_t e = ev.events[i].events;
        ev.fired[n].fd = ev.events[i].data.fd;
        ev.fired[n++].mask = (e & EPOLLIN ? EV_READ : 0u) | (e & EPOLLOUT ? EV_WRITE : 0u) |
                             (e & (EPOLLERR | EPOLLHUP) ? EV_ERR : 0u);
    }
#elif defined(EVENTS_KQUEUE)
    struct timespec ts, *tp = NULL;
    int i, rc;

    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    rc = kevent(ev.kq, NULL, 0, ev.events, EV_BATCH, tp);
    if (rc < 0 && errno != EINTR)
        die("kevent: %s", strerror(errno));
    /* one kevent per filter: a descriptor both readable and writable comes
     * twice, which the loop handles like two passes over it */
    for (i = 0; i < rc; i++) {
        const struct kevent *ke = &ev.events[i];
        ev.fired[n].fd = (int)ke->ident;
        ev.fired[n++].mask = (ke->filter == EVFILT_READ ? EV_READ : EV_WRITE) |
                             (ke->flags & (EV_EOF | EV_ERROR) ? EV_ERR : 0u);
    }
#else
    size_t i;
    int rc = poll(ev.pfds, (nfds_t)ev.npfds, timeout_ms);
    if (rc < 0 && errno != EINTR)
        die("poll: %s", strerror(errno));
    for (i = 0; rc > 0 && i < ev.npfds; i++) {
        short e = ev.pfds[i].revents;
        if (!e)
            continue;
        ev.fired[n].fd = ev.pfds[i].fd;
        ev.fired[n++].mask = (e & POLLIN ? EV_READ : 0u) | (e & POLLOUT ? EV_WRITE : 0u) |
                             (e & (POLLERR | POLLHUP | POLLNVAL) ? EV_ERR : 0u);
    }
#endif
    return n;
}

/* ============================================================== hashing */
/* hash_: MurmurHash64A (keys), XXH64 (Maglev permutations), hash tags. */

static uint64_t hash_load64le(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

static uint64_t hash_load32le(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

static uint64_t hash_shift_mix(uint64_t v) { return v ^ (v >> 47); }

uint64_t hash_murmur64a(const void *data, size_t len, uint64_t seed)
{
    const uint64_t m = 0xc6a4a7935bd1e995ULL;
    const unsigned char *p = data;
    uint64_t h = seed ^ (len * m);
    size_t blocks = len / 8, i;

    for (i = 0; i < blocks; i++, p += 8) {
        h ^= hash_shift_mix(hash_load64le(p) * m) * m;
        h *= m;
    }
    if (len & 7) { /* the tail, read little-endian as one integer */
        uint64_t tail = 0;
        size_t n = len & 7;
        while (n--)
            tail = (tail << 8) | p[n];
        h ^= tail;
        h *= m;
    }
    h = hash_shift_mix(h) * m;
    return hash_shift_mix(h);
}

#define XXH_P1 0x9E3779B185EBCA87ULL
#define XXH_P2 0xC2B2AE3D27D4EB4FULL
#define XXH_P3 0x165667B19E3779F9ULL
#define XXH_P4 0x85EBCA77C2B2AE63ULL
#define XXH_P5 0x27D4EB2F165667C5ULL

static uint64_t hash_rotl(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

static uint64_t hash_xxh_round(uint64_t acc, uint64_t lane)
{
    acc += lane * XXH_P2;
    return hash_rotl(acc, 31) * XXH_P1;
}

static uint64_t hash_xxh_merge(uint64_t acc, uint64_t v)
{
    acc ^= hash_xxh_round(0, v);
    return acc * XXH_P1 + XXH_P4;
}

uint64_t hash_xxh64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data, *end = p + len;
    uint64_t h;

    if (len >= 32) { /* four parallel lanes over 32-byte stripes */
        uint64_t v1 = seed + XXH_P1 + XXH_P2, v2 = seed + XXH_P2, v3 = seed, v4 = seed - XXH_P1;
        do {
            v1 = hash_xxh_round(v1, hash_load64le(p));
            v2 = hash_xxh_round(v2, hash_load64le(p + 8));
            v3 = hash_xxh_round(v3, hash_load64le(p + 16));
            v4 = hash_xxh_round(v4, hash_load64le(p + 24));
            p += 32;
        } while (end - p >= 32);
        h = hash_rotl(v1, 1) + hash_rotl(v2, 7) + hash_rotl(v3, 12) + hash_rotl(v4, 18);
        h = hash_xxh_merge(h, v1);
        h = hash_xxh_merge(h, v2);
        h = hash_xxh_merge(h, v3);
        h = hash_xxh_merge(h, v4);
    } else {
        h = seed + XXH_P5;
    }
    h += (uint64_t)len;
    for (; end - p >= 8; p += 8) {
        h ^= hash_xxh_round(0, hash_load64le(p));
        h = hash_rotl(h, 27) * XXH_P1 + XXH_P4;
    }
    if (end - p >= 4) {
        h ^= hash_load32le(p) * XXH_P1;
        h = hash_rotl(h, 23) * XXH_P2 + XXH_P3;
        p += 4;
    }
    for (; p < end; p++) {
        h ^= (uint64_t)*p * XXH_P5;
        h = hash_rotl(h, 11) * XXH_P1;
    }
    h ^= h >> 33;
    h *= XXH_P2;
    h ^= h >> 29;
    h *= XXH_P3;
    h ^= h >> 32;
    return h;
}

size_t hash_tag(const char *key, size_t len, const char **start)
{
    const char *open = memchr(key, '{', len), *close;

    *start = key;
    if (!open)
        return len;
    close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
    if (!close || close == open + 1)
        return len;
    *start = open + 1;
    return (size_t)(close - open - 1);
}

/* ========================================================== string sets */
/* set_: the channels and patterns a client subscribed to: byte strings,
 * chained hash buckets (a client may subscribe to very many). */

/* One member. */
struct set_node {
    struct set_node *next; /* next in its bucket */
    uint64_t hash;         /* hash_murmur64a of the bytes */
    const void *tag;       /* what the owner keeps with it (a channel: the backend
                              it was subscribed on) */
    size_t len;            /* bytes in data */
    char data[];           /* the member */
};

/* A set of byte strings. */
struct set {
    struct set_node **bucket; /* nbucket chains */
    size_t nbucket;           /* a power of two, or 0 before the first add */
    size_t n;                 /* members */
};

/* Where member P[0..LEN) with hash H is, or would be linked, in S. */
static struct set_node **set_slot(const struct set *s, const char *p, size_t len, uint64_t h)
{
    struct set_node **np = &s->bucket[h & (s->nbucket - 1)];

    while (*np && ((*np)->hash != h || (*np)->len != len || memcmp((*np)->data, p, len)))
        np = &(*np)->next;
    return np;
}

/* The member P[0..LEN) of S, or NULL. */
static struct set_node *set_find(const struct set *s, const char *p, size_t len)
{
    return s->n ? *set_slot(s, p, len, hash_murmur64a(p, len, HASH_SEED)) : NULL;
}

/* Double S's buckets (from none to 8), relinking every member. */
static void set_grow(struct set *s)
{
    size_t nb = s->nbucket ? s->nbucket * 2 : 8, i;
    struct set_node **b = xcalloc(nb, sizeof *b), *nd, *next;

    for (i = 0; i < s->nbucket; i++)
        for (nd = s->bucket[i]; nd; nd = next) {
            next = nd->next;
            nd->next = b[nd->hash & (nb - 1)];
            b[nd->hash & (nb - 1)] = nd;
        }
    free(s->bucket);
    s->bucket = b;
    s->nbucket = nb;
}

/* Add P[0..LEN) to S with TAG.  Returns 1 if it was not a member (else
 * the member keeps its tag). */
static int set_add(struct set *s, const char *p, size_t len, const void *tag)
{
    uint64_t h = hash_murmur64a(p, len, HASH_SEED);
    struct set_node **np, *nd;

    if (s->n >= s->nbucket)
        set_grow(s);
    np = set_slot(s, p, len, h);
    if (*np)
        return 0;
    nd = xmalloc(sizeof *nd + len);
    nd->next = NULL;
    nd->hash = h;
    nd->tag = tag;
    nd->len = len;
    memcpy(nd->data, p, len);
    *np = nd;
    s->n++;
    return 1;
}

/* Remove P[0..LEN) from S.  Returns 1 if it was a member. */
static int set_del(struct set *s, const char *p, size_t len)
{
    struct set_node **np, *nd;

    if (!s->n)
        return 0;
    np = set_slot(s, p, len, hash_murmur64a(p, len, HASH_SEED));
    if (!(nd = *np))
        return 0;
    *np = nd->next;
    free(nd);
    s->n--;
    return 1;
}

static void set_free(struct set *s)
{
    size_t i;
    struct set_node *nd, *next;

    for (i = 0; i < s->nbucket; i++)
        for (nd = s->bucket[i]; nd; nd = next) {
            next = nd->next;
            free(nd);
        }
    free(s->bucket);
    s->bucket = NULL;
    s->nbucket = s->n = 0;
}

/* =============================================================== Maglev */
/* maglev_: Envoy-compatible lookup table construction. */

int maglev_is_prime(uint64_t n)
{
    uint64_t d;

    if (n < 2)
        return 0;
    for (d = 2; d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

/* One backend's walk through its permutation while the table fills. */
struct maglev_entry {
    const char *id;  /* identity string, the sort key */
    int index;       /* position in the caller's (config) order */
    double weight;   /* weight / sum of weights */
    double target;   /* fill credit consumed so far */
    uint64_t offset; /* XXH64(id, 0) % m */
    uint64_t skip;   /* XXH64(id, 1) % (m - 1) + 1 */
    uint64_t next;   /* next permutation index to try */
};

static int maglev_cmp(const void *a, const void *b)
{
    return strcmp(((const struct maglev_entry *)a)->id, ((const struct maglev_entry *)b)->id);
}

/* A Maglev table being built, resumable: maglev_start, then maglev_step
 * until it says done, so a big table (5,000,011 slots) is built a slice per
 * loop pass instead of stalling the loop. */
struct maglev_state {
    uint16_t *table;         /* the table being filled (the caller's) */
    uint32_t m;              /* its size, prime */
    int n;                   /* backends */
    struct maglev_entry *e;  /* their walks, sorted by identity; NULL once done */
    double max_w;            /* the largest normalized weight */
    uint64_t cleared;        /* slots set to empty so far (the first phase) */
    uint64_t filled;         /* slots given a backend so far */
    uint64_t iteration;      /* round of the fill (credits grow by one each round) */
    int i;                   /* next entry to consider in this round */
    uint32_t *owned;         /* slots each backend got so far, in the caller's order (the
                                caller's once done: it frees them) */
};

#define MAGLEV_EMPTY UINT16_MAX

/* Start building into TABLE[0..M) for N backends with identities IDS and
 * WEIGHTS (the strings must outlive the build).  Returns 0, or -1 on bad
 * arguments (S is then untouched). */
static int maglev_start(struct maglev_state *s, uint16_t *table, uint32_t m,
                        const char *const *ids, const uint32_t *weights, int n)
{
    double sum = 0;
    int i;

    if (n <= 0 || n > MAGLEV_MAX_BACKENDS || m < (uint32_t)n || m < 2 || m > MAGLEV_MAX_SIZE ||
        !maglev_is_prime(m))
        return -1;
    for (i = 0; i < n; i++) {
        if (weights[i] == 0)
            return -1;
        sum += weights[i];
    }
    memset(s, 0, sizeof *s);
    s->table = table;
    s->m = m;
    s->n = n;
    s->iteration = 1;
    s->e = xmalloc(sizeof *s->e * (size_t)n);
    s->owned = xcalloc((size_t)n, sizeof *s->owned);
    for (i = 0; i < n; i++) {
        struct maglev_entry *e = &s->e[i];
        size_t len = strlen(ids[i]);
        e->id = ids[i];
        e->index = i;
        e->weight = weights[i] / sum;
        e->target = 0.0;
        e->offset = hash_xxh64(ids[i], len, 0) % m;
        e->skip = hash_xxh64(ids[i], len, 1) % (m - 1) + 1;
        e->next = 0;
        if (e->weight > s->max_w)
            s->max_w = e->weight;
    }
    qsort(s->e, (size_t)n, sizeof *s->e, maglev_cmp);
    return 0;
}

/* Do at most about BUDGET slots' worth of S's work (clearing, then
 * probing).  Returns 1 when the table is complete (S's memory freed), 0
 * while more remains. */
static int maglev_step(struct maglev_state *s, uint64_t budget)
{
    for (; s->cleared < s->m && budget > 0; s->cleared++, budget--)
        s->table[s->cleared] = MAGLEV_EMPTY;
    while (s->filled < s->m && budget > 0) {
        struct maglev_entry *e = &s->e[s->i];
        uint64_t c;
        if (s->i + 1 == s->n) { /* the round ends after this entry */
            s->i = 0;
        } else {
            s->i++;
        }
        budget -= budget > 1; /* looking at an entry costs too, skipped or not */
        if ((double)s->iteration * e->weight >= e->target) {
            e->target += s->max_w;
            c = (e->offset + e->skip * e->next) % s->m;
            while (s->table[c] != MAGLEV_EMPTY) {
                e->next++;
                c = (e->offset + e->skip * e->next) % s->m;
                budget -= budget > 1;
            }
            s->table[c] = (uint16_t)e->index;
            s->owned[e->index]++;
            e->next++;
            s->filled++;
            budget--;
        }
        if (s->i == 0)
            s->iteration++;
    }
    if (s->filled < s->m || s->cleared < s->m)
        return 0;
    free(s->e);
    s->e = NULL;
    return 1;
}

int maglev_build(uint16_t *table, uint32_t m, const char *const *ids, const uint32_t *weights,
                 int n)
{
    struct maglev_state s;

    if (maglev_start(&s, table, m, ids, weights, n) < 0)
        return -1;
    while (!maglev_step(&s, UINT64_MAX))
        ;
    free(s.owned);
    return 0;
}

/* ========================================================= RESP parsing */
/* resp_: resumable request and reply framing; no I/O, no copies. */

/* Parse a decimal integer that must fill [p, p+n) exactly: an optional '-'
 * and 1..19 digits, no overflow.  Returns 0 on success, -1 otherwise. */
static int resp_parse_ll(const char *p, size_t n, int64_t *out)
{
    uint64_t v = 0, limit;
    int neg = 0;
    size_t i = 0;

    if (n > 0 && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 19)
        return -1;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
        if (v > limit) /* 19 digits cannot wrap a uint64 first */
            return -1;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* Request parser states. */
enum { RQ_START, RQ_ARRAY_LEN, RQ_BULK_LEN, RQ_BULK_DATA, RQ_INLINE };

/* Longest "*<count>" or "$<len>" header line we wait for (Redis: 64 KiB). */
#define RESP_MAX_HEADER 64

void resp_req_init(struct resp_req_parser *p) { memset(p, 0, sizeof *p); }

/* Find the line that starts at buf[pos]: returns the offset of its '\n', or
 * -1 if not there yet.  The line must end in "\r\n" for RESP headers. */
static long resp_find_nl(const char *buf, size_t pos, size_t len)
{
    const char *nl = memchr(buf + pos, '\n', len - pos);
    return nl ? (long)(nl - buf) : -1;
}

/* Parse a "<type><number>\r\n" header line at buf[p->pos]. */
static enum resp_result resp_req_header(struct resp_req_parser *p, const char *buf, size_t len,
                                        int64_t *num)
{
    long nl = resp_find_nl(buf, p->pos, len);

    if (nl < 0) {
        if (len - p->pos > RESP_MAX_HEADER) {
            p->err = buf[p->pos] == '*' ? "too big mbulk count string"
                                        : "too big bulk count string";
            return RESP_ERROR;
        }
        return RESP_AGAIN;
    }
    /* no sign at all: "-0" parses as 0 but is no length (Redis rejects it too) */
    if ((size_t)nl < p->pos + 2 || buf[nl - 1] != '\r' || buf[p->pos + 1] == '-' ||
        resp_parse_ll(buf + p->pos + 1, (size_t)nl - 1 - p->pos - 1, num) != 0) {
        p->err = buf[p->pos] == '*' ? "invalid multibulk length" : "invalid bulk length";
        return RESP_ERROR;
    }
    p->pos = (size_t)nl + 1;
    return RESP_OK;
}

enum resp_result resp_req_parse(struct resp_req_parser *p, const char *buf, size_t len,
                                const struct resp_limits *lim)
{
    int64_t n;
    enum resp_result r;

    for (;;) {
        if (p->pos >= len && p->state != RQ_BULK_DATA)
            return RESP_AGAIN;
        switch (p->state) {
        case RQ_START:
            if (buf[0] == '*') {
                p->state = RQ_ARRAY_LEN;
            } else {
                p->state = RQ_INLINE;
                p->inline_req = 1;
            }
            break;
        case RQ_ARRAY_LEN:
            if ((r = resp_req_header(p, buf, len, &n)) != RESP_OK)
                return r;
            /* each element takes at least 6 bytes ("$0\r\n\r\n") */
            if (n < 0 || (uint64_t)n > lim->max_request / 6 || n > INT32_MAX) {
                p->err = "invalid multibulk length";
                return RESP_ERROR;
            }
            if (lim->max_args && (uint64_t)n > lim->max_args) {
                p->err = "unauthenticated multibulk length"; /* Redis's words */
                return RESP_ERROR;
            }
            p->argc = p->args_left = n;
            if (n == 0)
                return RESP_OK;
            p->state = RQ_BULK_LEN;
            break;
        case RQ_BULK_LEN:
            if (buf[p->pos] != '$') {
                p->err = "expected '$' before a request argument";
                return RESP_ERROR;
            }
            if ((r = resp_req_header(p, buf, len, &n)) != RESP_OK)
                return r;
            if (n < 0 || (uint64_t)n > lim->max_request ||
                p->pos + (uint64_t)n + 2 > lim->max_request) {
                p->err = "invalid bulk length";
                return RESP_ERROR;
            }
            if (lim->max_bulk && (uint64_t)n > lim->max_bulk) {
                p->err = "unauthenticated bulk length";
                return RESP_ERROR;
            }
            p->bulk_left = n + 2;
            p->state = RQ_BULK_DATA;
            break;
        case RQ_BULK_DATA: {
            size_t avail = len - p->pos, take = MIN(avail, (size_t)p->bulk_left);
            p->pos += take;
            p->bulk_left -= (int64_t)take;
            if (p->bulk_left > 0)
                return RESP_AGAIN;
            if (buf[p->pos - 2] != '\r' || buf[p->pos - 1] != '\n') {
                p->err = "bulk string not terminated by CRLF";
                return RESP_ERROR;
            }
            if (--p->args_left == 0)
                return RESP_OK;
            p->state = RQ_BULK_LEN;
            break;
        }
        case RQ_INLINE: {
            long nl = resp_find_nl(buf, p->pos, len);
            size_t i, end;
            if (nl < 0) {
                /* a full-length line may still be waiting for its "\n" after "\r" */
                if (len > (size_t)lim->max_inline + 1 ||
                    (len == (size_t)lim->max_inline + 1 && buf[len - 1] != '\r')) {
                    p->err = "too big inline request";
                    return RESP_ERROR;
                }
                p->pos = len; /* nothing before len holds a newline */
                return RESP_AGAIN;
            }
            end = (size_t)nl > 0 && buf[nl - 1] == '\r' ? (size_t)nl - 1 : (size_t)nl;
            if (end > lim->max_inline) {
                p->err = "too big inline request";
                return RESP_ERROR;
            }
            p->pos = (size_t)nl + 1;
            p->argc = 0; /* 0 for a blank line; the real count comes from resp_req_args */
            for (i = 0; i < end; i++)
                if (!isspace((unsigned char)buf[i])) {
                    p->argc = 1;
                    break;
                }
            return RESP_OK;
        }
        default:
            p->err = "parser state corrupt";
            return RESP_ERROR;
        }
    }
}

static int resp_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Split an inline line into arguments the way Redis's sdssplitargs does:
 * blanks separate words; "double quotes" take \xHH \n \r \t \b \a and \\-style
 * escapes; 'single quotes' take only \'; a closing quote must be followed by
 * a blank or the end.  Words are unquoted into SCRATCH. */
static int64_t resp_inline_args(const char *p, size_t len, struct resp_arg *argv, size_t cap,
                                char *scratch)
{
    const char *end = p + len;
    int64_t argc = 0;

    for (;;) {
        char *start = scratch;
        int inq = 0, insq = 0, done = 0;

        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p == end)
            return argc;
        while (!done) {
            if (inq) {
                if (p == end)
                    return -1; /* unbalanced quotes */
                if (p[0] == '\\' && p + 3 < end && p[1] == 'x' && resp_hexval(p[2]) >= 0 &&
                    resp_hexval(p[3]) >= 0) {
                    *scratch++ = (char)(resp_hexval(p[2]) * 16 + resp_hexval(p[3]));
                    p += 3;
                } else if (p[0] == '\\' && p + 1 < end) {
                    char c;
                    p++;
                    switch (*p) {
                    case 'n': c = '\n'; break;
                    case 'r': c = '\r'; break;
                    case 't': c = '\t'; break;
                    case 'b': c = '\b'; break;
                    case 'a': c = '\a'; break;
                    default: c = *p; break;
                    }
                    *scratch++ = c;
                } else if (*p == '"') {
                    if (p + 1 < end && !isspace((unsigned char)p[1]))
                        return -1; /* closing quote must be followed by a blank */
                    done = 1;
                } else {
                    *scratch++ = *p;
                }
            } else if (insq) {
                if (p == end)
                    return -1;
                if (p[0] == '\\' && p + 1 < end && p[1] == '\'') {
                    p++;
                    *scratch++ = '\'';
                } else if (*p == '\'') {
                    if (p + 1 < end && !isspace((unsigned char)p[1]))
                        return -1;
                    done = 1;
                } else {
                    *scratch++ = *p;
                }
            } else if (p == end || isspace((unsigned char)*p)) {
                done = 1;
                p--; /* the blank is skipped by the next word */
            } else if (*p == '"') {
                inq = 1;
            } else if (*p == '\'') {
                insq = 1;
            } else {
                *scratch++ = *p;
            }
            if (p < end)
                p++;
        }
        if ((size_t)argc < cap) {
            argv[argc].p = start;
            argv[argc].len = (size_t)(scratch - start);
        }
        argc++;
    }
}

int64_t resp_req_args(const struct resp_req_parser *p, const char *buf, struct resp_arg *argv,
                      size_t cap, char *scratch)
{
    size_t pos, i;
    int64_t argc;

    if (p->inline_req) {
        size_t end = p->pos - 1; /* the '\n' */
        if (end > 0 && buf[end - 1] == '\r')
            end--;
        return resp_inline_args(buf, end, argv, cap, scratch);
    }
    /* the framing was validated by resp_req_parse: walk it without checks */
    pos = (size_t)((const char *)memchr(buf, '\n', p->pos) - buf) + 1;
    argc = p->argc;
    for (i = 0; i < (size_t)argc; i++) {
        size_t n = 0;
        for (pos++; buf[pos] != '\r'; pos++) /* "$<digits>\r\n", already checked */
            n = n * 10 + (size_t)(buf[pos] - '0');
        pos += 2;
        if (i < cap) {
            argv[i].p = buf + pos;
            argv[i].len = n;
        }
        pos += n + 2;
    }
    return argc;
}

void resp_reply_init(struct resp_reply_parser *p)
{
    p->pos = 0;
    p->pending = 1;
    p->bulk_left = 0;
    p->err = NULL;
}

/* Longest simple line a backend may send (status, error, integer, header). */
#define RESP_MAX_REPLY_LINE (1024 * 1024)

/* Is the line P[0..N) (CRLF excluded) what a RESP3 scalar of type T may
 * hold?  Null "_" is empty; boolean "#" is t or f; a big number "(" is
 * digits with an optional sign; a double "," is a number, inf, -inf or nan
 * (its characters are checked, its value is the client's business). */
static int resp_scalar_ok(char t, const char *p, size_t n)
{
    int64_t v;
    size_t i;

    switch (t) {
    case ':':
        return resp_parse_ll(p, n, &v) == 0;
    case '_':
        return n == 0;
    case '#':
        return n == 1 && (p[0] == 't' || p[0] == 'f');
    case '(':
        for (i = p[0] == '-' || p[0] == '+'; i < n; i++)
            if (p[i] < '0' || p[i] > '9')
                return 0;
        return n > (size_t)(p[0] == '-' || p[0] == '+');
    case ',':
        for (i = 0; i < n; i++)
            if (!memchr("0123456789.eE+-infa", p[i], 19))
                return 0;
        return n > 0;
    default: /* '+' and '-': any text */
        return 1;
    }
}

enum resp_result resp_reply_parse(struct resp_reply_parser *p, const char *buf, size_t len)
{
    while (p->pending > 0) {
        const char *line;
        size_t llen;
        long nl;
        int64_t n;
        char t;

        if (p->bulk_left > 0) {
            size_t take = MIN(len - p->pos, (size_t)p->bulk_left);
            p->pos += take;
            p->bulk_left -= (int64_t)take;
            if (p->bulk_left > 0)
                return RESP_AGAIN;
            if (buf[p->pos - 2] != '\r' || buf[p->pos - 1] != '\n') {
                p->err = "bulk reply not terminated by CRLF";
                return RESP_ERROR;
            }
            p->pending--;
            continue;
        }
        if (p->pos >= len)
            return RESP_AGAIN;
        nl = resp_find_nl(buf, p->pos, len);
        if (nl < 0) {
            if (len - p->pos > RESP_MAX_REPLY_LINE) {
                p->err = "reply line too long";
                return RESP_ERROR;
            }
            return RESP_AGAIN;
        }
        if ((size_t)nl < p->pos + 2 || buf[nl - 1] != '\r') {
            p->err = "reply line not terminated by CRLF";
            return RESP_ERROR;
        }
        t = buf[p->pos];
        line = buf + p->pos + 1;
        llen = (size_t)nl - p->pos - 2;
        if (llen == 1 && line[0] == '?' && strchr("$*%~|>", t)) {
            p->err = "streamed RESP3 reply (not sent by Redis)";
            return RESP_ERROR;
        }
        switch (t) {
        case '+': case '-': case ':': case '_': case '#': case ',': case '(':
            if (!resp_scalar_ok(t, line, llen)) {
                p->err = "invalid scalar reply";
                return RESP_ERROR;
            }
            p->pending--;
            break;
        case '$': case '=': case '!': /* bulk, verbatim ("txt:..."), blob error */
            if (resp_parse_ll(line, llen, &n) != 0 || n < (t == '$' ? -1 : t == '=' ? 4 : 0) ||
                n > (int64_t)RESP_MAX_REPLY_BULK) {
                p->err = "invalid bulk length in reply";
                return RESP_ERROR;
            }
            if (n == -1)
                p->pending--;
            else
                p->bulk_left = n + 2;
            break;
        case '*': case '~': case '>': case '%': case '|': {
            /* array, set, push: N elements; map: N pairs; an attribute's
             * N pairs come before the reply it annotates, still pending */
            int64_t per = t == '%' || t == '|' ? 2 : 1;
            if (resp_parse_ll(line, llen, &n) != 0 || n < (t == '*' ? -1 : 0) ||
                n > RESP_MAX_REPLY_ARRAY || p->pending > INT64_MAX - 2 * RESP_MAX_REPLY_ARRAY) {
                p->err = "invalid multibulk length in reply";
                return RESP_ERROR;
            }
            p->pending += (n == -1 ? 0 : n * per) - (t == '|' ? 0 : 1);
            break;
        }
        default:
            p->err = "unknown reply type";
            return RESP_ERROR;
        }
        p->pos = (size_t)nl + 1;
    }
    return RESP_OK;
}

/* ======================================================== RESP encoding */
/* enc_: replies the proxy builds and requests it re-encodes. */

/* Append a RESP bulk string. */
static void enc_bulk(struct buf *b, const char *p, size_t n)
{
    buf_printf(b, "$%zu\r\n", n);
    buf_append(b, p, n);
    buf_append(b, "\r\n", 2);
}

/* Append an error line "-<msg>\r\n" built from a format; CR and LF coming
 * from arguments are turned into blanks so a reply can never be split. */
static void enc_error(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void enc_error(struct buf *b, const char *fmt, ...)
{
    char msg[REPLY_ERR_MAX];
    va_list ap;
    size_t i, n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n = strlen(msg);
    for (i = 0; i < n; i++)
        if (msg[i] == '\r' || msg[i] == '\n')
            msg[i] = ' ';
    buf_append(b, "-", 1);
    buf_append(b, msg, n);
    buf_append(b, "\r\n", 2);
}

/* Append a RESP array header "*<n>\r\n". */
static void enc_array(struct buf *b, size_t n) { buf_printf(b, "*%zu\r\n", n); }

/* Append a map of N pairs as protocol PROTO has it: a RESP3 map, or the
 * flat array of 2N elements RESP2 clients get. */
static void enc_map(struct buf *b, size_t n, int proto)
{
    buf_printf(b, proto == 3 ? "%%%zu\r\n" : "*%zu\r\n", proto == 3 ? n : n * 2);
}

/* Append the null reply of protocol PROTO (a missing name, an empty key). */
static void enc_null(struct buf *b, int proto)
{
    buf_append_str(b, proto == 3 ? "_\r\n" : "$-1\r\n");
}

/* Append the report TEXT[0..N) (INFO, CLIENT LIST) as Redis sends it: a
 * RESP3 verbatim string of format "txt", a bulk string in RESP2. */
static void enc_text(struct buf *b, const char *text, size_t n, int proto)
{
    if (proto != 3) {
        enc_bulk(b, text, n);
        return;
    }
    buf_printf(b, "=%zu\r\ntxt:", n + 4);
    buf_append(b, text, n);
    buf_append(b, "\r\n", 2);
}

/* Append the request ARGV re-encoded as a RESP array (inline commands and
 * the sub-commands of a split command are sent to backends this way). */
static void enc_command(struct buf *b, const struct resp_arg *argv, size_t argc)
{
    size_t i;

    enc_array(b, argc);
    for (i = 0; i < argc; i++)
        enc_bulk(b, argv[i].p, argv[i].len);
}

/* =========================================================== histograms */
/* hist_: fixed log-linear latency histograms. */

/*
 * Latency histograms with log-linear buckets: samples below 32 us are exact;
 * above, every power of two is cut into 32 buckets, so a bucket is at most
 * 1/32 (3%) of its values wide.  Fixed size, no allocation per sample.  The
 * powers of two are bucket boundaries, which makes the cumulative Prometheus
 * buckets (le = 2^k us) exact.
 */
#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_BITS 27 /* 2^27 us = 134 s; larger samples land in the last bucket */
/* exact buckets below 2^HIST_SUB_BITS, HIST_SUB per power of two up to
 * 2^HIST_MAX_BITS, and one open bucket for everything from there on */
#define HIST_BUCKETS (HIST_SUB + (HIST_MAX_BITS - HIST_SUB_BITS) * HIST_SUB + 1)

/* One latency distribution, in microseconds. */
struct hist {
    uint64_t count;           /* samples */
    uint64_t sum;             /* sum of the samples */
    uint64_t max;             /* largest sample */
    uint64_t b[HIST_BUCKETS]; /* samples per bucket */
};

static unsigned hist_index(uint64_t v)
{
    unsigned msb;

    if (v < HIST_SUB)
        return (unsigned)v;
    if (v >= 1ULL << HIST_MAX_BITS)
        return HIST_BUCKETS - 1;
#if defined(__GNUC__) || defined(__clang__)
    msb = 63u - (unsigned)__builtin_clzll(v);
#else
    for (msb = 0; v >> msb > 1; msb++)
        ;
#endif
    return HIST_SUB + (msb - HIST_SUB_BITS) * HIST_SUB +
           (unsigned)((v >> (msb - HIST_SUB_BITS)) - HIST_SUB);
}

/* Smallest value of bucket I, and its width. */
static uint64_t hist_low(unsigned i, uint64_t *width)
{
    unsigned k;

    if (i < HIST_SUB) {
        *width = 1;
        return i;
    }
    k = (i - HIST_SUB) / HIST_SUB;
    *width = 1ULL << k;
    return (uint64_t)(HIST_SUB + (i - HIST_SUB) % HIST_SUB) << k;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
    h->b[hist_index(v)]++;
}

/* The value below which a fraction Q of the samples fall: the middle of
 * the bucket holding that rank, never above the largest sample. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t rank, seen = 0, width, low;
    unsigned i;

    if (h->count == 0)
        return 0;
    rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    for (i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank)
            break;
    }
    low = hist_low(i < HIST_BUCKETS ? i : HIST_BUCKETS - 1, &width);
    return MIN(low + width / 2, h->max);
}

/* Add the samples of S to D. */
static void hist_merge(struct hist *d, const struct hist *s)
{
    unsigned i;

    d->count += s->count;
    d->sum += s->sum;
    d->max = MAX(d->max, s->max);
    for (i = 0; i < HIST_BUCKETS; i++)
        d->b[i] += s->b[i];
}

/* Samples below 2^K us (exact: powers of two are bucket boundaries). */
static uint64_t hist_below_pow2(const struct hist *h, unsigned k)
{
    uint64_t n = 0;
    unsigned i, end = k <= HIST_SUB_BITS ? (1u << k) : hist_index(1ULL << k);

    if (k >= HIST_MAX_BITS)
        return h->count - h->b[HIST_BUCKETS - 1];
    for (i = 0; i < end; i++)
        n += h->b[i];
    return n;
}

/* ======================================================== command table */
/* cmd_: the Redis 7.0 command table, its hash index, key extraction. */

/* How the proxy serves a command. */
enum cmd_kind {
    CMD_ONE,      /* exactly one key: forwarded to the backend that owns it */
    CMD_SPLIT,    /* MGET MSET DEL UNLINK EXISTS TOUCH: one sub-command per backend, merged */
    CMD_SAME,     /* several keys that must live on one backend, else -CROSSSLOT */
    CMD_LOCAL,    /* answered by the proxy itself */
    CMD_ANY,      /* no key: any live backend answers (COMMAND, TIME) */
    CMD_ALL,      /* sent to every backend, integer replies summed (DBSIZE) */
    CMD_REFUSE,   /* not served: -ERR naming the command, connection stays */
    CMD_CONTAINER /* has subcommands: look up "name|sub" instead */
};

/* Row flags.  CMD_WRITE: Redis flags the command `write`, or it is a script
 * that may write (EVAL, EVALSHA, FCALL); WAIT waits on the backends a client
 * sent one to. */
#define CMD_WRITE 1

/* One Redis 7 key spec: where the keys of a command start (begin_search) and
 * how many follow (find_keys), exactly as COMMAND INFO reports them. */
struct cmd_keyspec {
    const char *keyword; /* begin_search keyword; NULL: begin at index `start` */
    int8_t start;        /* begin_search index, or the keyword's startfrom (negative: from the end) */
    char find;           /* 'r' range, 'n' keynum, 'u' unknown (begin_search or find_keys type unknown) */
    int8_t a, b, c;      /* range: lastkey, keystep, limit; keynum: keynumidx, firstkey, keystep */
};

#define KS_RANGE(idx, last, step, limit) {NULL, idx, 'r', last, step, limit}
#define KS_KEYNUM(idx, numidx, first, step) {NULL, idx, 'n', numidx, first, step}
#define KS_KW_RANGE(kw, from, last, step, limit) {kw, from, 'r', last, step, limit}
#define KS_UNKNOWN {NULL, 0, 'u', 0, 0, 0}
#define KS_NONE {NULL, 0, 0, 0, 0, 0}

/* One row of the command table. */
struct command {
    const char *name;              /* lower case; "container|sub" for a subcommand */
    int16_t arity;                 /* Redis arity: N exactly N args (name included), -N at least N */
    uint8_t kind;                  /* enum cmd_kind */
    uint8_t flags;                 /* CMD_WRITE, or 0 */
    uint8_t nspecs;                /* key specs used in specs[] */
    struct cmd_keyspec specs[3]; /* Redis 7 key specs, in the server's order */
};

/*
 * cmd_table[]: the command table, one row per Redis 7.0 command and
 * subcommand, sorted by strcmp() on the name (for the reader, and for
 * test/commands.bats, which diffs it with a live server; lookups go through
 * the hash index cmd_index).
 *
 * Where the data comes from.  Name, arity and key specs are copied verbatim
 * from `COMMAND` (same as `COMMAND INFO`, subcommands nested) of Debian's
 * redis-server 7.0.15, no modules loaded: 368 rows, which are that server's
 * 366 commands and subcommands plus two Redis 7.2 commands answered here:
 * "client|setinfo" (redis-py, go-redis and node-redis send it on connect)
 * and "client|no-touch".  Each reply
 * entry is [name, arity, flags, first, last, step, acl, tips, key_specs,
 * subcommands]; this table keeps name, arity, key_specs and one flag:
 *   - flags is CMD_WRITE where the server's flags have "write", and for
 *     eval, evalsha and fcall, which may write (WAIT needs to know);
 *   - arity counts the name (and, for "container|sub", the subcommand too):
 *     N means exactly N arguments, -N at least N;
 *   - a key spec is begin_search (type "index" {index} or "keyword"
 *     {keyword, startfrom}, startfrom < 0 counting from the end) then
 *     find_keys (type "range" {lastkey, keystep, limit}: lastkey < 0 counts
 *     from the end, limit > 1 means "the first 1/limit of what remains";
 *     or "keynum" {keynumidx, firstkey, keystep}, both relative to the
 *     begin_search result).  A spec whose begin_search or find_keys type is
 *     "unknown" (only SORT / SORT_RO: BY, GET and STORE) is KS_UNKNOWN;
 *   - specs stay in the server's order; none has more than 3, every number
 *     fits an int8_t.
 * test/commands.bats compares this table with a live server's COMMAND reply.
 *
 * Unusual specs, as the server reports them:
 *   xread       KEYWORD "STREAMS" from 1, range lastkey -1 step 1 limit 2
 *   xreadgroup  KEYWORD "STREAMS" from 4, range lastkey -1 step 1 limit 2
 *               (the keys are the first half of the arguments after STREAMS)
 *   migrate     index 3 (one key, "" when KEYS is used) plus KEYWORD "KEYS"
 *               searched backwards from argv[-2], range to the end
 *   georadius(bymember)  index 1 plus KEYWORD "STORE" / "STOREDIST"
 *   lcs         index 1, range lastkey 1: two keys from one spec
 *   eval*, fcall*: one keynum spec, may yield zero keys (no_mandatory_keys)
 *
 * Kind, by the product's routing policy:
 *   SPLIT      mget mset del unlink exists touch
 *   LOCAL      ping echo quit select hello auth info multi exec discard unwatch
 *              reset client|setname client|getname client|setinfo client|id
 *              client|list client|info client|kill client|reply
 *              client|no-evict client|no-touch, wait (route_wait), publish
 *              (routed by its channel), subscribe psubscribe ssubscribe
 *              unsubscribe punsubscribe sunsubscribe monitor (sub_), and
 *              watch (keyed: it holds a dedicated connection to its keys'
 *              backend, route_watch)
 *   ANY        time, every command|* subcommand, config|get, function|list
 *              function|dump function|stats and the help of config script
 *              function slowlog object pubsub
 *   ALL        dbsize keys randomkey scan lastsave swapdb flushdb flushall
 *              script|load script|exists script|flush script|kill
 *              function|load function|delete function|flush function|restore
 *              function|kill slowlog|get slowlog|len slowlog|reset
 *              pubsub|channels pubsub|numpat pubsub|numsub
 *              pubsub|shardchannels pubsub|shardnumsub (each merged as
 *              route_all_merges says; scan walks one at a time)
 *   CONTAINER  every command the server lists subcommands for (acl client
 *              cluster command config function latency memory module object
 *              pubsub script slowlog xgroup xinfo); look up "name|sub" next
 *              (bare COMMAND, arity -1, is valid without a subcommand)
 *   REFUSE     every other command without key specs, and these keyed ones:
 *              migrate pfdebug restore-asking
 *   ONE        a keyed command whose only spec is a fixed index with range
 *              lastkey 0 (exactly one key; spublish's is its channel)
 *   SAME       every other keyed command: all keys must hash to one backend
 *              (the blocking ones, blpop ... bzmpop and xread/xreadgroup
 *              with BLOCK, run on a dedicated connection: route_blocking)
 * Counts: ONE 132, SPLIT 6, SAME 49, LOCAL 32, ANY 18, ALL 25, REFUSE 91, CONTAINER 15.
 */
static const struct command cmd_table[] = {
    {"acl", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"acl|cat", -2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|deluser", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|dryrun", -4, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|genpass", -2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|getuser", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|help", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|list", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|load", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|log", -2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|save", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|setuser", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|users", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"acl|whoami", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"append", 3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"asking", 1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"auth", -2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"bgrewriteaof", 1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"bgsave", -1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"bitcount", -2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"bitfield", -2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"bitfield_ro", -2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"bitop", -4, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(2, 0, 1, 0), KS_RANGE(3, -1, 1, 0)}},
    {"bitpos", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"blmove", 6, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"blmpop", -5, CMD_SAME, CMD_WRITE, 1, {KS_KEYNUM(2, 0, 1, 1)}},
    {"blpop", -3, CMD_SAME, CMD_WRITE, 1, {KS_RANGE(1, -2, 1, 0)}},
    {"brpop", -3, CMD_SAME, CMD_WRITE, 1, {KS_RANGE(1, -2, 1, 0)}},
    {"brpoplpush", 4, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"bzmpop", -5, CMD_SAME, CMD_WRITE, 1, {KS_KEYNUM(2, 0, 1, 1)}},
    {"bzpopmax", -3, CMD_SAME, CMD_WRITE, 1, {KS_RANGE(1, -2, 1, 0)}},
    {"bzpopmin", -3, CMD_SAME, CMD_WRITE, 1, {KS_RANGE(1, -2, 1, 0)}},
    {"client", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"client|caching", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"client|getname", 2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|getredir", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"client|help", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"client|id", 2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|info", 2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|kill", -3, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|list", -2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|no-evict", 3, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|no-touch", 3, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|pause", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"client|reply", 3, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|setinfo", 4, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|setname", 3, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"client|tracking", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"client|trackinginfo", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"client|unblock", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"client|unpause", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"cluster|addslots", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|addslotsrange", -4, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|bumpepoch", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|count-failure-reports", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|countkeysinslot", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|delslots", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|delslotsrange", -4, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|failover", -2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|flushslots", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|forget", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|getkeysinslot", 4, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|help", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|info", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|keyslot", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|links", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|meet", -4, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|myid", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|nodes", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|replicas", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|replicate", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|reset", -2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|saveconfig", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|set-config-epoch", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|setslot", -4, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|shards", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|slaves", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"cluster|slots", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"command", -1, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"command|count", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"command|docs", -2, CMD_ANY, 0, 0, {KS_NONE}},
    {"command|getkeys", -4, CMD_ANY, 0, 0, {KS_NONE}},
    {"command|getkeysandflags", -4, CMD_ANY, 0, 0, {KS_NONE}},
    {"command|help", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"command|info", -2, CMD_ANY, 0, 0, {KS_NONE}},
    {"command|list", -2, CMD_ANY, 0, 0, {KS_NONE}},
    {"config", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"config|get", -3, CMD_ANY, 0, 0, {KS_NONE}},
    {"config|help", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"config|resetstat", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"config|rewrite", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"config|set", -4, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"copy", -3, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"dbsize", 1, CMD_ALL, 0, 0, {KS_NONE}},
    {"debug", -2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"decr", 2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"decrby", 3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"del", -2, CMD_SPLIT, CMD_WRITE, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"discard", 1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"dump", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"echo", 2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"eval", -3, CMD_SAME, CMD_WRITE, 1, {KS_KEYNUM(2, 0, 1, 1)}},
    {"eval_ro", -3, CMD_SAME, 0, 1, {KS_KEYNUM(2, 0, 1, 1)}},
    {"evalsha", -3, CMD_SAME, CMD_WRITE, 1, {KS_KEYNUM(2, 0, 1, 1)}},
    {"evalsha_ro", -3, CMD_SAME, 0, 1, {KS_KEYNUM(2, 0, 1, 1)}},
    {"exec", 1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"exists", -2, CMD_SPLIT, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"expire", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"expireat", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"expiretime", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"failover", -1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"fcall", -3, CMD_SAME, CMD_WRITE, 1, {KS_KEYNUM(2, 0, 1, 1)}},
    {"fcall_ro", -3, CMD_SAME, 0, 1, {KS_KEYNUM(2, 0, 1, 1)}},
    {"flushall", -1, CMD_ALL, CMD_WRITE, 0, {KS_NONE}},
    {"flushdb", -1, CMD_ALL, CMD_WRITE, 0, {KS_NONE}},
    {"function", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"function|delete", 3, CMD_ALL, CMD_WRITE, 0, {KS_NONE}},
    {"function|dump", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"function|flush", -2, CMD_ALL, CMD_WRITE, 0, {KS_NONE}},
    {"function|help", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"function|kill", 2, CMD_ALL, 0, 0, {KS_NONE}},
    {"function|list", -2, CMD_ANY, 0, 0, {KS_NONE}},
    {"function|load", -3, CMD_ALL, CMD_WRITE, 0, {KS_NONE}},
    {"function|restore", -3, CMD_ALL, CMD_WRITE, 0, {KS_NONE}},
    {"function|stats", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"geoadd", -5, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"geodist", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"geohash", -2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"geopos", -2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"georadius", -6, CMD_SAME, CMD_WRITE, 3,
     {KS_RANGE(1, 0, 1, 0),
      KS_KW_RANGE("STORE", 6, 0, 1, 0),
      KS_KW_RANGE("STOREDIST", 6, 0, 1, 0)}},
    {"georadius_ro", -6, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"georadiusbymember", -5, CMD_SAME, CMD_WRITE, 3,
     {KS_RANGE(1, 0, 1, 0),
      KS_KW_RANGE("STORE", 5, 0, 1, 0),
      KS_KW_RANGE("STOREDIST", 5, 0, 1, 0)}},
    {"georadiusbymember_ro", -5, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"geosearch", -7, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"geosearchstore", -8, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"get", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"getbit", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"getdel", 2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"getex", -2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"getrange", 4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"getset", 3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hdel", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hello", -1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"hexists", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hget", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hgetall", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hincrby", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hincrbyfloat", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hkeys", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hlen", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hmget", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hmset", -4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hrandfield", -2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hscan", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hset", -4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hsetnx", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hstrlen", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"hvals", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"incr", 2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"incrby", 3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"incrbyfloat", 3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"info", -1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"keys", 2, CMD_ALL, 0, 0, {KS_NONE}},
    {"lastsave", 1, CMD_ALL, 0, 0, {KS_NONE}},
    {"latency", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"latency|doctor", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"latency|graph", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"latency|help", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"latency|histogram", -2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"latency|history", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"latency|latest", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"latency|reset", -2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"lcs", -3, CMD_SAME, 0, 1, {KS_RANGE(1, 1, 1, 0)}},
    {"lindex", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"linsert", 5, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"llen", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"lmove", 5, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"lmpop", -4, CMD_SAME, CMD_WRITE, 1, {KS_KEYNUM(1, 0, 1, 1)}},
    {"lolwut", -1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"lpop", -2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"lpos", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"lpush", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"lpushx", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"lrange", 4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"lrem", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"lset", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"ltrim", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"memory", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"memory|doctor", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"memory|help", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"memory|malloc-stats", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"memory|purge", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"memory|stats", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"memory|usage", -3, CMD_ONE, 0, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"mget", -2, CMD_SPLIT, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"migrate", -6, CMD_REFUSE, CMD_WRITE, 2,
     {KS_RANGE(3, 0, 1, 0), KS_KW_RANGE("KEYS", -2, -1, 1, 0)}},
    {"module", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"module|help", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"module|list", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"module|load", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"module|loadex", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"module|unload", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"monitor", 1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"move", 3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"mset", -3, CMD_SPLIT, CMD_WRITE, 1, {KS_RANGE(1, -1, 2, 0)}},
    {"msetnx", -3, CMD_SAME, CMD_WRITE, 1, {KS_RANGE(1, -1, 2, 0)}},
    {"multi", 1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"object", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"object|encoding", 3, CMD_ONE, 0, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"object|freq", 3, CMD_ONE, 0, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"object|help", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"object|idletime", 3, CMD_ONE, 0, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"object|refcount", 3, CMD_ONE, 0, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"persist", 2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"pexpire", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"pexpireat", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"pexpiretime", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"pfadd", -2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"pfcount", -2, CMD_SAME, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"pfdebug", 3, CMD_REFUSE, CMD_WRITE, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"pfmerge", -2, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, -1, 1, 0)}},
    {"pfselftest", 1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"ping", -1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"psetex", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"psubscribe", -2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"psync", -3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"pttl", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"publish", 3, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"pubsub", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"pubsub|channels", -2, CMD_ALL, 0, 0, {KS_NONE}},
    {"pubsub|help", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"pubsub|numpat", 2, CMD_ALL, 0, 0, {KS_NONE}},
    {"pubsub|numsub", -2, CMD_ALL, 0, 0, {KS_NONE}},
    {"pubsub|shardchannels", -2, CMD_ALL, 0, 0, {KS_NONE}},
    {"pubsub|shardnumsub", -2, CMD_ALL, 0, 0, {KS_NONE}},
    {"punsubscribe", -1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"quit", -1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"randomkey", 1, CMD_ALL, 0, 0, {KS_NONE}},
    {"readonly", 1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"readwrite", 1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"rename", 3, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"renamenx", 3, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"replconf", -1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"replicaof", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"reset", 1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"restore", -4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"restore-asking", -4, CMD_REFUSE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"role", 1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"rpop", -2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"rpoplpush", 3, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"rpush", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"rpushx", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"sadd", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"save", 1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"scan", -2, CMD_ALL, 0, 0, {KS_NONE}},
    {"scard", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"script", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"script|debug", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"script|exists", -3, CMD_ALL, 0, 0, {KS_NONE}},
    {"script|flush", -2, CMD_ALL, 0, 0, {KS_NONE}},
    {"script|help", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"script|kill", 2, CMD_ALL, 0, 0, {KS_NONE}},
    {"script|load", 3, CMD_ALL, 0, 0, {KS_NONE}},
    {"sdiff", -2, CMD_SAME, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"sdiffstore", -3, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, -1, 1, 0)}},
    {"select", 2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"set", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"setbit", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"setex", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"setnx", 3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"setrange", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"shutdown", -1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"sinter", -2, CMD_SAME, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"sintercard", -3, CMD_SAME, 0, 1, {KS_KEYNUM(1, 0, 1, 1)}},
    {"sinterstore", -3, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, -1, 1, 0)}},
    {"sismember", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"slaveof", 3, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"slowlog", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"slowlog|get", -2, CMD_ALL, 0, 0, {KS_NONE}},
    {"slowlog|help", 2, CMD_ANY, 0, 0, {KS_NONE}},
    {"slowlog|len", 2, CMD_ALL, 0, 0, {KS_NONE}},
    {"slowlog|reset", 2, CMD_ALL, 0, 0, {KS_NONE}},
    {"smembers", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"smismember", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"smove", 4, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"sort", -2, CMD_SAME, CMD_WRITE, 3, {KS_RANGE(1, 0, 1, 0), KS_UNKNOWN, KS_UNKNOWN}},
    {"sort_ro", -2, CMD_SAME, 0, 2, {KS_RANGE(1, 0, 1, 0), KS_UNKNOWN}},
    {"spop", -2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"spublish", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"srandmember", -2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"srem", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"sscan", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"ssubscribe", -2, CMD_LOCAL, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"strlen", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"subscribe", -2, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"substr", 4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"sunion", -2, CMD_SAME, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"sunionstore", -3, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, -1, 1, 0)}},
    {"sunsubscribe", -1, CMD_LOCAL, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"swapdb", 3, CMD_ALL, CMD_WRITE, 0, {KS_NONE}},
    {"sync", 1, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"time", 1, CMD_ANY, 0, 0, {KS_NONE}},
    {"touch", -2, CMD_SPLIT, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"ttl", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"type", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"unlink", -2, CMD_SPLIT, CMD_WRITE, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"unsubscribe", -1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"unwatch", 1, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"wait", 3, CMD_LOCAL, 0, 0, {KS_NONE}},
    {"watch", -2, CMD_LOCAL, 0, 1, {KS_RANGE(1, -1, 1, 0)}},
    {"xack", -4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xadd", -5, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xautoclaim", -6, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xclaim", -6, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xdel", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xgroup", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"xgroup|create", -5, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"xgroup|createconsumer", 5, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"xgroup|delconsumer", 5, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"xgroup|destroy", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"xgroup|help", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"xgroup|setid", -5, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"xinfo", -2, CMD_CONTAINER, 0, 0, {KS_NONE}},
    {"xinfo|consumers", 4, CMD_ONE, 0, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"xinfo|groups", 3, CMD_ONE, 0, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"xinfo|help", 2, CMD_REFUSE, 0, 0, {KS_NONE}},
    {"xinfo|stream", -3, CMD_ONE, 0, 1, {KS_RANGE(2, 0, 1, 0)}},
    {"xlen", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xpending", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xrange", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xread", -4, CMD_SAME, 0, 1, {KS_KW_RANGE("STREAMS", 1, -1, 1, 2)}},
    {"xreadgroup", -7, CMD_SAME, CMD_WRITE, 1, {KS_KW_RANGE("STREAMS", 4, -1, 1, 2)}},
    {"xrevrange", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xsetid", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"xtrim", -4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zadd", -4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zcard", 2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zcount", 4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zdiff", -3, CMD_SAME, 0, 1, {KS_KEYNUM(1, 0, 1, 1)}},
    {"zdiffstore", -4, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_KEYNUM(2, 0, 1, 1)}},
    {"zincrby", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zinter", -3, CMD_SAME, 0, 1, {KS_KEYNUM(1, 0, 1, 1)}},
    {"zintercard", -3, CMD_SAME, 0, 1, {KS_KEYNUM(1, 0, 1, 1)}},
    {"zinterstore", -4, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_KEYNUM(2, 0, 1, 1)}},
    {"zlexcount", 4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zmpop", -4, CMD_SAME, CMD_WRITE, 1, {KS_KEYNUM(1, 0, 1, 1)}},
    {"zmscore", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zpopmax", -2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zpopmin", -2, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrandmember", -2, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrange", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrangebylex", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrangebyscore", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrangestore", -5, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_RANGE(2, 0, 1, 0)}},
    {"zrank", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrem", -3, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zremrangebylex", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zremrangebyrank", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zremrangebyscore", 4, CMD_ONE, CMD_WRITE, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrevrange", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrevrangebylex", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrevrangebyscore", -4, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zrevrank", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zscan", -3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zscore", 3, CMD_ONE, 0, 1, {KS_RANGE(1, 0, 1, 0)}},
    {"zunion", -3, CMD_SAME, 0, 1, {KS_KEYNUM(1, 0, 1, 1)}},
    {"zunionstore", -4, CMD_SAME, CMD_WRITE, 2, {KS_RANGE(1, 0, 1, 0), KS_KEYNUM(2, 0, 1, 1)}},
};

/* Compare a command name from the wire (any case) with a table name. */
static int cmd_cmp(const char *name, size_t len, const char *table_name)
{
    size_t i;

    for (i = 0; i < len && table_name[i]; i++) {
        int a = (unsigned char)name[i], b = (unsigned char)table_name[i];
        if (a >= 'A' && a <= 'Z') /* ASCII only: no locale lookup per byte */
            a += 'a' - 'A';
        if (a != b)
            return a - b;
    }
    if (i < len)
        return 1;
    return table_name[i] ? -1 : 0;
}

/* Open-addressing hash index over cmd_table (a power of two, at least
 * twice the rows): one hash and usually one comparison per lookup, where a
 * binary search took nine. */
#define CMD_INDEX_SIZE 1024

static uint16_t cmd_index[CMD_INDEX_SIZE]; /* row + 1, 0 = empty */
static int cmd_ready;                         /* cmd_init has run */

/* FNV-1a over the ASCII-lowered name. */
static uint32_t cmd_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch + 'a' - 'A');
        h = (h ^ ch) * 16777619u;
    }
    return h;
}

/* Fill cmd_index.  main (and every test program) calls it once, before
 * the first lookup, so the hot path does not check. */
static void cmd_init(void)
{
    size_t i;

    if (cmd_ready)
        return;
    assert(ARRAY_LEN(cmd_table) * 2 <= CMD_INDEX_SIZE);
    for (i = 0; i < ARRAY_LEN(cmd_table); i++) {
        uint32_t h = cmd_hash(cmd_table[i].name, strlen(cmd_table[i].name));
        while (cmd_index[h & (CMD_INDEX_SIZE - 1)])
            h++;
        cmd_index[h & (CMD_INDEX_SIZE - 1)] = (uint16_t)(i + 1);
    }
    cmd_ready = 1;
}

/* The command table row for NAME (any case), or NULL. */
static const struct command *cmd_find(const char *name, size_t len)
{
    uint32_t h;

    assert(cmd_ready);
    for (h = cmd_hash(name, len);; h++) {
        unsigned row = cmd_index[h & (CMD_INDEX_SIZE - 1)];
        if (!row)
            return NULL;
        if (cmd_cmp(name, len, cmd_table[row - 1].name) == 0)
            return &cmd_table[row - 1];
    }
}

/* Look up "container|sub" for a container command's subcommand. */
static const struct command *cmd_find_sub(const struct command *container,
                                              const struct resp_arg *sub)
{
    char name[64];
    size_t n = strlen(container->name);

    if (n + 1 + sub->len >= sizeof name)
        return NULL;
    memcpy(name, container->name, n);
    name[n] = '|';
    memcpy(name + n + 1, sub->p, sub->len);
    return cmd_find(name, n + 1 + sub->len);
}

static int cmd_arity_ok(const struct command *cmd, int64_t argc)
{
    return cmd->arity >= 0 ? argc == cmd->arity : argc >= -cmd->arity;
}

static int cmd_argeq(const struct resp_arg *a, const char *s)
{
    size_t n = strlen(s);
    return a->len == n && strncasecmp(a->p, s, n) == 0;
}

/* The unsigned decimal P[0..N) (digits only, as a SCAN cursor) into *V.
 * Returns 0, or -1 when it is not one or does not fit 64 bits. */
static int cmd_parse_u64(const char *p, size_t n, uint64_t *v)
{
    size_t i;

    *v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (i = 0; i < n; i++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (d > 9 || *v > (UINT64_MAX - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return 0;
}

/* Append to POS the argument indexes of the keys that SPEC names in ARGV,
 * following Redis's getKeysUsingKeySpecs: a keyword that is absent yields no
 * keys; a spec the arguments cannot satisfy is an error.  Returns the new
 * count of POS, or -1. */
static int64_t cmd_spec_keys(const struct cmd_keyspec *spec, const struct resp_arg *argv,
                               int64_t argc, int64_t *pos, int64_t npos)
{
    int64_t first = 0, last, step, i;

    if (spec->find == 'u')
        return npos; /* only SORT's BY/GET/STORE; STORE is found by cmd_sort_store */
    if (!spec->keyword) {
        first = spec->start;
    } else {
        int64_t from = spec->start > 0 ? spec->start : argc + spec->start;
        int64_t to = spec->start > 0 ? argc - 1 : 0;
        for (i = from; i != to; i += from <= to ? 1 : -1) {
            if (i >= argc || i < 1)
                break;
            if (cmd_argeq(&argv[i], spec->keyword)) {
                first = i + 1;
                break;
            }
        }
        if (!first)
            return npos;
    }
    if (spec->find == 'r') {
        step = spec->b;
        if (spec->a >= 0)
            last = first + spec->a;
        else if (!spec->c)
            last = argc + spec->a;
        else
            last = first + ((argc - first) / spec->c + spec->a);
    } else {
        int64_t numkeys;
        const struct resp_arg *nk;
        if (spec->a >= argc - first)
            return -1;
        nk = &argv[first + spec->a];
        if (resp_parse_ll(nk->p, nk->len, &numkeys) != 0 || numkeys < 0 || numkeys > argc)
            return -1;
        step = spec->c;
        first += spec->b;
        last = first + numkeys - 1;
        if (numkeys == 0)
            return npos;
    }
    if (last >= argc || last < first || first >= argc || step < 1)
        return -1;
    for (i = first; i <= last; i += step)
        pos[npos++] = i;
    return npos;
}

/* SORT's STORE destination, which its key specs leave "unknown": the
 * argument after the last STORE, skipping LIMIT's two and BY/GET's one
 * operands (as Redis's sortGetKeys does).  Returns its index or 0. */
static int64_t cmd_sort_store(const struct resp_arg *argv, int64_t argc)
{
    int64_t i, found = 0;

    for (i = 2; i < argc; i++) {
        if (cmd_argeq(&argv[i], "limit"))
            i += 2;
        else if (cmd_argeq(&argv[i], "get") || cmd_argeq(&argv[i], "by"))
            i += 1;
        else if (cmd_argeq(&argv[i], "store") && i + 1 < argc)
            found = ++i;
    }
    return found;
}

/* Every key index of a command, into POS (room for argc entries).
 * Returns the count, or -1 when the arguments do not fit the key specs. */
static int64_t cmd_keys(const struct command *cmd, const struct resp_arg *argv, int64_t argc,
                          int64_t *pos)
{
    int64_t n = 0, store;
    int i;

    for (i = 0; i < cmd->nspecs && n >= 0; i++)
        n = cmd_spec_keys(&cmd->specs[i], argv, argc, pos, n);
    if (n >= 0 && !strcmp(cmd->name, "sort") && (store = cmd_sort_store(argv, argc)) > 0)
        pos[n++] = store;
    return n;
}

/* The argument index of XREAD/XREADGROUP's BLOCK milliseconds, or 0 when
 * there is no BLOCK before STREAMS.  FROM is where the options start (after
 * XREADGROUP's GROUP group consumer): the options are walked with their
 * values, so a group, consumer or count spelled "block" is not mistaken
 * for one. */
static int64_t cmd_block_arg(const struct resp_arg *argv, int64_t argc, int64_t from)
{
    int64_t i;

    for (i = from; i < argc; i++) {
        if (cmd_argeq(&argv[i], "streams"))
            return 0;
        if (cmd_argeq(&argv[i], "block"))
            return i + 1 < argc ? i + 1 : 0;
        if (cmd_argeq(&argv[i], "count"))
            i++; /* its value */
    }
    return 0;
}

/* The timeout A of a blocking command, in UNIT milliseconds (1000 for
 * Redis's seconds, which may have a fraction; 1 for XREAD's BLOCK), as
 * milliseconds rounded up; 0 for 0 (block forever) and for a value Redis
 * will refuse at once (negative, not a number): that reply is immediate. */
static uint64_t cmd_timeout_ms(const struct resp_arg *a, double unit)
{
    char text[64];
    char *end;
    double v;

    if (a->len == 0 || a->len >= sizeof text)
        return 0;
    memcpy(text, a->p, a->len);
    text[a->len] = '\0';
    v = strtod(text, &end);
    if (*end || !(v > 0) || v * unit > 1e15)
        return 0;
    return (uint64_t)(v * unit + 0.999);
}

/* Does call ARGV of CMD block on the backend?  BLPOP BRPOP BZPOPMIN
 * BZPOPMAX BRPOPLPUSH BLMOVE (timeout last), BLMPOP BZMPOP (timeout first)
 * and XREAD XREADGROUP with BLOCK.  Returns 1 with the command's own
 * timeout in *MS (0: forever), else 0. */
static int cmd_blocks(const struct command *cmd, const struct resp_arg *argv, int64_t argc,
                      uint64_t *ms)
{
    const char *n = cmd->name;
    int64_t at;

    if (n[0] != 'b' && n[0] != 'x') /* every blocking command's name starts so */
        return 0;
    if (!strcmp(n, "blpop") || !strcmp(n, "brpop") || !strcmp(n, "bzpopmin") ||
        !strcmp(n, "bzpopmax") || !strcmp(n, "brpoplpush") || !strcmp(n, "blmove"))
        *ms = cmd_timeout_ms(&argv[argc - 1], 1000);
    else if (!strcmp(n, "blmpop") || !strcmp(n, "bzmpop"))
        *ms = cmd_timeout_ms(&argv[1], 1000);
    else if (!strcmp(n, "xread") && (at = cmd_block_arg(argv, argc, 1)))
        *ms = cmd_timeout_ms(&argv[at], 1);
    else if (!strcmp(n, "xreadgroup") && (at = cmd_block_arg(argv, argc, 4)))
        *ms = cmd_timeout_ms(&argv[at], 1);
    else
        return 0;
    return 1;
}

/* ============================================ data model: configuration */
/* The config the parser fills; only config_* writes it. */

/* One `backend` line, with its address resolved at load time (no DNS in the
 * loop). */
struct config_backend {
    char *addr;                  /* address exactly as written */
    char *name;                  /* name= option, or NULL */
    const char *id;              /* identity hashed by Maglev: name, else addr */
    uint32_t weight;             /* weight= option, default 1 */
    char *password;              /* password= (or backend_password): AUTH on connect */
    char *user;                  /* user= (or backend_user): the ACL user for AUTH */
    int64_t db;                  /* db= (or backend_db): SELECT on connect; -1 until set */
    long line;                   /* where it was configured, for messages */
    struct sockaddr_storage sa;  /* resolved address (unset with resolve off) */
    socklen_t salen;             /* 0 until resolved */
};

/* One `listen` line. */
struct config_listen {
    char *addr;                 /* as written: host:port, [v6]:port or /path */
    struct sockaddr_storage sa; /* resolved address */
    socklen_t salen;            /* 0 until resolved */
};

/* The whole configuration; only the config parser writes it. */
struct config {
    char *path;                        /* file it was read from */
    struct config_listen *listens;     /* listen directives, in order */
    int nlistens;                      /* entries in listens */
    struct config_backend *backends;   /* backend directives, in config order */
    int nbackends;                     /* entries in backends */
    uint64_t hash_tags;                /* 1: hash only the {tag} of a key */
    uint64_t table_size;               /* Maglev table size M (prime) */
    uint64_t timeout_ms;               /* backend reply deadline; 0 = none */
    uint64_t connect_timeout_ms;       /* backend connect deadline */
    uint64_t backend_connections;      /* pipelined connections per backend and pool */
    uint64_t databases;                /* databases a client may SELECT (0..N-1) */
    uint64_t pool_idle_timeout;        /* seconds an unused pool (a db, RESP3) stays open */
    uint64_t blocking_connections;     /* dedicated connections per backend (blocking, WATCH) */
    uint64_t max_clients;              /* client connections accepted at once */
    uint64_t client_max_pending;       /* unanswered requests before reading pauses */
    uint64_t client_output_limit;      /* unread reply bytes before disconnect (hard limit) */
    uint64_t client_output_soft_limit; /* unread reply bytes a client may stay above ... */
    uint64_t client_output_soft_seconds; /* ... this long before it is cut; 0: no soft limit */
    uint64_t shutdown_grace_ms;        /* SIGTERM: how long clients are still served */
    uint64_t client_timeout;           /* seconds a client may sit idle or mid-request; 0 = forever */
    uint64_t max_request_size;         /* largest request in bytes */
    uint64_t log_level;                /* enum log_level */
    char **passwords;                  /* `password` lines: clients must AUTH with one */
    int npasswords;                    /* entries in passwords */
    char *backend_password;            /* default password= for backends */
    char *backend_user;                /* default user= for backends */
    uint64_t backend_db;               /* default db= for backends (0) */
    uint64_t workers;                  /* worker processes (1: no master, one process) */
    long line;                         /* line being parsed (for messages naming it) */
    long table_size_line;              /* line of table_size, 0 if defaulted */
    char *admin;                       /* admin socket path, or NULL */
    uint64_t admin_mode;               /* its file mode (default 0600) */
    uint16_t *table;                   /* Maglev table: slot -> backend index */
    struct maglev_state *build;        /* the table while it is still being built (a reload
                                          builds it a slice per pass), else NULL */
    uint32_t *owned;                   /* slots of the table each backend owns, once built */
    int resolve;                       /* resolve addresses (0: only check their shape) */
    char **restart_lines;              /* every line of a restart-only directive, as
                                          "name arg...", in file order (reload compares) */
    int nrestart_lines;                /* entries in restart_lines */
};

/* Parses the words of one directive into the config. Returns 0, or -1 with a
 * reason in ERR. */
typedef int (*config_parser)(struct config *c, const void *field, char **argv, int argc,
                             char *err, size_t errlen);

/* How a directive behaves on reload. */
enum config_reload {
    CONFIG_RELOADS, /* a reload applies the new value */
    CONFIG_RESTART  /* a reload logs that it changed and keeps the running value */
};

/* A directive: its name, parser, target field, the range of its value, its
 * default (applied by running the parser on it before the file is read)
 * and what a reload does with it. */
struct config_directive {
    const char *name;     /* as written in the file */
    config_parser parse;  /* parser for its words */
    size_t offset;        /* field in struct config (numeric directives) */
    uint64_t min, max;    /* accepted range (numeric directives) */
    const char *def;      /* default value as it would be written, NULL: none */
    uint8_t reload;       /* enum config_reload */
};

/* ================================================= data model: requests */
/* Request records and the two FIFOs they sit on. */

/*
 * A request record ties one client request to its reply.  It sits on two
 * FIFOs at once:
 *
 *   client A: [r1] -> [r2] -> [r3]        replies leave in this order
 *                |       |
 *   backend 0:  [r1] -> [b7] -> [r3]      replies arrive in this order
 *   backend 1:          [r2]
 *
 * A backend connection answers in the order it was written to, so the head
 * of its FIFO owns the next reply.  That reply goes straight to the client if
 * the record is also the head of the client's FIFO, else it waits in the
 * record.  A split command is a parent on the client FIFO only, with one
 * child per backend on the backend FIFOs; the parent completes when all
 * children have.  A record whose client has gone is an orphan: its reply is
 * still read (to keep the stream in sync) and dropped.
 */

/* What a record stands for; which fields of struct req it uses. */
enum req_role {
    REQ_FORWARD,   /* a client request sent whole to one backend: both FIFOs;
                      client, backend, sent_us, cmd, start_us, reply */
    REQ_PARENT,    /* a split or fanned-out request: client FIFO only; client,
                      cmd, start_us, merge, child/nchild/pending, keymap/nkeys,
                      info_sections, reply (the merged reply) */
    REQ_CHILD,     /* one backend's part of a parent: backend FIFO only;
                      parent, backend, sent_us, reply, proxy_error */
    REQ_LOCAL,     /* a reply the proxy made that waits behind earlier ones:
                      client FIFO only; reply (done from the start) */
    REQ_HANDSHAKE  /* AUTH or SELECT the proxy sent on connect: backend FIFO
                      only; sent_us; its reply is checked, never forwarded */
};

/* How a split parent combines its children's replies. */
enum req_merge {
    MERGE_NONE,  /* not a split parent */
    MERGE_ARRAY, /* MGET: elements back in the order of the keys */
    MERGE_OK,    /* MSET FLUSHDB FLUSHALL SWAPDB ...: +OK when every part said +OK */
    MERGE_SUM,   /* DEL UNLINK EXISTS TOUCH DBSIZE SLOWLOG LEN: sum of integers */
    MERGE_INFO,  /* INFO: the proxy's sections plus the backends' keyspace summed */
    MERGE_FIRST, /* SCRIPT LOAD, FUNCTION LOAD: the first reply, when all succeeded */
    MERGE_AND,   /* SCRIPT EXISTS: 1 where every backend said 1 */
    MERGE_ANYOK, /* SCRIPT KILL, FUNCTION KILL: +OK if any killed, else the error */
    MERGE_CONCAT, /* KEYS: the arrays concatenated */
    MERGE_SLOWLOG, /* SLOWLOG GET: entries concatenated, each tagged with its backend */
    MERGE_RANDOM, /* RANDOMKEY: one non-null reply picked at random */
    MERGE_MIN,   /* LASTSAVE, WAIT: the smallest integer */
    MERGE_MAX,   /* PUBSUB NUMPAT: the largest (every backend has every pattern) */
    MERGE_NUMSUB, /* PUBSUB NUMSUB, SHARDNUMSUB: each channel's counts summed */
    MERGE_SUB,   /* (P|S)(UN)SUBSCRIBE, MONITOR: the reply the proxy built (from the
                    client's own sets) once every backend confirmed; an error else */
    MERGE_SCAN   /* SCAN: one backend's reply, its cursor made the proxy's */
};

struct client;
struct bconn;
struct backend;

/* One request in flight, waiting for its turn, or a split parent. */
struct req {
    struct req *next;          /* next on the client FIFO (or the free list) */
    struct req *next_sent;     /* next on the backend connection FIFO */
    uint8_t role;              /* enum req_role: which of the fields below are used */
    uint8_t done;              /* the reply is complete */
    uint8_t proxy_error;       /* the reply is an error the proxy generated */
    uint8_t merge;             /* enum req_merge, for a parent */
    uint8_t info_sections;     /* INFO parent: INFO_* sections asked for */
    uint8_t proto;             /* parent: the client's protocol when it asked (a HELLO
                                  after it does not change how its merge is encoded) */
    struct client *client;     /* owner; NULL when orphaned and for children */
    struct req *parent;        /* the split parent of a child, else NULL */
    struct backend *backend;   /* backend a forwarded request or child went to */
    uint64_t sent_us;          /* when it was queued to the backend (timeouts, latency) */
    struct buf reply;          /* the reply, when it cannot go straight out */
    uint32_t nchild;           /* parent: children created */
    uint32_t pending;          /* parent: children not yet answered */
    struct req **child;        /* parent: the children, in creation order */
    uint32_t *keymap;          /* MGET parent: child index of each key, in key order */
    uint32_t nkeys;            /* MGET parent: entries in keymap */
    const struct command *cmd; /* command, for per-command stats (NULL for children) */
    uint64_t start_us;         /* when the client's request was dispatched */
    uint32_t skip;             /* backend replies to drop before its own (EXEC: the
                                  +OK of MULTI and each +QUEUED of its block) */
    uint8_t skip_first;        /* the next reply dropped is MULTI's */
    uint8_t multi_refused;     /* MULTI's reply was an error: the block ran unwrapped */
    uint8_t hs;                /* REQ_HANDSHAKE: enum bconn_hs, what it was */
    char *skip_err;            /* the first error among the dropped replies, or NULL */
    uint8_t mute;              /* its reply is dropped, not sent (CLIENT REPLY OFF, SKIP) */
    uint32_t scan_at;          /* SCAN parent: index of the backend scanned */
    uint32_t scan_nb;          /* SCAN parent: backends when the cursor was made */
    uint8_t scan_tag;          /* SCAN parent: the topology's tag (route_scan_tag) */
    uint32_t frames;           /* (un)subscribe child: confirmations the backend still
                                  owes (one per channel sent), the last completes it */
};

/* ================================================= data model: backends */
/* Backend connections, their state machine, per-backend counters. */

/*
 * State of one backend connection.
 *
 *   IDLE --first request--> CONNECTING (pools other than the default)
 *   DOWN --connect()--> CONNECTING --writable, no error--> HANDSHAKE or UP
 *   HANDSHAKE --last AUTH/HELLO/SELECT reply OK--> UP
 *   UP, DOWN, BACKOFF --unused for pool_idle_timeout--> IDLE (not the default pool)
 *   CONNECTING, HANDSHAKE, UP --failure--> BACKOFF, or DOWN (retry at once)
 *   BACKOFF --retry_us reached--> CONNECTING
 *
 * A failure is a refused or timed-out connect, a rejected handshake, EOF, a
 * read or write error, garbage, or a reply timeout; every record on the
 * connection is failed with it.  A connection that had proven itself
 * (answered a request) and was lost, or that was connected and made no
 * progress for `timeout` (a busy backend, such as one running a slow
 * script, is not a broken one), goes to DOWN and reconnects at once; anything else backs off,
 * doubling from RECONNECT_MIN_MS, so a backend that accepts and closes is
 * not hammered.  Requests for a BACKOFF connection are
 * answered "unavailable" at once (unless another worker has the backend up
 * again: route_usable connects then); requests for DOWN, CONNECTING and
 * HANDSHAKE connections queue and are written once it is connected.
 */
enum bconn_state {
    BCONN_IDLE,       /* never opened, or closed unused (a pool no client needs) */
    BCONN_DOWN,       /* no socket; connect at retry_us (now, after a lost connection) */
    BCONN_BACKOFF,    /* no socket; the last attempt failed; connect at retry_us */
    BCONN_CONNECTING, /* non-blocking connect in progress */
    BCONN_HANDSHAKE,  /* connected; AUTH/SELECT replies still owed */
    BCONN_UP          /* connected; requests flow */
};

/* One shared, pipelined connection to a backend. */
struct bconn {
    struct backend *backend;      /* owner */
    int fd;                       /* socket, -1 without one */
    enum bconn_state state;       /* see the diagram above */
    int proven;                   /* a request was answered on this socket: it really works */
    struct buf in;                /* replies read, not yet matched */
    struct buf out;               /* requests queued, not yet written */
    struct resp_reply_parser rp;  /* framing state of the reply at in.r */
    struct req *head, *tail;      /* FIFO of requests written or queued, oldest first */
    uint32_t inflight;            /* entries in that FIFO */
    uint64_t retry_us;            /* DOWN, BACKOFF: when to connect again (0: never failed) */
    uint64_t deadline_us;         /* CONNECTING: when to give up */
    uint64_t backoff_ms;          /* next retry delay, doubling to RECONNECT_MAX_MS */
    uint64_t peer_check_us;       /* BACKOFF: when the other workers' view was last read */
    uint64_t used_us;             /* last request queued (an unused pool closes) */
    uint64_t progress_us;         /* the last sign of life while records wait: bytes read,
                                     the connect, or the first record on an idle one (its
                                     `timeout` counts from here) */
    int pool;                     /* its pool (bconn_pool): database pool / 2, RESP3 if odd */
    int hs_pool;                  /* dedicated: the pool its handshake sets up (the one it
                                     was borrowed in; a WATCH's SELECT/HELLO follow after) */
    uint8_t dedicated;            /* one of the backend's dedicated connections (b->ded) */
    struct client *owner;         /* dedicated: the client holding it, NULL while free */
    uint64_t block_until_us;      /* dedicated, a blocking command on it: when its reply is
                                     late (route_blocking), UINT64_MAX never; 0: no blocking
                                     command on it, `timeout` applies as anywhere */
    uint8_t release_idle;         /* dedicated: free it once what is on it is answered (the
                                     EXEC or UNWATCH that ends a WATCH) */
    uint8_t drop;                 /* dedicated, free: enum bconn_drop, when to close it */
    uint8_t stream;               /* dedicated: enum bconn_stream, what else it carries */
    uint8_t touched;              /* on srv.touched: the end of this pass looks at it */
    uint8_t write_blocked;        /* its last write was partial (the kernel buffer full) */
};

/* What a dedicated connection streams to its client besides replies. */
enum bconn_stream {
    STREAM_NONE,   /* nothing: replies only */
    STREAM_PUBSUB, /* subscribed: message, pmessage and smessage pushes (sub_) */
    STREAM_MONITOR /* MONITOR: a line per command the backend runs */
};

/* When a dedicated connection nobody holds any more must close. */
enum bconn_drop {
    DROP_NO,   /* never: it is held, or free for reuse */
    DROP_IDLE, /* once nothing is in flight on it: a WATCH ended without EXEC or UNWATCH,
                  so it still watches keys and must not serve another client's EXEC */
    DROP_NOW   /* at once: its client left while blocked (its records are orphans), and
                  the backend would hold the block for nobody */
};

/*
 * Stats, defined once.  C(name, section, info, help) is a counter: a field of
 * the stats struct that only grows; G(name, metric, section, info, help,
 * value) is a gauge, computed when rendered.  Every report renders these
 * lists: the text report and JSON under NAME, Prometheus as
 * shardproxy_NAME_total (counters) or shardproxy_METRIC (gauges), INFO as
 * the field INFO in the section INFO_SECTION (NONE: not in INFO).
 */
#define STATS_PROXY(C, G)                                                               \
    G(clients, "clients", CLIENTS, "connected_clients", "Client connections open now",   \
      v->t->clients)                                                                    \
    G(inflight, "inflight_requests", PROXY, "inflight_requests",                        \
      "Requests sent to backends, not answered yet", v->t->inflight)                    \
    G(workers, "workers", NONE, NULL, "Worker processes running", v->workers)           \
    C(worker_restarts, NONE, NULL, "Worker processes restarted after dying")            \
    C(connections_accepted, STATS, "total_connections_received",                        \
      "Client connections accepted")                                                    \
    C(connections_rejected, STATS, "rejected_connections",                              \
      "Client connections refused at max_clients")                                      \
    C(commands, STATS, "total_commands_processed", "Commands received from clients")   \
    C(errors, STATS, "total_error_replies", "Error replies sent to clients")           \
    C(protocol_errors, PROXY, "protocol_errors", "Clients closed for a protocol error") \
    C(output_overflows, PROXY, "output_overflows",                                      \
      "Clients closed for their unread replies (client_output_limit, soft limit)")     \
    C(bytes_in, STATS, "total_net_input_bytes", "Bytes read from clients")             \
    C(bytes_out, STATS, "total_net_output_bytes", "Bytes written to clients")

/* Per-backend stats, the same way, plus S(name, value): a string field
 * (not a Prometheus sample).  INFO's `backends` section, the admin
 * `backends` command and the text report's backend header show each
 * backend on one line: its identity and address, then every S and G row;
 * the counters follow in the text report, JSON and Prometheus. */
#define STATS_BACKEND(C, G, S)                                                          \
    G(weight, "backend_weight", BACKENDS, "weight", "Configured weight", b->cfg.weight) \
    S(state, stats_state_name(s->state))                                                \
    G(slots, "backend_slots", BACKENDS, "slots", "Maglev table slots owned", b->slots) \
    G(connections, "backend_connections", BACKENDS, "connections", "Connections up now", \
      s->conns)                                                                         \
    G(dedicated, "backend_dedicated_connections", BACKENDS, "dedicated",                \
      "Dedicated connections clients hold now (blocking, WATCH, WAIT, pub/sub)", s->dedicated) \
    G(inflight, "backend_inflight_requests", BACKENDS, "inflight",                      \
      "Requests not answered yet", s->inflight)                                         \
    C(requests, NONE, NULL, "Requests sent to the backend")                             \
    C(responses, NONE, NULL, "Replies received from the backend")                       \
    C(errors, NONE, NULL, "Error replies received from the backend")                    \
    C(failures, NONE, NULL, "Requests the proxy failed (backend unavailable or timed out)") \
    C(timeouts, NONE, NULL, "Requests that timed out")                                  \
    C(reconnects, NONE, NULL, "Connection attempts after the first")                    \
    C(bytes_in, NONE, NULL, "Bytes read from the backend")                              \
    C(bytes_out, NONE, NULL, "Bytes written to the backend")

/* Expanders: a struct field per counter, nothing for a gauge or a string;
 * renderers that skip a kind of row pass these too. */
#define STATS_FIELD(name, section, info, help) uint64_t name;
#define STATS_NOFIELD(name, metric, section, info, help, value)
#define STATS_NOSTRING(name, value)
#define STATS_NOFIELD_C(name, section, info, help)

/* Counters of one backend. */
struct backend_stats {
    STATS_BACKEND(STATS_FIELD, STATS_NOFIELD, STATS_NOSTRING)
};

/* Counters of the whole proxy. */
struct proxy_stats {
    STATS_PROXY(STATS_FIELD, STATS_NOFIELD)
};

/* Counters of one command. */
struct cmd_stats {
    uint64_t calls;      /* requests for it */
    uint64_t errors;     /* error replies to them */
    struct hist latency; /* dispatch to complete reply, us */
};

/*
 * Stats live in blocks of one shared mapping made before any fork
 * (stats_init): one block per process that serves clients, plus one the
 * master folds dead workers into.  Every process can so sum every other's
 * figures without messages or locks: each block has one writer, and a
 * reader sees each 64-bit counter whole (a report may be a few samples
 * behind the writers, never wrong by more than that).
 */

/* Gauge `state` of a backend, ordered so that over workers it is the max. */
enum stats_state { STATS_DOWN, STATS_CONNECTING, STATS_UP };

/* What one process knows about one backend: counters, latency, last error,
 * and the gauges it publishes (backend_publish). */
struct stats_slot {
    uint64_t key;            /* stats_key of the backend; 0: the slot is free */
    uint8_t retired;         /* its backend was removed by a reload: not reported */
    uint8_t state;           /* enum stats_state */
    uint64_t conns;          /* connections up */
    uint64_t inflight;       /* requests not answered yet */
    uint64_t dedicated;      /* dedicated connections held by clients */
    char last_error[200];    /* why it was last marked down, "" if never */
    struct backend_stats st; /* counters */
    struct hist latency;     /* request queued to reply read, us */
};

/* One process's proxy-wide figures: what a report sums over processes. */
struct stats_totals {
    uint64_t clients;                           /* gauge: client connections open */
    uint64_t inflight;                          /* gauge: requests sent, not answered */
    struct proxy_stats st;                      /* counters */
    struct cmd_stats cmd[ARRAY_LEN(cmd_table)]; /* per command row; calls 0: never seen */
};

/* Backend slots per block: every backend a config may hold, plus room for
 * removed ones still draining; past that a backend's slot is private
 * (counted, but not seen by the other processes). */
#define STATS_SLOTS (MAGLEV_MAX_BACKENDS + 64)

/* One process's block in the shared mapping. */
struct stats_block {
    long pid;                            /* its process, 0 while none runs in it */
    uint64_t next_client_id;             /* CLIENT IDs handed out, kept over restarts */
    uint32_t nslots;                     /* slots in use or used once (scans stop here) */
    struct stats_totals t;               /* proxy-wide figures */
    struct stats_slot slot[STATS_SLOTS]; /* per backend, found by key */
};

/* Runtime state of one configured backend. */
struct backend {
    struct config_backend cfg; /* a copy of its config line (owned strings) */
    int index;                 /* position in config order */
    int retired;               /* removed by a reload: drains, then is freed */
    uint64_t refs;             /* request records pointing here */
    struct bconn *conns;       /* the connection pools, one after the other: pool P (see
                                  bconn_pool) is conns[P * per_pool ...], P 0 the default */
    int nconns;                /* entries in conns: per_pool x pools */
    int per_pool;              /* connections per pool (backend_connections) */
    int nused;                 /* conns[0..nused) were opened at least once: what the
                                  loop walks, so unused pools cost nothing */
    struct bconn **ded;        /* dedicated connections (blocking commands, WATCH), each
                                  one client's while it holds it, kept for reuse after */
    int nded;                  /* entries in ded, at most ded_max */
    int ded_max;               /* blocking_connections */
    char version[32];          /* redis_version its INFO last reported, "" if unknown */
    uint32_t slots;            /* Maglev slots it owns */
    struct stats_slot *sh;     /* its stats: in this process's block, or private */
    uint8_t sh_private;        /* sh was allocated: no block slot was free */
};

/* ============================ data model: clients and admin connections */
/* Client and admin connection structs. */

/* A transaction being queued: MULTI seen, EXEC or DISCARD not yet.  The
 * proxy holds the commands (answering +QUEUED) and at EXEC writes them to
 * their backend as one MULTI ... EXEC block on a shared connection: nothing
 * runs before EXEC, and no other client's bytes can land inside the block,
 * which is all Redis's per-connection MULTI state needs. */
struct txn {
    struct buf q;     /* the queued commands, encoded */
    uint32_t n;       /* commands in q */
    uint8_t dirty;    /* a command was refused at queue time: EXEC aborts, as Redis's does */
    int backend;      /* index of the backend every key maps to; -1: no key yet */
    uint64_t cfg_gen; /* srv.cfg_gen when backend was chosen: a reload in between aborts */
};

/* A client's pub/sub and MONITOR state: what it subscribed to (the
 * proxy answers every confirmation from these, so the counts are the
 * client's totals over all backends, as one Redis counts them) and the
 * dedicated connections its streams come over. */
struct sub {
    struct set chan;     /* SUBSCRIBE channels (tag: the backend subscribed on) */
    struct set pat;      /* PSUBSCRIBE patterns, subscribed on every backend */
    struct set shard;    /* SSUBSCRIBE shard channels (tag: the backend) */
    struct bconn **conn; /* its stream connections: per backend one for pub/sub and,
                            while it monitors, one for MONITOR */
    int nconn;           /* entries in conn */
    uint8_t monitor;     /* MONITOR ran: every backend streams its commands */
};

/* State of a client connection. */
enum client_state {
    CLIENT_OPEN,    /* reading requests */
    CLIENT_CLOSING, /* QUIT, EOF or protocol error: write what is owed, then close */
    CLIENT_DEAD     /* closed; freed at the end of the loop pass */
};

/* Why a client may run commands.  The difference between the last two is
 * what a reload that adds `password` acts on: a client let in only because
 * no password was configured must AUTH from its next command on, while one
 * that proved a password keeps its access (as Redis keeps it when a
 * password is rotated). */
enum client_auth {
    AUTH_NONE,  /* must AUTH first: only AUTH, HELLO and QUIT are served */
    AUTH_OPEN,  /* no password was configured when it arrived */
    AUTH_PASSED /* AUTH (or HELLO AUTH) matched a configured password */
};

/* One client connection. */
struct client {
    struct client *prev, *next;       /* list of all clients */
    int fd;                           /* socket, -1 once dead */
    uint64_t id;                      /* CLIENT ID, unique for the process */
    enum client_state state;          /* see enum */
    struct buf in;                    /* a partial request (empty when idle) */
    struct buf out;                   /* replies not yet written (empty when idle) */
    struct resp_req_parser parser;    /* framing state of the request at in.r */
    struct req *head, *tail;          /* FIFO of requests awaiting their replies */
    uint32_t npending;                /* entries in that FIFO */
    size_t held;                      /* reply bytes complete but waiting in the FIFO */
    uint8_t dirty;                    /* on the loop's list of clients to flush */
    uint8_t throttled;                /* input left unparsed at client_max_pending */
    uint8_t auth;                     /* enum client_auth */
    uint8_t proto;                    /* RESP version its replies use: 2, or 3 after HELLO 3 */
    uint32_t db;                      /* SELECTed database; its requests use that pool */
    struct txn *txn;                  /* MULTI seen, EXEC not yet: the queued commands */
    char *name;                       /* CLIENT SETNAME, or NULL */
    char addr[64];                    /* peer address, as Redis writes it (logs, CLIENT LIST) */
    const struct command *last_cmd;   /* its latest known command (CLIENT LIST's cmd=) */
    uint8_t reply_off;                /* CLIENT REPLY OFF: replies are dropped until ON */
    uint8_t reply_skip;               /* CLIENT REPLY SKIP: the next command's reply is dropped */
    uint8_t mute;                     /* the command being dispatched gets no reply: MUTE_OFF
                                         (CLIENT REPLY OFF), MUTE_SKIP (a SKIP before it) */
    struct bconn *ded;                /* the dedicated connection its blocking command is
                                         on: its later requests wait until it is answered */
    struct bconn *watch;              /* the dedicated connection its WATCH ran on, held
                                         until EXEC, DISCARD, UNWATCH or RESET */
    char *watch_lost;                 /* the backend whose connection a WATCH was on failed
                                         (its id): EXEC fails, or NULL */
    struct req *wait;                 /* its WAIT, not answered yet: like a blocking command
                                         it holds the client's later requests */
    uint64_t *wrote;                  /* bit I: a write went to srv.backends[I] since its
                                         last WAIT (the backends that WAIT asks) */
    uint32_t wrote_words;             /* 64-bit words allocated in wrote */
    uint8_t wrote_all;                /* a reload renumbered the backends after a write:
                                         its next WAIT asks every backend */
    uint64_t wrote_gen;               /* srv.cfg_gen when a bit of wrote was last set */
    struct sub *sub;                  /* pub/sub and MONITOR state, NULL if never used */
    uint64_t created_us;              /* accept time */
    uint64_t last_us;                 /* last time it sent bytes */
    uint64_t partial_us;              /* when the partial request in `in` began */
    uint8_t let_go;                   /* draining: told EOF (its write side shut) at a
                                         request boundary; read until it closes */
    uint64_t soft_since_us;           /* since when its unread replies are above
                                         client_output_soft_limit, 0 while below */
};

/* Why a client's current command is answered with nothing (client.mute). */
#define MUTE_OFF 1  /* CLIENT REPLY OFF is in effect */
#define MUTE_SKIP 2 /* the command before was CLIENT REPLY SKIP */

/* One connection to the admin socket: line-based commands, text replies. */
struct admin {
    struct admin *next; /* list of admin connections */
    int fd;             /* socket, -1 once closed */
    int closing;        /* quit or EOF seen: close once out is written */
    struct buf in;      /* a partial command line */
    struct buf out;     /* replies not yet written */
};

/* One request being served: what routing and local commands work on,
 * passed explicitly instead of through globals. */
struct call {
    struct client *c;            /* who sent it */
    const struct command *cmd;   /* its command table row; NULL before lookup */
    const struct resp_arg *argv; /* its arguments (into raw, or srv.scratch if inline) */
    int64_t argc;                /* entries in argv */
    const char *raw;             /* the request's bytes as received */
    size_t rawlen;               /* their count */
};

/* =============================================== data model: the server */
/* The one server struct, the fd table, signal flags. */

/* What a file descriptor is, for the loop's dispatch. */
enum fd_type {
    FD_NONE,
    FD_LISTENER,
    FD_CLIENT,
    FD_BACKEND,
    FD_ADMIN_LISTENER,
    FD_ADMIN,
    FD_CONTROL /* a worker's control socket to the master */
};

/* fd -> connection, indexed by descriptor number. */
struct fdref {
    enum fd_type type; /* what ptr points to */
    uint32_t pass;     /* srv.pass when registered: events of an earlier wait are not its own */
    void *ptr;         /* struct client, struct bconn or struct admin; NULL for listeners */
};

/* One worker process, as the master sees it. */
struct worker {
    long pid;            /* its process, 0 while none runs */
    int ctl;             /* the master's end of its control socket, -1 while none runs */
    int *listen_fds;     /* its listening socket per listen directive (shared ones repeat) */
    uint64_t started_us; /* when it was forked */
    uint64_t restart_us; /* when to fork it again after it died, 0: not due */
};

/* The one server: everything the loop owns. */
static struct server {
    struct config *cfg;            /* the configuration in force */
    struct backend **backends;     /* the backends routed to, in config order */
    int nbackends;                 /* entries in backends */
    struct backend **all;          /* every backend with connections: routed ones, and
                                      ones a reload removed that still drain requests */
    int nall;                      /* entries in all */
    int *listen_fds;               /* one socket per listen directive, -1 when closed */
    struct fdref *fds;             /* fd -> connection */
    int maxfds;                    /* entries in fds (RLIMIT_NOFILE) */
    struct client *clients;        /* all open clients */
    uint64_t nclients;             /* open clients */
    struct client **dirty;         /* clients to flush (and reparse) this pass */
    size_t ndirty, dirty_cap;      /* entries / allocation of dirty */
    struct client *dead;           /* closed clients to free, linked by next */
    struct req *free_reqs;         /* recycled request records */
    uint32_t pass;                 /* loop passes so far: one more before each wait */
    char *rbuf;                    /* shared read buffer for clients */
    struct resp_arg *argv;         /* arguments of the request being routed */
    size_t argv_cap;               /* allocation of argv */
    int64_t *keypos;               /* key indexes of the request being routed */
    char *scratch;                 /* unquoted inline arguments */
    size_t scratch_cap;            /* allocation of scratch (and keypos entries) */
    int *split_child;              /* backend index -> child index during a split */
    uint64_t now_us;               /* monotonic clock, read once per pass */
    time_t start_time;             /* wall clock at start, for uptime */
    int stopping;                  /* SIGTERM seen: draining */
    uint64_t stop_deadline_us;     /* drain bound */
    uint64_t grace_until_us;       /* stopping: clients are read and served until then */
    uint8_t grace_over;            /* stopping, and the clients were told it ended */
    uint64_t accept_paused_until;  /* after EMFILE: no accept before this */
    uint64_t accept_warned_us;     /* last "pausing accepts" warning (one a second) */
    uint64_t client_timers_us;     /* last run of client_timers */
    uint32_t any_next;             /* round-robin cursor for CMD_ANY */
    uint64_t cfg_gen;              /* configurations applied: a queued transaction's
                                      backend index is good only while this holds */
    struct proxy_stats *st;        /* counters: in this process's stats block */
    struct stats_block *blocks;    /* the shared mapping: a block per worker, then the
                                      master's (dead workers' counters) */
    struct stats_block *blk;       /* this process's block (the master's, in the master) */
    int nworkers;                  /* worker processes; 1: this process serves alone */
    int self;                      /* worker index (0 when alone), -1 in the master */
    int ctl_fd;                    /* worker: its control socket to the master, else -1 */
    struct config *reload_next;    /* a reload whose Maglev table is still being built */
    struct buf ctl_in;             /* worker: control bytes read, not acted on yet */
    struct worker *workers;        /* master: nworkers entries */
    struct buf report;             /* SIGUSR1 report bytes not yet written to stderr */
    struct bconn **touched;        /* backend connections something touched this pass: the
                                      only ones flushed and re-registered (bconn_touch) */
    size_t ntouched, touched_cap;  /* entries / allocation of touched */
    uint64_t timer_us;             /* no backend connection's timer fires before this: the
                                      timers walk all of them only then (loop_run) */
    uint64_t published_us;         /* when backend_publish last ran */
    uint8_t publish_due;           /* a pass skipped it: the next wait ends in time for it */
    int admin_fd;                  /* admin socket listener, -1 if none */
    struct admin *admins;          /* admin connections */
    int nadmins;                   /* entries in admins */
} srv;

static volatile sig_atomic_t sig_stop;  /* SIGTERM/SIGINT seen */
static volatile sig_atomic_t sig_stats; /* SIGUSR1 seen */
static volatile sig_atomic_t sig_hup;   /* SIGHUP seen */
static volatile sig_atomic_t sig_child; /* SIGCHLD seen (the master) */

/* ========================================================== descriptors */
/* fd_: the fd -> connection table, the one place that edits it. */

/* Enter FD in the table as TYPE, PTR.  Returns -1 (and leaves the fd to
 * the caller) when it is beyond the table, i.e. the descriptor limit. */
static int fd_register(int fd, enum fd_type type, void *ptr)
{
    if (fd < 0 || fd >= srv.maxfds)
        return -1;
    srv.fds[fd].type = type;
    srv.fds[fd].pass = srv.pass;
    srv.fds[fd].ptr = ptr;
    return 0;
}

/* Forget FD, take it out of the event backend and close it. */
static void fd_release(int fd)
{
    ev_del(fd);
    srv.fds[fd].type = FD_NONE;
    srv.fds[fd].ptr = NULL;
    close(fd);
}

/* Put BC on the list of backend connections the end of this pass looks
 * at: written (loop_flush), registered for what it waits for
 * (loop_interest), and its timers taken into srv.timer_us.  The loop walks
 * only those, so thousands of idle dedicated connections (blocked clients,
 * subscribers) cost a pass nothing.  Whatever changes a connection's
 * output, state or timers touches it.  (Defined here, with the fd table,
 * because client_close already needs it.) */
static void bconn_touch(struct bconn *bc)
{
    if (bc->touched)
        return;
    if (srv.ntouched == srv.touched_cap) {
        srv.touched_cap = srv.touched_cap ? srv.touched_cap * 2 : 64;
        srv.touched = xrealloc(srv.touched, sizeof *srv.touched * srv.touched_cap);
    }
    srv.touched[srv.ntouched++] = bc;
    bc->touched = 1;
}

/* ====================================================== request records */
/* req_: allocation from a free list; per-command counters. */

static struct req *req_new(void)
{
    struct req *r = srv.free_reqs;

    if (r)
        srv.free_reqs = r->next;
    else
        r = xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    return r;
}

/* Tie R to backend B (which then outlives R, even across a reload). */
static void req_set_backend(struct req *r, struct backend *b)
{
    r->backend = b;
    b->refs++;
}

/* Recycle a record, and a parent's children with it. */
static void req_free(struct req *r)
{
    uint32_t i;

    for (i = 0; i < r->nchild; i++)
        req_free(r->child[i]);
    free(r->child);
    free(r->keymap);
    free(r->skip_err);
    buf_free(&r->reply);
    if (r->backend)
        r->backend->refs--;
    r->next = srv.free_reqs;
    srv.free_reqs = r;
}

/* The counters of CMD, in this process's stats block. */
static struct cmd_stats *req_cmd_stats(const struct command *cmd)
{
    return &srv.blk->t.cmd[cmd - cmd_table];
}

/* A command's reply is complete: account its latency and outcome. */
static void req_account(const struct command *cmd, uint64_t us, int error)
{
    struct cmd_stats *cs;

    if (!cmd)
        return;
    cs = req_cmd_stats(cmd);
    cs->errors += error != 0;
    hist_add(&cs->latency, us);
}

/* ============================================================== clients */
/* client_: accept, close, free; max_clients; idle timers. */

/* Does C watch keys?  It holds a WATCH connection no EXEC, UNWATCH,
 * DISCARD... has ended yet (one that did is held until what is in flight on
 * it is answered, so the client's later requests stay behind). */
static int client_watching(const struct client *c)
{
    return c->watch && !c->watch->release_idle && !c->watch->drop;
}

/* Is C waiting for a blocking command or WAIT?  Then nothing more it sent
 * is parsed until that is answered, as Redis runs nothing else for it. */
static int client_blocked(const struct client *c)
{
    return c->ded || c->wait;
}

/* Are clients read?  Yes, but once stopping, only for shutdown_grace. */
static int client_reading(void)
{
    return !srv.stopping || srv.now_us < srv.grace_until_us;
}

/* Is C subscribed to anything (Redis's pub/sub context)? */
static int client_subscribed(const struct client *c)
{
    return c->sub && c->sub->chan.n + c->sub->pat.n + c->sub->shard.n > 0;
}

/* C leaves with its WAIT unanswered: the dedicated connections it holds
 * for it (owned, neither its block, its WATCH nor a stream) are closed, so
 * no backend keeps waiting for replicas on nobody's behalf; the WAIT's
 * record is an orphan, like the others. */
static void client_wait_drop(struct client *c)
{
    uint32_t i;
    int j;

    for (i = 0; i < c->wait->nchild; i++) {
        struct backend *b = c->wait->child[i]->backend;
        for (j = 0; j < b->nded; j++) {
            struct bconn *bc = b->ded[j];
            if (bc->owner == c && bc != c->ded && bc != c->watch && !bc->stream) {
                bc->owner = NULL;
                bc->release_idle = 0;
                bc->drop = DROP_NOW;
                bconn_touch(bc);
            }
        }
    }
    c->wait = NULL;
}

/* C lets go of its stream connections at once: each still subscribes or
 * monitors on its backend, so it is closed (bconn_drop), never reused. */
static void client_streams_drop(struct client *c)
{
    int i;

    if (!c->sub)
        return;
    for (i = 0; i < c->sub->nconn; i++) {
        struct bconn *bc = c->sub->conn[i];
        bc->owner = NULL;
        bc->release_idle = 0;
        bc->drop = DROP_NOW;
        bconn_touch(bc);
    }
    free(c->sub->conn);
    c->sub->conn = NULL;
    c->sub->nconn = 0;
}

/* C's pub/sub and MONITOR state goes (RESET, close). */
static void client_sub_free(struct client *c)
{
    if (!c->sub)
        return;
    client_streams_drop(c);
    set_free(&c->sub->chan);
    set_free(&c->sub->pat);
    set_free(&c->sub->shard);
    free(c->sub);
    c->sub = NULL;
}

/* C's WATCH ends without EXEC or UNWATCH (DISCARD, RESET, an aborted EXEC),
 * or C lets go of it NOW (C is gone).  A connection that still watches keys
 * is closed (bconn_drop) rather than given to another client; one an EXEC
 * or UNWATCH ended is freed once answered.  While things C sent are in
 * flight on it (and not NOW), C keeps it, so its next requests to that
 * backend queue behind them. */
static void client_watch_end(struct client *c, int now)
{
    struct bconn *bc = c->watch;

    free(c->watch_lost);
    c->watch_lost = NULL;
    if (!bc)
        return;
    if (!bc->release_idle)
        bc->drop = DROP_IDLE; /* it still watches: closed once idle, never reused */
    bconn_touch(bc);
    if (bc->head && !now)
        return; /* held until idle (bconn_idle_check): the client's next requests queue behind */
    bc->owner = NULL;
    c->watch = NULL;
}

/* C's transaction is over (EXEC, DISCARD, close): drop what it queued. */
static void client_txn_end(struct client *c)
{
    if (!c->txn)
        return;
    buf_free(&c->txn->q);
    free(c->txn);
    c->txn = NULL;
}

/* Close a client now: its fd goes, records in flight become orphans, the
 * struct itself is freed at the end of the pass (it may still be on the
 * dirty list). */
static void client_close(struct client *c, const char *why)
{
    struct req *r, *next;

    if (c->state == CLIENT_DEAD)
        return;
    log_at(LOG_DEBUG, "client %llu %s closed: %s", (unsigned long long)c->id, c->addr, why);
    if (c->ded) { /* blocked: the connection is closed by bconn_timers (bconn_drop) */
        c->ded->owner = NULL;
        c->ded->drop = DROP_NOW;
        bconn_touch(c->ded);
        c->ded = NULL;
    }
    if (c->wait) /* its WAIT's connections: the backends would wait for nobody */
        client_wait_drop(c);
    client_watch_end(c, 1);
    client_sub_free(c);
    for (r = c->head; r; r = next) {
        next = r->next;
        if (r->done)
            req_free(r);
        else
            r->client = NULL; /* orphan: the backend side frees it */
    }
    c->head = c->tail = NULL;
    c->npending = 0;
    c->held = 0;
    fd_release(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    client_txn_end(c);
    c->state = CLIENT_DEAD;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv.clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = srv.dead;
    srv.dead = c;
    srv.nclients--;
    srv.blk->t.clients = srv.nclients; /* at once: other workers check max_clients */
}

static void client_free(struct client *c)
{
    free(c->wrote);
    free(c->watch_lost);
    free(c->name);
    free(c);
}

/* Register what C waits for now: input while it may send requests, output
 * while replies wait.  Called whenever its state may have changed (accept,
 * any event, any reply, the start of a drain); ev_set makes a system call
 * only when the answer differs from what is registered. */
static void client_interest(struct client *c)
{
    unsigned want = 0;

    if (c->state == CLIENT_DEAD)
        return;
    if (c->state == CLIENT_OPEN && !c->throttled && client_reading())
        want |= EV_READ;
    /* a blocked client is still read, a little, to see it leave (and drop
     * its block) as Redis does; what it sends waits unparsed */
    if (c->state == CLIENT_OPEN && client_blocked(c) && buf_len(&c->in) < READ_CHUNK &&
        client_reading())
        want |= EV_READ;
    if (buf_len(&c->out))
        want |= EV_WRITE;
    if (ev_set(c->fd, want) < 0)
        client_close(c, strerror(errno));
}

/* A client connected as FD (already in the fd table's range) from SS. */
/* SS as Redis writes a client's address: ip:port, [ipv6]:port, a UNIX
 * socket's path:0 (an unnamed peer socket is "unix"). */
static void client_format_addr(const struct sockaddr_storage *ss, char *out, size_t n)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, n, "%s:%u", ip, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else if (ss->ss_family == AF_UNIX && ((const struct sockaddr_un *)ss)->sun_path[0]) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        size_t len = MIN(strnlen(un->sun_path, sizeof un->sun_path), n - 3);
        memcpy(out, un->sun_path, len);
        memcpy(out + len, ":0", 3);
    } else {
        snprintf(out, n, "unix");
    }
}

/* The address C came in on, as Redis writes it (CLIENT LIST's laddr=):
 * asked of the socket when wanted, not on every accept. */
static void client_laddr(const struct client *c, char *out, size_t n)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof local;

    memset(&local, 0, sizeof local);
    if (getsockname(c->fd, (struct sockaddr *)&local, &len) == 0)
        client_format_addr(&local, out, n);
    else
        snprintf(out, n, "?");
}

/* The pool (bconn_pool) C's requests use: its database and protocol. */
static int client_pool(const struct client *c)
{
    return (int)c->db * 2 + (c->proto == 3);
}

static void client_new(int fd, const struct sockaddr_storage *ss)
{
    struct client *c = xmalloc(sizeof *c);

    memset(c, 0, sizeof *c);
    c->fd = fd;
    /* unique over every worker and its restarts: worker w hands out w+1, w+1+n, ... */
    c->id = srv.blk->next_client_id++ * (uint64_t)srv.nworkers + (uint64_t)srv.self + 1;
    c->state = CLIENT_OPEN;
    c->created_us = c->last_us = srv.now_us;
    c->auth = srv.cfg->npasswords == 0 ? AUTH_OPEN : AUTH_NONE;
    c->proto = 2;
    resp_req_init(&c->parser);
    client_format_addr(ss, c->addr, sizeof c->addr);
    c->next = srv.clients;
    if (srv.clients)
        srv.clients->prev = c;
    srv.clients = c;
    srv.nclients++;
    srv.blk->t.clients = srv.nclients;
    srv.st->connections_accepted++;
    fd_register(fd, FD_CLIENT, c);
    log_at(LOG_DEBUG, "client %llu %s connected", (unsigned long long)c->id, c->addr);
    client_interest(c);
}

/* Clients this process can hold: its descriptor limit less the backend
 * connections, the listeners and the reserve. */
static uint64_t client_fit(void)
{
    const struct config *c = srv.cfg;
    uint64_t reserve = CLIENT_FD_RESERVE + (uint64_t)c->nlistens + 1 +
                       (uint64_t)c->nbackends * c->backend_connections;

    return (uint64_t)srv.maxfds > reserve ? (uint64_t)srv.maxfds - reserve : 1;
}

/* Clients the whole proxy serves at once: max_clients, lowered when the
 * descriptor limits could not hold them (each worker holds its own). */
static uint64_t client_limit(void)
{
    uint64_t procs = srv.nworkers > 1 ? (uint64_t)srv.nworkers : 1;

    return MIN(srv.cfg->max_clients, client_fit() * procs);
}

/* Clients open in the whole proxy: this process's, plus what the other
 * workers published at their last pass (so max_clients may be passed by at
 * most one client per other worker accepting in the same instant). */
static uint64_t client_count(void)
{
    uint64_t n = srv.nclients;
    int w;

    for (w = 0; srv.nworkers > 1 && w < srv.nworkers; w++)
        if (w != srv.self)
            n += srv.blocks[w].t.clients;
    return n;
}

/* Say so when the descriptor limit lowers max_clients (start, reload). */
static void client_limit_check(void)
{
    if (client_limit() < srv.cfg->max_clients)
        log_at(LOG_WARN, "max_clients %llu lowered to %llu by the descriptor limit (%d per "
               "process); raise it with ulimit -n", (unsigned long long)srv.cfg->max_clients,
               (unsigned long long)client_limit(), srv.maxfds);
}

/* Enforce the output limits, as Redis's client-output-buffer-limit does:
 * above client_output_limit a client is cut at once (memory safety);
 * above client_output_soft_limit it is cut once it stayed there for
 * client_output_soft_seconds without draining below.  A client that reads
 * is so never cut for receiving one big value, or a burst.  Checked when
 * replies are added, and by client_timers for a client that gets none. */
static void client_check_output(struct client *c)
{
    /* replies waiting behind a slow one count too: they are just as unread */
    size_t owed = buf_len(&c->out) + c->held;
    const char *which = NULL;

    if (c->state == CLIENT_DEAD)
        return;
    if (owed <= srv.cfg->client_output_soft_limit || !srv.cfg->client_output_soft_seconds)
        c->soft_since_us = 0;
    else if (!c->soft_since_us)
        c->soft_since_us = srv.now_us;
    if (owed > srv.cfg->client_output_limit)
        which = "client_output_limit";
    else if (c->soft_since_us &&
             srv.now_us - c->soft_since_us >= srv.cfg->client_output_soft_seconds * 1000000)
        which = "client_output_soft_limit for client_output_soft_seconds";
    if (!which)
        return;
    log_at(LOG_WARN, "client %llu %s closed: %zu bytes of unread replies exceed %s",
           (unsigned long long)c->id, c->addr, owed, which);
    srv.st->output_overflows++;
    client_close(c, "output limit");
}

/* Every CLIENT_TIMER_US: free the emptied I/O buffers of clients quiet for a
 * second (the input buffer a partial request needed; the output buffer
 * goes back as soon as it is written and nothing more is owed), and apply
 * client_timeout: close clients owed nothing that have sent nothing for
 * that long, or that have sat on an incomplete request that long (a client
 * trickling a request byte by byte is stuck all the same). */
static void client_timers(void)
{
    uint64_t limit = srv.cfg->client_timeout * 1000000;
    struct client *c, *next;

    if (srv.now_us - srv.client_timers_us < CLIENT_TIMER_US)
        return;
    srv.client_timers_us = srv.now_us;
    for (c = srv.clients; c; c = next) {
        next = c->next;
        if (c->soft_since_us) {
            client_check_output(c);
            if (c->state == CLIENT_DEAD)
                continue;
        }
        if (srv.now_us - c->last_us >= CLIENT_IDLE_US) {
            if (c->in.data && buf_len(&c->in) == 0)
                buf_free(&c->in);
            if (c->out.data && buf_len(&c->out) == 0)
                buf_free(&c->out);
        }
        if (!limit || c->state != CLIENT_OPEN || c->npending > 0 || buf_len(&c->out) > 0)
            continue;
        if (srv.now_us - c->last_us >= limit)
            client_close(c, "idle past client_timeout");
        else if (buf_len(&c->in) > 0 && srv.now_us - c->partial_us >= limit)
            client_close(c, "incomplete request past client_timeout");
    }
}

/* A reload turned AUTH on: every client that was let in only because no
 * password was configured must AUTH from its next command on (requests
 * already in flight are still answered).  Asking, not disconnecting: the
 * client gets a clear -NOAUTH where a library can act, and nothing owed to
 * it is lost.  Clients that proved a password keep their access. */
static void client_require_auth(void)
{
    struct client *c;
    uint64_t n = 0;

    for (c = srv.clients; c; c = c->next)
        if (c->auth == AUTH_OPEN) {
            c->auth = AUTH_NONE;
            n++;
        }
    if (n)
        log_at(LOG_INFO, "password now required: %llu connected client(s) must AUTH",
               (unsigned long long)n);
}

/* The data listener accepted FD from SS: a client, unless max_clients (or
 * the descriptor limit) is reached, in which case it is told so and closed. */
static void client_accept(int fd, const struct sockaddr_storage *ss)
{
    if (fd >= srv.maxfds || srv.nclients >= client_fit() || client_count() >= client_limit()) {
        static const char msg[] = "-ERR max number of clients reached\r\n";
        size_t put;
        net_write(fd, msg, sizeof msg - 1, &put); /* best effort */
        close(fd);
        srv.st->connections_rejected++;
        return;
    }
    if (net_nonblock(fd) < 0) {
        close(fd);
        return;
    }
    if (ss->ss_family != AF_UNIX)
        net_tcp_options(fd);
    client_new(fd, ss);
}

/* ======================================================== client output */
/* reply_: the reply FIFO, replies the proxy makes, output limits, writes. */

/* Queue C to be flushed (and re-parsed if throttled) at the end of the pass. */
static void reply_dirty(struct client *c)
{
    if (c->dirty)
        return;
    if (srv.ndirty == srv.dirty_cap) {
        srv.dirty_cap = srv.dirty_cap ? srv.dirty_cap * 2 : 64;
        srv.dirty = xrealloc(srv.dirty, sizeof *srv.dirty * srv.dirty_cap);
    }
    srv.dirty[srv.ndirty++] = c;
    c->dirty = 1;
}

/* Bytes leave for the client: count errors, append, schedule the write. */
static void reply_emit(struct client *c, const char *p, size_t n)
{
    if (n > 0 && p[0] == '-')
        srv.st->errors++;
    buf_append(&c->out, p, n);
    reply_dirty(c);
}


/* Append R to C's reply FIFO. */
static void reply_push(struct client *c, struct req *r)
{
    r->client = c;
    r->mute = c->mute;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->npending++;
}

/* Pop and free the head record. */
static void reply_pop(struct client *c)
{
    struct req *r = c->head;

    c->head = r->next;
    if (!c->head)
        c->tail = NULL;
    c->npending--;
    req_free(r);
    if (c->throttled) /* its input waits for room, or for this (input_defer) */
        reply_dirty(c);
}

/* Record R of C is complete with its reply stored in it: count the bytes
 * it holds until reply_release hands them out. */
static void reply_hold(struct client *c, struct req *r)
{
    r->done = 1;
    c->held += buf_len(&r->reply);
}

/* Move every completed record at the head of the FIFO to the output. */
static void reply_release(struct client *c)
{
    while (c->head && c->head->done) {
        c->held -= buf_len(&c->head->reply);
        if (!c->head->mute)
            reply_emit(c, c->head->reply.data + c->head->reply.r, buf_len(&c->head->reply));
        reply_pop(c);
    }
    client_check_output(c);
}

/* A reply the proxy makes itself to call K: straight out when nothing is
 * owed before it, else a completed record in line. */
static void reply_local(const struct call *k, const char *p, size_t n)
{
    struct client *c = k->c;
    struct req *r;

    /* answered without a backend: no latency to speak of */
    req_account(k->cmd, 0, n > 0 && p[0] == '-');
    if (c->mute && !c->head)
        return;
    if (!c->head) {
        reply_emit(c, p, n);
        client_check_output(c);
        return;
    }
    r = req_new();
    r->role = REQ_LOCAL;
    buf_append(&r->reply, p, n);
    reply_push(c, r);
    reply_hold(c, r);
    client_check_output(c);
}

static void reply_local_str(const struct call *k, const char *s)
{
    reply_local(k, s, strlen(s));
}

/* Format an error reply to call K. */
static void reply_error(const struct call *k, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void reply_error(const struct call *k, const char *fmt, ...)
{
    char msg[REPLY_ERR_MAX];
    struct buf b = {0, 0, 0, 0};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    enc_error(&b, "%s", msg);
    reply_local(k, b.data, buf_len(&b));
    buf_free(&b);
}

/* Bytes a stream connection pushes to C (a message, a MONITOR line),
 * HEAD[0..HN) then P[0..N): straight out when nothing is owed before them,
 * else appended to a completed record at the tail of its FIFO, so they
 * come after the replies owed (the confirmation of the SUBSCRIBE that let
 * them through among them). */
static void reply_push_stream(struct client *c, const char *head, size_t hn, const char *p,
                              size_t n)
{
    struct req *r = c->tail;

    if (c->state != CLIENT_OPEN)
        return;
    /* blocked (RESP3: BLPOP, WAIT while subscribed), the client owes only
     * its block, after everything before it: pushes go at once, as Redis's */
    if (!c->head || (client_blocked(c) && c->head == c->tail && !c->head->done)) {
        buf_append(&c->out, head, hn);
        buf_append(&c->out, p, n);
        reply_dirty(c);
    } else {
        if (!r->done || r->role != REQ_LOCAL || r->mute) {
            r = req_new();
            r->role = REQ_LOCAL;
            reply_push(c, r);
            r->mute = 0; /* CLIENT REPLY does not mute what is pushed */
            reply_hold(c, r);
        }
        buf_append(&r->reply, head, hn);
        buf_append(&r->reply, p, n);
        c->held += hn + n;
    }
    client_check_output(c);
}

/* The bulk string at P[*AT..N) of a complete frame: its bytes in *S and
 * *LEN, *AT moved past it.  Returns 0, or -1 when there is none. */
static int reply_bulk_at(const char *p, size_t n, size_t *at, const char **s, size_t *len)
{
    size_t i = *at + 1, v = 0;

    if (*at >= n || p[*at] != '$')
        return -1;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
        v = v * 10 + (size_t)(p[i] - '0');
    if (i + 2 > n || p[i] != '\r' || v > n - i - 2 || n - i - 2 - v < 2)
        return -1;
    *s = p + i + 2;
    *len = v;
    *at = i + 2 + v + 2;
    return 0;
}

/* The channel WAIT's no-op PUBLISH uses (route_wait): a pattern that
 * matches it must not hear it through the proxy. */
#define WAIT_CHANNEL "__shardproxy__:wait"

/* Is the pmessage P[0..N), whose pattern ends at AT, WAIT's no-op? */
static int reply_is_wait_noop(const char *p, size_t n, size_t at)
{
    const char *ch;
    size_t len;

    return p[1] == '4' && reply_bulk_at(p, n, &at, &ch, &len) == 0 &&
           len == sizeof WAIT_CHANNEL - 1 && !memcmp(ch, WAIT_CHANNEL, len);
}

/* Deliver P[0..N), a frame of a pub/sub connection, to C if it is a
 * message (`message`, `pmessage`, `smessage` with its channel or pattern)
 * for something C is still subscribed to: an UNSUBSCRIBE already answered
 * by the proxy drops what its backend sent before it saw it.  In RESP3 it
 * goes as a push (">"), as Redis sends it.  Returns 1 if it was a
 * message, 0 if not (a confirmation, an error). */
static int reply_message(struct client *c, const char *p, size_t n)
{
    const char *kind, *name;
    size_t at = 4, klen, nlen;
    const struct set *set;

    if (n < 4 || p[0] != '*' || (p[1] != '3' && p[1] != '4') || p[2] != '\r' ||
        reply_bulk_at(p, n, &at, &kind, &klen) < 0)
        return 0;
    if (klen == 7 && !memcmp(kind, "message", 7) && p[1] == '3')
        set = c && c->sub ? &c->sub->chan : NULL;
    else if (klen == 8 && !memcmp(kind, "pmessage", 8) && p[1] == '4')
        set = c && c->sub ? &c->sub->pat : NULL;
    else if (klen == 8 && !memcmp(kind, "smessage", 8) && p[1] == '3')
        set = c && c->sub ? &c->sub->shard : NULL;
    else
        return 0;
    if (set && reply_bulk_at(p, n, &at, &name, &nlen) == 0 && set_find(set, name, nlen) &&
        !reply_is_wait_noop(p, n, at))
        reply_push_stream(c, c->proto == 3 ? ">" : "*", 1, p + 1, n - 1);
    return 1;
}

/* Deliver MONITOR line P[0..N) of backend B to C, tagged with B's
 * identity inside the brackets: "+<time> [<db> <addr>] ..." becomes
 * "+<time> [<db> <id>/<addr>] ...", which parsers of Redis's format
 * (redis-py's) still read.  A line not in that format goes as it is. */
static void reply_monitor(struct client *c, const struct backend *b, const char *p, size_t n)
{
    const char *open = memchr(p, '[', n), *sp;
    struct buf line = {0, 0, 0, 0};

    sp = open ? memchr(open, ' ', n - (size_t)(open - p)) : NULL;
    if (p[0] != '+' || !sp) {
        reply_push_stream(c, "", 0, p, n);
        return;
    }
    buf_append(&line, p, (size_t)(sp + 1 - p));
    buf_printf(&line, "%s/", b->cfg.id);
    buf_append(&line, sp + 1, n - (size_t)(sp + 1 - p));
    reply_push_stream(c, "", 0, line.data, buf_len(&line));
    buf_free(&line);
}

/* One write() of the pending output; closes a CLOSING client once nothing
 * is owed. */
static void reply_flush(struct client *c)
{
    size_t n;

    if (buf_len(&c->out) > 0) {
        enum net_result rc = net_write(c->fd, c->out.data + c->out.r, buf_len(&c->out), &n);
        if (rc == NET_OK) {
            srv.st->bytes_out += n;
            buf_consume(&c->out, n);
            if (buf_len(&c->out) + c->held <= srv.cfg->client_output_soft_limit)
                c->soft_since_us = 0; /* drained below the soft limit */
            /* caught up and owed nothing: an idle client keeps no buffer
             * (what idle pools of thousands cost).  A first-size one goes
             * to the spare list, which the next reply takes back cheaply; a
             * bigger one stays for the next big reply, until client_timers
             * frees it. */
            if (buf_len(&c->out) == 0 && !c->head && c->out.cap == BUF_MIN)
                buf_free(&c->out);
        } else if (rc == NET_ERR) {
            client_close(c, strerror(errno));
            return;
        }
    }
    if (c->state == CLIENT_CLOSING && buf_len(&c->out) == 0 && (!c->head || client_blocked(c)))
        client_close(c, "done"); /* a blocked one would wait for nothing: its block goes */
}

/* =========================================================== completion */
/* complete_: replies matched to records, split commands merged. */

/* The one call from the core up to a later section: an INFO parent's reply
 * is rendered by the INFO section, which needs the backends' state. */
static void stats_info_merge(struct req *p);

/* Any child that answered with an error fails the whole command.  When
 * every child got the same error from its backend (a FUNCTION LOAD of a
 * library all of them have, a SCAN with a bad option), that is what one
 * Redis would have said, and OUT gets it as it is.  Otherwise OUT gets the
 * first error (the proxy's own as it is, a backend's naming the backend)
 * and, when several failed, the other backends that did.  Returns 1 if any
 * child failed. */
static int complete_merge_error(const struct req *p, struct buf *out)
{
    const struct req *first = NULL;
    uint32_t i, failed = 0;
    int same = 0;
    char also[200];
    size_t o = 0;

    also[0] = '\0';
    for (i = 0; i < p->nchild; i++) {
        const struct req *ch = p->child[i];
        const char *rp = ch->reply.data + ch->reply.r;
        if (rp[0] != '-')
            continue;
        failed++;
        if (!first) {
            first = ch;
            same = !ch->proxy_error;
            continue;
        }
        same = same && !ch->proxy_error && buf_len(&ch->reply) == buf_len(&first->reply) &&
               !memcmp(rp, first->reply.data + first->reply.r, buf_len(&ch->reply));
        if (o < sizeof also)
            o += (size_t)snprintf(also + o, sizeof also - o, "%s%s", o ? ", " : "",
                                  ch->backend->cfg.id);
    }
    if (!first)
        return 0;
    const char *rp = first->reply.data + first->reply.r;
    int len = (int)MIN(buf_len(&first->reply) - 3, 200); /* without '-' and CRLF */
    if (same && failed == p->nchild)
        buf_append(out, rp, buf_len(&first->reply));
    else if (first->proxy_error)
        enc_error(out, "%.*s%s%s%s", len, rp + 1, o ? " (also failed: " : "", also, o ? ")" : "");
    else
        enc_error(out, "ERR backend %s failed: %.*s%s%s%s", first->backend->cfg.id, len, rp + 1,
                  o ? " (also failed: " : "", also, o ? ")" : "");
    return 1;
}

/* Child CH's reply, if it is an array: its element count in *N and the
 * offset of its first element in *BODY.  Returns 0, or -1 when it is not. */
static int complete_array_head(const struct req *ch, int64_t *n, size_t *body)
{
    const char *rp = ch->reply.data + ch->reply.r;
    const char *nl = memchr(rp, '\n', buf_len(&ch->reply));

    if (rp[0] != '*' || !nl || resp_parse_ll(rp + 1, (size_t)(nl - rp) - 2, n) != 0 || *n < 0)
        return -1;
    *body = (size_t)(nl - rp) + 1;
    return 0;
}

/* MGET: the children's arrays interleaved back into key order. */
static void complete_merge_array(const struct req *p, struct buf *out)
{
    size_t *cursor = xmalloc(sizeof *cursor * p->nchild); /* next element per child */
    uint32_t i;

    for (i = 0; i < p->nchild; i++) {
        const struct req *ch = p->child[i];
        const char *rp = ch->reply.data + ch->reply.r;
        if (rp[0] != '*') {
            enc_error(out, "ERR backend %s sent an unexpected reply", ch->backend->cfg.id);
            free(cursor);
            return;
        }
        cursor[i] = (size_t)((const char *)memchr(rp, '\n', buf_len(&ch->reply)) - rp) + 1;
    }
    enc_array(out, p->nkeys);
    for (i = 0; i < p->nkeys; i++) {
        const struct req *ch = p->child[p->keymap[i]];
        const char *rp = ch->reply.data + ch->reply.r;
        struct resp_reply_parser rpp;
        size_t at = cursor[p->keymap[i]];
        resp_reply_init(&rpp);
        if (at >= buf_len(&ch->reply) ||
            resp_reply_parse(&rpp, rp + at, buf_len(&ch->reply) - at) != RESP_OK) {
            out->r = out->w = 0;
            enc_error(out, "ERR backend %s sent a short reply", ch->backend->cfg.id);
            break;
        }
        buf_append(out, rp + at, rpp.pos);
        cursor[p->keymap[i]] += rpp.pos;
    }
    free(cursor);
}

/* MSET, FLUSHDB, SWAPDB...: +OK when every child said +OK.  DEL, UNLINK,
 * EXISTS, TOUCH, DBSIZE, SLOWLOG LEN: the sum of the children's integers.
 * LASTSAVE: the smallest (the oldest save). */
static void complete_merge_scalar(const struct req *p, struct buf *out)
{
    int64_t acc = 0, v = 0;
    uint32_t i;

    for (i = 0; i < p->nchild; i++) {
        const struct req *ch = p->child[i];
        const char *rp = ch->reply.data + ch->reply.r;
        int ok = p->merge == MERGE_OK
                     ? buf_len(&ch->reply) == 5 && !memcmp(rp, "+OK\r\n", 5)
                     : rp[0] == ':' && resp_parse_ll(rp + 1, buf_len(&ch->reply) - 3, &v) == 0;
        if (!ok) {
            enc_error(out, "ERR backend %s sent an unexpected reply", ch->backend->cfg.id);
            return;
        }
        if (p->merge == MERGE_MIN ? i == 0 || v < acc : p->merge == MERGE_MAX ? i == 0 || v > acc : 1)
            acc = p->merge == MERGE_MIN || p->merge == MERGE_MAX ? v : acc + v;
    }
    if (p->merge == MERGE_OK)
        buf_append_str(out, "+OK\r\n");
    else
        buf_printf(out, ":%lld\r\n", (long long)acc);
}

/* Every child of P answered an array: put the header of an array of all
 * their elements in OUT and return 0; else put an error naming the first
 * that did not in OUT and return -1. */
static int complete_arrays_head(const struct req *p, struct buf *out)
{
    int64_t n, total = 0;
    size_t body;
    uint32_t i;

    for (i = 0; i < p->nchild; i++) {
        if (complete_array_head(p->child[i], &n, &body) < 0) {
            enc_error(out, "ERR backend %s sent an unexpected reply", p->child[i]->backend->cfg.id);
            return -1;
        }
        total += n;
    }
    enc_array(out, (size_t)total);
    return 0;
}

/* KEYS: every child's array, one after the other. */
static void complete_merge_concat(const struct req *p, struct buf *out)
{
    int64_t n;
    size_t body;
    uint32_t i;

    if (complete_arrays_head(p, out) < 0)
        return;
    for (i = 0; i < p->nchild; i++) {
        const struct req *ch = p->child[i];
        complete_array_head(ch, &n, &body);
        buf_append(out, ch->reply.data + ch->reply.r + body, buf_len(&ch->reply) - body);
    }
}

/* One SLOWLOG GET entry at E[0..N), into OUT with its last field (the
 * client name, the proxy's connection's: useless here) replaced by the
 * backend's identity ID.  Returns the entry's length, or 0 if it is cut. */
static size_t complete_slowlog_entry(struct buf *out, const char *e, size_t n, const char *id)
{
    static const char six[] = "*6\r\n";
    struct resp_reply_parser rp;
    size_t at = sizeof six - 1;
    int f;

    if (n < at || memcmp(e, six, at)) { /* not the 6-field entry of Redis 4+: as it is */
        resp_reply_init(&rp);
        if (resp_reply_parse(&rp, e, n) != RESP_OK)
            return 0;
        buf_append(out, e, rp.pos);
        return rp.pos;
    }
    for (f = 0; f < 6; f++) {
        resp_reply_init(&rp);
        if (resp_reply_parse(&rp, e + at, n - at) != RESP_OK)
            return 0;
        if (f == 5)
            break;
        at += rp.pos;
    }
    buf_append(out, e, at);
    enc_bulk(out, id, strlen(id));
    return at + rp.pos;
}

/* SLOWLOG GET: each backend's entries in turn (newest first within each,
 * as Redis keeps them), every entry tagged with its backend. */
static void complete_merge_slowlog(const struct req *p, struct buf *out)
{
    int64_t n, e;
    size_t body;
    uint32_t i;

    if (complete_arrays_head(p, out) < 0)
        return;
    for (i = 0; i < p->nchild; i++) {
        const struct req *ch = p->child[i];
        const char *rp = ch->reply.data + ch->reply.r;
        complete_array_head(ch, &n, &body);
        for (e = 0; e < n; e++) {
            size_t len = complete_slowlog_entry(out, rp + body, buf_len(&ch->reply) - body,
                                                ch->backend->cfg.id);
            if (!len) {
                out->r = out->w = 0;
                enc_error(out, "ERR backend %s sent a short reply", ch->backend->cfg.id);
                return;
            }
            body += len;
        }
    }
}

/* SCRIPT EXISTS: 1 for a script only where every backend has it (an
 * EVALSHA may run on any of them). */
static void complete_merge_and(const struct req *p, struct buf *out)
{
    int64_t n = 0, first = -1, e;
    size_t body;
    uint32_t i;
    uint8_t *all;

    for (i = 0; i < p->nchild; i++) {
        if (complete_array_head(p->child[i], &n, &body) < 0 || (first >= 0 && n != first) ||
            buf_len(&p->child[i]->reply) != body + 4 * (size_t)n) {
            enc_error(out, "ERR backend %s sent an unexpected reply", p->child[i]->backend->cfg.id);
            return;
        }
        first = n;
    }
    all = xmalloc((size_t)n + 1);
    memset(all, 1, (size_t)n + 1);
    for (i = 0; i < p->nchild; i++) {
        const struct req *ch = p->child[i];
        const char *rp = ch->reply.data + ch->reply.r;
        complete_array_head(ch, &n, &body);
        for (e = 0; e < n; e++)
            all[e] &= memcmp(rp + body + 4 * (size_t)e, ":1\r\n", 4) == 0;
    }
    enc_array(out, (size_t)n);
    for (e = 0; e < n; e++)
        buf_append_str(out, all[e] ? ":1\r\n" : ":0\r\n");
    free(all);
}

/* Child CH's reply as it is. */
static void complete_copy(const struct req *ch, struct buf *out)
{
    buf_append(out, ch->reply.data + ch->reply.r, buf_len(&ch->reply));
}

/* SCRIPT KILL, FUNCTION KILL: +OK when any backend killed one (a script
 * runs on one backend), else the first child's error (NOTBUSY ...). */
static void complete_merge_anyok(const struct req *p, struct buf *out)
{
    uint32_t i;

    for (i = 0; i < p->nchild; i++)
        if (p->child[i]->reply.data[p->child[i]->reply.r] == '+') {
            complete_copy(p->child[i], out);
            return;
        }
    complete_copy(p->child[0], out);
}

/* RANDOMKEY: the key of a backend picked at random among those that have
 * one, or a null when none has. */
static void complete_merge_random(const struct req *p, struct buf *out)
{
    uint32_t i, n = 0, pick;

    for (i = 0; i < p->nchild; i++)
        n += p->child[i]->reply.data[p->child[i]->reply.r] == '$' &&
             p->child[i]->reply.data[p->child[i]->reply.r + 1] != '-';
    if (n == 0) {
        enc_null(out, p->proto);
        return;
    }
    pick = (uint32_t)rand() % n;
    for (i = 0; i < p->nchild; i++) {
        const char *rp = p->child[i]->reply.data + p->child[i]->reply.r;
        if (rp[0] == '$' && rp[1] != '-' && pick-- == 0) {
            complete_copy(p->child[i], out);
            return;
        }
    }
}

/* SCAN: the backend's [cursor, keys] with its cursor made the proxy's
 * (route_scan): the next backend's start when this one is done, and 0
 * only after the last. */
static void complete_merge_scan(const struct req *p, struct buf *out)
{
    static const char head[] = "*2\r\n$";
    const struct req *ch = p->child[0];
    const char *rp = ch->reply.data + ch->reply.r, *nl;
    size_t n = buf_len(&ch->reply), at = sizeof head - 1;
    int64_t clen;
    uint64_t bcur = 0, next, bi = p->scan_at;
    char cur[24];

    if (n < at || memcmp(rp, head, at) || !(nl = memchr(rp + at, '\n', n - at)) ||
        resp_parse_ll(rp + at, (size_t)(nl - rp) - at - 1, &clen) != 0 || clen < 1 ||
        clen > 20 || (size_t)(nl - rp) + 1 + (size_t)clen + 2 > n ||
        cmd_parse_u64(nl + 1, (size_t)clen, &bcur) < 0) {
        enc_error(out, "ERR backend %s sent an unexpected reply", ch->backend->cfg.id);
        return;
    }
    at = (size_t)(nl - rp) + 1 + (size_t)clen + 2; /* the keys array */
    if (bcur == 0 && bi + 1 == p->scan_nb)
        next = 0;
    else if (bcur == 0)
        next = (bi + 1) * 16 + p->scan_tag;
    else if (bcur > (UINT64_MAX / 16 - 1) / p->scan_nb) {
        enc_error(out, "ERR backend %s cursor too large for the proxy", ch->backend->cfg.id);
        return;
    } else
        next = (bcur * p->scan_nb + bi) * 16 + p->scan_tag;
    snprintf(cur, sizeof cur, "%llu", (unsigned long long)next);
    enc_array(out, 2);
    enc_bulk(out, cur, strlen(cur));
    buf_append(out, rp + at, n - at);
}

/* PUBSUB NUMSUB / SHARDNUMSUB: every backend was asked about every
 * channel, and answered channel, count, channel, count... (a map in
 * RESP3): the first reply with each count replaced by the sum over all
 * (a channel's subscribers are on the backend that owns it, but one
 * subscribed there directly is counted too). */
static void complete_merge_numsub(const struct req *p, struct buf *out)
{
    size_t *at = xcalloc(p->nchild, sizeof *at), len = 0;
    const char *name = NULL;
    int64_t pairs = -1, i, sum;
    uint32_t c;

    for (c = 0; c < p->nchild; c++) { /* the same header everywhere */
        const struct req *ch = p->child[c];
        const char *rp = ch->reply.data + ch->reply.r;
        long nl = resp_find_nl(rp, 0, buf_len(&ch->reply));
        int64_t n;
        if ((rp[0] != '*' && rp[0] != '%') || nl < 2 ||
            resp_parse_ll(rp + 1, (size_t)nl - 2, &n) < 0 || (pairs >= 0 && n != pairs))
            goto bad;
        pairs = n;
        at[c] = (size_t)nl + 1; /* resp_find_nl: the offset of the '\n' */
    }
    buf_append(out, p->child[0]->reply.data + p->child[0]->reply.r, at[0]);
    for (i = 0; i < (p->child[0]->reply.data[p->child[0]->reply.r] == '*' ? pairs / 2 : pairs);
         i++) {
        for (sum = 0, c = 0; c < p->nchild; c++) { /* each: the same channel, a count */
            const struct req *ch = p->child[c];
            const char *rp = ch->reply.data + ch->reply.r, *cname;
            size_t n = buf_len(&ch->reply), clen;
            int64_t v;
            long e;
            if (reply_bulk_at(rp, n, &at[c], &cname, &clen) < 0 ||
                (c > 0 && (clen != len || memcmp(cname, name, len))) || at[c] >= n ||
                rp[at[c]] != ':' || (e = resp_find_nl(rp, at[c], n)) < (long)at[c] + 2 ||
                resp_parse_ll(rp + at[c] + 1, (size_t)e - at[c] - 2, &v) < 0)
                goto bad;
            if (c == 0) {
                name = cname;
                len = clen;
            }
            sum += v;
            at[c] = (size_t)e + 1;
        }
        enc_bulk(out, name, len);
        buf_printf(out, ":%lld\r\n", (long long)sum);
    }
    free(at);
    return;
bad:
    free(at);
    out->r = out->w = 0;
    enc_error(out, "ERR backend %s sent an unexpected reply", p->child[0]->backend->cfg.id);
}

/* (P|S)(UN)SUBSCRIBE, MONITOR: every backend confirmed, and the reply the
 * proxy built stands; or one refused or failed, and the client's
 * subscriptions are no longer what its backends hold: it gets the error
 * and is closed (client libraries subscribe again when they reconnect). */
static void complete_merge_sub(struct req *p)
{
    struct buf err = {0, 0, 0, 0};

    if (!complete_merge_error(p, &err)) {
        buf_free(&err);
        return;
    }
    buf_free(&p->reply);
    p->reply = err;
    if (p->client && p->client->state == CLIENT_OPEN) {
        log_at(LOG_INFO, "client %llu %s: closing: a backend refused or lost its "
               "subscription", (unsigned long long)p->client->id, p->client->addr);
        client_streams_drop(p->client);
        p->client->state = CLIENT_CLOSING;
    }
}

/* Build a split parent's reply (in p->reply) from its children's, then
 * free the children. */
static void complete_merge(struct req *p)
{
    uint32_t i;

    if (p->merge == MERGE_INFO) /* a backend that failed only misses from the sum */
        stats_info_merge(p);
    else if (p->merge == MERGE_SUB)
        complete_merge_sub(p);
    else if (p->merge == MERGE_ANYOK) /* a kill fails where nothing ran */
        complete_merge_anyok(p, &p->reply);
    else if (!complete_merge_error(p, &p->reply)) {
        switch ((enum req_merge)p->merge) {
        case MERGE_ARRAY:
            complete_merge_array(p, &p->reply);
            break;
        case MERGE_FIRST:
            complete_copy(p->child[0], &p->reply);
            break;
        case MERGE_AND:
            complete_merge_and(p, &p->reply);
            break;
        case MERGE_CONCAT:
            complete_merge_concat(p, &p->reply);
            break;
        case MERGE_SLOWLOG:
            complete_merge_slowlog(p, &p->reply);
            break;
        case MERGE_RANDOM:
            complete_merge_random(p, &p->reply);
            break;
        case MERGE_SCAN:
            complete_merge_scan(p, &p->reply);
            break;
        case MERGE_NUMSUB:
            complete_merge_numsub(p, &p->reply);
            break;
        default: /* MERGE_OK, MERGE_SUM, MERGE_MIN, MERGE_MAX */
            complete_merge_scalar(p, &p->reply);
            break;
        }
    }
    for (i = 0; i < p->nchild; i++)
        req_free(p->child[i]);
    free(p->child);
    p->child = NULL;
    p->nchild = 0;
}

/* The reply P[0..N) for record R is complete (from its backend, or an error
 * the proxy made when the backend could not answer). */
static void complete_reply(struct req *r, const char *p, size_t n, int proxy_error)
{
    struct client *c;

    if (r->parent) {
        struct req *parent = r->parent;
        buf_append(&r->reply, p, n);
        r->done = 1;
        r->proxy_error = (uint8_t)proxy_error;
        if (--parent->pending > 0)
            return;
        if (!parent->client) { /* orphaned parent: nobody wants the merge */
            req_free(parent);
            return;
        }
        complete_merge(parent);
        req_account(parent->cmd, srv.now_us - parent->start_us,
                       parent->reply.data[parent->reply.r] == '-');
        c = parent->client;
        if (c->wait == parent) /* its WAIT is answered: it reads on (reply_pop) */
            c->wait = NULL;
        reply_hold(c, parent);
        if (c->head == parent)
            reply_release(c);
        else
            client_check_output(c);
        return;
    }
    c = r->client;
    if (!c) { /* orphan */
        req_free(r);
        return;
    }
    req_account(r->cmd, srv.now_us - r->start_us, n > 0 && p[0] == '-');
    if (c->head == r) { /* fast path: no copy into the record */
        if (!r->mute)
            reply_emit(c, p, n);
        reply_pop(c);
        reply_release(c);
        return;
    }
    buf_append(&r->reply, p, n);
    reply_hold(c, r);
    client_check_output(c);
}

/* Complete R with an error the proxy generated. */
static void complete_error(struct req *r, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void complete_error(struct req *r, const char *fmt, ...)
{
    char msg[REPLY_ERR_MAX];
    struct buf b = {0, 0, 0, 0};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    enc_error(&b, "%s", msg);
    if (r->backend)
        r->backend->sh->st.failures++;
    complete_reply(r, b.data, buf_len(&b), 1);
    buf_free(&b);
}

/* ================================================== backend connections */
/* bconn_: connect, AUTH/SELECT handshake, read, write, timers. */

/* Is BC connected (its socket may be read and written)? */
static int bconn_connected(const struct bconn *bc)
{
    return bc->state == BCONN_HANDSHAKE || bc->state == BCONN_UP;
}

/* Stream connection BC of client C is given back: C unsubscribed from
 * everything (ENDED), or BC failed, and C's subscriptions on that backend
 * are gone with messages perhaps lost meanwhile: Redis has no way to say
 * so in the stream, so C is closed, as a restarted Redis closes it, and
 * its client library subscribes again on reconnecting. */
static void bconn_stream_gone(struct client *c, struct bconn *bc, int ended)
{
    int i;

    for (i = 0; c->sub && i < c->sub->nconn; i++)
        if (c->sub->conn[i] == bc) {
            c->sub->conn[i] = c->sub->conn[--c->sub->nconn];
            break;
        }
    if (ended || c->state != CLIENT_OPEN)
        return;
    log_at(LOG_INFO, "client %llu %s: closing: its pub/sub or MONITOR connection to backend "
           "%s was lost", (unsigned long long)c->id, c->addr, bc->backend->cfg.id);
    client_streams_drop(c);
    c->state = CLIENT_CLOSING;
    reply_dirty(c);
}

/* Dedicated BC is answered (its blocking command, or the EXEC or UNWATCH
 * that ended a WATCH, or the UNSUBSCRIBE that ended a subscription) or
 * failed: its client reads its next requests again, and BC is free for
 * another client. */
static void bconn_release(struct bconn *bc)
{
    struct client *c = bc->owner;
    int ended = bc->release_idle || bc->drop; /* its WATCH ended (EXEC, UNWATCH, DISCARD...) */
    uint8_t stream = bc->stream;

    bc->owner = NULL;
    bc->block_until_us = 0;
    bc->release_idle = 0;
    bc->stream = STREAM_NONE;
    bc->used_us = srv.now_us;
    bconn_touch(bc); /* its idle timer starts */
    if (!c)
        return;
    if (stream)
        bconn_stream_gone(c, bc, ended);
    if (c->ded == bc) {
        c->ded = NULL;
        reply_dirty(c); /* its unread input is parsed at the end of the pass */
    }
    if (c->watch == bc) {
        c->watch = NULL;
        if (!ended) { /* it failed under a WATCH: that client's EXEC must fail */
            free(c->watch_lost);
            c->watch_lost = xstrndup(bc->backend->cfg.id, strlen(bc->backend->cfg.id));
        }
    }
}

/* The connection's stream can no longer be trusted: close it, answer every
 * record on it with an error, and schedule a reconnect: at once (DOWN) when
 * a proven connection was lost, after the backoff (BACKOFF) otherwise. */
static void bconn_fail(struct bconn *bc, int timed_out, const char *why)
{
    struct backend *b = bc->backend;
    int was_connected = bconn_connected(bc);
    struct req *r;

    log_at(was_connected ? LOG_WARN : LOG_INFO, "backend %s (%s): %s%s", b->cfg.id,
           b->cfg.addr, why, bc->inflight ? ", failing requests in flight" : "");
    bconn_touch(bc); /* its retry timer */
    if (bc->state == BCONN_HANDSHAKE && !b->sh->last_error[0])
        snprintf(b->sh->last_error, sizeof b->sh->last_error, "handshake not answered: %s",
                 why);
    if (bc->fd >= 0) {
        fd_release(bc->fd);
        bc->fd = -1;
    }
    bc->out.r = bc->out.w = 0;
    bc->write_blocked = 0;
    bc->in.r = bc->in.w = 0;
    resp_reply_init(&bc->rp);
    if (was_connected && (timed_out || bc->proven)) {
        /* lost, or too slow to answer: a new connection at once, no backoff (a
         * busy backend is not a broken one: its clients should not be told
         * "unavailable" meanwhile); only failures to connect back off */
        bc->state = BCONN_DOWN;
        bc->retry_us = srv.now_us;
    } else {
        bc->state = BCONN_BACKOFF;
        bc->retry_us = srv.now_us + bc->backoff_ms * 1000;
        bc->backoff_ms = MIN(bc->backoff_ms * 2, RECONNECT_MAX_MS);
    }
    bc->proven = 0;
    while ((r = bc->head) != NULL) {
        bc->head = r->next_sent;
        bc->inflight--;
        if (r->role == REQ_HANDSHAKE) {
            req_free(r);
        } else if (timed_out) {
            b->sh->st.timeouts++;
            complete_error(r, "ERR backend %s timed out", b->cfg.id);
        } else {
            complete_error(r, "ERR backend %s unavailable", b->cfg.id);
        }
    }
    bc->tail = NULL;
    if (bc->dedicated) { /* not reconnected: the next blocking command connects */
        bc->state = BCONN_IDLE;
        bconn_release(bc);
    }
}

/* What a handshake command a connection sends first was (its reply is
 * checked, never forwarded). */
enum bconn_hs {
    HS_AUTH,   /* AUTH [user] password: refused, the connection fails */
    HS_HELLO,  /* HELLO 3 of a RESP3 pool: refused, the connection fails */
    HS_SELECT, /* SELECT of the pool's database: refused, the connection fails */
    HS_PROBE   /* INFO server on the default pool: a bulk string (it tells the
                  backend's redis_version, for INFO and HELLO) or an error */
};

/* Which pool BC belongs to: pool P serves database P / 2 in RESP2 (P even)
 * or RESP3 (P odd); pool 0 (database 0, RESP2) is opened with the backend,
 * the others when a client first needs them. */
static int bconn_pool(const struct bconn *bc)
{
    return bc->pool;
}

/* Connection I of B, for the walks over all of them: the pools' opened
 * conns[0..nused), then the dedicated ones; NULL past the last. */
static struct bconn *bconn_nth(const struct backend *b, int i)
{
    if (i < b->nused)
        return &b->conns[i];
    i -= b->nused;
    return i < b->nded ? b->ded[i] : NULL;
}

/* The database pool P's connections SELECT on the backend: the client's
 * own number, or for database 0 the configured db= (which then pins the
 * backend to it: SELECT refuses other numbers, see local_select). */
static int64_t bconn_db(const struct backend *b, int pool)
{
    return pool / 2 ? pool / 2 : b->cfg.db;
}

/* Append one handshake command (ARGV) to HS, with its record after LAST
 * (or as FIRST). */
static void bconn_hs_add(struct buf *hs, const struct resp_arg *argv, size_t argc,
                         enum bconn_hs kind, struct req **first, struct req **last)
{
    struct req *r = req_new();

    enc_command(hs, argv, argc);
    r->role = REQ_HANDSHAKE;
    r->hs = (uint8_t)kind;
    r->sent_us = srv.now_us;
    if (*last)
        (*last)->next_sent = r;
    else
        *first = r;
    *last = r;
}

/* Put the handshake in front of whatever requests were queued while
 * connecting, both on the wire and on the FIFO: AUTH as the config asks,
 * HELLO 3 for a RESP3 pool, SELECT for a database other than 0, and on the
 * default pool the version probe.  Returns the number of commands. */
static int bconn_handshake(struct bconn *bc)
{
    const struct config_backend *cb = &bc->backend->cfg;
    int pool = bc->dedicated ? bc->hs_pool : bconn_pool(bc), n = 0;
    int64_t db = bconn_db(bc->backend, pool);
    struct buf hs = {0, 0, 0, 0};
    struct req *first = NULL, *last = NULL;
    char dbtext[24];

    if (cb->password) {
        struct resp_arg a[3] = {{"AUTH", 4}, {NULL, 0}, {NULL, 0}};
        size_t argc = 1;
        if (cb->user) {
            a[argc].p = cb->user;
            a[argc++].len = strlen(cb->user);
        }
        a[argc].p = cb->password;
        a[argc++].len = strlen(cb->password);
        bconn_hs_add(&hs, a, argc, HS_AUTH, &first, &last);
        n++;
    }
    if (pool & 1) {
        struct resp_arg a[2] = {{"HELLO", 5}, {"3", 1}};
        bconn_hs_add(&hs, a, 2, HS_HELLO, &first, &last);
        n++;
    }
    if (db > 0) {
        struct resp_arg a[2] = {{"SELECT", 6}, {dbtext, 0}};
        a[1].len = (size_t)snprintf(dbtext, sizeof dbtext, "%lld", (long long)db);
        bconn_hs_add(&hs, a, 2, HS_SELECT, &first, &last);
        n++;
    }
    if (pool == 0 && !bc->dedicated) {
        struct resp_arg a[2] = {{"INFO", 4}, {"server", 6}};
        bconn_hs_add(&hs, a, 2, HS_PROBE, &first, &last);
        n++;
    }
    if (n == 0)
        return 0;
    last->next_sent = bc->head;
    bc->head = first;
    if (!bc->tail)
        bc->tail = last;
    bc->inflight += (uint32_t)n;
    buf_append(&hs, bc->out.data + bc->out.r, buf_len(&bc->out));
    buf_free(&bc->out);
    bc->out = hs;
    return n;
}

/* The connect succeeded: UP, or HANDSHAKE while its replies are owed. */
static void bconn_up(struct bconn *bc)
{
    if (bc->backend->cfg.sa.ss_family != AF_UNIX)
        net_tcp_options(bc->fd);
    bc->state = bconn_handshake(bc) ? BCONN_HANDSHAKE : BCONN_UP;
    bc->progress_us = srv.now_us; /* what queued while connecting waits from now */
    log_at(bc->dedicated ? LOG_DEBUG : LOG_INFO, "backend %s (%s): connected%s",
           bc->backend->cfg.id, bc->backend->cfg.addr, bc->dedicated ? " (dedicated)" : "");
}

/* Start a non-blocking connect. */
static void bconn_connect(struct bconn *bc)
{
    const struct config_backend *cb = &bc->backend->cfg;
    int fd;

    if (bc->retry_us != 0) /* set by an earlier failure */
        bc->backend->sh->st.reconnects++;
    bc->state = BCONN_CONNECTING; /* a failure from here on backs off */
    bconn_touch(bc);
    fd = socket(cb->sa.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        bconn_fail(bc, 0, strerror(errno));
        return;
    }
    if (net_nonblock(fd) < 0 || fd_register(fd, FD_BACKEND, bc) < 0) {
        close(fd);
        bconn_fail(bc, 0, "no descriptor available");
        return;
    }
    bc->fd = fd;
    if (connect(fd, (const struct sockaddr *)&cb->sa, cb->salen) == 0) {
        bconn_up(bc);
    } else if (errno == EINPROGRESS || errno == EINTR) {
        bc->deadline_us = srv.now_us + srv.cfg->connect_timeout_ms * 1000;
    } else {
        char why[128];
        snprintf(why, sizeof why, "connect: %s", strerror(errno));
        bconn_fail(bc, 0, why);
    }
}

/* The connecting socket is writable: did the connect succeed? */
static void bconn_connect_done(struct bconn *bc)
{
    int err = 0;
    socklen_t len = sizeof err;

    bconn_touch(bc);
    if (getsockopt(bc->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        char why[128];
        snprintf(why, sizeof why, "connect: %s", strerror(err));
        bconn_fail(bc, 0, why);
        return;
    }
    bconn_up(bc);
}

/* A connection of a pool no client used until now: the loop walks it from
 * here on, and it connects. */
static void bconn_open(struct bconn *bc)
{
    struct backend *b = bc->backend;
    int i = (int)(bc - b->conns);

    b->nused = MAX(b->nused, i + 1);
    bc->used_us = srv.now_us;
    bconn_connect(bc);
}

/* The connection a client's requests to B use: in the pool of its database
 * and protocol, and fixed per client within it, so one client's requests
 * to one backend stay on one ordered stream.  While the client holds a
 * WATCH connection to B, that one: WATCH, what follows it, and EXEC run in
 * the client's order, as on one connection to Redis. */
static struct bconn *bconn_pick(struct backend *b, const struct client *c)
{
    int pool = c ? client_pool(c) : 0;
    struct bconn *bc;

    if (c && c->watch && c->watch->backend == b)
        return c->watch;
    assert(pool * b->per_pool < b->nconns); /* input_dispatch checked c->db */
    bc = &b->conns[pool * b->per_pool + (int)(c ? c->id % (uint64_t)b->per_pool : 0)];
    if (bc->state == BCONN_IDLE)
        bconn_open(bc);
    return bc;
}

/* May BC close for being unused?  A pool's connection nobody used for
 * pool_idle_timeout closes (and stops reconnecting): a client that once
 * SELECTed a database does not keep sockets open on every backend
 * forever.  So does a free dedicated one.  The default pool stays. */
static int bconn_idles(const struct bconn *bc)
{
    return bc->state != BCONN_IDLE && !bc->head && !bc->owner &&
           (bconn_pool(bc) > 0 || bc->dedicated) && srv.cfg->pool_idle_timeout;
}

static int bconn_idle_due(const struct bconn *bc)
{
    return bconn_idles(bc) && srv.now_us - bc->used_us >= srv.cfg->pool_idle_timeout * 1000000;
}

/* Close BC back to IDLE (bconn_idle_due said so: nothing is on it). */
static void bconn_idle(struct bconn *bc)
{
    bconn_touch(bc);
    if (bc->fd >= 0) {
        fd_release(bc->fd);
        bc->fd = -1;
    }
    buf_free(&bc->in);
    buf_free(&bc->out);
    resp_reply_init(&bc->rp);
    bc->state = BCONN_IDLE;
    bc->proven = 0;
    bc->retry_us = 0;
    bc->backoff_ms = RECONNECT_MIN_MS;
}

/* A dedicated connection of B for client C (a blocking command, WATCH,
 * WAIT, pub/sub, MONITOR) in POOL, now C's: a free one of that pool still
 * open, else a free closed one, else a new one while B has fewer than
 * blocking_connections, else a free one of another pool, closed first.
 * NULL when every one is held. */
static struct bconn *bconn_borrow(struct backend *b, struct client *c, int pool)
{
    int i;
    struct bconn *bc = NULL, *closed = NULL, *other = NULL;

    for (i = 0; i < b->nded && !bc; i++) {
        struct bconn *d = b->ded[i];
        if (d->owner || d->drop || d->release_idle) /* held, closing, or still answering */
            continue;
        if (d->state == BCONN_IDLE)
            closed = closed ? closed : d;
        else if (d->pool == pool)
            bc = d;
        else
            other = other ? other : d;
    }
    if (!bc && !closed && b->nded < b->ded_max) {
        closed = xcalloc(1, sizeof *closed);
        closed->backend = b;
        closed->fd = -1;
        closed->dedicated = 1;
        closed->state = BCONN_IDLE;
        closed->backoff_ms = RECONNECT_MIN_MS;
        resp_reply_init(&closed->rp);
        b->ded = xrealloc(b->ded, sizeof *b->ded * (size_t)(b->nded + 1));
        b->ded[b->nded++] = closed;
    }
    if (!bc && !closed && other) {
        bconn_idle(other);
        closed = other;
    }
    if (!bc && !(bc = closed))
        return NULL;
    bc->owner = c;
    bc->used_us = srv.now_us;
    bc->block_until_us = 0;
    bc->release_idle = 0;
    if (bc->state == BCONN_IDLE) {
        bc->pool = bc->hs_pool = pool;
        bconn_connect(bc); /* a connect that fails at once releases it again */
    }
    return bc;
}

/* Dedicated BC may have just answered the last thing on it: a blocking
 * command (its client reads on), the EXEC or UNWATCH that ended a WATCH
 * (free for reuse), or what was in flight when a WATCH ended otherwise
 * (its client lets go; bconn_drop closes it). */
static void bconn_idle_check(struct bconn *bc)
{
    if (bc->dedicated && !bc->head &&
        (bc->release_idle || (bc->owner && (bc->drop || bc->owner->ded == bc))))
        bconn_release(bc);
}

/* Must BC close now (enum bconn_drop)? */
static int bconn_drop_due(const struct bconn *bc)
{
    return bc->dedicated && !bc->owner &&
           (bc->drop == DROP_NOW || (bc->drop == DROP_IDLE && !bc->head));
}

/* Close dedicated BC as bconn_drop_due says: what is still on it is
 * orphans. */
static void bconn_drop(struct bconn *bc)
{
    struct req *r;

    log_at(LOG_DEBUG, "backend %s (%s): dedicated connection closed: %s", bc->backend->cfg.id,
           bc->backend->cfg.addr, bc->drop == DROP_NOW ? "its client left" : "its WATCH ended");
    bc->drop = DROP_NO;
    bc->block_until_us = 0;
    bc->release_idle = 0;
    bc->stream = STREAM_NONE;
    while ((r = bc->head) != NULL) {
        bc->head = r->next_sent;
        bc->inflight--;
        if (r->role == REQ_CHILD) /* its parent waits for every child */
            complete_error(r, "ERR backend %s: connection closed", bc->backend->cfg.id);
        else
            req_free(r); /* a handshake record, or the client's orphan */
    }
    bc->tail = NULL;
    bconn_idle(bc);
}

/* When BC, with records waiting, has made no progress for too long, or
 * UINT64_MAX: `timeout` after its last sign of life (progress_us), so a
 * backend streaming a big reply, or answering a pipeline one by one, is
 * busy, not dead, however long the whole takes.  (No separate bound on a
 * request's age: replies come in order, so while bytes arrive the oldest
 * record is being answered or is next.)  For a blocking command on a
 * dedicated connection: what route_blocking set. */
static uint64_t bconn_deadline(const struct bconn *bc)
{
    if (!bc->head)
        return UINT64_MAX;
    if (bc->block_until_us && bc->head->role != REQ_HANDSHAKE)
        return bc->block_until_us;
    return srv.cfg->timeout_ms ? bc->progress_us + srv.cfg->timeout_ms * 1000 : UINT64_MAX;
}

/* Queue R (already tied to bc's backend) on BC; its bytes must already be
 * in bc->out. */
static void bconn_push(struct bconn *bc, struct req *r)
{
    r->sent_us = srv.now_us;
    r->next_sent = NULL;
    if (!bc->head) /* nothing was waiting: the clock starts */
        bc->progress_us = srv.now_us;
    if (bc->tail)
        bc->tail->next_sent = r;
    else
        bc->head = r;
    bc->tail = r;
    bc->inflight++;
    bc->used_us = srv.now_us;
    bc->backend->sh->st.requests++;
    bconn_touch(bc);
}

/* C's requests now use another database or protocol: so does its WATCH
 * connection, which carries them to that backend (bconn_pick), with SELECT
 * and HELLO in line, as one connection to Redis would. */
static void bconn_watch_follow(const struct client *c)
{
    struct bconn *bc = c->watch;
    int pool = client_pool(c);
    struct req *first = NULL, *last = NULL, *r, *next;
    struct buf hs = {0, 0, 0, 0};
    char dbtext[24];

    if (!bc || bc->pool == pool)
        return;
    if (bc->pool / 2 != pool / 2) {
        struct resp_arg a[2] = {{"SELECT", 6}, {dbtext, 0}};
        a[1].len = (size_t)snprintf(dbtext, sizeof dbtext, "%lld",
                                    (long long)bconn_db(bc->backend, pool));
        bconn_hs_add(&hs, a, 2, HS_SELECT, &first, &last);
    }
    if ((bc->pool & 1) != (pool & 1)) {
        struct resp_arg a[2] = {{"HELLO", 5}, {pool & 1 ? "3" : "2", 1}};
        bconn_hs_add(&hs, a, 2, HS_HELLO, &first, &last);
    }
    buf_append(&bc->out, hs.data, buf_len(&hs));
    buf_free(&hs);
    for (r = first; r; r = next) {
        next = r->next_sent;
        bconn_push(bc, r);
    }
    bc->pool = pool;
}

/* Keep the redis_version an INFO reply P[0..N) names as B's version. */
static void bconn_version(struct backend *b, const char *p, size_t n)
{
    static const char field[] = "\r\nredis_version:";
    const char *end = p + n, *v;
    size_t len;

    for (v = p; v + sizeof field - 1 < end; v++)
        if (*v == '\r' && !memcmp(v, field, sizeof field - 1))
            break;
    if (v + sizeof field - 1 >= end)
        return;
    v += sizeof field - 1;
    for (len = 0; v + len < end && v[len] != '\r' && len < sizeof b->version - 1; len++)
        ;
    memcpy(b->version, v, len);
    b->version[len] = '\0';
}

/* The reply P[0..N) answered handshake record R.  Returns 0, or -1 when the
 * backend refused it (wrong password, unknown db, no RESP3): the connection
 * is failed and stays in backoff until the config or the backend is fixed.
 * The version probe is not refused by an error (an ACL, an old server only
 * leave the version unknown), but any other kind of reply is not INFO's:
 * the stream is out of step (a reply nobody asked for), so the connection
 * fails. */
static int bconn_handshake_reply(struct bconn *bc, struct req *r, const char *p, size_t n)
{
    struct backend *b = bc->backend;
    int probe = r->hs == HS_PROBE;

    req_free(r);
    if (probe && (p[0] == '$' || p[0] == '='))
        bconn_version(b, p, n);
    else if (probe && p[0] != '-') {
        bconn_fail(bc, 0, "reply out of step with the INFO probe");
        return -1;
    }
    if (p[0] == '-' && !probe) {
        snprintf(b->sh->last_error, sizeof b->sh->last_error, "%.*s", (int)MIN(n - 3, 190),
                 p + 1);
        log_at(LOG_ERROR, "backend %s (%s): rejected AUTH/HELLO/SELECT: %s", b->cfg.id,
               b->cfg.addr, b->sh->last_error);
        bconn_fail(bc, 0, "handshake rejected");
        return -1;
    }
    if (!bc->head || bc->head->role != REQ_HANDSHAKE)
        bc->state = BCONN_UP;
    return 0;
}

/* Drop reply P[0..N) of R's transaction block (MULTI's +OK or a command's
 * +QUEUED), keeping the first error: the client was told +QUEUED already
 * and only EXEC's reply can carry why the backend refused. */
static void bconn_skip_reply(struct req *r, const char *p, size_t n)
{
    r->skip--;
    if (p[0] == '-' && !r->skip_err) {
        size_t len = n >= 3 ? n - 3 : 0; /* without '-' and CRLF */
        r->skip_err = xstrndup(p + 1, MIN(len, 200));
        r->multi_refused = r->skip_first;
    }
    r->skip_first = 0;
}

/* EXEC's reply P[0..N) to R, after an error among the replies dropped: the
 * backend refused MULTI (the commands then ran one by one, and the client
 * must not believe nothing ran), or refused a queued command (EXECABORT,
 * which gets the reason the client never saw). */
static void bconn_exec_reply(struct req *r, const char *p, size_t n)
{
    static const char abort[] = "-EXECABORT";

    if (r->multi_refused)
        complete_error(r, "ERR backend %s refused MULTI (%s): the transaction's commands may "
                          "have run one by one", r->backend->cfg.id, r->skip_err);
    else if (r->parent && r->parent->merge == MERGE_MIN) /* WAIT's no-op: the count means nothing */
        complete_error(r, "ERR backend %s refused the PUBLISH WAIT needs (%s)", r->backend->cfg.id,
                       r->skip_err);
    else if (n >= sizeof abort - 1 && !memcmp(p, abort, sizeof abort - 1))
        complete_error(r, "EXECABORT Transaction discarded because of previous errors: %s",
                       r->skip_err);
    else
        complete_reply(r, p, n, 0);
}

/* Frame P[0..N) of stream connection BC: a message or MONITOR line for its
 * client, or a confirmation its head record counts (one per channel
 * sent).  Returns 1 when taken so; 0 when it is the head record's reply
 * (the last confirmation, an error, MONITOR's +OK), matched as any other. */
static int bconn_stream_frame(struct bconn *bc, const char *p, size_t n)
{
    struct req *r = bc->head;

    if (r && r->role == REQ_HANDSHAKE)
        return 0;
    if (bc->stream == STREAM_MONITOR) {
        if (r)
            return 0;
        if (bc->owner)
            reply_monitor(bc->owner, bc->backend, p, n);
        return 1;
    }
    if (reply_message(bc->owner, p, n))
        return 1;
    if (r && r->frames > 1 && p[0] != '-') {
        r->frames--;
        return 1;
    }
    return 0;
}

/* Match every complete reply in bc->in with the head of the FIFO. */
static void bconn_replies(struct bconn *bc)
{
    while (buf_len(&bc->in) > 0) {
        const char *p = bc->in.data + bc->in.r;
        enum resp_result rc = resp_reply_parse(&bc->rp, p, buf_len(&bc->in));
        struct req *r;
        size_t n;

        if (rc == RESP_AGAIN)
            return;
        if (rc == RESP_ERROR) {
            char why[160];
            snprintf(why, sizeof why, "protocol error from backend: %s", bc->rp.err);
            bconn_fail(bc, 0, why);
            return;
        }
        if (p[0] == '>' || (bc->stream && bconn_stream_frame(bc, p, bc->rp.pos))) {
            /* a RESP3 push (invalidation, a stray message) is no one's reply */
            buf_consume(&bc->in, bc->rp.pos);
            resp_reply_init(&bc->rp);
            continue;
        }
        r = bc->head;
        if (!r) {
            bconn_fail(bc, 0, "reply nobody asked for");
            return;
        }
        if (r->skip > 0) { /* inside a transaction block: only EXEC's reply goes out */
            bconn_skip_reply(r, p, bc->rp.pos);
            buf_consume(&bc->in, bc->rp.pos);
            resp_reply_init(&bc->rp);
            continue;
        }
        bc->head = r->next_sent;
        if (!bc->head)
            bc->tail = NULL;
        bc->inflight--;
        n = bc->rp.pos;
        if (r->role == REQ_HANDSHAKE) {
            if (bconn_handshake_reply(bc, r, p, n) < 0)
                return;
            bconn_idle_check(bc); /* a WATCH's SELECT/HELLO may be the last on it */
        } else {
            if (!bc->proven) { /* the backoff resets only once a reply proves it works */
                bc->proven = 1;
                bc->backoff_ms = RECONNECT_MIN_MS;
                bc->backend->sh->last_error[0] = '\0';
            }
            bc->backend->sh->st.responses++;
            hist_add(&bc->backend->sh->latency, srv.now_us - r->sent_us);
            if (p[0] == '-' || p[0] == '!')
                bc->backend->sh->st.errors++;
            if (r->skip_err)
                bconn_exec_reply(r, p, n);
            else
                complete_reply(r, p, n, 0);
            bconn_idle_check(bc);
        }
        buf_consume(&bc->in, n);
        resp_reply_init(&bc->rp);
    }
}

/* Read what the socket has (a whole buffer at a time) and match replies. */
static void bconn_read(struct bconn *bc)
{
    char why[128];

    for (;;) {
        size_t room, n;
        enum net_result rc;

        buf_reserve(&bc->in, READ_CHUNK);
        room = bc->in.cap - bc->in.w;
        rc = net_read(bc->fd, bc->in.data + bc->in.w, room, &n);
        if (rc == NET_AGAIN)
            return;
        if (rc == NET_EOF) {
            bconn_fail(bc, 0, "connection closed by the backend");
            return;
        }
        if (rc == NET_ERR) {
            snprintf(why, sizeof why, "read: %s", strerror(errno));
            bconn_fail(bc, 0, why);
            return;
        }
        bc->in.w += n;
        /* the clock as it is, not the pass's: a pass that spent long reading a
         * stream must not make the next one believe the backend was silent
         * (a vDSO read, beside the read() this follows) */
        bc->progress_us = clock_now_us();
        bc->backend->sh->st.bytes_in += n;
        bconn_replies(bc);
        if (!bconn_connected(bc) || n < room)
            return;
    }
}

/* One write() of everything queued; keeps the rest for POLLOUT. */
static void bconn_flush(struct bconn *bc)
{
    enum net_result rc;
    size_t n;

    if (!bconn_connected(bc) || buf_len(&bc->out) == 0)
        return;
    rc = net_write(bc->fd, bc->out.data + bc->out.r, buf_len(&bc->out), &n);
    if (rc == NET_OK) {
        /* after a partial write, room again means the backend read: it takes a
         * big request in, busy, not silent (a write the kernel just buffers
         * says nothing: a stuck backend's socket takes small ones too) */
        if (n > 0 && bc->head && bc->write_blocked)
            bc->progress_us = clock_now_us();
        bc->write_blocked = n < buf_len(&bc->out);
        bc->backend->sh->st.bytes_out += n;
        buf_consume(&bc->out, n);
        if (buf_len(&bc->out) == 0 && bc->out.cap > 4 * READ_CHUNK)
            buf_free(&bc->out); /* give back what a burst grew */
    } else if (rc == NET_ERR) {
        char why[128];
        snprintf(why, sizeof why, "write: %s", strerror(errno));
        bconn_fail(bc, 0, why);
    }
}

/* Timers of one connection: idle close, retry, connect deadline, reply
 * deadline. */
static void bconn_timers(struct bconn *bc)
{
    if (bconn_drop_due(bc)) {
        bconn_drop(bc);
        return;
    }
    if (bconn_idle_due(bc)) {
        bconn_idle(bc);
        return;
    }
    if ((bc->state == BCONN_DOWN || bc->state == BCONN_BACKOFF) &&
        srv.now_us >= bc->retry_us && !bc->backend->retired) {
        bconn_connect(bc);
        return;
    }
    if (bc->state == BCONN_CONNECTING && srv.now_us >= bc->deadline_us) {
        bconn_fail(bc, 0, "connect timed out");
        return;
    }
    /* a DOWN connection still holding records waits for its reconnect */
    if (bc->state != BCONN_DOWN && srv.now_us >= bconn_deadline(bc))
        bconn_fail(bc, 1, "request timed out");
}

/* Earliest time any of BC's timers fires, or UINT64_MAX. */
static uint64_t bconn_next_timer(const struct bconn *bc)
{
    uint64_t t = UINT64_MAX;

    if ((bc->state == BCONN_DOWN || bc->state == BCONN_BACKOFF) && !bc->backend->retired)
        t = bc->retry_us; /* a retired backend is not reconnected (bconn_timers) */
    else if (bc->state == BCONN_CONNECTING)
        t = bc->deadline_us;
    if (bconn_drop_due(bc))
        return srv.now_us;
    t = MIN(t, bconn_deadline(bc));
    if (bconn_idles(bc))
        t = MIN(t, bc->used_us + srv.cfg->pool_idle_timeout * 1000000);
    return t;
}

/* ========================================================= stats blocks */
/* stats_: the shared mapping of per-process figures, backend slots, sums. */

static const char *stats_state_name(uint8_t state)
{
    return state == STATS_UP ? "up" : state == STATS_CONNECTING ? "connecting" : "down";
}

/* The key a backend's slot is found by in every process's block: FNV-1a
 * of its identity and address (what backend_same compares first), never 0. */
static uint64_t stats_key(const struct config_backend *cb)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    const char *parts[2];
    int i;

    parts[0] = cb->id;
    parts[1] = cb->addr;
    for (i = 0; i < 2; i++) {
        const unsigned char *p = (const unsigned char *)parts[i];
        for (;; p++) {
            h = (h ^ *p) * 0x100000001b3ULL; /* the NUL separates the parts */
            if (!*p)
                break;
        }
    }
    return h ? h : 1;
}

/* Map NBLOCKS zeroed stats blocks shared with every process forked later
 * (anonymous shared memory; /dev/zero where the headers do not offer
 * MAP_ANONYMOUS, as glibc's do not under strict POSIX).  Pages never
 * written cost no memory. */
static struct stats_block *stats_map(int nblocks)
{
    size_t len = sizeof(struct stats_block) * (size_t)nblocks;
    void *p;
#if defined(MAP_ANONYMOUS) || defined(MAP_ANON)
#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
#else
    int fd = open("/dev/zero", O_RDWR); /* POSIX's anonymous shared memory */

    if (fd < 0)
        die("stats: /dev/zero: %s", strerror(errno));
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
#endif
    if (p == MAP_FAILED)
        die("stats: cannot map %zu bytes: %s", len, strerror(errno));
    return p;
}

/* Set up the stats of NWORKERS workers: blocks 0..NWORKERS-1, then the
 * master's.  A process serving alone (1) has one private block. */
static void stats_init(int nworkers)
{
    srv.blocks = nworkers > 1 ? stats_map(nworkers + 1) : xcalloc(1, sizeof *srv.blocks);
    srv.blk = &srv.blocks[nworkers > 1 ? nworkers : 0];
    srv.st = &srv.blk->t.st;
}

/* Give backend B its stats slot: a free one in this process's block, else
 * a private one (the master's view is only assembled, never published). */
static void stats_slot_claim(struct backend *b)
{
    struct stats_block *k = srv.blk;
    uint32_t i;

    for (i = 0; k && srv.self >= 0 && i < STATS_SLOTS; i++)
        if (k->slot[i].key == 0) {
            b->sh = &k->slot[i];
            memset(b->sh, 0, sizeof *b->sh);
            b->sh->key = stats_key(&b->cfg);
            if (i >= k->nslots)
                k->nslots = i + 1;
            return;
        }
    b->sh = xcalloc(1, sizeof *b->sh);
    b->sh->key = stats_key(&b->cfg);
    b->sh_private = 1;
}

/* Backend B is freed: its slot is free again. */
static void stats_slot_release(struct backend *b)
{
    if (b->sh_private)
        free(b->sh);
    else
        b->sh->key = 0;
    b->sh = NULL;
}

/* Add counters S to D; with GAUGES, the gauges too. */
static void stats_add_totals(struct stats_totals *d, const struct stats_totals *s, int gauges)
{
    size_t i;

#define STATS_SUM(name, section, info, help) d->st.name += s->st.name;
    STATS_PROXY(STATS_SUM, STATS_NOFIELD)
    if (gauges) {
        d->clients += s->clients;
        d->inflight += s->inflight;
    }
    for (i = 0; i < ARRAY_LEN(cmd_table); i++)
        if (s->cmd[i].calls) {
            d->cmd[i].calls += s->cmd[i].calls;
            d->cmd[i].errors += s->cmd[i].errors;
            hist_merge(&d->cmd[i].latency, &s->cmd[i].latency);
        }
}

/* Add backend slot S to D; with GAUGES, the gauges too (the state is the
 * best over the two: "up" if any process has a connection up). */
static void stats_add_slot(struct stats_slot *d, const struct stats_slot *s, int gauges)
{
    STATS_BACKEND(STATS_SUM, STATS_NOFIELD, STATS_NOSTRING)
#undef STATS_SUM
    hist_merge(&d->latency, &s->latency);
    if (!d->last_error[0])
        memcpy(d->last_error, s->last_error, sizeof d->last_error);
    if (gauges) {
        d->conns += s->conns;
        d->inflight += s->inflight;
        d->dedicated += s->dedicated;
        d->state = MAX(d->state, s->state);
    }
}

/* K's live slot with KEY, or NULL. */
static const struct stats_slot *stats_find(const struct stats_block *k, uint64_t key)
{
    uint32_t i;

    for (i = 0; i < k->nslots && i < STATS_SLOTS; i++)
        if (k->slot[i].key == key && !k->slot[i].retired)
            return &k->slot[i];
    return NULL;
}

/* The master: worker block K's process died.  Its counters move into the
 * master's block, so totals never go down; the block is cleared for the
 * worker that replaces it (which keeps counting CLIENT IDs from where the
 * dead one stopped). */
static void stats_fold(struct stats_block *k)
{
    struct stats_block *m = srv.blk;
    uint64_t next_id = k->next_client_id;
    uint32_t i, j;

    stats_add_totals(&m->t, &k->t, 0);
    for (i = 0; i < k->nslots && i < STATS_SLOTS; i++) {
        const struct stats_slot *s = &k->slot[i];
        struct stats_slot *d = NULL;
        if (!s->key || s->retired)
            continue;
        for (j = 0; j < m->nslots && !d; j++)
            if (m->slot[j].key == s->key)
                d = &m->slot[j];
        for (j = 0; !d && j < STATS_SLOTS; j++)
            if (!m->slot[j].key) {
                d = &m->slot[j];
                d->key = s->key;
                m->nslots = MAX(m->nslots, j + 1);
            }
        if (d)
            stats_add_slot(d, s, 0);
    }
    memset(k, 0, sizeof *k);
    k->next_client_id = next_id;
}

/* What a report shows: this process's own figures when it serves alone,
 * else the sums over every block (stats_view_get). */
struct stats_view {
    const struct stats_totals *t;  /* proxy-wide figures */
    const struct stats_slot **b;   /* per routed backend, in srv.backends order */
    uint64_t workers;              /* worker processes running */
    struct stats_totals *sum;      /* the allocation behind t when summed, else NULL */
    struct stats_slot *bsum;       /* the allocation behind b[i] when summed, else NULL */
};

/* ============================================================= backends */
/* backend_: the set of backends, its state, the reload swap. */

/* Up if any connection is up, connecting while a first attempt (or one
 * after a lost connection) is under way, else down. */
static enum stats_state backend_state(const struct backend *b)
{
    const struct bconn *bc;
    int i, connecting = 0;

    for (i = 0; (bc = bconn_nth(b, i)) != NULL; i++) {
        if (bc->state == BCONN_UP)
            return STATS_UP;
        if (bc->state != BCONN_BACKOFF && bc->state != BCONN_IDLE)
            connecting = 1;
    }
    return connecting ? STATS_CONNECTING : STATS_DOWN;
}

/* Does another worker have a connection to B up?  Then B is back before
 * this worker's own retry came due. */
static int backend_up_elsewhere(const struct backend *b)
{
    int i;

    for (i = 0; srv.nworkers > 1 && i < srv.nworkers; i++) {
        const struct stats_slot *s;
        if (i == srv.self || srv.blocks[i].pid == 0)
            continue;
        s = stats_find(&srv.blocks[i], b->sh->key);
        if (s && s->state == STATS_UP)
            return 1;
    }
    return 0;
}

/* Requests in flight on B's connections. */
static uint64_t backend_inflight(const struct backend *b)
{
    uint64_t n = 0;
    int i;

    const struct bconn *bc;

    for (i = 0; (bc = bconn_nth(b, i)) != NULL; i++)
        n += bc->inflight;
    return n;
}

/* B's dedicated connections that clients hold. */
static uint64_t backend_dedicated(const struct backend *b)
{
    uint64_t n = 0;
    int i;

    for (i = 0; i < b->nded; i++)
        n += b->ded[i]->owner != NULL;
    return n;
}

/* B's connections that are UP. */
static uint64_t backend_conns_up(const struct backend *b)
{
    uint64_t n = 0;
    int i;

    const struct bconn *bc;

    for (i = 0; (bc = bconn_nth(b, i)) != NULL; i++)
        n += bc->state == BCONN_UP;
    return n;
}

/* Publish the gauges of every backend and of the proxy in this process's
 * stats block, where a report made here or in another process reads them:
 * every PUBLISH_EVERY_MS at the end of a pass (it walks every connection,
 * which a pass otherwise does not) and before a report. */
static void backend_publish(void)
{
    uint64_t routed = 0;
    int i;

    srv.published_us = srv.now_us;
    srv.publish_due = 0;
    for (i = 0; i < srv.nall; i++) {
        struct backend *b = srv.all[i];
        b->sh->state = (uint8_t)backend_state(b);
        b->sh->conns = backend_conns_up(b);
        b->sh->inflight = backend_inflight(b);
        b->sh->dedicated = backend_dedicated(b);
        if (!b->retired)
            routed += b->sh->inflight;
    }
    srv.blk->t.inflight = routed;
    srv.blk->t.clients = srv.nclients;
}

/* The Redis version the proxy reports (HELLO, INFO redis_version): the
 * lowest any routed backend reported, since a client may only use what
 * every backend has; "0.0.0" until one answered the version probe. */
static const char *backend_version(void)
{
    const char *low = NULL;
    int i;

    for (i = 0; i < srv.nbackends; i++) {
        const char *v = srv.backends[i]->version, *l = low;
        if (!v[0])
            continue;
        while (l && *v && *l) { /* compare dotted numbers field by field */
            unsigned long a = strtoul(v, (char **)&v, 10), b = strtoul(l, (char **)&l, 10);
            if (a != b) {
                if (a < b)
                    l = NULL;
                break;
            }
            v += *v == '.';
            l += *l == '.';
        }
        if (!l || !low)
            low = srv.backends[i]->version;
    }
    return low ? low : "0.0.0";
}

/* Deep copy of a backend's config line: a backend outlives the config it
 * came from across a reload. */
static void backend_copy_cfg(struct config_backend *dst, const struct config_backend *src)
{
    *dst = *src;
    dst->addr = xstrndup(src->addr, strlen(src->addr));
    dst->name = src->name ? xstrndup(src->name, strlen(src->name)) : NULL;
    dst->id = dst->name ? dst->name : dst->addr;
    dst->password = src->password ? xstrndup(src->password, strlen(src->password)) : NULL;
    dst->user = src->user ? xstrndup(src->user, strlen(src->user)) : NULL;
}

static int backend_streq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* A runtime backend for config line CB with PER_POOL connections in each
 * of the pools of DATABASES databases (two each: RESP2 and RESP3), none
 * connected yet; the loop walks only the default pool until another one is
 * needed. */
static struct backend *backend_new(const struct config_backend *cb, int per_pool,
                                   int databases, int ded_max)
{
    struct backend *b = xmalloc(sizeof *b);
    int j;

    memset(b, 0, sizeof *b);
    backend_copy_cfg(&b->cfg, cb);
    stats_slot_claim(b);
    b->per_pool = per_pool;
    b->ded_max = ded_max;
    b->nused = per_pool;
    b->nconns = per_pool * databases * 2;
    b->conns = xmalloc(sizeof *b->conns * (size_t)MAX(b->nconns, 1));
    memset(b->conns, 0, sizeof *b->conns * (size_t)MAX(b->nconns, 1));
    for (j = 0; j < b->nconns; j++) {
        b->conns[j].backend = b;
        b->conns[j].pool = j / per_pool;
        b->conns[j].fd = -1;
        b->conns[j].backoff_ms = RECONNECT_MIN_MS;
        b->conns[j].state = j < per_pool ? BCONN_DOWN : BCONN_IDLE;
        resp_reply_init(&b->conns[j].rp);
    }
    return b;
}

/* At exit: free the records still in flight on B (orphans by then; a
 * parent goes with its last child). */
static void backend_drop_inflight(struct backend *b)
{
    struct bconn *bc;
    struct req *r;
    int j;

    for (j = 0; (bc = bconn_nth(b, j)) != NULL; j++) {
        while ((r = bc->head) != NULL) {
            bc->head = r->next_sent;
            if (!r->parent)
                req_free(r);
            else if (--r->parent->pending == 0)
                req_free(r->parent); /* frees r too */
        }
        bc->tail = NULL;
    }
}

/* Close B's connections and free it; nothing may point to it any more. */
static void backend_free(struct backend *b)
{
    size_t k;
    int j;

    assert(b->refs == 0);
    for (k = 0; k < srv.ntouched; k++) /* none of its connections is looked at again */
        if (srv.touched[k]->backend == b)
            srv.touched[k--] = srv.touched[--srv.ntouched];
    for (j = 0; j < b->nconns + b->nded; j++) {
        struct bconn *bc = j < b->nconns ? &b->conns[j] : b->ded[j - b->nconns];
        if (bc->fd >= 0)
            fd_release(bc->fd);
        buf_free(&bc->in);
        buf_free(&bc->out);
    }
    for (j = 0; j < b->nded; j++)
        free(b->ded[j]);
    free(b->ded);
    free(b->conns);
    stats_slot_release(b);
    free(b->cfg.addr);
    free(b->cfg.name);
    free(b->cfg.password);
    free(b->cfg.user);
    free(b);
}

/* Would backend B talk to config line CB the same way (so its connections
 * can be kept across a reload)? */
static int backend_same(const struct backend *b, const struct config_backend *cb, int per_pool,
                        int databases)
{
    return !b->retired && b->per_pool == per_pool && b->nconns == per_pool * databases * 2 &&
           !strcmp(b->cfg.id, cb->id) &&
           !strcmp(b->cfg.addr, cb->addr) && b->cfg.salen == cb->salen &&
           !memcmp(&b->cfg.sa, &cb->sa, cb->salen) && b->cfg.db == cb->db &&
           backend_streq(b->cfg.password, cb->password) && backend_streq(b->cfg.user, cb->user);
}

/* Make the routed backends match config C, in its order: a backend that did
 * not change keeps its connections and counters; a new one starts
 * connecting; one that is gone is retired: it gets no new requests, and its
 * connections close once what is in flight on them is answered. */
static void backend_apply(const struct config *c)
{
    struct backend **next = xmalloc(sizeof *next * (size_t)c->nbackends);
    /* the master routes nothing: its backends are names for the reports */
    int per_pool = srv.self < 0 ? 0 : (int)c->backend_connections, i, j;
    int databases = (int)c->databases, ded_max = (int)c->blocking_connections;

    for (i = 0; i < c->nbackends; i++) {
        struct backend *b = NULL;
        for (j = 0; j < srv.nbackends && !b; j++)
            if (srv.backends[j] && backend_same(srv.backends[j], &c->backends[i], per_pool, databases)) {
                b = srv.backends[j];
                srv.backends[j] = NULL; /* claimed */
                b->cfg.weight = c->backends[i].weight;
                b->ded_max = ded_max; /* those held beyond a lower limit are not replaced */
            }
        if (!b) {
            b = backend_new(&c->backends[i], per_pool, databases, ded_max);
            srv.all = xrealloc(srv.all, sizeof *srv.all * (size_t)(srv.nall + 1));
            srv.all[srv.nall++] = b;
            for (j = 0; j < b->per_pool; j++)
                bconn_connect(&b->conns[j]);
        }
        b->index = i;
        b->slots = 0;
        next[i] = b;
    }
    for (j = 0; j < srv.nbackends; j++)
        if (srv.backends[j]) {
            srv.backends[j]->retired = 1;
            srv.backends[j]->sh->retired = 1;
            log_at(LOG_INFO, "backend %s (%s): removed; closing once in-flight requests finish",
                   srv.backends[j]->cfg.id, srv.backends[j]->cfg.addr);
        }
    free(srv.backends);
    srv.backends = next;
    srv.nbackends = c->nbackends;
    for (i = 0; i < c->nbackends; i++) /* counted as the table was built */
        next[i]->slots = c->owned[i];
    srv.split_child = xrealloc(srv.split_child, sizeof *srv.split_child * (size_t)c->nbackends);
    for (i = 0; i < c->nbackends; i++)
        srv.split_child[i] = -1;
}

/* End of a pass: close the connections of retired backends that have
 * drained, and free those no record points to any more. */
static void backend_reap(void)
{
    int i, j;

    for (i = 0; i < srv.nall; i++) {
        struct backend *b = srv.all[i];
        int busy = 0;
        if (!b->retired)
            continue;
        struct bconn *bc;
        for (j = 0; (bc = bconn_nth(b, j)) != NULL; j++) /* or a client holds it */
            busy |= bc->head != NULL || bc->owner != NULL;
        if (busy || b->refs > 0)
            continue;
        backend_free(b);
        srv.all[i--] = srv.all[--srv.nall];
    }
}

/* ============================================================== routing */
/* route_: key to backend; forward, split, fan out, CROSSSLOT. */

/* Maglev slot of a key: MurmurHash64A of its hash tag (or whole key). */
static uint32_t route_slot(const struct config *c, const char *key, size_t len)
{
    const char *p = key;
    size_t n = c->hash_tags ? hash_tag(key, len, &p) : len;

    return (uint32_t)(hash_murmur64a(p, n, HASH_SEED) % c->table_size);
}

/* Index (config order) of the backend that owns KEY. */
static int route_backend(const struct config *c, const char *key, size_t len)
{
    return c->table[route_slot(c, key, len)];
}

/* May BC take a request now?  Not while it backs off, unless another
 * worker has its backend up again: then it connects at once and the
 * request queues, so a recovered backend is served by every worker, not
 * only by the one whose retry came first.  The others' view is read at
 * most every PEER_CHECK_MS, which bounds what a flood of requests for a
 * backend down everywhere costs. */
static int route_usable(struct bconn *bc)
{
    if (bc->state != BCONN_BACKOFF)
        return 1;
    if (srv.now_us - bc->peer_check_us < PEER_CHECK_MS * 1000)
        return 0;
    bc->peer_check_us = srv.now_us;
    if (!backend_up_elsewhere(bc->backend))
        return 0;
    bconn_connect(bc);
    return bc->state != BCONN_BACKOFF;
}

/* The record that call K, going to backend B over BC, is answered by,
 * already on the client's FIFO; the caller writes its bytes and pushes it
 * on BC.  NULL when BC cannot take it: a backend known to be down answers
 * at once. */
static struct req *route_record(const struct call *k, struct backend *b, struct bconn *bc)
{
    struct req *r;

    if (!route_usable(bc)) {
        b->sh->st.failures++;
        reply_error(k, "ERR backend %s unavailable", b->cfg.id);
        return NULL;
    }
    r = req_new();
    r->role = REQ_FORWARD;
    r->cmd = k->cmd;
    r->start_us = srv.now_us;
    req_set_backend(r, b);
    reply_push(k->c, r);
    return r;
}

/* A write of client C goes to backend B: its next WAIT must ask B.  The
 * bits are by backend index, which a reload may change: a client that
 * wrote before one asks every backend at its next WAIT. */
static void route_note_write(struct client *c, const struct backend *b)
{
    uint32_t word = (uint32_t)b->index / 64;

    if (c->wrote_gen != srv.cfg_gen) {
        uint32_t i;
        for (i = 0; i < c->wrote_words; i++) {
            c->wrote_all |= c->wrote[i] != 0;
            c->wrote[i] = 0;
        }
        c->wrote_gen = srv.cfg_gen;
    }
    if (word >= c->wrote_words) {
        c->wrote = xrealloc(c->wrote, sizeof *c->wrote * (word + 1));
        memset(c->wrote + c->wrote_words, 0, sizeof *c->wrote * (word + 1 - c->wrote_words));
        c->wrote_words = word + 1;
    }
    c->wrote[word] |= 1ULL << (b->index % 64);
}

/* Write call K's bytes (re-encoded if it came inline) to BC and queue its
 * record R there. */
static void route_send(const struct call *k, struct bconn *bc, struct req *r)
{
    if (k->cmd->flags & CMD_WRITE)
        route_note_write(k->c, bc->backend);
    if (k->c->parser.inline_req)
        enc_command(&bc->out, k->argv, (size_t)k->argc);
    else
        buf_append(&bc->out, k->raw, k->rawlen);
    bconn_push(bc, r);
}

/* Forward a request to backend BI, on the client's shared connection. */
static void route_forward(const struct call *k, int bi)
{
    struct backend *b = srv.backends[bi];
    struct bconn *bc = bconn_pick(b, k->c);
    struct req *r = route_record(k, b, bc);

    if (r)
        route_send(k, bc, r);
}

/* Send child CH of a split: its bytes are already encoded in ENC. */
static void route_send_child(struct client *c, struct req *ch, const struct buf *enc)
{
    struct bconn *bc = bconn_pick(ch->backend, c);

    if (!route_usable(bc)) {
        complete_error(ch, "ERR backend %s unavailable", ch->backend->cfg.id);
        return;
    }
    if (ch->parent->cmd->flags & CMD_WRITE)
        route_note_write(c, ch->backend);
    buf_append(&bc->out, enc->data + enc->r, buf_len(enc));
    bconn_push(bc, ch);
}

/* Make a parent for call K with NCHILD children (one per backend in
 * BACKEND_OF), pushed on the client's FIFO. */
static struct req *route_new_parent(const struct call *k, enum req_merge merge, uint32_t nchild,
                                    const int *backend_of)
{
    struct req *p = req_new();
    uint32_t i;

    p->role = REQ_PARENT;
    p->merge = (uint8_t)merge;
    p->proto = k->c->proto;
    p->cmd = k->cmd;
    p->start_us = srv.now_us;
    p->child = xmalloc(sizeof *p->child * nchild);
    p->nchild = p->pending = nchild;
    reply_push(k->c, p);
    for (i = 0; i < nchild; i++) {
        struct req *ch = p->child[i] = req_new();
        ch->role = REQ_CHILD;
        ch->parent = p;
        req_set_backend(ch, srv.backends[backend_of ? backend_of[i] : (int)i]);
    }
    return p;
}

/* Encode into ENC the sub-command of split child I: the command name and
 * the arguments of every key KEYMAP assigns to I (STEP per key). */
static void route_split_encode(struct buf *enc, const struct call *k, const uint32_t *keymap,
                               uint32_t nkeys, uint32_t i, int step)
{
    uint32_t key, count = 0;
    int s;

    for (key = 0; key < nkeys; key++)
        count += keymap[key] == i;
    enc->r = enc->w = 0;
    enc_array(enc, 1 + (size_t)count * (size_t)step);
    enc_bulk(enc, k->argv[0].p, k->argv[0].len);
    for (key = 0; key < nkeys; key++)
        if (keymap[key] == i)
            for (s = 0; s < step; s++) {
                const struct resp_arg *a = &k->argv[1 + key * (uint32_t)step + (uint32_t)s];
                enc_bulk(enc, a->p, a->len);
            }
}

/* Which child each of the NKEYS keys goes to (KEYMAP), and which backend
 * each child is for (BOC); returns the number of children. */
static uint32_t route_split_map(const struct call *k, int step, uint32_t nkeys,
                                uint32_t *keymap, int *boc)
{
    uint32_t i, nchild = 0;

    for (i = 0; i < nkeys; i++) {
        const struct resp_arg *key = &k->argv[1 + (int64_t)i * step];
        int bi = route_backend(srv.cfg, key->p, key->len);
        if (srv.split_child[bi] < 0) {
            srv.split_child[bi] = (int)nchild;
            boc[nchild++] = bi;
        }
        keymap[i] = (uint32_t)srv.split_child[bi];
    }
    for (i = 0; i < nchild; i++)
        srv.split_child[boc[i]] = -1;
    return nchild;
}

/* Arguments per key of split command CMD: 2 for MSET's key value pairs,
 * else 1 (its keys are argv[1], argv[1 + step], ...). */
static int route_split_step(const struct command *cmd)
{
    return !strcmp(cmd->name, "mset") ? 2 : 1;
}

/* MGET MSET DEL UNLINK EXISTS TOUCH: one sub-command per backend touched,
 * carrying that backend's keys in request order. */
static void route_split(const struct call *k)
{
    int step = route_split_step(k->cmd);
    uint32_t nkeys = (uint32_t)((k->argc - 1) / step), i, nchild, local[SPLIT_INLINE_KEYS];
    uint32_t *keymap = nkeys <= SPLIT_INLINE_KEYS ? local : xmalloc(sizeof *keymap * nkeys);
    int backend_of_child[SPLIT_INLINE_KEYS], *boc = backend_of_child;
    struct req *p;
    struct buf enc = {0, 0, 0, 0};

    if ((k->argc - 1) % step != 0) {
        reply_error(k, "ERR wrong number of arguments for '%s' command", k->cmd->name);
        goto out;
    }
    if (nkeys > SPLIT_INLINE_KEYS)
        boc = xmalloc(sizeof *boc * (size_t)MIN((int64_t)nkeys, srv.nbackends));
    nchild = route_split_map(k, step, nkeys, keymap, boc);
    if (nchild == 1) { /* one backend: no split, no merge */
        route_forward(k, boc[0]);
        goto out;
    }
    p = route_new_parent(k, !strcmp(k->cmd->name, "mget")   ? MERGE_ARRAY
                            : !strcmp(k->cmd->name, "mset") ? MERGE_OK
                                                            : MERGE_SUM,
                         nchild, boc);
    if (p->merge == MERGE_ARRAY) {
        p->keymap = xmalloc(sizeof *p->keymap * nkeys);
        memcpy(p->keymap, keymap, sizeof *keymap * nkeys);
        p->nkeys = nkeys;
    }
    for (i = 0; i < nchild; i++) { /* the last send may complete and merge p */
        route_split_encode(&enc, k, keymap, nkeys, i, step);
        route_send_child(k->c, p->child[i], &enc);
    }
out:
    buf_free(&enc);
    if (keymap != local)
        free(keymap);
    if (boc != backend_of_child)
        free(boc);
}

/* Send the command ENC to every backend under one parent merged by MERGE
 * (DBSIZE, FLUSHDB, KEYS...; INFO with the SECTIONS asked for). */
static void route_fanout(const struct call *k, enum req_merge merge, const struct buf *enc,
                         uint8_t sections)
{
    struct req *p = route_new_parent(k, merge, (uint32_t)srv.nbackends, NULL);
    int i;

    p->info_sections = sections;
    for (i = 0; i < srv.nbackends; i++) /* the last send may complete and merge p */
        route_send_child(k->c, p->child[i], enc);
}

/* How the replies of each command sent to every backend are merged. */
static const struct route_all_merge {
    const char *name; /* a CMD_ALL command of cmd_table */
    uint8_t merge;    /* enum req_merge */
} route_all_merges[] = {
    {"dbsize", MERGE_SUM},        {"flushall", MERGE_OK},
    {"flushdb", MERGE_OK},        {"function|delete", MERGE_OK},
    {"function|flush", MERGE_OK}, {"function|kill", MERGE_ANYOK},
    {"function|load", MERGE_FIRST}, {"function|restore", MERGE_OK},
    {"keys", MERGE_CONCAT},       {"lastsave", MERGE_MIN},
    {"randomkey", MERGE_RANDOM},  {"script|exists", MERGE_AND},
    {"script|flush", MERGE_OK},   {"script|kill", MERGE_ANYOK},
    {"script|load", MERGE_FIRST}, {"slowlog|get", MERGE_SLOWLOG},
    {"slowlog|len", MERGE_SUM},   {"slowlog|reset", MERGE_OK},
    {"swapdb", MERGE_OK},         {"pubsub|channels", MERGE_CONCAT},
    {"pubsub|numpat", MERGE_MAX}, {"pubsub|numsub", MERGE_NUMSUB},
    {"pubsub|shardchannels", MERGE_CONCAT}, {"pubsub|shardnumsub", MERGE_NUMSUB},
};

/* The tag (1..15) SCAN cursors carry for the current list of backends,
 * from their identities in order: a cursor made for another topology is
 * refused (but for one chance in 15) rather than misread. */
static unsigned route_scan_tag(void)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    const char *id;
    int i;

    for (i = 0; i < srv.nbackends; i++) {
        for (id = srv.backends[i]->cfg.id; *id; id++)
            h = (h ^ (uint8_t)*id) * 16777619u;
        h = (h ^ 0xffu) * 16777619u; /* separator: "ab","c" is not "a","bc" */
    }
    return 1 + h % 15;
}

/*
 * SCAN cursor [MATCH p] [COUNT n] [TYPE t]: one backend at a time, in
 * order.  The proxy's cursor packs where the scan is:
 *
 *     cursor = (backend cursor * backends + backend index) * 16 + tag
 *
 * so 0 starts at backend 0, a backend's 0 ("done") moves on to the next
 * backend's start, and 0 is returned only after the last backend is done.
 * Each step is one SCAN on one backend with the options as they are, so
 * every guarantee Redis gives for one server (a key present for the whole
 * scan is returned at least once; COUNT is a hint) holds for the whole.
 * A cursor that is not a number or whose tag is not this topology's gets
 * Redis's "-ERR invalid cursor".
 */
static void route_scan(const struct call *k)
{
    uint64_t cur, tag = route_scan_tag(), nb = (uint64_t)srv.nbackends, bcur = 0;
    struct resp_arg *argv;
    struct buf enc = {0, 0, 0, 0};
    struct req *p;
    char num[24];
    int bi = 0;

    if (cmd_parse_u64(k->argv[1].p, k->argv[1].len, &cur) < 0 || (cur != 0 && cur % 16 != tag)) {
        reply_error(k, "ERR invalid cursor");
        return;
    }
    if (cur != 0) {
        bi = (int)((cur / 16) % nb);
        bcur = cur / 16 / nb;
    }
    argv = xmalloc(sizeof *argv * (size_t)k->argc);
    memcpy(argv, k->argv, sizeof *argv * (size_t)k->argc);
    snprintf(num, sizeof num, "%llu", (unsigned long long)bcur);
    argv[1].p = num;
    argv[1].len = strlen(num);
    enc_command(&enc, argv, (size_t)k->argc);
    free(argv);
    p = route_new_parent(k, MERGE_SCAN, 1, &bi);
    p->scan_at = (uint32_t)bi;
    p->scan_nb = (uint32_t)nb;
    p->scan_tag = (uint8_t)tag;
    route_send_child(k->c, p->child[0], &enc); /* may complete p */
    buf_free(&enc);
}

/* A command for every backend: SCAN walks them; the others go to all at
 * once and are merged as route_all_merges says. */
static void route_all(const struct call *k)
{
    struct buf enc = {0, 0, 0, 0};
    size_t i;

    if (!strcmp(k->cmd->name, "scan")) {
        route_scan(k);
        return;
    }
    for (i = 0; i < sizeof route_all_merges / sizeof route_all_merges[0]; i++)
        if (!strcmp(route_all_merges[i].name, k->cmd->name))
            break;
    assert(i < sizeof route_all_merges / sizeof route_all_merges[0]);
    enc_command(&enc, k->argv, (size_t)k->argc);
    route_fanout(k, (enum req_merge)route_all_merges[i].merge, &enc, 0);
    buf_free(&enc);
}

/* The next backend (round robin) whose connection for C may take a
 * request (route_usable), or -1. */
static int route_any_backend(const struct client *c)
{
    int i;

    for (i = 0; i < srv.nbackends; i++) {
        int bi = (int)((srv.any_next + (uint32_t)i) % (uint32_t)srv.nbackends);
        if (route_usable(bconn_pick(srv.backends[bi], c))) {
            srv.any_next = (uint32_t)bi + 1;
            return bi;
        }
    }
    return -1;
}

/* COMMAND, TIME: any backend that is not in backoff. */
static void route_any(const struct call *k)
{
    int bi = route_any_backend(k->c);

    if (bi < 0)
        reply_error(k, "ERR no backend available");
    else
        route_forward(k, bi);
}

/* EXEC of transaction T: its commands go to backend BI as one block,
 * MULTI, the commands, EXEC, on one shared connection (on the WATCH's
 * connection when the client watches keys).  One record
 * answers it: the backend's replies to MULTI and to each queued command
 * (+OK, +QUEUED) are dropped, and EXEC's array is the client's reply. */
static void route_exec(const struct call *k, int bi, const struct txn *t)
{
    static const char multi[] = "*1\r\n$5\r\nMULTI\r\n", exec[] = "*1\r\n$4\r\nEXEC\r\n";
    struct client *c = k->c;
    struct backend *b = srv.backends[bi];
    struct bconn *bc = bconn_pick(b, c); /* the WATCH connection, when there is one */
    struct req *r = route_record(k, b, bc);

    if (!r)
        return;
    if (bc == c->watch) /* EXEC ends the WATCH: the connection is free once answered */
        bc->release_idle = 1;
    if (t->n > 0)
        route_note_write(c, b);
    r->skip = t->n + 1;
    r->skip_first = 1;
    buf_append(&bc->out, multi, sizeof multi - 1);
    buf_append(&bc->out, t->q.data + t->q.r, buf_len(&t->q));
    buf_append(&bc->out, exec, sizeof exec - 1);
    bconn_push(bc, r);
}

/* The keys of call K, a command whose keys must live together, into
 * srv.keypos: their count (0 for EVAL ... 0), or -1 when the arguments do
 * not fit its key specs (a numkeys past the arguments, negative or not a
 * number). */
static int64_t route_same_keys(const struct call *k)
{
    return cmd_keys(k->cmd, k->argv, k->argc, srv.keypos);
}

/* The backend all N (> 0) keys of K at srv.keypos map to, or -1 (the
 * -CROSSSLOT replied) when two of them differ. */
static int route_keys_backend(const struct call *k, int64_t n)
{
    int bi = route_backend(srv.cfg, k->argv[srv.keypos[0]].p, k->argv[srv.keypos[0]].len);
    int64_t i;

    for (i = 1; i < n; i++)
        if (route_backend(srv.cfg, k->argv[srv.keypos[i]].p, k->argv[srv.keypos[i]].len) != bi) {
            reply_local_str(k, "-CROSSSLOT Keys in request don't hash to the same backend\r\n");
            return -1;
        }
    return bi;
}

/* A dedicated connection of backend B in POOL for call K's client
 * (bconn_borrow), or NULL with the error replied: B is down, or all its
 * dedicated connections are held. */
static struct bconn *route_borrow(const struct call *k, struct backend *b, int pool)
{
    struct bconn *bc;

    if (!route_usable(bconn_pick(b, k->c))) { /* the shared connection knows it is down */
        b->sh->st.failures++;
        reply_error(k, "ERR backend %s unavailable", b->cfg.id);
        return NULL;
    }
    if (!(bc = bconn_borrow(b, k->c, pool))) {
        reply_error(k, "ERR backend %s: all %d dedicated connections for blocking commands "
                       "and WATCH are in use (blocking_connections)", b->cfg.id, b->ded_max);
        return NULL;
    }
    if (bc->owner != k->c) { /* its connect failed at once */
        b->sh->st.failures++;
        reply_error(k, "ERR backend %s unavailable", b->cfg.id);
        return NULL;
    }
    return bc;
}

/*
 * WATCH key ...: on a dedicated connection to the keys' backend, which the
 * client holds until EXEC, DISCARD, UNWATCH or RESET: Redis keeps what a
 * connection watches, and EXEC must run where WATCH did.  The keys of every
 * WATCH, and of the transaction after, must map to that one backend
 * (-CROSSSLOT otherwise).  Meanwhile the client's other commands go over
 * the shared connections as usual (a write of its own to a watched key
 * still makes EXEC fail, as in Redis).
 */
static void route_watch(const struct call *k)
{
    struct client *c = k->c;
    int64_t n = cmd_keys(k->cmd, k->argv, k->argc, srv.keypos); /* arity: at least one */
    struct backend *b;
    struct req *r;
    int bi;

    if (n <= 0) { /* not for a WATCH that passed its arity check */
        reply_error(k, "ERR wrong number of arguments for 'watch' command");
        return;
    }
    if ((bi = route_keys_backend(k, n)) < 0)
        return;
    b = srv.backends[bi];
    if (client_watching(c) && c->watch->backend != b) {
        reply_local_str(k, "-CROSSSLOT Keys in request don't hash to the same backend\r\n");
        return;
    }
    if (c->watch && !client_watching(c)) /* ended, and idle: input_defer waited for it */
        client_watch_end(c, 1);
    if (!c->watch && !(c->watch = route_borrow(k, b, client_pool(k->c))))
        return;
    if ((r = route_record(k, b, c->watch)) != NULL)
        route_send(k, c->watch, r);
}

/* UNWATCH: where a WATCH holds a connection, sent there, which is free
 * once it is answered; else nothing is watched and Redis says +OK. */
static void route_unwatch(const struct call *k)
{
    struct client *c = k->c;
    struct bconn *bc = c->watch;
    struct req *r;

    free(c->watch_lost);
    c->watch_lost = NULL;
    if (!client_watching(c)) {
        reply_local_str(k, "+OK\r\n");
        return;
    }
    bc->release_idle = 1; /* held until answered: what follows stays in order */
    if ((r = route_record(k, bc->backend, bc)) != NULL)
        route_send(k, bc, r);
}

/* When the reply to a command that blocks for MS (0: forever) is late: after
 * its own timeout plus `timeout` (at least BLOCK_GRACE_MS); never for a
 * timeout of 0, or with `timeout 0` (never time out). */
static uint64_t route_block_deadline(uint64_t ms)
{
    if (!ms || !srv.cfg->timeout_ms)
        return UINT64_MAX;
    return srv.now_us + (ms + MAX(srv.cfg->timeout_ms, BLOCK_GRACE_MS)) * 1000;
}

/*
 * A blocking command (BLPOP ... BZMPOP, XREAD/XREADGROUP BLOCK) for backend
 * BI, with its own timeout MS (0: none).  It runs on a dedicated connection
 * the client holds until the reply, so the shared ones keep serving
 * everyone meanwhile; input_dispatch sent it only once everything the
 * client asked before was answered, and reads nothing more of that client
 * until it is answered, so its requests run in the order Redis would run
 * them.  The reply is late (-ERR ... timed out, and the connection closed)
 * only after the command's own timeout plus `timeout`.
 */
static void route_blocking(const struct call *k, int bi, uint64_t ms)
{
    struct backend *b = srv.backends[bi];
    struct client *c = k->c;
    struct bconn *bc;
    struct req *r;

    if (!(bc = route_borrow(k, b, client_pool(k->c))))
        return;
    c->ded = bc;
    if (!(r = route_record(k, b, bc))) {
        bconn_release(bc);
        return;
    }
    bc->block_until_us = route_block_deadline(ms);
    route_send(k, bc, r);
}

/* Backend BI is one WAIT asks (route_wait)?  Those C wrote to since its
 * last WAIT; every one when it wrote to none (a WAIT after no write asks
 * what every backend's replicas have) or a reload came between. */
static int route_wait_asks(const struct client *c, int bi)
{
    uint32_t i, any = 0, word = (uint32_t)bi / 64;

    if (c->wrote_all || c->wrote_gen != srv.cfg_gen)
        return 1;
    for (i = 0; i < c->wrote_words; i++)
        any |= c->wrote[i] != 0;
    return !any || (word < c->wrote_words && (c->wrote[word] >> (bi % 64) & 1));
}

/*
 * WAIT numreplicas timeout.  Redis answers how many replicas acknowledged
 * the client's writes, which it knows by the offset of the client's last
 * write on its connection.  The client's writes went over shared
 * connections, and a WAIT there would block everyone on them; so on a
 * dedicated connection to each backend it wrote to since its last WAIT
 * the proxy writes a no-op PUBLISH (propagated to replicas, so it sets
 * that connection's offset past the client's writes: input_defer sent the
 * WAIT only once they were answered) and the WAIT itself.  The reply is
 * the smallest count (MERGE_MIN); the PUBLISH's is dropped (skip).  Like a
 * blocking command it holds the client's later requests until answered,
 * and it is late only after its own timeout plus `timeout`.
 */
static void route_wait(const struct call *k)
{
    static const char noop[] = "*3\r\n$7\r\nPUBLISH\r\n$19\r\n" WAIT_CHANNEL "\r\n$0\r\n\r\n";
    struct client *c = k->c;
    uint64_t ms = cmd_timeout_ms(&k->argv[2], 1.0);
    int *asks = xcalloc((size_t)srv.nbackends, sizeof *asks);
    uint32_t n = 0, i;
    struct req *p;

    for (i = 0; i < (uint32_t)srv.nbackends; i++)
        if (route_wait_asks(c, (int)i))
            asks[n++] = (int)i;
    for (i = 0; i < c->wrote_words; i++)
        c->wrote[i] = 0;
    c->wrote_all = 0;
    p = route_new_parent(k, MERGE_MIN, n, asks);
    free(asks);
    c->wait = p;
    for (i = 0; i < n; i++) { /* the last child may complete p, and free it */
        struct req *ch = p->child[i];
        struct backend *b = ch->backend;
        struct bconn *bc = NULL;
        if (!route_usable(bconn_pick(b, c)) || ((bc = bconn_borrow(b, c, client_pool(c))) && bc->owner != c)) {
            complete_error(ch, "ERR backend %s unavailable", b->cfg.id);
            continue;
        }
        if (!bc) {
            complete_error(ch, "ERR backend %s: all %d dedicated connections for blocking "
                               "commands and WATCH are in use (blocking_connections)",
                           b->cfg.id, b->ded_max);
            continue;
        }
        bc->release_idle = 1; /* freed once answered; dropped if the client leaves first */
        bc->block_until_us = route_block_deadline(ms);
        buf_append(&bc->out, noop, sizeof noop - 1);
        enc_command(&bc->out, k->argv, (size_t)k->argc);
        ch->skip = 1;
        bconn_push(bc, ch);
    }
}

/* Route a keyed command whose keys must all live on one backend.  EVAL,
 * EVALSHA, FCALL (and _RO) with zero keys run on the first backend of the
 * configuration: always the same one, so what a keyless script keeps
 * there (it should keep nothing) stays in one place. */
static void route_same(const struct call *k)
{
    int64_t n = route_same_keys(k);
    uint64_t ms;
    int bi;

    if (n < 0) { /* Redis refuses such arguments, with words of its own */
        route_any(k);
        return;
    }
    if (n == 0)
        route_forward(k, 0);
    else if ((bi = route_keys_backend(k, n)) < 0)
        return;
    else if (cmd_blocks(k->cmd, k->argv, k->argc, &ms))
        route_blocking(k, bi, ms);
    else
        route_forward(k, bi);
}

/* ============================================================== pub/sub */
/* sub_: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, their UNSUBSCRIBEs and MONITOR.
 *
 * A subscribed client holds one dedicated connection (RESP2, a stream
 * connection) per backend it subscribed on: a channel on the backend that
 * owns it (the placement of a key of that name, so PUBLISH, routed the
 * same way, reaches its subscribers), a pattern on every backend (it may
 * match a channel anywhere; each message is published on one backend, so
 * it arrives once).  The proxy keeps what the client subscribed to and
 * answers every confirmation itself, with Redis's framing and the
 * client's own counts, once the backends confirmed; messages go to the
 * client as they arrive (bconn_stream_frame, reply_message). */

/* What a (un)subscribe command works on. */
enum sub_kind {
    SUB_CHANNEL, /* SUBSCRIBE, UNSUBSCRIBE */
    SUB_PATTERN, /* PSUBSCRIBE, PUNSUBSCRIBE */
    SUB_SHARD    /* SSUBSCRIBE, SUNSUBSCRIBE */
};

/* The kind of (un)subscribe command NAME is. */
static enum sub_kind sub_kind_of(const char *name)
{
    if (!strcmp(name, "psubscribe") || !strcmp(name, "punsubscribe"))
        return SUB_PATTERN;
    if (!strcmp(name, "ssubscribe") || !strcmp(name, "sunsubscribe"))
        return SUB_SHARD;
    return SUB_CHANNEL;
}

static struct set *sub_set(struct sub *u, enum sub_kind kind)
{
    return kind == SUB_PATTERN ? &u->pat : kind == SUB_SHARD ? &u->shard : &u->chan;
}

/* The count a confirmation of KIND carries, as Redis counts: channels
 * and patterns together; shard channels apart. */
static size_t sub_count(const struct sub *u, enum sub_kind kind)
{
    return kind == SUB_SHARD ? u->shard.n : u->chan.n + u->pat.n;
}

/* Append one confirmation: TYPE (the command's name), the channel
 * NAME[0..LEN) (NULL: none, for an UNSUBSCRIBE of nothing) and COUNT, as
 * an array in RESP2 and a push in RESP3. */
static void sub_confirm(struct buf *b, int proto, const char *type, const char *name,
                        size_t len, size_t count)
{
    buf_append_str(b, proto == 3 ? ">3\r\n" : "*3\r\n");
    enc_bulk(b, type, strlen(type));
    if (name)
        enc_bulk(b, name, len);
    else
        enc_null(b, proto);
    buf_printf(b, ":%zu\r\n", count);
}

/* C's stream connection of type STREAM to backend B, or NULL. */
static struct bconn *sub_find(const struct client *c, const struct backend *b, uint8_t stream)
{
    int i;

    for (i = 0; c->sub && i < c->sub->nconn; i++)
        if (c->sub->conn[i]->backend == b && c->sub->conn[i]->stream == stream)
            return c->sub->conn[i];
    return NULL;
}

/* Call K's client's stream connection of type STREAM to B, borrowed if it
 * has none (in RESP2: what it streams is reframed for RESP3 clients), or
 * NULL with the error replied. */
static struct bconn *sub_conn(const struct call *k, struct backend *b, uint8_t stream)
{
    struct client *c = k->c;
    struct bconn *bc = sub_find(c, b, stream);

    if (bc)
        return bc;
    if (!(bc = route_borrow(k, b, 0)))
        return NULL;
    bc->stream = stream;
    c->sub->conn = xrealloc(c->sub->conn, sizeof *c->sub->conn * (size_t)(c->sub->nconn + 1));
    c->sub->conn[c->sub->nconn++] = bc;
    return bc;
}

/* C's stream connections of type STREAM go back to the pool (it stopped
 * subscribing or monitoring): once what is on them is answered, as they
 * hold nothing on their backends any more. */
static void sub_release(struct client *c, uint8_t stream)
{
    int i;

    for (i = c->sub ? c->sub->nconn - 1 : -1; i >= 0; i--) {
        struct bconn *bc = c->sub->conn[i];
        if (bc->stream != stream)
            continue;
        if (bc->head) {
            bc->release_idle = 1; /* bconn_idle_check releases it */
        } else {
            bc->release_idle = 1;
            bconn_release(bc); /* takes it off the list */
        }
    }
}

/* Send the part of call K for the backends in ASKS[0..N) (srv.backends
 * indexes) on C's stream connections of type STREAM: the command name,
 * then ARGS[j] for each j whose BACKEND_OF[j] is that backend (-1: every
 * backend, -2: none).  The confirmations PREBUILT are the reply once all answered. */
static void sub_send(const struct call *k, const int *asks, int n, const struct resp_arg *args,
                     const int *backend_of, int nargs, uint8_t stream, const struct buf *prebuilt)
{
    struct req *p = route_new_parent(k, MERGE_SUB, (uint32_t)n, asks);
    struct resp_arg *argv = xmalloc(sizeof *argv * (size_t)(nargs + 1));
    struct buf enc = {0, 0, 0, 0};
    int i, j, argc;

    buf_append(&p->reply, prebuilt->data + prebuilt->r, buf_len(prebuilt));
    argv[0] = k->argv[0];
    for (i = 0; i < n; i++) { /* nothing completes before the loop ends: all are queued */
        struct req *ch = p->child[i];
        struct bconn *bc = sub_find(k->c, ch->backend, stream);
        for (argc = 1, j = 0; j < nargs; j++)
            if (backend_of[j] == -1 || backend_of[j] == asks[i]) /* -2: none */
                argv[argc++] = args[j];
        enc.r = enc.w = 0;
        enc_command(&enc, argv, (size_t)argc);
        buf_append(&bc->out, enc.data, buf_len(&enc));
        ch->frames = (uint32_t)(argc > 1 ? argc - 1 : 1);
        bconn_push(bc, ch);
    }
    buf_free(&enc);
    free(argv);
}

/* C's pub/sub state, made on first use. */
static struct sub *sub_of(struct client *c)
{
    if (!c->sub)
        c->sub = xcalloc(1, sizeof *c->sub);
    return c->sub;
}

/* SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE name...: a stream connection to each
 * backend concerned first (an error changes nothing), then the names
 * join the client's sets, and each backend gets its part. */
static void sub_subscribe(const struct call *k, enum sub_kind kind)
{
    struct client *c = k->c;
    struct sub *u = sub_of(c);
    int nargs = (int)k->argc - 1, *of = xmalloc(sizeof *of * (size_t)nargs);
    int *asks = xcalloc((size_t)srv.nbackends, sizeof *asks), n = 0, i, j;
    char *used = xcalloc((size_t)srv.nbackends, 1);
    struct buf frames = {0, 0, 0, 0};

    for (j = 0; j < nargs; j++) {
        of[j] = kind == SUB_PATTERN ? -1
                                    : route_backend(srv.cfg, k->argv[j + 1].p, k->argv[j + 1].len);
        for (i = 0; i < srv.nbackends; i++)
            used[i] |= of[j] < 0 || of[j] == i;
    }
    for (i = 0; i < srv.nbackends; i++)
        if (used[i]) {
            if (!sub_conn(k, srv.backends[i], STREAM_PUBSUB)) {
                if (!client_subscribed(c)) /* connections taken for nothing go back */
                    sub_release(c, STREAM_PUBSUB);
                goto out;
            }
            asks[n++] = i;
        }
    for (j = 0; j < nargs; j++) {
        const struct resp_arg *a = &k->argv[j + 1];
        set_add(sub_set(u, kind), a->p, a->len, of[j] < 0 ? NULL : srv.backends[of[j]]);
        sub_confirm(&frames, c->proto, k->cmd->name, a->p, a->len, sub_count(u, kind));
    }
    sub_send(k, asks, n, k->argv + 1, of, nargs, STREAM_PUBSUB, &frames);
out:
    buf_free(&frames);
    free(used);
    free(asks);
    free(of);
}

/* UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE [name...]: the names (all of the
 * client's, without any) leave its sets, with a confirmation each (one
 * with no name when there was nothing); the backends they were subscribed
 * on are told.  Subscribed to nothing any more, the client's stream
 * connections go back to the pool. */
static void sub_unsubscribe(const struct call *k, enum sub_kind kind)
{
    struct client *c = k->c;
    struct sub *u = sub_of(c);
    struct set *set = sub_set(u, kind);
    struct buf names = {0, 0, 0, 0}, frames = {0, 0, 0, 0};
    struct resp_arg *args;
    int nargs = (int)k->argc - 1, *of, *asks, n = 0, i, j, sent = 0;
    size_t b;

    if (nargs == 0) { /* every member: copied, as removing frees them */
        const struct set_node *nd;
        size_t o = 0;
        for (b = 0; b < set->nbucket; b++)
            for (nd = set->bucket[b]; nd; nd = nd->next)
                buf_append(&names, nd->data, nd->len);
        args = xmalloc(sizeof *args * (set->n + 1));
        for (b = 0; b < set->nbucket; b++)
            for (nd = set->bucket[b]; nd; nd = nd->next) {
                args[nargs].p = names.data + o;
                args[nargs++].len = nd->len;
                o += nd->len;
            }
    } else {
        args = xmalloc(sizeof *args * (size_t)nargs);
        memcpy(args, k->argv + 1, sizeof *args * (size_t)nargs);
    }
    of = xmalloc(sizeof *of * (size_t)(nargs + 1));
    asks = xcalloc((size_t)srv.nbackends, sizeof *asks);
    for (j = 0; j < nargs; j++) {
        const struct set_node *nd = set_find(set, args[j].p, args[j].len);
        const struct backend *owner = nd ? nd->tag : NULL;
        of[j] = -2; /* not subscribed: no backend is told */
        if (nd && kind == SUB_PATTERN)
            of[j] = -1;
        else if (owner && !owner->retired)
            of[j] = owner->index;
        sent += of[j] != -2;
        set_del(set, args[j].p, args[j].len);
        sub_confirm(&frames, c->proto, k->cmd->name, args[j].p, args[j].len, sub_count(u, kind));
    }
    if (nargs == 0)
        sub_confirm(&frames, c->proto, k->cmd->name, NULL, 0, sub_count(u, kind));
    for (i = 0; sent && i < srv.nbackends; i++) {
        if (!sub_find(c, srv.backends[i], STREAM_PUBSUB))
            continue;
        for (j = 0; j < nargs && of[j] != -1 && of[j] != i; j++)
            ;
        if (j < nargs)
            asks[n++] = i;
    }
    if (n > 0)
        sub_send(k, asks, n, args, of, nargs, STREAM_PUBSUB, &frames);
    else
        reply_local(k, frames.data, buf_len(&frames));
    if (!client_subscribed(c))
        sub_release(c, STREAM_PUBSUB);
    free(asks);
    free(of);
    free(args);
    buf_free(&names);
    buf_free(&frames);
}

/* MONITOR: a MONITOR connection to every backend, each line tagged with
 * the backend's identity (reply_monitor).  A second MONITOR is answered
 * with nothing, as Redis answers it. */
static void sub_monitor(const struct call *k)
{
    struct client *c = k->c;
    struct sub *u = sub_of(c);
    int *asks = xmalloc(sizeof *asks * (size_t)srv.nbackends), i;
    struct buf ok = {0, 0, 0, 0};

    if (u->monitor) {
        free(asks);
        return;
    }
    for (i = 0; i < srv.nbackends; i++) {
        if (!sub_conn(k, srv.backends[i], STREAM_MONITOR)) {
            sub_release(c, STREAM_MONITOR);
            free(asks);
            return;
        }
        asks[i] = i;
    }
    u->monitor = 1;
    buf_append_str(&ok, "+OK\r\n");
    sub_send(k, asks, srv.nbackends, NULL, NULL, 0, STREAM_MONITOR, &ok);
    buf_free(&ok);
    free(asks);
}

/* After a reload: a subscriber whose channel now belongs to another
 * backend, or whose patterns or MONITOR miss a new backend, would miss
 * messages silently; it is closed instead, and its client library
 * subscribes again through the new placement. */
static void sub_check_placement(void)
{
    struct client *c;
    const struct set_node *nd;
    size_t b;
    int i, moved;

    for (c = srv.clients; c; c = c->next) {
        const struct set *sets[2];
        if (!c->sub || c->state != CLIENT_OPEN)
            continue;
        sets[0] = &c->sub->chan;
        sets[1] = &c->sub->shard;
        for (moved = 0, i = 0; i < 2 && !moved; i++)
            for (b = 0; b < sets[i]->nbucket && !moved; b++)
                for (nd = sets[i]->bucket[b]; nd && !moved; nd = nd->next)
                    moved = nd->tag != srv.backends[route_backend(srv.cfg, nd->data, nd->len)];
        for (i = 0; i < srv.nbackends && !moved; i++)
            moved = (c->sub->pat.n && !sub_find(c, srv.backends[i], STREAM_PUBSUB)) ||
                    (c->sub->monitor && !sub_find(c, srv.backends[i], STREAM_MONITOR));
        for (i = 0; i < c->sub->nconn && !moved; i++) /* a removed backend's go too */
            moved = c->sub->conn[i]->backend->retired;
        if (moved) {
            log_at(LOG_INFO, "client %llu %s: closing: the reload moved what it subscribed to",
                   (unsigned long long)c->id, c->addr);
            client_streams_drop(c);
            c->state = CLIENT_CLOSING;
            reply_dirty(c);
        }
    }
}

/* May C, subscribed in RESP2, run CMD?  Redis allows only these there. */
static int sub_allowed(const struct command *cmd)
{
    static const char *const names[] = {"subscribe", "psubscribe", "ssubscribe", "unsubscribe",
                                        "punsubscribe", "sunsubscribe", "ping", "quit", "reset"};
    size_t i;

    for (i = 0; i < ARRAY_LEN(names); i++)
        if (!strcmp(cmd->name, names[i]))
            return 1;
    return 0;
}

/* Does CMD change what the client subscribes to or monitors?  Such a
 * command waits for the client's earlier replies (input_defer), so no
 * record of the client is in flight on its stream connections when it
 * runs: RESET can close them at once. */
static int sub_changes(const struct command *cmd)
{
    return sub_allowed(cmd) && strcmp(cmd->name, "ping") && strcmp(cmd->name, "quit");
}

/* ================================================================ stats */
/* stats_: the text, JSON, Prometheus and INFO reports, from the X-macros. */

/* INFO sections, as a bit mask; the stats rows name theirs (NONE: not in
 * INFO). */
enum {
    INFO_NONE = 0,
    INFO_SERVER = 1,
    INFO_CLIENTS = 2,
    INFO_MEMORY = 4,       /* summed over the backends */
    INFO_STATS = 8,
    INFO_REPLICATION = 16, /* role:master: to a client the proxy is one master */
    INFO_PROXY = 32,       /* the proxy's own figures */
    INFO_BACKENDS = 64,    /* one line per backend */
    INFO_KEYSPACE = 128,   /* summed over the backends */
    INFO_ALL = 255,
    INFO_ASK = INFO_SERVER | INFO_MEMORY | INFO_KEYSPACE /* need the backends' INFO */
};

/* The quantiles every latency report shows. */
static const struct {
    const char *name; /* key in reports */
    double q;         /* fraction */
} stats_quantiles[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}};

static long long stats_uptime(void) { return (long long)(time(NULL) - srv.start_time); }

/* Fill V for a report.  Serving alone: this process's own block.  With
 * workers: every block summed (the master's holds dead workers' counters),
 * each block's backend slots matched by key to this process's routed
 * backends.  This process's gauges are published first. */
static void stats_view_get(struct stats_view *v)
{
    int n, w;

    backend_publish();
    memset(v, 0, sizeof *v);
    v->b = xmalloc(sizeof *v->b * (size_t)MAX(srv.nbackends, 1));
    if (srv.nworkers <= 1) {
        v->t = &srv.blk->t;
        v->workers = 1;
        for (n = 0; n < srv.nbackends; n++)
            v->b[n] = srv.backends[n]->sh;
        return;
    }
    v->sum = xcalloc(1, sizeof *v->sum);
    v->bsum = xcalloc((size_t)MAX(srv.nbackends, 1), sizeof *v->bsum);
    for (w = 0; w <= srv.nworkers; w++) {
        const struct stats_block *k = &srv.blocks[w];
        v->workers += w < srv.nworkers && k->pid != 0;
        stats_add_totals(v->sum, &k->t, 1);
        for (n = 0; n < srv.nbackends; n++) {
            const struct stats_slot *sl = stats_find(k, srv.backends[n]->sh->key);
            if (sl)
                stats_add_slot(&v->bsum[n], sl, 1);
        }
    }
    v->t = v->sum;
    for (n = 0; n < srv.nbackends; n++)
        v->b[n] = &v->bsum[n];
}

static void stats_view_put(struct stats_view *v)
{
    free(v->b);
    free(v->sum);
    free(v->bsum);
}

/* Backend B's one-line view: every S and G row of STATS_BACKEND, as
 * "name value" pairs joined by blanks, or with KV as "name=value" joined by
 * commas (INFO). */
static void stats_backend_line(struct buf *out, const struct backend *b,
                               const struct stats_slot *s, int kv)
{
    const char *sep = "";

#define STATS_LINE_G(name, metric, section, info, help, value)                            \
    buf_printf(out, kv ? "%s%s=%llu" : "%s%s %llu", sep, #name, (unsigned long long)(value)); \
    sep = kv ? "," : " ";
#define STATS_LINE_S(name, value)                                                         \
    buf_printf(out, kv ? "%s%s=%s" : "%s%s %s", sep, #name, (value));                      \
    sep = kv ? "," : " ";
    STATS_BACKEND(STATS_NOFIELD_C, STATS_LINE_G, STATS_LINE_S)
#undef STATS_LINE_G
#undef STATS_LINE_S
}

static void stats_text_latency(struct buf *out, const struct hist *h)
{
    size_t i;

    buf_printf(out, "  latency_us");
    for (i = 0; i < ARRAY_LEN(stats_quantiles); i++)
        buf_printf(out, " %s %llu", stats_quantiles[i].name,
                   (unsigned long long)hist_quantile(h, stats_quantiles[i].q));
    buf_printf(out, " max %llu\n", (unsigned long long)h->max);
}


/* The text report's line per worker process (with workers). */
static void stats_text_workers(struct buf *out)
{
    int w;

    for (w = 0; srv.nworkers > 1 && w < srv.nworkers; w++) {
        const struct stats_block *k = &srv.blocks[w];
        buf_printf(out, "worker %d pid %ld clients %llu commands %llu\n", w, k->pid,
                   (unsigned long long)k->t.clients, (unsigned long long)k->t.st.commands);
    }
}

/* The human-readable report: SIGUSR1 and the admin `stats` command. */
static void stats_write_text(struct buf *out)
{
    struct stats_view view, *v = &view;
    size_t i;
    int n;

    stats_view_get(v);
    buf_printf(out, "shardproxy %s pid %ld uptime %llds\n", SHARDPROXY_VERSION, (long)getpid(),
               stats_uptime());
#define STATS_TEXT_C(name, section, info, help) \
    buf_printf(out, "  %-20s %llu\n", #name, (unsigned long long)v->t->st.name);
#define STATS_TEXT_G(name, metric, section, info, help, value) \
    buf_printf(out, "  %-20s %llu\n", #name, (unsigned long long)(value));
    STATS_PROXY(STATS_TEXT_C, STATS_TEXT_G)
#undef STATS_TEXT_C
    stats_text_workers(out);
    for (n = 0; n < srv.nbackends; n++) {
        const struct backend *b = srv.backends[n];
        const struct stats_slot *s = v->b[n];
        buf_printf(out, "backend %s address %s ", b->cfg.id, b->cfg.addr);
        stats_backend_line(out, b, s, 0);
        buf_append(out, "\n", 1);
#define STATS_TEXT_C(name, section, info, help) \
    buf_printf(out, "  %-20s %llu\n", #name, (unsigned long long)s->st.name);
        STATS_BACKEND(STATS_TEXT_C, STATS_NOFIELD, STATS_NOSTRING)
#undef STATS_TEXT_C
#undef STATS_TEXT_G
        stats_text_latency(out, &s->latency);
        if (s->last_error[0]) {
            char esc[sizeof s->last_error * 4 + 8];
            buf_printf(out, "  last_error %s\n", log_escape(s->last_error,
                       strnlen(s->last_error, sizeof s->last_error), esc, sizeof esc));
        }
    }
    for (i = 0; i < ARRAY_LEN(cmd_table); i++) {
        const struct cmd_stats *cs = &v->t->cmd[i];
        if (!cs->calls)
            continue;
        buf_printf(out, "command %s calls %llu errors %llu\n", cmd_table[i].name,
                   (unsigned long long)cs->calls, (unsigned long long)cs->errors);
        stats_text_latency(out, &cs->latency);
    }
    stats_view_put(v);
}

/* Append S as a JSON string: quotes, backslashes and control bytes escaped. */
static void stats_json_str(struct buf *out, const char *s)
{
    buf_append(out, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            buf_printf(out, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            buf_printf(out, "\\u%04x", ch);
        else
            buf_append(out, s, 1);
    }
    buf_append(out, "\"", 1);
}


static void stats_json_latency(struct buf *out, const struct hist *h)
{
    size_t i;

    buf_printf(out, "\"latency_us\":{");
    for (i = 0; i < ARRAY_LEN(stats_quantiles); i++)
        buf_printf(out, "\"%s\":%llu,", stats_quantiles[i].name,
                   (unsigned long long)hist_quantile(h, stats_quantiles[i].q));
    buf_printf(out, "\"max\":%llu}", (unsigned long long)h->max);
}


/* One backend as a JSON object: identity, every row, last_error, latency. */
static void stats_json_backend(struct buf *out, const struct backend *b,
                               const struct stats_slot *s)
{
    buf_printf(out, "{\"name\":");
    stats_json_str(out, b->cfg.id);
    buf_printf(out, ",\"address\":");
    stats_json_str(out, b->cfg.addr);
#define STATS_JSON_C(name, section, info, help) \
    buf_printf(out, ",\"%s\":%llu", #name, (unsigned long long)s->st.name);
#define STATS_JSON_G(name, metric, section, info, help, value) \
    buf_printf(out, ",\"%s\":%llu", #name, (unsigned long long)(value));
#define STATS_JSON_S(name, value)             \
    buf_printf(out, ",\"%s\":", #name);       \
    stats_json_str(out, (value));
    STATS_BACKEND(STATS_JSON_C, STATS_JSON_G, STATS_JSON_S)
#undef STATS_JSON_C
#undef STATS_JSON_G
#undef STATS_JSON_S
    buf_append_str(out, ",\"last_error\":");
    stats_json_str(out, s->last_error);
    buf_append(out, ",", 1);
    stats_json_latency(out, &s->latency);
    buf_append(out, "}", 1);
}

/* The whole report as one JSON object on one line (admin `stats json`).
 * "clients" is an object (current, total, rejected) that gathers the client
 * figures; the other rows are flat members. */
static void stats_write_json(struct buf *out)
{
    struct stats_view view, *v = &view;
    size_t i;
    int n, first = 1;

    stats_view_get(v);
    buf_printf(out, "{\"version\":\"%s\",\"pid\":%ld,\"uptime_s\":%lld,"
               "\"clients\":{\"current\":%llu,\"total\":%llu,\"rejected\":%llu}",
               SHARDPROXY_VERSION, (long)getpid(), stats_uptime(),
               (unsigned long long)v->t->clients,
               (unsigned long long)v->t->st.connections_accepted,
               (unsigned long long)v->t->st.connections_rejected);
#define STATS_JSON_C(name, section, info, help) \
    buf_printf(out, ",\"%s\":%llu", #name, (unsigned long long)v->t->st.name);
#define STATS_JSON_PROXY_G(name, metric, section, info, help, value) \
    if (strcmp(#name, "clients"))                                  \
        buf_printf(out, ",\"%s\":%llu", #name, (unsigned long long)(value));
    STATS_PROXY(STATS_JSON_C, STATS_JSON_PROXY_G)
#undef STATS_JSON_C
#undef STATS_JSON_PROXY_G
    buf_printf(out, ",\"backends\":[");
    for (n = 0; n < srv.nbackends; n++) {
        if (n)
            buf_append(out, ",", 1);
        stats_json_backend(out, srv.backends[n], v->b[n]);
    }
    buf_printf(out, "],\"workers_by_index\":[");
    for (n = 0; srv.nworkers > 1 && n < srv.nworkers; n++)
        buf_printf(out, "%s{\"pid\":%ld,\"clients\":%llu,\"commands\":%llu}", n ? "," : "",
                   srv.blocks[n].pid, (unsigned long long)srv.blocks[n].t.clients,
                   (unsigned long long)srv.blocks[n].t.st.commands);
    buf_printf(out, "],\"commands_by_name\":{");
    for (i = 0; i < ARRAY_LEN(cmd_table); i++) {
        const struct cmd_stats *cs = &v->t->cmd[i];
        if (!cs->calls)
            continue;
        buf_printf(out, "%s\"%s\":{\"calls\":%llu,\"errors\":%llu,", first ? "" : ",",
                   cmd_table[i].name, (unsigned long long)cs->calls,
                   (unsigned long long)cs->errors);
        stats_json_latency(out, &cs->latency);
        buf_append(out, "}", 1);
        first = 0;
    }
    buf_printf(out, "}}\n");
    stats_view_put(v);
}

/* Append S as a Prometheus label value: backslash, quote and newline escaped. */
static void stats_prom_label(struct buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            buf_printf(out, "\\%c", *s);
        else if (*s == '\n')
            buf_append(out, "\\n", 2);
        else
            buf_append(out, s, 1);
    }
}


static void stats_prom_family(struct buf *out, const char *name, const char *type,
                              const char *help)
{
    buf_printf(out, "# HELP shardproxy_%s %s\n# TYPE shardproxy_%s %s\n", name, help, name, type);
}


/* One sample: shardproxy_NAME{LABEL="VALUE"} V (no braces without a label). */
static void stats_prom_sample(struct buf *out, const char *name, const char *label,
                              const char *value, uint64_t v)
{
    buf_printf(out, "shardproxy_%s", name);
    if (label) {
        buf_printf(out, "{%s=\"", label);
        stats_prom_label(out, value);
        buf_append(out, "\"}", 2);
    }
    buf_printf(out, " %llu\n", (unsigned long long)v);
}


/* A latency histogram in seconds: cumulative buckets, then +Inf, _sum and
 * _count.  Samples are whole microseconds and 2^k is a bucket boundary, so
 * "le = 2^k - 1 us" counts exactly the samples below 2^k. */
static void stats_prom_hist(struct buf *out, const char *name, const char *label,
                            const char *value, const struct hist *h)
{
    unsigned k;

    for (k = 0; k <= HIST_MAX_BITS; k++) { /* up to 2^27 - 1 us = 134 s, then +Inf */
        uint64_t le = (1ULL << k) - 1;
        buf_printf(out, "shardproxy_%s_bucket{%s=\"", name, label);
        stats_prom_label(out, value);
        buf_printf(out, "\",le=\"%llu.%06llu\"} %llu\n", (unsigned long long)(le / 1000000),
                   (unsigned long long)(le % 1000000),
                   (unsigned long long)hist_below_pow2(h, k));
    }
    buf_printf(out, "shardproxy_%s_bucket{%s=\"", name, label);
    stats_prom_label(out, value);
    buf_printf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
    buf_printf(out, "shardproxy_%s_sum{%s=\"", name, label);
    stats_prom_label(out, value);
    buf_printf(out, "\"} %llu.%06llu\n", (unsigned long long)(h->sum / 1000000),
               (unsigned long long)(h->sum % 1000000));
    buf_printf(out, "shardproxy_%s_count{%s=\"", name, label);
    stats_prom_label(out, value);
    buf_printf(out, "\"} %llu\n", (unsigned long long)h->count);
}


/* The proxy-wide families, and one family per backend row with a sample
 * per backend (plus backend_up, the `state` string as a number). */
static void stats_prom_rows(struct buf *out, const struct stats_view *v)
{
    int n;

#define STATS_PROM_C(name, section, info, help)                   \
    stats_prom_family(out, #name "_total", "counter", help ".");  \
    stats_prom_sample(out, #name "_total", NULL, NULL, v->t->st.name);
#define STATS_PROM_G(name, metric, section, info, help, value) \
    stats_prom_family(out, metric, "gauge", help ".");         \
    stats_prom_sample(out, metric, NULL, NULL, (uint64_t)(value));
    STATS_PROXY(STATS_PROM_C, STATS_PROM_G)
#undef STATS_PROM_C
#undef STATS_PROM_G
    stats_prom_family(out, "backend_up", "gauge", "1 if a connection to the backend is up.");
    for (n = 0; n < srv.nbackends; n++)
        stats_prom_sample(out, "backend_up", "backend", srv.backends[n]->cfg.id,
                          (uint64_t)(v->b[n]->conns > 0));
#define STATS_PROM_EACH(family, type, help, value)                       \
    stats_prom_family(out, family, type, help ".");                     \
    for (n = 0; n < srv.nbackends; n++) {                               \
        const struct backend *b = srv.backends[n];                      \
        const struct stats_slot *s = v->b[n];                           \
        UNUSED(s); /* the rows from struct backend do not read it */    \
        stats_prom_sample(out, family, "backend", b->cfg.id, (uint64_t)(value)); \
    }
#define STATS_PROM_C(name, section, info, help) \
    STATS_PROM_EACH("backend_" #name "_total", "counter", help, s->st.name)
#define STATS_PROM_G(name, metric, section, info, help, value) \
    STATS_PROM_EACH(metric, "gauge", help, value)
    STATS_BACKEND(STATS_PROM_C, STATS_PROM_G, STATS_NOSTRING)
#undef STATS_PROM_C
#undef STATS_PROM_G
#undef STATS_PROM_EACH
}

/* Prometheus text exposition format 0.0.4 (admin `metrics`): every family
 * with HELP and TYPE, its samples together. */
static void stats_write_metrics(struct buf *out)
{
    struct stats_view view, *v = &view;
    size_t i;
    int n;

    stats_view_get(v);
    stats_prom_family(out, "info", "gauge", "Always 1; the version is a label.");
    stats_prom_sample(out, "info", "version", SHARDPROXY_VERSION, 1);
    stats_prom_family(out, "uptime_seconds", "gauge", "Seconds since the proxy started.");
    stats_prom_sample(out, "uptime_seconds", NULL, NULL, (uint64_t)stats_uptime());
    stats_prom_rows(out, v);
    stats_prom_family(out, "backend_latency_seconds", "histogram",
                      "Time from queueing a request to reading its reply.");
    for (n = 0; n < srv.nbackends; n++)
        stats_prom_hist(out, "backend_latency_seconds", "backend", srv.backends[n]->cfg.id,
                        &v->b[n]->latency);
    stats_prom_family(out, "command_calls_total", "counter", "Requests per command.");
    for (i = 0; i < ARRAY_LEN(cmd_table); i++)
        if (v->t->cmd[i].calls)
            stats_prom_sample(out, "command_calls_total", "command", cmd_table[i].name,
                              v->t->cmd[i].calls);
    stats_prom_family(out, "command_errors_total", "counter", "Error replies per command.");
    for (i = 0; i < ARRAY_LEN(cmd_table); i++)
        if (v->t->cmd[i].calls)
            stats_prom_sample(out, "command_errors_total", "command", cmd_table[i].name,
                              v->t->cmd[i].errors);
    stats_prom_family(out, "command_latency_seconds", "histogram",
                      "Time from a request's arrival to its complete reply.");
    for (i = 0; i < ARRAY_LEN(cmd_table); i++)
        if (v->t->cmd[i].calls)
            stats_prom_hist(out, "command_latency_seconds", "command", cmd_table[i].name,
                            &v->t->cmd[i].latency);
    stats_view_put(v);
}

/* Which INFO sections ARGV[1..] asks for (none: all). */
static uint8_t stats_info_mask(const struct resp_arg *argv, int64_t argc)
{
    static const struct {
        const char *name; /* section name, any case */
        uint8_t bit;      /* INFO_* */
    } sections[] = {{"server", INFO_SERVER},     {"clients", INFO_CLIENTS},
                    {"memory", INFO_MEMORY},     {"stats", INFO_STATS},
                    {"replication", INFO_REPLICATION}, {"proxy", INFO_PROXY},
                    {"backends", INFO_BACKENDS}, {"keyspace", INFO_KEYSPACE},
                    {"all", INFO_ALL},           {"default", INFO_ALL},
                    {"everything", INFO_ALL}};
    uint8_t mask = 0;
    int64_t i;
    size_t j;

    if (argc < 2)
        return INFO_ALL;
    for (i = 1; i < argc; i++)
        for (j = 0; j < ARRAY_LEN(sections); j++)
            if (cmd_argeq(&argv[i], sections[j].name))
                mask |= sections[j].bit;
    return mask;
}


/* The first TCP port the proxy listens on (INFO's tcp_port), or 0. */
static unsigned stats_tcp_port(void)
{
    int i;

    for (i = 0; i < srv.cfg->nlistens; i++) {
        const struct sockaddr_storage *sa = &srv.cfg->listens[i].sa;
        if (sa->ss_family == AF_INET)
            return ntohs(((const struct sockaddr_in *)sa)->sin_port);
        if (sa->ss_family == AF_INET6)
            return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    return 0;
}


/* The INFO fields of every proxy row in SECTION. */
static void stats_info_rows(struct buf *out, const struct stats_view *v, int section)
{
#define STATS_INFO_C(name, sect, info, help)                                      \
    if (INFO_##sect == section)                                                   \
        buf_printf(out, "%s:%llu\r\n", (const char *)(info), /* NULL: never in INFO */ \
                   (unsigned long long)v->t->st.name);
#define STATS_INFO_G(name, metric, sect, info, help, value)                       \
    if (INFO_##sect == section)                                                   \
        buf_printf(out, "%s:%llu\r\n", (const char *)(info), (unsigned long long)(value));
    STATS_PROXY(STATS_INFO_C, STATS_INFO_G)
#undef STATS_INFO_C
#undef STATS_INFO_G
}

/* The backends' INFO replies (REPLIES[0..N), a failed one skipped) as one
 * text: what the Memory and Keyspace sections sum. */
struct stats_ask {
    struct req *const *replies; /* the INFO children, each with its reply */
    uint32_t n;                 /* entries in replies */
};

/* The number after "\r\nFIELD:" in the INFO text T[0..N), 0 if absent. */
static uint64_t stats_info_field(const char *t, size_t n, const char *field)
{
    size_t flen = strlen(field), i;

    for (i = 0; i + flen + 3 < n; i++)
        if (t[i] == '\n' && !memcmp(t + i + 1, field, flen) && t[i + 1 + flen] == ':')
            return strtoull(t + i + 2 + flen, NULL, 10);
    return 0;
}

/* The text of INFO reply R (a bulk string, or RESP3 verbatim "txt:"), or
 * NULL when the backend failed. */
static const char *stats_info_text(const struct buf *r, size_t *n)
{
    const char *p = r->data + r->r, *nl;

    if (buf_len(r) < 4 || (p[0] != '$' && p[0] != '='))
        return NULL;
    nl = memchr(p, '\n', buf_len(r));
    if (!nl)
        return NULL;
    *n = (size_t)(p + buf_len(r) - (nl + 1));
    return nl + 1;
}

/* Bytes as Redis's bytesToHuman writes them: "1.50M". */
static void stats_human(char *out, size_t len, uint64_t n)
{
    static const char unit[] = "BKMGTP";
    double d = (double)n;
    int u = 0;

    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%lluB", (unsigned long long)n);
    else
        snprintf(out, len, "%.2f%c", d, unit[u]);
}

/* # Server: Redis's fields, the version the lowest among the backends. */
static void stats_info_server(struct buf *out)
{
    static const char api[] =
#if defined(EVENTS_EPOLL)
        "epoll";
#elif defined(EVENTS_KQUEUE)
        "kqueue";
#else
        "poll";
#endif
    struct timeval tv;

    gettimeofday(&tv, NULL);
    buf_printf(out, "# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\n"
                    "arch_bits:%d\r\nmultiplexing_api:%s\r\nprocess_id:%ld\r\n"
                    "tcp_port:%u\r\nserver_time_usec:%lld\r\nuptime_in_seconds:%lld\r\n"
                    "uptime_in_days:%lld\r\n\r\n",
               backend_version(), (int)sizeof(void *) * 8, api, (long)getpid(), stats_tcp_port(),
               (long long)tv.tv_sec * 1000000 + tv.tv_usec, stats_uptime(),
               stats_uptime() / 86400);
}

/* # Memory: the backends' used_memory and maxmemory summed. */
static void stats_info_memory(struct buf *out, const struct stats_ask *ask)
{
    uint64_t used = 0, peak = 0, max = 0;
    char human[32], peak_human[32];
    uint32_t i;

    for (i = 0; i < ask->n; i++) {
        size_t n;
        const char *t = stats_info_text(&ask->replies[i]->reply, &n);
        if (!t)
            continue;
        used += stats_info_field(t, n, "used_memory");
        peak += stats_info_field(t, n, "used_memory_peak");
        max += stats_info_field(t, n, "maxmemory");
    }
    stats_human(human, sizeof human, used);
    stats_human(peak_human, sizeof peak_human, peak);
    buf_printf(out, "# Memory\r\nused_memory:%llu\r\nused_memory_human:%s\r\n"
                    "used_memory_peak:%llu\r\nused_memory_peak_human:%s\r\nmaxmemory:%llu\r\n\r\n",
               (unsigned long long)used, human, (unsigned long long)peak, peak_human,
               (unsigned long long)max);
}

/* # Keyspace: the backends' "dbN:keys=K,expires=E,avg_ttl=T" lines summed
 * per database (avg_ttl weighted by the keys with a TTL). */
static void stats_info_keyspace(struct buf *out, const struct stats_ask *ask)
{
    size_t ndb = (size_t)srv.cfg->databases;
    uint64_t *keys = xcalloc(ndb * 2, sizeof *keys), *expires = keys + ndb;
    double *ttl = xcalloc(ndb, sizeof *ttl);
    uint32_t i;
    size_t db;

    for (i = 0; i < ask->n; i++) {
        size_t n, at;
        const char *t = stats_info_text(&ask->replies[i]->reply, &n);
        for (at = 0; t && at < n; at++) {
            unsigned long long k, e, a;
            char line[160]; /* the line, NUL-terminated for sscanf: the reply is not */
            size_t len = 0;
            int d;
            if ((at > 0 && t[at - 1] != '\n') || t[at] != 'd')
                continue;
            while (at + len < n && t[at + len] != '\r' && len < sizeof line - 1)
                len++;
            memcpy(line, t + at, len);
            line[len] = '\0';
            if (sscanf(line, "db%d:keys=%llu,expires=%llu,avg_ttl=%llu", &d, &k, &e, &a) != 4 ||
                d < 0 || (size_t)d >= ndb)
                continue;
            keys[d] += k;
            expires[d] += e;
            ttl[d] += (double)a * (double)e;
        }
    }
    buf_printf(out, "# Keyspace\r\n");
    for (db = 0; db < ndb; db++)
        if (keys[db])
            buf_printf(out, "db%zu:keys=%llu,expires=%llu,avg_ttl=%llu\r\n", db,
                       (unsigned long long)keys[db], (unsigned long long)expires[db],
                       (unsigned long long)(expires[db] ? ttl[db] / (double)expires[db] : 0));
    buf_printf(out, "\r\n");
    free(keys);
    free(ttl);
}

/* INFO's text for the sections in MASK, in Redis's order and format; ASK
 * holds the backends' INFO replies when MASK needs them. */
static void stats_info_render(struct buf *out, uint8_t mask, const struct stats_ask *ask)
{
    struct stats_view view, *v = &view;
    int i;

    stats_view_get(v);
    if (mask & INFO_SERVER)
        stats_info_server(out);
    if (mask & INFO_CLIENTS) {
        buf_printf(out, "# Clients\r\n");
        stats_info_rows(out, v, INFO_CLIENTS);
        buf_printf(out, "maxclients:%llu\r\n\r\n", (unsigned long long)client_limit());
    }
    if (mask & INFO_MEMORY)
        stats_info_memory(out, ask);
    if (mask & INFO_STATS) {
        buf_printf(out, "# Stats\r\n");
        stats_info_rows(out, v, INFO_STATS);
        buf_printf(out, "\r\n");
    }
    if (mask & INFO_REPLICATION)
        buf_printf(out, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
    if (mask & INFO_PROXY) {
        buf_printf(out, "# Proxy\r\nshardproxy_version:%s\r\nworkers:%llu\r\nbackends:%d\r\n"
                        "databases:%llu\r\n",
                   SHARDPROXY_VERSION, (unsigned long long)v->workers, srv.nbackends,
                   (unsigned long long)srv.cfg->databases);
        stats_info_rows(out, v, INFO_PROXY);
        buf_printf(out, "\r\n");
    }
    if (mask & INFO_BACKENDS) {
        buf_printf(out, "# Backends\r\n");
        for (i = 0; i < srv.nbackends; i++) {
            const struct backend *b = srv.backends[i];
            buf_printf(out, "backend%d:id=%s,addr=%s,", i, b->cfg.id, b->cfg.addr);
            stats_backend_line(out, b, v->b[i], 1);
            buf_printf(out, "\r\n");
        }
        buf_printf(out, "\r\n");
    }
    if (mask & INFO_KEYSPACE)
        stats_info_keyspace(out, ask);
    if (out->w > out->r + 2)
        out->w -= 2; /* Redis leaves no blank line after the last section */
    stats_view_put(v);
}

/* The INFO reply of parent P once every backend answered its INFO: their
 * versions refreshed, then the text in the client's protocol. */
static void stats_info_merge(struct req *p)
{
    struct buf text = {0, 0, 0, 0};
    struct stats_ask ask;
    uint32_t i;

    ask.replies = p->child;
    ask.n = p->nchild;
    for (i = 0; i < p->nchild; i++) {
        size_t n;
        const char *t = stats_info_text(&p->child[i]->reply, &n);
        if (t)
            bconn_version(p->child[i]->backend, t - 2, n + 2); /* from the "\r\n" before */
    }
    stats_info_render(&text, p->info_sections, &ask);
    enc_text(&p->reply, text.data ? text.data : "", buf_len(&text), p->proto);
    buf_free(&text);
}

/* ======================================================= local commands */
/* local_: PING, ECHO, HELLO, AUTH, CLIENT, INFO, SELECT, QUIT. */

/* Redis's rule for client names: printable, no blanks. */
static int local_valid_name(const struct resp_arg *name)
{
    size_t i;

    for (i = 0; i < name->len; i++)
        if (name->p[i] < '!' || name->p[i] > '~')
            return 0;
    return 1;
}

#define LOCAL_BADNAME "ERR Client names cannot contain spaces, newlines or special characters."

#define LOCAL_WRONGPASS "-WRONGPASS invalid username-password pair or user is disabled.\r\n"

/* Compare a password with SECRET in time that depends only on the
 * password's length, not on where the first difference is. */
static int local_secret_eq(const struct resp_arg *pw, const char *secret)
{
    size_t slen = strlen(secret), i;
    unsigned char diff = (unsigned char)(pw->len != slen);

    for (i = 0; i < pw->len; i++)
        diff |= (unsigned char)(pw->p[i] ^ secret[slen ? i % slen : 0]);
    return diff == 0;
}

/* AUTH [user] pass, as the default user: with no password configured any
 * password passes (Redis's nopass user); else one of them must match, all
 * being compared so timing tells nothing.  Sets c->auth on success. */
static int local_auth(struct client *c, const struct resp_arg *user, const struct resp_arg *pw)
{
    int ok = srv.cfg->npasswords == 0, i;

    for (i = 0; i < srv.cfg->npasswords; i++)
        ok |= local_secret_eq(pw, srv.cfg->passwords[i]);
    if (user && !(user->len == 7 && !memcmp(user->p, "default", 7)))
        ok = 0;
    if (ok)
        c->auth = srv.cfg->npasswords ? AUTH_PASSED : AUTH_OPEN;
    return ok;
}

/* HELLO's reply: the proxy described the way Redis describes itself, in
 * the client's protocol. */
static void local_hello_reply(const struct call *k)
{
    struct buf b = {0, 0, 0, 0};
    const char *ver = backend_version();

    enc_map(&b, 7, k->c->proto);
    enc_bulk(&b, "server", 6);
    enc_bulk(&b, "redis", 5);
    enc_bulk(&b, "version", 7);
    enc_bulk(&b, ver, strlen(ver));
    enc_bulk(&b, "proto", 5);
    buf_printf(&b, ":%d\r\n", k->c->proto);
    enc_bulk(&b, "id", 2);
    buf_printf(&b, ":%llu\r\n", (unsigned long long)k->c->id);
    enc_bulk(&b, "mode", 4);
    enc_bulk(&b, "standalone", 10);
    enc_bulk(&b, "role", 4);
    enc_bulk(&b, "master", 6);
    enc_bulk(&b, "modules", 7);
    enc_array(&b, 0);
    reply_local(k, b.data, buf_len(&b));
    buf_free(&b);
}

/* HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 or RESP3 from
 * here on (the client's requests then use that protocol's pools). */
static void local_hello(const struct call *k)
{
    struct client *c = k->c;
    const struct resp_arg *argv = k->argv;
    int64_t argc = k->argc;
    int64_t ver = c->proto, i;
    const struct resp_arg *setname = NULL, *auth = NULL;

    if (argc >= 2 && (resp_parse_ll(argv[1].p, argv[1].len, &ver) != 0)) {
        reply_error(k, "ERR Protocol version is not an integer or out of range");
        return;
    }
    if (ver != 2 && ver != 3) {
        reply_local_str(k, "-NOPROTO unsupported protocol version\r\n");
        return;
    }
    for (i = 2; i < argc; i++) {
        if (cmd_argeq(&argv[i], "auth") && i + 2 < argc) {
            auth = &argv[i + 1];
            i += 2;
        } else if (cmd_argeq(&argv[i], "setname") && i + 1 < argc) {
            setname = &argv[++i];
        } else {
            reply_error(k, "ERR Syntax error in HELLO option '%.*s'", (int)MIN(argv[i].len, 64),
                         argv[i].p);
            return;
        }
    }
    if (auth && !local_auth(c, &auth[0], &auth[1])) {
        reply_local_str(k, LOCAL_WRONGPASS);
        return;
    }
    if (c->auth == AUTH_NONE) {
        reply_local_str(k, "-NOAUTH HELLO must be called with the client already "
                            "authenticated, otherwise the HELLO AUTH <user> <pass> "
                            "option can be used to authenticate the client and select the "
                            "RESP protocol version at the same time\r\n");
        return;
    }
    if (setname && !local_valid_name(setname)) {
        reply_error(k, LOCAL_BADNAME);
        return;
    }
    if (setname) {
        free(c->name);
        c->name = setname->len ? xstrndup(setname->p, setname->len) : NULL;
    }
    c->proto = (uint8_t)ver;
    bconn_watch_follow(c);
    local_hello_reply(k);
}

/* X's line of CLIENT LIST and CLIENT INFO, in Redis 7.0's format and
 * field order.  What the proxy has no notion of is Redis's value for a
 * client without it (sub=0, user=default, redir=-1); the memory fields are
 * the proxy's own buffers for X. */
static void local_client_line(struct buf *b, const struct client *x)
{
    size_t qbuf = buf_len(&x->in), multi_mem = x->txn ? x->txn->q.cap : 0;
    size_t omem = buf_len(&x->out) + x->held;
    char laddr[128], flags[8];
    int nf = 0;

    if (x->sub && x->sub->monitor) /* Redis's letters, in its order */
        flags[nf++] = 'O';
    if (client_subscribed(x))
        flags[nf++] = 'P';
    if (x->txn)
        flags[nf++] = 'x';
    if (!nf)
        flags[nf++] = 'N';
    flags[nf] = '\0';
    client_laddr(x, laddr, sizeof laddr);
    buf_printf(b,
               "id=%llu addr=%s laddr=%s fd=%d name=%s age=%llu idle=%llu flags=%s db=%u "
               "sub=%zu psub=%zu ssub=%zu multi=%lld qbuf=%zu qbuf-free=%zu argv-mem=0 "
               "multi-mem=%zu rbs=%zu rbp=0 obl=0 oll=%u omem=%zu tot-mem=%zu events=%s "
               "cmd=%s user=default redir=-1 resp=%u\n",
               (unsigned long long)x->id, x->addr, laddr, x->fd, x->name ? x->name : "",
               (unsigned long long)((srv.now_us - x->created_us) / 1000000),
               (unsigned long long)((srv.now_us - x->last_us) / 1000000), flags,
               (unsigned)x->db, x->sub ? x->sub->chan.n : 0, x->sub ? x->sub->pat.n : 0,
               x->sub ? x->sub->shard.n : 0, x->txn ? (long long)x->txn->n : -1LL, qbuf, x->in.cap - qbuf,
               multi_mem, x->out.cap, (unsigned)x->npending, omem,
               sizeof *x + x->in.cap + x->out.cap + multi_mem + x->held,
               buf_len(&x->out) ? "rw" : "r", x->last_cmd ? x->last_cmd->name : "NULL",
               (unsigned)x->proto);
}

/* Kinds of client CLIENT LIST / KILL's TYPE filter names. */
enum local_type {
    TYPE_ANY = 1, /* no TYPE filter */
    TYPE_NORMAL,  /* not subscribed (a MONITOR client is one, as in Redis) */
    TYPE_PUBSUB,  /* subscribed to something */
    TYPE_NONE     /* master, replica, slave: kinds no client of the proxy is */
};

/* The kind TYPE names (enum local_type), or -1 with the error replied. */
static int local_client_type(const struct call *k, const struct resp_arg *type)
{
    if (cmd_argeq(type, "normal"))
        return TYPE_NORMAL;
    if (cmd_argeq(type, "pubsub"))
        return TYPE_PUBSUB;
    if (cmd_argeq(type, "master") || cmd_argeq(type, "replica") || cmd_argeq(type, "slave"))
        return TYPE_NONE;
    reply_error(k, "ERR Unknown client type '%.*s'", (int)MIN(type->len, 64), type->p);
    return -1;
}

/* Is client X of kind TYPE (enum local_type)? */
static int local_client_is(const struct client *x, int type)
{
    return type == TYPE_ANY || (type == TYPE_NORMAL && !client_subscribed(x)) ||
           (type == TYPE_PUBSUB && client_subscribed(x));
}

/* The oldest client of this process: CLIENT LIST walks from it, as Redis
 * lists its clients in the order they connected (srv.clients is newest
 * first). */
static struct client *local_client_oldest(void)
{
    struct client *x = srv.clients;

    while (x && x->next)
        x = x->next;
    return x;
}

/* CLIENT LIST [TYPE type] [ID id ...]: this process's clients (with
 * several workers, those of the worker serving the connection). */
static void local_client_list(const struct call *k)
{
    const struct resp_arg *argv = k->argv;
    struct buf text = {0, 0, 0, 0}, b = {0, 0, 0, 0};
    const struct client *x;
    int64_t i, id;
    int type = TYPE_ANY;

    if (k->argc == 4 && cmd_argeq(&argv[2], "type")) {
        if ((type = local_client_type(k, &argv[3])) < 0)
            return;
    } else if (k->argc >= 4 && cmd_argeq(&argv[2], "id")) {
        for (i = 3; i < k->argc; i++)
            if (resp_parse_ll(argv[i].p, argv[i].len, &id) != 0 || id <= 0) {
                reply_error(k, "ERR Invalid client ID");
                return;
            }
    } else if (k->argc != 2) {
        reply_error(k, "ERR syntax error");
        return;
    }
    for (x = local_client_oldest(); x; x = x->prev) {
        int want = local_client_is(x, type) && (k->argc < 4 || cmd_argeq(&argv[2], "type"));
        for (i = 3; !want && i < k->argc; i++)
            want = resp_parse_ll(argv[i].p, argv[i].len, &id) == 0 && (uint64_t)id == x->id;
        if (want)
            local_client_line(&text, x);
    }
    enc_text(&b, text.data ? text.data : "", buf_len(&text), k->c->proto);
    reply_local(k, b.data, buf_len(&b));
    buf_free(&text);
    buf_free(&b);
}

/* The filters of CLIENT KILL <filter> <value> ...: which clients go. */
struct local_kill {
    uint64_t id;                /* ID: only this client (0: any) */
    const struct resp_arg *addr;  /* ADDR: peer address, or NULL */
    const struct resp_arg *laddr; /* LADDR: local address, or NULL */
    int skipme;                 /* SKIPME yes (the default): never the caller */
    int type;                   /* TYPE: enum local_type */
    uint64_t maxage_s;          /* MAXAGE: only clients older than this (0: any) */
};

/* Parse CLIENT KILL's filters into F.  Returns 0, or -1 with the error
 * replied, Redis's for each wrong filter. */
static int local_kill_filters(const struct call *k, struct local_kill *f)
{
    const struct resp_arg *argv = k->argv;
    int64_t i, v;

    memset(f, 0, sizeof *f);
    f->skipme = 1;
    f->type = TYPE_ANY;
    if (k->argc % 2 != 0) {
        reply_error(k, "ERR syntax error");
        return -1;
    }
    for (i = 2; i < k->argc; i += 2) {
        const struct resp_arg *val = &argv[i + 1];
        if (cmd_argeq(&argv[i], "id")) {
            if (resp_parse_ll(val->p, val->len, &v) != 0 || v <= 0) {
                reply_error(k, "ERR client-id should be greater than 0");
                return -1;
            }
            f->id = (uint64_t)v;
        } else if (cmd_argeq(&argv[i], "addr")) {
            f->addr = val;
        } else if (cmd_argeq(&argv[i], "laddr")) {
            f->laddr = val;
        } else if (cmd_argeq(&argv[i], "skipme") && (cmd_argeq(val, "yes") || cmd_argeq(val, "no"))) {
            f->skipme = cmd_argeq(val, "yes");
        } else if (cmd_argeq(&argv[i], "type")) {
            if ((f->type = local_client_type(k, val)) < 0)
                return -1;
        } else if (cmd_argeq(&argv[i], "user")) {
            if (!cmd_argeq(val, "default")) {
                reply_error(k, "ERR No such user '%.*s'", (int)MIN(val->len, 64), val->p);
                return -1;
            }
        } else if (cmd_argeq(&argv[i], "maxage")) {
            if (resp_parse_ll(val->p, val->len, &v) != 0 || v < 0) {
                reply_error(k, "ERR syntax error");
                return -1;
            }
            f->maxage_s = (uint64_t)v;
        } else {
            reply_error(k, "ERR syntax error");
            return -1;
        }
    }
    return 0;
}

/* Does address text S equal argument A? */
static int local_addr_is(const char *s, const struct resp_arg *a)
{
    return strlen(s) == a->len && !memcmp(s, a->p, a->len);
}

/* Does client X pass filters F (asked by ME)? */
static int local_kill_match(const struct local_kill *f, const struct client *x,
                            const struct client *me)
{
    char laddr[128];

    if (!local_client_is(x, f->type) || (f->skipme && x == me) || (f->id && f->id != x->id) ||
        (f->addr && !local_addr_is(x->addr, f->addr)) ||
        (f->maxage_s && (srv.now_us - x->created_us) / 1000000 <= f->maxage_s))
        return 0;
    if (!f->laddr)
        return 1;
    client_laddr(x, laddr, sizeof laddr);
    return local_addr_is(laddr, f->laddr);
}

/* CLIENT KILL addr:port (answers +OK, or "No such client") or CLIENT KILL
 * with filters (answers how many were closed).  Clients of this process
 * only; the caller itself is closed after its reply, as in Redis. */
static void local_client_kill(const struct call *k)
{
    struct client *c = k->c, *x, *next;
    struct local_kill f;
    struct resp_arg old;
    long long n = 0;

    if (k->argc == 3) { /* the old form: one address, the caller included */
        old = k->argv[2];
        memset(&f, 0, sizeof f);
        f.addr = &old;
        f.type = TYPE_ANY;
    } else if (local_kill_filters(k, &f) < 0) {
        return;
    }
    for (x = srv.clients; x; x = next) {
        next = x->next; /* client_close moves X to the dead list */
        if (!local_kill_match(&f, x, c))
            continue;
        n++;
        if (x == c)
            c->state = CLIENT_CLOSING;
        else
            client_close(x, "CLIENT KILL");
    }
    if (k->argc != 3) {
        char num[32];
        snprintf(num, sizeof num, ":%lld\r\n", n);
        reply_local_str(k, num);
    } else if (n)
        reply_local_str(k, "+OK\r\n");
    else
        reply_error(k, "ERR No such client");
}

/* CLIENT REPLY ON|OFF|SKIP: OFF drops every reply from now on (its own
 * too), SKIP that of the next command (and its own), ON answers +OK. */
static void local_client_reply(const struct call *k)
{
    struct client *c = k->c;
    const struct resp_arg *mode = &k->argv[2];

    if (cmd_argeq(mode, "on")) {
        c->reply_off = c->mute = 0;
        reply_local_str(k, "+OK\r\n");
    } else if (cmd_argeq(mode, "off")) {
        c->reply_off = 1;
        c->mute = MUTE_OFF;
    } else if (cmd_argeq(mode, "skip")) {
        c->reply_skip = 1;
        c->mute = MUTE_SKIP;
    } else {
        reply_error(k, "ERR syntax error");
    }
}

/* CLIENT SETINFO attr value, validated as Redis 7.2 does. */
static void local_client_setinfo(const struct call *k)
{
    const struct resp_arg *argv = k->argv;

    if (!cmd_argeq(&argv[2], "lib-name") && !cmd_argeq(&argv[2], "lib-ver"))
        reply_error(k, "ERR Unrecognized option '%.*s'", (int)MIN(argv[2].len, 64), argv[2].p);
    else if (!local_valid_name(&argv[3]))
        reply_error(k, "ERR %s cannot contain spaces, newlines or special characters.",
                    cmd_argeq(&argv[2], "lib-name") ? "lib-name" : "lib-ver");
    else
        reply_local_str(k, "+OK\r\n");
}

/* CLIENT SETNAME / GETNAME / ID / INFO / LIST / KILL / REPLY / SETINFO /
 * NO-EVICT / NO-TOUCH. */
static void local_client(const struct call *k)
{
    struct client *c = k->c;
    const char *sub = k->cmd->name + sizeof "client|" - 1;
    const struct resp_arg *argv = k->argv;
    struct buf b = {0, 0, 0, 0}, text = {0, 0, 0, 0};

    if (!strcmp(sub, "id")) {
        buf_printf(&b, ":%llu\r\n", (unsigned long long)c->id);
    } else if (!strcmp(sub, "getname")) {
        if (c->name)
            enc_bulk(&b, c->name, strlen(c->name));
        else
            enc_null(&b, c->proto);
    } else if (!strcmp(sub, "setname")) {
        if (!local_valid_name(&argv[2])) {
            reply_error(k, LOCAL_BADNAME);
            return;
        }
        free(c->name);
        c->name = argv[2].len ? xstrndup(argv[2].p, argv[2].len) : NULL;
        buf_append_str(&b, "+OK\r\n");
    } else if (!strcmp(sub, "info")) {
        local_client_line(&text, c);
        enc_text(&b, text.data, buf_len(&text), c->proto);
        buf_free(&text);
    } else if (!strcmp(sub, "no-evict") || !strcmp(sub, "no-touch")) {
        /* accepted: the proxy evicts no client, and which keys a client
         * touches is the backends' business on shared connections */
        if (cmd_argeq(&argv[2], "on") || cmd_argeq(&argv[2], "off"))
            buf_append_str(&b, "+OK\r\n");
        else
            enc_error(&b, "ERR syntax error");
    } else if (!strcmp(sub, "list")) {
        local_client_list(k);
    } else if (!strcmp(sub, "kill")) {
        local_client_kill(k);
    } else if (!strcmp(sub, "reply")) {
        local_client_reply(k);
    } else {
        local_client_setinfo(k);
    }
    if (buf_len(&b))
        reply_local(k, b.data, buf_len(&b));
    buf_free(&b);
}

/* INFO [section ...]: Redis's sections, the proxy's own, and what is summed
 * over the backends (memory, keyspace; their versions), which waits for
 * their INFO. */
static void local_info(const struct call *k)
{
    static const char ask[] = "*4\r\n$4\r\nINFO\r\n$6\r\nserver\r\n$6\r\nmemory\r\n"
                              "$8\r\nkeyspace\r\n";
    uint8_t mask = stats_info_mask(k->argv, k->argc);
    struct buf b = {0, 0, 0, 0};

    if (mask & INFO_ASK) {
        buf_append(&b, ask, sizeof ask - 1);
        route_fanout(k, MERGE_INFO, &b, mask);
    } else {
        struct buf text = {0, 0, 0, 0};
        stats_info_render(&text, mask, NULL);
        enc_text(&b, text.data ? text.data : "", buf_len(&text), k->c->proto);
        reply_local(k, b.data, buf_len(&b));
        buf_free(&text);
    }
    buf_free(&b);
}

/* SELECT n: any database below `databases`; the client's requests then use
 * the backends' pools for it.  A backend pinned to a database by db= has
 * no other, so then only 0 (meaning that one) is accepted. */
static void local_select(const struct call *k)
{
    int64_t db;
    int i;

    if (resp_parse_ll(k->argv[1].p, k->argv[1].len, &db) != 0) {
        reply_error(k, "ERR value is not an integer or out of range");
        return;
    }
    if (db < 0 || (uint64_t)db >= srv.cfg->databases) {
        reply_error(k, "ERR DB index is out of range");
        return;
    }
    for (i = 0; db > 0 && i < srv.nbackends; i++)
        if (srv.backends[i]->cfg.db > 0) {
            reply_error(k, "ERR DB index is out of range (backend %s is pinned to db %lld)",
                        srv.backends[i]->cfg.id, (long long)srv.backends[i]->cfg.db);
            return;
        }
    k->c->db = (uint32_t)db;
    bconn_watch_follow(k->c);
    reply_local_str(k, "+OK\r\n");
}

/* Commands the proxy answers itself. */
static void local_call(const struct call *k)
{
    struct client *c = k->c;
    const struct resp_arg *argv = k->argv;
    int64_t argc = k->argc;
    struct buf b = {0, 0, 0, 0};
    const char *name = k->cmd->name;

    if (!strcmp(name, "ping")) {
        if (argc > 2) {
            reply_error(k, "ERR wrong number of arguments for 'ping' command");
        } else if (c->proto == 2 && client_subscribed(c)) { /* Redis's subscribed form */
            buf_append_str(&b, "*2\r\n$4\r\npong\r\n");
            enc_bulk(&b, argc == 2 ? argv[1].p : "", argc == 2 ? argv[1].len : 0);
        } else if (argc == 2)
            enc_bulk(&b, argv[1].p, argv[1].len);
        else
            buf_append_str(&b, "+PONG\r\n");
    } else if (!strcmp(name, "echo")) {
        enc_bulk(&b, argv[1].p, argv[1].len);
    } else if (!strcmp(name, "quit")) {
        buf_append_str(&b, "+OK\r\n");
        c->state = CLIENT_CLOSING;
    } else if (!strcmp(name, "select")) {
        local_select(k);
    } else if (!strcmp(name, "hello")) {
        local_hello(k);
    } else if (!strcmp(name, "multi")) {
        c->txn = xcalloc(1, sizeof *c->txn);
        c->txn->backend = client_watching(c) && !c->watch->backend->retired
                              ? c->watch->backend->index /* EXEC runs there */
                              : -1;
        c->txn->cfg_gen = srv.cfg_gen;
        buf_append_str(&b, "+OK\r\n");
    } else if (!strcmp(name, "reset")) {
        /* what of Redis's RESET the proxy holds: a transaction, the name,
         * and the authentication, which must be proven again */
        client_txn_end(c);
        client_watch_end(c, 0);
        client_sub_free(c); /* unsubscribes all and ends MONITOR: its connections close */
        free(c->name);
        c->name = NULL;
        c->proto = 2;
        /* RESET turns CLIENT REPLY OFF off (and so is answered), but not a
         * SKIP that covers this very command, as Redis's does */
        c->reply_off = c->reply_skip = 0;
        c->mute &= MUTE_SKIP;
        c->db = 0;
        if (srv.cfg->npasswords)
            c->auth = AUTH_NONE;
        buf_append_str(&b, "+RESET\r\n");
    } else if (!strcmp(name, "unwatch")) {
        route_unwatch(k);
    } else if (!strcmp(name, "watch")) {
        route_watch(k);
    } else if (!strcmp(name, "wait")) {
        route_wait(k);
    } else if (!strcmp(name, "publish")) { /* where the channel's subscribers are */
        route_forward(k, route_backend(srv.cfg, argv[1].p, argv[1].len));
    } else if (!strcmp(name, "subscribe") || !strcmp(name, "psubscribe") ||
               !strcmp(name, "ssubscribe")) {
        sub_subscribe(k, sub_kind_of(name));
    } else if (!strcmp(name, "unsubscribe") || !strcmp(name, "punsubscribe") ||
               !strcmp(name, "sunsubscribe")) {
        sub_unsubscribe(k, sub_kind_of(name));
    } else if (!strcmp(name, "monitor")) {
        sub_monitor(k);
    } else if (!strcmp(name, "exec") || !strcmp(name, "discard")) {
        reply_error(k, "ERR %s without MULTI", !strcmp(name, "exec") ? "EXEC" : "DISCARD");
    } else if (!strcmp(name, "auth")) {
        if (argc > 3)
            reply_error(k, "ERR syntax error");
        else if (argc == 2 && srv.cfg->npasswords == 0)
            reply_error(k, "ERR AUTH <password> called without any password configured for "
                            "the default user. Are you sure your configuration is correct?");
        else if (local_auth(c, argc == 3 ? &argv[1] : NULL, &argv[argc - 1]))
            buf_append_str(&b, "+OK\r\n");
        else
            reply_local_str(k, LOCAL_WRONGPASS);
    } else if (!strcmp(name, "info")) {
        local_info(k);
    } else {
        local_client(k);
    }
    if (buf_len(&b))
        reply_local(k, b.data, buf_len(&b));
    buf_free(&b);
}

/* ================================================= reading and dispatch */
/* input_: read, frame, look up, check, hand to routing. */

/* Make sure the routing scratch space fits a request of RAWLEN bytes with up
 * to ARGC arguments. */
static void input_scratch(size_t argc, size_t rawlen)
{
    if (argc > srv.argv_cap) {
        srv.argv_cap = MAX(argc, srv.argv_cap * 2);
        srv.argv = xrealloc(srv.argv, sizeof *srv.argv * srv.argv_cap);
        srv.keypos = xrealloc(srv.keypos, sizeof *srv.keypos * (srv.argv_cap * 3 + 1));
    }
    if (rawlen > srv.scratch_cap) {
        srv.scratch_cap = MAX(rawlen, srv.scratch_cap * 2);
        srv.scratch = xrealloc(srv.scratch, srv.scratch_cap);
    }
}

/* Quote an unknown command and its first arguments for the error reply, the
 * way Redis does ("'a' 'b' "), capped in length. */
static void input_unknown(const struct call *k)
{
    const struct resp_arg *argv = k->argv;
    char args[160];
    size_t o = 0;
    int64_t i;

    args[0] = '\0';
    for (i = 1; i < k->argc && o < 128; i++) {
        int n = snprintf(args + o, sizeof args - o, "'%.*s' ", (int)MIN(argv[i].len, 128 - o),
                         argv[i].p);
        if (n < 0 || (size_t)n >= sizeof args - o)
            break;
        o += (size_t)n;
    }
    reply_error(k, "ERR unknown command '%.*s', with args beginning with: %s",
                (int)MIN(argv[0].len, 128), argv[0].p, args);
    if (log_threshold >= LOG_DEBUG) {
        char esc[160];
        log_at(LOG_DEBUG, "client %llu %s: unknown command '%s'", (unsigned long long)k->c->id,
               k->c->addr, log_escape(argv[0].p, argv[0].len, esc, sizeof esc));
    }
}

/* Serve a known command with the right number of arguments by its kind. */
static void input_route(const struct call *k)
{
    const struct command *cmd = k->cmd;

    switch ((enum cmd_kind)cmd->kind) {
    case CMD_ONE: {
        const struct resp_arg *key = &k->argv[cmd->specs[0].start]; /* arity checked */
        assert(cmd->specs[0].start < k->argc);
        route_forward(k, route_backend(srv.cfg, key->p, key->len));
        break;
    }
    case CMD_SPLIT:
        route_split(k);
        break;
    case CMD_SAME:
        route_same(k);
        break;
    case CMD_LOCAL:
        local_call(k);
        break;
    case CMD_ANY:
    case CMD_CONTAINER: /* only bare COMMAND passes the arity check */
        route_any(k);
        break;
    case CMD_ALL:
        route_all(k);
        break;
    case CMD_REFUSE:
        reply_error(k, "ERR '%s' is not supported by the proxy", cmd->name);
        break;
    }
}

/* A request of C was rejected before it could be queued: inside MULTI,
 * EXEC then aborts the transaction, as Redis's does. */
static void input_txn_flag(struct client *c)
{
    if (c->txn)
        c->txn->dirty = 1;
}

/* Where call K, inside a transaction, must run: the backend all its keys
 * map to (BI), or -1 when it has none.  Returns 0, or -1 when it cannot be
 * queued, with the error replied: keys on two backends (-CROSSSLOT, as
 * Redis Cluster answers at queue time), or a command the proxy answers
 * itself, fans out or does not serve, which have no one backend to run on
 * (PING, ECHO and UNWATCH do run on the transaction's backend, as in Redis). */
static int input_txn_keys(const struct call *k, int *bi)
{
    const struct command *cmd = k->cmd;
    enum cmd_kind kind = (enum cmd_kind)cmd->kind;
    int step = route_split_step(cmd);
    int64_t n = 0;

    *bi = -1;
    if (kind == CMD_ONE) {
        srv.keypos[n++] = cmd->specs[0].start; /* arity checked */
    } else if (!strcmp(cmd->name, "publish")) { /* where the channel's subscribers are */
        srv.keypos[n++] = 1;
    } else if (kind == CMD_SPLIT) {
        if ((k->argc - 1) % step != 0) {
            reply_error(k, "ERR wrong number of arguments for '%s' command", cmd->name);
            return -1;
        }
        for (n = 0; 1 + n * step < k->argc; n++)
            srv.keypos[n] = 1 + n * step;
    } else if (kind == CMD_SAME) {
        if ((n = route_same_keys(k)) < 0) {
            reply_error(k, "ERR wrong number of keys or arguments for '%s' command", cmd->name);
            return -1;
        }
    } else if (kind != CMD_ANY && kind != CMD_CONTAINER && strcmp(cmd->name, "ping") &&
               strcmp(cmd->name, "echo") && strcmp(cmd->name, "unwatch")) {
        reply_error(k, "ERR '%s' cannot be queued in a transaction by the proxy", cmd->name);
        return -1;
    }
    if (n > 0 && (*bi = route_keys_backend(k, n)) < 0)
        return -1;
    return 0;
}

/* Queue call K in C's transaction T, answering +QUEUED, or refuse it
 * with its error and mark T so that EXEC aborts, as Redis does with a
 * command it rejects at queue time.  After a refusal nothing more needs
 * keeping, but later commands are still answered as Redis answers them. */
static void input_txn_queue(const struct call *k, struct txn *t)
{
    size_t before = t->q.w;
    int bi;

    /* T is marked before any reply: a reply past client_output_limit
     * closes the client, and T goes with it */
    if (input_txn_keys(k, &bi) < 0) { /* replied already: look T up again */
        input_txn_flag(k->c);
        return;
    }
    if (bi >= 0 && t->backend >= 0 && t->cfg_gen == srv.cfg_gen && bi != t->backend) {
        t->dirty = 1;
        reply_local_str(k, "-CROSSSLOT Keys in request don't hash to the same backend\r\n");
        return;
    }
    if (bi >= 0 && t->backend < 0) {
        t->backend = bi;
        t->cfg_gen = srv.cfg_gen;
    }
    if (!t->dirty) { /* (a reload in between is left to EXEC, which aborts) */
        if (k->c->parser.inline_req)
            enc_command(&t->q, k->argv, (size_t)k->argc);
        else
            buf_append(&t->q, k->raw, k->rawlen);
        if (buf_len(&t->q) > srv.cfg->max_request_size) {
            t->q.w = before;
            t->dirty = 1;
            reply_error(k, "ERR transaction too large for the proxy: more than "
                           "max_request_size bytes queued");
            return;
        }
        t->n++;
    }
    reply_local_str(k, "+QUEUED\r\n");
}

/* EXEC of C's transaction T: abort it, answer an empty one, or send it to
 * its backend (any backend when no command named a key).  T ends here. */
static void input_exec(const struct call *k, struct txn *t)
{
    struct client *c = k->c;
    int bi = t->backend;

    if (t->dirty)
        reply_local_str(k, "-EXECABORT Transaction discarded because of previous errors.\r\n");
    else if (c->watch_lost)
        reply_error(k, "ERR backend %s unavailable", c->watch_lost);
    else if (client_watching(c) && c->watch->backend->retired) /* reloaded since WATCH */
        reply_local_str(k, "-EXECABORT Transaction discarded: the proxy's configuration was "
                           "reloaded while it was queued\r\n");
    else if (bi >= 0 && t->cfg_gen != srv.cfg_gen)
        reply_local_str(k, "-EXECABORT Transaction discarded: the proxy's configuration was "
                           "reloaded while it was queued\r\n");
    else if (t->n == 0 && !client_watching(c)) /* else the backend says if it holds */
        reply_local_str(k, "*0\r\n");
    else if (bi < 0 && (bi = route_any_backend(c)) < 0)
        reply_error(k, "ERR no backend available");
    else
        route_exec(k, bi, t);
    client_txn_end(c);
    if (client_watching(c)) /* route_exec did not take it to the backend */
        client_watch_end(c, 0);
}

/* Serve a request of a client inside MULTI: queue it, or end the
 * transaction.  What Redis runs at once there rather than queuing (EXEC,
 * DISCARD, MULTI, WATCH, QUIT, RESET) is answered here with Redis's replies. */
static void input_txn(const struct call *k)
{
    struct txn *t = k->c->txn;
    const char *name = k->cmd->name;

    if (!strcmp(name, "exec")) {
        input_exec(k, t);
    } else if (!strcmp(name, "discard")) { /* Redis's DISCARD unwatches too */
        client_txn_end(k->c);
        client_watch_end(k->c, 0);
        reply_local_str(k, "+OK\r\n");
    } else if (!strcmp(name, "quit") || !strcmp(name, "reset")) {
        local_call(k);
    } else if (!strcmp(name, "multi")) {
        reply_error(k, "ERR MULTI calls can not be nested");
    } else if (!strcmp(name, "watch")) {
        reply_error(k, "ERR WATCH inside MULTI is not allowed");
    } else {
        input_txn_queue(k, t);
    }
}

/* Commands a client that has not passed AUTH may still send. */
static int input_preauth_ok(const struct command *cmd)
{
    return !strcmp(cmd->name, "auth") || !strcmp(cmd->name, "hello") ||
           !strcmp(cmd->name, "quit") || !strcmp(cmd->name, "reset");
}

/* Known command K was rejected before it could run, with Redis's error ERR
 * (no leading '-').  Inside MULTI that aborts the transaction at EXEC; a
 * rejected EXEC ends it at once with Redis's EXECABORT naming why (which
 * drops an "ERR " code, as Redis's does). */
static void input_reject(const struct call *k, const char *err)
{
    if (!strcmp(k->cmd->name, "exec")) { /* in MULTI or not, as Redis's execCommandAbort */
        reply_error(k, "EXECABORT Transaction discarded because of: %s",
                    strncmp(err, "ERR ", 4) ? err : err + 4);
        client_txn_end(k->c);
        if (client_watching(k->c)) /* as Redis's aborted EXEC, it unwatches */
            client_watch_end(k->c, 0);
        return;
    }
    reply_error(k, "%s", err);
    input_txn_flag(k->c);
}

/* Must call K wait until everything its client asked before is answered?
 * A blocking command, WATCH and WAIT must: on a connection of their own
 * they would overtake them, where Redis runs a client's commands in order
 * (and WAIT must come after the writes it waits for).  So must what
 * changes the client's subscriptions or MONITOR (sub_changes). */
static int input_defer(const struct call *k)
{
    uint64_t ms;

    /* only CMD_SAME rows block, and WATCH is CMD_LOCAL: GET and the like
     * pass after one comparison */
    if (k->cmd && k->c->head && k->c->sub && !strcmp(k->cmd->name, "reset"))
        return 1; /* in MULTI too: it closes the stream connections */
    return k->cmd && k->c->head && !k->c->txn &&
           (k->cmd->kind == CMD_SAME || k->cmd->kind == CMD_LOCAL) &&
           cmd_arity_ok(k->cmd, k->argc) &&
           (cmd_blocks(k->cmd, k->argv, k->argc, &ms) || !strcmp(k->cmd->name, "watch") ||
            !strcmp(k->cmd->name, "wait") || !strcmp(k->cmd->name, "monitor") ||
            (sub_changes(k->cmd) && (strcmp(k->cmd->name, "reset") || k->c->sub)));
}

/* Serve one framed request of C at RAW[0..RAWLEN).  Returns 1 when it must
 * wait (input_defer): nothing of it was done, it is parsed again later. */
static int input_dispatch(struct client *c, const char *raw, size_t rawlen)
{
    struct call k;

    input_scratch(c->parser.inline_req ? rawlen / 2 + 2 : (size_t)c->parser.argc, rawlen);
    k.c = c;
    k.cmd = NULL;
    k.raw = raw;
    k.rawlen = rawlen;
    k.argc = resp_req_args(&c->parser, raw, srv.argv, srv.argv_cap, srv.scratch);
    k.argv = srv.argv;
    c->mute = (uint8_t)((c->reply_off ? MUTE_OFF : 0) | (c->reply_skip ? MUTE_SKIP : 0));
    if (k.argc < 0) {
        srv.st->protocol_errors++;
        reply_error(&k, "ERR Protocol error: unbalanced quotes in request");
        c->state = CLIENT_CLOSING;
        return 0;
    }
    if (k.argc == 0)
        return 0;
    k.cmd = cmd_find(k.argv[0].p, k.argv[0].len);
    if (input_defer(&k))
        return 1;
    c->reply_skip = 0;
    srv.st->commands++;
    if (k.cmd && k.cmd->kind == CMD_CONTAINER && k.argc > 1) {
        if (!(k.cmd = cmd_find_sub(k.cmd, &k.argv[1]))) {
            reply_error(&k, "ERR unknown subcommand '%.*s'. Try %.*s HELP.",
                        (int)MIN(k.argv[1].len, 128), k.argv[1].p, (int)MIN(k.argv[0].len, 32),
                        k.argv[0].p);
            input_txn_flag(c);
            return 0;
        }
    }
    if (!k.cmd) {
        input_unknown(&k);
        input_txn_flag(c);
        return 0;
    }
    req_cmd_stats(k.cmd)->calls++;
    c->last_cmd = k.cmd;
    if (!cmd_arity_ok(k.cmd, k.argc)) {
        char err[96];
        snprintf(err, sizeof err, "ERR wrong number of arguments for '%s' command", k.cmd->name);
        input_reject(&k, err);
    } else if (srv.cfg->npasswords && c->auth == AUTH_NONE && !input_preauth_ok(k.cmd)) {
        input_reject(&k, "NOAUTH Authentication required.");
    } else if (c->db >= srv.cfg->databases &&
               (k.cmd->kind != CMD_LOCAL || !strcmp(k.cmd->name, "exec"))) {
        /* a reload lowered `databases` below the one it SELECTed */
        input_reject(&k, "ERR DB index is out of range");
    } else if (c->proto == 2 && client_subscribed(c) && !sub_allowed(k.cmd)) {
        char err[200];
        snprintf(err, sizeof err, "ERR Can't execute '%s': only (P|S)SUBSCRIBE / "
                 "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                 k.cmd->name);
        input_reject(&k, err);
    } else if (c->txn) {
        input_txn(&k);
    } else {
        input_route(&k);
    }
    return 0;
}

/* The limits C's next request must keep.  Before AUTH they are Redis's
 * tighter ones: nobody makes the proxy buffer much unasked. */
static void input_limits(const struct client *c, struct resp_limits *lim)
{
    int locked = srv.cfg->npasswords > 0 && c->auth == AUTH_NONE;

    lim->max_request = locked ? PREAUTH_MAX_REQUEST : srv.cfg->max_request_size;
    lim->max_inline = MAX_INLINE;
    lim->max_args = locked ? PREAUTH_MAX_ARGS : 0;
    lim->max_bulk = locked ? PREAUTH_MAX_BULK : 0;
}

/* A request of C broke the framing: one error reply, then close. */
static void input_protocol_error(struct client *c)
{
    struct call k = {NULL, NULL, NULL, 0, NULL, 0};

    k.c = c;
    srv.st->protocol_errors++;
    log_at(LOG_INFO, "client %llu %s: protocol error: %s", (unsigned long long)c->id, c->addr,
           c->parser.err);
    reply_error(&k, "ERR Protocol error: %s", c->parser.err);
    c->state = CLIENT_CLOSING;
}

/* Frame and serve every complete request in DATA[0..LEN).  OWN says DATA is
 * c->in; otherwise it is the shared read buffer and any partial request left
 * over is copied into c->in.  Stops at client_max_pending. */
static void input_process(struct client *c, const char *data, size_t len, int own)
{
    struct resp_limits lim;
    size_t pos = 0;

    c->throttled = 0;
    while (pos < len && c->state == CLIENT_OPEN) {
        enum resp_result rc;
        if (c->npending >= srv.cfg->client_max_pending || client_blocked(c)) {
            c->throttled = 1;
            break;
        }
        input_limits(c, &lim);
        rc = resp_req_parse(&c->parser, data + pos, len - pos, &lim);
        if (rc == RESP_AGAIN)
            break;
        if (rc == RESP_ERROR) {
            input_protocol_error(c);
            break;
        }
        if (c->parser.argc > 0 && input_dispatch(c, data + pos, c->parser.pos)) {
            resp_req_init(&c->parser); /* a blocking command: parsed again when its turn comes */
            c->throttled = 1;
            break;
        }
        pos += c->parser.pos;
        resp_req_init(&c->parser);
    }
    if (c->state == CLIENT_DEAD)
        return;
    if (c->state != CLIENT_OPEN)
        pos = len; /* nothing after QUIT or a protocol error is read */
    if (pos > 0 || !own)
        c->partial_us = srv.now_us; /* what is left starts a new request */
    if (own)
        buf_consume(&c->in, pos); /* an emptied buffer stays until client_timers frees it */
    else if (pos < len)
        buf_append(&c->in, data + pos, len - pos);
}

/* C is readable.  Between requests bytes land in the shared read buffer and
 * only a partial request is copied into c->in; while a request spans reads,
 * c->in grows towards its declared size. */
static void input_read(struct client *c)
{
    int own = buf_len(&c->in) > 0;
    enum net_result rc;
    size_t n;

    c->last_us = srv.now_us;
    if (own) {
        buf_reserve(&c->in, READ_CHUNK);
        rc = net_read(c->fd, c->in.data + c->in.w, c->in.cap - c->in.w, &n);
    } else {
        rc = net_read(c->fd, srv.rbuf, READ_CHUNK, &n);
    }
    if (rc == NET_OK && c->let_go) {
        /* told EOF already: what it sent after that is not run (it could not be
         * answered), only read, so that closing sends no RST */
        srv.st->bytes_in += n;
    } else if (rc == NET_OK) {
        srv.st->bytes_in += n;
        if (own) {
            c->in.w += n;
            input_process(c, c->in.data + c->in.r, buf_len(&c->in), 1);
        } else {
            input_process(c, srv.rbuf, n, 0);
        }
    } else if (rc == NET_EOF && client_blocked(c)) {
        /* gone while blocked: Redis drops such a client, and so its block, at once */
        client_close(c, "EOF while blocked");
    } else if (rc == NET_EOF) {
        /* what was asked is still answered (half-closed pipes), then close */
        c->state = CLIENT_CLOSING;
        buf_free(&c->in);
        reply_dirty(c);
    } else if (rc == NET_ERR) {
        client_close(c, strerror(errno));
    }
}

/* ======================================================== configuration */
/* config_: directive table, parse, validate, load. */

/* Resolve ADDR (host:port, [v6]:port or an absolute UNIX socket path). */
static int config_resolve(const char *addr, int passive, struct sockaddr_storage *sa,
                          socklen_t *salen, char *err, size_t errlen)
{
    char host[256], *port;
    const char *colon;
    struct addrinfo hints, *res;
    int rc;
    size_t hlen;

    if (addr[0] == '/') {
        struct sockaddr_un *un = (struct sockaddr_un *)sa;
        if (strlen(addr) >= sizeof un->sun_path) {
            snprintf(err, errlen, "UNIX socket path too long (max %zu bytes)",
                     sizeof un->sun_path - 1);
            return -1;
        }
        memset(sa, 0, sizeof *sa);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, addr, strlen(addr) + 1);
        *salen = (socklen_t)sizeof *un;
        return 0;
    }
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "bad address '%s': expected [ipv6]:port", addr);
            return -1;
        }
        hlen = (size_t)(close - addr - 1);
        colon = close + 1;
        addr++;
    } else {
        colon = strrchr(addr, ':');
        if (!colon) {
            snprintf(err, errlen, "bad address '%s': expected host:port", addr);
            return -1;
        }
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= sizeof host) {
        snprintf(err, errlen, "bad host in address");
        return -1;
    }
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    port = (char *)colon + 1;
    {
        int64_t p;
        if (resp_parse_ll(port, strlen(port), &p) != 0 || p < 1 || p > 65535) {
            snprintf(err, errlen, "bad port '%s': expected 1-65535", port);
            return -1;
        }
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Check the shape of an address without resolving it (for --route/--table). */
static int config_check_addr(const char *addr, char *err, size_t errlen)
{
    const char *colon;
    int64_t p;

    if (addr[0] == '/') {
        struct sockaddr_un un;
        if (strlen(addr) < sizeof un.sun_path)
            return 0;
        snprintf(err, errlen, "UNIX socket path too long (max %zu bytes)", sizeof un.sun_path - 1);
        return -1;
    }
    colon = addr[0] == '[' ? strstr(addr, "]:") : strrchr(addr, ':');
    if (colon && addr[0] == '[')
        colon++;
    if (!colon || colon == addr || (addr[0] == '[' && colon == addr + 2) || resp_parse_ll(colon + 1, strlen(colon + 1), &p) != 0 ||
        p < 1 || p > 65535) {
        snprintf(err, errlen, "bad address '%s': expected host:port, [ipv6]:port or /path",
                 addr);
        return -1;
    }
    return 0;
}

/* Parse "123", "64kb", "512mb", "1gb" into bytes. */
static int config_size(const char *s, uint64_t *out)
{
    size_t n = strlen(s), digits = 0;
    uint64_t mult = 1;
    int64_t v;

    while (digits < n && isdigit((unsigned char)s[digits]))
        digits++;
    if (digits < n) {
        const char *u = s + digits;
        if (!strcasecmp(u, "b"))
            mult = 1;
        else if (!strcasecmp(u, "kb") || !strcasecmp(u, "k"))
            mult = 1024;
        else if (!strcasecmp(u, "mb") || !strcasecmp(u, "m"))
            mult = 1024 * 1024;
        else if (!strcasecmp(u, "gb") || !strcasecmp(u, "g"))
            mult = 1024 * 1024 * 1024;
        else
            return -1;
    }
    if (digits == 0 || resp_parse_ll(s, digits, &v) != 0 || (uint64_t)v > UINT64_MAX / mult)
        return -1;
    *out = (uint64_t)v * mult;
    return 0;
}

static int config_need_args(const char *name, int argc, int want, char *err, size_t errlen)
{
    if (argc != want) {
        snprintf(err, errlen, "'%s' takes %d argument%s", name, want - 1, want == 2 ? "" : "s");
        return -1;
    }
    return 0;
}

static int config_parse_number(struct config *c, const void *field, char **argv, int argc,
                               char *err, size_t errlen)
{
    const struct config_directive *d = field;
    int64_t v;

    if (config_need_args(d->name, argc, 2, err, errlen) < 0)
        return -1;
    if (resp_parse_ll(argv[1], strlen(argv[1]), &v) != 0 || v < 0 || (uint64_t)v < d->min ||
        (uint64_t)v > d->max) {
        snprintf(err, errlen, "'%s' wants an integer from %llu to %llu, not '%s'", d->name,
                 (unsigned long long)d->min, (unsigned long long)d->max, argv[1]);
        return -1;
    }
    *(uint64_t *)((char *)c + d->offset) = (uint64_t)v;
    return 0;
}

/* workers N|auto: auto is the number of online CPUs (at most the maximum). */
static int config_parse_workers(struct config *c, const void *field, char **argv, int argc,
                                char *err, size_t errlen)
{
    const struct config_directive *d = field;

    if (argc == 2 && !strcmp(argv[1], "auto")) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n < 1 ? 1 : (uint64_t)MIN(n, (long)d->max);
        return 0;
    }
    return config_parse_number(c, field, argv, argc, err, errlen);
}

/* table_size: a number that must also be prime. */
static int config_parse_table_size(struct config *c, const void *field, char **argv, int argc,
                                   char *err, size_t errlen)
{
    if (config_parse_number(c, field, argv, argc, err, errlen) != 0)
        return -1;
    c->table_size_line = c->line;
    if (!maglev_is_prime(c->table_size)) {
        snprintf(err, errlen, "table_size %llu is not prime (e.g. 65537, 655373, 5000011)",
                 (unsigned long long)c->table_size);
        return -1;
    }
    return 0;
}

/* admin PATH: a UNIX socket path that fits sun_path. */
static int config_parse_admin(struct config *c, const void *field, char **argv, int argc,
                              char *err, size_t errlen)
{
    struct sockaddr_un un;

    UNUSED(field);
    if (config_need_args("admin", argc, 2, err, errlen) < 0)
        return -1;
    if (strlen(argv[1]) >= sizeof un.sun_path) {
        snprintf(err, errlen, "admin socket path too long (max %zu bytes)",
                 sizeof un.sun_path - 1);
        return -1;
    }
    free(c->admin);
    c->admin = xstrndup(argv[1], strlen(argv[1]));
    return 0;
}

/* Set *DST to a copy of the one argument of directive NAME. */
static int config_string(char **dst, const char *name, char **argv, int argc, char *err,
                         size_t errlen)
{
    if (config_need_args(name, argc, 2, err, errlen) < 0)
        return -1;
    free(*dst);
    *dst = xstrndup(argv[1], strlen(argv[1]));
    return 0;
}

/* password SECRET: repeatable, so a password can be rotated. */
static int config_parse_password(struct config *c, const void *field, char **argv, int argc,
                                 char *err, size_t errlen)
{
    UNUSED(field);
    if (config_need_args("password", argc, 2, err, errlen) < 0)
        return -1;
    c->passwords = xrealloc(c->passwords, sizeof *c->passwords * (size_t)(c->npasswords + 1));
    c->passwords[c->npasswords++] = xstrndup(argv[1], strlen(argv[1]));
    return 0;
}

static int config_parse_backend_password(struct config *c, const void *field, char **argv,
                                         int argc, char *err, size_t errlen)
{
    UNUSED(field);
    return config_string(&c->backend_password, "backend_password", argv, argc, err, errlen);
}

static int config_parse_backend_user(struct config *c, const void *field, char **argv, int argc,
                                     char *err, size_t errlen)
{
    UNUSED(field);
    return config_string(&c->backend_user, "backend_user", argv, argc, err, errlen);
}

/* admin_mode: an octal file mode such as 0600 or 660. */
static int config_parse_mode(struct config *c, const void *field, char **argv, int argc,
                             char *err, size_t errlen)
{
    const char *p;
    uint64_t v = 0;

    UNUSED(field);
    if (config_need_args("admin_mode", argc, 2, err, errlen) < 0)
        return -1;
    p = argv[1];
    for (; *p >= '0' && *p <= '7' && v <= 0777; p++)
        v = v * 8 + (uint64_t)(*p - '0');
    if (*p || p == argv[1] || v > 0777) {
        snprintf(err, errlen, "'admin_mode' wants an octal mode such as 0600, not '%s'", argv[1]);
        return -1;
    }
    c->admin_mode = v;
    return 0;
}

static int config_parse_size(struct config *c, const void *field, char **argv, int argc,
                             char *err, size_t errlen)
{
    const struct config_directive *d = field;
    uint64_t v;

    if (config_need_args(d->name, argc, 2, err, errlen) < 0)
        return -1;
    if (config_size(argv[1], &v) != 0 || v < d->min || v > d->max) {
        snprintf(err, errlen, "'%s' wants a size (bytes, kb, mb, gb) from %llu to %llu, not '%s'",
                 d->name, (unsigned long long)d->min, (unsigned long long)d->max, argv[1]);
        return -1;
    }
    *(uint64_t *)((char *)c + d->offset) = v;
    return 0;
}

static int config_parse_bool(struct config *c, const void *field, char **argv, int argc,
                             char *err, size_t errlen)
{
    const struct config_directive *d = field;
    uint64_t *v = (uint64_t *)((char *)c + d->offset);

    if (config_need_args(d->name, argc, 2, err, errlen) < 0)
        return -1;
    if (!strcmp(argv[1], "on") || !strcmp(argv[1], "yes"))
        *v = 1;
    else if (!strcmp(argv[1], "off") || !strcmp(argv[1], "no"))
        *v = 0;
    else {
        snprintf(err, errlen, "'%s' wants on or off, not '%s'", d->name, argv[1]);
        return -1;
    }
    return 0;
}

static int config_parse_log_level(struct config *c, const void *field, char **argv, int argc,
                                  char *err, size_t errlen)
{
    static const char *levels[] = {"error", "warn", "info", "debug"};
    uint64_t i;

    UNUSED(field);
    if (config_need_args("log_level", argc, 2, err, errlen) < 0)
        return -1;
    for (i = 0; i < ARRAY_LEN(levels); i++)
        if (!strcmp(argv[1], levels[i])) {
            c->log_level = i;
            return 0;
        }
    snprintf(err, errlen, "'log_level' wants error, warn, info or debug, not '%s'", argv[1]);
    return -1;
}

static int config_parse_listen(struct config *c, const void *field, char **argv, int argc,
                               char *err, size_t errlen)
{
    struct config_listen *l;
    int i;

    UNUSED(field);
    if (config_need_args("listen", argc, 2, err, errlen) < 0)
        return -1;
    for (i = 0; i < c->nlistens; i++)
        if (!strcmp(c->listens[i].addr, argv[1])) {
            snprintf(err, errlen, "duplicate listen address '%s'", argv[1]);
            return -1;
        }
    c->listens = xrealloc(c->listens, sizeof *c->listens * (size_t)(c->nlistens + 1));
    l = &c->listens[c->nlistens];
    memset(l, 0, sizeof *l);
    l->addr = xstrndup(argv[1], strlen(argv[1]));
    c->nlistens++;
    if (!c->resolve)
        return config_check_addr(l->addr, err, errlen);
    return config_resolve(l->addr, 1, &l->sa, &l->salen, err, errlen);
}

/* One weight=, password=, user=, db= or name= option OPT of backend B. */
static int config_backend_option(struct config_backend *b, const char *opt, char *err,
                                 size_t errlen)
{
    int64_t v;

    if (!strncmp(opt, "weight=", 7)) {
        if (resp_parse_ll(opt + 7, strlen(opt + 7), &v) != 0 || v < 1 || v > 1000000) {
            snprintf(err, errlen, "bad '%s': weight must be an integer from 1 to 1000000", opt);
            return -1;
        }
        b->weight = (uint32_t)v;
    } else if (!strncmp(opt, "password=", 9) && opt[9]) {
        free(b->password);
        b->password = xstrndup(opt + 9, strlen(opt + 9));
    } else if (!strncmp(opt, "user=", 5) && opt[5]) {
        free(b->user);
        b->user = xstrndup(opt + 5, strlen(opt + 5));
    } else if (!strncmp(opt, "db=", 3)) {
        if (resp_parse_ll(opt + 3, strlen(opt + 3), &v) != 0 || v < 0 || v > 1000000) {
            snprintf(err, errlen, "bad '%s': db must be an integer from 0 to 1000000", opt);
            return -1;
        }
        b->db = v;
    } else if (!strncmp(opt, "name=", 5)) {
        if (opt[5] == '\0') {
            snprintf(err, errlen, "empty name=");
            return -1;
        }
        free(b->name);
        b->name = xstrndup(opt + 5, strlen(opt + 5));
    } else {
        snprintf(err, errlen, "unknown or empty backend option '%s' (expected weight=N, "
                 "name=ID, password=SECRET, user=NAME or db=N)", opt);
        return -1;
    }
    return 0;
}

static int config_parse_backend(struct config *c, const void *field, char **argv, int argc,
                                char *err, size_t errlen)
{
    struct config_backend *b;
    int i;

    UNUSED(field);
    if (argc < 2) {
        snprintf(err, errlen, "'backend' takes ADDRESS [weight=N] [name=ID]");
        return -1;
    }
    if (c->nbackends >= MAGLEV_MAX_BACKENDS) {
        snprintf(err, errlen, "too many backends (max %d)", MAGLEV_MAX_BACKENDS);
        return -1;
    }
    c->backends = xrealloc(c->backends, sizeof *c->backends * (size_t)(c->nbackends + 1));
    b = &c->backends[c->nbackends++];
    memset(b, 0, sizeof *b);
    b->addr = xstrndup(argv[1], strlen(argv[1]));
    b->weight = 1;
    b->db = -1;
    b->line = c->line;
    for (i = 2; i < argc; i++)
        if (config_backend_option(b, argv[i], err, errlen) != 0)
            return -1;
    b->id = b->name ? b->name : b->addr;
    for (i = 0; i < c->nbackends - 1; i++)
        if (!strcmp(c->backends[i].id, b->id)) {
            snprintf(err, errlen, "duplicate backend identity '%s'", b->id);
            return -1;
        }
    if (!c->resolve)
        return config_check_addr(b->addr, err, errlen);
    return config_resolve(b->addr, 0, &b->sa, &b->salen, err, errlen);
}

#define CONFIG_FIELD(f) offsetof(struct config, f)

/* Every directive the file may hold. */
static const struct config_directive config_directives[] = {
    {"listen", config_parse_listen, 0, 0, 0, NULL, CONFIG_RESTART},
    {"backend", config_parse_backend, 0, 0, 0, NULL, CONFIG_RELOADS},
    {"hash_tags", config_parse_bool, CONFIG_FIELD(hash_tags), 0, 1, "on", CONFIG_RELOADS},
    {"table_size", config_parse_table_size, CONFIG_FIELD(table_size), 2, MAGLEV_MAX_SIZE,
     "65537", CONFIG_RELOADS},
    {"timeout", config_parse_number, CONFIG_FIELD(timeout_ms), 0, 3600000, "1000",
     CONFIG_RELOADS},
    {"connect_timeout", config_parse_number, CONFIG_FIELD(connect_timeout_ms), 1, 3600000,
     "1000", CONFIG_RELOADS},
    {"backend_connections", config_parse_number, CONFIG_FIELD(backend_connections), 1, 64, "1",
     CONFIG_RELOADS},
    {"databases", config_parse_number, CONFIG_FIELD(databases), 1, DATABASES_MAX, "16",
     CONFIG_RELOADS},
    {"pool_idle_timeout", config_parse_number, CONFIG_FIELD(pool_idle_timeout), 0, 86400,
     "60", CONFIG_RELOADS},
    {"blocking_connections", config_parse_number, CONFIG_FIELD(blocking_connections), 1, 100000,
     "1000", CONFIG_RELOADS},
    {"max_clients", config_parse_number, CONFIG_FIELD(max_clients), 1, 10000000, "10000",
     CONFIG_RELOADS},
    {"client_max_pending", config_parse_number, CONFIG_FIELD(client_max_pending), 1, 10000000,
     "1000", CONFIG_RELOADS},
    {"client_timeout", config_parse_number, CONFIG_FIELD(client_timeout), 0, 100000000, "0",
     CONFIG_RELOADS},
    {"client_output_limit", config_parse_size, CONFIG_FIELD(client_output_limit), 1024,
     UINT64_MAX, "1gb", CONFIG_RELOADS},
    {"client_output_soft_limit", config_parse_size, CONFIG_FIELD(client_output_soft_limit),
     1024, UINT64_MAX, "64mb", CONFIG_RELOADS},
    {"client_output_soft_seconds", config_parse_number,
     CONFIG_FIELD(client_output_soft_seconds), 0, 86400, "60", CONFIG_RELOADS},
    {"shutdown_grace", config_parse_number, CONFIG_FIELD(shutdown_grace_ms), 0, 3600000,
     "5000", CONFIG_RELOADS},
    {"max_request_size", config_parse_size, CONFIG_FIELD(max_request_size), 1024, 4ULL << 30,
     "512mb", CONFIG_RELOADS},
    {"log_level", config_parse_log_level, 0, 0, 0, "info", CONFIG_RELOADS},
    {"admin", config_parse_admin, 0, 0, 0, NULL, CONFIG_RESTART},
    {"admin_mode", config_parse_mode, 0, 0, 0, "0600", CONFIG_RESTART},
    {"password", config_parse_password, 0, 0, 0, NULL, CONFIG_RELOADS},
    {"backend_password", config_parse_backend_password, 0, 0, 0, NULL, CONFIG_RELOADS},
    {"backend_user", config_parse_backend_user, 0, 0, 0, NULL, CONFIG_RELOADS},
    {"backend_db", config_parse_number, CONFIG_FIELD(backend_db), 0, 1000000, "0",
     CONFIG_RELOADS},
    {"workers", config_parse_workers, CONFIG_FIELD(workers), 1, WORKERS_MAX, "1",
     CONFIG_RESTART},
};

static void config_free(struct config *c)
{
    int i;

    if (!c)
        return;
    for (i = 0; i < c->nlistens; i++)
        free(c->listens[i].addr);
    for (i = 0; i < c->nbackends; i++) {
        free(c->backends[i].addr);
        free(c->backends[i].name);
        free(c->backends[i].password);
        free(c->backends[i].user);
    }
    for (i = 0; i < c->npasswords; i++)
        free(c->passwords[i]);
    for (i = 0; i < c->nrestart_lines; i++)
        free(c->restart_lines[i]);
    free(c->restart_lines);
    free(c->passwords);
    free(c->backend_password);
    free(c->backend_user);
    free(c->listens);
    free(c->backends);
    free(c->table);
    if (c->build) { /* a reload superseded before its table was built */
        free(c->build->e);
        free(c->build->owned);
    }
    free(c->build);
    free(c->owned);
    free(c->admin);
    free(c->path);
    free(c);
}

/* Split LINE into blank-separated words in place; with COMMENTS, '#' at the
 * start of a word starts a comment.  Returns the word count, or MAX + 1 if
 * there are more. */
static int config_words(char *line, char **argv, int max, int comments)
{
    int argc = 0;
    char *p = line;

    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p || (comments && *p == '#'))
            return argc;
        if (argc == max)
            return max + 1;
        argv[argc++] = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (*p)
            *p++ = '\0';
    }
}

/* Check cross-directive rules, then build the Maglev table. */
static int config_validate(struct config *c, char *err, size_t errlen)
{
    const char **ids;
    uint32_t *weights;
    int i, rc;

    if (c->nlistens == 0) {
        snprintf(err, errlen, "no 'listen' directive");
        return -1;
    }
    if (c->nbackends == 0) {
        snprintf(err, errlen, "no 'backend' directive");
        return -1;
    }
    if (c->table_size < (uint64_t)c->nbackends) {
        if (c->table_size_line)
            c->line = c->table_size_line;
        snprintf(err, errlen, "table_size %llu is smaller than the number of backends",
                 (unsigned long long)c->table_size);
        return -1;
    }
    for (i = 0; i < c->nbackends; i++) { /* backend_* directives are the defaults */
        struct config_backend *b = &c->backends[i];
        if (!b->password && c->backend_password)
            b->password = xstrndup(c->backend_password, strlen(c->backend_password));
        if (!b->user && c->backend_user)
            b->user = xstrndup(c->backend_user, strlen(c->backend_user));
        if (b->db < 0)
            b->db = (int64_t)c->backend_db;
        if (b->user && !b->password) {
            c->line = b->line;
            snprintf(err, errlen, "backend %s: a user needs a password", b->id);
            return -1;
        }
    }
    ids = xmalloc(sizeof *ids * (size_t)c->nbackends);
    weights = xmalloc(sizeof *weights * (size_t)c->nbackends);
    for (i = 0; i < c->nbackends; i++) {
        ids[i] = c->backends[i].id;
        weights[i] = c->backends[i].weight;
    }
    c->table = xmalloc(sizeof *c->table * c->table_size);
    c->build = xcalloc(1, sizeof *c->build);
    rc = maglev_start(c->build, c->table, (uint32_t)c->table_size, ids, weights, c->nbackends);
    free(ids);
    free(weights);
    if (rc != 0) {
        snprintf(err, errlen, "cannot build the Maglev table");
        return -1;
    }
    return 0;
}

/* Largest config file read. */
#define CONFIG_MAX_FILE (16 * 1024 * 1024)

/* Run directive D on the words ARGV[0..ARGC) of line LINENO (0: its
 * default).  Returns 0, or -1 with "PATH:LINE: reason" in ERR. */
static int config_apply(struct config *c, const struct config_directive *d, char **argv,
                        int argc, long lineno, char *err, size_t errlen)
{
    char why[512];
    int i;

    c->line = lineno;
    if (d->parse(c, d, argv, argc, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s:%ld: %s", c->path, lineno, why);
        return -1;
    }
    if (d->reload == CONFIG_RESTART && lineno > 0) { /* kept for reload to compare */
        struct buf b = {0, 0, 0, 0};
        for (i = 0; i < argc; i++)
            buf_printf(&b, "%s%s", i ? " " : "", argv[i]);
        c->restart_lines = xrealloc(c->restart_lines,
                                    sizeof *c->restart_lines * (size_t)(c->nrestart_lines + 1));
        c->restart_lines[c->nrestart_lines++] = xstrndup(b.data, buf_len(&b));
        buf_free(&b);
    }
    return 0;
}

/* Every directive's default, from the table. */
static int config_defaults(struct config *c, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < ARRAY_LEN(config_directives); i++) {
        const struct config_directive *d = &config_directives[i];
        char *argv[2];
        if (!d->def)
            continue;
        argv[0] = (char *)d->name;
        argv[1] = (char *)d->def;
        if (config_apply(c, d, argv, 2, 0, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* The directive named NAME, or NULL. */
static const struct config_directive *config_find(const char *name)
{
    size_t i;

    for (i = 0; i < ARRAY_LEN(config_directives); i++)
        if (!strcmp(name, config_directives[i].name))
            return &config_directives[i];
    return NULL;
}

/* Parse and validate config TEXT[0..LEN) (named PATH in messages); with
 * RESOLVE, addresses are resolved (without, only their shape is checked:
 * --route and --table need no network).  Returns the config, or NULL with
 * "PATH:LINE: reason" in ERR. */
/* Build a slice (BUDGET slots) of C's Maglev table.  Returns 1 once the
 * table is complete. */
static int config_table_step(struct config *c, uint64_t budget)
{
    if (c->build && maglev_step(c->build, budget)) {
        c->owned = c->build->owned;
        free(c->build);
        c->build = NULL;
    }
    return c->build == NULL;
}

static struct config *config_parse(const char *path, const char *text, size_t len, int resolve,
                                   int table_later, char *err, size_t errlen)
{
    struct config *c = xmalloc(sizeof *c);
    char *line = xmalloc(len + 1), *argv[32], why[512], esc[96];
    const char *p = text, *end = text + len;
    long lineno = 0;
    int argc;

    memset(c, 0, sizeof *c);
    c->path = xstrndup(path, strlen(path));
    c->resolve = resolve;
    if (config_defaults(c, err, errlen) != 0)
        goto fail;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const struct config_directive *d;
        lineno++;
        if (memchr(p, '\0', n)) {
            snprintf(err, errlen, "%s:%ld: NUL byte in line", path, lineno);
            goto fail;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (nl != NULL);
        argc = config_words(line, argv, (int)ARRAY_LEN(argv), 1);
        if (argc == 0)
            continue;
        if (argc > (int)ARRAY_LEN(argv)) {
            snprintf(err, errlen, "%s:%ld: too many words", path, lineno);
            goto fail;
        }
        if (!(d = config_find(argv[0]))) {
            snprintf(err, errlen, "%s:%ld: unknown directive '%s'", path, lineno,
                     log_escape(argv[0], strlen(argv[0]), esc, sizeof esc));
            goto fail;
        }
        if (config_apply(c, d, argv, argc, lineno, err, errlen) != 0)
            goto fail;
    }
    c->line = lineno; /* file-wide problems are reported at its last line */
    if (config_validate(c, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s:%ld: %s", path, c->line, why);
        goto fail;
    }
    if (!table_later)
        config_table_step(c, UINT64_MAX);
    free(line);
    return c;
fail:
    free(line);
    config_free(c);
    return NULL;
}

/* Read the file PATH into TEXT.  Returns 0, or -1 with "PATH: reason" in ERR. */
static int config_read(const char *path, struct buf *text, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    size_t n;
    int rc = -1;

    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    do {
        buf_reserve(text, 65536);
        n = fread(text->data + text->w, 1, text->cap - text->w, f);
        text->w += n;
    } while (n > 0 && buf_len(text) <= CONFIG_MAX_FILE);
    if (ferror(f))
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
    else if (buf_len(text) > CONFIG_MAX_FILE)
        snprintf(err, errlen, "%s: larger than %d bytes", path, CONFIG_MAX_FILE);
    else
        rc = 0;
    fclose(f);
    return rc;
}

/* Read and parse the file PATH; its bytes are left in TEXT (the master
 * hands them to its workers).  Returns the config, or NULL with
 * "PATH:LINE: reason" (or "PATH: reason") in ERR. */
static struct config *config_load_text(const char *path, int resolve, int table_later,
                                       struct buf *text, char *err, size_t errlen)
{
    if (config_read(path, text, err, errlen) < 0)
        return NULL;
    return config_parse(path, text->data ? text->data : "", buf_len(text), resolve, table_later,
                        err, errlen);
}

/* Read and parse the file PATH.  Returns the config, or NULL with the
 * reason in ERR. */
static struct config *config_load(const char *path, int resolve, char *err, size_t errlen)
{
    struct buf text = {0, 0, 0, 0};
    struct config *c = config_load_text(path, resolve, 0, &text, err, errlen);

    buf_free(&text);
    return c;
}

/* =============================================================== reload */
/* reload_: SIGHUP and admin `reload`. */

/* Do configs A and B hold the same lines of restart-only directive D? */
static int reload_same_lines(const struct config *a, const struct config *b,
                             const struct config_directive *d)
{
    size_t n = strlen(d->name);
    int i = 0, j = 0;

    for (;;) {
        while (i < a->nrestart_lines && (strncmp(a->restart_lines[i], d->name, n) ||
                                         a->restart_lines[i][n] != ' '))
            i++;
        while (j < b->nrestart_lines && (strncmp(b->restart_lines[j], d->name, n) ||
                                         b->restart_lines[j][n] != ' '))
            j++;
        if (i == a->nrestart_lines || j == b->nrestart_lines)
            return i == a->nrestart_lines && j == b->nrestart_lines;
        if (strcmp(a->restart_lines[i++], b->restart_lines[j++]))
            return 0;
    }
}

/* Keep what is bound: move the running values of the restart-only
 * directives (listen, admin, admin_mode) from OLD into NEXT, after saying
 * which of them the file changed. */
static void reload_keep_restart_only(struct config *old, struct config *next)
{
    struct config_listen *listens;
    char **lines, *admin;
    uint64_t mode;
    size_t i;
    int n;

    for (i = 0; i < ARRAY_LEN(config_directives); i++)
        if (config_directives[i].reload == CONFIG_RESTART &&
            !reload_same_lines(old, next, &config_directives[i]))
            log_at(LOG_WARN, "reload: '%s' changed; that needs a restart, ignored",
                   config_directives[i].name);
    listens = next->listens, n = next->nlistens;
    next->listens = old->listens, next->nlistens = old->nlistens;
    old->listens = listens, old->nlistens = n;
    admin = next->admin, mode = next->admin_mode;
    next->admin = old->admin, next->admin_mode = old->admin_mode;
    old->admin = admin, old->admin_mode = mode;
    lines = next->restart_lines, n = next->nrestart_lines;
    next->restart_lines = old->restart_lines, next->nrestart_lines = old->nrestart_lines;
    old->restart_lines = lines, old->nrestart_lines = n;
}

/* Make NEXT, a config that loaded, the one in force.  Backends, the Maglev
 * table, timeouts, limits, log_level and passwords take effect for new
 * requests (a reload that turns AUTH on makes clients that never
 * authenticated AUTH first); restart-only directives keep their running
 * values. */
static void reload_apply(struct config *next)
{
    struct config *old = srv.cfg;

    reload_keep_restart_only(old, next);
    backend_apply(next);
    srv.timer_us = 0; /* timeouts may have changed, backends gone: walk every timer */
    srv.cfg = next;
    srv.cfg_gen++;
    sub_check_placement(); /* the new table over the new backends */
    log_threshold = (enum log_level)next->log_level;
    if (next->npasswords > 0 && old->npasswords == 0)
        client_require_auth();
    config_free(old);
    client_limit_check();
    log_at(LOG_INFO, "configuration reloaded from %s: %d backend(s), table_size %llu",
           next->path, next->nbackends, (unsigned long long)next->table_size);
}

/* Build a slice of the pending reload's Maglev table (MAGLEV_STEP_SLOTS
 * slots, a few milliseconds at most), and apply it once complete: the loop
 * keeps serving with the old table meanwhile, so a 5,000,011-slot table
 * costs no pass more than a slice.  A table of at most that many slots (the
 * default's 65537) is built at once: the reload is in force when it is
 * answered. */
static void reload_step(void)
{
    struct config *next = srv.reload_next;

    if (!next || !config_table_step(next, MAGLEV_STEP_SLOTS))
        return;
    srv.reload_next = NULL;
    reload_apply(next);
}

/* Apply NEXT, its table built first across passes if need be
 * (reload_step); a reload still building is superseded by a newer one. */
static void reload_begin(struct config *next)
{
    if (srv.reload_next) {
        log_at(LOG_INFO, "reload: superseded before its table was built");
        config_free(srv.reload_next);
    }
    if (next->table_size <= MAGLEV_STEP_SLOTS) /* a few milliseconds: in force at once */
        config_table_step(next, UINT64_MAX);
    srv.reload_next = next;
    reload_step();
}

/* =============================================================== control */
/* ctl_: the master's control socket to each worker.  The master asks, the
 * worker answers; both ends are in this file, so the format is private:
 *   reload LEN\n<LEN bytes of config text>   ->  LEN\nOK  or  LEN\nERR reason
 *   clients\n                                ->  LEN\n<admin `clients` lines>
 * The master waits for each answer with a deadline (it serves only the
 * admin socket and supervision, so a short wait costs no client anything);
 * a worker answers from its loop, between two passes. */

/* Largest control message: a config file and its header. */
#define CTL_MAX (CONFIG_MAX_FILE + 64)

/* Forward: a worker answers the master's `clients` with the admin
 * command's own lines, and the admin command in the master asks its
 * workers here (ctl_clients), so one of the two must come first. */
static void admin_clients(struct buf *out);

/* A worker: answer the master with PAYLOAD.  The socket blocks: the master
 * is reading, and if it is gone the write fails at once. */
static void ctl_answer(const char *payload, size_t len)
{
    char head[32];
    size_t put;
    int n = snprintf(head, sizeof head, "%zu\n", len);

    if (net_write(srv.ctl_fd, head, (size_t)n, &put) != NET_OK || put != (size_t)n ||
        net_write(srv.ctl_fd, payload, len, &put) != NET_OK || put != len)
        log_at(LOG_WARN, "control: cannot answer the master");
}

/* A worker: act on the master's message at the head of srv.ctl_in, if it
 * is complete.  Returns 1 when one was consumed. */
static int ctl_serve_one(void)
{
    struct buf *in = &srv.ctl_in;
    char *p = in->data + in->r, *nl = memchr(p, '\n', buf_len(in));
    size_t head, len;

    if (!nl)
        return 0;
    head = (size_t)(nl - p) + 1;
    if (head == 8 && !memcmp(p, "clients\n", 8)) {
        struct buf out = {0, 0, 0, 0};
        admin_clients(&out);
        ctl_answer(out.data ? out.data : "", buf_len(&out));
        buf_free(&out);
        buf_consume(in, head);
        return 1;
    }
    if (head > 7 && !memcmp(p, "reload ", 7) && sscanf(p + 7, "%zu", &len) == 1) {
        char err[1024] = "ERR ";
        struct config *next;
        if (buf_len(in) - head < len)
            return 0;
        next = config_parse(srv.cfg->path, p + head, len, 1, 1, err + 4, sizeof err - 4);
        if (next) {
            reload_begin(next);
            ctl_answer("OK", 2);
        } else {
            ctl_answer(err, strlen(err));
        }
        buf_consume(in, head + len);
        return 1;
    }
    log_at(LOG_ERROR, "control: unknown message from the master; closing");
    buf_consume(in, buf_len(in));
    return 0;
}

/* A worker: its control socket is readable.  The master's end closing means
 * the master is gone: the worker drains its clients and exits, so no
 * orphan keeps serving with nobody supervising it. */
static void ctl_read(void)
{
    enum net_result rc;
    size_t n;

    buf_reserve(&srv.ctl_in, 65536);
    rc = net_read(srv.ctl_fd, srv.ctl_in.data + srv.ctl_in.w, srv.ctl_in.cap - srv.ctl_in.w, &n);
    if (rc == NET_OK) {
        srv.ctl_in.w += n;
        while (buf_len(&srv.ctl_in) > 0 && ctl_serve_one())
            ;
        if (buf_len(&srv.ctl_in) > CTL_MAX)
            rc = NET_ERR;
    }
    if (rc == NET_EOF || rc == NET_ERR) {
        log_at(LOG_WARN, "control: the master is gone; draining and exiting");
        fd_release(srv.ctl_fd);
        srv.ctl_fd = -1;
        buf_free(&srv.ctl_in);
        sig_stop = 1;
    }
}

/* The master: wait until FD is ready for EVENTS or DEADLINE_US passes.
 * Returns 1 when ready. */
static int ctl_wait(int fd, short events, uint64_t deadline_us)
{
    struct pollfd p;
    uint64_t now;

    while ((now = clock_now_us()) < deadline_us) {
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        if (poll(&p, 1, (int)((deadline_us - now + 999) / 1000)) > 0)
            return 1;
    }
    return 0;
}

/* The master: send REQ to worker W and read its answer into OUT.
 * Returns 0, or -1 when the worker did not answer in time (or is gone). */
static int ctl_call(struct worker *w, const char *req, size_t len, struct buf *out)
{
    uint64_t deadline = clock_now_us() + CTL_TIMEOUT_MS * 1000ULL;
    size_t done = 0, n, want = SIZE_MAX, head = 0;
    enum net_result rc;

    while (done < len) {
        if (!ctl_wait(w->ctl, POLLOUT, deadline))
            return -1;
        rc = net_write(w->ctl, req + done, len - done, &n);
        if (rc == NET_ERR)
            return -1;
        if (rc == NET_OK)
            done += n;
    }
    while (want == SIZE_MAX || buf_len(out) < head + want) {
        char *nl;
        if (!ctl_wait(w->ctl, POLLIN, deadline))
            return -1;
        buf_reserve(out, 65536);
        rc = net_read(w->ctl, out->data + out->w, out->cap - out->w, &n);
        if (rc == NET_EOF || rc == NET_ERR)
            return -1;
        if (rc == NET_OK)
            out->w += n;
        if (want == SIZE_MAX && (nl = memchr(out->data + out->r, '\n', buf_len(out))) != NULL) {
            if (sscanf(out->data + out->r, "%zu", &want) != 1 || want > CTL_MAX)
                return -1;
            head = (size_t)(nl - (out->data + out->r)) + 1;
        }
    }
    buf_consume(out, head);
    return 0;
}

/* The master: have every running worker apply the config TEXT, already
 * validated here.  A worker that fails or does not answer is killed: it is
 * restarted with the master's config, which is TEXT, so every worker ends
 * up with it.  Returns 0, or -1 with which workers failed in ERR. */
static int ctl_reload(const struct buf *text, char *err, size_t errlen)
{
    struct buf msg = {0, 0, 0, 0}, ans = {0, 0, 0, 0};
    size_t used = 0;
    int i, failed = 0;

    buf_printf(&msg, "reload %zu\n", buf_len(text));
    buf_append(&msg, text->data ? text->data + text->r : "", buf_len(text));
    err[0] = '\0';
    for (i = 0; i < srv.nworkers; i++) {
        struct worker *w = &srv.workers[i];
        if (!w->pid)
            continue; /* it starts with the master's config */
        ans.r = ans.w = 0;
        if (ctl_call(w, msg.data, buf_len(&msg), &ans) == 0 && buf_len(&ans) == 2 &&
            !memcmp(ans.data + ans.r, "OK", 2))
            continue;
        failed = 1;
        log_at(LOG_ERROR, "reload: worker %d did not apply it (%.*s); restarting it", i,
               (int)MIN(buf_len(&ans), 200), buf_len(&ans) ? ans.data + ans.r : "no answer");
        if (used < errlen)
            used += (size_t)snprintf(err + used, errlen - used,
                                     "%sworker %d did not apply it and is restarted",
                                     used ? ", " : "reloaded, but ", i);
        kill((pid_t)w->pid, SIGKILL);
    }
    buf_free(&msg);
    buf_free(&ans);
    return failed ? -1 : 0;
}

/* The master: every running worker's `clients` lines, appended to OUT. */
static void ctl_clients(struct buf *out)
{
    struct buf ans = {0, 0, 0, 0};
    int i;

    for (i = 0; i < srv.nworkers; i++) {
        ans.r = ans.w = 0;
        if (srv.workers[i].pid && ctl_call(&srv.workers[i], "clients\n", 8, &ans) == 0)
            buf_append(out, ans.data ? ans.data + ans.r : "", buf_len(&ans));
    }
    buf_free(&ans);
}

/* SIGHUP and admin `reload`: re-read the config file and apply it without
 * dropping a client (see reload_apply); with workers, the master validates
 * it once and then every worker applies the same bytes.  A config that
 * does not load changes nothing anywhere.  Returns 0, or -1 with the reason
 * in ERR. */
static int reload_config(char *err, size_t errlen)
{
    struct buf text = {0, 0, 0, 0};
    /* the master serves no client: it builds the table at once */
    struct config *next = config_load_text(srv.cfg->path, 1, srv.self >= 0, &text, err, errlen);
    int rc = 0;

    if (!next) {
        log_at(LOG_ERROR, "reload rejected, configuration unchanged: %s", err);
        buf_free(&text);
        return -1;
    }
    reload_begin(next);
    if (srv.self < 0 && ctl_reload(&text, err, errlen) < 0)
        rc = -1;
    buf_free(&text);
    return rc;
}

/* ================================================================ admin */
/* admin_: the admin socket. */

/*
 * The admin socket: a UNIX stream socket (created mode 0600 unless
 * admin_mode says otherwise) taking one command per line, e.g.
 *   echo stats | socat - UNIX-CONNECT:/run/shardproxy.sock
 * It lives in the same poll loop.  Output per connection is bounded: past
 * ADMIN_OUT_MAX unwritten bytes the connection is not read until it drains,
 * so an admin client that never reads costs a bounded amount of memory and
 * nothing on the data path.
 */

static const char admin_help[] =
    "help                 this list\n"
    "stats                the human-readable report (as SIGUSR1 prints it)\n"
    "stats json           the report as one JSON object on one line\n"
    "metrics              Prometheus text exposition format 0.0.4\n"
    "backends             one line per backend: identity, address, weight, state, slots, "
    "connections, inflight\n"
    "route KEY...         the backend each key maps to: IDENTITY ADDRESS SLOT\n"
    "clients              one line per client: id, address, age, idle, pending, unwritten "
    "bytes, name\n"
    "reload               re-read the configuration file and apply it (as SIGHUP)\n"
    "quit                 close this connection\n";

/* Create the admin socket; startup failures are fatal. */
static void admin_listen(void)
{
    const char *path = srv.cfg->admin;
    struct sockaddr_storage ss;
    struct sockaddr_un *un = (struct sockaddr_un *)&ss;
    char err[256];
    int fd;

    srv.admin_fd = -1;
    if (!path)
        return;
    memset(&ss, 0, sizeof ss);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, strlen(path) + 1); /* length checked by the config */
    fd = net_listen(&ss, (socklen_t)sizeof *un, ADMIN_BACKLOG, (unsigned)srv.cfg->admin_mode, 0,
                    err, sizeof err);
    if (fd < 0)
        die("admin %s: %s", path, err);
    if (fd_register(fd, FD_ADMIN_LISTENER, NULL) < 0)
        die("admin %s: descriptor beyond the fd limit", path);
    srv.admin_fd = fd;
    log_at(LOG_INFO, "admin socket on %s (mode %03llo)", path,
           (unsigned long long)srv.cfg->admin_mode);
}

/* Close an admin connection; the struct is freed by admin_reap. */
static void admin_close(struct admin *a)
{
    if (a->fd < 0)
        return;
    fd_release(a->fd);
    a->fd = -1;
    buf_free(&a->in);
    buf_free(&a->out);
}

/* `backends`: each backend's one-line view, as INFO's backends section
 * shows it, with blanks. */
static void admin_backends(struct buf *out)
{
    struct stats_view view;
    int i;

    stats_view_get(&view);
    for (i = 0; i < srv.nbackends; i++) {
        const struct backend *b = srv.backends[i];
        buf_printf(out, "%s %s ", b->cfg.id, b->cfg.addr);
        stats_backend_line(out, b, view.b[i], 0);
        buf_append(out, "\n", 1);
    }
    stats_view_put(&view);
}

/* `clients`: a line per client (the master asks its workers). */
static void admin_clients(struct buf *out)
{
    const struct client *c;

    if (srv.self < 0) {
        ctl_clients(out);
        return;
    }
    for (c = srv.clients; c; c = c->next)
        buf_printf(out, "id %llu addr %s age %llus idle %llus pending %u out %zu name %s\n",
                   (unsigned long long)c->id, c->addr,
                   (unsigned long long)((srv.now_us - c->created_us) / 1000000),
                   (unsigned long long)((srv.now_us - c->last_us) / 1000000), c->npending,
                   buf_len(&c->out), c->name ? c->name : "-");
}

/* Run one command line. */
static void admin_command(struct admin *a, char *line)
{
    char *argv[ADMIN_LINE_MAX / 2 + 1], esc[96];
    int argc = config_words(line, argv, (int)ARRAY_LEN(argv), 0), i;

    if (argc == 0)
        return;
    if (argc > (int)ARRAY_LEN(argv)) {
        buf_printf(&a->out, "ERR too many words\n");
    } else if (!strcmp(argv[0], "help") && argc == 1) {
        buf_append_str(&a->out, admin_help);
    } else if (!strcmp(argv[0], "stats") && argc == 1) {
        stats_write_text(&a->out);
    } else if (!strcmp(argv[0], "stats") && argc == 2 && !strcmp(argv[1], "json")) {
        stats_write_json(&a->out);
    } else if (!strcmp(argv[0], "metrics") && argc == 1) {
        stats_write_metrics(&a->out);
    } else if (!strcmp(argv[0], "backends") && argc == 1) {
        admin_backends(&a->out);
    } else if (!strcmp(argv[0], "route") && argc > 1) {
        for (i = 1; i < argc; i++) {
            uint32_t slot = route_slot(srv.cfg, argv[i], strlen(argv[i]));
            const struct config_backend *b = &srv.cfg->backends[srv.cfg->table[slot]];
            buf_printf(&a->out, "%s %s %u\n", b->id, b->addr, slot);
        }
    } else if (!strcmp(argv[0], "clients") && argc == 1) {
        admin_clients(&a->out);
    } else if (!strcmp(argv[0], "reload") && argc == 1) {
        char why[1024];
        if (reload_config(why, sizeof why) == 0)
            buf_printf(&a->out, "OK reloaded\n");
        else
            buf_printf(&a->out, "ERR %s\n", why);
    } else if (!strcmp(argv[0], "quit") && argc == 1) {
        a->closing = 1;
    } else {
        buf_printf(&a->out, "ERR unknown admin command '%s'\n",
                   log_escape(argv[0], strlen(argv[0]), esc, sizeof esc));
    }
}

/* Run every complete line in a->in while the output stays under its bound. */
static void admin_process(struct admin *a)
{
    while (!a->closing && buf_len(&a->out) <= ADMIN_OUT_MAX && buf_len(&a->in) > 0) {
        char *p = a->in.data + a->in.r, *nl = memchr(p, '\n', buf_len(&a->in));
        size_t n;
        if (!nl) {
            if (buf_len(&a->in) > ADMIN_LINE_MAX) {
                buf_printf(&a->out, "ERR line too long\n");
                a->closing = 1;
            }
            return;
        }
        n = (size_t)(nl - p) + 1;
        *nl = '\0';
        if (nl > p && nl[-1] == '\r')
            nl[-1] = '\0';
        admin_command(a, p);
        buf_consume(&a->in, n);
    }
}

static void admin_read(struct admin *a)
{
    enum net_result rc;
    size_t n;

    buf_reserve(&a->in, 1024);
    rc = net_read(a->fd, a->in.data + a->in.w, a->in.cap - a->in.w, &n);
    if (rc == NET_OK) {
        a->in.w += n;
        admin_process(a);
    } else if (rc == NET_EOF) {
        admin_process(a);
        a->closing = 1; /* answer what was asked, then close */
    } else if (rc == NET_ERR) {
        admin_close(a);
    }
}

/* One write() of the pending replies; then run lines that waited for room. */
static void admin_flush(struct admin *a)
{
    if (buf_len(&a->out) > 0) {
        size_t n;
        enum net_result rc = net_write(a->fd, a->out.data + a->out.r, buf_len(&a->out), &n);
        if (rc == NET_OK) {
            buf_consume(&a->out, n);
        } else if (rc == NET_ERR) {
            admin_close(a);
            return;
        }
    }
    if (buf_len(&a->out) == 0 && a->closing)
        admin_close(a);
    else if (buf_len(&a->out) <= ADMIN_OUT_MAX)
        admin_process(a); /* lines that waited for the output to drain */
}

/* The admin listener accepted FD: a new admin connection, unless there
 * are too many. */
static void admin_accept(int fd, const struct sockaddr_storage *ss)
{
    struct admin *a;

    UNUSED(ss);
    if (fd >= srv.maxfds || srv.nadmins >= ADMIN_MAX_CONNS || net_nonblock(fd) < 0) {
        static const char msg[] = "ERR too many admin connections\n";
        size_t put;
        net_write(fd, msg, sizeof msg - 1, &put); /* best effort */
        close(fd);
        return;
    }
    a = xmalloc(sizeof *a);
    memset(a, 0, sizeof *a);
    a->fd = fd;
    a->next = srv.admins;
    srv.admins = a;
    srv.nadmins++;
    fd_register(fd, FD_ADMIN, a);
}

/* Free closed admin connections (end of a loop pass). */
static void admin_reap(void)
{
    struct admin **pp = &srv.admins, *a;

    while ((a = *pp) != NULL) {
        if (a->fd < 0) {
            *pp = a->next;
            free(a);
            srv.nadmins--;
        } else {
            pp = &a->next;
        }
    }
}

/* At exit: close everything and remove the socket file. */
static void admin_shutdown(void)
{
    struct admin *a;

    for (a = srv.admins; a; a = a->next)
        admin_close(a);
    admin_reap();
    if (srv.admin_fd >= 0) {
        close(srv.admin_fd);
        srv.admin_fd = -1;
        unlink(srv.cfg->admin);
    }
}

/* ============================================================== signals */
/* sig_: handlers only set flags. */

static void sig_handler(int sig)
{
    if (sig == SIGTERM || sig == SIGINT)
        sig_stop = 1;
    else if (sig == SIGUSR1)
        sig_stats = 1;
    else if (sig == SIGHUP)
        sig_hup = 1;
    else if (sig == SIGCHLD)
        sig_child = 1;
}

static void sig_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = sig_handler; /* no SA_RESTART: the event wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

/* =========================================================== event loop */
/* loop_: the event wait, timers, one write per connection per pass. */

/* Bind every listen address; failures are fatal at startup. */
static void loop_listen(void)
{
    const struct config *c = srv.cfg;
    char err[256];
    int i;

    srv.listen_fds = xmalloc(sizeof *srv.listen_fds * (size_t)c->nlistens);
    for (i = 0; i < c->nlistens; i++) {
        const struct config_listen *l = &c->listens[i];
        int fd = net_listen(&l->sa, l->salen, LISTEN_BACKLOG, 0, 0, err, sizeof err);

        if (fd < 0)
            die("listen %s: %s", l->addr, err);
        if (fd_register(fd, FD_LISTENER, NULL) < 0)
            die("listen %s: descriptor beyond the fd limit", l->addr);
        srv.listen_fds[i] = fd;
        log_at(LOG_INFO, "listening on %s", l->addr);
    }
}

/* Close the data listeners (SIGTERM, exit) and remove their socket files. */
static void loop_close_listeners(void)
{
    int i;

    for (i = 0; i < srv.cfg->nlistens; i++) {
        if (srv.listen_fds[i] < 0)
            continue;
        fd_release(srv.listen_fds[i]);
        srv.listen_fds[i] = -1;
        if (srv.cfg->listens[i].addr[0] == '/' && srv.nworkers <= 1) /* else the master's */
            unlink(srv.cfg->listens[i].addr);
    }
}

/* Register FD's interest WANT, which cannot fail for the few descriptors
 * this is used for without the machine being out of memory. */
static void loop_set(int fd, unsigned want)
{
    if (ev_set(fd, want) < 0)
        die("event registration of descriptor %d: %s", fd, strerror(errno));
}

/* Before each wait: the interest of listeners and admin connections,
 * derived from their state (there are few of them; ev_set ignores what did
 * not change).  Clients and backend connections, which can be many, are
 * updated as they change: clients at the end of each pass
 * (client_interest) and here for those something touched since (a reload
 * failing their requests, the start of a drain); the backend connections
 * touched this pass (bconn_touch) here, their timers taken into
 * srv.timer_us on the way. */
static void loop_interest(void)
{
    unsigned accepting = !srv.stopping && srv.now_us >= srv.accept_paused_until ? EV_READ : 0;
    struct admin *a;
    size_t k;
    int i;

    for (k = 0; k < srv.ndirty; k++)
        client_interest(srv.dirty[k]);
    for (i = 0; i < srv.cfg->nlistens; i++)
        if (srv.listen_fds[i] >= 0)
            loop_set(srv.listen_fds[i], accepting);
    for (k = 0; k < srv.ntouched; k++) {
        struct bconn *bc = srv.touched[k];
        if (bc->state == BCONN_CONNECTING)
            loop_set(bc->fd, EV_WRITE);
        else if (bconn_connected(bc))
            loop_set(bc->fd, EV_READ | (buf_len(&bc->out) ? EV_WRITE : 0u));
        srv.timer_us = MIN(srv.timer_us, bconn_next_timer(bc));
        bc->touched = 0;
    }
    srv.ntouched = 0;
    if (srv.admin_fd >= 0)
        loop_set(srv.admin_fd, srv.now_us >= srv.accept_paused_until ? EV_READ : 0);
    if (srv.ctl_fd >= 0)
        loop_set(srv.ctl_fd, EV_READ);
    for (a = srv.admins; a; a = a->next) {
        unsigned want = buf_len(&a->out) ? EV_WRITE : 0;
        if (a->fd < 0)
            continue;
        if (!a->closing && buf_len(&a->out) <= ADMIN_OUT_MAX)
            want |= EV_READ; /* a reader that does not drain its replies is not read */
        loop_set(a->fd, want);
    }
}

/* Milliseconds the wait may sleep: until the earliest timer, at most 1 s. */
static int loop_timeout(void)
{
    uint64_t t;
    size_t k;

    /* the connections touched this pass first: loop_interest folds their
     * timers in too, but only after this is asked (loop_wait's argument) */
    for (k = 0; k < srv.ntouched; k++)
        srv.timer_us = MIN(srv.timer_us, bconn_next_timer(srv.touched[k]));
    t = MIN(srv.now_us + 1000000, srv.timer_us);

    if (srv.publish_due)
        t = MIN(t, srv.published_us + PUBLISH_EVERY_MS * 1000);
    if (srv.reload_next) /* a table to build: no sleeping */
        t = srv.now_us;
    if (srv.accept_paused_until > srv.now_us)
        t = MIN(t, srv.accept_paused_until);
    if (srv.stopping)
        t = MIN(t, srv.stop_deadline_us);
    if (srv.stopping && client_reading()) /* quiet clients are let go, the grace ends */
        t = MIN(t, MIN(srv.now_us + DRAIN_IDLE_MS * 1000, srv.grace_until_us));
    if (buf_len(&srv.report))
        t = MIN(t, srv.now_us + 10000); /* stderr is polled, not waited on */
    return t <= srv.now_us ? 0 : (int)((t - srv.now_us + 999) / 1000);
}

/* Accept what listener LFD has, up to a batch per pass, handing each
 * descriptor to TAKE (client_accept, admin_accept).  Out of descriptors or
 * memory, accepting pauses for ACCEPT_PAUSE_MS instead of spinning on a
 * listener that stays readable. */
static void loop_accept(int lfd, void (*take)(int fd, const struct sockaddr_storage *ss))
{
    int i;

    for (i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        int fd;
        enum net_result rc = net_accept(lfd, &fd, &ss);

        if (rc == NET_AGAIN)
            return;
        if (rc == NET_ERR) {
            if (srv.now_us - srv.accept_warned_us >= 1000000) { /* once a second will do */
                srv.accept_warned_us = srv.now_us;
                log_at(LOG_WARN, "accept: %s; pausing accepts for %d ms", strerror(errno),
                       ACCEPT_PAUSE_MS);
            }
            srv.accept_paused_until = srv.now_us + ACCEPT_PAUSE_MS * 1000;
            return;
        }
        take(fd, &ss);
    }
}

/* SIGUSR1: queue the text report for stderr.  One report at a time; a
 * signal while one is still being written is logged and dropped. */
static void loop_report_start(void)
{
    if (buf_len(&srv.report)) {
        log_at(LOG_WARN, "SIGUSR1: the previous report is still being written; skipped");
        return;
    }
    stats_write_text(&srv.report);
}

/* Write what stderr takes now of the queued report, never blocking the
 * loop on a slow terminal or a full pipe: a chunk of at most PIPE_BUF bytes
 * while poll() says stderr is writable (such a write fits a pipe at once). */
static void loop_report_flush(void)
{
    struct pollfd p;

    if (!srv.report.data)
        return; /* nothing queued: the common case, once per pass */
    while (buf_len(&srv.report)) {
        size_t n;
        enum net_result rc;

        p.fd = STDERR_FILENO;
        p.events = POLLOUT;
        p.revents = 0;
        if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
            return;
        rc = net_write(STDERR_FILENO, srv.report.data + srv.report.r,
                       MIN(buf_len(&srv.report), (size_t)REPORT_CHUNK), &n);
        if (rc == NET_AGAIN)
            return;
        if (rc == NET_ERR) { /* stderr is gone: nothing to report to */
            buf_free(&srv.report);
            return;
        }
        buf_consume(&srv.report, n);
    }
    buf_free(&srv.report);
}

/* Handle events MASK (EV_READ | EV_WRITE | EV_ERR) of descriptor FD.  An
 * event of a descriptor closed earlier in the pass, or closed and reused
 * for a new connection since the wait, is not the current owner's: skip. */
static void loop_event(int fd, unsigned mask)
{
    struct fdref *ref = &srv.fds[fd];

    if (ref->type == FD_NONE || ref->pass == srv.pass)
        return;
    if (ref->type == FD_LISTENER) {
        if (mask & EV_READ)
            loop_accept(fd, client_accept);
    } else if (ref->type == FD_BACKEND) {
        struct bconn *bc = ref->ptr;
        bconn_touch(bc); /* whatever happens, its interest and timers are looked at again */
        if (bc->state == BCONN_CONNECTING) {
            bconn_connect_done(bc);
        } else if (bconn_connected(bc)) {
            if (mask & (EV_READ | EV_ERR))
                bconn_read(bc);
            if (bconn_connected(bc) && (mask & EV_WRITE))
                bconn_flush(bc);
        }
    } else if (ref->type == FD_ADMIN_LISTENER) {
        loop_accept(fd, admin_accept);
    } else if (ref->type == FD_CONTROL) {
        ctl_read();
    } else if (ref->type == FD_ADMIN) {
        struct admin *a = ref->ptr;
        if (mask & (EV_READ | EV_ERR))
            admin_read(a);
        if (a->fd >= 0)
            admin_flush(a);
    } else if (ref->type == FD_CLIENT) {
        struct client *c = ref->ptr;
        reply_dirty(c); /* whatever happens, its interest is looked at again */
        if ((mask & (EV_READ | EV_ERR)) && c->state == CLIENT_OPEN)
            input_read(c);
        else if ((mask & EV_ERR) && buf_len(&c->out) == 0)
            client_close(c, "connection lost"); /* nothing to read or write: gone */
        if (c->state != CLIENT_DEAD && (mask & EV_WRITE))
            reply_flush(c);
    }
}

/* Parse what throttled client C left unread, if it may go on now. */
static void loop_resume(struct client *c)
{
    if (c->state == CLIENT_OPEN && c->throttled && !client_blocked(c) && client_reading() &&
        c->npending < srv.cfg->client_max_pending)
        input_process(c, c->in.data + c->in.r, buf_len(&c->in), 1);
}

/* End of a pass: resume throttled clients, then one write per backend
 * connection and per client with output, registering what each client
 * waits for now; then free closed clients. */
static void loop_flush(void)
{
    struct client *c;
    size_t i;

    for (i = 0; i < srv.ndirty; i++)
        loop_resume(srv.dirty[i]);
    for (i = 0; i < srv.ntouched; i++) /* a failed write may touch more: they are flushed too */
        bconn_flush(srv.touched[i]);
    for (i = 0; i < srv.ndirty; i++) {
        c = srv.dirty[i];
        loop_resume(c); /* made dirty by a backend write that failed just now */
        c->dirty = 0;
        if (c->state != CLIENT_DEAD)
            reply_flush(c);
        client_interest(c);
    }
    srv.ndirty = 0;
    while ((c = srv.dead) != NULL) {
        srv.dead = c->next;
        client_free(c);
    }
    admin_reap();
    backend_reap();
    if (srv.now_us - srv.published_us >= PUBLISH_EVERY_MS * 1000)
        backend_publish(); /* a walk over every connection: not on every pass */
    else
        srv.publish_due = 1; /* but an idle process must not sit on stale gauges */
}

/* SIGTERM: stop accepting and reading; finish what is in flight. */
static void loop_begin_stop(void)
{
    log_at(LOG_INFO, "shutting down: draining %llu client(s)", (unsigned long long)srv.nclients);
    srv.stopping = 1;
    srv.grace_until_us = srv.now_us + srv.cfg->shutdown_grace_ms * 1000;
    srv.stop_deadline_us = srv.grace_until_us +
                           (srv.cfg->timeout_ms ? srv.cfg->timeout_ms * 1000 + 100000
                                                : SHUTDOWN_GRACE_MS * 1000ULL);
    loop_close_listeners();
}

/* Is C, owed nothing, between requests and quiet for DRAIN_IDLE_MS (a
 * client mid-burst is not), so that it can be let go? */
static int loop_idle(const struct client *c)
{
    char b;

    /* nothing arrived unread either: a request that came in since the wait
     * would be dropped, and its client told EOF instead of answered (the
     * socket is non-blocking: no data is EAGAIN) */
    return c->state == CLIENT_OPEN && !c->head && buf_len(&c->out) == 0 &&
           buf_len(&c->in) == 0 && !client_subscribed(c) && !c->txn && !client_watching(c) &&
           srv.now_us - c->last_us >= DRAIN_IDLE_MS * 1000 &&
           recv(c->fd, &b, 1, MSG_PEEK) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* While stopping.  During shutdown_grace every client is served as usual,
 * and one that goes quiet between requests is let go: its write side shut
 * (it reads EOF, and an event-driven client reconnects, through the load
 * balancer, to another proxy before its next request), its socket read
 * until it closes it, so that closing sends no RST.  A subscriber is let go
 * at once, between messages.  After the grace, nothing more is read: every
 * client owed nothing is closed, the others once answered.  Returns 1 when
 * no client remains. */
static int loop_drained(void)
{
    struct client *c, *next;
    int grace = client_reading();

    if (!grace && !srv.grace_over) { /* nobody is read any more: interests change */
        srv.grace_over = 1;
        for (c = srv.clients; c; c = c->next)
            reply_dirty(c);
    }
    for (c = srv.clients; c; c = next) {
        next = c->next;
        if (!grace && !c->head && buf_len(&c->out) == 0) {
            client_close(c, "shutdown");
        } else if (grace && !c->let_go && (loop_idle(c) || (client_subscribed(c) &&
                                                          !c->head && !buf_len(&c->out)))) {
            c->let_go = 1;
            shutdown(c->fd, SHUT_WR);
            client_streams_drop(c); /* no more messages: it was told EOF */
        }
    }
    return srv.clients == NULL;
}

/* Act on the signal flags at the top of a pass: SIGTERM starts the drain
 * (BEGIN_STOP: the loop's own, or the master's), SIGUSR1 queues the
 * report, SIGHUP reloads (not while draining). */
static void loop_signals(void (*begin_stop)(void))
{
    srv.now_us = clock_now_us();
    if (sig_stop && !srv.stopping)
        begin_stop();
    if (sig_stats) {
        sig_stats = 0;
        loop_report_start();
    }
    loop_report_flush();
    if (sig_hup && !srv.stopping) {
        char why[1024];
        sig_hup = 0;
        reload_config(why, sizeof why); /* logs either way */
    }
}

/* Register interest, wait up to TIMEOUT_MS, dispatch what fired. */
static void loop_wait(int timeout_ms)
{
    int n, i;

    loop_interest();
    srv.pass++;
    n = ev_wait(timeout_ms);
    srv.now_us = clock_now_us();
    for (i = 0; i < n; i++)
        loop_event(ev.fired[i].fd, ev.fired[i].mask);
}

/* The backend connections' timers, when the earliest is due: every
 * connection is walked then, and srv.timer_us is set to the next earliest
 * (at most a second away, so a timer nothing touched into it is late by a
 * second at worst). */
static void loop_timers(void)
{
    uint64_t next = srv.now_us + 1000000;
    struct bconn *bc;
    int i, j;

    if (srv.now_us < srv.timer_us)
        return;
    for (i = 0; i < srv.nall; i++)
        for (j = 0; (bc = bconn_nth(srv.all[i], j)) != NULL; j++) {
            bconn_timers(bc);
            next = MIN(next, bconn_next_timer(bc));
        }
    srv.timer_us = next;
}

static void loop_run(void)
{
    srv.now_us = clock_now_us();
    for (;;) {
        loop_signals(loop_begin_stop);
        if (srv.stopping && (loop_drained() || srv.now_us >= srv.stop_deadline_us))
            break;
        loop_wait(loop_timeout());
        reload_step();
        loop_timers();
        client_timers();
        loop_flush();
    }
    log_at(LOG_INFO, "exiting");
}

/* Free everything, so leak checkers see a clean exit. */
static void loop_cleanup(void)
{
    struct req *r;
    int i;

    while (srv.clients)
        client_close(srv.clients, "exit");
    loop_flush();
    config_free(srv.reload_next); /* a reload still building its table */
    srv.reload_next = NULL;
    admin_shutdown();
    loop_close_listeners();
    for (i = 0; i < srv.nall; i++) /* every record first: children span backends */
        backend_drop_inflight(srv.all[i]);
    for (i = 0; i < srv.nall; i++)
        backend_free(srv.all[i]);
    free(srv.touched); /* emptied by backend_free */
    while ((r = srv.free_reqs) != NULL) {
        srv.free_reqs = r->next;
        free(r);
    }
    free(srv.backends);
    free(srv.all);
    free(srv.split_child);
    free(srv.listen_fds);
    free(srv.fds);
    ev_free();
    free(srv.dirty);
    free(srv.rbuf);
    free(srv.argv);
    free(srv.keypos);
    free(srv.scratch);
    buf_free(&srv.report);
    config_free(srv.cfg);
    buf_spare_free();
    if (srv.nworkers <= 1) /* else the shared mapping, which goes with the process */
        free(srv.blocks);
}

/* =============================================================== master */
/* master_: `workers N` -- fork the workers, supervise, reload, stop. */

/*
 * With `workers N` above 1, the process started is a small master: it
 * binds the listen addresses, serves the admin socket and forks N workers,
 * each running the loop above with its own backend connections.  On Linux
 * and FreeBSD each worker has its own listening socket per TCP address
 * (SO_REUSEPORT, the kernel spreads connections); elsewhere, and for UNIX
 * sockets, all share one inherited socket.  A client lives in one worker,
 * so its replies stay in order.  The master's only clients are admin
 * connections; its stats block holds what dead workers counted.
 */

/* Bind every listen address for every worker.  For a TCP address with
 * SO_REUSEPORT, one plain bind first, so that an address another process
 * listens on fails here as it does without workers. */
static void master_listen(void)
{
    const struct config *c = srv.cfg;
    char err[256];
    int i, w;

    srv.listen_fds = xmalloc(sizeof *srv.listen_fds * (size_t)c->nlistens);
    for (w = 0; w < srv.nworkers; w++)
        srv.workers[w].listen_fds = xmalloc(sizeof(int) * (size_t)c->nlistens);
    for (i = 0; i < c->nlistens; i++) {
        const struct config_listen *l = &c->listens[i];
        int each = 0, fd = net_listen(&l->sa, l->salen, LISTEN_BACKLOG, 0, 0, err, sizeof err);

        if (fd < 0)
            die("listen %s: %s", l->addr, err);
#if defined(NET_REUSEPORT)
        each = l->sa.ss_family != AF_UNIX;
#endif
        if (each)
            close(fd); /* the address was free */
        for (w = 0; w < srv.nworkers; w++) {
            if (each && (fd = net_listen(&l->sa, l->salen, LISTEN_BACKLOG, 0, 1, err,
                                         sizeof err)) < 0)
                die("listen %s: %s", l->addr, err);
            srv.workers[w].listen_fds[i] = fd;
        }
        srv.listen_fds[i] = -1; /* the master accepts nothing */
        log_at(LOG_INFO, "listening on %s (%s)", l->addr,
               each ? "a socket per worker" : "one socket shared by the workers");
    }
}

/* The forked child becomes worker W with control socket CTL: drop what is
 * the master's (admin socket, other workers' sockets, its event backend,
 * its name-only backends), take its own listeners, connect, serve; exit
 * when drained. */
static NORETURN void master_become_worker(int w, int ctl)
{
    struct sigaction sa;
    struct admin *a;
    int i, j;

    srv.self = w;
    srv.blk = &srv.blocks[w];
    srv.st = &srv.blk->t.st;
    srv.blk->pid = (long)getpid();
    snprintf(log_tag, sizeof log_tag, "worker %d: ", w);
    ev_free(); /* the master's: closing this copy leaves its registrations alone */
    if (ev_init(srv.maxfds) < 0)
        die("event backend %s: %s", EV_BACKEND, strerror(errno));
    memset(srv.fds, 0, sizeof *srv.fds * (size_t)srv.maxfds);
    for (a = srv.admins; a; a = a->next)
        if (a->fd >= 0)
            close(a->fd);
    while ((a = srv.admins) != NULL) {
        srv.admins = a->next;
        buf_free(&a->in);
        buf_free(&a->out);
        free(a);
    }
    srv.nadmins = 0;
    if (srv.admin_fd >= 0)
        close(srv.admin_fd); /* not unlinked: the master still serves it */
    srv.admin_fd = -1;
    for (i = 0; i < srv.nworkers; i++) {
        if (srv.workers[i].ctl >= 0)
            close(srv.workers[i].ctl);
        for (j = 0; i != w && j < srv.cfg->nlistens; j++)
            if (srv.workers[i].listen_fds[j] != srv.workers[w].listen_fds[j])
                close(srv.workers[i].listen_fds[j]);
    }
    for (j = 0; j < srv.cfg->nlistens; j++) {
        srv.listen_fds[j] = srv.workers[w].listen_fds[j];
        fd_register(srv.listen_fds[j], FD_LISTENER, NULL);
    }
    for (i = 0; i < srv.nworkers; i++)
        free(srv.workers[i].listen_fds);
    free(srv.workers);
    srv.workers = NULL;
    for (i = 0; i < srv.nall; i++)
        backend_free(srv.all[i]);
    free(srv.all);
    free(srv.backends);
    srv.all = srv.backends = NULL;
    srv.nall = srv.nbackends = 0;
    buf_free(&srv.report);
    srv.ctl_fd = ctl;
    fd_register(ctl, FD_CONTROL, NULL);
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN; /* the master reports and reloads for all */
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sig_hup = sig_stats = sig_child = 0;
    backend_apply(srv.cfg);
    log_at(LOG_INFO, "serving, pid %ld", (long)getpid());
    loop_run();
    loop_cleanup();
    exit(0);
}

/* Fork worker W. */
static void master_fork(int w)
{
    struct worker *wk = &srv.workers[w];
    int sv[2];
    pid_t pid;

    wk->restart_us = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || fcntl(sv[0], F_SETFD, FD_CLOEXEC) < 0) {
        log_at(LOG_ERROR, "worker %d: socketpair: %s; retrying", w, strerror(errno));
        wk->restart_us = srv.now_us + WORKER_RESTART_MS * 1000ULL;
        return;
    }
    pid = fork();
    if (pid < 0) {
        log_at(LOG_ERROR, "worker %d: fork: %s; retrying", w, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        wk->restart_us = srv.now_us + WORKER_RESTART_MS * 1000ULL;
        return;
    }
    if (pid == 0) {
        close(sv[0]);
        master_become_worker(w, sv[1]);
    }
    close(sv[1]);
    net_nonblock(sv[0]);
    wk->pid = (long)pid;
    wk->ctl = sv[0];
    wk->started_us = srv.now_us;
    srv.blocks[w].pid = (long)pid;
}

/* Collect dead workers: log why, keep their counters, and (unless
 * stopping) fork a replacement -- at once, or after WORKER_RESTART_MS if it
 * died that soon after starting, so a worker that cannot start does not
 * spin the machine. */
static void master_reap(void)
{
    pid_t pid;
    int status, w;

    sig_child = 0;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct worker *wk = NULL;
        for (w = 0; w < srv.nworkers && !wk; w++)
            if (srv.workers[w].pid == (long)pid)
                wk = &srv.workers[w];
        if (!wk)
            continue;
        w--;
        if (WIFSIGNALED(status))
            log_at(srv.stopping ? LOG_INFO : LOG_ERROR, "worker %d (pid %ld) killed by signal %d",
                   w, (long)pid, WTERMSIG(status));
        else
            log_at(srv.stopping ? LOG_INFO : LOG_ERROR, "worker %d (pid %ld) exited, status %d",
                   w, (long)pid, WEXITSTATUS(status));
        close(wk->ctl);
        wk->ctl = -1;
        wk->pid = 0;
        stats_fold(&srv.blocks[w]);
        if (srv.stopping)
            continue;
        srv.st->worker_restarts++;
        wk->restart_us = srv.now_us + (srv.now_us - wk->started_us < WORKER_RESTART_MS * 1000ULL
                                           ? WORKER_RESTART_MS * 1000ULL
                                           : 0);
    }
}

/* Workers still running. */
static int master_running(void)
{
    int w, n = 0;

    for (w = 0; w < srv.nworkers; w++)
        n += srv.workers[w].pid != 0;
    return n;
}

/* Send SIG to every running worker. */
static void master_signal(int sig)
{
    int w;

    for (w = 0; w < srv.nworkers; w++)
        if (srv.workers[w].pid)
            kill((pid_t)srv.workers[w].pid, sig);
}

/* Close the master's copies of the listening sockets (a shared socket
 * repeats: closed once).  Until then a socket whose worker has stopped
 * would still take connections nobody accepts. */
static void master_close_listeners(void)
{
    int i, j, k;

    for (j = 0; j < srv.cfg->nlistens; j++)
        for (i = 0; i < srv.nworkers; i++) {
            int fd = srv.workers[i].listen_fds[j];
            if (fd < 0)
                continue;
            close(fd);
            for (k = i; k < srv.nworkers; k++)
                if (srv.workers[k].listen_fds[j] == fd)
                    srv.workers[k].listen_fds[j] = -1;
        }
}

/* SIGTERM: every worker drains as a lone process would; the master waits
 * for them (killing what is left at the deadline) and exits 0. */
static void master_begin_stop(void)
{
    log_at(LOG_INFO, "shutting down: draining %d worker(s)", master_running());
    srv.stopping = 1;
    srv.stop_deadline_us = srv.now_us + 2000000 + srv.cfg->shutdown_grace_ms * 1000 +
                           (srv.cfg->timeout_ms ? srv.cfg->timeout_ms * 1000 + 100000
                                                : SHUTDOWN_GRACE_MS * 1000ULL);
    master_signal(SIGTERM);
    master_close_listeners();
}

/* Milliseconds the master may sleep: the loop's bound, or the next restart. */
static int master_timeout(void)
{
    int t = loop_timeout(), w;

    for (w = 0; w < srv.nworkers; w++) {
        uint64_t at = srv.workers[w].restart_us;
        if (at)
            t = MIN(t, at <= srv.now_us ? 0 : (int)((at - srv.now_us + 999) / 1000));
    }
    return t;
}

/* Close what the master holds at exit: listening sockets (and their
 * files), the admin socket, the workers' table. */
static void master_cleanup(void)
{
    int i, j;

    master_close_listeners();
    for (i = 0; i < srv.nworkers; i++)
        free(srv.workers[i].listen_fds);
    for (j = 0; j < srv.cfg->nlistens; j++)
        if (srv.cfg->listens[j].addr[0] == '/')
            unlink(srv.cfg->listens[j].addr);
    free(srv.workers);
    srv.workers = NULL;
    loop_cleanup();
}

/* The master's loop: signals, supervision, admin connections. */
static void master_run(void)
{
    int w;

    srv.workers = xcalloc((size_t)srv.nworkers, sizeof *srv.workers);
    for (w = 0; w < srv.nworkers; w++)
        srv.workers[w].ctl = -1;
    master_listen();
    admin_listen();
    backend_apply(srv.cfg);
    client_limit_check();
    srv.blk->pid = (long)getpid();
    log_at(LOG_INFO, "shardproxy %s started: %d workers, %d backend(s), table_size %llu, pid %ld",
           SHARDPROXY_VERSION, srv.nworkers, srv.nbackends,
           (unsigned long long)srv.cfg->table_size, (long)getpid());
    for (w = 0; w < srv.nworkers; w++)
        master_fork(w);
    for (;;) {
        loop_signals(master_begin_stop);
        master_reap();
        if (srv.stopping && master_running() == 0)
            break;
        if (srv.stopping && srv.now_us >= srv.stop_deadline_us) {
            log_at(LOG_WARN, "shutting down: killing %d worker(s) past the deadline",
                   master_running());
            master_signal(SIGKILL);
            srv.stop_deadline_us = UINT64_MAX;
        }
        for (w = 0; w < srv.nworkers && !srv.stopping; w++)
            if (srv.workers[w].restart_us && srv.now_us >= srv.workers[w].restart_us)
                master_fork(w);
        loop_wait(master_timeout());
        loop_timers(); /* it has no connections: this only moves srv.timer_us on */
        loop_flush();
    }
    log_at(LOG_INFO, "exiting");
    master_cleanup();
}

/* ================================================================= main */
/* Command line, startup. */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shardproxy [-c FILE] [-t] [--route KEY]... [--table] [-V] [-h]\n"
            "  -c FILE      configuration file (default: shardproxy.conf)\n"
            "  -t           check the configuration and exit (0 if OK)\n"
            "  --route KEY  print the backend KEY maps to: NAME ADDRESS SLOT (repeatable)\n"
            "  --table      print the Maglev table: one backend identity per slot\n"
            "  -V           print the version and exit\n"
            "  -h           print this help and exit\n");
}

/* Raise the soft descriptor limit to the hard one and size the fd table. */
static void main_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
            if (rl.rlim_cur > 1048576)
                rl.rlim_cur = 1048576;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        srv.maxfds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576 ? 1048576
                                                                            : (int)rl.rlim_cur;
    } else {
        srv.maxfds = 1024;
    }
    /* zeroed (FD_NONE) pages are touched only as descriptors are used */
    srv.fds = xcalloc((size_t)srv.maxfds, sizeof *srv.fds);
}

/* --route and --table: placement only, no network. */
static int main_print(const struct config *c, char **keys, int nkeys, int table)
{
    uint64_t s;
    int i;

    for (i = 0; i < nkeys; i++) {
        uint32_t slot = route_slot(c, keys[i], strlen(keys[i]));
        const struct config_backend *b = &c->backends[c->table[slot]];
        printf("%s %s %u\n", b->id, b->addr, slot);
    }
    if (table)
        for (s = 0; s < c->table_size; s++)
            printf("%s\n", c->backends[c->table[s]].id);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* What the command line asks for. */
struct main_opts {
    const char *path; /* -c FILE */
    int check;        /* -t */
    char **keys;      /* --route KEY..., ARGC entries allocated */
    int nkeys;        /* entries in keys */
    int table;        /* --table */
};

/* Parse ARGV into O.  Returns -1 to go on, else the exit status (after -V
 * or -h, or 2 for a bad option). */
static int main_args(int argc, char **argv, struct main_opts *o)
{
    int i;

    o->path = "shardproxy.conf";
    o->keys = xmalloc(sizeof *o->keys * (size_t)argc);
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            o->path = argv[++i];
        } else if (!strcmp(argv[i], "-t")) {
            o->check = 1;
        } else if (!strcmp(argv[i], "--route") && i + 1 < argc) {
            o->keys[o->nkeys++] = argv[++i];
        } else if (!strcmp(argv[i], "--table")) {
            o->table = 1;
        } else if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
            printf("shardproxy %s (events: %s, listen: %s)\n", SHARDPROXY_VERSION, EV_BACKEND,
                   NET_SHARING);
            return 0;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "shardproxy: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

/* Run the proxy on config C until SIGTERM has drained it. */
static void main_serve(struct config *c)
{
    srv.cfg = c;
    log_threshold = (enum log_level)c->log_level;
    srv.start_time = time(NULL);
    srv.now_us = clock_now_us();
    srv.rbuf = xmalloc(READ_CHUNK);
    srv.nworkers = (int)c->workers;
    srv.self = srv.nworkers > 1 ? -1 : 0;
    srv.ctl_fd = -1;
    stats_init(srv.nworkers);
    main_fd_limit();
    if (ev_init(srv.maxfds) < 0)
        die("event backend %s: %s", EV_BACKEND, strerror(errno));
    sig_install();
    if (srv.nworkers > 1) {
        master_run();
        return;
    }
    loop_listen();
    admin_listen();
    backend_apply(c);
    client_limit_check();
    log_at(LOG_INFO, "shardproxy %s started: %d backend(s), table_size %llu, pid %ld",
           SHARDPROXY_VERSION, srv.nbackends, (unsigned long long)c->table_size, (long)getpid());
    loop_run();
    loop_cleanup();
}

int main(int argc, char **argv)
{
    struct main_opts o = {NULL, 0, NULL, 0, 0};
    char err[1024];
    struct config *c;
    int rc = main_args(argc, argv, &o);

    if (rc >= 0) {
        free(o.keys);
        return rc;
    }
    cmd_init();
    /* --route and --table need no network; -t resolves, as a start would */
    c = config_load(o.path, o.check || (o.nkeys == 0 && !o.table), err, sizeof err);
    if (!c) {
        fprintf(stderr, "%s\n", err);
        rc = 1;
    } else if (o.check) {
        printf("configuration OK\n");
        config_free(c);
        rc = 0;
    } else if (o.nkeys > 0 || o.table) {
        rc = main_print(c, o.keys, o.nkeys, o.table);
        config_free(c);
    } else {
        free(o.keys);
        main_serve(c);
        return 0;
    }
    free(o.keys);
    return rc;
}
