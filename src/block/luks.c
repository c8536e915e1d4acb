/* placeholder until LUKS lands */
#include <errno.h>
#include "block/luks.h"
int luks_open(struct bfile *f, uint64_t off, uint64_t len, const char *secret, size_t slen,
              struct luks **out, char *err)
{
    (void)f; (void)off; (void)len; (void)secret; (void)slen; *out = NULL;
    return block_seterr(err, -ENOTSUP, "LUKS not supported yet");
}
int luks_create(struct bfile *f, uint64_t off, const char *secret, size_t slen,
                const char *cipher, const char *mode, const char *ivgen, const char *hash,
                uint64_t iter_time_ms, struct luks **out, uint64_t *hdr_len, char *err)
{
    (void)f; (void)off; (void)secret; (void)slen; (void)cipher; (void)mode; (void)ivgen;
    (void)hash; (void)iter_time_ms; (void)hdr_len; *out = NULL;
    return block_seterr(err, -ENOTSUP, "LUKS not supported yet");
}
uint64_t luks_header_size(void) { return 2u << 20; }
void luks_free(struct luks *l) { (void)l; }
bool luks_unlocked(const struct luks *l) { (void)l; return false; }
int luks_encrypt(struct luks *l, uint64_t sector, uint8_t *buf, size_t len)
{ (void)l; (void)sector; (void)buf; (void)len; return -ENOTSUP; }
int luks_decrypt(struct luks *l, uint64_t sector, uint8_t *buf, size_t len)
{ (void)l; (void)sector; (void)buf; (void)len; return -ENOTSUP; }
void luks_get_info(const struct luks *l, struct luks_info *out) { (void)l; (void)out; }
