// EtcdServer: the member's state machine side — identity, the MVCC store,
// the applier and the apply loop — behind the gRPC services.
//
// Write path today (single member, before Raft is wired in): Propose() puts
// the request on the apply queue; the apply loop drains everything queued,
// applies each request as one WriteBatch recording its index, makes the
// batch durable with ONE Store::Sync() (group commit), and only then runs the
// callbacks. When Raft lands, Propose() hands the request to the raft loop
// and the apply loop is fed committed entries instead; nothing else changes.
//
// Reads never go through the queue: they read the store at the newest
// durable revision, so a read never observes a write that could still be
// lost in a crash.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/file_lock.h"
#include "internal.pb.h"
#include "mvcc/store.h"
#include "rpc.pb.h"
#include "server/applier.h"
#include "server/config.h"

namespace etcdpp::server {

// The version this server reports (Status.version, /version): the etcd API
// version it is compatible with, as clients compare it.
inline constexpr char kEtcdApiVersion[] = "3.4.23";
inline constexpr char kClusterVersion[] = "3.4.0";
inline constexpr char kEtcdppVersion[] = "0.1.0";

struct MemberInfo {
  uint64_t id = 0;
  std::string name;
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
  bool is_learner = false;
};

class EtcdServer {
 public:
  using Done = std::function<void(ApplyResult)>;

  // Opens (or creates) the data dir, locks it, opens the store and starts
  // the apply loop. Fails with a clear message if another process holds the
  // data dir or the flags do not describe a single member including us.
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(const ServerConfig& config);
  ~EtcdServer();

  // Validated request → apply loop. `done` runs on the apply thread once the
  // result is durable (or fails with etcd's error). Thread-safe.
  void Propose(internalpb::InternalRequest req, Done done);

  // Serves a Range on the local store (serializable and, on a single member
  // whose applied state is durable, linearizable). Thread-safe.
  absl::Status Range(const etcdserverpb::RangeRequest& r, etcdserverpb::RangeResponse* resp);

  // Sets cluster_id, member_id, raft_term and, when 0 and `with_revision`,
  // the revision (etcd's cluster service answers without one).
  void FillHeader(etcdserverpb::ResponseHeader* h, bool with_revision = true) const;

  // Active alarms (etcd's alarm store), ordered by member then type.
  std::vector<etcdserverpb::AlarmMember> Alarms() const;
  bool NoSpaceAlarmed() const;
  // The quota was found exceeded: raise NOSPACE through the apply path, as
  // etcd does, so every later write is refused until it is disarmed.
  void RaiseNoSpace();

  void FillStatus(etcdserverpb::StatusResponse* resp) const;
  std::vector<MemberInfo> Members() const;

  uint64_t member_id() const { return member_id_; }
  uint64_t cluster_id() const { return cluster_id_; }
  const ServerConfig& config() const { return config_; }
  // The store's size as of the last applied batch (the quota check runs on
  // every write; asking RocksDB each time would cost 8 property reads).
  int64_t DbSizeBytes() const { return db_size_bytes_.load(std::memory_order_relaxed); }

  // Stops accepting proposals, fails the queued ones with "server stopped",
  // joins the apply loop. Idempotent.
  void Stop();

 private:
  struct Pending {
    internalpb::InternalRequest req;
    Done done;
  };

  explicit EtcdServer(const ServerConfig& config) : config_(config) {}
  absl::Status Init();
  void ApplyLoop();
  ApplyResult ApplyAlarm(const etcdserverpb::AlarmRequest& req);

  const ServerConfig config_;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<mvcc::Store> store_;
  std::unique_ptr<Applier> applier_;
  uint64_t member_id_ = 0;
  uint64_t cluster_id_ = 0;
  uint64_t term_ = 0;
  MemberInfo self_;

  // The newest revision that is durable: what reads may expose.
  std::atomic<int64_t> durable_rev_{1};
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<int64_t> db_size_bytes_{0};
  std::atomic<uint64_t> next_request_id_{0};

  mutable absl::Mutex alarm_mu_;  // leaf lock
  std::vector<etcdserverpb::AlarmMember> alarms_ ABSL_GUARDED_BY(alarm_mu_);

  absl::Mutex mu_;  // guards the queue; never held while applying
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread apply_thread_;
};

}  // namespace etcdpp::server
