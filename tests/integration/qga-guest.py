#!/usr/bin/env python3
"""The agents inside a booted Linux guest (qga-guest.sh boots it, under qkvm or QEMU): qkvm-ga on
org.qemu.guest_agent.0 and Debian's qemu-ga on a second port of the same virtio-serial device.
Both are asked the same commands; the replies must have the same keys and JSON types, and the
same values where the answer is a fact of the guest. Then what only qkvm-ga is asked here: exec
with input, a file round trip, ssh keys, and the virtio-net card by its MAC.
Usage: qga-guest.py LABEL QKVM_GA_SOCKET QEMU_GA_SOCKET MAC IFACES_OUT
MAC may be "-" (no card); IFACES_OUT gets qkvm-ga's guest-network-get-interfaces reply, which
qga-guest.sh checks against the guest's /sys. Prints TAP lines."""
import base64, json, socket, sys, time

from qga_shape import same_shape, shape

LABEL, OURS, THEIRS, MAC, IFACES_OUT = sys.argv[1:6]


def ok(name, cond, why=""):
    print(("ok - " if cond else "not ok - ") + f"{LABEL}: {name}" + ("" if cond else f": {why}"), flush=True)
    return cond


class Agent:
    def __init__(self, name, path):
        self.name = name
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""

    def reply(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(self.name + ": port closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line.lstrip(b"\xff"))

    def cmd(self, execute, args=None):
        req = {"execute": execute}
        if args is not None:
            req["arguments"] = args
        self.s.sendall(json.dumps(req).encode() + b"\n")
        return self.reply()

    def resync(self):
        """The agent may not be reading yet: resync until the id comes back, as libvirt does."""
        for attempt in range(60):
            sid = 1000 + attempt
            self.s.sendall(b'\xff{"execute":"guest-sync-delimited","arguments":{"id":%d}}\n' % sid)
            try:
                self.s.settimeout(2)
                while self.reply().get("return") != sid:
                    pass
            except (socket.timeout, ValueError):
                continue
            self.s.settimeout(120)
            return True
        return False

    def run(self, args):
        pid = self.cmd("guest-exec", args)["return"]["pid"]
        for _ in range(600):
            st = self.cmd("guest-exec-status", {"pid": pid})["return"]
            if st["exited"]:
                return st
            time.sleep(0.2)
        return st


ours, theirs = Agent("qkvm-ga", OURS), Agent("qemu-ga", THEIRS)
up = [ok(f"{a.name}: guest-sync-delimited through virtio-serial", a.resync(), "no reply") for a in (ours, theirs)]
if not up[0]:
    sys.exit(0)


def both(name, execute, args=None, key=None):
    r1 = ours.cmd(execute, args)
    if not up[1]:
        return r1, None
    r2 = theirs.cmd(execute, args)
    d = same_shape(shape(r1), shape(r2))
    ok(f"{name}: same keys and types as qemu-ga's", d is None, f"{d}; ours {json.dumps(r1)[:300]} qemu-ga {json.dumps(r2)[:300]}")
    if key:
        v1, v2 = key(r1.get("return")), key(r2.get("return"))
        ok(f"{name}: same value as qemu-ga's", v1 == v2, f"ours {v1} qemu-ga {v2}")
    return r1, r2


ident = lambda v: v
both("guest-ping", "guest-ping", key=ident)
r1, r2 = both("guest-info", "guest-info")
if r2:
    mine = {c["name"] for c in r1["return"]["supported_commands"]}
    real = {c["name"] for c in r2["return"]["supported_commands"]}
    ok("guest-info: the same commands as qemu-ga lists", mine == real, f"only ours {mine - real}, only qemu-ga {real - mine}")
r1, _ = both("guest-get-osinfo", "guest-get-osinfo", key=ident)
info = r1.get("return", {})
ok("guest-get-osinfo names the guest's kernel", info.get("machine") == "x86_64" and info.get("kernel-release"), str(info))
both("guest-get-host-name", "guest-get-host-name", key=ident)
both("guest-get-timezone", "guest-get-timezone", key=ident)
both("guest-get-vcpus", "guest-get-vcpus", key=lambda v: sorted(json.dumps(c, sort_keys=True) for c in v))
both("guest-get-memory-block-info", "guest-get-memory-block-info", key=ident)
both("guest-get-memory-blocks", "guest-get-memory-blocks", key=lambda v: len(v))
both("guest-get-cpustats", "guest-get-cpustats", key=lambda v: sorted(c["cpu"] for c in v))
both("guest-get-diskstats", "guest-get-diskstats", key=lambda v: sorted((d["name"], d["major"], d["minor"]) for d in v))
both("guest-get-disks", "guest-get-disks", key=lambda v: sorted(json.dumps(d, sort_keys=True) for d in v))
both("guest-get-fsinfo", "guest-get-fsinfo", key=lambda v: sorted((f["name"], f["mountpoint"], f["type"]) for f in v))
both("guest-fsfreeze-status", "guest-fsfreeze-status", key=ident)
r1, r2 = both("guest-network-get-interfaces", "guest-network-get-interfaces",
              key=lambda v: sorted((i["name"], i.get("hardware-address"),
                                    tuple(sorted(a["ip-address"] + "/" + str(a["prefix"]) for a in i.get("ip-addresses", []))))
                                   for i in v))
ifs = r1.get("return", [])
with open(IFACES_OUT, "w") as f:
    json.dump(ifs, f)
if MAC != "-":
    card = [i for i in ifs if i.get("hardware-address") == MAC]
    ok(f"guest-network-get-interfaces names the virtio-net card with mac={MAC}", len(card) == 1 and card[0]["name"] != "lo", str(ifs)[:400])
    print(f"# {LABEL}: {json.dumps(card)}")
    ok("guest-network-get-interfaces: the card's address and prefix",
       card and any(a["ip-address"] == "10.0.2.15" and a["prefix"] == 24 and a["ip-address-type"] == "ipv4"
                    for a in card[0].get("ip-addresses", [])), str(card)[:400])
ok("guest-network-get-interfaces: the loopback", any(i.get("name") == "lo" and i.get("hardware-address") == "00:00:00:00:00:00" for i in ifs), str(ifs)[:300])

# the same program run by both agents: output, exit code, stdin
args = {"path": "/bin/sh", "arg": ["-c", "cat /proc/sys/kernel/osrelease; read x; echo got-$x; exit 4"],
        "input-data": base64.b64encode(b"input\n").decode(), "capture-output": True}
for a in (ours, theirs) if up[1] else (ours,):
    st = a.run(args)
    out = base64.b64decode(st.get("out-data", "")).decode()
    ok(f"{a.name}: guest-exec: output, stdin and exit code", st.get("exitcode") == 4 and out.split() == [info.get("kernel-release"), "got-input"], str(st))
    a.exec_status = st
if up[1]:
    d = same_shape(shape(ours.exec_status), shape(theirs.exec_status))
    ok("guest-exec-status: same keys and types as qemu-ga's", d is None, f"{d}: {ours.exec_status} {theirs.exec_status}")
# a file written by one agent is read back by the other
h = ours.cmd("guest-file-open", {"path": "/tmp/qga-file", "mode": "w"})["return"]
ours.cmd("guest-file-write", {"handle": h, "buf-b64": base64.b64encode(b"from the host\n").decode()})
ours.cmd("guest-file-close", {"handle": h})
for a in (ours, theirs) if up[1] else (ours,):
    h = a.cmd("guest-file-open", {"path": "/tmp/qga-file"})["return"]
    rd = a.cmd("guest-file-read", {"handle": h})["return"]
    a.cmd("guest-file-close", {"handle": h})
    ok(f"guest-file round trip: qkvm-ga writes, {a.name} reads", base64.b64decode(rd["buf-b64"]) == b"from the host\n" and rd["eof"], str(rd))

k1, k2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIqkvmga1 one@host", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIqkvmga2 two@host"
r = ours.cmd("guest-ssh-add-authorized-keys", {"username": "root", "keys": [k1, k2]})
ok("guest-ssh-add-authorized-keys", r == {"return": {}}, str(r))
ours.cmd("guest-ssh-remove-authorized-keys", {"username": "root", "keys": [k1]})
r = ours.cmd("guest-ssh-get-authorized-keys", {"username": "root"})
ok("guest-ssh: add two, remove one, one left", r == {"return": {"keys": [k2]}}, str(r))
if up[1]:
    r2 = theirs.cmd("guest-ssh-get-authorized-keys", {"username": "root"})
    ok("guest-ssh: qemu-ga reads the key file qkvm-ga wrote", r2 == r, f"{r2}")
st = ours.run({"path": "/bin/sh", "arg": ["-c", "stat -c %a /root/.ssh /root/.ssh/authorized_keys"], "capture-output": True})
ok("guest-ssh: sshd's modes (700 and 600)", base64.b64decode(st.get("out-data", "")).split() == [b"700", b"600"], str(st))
