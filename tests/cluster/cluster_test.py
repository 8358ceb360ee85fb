#!/usr/bin/env python3
"""Process-level multi-member cluster tests, written against real etcd 3.4.23.

    cluster_test.py --bin <server binary> [--only name[,name]] [--members 3] [--keep]

Prints "PASS name (Xs)" / "FAIL name: reason" per test, then "N passed, M failed";
exit code 1 when anything failed. Each test starts its own cluster on 127.0.0.1
(fresh ports, fresh data dirs, a unique --initial-cluster-token) and stops every
process it started by PID. Python 3 standard library only; needs `etcdctl` (3.4)
on PATH or $ETCDCTL_BIN. The server is driven through etcdctl and through the
JSON gateway (/v3/kv/put, /v3/kv/range) for bulk writes.

Observed behaviour of etcd 3.4.23 (the spec for etcdpp; texts are constants below)
--------------------------------------------------------------------------------
situation                                       | etcd 3.4.23 does
------------------------------------------------+---------------------------------------------
member add within 5 s of the members connecting | refused: "etcdserver: unhealthy cluster"
  (strict reconfig: every voting member must be |   (gRPC Unavailable; etcdctl exit 1,
  connected for >= 5 s), also for --learner     |   "Error: etcdserver: unhealthy cluster")
member add while a voting member is down        | same: "etcdserver: unhealthy cluster"
member remove of a DOWN member                  | allowed at once
member remove of a running member (here: the   | refused: "etcdserver: unhealthy cluster" (etcd's
  leader) within 5 s of the members connecting  |   log: "reconfigure breaks active quorum,
                                                |   rejecting remove member <id>"); retry works
member promote of a lagging or not yet started   | "etcdserver: can only promote a learner member
  learner                                       |   which is in sync with leader" (FailedPrecondition);
                                                |   accepted ~0.2 s after a started learner caught up
put / linearizable get / member list / endpoint | "etcdserver: rpc not supported for learner"
  health on a learner                           |   (Unavailable; gateway: HTTP 503, code 14)
serializable get on a learner                   | served (local data)
endpoint status on a learner                    | served, json has "isLearner":true
member list json of an added, unstarted member  | no "name", no "clientURLs"; table: "unstarted", ""
removed member (incl. the leader)               | exits BY ITSELF with exit code 0, log:
                                                |   "the member has been permanently removed from
                                                |   the cluster" + "the data-dir used by this member
                                                |   must be removed."; restarting it on its old data
                                                |   dir: same message, exit 0
put with quorum lost (2 of 3 killed)            | fails after the command timeout, etcdctl exit 1:
                                                |   "etcdserver: request timed out" (or "context
                                                |   deadline exceeded"); gateway: HTTP 500
                                                |   "context deadline exceeded" after ~7 s
linearizable get with quorum lost               | "context deadline exceeded"
serializable get with quorum lost               | served
member list with quorum lost                    | served (3 members listed)
endpoint status with quorum lost                | exit 0, no "leader" field, "errors":["etcdserver: no leader"]
endpoint status --cluster with a member down    | exit 1; the others' statuses are still printed;
                                                |   stderr "Failed to get the status of endpoint <url>"
--force-new-cluster on the survivor             | 1-member cluster, same member ID/cluster ID, all data,
                                                |   raft term bumped; later restarts without the flag
                                                |   stay a 1-member cluster
--name not in --initial-cluster                 | exit 1: couldn't find local name "bogus" in the
                                                |   initial cluster configuration
--initial-cluster-state existing, not added     | exit 1: error validating peerURLs {...}: member
                                                |   count is unequal
wrong --initial-cluster-token, fresh data dir,  | does NOT exit; never becomes ready (client port
  state new, against a running cluster          |   not served); peers log "request cluster ID
                                                |   mismatch"; the cluster stays healthy
wrong --initial-cluster-token, existing data    | token ignored (cluster ID is in the WAL); rejoins
SIGTERM                                         | dies by the signal (Popen returncode -15)
snapshot catch-up                               | the leader keeps 5000 entries after a snapshot
                                                |   (snapshotCatchUpEntries), so a follower must miss
                                                |   > 5000 + --snapshot-count entries to get a
                                                |   snapshot; its log then says "applied incoming
                                                |   snapshot at index N"
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree (tests/cluster, tests/e2e)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import cluster as C  # noqa: E402
from cluster import Cluster, ClusterError, b64, gw_post, gw_put, gw_range_prefix, unb64  # noqa: E402

try:
    from harness import etcd_member_id, etcd_cluster_id  # noqa: E402
except ImportError:  # pragma: no cover
    etcd_member_id = etcd_cluster_id = None

# ---------------------------------------------------------------- etcd's texts

ERR_UNHEALTHY = "etcdserver: unhealthy cluster"
ERR_LEARNER_NOT_READY = "etcdserver: can only promote a learner member which is in sync with leader"
ERR_LEARNER_RPC = "etcdserver: rpc not supported for learner"
ERRS_NO_QUORUM = ("etcdserver: request timed out", "context deadline exceeded",
                  "etcdserver: no leader")
ERR_STATUS_NO_LEADER = "etcdserver: no leader"
MSG_REMOVED = "the member has been permanently removed from the cluster"
MSG_NAME_NOT_FOUND = 'couldn\'t find local name "%s" in the initial cluster configuration'
MSG_COUNT_UNEQUAL = "member count is unequal"
MSG_CLUSTER_ID_MISMATCH = "request cluster ID mismatch"   # peers' log; informational
MSG_ADDED = "added to cluster"
MSG_PROMOTED = "promoted in cluster"
MSG_REMOVED_CTL = "removed from cluster"
DEFAULT_SNAPSHOT_LOG = r"applied incoming snapshot"
MEMBER_TABLE_HEADER = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]

ELECTION_S = C.ELECTION_MS / 1000.0
ERR_BAD_TRANSFEREE = "etcdserver: bad leader transferee"


class TestFailure(Exception):
    pass


def check(cond, msg, *a):
    if not cond:
        raise TestFailure(msg % a if a else msg)


def info(msg):
    print("    " + msg, flush=True)


def poll(fn, timeout, what, interval=0.1):
    """Calls fn until it returns a truthy value; returns it. Fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def err_line(res):
    """etcdctl's final "Error: ..." line (or the last stderr line)."""
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    for l in reversed(lines):
        if l.startswith("Error:"):
            return l
    return lines[-1] if lines else ""


def hexid(i):
    return "%x" % i


# ---------------------------------------------------------------- context


class Ctx:
    def __init__(self, args, name):
        self.args = args
        self.name = name
        self.clusters = []

    def cluster(self, n=None, extra=()):
        n = n or self.args.members
        token = "ct-%s-%d-%d" % (self.name, os.getpid(), random.randrange(1 << 30))
        c = Cluster(self.args.bin, n, token, extra=extra, keep=self.args.keep)
        self.clusters.append(c)
        return c

    def close(self, failed):
        for c in self.clusters:
            if failed:
                for m in c.members:
                    info("log tail of %s (%s):\n%s" % (m.name, m.log_path,
                                                       "".join("      " + l for l in m.log_tail(8).splitlines(True))))
            c.close()
            if failed and self.args.keep:
                info("kept %s" % c.workdir)


def members_by_id(c, via):
    return {m["ID"]: m for m in c.member_list(via)}


def put_ok(c, m, key, value, timeout=5.0):
    r = c.ctl(m, ["put", key, value, "-w", "json"], command_timeout=timeout)
    check(r.ok, "put %s via %s failed: %s", key, m.name, err_line(r))
    return r.json()["header"]["revision"]


