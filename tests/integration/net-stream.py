#!/usr/bin/env python3
"""The host end of a TCP connection that must survive a guest's migrations (migrate-net.sh).

    net-stream.py HOST PORT DIR

Connects to HOST:PORT (a guest running `nc -l -p PORT -e tee FILE`: it echoes every byte and
keeps a copy), then sends a known stream of bytes (a seeded generator, paced) until DIR/stop
exists, and checks every byte that comes back against the same stream. DIR/status is rewritten
as the bytes go ("sent N recv M bad -1", bad = the offset of the first wrong byte); once DIR/stop
appears the sender stops, half-closes, and the last line is "done sent N recv M bad B md5 HEX"
when every byte sent came back (HEX: MD5 of what was sent, which the guest's copy must match),
or "error ..." on a dropped connection or a timeout.
"""
import hashlib, os, random, socket, sys, threading, time

SEED, CHUNK, PACE = 18, 4096, 0.02      # ~200 KB/s: always bytes in flight, never a flood


def stream_chunks():
    r = random.Random(SEED)
    while True:
        yield r.randbytes(CHUNK)


def main():
    host, port, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    status = os.path.join(d, "status")
    st = {"sent": 0, "recv": 0, "bad": -1, "err": None}
    md5 = hashlib.md5()

    def write(line):
        with open(status + ".tmp", "w") as f:
            f.write(line + "\n")
        os.replace(status + ".tmp", status)

    deadline = time.time() + 120
    while True:
        try:
            s = socket.create_connection((host, port), timeout=5)
            break
        except OSError as e:
            if time.time() > deadline:
                write(f"error cannot connect: {e}")
                return 1
            time.sleep(0.5)
    s.settimeout(None)

    def sender():
        try:
            for c in stream_chunks():
                if os.path.exists(os.path.join(d, "stop")):
                    break
                s.sendall(c)
                md5.update(c)
                st["sent"] += len(c)
                time.sleep(PACE)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            st["err"] = f"send: {e}"

    def receiver():
        exp, gen, off = b"", stream_chunks(), 0
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                while len(exp) < len(data):
                    exp += next(gen)
                if data != exp[:len(data)] and st["bad"] < 0:
                    st["bad"] = off + next(i for i in range(len(data)) if data[i] != exp[i])
                exp = exp[len(data):]
                off += len(data)
                st["recv"] = off
        except OSError as e:
            st["err"] = f"recv: {e}"

    ts, tr = threading.Thread(target=sender), threading.Thread(target=receiver)
    ts.start()
    tr.start()
    while tr.is_alive():
        write(f"sent {st['sent']} recv {st['recv']} bad {st['bad']}")
        tr.join(0.2)
        if os.path.exists(os.path.join(d, "stop")) and time.time() > os.path.getmtime(os.path.join(d, "stop")) + 300:
            st["err"] = "the echo did not end within 300 s of the stop"
            break
    ts.join(5)
    if st["err"]:
        write(f"error {st['err']} sent {st['sent']} recv {st['recv']} bad {st['bad']}")
        return 1
    write(f"done sent {st['sent']} recv {st['recv']} bad {st['bad']} md5 {md5.hexdigest()}")
    return 0


sys.exit(main())
