/* qkvm-io: qemu-io's command language on the qkvm block layer.
 *   qkvm-io [-f fmt] [-r] [-n] [-t cache] [--object secret,...] [--image-opts] -c CMD... FILE */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/block.h"
#include "block/cli.h"
#include "util/log.h"
#include "util/parse.h"

#define MAX_REQ 2147483136ull

static struct block *bs;
static const char *fname;

static int cvtnum(const char *s, uint64_t *v)
{
    return parse_size(s, 1, v);
}

static void print_report(const char *op, struct timespec *t0, uint64_t off, uint64_t count,
                         uint64_t total, int ops)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
    char a[64], b[64];
    printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", op, count, total, off);
    cli_cvtstr((double)total, a, sizeof(a));
    cli_cvtstr(secs > 0 ? total / secs : 0, b, sizeof(b));
    printf("%s, %d ops; %02d.%02d sec (%s/sec and %.4f ops/sec)\n", a, ops, (int)secs,
           (int)((secs - (int)secs) * 100), b, secs > 0 ? ops / secs : 0.0);
}

static void dump_buffer(const uint8_t *buf, uint64_t off, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += 16) {
        printf("%08" PRIx64 ":  ", off + i);
        uint64_t n = len - i < 16 ? len - i : 16;
        for (uint64_t j = 0; j < n; j++)
            printf("%02x ", buf[i + j]);
        printf(" ");
        for (uint64_t j = 0; j < n; j++)
            putchar(buf[i + j] >= 0x20 && buf[i + j] < 0x7f ? buf[i + j] : '.');
        printf("\n");
    }
}

struct rwopts {
    int pattern;      /* -1: none */
    bool verbose, quiet, zero, unmap, compressed;
};

static int parse_rw(int argc, char **argv, struct rwopts *o, int *first)
{
    memset(o, 0, sizeof(*o));
    o->pattern = -1;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        for (const char *p = argv[i] + 1; *p; p++) {
            switch (*p) {
            case 'P': {
                if (p[1] || i + 1 >= argc)
                    return -EINVAL;
                uint64_t v;
                if (parse_u64(argv[++i], 0, 255, &v))
                    return -EINVAL;
                o->pattern = (int)v;
                goto next;
            }
            case 'v': o->verbose = true; break;
            case 'q': o->quiet = true; break;
            case 'z': o->zero = true; break;
            case 'u': o->unmap = true; break;
            case 'c': o->compressed = true; break;
            case 'f': case 'C': case 'b': break;
            default: return -EINVAL;
            }
        }
next:;
    }
    *first = i;
    return 0;
}

static int get_off_len(char *so, char *sl, uint64_t *off, uint64_t *len)
{
    if (cvtnum(so, off)) {
        fprintf(stderr, "non-numeric offset argument -- %s\n", so);
        return -EINVAL;
    }
    if (cvtnum(sl, len)) {
        fprintf(stderr, "non-numeric length argument -- %s\n", sl);
        return -EINVAL;
    }
    if (*len > MAX_REQ) {
        fprintf(stderr, "length cannot exceed %llu, given %s\n", MAX_REQ, sl);
        return -EINVAL;
    }
    return 0;
}

/* readv/writev: the buffer cut into the lengths given, one scatter-list call (as virtio-blk
 * makes them). */
static int rw_vector(bool write, uint64_t off, uint8_t *buf, const uint64_t *ls, int nl)
{
    struct iovec iov[256];
    uint64_t q = 0;
    for (int k = 0; k < nl; k++) {
        iov[k] = (struct iovec){ buf + q, ls[k] };
        q += ls[k];
    }
    return write ? block_pwritev(bs, off, iov, nl) : block_preadv(bs, off, iov, nl);
}

/* args: an offset, then nl lengths (one, or one per element of a vector): into *off, ls[] and
 * their sum *len. */
static int parse_lengths(char **args, int nl, uint64_t *off, uint64_t *ls, uint64_t *len)
{
    *len = 0;
    for (int k = 0; k < nl; k++) {
        if (get_off_len(args[0], args[1 + k], off, &ls[k]))
            return -EINVAL;
        *len += ls[k];
    }
    return 0;
}

