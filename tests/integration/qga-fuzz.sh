#!/usr/bin/env bash
# libFuzzer on the guest agent's request side (tests/fuzz/fuzz_qga.c): byte streams as a host
# sends them, seeded with tests/fuzz/corpus-qga/. Every seed once, then new inputs for a few
# seconds (two minutes with QKVM_LONG=1). A crash, a sanitizer report, a leak, a reply that is
# not one line of JSON, or a hang fails.
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || { skip "qga fuzzing" "clang is not installed"; exit 0; }
out=$TOP/$B/tests/fuzz
mkdir -p "$out"
bin=$out/fuzz_qga
srcs=(src/qga/*.c src/util/json.c src/util/base64.c tests/fuzz/fuzz_qga.c)
newer=
[ -x "$bin" ] && newer=$(cd "$TOP" && find "${srcs[@]}" src/qga src/util -name '*.[ch]' -newer "$bin" | head -n 1)
if [ ! -x "$bin" ] || [ -n "$newer" ]; then
  if ! (cd "$TOP" && clang -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -Wall -Wextra -Werror \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -fno-omit-frame-pointer "${srcs[@]}" -o "$bin" -lpthread) >"$TMP/build.log" 2>&1; then
    if grep -qi "fuzzer" "$TMP/build.log"; then
      skip "qga fuzzing" "this clang has no libFuzzer (libclang-rt-14-dev)"
    else
      fail "the qga fuzz target builds" "$(tail -n 3 "$TMP/build.log" | tr '\n' ' ')"
    fi
    exit 0
  fi
fi
pass "the qga fuzz target builds"
secs=10; [ "${QKVM_LONG:-}" = 1 ] && secs=120
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
opts=(-max_len=16384 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$TMP/")
n=$(ls "$TOP/tests/fuzz/corpus-qga" | wc -l)
if (cd "$TMP" && "$bin" "${opts[@]}" -runs=0 "$TOP/tests/fuzz/corpus-qga") >"$TMP/seeds.log" 2>&1; then
  pass "qga fuzz: the $n seed streams run clean"
else
  fail "qga fuzz: seeds" "$(grep -m2 -E 'ERROR|SUMMARY' "$TMP/seeds.log" | tr '\n' ' ')"
fi
mkdir "$TMP/work" && cp "$TOP/tests/fuzz/corpus-qga/"* "$TMP/work/"
if (cd "$TMP" && timeout $((secs + 120)) "$bin" "${opts[@]}" -max_total_time=$secs \
      -print_final_stats=1 work) >"$TMP/run.log" 2>&1; then
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/run.log")
  if [ "${runs:-0}" -gt 0 ]; then pass "qga fuzz: ${secs}s, $runs inputs, no crash"
  else fail "qga fuzz" "no input ran"; fi
else
  art=$(ls "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* "$TMP"/oom-* 2>/dev/null | head -n 1)
  [ -n "$art" ] && cp "$art" "$out/"
  fail "qga fuzz: ${secs}s" "$(grep -m2 -E 'ERROR|SUMMARY' "$TMP/run.log" | tr '\n' ' ') input kept in $B/tests/fuzz/${art##*/}"
fi
exit 0
