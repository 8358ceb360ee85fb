// The etcd v3 gRPC services (callback API: one reactor per call, never
// blocking a gRPC thread on disk or on the apply loop).
#pragma once

#include <memory>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include <grpcpp/impl/service_type.h>

#include "server/errors.h"
#include "server/etcd_server.h"

namespace etcdpp::server {

// etcd accepts a gRPC message of --max-request-bytes plus this much.
inline constexpr int64_t kGrpcOverheadBytes = 512 * 1024;
// gRPC's own hard limit lies this far beyond etcd's, so that etcd's check
// (and grpc-go's error text) answers first.
inline constexpr int64_t kGrpcHardLimitSlackBytes = 16 * 1024 * 1024;

// Proposes `ir` through Raft and finishes the unary call with the response
// `take` moves out of the apply result, plus the header, or with the error.
template <typename Resp, typename Take>
void ProposeAndFinish(EtcdServer* s, grpc::ServerUnaryReactor* reactor,
                      internalpb::InternalRequest ir, Resp* resp, Take take);

// A channel to the current leader's client port, for what only the leader
// can answer (lease keepalives and TTLs, member promote). Null when no
// leader is known or this member leads. Cached per URL. Thread-safe.
std::shared_ptr<grpc::Channel> LeaderChannel(EtcdServer* s);
// The same to the leader's peer port (PeerLease).
std::shared_ptr<grpc::Channel> LeaderPeerChannel(EtcdServer* s);

// Calls a unary RPC on another member asynchronously (a follower asking
// the leader): `invoke(stub->async(), ctx, req, resp, callback)` starts it,
// `done(status, req, resp)` runs when it ends. The call's state is owned
// here and freed after `done`.
template <typename Service, typename Resp, typename Req, typename Invoke, typename Done>
void ForwardUnary(const std::shared_ptr<grpc::Channel>& ch, Req req, absl::Duration timeout,
                  Invoke invoke, Done done) {
  struct Call {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
    std::unique_ptr<typename Service::Stub> stub;
  };
  auto* call = new Call;
  call->req = std::move(req);
  call->stub = Service::NewStub(ch);
  call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  invoke(call->stub->async(), &call->ctx, &call->req, &call->resp,
         [call, done = std::move(done)](grpc::Status st) mutable {
           done(st, call->req, call->resp);
           delete call;
         });
}

// etcd refuses every RPC on a learner but Status and serializable Range
// ("etcdserver: rpc not supported for learner"). Finishes the call and
// returns true if this member is a learner.
bool RefuseOnLearner(EtcdServer* s, grpc::ServerUnaryReactor* reactor);

// Every service etcdpp serves on the client port, bound to `server`
// (not owned; must outlive the returned services).
std::vector<std::unique_ptr<grpc::Service>> MakeClientServices(EtcdServer* server);

template <typename Resp, typename Take>
void ProposeAndFinish(EtcdServer* s, grpc::ServerUnaryReactor* reactor,
                      internalpb::InternalRequest ir, Resp* resp, Take take) {
  s->Propose(std::move(ir), [s, reactor, resp, take](ApplyResult r) {
    if (r.status.ok()) {
      *resp = take(r);
      s->FillHeader(resp->mutable_header());
    }
    reactor->Finish(ToGrpcStatus(r.status));
  });
}

}  // namespace etcdpp::server
