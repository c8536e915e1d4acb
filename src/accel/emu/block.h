/* The per-CPU cache of decoded blocks (see decode.h for their shape). */
#ifndef QKVM_ACCEL_EMU_BLOCK_H
#define QKVM_ACCEL_EMU_BLOCK_H
#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"

int block_cache_init(struct cpu *c);
void block_cache_free(struct cpu *c);
void block_cache_flush(struct cpu *c);
/* The block at CS:RIP, decoded now if it is not cached or its page changed. Faults like a code
 * fetch (#PF, #GP); NULL when RIP points at something that is not RAM. */
struct block *block_get(struct cpu *c);

#endif
