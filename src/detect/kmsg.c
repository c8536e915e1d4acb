/* Kernel log evidence: the lines Linux prints when it finds a hypervisor at boot. */
#include "detect/detect.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/stat.h>
#include <unistd.h>

#define KMSG_PARAVIRT "Booting paravirtualized kernel on "
#define KMSG_HYPERVISOR "Hypervisor detected: "
/* The ring is bounded, but a busy kernel can keep appending while we read. */
#define KMSG_MAX_RECORDS 1000000

/* Drops a /dev/kmsg "pri,seq,usec,flags;" prefix, a syslog "<pri>" prefix and a "[ time] ". */
static const char *kmsg_text(const char *line)
{
    const char *p = line;
    if (isdigit((unsigned char)*p)) {
        const char *q = p;
        while (isdigit((unsigned char)*q) || *q == ',' || *q == '-' || *q == '+' || isalpha((unsigned char)*q))
            q++;
        if (*q == ';')
            return q + 1;
    }
    if (*p == '<') {
        const char *q = p + 1;
        while (isdigit((unsigned char)*q))
            q++;
        if (*q == '>' && q > p + 1)
            p = q + 1;
    }
    if (*p == '[') {
        const char *q = strchr(p, ']');
        if (q) {
            p = q + 1;
            if (*p == ' ')
                p++;
        }
    }
    return p;
}

static void kmsg_match(struct detect_evidence *e, const char *line, size_t len)
{
    char buf[DETECT_VALUE_MAX];
    if (len >= sizeof(buf))
        len = sizeof(buf) - 1;
    memcpy(buf, line, len);
    buf[len] = 0;
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    const char *t = kmsg_text(buf);
    static const struct { enum detect_ev ev; const char *prefix; } pats[] = {
        { EV_KMSG_PARAVIRT, KMSG_PARAVIRT },
        { EV_KMSG_HYPERVISOR, KMSG_HYPERVISOR },
    };
    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        struct detect_item *it = &e->ev[pats[i].ev];
        size_t plen = strlen(pats[i].prefix);
        /* The first one: the boot-time line, not a later echo of it. */
        if (it->err == -ENOENT && strncmp(t, pats[i].prefix, plen) == 0) {
            snprintf(it->value, sizeof(it->value), "%s", t + plen);
            size_t n = strlen(it->value);
            while (n && (it->value[n - 1] == ' ' || it->value[n - 1] == '\r'))
                it->value[--n] = 0;
            it->err = 0;
        }
    }
}

static void kmsg_set(struct detect_evidence *e, const char *source, int err)
{
    for (int ev = EV_KMSG_PARAVIRT; ev <= EV_KMSG_HYPERVISOR; ev++) {
        snprintf(e->ev[ev].source, sizeof(e->ev[ev].source), "%.*s", DETECT_SOURCE_MAX - 1, source);
        e->ev[ev].err = err;
        e->ev[ev].value[0] = 0;
    }
}

/* Text of many lines: a recorded log, or what syslog(2) returns. */
static void kmsg_scan_text(struct detect_evidence *e, const char *text, size_t len)
{
    size_t off = 0;
    while (off < len) {
        const char *line = text + off;
        const char *nl = memchr(line, '\n', len - off);
        size_t n = nl ? (size_t)(nl - line) : len - off;
        kmsg_match(e, line, n);
        off += n + 1;
    }
}

static int kmsg_read_dev(struct detect_evidence *e)
{
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* read() hands out one record per call and fails with EINVAL on a buffer too small. */
    char rec[8192];
    int ret = 0;
    for (int i = 0; i < KMSG_MAX_RECORDS; i++) {
        ssize_t n = read(fd, rec, sizeof(rec));
        if (n < 0) {
            if (errno == EINTR || errno == EPIPE)   /* EPIPE: records overwritten under us */
                continue;
            if (errno != EAGAIN)
                ret = -errno;
            break;
        }
        if (n == 0)
            break;
        kmsg_match(e, rec, (size_t)n);
    }
    close(fd);
    return ret;
}

static int kmsg_read_syslog(struct detect_evidence *e)
{
    int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
    if (size <= 0)
        return size < 0 ? -errno : -ENODATA;
    if (size > (64 << 20))
        size = 64 << 20;
    char *buf = malloc((size_t)size);
    if (!buf)
        return -ENOMEM;
    int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
    int ret = n < 0 ? -errno : 0;
    if (n > 0)
        kmsg_scan_text(e, buf, (size_t)n);
    free(buf);
    return ret;
}

static int kmsg_read_file(struct detect_evidence *e, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    size_t max = 16 << 20, len = 0;
    char *buf = malloc(max);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    int ret = 0;
    while (len < max) {
        ssize_t n = read(fd, buf + len, max - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            ret = -errno;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (!ret)
        kmsg_scan_text(e, buf, len);
    free(buf);
    return ret;
}

void detect_kmsg_gather(struct detect_evidence *e)
{
    if (e->root[0]) {
        char path[DETECT_SOURCE_MAX + 16];
        snprintf(path, sizeof(path), "%s/dev/kmsg", e->root);
        kmsg_set(e, path, -ENOENT);
        int r = kmsg_read_file(e, path);
        if (r)
            kmsg_set(e, path, r);
        return;
    }
    kmsg_set(e, "/dev/kmsg", -ENOENT);
    int r = kmsg_read_dev(e);
    if (r == 0)
        return;
    /* dmesg_restrict or a container without /dev/kmsg: dmesg's other way in. */
    kmsg_set(e, "syslog(SYSLOG_ACTION_READ_ALL)", -ENOENT);
    int r2 = kmsg_read_syslog(e);
    if (r2 == 0)
        return;
    char src[DETECT_SOURCE_MAX];
    snprintf(src, sizeof(src), "/dev/kmsg (%s), syslog(SYSLOG_ACTION_READ_ALL)", strerror(-r));
    kmsg_set(e, src, r2);
}
