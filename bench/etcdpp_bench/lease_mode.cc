// lease-keepalive: grant N leases, then keep them alive over S LeaseKeepAlive
// streams (one keepalive in flight per stream, cycling over its leases);
// figures are keepalives/s and keepalive round-trip latency.
#include <algorithm>
#include <cstdio>

#include "bench.h"

namespace etcdpp::bench {
namespace {

using etcdserverpb::LeaseKeepAliveRequest;
using etcdserverpb::LeaseKeepAliveResponse;

class GrantClient final : public Client {
 public:
  GrantClient(Engine* e, int i, int op, int64_t ttl, std::vector<int64_t>* ids)
      : Client(e, i), op_(op), ttl_(ttl), ids_(ids), stub_(etcdserverpb::Lease::NewStub(e->channel(i))) {}

  void Issue() override {
    int64_t slot = ticket_;
    GrantLease(cq_, stub_.get(), ttl_, engine_->options().timeout_ms, [this, slot](auto& c) {
      if (c.status.ok()) (*ids_)[static_cast<size_t>(slot)] = c.resp.id();
      engine_->Complete(this, op_, c.start_ns, c.status);
    });
  }

 private:
  int op_;
  int64_t ttl_;
  std::vector<int64_t>* ids_;
  std::unique_ptr<etcdserverpb::Lease::Stub> stub_;
};

// One LeaseKeepAlive stream; keepalive k of this client renews lease
// leases[(index + k * n_clients) % leases.size()].
class KeepAliveClient final : public Client {
 public:
  KeepAliveClient(Engine* e, int i, int op, int n_clients, const std::vector<int64_t>* ids)
      : Client(e, i), op_(op), n_clients_(n_clients), ids_(ids),
        stub_(etcdserverpb::Lease::NewStub(e->channel(i))) {
    start_tag_.fn = [this](bool ok) {
      if (!ok) return Broken();
      Send();
    };
    write_tag_.fn = [this](bool ok) {
      if (!ok) return Broken();
      rpc_->Read(&resp_, &read_tag_);
    };
    read_tag_.fn = [this](bool ok) {
      if (!ok) return Broken();
      grpc::Status st = grpc::Status::OK;
      if (resp_.ttl() <= 0) st = grpc::Status(grpc::StatusCode::NOT_FOUND, "lease not found (ttl 0)");
      engine_->Complete(this, op_, start_ns_, st);
    };
    finish_tag_.fn = [this](bool) { finished_.store(true); };
  }

  void Issue() override {
    if (!rpc_) {
      rpc_ = stub_->PrepareAsyncLeaseKeepAlive(&ctx_, cq_);
      rpc_->StartCall(&start_tag_);
      return;
    }
    Send();
  }

  // After the run: close the stream (from any thread, no op in flight).
  void Close() {
    if (!rpc_ || finish_called_) {
      finished_.store(true);
      return;
    }
    finish_called_ = true;
    ctx_.TryCancel();
    rpc_->Finish(&status_, &finish_tag_);
  }
  bool finished() const { return finished_.load(); }

 private:
  void Send() {
    size_t n = ids_->size();
    req_.set_id((*ids_)[static_cast<size_t>(index_ + sent_ * n_clients_) % n]);
    ++sent_;
    start_ns_ = NowNs();
    rpc_->Write(req_, &write_tag_);
  }

  // The stream failed: learn why, record it, and retire this client.
  void Broken() {
    finish_called_ = true;
    finish_tag_.fn = [this](bool) {
      if (IsUnimplemented(status_)) {
        engine_->MarkUnsupported("LeaseKeepAlive: UNIMPLEMENTED" +
                                 (status_.error_message().empty() ? "" : ": " + status_.error_message()));
      } else {
        engine_->Record(stats_, op_, start_ns_,
                        status_.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream closed")
                                     : status_);
      }
      finished_.store(true);
      engine_->ClientFinished();
    };
    rpc_->Finish(&status_, &finish_tag_);
  }

