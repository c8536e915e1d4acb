/* The guest agent's command set: QEMU's qga protocol (qga/qapi-schema.json) over a byte stream.
 * One table of commands (name, typed arguments, handler), filled by the cmd_*.c files; qkvm-ga
 * is a thin program over qga_state_new + qga_serve_fd. */
#ifndef QKVM_QGA_QGA_H
#define QKVM_QGA_QGA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/json.h"

#define QGA_VERSION "7.2.0"
#define QGA_MAX_REQUEST (4u << 20)   /* a longer request is refused, never buffered */

struct qga_state;

enum qga_arg_type {
    QGA_ARG_INT, QGA_ARG_STR, QGA_ARG_BOOL, QGA_ARG_STR_LIST,
    QGA_ARG_OBJ_LIST,             /* an array of objects, each checked against fields */
    QGA_ARG_ANY,                  /* the handler checks it (an alternate, as seek's whence) */
};

struct qga_arg {
    const char *name;
    enum qga_arg_type type;
    bool optional;
    const struct qga_arg *fields; /* QGA_ARG_OBJ_LIST: the members of each item */
};

/* The error of a failed command, as QMP sends it: {"error": {"class": ..., "desc": ...}}. */
struct qga_error {
    const char *cls;
    char desc[512];
};

/* A handler writes its result as one value under the key "return" (json_int(w, "return", ...),
 * json_object_begin(w, "return"), ...) and returns 0, or fills e and returns -errno; whatever it
 * wrote before failing is discarded. */
typedef int (*qga_handler)(struct qga_state *s, const struct json_value *args,
                           struct json_writer *w, struct qga_error *e);

struct qga_command {
    const char *name;
    qga_handler handler;          /* NULL: always disabled (qemu-ga's Windows-only commands) */
    const struct qga_arg *args;   /* ends with a { 0 } entry; NULL: no arguments */
    bool no_success_response;     /* guest-shutdown: success sends nothing */
};

/* Registers a table of commands ending with a { 0 } entry (from a constructor, see QGA_COMMANDS). */
void qga_register_commands(const struct qga_command *table);
#define QGA_COMMANDS(table) \
    __attribute__((constructor)) static void table##_register(void) { qga_register_commands(table); }
const struct qga_command *qga_command_find(const char *name);
/* Calls fn for every registered command, in name order. */
void qga_command_foreach(void (*fn)(void *opaque, const struct qga_command *c), void *opaque);

struct qga_state *qga_state_new(void);
void qga_state_free(struct qga_state *s);
/* A comma-separated list of commands: with allow, only those are enabled; otherwise those are
 * disabled. -EINVAL (and *bad names the first unknown name) when a name is no command. */
int qga_state_set_rpcs(struct qga_state *s, const char *list, bool allow, const char **bad);
bool qga_command_enabled(const struct qga_state *s, const char *name);
/* qemu-ga's -F: an executable run as "HOOK freeze" before a freeze and "HOOK thaw" after a thaw
 * (NULL: none). Its stdout and stderr go to the agent's stderr, the log. 0 or -ENOMEM. */
int qga_state_set_fsfreeze_hook(struct qga_state *s, const char *path);
/* Thaw by itself after seconds frozen (0: never, qemu-ga's way): a host that froze the guest's
 * disks and then died must not leave every writer in the guest hanging for good. */
void qga_state_set_fsfreeze_timeout(struct qga_state *s, unsigned seconds);

/* Handles one request text; writes the reply (with its "\n", and the 0xFF of
 * guest-sync-delimited) to *reply and *reply_len (malloc'd; *reply NULL when nothing is to be sent).
 * 0 or -ENOMEM. */
int qga_handle_request(struct qga_state *s, const char *text, size_t len, char **reply,
                       size_t *reply_len);

/* Serves one connection: reads requests from fd and writes replies to it until EOF (returns 0;
 * with eof_ends false, as for a virtio-serial port whose host side is closed, it waits and reads
 * on), a stop request (0) or an I/O error (-errno). A 0xFF byte drops any partial request, as
 * qemu-ga does; a request longer than QGA_MAX_REQUEST is answered with an error and skipped to the
 * end of its line. */
int qga_serve_fd(struct qga_state *s, int fd, bool eof_ends);
/* The byte-stream side without a file descriptor (qga_serve_fd is built on it; the fuzz target
 * drives it directly): bytes in by qga_stream_feed, each reply out through write (0 or -errno;
 * the first error is returned from then on). qga_stream_end reports a stray token left at the
 * end of the stream. */
struct qga_stream;
struct qga_stream *qga_stream_new(struct qga_state *s,
                                  int (*write)(void *opaque, const char *buf, size_t len),
                                  void *opaque);
int qga_stream_feed(struct qga_stream *st, const char *data, size_t len);
int qga_stream_end(struct qga_stream *st);
void qga_stream_free(struct qga_stream *st);

enum qga_method { QGA_METHOD_VIRTIO_SERIAL, QGA_METHOD_ISA_SERIAL, QGA_METHOD_UNIX_LISTEN,
                  QGA_METHOD_VSOCK_LISTEN };
/* "virtio-serial", "isa-serial", "unix-listen", "vsock-listen" to the method; -EINVAL for others. */
int qga_method_parse(const char *name, enum qga_method *m);
const char *qga_method_name(enum qga_method m);
/* vsock-listen's path, "CID:PORT" (decimal, as qemu-ga): 0 or -EINVAL. */
int qga_vsock_parse(const char *path, unsigned *cid, unsigned *port);
/* Opens path the method's way (a unix-listen or vsock-listen socket is created, one client served
 * at a time) and serves until qga_request_stop. With retry, a missing port is waited for, as --retry-path.
 * 0 or -errno (when the path cannot be opened or listened on). */
int qga_serve_path(struct qga_state *s, enum qga_method m, const char *path, bool retry);

/* Asks a running qga_serve_fd to return (from a signal handler: only sets a flag). */
void qga_request_stop(struct qga_state *s);

/* helpers for the command files */
int qga_error_set(struct qga_error *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int qga_error_class(struct qga_error *e, const char *cls, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int64_t qga_arg_int(const struct json_value *args, const char *name, int64_t dflt);
const char *qga_arg_str(const struct json_value *args, const char *name, const char *dflt);
bool qga_arg_bool(const struct json_value *args, const char *name, bool dflt);

#endif
