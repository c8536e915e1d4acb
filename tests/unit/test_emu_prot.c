/* The software CPU's page protection beyond U/S and R/W, each case interpreted and translated:
 * SMAP (STAC/CLAC, EFLAGS.AC, implicit supervisor accesses), SMEP, protection keys for user
 * pages (CR4.PKE, WRPKRU/RDPKRU) and for supervisor pages (CR4.PKS, IA32_PKRS), reserved bits
 * in the paging entries (RSVD in the error code; MAXPHYADDR, NX without EFER.NXE, PS in a PML4E,
 * 1 GiB pages on a model without them, PDE bits 20:13), UMIP, non-canonical MSR and LGDT
 * bases. The expected vectors and error codes are the SDM's (vol. 3, 4.6 and 4.7; the error
 * code bits are P 1, W/R 2, U/S 4, RSVD 8, I/D 16, PK 32), written out per case; sequences
 * that change AC or PKRU between two accesses to one page check that the TLB never keeps
 * rights the new state takes away. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel/emu/emu.h"
#include "vm/cpu_state.h"
#include "vm/machine.h"

#define RAM_SIZE (4u << 20)
#define PML4 0x1000
#define PDPT 0x2000
#define PD 0x3000
#define PT 0x4000
#define GDT 0x5000
#define IDT 0x6000
#define TSS 0x7000
#define STUBS 0x8000
#define KCODE 0x10000
#define UCODE 0x11000
#define KDATA 0x20000      /* supervisor, protection key 1 */
#define UDATA 0x21000      /* user, protection key 1 */
#define URO 0x22000        /* user, read-only, key 0 */
#define RSVD51 0x23000     /* supervisor, bit 51 set (above MAXPHYADDR 40) */
#define UNX 0x24000        /* user, NX */
#define UPLAIN 0x25000     /* user, key 0, a RET at its start */
#define NXNOEFER 0x26000   /* supervisor, NX set (reserved without EFER.NXE) */
#define KSTACK 0x30000
#define USTACK 0x32000
#define BIG_RSVD 0x200000  /* a 2 MiB page whose PDE has bit 13 set */
#define DONE 0x40          /* int $0x40 (a DPL-3 gate) ends a case */

enum { CPL0 = 0, COMPAT = 1, CPL3 = 3 };
#define CR4_UMIP 0x800u
#define CR4_SMEP 0x100000u
#define CR4_SMAP 0x200000u
#define CR4_PKE 0x400000u
#define CR4_PKS 0x1000000u
#define AC 0x40000u

static uint8_t *ram;
static struct machine m;
static struct emu_vm *vm;
static struct cpu *cpu;

static void map4k(uint64_t va, uint64_t flags)
{
    uint64_t *pt = (uint64_t *)(ram + PT);
    pt[(va >> 12) & 511] = (va & ~0xfffull) | flags;
}

#define P 1ull
#define W 2ull
#define U 4ull
#define NX (1ull << 63)
#define KEY(k) ((uint64_t)(k) << 59)

/* Identity-maps the first 2 MiB with 4 KiB pages, the second with one 2 MiB page whose PDE has
 * a reserved bit; everything user-accessible up to the PT, so only the leaves decide. */
static void build_tables(void)
{
    memset(ram, 0, 0x5000);
    ((uint64_t *)(ram + PML4))[0] = PDPT | P | W | U;
    ((uint64_t *)(ram + PDPT))[0] = PD | P | W | U;
    ((uint64_t *)(ram + PD))[0] = PT | P | W | U;
    ((uint64_t *)(ram + PD))[1] = 0x200000 | 0x80 | (1u << 13) | P | W;   /* PS, bit 13 */
    for (uint64_t a = 0; a < 0x40000; a += 0x1000)
        map4k(a, P | W);   /* supervisor */
    map4k(UCODE, P | U);
    map4k(KDATA, P | W | KEY(1));
    map4k(UDATA, P | W | U | KEY(1));
    map4k(URO, P | U);
    map4k(RSVD51, P | W | (1ull << 51));
    map4k(UNX, P | W | U | NX);
    map4k(UPLAIN, P | W | U);
    map4k(NXNOEFER, P | W | NX);
    map4k(USTACK - 0x1000, P | W | U);
}

