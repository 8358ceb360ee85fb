// PeerTransport over gRPC (see transport.h for the contract).
//
// Threads:
//   - one stream thread per peer (PeerSender::RunStream): dials, keeps one
//     Peer.Stream call open and writes the queued messages as batches;
//   - one snapshot thread per peer (PeerSender::RunSnapshots): sends MsgSnap
//     messages with their checkpoint files on Peer.Snapshot calls;
//   - gRPC's sync-server threads run the receiving side (PeerService).
// Lock order: TransportCore::peers_mu_ before PeerSender::mu_; TransportCore::server_mu_ is a
// leaf. No lock is held while calling the handler or blocking in gRPC.
//
// Like etcd's rafthttp (stream.go), a stream is the unit of liveness: the
// peer is "active" from the moment the receiver accepted the stream (it
// sends its initial metadata only after the cluster/member checks passed)
// until a write fails. While idle the sender writes an empty batch every
// kIdleHeartbeatMs, as etcd's linkHeartbeatMessage does, so a broken stream
// is noticed even when Raft has nothing to say to that peer.
#include "server/peer/transport.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "peer.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace etcdpp::server::peer {
namespace {

namespace fs = std::filesystem;

// Set by the receiver on the initial metadata of an accepted Stream call:
// the sender counts the peer active only once it sees it.
constexpr char kAcceptedHeader[] = "etcdpp-accepted";
// Redials of a peer's stream: at most 100 ms apart, as etcd's rafthttp
// stream readers redial, so a healed partition or a restarted peer hears
// the leader within a heartbeat or two (at 1 s, a member cut off by a
// partition went on campaigning for seconds after the heal and its higher
// term deposed the leader: an election storm).
constexpr int kBackoffInitialMs = 50;
constexpr int kBackoffMaxMs = 100;
constexpr int kIdleHeartbeatMs = 1000;
// Slices in which blocking waits (dialing) look at the stop flag.
constexpr int kPollSliceMs = 50;

std::shared_ptr<spdlog::logger> Logger() {
  auto logger = spdlog::get("rafthttp");
  return logger ? logger : spdlog::default_logger();
}

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Hex(uint64_t v) { return absl::StrCat(absl::Hex(v)); }

// "http://127.0.0.1:2380" -> "127.0.0.1:2380"; "http://[::1]:2380/" ->
// "[::1]:2380". gRPC's default (dns) resolver takes both forms.
std::string TargetFromUrl(std::string_view url) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (url.substr(0, scheme.size()) == scheme) {
      url.remove_prefix(scheme.size());
      break;
    }
  }
  size_t slash = url.find('/');
  if (slash != std::string_view::npos) url = url.substr(0, slash);
  return std::string(url);
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& url, int max_message_bytes,
                                           int dial_timeout_ms) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(max_message_bytes);
  args.SetMaxReceiveMessageSize(max_message_bytes);
  // Keepalive at 5 minutes: a server with gRPC's default ping policy (at
  // most one ping per 5 minutes while it sends nothing, as a Stream's
  // receiver does) never answers GOAWAY "too_many_pings". Setting it also
  // arms TCP_USER_TIMEOUT at the keepalive timeout, which is what catches
  // a blackholed peer: our heartbeats stay unacknowledged (gRPC's posix
  // TCP code sets TCP_USER_TIMEOUT whenever keepalive time is set).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5 * 60 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10 * 1000);
  // gRPC's own reconnect backoff (1s doubling to 120s by default) would
  // keep a restarted peer waiting; ours is 50ms doubling to 100ms.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kBackoffInitialMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::max(dial_timeout_ms, 100));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kBackoffMaxMs);
  // One connection per channel: snapshots do not share the stream's.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(TargetFromUrl(url), grpc::InsecureChannelCredentials(),
                                   args);
}

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

std::string Describe(const grpc::Status& s) {
  return absl::StrCat("code ", static_cast<int>(s.error_code()), ": ", s.error_message());
}

bool IsRemovedStatus(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::PERMISSION_DENIED &&
         s.error_message() == kMemberRemovedText;
}

std::string MetadataValue(const grpc::ServerContext& ctx, const char* key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// A path from a SnapshotChunk is relative, has no ".." and names a file.
bool SafeRelativePath(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.find('\0') != std::string::npos) return false;
  for (const auto& part : fs::path(p)) {
    if (part == "..") return false;
  }
  return fs::path(p).has_filename();
}

absl::Status FsyncPath(const fs::path& p, bool directory) {
  int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", p.string(), ": ", strerror(errno)));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("fsync ", p.string(), ": ", strerror(err)));
  return absl::OkStatus();
}

