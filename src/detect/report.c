/* --json: the answer, and every piece of evidence with where it came from. */
#include "detect/detect.h"
#include "util/json.h"

#include <errno.h>
#include <string.h>

static void report_id(struct json_writer *w, const char *key, enum detect_id id)
{
    json_string(w, key, detect_id_name(id));
}

static void report_reason(struct json_writer *w, const char *key, int reason)
{
    if (reason >= 0)
        json_string(w, key, detect_ev_name(reason));
    else
        json_null(w, key);
}

void detect_report_json(FILE *f, const struct detect_evidence *e, const struct detect_result *r)
{
    struct json_writer w;
    json_init(&w, f, true);
    json_object_begin(&w, NULL);
    report_id(&w, "identifier", r->id);
    report_id(&w, "vm", r->vm);
    report_reason(&w, "vm_evidence", r->vm_reason);
    report_id(&w, "container", r->container);
    report_reason(&w, "container_evidence", r->container_reason);
    if (r->accelerator)
        json_string(&w, "accelerator", r->accelerator);
    else
        json_null(&w, "accelerator");
    json_object_begin(&w, "kvm_pvm");
    json_bool(&w, "host", r->pvm_host);
    json_bool(&w, "guest", r->pvm_guest);
    json_object_end(&w);
    json_string(&w, "root", e->root[0] ? e->root : "/");
    json_object_begin(&w, "evidence");
    for (int i = 0; i < EV_COUNT; i++) {
        const struct detect_item *it = &e->ev[i];
        json_object_begin(&w, detect_ev_name(i));
        json_string(&w, "source", it->source);
        json_bool(&w, "found", it->err == 0);
        if (it->err == 0)
            json_string(&w, "value", it->value);
        else if (it->err != -ENOENT)
            json_string(&w, "error", strerror(-it->err));
        enum detect_id s = detect_ev_suggests(e, i);
        if (it->err == 0 && s != DETECT_NONE)
            json_string(&w, "suggests", detect_id_name(s));
        json_object_end(&w);
    }
    json_object_end(&w);
    json_object_end(&w);
}
