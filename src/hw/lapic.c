/* The local APIC of each vCPU (Intel SDM vol. 3, chapter 11 "Advanced Programmable Interrupt
 * Controller"): xAPIC register page and x2APIC MSRs, priorities, EOI, IPIs, the LVT timer.
 * Version 0x14 with six LVT entries (no CMCI), as KVM presents it; bus clock 1 GHz, as QEMU and
 * KVM, so the timer counts once per ns before the divider. */
#include "hw/irqchip_int.h"

#include <errno.h>

#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#define APIC_BASE_BSP   (1ull << 8)
#define APIC_BASE_EXTD  (1ull << 10)
#define APIC_BASE_EN    (1ull << 11)
#define APIC_BASE_RSVD  0xfff00000000002ffull
#define APIC_VERSION    (0x14u | (LVT_NUM - 1) << 16)
#define SVR_ENABLE      0x100u
#define SVR_WRITABLE    0x3ffu      /* vector, enable, focus check; no EOI-broadcast suppression */
#define LVT_MASKED      (1u << 16)
#define ICR_BUSY        (1u << 12)
#define ICR_ASSERT      (1u << 14)
#define ICR_LEVEL       (1u << 15)
#define ESR_SEND_ILLEGAL (1u << 5)
#define ESR_RECV_ILLEGAL (1u << 6)
#define BUS_NS          1           /* ns per bus clock */

enum { TIMER_ONESHOT, TIMER_PERIODIC, TIMER_TSC_DEADLINE };

static const uint32_t lvt_writable[LVT_NUM] = {
    [LVT_TIMER] = 0x700ff,      /* vector, mask, mode */
    [LVT_THERMAL] = 0x107ff,    /* vector, delivery mode, mask */
    [LVT_PERF] = 0x107ff,
    [LVT_LINT0] = 0x1a7ff,      /* also polarity and trigger */
    [LVT_LINT1] = 0x1a7ff,
    [LVT_ERROR] = 0x100ff,
};

static bool hw_enabled(const struct lapic *l) { return l->base & APIC_BASE_EN; }
static bool sw_enabled(const struct lapic *l) { return l->svr & SVR_ENABLE; }
static bool x2apic(const struct lapic *l) { return l->base & APIC_BASE_EXTD; }
static int timer_mode(const struct lapic *l) { return (l->lvt[LVT_TIMER] >> 17) & 3; }

static int vec_highest(const uint32_t *r)
{
    for (int i = 7; i >= 0; i--)
        if (r[i])
            return i * 32 + 31 - __builtin_clz(r[i]);
    return -1;
}
static void vec_set(uint32_t *r, int v) { r[v >> 5] |= 1u << (v & 31); }
static void vec_clear(uint32_t *r, int v) { r[v >> 5] &= ~(1u << (v & 31)); }
static bool vec_test(const uint32_t *r, int v) { return r[v >> 5] & (1u << (v & 31)); }

static uint32_t lapic_ppr(const struct lapic *l)
{
    int isrv = vec_highest(l->isr);
    if (isrv < 0)
        isrv = 0;
    if ((l->tpr & 0xf0) >= ((uint32_t)isrv & 0xf0))
        return l->tpr & 0xff;
    return (uint32_t)isrv & 0xf0;
}

static uint32_t x2apic_ldr(uint32_t id)
{
    return (id >> 4) << 16 | 1u << (id & 0xf);
}

/* A hardware-disabled APIC passes the PIC's INTR straight to the CPU; an enabled one only when
 * LINT0 is programmed for ExtINT (the "virtual wire"). */
static bool lapic_listens_to_pic(const struct lapic *l)
{
    if (!hw_enabled(l))
        return true;
    uint32_t lvt0 = l->lvt[LVT_LINT0];
    return !(lvt0 & LVT_MASKED) && ((lvt0 >> 8) & 7) == DM_EXTINT;
}

static int lapic_deliverable(const struct lapic *l)
{
    int v = vec_highest(l->irr);
    if (v < 0 || !hw_enabled(l) || ((uint32_t)v & 0xf0) <= (lapic_ppr(l) & 0xf0))
        return -1;
    return v;
}

/* Recomputes the answer of lapic_has_interrupt; news says something arrived from outside, so a
 * CPU that may be asleep must look even if the answer was already yes. */
