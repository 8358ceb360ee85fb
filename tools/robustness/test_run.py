#!/usr/bin/env python3
"""Self-test of run.py's peer proxy: which raft link a connection carries,
requests followed across a reused connection, cuts refusing and severing
connections. Standard library only; no server needed."""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def req(method, path, sender=None):
    h = "%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)
    if sender:
        h += "X-Server-From: %s\r\n" % sender
    return (h + "\r\n").encode()


class Echo(threading.Thread):
    """Upstream that echoes whatever it receives."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.echo, args=(c,), daemon=True).start()

    @staticmethod
    def echo(c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.net = run.Network()
        self.net.id_to_name = {"a1": "m1", "b2": "m2"}
        self.echo = Echo()
        self.echo.start()
        self.proxy = run.PeerProxy(self.net, "m2", run.free_port(), self.echo.port)
        self.proxy.start()
        self.net.proxies.append(self.proxy)

    def tearDown(self):
        self.proxy.close()
        self.echo.sock.close()

    def scan(self, *chunks):
        state = {"carry": "", "path": "", "src": None}
        link = None
        for c in chunks:
            link = self.proxy.scan(state, c)
        return link

    def test_classification(self):
        # A stream dialled by m1 to m2 carries m2 -> m1 messages.
        self.assertEqual(self.scan(req("GET", "/raft/stream/msgappv2/a1", "a1")), ("raft", "m2", "m1"))
        # A pipeline POST from m1 to m2 carries m1 -> m2 messages.
        self.assertEqual(self.scan(req("POST", "/raft", "a1")), ("raft", "m1", "m2"))
        self.assertEqual(self.scan(req("POST", "/raft/snapshot", "a1")), ("raft", "m1", "m2"))
        self.assertEqual(self.scan(req("GET", "/raft/probing", "a1")), ("meta", "m1", "m2"))
        self.assertIsNone(self.scan(req("GET", "/version")))

    def test_reused_connection_is_followed(self):
        # Go reuses an idle /version connection for POST /raft.
        self.assertEqual(self.scan(req("GET", "/version"), req("POST", "/raft", "a1")), ("raft", "m1", "m2"))
        # The sender, once known, stays; the path follows the last request.
        self.assertEqual(self.scan(req("POST", "/raft", "a1"), req("GET", "/raft/stream/message/a1")),
                         ("raft", "m2", "m1"))

    def test_cuts(self):
        self.net.cuts = {("m1", "m2")}
        self.assertTrue(self.net.blocked(("raft", "m1", "m2")))
        self.assertFalse(self.net.blocked(("raft", "m2", "m1")))  # one-way
        self.assertFalse(self.net.blocked(("meta", "m1", "m2")))  # meta only when fully partitioned
        self.net.cuts = {("m1", "m2"), ("m2", "m1")}
        self.assertTrue(self.net.blocked(("meta", "m1", "m2")))
        self.assertFalse(self.net.blocked(None))

    def roundtrip(self, data):
        s = socket.create_connection(("127.0.0.1", self.proxy.sock.getsockname()[1]), timeout=3)
        s.sendall(data)
        got = b""
        try:
            while len(got) < len(data):
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except OSError:
            pass
        return s, got

    def test_forwarding_refusal_and_severing(self):
        data = req("POST", "/raft", "a1") + b"payload"
        s, got = self.roundtrip(data)
        self.assertEqual(got, data)
        # Cutting m1 -> m2 severs the open connection...
        self.net.set_cuts([("m1", "m2")])
        s.settimeout(3)
        self.assertEqual(s.recv(100), b"")
        s.close()
        # ...and refuses new ones; the opposite direction still flows.
        s, got = self.roundtrip(data)
        self.assertEqual(got, b"")
        s.close()
        back = req("GET", "/raft/stream/message/a1", "a1")  # carries m2 -> m1
        s, got = self.roundtrip(back)
        self.assertEqual(got, back)
        s.close()
        self.assertGreaterEqual(self.net.severed, 1)
        self.assertGreaterEqual(self.net.refused, 1)


if __name__ == "__main__":
    unittest.main()
