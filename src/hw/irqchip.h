/* Interrupt controllers in user space: 8259 PIC pair, IOAPIC, one local APIC per vCPU, 8254 PIT.
 * The software emulator uses them (KVM uses its in-kernel ones, or these with a split irqchip).
 * Devices never call this header: they call machine_set_irq(), which the accelerator routes here.
 *
 * Wiring, as on a PC: ISA IRQs 0-15 reach both the PIC and IOAPIC pins 0-15 (IRQ0, the PIT, lands on
 * IOAPIC pin 2, the MADT's interrupt source override says so); GSIs 16-23 only the IOAPIC. The PIC's
 * output is the LINT0 input of the BSP's local APIC (ExtINT, "virtual wire"), so a guest that
 * never programs the IOAPIC still gets its timer. */
#ifndef QKVM_HW_IRQCHIP_H
#define QKVM_HW_IRQCHIP_H
#include <stdbool.h>
#include <stdint.h>

struct machine;
struct irqchip;
struct lapic;

#define IOAPIC_BASE 0xfec00000ull
#define LAPIC_BASE  0xfee00000ull
#define IOAPIC_PINS 24

/* What a local APIC needs from the CPU it belongs to. Called from any thread. */
struct lapic_cpu_ops {
    void (*kick)(void *cpu);                  /* an interrupt became pending: wake from HLT */
    void (*init)(void *cpu);                  /* INIT IPI: the CPU goes to wait-for-SIPI */
    void (*sipi)(void *cpu, uint8_t vector);  /* start-up IPI: real mode at vector << 12 */
};
/* None is called with the irqchip's lock held. kick may come from the vCPU's own thread (its
 * timer, a self-IPI). Linux sends each AP two SIPIs: a CPU not waiting for one ignores it. */

/* Creates PIC, IOAPIC (MMIO at IOAPIC_BASE), PIT (ports 0x40-0x43, 0x61) and ncpus local APICs.
 * The PIT's clock is a timerfd on m->loop, which must exist by then (without a loop nothing
 * drives IRQ0). The IOAPIC's ID is 0, the local APICs' IDs are the CPU indexes. 0 or -errno. */
int irqchip_create(struct machine *m, int ncpus, struct irqchip **out);
/* After the event loop stopped and the vCPU threads are gone. */
void irqchip_destroy(struct irqchip *c);
/* Level of interrupt line gsi (edge-triggered devices pulse 1 then 0). Any thread. Lines 0-15
 * are ISA IRQs (line 0 reaches IOAPIC pin 2; line 2 is the PIC cascade and drives pin 2 only),
 * 16-23 PCI GSIs. 1 means asserted whatever polarity the guest programmed. */
void irqchip_set_irq(struct irqchip *c, unsigned gsi, int level);
/* A message-signalled interrupt: a device's write of data to addr (0xfeeXXXXX). Any thread. */
void irqchip_send_msi(struct irqchip *c, uint64_t addr, uint32_t data);
/* How far the clock moved between save and load (0 when not loading): the timers' and the
 * emulator's TSC shift, so that time saved away is not seen by the guest. */
uint64_t irqchip_clock_shift(const struct irqchip *c);
struct lapic *irqchip_lapic(struct irqchip *c, int cpu);

/* --- the CPU side, called by the emulator on the vCPU's own thread --- */
void lapic_attach(struct lapic *l, const struct lapic_cpu_ops *ops, void *cpu);
/* True when an interrupt could be taken now if RFLAGS.IF allowed it (PPR considered), or an NMI
 * is pending. One relaxed atomic load. */
bool lapic_has_interrupt(struct lapic *l);
/* Consumes a pending NMI (true once per NMI). The emulator asks whatever RFLAGS.IF says, while it
 * is not blocking NMIs (between an NMI's delivery and the next IRET). */
bool lapic_take_nmi(struct lapic *l);
/* Whether an NMI waits (one relaxed load: the emulator looks between blocks at no cost). */
bool lapic_nmi_pending(struct lapic *l);
/* The CPU left its NMI handler (IRET): a second NMI may be latched again. */
void lapic_end_nmi(struct lapic *l);
/* Acknowledges the highest-priority deliverable interrupt (IRR -> ISR, or the PIC's INTA for
 * ExtINT) and returns its vector; -1 when none. */
int lapic_ack_interrupt(struct lapic *l);
/* Fires the local timer if its time has come; the next deadline in CLOCK_MONOTONIC ns, or
 * UINT64_MAX if none is armed (the emulator sleeps in HLT until then or a kick). */
uint64_t lapic_poll_timer(struct lapic *l, uint64_t now_ns);
/* xAPIC register page at the APIC base (offset 0..0xfff, 32-bit accesses). The page is per CPU,
 * so the emulator routes accesses to it here rather than through the MMIO bus. */
uint32_t lapic_mmio_read(struct lapic *l, uint32_t offset);
void lapic_mmio_write(struct lapic *l, uint32_t offset, uint32_t val);
/* IA32_APIC_BASE (0x1b), IA32_TSC_DEADLINE (0x6e0) and the x2APIC MSRs (0x800-0x8ff). 0, or
 * -EINVAL for #GP. */
int lapic_msr_read(struct lapic *l, uint32_t msr, uint64_t *val);
int lapic_msr_write(struct lapic *l, uint32_t msr, uint64_t val);
/* CR8 is TPR[7:4]. */
void lapic_set_cr8(struct lapic *l, uint64_t cr8);
uint64_t lapic_get_cr8(struct lapic *l);
/* The TSC as this CPU's guest reads it: tsc0 at CLOCK_MONOTONIC time ns0, advancing hz per second.
 * The emulator says so at start and after each write to IA32_TSC; TSC-deadline mode needs it (a
 * deadline written before it fires at once). */
void lapic_set_tsc(struct lapic *l, uint64_t hz, uint64_t ns0, uint64_t tsc0);

#endif
