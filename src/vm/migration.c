/* Migration (vm/migration.h): the stream, the channels, pre-copy and stop-and-copy, and the
 * receiving side. One parser reads the stream and checks every record against this machine
 * before it touches RAM; the devices' part goes through vmstate_load, all or nothing.
 *
 * Threads: the transfer thread reads RAM and writes the channel while the guest runs. Whatever
 * touches devices or parks the vCPUs runs on the I/O thread (mig_call_io), as the monitors'
 * commands do, so a `stop` and a dirty-page sync never cross. The last round (stop-and-copy)
 * runs wholly on the I/O thread: the guest is paused and no device backend runs there until the
 * devices' state and the last pages are out. */
#include "vm/migration.h"

#include "accel/accel.h"
#include "block/block.h"
#include "hw/disk.h"
#include "nbd/nbd.h"
#include "util/clock.h"
#include "util/crc32.h"
#include "util/evloop.h"
#include "util/log.h"
#include "vm/control.h"
#include "vm/machine.h"
#include "vm/mapped_ram.h"
#include "vm/memory.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MIG_MAGIC        "QKVMMIG"    /* 8 bytes with its NUL */
#define MIG_VERSION      1
#define MIG_PAGE         4096u
#define MIG_REC_PAGES    0x01         /* u64 first page, u32 count, count pages of data */
#define MIG_REC_ZERO     0x02         /* u64 first page, u32 count: pages of zeros */
#define MIG_REC_DEVICES  0x03         /* u32 length, a vmstate stream */
#define MIG_REC_END      0xff         /* u32 CRC-32 of every byte before it */
#define MIG_BATCH        256          /* pages per record at most */
#define MIG_MAX_DEVICES  (64u << 20)
#define MIG_MAX_ROUNDS   30           /* then stop and copy whatever is left */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23        /* Linux 5.14 */
#endif

struct migration {
    struct machine *m;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool thread_live;
    int wake_fd;                     /* eventfd on the I/O thread's loop */
    int fd, listen_fd;               /* the channel; a listening socket before accept */
    pid_t child;                     /* exec: */
    atomic_bool cancel;
    /* a call the transfer thread wants run on the I/O thread */
    void (*req)(struct migration *g);
    bool req_done;
    /* statuses not yet sent as MIGRATION events */
    enum migration_status events[16];
    int nevents;
    bool incoming, deferred, autostart, live, was_running;
    char uri[1024];
    /* parameters and capabilities: kept across migrations of this machine */
    uint64_t downtime_limit, max_bandwidth;
    bool cap_events, cap_mapped_ram;
    bool mapped;                     /* this migration writes or reads a mapped-ram file */
    /* RAM restored from a mapped-ram file (vm/mapped_ram.h): its pages with data, which the page
     * map shows as untouched until the guest reads them; and the file, never to be overwritten */
    uint64_t *file_bits;
    dev_t file_dev;
    ino_t file_ino;
    /* progress (lock for the I/O thread's reads of what the transfer thread writes) */
    struct migration_info info;
    uint64_t t_start, t_active;
    uint64_t *bitmap;                /* pages still to send */
    int pagemap_fd;                  /* /proc/self/pagemap, -1 where it cannot be read */
    uint64_t pm[64];                 /* its entries for one bitmap word's pages */
    uint8_t *buf;                    /* one record's pages, copied before the CRC and the write */
    uint32_t crc;                    /* running CRC-32 of the stream (mig_crc32) */
    bool crc_checked;                /* loadvm checked it before: not computed again */
    bool local;                      /* savevm/loadvm's: the images stay this process's */
    int final_ret;
    char final_why[256];
    struct mig_in *in;               /* the stream read, for mig_io_load */
};

const char *migration_status_name(enum migration_status s)
{
    static const char *const names[] = { "none", "setup", "active", "device", "completed", "failed",
                                         "cancelling", "cancelled" };
    return names[s];
}

const char *const migration_capabilities[] = { "events", "mapped-ram", NULL };

/* The stream's CRC-32 (zlib's): by carry-less multiplication it costs ~1/10 of the copy that
 * brings the bytes in (util/crc32.c). */
static uint32_t mig_crc32(uint32_t crc, const void *data, size_t n)
{
    return crc32_update(crc, data, n);
}

static uint64_t mig_ms(uint64_t ns)
{
    return ns / 1000000;
}

/* ---- the I/O thread's side: events and calls ---- */

static void mig_set_status(struct migration *g, enum migration_status s)
{
    pthread_mutex_lock(&g->lock);
    g->info.status = s;
    if (g->nevents < 16)
        g->events[g->nevents++] = s;
    pthread_mutex_unlock(&g->lock);
    uint64_t one = 1;
    ssize_t r = write(g->wake_fd, &one, sizeof(one));
    (void)r;
}

static void mig_wake(void *opaque, uint32_t ev)
{
    (void)ev;
    struct migration *g = opaque;
    uint64_t v;
    ssize_t r = read(g->wake_fd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&g->lock);
    void (*req)(struct migration *) = g->req;
    g->req = NULL;
    pthread_mutex_unlock(&g->lock);
    if (req) {
        req(g);
        pthread_mutex_lock(&g->lock);
        g->req_done = true;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
    }
    pthread_mutex_lock(&g->lock);
    int n = g->nevents;
    enum migration_status ev_copy[16];
    memcpy(ev_copy, g->events, sizeof(ev_copy));
    g->nevents = 0;
    pthread_mutex_unlock(&g->lock);
    for (int i = 0; i < n && g->cap_events; i++) {
        char data[64];
        snprintf(data, sizeof(data), "{\"status\": \"%s\"}", migration_status_name(ev_copy[i]));
        machine_emit_event(g->m, "MIGRATION", data);
    }
}

/* Runs fn on the I/O thread and waits for it. -ECANCELED when the machine is going away. */
static int mig_call_io(struct migration *g, void (*fn)(struct migration *g))
{
    pthread_mutex_lock(&g->lock);
    g->req = fn;
    g->req_done = false;
    pthread_mutex_unlock(&g->lock);
    uint64_t one = 1;
    ssize_t r = write(g->wake_fd, &one, sizeof(one));
    (void)r;
    pthread_mutex_lock(&g->lock);
    while (!g->req_done && !atomic_load(&g->cancel))
        pthread_cond_wait(&g->cond, &g->lock);
    bool done = g->req_done;
    if (!done)
        g->req = NULL;
    pthread_mutex_unlock(&g->lock);
    return done ? 0 : -ECANCELED;
}

