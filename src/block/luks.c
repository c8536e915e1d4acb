/* LUKS1 (cryptsetup's on-disk format, as QEMU embeds it in qcow2): key slots sealed with
 * PBKDF2 and the anti-forensic splitter, payload in AES-XTS with plain64 sector IVs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/dynlib.h"
#include "block/luks.h"
#include "block/qcow2/qcow2.h"

#define LUKS_HDR 592
#define LUKS_SLOTS 8
#define LUKS_ACTIVE 0x00AC71F3u
#define LUKS_INACTIVE 0x0000DEADu
#define LUKS_STRIPES 4000
#define LUKS_ALIGN_SECTORS 8      /* 4096-byte alignment of key material */
#define LUKS_MIN_ITERS 1000

struct luks_slot {
    uint32_t active, iters, key_offset, stripes;
    uint8_t salt[32];
};

struct luks {
    char cipher[33], mode[33], hash[33];
    uint32_t payload, key_bytes, mk_iters;
    uint8_t mk_digest[20], mk_salt[32];
    char uuid[41];
    struct luks_slot slot[LUKS_SLOTS];
    uint8_t key[64];
    bool unlocked;
    const EVP_CIPHER *cipher_evp;
    EVP_CIPHER_CTX *enc, *dec;
};

static const EVP_MD *md_for(const char *h)
{
    if (!strcmp(h, "sha1")) return crypto_fn.EVP_sha1();
    if (!strcmp(h, "sha256")) return crypto_fn.EVP_sha256();
    if (!strcmp(h, "sha512")) return crypto_fn.EVP_sha512();
    if (!strcmp(h, "sha384")) return crypto_fn.EVP_sha384();
    return NULL;
}

static const EVP_CIPHER *cipher_for(const char *c, const char *mode, uint32_t key_bytes)
{
    if (strcmp(c, "aes"))
        return NULL;
    if (!strcmp(mode, "xts-plain64") || !strcmp(mode, "xts-plain")) {
        if (key_bytes == 64) return crypto_fn.EVP_aes_256_xts();
        if (key_bytes == 32) return crypto_fn.EVP_aes_128_xts();
    }
    return NULL;
}

/* Sector-by-sector XTS with plain64 IVs (the sector number, little-endian). */
static int xts(const EVP_CIPHER *c, const uint8_t *key, bool enc, uint64_t sector, uint8_t *buf,
               size_t len, EVP_CIPHER_CTX *ctx)
{
    bool own = !ctx;
    if (own && !(ctx = crypto_fn.EVP_CIPHER_CTX_new()))
        return -ENOMEM;
    int r = 0;
    if (own && !crypto_fn.EVP_CipherInit_ex(ctx, c, NULL, key, NULL, enc))
        r = -EIO;
    for (size_t p = 0; !r && p < len; p += LUKS_SECTOR, sector++) {
        uint8_t iv[16] = { 0 };
        for (int i = 0; i < 8; i++)
            iv[i] = (uint8_t)(sector >> (8 * i));
        int outl;
        if (!crypto_fn.EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, enc) ||
            !crypto_fn.EVP_CipherUpdate(ctx, buf + p, &outl, buf + p, LUKS_SECTOR))
            r = -EIO;
    }
    if (own)
        crypto_fn.EVP_CIPHER_CTX_free(ctx);
    return r;
}

/* The anti-forensic diffusion: each digest-sized piece replaced by H(index || piece). */
static void diffuse(const EVP_MD *md, uint8_t *d, size_t len)
{
    size_t ds = crypto_fn.EVP_MD_get_size(md);
    uint8_t out[EVP_MAX_MD_SIZE];
    for (size_t i = 0, j = 0; i < len; i += ds, j++) {
        size_t n = len - i < ds ? len - i : ds;
        uint8_t be[4] = { (uint8_t)(j >> 24), (uint8_t)(j >> 16), (uint8_t)(j >> 8), (uint8_t)j };
        EVP_MD_CTX *c = crypto_fn.EVP_MD_CTX_new();
        unsigned ol;
        crypto_fn.EVP_DigestInit_ex(c, md, NULL);
        crypto_fn.EVP_DigestUpdate(c, be, 4);
        crypto_fn.EVP_DigestUpdate(c, d + i, n);
        crypto_fn.EVP_DigestFinal_ex(c, out, &ol);
        crypto_fn.EVP_MD_CTX_free(c);
        memcpy(d + i, out, n);
    }
}

