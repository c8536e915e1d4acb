/* qcow2: opening (header, extensions, validation of every size and offset), the header
 * rewrite, flush and close, and the driver table. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/luks.h"
#include "block/qcow2/qcow2.h"

static const struct { uint8_t type, bit; const char *name; } feature_names[] = {
    { 0, 0, "dirty bit" }, { 0, 1, "corrupt bit" }, { 0, 2, "external data file" },
    { 0, 3, "compression type" }, { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" }, { 2, 0, "bitmaps" }, { 2, 1, "raw external data" },
};

int qcow2_validate_table(struct qcow2_state *s, uint64_t off, uint64_t entries,
                         unsigned entry_bytes, uint64_t max_bytes, const char *what, char *err)
{
    if (entries > max_bytes / entry_bytes)
        return block_seterr(err, -EFBIG, "%s too large (%" PRIu64 " entries)", what, entries);
    uint64_t bytes = entries * entry_bytes;
    if (!bytes)
        return 0;
    if (off & (s->cluster_size - 1))
        return block_seterr(err, -EINVAL, "%s offset 0x%" PRIx64 " is not cluster-aligned",
                            what, off);
    if (off < s->cluster_size)
        return block_seterr(err, -EINVAL, "%s at 0x%" PRIx64 " overlaps the image header",
                            what, off);
    int64_t fsz = bfile_size(s->f);
    if (off > INT64_MAX - bytes || (fsz >= 0 && off + bytes > (uint64_t)fsz))
        return block_seterr(err, -EINVAL,
                            "%s at 0x%" PRIx64 " (%" PRIu64 " bytes) lies beyond the end of "
                            "the file", what, off, bytes);
    return 0;
}

uint64_t qcow2_l1_entries_for(struct qcow2_state *s, uint64_t size)
{
    uint64_t per = (uint64_t)s->l2_entries << s->cluster_bits;
    return (size + per - 1) / per;
}

static int read_extensions(struct qcow2_state *s, const uint8_t *hdr, uint64_t end, char *err)
{
    uint64_t p = s->version >= 3 ? s->header_len : 72;
    bool seen_backing = false, seen_crypto = false;
    while (p + 8 <= end) {
        uint32_t type = be32_get(hdr + p), len = be32_get(hdr + p + 4);
        p += 8;
        if (type == QCOW2_EXT_END)
            return 0;
        if (len > end - p)
            return block_seterr(err, -EINVAL, "Header extension 0x%08x is larger than the "
                                "header cluster", type);
        const uint8_t *d = hdr + p;
        switch (type) {
        case QCOW2_EXT_BACKING:
            if (seen_backing || len > QCOW2_MAX_BACKING_NAME)
                return block_seterr(err, -EINVAL, "Invalid backing format extension");
            seen_backing = true;
            s->backing_fmt = strndup((const char *)d, len);
            break;
        case QCOW2_EXT_FEATURES:
            break;   /* rewritten from our own table */
        case QCOW2_EXT_CRYPTO:
            if (seen_crypto || len != 16)
                return block_seterr(err, -EINVAL, "Invalid encryption header extension");
            seen_crypto = true;
            s->crypt_off = be64_get(d);
            s->crypt_len = be64_get(d + 8);
            break;
        default: {
            struct qcow2_ext *n = realloc(s->exts, (s->n_exts + 1) * sizeof(*n));
            if (!n)
                return -ENOMEM;
            s->exts = n;
            n[s->n_exts].type = type;
            n[s->n_exts].len = len;
            n[s->n_exts].data = malloc(len ? len : 1);
            if (!n[s->n_exts].data)
                return -ENOMEM;
            memcpy(n[s->n_exts].data, d, len);
            s->n_exts++;
        }
        }
        p += (len + 7) & ~7ull;
    }
    return 0;
}

static void unknown_features(uint64_t bits, const uint8_t *hdr, uint64_t hdrlen, uint64_t end,
                             char *buf, size_t n)
{
    /* Names from the image's own feature table, so future features are named. */
    buf[0] = 0;
    for (int bit = 0; bit < 64; bit++) {
        if (!(bits & (1ull << bit)))
            continue;
        const char *name = NULL;
        char nm[47];
        for (uint64_t p = hdrlen; p + 8 <= end;) {
            uint32_t type = be32_get(hdr + p), len = be32_get(hdr + p + 4);
            p += 8;
            if (!type || len > end - p)
                break;
            if (type == QCOW2_EXT_FEATURES)
                for (uint32_t i = 0; i + 48 <= len; i += 48)
                    if (hdr[p + i] == 0 && hdr[p + i + 1] == bit) {
                        memcpy(nm, hdr + p + i + 2, 46);
                        nm[46] = 0;
                        name = nm;
                    }
            p += (len + 7) & ~7ull;
        }
        size_t l = strlen(buf);
        if (name)
            snprintf(buf + l, n - l, "%s%s", l ? ", " : "", name);
        else
            snprintf(buf + l, n - l, "%sUnknown incompatible feature: %" PRIx64,
                     l ? ", " : "", (uint64_t)1 << bit);
    }
}