static void lapic_update(struct lapic *l, struct irq_work *w, bool news)
{
    bool r = l->nmi_pending || l->extint_pending ||
             (l->c->pic.output && lapic_listens_to_pic(l)) || lapic_deliverable(l) >= 0;
    bool old = atomic_exchange_explicit(&l->ready, r, memory_order_release);
    if (r && (news || !old))
        w->kick |= 1ull << l->index;
}

void lapic_update_all(struct irqchip *c, struct irq_work *w)
{
    for (int i = 0; i < c->ncpus; i++)
        lapic_update(&c->cpus[i], w, true);
}

static void lapic_timer_arm(struct lapic *l, uint64_t deadline)
{
    atomic_store_explicit(&l->timer_deadline, deadline, memory_order_release);
}

void lapic_reset(struct lapic *l, bool power_on)
{
    if (power_on) {
        l->id = (uint32_t)l->index;
        l->base = LAPIC_BASE | APIC_BASE_EN | (l->index == 0 ? APIC_BASE_BSP : 0);
        l->tsc_hz = 0;
    }
    /* INIT keeps the ID and IA32_APIC_BASE (x2APIC mode included), and resets the rest. */
    l->tpr = 0;
    l->ldr = x2apic(l) ? x2apic_ldr(l->id) : 0;
    l->dfr = 0xffffffff;
    l->svr = 0xff;
    for (int i = 0; i < 8; i++)
        l->irr[i] = l->isr[i] = l->tmr[i] = 0;
    l->esr = l->esr_pending = 0;
    l->icr_lo = l->icr_hi = 0;
    for (int i = 0; i < LVT_NUM; i++)
        l->lvt[i] = LVT_MASKED;
    /* No firmware runs before the kernel: leave LINT0/LINT1 as a PC BIOS does on the BSP (ExtINT
     * and NMI, unmasked), so the PIC reaches the CPU before the OS sets the APIC up. */
    if (power_on && l->index == 0) {
        l->lvt[LVT_LINT0] = DM_EXTINT << 8;
        l->lvt[LVT_LINT1] = DM_NMI << 8;
    }
    l->dcr = 0;
    l->initial_count = 0;
    l->timer_start_ns = l->timer_period_ns = 0;
    l->tsc_deadline = 0;
    l->nmi_pending = l->extint_pending = false;
    l->nmi_second = l->nmi_in_service = false;
    lapic_timer_arm(l, UINT64_MAX);
    atomic_store(&l->ready, false);
}

static void lapic_accept_fixed(struct lapic *l, int vector, bool level, struct irq_work *w);

static void lapic_error(struct lapic *l, uint32_t bits, struct irq_work *w)
{
    l->esr_pending |= bits;
    uint32_t lvt = l->lvt[LVT_ERROR];
    /* An illegal error vector would report itself forever: drop it. */
    if (!(lvt & LVT_MASKED) && (lvt & 0xff) >= 16)
        lapic_accept_fixed(l, lvt & 0xff, false, w);
}

static void lapic_accept_fixed(struct lapic *l, int vector, bool level, struct irq_work *w)
{
    if (!hw_enabled(l) || !sw_enabled(l)) {
        log_debug(LOG_INT, "lapic %d: vector %#x dropped (APIC disabled)", l->index, vector);
        return;
    }
    if (vector < 16) {
        lapic_error(l, ESR_RECV_ILLEGAL, w);
        return;
    }
    vec_set(l->irr, vector);
    if (level)
        vec_set(l->tmr, vector);
    else
        vec_clear(l->tmr, vector);
    lapic_update(l, w, true);
}

static void lapic_accept(struct lapic *l, const struct apic_msg *m, struct irq_work *w)
{
    uint64_t bit = 1ull << l->index;
    switch (m->mode) {
    case DM_FIXED:
    case DM_LOWEST:
        lapic_accept_fixed(l, m->vector, m->level_trig, w);
        break;
    case DM_NMI:
        if (!l->nmi_pending)
            __atomic_store_n(&l->nmi_pending, true, __ATOMIC_RELEASE);
        else if (!l->nmi_in_service)
            l->nmi_second = true;
        lapic_update(l, w, true);
        break;
    case DM_INIT:
        lapic_reset(l, false);
        w->init |= bit;
        break;
    case DM_SIPI:
        w->sipi |= bit;
        w->sipi_vector = m->vector;
        break;
    case DM_EXTINT:
        l->extint_pending = true;
        lapic_update(l, w, true);
        break;
    default:
        machine_log_guest(l->c->m, LOG_UNIMP, "lapic delivery mode", "lapic %d: delivery mode %d ignored", l->index,
                          m->mode);
        break;
    }
}

