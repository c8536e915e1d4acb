/* The per-CPU cache of decoded blocks (see decode.h for their shape). */
#ifndef QKVM_ACCEL_EMU_BLOCK_H
#define QKVM_ACCEL_EMU_BLOCK_H
#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"

#define BLOCK_MAX_INSNS 64
/* Outside 64-bit mode a block's mode also says whether the stack is 32-bit (SS.B), since its
 * translation inlines PUSH/POP/CALL/RET for that stack width; the decoder never sees this bit. */
#define BLOCK_SS32 1u

static inline uint32_t block_mode(const struct cpu *c)
{
    return decode_mode(c->csz, c->code64) | (!c->code64 && c->ssz == 4 ? BLOCK_SS32 : 0);
}

int block_cache_init(struct cpu *c);
void block_cache_free(struct cpu *c);
void block_cache_flush(struct cpu *c);
/* The block at CS:RIP, decoded now if it is not cached or its page changed. Faults like a code
 * fetch (#PF, #GP); NULL when RIP points at something that is not RAM. */
struct block *block_get_slow(struct cpu *c);

/* For a block that crosses a page: the TLB still maps the next page executable at the frame
 * its instruction's tail came from, unwritten since. */
static inline bool block_next_page_mapped(struct cpu *c, uint64_t la, const struct block *b)
{
    uint64_t la2 = ((la | 0xfff) + 1) & c->lin_mask;
    const struct tlb_entry *e = &c->tlbc[(la2 >> 12) & (TLB_SIZE - 1)];
    return e->vx == la2 && e->pa == b->pa2 &&
           b->gen2 == atomic_load_explicit(&c->vm->gen[b->pidx2], memory_order_relaxed);
}

static inline struct block *block_get(struct cpu *c)
{
    uint64_t la = (c->segbase[SEG_CS] + c->rip) & c->lin_mask;
    uint32_t key = block_mode(c) | (uint32_t)c->cpl << 8;
    struct jc_entry *j = &c->jc[(la ^ (la >> JMP_CACHE_BITS)) & ((1u << JMP_CACHE_BITS) - 1)];
    if (likely(j->la == la && j->key == key)) {
        /* still mapped the same way: the TLB holds the page, executable, at the block's frame */
        struct block *b = j->b;
        const struct tlb_entry *e = tlb_slot(c->tlbc, la);
        if (likely(e->vx == (la & ~0xfffull) && e->pa == (b->pa & ~0xfffull) &&
                   b->gen == atomic_load_explicit(&c->vm->gen[b->pidx], memory_order_relaxed)) &&
            (likely(!block_crosses(b)) || block_next_page_mapped(c, la, b)))
            return b;
    }
    return block_get_slow(c);
}

#endif
