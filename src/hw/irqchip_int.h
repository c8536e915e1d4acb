/* Inside the interrupt controllers: the state the four parts share and the calls between them.
 * Only src/hw/{irqchip,pic,ioapic,lapic,pit}.c and their unit tests include this; everyone else
 * uses hw/irqchip.h.
 *
 * Locking: one mutex (irqchip.lock) guards every controller. An interrupt crosses several of them
 * (PIT -> PIC -> LAPIC, IOAPIC -> LAPIC -> EOI -> IOAPIC), and one lock keeps that free of
 * lock-order puzzles; the hot checks a vCPU makes read atomics and never take it. Functions here
 * run with the lock held unless they say otherwise. Calls back into the CPUs (kick, INIT, SIPI)
 * are gathered in a struct irq_work and made after the lock is dropped, so a CPU that reacts by
 * calling lapic_* again cannot deadlock. */
#ifndef QKVM_HW_IRQCHIP_INT_H
#define QKVM_HW_IRQCHIP_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hw/irqchip.h"

struct irq_work {
    uint64_t kick, init, sipi;      /* bit n: CPU n */
    uint8_t sipi_vector;
};

/* --- 8259A --- */
struct pic_chip {
    uint8_t irr, isr, imr;
    uint8_t last_irr;       /* input levels seen, for edge detection */
    uint8_t elcr, elcr_mask;
    uint8_t priority_add;   /* the IRQ with highest priority (rotation) */
    uint8_t irq_base;
    uint8_t init_state;     /* 0 ready, 1-3: expecting ICW2-ICW4 */
    bool read_isr, poll, auto_eoi, rotate_on_aeoi, sfnm, init4, single;
};

struct pic {
    struct pic_chip chip[2];    /* master, slave */
    bool output;                /* the master's INTR line */
};

/* --- IOAPIC --- */
struct ioapic {
    uint32_t id;            /* register 0, bits 27:24 */
    uint32_t sel;           /* IOREGSEL */
    uint64_t redtbl[IOAPIC_PINS];
    uint32_t irr;           /* edge pins with a request not yet delivered */
    uint32_t level;         /* input levels */
};

/* --- 8254 --- */
struct pit_channel {
    uint32_t count;             /* reload value; 0 was written as 0x10000 */
    uint64_t load_ns;           /* when counting began */
    bool loaded;                /* a count was written since the control word */
    bool counting;              /* loaded, and (modes 1, 2, 3, 5) started by the gate */
    uint8_t mode, rw, bcd;
    uint8_t read_state, write_state;
    uint8_t write_lsb;
    bool gate;
    uint16_t latched;
    uint8_t latch_state;        /* 0: no count latched, else the rw mode left to read */
    bool status_latched;
    uint8_t status;
};

struct pit {
    struct pit_channel ch[3];
    uint8_t port61;             /* bits 0-3 as last written */
    int timerfd;                /* -1 without an event loop: pit_poll drives IRQ0 */
    uint64_t irq_next_ns;       /* channel 0's next IRQ0 edge, UINT64_MAX when none */
};

/* --- local APIC --- */
enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_NUM };

struct lapic {
    struct irqchip *c;
    int index;
    _Atomic(const struct lapic_cpu_ops *) ops;   /* set last by lapic_attach: cpu is valid then */
    void *cpu;
    atomic_bool ready;          /* lapic_has_interrupt's answer, kept current under the lock */
    atomic_uint_least64_t timer_deadline;   /* ns; UINT64_MAX when not armed */

    uint64_t base;              /* IA32_APIC_BASE */
    uint32_t id;                /* the APIC ID (the xAPIC register holds it in bits 31:24) */
    uint32_t tpr, ldr, dfr, svr;
    uint32_t irr[8], isr[8], tmr[8];
    uint32_t esr, esr_pending;
    uint32_t icr_lo, icr_hi;
    uint32_t lvt[LVT_NUM];
    uint32_t dcr, initial_count;
    uint64_t timer_start_ns, timer_period_ns;
    uint64_t tsc_deadline;
    uint64_t tsc_hz, tsc_ns0, tsc0;
    bool nmi_pending, extint_pending;
    /* As KVM: a second NMI is kept while none is being handled (two that arrive together both
     * run), one while the CPU handles one (from lapic_take_nmi to lapic_end_nmi). Both are in the
     * saved state (section lapic version 2), as is the emulator's NMI blocking (cpu version 3). */
    bool nmi_second, nmi_in_service;
};

