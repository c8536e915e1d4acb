/* The rings live in guest memory and the guest may rewrite them at any moment, so each field is
 * read once into a local before it is checked and used. Ordering with the driver (2.7.7, 2.7.13):
 * the available index is read with acquire before the entries it covers; used entries are
 * written before the used index (release); a full barrier separates publishing the used index
 * (or re-enabling notifications) from reading the driver's suppression fields. */
#include "hw/virtio/queue.h"

#include "vm/machine.h"

#include <errno.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "virtio 1.x rings are little-endian");

#define USED_ELEM_SIZE 8

static uint16_t avail_load(struct virtq *q, unsigned i)
{
    return __atomic_load_n(&q->avail[i], __ATOMIC_RELAXED);
}

static uint16_t *used_word(struct virtq *q, size_t byte_off)
{
    return (uint16_t *)(q->used + byte_off);
}

int virtq_start(struct virtq *q, struct machine *m, uint16_t num, uint64_t desc, uint64_t avail,
                uint64_t used, bool event_idx, bool indirect)
{
    virtq_stop(q);
    if (!num || num > VIRTQ_MAX_SIZE || (num & (num - 1)))
        return -EINVAL;
    if ((desc & 15) || (avail & 1) || (used & 3))
        return -EINVAL;
    void *d = machine_gpa_ptr(m, desc, 16ull * num);
    void *a = machine_gpa_ptr(m, avail, 6 + 2ull * num);
    void *u = machine_gpa_ptr(m, used, 6 + 8ull * num);
    if (!d || !a || !u)
        return -EFAULT;
    q->m = m;
    q->num = num;
    q->desc_gpa = desc, q->avail_gpa = avail, q->used_gpa = used;
    q->desc = d;
    q->avail = a;
    q->used = u;
    q->event_idx = event_idx;
    q->indirect = indirect;
    q->ready = true;
    return 0;
}

void virtq_stop(struct virtq *q)
{
    memset(q, 0, sizeof(*q));
}

bool virtq_enable_notify(struct virtq *q);

static int virtq_fail(struct virtq *q, const char *why)
{
    q->broken = true;
    q->error = why;
    return -EIO;
}

bool virtq_has_avail(struct virtq *q)
{
    if (!q->ready || q->broken)
        return false;
    return __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE) != q->last_avail;
}

/* Adds one buffer of a chain; the readable ones must all come before the writable ones. */
static int virtq_add_buffer(struct virtq *q, struct virtq_elem *e, const struct virtq_desc *d)
{
    bool writable = d->flags & VIRTQ_DESC_F_WRITE;
    if (!writable && e->in_num)
        return virtq_fail(q, "a device-readable buffer follows a writable one");
    if (!d->len)
        return 0;
    unsigned n = e->out_num + e->in_num;
    if (n == VIRTQ_MAX_CHAIN)
        return virtq_fail(q, "chain too long");
    void *p = machine_gpa_ptr(q->m, d->addr, d->len);
    if (!p)
        return virtq_fail(q, "buffer outside guest RAM");
    e->iov[n] = (struct iovec){ p, d->len };
    e->gpa[n] = d->addr;
    if (writable) {
        e->in_num++;
        e->in_len += d->len;
    } else {
        e->out_num++;
        e->out_len += d->len;
    }
    return 0;
}

int virtq_pop(struct virtq *q, struct virtq_elem *e)
{
    if (q->broken)
        return -EIO;
    if (!q->ready)
        return 0;
    uint16_t avail_idx = __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (!pending) {
        /* Empty: the driver must ring for the next chain (with EVENT_IDX it only rings when
         * avail_event says so), and one added meanwhile must not be missed. */
        if (!virtq_enable_notify(q))
            return 0;
        avail_idx = __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE);
        pending = (uint16_t)(avail_idx - q->last_avail);
    }
    if (pending > q->num)
        return virtq_fail(q, "available index moved by more than the queue size");
    uint16_t head = avail_load(q, 2 + q->last_avail % q->num);
    if (head >= q->num)
        return virtq_fail(q, "available ring names a descriptor past the table");
    e->head = head;
    e->out_num = e->in_num = 0;
    e->out_len = e->in_len = 0;

    const uint8_t *table = (const uint8_t *)q->desc;
    unsigned table_n = q->num, i = head, seen = 0;
    bool indirect = false;
    for (;;) {
        struct virtq_desc d;
        memcpy(&d, table + 16 * i, sizeof(d));   /* one read: the guest may be rewriting it */
        if (++seen > table_n)
            return virtq_fail(q, "descriptor chain loops");
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!q->indirect)
                return virtq_fail(q, "indirect descriptor without the feature");
            if (indirect)
                return virtq_fail(q, "indirect descriptor inside an indirect table");
            if (i != head || (d.flags & VIRTQ_DESC_F_NEXT))
                return virtq_fail(q, "indirect descriptor that is not a chain of its own");
            if (!d.len || d.len % 16 || d.len / 16 > VIRTQ_MAX_CHAIN)
                return virtq_fail(q, "indirect table of a bad length");
            table = machine_gpa_ptr(q->m, d.addr, d.len);
            if (!table)
                return virtq_fail(q, "indirect table outside guest RAM");
            table_n = d.len / 16;
            indirect = true;
            i = 0;
            seen = 0;
            continue;
        }
        int ret = virtq_add_buffer(q, e, &d);
        if (ret)
            return ret;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        if (d.next >= table_n)
            return virtq_fail(q, "next descriptor past the table");
        i = d.next;
    }
    q->last_avail++;
    return 1;
}

