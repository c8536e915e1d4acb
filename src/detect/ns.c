/* systemd-detect-virt's --chroot and --private-users. */
#include "detect/detect.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int detect_in_chroot(void)
{
    struct stat a, b;
    if (stat("/proc/1/root", &a) < 0) {
        /* Without /proc there is no PID 1 to compare with: chroots are where /proc is missing. */
        if (errno == ENOENT && stat("/proc/self", &b) < 0)
            return 1;
        return -errno;
    }
    if (stat("/", &b) < 0)
        return -errno;
    return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

/* 1 when the map is anything but the initial namespace's identity map "0 0 4294967295". */
static int map_is_partial(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    unsigned long base, shift, range;
    int n = fscanf(f, "%lu %lu %lu", &base, &shift, &range);
    fclose(f);
    if (n != 3)
        return 1;   /* empty: a user namespace not yet set up */
    return !(base == 0 && shift == 0 && range == 4294967295ul);
}

int detect_in_userns(void)
{
    int r = map_is_partial("/proc/self/uid_map");
    if (r)
        return r;
    r = map_is_partial("/proc/self/gid_map");
    if (r)
        return r;
    FILE *f = fopen("/proc/self/setgroups", "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    char line[32] = "";
    if (!fgets(line, sizeof(line), f))
        line[0] = 0;
    fclose(f);
    return strncmp(line, "deny", 4) == 0;
}
