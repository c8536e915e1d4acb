/* Migration: a running machine's whole state (RAM, then every device and vCPU through
 * vm/vmstate.h) sent over a channel to another qkvm, which carries on where it stopped. Channels
 * are QEMU's URIs: tcp:HOST:PORT, unix:PATH, file:PATH, exec:CMD. Over tcp and unix RAM goes
 * first while the guest runs (pre-copy, rounds of the pages it wrote since, vm/memory.h's dirty
 * tracking), then the guest is paused for the last pages and the devices (stop-and-copy). To a
 * file or a command the guest is paused first and everything written once. The stream format and
 * the figures are in docs/migration.md.
 *
 * Every function here runs on the machine's I/O thread (the monitors' thread); the transfer runs
 * on a thread of its own and comes back to the I/O thread to pause, save and load devices. */
#ifndef QKVM_VM_MIGRATION_H
#define QKVM_VM_MIGRATION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;

/* QMP's MigrationStatus, in its spelling (migration_status_name). */
enum migration_status {
    MIG_NONE, MIG_SETUP, MIG_ACTIVE, MIG_DEVICE, MIG_COMPLETED, MIG_FAILED, MIG_CANCELLING, MIG_CANCELLED,
};
const char *migration_status_name(enum migration_status s);

/* What query-migrate reports (QEMU's MigrationInfo): times in ms, ram in bytes and pages. */
struct migration_info {
    enum migration_status status;
    bool incoming;
    uint64_t total_time, setup_time, downtime, expected_downtime;
    uint64_t transferred, remaining, total, duplicate, normal, normal_bytes, dirty_sync_count;
    uint64_t precopy_bytes, downtime_bytes, dirty_pages_rate, pages_per_second;
    double mbps;
    char error[256];
};

/* Starts sending m to uri. 0, or -errno with why set (one line: a bad URI, a channel that does
 * not open, a migration already running). The outcome comes later: query-migrate, MIGRATION. */
int migration_start(struct machine *m, const char *uri, char *why, size_t n);
/* Cancels a running outgoing migration; the guest goes on running. 0 (nothing running: 0 too). */
int migration_cancel(struct machine *m);
/* -incoming URI / migrate-incoming: waits for a stream on uri ("defer": for migrate-incoming)
 * with the vCPUs paused; once it is loaded the guest runs unless autostart is false (-S). A bad
 * stream ends qkvm with status 1 after one error line. 0 or -errno with why set. */
int migration_incoming(struct machine *m, const char *uri, bool autostart, char *why, size_t n);
/* cont while an incoming migration is awaited or under way: the guest is to run once the state
 * is in (QEMU's autostart), not before, since nothing in RAM is its yet. true when that is
 * what this machine does now (the caller does not resume it). */
bool migration_incoming_autostart(struct machine *m);
/* true between -incoming defer and migrate-incoming */
bool migration_incoming_deferred(const struct machine *m);
void migration_query(const struct machine *m, struct migration_info *out);
/* NULL, or the run state migration puts the machine in: "inmigrate", "finish-migrate",
 * "postmigrate" (QMP's RunState). */
const char *migration_run_state(const struct machine *m);

/* savevm/loadvm (vm/savevm.h): the stream written whole to fd, every page and the devices, with
 * the guest paused (it stays paused; the caller resumes it); *written: its bytes. Then read back
 * from fd into m: the header is checked before RAM is written, the devices all or nothing after
 * the checksum matched (crc_checked: the caller has checked it over these very bytes, and it is
 * not computed twice). On the I/O thread, no migration running. 0 or -errno with why set. */
int migration_save_fd(struct machine *m, int fd, uint64_t *written, char *why, size_t n);
int migration_load_fd(struct machine *m, int fd, bool crc_checked, char *why, size_t n);
/* The stream's checksum, carried on: CRC-32 (zlib's) of n more bytes at p after crc (0 to start).
 * The stream ends with a 0xff tag and the CRC of every byte before it, the tag included. */
uint32_t migration_crc32(uint32_t crc, const void *p, size_t n);

/* migrate-set-capabilities: "events" (MIGRATION events are sent only with it, as in QEMU),
 * "mapped-ram" (QEMU 9's: file: only, RAM at fixed offsets in the file, and a restore that maps
 * it from there, vm/mapped_ram.h; on both sides). -ENOENT for a capability qkvm does not have,
 * -EBUSY while migrating. */
int migration_set_capability(struct machine *m, const char *name, bool on);
bool migration_get_capability(const struct machine *m, const char *name);
/* The capabilities qkvm knows, NULL-terminated. */
extern const char *const migration_capabilities[];
/* migrate-set-parameters: "downtime-limit" (ms, default 300), "max-bandwidth" (bytes per
 * second, default 128 MiB/s), QEMU's defaults and ranges. -ENOENT / -ERANGE. */
int migration_set_parameter(struct machine *m, const char *name, int64_t value);
int64_t migration_get_parameter(const struct machine *m, const char *name);

#endif
