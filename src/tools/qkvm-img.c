/* qkvm-img: qemu-img's commands and output on the qkvm block layer.
 *   qkvm-img COMMAND [options]   (create, info, check, convert, snapshot, resize, commit,
 *                                 rebase, map, compare, measure, amend, bench, dd) */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "block/cli.h"
#include "block/luks.h"
#include "block/snapshot.h"
#include "util/json.h"
#include "util/log.h"
#include "util/parse.h"

#define err_exit(...) do { log_error(__VA_ARGS__); return 1; } while (0)

enum { OPT_OUTPUT = 256, OPT_OBJECT, OPT_IMAGE_OPTS, OPT_BACKING_CHAIN, OPT_SHRINK,
       OPT_SIZE, OPT_START, OPT_MAXLEN, OPT_PREALLOC, OPT_PATTERN, OPT_FLUSH };

/* Options every command shares. */
struct common {
    const char *fmt;
    bool image_opts;
    bool json;
    bool quiet;
};

/* -U: read-only opens let other processes write (QEMU's force-share) */
static bool force_share;

static int handle_common(int c, const char *arg, struct common *co)
{
    char err[BLOCK_ERR_MAX];
    switch (c) {
    case 'f': co->fmt = arg; return 1;
    case 'q': co->quiet = true; return 1;
    case 'U': force_share = true; return 1;
    case OPT_IMAGE_OPTS: co->image_opts = true; return 1;
    case OPT_OUTPUT:
        if (!strcmp(arg, "json"))
            co->json = true;
        else if (strcmp(arg, "human")) {
            log_error("--output must be used with human or json as argument.");
            return -1;
        }
        return 1;
    case OPT_OBJECT:
        if (cli_add_object(arg, err)) {
            log_error("%s", err);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* Opens an image as the user named it; prints one line and returns NULL on failure. */
static struct block *open_image(const char *name, const char *fmt, bool image_opts, bool ro,
                                enum block_cache cache, unsigned extra)
{
    struct block_open_opts o = { .read_only = ro, .cache = cache,
                                 .force_share = ro && force_share };
    char err[BLOCK_ERR_MAX];
    char *path = (char *)name;
    if (extra & 1)
        o.no_backing = true;
    if (extra & 2)
        o.metadata_only = true;
    if (extra & 4)
        o.no_repair = true;
    if (image_opts) {
        if (cli_parse_image_opts(name, &path, &o, err)) {
            log_error("%s", err);
            return NULL;
        }
    } else {
        if (block_parse_format(fmt, &o.format)) {
            log_error("Unknown driver '%s'", fmt);
            return NULL;
        }
        o.secret = cli_default_secret(&o.secret_len);
    }
    struct block *bs;
    int r = block_open(path, &o, &bs, err);
    if (r)
        log_error("Could not open '%s': %s", path, err);
    if (path != name)
        free(path);   /* cli_parse_image_opts's copy: the image keeps its own */
    return r ? NULL : bs;
}

/* ---- create ---- */

struct create_opts {
    uint64_t size;
    bool has_size;
    struct block_create_opts q;
    const char *secret_id;
    int prealloc;
};

static int parse_prealloc(const char *v, int *out)
{
    static const char *n[] = { "off", "metadata", "falloc", "full" };
    for (int i = 0; i < 4; i++)
        if (!strcmp(v, n[i])) {
            *out = i;
            return 0;
        }
    return -EINVAL;
}

/* The values of -o lists stay in use until the program ends (backing_file and the like point
 * into them): the lists are kept here, still reachable, rather than freed or dropped, which
 * LeakSanitizer reports. A command takes at most 16 -o. */
static struct kvlist create_opts_lists[16];
static int create_opts_nlists;

static int parse_create_opts(const char *spec, struct create_opts *c)
{
    struct kvlist l;
    if (keyval_parse(spec, NULL, &l)) {
        log_error("Invalid option list: %s", spec);
        return -EINVAL;
    }
    int r = 0;
    for (int i = 0; i < l.n && !r; i++) {
        const char *k = l.items[i].key, *v = l.items[i].val;
        uint64_t u;
        bool b;
        if (!strcmp(k, "size")) {
            if (parse_size(v, 1, &u)) goto bad;
            c->size = u;
            c->has_size = true;
        } else if (!strcmp(k, "cluster_size")) {
            if (parse_size(v, 1, &u) || u > (1u << 30)) goto bad;
            c->q.cluster_size = (unsigned)u;
        } else if (!strcmp(k, "compat")) {
            if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
                c->q.version = 2;
            else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
                c->q.version = 3;
            else goto bad;
        } else if (!strcmp(k, "lazy_refcounts")) {
            if (parse_bool(v, &b)) goto bad;
            c->q.lazy_refcounts = b;
        } else if (!strcmp(k, "preallocation")) {
            if (parse_prealloc(v, &c->prealloc)) goto bad;
        } else if (!strcmp(k, "backing_file")) {
            c->q.backing_file = v;
        } else if (!strcmp(k, "backing_fmt")) {
            c->q.backing_fmt = v;
        } else if (!strcmp(k, "compression_type")) {
            if (!strcmp(v, "zlib")) c->q.compression_type = 0;
            else if (!strcmp(v, "zstd")) c->q.compression_type = 1;
            else goto bad;
        } else if (!strcmp(k, "extended_l2")) {
            if (parse_bool(v, &b)) goto bad;
            c->q.extended_l2 = b;
        } else if (!strcmp(k, "refcount_bits")) {
            if (parse_u64(v, 1, 64, &u)) goto bad;
            c->q.refcount_bits = (int)u;
        } else if (!strcmp(k, "encrypt.format") || !strcmp(k, "encryption")) {
            if (strcmp(v, "luks") && strcmp(v, "on")) goto bad;
            c->q.encrypt = true;
        } else if (!strcmp(k, "encrypt.key-secret")) {
            c->secret_id = v;
            c->q.encrypt = true;
        } else if (!strcmp(k, "encrypt.cipher-alg")) {
            c->q.cipher_alg = v;
        } else if (!strcmp(k, "encrypt.cipher-mode")) {
            c->q.cipher_mode = v;
        } else if (!strcmp(k, "encrypt.ivgen-alg")) {
            c->q.ivgen_alg = v;
        } else if (!strcmp(k, "encrypt.hash-alg")) {
            c->q.hash_alg = v;
        } else if (!strcmp(k, "encrypt.iter-time")) {
            if (parse_u64(v, 1, 1000000, &u)) goto bad;
            c->q.iter_time_ms = u;
        } else if (!strcmp(k, "encrypt.ivgen-hash-alg")) {
            /* only meaningful for essiv: accepted and ignored */
        } else {
            log_error("Invalid parameter '%s'", k);
            r = -EINVAL;
        }
        continue;
bad:
        log_error("Parameter '%s' expects a valid value, got '%s'", k, v);
        r = -EINVAL;
    }
    if (create_opts_nlists < 16)
        create_opts_lists[create_opts_nlists++] = l;
    return r;
}

static int create_image(const char *fmt, const char *path, struct create_opts *c, bool quiet,
                        bool unsafe_backing)
{
    char err[BLOCK_ERR_MAX];
    bool qcow2 = !strcmp(fmt, "qcow2");
    if (!qcow2 && strcmp(fmt, "raw")) {
        log_error("Unknown file format '%s'", fmt);
        return -EINVAL;
    }
    if (c->secret_id) {
        c->q.secret = cli_secret(c->secret_id, &c->q.secret_len);
        if (!c->q.secret) {
            log_error("No secret with id '%s'", c->secret_id);
            return -ENOENT;
        }
    }
    if (qcow2 && c->q.backing_file && !unsafe_backing) {
        struct block_open_opts bo = { .read_only = true, .metadata_only = true };
        if (c->q.backing_fmt && block_parse_format(c->q.backing_fmt, &bo.format)) {
            log_error("Unknown backing file format '%s'", c->q.backing_fmt);
            return -EINVAL;
        }
        char *full = block_path_relative_to(path, c->q.backing_file);
        struct block *b;
        if (block_open(full, &bo, &b, err)) {
            log_error("%s: Could not open backing file: %s", path, err);
            free(full);
            return -ENOENT;
        }
        if (!c->has_size) {
            c->size = block_length(b);
            c->has_size = true;
        }
        if (!c->q.backing_fmt)
            c->q.backing_fmt = strdup(block_format_name(b));
        block_close(b);
        free(full);
    }
    if (!c->has_size) {
        log_error("Image creation needs a size parameter");
        return -EINVAL;
    }
    if (!quiet) {
        printf("Formatting '%s', fmt=%s", path, fmt);
        if (qcow2) {
            printf(" cluster_size=%u extended_l2=%s compression_type=%s",
                   c->q.cluster_size ? c->q.cluster_size : 65536,
                   c->q.extended_l2 ? "on" : "off", c->q.compression_type ? "zstd" : "zlib");
        }
        printf(" size=%" PRIu64, c->size);
        if (qcow2 && c->q.backing_file)
            printf(" backing_file=%s backing_fmt=%s", c->q.backing_file,
                   c->q.backing_fmt ? c->q.backing_fmt : "");
        if (qcow2)
            printf(" lazy_refcounts=%s refcount_bits=%d", c->q.lazy_refcounts ? "on" : "off",
                   c->q.refcount_bits ? c->q.refcount_bits : 16);
        printf("\n");
        fflush(stdout);
    }
    c->q.size = c->size;
    c->q.prealloc = c->prealloc;
    int r = block_create(fmt, path, &c->q, err);
    if (r)
        log_error("%s: %s", path, err);
    return r;
}

static int cmd_create(int argc, char **argv)
{
    struct common co = { 0 };
    struct create_opts c = { 0 };
    const char *opts[16];
    int nopts = 0;
    bool unsafe = false;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 } };
    int ch;
    const char *bfile = NULL, *bfmt = NULL;
    while ((ch = getopt_long(argc, argv, "f:o:b:F:uqh", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h)
            continue;
        switch (ch) {
        case 'o': if (nopts < 16) opts[nopts++] = optarg; break;
        case 'b': bfile = optarg; break;
        case 'F': bfmt = optarg; break;
        case 'u': unsafe = true; break;
        default:
            printf("Usage: qkvm-img create [-f fmt] [-o options] [-b backing] [-F backing_fmt] "
                   "[-u] filename [size]\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    const char *fmt = co.fmt ? co.fmt : "raw";
    for (int i = 0; i < nopts; i++)
        if (parse_create_opts(opts[i], &c))
            return 1;
    if (bfile)
        c.q.backing_file = bfile;
    if (bfmt)
        c.q.backing_fmt = bfmt;
    if (optind >= argc)
        err_exit("Expecting image file name");
    const char *path = argv[optind++];
    if (optind < argc) {
        uint64_t sz;
        if (parse_size(argv[optind], 1, &sz) || sz > INT64_MAX)
            err_exit("Invalid image size specified. You may use k, M, G, T, P or E suffixes "
                     "for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        c.size = sz;
        c.has_size = true;
        optind++;
    }
    if (optind < argc)
        err_exit("Unexpected argument: %s", argv[optind]);
    return create_image(fmt, path, &c, co.quiet, unsafe) ? 1 : 0;
}

/* ---- info ---- */

static void snapshot_header(void)
{
    printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
           "ICOUNT");
}

static void snapshot_line(const struct block_snapshot *sn)
{
    char date[32], clk[32], vms[32], ic[32] = "";
    time_t t = sn->date_sec;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t ms = sn->vm_clock_nsec / 1000000;
    snprintf(clk, sizeof(clk), "%02d:%02d:%02d.%03d", (int)(ms / 3600000),
             (int)(ms / 60000 % 60), (int)(ms / 1000 % 60), (int)(ms % 1000));
    cli_size_str(sn->vm_state_size, vms, sizeof(vms));
    if (sn->icount != BLOCK_SNAPSHOT_NO_ICOUNT)
        snprintf(ic, sizeof(ic), "%" PRIu64, sn->icount);
    printf("%-9s %-16s %8s%20s%13s%11s\n", sn->id, sn->name, vms, date, clk, ic);
}

static void info_json(struct json_writer *w, struct block *bs)
{
    struct block_info in;
    block_get_info(bs, &in);
    bool qcow2 = !strcmp(in.format, "qcow2");
    struct block_snapshot *sl;
    int ns;
    if (block_snapshot_list(bs, &sl, &ns))
        ns = 0;
    json_object_begin(w, NULL);
    if (ns) {
        json_array_begin(w, "snapshots");
        for (int i = 0; i < ns; i++) {
            struct block_snapshot *sn = &sl[i];
            json_object_begin(w, NULL);
            if (sn->icount != BLOCK_SNAPSHOT_NO_ICOUNT)
                json_uint(w, "icount", sn->icount);
            json_uint(w, "vm-clock-nsec", sn->vm_clock_nsec % 1000000000);
            json_string(w, "name", sn->name);
            json_uint(w, "date-sec", sn->date_sec);
            json_uint(w, "date-nsec", sn->date_nsec);
            json_uint(w, "vm-clock-sec", sn->vm_clock_nsec / 1000000000);
            json_string(w, "id", sn->id);
            json_uint(w, "vm-state-size", sn->vm_state_size);
            json_object_end(w);
        }
        json_array_end(w);
    }
    block_snapshot_list_free(sl, ns);
    if (in.backing_file && in.backing_format)
        json_string(w, "backing-filename-format", in.backing_format);
    json_uint(w, "virtual-size", in.virtual_size);
    json_string(w, "filename", in.filename);
    if (in.cluster_size)
        json_uint(w, "cluster-size", in.cluster_size);
    json_string(w, "format", in.format);
    json_uint(w, "actual-size", in.actual_size);
    if (in.encrypted)
        json_bool(w, "encrypted", true);
    if (qcow2) {
        json_object_begin(w, "format-specific");
        json_string(w, "type", "qcow2");
        json_object_begin(w, "data");
        json_string(w, "compat", in.version == 2 ? "0.10" : "1.1");
        json_string(w, "compression-type", in.zstd ? "zstd" : "zlib");
        if (in.version >= 3)
            json_bool(w, "lazy-refcounts", in.lazy_refcounts);
        json_int(w, "refcount-bits", in.refcount_bits);
        struct luks_info li;
        if (in.encrypted && block_get_luks_info(bs, &li) == 0) {
            json_object_begin(w, "encrypt");
            json_string(w, "ivgen-alg", li.ivgen_alg);
            if (li.ivgen_hash[0])
                json_string(w, "ivgen-hash-alg", li.ivgen_hash);
            json_string(w, "hash-alg", li.hash_alg);
            json_string(w, "cipher-alg", li.cipher_alg);
            json_string(w, "uuid", li.uuid);
            json_string(w, "format", "luks");
            json_string(w, "cipher-mode", li.cipher_mode);
            json_array_begin(w, "slots");
            for (int i = 0; i < 8; i++) {
                json_object_begin(w, NULL);
                json_bool(w, "active", li.slots[i].active);
                if (li.slots[i].active)
                    json_uint(w, "iters", li.slots[i].iters);
                json_uint(w, "key-offset", li.slots[i].key_offset);
                if (li.slots[i].active)
                    json_uint(w, "stripes", li.slots[i].stripes);
                json_object_end(w);
            }
            json_array_end(w);
            json_uint(w, "master-key-iters", li.master_key_iters);
            json_uint(w, "payload-offset", li.payload_offset);
            json_object_end(w);
        }
        if (in.version >= 3) {
            json_bool(w, "corrupt", in.corrupt);
            json_bool(w, "extended-l2", in.extended_l2);
        }
        json_object_end(w);
        json_object_end(w);
    }
    if (in.backing_file) {
        json_string(w, "full-backing-filename", in.backing_full ? in.backing_full : in.backing_file);
        json_string(w, "backing-filename", in.backing_file);
    }
    json_bool(w, "dirty-flag", in.dirty);
    json_object_end(w);
}

static void info_text(struct block *bs)
{
    struct block_info in;
    block_get_info(bs, &in);
    bool qcow2 = !strcmp(in.format, "qcow2");
    char a[64], b[64];
    cli_size_str(in.virtual_size, a, sizeof(a));
    cli_size_str(in.actual_size, b, sizeof(b));
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\ndisk size: %s\n",
           in.filename, in.format, a, in.virtual_size, b);
    if (in.cluster_size)
        printf("cluster_size: %u\n", in.cluster_size);
    if (in.encrypted)
        printf("encrypted: yes\n");
    if (in.backing_file) {
        printf("backing file: %s", in.backing_file);
        if (in.backing_full && strcmp(in.backing_full, in.backing_file))
            printf(" (actual path: %s)", in.backing_full);
        printf("\n");
        if (in.backing_format)
            printf("backing file format: %s\n", in.backing_format);
    }
    struct block_snapshot *sl;
    int ns;
    if (block_snapshot_list(bs, &sl, &ns) == 0 && ns) {
        printf("Snapshot list:\n");
        snapshot_header();
        for (int i = 0; i < ns; i++)
            snapshot_line(&sl[i]);
        block_snapshot_list_free(sl, ns);
    }
    if (qcow2) {
        printf("Format specific information:\n    compat: %s\n    compression type: %s\n",
               in.version == 2 ? "0.10" : "1.1", in.zstd ? "zstd" : "zlib");
        if (in.version >= 3)
            printf("    lazy refcounts: %s\n", in.lazy_refcounts ? "true" : "false");
        printf("    refcount bits: %d\n", in.refcount_bits);
        struct luks_info li;
        if (in.encrypted && block_get_luks_info(bs, &li) == 0) {
            printf("    encrypt:\n        ivgen alg: %s\n        hash alg: %s\n"
                   "        cipher alg: %s\n        uuid: %s\n        format: luks\n"
                   "        cipher mode: %s\n        slots:\n", li.ivgen_alg, li.hash_alg,
                   li.cipher_alg, li.uuid, li.cipher_mode);
            for (int i = 0; i < 8; i++) {
                printf("            [%d]:\n                active: %s\n", i,
                       li.slots[i].active ? "true" : "false");
                if (li.slots[i].active)
                    printf("                iters: %u\n", li.slots[i].iters);
                printf("                key offset: %u\n", li.slots[i].key_offset);
                if (li.slots[i].active)
                    printf("                stripes: %u\n", li.slots[i].stripes);
            }
            printf("        master key iters: %u\n        payload offset: %" PRIu64 "\n",
                   li.master_key_iters, li.payload_offset);
        }
        if (in.version >= 3)
            printf("    corrupt: %s\n    extended l2: %s\n", in.corrupt ? "true" : "false",
                   in.extended_l2 ? "true" : "false");
    }
}

static int cmd_info(int argc, char **argv)
{
    struct common co = { 0 };
    bool chain = false;
    static const struct option lo[] = {
        { "output", required_argument, 0, OPT_OUTPUT }, { "object", required_argument, 0, OPT_OBJECT },
        { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "backing-chain", no_argument, 0, OPT_BACKING_CHAIN }, { "force-share", no_argument, 0, 'U' },
        { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:hU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h)
            continue;
        if (ch == OPT_BACKING_CHAIN)
            chain = true;
        else {
            printf("Usage: qkvm-img info [-f fmt] [--output=json] [--backing-chain] filename\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (optind != argc - 1)
        err_exit("Expecting one image file name");
    struct block *bs = open_image(argv[optind], co.fmt, co.image_opts, true, BLOCK_CACHE_WRITEBACK,
                                  chain ? 2 : 3);
    if (!bs)
        return 1;
    struct json_writer w;
    json_init(&w, stdout, true);
    if (chain && co.json)
        json_array_begin(&w, NULL);
    for (struct block *b = bs; b; b = chain ? block_backing(b) : NULL) {
        if (co.json) {
            info_json(&w, b);
        } else {
            if (b != bs)
                printf("\n");
            info_text(b);
        }
    }
    if (chain && co.json)
        json_array_end(&w);
    block_close(bs);
    return 0;
}

/* ---- check ---- */

static void check_print(const char *fn, const char *fmt, struct block_check_result *r, bool json,
                        bool quiet)
{
    if (json) {
        struct json_writer w;
        json_init(&w, stdout, true);
        json_object_begin(&w, NULL);
        if (r->image_end_offset)
            json_uint(&w, "image-end-offset", r->image_end_offset);
        if (r->corruptions)
            json_uint(&w, "corruptions", r->corruptions);
        if (r->leaks)
            json_uint(&w, "leaks", r->leaks);
        if (r->corruptions_fixed)
            json_uint(&w, "corruptions-fixed", r->corruptions_fixed);
        if (r->leaks_fixed)
            json_uint(&w, "leaks-fixed", r->leaks_fixed);
        if (r->total_clusters)
            json_uint(&w, "total-clusters", r->total_clusters);
        json_uint(&w, "check-errors", r->check_errors);
        if (r->allocated_clusters)
            json_uint(&w, "allocated-clusters", r->allocated_clusters);
        if (r->fragmented_clusters)
            json_uint(&w, "fragmented-clusters", r->fragmented_clusters);
        if (r->compressed_clusters)
            json_uint(&w, "compressed-clusters", r->compressed_clusters);
        json_string(&w, "filename", fn);
        json_string(&w, "format", fmt);
        json_object_end(&w);
        return;
    }
    if (quiet)
        return;
    if (!r->corruptions && !r->leaks && !r->check_errors)
        printf("No errors were found on the image.\n");
    else {
        if (r->corruptions)
            printf("\n%" PRIu64 " errors were found on the image.\nData may be corrupted, or "
                   "further writes to the image may corrupt it.\n", r->corruptions);
        if (r->leaks)
            printf("\n%" PRIu64 " leaked clusters were found on the image.\nThis means waste "
                   "of disk space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters)
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
               "compressed clusters\n", r->allocated_clusters, r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

static int cmd_check(int argc, char **argv)
{
    struct common co = { 0 };
    int fix = 0;
    static const struct option lo[] = {
        { "output", required_argument, 0, OPT_OUTPUT }, { "object", required_argument, 0, OPT_OBJECT },
        { "image-opts", no_argument, 0, OPT_IMAGE_OPTS }, { "repair", required_argument, 0, 'r' },
        { "force-share", no_argument, 0, 'U' }, { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:r:T:qhU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h || ch == 'T')
            continue;
        if (ch == 'r') {
            if (!strcmp(optarg, "leaks"))
                fix = BLOCK_FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS;
            else
                err_exit("Unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
        } else {
            printf("Usage: qkvm-img check [-f fmt] [-r leaks|all] [--output=json] filename\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (optind != argc - 1)
        err_exit("Expecting one image file name");
    struct block *bs = open_image(argv[optind], co.fmt, co.image_opts, !fix, BLOCK_CACHE_WRITEBACK,
                                  1 | 2 | 4);
    if (!bs)
        return 1;
    struct block_check_result r;
    int ret = block_check(bs, fix, &r, co.json ? NULL : stderr);
    if (ret == -ENOTSUP) {
        block_close(bs);
        log_error("This image format does not support checks");
        return 63;
    }
    if (ret == 0 && (r.leaks_fixed || r.corruptions_fixed) && !co.json && !co.quiet)
        printf("The following inconsistencies were found and repaired:\n\n"
               "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n"
               "Double checking the fixed image now...\n", r.leaks_fixed, r.corruptions_fixed);
    if (ret) {
        block_close(bs);
        log_error("Check failed: %s", strerror(-ret));
        return 1;
    }
    check_print(block_filename(bs), "qcow2", &r, co.json, co.quiet);
    block_close(bs);
    if (r.check_errors)
        return 1;
    if (r.corruptions)
        return 2;
    if (r.leaks)
        return 3;
    return 0;
}

/* ---- convert ---- */

static bool is_zero(const uint8_t *p, size_t n)
{
    static const uint8_t z[4096];
    while (n >= sizeof(z)) {
        if (memcmp(p, z, sizeof(z)))
            return false;
        p += sizeof(z);
        n -= sizeof(z);
    }
    return !n || !memcmp(p, z, n);
}

static void progress(double pct)
{
    printf("    (%3.2f/100%%)\r", pct);
    fflush(stdout);
}

/* Compression of a chunk's clusters on several threads (zlib is the slow part of convert -c,
 * as QEMU's compress threads know); the writes then go in order. */
struct compress_job {
    struct block *bs;
    const uint8_t *buf;
    uint64_t n, cs;
    uint8_t *out;
    long *len;          /* per cluster: compressed length, 0 plain, <0 error; LONG_MIN skip */
    unsigned next;
};

static void *compress_worker(void *p)
{
    struct compress_job *j = p;
    uint64_t k = (j->n + j->cs - 1) / j->cs;
    for (;;) {
        uint64_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= k)
            return NULL;
        if (j->len[i] == LONG_MIN)
            continue;
        uint64_t q = i * j->cs, l = j->n - q < j->cs ? j->n - q : j->cs;
        j->len[i] = block_compress(j->bs, j->buf + q, l, j->out + q);
    }
}

static int compress_chunk(struct block *bs, uint64_t off, const uint8_t *buf, uint64_t n,
                          uint64_t cs, bool zero_init, uint8_t *cbuf, long *clen)
{
    struct compress_job j = { .bs = bs, .buf = buf, .n = n, .cs = cs, .out = cbuf, .len = clen };
    uint64_t k = (n + cs - 1) / cs;
    for (uint64_t i = 0; i < k; i++) {
        uint64_t q = i * cs, l = n - q < cs ? n - q : cs;
        clen[i] = zero_init && is_zero(buf + q, l) ? LONG_MIN : 0;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu;
    if ((uint64_t)nt > k)
        nt = (int)k;
    pthread_t t[8];
    int started = 0;
    for (int i = 1; i < nt; i++)
        if (pthread_create(&t[started], NULL, compress_worker, &j) == 0)
            started++;
    compress_worker(&j);
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    for (uint64_t i = 0; i < k; i++) {
        if (clen[i] == LONG_MIN)
            continue;
        if (clen[i] < 0)
            return (int)clen[i];
        uint64_t q = i * cs, l = n - q < cs ? n - q : cs;
        int r = block_pwrite_precompressed(bs, off + q, buf + q, l, cbuf + q, clen[i]);
        if (r)
            return r;
    }
    return 0;
}

/* The reads of a convert run on a thread of their own, a few chunks ahead of the writes, as
 * QEMU overlaps them with its coroutines: the copy out of the source (most of a plain convert's
 * time) then runs beside the writes, which stay in order on the calling thread. The reader also
 * finds the zero blocks of what it read while the data is still in its core's cache. */
enum { CV_SLOTS = 3 };
enum cv_kind { CV_DATA, CV_ZERO, CV_SKIP, CV_END };

struct cv_slot {
    uint8_t *buf;
    struct block_map map;       /* CV_DATA: the bytes (in buf or mapped from the source) */
    bool *zero;                 /* per block of `grain` bytes: all zero (CV_DATA, grain != 0) */
    uint64_t off, n;            /* target offset and length */
    enum cv_kind kind;
    int err;
    bool full;
};

struct cv_reader {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct cv_slot slot[CV_SLOTS];
    struct block **src;
    int nsrc;
    uint64_t chunk, cs, grain;
    bool compress, obacking, stop;
};

/* The slot for turn i once it is free (full == false) or filled (full == true); NULL on stop. */
static struct cv_slot *cv_wait(struct cv_reader *c, unsigned i, bool full)
{
    struct cv_slot *s = &c->slot[i % CV_SLOTS];
    pthread_mutex_lock(&c->lock);
    while (s->full != full && !c->stop)
        pthread_cond_wait(&c->cond, &c->lock);
    if (c->stop)
        s = NULL;
    pthread_mutex_unlock(&c->lock);
    return s;
}

static void cv_post(struct cv_reader *c, struct cv_slot *s, bool full)
{
    pthread_mutex_lock(&c->lock);
    s->full = full;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void cv_stop(struct cv_reader *c)
{
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* A source mapped by block_pread_map that someone truncates under us: its lost pages turn
 * into zero pages (the copy runs on, on either thread) and the convert fails with -EIO. Any
 * other SIGBUS kills the process as it would have. */
static struct cv_reader *cv_active;
static long cv_page;
static volatile sig_atomic_t cv_lost;

static void cv_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uintptr_t a = (uintptr_t)si->si_addr;
    for (int i = 0; cv_active && i < CV_SLOTS; i++) {
        struct block_map *m = &cv_active->slot[i].map;
        if (m->addr && a >= (uintptr_t)m->addr && a - (uintptr_t)m->addr < m->maplen) {
            void *pg = (void *)(a & ~(uintptr_t)(cv_page - 1));
            if (mmap(pg, cv_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
                pg) {
                cv_lost = 1;
                return;
            }
        }
    }
    signal(sig, SIG_DFL);       /* the access faults again, now fatally */
}

/* Which grain-sized blocks of the slot's data are all zeros. */
static int cv_scan(struct cv_slot *s, uint64_t grain)
{
    for (uint64_t q = 0, k = 0; q < s->n; q += grain, k++)
        s->zero[k] = is_zero(s->map.data + q, s->n - q < grain ? s->n - q : grain);
    return cv_lost ? -EIO : 0;
}

static void *cv_read(void *p)
{
    struct cv_reader *c = p;
    uint64_t doff = 0;
    unsigned turn = 0;
    struct cv_slot *s;
    for (int i = 0; i < c->nsrc; i++) {
        struct block *sb = c->src[i];
        uint64_t len = block_length(sb);
        for (uint64_t pos = 0, n; pos < len; pos += n) {
            if (!(s = cv_wait(c, turn++, false)))
                return NULL;
            block_unmap(&s->map);
            uint64_t want = c->chunk - ((doff + pos) % c->chunk);
            if (want > len - pos)
                want = len - pos;
            struct block_status st;
            s->off = doff + pos;
            s->err = block_status_chain(sb, pos, want, &s->n, &st);
            if (!s->err && c->compress && s->n < want && s->n % c->cs) {
                /* whole clusters for compression */
                s->n = want;
                st.flags = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
            }
            if (c->obacking && !(st.flags & BLOCK_STATUS_ALLOCATED))
                s->kind = CV_SKIP;
            else if ((st.flags & BLOCK_STATUS_ZERO) && !(st.flags & BLOCK_STATUS_DATA))
                s->kind = CV_ZERO;
            else
                s->kind = CV_DATA;
            if (!s->err && s->kind == CV_DATA && c->compress) {
                /* the compression threads read buf: no mapping that could vanish under them */
                s->err = block_pread(sb, pos, s->buf, s->n);
                s->map.data = s->buf;
            } else if (!s->err && s->kind == CV_DATA) {
                if (!(s->err = block_pread_map(sb, pos, s->n, s->buf, &s->map)) && c->grain)
                    s->err = cv_scan(s, c->grain);
            }
            n = s->n;
            int err = s->err;
            cv_post(c, s, true);
            if (err)
                return NULL;
        }
        doff += len;
    }
    if ((s = cv_wait(c, turn, false))) {
        s->kind = CV_END;
        s->err = 0;
        cv_post(c, s, true);
    }
    return NULL;
}

/* A write from a mapping fails with EFAULT when the source shrank under it: an I/O error
 * of the source, not a bad pointer of ours. */
static int cv_efault(struct cv_slot *s, int r)
{
    return (r == -EFAULT && s->map.addr) || cv_lost ? -EIO : r;
}

/* Writes one chunk the reader filled. */
static int cv_write(struct block *out, struct cv_slot *s, uint64_t grain, bool compress,
                    uint64_t cs, bool zero_init, uint8_t *cbuf, long *clen)
{
    uint64_t off = s->off, n = s->n;
    if (s->kind == CV_SKIP)
        return 0;               /* left to the new backing file */
    if (s->kind == CV_ZERO)
        return zero_init ? 0 : block_pwrite_zeroes(out, off, n, BLOCK_ZERO_MAY_UNMAP);
    if (compress)
        return compress_chunk(out, off, s->buf, n, cs, zero_init, cbuf, clen);
    if (!grain)
        return cv_efault(s, block_pwrite(out, off, s->map.data, n));
    /* write the non-zero runs, skip (or zero) the zero ones */
    int r = 0;
    for (uint64_t q = 0, k = 0; q < n && !r;) {
        bool z = s->zero[k];
        uint64_t e = q;
        while (e < n && s->zero[k] == z) {
            e += grain;
            k++;
        }
        if (e > n)
            e = n;
        if (!z)
            r = block_pwrite(out, off + q, s->map.data + q, e - q);
        else if (!zero_init)
            r = block_pwrite_zeroes(out, off + q, e - q, BLOCK_ZERO_MAY_UNMAP);
        q = e;
    }
    return cv_efault(s, r);
}

static int cmd_convert(int argc, char **argv)
{
    struct common co = { 0 };
    const char *ofmt = "raw", *obacking = NULL;
    const char *opts[16];
    int nopts = 0;
    bool compress = false, prog = false, noc = false;
    uint64_t sparse = 4096;
    enum block_cache tcache = BLOCK_CACHE_UNSAFE;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "force-share", no_argument, 0, 'U' }, { "target-image-opts", no_argument, 0, 'x' },
        { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:O:o:B:cpnWS:t:T:m:r:qhU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h)
            continue;
        switch (ch) {
        case 'O': ofmt = optarg; break;
        case 'o': if (nopts < 16) opts[nopts++] = optarg; break;
        case 'B': obacking = optarg; break;
        case 'c': compress = true; break;
        case 'p': prog = true; break;
        case 'n': noc = true; break;
        case 'W': case 'T': case 'm': case 'r': break;
        case 't':
            if (block_parse_cache(optarg, &tcache))
                err_exit("Invalid cache option: %s", optarg);
            break;
        case 'S':
            if (parse_size(optarg, 1, &sparse))
                err_exit("Invalid buffer size for sparse output specified");
            break;
        default:
            printf("Usage: qkvm-img convert [-c] [-p] [-n] [-W] [-f fmt] [-O fmt] [-o opts] "
                   "[-B backing] [-S size] src... dst\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (argc - optind < 2)
        err_exit("Expecting image file name");
    int nsrc = argc - optind - 1;
    const char *dst = argv[argc - 1];
    struct block **src = calloc(nsrc, sizeof(*src));
    uint64_t total = 0;
    int ret = 1;
    for (int i = 0; i < nsrc; i++) {
        src[i] = open_image(argv[optind + i], co.fmt, co.image_opts, true, BLOCK_CACHE_WRITEBACK, 0);
        if (!src[i])
            goto out;
        total += block_length(src[i]);
    }
    if (compress && strcmp(ofmt, "qcow2")) {
        log_error("Compression not supported for this file format");
        goto out;
    }
    struct create_opts c = { 0 };
    for (int i = 0; i < nopts; i++)
        if (parse_create_opts(opts[i], &c))
            goto out;
    if (obacking)
        c.q.backing_file = obacking;
    if (!noc) {
        c.size = total;
        c.has_size = true;
        if (create_image(ofmt, dst, &c, true, false))
            goto out;
    }
    struct block_open_opts oo = { .cache = tcache };
    if (block_parse_format(ofmt, &oo.format)) {
        log_error("Unknown file format '%s'", ofmt);
        goto out;
    }
    if (c.q.encrypt && c.secret_id)
        oo.secret = cli_secret(c.secret_id, &oo.secret_len);
    else
        oo.secret = cli_default_secret(&oo.secret_len);
    char err[BLOCK_ERR_MAX];
    struct block *out;
    if (block_open(dst, &oo, &out, err)) {
        log_error("Could not open '%s': %s", dst, err);
        goto out;
    }
    if (block_length(out) < total) {
        log_error("Target image too small (%" PRIu64 " < %" PRIu64 ")", block_length(out), total);
        block_close(out);
        goto out;
    }
    struct block_info oinfo;
    block_get_info(out, &oinfo);
    uint64_t chunk = 2 << 20;
    uint64_t cs = oinfo.cluster_size ? oinfo.cluster_size : 65536;
    if (chunk < cs)
        chunk = cs;
    bool zero_init = !noc && !block_backing(out) && !obacking;
    uint64_t grain = compress || !sparse ? 0 : sparse < 512 ? 512 : sparse;
    struct cv_reader rd = { .src = src, .nsrc = nsrc, .chunk = chunk, .cs = cs, .grain = grain,
                            .compress = compress, .obacking = obacking != NULL };
    pthread_mutex_init(&rd.lock, NULL);
    pthread_cond_init(&rd.cond, NULL);
    int r = 0;
    for (int i = 0; i < CV_SLOTS; i++) {
        rd.slot[i].buf = malloc(chunk);
        rd.slot[i].zero = grain ? malloc(chunk / grain + 1) : NULL;
        if (!rd.slot[i].buf || (grain && !rd.slot[i].zero))
            r = -ENOMEM;
    }
    uint8_t *cbuf = compress ? malloc(chunk) : NULL;
    long *clen = compress ? calloc(chunk / cs + 1, sizeof(*clen)) : NULL;
    if (compress && (!cbuf || !clen))
        r = -ENOMEM;
    struct sigaction sa = { .sa_sigaction = cv_sigbus, .sa_flags = SA_SIGINFO }, old_sa;
    cv_page = sysconf(_SC_PAGESIZE);
    cv_active = &rd;
    sigaction(SIGBUS, &sa, &old_sa);
    pthread_t reader;
    bool started = false;
    if (!r && !(r = -pthread_create(&reader, NULL, cv_read, &rd)))
        started = true;
    uint64_t done = 0;
    if (prog)
        progress(0);
    for (unsigned turn = 0; !r; turn++) {
        struct cv_slot *s = cv_wait(&rd, turn, true);
        if (!s || (r = s->err) || s->kind == CV_END)
            break;
        r = cv_write(out, s, grain, compress, cs, zero_init, cbuf, clen);
        done += s->n;
        cv_post(&rd, s, false);
        if (prog)
            progress(total ? done * 100.0 / total : 100);
    }
    if (started) {
        cv_stop(&rd);
        pthread_join(reader, NULL);
    }
    for (int i = 0; i < CV_SLOTS; i++) {
        block_unmap(&rd.slot[i].map);
        free(rd.slot[i].buf);
        free(rd.slot[i].zero);
    }
    sigaction(SIGBUS, &old_sa, NULL);
    cv_active = NULL;
    pthread_mutex_destroy(&rd.lock);
    pthread_cond_destroy(&rd.cond);
    free(cbuf);
    free(clen);
    if (r) {
        log_error("error while writing at byte %" PRIu64 ": %s", done, strerror(-r));
        block_close(out);
        goto out;
    }
    if (prog) {
        progress(100);
        printf("\n");
    }
    if ((r = block_close(out))) {
        log_error("Could not close '%s': %s", dst, strerror(-r));
        goto out;
    }
    ret = 0;
out:
    for (int i = 0; i < nsrc; i++)
        block_close(src[i]);
    free(src);
    return ret;
}

/* ---- map ---- */

struct mapent {
    uint64_t start, len, off;
    int depth;
    bool present, zero, data, has_off;
    const char *file;
};

static void map_print(const struct mapent *e, bool json, bool first)
{
    if (json) {
        printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d, \"present\": %s,"
               " \"zero\": %s, \"data\": %s", first ? "[" : ",\n", e->start, e->len, e->depth,
               e->present ? "true" : "false", e->zero ? "true" : "false",
               e->data ? "true" : "false");
        if (e->has_off)
            printf(", \"offset\": %" PRIu64, e->off);
        printf("}");
    } else if (e->data && e->has_off) {
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->len, e->off,
               e->file);
    }
}

static int cmd_map(int argc, char **argv)
{
    struct common co = { 0 };
    uint64_t start = 0, maxlen = UINT64_MAX;
    static const struct option lo[] = {
        { "output", required_argument, 0, OPT_OUTPUT }, { "object", required_argument, 0, OPT_OBJECT },
        { "image-opts", no_argument, 0, OPT_IMAGE_OPTS }, { "force-share", no_argument, 0, 'U' },
        { "start-offset", required_argument, 0, 's' }, { "max-length", required_argument, 0, 'l' },
        { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:hUs:l:", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h)
            continue;
        if (ch == 's') {
            if (parse_size(optarg, 1, &start))
                err_exit("Invalid start offset specified");
        } else if (ch == 'l') {
            if (parse_size(optarg, 1, &maxlen))
                err_exit("Invalid length specified");
        } else {
            printf("Usage: qkvm-img map [-f fmt] [--output=json] filename\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (optind != argc - 1)
        err_exit("Expecting one image file name");
    struct block *bs = open_image(argv[optind], co.fmt, co.image_opts, true, BLOCK_CACHE_WRITEBACK, 0);
    if (!bs)
        return 1;
    uint64_t size = block_length(bs);
    uint64_t end = maxlen < size - (start < size ? start : size) ? start + maxlen : size;
    if (!co.json)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    struct mapent cur = { 0 };
    bool have = false, first = true;
    for (uint64_t p = start; p < end;) {
        uint64_t n;
        struct block_status st;
        int r = block_status_chain(bs, p, end - p, &n, &st);
        if (r) {
            block_close(bs);
            err_exit("Could not read file metadata: %s", strerror(-r));
        }
        struct mapent e = {
            .start = p, .len = n, .depth = st.depth,
            .present = st.flags & BLOCK_STATUS_ALLOCATED, .zero = st.flags & BLOCK_STATUS_ZERO,
            .data = st.flags & BLOCK_STATUS_DATA, .has_off = st.flags & BLOCK_STATUS_OFFSET,
            .off = st.host_off, .file = st.file,
        };
        if (have && cur.depth == e.depth && cur.present == e.present && cur.zero == e.zero &&
            cur.data == e.data && cur.has_off == e.has_off &&
            (!e.has_off || cur.off + cur.len == e.off) &&
            (!cur.file || !e.file || !strcmp(cur.file, e.file))) {
            cur.len += n;
        } else {
            if (have) {
                map_print(&cur, co.json, first);
                first = false;
            }
            cur = e;
            have = true;
        }
        p += n;
    }
    if (have)
        map_print(&cur, co.json, first);
    if (co.json)
        printf("%s]\n", first && !have ? "[" : "");
    block_close(bs);
    return 0;
}

/* ---- compare ---- */

static int cmd_compare(int argc, char **argv)
{
    struct common co = { 0 };
    const char *fmt2 = NULL;
    bool strict = false;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "force-share", no_argument, 0, 'U' }, { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:F:T:pqshU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 2;
        if (h || ch == 'T' || ch == 'p')
            continue;
        if (ch == 'F')
            fmt2 = optarg;
        else if (ch == 's')
            strict = true;
        else {
            printf("Usage: qkvm-img compare [-f fmt] [-F fmt] [-s] [-q] img1 img2\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 2) {
        log_error("Expecting two image file names");
        return 2;
    }
    struct block *a = open_image(argv[optind], co.fmt, co.image_opts, true, BLOCK_CACHE_WRITEBACK, 0);
    struct block *b = a ? open_image(argv[optind + 1], fmt2 ? fmt2 : co.fmt, co.image_opts, true,
                                     BLOCK_CACHE_WRITEBACK, 0) : NULL;
    if (!a || !b) {
        block_close(a);
        return 2;
    }
    uint64_t la = block_length(a), lb = block_length(b), lmin = la < lb ? la : lb;
    int ret = 0;
    if (la != lb && strict) {
        printf("Strict mode: Image size mismatch!\n");
        ret = 1;
        goto done;
    }
    size_t chunk = 1 << 20;
    uint8_t *ba = malloc(chunk), *bb = malloc(chunk);
    for (uint64_t p = 0; p < lmin && !ret;) {
        uint64_t n = lmin - p < chunk ? lmin - p : chunk;
        uint64_t na, nb;
        struct block_status sa, sb;
        if (block_status_chain(a, p, n, &na, &sa) || block_status_chain(b, p, n, &nb, &sb)) {
            log_error("Error while reading offset %" PRIu64, p);
            ret = 2;
            break;
        }
        n = na < nb ? na : nb;
        bool za = (sa.flags & BLOCK_STATUS_ZERO) && !(sa.flags & BLOCK_STATUS_DATA);
        bool zb = (sb.flags & BLOCK_STATUS_ZERO) && !(sb.flags & BLOCK_STATUS_DATA);
        if (strict && (!!(sa.flags & BLOCK_STATUS_ALLOCATED) != !!(sb.flags & BLOCK_STATUS_ALLOCATED))) {
            printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", p);
            ret = 1;
            break;
        }
        if (!(za && zb)) {
            if ((!za && block_pread(a, p, ba, n)) || (!zb && block_pread(b, p, bb, n))) {
                log_error("Error while reading offset %" PRIu64, p);
                ret = 2;
                break;
            }
            if (za)
                memset(ba, 0, n);
            if (zb)
                memset(bb, 0, n);
            if (memcmp(ba, bb, n)) {
                uint64_t k = 0;
                while (ba[k] == bb[k])
                    k++;
                /* qemu-img reports the start of the differing 512-byte sector */
                printf("Content mismatch at offset %" PRIu64 "!\n", (uint64_t)((p + k) & ~(uint64_t)511));
                ret = 1;
                break;
            }
        }
        p += n;
    }
    if (!ret && la != lb) {
        struct block *big = la > lb ? a : b;
        if (!co.quiet)
            printf("Warning: Image size mismatch!\n");
        for (uint64_t p = lmin; p < block_length(big) && !ret;) {
            uint64_t n = block_length(big) - p < chunk ? block_length(big) - p : chunk;
            if (block_pread(big, p, ba, n)) {
                ret = 2;
                break;
            }
            if (!is_zero(ba, n)) {
                uint64_t k = 0;
                while (!ba[k])
                    k++;
                printf("Content mismatch at offset %" PRIu64 "!\n", (uint64_t)((p + k) & ~(uint64_t)511));
                ret = 1;
            }
            p += n;
        }
    }
    free(ba);
    free(bb);
done:
    if (!ret && !co.quiet)
        printf("Images are identical.\n");
    block_close(a);
    block_close(b);
    return ret;
}

/* ---- resize ---- */

static int cmd_resize(int argc, char **argv)
{
    struct common co = { 0 };
    bool shrink = false;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "shrink", no_argument, 0, OPT_SHRINK }, { "preallocation", required_argument, 0, OPT_PREALLOC },
        { 0, 0, 0, 0 } };
    int ch;
    /* a leading '-' of "-1G" must not be taken for an option */
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] >= '0' && argv[i][1] <= '9') {
            char *t = argv[i];
            memmove(&argv[i], &argv[i + 1], (argc - i - 1) * sizeof(*argv));
            argv[argc - 1] = t;
            break;
        }
    int nargs = argc;
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] >= '0' && argv[i][1] <= '9')
            nargs = i;
    while ((ch = getopt_long(nargs, argv, "f:qh", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h || ch == OPT_PREALLOC)
            continue;
        if (ch == OPT_SHRINK)
            shrink = true;
        else {
            printf("Usage: qkvm-img resize [-f fmt] [--shrink] filename [+|-]size\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (argc - optind != 2)
        err_exit("Expecting image file name and size");
    const char *ss = argv[optind + 1];
    int sign = 0;
    if (*ss == '+' || *ss == '-')
        sign = *ss++ == '+' ? 1 : -1;
    uint64_t v;
    if (parse_size(ss, 1, &v))
        err_exit("Invalid size specified.");
    struct block *bs = open_image(argv[optind], co.fmt, co.image_opts, false, BLOCK_CACHE_WRITEBACK, 0);
    if (!bs)
        return 1;
    uint64_t cur = block_length(bs), ns = sign > 0 ? cur + v : sign < 0 ? cur - v : v;
    if (sign < 0 && v > cur) {
        block_close(bs);
        err_exit("New image size must be positive");
    }
    if (ns < cur && !shrink) {
        block_close(bs);
        err_exit("Use the --shrink option to perform a shrink operation.");
    }
    int r = block_truncate(bs, ns, shrink);
    int r2 = block_close(bs);
    if (r || r2) {
        if (r == -ENOTSUP)
            err_exit("Cannot shrink an image with internal snapshots");
        err_exit("Error resizing image: %s", strerror(-(r ? r : r2)));
    }
    if (!co.quiet)
        printf("Image resized.\n");
    return 0;
}

/* ---- snapshot ---- */

static int cmd_snapshot(int argc, char **argv)
{
    struct common co = { 0 };
    int action = 0;
    const char *name = NULL;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "force-share", no_argument, 0, 'U' }, { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:c:a:d:lqhU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h)
            continue;
        if (ch == 'c' || ch == 'a' || ch == 'd' || ch == 'l') {
            if (action)
                err_exit("Cannot mix '-l', '-a', '-c', '-d'");
            action = ch;
            name = optarg;
        } else {
            printf("Usage: qkvm-img snapshot [-l | -a snapshot | -c snapshot | -d snapshot] "
                   "filename\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (optind != argc - 1)
        err_exit("Expecting one image file name");
    if (!action)
        action = 'l';
    struct block *bs = open_image(argv[optind], co.fmt, co.image_opts, action == 'l',
                                  BLOCK_CACHE_WRITEBACK, action == 'l' ? 3 : 0);
    if (!bs)
        return 1;
    int r = 0, ret = 0;
    struct block_snapshot *sl;
    int ns;
    if (block_snapshot_list(bs, &sl, &ns) == -ENOTSUP) {
        block_close(bs);
        err_exit("Snapshots are not supported by the '%s' format", block_format_name(bs));
    }
    switch (action) {
    case 'l':
        if (ns) {
            printf("Snapshot list:\n");
            snapshot_header();
            for (int i = 0; i < ns; i++)
                snapshot_line(&sl[i]);
        }
        break;
    case 'c': {
        struct block_snapshot sn = { .name = (char *)name };
        r = block_snapshot_create(bs, &sn);
        if (r) {
            log_error("Could not create snapshot '%s': %s", name, strerror(-r));
            ret = 1;
        }
        break;
    }
    case 'a':
        r = block_snapshot_goto(bs, name);
        if (r) {
            log_error("Could not apply snapshot '%s': %s", name,
                      r == -ENOENT ? "Can't find the snapshot" : strerror(-r));
            ret = 1;
        }
        break;
    case 'd':
        r = block_snapshot_delete_by(bs, name);
        if (r) {
            log_error("Could not delete snapshot '%s': %s", name,
                      r == -ENOENT ? "Can't find the snapshot" : strerror(-r));
            ret = 1;
        }
        break;
    }
    block_snapshot_list_free(sl, ns);
    if (block_close(bs))
        ret = 1;
    return ret;
}

/* ---- commit ---- */

/* The layer of top's backing chain that name designates (by file identity, name taken as given
 * or relative to top's directory), its depth in *depth; NULL if none. */
static struct block *find_in_chain(struct block *top, const char *name, int *depth)
{
    struct stat want, st;
    char *rel = block_path_relative_to(block_filename(top), name);
    bool ok = stat(name, &want) == 0 || (rel && stat(rel, &want) == 0);
    free(rel);
    if (!ok)
        return NULL;
    *depth = 1;
    for (struct block *b = block_backing(top); b; b = block_backing(b), (*depth)++)
        if (stat(block_filename(b), &st) == 0 && st.st_dev == want.st_dev &&
            st.st_ino == want.st_ino)
            return b;
    return NULL;
}

static int cmd_commit(int argc, char **argv)
{
    struct common co = { 0 };
    bool drop = false, prog = false;
    const char *base_name = NULL;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:t:b:r:dpqh", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h || ch == 't' || ch == 'r')
            continue;
        if (ch == 'd')
            drop = true;
        else if (ch == 'p')
            prog = true;
        else if (ch == 'b')
            base_name = optarg;
        else {
            printf("Usage: qkvm-img commit [-f fmt] [-b base] [-d] [-p] filename\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (optind != argc - 1)
        err_exit("Expecting one image file name");
    /* as QEMU: an explicit base implies -d, since emptying the top would uncover the layers
     * between it and the base */
    if (base_name)
        drop = true;
    struct block *top = open_image(argv[optind], co.fmt, co.image_opts, drop, BLOCK_CACHE_WRITEBACK, 0);
    if (!top)
        return 1;
    struct block *bk = block_backing(top);
    int depth = 1;
    if (!bk) {
        block_close(top);
        err_exit("Image does not have a backing file");
    }
    if (base_name && !(bk = find_in_chain(top, base_name, &depth))) {
        block_close(top);
        err_exit("Did not find '%s' in the backing chain of '%s'", base_name, argv[optind]);
    }
    /* past the end of a shorter layer above the base, top reads zeros whatever the base has */
    uint64_t len = block_length(top), shortest = len;
    for (struct block *b = block_backing(top); b && b != bk; b = block_backing(b))
        if (block_length(b) < shortest)
            shortest = block_length(b);
    struct block_open_opts bo = { .cache = BLOCK_CACHE_UNSAFE };
    struct block_info ti;
    block_get_info(top, &ti);
    const char *bfmt = depth == 1 && ti.backing_format ? ti.backing_format : block_format_name(bk);
    block_parse_format(bfmt, &bo.format);
    bo.secret = cli_default_secret(&bo.secret_len);
    char err[BLOCK_ERR_MAX];
    char *base_path = strdup(block_filename(bk));
    struct block *base;
    if (block_open(base_path, &bo, &base, err)) {
        block_close(top);
        err_exit("Could not open '%s': %s", base_path, err);
    }
    free(base_path);
    int r = 0;
    if (block_length(base) < len)
        r = block_truncate(base, len, false);
    uint8_t *buf = malloc(2 << 20);
    for (uint64_t p = 0; p < len && !r;) {
        uint64_t n;
        struct block_status st;
        uint64_t want = len - p < (2 << 20) ? len - p : (2 << 20);
        if (p >= shortest) {
            r = block_pwrite_zeroes(base, p, len - p, 0);
            p = len;
            break;
        }
        if (want > shortest - p)
            want = shortest - p;
        if ((r = block_status_chain(top, p, want, &n, &st)))
            break;
        /* what a layer above the base decides goes down into it */
        if ((st.flags & BLOCK_STATUS_ALLOCATED) && st.depth < depth) {
            if ((st.flags & BLOCK_STATUS_ZERO) && !(st.flags & BLOCK_STATUS_DATA))
                r = block_pwrite_zeroes(base, p, n, 0);
            else if (!(r = block_pread(top, p, buf, n)))
                r = block_pwrite(base, p, buf, n);
        }
        p += n;
        if (prog)
            progress(p * 100.0 / len);
    }
    free(buf);
    if (prog && !r) {
        progress(100);
        printf("\n");
    }
    int r2 = block_close(base);
    if (!r)
        r = r2;
    if (!r && !drop) {
        r = block_make_empty(top);
        if (r == -ENOTSUP)
            r = 0;
    }
    r2 = block_close(top);
    if (r || r2)
        err_exit("Commit failed: %s", strerror(-(r ? r : r2)));
    if (!co.quiet)
        printf("Image committed.\n");
    return 0;
}

/* ---- rebase ---- */

static int cmd_rebase(int argc, char **argv)
{
    struct common co = { 0 };
    const char *nb = NULL, *nbfmt = NULL;
    bool unsafe = false, prog = false;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "force-share", no_argument, 0, 'U' }, { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:F:b:t:T:upqhU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h || ch == 't' || ch == 'T')
            continue;
        if (ch == 'b')
            nb = optarg;
        else if (ch == 'F')
            nbfmt = optarg;
        else if (ch == 'u')
            unsafe = true;
        else if (ch == 'p')
            prog = true;
        else {
            printf("Usage: qkvm-img rebase [-f fmt] [-u] [-b backing] [-F backing_fmt] filename\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (optind != argc - 1 || !nb)
        err_exit("Expecting one image file name and -b");
    struct block *bs = open_image(argv[optind], co.fmt, co.image_opts, false, BLOCK_CACHE_WRITEBACK,
                                  unsafe ? 1 : 0);
    if (!bs)
        return 1;
    if (strcmp(block_format_name(bs), "qcow2")) {
        block_close(bs);
        err_exit("Backing files are not supported by the '%s' format", block_format_name(bs));
    }
    int r = 0;
    char err[BLOCK_ERR_MAX];
    struct block *newb = NULL;
    if (!unsafe && *nb) {
        struct block_open_opts bo = { .read_only = true };
        if (nbfmt && block_parse_format(nbfmt, &bo.format)) {
            block_close(bs);
            err_exit("Unknown backing file format '%s'", nbfmt);
        }
        bo.secret = cli_default_secret(&bo.secret_len);
        char *full = block_path_relative_to(argv[optind], nb);
        r = block_open(full, &bo, &newb, err);
        free(full);
        if (r) {
            block_close(bs);
            err_exit("Could not open new backing file '%s': %s", nb, err);
        }
        if (!nbfmt)
            nbfmt = block_format_name(newb);
    }
    if (!unsafe) {
        uint64_t len = block_length(bs);
        size_t chunk = 1 << 20;
        uint8_t *a = malloc(chunk), *b = malloc(chunk);
        for (uint64_t p = 0; p < len && !r;) {
            uint64_t n;
            struct block_status st;
            uint64_t want = len - p < chunk ? len - p : chunk;
            if ((r = block_status_layer(bs, p, want, &n, &st)))
                break;
            if (!(st.flags & BLOCK_STATUS_ALLOCATED)) {
                /* old view (backing chain) against the new backing file */
                if ((r = block_pread(bs, p, a, n)))
                    break;
                memset(b, 0, n);
                if (newb && p < block_length(newb)) {
                    uint64_t m = block_length(newb) - p < n ? block_length(newb) - p : n;
                    if ((r = block_pread(newb, p, b, m)))
                        break;
                }
                if (memcmp(a, b, n)) {
                    for (uint64_t q = 0; q < n && !r; q += 65536) {
                        uint64_t l = n - q < 65536 ? n - q : 65536;
                        if (memcmp(a + q, b + q, l))
                            r = block_pwrite(bs, p + q, a + q, l);
                    }
                }
            }
            p += n;
            if (prog)
                progress(p * 100.0 / len);
        }
        free(a);
        free(b);
        if (prog && !r)
            printf("\n");
    }
    if (!r) {
        r = block_set_backing(bs, nb, *nb ? nbfmt : NULL);
    }
    block_close(newb);
    int r2 = block_close(bs);
    if (r || r2)
        err_exit("Could not change the backing file to '%s': %s", nb, strerror(-(r ? r : r2)));
    return 0;
}

/* ---- measure ---- */

static uint64_t refcount_metadata_size(uint64_t clusters, uint64_t cs, int rorder)
{
    uint64_t per_table = cs / 8, per_block = cs * 8 / (1u << rorder);
    uint64_t table = 0, blocks = 0, last, n = 0;
    do {
        last = n;
        blocks = (clusters + table + blocks + per_block - 1) / per_block;
        table = (blocks + per_table - 1) / per_table;
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
}

static uint64_t qcow2_full_size(uint64_t size, uint64_t cs, int rorder, bool ext)
{
    uint64_t aligned = (size + cs - 1) / cs * cs, meta = cs, l2e = ext ? 16 : 8;
    uint64_t nl2e = aligned / cs;
    nl2e = (nl2e + cs / l2e - 1) / (cs / l2e) * (cs / l2e);
    meta += nl2e * l2e;
    uint64_t nl1e = nl2e * l2e / cs;
    nl1e = (nl1e + cs / 8 - 1) / (cs / 8) * (cs / 8);
    meta += nl1e * 8;
    meta += refcount_metadata_size((meta + aligned) / cs, cs, rorder);
    return meta + aligned;
}

static int cmd_measure(int argc, char **argv)
{
    struct common co = { 0 };
    const char *ofmt = "raw";
    const char *opts[16];
    int nopts = 0;
    uint64_t size = 0;
    bool has_size = false;
    static const struct option lo[] = {
        { "output", required_argument, 0, OPT_OUTPUT }, { "object", required_argument, 0, OPT_OBJECT },
        { "image-opts", no_argument, 0, OPT_IMAGE_OPTS }, { "size", required_argument, 0, OPT_SIZE },
        { "force-share", no_argument, 0, 'U' }, { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:O:o:l:hU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h || ch == 'l')
            continue;
        if (ch == 'O')
            ofmt = optarg;
        else if (ch == 'o') {
            if (nopts < 16)
                opts[nopts++] = optarg;
        } else if (ch == OPT_SIZE) {
            if (parse_size(optarg, 1, &size))
                err_exit("Invalid image size specified.");
            has_size = true;
        } else {
            printf("Usage: qkvm-img measure [--output=json] [-O fmt] [-o opts] [--size N | "
                   "filename]\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    struct create_opts c = { 0 };
    for (int i = 0; i < nopts; i++)
        if (parse_create_opts(opts[i], &c))
            return 1;
    if (has_size == (optind < argc))
        err_exit("Either --size N or one filename must be specified.");
    struct block *bs = NULL;
    uint64_t data = 0;
    uint64_t cs = c.q.cluster_size ? c.q.cluster_size : 65536;
    bool qcow2 = !strcmp(ofmt, "qcow2");
    int src_version = 0;      /* the source's qcow2 version (0: not qcow2) */
    if (!has_size) {
        bs = open_image(argv[optind], co.fmt, co.image_opts, true, BLOCK_CACHE_WRITEBACK, 0);
        if (!bs)
            return 1;
        size = block_length(bs);
        struct block_info si;
        if (block_get_info(bs, &si) == 0)
            src_version = si.version;
        uint64_t gran = qcow2 ? cs : 1;
        for (uint64_t p = 0; p < size;) {
            uint64_t n;
            struct block_status st;
            if (block_status_chain(bs, p, size - p, &n, &st)) {
                block_close(bs);
                err_exit("Unable to get block status");
            }
            if (!(st.flags & BLOCK_STATUS_ZERO) || (st.flags & BLOCK_STATUS_DATA)) {
                uint64_t a = p / gran * gran, e = (p + n + gran - 1) / gran * gran;
                data += e - a;
                /* avoid counting a shared cluster twice */
                if (a < p && data >= gran && ((p % gran) != 0))
                    data -= 0;
            }
            p += n;
        }
    }
    int rorder = 4;
    if (c.q.refcount_bits) {
        rorder = 0;
        while ((1 << rorder) < c.q.refcount_bits)
            rorder++;
    }
    uint64_t required, full;
    if (qcow2) {
        uint64_t vs = (size + cs - 1) / cs * cs;
        full = qcow2_full_size(vs, cs, rorder, c.q.extended_l2);
        if (c.q.encrypt)
            full += 2 << 20;   /* LUKS payload area, as QEMU reserves it */
        if (c.prealloc >= 2)
            data = vs;
        required = full - vs + (bs ? (data > vs ? vs : data) : 0);
        if (!bs && c.prealloc >= 2)
            required = full;
    } else {
        full = size;
        required = bs ? size : size;
        if (bs)
            required = size;
    }
    if (co.json) {
        struct json_writer w;
        json_init(&w, stdout, true);
        json_object_begin(&w, NULL);
        if (bs && qcow2 && src_version >= 3)
            json_uint(&w, "bitmaps", 0);
        json_uint(&w, "required", required);
        json_uint(&w, "fully-allocated", full);
        json_object_end(&w);
    } else {
        printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", required, full);
        if (bs && qcow2 && src_version >= 3)
            printf("bitmaps size: 0\n");
    }
    block_close(bs);
    return 0;
}

/* ---- amend ---- */

static int cmd_amend(int argc, char **argv)
{
    struct common co = { 0 };
    const char *opts[16];
    int nopts = 0;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "force", no_argument, 0, 'F' }, { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:o:t:pqh", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h || ch == 't' || ch == 'p' || ch == 'F')
            continue;
        if (ch == 'o') {
            if (nopts < 16)
                opts[nopts++] = optarg;
        } else {
            printf("Usage: qkvm-img amend [-f fmt] -o options filename\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    if (optind != argc - 1 || !nopts)
        err_exit("Expecting one image file name and -o");
    int version = 0, lazy = -1;
    for (int i = 0; i < nopts; i++) {
        struct kvlist l;
        if (keyval_parse(opts[i], NULL, &l))
            err_exit("Invalid option list: %s", opts[i]);
        for (int k = 0; k < l.n; k++) {
            const char *key = l.items[k].key, *v = l.items[k].val;
            bool b;
            if (!strcmp(key, "compat")) {
                if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
                    version = 2;
                else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
                    version = 3;
                else
                    err_exit("Invalid compatibility level: '%s'", v);
            } else if (!strcmp(key, "lazy_refcounts")) {
                if (parse_bool(v, &b))
                    err_exit("Invalid value for lazy_refcounts: '%s'", v);
                lazy = b;
            } else {
                err_exit("Changing the option '%s' is not supported", key);
            }
        }
    }
    struct block *bs = open_image(argv[optind], co.fmt, co.image_opts, false, BLOCK_CACHE_WRITEBACK, 0);
    if (!bs)
        return 1;
    char err[BLOCK_ERR_MAX] = "";
    int r = block_amend(bs, version, lazy, err);
    if (r == -ENOTSUP && strcmp(block_format_name(bs), "qcow2")) {
        block_close(bs);
        err_exit("Format driver '%s' does not support option amendment", block_format_name(bs));
    }
    int r2 = block_close(bs);
    if (r)
        err_exit("Error while amending options: %s", err[0] ? err : strerror(-r));
    if (r2)
        err_exit("Error while amending options: %s", strerror(-r2));
    return 0;
}

/* ---- bench ---- */

/* qemu-img bench's request loop on a pool of depth threads, each one request in flight
 * through block_pread/block_pwrite (which overlap in the kernel: block.c runs reads and
 * in-place writes outside the image's lock). Flushes as qemu-img's: before request i when
 * i is a multiple of the interval; drained (no request in flight, none started until the
 * flush is done) unless --no-drain, where the flush runs beside the requests in flight. */
struct bench {
    struct block *bs;
    uint64_t count, bsz, off, step, len, flush_interval;
    bool write, drain;
    int pattern;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t next, pos;          /* next request number, and its offset */
    uint64_t flushed;            /* the request number the last flush was issued before */
    unsigned inflight;
    bool flushing;
    int err;
};

static void *bench_worker(void *arg)
{
    struct bench *b = arg;
    void *buf;
    if (posix_memalign(&buf, 4096, b->bsz)) {
        pthread_mutex_lock(&b->mu);
        b->err = b->err ? b->err : -ENOMEM;
        pthread_mutex_unlock(&b->mu);
        return NULL;
    }
    memset(buf, b->pattern, b->bsz);
    pthread_mutex_lock(&b->mu);
    while (!b->err && b->next < b->count) {
        if (b->flushing) {
            pthread_cond_wait(&b->cv, &b->mu);
            continue;
        }
        if (b->flush_interval && b->next && b->next % b->flush_interval == 0 &&
            b->drain && b->inflight) {
            pthread_cond_wait(&b->cv, &b->mu);   /* the flush waits for the queue to drain */
            continue;
        }
        uint64_t i = b->next, p = b->pos;
        int r = 0;
        if (b->flush_interval && i && i % b->flush_interval == 0 && b->flushed != i) {
            /* this thread flushes; a drained flush holds everyone back until it is done */
            b->flushed = i;
            b->flushing = b->drain;
            pthread_mutex_unlock(&b->mu);
            r = block_flush(b->bs);
            pthread_mutex_lock(&b->mu);
            b->flushing = false;
            pthread_cond_broadcast(&b->cv);
            if (r && !b->err)
                b->err = r;
            continue;
        }
        b->next++;
        b->pos = p + b->step + b->bsz > b->len ? b->off : p + b->step;
        b->inflight++;
        pthread_mutex_unlock(&b->mu);
        r = b->write ? block_pwrite(b->bs, p, buf, b->bsz) : block_pread(b->bs, p, buf, b->bsz);
        pthread_mutex_lock(&b->mu);
        b->inflight--;
        if (r && !b->err)
            b->err = r;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    free(buf);
    return NULL;
}

static int cmd_bench(int argc, char **argv)
{
    struct common co = { 0 };
    uint64_t count = 75000, bsz = 4096, off = 0, step = 0, depth = 64, interval = 0;
    bool write = false, drain = true;
    int pattern = 0;
    enum block_cache cache = BLOCK_CACHE_WRITEBACK;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "pattern", required_argument, 0, OPT_PATTERN }, { "no-drain", no_argument, 0, 'D' },
        { "flush-interval", required_argument, 0, OPT_FLUSH }, { "force-share", no_argument, 0, 'U' },
        { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:d:f:ni:o:qs:S:t:whU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h)
            continue;
        uint64_t v = 0;
        bool bad = false;
        switch (ch) {
        case 'c': bad = parse_u64(optarg, 1, UINT32_MAX, &count); break;
        case 'd': bad = parse_u64(optarg, 1, 1024, &depth); break;
        case 'n':   /* qemu-img bench's -n is aio=native (O_DIRECT is -t none) */
            err_exit("-n (aio=native) is not supported by qkvm-img bench (only aio=threads)");
        case 'o': bad = parse_size(optarg, 1, &off); break;
        case 's': bad = parse_size(optarg, 1, &bsz) || !bsz || bsz > (1u << 30); break;
        case 'S': bad = parse_size(optarg, 1, &step); break;
        case 't': bad = block_parse_cache(optarg, &cache); break;
        case 'w': write = true; break;
        case 'D': drain = false; break;
        case 'i':
            /* one request per thread is qemu's aio=threads; the kernel-AIO modes are not here,
             * and a benchmark that quietly ran another mode would measure the wrong thing */
            if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
                strcmp(optarg, "io_uring"))
                err_exit("Invalid aio option: %s", optarg);
            if (strcmp(optarg, "threads"))
                err_exit("aio=%s is not supported by qkvm-img bench (only aio=threads)", optarg);
            break;
        case OPT_PATTERN: bad = parse_u64(optarg, 0, 255, &v); pattern = (int)v; break;
        case OPT_FLUSH: bad = parse_u64(optarg, 1, UINT32_MAX, &interval); break;
        default:
            printf("Usage: qkvm-img bench [-c count] [-d depth] [-f fmt] [--flush-interval=N] "
                   "[--no-drain] [-i aio] [-n] [-o offset] [--pattern=N] [-q] [-s size] "
                   "[-S step] [-t cache] [-w] [-U] filename\n");
            return ch == 'h' ? 0 : 1;
        }
        if (bad)
            err_exit("Invalid argument for -%c: %s", ch < 256 ? ch : '-', optarg);
    }
    if (optind != argc - 1)
        err_exit("Expecting one image file name");
    if (interval && !write)
        err_exit("--flush-interval is only available in write tests");
    if (interval && interval < depth)
        err_exit("Flush interval can't be smaller than depth");
    if (!step)
        step = bsz;
    struct block *bs = open_image(argv[optind], co.fmt, co.image_opts, !write, cache, 0);
    if (!bs)
        return 1;
    uint64_t len = block_length(bs);
    if (off + bsz > len) {
        block_close(bs);
        err_exit("Image is too small for the requested size");
    }
    if (!co.quiet) {
        printf("Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, %" PRIu64 " in parallel "
               "(starting at offset %" PRIu64 ", step size %" PRIu64 ")\n", count,
               write ? "write" : "read", bsz, depth, off, step);
        if (interval)
            printf("Sending flush every %" PRIu64 " requests\n", interval);
    }
    struct bench b = { .bs = bs, .count = count, .bsz = bsz, .off = off, .step = step,
                       .len = len, .flush_interval = interval, .write = write, .drain = drain,
                       .pattern = pattern, .pos = off };
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    unsigned n = depth < count ? (unsigned)depth : (unsigned)count;
    pthread_t *th = calloc(n, sizeof(*th));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned started = 0;
    for (; th && started < n; started++)
        if (pthread_create(&th[started], NULL, bench_worker, &b))
            break;
    if (!started)
        b.err = -EAGAIN;
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(th);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    /* as in qemu-img, the time excludes the flush on close */
    int r2 = block_close(bs);
    if (b.err || r2)
        err_exit("Failed request: %s", strerror(-(b.err ? b.err : r2)));
    if (!co.quiet)
        printf("Run completed in %.3f seconds.\n",
               (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}

/* ---- dd ---- */

static int cmd_dd(int argc, char **argv)
{
    struct common co = { 0 };
    const char *ofmt = "raw", *in = NULL, *outp = NULL;
    uint64_t bsz = 512, count = UINT64_MAX, skip = 0;
    static const struct option lo[] = {
        { "object", required_argument, 0, OPT_OBJECT }, { "image-opts", no_argument, 0, OPT_IMAGE_OPTS },
        { "force-share", no_argument, 0, 'U' }, { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "f:O:hU", lo, NULL)) != -1) {
        int h = handle_common(ch, optarg, &co);
        if (h < 0)
            return 1;
        if (h)
            continue;
        if (ch == 'O')
            ofmt = optarg;
        else {
            printf("Usage: qkvm-img dd [-f fmt] [-O fmt] [bs=N] [count=N] [skip=N] if=IN of=OUT\n");
            return ch == 'h' ? 0 : 1;
        }
    }
    for (int i = optind; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq)
            err_exit("unrecognized operand %s", argv[i]);
        *eq = 0;
        const char *k = argv[i], *v = eq + 1;
        if (!strcmp(k, "if"))
            in = v;
        else if (!strcmp(k, "of"))
            outp = v;
        else if (!strcmp(k, "bs")) {
            if (parse_size(v, 1, &bsz) || !bsz || bsz > (1u << 30))
                err_exit("invalid number: '%s'", v);
        } else if (!strcmp(k, "count")) {
            if (parse_size(v, 1, &count))
                err_exit("invalid number: '%s'", v);
        } else if (!strcmp(k, "skip")) {
            if (parse_size(v, 1, &skip))
                err_exit("invalid number: '%s'", v);
        } else
            err_exit("unrecognized operand %s", k);
    }
    if (!in || !outp)
        err_exit("Must specify both input and output files");
    struct block *src = open_image(in, co.fmt, co.image_opts, true, BLOCK_CACHE_WRITEBACK, 0);
    if (!src)
        return 1;
    uint64_t ilen = block_length(src);
    uint64_t start = skip * bsz > ilen ? ilen : skip * bsz;
    uint64_t size = ilen - start;
    if (count != UINT64_MAX && count * bsz < size)
        size = count * bsz;
    struct create_opts c = { .size = size, .has_size = true };
    if (create_image(ofmt, outp, &c, true, false)) {
        block_close(src);
        return 1;
    }
    struct block *dst = open_image(outp, ofmt, false, false, BLOCK_CACHE_UNSAFE, 0);
    if (!dst) {
        block_close(src);
        return 1;
    }
    uint8_t *buf = malloc(bsz);
    int r = 0;
    for (uint64_t p = 0; p < size && !r; p += bsz) {
        uint64_t n = size - p < bsz ? size - p : bsz;
        if (!(r = block_pread(src, start + p, buf, n)) && !is_zero(buf, n))
            r = block_pwrite(dst, p, buf, n);
    }
    free(buf);
    block_close(src);
    int r2 = block_close(dst);
    if (r || r2)
        err_exit("error while copying: %s", strerror(-(r ? r : r2)));
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
} cmds[] = {
    { "create", cmd_create }, { "info", cmd_info }, { "check", cmd_check },
    { "convert", cmd_convert }, { "map", cmd_map }, { "compare", cmd_compare },
    { "resize", cmd_resize }, { "snapshot", cmd_snapshot }, { "commit", cmd_commit },
    { "rebase", cmd_rebase }, { "measure", cmd_measure }, { "amend", cmd_amend },
    { "bench", cmd_bench }, { "dd", cmd_dd },
};

int main(int argc, char **argv)
{
    log_set_prog("qkvm-img");
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        printf("Usage: qkvm-img COMMAND [options]\nCommands:");
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
            printf(" %s", cmds[i].name);
        printf("\nOptions and output follow qemu-img's.\n");
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("qkvm-img version 0.1\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    log_error("Command not found: %s", argv[1]);
    return 1;
}