static void mig_free(void *opaque)
{
    struct migration *g = opaque;
    atomic_store(&g->cancel, true);
    pthread_mutex_lock(&g->lock);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    if (g->fd >= 0)
        shutdown(g->fd, SHUT_RDWR);
    if (g->listen_fd >= 0)
        shutdown(g->listen_fd, SHUT_RDWR);
    if (g->child > 0)
        kill(g->child, SIGTERM);   /* a pipe does not shut down: its reader or writer must go */
    if (g->thread_live)
        pthread_join(g->thread, NULL);
    if (g->fd >= 0)
        close(g->fd);
    if (g->listen_fd >= 0)
        close(g->listen_fd);
    if (g->child > 0)
        waitpid(g->child, NULL, 0);
    evloop_del(g->m->loop, g->wake_fd);
    close(g->wake_fd);
    if (g->pagemap_fd >= 0)
        close(g->pagemap_fd);
    free(g->bitmap);
    free(g->buf);
    free(g->file_bits);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    g->m->migration = NULL;
    free(g);
}

/* The machine's migration state, made on first use. NULL when out of memory. */
static struct migration *mig_get(struct machine *m)
{
    if (m->migration)
        return m->migration;
    struct migration *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->m = m;
    g->fd = g->listen_fd = -1;
    g->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    g->downtime_limit = 300;
    g->max_bandwidth = 128ull << 20;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g->wake_fd < 0 || evloop_add(m->loop, g->wake_fd, 0x001 /* EPOLLIN */, mig_wake, g)) {
        if (g->wake_fd >= 0)
            close(g->wake_fd);
        if (g->pagemap_fd >= 0)
            close(g->pagemap_fd);
        free(g);
        return NULL;
    }
    m->migration = g;
    if (machine_add_cleanup(m, mig_free, g))
        return NULL;
    return g;
}

/* ---- channels ---- */

