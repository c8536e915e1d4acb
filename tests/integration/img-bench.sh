#!/usr/bin/env bash
# qkvm-img bench: -d N really keeps N requests in flight (strace sees syscalls overlap), what
# the concurrent writes leave is an image qemu-img check accepts holding exactly the pattern
# written (qemu-io read -P, qemu-img compare), and the options it cannot honour are refused.
. "$(dirname "$0")/lib.sh"
QI=$TOP/$B/qkvm-img
command -v qemu-img >/dev/null || { skip img-bench "qemu-img not installed"; exit 0; }
cd "$TMP"
M16=$((16 << 20))

# pattern_is NAME FMT FILE PAT LEN: qemu-io reads PAT over [0, LEN)
pattern_is() {
  local out; out=$(qemu-io -r -f "$2" -c "read -P $4 0 $5" "$3" 2>&1)
  if echo "$out" | grep -q "^read $5/$5" && ! echo "$out" | grep -q "verification failed"; then
    pass "$1"
  else fail "$1" "$(echo "$out" | head -2)"; fi
}

for fmt in qcow2 raw; do
  img=d.$fmt
  "$QI" create -q -f $fmt $img 16M
  # 8192 x 4k: the first pass allocates (qcow2), the second overwrites in place, 16 at a time
  check "$fmt: bench -d 16 -w runs" "$QI" bench -q -f $fmt -d 16 -w -c 8192 --pattern=0x5a $img
  [ $fmt = qcow2 ] && check "$fmt: qemu-img check accepts the image" qemu-img check -q $img
  pattern_is "$fmt: every byte holds the pattern" $fmt $img 0x5a $M16
  qemu-img create -q -f raw ref 16M
  qemu-io -f raw -c "write -P 0x5a 0 16M" ref >/dev/null
  check "$fmt: qemu-img compare with a file qemu-io wrote" qemu-img compare -q -f $fmt -F raw $img ref
  # O_DIRECT in place, flushes every 64 requests without draining, then with
  check "$fmt: bench -t none --flush-interval --no-drain" \
    "$QI" bench -q -f $fmt -t none -d 16 -w -c 4096 --flush-interval=64 --no-drain --pattern=0xa5 $img
  check "$fmt: bench -t writethrough --flush-interval (drained)" \
    "$QI" bench -q -f $fmt -t writethrough -d 16 -w -c 4096 -o 8M --flush-interval=64 \
    --pattern=0xa5 $img
  [ $fmt = qcow2 ] && check "$fmt: qemu-img check after the flushed runs" qemu-img check -q $img
  pattern_is "$fmt: the second pattern everywhere" $fmt $img 0xa5 $M16
  # unaligned requests under O_DIRECT (read-modify-write of shared blocks, 16 at a time)
  n=$((M16 / 3000))
  check "$fmt: bench -t none -s 3000 unaligned" \
    "$QI" bench -q -f $fmt -t none -d 16 -w -c $n -s 3000 --pattern=0x33 $img
  pattern_is "$fmt: unaligned writes left no torn block" $fmt $img 0x33 $((n * 3000))
  t=$((M16 - n * 3000))
  out=$(qemu-io -r -f $fmt -c "read -P 0xa5 $((n * 3000)) $t" $img 2>&1)
  if echo "$out" | grep -q "^read $t/$t" && ! echo "$out" | grep -q "verification failed"; then
    pass "$fmt: the tail past the unaligned writes is untouched"
  else fail "$fmt: the tail past the unaligned writes is untouched" "$out"; fi
done

# depth is real: with -d 16 strace sees one thread's pread64 interrupted by another's (two in
# flight at once); with -d 1, never
if strace -o /dev/null true 2>/dev/null; then
  for fmt in qcow2 raw; do
    strace -f -e trace=pread64,pwrite64 -o s16 "$QI" bench -q -f $fmt -d 16 -c 2000 d.$fmt
    strace -f -e trace=pread64,pwrite64 -o s1 "$QI" bench -q -f $fmt -d 1 -c 2000 d.$fmt
    a=$(grep -c "pread64.*unfinished" s16); b=$(grep -c "unfinished" s1)
    if [ "$a" -gt 0 ] && [ "$b" -eq 0 ]; then pass "$fmt: -d 16 overlaps requests, -d 1 not"
    else fail "$fmt: -d 16 overlaps requests, -d 1 not" "overlaps at 16: $a, at 1: $b"; fi
    strace -f -e trace=pwrite64 -o s16 "$QI" bench -q -f $fmt -d 16 -w -c 2000 d.$fmt
    a=$(grep -c "pwrite64.*unfinished" s16)
    if [ "$a" -gt 0 ]; then pass "$fmt: -d 16 -w overlaps writes in place"
    else fail "$fmt: -d 16 -w overlaps writes in place" "no overlap"; fi
  done
else
  skip "bench depth" "strace cannot trace here"
fi

# what cannot be honoured is refused with one line, not ignored
refused() {  # refused NAME PATTERN ARGS...
  local name=$1 pat=$2; shift 2
  local out; out=$("$QI" bench "$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] &&
     echo "$out" | grep -q -- "$pat"; then pass "$name"
  else fail "$name" "rc=$rc: $out"; fi
}
refused "-i native refused" "aio=native is not supported" -i native -c 1 d.raw
refused "-i io_uring refused" "aio=io_uring is not supported" -i io_uring -c 1 d.raw
refused "-n (aio=native in qemu-img) refused" "aio=native" -n -t none -c 1 d.raw
refused "-i bogus refused" "Invalid aio option: bogus" -i bogus -c 1 d.raw
refused "--flush-interval on reads refused" "only available in write tests" \
  --flush-interval=64 -c 1 d.raw
refused "--flush-interval below depth refused" "can't be smaller than depth" \
  -w -d 16 --flush-interval=4 -c 1 d.raw
refused "-d 0 refused" "Invalid argument" -d 0 -c 1 d.raw
check "-i threads accepted" "$QI" bench -q -i threads -c 16 d.raw
exit 0
