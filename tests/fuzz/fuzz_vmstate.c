/* libFuzzer target: the device state loader (vm/vmstate.c) on a whole machine built by
 * machine_create under the tcg accelerator, two CPUs, with the fixed devices (serial, RTC, ACPI
 * PM, PCI host, PIC, IOAPIC, PIT, local APICs) and a virtio-rng. Every input is loaded as a
 * stream; with the first byte odd, the rest gets a correct checksum appended so the fuzzer gets
 * past the CRC into the sections and the devices' checks. A crash, a sanitizer report or a
 * load that succeeds without the state saving back to a stream that loads again is a failure.
 * QKVM_VMSTATE_SEED=PATH writes the machine's own stream there (the seed corpus) and exits.
 *   built and run by tests/integration/vmstate-fuzz.sh */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "util/log.h"
#include "util/parse.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

static struct machine m;
static struct machine_config cfg;
static char bios[64];

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
        _exit(0);   /* libFuzzer takes exit() for a failure */
    }
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
