/* String instructions with REP prefixes, and port I/O. A long REP stops after a slice of
 * iterations and restarts itself, so interrupts and kicks are not held off. */
#include "accel/emu/exec.h"

#define REP_SLICE 65536

static inline uint64_t amask(const struct insn *i) { return size_mask(i->asz); }

static inline void reg_add(struct cpu *c, int r, const struct insn *i, int64_t d)
{
    reg_set(c, r, i->asz, (c->r[r] + (uint64_t)d) & amask(i));
}

/* Single-step and data breakpoints see one iteration at a time (SDM vol. 3 17.3.1.4): the
 * instruction then stops after each one with RIP still on it while RCX says more are left, and
 * debug_step delivers the trap there. */
static inline unsigned rep_slice(const struct cpu *c)
{
    return (c->eflags & F_TF) || c->dbg_bp ? 1 : REP_SLICE;
}

/* Runs body for each iteration of a (possibly REP-prefixed) string instruction. */
#define STRING_LOOP(c, i, cond_check, body)                                                    \
    do {                                                                                        \
        if (!(i)->rep) {                                                                        \
            body;                                                                               \
            break;                                                                              \
        }                                                                                       \
        unsigned slice_ = rep_slice(c);                                                         \
        for (unsigned n_ = 0;; n_++) {                                                          \
            uint64_t cnt_ = reg_get(c, R_CX, (i)->asz);                                         \
            if (!cnt_)                                                                          \
                break;                                                                          \
            if (n_ == slice_) {                                                                 \
                (c)->rip -= (i)->len;                                                           \
                (c)->brk = true;                                                                \
                (c)->eflags |= F_RF;   /* begun: no instruction breakpoint when it resumes */  \
                break;                                                                          \
            }                                                                                   \
            body;                                                                               \
            reg_set(c, R_CX, (i)->asz, cnt_ - 1);                                               \
            if (cond_check)                                                                     \
                break;                                                                          \
        }                                                                                       \
    } while (0)

static inline int64_t step(struct cpu *c, int sz)
{
    return (c->eflags & F_DF) ? -sz : sz;
}

/* REP MOVS/STOS forward over RAM: whole runs of elements within a page at a time. */
static bool fast_movs(struct cpu *c, const struct insn *i, int sz, bool is_movs)
{
    uint64_t cnt = reg_get(c, R_CX, i->asz);
    while (cnt) {
        uint64_t di = reg_get(c, R_DI, i->asz);
        uint64_t dla = seg_lin(c, SEG_ES, di);
        uint64_t n = (0x1000 - (dla & 0xfff)) / sz;
        uint64_t si = 0, sla = 0;
        if (is_movs) {
            si = reg_get(c, R_SI, i->asz);
            sla = seg_lin(c, i->seg, si);
            uint64_t n2 = (0x1000 - (sla & 0xfff)) / sz;
            if (n2 < n)
                n = n2;
        }
        if (n > cnt)
            n = cnt;
        /* the address-size wrap and page-straddling elements go the slow way */
        if (n == 0 || (i->asz != 8 && (di + n * sz > amask(i) || si + n * sz > amask(i))))
            return cnt == 0;
        uint8_t *d = mem_ptr_w(c, dla, (int)(n * sz));
        if (!d)
            return false;
        if (is_movs) {
            const uint8_t *s = mem_ptr_r(c, sla, (int)(n * sz));
            if (!s)
                return false;
            if (d > s && d < s + n * sz) {
                for (uint64_t k = 0; k < n * sz; k++)
                    d[k] = s[k];   /* overlapping forward copy repeats the pattern, as REP MOVSB does */
            } else {
                memmove(d, s, n * sz);
            }
            reg_set(c, R_SI, i->asz, si + n * sz);
        } else {
            uint64_t v = c->r[R_AX] & size_mask(sz);
            /* a fill whose bytes are all alike (the kernel clearing pages with REP STOSQ) is a
             * memset; otherwise whole elements, never a memcpy of a variable size per element */
            if (v == (uint8_t)v * (size_mask(sz) / 0xff)) {
                memset(d, (int)(v & 0xff), n * sz);
            } else {
                for (uint64_t k = 0; k < n; k++) {
                    switch (sz) {
                    case 2: { uint16_t x = (uint16_t)v; memcpy(d + 2 * k, &x, 2); break; }
                    case 4: { uint32_t x = (uint32_t)v; memcpy(d + 4 * k, &x, 4); break; }
                    default: memcpy(d + 8 * k, &v, 8); break;
                    }
                }
            }
        }
        reg_set(c, R_DI, i->asz, di + n * sz);
        cnt -= n;
        reg_set(c, R_CX, i->asz, cnt);
    }
    return true;
}

