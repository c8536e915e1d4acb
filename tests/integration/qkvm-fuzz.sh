#!/usr/bin/env bash
# libFuzzer on qkvm's command line and keyval parsers (tests/fuzz/fuzz_cmdline.c), seeded with
# tests/fuzz/corpus-cmdline/: every seed once, then new inputs for a few seconds (ten minutes
# with QKVM_LONG=1). A crash, a sanitizer report, a leak, a broken oracle or a timeout fails.
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || { skip qkvm-fuzz "clang not installed"; exit 0; }
out=$TOP/${B}-fuzz
if ! "$TOP/tests/fuzz/build.sh" "$out" >"$TMP/build.log" 2>&1; then
  if grep -q "fuzzer" "$TMP/build.log" && ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    skip qkvm-fuzz "libFuzzer runtime missing (libclang-rt-14-dev)"
  else
    fail "qkvm-fuzz: build" "$(tail -3 "$TMP/build.log" | tr '\n' ' ')"
  fi
  exit 0
fi
secs=10; [ -n "${QKVM_LONG:-}" ] && secs=600
corpus=$TOP/tests/fuzz/corpus-cmdline
export ASAN_OPTIONS=detect_leaks=1
opts=(-max_len=4096 -timeout=10 -rss_limit_mb=2048 -dict="$TOP/tests/fuzz/cmdline.dict"
      -artifact_prefix="$TMP/")
cd "$TMP"
n=$(ls "$corpus" | wc -l)
if [ "$n" -gt 0 ] && "$out/fuzz-cmdline" "${opts[@]}" -runs=0 "$corpus" >seeds.log 2>&1; then
  pass "qkvm-fuzz: the $n command-line seeds run clean"
else
  fail "qkvm-fuzz: seeds" "$n seeds: $(grep -m2 -E 'ERROR|SUMMARY' seeds.log | tr '\n' ' ')"
fi
mkdir work
cp "$corpus"/* work/
if timeout $((secs + 120)) "$out/fuzz-cmdline" "${opts[@]}" -max_total_time=$secs \
     -print_final_stats=1 work >run.log 2>&1; then
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' run.log)
  if [ "${runs:-0}" -gt 1000 ]; then
    pass "qkvm-fuzz: ${secs}s, $runs command lines, no crash"
  else
    fail "qkvm-fuzz: ${secs}s" "only ${runs:-0} inputs ran"
  fi
else
  art=$(ls "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* "$TMP"/oom-* 2>/dev/null | head -1)
  [ -n "$art" ] && cp "$art" "$out/"
  fail "qkvm-fuzz: ${secs}s" "$(grep -m2 -E 'ERROR|SUMMARY' run.log | tr '\n' ' ') input saved in ${B}-fuzz/${art##*/}"
fi
exit 0
