#include "server/lease_service.h"

#include <deque>

#include "absl/synchronization/mutex.h"
#include "rpc.grpc.pb.h"
#include "server/errors.h"
#include "server/services.h"

namespace etcdpp::server {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// One keepalive stream: a request renews one lease and is answered with its
// TTL (0 when the lease is gone, as etcd answers). One read and one write in
// flight; reading pauses while too many answers wait for a slow client, so a
// client that never reads cannot grow our memory.
class KeepAliveReactor final
    : public grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                     etcdserverpb::LeaseKeepAliveResponse> {
 public:
  explicit KeepAliveReactor(EtcdServer* s) : s_(s) { StartRead(&req_); }

  void OnReadDone(bool ok) override {
    absl::MutexLock l(&mu_);
    if (!ok) {
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    etcdserverpb::LeaseKeepAliveResponse resp;
    resp.set_id(req_.id());
    auto ttl = s_->lessor()->Renew(req_.id());
    if (!ttl.ok() && ttl.status().message() == lease::kErrNotPrimary) {
      // Forwarding keepalives to the leader comes with clusters.
      finished_ = true;
      Finish(ToGrpcStatus(EtcdError(kErrNoLeader)));
      return;
    }
    resp.set_ttl(ttl.ok() ? *ttl : 0);
    s_->FillHeader(resp.mutable_header());
    out_.push_back(std::move(resp));
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
    if (out_.size() < kMaxQueued) {
      StartRead(&req_);
    } else {
      read_paused_ = true;
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    out_.pop_front();
    writing_ = false;
    if (!ok) {
      failed_ = true;
      MaybeFinishLocked();
      return;
    }
    if (!out_.empty()) {
      writing_ = true;
      StartWrite(&out_.front());
    }
    if (read_paused_ && out_.size() < kMaxQueued) {
      read_paused_ = false;
      StartRead(&req_);
    }
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  static constexpr size_t kMaxQueued = 64;

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_ || !(reads_done_ || failed_)) return;
    finished_ = true;
    Finish(grpc::Status::OK);
  }

  EtcdServer* s_;
  absl::Mutex mu_;
  etcdserverpb::LeaseKeepAliveRequest req_;
  std::deque<etcdserverpb::LeaseKeepAliveResponse> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class LeaseService final : public etcdserverpb::Lease::CallbackService {
 public:
  explicit LeaseService(EtcdServer* s) : s_(s) {}

  ServerUnaryReactor* LeaseGrant(CallbackServerContext* ctx,
                                 const etcdserverpb::LeaseGrantRequest* req,
                                 etcdserverpb::LeaseGrantResponse* resp) override {
    internalpb::InternalRequest ir;
    *ir.mutable_lease_grant() = *req;
    if (req->id() == lease::kNoLease) ir.mutable_lease_grant()->set_id(s_->NewLeaseId());
    auto* reactor = ctx->DefaultReactor();
    ProposeAndFinish(s_, reactor, std::move(ir), resp,
                     [](ApplyResult& r) { return std::move(r.lease_grant); });
    return reactor;
  }

  ServerUnaryReactor* LeaseRevoke(CallbackServerContext* ctx,
                                  const etcdserverpb::LeaseRevokeRequest* req,
                                  etcdserverpb::LeaseRevokeResponse* resp) override {
    internalpb::InternalRequest ir;
    *ir.mutable_lease_revoke() = *req;
    auto* reactor = ctx->DefaultReactor();
    ProposeAndFinish(s_, reactor, std::move(ir), resp,
                     [](ApplyResult& r) { return std::move(r.lease_revoke); });
    return reactor;
  }

  ServerUnaryReactor* LeaseTimeToLive(CallbackServerContext* ctx,
                                      const etcdserverpb::LeaseTimeToLiveRequest* req,
                                      etcdserverpb::LeaseTimeToLiveResponse* resp) override {
    auto t = s_->lessor()->GetTimeToLive(req->id(), req->keys());
    resp->set_id(req->id());
    if (!t) {
      resp->set_ttl(-1);  // etcd: a lease that is gone answers TTL -1, not an error
    } else {
      resp->set_ttl(t->ttl);
      resp->set_grantedttl(t->granted_ttl);
      for (auto& k : t->keys) resp->add_keys(std::move(k));
    }
    s_->FillHeader(resp->mutable_header());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  ServerUnaryReactor* LeaseLeases(CallbackServerContext* ctx, const etcdserverpb::LeaseLeasesRequest*,
                                  etcdserverpb::LeaseLeasesResponse* resp) override {
    for (lease::LeaseId id : s_->lessor()->Leases()) resp->add_leases()->set_id(id);
    s_->FillHeader(resp->mutable_header());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                          etcdserverpb::LeaseKeepAliveResponse>*
  LeaseKeepAlive(CallbackServerContext*) override {
    return new KeepAliveReactor(s_);
  }

 private:
  EtcdServer* s_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeLeaseService(EtcdServer* server) {
  return std::make_unique<LeaseService>(server);
}

}  // namespace etcdpp::server
