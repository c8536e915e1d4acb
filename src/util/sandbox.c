/* The sandbox (sandbox.h): a seccomp allow-list per kind of thread, built from named groups so that
 * a new need is one line in one group (docs/sandbox.md), and the privilege drop.
 *
 * Anything outside a thread's list traps (SCMP_ACT_TRAP) rather than killing outright, so that the
 * SIGSYS handler can say which thread made which call before it ends the process with SIGSYS, as
 * SCMP_ACT_KILL_PROCESS would. */
#include "util/sandbox.h"

#include "util/log.h"
#include "util/parse.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Every thread: memory, locks, signals (the vCPU kick, glibc's own), time, stdio, exit. */
static const char *const group_base[] = {
    "read", "write", "readv", "writev", "close", "lseek", "fstat", "newfstatat", "fcntl",
    "futex", "mmap", "munmap", "mprotect", "mremap", "madvise", "brk",
    "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "sigaltstack", "restart_syscall",
    "getpid", "gettid", "tgkill", "clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
    "sched_yield", "getrandom", "exit", "exit_group", NULL,
};

/* Changing what the event loop waits for and arming the PIT's timer: the vCPUs do it too. */
static const char *const group_events_ctl[] = {
    "epoll_ctl", "timerfd_settime", "timerfd_gettime", NULL,
};

/* Waiting: the event loop and I/O workers, never a vCPU. accept4: a console socket's server. */
static const char *const group_events_wait[] = {
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "accept4", NULL,
};

/* The monitors' clients (vm/monitor/server.c), served on the event loop: replies and events go
 * out with send (sendto), and a client may be read with recv. The listening sockets are made
 * before the sandbox starts. */
static const char *const group_monitor[] = {
    "sendto", "sendmsg", "recvfrom", "recvmsg", "shutdown", "getsockname", "getpeername", NULL,
};

/* Block I/O: whatever a disk's requests turn into, on whichever thread serves them (the vCPU
 * with a synchronous notify, the event loop, or a disk's own workers). Extend here. */
static const char *const group_block[] = {
    "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "fdatasync", "fsync",
    "fallocate", "ftruncate", "sync_file_range", "io_uring_enter", "io_uring_register",
    "io_submit", "io_getevents", "io_pgetevents", NULL,
};

/* New threads (a pool started late). clone only with CLONE_THREAD: see sandbox_add_clone. */
static const char *const group_threads[] = {
    "set_robust_list", "rseq", "sched_getaffinity", NULL,
};

/* The main thread after the run: the KVM teardown child's pipe, waiting for a script, -d time's
 * count of touched RAM pages. */
static const char *const group_teardown[] = {
    "pipe", "pipe2", "wait4", "mincore", NULL,
};

/* glibc's setuid() in a multi-threaded process makes every thread call it (the setxid
 * broadcast): a thread started before the drop must be let through, or the drop kills it. */
static const char *const group_setxid[] = {
    "setgroups", "setgid", "setuid", "setresgid", "setresuid", "setregid", "setreuid", NULL,
};

/* resourcecontrol=allow, as QEMU's default. */
static const char *const group_resource[] = {
    "getpriority", "setpriority", "sched_setaffinity", "sched_getscheduler", "sched_setscheduler",
    "sched_getparam", "sched_setparam", "sched_get_priority_max", "sched_get_priority_min", NULL,
};

/* obsolete=allow: QEMU's list of old calls; several do not exist on x86-64 and are skipped. */
static const char *const group_obsolete[] = {
    "readdir", "_sysctl", "bdflush", "create_module", "get_kernel_syms", "query_module",
    "sgetmask", "ssetmask", "sysfs", "uselib", "ustat", "vm86", "vm86old", NULL,
};

/* The ioctls a running machine makes; creating it (KVM_CREATE_*, KVM_SET_CPUID2, ...) is done by
 * then. Register access for error reports and SMP start-up, TUN offloads the guest negotiates,
 * the terminal restored at exit. */
static const unsigned long ioctls_run[] = {
    KVM_RUN, KVM_IRQ_LINE, KVM_IRQ_LINE_STATUS, KVM_SIGNAL_MSI, KVM_IOEVENTFD, KVM_IRQFD,
    KVM_SET_GSI_ROUTING, KVM_SET_USER_MEMORY_REGION, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS,
    KVM_SET_SREGS, KVM_GET_FPU, KVM_SET_FPU, KVM_GET_MSRS, KVM_SET_MSRS, KVM_GET_LAPIC,
    KVM_SET_LAPIC, KVM_GET_MP_STATE, KVM_SET_MP_STATE, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
    TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNGETIFF, TCGETS, TCSETS, TCSETSW, TCSETSF,
};

