#!/usr/bin/env python3
"""Crash simulation for qcow2 writers, driven by img-crash.sh.

A writer (qkvm-io or qkvm-img) is killed with SIGKILL just before its Nth pwrite64 (strace's
fault injection), for every N of a step or a sample of them. Then:
  - qemu-img check finds no corruption (leaks allowed); lazy_refcounts images left dirty are
    exempt until the next read-write open, which must repair them;
  - every 512-byte sector reads (through qemu) as one of the states the step went through since
    its last completed flush: flushed writes are never lost, nothing else appears;
  - qkvm reads the crashed image exactly as qemu does;
  - a later writer (qkvm-io) opens the image, repairs it if dirty, writes, and the result again
    passes qemu-img check with the write in place.
Prints TAP lines (ok/not ok) through the caller's naming; exits 0.

usage: crashsim.py BUILD_DIR WORK_DIR [--all] [--seed N] [--per-step K] [--config NAME]
       crashsim.py verify-log RAW START_LOG DONE_LOG LENGTH
"""
import os
import random
import re
import shutil
import subprocess
import sys

MiB = 1 << 20
SIZE = 8 * MiB
SEC = 512

CONFIGS = [
    # name, create options, base gets a snapshot
    ("64k", "cluster_size=64k", False),
    ("4k-refcount1", "cluster_size=4k,refcount_bits=1", False),
    ("lazy", "cluster_size=4k,lazy_refcounts=on", False),
    ("extended-l2", "extended_l2=on,cluster_size=64k", False),
    ("v2", "compat=0.10,cluster_size=4k", False),
    ("512-refcount64", "cluster_size=512,refcount_bits=64", False),
    ("snapshot", "cluster_size=4k", True),
    ("lazy-snapshot-extl2", "cluster_size=16k,lazy_refcounts=on,extended_l2=on", True),
    # caches of two L2 tables and four refcount blocks: every path that evicts
    ("512-tiny-cache", "cluster_size=512", False, "l2-cache-size=1k,refcount-cache-size=2k"),
    ("lazy-tiny-cache", "cluster_size=4k,lazy_refcounts=on", False,
     "l2-cache-size=8k,refcount-cache-size=16k"),
]


def steps(cs, snap, opts):
    """Each step: (name, commands for one qkvm-io process) or (name, argv of a tool)."""
    k = 1024
    s = [
        ("allocate", ["write -P 2 1100000 70000", "flush", "write -P 3 2M 300k",
                      "write -P 4 %d 5000" % (6 * MiB + 512), "flush"]),
        ("overwrite-zero-discard-reuse",
         ["write -P 5 4096 8192", "write -z 100000 20000", "flush", "discard 256k 256k", "flush",
          "write -P 6 7M 256k", "flush"]),
        ("compressed", ["write -c -P 7 %d %d" % (5 * MiB, cs),
                        "write -c -P 8 %d %d" % (5 * MiB + cs, cs), "flush",
                        "write -P 9 %d 300" % (5 * MiB + 100), "flush",
                        "discard %d %d" % (5 * MiB + cs, cs), "flush"]),
        ("zero-unmap-realloc", ["write -z -u 4M 256k", "flush", "write -P 10 %d 100k" %
                                (4 * MiB + 1000), "flush"]),
        ("scattered", ["write -P %d %d 3000" % (11 + i % 5, i * 397 * k + 7) for i in range(20)]
         + ["flush"]),
    ]
    if not snap:
        s.append(("resize-grow", ["resize", "{img}", "+8M"]))
        s.append(("after-resize", ["write -P 23 %d 70000" % (12 * MiB + 3000), "flush"]))
        s.append(("resize-shrink", ["resize", "--shrink", "{img}", "-8M"]))
    if "compat=0.10" in opts:
        s.append(("amend-upgrade", ["amend", "-o", "compat=1.1", "{img}"]))
    elif not snap and "extended_l2" not in opts and "refcount_bits" not in opts:
        s.append(("zero-clusters", ["write -z 6M 512k", "flush"]))
        lazy = "lazy_refcounts=on" in opts
        s.append(("amend-lazy", ["amend", "-o", "lazy_refcounts=" + ("off" if lazy else "on"),
                                 "{img}"]))
        if not lazy:
            s.append(("amend-lazy-off", ["amend", "-o", "lazy_refcounts=off", "{img}"]))
        s.append(("amend-downgrade", ["amend", "-o", "compat=0.10", "{img}"]))
    if snap:
        s.append(("snapshot-create", ["snapshot", "-c", "s2"]))
        s.append(("snapshot-apply", ["snapshot", "-a", "s1"]))
        s.append(("write-after-apply", ["write -P 21 0 200k", "flush", "write -P 22 %d 4096" %
                                        (5 * MiB + 1000), "flush"]))
        s.append(("snapshot-delete", ["snapshot", "-d", "s1"]))
    return s


