#include "server/services.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rpc.grpc.pb.h"
#include "server/errors.h"
#include "server/validate.h"
#include "server/lease_service.h"
#include "server/watch_service.h"

namespace etcdpp::server {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// etcd's quota check: a request that adds data fails with "database space
// exceeded" once the backend is over --quota-backend-bytes.
int64_t PutCost(const etcdserverpb::PutRequest& p) {
  return static_cast<int64_t>(p.key().size() + p.value().size()) + 64;
}

int64_t TxnCost(const etcdserverpb::TxnRequest& t) {
  int64_t cost = 0;
  for (const auto* ops : {&t.success(), &t.failure()}) {
    int64_t branch = 0;
    for (const auto& op : *ops) {
      if (op.has_request_put()) branch += PutCost(op.request_put());
      if (op.has_request_txn()) branch += TxnCost(op.request_txn());
    }
    cost = std::max(cost, branch);
  }
  return cost;
}

class KvService final : public etcdserverpb::KV::CallbackService {
 public:
  explicit KvService(EtcdServer* s) : s_(s) {}

  ServerUnaryReactor* Range(CallbackServerContext* ctx, const etcdserverpb::RangeRequest* req,
                            etcdserverpb::RangeResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (grpc::Status big = CheckMessageSize(*req); !big.ok()) {
      reactor->Finish(big);
      return reactor;
    }
    absl::Status st = CheckRangeRequest(*req);
    if (st.ok() && !req->serializable()) {
      if (RefuseOnLearner(s_, reactor)) return reactor;
      if (s_->NeedsReadBarrier()) {
        // Linearizable: read once this member applied all that was
        // committed when the read arrived (a ReadIndex round).
        s_->ReadBarrier([this, reactor, req, resp](absl::Status st) {
          if (st.ok()) st = s_->Range(*req, resp);
          if (st.ok()) s_->FillHeader(resp->mutable_header());
          reactor->Finish(ToGrpcStatus(st));
        });
        return reactor;
      }
    }
    if (st.ok()) st = s_->Range(*req, resp);
    if (st.ok()) s_->FillHeader(resp->mutable_header());
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }

  ServerUnaryReactor* Put(CallbackServerContext* ctx, const etcdserverpb::PutRequest* req,
                          etcdserverpb::PutResponse* resp) override {
    internalpb::InternalRequest ir;
    *ir.mutable_put() = *req;
    return Write(
        ctx, *req, resp, std::move(ir),
        [&] {
          absl::Status st = CheckPutRequest(*req);
          return st.ok() ? CheckQuota(PutCost(*req)) : st;
        },
        [](ApplyResult& r) { return std::move(*r.op.mutable_response_put()); });
  }

  ServerUnaryReactor* DeleteRange(CallbackServerContext* ctx,
                                  const etcdserverpb::DeleteRangeRequest* req,
                                  etcdserverpb::DeleteRangeResponse* resp) override {
    internalpb::InternalRequest ir;
    *ir.mutable_delete_range() = *req;
    return Write(
        ctx, *req, resp, std::move(ir), [&] { return CheckDeleteRequest(*req); },
        [](ApplyResult& r) { return std::move(*r.op.mutable_response_delete_range()); });
  }

  ServerUnaryReactor* Txn(CallbackServerContext* ctx, const etcdserverpb::TxnRequest* req,
                          etcdserverpb::TxnResponse* resp) override {
    internalpb::InternalRequest ir;
    *ir.mutable_txn() = *req;
    return Write(
        ctx, *req, resp, std::move(ir),
        [&] {
          absl::Status st = CheckTxnRequest(*req, s_->config().max_txn_ops);
          int64_t cost = st.ok() ? TxnCost(*req) : 0;
          return cost > 0 ? CheckQuota(cost) : st;
        },
        [](ApplyResult& r) { return std::move(*r.op.mutable_response_txn()); });
  }

  ServerUnaryReactor* Compact(CallbackServerContext* ctx,
                              const etcdserverpb::CompactionRequest* req,
                              etcdserverpb::CompactionResponse* resp) override {
    internalpb::InternalRequest ir;
    *ir.mutable_compaction() = *req;
    return Write(
        ctx, *req, resp, std::move(ir), [] { return absl::OkStatus(); },
        [](ApplyResult& r) { return std::move(r.compaction); });
  }

 private:
  // The shape of every write: etcd's size limit, then `check` (run only if
  // the size is fine: the quota check may raise an alarm), then Raft; the
  // call finishes with the response `take` moves out of the apply result.
  template <typename Req, typename Resp, typename Check, typename Take>
  ServerUnaryReactor* Write(CallbackServerContext* ctx, const Req& req, Resp* resp,
                            internalpb::InternalRequest ir, Check check, Take take) {
    auto* reactor = ctx->DefaultReactor();
    if (grpc::Status big = CheckMessageSize(req); !big.ok()) {
      reactor->Finish(big);
      return reactor;
    }
    if (RefuseOnLearner(s_, reactor)) return reactor;
    if (absl::Status st = check(); !st.ok()) {
      reactor->Finish(ToGrpcStatus(st));
      return reactor;
    }
    ProposeAndFinish(s_, reactor, std::move(ir), resp, take);
    return reactor;
  }

