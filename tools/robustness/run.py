#!/usr/bin/env python3
"""Robustness run: a real cluster (etcdpp or etcd), faults on a schedule, a
recorded client history, and the checkers' verdicts.

    python3 tools/robustness/run.py --server etcdpp --bin build/etcdpp \
        --workload build/tools/robustness/rob_workload \
        --check build/tools/robustness/rob_check --duration 600 --seed 42

    --server etcd --bin etcd --members 3     the same against real etcd 3.4

Python (standard library only) orchestrates what is slow and stateful:
processes, TCP proxies, the nemesis schedule. The workload (rob_workload) and
the checker (rob_check) are C++: gRPC clients with real deadlines, and a
search that must be fast. See README.md in this folder.

Topology: every server listens on 127.0.0.1 on free ports. With several
members, each member's advertised peer URL is a small TCP proxy in this
process that forwards to the member's real peer port.
The proxy tells which member dialled a connection without reading its bytes:
the accepted client's (ip, port) on loopback is the local address of a socket
in the dialling process; the kernel gives that socket's inode (sock_diag, or
/proc/net/tcp{,6}), and the member process holding `socket:[inode]` in
/proc/<pid>/fd is the sender. That works for any server binary. What a
connection carries: for etcd's HTTP/1.1 rafthttp, by its requests
  GET /raft/stream/...  dialled by A to B: carries B -> A raft messages
  POST /raft[/snapshot] dialled by A to B: carries A -> B raft messages
(etcd's X-Server-From header names the sender too: kept as a fallback and a
cross-check); for any other protocol (etcdpp's gRPC), a connection dialled by
A to B carries A -> B raft messages.
A cut link (A -> B) refuses and closes those connections; a partition cuts
both directions. Clients talk to members directly (a minority member still
answers clients: exactly where stale reads would show).

Nemeses: kill (SIGKILL a random member or the leader, restart), stop
(SIGSTOP/SIGCONT the leader), kill-all (whole cluster at once), partition
(isolate one member), link-loss (one-way), member-readd (remove a member,
wipe it, add it back), wal-fault (etcdpp: restart with ETCDPP_WAL_FAILPOINTS,
expect a clear crash, then a clean recovery). Every fault is printed with its
time; every verdict is printed; the last line is `N passed, M failed`.
"""

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
from harness import etcd_member_id, free_port  # noqa: E402

TOKEN = "rob-cluster"
T0 = time.monotonic()


def log(msg):
    print("[%7.2fs] %s" % (time.monotonic() - T0, msg), flush=True)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------- socket owners
#
# Which process dialled a loopback TCP connection. The proxy's accepted socket
# knows the client's address (ip, port); on loopback that is the local address
# of the client's socket, in the same network namespace. Its inode comes from
# the kernel: first a sock_diag netlink exact lookup (O(1), ~0.03 ms), else
# /proc/net/tcp and /proc/net/tcp6 (a walk of every socket of the host: ~15 ms
# on a box with thousands of TIME_WAIT sockets). The owner is the process whose
# /proc/<pid>/fd has a link to socket:[inode] (threads share the fd table).

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
TCP_STATES_ALL = 0xFFFFFFFF


def _norm_addr(addr):
    """(family, ip, port) of a socket address; a v4-mapped IPv6 address
    (::ffff:a.b.c.d, a dual-stack socket) becomes the IPv4 one."""
    ip, port = addr[0], addr[1]
    if ":" in ip:
        low = ip.lower()
        if low.startswith("::ffff:") and "." in low:
            return socket.AF_INET, low[7:], port
        return socket.AF_INET6, ip.split("%", 1)[0], port
    return socket.AF_INET, ip, port


