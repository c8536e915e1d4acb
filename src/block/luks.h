/* LUKS1 as QEMU stores it inside qcow2 (and as cryptsetup defines it): a header with key slots
 * (PBKDF2 + anti-forensic split), and sector encryption of the payload. */
#ifndef QKVM_BLOCK_LUKS_H
#define QKVM_BLOCK_LUKS_H
#include <stddef.h>
#include <stdint.h>

#include "block/driver.h"

#define LUKS_SECTOR 512

struct luks;

/* Reads the header at off in f. With a secret, unlocks a key slot (-EPERM: wrong secret);
 * without one, only the header is parsed (no encryption possible). */
int luks_open(struct bfile *f, uint64_t off, uint64_t len, const char *secret, size_t slen,
              struct luks **out, char *err);
/* Writes a new header at off (space: luks_header_size()) with key slot 0 for the secret. */
int luks_create(struct bfile *f, uint64_t off, const char *secret, size_t slen,
                const char *cipher, const char *mode, const char *ivgen, const char *hash,
                uint64_t iter_time_ms, struct luks **out, uint64_t *hdr_len, char *err);
uint64_t luks_header_size(void);
void luks_free(struct luks *l);
bool luks_unlocked(const struct luks *l);
/* In place; len a multiple of 512; sector = the first sector's number (IV input). */
int luks_encrypt(struct luks *l, uint64_t sector, uint8_t *buf, size_t len);
int luks_decrypt(struct luks *l, uint64_t sector, uint8_t *buf, size_t len);

struct luks_slot_info {
    bool active;
    uint32_t iters, stripes, key_offset;
};
struct luks_info {
    char cipher_alg[48], cipher_mode[48], ivgen_alg[48], hash_alg[48], ivgen_hash[48];
    char uuid[48];
    uint64_t payload_offset;
    uint32_t master_key_iters;
    struct luks_slot_info slots[8];
};
void luks_get_info(const struct luks *l, struct luks_info *out);

#endif
