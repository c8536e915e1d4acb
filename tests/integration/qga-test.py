#!/usr/bin/env python3
"""qkvm-ga beside Debian's qemu-ga (7.2), both on the host in unix-listen mode: every command is
sent to both and the replies must have the same keys and JSON types (and, where the answer is a
fact of this machine, the same values); bad input gets a QMP error from both and both go on.
Usage: qga-test.py QKVM_GA QEMU_GA TMPDIR.  Prints TAP lines."""
import base64, json, os, socket, subprocess, sys, time

from qga_shape import same_shape, shape

OURS, THEIRS, TMP = sys.argv[1:4]
failures = 0


def ok(name, cond, why=""):
    global failures
    if cond:
        print(f"ok - {name}")
    else:
        failures += 1
        print(f"not ok - {name}: {why}")
    sys.stdout.flush()


class Agent:
    def __init__(self, label, argv, sock):
        self.label, self.sock_path = label, sock
        if os.path.exists(sock):
            os.unlink(sock)
        self.log = open(os.path.join(TMP, label + ".log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(sock)
        self.s.settimeout(10)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        """The next reply line as JSON (a leading 0xFF is reported in .delimited)."""
        while b"\n" not in self.buf:
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError(self.label + " closed the connection")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        self.delimited = line.startswith(b"\xff")
        return json.loads(line.lstrip(b"\xff"))

    def cmd(self, execute, arguments=None, **extra):
        req = {"execute": execute}
        if arguments is not None:
            req["arguments"] = arguments
        req.update(extra)
        self.send(json.dumps(req).encode() + b"\n")
        return self.reply()

    def alive(self):
        try:
            return self.proc.poll() is None and self.cmd("guest-sync", {"id": 4242}) == {"return": 4242}
        except Exception:
            return False

    def stop(self):
        self.s.close()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def both(name, execute, arguments=None, same_value=False, key=None):
    r1, r2 = ours.cmd(execute, arguments), theirs.cmd(execute, arguments)
    d = same_shape(shape(r1), shape(r2))
    ok(f"{name}: same keys and types as qemu-ga", d is None, f"{d}; ours {json.dumps(r1)[:300]} qemu-ga {json.dumps(r2)[:300]}")
    if same_value:
        v1, v2 = r1.get("return"), r2.get("return")
        if key:
            v1, v2 = key(v1), key(v2)
        ok(f"{name}: same value as qemu-ga", v1 == v2, f"ours {v1} qemu-ga {v2}")
    return r1, r2


def raw_both(name, data, expect_error=True):
    """Bad bytes to both; each answers with QMP errors of the same classes, then still serves."""
    got = []
    for a in (ours, theirs):
        a.send(data)
        a.send(b'\n{"execute":"guest-sync","arguments":{"id":777}}\n')
        replies = []
        try:
            while True:
                r = a.reply()
                if r == {"return": 777}:
                    break
                replies.append(r)
        except Exception as e:
            replies.append({"exception": str(e)})
        got.append(replies)
    classes = [sorted({r.get("error", {}).get("class", "?") for r in rs}) for rs in got]
    if expect_error:
        ok(f"{name}: an error reply from qkvm-ga", len(got[0]) >= 1 and all("error" in r for r in got[0]), str(got[0])[:300])
        ok(f"{name}: error classes as qemu-ga's", classes[0] == classes[1], f"ours {classes[0]} qemu-ga {classes[1]} ({str(got[1])[:200]})")
    ok(f"{name}: qkvm-ga goes on", ours.alive())


os.makedirs(os.path.join(TMP, "state"), exist_ok=True)
ours = Agent("qkvm-ga", [OURS, "-m", "unix-listen", "-p", os.path.join(TMP, "ours.sock")], os.path.join(TMP, "ours.sock"))
theirs = Agent("qemu-ga", [THEIRS, "-m", "unix-listen", "-p", os.path.join(TMP, "theirs.sock"),
                           "-t", os.path.join(TMP, "state"), "-f", os.path.join(TMP, "qemu-ga.pid")],
               os.path.join(TMP, "theirs.sock"))

# the protocol itself
r1, r2 = both("guest-sync", "guest-sync", {"id": 123456789012}, same_value=True)
r1, r2 = ours.cmd("guest-sync", {"id": 5}, id="abc"), theirs.cmd("guest-sync", {"id": 5}, id="abc")
ok("request id echoed as qemu-ga does", r1 == r2, f"ours {r1} qemu-ga {r2}")
ours.send(b'{"execute":"guest-sync-delimited","arguments":{"id":99}}\n')
r = ours.reply()
ok("guest-sync-delimited: reply behind the 0xFF sentinel", ours.delimited and r == {"return": 99}, str(r))
both("guest-ping", "guest-ping")
r1, r2 = both("guest-info", "guest-info")
mine = {c["name"] for c in r1["return"]["supported_commands"]}
real = {c["name"] for c in r2["return"]["supported_commands"]}
ok("guest-info: every command qkvm-ga lists is one of qemu-ga's", mine <= real, str(mine - real))
print(f"# qkvm-ga implements {len(mine)} of qemu-ga's {len(real)} commands; missing: {' '.join(sorted(real - mine))}")
both("guest-get-time", "guest-get-time")
t1, t2 = ours.cmd("guest-get-time")["return"], theirs.cmd("guest-get-time")["return"]
ok("guest-get-time: the same clock (within 5 s)", abs(t1 - t2) < 5e9, f"{t1} vs {t2}")
both("guest-get-host-name", "guest-get-host-name", same_value=True)
both("guest-get-osinfo", "guest-get-osinfo", same_value=True)
both("guest-get-timezone", "guest-get-timezone", same_value=True)
both("guest-get-users", "guest-get-users", same_value=True,
     key=lambda v: sorted(u["user"] for u in v))
both("guest-get-vcpus", "guest-get-vcpus", same_value=True,
     key=lambda v: sorted(json.dumps(c, sort_keys=True) for c in v))
both("guest-network-get-interfaces", "guest-network-get-interfaces", same_value=True,
     key=lambda v: sorted((i["name"], i.get("hardware-address"),
                           tuple(sorted(a["ip-address"] + "/" + str(a["prefix"]) for a in i.get("ip-addresses", []))))
                          for i in v))
both("guest-get-fsinfo", "guest-get-fsinfo")
both("guest-get-disks", "guest-get-disks", same_value=True,
     key=lambda v: sorted(json.dumps(d, sort_keys=True) for d in v))
both("guest-get-cpustats", "guest-get-cpustats", same_value=True, key=lambda v: sorted(c["cpu"] for c in v))
both("guest-get-diskstats", "guest-get-diskstats", same_value=True,
     key=lambda v: sorted((d["name"], d["major"], d["minor"], tuple(sorted(d["stats"]))) for d in v))
both("guest-fsfreeze-status", "guest-fsfreeze-status", same_value=True)
both("guest-get-memory-blocks", "guest-get-memory-blocks")
both("guest-get-memory-block-info", "guest-get-memory-block-info", same_value=True)

# hot-plug requests that change nothing on the host (cpu0 is online, index 999999 is no block)
for args in [{"vcpus": []}, {"vcpus": [{"logical-id": 0, "online": True}]},
             {"vcpus": [{"logical-id": 0, "online": True}, {"logical-id": 99999, "online": True}]}]:
    both(f"guest-set-vcpus {json.dumps(args)}", "guest-set-vcpus", args, same_value=True)
for args in [{"mem-blks": []}, {"mem-blks": [{"phys-index": 999999, "online": True}]}]:
    both(f"guest-set-memory-blocks {json.dumps(args)}", "guest-set-memory-blocks", args, same_value=True)

# suspend, only where this host's kernel offers no such state (qemu-ga would try systemd and
# could really suspend the machine: it is not asked)
states = open("/sys/power/state").read().split() if os.path.exists("/sys/power/state") else []
for c, st in [("guest-suspend-ram", "mem"), ("guest-suspend-disk", "disk"), ("guest-suspend-hybrid", "disk")]:
    if st in states:
        print(f"ok - {c}: unsupported-state error # SKIP this host offers '{st}'")
        continue
    r = ours.cmd(c)
    ok(f"{c}: an error where the kernel offers no '{st}'", r.get("error", {}).get("desc") == "the requested suspend mode is not supported by the guest", str(r))

# files: the same round trip on each agent's own file
data = bytes(range(256)) * 40 + b"tail"
for a in (ours, theirs):
    path = os.path.join(TMP, a.label + ".file")
    h = a.cmd("guest-file-open", {"path": path, "mode": "w+"})["return"]
    a.res = [a.cmd("guest-file-write", {"handle": h, "buf-b64": base64.b64encode(data).decode()}),
             a.cmd("guest-file-flush", {"handle": h}),
             a.cmd("guest-file-seek", {"handle": h, "offset": 0, "whence": "set"}),
             a.cmd("guest-file-read", {"handle": h, "count": 100000}),
             a.cmd("guest-file-seek", {"handle": h, "offset": -4, "whence": 2}),
             a.cmd("guest-file-read", {"handle": h}),
             a.cmd("guest-file-write", {"handle": h, "buf-b64": "!!notbase64"}),
             a.cmd("guest-file-read", {"handle": h, "count": -1}),
             a.cmd("guest-file-read", {"handle": h, "count": 1 << 40}),
             a.cmd("guest-file-close", {"handle": h}),
             a.cmd("guest-file-close", {"handle": h})]
    a.file_ok = open(path, "rb").read() == data
for i, (x, y) in enumerate(zip(ours.res, theirs.res)):
    d = same_shape(shape(x), shape(y))
    if d is None and "error" in x:
        d = None if x["error"]["class"] == y["error"]["class"] else "class differs"
    ok(f"guest-file step {i}: as qemu-ga", d is None and ("return" in x) == ("return" in y), f"ours {str(x)[:200]} qemu-ga {str(y)[:200]}")
ok("guest-file: written bytes on disk", ours.file_ok)
rd = ours.res[3].get("return", {})
ok("guest-file-read: data back", base64.b64decode(rd.get("buf-b64", "")) == data and rd.get("count") == len(data) and rd.get("eof"), str(rd)[:200])
ok("guest-file-read after seek from the end", ours.res[5].get("return", {}).get("buf-b64") == base64.b64encode(b"tail").decode(), str(ours.res[5]))

# processes
def run(a, args):
    pid = a.cmd("guest-exec", args)["return"]["pid"]
    for _ in range(200):
        st = a.cmd("guest-exec-status", {"pid": pid})
        if st.get("return", {}).get("exited"):
            return st, pid
        time.sleep(0.05)
    return st, pid

for name, args in [("captured output, stdin, exit code", {"path": "/bin/sh", "arg": ["-c", "cat; echo err >&2; exit 3"], "input-data": base64.b64encode(b"hello\n").decode(), "capture-output": True}),
                   ("env", {"path": "sh", "arg": ["-c", "echo $FOO"], "env": ["FOO=bar", "PATH=/bin:/usr/bin"], "capture-output": True}),
                   ("signal", {"path": "/bin/sh", "arg": ["-c", "kill -9 $$"], "capture-output": True}),
                   ("no capture", {"path": "/bin/true"})]:
    (s1, p1), (s2, _) = run(ours, args), run(theirs, args)
    d = same_shape(shape(s1), shape(s2))
    ok(f"guest-exec {name}: status as qemu-ga's", d is None and s1["return"] == {**s2["return"]}, f"ours {s1} qemu-ga {s2}")
    gone = ours.cmd("guest-exec-status", {"pid": p1})
    ok(f"guest-exec {name}: reaped after its exited status", gone.get("error", {}).get("class") == "GenericError", str(gone))
r1, r2 = ours.cmd("guest-exec", {"path": "/nonexistent/x"}), theirs.cmd("guest-exec", {"path": "/nonexistent/x"})
ok("guest-exec of a missing program: an error as qemu-ga's", "error" in r1 and r1["error"]["class"] == r2["error"]["class"], f"{r1} {r2}")

# errors: the same class and text as qemu-ga
for name, req in [("unknown command", {"execute": "guest-no-such"}),
                  ("wrong argument type", {"execute": "guest-sync", "arguments": {"id": "x"}}),
                  ("float for an int", {"execute": "guest-sync", "arguments": {"id": 1.5}}),
                  ("missing argument", {"execute": "guest-sync", "arguments": {}}),
                  ("extra argument", {"execute": "guest-ping", "arguments": {"x": 1}}),
                  ("unknown member", {"execute": "guest-ping", "foo": 1}),
                  ("no execute", {"arguments": {}}),
                  ("execute not a string", {"execute": 5}),
                  ("arguments not an object", {"execute": "guest-ping", "arguments": [1]}),
                  ("bad shutdown mode", {"execute": "guest-shutdown", "arguments": {"mode": "bogus"}}),
                  ("bad seek whence", {"execute": "guest-file-seek", "arguments": {"handle": 1, "offset": 0, "whence": "bogus"}}),
                  ("file handle that does not exist", {"execute": "guest-file-read", "arguments": {"handle": 987654}}),
                  ("exec pid that does not exist", {"execute": "guest-exec-status", "arguments": {"pid": 1}}),
                  ("set-vcpus: a CPU that does not exist", {"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 99999, "online": True}]}}),
                  ("set-vcpus: cpu0 cannot go offline", {"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 0, "online": False}]}}),
                  ("set-vcpus: wrong member type", {"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": "x", "online": True}]}}),
                  ("set-vcpus: missing member", {"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"online": True}]}}),
                  ("set-vcpus: unexpected member", {"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 0, "online": True, "x": 1}]}}),
                  ("set-vcpus: an item not an object", {"execute": "guest-set-vcpus", "arguments": {"vcpus": [1]}}),
                  ("ssh keys of a user that does not exist", {"execute": "guest-ssh-get-authorized-keys", "arguments": {"username": "qga-no-such-user"}}),
                  ("ssh add for a user that does not exist", {"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "qga-no-such-user", "keys": ["ssh-ed25519 AAAA x"]}}),
                  ("password of a user that does not exist", {"execute": "guest-set-user-password", "arguments": {"username": "qga-no-such-user", "password": "aGVsbG8=", "crypted": False}}),
                  ("password not base64", {"execute": "guest-set-user-password", "arguments": {"username": "qga-no-such-user", "password": "!!!", "crypted": False}}),
                  ("password with a line break", {"execute": "guest-set-user-password", "arguments": {"username": "qga-no-such-user", "password": "aGVsbG8KeA==", "crypted": False}}),
                  ("user name with a colon", {"execute": "guest-set-user-password", "arguments": {"username": "qga:x", "password": "aGVsbG8=", "crypted": False}}),
                  ("guest-get-devices (Windows only)", {"execute": "guest-get-devices"}),
                  ("set-vcpus: not a list", {"execute": "guest-set-vcpus", "arguments": {"vcpus": {}}})]:
    ours.send(json.dumps(req).encode() + b"\n")
    theirs.send(json.dumps(req).encode() + b"\n")
    r1, r2 = ours.reply(), theirs.reply()
    ok(f"{name}: error as qemu-ga's", r1.get("error") == r2.get("error"), f"ours {r1} qemu-ga {r2}")

raw_both("garbage", b"garbage")
raw_both("a JSON array", b"[1, 2]")
raw_both("a stray close brace", b"}")
raw_both("half an object, then the 0xFF resync", b'{"execute":"guest-sync", "argu\xff')
raw_both("1 MB string argument", b'{"execute":"guest-sync","arguments":{"id":"' + b"a" * (1 << 20) + b'"}}')
raw_both("nesting 1000 deep", b"[" * 1000 + b"]" * 1000)
# 4 MB + 1 is past qkvm-ga's bound: an error and a skip to the end of the line (qemu-ga's own
# bound is larger, so only qkvm-ga's behaviour is checked)
raw_both("oversized request", b'{"execute":"guest-sync","arguments":{"id":"' + b"a" * (4 << 20) + b'"}}', expect_error=False)
raw_both("a 10 MB line", b'{"execute":"guest-sync","arguments":{"id":"' + b"a" * (10 << 20) + b'"}}', expect_error=False)
ours.send(b"\xff")
ours.send(b'{"execute":"guest-sync-delimited","arguments":{"id":31337}}\n')
r = ours.reply()
ok("0xFF then guest-sync-delimited: resynced", r == {"return": 31337} and ours.delimited, str(r))
# a client that leaves mid-request: the next one is served
ours.send(b'{"execute":"guest-sync","arg')
ours.s.close()
ours.s = socket.socket(socket.AF_UNIX)
ours.s.connect(ours.sock_path)
ours.s.settimeout(10)
ours.buf = b""
ok("a client gone mid-request: the next client is served", ours.alive())
ok("qemu-ga went on too (the comparison was fair)", theirs.alive())
ours.stop()
theirs.stop()
ours.log.close()
log = open(os.path.join(TMP, "qkvm-ga.log")).read()
ok("qkvm-ga ends with status 0 on SIGTERM, no sanitizer report", ours.proc.returncode == 0 and "Sanitizer" not in log,
   f"status {ours.proc.returncode}: {log[-500:]}")

# --block-rpcs: the same refusal as qemu-ga's
ours = Agent("qkvm-ga-b", [OURS, "-m", "unix-listen", "-p", os.path.join(TMP, "ob.sock"), "-b", "guest-get-time,guest-exec"], os.path.join(TMP, "ob.sock"))
theirs = Agent("qemu-ga-b", [THEIRS, "-m", "unix-listen", "-p", os.path.join(TMP, "tb.sock"), "-t", os.path.join(TMP, "state"), "-f", os.path.join(TMP, "qemu-ga-b.pid"), "-b", "guest-get-time,guest-exec"], os.path.join(TMP, "tb.sock"))
for c, a in [("guest-get-time", None), ("guest-exec", {"path": "/bin/true"})]:
    r1, r2 = ours.cmd(c, a), theirs.cmd(c, a)
    ok(f"--block-rpcs {c}: refused as qemu-ga refuses", r1.get("error") == r2.get("error") and "error" in r1, f"ours {r1} qemu-ga {r2}")
en1 = {x["name"]: x["enabled"] for x in ours.cmd("guest-info")["return"]["supported_commands"]}
en2 = {x["name"]: x["enabled"] for x in theirs.cmd("guest-info")["return"]["supported_commands"]}
ok("--block-rpcs: guest-info says disabled as qemu-ga does", all(en1[k] == en2[k] for k in en1), str({k: (en1[k], en2[k]) for k in en1 if en1[k] != en2[k]}))
ok("--block-rpcs: guest-ping still served", ours.cmd("guest-ping") == {"return": {}})
ours.stop()
theirs.stop()

# -F, the fsfreeze hook: called with "freeze" before and "thaw" after, as qemu-ga calls it; a
# freeze-list naming no mount point freezes nothing, so the host's disks are never frozen
hooks = {}
for label in ("qkvm-ga-F", "qemu-ga-F"):
    hooks[label] = os.path.join(TMP, label + ".hook")
    with open(hooks[label], "w") as f:
        f.write('#!/bin/sh\necho "$1" >>"$0.calls"\necho "hook says $1"\n')
    os.chmod(hooks[label], 0o755)
ours = Agent("qkvm-ga-F", [OURS, "-m", "unix-listen", "-p", os.path.join(TMP, "of.sock"), "-F" + hooks["qkvm-ga-F"]], os.path.join(TMP, "of.sock"))
theirs = Agent("qemu-ga-F", [THEIRS, "-m", "unix-listen", "-p", os.path.join(TMP, "tf.sock"), "-t", os.path.join(TMP, "state"),
                             "-f", os.path.join(TMP, "qemu-ga-F.pid"), "-F" + hooks["qemu-ga-F"]], os.path.join(TMP, "tf.sock"))
both("-F: guest-fsfreeze-freeze-list of no mount", "guest-fsfreeze-freeze-list", {"mountpoints": ["/qga-no-such-mount"]}, same_value=True)
both("-F: guest-fsfreeze-status after it", "guest-fsfreeze-status", same_value=True)
both("-F: guest-fsfreeze-thaw", "guest-fsfreeze-thaw", same_value=True)
calls = {k: open(v + ".calls").read().split() if os.path.exists(v + ".calls") else [] for k, v in hooks.items()}
ok("-F: the hook heard freeze then thaw, as qemu-ga's", calls["qkvm-ga-F"] == calls["qemu-ga-F"] == ["freeze", "thaw"], str(calls))
for label, h in hooks.items():
    with open(h, "w") as f:
        f.write("#!/bin/sh\necho refusing $1 >&2\nexit 3\n")
r1, r2 = (a.cmd("guest-fsfreeze-freeze-list", {"mountpoints": ["/qga-no-such-mount"]}) for a in (ours, theirs))
ok("-F: a hook that fails stops the freeze, qemu-ga's error", "error" in r1 and r1 == r2, f"ours {r1} qemu-ga {r2}")
r1, r2 = ours.cmd("guest-fsfreeze-status"), theirs.cmd("guest-fsfreeze-status")
ok("-F: ... and nothing is frozen", r1 == r2 == {"return": "thawed"}, f"ours {r1} qemu-ga {r2}")
for h in hooks.values():
    os.unlink(h)
r1, r2 = (a.cmd("guest-fsfreeze-thaw") for a in (ours, theirs))
ok("-F: a hook that is gone: qemu-ga's error", "error" in r1 and
   r1["error"]["desc"].replace(hooks["qkvm-ga-F"], "HOOK") == r2.get("error", {}).get("desc", "").replace(hooks["qemu-ga-F"], "HOOK"),
   f"ours {r1} qemu-ga {r2}")
ours.stop()
theirs.stop()
ours.log.close()
log = open(os.path.join(TMP, "qkvm-ga-F.log")).read()
ok("-F: the hook's output is in qkvm-ga's log", "hook says freeze" in log and "refusing freeze" in log, log[-300:])
sys.exit(0)
