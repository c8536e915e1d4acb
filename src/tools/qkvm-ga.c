/* qkvm-ga: the guest agent, with qemu-ga's options and config file; the work is src/qga/. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "qga/qga.h"

#define QGA_DEFAULT_PATH "/dev/virtio-ports/org.qemu.guest_agent.0"
#define QGA_SERIAL_DEFAULT_PATH "/dev/ttyS0"
#define QGA_DEFAULT_CONFIG "/etc/qemu/qemu-ga.conf"

struct ga_config {
    char *method, *path, *logfile, *pidfile, *statedir, *fsfreeze_hook;
    char *block_rpcs, *allow_rpcs;
    char *fsfreeze_timeout;
    bool daemonize, verbose, retry_path;
};

static struct qga_state *ga_state;

static void ga_on_signal(int sig)
{
    (void)sig;
    qga_request_stop(ga_state);
}

static void ga_config_free(struct ga_config *c)
{
    char **all[] = { &c->method, &c->path, &c->logfile, &c->pidfile, &c->statedir,
                     &c->fsfreeze_hook, &c->block_rpcs, &c->allow_rpcs, &c->fsfreeze_timeout };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
}

static void ga_usage(FILE *f)
{
    fprintf(f,
"Usage: qkvm-ga [-m <method> -p <path>] [<options>]\n"
"QEMU Guest Agent protocol (qemu-ga compatible)\n\n"
"  -c, --config=PATH     configuration file ([general] section, as qemu-ga's)\n"
"  -m, --method=METHOD   transport: virtio-serial (default), isa-serial, unix-listen,\n"
"                        vsock-listen\n"
"  -p, --path=PATH       device, socket path or vsock CID:PORT (default " QGA_DEFAULT_PATH "\n"
"                        for virtio-serial, " QGA_SERIAL_DEFAULT_PATH " for isa-serial)\n"
"  -l, --logfile=PATH    log to PATH instead of stderr\n"
"  -f, --pidfile=PATH    write the process id to PATH\n"
"  -t, --statedir=DIR    accepted for qemu-ga compatibility (no state is kept)\n"
"  -F, --fsfreeze-hook[=PATH]  run PATH freeze/thaw around guest-fsfreeze-* (default\n"
"                        /etc/qemu/fsfreeze-hook); its output goes to the log\n"
"      --fsfreeze-timeout=SECS  thaw by itself after SECS frozen (default 0: never)\n"
"  -v, --verbose         log every request\n"
"  -d, --daemonize       run in the background\n"
"  -b, --block-rpcs=LIST comma-separated commands to disable (\"help\" lists them)\n"
"  -a, --allow-rpcs=LIST comma-separated commands to enable, all others disabled\n"
"  -r, --retry-path      wait for the port to appear instead of failing\n"
"  -D, --dump-conf       print the effective configuration and exit\n"
"  -V, --version         print the version\n"
"  -h, --help            this text\n");
}

static void ga_set(char **dst, const char *val)
{
    free(*dst);
    *dst = strdup(val);
}

static bool ga_parse_bool(const char *v)
{
    return !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes");
}

/* qemu-ga's key file: a [general] group of key=value lines; lists separated by ',' or ';'. */
static int ga_read_config(struct ga_config *c, const char *path, bool must_exist)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!must_exist && errno == ENOENT)
            return 0;
        fprintf(stderr, "qkvm-ga: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    char line[4096], group[64] = "";
    int lineno = 0, ret = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line + strspn(line, " \t");
        p[strcspn(p, "\r\n")] = 0;
        if (!*p || *p == '#' || *p == ';')
            continue;
        if (*p == '[') {
            char *end = strchr(p, ']');
            if (!end) {
                fprintf(stderr, "qkvm-ga: %s:%d: bad group line\n", path, lineno);
                ret = -EINVAL;
                break;
            }
            *end = 0;
            snprintf(group, sizeof(group), "%s", p + 1);
            continue;
        }
        char *eq = strchr(p, '=');
        if (!eq) {
            fprintf(stderr, "qkvm-ga: %s:%d: expected key=value\n", path, lineno);
            ret = -EINVAL;
            break;
        }
        if (strcmp(group, "general"))
            continue;
        char *key = p, *val = eq + 1;
        for (char *k = eq; k > key && (k[-1] == ' ' || k[-1] == '\t'); k--)
            k[-1] = 0;
        *eq = 0;
        val += strspn(val, " \t");
        for (char *s = val; *s; s++)
            if (*s == ';')
                *s = ',';
        size_t vl = strlen(val);
        while (vl && val[vl - 1] == ',')
            val[--vl] = 0;
        if (!strcmp(key, "daemon") || !strcmp(key, "daemonize"))
            c->daemonize = ga_parse_bool(val);
        else if (!strcmp(key, "method"))
            ga_set(&c->method, val);
        else if (!strcmp(key, "path"))
            ga_set(&c->path, val);
        else if (!strcmp(key, "logfile"))
            ga_set(&c->logfile, val);
        else if (!strcmp(key, "pidfile"))
            ga_set(&c->pidfile, val);
        else if (!strcmp(key, "statedir"))
            ga_set(&c->statedir, val);
        else if (!strcmp(key, "fsfreeze-hook"))
            ga_set(&c->fsfreeze_hook, val);
        else if (!strcmp(key, "fsfreeze-timeout"))
            ga_set(&c->fsfreeze_timeout, val);
        else if (!strcmp(key, "verbose"))
            c->verbose = ga_parse_bool(val);
        else if (!strcmp(key, "retry-path"))
            c->retry_path = ga_parse_bool(val);
        else if (!strcmp(key, "block-rpcs"))
            ga_set(&c->block_rpcs, val);
        else if (!strcmp(key, "allow-rpcs"))
            ga_set(&c->allow_rpcs, val);
        else
            fprintf(stderr, "qkvm-ga: %s:%d: unknown key '%s' ignored\n", path, lineno, key);
    }
    fclose(f);
    return ret;
}

