#!/usr/bin/env bash
# savevm/loadvm side by side: qkvm and QEMU (tcg) on the default Debian guest (512 MiB, a shell
# and a counting loop), a qcow2 virtio disk; each VMM boots once, then savevm/loadvm N times
# through QMP's human-monitor-command. Prints a markdown table (ms, median) and the VM SIZE the
# real qemu-img reports. Usage: bench/savevm/run.sh [N]   (B=build by default)
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
B=${B:-build}
N=${1:-5}
G=$TOP/$B/guest
QMPPY=$TOP/tests/integration/qmp.py
TMP=$(mktemp -d /tmp/savevm-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
[ -f "$G/vmlinuz" ] || { echo "no guest: guest/build.sh $G" >&2; exit 1; }

hmp_ms() {  # hmp_ms SOCK LINE: the round trip in ms; an error reply goes to stderr
  python3 - "$QMPPY" "$1" "$2" <<'PY'
import sys, time
sys.path.insert(0, sys.argv[1].rsplit("/", 1)[0])
from qmp import QMP
q = QMP(sys.argv[2], timeout=300)
t = time.time()
r = q.cmd("human-monitor-command", {"command-line": sys.argv[3]})
ms = (time.time() - t) * 1000
if r.get("return", "x").strip():
    print("%s: %s" % (sys.argv[3], r), file=sys.stderr)
print("%.0f" % ms)
PY
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

run() {  # run NAME VMM
  local name=$1 vmm=$2 sock=$TMP/$1.sock img=$TMP/$1.qcow2 fifo=$TMP/$1.in out=$TMP/$1.out
  qemu-img create -q -f qcow2 "$img" 64M
  mkfifo "$fifo"
  "$vmm" -accel tcg -m 512M -smp 1 -kernel "$G/vmlinuz" -initrd "$G/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet" -display none -serial stdio \
    -drive "file=$img,format=qcow2,if=none,id=d0" -device virtio-blk-pci,drive=d0 \
    -qmp "unix:$sock,server=on,wait=off" <"$fifo" >"$out" 2>"$out.err" &
  local pid=$! i
  exec 7>"$fifo"
  for i in $(seq 1 300); do grep -q 'qkvm-guest: ready' "$out" && break; sleep 1; done
  printf 'mkdir -p /tmp; (i=0; while :; do i=$((i+1)); echo $i >/tmp/cnt.t; mv /tmp/cnt.t /tmp/cnt; sleep 0.1; done) >/dev/null 2>&1 &\n' >&7
  sleep 2
  local s=() l=()
  for i in $(seq 1 "$N"); do
    s+=("$(hmp_ms "$sock" "savevm S$i")")
    sleep 1
    l+=("$(hmp_ms "$sock" "loadvm S$i")")
    sleep 1
  done
  local size
  size=$(qemu-img snapshot -U -l "$img" | awk '$2 == "S1" { print $3, $4 }')
  echo "| $name | $(printf '%s\n' "${s[@]}" | median) | $(printf '%s\n' "${l[@]}" | median) | $size |"
  python3 "$QMPPY" "$sock" quit >/dev/null 2>&1
  exec 7>&-
  wait $pid
}

echo "| VMM | savevm ms | loadvm ms | VM SIZE |"
echo "|---|---|---|---|"
run qkvm "$TOP/$B/qkvm"
command -v qemu-system-x86_64 >/dev/null && run "QEMU $(qemu-system-x86_64 --version | head -n 1 | awk '{ print $4 }')" qemu-system-x86_64
