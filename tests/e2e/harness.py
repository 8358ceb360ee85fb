"""Process-level test harness: run an etcd-compatible server binary on loopback
and drive it with etcdctl (ETCDCTL_API=3).

Python 3 standard library only. Used by run_scenarios.py; also importable from
ad-hoc tests:

    from harness import Server, find_etcdctl
    with Server(bin_path="/work/main/build/etcdpp") as srv:
        res = srv.etcdctl(["put", "foo", "bar"])
        assert res.exit_code == 0 and res.stdout == "OK\n"
        srv.kill9()
        srv.start()            # same data dir, same ports
        print(srv.etcdctl(["get", "foo"]).stdout)

What a Server does:
  * picks a free client port and a free peer port by binding port 0 on
    127.0.0.1 (so parallel runs do not collide; a start that still loses the
    race with "address already in use" is retried on fresh ports);
  * listens on 127.0.0.1 only (client AND peer URLs, --initial-cluster too);
  * uses a fresh temp data dir (removed on close() unless keep=True);
  * waits for readiness by polling, never by a fixed sleep: the line
    "ready to serve client requests" on the server's stderr, or (as a
    fallback, from 1 s after start, once the port accepts TCP) a successful
    `etcdctl endpoint health`; bounded by start_timeout_s;
  * stops by PID: SIGTERM, then SIGKILL after stop_timeout_s; kill9() sends
    SIGKILL at once; start() again reuses the same data dir and ports.

Member and cluster IDs: etcd derives them deterministically (see
etcd_member_id / etcd_cluster_id below), but from the peer URL, whose port
is random per run. The normaliser therefore replaces an ID with <MEMBER_ID> /
<CLUSTER_ID> only when it EQUALS the value computed the way etcd does for this
run's URLs and cluster token; a server that derives a different ID keeps its
raw ID in the output and fails the golden diff.
"""

import atexit
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

READY_LINE = "ready to serve client requests"
DEFAULT_CLUSTER_TOKEN = "etcd-cluster"
DEFAULT_NAME = "e2e"

# Servers started by this process, stopped at interpreter exit no matter what.
_live_servers = set()


def _cleanup_live_servers():
    for srv in list(_live_servers):
        try:
            srv.kill9()
        except Exception:
            pass


atexit.register(_cleanup_live_servers)


# --------------------------------------------------------------------------
# etcd's ID derivation (etcdserver/api/membership/member.go, cluster.go, 3.4)


def etcd_member_id(peer_urls, cluster_token=DEFAULT_CLUSTER_TOKEN):
    """sha1(concat(sorted peer URLs) + token), first 8 bytes big-endian.

    This is the bootstrap form (no timestamp), used for members listed in
    --initial-cluster of a new cluster.
    """
    b = "".join(sorted(peer_urls)).encode() + cluster_token.encode()
    return struct.unpack(">Q", hashlib.sha1(b).digest()[:8])[0]


def etcd_cluster_id(member_ids):
    """sha1 of the sorted member IDs, each as 8 bytes big-endian; first 8 bytes."""
    b = b"".join(struct.pack(">Q", m) for m in sorted(member_ids))
    return struct.unpack(">Q", hashlib.sha1(b).digest()[:8])[0]


# --------------------------------------------------------------------------
# helpers


