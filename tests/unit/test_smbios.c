#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "detect/detect.h"
#include "vm/smbios.h"

static const char *const UUID_TEXT = "6e1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b";

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

/* One structure as read back: its formatted area and its strings. */
struct parsed {
    const uint8_t *f;
    uint8_t type, len;
    uint16_t handle;
    const char *str[16];
    int nstr;
    size_t total;
};

struct table {
    struct parsed s[2200];
    int n;
};

/* Walks a table as dmi_walk does, checking what every reader relies on. */
static void parse_table(const uint8_t *buf, size_t len, struct table *t)
{
    size_t off = 0;
    t->n = 0;
    while (off < len) {
        assert_true(t->n < (int)(sizeof(t->s) / sizeof(t->s[0])));
        struct parsed *p = &t->s[t->n++];
        assert_true(off + 4 <= len);
        p->f = buf + off;
        p->type = buf[off];
        p->len = buf[off + 1];
        p->handle = get16(buf + off + 2);
        assert_true(p->len >= 4);
        assert_true(off + p->len + 2 <= len);
        size_t s = off + p->len;
        p->nstr = 0;
        if (buf[s] == 0) {
            assert_int_equal(buf[s + 1], 0);   /* no strings: two NULs */
            s += 2;
        } else {
            while (buf[s]) {
                const char *str = (const char *)buf + s;
                size_t n = strnlen(str, len - s);
                assert_true(s + n < len);
                assert_true(p->nstr < 16);
                p->str[p->nstr++] = str;
                s += n + 1;
            }
            s++;
        }
        p->total = s - off;
        off = s;
        if (p->type == 127)
            break;
    }
    assert_int_equal(off, len);                       /* the end-of-table closes the table */
    assert_int_equal(t->s[t->n - 1].type, 127);
    for (int i = 0; i < t->n; i++)
        for (int j = i + 1; j < t->n; j++)
            assert_int_not_equal(t->s[i].handle, t->s[j].handle);
}

static const char *str_of(const struct parsed *p, uint8_t idx)
{
    if (idx == 0)
        return "";
    assert_true(idx <= p->nstr);
    return p->str[idx - 1];
}

static const struct parsed *find(const struct table *t, uint8_t type, int nth)
{
    for (int i = 0; i < t->n; i++)
        if (t->s[i].type == type && nth-- == 0)
            return &t->s[i];
    return NULL;
}

static int count(const struct table *t, uint8_t type)
{
    int n = 0;
    for (int i = 0; i < t->n; i++)
        n += t->s[i].type == type;
    return n;
}

/* Linux prints product_uuid with %pUl for SMBIOS 2.6 and later. */
static void uuid_pUl(const uint8_t *d, char *out)
{
    sprintf(out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
            d[3], d[2], d[1], d[0], d[5], d[4], d[7], d[6], d[8], d[9], d[10], d[11], d[12],
            d[13], d[14], d[15]);
}

struct built {
    uint8_t table[1 << 18];
    size_t table_len;
    uint8_t ep[SMBIOS_EP_SIZE];
    size_t ep_len;
    struct table t;
};

static void build(struct built *b, const struct smbios_config *c, uint64_t gpa)
{
    assert_int_equal(smbios_build(c, gpa, b->table, sizeof(b->table), &b->table_len, b->ep,
                                  sizeof(b->ep), &b->ep_len), 0);
    assert_true(b->table_len <= smbios_table_size_max(c));
    parse_table(b->table, b->table_len, &b->t);
}

