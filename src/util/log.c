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

void log_ratelimit_init(struct log_ratelimit *rl)
{
    memset(rl, 0, sizeof(*rl));
    pthread_mutex_init(&rl->lock, NULL);
    rl->burst = LOG_RL_BURST;
    rl->interval_us = LOG_RL_INTERVAL_US;
    rl->now_us = clock_since_start_us;
}

static struct log_rl_key *rl_find(struct log_ratelimit *rl, const char *key)
{
    for (int i = 0; i < rl->nkeys; i++)
        if (rl->keys[i].key == key || !strcmp(rl->keys[i].key, key))
            return &rl->keys[i];
    if (rl->nkeys == LOG_RL_KEYS) {
        rl->keys[LOG_RL_KEYS - 1].key = "other guest messages";
        return &rl->keys[LOG_RL_KEYS - 1];
    }
    rl->keys[rl->nkeys] = (struct log_rl_key){ .key = key };
    return &rl->keys[rl->nkeys++];
}

void log_vguest(struct log_ratelimit *rl, unsigned cat, const char *key, const char *fmt, va_list ap)
{
    if (!(log_mask & cat))
        return;
    if (!rl || !rl->now_us) {   /* no limiter, or a zeroed one never initialised */
        vlog("", fmt, ap);
        return;
    }
    pthread_mutex_lock(&rl->lock);
    struct log_rl_key *k = rl_find(rl, key);
    if (k->printed < rl->burst) {
        /* printed under the lock, so the summary of a key never precedes its messages */
        k->printed++;
        k->last_summary_us = rl->now_us();
        vlog("", fmt, ap);
    } else {
        k->suppressed++;
        uint64_t now = rl->now_us();
        if (now - k->last_summary_us >= rl->interval_us) {
            fprintf(stderr, "%s: %llu more '%s' messages suppressed\n", prog, (unsigned long long)k->suppressed,
                    k->key);
            k->suppressed = 0;
            k->last_summary_us = now;
        }
    }
    pthread_mutex_unlock(&rl->lock);
}

void log_guest(struct log_ratelimit *rl, unsigned cat, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vguest(rl, cat, key, fmt, ap);
    va_end(ap);
}

void log_ratelimit_flush(struct log_ratelimit *rl)
{
    pthread_mutex_lock(&rl->lock);
    for (int i = 0; i < rl->nkeys; i++)
        if (rl->keys[i].suppressed)
            fprintf(stderr, "%s: %llu more '%s' messages suppressed\n", prog,
                    (unsigned long long)rl->keys[i].suppressed, rl->keys[i].key);
    rl->nkeys = 0;
    pthread_mutex_unlock(&rl->lock);
    pthread_mutex_destroy(&rl->lock);
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
