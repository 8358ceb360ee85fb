// etcdpp-bench MODE [flags]: see kUsage.
#include <cstdio>
#include <cstring>
#include <string>

#include "bench.h"

namespace {

const char kUsage[] = R"(etcdpp-bench: load generator over the etcd v3 gRPC API (etcd, etcdpp, noop_server)

usage: etcdpp-bench MODE [--flag=value ...]

modes (modelled on etcd's `benchmark` tool):
  put               Put; --key-size 8 --val-size 8 --key-space-size 1 --sequential-keys --prefix ""
  range             Range; random keys of the key space, or --key K [--range-end E | --prefix-range]
                    --consistency l|s  --limit N  --preload N (write N keys first, in txns of
                    --preload-batch 100; sets --key-space-size to N)
  txn-put           Txn of --txn-ops puts (no compares); key flags as put
  watch             --watchers 1000 on --prefixes 10 over --streams 10; then --put-total 1000 puts by
                    --put-clients 4 (--put-rate R/s, 0 = unpaced), --val-size 32; reports events/s
                    (first put to last event) and put-to-event latency; missing events are errors
                    (--drain-timeout 30s, --create-timeout 120s)
  lease-keepalive   grant --leases 10000 (--ttl 60) with --clients concurrent grants (all within
                    --grant-timeout, default 3/4 of the TTL, else exit 4), then keep them alive
                    over --streams (default --clients) LeaseKeepAlive streams; reports
                    keepalives/s, keepalive round trip, grant_qps
  lease-expiry      expiry lag: a watcher on a run-unique --prefix, then --leases 1000 of --ttl 3
                    granted by --clients (--grant-timeout 60s), one key attached to each, never
                    kept alive; lag = DELETE event received - (grant acknowledged + granted TTL);
                    reports lag p50/p99/max (ms) and all_gone_s (first grant to last DELETE);
                    exit 4 if a key outlives its expiry by --expiry-timeout 60s
  mixed             Kubernetes-like: --objects 10000 under --prefix /registry/pods/ in --namespaces 10
                    (--val-size 1024, --preload true), weights --get-weight 30 --list-weight 10
                    (paginated, --page-size 500) --update-weight 60 (Range + Txn on mod_revision,
                    retried on conflict), --watchers 10 on the prefix
  probe             one line per feature: connect, kv, txn, watch, lease (=1 or =0 <why>), members,
                    status
  ready             wait until a linearizable Range succeeds; prints ready_ms (--timeout 60s)
  fdatasync         the disk's raw latency: --size 4096 bytes pwrite + fdatasync into a
                    preallocated file in --dir /tmp (--total / --duration); --spin keeps a
                    CPU busy meanwhile (VMs whose idle CPU delays the wake-up)

common flags:
  --endpoints h:p[,h:p]   (default 127.0.0.1:2379; http:// is accepted)
  --target all|leader|followers|first   which endpoints get connections (asks Status)
  --clients 1 --conns 1   clients (one request in flight each) over conns TCP connections
  --threads N             completion-queue threads (default min(conns, cores))
  --total N --duration 5s budget (default --total 10000); --rate R requests/s (0 = unpaced)
  --timeout-ms 30000      per request; --seed 1; --label TEXT (copied into JSON)
  --json                  also print one JSON line; --progress=false hides the progress line
  --max-time S            give up (exit 4, message on stderr) after S seconds in all; the lease
                          modes set a bound from their own timeouts unless given

output: one summary line
  MODE: ops=N errors=N qps=X duration=Ds latency_ms avg= p50= p90= p99= p99.9= max=
then per-op lines, extras and the commonest errors. Exit 0 ok, 1 errors,
2 usage, 3 the server does not implement the mode ("MODE: unsupported by server: ..."),
4 a deadline passed (the last stderr line says which).
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace etcdpp::bench;
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string mode = argv[1];
  Flags f(argc, argv, 2);
  if (mode == "put") return RunPut(f);
  if (mode == "range") return RunRange(f);
  if (mode == "txn-put") return RunTxnPut(f);
  if (mode == "watch") return RunWatch(f);
  if (mode == "lease-keepalive") return RunLeaseKeepalive(f);
  if (mode == "lease-expiry") return RunLeaseExpiry(f);
  if (mode == "mixed") return RunMixed(f);
  if (mode == "probe") return RunProbe(f);
  if (mode == "ready") return RunReady(f);
  if (mode == "fdatasync") return RunFdatasync(f);
  std::fprintf(stderr, "etcdpp-bench: unknown mode %s\n\n%s", mode.c_str(), kUsage);
  return 2;
}
