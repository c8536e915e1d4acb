/* Counters the guest kernel keeps: per-CPU time (/proc/stat) and per-disk I/O (/proc/diskstats),
 * in qemu-ga's units (milliseconds for CPU time) and with its member names. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "qga/internal.h"

static int qga_cmd_get_cpustats(struct qga_state *s, const struct json_value *args,
                                struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return qga_error_set(e, -errno, "failed to open file '/proc/stat': %s", strerror(errno));
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    static const char *const names[] = { "user", "nice", "system", "idle", "iowait", "irq",
                                         "softirq", "steal", "guest", "guestnice" };
    char line[1024];
    json_array_begin(w, "return");
    while (fgets(line, sizeof(line), f)) {
        /* "cpu  N ..." is the total over all CPUs: %u would skip the blanks and read N as one */
        if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9')
            continue;
        unsigned cpu;
        unsigned long long v[10];
        int n = sscanf(line, "cpu%u %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &cpu,
                       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
        if (n < 5)
            continue;
        json_object_begin(w, NULL);
        json_string(w, "type", "linux");
        json_int(w, "cpu", cpu);
        for (int i = 0; i < n - 1; i++)
            json_uint(w, names[i], v[i] * 1000 / (unsigned long long)hz);
        json_object_end(w);
    }
    json_array_end(w);
    fclose(f);
    return 0;
}

static int qga_cmd_get_diskstats(struct qga_state *s, const struct json_value *args,
                                 struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    FILE *f = fopen("/proc/diskstats", "r");
    if (!f)
        return qga_error_set(e, -errno, "failed to open file '/proc/diskstats': %s",
                             strerror(errno));
    /* the fields in /proc/diskstats order (Documentation/admin-guide/iostats.rst); kernels add
     * the discard (4.18) and flush (5.5) groups at the end, so older ones have fewer */
    static const char *const names[] = {
        "read-ios", "read-merges", "read-sectors", "read-ticks", "write-ios", "write-merges",
        "write-sectors", "write-ticks", "ios-pgr", "total-ticks", "weight-ticks", "discard-ios",
        "discard-merges", "discard-sectors", "discard-ticks", "flush-ios", "flush-ticks" };
    char line[1024];
    json_array_begin(w, "return");
    while (fgets(line, sizeof(line), f)) {
        unsigned major, minor;
        char name[128];
        unsigned long long v[17];
        int n = sscanf(line, " %u %u %127s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
                       "%llu %llu %llu %llu %llu %llu", &major, &minor, name, &v[0], &v[1], &v[2],
                       &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12],
                       &v[13], &v[14], &v[15], &v[16]);
        if (n < 3 + 11)
            continue;
        json_object_begin(w, NULL);
        json_string(w, "name", name);
        json_uint(w, "major", major);
        json_uint(w, "minor", minor);
        json_object_begin(w, "stats");
        for (int i = 0; i < n - 3; i++)
            json_uint(w, names[i], v[i]);
        json_object_end(w);
        json_object_end(w);
    }
    json_array_end(w);
    fclose(f);
    return 0;
}

static const struct qga_command qga_stats_commands[] = {
    { "guest-get-cpustats", qga_cmd_get_cpustats, NULL, false },
    { "guest-get-diskstats", qga_cmd_get_diskstats, NULL, false },
    { 0 },
};
QGA_COMMANDS(qga_stats_commands)
