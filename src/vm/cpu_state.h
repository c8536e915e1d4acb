/* The architectural x86-64 state a vCPU starts from (boot, reset vector, AP start-up), in a form
 * both accelerators take: KVM turns it into kvm_regs/kvm_sregs, the emulator copies it. */
#ifndef QKVM_VM_CPU_STATE_H
#define QKVM_VM_CPU_STATE_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { R_AX, R_CX, R_DX, R_BX, R_SP, R_BP, R_SI, R_DI, R_R8, R_R9, R_R10, R_R11, R_R12, R_R13,
       R_R14, R_R15 };
enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_TR, SEG_LDTR, SEG_COUNT };

struct cpu_segment {
    uint64_t base;
    uint32_t limit;     /* byte granular: 0xfffff with G=1 is written 0xffffffff */
    uint16_t selector;
    uint8_t type;       /* the descriptor's 4-bit type */
    uint8_t s, dpl, present, db, l, g, avl;
    bool unusable;
};

struct cpu_table {
    uint64_t base;
    uint16_t limit;
};

struct cpu_state {
    uint64_t gpr[16];
    uint64_t rip, rflags;
    struct cpu_segment seg[SEG_COUNT];
    struct cpu_table gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8, efer;
    uint64_t apic_base;
    uint64_t dr[8];     /* read back only (info registers); set_state leaves them */
    bool halted;        /* read back only: the CPU sits in HLT */
};

/* The state of an x86 CPU after RESET: real mode at F000:FFF0, as the SDM's table 9-1 gives. */
void cpu_state_reset(struct cpu_state *s, bool bsp);
/* A flat segment for protected/long mode: code (type 0xb) or data (type 0x3). */
struct cpu_segment cpu_segment_flat(uint16_t selector, uint8_t type, bool long_mode);

/* Prints s as QEMU's `info registers` does (target/i386/cpu-dump.c): the 64-bit layout when
 * long mode is active, else the 32-bit one; general registers, flags, segments, descriptor
 * tables, control and debug registers, EFER. Lines end in "\r\n" (the monitor's). */
void cpu_state_dump(const struct cpu_state *s, FILE *out);

#endif
