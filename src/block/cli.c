#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/cli.h"
#include "block/driver.h"
#include "util/parse.h"

struct secret {
    char *id;
    char *data;
    size_t len;
};
static struct secret secrets[16];
static int nsecrets;

int cli_add_object(const char *spec, char *err)
{
    struct kvlist l;
    if (keyval_parse(spec, "qom-type", &l))
        return block_seterr(err, -EINVAL, "Invalid object '%s'", spec);
    int r = 0;
    const char *type = keyval_get(&l, "qom-type");
    const char *id = keyval_get(&l, "id");
    const char *data = keyval_get(&l, "data");
    const char *file = keyval_get(&l, "file");
    const char *fmt = keyval_get(&l, "format");
    if (!type || strcmp(type, "secret")) {
        r = block_seterr(err, -ENOTSUP, "Object type '%s' is not supported (only 'secret')",
                         type ? type : "");
        goto out;
    }
    if (!id || (!data == !file)) {
        r = block_seterr(err, -EINVAL, "A secret needs id= and one of data= or file=");
        goto out;
    }
    if (fmt && strcmp(fmt, "raw")) {
        r = block_seterr(err, -ENOTSUP, "Secret format '%s' is not supported", fmt);
        goto out;
    }
    if (keyval_unused(&l)) {
        r = block_seterr(err, -EINVAL, "Invalid parameter '%s'", keyval_unused(&l));
        goto out;
    }
    if (nsecrets == 16) {
        r = block_seterr(err, -E2BIG, "Too many secrets");
        goto out;
    }
    struct secret *s = &secrets[nsecrets];
    if (data) {
        s->data = strdup(data);
        s->len = strlen(data);
    } else {
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            r = block_seterr(err, -errno, "Unable to read %s: %s", file, strerror(errno));
            goto out;
        }
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        close(fd);
        if (n < 0) {
            r = block_seterr(err, -EIO, "Unable to read %s", file);
            goto out;
        }
        s->data = malloc(n + 1);
        memcpy(s->data, buf, n);
        s->data[n] = 0;
        s->len = n;
    }
    s->id = strdup(id);
    nsecrets++;
out:
    keyval_free(&l);
    return r;
}

const char *cli_secret(const char *id, size_t *len)
{
    for (int i = 0; i < nsecrets; i++)
        if (!strcmp(secrets[i].id, id)) {
            *len = secrets[i].len;
            return secrets[i].data;
        }
    return NULL;
}

const char *cli_default_secret(size_t *len)
{
    if (nsecrets != 1)
        return NULL;
    *len = secrets[0].len;
    return secrets[0].data;
}

int cli_parse_image_opts(const char *spec, char **path, struct block_open_opts *o, char *err)
{
    struct kvlist l;
    if (keyval_parse(spec, NULL, &l))
        return block_seterr(err, -EINVAL, "Invalid image options '%s'", spec);
    int r = 0;
    const char *drv = keyval_get(&l, "driver");
    const char *fn = keyval_get(&l, "file.filename");
    const char *sec = keyval_get(&l, "encrypt.key-secret");
    const char *bk = keyval_get(&l, "backing");
    const char *ro = keyval_get(&l, "read-only");
    const char *l2c = keyval_get(&l, "l2-cache-size");
    const char *rbc = keyval_get(&l, "refcount-cache-size");
    const char *share = keyval_get(&l, "force-share");
    keyval_get(&l, "file.driver");
    if (drv && block_parse_format(drv, &o->format) && strcmp(drv, "file")) {
        r = block_seterr(err, -EINVAL, "Unknown driver '%s'", drv);
        goto out;
    }
    if (!fn) {
        r = block_seterr(err, -EINVAL, "Parameter 'file.filename' is required");
        goto out;
    }
    if (sec) {
        o->secret = cli_secret(sec, &o->secret_len);
        if (!o->secret) {
            r = block_seterr(err, -ENOENT, "No secret with id '%s'", sec);
            goto out;
        }
    }
    if (bk && (!strcmp(bk, "null") || !*bk))
        o->no_backing = true;
    if (ro) {
        bool b;
        if (!parse_bool(ro, &b))
            o->read_only = b;
    }
    if ((l2c && parse_size(l2c, 1, &o->l2_cache_bytes)) ||
        (rbc && parse_size(rbc, 1, &o->refcount_cache_bytes))) {
        r = block_seterr(err, -EINVAL, "Invalid cache size");
        goto out;
    }
    if (share) {
        bool b;
        if (!parse_bool(share, &b))
            o->force_share = b;
    }
    if (keyval_unused(&l)) {
        r = block_seterr(err, -EINVAL, "Invalid parameter '%s'", keyval_unused(&l));
        goto out;
    }
    *path = strdup(fn);
out:
    keyval_free(&l);
    return r;
}

void cli_cvtstr(double v, char *buf, size_t n)
{
    static const char *suf[] = { " bytes", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB" };
    int i = 0;
    while (v >= 1024.0 && i < 6) {
        v /= 1024.0;
        i++;
    }
    char t[64];
    snprintf(t, sizeof(t), "%.3f", v);
    char *dot = strstr(t, ".000");
    if (dot)
        *dot = 0;
    snprintf(buf, n, "%s%s", t, suf[i]);
}

void cli_size_str(uint64_t v, char *buf, size_t n)
{
    /* qemu-img's size_to_str: the unit switches at 1000 of the smaller one */
    static const char *suf[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    /* frexp's exponent less one is the binary exponent field of a normal double (and v / 0.9765625
     * is 0 or at least 1): read it from the bits rather than link libm for one call */
    double x = (double)v / (1000 / 1024.0);
    uint64_t bits;
    memcpy(&bits, &x, sizeof(bits));
    int i = ((int)((bits >> 52) & 0x7ff) - 1023) / 10;
    if (i < 0)
        i = 0;
    if (i > 6)
        i = 6;
    snprintf(buf, n, "%0.3g %sB", (double)v / (double)(1ull << (i * 10)), suf[i]);
}
