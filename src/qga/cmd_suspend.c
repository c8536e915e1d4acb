/* guest-suspend-*: through the kernel's /sys/power interface only (qemu-ga tries systemd and
 * pm-utils first; a minimal guest has neither). Supported means the kernel lists the state; the
 * write that suspends blocks until the guest wakes, so a child does it and the agent answers
 * nothing on success, as qemu-ga. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "qga/internal.h"

/* Whether the whitespace-separated list in file has word. */
static bool qga_sysfs_has_word(const char *file, const char *word)
{
    char buf[256];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    for (char *save = NULL, *t = strtok_r(buf, " \n[]", &save); t; t = strtok_r(NULL, " \n[]", &save))
        if (!strcmp(t, word))
            return true;
    return false;
}

static int qga_sysfs_write(const char *file, const char *val)
{
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write(fd, val, strlen(val)) == (ssize_t)strlen(val) ? 0 : -errno;
    close(fd);
    return r;
}

/* disk_mode: what /sys/power/disk must offer (NULL when the state needs none). */
static int qga_suspend(const char *state, const char *disk_mode, struct qga_error *e)
{
    if (!qga_sysfs_has_word("/sys/power/state", state) ||
        (disk_mode && !qga_sysfs_has_word("/sys/power/disk", disk_mode)))
        return qga_error_set(e, -ENOTSUP, "the requested suspend mode is not supported by the "
                             "guest");
    if (disk_mode) {
        int r = qga_sysfs_write("/sys/power/disk", disk_mode);
        if (r < 0)
            return qga_error_set(e, r, "failed to set /sys/power/disk: %s", strerror(-r));
    }
    sync();
    pid_t pid = fork();
    if (pid < 0)
        return qga_error_set(e, -errno, "failed to create child process: %s", strerror(errno));
    if (pid == 0) {
        /* a grandchild writes, so the child is reaped at once and no zombie waits for a
         * wake-up that may never come */
        if (fork() == 0)
            _exit(qga_sysfs_write("/sys/power/state", state) < 0);
        _exit(0);
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return 0;
}

static int qga_cmd_suspend_disk(struct qga_state *s, const struct json_value *args,
                                struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args; (void)w;
    return qga_suspend("disk", "platform", e);
}

static int qga_cmd_suspend_ram(struct qga_state *s, const struct json_value *args,
                               struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args; (void)w;
    return qga_suspend("mem", NULL, e);
}

static int qga_cmd_suspend_hybrid(struct qga_state *s, const struct json_value *args,
                                  struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args; (void)w;
    return qga_suspend("disk", "suspend", e);
}

static const struct qga_command qga_suspend_commands[] = {
    { "guest-suspend-disk", qga_cmd_suspend_disk, NULL, true },
    { "guest-suspend-ram", qga_cmd_suspend_ram, NULL, true },
    { "guest-suspend-hybrid", qga_cmd_suspend_hybrid, NULL, true },
    { 0 },
};
QGA_COMMANDS(qga_suspend_commands)