static void af_merge(const EVP_MD *md, const uint8_t *src, uint32_t stripes, size_t kl,
                     uint8_t *key)
{
    uint8_t d[64] = { 0 };
    for (uint32_t i = 0; i + 1 < stripes; i++) {
        for (size_t k = 0; k < kl; k++)
            d[k] ^= src[i * kl + k];
        diffuse(md, d, kl);
    }
    for (size_t k = 0; k < kl; k++)
        key[k] = d[k] ^ src[(size_t)(stripes - 1) * kl + k];
}

static int af_split(const EVP_MD *md, const uint8_t *key, uint32_t stripes, size_t kl,
                    uint8_t *dst)
{
    uint8_t d[64] = { 0 };
    if (crypto_fn.RAND_bytes(dst, (int)((stripes - 1) * kl)) != 1)
        return -EIO;
    for (uint32_t i = 0; i + 1 < stripes; i++) {
        for (size_t k = 0; k < kl; k++)
            d[k] ^= dst[i * kl + k];
        diffuse(md, d, kl);
    }
    for (size_t k = 0; k < kl; k++)
        dst[(size_t)(stripes - 1) * kl + k] = d[k] ^ key[k];
    return 0;
}

static int pbkdf2(const EVP_MD *md, const void *pw, size_t pl, const uint8_t *salt, size_t sl,
                  uint32_t iters, uint8_t *out, size_t ol)
{
    return crypto_fn.PKCS5_PBKDF2_HMAC(pw, (int)pl, salt, (int)sl, (int)iters, md, (int)ol, out) == 1
               ? 0 : -EIO;
}

static int set_key(struct luks *l)
{
    l->enc = crypto_fn.EVP_CIPHER_CTX_new();
    l->dec = crypto_fn.EVP_CIPHER_CTX_new();
    if (!l->enc || !l->dec || !crypto_fn.EVP_CipherInit_ex(l->enc, l->cipher_evp, NULL, l->key, NULL, 1) ||
        !crypto_fn.EVP_CipherInit_ex(l->dec, l->cipher_evp, NULL, l->key, NULL, 0))
        return -EIO;
    l->unlocked = true;
    return 0;
}

static void str_field(char *dst, const uint8_t *src, size_t n)
{
    memcpy(dst, src, n);
    dst[n] = 0;
}

