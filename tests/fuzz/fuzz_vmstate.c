/* libFuzzer target: the device state loader (vm/vmstate.c) on a whole machine built by
 * machine_create under the tcg accelerator, two CPUs, with the fixed devices (serial, RTC, ACPI
 * PM, PCI host, PIC, IOAPIC, PIT, local APICs), a virtio-rng and a virtio-net card (on one end of
 * a datagram socket pair, as in test_virtio_net: its section has a variable-length packet).
 * Every input is loaded as a stream; with the first byte odd, the rest gets a correct checksum
 * appended so the fuzzer gets past the CRC into the sections and the devices' checks. A crash, a sanitizer report or a
 * load that succeeds without the state saving back to a stream that loads again is a failure.
 * With bit 1 of the first byte set, the rest is the head of a mapped-ram file instead
 * (vm/mapped_ram.h, its checksum fixed up likewise): parsed as a file of len * 65536 bytes, its
 * pointers must stay inside the input, and its device state goes to the loader.
 * QKVM_VMSTATE_SEED=PATH writes the machine's own stream there (the seed corpus), the head of a
 * mapped-ram file of the machine to PATH.mapped, the stream with a packet waiting in the card to
 * PATH.net (checked to load), and exits.
 *   built and run by tests/integration/vmstate-fuzz.sh */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accel/accel.h"
#include "util/log.h"
#include "util/parse.h"
#include "vm/machine.h"
#include "vm/mapped_ram.h"
#include "vm/migration.h"
#include "vm/vmstate.h"

static struct machine m;
static struct machine_config cfg;
static char bios[64];
static int net_peer = -1;               /* the other end of the card's back-end, kept open */

/* buf (len bytes, from vmstate_save) with the card's section carrying a waiting 72-byte packet
 * (vnet header and a 60-byte frame): a new malloc'd stream in *out, or abort. */
static void fuzz_net_seed(const uint8_t *buf, size_t len, uint8_t **out, size_t *out_len)
{
    size_t i = 12;
    for (; i + 24 < len; i++)
        if (buf[i] == 1 && buf[i + 1] == 10 && !memcmp(buf + i + 2, "virtio-net", 10))
            break;
    size_t p = i + 2 + 10 + 12, old = 6 + 1 + 4;
    if (p + old > len)
        abort();
    uint8_t pay[6 + 1 + 4 + 72] = { 0 };
    memcpy(pay, buf + p, 6);
    pay[6] = 1;
    pay[7] = 72;
    memset(pay + 11 + 12, 0xff, 6);     /* to everyone, from the card's MAC */
    memcpy(pay + 11 + 18, buf + p, 6);
    for (int k = 24; k < 72; k++)
        pay[11 + k] = (uint8_t)k;
    size_t n = len - old + sizeof(pay);
    uint8_t *t = malloc(n);
    if (!t)
        abort();
    memcpy(t, buf, p);
    for (int k = 0; k < 4; k++)
        t[p - 4 + k] = (uint8_t)(sizeof(pay) >> (8 * k));
    memcpy(t + p, pay, sizeof(pay));
    memcpy(t + p + sizeof(pay), buf + p + old, len - p - old);
    uint32_t c = vmstate_crc32(t, n - 4);
    for (int k = 0; k < 4; k++)
        t[n - 4 + k] = (uint8_t)(c >> (8 * k));
    *out = t;
    *out_len = n;
}

