"""Shared by the bench/ scripts: run a command several times, take medians of wall time and
peak RSS (from bench/launch, so the child's own peak, not ours, and the time until every process
it started has exited), print tables and what ran.
Every script accepts --markdown: its tables come out as Markdown, after a header saying what ran on
each side (command lines, versions, machine, date), for docs/ to paste verbatim."""
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = os.environ.get("B", "build")
MARKDOWN = "--markdown" in sys.argv
INVOCATION = " ".join(["bench/" + os.path.basename(sys.argv[0])] + sys.argv[1:])
if MARKDOWN:
    sys.argv.remove("--markdown")


def path(*p):
    return os.path.join(TOP, *p)


def launch(cmd, ok=(0,), timeout=600):
    """One run through bench/launch: its fields (wall_us: until every descendant exited, main_us:
    until cmd itself did, maxrss_kb, user_us, sys_us, status, procs) and 'out', cmd's stdout."""
    p = subprocess.run([path(B, "bench/launch")] + cmd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    last = p.stderr.decode(errors="replace").strip().splitlines()[-1]
    f = {k: int(v) for k, v in (kv.split("=") for kv in last.split()[1:])}
    if f["status"] not in ok:
        raise RuntimeError("%s exited %s: %s" % (" ".join(cmd), f["status"], p.stderr.decode(errors="replace")[-300:]))
    f["out"] = p.stdout
    return f


def run_rss(cmd, ok=(0,), timeout=600):
    """One run: (seconds until every process cmd started has exited, peak RSS KiB, stdout bytes)."""
    f = launch(cmd, ok, timeout)
    return f["wall_us"] / 1e6, f["maxrss_kb"], f["out"]


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


def version(cmd):
    """The first line of `cmd --version`, or qkvm's git revision for programs of this tree."""
    if cmd.startswith(TOP):
        rev = subprocess.run(["git", "-C", TOP, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        return "qkvm tree at %s (%s)" % (rev or "?", os.path.relpath(cmd, TOP))
    out = subprocess.run([cmd, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else cmd


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return "%s, %d cores, Linux %s, load average at start %s" % (cpu, os.cpu_count(), platform.release(), load)


def describe(sides, notes=()):
    """Says what ran: sides is [(name, cmd)]. Markdown under --markdown, plain text otherwise."""
    rel = lambda c: " ".join(shlex.quote(os.path.relpath(a, TOP) if a.startswith(TOP + "/") else a) for a in c)
    lines = ["Produced by `%s` on %s." % (INVOCATION, time.strftime("%Y-%m-%d %H:%M %Z")),
             "Machine: %s." % machine()]
    for name, cmd in sides:
        lines.append("- %s: `%s` (%s)" % (name, rel(cmd), version(cmd[0])))
    lines += list(notes)
    print("\n".join(lines) + "\n")


def table(rows, header):
    if MARKDOWN:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(" --- " for _ in header) + "|")
        for r in rows:
            print("| " + " | ".join(str(c) for c in r) + " |")
        print()
        return
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    print(fmt % tuple(header))
    for r in rows:
        print(fmt % tuple(r))