int luks_open(struct bfile *f, uint64_t off, uint64_t len, const char *secret, size_t slen,
              struct luks **out, char *err)
{
    uint8_t h[LUKS_HDR];
    *out = NULL;
    int r = dynlib_load_crypto(err);
    if (r)
        return r;
    if (len < LUKS_HDR)
        return block_seterr(err, -EINVAL, "LUKS header too short");
    r = bfile_pread(f, off, h, sizeof(h));
    if (r)
        return block_seterr(err, r, "Could not read the LUKS header");
    if (memcmp(h, "LUKS\xba\xbe", 6) || be16_get(h + 6) != 1)
        return block_seterr(err, -EINVAL, "Volume is not in LUKS format (version 1)");
    struct luks *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    str_field(l->cipher, h + 8, 32);
    str_field(l->mode, h + 40, 32);
    str_field(l->hash, h + 72, 32);
    l->payload = be32_get(h + 104);
    l->key_bytes = be32_get(h + 108);
    memcpy(l->mk_digest, h + 112, 20);
    memcpy(l->mk_salt, h + 132, 32);
    l->mk_iters = be32_get(h + 164);
    str_field(l->uuid, h + 168, 40);
    for (int i = 0; i < LUKS_SLOTS; i++) {
        const uint8_t *s = h + 208 + i * 48;
        l->slot[i].active = be32_get(s);
        l->slot[i].iters = be32_get(s + 4);
        memcpy(l->slot[i].salt, s + 8, 32);
        l->slot[i].key_offset = be32_get(s + 40);
        l->slot[i].stripes = be32_get(s + 44);
    }
    const EVP_MD *md = md_for(l->hash);
    l->cipher_evp = cipher_for(l->cipher, l->mode, l->key_bytes);
    if (!md || !l->cipher_evp || l->key_bytes > 64) {
        r = block_seterr(err, -ENOTSUP, "Unsupported LUKS cipher %s-%s (%u-byte key) or hash %s",
                         l->cipher, l->mode, l->key_bytes, l->hash);
        goto fail;
    }
    if (!secret) {
        *out = l;
        return 0;
    }
    uint8_t *mat = NULL;
    for (int i = 0; i < LUKS_SLOTS; i++) {
        struct luks_slot *s = &l->slot[i];
        if (s->active != LUKS_ACTIVE)
            continue;
        uint64_t ml = (uint64_t)l->key_bytes * s->stripes;
        uint64_t mo = (uint64_t)s->key_offset * LUKS_SECTOR;
        if (!s->stripes || s->stripes > 100000 || !s->iters || mo > len || ml > len - mo) {
            r = block_seterr(err, -EINVAL, "LUKS key slot %d is invalid", i);
            goto fail;
        }
        uint64_t mla = (ml + LUKS_SECTOR - 1) & ~(uint64_t)(LUKS_SECTOR - 1);
        free(mat);
        mat = malloc(mla);
        uint8_t sk[64], mk[64], dig[20];
        if (!mat || (r = bfile_pread(f, off + mo, mat, mla)) ||
            (r = pbkdf2(md, secret, slen, s->salt, 32, s->iters, sk, l->key_bytes)) ||
            (r = xts(l->cipher_evp, sk, false, 0, mat, mla, NULL))) {
            free(mat);
            r = block_seterr(err, r ? r : -ENOMEM, "Could not read LUKS key slot %d", i);
            goto fail;
        }
        af_merge(md, mat, s->stripes, l->key_bytes, mk);
        if (pbkdf2(md, mk, l->key_bytes, l->mk_salt, 32, l->mk_iters, dig, 20) == 0 &&
            !memcmp(dig, l->mk_digest, 20)) {
            memcpy(l->key, mk, l->key_bytes);
            free(mat);
            if ((r = set_key(l)))
                goto fail;
            *out = l;
            return 0;
        }
    }
    free(mat);
    r = block_seterr(err, -EPERM, "Invalid password, cannot unlock any keyslot");
fail:
    luks_free(l);
    return r;
}

uint64_t luks_header_size(void)
{
    uint64_t ml = ((uint64_t)64 * LUKS_STRIPES + LUKS_SECTOR - 1) / LUKS_SECTOR;
    ml = (ml + LUKS_ALIGN_SECTORS - 1) / LUKS_ALIGN_SECTORS * LUKS_ALIGN_SECTORS;
    return (LUKS_ALIGN_SECTORS + LUKS_SLOTS * ml) * LUKS_SECTOR;
}

/* PBKDF2 iterations that take about ms milliseconds here. */
static uint32_t iters_for(const EVP_MD *md, uint64_t ms)
{
    uint8_t out[64], salt[32] = { 0 };
    uint32_t n = 10000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pbkdf2(md, "bench", 5, salt, 32, n, out, 32);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double took = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    if (took <= 0)
        took = 0.001;
    double it = n / took * (double)ms;
    return it > 2e9 ? 2000000000u : (uint32_t)it;
}

