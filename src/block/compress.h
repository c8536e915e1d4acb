/* Compression of qcow2 clusters: raw deflate (window bits 12, as QEMU writes) and zstd. */
#ifndef QKVM_BLOCK_COMPRESS_H
#define QKVM_BLOCK_COMPRESS_H
#include <stddef.h>

#define COMPRESS_ZLIB 0
#define COMPRESS_ZSTD 1

/* Returns the compressed size, or -ENOSPC if it does not fit in outcap, or -errno. */
long compress_buffer(int type, const void *in, size_t inlen, void *out, size_t outcap);
/* Fills out with exactly outlen bytes; input may have trailing garbage. 0 or -EIO. */
int decompress_buffer(int type, const void *in, size_t inlen, void *out, size_t outlen);

#endif