static int do_read(int argc, char **argv, bool vec)
{
    struct rwopts o;
    int i;
    if (parse_rw(argc, argv, &o, &i) || argc - i < 2) {
        fprintf(stderr, "%s: invalid arguments\n", argv[0]);
        return -EINVAL;
    }
    uint64_t off, len;
    if (cvtnum(argv[i], &off)) {
        fprintf(stderr, "non-numeric offset argument -- %s\n", argv[i]);
        return -EINVAL;
    }
    int nl = vec ? argc - i - 1 : 1;
    uint64_t ls[256];
    if (parse_lengths(argv + i, nl, &off, ls, &len))
        return -EINVAL;
    if (len > MAX_REQ) {
        fprintf(stderr, "length cannot exceed %llu\n", MAX_REQ);
        return -EINVAL;
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = vec ? rw_vector(false, off, buf, ls, nl) : block_pread(bs, off, buf, len);
    if (r) {
        fprintf(stderr, "read failed: %s\n", strerror(-r));
        free(buf);
        return r;
    }
    int ret = 0;
    if (o.pattern >= 0) {
        for (uint64_t k = 0; k < len; k++)
            if (buf[k] != o.pattern) {
                printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64
                       " bytes\n", off + k, len);
                ret = -EIO;
                break;
            }
    }
    if (o.verbose)
        dump_buffer(buf, off, len);
    if (!o.quiet)
        print_report("read", &t0, off, len, len, 1);
    free(buf);
    return ret;
}

static int do_write(int argc, char **argv, bool vec)
{
    struct rwopts o;
    int i;
    if (parse_rw(argc, argv, &o, &i) || argc - i < 2) {
        fprintf(stderr, "%s: invalid arguments\n", argv[0]);
        return -EINVAL;
    }
    if (o.zero && o.pattern >= 0) {
        fprintf(stderr, "-z and -P cannot be specified at the same time\n");
        return -EINVAL;
    }
    uint64_t off, len;
    int nl = vec ? argc - i - 1 : 1;
    uint64_t ls[256];
    if (parse_lengths(argv + i, nl, &off, ls, &len))
        return -EINVAL;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r;
    if (o.zero) {
        r = block_pwrite_zeroes(bs, off, len, o.unmap ? BLOCK_ZERO_MAY_UNMAP : 0);
    } else {
        if (len > MAX_REQ) {
            fprintf(stderr, "length cannot exceed %llu\n", MAX_REQ);
            return -EINVAL;
        }
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
            return -ENOMEM;
        memset(buf, o.pattern >= 0 ? o.pattern : 0xcd, len);
        r = o.compressed ? block_pwrite_compressed(bs, off, buf, len)
            : vec        ? rw_vector(true, off, buf, ls, nl)
                         : block_pwrite(bs, off, buf, len);
        free(buf);
    }
    if (r) {
        fprintf(stderr, "write failed: %s\n", strerror(-r));
        return r;
    }
    if (!o.quiet)
        print_report("wrote", &t0, off, len, len, 1);
    return 0;
}

static int do_discard(int argc, char **argv)
{
    struct rwopts o;
    int i;
    uint64_t off, len;
    if (parse_rw(argc, argv, &o, &i) || argc - i != 2 || get_off_len(argv[i], argv[i + 1], &off, &len)) {
        fprintf(stderr, "discard: invalid arguments\n");
        return -EINVAL;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = block_discard(bs, off, len);
    if (r) {
        fprintf(stderr, "discard failed: %s\n", strerror(-r));
        return r;
    }
    if (!o.quiet)
        print_report("discard", &t0, off, len, len, 1);
    return 0;
}

/* allocated in this layer or any backing layer (qemu-io map = is_allocated_above) */
static int chain_allocated(uint64_t off, uint64_t len, uint64_t *pnum, bool *alloc)
{
    struct block_status st;
    int r = block_status_chain(bs, off, len, pnum, &st);
    if (r)
        return r;
    *alloc = st.flags & BLOCK_STATUS_ALLOCATED;
    return 0;
}

static int do_map(void)
{
    uint64_t off = 0, size = block_length(bs);
    while (off < size) {
        uint64_t n = 0, total = 0;
        bool a0 = false;
        /* merge runs with the same answer */
        while (off + total < size) {
            bool a;
            int r = chain_allocated(off + total, size - off - total, &n, &a);
            if (r) {
                fprintf(stderr, "map failed: %s\n", strerror(-r));
                return r;
            }
            if (total == 0)
                a0 = a;
            else if (a != a0)
                break;
            total += n;
        }
        char s1[64], s2[64];
        cli_cvtstr((double)total, s1, sizeof(s1));
        cli_cvtstr((double)off, s2, sizeof(s2));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", s1, total,
               a0 ? "    allocated" : "not allocated", s2, off);
        off += total;
    }
    return 0;
}

