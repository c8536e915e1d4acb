#!/usr/bin/env bash
# Runs every test and ends with "N passed, N failed[, N skipped]".
# Unit tests (cmocka) and integration scripts both speak TAP; this counts their lines and
# refuses to let a test that died quietly pass (tests/integration/runner.sh checks this file):
#  - a unit test runs only when its source tests/unit/test_X.c exists (no stale binaries), and
#    a source without a binary is a failure;
#  - a unit binary must print a TAP plan ("1..N") and exactly that many results; a missing or
#    short plan is a failure (a sanitizer abort after the first test leaves one short);
#  - a nonzero exit is a failure unless the binary reported a "not ok" of its own;
#  - an integration script that exits nonzero or reports no result at all is a failure.
# QKVM_FAST=1 runs only the integration scripts listed in tests/integration/fast.list (each well
# under a minute, no Linux boot): the sanitizer run of .ci/run uses it.
set -u
cd "$(dirname "$0")/.."
export B=${B:-build}
export QKVM_TOP=$PWD
log=$(mktemp -d)/tests.log
out=${log%/*}/out err=${log%/*}/err
trap 'rm -rf "${log%/*}"' EXIT
pass=0 fail=0 skip=0
nres=0 nnot=0 plan=0 plans=0
failure() {  # failure TEST REASON: one failure line of the runner's own
  echo "not ok - $1: $2"
  fail=$((fail+1)); echo "not ok - $1: $2" >>"$log"
}
count() {  # reads TAP on stdin, echoes it, tallies results and plans
  local line n
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case "$line" in
      "not ok"*) fail=$((fail+1)); nres=$((nres+1)); nnot=$((nnot+1)); echo "$line" >>"$log" ;;
      "ok "*"# SKIP"*|"ok "*"# skip"*) skip=$((skip+1)); nres=$((nres+1)) ;;
      "ok "*) pass=$((pass+1)); nres=$((nres+1)) ;;
      1..[0-9]*) n=${line#1..}; n=${n%%[!0-9]*}; plans=$((plans+1)); plan=$((plan+10#$n)) ;;
    esac
  done
}
only=${1:-}
for src in tests/unit/test_*.c; do
  [ -f "$src" ] || continue
  name=${src##*/}; name=${name%.c}
  [ -n "$only" ] && [[ "$name" != *"$only"* ]] && continue
  t=$B/tests/unit/$name
  echo "# unit: $name"
  if [ ! -x "$t" ]; then failure "$name" "no binary $t (make tests)"; continue; fi
  nres=0 nnot=0 plan=0 plans=0
  # stdout alone is TAP: stderr (cmocka's messages, sanitizer reports) could land mid-line
  CMOCKA_MESSAGE_OUTPUT=TAP timeout 300 "$t" >"$out" 2>"$err"
  rc=$?
  count <"$out"
  sed 's/^/# /' "$err"
  why=
  if [ $plans -eq 0 ]; then why="printed no TAP plan"
  elif [ $nres -ne $plan ]; then why="$nres results for a plan of $plan"
  fi
  # cmocka exits with its count of failures, already reported; any other status is news
  if [ $rc -ne 0 ] && { [ $nnot -eq 0 ] || [ $rc -ge 124 ]; }; then
    why="${why:+$why, }exited with status $rc"
  fi
  [ -z "$why" ] || failure "$name" "$why"
done
fast=" $(cat tests/integration/fast.list 2>/dev/null | sed 's/#.*//' | tr '\n' ' ') "
if [ "${QKVM_FAST:-}" = 1 ] && [ -z "$only" ]; then  # a list that names nothing runs nothing
  [ -n "${fast// /}" ] || failure fast.list "QKVM_FAST=1 and no tests/integration/fast.list"
  for f in $fast; do [ -f "tests/integration/$f" ] || failure fast.list "no script $f"; done
fi
for t in tests/integration/*.sh; do
  [ -f "$t" ] || continue
  [ "${t##*/}" = lib.sh ] && continue
  [ -n "$only" ] && [[ "$t" != *"$only"* ]] && continue
  [ "${QKVM_FAST:-}" = 1 ] && [[ "$fast" != *" ${t##*/} "* ]] && continue
  echo "# integration: ${t##*/}"
  nres=0
  count < <(timeout 900 bash "$t" 2>&1; rc=$?; [ $rc -eq 0 ] || echo "not ok - ${t##*/} exited with status $rc")
  [ $nres -gt 0 ] || failure "${t##*/}" "reported no result"
done
if [ $fail -gt 0 ]; then echo "# failures:"; sed 's/^/#   /' "$log"; fi
line="$pass passed, $fail failed"
[ $skip -gt 0 ] && line="$line, $skip skipped"
echo "$line"
[ $fail -eq 0 ]
