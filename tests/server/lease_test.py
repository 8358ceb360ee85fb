#!/usr/bin/env python3
"""Process-level lease tests on a single member, driven by etcdctl:
grant / attach / time-to-live / list / keep-alive / revoke, expiry seen by a
watcher as DELETE events, and leases that survive a SIGKILL.

    python3 tests/server/lease_test.py --bin build/etcdpp
"""
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402

BIN = None


def lease_id(grant_output):
    # "lease 694d... granted with TTL(60s)"
    return grant_output.split()[1]


class LeaseTest(unittest.TestCase):
    def setUp(self):
        self.srv = harness.Server(bin_path=BIN).start()

    def tearDown(self):
        self.srv.close()

    def ctl(self, *args, stdin=None, ok=True):
        r = self.srv.etcdctl(list(args), stdin=stdin)
        if ok:
            self.assertEqual(r.exit_code, 0, "%s: %s" % (args, r.stderr))
        return r

    def test_lifecycle(self):
        lid = lease_id(self.ctl("lease", "grant", "60").stdout)
        self.ctl("put", "--lease=" + lid, "k1", "v1")
        self.ctl("put", "--lease=" + lid, "k2", "v2")
        ttl = self.ctl("lease", "timetolive", lid, "--keys").stdout
        self.assertIn("granted with TTL(60s)", ttl)
        self.assertIn("attached keys([k1 k2])", ttl)
        self.assertIn(lid, self.ctl("lease", "list").stdout)
        self.assertIn("keepalived with TTL(60)", self.ctl("lease", "keep-alive", "--once", lid).stdout)
        # A key put again without the lease leaves it.
        self.ctl("put", "k2", "v3")
        self.assertIn("attached keys([k1])", self.ctl("lease", "timetolive", lid, "--keys").stdout)
        rev_before = int(self.ctl("get", "k1", "-w", "fields").stdout.split('"Revision" : ')[1].split()[0])
        self.assertIn("revoked", self.ctl("lease", "revoke", lid).stdout)
        out = self.ctl("get", "k", "--prefix", "-w", "fields").stdout
        self.assertNotIn('"Key" : "k1"', out)
        self.assertIn('"Key" : "k2"', out, "a key that left the lease survives its revoke")
        rev_after = int(out.split('"Revision" : ')[1].split()[0])
        self.assertEqual(rev_after, rev_before + 1, "a revoke is one revision")
        self.assertIn("already expired", self.ctl("lease", "timetolive", lid).stdout)
        r = self.ctl("lease", "revoke", lid, ok=False)
        self.assertEqual(r.exit_code, 1)
        self.assertIn("etcdserver: requested lease not found", r.stderr)

    def test_expiry_is_a_delete_event(self):
        # Watching from the next revision replays from history, so the watch
        # sees both events however late etcdctl registers it.
        hdr = self.ctl("get", "gone", "-w", "fields").stdout
        next_rev = int(hdr.split('"Revision" : ')[1].split()[0]) + 1
        watch = subprocess.Popen(
            [self.srv.etcdctl_path, "--endpoints", self.srv.endpoint, "watch", "gone",
             "--rev=%d" % next_rev],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, ETCDCTL_API="3"))
        try:
            lid = lease_id(self.ctl("lease", "grant", "2").stdout)
            self.assertIn("TTL(2s)", self.ctl("lease", "timetolive", lid).stdout)
            self.ctl("put", "--lease=" + lid, "gone", "soon")
            start = time.monotonic()
            while time.monotonic() - start < 15 and self.ctl("get", "gone").stdout:
                time.sleep(0.1)
            waited = time.monotonic() - start
            self.assertEqual(self.ctl("get", "gone").stdout, "", "leased key outlived its lease")
            self.assertLess(waited, 2 + 3, "expired later than TTL + a small bound")
            # Both events are in; wait (bounded) until etcdctl has printed them.
            out = ""
            deadline = time.monotonic() + 10
            while "DELETE\ngone\n" not in out and time.monotonic() < deadline:
                line = watch.stdout.readline()
                if not line:
                    break
                out += line
        finally:
            watch.terminate()
            watch.communicate(timeout=10)
        self.assertIn("PUT\ngone\nsoon\nDELETE\ngone\n", out)

    def test_leases_survive_sigkill(self):
        lid = lease_id(self.ctl("lease", "grant", "120").stdout)
        self.ctl("put", "--lease=" + lid, "kept", "v")
        self.srv.kill9()
        self.srv.start()
        ttl = self.ctl("lease", "timetolive", lid, "--keys").stdout
        self.assertIn("granted with TTL(120s)", ttl)
        self.assertIn("attached keys([kept])", ttl)
        self.ctl("lease", "revoke", lid)
        self.assertEqual(self.ctl("get", "kept").stdout, "")


if __name__ == "__main__":
    if "--bin" in sys.argv:
        i = sys.argv.index("--bin")
        BIN = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    BIN = BIN or os.environ.get("ETCDPP_BIN")
    if not BIN:
        sys.exit("usage: lease_test.py --bin PATH")
    unittest.main(verbosity=2)
