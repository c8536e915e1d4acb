/* savevm/loadvm/delvm (vm/savevm.h) on the migration stream and block/snapshot.h.
 *
 * Order, as QEMU's save_snapshot/load_snapshot: every disk is checked first (it can hold
 * snapshots; the tag is there or not), then the guest pauses, the stream goes into the state
 * disk's VM state area and the snapshots are taken. Loading first makes sure the state is whole
 * before anything is touched: the stream is read out of the snapshot's VM state area where it
 * lies (block_snapshot_vmstate_read, the image unchanged) and its framing and checksum checked;
 * a bad one leaves disks and guest as they were. Only then do the disks go to the snapshot: no
 * undo snapshot, so a loadvm costs the image only the syncs of that one switch. */
#include "vm/savevm.h"

#include "block/block.h"
#include "block/cli.h"
#include "block/snapshot.h"
#include "hw/disk.h"
#include "util/clock.h"
#include "util/evloop.h"
#include "util/log.h"
#include "vm/control.h"
#include "vm/machine.h"
#include "vm/migration.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SV_CHUNK        (4u << 20)        /* bytes per block_vmstate_write/read */
#define SV_MAX_STATE    (64ull << 30)     /* a VM state area larger than this is not ours */
#define SV_MIG_MAGIC    "QKVMMIG"         /* vm/migration.c's stream starts so */

struct sv_job {
    char *id, *tag;
    const char *kind, *status;
    char *error;
    int vmstate, ndevices;
    int devices[MACHINE_MAX_DISKS];
    bool all_devices;
    struct sv_job *next;
};

struct savevm {
    struct machine *m;
    struct sv_job *jobs;                  /* in creation order */
    int job_fd;                           /* an eventfd: jobs to run */
    uint64_t created_ns;                  /* the VM clock of the snapshots: time since then */
    int start_fd;                         /* -loadvm: an eventfd the loop runs it from */
    char *start_tag;
    bool start_autostart;
};

static void sv_free(void *opaque)
{
    struct savevm *s = opaque;
    if (s->start_fd >= 0) {
        evloop_del(s->m->loop, s->start_fd);
        close(s->start_fd);
    }
    free(s->start_tag);
    if (s->job_fd >= 0) {
        evloop_del(s->m->loop, s->job_fd);
        close(s->job_fd);
    }
    while (s->jobs) {
        struct sv_job *j = s->jobs;
        s->jobs = j->next;
        free(j->id);
        free(j->tag);
        free(j->error);
        free(j);
    }
    s->m->savevm = NULL;
    free(s);
}

static struct savevm *sv_get(struct machine *m)
{
    if (m->savevm)
        return m->savevm;
    struct savevm *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->m = m;
    s->start_fd = s->job_fd = -1;
    s->created_ns = clock_now_ns();
    if (machine_add_cleanup(m, sv_free, s)) {
        free(s);
        return NULL;
    }
    m->savevm = s;
    return s;
}

