/* The block translator: turns a hot decoded block (16-, 32- or 64-bit code) into x86-64 host
 * code. Frequent integer instructions (moves, ALU, shifts, loads and stores through the software
 * TLB, push/pop) and SSE/SSE2 float moves and arithmetic become inline host instructions on the
 * guest registers in struct cpu; every other instruction becomes a call to its interpreter
 * handler, so the two always agree. Blocks link to each other directly (relative branches) or
 * through the jump cache (RET, indirect CALL/JMP). Internal to src/accel/emu/. */
#ifndef QKVM_ACCEL_EMU_JIT_H
#define QKVM_ACCEL_EMU_JIT_H
#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"


int jit_init(struct cpu *c);
void jit_free(struct cpu *c);
/* Forgets every translation (with the block cache). */
void jit_reset(struct cpu *c);
/* Translates b (b->code), or leaves it to the interpreter: a host without the translator, or no
 * room left (then the block cache is flushed and translation starts afresh). */
void jit_compile(struct cpu *c, struct block *b);
/* Runs translated block b (and the blocks linked from it) from the state the interpreter would
 * run it from; returns with the CPU as the interpreter would leave it. */
void jit_run(struct cpu *c, struct block *b);
/* Points the link jump whose rel32 is at from (c->link_from) at translated block to. */
void jit_link(struct cpu *c, uint8_t *from, const struct block *to);

#endif
