/* What only the guest knows about itself: names, OS, clock zone, users, CPUs, memory, network. */
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <linux/if_link.h>
#include <netpacket/packet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <utmpx.h>
#include "qga/internal.h"

static int qga_cmd_get_host_name(struct qga_state *s, const struct json_value *args,
                                 struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    char name[256];
    if (gethostname(name, sizeof(name) - 1) < 0)
        return qga_error_set(e, -errno, "cannot get hostname: %s", strerror(errno));
    name[sizeof(name) - 1] = 0;
    json_object_begin(w, "return");
    json_string(w, "host-name", name);
    json_object_end(w);
    return 0;
}

/* os-release(5): KEY=value, the value maybe quoted with shell escapes. */
static void qga_osinfo_release(struct json_writer *w)
{
    static const struct { const char *key, *field; } keys[] = {
        { "ID", "id" }, { "NAME", "name" }, { "PRETTY_NAME", "pretty-name" },
        { "VERSION", "version" }, { "VERSION_ID", "version-id" }, { "VARIANT", "variant" },
        { "VARIANT_ID", "variant-id" },
    };
    FILE *f = fopen("/etc/os-release", "r");
    if (!f)
        f = fopen("/usr/lib/os-release", "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        char *v = eq + 1, *o = v;
        char quote = (*v == '"' || *v == '\'') ? *v++ : 0;
        for (; *v && *v != quote; v++) {
            if (*v == '\\' && quote == '"' && v[1])
                v++;
            *o++ = *v;
        }
        *o = 0;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (!strcmp(line, keys[i].key))
                json_string(w, keys[i].field, eq + 1);
    }
    fclose(f);
}

static int qga_cmd_get_osinfo(struct qga_state *s, const struct json_value *args,
                              struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args; (void)e;
    struct utsname u;
    json_object_begin(w, "return");
    if (uname(&u) == 0) {
        json_string(w, "kernel-release", u.release);
        json_string(w, "kernel-version", u.version);
        json_string(w, "machine", u.machine);
    }
    qga_osinfo_release(w);
    json_object_end(w);
    return 0;
}

static int qga_cmd_get_timezone(struct qga_state *s, const struct json_value *args,
                                struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    time_t now = time(NULL);
    struct tm tm;
    tzset();
    if (!localtime_r(&now, &tm))
        return qga_error_set(e, -EINVAL, "cannot read the local time zone");
    json_object_begin(w, "return");
    if (tm.tm_zone)
        json_string(w, "zone", tm.tm_zone);
    json_int(w, "offset", tm.tm_gmtoff);
    json_object_end(w);
    return 0;
}

