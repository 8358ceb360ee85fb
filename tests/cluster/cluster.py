"""A small multi-member cluster harness for process-level tests (stdlib only).

    c = Cluster(bin_path, n=3, token="cluster-test-form3-...")
    c.start_all()                       # fresh ports, fresh data dirs, waits ready
    c.ctl(c.members[0], ["put", "k", "v"])
    c.kill9(c.members[1]); c.start(c.members[1])
    c.close()                           # stops by PID, removes the work dir

* Every member listens on 127.0.0.1 only, on ports found by binding port 0;
  a first start that loses the race ("address already in use") is retried
  on fresh ports with fresh data dirs.
* Every process is started in its own session and is stopped by PID (its
  process group, pgid == pid): SIGTERM, then SIGKILL. Processes still alive
  at interpreter exit are SIGKILLed (atexit).
* Waits are polls on conditions with deadlines; every etcdctl call carries
  --dial-timeout/--command-timeout and a subprocess timeout.
"""

import atexit
import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

READY_LINE = "ready to serve client requests"

# Election timing robust on a loaded 2-core machine (ms).
HEARTBEAT_MS = 100
ELECTION_MS = 1000

_live = set()  # Member objects with a running process


def _cleanup():
    for m in list(_live):
        try:
            m.kill9()
        except Exception:
            pass


atexit.register(_cleanup)


class ClusterError(Exception):
    pass


def free_port(taken=()):
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p not in taken:
            return p


def server_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}


def ctl_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "3"
    return env


def etcdctl_path():
    p = os.environ.get("ETCDCTL_BIN") or shutil.which("etcdctl")
    if not p:
        raise ClusterError("etcdctl not found (set ETCDCTL_BIN or put it on PATH)")
    return p


class Result:
    def __init__(self, argv, out, err, rc, took):
        self.argv, self.stdout, self.stderr, self.rc, self.took = argv, out, err, rc, took

    @property
    def ok(self):
        return self.rc == 0

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return "Result(rc=%s, out=%r, err=%r)" % (self.rc, self.stdout[-600:], self.stderr[-600:])


def run_ctl(endpoints, args, command_timeout=5.0, dial_timeout=2.0, wall=None):
    """etcdctl --endpoints=... --dial-timeout --command-timeout args; never raises."""
    if isinstance(endpoints, (list, tuple)):
        endpoints = ",".join(endpoints)
    argv = [etcdctl_path(), "--endpoints=" + endpoints,
            "--dial-timeout=%gs" % dial_timeout,
            "--command-timeout=%gs" % command_timeout] + list(args)
    wall = wall or (command_timeout + dial_timeout + 15)
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=ctl_env(), timeout=wall)
        return Result(argv, p.stdout, p.stderr, p.returncode, time.monotonic() - t0)
    except subprocess.TimeoutExpired as e:
        def s(x):
            return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
        return Result(argv, s(e.stdout), s(e.stderr) + "\n[etcdctl killed after %ss]" % wall,
                      -9, time.monotonic() - t0)


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s).decode(errors="replace")