void RemoveAllQuietly(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) Logger()->warn("failed to remove snapshot directory {}: {}", dir, ec.message());
}

}  // namespace

class TransportCore;

// The sending side towards one peer. Owns two threads; Stop() joins them.
class PeerSender {
 public:
  PeerSender(TransportCore* impl, uint64_t id, std::vector<std::string> urls);
  ~PeerSender() { Stop(); }

  void Start();
  // Queues `messages` (all for this peer) at once, so that one Send()
  // becomes one batch. A message that does not fit is dropped; returns
  // whether the drops should be reported unreachable (once per run of
  // drops, not per message). `snapshots_dropped` counts dropped MsgSnaps.
  bool EnqueueAll(std::vector<raftpb::Message>& messages, int* snapshots_dropped);
  void SetUrls(std::vector<std::string> urls);
  int64_t ActiveSinceMs() const;
  void Stop();

 private:
  void RunStream();
  void RunSnapshots();
  // One Stream call from dial to failure. Returns why it ended; `accepted`
  // says whether the receiver had accepted it.
  grpc::Status StreamOnce(const std::string& url, bool* accepted);
  // Sends one MsgSnap; returns whether the receiver accepted it.
  bool SendSnapshot(const raftpb::Message& m);
  // Waits (stop-aware) for `channel` to connect, up to dial_timeout_ms.
  bool WaitConnected(grpc::Channel* channel);
  void SetupContext(grpc::ClientContext* ctx);
  // Registers `ctx` for TryCancel by Stop(); false if already stopping.
  bool Register(grpc::ClientContext* ctx);
  void Unregister(grpc::ClientContext* ctx);
  void MarkActive();
  void MarkInactive(const std::string& why);
  // Stop-aware sleep; returns false if stopping.
  bool SleepMs(int ms);
  void HandleFailure(const grpc::Status& s);

  TransportCore* const impl_;
  const uint64_t id_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> urls_ ABSL_GUARDED_BY(mu_);
  size_t url_index_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<raftpb::Message> queue_ ABSL_GUARDED_BY(mu_);
  bool drop_reported_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<raftpb::Message> snapshots_ ABSL_GUARDED_BY(mu_);
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
  int64_t active_since_ms_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);  // of the active stream
  bool active_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_error_ ABSL_GUARDED_BY(mu_);

  std::thread stream_thread_;
  std::thread snapshot_thread_;
  absl::Mutex join_mu_;  // serializes Stop(); before mu_
};

// The receiving side: a sync gRPC service (gRPC's thread pool runs it).
class PeerService final : public peerpb::Peer::Service {
 public:
  explicit PeerService(TransportCore* impl) : impl_(impl) {}
  grpc::Status Stream(grpc::ServerContext* ctx, grpc::ServerReader<peerpb::MessageBatch>* reader,
                      peerpb::StreamAck* ack) override;
  grpc::Status Snapshot(grpc::ServerContext* ctx,
                        grpc::ServerReader<peerpb::SnapshotChunk>* reader,
                        peerpb::SnapshotAck* ack) override;
  grpc::Status Members(grpc::ServerContext* ctx, const peerpb::MembersRequest* req,
                       peerpb::MembersResponse* resp) override;

 private:
  TransportCore* const impl_;
};

// Everything PeerTransport does; PeerTransport::Impl (private in the
// header) is just this under its header name.
class TransportCore {
 public:
  TransportCore(PeerTransportOptions options, PeerHandler* handler)
      : options_(std::move(options)), handler_(handler), service_(this) {
    if (options_.max_queued_messages == 0) options_.max_queued_messages = 1;
    if (options_.snapshot_chunk_bytes == 0) options_.snapshot_chunk_bytes = 1 << 20;
  }

  const PeerTransportOptions& options() const { return options_; }
  PeerHandler* handler() const { return handler_; }
  grpc::Service* service() { return &service_; }

  void AddOrUpdatePeer(uint64_t id, const std::vector<std::string>& urls) {
    std::shared_ptr<PeerSender> started;
    {
      absl::MutexLock l(&peers_mu_);
      if (stopped_) return;
      auto it = peers_.find(id);
      if (it != peers_.end()) {
        it->second->SetUrls(urls);
        return;
      }
      started = std::make_shared<PeerSender>(this, id, urls);
      peers_.emplace(id, started);
      started->Start();
    }
    Logger()->info("added peer {} ({})", Hex(id), absl::StrJoin(urls, ","));
  }