enum {
    G_BASE = 1u << 0, G_EVENTS_CTL = 1u << 1, G_EVENTS_WAIT = 1u << 2, G_BLOCK = 1u << 3,
    G_THREADS = 1u << 4, G_TEARDOWN = 1u << 5, G_MONITOR = 1u << 6,
};

static const struct {
    const char *name;
    unsigned groups;
} kinds[SANDBOX_THREAD_COUNT] = {
    [SANDBOX_THREAD_MAIN] = { "main", G_BASE | G_EVENTS_CTL | G_EVENTS_WAIT | G_BLOCK | G_THREADS | G_TEARDOWN | G_MONITOR },
    [SANDBOX_THREAD_VCPU] = { "vcpu", G_BASE | G_EVENTS_CTL | G_BLOCK },
    [SANDBOX_THREAD_IO] = { "io", G_BASE | G_EVENTS_CTL | G_EVENTS_WAIT | G_BLOCK | G_THREADS },
};

static struct sandbox_config config;
static bool privileges_dropped;
static int test_violate = -1;           /* QKVM_TEST_SANDBOX_VIOLATE: the kind that misbehaves */
/* Syscall names resolved beforehand: the SIGSYS handler may not allocate. */
#define SANDBOX_MAX_NR 512
static char *syscall_names[SANDBOX_MAX_NR];
static __thread const char *thread_kind = "unknown";

const char *sandbox_thread_name(enum sandbox_thread kind)
{
    return kind < SANDBOX_THREAD_COUNT ? kinds[kind].name : "unknown";
}

void sandbox_config_init(struct sandbox_config *c)
{
    *c = (struct sandbox_config){ .spawn = true, .resourcecontrol = true, .uid = (uid_t)-1, .gid = (gid_t)-1 };
}

static int allow_deny(const char *v, const char *key, bool *allow, char *why, size_t len)
{
    if (!strcmp(v, "allow"))
        *allow = true;
    else if (!strcmp(v, "deny"))
        *allow = false;
    else {
        snprintf(why, len, "%s takes allow or deny, not '%s'", key, v);
        return -EINVAL;
    }
    return 0;
}

int sandbox_parse_option(struct sandbox_config *c, const char *arg, char *why, size_t len)
{
    struct kvlist kv;
    if (keyval_parse(arg, "enable", &kv)) {
        snprintf(why, len, "not a sandbox description (on|off[,obsolete=...])");
        return -EINVAL;
    }
    int ret = -EINVAL;
    const char *s = keyval_get(&kv, "enable");
    bool b;
    if (!s || parse_bool(s, &b)) {
        snprintf(why, len, "the sandbox is on or off, not '%s'", s ? s : "");
        goto out;
    }
    c->on = b;
    if ((s = keyval_get(&kv, "obsolete")) && allow_deny(s, "obsolete", &c->obsolete, why, len))
        goto out;
    if ((s = keyval_get(&kv, "spawn")) && allow_deny(s, "spawn", &c->spawn, why, len))
        goto out;
    if ((s = keyval_get(&kv, "resourcecontrol")) && allow_deny(s, "resourcecontrol", &c->resourcecontrol, why, len))
        goto out;
    /* An allow-list never lets a thread change its credentials (only the privilege drop, before
     * the guest runs, does), and no_new_privs is always set: allow, deny and children all
     * describe what qkvm does anyway. */
    if ((s = keyval_get(&kv, "elevateprivileges")) && strcmp(s, "allow") && strcmp(s, "deny") &&
        strcmp(s, "children")) {
        snprintf(why, len, "elevateprivileges takes allow, deny or children, not '%s'", s);
        goto out;
    }
    if ((s = keyval_unused(&kv))) {
        snprintf(why, len, "unknown option '%s' (obsolete, elevateprivileges, spawn, resourcecontrol)", s);
        goto out;
    }
    ret = 0;
out:
    keyval_free(&kv);
    return ret;
}

void sandbox_config_free(struct sandbox_config *c)
{
    free(c->runas);
    free(c->chroot);
    c->runas = c->chroot = NULL;
}

int sandbox_set_runas(struct sandbox_config *c, const char *user, char *why, size_t len)
{
    errno = 0;
    struct passwd *pw = *user ? getpwnam(user) : NULL;
    if (!pw) {
        snprintf(why, len, "no such user%s%s", errno ? ": " : "", errno ? strerror(errno) : "");
        return -ENOENT;
    }
    /* a copy: -run-with's option list goes, the configuration stays for the process's life */
    free(c->runas);
    if (!(c->runas = strdup(user))) {
        snprintf(why, len, "out of memory");
        return -ENOMEM;
    }
    c->uid = pw->pw_uid;
    c->gid = pw->pw_gid;
    return 0;
}

