#!/usr/bin/env bash
# Live migration side by side: qkvm -> qkvm and QEMU -> QEMU (both tcg) over tcp on loopback, the
# same Debian guest (build/guest: kernel and initramfs), -m 512M -smp 1, no disk, on both ends;
# the guest keeps dirtying memory (a WSET_MB MiB file in its tmpfs copied over and over, and a
# counter). Each VMM boots once; each guest then migrates N times down a chain of destinations
# (each destination is the next source), all with the same downtime-limit and max-bandwidth; the
# two chains take turns (qkvm's migration I, then QEMU's), the other VM paused meanwhile.
# Prints the medians of total time, downtime (query-migrate, the source's view: from the stop to
# the last byte) and bytes sent, and the ratios qkvm/QEMU, with the 1-minute load average at each
# migration's start; every destination is checked alive (it answers on its console and its
# counter moved on). Usage: bench/migrate/run.sh [N]
# (B=build, QKVM=$B/qkvm; WSET_MB=16, DOWNTIME_MS=300, BANDWIDTH=1073741824 bytes/s by default).
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
B=${B:-build}
N=${1:-3}
WSET_MB=${WSET_MB:-16}
DOWNTIME_MS=${DOWNTIME_MS:-300}
BANDWIDTH=${BANDWIDTH:-1073741824}
G=$TOP/$B/guest
QKVM=${QKVM:-$TOP/$B/qkvm}
QMPPY=$TOP/tests/integration/qmp.py
TMP=$(mktemp -d /tmp/migrate-bench.XXXXXX)
KEEP=${KEEP:-/tmp/migrate-bench-logs}   # the consoles of destinations that failed
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT
[ -f "$G/vmlinuz" ] || { echo "no guest: guest/build.sh $G" >&2; exit 1; }

# start VMM NAME [ARGS...]: one VM with the common options, console on a fifo
start() {
  local vmm=$1 name=$2; shift 2
  mkfifo "$TMP/$name.in"
  "$vmm" -M pc -accel tcg -m 512M -smp 1 -kernel "$G/vmlinuz" -initrd "$G/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet" -display none -serial stdio -nodefaults \
    -qmp "unix:$TMP/$name.sock,server=on,wait=off" "$@" \
    <"$TMP/$name.in" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PIDS+=($!)
  eval "exec {FD_$name}>\"$TMP/$name.in\""
}
type_in() { local fd; eval "fd=\$FD_$1"; printf '%s\n' "$2" >&"$fd"; }
wait_out() {  # wait_out NAME PATTERN SECONDS
  local i
  for i in $(seq 1 "$3"); do grep -q "$2" "$TMP/$1.out" && return 0; sleep 1; done
  return 1
}

