#!/usr/bin/env bash
# libFuzzer on the virtqueue code (tests/fuzz/fuzz_virtq.c): crafted rings, tables and buffers,
# under AddressSanitizer and UBSan. A few seconds here; QKVM_LONG=1 runs it for two minutes.
. "$(dirname "$0")/lib.sh"

if ! command -v clang >/dev/null; then
  skip "virtqueue fuzzing" "clang is not installed"
  exit 0
fi
out=$TOP/$B/tests/fuzz
mkdir -p "$out"
srcs="tests/fuzz/fuzz_virtq.c src/hw/virtio/queue.c src/vm/memory.c src/util/log.c src/util/clock.c"
bin=$out/fuzz_virtq
newest=$(cd "$TOP" && ls -t $srcs src/hw/virtio/queue.h src/vm/machine.h | head -n 1)
if [ ! -x "$bin" ] || [ "$TOP/$newest" -nt "$bin" ]; then
  if ! (cd "$TOP" && clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -D_GNU_SOURCE -std=gnu11 -Isrc $srcs -o "$bin") >"$TMP/build.log" 2>&1; then
    if grep -qi "fuzzer" "$TMP/build.log"; then
      skip "virtqueue fuzzing" "this clang has no libFuzzer"
    else
      fail "the virtqueue fuzz target builds" "$(tail -n 3 "$TMP/build.log")"
    fi
    exit 0
  fi
fi
pass "the virtqueue fuzz target builds"
secs=5
[ "${QKVM_LONG:-}" = 1 ] && secs=120
mkdir -p "$TMP/corpus"
"$bin" -max_total_time=$secs -timeout=5 -artifact_prefix="$TMP/" -print_final_stats=1 "$TMP/corpus" >"$TMP/fuzz.log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/fuzz.log")
if [ $rc = 0 ] && [ "${runs:-0}" -gt 0 ]; then
  pass "virtqueue fuzzing: $runs inputs in ${secs}s, no crash"
else
  fail "virtqueue fuzzing" "status $rc: $(grep -m1 -E 'ERROR|runtime error|deadly' "$TMP/fuzz.log")"
  ls "$TMP"/crash-* "$TMP"/leak-* 2>/dev/null | head -n 1 | while read -r c; do
    mkdir -p "$TOP/$B/tests/fuzz/crashes" && cp "$c" "$TOP/$B/tests/fuzz/crashes/"
    echo "# the input is kept in $B/tests/fuzz/crashes/$(basename "$c")"
  done
fi