static int read_table(struct qcow2_state *s, uint64_t off, uint64_t n, uint64_t **out)
{
    uint64_t *t = calloc(n ? n : 1, 8);
    if (!t)
        return -ENOMEM;
    int r = bfile_pread(s->f, off, t, n * 8);
    if (r) {
        free(t);
        return r;
    }
    for (uint64_t i = 0; i < n; i++)
        t[i] = be64_get(&t[i]);
    *out = t;
    return 0;
}

static void qcow2_free_state(struct qcow2_state *s)
{
    qcow2_cache_free(&s->l2_cache);
    qcow2_cache_free(&s->rb_cache);
    qcow2_free_snapshots(s);
    for (int i = 0; i < s->n_exts; i++)
        free(s->exts[i].data);
    free(s->exts);
    free(s->l1);
    free(s->rt);
    free(s->header_extra);
    free(s->backing_name);
    free(s->backing_fmt);
    free(s->pending_free);
    free(s->cbuf);
    free(s->tmp);
    luks_free(s->luks);
    free(s);
}

static int qcow2_open(struct block *bs, const struct block_open_opts *o, char *err)
{
    struct qcow2_state *s = calloc(1, sizeof(*s));
    uint8_t *hdr = NULL;
    int r;
    if (!s)
        return block_seterr(err, -ENOMEM, "Out of memory");
    s->bs = bs;
    s->f = &bs->file;
    s->writable = !o->read_only;
    uint8_t h[104];
    int64_t fsz = bfile_size(s->f);
    if (fsz < 0) {
        r = block_seterr(err, (int)fsz, "Could not get the size of '%s'", bs->filename);
        goto fail;
    }
    if (fsz < 72) {
        r = block_seterr(err, -EINVAL, "Image '%s' is not in qcow2 format (file too short)",
                         bs->filename);
        goto fail;
    }
    if ((r = bfile_pread(s->f, 0, h, sizeof(h)))) {
        block_seterr(err, r, "Could not read qcow2 header: %s", strerror(-r));
        goto fail;
    }
    if (be32_get(h) != QCOW2_MAGIC) {
        r = block_seterr(err, -EINVAL, "Image '%s' is not in qcow2 format", bs->filename);
        goto fail;
    }
    s->version = be32_get(h + 4);
    if (s->version != 2 && s->version != 3) {
        r = block_seterr(err, -ENOTSUP, "Unsupported qcow2 version %d", s->version);
        goto fail;
    }
    s->cluster_bits = be32_get(h + 20);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        r = block_seterr(err, -EINVAL, "Unsupported cluster size: 2^%u", s->cluster_bits);
        goto fail;
    }
    s->cluster_size = 1u << s->cluster_bits;
    if (s->version == 3) {
        s->incompat = be64_get(h + 72);
        s->compat = be64_get(h + 80);
        s->autoclear = be64_get(h + 88);
        s->refcount_order = be32_get(h + 96);
        s->header_len = be32_get(h + 100);
        if (s->header_len < 104 || (s->header_len & 7) || s->header_len > s->cluster_size) {
            r = block_seterr(err, -EINVAL, "Invalid qcow2 header length %u", s->header_len);
            goto fail;
        }
    } else {
        s->refcount_order = 4;
        s->header_len = 72;
    }
    if (s->refcount_order > 6) {
        r = block_seterr(err, -EINVAL, "Invalid refcount order %u (at most 6)",
                         s->refcount_order);
        goto fail;
    }
    hdr = calloc(1, s->cluster_size);
    if (!hdr) {
        r = block_seterr(err, -ENOMEM, "Out of memory");
        goto fail;
    }
    if ((r = bfile_pread(s->f, 0, hdr, s->cluster_size))) {
        block_seterr(err, r, "Could not read qcow2 header: %s", strerror(-r));
        goto fail;
    }
    if (s->header_len > 104) {
        s->header_extra = calloc(1, s->header_len - 104);
        if (!s->header_extra) {
            r = -ENOMEM;
            goto fail;
        }
        memcpy(s->header_extra, hdr + 104, s->header_len - 104);
        s->compression_type = hdr[104];
    }
    if (s->incompat & ~QCOW2_INCOMPAT_KNOWN) {
        char names[256];
        unknown_features(s->incompat & ~QCOW2_INCOMPAT_KNOWN, hdr, s->header_len,
                         s->cluster_size, names, sizeof(names));
        r = block_seterr(err, -ENOTSUP, "Unsupported qcow2 feature(s): %s", names);
        goto fail;
    }
    if (s->incompat & QCOW2_INCOMPAT_DATA_FILE) {
        r = block_seterr(err, -ENOTSUP, "External data files are not supported");
        goto fail;
    }
    if (!!(s->incompat & QCOW2_INCOMPAT_COMPRESSION) != (s->compression_type != 0) ||
        s->compression_type > 1) {
        r = block_seterr(err, -EINVAL, "Invalid compression type %d", s->compression_type);
        goto fail;
    }
    s->ext_l2 = s->incompat & QCOW2_INCOMPAT_EXTL2;
    if (s->ext_l2 && s->cluster_bits < 14) {
        r = block_seterr(err, -EINVAL, "Extended L2 entries need clusters of at least 16 KiB");
        goto fail;
    }
    if ((s->incompat & QCOW2_INCOMPAT_CORRUPT) && s->writable) {
        r = block_seterr(err, -EACCES, "qcow2: Image is corrupt; cannot be opened read/write "
                         "(run 'qkvm-img check -r all' to repair it)");
        goto fail;
    }
    s->l2_entry_bytes = s->ext_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
    s->l2_entries = 1u << s->l2_bits;
    s->sc_bits = s->ext_l2 ? s->cluster_bits - 5 : s->cluster_bits;
    s->sc_size = 1u << s->sc_bits;
    s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->refcount_max = s->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << s->refcount_order)) - 1;

    bs->size = be64_get(h + 24);
    s->crypt_method = be32_get(h + 32);
    s->l1_size = be32_get(h + 36);
    s->l1_off = be64_get(h + 40);
    s->rt_off = be64_get(h + 48);
    s->rt_clusters = be32_get(h + 56);
    s->nb_snapshots = be32_get(h + 60);
    s->snapshots_off = be64_get(h + 64);
    if (bs->size > (1ull << 62)) {
        r = block_seterr(err, -EFBIG, "Virtual size %" PRIu64 " is too large", bs->size);
        goto fail;
    }
    if (s->crypt_method > QCOW2_CRYPT_LUKS) {
        r = block_seterr(err, -EINVAL, "Invalid encryption method %u", s->crypt_method);
        goto fail;
    }
    if (s->crypt_method == QCOW2_CRYPT_AES) {
        r = block_seterr(err, -ENOTSUP, "The legacy AES encryption of qcow is not supported "
                         "(use 'qemu-img convert' to LUKS)");
        goto fail;
    }
    if (s->l1_size < qcow2_l1_entries_for(s, bs->size)) {
        r = block_seterr(err, -EINVAL, "L1 table is too small for the virtual size "
                         "(%u entries)", s->l1_size);
        goto fail;
    }
    if ((r = qcow2_validate_table(s, s->l1_off, s->l1_size, 8, QCOW2_MAX_L1_BYTES,
                                  "Active L1 table", err)))
        goto fail;
    if (!s->rt_clusters) {
        r = block_seterr(err, -EINVAL, "Image does not contain a reference count table");
        goto fail;
    }
    s->rt_entries = (uint64_t)s->rt_clusters << (s->cluster_bits - 3);
    if ((r = qcow2_validate_table(s, s->rt_off, s->rt_entries, 8, QCOW2_MAX_RT_BYTES,
                                  "Reference count table", err)))
        goto fail;
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        r = block_seterr(err, -EFBIG, "Too many snapshots (%u)", s->nb_snapshots);
        goto fail;
    }
    uint64_t bfo = be64_get(h + 8);
    uint32_t bfl = be32_get(h + 16);
    if (bfo) {
        if (bfl > QCOW2_MAX_BACKING_NAME || bfo > s->cluster_size ||
            bfl > s->cluster_size - bfo) {
            r = block_seterr(err, -EINVAL, "Backing file name too long or outside the header");
            goto fail;
        }
        s->backing_name = strndup((const char *)hdr + bfo, bfl);
    }
    uint64_t ext_end = bfo && bfo > s->header_len ? bfo : s->cluster_size;
    if ((r = read_extensions(s, hdr, ext_end, err)))
        goto fail;
    if (s->crypt_method == QCOW2_CRYPT_LUKS && !s->crypt_len) {
        r = block_seterr(err, -EINVAL, "LUKS encrypted image without an encryption header");
        goto fail;
    }
    if ((r = read_table(s, s->l1_off, s->l1_size, &s->l1)) ||
        (r = read_table(s, s->rt_off, s->rt_entries, &s->rt))) {
        block_seterr(err, r, "Could not read metadata: %s", strerror(-r));
        goto fail;
    }
    for (uint64_t i = 0; i < s->rt_entries; i++)
        if (s->rt[i] & (s->cluster_size - 1)) {
            r = block_seterr(err, -EINVAL, "Refcount block offset 0x%" PRIx64
                             " is not cluster-aligned", s->rt[i]);
            goto fail;
        }
    if ((r = qcow2_read_snapshots(s, err)))
        goto fail;

    /* By default the L2 cache covers the whole image (up to 32 MiB of tables). */
    uint64_t l2n = qcow2_l1_entries_for(s, bs->size);
    uint64_t maxn = (32u << 20) >> s->cluster_bits;
    if (l2n > maxn)
        l2n = maxn;
    if (l2n < 16)
        l2n = 16;
    uint64_t rbn = l2n / 4 < 16 ? 16 : l2n / 4;
    /* QEMU's l2-cache-size / refcount-cache-size (bytes), with its minimums of 2 and 4 */
    if (o->l2_cache_bytes)
        l2n = o->l2_cache_bytes >> s->cluster_bits < 2 ? 2 : o->l2_cache_bytes >> s->cluster_bits;
    if (o->refcount_cache_bytes)
        rbn = o->refcount_cache_bytes >> s->cluster_bits < 4 ? 4
                                                              : o->refcount_cache_bytes >> s->cluster_bits;
    if (l2n > maxn)
        l2n = maxn < 2 ? 2 : maxn;
    if (rbn > maxn)
        rbn = maxn < 4 ? 4 : maxn;
    if ((r = qcow2_cache_init(&s->l2_cache, s, (int)l2n)) ||
        (r = qcow2_cache_init(&s->rb_cache, s, (int)rbn))) {
        block_seterr(err, r, "Out of memory");
        goto fail;
    }
    s->l2_cache.depends = &s->rb_cache;
    s->cbuf = malloc(s->cluster_size);
    s->tmp = malloc(s->cluster_size);
    if (!s->cbuf || !s->tmp) {
        r = block_seterr(err, -ENOMEM, "Out of memory");
        goto fail;
    }
    s->free_cluster_index = 0;
    s->min_freed = UINT64_MAX;
    bs->opaque = s;

    if (s->crypt_method == QCOW2_CRYPT_LUKS) {
        if (!o->secret && !o->metadata_only) {
            r = block_seterr(err, -EACCES, "Image '%s' is encrypted: give the passphrase with "
                             "--object secret,id=sec0,data=... and encrypt.key-secret=sec0",
                             bs->filename);
            goto fail_opaque;
        }
        if ((r = qcow2_validate_table(s, s->crypt_off, s->crypt_len, 1, 1ull << 30,
                                      "Encryption header", err)))
            goto fail_opaque;
        r = luks_open(s->f, s->crypt_off, s->crypt_len, o->metadata_only ? NULL : o->secret,
                      o->secret_len, &s->luks, err);
        if (r)
            goto fail_opaque;
    }

    bs->backing_name = s->backing_name ? strdup(s->backing_name) : NULL;
    bs->backing_fmt = s->backing_fmt ? strdup(s->backing_fmt) : NULL;
    if (bs->backing_name && !bs->backing_full)
        bs->backing_full = block_path_relative_to(bs->filename, bs->backing_name);
    const char *bname = o->backing_file ? o->backing_file : s->backing_name;
    if (bname && *bname && !o->no_backing) {
        const char *bfmt = o->backing_file ? (o->backing_format == BLOCK_FMT_RAW ? "raw" :
                           o->backing_format == BLOCK_FMT_QCOW2 ? "qcow2" : NULL)
                                           : s->backing_fmt;
        if ((r = block_open_backing(bs, bname, bfmt, o, err)))
            goto fail_opaque;
    }
    if (s->writable && !o->no_repair && !(s->incompat & QCOW2_INCOMPAT_DIRTY)) {
        /* the header cluster must be counted, or the allocator could hand out anything */
        uint64_t ref;
        if (qcow2_get_refcount(s, 0, &ref) || !ref) {
            r = block_seterr(err, -EUCLEAN, "qcow2: refcounts are corrupt (the header cluster "
                             "is not counted); run 'qkvm-img check -r all'");
            goto fail_opaque;
        }
    }
    if (s->writable) {
        if (s->autoclear) {
            /* Unknown auto-clear features must be cleared before the first write. */
            s->autoclear = 0;
            if ((r = qcow2_update_header(s))) {
                block_seterr(err, r, "Could not update the header: %s", strerror(-r));
                goto fail_opaque;
            }
        }
        if ((s->incompat & QCOW2_INCOMPAT_DIRTY) && !o->no_repair) {
            struct block_check_result res;
            r = qcow2_check(s, BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS, &res, NULL);
            if (r == 0 && res.corruptions > res.corruptions_fixed)
                r = -EIO;
            if (r == 0)
                r = qcow2_set_incompat(s, 0, QCOW2_INCOMPAT_DIRTY);
            if (r) {
                block_seterr(err, r, "Could not repair the dirty image: %s", strerror(-r));
                goto fail_opaque;
            }
        }
    }
    free(hdr);
    return 0;
