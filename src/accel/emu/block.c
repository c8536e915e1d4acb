/* The block cache: decoded blocks found by (guest-physical address, decode mode), per CPU. A block
 * stays valid while its page's generation (emu_vm.gen) is unchanged: any write to a page that has
 * code bumps it (mem_smc), so self-modifying code and reused pages are decoded afresh. */
#include "accel/emu/block.h"

#include <stdlib.h>

#include "accel/emu/jit.h"
#include "util/log.h"

#define ARENA_SIZE (32u << 20)

int block_cache_init(struct cpu *c)
{
    c->arena = malloc(ARENA_SIZE);
    if (!c->arena)
        return -1;
    c->arena_size = ARENA_SIZE;
    c->arena_used = 0;   /* bhash and jc start zero: the cpu is fresh anonymous memory */
    return jit_init(c);
}

void block_cache_free(struct cpu *c)
{
    free(c->arena);
    c->arena = NULL;
    jit_free(c);
}

void block_cache_flush(struct cpu *c)
{
    memset(c->jc, 0, sizeof(c->jc));
    c->arena_used = 0;
    memset(c->bhash, 0, sizeof(c->bhash));
    c->link_from = NULL;
    jit_reset(c);
}

static inline unsigned block_hash(uint64_t pa, uint32_t mode)
{
    uint64_t h = (pa ^ (pa >> 12) ^ ((uint64_t)mode << 7)) * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> (64 - BLOCK_HASH_BITS));
}

/* An instruction that crosses into the next page when that page is not RAM: decoded each time,
 * never cached (what the bus answers there may change with every fetch). */
static struct block *decode_crossing(struct cpu *c, uint64_t la, const uint8_t *host, uint32_t mode)
{
    uint8_t buf[16];
    int first = 0x1000 - (int)(la & 0xfff);
    memcpy(buf, host, first);
    mem_fetch_io(c, (la + first) & c->lin_mask, buf + first, 16 - first);
    struct block *b = c->xblock;
    int ends;
    int n = decode_insn(buf, 15, mode & ~BLOCK_SS32, &b->ins[0], &ends);
    (void)n;
    b->n = 1;
    b->pa = ~0ull;
    b->code = NULL;
    return b;
}

/* The page after la's, as an instruction fetch reaches it (a walk that faults as that fetch
 * would): its host address, frame and RAM page index; NULL when it is not RAM. */
static const uint8_t *next_page_ptr(struct cpu *c, uint64_t la, uint64_t *pa, uint32_t *pidx)
{
    return mem_ptr_x(c, ((la | 0xfff) + 1) & c->lin_mask, pa, pidx);
}

/* An instruction that crosses into a next page of RAM, decoded into b (a fresh arena block):
 * cached like any block, with the next page's frame and generation, which block_get checks as
 * it checks the first page's. Linux's hot paths have such instructions (600 thousand lookups
 * in a boot and 1600 fork+execs), and decoding them afresh each time was a walk of the block
 * hash, a fetch and a decode per run. In 64-bit code it is translated too, behind a
 * check of the next page (jit.c: emit_next_page_check), so the blocks around it link to it.
 * false: not RAM there, or no valid instruction (decode_crossing then). */
