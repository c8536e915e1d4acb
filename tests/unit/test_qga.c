/* The guest agent's library without a guest: the dispatcher (QMP checks, qemu-ga's error classes
 * and texts, -b/-a lists), the stream side over a socketpair (split requests, garbage, the 0xFF
 * resync, the size bound), files, processes, and base64. qga.sh compares with the real qemu-ga. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qga/internal.h"
#include "qga/qga.h"
#include "util/base64.h"
#include "util/json.h"

/* ---- direct requests ---- */

static struct json_value *ask(struct qga_state *s, const char *req)
{
    char *reply;
    size_t len;
    assert_int_equal(qga_handle_request(s, req, strlen(req), &reply, &len), 0);
    assert_non_null(reply);
    assert_true(len > 1 && reply[len - 1] == '\n');
    struct json_value *v = NULL;
    const char *err;
    size_t skip = (unsigned char)reply[0] == 0xff;
    assert_int_equal(json_parse(reply + skip, len - skip, &v, &err), 0);
    free(reply);
    return v;
}

static void expect_error(struct qga_state *s, const char *req, const char *cls, const char *desc)
{
    struct json_value *v = ask(s, req);
    const struct json_value *e = json_get(v, "error");
    assert_non_null(e);
    assert_string_equal(json_get(e, "class")->s, cls);
    if (desc)
        assert_string_equal(json_get(e, "desc")->s, desc);
    json_value_free(v);
}

static void test_sync_and_id(void **st)
{
    (void)st;
    struct qga_state *s = qga_state_new();
    struct json_value *v = ask(s, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":-9007199254740993},\"id\":[1,\"x\"]}");
    assert_int_equal(json_get(v, "return")->i, -9007199254740993LL);
    assert_int_equal(json_get(v, "id")->n, 2);
    json_value_free(v);
    char *reply;
    size_t len;
    const char *req = "{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":7}}";
    assert_int_equal(qga_handle_request(s, req, strlen(req), &reply, &len), 0);
    assert_int_equal((unsigned char)reply[0], 0xff);
    free(reply);
    /* the sentinel belongs to that reply only */
    req = "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":8}}";
    assert_int_equal(qga_handle_request(s, req, strlen(req), &reply, &len), 0);
    assert_int_equal(reply[0], '{');
    free(reply);
    qga_state_free(s);
}

static void test_protocol_errors(void **st)
{
    (void)st;
    struct qga_state *s = qga_state_new();
    expect_error(s, "{\"execute\":\"guest-nope\"}", "CommandNotFound",
                 "The command guest-nope has not been found");
    expect_error(s, "[1]", "GenericError", "QMP input must be a JSON object");
    expect_error(s, "{\"foo\":1}", "GenericError", "QMP input member 'foo' is unexpected");
    expect_error(s, "{\"arguments\":{}}", "GenericError", "QMP input lacks member 'execute'");
    expect_error(s, "{\"execute\":1}", "GenericError", "QMP input member 'execute' must be a string");
    expect_error(s, "{\"execute\":\"guest-ping\",\"arguments\":1}", "GenericError",
                 "QMP input member 'arguments' must be an object");
    expect_error(s, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":\"a\"}}", "GenericError",
                 "Invalid parameter type for 'id', expected: integer");
    expect_error(s, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":1.0}}", "GenericError",
                 "Invalid parameter type for 'id', expected: integer");
    expect_error(s, "{\"execute\":\"guest-sync\"}", "GenericError", "Parameter 'id' is missing");
    expect_error(s, "{\"execute\":\"guest-ping\",\"arguments\":{\"z\":1}}", "GenericError",
                 "Parameter 'z' is unexpected");
    expect_error(s, "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"x\",\"arg\":[1]}}",
                 "GenericError", "Invalid parameter type for 'arg', expected: array");
    expect_error(s, "{\"execute\":\"guest-ping\"", "GenericError", NULL);
    expect_error(s, "{\"execute\":\"guest-shutdown\",\"arguments\":{\"mode\":\"x\"}}", "GenericError",
                 "mode is invalid (valid values are: halt|powerdown|reboot");
    /* the id comes back with an error too */
    struct json_value *v = ask(s, "{\"execute\":\"guest-nope\",\"id\":5}");
    assert_int_equal(json_get(v, "id")->i, 5);
    json_value_free(v);
    qga_state_free(s);
}

