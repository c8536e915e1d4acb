/* qkvm-nbd: export a disk image over NBD, with qemu-nbd's options.
 *   qkvm-nbd [-f FMT] [-x NAME] [-p PORT] [-b ADDR] [-k SOCKET] [-r] [-s] [-e N] [-t] ... FILE
 *   qkvm-nbd -L [-k SOCKET | -b HOST -p PORT]      list a server's exports (client) */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/block.h"
#include "block/cli.h"
#include "block/snapshot.h"
#include "nbd/nbd.h"
#include "util/parse.h"

#define QKVM_NBD_VERSION "0.1.0"

static struct nbd_server *g_server;
static volatile sig_atomic_t g_signalled;

static void usage(FILE *f)
{
    fprintf(f,
"Usage: qkvm-nbd [OPTION]... FILENAME\n"
"       qkvm-nbd -L [OPTION]...\n"
"Export FILENAME (raw or qcow2) over the Network Block Device protocol.\n\n"
"  -p, --port=PORT           TCP port to listen on (default 10809)\n"
"  -b, --bind=ADDR           address to listen on (default 0.0.0.0)\n"
"  -k, --socket=PATH         listen on a unix socket instead of TCP\n"
"  -e, --shared=NUM          serve NUM clients at once (default 1; 0 = unlimited)\n"
"  -t, --persistent          keep serving after the last client disconnects\n"
"  -x, --export-name=NAME    export name (default \"\")\n"
"  -D, --description=TEXT    export description\n"
"  -L, --list                list the exports of a server (-k or -b/-p) and exit\n"
"  -A, --allocation-depth    offer the qemu:allocation-depth metadata context\n"
"  -f, --format=FORMAT       raw or qcow2 (default: probe)\n"
"  -r, --read-only           export read-only\n"
"  -s, --snapshot            writes go to a temporary overlay, thrown away at exit\n"
"  -l, --load-snapshot=SNAPSHOT_PARAM\n"
"                            export an internal snapshot read-only: an id or a name, or\n"
"                            snapshot.id=ID[,snapshot.name=NAME]\n"
"  -n, --nocache             the same as --cache=none\n"
"      --cache=MODE          writeback (default), writethrough, none, directsync, unsafe\n"
"      --aio=MODE            threads (default), native, io_uring: accepted, threads used\n"
"      --discard=MODE        ignore/off (default) or unmap/on\n"
"      --detect-zeroes=MODE  off (default), on, unmap\n"
"      --fork                run in the background once the socket listens\n"
"      --pid-file=PATH       write the server's pid there\n"
"  -c, --connect=/dev/nbdN   serve FILE to the kernel's NBD client (netlink) as that device\n"
"  -d, --disconnect          disconnect the device given as FILE (/dev/nbdN)\n"
"  -v, --verbose             report connections on stderr\n"
"  -h, --help / -V, --version\n");
}

static void on_signal(int sig)
{
    (void)sig;
    g_signalled = 1;
    if (g_server)
        nbd_server_stop(g_server);
}

static const char *flag_names(uint16_t f, char *buf, size_t n)
{
    static const char *names[] = { "", "readonly", "flush", "fua", "rotational", "trim",
                                   "zeroes", "df", "multi", "resize", "cache", "fast-zero" };
    size_t used = 0;
    buf[0] = 0;
    for (unsigned i = 1; i < sizeof(names) / sizeof(names[0]); i++)
        if (f & (1u << i))
            used += snprintf(buf + used, used < n ? n - used : 0, " %s", names[i]);
    return buf;
}