  void RemovePeer(uint64_t id) {
    std::shared_ptr<PeerSender> sender;
    {
      absl::MutexLock l(&peers_mu_);
      auto it = peers_.find(id);
      if (it == peers_.end()) return;
      sender = std::move(it->second);
      peers_.erase(it);
    }
    sender->Stop();
    Logger()->info("removed peer {}", Hex(id));
  }

  void Send(std::vector<raftpb::Message> messages) {
    std::vector<uint64_t> unreachable, snapshot_failed;
    {
      absl::ReaderMutexLock l(&peers_mu_);
      if (stopped_) return;
      // Raft's messages for one Ready mostly go to a handful of peers:
      // group them by recipient, keeping their order.
      std::vector<std::pair<uint64_t, std::vector<raftpb::Message>>> by_peer;
      for (auto& m : messages) {
        uint64_t to = m.to();
        auto it = std::find_if(by_peer.begin(), by_peer.end(),
                               [to](const auto& p) { return p.first == to; });
        if (it == by_peer.end()) {
          by_peer.emplace_back(to, std::vector<raftpb::Message>());
          it = by_peer.end() - 1;
        }
        it->second.push_back(std::move(m));
      }
      for (auto& [to, group] : by_peer) {
        auto it = peers_.find(to);
        int snapshots_dropped = 0;
        if (it == peers_.end()) {
          unreachable.push_back(to);
          for (const auto& m : group) snapshots_dropped += m.type() == raftpb::MsgSnap;
        } else if (it->second->EnqueueAll(group, &snapshots_dropped)) {
          unreachable.push_back(to);
        }
        for (int i = 0; i < snapshots_dropped; ++i) snapshot_failed.push_back(to);
      }
    }
    // Outside the locks: the handler may call back into the transport.
    for (uint64_t id : unreachable) handler_->ReportUnreachable(id);
    for (uint64_t id : snapshot_failed) handler_->ReportSnapshot(id, false);
  }

  int64_t ActiveSinceMs(uint64_t id) const {
    absl::ReaderMutexLock l(&peers_mu_);
    auto it = peers_.find(id);
    return it == peers_.end() ? 0 : it->second->ActiveSinceMs();
  }

  void Stop() {
    std::map<uint64_t, std::shared_ptr<PeerSender>> peers;
    {
      absl::MutexLock l(&peers_mu_);
      stopped_ = true;
      peers.swap(peers_);
    }
    {
      absl::MutexLock l(&server_mu_);
      server_stopped_ = true;
      for (grpc::ServerContext* ctx : server_calls_) ctx->TryCancel();
    }
    for (auto& [id, sender] : peers) sender->Stop();
    // Let receiving calls notice the cancellation and leave the handler.
    absl::MutexLock l(&server_mu_);
    server_mu_.Await(absl::Condition(
        +[](std::set<grpc::ServerContext*>* calls) { return calls->empty(); }, &server_calls_));
  }

  // Receiving calls register so Stop() can cancel them and wait for them.
  bool RegisterServerCall(grpc::ServerContext* ctx) {
    absl::MutexLock l(&server_mu_);
    if (server_stopped_) return false;
    server_calls_.insert(ctx);
    return true;
  }
  void UnregisterServerCall(grpc::ServerContext* ctx) {
    absl::MutexLock l(&server_mu_);
    server_calls_.erase(ctx);
  }