static void test_rpc_lists(void **st)
{
    (void)st;
    struct qga_state *s = qga_state_new();
    const char *bad = NULL;
    assert_int_equal(qga_state_set_rpcs(s, "guest-ping,guest-nope", false, &bad), -EINVAL);
    assert_string_equal(bad, "guest-nope");
    qga_state_free(s);

    s = qga_state_new();
    assert_int_equal(qga_state_set_rpcs(s, "guest-get-time,guest-exec", false, &bad), 0);
    expect_error(s, "{\"execute\":\"guest-get-time\"}", "CommandNotFound",
                 "Command guest-get-time has been disabled");
    struct json_value *v = ask(s, "{\"execute\":\"guest-ping\"}");
    assert_non_null(json_get(v, "return"));
    json_value_free(v);
    v = ask(s, "{\"execute\":\"guest-info\"}");
    const struct json_value *cmds = json_get(json_get(v, "return"), "supported_commands");
    int disabled = 0;
    for (size_t i = 0; i < cmds->n; i++) {
        const char *name = json_get(cmds->items[i], "name")->s;
        bool on = json_get(cmds->items[i], "enabled")->b;
        if (!strcmp(name, "guest-get-time") || !strcmp(name, "guest-exec"))
            assert_false(on);
        disabled += !on;
    }
    /* the two blocked and guest-get-devices, Windows-only, disabled as in qemu-ga on Linux */
    assert_int_equal(disabled, 3);
    json_value_free(v);
    qga_state_free(s);

    s = qga_state_new();
    assert_int_equal(qga_state_set_rpcs(s, "guest-sync", true, &bad), 0);
    expect_error(s, "{\"execute\":\"guest-ping\"}", "CommandNotFound",
                 "Command guest-ping has been disabled");
    v = ask(s, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":1}}");
    assert_int_equal(json_get(v, "return")->i, 1);
    json_value_free(v);
    qga_state_free(s);
}

static void test_frozen_holds_writers(void **st)
{
    (void)st;
    struct qga_state *s = qga_state_new();
    s->frozen = true;     /* as after a freeze that found nothing to hold open */
    expect_error(s, "{\"execute\":\"guest-file-open\",\"arguments\":{\"path\":\"/tmp/x\",\"mode\":\"w\"}}",
                 "CommandNotFound", "Command guest-file-open has been disabled: the agent is in frozen state");
    struct json_value *v = ask(s, "{\"execute\":\"guest-fsfreeze-status\"}");
    assert_string_equal(json_get(v, "return")->s, "frozen");
    json_value_free(v);
    v = ask(s, "{\"execute\":\"guest-fsfreeze-thaw\"}");
    assert_int_equal(json_get(v, "return")->i, 0);
    json_value_free(v);
    v = ask(s, "{\"execute\":\"guest-fsfreeze-status\"}");
    assert_string_equal(json_get(v, "return")->s, "thawed");
    json_value_free(v);
    qga_state_free(s);
}

/* A host that froze and never thawed: after the timeout the agent thaws by itself and tells the
 * -F hook, as a thaw from the host would; before it, or with no timeout (qemu-ga's way), not. */