static bool decode_crossing_ram(struct cpu *c, uint64_t la, const uint8_t *host, uint32_t mode,
                                struct block *b)
{
    uint64_t pa2;
    uint32_t pidx2;
    const uint8_t *host2 = next_page_ptr(c, la, &pa2, &pidx2);
    if (!host2)
        return false;
    /* as for the first page: marked before its generation is read */
    atomic_fetch_or_explicit(&c->vm->code[pidx2], EMU_PAGE_CODE, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t gen2 = atomic_load_explicit(&c->vm->gen[pidx2], memory_order_acquire);
    uint8_t buf[16];
    int first = 0x1000 - (int)(la & 0xfff), ends;
    memcpy(buf, host, first);
    memcpy(buf + first, host2, 16 - first);
    int len = decode_insn(buf, 15, mode & ~BLOCK_SS32, &b->ins[0], &ends);
    if (len <= first)
        return false;   /* an invalid encoding: its bytes need not reach the next page */
    b->bytes = (uint16_t)len;
    b->pa2 = pa2;
    b->pidx2 = pidx2;
    b->gen2 = gen2;
    return true;
}

/* The next page of a block that crosses one is still the frame and generation it was decoded
 * from, looked up as the fetch of its bytes would be (a walk that faults as that fetch would). */
static bool next_page_same(struct cpu *c, uint64_t la, const struct block *b)
{
    uint64_t pa2;
    uint32_t pidx2;
    if (!next_page_ptr(c, la, &pa2, &pidx2))
        return false;
    return pa2 == b->pa2 && pidx2 == b->pidx2 &&
           b->gen2 == atomic_load_explicit(&c->vm->gen[pidx2], memory_order_acquire);
}

/* Code outside RAM (a jump into the PCI hole, a device's window, past the end of RAM): one
 * instruction at a time from what the bus answers there, as hardware fetches it, never cached.
 * Nothing there is all ones, FF FF: #UD, and the guest's own handler decides what follows. */
static struct block *decode_io(struct cpu *c, uint64_t la, uint32_t mode)
{
    uint8_t buf[16];
    int first = 0x1000 - (int)(la & 0xfff);
    if (first > 15)
        first = 15;
    mem_fetch_io(c, la, buf, first);
    struct block *b = c->xblock;
    int ends;
    if (decode_insn(buf, first, mode & ~BLOCK_SS32, &b->ins[0], &ends) < 0 && first < 15) {
        /* it reaches into the next page: fetch that too (which may fault, as it would) */
        mem_fetch_io(c, (la + first) & c->lin_mask, buf + first, 15 - first);
        decode_insn(buf, 15, mode & ~BLOCK_SS32, &b->ins[0], &ends);
    }
    b->n = 1;
    b->pa = ~0ull;
    b->code = NULL;
    return b;
}

struct block *block_get_slow(struct cpu *c)
{
    c->slow_lookups++;
    uint64_t la = (c->segbase[SEG_CS] + c->rip) & c->lin_mask;
    uint32_t mode = block_mode(c);
    uint32_t key = mode | (uint32_t)c->cpl << 8;
    struct jc_entry *j = &c->jc[(la ^ (la >> JMP_CACHE_BITS)) & ((1u << JMP_CACHE_BITS) - 1)];
    uint64_t pa;
    uint32_t pidx;
    const uint8_t *host = mem_ptr_x(c, la, &pa, &pidx);
    if (unlikely(!host))
        return decode_io(c, la, mode);
    uint32_t gen = atomic_load_explicit(&c->vm->gen[pidx], memory_order_acquire);
    /* the jump cache had la but the TLB no longer did (a CR3 write empties it of everything
     * not global, so every user block after a context switch comes here): the walk just
     * refilled it, and the cached block is the one when it is still at that frame */
    if (j->la == la && j->key == key && j->b->pa == pa && j->b->mode == mode && j->b->gen == gen &&
        (!block_crosses(j->b) || next_page_same(c, la, j->b)))
        return j->b;
    unsigned h = block_hash(pa, mode);
    struct block **pp = &c->bhash[h];
    for (struct block *b = *pp; b; pp = &b->next, b = b->next) {
        if (b->pa == pa && b->mode == mode) {
            if (likely(b->gen == gen) && (likely(!block_crosses(b)) || next_page_same(c, la, b))) {
                if (pp != &c->bhash[h]) {
                    /* to the front: the walk was a cache miss per block passed (half of this
                     * function's time in a kernel-heavy guest, whose chains hold several
                     * blocks each), and a block looked up here once comes here again */
                    *pp = b->next;
                    b->next = c->bhash[h];
                    c->bhash[h] = b;
                }
                *j = (struct jc_entry){ la, key, b };
                return b;
            }
            *pp = b->next;   /* stale: its page was written */
            break;
        }
    }

    size_t need = sizeof(struct block) + BLOCK_MAX_INSNS * sizeof(struct insn);
    if (c->arena_used + need > c->arena_size)
        block_cache_flush(c);
    struct block *b = (struct block *)(c->arena + c->arena_used);
    /* mark the page before reading its generation: a write racing with the decode then bumps
     * the generation this block records, and the block is not used */
    atomic_fetch_or_explicit(&c->vm->code[pidx], EMU_PAGE_CODE, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    gen = atomic_load_explicit(&c->vm->gen[pidx], memory_order_acquire);
    int off = (int)(la & 0xfff), n = 0;
    bool crosses = false;
    while (n < BLOCK_MAX_INSNS && off < 0x1000) {
        int ends;
        int len = decode_insn(host + (off - (int)(la & 0xfff)), 0x1000 - off,
                              mode & ~BLOCK_SS32, &b->ins[n], &ends);
        if (len < 0) {
            if (n > 0)
                break;
            if (!decode_crossing_ram(c, la, host, mode, b))
                return decode_crossing(c, la, host, mode);
            crosses = true;
            n = 1;
            break;
        }
        off += b->ins[n].len;
        n++;
        if (ends || len == 0)
            break;
    }
    b->pa = pa;
    b->mode = mode;
    b->pidx = pidx;
    b->gen = gen;
    b->n = (uint16_t)n;
    b->hits = 0;
    b->code = NULL;
    if (!crosses)
        b->bytes = (uint16_t)(off - (int)(la & 0xfff));
    b->next = c->bhash[h];
    c->bhash[h] = b;
    c->arena_used += (sizeof(struct block) + n * sizeof(struct insn) + 15) & ~(size_t)15;
    *j = (struct jc_entry){ la, key, b };
    return b;
}
