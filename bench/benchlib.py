"""Shared by the bench/ scripts: run a command several times, take medians of wall time and
peak RSS (from wait4's rusage, so the child's own peak, not ours), print ratios."""
import os
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = os.environ.get("B", "build")


def path(*p):
    return os.path.join(TOP, *p)


def run_rss(cmd, ok=(0,), timeout=600):
    """One run through bench/launch: (seconds, peak RSS KiB, stdout bytes)."""
    p = subprocess.run([path(B, "bench/launch")] + cmd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    last = p.stderr.decode(errors="replace").strip().splitlines()[-1]
    f = dict(kv.split("=") for kv in last.split()[1:])
    if int(f["status"]) not in ok:
        raise RuntimeError("%s exited %s: %s" % (" ".join(cmd), f["status"], p.stderr.decode(errors="replace")[-300:]))
    return int(f["wall_us"]) / 1e6, int(f["maxrss_kb"]), p.stdout


def medians(cmd, n, ok=(0,)):
    """Runs cmd n times (after one warm-up run); returns (median seconds, median peak RSS KiB)."""
    run_rss(cmd, ok)
    ts, rs = [], []
    for _ in range(n):
        dt, rss, _ = run_rss(cmd, ok)
        ts.append(dt)
        rs.append(rss)
    return statistics.median(ts), statistics.median(rs)


def have(cmd):
    from shutil import which
    return which(cmd) is not None


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    print(fmt % tuple(header))
    for r in rows:
        print(fmt % tuple(r))