static int do_list(const char *sock, const char *host, int port, const char *name)
{
    struct nbd_uri u = { .host = (char *)host, .port = port, .socket = (char *)sock,
                         .name = (char *)(name ? name : "") };
    if (!sock && !host)
        u.host = "localhost";
    char err[NBD_ERR_MAX] = "";
    struct nbd_export_desc *d;
    int n;
    int r = nbd_client_list(&u, &d, &n, err);
    if (r) {
        fprintf(stderr, "qkvm-nbd: %s\n", err[0] ? err : strerror(-r));
        return 1;
    }
    printf("exports available: %d\n", n);
    for (int i = 0; i < n; i++) {
        char fb[128];
        printf(" export: '%s'\n", d[i].name);
        if (d[i].description && d[i].description[0])
            printf("  description: %s\n", d[i].description);
        printf("  size:  %" PRIu64 "\n", d[i].size);
        printf("  flags: 0x%x (%s )\n", d[i].tflags, flag_names(d[i].tflags, fb, sizeof(fb)));
        printf("  min block: %u\n  opt block: %u\n  max block: %u\n", d[i].min_block,
               d[i].pref_block, d[i].max_payload);
        printf("  available meta contexts: %d\n", d[i].ncontexts);
        for (int k = 0; k < d[i].ncontexts; k++)
            printf("   %s\n", d[i].contexts[k]);
    }
    nbd_export_desc_free(d, n);
    return 0;
}

/* -s: a qcow2 overlay in $TMPDIR over the image, unlinked once open (qemu-nbd does the same),
 * so nothing of it survives the server. */
static int open_snapshot(const char *path, struct block_open_opts *o, struct block **bs,
                         char *err)
{
    struct block_open_opts ro = *o;
    ro.read_only = true;
    ro.force_share = false;
    struct block *base;
    int r = block_open(path, &ro, &base, err);
    if (r)
        return r;
    char fmt[16];
    snprintf(fmt, sizeof(fmt), "%s", block_format_name(base));
    uint64_t size = block_length(base);
    block_close(base);
    char full[PATH_MAX];
    if (!realpath(path, full))
        return block_seterr(err, -errno, "Cannot resolve '%s': %s", path, strerror(errno));
    const char *dir = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof(tmpl), "%s/qkvm-nbd-snapshot.XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return block_seterr(err, -errno, "Cannot create a temporary overlay in %s: %s",
                            dir && *dir ? dir : "/tmp", strerror(errno));
    close(fd);
    struct block_create_opts co = { .size = size, .backing_file = full, .backing_fmt = fmt };
    r = block_create("qcow2", tmpl, &co, err);
    if (!r) {
        struct block_open_opts ov = *o;
        ov.format = BLOCK_FMT_QCOW2;
        ov.read_only = false;
        r = block_open(tmpl, &ov, bs, err);
    }
    unlink(tmpl);
    return r;
}

/* -l NAME (an id, else a name, as qemu-nbd) or -l snapshot.id=ID,snapshot.name=NAME (both
 * must match; QEMU's option syntax, ",," a literal comma). */
static int load_snapshot(struct block *bs, const char *arg, char *err)
{
    static const char pre[] = "snapshot.";
    int r;
    if (strncmp(arg, pre, sizeof(pre) - 1)) {
        r = block_snapshot_load_tmp(bs, arg, NULL);
        if (r == -ENOENT)
            r = block_snapshot_load_tmp(bs, NULL, arg);
        if (r)
            block_seterr(err, r, r == -ENOENT ? "Can't find snapshot '%s'" :
                         r == -ENOTSUP ? "The '%s' format has no snapshots" : "%s: %s",
                         r == -ENOTSUP ? block_format_name(bs) : arg, strerror(-r));
        return r;
    }
    char *id = NULL, *name = NULL, *val = malloc(strlen(arg) + 1);
    if (!val)
        return block_seterr(err, -ENOMEM, "Out of memory");
    r = 0;
    for (const char *p = arg; *p && !r;) {
        const char *eq = strchr(p, '=');
        if (!eq) {
            r = block_seterr(err, -EINVAL, "Invalid snapshot option '%s' (expected "
                             "snapshot.id=ID and/or snapshot.name=NAME)", p);
            break;
        }
        size_t klen = (size_t)(eq - p), n = 0;
        const char *q = eq + 1;
        for (; *q && !(*q == ',' && q[1] != ','); q++) {
            val[n++] = *q;
            if (*q == ',')
                q++;
        }
        val[n] = 0;
        char **dst = klen == 11 && !strncmp(p, "snapshot.id", 11) ? &id
                   : klen == 13 && !strncmp(p, "snapshot.name", 13) ? &name : NULL;
        if (!dst)
            r = block_seterr(err, -EINVAL, "Invalid parameter '%.*s'", (int)klen, p);
        else if (!(*dst = strdup(val)))
            r = block_seterr(err, -ENOMEM, "Out of memory");
        p = *q ? q + 1 : q;
    }
    free(val);
    if (!r && !id && !name)
        r = block_seterr(err, -EINVAL, "snapshot.id or snapshot.name is needed");
    if (!r && (r = block_snapshot_load_tmp(bs, id, name)))
        block_seterr(err, r, r == -ENOENT ? "Can't find snapshot id '%s' name '%s'" :
                     "id '%s' name '%s': %s", id ? id : "", name ? name : "", strerror(-r));
    free(id);
    free(name);
    return r;
}

