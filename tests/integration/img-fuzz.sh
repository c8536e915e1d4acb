#!/usr/bin/env bash
# libFuzzer on qcow2 open + read + small writes + check (tests/fuzz/fuzz_qcow2.c), seeded with
# tests/fuzz/corpus/: every seed once, then new inputs for a few seconds (minutes with
# QKVM_LONG=1). A crash, a sanitizer report, a leak or a timeout fails.
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || { skip img-fuzz "clang not installed"; exit 0; }
out=$TOP/${B}-fuzz
if ! "$TOP/tests/fuzz/build.sh" "$out" >"$TMP/build.log" 2>&1; then
  if grep -q "fuzzer" "$TMP/build.log" && ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    skip img-fuzz "libFuzzer runtime missing (libclang-rt-14-dev)"
  else
    fail "img-fuzz: build" "$(tail -3 "$TMP/build.log" | tr '\n' ' ')"
  fi
  exit 0
fi
secs=20; [ -n "${QKVM_LONG:-}" ] && secs=600
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
opts=(-max_len=131072 -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024
      -artifact_prefix="$TMP/")
cd "$TMP"
n=$(ls "$TOP/tests/fuzz/corpus" | wc -l)
if "$out/fuzz-qcow2" "${opts[@]}" -runs=0 "$TOP/tests/fuzz/corpus" >seeds.log 2>&1; then
  pass "fuzz: the $n corpus inputs run clean"
else
  fail "fuzz: corpus inputs" "$(grep -m2 -E 'ERROR|SUMMARY' seeds.log | tr '\n' ' ')"
fi
mkdir work
cp "$TOP/tests/fuzz/corpus/"* work/
if timeout $((secs + 120)) "$out/fuzz-qcow2" "${opts[@]}" -max_total_time=$secs \
     -print_final_stats=1 work >run.log 2>&1; then
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' run.log)
  pass "fuzz: ${secs}s, ${runs:-?} inputs, no crash"
else
  art=$(ls "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* "$TMP"/oom-* 2>/dev/null | head -1)
  [ -n "$art" ] && cp "$art" "$out/"
  fail "fuzz: ${secs}s" "$(grep -m2 -E 'ERROR|SUMMARY' run.log | tr '\n' ' ') input saved in ${B}-fuzz/${art##*/}"
fi
exit 0