fail_opaque:
    bs->opaque = NULL;
    if (bs->backing) {
        block_close(bs->backing);
        bs->backing = NULL;
    }
fail:
    free(hdr);
    qcow2_free_state(s);
    return r;
}

int qcow2_update_header(struct qcow2_state *s)
{
    uint8_t *b = calloc(1, s->cluster_size);
    if (!b)
        return -ENOMEM;
    struct block *bs = s->bs;
    be32_put(b, QCOW2_MAGIC);
    be32_put(b + 4, s->version);
    be32_put(b + 20, s->cluster_bits);
    be64_put(b + 24, bs->size);
    be32_put(b + 32, s->crypt_method);
    be32_put(b + 36, s->l1_size);
    be64_put(b + 40, s->l1_off);
    be64_put(b + 48, s->rt_off);
    be32_put(b + 56, s->rt_clusters);
    be32_put(b + 60, s->nb_snapshots);
    be64_put(b + 64, s->snapshots_off);
    uint64_t p = 72;
    if (s->version >= 3) {
        if (s->header_len < 112)
            s->header_len = 112;
        be64_put(b + 72, s->incompat);
        be64_put(b + 80, s->compat);
        be64_put(b + 88, s->autoclear);
        be32_put(b + 96, s->refcount_order);
        be32_put(b + 100, s->header_len);
        if (s->header_extra)
            memcpy(b + 104, s->header_extra, s->header_len - 104 < 8 ? s->header_len - 104 : 8);
        b[104] = (uint8_t)s->compression_type;
        if (s->header_extra && s->header_len > 112)
            memcpy(b + 112, s->header_extra + 8, s->header_len - 112);
        p = s->header_len;
    }
    int r = -ENOSPC;
#define NEED(n) do { if (p + (n) > s->cluster_size) goto out; } while (0)
    if (s->backing_fmt) {
        size_t l = strlen(s->backing_fmt);
        NEED(8 + ((l + 7) & ~7ull));
        be32_put(b + p, QCOW2_EXT_BACKING);
        be32_put(b + p + 4, l);
        memcpy(b + p + 8, s->backing_fmt, l);
        p += 8 + ((l + 7) & ~7ull);
    }
    if (s->crypt_method == QCOW2_CRYPT_LUKS) {
        NEED(24);
        be32_put(b + p, QCOW2_EXT_CRYPTO);
        be32_put(b + p + 4, 16);
        be64_put(b + p + 8, s->crypt_off);
        be64_put(b + p + 16, s->crypt_len);
        p += 24;
    }
    if (s->version >= 3) {
        size_t n = sizeof(feature_names) / sizeof(feature_names[0]);
        NEED(8 + n * 48);
        be32_put(b + p, QCOW2_EXT_FEATURES);
        be32_put(b + p + 4, n * 48);
        for (size_t i = 0; i < n; i++) {
            uint8_t *e = b + p + 8 + i * 48;
            e[0] = feature_names[i].type;
            e[1] = feature_names[i].bit;
            strncpy((char *)e + 2, feature_names[i].name, 46);
        }
        p += 8 + n * 48;
    }
    for (int i = 0; i < s->n_exts; i++) {
        NEED(8 + ((s->exts[i].len + 7ull) & ~7ull));
        be32_put(b + p, s->exts[i].type);
        be32_put(b + p + 4, s->exts[i].len);
        memcpy(b + p + 8, s->exts[i].data, s->exts[i].len);
        p += 8 + ((s->exts[i].len + 7ull) & ~7ull);
    }
    NEED(8);
    p += 8;  /* end of extensions */
    if (s->backing_name) {
        size_t l = strlen(s->backing_name);
        NEED(l);
        be64_put(b + 8, p);
        be32_put(b + 16, l);
        memcpy(b + p, s->backing_name, l);
        p += l;
    }
#undef NEED
    /* Write only up to what the header uses: the rest of cluster 0 stays as it was (zeros). */
    r = bfile_pwrite(s->f, 0, b, (p + 511) & ~511ull);
out:
    free(b);
    return r;
}

