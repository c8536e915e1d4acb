/* guest-ssh-*-authorized-keys: a user's ~/.ssh/authorized_keys read and edited for the host, the
 * file and directory created with sshd's modes and owned by the user (sshd refuses others). */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "qga/internal.h"

#define QGA_SSH_MAX_KEYS 4096

struct qga_ssh_user {
    char dir[512], file[512];
    uid_t uid;
    gid_t gid;
};

/* Users come from /etc/passwd itself, not getpwnam(): NSS would need shared libraries the static
 * agent of an initramfs does not have. */
static int qga_ssh_user(const char *name, struct qga_ssh_user *u, struct qga_error *e)
{
    FILE *f = fopen("/etc/passwd", "r");
    struct passwd *pw = NULL;
    if (f) {
        while ((pw = fgetpwent(f)) && strcmp(pw->pw_name, name))
            ;
    }
    if (!pw) {
        if (f)
            fclose(f);
        /* qemu-ga's words, "Success" included: getpwnam() sets no errno for a missing user */
        return qga_error_set(e, -ENOENT, "failed to lookup user '%s': %s", name, strerror(0));
    }
    snprintf(u->dir, sizeof(u->dir), "%s/.ssh", pw->pw_dir);
    snprintf(u->file, sizeof(u->file), "%s/.ssh/authorized_keys", pw->pw_dir);
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    fclose(f);
    return 0;
}

/* One key per line: no line break inside, not empty, not a comment. */
static int qga_ssh_check_keys(const struct json_value *keys, struct qga_error *e)
{
    for (size_t i = 0; i < keys->n; i++) {
        const char *k = keys->items[i]->s;
        if (!*k || *k == '#' || strpbrk(k, "\r\n"))
            return qga_error_set(e, -EINVAL, "invalid OpenSSH public key: '%s'", k);
    }
    return 0;
}

/* The file's keys (lines that are neither empty nor comments); *n of them, or -errno. */
static int qga_ssh_read(const char *file, char ***keys, size_t *n)
{
    *keys = NULL;
    *n = 0;
    FILE *f = fopen(file, "r");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    char *line = NULL;
    size_t cap = 0;
    int ret = 0;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line || *line == '#')
            continue;
        if (*n == QGA_SSH_MAX_KEYS) {
            ret = -E2BIG;
            break;
        }
        char **nk = realloc(*keys, (*n + 1) * sizeof(*nk));
        if (!nk || !(nk[*n] = strdup(line))) {
            if (nk)
                *keys = nk;
            ret = -ENOMEM;
            break;
        }
        *keys = nk;
        (*n)++;
    }
    free(line);
    fclose(f);
    return ret;
}

static void qga_ssh_free(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* Writes keys to the file through a temporary one renamed over it, so sshd never reads half. */
static int qga_ssh_write(const struct qga_ssh_user *u, char **keys, size_t n)
{
    if (mkdir(u->dir, 0700) == 0) {
        if (chown(u->dir, u->uid, u->gid) < 0)
            return -errno;
    } else if (errno != EEXIST) {
        return -errno;
    }
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.qga-XXXXXX", u->file);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", keys[i]);
    int r = fflush(f) || fchmod(fd, 0600) || fchown(fd, u->uid, u->gid) || fsync(fd) ? -errno : 0;
    if (fclose(f) && !r)
        r = -errno;
    if (!r && rename(tmp, u->file) < 0)
        r = -errno;
    if (r)
        unlink(tmp);
    return r;
}

static int qga_cmd_ssh_get(struct qga_state *s, const struct json_value *args,
                           struct json_writer *w, struct qga_error *e)
{
    (void)s;
    struct qga_ssh_user u;
    int r = qga_ssh_user(qga_arg_str(args, "username", ""), &u, e);
    if (r < 0)
        return r;
    char **keys;
    size_t n;
    r = qga_ssh_read(u.file, &keys, &n);
    if (r < 0) {
        qga_ssh_free(keys, n);
        return qga_error_set(e, r, "failed to read '%s': %s", u.file, strerror(-r));
    }
    json_object_begin(w, "return");
    json_array_begin(w, "keys");
    for (size_t i = 0; i < n; i++)
        json_string(w, NULL, keys[i]);
    json_array_end(w);
    json_object_end(w);
    qga_ssh_free(keys, n);
    return 0;
}

