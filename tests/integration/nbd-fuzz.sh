#!/usr/bin/env bash
# libFuzzer on the NBD server (tests/fuzz/fuzz_nbd.c): whole client streams (handshake,
# options, requests) over a socketpair, seeded with tests/fuzz/corpus-nbd/. Every seed once,
# then new inputs for a few seconds (two minutes with QKVM_LONG=1). A crash, a sanitizer
# report, a leak or a hang fails.
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || { skip "nbd fuzzing" "clang is not installed"; exit 0; }
out=$TOP/$B/tests/fuzz
mkdir -p "$out"
bin=$out/fuzz_nbd
srcs=(src/block/*.c src/block/qcow2/*.c src/util/log.c src/util/clock.c src/util/parse.c
      src/nbd/*.c tests/fuzz/fuzz_nbd.c)
newer=
[ -x "$bin" ] && newer=$(cd "$TOP" && find "${srcs[@]}" src/nbd src/block -name '*.[ch]' -newer "$bin" | head -n 1)
if [ ! -x "$bin" ] || [ -n "$newer" ]; then
  if ! (cd "$TOP" && clang -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -Wall -Wextra -Werror \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -fno-omit-frame-pointer "${srcs[@]}" -o "$bin" -lz -lzstd -lcrypto -lpthread -lm) \
        >"$TMP/build.log" 2>&1; then
    if grep -qi "fuzzer" "$TMP/build.log"; then
      skip "nbd fuzzing" "this clang has no libFuzzer (libclang-rt-14-dev)"
    else
      fail "the nbd fuzz target builds" "$(tail -n 3 "$TMP/build.log" | tr '\n' ' ')"
    fi
    exit 0
  fi
fi
pass "the nbd fuzz target builds"
secs=10; [ "${QKVM_LONG:-}" = 1 ] && secs=120
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
opts=(-max_len=65536 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$TMP/")
n=$(ls "$TOP/tests/fuzz/corpus-nbd" | wc -l)
if (cd "$TMP" && "$bin" "${opts[@]}" -runs=0 "$TOP/tests/fuzz/corpus-nbd") >"$TMP/seeds.log" 2>&1; then
  pass "nbd fuzz: the $n seed streams run clean"
else
  fail "nbd fuzz: seeds" "$(grep -m2 -E 'ERROR|SUMMARY' "$TMP/seeds.log" | tr '\n' ' ')"
fi
mkdir "$TMP/work" && cp "$TOP/tests/fuzz/corpus-nbd/"* "$TMP/work/"
if (cd "$TMP" && timeout $((secs + 120)) "$bin" "${opts[@]}" -max_total_time=$secs \
      -print_final_stats=1 work) >"$TMP/run.log" 2>&1; then
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/run.log")
  if [ "${runs:-0}" -gt 0 ]; then pass "nbd fuzz: ${secs}s, $runs inputs, no crash"
  else fail "nbd fuzz" "no input ran"; fi
else
  art=$(ls "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* "$TMP"/oom-* 2>/dev/null | head -n 1)
  [ -n "$art" ] && cp "$art" "$out/"
  fail "nbd fuzz: ${secs}s" "$(grep -m2 -E 'ERROR|SUMMARY' "$TMP/run.log" | tr '\n' ' ') input kept in $B/tests/fuzz/${art##*/}"
fi
exit 0
