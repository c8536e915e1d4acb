/* The CPU a guest sees: `-cpu MODEL[,+feat][,-feat][,feat=on|off]` as QEMU spells it, turned
 * into CPUID identity and feature words. The accelerator says what it can offer (the software
 * CPU: what it implements; KVM: what KVM_GET_SUPPORTED_CPUID returns) and the model is checked
 * against that: a model or a +feat the accelerator cannot give is refused, not silently cut. */
#ifndef QKVM_VM_CPU_MODEL_H
#define QKVM_VM_CPU_MODEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The CPUID registers that hold feature bits. */
enum cpu_feat_word {
    CPUF_1_EDX,      /* leaf 1 */
    CPUF_1_ECX,
    CPUF_7_EBX,      /* leaf 7 subleaf 0 */
    CPUF_7_ECX,
    CPUF_X1_EDX,     /* leaf 0x80000001 */
    CPUF_X1_ECX,
    CPUF_X7_EDX,     /* leaf 0x80000007 (invariant TSC) */
    CPUF_WORDS
};

struct cpu_model {
    char vendor[13];            /* "AuthenticAMD", "GenuineIntel" */
    uint32_t signature;         /* CPUID leaf 1 EAX: family, model, stepping */
    char model_id[49];          /* the brand string, leaves 0x80000002-4 */
    uint32_t feat[CPUF_WORDS];
    bool host;                  /* -cpu host: everything the accelerator offers, as it is */
};

/* The features the software CPU implements: what `-cpu max` gives under tcg. */
extern const uint32_t cpu_model_tcg_features[CPUF_WORDS];

/* The model and the features that -cpu host / -cpu max would name, from spec (NULL: "qemu64").
 * avail: what the accelerator can offer; kvm: host is allowed. 0, or -EINVAL with a one-line
 * reason in err (unknown model or feature, a malformed property, a feature not available). */
int cpu_model_parse(const char *spec, const uint32_t avail[CPUF_WORDS], bool kvm,
                    struct cpu_model *out, char *err, size_t errlen);

/* Every feature bit that has a name here: what a model may switch on or off. */
void cpu_model_known_bits(uint32_t out[CPUF_WORDS]);

/* Writes the model names, one a line, for -cpu help. */
void cpu_model_list(void (*line)(void *opaque, const char *name, const char *desc), void *opaque);

#endif