static void test_freeze_timeout(void **st)
{
    (void)st;
    char dir[] = "/tmp/qga-unit.XXXXXX", hook[64], calls[64], script[160];
    assert_non_null(mkdtemp(dir));
    snprintf(hook, sizeof(hook), "%s/hook", dir);
    snprintf(calls, sizeof(calls), "%s/calls", dir);
    snprintf(script, sizeof(script), "#!/bin/sh\necho $1 >>%s\n", calls);
    FILE *f = fopen(hook, "w");
    assert_non_null(f);
    fputs(script, f);
    fclose(f);
    chmod(hook, 0755);
    struct qga_state *s = qga_state_new();
    assert_int_equal(qga_state_set_fsfreeze_hook(s, hook), 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    s->frozen = true;     /* frozen 5 s ago, with nothing held open */
    s->frozen_at_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - 5000;
    assert_int_equal(qga_fsfreeze_expire(s), 0);           /* no timeout: frozen for good */
    qga_state_set_fsfreeze_timeout(s, 60);
    assert_int_equal(qga_fsfreeze_expire(s), 0);           /* not yet */
    assert_true(s->frozen);
    assert_int_equal(access(calls, F_OK), -1);
    qga_state_set_fsfreeze_timeout(s, 2);
    assert_int_equal(qga_fsfreeze_expire(s), 1);
    assert_false(s->frozen);
    char buf[64] = "";
    f = fopen(calls, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "thaw\n");
    assert_int_equal(qga_fsfreeze_expire(s), 0);           /* thawed: nothing more to do */
    struct json_value *v = ask(s, "{\"execute\":\"guest-fsfreeze-status\"}");
    assert_string_equal(json_get(v, "return")->s, "thawed");
    json_value_free(v);
    qga_state_free(s);
    unlink(calls);
    unlink(hook);
    rmdir(dir);
}

static void test_file_table_bounded(void **st)
{
    (void)st;
    struct qga_state *s = qga_state_new();
    char req[256];
    int64_t first = 0;
    for (int i = 0; i < QGA_MAX_FILES; i++) {
        struct json_value *v = ask(s, "{\"execute\":\"guest-file-open\",\"arguments\":{\"path\":\"/dev/null\"}}");
        assert_non_null(json_get(v, "return"));
        if (!i)
            first = json_get(v, "return")->i;
        json_value_free(v);
    }
    expect_error(s, "{\"execute\":\"guest-file-open\",\"arguments\":{\"path\":\"/dev/null\"}}",
                 "GenericError", NULL);
    snprintf(req, sizeof(req), "{\"execute\":\"guest-file-close\",\"arguments\":{\"handle\":%lld}}",
             (long long)first);
    json_value_free(ask(s, req));
    expect_error(s, req, "GenericError", NULL);   /* closed twice */
    struct json_value *v = ask(s, "{\"execute\":\"guest-file-open\",\"arguments\":{\"path\":\"/dev/null\"}}");
    assert_true(json_get(v, "return")->i != first);  /* handles are never reused */
    json_value_free(v);
    expect_error(s, "{\"execute\":\"guest-file-open\",\"arguments\":{\"path\":\"/dev/null\",\"mode\":\"rw+x\"}}",
                 "GenericError", "invalid file open mode 'rw+x'");
    qga_state_free(s);
}

static void test_file_round_trip(void **st)
{
    (void)st;
    char path[] = "/tmp/test_qga.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct qga_state *s = qga_state_new();
    char req[512];
    snprintf(req, sizeof(req), "{\"execute\":\"guest-file-open\",\"arguments\":{\"path\":\"%s\",\"mode\":\"w+\"}}", path);
    struct json_value *v = ask(s, req);
    long long h = (long long)json_get(v, "return")->i;
    json_value_free(v);
    snprintf(req, sizeof(req), "{\"execute\":\"guest-file-write\",\"arguments\":{\"handle\":%lld,\"buf-b64\":\"aGVsbG8gd29ybGQ=\",\"count\":5}}", h);
    v = ask(s, req);
    assert_int_equal(json_get(json_get(v, "return"), "count")->i, 5);
    json_value_free(v);
    snprintf(req, sizeof(req), "{\"execute\":\"guest-file-write\",\"arguments\":{\"handle\":%lld,\"buf-b64\":\"aGVsbG8=\",\"count\":6}}", h);
    expect_error(s, req, "GenericError", NULL);   /* more than the buffer holds */
    snprintf(req, sizeof(req), "{\"execute\":\"guest-file-write\",\"arguments\":{\"handle\":%lld,\"buf-b64\":\"a*b\"}}", h);
    expect_error(s, req, "GenericError", "Base64 data contains invalid characters");
    snprintf(req, sizeof(req), "{\"execute\":\"guest-file-seek\",\"arguments\":{\"handle\":%lld,\"offset\":1,\"whence\":0}}", h);
    v = ask(s, req);
    assert_int_equal(json_get(json_get(v, "return"), "position")->i, 1);
    json_value_free(v);
    snprintf(req, sizeof(req), "{\"execute\":\"guest-file-read\",\"arguments\":{\"handle\":%lld,\"count\":100}}", h);
    v = ask(s, req);
    assert_string_equal(json_get(json_get(v, "return"), "buf-b64")->s, "ZWxsbw==");
    assert_true(json_get(json_get(v, "return"), "eof")->b);
    json_value_free(v);
    snprintf(req, sizeof(req), "{\"execute\":\"guest-file-read\",\"arguments\":{\"handle\":%lld,\"count\":1000000000000}}", h);
    expect_error(s, req, "GenericError", NULL);   /* past qemu-ga's 48 MB: refused, not allocated */
    qga_state_free(s);
    unlink(path);
}

static struct json_value *exec_wait(struct qga_state *s, const char *req)
{
    struct json_value *v = ask(s, req);
    assert_non_null(json_get(v, "return"));
    char st[128];
    snprintf(st, sizeof(st), "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":%lld}}",
             (long long)json_get(json_get(v, "return"), "pid")->i);
    json_value_free(v);
    for (int i = 0; i < 1000; i++) {
        v = ask(s, st);
        if (json_get(json_get(v, "return"), "exited")->b)
            return v;
        json_value_free(v);
        usleep(10000);
    }
    fail_msg("child did not exit");
    return NULL;
}

