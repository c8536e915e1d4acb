#include "hw/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *b, const char *name)
{
    *b = (struct bus){ .name = name };
    pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
    free(b->regions);
    pthread_rwlock_destroy(&b->lock);
    b->regions = NULL;
    b->n = b->cap = 0;
}

/* Index of the first region whose end is above addr (binary search). */
static int bus_lower_bound(const struct bus *b, uint64_t addr)
{
    int lo = 0, hi = b->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        const struct bus_region *r = &b->regions[mid];
        if (r->base + r->len - 1 < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct bus_region *bus_lookup(struct bus *b, uint64_t addr)
{
    int i = bus_lower_bound(b, addr);
    if (i < b->n && b->regions[i].base <= addr)
        return &b->regions[i];
    return NULL;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_read_fn read, bus_write_fn write,
                 void *opaque, const char *name)
{
    if (!len || base + len - 1 < base)
        return -EINVAL;
    pthread_rwlock_wrlock(&b->lock);
    int i = bus_lower_bound(b, base);
    int ret = 0;
    if (i < b->n && b->regions[i].base <= base + len - 1) {
        ret = -EEXIST;
        goto out;
    }
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 16;
        struct bus_region *n = realloc(b->regions, (size_t)cap * sizeof(*n));
        if (!n) {
            ret = -ENOMEM;
            goto out;
        }
        b->regions = n;
        b->cap = cap;
    }
    memmove(&b->regions[i + 1], &b->regions[i], (size_t)(b->n - i) * sizeof(*b->regions));
    b->regions[i] = (struct bus_region){ base, len, read, write, opaque, name };
    b->n++;
out:
    pthread_rwlock_unlock(&b->lock);
    return ret;
}

int bus_unregister(struct bus *b, uint64_t base, void *opaque)
{
    pthread_rwlock_wrlock(&b->lock);
    int ret = -ENOENT;
    for (int i = 0; i < b->n; i++) {
        if (b->regions[i].base == base && b->regions[i].opaque == opaque) {
            memmove(&b->regions[i], &b->regions[i + 1], (size_t)(b->n - i - 1) * sizeof(*b->regions));
            b->n--;
            ret = 0;
            break;
        }
    }
    pthread_rwlock_unlock(&b->lock);
    return ret;
}

const struct bus_region *bus_find(struct bus *b, uint64_t addr)
{
    pthread_rwlock_rdlock(&b->lock);
    const struct bus_region *r = bus_lookup(b, addr);
    pthread_rwlock_unlock(&b->lock);
    return r;
}

void bus_for_each(struct bus *b, void (*fn)(void *opaque, const struct bus_region *r), void *opaque)
{
    pthread_rwlock_rdlock(&b->lock);
    for (int i = 0; i < b->n; i++)
        fn(opaque, &b->regions[i]);
    pthread_rwlock_unlock(&b->lock);
}

int bus_dispatch(struct bus *b, uint64_t addr, void *data, unsigned size, bool is_write)
{
    int ret = 0;
    pthread_rwlock_rdlock(&b->lock);
    uint8_t *p = data;
    while (size) {
        struct bus_region *r = bus_lookup(b, addr);
        if (!r) {
            if (!is_write)
                *p = 0xff;
            ret = -ENOENT;
            p++, addr++, size--;
            continue;
        }
        uint64_t off = addr - r->base;
        unsigned n = size;
        if (off + n > r->len)
            n = (unsigned)(r->len - off);
        if (is_write) {
            if (r->write)
                r->write(r->opaque, off, p, n);
        } else if (r->read) {
            r->read(r->opaque, off, p, n);
        } else {
            memset(p, 0xff, n);
        }
        p += n, addr += n, size -= n;
    }
    pthread_rwlock_unlock(&b->lock);
    return ret;
}