def get_json(c, m, key, serializable=False, timeout=5.0):
    args = ["get", key, "-w", "json"]
    if serializable:
        args.append("--consistency=s")
    r = c.ctl(m, args, command_timeout=timeout)
    check(r.ok, "get %s via %s failed: %s", key, m.name, err_line(r))
    js = r.json()
    kvs = [(C.unb64(kv["key"]), C.unb64(kv.get("value", "")), kv["mod_revision"]) for kv in js.get("kvs", [])]
    return kvs, js["header"]["revision"]


def bulk_put(endpoints, n, prefix, value_fmt="v%d", key_mod=None, threads=1):
    """n puts through the JSON gateway, round-robin over endpoints; all must succeed.
    With threads > 1 the puts run concurrently (their order is then unspecified)."""
    errors = []

    def worker(start):
        for i in range(start, n, threads):
            if errors:
                return
            k = "%s%d" % (prefix, i % key_mod if key_mod else i)
            ep = endpoints[i % len(endpoints)]
            try:
                st, js = gw_put(ep, k, value_fmt % i, timeout=10)
            except Exception as e:
                st, js = None, repr(e)
            if st != 200:
                errors.append("gateway put %s on %s: HTTP %s %r" % (k, ep, st, js))
    if threads == 1:
        worker(0)
    else:
        ts = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(600)
    check(not errors, "%s", errors[:1])


def member_add(c, via, name, peer_url, learner=False, timeout=30.0):
    """member add, retried while refused with ERR_UNHEALTHY (strict reconfig's
    5 s warm-up). Returns (stdout, refusals seen)."""
    args = ["member", "add", name, "--peer-urls=" + peer_url]
    if learner:
        args.append("--learner")
    refused = []
    deadline = time.monotonic() + timeout
    while True:
        r = c.ctl(via, args)
        if r.ok:
            check(MSG_ADDED in r.stdout, "member add output lacks %r: %r", MSG_ADDED, r.stdout)
            return r.stdout, refused
        refused.append(err_line(r))
        check(ERR_UNHEALTHY in r.stderr, "member add failed with an unexpected error: %s", err_line(r))
        check(time.monotonic() < deadline, "member add still refused after %.0fs: %s", timeout, err_line(r))
        time.sleep(0.5)


def initial_cluster_from_add(out):
    m = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', out)
    check(m, "member add printed no ETCD_INITIAL_CLUSTER: %r", out)
    check('ETCD_INITIAL_CLUSTER_STATE="existing"' in out, "member add output lacks state existing: %r", out)
    return m.group(1)


# ---------------------------------------------------------------- tests