static bool lapic_match(const struct lapic *l, const struct apic_msg *m)
{
    uint32_t dest = m->dest;
    bool broadcast = m->wide ? dest == 0xffffffff : (dest & 0xff) == 0xff;
    if (broadcast)
        return true;
    if (x2apic(l)) {
        if (!m->wide)
            dest &= 0xff;
        if (!m->logical)
            return dest == l->id;
        return (dest >> 16) == (l->ldr >> 16) && (dest & l->ldr & 0xffff);
    }
    if (m->wide && dest > 0xff)
        return false;   /* an x2APIC destination beyond what an xAPIC can be */
    uint8_t d8 = dest & 0xff;
    if (!m->logical)
        return d8 == (l->id & 0xff);
    uint8_t ldr = l->ldr >> 24;
    if ((l->dfr >> 28) == 0xf)      /* flat: a bit per CPU */
        return d8 & ldr;
    return (d8 >> 4) == (ldr >> 4) && (d8 & ldr & 0xf);   /* cluster */
}

void apic_deliver(struct irqchip *c, const struct apic_msg *m, struct irq_work *w)
{
    uint64_t targets = 0;
    for (int i = 0; i < c->ncpus; i++) {
        const struct lapic *l = &c->cpus[i];
        bool hit;
        switch (m->shorthand) {
        case 1: hit = i == m->src; break;
        case 2: hit = true; break;
        case 3: hit = i != m->src; break;
        default: hit = lapic_match(l, m); break;
        }
        /* A hardware-disabled APIC is off the bus. */
        if (hit && hw_enabled(l))
            targets |= 1ull << i;
    }
    if (m->mode == DM_LOWEST && targets) {
        /* Lowest priority: the least busy CPU; equals take turns. */
        int best = -1;
        uint32_t best_pri = 0x100;
        for (int k = 0; k < c->ncpus; k++) {
            int i = (int)((c->lowest_rr + (unsigned)k) % (unsigned)c->ncpus);
            uint32_t pri = lapic_ppr(&c->cpus[i]) & 0xf0;
            if ((targets & (1ull << i)) && pri < best_pri) {
                best = i;
                best_pri = pri;
            }
        }
        c->lowest_rr++;
        targets = 1ull << best;
    }
    for (int i = 0; i < c->ncpus; i++)
        if (targets & (1ull << i))
            lapic_accept(&c->cpus[i], m, w);
}

/* --- timer --- */

static uint64_t lapic_tick_ns(const struct lapic *l)
{
    unsigned v = (l->dcr & 3) | ((l->dcr >> 1) & 4);
    return (uint64_t)BUS_NS << ((v + 1) & 7);
}

static uint32_t lapic_current_count(const struct lapic *l, uint64_t now)
{
    /* A one-shot count that ran out stays at 0, also if the mode turns periodic (SDM 11.5.4) */
    if (timer_mode(l) == TIMER_TSC_DEADLINE || !l->timer_period_ns || now < l->timer_start_ns ||
        atomic_load_explicit(&l->timer_deadline, memory_order_relaxed) == UINT64_MAX)
        return 0;
    uint64_t elapsed = now - l->timer_start_ns;
    if (timer_mode(l) == TIMER_PERIODIC)
        elapsed %= l->timer_period_ns;
    else if (elapsed >= l->timer_period_ns)
        return 0;
    return (uint32_t)((l->timer_period_ns - elapsed) / lapic_tick_ns(l));
}

