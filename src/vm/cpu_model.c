/* CPU models and feature properties, as QEMU 7.2 names them (target/i386/cpu.c). A model here
 * keeps QEMU's identity and instruction-set features and leaves out the system features qkvm does
 * not model on any accelerator (DE, MCE/MCA, SEP, VME, SVM and the like): a guest is better
 * served by not seeing them than by a #GP on their MSRs. */
#include "vm/cpu_model.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/parse.h"

struct feat_name {
    const char *name;
    uint8_t word, bit;
};

/* QEMU's spellings first; the aliases QEMU also accepts after them. */
static const struct feat_name feat_names[] = {
    { "fpu", CPUF_1_EDX, 0 }, { "pse", CPUF_1_EDX, 3 }, { "tsc", CPUF_1_EDX, 4 },
    { "msr", CPUF_1_EDX, 5 }, { "pae", CPUF_1_EDX, 6 }, { "cx8", CPUF_1_EDX, 8 },
    { "apic", CPUF_1_EDX, 9 }, { "mtrr", CPUF_1_EDX, 12 }, { "pge", CPUF_1_EDX, 13 },
    { "cmov", CPUF_1_EDX, 15 }, { "pat", CPUF_1_EDX, 16 }, { "pse36", CPUF_1_EDX, 17 },
    { "clflush", CPUF_1_EDX, 19 }, { "mmx", CPUF_1_EDX, 23 }, { "fxsr", CPUF_1_EDX, 24 },
    { "sse", CPUF_1_EDX, 25 }, { "sse2", CPUF_1_EDX, 26 },
    { "pni", CPUF_1_ECX, 0 }, { "pclmulqdq", CPUF_1_ECX, 1 }, { "ssse3", CPUF_1_ECX, 9 },
    { "fma", CPUF_1_ECX, 12 }, { "cx16", CPUF_1_ECX, 13 }, { "sse4.1", CPUF_1_ECX, 19 },
    { "sse4.2", CPUF_1_ECX, 20 }, { "x2apic", CPUF_1_ECX, 21 }, { "movbe", CPUF_1_ECX, 22 },
    { "popcnt", CPUF_1_ECX, 23 }, { "tsc-deadline", CPUF_1_ECX, 24 }, { "aes", CPUF_1_ECX, 25 },
    { "xsave", CPUF_1_ECX, 26 }, { "avx", CPUF_1_ECX, 28 }, { "f16c", CPUF_1_ECX, 29 },
    { "pcid", CPUF_1_ECX, 17 }, { "rdrand", CPUF_1_ECX, 30 }, { "hypervisor", CPUF_1_ECX, 31 },
    { "fsgsbase", CPUF_7_EBX, 0 }, { "bmi1", CPUF_7_EBX, 3 }, { "hle", CPUF_7_EBX, 4 },
    { "avx2", CPUF_7_EBX, 5 }, { "smep", CPUF_7_EBX, 7 }, { "bmi2", CPUF_7_EBX, 8 },
    { "erms", CPUF_7_EBX, 9 }, { "invpcid", CPUF_7_EBX, 10 }, { "rtm", CPUF_7_EBX, 11 },
    { "rdseed", CPUF_7_EBX, 18 }, { "adx", CPUF_7_EBX, 19 }, { "smap", CPUF_7_EBX, 20 },
    { "umip", CPUF_7_ECX, 2 }, { "pku", CPUF_7_ECX, 3 }, { "pks", CPUF_7_ECX, 31 },
    { "syscall", CPUF_X1_EDX, 11 }, { "nx", CPUF_X1_EDX, 20 }, { "pdpe1gb", CPUF_X1_EDX, 26 },
    { "rdtscp", CPUF_X1_EDX, 27 }, { "lm", CPUF_X1_EDX, 29 },
    { "lahf_lm", CPUF_X1_ECX, 0 }, { "abm", CPUF_X1_ECX, 5 }, { "sse4a", CPUF_X1_ECX, 6 },
    { "3dnowprefetch", CPUF_X1_ECX, 8 },
    { "invtsc", CPUF_X7_EDX, 8 },
    /* aliases */
    { "sse3", CPUF_1_ECX, 0 }, { "sse4_1", CPUF_1_ECX, 19 }, { "sse4-1", CPUF_1_ECX, 19 },
    { "sse4_2", CPUF_1_ECX, 20 }, { "sse4-2", CPUF_1_ECX, 20 }, { "lahf-lm", CPUF_X1_ECX, 0 },
    { "pclmuldq", CPUF_1_ECX, 1 }, { "lzcnt", CPUF_X1_ECX, 5 },
};