/* --fork: the parent exits 0, the child goes on in a session of its own, stdin and stdout on
 * /dev/null (stderr stays: errors must still reach someone). */
static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "qkvm-nbd: fork: %s\n", strerror(errno));
        return -errno;
    }
    if (pid > 0)
        _exit(0);
    setsid();
    if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout))
        return -EIO;
    return 0;
}

static void *serve_thread(void *arg)
{
    intptr_t fd = (intptr_t)arg;
    return (void *)(intptr_t)nbd_server_serve_fd(g_server, (int)fd);
}

/* -c: the export on one end of a socket pair, the kernel's client on the other (as qemu-nbd
 * -c serves the image itself); the process lives until the device is disconnected (-d), the
 * kernel then ending the connection. */
static int serve_kernel(struct block *bs, struct nbd_export_opts *eo, int idx, bool do_fork)
{
    char err[NBD_ERR_MAX] = "";
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        fprintf(stderr, "qkvm-nbd: socketpair: %s\n", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    int r = nbd_server_new(bs, eo, &g_server);
    pthread_t t;
    if (r || pthread_create(&t, NULL, serve_thread, (void *)(intptr_t)sv[0])) {
        fprintf(stderr, "qkvm-nbd: Cannot start the server: %s\n", strerror(r ? -r : EAGAIN));
        return 1;
    }
    struct nbd_client_info info;
    r = nbd_client_handshake_fd(sv[1], eo->name ? eo->name : "", &info, err);
    if (!r && (r = nbd_kernel_connect(idx, sv[1], &info, &idx, err)))
        close(sv[1]);
    if (r) {
        fprintf(stderr, "qkvm-nbd: %s\n", err);
        pthread_join(t, NULL);
        nbd_server_free(g_server);
        block_close(bs);
        return 1;
    }
    close(sv[1]);   /* the kernel holds the socket now */
    if (do_fork && daemonize())
        return 1;
    void *ret;
    pthread_join(t, &ret);
    nbd_server_free(g_server);
    return block_close(bs) ? 1 : 0;
}

static int parse_mode(const char *s, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return 0;
        }
    return -EINVAL;
}

