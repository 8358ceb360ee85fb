#!/bin/bash
# deploy/local-cluster.sh: a local 3/5/7-member etcdpp cluster on one machine
# (etcd's Procfile / goreman setup, as a script).
#
#   deploy/local-cluster.sh start [N] [BASE_PORT] [DIR]   # default 3 members, ports 2379.., ./local-cluster
#   deploy/local-cluster.sh status [DIR]
#   deploy/local-cluster.sh stop [DIR]                    # SIGTERM to the PIDs it started
#
# Member i (1..N) serves clients on 127.0.0.1:BASE_PORT+(i-1)*10 and peers on
# that port + 1; logs and data dirs live under DIR. Environment: ETCDPP (the
# binary, default build/etcdpp), EXTRA_FLAGS (added to every member).
set -eu
cmd=${1:-start}
case "$cmd" in
  start)
    n=${2:-3}; base=${3:-2379}; dir=${4:-local-cluster}
    bin=${ETCDPP:-build/etcdpp}
    [ -x "$bin" ] || { echo "no etcdpp binary at $bin (run make, or set ETCDPP)" >&2; exit 1; }
    mkdir -p "$dir"
    ic=""
    for i in $(seq 1 "$n"); do
      ic="${ic:+$ic,}m$i=http://127.0.0.1:$((base + (i - 1) * 10 + 1))"
    done
    : > "$dir/pids"
    for i in $(seq 1 "$n"); do
      c=$((base + (i - 1) * 10)); p=$((c + 1))
      # shellcheck disable=SC2086
      "$bin" --name "m$i" --data-dir "$dir/m$i.etcd" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$ic" --initial-cluster-token local-cluster --initial-cluster-state new \
        ${EXTRA_FLAGS:-} > "$dir/m$i.log" 2>&1 &
      echo "$!" >> "$dir/pids"
      eps="${eps:+$eps,}127.0.0.1:$c"
    done
    echo "$eps" > "$dir/endpoints"
    echo "started $n members; endpoints: $eps"
    echo "try: ETCDCTL_API=3 etcdctl --endpoints $eps endpoint status -w table"
    ;;
  status)
    dir=${2:-local-cluster}
    ETCDCTL_API=3 etcdctl --endpoints "$(cat "$dir/endpoints")" endpoint status -w table
    ;;
  stop)
    dir=${2:-local-cluster}
    [ -f "$dir/pids" ] || { echo "nothing started in $dir" >&2; exit 1; }
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$dir/pids"
    while read -r pid; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done < "$dir/pids"
    rm -f "$dir/pids"
    echo "stopped"
    ;;
  *) echo "usage: $0 start [N] [BASE_PORT] [DIR] | status [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
