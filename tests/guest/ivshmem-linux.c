/* Runs inside a Linux guest (built static at test time by tests/integration/ivshmem-linux.sh and
 * bench/ivshmem-guests.sh): reaches an ivshmem device with no driver of its own. BAR0 and BAR2
 * through /sys/bus/pci/devices/.../resource0 and resource2; interrupts either through
 * uio_pci_generic (INTx) or, where the device only has MSI-X (QEMU's ivshmem-doorbell), by
 * pointing MSI-X vector 0's message at a dword of BAR2 itself: an MSI is a memory write, so each
 * ring lands there as the message data, and the program sees it by looking.
 *   ivshmem-linux info                  ivpos=N bar2=BYTES
 *   ivshmem-linux write OFF TEXT        TEXT and a NUL into BAR2 at OFF
 *   ivshmem-linux read OFF              the string in BAR2 at OFF
 *   ivshmem-linux ring PEER VECTOR      one doorbell
 *   ivshmem-linux wait MS [uio]         irq=1 when vector 0 (INTx with uio) fires within MS
 *   ivshmem-linux ping PEER ROUNDS      rings PEER vector 0, waits for the answer; RTT median
 *                                       (first our id at BAR2's last 4 KiB: whom a host ponger
 *                                       answers, bench/ivshmem-pong.c)
 *   ivshmem-linux pong PEER ROUNDS      answers each ring of vector 0 with a ring of PEER
 *   ivshmem-linux bw MIB                BAR2 write and read bandwidth over MIB MiB */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dev[300];
static volatile uint32_t *regs;
static uint8_t *mem;
static size_t mem_size;
static volatile uint32_t *msg;    /* where MSI-X vector 0's message lands */
static int uio_fd = -1, cfg_fd = -1;
static void die(const char *what);

/* uio_pci_generic's handler masks INTx in the command register; the user unmasks it there
 * (Documentation/driver-api/uio-howto: there is no irqcontrol write for it). */
static void uio_unmask(void)
{
    uint16_t cmd;
    if (pread(cfg_fd, &cmd, 2, 4) != 2)
        die("config read");
    cmd &= (uint16_t)~0x400;
    if (pwrite(cfg_fd, &cmd, 2, 4) != 2)
        die("config write");
}
static volatile uint32_t *msix_entry;

/* A message aimed at a page that dies with us must not outlive us: vector 0 masked again. */
static void mask_msix(void)
{
    if (msix_entry)
        msix_entry[3] = 1;
}

static void die(const char *what)
{
    fprintf(stderr, "ivshmem-linux: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static unsigned read_hex(const char *path)
{
    char buf[32] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = 0;
    fclose(f);
    return (unsigned)strtoul(buf, NULL, 16);
}

static void find_device(void)
{
    DIR *d = opendir("/sys/bus/pci/devices");
    struct dirent *e;
    char p[400];
    if (!d)
        die("/sys/bus/pci/devices");
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/vendor", e->d_name);
        unsigned v = read_hex(p);
        snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/device", e->d_name);
        if (v == 0x1af4 && read_hex(p) == 0x1110) {
            snprintf(dev, sizeof(dev), "/sys/bus/pci/devices/%s", e->d_name);
            closedir(d);
            return;
        }
    }
    errno = ENODEV;
    die("no ivshmem device (1af4:1110)");
}

static void *map_resource(int n, size_t *size)
{
    char p[400];
    struct stat st;
    snprintf(p, sizeof(p), "%s/resource%d", dev, n);
    int fd = open(p, O_RDWR | O_SYNC);
    if (fd < 0 || fstat(fd, &st) < 0)
        die(p);
    size_t len = ((size_t)st.st_size + 4095) & ~(size_t)4095;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        die(p);
    close(fd);
    if (size)
        *size = (size_t)st.st_size;
    return m;
}

static void open_device(void)
{
    char p[400];
    find_device();
    snprintf(p, sizeof(p), "%s/enable", dev);
    int fd = open(p, O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "1", 1) < 0) { /* bound to uio_pci_generic: enabled already */ }
        close(fd);
    }
    regs = map_resource(0, NULL);
    mem = map_resource(2, &mem_size);
}

