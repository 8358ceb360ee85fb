#!/usr/bin/env bash
# bench/compare.sh: etcd and etcdpp side by side on this machine, same client
# (etcdpp-bench), same workload, same run, alternating over several rounds;
# prints a table of medians: etcd, etcdpp, ratio, target.
#
#   bench/compare.sh --quick            # whole matrix, about 10-12 min on 2 cores
#   bench/compare.sh                    # full run: 5 rounds of 10 s, resources every round
#                                       # (estimated 25-30 min on 2 cores)
#   bench/compare.sh --rows put-1c,put-64c --rounds 1 --duration 2   # a few rows
#
# Options:
#   --quick              3 rounds, 5 s per run, resources measured once
#   --rounds N           rounds (each runs every row on both servers, order alternating)
#   --duration S         seconds per timed run
#   --clients N          the "many clients" figure (default 64, over --conns 8)
#   --keys N             keys loaded for the resource rows (default 1000000, 256 B values)
#   --rows a,b,...       only these rows (ids in the table's first column; "resources",
#                        "noop", "fdatasync", "lease" name groups)
#   --build DIR          where etcdpp, etcdpp-bench, noop_server are built (default
#                        <repo>/build; brought up to date first unless --no-build)
#   --work DIR           data dirs, logs, raw results (default mktemp -d under /tmp); kept
#                        with --keep, else removed at exit (raw results are copied to
#                        <build>/compare-last/)
#   --etcd PATH          etcd binary (default: `etcd` in PATH; Debian's etcd-server is
#                        installed if missing)
#   --markdown FILE      also write the table (markdown) to FILE
#
# Rows light up by themselves: before the rounds, each server is probed
# (etcdpp-bench probe: kv, txn, watch, lease) and a 3-member cluster is
# started; a row whose feature a server lacks prints "n/a" with the reason
# (e.g. "Watch: UNIMPLEMENTED", or the server's own error when a 3-member
# cluster does not start). A row that answers UNIMPLEMENTED mid-run is n/a too,
# and so is a row that cannot finish in time (etcdpp-bench exit 4: e.g. not
# all 100k leases granted within the grant timeout), with the tool's reason.
#
# Lease rows: lease-10k keeps 10k leases alive (TTL 60) on the single-member
# server of the other rows (lease-3m-leader and lease-3m-all: the same on the
# 3-member cluster, to its leader or to every member); lease-expiry and
# lease-100k run on a fresh server of their own each round (no leftover leases
# expiring under them):
# lease-expiry grants 1000 leases of TTL 3 s (64 clients), one key each, never
# renewed, and measures DELETE-event time - (grant ack + TTL) through a
# watcher; lease-100k grants 100k leases (TTL 120 s, all within 90 s, 64
# concurrent grants) then keeps them alive over 64 streams for the run time.
#
# Fairness: both servers get the same flags (etcd's defaults: fsync on every
# commit, --snapshot-count 100000, 2 GB quota), data dirs on the same disk,
# 127.0.0.1 and free ports; the order of the two alternates every round;
# figures are medians over rounds. Servers are stopped by PID (SIGTERM, then
# SIGKILL after 15 s), and every process started here is stopped on exit.
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARGS="$*"
BUILD="$REPO/build"
WORK=""
KEEP=0
QUICK=0
ROUNDS=""
DURATION=""
CLIENTS=64
CONNS=8
KEYS=1000000
ROWS=""
ETCD_BIN=""
MARKDOWN=""
RES_ROUNDS=""
NO_BUILD=0

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --keys) KEYS=$2; shift ;;
    --rows) ROWS=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --work) WORK=$2; KEEP=1; shift ;;
    --keep) KEEP=1 ;;
    --no-build) NO_BUILD=1 ;;
    --etcd) ETCD_BIN=$2; shift ;;
    --markdown) MARKDOWN=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  : "${ROUNDS:=3}" "${DURATION:=5}" "${RES_ROUNDS:=1}"
  WATCH_PUTS_1K=1000; WATCH_PUTS_10K=200
else
  : "${ROUNDS:=5}" "${DURATION:=10}"
  RES_ROUNDS=$ROUNDS
  WATCH_PUTS_1K=3000; WATCH_PUTS_10K=600
fi
RUN_TIMEOUT=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d * 4 + 120 }')

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "compare.sh: $*"; exit 1; }

