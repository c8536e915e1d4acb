#include "util/log.h"
#include "util/clock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

unsigned log_mask;
static const char *prog = "qkvm";

void log_set_prog(const char *name)
{
    const char *slash = strrchr(name, '/');
    prog = slash ? slash + 1 : name;
}

const char *log_prog(void) { return prog; }

/* One fprintf per line so lines from several threads never interleave mid-line. */
static void vlog(const char *tag, const char *fmt, va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    fprintf(stderr, "%s: %s%s\n", prog, tag, buf);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("warning: ", fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void log_debug(unsigned cat, const char *fmt, ...)
{
    if (!(log_mask & cat))
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (cat == LOG_TIME)
        fprintf(stderr, "%s: [%8llu us] %s\n", prog, (unsigned long long)clock_since_start_us(), buf);
    else
        fprintf(stderr, "%s: %s\n", prog, buf);
}

static const struct { const char *name; unsigned bit; const char *what; } cats[] = {
    { "accel", LOG_ACCEL, "which accelerator runs the guest, and why" },
    { "unimp", LOG_UNIMP, "unimplemented instructions and registers the guest used" },
    { "time", LOG_TIME, "boot timeline in microseconds since start" },
    { "guest_errors", LOG_GUEST, "guest errors: bad device programming, unmapped accesses" },
    { "io", LOG_IO, "every port and MMIO access" },
    { "int", LOG_INT, "interrupts and exceptions" },
};

int log_parse_mask(const char *spec, unsigned *mask)
{
    char buf[256];
    if (strlen(spec) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, spec);
    unsigned m = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < sizeof(cats) / sizeof(cats[0]); i++)
            if (!strcmp(tok, cats[i].name))
                break;
        if (i == sizeof(cats) / sizeof(cats[0]))
            return -EINVAL;
        m |= cats[i].bit;
    }
    *mask = m;
    return 0;
}

const char *log_mask_help(void)
{
    static char help[1024];
    if (!help[0]) {
        size_t off = 0;
        for (size_t i = 0; i < sizeof(cats) / sizeof(cats[0]); i++)
            off += snprintf(help + off, sizeof(help) - off, "%-13s %s\n", cats[i].name, cats[i].what);
    }
    return help;
}
