/* Protection keys and UMIP as a Linux program sees them (tests/integration/cpu-models.sh runs it
 * in the default guest under -cpu max): a page tagged with a key is readable and writable until
 * PKRU takes write, then all access away, each denial a SIGSEGV with si_code SEGV_PKUERR and the
 * key in si_pkey; and SGDT, which the kernel emulates under UMIP with a fixed dummy base.
 * Prints one line per check; "pkeys: unsupported" when the kernel offers no keys. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef SEGV_PKUERR
#define SEGV_PKUERR 4
#endif

static sigjmp_buf jb;
static volatile int got_code, got_pkey;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    got_code = si->si_code;
    got_pkey = (int)si->si_pkey;
    siglongjmp(jb, 1);
}

/* 1 when the access faulted, 0 when it went through */
static int try_access(volatile uint8_t *p, int write)
{
    got_code = got_pkey = -1;
    if (sigsetjmp(jb, 1))
        return 1;
    if (write)
        *p = 7;
    else
        (void)*p;
    return 0;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);

    int key = pkey_alloc(0, 0);
    if (key < 0) {
        printf("pkeys: unsupported (%s)\n", strerror(errno));
        return 1;
    }
    uint8_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED || pkey_mprotect(page, 4096, PROT_READ | PROT_WRITE, key) < 0) {
        printf("pkeys: pkey_mprotect failed (%s)\n", strerror(errno));
        return 1;
    }
    printf("pkeys: key %d, open: read %s, write %s\n", key, try_access(page, 0) ? "faults" : "ok",
           try_access(page, 1) ? "faults" : "ok");
    pkey_set(key, PKEY_DISABLE_WRITE);
    int r = try_access(page, 0), w = try_access(page, 1);
    printf("pkeys: write-disabled: read %s, write %s (si_code %d, key %s)\n", r ? "faults" : "ok",
           w ? "faults" : "ok", got_code, got_pkey == key ? "matches" : "differs");
    pkey_set(key, PKEY_DISABLE_ACCESS);
    r = try_access(page, 0);
    printf("pkeys: access-disabled: read %s (si_code %d, key %s)\n", r ? "faults" : "ok", got_code,
           got_pkey == key ? "matches" : "differs");
    pkey_set(key, 0);
    printf("pkeys: reopened: write %s, value %d\n", try_access(page, 1) ? "faults" : "ok", page[0]);

    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdt = { 0, 0 };
    __asm__ volatile("sgdt %0" : "=m"(gdt));
    printf("umip: sgdt base %#llx limit %u\n", (unsigned long long)gdt.base, gdt.limit);
    return 0;
}
