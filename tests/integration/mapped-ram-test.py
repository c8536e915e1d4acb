#!/usr/bin/env python3
"""mapped-ram save and lazy restore on the tiny memloop64 guest: run by mapped-ram.sh (which says
what is checked), prints TAP lines.
    mapped-ram-test.py QKVM GUESTS_DIR TMP"""
import hashlib, os, re, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP

QKVM, GUESTS, TMP = sys.argv[1:4]
G = ["-accel", "tcg", "-m", "64M", "-kernel", os.path.join(GUESTS, "memloop64.bin"), "-append", "console=ttyS0"]
MR = ["-global", "migration.mapped-ram=on"]
MIB = 1 << 20
procs = {}


def ok(name, cond, why=""):
    print(("ok - " if cond else "not ok - ") + name + ("" if cond or not why else ": " + str(why)[:300]), flush=True)
    return cond


def start(name, args):
    """A qkvm in the background with a QMP socket; its console in TMP/NAME.out."""
    sock = os.path.join(TMP, "qmp." + name)
    if os.path.exists(sock):
        os.unlink(sock)
    out = os.path.join(TMP, name + ".out")
    p = subprocess.Popen([QKVM] + args + ["-qmp", "unix:%s,server=on,wait=off" % sock], stdin=subprocess.DEVNULL,
                         stdout=open(out, "wb"), stderr=open(out + ".err", "wb"))
    p.name = name
    procs[name] = p
    p.q = QMP(sock)
    return p


def console(p):
    with open(os.path.join(TMP, p.name + ".out"), "rb") as f:
        return f.read().decode("utf-8", "replace").replace("\r", "")


def rounds(p):
    return [int(x) for x in re.findall(r"^round=(\d+)$", console(p), re.M)]


def bad(p):
    m = re.search(r"^bad=.*$", console(p), re.M)
    return m.group(0) if m else None


