/* The programs bench/tcg-work runs inside the guest and on the host: one static binary,
 *   work NAME [N]
 * runs workload NAME and prints "tcg-work NAME SECONDS CHECKSUM", the seconds timed by the
 * program itself (CLOCK_MONOTONIC, so the guest's own clock inside a VM) and a checksum that
 * must equal the host's run of the same binary. Inputs are generated from fixed seeds, so
 * every run computes the same thing. Built by bench/tcg-work with gcc -O2 -static. */
#define _GNU_SOURCE
#include <lzma.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)   /* xorshift64: same numbers everywhere */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "tcg-work: %s failed\n", what);
    exit(1);
}

/* Compressible text: words drawn from a small vocabulary with a skewed distribution. */
static unsigned char *gen_text(size_t n)
{
    static const char *words[] = { "the ", "virtual ", "machine ", "translates ", "blocks ",
        "of ", "guest ", "code ", "into ", "host ", "instructions, ", "and ", "caches ", "them.\n",
        "page ", "table ", "walk ", "software ", "TLB ", "interrupt " };
    unsigned char *p = malloc(n);
    if (!p)
        die("malloc");
    size_t i = 0;
    while (i < n) {
        uint64_t r = next();
        const char *w = words[(r & 15) + ((r >> 8) & 3) * ((r >> 12) & 1)];
        for (; *w && i < n; w++)
            p[i++] = (unsigned char)*w;
        if ((r >> 20) % 11 == 0 && i < n)
            p[i++] = (unsigned char)('0' + (r >> 24) % 10);
    }
    return p;
}

/* deflate (zlib level 6) of n bytes of text, then inflate and compare */
static uint64_t w_deflate(long n)
{
    unsigned char *in = gen_text((size_t)n);
    uLongf clen = compressBound((uLong)n), dlen = (uLongf)n;
    unsigned char *c = malloc(clen), *d = malloc((size_t)n);
    if (!c || !d || compress2(c, &clen, in, (uLong)n, 6) != Z_OK)
        die("compress2");
    if (uncompress(d, &dlen, c, clen) != Z_OK || dlen != (uLongf)n || memcmp(in, d, (size_t)n))
        die("uncompress");
    return (uint64_t)clen << 32 | crc32(0, c, (uInt)clen);
}

/* xz (liblzma, preset 2) of n bytes of text, then decompress and compare */
static uint64_t w_xz(long n)
{
    unsigned char *in = gen_text((size_t)n);
    size_t cap = lzma_stream_buffer_bound((size_t)n), clen = 0, dlen = 0, ipos = 0;
    unsigned char *c = malloc(cap), *d = malloc((size_t)n);
    uint64_t memlimit = UINT64_MAX;
    if (!c || !d || lzma_easy_buffer_encode(2, LZMA_CHECK_CRC32, NULL, in, (size_t)n, c, &clen, cap) != LZMA_OK)
        die("lzma encode");
    if (lzma_stream_buffer_decode(&memlimit, 0, NULL, c, &ipos, clen, d, &dlen, (size_t)n) != LZMA_OK ||
        dlen != (size_t)n || memcmp(in, d, (size_t)n))
        die("lzma decode");
    return (uint64_t)clen << 32 | crc32(0, c, (uInt)clen);
}

static int sql_sum(void *arg, int ncol, char **val, char **name)
{
    (void)name;
    uint64_t *sum = arg;
    for (int i = 0; i < ncol; i++)
        *sum = *sum * 31 + (val[i] ? (uint64_t)strtoll(val[i], NULL, 10) + strlen(val[i]) : 7);
    return 0;
}

/* SQLite in memory: n rows inserted in one transaction, an index, joins and aggregates */
static uint64_t w_sqlite(long n)
{
    sqlite3 *db;
    sqlite3_stmt *ins;
    uint64_t sum = 0;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        die("sqlite3_open");
    if (sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);"
                         "CREATE TABLE g(k INTEGER PRIMARY KEY, name TEXT); BEGIN;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO t(k, v) VALUES(?, ?)", -1, &ins, NULL) != SQLITE_OK)
        die("sqlite3 schema");
    for (long i = 0; i < n; i++) {
        char v[32];
        uint64_t r = next();
        snprintf(v, sizeof(v), "v%llx", (unsigned long long)(r >> 20));
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)(r % 1000));
        sqlite3_bind_text(ins, 2, v, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(ins) != SQLITE_DONE)
            die("sqlite3 insert");
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    for (int k = 0; k < 1000; k++) {
        char q[96];
        snprintf(q, sizeof(q), "INSERT INTO g VALUES(%d, 'group%d');", k, k * 7 % 1000);
        if (sqlite3_exec(db, q, NULL, NULL, NULL) != SQLITE_OK)
            die("sqlite3 insert g");
    }
    const char *qs[] = {
        "COMMIT; CREATE INDEX tk ON t(k, v);",
        "SELECT k, count(*), sum(length(v)) FROM t GROUP BY k ORDER BY 2 DESC, 1 LIMIT 50;",
        "SELECT count(*) FROM t JOIN g USING(k) WHERE g.name LIKE 'group1%';",
        "SELECT sum(id) FROM (SELECT id FROM t WHERE k BETWEEN 100 AND 300 ORDER BY v LIMIT 5000);",
        "UPDATE t SET v = upper(v) WHERE k % 7 = 3; SELECT count(*) FROM t WHERE v GLOB 'V*';",
        "DELETE FROM t WHERE k > 900; SELECT count(*), max(id) FROM t;",
    };
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        if (sqlite3_exec(db, qs[i], sql_sum, &sum, NULL) != SQLITE_OK)
            die(qs[i]);
    sqlite3_close(db);
    return sum;
}

