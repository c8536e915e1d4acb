# Sourced by every integration test. Results are TAP lines counted by tests/run.sh.
# A script reports each check with pass/fail/skip and exits 0; a nonzero exit counts as one failure.
set -u
B=${B:-build}
TOP=${QKVM_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
QKVM=$TOP/$B/qkvm
GUESTS=$TOP/$B/tests/guest
TMP=$(mktemp -d /tmp/qkvm-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
pass() { echo "ok - $1"; }
fail() { echo "not ok - $1${2:+: $2}"; }
skip() { echo "ok - $1 # SKIP ${2:-}"; }
check() {  # check NAME COMMAND...: pass when the command succeeds
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}
# KVM usable at all (any /dev/kvm that answers KVM_GET_API_VERSION)
have_kvm() { [ -r /dev/kvm ] && [ -w /dev/kvm ]; }
# Hardware virtualization behind /dev/kvm (vmx/svm); without it KVM runs privileged guest code in
# the kernel's instruction emulator, far too slowly for a Linux boot.
have_hw_virt() { have_kvm && grep -qwE 'vmx|svm' /proc/cpuinfo; }
# Accelerators this build has and this host can run, one per line: the tiny guests run on each.
qkvm_accels() {
  local a
  for a in $("$QKVM" -accel help | tail -n +2); do
    if [ "$a" = kvm ] && ! have_kvm; then continue; fi
    echo "$a"
  done
}
# Runs qkvm with a timeout; output in $TMP/out (stdout) and $TMP/err (stderr), status in $rc.
run_qkvm() {
  local t=$1; shift
  timeout -k 5 "$t" "$QKVM" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
  rc=$?
}
# qkvm_refused NAME TEXT QKVM-ARGS...: qkvm must refuse to run with status 1 (not a signal) and
# one line on stderr that holds TEXT (a fixed string): bad input's rule (DEVELOPERS.md).
qkvm_refused() {
  local name=$1 want=$2; shift 2
  run_qkvm 60 "$@"
  local lines; lines=$(grep -c . "$TMP/err")
  if [ "$rc" = 1 ] && [ "$lines" = 1 ] && grep -qF -- "$want" "$TMP/err"; then
    pass "$name: refused with one line"
  else
    fail "$name" "status $rc, $lines lines: $(head -c 300 "$TMP/err" | tr '\n' ' ')"
  fi
}
# mig_wait SOCKET SECONDS [QMP-COMMAND...]: polls query-migrate (and the commands given) on the
# QMP socket until the migration ends or SECONDS pass; the last reply in $TMP/qm. 0 when it
# completed.
mig_wait() {
  local sock=$1 n=$(($2 * 10)) i; shift 2
  for ((i = 0; i < n; i++)); do
    python3 "$TOP/tests/integration/qmp.py" "$sock" query-migrate "$@" >"$TMP/qm" 2>&1
    grep -q '"completed"\|"failed"\|"cancelled"' "$TMP/qm" && break
    sleep 0.1
  done
  grep -q '"status": "completed"' "$TMP/qm"
}
# The value of key= in $TMP/out
outval() { sed -n "s/^$1=//p" "$TMP/out" | tr -d '\r' | head -n 1; }

# A libFuzzer target of one compile (clang, ASan, UBSan): fuzz_target NAME CORPUS MAX_LEN DIRS
# SOURCES... [-- LIBS...]. Builds $B/tests/fuzz/fuzz_NAME when it or a .c/.h under DIRS (one
# word, space-separated) is newer; runs every seed of tests/fuzz/CORPUS once, then new inputs
# for 10 s (120 s with QKVM_LONG=1). A crash, a sanitizer report, a leak or a hang fails; the
# input is kept in $B/tests/fuzz/.
fuzz_target() {
  local name=$1 corpus=$TOP/tests/fuzz/$2 maxlen=$3 dirs=$4; shift 4
  local srcs=() libs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do srcs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  libs=("$@")
  command -v clang >/dev/null || { skip "$name fuzzing" "clang is not installed"; return; }
  local out=$TOP/$B/tests/fuzz bin=$TOP/$B/tests/fuzz/fuzz_$name newer=
  mkdir -p "$out"
  # shellcheck disable=SC2086
  [ -x "$bin" ] && newer=$(cd "$TOP" && find "${srcs[@]}" $dirs -name '*.[ch]' -newer "$bin" | head -n 1)
  if [ ! -x "$bin" ] || [ -n "$newer" ]; then
    if ! (cd "$TOP" && clang -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -Wall -Wextra -Werror \
          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
          -fno-omit-frame-pointer "${srcs[@]}" -o "$bin" "${libs[@]}") >"$TMP/build.log" 2>&1; then
      if grep -qi "fuzzer" "$TMP/build.log"; then
        skip "$name fuzzing" "this clang has no libFuzzer (libclang-rt-14-dev)"
      else
        fail "the $name fuzz target builds" "$(tail -n 3 "$TMP/build.log" | tr '\n' ' ')"
      fi
      return
    fi
  fi
  pass "the $name fuzz target builds"
  local secs=10; [ "${QKVM_LONG:-}" = 1 ] && secs=120
  local opts=(-max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$TMP/")
  local n; n=$(ls "$corpus" | wc -l)
  if (cd "$TMP" && ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
        "$bin" "${opts[@]}" -runs=0 "$corpus") >"$TMP/seeds.log" 2>&1; then
    pass "$name fuzz: the $n seed streams run clean"
  else
    fail "$name fuzz: seeds" "$(grep -m2 -E 'ERROR|SUMMARY' "$TMP/seeds.log" | tr '\n' ' ')"
  fi
  rm -rf "$TMP/work" && mkdir "$TMP/work" && cp "$corpus/"* "$TMP/work/"
  if (cd "$TMP" && ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 timeout $((secs + 120)) \
        "$bin" "${opts[@]}" -max_total_time=$secs -print_final_stats=1 work) >"$TMP/run.log" 2>&1; then
    local runs; runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/run.log")
    if [ "${runs:-0}" -gt 0 ]; then pass "$name fuzz: ${secs}s, $runs inputs, no crash"
    else fail "$name fuzz" "no input ran"; fi
  else
    local art; art=$(ls "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* "$TMP"/oom-* 2>/dev/null | head -n 1)
    [ -n "$art" ] && cp "$art" "$out/"
    fail "$name fuzz: ${secs}s" "$(grep -m2 -E 'ERROR|SUMMARY' "$TMP/run.log" | tr '\n' ' ') input kept in $B/tests/fuzz/${art##*/}"
  fi
}