/* leaf 1 EDX common to every model: fpu pse tsc msr pae cx8 apic mtrr pge cmov pat pse36
 * clflush mmx fxsr sse sse2 */
#define EDX_BASE 0x078bb379u
/* 0x80000001 EDX of a 64-bit model: syscall nx lm */
#define X1_EDX_LM ((1u << 11) | (1u << 20) | (1u << 29))

const uint32_t cpu_model_tcg_features[CPUF_WORDS] = {
    [CPUF_1_EDX] = EDX_BASE,
    /* pni pclmulqdq ssse3 fma cx16 pcid sse4.1 sse4.2 x2apic movbe popcnt tsc-deadline aes xsave
     * avx f16c hypervisor (x2apic and tsc-deadline: the user-space local APIC, hw/lapic.c) */
    [CPUF_1_ECX] = (1u << 0) | (1u << 1) | (1u << 9) | (1u << 12) | (1u << 13) | (1u << 17) |
                   (1u << 19) | (1u << 20) | (1u << 21) | (1u << 22) | (1u << 23) | (1u << 24) |
                   (1u << 25) | (1u << 26) | (1u << 28) | (1u << 29) | (1u << 31),
    /* bmi1 avx2 smep bmi2 invpcid smap */
    [CPUF_7_EBX] = (1u << 3) | (1u << 5) | (1u << 7) | (1u << 8) | (1u << 10) | (1u << 20),
    [CPUF_7_ECX] = (1u << 2) | (1u << 3) | (1u << 31),   /* umip pku pks */
    [CPUF_X1_EDX] = X1_EDX_LM | (1u << 26) | (1u << 27),   /* and pdpe1gb rdtscp */
    [CPUF_X1_ECX] = 1u << 0,
    [CPUF_X7_EDX] = 1u << 8,
};

struct model_def {
    const char *name, *desc, *vendor;
    uint32_t signature;
    const char *model_id;
    uint32_t feat[CPUF_WORDS];
};

/* ECX of the Intel generations, each adding to the one before */
#define ECX_CONROE ((1u << 0) | (1u << 9) | (1u << 31))                      /* pni ssse3 */
#define ECX_PENRYN (ECX_CONROE | (1u << 13) | (1u << 19))                     /* cx16 sse4.1 */
#define ECX_NEHALEM (ECX_PENRYN | (1u << 20) | (1u << 23))                    /* sse4.2 popcnt */
#define ECX_WESTMERE (ECX_NEHALEM | (1u << 1) | (1u << 25))                   /* pclmulqdq aes */
#define ECX_SANDY (ECX_WESTMERE | (1u << 26) | (1u << 28))                    /* xsave avx */
#define ECX_HASWELL (ECX_SANDY | (1u << 12) | (1u << 22) | (1u << 29) | (1u << 30)) /* fma movbe f16c rdrand */