def wait_round(p, n, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = rounds(p)
        if (r and r[-1] >= n) or bad(p) or p.poll() is not None:
            break
        time.sleep(0.05)
    r = rounds(p)
    return bool(r) and r[-1] >= n and not bad(p)


def cmd(p, name, args=None):
    return p.q.cmd(name, args)


def cap(p, on):
    return cmd(p, "migrate-set-capabilities", {"capabilities": [{"capability": "mapped-ram", "state": on}]})


def migrate(p, uri, timeout=120):
    """migrate, then query-migrate until it ends; the last reply's return."""
    r = cmd(p, "migrate", {"uri": uri})
    if "error" in r:
        return r
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = cmd(p, "query-migrate")["return"]
        if info.get("status") in ("completed", "failed", "cancelled"):
            return info
        time.sleep(0.05)
    return {"status": "timeout"}


def wait_incoming(p, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = cmd(p, "query-migrate")["return"]
        if info.get("status") in ("completed", "failed"):
            return info
        time.sleep(0.02)
    return {}


def status(p):
    return cmd(p, "query-status")["return"]["status"]


def anon_kb(p):
    with open("/proc/%d/status" % p.pid) as f:
        return int(re.search(r"^RssAnon:\s+(\d+)", f.read(), re.M).group(1))


def quit(p):
    try:
        cmd(p, "quit")
    except (EOFError, OSError):
        pass
    p.wait(timeout=30)


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def same_pages(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        f.seek(MIB)
        g.seek(MIB)
        while True:
            x, y = f.read(MIB), g.read(MIB)
            if x != y:
                return False
            if not x:
                return True


def main():
    state, plain, state2 = (os.path.join(TMP, n) for n in ("state", "plain", "state2"))
    # --- 1. save ---
    src = start("src", G)
    if not ok("the tiny guest rewrites and checks 32 MiB", wait_round(src, 2), bad(src) or console(src)[-200:]):
        return
    cap(src, True)
    caps = cmd(src, "query-migrate-capabilities")["return"]
    ok("migrate-set-capabilities mapped-ram: query-migrate-capabilities shows it on",
       {"capability": "mapped-ram", "state": True} in caps, caps)
    for uri in ("tcp:127.0.0.1:1", "unix:" + os.path.join(TMP, "nothing.sock"), "exec:cat > " + os.path.join(TMP, "x")):
        r = cmd(src, "migrate", {"uri": uri})
        ok("mapped-ram with %s refused as QEMU does" % uri.split(":")[0],
           r.get("error", {}).get("desc") == "Migration requires seekable transport (e.g. file)", r)
    ok("the guest runs on after the refusals", status(src) == "running")
    info = migrate(src, "file:" + state)
    ok("migrate file: with mapped-ram completes", info.get("status") == "completed", info)
    ok("the source is left in postmigrate", status(src) == "postmigrate")
    saved = rounds(src)[-1]
    st = os.stat(state)
    ok("the file is 1 MiB of head and then the 64 MiB of RAM", st.st_size == MIB + 64 * MIB, st.st_size)
    used = st.st_blocks * 512
    ok("zero pages are holes: %d MiB of the file is allocated (32 MiB of data)" % (used // MIB),
       32 * MIB <= used < 40 * MIB, used)
    cap(src, False)
    info = migrate(src, "file:" + plain)
    ok("the same paused guest to a plain stream", info.get("status") == "completed", info)
    quit(src)
    sum0 = md5(state)

    # --- 2. restore paused: memory, and every page back out ---
    a = start("a", G + MR + ["-incoming", "file:" + state, "-S"])
    info = wait_incoming(a)
    ok("-incoming file: with mapped-ram completes", info.get("status") == "completed", info)
    f = start("f", G + ["-incoming", "file:" + plain, "-S"])
    wait_incoming(f)
    lazy, full = anon_kb(a), anon_kb(f)
    ok("restored, before running: %d KiB anonymous memory mapped from the file, %d KiB read from a plain stream"
       % (lazy, full), lazy < 16384 and full - lazy >= 24576)
    quit(f)
    r = cmd(a, "migrate", {"uri": "file:" + state})
    ok("migrate onto the file that backs RAM: refused", "mapped from that file" in r.get("error", {}).get("desc", ""), r)
    info = migrate(a, "file:" + state2)
    ok("the restored guest, untouched, saves again", info.get("status") == "completed", info)
    ok("every page it saves is the first file's, byte for byte", same_pages(state, state2))

    # --- 3. two restores from one file at once ---
    cmd(a, "cont")
    # the other as QEMU's users do it: -incoming defer, the capability, migrate-incoming; it runs
    # once the state is in (no -S)
    b = start("b", G + ["-incoming", "defer"])
    cap(b, True)
    r = cmd(b, "migrate-incoming", {"uri": "file:" + state})
    ok("-incoming defer, then mapped-ram and migrate-incoming", r.get("return") == {}, r)
    # round saved + 1 ends the round the save cut; saved + 2 reads every qword written before it
    wait_round(a, saved + 2)
    wait_round(b, saved + 2)
    for p in (a, b):
        r = rounds(p)
        ok("restore %s runs on from round %d, every qword as written before the save (rounds %s..%s)"
           % (p.name, saved, r[0] if r else "-", r[-1] if r else "-"),
           not bad(p) and r and r[0] == saved + 1 and r[-1] >= saved + 2, bad(p) or r[:5])
    ok("the file is unchanged by two guests writing their memory", md5(state) == sum0)
    quit(b)

    # cont while waiting for the state (-S, -incoming defer): it runs once the state is in, as in QEMU
    d = start("d", G + ["-incoming", "defer", "-S"])
    cmd(d, "cont")
    ok("cont before migrate-incoming: the guest waits (inmigrate)", status(d) == "inmigrate", status(d))
    cmd(d, "migrate-incoming", {"uri": "file:" + plain})
    wait_incoming(d)
    r = wait_round(d, saved + 1) and rounds(d)
    ok("then it runs from the state (round %s after %d)" % (r[0] if r else "-", saved), r and r[0] == saved + 1,
       bad(d) or console(d)[-200:])
    quit(d)

    # --- 4. the restored guest migrates live ---
    sock = os.path.join(TMP, "mig.sock")
    c = start("c", G + ["-incoming", "unix:" + sock])
    cap(a, False)
    cmd(a, "migrate-set-parameters", {"max-bandwidth": 0})
    info = migrate(a, "unix:" + sock)
    ok("live migration of a restored guest completes (%s rounds)" % info.get("ram", {}).get("dirty-sync-count"),
       info.get("status") == "completed", info)
    left = rounds(a)[-1]
    wait_round(c, left + 2)
    r = rounds(c)
    ok("it runs on at its destination, no qword lost (rounds %s..%s after %d)" % (r[0] if r else "-", r[-1] if r else "-", left),
       not bad(c) and r and r[0] == left + 1 and r[-1] >= left + 2, bad(c) or console(c)[-200:])
    quit(a)
    quit(c)


try:
    main()
finally:
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()
