/* QMP, QEMU's machine protocol (docs/interop/qmp-spec): a greeting, capabilities negotiation,
 * then one JSON object per command, {"execute": NAME, "arguments": {...}, "id": ANY}, answered
 * by {"return": ...} or {"error": {"class", "desc"}} with the id echoed. Error texts are QEMU's,
 * since scripts match on them. */
#include "vm/monitor/monitor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

char *qmp_greeting(const struct monitor_info *info)
{
    char *s = NULL;
    /* no "oob": commands run in order on the event loop */
    if (asprintf(&s, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %d, \"minor\": %d, \"major\": %d}, "
                     "\"package\": \"%s\"}, \"capabilities\": []}}\r\n",
                 info->micro, info->minor, info->major, info->package) < 0)
        return NULL;
    return s;
}

/* Builds {"return": ret} or {"error": ...} with the id; one line, or pretty. */
static char *qmp_reply(const struct qmp_session *q, const char *ret_json, const struct monitor_error *e,
                       const struct json_value *id)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    if (ret_json && !q->pretty) {
        fputs("{\"return\": ", f);
        fputs(ret_json, f);
        if (id) {
            fputs(", \"id\": ", f);
            struct json_writer w;
            json_init(&w, f, false);
            json_write_value(&w, NULL, id);
        }
        fputs("}", f);
    } else {
        struct json_writer w;
        json_init(&w, f, q->pretty);
        json_object_begin(&w, NULL);
        if (ret_json) {
            struct json_value *v = NULL;
            const char *err;
            if (json_parse(ret_json, strlen(ret_json), &v, &err) == 0) {
                json_write_value(&w, "return", v);
                json_value_free(v);
            }
        } else {
            json_object_begin(&w, "error");
            json_string(&w, "class", e->cls);
            json_string(&w, "desc", e->desc);
            json_object_end(&w);
        }
        if (id)
            json_write_value(&w, "id", id);
        json_object_end(&w);
    }
    fputs("\r\n", f);
    fclose(f);
    return text;
}

static char *qmp_error(const struct qmp_session *q, const struct json_value *id, const char *cls, const char *desc)
{
    struct monitor_error e = { cls, "" };
    snprintf(e.desc, sizeof(e.desc), "%s", desc);
    return qmp_reply(q, NULL, &e, id);
}

char *qmp_handle_text(struct monitor_ctx *ctx, struct qmp_session *q, const char *text, size_t len)
{
    struct json_value *req = NULL;
    const char *why;
    if (json_parse(text, len, &req, &why)) {
        char desc[128];
        snprintf(desc, sizeof(desc), "JSON parse error, %s", why);
        return qmp_error(q, NULL, "GenericError", desc);
    }
    char *out = NULL;
    const struct json_value *id = json_get(req, "id");
    if (req->type != JSON_OBJECT) {
        out = qmp_error(q, NULL, "GenericError", "QMP input must be a JSON object");
        goto done;
    }
    const struct json_value *exec = json_get(req, "execute"), *args = json_get(req, "arguments");
    for (size_t i = 0; i < req->n; i++) {
        const char *k = req->keys[i];
        if (strcmp(k, "execute") && strcmp(k, "arguments") && strcmp(k, "id")) {
            char desc[128];
            snprintf(desc, sizeof(desc), "QMP input member '%.64s' is unexpected", k);
            out = qmp_error(q, id, "GenericError", desc);
            goto done;
        }
    }
    if (!exec) {
        out = qmp_error(q, id, "GenericError", "QMP input lacks member 'execute'");
        goto done;
    }
    if (exec->type != JSON_STRING) {
        out = qmp_error(q, id, "GenericError", "QMP input member 'execute' must be a string");
        goto done;
    }
    if (args && args->type != JSON_OBJECT) {
        out = qmp_error(q, id, "GenericError", "QMP input member 'arguments' must be an object");
        goto done;
    }
    if (!strcmp(exec->s, "qmp_capabilities")) {
        struct monitor_error e;
        if (q->negotiated) {
            out = qmp_error(q, id, "CommandNotFound", "Capabilities negotiation is already complete, command ignored");
        } else if (monitor_check_args(monitor_cmd_find("qmp_capabilities"), args, &e)) {
            out = qmp_reply(q, NULL, &e, id);
        } else {
            q->negotiated = true;
            out = qmp_reply(q, "{}", NULL, id);
        }
        goto done;
    }
    if (!q->negotiated) {
        out = qmp_error(q, id, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
        goto done;
    }
    struct monitor_error e = { "GenericError", "" };
    char *ret = NULL;
    if (monitor_run_cmd(ctx, exec->s, args, &ret, &e))
        out = qmp_reply(q, NULL, &e, id);
    else
        out = qmp_reply(q, ret, NULL, id);
    free(ret);
done:
    json_value_free(req);
    return out;
}

char *qmp_event_line(const char *name, const char *data_json, bool pretty)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char *s = NULL;
    if (!pretty) {
        if (asprintf(&s, "{\"timestamp\": {\"seconds\": %lld, \"microseconds\": %lld}, \"event\": \"%s\"%s%s}\r\n",
                     (long long)tv.tv_sec, (long long)tv.tv_usec, name, data_json ? ", \"data\": " : "",
                     data_json ? data_json : "") < 0)
            return NULL;
        return s;
    }
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    if (!f)
        return NULL;
    struct json_writer w;
    json_init(&w, f, true);
    json_object_begin(&w, NULL);
    json_object_begin(&w, "timestamp");
    json_int(&w, "seconds", tv.tv_sec);
    json_int(&w, "microseconds", tv.tv_usec);
    json_object_end(&w);
    json_string(&w, "event", name);
    struct json_value *v = NULL;
    const char *err;
    if (data_json && json_parse(data_json, strlen(data_json), &v, &err) == 0) {
        json_write_value(&w, "data", v);
        json_value_free(v);
    }
    json_object_end(&w);
    fputs("\r\n", f);
    fclose(f);
    return s;
}
