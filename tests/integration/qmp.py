#!/usr/bin/env python3
"""A small QMP client for the monitor tests: connect, negotiate, run commands, collect events.

    qmp.py SOCKET 'CMD [JSON-ARGS]' ...   runs each command after qmp_capabilities and prints each
                                          reply (one JSON line each); events go to stderr
"""
import json, socket, sys, time


class QMP:
    def __init__(self, path, timeout=30.0, negotiate=True):
        if isinstance(path, tuple):
            self.sock = socket.create_connection(path, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            deadline = time.time() + timeout
            while True:
                try:
                    self.sock.connect(path)
                    break
                except (FileNotFoundError, ConnectionRefusedError, BlockingIOError):
                    # EAGAIN: the backlog is full (a test that just flooded it); the
                    # server drains it, so try again as for a socket not there yet
                    if time.time() > deadline:
                        raise
                    time.sleep(0.1)
        self.buf = b""
        self.events = []        # not yet waited for
        self.all_events = []    # every event, in the order it came
        self.greeting = self.read()
        if negotiate:
            self.cmd("qmp_capabilities")

    def read(self):
        """The next JSON object from the socket (events included)."""
        dec = json.JSONDecoder()
        while True:
            text = self.buf.decode("utf-8", "replace").lstrip()
            if text:
                try:
                    obj, end = dec.raw_decode(text)
                    self.buf = text[end:].encode()
                    if isinstance(obj, dict) and "event" in obj:
                        self.all_events.append(obj)
                    return obj
                except ValueError:
                    pass
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def send_raw(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """The next reply, events set aside."""
        while True:
            obj = self.read()
            if "event" in obj:
                self.events.append(obj)
                continue
            return obj

    def cmd(self, name, args=None, id=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        if id is not None:
            msg["id"] = id
        self.send_raw(json.dumps(msg) + "\n")
        return self.reply()

    def wait_event(self, name, timeout=60.0):
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            self.sock.settimeout(max(0.1, deadline - time.time()))
            if time.time() > deadline:
                raise TimeoutError(name)
            obj = self.read()
            self.events.append(obj) if "event" in obj else None

    def close(self):
        self.sock.close()


if __name__ == "__main__":
    q = QMP(sys.argv[1])
    for c in sys.argv[2:]:
        name, _, args = c.partition(" ")
        print(json.dumps(q.cmd(name, json.loads(args) if args else None)), flush=True)
    for e in q.events:
        print(json.dumps(e), file=sys.stderr)
