/* The monitor's migration commands (QEMU 7.2's names, arguments and reply shapes):
 * migrate, migrate_cancel, migrate-incoming, query-migrate, migrate-set-capabilities,
 * query-migrate-capabilities, migrate-set-parameters, query-migrate-parameters. They call
 * vm/migration.h; the table entries are in commands.c. */
#include "vm/monitor/monitor.h"

#include "vm/machine.h"
#include "vm/migration.h"

#include <errno.h>
#include <string.h>

static void migrate_empty(struct json_writer *w)
{
    json_object_begin(w, NULL);
    json_object_end(w);
}

int cmd_migrate(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w, struct monitor_error *e)
{
    const struct json_value *blk = json_get(a, "blk"), *inc = json_get(a, "inc");
    if ((blk && blk->b) || (inc && inc->b))
        return monitor_fail(e, "GenericError", -ENOTSUP,
                            "block migration is not supported by qkvm: disks are shared (docs/migration.md)");
    char why[400];
    int ret = migration_start(ctx->m, json_get(a, "uri")->s, why, sizeof(why));
    if (ret)
        return monitor_fail(e, "GenericError", ret, "%.250s", why);
    migrate_empty(w);
    return 0;
}

int cmd_migrate_cancel(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                       struct monitor_error *e)
{
    (void)a, (void)e;
    migration_cancel(ctx->m);
    migrate_empty(w);
    return 0;
}

int cmd_migrate_incoming(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                         struct monitor_error *e)
{
    if (!migration_incoming_deferred(ctx->m))
        return monitor_fail(e, "GenericError", -EINVAL, "'-incoming' was not specified on the command line");
    const char *uri = json_get(a, "uri")->s;
    if (!strcmp(uri, "defer"))
        return monitor_fail(e, "GenericError", -EINVAL, "The incoming migration has already been deferred");
    char why[400];
    int ret = migration_incoming(ctx->m, uri, !ctx->m->cfg->start_paused || !ctx->m->prelaunch, why, sizeof(why));
    if (ret)
        return monitor_fail(e, "GenericError", ret, "%.250s", why);
    migrate_empty(w);
    return 0;
}

int cmd_query_migrate(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                      struct monitor_error *e)
{
    (void)a, (void)e;
    struct migration_info i;
    migration_query(ctx->m, &i);
    json_object_begin(w, NULL);
    /* As QEMU 7.2's fill_source/destination_migration_info: a destination says its status only;
     * a source in setup, failed or cancelled its status (and error-desc); the times and ram
     * come once pages move (tests/integration/migrate-qmp-shape.sh runs both). */
    if (i.status != MIG_NONE) {
        json_string(w, "status", migration_status_name(i.status));
        bool done = i.status == MIG_COMPLETED;
        bool moving = !i.incoming && i.status != MIG_SETUP && i.status != MIG_FAILED && i.status != MIG_CANCELLED;
        if (moving) {
            json_uint(w, "setup-time", i.setup_time);
            json_uint(w, "total-time", i.total_time);
            if (done)
                json_uint(w, "downtime", i.downtime);
            else if (i.status == MIG_ACTIVE)
                json_uint(w, "expected-downtime", i.expected_downtime);
        }
        if (moving) {
            json_object_begin(w, "ram");
            json_uint(w, "transferred", i.transferred);
            json_uint(w, "remaining", done ? 0 : i.remaining);
            json_uint(w, "total", i.total);
            json_uint(w, "duplicate", i.duplicate);
            json_uint(w, "skipped", 0);
            json_uint(w, "normal", i.normal);
            json_uint(w, "normal-bytes", i.normal_bytes);
            json_uint(w, "dirty-pages-rate", i.dirty_pages_rate);
            json_double(w, "mbps", i.mbps);
            json_uint(w, "dirty-sync-count", i.dirty_sync_count);
            json_uint(w, "postcopy-requests", 0);
            json_uint(w, "page-size", 4096);
            json_uint(w, "multifd-bytes", 0);
            json_uint(w, "pages-per-second", i.pages_per_second);
            json_uint(w, "precopy-bytes", i.precopy_bytes);
            json_uint(w, "downtime-bytes", i.downtime_bytes);
            json_uint(w, "postcopy-bytes", 0);
            json_uint(w, "dirty-sync-missed-zero-copy", 0);
            json_object_end(w);
        }
        if (i.status == MIG_FAILED && i.error[0])
            json_string(w, "error-desc", i.error);
    }
    json_object_end(w);
    return 0;
}

int cmd_migrate_set_capabilities(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                                 struct monitor_error *e)
{
    const struct json_value *caps = json_get(a, "capabilities");
    if (caps->type != JSON_ARRAY)
        return monitor_fail(e, "GenericError", -EINVAL, "Invalid parameter type for 'capabilities', expected: array");
    for (size_t k = 0; k < caps->n; k++) {   /* all checked before any is set */
        const struct json_value *c = caps->items[k], *name = json_get(c, "capability"), *st = json_get(c, "state");
        if (!name || name->type != JSON_STRING || !st || st->type != JSON_BOOL)
            return monitor_fail(e, "GenericError", -EINVAL, "capabilities: each needs 'capability' and 'state'");
        bool known = false;
        for (const char *const *n = migration_capabilities; *n; n++)
            known |= !strcmp(*n, name->s);
        if (!known)
            return monitor_fail(e, "GenericError", -ENOENT, "Capability '%.64s' is not supported by qkvm", name->s);
    }
    for (size_t k = 0; k < caps->n; k++) {
        int ret = migration_set_capability(ctx->m, json_get(caps->items[k], "capability")->s,
                                           json_get(caps->items[k], "state")->b);
        if (ret == -EBUSY)
            return monitor_fail(e, "GenericError", ret, "There's a migration process in progress");
        if (ret)
            return monitor_fail(e, "GenericError", ret, "cannot set the capability: %s", strerror(-ret));
    }
    migrate_empty(w);
    return 0;
}

int cmd_query_migrate_capabilities(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                                   struct monitor_error *e)
{
    (void)a, (void)e;
    json_array_begin(w, NULL);
    for (const char *const *n = migration_capabilities; *n; n++) {
        json_object_begin(w, NULL);
        json_string(w, "capability", *n);
        json_bool(w, "state", migration_get_capability(ctx->m, *n));
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

int cmd_migrate_set_parameters(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                               struct monitor_error *e)
{
    static const char *const names[] = { "downtime-limit", "max-bandwidth" };
    for (int pass = 0; pass < 2; pass++)   /* checked, then set */
        for (size_t k = 0; k < 2; k++) {
            const struct json_value *v = json_get(a, names[k]);
            if (!v)
                continue;
            if (pass == 0 && (v->i < 0 || (k == 0 && v->i > 2000000)))
                return monitor_fail(e, "GenericError", -ERANGE,
                                    k == 0 ? "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000000 milliseconds"
                                           : "Parameter 'max_bandwidth' expects an integer in the range of 0 to 18446744073709551615 bytes/second");
            if (pass == 1)
                migration_set_parameter(ctx->m, names[k], v->i);
        }
    migrate_empty(w);
    return 0;
}

int cmd_query_migrate_parameters(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                                 struct monitor_error *e)
{
    (void)a, (void)e;
    json_object_begin(w, NULL);
    json_int(w, "downtime-limit", migration_get_parameter(ctx->m, "downtime-limit"));
    json_int(w, "max-bandwidth", migration_get_parameter(ctx->m, "max-bandwidth"));
    json_object_end(w);
    return 0;
}