/* Starts counting from count (the initial count, or what was left when the divider changed). */
static void lapic_timer_start(struct lapic *l, uint64_t now, uint32_t count)
{
    if (timer_mode(l) == TIMER_TSC_DEADLINE)
        return;
    if (!l->initial_count || !count) {
        l->timer_period_ns = 0;
        lapic_timer_arm(l, UINT64_MAX);
        return;
    }
    uint64_t tick = lapic_tick_ns(l);
    l->timer_period_ns = (uint64_t)l->initial_count * tick;
    l->timer_start_ns = now - (uint64_t)(l->initial_count - count) * tick;
    lapic_timer_arm(l, l->timer_start_ns + l->timer_period_ns);
}

static uint64_t lapic_tsc_to_ns(const struct lapic *l, uint64_t tsc)
{
    if (!l->tsc_hz || tsc <= l->tsc0)
        return l->tsc_ns0;
    /* Round up: firing before the guest's TSC reaches the deadline would only make it rearm. */
    unsigned __int128 ns = ((unsigned __int128)(tsc - l->tsc0) * 1000000000u + l->tsc_hz - 1) / l->tsc_hz;
    ns += l->tsc_ns0;
    return ns >= UINT64_MAX ? UINT64_MAX - 1 : (uint64_t)ns;
}

static void lapic_timer_expire(struct lapic *l, uint64_t now_ns, struct irq_work *w);

static void lapic_write_lvt_timer(struct lapic *l, uint32_t val, struct irq_work *w)
{
    int old = timer_mode(l);
    uint64_t now = l->c->now();
    /* What fell due under the old mode fires under it. */
    lapic_timer_expire(l, now, w);
    if (old == TIMER_PERIODIC && (val >> 17 & 3) == TIMER_ONESHOT && l->timer_period_ns &&
        atomic_load_explicit(&l->timer_deadline, memory_order_relaxed) != UINT64_MAX && now > l->timer_start_ns) {
        /* The count goes on from where it is: the one-shot ends where this period does. */
        l->timer_start_ns += (now - l->timer_start_ns) / l->timer_period_ns * l->timer_period_ns;
        lapic_timer_arm(l, l->timer_start_ns + l->timer_period_ns);
    }
    l->lvt[LVT_TIMER] = val;
    int mode = timer_mode(l);
    /* SDM: changing to or from TSC-deadline mode disarms the timer. */
    if ((old == TIMER_TSC_DEADLINE) != (mode == TIMER_TSC_DEADLINE)) {
        l->initial_count = 0;
        l->timer_period_ns = 0;
        l->tsc_deadline = 0;
        lapic_timer_arm(l, UINT64_MAX);
    }
}

/* Fires the timer if it is due. Lock held. */
static void lapic_timer_expire(struct lapic *l, uint64_t now_ns, struct irq_work *w)
{
    uint64_t dl = atomic_load_explicit(&l->timer_deadline, memory_order_relaxed);
    if (now_ns < dl)
        return;
    uint32_t lvt = l->lvt[LVT_TIMER];
    if (!(lvt & LVT_MASKED))
        lapic_accept_fixed(l, lvt & 0xff, false, w);
    if (timer_mode(l) == TIMER_PERIODIC && l->timer_period_ns) {
        /* Ticks missed while the vCPU was away collapse into this one. */
        dl += ((now_ns - dl) / l->timer_period_ns + 1) * l->timer_period_ns;
    } else {
        dl = UINT64_MAX;
        l->tsc_deadline = 0;
    }
    lapic_timer_arm(l, dl);
}

uint64_t lapic_poll_timer(struct lapic *l, uint64_t now_ns)
{
    uint64_t dl = atomic_load_explicit(&l->timer_deadline, memory_order_acquire);
    if (now_ns < dl)
        return dl;
    struct irqchip *c = l->c;
    struct irq_work w = { 0 };
    irqchip_lock(c);
    lapic_timer_expire(l, now_ns, &w);
    dl = atomic_load_explicit(&l->timer_deadline, memory_order_relaxed);
    irqchip_unlock(c, &w);
    return dl;
}

void lapic_set_tsc(struct lapic *l, uint64_t hz, uint64_t ns0, uint64_t tsc0)
{
    irqchip_lock(l->c);
    l->tsc_hz = hz;
    l->tsc_ns0 = ns0;
    l->tsc0 = tsc0;
    if (timer_mode(l) == TIMER_TSC_DEADLINE && l->tsc_deadline)
        lapic_timer_arm(l, lapic_tsc_to_ns(l, l->tsc_deadline));
    irqchip_unlock(l->c, NULL);
}