static int do_alloc(int argc, char **argv)
{
    uint64_t off, len = 512;
    if (argc < 2 || argc > 3 || cvtnum(argv[1], &off) || (argc == 3 && cvtnum(argv[2], &len))) {
        fprintf(stderr, "alloc: invalid arguments\n");
        return -EINVAL;
    }
    uint64_t size = block_length(bs), sum = 0, p = off;
    if (off > size || len > size - off) {
        fprintf(stderr, "alloc failed: Input/output error\n");
        return -EIO;
    }
    while (p < off + len) {
        uint64_t n;
        struct block_status st;
        int r = block_status_layer(bs, p, off + len - p, &n, &st);
        if (r) {
            fprintf(stderr, "alloc failed: %s\n", strerror(-r));
            return r;
        }
        if (st.flags & BLOCK_STATUS_ALLOCATED)
            sum += n;
        p += n;
    }
    char s[64];
    cli_cvtstr((double)off, s, sizeof(s));
    printf("%" PRIu64 "/%" PRIu64 " bytes allocated at offset %s\n", sum, len, s);
    return 0;
}

static int do_info(void)
{
    struct block_info info;
    block_get_info(bs, &info);
    char s[64];
    printf("format name: %s\n", info.format);
    if (info.cluster_size) {
        cli_cvtstr(info.cluster_size, s, sizeof(s));
        printf("cluster size: %s\n", s);
        cli_cvtstr((double)info.virtual_size, s, sizeof(s));
        printf("vm state offset: %s\n", s);
    }
    if (!strcmp(info.format, "qcow2")) {
        printf("Format specific information:\n");
        printf("    compat: %s\n", info.version == 2 ? "0.10" : "1.1");
        if (info.version >= 3)
            printf("    compression type: %s\n", info.zstd ? "zstd" : "zlib");
        if (info.version >= 3)
            printf("    lazy refcounts: %s\n", info.lazy_refcounts ? "true" : "false");
        printf("    refcount bits: %d\n", info.refcount_bits);
        if (info.version >= 3) {
            printf("    corrupt: %s\n", info.corrupt ? "true" : "false");
            printf("    extended l2: %s\n", info.extended_l2 ? "true" : "false");
        }
    }
    return 0;
}

/* Words of line into argv; -1 when there are more than max. */
static int split(char *line, char **argv, int max)
{
    int n = 0;
    for (char *t = strtok(line, " \t"); t; t = strtok(NULL, " \t")) {
        if (n == max)
            return -1;
        argv[n++] = t;
    }
    return n;
}

static int run_command(const char *cmdline)
{
    char *line = strdup(cmdline);
    char *argv[256];
    int argc = split(line, argv, 256);
    int r = 0;
    if (argc < 0) {
        fprintf(stderr, "too many arguments (at most 255 after the command)\n");
        free(line);
        return -EINVAL;
    }
    if (!argc) {
        free(line);
        return 0;
    }
    const char *c = argv[0];
    if (!strcmp(c, "read") || !strcmp(c, "r"))
        r = do_read(argc, argv, false);
    else if (!strcmp(c, "readv"))
        r = do_read(argc, argv, true);
    else if (!strcmp(c, "write") || !strcmp(c, "w"))
        r = do_write(argc, argv, false);
    else if (!strcmp(c, "writev"))
        r = do_write(argc, argv, true);
    else if (!strcmp(c, "discard") || !strcmp(c, "d"))
        r = do_discard(argc, argv);
    else if (!strcmp(c, "map"))
        r = do_map();
    else if (!strcmp(c, "alloc"))
        r = do_alloc(argc, argv);
    else if (!strcmp(c, "flush") || !strcmp(c, "f")) {
        r = block_flush(bs);
        if (r)
            fprintf(stderr, "flush failed: %s\n", strerror(-r));
    } else if (!strcmp(c, "info"))
        r = do_info();
    else if (!strcmp(c, "length") || !strcmp(c, "l")) {
        char s[64];
        cli_cvtstr((double)block_length(bs), s, sizeof(s));
        printf("%s\n", s);
    } else if (!strcmp(c, "truncate")) {
        uint64_t sz;
        if (argc != 2 || cvtnum(argv[1], &sz)) {
            fprintf(stderr, "truncate: invalid arguments\n");
            r = -EINVAL;
        } else if ((r = block_truncate(bs, sz, true))) {
            printf("truncate: %s\n", strerror(-r));
        }
    } else if (!strcmp(c, "sleep")) {
        uint64_t ms;
        if (argc != 2 || parse_u64(argv[1], 10, UINT32_MAX, &ms)) {
            fprintf(stderr, "sleep: invalid arguments\n");
            r = -EINVAL;
        } else {
            fflush(stdout);
            struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
            nanosleep(&ts, NULL);
        }
    } else if (!strcmp(c, "quit") || !strcmp(c, "q")) {
        r = 0;
    } else {
        fprintf(stderr, "command \"%s\" not found\n", c);
        r = -EINVAL;
    }
    free(line);
    return r;
}

