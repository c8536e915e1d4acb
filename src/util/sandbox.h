/* The sandbox: -sandbox on (a seccomp allow-list per kind of thread), -runas and -chroot.
 * Seccomp filters, credentials and the root directory belong to the process (and its threads) by
 * the kernel's design, not to one machine, so this module keeps one process-wide configuration.
 *
 * Order (docs/sandbox.md): parse -> sandbox_configure -> create the machine (open /dev/kvm,
 * images, taps) -> sandbox_drop_privileges -> every thread calls sandbox_enter_thread at its start,
 * the main thread last, once its own threads are running. */
#ifndef QKVM_UTIL_SANDBOX_H
#define QKVM_UTIL_SANDBOX_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum sandbox_thread {
    SANDBOX_THREAD_MAIN,    /* main(): the event loop, then the teardown */
    SANDBOX_THREAD_VCPU,    /* a vCPU: runs the guest and the device code its exits reach */
    SANDBOX_THREAD_IO,      /* an I/O worker: event waits and block I/O for a device */
    SANDBOX_THREAD_COUNT,
};

struct sandbox_config {
    bool on;                /* -sandbox on */
    bool obsolete;          /* obsolete=allow: old syscalls nobody here needs, allowed anyway */
    bool spawn;             /* spawn=allow (the default, as QEMU): the main thread may fork */
    bool resourcecontrol;   /* resourcecontrol=allow (the default): scheduling and priority */
    char *runas;            /* -runas USER: the user to become once the machine is created */
    uid_t uid;
    gid_t gid;
    char *chroot;           /* -chroot DIR */
};

/* The defaults: sandbox off, no user change, no chroot. */
void sandbox_config_init(struct sandbox_config *c);
/* Frees what the setters copied. Not while the process is confined by this configuration. */
void sandbox_config_free(struct sandbox_config *c);
/* -sandbox ARG (QEMU's: on|off[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]
 * [,spawn=allow|deny][,resourcecontrol=allow|deny]). 0, or -EINVAL with the reason in why. */
int sandbox_parse_option(struct sandbox_config *c, const char *arg, char *why, size_t len);
/* -runas USER: looks the user up now. 0 or -ENOENT (why says so). */
int sandbox_set_runas(struct sandbox_config *c, const char *user, char *why, size_t len);
/* -chroot DIR: DIR must be a directory and we must be root. 0 or -errno (why says so). */
int sandbox_set_chroot(struct sandbox_config *c, const char *dir, char *why, size_t len);
/* -run-with chroot=DIR,user=USER: the newer spelling of the two above. */
int sandbox_parse_run_with(struct sandbox_config *c, const char *arg, char *why, size_t len);

/* Makes c the process's sandbox (a copy); with the sandbox on, installs the SIGSYS reporter. */
int sandbox_configure(const struct sandbox_config *c);
/* Whether anything (sandbox, runas, chroot) stops qkvm from opening files again: a guest reset
 * then ends qkvm instead of building the machine anew. */
bool sandbox_confines(void);
/* chroot, then setgroups/setgid/setuid, as configured; a no-op without -runas/-chroot. Call it
 * after every file, device and tap is open and before the guest runs. 0 or -errno, logged. */
int sandbox_drop_privileges(void);
/* Installs the allow-list of kind on the calling thread (a no-op when the sandbox is off). Each
 * thread calls it first thing; a thread inherits its creator's filter, so the main thread enters
 * last. 0 or -errno, logged. */
int sandbox_enter_thread(enum sandbox_thread kind);
const char *sandbox_thread_name(enum sandbox_thread kind);

#endif