/* --- registers --- */

static void lapic_eoi(struct lapic *l, struct irq_work *w)
{
    int v = vec_highest(l->isr);
    if (v < 0)
        return;
    vec_clear(l->isr, v);
    if (vec_test(l->tmr, v))
        ioapic_eoi(l->c, (uint8_t)v, w);
    lapic_update(l, w, false);
}

static void lapic_send_ipi(struct lapic *l, uint32_t lo, uint32_t dest, bool wide, struct irq_work *w)
{
    struct apic_msg m = {
        .vector = lo & 0xff,
        .mode = (lo >> 8) & 7,
        .logical = lo & (1u << 11),
        .shorthand = (lo >> 18) & 3,
        .wide = wide,
        .dest = dest,
        .src = l->index,
    };
    /* INIT level de-assert only resynchronised arbitration IDs on old buses. */
    if (m.mode == DM_INIT && (lo & ICR_LEVEL) && !(lo & ICR_ASSERT))
        return;
    if ((m.mode == DM_FIXED || m.mode == DM_LOWEST) && m.vector < 16) {
        lapic_error(l, ESR_SEND_ILLEGAL, w);
        return;
    }
    if (m.mode == DM_EXTINT || m.mode == 3)
        return;     /* not valid in the ICR */
    log_debug(LOG_INT, "lapic %d: IPI vector %#x mode %d dest %#x shorthand %d", l->index, m.vector,
              m.mode, dest, m.shorthand);
    apic_deliver(l->c, &m, w);
}

static void lapic_write_svr(struct lapic *l, uint32_t val)
{
    l->svr = val & SVR_WRITABLE;
    /* Software-disabling masks every LVT entry (SDM 11.4.7.2). */
    if (!sw_enabled(l))
        for (int i = 0; i < LVT_NUM; i++)
            l->lvt[i] |= LVT_MASKED;
}

/* Register at offset (16-byte aligned) for both the page and the MSRs; the caller checked mode. */
static uint32_t lapic_reg_read(struct lapic *l, uint32_t reg)
{
    switch (reg) {
    case 0x20: return x2apic(l) ? l->id : l->id << 24;
    case 0x30: return APIC_VERSION;
    case 0x80: return l->tpr;
    case 0xa0: return lapic_ppr(l);
    case 0xd0: return l->ldr;
    case 0xe0: return l->dfr;
    case 0xf0: return l->svr;
    case 0x280: return l->esr;
    case 0x300: return l->icr_lo;
    case 0x310: return l->icr_hi;
    case 0x380: return l->initial_count;
    case 0x390: return lapic_current_count(l, l->c->now());
    case 0x3e0: return l->dcr;
    }
    if (reg >= 0x100 && reg < 0x180)
        return l->isr[(reg - 0x100) >> 4];
    if (reg >= 0x180 && reg < 0x200)
        return l->tmr[(reg - 0x180) >> 4];
    if (reg >= 0x200 && reg < 0x280)
        return l->irr[(reg - 0x200) >> 4];
    if (reg >= 0x320 && reg < 0x320 + LVT_NUM * 0x10)
        return l->lvt[(reg - 0x320) >> 4];
    return 0;
}

