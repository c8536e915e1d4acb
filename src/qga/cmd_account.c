/* guest-set-user-password: chpasswd(8) does the work, as for qemu-ga, so the guest's own rules
 * (PAM, shadow, hashing) apply; the agent only refuses what would change the line's meaning. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "qga/internal.h"
#include "util/base64.h"

static int qga_chpasswd(const char *line, bool crypted)
{
    static const char *const paths[] = { "/usr/sbin/chpasswd", "/sbin/chpasswd",
                                         "/usr/bin/chpasswd", "/bin/chpasswd" };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (access(paths[i], X_OK) == 0) {
            char *argv[] = { (char *)paths[i], crypted ? "-e" : NULL, NULL };
            return qga_spawn_wait(argv, line);
        }
    }
    return -ENOENT;
}

static int qga_cmd_set_user_password(struct qga_state *s, const struct json_value *args,
                                     struct json_writer *w, struct qga_error *e)
{
    (void)s;
    const char *user = qga_arg_str(args, "username", "");
    bool crypted = qga_arg_bool(args, "crypted", false);
    void *pw;
    size_t len;
    int r = base64_decode(qga_arg_str(args, "password", ""), &pw, &len);
    if (r < 0)
        return qga_error_set(e, r, r == -ENOMEM ? "out of memory" :
                             "Base64 data contains invalid characters");
    /* a ':' or a line break would start another field or another user for chpasswd */
    int ret = 0;
    if (!*user || strpbrk(user, ":\n")) {
        ret = qga_error_set(e, -EINVAL, "forbidden characters in username");
        goto out;
    }
    if (memchr(pw, '\n', len) || memchr(pw, 0, len)) {
        ret = qga_error_set(e, -EINVAL, "forbidden characters in %s password",
                            crypted ? "crypted" : "raw");
        goto out;
    }
    char *line = NULL;
    if (asprintf(&line, "%s:%.*s\n", user, (int)len, (char *)pw) < 0) {
        ret = qga_error_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    r = qga_chpasswd(line, crypted);
    explicit_bzero(line, strlen(line));
    free(line);
    if (r < 0) {
        ret = qga_error_set(e, r, "child process has failed to set user password");
        goto out;
    }
    json_object_begin(w, "return");
    json_object_end(w);
out:
    explicit_bzero(pw, len);
    free(pw);
    return ret;
}

static const struct qga_arg qga_args_set_user_password[] = {
    { "username", QGA_ARG_STR, false, NULL }, { "password", QGA_ARG_STR, false, NULL },
    { "crypted", QGA_ARG_BOOL, false, NULL }, { 0 } };

static const struct qga_command qga_account_commands[] = {
    { "guest-set-user-password", qga_cmd_set_user_password, qga_args_set_user_password, false },
    { 0 },
};
QGA_COMMANDS(qga_account_commands)