static void test_tables(void **state)
{
    (void)state;
    struct built *b = malloc(sizeof(*b));
    struct smbios_config c;
    smbios_config_init(&c);
    c.cpus = 3;
    c.ram_size = 40ull << 30;   /* three DIMMs: 16 + 16 + 8 GiB */
    c.nmem = 2;
    c.mem[0].start = 0;
    c.mem[0].size = 3ull << 30;
    c.mem[1].start = 4ull << 30;
    c.mem[1].size = 37ull << 30;
    assert_int_equal(smbios_parse_uuid(UUID_TEXT, c.uuid), 0);
    build(b, &c, 0xf1000);

    /* 64-bit entry point */
    const uint8_t *ep = b->ep;
    assert_memory_equal(ep, "_SM3_", 5);
    assert_int_equal(ep[6], 24);
    assert_int_equal(sum8(ep, ep[6]), 0);
    assert_int_equal(ep[7], 3);
    assert_int_equal(ep[8], 0);
    assert_int_equal(get32(ep + 12), b->table_len);
    assert_int_equal(get64(ep + 16), 0xf1000);
    /* 32-bit entry point */
    const uint8_t *e2 = b->ep + SMBIOS_EP_LEGACY_OFFSET;
    assert_int_equal(b->ep_len, SMBIOS_EP_LEGACY_OFFSET + 31);
    assert_memory_equal(e2, "_SM_", 4);
    assert_int_equal(e2[5], 31);
    assert_int_equal(sum8(e2, 31), 0);
    assert_memory_equal(e2 + 16, "_DMI_", 5);
    assert_int_equal(sum8(e2 + 16, 15), 0);
    assert_int_equal(get16(e2 + 0x16), b->table_len);
    assert_int_equal(get32(e2 + 0x18), 0xf1000);
    assert_int_equal(get16(e2 + 0x1c), b->t.n);
    size_t max = 0;
    for (int i = 0; i < b->t.n; i++)
        if (b->t.s[i].total > max)
            max = b->t.s[i].total;
    assert_int_equal(get16(e2 + 8), max);

    const struct table *t = &b->t;
    assert_int_equal(count(t, 0), 1);
    assert_int_equal(count(t, 1), 1);
    assert_int_equal(count(t, 3), 1);
    assert_int_equal(count(t, 4), 3);
    assert_int_equal(count(t, 16), 1);
    assert_int_equal(count(t, 17), 3);
    assert_int_equal(count(t, 19), 2);
    assert_int_equal(count(t, 32), 1);
    assert_int_equal(count(t, 127), 1);
    assert_int_equal(t->s[0].type, 0);

    const struct parsed *p = find(t, 0, 0);
    assert_int_equal(p->len, 0x18);
    assert_string_equal(str_of(p, p->f[4]), "qkvm");
    assert_int_equal(p->f[0x13] & 0x10, 0x10);          /* virtual machine */

    p = find(t, 1, 0);
    assert_int_equal(p->len, 0x1b);
    assert_string_equal(str_of(p, p->f[4]), "qkvm");
    assert_string_equal(str_of(p, p->f[5]), "qkvm Virtual Machine");
    assert_string_equal(str_of(p, p->f[6]), "1.0");
    assert_string_equal(str_of(p, p->f[7]), "");        /* no serial by default */
    char uuid[40];
    uuid_pUl(p->f + 8, uuid);
    assert_string_equal(uuid, UUID_TEXT);
    assert_int_equal(p->f[8], 0x3c);                    /* time_low little-endian */

    for (int i = 0; i < 3; i++) {
        p = find(t, 4, i);
        assert_int_equal(p->len, 0x30);
        char sock[16];
        snprintf(sock, sizeof(sock), "CPU %d", i);
        assert_string_equal(str_of(p, p->f[4]), sock);
        assert_int_equal(p->f[0x18], 0x41);
    }

    const struct parsed *arr = find(t, 16, 0);
    assert_int_equal(get32(arr->f + 7), 40u << 20);     /* KiB */
    assert_int_equal(get16(arr->f + 0x0d), 3);
    uint64_t dimm_total = 0;
    for (int i = 0; i < 3; i++) {
        p = find(t, 17, i);
        assert_int_equal(get16(p->f + 4), arr->handle);
        dimm_total += (uint64_t)get16(p->f + 0x0c) << 20;
    }
    assert_int_equal(dimm_total, 40ull << 30);
    p = find(t, 19, 0);
    assert_int_equal(get32(p->f + 4), 0);
    assert_int_equal(get32(p->f + 8), (3u << 20) - 1);
    assert_int_equal(get16(p->f + 0x0c), arr->handle);
    p = find(t, 19, 1);
    assert_int_equal(get32(p->f + 4), 4u << 20);
    assert_int_equal(get32(p->f + 8), (41u << 20) - 1);
    free(b);
}

