#!/usr/bin/env bash
# bench_smoke.sh ETCDPP ETCDPP_BENCH: starts ETCDPP on a free 127.0.0.1 port
# with a temp data dir, runs etcdpp-bench against it, checks zero errors and
# >0 ops (no timing assertion), stops the server by PID.
set -u
ETCDPP=$1
BENCH=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/etcdpp-bench-smoke.XXXXXX")
pid=""
fail=0

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 200); do
      st=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || break
      [ "$st" = Z ] && break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

cport=$(free_port)
pport=$(free_port)
ep="127.0.0.1:$cport"
"$ETCDPP" --name smoke --data-dir "$dir/data" \
  --listen-client-urls "http://$ep" --advertise-client-urls "http://$ep" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "smoke=http://127.0.0.1:$pport" > "$dir/server.log" 2>&1 &
pid=$!
if ! "$BENCH" ready --endpoints "$ep" --timeout 30; then
  echo "FAIL: server not ready; its log:"
  cat "$dir/server.log"
  exit 1
fi

# check NAME REQUIRED ARGS...: run etcdpp-bench; REQUIRED=1 means the mode
# must be served, 0 means "unsupported by server" (exit 3) is accepted.
check() {
  local name=$1 required=$2
  shift 2
  local out="$dir/$name.out"
  "$BENCH" "$@" --endpoints "$ep" --json --progress=false > "$out" 2> "$out.err"
  local rc=$?
  cat "$out"
  if [ "$rc" = 3 ] && [ "$required" = 0 ]; then
    echo "SKIP $name: unsupported by server"
    return
  fi
  local json ops errors
  json=$(grep '^{' "$out" | tail -1)
  ops=$(printf '%s' "$json" | sed -n 's/.*"ops":\([0-9]*\).*/\1/p')
  errors=$(printf '%s' "$json" | sed -n 's/.*"errors":\([0-9]*\).*/\1/p')
  if [ "$rc" != 0 ] || [ -z "$ops" ] || [ "$ops" -le 0 ] || [ "${errors:-1}" != 0 ]; then
    echo "FAIL $name: exit $rc, ops=${ops:-?}, errors=${errors:-?}"
    cat "$out.err"
    fail=1
  else
    echo "ok $name: ops=$ops errors=0"
  fi
}

check put 1 put --clients 8 --conns 2 --duration 3 --key-space-size 1000 --val-size 64
check range-l 1 range --clients 8 --conns 2 --duration 3 --consistency l --preload 1000 --val-size 64
check range-s 1 range --clients 8 --conns 2 --duration 1 --consistency s --key-space-size 1000
check txn-put 1 txn-put --clients 4 --conns 2 --total 500 --txn-ops 4 --key-space-size 1000
check watch 0 watch --watchers 100 --streams 4 --prefixes 4 --put-total 200 --drain-timeout 20
check lease-keepalive 0 lease-keepalive --leases 100 --clients 4 --duration 1
# Expiry lag: 50 leases of the minimum TTL (2 s), never renewed; ~3 s.
check lease-expiry 0 lease-expiry --leases 50 --ttl 2 --clients 4 --expiry-timeout 20
check mixed 1 mixed --clients 8 --conns 2 --objects 500 --duration 2 --watchers 0
check mixed-watch 0 mixed --clients 4 --objects 200 --duration 1 --watchers 2

if ! kill -0 "$pid" 2>/dev/null; then
  echo "FAIL: the server died; its log:"
  tail -20 "$dir/server.log"
  exit 1
fi
exit "$fail"