want() {  # want ROW [GROUP]: is this row selected?
  [ -z "$ROWS" ] && return 0
  local r
  for r in ${ROWS//,/ }; do
    [ "$r" = "$1" ] && return 0
    [ $# -gt 1 ] && [ "$r" = "$2" ] && return 0
  done
  return 1
}

# ------------------------------------------------------------ binaries
ETCDPP="$BUILD/etcdpp"
BENCH="$BUILD/bench/etcdpp_bench/etcdpp-bench"
NOOP="$BUILD/bench/noop_server/noop_server"
if [ "$NO_BUILD" = 0 ]; then
  # Always measure what the tree says (a no-op when up to date).
  log "building etcdpp, etcdpp-bench, noop_server in $BUILD"
  if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
    cmake -S "$REPO" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || die "cmake failed"
  fi
  cmake --build "$BUILD" --target etcdpp etcdpp-bench noop_server -j "$(nproc)" >/dev/null ||
    die "build failed (see: cmake --build $BUILD --target etcdpp etcdpp-bench noop_server)"
fi
for b in "$ETCDPP" "$BENCH" "$NOOP"; do [ -x "$b" ] || die "missing $b"; done
if [ -z "$ETCD_BIN" ]; then
  if ! command -v etcd >/dev/null 2>&1; then
    log "etcd not found: installing Debian's etcd-server"
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server) >/dev/null ||
        die "apt-get install etcd-server failed"
    else
      die "etcd is not installed (run: sudo apt-get install etcd-server)"
    fi
    # The package starts a system etcd on 2379; ours use other ports.
  fi
  ETCD_BIN=$(command -v etcd)
fi
command -v python3 >/dev/null || die "python3 is needed for the table"

if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/etcdpp-compare.XXXXXX); fi
mkdir -p "$WORK/runs" "$WORK/logs"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

# ------------------------------------------------------------ processes
declare -A PIDS=()   # pid -> what
TOOL_PID=""

# alive PID: running (an exited child stays a zombie until waited for, and
# kill -0 would still succeed on it).
alive() {
  local st
  st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_pid() {  # stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL
  local pid=$1 i
  [ -z "$pid" ] && return 0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 300); do
      alive "$pid" || break
      sleep 0.05
    done
    if alive "$pid"; then
      log "pid $pid (${PIDS[$pid]:-}) ignored SIGTERM for 15 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  wait "$pid" 2>/dev/null
  unset "PIDS[$pid]"
}

cleanup() {
  local pid
  [ -n "$TOOL_PID" ] && kill -TERM "$TOOL_PID" 2>/dev/null && wait "$TOOL_PID" 2>/dev/null
  for pid in "${!PIDS[@]}"; do stop_pid "$pid"; done
  if [ "$KEEP" = 0 ]; then
    mkdir -p "$BUILD/compare-last" 2>/dev/null &&
      cp -r "$WORK/results.tsv" "$WORK/runs" "$WORK/table.md" "$BUILD/compare-last/" 2>/dev/null
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_member KIND NAME DIR CPORT PPORT CLUSTER: starts one server; sets STARTED_PID.
start_member() {
  local kind=$1 name=$2 dir=$3 cport=$4 pport=$5 cluster=$6 bin
  local logf="$WORK/logs/$kind-$name.log"
  case "$kind" in
    etcd) bin=$ETCD_BIN ;;
    etcdpp) bin=$ETCDPP ;;
    noop) bin=$NOOP ;;
  esac
  echo "=== $(date -u +%T) start $kind $name" >> "$logf"
  "$bin" --name "$name" --data-dir "$dir" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token etcdpp-bench \
    --snapshot-count 100000 >> "$logf" 2>&1 &
  STARTED_PID=$!
  PIDS[$STARTED_PID]="$kind $name"
}

# wait_ready PID ENDPOINT TIMEOUT: until a linearizable read succeeds there.
# Prints ready_ms; fails if the process exits first.
wait_ready() {
  local pid=$1 ep=$2 t=$3 out="$WORK/ready.out" rp
  "$BENCH" ready --endpoints "$ep" --timeout "$t" > "$out" 2>&1 &
  rp=$!
  TOOL_PID=$rp
  while alive "$rp"; do
    if ! alive "$pid"; then
      kill -TERM "$rp" 2>/dev/null; wait "$rp" 2>/dev/null; TOOL_PID=""
      return 1
    fi
    sleep 0.02
  done
  wait "$rp"; local rc=$?
  TOOL_PID=""
  [ "$rc" = 0 ] || return 1
  sed -n 's/^ready_ms=//p' "$out"
}

# Why a server did not come up: the last meaningful line of its log.
why_down() {
  grep -v '^===' "$WORK/logs/$1.log" 2>/dev/null | tail -1 |
    sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z] \| //; s/^\{.*"msg":"([^"]*)".*/\1/' | cut -c1-160
}