int qcow2_set_incompat(struct qcow2_state *s, uint64_t set, uint64_t clear)
{
    if (s->version < 3)
        return 0;
    uint64_t v = (s->incompat | set) & ~clear;
    if (v == s->incompat)
        return 0;
    int r = bfile_flush(s->f);
    if (r)
        return r;
    uint8_t b[8];
    be64_put(b, v);
    r = bfile_pwrite(s->f, 72, b, 8);
    if (r == 0)
        r = bfile_flush(s->f);
    if (r == 0)
        s->incompat = v;
    return r;
}

int qcow2_write_l1_entry(struct qcow2_state *s, uint32_t idx)
{
    uint8_t b[8];
    be64_put(b, s->l1[idx]);
    return bfile_pwrite(s->f, s->l1_off + (uint64_t)idx * 8, b, 8);
}

int qcow2_flush_all(struct qcow2_state *s)
{
    int r = qcow2_process_frees(s);
    if (!r)
        r = qcow2_cache_flush(&s->l2_cache);
    if (!r)
        r = qcow2_cache_flush(&s->rb_cache);
    if (!r)
        r = bfile_flush(s->f);
    if (!r && s->min_freed != UINT64_MAX) {
        /* Freed clusters are only reused once no table on disk points at them. */
        if (s->min_freed < s->free_cluster_index)
            s->free_cluster_index = s->min_freed;
        s->min_freed = UINT64_MAX;
    }
    return r;
}