  // gRPC's own receive limit is set well above etcd's (max-request-bytes +
  // 512 KiB) so that this check answers first, with grpc-go's text, which
  // clients and scripts see from etcd.
  grpc::Status CheckMessageSize(const google::protobuf::Message& m) {
    int64_t max = s_->config().max_request_bytes + kGrpcOverheadBytes;
    int64_t n = static_cast<int64_t>(m.ByteSizeLong());
    if (n <= max) return grpc::Status::OK;
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("grpc: received message larger than max (", n, " vs. ", max, ")"));
  }

  // Over quota: raise NOSPACE (etcd's quota check) and refuse. While the
  // alarm is up, every write that adds data is refused (etcd's capped
  // applier), even once space is back, until an operator disarms it.
  absl::Status CheckQuota(int64_t cost) {
    if (s_->DbSizeBytes() + cost > s_->config().QuotaBytes()) {
      s_->RaiseNoSpace();
      return EtcdError(kErrNoSpace);
    }
    if (s_->NoSpaceAlarmed()) return EtcdError(kErrNoSpace);
    return absl::OkStatus();
  }

  EtcdServer* s_;
};

class MaintenanceService final : public etcdserverpb::Maintenance::CallbackService {
 public:
  explicit MaintenanceService(EtcdServer* s) : s_(s) {}