int sandbox_set_chroot(struct sandbox_config *c, const char *dir, char *why, size_t len)
{
    struct stat st;
    if (stat(dir, &st) < 0) {
        int err = errno;
        snprintf(why, len, "%s", strerror(err));
        return -err;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, len, "not a directory");
        return -ENOTDIR;
    }
    if (geteuid() != 0) {
        snprintf(why, len, "only root can change the root directory");
        return -EPERM;
    }
    free(c->chroot);
    if (!(c->chroot = strdup(dir))) {
        snprintf(why, len, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

int sandbox_parse_run_with(struct sandbox_config *c, const char *arg, char *why, size_t len)
{
    struct kvlist kv;
    if (keyval_parse(arg, NULL, &kv)) {
        snprintf(why, len, "not a description (chroot=DIR,user=USER)");
        return -EINVAL;
    }
    int ret = 0;
    const char *s;
    char sub[200];
    if ((s = keyval_get(&kv, "chroot")) && (ret = sandbox_set_chroot(c, s, sub, sizeof(sub))))
        snprintf(why, len, "chroot=%s: %s", s, sub);
    else if ((s = keyval_get(&kv, "user")) && (ret = sandbox_set_runas(c, s, sub, sizeof(sub))))
        snprintf(why, len, "user=%s: %s", s, sub);
    else if ((s = keyval_unused(&kv))) {
        snprintf(why, len, "unknown option '%s' (chroot, user)", s);
        ret = -EINVAL;
    }
    keyval_free(&kv);
    return ret;
}

/* Appends n's decimal digits at p. Async-signal-safe. */
static char *put_num(char *p, long n)
{
    char tmp[24];
    int k = 0;
    unsigned long u = n < 0 ? (unsigned long)-n : (unsigned long)n;
    do
        tmp[k++] = (char)('0' + u % 10);
    while ((u /= 10) && k < 24);
    if (n < 0)
        *p++ = '-';
    while (k)
        *p++ = tmp[--k];
    return p;
}

static char *put_str(char *p, const char *end, const char *s)
{
    while (*s && p < end)
        *p++ = *s++;
    return p;
}

/* SIGSYS from SCMP_ACT_TRAP: one line on stderr, then death by SIGSYS. Only async-signal-safe
 * calls, and only ones every thread's list allows. */
static void sandbox_on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char line[200], *p = line, *end = line + sizeof(line) - 32;
    int nr = si->si_syscall;
    const char *name = nr >= 0 && nr < SANDBOX_MAX_NR && syscall_names[nr] ? syscall_names[nr] : "?";
    p = put_str(p, end, log_prog());
    p = put_str(p, end, ": sandbox: thread ");
    p = put_str(p, end, thread_kind);
    p = put_str(p, end, " made forbidden syscall ");
    p = put_str(p, end, name);
    p = put_str(p, end, " (");
    p = put_num(p, nr);
    p = put_str(p, line + sizeof(line), ")\n");
    ssize_t w = write(STDERR_FILENO, line, (size_t)(p - line));
    (void)w;
    /* death by SIGSYS, as SCMP_ACT_KILL_PROCESS gives, but no core file for a known cause */
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
    _exit(128 + sig);
}

int sandbox_configure(const struct sandbox_config *c)
{
    config = *c;
    /* glibc reads /etc/localtime at the first time conversion (the RTC's gmtime_r, on a vCPU):
     * read it now, while open() is allowed and the root is still the host's */
    if (sandbox_confines())
        tzset();
    if (!config.on)
        return 0;
    const char *v = getenv("QKVM_TEST_SANDBOX_VIOLATE");
    for (int k = 0; v && k < SANDBOX_THREAD_COUNT; k++)
        if (!strcmp(v, kinds[k].name))
            test_violate = k;
    for (int nr = 0; nr < SANDBOX_MAX_NR; nr++)
        if (!syscall_names[nr])
            syscall_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    struct sigaction sa = { .sa_sigaction = sandbox_on_sigsys, .sa_flags = SA_SIGINFO };
    sigfillset(&sa.sa_mask);
    return sigaction(SIGSYS, &sa, NULL) < 0 ? -errno : 0;
}

bool sandbox_confines(void)
{
    return config.on || config.runas || config.chroot;
}

int sandbox_drop_privileges(void)
{
    if (config.chroot) {
        if (chroot(config.chroot) < 0 || chdir("/") < 0) {
            int err = errno;
            log_error("-chroot %s: %s", config.chroot, strerror(err));
            return -err;
        }
    }
    if (config.runas) {
        gid_t g = config.gid;
        if (setgroups(1, &g) < 0 || setgid(config.gid) < 0 || setuid(config.uid) < 0) {
            int err = errno;
            log_error("-runas %s: cannot become uid %u: %s", config.runas, (unsigned)config.uid, strerror(err));
            return -err;
        }
        /* a drop that can be undone is no drop */
        if (config.uid != 0 && setuid(0) == 0) {
            log_error("-runas %s: root could be regained", config.runas);
            return -EPERM;
        }
    }
    privileges_dropped = true;
    return 0;
}

static int add_names(scmp_filter_ctx ctx, const char *const *names, uint32_t action)
{
    for (; *names; names++) {
        int nr = seccomp_syscall_resolve_name(*names);
        if (nr < 0)
            continue;   /* not a call on this architecture */
        int ret = seccomp_rule_add(ctx, action, nr, 0);
        if (ret)
            return ret;
    }
    return 0;
}

/* clone: threads where allowed; a process (fork) with spawn=allow in the main thread; anything
 * else refused with EPERM so that the caller's error path runs. clone3 passes its flags in memory
 * that seccomp cannot read: ENOSYS makes glibc fall back to clone. */
static int sandbox_add_clone(scmp_filter_ctx ctx, enum sandbox_thread kind, unsigned groups)
{
    int ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (!ret && (groups & G_THREADS))
        ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    bool fork_ok = kind == SANDBOX_THREAD_MAIN && config.spawn;
    if (!ret)
        ret = seccomp_rule_add(ctx, fork_ok ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
    if (!ret && !(groups & G_THREADS))
        ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    /* a child could not run a program under this filter anyway: refuse, and net's ifdown
     * script reports its failure instead of dying */
    if (!ret)
        ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(execve), 0);
    if (!ret)
        ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(execveat), 0);
    return ret;
}