static void build_descriptors(void)
{
    uint64_t *gdt = (uint64_t *)(ram + GDT);
    gdt[1] = 0x00af9b000000ffffull;   /* 0x08 kernel code */
    gdt[2] = 0x00cf93000000ffffull;   /* 0x10 kernel data */
    gdt[3] = 0x00affb000000ffffull;   /* 0x1b user code */
    gdt[4] = 0x00cff3000000ffffull;   /* 0x23 user data */
    /* 0x28: an LDT in a user page (UPLAIN + 0x400), whose entry 0 is a data segment */
    uint64_t ldt = UPLAIN + 0x400;
    gdt[5] = 0xf | ((ldt & 0xffffff) << 16) | (0x82ull << 40) | ((ldt >> 24 & 0xff) << 56);
    gdt[6] = ldt >> 32;
    gdt[7] = 0xf | (0x82ull << 40);   /* 0x38: an LDT whose base, 0x800000000000, is not canonical */
    gdt[8] = 0x8000;
    gdt[9] = 0x00cf9b000000ffffull;    /* 0x48: 32-bit code, for compatibility mode */
    gdt[10] = 0x0040930000000fffull;   /* 0x50: data, limit 0xfff (byte granular) */
    gdt[11] = 0x0040970000002000ull;   /* 0x58: expand-down data, valid above 0x2000 */
    uint64_t data = 0x00cf93000000ffffull;
    memcpy(ram + ldt, &data, 8);
    uint64_t *idt = (uint64_t *)(ram + IDT);
    for (int k = 0; k < 256; k++) {
        uint64_t h = STUBS + 4 * k;
        int dpl = k == DONE ? 3 : 0;
        idt[2 * k] = (h & 0xffff) | (0x08ull << 16) | ((0x8eull | (uint64_t)dpl << 5) << 40) |
                     ((h & 0xffff0000) << 32);
        idt[2 * k + 1] = h >> 32;
        ram[STUBS + 4 * k] = 0xf4;   /* HLT */
    }
    memset(ram + TSS, 0, 0x68);
    uint64_t rsp0 = KSTACK;
    memcpy(ram + TSS + 4, &rsp0, 8);
}

static int setup(void **st)
{
    (void)st;
    ram = aligned_alloc(4096, RAM_SIZE);
    if (!ram)
        return -1;
    memset(ram, 0, RAM_SIZE);
    memset(&m, 0, sizeof(m));
    m.mem[0] = (struct mem_region){ .gpa = 0, .size = RAM_SIZE, .host = ram };
    m.nmem = 1;
    m.ram = ram;
    m.ram_size = RAM_SIZE;
    if (emu_vm_create(&m, &vm) < 0)
        return -1;
    cpu = emu_cpu_create(&m, vm, 0, NULL);
    return cpu ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    emu_cpu_destroy(cpu);
    emu_vm_destroy(vm);
    free(ram);
    return 0;
}

struct pcase {
    const char *name;
    const char *model;     /* -cpu spec; NULL: max */
    int cpl;               /* 0 or 3; 1 here means CPL 0 in compatibility mode (CS 0x48) */
    uint32_t cr4;          /* beyond PAE, OSFXSR, OSXMMEXCPT */
    bool nowp, ac, nonxe;
    const char *code;      /* instruction bytes, code_len of them; int $0x40 follows */
    int code_len;
    uint64_t rsi, rax, rcx, rdx;
    int vec;               /* DONE when it ran through */
    uint32_t err;          /* the error code of #PF and #GP */
    uint64_t cr2;          /* of a #PF */
};

