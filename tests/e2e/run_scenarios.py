#!/usr/bin/env python3
"""Run etcdctl scenarios against a server binary and diff with golden output.

  # check etcdpp (what ctest runs, one scenario per test):
  python3 tests/e2e/run_scenarios.py --bin build/etcdpp
  # check that the goldens still match real etcd 3.4.23:
  python3 tests/e2e/run_scenarios.py --bin "$(command -v etcd)"
  # (re-)record goldens from real etcd 3.4.23 (all, or the named scenarios):
  python3 tests/e2e/run_scenarios.py --record --bin "$(command -v etcd)" [name ...]

Options: -j N runs N scenarios at once (default 1; each has its own server),
--keep keeps temp dirs (data dir, server.log), --actual DIR writes the
normalised actual output of every scenario run to DIR/<name>.out.
Exit status: 0 all passed, 1 a scenario failed, 2 usage or setup error,
77 with --skip-if-missing when the server binary does not exist (ctest SKIP).
The last line printed is always "N passed, M failed" (unless setup failed).

Scenario format (tests/e2e/scenarios/<name>.txt), one item per line:

  # text            comment ("#" then a space, or "#" alone). Blank lines ignored.
  #server-flags: --max-txn-ops=3 --max-request-bytes=1024
                    extra server flags for this scenario (shell-quoted; must come
                    before the first command). The harness always passes
                    --name --data-dir --listen-client-urls --advertise-client-urls
                    --listen-peer-urls --initial-advertise-peer-urls
                    --initial-cluster (all on 127.0.0.1, random ports).
  #kill9            SIGKILL the server (data dir kept).
  #stop             SIGTERM the server (SIGKILL after 10 s).
  #start            start it again on the same data dir and ports; waits until ready.
  #restart          #stop then #start.
  #bg: watch --rev=2 foo
                    start etcdctl in the background (one at a time; e.g. a watch),
                    its stdin a pipe; its output is shown at #bg-stop.
  #bg-input: progress
                    write a line to the background etcdctl's stdin (watch -i).
  #bg-wait: 3       wait (up to 10 s) until it has printed 3 lines (stdout +
                    stderr): the sync point before the next step.
  #bg-exit          wait (up to 10 s) until it exits by itself.
  #bg-stop          SIGKILL it if still running; show its stdout, stderr, exit.
  put foo bar       anything else is an etcdctl command line (shlex-split; a
                    leading "etcdctl" is optional). The harness adds
                    --endpoints=<server> --command-timeout=5s in front.
  txn -i <<EOF      "<<WORD" at the end of a command: the following lines, up to
  ...               a line that is exactly WORD, are fed to etcdctl's stdin
  EOF               (blank lines kept: they end the compares / success / failure
                    sections of `txn -i`). Without it stdin is empty.
  {{a*2000}}        macro, anywhere in a command or stdin: the text before "*"
                    repeated N times (for big values). Goldens show the macro.

Golden format (tests/e2e/golden/<name>.out): a "# ..." header naming the
recording server and how to re-record (ignored by the comparison), then per step

  $ etcdctl <command as written>
  << <stdin line>                   (only with a heredoc)
  <stdout lines>
  [no newline at end of stdout]     (only if so)
  [stderr]                          (only if stderr is not empty)
  <stderr lines>
  [exit N]

or "#kill9" / "#restart" / ... for directives. All output goes through the
Normaliser in harness.py (documented there rule by rule).
"""

import argparse
import concurrent.futures
import difflib
import os
import re
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)

import harness  # noqa: E402

SCENARIO_DIR = os.path.join(HERE, "scenarios")
GOLDEN_DIR = os.path.join(HERE, "golden")
REFERENCE_VERSION = "3.4.23"
DIRECTIVES = {"server-flags", "kill9", "stop", "start", "restart",
              "bg", "bg-input", "bg-wait", "bg-exit", "bg-stop"}
MACRO = re.compile(r"\{\{(.+?)\*(\d+)\}\}")


class ScenarioError(Exception):
    pass


def expand(text):
    return MACRO.sub(lambda m: m.group(1) * int(m.group(2)), text)


def parse_scenario(path):
    """Returns (server_flags, steps). A step is ("dir", name) or
    ("cmd", shown, argv, stdin_or_None, shown_stdin_or_None); `shown*` are the
    text as written (macros unexpanded) for the golden file."""
    with open(path) as f:
        lines = f.read().split("\n")
    flags, steps = [], []
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        i += 1
        s = line.strip()
        if not s or s == "#" or s.startswith("# ") or s.startswith("##"):
            continue
        if s.startswith("#"):
            m = re.match(r"^#([a-z0-9-]+)(?::\s*(.*))?$", s)
            if not m or m.group(1) not in DIRECTIVES:
                raise ScenarioError("%s:%d: unknown directive %r" % (path, lineno, s))
            name, arg = m.group(1), m.group(2)
            if name == "server-flags":
                if steps:
                    raise ScenarioError("%s:%d: #server-flags must precede commands"
                                        % (path, lineno))
                flags += shlex.split(arg or "")
            else:
                steps.append(("dir", name, arg))
            continue
        stdin = shown_stdin = None
        m = re.search(r"\s<<(\w+)$", s)
        if m:
            word = m.group(1)
            s = s[:m.start()].rstrip()
            body = []
            while True:
                if i >= len(lines):
                    raise ScenarioError("%s:%d: heredoc <<%s not terminated"
                                        % (path, lineno, word))
                nxt = lines[i]
                i += 1
                if nxt == word:
                    break
                body.append(nxt)
            stdin = expand("\n".join(body) + "\n")
            shown_stdin = "\n".join(body) + "\n"
        shown = s[len("etcdctl "):] if s.startswith("etcdctl ") else s
        try:
            argv = [expand(a) for a in shlex.split(shown)]
        except ValueError as e:
            raise ScenarioError("%s:%d: %s" % (path, lineno, e))
        steps.append(("cmd", shown, argv, stdin, shown_stdin))
    return flags, steps


