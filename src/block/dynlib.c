#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "block/driver.h"
#include "block/dynlib.h"
#include "util/log.h"

/* Loaded libraries are process-wide by nature (the dynamic linker has one namespace per process),
 * so their tables are too; they are written only inside pthread_once, which orders those writes
 * before every caller's reads. */
struct dynlib_zlib zlib_fn;
struct dynlib_zstd zstd_fn;
struct dynlib_crypto crypto_fn;

struct lib {
    const char *soname, *package, *use;
    void *table;                 /* one function pointer per name, in order */
    const char *const *names;
    pthread_once_t once;
    int ret;
    bool logged;
    char why[BLOCK_ERR_MAX];
};

#define DYNLIB_NAME(name) #name,
static const char *const zlib_names[] = { DYNLIB_ZLIB(DYNLIB_NAME) NULL };
static const char *const zstd_names[] = { DYNLIB_ZSTD(DYNLIB_NAME) NULL };
static const char *const crypto_names[] = { DYNLIB_CRYPTO(DYNLIB_NAME) NULL };
#undef DYNLIB_NAME

static struct lib zlib = { "libz.so.1", "zlib1g", "zlib-compressed qcow2 clusters",
                           (void *)&zlib_fn, zlib_names, PTHREAD_ONCE_INIT, 0, false, "" };
static struct lib zstd = { "libzstd.so.1", "libzstd1", "zstd-compressed qcow2 clusters",
                           (void *)&zstd_fn, zstd_names, PTHREAD_ONCE_INIT, 0, false, "" };
static struct lib crypto = { "libcrypto.so.3", "libssl3", "LUKS encryption",
                             (void *)&crypto_fn, crypto_names, PTHREAD_ONCE_INIT, 0, false, "" };

static void lib_open(struct lib *l)
{
    /* RTLD_LOCAL: nothing else in the process should bind to these symbols by accident */
    void *h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(l->why, sizeof(l->why), "%s is needed for %s and could not be loaded "
                 "(install the Debian package %s): %s", l->soname, l->use, l->package, dlerror());
        l->ret = -ELIBACC;
        return;
    }
    void **fn = l->table;
    for (size_t i = 0; l->names[i]; i++) {
        if (!(fn[i] = dlsym(h, l->names[i]))) {
            snprintf(l->why, sizeof(l->why), "%s has no function %s (needed for %s)", l->soname,
                     l->names[i], l->use);
            memset(l->table, 0, i * sizeof(void *));
            dlclose(h);
            l->ret = -ELIBACC;
            return;
        }
    }
    /* never closed: the tables point into it for the rest of the process */
}

static void open_zlib(void) { lib_open(&zlib); }
static void open_zstd(void) { lib_open(&zstd); }
static void open_crypto(void) { lib_open(&crypto); }

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static int lib_load(struct lib *l, void (*open)(void), char *err)
{
    pthread_once(&l->once, open);
    if (!l->ret)
        return 0;
    if (err)
        return block_seterr(err, l->ret, "%s", l->why);
    pthread_mutex_lock(&log_lock);
    if (!l->logged)
        log_error("%s", l->why);
    l->logged = true;
    pthread_mutex_unlock(&log_lock);
    return l->ret;
}

int dynlib_load_zlib(char *err) { return lib_load(&zlib, open_zlib, err); }
int dynlib_load_zstd(char *err) { return lib_load(&zstd, open_zstd, err); }
int dynlib_load_crypto(char *err) { return lib_load(&crypto, open_crypto, err); }

void block_preload_libs(void)
{
    char err[BLOCK_ERR_MAX];
    dynlib_load_zlib(err);
    dynlib_load_zstd(err);
    dynlib_load_crypto(err);
}