def _inode_netlink(fam, lip, lport, rip, rport):
    """Inode of the TCP socket whose local address is (lip, lport) and peer
    (rip, rport): > 0 owned, 0 when it exists without an owner (closed,
    orphaned, TIME_WAIT), None when there is none. An AF_INET query also
    finds dual-stack AF_INET6 sockets talking v4-mapped. Raises OSError when
    sock_diag is unavailable."""
    def raw(ip):
        b = socket.inet_pton(fam, ip)
        return b + b"\0" * (16 - len(b))
    sockid = (struct.pack("!HH", lport, rport) + raw(lip) + raw(rip) +
              struct.pack("=III", 0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
    req = struct.pack("=BBBxI", fam, socket.IPPROTO_TCP, 0, TCP_STATES_ALL) + sockid
    msg = struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, 1, 1, 0) + req  # NLM_F_REQUEST
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    try:
        s.settimeout(2)
        s.send(msg)
        d = s.recv(65536)
    finally:
        s.close()
    if len(d) < 20:
        raise OSError("sock_diag: short answer")
    typ = struct.unpack_from("=H", d, 4)[0]
    if typ == NLMSG_ERROR:
        err = -struct.unpack_from("=i", d, 16)[0]
        if err == 2:  # ENOENT: no such socket
            return None
        raise OSError(err, "sock_diag: %s" % os.strerror(err))
    if typ != SOCK_DIAG_BY_FAMILY or len(d) < 16 + 72:
        raise OSError("sock_diag: unexpected answer type %d" % typ)
    # inet_diag_msg: family, state, timer, retrans (4 bytes), sockid (48),
    # expires, rqueue, wqueue, uid (16), inode.
    return struct.unpack_from("=I", d, 16 + 4 + 48 + 16)[0]


def _proc_hex(fam, ip, port):
    """An address as /proc/net/tcp{,6} prints it: the address as native
    32-bit words in %08X, the port in %04X."""
    b = socket.inet_pton(fam, ip)
    words = struct.unpack("=%dI" % (len(b) // 4), b)
    return "".join("%08X" % w for w in words) + ":%04X" % port


def _inode_proc(fam, lip, lport, rip, rport):
    """The same answer as _inode_netlink, from /proc/net/tcp and tcp6 (an
    IPv4 address may also sit in tcp6 as v4-mapped, a dual-stack socket)."""
    if fam == socket.AF_INET:
        wanted = [("/proc/net/tcp", _proc_hex(fam, lip, lport), _proc_hex(fam, rip, rport)),
                  ("/proc/net/tcp6", _proc_hex(socket.AF_INET6, "::ffff:" + lip, lport),
                   _proc_hex(socket.AF_INET6, "::ffff:" + rip, rport))]
    else:
        wanted = [("/proc/net/tcp6", _proc_hex(fam, lip, lport), _proc_hex(fam, rip, rport))]
    found = None
    for path, local, remote in wanted:
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            fields = line.split()
            if len(fields) >= 10 and fields[1] == local and fields[2] == remote:
                inode = int(fields[9])
                if inode:
                    return inode
                found = 0
    return found


_netlink_ok = [True]


def socket_inode(local, remote, use_netlink=True):
    """Inode of the loopback TCP socket with local address `local` connected
    to `remote` (socket addresses as Python gives them, IPv4 or IPv6): > 0
    when a process holds it, 0 when it exists but nobody does, None when
    there is no such socket."""
    fam, lip, lport = _norm_addr(local)
    rfam, rip, rport = _norm_addr(remote)
    if rfam != fam:
        return None
    if use_netlink and _netlink_ok[0]:
        try:
            return _inode_netlink(fam, lip, lport, rip, rport)
        except OSError as e:
            _netlink_ok[0] = False
            log("proxy: sock_diag netlink unavailable (%s): reading /proc/net/tcp instead" % e)
    return _inode_proc(fam, lip, lport, rip, rport)


def inode_owner(inode, pids):
    """The pid among `pids` whose fd table holds socket:[inode], or None."""
    target = "socket:[%d]" % inode
    for pid in pids:
        d = "/proc/%d/fd" % pid
        try:
            fds = os.listdir(d)
        except OSError:
            continue  # exited (or not ours to read: then it stays unknown, and counted)
        for fd in fds:
            try:
                if os.readlink(os.path.join(d, fd)) == target:
                    return pid
            except OSError:
                continue
    return None


# ---------------------------------------------------------------- proxies

class Network:
    """The set of cut links (src name, dst name): raft messages from src to
    dst are dropped. Shared by every proxy."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cuts = set()
        self.id_to_name = {}
        # {pid: member name} of the member processes now running (the
        # cluster sets it); a connection's sender is the member whose process
        # holds the connecting socket.
        self.member_pids = dict
        self.proxies = []
        self.unclassified = 0  # peer connections whose sender the proxy could not tell
        self.refused = 0  # connections refused because their link was cut
        self.severed = 0  # open connections closed when their link was cut
        self.by_owner = 0  # connections whose sender the socket's owning process told
        self.by_header = 0  # ... that only X-Server-From told (no member process owned the socket)
        self.vanished = 0  # connections closed by their dialler before it could be told: closed, not forwarded
        self.disagreed = 0  # X-Server-From naming another member than the socket's owner
        self.lookups = 0
        self.lookup_ms = 0.0  # total time spent telling senders

    def identify(self, client, server):
        """The member that dialled the accepted connection whose client end
        is `client` (its getpeername) and server end `server` (getsockname):
        (name, "owner"); (None, "gone") when the client's socket has already
        been closed (no owner: nothing to forward); (None, "foreign") when a
        process that is no member holds it (or the lookup failed)."""
        t = time.monotonic()
        why = "foreign"
        name = None
        try:
            # Not found at once: the dialler may be closing it, or dying (a
            # member SIGKILLed right after it dialled: the kernel tears its
            # sockets down a little after the process is gone). Look again
            # for up to ~0.4 s; a socket that disappeared meanwhile can carry
            # nothing more ("gone"); one still there with no member owning it
            # is "foreign" (and counted: partitions would miss it).
            for delay in (0.01, 0.02, 0.05, 0.1, 0.2, None):
                inode = socket_inode(client, server)
                if not inode:
                    why = "gone"
                    break
                pids = self.member_pids()
                pid = inode_owner(inode, list(pids))
                if pid is not None:
                    name, why = pids[pid], "owner"
                    break
                if delay is not None:
                    time.sleep(delay)
        except (OSError, ValueError) as e:
            log("proxy: cannot look up the owner of %s: %s" % (client, e))
        with self.lock:
            self.lookups += 1
            self.lookup_ms += (time.monotonic() - t) * 1000
            if why == "owner":
                self.by_owner += 1
            elif why == "gone":
                self.vanished += 1
        return name, why

    def set_cuts(self, cuts):
        with self.lock:
            self.cuts = set(cuts)
        for p in self.proxies:
            p.enforce()

    def blocked(self, link):
        if link is None:
            return False
        kind, a, b = link
        with self.lock:
            if kind == "meta":
                return (a, b) in self.cuts and (b, a) in self.cuts
            return (a, b) in self.cuts


class PeerProxy(threading.Thread):
    """Listens on host:listen_port (127.0.0.1, or an IPv6 address such as
    ::1), forwards to upstream_host:target_port (member `name`'s peer port)."""

    def __init__(self, net, name, listen_port, target_port, host="127.0.0.1", upstream_host="127.0.0.1"):
        super().__init__(daemon=True)
        self.net, self.name, self.target_port = net, name, target_port
        self.upstream_host = upstream_host
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, listen_port))
        self.sock.listen(64)
        self.lock = threading.Lock()
        self.conns = {}  # id -> (link, client sock, upstream sock)
        self.next_id = 0
        self.closed = False

    def run(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    REQ_RE = re.compile(r"(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n")
    FROM_RE = re.compile(r"\r\n[Xx]-[Ss]erver-[Ff]rom: *([0-9a-fA-F]+)\r\n")
    HTTP1_START = re.compile(rb"(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) ")
    first_bytes_timeout = 5.0  # seconds to wait for a client's first bytes

    def classify(self, state):
        """The link a connection's current request uses, None if unknown."""
        src = state["src"]
        if src is None:
            return None
        if not state.get("http"):
            return ("raft", src, self.name)  # not HTTP/1.x: dialled by src, carries src -> us
        path = state["path"]
        if path.startswith("/raft/stream"):
            return ("raft", self.name, src)
        if path.startswith("/raft") and not path.startswith("/raft/probing"):
            return ("raft", src, self.name)
        return ("meta", src, self.name)

    def scan(self, state, data):
        """Follows the requests on a client->member byte stream: Go reuses
        idle connections, so a connection opened for GET /version may later
        carry POST /raft. The sender never changes; the path may. Whether the
        stream is HTTP/1.x is decided by its first bytes; other protocols
        are not parsed (their bytes may contain anything)."""
        if state.get("http") is None:
            state["http"] = bool(self.HTTP1_START.match(data))
        if state["http"]:
            text = state["carry"] + data.decode("latin-1")
            for m in self.REQ_RE.finditer(text):
                state["path"] = m.group(2)
            for m in self.FROM_RE.finditer(text):
                name = self.net.id_to_name.get(m.group(1).lower())
                if not name:
                    continue
                if state["src"] is None:
                    state["src"] = name
                    with self.net.lock:
                        self.net.by_header += 1
                elif name != state["src"] and not state.get("disagreed"):
                    state["disagreed"] = True
                    with self.net.lock:
                        self.net.disagreed += 1
                        if self.net.disagreed <= 3:
                            log("proxy %s: X-Server-From names %s, the socket belongs to %s" %
                                (self.name, name, state["src"]))
            state["carry"] = text[-512:]
        return self.classify(state)

    def unattributed(self, state):
        """A raft-carrying connection whose sender is unknown: partitions
        cannot be enforced on it (etcd's /version, /members, /raft/probing
        carry no raft messages, and are fine)."""
        if state["src"] is not None or state.get("counted"):
            return False
        path = state["path"]
        return not state.get("http") or (path.startswith("/raft") and not path.startswith("/raft/probing"))

    def count_unattributed(self, state, data):
        state["counted"] = True
        with self.net.lock:
            self.net.unclassified += 1
            if self.net.unclassified <= 3:
                log("proxy %s: cannot tell the sender of %r" % (self.name, data[:200]))

    def serve(self, c):
        # Who dialled: told from the socket's owner right away, before the
        # dialler has a chance to hang up.
        try:
            client, server = c.getpeername(), c.getsockname()
        except OSError:
            c.close()
            return
        src, why = self.net.identify(client, server)
        if why == "gone":
            c.close()  # the dialler closed it already (or was killed): nothing to forward
            return
        state = {"carry": "", "path": "", "src": src, "http": None}
        c.settimeout(self.first_bytes_timeout)
        header = b""
        silent = False
        try:
            while len(header) < 65536:
                chunk = c.recv(65536)
                if not chunk:
                    break
                header += chunk
                if not self.HTTP1_START.match(header) or b"\r\n\r\n" in header:
                    break  # not HTTP/1.x: the first bytes are enough
        except socket.timeout:
            if src is None or header:
                c.close()
                return
            # A known sender that waits for the server to speak first: some
            # protocol that is no HTTP/1.x; forward it.
            silent = True
        except OSError:
            c.close()
            return
        if not header and not silent:
            c.close()  # closed before saying anything (a sender killed mid-dial)
            return
        if header:
            link = self.scan(state, header)
        else:
            state["http"] = False
            link = self.classify(state)
        if self.unattributed(state):
            self.count_unattributed(state, header)
        if self.net.blocked(link):
            with self.net.lock:
                self.net.refused += 1
            c.close()
            return
        try:
            u = socket.create_connection((self.upstream_host, self.target_port), timeout=2)
        except OSError:
            c.close()
            return
        c.settimeout(None)
        u.settimeout(None)
        with self.lock:
            cid = self.next_id
            self.next_id += 1
            self.conns[cid] = [link, c, u]
        try:
            if header:
                u.sendall(header)
            socks = [c, u]
            while True:
                r, _, _ = select.select(socks, [], [], 1.0)
                if self.closed:
                    break
                done = False
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        done = True
                        break
                    if s is c:
                        new_link = self.scan(state, data)
                        if self.unattributed(state):
                            self.count_unattributed(state, data)
                        if new_link != link:
                            link = new_link
                            with self.lock:
                                self.conns[cid][0] = link
                            if self.net.blocked(link):
                                with self.net.lock:
                                    self.net.severed += 1
                                done = True
                                break
                    (u if s is c else c).sendall(data)
                if done:
                    break
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns.pop(cid, None)
            for s in (c, u):
                try:
                    s.close()
                except OSError:
                    pass

    def enforce(self):
        with self.lock:
            victims = [(c, u) for (link, c, u) in self.conns.values() if self.net.blocked(link)]
        with self.net.lock:
            self.net.severed += len(victims)
        for c, u in victims:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.enforce_all_closed()

    def enforce_all_closed(self):
        with self.lock:
            conns = list(self.conns.values())
        for _, c, u in conns:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# ---------------------------------------------------------------- cluster

class Member:
    def __init__(self, name, workdir):
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proxy_port = None
        self.data_dir = os.path.join(workdir, name + ".data")
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.stopped = False
        self.member_id = None
        # Removed from the cluster (and wiped) by member-readd, not yet added
        # back: it must not be restarted, least of all with
        # --initial-cluster-state new (a wiped member would bootstrap a rogue
        # cluster with the same cluster ID).
        self.removed = False
        # The harness is about to see it exit (a WAL fault injected); any
        # other exit it did not cause is a crash.
        self.exit_expected = False
        # Once re-added: how it must (re)start while its data dir is empty
        # (--initial-cluster-state existing and the membership at its add).
        self.start_state = None
        self.start_cluster = None

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def advertised_peer_url(self):
        return "http://127.0.0.1:%d" % (self.proxy_port or self.peer_port)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, bin_path, n, workdir, use_proxies):
        self.bin = bin_path
        self.workdir = workdir
        self.members = [Member("m%d" % (i + 1), workdir) for i in range(n)]
        self.net = Network()
        if use_proxies:
            for m in self.members:
                m.proxy_port = free_port()
                p = PeerProxy(self.net, m.name, m.proxy_port, m.peer_port)
                p.start()
                self.net.proxies.append(p)
        for m in self.members:
            m.member_id = etcd_member_id([m.advertised_peer_url], TOKEN)
            self.net.id_to_name["%x" % m.member_id] = m.name
        self.net.member_pids = self.member_pids
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.advertised_peer_url) for m in self.members)
        self.state = "new"
        self.crashes = []  # members that exited without the harness causing it

    def argv(self, m):
        return [self.bin, "--name", m.name, "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", "http://127.0.0.1:%d" % m.peer_port,
                "--initial-advertise-peer-urls", m.advertised_peer_url,
                "--initial-cluster", m.start_cluster or self.initial_cluster,
                "--initial-cluster-state", m.start_state or self.state, "--initial-cluster-token", TOKEN]

    def start(self, m, env_extra=None):
        if m.removed:
            return
        with open(m.log_path, "ab") as logf:
            logf.write(("---- start %s at %.2fs\n" % (m.name, time.monotonic() - T0)).encode())
            logf.flush()
            m.proc = subprocess.Popen(self.argv(m), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                      env=clean_env(env_extra))
        m.stopped = False
        m.exit_expected = False

    def note_exit(self, m):
        """Records a crash if m's process ended on its own (not killed by the
        harness, no WAL fault injected, not removed from the cluster).
        True if it did."""
        if m.proc is None or m.proc.poll() is None or m.exit_expected or m.removed:
            return False
        m.exit_expected = True  # counted once
        what = "%s exited with status %s on its own at %.2fs (the harness neither killed it nor injected a fault): %s" % (
            m.name, m.proc.returncode, time.monotonic() - T0, last_log_lines(m, 6))
        self.crashes.append(what)
        log("CRASH: " + what)
        return True

    def restart_crashed(self):
        """Notes every member that crashed since the last look and starts it again."""
        for m in self.members:
            if self.note_exit(m):
                log("restart %s after its crash" % m.name)
                self.start(m)

    def member_pids(self):
        """{pid: name} of the member processes (called from proxy threads;
        a pid read here may be of a process that just exited: harmless, its
        /proc entry is gone or holds no socket)."""
        out = {}
        for m in self.members:
            p = m.proc
            if p is not None:
                out[p.pid] = m.name
        return out

    def kill9(self, m):
        self.note_exit(m)
        if m.proc is not None and m.proc.poll() is None:
            if m.stopped:
                os.kill(m.proc.pid, signal.SIGCONT)
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()
        m.stopped = False
        m.exit_expected = True  # killed here: not a crash

    def sigstop(self, m):
        if m.alive():
            m.proc.send_signal(signal.SIGSTOP)
            m.stopped = True

    def sigcont(self, m):
        if m.alive() and m.stopped:
            m.proc.send_signal(signal.SIGCONT)
        m.stopped = False

    def healthy(self, m, timeout=2):
        if not m.alive():
            return False
        try:
            r = subprocess.run(["etcdctl", "--endpoints", m.endpoint, "--command-timeout=%ds" % timeout,
                                "endpoint", "health"], env=dict(clean_env(), ETCDCTL_API="3"),
                               capture_output=True, text=True, timeout=timeout + 5)
            return r.returncode == 0
        except (subprocess.TimeoutExpired, OSError):
            return False

    def wait_healthy(self, members=None, timeout=60):
        members = members or self.members
        give_up = time.monotonic() + timeout
        pending = [m for m in members if not m.removed]
        while pending and time.monotonic() < give_up:
            pending = [m for m in pending if not self.healthy(m)]
            if any(not m.alive() for m in pending):
                return False
            if pending:
                time.sleep(0.2)
        return not pending

    def status(self, m):
        try:
            r = subprocess.run(["etcdctl", "--endpoints", m.endpoint, "--command-timeout=2s", "endpoint",
                                "status", "-w", "json"], env=dict(clean_env(), ETCDCTL_API="3"),
                               capture_output=True, text=True, timeout=8)
            if r.returncode != 0:
                return None
            return json.loads(r.stdout)[0]["Status"]
        except Exception:
            return None

    def leader(self):
        for m in self.members:
            if not m.alive() or m.stopped:
                continue
            st = self.status(m)
            if st and st.get("leader"):
                lid = st["leader"]
                for x in self.members:
                    if x.member_id == lid:
                        return x
        return None

    def etcdctl(self, args, members=None, timeout=10):
        eps = ",".join(m.endpoint for m in (members or self.members) if m.alive() and not m.stopped)
        return subprocess.run(["etcdctl", "--endpoints", eps, "--command-timeout=5s"] + args,
                              env=dict(clean_env(), ETCDCTL_API="3"), capture_output=True, text=True,
                              timeout=timeout)

    def close(self):
        for m in self.members:
            try:
                self.kill9(m)
            except Exception:
                pass
        for p in self.net.proxies:
            p.close()