# start_single KIND: a fresh 1-member server; sets EP and SPID. Fails with WHY.
start_single() {
  local kind=$1 dir="$WORK/data-$1-1m"
  rm -rf "$dir"
  local cp pp
  cp=$(free_port); pp=$(free_port)
  start_member "$kind" "${kind}1" "$dir" "$cp" "$pp" "${kind}1=http://127.0.0.1:$pp"
  SPID=$STARTED_PID; EP="127.0.0.1:$cp"; SDIR=$dir
  SCPORT=$cp; SPPORT=$pp
  if ! wait_ready "$SPID" "$EP" 60 >/dev/null; then
    WHY="did not start: $(why_down "$kind-${kind}1")"
    stop_pid "$SPID"
    return 1
  fi
}

# start_cluster KIND: 3 members; sets EPS, CPIDS. Fails with WHY.
start_cluster() {
  local kind=$1 i cluster="" cps=() pps=()
  for i in 1 2 3; do
    cps[$i]=$(free_port); pps[$i]=$(free_port)
    cluster="${cluster:+$cluster,}${kind}m$i=http://127.0.0.1:${pps[$i]}"
  done
  CPIDS=(); EPS=""
  for i in 1 2 3; do
    rm -rf "$WORK/data-$kind-3m-$i"
    start_member "$kind" "${kind}m$i" "$WORK/data-$kind-3m-$i" "${cps[$i]}" "${pps[$i]}" "$cluster"
    CPIDS+=("$STARTED_PID")
    EPS="${EPS:+$EPS,}127.0.0.1:${cps[$i]}"
  done
  for i in 1 2 3; do
    if ! wait_ready "${CPIDS[$((i - 1))]}" "127.0.0.1:${cps[$i]}" 60 >/dev/null; then
      WHY="3-member cluster did not start: $(why_down "$kind-${kind}m$i")"
      for i in "${CPIDS[@]}"; do stop_pid "$i"; done
      return 1
    fi
  done
}

# ------------------------------------------------------------ recording
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$RESULTS"; }
na() { record "$1" "$2" "$3" na "$4"; log "  $2 $1: n/a ($4)"; }

# run_bench ROW SERVER ROUND MODE ARGS...: one etcdpp-bench run, recorded.
run_bench() {
  local row=$1 server=$2 round=$3
  shift 3
  local out="$WORK/runs/$row.$server.$round.out"
  timeout "$RUN_TIMEOUT" "$BENCH" "$@" --json --progress=false --label "$row/$server/$round" \
    > "$out" 2> "$out.err" &
  TOOL_PID=$!
  wait "$TOOL_PID"; local rc=$?
  TOOL_PID=""
  case "$rc" in
    0|1) record "$row" "$server" "$round" json "$out"
         log "  $server $row: $(head -1 "$out" | cut -d' ' -f2-5)" ;;
    3) na "$row" "$server" "$round" "$(head -1 "$out" | sed 's/^[^:]*: unsupported by server: //')" ;;
    4) na "$row" "$server" "$round" "$(tail -1 "$out.err" | sed 's/^etcdpp-bench: //' | cut -c1-160)" ;;
    124) record "$row" "$server" "$round" error "timed out after ${RUN_TIMEOUT}s"
         log "  $server $row: TIMED OUT" ;;
    *) record "$row" "$server" "$round" error "exit $rc: $(tail -1 "$out.err" | cut -c1-120)"
       log "  $server $row: exit $rc: $(tail -1 "$out.err")" ;;
  esac
}

rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

# ------------------------------------------------------------ phases
D=$DURATION
MANY="--clients $CLIENTS --conns $CONNS"
declare -A FEAT=()   # "server feature" -> 1 | reason

probe_phase() {
  local s line
  for s in etcd etcdpp; do
    if ! start_single "$s"; then die "$s: $WHY"; fi
    "$BENCH" probe --endpoints "$EP" > "$WORK/probe-$s.out" 2>&1
    for f in watch lease; do
      line=$(grep "^$f=" "$WORK/probe-$s.out")
      if [ "${line#"$f="}" = 1 ]; then FEAT["$s $f"]=1; else FEAT["$s $f"]="${line#"$f=0 "}"; fi
    done
    stop_pid "$SPID"
    log "probe $s: $(tr '\n' ' ' < "$WORK/probe-$s.out")"
  done
}

has() { [ "${FEAT["$1 $2"]:-0}" = 1 ]; }
featwhy() { local w=${FEAT["$1 $2"]:-unknown}; echo "${2^} unsupported by server (${w:-UNIMPLEMENTED})"; }