  // The checks every Stream/Snapshot call passes (see peer.proto).
  grpc::Status CheckCall(const grpc::ServerContext& ctx, uint64_t* from) {
    std::string cluster = MetadataValue(ctx, kClusterIdHeader);
    std::string to = MetadataValue(ctx, kToHeader);
    std::string from_text = MetadataValue(ctx, kFromHeader);
    uint64_t cluster_id = 0, to_id = 0;
    if (!absl::SimpleHexAtoi(cluster, &cluster_id) || cluster_id != options_.cluster_id) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("cluster ID mismatch: local=", Hex(options_.cluster_id),
                                       ", remote=", cluster.empty() ? "<none>" : cluster));
    }
    if (!absl::SimpleHexAtoi(to, &to_id) || to_id != options_.member_id) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("member ID mismatch: local=", Hex(options_.member_id),
                                       ", to=", to.empty() ? "<none>" : to));
    }
    if (!absl::SimpleHexAtoi(from_text, from)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("bad ", kFromHeader, " header: '", from_text, "'"));
    }
    if (handler_->IsRemoved(*from)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, kMemberRemovedText);
    }
    return grpc::Status::OK;
  }

  // A peer told us we were removed: tell the handler once.
  void ReportRemoved() {
    if (!removed_reported_.exchange(true)) {
      Logger()->error("a peer says this member was removed from the cluster");
      handler_->OnRemovedFromCluster();
    }
  }

  // A unique directory for an incoming snapshot.
  absl::StatusOr<std::string> MakeSnapshotDir(uint64_t from) {
    std::error_code ec;
    fs::create_directories(options_.snapshot_dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("create ", options_.snapshot_dir, ": ", ec.message()));
    }
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::string dir = (fs::path(options_.snapshot_dir) /
                         absl::StrCat("recv-", Hex(from), "-", SteadyNowMs(), "-",
                                      snapshot_seq_.fetch_add(1)))
                            .string();
      if (::mkdir(dir.c_str(), 0700) == 0) return dir;
      if (errno != EEXIST) {
        return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
      }
    }
    return absl::InternalError("could not create a unique snapshot directory");
  }

 private:
  PeerTransportOptions options_;
  PeerHandler* const handler_;
  PeerService service_;

  mutable absl::Mutex peers_mu_;  // before PeerSender::mu_
  bool stopped_ ABSL_GUARDED_BY(peers_mu_) = false;
  std::map<uint64_t, std::shared_ptr<PeerSender>> peers_ ABSL_GUARDED_BY(peers_mu_);

  absl::Mutex server_mu_;  // leaf
  bool server_stopped_ ABSL_GUARDED_BY(server_mu_) = false;
  std::set<grpc::ServerContext*> server_calls_ ABSL_GUARDED_BY(server_mu_);

  std::atomic<bool> removed_reported_{false};
  std::atomic<uint64_t> snapshot_seq_{0};
};

// ---------------------------------------------------------------- sender

PeerSender::PeerSender(TransportCore* impl, uint64_t id, std::vector<std::string> urls)
    : impl_(impl), id_(id), urls_(std::move(urls)) {}

void PeerSender::Start() {
  stream_thread_ = std::thread([this] { RunStream(); });
  snapshot_thread_ = std::thread([this] { RunSnapshots(); });
}

bool PeerSender::EnqueueAll(std::vector<raftpb::Message>& messages, int* snapshots_dropped) {
  absl::MutexLock l(&mu_);
  if (stopping_) return false;
  bool report = false;
  for (auto& m : messages) {
    if (m.type() == raftpb::MsgSnap) {
      // Raft has at most one snapshot in flight per follower; a few
      // queued is already plenty.
      if (snapshots_.size() >= 4) {
        report = true;
        ++*snapshots_dropped;
      } else {
        snapshots_.push_back(std::move(m));
      }
    } else if (queue_.size() >= impl_->options().max_queued_messages) {
      if (!drop_reported_) {
        drop_reported_ = true;
        report = true;
      }
    } else {
      queue_.push_back(std::move(m));
    }
  }
  cv_.SignalAll();
  return report;
}

void PeerSender::SetUrls(std::vector<std::string> urls) {
  absl::MutexLock l(&mu_);
  if (urls_ != urls) {
    urls_ = std::move(urls);
    url_index_ = 0;
  }
}

int64_t PeerSender::ActiveSinceMs() const {
  absl::MutexLock l(&mu_);
  // A peer that died is seen by the channel at once (connection reset),
  // before the next write on an idle stream would fail.
  if (active_since_ms_ != 0 && channel_ && channel_->GetState(false) != GRPC_CHANNEL_READY) {
    return 0;
  }
  return active_since_ms_;
}

void PeerSender::Stop() {
  absl::MutexLock join_lock(&join_mu_);
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
    cv_.SignalAll();
  }
  if (stream_thread_.joinable()) stream_thread_.join();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  absl::MutexLock l(&mu_);
  // Whatever was queued is dropped; Raft retransmits. Snapshot directories
  // nobody asked for yet were never prepared, so nothing to clean up.
  queue_.clear();
  snapshots_.clear();
  active_since_ms_ = 0;
}

bool PeerSender::Register(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  if (stopping_) return false;
  calls_.insert(ctx);
  return true;
}

void PeerSender::Unregister(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  calls_.erase(ctx);
}

void PeerSender::SetupContext(grpc::ClientContext* ctx) {
  const PeerTransportOptions& o = impl_->options();
  ctx->AddMetadata(kClusterIdHeader, Hex(o.cluster_id));
  ctx->AddMetadata(kFromHeader, Hex(o.member_id));
  ctx->AddMetadata(kToHeader, Hex(id_));
}

bool PeerSender::SleepMs(int ms) {
  absl::MutexLock l(&mu_);
  absl::Time deadline = absl::Now() + absl::Milliseconds(ms);
  while (!stopping_) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return !stopping_;
}

