#!/usr/bin/env bash
# kvm-unit-tests (x86/unittests.cfg) with qkvm as its QEMU binary and QEMU's own TCG as the
# oracle, side by side, through the suite's run_tests.sh (QEMU=... ACCEL=tcg). The source is a
# tarball of one commit in ../shared/kvm-unit-tests/ (QKVM_KUT_DIR), unpacked, configured and
# built into $B/kvm-unit-tests once. A test that QEMU's TCG passes must pass on qkvm, except
# those in NEEDS below (a device or CPU feature qkvm lacks, with the reason). By default a fast
# subset runs (a few seconds each); QKVM_LONG=1 runs every entry (QEMU's results for the whole
# list are cached in $B/kvm-unit-tests/, it takes QEMU ~45 min here). The table of both is
# written to $B/kvm-unit-tests/results.txt (docs/firmware.md has a copy).
. "$(dirname "$0")/lib.sh"

# Building the suite alone takes minutes on a 2-core machine, which make check cannot afford
# within its 15 minutes; make check-long runs it (QKVM_KUT_QUICK=1: the quick subset only).
if [ -z "${QKVM_LONG:-}" ] && [ -z "${QKVM_KUT_QUICK:-}" ]; then
  skip "kvm-unit-tests on qkvm beside QEMU's TCG" "long: make check-long (or QKVM_KUT_QUICK=1)"
  exit 0
fi

