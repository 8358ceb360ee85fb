#include "server/lease_service.h"

#include <deque>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "peer.grpc.pb.h"
#include "rpc.grpc.pb.h"
#include "server/errors.h"
#include "server/services.h"

namespace etcdpp::server {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

void FillTimeToLive(EtcdServer* s, const etcdserverpb::LeaseTimeToLiveRequest& req,
                    etcdserverpb::LeaseTimeToLiveResponse* resp) {
  auto t = s->lessor()->GetTimeToLive(req.id(), req.keys());
  resp->set_id(req.id());
  if (!t) {
    resp->set_ttl(-1);  // etcd: a lease that is gone answers TTL -1, not an error
  } else {
    resp->set_ttl(t->ttl);
    resp->set_grantedttl(t->granted_ttl);
    for (auto& k : t->keys) resp->add_keys(std::move(k));
  }
  s->FillHeader(resp->mutable_header());
}

// One keepalive stream: a request renews one lease and is answered with its
// TTL (0 when the lease is gone, as etcd answers). The leader renews once a
// ReadIndex round confirmed it still leads (EtcdServer::RenewLease); on a
// follower the renewal is forwarded to the leader (PeerLease.Renew on its
// peer port), whose clock alone decides expiry. One read and one write in
// flight; reading pauses while too many answers (or renewals) wait, so a
// client that never reads cannot grow our memory.
class KeepAliveReactor final
    : public grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                     etcdserverpb::LeaseKeepAliveResponse> {
 public:
  explicit KeepAliveReactor(EtcdServer* s) : s_(s) { StartRead(&req_); }

  void OnReadDone(bool ok) override {
    bool renew = false;
    const int64_t id = req_.id();
    Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (!ok || failed_ || finished_) {
        reads_done_ = true;
        return;
      }
      renew = true;
      ++renewing_;
      if (out_.size() + renewing_ < kMaxQueued) {
        StartRead(&req_);
      } else {
        read_paused_ = true;
      }
    });
    // Outside mu_: the answer may come at once, and it takes mu_. The
    // reactor lives until it came (renewing_ > 0 holds Finish back).
    if (renew) s_->RenewLease(id, [this, id](absl::StatusOr<int64_t> ttl) { OnRenewed(id, ttl); });
  }

  void OnWriteDone(bool ok) override {
    Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      out_.pop_front();
      writing_ = false;
      if (!ok) {
        failed_ = true;
        return;
      }
      if (!out_.empty()) {
        writing_ = true;
        StartWrite(&out_.front());
      }
      ResumeReadLocked();
    });
  }

  void OnDone() override { delete this; }

 private:
  static constexpr size_t kMaxQueued = 64;

  // Runs `body` under mu_, then ends the stream if it is over: never while
  // a write or a renewal is in flight (each calls back into this
  // reactor), nor before the client stopped sending or the stream failed.
  // Finish is called outside mu_ and is the last thing this reactor does
  // to itself: OnDone (which deletes it) may run on another thread at once.
  // gRPC holds OnDone back only for its own reactions, not for a forwarded
  // renewal completing on a client thread; finishing from there with mu_
  // held had gRPC delete the reactor, and its mutex, before the unlock
  // ("Mutex unlocked when destroyed", a crash seen in a robustness run).
  template <typename Body>
  void Update(Body body) {
    grpc::Status status;
    bool finish = false;
    {
      absl::MutexLock l(&mu_);
      body();
      if (!finished_ && !writing_ && renewing_ == 0 && (reads_done_ || failed_)) {
        finished_ = true;
        finish = true;
        status = finish_status_;
      }
    }
    if (finish) Finish(status);
  }

  void QueueLocked(etcdserverpb::LeaseKeepAliveResponse resp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    out_.push_back(std::move(resp));
    if (!writing_ && !finished_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }

  void ResumeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (read_paused_ && !finished_ && !failed_ && out_.size() + renewing_ < kMaxQueued) {
      read_paused_ = false;
      StartRead(&req_);
    }
  }

  void OnRenewed(int64_t id, const absl::StatusOr<int64_t>& ttl) {
    if (!ttl.ok() && ttl.status().message() == lease::kErrNotPrimary) {
      // A follower: the leader renews. The stream ends with etcd's error
      // when no leader can be asked (the client reconnects and retries).
      if (auto leader = LeaderPeerChannel(s_)) return Forward(std::move(leader), id);
      return Answer(id, EtcdError(kErrNoLeader));
    }
    Answer(id, ttl);
  }

  // One renewal is over: its TTL (0: the lease is gone), or the stream
  // ends with the error.
  void Answer(int64_t id, const absl::StatusOr<int64_t>& ttl) {
    Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      --renewing_;
      if (ttl.ok() || absl::IsNotFound(ttl.status())) {
        etcdserverpb::LeaseKeepAliveResponse resp;
        resp.set_id(id);
        resp.set_ttl(ttl.ok() ? *ttl : 0);
        s_->FillHeader(resp.mutable_header());
        QueueLocked(std::move(resp));
      } else {
        FailLocked(ttl.status());
      }
      ResumeReadLocked();
    });
  }

  void Forward(std::shared_ptr<grpc::Channel> leader, int64_t id) {
    peerpb::LeaseRenewRequest req;
    req.set_id(id);
    ForwardUnary<peerpb::PeerLease, peerpb::LeaseRenewResponse>(
        leader, std::move(req), s_->RequestTimeout(),
        [](auto* stub, auto* ctx, auto* rq, auto* rs, auto cb) {
          stub->Renew(ctx, rq, rs, std::move(cb));
        },
        [this, id](grpc::Status st, const auto&, const auto& r) {
          if (st.ok()) return Answer(id, r.ttl());
          if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
            return Answer(id, absl::NotFoundError(kErrLeaseNotFound));
          }
          Answer(id, EtcdError(st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                                   ? kErrTimeout
                                   : kErrNoLeader));
        });
  }

  void FailLocked(absl::Status st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!failed_) finish_status_ = ToGrpcStatus(st);
    failed_ = true;
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
  size_t renewing_ ABSL_GUARDED_BY(mu_) = 0;  // renewals not answered yet
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
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
    auto* reactor = ctx->DefaultReactor();
    // Only the leader knows how long a lease has left: a follower asks it
    // (and answers from what it knows if it cannot).
    if (auto ch = s_->is_leader() ? nullptr : LeaderPeerChannel(s_)) {
      ForwardUnary<peerpb::PeerLease, etcdserverpb::LeaseTimeToLiveResponse>(
          ch, *req, s_->RequestTimeout(),
          [](auto* stub, auto* ctx, auto* rq, auto* rs, auto cb) {
            stub->TimeToLive(ctx, rq, rs, std::move(cb));
          },
          [this, reactor, resp](grpc::Status st, const auto& rq, auto& r) {
            if (st.ok()) {
              *resp = std::move(r);
              s_->FillHeader(resp->mutable_header());
            } else {
              FillTimeToLive(s_, rq, resp);
            }
            reactor->Finish(grpc::Status::OK);
          });
      return reactor;
    }
    FillTimeToLive(s_, *req, resp);
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

