/* The agent's state shared by the command files; not part of qga.h's public face. */
#ifndef QKVM_QGA_INTERNAL_H
#define QKVM_QGA_INTERNAL_H
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include "qga/qga.h"

#define QGA_MAX_FILES 128            /* open guest-file handles, a bounded table as qemu-ga's */
#define QGA_MAX_EXECS 64             /* guest-exec children not yet reaped by guest-exec-status */
#define QGA_EXEC_MAX_OUTPUT (16u << 20)   /* qemu-ga's cap on captured stdout/stderr */
#define QGA_FILE_READ_MAX (48u << 20)     /* qemu-ga's cap on one guest-file-read */
#define QGA_MAX_FROZEN 64

struct qga_file {
    int64_t handle;                  /* 0: free slot */
    FILE *f;
};

struct qga_exec_out {
    char *buf;
    size_t len;
    bool truncated;
};

struct qga_exec {
    pid_t pid;                       /* 0: free slot */
    bool capture, exited;
    int status;
    struct qga_exec_out out, err;
    pthread_t thread;
};

struct qga_state {
    pthread_mutex_t lock;            /* guards execs: their threads write while commands read */
    char **rpcs;                     /* the -a or -b list */
    size_t nrpcs;
    bool rpcs_allow;
    struct qga_file files[QGA_MAX_FILES];
    int64_t next_handle;
    struct qga_exec execs[QGA_MAX_EXECS];
    int frozen_fds[QGA_MAX_FROZEN];
    int nfrozen;
    bool frozen;
    char *fsfreeze_hook;             /* -F: run with "freeze" before FIFREEZE, "thaw" after FITHAW */
    unsigned fsfreeze_timeout;       /* seconds frozen before the agent thaws by itself; 0: never */
    int64_t frozen_at_ms;            /* CLOCK_MONOTONIC of the freeze */
    bool delimit_reply;              /* set by guest-sync-delimited: prefix the reply with 0xFF */
    volatile sig_atomic_t stop;
};

/* Thaws every file system guest-fsfreeze-freeze froze; how many. */
int qga_fsfreeze_thaw_all(struct qga_state *s);
/* Runs the -F hook with arg ("freeze" or "thaw"), if there is one, and waits for it: 0, or -errno
 * with e filled as qemu-ga words it. */
int qga_fsfreeze_run_hook(struct qga_state *s, const char *arg, struct qga_error *e);
/* Frozen for longer than the timeout: thaws (the hook told), as if the host had asked. 1 when it
 * thawed, else 0. The serving loops call it between reads. */
int qga_fsfreeze_expire(struct qga_state *s);

/* Runs argv[0] (a full path) with input, if any, on its stdin and its output discarded, and
 * waits: 0 when it exited with status 0, -EIO when it failed, -errno when it could not run. */
int qga_spawn_wait(char *const argv[], const char *input);

#endif