/* BAR2's bus address: the first number of line 3 of the device's resource file. */
static uint64_t bar2_address(void)
{
    char p[400], line[200];
    unsigned long long start = 0;
    snprintf(p, sizeof(p), "%s/resource", dev);
    FILE *f = fopen(p, "r");
    if (!f)
        die(p);
    for (int i = 0; i < 3 && fgets(line, sizeof(line), f); i++)
        start = strtoull(line, NULL, 16);
    fclose(f);
    if (!start) {
        errno = ENXIO;
        die("BAR2 has no address");
    }
    return start;
}

/* MSI-X vector 0 writes its data into a dword of BAR2 of our own (a peer-to-peer write, as any
 * bus master may do), where we see it; bus mastering on so that the device may write at all.
 * Each peer has its own dword in BAR2's last 2 KiB, by its id. */
static void setup_msix(void)
{
    char p[400];
    uint8_t cfg[256];
    snprintf(p, sizeof(p), "%s/config", dev);
    int fd = open(p, O_RDWR);
    if (fd < 0 || pread(fd, cfg, sizeof(cfg), 0) != (ssize_t)sizeof(cfg))
        die(p);
    unsigned cap = cfg[0x34];
    while (cap && cfg[cap] != 0x11)
        cap = cfg[cap + 1];
    if (!cap) {
        errno = ENOTSUP;
        die("no MSI-X capability");
    }
    uint32_t table;
    memcpy(&table, cfg + cap + 4, 4);
    volatile uint32_t *bar = map_resource((int)(table & 7), NULL);
    volatile uint32_t *entry = bar + (table & ~7u) / 4;
    size_t slot = mem_size - 2048 + 4 * (regs[2] & 255);
    msg = (volatile uint32_t *)(mem + slot);
    *msg = 0;
    uint64_t pa = bar2_address() + slot;
    entry[0] = (uint32_t)pa;
    entry[1] = (uint32_t)(pa >> 32);
    entry[2] = 0x1000;      /* vector 0's data */
    entry[3] = 0;           /* unmasked */
    msix_entry = entry;
    atexit(mask_msix);
    uint16_t cmd = (uint16_t)(cfg[4] | cfg[5] << 8) | 0x6;   /* memory, bus master */
    uint16_t ctl = (uint16_t)((cfg[cap + 2] | cfg[cap + 3] << 8) | 0x8000) & ~0x4000;
    if (pwrite(fd, &cmd, 2, 4) != 2 || pwrite(fd, &ctl, 2, cap + 2) != 2)
        die("config write");
    close(fd);
}

static void setup_uio(void)
{
    char p[400];
    snprintf(p, sizeof(p), "%s/uio", dev);
    DIR *d = opendir(p);
    struct dirent *e;
    if (!d)
        die("not bound to uio_pci_generic");
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "uio", 3))
            break;
    if (!e)
        die("no uio device");
    snprintf(p, sizeof(p), "/dev/%s", e->d_name);
    closedir(d);
    uio_fd = open(p, O_RDWR);
    if (uio_fd < 0)
        die(p);
    snprintf(p, sizeof(p), "%s/config", dev);
    cfg_fd = open(p, O_RDWR);
    if (cfg_fd < 0)
        die(p);
    /* INTx only while MSI-X is off (an earlier run of ours may have turned it on) */
    uint8_t cfg[256];
    if (pread(cfg_fd, cfg, sizeof(cfg), 0) != (ssize_t)sizeof(cfg))
        die("config read");
    for (unsigned cap = cfg[0x34]; cap; cap = cfg[cap + 1]) {
        if (cfg[cap] == 0x11) {
            uint16_t ctl = (uint16_t)((cfg[cap + 2] | cfg[cap + 3] << 8) & ~0x8000);
            if (pwrite(cfg_fd, &ctl, 2, cap + 2) != 2)
                die("config write");
            break;
        }
    }
    regs[0] = 0xffffffff;   /* Interrupt Mask: INTx follows Status */
    (void)regs[1];          /* Status: read clears */
    uio_unmask();
}

/* 1 when vector 0 fired within ms */
static int wait_irq(int ms)
{
    if (uio_fd >= 0) {
        struct pollfd p = { .fd = uio_fd, .events = POLLIN };
        uint32_t n;
        if (poll(&p, 1, ms) <= 0 || read(uio_fd, &n, 4) != 4)
            return 0;
        (void)regs[1];
        uio_unmask();
        return 1;
    }
    double end = now_us() + ms * 1000.0;
    while (!*msg) {
        if (now_us() > end)
            return 0;
    }
    *msg = 0;
    return 1;
}

