/* SMBIOS 3.0 structure table and entry points (DMTF DSP0134). Offsets in comments are the
 * spec's, within each structure's formatted area. */
#include "vm/smbios.h"
#include "util/parse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DIMM_MAX_SIZE (16ull << 30)   /* QEMU's split, so guests see the same DIMM layout */
#define DIMM_MAX_COUNT 4096
#define STRS_MAX 8

enum {
    T0_LEN = 0x18, T1_LEN = 0x1b, T3_LEN = 0x16, T4_LEN = 0x30, T16_LEN = 0x17, T17_LEN = 0x28,
    T19_LEN = 0x1f, T32_LEN = 0x0b, T127_LEN = 0x04,
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static void set_str(char *dst, const char *src)
{
    snprintf(dst, SMBIOS_STR_MAX + 1, "%s", src);
}

void smbios_config_init(struct smbios_config *c)
{
    memset(c, 0, sizeof(*c));
    set_str(c->bios_vendor, "qkvm");
    set_str(c->bios_version, "1.0");
    set_str(c->bios_date, "01/01/2025");
    c->bios_major = 0xff;
    c->bios_minor = 0xff;
    set_str(c->manufacturer, "qkvm");
    set_str(c->product, "qkvm Virtual Machine");
    set_str(c->version, "1.0");
    set_str(c->chassis_manufacturer, "qkvm");
    set_str(c->cpu_manufacturer, "qkvm");
    c->cpu_speed_mhz = 2000;
    c->cpus = 1;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int smbios_parse_uuid(const char *text, uint8_t uuid[16])
{
    uint8_t out[16];
    if (strlen(text) != 36)
        return -EINVAL;
    int b = 0;
    for (int i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i++] != '-')
                return -EINVAL;
            continue;
        }
        int hi = hexval(text[i]), lo = hexval(text[i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[b++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    memcpy(uuid, out, 16);
    return 0;
}

struct field {
    const char *key;
    size_t offset;   /* into struct smbios_config, a char[SMBIOS_STR_MAX + 1] */
};
#define FIELD(k, m) { k, offsetof(struct smbios_config, m) }

static const struct field t0_fields[] = {
    FIELD("vendor", bios_vendor), FIELD("version", bios_version), FIELD("date", bios_date),
};
static const struct field t1_fields[] = {
    FIELD("manufacturer", manufacturer), FIELD("product", product), FIELD("version", version),
    FIELD("serial", serial), FIELD("sku", sku), FIELD("family", family),
};
static const struct field t3_fields[] = {
    FIELD("manufacturer", chassis_manufacturer), FIELD("version", chassis_version),
    FIELD("serial", chassis_serial), FIELD("asset", chassis_asset), FIELD("sku", chassis_sku),
};

static int take_strings(struct smbios_config *c, struct kvlist *l, const struct field *f, size_t n,
                        char *why, size_t whylen)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = keyval_get(l, f[i].key);
        if (!v)
            continue;
        if (strlen(v) > SMBIOS_STR_MAX) {
            snprintf(why, whylen, "%s is longer than %d characters", f[i].key, SMBIOS_STR_MAX);
            return -EINVAL;
        }
        set_str((char *)c + f[i].offset, v);
    }
    return 0;
}

static int parse_release(const char *v, uint8_t *major, uint8_t *minor)
{
    const char *dot = strchr(v, '.');
    char m[16];
    uint64_t a, b;
    if (!dot || (size_t)(dot - v) >= sizeof(m))
        return -EINVAL;
    memcpy(m, v, (size_t)(dot - v));
    m[dot - v] = 0;
    if (parse_u64(m, 0, 254, &a) || parse_u64(dot + 1, 0, 254, &b))
        return -EINVAL;
    *major = (uint8_t)a;
    *minor = (uint8_t)b;
    return 0;
}

static int parse_into(struct smbios_config *c, struct kvlist *l, char *why, size_t whylen)
{
    const char *type = keyval_get(l, "type");
    uint64_t t;
    if (!type) {
        snprintf(why, whylen, "type= is missing (only type=0, 1 and 3 are supported)");
        return -EINVAL;
    }
    if (parse_u64(type, 0, 255, &t) || (t != 0 && t != 1 && t != 3)) {
        snprintf(why, whylen, "type=%s is not supported (0, 1 and 3 are)", type);
        return -EINVAL;
    }
    int r = 0;
    if (t == 0) {
        r = take_strings(c, l, t0_fields, sizeof(t0_fields) / sizeof(t0_fields[0]), why, whylen);
        const char *v = keyval_get(l, "release");
        if (!r && v && parse_release(v, &c->bios_major, &c->bios_minor)) {
            snprintf(why, whylen, "release=%s is not MAJOR.MINOR (0..254 each)", v);
            r = -EINVAL;
        }
        v = keyval_get(l, "uefi");
        if (!r && v && parse_bool(v, &c->uefi)) {
            snprintf(why, whylen, "uefi=%s is not on or off", v);
            r = -EINVAL;
        }
    } else if (t == 1) {
        r = take_strings(c, l, t1_fields, sizeof(t1_fields) / sizeof(t1_fields[0]), why, whylen);
        const char *v = keyval_get(l, "uuid");
        if (!r && v && smbios_parse_uuid(v, c->uuid)) {
            snprintf(why, whylen, "uuid=%s is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", v);
            r = -EINVAL;
        }
    } else {
        r = take_strings(c, l, t3_fields, sizeof(t3_fields) / sizeof(t3_fields[0]), why, whylen);
    }
    const char *unused = keyval_unused(l);
    if (!r && unused) {
        snprintf(why, whylen, "type=%u has no parameter '%s'", (unsigned)t, unused);
        r = -EINVAL;
    }
    return r;
}

int smbios_parse_option(struct smbios_config *c, const char *opt, char *why, size_t whylen)
{
    struct kvlist l;
    if (keyval_parse(opt, NULL, &l)) {
        snprintf(why, whylen, "'%s' is not a list of key=value", opt);
        return -EINVAL;
    }
    /* Into a copy, so a bad option leaves the configuration as it was. */
    struct smbios_config tmp = *c;
    int r = parse_into(&tmp, &l, why, whylen);
    keyval_free(&l);
    if (!r)
        *c = tmp;
    return r;
}

/* The strings of one structure, numbered from 1 in the order added. */
struct strs {
    const char *v[STRS_MAX];
    int n;
};

static uint8_t str_add(struct strs *s, const char *v)
{
    if (!v || !*v || s->n == STRS_MAX)
        return 0;
    s->v[s->n++] = v;
    return (uint8_t)s->n;
}

struct writer {
    uint8_t *buf;
    size_t cap, len;
    bool overflow;
    uint16_t handle;
    uint16_t count;
    size_t max_struct;
};

/* Appends a formatted area (its header filled in here) and its string set; returns the handle. */
static uint16_t emit(struct writer *w, uint8_t *f, uint8_t type, uint8_t len, const struct strs *s)
{
    uint16_t h = w->handle++;
    f[0] = type;
    f[1] = len;
    put16(f + 2, h);
    size_t need = len;
    for (int i = 0; i < s->n; i++)
        need += strlen(s->v[i]) + 1;
    need += s->n ? 1 : 2;   /* the set ends with a second NUL; an empty set is two NULs */
    if (w->len + need > w->cap) {
        w->overflow = true;
        return h;
    }
    uint8_t *p = w->buf + w->len;
    memcpy(p, f, len);
    p += len;
    for (int i = 0; i < s->n; i++) {
        size_t n = strlen(s->v[i]) + 1;
        memcpy(p, s->v[i], n);
        p += n;
    }
    *p++ = 0;
    if (!s->n)
        *p++ = 0;
    w->len += need;
    w->count++;
    if (need > w->max_struct)
        w->max_struct = need;
    return h;
}

static void emit_type0(struct writer *w, const struct smbios_config *c)
{
    uint8_t f[T0_LEN] = { 0 };
    struct strs s = { 0 };
    f[0x04] = str_add(&s, c->bios_vendor);
    f[0x05] = str_add(&s, c->bios_version);
    put16(f + 0x06, 0xe800);                 /* starting segment: the last 96 KiB below 1 MiB */
    f[0x08] = str_add(&s, c->bios_date);
    f[0x09] = 0;                             /* ROM size: 64 KiB */
    put64(f + 0x0a, 1u << 3);                /* characteristics are not supported */
    f[0x12] = 0;
    /* Extension byte 2: bit 2 targeted content distribution, bit 4 "this is a virtual machine"
     * (what systemd-detect-virt reads in /sys/firmware/dmi/entries/0-0/raw), bit 3 UEFI. */
    f[0x13] = (1u << 2) | (1u << 4) | (c->uefi ? 1u << 3 : 0);
    f[0x14] = c->bios_major;
    f[0x15] = c->bios_minor;
    f[0x16] = 0xff;                          /* no embedded controller firmware */
    f[0x17] = 0xff;
    emit(w, f, 0, T0_LEN, &s);
}

static void emit_type1(struct writer *w, const struct smbios_config *c)
{
    uint8_t f[T1_LEN] = { 0 };
    struct strs s = { 0 };
    f[0x04] = str_add(&s, c->manufacturer);
    f[0x05] = str_add(&s, c->product);
    f[0x06] = str_add(&s, c->version);
    f[0x07] = str_add(&s, c->serial);
    /* SMBIOS 2.6+ 7.2.1: time_low, time_mid and time_hi_and_version are little-endian. */
    const uint8_t *u = c->uuid;
    uint8_t *d = f + 0x08;
    d[0] = u[3]; d[1] = u[2]; d[2] = u[1]; d[3] = u[0];
    d[4] = u[5]; d[5] = u[4];
    d[6] = u[7]; d[7] = u[6];
    memcpy(d + 8, u + 8, 8);
    f[0x18] = 0x06;                          /* wake-up type: power switch */
    f[0x19] = str_add(&s, c->sku);
    f[0x1a] = str_add(&s, c->family);
    emit(w, f, 1, T1_LEN, &s);
}

static void emit_type3(struct writer *w, const struct smbios_config *c)
{
    uint8_t f[T3_LEN] = { 0 };
    struct strs s = { 0 };
    f[0x04] = str_add(&s, c->chassis_manufacturer);
    f[0x05] = 0x01;                          /* type: other */
    f[0x06] = str_add(&s, c->chassis_version);
    f[0x07] = str_add(&s, c->chassis_serial);
    f[0x08] = str_add(&s, c->chassis_asset);
    f[0x09] = 0x03;                          /* boot-up, power supply, thermal state: safe */
    f[0x0a] = 0x03;
    f[0x0b] = 0x03;
    f[0x0c] = 0x02;                          /* security status: unknown */
    /* 0x0d OEM-defined, 0x11 height, 0x12 power cords, 0x13/0x14 no contained elements */
    f[0x15] = str_add(&s, c->chassis_sku);
    emit(w, f, 3, T3_LEN, &s);
}

static void emit_type4(struct writer *w, const struct smbios_config *c, unsigned i)
{
    uint8_t f[T4_LEN] = { 0 };
    struct strs s = { 0 };
    char sock[16];
    snprintf(sock, sizeof(sock), "CPU %u", i);
    f[0x04] = str_add(&s, sock);
    f[0x05] = 0x03;                          /* central processor */
    f[0x06] = 0x01;                          /* family: other */
    f[0x07] = str_add(&s, c->cpu_manufacturer);
    put32(f + 0x08, c->cpuid_1_eax);
    put32(f + 0x0c, c->cpuid_1_edx);
    f[0x10] = str_add(&s, c->cpu_version);
    put16(f + 0x14, c->cpu_speed_mhz);       /* max speed */
    put16(f + 0x16, c->cpu_speed_mhz);       /* current speed */
    f[0x18] = 0x41;                          /* socket populated, CPU enabled */
    f[0x19] = 0x01;                          /* upgrade: other */
    put16(f + 0x1a, 0xffff);                 /* no L1/L2/L3 cache structures */
    put16(f + 0x1c, 0xffff);
    put16(f + 0x1e, 0xffff);
    f[0x23] = 1;                             /* one core, one thread per socket, as -smp N */
    f[0x24] = 1;
    f[0x25] = 1;
    put16(f + 0x26, 1u << 2);                /* 64-bit capable */
    put16(f + 0x28, 0x01);                   /* family 2 */
    put16(f + 0x2a, 1);
    put16(f + 0x2c, 1);
    put16(f + 0x2e, 1);
    emit(w, f, 4, T4_LEN, &s);
}

static uint16_t emit_type16(struct writer *w, const struct smbios_config *c, unsigned ndimms)
{
    uint8_t f[T16_LEN] = { 0 };
    struct strs s = { 0 };
    f[0x04] = 0x01;                          /* location: other */
    f[0x05] = 0x03;                          /* use: system memory */
    f[0x06] = 0x06;                          /* error correction: multi-bit ECC, as QEMU */
    uint64_t kib = c->ram_size >> 10;
    if (kib < 0x80000000ull) {
        put32(f + 0x07, (uint32_t)kib);
    } else {
        put32(f + 0x07, 0x80000000u);        /* see the extended capacity, in bytes */
        put64(f + 0x0f, c->ram_size);
    }
    put16(f + 0x0b, 0xfffe);                 /* no memory error information */
    put16(f + 0x0d, (uint16_t)ndimms);
    return emit(w, f, 16, T16_LEN, &s);
}

static void emit_type17(struct writer *w, const struct smbios_config *c, uint16_t array,
                        unsigned i, uint64_t size)
{
    uint8_t f[T17_LEN] = { 0 };
    struct strs s = { 0 };
    char loc[16];
    snprintf(loc, sizeof(loc), "DIMM %u", i);
    put16(f + 0x04, array);
    put16(f + 0x06, 0xfffe);
    put16(f + 0x08, 0xffff);                 /* total and data width unknown */
    put16(f + 0x0a, 0xffff);
    uint64_t mib = (size + (1ull << 20) - 1) >> 20;
    if (mib < 0x7fff) {
        put16(f + 0x0c, (uint16_t)mib);
    } else {
        put16(f + 0x0c, 0x7fff);             /* see the extended size, in MiB */
        put32(f + 0x1c, (uint32_t)mib);
    }
    f[0x0e] = 0x09;                          /* form factor: DIMM */
    f[0x10] = str_add(&s, loc);
    f[0x12] = 0x07;                          /* type: RAM */
    put16(f + 0x13, 0x0002);                 /* type detail: other */
    f[0x17] = str_add(&s, c->manufacturer);
    emit(w, f, 17, T17_LEN, &s);
}

static void emit_type19(struct writer *w, uint16_t array, uint64_t start, uint64_t size)
{
    uint8_t f[T19_LEN] = { 0 };
    struct strs s = { 0 };
    uint64_t end = start + size - 1;
    if ((end >> 10) < 0xffffffffull) {
        put32(f + 0x04, (uint32_t)(start >> 10));
        put32(f + 0x08, (uint32_t)(end >> 10));
    } else {
        put32(f + 0x04, 0xffffffffu);        /* see the extended addresses, in bytes */
        put32(f + 0x08, 0xffffffffu);
        put64(f + 0x0f, start);
        put64(f + 0x17, end);
    }
    put16(f + 0x0c, array);
    f[0x0e] = 1;                             /* partition width */
    emit(w, f, 19, T19_LEN, &s);
}

static void emit_simple(struct writer *w, uint8_t type, uint8_t len)
{
    uint8_t f[T32_LEN] = { 0 };             /* type 32: boot status 0, "no errors" */
    struct strs s = { 0 };
    emit(w, f, type, len, &s);
}

static unsigned dimm_count(uint64_t ram)
{
    return (unsigned)((ram + DIMM_MAX_SIZE - 1) / DIMM_MAX_SIZE);
}

static int check_config(const struct smbios_config *c)
{
    if (c->cpus < 1 || c->cpus > SMBIOS_MAX_CPUS || c->ram_size < (1u << 20))
        return -EINVAL;
    if (c->ram_size > (uint64_t)DIMM_MAX_COUNT * DIMM_MAX_SIZE)
        return -EINVAL;
    if (c->nmem < 0 || c->nmem > SMBIOS_MEM_RANGES)
        return -EINVAL;
    uint64_t sum = 0;
    for (int i = 0; i < c->nmem; i++) {
        if (!c->mem[i].size || c->mem[i].start + c->mem[i].size < c->mem[i].start)
            return -EINVAL;
        sum += c->mem[i].size;
    }
    if (c->nmem && sum != c->ram_size)
        return -EINVAL;
    return 0;
}

size_t smbios_table_size_max(const struct smbios_config *c)
{
    const size_t str = SMBIOS_STR_MAX + 1;
    size_t cpus = c->cpus > SMBIOS_MAX_CPUS ? SMBIOS_MAX_CPUS : c->cpus;
    size_t dimms = dimm_count(c->ram_size);
    if (dimms > DIMM_MAX_COUNT)
        dimms = DIMM_MAX_COUNT;
    return (T0_LEN + 3 * str + 2) + (T1_LEN + 6 * str + 2) + (T3_LEN + 5 * str + 2) +
           cpus * (T4_LEN + 3 * str + 2) + (T16_LEN + 2) + dimms * (T17_LEN + 2 * str + 2) +
           SMBIOS_MEM_RANGES * (T19_LEN + 2) + (T32_LEN + 2) + (T127_LEN + 2);
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return (uint8_t)(0x100 - sum);
}

static void write_ep3(uint8_t *ep, uint64_t table_gpa, size_t table_len)
{
    memset(ep, 0, 24);
    memcpy(ep, "_SM3_", 5);
    ep[0x06] = 24;
    ep[0x07] = 3;                            /* SMBIOS 3.0.0 */
    ep[0x08] = 0;
    ep[0x09] = 0;
    ep[0x0a] = 1;                            /* entry point revision: 3.0 */
    put32(ep + 0x0c, (uint32_t)table_len);   /* maximum size of the table */
    put64(ep + 0x10, table_gpa);
    ep[0x05] = checksum(ep, 24);
}

static void write_ep2(uint8_t *ep, uint64_t table_gpa, size_t table_len, uint16_t count,
                      size_t max_struct)
{
    memset(ep, 0, 31);
    memcpy(ep, "_SM_", 4);
    ep[0x05] = 31;
    ep[0x06] = 3;                            /* same version as the 64-bit entry point */
    ep[0x07] = 0;
    put16(ep + 0x08, (uint16_t)max_struct);
    memcpy(ep + 0x10, "_DMI_", 5);
    put16(ep + 0x16, (uint16_t)table_len);
    put32(ep + 0x18, (uint32_t)table_gpa);
    put16(ep + 0x1c, count);
    ep[0x1e] = 0x30;                         /* BCD revision 3.0 */
    ep[0x15] = checksum(ep + 0x10, 15);      /* the intermediate ("_DMI_") checksum first */
    ep[0x04] = checksum(ep, 31);
}

int smbios_build(const struct smbios_config *c, uint64_t table_gpa,
                 uint8_t *table, size_t table_cap, size_t *table_len,
                 uint8_t *ep, size_t ep_cap, size_t *ep_len)
{
    int r = check_config(c);
    if (r)
        return r;
    if (ep_cap < 24)
        return -ENOSPC;

    struct writer w = { .buf = table, .cap = table_cap };
    emit_type0(&w, c);
    emit_type1(&w, c);
    emit_type3(&w, c);
    for (unsigned i = 0; i < c->cpus; i++)
        emit_type4(&w, c, i);
    unsigned ndimms = dimm_count(c->ram_size);
    uint16_t array = emit_type16(&w, c, ndimms);
    uint64_t left = c->ram_size;
    for (unsigned i = 0; i < ndimms; i++) {
        uint64_t size = left < DIMM_MAX_SIZE ? left : DIMM_MAX_SIZE;
        emit_type17(&w, c, array, i, size);
        left -= size;
    }
    if (c->nmem == 0)
        emit_type19(&w, array, 0, c->ram_size);
    for (int i = 0; i < c->nmem; i++)
        emit_type19(&w, array, c->mem[i].start, c->mem[i].size);
    emit_simple(&w, 32, T32_LEN);
    emit_simple(&w, 127, T127_LEN);
    if (w.overflow)
        return -ENOSPC;
    if (table_gpa + w.len < table_gpa)
        return -EINVAL;

    memset(ep, 0, ep_cap < SMBIOS_EP_SIZE ? ep_cap : SMBIOS_EP_SIZE);
    write_ep3(ep, table_gpa, w.len);
    *ep_len = 24;
    /* The 32-bit entry point can only name a table below 4 GiB, of at most 64 KiB. */
    bool legacy = table_gpa + w.len <= 0x100000000ull && w.len <= 0xffff;
    if (legacy && ep_cap >= SMBIOS_EP_LEGACY_OFFSET + 31) {
        write_ep2(ep + SMBIOS_EP_LEGACY_OFFSET, table_gpa, w.len, w.count, w.max_struct);
        *ep_len = SMBIOS_EP_LEGACY_OFFSET + 31;
    }
    *table_len = w.len;
    return 0;
}
