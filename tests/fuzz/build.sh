#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan, UBSan) into OUT (default build-fuzz/):
#   OUT/fuzz-qcow2   tests/fuzz/fuzz_qcow2.c on the block layer
# Does nothing when the binary is newer than every source. Needs clang and libclang-rt-14-dev
# (scripts/deps.sh test).
set -eu
cd "$(dirname "$0")/../.."
out=${1:-build-fuzz}
mkdir -p "$out"
srcs=(src/block/*.c src/block/qcow2/*.c src/nbd/*.c src/util/log.c src/util/clock.c src/util/parse.c tests/fuzz/fuzz_qcow2.c)
bin=$out/fuzz-qcow2
if [ -x "$bin" ]; then
  newer=$(find "${srcs[@]}" src/block src/util -newer "$bin" -name '*.[ch]' | head -n 1)
  [ -z "$newer" ] && exit 0
fi
CC=${FUZZ_CC:-clang}
$CC -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -Wall -Wextra -Werror \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -fno-omit-frame-pointer "${srcs[@]}" -o "$bin.tmp" -lz -lzstd -lcrypto -lpthread -lm
mv "$bin.tmp" "$bin"
