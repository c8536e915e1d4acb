/* Messages for people: one line each, prefixed with the program's name. */
#ifndef QKVM_UTIL_LOG_H
#define QKVM_UTIL_LOG_H
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

/* -d categories, as in QEMU's -d: each a bit in log_mask. */
enum log_cat {
    LOG_ACCEL = 1u << 0,   /* which accelerator was chosen and why */
    LOG_UNIMP = 1u << 1,   /* unimplemented instructions / registers the guest touched */
    LOG_TIME = 1u << 2,    /* boot timeline, microseconds since the process started */
    LOG_GUEST = 1u << 3,   /* guest errors: bad device programming, unmapped accesses */
    LOG_IO = 1u << 4,      /* every port and MMIO access (slow) */
    LOG_INT = 1u << 5,     /* interrupts and exceptions */
};

extern unsigned log_mask;

void log_set_prog(const char *name);
const char *log_prog(void);
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(unsigned cat, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_enabled(cat) (log_mask & (cat))

/* Messages a guest can trigger (bad device programming, unmapped accesses, unimplemented
 * features) go through one of these, held by the machine: each key (a short text naming the kind
 * of message) prints its first `burst` messages, then at most one "N more suppressed" line per
 * `interval_us`, and the rest is counted until log_ratelimit_flush. So a guest that repeats a
 * mistake millions of times costs a bounded number of lines. */
#define LOG_RL_KEYS        32      /* more distinct keys share the last slot */
#define LOG_RL_BURST       5
#define LOG_RL_INTERVAL_US 5000000ull
struct log_ratelimit {
    pthread_mutex_t lock;
    unsigned burst;
    uint64_t interval_us;
    uint64_t (*now_us)(void);       /* clock_since_start_us; tests put a synthetic clock here */
    int nkeys;
    struct log_rl_key {
        const char *key;            /* not copied: a string literal */
        unsigned printed;
        uint64_t suppressed;        /* since the last summary */
        uint64_t last_summary_us;
    } keys[LOG_RL_KEYS];
};
void log_ratelimit_init(struct log_ratelimit *rl);
/* Prints one line when cat is enabled in log_mask and rl lets key through. rl NULL or zeroed
 * (never initialised): no limit, for parts used without a machine, in unit tests. */
void log_guest(struct log_ratelimit *rl, unsigned cat, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_vguest(struct log_ratelimit *rl, unsigned cat, const char *key, const char *fmt, va_list ap);
/* Says how many messages of each key were suppressed since the last summary, then frees rl. */
void log_ratelimit_flush(struct log_ratelimit *rl);

/* Parses "accel,unimp,time" (or "help") into a mask; -EINVAL names no known category. */
int log_parse_mask(const char *spec, unsigned *mask);
/* The category names, for -d help. */
const char *log_mask_help(void);

#endif
