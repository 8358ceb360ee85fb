// lease-expiry: how late do leases expire? A watcher on a run-unique prefix
// is created first; then N leases of TTL T are granted by --clients
// concurrent clients, each with one key attached (Put with the lease right
// after the grant's acknowledgement), and never kept alive. For each key,
//   lag = (its DELETE event received) - (its grant acknowledged + granted TTL)
// i.e. what a client that stops renewing sees beyond the TTL it was given
// (the server's expiry check period, its revoke rate limit, the Raft round
// of the revoke, the watch delivery). Figures: lag p50/p99/max, and how long
// from the first grant until every key was gone. Every wait has a deadline;
// a key that outlives its expiry by --expiry-timeout ends the run with exit 4.
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "bench.h"

namespace etcdpp::bench {
namespace {


// Per key: written by the queue threads, read by the main thread.
struct KeyState {
  std::atomic<int64_t> grant_ack_ns{0};  // when the grant was acknowledged
  std::atomic<int64_t> ttl_s{0};         // TTL the server granted
  std::atomic<bool> attached{false};     // the Put with the lease succeeded
  std::atomic<int64_t> delete_ns{0};     // when its DELETE event arrived
};

std::string KeyOf(const std::string& prefix, int64_t i) { return prefix + std::to_string(i); }

// Grant (TTL ttl), then Put key i with that lease: one ticket = one key.
class ExpiryClient final : public Client {
 public:
  ExpiryClient(Engine* e, int i, int op_grant, int op_put, int64_t ttl, const std::string* prefix,
               int val_size, KeyState* keys)
      : Client(e, i), op_grant_(op_grant), op_put_(op_put), ttl_(ttl), prefix_(prefix),
        val_size_(val_size), keys_(keys), stub_(etcdserverpb::Lease::NewStub(e->channel(i))) {}

  void Issue() override {
    int64_t slot = ticket_;
    GrantLease(cq_, stub_.get(), ttl_, engine_->options().timeout_ms, [this, slot](auto& c) {
      if (!c.status.ok() || !c.resp.error().empty()) {
        grpc::Status st = c.status.ok() ? grpc::Status(grpc::StatusCode::UNKNOWN, c.resp.error())
                                        : c.status;
        engine_->Complete(this, op_grant_, c.start_ns, st);
        return;
      }
      KeyState& k = keys_[slot];
      k.ttl_s.store(c.resp.ttl());
      k.grant_ack_ns.store(NowNs());
      engine_->Record(stats_, op_grant_, c.start_ns, c.status);
      etcdserverpb::PutRequest put;
      put.set_key(KeyOf(*prefix_, slot));
      // Zero bytes: never mistaken for a put-to-event stamp.
      put.set_value(std::string(static_cast<size_t>(val_size_), '\0'));
      put.set_lease(c.resp.id());
      CallPut(engine_, index_, cq_, std::move(put), [this, slot](auto& p) {
        if (p.status.ok()) keys_[slot].attached.store(true);
        engine_->Complete(this, op_put_, p.start_ns, p.status);
      });
    });
  }

