/* guest-file-*: a bounded table of open files, data in base64, qemu-ga's limits and messages. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "qga/internal.h"
#include "util/base64.h"

static struct qga_file *qga_file_find(struct qga_state *s, const struct json_value *args,
                                      struct qga_error *e)
{
    int64_t h = qga_arg_int(args, "handle", -1);
    for (int i = 0; i < QGA_MAX_FILES; i++)
        if (s->files[i].handle && s->files[i].handle == h)
            return &s->files[i];
    qga_error_set(e, -ENOENT, "handle '%lld' has not been found", (long long)h);
    return NULL;
}

/* fopen()'s modes, as qemu-ga accepts them: it opens with open(2) so O_NONBLOCK and no
 * controlling tty can be asked for, and so files are created 0666 & ~umask as fopen would. */
static int qga_file_flags(const char *mode)
{
    static const struct { const char *m; int flags; } modes[] = {
        { "r", O_RDONLY }, { "rb", O_RDONLY },
        { "w", O_WRONLY | O_CREAT | O_TRUNC }, { "wb", O_WRONLY | O_CREAT | O_TRUNC },
        { "a", O_WRONLY | O_CREAT | O_APPEND }, { "ab", O_WRONLY | O_CREAT | O_APPEND },
        { "r+", O_RDWR }, { "rb+", O_RDWR }, { "r+b", O_RDWR },
        { "w+", O_RDWR | O_CREAT | O_TRUNC }, { "wb+", O_RDWR | O_CREAT | O_TRUNC },
        { "w+b", O_RDWR | O_CREAT | O_TRUNC },
        { "a+", O_RDWR | O_CREAT | O_APPEND }, { "ab+", O_RDWR | O_CREAT | O_APPEND },
        { "a+b", O_RDWR | O_CREAT | O_APPEND },
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(modes[i].m, mode))
            return modes[i].flags;
    return -1;
}

static int qga_cmd_file_open(struct qga_state *s, const struct json_value *args,
                             struct json_writer *w, struct qga_error *e)
{
    const char *path = qga_arg_str(args, "path", "");
    const char *mode = qga_arg_str(args, "mode", "r");
    int flags = qga_file_flags(mode);
    if (flags < 0)
        return qga_error_set(e, -EINVAL, "invalid file open mode '%s'", mode);
    int slot = -1;
    for (int i = 0; i < QGA_MAX_FILES && slot < 0; i++)
        if (!s->files[i].handle)
            slot = i;
    if (slot < 0)
        return qga_error_set(e, -EMFILE, "too many open files (at most %d)", QGA_MAX_FILES);
    int fd = open(path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0666);
    if (fd < 0)
        return qga_error_set(e, -errno, "failed to open file '%s' (mode: '%s'): %s", path, mode,
                             strerror(errno));
    /* non-blocking only for the open (a FIFO must not hang the agent); reads then block as
     * qemu-ga's do */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = fdopen(fd, mode);
    if (!f) {
        int err = errno;
        close(fd);
        return qga_error_set(e, -err, "failed to open file '%s' (mode: '%s'): %s", path, mode,
                             strerror(err));
    }
    s->files[slot].handle = s->next_handle++;
    s->files[slot].f = f;
    json_int(w, "return", s->files[slot].handle);
    return 0;
}

static int qga_cmd_file_close(struct qga_state *s, const struct json_value *args,
                              struct json_writer *w, struct qga_error *e)
{
    struct qga_file *fh = qga_file_find(s, args, e);
    if (!fh)
        return -ENOENT;
    int r = fclose(fh->f);
    fh->handle = 0;
    fh->f = NULL;
    if (r)
        return qga_error_set(e, -errno, "failed to close handle: %s", strerror(errno));
    json_object_begin(w, "return");
    json_object_end(w);
    return 0;
}

static int qga_cmd_file_read(struct qga_state *s, const struct json_value *args,
                             struct json_writer *w, struct qga_error *e)
{
    struct qga_file *fh = qga_file_find(s, args, e);
    if (!fh)
        return -ENOENT;
    int64_t count = qga_arg_int(args, "count", 4096);
    if (count < 0 || count > QGA_FILE_READ_MAX)
        return qga_error_set(e, -EINVAL, "value '%lld' is invalid for argument count",
                             (long long)count);
    char *buf = malloc((size_t)count + 1);
    if (!buf)
        return qga_error_set(e, -ENOMEM, "out of memory");
    size_t n = fread(buf, 1, (size_t)count, fh->f);
    if (ferror(fh->f)) {
        int err = errno;
        clearerr(fh->f);
        free(buf);
        return qga_error_set(e, -err, "failed to read file: %s", strerror(err));
    }
    bool eof = feof(fh->f);
    clearerr(fh->f);
    char *b64 = base64_encode(buf, n);
    free(buf);
    if (!b64)
        return qga_error_set(e, -ENOMEM, "out of memory");
    json_object_begin(w, "return");
    json_int(w, "count", (int64_t)n);
    json_string(w, "buf-b64", b64);
    json_bool(w, "eof", eof);
    json_object_end(w);
    free(b64);
    return 0;
}