/* instruction bytes */
#define RD "\x8b\x06"                  /* mov (%rsi), %eax */
#define WR "\x89\x06"                  /* mov %eax, (%rsi) */
#define CALL "\xff\xd6"                /* call *%rsi */
#define STAC "\x0f\x01\xcb"
#define CLAC "\x0f\x01\xca"
#define ZCXDX "\x31\xc9\x31\xd2"       /* xor %ecx,%ecx; xor %edx,%edx */
#define WRPKRU "\x0f\x01\xef"
#define RDPKRU "\x0f\x01\xee"
#define WRMSR "\x0f\x30"
#define EAX(b0) "\xb8" b0 "\x00\x00\x00"   /* mov $b0, %eax */
#define C(s) s, (int)sizeof(s) - 1
#define LOAD_DS "\x66\xb8\x50\x00\x8e\xd8"   /* mov $0x50, %ax; mov %ax, %ds */
#define LOAD_ES "\x66\xb8\x58\x00\x8e\xc0"   /* mov $0x58, %ax; mov %ax, %es */
/* lldt 0x28; mov $4, %eax; mov %eax, %ds: a descriptor read from the LDT */
#define LLDT_LOAD_DS "\xb8\x28\x00\x00\x00\x0f\x00\xd0\xb8\x04\x00\x00\x00\x8e\xd8"