def free_port():
    """A port that was free on 127.0.0.1 a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def find_etcdctl():
    path = os.environ.get("ETCDCTL_BIN") or shutil.which("etcdctl")
    if not path:
        raise HarnessError("etcdctl not found (set ETCDCTL_BIN or put it on PATH)")
    return path


def etcdctl_version(etcdctl_path):
    out = subprocess.run([etcdctl_path, "version"], env=_etcdctl_env(),
                         capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"etcdctl version: (\S+)", out)
    return m.group(1) if m else "unknown"


def server_version(bin_path):
    """'3.4.23' for real etcd; whatever `<bin> --version` says otherwise."""
    try:
        out = subprocess.run([bin_path, "--version"], env=_server_env(),
                             capture_output=True, text=True, timeout=30)
    except OSError:
        return "unknown"
    m = re.search(r"etcd Version: (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def _server_env():
    # ETCD_* variables would silently change the server's configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    return env


def _etcdctl_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "3"
    return env


class HarnessError(Exception):
    pass


class Result:
    """Outcome of one etcdctl invocation."""

    def __init__(self, argv, stdin, stdout, stderr, exit_code):
        self.argv = argv
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.exit_code = exit_code

    def __repr__(self):
        return "Result(exit=%d, stdout=%r, stderr=%r)" % (
            self.exit_code, self.stdout, self.stderr)


def run_etcdctl(endpoint, args, stdin=None, etcdctl_path=None,
                command_timeout="5s", wall_timeout_s=60):
    """Run `etcdctl --endpoints=<endpoint> --command-timeout=<t> <args...>`.

    stdin: text fed to etcdctl (e.g. for `txn -i`); None means empty stdin
    (never the caller's terminal). Returns a Result; never raises on a
    non-zero exit code.
    """
    etcdctl_path = etcdctl_path or find_etcdctl()
    argv = [etcdctl_path, "--endpoints=" + endpoint,
            "--command-timeout=" + command_timeout] + list(args)
    try:
        p = subprocess.run(argv, input=stdin if stdin is not None else "",
                           capture_output=True, text=True, env=_etcdctl_env(),
                           timeout=wall_timeout_s)
        return Result(argv, stdin, p.stdout, p.stderr, p.returncode)
    except subprocess.TimeoutExpired as e:
        def _s(x):
            if isinstance(x, bytes):
                return x.decode(errors="replace")
            return x or ""
        return Result(argv, stdin, _s(e.stdout),
                      _s(e.stderr) + "\n[harness: etcdctl killed after %ss]\n" % wall_timeout_s,
                      -9)


class Background:
    """A background etcdctl (e.g. `watch`) whose output is collected while
    other commands run. stdin is a pipe (for `watch -i`). Output is read by
    threads so the child never blocks on a full pipe."""

    def __init__(self, endpoint, args, etcdctl_path=None, command_timeout="5s"):
        import threading
        etcdctl_path = etcdctl_path or find_etcdctl()
        self.argv = [etcdctl_path, "--endpoints=" + endpoint,
                     "--command-timeout=" + command_timeout] + list(args)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_etcdctl_env(), start_new_session=True)
        self._lock = threading.Lock()
        self._out = {"stdout": b"", "stderr": b""}
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, "stdout"),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, "stderr"),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, f, name):
        while True:
            b = f.read1(65536) if hasattr(f, "read1") else f.read(1)
            if not b:
                return
            with self._lock:
                self._out[name] += b

    def write(self, line):
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def lines(self, name="stdout"):
        with self._lock:
            return self._out[name].decode(errors="replace").count("\n")

    def wait_lines(self, n, timeout_s=10.0):
        """Waits until stdout+stderr hold n lines (or the child exits)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.lines("stdout") + self.lines("stderr") >= n:
                return True
            if self.proc.poll() is not None:
                for t in self._threads:
                    t.join(1)
                return self.lines("stdout") + self.lines("stderr") >= n
            time.sleep(0.02)
        return False

    def wait_exit(self, timeout_s=10.0):
        try:
            self.proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self):
        """SIGKILLs the child if still running; returns a Result."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        for t in self._threads:
            t.join(5)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        with self._lock:
            out = self._out["stdout"].decode(errors="replace")
            err = self._out["stderr"].decode(errors="replace")
        return Result(self.argv, None, out, err, self.proc.returncode)


# --------------------------------------------------------------------------
# the server process


class Server:
    """One single-member server process on 127.0.0.1.

    bin_path:   server binary (etcdpp, or real etcd when recording goldens);
                default $ETCDPP_BIN.
    extra_flags: list of extra command-line flags (e.g. ["--max-txn-ops=3"]).
    """

    def __init__(self, bin_path=None, extra_flags=(), name=DEFAULT_NAME,
                 workdir=None, keep=False, start_timeout_s=None,
                 stop_timeout_s=10.0, etcdctl_path=None):
        self.bin_path = bin_path or os.environ.get("ETCDPP_BIN")
        if not self.bin_path:
            raise HarnessError("no server binary: pass bin_path or set ETCDPP_BIN")
        if not (os.path.isfile(self.bin_path) and os.access(self.bin_path, os.X_OK)):
            raise HarnessError("server binary not found or not executable: %s" % self.bin_path)
        self.extra_flags = list(extra_flags)
        self.name = name
        self.keep = keep
        self.start_timeout_s = float(start_timeout_s or
                                     os.environ.get("ETCDPP_E2E_START_TIMEOUT", "30"))
        self.stop_timeout_s = stop_timeout_s
        self.etcdctl_path = etcdctl_path or find_etcdctl()
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="etcdpp-e2e-")
        self.data_dir = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "server.log")
        self.client_port = None
        self.peer_port = None
        self.proc = None
        self.starts = 0
        self.cluster_token = DEFAULT_CLUSTER_TOKEN
        for i, f in enumerate(self.extra_flags):
            if f.startswith("--initial-cluster-token="):
                self.cluster_token = f.split("=", 1)[1]
            elif f == "--initial-cluster-token" and i + 1 < len(self.extra_flags):
                self.cluster_token = self.extra_flags[i + 1]

    # -- addresses and IDs ---------------------------------------------------

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    @property
    def member_id(self):
        return etcd_member_id([self.peer_url], self.cluster_token)

    @property
    def cluster_id(self):
        return etcd_cluster_id([self.member_id])

    def argv(self):
        return [self.bin_path,
                "--name=" + self.name,
                "--data-dir=" + self.data_dir,
                "--listen-client-urls=" + self.client_url,
                "--advertise-client-urls=" + self.client_url,
                "--listen-peer-urls=" + self.peer_url,
                "--initial-advertise-peer-urls=" + self.peer_url,
                "--initial-cluster=%s=%s" % (self.name, self.peer_url),
                ] + self.extra_flags

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        """Start (or restart on the same data dir and ports) and wait until ready."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError("server already running (pid %d)" % self.proc.pid)
        first = self.client_port is None
        attempts = 3 if first else 1
        for attempt in range(attempts):
            if first:
                self.client_port = free_port()
                self.peer_port = free_port()
                while self.peer_port == self.client_port:
                    self.peer_port = free_port()
            try:
                self._spawn_and_wait()
                return self
            except HarnessError as e:
                if first and attempt + 1 < attempts and "address already in use" in str(e):
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                    continue
                raise

    def _spawn_and_wait(self):
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write("\n===== harness: start #%d: %s\n" % (
                self.starts, " ".join(shlex.quote(a) for a in self.argv())))
            log.flush()
            offset = log.tell()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=_server_env(),
                                         start_new_session=True)
        _live_servers.add(self)
        start = time.monotonic()
        deadline = start + self.start_timeout_s
        next_probe = start + 1.0
        while True:
            if self._ready_line_seen(offset):
                return
            rc = self.proc.poll()
            if rc is not None:
                _live_servers.discard(self)
                self.proc = None
                raise HarnessError("server exited with code %d before it was ready:\n%s"
                                   % (rc, self.log_tail(offset=offset)))
            now = time.monotonic()
            if now >= deadline:
                self.kill9()
                raise HarnessError("server not ready after %.0fs:\n%s"
                                   % (self.start_timeout_s, self.log_tail(offset=offset)))
            if now >= next_probe:
                next_probe = now + 1.0
                if _port_open(self.client_port):
                    r = run_etcdctl(self.endpoint, ["endpoint", "health"],
                                    etcdctl_path=self.etcdctl_path,
                                    command_timeout="1s", wall_timeout_s=10)
                    if r.exit_code == 0:
                        return
            time.sleep(0.05)

    def _ready_line_seen(self, offset):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                f.seek(offset)
                return READY_LINE in f.read()
        except OSError:
            return False

    def log_tail(self, lines=30, offset=0):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                f.seek(offset)
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig):
        """Signal the server's own process group: start_new_session made the
        server PID a group leader, so pgid == pid and the group holds only the
        server (and its children, if bin_path is a wrapper script). Only sent
        while the server is not yet reaped, so its PID cannot have been reused."""
        if self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        """Graceful stop by PID: SIGTERM, then SIGKILL after stop_timeout_s."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self._signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                rc = self.proc.wait()
        self.proc = None
        _live_servers.discard(self)
        return rc

    def kill9(self):
        """SIGKILL by PID at once (simulated crash); data dir is kept."""
        if self.proc is None:
            return None
        self._signal(signal.SIGKILL)
        rc = self.proc.wait()
        self.proc = None
        _live_servers.discard(self)
        return rc

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.stop()
        if self._own_workdir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- clients ---------------------------------------------------------------

    def etcdctl_background(self, args, command_timeout="5s"):
        return Background(self.endpoint, args, etcdctl_path=self.etcdctl_path,
                          command_timeout=command_timeout)

    def etcdctl(self, args, stdin=None, command_timeout="5s"):
        return run_etcdctl(self.endpoint, args, stdin=stdin,
                           etcdctl_path=self.etcdctl_path,
                           command_timeout=command_timeout)


# --------------------------------------------------------------------------
# Normaliser
#
# Applied to every etcdctl stdout/stderr before it is written to or compared
# with a golden file. It rewrites ONLY what legitimately differs between two
# correct servers (or two runs of the same server). Each rule is listed here;
# anything not listed is compared byte for byte.
#
#  R1 addresses:  127.0.0.1:<this run's client port> -> <CLIENT_ADDR>,
#                 127.0.0.1:<this run's peer port>   -> <PEER_ADDR>,
#                 this run's temp dir                -> <WORKDIR>.
#  R2 IDs:        the member ID and cluster ID that etcd would derive for this
#                 run's peer URL and cluster token (etcd_member_id /
#                 etcd_cluster_id), in decimal or hex (%x or %016x), ->
#                 <MEMBER_ID> / <CLUSTER_ID>. Only exact matches: a wrong ID
#                 stays and fails the diff.
#  R3 raft term:  "raft_term":N (json headers) and "RaftTerm" : N (fields)
#                 -> <RAFT_TERM>, for N >= 1 only. Terms depend on election
#                 history, not on the KV semantics under test. (etcd 3.4.23
#                 shows 2 on a fresh single member, 3 after one restart.) A 0
#                 stays: the headers nested in txn responses carry term 0
#                 (omitted from json, "RaftTerm" : 0 in -w fields).
#  R4 endpoint status, the server-internal columns only:
#                 VERSION, DB SIZE, RAFT TERM, RAFT INDEX, RAFT APPLIED INDEX
#                 (table, simple), and json "version", "dbSize",
#                 "dbSizeInUse", "raftIndex", "raftTerm", "raftAppliedIndex",
#                 and fields "Version", "DBSize", "DBSizeInUse", "RaftIndex",
#                 "RaftAppliedIndex" -> <VERSION>, <DB_SIZE>, ...
#                 ("revision", "leader", IS LEADER, IS LEARNER stay.)
#  R5 timings:    endpoint health "took = <d>" / "took":"<d>" / TOOK column
#                 -> <DURATION>.
#  R6 clientv3 retry log lines on stderr: "ts":"..." -> "ts":"<TS>" and the
#                 client UUID in "endpoint://client-<uuid>/" -> <UUID>. The
#                 gRPC code and message in the same line stay: they are the
#                 most valuable thing in it.
#  R7 tables:     a table (etcdctl -w table) whose cells were changed by R1-R5
#                 is re-padded to the widths of the normalised cells; etcdctl
#                 computes padding from the cell text alone, so this hides
#                 nothing a server controls.


class Normaliser:
    def __init__(self, server):
        self.subs = []  # (compiled regex, replacement)
        lit = []
        if server.client_port:
            lit.append(("127.0.0.1:%d" % server.client_port, "<CLIENT_ADDR>"))
            lit.append(("127.0.0.1:%d" % server.peer_port, "<PEER_ADDR>"))
        lit.append((server.workdir, "<WORKDIR>"))
        real = os.path.realpath(server.workdir)
        if real != server.workdir:
            lit.append((real, "<WORKDIR>"))
        for s, r in lit:
            self.subs.append((re.compile(re.escape(s) + r"(?![0-9])"), r))
        if server.client_port:
            for ident, ph in ((server.member_id, "<MEMBER_ID>"),
                              (server.cluster_id, "<CLUSTER_ID>")):
                forms = {str(ident), format(ident, "x"), format(ident, "016x")}
                for f in sorted(forms, key=len, reverse=True):
                    self.subs.append((re.compile(r"(?<![0-9A-Za-z])" + f + r"(?![0-9A-Za-z])"), ph))

    # R3, R4, R5, R6 (pattern, replacement) applied to the whole text.
    FIXED = [
        (re.compile(r'("raft_term":)[1-9][0-9]*'), r"\1<RAFT_TERM>"),
        (re.compile(r'("RaftTerm" : )[1-9][0-9]*'), r"\1<RAFT_TERM>"),
        (re.compile(r'("version":)"[^"]*"'), r'\1"<VERSION>"'),
        (re.compile(r'("dbSize":)\d+'), r"\1<DB_SIZE>"),
        (re.compile(r'("dbSizeInUse":)\d+'), r"\1<DB_SIZE_IN_USE>"),
        (re.compile(r'("raftIndex":)\d+'), r"\1<RAFT_INDEX>"),
        (re.compile(r'("raftTerm":)\d+'), r"\1<RAFT_TERM>"),
        (re.compile(r'("raftAppliedIndex":)\d+'), r"\1<RAFT_APPLIED_INDEX>"),
        (re.compile(r'("Version" : )"[^"]*"'), r'\1"<VERSION>"'),
        (re.compile(r'("DBSize" : )\d+'), r"\1<DB_SIZE>"),
        (re.compile(r'("DBSizeInUse" : )\d+'), r"\1<DB_SIZE_IN_USE>"),
        (re.compile(r'("RaftIndex" : )\d+'), r"\1<RAFT_INDEX>"),
        (re.compile(r'("RaftAppliedIndex" : )\d+'), r"\1<RAFT_APPLIED_INDEX>"),
        (re.compile(r"(took = )[0-9.]+[a-zµμ]+"), r"\1<DURATION>"),
        (re.compile(r'("took":)"[^"]*"'), r'\1"<DURATION>"'),
        (re.compile(r'("Took" : )"[^"]*"'), r'\1"<DURATION>"'),
        (re.compile(r'("ts":)"[^"]*"'), r'\1"<TS>"'),
        (re.compile(r"(endpoint://client-)[0-9a-f-]{36}/"), r"\1<UUID>/"),
    ]

    TABLE_COLS = {
        "VERSION": "<VERSION>",
        "DB SIZE": "<DB_SIZE>",
        "RAFT TERM": "<RAFT_TERM>",
        "RAFT INDEX": "<RAFT_INDEX>",
        "RAFT APPLIED INDEX": "<RAFT_APPLIED_INDEX>",
        "TOOK": "<DURATION>",
    }

    # endpoint status -w simple: 10 comma-separated fields
    # endpoint, ID, version, db size, is leader, is learner, raft term,
    # raft index, raft applied index, errors
    STATUS_SIMPLE = re.compile(
        r"^(<CLIENT_ADDR>|[^ ,]+:\d+), ([^,]+), ([^,]*), ([^,]*), (true|false), "
        r"(true|false), (\d+), (\d+), (\d+), (.*)$")

    def _ids_and_addrs(self, text):
        for rx, rep in self.subs:
            text = rx.sub(rep, text)
        return text

    def __call__(self, text):
        if not text:
            return text
        text = self._ids_and_addrs(text)
        for rx, rep in self.FIXED:
            text = rx.sub(rep, text)
        lines = text.split("\n")
        out = []
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("+-") and line.rstrip().endswith("+"):
                j = i
                while j < len(lines) and (lines[j].startswith("+") or lines[j].startswith("|")):
                    j += 1
                out.extend(self._table(lines[i:j]))
                i = j
                continue
            m = self.STATUS_SIMPLE.match(line)
            if m:
                g = list(m.groups())
                g[2], g[3] = "<VERSION>", "<DB_SIZE>"
                g[6], g[7], g[8] = "<RAFT_TERM>", "<RAFT_INDEX>", "<RAFT_APPLIED_INDEX>"
                line = ", ".join(g)
            out.append(line)
            i += 1
        return "\n".join(out)

    def _table(self, block):
        """R4/R5 on table cells, then R7 (re-pad) if anything changed."""
        rows = []  # None for a border line, else list of cell strings
        for line in block:
            if line.startswith("+"):
                rows.append(None)
            else:
                rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        header = next((r for r in rows if r is not None), None)
        if header is None:
            return block
        changed = False
        repl = {k: self.TABLE_COLS[h] for k, h in enumerate(header) if h in self.TABLE_COLS}
        # also detect cells already changed by R1/R2 (addresses, IDs)
        if any("<" in c for r in rows if r for c in r):
            changed = True
        first_header_seen = False
        for r in rows:
            if r is None:
                continue
            if not first_header_seen:
                first_header_seen = True
                continue
            for k, ph in repl.items():
                if k < len(r) and r[k] != ph:
                    r[k] = ph
                    changed = True
        if not changed:
            return block
        ncols = max(len(r) for r in rows if r is not None)
        widths = [0] * ncols
        for r in rows:
            if r is None:
                continue
            for k, c in enumerate(r):
                widths[k] = max(widths[k], len(c))
        border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        res = []
        for r in rows:
            if r is None:
                res.append(border)
            else:
                cells = r + [""] * (ncols - len(r))
                res.append("|" + "|".join(" %s " % c.ljust(w) for c, w in zip(cells, widths)) + "|")
        return res