static void ring(unsigned peer, unsigned vector)
{
    regs[3] = peer << 16 | vector;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ivshmem-linux info|write|read|ring|wait|ping|pong|bw ...\n");
        return 1;
    }
    const char *cmd = argv[1];
    open_device();
    if (!strcmp(cmd, "info")) {
        printf("ivpos=%u bar2=%zu\n", regs[2], mem_size);
    } else if (!strcmp(cmd, "write") && argc == 4) {
        size_t off = strtoul(argv[2], NULL, 0), n = strlen(argv[3]) + 1;
        if (off > mem_size || n > mem_size - off)
            return fprintf(stderr, "ivshmem-linux: past the end\n"), 1;
        memcpy(mem + off, argv[3], n);
    } else if (!strcmp(cmd, "read") && argc == 3) {
        size_t off = strtoul(argv[2], NULL, 0);
        if (off >= mem_size)
            return fprintf(stderr, "ivshmem-linux: past the end\n"), 1;
        printf("%.*s\n", (int)strnlen((char *)mem + off, mem_size - off), (char *)mem + off);
    } else if (!strcmp(cmd, "ring") && argc == 4) {
        ring((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
    } else if (!strcmp(cmd, "wait") && argc >= 3) {
        if (argc == 4 && !strcmp(argv[3], "uio"))
            setup_uio();
        else
            setup_msix();
        printf("ready\n");
        fflush(stdout);
        printf("irq=%d\n", wait_irq(atoi(argv[2])));
    } else if ((!strcmp(cmd, "ping") || !strcmp(cmd, "pong")) && argc == 4) {
        unsigned peer = (unsigned)atoi(argv[2]);
        int rounds = atoi(argv[3]);
        if (rounds < 1 || rounds > 100000)
            return fprintf(stderr, "ivshmem-linux: rounds 1-100000\n"), 1;
        setup_msix();
        double *t = calloc((size_t)rounds, sizeof(*t));
        int done = 0;
        if (!strcmp(cmd, "pong")) {
            printf("ready\n");
            fflush(stdout);
            for (; done < rounds && wait_irq(120000); done++)
                ring(peer, 0);
            printf("ponged=%d\n", done);
            return done == rounds ? 0 : 1;
        }
        *(volatile uint32_t *)(mem + mem_size - 4096) = regs[2];
        for (; done < rounds; done++) {
            double t0 = now_us();
            ring(peer, 0);
            if (!wait_irq(10000))
                break;
            t[done] = now_us() - t0;
        }
        if (done < rounds)
            return printf("answered=%d of %d\n", done, rounds), 1;
        qsort(t, (size_t)rounds, sizeof(*t), cmp_double);
        printf("rtt_median_us=%.1f rounds=%d\n", t[rounds / 2], rounds);
    } else if (!strcmp(cmd, "bw") && argc == 3) {
        size_t total = strtoul(argv[2], NULL, 0) << 20, chunk = mem_size < (1u << 20) ? mem_size : 1u << 20;
        uint8_t *buf = malloc(chunk);
        memset(buf, 0x5a, chunk);
        double t0 = now_us();
        for (size_t done = 0; done < total; done += chunk)
            memcpy(mem + (done % mem_size / chunk) * chunk, buf, chunk);
        double t1 = now_us();
        for (size_t done = 0; done < total; done += chunk)
            memcpy(buf, mem + (done % mem_size / chunk) * chunk, chunk);
        double t2 = now_us();
        /* the same copies between two buffers of guest RAM: what BAR2 is measured against */
        uint8_t *ram = malloc(mem_size);
        memset(ram, 0xa5, mem_size);
        double t3 = now_us();
        for (size_t done = 0; done < total; done += chunk)
            memcpy(ram + (done % mem_size / chunk) * chunk, buf, chunk);
        double t4 = now_us();
        printf("bw_write_mibs=%.0f bw_read_mibs=%.0f bw_ram_mibs=%.0f\n", (total >> 20) / ((t1 - t0) / 1e6),
               (total >> 20) / ((t2 - t1) / 1e6), (total >> 20) / ((t4 - t3) / 1e6));
    } else {
        fprintf(stderr, "ivshmem-linux: bad command\n");
        return 1;
    }
    return 0;
}