static int qcow2_flush(struct block *bs)
{
    struct qcow2_state *s = bs->opaque;
    if (!s->writable)
        return 0;
    return qcow2_flush_all(s);
}

static void qcow2_close(struct block *bs)
{
    struct qcow2_state *s = bs->opaque;
    if (!s)
        return;
    if (s->writable) {
        if (qcow2_flush_all(s) == 0 && s->lazy_dirty)
            qcow2_set_incompat(s, 0, QCOW2_INCOMPAT_DIRTY);
    }
    qcow2_free_state(s);
    bs->opaque = NULL;
}

static int qcow2_pread(struct block *bs, uint64_t off, void *buf, size_t len)
{
    return qcow2_read(bs->opaque, off, buf, len);
}

int qcow2_writable_check(struct qcow2_state *s)
{
    if (s->incompat & QCOW2_INCOMPAT_CORRUPT)
        return -EACCES;
    if (s->crypt_method && !luks_unlocked(s->luks))
        return -EACCES;
    return 0;
}

static int qcow2_pwrite(struct block *bs, uint64_t off, const void *buf, size_t len)
{
    int r = qcow2_writable_check(bs->opaque);
    return r ? r : qcow2_write(bs->opaque, off, buf, len);
}

static int qcow2_pwrite_compressed(struct block *bs, uint64_t off, const void *buf, size_t len)
{
    int r = qcow2_writable_check(bs->opaque);
    return r ? r : qcow2_write_compressed(bs->opaque, off, buf, len);
}

