/* qkvm-ivshmem-server: hands out shared memory and doorbell eventfds to ivshmem peers, with the
 * options of QEMU's contrib/ivshmem-server. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ivshmem/ivshmem.h"
#include "util/parse.h"

static volatile sig_atomic_t g_quit;

static void usage(FILE *f)
{
    fprintf(f,
"Usage: qkvm-ivshmem-server [OPTION]...\n"
"Share memory and doorbells between ivshmem peers (QEMU's ivshmem-doorbell, qkvm-ivshmem-client).\n\n"
"  -S SOCKET   unix socket to listen on (default /tmp/ivshmem_socket)\n"
"  -M NAME     POSIX shared memory object to share (default ivshmem)\n"
"  -m DIR      share an unlinked file created in DIR instead (a hugetlbfs mount, /dev/shm)\n"
"  -l SIZE     memory size, suffixes K, M, G (default 4M)\n"
"  -n VECTORS  doorbell vectors per peer, 1..%d (default 1)\n"
"  -P PEERS    at most PEERS peers at once (default %d)\n"
"  -F          stay in the foreground (it daemonizes otherwise)\n"
"  -p PIDFILE  write the server's pid there (default /var/run/ivshmem-server.pid when daemonized)\n"
"  -v          report peers joining and leaving on stderr\n"
"  -h          this help\n", IVSHMEM_MAX_VECTORS, IVSHMEM_DEFAULT_MAX_PEERS);
}

static void on_signal(int sig)
{
    (void)sig;
    g_quit = 1;
}

static int write_pidfile(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "%d\n", (int)getpid());
    return fclose(f) ? -errno : 0;
}

static int die(const char *fmt, const char *arg)
{
    fprintf(stderr, "qkvm-ivshmem-server: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

int main(int argc, char **argv)
{
    struct ivshmem_server_opts o = { .socket_path = "/tmp/ivshmem_socket", .shm_name = "ivshmem",
                                     .shm_size = 4u << 20, .vectors = 1 };
    const char *pidfile = NULL;
    bool foreground = false;
    uint64_t v;
    int c;
    while ((c = getopt(argc, argv, "S:M:m:l:n:P:Fp:vh")) != -1) {
        switch (c) {
        case 'S': o.socket_path = optarg; break;
        case 'M': o.shm_name = optarg; o.shm_dir = NULL; break;
        case 'm': o.shm_dir = optarg; break;
        case 'l':
            if (parse_size(optarg, 1, &v) || v == 0)
                return die("invalid memory size: %s", optarg);
            o.shm_size = v;
            break;
        case 'n':
            if (parse_u64(optarg, 1, IVSHMEM_MAX_VECTORS, &v))
                return die("invalid number of vectors (1..64): %s", optarg);
            o.vectors = (unsigned)v;
            break;
        case 'P':
            if (parse_u64(optarg, 1, IVSHMEM_MAX_ID + 1, &v))
                return die("invalid number of peers (1..65536): %s", optarg);
            o.max_peers = (unsigned)v;
            break;
        case 'F': foreground = true; break;
        case 'p': pidfile = optarg; break;
        case 'v': o.verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc)
        return die("unexpected argument: %s", argv[optind]);
    if (!foreground && !pidfile)
        pidfile = "/var/run/ivshmem-server.pid";

    struct ivshmem_server s;
    char err[IVSHMEM_ERR_MAX] = "";
    if (ivshmem_server_start(&s, &o, err))
        return die("%s", err);
    if (!foreground) {
        /* Fork only once the socket listens, so whoever started us can connect as soon as we
         * return. */
        pid_t pid = fork();
        if (pid < 0) {
            ivshmem_server_close(&s);
            return die("fork: %s", strerror(errno));
        }
        if (pid > 0)
            _exit(0);
        setsid();
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            if (!o.verbose)
                dup2(null, 2);
            if (null > 2)
                close(null);
        }
    }
    if (pidfile) {
        int r = write_pidfile(pidfile);
        if (r) {
            ivshmem_server_close(&s);
            return die("cannot write the pid file: %s", strerror(-r));
        }
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int r = 0;
    while (!g_quit) {
        r = ivshmem_server_poll(&s, -1);
        if (r == -EINTR)
            r = 0;
        else if (r)
            break;
    }
    ivshmem_server_close(&s);
    if (pidfile)
        unlink(pidfile);
    if (r)
        return die("%s", strerror(-r));
    return 0;
}