class Sim:
    def __init__(self, build, work, seed, per_step, everything):
        self.qio = os.path.join(build, "qkvm-io")
        self.qimg = os.path.join(build, "qkvm-img")
        self.work = work
        self.rng = random.Random(seed)
        self.per_step = per_step
        self.everything = everything
        self.passed = self.failed = 0
        self.snap_refs = {}
        self.snaps_compared = 0
        self.io_opts = None

    def run(self, argv, check=True, **kw):
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                           **kw)
        if check and p.returncode != 0:
            raise RuntimeError("%s: rc=%d %s" % (" ".join(argv), p.returncode,
                                                  p.stderr.decode(errors="replace")[:300]))
        return p

    def raw(self, img, tool="qemu"):
        out = img + ".raw"
        if tool == "qemu":
            self.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", img, out])
        else:
            self.run([self.qimg, "convert", "-U", "-f", "qcow2", "-O", "raw", img, out])
        with open(out, "rb") as f:
            data = f.read()
        os.unlink(out)
        return data

    def step_argv(self, step, img):
        name, what = step
        if what[0] in ("snapshot", "resize", "amend", "commit"):
            if "{img}" in what:
                return [self.qimg] + [img if w == "{img}" else w for w in what], None
            return [self.qimg] + what + [img], None
        # line-buffered, so the commands done before the kill are seen
        argv = ["stdbuf", "-oL", self.qio]
        for c in what:
            argv += ["-c", c, "-c", "length"]
        if self.io_opts:
            return argv + ["--image-opts", "driver=qcow2,file.filename=%s,%s" %
                           (img, self.io_opts)], what
        return argv + [img], what

    def states(self, step, base):
        """Raw contents after each command of the step (run without a kill)."""
        argv, cmds = self.step_argv(step, base)
        out = [self.raw(base)]
        if cmds is None:
            tmp = base + ".prefix"
            shutil.copyfile(base, tmp)
            self.run(self.step_argv(step, tmp)[0])
            out.append(self.raw(tmp))
            os.unlink(tmp)
            if "--shrink" in step[1]:
                # the tail is discarded before the header says the new size (as QEMU does)
                out.insert(1, out[0][:len(out[1])] + bytes(len(out[0]) - len(out[1])))
                return out, [False, False, True]
            return out, [False, True]
        flushes = [False]
        for i in range(len(cmds)):
            tmp = base + ".prefix"
            shutil.copyfile(base, tmp)
            a = [self.qio]
            for c in cmds[:i + 1]:
                a += ["-c", c]
            self.run(a + [tmp])
            out.append(self.raw(tmp))
            flushes.append(cmds[i] == "flush")
            os.unlink(tmp)
        return out, flushes

    def count_pwrites(self, step, base):
        tmp = base + ".count"
        shutil.copyfile(base, tmp)
        argv, _ = self.step_argv(step, tmp)
        log = os.path.join(self.work, "strace.log")
        self.run(["strace", "-f", "-o", log, "-e", "trace=pwrite64"] + argv)
        with open(log) as f:
            n = sum(1 for l in f if "pwrite64(" in l)
        os.unlink(log)
        os.unlink(tmp)
        return n

    def report(self, ok, name, why=""):
        if ok:
            self.passed += 1
            print("ok - %s" % name)
        else:
            self.failed += 1
            print("not ok - %s: %s" % (name, why))
        sys.stdout.flush()

    def header_dirty(self, img):
        with open(img, "rb") as f:
            h = f.read(80)
        return int.from_bytes(h[4:8], "big") >= 3 and (h[79] & 1)

    def qcheck(self, img):
        p = self.run(["qemu-img", "check", "-U", img], check=False)
        out = (p.stdout + p.stderr).decode(errors="replace")
        return p.returncode in (0, 3), "rc=%d %s" % (p.returncode, " | ".join(
            l for l in out.splitlines() if "ERROR" in l or "rror" in l)[:400])

    def verify_sectors(self, data, allowed):
        if any(data == a for a in allowed):
            return None
        allowed = [a for a in allowed if len(a) == len(data)]
        if not allowed:
            return "virtual size %d is none of the states'" % len(data)
        for off in range(0, len(data), SEC):
            piece = data[off:off + SEC]
            if not any(piece == a[off:off + SEC] for a in allowed):
                return "sector at %d reads %s..., none of the %d allowed states" % (
                    off, piece[:8].hex(), len(allowed))
        return None

    def one(self, cfg, step, base, states, flushes, kill_at):
        name = "crash %s/%s kill@pwrite#%d" % (cfg, step[0], kill_at)
        img = os.path.join(self.work, "crash.qcow2")
        shutil.copyfile(base, img)
        argv, cmds = self.step_argv(step, img)
        p = self.run(["strace", "-f", "-o", "/dev/null", "-e",
                      "inject=pwrite64:signal=KILL:when=%d" % kill_at] + argv, check=False)
        done = sum(1 for l in p.stdout.decode().splitlines() if l.endswith("MiB")) if cmds else 0
        if p.returncode == 0:
            self.report(False, name, "the writer was not killed")
            return
        if cmds is None:
            done = 0
        # states a sector may show: from the last completed flush up to the command in flight
        lo = max([j for j in range(done + 1) if flushes[j]] + [0])
        allowed = states[lo:done + 2] if cmds is not None else states
        lazy_dirty = self.header_dirty(img)
        if not lazy_dirty:
            ok, why = self.qcheck(img)
            if not ok:
                self.report(False, name + ": qemu-img check", why)
                return
        data = self.raw(img)
        why = self.verify_sectors(data, allowed)
        if why:
            self.report(False, name + ": contents", why)
            return
        if self.raw(img, "qkvm") != data:
            self.report(False, name + ": qkvm reads", "differ from qemu's")
            return
        if lazy_dirty:
            # QEMU's own repair must accept what we left
            qimg = img + ".qemu"
            shutil.copyfile(img, qimg)
            self.run(["qemu-io", "-c", "flush", qimg])
            ok, why = self.qcheck(qimg)
            os.unlink(qimg)
            if not ok:
                self.report(False, name + ": after qemu's repair", why)
                return
        # the next writer: repairs (lazy), allocates, writes
        off = 7 * MiB + 300 * 1024 + 100
        self.run([self.qio, "-c", "write -P 99 %d 5000" % off, "-c", "write -P 98 %d 4096" %
                  (3 * MiB + 2048), "-c", "flush", img])
        ok, why = self.qcheck(img)
        if not ok:
            self.report(False, name + ": after the next writer", why)
            return
        want = bytearray(data)
        want[off:off + 5000] = b"\x63" * 5000
        want[3 * MiB + 2048:3 * MiB + 2048 + 4096] = b"\x62" * 4096
        if self.raw(img) != bytes(want):
            self.report(False, name + ": after the next writer", "contents differ")
            return
        why = self.verify_snapshots(img, step)
        if why:
            self.report(False, name + ": snapshots", why)
            return
        self.report(True, name)

    def verify_snapshots(self, img, step):
        """Every snapshot reads as it did when taken; only the one being created or deleted
        may be missing."""
        if not self.snap_refs:
            return None
        out = self.run(["qemu-img", "snapshot", "-U", "-l", img]).stdout.decode()
        names = [l.split()[1] for l in out.splitlines()[2:] if len(l.split()) > 1]
        what = step[1]
        optional = what[2] if what[0] == "snapshot" and what[1] in ("-c", "-d") else None
        for n in self.snap_refs:
            if n not in names and n != optional:
                return "snapshot %s is gone" % n
        for n in names:
            if n not in self.snap_refs and n != optional:
                return "unknown snapshot %s" % n
            tmp = img + ".snap.raw"
            self.run(["qemu-img", "convert", "-U", "-l", "snapshot.name=" + n, "-O", "raw",
                      img, tmp])
            with open(tmp, "rb") as f:
                data = f.read()
            os.unlink(tmp)
            if n in self.snap_refs and data != self.snap_refs[n]:
                return "snapshot %s reads differently" % n
            self.snaps_compared += 1
        return None

    def config(self, cfg, opts, snap, io_opts=None):
        self.io_opts = io_opts
        base = os.path.join(self.work, "base.qcow2")
        self.run([self.qimg, "create", "-q", "-f", "qcow2", "-o", opts, base, str(SIZE)])
        self.run([self.qio, "-c", "write -P 1 0 1M", "-c", "write -P 1 4M 512k", base])
        self.snap_refs = {}
        if snap:
            self.run([self.qimg, "snapshot", "-c", "s1", base])
            self.snap_refs["s1"] = self.raw(base)
            self.run([self.qio, "-c", "write -P 20 64k 64k", base])
        m = re.search(r"cluster_size=(\d+)(k?)", opts)
        cs = int(m.group(1)) * (1024 if m.group(2) else 1) if m else 65536
        for step in steps(cs, snap, opts):
            argv, _ = self.step_argv(step, base)
            states, flushes = self.states(step, base)
            n = self.count_pwrites(step, base)
            points = list(range(1, n + 1))
            if not self.everything and len(points) > self.per_step:
                points = sorted(self.rng.sample(points, self.per_step))
            for k in points:
                self.one(cfg, step, base, states, flushes, k)
            # the next step starts from this one's complete result
            self.run(argv)
            if step[1][0] == "snapshot" and step[1][1] == "-c":
                self.snap_refs[step[1][2]] = states[0]
            if step[1][0] == "snapshot" and step[1][1] == "-d":
                del self.snap_refs[step[1][2]]