def last_log_lines(m, n=3):
    try:
        with open(m.log_path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(l.strip()[:200] for l in lines[-n:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- nemesis

class Nemesis:
    def __init__(self, cluster, rng, kinds, verdicts):
        self.c = cluster
        self.rng = rng
        self.kinds = kinds
        self.verdicts = verdicts
        self.counts = {}
        self.wal_faults = []  # (ok, detail)
        self.readds = 0
        self.add_failures = []  # member adds that failed (the member stayed removed)

    def pick(self, leader_bias=True):
        live = [m for m in self.c.members if m.alive() and not m.stopped]
        if leader_bias and self.rng.random() < 0.5:
            ld = self.c.leader()
            if ld is not None:
                return ld, "leader"
        return self.rng.choice(live or self.c.members), "random"

    def hold(self, lo, hi):
        time.sleep(self.rng.uniform(lo, hi))

    def run_one(self, kind):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        c = self.c
        if kind == "kill":
            m, why = self.pick()
            log("nemesis: SIGKILL %s (%s)" % (m.name, why))
            c.kill9(m)
            self.hold(0.3, 2.0)
            log("nemesis: restart %s" % m.name)
            c.start(m)
        elif kind == "stop":
            ld = c.leader() or c.members[0]
            log("nemesis: SIGSTOP %s (leader)" % ld.name)
            c.sigstop(ld)
            self.hold(1.0, 3.0)
            log("nemesis: SIGCONT %s" % ld.name)
            c.sigcont(ld)
        elif kind == "kill-all":
            log("nemesis: SIGKILL every member at once")
            for m in c.members:
                c.kill9(m)
            self.hold(0.3, 1.5)
            log("nemesis: restart every member")
            for m in c.members:
                c.start(m)
        elif kind == "partition":
            m, why = self.pick()
            others = [x.name for x in c.members if x is not m and not x.removed]
            cuts = [(m.name, o) for o in others] + [(o, m.name) for o in others]
            log("nemesis: partition %s (%s) from %s" % (m.name, why, ",".join(others)))
            c.net.set_cuts(cuts)
            self.hold(2.0, 4.0)
            log("nemesis: heal partition")
            c.net.set_cuts([])
        elif kind == "link-loss":
            ld = c.leader()
            a = ld or self.rng.choice([x for x in c.members if not x.removed])
            b = self.rng.choice([x for x in c.members if x is not a and not x.removed])
            if self.rng.random() < 0.5:
                a, b = b, a
            log("nemesis: one-way link loss %s -> %s%s" % (a.name, b.name, " (leader sends)" if a is ld else ""))
            c.net.set_cuts([(a.name, b.name)])
            self.hold(2.0, 4.0)
            log("nemesis: heal link %s -> %s" % (a.name, b.name))
            c.net.set_cuts([])
        elif kind == "member-readd":
            self.member_readd()
        elif kind == "wal-fault":
            self.wal_fault()

    # etcd (and etcdpp) refuse a reconfiguration while the members have not
    # all been connected for a while (strict reconfig check): a safety rule,
    # not a failure. Retry those answers; anything else is a failure.
    RETRYABLE = ("unhealthy cluster", "not enough started members")

    def _etcdctl_retry(self, argv, members, secs):
        give_up = time.monotonic() + secs
        while True:
            r = self.c.etcdctl(argv, members=members)
            if r.returncode == 0:
                return r, ""
            err = ((r.stderr or r.stdout).strip().splitlines()[-1:] or [""])[0]
            if any(x in err for x in self.RETRYABLE) and time.monotonic() < give_up:
                time.sleep(1.0)
                continue
            return None, err

    def member_readd(self):
        c = self.c
        pending = [m for m in c.members if m.removed]
        if pending:
            # A member whose add-back failed earlier: add it back first.
            self.add_back(pending[0])
            return
        ld = c.leader()
        cands = [m for m in c.members if m is not ld and m.alive()]
        if not cands:
            log("nemesis: member-readd: no follower to remove, skipped this round")
            return
        m = self.rng.choice(cands)
        others = [x for x in c.members if x is not m]
        log("nemesis: member remove %s (%x)" % (m.name, m.member_id))
        done, err = self._remove(m, others)
        if not done:
            if any(x in err for x in self.RETRYABLE):
                log("nemesis: member remove refused for 15 s (%s); not this round" % err)
                return
            self.verdicts.append(("FAIL", "member-readd", "member remove failed: " + err))
            log("nemesis: member remove %s failed: %s" % (m.name, err))
            return
        time.sleep(1.0)
        m.removed = True
        c.kill9(m)
        shutil.rmtree(m.data_dir, ignore_errors=True)
        self.add_back(m)

    # A remove that timed out (no leader within etcdctl's 5 s, as after a
    # kill or a partition; etcd answers the same) may still take effect: its
    # proposal can commit later. So ask again, and take "member not found"
    # on a later attempt, or the member missing from `member list`, as done.
    # A cluster that cannot remove it within 30 s fails the verdict.
    TIMED_OUT = ("context deadline exceeded", "request timed out", "no leader", "leader changed")

    def _remove(self, m, others, secs=30):
        give_up = time.monotonic() + secs
        mid = "%x" % m.member_id
        attempts = 0
        while True:
            r, err = self._etcdctl_retry(["member", "remove", mid], others, 15)
            attempts += 1
            if r is not None:
                return True, ""
            if attempts > 1 and "member not found" in err:
                return True, ""
            if not any(x in err for x in self.TIMED_OUT) or time.monotonic() >= give_up:
                return False, err
            log("nemesis: member remove %s: %s; checking whether it took effect" % (m.name, err))
            time.sleep(1.0)
            lst = self.c.etcdctl(["member", "list"], members=others)
            if lst.returncode == 0 and mid not in lst.stdout:
                return True, ""

    def add_back(self, m, secs=30, final=False):
        """Adds a removed (wiped) member back and starts it with
        --initial-cluster-state existing. False if it could not be added."""
        c = self.c
        others = [x for x in c.members if x is not m and not x.removed]
        r, err = self._etcdctl_retry(["member", "add", m.name, "--peer-urls=" + m.advertised_peer_url],
                                     others, secs)
        if r is None:
            log("nemesis: member add %s failed: %s (stays removed%s)" %
                (m.name, err, "" if final else "; the next member-readd round retries"))
            self.add_failures.append("member add %s failed: %s" % (m.name, err))
            return False
        new_id = None
        initial_cluster = None
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("ETCD_INITIAL_CLUSTER="):
                initial_cluster = line.split("=", 1)[1].strip('"')
        for tok in r.stdout.split():
            if len(tok) >= 8 and all(ch in "0123456789abcdef" for ch in tok):
                new_id = tok
                break
        if new_id:
            m.member_id = int(new_id, 16)
            c.net.id_to_name[new_id] = m.name
        m.removed = False
        m.start_state = "existing"
        # The membership as it is now (etcd checks --initial-cluster against
        # it: "member count is unequal" otherwise), as `member add` prints it.
        if initial_cluster and all(part.split("=", 1)[0] for part in initial_cluster.split(",")):
            m.start_cluster = initial_cluster
        # A joining member asks a peer for the member list: wait until the
        # live members list the new one (a member that has not applied the
        # add yet answers without it, and the join fails, in etcd as well).
        give_up = time.monotonic() + 10
        while new_id and time.monotonic() < give_up:
            lagging = []
            for x in c.members:
                if x is m or x.removed or not x.alive() or x.stopped:
                    continue
                rr = c.etcdctl(["member", "list"], members=[x])
                if rr.returncode != 0 or new_id not in rr.stdout:
                    lagging.append(x.name)
            if not lagging:
                break
            time.sleep(0.3)
        log("nemesis: member add %s (%s), start with --initial-cluster-state existing" % (m.name, new_id))
        c.start(m)
        ok = c.wait_healthy([m], timeout=30)
        log("nemesis: re-added %s %s" % (m.name, "healthy" if ok else "NOT healthy after 30s"))
        self.readds += 1
        if not ok:
            self.verdicts.append(("FAIL", "member-readd", "%s not healthy 30s after re-adding: %s" % (m.name, last_log_lines(m))))
        return True

    def wal_fault(self):
        c = self.c
        m = self.rng.choice([x for x in c.members if not x.removed])
        n = self.rng.randint(5, 60)
        fp = "fail_sync_after=%d" % n
        log("nemesis: restart %s with ETCDPP_WAL_FAILPOINTS=%s" % (m.name, fp))
        c.kill9(m)
        c.start(m, {"ETCDPP_WAL_FAILPOINTS": fp})
        m.exit_expected = True
        give_up = time.monotonic() + 10
        while m.alive() and time.monotonic() < give_up:
            time.sleep(0.1)
        if m.alive():
            # Still up: either the failpoints are not wired in (writes work:
            # skip), or the server swallowed a failed sync and can no longer
            # write without saying so (fail: it must crash clearly).
            r = c.etcdctl(["put", "rob/wal-probe", "x"], members=[m])
            if r.returncode == 0:
                self.wal_faults.append((None, "server kept running and writing 10 s past %s" % fp))
                log("nemesis: %s still running and writing: the server does not act on ETCDPP_WAL_FAILPOINTS" % m.name)
            else:
                self.wal_faults.append((False, "%s: server neither crashed nor can write: %s" %
                                        (fp, (r.stderr or r.stdout).strip()[-200:])))
                log("nemesis: %s alive but cannot write after the WAL fault" % m.name)
            c.kill9(m)
        else:
            rc = m.proc.returncode
            self.wal_faults.append((rc != 0, "exit status %s; log: %s" % (rc, last_log_lines(m, 2))))
            log("nemesis: %s crashed on the WAL fault (exit status %s)" % (m.name, rc))
        log("nemesis: restart %s without failpoints" % m.name)
        c.start(m)

    def heal_all(self):
        c = self.c
        c.net.set_cuts([])
        for m in c.members:
            if m.stopped:
                c.sigcont(m)
            if not m.alive() and not m.removed:
                log("heal: restart %s" % m.name)
                c.start(m)
        for m in c.members:
            if m.removed:
                log("heal: %s is still removed from the cluster: add it back" % m.name)
                if c.wait_healthy([x for x in c.members if x is not m], timeout=30):
                    self.add_back(m, secs=60, final=True)


# ---------------------------------------------------------------- probes

def probe_features(workload, endpoint):
    r = subprocess.run([workload, "--probe", "--endpoints", endpoint], capture_output=True, text=True, timeout=60)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception:
        log("probe failed: %s %s" % (r.stdout, r.stderr))
        return {"watch": False, "lease": False}


def probe_multi_member(bin_path, workdir):
    """Starts a throwaway 3-member cluster; (ok, reason)."""
    d = os.path.join(workdir, "probe3")
    os.makedirs(d, exist_ok=True)
    c = Cluster(bin_path, 3, d, use_proxies=False)
    try:
        for m in c.members:
            c.start(m)
        ok = c.wait_healthy(timeout=20)
        if ok:
            return True, ""
        dead = [m for m in c.members if not m.alive()]
        if dead:
            return False, "%s exited with status %s: %s" % (dead[0].name, dead[0].proc.returncode,
                                                            last_log_lines(dead[0], 1))
        return False, "3 members not healthy within 20 s"
    finally:
        c.close()
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=["etcdpp", "etcd"], default="etcdpp")
    ap.add_argument("--bin", help="server binary (default: build/etcdpp, or `etcd` for --server etcd)")
    ap.add_argument("--workload", default=None)
    ap.add_argument("--check", default=None)
    ap.add_argument("--members", default="auto", help="1, 3, or auto (3 when the server can, else 1)")
    ap.add_argument("--duration", type=int, default=60, help="seconds of workload and faults")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--keys", type=int, default=4)
    ap.add_argument("--think-ms", type=int, default=10, help="mean pause between one client's ops")
    ap.add_argument("--nemesis", default="all",
                    help="comma list of kill,stop,kill-all,partition,link-loss,member-readd,wal-fault; "
                         "'all' or 'none'")
    ap.add_argument("--plant", default="", help="stale-read | lost-write | drop-watch-event (test only)")
    ap.add_argument("--expect-fail", default="", help="exit 0 only if this checker FAILS (planted anomaly)")
    ap.add_argument("--fallback-etcd", action="store_true",
                    help="when the server lacks what --plant needs, use real etcd (skip 77 if absent)")
    ap.add_argument("--lease", choices=["auto", "off"], default="auto",
                    help="off: no lease clients (real etcd 3.4.23 fails the lease checker under leader "
                         "pauses and partitions: etcd-io/etcd#15247, see RESULTS.md)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (history, logs) even on success")
    args = ap.parse_args()

    repo = os.path.abspath(os.path.join(HERE, "..", ".."))
    seed = args.seed if args.seed is not None else int(time.time())
    args.workload = args.workload or os.path.join(repo, "build", "tools", "robustness", "rob_workload")
    args.check = args.check or os.path.join(repo, "build", "tools", "robustness", "rob_check")
    if not args.bin:
        args.bin = shutil.which("etcd") if args.server == "etcd" else os.path.join(repo, "build", "etcdpp")
    for p in (args.bin, args.workload, args.check):
        if not p or not os.path.exists(p):
            print("skipped: missing binary %s" % p)
            return 77
    if not shutil.which("etcdctl"):
        print("skipped: etcdctl not on PATH")
        return 77

    workdir = args.workdir or tempfile.mkdtemp(prefix="rob_%s_" % args.server)
    os.makedirs(workdir, exist_ok=True)
    log("robustness run: server %s (%s), seed %d, duration %ds, work dir %s" %
        (args.server, args.bin, seed, args.duration, workdir))
    rng = random.Random(seed)
    verdicts = []  # (PASS|FAIL|SKIP, name, detail)
    if args.server == "etcdpp":
        # Run a private copy: a rebuild of the binary mid-run must not break restarts.
        copy = os.path.join(workdir, "etcdpp")
        shutil.copy2(args.bin, copy)
        args.bin = copy

    # Features: multi-member first (needs its own throwaway cluster).
    members = args.members
    if members == "auto":
        if args.server == "etcd":
            members = "3"
        else:
            ok, why = probe_multi_member(args.bin, workdir)
            members = "3" if ok else "1"
            if not ok:
                verdicts.append(("SKIP", "multi-member", "skipped: server lacks multi-member clusters (%s)" % why))
    n = int(members)

    cluster = Cluster(args.bin, n, workdir, use_proxies=n > 1)
    wl = None
    try:
        for m in cluster.members:
            cluster.start(m)
        if not cluster.wait_healthy(timeout=60):
            for m in cluster.members:
                log("%s (exit status %s): %s" % (m.name, m.proc.poll(), last_log_lines(m)))
            verdicts.append(("FAIL", "cluster-start", "cluster of %d not healthy within 60 s" % n))
            return finish(verdicts, None, args, workdir, cluster)
        log("cluster of %d healthy: %s" % (n, ",".join(m.endpoint for m in cluster.members)))
        feats = probe_features(args.workload, cluster.members[0].endpoint)
        if args.lease == "off" and feats.get("lease"):
            feats["lease"] = False
            verdicts.append(("SKIP", "lease-workload", "skipped: --lease off"))
        log("features: watch %s, lease %s (a missing one is reported by its checker as skipped)" %
            ("yes" if feats.get("watch") else "NO", "yes" if feats.get("lease") else "NO"))
        needs = {"drop-watch-event": "watch"}.get(args.plant)
        if needs and not feats.get(needs):
            if args.fallback_etcd and args.server == "etcdpp" and shutil.which("etcd"):
                log("the server lacks %s, which --plant %s needs: running against real etcd instead" %
                    (needs, args.plant))
                cluster.close()
                if not args.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
                argv = [sys.executable] + sys.argv + ["--server", "etcd", "--bin", shutil.which("etcd"),
                                                      "--members", "1"]
                return subprocess.call(argv)
            print("skipped: server lacks %s, which --plant %s needs" % (needs, args.plant))
            return 77

        all_kinds = ["kill", "stop", "kill-all", "partition", "link-loss", "member-readd", "wal-fault"]
        if args.nemesis == "none":
            kinds = []
        elif args.nemesis == "all":
            kinds = ["kill", "stop", "kill-all"] + (["partition", "link-loss", "member-readd"] if n > 1 else [])
            if args.server == "etcdpp":
                kinds.append("wal-fault")
        else:
            kinds = [k for k in args.nemesis.split(",") if k]
            for k in kinds:
                if k not in all_kinds:
                    print("unknown nemesis %s" % k)
                    return 2
        if n == 1:
            for k in ("partition", "link-loss", "member-readd"):
                if k in kinds or args.nemesis == "all":
                    verdicts.append(("SKIP", "nemesis-" + k, "skipped: needs a multi-member cluster"))
            kinds = [k for k in kinds if k not in ("partition", "link-loss", "member-readd")]
        log("nemeses: %s" % (",".join(kinds) or "none"))

        history = os.path.join(workdir, "history.jsonl")
        heal_file = os.path.join(workdir, "healed")
        wl_argv = [args.workload, "--endpoints", ",".join(m.endpoint for m in cluster.members),
                   "--out", history, "--duration-s", str(args.duration), "--seed", str(seed),
                   "--clients", str(args.clients), "--keys", str(args.keys), "--think-ms", str(args.think_ms),
                   "--watch", "1" if feats.get("watch") else "0", "--lease", "1" if feats.get("lease") else "0",
                   "--heal-file", heal_file]
        if args.plant:
            wl_argv += ["--plant", args.plant]
        wl_log = open(os.path.join(workdir, "workload.log"), "wb")
        wl = subprocess.Popen(wl_argv, stdout=wl_log, stderr=subprocess.STDOUT)
        nem = Nemesis(cluster, rng, kinds, verdicts)
        start = time.monotonic()
        time.sleep(min(2.0, args.duration / 4))
        while kinds and time.monotonic() - start < args.duration - 4 and wl.poll() is None:
            kind = rng.choice(kinds)
            cluster.restart_crashed()
            nem.run_one(kind)
            if kind == "wal-fault" and nem.wal_faults and nem.wal_faults[-1][0] is None:
                kinds = [k for k in kinds if k != "wal-fault"]  # the server ignores it: once is enough
            time.sleep(rng.uniform(1.0, 3.0))
        while time.monotonic() - start < args.duration and wl.poll() is None:
            time.sleep(0.2)
        cluster.restart_crashed()
        nem.heal_all()
        healed = cluster.wait_healthy(timeout=60)
        still_removed = [m.name for m in cluster.members if m.removed]
        if still_removed:
            healed = False
        log("heal: every member %s" % ("healthy" if healed else "NOT healthy within 60 s"))
        verdicts.append(("PASS" if healed else "FAIL", "recovery",
                         "every member healthy after the faults were healed" if healed else
                         ("still removed from the cluster: %s; " % ",".join(still_removed) if still_removed else "") +
                         "; ".join("%s: %s" % (m.name, last_log_lines(m, 2)) for m in cluster.members)))
        cluster.restart_crashed()
        for what in cluster.crashes:
            verdicts.append(("FAIL", "no-crash", what))
        if not cluster.crashes:
            verdicts.append(("PASS", "no-crash", "no member exited unless the harness killed it, removed it "
                                                 "or injected a WAL fault"))
        if nem.counts.get("member-readd") and not any(v[1] == "member-readd" for v in verdicts):
            verdicts.append(("PASS", "member-readd",
                             "%d members removed, wiped, re-added and healthy again%s" %
                             (nem.readds, "; %d add-backs refused for 30 s by the strict reconfig check, then "
                              "retried (%s)" % (len(nem.add_failures), nem.add_failures[0])
                              if nem.add_failures else "")))
        with open(heal_file, "w") as f:
            f.write("healed\n")
        # The final phase reads every acknowledged write back, one by one
        # (~1-2 ms each on etcdpp): a 30-minute run acknowledges a few hundred
        # thousand writes, so a fixed 300 s kills the workload before it has
        # written any history. Allow time in proportion to the run.
        final_budget = 300 + args.duration // 2
        try:
            wl.wait(timeout=final_budget)
        except subprocess.TimeoutExpired:
            wl.kill()
            wl.wait()
            verdicts.append(("FAIL", "workload", "workload did not finish within %d s of the heal" % final_budget))
        wl_log.close()
        with open(os.path.join(workdir, "workload.log"), "rb") as f:
            for line in f.read().decode("utf-8", "replace").splitlines():
                if line.startswith("planted:") or line.startswith("plant:"):
                    log(line)
        if wl.returncode not in (0, None):
            verdicts.append(("FAIL", "workload", "rob_workload exited %s (see %s/workload.log)" % (wl.returncode, workdir)))
        faults = ", ".join("%s x%d" % (k, v) for k, v in sorted(nem.counts.items())) or "none"
        log("faults injected: %s" % faults)
        if cluster.net.proxies:
            net = cluster.net
            log("peer proxies: %d open connections severed, %d refused while links were cut" %
                (net.severed, net.refused))
            log("peer proxies: senders told by socket owner %d, by X-Server-From only %d, not told %d; "
                "%d closed by their dialler before that (dropped); X-Server-From disagreeing %d; "
                "%.2f ms per connection" % (net.by_owner, net.by_header, net.unclassified, net.vanished,
                                            net.disagreed, net.lookup_ms / net.lookups if net.lookups else 0.0))
        cut_kinds = [k for k in ("partition", "link-loss") if nem.counts.get(k)]
        if cut_kinds and cluster.net.unclassified:
            verdicts.append(("FAIL", "nemesis-" + cut_kinds[0],
                             "the peer proxies could not tell the sender of %d peer connections (no member "
                             "process owned the dialling socket, and no X-Server-From), so partitions were "
                             "not enforced on them" % cluster.net.unclassified))
        elif cut_kinds and not (cluster.net.severed or cluster.net.refused):
            verdicts.append(("FAIL", "nemesis-" + cut_kinds[0],
                             "%s injected, yet the peer proxies neither severed nor refused a single "
                             "connection: the cuts did nothing" % faults_of(nem, cut_kinds)))
        elif cut_kinds:
            net = cluster.net
            verdicts.append(("PASS", "nemesis-" + cut_kinds[0],
                             "%s enforced: the sender of every peer connection told (%d by socket owner, %d by "
                             "X-Server-From), %d open connections severed, %d refused while links were cut" %
                             (faults_of(nem, cut_kinds), net.by_owner, net.by_header, net.severed, net.refused)))
        if nem.wal_faults:
            if not nem.wal_faults:
                pass
            elif all(ok is None for ok, _ in nem.wal_faults):
                verdicts.append(("SKIP", "wal-fault", "skipped: server lacks WAL failpoints (%s)" % nem.wal_faults[0][1]))
            else:
                bad = [d for ok, d in nem.wal_faults if ok is False]
                verdicts.append(("FAIL" if bad else "PASS", "wal-fault",
                                 "; ".join(bad) if bad else "%d WAL faults, each a crash with a non-zero exit, "
                                 "then recovery (lost writes would show in the checkers)" % len(nem.wal_faults)))
        return finish(verdicts, history, args, workdir, cluster)
    finally:
        if wl is not None and wl.poll() is None:
            wl.kill()
            wl.wait()
        cluster.close()


def faults_of(nem, kinds):
    return " and ".join("%s x%d" % (k, nem.counts[k]) for k in kinds)


def finish(verdicts, history, args, workdir, cluster):
    cluster.close()
    check_fail = False
    expected_seen = False
    lines = []
    if history and os.path.exists(history):
        r = subprocess.run([args.check, "--history", history], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            parts = line.split(" ", 2)
            if len(parts) >= 2 and parts[0] in ("PASS", "FAIL", "SKIP", "UNDECIDED"):
                lines.append(line)
                name = parts[1].rstrip(":")
                if parts[0] in ("FAIL", "UNDECIDED"):
                    check_fail = True
                if parts[0] == "FAIL" and name == args.expect_fail:
                    expected_seen = True
        if r.returncode not in (0, 1):
            verdicts.append(("FAIL", "checker", "rob_check exited %d: %s" % (r.returncode, r.stderr.strip())))
    elif history:
        verdicts.append(("FAIL", "history", "no history written"))
    if getattr(args, "lease", "auto") == "off":
        lines = [l for l in lines if not l.startswith("SKIP lease: skipped: server lacks lease")]
    for kind, name, detail in verdicts:
        lines.append("%s %s: %s" % (kind, name, detail))
    passed = sum(1 for l in lines if l.startswith("PASS"))
    failed = sum(1 for l in lines if l.startswith("FAIL") or l.startswith("UNDECIDED"))
    print("---- verdicts")
    for l in lines:
        print(l)
    # The summary line comes last, always.
    if args.expect_fail:
        others = [l for l in lines if (l.startswith("FAIL") or l.startswith("UNDECIDED"))
                  and not l.startswith("FAIL %s:" % args.expect_fail)]
        print("planted anomaly %s: checker %s %s%s" % (
            args.plant, args.expect_fail, "reported it (as it must)" if expected_seen else "MISSED it",
            " (other verdicts failed too: %d)" % len(others) if others else ""))
        rc = 0 if expected_seen else 1
        keep = args.keep or not expected_seen
    else:
        rc = 0 if failed == 0 else 1
        keep = args.keep or failed > 0
    if keep:
        print("history and logs kept in %s (replay: rob_check --history %s/history.jsonl)" % (workdir, workdir))
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
