#!/usr/bin/env bash
# libFuzzer on the device state loader (tests/fuzz/fuzz_vmstate.c) under AddressSanitizer and
# UBSan: a whole tcg machine loads crafted streams (half of them with a correct checksum, so the
# sections and the devices' checks are reached). The seeds are the machine's own saved stream and
# the same with a packet waiting in its virtio-net card (checked to load); 20000 new inputs grow
# from them (two minutes with QKVM_LONG=1). A crash, a sanitizer report, a leak, a timeout or a
# refusal without a one-line reason fails.
. "$(dirname "$0")/lib.sh"

if ! command -v clang >/dev/null; then
  skip "vmstate fuzzing" "clang is not installed"
  exit 0
fi
out=$TOP/$B/tests/fuzz
obj=$out/obj-vmstate
bin=$out/fuzz_vmstate
mkdir -p "$obj"
cflags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -fsanitize=fuzzer-no-link,address,undefined
        -fno-sanitize-recover=undefined -fno-omit-frame-pointer -Wno-gnu-variable-sized-type-not-at-end)
srcs=$(cd "$TOP" && find src -name '*.c' ! -path 'src/tools/*' | sort)
newest_h=$(cd "$TOP" && ls -t $(find src -name '*.h') | head -n 1)
newest=$(cd "$TOP" && ls -t $srcs "$newest_h" tests/fuzz/fuzz_vmstate.c | head -n 1)
if [ ! -x "$bin" ] || [ "$TOP/$newest" -nt "$bin" ]; then
  # the whole library, two compilers at a time (the machine's limit); an object is kept while
  # it is newer than its source and every header
  if ! (cd "$TOP" && printf '%s\n' $srcs tests/fuzz/fuzz_vmstate.c |
        xargs -P2 -I{} sh -c 'o='"$obj"'/$(echo {} | tr / _).o; [ -f "$o" ] && [ "$o" -nt {} ] && [ "$o" -nt '"$newest_h"' ] || clang '"${cflags[*]}"' -c {} -o "$o"' &&
        clang -fsanitize=fuzzer,address,undefined "$obj"/*.o -o "$bin" -lz -lzstd -lcrypto -lseccomp -lpthread -lm) \
        >"$TMP/build.log" 2>&1; then
    if grep -q "fuzzer" "$TMP/build.log" && ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
      skip "vmstate fuzzing" "libFuzzer runtime missing (libclang-rt-14-dev)"
    else
      fail "vmstate fuzzing: build" "$(grep -m3 -E 'error' "$TMP/build.log" | tr '\n' ' ')"
    fi
    exit 0
  fi
fi
opts=(-max_len=32768 -timeout=5 -artifact_prefix="$TMP/")
keep() {
  ls "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* 2>/dev/null | head -n 1 | while read -r c; do
    mkdir -p "$out/crashes" && cp "$c" "$out/crashes/"
    echo "# the input is kept in $B/tests/fuzz/crashes/$(basename "$c")"
  done
}

mkdir "$TMP/work"
if ! QKVM_VMSTATE_SEED="$TMP/stream" "$bin" -runs=1 "$TMP/work" >"$TMP/seed.log" 2>&1 || [ ! -s "$TMP/stream" ]; then
  fail "vmstate fuzzing: seed" "$(tail -n 2 "$TMP/seed.log" | tr '\n' ' ')"
  exit 0
fi
# the seed as an input: a leading 0 byte keeps the stream's own checksum
{ printf '\0'; cat "$TMP/stream"; } >"$TMP/work/seed"
# and the head of a mapped-ram file (vm/mapped_ram.h): a leading 2
{ printf '\2'; cat "$TMP/stream.mapped"; } >"$TMP/work/seed-mapped"
# and the stream with a packet waiting in the virtio-net card (its variable-length field)
{ printf '\0'; cat "$TMP/stream.net"; } >"$TMP/work/seed-net"
if "$bin" "${opts[@]}" -runs=0 "$TMP/work" >"$TMP/corpus.log" 2>&1; then
  pass "vmstate fuzzing: the machine's own stream ($(stat -c %s "$TMP/stream") bytes) and one with a packet waiting in virtio-net ($(stat -c %s "$TMP/stream.net") bytes) load clean"
else
  fail "vmstate fuzzing: seed input" "$(grep -m2 -E 'ERROR|SUMMARY|runtime error' "$TMP/corpus.log" | tr '\n' ' ')"
  keep
fi
runs=20000 limit=(-runs=$runs -seed=1)
[ "${QKVM_LONG:-}" = 1 ] && runs=1 limit=(-max_total_time=120)
timeout 600 "$bin" "${opts[@]}" "${limit[@]}" -print_final_stats=1 "$TMP/work" >"$TMP/fuzz.log" 2>&1
rc=$?
done=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/fuzz.log")
if [ $rc = 0 ] && [ "${done:-0}" -ge $runs ]; then
  pass "vmstate fuzzing: $done inputs, no crash"
else
  fail "vmstate fuzzing" "status $rc after ${done:-?} inputs: $(grep -m1 -E 'ERROR|runtime error|deadly' "$TMP/fuzz.log")"
  keep
fi