static void ga_dump_config(const struct ga_config *c)
{
    printf("[general]\n");
    printf("daemon=%s\n", c->daemonize ? "true" : "false");
    printf("method=%s\n", c->method);
    printf("path=%s\n", c->path);
    if (c->logfile)
        printf("logfile=%s\n", c->logfile);
    if (c->pidfile)
        printf("pidfile=%s\n", c->pidfile);
    if (c->statedir)
        printf("statedir=%s\n", c->statedir);
    if (c->fsfreeze_hook)
        printf("fsfreeze-hook=%s\n", c->fsfreeze_hook);
    if (c->fsfreeze_timeout)
        printf("fsfreeze-timeout=%s\n", c->fsfreeze_timeout);
    printf("verbose=%s\n", c->verbose ? "true" : "false");
    printf("retry-path=%s\n", c->retry_path ? "true" : "false");
    if (c->block_rpcs)
        printf("block-rpcs=%s\n", c->block_rpcs);
    if (c->allow_rpcs)
        printf("allow-rpcs=%s\n", c->allow_rpcs);
}

static void ga_print_command(void *opaque, const struct qga_command *cmd)
{
    (void)opaque;
    printf("%s\n", cmd->name);
}

static int ga_write_pidfile(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    int r = write(fd, buf, (size_t)n) == n ? 0 : -EIO;
    close(fd);
    return r;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "method", required_argument, NULL, 'm' },
        { "path", required_argument, NULL, 'p' }, { "logfile", required_argument, NULL, 'l' },
        { "pidfile", required_argument, NULL, 'f' }, { "statedir", required_argument, NULL, 't' },
        { "fsfreeze-hook", optional_argument, NULL, 'F' }, { "verbose", no_argument, NULL, 'v' },
        { "daemonize", no_argument, NULL, 'd' }, { "block-rpcs", required_argument, NULL, 'b' },
        { "allow-rpcs", required_argument, NULL, 'a' }, { "retry-path", no_argument, NULL, 'r' },
        { "dump-conf", no_argument, NULL, 'D' }, { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' }, { "fsfreeze-timeout", required_argument, NULL, 'T' },
        { NULL, 0, NULL, 0 },
    };
    static const char shortopts[] = "c:m:p:l:f:t:F::vdb:a:rDVh";
    struct ga_config c = { 0 };
    const char *config = NULL;
    bool dump = false;

    /* the config file first, so that options given on the command line win */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            config = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            config = argv[i] + 9;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[i + 1];
    }
    int ret = 1;
    if (ga_read_config(&c, config ? config : QGA_DEFAULT_CONFIG, config != NULL) < 0)
        goto out;
    int opt;
    while ((opt = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
        switch (opt) {
        case 'c': break;
        case 'm': ga_set(&c.method, optarg); break;
        case 'p': ga_set(&c.path, optarg); break;
        case 'l': ga_set(&c.logfile, optarg); break;
        case 'f': ga_set(&c.pidfile, optarg); break;
        case 't': ga_set(&c.statedir, optarg); break;
        case 'F': ga_set(&c.fsfreeze_hook, optarg ? optarg : "/etc/qemu/fsfreeze-hook"); break;
        case 'v': c.verbose = true; break;
        case 'd': c.daemonize = true; break;
        case 'b':
        case 'a':
            if (!strcmp(optarg, "help") || !strcmp(optarg, "?")) {
                qga_command_foreach(ga_print_command, NULL);
                ret = 0;
                goto out;
            }
            ga_set(opt == 'b' ? &c.block_rpcs : &c.allow_rpcs, optarg);
            break;
        case 'r': c.retry_path = true; break;
        case 'T': ga_set(&c.fsfreeze_timeout, optarg); break;
        case 'D': dump = true; break;
        case 'V': printf("QEMU Guest Agent %s (qkvm-ga)\n", QGA_VERSION); ret = 0; goto out;
        case 'h': ga_usage(stdout); ret = 0; goto out;
        default: ga_usage(stderr); goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "qkvm-ga: unexpected argument '%s'\n", argv[optind]);
        goto out;
    }
    if (!c.method)
        ga_set(&c.method, "virtio-serial");
    enum qga_method method;
    if (qga_method_parse(c.method, &method) < 0) {
        fprintf(stderr, "qkvm-ga: invalid method '%s' (virtio-serial, isa-serial, unix-listen, "
                "vsock-listen)\n", c.method);
        goto out;
    }
    /* qemu-ga's defaults: a port for the serial methods, nothing to guess for a socket */
    if (!c.path && method == QGA_METHOD_VIRTIO_SERIAL)
        ga_set(&c.path, QGA_DEFAULT_PATH);
    else if (!c.path && method == QGA_METHOD_ISA_SERIAL)
        ga_set(&c.path, QGA_SERIAL_DEFAULT_PATH);
    if (!c.path) {
        fprintf(stderr, "qkvm-ga: must specify a path for this channel (-p)\n");
        goto out;
    }
    unsigned cid, port;
    if (method == QGA_METHOD_VSOCK_LISTEN && qga_vsock_parse(c.path, &cid, &port) < 0) {
        fprintf(stderr, "qkvm-ga: vsock-listen path '%s' is not CID:PORT\n", c.path);
        goto out;
    }
    unsigned long freeze_timeout = 0;
    if (c.fsfreeze_timeout) {
        char *end;
        errno = 0;
        freeze_timeout = strtoul(c.fsfreeze_timeout, &end, 10);
        if (errno || end == c.fsfreeze_timeout || *end || *c.fsfreeze_timeout == '-' ||
            freeze_timeout > 86400) {
            fprintf(stderr, "qkvm-ga: fsfreeze-timeout '%s' is not a number of seconds (0 to 86400)\n",
                    c.fsfreeze_timeout);
            goto out;
        }
    }
    if (c.block_rpcs && c.allow_rpcs) {
        fprintf(stderr, "qkvm-ga: --block-rpcs and --allow-rpcs exclude each other\n");
        goto out;
    }
    if (dump) {
        ga_dump_config(&c);
        ret = 0;
        goto out;
    }
    ga_state = qga_state_new();
    if (!ga_state) {
        fprintf(stderr, "qkvm-ga: out of memory\n");
        goto out;
    }
    const char *bad = NULL;
    const char *list = c.block_rpcs ? c.block_rpcs : c.allow_rpcs;
    if (list && qga_state_set_rpcs(ga_state, list, c.allow_rpcs != NULL, &bad) < 0) {
        fprintf(stderr, "qkvm-ga: unknown command '%s' in %s\n", bad ? bad : "?",
                c.block_rpcs ? "--block-rpcs" : "--allow-rpcs");
        goto out;
    }
    qga_state_set_fsfreeze_timeout(ga_state, (unsigned)freeze_timeout);
    if (c.fsfreeze_hook && qga_state_set_fsfreeze_hook(ga_state, c.fsfreeze_hook) < 0) {
        fprintf(stderr, "qkvm-ga: out of memory\n");
        goto out;
    }
    if (c.logfile) {
        int fd = open(c.logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) {
            fprintf(stderr, "qkvm-ga: %s: %s\n", c.logfile, strerror(errno));
            goto out;
        }
        dup2(fd, 2);
        close(fd);
    }
    if (c.daemonize) {
        if (daemon(0, c.logfile != NULL) < 0) {
            fprintf(stderr, "qkvm-ga: daemonize: %s\n", strerror(errno));
            goto out;
        }
    }
    if (c.pidfile && ga_write_pidfile(c.pidfile) < 0) {
        fprintf(stderr, "qkvm-ga: %s: cannot write pid file\n", c.pidfile);
        goto out;
    }
    struct sigaction sa = { .sa_handler = ga_on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (c.verbose)
        fprintf(stderr, "qkvm-ga: serving %s on %s\n", c.method, c.path);
    int r = qga_serve_path(ga_state, method, c.path, c.retry_path);
    if (r < 0)
        fprintf(stderr, "qkvm-ga: %s: %s\n", c.path, strerror(-r));
    if (c.pidfile)
        unlink(c.pidfile);
    ret = r < 0 ? 1 : 0;
out:
    qga_state_free(ga_state);
    ga_config_free(&c);
    return ret;
}
