#!/usr/bin/env bash
# query-migrate's reply has QEMU's shape: QEMU 7.2 and qkvm each save a paused tiny guest
# (migrate tcp: to a closed port, which fails, then exec:cat > FILE) and answer query-migrate before any,
# after the one that failed and after the one that completed; every key QEMU's reply has (ram's too) must be in qkvm's with a value of
# the same JSON type, and qkvm must add no key QEMU does not know in these states.
. "$(dirname "$0")/lib.sh"

if ! command -v qemu-system-x86_64 >/dev/null; then
  skip "query-migrate shape against QEMU" "no qemu-system-x86_64 (scripts/deps.sh test)"
  exit 0
fi
if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "query-migrate shape against QEMU" "this build has no tcg"
  exit 0
fi

# replies NAME VMM ARGS...: the query-migrate replies (JSON, one a line) of a paused VM before,
# after a migration that fails and after one that completes, in $TMP/NAME.json
replies() {
  local name=$1 vmm=$2; shift 2
  rm -f "$TMP/$name.sock"
  timeout -k 5 60 "$vmm" -accel tcg -m 16M -display none -S -qmp "unix:$TMP/$name.sock,server=on,wait=off" \
    "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err" &
  local pid=$!
  python3 - "$TOP/tests/integration" "$TMP/$name.sock" "$TMP/$name" >"$TMP/$name.json" <<'PY'
import json, sys, time
sys.path.insert(0, sys.argv[1])
from qmp import QMP
q = QMP(sys.argv[2], timeout=60)
print(json.dumps(q.cmd("query-migrate")["return"]))
for uri in ("tcp:127.0.0.1:1", "exec:cat > '%s.state'" % sys.argv[3]):
    # a refused connection: QEMU answers {} and fails in the background, qkvm answers the
    # error at once too; either way query-migrate then says failed
    q.cmd("migrate", {"uri": uri})
    for i in range(300):
        r = q.cmd("query-migrate")["return"]
        if r.get("status") in ("completed", "failed"):
            break
        time.sleep(0.1)
    print(json.dumps(r))
q.cmd("quit")
PY
  wait $pid
}

replies qemu qemu-system-x86_64 -nodefaults
replies qkvm "$QKVM" -bios "$GUESTS/echo-rom.bin" -serial none
check "QEMU answers query-migrate three times" test "$(grep -c . "$TMP/qemu.json")" = 3
check "qkvm answers query-migrate three times" test "$(grep -c . "$TMP/qkvm.json")" = 3

python3 - "$TMP/qemu.json" "$TMP/qkvm.json" >"$TMP/cmp" <<'PY'
import json, sys
qe = [json.loads(l) for l in open(sys.argv[1])]
qk = [json.loads(l) for l in open(sys.argv[2])]
names = ["before any migration", "failed (tcp: to a closed port)", "completed (exec:cat > FILE)"]
def kind(v):
    if isinstance(v, bool): return "bool"
    if isinstance(v, (int, float)): return "number"
    return type(v).__name__
def compare(a, b, path, out):
    for k in a:
        if k not in b:
            out.append("%s%s: missing in qkvm" % (path, k))
        elif kind(a[k]) != kind(b[k]):
            out.append("%s%s: %s in QEMU, %s in qkvm" % (path, k, kind(a[k]), kind(b[k])))
        elif isinstance(a[k], dict):
            compare(a[k], b[k], path + k + ".", out)
    for k in b:
        if k not in a:
            out.append("%s%s: not in QEMU's reply" % (path, k))
for n, a, b in zip(names, qe, qk):
    out = []
    compare(a, b, "", out)
    print("%s|%s" % (n, "; ".join(out)))
PY
while IFS='|' read -r what diff; do
  check "query-migrate $what: qkvm's reply has QEMU's keys and types${diff:+ ($diff)}" test -z "$diff"
done <"$TMP/cmp"
status() { python3 -c 'import json,sys; print(" ".join(json.loads(l).get("status","-") for l in open(sys.argv[1])))' "$1"; }
expect_eq "QEMU's statuses: none, failed, completed" "- failed completed" "$(status "$TMP/qemu.json")"
expect_eq "qkvm's statuses: none, failed, completed" "- failed completed" "$(status "$TMP/qkvm.json")"