static const struct pcase cases[] = {
    /* SMAP */
    { "supervisor read of a user page, no SMAP", NULL, CPL0, 0, false, false, false, C(RD), UDATA, 0, 0, 0, DONE, 0, 0 },
    { "SMAP: supervisor read of a user page, AC=0", NULL, CPL0, CR4_SMAP, false, false, false, C(RD), UDATA, 0, 0, 0, 14, 1, UDATA },
    { "SMAP: supervisor write to a user page, AC=0", NULL, CPL0, CR4_SMAP, false, false, false, C(WR), UDATA, 0, 0, 0, 14, 3, UDATA },
    { "SMAP: supervisor read of a user page, AC=1", NULL, CPL0, CR4_SMAP, false, true, false, C(RD), UDATA, 0, 0, 0, DONE, 0, 0 },
    { "SMAP: STAC then a write to a user page", NULL, CPL0, CR4_SMAP, false, false, false, C(STAC WR), UDATA, 0, 0, 0, DONE, 0, 0 },
    { "SMAP: STAC, read, CLAC, read again: the TLB forgets AC", NULL, CPL0, CR4_SMAP, false, false, false,
      C(STAC RD CLAC RD), UDATA, 0, 0, 0, 14, 1, UDATA },
    { "SMAP: read at AC=0 faults after a read at AC=1 filled the TLB", NULL, CPL0, CR4_SMAP, false, true, false,
      C(RD CLAC RD), UDATA, 0, 0, 0, 14, 1, UDATA },
    { "SMAP: CR0.WP=0 does not lift it for writes", NULL, CPL0, CR4_SMAP, true, false, false, C(WR), URO, 0, 0, 0, 14, 3, URO },
    { "SMAP: CR0.WP=0, AC=1: a write to a read-only user page", NULL, CPL0, CR4_SMAP, true, true, false, C(WR), URO, 0, 0, 0, DONE, 0, 0 },
    { "SMAP: a fetch from a user page is not a data access", NULL, CPL0, CR4_SMAP, false, false, false, C(CALL), UPLAIN, 0, 0, 0, DONE, 0, 0 },
    { "SMAP: user accesses are not affected", NULL, CPL3, CR4_SMAP, false, false, false, C(RD), UDATA, 0, 0, 0, DONE, 0, 0 },
    { "STAC at CPL 3 is #UD", NULL, CPL3, CR4_SMAP, false, false, false, C(STAC), 0, 0, 0, 0, 6, 0, 0 },
    { "STAC without SMAP in the model is #UD", "qemu64", CPL0, 0, false, false, false, C(STAC), 0, 0, 0, 0, 6, 0, 0 },
    { "SMAP: an implicit access (an LDT in a user page) faults even with AC=1", NULL, CPL0, CR4_SMAP, false, true, false,
      C(LLDT_LOAD_DS), 0, 0, 0, 0, 14, 1, UPLAIN + 0x400 },
    { "no SMAP: the same LDT in a user page serves", NULL, CPL0, 0, false, true, false,
      C(LLDT_LOAD_DS), 0, 0, 0, 0, DONE, 0, 0 },
    /* SMEP */
    { "SMEP: supervisor fetch from a user page", NULL, CPL0, CR4_SMEP, false, false, false, C(CALL), UPLAIN, 0, 0, 0, 14, 0x11, UPLAIN },
    { "SMEP: a supervisor read of a user page is allowed", NULL, CPL0, CR4_SMEP, false, false, false, C(RD), UPLAIN, 0, 0, 0, DONE, 0, 0 },
    { "NX: a user fetch from an NX page", NULL, CPL3, 0, false, false, false, C(CALL), UNX, 0, 0, 0, 14, 0x15, UNX },
    /* protection keys for user pages */
    { "PKU: PKRU.AD1 denies a user read of a key-1 page", NULL, CPL3, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x04") WRPKRU RD), UDATA, 0, 0, 0, 14, 0x25, UDATA },
    { "PKU: PKRU.WD1 denies a user write", NULL, CPL3, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x08") WRPKRU WR), UDATA, 0, 0, 0, 14, 0x27, UDATA },
    { "PKU: PKRU.WD1 allows a user read", NULL, CPL3, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x08") WRPKRU RD), UDATA, 0, 0, 0, DONE, 0, 0 },
    { "PKU: a key-0 page ignores key 1's rights", NULL, CPL3, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x0c") WRPKRU RD), UPLAIN, 0, 0, 0, DONE, 0, 0 },
    { "PKU: PKRU.WD1 binds supervisor writes under CR0.WP", NULL, CPL0, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x08") WRPKRU WR), UDATA, 0, 0, 0, 14, 0x23, UDATA },
    { "PKU: not without CR0.WP", NULL, CPL0, CR4_PKE, true, false, false,
      C(ZCXDX EAX("\x08") WRPKRU WR), UDATA, 0, 0, 0, DONE, 0, 0 },
    { "PKU: PKRU does not apply to supervisor pages", NULL, CPL0, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x0c") WRPKRU RD), KDATA, 0, 0, 0, DONE, 0, 0 },
    { "PKU: fetches ignore PKRU", NULL, CPL3, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x0c") WRPKRU CALL), UDATA + 0x800, 0, 0, 0, DONE, 0, 0 },
    { "PKU: read, WRPKRU AD1, read again: the TLB follows PKRU", NULL, CPL3, CR4_PKE, false, false, false,
      C(RD ZCXDX EAX("\x04") WRPKRU RD), UDATA, 0, 0, 0, 14, 0x25, UDATA },
    { "PKU: PK joins the fault of a write to a read-only page", NULL, CPL3, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x03") WRPKRU WR), URO, 0, 0, 0, 14, 0x27, URO },
    { "PKU: a key-0 read-only page under key-1 rights: no PK", NULL, CPL3, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x0c") WRPKRU WR), URO, 0, 0, 0, 14, 0x7, URO },
    { "PKU: RDPKRU reads what WRPKRU wrote", NULL, CPL3, CR4_PKE, false, false, false,
      C(ZCXDX EAX("\x30") WRPKRU "\x31\xc0" RDPKRU "\x89\x06"), UPLAIN + 8, 0, 0, 0, DONE, 0, 0 },
    { "PKU: WRPKRU without CR4.PKE is #UD", NULL, CPL0, 0, false, false, false, C(ZCXDX WRPKRU), 0, 0, 0, 0, 6, 0, 0 },
    { "PKU: WRPKRU with ECX != 0 is #GP", NULL, CPL0, CR4_PKE, false, false, false, C("\x31\xd2\xb9\x01\x00\x00\x00" WRPKRU), 0, 0, 0, 0, 13, 0, 0 },
    { "PKU: keys do nothing without CR4.PKE", NULL, CPL3, 0, false, false, false, C(RD), UDATA, 0, 0, 0, DONE, 0, 0 },
    /* protection keys for supervisor pages */
    { "PKS: PKRS.AD1 denies a supervisor read of a key-1 supervisor page", NULL, CPL0, CR4_PKS, false, false, false,
      C("\xb9\xe1\x06\x00\x00\x31\xd2" EAX("\x04") WRMSR RD), KDATA, 0, 0, 0, 14, 0x21, KDATA },
    { "PKS: PKRS.WD1 denies a supervisor write under CR0.WP", NULL, CPL0, CR4_PKS, false, false, false,
      C("\xb9\xe1\x06\x00\x00\x31\xd2" EAX("\x08") WRMSR WR), KDATA, 0, 0, 0, 14, 0x23, KDATA },
    { "PKS: PKRS does not apply to user pages", NULL, CPL0, CR4_PKS, false, false, false,
      C("\xb9\xe1\x06\x00\x00\x31\xd2" EAX("\x0c") WRMSR RD), UDATA, 0, 0, 0, DONE, 0, 0 },
    { "PKS: IA32_PKRS with bits 63:32 is #GP", NULL, CPL0, CR4_PKS, false, false, false,
      C("\xb9\xe1\x06\x00\x00\xba\x01\x00\x00\x00" WRMSR), 0, 0, 0, 0, 13, 0, 0 },
    { "PKS: IA32_PKRS on a model without PKS is #GP", "qemu64", CPL0, 0, false, false, false,
      C("\xb9\xe1\x06\x00\x00\x31\xd2\x31\xc0" WRMSR), 0, 0, 0, 0, 13, 0, 0 },
    { "CR4.PKE on a model without PKU is #GP", "qemu64", CPL0, 0, false, false, false,
      C("\x0f\x20\xe0\x0d\x00\x00\x40\x00\x0f\x22\xe0"), 0, 0, 0, 0, 13, 0, 0 },
    /* reserved bits */
    { "RSVD: PTE bit 51 (above MAXPHYADDR), read", NULL, CPL0, 0, false, false, false, C(RD), RSVD51, 0, 0, 0, 14, 0x9, RSVD51 },
    { "RSVD: PTE bit 51, user write", NULL, CPL3, 0, false, false, false, C(WR), RSVD51, 0, 0, 0, 14, 0xf, RSVD51 },
    { "RSVD: PDE of a 2 MiB page with bit 13", NULL, CPL0, 0, false, false, false, C(RD), BIG_RSVD + 0x40, 0, 0, 0, 14, 0x9, BIG_RSVD + 0x40 },
    { "RSVD: NX without EFER.NXE", NULL, CPL0, 0, false, false, true, C(RD), NXNOEFER, 0, 0, 0, 14, 0x9, NXNOEFER },
    { "NX with EFER.NXE: a read is fine", NULL, CPL0, 0, false, false, false, C(RD), NXNOEFER, 0, 0, 0, DONE, 0, 0 },
    /* UMIP */
    { "UMIP: SGDT at CPL 3", NULL, CPL3, CR4_UMIP, false, false, false, C("\x0f\x01\x06"), UPLAIN + 16, 0, 0, 0, 13, 0, 0 },
    { "UMIP: SIDT at CPL 3", NULL, CPL3, CR4_UMIP, false, false, false, C("\x0f\x01\x0e"), UPLAIN + 16, 0, 0, 0, 13, 0, 0 },
    { "UMIP: SLDT at CPL 3", NULL, CPL3, CR4_UMIP, false, false, false, C("\x0f\x00\xc0"), 0, 0, 0, 0, 13, 0, 0 },
    { "UMIP: STR at CPL 3", NULL, CPL3, CR4_UMIP, false, false, false, C("\x0f\x00\xc8"), 0, 0, 0, 0, 13, 0, 0 },
    { "UMIP: SMSW at CPL 3", NULL, CPL3, CR4_UMIP, false, false, false, C("\x0f\x01\xe0"), 0, 0, 0, 0, 13, 0, 0 },
    { "UMIP: SGDT at CPL 0 is allowed", NULL, CPL0, CR4_UMIP, false, false, false, C("\x0f\x01\x06"), KDATA, 0, 0, 0, DONE, 0, 0 },
    { "no UMIP: SGDT at CPL 3 is allowed", NULL, CPL3, 0, false, false, false, C("\x0f\x01\x06"), UPLAIN + 16, 0, 0, 0, DONE, 0, 0 },
    { "CR4.UMIP on a model without UMIP is #GP", "qemu64", CPL0, 0, false, false, false,
      C("\x0f\x20\xe0\x0d\x00\x08\x00\x00\x0f\x22\xe0"), 0, 0, 0, 0, 13, 0, 0 },
    /* canonical bases */
    { "WRMSR FS_BASE non-canonical is #GP", NULL, CPL0, 0, false, false, false, C(WRMSR), 0, 0, 0xc0000100, 0x8000, 13, 0, 0 },
    { "WRMSR LSTAR non-canonical is #GP", NULL, CPL0, 0, false, false, false, C(WRMSR), 0, 0, 0xc0000082, 0x8000, 13, 0, 0 },
    { "WRMSR KERNEL_GS_BASE non-canonical is #GP", NULL, CPL0, 0, false, false, false, C(WRMSR), 0, 0, 0xc0000102, 0x12345678, 13, 0, 0 },
    { "WRMSR GS_BASE canonical upper half is fine", NULL, CPL0, 0, false, false, false, C(WRMSR), 0, 0, 0xc0000101, 0xffff8000, DONE, 0, 0 },
    { "LLDT of a descriptor with a non-canonical base is #GP(selector)", NULL, CPL0, 0, false, false, false,
      C("\xb8\x38\x00\x00\x00\x0f\x00\xd0"), 0, 0, 0, 0, 13, 0x38, 0 },
    /* segment limits, in compatibility mode (CS 0x48): DS 0x50 ends at 0xfff, ES 0x58 is
     * expand-down above 0x2000; ESI holds the offset */
    { "limits: a read inside DS's limit", NULL, COMPAT, 0, false, false, false, C(LOAD_DS "\x8a\x06"), KDATA - 0x20000 + 0xfff, 0, 0, 0, DONE, 0, 0 },
    { "limits: a read past DS's limit is #GP(0)", NULL, COMPAT, 0, false, false, false, C(LOAD_DS "\x8a\x06"), 0x1000, 0, 0, 0, 13, 0, 0 },
    { "limits: a write past DS's limit is #GP(0)", NULL, COMPAT, 0, false, false, false, C(LOAD_DS "\x89\x06"), 0x1800, 0, 0, 0, 13, 0, 0 },
    { "limits: expand-down ES, an offset above the limit", NULL, COMPAT, 0, false, false, false, C(LOAD_ES "\x26\x8a\x06"), 0x21000, 0, 0, 0, DONE, 0, 0 },
    { "limits: expand-down ES, an offset at the limit is #GP(0)", NULL, COMPAT, 0, false, false, false, C(LOAD_ES "\x26\x8a\x06"), 0x2000, 0, 0, 0, 13, 0, 0 },
    { "limits: a push that ends past SS's limit is #SS(0)", NULL, COMPAT, 0, false, false, false,
      C("\x66\xb8\x50\x00\x8e\xd0\xbc\x04\x10\x00\x00\x6a\x01"), 0, 0, 0, 0, 12, 0, 0 },
    { "limits: flat segments in compatibility mode check nothing", NULL, COMPAT, 0, false, false, false, C("\x8b\x06"), KDATA + 0x800, 0, 0, 0, DONE, 0, 0 },
    { "LGDT with a non-canonical base is #GP", NULL, CPL0, 0, false, false, false, C("\x0f\x01\x16"), KDATA + 0x100, 0, 0, 0, 13, 0, 0 },
};

/* The LGDT case's operand: limit, then a base with bit 47 set and 63:48 clear */
static void put_lgdt_operand(void)
{
    uint8_t op[10] = { 0xff, 0x00, 0, 0, 0, 0, 0, 0x80, 0, 0 };
    memcpy(ram + KDATA + 0x100, op, sizeof(op));
}

static void run_case(const struct pcase *k, int jit)
{
    char err[200];
    assert_int_equal(emu_vm_set_cpu_model(vm, k->model ? k->model : "max", err, sizeof(err)), 0);
    build_tables();
    build_descriptors();
    put_lgdt_operand();
    memset(ram + KDATA, 0x5a, 0x100);
    memset(ram + UDATA, 0x5a, 0x1000);
    ram[UPLAIN] = 0xc3;   /* RET */
    ram[UDATA + 0x800] = 0xc3;
    uint64_t code = k->cpl == CPL3 ? UCODE : KCODE;
    memcpy(ram + code, k->code, k->code_len);
    memcpy(ram + code + k->code_len, "\xcd\x40", 2);
    emu_vm_invalidate(vm, 0, RAM_SIZE);
    emu_vm_set_jit(vm, jit);

    struct cpu_state s;
    memset(&s, 0, sizeof(s));
    s.rip = code;
    s.rflags = 2 | (k->ac ? AC : 0);
    s.gpr[R_SI] = k->rsi;
    s.gpr[R_AX] = k->rax;
    s.gpr[R_CX] = k->rcx;
    s.gpr[R_DX] = k->rdx;
    s.gpr[R_SP] = k->cpl == CPL3 ? USTACK : KSTACK;
    for (int n = 0; n < SEG_COUNT; n++)
        s.seg[n] = cpu_segment_flat(0x10, 0x3, true);
    s.seg[SEG_CS] = cpu_segment_flat(0x08, 0xb, true);
    if (k->cpl == COMPAT) {
        s.seg[SEG_CS] = cpu_segment_flat(0x48, 0xb, false);
    } else if (k->cpl) {
        for (int n = 0; n < SEG_COUNT; n++) {
            s.seg[n] = cpu_segment_flat(0x23, 0x3, true);
            s.seg[n].dpl = 3;
        }
        s.seg[SEG_CS] = cpu_segment_flat(0x1b, 0xb, true);
        s.seg[SEG_CS].dpl = 3;
    }
    s.seg[SEG_TR] = (struct cpu_segment){ .base = TSS, .limit = 0x67, .type = 0xb, .present = 1 };
    s.seg[SEG_LDTR] = (struct cpu_segment){ .unusable = true };
    s.gdt = (struct cpu_table){ GDT, 95 };
    s.idt = (struct cpu_table){ IDT, 4095 };
    s.cr0 = 0x80050033 & ~(k->nowp ? 0x10000u : 0);
    s.cr3 = PML4;
    s.cr4 = 0x620 | k->cr4;
    s.efer = k->nonxe ? 0x501 : 0xd01;
    emu_cpu_set_state(cpu, &s);

    enum emu_stop st = emu_cpu_run(cpu);
    uint64_t rip = emu_cpu_rip(cpu);
    int vec = -1;
    if (st == EMU_STOP_HLT && rip > STUBS && rip <= STUBS + 1024)
        vec = (int)((rip - 1 - STUBS) / 4);
    if (vec != k->vec) {
        print_message("%s (jit %d): vector %d (stop %d at %#llx), expected %d\n", k->name, jit, vec,
                      (int)st, (unsigned long long)rip, k->vec);
        fail();
    }
    if (vec == 13 || vec == 14) {
        uint64_t e;
        memcpy(&e, ram + emu_cpu_gpr(cpu)[R_SP], 8);
        if (e != k->err) {
            print_message("%s (jit %d): error code %#llx, expected %#x\n", k->name, jit,
                          (unsigned long long)e, k->err);
            fail();
        }
    }
    if (vec == 14) {
        emu_cpu_get_state(cpu, &s);
        if (s.cr2 != k->cr2) {
            print_message("%s: cr2 %#llx, expected %#llx\n", k->name, (unsigned long long)s.cr2,
                          (unsigned long long)k->cr2);
            fail();
        }
    }
}

static void test_protection_interpreted(void **st)
{
    (void)st;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
        run_case(&cases[k], -1);
}

static void test_protection_translated(void **st)
{
    (void)st;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
        run_case(&cases[k], 0);
}

/* What RDPKRU read back in the case above landed beside the RET */
static void test_rdpkru_value(void **st)
{
    (void)st;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        if (strcmp(cases[k].name, "PKU: RDPKRU reads what WRPKRU wrote"))
            continue;
        run_case(&cases[k], -1);
        uint32_t v;
        memcpy(&v, ram + UPLAIN + 8, 4);
        assert_int_equal(v, 0x30);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protection_interpreted),
        cmocka_unit_test(test_protection_translated),
        cmocka_unit_test(test_rdpkru_value),
    };
    return cmocka_run_group_tests_name("emu_prot", tests, setup, teardown);
}