int main(int argc, char **argv)
{
    enum { O_CACHE = 256, O_AIO, O_DISCARD, O_DZ, O_FORK, O_PIDFILE, O_OBJECT, O_IMAGE_OPTS };
    static const struct option lo[] = {
        { "port", 1, 0, 'p' }, { "bind", 1, 0, 'b' }, { "socket", 1, 0, 'k' },
        { "shared", 1, 0, 'e' }, { "persistent", 0, 0, 't' }, { "export-name", 1, 0, 'x' },
        { "description", 1, 0, 'D' }, { "list", 0, 0, 'L' }, { "allocation-depth", 0, 0, 'A' },
        { "format", 1, 0, 'f' }, { "read-only", 0, 0, 'r' }, { "snapshot", 0, 0, 's' },
        { "load-snapshot", 1, 0, 'l' }, { "nocache", 0, 0, 'n' }, { "cache", 1, 0, O_CACHE },
        { "aio", 1, 0, O_AIO }, { "discard", 1, 0, O_DISCARD },
        { "detect-zeroes", 1, 0, O_DZ }, { "fork", 0, 0, O_FORK },
        { "pid-file", 1, 0, O_PIDFILE }, { "connect", 1, 0, 'c' }, { "disconnect", 0, 0, 'd' },
        { "object", 1, 0, O_OBJECT }, { "verbose", 0, 0, 'v' }, { "help", 0, 0, 'h' },
        { "version", 0, 0, 'V' }, { 0, 0, 0, 0 } };
    const char *port_s = NULL, *bind_addr = NULL, *sock = NULL, *pidfile = NULL;
    const char *kdev = NULL, *sn_arg = NULL;
    bool list = false, persistent = false, snapshot = false, do_fork = false, disconnect = false;
    int shared = 1;
    struct nbd_export_opts eo = { .name = NULL };
    struct block_open_opts bo = { 0 };
    char err[BLOCK_ERR_MAX] = "";
    int c;
    while ((c = getopt_long(argc, argv, "p:b:k:e:tx:D:LAf:rsl:nc:dvhV", lo, NULL)) != -1) {
        uint64_t v;
        int m;
        switch (c) {
        case 'p':
            if (parse_u64(optarg, 1, 65535, &v)) {
                fprintf(stderr, "qkvm-nbd: Invalid port '%s'\n", optarg);
                return 1;
            }
            port_s = optarg;
            break;
        case 'b': bind_addr = optarg; break;
        case 'k': sock = optarg; break;
        case 'e':
            if (parse_u64(optarg, 0, 1 << 20, &v)) {
                fprintf(stderr, "qkvm-nbd: Invalid shared device number '%s'\n", optarg);
                return 1;
            }
            shared = (int)v;
            break;
        case 't': persistent = true; break;
        case 'x': eo.name = optarg; break;
        case 'D': eo.description = optarg; break;
        case 'L': list = true; break;
        case 'A': eo.allocation_depth = true; break;
        case 'f':
            if (block_parse_format(optarg, &bo.format)) {
                fprintf(stderr, "qkvm-nbd: Unknown format '%s' (raw or qcow2)\n", optarg);
                return 1;
            }
            break;
        case 'r': bo.read_only = eo.read_only = true; break;
        case 's': snapshot = true; break;
        case 'l':
            /* as qemu-nbd: a snapshot is exported read-only */
            sn_arg = optarg;
            bo.read_only = eo.read_only = true;
            break;
        case 'n': bo.cache = BLOCK_CACHE_NONE; break;
        case O_CACHE:
            if (block_parse_cache(optarg, &bo.cache)) {
                fprintf(stderr, "qkvm-nbd: Invalid cache mode '%s'\n", optarg);
                return 1;
            }
            break;
        case O_AIO: {
            static const char *const aio[] = { "threads", "native", "io_uring" };
            if (parse_mode(optarg, aio, 3, &m)) {
                fprintf(stderr, "qkvm-nbd: Invalid aio mode '%s'\n", optarg);
                return 1;
            }
            break;
        }
        case O_DISCARD: {
            static const char *const d[] = { "ignore", "off", "unmap", "on" };
            if (parse_mode(optarg, d, 4, &m)) {
                fprintf(stderr, "qkvm-nbd: Invalid discard mode '%s'\n", optarg);
                return 1;
            }
            eo.discard = m >= 2 ? NBD_DISCARD_UNMAP : NBD_DISCARD_IGNORE;
            break;
        }
        case O_DZ: {
            static const char *const d[] = { "off", "on", "unmap" };
            if (parse_mode(optarg, d, 3, &m)) {
                fprintf(stderr, "qkvm-nbd: Invalid detect-zeroes mode '%s'\n", optarg);
                return 1;
            }
            eo.detect_zeroes = m;
            break;
        }
        case O_FORK: do_fork = true; break;
        case O_PIDFILE: pidfile = optarg; break;
        case O_OBJECT:
            if (cli_add_object(optarg, err)) {
                fprintf(stderr, "qkvm-nbd: %s\n", err);
                return 1;
            }
            break;
        case 'c': kdev = optarg; break;
        case 'd': disconnect = true; break;
        case 'v': break;
        case 'h': usage(stdout); return 0;
        case 'V':
            printf("qkvm-nbd " QKVM_NBD_VERSION "\n");
            return 0;
        default:
            fprintf(stderr, "Try 'qkvm-nbd --help' for more information.\n");
            return 1;
        }
    }
    int port = NBD_DEFAULT_PORT;
    if (port_s)
        port = atoi(port_s);
    if (disconnect) {
        int idx = optind == argc - 1 ? nbd_kernel_index(argv[optind]) : -EINVAL;
        if (idx < 0) {
            fprintf(stderr, "qkvm-nbd: -d takes one device, /dev/nbdN\n");
            return 1;
        }
        if (nbd_kernel_disconnect(idx, err)) {
            fprintf(stderr, "qkvm-nbd: %s\n", err);
            return 1;
        }
        return 0;
    }
    int kidx = -1;
    if (kdev && (kidx = nbd_kernel_index(kdev)) < 0) {
        fprintf(stderr, "qkvm-nbd: Invalid device '%s' (expected /dev/nbdN)\n", kdev);
        return 1;
    }
    if (list) {
        if (optind != argc) {
            fprintf(stderr, "qkvm-nbd: --list takes no file name\n");
            return 1;
        }
        return do_list(sock, bind_addr, port, eo.name);
    }
    if (optind != argc - 1) {
        fprintf(stderr, "qkvm-nbd: %s\n", optind == argc ? "Expected one file name"
                                                         : "Too many file names");
        return 1;
    }
    if (sock && (port_s || bind_addr)) {
        fprintf(stderr, "qkvm-nbd: -k cannot be combined with -p or -b\n");
        return 1;
    }
    if (snapshot && eo.read_only) {
        /* as qemu-nbd: a read-only export needs no overlay; -r wins */
        snapshot = false;
    }
    const char *path = argv[optind];
    if (cli_default_secret(&bo.secret_len))
        bo.secret = cli_default_secret(&bo.secret_len);
    struct block *bs;
    int r = snapshot ? open_snapshot(path, &bo, &bs, err) : block_open(path, &bo, &bs, err);
    if (r) {
        fprintf(stderr, "qkvm-nbd: Failed to open '%s': %s\n", path, err[0] ? err : strerror(-r));
        return 1;
    }
    if (sn_arg && (r = load_snapshot(bs, sn_arg, err))) {
        fprintf(stderr, "qkvm-nbd: Failed to load snapshot: %s\n", err);
        block_close(bs);
        return 1;
    }
    if (kdev)
        return serve_kernel(bs, &eo, kidx, do_fork);
    int lfd = sock ? nbd_sock_listen_unix(sock, err) : nbd_sock_listen_tcp(bind_addr, port, err);
    if (lfd < 0) {
        fprintf(stderr, "qkvm-nbd: %s\n", err);
        block_close(bs);
        return 1;
    }
    /* the socket already listens: clients may connect the moment the parent returns */
    if (do_fork && daemonize())
        return 1;
    if (pidfile) {
        FILE *f = fopen(pidfile, "w");
        if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f)) {
            fprintf(stderr, "qkvm-nbd: Cannot write pid file '%s'\n", pidfile);
            return 1;
        }
    }
    eo.multi_conn = shared != 1;
    r = nbd_server_new(bs, &eo, &g_server);
    if (r) {
        fprintf(stderr, "qkvm-nbd: Cannot start the server: %s\n", strerror(-r));
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    r = nbd_server_run(g_server, lfd, shared, persistent);
    close(lfd);
    if (sock)
        unlink(sock);
    if (pidfile)
        unlink(pidfile);
    if (g_signalled) {
        /* clients may still be connected: what they were told is written is flushed, and
         * the process ends without waiting for them (as qemu-nbd on SIGTERM) */
        int f = block_flush(bs);
        _exit(f ? 1 : 0);
    }
    nbd_server_free(g_server);
    return block_close(bs) || r ? 1 : 0;
}
