/* The protocol's own commands and the clock: sync, ping, info, time, shutdown. */
#include <errno.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "qga/internal.h"

static const struct qga_arg qga_args_id[] = { { "id", QGA_ARG_INT, false, NULL }, { 0 } };

static int qga_cmd_sync(struct qga_state *s, const struct json_value *args,
                        struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)e;
    json_int(w, "return", qga_arg_int(args, "id", 0));
    return 0;
}

static int qga_cmd_sync_delimited(struct qga_state *s, const struct json_value *args,
                                  struct json_writer *w, struct qga_error *e)
{
    s->delimit_reply = true;
    return qga_cmd_sync(s, args, w, e);
}

static int qga_cmd_ping(struct qga_state *s, const struct json_value *args,
                        struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args; (void)e;
    json_object_begin(w, "return");
    json_object_end(w);
    return 0;
}

struct qga_info_ctx {
    struct qga_state *s;
    struct json_writer *w;
};

static void qga_info_one(void *opaque, const struct qga_command *c)
{
    struct qga_info_ctx *ctx = opaque;
    json_object_begin(ctx->w, NULL);
    json_bool(ctx->w, "enabled", qga_command_enabled(ctx->s, c->name));
    json_string(ctx->w, "name", c->name);
    json_bool(ctx->w, "success-response", !c->no_success_response);
    json_object_end(ctx->w);
}

static int qga_cmd_info(struct qga_state *s, const struct json_value *args,
                        struct json_writer *w, struct qga_error *e)
{
    (void)args; (void)e;
    struct qga_info_ctx ctx = { s, w };
    json_object_begin(w, "return");
    json_string(w, "version", QGA_VERSION);
    json_array_begin(w, "supported_commands");
    qga_command_foreach(qga_info_one, &ctx);
    json_array_end(w);
    json_object_end(w);
    return 0;
}

static int qga_cmd_get_time(struct qga_state *s, const struct json_value *args,
                            struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts))
        return qga_error_set(e, -errno, "Failed to get time: %s", strerror(errno));
    json_int(w, "return", (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
    return 0;
}

static int qga_cmd_set_time(struct qga_state *s, const struct json_value *args,
                            struct json_writer *w, struct qga_error *e)
{
    (void)s;
    if (json_get(args, "time")) {
        int64_t ns = qga_arg_int(args, "time", 0);
        if (ns < 0 || ns / 1000000000 > (int64_t)0x7fffffff * 2)
            return qga_error_set(e, -EINVAL, "Time %lld is invalid", (long long)ns);
        struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
        if (clock_settime(CLOCK_REALTIME, &ts))
            return qga_error_set(e, -errno, "Failed to set time to guest: %s", strerror(errno));
    }
    /* as qemu-ga: the hardware clock follows the system clock, or (no time given) the reverse */
    char *hw[] = { "/sbin/hwclock", json_get(args, "time") ? "-w" : "-s", NULL };
    if (access(hw[0], X_OK) == 0 && qga_spawn_wait(hw, NULL) < 0)
        return qga_error_set(e, -EIO, "hwclock failed to set hardware clock to system time");
    if (access(hw[0], X_OK) && !json_get(args, "time"))
        return qga_error_set(e, -ENOTSUP, "this feature or command is not currently supported");
    json_object_begin(w, "return");
    json_object_end(w);
    return 0;
}

static int qga_cmd_shutdown(struct qga_state *s, const struct json_value *args,
                            struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)w;
    const char *mode = qga_arg_str(args, "mode", "powerdown");
    const char *flag;
    int how;
    if (!strcmp(mode, "powerdown")) {
        flag = "-P";
        how = RB_POWER_OFF;
    } else if (!strcmp(mode, "halt")) {
        flag = "-H";
        how = RB_HALT_SYSTEM;
    } else if (!strcmp(mode, "reboot")) {
        flag = "-r";
        how = RB_AUTOBOOT;
    } else {
        return qga_error_set(e, -EINVAL,
                             "mode is invalid (valid values are: halt|powerdown|reboot");
    }
    char *argv[] = { "/sbin/shutdown", (char *)flag, "+0", "hypervisor initiated shutdown", NULL };
    if (access(argv[0], X_OK) == 0 && qga_spawn_wait(argv, NULL) == 0)
        return 0;
    /* a minimal guest (busybox initramfs, we are init's child) has no shutdown(8): do it here */
    sync();
    if (reboot(how) < 0)
        return qga_error_set(e, -errno, "guest-shutdown failed: %s", strerror(errno));
    return 0;
}

static const struct qga_arg qga_args_set_time[] = { { "time", QGA_ARG_INT, true, NULL }, { 0 } };
static const struct qga_arg qga_args_shutdown[] = { { "mode", QGA_ARG_STR, true, NULL }, { 0 } };

static const struct qga_command qga_basic_commands[] = {
    { "guest-sync", qga_cmd_sync, qga_args_id, false },
    { "guest-sync-delimited", qga_cmd_sync_delimited, qga_args_id, false },
    { "guest-ping", qga_cmd_ping, NULL, false },
    { "guest-info", qga_cmd_info, NULL, false },
    { "guest-get-time", qga_cmd_get_time, NULL, false },
    { "guest-set-time", qga_cmd_set_time, qga_args_set_time, false },
    { "guest-shutdown", qga_cmd_shutdown, qga_args_shutdown, true },
    { 0 },
};
QGA_COMMANDS(qga_basic_commands)
