#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan, UBSan) into OUT (default build-fuzz/):
#   OUT/fuzz-qcow2     tests/fuzz/fuzz_qcow2.c on the block layer
#   OUT/fuzz-cmdline   tests/fuzz/fuzz_cmdline.c on qkvm's command line and keyval parsers
#   OUT/fuzz-qmp       tests/fuzz/fuzz_qmp.c on the QMP stream splitter, JSON reader and dispatch
# Rebuilds a target only when one of its sources is newer than it. Needs clang and
# libclang-rt-14-dev (scripts/deps.sh test).
set -eu
cd "$(dirname "$0")/../.."
out=${1:-build-fuzz}
mkdir -p "$out"
CC=${FUZZ_CC:-clang}

# build NAME "DIRS WHOSE HEADERS COUNT" SOURCES... -- LIBS...
build() {
  local bin=$out/$1 dirs=$2; shift 2
  local srcs=() libs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do srcs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  libs=("$@")
  if [ -x "$bin" ]; then
    # shellcheck disable=SC2086
    newer=$(find "${srcs[@]}" $dirs -newer "$bin" -name '*.[ch]' | head -n 1)
    [ -z "$newer" ] && return 0
  fi
  $CC -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -Wall -Wextra -Werror \
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -fno-omit-frame-pointer "${srcs[@]}" -o "$bin.tmp" "${libs[@]}"
  mv "$bin.tmp" "$bin"
}

build fuzz-qcow2 "src/block src/nbd src/util" src/block/*.c src/block/qcow2/*.c src/nbd/*.c src/util/log.c \
  src/util/clock.c src/util/parse.c tests/fuzz/fuzz_qcow2.c -- -lpthread -lm
build fuzz-cmdline "src/util src/vm/config.h src/vm/machine.h src/vm/smbios.h src/hw/bus.h" \
  src/vm/config.c src/vm/bootdev.c src/vm/smbios.c src/vm/monitor/addr.c src/util/parse.c src/util/log.c src/util/clock.c src/util/sandbox.c \
  tests/fuzz/fuzz_cmdline.c -- -lseccomp -lpthread -lm
# QMP: dispatch reaches the command table, which names the machine's parts: the whole library
# (kvm.c keeps a GNU variable-sized struct that clang warns about)
CC="$CC -Wno-gnu-variable-sized-type-not-at-end" build fuzz-qmp "src" $(find src -name '*.c' ! -path 'src/tools/*' | sort) tests/fuzz/fuzz_qmp.c \
  -- -lz -lzstd -lcrypto -lseccomp -lpthread -lm