def gw_post(endpoint, path, body, timeout=3.0):
    """POST to the JSON gateway (/v3/...). Returns (http_status, parsed json or text)."""
    req = urllib.request.Request("http://%s%s" % (endpoint, path), data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read().decode(errors="replace")
            status = r.status
    except urllib.error.HTTPError as e:
        data = e.read().decode(errors="replace")
        status = e.code
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def gw_put(endpoint, key, value, timeout=3.0):
    return gw_post(endpoint, "/v3/kv/put", {"key": b64(key), "value": b64(value)}, timeout)


def gw_range_prefix(endpoint, prefix, serializable=False, timeout=5.0):
    """{key: value} under prefix, plus the header revision. Raises on error."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = {"key": b64(prefix), "range_end": b64(end)}
    if serializable:
        body["serializable"] = True
    st, js = gw_post(endpoint, "/v3/kv/range", body, timeout)
    if st != 200 or not isinstance(js, dict):
        raise ClusterError("range %s on %s: HTTP %s %r" % (prefix, endpoint, st, js))
    kvs = {unb64(kv["key"]): unb64(kv.get("value", "")) for kv in js.get("kvs", [])}
    return kvs, int(js["header"]["revision"])


class Member:
    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name
        self.client_port = None
        self.peer_port = None
        self.data_dir = os.path.join(cluster.workdir, name + ".data")
        self.log_path = os.path.join(cluster.workdir, name + ".log")
        self.proc = None
        self.returncode = None
        self.log_offset = 0
        self.state = "new"
        self.initial_cluster = None   # None: the cluster's
        self.extra = []               # per-member extra flags
        self.env = {}                 # per-member extra environment
        self.starts = 0

    def __repr__(self):
        return "<%s %s>" % (self.name, self.endpoint)

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def pick_ports(self, taken):
        self.client_port = free_port(taken)
        taken.add(self.client_port)
        self.peer_port = free_port(taken)
        taken.add(self.peer_port)

    def argv(self, extra=()):
        c = self.cluster
        return [c.bin, "--name=" + self.name, "--data-dir=" + self.data_dir,
                "--listen-client-urls=" + self.client_url,
                "--advertise-client-urls=" + self.client_url,
                "--listen-peer-urls=" + self.peer_url,
                "--initial-advertise-peer-urls=" + self.peer_url,
                "--initial-cluster=" + (self.initial_cluster or c.initial_cluster()),
                "--initial-cluster-state=" + self.state,
                "--initial-cluster-token=" + c.token,
                "--heartbeat-interval=%d" % HEARTBEAT_MS,
                "--election-timeout=%d" % ELECTION_MS,
                ] + list(c.extra) + list(self.extra) + list(extra)

    def spawn(self, extra=()):
        if self.alive():
            raise ClusterError("%s already running" % self.name)
        self.starts += 1
        argv = self.argv(extra)
        with open(self.log_path, "a") as log:
            log.write("\n===== cluster_test: start #%d: %s\n" % (
                self.starts, " ".join(shlex.quote(a) for a in argv)))
            log.flush()
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=dict(server_env(), **self.env), start_new_session=True)
        self.returncode = None
        _live.add(self)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def exited(self):
        """Return code if the process has exited (reaps it), else None."""
        if self.proc is None:
            return self.returncode
        rc = self.proc.poll()
        if rc is not None:
            self.returncode = rc
            self.proc = None
            _live.discard(self)
        return rc

    def log_text(self, since_start=True):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=15):
        return "".join(self.log_text().splitlines(True)[-n:])

    def ready(self):
        """Ready line since the last start, or a successful endpoint status."""
        if READY_LINE in self.log_text():
            return True
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), timeout=0.2):
                pass
        except OSError:
            return False
        r = run_ctl(self.endpoint, ["endpoint", "status", "-w", "json"], command_timeout=1,
                    dial_timeout=1, wall=10)
        return r.ok

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.exited()
            if rc is not None:
                raise ClusterError("%s exited with code %d before it was ready:\n%s"
                                   % (self.name, rc, self.log_tail()))
            if READY_LINE in self.log_text():
                return
            if time.monotonic() >= deadline:
                if self.ready():
                    return
                raise ClusterError("%s not ready after %.0fs:\n%s" % (self.name, timeout, self.log_tail()))
            time.sleep(0.1)

    def _signal(self, sig):
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit code."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        return self.exited()

    def kill9(self):
        if self.proc is None:
            return self.returncode
        self._signal(signal.SIGKILL)
        self.proc.wait()
        return self.exited()

    def wait_exit(self, timeout):
        if self.proc is None:
            return self.returncode
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exited()

    def wipe(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Cluster:
    def __init__(self, bin_path, n, token, extra=(), keep=False):
        self.bin = bin_path
        self.token = token
        self.extra = list(extra)
        self.keep = keep
        self.workdir = tempfile.mkdtemp(prefix="etcdpp-cluster-%s-" % token[:40])
        self.members = [Member(self, "m%d" % (i + 1)) for i in range(n)]
        self.taken = set()

    def initial_cluster(self, members=None):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in (members or self.members))

    def new_member(self, name):
        m = Member(self, name)
        m.pick_ports(self.taken)
        self.members.append(m)
        return m

    # -- lifecycle -------------------------------------------------------------

    def start_all(self, timeout=40.0, attempts=3):
        """First start of a fresh cluster (state new)."""
        for attempt in range(attempts):
            for m in self.members:
                m.pick_ports(self.taken)
                m.state = "new"
            for m in self.members:
                m.spawn()
            try:
                self.wait_ready(self.members, timeout)
                return
            except ClusterError as e:
                in_use = any("address already in use" in m.log_text() for m in self.members)
                for m in self.members:
                    m.kill9()
                    m.wipe()
                if not in_use or attempt + 1 == attempts:
                    raise
                print("  (address already in use; retrying on fresh ports: %s)" % str(e)[:200])

    def restart(self, members, timeout=40.0, extra=()):
        for m in members:
            m.spawn(extra)
        self.wait_ready(members, timeout)

    def wait_ready(self, members, timeout=40.0):
        deadline = time.monotonic() + timeout
        for m in members:
            m.wait_ready(max(1.0, deadline - time.monotonic()))

    def running(self):
        return [m for m in self.members if m.alive()]

    def close(self):
        for m in self.members:
            try:
                m.stop(timeout=5)
            except Exception:
                m.kill9()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- clients ---------------------------------------------------------------

    def ctl(self, members, args, command_timeout=5.0, dial_timeout=2.0, wall=None):
        if isinstance(members, Member):
            members = [members]
        return run_ctl([m.endpoint for m in members], args, command_timeout, dial_timeout, wall)

    def status(self, m, timeout=2.0):
        """endpoint status -w json of one member as a dict, or None."""
        r = run_ctl(m.endpoint, ["endpoint", "status", "-w", "json"], command_timeout=timeout,
                    dial_timeout=1, wall=timeout + 10)
        if not r.ok:
            return None
        try:
            return r.json()[0]["Status"]
        except (ValueError, KeyError, IndexError):
            return None

    def member_id_of(self, m):
        st = self.status(m)
        return st["header"]["member_id"] if st else None

    def leader(self, members=None):
        """(leader Member, its status) when every given running member that
        answers agrees on one leader which is itself among them; else (None, None)."""
        members = [m for m in (members or self.members) if m.alive()]
        sts = {}
        for m in members:
            st = self.status(m)
            if st is None:
                return None, None
            sts[m.name] = st
        leaders = {st.get("leader", 0) for st in sts.values()}
        if len(leaders) != 1:
            return None, None
        lid = leaders.pop()
        if not lid:
            return None, None
        for m in members:
            if sts[m.name]["header"]["member_id"] == lid:
                return m, sts[m.name]
        return None, None

    def wait_leader(self, members=None, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ldr, st = self.leader(members)
            if ldr is not None:
                return ldr, st
            time.sleep(0.1)
        raise ClusterError("no agreed leader among %s within %.0fs" % (
            [m.name for m in (members or self.members) if m.alive()], timeout))

    def member_list(self, m, timeout=5.0):
        r = self.ctl(m, ["member", "list", "-w", "json"], command_timeout=timeout)
        if not r.ok:
            raise ClusterError("member list via %s failed: %r" % (m.name, r))
        return r.json().get("members", [])

    def hashkv(self, m, rev=0, timeout=5.0):
        """(hash, revision, compact_revision) or None."""
        r = self.ctl(m, ["endpoint", "hashkv", "--rev=%d" % rev, "-w", "json"],
                     command_timeout=timeout)
        if not r.ok:
            return None
        try:
            h = r.json()[0]["HashKV"]
            return h["hash"], h["header"]["revision"], h.get("compact_revision", 0)
        except (ValueError, KeyError, IndexError):
            return None

    def wait_converged(self, members=None, timeout=30.0):
        """Polls until every member reports the same revision and the same
        hashkv at it. Returns (revision, hash)."""
        members = members or self.running()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            revs = {}
            for m in members:
                st = self.status(m)
                revs[m.name] = st["header"]["revision"] if st else None
            last = ("revisions", revs)
            if None not in revs.values() and len(set(revs.values())) == 1:
                rev = next(iter(revs.values()))
                hs = {m.name: self.hashkv(m, rev) for m in members}
                last = ("hashkv@%d" % rev, hs)
                if None not in hs.values() and len({h[0] for h in hs.values()}) == 1:
                    return rev, next(iter(hs.values()))[0]
            time.sleep(0.2)
        raise ClusterError("members did not converge within %.0fs; last %s: %s" % (timeout, last[0], last[1]))
