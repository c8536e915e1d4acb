#!/usr/bin/env bash
# A writer killed with SIGKILL: qemu-img check then finds no corruption (leaks allowed), and
# every write that was flushed before the kill reads back.
#  1. at random moments: a loop of qkvm-io writers (write, write -z, discard, flush), killed
#     after a random delay, round after round on the same image;
#  2. at chosen writes: strace kills the writer just before its Nth pwrite, for a sample of N
#     in every step of crashsim.py (all of them with QKVM_LONG=1).
. "$(dirname "$0")/lib.sh"
QI=$TOP/$B/qkvm-img
QIO=$TOP/$B/qkvm-io
SIM=$TOP/tests/integration/crashsim.py
command -v qemu-img >/dev/null || { skip img-crash "qemu-img not installed"; exit 0; }
command -v python3 >/dev/null || { skip img-crash "python3 not installed"; exit 0; }
cd "$TMP"
# On the sanitizer build: the writers run under strace (LeakSanitizer cannot work under ptrace)
# and stdbuf (a preloaded library, which ASan refuses by default). Memory errors still abort.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:verify_asan_link_order=0
set -m   # each writer loop in its own process group, killed whole (no writer outlives it)
rounds=4; [ -n "${QKVM_LONG:-}" ] && rounds=40
LEN=70000
for opts in "cluster_size=64k" "cluster_size=4k,refcount_bits=1" "lazy_refcounts=on" \
            "extended_l2=on"; do
  "$QI" create -q -f qcow2 -o "$opts" c.qcow2 64M
  : >start.log; : >done.log
  for r in $(seq 1 $rounds); do
    (
      i=$(( (r - 1) * 100000 ))
      while :; do
        i=$((i + 1))
        off=$(( (i % 400) * 160 * 1024 + 1000 ))
        echo "$i $off" >>start.log
        "$QIO" -c "write -P $((i % 250 + 1)) $off $LEN" -c "write -z $((off + 80000)) 4096" \
               -c "discard $((off + 90000)) 65536" -c flush c.qcow2 >/dev/null 2>&1 || exit 0
        echo "$i $off" >>done.log
      done
    ) &
    w=$!
    sleep 0.$((RANDOM % 9 + 1))
    kill -KILL -- -$w 2>/dev/null; wait $w 2>/dev/null
  done
  # a dirty image (lazy refcounts) is repaired by the next read-write open, as QEMU does
  if od -An -tx1 -j79 -N1 c.qcow2 | grep -q '0[13579bdf]$'; then
    "$QIO" -c flush c.qcow2 >/dev/null 2>&1
  fi
  qemu-img check c.qcow2 >check.txt 2>&1; rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 3 ]; then pass "random kills [$opts]: qemu-img check: no corruption"
  else fail "random kills [$opts]: qemu-img check" "rc=$rc $(grep -m3 ERROR check.txt | tr '\n' ' ')"; fi
  qemu-img convert -O raw c.qcow2 c.raw
  res=$(python3 "$SIM" verify-log c.raw start.log done.log $LEN)
  n=${res%% *}; why=${res#* }
  if [ -z "$why" ] && [ "$n" -gt 0 ]; then pass "random kills [$opts]: $n flushed writes read back"
  else fail "random kills [$opts]: flushed writes read back" "$n checked; $why"; fi
done
set +m
if command -v strace >/dev/null; then
  mkdir sim
  if [ -n "${QKVM_LONG:-}" ]; then python3 "$SIM" "$TOP/$B" sim --all
  else python3 "$SIM" "$TOP/$B" sim --per-step 1; fi
else
  skip "crash at chosen writes" "strace not installed"
fi
exit 0