static int qcow2_zeroes(struct block *bs, uint64_t off, uint64_t len, unsigned flags)
{
    int r = qcow2_writable_check(bs->opaque);
    return r ? r : qcow2_zero(bs->opaque, off, len, flags & BLOCK_ZERO_MAY_UNMAP, 0);
}

static int qcow2_discard(struct block *bs, uint64_t off, uint64_t len)
{
    int r = qcow2_writable_check(bs->opaque);
    return r ? r : qcow2_zero(bs->opaque, off, len, true, 1);
}

static int qcow2_truncate(struct block *bs, uint64_t size, bool shrink)
{
    struct qcow2_state *s = bs->opaque;
    int r = qcow2_writable_check(s);
    if (r)
        return r;
    if (s->nb_snapshots && size < bs->size)
        return -ENOTSUP;   /* like QEMU: snapshots pin the old size */
    if (size < bs->size) {
        (void)shrink;
        /* discard everything past the new end so the clusters are freed */
        uint64_t start = (size + s->cluster_size - 1) & ~(uint64_t)(s->cluster_size - 1);
        if (start < bs->size && (r = qcow2_zero(s, start, bs->size - start, true, 2)))
            return r;
        if (size < start && (r = qcow2_zero(s, size, start - size, false, 0)))
            return r;
    }
    uint64_t need = qcow2_l1_entries_for(s, size);
    if (need > s->l1_size && (r = qcow2_grow_l1(s, need)))
        return r;
    uint64_t old = bs->size;
    bs->size = size;
    if ((r = qcow2_flush_all(s)) || (r = qcow2_update_header(s)) || (r = bfile_flush(s->f))) {
        bs->size = old;
        return r;
    }
    return 0;
}