static int mig_fail(char *why, size_t n, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int mig_fail(char *why, size_t n, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return err;
}

/* exec:CMD: sh -c CMD with its stdin (outgoing) or stdout (incoming) on a pipe to us. */
static int mig_spawn(struct migration *g, const char *cmd, bool outgoing, char *why, size_t n)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC))
        return mig_fail(why, n, -errno, "exec: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, outgoing ? p[0] : p[1], outgoing ? 0 : 1);
    char *argv[] = { "sh", "-c", (char *)cmd, NULL };
    int ret = posix_spawn(&g->child, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(outgoing ? p[0] : p[1]);
    if (ret) {
        close(outgoing ? p[1] : p[0]);
        g->child = 0;
        return mig_fail(why, n, -ret, "exec:%s: %s", cmd, strerror(ret));
    }
    g->fd = outgoing ? p[1] : p[0];
    return 0;
}

/* tcp:HOST:PORT -> host, port; 0 or -EINVAL */
static int mig_parse_tcp(const char *rest, char *host, size_t hn, int *port)
{
    const char *colon = strrchr(rest, ':');
    if (!colon || (size_t)(colon - rest) >= hn)
        return -EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535)
        return -EINVAL;
    memcpy(host, rest, (size_t)(colon - rest));
    host[colon - rest] = 0;
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {   /* [::1] */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    *port = (int)p;
    return 0;
}

/* Opens the channel of uri: outgoing connects or creates, incoming opens a file, starts the
 * command or listens (the accept comes on the transfer thread). Sets g->live for the channels
 * that pre-copy. */
static int mig_open(struct migration *g, const char *uri, bool outgoing, char *why, size_t n)
{
    char err[NBD_ERR_MAX] = "";
    g->live = false;
    if (!strncmp(uri, "file:", 5)) {
        const char *path = uri + 5;
        int fd = outgoing ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return mig_fail(why, n, -errno, "%s: %s", uri, strerror(errno));
        g->fd = fd;
        return 0;
    }
    if (!strncmp(uri, "exec:", 5))
        return mig_spawn(g, uri + 5, outgoing, why, n);
    if (!strncmp(uri, "tcp:", 4)) {
        char host[256];
        int port, fd;
        if (mig_parse_tcp(uri + 4, host, sizeof(host), &port))
            return mig_fail(why, n, -EINVAL, "%s: expected tcp:HOST:PORT", uri);
        fd = outgoing ? nbd_sock_connect_tcp(host, port, err)
                      : nbd_sock_listen_tcp(host[0] && strcmp(host, "0") ? host : NULL, port, err);
        if (fd < 0)
            return mig_fail(why, n, fd, "%s: %s", uri, err[0] ? err : strerror(-fd));
        *(outgoing ? &g->fd : &g->listen_fd) = fd;
        g->live = true;
        return 0;
    }
    if (!strncmp(uri, "unix:", 5)) {
        if (!outgoing)
            unlink(uri + 5);   /* a socket left by an earlier run */
        int fd = outgoing ? nbd_sock_connect_unix(uri + 5, err) : nbd_sock_listen_unix(uri + 5, err);
        if (fd < 0)
            return mig_fail(why, n, fd, "%s: %s", uri, err[0] ? err : strerror(-fd));
        *(outgoing ? &g->fd : &g->listen_fd) = fd;
        g->live = true;
        return 0;
    }
    return mig_fail(why, n, -EINVAL, "'%s': unknown migration protocol (tcp:, unix:, file:, exec:)", uri);
}

static void mig_close_channel(struct migration *g)
{
    if (g->fd >= 0)
        close(g->fd);
    if (g->listen_fd >= 0)
        close(g->listen_fd);
    g->fd = g->listen_fd = -1;
    if (g->child > 0) {
        int st;
        waitpid(g->child, &st, 0);
        g->child = 0;
    }
}

/* ---- sending ---- */

static int mig_write(struct migration *g, const void *p, size_t len)
{
    g->crc = mig_crc32(g->crc, p, len);
    int ret = nbd_write_full(g->fd, p, len);
    if (ret)
        return ret;
    pthread_mutex_lock(&g->lock);
    g->info.transferred += len;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static void mig_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t mig_get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static bool mig_zero(const uint8_t *p)
{
    const uint64_t *q = (const uint64_t *)p;
    for (unsigned i = 0; i < MIG_PAGE / 8; i++)
        if (q[i])
            return false;
    return true;
}

static int mig_put_record(struct migration *g, uint8_t type, uint64_t first, uint32_t count)
{
    uint8_t h[13];
    h[0] = type;
    mig_le(h + 1, first, 8);
    mig_le(h + 9, count, 4);
    int ret = mig_write(g, h, sizeof(h));
    if (!ret && type == MIG_REC_PAGES)
        ret = mig_write(g, g->buf, (size_t)count * MIG_PAGE);
    return ret;
}

/* A page of RAM mapped from a mapped-ram file that the guest has not touched yet: the page map
 * says absent, yet it holds the file's data. */
static bool mig_file_page(const struct machine *m, uint64_t pg)
{
    const struct migration *o = m->migration;
    return o && o->file_bits && (o->file_bits[pg / 64] >> (pg % 64) & 1);
}

/* Sends every page set in g->bitmap and clears it; throttled to max-bandwidth when throttle.
 * Pages are copied before they are checked and sent: the guest may be writing them (it is then
 * seen by the dirty tracking, and the page goes again next round). 0 or -errno. */
static int mig_send_pages(struct migration *g, bool throttle)
{
    struct machine *m = g->m;
    uint64_t pages = memory_ram_pages(m), t0 = clock_now_ns(), sent0 = g->info.transferred;
    uint64_t run_first = 0, zfirst = 0;
    uint32_t run = 0, zrun = 0;
    int ret = 0;
    for (uint64_t w = 0; w < (pages + 63) / 64 && !ret; w++) {
        uint64_t bits = g->bitmap[w];
        g->bitmap[w] = 0;
        if (!bits)
            continue;
        /* A page the guest never touched is neither present nor swapped out: it is zero, and
         * reading it would fault in the shared zero page, thousands of faults for a large,
         * mostly idle guest. The page map says so for 64 pages in one read. */
        uint64_t vpage = (uint64_t)(uintptr_t)(m->ram + (w * 64 << 12)) >> 12;
        bool pm = g->pagemap_fd >= 0 &&
                  pread(g->pagemap_fd, g->pm, sizeof(g->pm), (off_t)(vpage * 8)) == (ssize_t)sizeof(g->pm);
        while (bits && !ret) {
            if (atomic_load(&g->cancel))
                return -ECANCELED;
            int b = __builtin_ctzll(bits);
            bits &= bits - 1;
            uint64_t pg = w * 64 + (uint64_t)b;
            /* g->buf has room for MIG_BATCH + 1 pages: the new one may follow a full run */
            uint8_t *slot = g->buf + (size_t)run * MIG_PAGE;
            bool zero;
            if (pm && !(g->pm[b] & (3ull << 62)) && !mig_file_page(m, pg)) {   /* 63 present, 62 swapped */
                zero = true;
            } else {
                memcpy(slot, m->ram + (pg << 12), MIG_PAGE);
                zero = mig_zero(slot);
            }
            bool extend = run && !zero && pg == run_first + run && run < MIG_BATCH;
            if (run && !extend) {
                ret = mig_put_record(g, MIG_REC_PAGES, run_first, run);
                if (!zero)
                    memmove(g->buf, slot, MIG_PAGE);
                run = 0;
            }
            bool zextend = zrun && zero && pg == zfirst + zrun && zrun < MIG_BATCH;
            if (!ret && zrun && !zextend) {
                ret = mig_put_record(g, MIG_REC_ZERO, zfirst, zrun);
                zrun = 0;
            }
            pthread_mutex_lock(&g->lock);
            if (zero) {
                if (!zrun)
                    zfirst = pg;
                zrun++;
                g->info.duplicate++;
            } else {
                if (!run)
                    run_first = pg;
                run++;
                g->info.normal++;
                g->info.normal_bytes += MIG_PAGE;
            }
            if (g->info.remaining >= MIG_PAGE)
                g->info.remaining -= MIG_PAGE;
            pthread_mutex_unlock(&g->lock);
            if (throttle && g->max_bandwidth) {
                uint64_t sent = g->info.transferred - sent0, el = clock_now_ns() - t0;
                uint64_t due = (uint64_t)((double)sent * 1e9 / (double)g->max_bandwidth);
                if (due > el + 1000000)
                    usleep((useconds_t)((due - el) / 1000));
            }
        }
    }
    if (!ret && run)
        ret = mig_put_record(g, MIG_REC_PAGES, run_first, run);
    if (!ret && zrun)
        ret = mig_put_record(g, MIG_REC_ZERO, zfirst, zrun);
    return ret;
}

static uint64_t mig_count(const uint64_t *bm, uint64_t pages)
{
    uint64_t n = 0;
    for (uint64_t w = 0; w < (pages + 63) / 64; w++)
        n += (uint64_t)__builtin_popcountll(bm[w]);
    return n;
}

/* I/O thread: the pages written since the last round join g->bitmap. The vCPUs are parked for
 * the moment it takes, so no write falls between taking the bits and re-arming the pages. */
static void mig_io_sync(struct migration *g)
{
    bool parked = machine_park_vcpus(g->m);
    if (atomic_load(&g->m->stop) == MACHINE_RUNNING)
        memory_dirty_sync(g->m, g->bitmap);
    if (parked)
        machine_unpark_vcpus(g->m);
}

static void mig_io_start_tracking(struct migration *g)
{
    bool parked = machine_park_vcpus(g->m);
    g->final_ret = atomic_load(&g->m->stop) == MACHINE_RUNNING ? memory_dirty_start(g->m) : -ESHUTDOWN;
    if (parked)
        machine_unpark_vcpus(g->m);
}

/* The whole file at once (vm/mapped_ram.h), the guest paused: RAM at its offsets, then the
 * head with the devices' state. */
static int mig_save_mapped(struct migration *g, const uint8_t *dev, size_t dlen)
{
    struct machine *m = g->m;
    struct mapped_ram_stats st;
    const uint64_t *file_bits = m->migration ? m->migration->file_bits : NULL;
    int ret = mapped_ram_save(m, g->fd, dev, dlen, file_bits, &st, g->final_why, sizeof(g->final_why));
    if (ret)
        return ret;
    pthread_mutex_lock(&g->lock);
    g->info.transferred += st.bytes;
    g->info.normal += st.pages;
    g->info.normal_bytes += st.pages * MIG_PAGE;
    g->info.duplicate += st.zero_pages;
    g->info.remaining = 0;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

/* I/O thread: stop and copy. Pauses the guest, saves the devices (their pre_save drains the
 * requests served off their locks), takes the last dirty pages, sends them and the devices.
 * The guest stays paused on success (postmigrate), runs again on failure. */
static void mig_io_final(struct migration *g)
{
    struct machine *m = g->m;
    uint64_t t0 = clock_now_ns();
    g->was_running = !machine_is_paused(m);
    machine_pause(m);
    mig_set_status(g, MIG_DEVICE);
    uint8_t *dev = NULL;
    size_t dlen = 0;
    int ret = vmstate_save(m, &dev, &dlen);
    if (ret) {
        snprintf(g->final_why, sizeof(g->final_why), "cannot save the device state: %s", strerror(-ret));
        goto out;
    }
    /* the destination opens the same image files: everything written must be in them, and
     * their locks are its to take once it has the stream (QEMU's inactivate) */
    if ((ret = g->local ? disk_flush_all(m) : disk_inactivate_all(m))) {
        snprintf(g->final_why, sizeof(g->final_why), "cannot flush the disks: %s", strerror(-ret));
        goto out;
    }
    if (atomic_load(&m->dirty_on)) {
        memory_dirty_sync(m, g->bitmap);
        memory_dirty_stop(m);
    }
    if (g->mapped) {
        ret = mig_save_mapped(g, dev, dlen);
        pthread_mutex_lock(&g->lock);
        g->info.downtime = mig_ms(clock_now_ns() - t0);
        g->info.downtime_bytes = g->info.transferred;
        pthread_mutex_unlock(&g->lock);
        goto out;
    }
    uint64_t before = g->info.transferred;
    pthread_mutex_lock(&g->lock);
    g->info.remaining = mig_count(g->bitmap, memory_ram_pages(m)) * MIG_PAGE;
    pthread_mutex_unlock(&g->lock);
    ret = mig_send_pages(g, false);
    if (!ret) {
        uint8_t h[5] = { MIG_REC_DEVICES };
        mig_le(h + 1, dlen, 4);
        ret = mig_write(g, h, 5);
        if (!ret)
            ret = mig_write(g, dev, dlen);
    }
    if (!ret) {
        uint8_t tag = MIG_REC_END, c[4];
        ret = mig_write(g, &tag, 1);   /* the checksum covers its own tag */
        mig_le(c, (uint32_t)g->crc, 4);
        if (!ret)
            ret = mig_write(g, c, 4);
    }
    if (ret)
        snprintf(g->final_why, sizeof(g->final_why), "writing the stream: %s",
                 ret == -EPIPE ? "the other end closed the connection" : strerror(-ret));
    pthread_mutex_lock(&g->lock);
    g->info.downtime = mig_ms(clock_now_ns() - t0);
    g->info.downtime_bytes = g->info.transferred - before;
    pthread_mutex_unlock(&g->lock);
out:
    free(dev);
    g->final_ret = ret;
    if (ret && !g->local) {
        char awhy[BLOCK_ERR_MAX];
        if (disk_activate_all(m, awhy, sizeof(awhy))) {
            /* the destination took an image: this guest must not write it */
            log_error("migration failed, and the source cannot take its disks back: %s", awhy);
            return;
        }
    }
    if (ret && g->was_running)
        machine_resume(m);   /* a failed migration leaves the guest as it was */
}

static void mig_io_stop_tracking(struct migration *g)
{
    memory_dirty_stop(g->m);
}

static void *mig_send_thread(void *opaque)
{
    struct migration *g = opaque;
    struct machine *m = g->m;
    uint64_t pages = memory_ram_pages(m);
    int ret = 0;
    g->crc = 0;
    uint8_t hdr[8 + 4 + 8 + 4 + 4 + 4] = MIG_MAGIC;
    mig_le(hdr + 8, MIG_VERSION, 4);
    mig_le(hdr + 12, m->ram_size, 8);
    mig_le(hdr + 20, (uint32_t)m->ncpus, 4);
    mig_le(hdr + 24, (uint32_t)m->cfg->type, 4);
    mig_le(hdr + 28, MIG_PAGE, 4);
    memset(g->bitmap, 0xff, (pages + 63) / 64 * 8);
    if (pages % 64)
        g->bitmap[pages / 64] = (1ull << (pages % 64)) - 1;
    pthread_mutex_lock(&g->lock);
    g->info.total = g->info.remaining = pages * MIG_PAGE;
    pthread_mutex_unlock(&g->lock);
    ret = g->mapped ? 0 : mig_write(g, hdr, sizeof(hdr));   /* mapped-ram: its head comes last */
    bool live = g->live && m->accel->dirty_track && !machine_is_paused(m);
    if (!ret && live) {
        g->final_ret = 0;
        if (mig_call_io(g, mig_io_start_tracking) || g->final_ret)
            live = false;   /* cannot track: the guest is paused for the whole copy instead */
    }
    uint64_t now = clock_now_ns();
    pthread_mutex_lock(&g->lock);
    g->info.setup_time = mig_ms(now - g->t_start);
    pthread_mutex_unlock(&g->lock);
    g->t_active = now;
    mig_set_status(g, MIG_ACTIVE);
    for (int round = 0; live && !ret && round < MIG_MAX_ROUNDS; round++) {
        uint64_t t0 = clock_now_ns(), b0 = g->info.transferred;
        if (round > 0 && (ret = mig_call_io(g, mig_io_sync)))
            break;
        uint64_t dirty = mig_count(g->bitmap, pages);
        pthread_mutex_lock(&g->lock);
        g->info.dirty_sync_count++;
        g->info.remaining = dirty * MIG_PAGE;
        pthread_mutex_unlock(&g->lock);
        /* enough to stop now: what is left goes within the downtime limit at the rate seen */
        if (round > 0) {
            double rate = g->info.mbps > 0 ? g->info.mbps * 1e6 / 8 / 1000 : 0;   /* bytes per ms */
            uint64_t expect = rate > 0 ? (uint64_t)((double)(dirty * MIG_PAGE) / rate) : UINT64_MAX;
            pthread_mutex_lock(&g->lock);
            g->info.expected_downtime = expect == UINT64_MAX ? 0 : expect;
            pthread_mutex_unlock(&g->lock);
            if (expect <= g->downtime_limit)
                break;
        }
        ret = mig_send_pages(g, true);
        uint64_t el = clock_now_ns() - t0, bytes = g->info.transferred - b0;
        pthread_mutex_lock(&g->lock);
        if (el)
            g->info.mbps = (double)bytes * 8 / ((double)el / 1e9) / 1e6;
        g->info.dirty_pages_rate = el ? dirty * 1000000000ull / el : 0;
        g->info.pages_per_second = el ? (dirty * 1000000000ull) / el : 0;
        g->info.precopy_bytes = g->info.transferred;
        pthread_mutex_unlock(&g->lock);
    }
    if (!ret && !atomic_load(&g->cancel)) {
        ret = mig_call_io(g, mig_io_final);
        if (!ret)
            ret = g->final_ret;
    }
    if (ret && atomic_load(&m->dirty_on))
        mig_call_io(g, mig_io_stop_tracking);
    pthread_mutex_lock(&g->lock);
    g->info.total_time = mig_ms(clock_now_ns() - g->t_start);
    if (ret == -ECANCELED || atomic_load(&g->cancel))
        g->info.error[0] = 0;
    else if (ret)
        snprintf(g->info.error, sizeof(g->info.error), "%s",
                 g->final_why[0] ? g->final_why : ret == -EPIPE ? "the other end closed the connection" : strerror(-ret));
    pthread_mutex_unlock(&g->lock);
    if (g->fd >= 0)
        shutdown(g->fd, SHUT_WR);
    mig_set_status(g, atomic_load(&g->cancel) ? MIG_CANCELLED : ret ? MIG_FAILED : MIG_COMPLETED);
    return NULL;
}

static bool mig_running(const struct migration *g)
{
    return g && (g->info.status == MIG_SETUP || g->info.status == MIG_ACTIVE || g->info.status == MIG_DEVICE ||
                 g->info.status == MIG_CANCELLING);
}

int migration_start(struct machine *m, const char *uri, char *why, size_t n)
{
    struct migration *g = mig_get(m);
    if (!g)
        return mig_fail(why, n, -ENOMEM, "out of memory");
    if (g->incoming && g->info.status != MIG_COMPLETED)
        return mig_fail(why, n, -EBUSY, "this machine is waiting for an incoming migration");
    if (mig_running(g))
        return mig_fail(why, n, -EBUSY, "There's a migration process in progress");
    if (vmstate_blocker(m))
        return mig_fail(why, n, -ENOTSUP, "this machine cannot migrate: %s", vmstate_blocker(m));
    if (g->cap_mapped_ram && strncmp(uri, "file:", 5))   /* QEMU's words */
        return mig_fail(why, n, -EINVAL, "Migration requires seekable transport (e.g. file)");
    struct stat st;
    if (g->file_bits && !strncmp(uri, "file:", 5) && !stat(uri + 5, &st) && st.st_dev == g->file_dev &&
        st.st_ino == g->file_ino)
        return mig_fail(why, n, -EBUSY, "%s: this VM's RAM is mapped from that file (it was restored from it): "
                        "save to another file", uri);
    if (g->thread_live) {
        pthread_join(g->thread, NULL);
        g->thread_live = false;
    }
    mig_close_channel(g);
    uint64_t pages = memory_ram_pages(m);
    free(g->bitmap);
    g->bitmap = calloc((pages + 63) / 64, sizeof(uint64_t));
    if (!g->buf)
        g->buf = malloc((size_t)(MIG_BATCH + 1) * MIG_PAGE);
    if (!g->bitmap || !g->buf)
        return mig_fail(why, n, -ENOMEM, "out of memory");
    atomic_store(&g->cancel, false);
    g->incoming = false;
    g->mapped = g->cap_mapped_ram;
    g->final_why[0] = 0;
    memset(&g->info, 0, sizeof(g->info));
    g->t_start = clock_now_ns();
    snprintf(g->uri, sizeof(g->uri), "%s", uri);
    mig_set_status(g, MIG_SETUP);
    int ret = mig_open(g, uri, true, why, n);
    if (!ret) {
        ret = -pthread_create(&g->thread, NULL, mig_send_thread, g);
        if (ret)
            mig_fail(why, n, ret, "cannot start the migration thread: %s", strerror(-ret));
    }
    if (ret) {
        mig_close_channel(g);
        snprintf(g->info.error, sizeof(g->info.error), "%s", why);
        mig_set_status(g, MIG_FAILED);
        return ret;
    }
    g->thread_live = true;
    return 0;
}

int migration_cancel(struct machine *m)
{
    struct migration *g = m->migration;
    if (!g || g->incoming || !mig_running(g))
        return 0;
    mig_set_status(g, MIG_CANCELLING);
    atomic_store(&g->cancel, true);
    pthread_mutex_lock(&g->lock);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    if (g->fd >= 0)
        shutdown(g->fd, SHUT_RDWR);   /* a write blocked on a stalled peer returns */
    return 0;
}

/* ---- receiving ---- */

struct mig_in {
    struct migration *g;
    uint8_t *dev;
    size_t dlen;
    uint8_t *head;                   /* mapped-ram: the file's head, which mh points into */
    struct mapped_ram_header mh;
    char why[300];
};

static int mig_read(struct migration *g, void *p, size_t len)
{
    int ret = nbd_read_full(g->fd, p, len);
    if (ret)
        return ret;
    if (!g->crc_checked)
        g->crc = mig_crc32(g->crc, p, len);
    pthread_mutex_lock(&g->lock);
    g->info.transferred += len;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

/* I/O thread, the guest not yet run: RAM becomes the file's pages, copy-on-write; what the file
 * backs is kept for later migrations and for migrate's refusal to overwrite it. */
static int mig_map_file(struct migration *g, struct mig_in *in)
{
    struct machine *m = g->m;
    uint64_t words = (memory_ram_pages(m) + 63) / 64;
    uint64_t *bits = calloc(words, sizeof(uint64_t));
    struct stat st;
    if (!bits || fstat(g->fd, &st)) {
        free(bits);
        return mig_fail(in->why, sizeof(in->why), -ENOMEM, "out of memory");
    }
    int ret = mapped_ram_map(m, g->fd, &in->mh);
    if (ret) {
        free(bits);
        return mig_fail(in->why, sizeof(in->why), ret, "mapping RAM from the file: %s", strerror(-ret));
    }
    memcpy(bits, in->mh.bitmap, words * 8);   /* little-endian words, as the host's */
    free(g->file_bits);
    g->file_bits = bits;
    g->file_dev = st.st_dev;
    g->file_ino = st.st_ino;
    return 0;
}

static void mig_io_load(struct migration *g)
{
    struct mig_in *in = g->in;
    char why[256] = "";
    /* the devices' post_load resume the input they held (this runs on the I/O thread, which
     * delivers it, so it comes after the flag is down) */
    atomic_store(&g->m->state_incoming, false);
    if (g->mapped && (g->final_ret = mig_map_file(g, in)))
        return;
    int ret = vmstate_load(g->m, in->dev, in->dlen, why, sizeof(why));
    if (ret) {
        snprintf(in->why, sizeof(in->why), "device state: %s", why);
        g->final_ret = ret;
        return;
    }
    /* the source let go of its images before its last bytes: take them, read afresh */
    char dwhy[BLOCK_ERR_MAX];
    if ((ret = disk_activate_all(g->m, dwhy, sizeof(dwhy)))) {
        snprintf(in->why, sizeof(in->why), "cannot take the disks over: %.200s", dwhy);
        g->final_ret = ret;
        return;
    }
    g->final_ret = 0;
    mig_set_status(g, MIG_COMPLETED);
    if (g->autostart)
        machine_resume(g->m);
}

/* The header's machine against this one: 0 or -EINVAL with in->why set. */
static int mig_check_machine(struct machine *m, uint64_t ram, uint32_t ncpus, uint32_t type, uint32_t page,
                             struct mig_in *in)
{
    if (ram != m->ram_size)
        return mig_fail(in->why, sizeof(in->why), -EINVAL,
                        "the stream is of a machine with %llu MiB of RAM, this one has %llu MiB (-m)",
                        (unsigned long long)(ram >> 20), (unsigned long long)(m->ram_size >> 20));
    if (ncpus != (uint32_t)m->ncpus)
        return mig_fail(in->why, sizeof(in->why), -EINVAL, "the stream is of a machine with %u vCPUs, this one has %d (-smp)",
                        ncpus, m->ncpus);
    if (type != (uint32_t)m->cfg->type || page != MIG_PAGE)
        return mig_fail(in->why, sizeof(in->why), -EINVAL, "the stream is of another machine type");
    return 0;
}

/* A mapped-ram file's head: checked, the machine compared, the device state kept for
 * mig_io_load, which maps RAM. 0 or -errno with in->why set. */
static int mig_receive_mapped(struct migration *g, struct mig_in *in)
{
    struct machine *m = g->m;
    int ret = mapped_ram_read_head(g->fd, &in->head, &in->mh, in->why, sizeof(in->why));
    if (!ret)
        ret = mig_check_machine(m, in->mh.ram_size, in->mh.ncpus, in->mh.machine_type, MIG_PAGE, in);
    if (ret)
        return ret;
    if (!(in->dev = malloc(in->mh.dev_len ? in->mh.dev_len : 1)))
        return mig_fail(in->why, sizeof(in->why), -ENOMEM, "out of memory");
    memcpy(in->dev, in->mh.dev, in->mh.dev_len);
    in->dlen = in->mh.dev_len;
    uint64_t pages = memory_ram_pages(m);
    pthread_mutex_lock(&g->lock);
    g->info.total = pages * MIG_PAGE;
    g->info.transferred = in->mh.pages_offset;
    g->info.normal = in->mh.present;
    g->info.normal_bytes = in->mh.present * MIG_PAGE;
    g->info.duplicate = pages - in->mh.present;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static int mig_receive_records(struct migration *g, struct mig_in *in);

/* Reads and checks the whole stream; RAM is written as it comes (the guest has not run), the
 * devices only after the checksum matched. 0 or -errno with in->why set. */
static int mig_receive(struct migration *g, struct mig_in *in)
{
    struct machine *m = g->m;
    uint64_t pages = memory_ram_pages(m);
    uint8_t hdr[32];
    int ret = mig_read(g, hdr, sizeof(hdr));
    if (ret)
        return ret;
    if (memcmp(hdr, MIG_MAGIC, 8))
        return mig_fail(in->why, sizeof(in->why), -EINVAL, "not a qkvm migration stream");
    uint32_t ver = (uint32_t)mig_get_le(hdr + 8, 4);
    if (ver != MIG_VERSION)
        return mig_fail(in->why, sizeof(in->why), -EPROTONOSUPPORT, "stream version %u, this qkvm reads version %u",
                        ver, MIG_VERSION);
    ret = mig_check_machine(m, mig_get_le(hdr + 12, 8), (uint32_t)mig_get_le(hdr + 20, 4),
                            (uint32_t)mig_get_le(hdr + 24, 4), (uint32_t)mig_get_le(hdr + 28, 4), in);
    if (ret)
        return ret;
    /* RAM mapped from a mapped-ram file: MADV_DONTNEED below would bring the file's pages back */
    struct migration *o = m->migration;
    if (o && o->file_bits) {
        if ((ret = mapped_ram_unmap(m)))
            return mig_fail(in->why, sizeof(in->why), ret, "cannot unmap RAM from its file: %s", strerror(-ret));
        free(o->file_bits);
        o->file_bits = NULL;
    }
    pthread_mutex_lock(&g->lock);
    g->info.total = pages * MIG_PAGE;
    pthread_mutex_unlock(&g->lock);
    /* The pages are written through 2 MiB pages while they come in, as QEMU keeps all guest RAM:
     * on these nested-paging hosts a first touch costs ~25 us a 4 KiB page (kernel and shadow
     * fault), so 90 MiB of a Linux guest took ~1 s of faults against ~60 ms this way. Only the
     * 2 MiB pages that get data are made (54 of them, 108 MiB, for a 256 MiB guest with 90 MiB
     * of data); later faults of a small VM are 4 KiB again (vm/memory.c's footprint rule).
     * Not for loadvm (g->local): its VM ran, its RAM is mostly there, and 2 MiB pages made
     * around the few pages that are not would each cost a 2 MiB clear. */
    bool huge = !g->local;
    if (huge)
        madvise(m->ram, m->ram_size, MADV_HUGEPAGE);
    ret = mig_receive_records(g, in);
    if (huge && m->ram_size < MEMORY_HUGE_MIN)
        madvise(m->ram, m->ram_size, MADV_NOHUGEPAGE);
    return ret;
}

/* Pages of zeros at dst: nothing to do where RAM is not there yet or already zero (a fresh
 * destination's, or a 2 MiB page filled around data); elsewhere dropped (private anonymous
 * memory reads as zeros after MADV_DONTNEED), so a restored guest's untouched memory costs
 * nothing and a huge page is split only where it must be. */
static void mig_zero_pages(struct migration *g, uint8_t *dst, uint32_t count)
{
    uint64_t pm[MIG_BATCH];
    off_t at = (off_t)((uint64_t)(uintptr_t)dst >> 12) * 8;
    bool known = g->pagemap_fd >= 0 && pread(g->pagemap_fd, pm, count * 8ul, at) == (ssize_t)(count * 8ul);
    if (known) {
        uint32_t i = 0;
        while (i < count && (!(pm[i] & (3ull << 62)) || mig_zero(dst + (size_t)i * MIG_PAGE)))   /* present, swapped */
            i++;
        if (i == count)
            return;
    }
    if (madvise(dst, (size_t)count * MIG_PAGE, MADV_DONTNEED))
        memset(dst, 0, (size_t)count * MIG_PAGE);
}

/* The records after the header, up to and with the end record. */
static int mig_receive_records(struct migration *g, struct mig_in *in)
{
    struct machine *m = g->m;
    uint64_t pages = memory_ram_pages(m);
    int ret;
    for (;;) {
        if (atomic_load(&g->cancel))
            return -ECANCELED;
        uint8_t tag;
        if ((ret = mig_read(g, &tag, 1)))
            return ret;
        if (tag == MIG_REC_END) {
            uint32_t want = (uint32_t)g->crc;
            uint8_t c[4];
            if ((ret = nbd_read_full(g->fd, c, 4)))
                return ret;
            if (!g->crc_checked && mig_get_le(c, 4) != want)
                return mig_fail(in->why, sizeof(in->why), -EINVAL, "stream checksum mismatch: corrupt");
            if (!in->dev)
                return mig_fail(in->why, sizeof(in->why), -EINVAL, "the stream has no device state");
            return 0;
        }
        if (tag == MIG_REC_DEVICES) {
            uint8_t l[4];
            if ((ret = mig_read(g, l, 4)))
                return ret;
            uint32_t len = (uint32_t)mig_get_le(l, 4);
            if (in->dev || len > MIG_MAX_DEVICES)
                return mig_fail(in->why, sizeof(in->why), -EINVAL, "bad device state record (%u bytes%s)", len,
                                in->dev ? ", a second one" : "");
            if (!(in->dev = malloc(len ? len : 1)))
                return mig_fail(in->why, sizeof(in->why), -ENOMEM, "out of memory");
            in->dlen = len;
            if ((ret = mig_read(g, in->dev, len)))
                return ret;
            continue;
        }
        if (tag == MAPPED_RAM_TAG && g->info.transferred == 33)
            return mig_fail(in->why, sizeof(in->why), -EINVAL, "this file was saved with the mapped-ram capability: set it"
                            " here too (migrate-set-capabilities, or -global migration.mapped-ram=on)");
        if (tag != MIG_REC_PAGES && tag != MIG_REC_ZERO)
            return mig_fail(in->why, sizeof(in->why), -EINVAL, "unknown record 0x%02x at byte %llu", tag,
                            (unsigned long long)g->info.transferred - 1);
        uint8_t h[12];
        if ((ret = mig_read(g, h, 12)))
            return ret;
        uint64_t first = mig_get_le(h, 8);
        uint32_t count = (uint32_t)mig_get_le(h + 8, 4);
        if (count == 0 || count > MIG_BATCH || first >= pages || count > pages - first)
            return mig_fail(in->why, sizeof(in->why), -EINVAL,
                            "pages %llu+%u lie outside this machine's %llu pages of RAM",
                            (unsigned long long)first, count, (unsigned long long)pages);
        uint8_t *dst = m->ram + (first << 12);
        if (tag == MIG_REC_PAGES) {
            /* one call makes the pages (advice: an old kernel just faults them in the read) */
            if (!g->local)
                madvise(dst, (size_t)count * MIG_PAGE, MADV_POPULATE_WRITE);
            if ((ret = mig_read(g, dst, (size_t)count * MIG_PAGE)))
                return ret;
            pthread_mutex_lock(&g->lock);
            g->info.normal += count;
            g->info.normal_bytes += (uint64_t)count * MIG_PAGE;
            pthread_mutex_unlock(&g->lock);
        } else {
            mig_zero_pages(g, dst, count);
            pthread_mutex_lock(&g->lock);
            g->info.duplicate += count;
            pthread_mutex_unlock(&g->lock);
        }
    }
}

static void *mig_receive_thread(void *opaque)
{
    struct migration *g = opaque;
    struct machine *m = g->m;
    struct mig_in in = { .g = g };
    int ret = 0;
    if (g->listen_fd >= 0) {
        int fd;
        while ((fd = accept4(g->listen_fd, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR)
            ;
        if (fd < 0) {
            ret = atomic_load(&g->cancel) ? -ECANCELED : -errno;
        } else {
            close(g->listen_fd);
            g->listen_fd = -1;
            g->fd = fd;
        }
    }
    g->t_start = clock_now_ns();
    if (!ret) {
        mig_set_status(g, MIG_ACTIVE);
        g->crc = 0;
        ret = g->mapped ? mig_receive_mapped(g, &in) : mig_receive(g, &in);
    }
    if (!ret) {
        g->in = &in;
        ret = mig_call_io(g, mig_io_load);
        if (!ret)
            ret = g->final_ret;
        g->in = NULL;
    }
    pthread_mutex_lock(&g->lock);
    g->info.total_time = mig_ms(clock_now_ns() - g->t_start);
    pthread_mutex_unlock(&g->lock);
    if (ret && ret != -ECANCELED) {
        if (!in.why[0])
            snprintf(in.why, sizeof(in.why), "%s", ret == -EPIPE ? "the stream ends early (truncated, or the source went away)"
                                                                 : strerror(-ret));
        log_error("incoming migration failed: %s", in.why);
        snprintf(g->info.error, sizeof(g->info.error), "%.255s", in.why);
        mig_set_status(g, MIG_FAILED);
        machine_request_stop_host(m, MACHINE_EXIT, 1, "host-error");
    }
    free(in.dev);
    free(in.head);
    mig_close_channel(g);
    return NULL;
}

int migration_incoming(struct machine *m, const char *uri, bool autostart, char *why, size_t n)
{
    struct migration *g = mig_get(m);
    if (!g)
        return mig_fail(why, n, -ENOMEM, "out of memory");
    if (g->incoming && !g->deferred)
        return mig_fail(why, n, -EBUSY, "an incoming migration has been started already");
    g->incoming = true;
    atomic_store(&m->state_incoming, true);
    /* after -incoming defer, what the command line said (-S or not) still holds, as in QEMU:
     * migrate-incoming's caller only knows whether a cont came meanwhile */
    g->autostart = (g->deferred && g->autostart) || autostart;
    memset(&g->info, 0, sizeof(g->info));
    g->info.incoming = true;
    if (!strcmp(uri, "defer")) {
        g->deferred = true;
        return 0;
    }
    g->deferred = false;
    g->mapped = g->cap_mapped_ram;
    if (g->mapped && strncmp(uri, "file:", 5))
        return mig_fail(why, n, -EINVAL, "Migration requires seekable transport (e.g. file)");
    int ret = mig_open(g, uri, false, why, n);
    if (ret)
        return ret;
    snprintf(g->uri, sizeof(g->uri), "%s", uri);
    g->info.status = MIG_SETUP;
    ret = -pthread_create(&g->thread, NULL, mig_receive_thread, g);
    if (ret) {
        mig_close_channel(g);
        return mig_fail(why, n, ret, "cannot start the migration thread: %s", strerror(-ret));
    }
    g->thread_live = true;
    return 0;
}

/* ---- savevm/loadvm: the same stream to and from an fd, on the I/O thread ---- */

/* A migration of its own (not the machine's: query-migrate and MIGRATION events stay as they
 * are), writing or reading fd. */
static int mig_local_init(struct migration *g, struct machine *m, int fd)
{
    memset(g, 0, sizeof(*g));
    g->m = m;
    g->local = true;
    g->fd = fd;
    g->listen_fd = g->wake_fd = -1;   /* mig_set_status's wake-up goes nowhere */
    g->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    uint64_t pages = memory_ram_pages(m);
    g->bitmap = calloc((pages + 63) / 64, sizeof(uint64_t));
    g->buf = malloc((size_t)(MIG_BATCH + 1) * MIG_PAGE);
    return g->bitmap && g->buf ? 0 : -ENOMEM;
}

static void mig_local_free(struct migration *g)
{
    if (g->pagemap_fd >= 0)
        close(g->pagemap_fd);
    free(g->bitmap);
    free(g->buf);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

int migration_save_fd(struct machine *m, int fd, uint64_t *written, char *why, size_t n)
{
    if (mig_running(m->migration))
        return mig_fail(why, n, -EBUSY, "There's a migration process in progress");
    if (vmstate_blocker(m))
        return mig_fail(why, n, -ENOTSUP, "this machine cannot save its state: %s", vmstate_blocker(m));
    struct migration g;
    int ret = mig_local_init(&g, m, fd);
    if (!ret) {
        uint64_t pages = memory_ram_pages(m);
        uint8_t hdr[8 + 4 + 8 + 4 + 4 + 4] = MIG_MAGIC;
        mig_le(hdr + 8, MIG_VERSION, 4);
        mig_le(hdr + 12, m->ram_size, 8);
        mig_le(hdr + 20, (uint32_t)m->ncpus, 4);
        mig_le(hdr + 24, (uint32_t)m->cfg->type, 4);
        mig_le(hdr + 28, MIG_PAGE, 4);
        memset(g.bitmap, 0xff, (pages + 63) / 64 * 8);
        if (pages % 64)
            g.bitmap[pages / 64] = (1ull << (pages % 64)) - 1;
        ret = mig_write(&g, hdr, sizeof(hdr));
        if (!ret) {
            mig_io_final(&g);   /* every page (the bitmap is full), the devices, the end */
            ret = g.final_ret;
            if (ret)
                mig_fail(why, n, ret, "%s", g.final_why[0] ? g.final_why : strerror(-ret));
        } else {
            mig_fail(why, n, ret, "writing the stream: %s", strerror(-ret));
        }
    } else {
        mig_fail(why, n, ret, "out of memory");
    }
    if (written)
        *written = g.info.transferred;
    mig_local_free(&g);
    return ret;
}

uint32_t migration_crc32(uint32_t crc, const void *p, size_t n)
{
    return mig_crc32(crc, p, n);
}

int migration_load_fd(struct machine *m, int fd, bool crc_checked, char *why, size_t n)
{
    if (mig_running(m->migration))
        return mig_fail(why, n, -EBUSY, "There's a migration process in progress");
    struct migration g;
    struct mig_in in = { .g = &g };
    int ret = mig_local_init(&g, m, fd);
    if (ret)
        return mig_fail(why, n, ret, "out of memory");
    g.crc_checked = crc_checked;
    ret = mig_receive(&g, &in);
    if (!ret) {
        char dwhy[256] = "";
        ret = vmstate_load(m, in.dev, in.dlen, dwhy, sizeof(dwhy));
        if (ret)
            snprintf(in.why, sizeof(in.why), "device state: %s", dwhy);
    }
    if (ret)
        mig_fail(why, n, ret, "%s", in.why[0] ? in.why : ret == -EPIPE ? "the stream ends early (truncated)" : strerror(-ret));
    free(in.dev);
    mig_local_free(&g);
    return ret;
}

bool migration_incoming_autostart(struct machine *m)
{
    struct migration *g = m->migration;
    if (!g || !g->incoming || g->info.status == MIG_COMPLETED || g->info.status == MIG_FAILED)
        return false;
    g->autostart = true;   /* read on this thread by mig_io_load */
    return true;
}

bool migration_incoming_deferred(const struct machine *m)
{
    return m->migration && m->migration->incoming && m->migration->deferred;
}

void migration_query(const struct machine *m, struct migration_info *out)
{
    struct migration *g = m->migration;
    memset(out, 0, sizeof(*out));
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    *out = g->info;
    pthread_mutex_unlock(&g->lock);
    if (mig_running(g))
        out->total_time = mig_ms(clock_now_ns() - g->t_start);
}

const char *migration_run_state(const struct machine *m)
{
    const struct migration *g = m->migration;
    if (!g)
        return NULL;
    if (g->incoming)
        return g->info.status == MIG_COMPLETED || g->info.status == MIG_FAILED ? NULL : "inmigrate";
    if (g->info.status == MIG_DEVICE)
        return "finish-migrate";
    if (g->info.status == MIG_COMPLETED && machine_is_paused(m))
        return "postmigrate";
    return NULL;
}

int migration_set_capability(struct machine *m, const char *name, bool on)
{
    struct migration *g = mig_get(m);
    if (!g)
        return -ENOMEM;
    if (mig_running(g))
        return -EBUSY;
    if (!strcmp(name, "events"))
        g->cap_events = on;
    else if (!strcmp(name, "mapped-ram"))
        g->cap_mapped_ram = on;
    else
        return -ENOENT;
    return 0;
}

bool migration_get_capability(const struct machine *m, const char *name)
{
    const struct migration *g = m->migration;
    return g && ((!strcmp(name, "events") && g->cap_events) || (!strcmp(name, "mapped-ram") && g->cap_mapped_ram));
}

int migration_set_parameter(struct machine *m, const char *name, int64_t value)
{
    struct migration *g = mig_get(m);
    if (!g)
        return -ENOMEM;
    if (!strcmp(name, "downtime-limit")) {
        if (value < 0 || value > 2000000)   /* QEMU's MAX_MIGRATE_DOWNTIME: 2000 s */
            return -ERANGE;
        g->downtime_limit = (uint64_t)value;
        return 0;
    }
    if (!strcmp(name, "max-bandwidth")) {
        if (value < 0)
            return -ERANGE;
        g->max_bandwidth = (uint64_t)value;
        return 0;
    }
    return -ENOENT;
}

int64_t migration_get_parameter(const struct machine *m, const char *name)
{
    const struct migration *g = m->migration;
    if (!strcmp(name, "downtime-limit"))
        return g ? (int64_t)g->downtime_limit : 300;
    if (!strcmp(name, "max-bandwidth"))
        return g ? (int64_t)g->max_bandwidth : 128ll << 20;
    return 0;
}
