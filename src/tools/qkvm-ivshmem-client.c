/* qkvm-ivshmem-client: an ivshmem peer on the host, like QEMU's contrib/ivshmem-client. It prints
 * what the server and the other peers do, and rings them on command (stdin). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ivshmem/ivshmem.h"
#include "util/parse.h"

static void usage(FILE *f)
{
    fprintf(f,
"Usage: qkvm-ivshmem-client [-S SOCKET] [-v]\n"
"Join an ivshmem server as a peer, print its events, ring peers on command.\n\n"
"  -S SOCKET   the server's socket (default /tmp/ivshmem_socket)\n"
"  -v          also print every message of the protocol\n"
"  -h          this help\n");
}

static void help(void)
{
    printf("commands:\n"
           "  int PEER VECTOR   ring vector VECTOR of peer PEER\n"
           "  int PEER all      ring every vector of peer PEER\n"
           "  int all           ring every vector of every other peer\n"
           "  list              the peers and their vectors\n"
           "  dump              the start of the shared memory\n"
           "  write TEXT        put TEXT (and a NUL) at the start of the shared memory\n"
           "  help, quit\n");
}

static void ring(struct ivshmem_client *c, int64_t peer, int vector)
{
    struct ivshmem_peer *p = ivshmem_client_find_peer(c, peer);
    if (!p || p == &c->self) {
        printf("no peer %" PRId64 "\n", peer);
        return;
    }
    for (unsigned v = 0; v < p->nfds; v++) {
        if (vector >= 0 && (unsigned)vector != v)
            continue;
        int r = ivshmem_client_notify(c, peer, v);
        if (r)
            printf("cannot ring peer %" PRId64 " vector %u: %s\n", peer, v, strerror(-r));
        else
            printf("rang peer %" PRId64 " vector %u\n", peer, v);
    }
    if (vector >= 0 && (unsigned)vector >= p->nfds)
        printf("peer %" PRId64 " has no vector %d\n", peer, vector);
}

static void *map_shm(struct ivshmem_client *c)
{
    void *m = mmap(NULL, c->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->shm_fd, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void command(struct ivshmem_client *c, char *line)
{
    /* write keeps its text whole, spaces included */
    const char *text = NULL;
    if (!strncmp(line, "write ", 6) || !strcmp(line, "write")) {
        text = line[5] ? line + 6 : "";
        line[5] = 0;
    }
    char *args[3] = { 0 };
    int n = 0;
    char *rest = NULL;
    for (char *t = strtok_r(line, " \t\n", &rest); t && n < 3; t = strtok_r(NULL, " \t\n", &rest))
        args[n++] = t;
    uint64_t peer, vec;
    if (n == 0)
        return;
    if (!strcmp(args[0], "help")) {
        help();
    } else if (!strcmp(args[0], "list")) {
        printf("my id %" PRId64 ", %u vectors\n", c->id, c->self.nfds);
        for (unsigned i = 0; i < c->npeers; i++)
            printf("peer %" PRId64 ": %u vectors\n", c->peers[i].id, c->peers[i].nfds);
    } else if (!strcmp(args[0], "int") && n == 2 && !strcmp(args[1], "all")) {
        for (unsigned i = 0; i < c->npeers; i++)
            ring(c, c->peers[i].id, -1);
    } else if (!strcmp(args[0], "int") && n == 3 && !parse_u64(args[1], 0, IVSHMEM_MAX_ID, &peer)) {
        if (!strcmp(args[2], "all"))
            ring(c, (int64_t)peer, -1);
        else if (!parse_u64(args[2], 0, IVSHMEM_MAX_VECTORS - 1, &vec))
            ring(c, (int64_t)peer, (int)vec);
        else
            printf("bad vector: %s\n", args[2]);
    } else if (!strcmp(args[0], "dump") || !strcmp(args[0], "write")) {
        unsigned char *m = c->shm_fd >= 0 ? map_shm(c) : NULL;
        if (!m) {
            printf("no shared memory\n");
            return;
        }
        if (args[0][0] == 'w') {
            size_t len = strlen(text);
            if (len >= c->shm_size)
                len = c->shm_size - 1;
            memcpy(m, text, len);
            m[len] = 0;
            printf("wrote %zu bytes\n", len + 1);
        } else {
            printf("shared memory: %" PRIu64 " bytes, starts with:", c->shm_size);
            for (uint64_t i = 0; i < 64 && i < c->shm_size; i++)
                printf("%s%02x", i % 16 ? " " : "\n  ", m[i]);
            printf("\n  \"");
            for (uint64_t i = 0; i < 64 && i < c->shm_size && m[i]; i++)
                putchar(isprint(m[i]) ? m[i] : '.');
            printf("\"\n");
        }
        munmap(m, c->shm_size);
    } else if (!strcmp(args[0], "quit")) {
        exit(0);
    } else {
        printf("unknown command (help lists them)\n");
    }
}

