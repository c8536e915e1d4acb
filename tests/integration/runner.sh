#!/usr/bin/env bash
# tests/run.sh cannot hide a failure: it is copied into a scratch tree with fake unit binaries and
# integration scripts that die in each way a real test can (a crash after one test, a sanitizer's
# exit 1 with no TAP line, a short plan, "ok" with no plan, a script that says nothing), and the
# summary line it ends with must count each as a failure. A stale binary without a source must
# not run at all, and QKVM_FAST=1 runs only the scripts of fast.list.
. "$(dirname "$0")/lib.sh"

tree=$TMP/tree
mkdir -p "$tree/tests/unit" "$tree/tests/integration" "$tree/build/tests/unit"
cp "$TOP/tests/run.sh" "$tree/tests/"
unit() {  # unit NAME BODY: a fake unit test binary, with its source unless NAME is stale
  printf '#!/bin/sh\n%s\n' "$2" >"$tree/build/tests/unit/test_$1"
  chmod +x "$tree/build/tests/unit/test_$1"
  [ "$1" = stale ] || : >"$tree/tests/unit/test_$1.c"
}
script() { printf '#!/bin/sh\n%s\n' "$2" >"$tree/tests/integration/$1.sh"; }
unit crash   'echo 1..3; echo "ok 1 - a"; kill -SEGV $$'
unit ubsan   'echo 1..3; echo "ok 1 - a"; echo "runtime error: negation of -9223372036854775808" >&2; exit 1'
unit silent  'echo "runtime error: load of misaligned address" >&2; exit 1'
unit short   'echo 1..3; echo "ok 1 - a"; echo "ok 2 - b"'
unit noplan  'echo "ok 1 - a"'
unit leak    'echo 1..1; echo "ok 1 - a"; echo "ERROR: LeakSanitizer: detected memory leaks" >&2; exit 23'
unit stale   'echo 1..1; echo "ok 1 - a stale binary ran"'
unit good    'echo "1..2 # two"; echo "ok 1 - a"; echo "ok 2 - b # SKIP no reason"'
unit fails   'echo 1..2; echo "ok 1 - a"; echo "not ok 2 - b"; exit 1'
: >"$tree/tests/unit/test_nobinary.c"
script quiet   'echo "nothing to say"'
script dies    'echo "ok - first"; exit 3'
script fastone 'echo "ok - fast"'
script slowone 'echo "ok - slow"'
echo "fastone.sh  # the only fast one" >"$tree/tests/integration/fast.list"

# runs NAME EXPECTED-SUMMARY [ENV...]: the last line of the runner filtered to NAME
runs() {
  local name=$1 want=$2; shift 2
  (cd "$tree" && env -u QKVM_FAST B=build "$@" tests/run.sh "$name") >"$TMP/run.out" 2>&1
  local rc=$? last
  last=$(tail -n 1 "$TMP/run.out")
  local wrc=0; [[ "$want" = *" 0 failed"* ]] || wrc=1
  expect_eq "runner: $name${*:+ ($*)}" "$want rc=$wrc" "$last rc=$rc"
}
runs crash  "1 passed, 1 failed"
runs ubsan  "1 passed, 1 failed"
runs silent "0 passed, 1 failed"
runs short  "2 passed, 1 failed"
runs noplan "1 passed, 1 failed"
runs leak   "1 passed, 1 failed"
runs stale  "0 passed, 0 failed"
runs good   "1 passed, 0 failed, 1 skipped"
runs fails  "1 passed, 1 failed"
runs nobinary "0 passed, 1 failed"
runs quiet  "0 passed, 1 failed"
runs dies   "1 passed, 1 failed"
runs one    "2 passed, 0 failed"
runs one    "1 passed, 0 failed" QKVM_FAST=1
echo "gone.sh" >>"$tree/tests/integration/fast.list"
(cd "$tree" && B=build QKVM_FAST=1 tests/run.sh) >"$TMP/fast.out" 2>&1
check "runner: QKVM_FAST=1 with a fast.list naming a missing script fails" \
  grep -q "^#   not ok - fast.list: no script gone.sh" "$TMP/fast.out"

# the failure lines name the binary and the reason
(cd "$tree" && env -u QKVM_FAST B=build tests/run.sh) >"$TMP/all.out" 2>&1
for want in "test_crash: 1 results for a plan of 3, exited with status 139" \
            "test_ubsan: 1 results for a plan of 3, exited with status 1" \
            "test_silent: printed no TAP plan, exited with status 1" \
            "test_short: 2 results for a plan of 3" "test_noplan: printed no TAP plan" \
            "test_leak: exited with status 23" "test_nobinary: no binary" \
            "quiet.sh: reported no result" "dies.sh exited with status 3"; do
  check "runner: reports '$want'" grep -q "^#   not ok - $want" "$TMP/all.out"
done
check "runner: a stale binary does not run" bash -c "! grep -q stale '$TMP/all.out'"
check "runner: sanitizer messages are kept, as comments" \
  grep -q "^# runtime error: negation" "$TMP/all.out"
expect_eq "runner: the whole scratch tree" "11 passed, 10 failed, 1 skipped" "$(tail -n 1 "$TMP/all.out")"