single_phase() {  # single_phase SERVER ROUND
  local s=$1 r=$2
  if ! start_single "$s"; then
    for row in put-1c put-64c txn-put range-l-1m range-s-1m watch-1k watch-10k lease-10k mixed; do
      na "$row" "$s" "$r" "$WHY"
    done
    return
  fi
  local kv="--key-size 16 --val-size 256 --key-space-size 100000"
  want put-1c && run_bench put-1c "$s" "$r" put --endpoints "$EP" --clients 1 --conns 1 --duration "$D" $kv
  want put-64c && run_bench put-64c "$s" "$r" put --endpoints "$EP" $MANY --duration "$D" $kv
  want txn-put && run_bench txn-put "$s" "$r" txn-put --endpoints "$EP" $MANY --duration "$D" $kv
  want range-l-1m && run_bench range-l-1m "$s" "$r" range --endpoints "$EP" $MANY --duration "$D" \
    --consistency l --preload 10000 --key-size 16 --val-size 256
  want range-s-1m && run_bench range-s-1m "$s" "$r" range --endpoints "$EP" $MANY --duration "$D" \
    --consistency s --preload 10000 --key-size 16 --val-size 256
  if want watch-1k; then
    if has "$s" watch; then
      run_bench watch-1k "$s" "$r" watch --endpoints "$EP" --conns 4 --watchers 1000 --streams 10 \
        --prefixes 10 --put-total "$WATCH_PUTS_1K" --put-clients 8
    else na watch-1k "$s" "$r" "$(featwhy "$s" watch)"; fi
  fi
  if want watch-10k; then
    if has "$s" watch; then
      run_bench watch-10k "$s" "$r" watch --endpoints "$EP" --conns 4 --watchers 10000 --streams 100 \
        --prefixes 10 --put-total "$WATCH_PUTS_10K" --put-clients 8
    else na watch-10k "$s" "$r" "$(featwhy "$s" watch)"; fi
  fi
  if want lease-10k lease; then
    if has "$s" lease; then
      run_bench lease-10k "$s" "$r" lease-keepalive --endpoints "$EP" $MANY --leases 10000 \
        --duration "$D"
    else na lease-10k "$s" "$r" "$(featwhy "$s" lease)"; fi
  fi
  # Watchers in the mix only when both servers serve Watch (same load for both).
  local mw=0
  if has etcd watch && has etcdpp watch; then mw=10; fi
  want mixed && run_bench mixed "$s" "$r" mixed --endpoints "$EP" --clients 32 --conns 4 \
    --objects 10000 --duration "$D" --watchers "$mw"
  stop_pid "$SPID"
}

lease_phase() {  # lease_phase SERVER ROUND: a fresh server for lease-expiry, then lease-100k
  local s=$1 r=$2 row
  want lease-expiry lease || want lease-100k lease || return 0
  if ! has "$s" lease; then
    for row in lease-expiry lease-100k; do want "$row" lease && na "$row" "$s" "$r" "$(featwhy "$s" lease)"; done
    return
  fi
  if ! start_single "$s"; then
    for row in lease-expiry lease-100k; do want "$row" lease && na "$row" "$s" "$r" "$WHY"; done
    return
  fi
  # Each run gives up on its own (exit 4, with its reason) before compare.sh's
  # timeout would kill it.
  local bound=$(( RUN_TIMEOUT - 10 ))
  if want lease-expiry lease; then
    if has "$s" watch; then
      run_bench lease-expiry "$s" "$r" lease-expiry --endpoints "$EP" $MANY --leases 1000 --ttl 3 \
        --grant-timeout 30 --expiry-timeout 60 --max-time "$bound"
    else na lease-expiry "$s" "$r" "$(featwhy "$s" watch)"; fi
  fi
  want lease-100k lease && run_bench lease-100k "$s" "$r" lease-keepalive --endpoints "$EP" $MANY \
    --leases 100000 --ttl 120 --grant-timeout 90 --duration "$D" --max-time "$bound"
  stop_pid "$SPID"
}

