/* -cpu parsing (vm/cpu_model.c) and what the software CPU's CPUID then reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "accel/emu/cpu.h"
#include "vm/cpu_model.h"

#define ECX_SSE3 (1u << 0)
#define ECX_SSSE3 (1u << 9)
#define ECX_CX16 (1u << 13)
#define ECX_SSE41 (1u << 19)
#define ECX_SSE42 (1u << 20)
#define ECX_POPCNT (1u << 23)

static char err[256];

static int parse_tcg(const char *spec, struct cpu_model *m)
{
    err[0] = 0;
    return cpu_model_parse(spec, cpu_model_tcg_features, false, m, err, sizeof(err));
}

static void test_default_is_qemu64(void **s)
{
    (void)s;
    struct cpu_model m, q;
    assert_int_equal(parse_tcg(NULL, &m), 0);
    assert_int_equal(parse_tcg("qemu64", &q), 0);
    assert_memory_equal(&m, &q, sizeof(m));
    assert_string_equal(m.vendor, "AuthenticAMD");
    /* QEMU 7.2's qemu64: SSE3 and CX16, no SSSE3/SSE4/POPCNT; LAHF in 64-bit mode */
    assert_int_equal(m.feat[CPUF_1_ECX] & (ECX_SSE3 | ECX_CX16 | ECX_SSSE3 | ECX_SSE41 | ECX_POPCNT),
                     ECX_SSE3 | ECX_CX16);
    assert_int_equal(m.feat[CPUF_X1_ECX] & 1, 1);
    assert_int_equal(m.feat[CPUF_X1_EDX] >> 29 & 1, 1);   /* LM */
}

static void test_max_is_everything_implemented(void **s)
{
    (void)s;
    struct cpu_model m;
    assert_int_equal(parse_tcg("max", &m), 0);
    assert_memory_equal(m.feat, cpu_model_tcg_features, sizeof(m.feat));
    uint32_t v2 = ECX_SSE3 | ECX_SSSE3 | ECX_CX16 | ECX_SSE41 | ECX_SSE42 | ECX_POPCNT;
    assert_int_equal(m.feat[CPUF_1_ECX] & v2, v2);
}

