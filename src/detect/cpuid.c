/* CPUID evidence: the hypervisor bit, the leaf 0x40000000 vendor signature, and PVM's own marks,
 * from the instruction itself or from a recorded table (ROOT/cpuid). */
#include "detect/detect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#if defined(__i386__) || defined(__x86_64__)
#include <cpuid.h>
#endif

#define LEAF_HV_BASE 0x40000000u
/* The PVM patches (kvm_pvm): with vendor features on, leaf 0x40000000 still says "KVMKVMKVM" but
 * its eax reaches KVM_CPUID_VENDOR_FEATURES (0x40000002), whose ebx is PVM_CPUID_SIGNATURE,
 * 0x4d5650 = "PVM\0". Later trees add a leaf 0x40000200 of their own signed "PVMPVMPVM". */
#define LEAF_KVM_VENDOR_FEATURES 0x40000002u
#define PVM_VENDOR_SIGNATURE 0x4d5650u
#define LEAF_PVM_SIGNATURE 0x40000200u

typedef void (*cpuid_query)(void *ctx, uint32_t leaf, uint32_t r[4]);

static void cpuid_fill(cpuid_query q, void *ctx, struct detect_cpuid *out)
{
    uint32_t r[4];
    *out = (struct detect_cpuid){ .available = true };
    q(ctx, 1, r);
    out->hypervisor = r[2] & (1u << 31);
    /* Leaves above 0x40000000 mean nothing without the bit: bare metal answers them with
     * whatever its highest basic leaf holds. */
    if (!out->hypervisor)
        return;
    q(ctx, LEAF_HV_BASE, r);
    out->max_leaf = r[0];
    memcpy(out->sig, &r[1], 4);
    memcpy(out->sig + 4, &r[2], 4);
    memcpy(out->sig + 8, &r[3], 4);
    if (memcmp(out->sig, "KVMKVMKVM\0\0\0", 12) != 0)
        return;
    if (out->max_leaf >= LEAF_KVM_VENDOR_FEATURES && out->max_leaf < LEAF_HV_BASE + 0x100) {
        q(ctx, LEAF_KVM_VENDOR_FEATURES, r);
        if (r[1] == PVM_VENDOR_SIGNATURE)
            out->pvm = true;
    }
    q(ctx, LEAF_PVM_SIGNATURE, r);
    char sig[12];
    memcpy(sig, &r[1], 4);
    memcpy(sig + 4, &r[2], 4);
    memcpy(sig + 8, &r[3], 4);
    if (memcmp(sig, "PVMPVMPVM\0\0\0", 12) == 0)
        out->pvm = true;
}

#if defined(__i386__) || defined(__x86_64__)
static void cpuid_real(void *ctx, uint32_t leaf, uint32_t r[4])
{
    (void)ctx;
    __cpuid_count(leaf, 0, r[0], r[1], r[2], r[3]);
}
#endif

void detect_cpuid_probe(struct detect_cpuid *out)
{
    *out = (struct detect_cpuid){ 0 };
#if defined(__i386__) || defined(__x86_64__)
    if (__get_cpuid_max(0, NULL) < 1)
        return;
    cpuid_fill(cpuid_real, NULL, out);
#endif
}

#define CPUID_TABLE_MAX 64

struct cpuid_table {
    int n;
    uint32_t leaf[CPUID_TABLE_MAX];
    uint32_t regs[CPUID_TABLE_MAX][4];
};

static void cpuid_from_table(void *ctx, uint32_t leaf, uint32_t r[4])
{
    const struct cpuid_table *t = ctx;
    memset(r, 0, 4 * sizeof(uint32_t));
    for (int i = 0; i < t->n; i++)
        if (t->leaf[i] == leaf)
            memcpy(r, t->regs[i], 4 * sizeof(uint32_t));
}

static int parse_hex32(const char *tok, uint32_t *out)
{
    char *end;
    if (!tok || !*tok || *tok == '-' || *tok == '+')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(tok, &end, 16);
    if (errno || v > 0xffffffffull)
        return -EINVAL;
    if (*end == ':' && end[1] == 0)
        end++;
    if (*end)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static int cpuid_parse_line(char *line, struct cpuid_table *t)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = 0;
    char *save = NULL;
    char *tok[6];
    int n = 0;
    for (char *s = strtok_r(line, " \t\r\n", &save); s; s = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == 6)
            return -EINVAL;
        tok[n++] = s;
    }
    if (n == 0)
        return 0;
    if (n != 5)
        return -EINVAL;
    uint32_t v[5];
    for (int i = 0; i < 5; i++)
        if (parse_hex32(tok[i], &v[i]))
            return -EINVAL;
    int slot = t->n;
    for (int i = 0; i < t->n; i++)
        if (t->leaf[i] == v[0])
            slot = i;
    if (slot == CPUID_TABLE_MAX)
        return -EINVAL;
    t->leaf[slot] = v[0];
    memcpy(t->regs[slot], &v[1], sizeof(t->regs[slot]));
    if (slot == t->n)
        t->n++;
    return 0;
}

int detect_cpuid_load(const char *path, struct detect_cpuid *out)
{
    *out = (struct detect_cpuid){ 0 };
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    struct cpuid_table t = { 0 };
    char line[256];
    int ret = 0, lines = 0;
    while (fgets(line, sizeof(line), f)) {
        /* A line longer than the buffer is no line of ours. */
        if (!strchr(line, '\n') && !feof(f)) {
            ret = -EINVAL;
            break;
        }
        if (++lines > 4096 || cpuid_parse_line(line, &t)) {
            ret = -EINVAL;
            break;
        }
    }
    if (!ret && ferror(f))
        ret = -EIO;
    fclose(f);
    if (ret)
        return ret;
    cpuid_fill(cpuid_from_table, &t, out);
    return 0;
}

int detect_cpuid_dump(FILE *f)
{
#if defined(__i386__) || defined(__x86_64__)
    static const uint32_t leaves[] = {
        0x1, LEAF_HV_BASE, LEAF_HV_BASE + 1, LEAF_KVM_VENDOR_FEATURES, LEAF_PVM_SIGNATURE,
        LEAF_PVM_SIGNATURE + 1,
    };
    fprintf(f, "# leaf eax ebx ecx edx\n");
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
        uint32_t r[4];
        cpuid_real(NULL, leaves[i], r);
        fprintf(f, "0x%08x 0x%08x 0x%08x 0x%08x 0x%08x\n", leaves[i], r[0], r[1], r[2], r[3]);
    }
    return 0;
#else
    (void)f;
    return -ENOTSUP;
#endif
}
