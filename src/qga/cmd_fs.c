/* File systems: what is mounted (guest-get-fsinfo), freeze and thaw for consistent snapshots,
 * and trim. Only local block-backed file systems count, as for qemu-ga. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "qga/internal.h"

#define QGA_MAX_MOUNTS 256

struct qga_mount {
    char dev[256], dir[256], type[64];
};

/* mountinfo's escapes (\040 for a space) undone in place. */
static void qga_unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

/* Mounts of block devices (major != 0), from /proc/self/mountinfo, in mount order. */
static int qga_mounts(struct qga_mount *m, int max)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f)
        return -errno;
    char line[4096];
    int n = 0;
    while (n < max && fgets(line, sizeof(line), f)) {
        unsigned major, minor;
        char dir[256], type[64], dev[256];
        /* id parent major:minor root mountpoint options [optional...] - type source superopts */
        if (sscanf(line, "%*u %*u %u:%u %*s %255s", &major, &minor, dir) != 3)
            continue;
        char *sep = strstr(line, " - ");
        if (!sep || sscanf(sep + 3, "%63s %255s", type, dev) != 2)
            continue;
        if (major == 0 || !strcmp(type, "rootfs"))
            continue;
        qga_unescape(dir);
        qga_unescape(dev);
        snprintf(m[n].dev, sizeof(m[n].dev), "%s", dev);
        snprintf(m[n].dir, sizeof(m[n].dir), "%s", dir);
        snprintf(m[n].type, sizeof(m[n].type), "%s", type);
        n++;
    }
    fclose(f);
    return n;
}

static int qga_cmd_get_fsinfo(struct qga_state *s, const struct json_value *args,
                              struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    static struct qga_mount m[QGA_MAX_MOUNTS];
    int n = qga_mounts(m, QGA_MAX_MOUNTS);
    if (n < 0)
        return qga_error_set(e, n, "failed to read /proc/self/mountinfo: %s", strerror(-n));
    json_array_begin(w, "return");
    for (int i = n - 1; i >= 0; i--) {
        const char *name = strrchr(m[i].dev, '/');
        json_object_begin(w, NULL);
        json_string(w, "name", name ? name + 1 : m[i].dev);
        json_string(w, "mountpoint", m[i].dir);
        json_string(w, "type", m[i].type);
        struct statvfs sv;
        if (statvfs(m[i].dir, &sv) == 0) {
            /* as df: used excludes the root reserve, total is what non-root users see */
            uint64_t used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
            json_uint(w, "used-bytes", used);
            json_uint(w, "total-bytes", used + (uint64_t)sv.f_bavail * sv.f_frsize);
        }
        json_array_begin(w, "disk");
        json_array_end(w);
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

static int qga_cmd_fsfreeze_status(struct qga_state *s, const struct json_value *args,
                                   struct json_writer *w, struct qga_error *e)
{
    (void)args; (void)e;
    json_string(w, "return", s->frozen ? "frozen" : "thawed");
    return 0;
}

int qga_fsfreeze_thaw_all(struct qga_state *s)
{
    int thawed = 0;
    for (int i = s->nfrozen - 1; i >= 0; i--) {
        if (ioctl(s->frozen_fds[i], FITHAW) == 0)
            thawed++;
        close(s->frozen_fds[i]);
    }
    s->nfrozen = 0;
    s->frozen = false;
    return thawed;
}

int qga_state_set_fsfreeze_hook(struct qga_state *s, const char *path)
{
    char *copy = NULL;
    if (path && !(copy = strdup(path)))
        return -ENOMEM;
    free(s->fsfreeze_hook);
    s->fsfreeze_hook = copy;
    return 0;
}

void qga_state_set_fsfreeze_timeout(struct qga_state *s, unsigned seconds)
{
    s->fsfreeze_timeout = seconds;
}

static int64_t qga_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int qga_fsfreeze_expire(struct qga_state *s)
{
    if (!s->frozen || !s->fsfreeze_timeout ||
        qga_now_ms() - s->frozen_at_ms < (int64_t)s->fsfreeze_timeout * 1000)
        return 0;
    struct qga_error e;
    int n = qga_fsfreeze_thaw_all(s);
    dprintf(STDERR_FILENO, "qkvm-ga: frozen for %u s without a thaw from the host: %d file "
            "system(s) thawed\n", s->fsfreeze_timeout, n);
    if (qga_fsfreeze_run_hook(s, "thaw", &e) < 0)
        dprintf(STDERR_FILENO, "qkvm-ga: %s\n", e.desc);
    return 1;
}

/* As qemu-ga's execute_fsfreeze_hook: the hook in a session of its own, stdin from /dev/null,
 * and its status decides. qemu-ga throws the hook's output away; here it goes to the agent's
 * log, so that a hook that fails says why where the guest's administrator looks. */
int qga_fsfreeze_run_hook(struct qga_state *s, const char *arg, struct qga_error *e)
{
    const char *hook = s->fsfreeze_hook;
    if (!hook)
        return 0;
    if (access(hook, X_OK) != 0) {
        int err = errno;
        return qga_error_set(e, -err, "can't access fsfreeze hook '%s': %s", hook, strerror(err));
    }
    dprintf(STDERR_FILENO, "qkvm-ga: executing fsfreeze hook with arg '%s'\n", arg);
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        return qga_error_set(e, -err, "failed to create child process: %s", strerror(err));
    }
    if (pid == 0) {
        setsid();
        int null = open("/dev/null", O_RDONLY);
        dup2(null, STDIN_FILENO);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execl(hook, hook, arg, (char *)NULL);
        _exit(EXIT_FAILURE);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            int err = errno;
            return qga_error_set(e, -err, "failed to wait for the fsfreeze hook: %s", strerror(err));
        }
    }
    if (!WIFEXITED(st))
        return qga_error_set(e, -EIO, "fsfreeze hook has terminated abnormally");
    if (WEXITSTATUS(st))
        return qga_error_set(e, -EIO, "fsfreeze hook has failed with status %d", WEXITSTATUS(st));
    return 0;
}

