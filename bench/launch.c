/* Runs a command and reports its wall time and peak RSS, measured the only way that excludes the
 * measurer: the kernel's maxrss includes what the process had before exec (the forked launcher),
 * so the launcher must be tiny. Built static for that reason.
 *   launch CMD ARGS...   -> on stderr, last line:
 *   "launch: wall_us=N maxrss_kb=N status=N user_us=N sys_us=N" */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: launch CMD [ARGS...]\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0)
        return 2;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long us = (t1.tv_sec - t0.tv_sec) * 1000000ll + (t1.tv_nsec - t0.tv_nsec) / 1000;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    fprintf(stderr, "launch: wall_us=%lld maxrss_kb=%ld status=%d user_us=%lld sys_us=%lld\n", us,
            ru.ru_maxrss, code, ru.ru_utime.tv_sec * 1000000ll + ru.ru_utime.tv_usec,
            ru.ru_stime.tv_sec * 1000000ll + ru.ru_stime.tv_usec);
    return 0;
}