static const struct model_def models[] = {
    { "qemu64", "QEMU Virtual CPU version 2.5+ (the default)", "AuthenticAMD", 0x00000f61,
      "QEMU Virtual CPU version 2.5+",
      /* QEMU's qemu64 is family 15 model 107; model 6 keeps Linux's K8 errata code (C1E, MSRs
       * qkvm does not model) out of the way. invtsc: qkvm's TSC is host time. */
      { [CPUF_1_EDX] = EDX_BASE, [CPUF_1_ECX] = (1u << 0) | (1u << 13) | (1u << 31),
        [CPUF_X1_EDX] = X1_EDX_LM, [CPUF_X1_ECX] = 1u << 0, [CPUF_X7_EDX] = 1u << 8 } },
    { "max", "everything the accelerator offers", "AuthenticAMD", 0x00000f61,
      "qkvm TCG x86-64 CPU", { 0 } },
    { "host", "the host CPU as KVM offers it (kvm only)", NULL, 0, NULL, { 0 } },
    /* kvm-unit-tests' syscall test: an AMD CPU (SYSCALL/SYSRET in compatibility mode) */
    { "Opteron_G1", "AMD Opteron 240 (Gen 1 Class Opteron)", "AuthenticAMD", 0x00000f61,
      "AMD Opteron 240 (Gen 1 Class Opteron)",
      { [CPUF_1_EDX] = EDX_BASE, [CPUF_1_ECX] = 1u << 0, [CPUF_X1_EDX] = X1_EDX_LM } },
    { "Conroe", "Intel Celeron_4x0 (Conroe/Merom Class Core 2)", "GenuineIntel", 0x000006f1,
      "Intel Celeron_4x0 (Conroe/Merom Class Core 2)",
      { [CPUF_1_EDX] = EDX_BASE, [CPUF_1_ECX] = ECX_CONROE, [CPUF_X1_EDX] = X1_EDX_LM,
        [CPUF_X1_ECX] = 1u << 0 } },
    { "Penryn", "Intel Core 2 Duo P9xxx (Penryn Class Core 2)", "GenuineIntel", 0x00010676,
      "Intel Core 2 Duo P9xxx (Penryn Class Core 2)",
      { [CPUF_1_EDX] = EDX_BASE, [CPUF_1_ECX] = ECX_PENRYN, [CPUF_X1_EDX] = X1_EDX_LM,
        [CPUF_X1_ECX] = 1u << 0 } },
    { "Nehalem", "Intel Core i7 9xx (Nehalem Class Core i7)", "GenuineIntel", 0x000106a2,
      "Intel Core i7 9xx (Nehalem Class Core i7)",
      { [CPUF_1_EDX] = EDX_BASE, [CPUF_1_ECX] = ECX_NEHALEM, [CPUF_X1_EDX] = X1_EDX_LM,
        [CPUF_X1_ECX] = 1u << 0 } },
    { "Westmere", "Westmere E56xx/L56xx/X56xx (Nehalem-C)", "GenuineIntel", 0x000206c1,
      "Westmere E56xx/L56xx/X56xx (Nehalem-C)",
      { [CPUF_1_EDX] = EDX_BASE, [CPUF_1_ECX] = ECX_WESTMERE, [CPUF_X1_EDX] = X1_EDX_LM,
        [CPUF_X1_ECX] = 1u << 0 } },
    { "SandyBridge", "Intel Xeon E312xx (Sandy Bridge)", "GenuineIntel", 0x000206a1,
      "Intel Xeon E312xx (Sandy Bridge)",
      { [CPUF_1_EDX] = EDX_BASE, [CPUF_1_ECX] = ECX_SANDY, [CPUF_X1_EDX] = X1_EDX_LM | (1u << 27),
        [CPUF_X1_ECX] = 1u << 0 } },
    { "Haswell", "Intel Core Processor (Haswell)", "GenuineIntel", 0x000306c1,
      "Intel Core Processor (Haswell)",
      { [CPUF_1_EDX] = EDX_BASE, [CPUF_1_ECX] = ECX_HASWELL,
        /* fsgsbase bmi1 avx2 smep bmi2 erms invpcid */
        [CPUF_7_EBX] = (1u << 0) | (1u << 3) | (1u << 5) | (1u << 7) | (1u << 8) | (1u << 9) |
                       (1u << 10),
        [CPUF_X1_EDX] = X1_EDX_LM | (1u << 27), [CPUF_X1_ECX] = (1u << 0) | (1u << 5) } },
};

void cpu_model_known_bits(uint32_t out[CPUF_WORDS])
{
    memset(out, 0, sizeof(uint32_t) * CPUF_WORDS);
    for (size_t k = 0; k < sizeof(feat_names) / sizeof(feat_names[0]); k++)
        out[feat_names[k].word] |= 1u << feat_names[k].bit;
}

void cpu_model_list(void (*line)(void *opaque, const char *name, const char *desc), void *opaque)
{
    for (size_t k = 0; k < sizeof(models) / sizeof(models[0]); k++)
        line(opaque, models[k].name, models[k].desc);
}

static const struct feat_name *feat_find(const char *name)
{
    for (size_t k = 0; k < sizeof(feat_names) / sizeof(feat_names[0]); k++)
        if (!strcmp(feat_names[k].name, name))
            return &feat_names[k];
    return NULL;
}

/* The names of the bits of want missing from avail, comma-separated, into buf. */
static void missing_names(const uint32_t want[CPUF_WORDS], const uint32_t avail[CPUF_WORDS],
                          char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t k = 0; k < sizeof(feat_names) / sizeof(feat_names[0]); k++) {
        const struct feat_name *f = &feat_names[k];
        if (!((want[f->word] & ~avail[f->word]) >> f->bit & 1))
            continue;
        bool alias = false;   /* an alias names a bit already listed under its first name */
        for (size_t j = 0; j < k; j++)
            alias = alias || (feat_names[j].word == f->word && feat_names[j].bit == f->bit);
        if (alias)
            continue;
        int w = snprintf(buf + n, len - n, "%s%s", n ? ", " : "", f->name);
        if (w < 0 || (size_t)w >= len - n)
            break;
        n += (size_t)w;
    }
}

