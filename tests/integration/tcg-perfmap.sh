#!/usr/bin/env bash
# -perfmap (QEMU 8.1's option): under tcg qkvm writes /tmp/perf-PID.map, one "START SIZE NAME"
# line per translated block, which perf report uses to name samples in JIT code. The guest is
# tests/guest/memloop64.asm (a 64-bit loop that runs until killed, printing round=N). While it
# runs, every line of the map must name a block (guest-physical address, mode, instructions) and
# lie inside the executable view of the code buffer (memfd:qkvm-jit, r-x, in /proc/PID/maps),
# and some line must cover the loop's own code. Without -perfmap there is no map at all.
. "$(dirname "$0")/lib.sh"

k=$GUESTS/memloop64.bin

# start_guest ACCEL ARGS...: qkvm in the background ($pid), until its first round is done (the loop's
# blocks have run far more than 8 times by then, so they are translated).
start_guest() {
  local accel=$1; shift
  "$QKVM" -accel "$accel" -m 128 -nodefaults -display none -serial stdio "$@" -kernel "$k" \
    >"$TMP/out" 2>"$TMP/err" </dev/null &
  pid=$!
  local n=0
  while ! grep -q '^round=1' "$TMP/out" 2>/dev/null && [ $n -lt 600 ] && kill -0 "$pid" 2>/dev/null; do
    sleep 0.1
    n=$((n + 1))
  done
}
stop_guest() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

# check_map PID: prints "ok N" (N lines) or what is wrong. Reads /proc/PID/maps: the process runs.
check_map() {
  local map=/tmp/perf-$1.map
  [ -s "$map" ] || { echo "no map $map"; return; }
  grep 'memfd:qkvm-jit' "/proc/$1/maps" >"$TMP/jit-maps" || { echo "no memfd:qkvm-jit mapping"; return; }
  python3 - "$map" "$TMP/jit-maps" <<'EOF'
import re, sys
exe = []
for l in open(sys.argv[2]):
    rng, perms = l.split()[:2]
    if perms.startswith("r-x"):
        a, b = (int(x, 16) for x in rng.split("-"))
        exe.append((a, b))
if not exe:
    print("no executable view of memfd:qkvm-jit"); sys.exit()
name = re.compile(r"qkvm-tcg:pa=0x([0-9a-f]+):m(16|32|64)(s32)?:n([0-9]+)$")
n = loop = 0
for l in open(sys.argv[1]):
    f = l.rstrip("\n").split(" ", 2)
    if len(f) != 3:
        print("malformed line %r" % l); sys.exit()
    start, size = int(f[0], 16), int(f[1], 16)
    if size == 0 or not any(a <= start and start + size <= b for a, b in exe):
        print("block %s outside the executable view %s" % (l.strip(), exe)); sys.exit()
    m = name.match(f[2])
    if not m or int(m.group(4)) == 0:
        print("name %r" % f[2]); sys.exit()
    # the bzImage's 64-bit code is loaded at 1 MiB: the loop's blocks are there, in 64-bit mode
    if m.group(2) == "64" and 0x100000 <= int(m.group(1), 16) < 0x200000:
        loop += 1
    n += 1
print("ok %d" % n if loop else "no 64-bit block of the guest's loop among %d" % n)
EOF
}

start_guest tcg -perfmap
res=$(check_map "$pid")
stop_guest
case $res in
  ok*) pass "-perfmap: every map line names a block inside memfd:qkvm-jit's executable view (${res#ok } lines)" ;;
  *) fail "-perfmap: the map names translated blocks" "$res; $(head -c 200 "$TMP/err")" ;;
esac
rm -f "/tmp/perf-$pid.map"

start_guest tcg
res=$(check_map "$pid")
stop_guest
case $res in
  "no map"*) pass "without -perfmap: no /tmp/perf-PID.map" ;;
  *) fail "without -perfmap: no map" "$res" ;;
esac
rm -f "/tmp/perf-$pid.map"

# under the interpreter alone nothing is translated: a map is made, and stays empty
start_guest tcg,jit=off -perfmap
if [ -e "/tmp/perf-$pid.map" ] && [ ! -s "/tmp/perf-$pid.map" ]; then
  pass "-perfmap with jit=off: an empty map"
else
  fail "-perfmap with jit=off: an empty map" "$(ls -l "/tmp/perf-$pid.map" 2>&1)"
fi
stop_guest
rm -f "/tmp/perf-$pid.map"