# migrate SRC DST PORT: prints "total_ms downtime_ms bytes" from the source's query-migrate
migrate() {
  python3 - "$QMPPY" "$TMP/$1.sock" "$3" "$DOWNTIME_MS" "$BANDWIDTH" <<'PY'
import sys, time
sys.path.insert(0, sys.argv[1].rsplit("/", 1)[0])
from qmp import QMP
q = QMP(sys.argv[2], timeout=600)
q.cmd("migrate-set-parameters", {"downtime-limit": int(sys.argv[4]), "max-bandwidth": int(sys.argv[5])})
r = q.cmd("migrate", {"uri": "tcp:127.0.0.1:" + sys.argv[3]})
if "error" in r:
    sys.exit("migrate: %s" % r)
while True:
    r = q.cmd("query-migrate")["return"]
    if r.get("status") in ("completed", "failed", "cancelled"):
        break
    time.sleep(0.2)
if r["status"] != "completed":
    sys.exit("migration %s: %s" % (r["status"], r.get("error-desc", "")))
print(r["total-time"], r["downtime"], r["ram"]["transferred"])
PY
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# boot LABEL VMM NAME: the first source of a chain, booted, its workload started
boot() {
  local label=$1 vmm=$2 name=$3
  start "$vmm" "$name"
  wait_out "$name" 'qkvm-guest: ready' 600 || { echo "$label: the guest did not boot" >&2; return 1; }
  type_in "$name" "head -c $((WSET_MB << 20)) /dev/urandom >/tmp/m; (while :; do cp /tmp/m /tmp/m2; done) >/dev/null 2>&1 &"
  type_in "$name" '(i=0; while :; do i=$((i+1)); echo $i >/tmp/cnt; sleep 0.1; done) >/dev/null 2>&1 &'
  eval "SRC_$label=$name"
}
qmp() { python3 "$QMPPY" "$TMP/$1.sock" "$2" 2>/dev/null; }

# step LABEL VMM I: migration I of chain LABEL; appends "total downtime bytes load1" to $TMP/LABEL.
# Both VMMs are driven the same way: the destination is typed on only once query-status says
# "running" (a line typed while the stream still loads goes into the serial FIFO the loaded state
# replaces, in QEMU 7.2 as in qkvm before it held input), and the probe is typed again every 10 s
# until the answer comes (a lost line is not a dead guest), the counter checked to have moved on.
step() {
  local label=$1 vmm=$2 i=$3 src dst port w c0 c1
  eval "src=\$SRC_$label"
  dst=$label$i
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  start "$vmm" "$dst" -incoming "tcp:127.0.0.1:$port"
  sleep 1
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local r; r=$(migrate "$src" "$dst" "$port") || { echo "$label: migration $i failed" >&2; return 1; }
  c0=$(grep -ao 'cnt42 [0-9]*' "$TMP/$src.out" | tail -n 1 | awk '{ print $2 }')
  qmp "$src" quit >/dev/null
  for w in $(seq 1 300); do
    qmp "$dst" query-status | grep -q '"running"' && break
    sleep 0.2
  done
  for w in $(seq 1 12); do
    type_in "$dst" "echo cnt\$((6*7)) \$(cat /tmp/cnt)"
    wait_out "$dst" 'cnt42 [0-9]' 10 && break
  done
  c1=$(grep -ao 'cnt42 [0-9]*' "$TMP/$dst.out" | tail -n 1 | awk '{ print $2 }')
  if [ -z "$c1" ]; then
    mkdir -p "$KEEP" && cp "$TMP/$dst.out" "$KEEP/$dst.console"
    echo "$label: the guest is silent after migration $i ($(qmp "$dst" query-status); console in $KEEP/$dst.console: $(tail -c 200 "$TMP/$dst.out" | tr -cd '[:print:]'))" >&2
    qmp "$dst" quit >/dev/null
    return 1
  fi
  [ -z "$c0" ] || [ "$c1" -gt "$c0" ] || { echo "$label: the counter did not move on after migration $i ($c0 -> $c1)" >&2; return 1; }
  type_in "$dst" "echo cnt\$((6*7)) \$(cat /tmp/cnt)"   # the next step's starting count
  wait_out "$dst" 'cnt42 [0-9]' 10
  echo "$r $load" >>"$TMP/$label"
  eval "SRC_$label=$dst"
}

col() { awk -v c="$2" '{ print $c }' "$TMP/$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

boot qkvm "$QKVM" qkvm0 || exit 1
boot qemu qemu-system-x86_64 qemu0 || exit 1
QV=$(qemu-system-x86_64 --version | head -n 1 | awk '{ print $4 }')
sleep 5
: >"$TMP/qkvm"; : >"$TMP/qemu"; FAIL_qkvm=0; FAIL_qemu=0
# interleaved, so both see the same machine load: qkvm's migration I, then QEMU's; the VM not
# migrating meanwhile is paused (stop/cont), so it takes no CPU from the other. A migration that
# fails or leaves a dead guest is counted, kept out of the figures, and its chain boots afresh.
turn() {  # turn LABEL VMM OTHER I
  qmp "$(eval echo "\$SRC_$3")" stop >/dev/null
  if ! step "$1" "$2" "$4"; then
    eval "FAIL_$1=\$((FAIL_$1 + 1))"
    qmp "$(eval echo "\$SRC_$1")" quit >/dev/null; qmp "$1$4" quit >/dev/null
    [ "$(eval echo "\$FAIL_$1")" -le "$N" ] || { echo "$1: too many failures" >&2; exit 1; }
    boot "$1" "$2" "${1}r$4" || exit 1
    sleep 5
  fi
  qmp "$(eval echo "\$SRC_$3")" cont >/dev/null
  sleep 3
}
for i in $(seq 1 "$N"); do
  turn qkvm "$QKVM" qemu "$i"
  turn qemu qemu-system-x86_64 qkvm "$i"
done
qmp "$SRC_qkvm" quit >/dev/null; qmp "$SRC_qemu" quit >/dev/null
echo "| VMM (tcg, 512 MiB, $WSET_MB MiB rewritten, downtime-limit $DOWNTIME_MS ms, max-bandwidth $BANDWIDTH B/s) | total ms | downtime ms | MB sent |"
echo "|---|---|---|---|"
for l in qkvm qemu; do
  name=$l; [ $l = qemu ] && name="QEMU $QV"
  echo "| $name | $(col $l 1) | $(col $l 2) | $(awk "BEGIN { printf \"%.1f\", $(col $l 3) / 1e6 }") |"
done
echo "| qkvm / QEMU | $(ratio "$(col qkvm 1)" "$(col qemu 1)") | $(ratio "$(col qkvm 2)" "$(col qemu 2)") | $(ratio "$(col qkvm 3)" "$(col qemu 3)") |"
echo "# runs (total ms, downtime ms, bytes, load average): qkvm: $(tr '\n' ';' <"$TMP/qkvm") QEMU: $(tr '\n' ';' <"$TMP/qemu")"
echo "# failed migrations (destination dead or migration failed; not in the figures): qkvm $FAIL_qkvm, QEMU $FAIL_qemu"
echo "# load average over the runs: $(cat "$TMP/qkvm" "$TMP/qemu" | awk '{ print $4 }' | sort -n | sed -n '1p;$p' | tr '\n' ' ')(min max)"
