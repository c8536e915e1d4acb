/* Request handling: one JSON text in, one reply out, with QMP's checks and error texts (qemu-ga's
 * exact wording, so clients that match on it keep working). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "qga/internal.h"

#define QGA_MAX_TABLES 16
static const struct qga_command *qga_tables[QGA_MAX_TABLES];
static int qga_ntables;

void qga_register_commands(const struct qga_command *table)
{
    if (qga_ntables < QGA_MAX_TABLES)
        qga_tables[qga_ntables++] = table;
}

const struct qga_command *qga_command_find(const char *name)
{
    for (int t = 0; t < qga_ntables; t++)
        for (const struct qga_command *c = qga_tables[t]; c->name; c++)
            if (!strcmp(c->name, name))
                return c;
    return NULL;
}

static int qga_command_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct qga_command *const *)a)->name,
                  (*(const struct qga_command *const *)b)->name);
}

void qga_command_foreach(void (*fn)(void *opaque, const struct qga_command *c), void *opaque)
{
    const struct qga_command *all[256];
    size_t n = 0;
    for (int t = 0; t < qga_ntables; t++)
        for (const struct qga_command *c = qga_tables[t]; c->name && n < 256; c++)
            all[n++] = c;
    qsort(all, n, sizeof(all[0]), qga_command_cmp);
    for (size_t i = 0; i < n; i++)
        fn(opaque, all[i]);
}

struct qga_state *qga_state_new(void)
{
    struct qga_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->next_handle = 1000;
    return s;
}

void qga_state_free(struct qga_state *s)
{
    if (!s)
        return;
    for (int i = 0; i < QGA_MAX_FILES; i++)
        if (s->files[i].handle)
            fclose(s->files[i].f);
    for (int i = 0; i < QGA_MAX_EXECS; i++) {
        struct qga_exec *x = &s->execs[i];
        if (x->pid) {
            /* a child still running would hold its thread, and so the agent's exit, forever:
             * it goes with the agent (its own process group, from guest-exec's setsid) */
            pthread_mutex_lock(&s->lock);
            if (!x->exited)
                kill(-x->pid, SIGKILL);
            pthread_mutex_unlock(&s->lock);
            pthread_join(x->thread, NULL);
            free(x->out.buf);
            free(x->err.buf);
        }
    }
    /* as qemu-ga: an agent that stops never leaves the guest's disks frozen behind it, and
     * tells the hook so */
    if (s->frozen) {
        struct qga_error e;
        qga_fsfreeze_thaw_all(s);
        qga_fsfreeze_run_hook(s, "thaw", &e);
    }
    free(s->fsfreeze_hook);
    for (size_t i = 0; i < s->nrpcs; i++)
        free(s->rpcs[i]);
    free(s->rpcs);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int qga_state_set_rpcs(struct qga_state *s, const char *list, bool allow, const char **bad)
{
    static char badname[128];
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return -ENOMEM;
    int ret = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!qga_command_find(tok)) {
            snprintf(badname, sizeof(badname), "%s", tok);
            *bad = badname;
            ret = -EINVAL;
            break;
        }
        char **nr = realloc(s->rpcs, (s->nrpcs + 1) * sizeof(*nr));
        if (!nr || !(nr[s->nrpcs] = strdup(tok))) {
            if (nr)
                s->rpcs = nr;
            ret = -ENOMEM;
            break;
        }
        s->rpcs = nr;
        s->nrpcs++;
    }
    s->rpcs_allow = allow;
    free(copy);
    return ret;
}

bool qga_command_enabled(const struct qga_state *s, const char *name)
{
    const struct qga_command *c = qga_command_find(name);
    if (c && !c->handler)
        return false;        /* a command of another OS, listed as disabled as qemu-ga lists it */
    bool listed = false;
    for (size_t i = 0; i < s->nrpcs && !listed; i++)
        listed = !strcmp(s->rpcs[i], name);
    if (s->rpcs_allow)
        return listed;
    return !listed;
}

static int qga_error_vset(struct qga_error *e, const char *cls, int err, const char *fmt, va_list ap)
{
    e->cls = cls;
    vsnprintf(e->desc, sizeof(e->desc), fmt, ap);
    return err < 0 ? err : -EINVAL;
}

int qga_error_set(struct qga_error *e, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = qga_error_vset(e, "GenericError", err, fmt, ap);
    va_end(ap);
    return r;
}

int qga_error_class(struct qga_error *e, const char *cls, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = qga_error_vset(e, cls, err, fmt, ap);
    va_end(ap);
    return r;
}

int64_t qga_arg_int(const struct json_value *args, const char *name, int64_t dflt)
{
    const struct json_value *v = json_get(args, name);
    return v && v->type == JSON_NUMBER && v->is_int ? v->i : dflt;
}