bool PeerSender::WaitConnected(grpc::Channel* channel) {
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(impl_->options().dial_timeout_ms);
  while (true) {
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return false;
    }
    grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) return true;
    // The attempt failed (refused, unresolvable): no use waiting out the
    // dial timeout, the caller backs off and dials again.
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) return false;
    auto now = std::chrono::system_clock::now();
    if (now >= deadline) return false;
    auto slice = std::min(deadline, now + std::chrono::milliseconds(kPollSliceMs));
    channel->WaitForStateChange(state, slice);
  }
}

void PeerSender::MarkActive() {
  absl::MutexLock l(&mu_);
  active_since_ms_ = SteadyNowMs();
  last_error_.clear();
  if (!active_) {
    active_ = true;
    Logger()->info("peer {} became active", Hex(id_));
  }
}

void PeerSender::MarkInactive(const std::string& why) {
  absl::MutexLock l(&mu_);
  active_since_ms_ = 0;
  if (active_) {
    active_ = false;
    Logger()->warn("peer {} became inactive: {}", Hex(id_), why);
  } else if (why != last_error_) {
    // While down, say why once per distinct reason rather than per retry
    // (a cluster ID mismatch must not go unnoticed).
    Logger()->warn("peer {} is unreachable: {}", Hex(id_), why);
  }
  last_error_ = why;
}

void PeerSender::HandleFailure(const grpc::Status& s) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
  }
  if (IsRemovedStatus(s)) impl_->ReportRemoved();
  MarkInactive(Describe(s));
  impl_->handler()->ReportUnreachable(id_);
}

void PeerSender::RunStream() {
  int backoff_ms = kBackoffInitialMs;
  while (true) {
    std::string url;
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      if (!urls_.empty()) url = urls_[url_index_ % urls_.size()];
    }
    grpc::Status s;
    bool accepted = false;
    if (url.empty()) {
      s = grpc::Status(grpc::StatusCode::UNAVAILABLE, "peer has no URLs");
    } else {
      s = StreamOnce(url, &accepted);
    }
    if (accepted) backoff_ms = kBackoffInitialMs;
    HandleFailure(s);
    {
      absl::MutexLock l(&mu_);
      if (!urls_.empty()) url_index_ = (url_index_ + 1) % urls_.size();
    }
    if (!SleepMs(backoff_ms)) return;
    backoff_ms = std::min(backoff_ms * 2, kBackoffMaxMs);
  }
}

grpc::Status PeerSender::StreamOnce(const std::string& url, bool* accepted_out) {
  const PeerTransportOptions& o = impl_->options();
  auto channel = MakeChannel(url, o.max_message_bytes, o.dial_timeout_ms);
  if (!WaitConnected(channel.get())) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("could not connect within ", o.dial_timeout_ms, "ms"));
  }
  auto stub = peerpb::Peer::NewStub(channel);
  grpc::ClientContext ctx;
  SetupContext(&ctx);
  if (!Register(&ctx)) return grpc::Status(grpc::StatusCode::CANCELLED, "stopping");
  peerpb::StreamAck ack;
  std::unique_ptr<grpc::ClientWriter<peerpb::MessageBatch>> writer = stub->Stream(&ctx, &ack);
  // The receiver sends its initial metadata once its checks passed.
  writer->WaitForInitialMetadata();
  const auto& md = ctx.GetServerInitialMetadata();
  bool accepted = md.find(kAcceptedHeader) != md.end();
  *accepted_out = accepted;
  bool write_failed = false;
  if (accepted) {
    {
      absl::MutexLock l(&mu_);
      channel_ = channel;
    }
    MarkActive();
    while (true) {
      peerpb::MessageBatch batch;
      {
        absl::MutexLock l(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !queue_.empty();
        };
        absl::Time deadline = absl::Now() + absl::Milliseconds(kIdleHeartbeatMs);
        while (!ready()) {
          if (cv_.WaitWithDeadline(&mu_, deadline)) break;
        }
        if (stopping_) break;
        size_t bytes = 0;
        while (!queue_.empty()) {
          size_t size = queue_.front().ByteSizeLong();
          if (batch.messages_size() > 0 && bytes + size > o.max_batch_bytes) break;
          bytes += size;
          *batch.add_messages() = std::move(queue_.front());
          queue_.pop_front();
        }
      }
      // An empty batch is the idle heartbeat: it proves the stream is alive.
      if (!writer->Write(batch)) {
        write_failed = true;
        break;
      }
      absl::MutexLock l(&mu_);
      drop_reported_ = false;
    }
  }
  if (!write_failed && accepted) writer->WritesDone();
  grpc::Status s = writer->Finish();
  Unregister(&ctx);
  if (!accepted) {
    if (s.ok()) s = grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream not accepted");
    return s;
  }
  if (s.ok()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream closed by peer");
  return s;
}