/* Linux's dmi_scan_machine on a non-EFI x86 guest: "_SM3_" on any 16-byte boundary of
 * 0xF0000..0xFFFFF first, then "_SM_"; then the table walk. Returns the type 1 fields. */
static int linux_scan(const uint8_t *bios, uint64_t bios_base, bool want_sm3, char *vendor,
                      char *product, char *uuid)
{
    uint64_t base = 0;
    size_t len = 0;
    for (size_t off = 0; off + 32 <= 0x10000 && !base; off += 16) {
        const uint8_t *b = bios + off;
        if (want_sm3 && memcmp(b, "_SM3_", 5) == 0 && b[6] >= 24 && b[6] <= 32 &&
            sum8(b, b[6]) == 0) {
            len = get32(b + 12);
            base = get64(b + 16);
        }
        if (!want_sm3 && memcmp(b, "_SM_", 4) == 0 && b[5] < 32 && sum8(b, b[5]) == 0 &&
            memcmp(b + 16, "_DMI_", 5) == 0 && sum8(b + 16, 15) == 0) {
            len = get16(b + 16 + 6);
            base = get32(b + 16 + 8);
        }
    }
    if (!base || base < bios_base || base + len > bios_base + 0x10000)
        return -1;
    struct table *t = malloc(sizeof(*t));
    parse_table(bios + (base - bios_base), len, t);
    const struct parsed *p = find(t, 1, 0);
    if (!p) {
        free(t);
        return -1;
    }
    strcpy(vendor, str_of(p, p->f[4]));
    strcpy(product, str_of(p, p->f[5]));
    uuid_pUl(p->f + 8, uuid);
    free(t);
    return 0;
}

static void test_linux_finds_them(void **state)
{
    (void)state;
    struct smbios_config c;
    smbios_config_init(&c);
    c.cpus = 2;
    c.ram_size = 512 << 20;
    char why[128];
    assert_int_equal(smbios_parse_option(&c, "type=1,manufacturer=Acme,,Inc,product=Widget", why,
                                         sizeof(why)), 0);
    assert_int_equal(smbios_parse_uuid(UUID_TEXT, c.uuid), 0);
    uint8_t *bios = calloc(1, 0x10000);
    /* entry points at 0xF0040, table right after them */
    const uint64_t base = 0xf0000, ep_off = 0x40, tbl_off = 0x80;
    size_t tlen, elen;
    assert_int_equal(smbios_build(&c, base + tbl_off, bios + tbl_off, 0x10000 - tbl_off, &tlen,
                                  bios + ep_off, SMBIOS_EP_SIZE, &elen), 0);
    char vendor[80], product[80], uuid[40];
    assert_int_equal(linux_scan(bios, base, true, vendor, product, uuid), 0);
    assert_string_equal(vendor, "Acme,Inc");
    assert_string_equal(product, "Widget");
    assert_string_equal(uuid, UUID_TEXT);
    /* A reader that knows only the 32-bit entry point gets the same. */
    memset(vendor, 0, sizeof(vendor));
    assert_int_equal(linux_scan(bios, base, false, vendor, product, uuid), 0);
    assert_string_equal(vendor, "Acme,Inc");
    assert_string_equal(uuid, UUID_TEXT);
    free(bios);
}