// The leader's side of forwarded lease requests (on the peer port).
class PeerLeaseService final : public peerpb::PeerLease::CallbackService {
 public:
  explicit PeerLeaseService(EtcdServer* s) : s_(s) {}

  ServerUnaryReactor* Renew(CallbackServerContext* ctx, const peerpb::LeaseRenewRequest* req,
                            peerpb::LeaseRenewResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    s_->RenewLease(req->id(), [reactor, resp](absl::StatusOr<int64_t> ttl) {
      if (ttl.ok()) {
        resp->set_ttl(*ttl);
        reactor->Finish(grpc::Status::OK);
      } else if (ttl.status().message() == lease::kErrNotPrimary) {
        reactor->Finish(ToGrpcStatus(EtcdError(kErrNotLeader)));
      } else if (absl::IsNotFound(ttl.status())) {
        reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, kErrLeaseNotFound));
      } else {
        reactor->Finish(ToGrpcStatus(ttl.status()));
      }
    });
    return reactor;
  }

  ServerUnaryReactor* TimeToLive(CallbackServerContext* ctx,
                                 const etcdserverpb::LeaseTimeToLiveRequest* req,
                                 etcdserverpb::LeaseTimeToLiveResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!s_->is_leader()) {
      reactor->Finish(ToGrpcStatus(EtcdError(kErrNotLeader)));
      return reactor;
    }
    FillTimeToLive(s_, *req, resp);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  EtcdServer* s_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeLeaseService(EtcdServer* server) {
  return std::make_unique<LeaseService>(server);
}

std::unique_ptr<grpc::Service> MakePeerLeaseService(EtcdServer* server) {
  return std::make_unique<PeerLeaseService>(server);
}

}  // namespace etcdpp::server