void PeerSender::RunSnapshots() {
  while (true) {
    raftpb::Message m;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !snapshots_.empty();
      };
      while (!ready()) cv_.Wait(&mu_);
      if (stopping_) return;
      m = std::move(snapshots_.front());
      snapshots_.pop_front();
    }
    bool ok = SendSnapshot(m);
    {
      absl::MutexLock l(&mu_);
      // After Stop() the handler may be going away: say nothing more.
      if (stopping_) return;
    }
    impl_->handler()->ReportSnapshot(id_, ok);
  }
}

bool PeerSender::SendSnapshot(const raftpb::Message& m) {
  const PeerTransportOptions& o = impl_->options();
  PeerHandler* handler = impl_->handler();
  absl::StatusOr<std::string> dir = handler->PrepareSnapshot(m);
  if (!dir.ok()) {
    Logger()->error("failed to prepare a snapshot for peer {}: {}", Hex(id_),
                    dir.status().ToString());
    return false;
  }
  struct Cleanup {
    std::string dir;
    ~Cleanup() { RemoveAllQuietly(dir); }
  } cleanup{*dir};

  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(*dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(fs::relative(it->path(), *dir).string());
  }
  if (ec) {
    Logger()->error("failed to list snapshot directory {}: {}", *dir, ec.message());
    return false;
  }
  std::sort(files.begin(), files.end());

  std::string url;
  {
    absl::MutexLock l(&mu_);
    if (urls_.empty()) return false;
    url = urls_[url_index_ % urls_.size()];
  }
  auto channel = MakeChannel(url, o.max_message_bytes, o.dial_timeout_ms);
  if (!WaitConnected(channel.get())) {
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return false;
    }
    Logger()->warn("snapshot to peer {} failed: could not connect to {}", Hex(id_), url);
    handler->ReportUnreachable(id_);
    return false;
  }
  auto stub = peerpb::Peer::NewStub(channel);
  grpc::ClientContext ctx;
  SetupContext(&ctx);
  if (!Register(&ctx)) return false;
  Logger()->info("sending snapshot at index {} ({} files) to peer {}",
                 m.snapshot().metadata().index(), files.size(), Hex(id_));
  peerpb::SnapshotAck ack;
  auto writer = stub->Snapshot(&ctx, &ack);
  bool first = true;
  bool write_ok = true;
  std::string read_error;
  auto write = [&](peerpb::SnapshotChunk& chunk) {
    if (first) {
      *chunk.mutable_message() = m;
      first = false;
    }
    return writer->Write(chunk);
  };
  std::vector<char> buf(o.snapshot_chunk_bytes);
  for (const std::string& file : files) {
    std::ifstream in(fs::path(*dir) / file, std::ios::binary);
    if (!in) {
      read_error = absl::StrCat("open ", file);
      break;
    }
    uint64_t offset = 0;
    bool sent_any = false;
    while (write_ok) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      std::streamsize n = in.gcount();
      if (in.bad()) {
        read_error = absl::StrCat("read ", file);
        break;
      }
      if (n == 0 && sent_any) break;
      peerpb::SnapshotChunk chunk;
      chunk.set_file(file);
      chunk.set_offset(offset);
      chunk.set_data(buf.data(), static_cast<size_t>(n));
      write_ok = write(chunk);
      sent_any = true;
      offset += static_cast<uint64_t>(n);
      if (in.eof()) break;
    }
    if (!write_ok || !read_error.empty()) break;
  }
  if (write_ok && read_error.empty()) {
    peerpb::SnapshotChunk last;
    last.set_done(true);
    write_ok = write(last);
  }
  if (!read_error.empty()) ctx.TryCancel();
  if (write_ok && read_error.empty()) writer->WritesDone();
  grpc::Status s = writer->Finish();
  Unregister(&ctx);
  if (!read_error.empty()) {
    Logger()->error("snapshot to peer {} failed: {} in {}", Hex(id_), read_error, *dir);
    return false;
  }
  if (!s.ok()) {
    if (IsRemovedStatus(s)) impl_->ReportRemoved();
    Logger()->warn("snapshot to peer {} failed: {}", Hex(id_), Describe(s));
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      handler->ReportUnreachable(id_);
    }
    return false;
  }
  Logger()->info("sent snapshot at index {} to peer {}", m.snapshot().metadata().index(),
                 Hex(id_));
  return true;
}