int luks_create(struct bfile *f, uint64_t off, const char *secret, size_t slen,
                const char *cipher, const char *mode, const char *ivgen, const char *hash,
                uint64_t iter_time_ms, struct luks **out, uint64_t *hdr_len, char *err)
{
    if (!cipher) cipher = "aes-256";
    if (!mode) mode = "xts";
    if (!ivgen) ivgen = "plain64";
    if (!hash) hash = "sha256";
    if (!iter_time_ms) iter_time_ms = 2000;
    *out = NULL;
    int r = dynlib_load_crypto(err);
    if (r)
        return r;
    uint32_t kb;
    if (!strcmp(cipher, "aes-256"))
        kb = 64;
    else if (!strcmp(cipher, "aes-128"))
        kb = 32;
    else
        return block_seterr(err, -ENOTSUP, "Cipher '%s' is not supported", cipher);
    if (strcmp(mode, "xts") || (strcmp(ivgen, "plain64") && strcmp(ivgen, "plain")))
        return block_seterr(err, -ENOTSUP, "Only xts with plain64 IVs is supported");
    const EVP_MD *md = md_for(hash);
    if (!md)
        return block_seterr(err, -ENOTSUP, "Hash '%s' is not supported", hash);
    struct luks *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    strcpy(l->cipher, "aes");
    snprintf(l->mode, sizeof(l->mode), "xts-%s", ivgen);
    snprintf(l->hash, sizeof(l->hash), "%s", hash);
    l->key_bytes = kb;
    l->cipher_evp = cipher_for(l->cipher, l->mode, kb);
    uint8_t rnd[16];
    r = -EIO;
    if (crypto_fn.RAND_bytes(l->key, (int)kb) != 1 || crypto_fn.RAND_bytes(l->mk_salt, 32) != 1 ||
        crypto_fn.RAND_bytes(rnd, 16) != 1)
        goto fail;
    rnd[6] = (rnd[6] & 0x0f) | 0x40;
    rnd[8] = (rnd[8] & 0x3f) | 0x80;
    snprintf(l->uuid, sizeof(l->uuid), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
             rnd[7], rnd[8], rnd[9], rnd[10], rnd[11], rnd[12], rnd[13], rnd[14], rnd[15]);
    uint32_t ips_ms = iters_for(md, iter_time_ms);
    l->mk_iters = ips_ms / 8 > LUKS_MIN_ITERS ? ips_ms / 8 : LUKS_MIN_ITERS;
    if ((r = pbkdf2(md, l->key, kb, l->mk_salt, 32, l->mk_iters, l->mk_digest, 20)))
        goto fail;
    uint64_t ml = ((uint64_t)kb * LUKS_STRIPES + LUKS_SECTOR - 1) / LUKS_SECTOR;
    ml = (ml + LUKS_ALIGN_SECTORS - 1) / LUKS_ALIGN_SECTORS * LUKS_ALIGN_SECTORS;
    for (int i = 0; i < LUKS_SLOTS; i++) {
        l->slot[i].active = LUKS_INACTIVE;
        l->slot[i].key_offset = (uint32_t)(LUKS_ALIGN_SECTORS + i * ml);
        l->slot[i].stripes = LUKS_STRIPES;
    }
    l->payload = (uint32_t)(LUKS_ALIGN_SECTORS + LUKS_SLOTS * ml);
    struct luks_slot *s = &l->slot[0];
    s->active = LUKS_ACTIVE;
    s->iters = ips_ms > LUKS_MIN_ITERS ? ips_ms : LUKS_MIN_ITERS;
    if (crypto_fn.RAND_bytes(s->salt, 32) != 1) {
        r = -EIO;
        goto fail;
    }
    uint8_t sk[64];
    uint64_t mlen = ml * LUKS_SECTOR;
    uint8_t *mat = calloc(1, mlen);
    if (!mat) {
        r = -ENOMEM;
        goto fail;
    }
    if ((r = pbkdf2(md, secret, slen, s->salt, 32, s->iters, sk, kb)) ||
        (r = af_split(md, l->key, LUKS_STRIPES, kb, mat)) ||
        (r = xts(l->cipher_evp, sk, true, 0, mat, mlen, NULL)) ||
        (r = bfile_pwrite(f, off + (uint64_t)s->key_offset * LUKS_SECTOR, mat, mlen))) {
        free(mat);
        goto fail;
    }
    free(mat);
    uint8_t h[LUKS_HDR] = { 0 };
    memcpy(h, "LUKS\xba\xbe", 6);
    be16_put(h + 6, 1);
    memcpy(h + 8, l->cipher, strlen(l->cipher));
    memcpy(h + 40, l->mode, strlen(l->mode));
    memcpy(h + 72, l->hash, strlen(l->hash));
    be32_put(h + 104, l->payload);
    be32_put(h + 108, kb);
    memcpy(h + 112, l->mk_digest, 20);
    memcpy(h + 132, l->mk_salt, 32);
    be32_put(h + 164, l->mk_iters);
    memcpy(h + 168, l->uuid, strlen(l->uuid));
    for (int i = 0; i < LUKS_SLOTS; i++) {
        uint8_t *p = h + 208 + i * 48;
        be32_put(p, l->slot[i].active);
        be32_put(p + 4, l->slot[i].iters);
        memcpy(p + 8, l->slot[i].salt, 32);
        be32_put(p + 40, l->slot[i].key_offset);
        be32_put(p + 44, l->slot[i].stripes);
    }
    if ((r = bfile_pwrite(f, off, h, sizeof(h))) || (r = set_key(l)))
        goto fail;
    *hdr_len = (uint64_t)l->payload * LUKS_SECTOR;
    *out = l;
    return 0;
fail:
    luks_free(l);
    return block_seterr(err, r, "Could not create the LUKS header: %s", strerror(-r));
}

