#!/bin/bash
# bench/port_share.sh: does serving gRPC and HTTP/1.1 on one client port (the
# default, as etcd 3.4) cost gRPC throughput? Runs etcdpp twice per round --
# shared port, and gRPC alone on the client port (--listen-client-http-urls
# moves HTTP elsewhere) -- with the same etcdpp-bench loads, alternating.
# usage: bench/port_share.sh [BUILD_DIR] [ROUNDS]
set -eu
BUILD=${1:-build}; ROUNDS=${2:-3}
BIN=$BUILD/etcdpp; B=$BUILD/bench/etcdpp_bench/etcdpp-bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run_one() {  # run_one shared|split
  local mode=$1 cp pp hp dir pid
  cp=$(free_port); pp=$(free_port); hp=$(free_port); dir=$(mktemp -d /tmp/portshare.XXXX)
  local extra=()
  [ "$mode" = split ] && extra=(--listen-client-http-urls "http://127.0.0.1:$hp")
  "$BIN" --data-dir "$dir/d" --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    "${extra[@]}" > "$dir/log" 2>&1 &
  pid=$!
  "$B" ready --endpoints "127.0.0.1:$cp" --timeout 30s > /dev/null
  local put range
  put=$("$B" put --endpoints "127.0.0.1:$cp" --clients 64 --conns 8 --total 1000000 --duration 5s | head -1)
  range=$("$B" range --endpoints "127.0.0.1:$cp" --clients 64 --conns 8 --consistency s --total 10000000 --duration 5s | head -1)
  kill "$pid"; wait "$pid" || true; rm -rf "$dir"
  echo "$mode put   $put"
  echo "$mode range $range"
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run_one shared; run_one split; else run_one split; run_one shared; fi
done
