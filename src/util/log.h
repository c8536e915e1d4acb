/* Messages for people: one line each, prefixed with the program's name. */
#ifndef QKVM_UTIL_LOG_H
#define QKVM_UTIL_LOG_H
#include <stdarg.h>

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

/* Parses "accel,unimp,time" (or "help") into a mask; -EINVAL names no known category. */
int log_parse_mask(const char *spec, unsigned *mask);
/* The category names, for -d help. */
const char *log_mask_help(void);

#endif
