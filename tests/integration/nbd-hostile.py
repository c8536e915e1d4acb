#!/usr/bin/env python3
"""A hostile NBD client for tests/integration/nbd.sh: nbd-hostile.py SOCKET CASE.
Prints one line, "ok ..." when the server answered as proto.md wants (an error reply or a
closed connection), else "bad ..."; the shell test also checks the server is still serving."""
import socket
import struct
import sys
import time

OPTS = 0x49484156454F5054
REP = 0x3e889045565a9


def conn(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    for _ in range(1000):   # a full listen backlog answers EAGAIN: wait for accept to drain it
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            time.sleep(0.01)
    raise TimeoutError("the listen backlog never drained")


def recv(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b


def closed(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def hello(s, cflags=1):
    h = recv(s, 18)
    assert h[:8] == b"NBDMAGIC"
    s.sendall(struct.pack(">I", cflags))


def opt(s, o, data=b""):
    s.sendall(struct.pack(">QII", OPTS, o, len(data)) + data)


def opt_reply(s):
    magic, o, typ, ln = struct.unpack(">QIII", recv(s, 20))
    assert magic == REP
    return o, typ, recv(s, ln)


def go(s, structured=False):
    if structured:
        opt(s, 8)
        assert opt_reply(s)[1] == 1
    opt(s, 7, struct.pack(">IH", 0, 0))
    while True:
        _, typ, _ = opt_reply(s)
        if typ == 1:
            return
        assert typ == 3, typ


def req(s, typ, off, ln, flags=0, cookie=7, payload=b""):
    s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off, ln) + payload)


def simple(s):
    magic, err, cookie = struct.unpack(">IIQ", recv(s, 16))
    assert magic == 0x67446698, hex(magic)
    return err, cookie


def main():
    path, case = sys.argv[1], sys.argv[2]
    s = conn(path)
    if case == "bad-magic":
        hello(s)
        s.sendall(b"XXXXXXXX" + struct.pack(">II", 7, 0))
        print("ok closed" if closed(s) else "bad still open")
    elif case == "bad-cflags":
        hello(s, 0xff)
        print("ok closed" if closed(s) else "bad still open")
    elif case == "unknown-option":
        hello(s)
        opt(s, 0x1234, b"junk")
        o, typ, _ = opt_reply(s)
        go(s)
        req(s, 0, 0, 512)
        err, _ = simple(s)
        data = recv(s, 512)
        print("ok" if o == 0x1234 and typ == 0x80000001 and err == 0 and len(data) == 512
              else "bad reply %x %x" % (o, typ))
    elif case == "huge-option":
        hello(s)
        opt(s, 7, b"")
        s.sendall(struct.pack(">QII", OPTS, 7, 0xfffffff0))
        # the empty GO is invalid, then the enormous one closes the connection
        _, typ, _ = opt_reply(s)
        print("ok closed" if typ & 0x80000000 and closed(s) else "bad")
    elif case == "oversize-read":
        hello(s)
        go(s)
        req(s, 0, 0, 64 << 20)
        err, _ = simple(s)
        req(s, 0, 0, 16)
        err2, _ = simple(s)
        recv(s, 16)
        print("ok" if err in (22, 75) and err2 == 0 else "bad %d %d" % (err, err2))
    elif case == "out-of-range":
        hello(s)
        go(s)
        req(s, 0, 1 << 40, 512, cookie=1)
        e1, c1 = simple(s)
        req(s, 1, (1 << 64) - 256, 512, cookie=2, payload=b"\0" * 512)   # offset + len wraps
        e2, c2 = simple(s)
        req(s, 7, 0, 512, cookie=3)                                       # no meta context
        e3, _ = simple(s)
        req(s, 99, 0, 0, cookie=4)                                        # unknown command
        e4, _ = simple(s)
        req(s, 0, 0, 512, flags=0x80, cookie=5)                           # unknown flag
        e5, _ = simple(s)
        ok = e1 == 22 and c1 == 1 and e2 in (22, 28) and c2 == 2 and e3 and e4 == 22 and e5 == 22
        print("ok" if ok else "bad %d %d %d %d %d" % (e1, e2, e3, e4, e5))
    elif case == "huge-write":
        hello(s)
        go(s)
        req(s, 1, 0, 0xffffffff)
        print("ok closed" if closed(s) else "bad still open")
    elif case == "structured-unnegotiated":
        hello(s)
        go(s)
        req(s, 0, 0, 512, flags=4)   # DF without structured replies
        err, _ = simple(s)
        print("ok" if err == 22 else "bad %d" % err)
    elif case == "meta-unnegotiated":
        hello(s)
        name = b""
        opt(s, 10, struct.pack(">I", 0) + struct.pack(">II", 1, 15) + b"base:allocation")
        _, typ, _ = opt_reply(s)
        print("ok" if typ == 0x80000003 else "bad %x" % typ)
    elif case == "mid-write":
        hello(s)
        go(s)
        req(s, 1, 0, 1 << 20, payload=b"\x77" * 1000)
        s.close()
        print("ok")
    elif case == "many":
        socks = [s] + [conn(path) for _ in range(999)]
        for x in socks:
            hello(x)
            go(x)
        for i, x in enumerate(socks):
            req(x, 0, i * 512, 512, cookie=i)
        good = 0
        for i, x in enumerate(socks):
            err, cookie = simple(x)
            recv(x, 512)
            good += err == 0 and cookie == i
        print("ok" if good == 1000 else "bad %d of 1000" % good)
    else:
        print("bad case")


try:
    main()
except Exception as e:   # noqa: BLE001 - every failure is one line for the TAP report
    print("bad %s: %s" % (type(e).__name__, e))
