#!/usr/bin/env python3
"""Self-test of harness.py (no server needed): etcd's ID derivation and the
normaliser rules. Run: python3 tests/e2e/test_harness.py"""

import os
import sys
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


class FakeServer:
    client_port = 23791
    peer_port = 23801
    workdir = "/tmp/etcdpp-e2e-abc"
    cluster_token = harness.DEFAULT_CLUSTER_TOKEN
    member_id = harness.etcd_member_id(["http://127.0.0.1:23801"])
    cluster_id = harness.etcd_cluster_id([member_id])


class IdTest(unittest.TestCase):
    def test_matches_real_etcd(self):
        # Observed from etcd 3.4.23 started with
        # --initial-advertise-peer-urls=http://127.0.0.1:23801 and the default token.
        m = harness.etcd_member_id(["http://127.0.0.1:23801"])
        self.assertEqual(m, 13668033151171901709)
        self.assertEqual(format(m, "x"), "bdae9bbc11dd390d")
        self.assertEqual(harness.etcd_cluster_id([m]), 15118495548433857066)

    def test_token_matters(self):
        self.assertNotEqual(harness.etcd_member_id(["http://127.0.0.1:23801"], "other"),
                            harness.etcd_member_id(["http://127.0.0.1:23801"]))


class NormaliserTest(unittest.TestCase):
    def setUp(self):
        self.n = harness.Normaliser(FakeServer())

    def test_ids_only_when_equal(self):
        out = self.n('{"header":{"cluster_id":15118495548433857066,'
                     '"member_id":13668033151171901709,"revision":3,"raft_term":2}}')
        self.assertEqual(out, '{"header":{"cluster_id":<CLUSTER_ID>,'
                         '"member_id":<MEMBER_ID>,"revision":3,"raft_term":<RAFT_TERM>}}')
        wrong = '{"header":{"cluster_id":1,"member_id":2,"revision":3}}'
        self.assertEqual(self.n(wrong), wrong)

    def test_raft_term_zero_kept(self):
        self.assertEqual(self.n('"RaftTerm" : 0\n"RaftTerm" : 7\n'),
                         '"RaftTerm" : 0\n"RaftTerm" : <RAFT_TERM>\n')

    def test_status_simple(self):
        out = self.n("127.0.0.1:23791, bdae9bbc11dd390d, 3.4.23, 25 kB, true, false, 2, 5, 5, \n")
        self.assertEqual(out, "<CLIENT_ADDR>, <MEMBER_ID>, <VERSION>, <DB_SIZE>, true, false, "
                         "<RAFT_TERM>, <RAFT_INDEX>, <RAFT_APPLIED_INDEX>, \n")

    def test_other_port_not_touched(self):
        self.assertEqual(self.n("127.0.0.1:237910"), "127.0.0.1:237910")
        self.assertEqual(self.n("127.0.0.1:2379"), "127.0.0.1:2379")

    def test_health(self):
        self.assertEqual(
            self.n("127.0.0.1:23791 is healthy: successfully committed proposal: took = 2.86136ms\n"),
            "<CLIENT_ADDR> is healthy: successfully committed proposal: took = <DURATION>\n")
        self.assertEqual(self.n('[{"endpoint":"127.0.0.1:23791","health":true,"took":"1.9µs"}]'),
                         '[{"endpoint":"<CLIENT_ADDR>","health":true,"took":"<DURATION>"}]')

    def test_retry_line(self):
        line = ('{"level":"warn","ts":"2026-11-22T03:14:04.513Z","caller":"clientv3/retry_interceptor.go:62",'
                '"msg":"retrying of unary invoker failed","target":"endpoint://client-'
                '26b6ceb1-7893-4c63-9541-7e6f636acb44/127.0.0.1:23791","attempt":0,'
                '"error":"rpc error: code = NotFound desc = etcdserver: requested lease not found"}')
        self.assertEqual(self.n(line),
                         '{"level":"warn","ts":"<TS>","caller":"clientv3/retry_interceptor.go:62",'
                         '"msg":"retrying of unary invoker failed","target":"endpoint://client-<UUID>/'
                         '<CLIENT_ADDR>","attempt":0,"error":"rpc error: code = NotFound desc = '
                         'etcdserver: requested lease not found"}')

    def test_kv_version_not_touched(self):
        s = '{"kvs":[{"key":"YQ==","version":3}]}'
        self.assertEqual(self.n(s), s)

    def test_table_repadded(self):
        t = ("+-----------------+------------------+---------+---------+\n"
             "|    ENDPOINT     |        ID        | VERSION | DB SIZE |\n"
             "+-----------------+------------------+---------+---------+\n"
             "| 127.0.0.1:23791 | bdae9bbc11dd390d |  3.4.23 |  123 kB |\n"
             "+-----------------+------------------+---------+---------+\n")
        self.assertEqual(self.n(t),
                         "+---------------+-------------+-----------+-----------+\n"
                         "| ENDPOINT      | ID          | VERSION   | DB SIZE   |\n"
                         "+---------------+-------------+-----------+-----------+\n"
                         "| <CLIENT_ADDR> | <MEMBER_ID> | <VERSION> | <DB_SIZE> |\n"
                         "+---------------+-------------+-----------+-----------+\n")

    def test_untouched_table_kept(self):
        t = "+---+\n| A |\n+---+\n| x |\n+---+\n"
        self.assertEqual(self.n(t), t)


if __name__ == "__main__":
    unittest.main()