void luks_free(struct luks *l)
{
    if (!l)
        return;
    if (l->enc)
        crypto_fn.EVP_CIPHER_CTX_free(l->enc);
    if (l->dec)
        crypto_fn.EVP_CIPHER_CTX_free(l->dec);
    memset(l->key, 0, sizeof(l->key));
    free(l);
}

bool luks_unlocked(const struct luks *l)
{
    return l && l->unlocked;
}

int luks_encrypt(struct luks *l, uint64_t sector, uint8_t *buf, size_t len)
{
    if (!luks_unlocked(l) || len % LUKS_SECTOR)
        return -EINVAL;
    return xts(l->cipher_evp, l->key, true, sector, buf, len, l->enc);
}

int luks_decrypt(struct luks *l, uint64_t sector, uint8_t *buf, size_t len)
{
    if (!luks_unlocked(l) || len % LUKS_SECTOR)
        return -EINVAL;
    return xts(l->cipher_evp, l->key, false, sector, buf, len, l->dec);
}

void luks_get_info(const struct luks *l, struct luks_info *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->cipher_alg, sizeof(o->cipher_alg), "%s-%u", l->cipher,
             l->key_bytes * 8 / (strncmp(l->mode, "xts", 3) ? 1 : 2));
    const char *dash = strchr(l->mode, '-');
    snprintf(o->cipher_mode, sizeof(o->cipher_mode), "%.*s",
             dash ? (int)(dash - l->mode) : (int)strlen(l->mode), l->mode);
    snprintf(o->ivgen_alg, sizeof(o->ivgen_alg), "%s", dash ? dash + 1 : "plain64");
    snprintf(o->hash_alg, sizeof(o->hash_alg), "%s", l->hash);
    snprintf(o->uuid, sizeof(o->uuid), "%s", l->uuid);
    o->payload_offset = (uint64_t)l->payload * LUKS_SECTOR;
    o->master_key_iters = l->mk_iters;
    for (int i = 0; i < 8; i++) {
        o->slots[i].active = l->slot[i].active == LUKS_ACTIVE;
        o->slots[i].iters = l->slot[i].iters;
        o->slots[i].stripes = l->slot[i].stripes;
        o->slots[i].key_offset = l->slot[i].key_offset * LUKS_SECTOR;
    }
}
