/* Guest memory set-up, for the machine's own use (devices use machine_gpa_ptr in machine.h). */
#ifndef QKVM_VM_MEMORY_H
#define QKVM_VM_MEMORY_H
#include <stdbool.h>
#include <stdint.h>

struct machine;

/* RAM from this size on is advised transparent huge pages from its creation. */
#define MEMORY_HUGE_MIN (1ull << 30)

/* Maps size bytes of RAM: [0, min(size, 3G)) and the rest from 4 GiB. A nonzero hole leaves
 * [hole, 0x100000) to the firmware (0xe0000: its alias; 0xc0000: the PC's PAM-controlled view).
 * 0 or -errno. */
int memory_create_ram(struct machine *m, uint64_t size, uint64_t hole);
/* A further region (a ROM) backed by host memory the caller owns. 0 or -ENOSPC. */
int memory_add_region(struct machine *m, uint64_t gpa, uint64_t size, uint8_t *host, bool readonly);
void memory_destroy(struct machine *m);
/* The index in m->mem of the region holding all of [gpa, gpa+len), with gpa's offset in it in
 * *off, or -1. Safe against a device region moving meanwhile (struct mem_region). */
int memory_find(struct machine *m, uint64_t gpa, uint64_t len, uint64_t *off);

/* ---- Dirty tracking for migration (vm/migration.c), by page of m->ram (offset >> 12) ---- */
/* Pages of m->ram, the bits of a dirty bitmap. */
uint64_t memory_ram_pages(const struct machine *m);
/* Starts tracking from a clean slate (the caller sends every page once anyway): the
 * accelerator is armed over all RAM.
 * With the vCPUs parked. 0, -EOPNOTSUPP (the accelerator cannot track) or -ENOMEM. */
int memory_dirty_start(struct machine *m);
void memory_dirty_stop(struct machine *m);
/* ORs the pages written since the last sync into out (memory_ram_pages bits), clears them and
 * arms them again; returns how many were taken. With the vCPUs parked, so that no write is
 * between the accelerator's check and its store while a page is armed. */
uint64_t memory_dirty_sync(struct machine *m, uint64_t *out);
/* [gpa, gpa+len) was written (by a CPU of a tracking accelerator, or a device through
 * machine_note_dirty): its pages' bits in their region's bitmap (struct mem_region.dirty), for
 * guest RAM only while tracking is on. Any thread. */
void memory_note_written(struct machine *m, uint64_t gpa, uint64_t len);

#endif
