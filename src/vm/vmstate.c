/* The one engine that writes and reads device state (vm/vmstate.h, docs/migration.md). A device
 * only describes its fields; the stream's framing, versions, checksum and every check of input
 * live here, so a hostile stream meets one parser. */
#include "vm/vmstate.h"

#include "util/crc32.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VMS_MAGIC       "QKVMVMS"      /* 8 bytes with its NUL */
#define VMS_FORMAT      1
#define VMS_TAG_SECTION 0x01
#define VMS_TAG_END     0xff
#define VMS_MAX_SECTIONS 4096

int vmstate_register(struct machine *m, const struct vmstate_desc *d, uint32_t instance, void *opaque)
{
    struct vmstate_entry **pp = &m->vmstate;
    for (; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->desc->name, d->name) && (*pp)->instance == instance)
            return -EEXIST;
    struct vmstate_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    *e = (struct vmstate_entry){ d, instance, opaque, NULL };
    *pp = e;
    return 0;
}

void vmstate_unregister(struct machine *m, const void *opaque)
{
    for (struct vmstate_entry **pp = &m->vmstate; *pp;) {
        struct vmstate_entry *e = *pp;
        if (e->opaque == opaque) {
            *pp = e->next;
            free(e);
        } else {
            pp = &e->next;
        }
    }
}

void vmstate_add_blocker(struct machine *m, const char *reason)
{
    if (!m->vmstate_blocker)
        m->vmstate_blocker = reason;
}

const char *vmstate_blocker(const struct machine *m)
{
    return m->vmstate_blocker;
}

void vmstate_unregister_all(struct machine *m)
{
    while (m->vmstate) {
        struct vmstate_entry *e = m->vmstate;
        m->vmstate = e->next;
        free(e);
    }
}

/* CRC-32 (IEEE 802.3, as zlib's): catches a stream damaged in a file or on the wire. */
uint32_t vmstate_crc32(const uint8_t *p, size_t n)
{
    return crc32_update(0, p, n);
}

static size_t vms_type_size(enum vmstate_type t)
{
    switch (t) {
    case VMS_U16: return 2;
    case VMS_U32: return 4;
    case VMS_U64: return 8;
    default: return 1;
    }
}

/* The bytes of a variable buffer that count: its length field, never more than the buffer. */
static uint32_t vms_vbuf_len(const struct vmstate_field *f, const uint8_t *base)
{
    uint32_t len;
    memcpy(&len, base + f->len_offset, 4);
    return len < f->count ? len : f->count;
}

static bool vms_has_vbuf(const struct vmstate_field *f, uint32_t version)
{
    for (; f->name; f++)
        if (f->version <= version && (f->type == VMS_VBUF || (f->type == VMS_STRUCT && vms_has_vbuf(f->sub, version))))
            return true;
    return false;
}

/* Bytes the fields of base take in a section of this version (base: the lengths of variable
 * buffers; NULL for a description without any). */
static size_t vms_fields_size(const struct vmstate_field *f, uint32_t version, const uint8_t *base)
{
    size_t n = 0;
    for (; f->name; f++) {
        if (f->version > version)
            continue;
        if (f->type == VMS_VBUF) {
            n += vms_vbuf_len(f, base);
            continue;
        }
        if (f->type == VMS_STRUCT) {
            for (uint32_t i = 0; i < f->count; i++)
                n += vms_fields_size(f->sub, version, base ? base + f->offset + i * f->stride : NULL);
            continue;
        }
        n += vms_type_size(f->type) * f->count;
    }
    return n;
}

struct vms_buf {
    uint8_t *p;
    size_t len, cap;
    int err;
};