static void test_exec(void **st)
{
    (void)st;
    struct qga_state *s = qga_state_new();
    struct json_value *v = exec_wait(s, "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\","
        "\"arg\":[\"-c\",\"tr a-z A-Z; echo e >&2; exit 7\"],\"input-data\":\"aGk=\",\"capture-output\":true}}");
    const struct json_value *r = json_get(v, "return");
    assert_int_equal(json_get(r, "exitcode")->i, 7);
    assert_string_equal(json_get(r, "out-data")->s, "SEk=");        /* "HI" */
    assert_string_equal(json_get(r, "err-data")->s, "ZQo=");        /* "e\n" */
    assert_false(json_get(r, "out-truncated")->b);
    json_value_free(v);
    /* more than the cap: cut there and said so, the child still reaped */
    v = exec_wait(s, "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\","
        "\"arg\":[\"-c\",\"head -c 17000000 /dev/zero\"],\"capture-output\":true}}");
    r = json_get(v, "return");
    assert_true(json_get(r, "out-truncated")->b);
    void *out;
    size_t len;
    assert_int_equal(base64_decode(json_get(r, "out-data")->s, &out, &len), 0);
    assert_int_equal(len, QGA_EXEC_MAX_OUTPUT);
    free(out);
    json_value_free(v);
    expect_error(s, "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/no/such\"}}", "GenericError", NULL);
    /* a child that never ends (with a grandchild holding its output) must not hold up the
     * agent's end: without the kill in qga_state_free this test never returns */
    v = ask(s, "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\","
               "\"arg\":[\"-c\",\"sleep 100000 & sleep 100000\"],\"capture-output\":true}}");
    assert_non_null(json_get(v, "return"));
    json_value_free(v);
    expect_error(s, "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/true\",\"input-data\":\"%%%\"}}",
                 "GenericError", "Base64 data contains invalid characters");
    qga_state_free(s);
}

/* ---- the stream, over a socketpair ---- */

struct served {
    struct qga_state *s;
    int fd;
    int ret;
};

static void *serve_thread(void *opaque)
{
    struct served *sv = opaque;
    sv->ret = qga_serve_fd(sv->s, sv->fd, true);
    return NULL;
}

static char rbuf[1 << 16];
static size_t rlen;