  int op_;
  int n_clients_;
  const std::vector<int64_t>* ids_;
  std::unique_ptr<etcdserverpb::Lease::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<LeaseKeepAliveRequest, LeaseKeepAliveResponse>> rpc_;
  LeaseKeepAliveRequest req_;
  LeaseKeepAliveResponse resp_;
  grpc::Status status_;
  FnTag start_tag_, write_tag_, read_tag_, finish_tag_;
  int64_t sent_ = 0;
  int64_t start_ns_ = 0;
  bool finish_called_ = false;
  std::atomic<bool> finished_{false};
};

}  // namespace

int RunLeaseKeepalive(const Flags& f) {
  CommonOptions o = ParseCommon(f, "lease-keepalive");
  int64_t leases = f.Int("leases", 10000);
  int64_t ttl = f.Int("ttl", 60);
  int streams = static_cast<int>(f.Int("streams", o.clients));
  // The grants must all be in before the first of them could expire.
  double grant_timeout = f.Double("grant-timeout", std::max(1.0, 0.75 * static_cast<double>(ttl)));
  f.CheckAllUsed();
  if (o.total == 0 && o.duration_s == 0) o.total = 10000;
  if (leases < 1 || streams < 1 || grant_timeout <= 0) {
    std::fprintf(stderr, "etcdpp-bench: --leases, --streams and --grant-timeout must be > 0\n");
    return 2;
  }
  if (o.max_time_s <= 0) {
    // Grants, then the keepalive phase (by duration; by count, a generous
    // per-keepalive allowance), then closing the streams, with slack.
    double ka_s = o.duration_s > 0 ? o.duration_s : 1.0 + static_cast<double>(o.total) / 100.0;
    StartWatchdog("lease-keepalive",
                  grant_timeout + static_cast<double>(o.timeout_ms) / 1000 + ka_s + 60,
                  "grant timeout + keepalive phase + 60 s");
  }
  Engine e(o);
  int op_grant = e.AddOp("grant");
  int op_ka = e.AddOp("keepalive");
  if (!StartEngine(&e)) return 1;
  Result r;
  r.mode = "lease-keepalive";
  r.main_op = "keepalive";
  std::vector<int64_t> ids(static_cast<size_t>(leases), 0);
  // Grants: --clients concurrent LeaseGrant calls over --conns connections,
  // until all --leases are granted or --grant-timeout passes (each call
  // also bounded by --timeout-ms).
  e.SetBudget(leases, grant_timeout, 0);
  double grant_s = e.RunClients(
      o.clients, [&](int i) { return std::make_unique<GrantClient>(&e, i, op_grant, ttl, &ids); },
      "lease-grant");
  int64_t granted = e.TotalOps();
  r.extra["grant_s"] = grant_s;
  r.extra["leases"] = static_cast<double>(leases);
  r.extra["granted"] = static_cast<double>(granted);
  r.extra["grant_qps"] = grant_s > 0 ? static_cast<double>(granted) / grant_s : 0;
  if (!e.unsupported().empty() || e.TotalErrors() > 0) return FinishRun(&e, &r);
  if (granted < leases) {
    e.Shutdown();
    std::fprintf(stderr,
                 "etcdpp-bench: lease-keepalive: only %lld of %lld leases granted within "
                 "--grant-timeout %g s (%.0f grants/s)\n",
                 static_cast<long long>(granted), static_cast<long long>(leases), grant_timeout,
                 r.extra["grant_qps"]);
    return kExitTimeout;
  }
  if (grant_s >= static_cast<double>(ttl)) {
    std::fprintf(stderr,
                 "etcdpp-bench: lease-keepalive: warning: granting took %.1f s, longer than the "
                 "TTL (%lld s): the first leases may have expired\n",
                 grant_s, static_cast<long long>(ttl));
  }

  std::vector<KeepAliveClient*> kas;
  e.SetBudget(o.total, o.duration_s, o.rate);
  r.duration_s = e.RunClients(
      streams,
      [&](int i) {
        auto c = std::make_unique<KeepAliveClient>(&e, i, op_ka, streams, &ids);
        kas.push_back(c.get());
        return c;
      },
      "lease-keepalive");
  for (auto* k : kas) k->Close();
  int64_t until = NowNs() + 10'000'000'000;
  for (auto* k : kas) {
    while (!k->finished() && NowNs() < until) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  e.Shutdown();
  e.Collect(&r);
  return Report(r, o);
}

}  // namespace etcdpp::bench