static int qga_cmd_file_write(struct qga_state *s, const struct json_value *args,
                              struct json_writer *w, struct qga_error *e)
{
    struct qga_file *fh = qga_file_find(s, args, e);
    if (!fh)
        return -ENOENT;
    void *data;
    size_t len;
    int r = base64_decode(qga_arg_str(args, "buf-b64", ""), &data, &len);
    if (r < 0)
        return qga_error_set(e, r, r == -ENOMEM ? "out of memory" : "Base64 data contains invalid characters");
    int64_t count = qga_arg_int(args, "count", (int64_t)len);
    if (count < 0 || (uint64_t)count > len) {
        free(data);
        return qga_error_set(e, -EINVAL, "value '%lld' is invalid for argument count",
                             (long long)count);
    }
    size_t n = fwrite(data, 1, (size_t)count, fh->f);
    free(data);
    if (ferror(fh->f)) {
        int err = errno;
        clearerr(fh->f);
        return qga_error_set(e, -err, "failed to write to file: %s", strerror(err));
    }
    json_object_begin(w, "return");
    json_int(w, "count", (int64_t)n);
    json_bool(w, "eof", feof(fh->f));
    json_object_end(w);
    return 0;
}

static int qga_cmd_file_seek(struct qga_state *s, const struct json_value *args,
                             struct json_writer *w, struct qga_error *e)
{
    const struct json_value *wh = json_get(args, "whence");
    int whence = -1;
    if (wh->type == JSON_NUMBER && wh->is_int) {
        /* QGA's own numbering, which need not be the host's SEEK_* */
        whence = wh->i == 0 ? SEEK_SET : wh->i == 1 ? SEEK_CUR : wh->i == 2 ? SEEK_END : -1;
        if (whence < 0)
            return qga_error_set(e, -EINVAL, "invalid whence code %lld", (long long)wh->i);
    } else if (wh->type == JSON_STRING) {
        whence = !strcmp(wh->s, "set") ? SEEK_SET : !strcmp(wh->s, "cur") ? SEEK_CUR :
                 !strcmp(wh->s, "end") ? SEEK_END : -1;
        if (whence < 0)
            return qga_error_set(e, -EINVAL, "Parameter 'whence' does not accept value '%s'",
                                 wh->s);
    } else {
        return qga_error_set(e, -EINVAL, "Invalid parameter type for 'whence', expected: "
                             "GuestFileWhence");
    }
    struct qga_file *fh = qga_file_find(s, args, e);
    if (!fh)
        return -ENOENT;
    if (fseeko(fh->f, (off_t)qga_arg_int(args, "offset", 0), whence))
        return qga_error_set(e, -errno, "failed to seek file: %s", strerror(errno));
    off_t pos = ftello(fh->f);
    json_object_begin(w, "return");
    json_int(w, "position", (int64_t)pos);
    json_bool(w, "eof", feof(fh->f));
    json_object_end(w);
    clearerr(fh->f);
    return 0;
}

static int qga_cmd_file_flush(struct qga_state *s, const struct json_value *args,
                              struct json_writer *w, struct qga_error *e)
{
    struct qga_file *fh = qga_file_find(s, args, e);
    if (!fh)
        return -ENOENT;
    if (fflush(fh->f))
        return qga_error_set(e, -errno, "failed to flush file: %s", strerror(errno));
    json_object_begin(w, "return");
    json_object_end(w);
    return 0;
}

static const struct qga_arg qga_args_open[] = {
    { "path", QGA_ARG_STR, false, NULL }, { "mode", QGA_ARG_STR, true, NULL }, { 0 } };
static const struct qga_arg qga_args_handle[] = { { "handle", QGA_ARG_INT, false, NULL }, { 0 } };
static const struct qga_arg qga_args_read[] = {
    { "handle", QGA_ARG_INT, false, NULL }, { "count", QGA_ARG_INT, true, NULL }, { 0 } };
static const struct qga_arg qga_args_write[] = {
    { "handle", QGA_ARG_INT, false, NULL }, { "buf-b64", QGA_ARG_STR, false, NULL },
    { "count", QGA_ARG_INT, true, NULL }, { 0 } };
static const struct qga_arg qga_args_seek[] = {
    { "handle", QGA_ARG_INT, false, NULL }, { "offset", QGA_ARG_INT, false, NULL },
    { "whence", QGA_ARG_ANY, false, NULL }, { 0 } };

static const struct qga_command qga_file_commands[] = {
    { "guest-file-open", qga_cmd_file_open, qga_args_open, false },
    { "guest-file-close", qga_cmd_file_close, qga_args_handle, false },
    { "guest-file-read", qga_cmd_file_read, qga_args_read, false },
    { "guest-file-write", qga_cmd_file_write, qga_args_write, false },
    { "guest-file-seek", qga_cmd_file_seek, qga_args_seek, false },
    { "guest-file-flush", qga_cmd_file_flush, qga_args_handle, false },
    { 0 },
};
QGA_COMMANDS(qga_file_commands)
