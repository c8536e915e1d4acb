/* Split virtqueues (virtio 1.2, 2.7): the device side. Every guest-supplied index, address and
 * length is checked before use; a chain that breaks a rule marks the queue broken (the transport
 * then sets NEEDS_RESET) and nothing outside guest RAM is ever touched.
 *
 * Not thread-safe: the transport holds the device's lock around every call. */
#ifndef QKVM_HW_VIRTIO_QUEUE_H
#define QKVM_HW_VIRTIO_QUEUE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct machine;

#define VIRTQ_MAX_SIZE  1024    /* the largest queue a device offers */
#define VIRTQ_MAX_CHAIN 1024    /* buffers in one chain, through an indirect table included */

#define VIRTQ_DESC_F_NEXT      1
#define VIRTQ_DESC_F_WRITE     2
#define VIRTQ_DESC_F_INDIRECT  4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* feature bits of the ring itself */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX     29

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* One chain taken from the available ring: the device-readable buffers ("out") first, then the
 * device-writable ones ("in"), each a host pointer into guest RAM checked for its whole length. */
struct virtq_elem {
    uint16_t head;
    unsigned out_num, in_num;
    uint64_t out_len, in_len;           /* bytes */
    struct iovec iov[VIRTQ_MAX_CHAIN];  /* out_num readable, then in_num writable */
    uint64_t gpa[VIRTQ_MAX_CHAIN];      /* guest address of each */
};

struct virtq {
    struct machine *m;
    uint16_t num;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct virtq_desc *desc;            /* host views of the rings, checked at start */
    uint16_t *avail;                    /* flags, idx, ring[num], used_event */
    uint8_t *used;                      /* flags, idx, {id, len}[num], avail_event */
    uint16_t last_avail;                /* next available entry to take */
    uint16_t used_idx;                  /* our copy of used->idx */
    uint16_t signalled_used;            /* used_idx at the last interrupt */
    bool signalled_valid;
    bool event_idx, indirect;           /* negotiated */
    bool ready;
    bool broken;
    const char *error;                  /* why broken, for the log */
};

/* Makes the queue ready with num entries at the given rings. -EINVAL for a size that is not a
 * power of two up to VIRTQ_MAX_SIZE or misaligned rings, -EFAULT for rings outside RAM. */
int virtq_start(struct virtq *q, struct machine *m, uint16_t num, uint64_t desc, uint64_t avail,
                uint64_t used, bool event_idx, bool indirect);
/* Back to the reset state. */
void virtq_stop(struct virtq *q);

/* Takes the next available chain into e: 1, 0 when none is available (driver notifications are
 * on again then: the next chain rings the doorbell), -EIO when the chain (or the ring) is
 * invalid: the queue is broken from then on and q->error says why. */
int virtq_pop(struct virtq *q, struct virtq_elem *e);
/* Gives the last n popped chains back (they were not used): net receive, out of buffers. */
void virtq_unpop(struct virtq *q, unsigned n);
/* True when a chain is available (without taking it). */
bool virtq_has_avail(struct virtq *q);
/* Puts e on the used ring with len bytes written into its writable buffers (clamped to them). */
void virtq_push(struct virtq *q, const struct virtq_elem *e, uint32_t len);
/* The same in two steps, for a packet spread over several chains: fill puts e k entries past the
 * used index without publishing it; flush publishes n filled entries at once. */
void virtq_fill(struct virtq *q, const struct virtq_elem *e, uint32_t len, unsigned k);
void virtq_flush(struct virtq *q, unsigned n);
/* Whether the driver wants an interrupt for what was pushed since the last one that went out
 * (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX); counts it as sent when true. */
bool virtq_should_notify(struct virtq *q);
/* Driver notifications while the device works through the ring: off, then on again. enable
 * returns true when more chains arrived in between (the caller goes round once more). */
void virtq_disable_notify(struct virtq *q);
bool virtq_enable_notify(struct virtq *q);
/* For a device that needs more chains than are available (a packet over several): asks for a
 * doorbell at the next chain the driver adds. True when one arrived meanwhile (look again). */
bool virtq_arm_for_more(struct virtq *q);

/* Copy between a chain's buffers and a flat buffer, starting off bytes into the readable (out)
 * or writable (in) part. Return the bytes copied (less at the end of the buffers). */
size_t virtq_elem_read(const struct virtq_elem *e, size_t off, void *buf, size_t len);
size_t virtq_elem_write(const struct virtq_elem *e, size_t off, const void *buf, size_t len);
/* The host address of byte off of the writable part, or NULL past its end. */
uint8_t *virtq_elem_in_byte(const struct virtq_elem *e, size_t off);
/* The iovec of [off, off+len) of the readable (in=false) or writable part into out (at most max
 * entries); returns the entry count, or -E2BIG if it needs more. */
int virtq_elem_slice(const struct virtq_elem *e, bool in, size_t off, size_t len, struct iovec *out, int max);

#endif
