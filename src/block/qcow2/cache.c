/* Write-back cache of L2 tables and refcount blocks, least recently used out first. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2/qcow2.h"

int qcow2_cache_init(struct qcow2_cache *c, struct qcow2_state *s, int n)
{
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->e = calloc(n, sizeof(*c->e));
    if (!c->e)
        return -ENOMEM;
    c->n = n;
    return 0;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->e[i].buf);
    free(c->e);
    c->e = NULL;
    c->n = 0;
}

static int write_entry(struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
    if (!e->dirty)
        return 0;
    if (c->depends) {
        /* Refcounts first, synced, so no L2 entry on disk points at an unreferenced cluster.
         * With lazy refcounts the dirty bit covers that instead. */
        bool dirty = false;
        for (int i = 0; i < c->depends->n; i++)
            dirty |= c->depends->e[i].dirty;
        if (dirty && !(c->s->compat & QCOW2_COMPAT_LAZY)) {
            int r = qcow2_cache_flush(c->depends);
            if (!r)
                r = bfile_flush(c->s->f);
            if (r)
                return r;
        }
    }
    if (c->depends && qcow2_overlaps_other_than_l2(c->s, e->off))
        return -EIO;
    int r = bfile_pwrite(c->s->f, e->off, e->buf, c->s->cluster_size);
    if (r == 0)
        e->dirty = false;
    return r;
}

int qcow2_cache_get(struct qcow2_cache *c, uint64_t off, bool fresh, uint8_t **buf)
{
    struct qcow2_cache_entry *e;
    if (c->last < c->n && c->e[c->last].off == off && off) {
        e = &c->e[c->last];
        goto hit;
    }
    int victim = -1;
    for (int i = 0; i < c->n; i++) {
        if (c->e[i].off == off && off) {
            c->last = i;
            e = &c->e[i];
            goto hit;
        }
        if (victim < 0 || c->e[i].used < c->e[victim].used)
            victim = i;
    }
    e = &c->e[victim];
    if (e->off) {
        int r = write_entry(c, e);
        if (r)
            return r;
    }
    if (!e->buf && !(e->buf = malloc(c->s->cluster_size)))
        return -ENOMEM;
    e->off = 0;
    if (fresh) {
        memset(e->buf, 0, c->s->cluster_size);
    } else {
        int r = bfile_pread(c->s->f, off, e->buf, c->s->cluster_size);
        if (r)
            return r;
    }
    e->off = off;
    e->dirty = false;
    c->last = victim;
hit:
    if (fresh)
        memset(e->buf, 0, c->s->cluster_size);
    e->used = ++c->tick;
    *buf = e->buf;
    return 0;
}

void qcow2_cache_dirty(struct qcow2_cache *c, const uint8_t *buf)
{
    for (int i = 0; i < c->n; i++)
        if (c->e[i].buf == buf) {
            c->e[i].dirty = true;
            return;
        }
}

int qcow2_cache_flush(struct qcow2_cache *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->e[i].off && c->e[i].dirty) {
            int r = write_entry(c, &c->e[i]);
            if (r)
                return r;
        }
    }
    return 0;
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off)
{
    for (int i = 0; i < c->n; i++)
        if (c->e[i].off == off) {
            c->e[i].off = 0;
            c->e[i].dirty = false;
            c->e[i].used = 0;
        }
}

void qcow2_cache_clear(struct qcow2_cache *c)
{
    for (int i = 0; i < c->n; i++) {
        c->e[i].off = 0;
        c->e[i].dirty = false;
        c->e[i].used = 0;
    }
}