static void test_options(void **state)
{
    (void)state;
    struct smbios_config c;
    char why[160];
    smbios_config_init(&c);
    assert_int_equal(smbios_parse_option(&c, "type=1,manufacturer=M,product=P,version=V,serial=S,"
                                         "uuid=6E1A2B3C-4D5E-4F60-8A9B-0C1D2E3F4A5B,sku=K,family=F",
                                         why, sizeof(why)), 0);
    assert_string_equal(c.manufacturer, "M");
    assert_string_equal(c.product, "P");
    assert_string_equal(c.version, "V");
    assert_string_equal(c.serial, "S");
    assert_string_equal(c.sku, "K");
    assert_string_equal(c.family, "F");
    assert_int_equal(c.uuid[0], 0x6e);
    assert_int_equal(c.uuid[15], 0x5b);
    assert_int_equal(smbios_parse_option(&c, "type=0,vendor=SeaBIOS,version=1.16,date=04/01/2014,"
                                         "release=1.16,uefi=on", why, sizeof(why)), 0);
    assert_string_equal(c.bios_vendor, "SeaBIOS");
    assert_int_equal(c.bios_major, 1);
    assert_int_equal(c.bios_minor, 16);
    assert_true(c.uefi);
    assert_int_equal(smbios_parse_option(&c, "type=3,manufacturer=Box,serial=B1,asset=A",
                                         why, sizeof(why)), 0);
    assert_string_equal(c.chassis_manufacturer, "Box");
    assert_string_equal(c.chassis_asset, "A");

    static const char *const bad[] = {
        "manufacturer=x",            /* no type */
        "type=2,manufacturer=x",     /* unsupported type */
        "type=x",
        "type=1,vendor=x",           /* a type 0 key on type 1 */
        "type=1,uuid=6e1a2b3c4d5e4f608a9b0c1d2e3f4a5b",
        "type=1,uuid=6e1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5",
        "type=0,release=1",
        "type=0,release=1.255",
        "type=0,uefi=maybe",
        "type=1,serial=0123456789012345678901234567890123456789012345678901234567890123456789",
        "",
        "=x",
    };
    struct smbios_config before = c;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = 0;
        assert_int_equal(smbios_parse_option(&c, bad[i], why, sizeof(why)), -EINVAL);
        assert_true(why[0]);
        assert_memory_equal(&c, &before, sizeof(c));   /* untouched */
    }
    assert_int_equal(smbios_parse_option(&c, "type=1,vendor=x", why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "vendor"));
}

