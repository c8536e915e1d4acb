/* Memory-protection features of the system programmer's model: SMAP (STAC/CLAC), protection
 * keys (RDPKRU/WRPKRU, IA32_PKRS), UMIP, and which CR4 bits the CPU model allows. The checks
 * themselves live in the page walk (mmu.c), whose TLB entries carry their result. */
#include "accel/emu/exec.h"

#define CPUID_7_EBX_SMEP (1u << 7)
#define CPUID_7_EBX_SMAP (1u << 20)
#define CPUID_7_ECX_UMIP (1u << 2)
#define CPUID_7_ECX_PKU (1u << 3)
#define CPUID_7_ECX_OSPKE (1u << 4)
#define CPUID_7_ECX_PKS (1u << 31)

static bool model_has(const struct cpu *c, int word, uint32_t bit)
{
    return (c->vm->model.feat[word] & bit) != 0;
}

uint64_t prot_cr4_allowed(const struct cpu *c)
{
    /* VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT */
    uint64_t ok = 0x7ffull;
    if (xsave_supported(c))
        ok |= CR4_OSXSAVE;
    if (model_has(c, CPUF_7_ECX, CPUID_7_ECX_UMIP))
        ok |= CR4_UMIP;
    if (model_has(c, CPUF_7_EBX, CPUID_7_EBX_SMEP))
        ok |= CR4_SMEP;
    if (model_has(c, CPUF_7_EBX, CPUID_7_EBX_SMAP))
        ok |= CR4_SMAP;
    if (model_has(c, CPUF_7_ECX, CPUID_7_ECX_PKU))
        ok |= CR4_PKE;
    if (model_has(c, CPUF_7_ECX, CPUID_7_ECX_PKS))
        ok |= CR4_PKS;
    if (pcid_supported(c))
        ok |= CR4_PCIDE;
    return ok;
}

bool prot_has_pku(const struct cpu *c)
{
    return model_has(c, CPUF_7_ECX, CPUID_7_ECX_PKU);
}

bool prot_has_pks(const struct cpu *c)
{
    return model_has(c, CPUF_7_ECX, CPUID_7_ECX_PKS);
}

void prot_cpuid(struct cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    if (leaf == 7 && sub == 0 && (c->cr4 & CR4_PKE))
        out[2] |= CPUID_7_ECX_OSPKE;   /* OSPKE follows CR4.PKE, as OSXSAVE follows OSXSAVE */
}

void prot_set_pkru(struct cpu *c, uint32_t v)
{
    if (v == c->pkru)
        return;
    c->pkru = v;
    tlb_flush(c, true);   /* the entries hold the rights the old keys gave */
}

int prot_set_pkrs(struct cpu *c, uint64_t v)
{
    if (!prot_has_pks(c) || (v >> 32))
        return -1;
    if (v != c->pkrs) {
        c->pkrs = v;
        tlb_flush(c, true);
    }
    return 0;
}

void prot_umip(struct cpu *c)
{
    if ((c->cr4 & CR4_UMIP) && c->cpl > 0)
        raise_gp(c, 0);
}

bool prot_grp7(struct cpu *c, const struct insn *i)
{
    int sub = i->sub, rm = i->rm & 7;
    if (sub == 1 && (rm == 2 || rm == 3)) {   /* CLAC, STAC */
        if (!model_has(c, CPUF_7_EBX, CPUID_7_EBX_SMAP) || c->cpl > 0)
            raise_ud(c);
        if (rm == 3)
            c->eflags |= F_AC;
        else
            c->eflags &= ~F_AC;
        cpu_select_tlb(c);
        return true;
    }
    if (sub == 5 && (rm == 6 || rm == 7)) {   /* RDPKRU, WRPKRU */
        if (!(c->cr4 & CR4_PKE))
            raise_ud(c);
        if ((uint32_t)c->r[R_CX] != 0 || (rm == 7 && (uint32_t)c->r[R_DX] != 0))
            raise_gp(c, 0);
        if (rm == 6) {
            c->r[R_AX] = c->pkru;
            c->r[R_DX] = 0;
        } else {
            prot_set_pkru(c, (uint32_t)c->r[R_AX]);
            c->brk = true;
        }
        return true;
    }
    return false;
}