def render_result(shown, stdin, res, norm):
    out = ["$ etcdctl " + shown]
    if stdin is not None:
        for ln in stdin[:-1].split("\n"):
            out.append(("<< " + ln).rstrip())
    so = norm(res.stdout)
    if so:
        out.extend(so[:-1].split("\n") if so.endswith("\n") else so.split("\n"))
        if not so.endswith("\n"):
            out.append("[no newline at end of stdout]")
    se = norm(res.stderr)
    if se:
        out.append("[stderr]")
        out.extend(se[:-1].split("\n") if se.endswith("\n") else se.split("\n"))
    out.append("[exit %d]" % res.exit_code)
    return out


def run_one(name, bin_path, etcdctl_path, keep):
    """Run scenario `name`; returns (body_lines, server_log_tail_or_None)."""
    flags, steps = parse_scenario(os.path.join(SCENARIO_DIR, name + ".txt"))
    srv = harness.Server(bin_path=bin_path, extra_flags=flags, keep=keep,
                         etcdctl_path=etcdctl_path)
    out = []
    log_tail = None
    bg = None
    bg_shown = ""
    try:
        try:
            srv.start()
        except harness.HarnessError as e:
            return ["[harness: server failed to start: %s]" % str(e).split("\n")[0]], str(e)
        norm = harness.Normaliser(srv)
        for step in steps:
            if step[0] == "dir" and step[1].startswith("bg"):
                d, arg = step[1], step[2]
                out.append("#" + d + (": " + arg if arg else ""))
                if d == "bg":
                    if bg is not None:
                        bg.stop()
                    bg = srv.etcdctl_background([expand(a) for a in shlex.split(arg or "")])
                    bg_shown = arg or ""
                elif bg is None:
                    out.append("[harness: no background etcdctl]")
                elif d == "bg-input":
                    bg.write(expand(arg or ""))
                elif d == "bg-wait":
                    if not bg.wait_lines(int(arg)):
                        out.append("[harness: bg-wait timed out]")
                elif d == "bg-exit":
                    if not bg.wait_exit():
                        out.append("[harness: background etcdctl still running]")
                elif d == "bg-stop":
                    res = bg.stop()
                    bg = None
                    out.extend(render_result("(background) " + bg_shown, None, res, norm))
                out.append("")
                continue
            if step[0] == "dir":
                d = step[1]
                out.append("#" + d)
                try:
                    if d == "kill9":
                        srv.kill9()
                    elif d == "stop":
                        srv.stop()
                    elif d == "start":
                        srv.start()
                    elif d == "restart":
                        srv.restart()
                except harness.HarnessError as e:
                    out.append("[harness: %s failed: %s]" % (d, str(e).split("\n")[0]))
                    log_tail = str(e)
                    break
                out.append("")
                continue
            _, shown, argv, stdin, shown_stdin = step
            was_running = srv.running()
            res = srv.etcdctl(argv, stdin=stdin)
            out.extend(render_result(shown, shown_stdin, res, norm))
            out.append("")
            if was_running and not srv.running():
                rc = srv.proc.poll()
                out.append("[harness: server exited unexpectedly with code %s]" % rc)
                log_tail = srv.log_tail()
                srv.proc = None
                break
        if log_tail is None and srv.proc is not None and not srv.running():
            log_tail = srv.log_tail()
    finally:
        if bg is not None:
            bg.stop()
        if keep:
            print("  kept %s (server.log, data/)" % srv.workdir, file=sys.stderr)
        srv.close()
    while out and out[-1] == "":
        out.pop()
    return out, log_tail


def golden_header(name, srv_version, ctl_version):
    return [
        "# Golden output of tests/e2e/scenarios/%s.txt" % name,
        "# Recorded from etcd %s with etcdctl %s (ETCDCTL_API=3) by run_scenarios.py --record."
        % (srv_version, ctl_version),
        "# Re-record: python3 tests/e2e/run_scenarios.py --record --bin \"$(command -v etcd)\" %s"
        % name,
        "# Normalised by tests/e2e/harness.py (class Normaliser). Do not edit by hand.",
    ]


