#!/usr/bin/env bash
# qkvm-ga, the guest agent, beside Debian's qemu-ga: both run on the host (-m unix-listen) and a
# client sends each the same commands and the same bad input (qga-test.py); then the options.
. "$(dirname "$0")/lib.sh"
GA=$TOP/$B/qkvm-ga
if ! command -v qemu-ga >/dev/null; then
  fail "qemu-ga present" "package qemu-guest-agent missing: scripts/deps.sh test installs it"
  exit 0
fi
timeout -k 5 300 python3 "$TOP/tests/integration/qga-test.py" "$GA" "$(command -v qemu-ga)" "$TMP" ||
  fail "qga-test.py ran to its end" "status $?"

# options as qemu-ga's
"$GA" -D -m unix-listen -p "$TMP/x.sock" -b guest-ping,guest-info >"$TMP/dump" 2>&1
check "-D dumps a [general] key file" grep -qx 'method=unix-listen' "$TMP/dump"
printf '[general]\nmethod=unix-listen\npath=%s\nblock-rpcs=guest-ping;guest-info\nverbose=true\n' "$TMP/c.sock" >"$TMP/ga.conf"
"$GA" -c "$TMP/ga.conf" -D >"$TMP/dump2" 2>&1
check "the config file is read (-c)" grep -qx "path=$TMP/c.sock" "$TMP/dump2"
check "config block-rpcs with ';' as qemu-ga's key file" grep -qx 'block-rpcs=guest-ping,guest-info' "$TMP/dump2"
"$GA" -c "$TMP/ga.conf" -p "$TMP/other.sock" -D >"$TMP/dump3" 2>&1
check "an option beats the config file" grep -qx "path=$TMP/other.sock" "$TMP/dump3"
"$GA" --block-rpcs=help >"$TMP/list"
check "--block-rpcs=help lists the commands" grep -qx guest-exec "$TMP/list"
"$GA" -b guest-bogus -m unix-listen -p "$TMP/y.sock" 2>"$TMP/err"; rc=$?
check "an unknown command in -b: one line and status 1" test $rc = 1 -a "$(wc -l <"$TMP/err")" = 1
"$GA" --fsfreeze-timeout=-5 -m unix-listen -p "$TMP/y.sock" 2>"$TMP/err"; rc=$?
check "a bad --fsfreeze-timeout: one line and status 1" test $rc = 1 -a "$(wc -l <"$TMP/err")" = 1
printf '[general]\nfsfreeze-timeout=30\n' >"$TMP/ft.conf"
check "fsfreeze-timeout from the config file" sh -c "'$GA' -c '$TMP/ft.conf' -m unix-listen -p x -D | grep -qx fsfreeze-timeout=30"
"$GA" -m carrier-pigeon 2>"$TMP/err"; rc=$?
check "an unknown method: one line and status 1" test $rc = 1 -a "$(wc -l <"$TMP/err")" = 1
"$GA" -m virtio-serial -p "$TMP/no-such-port" 2>"$TMP/err"; rc=$?
check "a missing port: one line and status 1" test $rc = 1 -a "$(wc -l <"$TMP/err")" = 1
check "--version" sh -c "'$GA' --version | grep -q 'QEMU Guest Agent'"
# -d -f: in the background with a pid file, stopped by SIGTERM, which removes the pid file
"$GA" -d -f "$TMP/ga.pid" -m unix-listen -p "$TMP/d.sock" -l "$TMP/ga.log"; rc=$?
for _ in $(seq 50); do [ -S "$TMP/d.sock" ] && break; sleep 0.1; done
pid=$(cat "$TMP/ga.pid" 2>/dev/null)
if [ $rc = 0 ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  pass "-d -f: daemon running, pid file written"
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  check "SIGTERM ends it and removes the pid file" test ! -e "$TMP/ga.pid"
else
  fail "-d -f: daemon running, pid file written" "status $rc, pid '$pid'"
fi
# -m vsock-listen, path CID:PORT as qemu-ga's; a round trip where the host kernel loops vsock
# back to itself (vsock_loopback), else only the listening side is checked
vport=$((20000 + $$ % 40000))
"$GA" -m vsock-listen 2>"$TMP/err"; rc=$?
check "vsock-listen without -p: one line and status 1, as qemu-ga" test $rc = 1 -a "$(wc -l <"$TMP/err")" = 1
"$GA" -m vsock-listen -p 3 2>"$TMP/err"; rc=$?
check "vsock-listen -p 3 (no port): one line and status 1" test $rc = 1 -a "$(wc -l <"$TMP/err")" = 1
if python3 -c 'import socket; socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)' 2>/dev/null; then
  "$GA" -m vsock-listen -p "4294967295:$vport" 2>"$TMP/vsock.err" & gapid=$!
  qemu-ga -m vsock-listen -p "4294967295:$((vport + 1))" -t "$TMP" -f "$TMP/qemu-ga-vsock.pid" 2>"$TMP/qvsock.err" & qpid=$!
  sleep 1
  if kill -0 $qpid 2>/dev/null; then
    check "vsock-listen -p 4294967295:PORT: listening, as qemu-ga is" kill -0 $gapid
    why=$(timeout 60 python3 - "$vport" "$((vport + 1))" <<'PY'
import json, socket, sys
replies = []
for port in map(int, sys.argv[1:3]):
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((1, port))     # VMADDR_CID_LOCAL
    except OSError as e:
        print(f"no vsock loopback in this host kernel (connect to CID 1: {e.strerror or e})")
        sys.exit(0)
    s.sendall(b'{"execute":"guest-sync","arguments":{"id":4711}}\n{"execute":"guest-ping"}\n')
    buf = b""
    while buf.count(b"\n") < 2:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    replies.append([json.loads(l) for l in buf.splitlines()])
print("ok" if replies[0] == replies[1] == [{"return": 4711}, {"return": {}}] else f"replies {replies}")
PY
)
    case $why in
      ok) pass "vsock-listen: guest-sync and guest-ping over AF_VSOCK, as qemu-ga answers" ;;
      "no vsock loopback"*) skip "vsock-listen: a round trip over AF_VSOCK" "$why" ;;
      *) fail "vsock-listen: a round trip over AF_VSOCK" "$why" ;;
    esac
  else
    skip "vsock-listen" "qemu-ga cannot listen on vsock here either: $(head -n 1 "$TMP/qvsock.err")"
  fi
  kill $gapid $qpid 2>/dev/null; wait $gapid $qpid 2>/dev/null
else
  skip "vsock-listen" "this host has no AF_VSOCK"
fi
# --retry-path: the port may appear after the agent starts
"$GA" -m isa-serial -p "$TMP/late-port" -r 2>"$TMP/err" & gapid=$!
sleep 1
check "--retry-path: still waiting for a missing port" kill -0 $gapid
kill $gapid; wait $gapid 2>/dev/null
exit 0