static int qcow2_status(struct block *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                        struct block_status *st)
{
    struct qcow2_state *s = bs->opaque;
    struct qcow2_map m;
    int r = qcow2_map(s, off, len, &m);
    if (r)
        return r;
    *pnum = m.bytes;
    switch (m.type) {
    case QC_UNALLOC:
    case QC_ZERO:
        st->flags = m.type == QC_ZERO ? BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED : 0;
        if (m.host && !s->crypt_method) {
            st->flags |= BLOCK_STATUS_OFFSET;
            st->host_off = m.host;
        }
        break;
    case QC_NORMAL:
        st->flags = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
        if (!s->crypt_method) {
            st->flags |= BLOCK_STATUS_OFFSET;
            st->host_off = m.host;
            /* holes in the file (preallocation=metadata) read as zeros: say so, as QEMU does */
            bool data;
            uint64_t n;
            if (bfile_status(s->f, m.host, m.bytes, &data, &n) == 0 && n) {
                *pnum = n;
                if (!data)
                    st->flags |= BLOCK_STATUS_ZERO;
            }
        }
        break;
    case QC_COMPRESSED:
        st->flags = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_COMPRESSED;
        break;
    }
    return 0;
}

static int qcow2_locate(struct block *bs, uint64_t off, uint64_t len, bool write,
                        struct bfile **f, uint64_t *host)
{
    struct qcow2_state *s = bs->opaque;
    struct qcow2_map m;
    if (s->crypt_method || qcow2_map(s, off, len, &m) || m.type != QC_NORMAL || m.bytes < len)
        return -ENOTSUP;
    /* in place only inside one cluster that is ours alone (COPIED: refcount 1, no snapshot
     * shares it), inside the file and clear of metadata (a corrupt image's data cluster on
     * a table is refused by qcow2_write); the rest goes through qcow2_write */
    uint64_t cmask = ~(uint64_t)(s->cluster_size - 1);
    if (write && (qcow2_writable_check(s) || s->ext_l2 || !(m.entry & QCOW2_OFLAG_COPIED) ||
                  (off & cmask) != ((off + len - 1) & cmask) || qcow2_check_in_file(s, m.host) ||
                  qcow2_overlaps_metadata(s, m.host, len)))
        return -ENOTSUP;
    *f = s->f;
    *host = m.host;
    return 0;
}

static int qcow2_info(struct block *bs, struct block_info *info)
{
    struct qcow2_state *s = bs->opaque;
    info->cluster_size = s->cluster_size;
    info->version = s->version;
    info->encrypted = s->crypt_method != 0;
    info->dirty = s->incompat & QCOW2_INCOMPAT_DIRTY;
    info->lazy_refcounts = s->compat & QCOW2_COMPAT_LAZY;
    info->corrupt = s->incompat & QCOW2_INCOMPAT_CORRUPT;
    info->extended_l2 = s->ext_l2;
    info->zstd = s->compression_type == 1;
    info->refcount_bits = 1 << s->refcount_order;
    info->nb_snapshots = s->nb_snapshots;
    return 0;
}

/* With fix: a repair is checked again (the result is that second check's, with the first's
 * counts of what was fixed), and an image that then checks clean is neither dirty nor
 * corrupt any more. */
static int qcow2_check_op(struct block *bs, int fix, struct block_check_result *res, FILE *log)
{
    struct qcow2_state *s = bs->opaque;
    int r = qcow2_check(s, fix, res, log);
    if (!r && fix && (res->leaks_fixed || res->corruptions_fixed)) {
        uint64_t lf = res->leaks_fixed, cf = res->corruptions_fixed;
        r = qcow2_check(s, 0, res, log);
        res->leaks_fixed = lf;
        res->corruptions_fixed = cf;
    }
    if (!r && fix && (s->incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)) &&
        !res->corruptions && !res->check_errors)
        r = qcow2_set_incompat(s, 0, QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
    return r;
}

static int qcow2_make_empty(struct block *bs)
{
    int r = qcow2_writable_check(bs->opaque);
    return r ? r : qcow2_zero(bs->opaque, 0, bs->size, true, 2);
}

static int qcow2_set_backing_op(struct block *bs, const char *name, const char *fmt)
{
    struct qcow2_state *s = bs->opaque;
    int r = qcow2_flush_all(s);
    return r ? r : qcow2_set_backing(s, name, fmt);
}

static int qcow2_amend_op(struct block *bs, int version, int lazy, char *err)
{
    return qcow2_amend(bs->opaque, version, lazy, err);
}

