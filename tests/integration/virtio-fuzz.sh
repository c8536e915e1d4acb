#!/usr/bin/env bash
# libFuzzer on the virtqueue code (tests/fuzz/fuzz_virtq.c): crafted rings, tables and buffers,
# under AddressSanitizer and UBSan; the target itself traps when the queue hands out a buffer
# outside guest RAM. Every input of tests/fuzz/corpus-virtq/ runs once, the corpus must reach
# more of the queue than an empty input does, then 20000 new inputs grow from it (two minutes of
# fuzzing with QKVM_LONG=1). libFuzzer exits nonzero on a crash, a sanitizer report, a leak or
# a timeout: each fails, and the input is kept.
. "$(dirname "$0")/lib.sh"

if ! command -v clang >/dev/null; then
  skip "virtqueue fuzzing" "clang is not installed"
  exit 0
fi
out=$TOP/$B/tests/fuzz
mkdir -p "$out"
srcs="tests/fuzz/fuzz_virtq.c src/hw/virtio/queue.c src/vm/memory.c src/util/log.c src/util/clock.c"
bin=$out/fuzz_virtq
corpus=$TOP/tests/fuzz/corpus-virtq
newest=$(cd "$TOP" && ls -t $srcs src/hw/virtio/queue.h src/vm/machine.h | head -n 1)
if [ ! -x "$bin" ] || [ "$TOP/$newest" -nt "$bin" ]; then
  if ! (cd "$TOP" && clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -D_GNU_SOURCE -std=gnu11 -Isrc $srcs -o "$bin") >"$TMP/build.log" 2>&1; then
    if grep -q "fuzzer" "$TMP/build.log" && ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
      skip "virtqueue fuzzing" "libFuzzer runtime missing (libclang-rt-14-dev)"
    else
      fail "virtqueue fuzzing: build" "$(tail -n 3 "$TMP/build.log" | tr '\n' ' ')"
    fi
    exit 0
  fi
fi
opts=(-max_len=8192 -timeout=5 -artifact_prefix="$TMP/")
keep() {  # keep the input behind a failure where the next run does not delete it
  ls "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* 2>/dev/null | head -n 1 | while read -r c; do
    mkdir -p "$out/crashes" && cp "$c" "$out/crashes/"
    echo "# the input is kept in $B/tests/fuzz/crashes/$(basename "$c")"
  done
}
cov() { sed -n 's/.*INITED cov: \([0-9]*\).*/\1/p' "$1" | head -n 1; }

n=$(ls "$corpus" | wc -l)
mkdir "$TMP/empty"
"$bin" "${opts[@]}" -runs=0 "$TMP/empty" >"$TMP/empty.log" 2>&1
if "$bin" "${opts[@]}" -runs=0 "$corpus" >"$TMP/corpus.log" 2>&1; then
  pass "virtqueue fuzzing: the $n corpus inputs run clean"
else
  fail "virtqueue fuzzing: corpus inputs" "$(grep -m2 -E 'ERROR|SUMMARY|runtime error' "$TMP/corpus.log" | tr '\n' ' ')"
  keep
fi
# an empty corpus, or a target that returns before the queue for every input, reaches ~nothing
base=$(cov "$TMP/empty.log") got=$(cov "$TMP/corpus.log")
if [ -n "$base" ] && [ -n "$got" ] && [ "$got" -gt $((base * 10)) ]; then
  pass "virtqueue fuzzing: the corpus covers $got edges (an empty input $base)"
else
  fail "virtqueue fuzzing: corpus coverage" "${got:-?} edges, an empty input ${base:-?}"
fi

mkdir "$TMP/work"
cp "$corpus"/* "$TMP/work/"
runs=20000 limit=(-runs=$runs -seed=1)
[ "${QKVM_LONG:-}" = 1 ] && runs=1 limit=(-max_total_time=120)
timeout 600 "$bin" "${opts[@]}" "${limit[@]}" -print_final_stats=1 "$TMP/work" >"$TMP/fuzz.log" 2>&1
rc=$?
done=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/fuzz.log")
if [ $rc = 0 ] && [ "${done:-0}" -ge $runs ]; then
  pass "virtqueue fuzzing: $done inputs, no crash"
else
  fail "virtqueue fuzzing" "status $rc after ${done:-?} inputs: $(grep -m1 -E 'ERROR|runtime error|deadly' "$TMP/fuzz.log")"
  keep
fi
