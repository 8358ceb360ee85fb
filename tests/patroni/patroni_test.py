#!/usr/bin/env python3
"""Patroni on etcdpp: a real HA system using etcdpp as its etcd3 DCS.

Starts etcdpp (or real etcd, to compare) on a free 127.0.0.1 port and two
Patroni nodes managing PostgreSQL 15 (own data dirs made by initdb under a temp
dir, free ports, never the system cluster on 5432). Checks: one leader and one
streaming replica appear; a row written on the leader is read on the replica;
after SIGKILL of the leader's Patroni and its postmaster (by PID) the other
node becomes leader and accepts writes.

    python3 tests/patroni/patroni_test.py --bin build/etcdpp
    python3 tests/patroni/patroni_test.py --bin "$(command -v etcd)"   # reference

Installs the Debian packages `patroni` and `postgresql` with apt-get if they
are missing (needs root). PostgreSQL refuses to run as root, so when run as
root, Patroni runs as the `postgres` system user. Everything started is
stopped by PID at exit, temp dirs removed (--keep keeps them).
Exit 0 = all passed, 1 = a check failed, 77 = skipped (cannot install/run).
"""

import argparse
import atexit
import base64
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PG_BIN = "/usr/lib/postgresql/15/bin"
PATRONI = "/usr/bin/patroni"
SCOPE = "etcdpp-patroni-test"
SU_PASS = "su-secret"
REPL_PASS = "repl-secret"

_procs = []        # (label, Popen) started by us
_pids = []         # (label, pid) not our children (postmasters)
_tmpdirs = []
_nodes = []        # Node objects, for their postmaster.pid
_keep = False
_cleaned = False
passed = 0
failed = 0


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        log("PASS: " + what)
    else:
        failed += 1
        log("FAIL: " + what)
    return ok


def free_port(taken=set()):
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p not in taken and p != 5432:
            taken.add(p)
            return p


# --------------------------------------------------------------------------
# packages


def ensure_packages():
    need = []
    if not os.path.exists(PATRONI):
        need.append("patroni")
    if not os.path.exists(os.path.join(PG_BIN, "initdb")):
        need.append("postgresql")
    if not need:
        return True
    if os.geteuid() != 0:
        log("missing %s and not root: cannot apt-get install" % " ".join(need))
        return False
    log("installing %s with apt-get" % " ".join(need))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y"] + need, env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env)
        r = subprocess.run(["apt-get", "install", "-y"] + need, env=env)
    return r.returncode == 0 and os.path.exists(PATRONI) and \
        os.path.exists(os.path.join(PG_BIN, "initdb"))


# --------------------------------------------------------------------------
# cleanup


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cleanup():
    global _cleaned
    if _cleaned:
        return
    _cleaned = True
    # Patroni first (SIGKILL, so it cannot restart anything), then postmasters,
    # then etcd.
    # Postmasters of every node, read before their Patroni is killed.
    for n in _nodes:
        pid = n.postmaster_pid()
        if pid and ("postmaster " + n.name, pid) not in _pids:
            _pids.append(("postmaster " + n.name, pid))
    for label, proc in [p for p in _procs if p[0] != "etcd"]:
        if proc.poll() is None:
            log("cleanup: SIGKILL %s pid %d" % (label, proc.pid))
            try:
                proc.kill()
            except OSError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
    for label, pid in _pids:
        if _alive(pid):
            log("cleanup: SIGKILL %s pid %d" % (label, pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    # Postgres backends exit by themselves once their postmaster is gone.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for _, pid in _pids):
        time.sleep(0.2)
    for label, proc in _procs:
        if label == "etcd" and proc.poll() is None:
            log("cleanup: SIGTERM %s pid %d" % (label, proc.pid))
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    for d in _tmpdirs:
        if _keep:
            log("kept " + d)
        else:
            shutil.rmtree(d, ignore_errors=True)


def _on_signal(signum, frame):
    cleanup()
    sys.exit(1)


# --------------------------------------------------------------------------
# etcd


def http_json(url, body=None, timeout=3):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read().decode() or "null")
        except ValueError:
            return e.code, None


def start_etcd(bin_path, workdir):
    cport, pport = free_port(), free_port()
    curl, purl = "http://127.0.0.1:%d" % cport, "http://127.0.0.1:%d" % pport
    argv = [bin_path, "--name", "patroni-dcs", "--data-dir", os.path.join(workdir, "etcd-data"),
            "--listen-client-urls", curl, "--advertise-client-urls", curl,
            "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
            "--initial-cluster", "patroni-dcs=" + purl]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    logf = open(os.path.join(workdir, "etcd.log"), "w")
    log("start etcd: " + " ".join(argv))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                            env=env, start_new_session=True)
    _procs.append(("etcd", proc))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("etcd exited with %d" % proc.returncode)
        try:
            st, body = http_json(curl + "/health", timeout=1)
            if st == 200 and body and body.get("health") in ("true", True):
                st, ver = http_json(curl + "/version", timeout=1)
                log("etcd pid %d ready on %s, /version %s" % (proc.pid, curl, json.dumps(ver)))
                return cport
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError("etcd not healthy after 30s")