def t_form3(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    info("leader %s" % ldr.name)
    # member list -w json from every member: identical, right names/URLs
    ids = None
    for via in ms:
        lst = c.member_list(via)
        check(len(lst) == len(ms), "member list via %s has %d members: %r", via.name, len(lst), lst)
        by_name = {x.get("name"): x for x in lst}
        for m in ms:
            x = by_name.get(m.name)
            check(x is not None, "member list via %s lacks %s: %r", via.name, m.name, lst)
            check(x.get("peerURLs") == [m.peer_url], "%s peerURLs %r != %r", m.name, x.get("peerURLs"), [m.peer_url])
            check(x.get("clientURLs") == [m.client_url], "%s clientURLs %r != %r", m.name, x.get("clientURLs"),
                  [m.client_url])
            check(not x.get("isLearner"), "%s listed as learner", m.name)
        got = {x["name"]: x["ID"] for x in lst}
        check(ids is None or got == ids, "member IDs differ between members: %r vs %r", ids, got)
        ids = got
    # etcd derives bootstrap member IDs as sha1(peer URLs + token)
    if etcd_member_id:
        for m in ms:
            want = etcd_member_id([m.peer_url], c.token)
            check(ids[m.name] == want, "%s member ID %x != etcd's derivation %x", m.name, ids[m.name], want)
    # member list -w table
    r = c.ctl(ms[0], ["member", "list", "-w", "table"])
    check(r.ok, "member list -w table failed: %s", err_line(r))
    rows = [[cell.strip() for cell in l.strip().strip("|").split("|")] for l in r.stdout.splitlines()
            if l.startswith("|")]
    check(rows and rows[0] == MEMBER_TABLE_HEADER, "table header %r", rows[:1])
    body = rows[1:]
    check(len(body) == len(ms), "table has %d rows: %s", len(body), r.stdout)
    for m in ms:
        row = [x for x in body if x[2] == m.name]
        check(row == [[hexid(ids[m.name]), "started", m.name, m.peer_url, m.client_url, "false"]],
              "table row for %s: %r", m.name, row)
    # endpoint status --cluster: one leader, same term and cluster id everywhere
    def stable_status():
        r = c.ctl(ms[0], ["endpoint", "status", "--cluster", "-w", "json"])
        if not r.ok:
            return None
        sts = r.json()
        if len({s["Status"]["raftTerm"] for s in sts}) != 1:
            return None
        return sts
    sts = poll(stable_status, 10, "a stable endpoint status --cluster")
    check(sorted(s["Endpoint"] for s in sts) == sorted(m.client_url for m in ms),
          "status endpoints %r", [s["Endpoint"] for s in sts])
    leaders = {s["Status"]["leader"] for s in sts}
    check(len(leaders) == 1, "members disagree on the leader: %r", leaders)
    lid = leaders.pop()
    check(sum(1 for s in sts if s["Status"]["header"]["member_id"] == lid) == 1,
          "leader %x is not exactly one of the members", lid)
    cids = {s["Status"]["header"]["cluster_id"] for s in sts}
    check(len(cids) == 1, "cluster ids differ: %r", cids)
    if etcd_cluster_id:
        want = etcd_cluster_id(list(ids.values()))
        cid = next(iter(cids))
        check(cid == want, "cluster ID %x != etcd's derivation %x", cid, want)
    info("raft term %d, cluster id %x" % (sts[0]["Status"]["raftTerm"], next(iter(cids))))
    # endpoint health --cluster
    r = c.ctl(ms[0], ["endpoint", "health", "--cluster"])
    check(r.ok, "endpoint health --cluster failed: %s", r.stderr)
    healthy = [l for l in (r.stdout + r.stderr).splitlines() if " is healthy: successfully committed proposal" in l]
    check(len(healthy) == len(ms), "health lines: %r", r.stdout + r.stderr)


def t_write_via_follower(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    order = [m for m in ms if m is not ldr] + [ldr]   # followers first
    revs = []
    for rnd in range(2):
        for m in order:
            key, val = "wf/%s/%d" % (m.name, rnd), "val-%s-%d" % (m.name, rnd)
            rev = put_ok(c, m, key, val)
            check(not revs or rev == revs[-1] + 1, "put via %s: revision %d after %s", m.name, rev, revs)
            revs.append(rev)
            # linearizable read on every member: must see the write at once
            for x in ms:
                kvs, hrev = get_json(c, x, key)
                check(kvs == [(key, val, rev)], "linearizable get %s on %s right after the put: %r (want rev %d)",
                      key, x.name, kvs, rev)
                check(hrev >= rev, "header revision %d < %d on %s", hrev, rev, x.name)
            # serializable read: eventually the same value at the same revision
            for x in ms:
                poll(lambda: get_json(c, x, key, serializable=True)[0] == [(key, val, rev)], 10,
                     "serializable get %s on %s" % (key, x.name), 0.05)
    info("revisions %s" % revs)
    rev, h = c.wait_converged(timeout=15)
    check(rev == revs[-1], "converged revision %d != last write %d", rev, revs[-1])
    # every member reports the same revision in its status
    for m in ms:
        st = c.status(m)
        check(st and st["header"]["revision"] == revs[-1], "%s status revision %r", m.name,
              st and st["header"]["revision"])


class Writer(threading.Thread):
    """Unique-value puts through the gateway on the given endpoints until stopped."""

    def __init__(self, endpoints, prefix):
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.prefix = prefix
        self.acked = {}        # key -> (value, time acknowledged)
        self.failed = 0
        self.errors = []
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            ep = self.endpoints[i % len(self.endpoints)]
            key, val = "%s%06d" % (self.prefix, i), "val-%d-%x" % (i, random.randrange(1 << 40))
            i += 1
            try:
                st, js = gw_put(ep, key, val, timeout=3)
            except Exception as e:  # timeout, connection reset: indeterminate
                st, js = None, repr(e)
            with self.lock:
                if st == 200:
                    self.acked[key] = (val, time.monotonic())
                else:
                    self.failed += 1
                    if len(self.errors) < 5:
                        self.errors.append("%s: %s %r" % (ep, st, js))
                    time.sleep(0.05)

    def count_since(self, t):
        with self.lock:
            return sum(1 for _, (_, at) in self.acked.items() if at > t)

    def stop(self):
        self.stop_ev.set()
        self.join(15)


def t_leader_kill(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    ldr, st0 = c.wait_leader()
    survivors = [m for m in ms if m is not ldr]
    w = Writer([m.endpoint for m in survivors], "lk/")
    w.start()
    try:
        poll(lambda: len(w.acked) >= 20, 15, "20 acknowledged writes before the kill")
        t_kill = time.monotonic()
        ldr.kill9()
        new, st1 = c.wait_leader(survivors, timeout=30)
        took = time.monotonic() - t_kill
        info("killed leader %s; new leader %s (term %d -> %d) after %.2fs (election timeout %.1fs)"
             % (ldr.name, new.name, st0["raftTerm"], st1["raftTerm"], took, ELECTION_S))
        check(new in survivors, "new leader %s is not a survivor", new.name)
        check(st1["raftTerm"] > st0["raftTerm"], "raft term did not increase: %d -> %d",
              st0["raftTerm"], st1["raftTerm"])
        check(took <= 5 * ELECTION_S + 2, "new leader took %.1fs (> 5 election timeouts)", took)
        t_new = time.monotonic()
        poll(lambda: w.count_since(t_new) >= 20, 20, "20 acknowledged writes after the new election")
    finally:
        w.stop()
    info("writer: %d acknowledged, %d failed/indeterminate %s" % (len(w.acked), w.failed, w.errors[:2]))
    for m in survivors:
        kvs, _ = gw_range_prefix(m.endpoint, "lk/")
        lost = [k for k, (v, _) in w.acked.items() if kvs.get(k) != v]
        check(not lost, "%d acknowledged writes missing/wrong on %s, e.g. %r", len(lost), m.name, lost[:3])
    # the killed member restarts and catches up
    c.restart([ldr])
    rev, h = c.wait_converged(ms, timeout=30)
    r = c.ctl(ms[0], ["endpoint", "hashkv", "--cluster", "-w", "json"])
    check(r.ok, "endpoint hashkv --cluster failed: %s", err_line(r))
    hk = r.json()
    check(len(hk) == len(ms), "hashkv --cluster has %d entries", len(hk))
    check(len({x["HashKV"]["hash"] for x in hk}) == 1, "hashkv --cluster differs: %r", hk)
    kvs, _ = gw_range_prefix(ldr.endpoint, "lk/", serializable=True)
    lost = [k for k, (v, _) in w.acked.items() if kvs.get(k) != v]
    check(not lost, "restarted member lacks %d acknowledged writes", len(lost))
    info("converged at revision %d hash %d" % (rev, h))


def t_snapshot_catchup(ctx):
    c = ctx.cluster(extra=["--snapshot-count=100"])
    c.start_all()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    f = [m for m in ms if m is not ldr][0]
    rc = f.stop()
    info("stopped follower %s (SIGTERM; returncode %s)" % (f.name, rc))
    others = [m for m in ms if m is not f]
    n = ctx.args.snapshot_writes
    t0 = time.monotonic()
    bulk_put([ldr.endpoint], n, "sc/", key_mod=400, threads=4)
    info("%d puts while %s was down in %.1fs" % (n, f.name, time.monotonic() - t0))
    t0 = time.monotonic()
    c.restart([f])
    rev, h = c.wait_converged(ms, timeout=60)
    info("%s restarted and converged in %.1fs" % (f.name, time.monotonic() - t0))
    check(rev == n + 1, "converged at revision %d, want %d", rev, n + 1)
    want, _ = gw_range_prefix(ldr.endpoint, "sc/")
    got, _ = gw_range_prefix(f.endpoint, "sc/", serializable=True)
    check(len(want) == 400 and got == want, "follower data differs: %d vs %d keys", len(got), len(want))
    pat = re.compile(ctx.args.snapshot_log_pattern or DEFAULT_SNAPSHOT_LOG)
    hits = [l.strip() for l in f.log_text().splitlines() if pat.search(l)]
    if hits:
        info("snapshot used: %s" % hits[0][:160])
    elif ctx.args.snapshot_log_pattern or ctx.args.is_etcd:
        raise TestFailure("no log line matching %r on %s: the catch-up did not use a snapshot"
                          % (pat.pattern, f.name))
    else:
        info("INFO: no log line matching %r (pass --snapshot-log-pattern to require one)" % pat.pattern)


def t_replace_member(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    bad = [m for m in ms if m is not ldr][-1]
    alive = [m for m in ms if m is not bad]
    bulk_put([m.endpoint for m in ms], 60, "rm/a")
    ids = {x["name"]: x["ID"] for x in c.member_list(ldr)}
    bad.kill9()
    bulk_put([m.endpoint for m in alive], 40, "rm/b")
    # remove the failed member (a down member may be removed at once)
    r = c.ctl(alive[0], ["member", "remove", hexid(ids[bad.name])])
    check(r.ok and MSG_REMOVED_CTL in r.stdout, "member remove of the down member: %s %s", r.stdout, err_line(r))
    lst = c.member_list(alive[1])
    check(sorted(x.get("name") for x in lst) == sorted(m.name for m in alive), "after remove: %r", lst)
    bad.wipe()
    # add it back under the same name on a fresh peer port, new data dir
    c.members.remove(bad)
    new = c.new_member(bad.name)
    out, refused = member_add(c, alive[0], new.name, new.peer_url)
    if refused:
        info("member add refused %d time(s) first: %s" % (len(refused), refused[0]))
    new.state = "existing"
    new.initial_cluster = initial_cluster_from_add(out)
    info("ETCD_INITIAL_CLUSTER=%s" % new.initial_cluster)
    c.restart([new])
    bulk_put([m.endpoint for m in c.members], 30, "rm/c")
    rev, h = c.wait_converged(c.members, timeout=30)
    check(rev == 131, "converged revision %d, want 131", rev)

    def three_started():
        lst = c.member_list(new)
        return len(lst) == len(ms) and all(x.get("name") and x.get("clientURLs") and not x.get("isLearner")
                                     for x in lst) and lst
    lst = poll(three_started, 15, "%d started members in member list" % len(ms))
    by = {x["name"]: x for x in lst}
    check(by[new.name]["peerURLs"] == [new.peer_url], "new member's peer URLs %r", by[new.name]["peerURLs"])
    check(by[new.name]["ID"] != ids[bad.name], "re-added member reuses the removed ID")
    kv_new, _ = gw_range_prefix(new.endpoint, "rm/", serializable=True)
    kv_l, _ = gw_range_prefix(ldr.endpoint, "rm/")
    check(len(kv_l) == 130 and kv_new == kv_l, "replacement has %d of %d keys", len(kv_new), len(kv_l))
    # The replacement is a full voter, also in its own view: it can lead.
    alive = [m for m in c.members if m.alive()]
    nid = by[new.name]["ID"]
    r = poll(lambda: (lambda r: r if r.ok else None)(c.ctl(alive, ["move-leader", hexid(nid)],
                                                          command_timeout=10)),
             30, "move-leader to the replacement", 1.0)
    lead, _ = c.wait_leader(alive, timeout=10)
    check(lead is new, "leader is %s after move-leader to the replacement %s", lead.name, new.name)


def t_remove_leader(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    bulk_put([m.endpoint for m in ms], 30, "rl/")
    ldr, st0 = c.wait_leader()
    others = [m for m in ms if m is not ldr]
    lid = st0["leader"]
    refused = []
    deadline = time.monotonic() + 30
    while True:
        r = c.ctl(others[0], ["member", "remove", hexid(lid)])
        if r.ok:
            break
        refused.append(err_line(r))
        check(ERR_UNHEALTHY in r.stderr, "member remove failed unexpectedly: %s", err_line(r))
        check(time.monotonic() < deadline, "member remove refused for 30s: %s", err_line(r))
        time.sleep(0.5)
    t_rm = time.monotonic()
    check(MSG_REMOVED_CTL in r.stdout, "member remove output %r", r.stdout)
    if refused:
        info("remove refused %d time(s) first: %s" % (len(refused), refused[0]))
    # etcd: the removed leader shuts itself down, exit code 0
    rc = ldr.wait_exit(20)
    check(rc is not None, "removed leader %s still running 20s after its removal", ldr.name)
    info("removed leader %s exited by itself with code %d after %.2fs" % (ldr.name, rc, time.monotonic() - t_rm))
    check(rc == 0, "removed leader exited with code %d (etcd: 0)", rc)
    check(MSG_REMOVED in ldr.log_text(), "removed leader's log lacks %r", MSG_REMOVED)
    new, st1 = c.wait_leader(others, timeout=20)
    check(new in others and st1["leader"] != lid, "new leader %s", new.name)
    info("new leader %s at term %d after %.2fs" % (new.name, st1["raftTerm"], time.monotonic() - t_rm))
    for m in others:
        lst = c.member_list(m)
        check(sorted(x["ID"] for x in lst) == sorted(c.member_id_of(x) for x in others),
              "member list via %s: %r", m.name, lst)
        put_ok(c, m, "rl/after-" + m.name, "x")
    rev, _ = c.wait_converged(others, timeout=15)
    check(rev == 31 + len(others), "revision %d, want %d", rev, 31 + len(others))
    # restarting the removed member on its old data dir: it exits by itself again
    ldr.spawn()
    rc = ldr.wait_exit(20)
    check(rc is not None, "removed member restarted on its old data dir keeps running")
    info("restarted removed member exited with code %d" % rc)
    check(rc == 0 and MSG_REMOVED in ldr.log_text(), "restart of removed member: rc %d, log %r", rc,
          ldr.log_tail(3))
    check(len(c.member_list(others[0])) == len(others), "membership changed")


def t_learner(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    bulk_put([ldr.endpoint], 1000, "ln/", value_fmt="value-%d-" + "x" * 200)
    L = c.new_member("m%d" % (len(ms) + 1))
    out, refused = member_add(c, ldr, L.name, L.peer_url, learner=True)
    if refused:
        info("member add --learner refused %d time(s) first: %s" % (len(refused), refused[0]))
    lst = c.member_list(ldr)
    x = [x for x in lst if x["peerURLs"] == [L.peer_url]]
    check(len(x) == 1 and x[0].get("isLearner") is True and not x[0].get("name"),
          "unstarted learner in member list: %r", lst)
    lid = x[0]["ID"]
    # promote of a learner that has not even started: refused
    r = c.ctl(ldr, ["member", "promote", hexid(lid)])
    check(not r.ok and ERR_LEARNER_NOT_READY in r.stderr, "promote of an unstarted learner: rc %d %s %s",
          r.rc, r.stdout, err_line(r))
    info("promote of an unstarted learner: %s" % err_line(r))
    L.state = "existing"
    L.initial_cluster = initial_cluster_from_add(out)
    L.spawn()
    # promote: refused until the learner is in sync, then accepted
    c.wait_ready([L], 30)
    r = c.ctl(ldr, ["member", "list", "-w", "table"])
    rows = [[cell.strip() for cell in l.strip().strip("|").split("|")] for l in r.stdout.splitlines()
            if l.startswith("|")]
    lrow = [row for row in rows if len(row) == 6 and row[2] == L.name]
    check(lrow == [[hexid(lid), "started", L.name, L.peer_url, L.client_url, "true"]],
          "learner row in member list table: %r", rows)
    st = c.status(L)
    check(st and st.get("isLearner") is True, "endpoint status of the learner: %r", st)
    # writes on a learner fail with etcd's error
    r = c.ctl(L, ["put", "ln/onlearner", "x"], command_timeout=3)
    check(not r.ok and ERR_LEARNER_RPC in r.stderr, "put on learner: rc %d %s", r.rc, err_line(r))
    info("put on learner: %s" % err_line(r))
    st_, js = gw_put(L.endpoint, "ln/onlearner", "x")
    check(st_ == 503 and isinstance(js, dict) and js.get("message") == ERR_LEARNER_RPC,
          "gateway put on learner: %s %r", st_, js)
    # linearizable get fails, serializable get serves the learner's data
    r = c.ctl(L, ["get", "ln/0"], command_timeout=2)
    check(not r.ok and ERR_LEARNER_RPC in r.stderr, "linearizable get on learner: rc %d %s", r.rc, err_line(r))
    poll(lambda: get_json(c, L, "ln/999", serializable=True)[0], 20, "serializable get on the learner")
    info("serializable get on learner: served")
    early = []
    deadline = time.monotonic() + 30
    while True:
        r = c.ctl(ldr, ["member", "promote", hexid(lid)])
        if r.ok:
            break
        early.append(err_line(r))
        check(ERR_LEARNER_NOT_READY in r.stderr, "promote failed unexpectedly: %s", err_line(r))
        check(time.monotonic() < deadline, "promote still refused after 30s: %s", err_line(r))
        time.sleep(0.2)
    check(MSG_PROMOTED in r.stdout, "member promote output %r", r.stdout)
    info("promoted (%d early refusal(s)%s)" % (len(early), (": " + early[0]) if early else ""))
    lst = c.member_list(L)
    check(len(lst) == len(ms) + 1 and not any(x.get("isLearner") for x in lst), "after promote: %r", lst)
    put_ok(c, L, "ln/onpromoted", "y")
    c.wait_converged(c.members, timeout=20)
    st = c.status(L)
    check(st and not st.get("isLearner"), "status after promote: %r", st)


def t_restart_all(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    c.wait_leader()
    bulk_put([m.endpoint for m in ms], 150, "ra/", key_mod=100)
    rev0, h0 = c.wait_converged(ms, timeout=15)
    data0, _ = gw_range_prefix(ms[0].endpoint, "ra/")
    rcs = [m.stop() for m in ms]
    info("SIGTERM exit codes %s" % rcs)
    c.restart(ms)
    ldr, st = c.wait_leader(timeout=30)
    rev1, h1 = c.wait_converged(ms, timeout=30)
    check((rev1, h1) == (rev0, h0), "after restart revision/hash (%d,%d) != before (%d,%d)", rev1, h1, rev0, h0)
    for m in ms:
        data, _ = gw_range_prefix(m.endpoint, "ra/")
        check(data == data0, "data on %s differs after restart", m.name)
    rev = put_ok(c, ms[-1], "ra/after", "z")
    check(rev == rev0 + 1, "revision after restart %d, want %d", rev, rev0 + 1)
    info("re-formed with leader %s at term %d, revision %d preserved" % (ldr.name, st["raftTerm"], rev0))


def t_force_new_cluster(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    c.wait_leader()
    bulk_put([m.endpoint for m in ms], 50, "fn/")
    rev0, _ = c.wait_converged(ms, timeout=15)
    s = ms[0]
    mid = c.member_id_of(s)
    cid = c.status(s)["header"]["cluster_id"]
    for m in ms[1:]:
        m.kill9()
    r = c.ctl(s, ["put", "fn/noquorum", "x"], command_timeout=3)
    check(not r.ok and any(e in r.stderr for e in ERRS_NO_QUORUM), "put without quorum: rc %d %s",
          r.rc, err_line(r))
    info("put without quorum: rc %d after %.1fs: %s" % (r.rc, r.took, err_line(r)))
    kvs, _ = get_json(c, s, "fn/1", serializable=True)
    check(kvs and kvs[0][1] == "v1", "serializable get without quorum: %r", kvs)
    st = poll(lambda: (lambda x: x if x and ERR_STATUS_NO_LEADER in x.get("errors", []) else None)(c.status(s)),
              10, "endpoint status errors %r" % ERR_STATUS_NO_LEADER)
    check(not st.get("leader"), "status still names a leader: %r", st)
    rc = s.stop()
    c.restart([s], extra=["--force-new-cluster"])
    lst = c.member_list(s)
    check(len(lst) == 1 and lst[0]["ID"] == mid and lst[0].get("name") == s.name,
          "member list after --force-new-cluster: %r", lst)
    ldr, st = c.wait_leader([s], timeout=20)
    check(st["header"]["cluster_id"] == cid, "cluster id changed %x -> %x", cid, st["header"]["cluster_id"])
    data, rev = gw_range_prefix(s.endpoint, "fn/")
    check(len(data) == 50 and rev == rev0, "data after force-new-cluster: %d keys, revision %d (want 50, %d)",
          len(data), rev, rev0)
    rev = put_ok(c, s, "fn/after", "y")
    check(rev == rev0 + 1, "put after force-new-cluster at revision %d", rev)
    # a later restart without the flag stays a 1-member cluster with the data
    s.stop()
    c.restart([s])
    c.wait_leader([s], timeout=20)
    check(len(c.member_list(s)) == 1, "member count after plain restart: %r", c.member_list(s))
    kvs, _ = get_json(c, s, "fn/after")
    check(kvs and kvs[0][1] == "y", "data after plain restart: %r", kvs)


def t_strict_reconfig(ctx):
    c = ctx.cluster()
    c.start_all()
    t_up = time.monotonic()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    down = [m for m in ms if m is not ldr][-1]
    alive = [m for m in ms if m is not down]
    ids = {x["name"]: x["ID"] for x in c.member_list(ldr)}
    down.kill9()
    extra = c.new_member("extra")
    # keep trying for > 5 s after the members connected: always refused
    attempts = 0
    while True:
        r = c.ctl(alive[attempts % 2], ["member", "add", "extra", "--peer-urls=" + extra.peer_url])
        attempts += 1
        check(not r.ok, "member add accepted with %s down: %s", down.name, r.stdout)
        check(ERR_UNHEALTHY in r.stderr, "member add refused with an unexpected error: %s", err_line(r))
        if time.monotonic() - t_up > 7:
            break
        time.sleep(0.5)
    info("member add refused %d times with %s down: %s" % (attempts, down.name, err_line(r)))
    check(len(c.member_list(alive[0])) == len(ms), "membership changed by a refused add")
    r = c.ctl(alive[1], ["member", "remove", hexid(ids[down.name])])
    check(r.ok, "removing the down member: %s", err_line(r))
    lst = c.member_list(alive[0])
    check(sorted(x["name"] for x in lst) == sorted(m.name for m in alive), "after remove: %r", lst)
    # with only healthy members left, the add is accepted
    out, refused = member_add(c, alive[0], "extra", extra.peer_url, timeout=15)
    lst = c.member_list(alive[0])
    check(len(lst) == len(ms) and sum(1 for x in lst if not x.get("name")) == 1, "after add: %r", lst)


def t_read_after_write(ctx):
    """A linearizable read on a follower sees every write acknowledged before
    it was sent. The follower applies slowly (etcdpp's test-only failpoint
    pauses 5 ms after each entry; etcd ignores the variable), so reads arrive
    while it is half-way through a batch of entries."""
    c = ctx.cluster()
    slow = c.members[2]
    slow.env = {"ETCDPP_APPLY_FAILPOINTS": "entry_delay_ms=5"}
    c.start_all()
    ldr, _ = c.wait_leader()
    if ldr is slow:
        to = c.members[0]
        r = c.ctl(ldr, ["move-leader", hexid(c.member_id_of(to))], command_timeout=15)
        check(r.ok, "move-leader away from the slow member: %s", err_line(r))
    writers = [m for m in c.members if m is not slow]
    stale = []
    errors = []
    done = [0]
    lock = threading.Lock()

    def client(t):
        key = "raw/%d" % t
        for i in range(80):
            w = writers[(t + i) % len(writers)]
            st, js = gw_put(w.endpoint, key, "v%d" % i, timeout=10)
            if st != 200:
                with lock:
                    errors.append("put via %s: HTTP %s %r" % (w.name, st, js))
                return
            rev = int(js["header"]["revision"])
            st, js = gw_post(slow.endpoint, "/v3/kv/range", {"key": b64(key)}, timeout=10)
            if st != 200:
                with lock:
                    errors.append("range on %s: HTTP %s %r" % (slow.name, st, js))
                return
            kvs = js.get("kvs", [])
            got = (unb64(kvs[0].get("value", "")), int(kvs[0]["mod_revision"])) if kvs else None
            with lock:
                done[0] += 1
                if got != ("v%d" % i, rev):
                    stale.append("%s: wrote v%d at rev %d via %s, then read %r on %s (header rev %s)"
                                 % (key, i, rev, w.name, got, slow.name, js["header"]["revision"]))
    threads = [threading.Thread(target=client, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    check(not errors, "requests failed: %s", errors[:3])
    check(not stale, "%d of %d linearizable reads missed a write acknowledged before them: %s",
          len(stale), done[0], "; ".join(stale[:3]))
    check(done[0] == 6 * 80, "only %d of %d write/read pairs ran", done[0], 6 * 80)
    info("%d write-then-read pairs, every read saw its write" % done[0])


def t_reconfig_waits_leader(ctx):
    """A membership change asked for while no leader is known waits for one
    (as writes do) instead of failing at once with "no leader"."""
    c = ctx.cluster(extra=["--strict-reconfig-check=false"])
    c.start_all()
    c.wait_leader()
    a, b, d = c.members[:3]
    ids = {x["name"]: x["ID"] for x in c.member_list(a)}
    b.kill9()
    d.kill9()

    def leaderless():
        st = c.status(a)
        return st is not None and not st.get("leader")
    poll(leaderless, 20, "%s to lose its leader" % a.name)
    box = {}

    def remove():
        box["r"] = c.ctl(a, ["member", "remove", hexid(ids[d.name])], command_timeout=20)
    th = threading.Thread(target=remove)
    t_issue = time.monotonic()
    th.start()
    time.sleep(0.5)  # let etcdctl connect and ask while a has no leader
    check(th.is_alive(), "member remove without a leader ended at once: %r", box.get("r"))
    b.spawn()
    t_spawn = time.monotonic()
    th.join(60)
    r = box.get("r")
    check(r is not None and r.ok, "member remove once a leader is back: %s", err_line(r) if r else "hung")
    info("member remove asked with no leader; done %.2fs later (%s restarted after %.2fs)"
         % (r.took, b.name, t_spawn - t_issue))
    c.wait_ready([b])
    lst = c.member_list(a)
    check(sorted(x["name"] for x in lst) == sorted([a.name, b.name]), "after remove: %r", lst)
    rev = put_ok(c, b, "rw/after", "x", timeout=10)
    check(rev > 1, "write after the remove: rev %r", rev)


def survive(ctx, n, kill):
    c = ctx.cluster(n=n)
    c.start_all(timeout=60)
    ms = list(c.members)
    ldr, _ = c.wait_leader(timeout=30)
    bulk_put([m.endpoint for m in ms], 20, "sv/a")
    victims = [ldr] + [m for m in ms if m is not ldr][:kill - 1]
    for v in victims:
        v.kill9()
    alive = [m for m in ms if m not in victims]
    t0 = time.monotonic()
    new, st = c.wait_leader(alive, timeout=30)
    info("%d of %d killed (incl. leader %s); new leader %s after %.2fs" % (kill, n, ldr.name, new.name,
                                                                          time.monotonic() - t0))
    revs = []
    for i, m in enumerate(alive):
        revs.append(put_ok(c, m, "sv/b%d" % i, "w%d" % i, timeout=10))
    check(revs == list(range(21 + 1, 21 + 1 + len(alive))), "revisions %r", revs)
    for m in alive:
        for i in range(len(alive)):
            kvs, _ = get_json(c, m, "sv/b%d" % i)
            check(kvs == [("sv/b%d" % i, "w%d" % i, revs[i])], "linearizable get on %s: %r", m.name, kvs)
    rev, _ = c.wait_converged(alive, timeout=20)
    check(rev == revs[-1], "converged revision %d", rev)


def t_five_members(ctx):
    survive(ctx, 5, 2)


def t_seven_members(ctx):
    survive(ctx, 7, 3)


def t_errors(ctx):
    c = ctx.cluster()
    c.start_all()
    ms = list(c.members)
    c.wait_leader()
    base = c.initial_cluster(ms)
    # (a) --name not in --initial-cluster
    x = c.new_member("bogus")
    x.initial_cluster = base
    x.spawn()
    rc = x.wait_exit(15)
    msg = MSG_NAME_NOT_FOUND % "bogus"
    check(rc is not None and rc != 0, "name not in --initial-cluster: exit code %r (want nonzero)", rc)
    check(msg in x.log_text(), "name not in --initial-cluster: no %r in:\n%s", msg, x.log_tail(3))
    info("name not in --initial-cluster: exit %d, %r" % (rc, msg))
    # (b) --initial-cluster-state existing without member add
    x.wipe()
    x.initial_cluster = base + ",bogus=" + x.peer_url
    x.state = "existing"
    x.spawn()
    rc = x.wait_exit(15)
    check(rc is not None and rc != 0, "existing state, not added: exit code %r (want nonzero)", rc)
    check(MSG_COUNT_UNEQUAL in x.log_text(), "existing state, not added: no %r in:\n%s", MSG_COUNT_UNEQUAL,
          x.log_tail(3))
    info("state existing, not added: exit %d, %r" % (rc, MSG_COUNT_UNEQUAL))
    x.wipe()
    c.members.remove(x)
    # (c) a member re-created with a fresh data dir and a wrong --initial-cluster-token
    victim = ms[-1]
    ids = sorted(x["ID"] for x in c.member_list(ms[0]))
    victim.stop()
    victim.wipe()
    victim.extra = ["--initial-cluster-token=" + c.token + "-wrong"]
    victim.spawn()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        check(C.READY_LINE not in victim.log_text(), "member with a wrong token became ready")
        if victim.exited() is not None:
            break
        time.sleep(0.2)
    rc = victim.exited()
    info("wrong token, fresh data dir: %s" % ("exit %d" % rc if rc is not None else "still running, not ready"))
    if rc is None:
        r = C.run_ctl(victim.endpoint, ["get", "k"], command_timeout=1, dial_timeout=1)
        check(not r.ok, "member with a wrong token serves a linearizable get")
    # the real cluster is unaffected
    healthy = ms[:-1]
    r = c.ctl(healthy, ["endpoint", "health"])
    check(r.ok, "cluster unhealthy next to a wrong-token member: %s", r.stderr[-300:])
    check(sorted(x["ID"] for x in c.member_list(ms[0])) == ids, "membership changed")
    put_ok(c, ms[0], "err/after", "ok")
    mism = [l for m in healthy for l in m.log_text().splitlines() if MSG_CLUSTER_ID_MISMATCH in l]
    info("peers logged %r: %d line(s)" % (MSG_CLUSTER_ID_MISMATCH, len(mism)))


class CtlStream:
    """A long-running etcdctl (watch, lease keep-alive) whose output is read
    as it comes. Stopped by PID."""

    def __init__(self, endpoint, args):
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([C.etcdctl_path(), "--endpoints", endpoint] + args,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=C.ctl_env(), text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(5)


def health(m, timeout=5.0):
    """(HTTP status, parsed body) of GET /health on the member's client port."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://%s/health" % m.endpoint, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "null")


def t_health_quorum(ctx):
    """/health is true with a quorum, false (HTTP 503) on a member left
    without one, and true again once the quorum is back."""
    c = ctx.cluster(3)
    c.start_all()
    ms = list(c.members)
    c.wait_leader()
    for m in ms:
        st, body = health(m)
        check(st == 200 and body == {"health": "true"}, "/health on %s: %s %r", m.name, st, body)
    survivor, gone = ms[0], ms[1:]
    for m in gone:
        m.kill9()
    t0 = time.monotonic()
    poll(lambda: health(survivor) == (503, {"health": "false"}), 10 * ELECTION_S + 5,
         "/health false on %s without a quorum" % survivor.name, 0.2)
    info("/health false %.1fs after losing the quorum" % (time.monotonic() - t0))
    c.restart(gone)
    c.wait_leader()
    poll(lambda: health(survivor) == (200, {"health": "true"}), 30,
         "/health true on %s with the quorum back" % survivor.name, 0.2)


def t_watch_follower(ctx):
    """Watchers on followers (and on the leader) see every event of writes
    made through any member, in order, once; --rev replays history."""
    c = ctx.cluster(3)
    c.start_all()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    followers = [m for m in ms if m is not ldr]
    watchers = {m.name: CtlStream(m.endpoint, ["watch", "--prefix", "wf/"]) for m in ms}
    try:
        # Watches are set up asynchronously: write a marker until every watcher saw one.
        def all_saw_marker():
            put_ok(c, ldr, "wf/marker", "m")
            return all(any(l == "wf/marker" for l in w.snapshot()) for w in watchers.values())
        poll(all_saw_marker, 20, "every watcher established", 0.3)
        first_rev = put_ok(c, followers[0], "wf/start", "s")
        expected = [("PUT", "wf/start", "s")]
        for i in range(30):
            m = ms[i % 3]
            put_ok(c, m, "wf/k%02d" % i, "v%d" % i)
            expected.append(("PUT", "wf/k%02d" % i, "v%d" % i))
        r = c.ctl(followers[1], ["del", "wf/k00"])
        check(r.ok, "delete via follower: %s", err_line(r))
        expected.append(("DELETE", "wf/k00", ""))

        def events(lines):
            """(type, key, value) from etcdctl watch output after wf/start's PUT."""
            out, i = [], 0
            while i < len(lines):
                if lines[i] in ("PUT", "DELETE"):
                    typ, key = lines[i], lines[i + 1] if i + 1 < len(lines) else None
                    if key is None:
                        break
                    val = ""
                    if typ == "PUT":
                        if i + 2 >= len(lines):
                            break
                        val = lines[i + 2]
                        i += 3
                    else:
                        i += 2
                    out.append((typ, key, val))
                else:
                    i += 1
            start = [j for j, e in enumerate(out) if e[1] == "wf/start"]
            return out[start[0]:] if start else []

        for name, w in watchers.items():
            poll(lambda: len(events(w.snapshot())) >= len(expected), 20,
                 "%d events on the watcher at %s" % (len(expected), name), 0.2)
            got = [e for e in events(w.snapshot()) if e[1] != "wf/marker"]
            check(got == expected, "watcher on %s saw %r, want %r", name, got[:5], expected[:5])
        # History replay on a follower from the first revision of the batch.
        replay = CtlStream(followers[1].endpoint, ["watch", "--prefix", "wf/k", "--rev", str(first_rev)])
        try:
            want = [e for e in expected if e[1].startswith("wf/k")]
            poll(lambda: len(events(["PUT", "wf/start", "s"] + replay.snapshot())) - 1 >= len(want), 20,
                 "replay on %s" % followers[1].name, 0.2)
            got = events(["PUT", "wf/start", "s"] + replay.snapshot())[1:]
            check(got == want, "replay on %s: %r", followers[1].name, got[:5])
        finally:
            replay.stop()
    finally:
        for w in watchers.values():
            w.stop()


def t_lease_failover(ctx):
    """A lease kept alive through a follower survives a SIGKILL of the
    leader; once its holder stops renewing, its key is deleted within the
    TTL plus a bound, on every member at the same revision."""
    ttl = 5
    c = ctx.cluster(3)
    c.start_all()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    f1, f2 = [m for m in ms if m is not ldr]
    r = c.ctl(f1, ["lease", "grant", str(ttl)])
    check(r.ok, "lease grant via follower: %s", err_line(r))
    lease_id = r.stdout.split()[1]
    r = c.ctl(f1, ["put", "--lease", lease_id, "lf/held", "x", "-w", "json"])
    check(r.ok, "put --lease via follower: %s", err_line(r))
    put_rev = r.json()["header"]["revision"]
    ka = CtlStream(f1.endpoint, ["lease", "keep-alive", lease_id])
    try:
        poll(lambda: any("keepalived" in l for l in ka.snapshot()), 10, "first keepalive answer", 0.1)
        r = c.ctl(f2, ["lease", "timetolive", lease_id])
        check(r.ok and "remaining" in r.stdout, "timetolive via the other follower: %s %s",
              r.stdout, err_line(r))
        ldr.kill9()
        c.wait_leader([f1, f2], timeout=30)
        # Three TTLs later the key is still there (renewals reached the new leader).
        time.sleep(3 * ttl)
        for m in (f1, f2):
            kvs, _ = get_json(c, m, "lf/held")
            check(kvs and kvs[0][1] == "x", "leased key gone on %s although kept alive: %r", m.name, kvs)
        n_before = len([l for l in ka.snapshot() if "keepalived" in l])
    finally:
        ka.stop()
    info("%d keepalive answers before the holder stopped" % n_before)
    t_stop = time.monotonic()
    c.restart([ldr])
    bound = ttl + 2 * ELECTION_S + 5

    def gone_everywhere():
        return all(not get_json(c, m, "lf/held", serializable=True)[0] for m in ms)
    poll(gone_everywhere, bound + 10, "the leased key gone on every member", 0.2)
    took = time.monotonic() - t_stop
    info("key deleted %.1fs after the last renewal (TTL %ds)" % (took, ttl))
    check(took <= bound, "key took %.1fs to expire (bound %.1fs)", took, bound)
    # Same deletion revision on every member (watch history from the put).
    revs = {}
    for m in ms:
        w = CtlStream(m.endpoint, ["watch", "lf/held", "--rev", str(put_rev), "-w", "json"])
        try:
            def delete_rev():
                for l in w.snapshot():
                    if l.startswith("{"):
                        for ev in json.loads(l).get("Events", []):
                            if ev.get("type") == 1:
                                return ev["kv"]["mod_revision"]
                return None
            poll(lambda: delete_rev() is not None, 15, "DELETE event on %s" % m.name, 0.2)
            revs[m.name] = delete_rev()
        finally:
            w.stop()
    check(len(set(revs.values())) == 1, "deletion revisions differ: %r", revs)
    info("deleted at revision %s on every member" % list(revs.values())[0])


def t_lease_deposed_leader(ctx):
    """A leader paused (SIGSTOP) past the TTL of leases it last renewed is
    deposed; a new leader renews them all along. When the old leader wakes
    up its clock says they expired, but it is not the leader any more: its
    revokes must not reach the log through the new leader, and a keepalive
    it takes is answered for the new leader's lease state (etcd #15247,
    #16822). Every leased key survives and every lease keeps its TTL.
    etcdpp's test-only failpoint pauses 500 ms between finding leases
    expired and proposing their revokes, so the woken leader learns it was
    deposed in between, every time (etcd ignores the variable; etcd 3.4.23
    fails this test about half the time without it)."""
    ttl, n = 3, 20
    c = ctx.cluster(3)
    for m in c.members:
        m.env = {"ETCDPP_LEASE_FAILPOINTS": "revoke_delay_ms=500"}
    c.start_all()
    ldr, _ = c.wait_leader()
    f1, f2 = [m for m in c.members if m is not ldr]
    ids = []
    for i in range(n):
        r = c.ctl(ldr, ["lease", "grant", str(ttl)])
        check(r.ok, "lease grant: %s", err_line(r))
        ids.append(r.stdout.split()[1])
        r = c.ctl(ldr, ["put", "--lease", ids[-1], "dl/%02d" % i, "x"])
        check(r.ok, "put --lease: %s", err_line(r))
    # The last renewals the old leader sees.
    for lid in ids:
        r = c.ctl(ldr, ["lease", "keep-alive", "--once", lid])
        check(r.ok and "TTL(%d)" % ttl in r.stdout, "keepalive via the leader: %s %s",
              r.stdout, err_line(r))
    t_last = time.monotonic()
    streams = []
    ldr._signal(signal.SIGSTOP)
    try:
        c.wait_leader([f1, f2], timeout=30)
        # The new leader renews every lease from now on (etcdctl every TTL/3).
        streams = [CtlStream(f1.endpoint, ["lease", "keep-alive", lid]) for lid in ids]
        poll(lambda: all(any("keepalived" in l for l in s.snapshot()) for s in streams), 15,
             "keepalive answers from the new leader", 0.1)
        # Past the TTL (and the old leader's 500 ms expiry check) by its clock.
        time.sleep(max(0.0, t_last + ttl + 1.0 - time.monotonic()))
    finally:
        ldr._signal(signal.SIGCONT)
    try:
        # Asked at once, the old leader answers for the real leader.
        r = c.ctl(ldr, ["lease", "keep-alive", "--once", ids[0]], command_timeout=10)
        check(r.ok and "TTL(%d)" % ttl in r.stdout,
              "keepalive via the woken old leader: %s %s", r.stdout, err_line(r))
        # Several TTLs while it catches up: no key may go.
        end = time.monotonic() + 2 * ttl
        while time.monotonic() < end:
            r = c.ctl(f2, ["get", "dl/", "--prefix", "--keys-only", "-w", "json"])
            check(r.ok, "count via %s: %s", f2.name, err_line(r))
            count = r.json().get("count", 0)
            check(count == n, "%d of %d leased keys gone although kept alive at the new leader",
                  n - count, n)
            time.sleep(0.2)
        for lid in ids:
            r = c.ctl(ldr, ["lease", "timetolive", lid])
            check(r.ok and "remaining" in r.stdout, "lease %s after the old leader woke: %s %s",
                  lid, r.stdout, err_line(r))
    finally:
        for s in streams:
            s.stop()


def t_elect_lock(ctx):
    """etcdctl lock and elect (clientv3's concurrency recipes: leases, txn,
    watch) on followers: a second locker gets the lock once the holder is
    SIGKILLed (its session lease expires), a second candidate leads once
    the leader resigns, a third once that one is SIGKILLed, and an observer
    sees every leader in order."""
    c = ctx.cluster(3)
    c.start_all()
    ms = list(c.members)
    ldr, _ = c.wait_leader()
    f1, f2 = [m for m in ms if m is not ldr]
    ttl = 3
    # Without a command to run, `etcdctl lock` holds the lock until killed.
    a = CtlStream(f1.endpoint, ["lock", "el/lock", "--ttl", str(ttl)])
    procs = [a]
    try:
        poll(lambda: any(l.startswith("el/lock/") for l in a.snapshot()), 15, "A holds the lock", 0.1)
        b = CtlStream(f2.endpoint, ["lock", "el/lock", "--ttl", str(ttl)])
        procs.append(b)
        time.sleep(1.0)
        check(not any(l.startswith("el/lock/") for l in b.snapshot()),
              "B got the lock while A holds it: %r", b.snapshot())
        t0 = time.monotonic()
        a.proc.kill()
        poll(lambda: any(l.startswith("el/lock/") for l in b.snapshot()), ttl + 15,
             "B takes the lock after A was killed", 0.1)
        took = time.monotonic() - t0
        info("lock passed to B %.1fs after SIGKILL of A (session TTL %ds)" % (took, ttl))
        check(took <= ttl + 2 * ELECTION_S + 4, "lock took %.1fs to pass", took)
        b.stop()

        obs = CtlStream(ldr.endpoint, ["elect", "-l", "el/elect"])
        procs.append(obs)
        e1 = CtlStream(f1.endpoint, ["elect", "el/elect", "p1"])
        procs.append(e1)
        poll(lambda: "p1" in e1.snapshot(), 15, "p1 elected", 0.1)
        e2 = CtlStream(f2.endpoint, ["elect", "el/elect", "p2"])
        procs.append(e2)
        time.sleep(1.0)
        check("p2" not in e2.snapshot(), "p2 elected while p1 leads: %r", e2.snapshot())
        e1.proc.send_signal(signal.SIGINT)   # etcdctl resigns on interrupt
        poll(lambda: "p2" in e2.snapshot(), 15, "p2 elected after p1 resigned", 0.1)
        poll(lambda: "p1" in obs.snapshot() and "p2" in obs.snapshot(), 15, "observer saw p1 and p2", 0.1)
        seen = [l for l in obs.snapshot() if l in ("p1", "p2")]
        check(seen.index("p1") < seen.index("p2"), "observer order %r", seen)
        # SIGKILL of the elected one: its session lease (etcdctl elect uses
        # clientv3's default 60 s session TTL) expires and p3 takes over.
        e3 = CtlStream(ldr.endpoint, ["elect", "el/elect", "p3"])
        procs.append(e3)
        time.sleep(1.0)
        check("p3" not in e3.snapshot(), "p3 elected while p2 leads: %r", e3.snapshot())
        t0 = time.monotonic()
        e2.proc.kill()
        poll(lambda: "p3" in e3.snapshot(), 60 + 20, "p3 elected after p2 was killed", 0.2)
        took = time.monotonic() - t0
        info("p3 elected %.1fs after SIGKILL of p2 (session TTL 60s)" % took)
        check(took <= 60 + 2 * ELECTION_S + 5, "election took %.1fs to pass", took)
        poll(lambda: "p3" in obs.snapshot(), 15, "observer saw p3", 0.1)
    finally:
        for p in procs:
            p.stop()


def t_move_leader(ctx):
    """etcdctl move-leader hands leadership to the named member (etcdctl
    finds the leader itself); a learner or an unknown ID is refused; and a
    leader stopped with SIGTERM hands over before it goes."""
    c = ctx.cluster(3)
    c.start_all()
    ms = list(c.members)
    ldr, st0 = c.wait_leader()
    target = [m for m in ms if m is not ldr][0]
    tid = c.member_id_of(target)
    r = c.ctl(ms, ["move-leader", hexid(tid)], command_timeout=10)
    check(r.ok, "move-leader failed: %s", err_line(r))
    check("Leadership transferred from" in r.stdout and hexid(tid) in r.stdout,
          "move-leader said %r", r.stdout)
    new, _ = c.wait_leader(timeout=10)
    check(new is target, "leader is %s after move-leader to %s", new.name, target.name)
    r = c.ctl(ms, ["move-leader", "1234abcd"], command_timeout=10)
    check(not r.ok and ERR_BAD_TRANSFEREE in r.stderr, "move-leader to an unknown ID: %s %s",
          r.stdout, err_line(r))
    # SIGTERM of the leader: a new leader at once, not after an election timeout.
    t0 = time.monotonic()
    target.stop()
    others = [m for m in ms if m is not target]
    nxt, _ = c.wait_leader(others, timeout=15)
    info("leader %s stopped with SIGTERM; %s leads %.2fs later" % (target.name, nxt.name,
                                                                 time.monotonic() - t0))


TESTS = [
    ("form3", t_form3),
    ("write_via_follower", t_write_via_follower),
    ("leader_kill", t_leader_kill),
    ("snapshot_catchup", t_snapshot_catchup),
    ("replace_member", t_replace_member),
    ("remove_leader", t_remove_leader),
    ("learner", t_learner),
    ("restart_all", t_restart_all),
    ("force_new_cluster", t_force_new_cluster),
    ("strict_reconfig", t_strict_reconfig),
    ("reconfig_waits_leader", t_reconfig_waits_leader),
    ("read_after_write", t_read_after_write),
    ("five_members", t_five_members),
    ("seven_members", t_seven_members),
    ("errors", t_errors),
    ("health_quorum", t_health_quorum),
    ("watch_follower", t_watch_follower),
    ("lease_failover", t_lease_failover),
    ("lease_deposed_leader", t_lease_deposed_leader),
    ("elect_lock", t_elect_lock),
    ("move_leader", t_move_leader),
]


def main():
    ap = argparse.ArgumentParser(description="multi-member cluster tests (etcd 3.4 semantics)")
    ap.add_argument("--bin", required=True, help="server binary (etcdpp or etcd; a name is looked up on PATH)")
    ap.add_argument("--only", default="", help="comma-separated test names")
    ap.add_argument("--members", type=int, default=3, help="cluster size for the 3-member tests")
    ap.add_argument("--snapshot-writes", type=int, default=5300,
                    help="puts while a follower is down in snapshot_catchup (etcd 3.4 keeps 5000 "
                         "entries after a snapshot, so > 5100 are needed to force a snapshot)")
    ap.add_argument("--snapshot-log-pattern", default=os.environ.get("ETCDPP_SNAPSHOT_LOG_PATTERN"),
                    help="regex the caught-up follower's log must match (default for etcd: %r)"
                         % DEFAULT_SNAPSHOT_LOG)
    ap.add_argument("--keep", action="store_true", help="keep work dirs")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        print("\n".join(n for n, _ in TESTS))
        return 0
    b = args.bin if os.sep in args.bin else (shutil.which(args.bin) or args.bin)
    args.bin = os.path.abspath(b)
    if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
        print("server binary not found or not executable: %s" % args.bin)
        return 2
    try:
        ver = subprocess.run([args.bin, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception:
        ver = ""
    args.is_etcd = os.path.basename(args.bin) == "etcd" and "etcd Version: 3.4" in ver
    names = [n for n, _ in TESTS]
    only = [x for x in args.only.split(",") if x]
    bad = [x for x in only if x not in names]
    if bad:
        print("unknown test(s): %s (known: %s)" % (",".join(bad), ",".join(names)))
        return 2
    passed = failed = 0
    t_all = time.monotonic()
    for name, fn in TESTS:
        if only and name not in only:
            continue
        ctx = Ctx(args, name)
        t0 = time.monotonic()
        ok = False
        try:
            fn(ctx)
            ok = True
        except TestFailure as e:
            reason = str(e)
        except ClusterError as e:
            reason = "cluster: %s" % e
        except Exception as e:
            reason = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
        finally:
            try:
                ctx.close(failed=not ok)
            except Exception as e:
                print("    cleanup error: %r" % e)
        if ok:
            passed += 1
            print("PASS %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
        else:
            failed += 1
            print("FAIL %s: %s (%.1fs)" % (name, reason, time.monotonic() - t0), flush=True)
    print("%d passed, %d failed (%.1fs)" % (passed, failed, time.monotonic() - t_all))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
