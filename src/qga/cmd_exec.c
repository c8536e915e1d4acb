/* guest-exec and guest-exec-status: a child per request, a thread per child that feeds its stdin,
 * collects (capped) stdout and stderr and reaps it, so the port stays free meanwhile. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "qga/internal.h"
#include "util/base64.h"

struct qga_exec_job {
    struct qga_state *s;
    struct qga_exec *x;
    int in_fd, out_fd, err_fd;
    void *input;
    size_t input_len;
};

/* Reads what fd has into o (past the cap, counts it as truncated); read(2)'s result. */
static ssize_t qga_exec_take(struct qga_state *s, struct qga_exec_out *o, int fd)
{
    char buf[16384];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN) ? 1 : n;
    pthread_mutex_lock(&s->lock);
    size_t room = QGA_EXEC_MAX_OUTPUT - o->len, take = (size_t)n < room ? (size_t)n : room;
    if (take < (size_t)n)
        o->truncated = true;
    char *nb = take ? realloc(o->buf, o->len + take) : o->buf;
    if (nb) {
        memcpy(nb + o->len, buf, take);
        o->buf = nb;
        o->len += take;
    } else {
        o->truncated = true;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void *qga_exec_thread(void *opaque)
{
    struct qga_exec_job *j = opaque;
    size_t off = 0;
    struct pollfd p[3];
    while (j->in_fd >= 0 || j->out_fd >= 0 || j->err_fd >= 0) {
        p[0] = (struct pollfd){ .fd = j->in_fd, .events = POLLOUT };
        p[1] = (struct pollfd){ .fd = j->out_fd, .events = POLLIN };
        p[2] = (struct pollfd){ .fd = j->err_fd, .events = POLLIN };
        if (poll(p, 3, -1) < 0 && errno != EINTR)
            break;
        if (j->in_fd >= 0 && p[0].revents) {
            ssize_t n = off < j->input_len ? write(j->in_fd, (char *)j->input + off, j->input_len - off) : 0;
            if (n > 0)
                off += (size_t)n;
            if (n <= 0 || off == j->input_len) {
                close(j->in_fd);
                j->in_fd = -1;
            }
        }
        for (int k = 1; k < 3; k++) {
            int *fd = k == 1 ? &j->out_fd : &j->err_fd;
            if (*fd < 0 || !p[k].revents)
                continue;
            if (qga_exec_take(j->s, k == 1 ? &j->x->out : &j->x->err, *fd) <= 0) {
                close(*fd);
                *fd = -1;
            }
        }
    }
    int st;
    while (waitpid(j->x->pid, &st, 0) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&j->s->lock);
    j->x->status = st;
    j->x->exited = true;
    pthread_mutex_unlock(&j->s->lock);
    free(j->input);
    free(j);
    return NULL;
}

static char **qga_exec_strv(const struct json_value *list, const char *first)
{
    size_t n = list ? list->n : 0;
    char **v = calloc(n + 2, sizeof(*v));
    if (!v)
        return NULL;
    size_t k = 0;
    if (first)
        v[k++] = (char *)first;
    for (size_t i = 0; i < n; i++)
        v[k++] = list->items[i]->s;
    return v;
}

static int qga_cmd_exec(struct qga_state *s, const struct json_value *args,
                        struct json_writer *w, struct qga_error *e)
{
    const char *path = qga_arg_str(args, "path", "");
    bool capture = qga_arg_bool(args, "capture-output", false);
    void *input = NULL;
    size_t input_len = 0;
    const char *in64 = qga_arg_str(args, "input-data", NULL);
    if (in64) {
        int r = base64_decode(in64, &input, &input_len);
        if (r < 0)
            return qga_error_set(e, r, r == -ENOMEM ? "out of memory" : "Base64 data contains invalid characters");
    }
    int slot = -1;
    for (int i = 0; i < QGA_MAX_EXECS && slot < 0; i++)
        if (!s->execs[i].pid)
            slot = i;
    if (slot < 0) {
        free(input);
        return qga_error_set(e, -EAGAIN, "too many processes not yet reaped by "
                             "guest-exec-status (at most %d)", QGA_MAX_EXECS);
    }
    char **argv = qga_exec_strv(json_get(args, "arg"), path);
    char **envp = json_get(args, "env") ? qga_exec_strv(json_get(args, "env"), NULL) : NULL;
    int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 }, pst[2] = { -1, -1 };
    int ret = 0;
    if (!argv || (json_get(args, "env") && !envp)) {
        ret = qga_error_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    if ((in64 && pipe2(pin, O_CLOEXEC)) || (capture && (pipe2(pout, O_CLOEXEC) ||
        pipe2(perr, O_CLOEXEC))) || pipe2(pst, O_CLOEXEC)) {
        ret = qga_error_set(e, -errno, "Guest agent command failed, error was '%s'",
                            strerror(errno));
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        ret = qga_error_set(e, -errno, "Guest agent command failed, error was '%s'",
                            strerror(errno));
        goto out;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(in64 ? pin[0] : null, 0);
        dup2(capture ? pout[1] : null, 1);
        dup2(capture ? perr[1] : null, 2);
        setsid();
        if (envp)
            execvpe(path, argv, envp);
        else
            execvp(path, argv);
        int err = errno;
        (void)!write(pst[1], &err, sizeof(err));
        _exit(127);
    }
    close(pst[1]);
    pst[1] = -1;
    int child_err = 0;
    ssize_t n;
    while ((n = read(pst[0], &child_err, sizeof(child_err))) < 0 && errno == EINTR)
        ;
    if (n == sizeof(child_err)) {
        /* the exec itself failed: say so now, as qemu-ga does, and reap the child here */
        waitpid(pid, NULL, 0);
        ret = qga_error_set(e, -child_err, "Guest agent command failed, error was 'Failed to "
                            "execute child process \"%s\" (%s)'", path, strerror(child_err));
        goto out;
    }
    struct qga_exec *x = &s->execs[slot];
    struct qga_exec_job *j = calloc(1, sizeof(*j));
    pthread_mutex_lock(&s->lock);
    *x = (struct qga_exec){ .pid = pid, .capture = capture };
    pthread_mutex_unlock(&s->lock);
    if (j) {
        *j = (struct qga_exec_job){ .s = s, .x = x, .in_fd = in64 ? pin[1] : -1,
                                    .out_fd = capture ? pout[0] : -1,
                                    .err_fd = capture ? perr[0] : -1,
                                    .input = input, .input_len = input_len };
    }
    if (!j || pthread_create(&x->thread, NULL, qga_exec_thread, j)) {
        /* without its thread the child cannot be fed or reaped: end it */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        x->pid = 0;
        free(j);
        ret = qga_error_set(e, -ENOMEM, "Guest agent command failed, error was 'no thread'");
        goto out;
    }
    /* the thread owns these now */
    input = NULL;
    pin[1] = pout[0] = perr[0] = -1;
    json_object_begin(w, "return");
    json_int(w, "pid", pid);
    json_object_end(w);
out:
    for (int i = 0; i < 2; i++) {
        int *fds[] = { &pin[i], &pout[i], &perr[i], &pst[i] };
        for (int k = 0; k < 4; k++)
            if (*fds[k] >= 0)
                close(*fds[k]);
    }
    free(input);
    free(argv);
    free(envp);
    return ret;
}

static void qga_exec_write_out(struct json_writer *w, const char *key, const char *tkey,
                               struct qga_exec_out *o)
{
    if (!o->len)
        return;
    char *b64 = base64_encode(o->buf, o->len);
    if (b64)
        json_string(w, key, b64);
    free(b64);
    json_bool(w, tkey, o->truncated);
}

static int qga_cmd_exec_status(struct qga_state *s, const struct json_value *args,
                               struct json_writer *w, struct qga_error *e)
{
    int64_t pid = qga_arg_int(args, "pid", 0);
    struct qga_exec *x = NULL;
    for (int i = 0; i < QGA_MAX_EXECS && !x; i++)
        if (s->execs[i].pid && s->execs[i].pid == pid)
            x = &s->execs[i];
    if (!x)
        return qga_error_set(e, -ESRCH, "Invalid parameter 'pid'");
    pthread_mutex_lock(&s->lock);
    bool exited = x->exited;
    pthread_mutex_unlock(&s->lock);
    json_object_begin(w, "return");
    json_bool(w, "exited", exited);
    if (exited) {
        pthread_join(x->thread, NULL);
        if (WIFEXITED(x->status))
            json_int(w, "exitcode", WEXITSTATUS(x->status));
        else if (WIFSIGNALED(x->status))
            json_int(w, "signal", WTERMSIG(x->status));
        if (x->capture) {
            qga_exec_write_out(w, "out-data", "out-truncated", &x->out);
            qga_exec_write_out(w, "err-data", "err-truncated", &x->err);
        }
        free(x->out.buf);
        free(x->err.buf);
        *x = (struct qga_exec){ 0 };
    }
    json_object_end(w);
    return 0;
}

static const struct qga_arg qga_args_exec[] = {
    { "path", QGA_ARG_STR, false, NULL }, { "arg", QGA_ARG_STR_LIST, true, NULL },
    { "env", QGA_ARG_STR_LIST, true, NULL }, { "input-data", QGA_ARG_STR, true, NULL },
    { "capture-output", QGA_ARG_BOOL, true, NULL }, { 0 } };
static const struct qga_arg qga_args_exec_status[] = { { "pid", QGA_ARG_INT, false, NULL }, { 0 } };

static const struct qga_command qga_exec_commands[] = {
    { "guest-exec", qga_cmd_exec, qga_args_exec, false },
    { "guest-exec-status", qga_cmd_exec_status, qga_args_exec_status, false },
    { 0 },
};
QGA_COMMANDS(qga_exec_commands)
