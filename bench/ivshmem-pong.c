/* A host peer of an ivshmem server that answers every ring of its vector 0 with a ring of vector
 * 0 of the peer whose id is the little-endian dword at OFFSET of the shared memory (a pinging
 * guest writes its own id there first): the far end of the guest doorbell round trips that
 * bench/ivshmem-guests.sh measures, the same for qkvm's device and QEMU's.
 *   ivshmem-pong SOCKET OFFSET   -> "pong id N" on stdout, then runs until killed */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ivshmem/ivshmem.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ivshmem-pong SOCKET OFFSET\n");
        return 1;
    }
    struct ivshmem_client c;
    int r;
    if ((r = ivshmem_client_connect(&c, argv[1], 1)) || (r = ivshmem_client_handshake(&c))) {
        fprintf(stderr, "ivshmem-pong: %s\n", r == -EPROTO ? c.err : strerror(-r));
        return 1;
    }
    uint64_t off = strtoull(argv[2], NULL, 0);
    if (off > c.shm_size - 4 || c.shm_size < 4) {
        fprintf(stderr, "ivshmem-pong: offset %s is past the memory\n", argv[2]);
        return 1;
    }
    volatile uint32_t *target = mmap(NULL, c.shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, c.shm_fd, 0);
    if (target == MAP_FAILED) {
        fprintf(stderr, "ivshmem-pong: cannot map the memory: %s\n", strerror(errno));
        return 1;
    }
    target = (volatile uint32_t *)((volatile uint8_t *)target + off);
    fcntl(c.sock, F_SETFL, fcntl(c.sock, F_GETFL) | O_NONBLOCK);
    printf("pong id %lld\n", (long long)c.id);
    fflush(stdout);
    for (;;) {
        struct pollfd p[2] = { { .fd = c.sock, .events = POLLIN }, { .fd = c.self.nfds ? c.self.fds[0] : -1, .events = POLLIN } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return 1;
        if (p[1].revents & POLLIN) {
            uint64_t n;
            if (read(p[1].fd, &n, sizeof(n)) == sizeof(n))
                ivshmem_client_notify(&c, *target, 0);
        }
        if (p[0].revents) {
            enum ivshmem_event ev;
            while ((r = ivshmem_client_recv(&c, &ev)) == 0)
                ;
            if (r != -EAGAIN) {
                fprintf(stderr, "ivshmem-pong: server: %s\n", r == -EPROTO ? c.err : strerror(-r));
                return 1;
            }
        }
    }
}
