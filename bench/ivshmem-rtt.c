/* Doorbell round trip between two host peers of an ivshmem server: peer A rings B's vector 0, B
 * (another process) rings A back as soon as its eventfd turns readable. The floor any ivshmem
 * device's doorbell path adds its own costs to.
 *   ivshmem-rtt SOCKET [ROUNDS]   -> "ivshmem doorbell round trip: mean N us, median N us" */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ivshmem/ivshmem.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* Reads messages until c knows its own vector 0 and peer's vector 0. */
static int settle(struct ivshmem_client *c, int64_t peer)
{
    while (!c->self.nfds || !ivshmem_client_find_peer(c, peer) ||
           !ivshmem_client_find_peer(c, peer)->nfds) {
        enum ivshmem_event ev;
        int r = ivshmem_client_recv(c, &ev);
        if (r)
            return r;
    }
    return 0;
}

static void wait_ring(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    uint64_t n;
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    if (read(fd, &n, sizeof(n)) != sizeof(n))
        exit(1);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ivshmem-rtt SOCKET [ROUNDS]\n");
        return 1;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 10000;
    if (rounds < 1)
        rounds = 1;
    struct ivshmem_client a, b;
    int r;
    if ((r = ivshmem_client_connect(&a, argv[1], 1)) || (r = ivshmem_client_handshake(&a)) ||
        (r = ivshmem_client_connect(&b, argv[1], 1)) || (r = ivshmem_client_handshake(&b)) ||
        (r = settle(&a, b.id)) || (r = settle(&b, a.id))) {
        fprintf(stderr, "ivshmem-rtt: %s\n", strerror(-r));
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < rounds; i++) {
            wait_ring(b.self.fds[0]);
            ivshmem_client_notify(&b, a.id, 0);
        }
        _exit(0);
    }
    double *t = malloc(sizeof(double) * (size_t)rounds), sum = 0;
    for (int i = 0; i < rounds; i++) {
        double t0 = now_us();
        ivshmem_client_notify(&a, b.id, 0);
        wait_ring(a.self.fds[0]);
        t[i] = now_us() - t0;
        sum += t[i];
    }
    waitpid(pid, NULL, 0);
    qsort(t, (size_t)rounds, sizeof(double), cmp);
    printf("ivshmem doorbell round trip: mean %.1f us, median %.1f us (%d rounds)\n", sum / rounds,
           t[rounds / 2], rounds);
    free(t);
    ivshmem_client_close(&a);
    ivshmem_client_close(&b);
    return 0;
}