H(h_movs)
{
    int sz = i->osz;
    if (i->rep && !(c->eflags & F_DF) && rep_slice(c) == REP_SLICE && fast_movs(c, i, sz, true))
        return;
    int64_t d = step(c, sz);
    STRING_LOOP(c, i, false, {
        uint64_t v = mem_rd(c, seg_lin(c, i->seg, reg_get(c, R_SI, i->asz)), sz);
        mem_wr(c, seg_lin(c, SEG_ES, reg_get(c, R_DI, i->asz)), sz, v);
        reg_add(c, R_SI, i, d);
        reg_add(c, R_DI, i, d);
    });
}

H(h_stos)
{
    int sz = i->osz;
    if (i->rep && !(c->eflags & F_DF) && rep_slice(c) == REP_SLICE && fast_movs(c, i, sz, false))
        return;
    int64_t d = step(c, sz);
    uint64_t v = reg_get(c, R_AX, sz);
    STRING_LOOP(c, i, false, {
        mem_wr(c, seg_lin(c, SEG_ES, reg_get(c, R_DI, i->asz)), sz, v);
        reg_add(c, R_DI, i, d);
    });
}

H(h_lods)
{
    int sz = i->osz;
    int64_t d = step(c, sz);
    STRING_LOOP(c, i, false, {
        reg_set(c, R_AX, sz, mem_rd(c, seg_lin(c, i->seg, reg_get(c, R_SI, i->asz)), sz));
        reg_add(c, R_SI, i, d);
    });
}

/* REPE/REPNE stop when ZF disagrees: F3 while equal, F2 while not equal. */
static inline bool rep_stop(struct cpu *c, const struct insn *i)
{
    bool zf = (c->cc_res & size_mask(i->osz)) == 0;   /* cc_op is SUB here */
    return i->rep == 0xf3 ? !zf : zf;
}

H(h_cmps)
{
    int sz = i->osz;
    int64_t d = step(c, sz);
    STRING_LOOP(c, i, rep_stop(c, i), {
        uint64_t a = mem_rd(c, seg_lin(c, i->seg, reg_get(c, R_SI, i->asz)), sz);
        uint64_t b = mem_rd(c, seg_lin(c, SEG_ES, reg_get(c, R_DI, i->asz)), sz);
        cc_set(c, CC_SUB, sz, (a - b) & size_mask(sz), b);
        reg_add(c, R_SI, i, d);
        reg_add(c, R_DI, i, d);
    });
}

H(h_scas)
{
    int sz = i->osz;
    int64_t d = step(c, sz);
    uint64_t a = reg_get(c, R_AX, sz);
    STRING_LOOP(c, i, rep_stop(c, i), {
        uint64_t b = mem_rd(c, seg_lin(c, SEG_ES, reg_get(c, R_DI, i->asz)), sz);
        cc_set(c, CC_SUB, sz, (a - b) & size_mask(sz), b);
        reg_add(c, R_DI, i, d);
    });
}

H(h_ins)
{
    int sz = i->osz == 8 ? 4 : i->osz;
    int64_t d = step(c, sz);
    uint16_t port = (uint16_t)c->r[R_DX];
    STRING_LOOP(c, i, false, {
        uint64_t la = seg_lin(c, SEG_ES, reg_get(c, R_DI, i->asz));
        mem_wr(c, la, sz, mem_rd(c, la, sz));   /* fault before the port is read */
        uint64_t v = 0;
        cpu_io(c, port, &v, sz, false);
        mem_wr(c, la, sz, v);
        reg_add(c, R_DI, i, d);
    });
}

H(h_outs)
{
    int sz = i->osz == 8 ? 4 : i->osz;
    int64_t d = step(c, sz);
    uint16_t port = (uint16_t)c->r[R_DX];
    STRING_LOOP(c, i, false, {
        uint64_t v = mem_rd(c, seg_lin(c, i->seg, reg_get(c, R_SI, i->asz)), sz);
        cpu_io(c, port, &v, sz, true);
        reg_add(c, R_SI, i, d);
    });
}

static void do_in(struct cpu *c, const struct insn *i, uint16_t port)
{
    int sz = i->osz == 8 ? 4 : i->osz;
    uint64_t v = 0;
    cpu_io(c, port, &v, sz, false);
    reg_set(c, R_AX, sz, v);
}

static void do_out(struct cpu *c, const struct insn *i, uint16_t port)
{
    int sz = i->osz == 8 ? 4 : i->osz;
    uint64_t v = reg_get(c, R_AX, sz);
    cpu_io(c, port, &v, sz, true);
}

H(h_in_i) { do_in(c, i, (uint16_t)(i->imm & 0xff)); }
H(h_out_i) { do_out(c, i, (uint16_t)(i->imm & 0xff)); }
H(h_in_dx) { do_in(c, i, (uint16_t)c->r[R_DX]); }
H(h_out_dx) { do_out(c, i, (uint16_t)c->r[R_DX]); }