/* add (or, with remove, take away) the given keys; reset starts from an empty file. */
static int qga_ssh_edit(const struct json_value *args, bool remove, struct json_writer *w,
                        struct qga_error *e)
{
    const struct json_value *given = json_get(args, "keys");
    int r = qga_ssh_check_keys(given, e);
    if (r < 0)
        return r;
    struct qga_ssh_user u;
    r = qga_ssh_user(qga_arg_str(args, "username", ""), &u, e);
    if (r < 0)
        return r;
    char **keys = NULL;
    size_t n = 0;
    if (remove || !qga_arg_bool(args, "reset", false))
        r = qga_ssh_read(u.file, &keys, &n);
    if (r < 0) {
        qga_ssh_free(keys, n);
        return qga_error_set(e, r, "failed to read '%s': %s", u.file, strerror(-r));
    }
    if (remove) {
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            bool drop = false;
            for (size_t j = 0; j < given->n && !drop; j++)
                drop = !strcmp(keys[i], given->items[j]->s);
            if (drop)
                free(keys[i]);
            else
                keys[kept++] = keys[i];
        }
        n = kept;
    } else {
        for (size_t j = 0; j < given->n; j++) {
            bool have = false;
            for (size_t i = 0; i < n && !have; i++)
                have = !strcmp(keys[i], given->items[j]->s);
            if (have)
                continue;
            char **nk = n < QGA_SSH_MAX_KEYS ? realloc(keys, (n + 1) * sizeof(*nk)) : NULL;
            if (!nk || !(nk[n] = strdup(given->items[j]->s))) {
                if (nk)
                    keys = nk;
                qga_ssh_free(keys, n);
                return qga_error_set(e, -ENOMEM, "too many keys");
            }
            keys = nk;
            n++;
        }
    }
    r = qga_ssh_write(&u, keys, n);
    qga_ssh_free(keys, n);
    if (r < 0)
        return qga_error_set(e, r, "failed to write '%s': %s", u.file, strerror(-r));
    json_object_begin(w, "return");
    json_object_end(w);
    return 0;
}

static int qga_cmd_ssh_add(struct qga_state *s, const struct json_value *args,
                           struct json_writer *w, struct qga_error *e)
{
    (void)s;
    return qga_ssh_edit(args, false, w, e);
}

static int qga_cmd_ssh_remove(struct qga_state *s, const struct json_value *args,
                              struct json_writer *w, struct qga_error *e)
{
    (void)s;
    return qga_ssh_edit(args, true, w, e);
}

static const struct qga_arg qga_args_ssh_get[] = {
    { "username", QGA_ARG_STR, false, NULL }, { 0 } };
static const struct qga_arg qga_args_ssh_add[] = {
    { "username", QGA_ARG_STR, false, NULL }, { "keys", QGA_ARG_STR_LIST, false, NULL },
    { "reset", QGA_ARG_BOOL, true, NULL }, { 0 } };
static const struct qga_arg qga_args_ssh_remove[] = {
    { "username", QGA_ARG_STR, false, NULL }, { "keys", QGA_ARG_STR_LIST, false, NULL },
    { 0 } };

static const struct qga_command qga_ssh_commands[] = {
    { "guest-ssh-get-authorized-keys", qga_cmd_ssh_get, qga_args_ssh_get, false },
    { "guest-ssh-add-authorized-keys", qga_cmd_ssh_add, qga_args_ssh_add, false },
    { "guest-ssh-remove-authorized-keys", qga_cmd_ssh_remove, qga_args_ssh_remove, false },
    /* Windows-only in qemu-ga: listed, and disabled, as there */
    { "guest-get-devices", NULL, NULL, false },
    { 0 },
};
QGA_COMMANDS(qga_ssh_commands)
