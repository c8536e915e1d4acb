/* The monitor: one table of commands with typed arguments (commands.c), two front ends on it
 * (QMP in qmp.c, HMP in hmp.c), and the sockets and terminals they listen on (server.c). It
 * drives the machine only through vm/control.h, on the machine's event-loop thread.
 *
 * A monitor set outlives the machines it serves: a reset builds a new machine, and the same
 * sockets and client connections are attached to it. */
#ifndef QKVM_VM_MONITOR_H
#define QKVM_VM_MONITOR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "util/json.h"

struct machine;
struct monitor_set;

/* What the monitors say about the program (the tool knows it, the library does not). */
struct monitor_info {
    int major, minor, micro;    /* the QEMU version whose QMP qkvm speaks */
    const char *package;        /* "qkvm-0.1.0" */
};

/* Where a monitor listens. spec: "stdio", "unix:PATH[,server=on][,wait=off]",
 * "tcp:HOST:PORT[,server=on][,wait=off]", or a -chardev description ("socket,id=ID,path=PATH,
 * server=on,wait=off", "socket,id=ID,host=H,port=P,server=on,wait=off", "stdio,id=ID"). */
struct monitor_addr {
    enum { MONITOR_STDIO, MONITOR_UNIX, MONITOR_TCP } kind;
    char path[108];             /* unix */
    char host[256], port[32];   /* tcp */
    char label[64];             /* the chardev id ("compat_monitor0" when there is none) */
    bool mux;                   /* stdio shared with the serial console: Ctrl-A c switches */
};
/* 0 or -EINVAL with why filled (one line). */
int monitor_parse_addr(const char *spec, bool chardev, struct monitor_addr *a, char *why, size_t n);

int monitor_set_create(const struct monitor_info *info, struct monitor_set **out);
/* Opens the listening socket now (before privileges are dropped). control: QMP, else HMP.
 * 0 or -errno with why filled. */
int monitor_set_add(struct monitor_set *s, const struct monitor_addr *a, bool control, bool pretty,
                    char *why, size_t n);
/* Serves machine m from its event loop; the machine's events go to the QMP clients. */
int monitor_set_attach(struct monitor_set *s, struct machine *m);
/* Before the machine is destroyed: pending output is flushed (briefly), the fds leave its loop. */
void monitor_set_detach(struct monitor_set *s);
void monitor_set_free(struct monitor_set *s);

/* ---- the command table (commands.c) ---- */
enum monitor_arg_type { MONITOR_ARG_STR, MONITOR_ARG_INT, MONITOR_ARG_BOOL, MONITOR_ARG_NUMBER, MONITOR_ARG_ARRAY };

struct monitor_arg {
    const char *name;
    enum monitor_arg_type type;
    bool optional;
};

#define MONITOR_MAX_ARGS 6

/* QMP's error classes, by the names QEMU's clients test for. */
struct monitor_error {
    const char *cls;            /* "GenericError", "CommandNotFound", "DeviceNotActive", ... */
    char desc[256];
};

struct monitor_ctx {
    struct machine *m;          /* NULL between machines (never, while a command runs) */
    struct monitor_set *set;
    const struct monitor_info *info;
    int *cpu;                   /* the session's current CPU (HMP `cpu N`); NULL: CPU 0 */
};

struct monitor_cmd {
    const char *name;
    struct monitor_arg args[MONITOR_MAX_ARGS];
    const char *ret;            /* the schema's return type, for query-qmp-schema */
    /* Writes the "return" value (one JSON value, key NULL) to w, or fills e and returns -errno. */
    int (*fn)(struct monitor_ctx *ctx, const struct json_value *args, struct json_writer *w,
              struct monitor_error *e);
};

const struct monitor_cmd *monitor_cmd_find(const char *name);
/* Fills e (class cls, the formatted text) and returns ret: a handler's error return. */
int monitor_fail(struct monitor_error *e, const char *cls, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The migration commands (migrate.c), entries of the table. */
#define MONITOR_HANDLER(fn) int fn(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w, \
                                   struct monitor_error *e)
