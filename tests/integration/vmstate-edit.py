#!/usr/bin/env python3
"""Edits one device section inside a qkvm migration stream (docs/migration.md: "Migration stream"
and "Stream format") and fixes both checksums up, so that what the destination refuses is the
section's content, not a damaged stream.

    vmstate-edit.py IN OUT list                              prints "name instance version size"
    vmstate-edit.py IN OUT set NAME INSTANCE OFFSET HEX      overwrites payload bytes at OFFSET
    vmstate-edit.py IN OUT version NAME INSTANCE V           sets the section's version
    vmstate-edit.py IN OUT drop NAME INSTANCE                removes the section
    vmstate-edit.py IN -                                     each stdin line "OUT OP ARGS..." (one start-up)
"""
import struct, sys, zlib


def records(mig):
    """(tag, start, end) of each record after the 32-byte header."""
    p = 32
    while p < len(mig):
        tag = mig[p]
        if tag == 0x01:
            count = struct.unpack_from("<I", mig, p + 9)[0]
            end = p + 13 + count * 4096
        elif tag == 0x02:
            end = p + 13
        elif tag == 0x03:
            end = p + 5 + struct.unpack_from("<I", mig, p + 1)[0]
        elif tag == 0xff:
            end = p + 5
        else:
            sys.exit("unknown record tag 0x%02x at %d" % (tag, p))
        yield tag, p, end
        p = end


def sections(dev):
    """[name, instance, version, payload] of each section of a device stream."""
    out, p = [], 12
    while dev[p] == 0x01:
        n = dev[p + 1]
        name = dev[p + 2:p + 2 + n].decode()
        inst, ver, size = struct.unpack_from("<III", dev, p + 2 + n)
        start = p + 14 + n
        out.append([name, inst, ver, bytearray(dev[start:start + size])])
        p = start + size
    return out


def build(secs):
    b = bytearray(b"QKVMVMS\0" + struct.pack("<I", 1))
    for name, inst, ver, payload in secs:
        b += bytes([1, len(name)]) + name.encode() + struct.pack("<III", inst, ver, len(payload)) + payload
    b += b"\xff"
    return bytes(b + struct.pack("<I", zlib.crc32(b)))


def edit(mig, dst, op, args):
    recs = list(records(mig))
    dev_rec = [r for r in recs if r[0] == 0x03][0]
    secs = sections(mig[dev_rec[1] + 5:dev_rec[2]])
    if op == "list":
        for name, inst, ver, payload in secs:
            print(name, inst, ver, len(payload))
        return
    name, inst = args[0], int(args[1], 0)
    hit = [s for s in secs if s[0] == name and s[1] == inst]
    if not hit:
        sys.exit("no section %s instance %d" % (name, inst))
    s = hit[0]
    if op == "set":
        off, data = int(args[2], 0), bytes.fromhex(args[3])
        s[3][off:off + len(data)] = data
    elif op == "version":
        s[2] = int(args[2], 0)
    elif op == "drop":
        secs.remove(s)
    else:
        sys.exit("unknown operation " + op)
    dev = build(secs)
    body = mig[:dev_rec[1]] + b"\x03" + struct.pack("<I", len(dev)) + dev
    body += mig[dev_rec[2]:recs[-1][1]] + b"\xff"
    open(dst, "wb").write(body + struct.pack("<I", zlib.crc32(body)))


def main():
    mig = open(sys.argv[1], "rb").read()
    if sys.argv[2] == "-":
        for line in sys.stdin:
            w = line.split()
            if w:
                edit(mig, w[0], w[1], w[2:])
    else:
        edit(mig, sys.argv[2], sys.argv[3], sys.argv[4:])


main()
