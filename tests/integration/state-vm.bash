# Sourced by the state tests (pc-state.sh, cpu-state.sh) after lib.sh: qkvm processes whose
# guest waits for a byte on its serial console, so a test can save the machine at a known point,
# restore it elsewhere and only then let the guest go on. The guest's lines start with
# "$SV_PREFIX: ".
QMPPY=$TOP/tests/integration/qmp.py
SV_PREFIX=${SV_PREFIX:-pcst}

# vm_start NAME ARGS...: qkvm with its serial console on a FIFO (stdin) and $TMP/NAME.out, QMP
# on $TMP/NAME.qmp
vm_start() {
  local name=$1; shift
  rm -f "$TMP/$name.in" "$TMP/$name.qmp"
  mkfifo "$TMP/$name.in"
  timeout -k 5 "${SV_TIMEOUT:-120}" "$QKVM" "$@" -qmp "unix:$TMP/$name.qmp,server=on,wait=off" <"$TMP/$name.in" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  eval "pid_$name=$!"
  exec {fd}>"$TMP/$name.in"   # held open: the console never sees an end of input
  eval "fd_$name=$fd"
}
vm_stop() {
  local name=$1 pid fd
  eval "pid=\$pid_$name fd=\$fd_$name"
  # a qkvm that has ended (its guest powered off) has no monitor to wait for
  kill -0 "$pid" 2>/dev/null && python3 "$QMPPY" "$TMP/$name.qmp" quit >/dev/null 2>&1
  exec {fd}>&-
  wait "$pid" 2>/dev/null
}
qmp() { local name=$1; shift; python3 "$QMPPY" "$TMP/$name.qmp" "$@" 2>/dev/null; }
hmp() {  # hmp NAME 'LINE': the HMP command's output
  qmp "$1" "human-monitor-command {\"command-line\": \"$2\"}" |
    python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin).get("return", "?"))' | tr -d '\r'
}
# the byte the guest waits for (a qkvm that is gone must not take the script with SIGPIPE)
key() { local fd; eval "fd=\$fd_$1"; ( trap '' PIPE; printf x >&"$fd" ) 2>/dev/null; }
lines() { tr -d '\r' <"$TMP/$1.out" | grep -a "^$SV_PREFIX: "; }
# wait_n NAME LINE N: until LINE shows N times in NAME's output (30 s)
wait_n() {
  local i
  for ((i = 0; i < 300; i++)); do
    [ "$(lines "$1" | grep -cx -- "$2")" -ge "$3" ] && return 0
    lines "$1" | grep -q FAIL && return 1
    sleep 0.1
  done
  return 1
}
wait_running() {
  local i
  for ((i = 0; i < 300; i++)); do
    qmp "$1" query-status | grep -q '"status": "running"' && return 0
    sleep 0.1
  done
  return 1
}
no_fail() { if lines "$1" | grep -q FAIL; then fail "$2" "$(lines "$1" | grep FAIL)"; else pass "$2"; fi; }

# wait_status NAME ERE: until query-status says a status matching ERE ("paused|prelaunch"; 30 s)
wait_status() {
  local i
  for ((i = 0; i < 300; i++)); do
    qmp "$1" query-status | grep -Eq "\"status\": \"($2)\"" && return 0
    sleep 0.1
  done
  return 1
}
# migrate_to NAME URI: QMP migrate, then query-migrate until completed or failed (the last
# reply in $TMP/qm); 0 when completed
migrate_to() {
  qmp "$1" "migrate {\"uri\": \"$2\"}" >/dev/null
  mig_wait "$TMP/$1.qmp" 30
}