# --------------------------------------------------------------------------
# patroni


def node_config(name, workdir, etcd_port, rest_port, pg_port):
    d = os.path.join(workdir, name)
    # YAML is a superset of JSON: write JSON, no PyYAML needed here.
    cfg = {
        "scope": SCOPE,
        "namespace": "/service/",
        "name": name,
        "log": {"level": "INFO", "dir": d, "file_num": 2},
        "restapi": {"listen": "127.0.0.1:%d" % rest_port,
                    "connect_address": "127.0.0.1:%d" % rest_port},
        "etcd3": {"hosts": "127.0.0.1:%d" % etcd_port},
        "bootstrap": {
            "dcs": {
                "ttl": 10,
                "loop_wait": 2,
                "retry_timeout": 5,
                "maximum_lag_on_failover": 1048576,
                "postgresql": {
                    "use_pg_rewind": False,
                    "use_slots": True,
                    "parameters": {"wal_level": "replica", "hot_standby": "on",
                                   "max_wal_senders": 5, "max_replication_slots": 5,
                                   "wal_keep_size": "64MB"},
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            "pg_hba": ["local all all trust",
                       "host replication replicator 127.0.0.1/32 md5",
                       "host all all 127.0.0.1/32 md5"],
        },
        "postgresql": {
            "listen": "127.0.0.1:%d" % pg_port,
            "connect_address": "127.0.0.1:%d" % pg_port,
            "data_dir": os.path.join(d, "data"),
            "bin_dir": PG_BIN,
            "pgpass": os.path.join(d, "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": SU_PASS},
                "replication": {"username": "replicator", "password": REPL_PASS},
            },
            "parameters": {"unix_socket_directories": d, "shared_buffers": "16MB",
                           "max_connections": 20, "logging_collector": "off"},
        },
        "tags": {"nofailover": False, "noloadbalance": False,
                 "clonefrom": False, "nosync": False},
    }
    return d, cfg


class Node:
    def __init__(self, name, workdir, etcd_port, as_user):
        self.name = name
        self.rest_port = free_port()
        self.pg_port = free_port()
        self.dir, self.cfg = node_config(name, workdir, etcd_port, self.rest_port, self.pg_port)
        self.as_user = as_user
        self.proc = None
        self.cfg_path = os.path.join(self.dir, "patroni.yml")
        _nodes.append(self)

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        with open(self.cfg_path, "w") as f:
            json.dump(self.cfg, f, indent=2)
        kw = {}
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chown(self.cfg_path, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o700)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        env = {"PATH": "/usr/bin:/bin", "HOME": self.dir, "LANG": "C.UTF-8"}
        out = open(os.path.join(self.dir, "patroni.out"), "w")
        self.proc = subprocess.Popen([PATRONI, self.cfg_path], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.dir, start_new_session=True, **kw)
        _procs.append(("patroni " + self.name, self.proc))
        log("start patroni %s pid %d (rest 127.0.0.1:%d, postgres 127.0.0.1:%d, as %s)"
            % (self.name, self.proc.pid, self.rest_port, self.pg_port, self.as_user or "self"))

    def rest(self, path):
        try:
            return http_json("http://127.0.0.1:%d%s" % (self.rest_port, path), timeout=2)
        except (OSError, ValueError):
            return None, None

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.cfg["postgresql"]["data_dir"], "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def psql(self, sql, timeout=15):
        env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": SU_PASS, "PGCONNECT_TIMEOUT": "5"}
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-h", "127.0.0.1", "-p", str(self.pg_port),
                            "-U", "postgres", "-d", "postgres", "-X", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-c", sql],
                           env=env, capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout.strip(), r.stderr.strip()

    def log_tail(self, n=25):
        out = []
        for fn in ("patroni.out", "patroni.log"):
            p = os.path.join(self.dir, fn)
            try:
                with open(p, errors="replace") as f:
                    lines = f.readlines()[-n:]
                out.append("---- %s %s\n%s" % (self.name, fn, "".join(lines)))
            except OSError:
                pass
        return "\n".join(out)


def cluster_view(nodes):
    for n in nodes:
        if n.proc.poll() is None:
            st, body = n.rest("/cluster")
            if st == 200 and body:
                return body.get("members", [])
    return []


def wait_for(what, fn, timeout, interval=1.0):
    log("waiting up to %ds for %s" % (timeout, what))
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return None


def main():
    global _keep
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="etcdpp (or etcd) binary")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--timeout", type=int, default=120, help="bound for bootstrap")
    ap.add_argument("--failover-timeout", type=int, default=60)
    args = ap.parse_args()
    _keep = args.keep
    bin_path = os.path.abspath(args.bin)
    if not os.access(bin_path, os.X_OK):
        print("binary not found: %s" % bin_path)
        return 77
    if not ensure_packages():
        print("0 passed, 0 failed (skipped: patroni/postgresql not installable)")
        return 77

    as_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
            as_user = "postgres"
        except KeyError:
            print("running as root and no postgres user")
            return 77

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    workdir = tempfile.mkdtemp(prefix="etcdpp-patroni-")
    _tmpdirs.append(workdir)
    os.chmod(workdir, 0o755)
    log("workdir " + workdir)
    try:
        run(bin_path, workdir, as_user, args)
    except Exception as e:  # noqa: BLE001
        check(False, "unexpected error: %r" % (e,))
    finally:
        if failed:
            for n in getattr(run, "nodes", []):
                print(n.log_tail(), flush=True)
            try:
                with open(os.path.join(workdir, "etcd.log"), errors="replace") as f:
                    print("---- etcd.log (tail)\n" + "".join(f.readlines()[-20:]), flush=True)
            except OSError:
                pass
        cleanup()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