static void test_named_models(void **s)
{
    (void)s;
    struct cpu_model m;
    assert_int_equal(parse_tcg("Nehalem", &m), 0);
    assert_string_equal(m.vendor, "GenuineIntel");
    assert_int_equal(m.feat[CPUF_1_ECX] & (ECX_SSE42 | ECX_POPCNT), ECX_SSE42 | ECX_POPCNT);
    assert_int_equal(parse_tcg("Penryn", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & (ECX_SSE41 | ECX_SSE42), ECX_SSE41);
    /* Westmere (AES-NI, PCLMULQDQ) and SandyBridge (XSAVE, AVX) are there now */
    assert_int_equal(parse_tcg("Westmere", &m), 0);
    assert_int_equal(parse_tcg("SandyBridge", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] >> 28 & 1, 1);
    /* a model needing what the accelerator lacks is refused by name, not cut silently */
    uint32_t no_aes[CPUF_WORDS];
    memcpy(no_aes, cpu_model_tcg_features, sizeof(no_aes));
    no_aes[CPUF_1_ECX] &= ~((1u << 25) | (1u << 1));
    assert_int_equal(cpu_model_parse("Westmere", no_aes, false, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "aes"));
    assert_non_null(strstr(err, "pclmulqdq"));
    assert_null(strstr(err, "pclmuldq"));   /* an alias is not named twice */
    assert_int_equal(parse_tcg("Haswell", &m), -EINVAL);
    assert_non_null(strstr(err, "rdrand"));
    assert_null(strstr(err, "avx2"));        /* AVX2, FMA, F16C, XSAVE, AES are there now */
    assert_null(strstr(err, "fma"));
    assert_null(strstr(err, "xsave"));
    assert_null(strstr(err, "aes"));
    assert_int_equal(parse_tcg("nosuchcpu", &m), -EINVAL);
    assert_non_null(strstr(err, "unknown CPU model 'nosuchcpu'"));
    assert_int_equal(parse_tcg("host", &m), -EINVAL);
    assert_non_null(strstr(err, "kvm"));
}

static void test_feature_properties(void **s)
{
    (void)s;
    struct cpu_model m;
    assert_int_equal(parse_tcg("qemu64,+ssse3,sse4_1=on,sse4-2,+popcnt,-cx16", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & (ECX_SSSE3 | ECX_SSE41 | ECX_SSE42 | ECX_POPCNT | ECX_CX16),
                     ECX_SSSE3 | ECX_SSE41 | ECX_SSE42 | ECX_POPCNT);
    assert_int_equal(parse_tcg("max,sse4.1=off,popcnt=no,-lahf_lm", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & (ECX_SSE41 | ECX_POPCNT), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & ECX_SSE42, ECX_SSE42);
    assert_int_equal(m.feat[CPUF_X1_ECX] & 1, 0);
    /* switching off what is not implemented is fine; switching it on is not */
    assert_int_equal(parse_tcg("qemu64,-avx2,aes=off", &m), 0);
    assert_int_equal(parse_tcg("qemu64,+rdrand", &m), -EINVAL);
    assert_non_null(strstr(err, "rdrand"));
    /* kvm-unit-tests' pcid-disabled: names the software CPU knows and does not offer */
    assert_int_equal(parse_tcg("qemu64,-pcid,-invpcid", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & (1u << 17), 0);
    /* pcid-enabled and pcid-asymmetric: offered by the software CPU, in max, not in qemu64 */
    assert_int_equal(parse_tcg("qemu64,+pcid,+invpcid", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & (1u << 17), 1u << 17);
    assert_int_equal(m.feat[CPUF_7_EBX] & (1u << 10), 1u << 10);
    assert_int_equal(parse_tcg("qemu64,-pcid,+invpcid", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & (1u << 17), 0);
    assert_int_equal(parse_tcg("max", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & (1u << 17), 1u << 17);
    assert_int_equal(m.feat[CPUF_7_EBX] & (1u << 10), 1u << 10);
    assert_int_equal(parse_tcg("qemu64", &m), 0);
    assert_int_equal(m.feat[CPUF_7_EBX] & (1u << 10), 0);
    assert_int_equal(parse_tcg("qemu64,+avx2,+avx,+xsave,+fma,+f16c", &m), 0);
    assert_int_equal(parse_tcg("qemu64,+nosuchfeat", &m), -EINVAL);
    assert_non_null(strstr(err, "unknown CPU feature 'nosuchfeat'"));
    assert_int_equal(parse_tcg("qemu64,popcnt=maybe", &m), -EINVAL);
    assert_int_equal(parse_tcg("qemu64,+popcnt=on", &m), -EINVAL);
    assert_int_equal(parse_tcg(",popcnt", &m), -EINVAL);
    char big[600];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(parse_tcg(big, &m), -EINVAL);
}

/* Under KVM, avail is what the host offers: host takes it all, a model needs its features. */
static void test_kvm_avail(void **s)
{
    (void)s;
    struct cpu_model m;
    uint32_t avail[CPUF_WORDS] = { [CPUF_1_EDX] = ~0u, [CPUF_1_ECX] = ECX_SSE3 | ECX_CX16 | (1u << 31),
                                   [CPUF_X1_EDX] = ~0u, [CPUF_X1_ECX] = 1, [CPUF_X7_EDX] = ~0u };
    assert_int_equal(cpu_model_parse("host", avail, true, &m, err, sizeof(err)), 0);
    assert_true(m.host);
    assert_memory_equal(m.feat, avail, sizeof(avail));
    assert_int_equal(cpu_model_parse("qemu64", avail, true, &m, err, sizeof(err)), 0);
    assert_int_equal(cpu_model_parse("Nehalem", avail, true, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ssse3"));
}

static void test_cpuid_leaves(void **s)
{
    (void)s;
    struct cpu_model m;
    uint32_t out[4];
    assert_int_equal(parse_tcg("max,-popcnt", &m), 0);
    cpu_model_cpuid(&m, 1, 2, 0, 0, out);
    assert_memory_equal(&out[1], "Auth", 4);
    assert_memory_equal(&out[3], "enti", 4);
    assert_memory_equal(&out[2], "cAMD", 4);
    cpu_model_cpuid(&m, 1, 2, 1, 0, out);
    assert_int_equal(out[2], cpu_model_tcg_features[CPUF_1_ECX] & ~ECX_POPCNT);
    assert_int_equal(out[1] >> 24, 1);           /* APIC ID */
    assert_int_equal(out[3] >> 28 & 1, 1);       /* HTT with 2 CPUs */
    cpu_model_cpuid(&m, 0, 1, 0, 0, out);
    assert_int_equal(out[0], 0xd);               /* leaf 0xD: XSAVE; leaf 7 BMI1/AVX2/BMI2 */
    cpu_model_cpuid(&m, 0, 1, 7, 0, out);
    /* BMI1 AVX2 SMEP BMI2 INVPCID SMAP; UMIP PKU PKS */
    assert_int_equal(out[1], (1u << 3) | (1u << 5) | (1u << 7) | (1u << 8) | (1u << 10) | (1u << 20));
    assert_int_equal(out[2], (1u << 2) | (1u << 3) | (1u << 31));
    cpu_model_cpuid(&m, 0, 1, 7, 1, out);
    assert_int_equal(out[1], 0);                 /* subleaf 1: nothing */
    cpu_model_cpuid(&m, 0, 1, 0x80000001, 0, out);
    assert_int_equal(out[2] & 1, 1);             /* LAHF/SAHF in 64-bit mode */
    assert_int_equal(out[3] & (1u << 29), 1u << 29);
    assert_int_equal(parse_tcg("Nehalem", &m), 0);
    cpu_model_cpuid(&m, 0, 1, 0x80000002, 0, out);
    assert_memory_equal(out, "Intel Core i7 9x", 16);
    cpu_model_cpuid(&m, 0, 1, 0, 0, out);
    assert_int_equal(out[0], 1);                 /* no leaf 7 features: leaf 1 is the last */
}

/* x2APIC and TSC-deadline (the user-space local APIC has both): in max, on request in qemu64 as
 * kvm-unit-tests asks (-cpu qemu64,+x2apic,+tsc-deadline), and leaf 0xB then holds the x2APIC ID. */
static void test_x2apic_leaves(void **s)
{
    (void)s;
    struct cpu_model m;
    uint32_t out[4];
    assert_int_equal(parse_tcg("max", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] >> 21 & 1, 1);
    assert_int_equal(m.feat[CPUF_1_ECX] >> 24 & 1, 1);
    assert_int_equal(parse_tcg("qemu64", &m), 0);
    assert_int_equal(m.feat[CPUF_1_ECX] & (1u << 21 | 1u << 24), 0);
    cpu_model_cpuid(&m, 1, 3, 0xb, 0, out);
    assert_int_equal(out[0] | out[1] | out[2] | out[3], 0);   /* no leaf 0xB without x2APIC */
    assert_int_equal(parse_tcg("qemu64,+x2apic,+tsc-deadline", &m), 0);
    cpu_model_cpuid(&m, 2, 3, 1, 0, out);
    assert_int_equal(out[2] & (1u << 21 | 1u << 24), 1u << 21 | 1u << 24);
    cpu_model_cpuid(&m, 2, 3, 0, 0, out);
    assert_int_equal(out[0], 0xb);
    cpu_model_cpuid(&m, 2, 3, 0xb, 0, out);              /* threads: one per core */
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 1u << 8);
    assert_int_equal(out[3], 2);
    cpu_model_cpuid(&m, 2, 3, 0xb, 1, out);              /* cores: 3, two ID bits */
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 3);
    assert_int_equal(out[2], 1 | 2u << 8);
    assert_int_equal(out[3], 2);
    cpu_model_cpuid(&m, 2, 3, 0xb, 2, out);              /* invalid level */
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], 2);
    assert_int_equal(out[3], 2);
    assert_int_equal(parse_tcg("qemu64,-x2apic", &m), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_is_qemu64), cmocka_unit_test(test_max_is_everything_implemented),
        cmocka_unit_test(test_named_models), cmocka_unit_test(test_feature_properties),
        cmocka_unit_test(test_kvm_avail), cmocka_unit_test(test_cpuid_leaves),
        cmocka_unit_test(test_x2apic_leaves),
    };
    return cmocka_run_group_tests_name("cpu_model", tests, NULL, NULL);
}
