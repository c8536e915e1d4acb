#!/usr/bin/env bash
# libFuzzer on the multiboot header parser and the -initrd module list (tests/fuzz/fuzz_multiboot.c),
# seeded with the two tiny multiboot kernels (ELF32 and a.out) and a module list. Every seed once,
# then new inputs for a few seconds (two minutes with QKVM_LONG=1). A crash, a sanitizer report, a
# leak, a hang, or a parse that accepts segments outside the file or overlapping fails.
. "$(dirname "$0")/lib.sh"
fuzz_target multiboot corpus-multiboot 16384 "src/vm/multiboot.h" src/vm/multiboot_header.c tests/fuzz/fuzz_multiboot.c
exit 0
