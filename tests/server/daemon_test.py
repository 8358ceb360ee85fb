#!/usr/bin/env python3
"""Process-level tests of the etcdpp daemon itself: start-up, data-dir lock,
flags and ETCD_* variables, errors and exit codes, shutdown.

    python3 tests/server/daemon_test.py --bin build/etcdpp
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402

BIN = None


def wait_for_line(path, needle, proc, timeout_s=30.0):
    """Polls the log until `needle` appears; False if the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if needle in f.read():
                    return True
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def read(path):
    with open(path) as f:
        return f.read()


def run(args, env=None, timeout=20):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


class DaemonTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etcdpp-daemon-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", self.tmp])

    def spawn(self, args, env=None):
        log = os.path.join(self.tmp, "log%d" % len(self.procs))
        with open(log, "w") as f:
            p = subprocess.Popen([BIN] + args, stdout=f, stderr=f, env=env,
                                 stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p, log

    def urls(self):
        # A free peer port too: the server listens on it (the default,
        # localhost:2380, would collide between tests running in parallel).
        port = harness.free_port()
        url = "http://127.0.0.1:%d" % port
        peer = "http://127.0.0.1:%d" % harness.free_port()
        return port, ["--listen-client-urls", url, "--advertise-client-urls", url,
                      "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer]

    def test_preexisting_empty_data_dir_is_accepted(self):
        data = os.path.join(self.tmp, "data")
        os.makedirs(data)
        port, flags = self.urls()
        p, log = self.spawn(["--data-dir", data] + flags)
        self.assertTrue(wait_for_line(log, "ready to serve client requests", p), read(log))
        r = harness.run_etcdctl("127.0.0.1:%d" % port, ["put", "k", "v"])
        self.assertEqual(r.exit_code, 0, r.stderr)

    def test_second_process_on_same_data_dir_fails(self):
        data = os.path.join(self.tmp, "data")
        port, flags = self.urls()
        p, log = self.spawn(["--data-dir", data] + flags)
        self.assertTrue(wait_for_line(log, "ready to serve client requests", p))
        _, flags2 = self.urls()
        r = run(["--data-dir", data] + flags2)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is in use by another process", r.stderr)
        # The first one is untouched.
        r = harness.run_etcdctl("127.0.0.1:%d" % port, ["put", "still", "here"])
        self.assertEqual(r.exit_code, 0, r.stderr)

    def test_flag_errors(self):
        r = run(["--foo"])
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.splitlines()[0], "flag provided but not defined: -foo")
        r = run(["--name"])
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.splitlines()[0], "flag needs an argument: -name")
        r = run(["--cert-file", "/x.pem", "--data-dir", os.path.join(self.tmp, "d")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("--cert-file", r.stderr)
        self.assertIn("not supported", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "d")),
                         "a refused configuration must not create the data dir")
        r = run(["--version"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("etcdpp Version:", r.stdout)

    def test_environment_configures_the_server(self):
        port = harness.free_port()
        url = "http://127.0.0.1:%d" % port
        env = dict(os.environ)
        env.update({"ETCD_DATA_DIR": os.path.join(self.tmp, "envdata"),
                    "ETCD_LISTEN_CLIENT_URLS": url, "ETCD_ADVERTISE_CLIENT_URLS": url,
                    "ETCD_MAX_TXN_OPS": "1"})
        p, log = self.spawn([], env=env)
        self.assertTrue(wait_for_line(log, "ready to serve client requests", p), read(log))
        self.assertTrue(os.path.isdir(os.path.join(self.tmp, "envdata", "member")))
        r = harness.run_etcdctl("127.0.0.1:%d" % port, ["txn"],
                                stdin="\nput a 1\nput b 2\n\n\n")
        self.assertEqual(r.exit_code, 1)
        self.assertIn("etcdserver: too many operations in txn request", r.stderr)

    def test_config_file_is_the_only_source(self):
        port = harness.free_port()
        url = "http://127.0.0.1:%d" % port
        data = os.path.join(self.tmp, "filedata")
        cfg = os.path.join(self.tmp, "etcd.conf.yml")
        with open(cfg, "w") as f:
            f.write("# etcd 3.4 configuration file\n"
                    "name: 'fromfile'\n"
                    "data-dir: %s\n"
                    "listen-client-urls: %s\n"
                    "advertise-client-urls: \"%s\"\n"
                    "listen-peer-urls: http://127.0.0.1:%d\n"
                    "client-transport-security:\n"
                    "  client-cert-auth: false\n" % (data, url, url, harness.free_port()))
        env = dict(os.environ)
        env["ETCD_MAX_TXN_OPS"] = "1"  # ignored, as etcd ignores it with a config file
        p, log = self.spawn(["--config-file", cfg, "--max-txn-ops", "1",
                             "--data-dir", os.path.join(self.tmp, "ignored")], env=env)
        self.assertTrue(wait_for_line(log, "ready to serve client requests", p), read(log))
        self.assertTrue(os.path.isdir(os.path.join(data, "member")))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "ignored")))
        r = harness.run_etcdctl("127.0.0.1:%d" % port, ["txn"],
                                stdin="\nput a 1\nput b 2\n\n\n")
        self.assertEqual(r.exit_code, 0, r.stderr)
        # A file etcd refuses: same text, exit 1, nothing created.
        with open(cfg, "w") as f:
            f.write("data-dir: %s\nelection-timeout: 100\n" % os.path.join(self.tmp, "d2"))
        r = run(["--config-file", cfg])
        self.assertEqual(r.returncode, 1)
        self.assertIn("--election-timeout[100ms] should be at least as 5 times as "
                      "--heartbeat-interval[100ms]", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "d2")))

    def test_listen_client_http_urls_splits_grpc_and_http(self):
        # etcd 3.5's --listen-client-http-urls: gRPC alone on the client
        # URL, the gateway and /health on the HTTP URL.
        data = os.path.join(self.tmp, "data")
        port, flags = self.urls()
        hport = harness.free_port()
        p, log = self.spawn(["--data-dir", data, "--listen-client-http-urls",
                             "http://127.0.0.1:%d" % hport] + flags)
        self.assertTrue(wait_for_line(log, "ready to serve client requests", p), read(log))
        r = harness.run_etcdctl("127.0.0.1:%d" % port, ["put", "k", "v"])
        self.assertEqual(r.exit_code, 0, r.stderr)
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % hport, timeout=5) as resp:
            self.assertEqual(resp.read(), b'{"health":"true"}')
        req = urllib.request.Request("http://127.0.0.1:%d/v3/kv/range" % hport,
                                     data=b'{"key":"aw=="}', method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            self.assertIn(b'"value":"dg=="', resp.read())
        # The client port speaks HTTP/2 (gRPC) only now.
        with self.assertRaises(Exception):
            urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=5).read()

    def test_sigterm_stops_cleanly_and_data_survives(self):
        data = os.path.join(self.tmp, "data")
        port, flags = self.urls()
        p, log = self.spawn(["--data-dir", data] + flags)
        self.assertTrue(wait_for_line(log, "ready to serve client requests", p))
        r = harness.run_etcdctl("127.0.0.1:%d" % port, ["put", "k", "v1"])
        self.assertEqual(r.exit_code, 0, r.stderr)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=15), 0)
        self.assertIn("received terminated signal, shutting down...", read(log))
        p2, log2 = self.spawn(["--data-dir", data] + flags)
        self.assertTrue(wait_for_line(log2, "ready to serve client requests", p2))
        r = harness.run_etcdctl("127.0.0.1:%d" % port, ["get", "k", "--print-value-only"])
        self.assertEqual(r.stdout.strip(), "v1")

    def test_busy_port_is_named(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            url = "http://127.0.0.1:%d" % port
            r = run(["--data-dir", os.path.join(self.tmp, "d"), "--listen-client-urls", url,
                     "--advertise-client-urls", url])
            self.assertEqual(r.returncode, 1)
            self.assertIn("listen tcp 127.0.0.1:%d: bind: address already in use" % port,
                          r.stderr)
        finally:
            s.close()


if __name__ == "__main__":
    if "--bin" in sys.argv:
        i = sys.argv.index("--bin")
        BIN = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    BIN = BIN or os.environ.get("ETCDPP_BIN")
    if not BIN:
        sys.exit("usage: daemon_test.py --bin PATH")
    unittest.main(verbosity=2)
