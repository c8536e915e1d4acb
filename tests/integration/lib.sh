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
# The value of key= in $TMP/out
outval() { sed -n "s/^$1=//p" "$TMP/out" | tr -d '\r' | head -n 1; }