/* After a freeze went wrong: everything thawed, and the hook told (qemu-ga calls its thaw
 * command here), the freeze's own error kept. */
static int qga_freeze_undo(struct qga_state *s, int err)
{
    struct qga_error ignored;
    qga_fsfreeze_thaw_all(s);
    qga_fsfreeze_run_hook(s, "thaw", &ignored);
    return err;
}

static bool qga_in_list(const struct json_value *list, const char *dir)
{
    for (size_t i = 0; i < list->n; i++)
        if (list->items[i]->type == JSON_STRING && !strcmp(list->items[i]->s, dir))
            return true;
    return false;
}

static int qga_freeze(struct qga_state *s, const struct json_value *only, struct json_writer *w,
                      struct qga_error *e)
{
    static struct qga_mount m[QGA_MAX_MOUNTS];
    if (s->frozen)
        return qga_error_set(e, -EBUSY, "Command guest-fsfreeze-freeze has been disabled for "
                             "this instance");
    int n = qga_mounts(m, QGA_MAX_MOUNTS);
    if (n < 0)
        return qga_error_set(e, n, "failed to read /proc/self/mountinfo: %s", strerror(-n));
    int r = qga_fsfreeze_run_hook(s, "freeze", e);
    if (r < 0)
        return r;
    s->frozen = true;
    s->frozen_at_ms = qga_now_ms();
    /* the deepest mounts first: a parent frozen before its child would block the child's freeze */
    for (int i = n - 1; i >= 0 && s->nfrozen < QGA_MAX_FROZEN; i--) {
        if (only && !qga_in_list(only, m[i].dir))
            continue;
        int fd = open(m[i].dir, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            return qga_freeze_undo(s, qga_error_set(e, -err, "failed to open %s: %s", m[i].dir,
                                                    strerror(err)));
        }
        if (ioctl(fd, FIFREEZE) < 0) {
            int err = errno;
            close(fd);
            /* not freezable (EOPNOTSUPP) or the same file system met twice (EBUSY) */
            if (err == EOPNOTSUPP || err == EBUSY)
                continue;
            return qga_freeze_undo(s, qga_error_set(e, -err, "failed to freeze %s: %s", m[i].dir,
                                                    strerror(err)));
        }
        s->frozen_fds[s->nfrozen++] = fd;
    }
    if (!s->nfrozen)
        s->frozen = false;
    json_int(w, "return", s->nfrozen);
    return 0;
}