static void fuzz_machine_create(void)
{
    snprintf(bios, sizeof(bios), "/tmp/qkvm-fuzz-vmstate-%d.bin", (int)getpid());
    FILE *b = fopen(bios, "wb");
    if (!b)
        abort();
    for (int i = 0; i < 65536; i++)
        fputc(0xf4, b);   /* HLT: the machine is built, never run */
    fclose(b);
    cfg = (struct machine_config){ .type = MACHINE_DIRECT, .ram_size = 16 << 20, .ncpus = 2, .serial = "none",
                                   .bios = bios, .accel = &accel_tcg };
    if (keyval_parse("virtio-rng-pci,addr=3", "driver", &cfg.devices[cfg.ndevices++]))
        abort();
    int sv[2];
    char net[128];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv))
        abort();
    net_peer = sv[0];
    snprintf(net, sizeof(net), "virtio-net-pci,addr=4,netdev=tap,,id=n0,,fd=%d,,vnet_hdr=on", sv[1]);
    if (keyval_parse(net, "driver", &cfg.devices[cfg.ndevices++]))
        abort();
    int ret = machine_create(&m, &cfg);
    unlink(bios);
    if (ret)
        abort();
    const char *seed = getenv("QKVM_VMSTATE_SEED");
    if (seed) {
        uint8_t *buf;
        size_t len;
        FILE *f = fopen(seed, "wb");
        if (vmstate_save(&m, &buf, &len) || !f || fwrite(buf, 1, len, f) != len || fclose(f))
            abort();
        char path[4096], why[256];
        snprintf(path, sizeof(path), "%s.mapped", seed);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        struct mapped_ram_stats st;
        struct mapped_ram_header h;
        uint8_t *head;
        if (fd < 0 || mapped_ram_save(&m, fd, buf, len, NULL, &st, why, sizeof(why)) ||
            mapped_ram_read_head(fd, &head, &h, why, sizeof(why)) ||
            ftruncate(fd, (off_t)(h.dev + h.dev_len + 5 - head)))   /* the head alone */
            abort();
        uint8_t *nbuf;
        size_t nlen;
        fuzz_net_seed(buf, len, &nbuf, &nlen);
        snprintf(path, sizeof(path), "%s.net", seed);
        FILE *nf = fopen(path, "wb");
        if (vmstate_load(&m, nbuf, nlen, why, sizeof(why))) {
            fprintf(stderr, "the seed with a waiting packet does not load: %s\n", why);
            abort();
        }
        if (!nf || fwrite(nbuf, 1, nlen, nf) != nlen || fclose(nf))
            abort();
        _exit(0);   /* libFuzzer takes exit() for a failure */
    }
}

static uint64_t fuzz_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A mapped-ram head in in[0, len): with fix, its checksum is made right where the layout puts
 * it (after the bitmap and the device record the input declares). */
static void fuzz_mapped_ram(uint8_t *in, size_t len, bool fix)
{
    if (fix && len >= 57) {
        uint64_t at = 57 + fuzz_le(in + 41, 8);
        if (at >= 57 && at + 5 <= len) {
            uint64_t end = at + 5 + fuzz_le(in + at + 1, 4);
            if (end + 5 <= len) {
                uint32_t c = migration_crc32(0, in, end + 1);
                for (int i = 0; i < 4; i++)
                    in[end + 1 + i] = (uint8_t)(c >> (8 * i));
            }
        }
    }
    struct mapped_ram_header h;
    size_t need = 0;
    char why[256] = "";
    uint64_t file_size = (uint64_t)len << 16;
    int ret = mapped_ram_parse(in, len, file_size, &h, &need, why, sizeof(why));
    if (ret == -EAGAIN) {
        if (need <= len || need > file_size)
            __builtin_trap();
        return;
    }
    if (ret) {
        if (!why[0] || strchr(why, '\n'))
            __builtin_trap();
        return;
    }
    if (h.bitmap < in || h.bitmap + h.bitmap_len > in + len || h.dev < in || h.dev + h.dev_len > in + len ||
        h.pages_offset % MAPPED_RAM_ALIGN || h.pages_offset + h.ram_size > file_size)
        __builtin_trap();
    if (h.ram_size == m.ram_size && vmstate_load(&m, h.dev, h.dev_len, why, sizeof(why)) && (!why[0] || strchr(why, '\n')))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!m.cfg) {
        fuzz_machine_create();
    }
    if (size < 1)
        return 0;
    uint8_t *in = malloc(size + 4);
    if (!in)
        return 0;
    size_t len = size - 1;
    memcpy(in, data + 1, len);
    if (data[0] & 1) {
        uint32_t c = vmstate_crc32(in, len);
        for (int i = 0; i < 4; i++)
            in[len++] = (uint8_t)(c >> (8 * i));
    }
    char why[256];
    if (data[0] & 2) {
        fuzz_mapped_ram(in, len, data[0] & 1);
        free(in);
        return 0;
    }
    if (!vmstate_load(&m, in, len, why, sizeof(why))) {
        /* what loaded must save and load again */
        uint8_t *buf;
        size_t n;
        if (vmstate_save(&m, &buf, &n) || vmstate_load(&m, buf, n, why, sizeof(why)))
            __builtin_trap();
        free(buf);
    } else if (!why[0] || strchr(why, '\n')) {
        __builtin_trap();   /* a refusal says why, on one line */
    }
    free(in);
    return 0;
}
