/* The sandbox's filters, tried for real in child processes (a seccomp filter cannot be taken
 * back): what each kind of thread may do works, what it may not kills the process by SIGSYS with
 * the one line, and the option forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/sandbox.h"

struct job {
    enum sandbox_thread kind;
    int (*body)(void);      /* runs in the sandboxed thread: 0 when all went as expected */
    bool spawn;
};

static void *job_thread(void *arg)
{
    struct job *j = arg;
    if (sandbox_enter_thread(j->kind))
        return (void *)1;
    return (void *)(intptr_t)j->body();
}

/* Runs j in a thread of a child process with the sandbox on; its status and stderr come back. */
static int run_sandboxed(struct job *j, char *err, size_t len)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], STDERR_FILENO);
        close(p[0]);
        struct sandbox_config c;
        sandbox_config_init(&c);
        c.on = true;
        c.spawn = j->spawn;
        if (sandbox_configure(&c))
            _exit(2);
        pthread_t t;
        void *r;
        if (pthread_create(&t, NULL, job_thread, j) || pthread_join(t, &r))
            _exit(3);
        _exit(r ? 1 : 0);
    }
    close(p[1]);
    ssize_t n = 0, k;
    while ((size_t)n < len - 1 && (k = read(p[0], err + n, len - 1 - (size_t)n)) > 0)
        n += k;
    err[n > 0 ? n : 0] = 0;
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static int fd_for_io = -1;

/* The block I/O group and the event wait: the calls an I/O worker makes. */
static int io_allowed(void)
{
    char buf[4096] = { 1, 2, 3 }, back[4096];
    if (pwrite(fd_for_io, buf, sizeof(buf), 8192) != sizeof(buf) || fdatasync(fd_for_io) ||
        fsync(fd_for_io) || pread(fd_for_io, back, sizeof(back), 8192) != sizeof(back) ||
        memcmp(buf, back, sizeof(buf)) || fallocate(fd_for_io, 0, 0, 65536))
        return 1;
    return 0;
}

static int io_epoll_wait(void)
{
    struct epoll_event ev;
    /* fd_for_io is an epoll descriptor here, made before the sandbox */
    return epoll_wait(fd_for_io, &ev, 1, 0) == 0 ? 0 : 1;
}

static int forbidden_socket(void)
{
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    return fd >= 0 ? 0 : 0;   /* never reached with the sandbox on */
}

static int fork_refused(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    return pid < 0 && errno == EPERM ? 0 : 1;
}

static int exec_refused(void)
{
    execl("/bin/true", "true", (char *)NULL);
    return errno == EPERM ? 0 : 1;
}

static int fork_allowed(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int st;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : 1;
}

static void test_io_thread_does_block_io(void **state)
{
    (void)state;
    char path[] = "/tmp/qkvm-sandbox-XXXXXX", err[512];
    fd_for_io = mkstemp(path);
    assert_true(fd_for_io >= 0);
    unlink(path);
    struct job j = { SANDBOX_THREAD_IO, io_allowed, true };
    int st = run_sandboxed(&j, err, sizeof(err));
    assert_string_equal(err, "");
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    char back[3];
    assert_int_equal(pread(fd_for_io, back, 3, 8192), 3);   /* the child's write is in the file */
    assert_memory_equal(back, "\1\2\3", 3);
    close(fd_for_io);
}

static void test_io_thread_waits(void **state)
{
    (void)state;
    char err[512];
    fd_for_io = epoll_create1(0);
    assert_true(fd_for_io >= 0);
    struct job j = { SANDBOX_THREAD_IO, io_epoll_wait, true };
    int st = run_sandboxed(&j, err, sizeof(err));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_string_equal(err, "");
    close(fd_for_io);
}

static void test_vcpu_may_not_wait(void **state)
{
    (void)state;
    char err[512];
    fd_for_io = epoll_create1(0);
    struct job j = { SANDBOX_THREAD_VCPU, io_epoll_wait, true };
    int st = run_sandboxed(&j, err, sizeof(err));
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSYS);
    assert_string_equal(err, "qkvm: sandbox: thread vcpu made forbidden syscall epoll_wait (232)\n");
    close(fd_for_io);
}

