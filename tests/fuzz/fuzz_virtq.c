/* libFuzzer target: the input is a guest's view of a split virtqueue (ring sizes, features, the
 * contents of guest RAM holding the rings, indirect tables and buffers, and a script of device
 * actions). Guest RAM is a heap buffer, so AddressSanitizer sees any access outside it; every
 * buffer the queue hands out is also checked to lie inside it.
 *   built and run by tests/integration/virtio-fuzz.sh */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hw/virtio/queue.h"
#include "vm/machine.h"

#define RAM_SIZE (64u << 10)

static struct machine m;
static uint8_t *ram;
static struct virtq_elem elem;

static void check_inside(const struct virtq_elem *e)
{
    for (unsigned k = 0; k < e->out_num + e->in_num; k++) {
        const uint8_t *p = e->iov[k].iov_base;
        if (p < ram || e->iov[k].iov_len > RAM_SIZE || p + e->iov[k].iov_len > ram + RAM_SIZE)
            __builtin_trap();
        if (e->gpa[k] + e->iov[k].iov_len > RAM_SIZE)
            __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ram) {
        ram = malloc(RAM_SIZE);
        m.mem[0] = (struct mem_region){ 0, RAM_SIZE, ram, false };
        m.nmem = 1;
    }
    if (size < 8)
        return 0;
    /* header: queue size (log2, 0-10), features, ring addresses in 4 KiB pages, script length */
    uint16_t num = (uint16_t)(1u << (data[0] % 11));
    bool event_idx = data[1] & 1, indirect = data[1] & 2;
    uint64_t desc = (uint64_t)(data[2] % 16) << 12, avail = (uint64_t)(data[3] % 16) << 12,
             used = (uint64_t)(data[4] % 16) << 12;
    if (data[5] & 1)   /* sometimes a ring past the end of RAM */
        used += RAM_SIZE - 4096;
    size_t script = data[6] % 64 + 1;
    data += 8, size -= 8;
    if (script > size)
        script = size;
    const uint8_t *ops = data;
    data += script, size -= script;
    /* the rest is guest memory, repeated to fill it */
    memset(ram, 0, RAM_SIZE);
    for (size_t off = 0; size && off < RAM_SIZE; off += size)
        memcpy(ram + off, data, RAM_SIZE - off < size ? RAM_SIZE - off : size);

    struct virtq q;
    memset(&q, 0, sizeof(q));
    if (virtq_start(&q, &m, num, desc, avail, used, event_idx, indirect))
        return 0;
    unsigned popped = 0;
    for (size_t i = 0; i < script; i++) {
        uint8_t op = ops[i];
        switch (op & 7) {
        case 0: case 1: case 2: {
            int r = virtq_pop(&q, &elem);
            if (r == 1) {
                check_inside(&elem);
                popped++;
                uint8_t buf[64];
                virtq_elem_read(&elem, op >> 3, buf, sizeof(buf));
                virtq_elem_write(&elem, op >> 4, buf, sizeof(buf));
                struct iovec iov[8];
                virtq_elem_slice(&elem, op & 8, op >> 5, 300, iov, 8);
                uint8_t *b = virtq_elem_in_byte(&elem, op);
                if (b && (b < ram || b >= ram + RAM_SIZE))
                    __builtin_trap();
                if (op & 0x40)
                    virtq_push(&q, &elem, (uint32_t)op * 97);
            }
            break;
        }
        case 3:
            virtq_should_notify(&q);
            break;
        case 4:
            virtq_enable_notify(&q);
            virtq_disable_notify(&q);
            break;
        case 5:
            if (popped) {
                virtq_unpop(&q, 1);
                popped--;
            }
            break;
        case 6:
            virtq_arm_for_more(&q);
            virtq_has_avail(&q);
            break;
        case 7:   /* the guest moves the available index behind the device's back */
            if (avail + 4 <= RAM_SIZE)
                ram[avail + 2] += op >> 3;
            break;
        }
    }
    return 0;
}