static void lapic_reg_write(struct lapic *l, uint32_t reg, uint32_t val, struct irq_work *w)
{
    switch (reg) {
    case 0x20:
        if (!x2apic(l))
            l->id = val >> 24;
        return;
    case 0x80:
        l->tpr = val & 0xff;
        lapic_update(l, w, false);
        return;
    case 0xb0:
        lapic_eoi(l, w);
        return;
    case 0xd0:
        if (!x2apic(l))
            l->ldr = val & 0xff000000;
        return;
    case 0xe0:
        if (!x2apic(l))
            l->dfr = val | 0x0fffffff;
        return;
    case 0xf0:
        lapic_write_svr(l, val);
        lapic_update(l, w, false);
        return;
    case 0x280:
        /* A write makes the errors gathered since the last one readable. */
        l->esr = l->esr_pending;
        l->esr_pending = 0;
        return;
    case 0x300:
        l->icr_lo = val & ~ICR_BUSY;
        lapic_send_ipi(l, l->icr_lo, l->icr_hi >> 24, false, w);
        return;
    case 0x310:
        l->icr_hi = val & 0xff000000;
        return;
    case 0x380:
        if (timer_mode(l) == TIMER_TSC_DEADLINE)
            return;
        l->initial_count = val;
        lapic_timer_start(l, l->c->now(), val);
        return;
    case 0x3e0: {
        uint64_t now = l->c->now();
        uint32_t left = lapic_current_count(l, now);
        bool running = atomic_load(&l->timer_deadline) != UINT64_MAX;
        l->dcr = val & 0xb;
        if (running)
            lapic_timer_start(l, now, left);
        return;
    }
    }
    if (reg >= 0x320 && reg < 0x320 + LVT_NUM * 0x10) {
        int i = (reg - 0x320) >> 4;
        val &= lvt_writable[i];
        if (!sw_enabled(l))
            val |= LVT_MASKED;
        if (i == LVT_TIMER)
            lapic_write_lvt_timer(l, val, w);
        else
            l->lvt[i] = val;
        if (i == LVT_LINT0)
            lapic_update(l, w, true);
    }
}

uint32_t lapic_mmio_read(struct lapic *l, uint32_t offset)
{
    irqchip_lock(l->c);
    uint32_t v = 0;
    /* In x2APIC mode the page is gone (SDM 11.12.2); registers fill the first 4 bytes of 16. */
    if (hw_enabled(l) && !x2apic(l) && offset < 0x1000 && (offset & 0xf) < 4)
        v = lapic_reg_read(l, offset & 0xff0) >> ((offset & 3) * 8);
    irqchip_unlock(l->c, NULL);
    return v;
}

void lapic_mmio_write(struct lapic *l, uint32_t offset, uint32_t val)
{
    struct irq_work w = { 0 };
    irqchip_lock(l->c);
    if (hw_enabled(l) && !x2apic(l) && offset < 0x1000 && (offset & 0xf) == 0)
        lapic_reg_write(l, offset, val, &w);
    irqchip_unlock(l->c, &w);
}

static int lapic_write_base(struct lapic *l, uint64_t val, struct irq_work *w)
{
    if (val & APIC_BASE_RSVD)
        return -EINVAL;
    bool en = val & APIC_BASE_EN, extd = val & APIC_BASE_EXTD;
    /* SDM 11.12.5: no x2APIC without enable, no way back to xAPIC but through disabled. */
    if (extd && !en)
        return -EINVAL;
    if (x2apic(l) && en && !extd)
        return -EINVAL;
    if (!hw_enabled(l) && extd)
        return -EINVAL;
    bool was_en = hw_enabled(l), was_x2 = x2apic(l);
    l->base = (val & ~APIC_BASE_BSP) | (l->base & APIC_BASE_BSP);
    if (was_en && !en)
        lapic_reset(l, false);
    /* The x2APIC ID is the initial APIC ID whatever the xAPIC ID register was set to (SDM
     * 11.12.5.1); an APIC enabled again starts from it too, as under KVM. */
    if ((en && !was_en) || (extd && !was_x2))
        l->id = (uint32_t)l->index;
    if (extd && !was_x2)
        l->ldr = x2apic_ldr(l->id);
    lapic_update(l, w, false);
    return 0;
}

static int x2apic_msr_read(struct lapic *l, uint32_t msr, uint64_t *val)
{
    uint32_t reg = (msr - 0x800) << 4;
    switch (reg) {
    case 0x20: case 0x30: case 0x80: case 0xa0: case 0xd0: case 0xf0: case 0x280:
    case 0x380: case 0x390: case 0x3e0:
        break;
    case 0x300:
        *val = (uint64_t)l->icr_hi << 32 | l->icr_lo;
        return 0;
    default:
        if (!(reg >= 0x100 && reg < 0x280) && !(reg >= 0x320 && reg < 0x320 + LVT_NUM * 0x10))
            return -EINVAL;
    }
    *val = lapic_reg_read(l, reg);
    return 0;
}

