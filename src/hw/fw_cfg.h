/* QEMU's firmware configuration device (docs/specs/fw_cfg.rst in QEMU): how firmware such as
 * SeaBIOS learns the machine's RAM, CPUs, boot order, e820 map and files. On x86: the selector at
 * port 0x510 (16-bit write), the data byte at 0x511, the DMA address at 0x514-0x51b (big-endian).
 * Every DMA access to guest memory goes through machine_read/machine_dma_write; a bad address sets
 * the error bit in the guest's control word, as QEMU does. Items are copied in; the guest can
 * read them and never write them. */
#ifndef QKVM_HW_FW_CFG_H
#define QKVM_HW_FW_CFG_H
#include <stddef.h>
#include <stdint.h>

struct machine;
struct fw_cfg;

#define FW_CFG_PORT_SEL      0x510
#define FW_CFG_PORT_DATA     0x511
#define FW_CFG_PORT_DMA      0x514

/* selector keys (QEMU's include/standard-headers/linux/qemu_fw_cfg.h) */
#define FW_CFG_SIGNATURE     0x00
#define FW_CFG_ID            0x01
#define FW_CFG_UUID          0x02
#define FW_CFG_RAM_SIZE      0x03
#define FW_CFG_NOGRAPHIC     0x04
#define FW_CFG_NB_CPUS       0x05
#define FW_CFG_MACHINE_ID    0x06
#define FW_CFG_BOOT_MENU     0x0e
#define FW_CFG_MAX_CPUS      0x0f
#define FW_CFG_FILE_DIR      0x19
#define FW_CFG_FILE_FIRST    0x20
#define FW_CFG_ARCH_LOCAL    0x8000
#define FW_CFG_E820_TABLE    (FW_CFG_ARCH_LOCAL + 3)
#define FW_CFG_INVALID       0xffff

#define FW_CFG_VERSION       0x01   /* FW_CFG_ID: the selector/data interface */
#define FW_CFG_VERSION_DMA   0x02   /* FW_CFG_ID: and DMA */

/* DMA control word bits (big-endian in guest memory) */
#define FW_CFG_DMA_ERROR     0x01
#define FW_CFG_DMA_READ      0x02
#define FW_CFG_DMA_SKIP      0x04
#define FW_CFG_DMA_SELECT    0x08
#define FW_CFG_DMA_WRITE     0x10
/* what reading the DMA address register returns: "QEMU CFG" */
#define FW_CFG_DMA_SIGNATURE 0x51454d5520434647ull

#define FW_CFG_MAX_FILES     64
#define FW_CFG_FILE_NAME_MAX 56   /* including the terminating zero */

/* Creates the device, registers its ports on m->pio and sets m->fw_cfg. The signature and ID
 * items exist from the start. 0 or -errno. */
int fw_cfg_create(struct machine *m);
/* Sets item key (below FW_CFG_FILE_FIRST, or arch-local) to a copy of len bytes, replacing what
 * was there. 0, -EINVAL for a key out of range, -ENOMEM. */
int fw_cfg_add_bytes(struct fw_cfg *f, uint16_t key, const void *data, size_t len);
/* Little-endian integers, as QEMU's fw_cfg_add_i16/i32/i64. */
int fw_cfg_add_i16(struct fw_cfg *f, uint16_t key, uint16_t v);
int fw_cfg_add_i32(struct fw_cfg *f, uint16_t key, uint32_t v);
int fw_cfg_add_i64(struct fw_cfg *f, uint16_t key, uint64_t v);
/* A named file: gets the next free selector from FW_CFG_FILE_FIRST and a place in the directory,
 * which is kept sorted by name as QEMU's is. 0, -EEXIST, -ENAMETOOLONG, -ENOSPC, -ENOMEM. */
int fw_cfg_add_file(struct fw_cfg *f, const char *name, const void *data, size_t len);

#endif
