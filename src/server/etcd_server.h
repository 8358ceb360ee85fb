// EtcdServer: the member's state machine side — identity, the MVCC store,
// the applier, the watch hub and the apply loop — behind the gRPC services.
//
// Write path: Propose() registers a waiter under a unique request ID and
// hands the serialized request to the Raft node loop (server/raft_node.h),
// which persists it in the WAL (one fsync per batch: group commit),
// replicates it and commits it. Committed entries come back, in index order,
// to the apply loop, which applies each as one MVCC WriteBatch recording its
// index (so a replay after a crash skips what was applied), then wakes the
// waiter. The WAL is the durability point: RocksDB is not fsynced per batch;
// after a crash the WAL replays whatever RocksDB lost.
//
// Reads never go through Raft on a single member: applied state is
// committed, so reading it is linearizable. (Clusters will use ReadIndex.)
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
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/file_lock.h"
#include "internal.pb.h"
#include "lease/lessor.h"
#include "mvcc/store.h"
#include "mvcc/watch.h"
#include "rpc.pb.h"
#include "server/applier.h"
#include "server/config.h"
#include "server/ids.h"
#include "server/raft_node.h"

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

  // Validated request → Raft. `done` runs on the apply thread once the
  // request is committed and applied (or fails with etcd's error, e.g. when
  // no leader can take it). Thread-safe.
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
  absl::StatusOr<mvcc::HashKVResult> HashKV(int64_t rev) const { return store_->HashKV(rev); }
  std::vector<MemberInfo> Members() const;

  // The member's watch manager, fed by the apply loop after each durable
  // batch. Owned; lives until the server is destroyed.
  mvcc::WatchHub* watch_hub() const { return watch_hub_.get(); }

  // Leases. The lessor is changed by the apply loop (grant, revoke, attach);
  // keepalives and reads use it directly. Owned.
  lease::Lessor* lessor() const { return lessor_.get(); }
  // A fresh lease ID for a grant that did not name one (etcd: the request
  // ID generator, top bit cleared, retried while taken).
  int64_t NewLeaseId();

  uint64_t member_id() const { return member_id_; }
  uint64_t cluster_id() const { return cluster_id_; }
  const ServerConfig& config() const { return config_; }
  // The store's size as of the last applied batch (the quota check runs on
  // every write; asking RocksDB each time would cost 8 property reads).
  int64_t DbSizeBytes() const { return db_size_bytes_.load(std::memory_order_relaxed); }

  // Stops accepting proposals, applies what is already committed, stops the
  // node loop, fails the waiting requests with "server stopped". Idempotent.
  void Stop();

 private:
  explicit EtcdServer(const ServerConfig& config) : config_(config) {}
  absl::Status Init();
  void ApplyLoop();
  // Leader only: proposes the revoke of expired leases (rate-limited).
  void LeaseExpiryLoop();
  // Applies one committed conf change entry and records the membership.
  void ApplyConfChangeEntry(const raftpb::Entry& e);
  Done TakeWaiter(uint64_t id);
  void FailAllWaiters(absl::Status status);
  ApplyResult ApplyAlarm(const etcdserverpb::AlarmRequest& req);

  const ServerConfig config_;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<mvcc::Store> store_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<Applier> applier_;
  std::unique_ptr<mvcc::WatchHub> watch_hub_;
  uint64_t member_id_ = 0;
  uint64_t cluster_id_ = 0;
  MemberInfo self_;

  // The newest applied (hence committed and durable) revision: what reads
  // and watchers may see.
  std::atomic<int64_t> durable_rev_{1};
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<int64_t> db_size_bytes_{0};
  std::unique_ptr<IdGenerator> id_gen_;
  std::unique_ptr<RaftNode> raft_;
  raftpb::ConfState conf_state_;   // apply thread: membership as of applied_index_
  uint64_t last_log_compaction_ = 0;  // apply thread

  absl::Mutex wait_mu_;  // leaf lock
  absl::flat_hash_map<uint64_t, Done> waiters_ ABSL_GUARDED_BY(wait_mu_);

  mutable absl::Mutex alarm_mu_;  // leaf lock
  std::vector<etcdserverpb::AlarmMember> alarms_ ABSL_GUARDED_BY(alarm_mu_);

  absl::Mutex mu_;  // guards the queue; never held while applying
  std::deque<raftpb::Entry> committed_ ABSL_GUARDED_BY(mu_);  // to apply, in order
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread apply_thread_;
  std::thread lease_thread_;
};

}  // namespace etcdpp::server