int cpu_model_parse(const char *spec, const uint32_t avail[CPUF_WORDS], bool kvm,
                    struct cpu_model *out, char *err, size_t errlen)
{
    char buf[512];
    if (!spec || !*spec)
        spec = "qemu64";
    if (strlen(spec) >= sizeof(buf)) {
        snprintf(err, errlen, "-cpu: the model string is too long");
        return -EINVAL;
    }
    strcpy(buf, spec);
    char *save = NULL, *name = strtok_r(buf, ",", &save);
    if (!name) {
        snprintf(err, errlen, "-cpu %s: no model name", spec);
        return -EINVAL;
    }
    const struct model_def *m = NULL;
    for (size_t k = 0; k < sizeof(models) / sizeof(models[0]); k++)
        if (!strcasecmp(models[k].name, name))
            m = &models[k];
    if (!m) {
        snprintf(err, errlen, "-cpu %s: unknown CPU model '%s' (-cpu help lists them)", spec, name);
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    bool is_host = !strcmp(m->name, "host"), is_max = !strcmp(m->name, "max");
    if (is_host && !kvm) {
        snprintf(err, errlen, "-cpu host: only with -accel kvm (the software CPU has no host to copy)");
        return -EINVAL;
    }
    if (is_host || is_max) {
        memcpy(out->feat, avail, sizeof(out->feat));
    } else {
        memcpy(out->feat, m->feat, sizeof(out->feat));
        char miss[256];
        missing_names(out->feat, avail, miss, sizeof(miss));
        if (miss[0]) {
            snprintf(err, errlen, "-cpu %s: model %s needs %s, which this accelerator does not offer",
                     spec, m->name, miss);
            return -EINVAL;
        }
    }
    out->host = is_host;
    snprintf(out->vendor, sizeof(out->vendor), "%s", m->vendor ? m->vendor : "");
    snprintf(out->model_id, sizeof(out->model_id), "%s", m->model_id ? m->model_id : "");
    out->signature = m->signature;

    for (char *p = strtok_r(NULL, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        bool on;
        char *fname = p, *eq = strchr(p, '=');
        /* QEMU's CPU properties that are not feature bits */
        if (!strncmp(p, "vendor=", 7)) {
            if (strlen(p + 7) != 12) {
                snprintf(err, errlen, "-cpu %s: vendor= takes 12 characters (GenuineIntel, AuthenticAMD)", spec);
                return -EINVAL;
            }
            snprintf(out->vendor, sizeof(out->vendor), "%s", p + 7);
            continue;
        }
        if (!strcmp(p, "host-phys-bits") || !strcmp(p, "host-phys-bits=on") || !strcmp(p, "host-phys-bits=off"))
            continue;   /* the physical address width is the accelerator's in any case */
        if (!strncmp(p, "phys-bits=", 10)) {
            snprintf(err, errlen, "-cpu %s: phys-bits: qkvm's CPUs report the accelerator's physical address width, not a chosen one", spec);
            return -EINVAL;
        }
        if (*p == '+' || *p == '-') {
            on = *p == '+';
            fname = p + 1;
            if (eq) {
                snprintf(err, errlen, "-cpu %s: '%s': +feat and -feat take no value", spec, p);
                return -EINVAL;
            }
        } else if (eq) {
            *eq = 0;
            if (parse_bool(eq + 1, &on)) {
                snprintf(err, errlen, "-cpu %s: %s takes on or off", spec, p);
                return -EINVAL;
            }
        } else {
            on = true;   /* a bare name is name=on, as in QEMU */
        }
        const struct feat_name *f = feat_find(fname);
        if (!f) {
            snprintf(err, errlen, "-cpu %s: unknown CPU feature '%s'", spec, fname);
            return -EINVAL;
        }
        if (!on) {
            out->feat[f->word] &= ~(1u << f->bit);
            continue;
        }
        if (!(avail[f->word] >> f->bit & 1)) {
            snprintf(err, errlen, "-cpu %s: feature %s is not offered by this accelerator", spec, f->name);
            return -EINVAL;
        }
        out->feat[f->word] |= 1u << f->bit;
    }
    return 0;
}