static int sv_fail(char *why, size_t n, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int sv_fail(char *why, size_t n, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return err;
}

static const char *sv_name(const struct savevm_req *r, int idx, char *buf, size_t n)
{
    if (r && r->names && r->names[idx])
        return r->names[idx];
    snprintf(buf, n, "virtio%d", idx);
    return buf;
}

/* The disks r asks for (all the writable ones when it names none), each able to hold
 * snapshots: their indices in out[], their count, or -errno with why set. */
static int sv_pick_disks(struct machine *m, const struct savevm_req *r, int *out, char *why, size_t n)
{
    int cnt = 0;
    char nb[32];
    if (r->devices) {
        for (int i = 0; i < r->ndevices; i++) {
            if (r->devices[i] < 0 || r->devices[i] >= disk_count(m))
                return sv_fail(why, n, -ENOENT, "no such disk");
            out[cnt++] = r->devices[i];
        }
    } else {
        for (int i = 0; i < disk_count(m); i++) {
            bool ro = true;
            if (disk_get_block(m, i, NULL, &ro) && !ro)
                out[cnt++] = i;
        }
    }
    for (int k = 0; k < cnt; k++) {
        struct block *bs = disk_get_block(m, out[k], NULL, NULL);
        struct block_snapshot *l = NULL;
        int nl = 0, ret = block_snapshot_list(bs, &l, &nl);
        block_snapshot_list_free(l, nl);
        if (ret == -ENOTSUP)
            return sv_fail(why, n, ret, "Device '%s' is writable but does not support snapshots (%s)",
                           sv_name(r, out[k], nb, sizeof(nb)), block_format_name(bs));
        if (ret)
            return sv_fail(why, n, ret, "Device '%s': cannot read its snapshots: %s", sv_name(r, out[k], nb, sizeof(nb)),
                           strerror(-ret));
    }
    if (!cnt)
        return sv_fail(why, n, -ENOTSUP, "No block device can accept snapshots");
    return cnt;
}

/* The state disk: r->vmstate if it is among disks, else the first. */
static int sv_state_disk(const struct savevm_req *r, const int *disks, int nd, char *why, size_t n)
{
    if (r->vmstate < 0)
        return disks[0];
    for (int k = 0; k < nd; k++)
        if (disks[k] == r->vmstate)
            return r->vmstate;
    char nb[32];
    return sv_fail(why, n, -EINVAL, "Device '%s' is not among the devices to snapshot",
                   sv_name(r, r->vmstate, nb, sizeof(nb)));
}

/* The snapshot tag on disk idx: its entry copied to *out (name pointers dropped), or -ENOENT. */
static int sv_find(struct machine *m, int idx, const char *tag, struct block_snapshot *out)
{
    struct block_snapshot *l = NULL;
    int nl = 0, ret = block_snapshot_list(disk_get_block(m, idx, NULL, NULL), &l, &nl);
    if (ret)
        return ret;
    int k = block_snapshot_find(l, nl, tag);
    if (k >= 0) {
        *out = l[k];
        out->id = out->name = NULL;
    }
    block_snapshot_list_free(l, nl);
    return k >= 0 ? 0 : -ENOENT;
}

int savevm_save(struct machine *m, const struct savevm_req *r, char *why, size_t n)
{
    struct savevm *s = sv_get(m);
    int disks[MACHINE_MAX_DISKS], nd, sd;
    char nb[32];
    if (!s)
        return sv_fail(why, n, -ENOMEM, "out of memory");
    if (!r->tag || !*r->tag)
        return sv_fail(why, n, -EINVAL, "a snapshot needs a name");
    if ((nd = sv_pick_disks(m, r, disks, why, n)) < 0)
        return nd;
    if ((sd = sv_state_disk(r, disks, nd, why, n)) < 0)
        return sd;
    struct block_snapshot old;
    for (int k = 0; k < nd; k++) {
        if (sv_find(m, disks[k], r->tag, &old))
            continue;
        if (!r->overwrite)
            return sv_fail(why, n, -EEXIST, "Snapshot '%s' already exists in one or more devices", r->tag);
    }
    uint64_t t0 = clock_now_ns();
    bool was_running = !machine_is_paused(m);
    machine_pause(m);
    int ret = 0, made = 0;
    uint64_t len = 0;
    int fd = memfd_create("qkvm-savevm", MFD_CLOEXEC);
    if (fd < 0) {
        ret = sv_fail(why, n, -errno, "cannot make a buffer for the VM state: %s", strerror(errno));
        goto out;
    }
    /* HMP savevm replaces a snapshot of that name, as QEMU's does */
    for (int k = 0; k < nd && r->overwrite; k++)
        if (!sv_find(m, disks[k], r->tag, &old) &&
            (ret = block_snapshot_delete_by(disk_get_block(m, disks[k], NULL, NULL), r->tag))) {
            sv_fail(why, n, ret, "Error while deleting snapshot on device '%s': %s",
                    sv_name(r, disks[k], nb, sizeof(nb)), strerror(-ret));
            goto out;
        }
    char mwhy[300];
    if ((ret = migration_save_fd(m, fd, &len, mwhy, sizeof(mwhy)))) {
        sv_fail(why, n, ret, "Error saving the VM state: %s", mwhy);
        goto out;
    }
    machine_pause(m);   /* a failed save resumes; a good one leaves the guest paused: make sure */
    struct block *sbs = disk_get_block(m, sd, NULL, NULL);
    uint8_t *buf = malloc(SV_CHUNK);
    if (!buf) {
        ret = sv_fail(why, n, -ENOMEM, "out of memory");
        goto out;
    }
    for (uint64_t pos = 0; pos < len && !ret;) {
        size_t c = len - pos < SV_CHUNK ? (size_t)(len - pos) : SV_CHUNK;
        ssize_t got = pread(fd, buf, c, (off_t)pos);
        if (got != (ssize_t)c)
            ret = got < 0 ? -errno : -EIO;
        else
            ret = block_vmstate_write(sbs, pos, buf, c);
        pos += c;
    }
    free(buf);
    if (ret) {
        sv_fail(why, n, ret, "Error writing the VM state to device '%s': %s", sv_name(r, sd, nb, sizeof(nb)),
                strerror(-ret));
        goto out;
    }
    /* the state disk last: a snapshot with a VM state exists only when the others do */
    for (int pass = 0; pass < 2 && !ret; pass++)
        for (int k = 0; k < nd && !ret; k++) {
            if ((disks[k] == sd) != (pass == 1))
                continue;
            struct block_snapshot sn = {
                .name = (char *)r->tag, .vm_state_size = disks[k] == sd ? len : 0,
                .vm_clock_nsec = clock_now_ns() - s->created_ns, .icount = BLOCK_SNAPSHOT_NO_ICOUNT,
            };
            ret = block_snapshot_create(disk_get_block(m, disks[k], NULL, NULL), &sn);
            if (ret)
                sv_fail(why, n, ret, "Error while creating snapshot on '%s': %s", sv_name(r, disks[k], nb, sizeof(nb)),
                        strerror(-ret));
            else
                disks[made++] = disks[k];   /* made <= k: the ones taken, in front */
        }
    if (ret)   /* no half snapshot: the disks that got one lose it again */
        for (int k = 0; k < made; k++)
            block_snapshot_delete(disk_get_block(m, disks[k], NULL, NULL), NULL, r->tag);
out:
    if (fd >= 0)
        close(fd);
    if (!ret)   /* the figures docs/migration.md quotes: qkvm -d time */
        log_debug(LOG_TIME, "savevm %s: %" PRIu64 " bytes of VM state, %" PRIu64 " ms", r->tag, len,
                  (clock_now_ns() - t0) / 1000000);
    if (was_running)
        machine_resume(m);
    return ret;
}

/* Reads the VM state of the state disk's snapshot tag into a memfd (returned), checking the
 * stream's framing and checksum on the way: -EINVAL with why set for a corrupt one. */
static int sv_read_state(struct block *bs, const char *tag, uint64_t len, int *out, char *why, size_t n)
{
    if (len < 8 + 24 + 5 || len > SV_MAX_STATE)
        return sv_fail(why, n, -EINVAL, "its VM state is %" PRIu64 " bytes: not a qkvm VM state", len);
    int fd = memfd_create("qkvm-loadvm", MFD_CLOEXEC);
    uint8_t *buf = malloc(SV_CHUNK);
    int ret = fd < 0 ? -errno : !buf ? -ENOMEM : 0;
    uint32_t crc = 0;
    uint8_t tail[5];
    for (uint64_t pos = 0; pos < len && !ret;) {
        size_t c = len - pos < SV_CHUNK ? (size_t)(len - pos) : SV_CHUNK;
        if ((ret = block_snapshot_vmstate_read(bs, tag, pos, buf, c)))
            break;
        if (pos == 0 && memcmp(buf, SV_MIG_MAGIC, 8)) {
            ret = sv_fail(why, n, -EINVAL, "its VM state is not a qkvm VM state stream (bad magic)");
            break;
        }
        /* the checksum covers every byte before the last four; those four are kept aside */
        uint64_t covered = pos + c <= len - 4 ? c : len - 4 > pos ? len - 4 - pos : 0;
        crc = migration_crc32(crc, buf, (size_t)covered);
        for (uint64_t i = pos > len - 5 ? pos : len - 5; i < pos + c; i++)
            tail[i - (len - 5)] = buf[i - pos];
        if (pwrite(fd, buf, c, (off_t)pos) != (ssize_t)c)
            ret = -EIO;
        pos += c;
    }
    free(buf);
    if (!ret && (tail[0] != 0xff || crc != ((uint32_t)tail[1] | (uint32_t)tail[2] << 8 | (uint32_t)tail[3] << 16 |
                                            (uint32_t)tail[4] << 24)))
        ret = sv_fail(why, n, -EINVAL, "its VM state is corrupt (stream checksum mismatch)");
    else if (ret && !why[0])
        sv_fail(why, n, ret, "cannot read its VM state: %s", strerror(-ret));
    if (ret) {
        if (fd >= 0)
            close(fd);
        return ret;
    }
    *out = fd;
    return 0;
}

int savevm_load(struct machine *m, const struct savevm_req *r, char *why, size_t n)
{
    struct savevm *s = sv_get(m);
    int disks[MACHINE_MAX_DISKS], nd, sd;
    char nb[32];
    if (!s)
        return sv_fail(why, n, -ENOMEM, "out of memory");
    if (!r->tag || !*r->tag)
        return sv_fail(why, n, -EINVAL, "which snapshot? (a name or an id)");
    if ((nd = sv_pick_disks(m, r, disks, why, n)) < 0)
        return nd;
    if ((sd = sv_state_disk(r, disks, nd, why, n)) < 0)
        return sd;
    struct block_snapshot sn, ssn = { 0 };
    for (int k = 0; k < nd; k++) {
        int ret = sv_find(m, disks[k], r->tag, &sn);
        if (ret == -ENOENT)
            return sv_fail(why, n, ret, "Snapshot '%s' does not exist in one or more devices", r->tag);
        if (ret)
            return sv_fail(why, n, ret, "Device '%s': %s", sv_name(r, disks[k], nb, sizeof(nb)), strerror(-ret));
        if (disks[k] == sd)
            ssn = sn;
    }
    if (!ssn.vm_state_size)
        return sv_fail(why, n, -EINVAL, "This is a disk-only snapshot. Revert to it offline using qemu-img");
    uint64_t t0 = clock_now_ns();
    bool was_running = !machine_is_paused(m);
    machine_pause(m);
    for (int k = 0; k < nd; k++)
        disk_drain(m, disks[k]);
    /* the whole stream first, read where it lies: the image changes only once it is known whole */
    struct block *sbs = disk_get_block(m, sd, NULL, NULL);
    char rwhy[200] = "";
    int fd = -1, ret = sv_read_state(sbs, r->tag, ssn.vm_state_size, &fd, rwhy, sizeof(rwhy));
    if (ret) {
        sv_fail(why, n, ret, "Snapshot '%s': %s; the VM is unchanged", r->tag, rwhy);
        goto resume;
    }
    for (int k = 0; k < nd; k++) {
        /* a switch that fails may have gone through (its last sync failed, qcow2/switch.c):
         * the guest must not run on a disk that may have changed under it */
        if ((ret = block_snapshot_goto(disk_get_block(m, disks[k], NULL, NULL), r->tag))) {
            sv_fail(why, n, ret, "Error %d while activating snapshot '%s' on '%s'; the VM stays paused", ret, r->tag,
                    sv_name(r, disks[k], nb, sizeof(nb)));
            goto paused;
        }
        disk_refresh_size(m, disks[k]);
    }
    char mwhy[300];
    if ((ret = migration_load_fd(m, fd, true, mwhy, sizeof(mwhy)))) {
        sv_fail(why, n, ret, "Error loading the VM state of '%s': %s; the VM stays paused", r->tag, mwhy);
        goto paused;
    }
    log_debug(LOG_TIME, "loadvm %s: %" PRIu64 " bytes of VM state, %" PRIu64 " ms", r->tag, ssn.vm_state_size,
              (clock_now_ns() - t0) / 1000000);
resume:
    if (fd >= 0)
        close(fd);
    if (was_running)
        machine_resume(m);
    return ret;
paused:   /* the disks went back but the guest could not: it must not run on them (QEMU's way) */
    close(fd);
    return ret;
}

int savevm_delete(struct machine *m, const struct savevm_req *r, char *why, size_t n)
{
    int disks[MACHINE_MAX_DISKS], nd, found = 0;
    char nb[32];
    if (!r->tag || !*r->tag)
        return sv_fail(why, n, -EINVAL, "which snapshot? (a name or an id)");
    if ((nd = sv_pick_disks(m, r, disks, why, n)) < 0)
        return nd;
    for (int k = 0; k < nd; k++) {
        struct block_snapshot sn;
        if (sv_find(m, disks[k], r->tag, &sn))
            continue;
        int ret = block_snapshot_delete_by(disk_get_block(m, disks[k], NULL, NULL), r->tag);
        if (ret)
            return sv_fail(why, n, ret, "Error while deleting snapshot on device '%s': %s",
                           sv_name(r, disks[k], nb, sizeof(nb)), strerror(-ret));
        found++;
    }
    if (!found)
        return sv_fail(why, n, -ENOENT, "Snapshot '%s' does not exist in any device", r->tag);
    return 0;
}

/* One line of QEMU's bdrv_snapshot_dump (qemu-img snapshot -l's too); id NULL: the header. */
static void sv_dump(FILE *out, const char *id, const struct block_snapshot *sn)
{
    if (!sn) {
        fprintf(out, "%-10s%-17s%8s%20s%13s%11s\r\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
        return;
    }
    char date[32], clk[32], vms[32], ic[32] = "";
    time_t t = sn->date_sec;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t ms = sn->vm_clock_nsec / 1000000;
    snprintf(clk, sizeof(clk), "%02d:%02d:%02d.%03d", (int)(ms / 3600000), (int)(ms / 60000 % 60),
             (int)(ms / 1000 % 60), (int)(ms % 1000));
    cli_size_str(sn->vm_state_size, vms, sizeof(vms));
    if (sn->icount != BLOCK_SNAPSHOT_NO_ICOUNT)
        snprintf(ic, sizeof(ic), "%" PRIu64, sn->icount);
    fprintf(out, "%-9s %-16s %8s%20s%13s%11s\r\n", id, sn->name, vms, date, clk, ic);
}

/* QEMU's hmp_info_snapshots: the snapshots with a VM state on the state disk that every other
 * writable disk has too (ID shown as "--": ids differ between disks), then the partial ones. */
void savevm_print_info(struct machine *m, const char *const *names, FILE *out)
{
    struct savevm_req r = { .vmstate = -1, .names = names };
    int disks[MACHINE_MAX_DISKS], nd;
    char why[256], nb[32];
    if ((nd = sv_pick_disks(m, &r, disks, why, sizeof(why))) < 0) {
        fprintf(out, "%s\r\n", why);
        return;
    }
    struct block_snapshot *l = NULL;
    int nl = 0;
    if (block_snapshot_list(disk_get_block(m, disks[0], NULL, NULL), &l, &nl) || !nl) {
        fprintf(out, "There is no snapshot available.\r\n");
        block_snapshot_list_free(l, nl);
        return;
    }
    bool *whole = calloc((size_t)nl, sizeof(bool));
    int nwhole = 0;
    for (int i = 0; whole && i < nl; i++) {
        if (!l[i].vm_state_size)
            continue;
        bool all = true;
        struct block_snapshot sn;
        for (int k = 1; k < nd && all; k++)
            all = !sv_find(m, disks[k], l[i].name, &sn);
        whole[i] = all;
        nwhole += all;
    }
    if (!nwhole) {
        fprintf(out, "There is no suitable snapshot available\r\n");
    } else {
        fprintf(out, "List of snapshots present on all disks:\r\n");
        sv_dump(out, NULL, NULL);
        for (int i = 0; i < nl; i++)
            if (whole[i])
                sv_dump(out, "--", &l[i]);
    }
    bool partial = false;
    for (int i = 0; whole && i < nl; i++)
        partial |= !whole[i];
    if (partial) {
        fprintf(out, "\r\nList of partial (non-loadable) snapshots on '%s':\r\n", sv_name(&r, disks[0], nb, sizeof(nb)));
        sv_dump(out, NULL, NULL);
        for (int i = 0; i < nl; i++)
            if (!whole[i])
                sv_dump(out, l[i].id, &l[i]);
    }
    free(whole);
    block_snapshot_list_free(l, nl);
}

static void sv_start(void *opaque, uint32_t ev)
{
    (void)ev;
    struct savevm *s = opaque;
    struct machine *m = s->m;
    evloop_del(m->loop, s->start_fd);
    close(s->start_fd);
    s->start_fd = -1;
    struct savevm_req r = { .tag = s->start_tag, .vmstate = -1 };
    char why[400];
    atomic_store(&m->state_incoming, false);   /* as mig_io_load: post_load resumes the input */
    if (savevm_load(m, &r, why, sizeof(why))) {
        log_error("-loadvm %s: %s", s->start_tag, why);
        machine_request_stop_host(m, MACHINE_EXIT, 1, "host-error");
        return;
    }
    if (s->start_autostart)
        machine_resume(m);
}

int savevm_load_at_start(struct machine *m, const char *tag, bool autostart)
{
    struct savevm *s = sv_get(m);
    if (!s || !(s->start_tag = strdup(tag)))
        return -ENOMEM;
    s->start_autostart = autostart;
    atomic_store(&m->state_incoming, true);
    s->start_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);   /* readable at once: runs on the first turn */
    if (s->start_fd < 0)
        return -errno;
    int ret = evloop_add(m->loop, s->start_fd, 0x001 /* EPOLLIN */, sv_start, s);
    if (ret) {
        close(s->start_fd);
        s->start_fd = -1;
    }
    return ret;
}

/* ---- jobs ---- */

static void sv_job_set(struct savevm *s, struct sv_job *j, const char *status)
{
    j->status = status;
    char data[200];
    snprintf(data, sizeof(data), "{\"status\": \"%s\", \"id\": \"%s\"}", status, j->id);
    machine_emit_event(s->m, "JOB_STATUS_CHANGE", data);
}

/* The loop's turn after a job was made: every created job runs to its end. */
static void sv_job_run(void *opaque, uint32_t ev)
{
    (void)ev;
    struct savevm *s = opaque;
    uint64_t v;
    ssize_t rd = read(s->job_fd, &v, sizeof(v));
    (void)rd;
    for (struct sv_job *j = s->jobs; j; j = j->next) {
        if (strcmp(j->status, "created"))
            continue;
        sv_job_set(s, j, "running");
        struct savevm_req r = { .tag = j->tag, .vmstate = j->vmstate,
                                .devices = j->all_devices ? NULL : j->devices, .ndevices = j->ndevices };
        char why[400] = "";
        int ret = !strcmp(j->kind, "snapshot-save") ? savevm_save(s->m, &r, why, sizeof(why))
                  : !strcmp(j->kind, "snapshot-load") ? savevm_load(s->m, &r, why, sizeof(why))
                                                       : savevm_delete(s->m, &r, why, sizeof(why));
        if (ret) {
            j->error = strdup(why);
            sv_job_set(s, j, "aborting");
        } else {
            sv_job_set(s, j, "waiting");
            sv_job_set(s, j, "pending");
        }
        sv_job_set(s, j, "concluded");
    }
}

int savevm_job_start(struct machine *m, const char *kind, const char *id, const struct savevm_req *r,
                     char *why, size_t n)
{
    struct savevm *s = sv_get(m);
    if (!s)
        return sv_fail(why, n, -ENOMEM, "out of memory");
    struct sv_job **tail = &s->jobs;
    for (; *tail; tail = &(*tail)->next)
        if (!strcmp((*tail)->id, id))
            return sv_fail(why, n, -EEXIST, "Job ID '%s' already in use", id);
    if (s->job_fd < 0) {
        s->job_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->job_fd < 0)
            return sv_fail(why, n, -errno, "cannot make a job: %s", strerror(errno));
        int ret = evloop_add(m->loop, s->job_fd, 0x001 /* EPOLLIN */, sv_job_run, s);
        if (ret) {
            close(s->job_fd);
            s->job_fd = -1;
            return sv_fail(why, n, ret, "cannot make a job: %s", strerror(-ret));
        }
    }
    struct sv_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->id = strdup(id)) || !(j->tag = strdup(r->tag ? r->tag : ""))) {
        if (j)
            free(j->id);
        free(j);
        return sv_fail(why, n, -ENOMEM, "out of memory");
    }
    j->kind = kind;
    j->vmstate = r->vmstate;
    j->all_devices = !r->devices;
    for (int i = 0; r->devices && i < r->ndevices && i < MACHINE_MAX_DISKS; i++)
        j->devices[j->ndevices++] = r->devices[i];
    *tail = j;
    sv_job_set(s, j, "created");
    uint64_t one = 1;
    ssize_t wr = write(s->job_fd, &one, sizeof(one));
    (void)wr;
    return 0;
}

void savevm_job_for_each(struct machine *m, void (*fn)(void *opaque, const struct savevm_job_info *j), void *opaque)
{
    for (struct sv_job *j = m->savevm ? m->savevm->jobs : NULL; j; j = j->next) {
        struct savevm_job_info i = { j->id, j->kind, j->status, j->error };
        fn(opaque, &i);
    }
}

int savevm_job_dismiss(struct machine *m, const char *id)
{
    struct savevm *s = m->savevm;
    for (struct sv_job **p = s ? &s->jobs : NULL; p && *p; p = &(*p)->next) {
        struct sv_job *j = *p;
        if (strcmp(j->id, id))
            continue;
        if (strcmp(j->status, "concluded"))
            return -EBUSY;
        sv_job_set(s, j, "null");
        *p = j->next;
        free(j->id);
        free(j->tag);
        free(j->error);
        free(j);
        return 0;
    }
    return -ENOENT;
}