void virtq_unpop(struct virtq *q, unsigned n)
{
    q->last_avail = (uint16_t)(q->last_avail - n);
}

void virtq_fill(struct virtq *q, const struct virtq_elem *e, uint32_t len, unsigned k)
{
    if (!q->ready || q->broken)
        return;
    if (len > e->in_len)
        len = (uint32_t)e->in_len;
    struct machine *m = q->m;
    uint32_t left = len;
    for (unsigned i = e->out_num; i < e->out_num + e->in_num && left; i++) {
        uint32_t n = e->iov[i].iov_len < left ? (uint32_t)e->iov[i].iov_len : left;
        machine_note_dirty(m, e->gpa[i], n);
        left -= n;
    }
    uint8_t *slot = q->used + 4 + USED_ELEM_SIZE * ((uint16_t)(q->used_idx + k) % q->num);
    uint32_t elem[2] = { e->head, len };
    memcpy(slot, elem, sizeof(elem));
}

void virtq_flush(struct virtq *q, unsigned n)
{
    if (!q->ready || q->broken)
        return;
    q->used_idx = (uint16_t)(q->used_idx + n);
    __atomic_store_n(used_word(q, 2), q->used_idx, __ATOMIC_RELEASE);
}

void virtq_push(struct virtq *q, const struct virtq_elem *e, uint32_t len)
{
    virtq_fill(q, e, len, 0);
    virtq_flush(q, 1);
}

uint8_t *virtq_elem_in_byte(const struct virtq_elem *e, size_t off)
{
    for (unsigned k = e->out_num; k < e->out_num + e->in_num; k++) {
        if (off < e->iov[k].iov_len)
            return (uint8_t *)e->iov[k].iov_base + off;
        off -= e->iov[k].iov_len;
    }
    return NULL;
}

bool virtq_should_notify(struct virtq *q)
{
    if (!q->ready || q->broken)
        return false;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t old = q->signalled_used, now = q->used_idx;
    bool valid = q->signalled_valid;
    if (old == now)   /* nothing new on the used ring */
        return false;
    q->signalled_used = now;
    q->signalled_valid = true;
    if (!q->event_idx)
        return !(avail_load(q, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    if (!valid)
        return true;
    uint16_t used_event = avail_load(q, 2 + q->num);
    /* vring_need_event: did the used index step over used_event since the last interrupt? */
    return (uint16_t)(now - used_event - 1) < (uint16_t)(now - old);
}

void virtq_disable_notify(struct virtq *q)
{
    if (!q->ready || q->event_idx)
        return;   /* with EVENT_IDX an avail_event left behind suppresses them already */
    __atomic_store_n(used_word(q, 0), VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
}

bool virtq_enable_notify(struct virtq *q)
{
    if (!q->ready || q->broken)
        return false;
    if (q->event_idx)
        __atomic_store_n(used_word(q, 4 + USED_ELEM_SIZE * (size_t)q->num), q->last_avail, __ATOMIC_RELAXED);
    else
        __atomic_store_n(used_word(q, 0), 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE) != q->last_avail;
}

bool virtq_arm_for_more(struct virtq *q)
{
    if (!q->ready || q->broken)
        return false;
    uint16_t now = __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE);
    if (q->event_idx)
        __atomic_store_n(used_word(q, 4 + USED_ELEM_SIZE * (size_t)q->num), now, __ATOMIC_RELAXED);
    else
        __atomic_store_n(used_word(q, 0), 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE) != now;
}

static size_t iov_copy(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len, bool to_iov)
{
    size_t done = 0;
    for (unsigned k = 0; k < n && done < len; k++) {
        if (off >= iov[k].iov_len) {
            off -= iov[k].iov_len;
            continue;
        }
        size_t c = iov[k].iov_len - off;
        if (c > len - done)
            c = len - done;
        if (to_iov)
            memcpy((uint8_t *)iov[k].iov_base + off, (const uint8_t *)buf + done, c);
        else
            memcpy((uint8_t *)buf + done, (const uint8_t *)iov[k].iov_base + off, c);
        done += c;
        off = 0;
    }
    return done;
}

size_t virtq_elem_read(const struct virtq_elem *e, size_t off, void *buf, size_t len)
{
    return iov_copy(e->iov, e->out_num, off, buf, len, false);
}

size_t virtq_elem_write(const struct virtq_elem *e, size_t off, const void *buf, size_t len)
{
    return iov_copy(e->iov + e->out_num, e->in_num, off, (void *)buf, len, true);
}

int virtq_elem_slice(const struct virtq_elem *e, bool in, size_t off, size_t len, struct iovec *out, int max)
{
    const struct iovec *iov = in ? e->iov + e->out_num : e->iov;
    unsigned n = in ? e->in_num : e->out_num;
    int cnt = 0;
    for (unsigned k = 0; k < n && len; k++) {
        if (off >= iov[k].iov_len) {
            off -= iov[k].iov_len;
            continue;
        }
        size_t c = iov[k].iov_len - off;
        if (c > len)
            c = len;
        if (cnt == max)
            return -E2BIG;
        out[cnt++] = (struct iovec){ (uint8_t *)iov[k].iov_base + off, c };
        len -= c;
        off = 0;
    }
    return cnt;
}
