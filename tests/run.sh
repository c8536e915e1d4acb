#!/usr/bin/env bash
# Runs every test and ends with "N passed, N failed[, N skipped]".
# Unit tests (cmocka) and integration scripts both speak TAP; this counts their lines.
set -u
cd "$(dirname "$0")/.."
export B=${B:-build}
export QKVM_TOP=$PWD
log=$(mktemp -d)/tests.log
pass=0 fail=0 skip=0
count() {  # reads TAP on stdin, echoes it, tallies results
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case "$line" in
      "not ok"*) fail=$((fail+1)); echo "$line" >>"$log" ;;
      "ok "*"# SKIP"*|"ok "*"# skip"*) skip=$((skip+1)) ;;
      "ok "*) pass=$((pass+1)) ;;
    esac
  done
}
only=${1:-}
for t in "$B"/tests/unit/test_*; do
  [ -x "$t" ] || continue
  [ -n "$only" ] && [[ "$t" != *"$only"* ]] && continue
  echo "# unit: ${t##*/}"
  count < <(CMOCKA_MESSAGE_OUTPUT=TAP timeout 300 "$t" 2>&1; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 1 ] || echo "not ok - ${t##*/} exited with status $rc")
done
for t in tests/integration/*.sh; do
  [ -f "$t" ] || continue
  [ "${t##*/}" = lib.sh ] && continue
  [ -n "$only" ] && [[ "$t" != *"$only"* ]] && continue
  echo "# integration: ${t##*/}"
  count < <(timeout 900 bash "$t" 2>&1; rc=$?; [ $rc -eq 0 ] || echo "not ok - ${t##*/} exited with status $rc")
done
if [ $fail -gt 0 ]; then echo "# failures:"; sed 's/^/#   /' "$log"; fi
line="$pass passed, $fail failed"
[ $skip -gt 0 ] && line="$line, $skip skipped"
echo "$line"
[ $fail -eq 0 ]