const char *qga_arg_str(const struct json_value *args, const char *name, const char *dflt)
{
    const struct json_value *v = json_get(args, name);
    return v && v->type == JSON_STRING ? v->s : dflt;
}

bool qga_arg_bool(const struct json_value *args, const char *name, bool dflt)
{
    const struct json_value *v = json_get(args, name);
    return v && v->type == JSON_BOOL ? v->b : dflt;
}

static const char *qga_arg_type_name(enum qga_arg_type t)
{
    switch (t) {
    case QGA_ARG_INT: return "integer";
    case QGA_ARG_STR: return "string";
    case QGA_ARG_BOOL: return "boolean";
    case QGA_ARG_STR_LIST:
    case QGA_ARG_OBJ_LIST: return "array";
    default: return "value";
    }
}

static bool qga_arg_type_ok(enum qga_arg_type t, const struct json_value *v)
{
    switch (t) {
    case QGA_ARG_INT: return v->type == JSON_NUMBER && v->is_int;
    case QGA_ARG_STR: return v->type == JSON_STRING;
    case QGA_ARG_BOOL: return v->type == JSON_BOOL;
    case QGA_ARG_STR_LIST:
        if (v->type != JSON_ARRAY)
            return false;
        for (size_t i = 0; i < v->n; i++)
            if (v->items[i]->type != JSON_STRING)
                return false;
        return true;
    case QGA_ARG_OBJ_LIST: return v->type == JSON_ARRAY;
    case QGA_ARG_ANY: return true;
    }
    return false;
}

/* Checks obj against a table of members: unknown ones, missing ones, wrong types; prefix names
 * the object in messages as QMP does ("vcpus[0]."). */
static int qga_check_members(const struct qga_arg *table, const struct json_value *obj,
                             const char *prefix, struct qga_error *e)
{
    if (obj) {
        for (size_t i = 0; i < obj->n; i++) {
            const struct qga_arg *a = table;
            while (a && a->name && strcmp(a->name, obj->keys[i]))
                a++;
            if (!a || !a->name)
                return qga_error_set(e, -EINVAL, "Parameter '%s%s' is unexpected", prefix,
                                     obj->keys[i]);
        }
    }
    for (const struct qga_arg *a = table; a && a->name; a++) {
        const struct json_value *v = json_get(obj, a->name);
        if (!v) {
            if (!a->optional)
                return qga_error_set(e, -EINVAL, "Parameter '%s%s' is missing", prefix, a->name);
            continue;
        }
        if (a->type == QGA_ARG_OBJ_LIST && v->type == JSON_ARRAY) {
            for (size_t i = 0; i < v->n; i++) {
                char sub[128];
                snprintf(sub, sizeof(sub), "%s%s[%zu]", prefix, a->name, i);
                if (v->items[i]->type != JSON_OBJECT)
                    return qga_error_set(e, -EINVAL, "Invalid parameter type for '%s', "
                                         "expected: object", sub);
                strncat(sub, ".", sizeof(sub) - strlen(sub) - 1);
                int r = qga_check_members(a->fields, v->items[i], sub, e);
                if (r < 0)
                    return r;
            }
            continue;
        }
        if (!qga_arg_type_ok(a->type, v))
            return qga_error_set(e, -EINVAL, "Invalid parameter type for '%s%s', expected: %s",
                                 prefix, a->name, qga_arg_type_name(a->type));
    }
    return 0;
}

