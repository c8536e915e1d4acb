#include <errno.h>

#include "block/compress.h"
#include "block/dynlib.h"

/* The library for type, loaded at the first compressed cluster (a missing one is logged once). */
static int load(int type)
{
    return type == COMPRESS_ZSTD ? dynlib_load_zstd(NULL) : dynlib_load_zlib(NULL);
}

long compress_buffer(int type, const void *in, size_t inlen, void *out, size_t outcap)
{
    int r = load(type);
    if (r)
        return r;
    if (type == COMPRESS_ZSTD) {
        size_t n = zstd_fn.ZSTD_compress(out, outcap, in, inlen, 3);
        if (zstd_fn.ZSTD_isError(n))
            return zstd_fn.ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
        return (long)n;
    }
    z_stream z = { 0 };
    if (zlib_fn.deflateInit2_(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY,
                               ZLIB_VERSION, (int)sizeof(z)) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)outcap;
    r = zlib_fn.deflate(&z, Z_FINISH);
    long n = (long)(outcap - z.avail_out);
    zlib_fn.deflateEnd(&z);
    if (r != Z_STREAM_END)
        return r == Z_OK || r == Z_BUF_ERROR ? -ENOSPC : -EIO;
    return n;
}

int decompress_buffer(int type, const void *in, size_t inlen, void *out, size_t outlen)
{
    int r = load(type);
    if (r)
        return r;
    if (type == COMPRESS_ZSTD) {
        ZSTD_DCtx *d = zstd_fn.ZSTD_createDCtx();
        if (!d)
            return -ENOMEM;
        ZSTD_inBuffer ib = { in, inlen, 0 };
        ZSTD_outBuffer ob = { out, outlen, 0 };
        int ret = -EIO;
        /* The stream may stop short of inlen: the rest of the last sector is not ours. */
        while (ob.pos < ob.size) {
            size_t r = zstd_fn.ZSTD_decompressStream(d, &ob, &ib);
            if (zstd_fn.ZSTD_isError(r))
                break;
            if (ob.pos == ob.size) {
                ret = 0;
                break;
            }
            if (r == 0 || ib.pos == ib.size)
                break;
        }
        zstd_fn.ZSTD_freeDCtx(d);
        return ret;
    }
    z_stream z = { 0 };
    if (zlib_fn.inflateInit2_(&z, -12, ZLIB_VERSION, (int)sizeof(z)) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)outlen;
    r = zlib_fn.inflate(&z, Z_FINISH);
    size_t got = outlen - z.avail_out;
    zlib_fn.inflateEnd(&z);
    if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && got == outlen)
        return 0;
    return -EIO;
}
