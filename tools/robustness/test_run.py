#!/usr/bin/env python3
"""Self-test of run.py's peer proxy: which raft link a connection carries,
requests followed across a reused connection, cuts refusing and severing
connections, the sender told by which process owns the dialling socket
(IPv4, IPv6, dual-stack; any protocol), a dialler gone before it could be
told. Standard library only; no server needed."""

import os
import socket
import subprocess
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


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


# Not HTTP/1.x: an HTTP/2 preface and some binary, as etcdpp's gRPC peers send.
H2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00GET /raft HTTP/1.1\r\n"


class ProxyTest(unittest.TestCase):
    HOST = "127.0.0.1"

    def setUp(self):
        self.net = run.Network()
        self.net.id_to_name = {"a1": "m1", "b2": "m2"}
        self.echo = Echo()
        self.echo.start()
        self.proxy = run.PeerProxy(self.net, "m2", run.free_port(), self.echo.port, host=self.HOST)
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

    def roundtrip(self, data, host=None):
        s = socket.create_connection((host or self.HOST, self.proxy.sock.getsockname()[1]), timeout=3)
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

    def test_sender_by_socket_owner_any_protocol(self):
        # This process is member m1: a non-HTTP connection it dials to m2's
        # proxy carries m1 -> m2, whatever its bytes say.
        self.net.member_pids = lambda: {os.getpid(): "m1"}
        s, got = self.roundtrip(H2)
        self.assertEqual(got, H2)
        self.assertEqual([c[0] for c in self.proxy.conns.values()], [("raft", "m1", "m2")])
        self.net.set_cuts([("m2", "m1")])  # the other direction: flows on
        s.sendall(b"more")
        self.assertEqual(s.recv(100), b"more")
        self.net.set_cuts([("m1", "m2")])  # severed
        s.settimeout(3)
        self.assertEqual(s.recv(100), b"")
        s.close()
        s, got = self.roundtrip(H2)  # refused
        self.assertEqual(got, b"")
        s.close()
        self.assertEqual(self.net.unclassified, 0)
        self.assertGreaterEqual(self.net.by_owner, 2)
        self.assertEqual((self.net.severed, self.net.refused), (1, 1))

    def test_http_sender_by_owner_and_header_cross_checked(self):
        # etcd's rafthttp: the owner tells the sender, the path the direction;
        # X-Server-From agrees; a request without it is attributed too.
        self.net.member_pids = lambda: {os.getpid(): "m1"}
        self.net.set_cuts([("m2", "m1")])
        s, got = self.roundtrip(req("GET", "/raft/stream/msgappv2/a1"))  # carries m2 -> m1: refused
        self.assertEqual(got, b"")
        s.close()
        s, got = self.roundtrip(req("POST", "/raft", "a1"))
        self.assertEqual(got, req("POST", "/raft", "a1"))
        s.close()
        self.assertEqual((self.net.unclassified, self.net.disagreed, self.net.refused), (0, 0, 1))

    def test_server_speaks_first(self):
        # A known sender that says nothing until the server does: forwarded
        # after the wait for first bytes, as carrying sender -> us.
        self.net.member_pids = lambda: {os.getpid(): "m1"}
        self.proxy.first_bytes_timeout = 0.3
        s = socket.create_connection((self.HOST, self.proxy.sock.getsockname()[1]), timeout=3)
        give_up = time.monotonic() + 5
        while not self.proxy.conns and time.monotonic() < give_up:
            time.sleep(0.05)
        self.assertEqual([c[0] for c in self.proxy.conns.values()], [("raft", "m1", "m2")])
        s.sendall(b"hello")
        self.assertEqual(s.recv(100), b"hello")
        s.close()
        self.assertEqual(self.net.unclassified, 0)

    def test_unknown_sender_is_counted(self):
        # No member owns the socket and the bytes name nobody: forwarded,
        # but counted (the partition verdict then FAILs).
        self.net.member_pids = lambda: {}
        s, got = self.roundtrip(H2)
        self.assertEqual(got, H2)
        s.close()
        self.assertEqual(self.net.unclassified, 1)

    def test_sender_in_another_process(self):
        # The owner is a child process (as members are), found by its pid.
        port = self.proxy.sock.getsockname()[1]
        child = subprocess.Popen([sys.executable, "-c", (
            "import socket,sys\n"
            "s=socket.create_connection((%r,%d))\n"
            "s.sendall(b'\\x00binary')\n"
            "sys.stdout.write(repr(s.recv(100)));sys.stdout.flush()\n"
            "sys.stdin.read()\n") % (self.HOST, port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.net.member_pids = lambda: {os.getpid(): "m3", child.pid: "m1"}
        try:
            self.assertEqual(child.stdout.read(len(repr(b"\x00binary"))), repr(b"\x00binary").encode())
            self.assertEqual([c[0] for c in self.proxy.conns.values()], [("raft", "m1", "m2")])
        finally:
            child.stdin.close()
            child.wait()
        self.assertEqual(self.net.unclassified, 0)

    def pair(self):
        """A listener and one connection to it: (listener, client socket,
        accepted socket); the test closes them."""
        srv = socket.socket(socket.AF_INET6 if ":" in self.HOST else socket.AF_INET)
        srv.bind((self.HOST, 0))
        srv.listen(4)
        c = socket.create_connection(srv.getsockname()[:2])
        a, _ = srv.accept()
        return srv, c, a

    def test_dialler_gone_before_lookup(self):
        # The client closed its socket before the proxy looked: no owner,
        # closed, not forwarded, not counted as unattributed.
        srv, c, a = self.pair()
        client, server = a.getpeername(), a.getsockname()
        self.net.member_pids = lambda: {os.getpid(): "m1"}
        self.assertEqual(self.net.identify(client, server), ("m1", "owner"))
        c.close()
        self.assertEqual(self.net.identify(client, server), (None, "gone"))
        a.close()
        srv.close()

    def test_dialler_dying_during_lookup(self):
        # A dialler that is no member (yet) when first looked up and whose
        # socket goes away 0.1 s later (a member SIGKILLed right after it
        # dialled): gone, not foreign.
        srv, c, a = self.pair()
        self.net.member_pids = lambda: {}
        threading.Timer(0.1, c.close).start()
        self.assertEqual(self.net.identify(a.getpeername(), a.getsockname()), (None, "gone"))
        # Still held by a non-member after the retries: foreign.
        c2 = socket.create_connection(srv.getsockname()[:2])
        a2, _ = srv.accept()
        self.assertEqual(self.net.identify(a2.getpeername(), a2.getsockname()), (None, "foreign"))
        for x in (a, a2, c2, srv):
            x.close()


class IPv6ProxyTest(ProxyTest):
    HOST = "::1"

    def setUp(self):
        if not have_ipv6():
            self.skipTest("no IPv6 loopback")
        super().setUp()


class SocketOwnerTest(unittest.TestCase):
    """socket_inode through sock_diag and through /proc/net/tcp{,6}: the
    inode of the dialling socket, for IPv4, IPv6 and dual-stack sockets."""

    def check(self, listen_family, listen_host, dial_family, dial_host):
        srv = socket.socket(listen_family)
        srv.bind((listen_host, 0))
        srv.listen(4)
        c = socket.socket(dial_family)
        c.connect((dial_host, srv.getsockname()[1]))
        a, _ = srv.accept()
        want = os.fstat(c.fileno()).st_ino
        for netlink in (True, False):
            self.assertEqual(run.socket_inode(a.getpeername(), a.getsockname(), use_netlink=netlink), want,
                             (listen_host, dial_host, netlink))
        self.assertEqual(run.inode_owner(want, [os.getpid()]), os.getpid())
        self.assertIsNone(run.inode_owner(want, [1 if os.getpid() != 1 else 2]))
        c.close()
        for netlink in (True, False):
            self.assertFalse(run.socket_inode(a.getpeername(), a.getsockname(), use_netlink=netlink))
        a.close()
        srv.close()

    def test_ipv4(self):
        self.check(socket.AF_INET, "127.0.0.1", socket.AF_INET, "127.0.0.1")

    def test_ipv6(self):
        if not have_ipv6():
            self.skipTest("no IPv6 loopback")
        self.check(socket.AF_INET6, "::1", socket.AF_INET6, "::1")

    def test_dual_stack(self):
        if not have_ipv6():
            self.skipTest("no IPv6 loopback")
        # A dual-stack AF_INET6 socket dialling IPv4 (gRPC does): in tcp6 as ::ffff:127.0.0.1.
        self.check(socket.AF_INET, "127.0.0.1", socket.AF_INET6, "::ffff:127.0.0.1")
        # ...and an IPv4 client accepted by a dual-stack listener.
        self.check(socket.AF_INET6, "::", socket.AF_INET, "127.0.0.1")

    def test_no_such_socket(self):
        for netlink in (True, False):
            self.assertIsNone(run.socket_inode(("127.0.0.1", 1), ("127.0.0.1", 2), use_netlink=netlink))


class CrashDetection(unittest.TestCase):
    """A member that exits on its own is a crash; one the harness killed, or
    one that exits on an injected WAL fault, is not."""

    def setUp(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="rob-crash-")
        # A stand-in server: ignores its flags, exits 3 after 0.2 s, or
        # sleeps until killed.
        self.bin = os.path.join(self.dir, "fake-server")
        with open(self.bin, "w") as f:
            f.write("#!/bin/sh\nif [ -n \"$FAKE_EXIT\" ]; then sleep 0.2; echo dying; exit 3; fi\nexec sleep 60\n")
        os.chmod(self.bin, 0o755)
        self.c = run.Cluster(self.bin, 2, self.dir, use_proxies=False)

    def tearDown(self):
        self.c.close()
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_exit(self, m):
        m.proc.wait(timeout=10)

    def test_exit_on_its_own_is_a_crash(self):
        m1, m2 = self.c.members
        self.c.start(m1, {"FAKE_EXIT": "1"})
        self.c.start(m2)
        self.wait_exit(m1)
        self.c.restart_crashed()
        self.assertEqual(len(self.c.crashes), 1, self.c.crashes)
        self.assertIn("m1 exited with status 3", self.c.crashes[0])
        self.assertIn("dying", self.c.crashes[0])
        self.assertTrue(m1.alive())  # started again (without FAKE_EXIT: it stays up)
        self.c.restart_crashed()
        self.assertEqual(len(self.c.crashes), 1)  # counted once

    def test_killed_or_expected_exits_are_not_crashes(self):
        m1, m2 = self.c.members
        self.c.start(m1)
        self.c.start(m2, {"FAKE_EXIT": "1"})
        m2.exit_expected = True  # as after injecting a WAL fault
        self.c.kill9(m1)
        self.wait_exit(m2)
        self.c.restart_crashed()
        self.c.kill9(m1)
        self.assertEqual(self.c.crashes, [])


if __name__ == "__main__":
    unittest.main()
