/* Where a monitor listens, from -qmp/-monitor's ADDR or a -chardev description. Separate from
 * server.c so that the command-line parser (and its fuzzer) needs nothing else of the monitor. */
#include "vm/monitor/monitor.h"

#include "util/parse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int addr_error(char *why, size_t n, const char *fmt, const char *arg)
{
    snprintf(why, n, fmt, arg);
    return -EINVAL;
}

/* server=on/off, wait=on/off (or the old nowait/server flags) in kv: qkvm is always the server
 * and never waits for a client before the guest runs. */
static int addr_check_flags(struct kvlist *kv, char *why, size_t n)
{
    const char *server = keyval_get(kv, "server"), *wait = keyval_get(kv, "wait");
    keyval_get(kv, "nowait");
    if (server && strcmp(server, "on") && strcmp(server, "true") && strcmp(server, ""))
        return addr_error(why, n, "server=%s: qkvm's monitors listen (server=on)", server);
    if (wait && strcmp(wait, "off") && strcmp(wait, "false") && strcmp(wait, "on") && strcmp(wait, "true"))
        return addr_error(why, n, "wait=%s: takes on or off", wait);
    const char *bad = keyval_unused(kv);
    if (bad)
        return addr_error(why, n, "unknown parameter '%s'", bad);
    return 0;
}

static int addr_set(char *dst, size_t cap, const char *val, const char *what, char *why, size_t n)
{
    if (!val || !*val)
        return addr_error(why, n, "no %s", what);
    if (strlen(val) >= cap)
        return addr_error(why, n, "%s too long", what);
    strcpy(dst, val);
    return 0;
}

int monitor_parse_addr(const char *spec, bool chardev, struct monitor_addr *a, char *why, size_t n)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->label, sizeof(a->label), "compat_monitor0");
    struct kvlist kv;
    int ret;
    if (chardev) {
        if (keyval_parse(spec, "backend", &kv))
            return addr_error(why, n, "%s", "not a character device description");
        const char *be = keyval_get(&kv, "backend"), *id = keyval_get(&kv, "id");
        ret = addr_set(a->label, sizeof(a->label), id, "id=", why, n);
        if (!ret && be && !strcmp(be, "stdio")) {
            a->kind = MONITOR_STDIO;
            keyval_get(&kv, "signal");
            const char *bad = keyval_unused(&kv);
            if (bad)
                ret = addr_error(why, n, "unknown parameter '%s'", bad);
        } else if (!ret && be && !strcmp(be, "socket")) {
            const char *path = keyval_get(&kv, "path"), *host = keyval_get(&kv, "host"), *port = keyval_get(&kv, "port");
            if (path) {
                a->kind = MONITOR_UNIX;
                ret = addr_set(a->path, sizeof(a->path), path, "path", why, n);
            } else {
                a->kind = MONITOR_TCP;
                ret = addr_set(a->host, sizeof(a->host), host ? host : "localhost", "host", why, n);
                if (!ret)
                    ret = addr_set(a->port, sizeof(a->port), port, "port= (or path=)", why, n);
            }
            if (!ret)
                ret = addr_check_flags(&kv, why, n);
        } else if (!ret) {
            ret = addr_error(why, n, "backend '%s': a monitor needs socket or stdio", be ? be : "");
        }
        keyval_free(&kv);
        return ret;
    }
    if (!strcmp(spec, "stdio")) {
        a->kind = MONITOR_STDIO;
        return 0;
    }
    const char *colon = strchr(spec, ':');
    if (!colon || (strncmp(spec, "unix:", 5) && strncmp(spec, "tcp:", 4)))
        return addr_error(why, n, "a monitor listens on stdio, unix:PATH or tcp:HOST:PORT%s", "");
    /* "unix:PATH,server=on,wait=off": PATH is the implied first key */
    if (keyval_parse(colon + 1, "addr", &kv))
        return addr_error(why, n, "not a socket address%s", "");
    const char *addr = keyval_get(&kv, "addr");
    if (!strncmp(spec, "unix:", 5)) {
        a->kind = MONITOR_UNIX;
        ret = addr_set(a->path, sizeof(a->path), addr, "socket path", why, n);
    } else {
        a->kind = MONITOR_TCP;
        const char *pc = addr ? strrchr(addr, ':') : NULL;
        if (!pc) {
            ret = addr_error(why, n, "tcp: wants HOST:PORT%s", "");
        } else {
            size_t hl = (size_t)(pc - addr);
            if (hl >= sizeof(a->host)) {
                ret = addr_error(why, n, "host name too long%s", "");
            } else {
                memcpy(a->host, addr, hl);
                a->host[hl] = 0;
                if (!hl)
                    strcpy(a->host, "0.0.0.0");
                ret = addr_set(a->port, sizeof(a->port), pc + 1, "port", why, n);
            }
        }
    }
    if (!ret)
        ret = addr_check_flags(&kv, why, n);
    keyval_free(&kv);
    return ret;
}