static void vms_put(struct vms_buf *b, const void *data, size_t n)
{
    if (b->err)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->err = -ENOMEM;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void vms_put_le(struct vms_buf *b, uint64_t v, size_t n)
{
    uint8_t le[8];
    for (size_t i = 0; i < n; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    vms_put(b, le, n);
}

static uint64_t vms_get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void vms_save_fields(struct vms_buf *b, const uint8_t *base, const struct vmstate_field *f, uint32_t version)
{
    for (; f->name; f++) {
        if (f->version > version)
            continue;
        if (f->type == VMS_VBUF) {
            vms_put(b, base + f->offset, vms_vbuf_len(f, base));
            continue;
        }
        for (uint32_t i = 0; i < f->count; i++) {
            if (f->type == VMS_STRUCT) {
                vms_save_fields(b, base + f->offset + i * f->stride, f->sub, version);
                continue;
            }
            size_t sz = vms_type_size(f->type);
            const uint8_t *p = base + f->offset + i * sz;
            uint64_t v = 0;
            switch (f->type) {
            case VMS_U16: { uint16_t x; memcpy(&x, p, 2); v = x; break; }
            case VMS_U32: { uint32_t x; memcpy(&x, p, 4); v = x; break; }
            case VMS_U64: memcpy(&v, p, 8); break;
            case VMS_BOOL: { bool x; memcpy(&x, p, 1); v = x; break; }
            default: v = *p; break;
            }
            vms_put_le(b, v, sz);
        }
    }
}

/* Reads fields from [*in, lim) into base: -EMSGSIZE when they need more bytes than that, -E2BIG
 * with *bad the buffer's name when a variable buffer's length is over its bound, -EINVAL with
 * *bad the field's name for a value its type cannot hold. */
static int vms_load_fields(const uint8_t **in, const uint8_t *lim, uint8_t *base, const struct vmstate_field *f,
                           uint32_t version, const char **bad)
{
    for (; f->name; f++) {
        if (f->version > version)
            continue;
        if (f->type == VMS_VBUF) {
            uint32_t len;   /* loaded already: its field comes first */
            memcpy(&len, base + f->len_offset, 4);
            if (len > f->count) {
                *bad = f->name;
                return -E2BIG;
            }
            if ((size_t)(lim - *in) < len)
                return -EMSGSIZE;
            memcpy(base + f->offset, *in, len);
            *in += len;
            continue;
        }
        for (uint32_t i = 0; i < f->count; i++) {
            if (f->type == VMS_STRUCT) {
                int ret = vms_load_fields(in, lim, base + f->offset + i * f->stride, f->sub, version, bad);
                if (ret)
                    return ret;
                continue;
            }
            size_t sz = vms_type_size(f->type);
            if ((size_t)(lim - *in) < sz)
                return -EMSGSIZE;
            uint8_t *p = base + f->offset + i * sz;
            uint64_t v = vms_get_le(*in, sz);
            *in += sz;
            switch (f->type) {
            case VMS_U16: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
            case VMS_U32: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
            case VMS_U64: memcpy(p, &v, 8); break;
            case VMS_BOOL: {
                if (v > 1) {   /* a bool holding 2 is undefined behaviour in C */
                    *bad = f->name;
                    return -EINVAL;
                }
                bool x = v;
                memcpy(p, &x, 1);
                break;
            }
            default: *p = (uint8_t)v; break;
            }
        }
    }
    return 0;
}

/* Copies the described fields (and nothing else: locks, pointers, fds stay the live ones). */
static void vms_copy_fields(uint8_t *dst, const uint8_t *src, const struct vmstate_field *f, uint32_t version)
{
    for (; f->name; f++) {
        if (f->version > version)
            continue;
        if (f->type == VMS_STRUCT) {
            for (uint32_t i = 0; i < f->count; i++)
                vms_copy_fields(dst + f->offset + i * f->stride, src + f->offset + i * f->stride, f->sub, version);
            continue;
        }
        if (f->type == VMS_VBUF) {
            memcpy(dst + f->offset, src + f->offset, vms_vbuf_len(f, src));
            continue;
        }
        memcpy(dst + f->offset, src + f->offset, vms_type_size(f->type) * f->count);
    }
}

int vmstate_save(struct machine *m, uint8_t **buf, size_t *len)
{
    struct vms_buf b = { 0 };
    vms_put(&b, VMS_MAGIC, 8);
    vms_put_le(&b, VMS_FORMAT, 4);
    for (struct vmstate_entry *e = m->vmstate; e; e = e->next) {
        const struct vmstate_desc *d = e->desc;
        if (d->pre_save)
            d->pre_save(e->opaque);
        size_t nlen = strlen(d->name);
        uint8_t tag = VMS_TAG_SECTION, n8 = (uint8_t)nlen;
        vms_put(&b, &tag, 1);
        vms_put(&b, &n8, 1);
        vms_put(&b, d->name, nlen);
        vms_put_le(&b, e->instance, 4);
        vms_put_le(&b, d->version, 4);
        vms_put_le(&b, vms_fields_size(d->fields, d->version, e->opaque), 4);
        vms_save_fields(&b, e->opaque, d->fields, d->version);
    }
    uint8_t end = VMS_TAG_END;
    vms_put(&b, &end, 1);
    if (!b.err)
        vms_put_le(&b, vmstate_crc32(b.p, b.len), 4);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *buf = b.p;
    *len = b.len;
    return 0;
}

static int vms_fail(char *why, size_t why_len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int vms_fail(char *why, size_t why_len, int err, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

int vmstate_load(struct machine *m, const uint8_t *buf, size_t len, char *why, size_t why_len)
{
    size_t n = 0;
    for (struct vmstate_entry *e = m->vmstate; e; e = e->next)
        n++;
    void **scratch = calloc(n ? n : 1, sizeof(*scratch));
    uint32_t *versions = calloc(n ? n : 1, sizeof(*versions));
    int ret = 0;
    if (!scratch || !versions) {
        ret = vms_fail(why, why_len, -ENOMEM, "out of memory");
        goto out;
    }
    if (len < 8 + 4 + 1 + 4 || memcmp(buf, VMS_MAGIC, 8)) {
        ret = vms_fail(why, why_len, -EINVAL, "not a qkvm device state stream");
        goto out;
    }
    uint32_t format = (uint32_t)vms_get_le(buf + 8, 4);
    if (format != VMS_FORMAT) {
        ret = vms_fail(why, why_len, -EPROTONOSUPPORT, "stream format %u, this qkvm reads format %u", format,
                       VMS_FORMAT);
        goto out;
    }
    if (vms_get_le(buf + len - 4, 4) != vmstate_crc32(buf, len - 4)) {
        ret = vms_fail(why, why_len, -EINVAL, "stream checksum mismatch: truncated or corrupt");
        goto out;
    }
    const uint8_t *p = buf + 12, *end = buf + len - 4;
    int nsections = 0;
    for (;;) {
        if (p >= end) {
            ret = vms_fail(why, why_len, -EINVAL, "stream ends without its end marker");
            goto out;
        }
        uint8_t tag = *p++;
        if (tag == VMS_TAG_END) {
            if (p != end) {
                ret = vms_fail(why, why_len, -EINVAL, "%zu bytes after the end marker", (size_t)(end - p));
                goto out;
            }
            break;
        }
        if (tag != VMS_TAG_SECTION || ++nsections > VMS_MAX_SECTIONS) {
            ret = vms_fail(why, why_len, -EINVAL, "bad section tag 0x%02x at offset %zu", tag, (size_t)(p - 1 - buf));
            goto out;
        }
        if (end - p < 1 || (size_t)(end - p) < 1u + p[0] + 12u) {
            ret = vms_fail(why, why_len, -EINVAL, "section header cut short at offset %zu", (size_t)(p - buf));
            goto out;
        }
        char name[256];
        size_t nlen = *p++;
        memcpy(name, p, nlen);
        name[nlen] = 0;
        p += nlen;
        for (size_t i = 0; i < nlen; i++)
            if (name[i] < 0x20 || name[i] > 0x7e)
                name[i] = '?';   /* it goes into a message */
        uint32_t inst = (uint32_t)vms_get_le(p, 4), ver = (uint32_t)vms_get_le(p + 4, 4);
        uint32_t size = (uint32_t)vms_get_le(p + 8, 4);
        p += 12;
        size_t idx = 0;
        struct vmstate_entry *e = m->vmstate;
        for (; e; e = e->next, idx++)
            if (!strcmp(e->desc->name, name) && e->instance == inst)
                break;
        if (!e) {
            ret = vms_fail(why, why_len, -ENOENT, "unknown section '%s' instance %u: this machine has no such device",
                           name, inst);
            goto out;
        }
        const struct vmstate_desc *d = e->desc;
        if (scratch[idx]) {
            ret = vms_fail(why, why_len, -EINVAL, "section '%s' instance %u appears twice", name, inst);
            goto out;
        }
        if (ver > d->version) {
            ret = vms_fail(why, why_len, -EPROTONOSUPPORT, "section '%s' is version %u, newer than this qkvm's %u",
                           name, ver, d->version);
            goto out;
        }
        if (ver < d->min_version) {
            ret = vms_fail(why, why_len, -EPROTONOSUPPORT,
                           "section '%s' is version %u, older than this qkvm reads (%u and later)", name, ver,
                           d->min_version);
            goto out;
        }
        bool vbuf = vms_has_vbuf(d->fields, ver);
        size_t want = vbuf ? 0 : vms_fields_size(d->fields, ver, NULL);
        if (!vbuf && (size != want || (size_t)(end - p) < size)) {
            ret = vms_fail(why, why_len, -EINVAL, "section '%s' holds %u bytes, version %u has %zu", name, size,
                           ver, want);
            goto out;
        }
        if ((size_t)(end - p) < size) {
            ret = vms_fail(why, why_len, -EINVAL, "section '%s' holds %u bytes, past the end of the stream", name,
                           size);
            goto out;
        }
        if (!(scratch[idx] = malloc(d->size))) {
            ret = vms_fail(why, why_len, -ENOMEM, "out of memory");
            goto out;
        }
        memcpy(scratch[idx], e->opaque, d->size);
        const char *bad = NULL;
        const uint8_t *q = p;
        int lret = vms_load_fields(&q, p + size, scratch[idx], d->fields, ver, &bad);
        if (lret == -E2BIG) {
            ret = vms_fail(why, why_len, -EINVAL, "section '%s' instance %u: %s longer than its bound", name, inst,
                           bad);
            goto out;
        }
        if (lret == -EMSGSIZE || (!lret && q != p + size)) {
            /* only a section with variable buffers gets here: their lengths say what it holds */
            ret = vms_fail(why, why_len, -EINVAL, "section '%s' holds %u bytes, its fields take %s%zu", name, size,
                           lret ? "more than " : "", lret ? (size_t)size : (size_t)(q - p));
            goto out;
        }
        if (lret || (d->check && d->check(e->opaque, scratch[idx], &bad))) {
            ret = vms_fail(why, why_len, -EINVAL, "section '%s' instance %u: invalid %s", name, inst,
                           bad ? bad : "state");
            goto out;
        }
        versions[idx] = ver;
        p += size;
    }
    size_t idx = 0;
    for (struct vmstate_entry *e = m->vmstate; e; e = e->next, idx++)
        if (!scratch[idx] && !e->desc->optional) {
            ret = vms_fail(why, why_len, -ENOENT, "the stream has no section '%s' instance %u", e->desc->name,
                           e->instance);
            goto out;
        }
    /* every section checked: only now does any device change */
    idx = 0;
    for (struct vmstate_entry *e = m->vmstate; e; e = e->next, idx++)
        if (scratch[idx])
            vms_copy_fields(e->opaque, scratch[idx], e->desc->fields, versions[idx]);
    idx = 0;
    for (struct vmstate_entry *e = m->vmstate; e; e = e->next, idx++)
        if (scratch[idx] && e->desc->post_load)
            e->desc->post_load(e->opaque);
out:
    for (size_t i = 0; scratch && i < n; i++)
        free(scratch[i]);
    free(scratch);
    free(versions);
    return ret;
}
