#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_nbd.c into tests/fuzz/corpus-nbd/: client byte streams that
reach every option and command (a fuzzer starting from nothing rarely gets past the magic)."""
import os
import struct

OPTS = 0x49484156454F5054
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-nbd")


def opt(o, data=b""):
    return struct.pack(">QII", OPTS, o, len(data)) + data


def req(typ, off, length, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off, length) + payload


def meta(name, queries):
    d = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    for q in queries:
        d += struct.pack(">I", len(q)) + q
    return d


def go(name=b"", infos=(3,)):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) + b"".join(
        struct.pack(">H", i) for i in infos)


cmds = (req(1, 0, 512, 1, 1, b"\xaa" * 512) + req(0, 0, 4096, 0, 2) + req(3, 0, 0, 0, 3) +
        req(4, 4096, 4096, 0, 4) + req(6, 8192, 65536, 2, 5) + req(6, 0, 4096, 16, 6) +
        req(7, 0, 1 << 20, 0, 7) + req(7, 0, 1 << 20, 8, 8) + req(5, 0, 65536, 0, 9) +
        req(1, 0, 4096, 0, 10, bytes(4096)) + req(0, (1 << 20) - 1, 2, 0, 11) + req(2, 0, 0))
seeds = {
    "go-structured": struct.pack(">I", 3) + opt(8) + opt(10, meta(b"", [b"base:allocation",
                     b"qemu:allocation-depth"])) + opt(7, go()) + cmds,
    "go-simple": struct.pack(">I", 1) + opt(7, go(b"", (0, 1, 2, 3))) + cmds,
    "export-name": struct.pack(">I", 3) + opt(1) + cmds,
    "haggle": struct.pack(">I", 1) + opt(3) + opt(6, go()) + opt(9, meta(b"", [])) + opt(8) +
              opt(9, meta(b"", [b"base:", b"qemu:"])) + opt(5) + opt(99, b"xx") + opt(2),
    "bad-request": struct.pack(">I", 1) + opt(7, go()) + req(0, 1 << 62, 1 << 31) +
                   req(1, 0, 0xffffffff),
}
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(data)
