#!/usr/bin/env bash
# The monitor (QMP and HMP) driven as management tools and users drive QEMU's: the Linux guest
# under tcg paused and resumed mid-workload, reset, powered down by the ACPI button; -S, quit,
# -daemonize/-pidfile, tcp under -sandbox on, signals; bad input on one monitor while the VM and
# the others go on; the Ctrl-A mux of -nographic on a pseudo-terminal; block_resize seen by the
# guest and query-blockstats counting its I/O (qemu-img makes and checks the images); and every
# reply's shape, and info registers at the reset vector, beside QEMU 7.2's (qemu-system-x86_64).
. "$(dirname "$0")/lib.sh"

if ! "$TOP/guest/build.sh" "$TOP/$B/guest" >"$TMP/guest.log" 2>&1; then
  fail "default guest builds" "$(tail -n 3 "$TMP/guest.log")"
  exit 0
fi
G=$TOP/$B/guest
T=$TOP/tests/integration/monitor-test.py
if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "monitor tests" "this build has no tcg"
  exit 0
fi
for part in lifecycle mux disk linux; do
  mkdir -p "$TMP/$part"
  timeout -k 5 900 python3 "$T" "$QKVM" "$G" "$TMP/$part" "$part" || fail "monitor-test.py $part ran to its end" "status $?"
done
if command -v qemu-system-x86_64 >/dev/null; then
  mkdir -p "$TMP/compare"
  timeout -k 5 300 python3 "$T" "$QKVM" "$G" "$TMP/compare" compare qemu-system-x86_64 || fail "monitor-test.py compare ran to its end" "status $?"
else
  fail "QMP shapes beside QEMU 7.2" "qemu-system-x86_64 missing: scripts/deps.sh test installs it"
fi
