#!/usr/bin/env python3
"""Writes the hand-made seeds of tests/fuzz/corpus-virtq/ (seed-*): inputs of fuzz_virtq.c that
set up well-formed rings, so that fuzzing starts from chains the device really pops instead of
from noise. The files named by hash beside them are what fuzzing runs found new coverage with,
merged down (see tests/fuzz/README.md); seed-buffer-straddles-ram-end is the input fuzzing found
to crash a queue whose bounds check left out the buffer's length (kept, not generated here).

Input layout (fuzz_virtq.c): 8 header bytes (log2 queue size, features, descriptor table /
available ring / used ring page numbers, "used ring past RAM", script length - 1, unused), the
script of device actions, then a pattern repeated over the 64 KiB of guest RAM. The pattern is
one page and a quarter long so that the rings, on pages 0, 1 and 2, land on different bytes of it:
page 0 at pattern offset 0, page 1 at 0x1000, page 2 at 0xf00."""
import os
import struct
import sys

PATTERN = 0x1400
DESC, AVAIL, USED = 0x0000, 0x1000, 0x2000
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


def seed(log2, features, descs, heads, script, extra=None, used_past_ram=False):
    """descs: {index: (gpa, len, flags, next)} of the table at page 0; heads: the available
    ring's entries; extra: {pattern offset: bytes} (indirect tables, buffer contents)."""
    pat = bytearray(PATTERN)
    for i, (addr, ln, flags, nxt) in descs.items():
        struct.pack_into("<QIHH", pat, (DESC % PATTERN) + 16 * i, addr, ln, flags, nxt)
    a = AVAIL % PATTERN
    struct.pack_into("<HH", pat, a, 0, len(heads))
    for k, h in enumerate(heads):
        struct.pack_into("<H", pat, a + 4 + 2 * k, h)
    for off, data in (extra or {}).items():
        pat[off:off + len(data)] = data
    hdr = bytes([log2, features, DESC >> 12, AVAIL >> 12, USED >> 12, int(used_past_ram),
                 len(script) - 1, 0])
    return hdr + bytes(script) + bytes(pat)


POP_PUSH = 0x40          # op 0 with bit 6: pop, then push the element back as used
seeds = {
    # one readable buffer
    "one-out": seed(3, 0, {0: (0x300, 64, 0, 0)}, [0], [POP_PUSH, 3]),
    # a request as virtio-blk sends it: header out, data in, status in
    "chain-blk": seed(3, 0, {0: (0x300, 16, F_NEXT, 1), 1: (0x400, 512, F_NEXT | F_WRITE, 2),
                             2: (0x700, 1, F_WRITE, 0)}, [0], [POP_PUSH, 3, 4]),
    # two chains, the second popped then given back, event index on
    "two-unpop": seed(4, 1, {0: (0x300, 32, 0, 0), 1: (0x400, 32, F_WRITE, 0)}, [0, 1],
                      [0, 0, 5, POP_PUSH, 3, 6]),
    # an indirect table of three descriptors at pattern offset 0x800
    "indirect": seed(3, 2, {0: (0x800, 48, F_INDIRECT, 0)}, [0], [POP_PUSH, 3],
                     extra={0x800: struct.pack("<QIHH", 0x300, 16, F_NEXT, 1)
                            + struct.pack("<QIHH", 0x400, 256, F_NEXT | F_WRITE, 2)
                            + struct.pack("<QIHH", 0x600, 1, F_WRITE, 0)}),
    # the guest moves the available index behind the device's back
    "avail-moves": seed(2, 3, {0: (0x300, 8, 0, 0)}, [0, 0, 0], [0x17, 0, 1, 2, 6]),
    # a used ring past the end of RAM: the queue must refuse to start
    "used-past-ram": seed(3, 0, {0: (0x300, 64, 0, 0)}, [0], [POP_PUSH], used_past_ram=True),
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-virtq")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {out}", file=sys.stderr)