static int qga_cmd_get_users(struct qga_state *s, const struct json_value *args,
                             struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args; (void)e;
    struct { char name[sizeof(((struct utmpx *)0)->ut_user) + 1]; double t; } users[256];
    size_t n = 0;
    setutxent();
    for (struct utmpx *u; (u = getutxent());) {
        if (u->ut_type != USER_PROCESS)
            continue;
        char name[sizeof(users[0].name)];
        snprintf(name, sizeof(name), "%.*s", (int)sizeof(u->ut_user), u->ut_user);
        double t = u->ut_tv.tv_sec + u->ut_tv.tv_usec / 1e6;
        size_t i = 0;
        while (i < n && strcmp(users[i].name, name))
            i++;
        if (i < n) {
            /* a user logged in more than once: the earliest login counts */
            if (t < users[i].t)
                users[i].t = t;
        } else if (n < sizeof(users) / sizeof(users[0])) {
            strcpy(users[n].name, name);
            users[n++].t = t;
        }
    }
    endutxent();
    json_array_begin(w, "return");
    for (size_t i = 0; i < n; i++) {
        json_object_begin(w, NULL);
        json_string(w, "user", users[i].name);
        json_double(w, "login-time", users[i].t);
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

/* Reads a small sysfs number; -1 when the file is missing. */
static long qga_sysfs_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* Lists dir's entries named PREFIX<number>, in number order. */
static size_t qga_sysfs_indexes(const char *dir, const char *prefix, long *out, size_t max)
{
    DIR *d = opendir(dir);
    size_t n = 0, pl = strlen(prefix);
    if (!d)
        return 0;
    for (struct dirent *de; (de = readdir(d)) && n < max;) {
        char *end;
        if (strncmp(de->d_name, prefix, pl) || !de->d_name[pl])
            continue;
        long v = strtol(de->d_name + pl, &end, 10);
        if (*end || v < 0)
            continue;
        size_t i = n++;
        while (i > 0 && out[i - 1] > v) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = v;
    }
    closedir(d);
    return n;
}

static int qga_cmd_get_vcpus(struct qga_state *s, const struct json_value *args,
                             struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    long ids[1024];
    size_t n = qga_sysfs_indexes("/sys/devices/system/cpu", "cpu", ids, 1024);
    if (!n)
        return qga_error_set(e, -ENOENT, "cannot list /sys/devices/system/cpu");
    json_array_begin(w, "return");
    for (size_t i = 0; i < n; i++) {
        char path[96];
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%ld/online", ids[i]);
        long online = qga_sysfs_long(path);
        json_object_begin(w, NULL);
        json_int(w, "logical-id", ids[i]);
        /* no online file: this CPU (usually cpu0) cannot be taken offline, so it is online */
        json_bool(w, "online", online != 0);
        json_bool(w, "can-offline", online >= 0);
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

static int qga_cmd_get_memory_blocks(struct qga_state *s, const struct json_value *args,
                                     struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    static long ids[65536];
    size_t n = qga_sysfs_indexes("/sys/devices/system/memory", "memory", ids, 65536);
    if (!n && access("/sys/devices/system/memory", F_OK))
        return qga_error_set(e, -ENOTSUP, "this feature or command is not currently supported");
    json_array_begin(w, "return");
    for (size_t i = 0; i < n; i++) {
        char path[96];
        snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%ld/online", ids[i]);
        long online = qga_sysfs_long(path);
        snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%ld/removable", ids[i]);
        long removable = qga_sysfs_long(path);
        json_object_begin(w, NULL);
        json_uint(w, "phys-index", (uint64_t)ids[i]);
        json_bool(w, "online", online != 0);
        json_bool(w, "can-offline", removable > 0);
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

static int qga_cmd_get_memory_block_info(struct qga_state *s, const struct json_value *args,
                                         struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    FILE *f = fopen("/sys/devices/system/memory/block_size_bytes", "r");
    unsigned long long size;
    if (!f)
        return qga_error_set(e, -errno, "failed to open file "
                             "'/sys/devices/system/memory/block_size_bytes': %s", strerror(errno));
    int ok = fscanf(f, "%llx", &size) == 1;
    fclose(f);
    if (!ok)
        return qga_error_set(e, -EINVAL, "cannot parse block_size_bytes");
    json_object_begin(w, "return");
    json_uint(w, "size", size);
    json_object_end(w);
    return 0;
}

static void qga_net_stats(struct json_writer *w, const struct rtnl_link_stats *st)
{
    json_object_begin(w, "statistics");
    json_uint(w, "rx-bytes", st->rx_bytes);
    json_uint(w, "rx-packets", st->rx_packets);
    json_uint(w, "rx-errs", st->rx_errors);
    json_uint(w, "rx-dropped", st->rx_dropped);
    json_uint(w, "tx-bytes", st->tx_bytes);
    json_uint(w, "tx-packets", st->tx_packets);
    json_uint(w, "tx-errs", st->tx_errors);
    json_uint(w, "tx-dropped", st->tx_dropped);
    json_object_end(w);
}

static int qga_prefix_len(const struct sockaddr *mask)
{
    const unsigned char *p;
    size_t len;
    if (!mask)
        return 0;
    if (mask->sa_family == AF_INET) {
        p = (const unsigned char *)&((const struct sockaddr_in *)mask)->sin_addr;
        len = 4;
    } else {
        p = (const unsigned char *)&((const struct sockaddr_in6 *)mask)->sin6_addr;
        len = 16;
    }
    int bits = 0;
    for (size_t i = 0; i < len; i++)
        bits += __builtin_popcount(p[i]);
    return bits;
}

static int qga_cmd_network_get_interfaces(struct qga_state *s, const struct json_value *args,
                                          struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    struct ifaddrs *all;
    if (getifaddrs(&all) < 0)
        return qga_error_set(e, -errno, "getifaddrs failed: %s", strerror(errno));
    json_array_begin(w, "return");
    /* one entry per interface, in the order getifaddrs first names it (its AF_PACKET record) */
    for (struct ifaddrs *i = all; i; i = i->ifa_next) {
        bool first = true;
        for (struct ifaddrs *j = all; j != i && first; j = j->ifa_next)
            first = strcmp(j->ifa_name, i->ifa_name) != 0;
        if (!first)
            continue;
        json_object_begin(w, NULL);
        json_string(w, "name", i->ifa_name);
        const struct rtnl_link_stats *stats = NULL;
        for (struct ifaddrs *j = all; j; j = j->ifa_next) {
            if (strcmp(j->ifa_name, i->ifa_name) || !j->ifa_addr ||
                j->ifa_addr->sa_family != AF_PACKET)
                continue;
            const struct sockaddr_ll *ll = (const struct sockaddr_ll *)j->ifa_addr;
            /* an Ethernet address; anything else reads as zeros, as SIOCGIFHWADDR gives qemu-ga */
            unsigned char z[6] = { 0 };
            const unsigned char *m = ll->sll_halen == 6 ? ll->sll_addr : z;
            char mac[18];
            snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
                     m[4], m[5]);
            json_string(w, "hardware-address", mac);
            stats = j->ifa_data;
        }
        bool any = false;   /* qemu-ga leaves ip-addresses out of an interface without any */
        for (struct ifaddrs *j = all; j; j = j->ifa_next) {
            if (strcmp(j->ifa_name, i->ifa_name) || !j->ifa_addr ||
                (j->ifa_addr->sa_family != AF_INET && j->ifa_addr->sa_family != AF_INET6))
                continue;
            if (!any)
                json_array_begin(w, "ip-addresses");
            any = true;
            char addr[INET6_ADDRSTRLEN];
            bool v4 = j->ifa_addr->sa_family == AF_INET;
            const void *a = v4 ? (const void *)&((struct sockaddr_in *)j->ifa_addr)->sin_addr
                               : (const void *)&((struct sockaddr_in6 *)j->ifa_addr)->sin6_addr;
            inet_ntop(j->ifa_addr->sa_family, a, addr, sizeof(addr));
            json_object_begin(w, NULL);
            json_string(w, "ip-address", addr);
            json_string(w, "ip-address-type", v4 ? "ipv4" : "ipv6");
            json_int(w, "prefix", qga_prefix_len(j->ifa_netmask));
            json_object_end(w);
        }
        if (any)
            json_array_end(w);
        if (stats)
            qga_net_stats(w, stats);
        json_object_end(w);
    }
    json_array_end(w);
    freeifaddrs(all);
    return 0;
}

static const struct qga_command qga_system_commands[] = {
    { "guest-get-host-name", qga_cmd_get_host_name, NULL, false },
    { "guest-get-osinfo", qga_cmd_get_osinfo, NULL, false },
    { "guest-get-timezone", qga_cmd_get_timezone, NULL, false },
    { "guest-get-users", qga_cmd_get_users, NULL, false },
    { "guest-get-vcpus", qga_cmd_get_vcpus, NULL, false },
    { "guest-get-memory-blocks", qga_cmd_get_memory_blocks, NULL, false },
    { "guest-get-memory-block-info", qga_cmd_get_memory_block_info, NULL, false },
    { "guest-network-get-interfaces", qga_cmd_network_get_interfaces, NULL, false },
    { 0 },
};
QGA_COMMANDS(qga_system_commands)
