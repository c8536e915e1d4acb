/* The least a VMM can do per exit: a bare KVM_RUN loop running a flat ROM (as -bios maps it),
 * counting port writes until the guest writes port 0xf4 or halts. bench/kvm-exits runs it beside
 * qkvm on the same ROM, so the difference is qkvm's own cost per exit.
 *   bare-kvm ROM  -> prints the number of I/O exits */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void fail(const char *what)
{
    fprintf(stderr, "bare-kvm: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bare-kvm ROM\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size != 0x10000)
        fail("the ROM must be a 64 KiB file");
    uint8_t *rom = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (rom == MAP_FAILED)
        fail("mmap ROM");
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        fail("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        fail("KVM_CREATE_VM");
    struct kvm_userspace_memory_region hi = { 0, KVM_MEM_READONLY, 0xffff0000, 0x10000, (uintptr_t)rom };
    struct kvm_userspace_memory_region lo = { 1, KVM_MEM_READONLY, 0xf0000, 0x10000, (uintptr_t)rom };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &hi) < 0 || ioctl(vm, KVM_SET_USER_MEMORY_REGION, &lo) < 0)
        fail("KVM_SET_USER_MEMORY_REGION");
    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (cpu < 0)
        fail("KVM_CREATE_VCPU");
    int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    if (run == MAP_FAILED)
        fail("mmap kvm_run");
    unsigned long exits = 0;
    for (;;) {
        if (ioctl(cpu, KVM_RUN, 0) < 0)
            fail("KVM_RUN");
        if (run->exit_reason == KVM_EXIT_IO) {
            exits++;
            if (run->io.port == 0xf4)
                break;
            continue;
        }
        if (run->exit_reason == KVM_EXIT_HLT)
            break;
        if (run->exit_reason == KVM_EXIT_MMIO)
            continue;   /* writes to the read-only ROM */
        fprintf(stderr, "bare-kvm: unexpected exit %u\n", run->exit_reason);
        return 1;
    }
    printf("%lu\n", exits);
    return 0;
}
