/* virtio-rng (5.4): every writable buffer the guest offers is filled from getrandom(). */
#include "hw/virtio/virtio.h"

#include "util/log.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define RNG_QUEUE_SIZE 64
#define RNG_MAX_REQUEST (64u << 10)   /* per chain: the guest asks again for more */

struct virtio_rng {
    struct virtio_dev vd;
    struct virtq_elem elem;
};

static size_t rng_fill(struct virtq_elem *e)
{
    size_t done = 0;
    for (unsigned k = e->out_num; k < e->out_num + e->in_num && done < RNG_MAX_REQUEST; k++) {
        uint8_t *p = e->iov[k].iov_base;
        size_t len = e->iov[k].iov_len;
        if (len > RNG_MAX_REQUEST - done)
            len = RNG_MAX_REQUEST - done;
        size_t got = 0;
        while (got < len) {
            ssize_t n = getrandom(p + got, len - got, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return done + got;
            }
            got += (size_t)n;
        }
        done += got;
    }
    return done;
}

static void rng_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct virtio_rng *r = vd->opaque;
    bool more;
    do {
        virtq_disable_notify(virtio_queue(vd, q));
        int ret;
        while ((ret = virtio_pop(vd, q, &r->elem)) > 0)
            virtq_push(virtio_queue(vd, q), &r->elem, (uint32_t)rng_fill(&r->elem));
        more = ret == 0 && virtq_enable_notify(virtio_queue(vd, q));
    } while (more);
    virtio_notify(vd, q);
}

static const struct virtio_dev_ops rng_ops = {
    .queue_notify = rng_queue_notify,
};

static int virtio_rng_create(struct machine *m, struct kvlist *opts)
{
    struct virtio_rng *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    int ret = machine_add_cleanup(m, free, r);
    if (ret)
        return ret;
    keyval_get(opts, "rng");   /* QEMU's backend object: qkvm always uses getrandom() */
    ret = virtio_dev_init(&r->vd, m, "virtio-rng-pci", VIRTIO_ID_RNG, 0xff0000, &rng_ops, r, 1,
                          RNG_QUEUE_SIZE, 0, 0);
    if (ret) {
        log_error("virtio-rng-pci: cannot set up: %s", strerror(-ret));
        return ret;
    }
    return virtio_dev_register(&r->vd, opts);
}
DEVICE_TYPE("virtio-rng-pci", virtio_rng_create)