static void test_uuid(void **state)
{
    (void)state;
    uint8_t u[16], z[16] = { 0 };
    assert_int_equal(smbios_parse_uuid("00112233-4455-6677-8899-aabbccddeeff", u), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(u[i], i * 0x11);
    memcpy(u, z, 16);
    assert_int_equal(smbios_parse_uuid("00112233-4455-6677-8899-aabbccddeefg", u), -EINVAL);
    assert_int_equal(smbios_parse_uuid("001122334-455-6677-8899-aabbccddeeff", u), -EINVAL);
    assert_int_equal(smbios_parse_uuid("00112233-4455-6677-8899-aabbccddeeff0", u), -EINVAL);
    assert_int_equal(smbios_parse_uuid("", u), -EINVAL);
    assert_memory_equal(u, z, 16);   /* untouched on error */
}

static void test_errors(void **state)
{
    (void)state;
    struct smbios_config c;
    uint8_t table[4096], ep[SMBIOS_EP_SIZE];
    size_t tl, el;
    smbios_config_init(&c);
    c.ram_size = 0;
    assert_int_equal(smbios_build(&c, 0xf1000, table, sizeof(table), &tl, ep, sizeof(ep), &el), -EINVAL);
    c.ram_size = 1 << 30;
    c.cpus = 0;
    assert_int_equal(smbios_build(&c, 0xf1000, table, sizeof(table), &tl, ep, sizeof(ep), &el), -EINVAL);
    c.cpus = SMBIOS_MAX_CPUS + 1;
    assert_int_equal(smbios_build(&c, 0xf1000, table, sizeof(table), &tl, ep, sizeof(ep), &el), -EINVAL);
    c.cpus = 1;
    c.nmem = 1;
    c.mem[0].size = 1 << 29;   /* does not add up to ram_size */
    assert_int_equal(smbios_build(&c, 0xf1000, table, sizeof(table), &tl, ep, sizeof(ep), &el), -EINVAL);
    c.nmem = 0;
    assert_int_equal(smbios_build(&c, 0xf1000, table, 100, &tl, ep, sizeof(ep), &el), -ENOSPC);
    assert_int_equal(smbios_build(&c, 0xf1000, table, sizeof(table), &tl, ep, 16, &el), -ENOSPC);
    /* Only the 64-bit entry point when the buffer has no room for the other. */
    assert_int_equal(smbios_build(&c, 0xf1000, table, sizeof(table), &tl, ep, 24, &el), 0);
    assert_int_equal(el, 24);
    /* A table above 4 GiB: no 32-bit entry point. */
    assert_int_equal(smbios_build(&c, 0x100000000ull, table, sizeof(table), &tl, ep, sizeof(ep), &el), 0);
    assert_int_equal(el, 24);
    assert_int_equal(get64(ep + 16), 0x100000000ull);
}

static void test_big(void **state)
{
    (void)state;
    struct built *b = malloc(sizeof(*b));
    struct smbios_config c;
    smbios_config_init(&c);
    /* Every string at its longest, many CPUs, RAM beyond the 32-bit fields. */
    char longs[SMBIOS_STR_MAX + 1];
    memset(longs, 'x', SMBIOS_STR_MAX);
    longs[SMBIOS_STR_MAX] = 0;
    char *fields[] = { c.bios_vendor, c.bios_version, c.bios_date, c.manufacturer, c.product,
                       c.version, c.serial, c.sku, c.family, c.chassis_manufacturer,
                       c.chassis_version, c.chassis_serial, c.chassis_asset, c.chassis_sku,
                       c.cpu_manufacturer, c.cpu_version };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        strcpy(fields[i], longs);
    c.cpus = 200;
    c.ram_size = 5ull << 40;
    c.nmem = 2;
    c.mem[0].start = 0;
    c.mem[0].size = 2ull << 30;
    c.mem[1].start = 4ull << 30;
    c.mem[1].size = (5ull << 40) - (2ull << 30);
    build(b, &c, 0x10000000);
    assert_true(b->table_len <= smbios_table_size_max(&c));
    assert_int_equal(count(&b->t, 4), 200);
    assert_int_equal(count(&b->t, 17), 320);
    const struct parsed *arr = find(&b->t, 16, 0);
    assert_int_equal(get32(arr->f + 7), 0x80000000u);
    assert_int_equal(get64(arr->f + 0x0f), 5ull << 40);
    const struct parsed *hi = find(&b->t, 19, 1);
    assert_int_equal(get32(hi->f + 4), 0xffffffffu);
    assert_int_equal(get64(hi->f + 0x0f), 4ull << 30);
    assert_int_equal(get64(hi->f + 0x17), (4ull << 30) + (5ull << 40) - (2ull << 30) - 1);
    free(b);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void put_file(const char *root, const char *rel, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = 0;
        mkdir(path, 0755);
        *p = '/';
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* What a guest's Linux would export from these tables, fed to qkvm-detect's library: it says
 * qkvm, finds the VM bit, and names the accelerator from CPUID. */
static void test_detect_sees_qkvm(void **state)
{
    (void)state;
    struct built *b = malloc(sizeof(*b));
    struct smbios_config c;
    smbios_config_init(&c);
    c.ram_size = 256 << 20;
    build(b, &c, 0xf1000);
    char root[] = "/tmp/qkvm-smbios-XXXXXX";
    assert_non_null(mkdtemp(root));
    const struct parsed *t0 = find(&b->t, 0, 0), *t1 = find(&b->t, 1, 0);
    put_file(root, "/sys/firmware/dmi/entries/0-0/raw", t0->f, t0->total);
    char line[80];
    snprintf(line, sizeof(line), "%s\n", str_of(t1, t1->f[4]));
    put_file(root, "/sys/class/dmi/id/sys_vendor", line, strlen(line));
    snprintf(line, sizeof(line), "%s\n", str_of(t1, t1->f[5]));
    put_file(root, "/sys/class/dmi/id/product_name", line, strlen(line));
    const char *cpuid = "0x1 0 0 0x80000000 0\n0x40000000 0x40000001 0x54474354 0x43544743 0x47435447\n";
    put_file(root, "/cpuid", cpuid, strlen(cpuid));
    struct detect_evidence *e = malloc(sizeof(*e));
    assert_int_equal(detect_gather(root, e), 0);
    struct detect_result r;
    detect_decide(e, DETECT_ANY, &r);
    assert_string_equal(detect_id_name(r.id), "qkvm");
    assert_string_equal(r.accelerator, "tcg");
    assert_string_equal(e->ev[EV_DMI_BIOS_VM_BIT].value, "1");
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(e);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_linux_finds_them),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_big),
        cmocka_unit_test(test_detect_sees_qkvm),
    };
    return cmocka_run_group_tests_name("smbios", tests, NULL, NULL);
}