// ---------------------------------------------------------------- receiver

namespace {
// Keeps a receiving call registered with the transport for its lifetime.
class ServerCallGuard {
 public:
  ServerCallGuard(TransportCore* impl, grpc::ServerContext* ctx)
      : impl_(impl), ctx_(ctx), ok_(impl->RegisterServerCall(ctx)) {}
  ~ServerCallGuard() {
    if (ok_) impl_->UnregisterServerCall(ctx_);
  }
  bool ok() const { return ok_; }

 private:
  TransportCore* impl_;
  grpc::ServerContext* ctx_;
  bool ok_;
};

grpc::Status StoppedStatus() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "peer transport is stopped");
}
}  // namespace

grpc::Status PeerService::Stream(grpc::ServerContext* ctx,
                                 grpc::ServerReader<peerpb::MessageBatch>* reader,
                                 peerpb::StreamAck* ack) {
  ServerCallGuard guard(impl_, ctx);
  if (!guard.ok()) return StoppedStatus();
  uint64_t from = 0;
  grpc::Status check = impl_->CheckCall(*ctx, &from);
  if (!check.ok()) {
    Logger()->warn("refused a stream from {}: {}", ctx->peer(), check.error_message());
    return check;
  }
  ctx->AddInitialMetadata(kAcceptedHeader, "1");
  reader->SendInitialMetadata();
  peerpb::MessageBatch batch;
  while (reader->Read(&batch)) {
    if (batch.messages_size() == 0) continue;  // idle heartbeat
    std::vector<raftpb::Message> messages;
    messages.reserve(batch.messages_size());
    for (auto& m : *batch.mutable_messages()) messages.push_back(std::move(m));
    batch.Clear();
    impl_->handler()->OnMessages(std::move(messages));
  }
  if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled");
  return grpc::Status::OK;
}

grpc::Status PeerService::Snapshot(grpc::ServerContext* ctx,
                                   grpc::ServerReader<peerpb::SnapshotChunk>* reader,
                                   peerpb::SnapshotAck* ack) {
  ServerCallGuard guard(impl_, ctx);
  if (!guard.ok()) return StoppedStatus();
  uint64_t from = 0;
  grpc::Status check = impl_->CheckCall(*ctx, &from);
  if (!check.ok()) {
    Logger()->warn("refused a snapshot from {}: {}", ctx->peer(), check.error_message());
    return check;
  }
  absl::StatusOr<std::string> dir_or = impl_->MakeSnapshotDir(from);
  if (!dir_or.ok()) return ToGrpc(dir_or.status());
  const std::string dir = *dir_or;
  bool keep_dir = false;
  struct Cleanup {
    const std::string& dir;
    bool& keep;
    ~Cleanup() {
      if (!keep) RemoveAllQuietly(dir);
    }
  } cleanup{dir, keep_dir};

  raftpb::Message message;
  bool have_message = false, done = false;
  std::string current_file;
  int fd = -1;
  uint64_t written = 0;
  std::set<std::string> files, dirs{"."};
  auto close_current = [&]() -> absl::Status {
    if (fd < 0) return absl::OkStatus();
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    fd = -1;
    if (rc != 0) {
      return absl::InternalError(absl::StrCat("fsync ", current_file, ": ", strerror(err)));
    }
    return absl::OkStatus();
  };
  auto fail = [&](absl::Status s) {
    if (fd >= 0) ::close(fd);
    fd = -1;
    Logger()->warn("receiving a snapshot from {} failed: {}", Hex(from), s.ToString());
    return ToGrpc(s);
  };

  peerpb::SnapshotChunk chunk;
  while (!done && reader->Read(&chunk)) {
    if (!have_message) {
      if (!chunk.has_message()) {
        return fail(absl::InvalidArgumentError("first snapshot chunk carries no message"));
      }
      message = std::move(*chunk.mutable_message());
      have_message = true;
    }
    if (!chunk.file().empty()) {
      if (!SafeRelativePath(chunk.file())) {
        return fail(absl::InvalidArgumentError(
            absl::StrCat("refusing snapshot file path '", chunk.file(), "'")));
      }
      if (chunk.file() != current_file || fd < 0) {
        absl::Status s = close_current();
        if (!s.ok()) return fail(s);
        if (!files.insert(chunk.file()).second) {
          return fail(absl::InvalidArgumentError(
              absl::StrCat("snapshot file '", chunk.file(), "' sent twice")));
        }
        current_file = chunk.file();
        fs::path path = fs::path(dir) / current_file;
        std::error_code ec;
        fs::create_directories(path.parent_path(), ec);
        if (ec) return fail(absl::InternalError(absl::StrCat("mkdir: ", ec.message())));
        for (fs::path p = fs::path(current_file).parent_path(); !p.empty(); p = p.parent_path()) {
          dirs.insert(p.string());
        }
        fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
          return fail(absl::InternalError(
              absl::StrCat("create ", current_file, ": ", strerror(errno))));
        }
        written = 0;
      }
      if (chunk.offset() != written) {
        return fail(absl::InvalidArgumentError(absl::StrCat(
            "snapshot file '", current_file, "': chunk at offset ", chunk.offset(),
            ", expected ", written)));
      }
      const std::string& data = chunk.data();
      size_t pos = 0;
      while (pos < data.size()) {
        ssize_t n = ::write(fd, data.data() + pos, data.size() - pos);
        if (n < 0) {
          if (errno == EINTR) continue;
          return fail(absl::InternalError(
              absl::StrCat("write ", current_file, ": ", strerror(errno))));
        }
        pos += static_cast<size_t>(n);
      }
      written += data.size();
    }
    done = chunk.done();
    chunk.Clear();
  }
  absl::Status s = close_current();
  if (!s.ok()) return fail(s);
  if (!done) {
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "snapshot cancelled");
    return fail(absl::InvalidArgumentError("snapshot stream ended before its last chunk"));
  }
  // Directories after their files, the snapshot directory itself last of all
  // together with its parent, so that the whole tree is durable.
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    absl::Status ds = FsyncPath(fs::path(dir) / *it, /*directory=*/true);
    if (!ds.ok()) return fail(ds);
  }
  absl::Status ps = FsyncPath(fs::path(dir).parent_path(), /*directory=*/true);
  if (!ps.ok()) return fail(ps);

  Logger()->info("received snapshot at index {} ({} files) from peer {}",
                 message.snapshot().metadata().index(), files.size(), Hex(from));
  absl::Status handled = impl_->handler()->OnSnapshot(std::move(message), dir);
  if (!handled.ok()) {
    Logger()->warn("snapshot from peer {} was not applied: {}", Hex(from), handled.ToString());
    return ToGrpc(handled);
  }
  keep_dir = true;
  return grpc::Status::OK;
}