cluster_phase() {  # cluster_phase SERVER ROUND
  local s=$1 r=$2 row
  want put-3m-leader || want put-3m-all || want range-l-3m || want range-s-3m ||
    want lease-3m-leader lease || want lease-3m-all lease || return 0
  if ! start_cluster "$s"; then
    for row in put-3m-leader put-3m-all range-l-3m range-s-3m lease-3m-leader lease-3m-all; do
      na "$row" "$s" "$r" "$WHY"
    done
    return
  fi
  local kv="--key-size 16 --val-size 256 --key-space-size 100000"
  want put-3m-leader && run_bench put-3m-leader "$s" "$r" put --endpoints "$EPS" --target leader \
    $MANY --duration "$D" $kv
  want put-3m-all && run_bench put-3m-all "$s" "$r" put --endpoints "$EPS" --target all \
    $MANY --duration "$D" $kv
  want range-l-3m && run_bench range-l-3m "$s" "$r" range --endpoints "$EPS" --target all $MANY \
    --duration "$D" --consistency l --preload 10000 --key-size 16 --val-size 256
  want range-s-3m && run_bench range-s-3m "$s" "$r" range --endpoints "$EPS" --target all $MANY \
    --duration "$D" --consistency s --preload 10000 --key-size 16 --val-size 256
  # Keepalives on a cluster: the leader renews (etcdpp: after a ReadIndex
  # round), followers forward to it.
  want lease-3m-leader lease && run_bench lease-3m-leader "$s" "$r" lease-keepalive \
    --endpoints "$EPS" --target leader $MANY --leases 10000 --duration "$D"
  want lease-3m-all lease && run_bench lease-3m-all "$s" "$r" lease-keepalive \
    --endpoints "$EPS" --target all $MANY --leases 10000 --duration "$D"
  local pid
  for pid in "${CPIDS[@]}"; do stop_pid "$pid"; done
}

noop_phase() {  # noop_phase ROUND
  local r=$1
  want noop || want noop-put-1c || want noop-put-64c || want noop-range-64c || return 0
  if ! start_single noop; then die "noop_server: $WHY"; fi
  run_bench noop-put-1c noop "$r" put --endpoints "$EP" --clients 1 --conns 1 --duration "$D" \
    --key-size 16 --val-size 256 --key-space-size 100000
  run_bench noop-put-64c noop "$r" put --endpoints "$EP" $MANY --duration "$D" \
    --key-size 16 --val-size 256 --key-space-size 100000
  run_bench noop-range-64c noop "$r" range --endpoints "$EP" $MANY --duration "$D" \
    --consistency s --key-size 16 --key-space-size 10000
  stop_pid "$SPID"
}

resources_phase() {  # resources_phase SERVER ROUND
  local s=$1 r=$2
  want resources || want load || want rss || want disk || want restart || return 0
  if ! start_single "$s"; then
    for row in load rss rss-anon disk disk-apparent restart rss-restart; do na "$row" "$s" "$r" "$WHY"; done
    return
  fi
  # 1M keys of 256 B values in txns of 100 puts (the fastest way in for both).
  run_bench load "$s" "$r" txn-put --endpoints "$EP" --clients 16 --conns 4 --txn-ops 100 \
    --sequential-keys --key-space-size "$KEYS" --total $(( (KEYS + 99) / 100 )) \
    --key-size 16 --val-size 256 --timeout-ms 60000
  sleep 2
  record rss "$s" "$r" value "$(rss_kb "$SPID" VmRSS)"
  record rss-anon "$s" "$r" value "$(rss_kb "$SPID" RssAnon)"
  log "  $s rss: $(rss_kb "$SPID" VmRSS) kB (anon $(rss_kb "$SPID" RssAnon) kB)"
  stop_pid "$SPID"
  record disk "$s" "$r" value "$(du -s --block-size=1 "$SDIR" | cut -f1)"
  record disk-apparent "$s" "$r" value "$(du -sb "$SDIR" | cut -f1)"
  log "  $s disk: $(du -sh "$SDIR" | cut -f1)"
  # Restart on the same data dir and ports: time until a linearizable read.
  local t0 t1 ms
  t0=$(date +%s%N)
  start_member "$s" "${s}1" "$SDIR" "$SCPORT" "$SPPORT" "${s}1=http://127.0.0.1:$SPPORT"
  SPID=$STARTED_PID
  t1=$(date +%s%N)
  if ms=$(wait_ready "$SPID" "$EP" 120); then
    ms=$(awk -v a="$ms" -v d=$(( (t1 - t0) / 1000 )) 'BEGIN { printf "%.1f", a + d / 1000 }')
    record restart "$s" "$r" value "$ms"
    log "  $s restart: $ms ms"
    sleep 1
    record rss-restart "$s" "$r" value "$(rss_kb "$SPID" VmRSS)"
  else
    na restart "$s" "$r" "did not restart: $(why_down "$s-${s}1")"
  fi
  stop_pid "$SPID"
  rm -rf "$SDIR"
}