 private:
  int op_grant_;
  int op_put_;
  int64_t ttl_;
  const std::string* prefix_;
  int val_size_;
  KeyState* keys_;
  std::unique_ptr<etcdserverpb::Lease::Stub> stub_;
};

bool WaitUntil(const std::function<bool()>& done, int64_t deadline_ns) {
  while (!done()) {
    if (NowNs() > deadline_ns) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

}  // namespace

int RunLeaseExpiry(const Flags& f) {
  CommonOptions o = ParseCommon(f, "lease-expiry");
  int64_t leases = f.Int("leases", 1000);
  int64_t ttl = f.Int("ttl", 3);
  std::string base = f.Str("prefix", "/bench-lease-expiry/");
  int val_size = static_cast<int>(f.Int("val-size", 8));
  double grant_timeout = f.Double("grant-timeout", 60);
  double expiry_timeout = f.Double("expiry-timeout", 60);
  double create_timeout = f.Double("create-timeout", 30);
  f.CheckAllUsed();
  if (leases < 1 || ttl < 1 || val_size < 0 || grant_timeout <= 0 || expiry_timeout <= 0 ||
      create_timeout <= 0) {
    std::fprintf(stderr,
                 "etcdpp-bench: --leases, --ttl, --grant-timeout, --expiry-timeout, "
                 "--create-timeout must be > 0\n");
    return 2;
  }
  if (o.total != 0 || o.duration_s != 0 || o.rate != 0) {
    std::fprintf(stderr, "etcdpp-bench: lease-expiry takes --leases, not --total/--duration/--rate\n");
    return 2;
  }
  if (o.max_time_s <= 0) {
    // Connect + watch creation + grants (+ one request timeout) + TTL (a
    // server may grant more than asked: allowed for up to 10x) + expiry
    // timeout, plus slack for closing.
    StartWatchdog("lease-expiry",
                  10 + create_timeout + grant_timeout + static_cast<double>(o.timeout_ms) / 1000 +
                      10.0 * static_cast<double>(ttl) + expiry_timeout + 30,
                  "sum of the phase timeouts");
  }
  Engine e(o);
  int op_grant = e.AddOp("grant");
  int op_put = e.AddOp("put");
  int op_event = e.AddOp("watch");  // only stream errors are recorded here
  if (!StartEngine(&e)) return 1;

  Result r;
  r.mode = "lease-expiry";
  r.main_op = "expiry-lag";
  // A run-unique prefix, so that keys of an earlier run never match.
  std::string prefix = base + "r" + std::to_string(getpid()) + "-" +
                       std::to_string(NowNs() % 1000000) + "/k";
  std::unique_ptr<KeyState[]> keys(new KeyState[static_cast<size_t>(leases)]);
  std::atomic<int64_t> deleted{0}, foreign{0}, duplicate{0};

  // The watcher, before anything is granted.
  WatchStream ws(&e, 0, {{prefix, PrefixEnd(prefix)}}, op_event);
  ws.SetEventHook([&](const mvccpb::Event& ev) {
    if (ev.type() != mvccpb::Event::DELETE) return;
    int64_t now = NowNs();
    const std::string& k = ev.kv().key();
    char* end = nullptr;
    long long i = k.size() > prefix.size() ? std::strtoll(k.c_str() + prefix.size(), &end, 10) : -1;
    if (k.compare(0, prefix.size(), prefix) != 0 || i < 0 || i >= leases || end == nullptr ||
        *end != '\0') {
      foreign.fetch_add(1);
      return;
    }
    int64_t zero = 0;
    if (keys[static_cast<size_t>(i)].delete_ns.compare_exchange_strong(zero, now)) {
      deleted.fetch_add(1);
    } else {
      duplicate.fetch_add(1);
    }
  });
  auto stop_watch = [&] {
    ws.Cancel();
    WaitUntil([&] { return ws.finished(); }, NowNs() + 10'000'000'000);
  };
  int64_t t0 = NowNs();
  ws.Start();
  bool created = WaitUntil([&] { return ws.created() >= 1 || ws.finished(); },
                           t0 + static_cast<int64_t>(create_timeout * 1e9));
  r.extra["watch_create_ms"] = Ms(NowNs() - t0);
  if (ws.finished() && !ws.unsupported().empty()) e.MarkUnsupported(ws.unsupported());
  if (!e.unsupported().empty()) {
    stop_watch();
    return FinishRun(&e, &r);
  }
  if (!created || ws.created() < 1) {
    stop_watch();
    e.Shutdown();
    std::fprintf(stderr, "etcdpp-bench: lease-expiry: the watcher was not created within %g s%s\n",
                 create_timeout, ws.finished() ? " (the stream closed)" : "");
    return kExitTimeout;
  }

  // Grants + attached keys, --clients at a time, within --grant-timeout.
  e.SetBudget(leases, grant_timeout, 0);
  int64_t grant_start = NowNs();
  double grant_s = e.RunClients(
      o.clients,
      [&](int i) {
        return std::make_unique<ExpiryClient>(&e, i, op_grant, op_put, ttl, &prefix, val_size,
                                              keys.get());
      },
      "lease-grant+put");
  int64_t attached = 0, ttl_min = std::numeric_limits<int64_t>::max(), ttl_max = 0;
  int64_t first_expiry = std::numeric_limits<int64_t>::max(), last_expiry = 0;
  for (int64_t i = 0; i < leases; ++i) {
    const KeyState& k = keys[static_cast<size_t>(i)];
    if (!k.attached.load()) continue;
    ++attached;
    int64_t t = k.ttl_s.load();
    ttl_min = std::min(ttl_min, t);
    ttl_max = std::max(ttl_max, t);
    int64_t at = k.grant_ack_ns.load() + t * 1'000'000'000;
    first_expiry = std::min(first_expiry, at);
    last_expiry = std::max(last_expiry, at);
  }
  r.extra["leases"] = static_cast<double>(leases);
  r.extra["attached"] = static_cast<double>(attached);
  r.extra["ttl_requested"] = static_cast<double>(ttl);
  r.extra["ttl_granted_min"] = attached ? static_cast<double>(ttl_min) : 0;
  r.extra["ttl_granted_max"] = static_cast<double>(ttl_max);
  r.extra["grant_s"] = grant_s;
  r.extra["grant_qps"] = grant_s > 0 ? static_cast<double>(attached) / grant_s : 0;
  if (!e.unsupported().empty()) {
    stop_watch();
    return FinishRun(&e, &r);
  }
  if (attached < leases && e.TotalErrors() == 0) {
    stop_watch();
    e.Shutdown();
    std::fprintf(stderr,
                 "etcdpp-bench: lease-expiry: only %lld of %lld leases granted (with their key) "
                 "within --grant-timeout %g s\n",
                 static_cast<long long>(attached), static_cast<long long>(leases), grant_timeout);
    return kExitTimeout;
  }
  if (ttl_max > 10 * ttl) {
    stop_watch();
    e.Shutdown();
    std::fprintf(stderr, "etcdpp-bench: lease-expiry: the server granted TTL %lld s for %lld s\n",
                 static_cast<long long>(ttl_max), static_cast<long long>(ttl));
    return 1;
  }

  // Wait for every attached key's DELETE, at most --expiry-timeout past the
  // last expected expiry. A key deleted without having been attached (its
  // Put failed after the grant) cannot happen: it was never written.
  int64_t deadline = (attached ? last_expiry : NowNs()) + static_cast<int64_t>(expiry_timeout * 1e9);
  e.StartProgress("lease-expiry-wait", [&] { return deleted.load(); });
  bool all = WaitUntil(
      [&] { return deleted.load() >= attached || ws.finished() || !e.unsupported().empty(); },
      deadline);
  e.StopProgress();
  bool stream_broke = ws.finished();
  stop_watch();

  // Are the keys gone from the store too? (count only, bounded.)
  int64_t keys_left = -1;
  {
    auto stub = etcdserverpb::KV::NewStub(e.channel(0));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    etcdserverpb::RangeRequest req;
    req.set_key(prefix);
    req.set_range_end(PrefixEnd(prefix));
    req.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    if (stub->Range(&ctx, req, &resp).ok()) keys_left = resp.count();
  }
  e.Shutdown();
  e.Collect(&r);

  Histogram lag;
  int64_t lag_min = std::numeric_limits<int64_t>::max(), last_delete = 0, early = 0;
  for (int64_t i = 0; i < leases; ++i) {
    const KeyState& k = keys[static_cast<size_t>(i)];
    int64_t d = k.delete_ns.load();
    if (!k.attached.load() || d == 0) continue;
    int64_t l = d - (k.grant_ack_ns.load() + k.ttl_s.load() * 1'000'000'000);
    lag.Record(l);  // negative lags count as 0 in the histogram; see lag_min_ms
    lag_min = std::min(lag_min, l);
    if (l < -1'000'000'000) ++early;  // gone more than 1 s before its TTL ran out
    last_delete = std::max(last_delete, d);
  }
  int64_t got = lag.count();
  r.hist["expiry-lag"] = lag;
  r.ops = got;
  r.duration_s = got ? static_cast<double>(last_delete - grant_start) / 1e9 : 0;
  r.extra["deleted"] = static_cast<double>(got);
  r.extra["missing"] = static_cast<double>(attached - got);
  r.extra["all_gone_s"] = got == attached && got > 0 ? r.duration_s : -1;
  r.extra["last_gone_after_last_expiry_ms"] = got ? Ms(last_delete - last_expiry) : -1;
  r.extra["first_expiry_after_grant_start_ms"] = attached ? Ms(first_expiry - grant_start) : -1;
  r.extra["lag_min_ms"] = got ? Ms(lag_min) : 0;
  r.extra["early_deletes"] = static_cast<double>(early);
  r.extra["keys_left"] = static_cast<double>(keys_left);
  r.extra["foreign_events"] = static_cast<double>(foreign.load());
  r.extra["duplicate_deletes"] = static_cast<double>(duplicate.load());
  if (early > 0) {
    r.errors += early;
    r.error_texts["key deleted more than 1 s before its lease's TTL ran out"] += early;
  }
  if (!all || got < attached) {
    r.errors += attached - got;
    if (stream_broke && e.unsupported().empty()) {
      r.error_texts["watch stream closed before every key was deleted"] += 1;
    }
  }
  int rc = Report(r, o);
  if (!e.unsupported().empty()) return rc;
  if (!all && !stream_broke) {
    std::fprintf(stderr,
                 "etcdpp-bench: lease-expiry: %lld of %lld keys still there %g s after the last "
                 "lease's TTL ran out (--expiry-timeout)\n",
                 static_cast<long long>(attached - got), static_cast<long long>(attached),
                 expiry_timeout);
    return kExitTimeout;
  }
  return rc;
}

}  // namespace etcdpp::bench