MONITOR_HANDLER(cmd_migrate);
MONITOR_HANDLER(cmd_migrate_cancel);
MONITOR_HANDLER(cmd_migrate_incoming);
MONITOR_HANDLER(cmd_query_migrate);
MONITOR_HANDLER(cmd_migrate_set_capabilities);
MONITOR_HANDLER(cmd_query_migrate_capabilities);
MONITOR_HANDLER(cmd_migrate_set_parameters);
MONITOR_HANDLER(cmd_query_migrate_parameters);
/* The snapshot commands (snapshot.c): QMP snapshot-save/-load/-delete as jobs, query-jobs,
 * job-dismiss; HMP savevm, loadvm, delvm, info snapshots. */
MONITOR_HANDLER(cmd_snapshot_save);
MONITOR_HANDLER(cmd_snapshot_load);
MONITOR_HANDLER(cmd_snapshot_delete);
MONITOR_HANDLER(cmd_query_jobs);
MONITOR_HANDLER(cmd_job_dismiss);
/* HMP's savevm/loadvm/delvm NAME (cmd: the word) and info snapshots; false: not one of them. */
bool hmp_snapshot(struct monitor_ctx *ctx, const char *cmd, const char *arg, FILE *out);
/* Each disk's device (and node) name as query-block gives it, names[0..max-1]. */
void monitor_disk_names(struct machine *m, char (*names)[64], int max);
/* The table, NULL-name terminated. */
extern const struct monitor_cmd monitor_cmds[];
/* Checks args against the command's argument list (args may be NULL: no arguments). 0, or
 * -EINVAL with e filled as QEMU words it. */
int monitor_check_args(const struct monitor_cmd *c, const struct json_value *args, struct monitor_error *e);
/* Finds, checks and runs a command: 0 with *ret (the return value's JSON text, malloc'd), or
 * -errno with e filled. */
int monitor_run_cmd(struct monitor_ctx *ctx, const char *name, const struct json_value *args, char **ret,
                    struct monitor_error *e);
/* The event names QMP may send (query-events). NULL-terminated. */
extern const char *const monitor_events[];

/* ---- removable media (cdrom.c): the CD drives' commands and query-block entries ---- */
int monitor_cmd_eject(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                      struct monitor_error *e);
int monitor_cmd_change_medium(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                              struct monitor_error *e);
void monitor_write_cd_blocks(struct machine *m, struct json_writer *w);

/* ---- HMP (hmp.c): runs one command line, human-readable output to out ---- */
void hmp_run_line(struct monitor_ctx *ctx, const char *line, FILE *out);
/* info_tree.c: `info mtree` (address spaces) and `info qtree` (devices) */
void hmp_info_mtree(struct monitor_ctx *ctx, FILE *out);
void hmp_info_qtree(struct monitor_ctx *ctx, FILE *out);

/* ---- QMP (qmp.c): one client's protocol state ---- */
struct qmp_session {
    bool negotiated;
    bool pretty;
};
/* The greeting line (malloc'd, ends in "\r\n"). */
char *qmp_greeting(const struct monitor_info *info);
/* Handles one JSON text from a client; the reply (malloc'd, "\r\n"-terminated) or NULL when
 * nothing is to be sent. */
char *qmp_handle_text(struct monitor_ctx *ctx, struct qmp_session *q, const char *text, size_t len);
/* An event line with its timestamp (malloc'd); data_json may be NULL. */
char *qmp_event_line(const char *name, const char *data_json, bool pretty);

/* ---- what server.c knows, for query-chardev ---- */
/* Calls fn for each monitor's chardev: its label and a QEMU-style filename. */
void monitor_set_for_each_chardev(struct monitor_set *s, void (*fn)(void *opaque, const char *label,
                                  const char *filename, bool open), void *opaque);

#endif