# ------------------------------------------------------------ run
START_TS=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
{
  echo "date=$START_TS"
  echo "cores=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  dev=$(df --output=source "$WORK" | tail -1)
  echo "disk=$dev $(lsblk -dno SIZE,ROTA,MODEL "$dev" 2>/dev/null | tr -s ' ' | sed 's/ 0 / ssd-or-virtual /; s/ 1 / rotational /')"
  echo "mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "etcd=$("$ETCD_BIN" --version | head -1)"
  echo "etcdpp=$("$ETCDPP" --version | head -1)"
  echo "rounds=$ROUNDS"
  echo "duration=$DURATION"
  echo "clients=$CLIENTS"
  echo "conns=$CONNS"
  echo "keys=$KEYS"
  echo "quick=$QUICK"
  echo "command=bench/compare.sh $ARGS"
  echo "load_before=$LOAD_BEFORE"
} > "$WORK/machine.txt"
log "etcd vs etcdpp: $(tr '\n' ' ' < "$WORK/machine.txt")"
log "work dir $WORK"

probe_phase
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="etcd etcdpp"; else order="etcdpp etcd"; fi
  log "round $r/$ROUNDS ($order)"
  # The disk's floor, each round (a shared disk's flush latency drifts):
  # 512 B appends (about one small put's WAL record) to a preallocated file.
  if want fdatasync; then
    run_bench fdatasync disk "$r" fdatasync --dir "$WORK" --size 512 --duration 2
    run_bench fdatasync-spin disk "$r" fdatasync --dir "$WORK" --size 512 --duration 2 --spin
  fi
  noop_phase "$r"
  for s in $order; do single_phase "$s" "$r"; done
  for s in $order; do lease_phase "$s" "$r"; done
  for s in $order; do cluster_phase "$s" "$r"; done
