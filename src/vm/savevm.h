/* savevm/loadvm: a running machine's whole state (the migration stream, vm/migration.h) kept
 * inside a qcow2 image as QEMU keeps it: the stream in the image's VM state area, then an
 * internal snapshot with vm_state_size set (block/snapshot.h), and a disk snapshot of the same
 * name on every other disk the guest can write, so that going back restores memory, devices and
 * disks together. The layout and figures are in docs/migration.md.
 *
 * Everything runs on the machine's I/O thread (the monitors' thread), the guest paused meanwhile
 * and running again after if it was running. Functions return 0 or -errno with why set (one
 * line, QEMU's wording where QEMU has one). */
#ifndef QKVM_VM_SAVEVM_H
#define QKVM_VM_SAVEVM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct machine;

struct savevm_req {
    const char *tag;
    int vmstate;                /* the disk whose image holds the state; -1: the first that can */
    const int *devices;         /* the disks to snapshot (must include vmstate); NULL: every one
                                 * the guest can write */
    int ndevices;
    bool overwrite;             /* HMP savevm: a snapshot of that name is replaced */
    const char *const *names;   /* disk names for messages (m->ndisks of them); NULL: "virtioN" */
};

int savevm_save(struct machine *m, const struct savevm_req *r, char *why, size_t n);
/* Every chosen disk goes to the snapshot, then the state is read back and loaded. Checked
 * before anything changes: every disk has the snapshot, the state disk's has a VM state. A
 * stream that turns out corrupt after the disks went back leaves the guest paused (QEMU: "the
 * VM is in an undefined state"), with why saying so. */
int savevm_load(struct machine *m, const struct savevm_req *r, char *why, size_t n);
int savevm_delete(struct machine *m, const struct savevm_req *r, char *why, size_t n);
/* HMP `info snapshots`: QEMU's table of the snapshots present on every writable disk. */
void savevm_print_info(struct machine *m, const char *const *names, FILE *out);

/* QMP's snapshot-save/-load/-delete as jobs (QEMU 6.0+): the job is made now (status
 * "created") and runs on the next turn of the machine's loop, through running, waiting, pending
 * to concluded, each a JOB_STATUS_CHANGE event; job-dismiss drops a concluded one ("null").
 * kind: "snapshot-save", "snapshot-load", "snapshot-delete". The request is copied. 0, or
 * -EEXIST (the id is in use) / -ENOMEM with why set. */
int savevm_job_start(struct machine *m, const char *kind, const char *id, const struct savevm_req *r,
                     char *why, size_t n);
/* QMP's JobInfo of each job, in creation order: calls fn for each. */
struct savevm_job_info {
    const char *id, *type, *status;
    const char *error;          /* NULL: none */
};
void savevm_job_for_each(struct machine *m, void (*fn)(void *opaque, const struct savevm_job_info *j), void *opaque);
/* 0, -ENOENT (no such job) or -EBUSY (not concluded yet). */
int savevm_job_dismiss(struct machine *m, const char *id);

/* -loadvm NAME: runs savevm_load once the machine's loop runs; a failure ends qkvm with status
 * 1 after one error line; autostart: the guest runs after. 0 or -ENOMEM. */
int savevm_load_at_start(struct machine *m, const char *tag, bool autostart);

#endif