/* The next reply line from fd (without its newline). */
static const char *next_reply(int fd)
{
    static char line[1 << 16];
    for (;;) {
        char *nl = memchr(rbuf, '\n', rlen);
        if (nl) {
            size_t n = (size_t)(nl - rbuf);
            memcpy(line, rbuf, n);
            line[n] = 0;
            memmove(rbuf, nl + 1, rlen - n - 1);
            rlen -= n + 1;
            return line;
        }
        ssize_t r = read(fd, rbuf + rlen, sizeof(rbuf) - rlen);
        assert_true(r > 0);
        rlen += (size_t)r;
    }
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

static void sends(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

static void test_stream(void **st)
{
    (void)st;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct served srv = { .s = qga_state_new(), .fd = sv[1] };
    pthread_t t;
    rlen = 0;
    assert_int_equal(pthread_create(&t, NULL, serve_thread, &srv), 0);

    /* a request in pieces, two on one line */
    sends(sv[0], "{\"execute\":\"guest-sy");
    sends(sv[0], "nc\",\"arguments\":{\"id\":1}}{\"execute\":\"guest-sync\",\"arguments\":{\"id\":2}}\n");
    assert_string_equal(next_reply(sv[0]), "{\"return\":1}");
    assert_string_equal(next_reply(sv[0]), "{\"return\":2}");
    /* garbage: one error per token, not per byte */
    sends(sv[0], "garbage more\n{\"execute\":\"guest-sync\",\"arguments\":{\"id\":3}}");
    assert_non_null(strstr(next_reply(sv[0]), "invalid token 'garbage'"));
    assert_non_null(strstr(next_reply(sv[0]), "invalid token 'more'"));
    assert_string_equal(next_reply(sv[0]), "{\"return\":3}");
    /* 0xFF drops the half request before it */
    sends(sv[0], "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":\xff{\"execute\":\"guest-sync\",\"arguments\":{\"id\":4}}");
    assert_non_null(strstr(next_reply(sv[0]), "GenericError"));
    assert_string_equal(next_reply(sv[0]), "{\"return\":4}");
    /* 0xFF inside a string of an unfinished request: resync too */
    sends(sv[0], "{\"execute\":\"x\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":5}}");
    next_reply(sv[0]);
    assert_string_equal(next_reply(sv[0]), "\xff{\"return\":5}");
    /* past the bound: one error, the rest of that line skipped, the next line served */
    size_t big = QGA_MAX_REQUEST + 100;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '[';
    huge[big] = '\n';
    send_all(sv[0], huge, big / 2);
    send_all(sv[0], huge + big / 2, big + 1 - big / 2);
    free(huge);
    sends(sv[0], "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":6}}");
    assert_non_null(strstr(next_reply(sv[0]), "request too long"));
    assert_string_equal(next_reply(sv[0]), "{\"return\":6}");
    /* a success with no response: guest-shutdown's, only checked through its bad-mode error */
    sends(sv[0], "{\"execute\":\"guest-shutdown\",\"arguments\":{\"mode\":1}}");
    assert_non_null(strstr(next_reply(sv[0]), "Invalid parameter type for 'mode'"));

    close(sv[0]);
    pthread_join(t, NULL);
    assert_int_equal(srv.ret, 0);
    close(sv[1]);
    qga_state_free(srv.s);
}

static void test_base64(void **st)
{
    (void)st;
    static const char *const vec[][2] = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
        { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
    };
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        char *e = base64_encode(vec[i][0], strlen(vec[i][0]));
        assert_string_equal(e, vec[i][1]);
        free(e);
        void *d;
        size_t n;
        assert_int_equal(base64_decode(vec[i][1], &d, &n), 0);
        assert_int_equal(n, strlen(vec[i][0]));
        assert_memory_equal(d, vec[i][0], n);
        free(d);
    }
    void *d;
    size_t n;
    assert_int_equal(base64_decode("Zm9v!", &d, &n), -EINVAL);
    assert_int_equal(base64_decode("Zg==Zg==", &d, &n), -EINVAL);
    assert_int_equal(base64_decode("Z", &d, &n), -EINVAL);
    assert_int_equal(base64_decode("Zg===", &d, &n), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_and_id),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_rpc_lists),
        cmocka_unit_test(test_frozen_holds_writers),
        cmocka_unit_test(test_freeze_timeout),
        cmocka_unit_test(test_file_table_bounded),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_exec),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