src=${QKVM_KUT_DIR:-$TOP/../shared/kvm-unit-tests}
tarball=$(ls "$src"/*.tar.gz 2>/dev/null | head -n 1)
QEMU_BIN=${QEMU_BIN-$(command -v qemu-system-x86_64 || true)}   # QEMU_BIN= runs qkvm alone
if [ -z "$tarball" ]; then
  skip "kvm-unit-tests" "no tarball in $src"
  exit 0
fi
for tool in make gcc objcopy; do
  command -v $tool >/dev/null || { skip "kvm-unit-tests" "$tool is not installed (scripts/deps.sh test)"; exit 0; }
done

# Tests qkvm cannot pass for want of a device or a CPU feature, and why. Each is still run and
# reported; its result does not fail this script.
declare -A NEEDS=(
  [intel_iommu]="the q35 machine and an intel-iommu device: qkvm has neither"
  [svm_unsupported_instruction_intercept_test]="SVM (nested virtualization): not emulated"
)
# Emulator bugs these tests found, not fixed yet (docs/firmware.md): reported, not failed.
# (eventinj, syscall and realmode were here: fixed, see docs/tcg.md "Exceptions".)
declare -A EMU_BUGS=()
# Tests qkvm passes although QEMU's TCG does not (docs/firmware.md): they must keep passing.
# (pcid-*: QEMU 7.2's TCG has no INVPCID and lets CR4.PCIDE be set on a CPU without PCID)
declare -A QKVM_ONLY=([debug]=1 [idt_test]=1 [emulator]=1 [la57]=1 [pcid-enabled]=1 [pcid-disabled]=1
                      [pcid-asymmetric]=1)

# quick ones (seconds each on both; run_tests.sh itself costs about a minute here): the
# exception tests among them are the ones QEMU's TCG passes (eventinj, syscall, realmode) and
# the ones only qkvm passes (debug, idt_test, emulator: QEMU 7.2 gives #GP for a non-canonical
# stack access and takes a jump to a non-canonical address; the three pcid entries)
fast=(smptest smptest3 vmexit_cpuid vmexit_mov_to_cr8 setjmp tsc eventinj syscall realmode debug idt_test
      emulator vmexit_tscdeadline vmexit_tscdeadline_immed pcid-enabled pcid-disabled pcid-asymmetric)

dir=$TOP/$B/kvm-unit-tests
stamp=$dir/.built-$(basename "$tarball")
if [ ! -f "$stamp" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  if ! (tar xzf "$tarball" -C "$dir" && cd "$dir" && ./configure --arch=x86_64 && make -j2) >"$TMP/build.log" 2>&1; then
    fail "kvm-unit-tests builds" "$(tail -n 3 "$TMP/build.log" | tr '\n' ' ')"
    exit 0
  fi
  touch "$stamp"
fi
pass "kvm-unit-tests builds ($(ls "$dir"/x86/*.flat | wc -l) test kernels)"

# Tests that need longer than unittests.cfg's 90 s under tcg, in the whole-list run: access
# checks 19 million page-table cases (about 93 s of CPU on qkvm, 11 min at a load average of 20)
declare -A SLOW=([access]=1800s)

# run_suite VMM OUT NAMES...: one result line per test, "PASS|FAIL|SKIP name (detail)"
run_suite() {
  local vmm=$1 out=$2 n quick=() slow=(); shift 2
  for n in "$@"; do
    if [ -n "${SLOW[$n]:-}" ] && [ -z "$timeout" ]; then slow+=("$n"); else quick+=("$n"); fi
  done
  : >"$out"
  for n in "${quick[*]}" "${slow[@]}"; do
    [ -n "$n" ] || continue
    # shellcheck disable=SC2086
    (cd "$dir" && QEMU=$vmm ACCEL=tcg TIMEOUT=${SLOW[$n]:-$timeout} ./run_tests.sh -j 1 $n </dev/null 2>&1) |
      sed 's/\x1b\[[0-9;]*m//g' | grep -E '^(PASS|FAIL|SKIP) ' >>"$out"
  done
}

if [ "${QKVM_LONG:-}" = 1 ]; then
  names=($(cd "$dir" && ./run_tests.sh -l | sed 's/\x1b\[[0-9;]*m//g'))
  [ ${#names[@]} -gt 0 ] || { fail "kvm-unit-tests: the test list" "run_tests.sh -l listed nothing"; exit 0; }
  which=all timeout=
else
  names=("${fast[@]}")
  which=fast timeout=30s   # each of these ends in seconds on QEMU; a hang must not cost 90 s
fi
if [ -n "$QEMU_BIN" ]; then
  # QEMU's results depend only on its version and the suite: kept between runs
  cache=$dir/qemu-results-$which-$( ("$QEMU_BIN" --version | head -n 1; echo "${names[*]}") | md5sum | cut -c1-12).txt
  if [ ! -s "$cache" ]; then
    run_suite "$QEMU_BIN" "$TMP/qemu" "${names[@]}"
    cp "$TMP/qemu" "$cache"
  fi
  cp "$cache" "$TMP/qemu"
else
  : >"$TMP/qemu"
fi
run_suite "$QKVM" "$TMP/qkvm" "${names[@]}"

res() { awk -v n="$2" '$2 == n { print $1; exit }' "$1"; }
{
  printf '%-45s %-6s %-6s %s\n' test QEMU qkvm note
  for n in "${names[@]}"; do
    q=$(res "$TMP/qemu" "$n"); k=$(res "$TMP/qkvm" "$n")
    note=${NEEDS[$n]:-${EMU_BUGS[$n]:+emulator bug: ${EMU_BUGS[$n]}}}
    [ "$k" = PASS ] && [ "$q" != PASS ] && [ -n "$q" ] && note="passes on qkvm only"
    printf '%-45s %-6s %-6s %s\n' "$n" "${q:--}" "${k:--}" "$note"
  done
} >"$dir/results-$which.txt"
sed 's/^/# /' "$dir/results-$which.txt"
qp=$(grep -c '^PASS' "$TMP/qemu"); kp=$(grep -c '^PASS' "$TMP/qkvm")
echo "# $which list: QEMU's TCG passes $qp of ${#names[@]}, qkvm passes $kp"
[ -s "$TMP/qkvm" ] || { fail "kvm-unit-tests on qkvm" "run_tests.sh reported nothing"; exit 0; }
for n in "${names[@]}"; do
  q=$(res "$TMP/qemu" "$n"); k=$(res "$TMP/qkvm" "$n")
  if [ -z "$QEMU_BIN" ]; then
    [ "$k" = PASS ] && pass "kvm-unit-tests $n passes on qkvm" || skip "kvm-unit-tests $n" "qkvm: ${k:-no result}; no QEMU to compare with"
  elif [ -n "${QKVM_ONLY[$n]:-}" ]; then
    [ "$k" = PASS ] && pass "kvm-unit-tests $n passes on qkvm (QEMU's TCG: ${q:-none})" ||
      fail "kvm-unit-tests $n" "qkvm passed it before, now: $(grep -m1 " $n" "$TMP/qkvm")"
  elif [ "$q" != PASS ]; then
    skip "kvm-unit-tests $n" "QEMU's TCG does not pass it either (QEMU ${q:-none}, qkvm ${k:-none})"
  elif [ "$k" = PASS ]; then
    pass "kvm-unit-tests $n passes on qkvm as on QEMU"
  elif [ -n "${NEEDS[$n]:-}" ]; then
    skip "kvm-unit-tests $n" "qkvm lacks ${NEEDS[$n]}"
  elif [ -n "${EMU_BUGS[$n]:-}" ]; then
    skip "kvm-unit-tests $n" "known emulator bug: ${EMU_BUGS[$n]} (qkvm ${k:-none})"
  else
    fail "kvm-unit-tests $n" "passes on QEMU's TCG, qkvm: $(grep -m1 " $n" "$TMP/qkvm")"
  fi
done

# The hardware task switches are tests of the i386 build (group "tasks"): built apart, only
# those two kernels, and run with the runner's command line (isa-debug-exit: status 1 is a pass).
d32=$TOP/$B/kvm-unit-tests-i386
stamp32=$d32/.built-$(basename "$tarball")
if [ ! -f "$stamp32" ]; then
  rm -rf "$d32" && mkdir -p "$d32"
  if ! (tar xzf "$tarball" -C "$d32" && cd "$d32" && ./configure --arch=i386 &&
        make -j2 x86/taskswitch.flat x86/taskswitch2.flat) >"$TMP/build32.log" 2>&1; then
    skip "kvm-unit-tests taskswitch, taskswitch2" "the i386 build failed: $(tail -n 1 "$TMP/build32.log")"
    exit 0
  fi
  touch "$stamp32"
fi
for n in taskswitch taskswitch2; do
  args=(--no-reboot -nodefaults -device pc-testdev -device isa-debug-exit,iobase=0xf4,iosize=0x4
        -display none -serial stdio -machine accel=tcg -kernel "$d32/x86/$n.flat" -smp 1)
  timeout 60 "$QKVM" "${args[@]}" >"$TMP/$n.out" 2>&1 </dev/null; k=$?
  q=-
  [ -n "$QEMU_BIN" ] && { timeout 60 "$QEMU_BIN" "${args[@]}" >/dev/null 2>&1 </dev/null; q=$?; }
  echo "# $n (i386): exit status QEMU $q, qkvm $k (1 is a pass)"
  [ $k = 1 ] && pass "kvm-unit-tests $n (i386) passes on qkvm (QEMU's TCG: status $q)" ||
    fail "kvm-unit-tests $n (i386)" "status $k: $(grep -m1 FAIL "$TMP/$n.out")"
done
exit 0