def run(bin_path, workdir, as_user, args):
    etcd_port = start_etcd(bin_path, workdir)
    nodes = [Node("node1", workdir, etcd_port, as_user), Node("node2", workdir, etcd_port, as_user)]
    run.nodes = nodes
    nodes[0].start()
    time.sleep(1)  # let node1 take the initialize key; node2 would lose the race anyway
    nodes[1].start()

    def leader_and_streaming_replica():
        for n in nodes:
            if n.proc.poll() is not None:
                raise RuntimeError("patroni %s exited with %d" % (n.name, n.proc.returncode))
        members = cluster_view(nodes)
        leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        replicas = [m for m in members if m.get("role") in ("replica", "sync_standby")
                    and m.get("state") in ("running", "streaming")]
        if len(leaders) != 1 or len(replicas) != 1:
            return None
        leader = next(n for n in nodes if n.name == leaders[0]["name"])
        replica = next(n for n in nodes if n.name == replicas[0]["name"])
        # Really streaming: the leader has a walsender in state streaming.
        rc, out, _ = leader.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        if rc != 0 or out != "1":
            return None
        st_l, _ = leader.rest("/leader")
        st_r, _ = replica.rest("/replica")
        if st_l != 200 or st_r != 200:
            return None
        return leader, replica, members

    got = wait_for("one leader and one streaming replica", leader_and_streaming_replica,
                   args.timeout, interval=2)
    if not check(got is not None, "one leader and one streaming replica elected through etcd"):
        log("cluster view: %s" % json.dumps(cluster_view(nodes)))
        return
    leader, replica, members = got
    log("leader %s, replica %s; /cluster members: %s" % (
        leader.name, replica.name,
        json.dumps([{k: m.get(k) for k in ("name", "role", "state", "timeline", "lag")}
                    for m in members])))

    # DCS content, as Patroni wrote it (via the etcd JSON gateway).
    pfx = ("/service/%s/" % SCOPE).encode()
    st, body = http_json("http://127.0.0.1:%d/v3/kv/range" % etcd_port,
                         {"key": base64.b64encode(pfx).decode(),
                          "range_end": base64.b64encode(pfx[:-1] + b"0").decode(),
                          "keys_only": True})
    keys = [base64.b64decode(kv["key"]).decode() for kv in (body or {}).get("kvs", [])]
    log("DCS keys: %s" % keys)
    check("/service/%s/leader" % SCOPE in keys, "leader key present in etcd")

    rc, out, err = leader.psql("CREATE TABLE t (id int primary key, v text); "
                               "INSERT INTO t VALUES (1, 'written on %s')" % leader.name)
    check(rc == 0, "write a row on leader %s (%s)" % (leader.name, err or out))

    def row_on_replica():
        rc, out, _ = replica.psql("SELECT v FROM t WHERE id = 1")
        return out if rc == 0 and out else None

    got = wait_for("the row on replica %s" % replica.name, row_on_replica, 30)
    check(got == "written on %s" % leader.name, "row read on replica %s: %r" % (replica.name, got))

    # Failover: SIGKILL the leader's Patroni and its postmaster, by PID.
    ppid = leader.postmaster_pid()
    st, pat = leader.rest("/patroni")
    log("leader %s: patroni pid %d, postmaster pid %s, /patroni state %s"
        % (leader.name, leader.proc.pid, ppid, (pat or {}).get("state")))
    if not check(ppid is not None and _alive(ppid), "leader postmaster PID from postmaster.pid"):
        return
    _pids.append(("postmaster " + leader.name, ppid))
    t0 = time.monotonic()
    os.kill(leader.proc.pid, signal.SIGKILL)
    os.kill(ppid, signal.SIGKILL)
    leader.proc.wait(10)
    log("SIGKILLed patroni %d and postmaster %d of %s" % (leader.proc.pid, ppid, leader.name))

    def new_leader():
        if replica.proc.poll() is not None:
            raise RuntimeError("patroni %s exited with %d" % (replica.name, replica.proc.returncode))
        st, body = replica.rest("/leader")
        if st != 200:
            return None
        rc, out, _ = replica.psql("SELECT pg_is_in_recovery()")
        return (body or {}).get("role") if rc == 0 and out == "f" else None

    got = wait_for("%s to become leader" % replica.name, new_leader, args.failover_timeout)
    check(got is not None, "%s became leader %.1fs after the SIGKILL" % (replica.name, time.monotonic() - t0))
    if got is None:
        log("cluster view: %s" % json.dumps(cluster_view(nodes)))
        return
    members = cluster_view(nodes)
    log("/cluster members: %s" % json.dumps(
        [{k: m.get(k) for k in ("name", "role", "state", "timeline")} for m in members]))
    check(any(m.get("name") == replica.name and m.get("role") == "leader" for m in members),
          "/cluster lists %s as leader" % replica.name)

    rc, out, err = replica.psql("INSERT INTO t VALUES (2, 'written on %s') RETURNING id" % replica.name)
    check(rc == 0 and out.startswith("2"), "write on the new leader %s (%s)" % (replica.name, err or out))
    rc, out, _ = replica.psql("SELECT count(*) FROM t")
    check(rc == 0 and out == "2", "new leader has both rows (%s)" % out)

    # Against etcd 3.4 Patroni logs no failed DCS request in this scenario
    # (etcd stays up throughout); every one seen here is a difference.
    bad = []
    for n in nodes:
        try:
            with open(os.path.join(n.dir, "patroni.log"), errors="replace") as f:
                for line in f:
                    if ("Request to server" in line and "failed" in line) or \
                            "watchprefix failed" in line or "KVCache.run" in line:
                        bad.append("%s: %s" % (n.name, line.strip()[:240]))
        except OSError:
            pass
    for b in bad:
        log("  " + b)
    check(not bad, "no failed etcd request in the Patroni logs (%d found)" % len(bad))


if __name__ == "__main__":
    sys.exit(main())