/* Runs the request: the checks QMP makes, then the handler, which writes "return" into w. */
static int qga_run(struct qga_state *s, const struct json_value *req, struct json_writer *w,
                   struct qga_error *e, const struct qga_command **cmd)
{
    if (req->type != JSON_OBJECT)
        return qga_error_set(e, -EINVAL, "QMP input must be a JSON object");
    for (size_t i = 0; i < req->n; i++)
        if (strcmp(req->keys[i], "execute") && strcmp(req->keys[i], "arguments") &&
            strcmp(req->keys[i], "id"))
            return qga_error_set(e, -EINVAL, "QMP input member '%s' is unexpected", req->keys[i]);
    const struct json_value *ex = json_get(req, "execute");
    if (!ex)
        return qga_error_set(e, -EINVAL, "QMP input lacks member 'execute'");
    if (ex->type != JSON_STRING)
        return qga_error_set(e, -EINVAL, "QMP input member 'execute' must be a string");
    const struct json_value *args = json_get(req, "arguments");
    if (args && args->type != JSON_OBJECT)
        return qga_error_set(e, -EINVAL, "QMP input member 'arguments' must be an object");
    const struct qga_command *c = qga_command_find(ex->s);
    if (!c)
        return qga_error_class(e, "CommandNotFound", -ENOENT, "The command %s has not been found",
                               ex->s);
    /* qemu-ga 7.2's class and words (older QEMUs said GenericError, "The command %s has been
     * disabled for this instance"): the oracle is the agent clients meet today */
    if (!qga_command_enabled(s, c->name))
        return qga_error_class(e, "CommandNotFound", -EPERM, "Command %s has been disabled",
                               c->name);
    /* with file systems frozen, only what cannot write to them runs (qemu-ga's rule): a
     * command writing to a frozen file system would hang the agent until the host thaws */
    static const char *const frozen_ok[] = {
        "guest-ping", "guest-sync", "guest-sync-delimited", "guest-info", "guest-get-time",
        "guest-fsfreeze-status", "guest-fsfreeze-thaw", "guest-get-osinfo", "guest-get-host-name",
        "guest-get-timezone", "guest-get-fsinfo", NULL };
    if (s->frozen) {
        bool ok = false;
        for (int i = 0; frozen_ok[i] && !ok; i++)
            ok = !strcmp(frozen_ok[i], c->name);
        if (!ok)
            return qga_error_class(e, "CommandNotFound", -EBUSY, "Command %s has been disabled: "
                                   "the agent is in frozen state", c->name);
    }
    int r = qga_check_members(c->args, args, "", e);
    if (r < 0)
        return r;
    *cmd = c;
    return c->handler(s, args, w, e);
}

/* Closes the reply; guest-sync-delimited's goes behind the 0xFF sentinel the client resyncs on. */
static int qga_finish(FILE *f, char **buf, size_t *len, bool sentinel, char **reply,
                      size_t *reply_len)
{
    fputc('\n', f);
    if (fclose(f)) {
        free(*buf);
        return -ENOMEM;
    }
    if (sentinel) {
        char *nb = malloc(*len + 1);
        if (!nb) {
            free(*buf);
            return -ENOMEM;
        }
        nb[0] = (char)0xff;
        memcpy(nb + 1, *buf, *len);
        free(*buf);
        *buf = nb;
        (*len)++;
    }
    *reply = *buf;
    *reply_len = *len;
    return 0;
}

int qga_handle_request(struct qga_state *s, const char *text, size_t len, char **reply,
                       size_t *reply_len)
{
    struct json_value *req = NULL;
    const char *perr = NULL;
    struct qga_error e = { 0 };
    const struct qga_command *cmd = NULL;
    char *buf = NULL;
    size_t blen = 0;
    *reply = NULL;
    *reply_len = 0;
    s->delimit_reply = false;

    int r = json_parse(text, len, &req, &perr);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        qga_error_set(&e, r, "JSON parse error, %s", perr ? perr : "invalid input");

    FILE *f = open_memstream(&buf, &blen);
    if (!f) {
        json_value_free(req);
        return -ENOMEM;
    }
    const struct json_value *id = req && req->type == JSON_OBJECT ? json_get(req, "id") : NULL;
    if (r == 0) {
        struct json_writer w;
        json_init(&w, f, false);
        json_object_begin(&w, NULL);
        r = qga_run(s, req, &w, &e, &cmd);
        if (r == 0) {
            if (id)
                json_write_value(&w, "id", id);
            json_object_end(&w);
        }
    }
    if (r == 0 && cmd && cmd->no_success_response) {
        fclose(f);
        free(buf);
        json_value_free(req);
        return 0;
    }
    if (r < 0) {
        /* start over: a failed handler may have written half a result */
        fclose(f);
        free(buf);
        buf = NULL;
        blen = 0;
        f = open_memstream(&buf, &blen);
        if (!f) {
            json_value_free(req);
            return -ENOMEM;
        }
        struct json_writer w;
        json_init(&w, f, false);
        json_object_begin(&w, NULL);
        json_object_begin(&w, "error");
        json_string(&w, "class", e.cls ? e.cls : "GenericError");
        json_string(&w, "desc", e.desc);
        json_object_end(&w);
        if (id)
            json_write_value(&w, "id", id);
        json_object_end(&w);
    }
    json_value_free(req);
    return qga_finish(f, &buf, &blen, r == 0 && s->delimit_reply, reply, reply_len);
}

int qga_spawn_wait(char *const argv[], const char *input)
{
    int p[2] = { -1, -1 };
    if (input && pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        if (input) {
            close(p[0]);
            close(p[1]);
        }
        return err;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(input ? p[0] : null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    ssize_t n = 0;
    if (input) {
        close(p[0]);
        n = write(p[1], input, strlen(input));   /* a line fits in the pipe: no partial write */
        close(p[1]);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (input && n != (ssize_t)strlen(input))
        return -EIO;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}