static int x2apic_msr_write(struct lapic *l, uint32_t msr, uint64_t val, struct irq_work *w)
{
    uint32_t reg = (msr - 0x800) << 4;
    if (reg == 0x300) {
        l->icr_lo = (uint32_t)val & ~ICR_BUSY;
        l->icr_hi = (uint32_t)(val >> 32);
        lapic_send_ipi(l, l->icr_lo, l->icr_hi, true, w);
        return 0;
    }
    if (val >> 32)
        return -EINVAL;
    switch (reg) {
    case 0x80: case 0xf0: case 0x380: case 0x3e0:
        break;
    case 0xb0:
    case 0x280:
        if (val)
            return -EINVAL;
        break;
    case 0x3f0:     /* SELF IPI: bits 31:8 are reserved (#GP, as KVM and kvm-unit-tests' msr) */
        if (val & ~0xffull)
            return -EINVAL;
        lapic_send_ipi(l, ((uint32_t)val & 0xff) | 1u << 18, 0, true, w);   /* fixed, to self */
        return 0;
    default:
        if (!(reg >= 0x320 && reg < 0x320 + LVT_NUM * 0x10))
            return -EINVAL;
    }
    lapic_reg_write(l, reg, (uint32_t)val, w);
    return 0;
}

int lapic_msr_read(struct lapic *l, uint32_t msr, uint64_t *val)
{
    int ret = 0;
    irqchip_lock(l->c);
    if (msr == 0x1b)
        *val = l->base;
    else if (msr == 0x6e0)
        *val = timer_mode(l) == TIMER_TSC_DEADLINE ? l->tsc_deadline : 0;
    else if (msr >= 0x800 && msr <= 0x8ff && x2apic(l))
        ret = x2apic_msr_read(l, msr, val);
    else
        ret = -EINVAL;
    irqchip_unlock(l->c, NULL);
    return ret;
}

int lapic_msr_write(struct lapic *l, uint32_t msr, uint64_t val)
{
    int ret = 0;
    struct irq_work w = { 0 };
    irqchip_lock(l->c);
    if (msr == 0x1b) {
        ret = lapic_write_base(l, val, &w);
    } else if (msr == 0x6e0) {
        /* Ignored outside TSC-deadline mode (SDM 11.5.4.1). */
        if (timer_mode(l) == TIMER_TSC_DEADLINE) {
            l->tsc_deadline = val;
            lapic_timer_arm(l, val ? lapic_tsc_to_ns(l, val) : UINT64_MAX);
        }
    } else if (msr >= 0x800 && msr <= 0x8ff && x2apic(l)) {
        ret = x2apic_msr_write(l, msr, val, &w);
    } else {
        ret = -EINVAL;
    }
    irqchip_unlock(l->c, &w);
    return ret;
}

void lapic_set_cr8(struct lapic *l, uint64_t cr8)
{
    struct irq_work w = { 0 };
    irqchip_lock(l->c);
    l->tpr = (uint32_t)(cr8 & 0xf) << 4;
    lapic_update(l, &w, false);
    irqchip_unlock(l->c, &w);
}

uint64_t lapic_get_cr8(struct lapic *l)
{
    irqchip_lock(l->c);
    uint64_t v = l->tpr >> 4;
    irqchip_unlock(l->c, NULL);
    return v;
}

/* --- the CPU side --- */

void lapic_attach(struct lapic *l, const struct lapic_cpu_ops *ops, void *cpu)
{
    l->cpu = cpu;
    atomic_store_explicit(&l->ops, ops, memory_order_release);
}

bool lapic_has_interrupt(struct lapic *l)
{
    return atomic_load_explicit(&l->ready, memory_order_acquire);
}

bool lapic_nmi_pending(struct lapic *l)
{
    return __atomic_load_n(&l->nmi_pending, __ATOMIC_ACQUIRE);
}

bool lapic_take_nmi(struct lapic *l)
{
    if (!lapic_has_interrupt(l))
        return false;
    struct irq_work w = { 0 };
    irqchip_lock(l->c);
    bool nmi = l->nmi_pending;
    __atomic_store_n(&l->nmi_pending, l->nmi_second, __ATOMIC_RELEASE);
    l->nmi_second = false;
    if (nmi)
        l->nmi_in_service = true;
    lapic_update(l, &w, false);
    irqchip_unlock(l->c, &w);
    return nmi;
}

