#include <errno.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "block/compress.h"

long compress_buffer(int type, const void *in, size_t inlen, void *out, size_t outcap)
{
    if (type == COMPRESS_ZSTD) {
        size_t n = ZSTD_compress(out, outcap, in, inlen, 3);
        if (ZSTD_isError(n))
            return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
        return (long)n;
    }
    z_stream z = { 0 };
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)outcap;
    int r = deflate(&z, Z_FINISH);
    long n = (long)(outcap - z.avail_out);
    deflateEnd(&z);
    if (r != Z_STREAM_END)
        return r == Z_OK || r == Z_BUF_ERROR ? -ENOSPC : -EIO;
    return n;
}

int decompress_buffer(int type, const void *in, size_t inlen, void *out, size_t outlen)
{
    if (type == COMPRESS_ZSTD) {
        ZSTD_DCtx *d = ZSTD_createDCtx();
        if (!d)
            return -ENOMEM;
        ZSTD_inBuffer ib = { in, inlen, 0 };
        ZSTD_outBuffer ob = { out, outlen, 0 };
        int ret = -EIO;
        /* The stream may stop short of inlen: the rest of the last sector is not ours. */
        while (ob.pos < ob.size) {
            size_t r = ZSTD_decompressStream(d, &ob, &ib);
            if (ZSTD_isError(r))
                break;
            if (ob.pos == ob.size) {
                ret = 0;
                break;
            }
            if (r == 0 || ib.pos == ib.size)
                break;
        }
        ZSTD_freeDCtx(d);
        return ret;
    }
    z_stream z = { 0 };
    if (inflateInit2(&z, -12) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)outlen;
    int r = inflate(&z, Z_FINISH);
    size_t got = outlen - z.avail_out;
    inflateEnd(&z);
    if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && got == outlen)
        return 0;
    return -EIO;
}
