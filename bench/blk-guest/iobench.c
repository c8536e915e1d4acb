/* Runs inside the benchmark guest (static, no libc of the guest's needed): sequential or 4 KiB
 * random reads or writes on a block device with O_DIRECT, timed by the guest's clock.
 *   iobench DEV seqread|seqwrite|randread|randwrite BLOCK_BYTES COUNT SPAN_MIB
 * prints "iobench MODE MBps=X iops=Y". Writes end with fdatasync (a FLUSH request). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: iobench DEV seqread|seqwrite|randread|randwrite BLOCK COUNT SPAN_MIB\n");
        return 2;
    }
    const char *mode = argv[2];
    int write = strstr(mode, "write") != NULL, rnd = !strncmp(mode, "rand", 4);
    size_t bs = strtoul(argv[3], NULL, 0);
    long count = strtol(argv[4], NULL, 0);
    unsigned long long span = strtoull(argv[5], NULL, 0) << 20;
    int fd = open(argv[1], (write ? O_RDWR : O_RDONLY) | O_DIRECT);
    void *buf;
    if (fd < 0 || !bs || bs % 512 || span < bs || posix_memalign(&buf, 4096, bs)) {
        perror(argv[1]);
        return 1;
    }
    memset(buf, 0x5a, bs);
    unsigned long long blocks = span / bs, x = 88172645463325252ull;
    double t0 = now();
    for (long i = 0; i < count; i++) {
        unsigned long long b = i % blocks;
        if (rnd) {   /* xorshift: the same offsets in every VMM */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b = x % blocks;
        }
        ssize_t n = write ? pwrite(fd, buf, bs, (off_t)(b * bs)) : pread(fd, buf, bs, (off_t)(b * bs));
        if (n != (ssize_t)bs) {
            perror("io");
            return 1;
        }
    }
    if (write && fdatasync(fd)) {
        perror("fdatasync");
        return 1;
    }
    double dt = now() - t0;
    printf("iobench %s MBps=%.1f iops=%.0f\n", mode, count * (double)bs / dt / 1e6, count / dt);
    return 0;
}