  ServerUnaryReactor* Status(CallbackServerContext* ctx, const etcdserverpb::StatusRequest*,
                             etcdserverpb::StatusResponse* resp) override {
    s_->FillStatus(resp);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  ServerUnaryReactor* Alarm(CallbackServerContext* ctx, const etcdserverpb::AlarmRequest* req,
                            etcdserverpb::AlarmResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    // etcd answers alarm requests without a header.
    if (req->action() == etcdserverpb::AlarmRequest::GET) {
      for (const auto& m : s_->Alarms()) *resp->add_alarms() = m;
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    internalpb::InternalRequest ir;
    *ir.mutable_alarm() = *req;
    s_->Propose(std::move(ir), [this, reactor, resp](ApplyResult r) {
      if (r.status.ok()) *resp = std::move(r.alarm);
      reactor->Finish(ToGrpcStatus(r.status));
    });
    return reactor;
  }

  ServerUnaryReactor* HashKV(CallbackServerContext* ctx, const etcdserverpb::HashKVRequest* req,
                             etcdserverpb::HashKVResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    auto h = s_->HashKV(req->revision());
    if (h.ok()) {
      resp->mutable_header()->set_revision(h->revision);
      resp->set_hash(h->hash);
      resp->set_compact_revision(h->compact_revision);
      s_->FillHeader(resp->mutable_header());
    }
    reactor->Finish(ToGrpcStatus(h.status()));
    return reactor;
  }

  ServerUnaryReactor* MoveLeader(CallbackServerContext* ctx,
                                 const etcdserverpb::MoveLeaderRequest* req,
                                 etcdserverpb::MoveLeaderResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (RefuseOnLearner(s_, reactor)) return reactor;
    s_->MoveLeader(req->targetid(), [this, reactor, resp](absl::Status st) {
      if (st.ok()) s_->FillHeader(resp->mutable_header());
      reactor->Finish(ToGrpcStatus(st));
    });
    return reactor;
  }

  // Space comes back online as RocksDB compacts; there is nothing to stop
  // the world for, so defragment succeeds at once (etcd's answer, which
  // carries no header).
  ServerUnaryReactor* Defragment(CallbackServerContext* ctx, const etcdserverpb::DefragmentRequest*,
                                 etcdserverpb::DefragmentResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  EtcdServer* s_;
};

void FillMember(const MemberInfo& m, etcdserverpb::Member* pm) {
  pm->set_id(m.id);
  pm->set_name(m.name);
  for (const auto& u : m.peer_urls) pm->add_peerurls(u);
  for (const auto& u : m.client_urls) pm->add_clienturls(u);
  pm->set_islearner(m.is_learner);
}

void FillMember(const internalpb::Member& m, etcdserverpb::Member* pm) {
  pm->set_id(m.id());
  pm->set_name(m.name());
  for (const auto& u : m.peer_urls()) pm->add_peerurls(u);
  for (const auto& u : m.client_urls()) pm->add_clienturls(u);
  pm->set_islearner(m.is_learner());
}

template <typename Resp>
void FillMembers(EtcdServer* s, Resp* resp) {
  for (const MemberInfo& m : s->MemberList()) FillMember(m, resp->add_members());
}

class ClusterService final : public etcdserverpb::Cluster::CallbackService {
 public:
  explicit ClusterService(EtcdServer* s) : s_(s) {}

  // Finishes a membership change: the members after it, or the error.
  template <typename Resp>
  EtcdServer::MemberDone FinishWithMembers(grpc::ServerUnaryReactor* reactor, Resp* resp) {
    return [this, reactor, resp](absl::Status st, internalpb::Member) {
      if (st.ok()) {
        FillMembers(s_, resp);
        s_->FillHeader(resp->mutable_header(), /*with_revision=*/false);
      }
      reactor->Finish(ToGrpcStatus(st));
    };
  }

  ServerUnaryReactor* MemberList(CallbackServerContext* ctx, const etcdserverpb::MemberListRequest*,
                                 etcdserverpb::MemberListResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (RefuseOnLearner(s_, reactor)) return reactor;
    FillMembers(s_, resp);
    s_->FillHeader(resp->mutable_header(), /*with_revision=*/false);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  ServerUnaryReactor* MemberAdd(CallbackServerContext* ctx, const etcdserverpb::MemberAddRequest* req,
                                etcdserverpb::MemberAddResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (RefuseOnLearner(s_, reactor)) return reactor;
    std::vector<std::string> urls(req->peerurls().begin(), req->peerurls().end());
    s_->AddMember(urls, req->islearner(), [this, reactor, resp](absl::Status st, internalpb::Member m) {
      if (st.ok()) {
        FillMember(m, resp->mutable_member());
        FillMembers(s_, resp);
        s_->FillHeader(resp->mutable_header(), /*with_revision=*/false);
      }
      reactor->Finish(ToGrpcStatus(st));
    });
    return reactor;
  }

  ServerUnaryReactor* MemberRemove(CallbackServerContext* ctx,
                                   const etcdserverpb::MemberRemoveRequest* req,
                                   etcdserverpb::MemberRemoveResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (RefuseOnLearner(s_, reactor)) return reactor;
    s_->RemoveMember(req->id(), FinishWithMembers(reactor, resp));
    return reactor;
  }

  ServerUnaryReactor* MemberUpdate(CallbackServerContext* ctx,
                                   const etcdserverpb::MemberUpdateRequest* req,
                                   etcdserverpb::MemberUpdateResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (RefuseOnLearner(s_, reactor)) return reactor;
    std::vector<std::string> urls(req->peerurls().begin(), req->peerurls().end());
    s_->UpdateMember(req->id(), urls, FinishWithMembers(reactor, resp));
    return reactor;
  }

  ServerUnaryReactor* MemberPromote(CallbackServerContext* ctx,
                                    const etcdserverpb::MemberPromoteRequest* req,
                                    etcdserverpb::MemberPromoteResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (RefuseOnLearner(s_, reactor)) return reactor;
    // Only the leader knows how far the learner got: a follower asks it.
    if (!s_->is_leader()) {
      auto ch = LeaderChannel(s_);
      if (!ch) {
        reactor->Finish(ToGrpcStatus(EtcdError(kErrNoLeader)));
        return reactor;
      }
      ForwardUnary<etcdserverpb::Cluster, etcdserverpb::MemberPromoteResponse>(
          ch, *req, s_->RequestTimeout(),
          [](auto* stub, auto* ctx, auto* rq, auto* rs, auto cb) {
            stub->MemberPromote(ctx, rq, rs, std::move(cb));
          },
          [reactor, resp](grpc::Status st, const auto&, auto& r) {
            if (st.ok()) *resp = std::move(r);
            reactor->Finish(st);
          });
      return reactor;
    }
    s_->PromoteMember(req->id(), FinishWithMembers(reactor, resp));
    return reactor;
  }

 private:
  EtcdServer* s_;
};

}  // namespace

namespace {

std::shared_ptr<grpc::Channel> CachedChannel(const std::vector<std::string>& urls) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* channels = new std::map<std::string, std::shared_ptr<grpc::Channel>>();
  if (urls.empty()) return nullptr;
  auto parsed = ParseUrl(urls.front());
  if (!parsed.ok()) return nullptr;
  const std::string target = parsed->HostPort();
  absl::MutexLock l(&mu);
  auto& ch = (*channels)[target];
  if (!ch) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  }
  return ch;
}

}  // namespace

std::shared_ptr<grpc::Channel> LeaderChannel(EtcdServer* s) {
  if (s->leader() == 0 || s->is_leader()) return nullptr;
  return CachedChannel(s->LeaderClientUrls());
}

std::shared_ptr<grpc::Channel> LeaderPeerChannel(EtcdServer* s) {
  if (s->leader() == 0 || s->is_leader()) return nullptr;
  return CachedChannel(s->LeaderPeerUrls());
}

bool RefuseOnLearner(EtcdServer* s, grpc::ServerUnaryReactor* reactor) {
  if (!s->IsLearner()) return false;
  reactor->Finish(ToGrpcStatus(EtcdError(kErrNotSupportedForLearner)));
  return true;
}

std::vector<std::unique_ptr<grpc::Service>> MakeClientServices(EtcdServer* server) {
  std::vector<std::unique_ptr<grpc::Service>> out;
  out.push_back(std::make_unique<KvService>(server));
  out.push_back(std::make_unique<MaintenanceService>(server));
  out.push_back(std::make_unique<ClusterService>(server));
  out.push_back(MakeWatchService(server));
  out.push_back(MakeLeaseService(server));
  return out;
}

}  // namespace etcdpp::server