done
for r in $(seq 1 "$RES_ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="etcd etcdpp"; else order="etcdpp etcd"; fi
  log "resources $r/$RES_ROUNDS ($order): $KEYS keys of 256 B"
  for s in $order; do resources_phase "$s" "$r"; done
done
{
  echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "elapsed_s=$(( $(date +%s) - T_START ))"
} >> "$WORK/machine.txt"

# ------------------------------------------------------------ table
python3 - "$WORK" > "$WORK/table.md" <<'PY'
import json, statistics, sys
work = sys.argv[1]
machine = dict(l.rstrip("\n").split("=", 1) for l in open(f"{work}/machine.txt") if "=" in l)
runs = {}    # (row, server) -> list of dicts (json) or floats
notes = {}   # (row, server) -> reason
errs = {}    # (row, server) -> errors seen
for line in open(f"{work}/results.tsv"):
    row, server, rnd, kind, val = line.rstrip("\n").split("\t", 4)
    key = (row, server)
    if kind == "json":
        j = None
        for l in open(val):
            if l.startswith("{"):
                j = json.loads(l)
        if j is None:
            notes[key] = "no output"
            continue
        runs.setdefault(key, []).append(j)
        if j.get("errors"):
            errs[key] = errs.get(key, 0) + j["errors"]
    elif kind == "value":
        try:
            runs.setdefault(key, []).append(float(val))
        except ValueError:
            notes[key] = "no value"
    else:
        notes[key] = val

def metric(row, server, f):
    xs = []
    for j in runs.get((row, server), []):
        try:
            xs.append(f(j))
        except (KeyError, TypeError):
            pass
    return statistics.median(xs) if xs else None

qps = lambda j: j["qps"]
p50 = lambda j: j["latency_ms"]["p50"]
p99 = lambda j: j["latency_ms"]["p99"]
val = lambda v: v
puts_s = lambda j: j["extra"]["puts_per_s"]
grants_s = lambda j: j["extra"]["grant_qps"]
maxl = lambda j: j["latency_ms"]["max"]

# (row, title, metric, unit, better, target ratio etcdpp/etcd)
R = [
    ("put-1c", "put, 1 member, 1 client", qps, "ops/s", "hi", None),
    ("put-1c", "put, 1 member, 1 client", p50, "p50 ms", "lo", 1.0),
    ("put-1c", "put, 1 member, 1 client", p99, "p99 ms", "lo", None),
    ("put-64c", "put, 1 member, {C} clients", qps, "ops/s", "hi", 2.0),
    ("put-64c", "put, 1 member, {C} clients", p99, "p99 ms", "lo", 1.0),
    ("txn-put", "txn-put, 1 member, {C} clients", qps, "txn/s", "hi", None),
    ("txn-put", "txn-put, 1 member, {C} clients", p99, "p99 ms", "lo", None),
    ("range-l-1m", "range linearizable, 1 member, {C} clients", qps, "ops/s", "hi", 1.5),
    ("range-l-1m", "range linearizable, 1 member, {C} clients", p99, "p99 ms", "lo", None),
    ("range-s-1m", "range serializable, 1 member, {C} clients", qps, "ops/s", "hi", 1.5),
    ("range-s-1m", "range serializable, 1 member, {C} clients", p99, "p99 ms", "lo", None),
    ("put-3m-leader", "put, 3 members, to leader, {C} clients", qps, "ops/s", "hi", 2.0),
    ("put-3m-leader", "put, 3 members, to leader, {C} clients", p99, "p99 ms", "lo", 1.0),
    ("put-3m-all", "put, 3 members, to all, {C} clients", qps, "ops/s", "hi", 2.0),
    ("put-3m-all", "put, 3 members, to all, {C} clients", p99, "p99 ms", "lo", 1.0),
    ("range-l-3m", "range linearizable, 3 members, {C} clients", qps, "ops/s", "hi", 1.5),
    ("range-s-3m", "range serializable, 3 members, {C} clients", qps, "ops/s", "hi", 1.5),
    ("watch-1k", "watch, 1k watchers", qps, "events/s", "hi", 2.0),
    ("watch-1k", "watch, 1k watchers", p99, "put-to-event p99 ms", "lo", None),
    ("watch-10k", "watch, 10k watchers", qps, "events/s", "hi", 2.0),
    ("watch-10k", "watch, 10k watchers", p99, "put-to-event p99 ms", "lo", None),
    ("lease-10k", "10k leases kept alive, {C} streams", qps, "keepalives/s", "hi", None),
    ("lease-10k", "10k leases kept alive, {C} streams", p99, "p99 ms", "lo", None),
    ("lease-3m-leader", "10k leases kept alive, 3 members, to leader, {C} streams", qps, "keepalives/s", "hi", None),
    ("lease-3m-leader", "10k leases kept alive, 3 members, to leader, {C} streams", p99, "p99 ms", "lo", None),
    ("lease-3m-all", "10k leases kept alive, 3 members, to all, {C} streams", qps, "keepalives/s", "hi", None),
    ("lease-3m-all", "10k leases kept alive, 3 members, to all, {C} streams", p99, "p99 ms", "lo", None),
    ("lease-100k", "100k leases kept alive, {C} streams", qps, "keepalives/s", "hi", None),
    ("lease-100k", "100k leases kept alive, {C} streams", p99, "p99 ms", "lo", None),
    ("lease-100k", "100k leases granted up front, {C} clients", grants_s, "grants/s", "hi", None),
    ("lease-expiry", "lease expiry lag, 1k leases of TTL 3 s", p50, "p50 ms", "lo", None),
    ("lease-expiry", "lease expiry lag, 1k leases of TTL 3 s", p99, "p99 ms", "lo", None),
    ("lease-expiry", "lease expiry lag, 1k leases of TTL 3 s", maxl, "max ms", "lo", None),
    ("mixed", "mixed (Kubernetes-like), 32 clients", qps, "ops/s", "hi", None),
    ("mixed", "mixed (Kubernetes-like), 32 clients", p99, "p99 ms", "lo", None),
    ("load", "load {K} keys of 256 B (txns of 100)", puts_s, "puts/s", "hi", None),
    ("rss", "RSS after loading {K} keys", lambda v: v / 1024, "MiB", "lo", 0.5),
    ("rss-anon", "RSS anonymous (heap) after loading", lambda v: v / 1024, "MiB", "lo", None),
    ("disk", "bytes on disk (allocated)", lambda v: v / 2**20, "MiB", "lo", None),
    ("disk-apparent", "bytes on disk (apparent size)", lambda v: v / 2**20, "MiB", "lo", None),
    ("restart", "restart until a linearizable read", val, "ms", "lo", 0.5),
    ("rss-restart", "RSS 1 s after restart", lambda v: v / 1024, "MiB", "lo", None),
]
C = machine.get("clients", "64")
K = machine.get("keys", "1000000")
Kt = f"{int(K)/1e6:g}M" if int(K) >= 1000000 else K

def fmt(x):
    if x is None:
        return None
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"

footnotes = []
def footnote(text):
    if text not in footnotes:
        footnotes.append(text)
    return footnotes.index(text) + 1

def cell(row, server, f):
    v = metric(row, server, f)
    if v is None:
        n = notes.get((row, server))
        return None, ("n/a" if n is None else f"n/a ({footnote(n)})")
    star = "*" if errs.get((row, server)) else ""
    return v, fmt(v) + star

out = []
out.append(f"etcd vs etcdpp, {machine.get('date')}: {machine.get('cores')} cores ({machine.get('cpu')}), "
           f"{machine.get('mem')}, disk {machine.get('disk')}")
out.append(f"{machine.get('etcd')} / {machine.get('etcdpp')}; {machine.get('rounds')} rounds of "
           f"{machine.get('duration')} s runs, {C} clients over {machine.get('conns')} connections; "
           f"load avg before {machine.get('load_before')}, after {machine.get('load_after')}; "
           f"took {machine.get('elapsed_s')} s")
out.append(f"command: {machine.get('command')}")
out.append("Figures are medians over rounds; ratio = etcdpp / etcd; * = the run had errors.")
out.append("")
out.append("| row | metric | etcd | etcdpp | ratio | target |")
out.append("|---|---|---:|---:|---:|---|")
seen = set()
for row, title, f, unit, better, target in R:
    title = title.replace("{C}", C).replace("{K}", Kt)
    if not (any(k[0] == row for k in runs) or any(k[0] == row for k in notes)):
        continue
    a, at = cell(row, "etcd", f)
    b, bt = cell(row, "etcdpp", f)
    ratio = f"{b / a:.2f}x" if a and b is not None else ""
    tgt = ""
    if target is not None:
        sign = ">=" if better == "hi" else "<="
        tgt = f"{sign} {target:g}x"
        if a and b is not None:
            ok = (b / a >= target) if better == "hi" else (b / a <= target)
            tgt += " ok" if ok else " MISS"
    out.append(f"| {title} | {unit} | {at} | {bt} | {ratio} | {tgt} |")

# Ceiling and floor.
out.append("")
out.append("| ceiling and floor | | etcd | etcdpp | no-op / disk | target |")
out.append("|---|---|---:|---:|---:|---|")
n64 = metric("noop-put-64c", "noop", qps)
if n64:
    e = metric("put-64c", "etcd", qps)
    p = metric("put-64c", "etcdpp", qps)
    frac = lambda x: "n/a" if x is None else f"{x / n64:.2f}"
    out.append(f"| put, 1 member, {C} clients, as a fraction of the no-op server | fraction | "
               f"{frac(e)} | {frac(p)} | {fmt(n64)} ops/s | etcdpp >= 0.70"
               f"{'' if p is None else (' ok' if p / n64 >= 0.7 else ' MISS')} |")
nr = metric("noop-range-64c", "noop", qps)
if nr:
    e = metric("range-s-1m", "etcd", qps)
    p = metric("range-s-1m", "etcdpp", qps)
    frac = lambda x: "n/a" if x is None else f"{x / nr:.2f}"
    out.append(f"| range serializable, {C} clients, as a fraction of the no-op server | fraction | "
               f"{frac(e)} | {frac(p)} | {fmt(nr)} ops/s | |")
n1 = metric("noop-put-1c", "noop", p50)
fs = metric("fdatasync", "disk", p50)
if n1 is not None:
    out.append(f"| no-op server round trip, 1 client | p50 ms | | | {n1:.3f} | |")
if fs is not None:
    out.append(f"| raw 512 B append + fdatasync (preallocated file) | p50 ms | | | {fs:.3f} | |")
fss = metric("fdatasync-spin", "disk", p50)
if fss is not None:
    out.append(f"| the same with one CPU kept busy (no idle wake-up delay) | p50 ms | | | {fss:.3f} | |")
if n1 is not None and fs is not None:
    floor = n1 + fs
    e = metric("put-1c", "etcd", p50)
    p = metric("put-1c", "etcdpp", p50)
    ef = f"{e / floor:.2f}x" if e else "n/a"
    pf = f"{p / floor:.2f}x" if p else "n/a"
    verdict = "" if not p else (" ok" if p / floor <= 2 else " MISS")
    out.append(f"| put, 1 client, p50 as a multiple of the floor (fdatasync + no-op round trip = {floor:.3f} ms) "
               f"| x floor | {ef} | {pf} | | etcdpp <= 2x{verdict} |")
    if fss is not None:
        floor2 = n1 + fss
        ef = f"{e / floor2:.2f}x" if e else "n/a"
        pf = f"{p / floor2:.2f}x" if p else "n/a"
        out.append(f"| the same against the busy-CPU floor ({floor2:.3f} ms) | x floor | {ef} | {pf} | | |")
if footnotes:
    out.append("")
    for i, text in enumerate(footnotes, 1):
        out.append(f"({i}) {text}  ")
print("\n".join(out))
PY
cat "$WORK/table.md"
if [ -n "$MARKDOWN" ]; then cp "$WORK/table.md" "$MARKDOWN"; fi
