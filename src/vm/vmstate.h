/* Device state as a stream: each device describes its state once, beside its handlers (fields
 * of its struct with offsets, sizes and types, as QEMU's VMStateDescription), registers that
 * description with its machine, and one engine here writes and reads every registered device.
 * The stream format and versioning rules are in docs/migration.md.
 *
 * Save and load run on the I/O thread with the vCPUs paused (vm/control.h): no device handler
 * runs meanwhile, so the engine takes no device locks. */
#ifndef QKVM_VM_VMSTATE_H
#define QKVM_VM_VMSTATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;

enum vmstate_type {
    VMS_U8, VMS_U16, VMS_U32, VMS_U64,  /* little-endian in the stream */
    VMS_BOOL,                           /* one byte, 0 or 1: anything else is a corrupt stream */
    VMS_STRUCT,                         /* count copies of the sub-fields, stride bytes apart */
    /* A byte buffer of count bytes at most whose stream length is the value of an earlier
     * VMS_U32 field of the same struct (len_offset): a packet, a message. On load a length
     * over count refuses the stream before a byte is copied, and the section's size must be
     * what the lengths add up to. */
    VMS_VBUF,
};

struct vmstate_field {
    const char *name;
    size_t offset;                      /* from the opaque the device registered */
    enum vmstate_type type;
    uint32_t count;                     /* array elements; 1 for a scalar */
    uint32_t version;                   /* the section version that added it (0: from the start) */
    const struct vmstate_field *sub;    /* VMS_STRUCT: its fields, ended by a NULL name */
    size_t stride;                      /* VMS_STRUCT: sizeof one element */
    size_t len_offset;                  /* VMS_VBUF: its length, a uint32_t declared before it */
};

struct vmstate_desc {
    const char *name;                   /* the section name in the stream */
    uint32_t version;                   /* what this qkvm writes */
    uint32_t min_version;               /* the oldest it still reads */
    size_t size;                        /* of the struct the fields are in (the scratch copy) */
    const struct vmstate_field *fields; /* ended by a NULL name */
    /* Before saving: bring derived fields up to date (may be NULL). */
    void (*pre_save)(void *opaque);
    /* On the loaded copy (state), before anything live changes; live is the running device, for
     * what the stream must agree with (read-only registers): 0, or -EINVAL with *why set to a
     * few words (an index out of range, a size the device cannot have). May be NULL. */
    int (*check)(const void *live, const void *state, const char **why);
    /* After every section is in: re-derive what the stream does not carry (interrupt lines,
     * BAR mappings, timers). May be NULL. */
    void (*post_load)(void *opaque);
    /* A section a stream may lack: streams of a qkvm from before this device had state. The
     * device then keeps the state it has (its reset state on a destination). */
    bool optional;
};

#define VMS_FIELD(st, f, t, n, v) { #f, offsetof(st, f), t, n, v, NULL, 0, 0 }
#define VMSTATE_U8(st, f)          VMS_FIELD(st, f, VMS_U8, 1, 0)
#define VMSTATE_U16(st, f)         VMS_FIELD(st, f, VMS_U16, 1, 0)
#define VMSTATE_U32(st, f)         VMS_FIELD(st, f, VMS_U32, 1, 0)
#define VMSTATE_U64(st, f)         VMS_FIELD(st, f, VMS_U64, 1, 0)
#define VMSTATE_BOOL(st, f)        VMS_FIELD(st, f, VMS_BOOL, 1, 0)
#define VMSTATE_U8_ARRAY(st, f, n)  VMS_FIELD(st, f, VMS_U8, n, 0)
#define VMSTATE_U32_ARRAY(st, f, n) VMS_FIELD(st, f, VMS_U32, n, 0)
#define VMSTATE_U64_ARRAY(st, f, n) VMS_FIELD(st, f, VMS_U64, n, 0)
#define VMSTATE_STRUCT_ARRAY(st, f, n, sub, elt) { #f, offsetof(st, f), VMS_STRUCT, n, 0, sub, sizeof(elt), 0 }
/* f: uint8_t f[max]; lenf: the uint32_t field, saved before f, that says how many bytes of f count */
#define VMSTATE_VBUFFER(st, f, lenf, max) { #f, offsetof(st, f), VMS_VBUF, max, 0, NULL, 0, offsetof(st, lenf) }
#define VMSTATE_END { NULL, 0, 0, 0, 0, NULL, 0, 0 }

/* An int field (a signed level, an index kept as int) is saved by its size. */
#define VMSTATE_INT(st, f) VMS_FIELD(st, f, sizeof(((st *)0)->f) == 8 ? VMS_U64 : VMS_U32, 1, 0)

struct vmstate_entry {
    const struct vmstate_desc *desc;
    uint32_t instance;                  /* tells apart devices of one kind (CPU number, PCI slot) */
    void *opaque;
    struct vmstate_entry *next;
};

/* Adds a device's state to what m saves and loads. (name, instance) must be new: -EEXIST.
 * 0 or -ENOMEM. The entry lives until machine_destroy. */
int vmstate_register(struct machine *m, const struct vmstate_desc *d, uint32_t instance, void *opaque);
/* Drops every section registered with opaque: a part destroyed before its machine. */
void vmstate_unregister(struct machine *m, const void *opaque);
void vmstate_unregister_all(struct machine *m);

/* Marks m as one whose state cannot be saved whole (a device with host state no stream carries):
 * migration and savevm are refused with reason ("ivshmem: its shared memory is the host's"), a
 * static string. The first reason given is kept. */
void vmstate_add_blocker(struct machine *m, const char *reason);
/* The reason m cannot be saved, or NULL when every device's state goes into the stream. */
const char *vmstate_blocker(const struct machine *m);

/* Writes every registered device's state; *buf is malloc'd, the caller frees it. 0 or -errno. */
int vmstate_save(struct machine *m, uint8_t **buf, size_t *len);
/* Reads a stream from vmstate_save into m's devices. All or nothing: the whole stream is checked
 * (format, checksum, every section known with a version this qkvm reads, every size and value
 * valid, every registered device present) before any device changes. 0, or -EINVAL / -ENOENT /
 * -EPROTONOSUPPORT with why set to one line saying what is wrong (why may be NULL). */
int vmstate_load(struct machine *m, const uint8_t *buf, size_t len, char *why, size_t why_len);
/* The stream's checksum: CRC-32 (IEEE 802.3, zlib's crc32) of n bytes at p. For tools and
 * tests that build streams. */
uint32_t vmstate_crc32(const uint8_t *p, size_t n);

#endif