struct irqchip {
    struct machine *m;
    pthread_mutex_t lock;
    uint64_t (*now)(void);      /* clock_now_ns; tests put a synthetic clock here */
    struct pic pic;
    struct ioapic ioapic;
    struct pit pit;
    int ncpus;
    unsigned lowest_rr;         /* rotates lowest-priority arbitration among equals */
    uint64_t saved_now;         /* the clock when the state was saved: timers move by now - it */
    struct lapic *cpus;
};

/* A message on the APIC bus: from the IOAPIC, an MSI, or a local APIC's ICR. */
struct apic_msg {
    uint8_t vector;
    uint8_t mode;           /* APIC_DM_* >> 8: 0 fixed, 1 lowest, 2 SMI, 4 NMI, 5 INIT, 6 SIPI, 7 ExtINT */
    bool logical;
    bool level_trig;
    uint8_t shorthand;      /* 0 none, 1 self, 2 all, 3 all but self */
    bool wide;              /* 32-bit x2APIC destination (else 8-bit xAPIC) */
    uint32_t dest;
    int src;                /* sending CPU for shorthands, -1 for the IOAPIC and MSIs */
};

enum { DM_FIXED = 0, DM_LOWEST = 1, DM_SMI = 2, DM_NMI = 4, DM_INIT = 5, DM_SIPI = 6, DM_EXTINT = 7 };

void irqchip_lock(struct irqchip *c);
/* Drops the lock, then runs the gathered calls into the CPUs. */
void irqchip_unlock(struct irqchip *c, struct irq_work *w);
/* An input line changed: PIC (ISA 0-15) and IOAPIC pins. */
void irqchip_line(struct irqchip *c, unsigned gsi, int level, struct irq_work *w);

void pic_reset(struct pic *p);
void pic_set_irq(struct irqchip *c, int irq, int level, struct irq_work *w);
/* The INTA cycle: the vector for the CPU, or -1 when INTR fell before it. */
int pic_intack(struct irqchip *c, struct irq_work *w);
int pic_register(struct irqchip *c);
void pic_unregister(struct irqchip *c);

void ioapic_reset(struct ioapic *io);
void ioapic_set_irq(struct irqchip *c, int pin, int level, struct irq_work *w);
/* A local APIC finished a level-triggered vector. */
void ioapic_eoi(struct irqchip *c, uint8_t vector, struct irq_work *w);
int ioapic_register(struct irqchip *c);
void ioapic_unregister(struct irqchip *c);

void lapic_reset(struct lapic *l, bool power_on);
void apic_deliver(struct irqchip *c, const struct apic_msg *msg, struct irq_work *w);
/* The PIC's output changed: every CPU whose LINT0 listens re-evaluates. */
void lapic_update_all(struct irqchip *c, struct irq_work *w);

int pit_init(struct irqchip *c);
void pit_exit(struct irqchip *c);
int pit_register(struct irqchip *c);
void pit_unregister(struct irqchip *c);

/* Device state (vm/vmstate.h): each part registers its description; the "irqchip" section
 * goes first and carries the clock, so the parts' timers can be moved to the loading host's. */
int pic_register_vmstate(struct irqchip *c);
int ioapic_register_vmstate(struct irqchip *c);
int pit_register_vmstate(struct irqchip *c);
int lapic_register_vmstate(struct irqchip *c);

/* --- for unit tests --- */
/* Replaces the clock every controller reads (not thread-safe: before any use). */
void irqchip_set_clock(struct irqchip *c, uint64_t (*now)(void));
/* Raises IRQ0 if channel 0's time has come; returns its next edge (ns) or UINT64_MAX. Takes the
 * lock itself. The event loop's timerfd calls this; tests without a loop call it directly. */
uint64_t pit_poll(struct irqchip *c, uint64_t now_ns);

#endif