static void report(struct ivshmem_client *c, enum ivshmem_event ev)
{
    switch (ev) {
    case IVSHMEM_EV_ID: printf("my id is %" PRId64 "\n", c->id); break;
    case IVSHMEM_EV_SHM: printf("shared memory: %" PRIu64 " bytes\n", c->shm_size); break;
    case IVSHMEM_EV_PEER_VECTOR:
        if (c->ev_peer == c->id)
            printf("my vector %u ready\n", c->ev_vector);
        else
            printf("peer %" PRId64 " vector %u\n", c->ev_peer, c->ev_vector);
        break;
    case IVSHMEM_EV_PEER_GONE: printf("peer %" PRId64 " left\n", c->ev_peer); break;
    default: break;
    }
}

int main(int argc, char **argv)
{
    const char *path = "/tmp/ivshmem_socket";
    int opt;
    while ((opt = getopt(argc, argv, "S:vh")) != -1) {
        switch (opt) {
        case 'S': path = optarg; break;
        case 'v': break;    /* every event is printed already */
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct ivshmem_client c;
    int r = ivshmem_client_connect(&c, path, IVSHMEM_MAX_VECTORS);
    if (r) {
        fprintf(stderr, "qkvm-ivshmem-client: cannot connect to %s: %s\n", path, strerror(-r));
        return 1;
    }
    bool stdin_open = true;
    char line[512];
    size_t used = 0;
    for (;;) {
        struct pollfd p[2 + IVSHMEM_MAX_VECTORS];
        unsigned n = 0;
        p[n++] = (struct pollfd){ .fd = c.sock, .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = stdin_open ? 0 : -1, .events = POLLIN };
        for (unsigned v = 0; v < c.self.nfds; v++)
            p[n++] = (struct pollfd){ .fd = c.self.fds[v], .events = POLLIN };
        if (poll(p, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents) {
            enum ivshmem_event ev;
            r = ivshmem_client_recv(&c, &ev);
            if (r == -ECONNRESET) {
                printf("server gone\n");
                break;
            }
            if (r) {
                fprintf(stderr, "qkvm-ivshmem-client: %s\n", r == -EPROTO ? c.err : strerror(-r));
                ivshmem_client_close(&c);
                return 1;
            }
            report(&c, ev);
        }
        if (p[1].revents) {
            /* read(), not stdio: a line left in stdio's buffer would wait for the next poll */
            ssize_t got = read(0, line + used, sizeof(line) - 1 - used);
            if (got <= 0)
                stdin_open = false;     /* keep serving events: a pipe's writer may be done */
            else
                used += (size_t)got;
            char *nl;
            while ((nl = memchr(line, '\n', used))) {
                *nl = 0;
                command(&c, line);
                used -= (size_t)(nl + 1 - line);
                memmove(line, nl + 1, used);
            }
            if (used == sizeof(line) - 1)
                used = 0;               /* a line too long to be a command */
        }
        for (unsigned v = 0; v + 2 < n; v++) {
            uint64_t cnt;
            if (p[v + 2].revents && read(p[v + 2].fd, &cnt, sizeof(cnt)) == sizeof(cnt))
                printf("interrupt on vector %u (%" PRIu64 ")\n", v, cnt);
        }
    }
    ivshmem_client_close(&c);
    return 0;
}
