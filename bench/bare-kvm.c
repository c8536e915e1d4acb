/* The least a VMM can do: a plain program (it links nothing of qkvm; the Makefile builds it alone)
 * that creates a KVM VM with 256 MiB of lazy RAM, maps a 64 KiB flat ROM as -bios does (below
 * 4 GiB and at 0xf0000), and runs it: COM1 output goes to stdout (the line status register always
 * says "ready"), a write to isa-debug-exit (port 0xf4) ends the run with QEMU's status
 * (value << 1) | 1, a halt with 0. bench/startup, bench/rss and bench/kvm-exits run it beside
 * qkvm on the same ROM, so the difference is what qkvm itself costs.
 *   bare-kvm ROM   -> the guest's COM1 output on stdout; "bare-kvm: N I/O exits" on stderr */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RAM_SIZE (256u << 20)
#define ROM_SIZE 0x10000u
#define ROM_LOW 0xf0000u

static void fail(const char *what)
{
    fprintf(stderr, "bare-kvm: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void add_slot(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t len, void *p)
{
    struct kvm_userspace_memory_region r = { slot, flags, gpa, len, (uintptr_t)p };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        fail("KVM_SET_USER_MEMORY_REGION");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bare-kvm ROM\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size != ROM_SIZE)
        fail("the ROM must be a 64 KiB file");
    uint8_t *rom = mmap(NULL, ROM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    /* lazy: only the pages the guest touches become resident */
    uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (rom == MAP_FAILED || ram == MAP_FAILED)
        fail("mmap");
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        fail("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        fail("KVM_CREATE_VM");
    /* RAM around the ROM's window below 1 MiB, as slots may not overlap */
    add_slot(vm, 0, 0, 0, ROM_LOW, ram);
    add_slot(vm, 1, KVM_MEM_READONLY, ROM_LOW, ROM_SIZE, rom);
    add_slot(vm, 2, 0, 0x100000, RAM_SIZE - 0x100000, ram + 0x100000);
    add_slot(vm, 3, KVM_MEM_READONLY, 0x100000000ull - ROM_SIZE, ROM_SIZE, rom);
    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (cpu < 0)
        fail("KVM_CREATE_VCPU");
    int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    if (run == MAP_FAILED)
        fail("mmap kvm_run");
    unsigned long exits = 0;
    int status = 0;
    for (;;) {
        if (ioctl(cpu, KVM_RUN, 0) < 0)
            fail("KVM_RUN");
        if (run->exit_reason == KVM_EXIT_IO) {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            exits++;
            if (run->io.direction == KVM_EXIT_IO_IN) {
                memset(data, run->io.port == 0x3fd ? 0x60 : 0xff, run->io.size * run->io.count);
                continue;
            }
            if (run->io.port == 0x3f8)
                fwrite(data, 1, run->io.count, stdout);
            if (run->io.port == 0xf4) {
                status = (data[0] << 1) | 1;
                break;
            }
            continue;
        }
        if (run->exit_reason == KVM_EXIT_HLT)
            break;
        if (run->exit_reason == KVM_EXIT_MMIO)
            continue;   /* writes to the read-only ROM */
        fprintf(stderr, "bare-kvm: unexpected exit %u\n", run->exit_reason);
        return 1;
    }
    fflush(stdout);
    fprintf(stderr, "bare-kvm: %lu I/O exits\n", exits);
    /* no teardown by hand: exit closes the descriptors and the kernel frees the VM, as for qkvm */
    return status;
}
