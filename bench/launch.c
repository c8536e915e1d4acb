/* Runs a command and reports its wall time and peak RSS, measured the only way that excludes the
 * measurer: the kernel's maxrss includes what the process had before exec (the forked launcher),
 * so the launcher must be tiny. Built static for that reason.
 * The clock stops when every process the command started has exited, not just the command: the
 * launcher is a subreaper, so orphaned descendants (a teardown left to a background child, a
 * daemonized helper) are reparented to it and waited for. Their CPU time counts too.
 *   launch CMD ARGS...   -> on stderr, last line:
 *   "launch: wall_us=N maxrss_kb=N status=N user_us=N sys_us=N main_us=N procs=N"
 * wall_us: until the last descendant exited; main_us: until CMD itself exited; maxrss_kb: the
 * largest peak of any of them; status: CMD's. */
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long since_us(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000ll + (t.tv_nsec - t0->tv_nsec) / 1000;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: launch CMD [ARGS...]\n");
        return 2;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        perror("launch: PR_SET_CHILD_SUBREAPER");
        return 2;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    if (pid < 0)
        return 2;
    long long main_us = -1, user = 0, sys = 0;
    long maxrss = 0;
    int code = -1, procs = 0;
    for (;;) {
        int status;
        struct rusage ru;
        pid_t p = wait4(-1, &status, 0, &ru);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            break;   /* ECHILD: nothing of the command's is left */
        }
        procs++;
        if (ru.ru_maxrss > maxrss)
            maxrss = ru.ru_maxrss;
        user += ru.ru_utime.tv_sec * 1000000ll + ru.ru_utime.tv_usec;
        sys += ru.ru_stime.tv_sec * 1000000ll + ru.ru_stime.tv_usec;
        if (p == pid) {
            main_us = since_us(&t0);
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    }
    long long us = since_us(&t0);
    fprintf(stderr, "launch: wall_us=%lld maxrss_kb=%ld status=%d user_us=%lld sys_us=%lld "
            "main_us=%lld procs=%d\n", us, maxrss, code, user, sys, main_us, procs);
    return 0;
}
