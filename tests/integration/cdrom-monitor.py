#!/usr/bin/env python3
"""The CD-ROM through the monitor, for cdrom.sh: eject, blockdev-change-medium, query-block's
tray and medium fields, DEVICE_TRAY_MOVED, HMP's eject/change/info block, and the errors.

    cdrom-monitor.py BINARY DIR ISO1 ISO2   runs the sequence against BINARY (qkvm or
        qemu-system-x86_64, -M pc -accel tcg -cdrom ISO1), prints one TAP-free line per step:
        "STEP <name> <json>" with the step's result reduced to what the test compares
"""
import json, os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP


def shape(v):
    """The keys and JSON types of a value (what QEMU's schema fixes), not its contents."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__


def cd_entry(q):
    r = q.cmd("query-block")["return"]
    cds = [b for b in r if b.get("device") == "ide1-cd0"]
    return cds[0] if cds else None


def cd_info(text, iso):
    """HMP's info block lines for ide1-cd0 (QEMU names its node in parentheses: dropped)."""
    out, inside = [], False
    for line in text.splitlines():
        if line and not line[0].isspace():
            inside = line.startswith("ide1-cd0")
        if inside and ("ide1-cd0" in line or "Removable" in line):
            line = line.strip().replace(iso, "ISO1")
            if line.startswith("ide1-cd0 (#"):
                line = "ide1-cd0" + line[line.index(")") + 1:]
            out.append(line)
    return out


def step(name, value):
    print("STEP %s %s" % (name, json.dumps(value, sort_keys=True)), flush=True)


def main():
    binary, d, iso1, iso2 = sys.argv[1:5]
    sock = os.path.join(d, "qmp.sock")
    proc = subprocess.Popen([binary, "-M", "pc", "-accel", "tcg", "-display", "none", "-serial", "none",
                             "-m", "64", "-cdrom", iso1, "-qmp", "unix:%s,server=on,wait=off" % sock],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        q = QMP(sock)
        cd = cd_entry(q)
        step("query-block-loaded", {"inserted": "inserted" in cd, "tray_open": cd.get("tray_open"),
                                    "removable": cd.get("removable"), "locked": cd.get("locked"),
                                    "file": os.path.basename(cd.get("inserted", {}).get("file", "")),
                                    "ro": cd.get("inserted", {}).get("ro")})
        step("shape-loaded", shape({k: v for k, v in cd.items() if k in ("device", "locked", "removable", "tray_open", "io-status")}))
        r = q.cmd("eject", {"device": "ide1-cd0"})
        ev = q.wait_event("DEVICE_TRAY_MOVED", 10)
        step("eject", {"return": r.get("return"), "event": ev["data"]["tray-open"], "event-device": ev["data"]["device"]})
        step("event-shape", shape(ev["data"]))
        cd = cd_entry(q)
        step("query-block-ejected", {"inserted": "inserted" in cd, "tray_open": cd.get("tray_open")})
        r = q.cmd("blockdev-change-medium", {"device": "ide1-cd0", "filename": iso2, "format": "raw"})
        ev = q.wait_event("DEVICE_TRAY_MOVED", 10)
        step("change", {"return": r.get("return"), "event": ev["data"]["tray-open"]})
        cd = cd_entry(q)
        step("query-block-changed", {"tray_open": cd.get("tray_open"),
                                     "file": os.path.basename(cd.get("inserted", {}).get("file", ""))})
        r = q.cmd("eject", {"device": "nosuchcd"})
        step("eject-unknown", r.get("error", {}).get("class"))
        r = q.cmd("blockdev-change-medium", {"device": "ide1-cd0", "filename": os.path.join(d, "missing.iso"),
                                             "format": "raw"})
        step("change-missing-file", {"class": r.get("error", {}).get("class"),
                                     "still": os.path.basename(cd_entry(q).get("inserted", {}).get("file", ""))})
        r = q.cmd("eject", {"device": "ide1-cd0", "force": "yes"})
        step("eject-bad-force", r.get("error", {}).get("class"))
        # HMP
        out = q.cmd("human-monitor-command", {"command-line": "eject ide1-cd0"})["return"]
        q.wait_event("DEVICE_TRAY_MOVED", 10)
        info = q.cmd("human-monitor-command", {"command-line": "info block"})["return"]
        step("hmp-eject", {"out": out, "info": cd_info(info, iso1)})
        out = q.cmd("human-monitor-command", {"command-line": "change ide1-cd0 %s raw" % iso1})["return"]
        info = q.cmd("human-monitor-command", {"command-line": "info block"})["return"]
        step("hmp-change", {"out": out, "info": cd_info(info, iso1)})
        q.cmd("quit")
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