def verify_log(raw_path, start_log, done_log, length):
    """The random-kill loop of img-crash.sh: each line of start_log is "I OFF" before a writer
    wrote pattern I%250+1 over [OFF, OFF+length) and flushed; done_log lists those that
    finished. Per 512-byte sector: the last finished pattern or one started after it; nothing
    outside the written ranges."""
    with open(raw_path, "rb") as f:
        raw = f.read()
    started = [tuple(map(int, l.split())) for l in open(start_log) if l.strip()]
    done = set(int(l.split()[0]) for l in open(done_log) if l.strip())
    byoff = {}
    for i, off in started:
        byoff.setdefault(off, []).append(i)
    bad = []
    covered = bytearray(len(raw) // SEC + 1)
    for off, its in sorted(byoff.items()):
        finished = [i for i in its if i in done]
        last = max(finished) if finished else None
        ok = {0} if last is None else {last % 250 + 1}
        ok |= {i % 250 + 1 for i in its if last is None or i > last}
        pos = off
        while pos < off + length:
            nxt = min((pos // SEC + 1) * SEC, off + length)
            piece = raw[pos:nxt]
            if piece != bytes([piece[0]]) * len(piece) or piece[0] not in ok:
                bad.append("offset %d: sector at %d reads %s, expected one of %s" %
                           (off, pos, piece[:4].hex(), sorted(ok)))
                break
            pos = nxt
        for sec in range(off // SEC, (off + length - 1) // SEC + 1):
            covered[sec] = 1
    for sec in range(len(raw) // SEC):
        if not covered[sec] and raw[sec * SEC:(sec + 1) * SEC].count(0) != SEC:
            bad.append("data at %d where nothing was written" % (sec * SEC))
            break
    checked = sum(1 for its in byoff.values() if any(i in done for i in its))
    print("%d %s" % (checked, bad[0] if bad else ""))
    return 0


def main():
    args = sys.argv[1:]
    if args and args[0] == "verify-log":
        return verify_log(args[1], args[2], args[3], int(args[4]))
    build, work = args[0], args[1]
    seed = int(os.environ.get("QKVM_CRASH_SEED", random.SystemRandom().randrange(1 << 30)))
    per_step, everything, only = 3, False, None
    i = 2
    while i < len(args):
        if args[i] == "--all":
            everything = True
        elif args[i] == "--seed":
            seed = int(args[i + 1]); i += 1
        elif args[i] == "--per-step":
            per_step = int(args[i + 1]); i += 1
        elif args[i] == "--config":
            only = args[i + 1]; i += 1
        i += 1
    print("# crashsim seed %d (QKVM_CRASH_SEED=%d reproduces)" % (seed, seed))
    sim = Sim(build, work, seed, per_step, everything)
    for c in CONFIGS:
        if only and c[0] != only:
            continue
        try:
            sim.config(*c)
        except Exception as e:  # a setup step failed: one failure, go on
            sim.report(False, "crash %s: setup" % c[0], str(e)[:300])
    print("# %d crash points, %d snapshot contents compared" % (sim.passed + sim.failed,
                                                              sim.snaps_compared))
    return 0


if __name__ == "__main__":
    sys.exit(main())