static int qcow2_luks_info(struct block *bs, struct luks_info *li)
{
    struct qcow2_state *s = bs->opaque;
    if (!s->crypt_method || !s->luks)
        return -ENOTSUP;
    luks_get_info(s->luks, li);
    return 0;
}

static long qcow2_compress_op(struct block *bs, const void *buf, size_t len, void *out)
{
    struct qcow2_state *s = bs->opaque;
    return len > s->cluster_size ? -EINVAL : qcow2_compress(s, buf, len, out);
}

static int qcow2_pwrite_precompressed(struct block *bs, uint64_t off, const void *buf,
                                      size_t len, const void *cdata, long clen)
{
    int r = qcow2_writable_check(bs->opaque);
    return r ? r : qcow2_write_compressed_data(bs->opaque, off, buf, len, cdata, clen);
}

struct qcow2_state *block_qcow2(struct block *bs)
{
    return bs->drv == &block_driver_qcow2 ? bs->opaque : NULL;
}

const struct block_driver block_driver_qcow2 = {
    .name = "qcow2",
    .open = qcow2_open,
    .close = qcow2_close,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .pwrite_compressed = qcow2_pwrite_compressed,
    .compress = qcow2_compress_op,
    .pwrite_precompressed = qcow2_pwrite_precompressed,
    .pwrite_zeroes = qcow2_zeroes,
    .discard = qcow2_discard,
    .flush = qcow2_flush,
    .truncate = qcow2_truncate,
    .status = qcow2_status,
    .locate = qcow2_locate,
    .info = qcow2_info,
    .create = qcow2_create,
    .check = qcow2_check_op,
    .make_empty = qcow2_make_empty,
    .set_backing = qcow2_set_backing_op,
    .amend = qcow2_amend_op,
    .luks_info = qcow2_luks_info,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_create = qcow2_snapshot_create_vm,
    .snapshot_goto = qcow2_snapshot_goto,
    .snapshot_delete = qcow2_snapshot_remove,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
    .vmstate_rw = qcow2_vmstate_rw,
    .snapshot_vmstate_read = qcow2_snapshot_vmstate_read,
};

int qcow2_amend(struct qcow2_state *s, int version, int lazy, char *err)
{
    int r;
    if (version == 2 && s->version == 3) {
        if (s->refcount_order != 4 || s->ext_l2 || s->compression_type)
            return block_seterr(err, -ENOTSUP, "Cannot downgrade an image with refcount_bits "
                                "!= 16, extended L2 entries or zstd compression to compat=0.10");
        if (lazy == 1 || (lazy < 0 && (s->compat & QCOW2_COMPAT_LAZY)))
            return block_seterr(err, -EINVAL, "Lazy refcounts only supported with compatibility "
                                "level 1.1 and above (use compat=1.1 or greater)");
        /* v2 has no zero flag: zero clusters become unallocated or real zeros */
        static const uint8_t zeros[65536];
        for (uint64_t p = 0; p < s->bs->size;) {
            struct qcow2_map m;
            if ((r = qcow2_map(s, p, s->bs->size - p, &m)))
                return r;
            if (m.type == QC_ZERO) {
                if (!s->bs->backing) {
                    if ((r = qcow2_zero(s, p, m.bytes, true, 2)))
                        return r;
                } else {
                    for (uint64_t q = 0; q < m.bytes; q += sizeof(zeros)) {
                        uint64_t n = m.bytes - q < sizeof(zeros) ? m.bytes - q : sizeof(zeros);
                        if ((r = qcow2_write(s, p + q, zeros, n)))
                            return r;
                    }
                }
            }
            p += m.bytes;
        }
        if ((r = qcow2_flush_all(s)))
            return r;
        s->version = 2;
        s->compat = 0;
        s->incompat = 0;
        s->autoclear = 0;
        s->header_len = 72;
        return qcow2_update_header(s);
    }
    if (version == 3 && s->version == 2) {
        s->version = 3;
        s->header_len = 112;
        s->refcount_order = 4;
    }
    if (lazy >= 0) {
        if (s->version < 3 && lazy)
            return block_seterr(err, -EINVAL, "Lazy refcounts only supported with compatibility "
                                "level 1.1 and above (use compat=1.1 or greater)");
        if (!lazy && (s->compat & QCOW2_COMPAT_LAZY)) {
            if ((r = qcow2_flush_all(s)))
                return r;
        }
        s->compat = lazy ? s->compat | QCOW2_COMPAT_LAZY : s->compat & ~QCOW2_COMPAT_LAZY;
    }
    if ((r = qcow2_flush_all(s)))
        return r;
    return qcow2_update_header(s);
}