def read_golden(path):
    """Returns (header_lines, body_lines)."""
    with open(path) as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    n = 0
    while n < len(lines) and lines[n].startswith("# "):
        n += 1
    return lines[:n], lines[n:]


def all_scenarios():
    return sorted(f[:-4] for f in os.listdir(SCENARIO_DIR) if f.endswith(".txt"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    ap.add_argument("--bin", default=os.environ.get("ETCDPP_BIN"),
                    help="server binary (default $ETCDPP_BIN)")
    ap.add_argument("--etcdctl", default=None, help="etcdctl (default $ETCDCTL_BIN or PATH)")
    ap.add_argument("--record", action="store_true",
                    help="write goldens instead of comparing (server must be etcd %s)"
                    % REFERENCE_VERSION)
    ap.add_argument("--force", action="store_true",
                    help="with --record: allow a server other than etcd %s" % REFERENCE_VERSION)
    ap.add_argument("-j", "--jobs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep temp dirs")
    ap.add_argument("--actual", metavar="DIR", help="write actual outputs to DIR/<name>.out")
    ap.add_argument("--skip-if-missing", action="store_true",
                    help="exit 77 (ctest SKIP) if the server binary does not exist")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = ap.parse_args()

    if args.list:
        print("\n".join(all_scenarios()))
        return 0
    if not args.bin:
        print("error: no server binary (use --bin or ETCDPP_BIN)", file=sys.stderr)
        return 2
    bin_path = os.path.abspath(args.bin)
    if not os.path.isfile(bin_path):
        if args.skip_if_missing:
            print("SKIP: server binary %s does not exist (yet)" % bin_path)
            return 77
        print("error: server binary %s does not exist" % bin_path, file=sys.stderr)
        return 2
    try:
        etcdctl_path = args.etcdctl or harness.find_etcdctl()
    except harness.HarnessError as e:
        print("error: %s" % e, file=sys.stderr)
        return 77 if args.skip_if_missing else 2
    ctl_version = harness.etcdctl_version(etcdctl_path)
    srv_version = harness.server_version(bin_path)

    names = args.scenarios or all_scenarios()
    for n in names:
        if not os.path.isfile(os.path.join(SCENARIO_DIR, n + ".txt")):
            print("error: no scenario %s" % n, file=sys.stderr)
            return 2
        try:
            parse_scenario(os.path.join(SCENARIO_DIR, n + ".txt"))
        except ScenarioError as e:
            print("error: %s" % e, file=sys.stderr)
            return 2

    if args.record:
        if (srv_version != REFERENCE_VERSION or ctl_version != REFERENCE_VERSION) and not args.force:
            print("error: --record needs etcd and etcdctl %s (got etcd %s, etcdctl %s); "
                  "--force to override" % (REFERENCE_VERSION, srv_version, ctl_version),
                  file=sys.stderr)
            return 2
        os.makedirs(GOLDEN_DIR, exist_ok=True)
    elif ctl_version != REFERENCE_VERSION:
        print("warning: etcdctl is %s; goldens were recorded with etcdctl %s"
              % (ctl_version, REFERENCE_VERSION), file=sys.stderr)
    if args.actual:
        os.makedirs(args.actual, exist_ok=True)

    def job(name):
        t0 = time.monotonic()
        body, log_tail = run_one(name, bin_path, etcdctl_path, args.keep)
        return name, body, log_tail, time.monotonic() - t0

    passed = failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        for name, body, log_tail, secs in ex.map(job, names):
            if args.actual:
                with open(os.path.join(args.actual, name + ".out"), "w") as f:
                    f.write("\n".join(body) + "\n")
            gpath = os.path.join(GOLDEN_DIR, name + ".out")
            if args.record:
                with open(gpath, "w") as f:
                    f.write("\n".join(golden_header(name, srv_version, ctl_version) + body) + "\n")
                bad = any(l.startswith("[harness:") for l in body)
                print("%s %s (%.1fs) -> %s" % ("RECORDED-WITH-HARNESS-ERROR" if bad else "RECORDED",
                                               name, secs, os.path.relpath(gpath)))
                if bad:
                    failed += 1
                    if log_tail:
                        print(log_tail)
                else:
                    passed += 1
                continue
            if not os.path.isfile(gpath):
                print("FAIL %s: no golden file %s (record it with --record from etcd %s)"
                      % (name, os.path.relpath(gpath), REFERENCE_VERSION))
                failed += 1
                continue
            _, want = read_golden(gpath)
            if body and body[0].startswith("[harness: server failed to start"):
                print("FAIL %s: server failed to start" % name)
                print(log_tail.rstrip() if log_tail else "")
                failed += 1
            elif body == want:
                print("PASS %s (%.1fs)" % (name, secs))
                passed += 1
            else:
                print("FAIL %s (%.1fs)" % (name, secs))
                sys.stdout.writelines(l + "\n" for l in difflib.unified_diff(
                    want, body, "golden/%s.out" % name, "actual (%s)" % bin_path, lineterm=""))
                if log_tail:
                    print("---- server log tail ----")
                    print(log_tail.rstrip())
                failed += 1
            sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
