/* zlib, zstd and libcrypto, loaded on first use. A VM that opens no compressed or encrypted image
 * never maps them: together they cost more resident memory than the rest of qkvm (docs/bench.md).
 * Each library's functions are called through a table, filled once per process by
 * dynlib_load_NAME(); the table is only valid after that returned 0. */
#ifndef QKVM_BLOCK_DYNLIB_H
#define QKVM_BLOCK_DYNLIB_H
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* The functions used from each library; the headers give their types. */
#define DYNLIB_ZLIB(X) X(deflateInit2_) X(deflate) X(deflateEnd) X(inflateInit2_) X(inflate) \
    X(inflateEnd) X(crc32)
#define DYNLIB_ZSTD(X) X(ZSTD_compress) X(ZSTD_isError) X(ZSTD_getErrorCode) \
    X(ZSTD_createDCtx) X(ZSTD_decompressStream) X(ZSTD_freeDCtx)
#define DYNLIB_CRYPTO(X) X(EVP_sha1) X(EVP_sha256) X(EVP_sha384) X(EVP_sha512) \
    X(EVP_aes_128_xts) X(EVP_aes_256_xts) X(EVP_CIPHER_CTX_new) X(EVP_CIPHER_CTX_free) \
    X(EVP_CipherInit_ex) X(EVP_CipherUpdate) X(EVP_MD_get_size) X(EVP_MD_CTX_new) \
    X(EVP_MD_CTX_free) X(EVP_DigestInit_ex) X(EVP_DigestUpdate) X(EVP_DigestFinal_ex) \
    X(RAND_bytes) X(PKCS5_PBKDF2_HMAC)

#define DYNLIB_FIELD(name) __typeof__(name) *name;
struct dynlib_zlib { DYNLIB_ZLIB(DYNLIB_FIELD) };
struct dynlib_zstd { DYNLIB_ZSTD(DYNLIB_FIELD) };
struct dynlib_crypto { DYNLIB_CRYPTO(DYNLIB_FIELD) };
#undef DYNLIB_FIELD

extern struct dynlib_zlib zlib_fn;
extern struct dynlib_zstd zstd_fn;
extern struct dynlib_crypto crypto_fn;

/* Loads the library and fills its table, once per process (thread-safe; later calls return the
 * first outcome). -ELIBACC if it is missing or lacks a function; the reason, naming the file and
 * the Debian package, goes to err (BLOCK_ERR_MAX bytes), or when err is NULL is logged once. */
int dynlib_load_zlib(char *err);
int dynlib_load_zstd(char *err);
int dynlib_load_crypto(char *err);

#endif