static void test_every_kind_forbids_socket(void **state)
{
    (void)state;
    for (int k = 0; k < SANDBOX_THREAD_COUNT; k++) {
        char err[512], want[128];
        struct job j = { (enum sandbox_thread)k, forbidden_socket, true };
        int st = run_sandboxed(&j, err, sizeof(err));
        assert_true(WIFSIGNALED(st));
        assert_int_equal(WTERMSIG(st), SIGSYS);
        snprintf(want, sizeof(want), "qkvm: sandbox: thread %s made forbidden syscall socket (41)\n",
                 sandbox_thread_name((enum sandbox_thread)k));
        assert_string_equal(err, want);
    }
}

static void test_spawn(void **state)
{
    (void)state;
    char err[512];
    struct job allow = { SANDBOX_THREAD_MAIN, fork_allowed, true };
    int st = run_sandboxed(&allow, err, sizeof(err));
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct job deny = { SANDBOX_THREAD_MAIN, fork_refused, false };
    st = run_sandboxed(&deny, err, sizeof(err));
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct job vcpu = { SANDBOX_THREAD_VCPU, fork_refused, true };   /* only main may fork */
    st = run_sandboxed(&vcpu, err, sizeof(err));
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct job exec = { SANDBOX_THREAD_MAIN, exec_refused, true };
    st = run_sandboxed(&exec, err, sizeof(err));
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_string_equal(err, "");
}

static void test_off_is_a_no_op(void **state)
{
    (void)state;
    struct sandbox_config c;
    sandbox_config_init(&c);
    assert_int_equal(sandbox_configure(&c), 0);
    assert_int_equal(sandbox_enter_thread(SANDBOX_THREAD_VCPU), 0);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);   /* would trap in any sandboxed thread */
    assert_true(fd >= 0);
    close(fd);
}

static void test_options(void **state)
{
    (void)state;
    struct sandbox_config c;
    char why[256];
    sandbox_config_init(&c);
    assert_int_equal(sandbox_parse_option(&c, "on", why, sizeof(why)), 0);
    assert_true(c.on && c.spawn && c.resourcecontrol && !c.obsolete);
    assert_int_equal(sandbox_parse_option(&c, "on,obsolete=allow,spawn=deny,resourcecontrol=deny,elevateprivileges=children", why, sizeof(why)), 0);
    assert_true(c.on && !c.spawn && !c.resourcecontrol && c.obsolete);
    assert_int_equal(sandbox_parse_option(&c, "off", why, sizeof(why)), 0);
    assert_false(c.on);
    assert_int_equal(sandbox_parse_option(&c, "bogus", why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "the sandbox is on or off, not 'bogus'");
    assert_int_equal(sandbox_parse_option(&c, "on,spawn=maybe", why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "spawn takes allow or deny, not 'maybe'");
    assert_int_equal(sandbox_parse_option(&c, "on,x=1", why, sizeof(why)), -EINVAL);
    assert_int_equal(sandbox_parse_option(&c, "obsolete=allow", why, sizeof(why)), -EINVAL);
    assert_int_equal(sandbox_set_runas(&c, "qkvm-no-such-user", why, sizeof(why)), -ENOENT);
    assert_int_equal(sandbox_set_runas(&c, "", why, sizeof(why)), -ENOENT);
    assert_int_equal(sandbox_set_runas(&c, "root", why, sizeof(why)), 0);
    assert_int_equal((int)c.uid, 0);
    assert_int_equal(sandbox_set_chroot(&c, "/nonexistent-qkvm", why, sizeof(why)), -ENOENT);
    assert_int_equal(sandbox_set_chroot(&c, "/etc/passwd", why, sizeof(why)), -ENOTDIR);
    assert_int_equal(sandbox_parse_run_with(&c, "user=qkvm-no-such-user", why, sizeof(why)), -ENOENT);
    assert_string_equal(why, "user=qkvm-no-such-user: no such user");
    assert_int_equal(sandbox_parse_run_with(&c, "async-teardown=on", why, sizeof(why)), -EINVAL);
    /* a second -runas replaces the first (the leak checker sees the first copy go) */
    assert_int_equal(sandbox_parse_run_with(&c, "user=root", why, sizeof(why)), 0);
    assert_string_equal(c.runas, "root");
    sandbox_config_free(&c);
    assert_null(c.runas);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_io_thread_does_block_io),
        cmocka_unit_test(test_io_thread_waits),
        cmocka_unit_test(test_vcpu_may_not_wait),
        cmocka_unit_test(test_every_kind_forbids_socket),
        cmocka_unit_test(test_spawn),
        cmocka_unit_test(test_off_is_a_no_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