static void usage(void)
{
    printf("Usage: qkvm-io [OPTIONS]... [-c STRING]... [file]\n"
           "  -c, --cmd STRING     run a command (read, write, readv, writev, discard, map,\n"
           "                       alloc, flush, info, length, truncate, sleep)\n"
           "  -f, --format FMT     image format (raw, qcow2)\n"
           "  -r, --read-only      open read-only\n"
           "  -n, --nocache        cache=none\n"
           "  -t, --cache MODE     writeback, writethrough, none, directsync, unsafe\n"
           "  --object secret,id=ID,data=...|file=...\n"
           "  --image-opts         FILE is driver=,file.filename=,encrypt.key-secret=...\n");
}

int main(int argc, char **argv)
{
    log_set_prog("qkvm-io");
    static const struct option lo[] = {
        { "cmd", required_argument, 0, 'c' }, { "format", required_argument, 0, 'f' },
        { "read-only", no_argument, 0, 'r' }, { "nocache", no_argument, 0, 'n' },
        { "cache", required_argument, 0, 't' }, { "object", required_argument, 0, 'O' },
        { "image-opts", no_argument, 0, 'I' }, { "help", no_argument, 0, 'h' },
        { "force-share", no_argument, 0, 'U' }, { 0, 0, 0, 0 },
    };
    const char *cmds[256];
    int ncmds = 0;
    struct block_open_opts o = { 0 };
    bool image_opts = false;
    char err[BLOCK_ERR_MAX];
    int c;
    while ((c = getopt_long(argc, argv, "c:f:rnt:hUq", lo, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (ncmds < 256)
                cmds[ncmds++] = optarg;
            break;
        case 'f':
            if (block_parse_format(optarg, &o.format)) {
                log_error("Unknown driver '%s'", optarg);
                return 1;
            }
            break;
        case 'r': o.read_only = true; break;
        case 'n': o.cache = BLOCK_CACHE_NONE; break;
        case 't':
            if (block_parse_cache(optarg, &o.cache)) {
                log_error("Invalid cache option: %s", optarg);
                return 1;
            }
            break;
        case 'O':
            if (cli_add_object(optarg, err)) {
                log_error("%s", err);
                return 1;
            }
            break;
        case 'I': image_opts = true; break;
        case 'U': o.force_share = true; break;
        case 'q': break;
        case 'h': usage(); return 0;
        default: usage(); return 1;
        }
    }
    if (optind != argc - 1) {
        usage();
        return 1;
    }
    char *path = argv[optind];
    if (image_opts) {
        if (cli_parse_image_opts(argv[optind], &path, &o, err)) {
            log_error("%s", err);
            return 1;
        }
    } else if (!o.secret) {
        o.secret = cli_default_secret(&o.secret_len);
    }
    fname = path;
    int r = block_open(path, &o, &bs, err);
    if (r) {
        log_error("%s", err);
        return 1;
    }
    int failed = 0;
    for (int i = 0; i < ncmds; i++)
        if (run_command(cmds[i]))
            failed = 1;
    r = block_close(bs);
    if (r) {
        log_error("Could not close '%s': %s", fname, strerror(-r));
        failed = 1;
    }
    return failed;
}