/* n-body (five bodies, the benchmarks-game program): SSE2 doubles, sqrt */
static uint64_t w_nbody(long steps)
{
    enum { NB = 5 };
    const double pi = 3.141592653589793, solar = 4 * pi * pi, dpy = 365.24;
    double x[NB][3] = { { 0, 0, 0 }, { 4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01 },
        { 8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01 },
        { 1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01 },
        { 1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01 } };
    double v[NB][3] = { { 0, 0, 0 }, { 1.66007664274403694e-03 * dpy, 7.69901118419740425e-03 * dpy, -6.90460016972063023e-05 * dpy },
        { -2.76742510726862411e-03 * dpy, 4.99852801234917238e-03 * dpy, 2.30417297573763929e-05 * dpy },
        { 2.96460137564761618e-03 * dpy, 2.37847173959480950e-03 * dpy, -2.96589568540237556e-05 * dpy },
        { 2.68067772490389322e-03 * dpy, 1.62824170038242295e-03 * dpy, -9.51592254519715870e-05 * dpy } };
    double m[NB] = { solar, 9.54791938424326609e-04 * solar, 2.85885980666130812e-04 * solar,
        4.36624404335156298e-05 * solar, 5.15138902046611451e-05 * solar };
    for (long s = 0; s < steps; s++) {
        for (int i = 0; i < NB; i++)
            for (int j = i + 1; j < NB; j++) {
                double d[3], d2 = 0;
                for (int k = 0; k < 3; k++) {
                    d[k] = x[i][k] - x[j][k];
                    d2 += d[k] * d[k];
                }
                double mag = 0.01 / (d2 * sqrt(d2));
                for (int k = 0; k < 3; k++) {
                    v[i][k] -= d[k] * m[j] * mag;
                    v[j][k] += d[k] * m[i] * mag;
                }
            }
        for (int i = 0; i < NB; i++)
            for (int k = 0; k < 3; k++)
                x[i][k] += 0.01 * v[i][k];
    }
    double e = 0;
    for (int i = 0; i < NB; i++) {
        e += 0.5 * m[i] * (v[i][0] * v[i][0] + v[i][1] * v[i][1] + v[i][2] * v[i][2]);
        for (int j = i + 1; j < NB; j++) {
            double dx = x[i][0] - x[j][0], dy = x[i][1] - x[j][1], dz = x[i][2] - x[j][2];
            e -= m[i] * m[j] / sqrt(dx * dx + dy * dy + dz * dz);
        }
    }
    uint64_t bits;
    memcpy(&bits, &e, sizeof(bits));
    return bits;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* qsort of n random ints */
static uint64_t w_sort(long n)
{
    int *a = malloc((size_t)n * sizeof(int));
    if (!a)
        die("malloc");
    for (long i = 0; i < n; i++)
        a[i] = (int)next();
    qsort(a, (size_t)n, sizeof(int), cmp_int);
    uint64_t h = 0;
    for (long i = 0; i < n; i++) {
        if (i && a[i - 1] > a[i])
            die("sort order");
        h = h * 1000003 + (uint32_t)a[i];
    }
    return h;
}

/* n times fork + exec /bin/true + wait: the checksum counts the children that exited 0 */
static uint64_t w_forkexec(long n)
{
    uint64_t ok = 0;
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0)
            die("fork");
        if (p == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        int st;
        if (waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            ok++;
    }
    return ok;
}

/* n rounds: mmap 256 MiB, write every page (a page fault each), munmap */
static uint64_t w_pagefault(long rounds)
{
    const size_t len = 256u << 20, pg = 4096;
    uint64_t sum = 0;
    for (long r = 0; r < rounds; r++) {
        unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die("mmap");
        for (size_t o = 0; o < len; o += pg)
            p[o] = (unsigned char)(o >> 12) ^ (unsigned char)r;
        for (size_t o = 0; o < len; o += pg * 61)
            sum += p[o];
        munmap(p, len);
    }
    return sum;
}

static const struct {
    const char *name;
    uint64_t (*fn)(long);
    long n;
} works[] = {
    { "deflate", w_deflate, 12l << 20 },
    { "xz", w_xz, 3l << 20 },
    { "sqlite", w_sqlite, 200000 },
    { "nbody", w_nbody, 2000000 },
    { "qsort", w_sort, 10000000 },
    { "forkexec", w_forkexec, 2000 },
    { "pagefault", w_pagefault, 4 },
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        for (size_t i = 0; i < sizeof(works) / sizeof(works[0]); i++)
            printf("%s\n", works[i].name);
        return 0;
    }
    for (size_t i = 0; i < sizeof(works) / sizeof(works[0]); i++) {
        if (strcmp(argv[1], works[i].name))
            continue;
        long n = argc > 2 ? strtol(argv[2], NULL, 0) : works[i].n;
        double t0 = now();
        uint64_t sum = works[i].fn(n);
        printf("tcg-work %s %.3f %016llx\n", works[i].name, now() - t0, (unsigned long long)sum);
        return 0;
    }
    fprintf(stderr, "tcg-work: no workload %s\n", argv[1]);
    return 2;
}