void lapic_end_nmi(struct lapic *l)
{
    irqchip_lock(l->c);
    l->nmi_in_service = false;
    irqchip_unlock(l->c, NULL);
}

int lapic_ack_interrupt(struct lapic *l)
{
    struct irqchip *c = l->c;
    struct irq_work w = { 0 };
    irqchip_lock(c);
    /* The APIC's own requests first, then the PIC's (as QEMU's cpu_get_pic_interrupt). */
    int v = lapic_deliverable(l);
    if (v >= 0) {
        vec_clear(l->irr, v);
        vec_set(l->isr, v);
    } else if (l->extint_pending || (c->pic.output && lapic_listens_to_pic(l))) {
        l->extint_pending = false;
        v = pic_intack(c, &w);
    }
    lapic_update(l, &w, false);
    irqchip_unlock(c, &w);
    if (v >= 0)
        log_debug(LOG_INT, "lapic %d: interrupt %#x", l->index, v);
    return v;
}

/* One section per CPU (instance = its index). Times move with the clock as the PIT's do; the
 * TSC deadline is in TSC units, which tsc_ns0 keeps continuous. */
static const struct vmstate_field lapic_fields[] = {
    VMSTATE_U64(struct lapic, base), VMSTATE_U32(struct lapic, id), VMSTATE_U32(struct lapic, tpr),
    VMSTATE_U32(struct lapic, ldr), VMSTATE_U32(struct lapic, dfr), VMSTATE_U32(struct lapic, svr),
    VMSTATE_U32_ARRAY(struct lapic, irr, 8), VMSTATE_U32_ARRAY(struct lapic, isr, 8),
    VMSTATE_U32_ARRAY(struct lapic, tmr, 8), VMSTATE_U32(struct lapic, esr),
    VMSTATE_U32(struct lapic, esr_pending), VMSTATE_U32(struct lapic, icr_lo), VMSTATE_U32(struct lapic, icr_hi),
    VMSTATE_U32_ARRAY(struct lapic, lvt, LVT_NUM), VMSTATE_U32(struct lapic, dcr),
    VMSTATE_U32(struct lapic, initial_count), VMSTATE_U64(struct lapic, timer_start_ns),
    VMSTATE_U64(struct lapic, timer_period_ns), VMSTATE_U64(struct lapic, tsc_deadline),
    VMSTATE_U64(struct lapic, tsc_hz), VMSTATE_U64(struct lapic, tsc_ns0), VMSTATE_U64(struct lapic, tsc0),
    VMSTATE_BOOL(struct lapic, nmi_pending), VMSTATE_BOOL(struct lapic, extint_pending),
    VMSTATE_U64(struct lapic, timer_deadline),
    /* version 2: a second NMI latched while the first one's handler runs */
    VMS_FIELD(struct lapic, nmi_second, VMS_BOOL, 1, 2), VMS_FIELD(struct lapic, nmi_in_service, VMS_BOOL, 1, 2),
    VMSTATE_END,
};

static int lapic_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct lapic *l = live, *s = state;
    if (!l->tsc_hz != !s->tsc_hz)
        return *why = "tsc_hz", -EINVAL;
    return 0;
}

static void lapic_post_load(void *opaque)
{
    struct lapic *l = opaque;
    struct irqchip *c = l->c;
    uint64_t shift = irqchip_clock_shift(c);
    struct irq_work w = { 0 };
    irqchip_lock(c);
    l->timer_start_ns += shift;
    l->tsc_ns0 += shift;
    uint64_t dl = atomic_load(&l->timer_deadline);
    if (dl != UINT64_MAX)
        lapic_timer_arm(l, dl + shift);
    lapic_update(l, &w, true);
    irqchip_unlock(c, &w);
}

static const struct vmstate_desc lapic_vmstate = {
    .name = "lapic", .version = 2, .min_version = 1, .size = sizeof(struct lapic), .fields = lapic_fields,
    .check = lapic_vmstate_check, .post_load = lapic_post_load,
};

int lapic_register_vmstate(struct irqchip *c)
{
    for (int i = 0; i < c->ncpus; i++) {
        int ret = vmstate_register(c->m, &lapic_vmstate, (uint32_t)i, &c->cpus[i]);
        if (ret)
            return ret;
    }
    return 0;
}
