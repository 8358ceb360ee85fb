// noop_server: answers the etcd v3 KV API at once, with no Raft and no
// storage, on the same gRPC stack (callback API, one reactor per call) and
// the same server settings as etcdpp's main.cc. Measured beside etcdpp in
// the same run, it gives the transport ceiling: what the client, gRPC and
// the loopback can do on this machine with nothing behind them.
//
//   noop_server --listen-client-urls http://127.0.0.1:PORT [--name N] [--data-dir D]
//
// Put/DeleteRange/Txn/Compact bump a revision counter; Range returns no
// keys; Status names itself leader; MemberList returns itself. Other etcd
// flags are accepted and ignored, so compare.sh can start it like a server.
// Prints "ready to serve client requests"; stops on SIGTERM/SIGINT.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "rpc.grpc.pb.h"

namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

constexpr uint64_t kClusterId = 0x1000;
constexpr uint64_t kMemberId = 0x2000;

std::atomic<int64_t> g_revision{1};

void Fill(etcdserverpb::ResponseHeader* h, int64_t rev) {
  h->set_cluster_id(kClusterId);
  h->set_member_id(kMemberId);
  h->set_revision(rev);
  h->set_raft_term(2);
}

ServerUnaryReactor* Ok(CallbackServerContext* ctx) {
  auto* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  return r;
}

class Kv final : public etcdserverpb::KV::CallbackService {
 public:
  ServerUnaryReactor* Range(CallbackServerContext* ctx, const etcdserverpb::RangeRequest*,
                            etcdserverpb::RangeResponse* resp) override {
    Fill(resp->mutable_header(), g_revision.load(std::memory_order_relaxed));
    return Ok(ctx);
  }
  ServerUnaryReactor* Put(CallbackServerContext* ctx, const etcdserverpb::PutRequest*,
                          etcdserverpb::PutResponse* resp) override {
    Fill(resp->mutable_header(), g_revision.fetch_add(1, std::memory_order_relaxed) + 1);
    return Ok(ctx);
  }
  ServerUnaryReactor* DeleteRange(CallbackServerContext* ctx, const etcdserverpb::DeleteRangeRequest*,
                                  etcdserverpb::DeleteRangeResponse* resp) override {
    Fill(resp->mutable_header(), g_revision.load(std::memory_order_relaxed));
    return Ok(ctx);
  }
  ServerUnaryReactor* Txn(CallbackServerContext* ctx, const etcdserverpb::TxnRequest* req,
                          etcdserverpb::TxnResponse* resp) override {
    Fill(resp->mutable_header(), g_revision.fetch_add(1, std::memory_order_relaxed) + 1);
    resp->set_succeeded(true);
    for (const auto& op : req->success()) {
      auto* r = resp->add_responses();
      if (op.has_request_put()) Fill(r->mutable_response_put()->mutable_header(), 0);
      if (op.has_request_range()) Fill(r->mutable_response_range()->mutable_header(), 0);
    }
    return Ok(ctx);
  }
  ServerUnaryReactor* Compact(CallbackServerContext* ctx, const etcdserverpb::CompactionRequest*,
                              etcdserverpb::CompactionResponse* resp) override {
    Fill(resp->mutable_header(), g_revision.load(std::memory_order_relaxed));
    return Ok(ctx);
  }
};

class Maintenance final : public etcdserverpb::Maintenance::CallbackService {
 public:
  ServerUnaryReactor* Status(CallbackServerContext* ctx, const etcdserverpb::StatusRequest*,
                             etcdserverpb::StatusResponse* resp) override {
    Fill(resp->mutable_header(), g_revision.load(std::memory_order_relaxed));
    resp->set_version("noop");
    resp->set_leader(kMemberId);
    resp->set_raftterm(2);
    return Ok(ctx);
  }
};

class Cluster final : public etcdserverpb::Cluster::CallbackService {
 public:
  explicit Cluster(std::string url) : url_(std::move(url)) {}
  ServerUnaryReactor* MemberList(CallbackServerContext* ctx, const etcdserverpb::MemberListRequest*,
                                 etcdserverpb::MemberListResponse* resp) override {
    Fill(resp->mutable_header(), 0);
    auto* m = resp->add_members();
    m->set_id(kMemberId);
    m->set_name("noop");
    m->add_clienturls(url_);
    return Ok(ctx);
  }

 private:
  std::string url_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string url = "http://127.0.0.1:2379";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string v;
    size_t eq = a.find('=');
    if (eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) {
      v = argv[++i];
    }
    if (a == "--listen-client-urls" || a == "--listen") url = v;
    if (a == "-h" || a == "--help") {
      std::printf("usage: noop_server --listen-client-urls http://127.0.0.1:PORT\n");
      return 0;
    }
  }
  if (url.find(',') != std::string::npos) url = url.substr(0, url.find(','));
  std::string hostport = url.rfind("http://", 0) == 0 ? url.substr(7) : url;

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Kv kv;
  Maintenance maintenance;
  Cluster cluster(url);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(hostport, grpc::InsecureServerCredentials(), &port);
  // etcdpp's settings (src/server/main.cc) at etcd's defaults.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(1.5 * 1024 * 1024 + 512 * 1024 + 16 * 1024 * 1024));
  builder.SetMaxSendMessageSize(INT_MAX);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, INT_MAX);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 2 * 60 * 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5 * 1000);
  builder.RegisterService(&kv);
  builder.RegisterService(&maintenance);
  builder.RegisterService(&cluster);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "noop_server: cannot listen on %s\n", hostport.c_str());
    return 1;
  }
  std::fprintf(stderr, "noop_server: ready to serve client requests on %s\n", hostport.c_str());
  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  return 0;
}