grpc::Status PeerService::Members(grpc::ServerContext* ctx, const peerpb::MembersRequest* req,
                                  peerpb::MembersResponse* resp) {
  ServerCallGuard guard(impl_, ctx);
  if (!guard.ok()) return StoppedStatus();
  *resp = impl_->handler()->Members();
  return grpc::Status::OK;
}

// ---------------------------------------------------------------- facade

class PeerTransport::Impl : public TransportCore {
 public:
  using TransportCore::TransportCore;
};

PeerTransport::PeerTransport(PeerTransportOptions options, PeerHandler* handler)
    : impl_(std::make_unique<Impl>(std::move(options), handler)) {}

PeerTransport::~PeerTransport() { Stop(); }

void PeerTransport::AddPeer(uint64_t id, const std::vector<std::string>& urls) {
  impl_->AddOrUpdatePeer(id, urls);
}

void PeerTransport::UpdatePeer(uint64_t id, const std::vector<std::string>& urls) {
  impl_->AddOrUpdatePeer(id, urls);
}

void PeerTransport::RemovePeer(uint64_t id) { impl_->RemovePeer(id); }

void PeerTransport::Send(std::vector<raftpb::Message> messages) {
  impl_->Send(std::move(messages));
}

int64_t PeerTransport::ActiveSinceMs(uint64_t id) const { return impl_->ActiveSinceMs(id); }

grpc::Service* PeerTransport::service() { return impl_->service(); }

void PeerTransport::Stop() { impl_->Stop(); }

absl::StatusOr<peerpb::MembersResponse> FetchMembers(const std::vector<std::string>& peer_urls,
                                                     int timeout_ms) {
  std::string last_error = "no peer URLs given";
  for (const std::string& url : peer_urls) {
    auto channel = MakeChannel(url, 64 << 20, timeout_ms);
    auto stub = peerpb::Peer::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    peerpb::MembersRequest req;
    peerpb::MembersResponse resp;
    grpc::Status s = stub->Members(&ctx, req, &resp);
    if (s.ok()) return resp;
    last_error = absl::StrCat(url, ": ", Describe(s));
    Logger()->warn("could not get the cluster's members from {}: {}", url, Describe(s));
  }
  return absl::UnavailableError(
      absl::StrCat("could not get the cluster's members from any of [",
                   absl::StrJoin(peer_urls, ", "), "]; last error: ", last_error));
}

}  // namespace etcdpp::server::peer
