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
# --retry-path: the port may appear after the agent starts
"$GA" -m isa-serial -p "$TMP/late-port" -r 2>"$TMP/err" & gapid=$!
sleep 1
check "--retry-path: still waiting for a missing port" kill -0 $gapid
kill $gapid; wait $gapid 2>/dev/null
exit 0