static int qga_cmd_fsfreeze_freeze(struct qga_state *s, const struct json_value *args,
                                   struct json_writer *w, struct qga_error *e)
{
    (void)args;
    return qga_freeze(s, NULL, w, e);
}

static int qga_cmd_fsfreeze_freeze_list(struct qga_state *s, const struct json_value *args,
                                        struct json_writer *w, struct qga_error *e)
{
    return qga_freeze(s, json_get(args, "mountpoints"), w, e);
}

static int qga_cmd_fsfreeze_thaw(struct qga_state *s, const struct json_value *args,
                                 struct json_writer *w, struct qga_error *e)
{
    (void)args;
    /* as qemu-ga: the hook hears "thaw" on every thaw, frozen or not, and its failure is the
     * command's error although the file systems are thawed by then */
    int n = qga_fsfreeze_thaw_all(s);
    int r = qga_fsfreeze_run_hook(s, "thaw", e);
    if (r < 0)
        return r;
    json_int(w, "return", n);
    return 0;
}

static int qga_cmd_fstrim(struct qga_state *s, const struct json_value *args,
                          struct json_writer *w, struct qga_error *e)
{
    (void)s;
    static struct qga_mount m[QGA_MAX_MOUNTS];
    int n = qga_mounts(m, QGA_MAX_MOUNTS);
    if (n < 0)
        return qga_error_set(e, n, "failed to read /proc/self/mountinfo: %s", strerror(-n));
    int64_t minimum = qga_arg_int(args, "minimum", 0);
    json_object_begin(w, "return");
    json_array_begin(w, "paths");
    for (int i = n - 1; i >= 0; i--) {
        json_object_begin(w, NULL);
        json_string(w, "path", m[i].dir);
        int fd = open(m[i].dir, O_RDONLY | O_CLOEXEC);
        struct fstrim_range r = { .len = UINT64_MAX, .minlen = (uint64_t)minimum };
        if (fd < 0 || ioctl(fd, FITRIM, &r) < 0) {
            json_string(w, "error", strerror(errno));
        } else {
            json_int(w, "trimmed", (int64_t)r.len);
            json_int(w, "minimum", (int64_t)r.minlen);
        }
        if (fd >= 0)
            close(fd);
        json_object_end(w);
    }
    json_array_end(w);
    json_object_end(w);
    return 0;
}

static const struct qga_arg qga_args_freeze_list[] = {
    { "mountpoints", QGA_ARG_STR_LIST, true, NULL }, { 0 } };
static const struct qga_arg qga_args_fstrim[] = { { "minimum", QGA_ARG_INT, true, NULL }, { 0 } };

static const struct qga_command qga_fs_commands[] = {
    { "guest-get-fsinfo", qga_cmd_get_fsinfo, NULL, false },
    { "guest-fsfreeze-status", qga_cmd_fsfreeze_status, NULL, false },
    { "guest-fsfreeze-freeze", qga_cmd_fsfreeze_freeze, NULL, false },
    { "guest-fsfreeze-freeze-list", qga_cmd_fsfreeze_freeze_list, qga_args_freeze_list, false },
    { "guest-fsfreeze-thaw", qga_cmd_fsfreeze_thaw, NULL, false },
    { "guest-fstrim", qga_cmd_fstrim, qga_args_fstrim, false },
    { 0 },
};
QGA_COMMANDS(qga_fs_commands)
