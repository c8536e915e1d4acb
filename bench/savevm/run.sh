#!/usr/bin/env bash
# savevm/loadvm side by side: qkvm and QEMU (tcg) on the default Debian guest (512 MiB, a shell
# and a counting loop), a qcow2 virtio disk, the same machine (-M pc -nodefaults); each VMM boots
# once, then savevm/loadvm N times through QMP's human-monitor-command, the two taking turns (the
# other VM paused meanwhile), so both see the same load. Prints a markdown table of medians: the
# round trip (wall ms) and the CPU time the VMM process spent over it (utime + stime, 10 ms
# ticks: on a shared machine the steadier figure), the VM SIZE the real qemu-img reports, and the
# load average. Usage: bench/savevm/run.sh [N]   (B=build, QKVM=$B/qkvm)
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
B=${B:-build}
N=${1:-5}
G=$TOP/$B/guest
QKVM=${QKVM:-$TOP/$B/qkvm}
QMPPY=$TOP/tests/integration/qmp.py
TMP=$(mktemp -d /tmp/savevm-bench.XXXXXX)
PID_qkvm= PID_qemu=
trap 'kill $PID_qkvm $PID_qemu 2>/dev/null; rm -rf "$TMP"' EXIT
[ -f "$G/vmlinuz" ] || { echo "no guest: guest/build.sh $G" >&2; exit 1; }

hmp_ms() {  # hmp_ms SOCK PID LINE: "wall_ms cpu_ms" of the round trip; an error reply goes to stderr
  python3 - "$QMPPY" "$1" "$2" "$3" <<'PY'
import os, sys, time
sys.path.insert(0, sys.argv[1].rsplit("/", 1)[0])
from qmp import QMP
def cpu():
    f = open("/proc/%s/stat" % sys.argv[3]).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / os.sysconf("SC_CLK_TCK")
q = QMP(sys.argv[2], timeout=300)
c, t = cpu(), time.time()
r = q.cmd("human-monitor-command", {"command-line": sys.argv[4]})
ms, cms = (time.time() - t) * 1000, cpu() - c
if r.get("return", "x").strip():
    print("%s: %s" % (sys.argv[4], r), file=sys.stderr)
print("%.0f %.0f" % (ms, cms))
PY
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
qmp() { python3 "$QMPPY" "$TMP/$1.sock" "$2" >/dev/null 2>&1; }

boot() {  # boot NAME VMM: booted, the counter started; its pid in PID_NAME
  local name=$1 vmm=$2 img=$TMP/$1.qcow2 fifo=$TMP/$1.in out=$TMP/$1.out i
  qemu-img create -q -f qcow2 "$img" 64M
  mkfifo "$fifo"
  "$vmm" -M pc -nodefaults -accel tcg -m 512M -smp 1 -kernel "$G/vmlinuz" -initrd "$G/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet" -display none -serial stdio \
    -drive "file=$img,format=qcow2,if=none,id=d0" -device virtio-blk-pci,drive=d0 \
    -qmp "unix:$TMP/$name.sock,server=on,wait=off" <"$fifo" >"$out" 2>"$out.err" &
  eval "PID_$name=$!"
  eval "exec {FD_$name}>\"$fifo\""
  for i in $(seq 1 300); do grep -q 'qkvm-guest: ready' "$out" && break; sleep 1; done
  grep -q 'qkvm-guest: ready' "$out" || { echo "$name: the guest did not boot" >&2; exit 1; }
  local fd; eval "fd=\$FD_$name"
  printf 'mkdir -p /tmp; (i=0; while :; do i=$((i+1)); echo $i >/tmp/cnt.t; mv /tmp/cnt.t /tmp/cnt; sleep 0.1; done) >/dev/null 2>&1 &\n' >&"$fd"
  sleep 2
}
turn() {  # turn NAME OTHER I: savevm SI and loadvm SI on NAME, OTHER paused; appends to $TMP/NAME.{save,load}
  local pid; eval "pid=\$PID_$1"
  qmp "$2" stop
  hmp_ms "$TMP/$1.sock" "$pid" "savevm S$3" >>"$TMP/$1.save"
  sleep 1
  hmp_ms "$TMP/$1.sock" "$pid" "loadvm S$3" >>"$TMP/$1.load"
  sleep 1
  qmp "$2" cont
}
col() { awk -v c="$2" '{ print $c }' "$1" | median; }

have_qemu=0; command -v qemu-system-x86_64 >/dev/null && have_qemu=1
L0=$(cut -d' ' -f1-3 /proc/loadavg)
boot qkvm "$QKVM"
[ $have_qemu = 1 ] && boot qemu qemu-system-x86_64
: >"$TMP/qkvm.save"; : >"$TMP/qkvm.load"; : >"$TMP/qemu.save"; : >"$TMP/qemu.load"
for i in $(seq 1 "$N"); do
  turn qkvm qemu "$i"
  [ $have_qemu = 1 ] && turn qemu qkvm "$i"
done
echo "| VMM | savevm ms | savevm CPU ms | loadvm ms | loadvm CPU ms | VM SIZE |"
echo "|---|---|---|---|---|---|"
for v in qkvm qemu; do
  [ $v = qemu ] && [ $have_qemu = 0 ] && continue
  name=$v; [ $v = qemu ] && name="QEMU $(qemu-system-x86_64 --version | head -n 1 | awk '{ print $4 }')"
  size=$(qemu-img snapshot -U -l "$TMP/$v.qcow2" | awk '$2 == "S1" { print $3, $4 }')
  echo "| $name | $(col "$TMP/$v.save" 1) | $(col "$TMP/$v.save" 2) | $(col "$TMP/$v.load" 1) | $(col "$TMP/$v.load" 2) | $size |"
  qmp $v quit
done
echo "# runs (wall ms, CPU ms): qkvm savevm $(tr '\n' ';' <"$TMP/qkvm.save") loadvm $(tr '\n' ';' <"$TMP/qkvm.load")"
[ $have_qemu = 1 ] && echo "# QEMU savevm $(tr '\n' ';' <"$TMP/qemu.save") loadvm $(tr '\n' ';' <"$TMP/qemu.load")"
echo "# load average: at start $L0, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
wait