static int sandbox_build(scmp_filter_ctx ctx, enum sandbox_thread kind)
{
    unsigned g = kinds[kind].groups;
    int ret = add_names(ctx, group_base, SCMP_ACT_ALLOW);
    if (!ret && (g & G_EVENTS_CTL))
        ret = add_names(ctx, group_events_ctl, SCMP_ACT_ALLOW);
    if (!ret && (g & G_EVENTS_WAIT))
        ret = add_names(ctx, group_events_wait, SCMP_ACT_ALLOW);
    if (!ret && (g & G_BLOCK))
        ret = add_names(ctx, group_block, SCMP_ACT_ALLOW);
    if (!ret && (g & G_THREADS))
        ret = add_names(ctx, group_threads, SCMP_ACT_ALLOW);
    if (!ret && (g & G_TEARDOWN))
        ret = add_names(ctx, group_teardown, SCMP_ACT_ALLOW);
    if (!ret && (g & G_MONITOR))
        ret = add_names(ctx, group_monitor, SCMP_ACT_ALLOW);
    if (!ret && !privileges_dropped && config.runas)
        ret = add_names(ctx, group_setxid, SCMP_ACT_ALLOW);
    if (!ret && config.resourcecontrol)
        ret = add_names(ctx, group_resource, SCMP_ACT_ALLOW);
    if (!ret && config.obsolete)
        ret = add_names(ctx, group_obsolete, SCMP_ACT_ALLOW);
    if (!ret)
        ret = sandbox_add_clone(ctx, kind, g);
    /* the SIGSYS handler's own calls, and a console socket's unlink at exit refused quietly */
    if (!ret)
        ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE, 0));
    if (!ret && kind == SANDBOX_THREAD_MAIN)
        ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unlink), 0);
    for (size_t i = 0; !ret && i < sizeof(ioctls_run) / sizeof(ioctls_run[0]); i++)
        ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                               SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctls_run[i] & 0xffffffffu));
    return ret;
}

/* The test-only hook (QKVM_TEST_SANDBOX_VIOLATE=KIND): a call no thread may make. */
static void sandbox_test_violate(void)
{
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    log_error("sandbox: QKVM_TEST_SANDBOX_VIOLATE: socket(AF_PACKET) was allowed (fd %d)", fd);
    if (fd >= 0)
        close(fd);
}

int sandbox_enter_thread(enum sandbox_thread kind)
{
    if (!config.on)
        return 0;
    if (kind >= SANDBOX_THREAD_COUNT)
        return -EINVAL;
    /* a thread that blocks signals (a disk's worker blocks them all) would otherwise die of a
     * blocked SIGSYS without the reporter's line: the kernel kills at once when it is blocked */
    sigset_t sys;
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    if (!ctx) {
        log_error("sandbox: cannot make a seccomp filter");
        return -ENOMEM;
    }
    /* no TSYNC: each kind of thread has its own list */
    int ret = sandbox_build(ctx, kind);
    if (!ret)
        ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
    if (!ret) {
        thread_kind = kinds[kind].name;
        ret = seccomp_load(ctx);
    }
    seccomp_release(ctx);
    if (ret) {
        log_error("sandbox: cannot install the %s thread's filter: %s", kinds[kind].name, strerror(-ret));
        return ret;
    }
    if (test_violate == (int)kind)
        sandbox_test_violate();
    return 0;
}
