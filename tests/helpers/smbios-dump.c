/* Writes qkvm's SMBIOS tables in dmidecode's --dump-bin layout (entry point at 0, table at 32),
 * so that `dmidecode --from-dump` can judge them.
 *   smbios-dump FILE [-m SIZE] [-smp N] [-uuid UUID] [-smbios OPTS]... [-legacy] */
#include "util/log.h"
#include "util/parse.h"
#include "vm/smbios.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    log_set_prog(argv[0]);
    if (argc < 2) {
        log_error("usage: smbios-dump FILE [-m SIZE] [-smp N] [-uuid UUID] [-smbios OPTS]... [-legacy]");
        return 2;
    }
    struct smbios_config c;
    smbios_config_init(&c);
    c.ram_size = 128 << 20;
    bool legacy = false;
    char why[256];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (strcmp(a, "-legacy") == 0) {
            legacy = true;
            continue;
        }
        if (!v) {
            log_error("%s needs a value", a);
            return 2;
        }
        i++;
        if (strcmp(a, "-m") == 0) {
            if (parse_size(v, 1 << 20, &c.ram_size)) {
                log_error("bad size '%s'", v);
                return 2;
            }
        } else if (strcmp(a, "-smp") == 0) {
            if (parse_u64(v, 1, SMBIOS_MAX_CPUS, &n)) {
                log_error("bad -smp '%s'", v);
                return 2;
            }
            c.cpus = (unsigned)n;
        } else if (strcmp(a, "-uuid") == 0) {
            if (smbios_parse_uuid(v, c.uuid)) {
                log_error("bad -uuid '%s'", v);
                return 2;
            }
        } else if (strcmp(a, "-smbios") == 0) {
            if (smbios_parse_option(&c, v, why, sizeof(why))) {
                log_error("-smbios: %s", why);
                return 2;
            }
        } else {
            log_error("unknown option '%s'", a);
            return 2;
        }
    }
    size_t cap = smbios_table_size_max(&c), tlen, elen;
    uint8_t *buf = calloc(1, 32 + cap);
    uint8_t ep[SMBIOS_EP_SIZE];
    int r = buf ? smbios_build(&c, 32, buf + 32, cap, &tlen, ep, sizeof(ep), &elen) : -ENOMEM;
    if (r) {
        log_error("smbios_build: %s", strerror(-r));
        return 1;
    }
    if (legacy && elen < SMBIOS_EP_LEGACY_OFFSET + 31) {
        log_error("no 32-bit entry point for this table");
        return 1;
    }
    memcpy(buf, legacy ? ep + SMBIOS_EP_LEGACY_OFFSET : ep, legacy ? 31 : 24);
    FILE *f = fopen(argv[1], "wb");
    if (!f || fwrite(buf, 1, 32 + tlen, f) != 32 + tlen || fclose(f)) {
        log_error("cannot write %s: %s", argv[1], strerror(errno));
        return 1;
    }
    free(buf);
    return 0;
}
