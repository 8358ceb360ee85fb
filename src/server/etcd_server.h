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
// Reads: a serializable read is served from the local applied state at
// once. A linearizable read first passes a read barrier: a batched raft
// ReadIndex round (one round serves every read that arrived while the
// previous one was in flight), then waits until what this member applied up
// to the index the leader confirmed is visible to reads (its batch is done:
// visible_index_). A single voter skips the round: what it
// applied is committed and nobody else can commit.
//
// Clusters: the member talks to its peers through the PeerTransport on the
// peer port; followers forward proposals to the leader (Raft does it);
// membership changes are raft conf changes carrying the member, applied in
// log order into the Membership recorded beside the applied index. A
// follower that fell behind the leader's log receives a checkpoint of the
// leader's store and installs it in place of its own (SwappableStore).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
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
#include "server/membership.h"
#include "server/peer/transport.h"
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

class EtcdServer final : public peer::PeerHandler {
 public:
  using Done = std::function<void(ApplyResult)>;

  // Opens (or creates) the data dir, locks it, opens the store and starts
  // the apply loop. Fails with a clear message if another process holds the
  // data dir or the flags do not describe a single member including us.
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(const ServerConfig& config);
  ~EtcdServer() override;
  // Waits (bounded) until a leader is known, what was committed before the
  // start is applied and this member's name and client URLs are published
  // through Raft (etcd serves clients once it published itself). Serve the
  // peer port first: peers elect the leader. False if the bound ran out
  // before the publish (publishing goes on in the background).
  bool WaitReady();

  // Validated request → Raft. `done` runs on the apply thread once the
  // request is committed and applied (or fails with etcd's error, e.g. when
  // no leader can take it). Thread-safe.
  // With a nonzero `leader_term`, only while this member leads in that
  // term (see RaftNode::Propose), else it fails with "not leader".
  void Propose(internalpb::InternalRequest req, Done done, uint64_t leader_term = 0);

  // Serves a Range on the local applied state. Linearizable only after
  // ReadBarrier. Thread-safe.
  absl::Status Range(const etcdserverpb::RangeRequest& r, etcdserverpb::RangeResponse* resp);
  // Whether a linearizable read needs a ReadIndex round here.
  bool NeedsReadBarrier() const;
  // `done` runs (at once, or on the read thread) when this member's applied
  // state includes everything committed before the call, or with etcd's
  // error (request timed out, stopped). Thread-safe.
  void ReadBarrier(std::function<void(absl::Status)> done);

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
  std::vector<MemberInfo> MemberList() const;
  bool IsLearner() const;
  uint64_t leader() const { return raft_ ? raft_->lead() : 0; }
  bool is_leader() const { return raft_ && raft_->is_leader(); }
  // The client URLs of the current leader (empty if none is known).
  std::vector<std::string> LeaderClientUrls() const;
  std::vector<std::string> LeaderPeerUrls() const;

  // Cluster membership changes (etcd's Cluster service): validated as etcd
  // does (including --strict-reconfig-check), proposed as a raft conf
  // change, `done` called once it is applied here (or failed). Thread-safe.
  using MemberDone = std::function<void(absl::Status, internalpb::Member)>;
  void AddMember(std::vector<std::string> peer_urls, bool is_learner, MemberDone done);
  void RemoveMember(uint64_t id, MemberDone done);
  void UpdateMember(uint64_t id, std::vector<std::string> peer_urls, MemberDone done);
  // Leader only (the caller forwards otherwise): refused until the learner
  // caught up with the leader's log.
  void PromoteMember(uint64_t id, MemberDone done);
  // Leader only: hands leadership to `target`, done once it took over.
  void MoveLeader(uint64_t target, std::function<void(absl::Status)> done);
  // The member's watch manager, fed by the apply loop after each durable
  // batch. Owned; lives until the server is destroyed.
  mvcc::WatchHub* watch_hub() const { return watch_hub_.get(); }

  // Leases. The lessor is changed by the apply loop (grant, revoke, attach);
  // keepalives and reads use it directly. Owned.
  lease::Lessor* lessor() const { return lessor_.get(); }
  // A fresh lease ID for a grant that did not name one (etcd: the request
  // ID generator, top bit cleared, retried while taken).
  int64_t NewLeaseId();
  // Leader only (else lease::kErrNotPrimary, and the caller forwards):
  // renews a lease, as a keepalive does; `done` gets the TTL it runs again.
  // Renewed only once a quorum confirmed this member still leads and it
  // applied all that was committed before (a ReadIndex round): a deposed
  // leader that does not know it yet must not answer a renewal the real
  // leader never sees, nor a new leader renew a lease that an older
  // leader's committed revoke is about to remove (etcd #15247). `done` may
  // run at once, on the caller's thread. Thread-safe.
  using RenewDone = std::function<void(absl::StatusOr<int64_t>)>;
  void RenewLease(lease::LeaseId id, RenewDone done);

  uint64_t member_id() const { return member_id_; }
  uint64_t cluster_id() const { return cluster_id_; }
  const ServerConfig& config() const { return config_; }
  // The store's size as of the last applied batch (the quota check runs on
  // every write; asking RocksDB each time would cost 8 property reads).
  int64_t DbSizeBytes() const { return db_size_bytes_.load(std::memory_order_relaxed); }

  // Stops accepting proposals, applies what is already committed, stops the
  // node loop, fails the waiting requests with "server stopped". Idempotent.
  void Stop();

  // The peer transport's receiving side, to serve on --listen-peer-urls.
  grpc::Service* peer_service() { return transport_->service(); }
  // Called (once, on some thread) when this member learned that it was
  // removed from the cluster: the daemon then stops, as etcd does.
  void set_on_removed(std::function<void()> f) { on_removed_ = std::move(f); }

  // Request timeout (etcd's ReqTimeout: 5 s + 2 election timeouts).
  absl::Duration RequestTimeout() const;

 private:
  // peer::PeerHandler
  void OnMessages(std::vector<raftpb::Message> messages) override;
  absl::Status OnSnapshot(raftpb::Message message, std::string dir) override;
  bool IsRemoved(uint64_t id) override { return membership_.IsRemoved(id); }
  peerpb::MembersResponse Members() override;
  absl::StatusOr<std::string> PrepareSnapshot(const raftpb::Message& message) override;
  void ReportUnreachable(uint64_t id) override;
  void ReportSnapshot(uint64_t id, bool ok) override;
  void OnRemovedFromCluster() override;

  explicit EtcdServer(const ServerConfig& config) : config_(config) {}
  absl::Status Init();
  void ApplyLoop();
  // Leader only: proposes the revoke of expired leases (rate-limited).
  void LeaseExpiryLoop();
  void TransferLeadershipOnStop();
  void ProposeLeaseCheckpoints(const std::vector<lease::Checkpoint>& cps, uint64_t leader_term = 0);
  // Applies one committed conf change entry and records the membership.
  // Entries at or below the applied index (replayed after a snapshot that
  // already holds them) only update Raft.
  void ApplyConfChangeEntry(const raftpb::Entry& e, bool already_applied);
  // Checks a committed conf change against Raft's membership as of that
  // entry (`cs`), which every member derives alike from the log.
  absl::Status ValidateConfChange(const raftpb::ConfChange& cc, const raftpb::ConfState& cs) const;
  void ProposeConfChange(raftpb::ConfChange cc, MemberDone done);
  // Installs a snapshot received from the leader (apply thread).
  void InstallSnapshot(const raftpb::Snapshot& snap);
  // Opens the store at `dir`, switching to a received snapshot first when
  // the WAL says one was accepted that the store does not hold yet.
  absl::Status OpenStore();
  // Brings the transport's peer list in line with the membership.
  void SyncPeers();
  void PersistMembership(mvcc::Store::WriteTxn* txn);
  // Housekeeping thread: request timeouts, ReadIndex retries, publishing
  // this member's attributes.
  void HousekeepingLoop();
  void StartReadRound() ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  void OnReadStates(std::vector<raft::ReadState> states);
  void ReadLoop();
  // Registers `done` for request `id` with the request timeout.
  void RegisterWaiter(uint64_t id, Done done);
  Done TakeWaiter(uint64_t id);
  // Whether the peer `id` (or this member) has been connected for `ms`.
  bool ConnectedFor(uint64_t id, int64_t ms) const;
  // A conf change carrying `m` in its context, for m.id().
  void ProposeMemberChange(raftpb::ConfChangeType type, const internalpb::Member& m,
                           MemberDone done);
  // Hands a registered request (or, with conf_change, a serialized
  // ConfChange) to Raft; again, if it found no leader.
  void ProposeData(uint64_t id, std::string data, bool conf_change = false,
                   uint64_t leader_term = 0);
  void FailAllWaiters(absl::Status status);
  ApplyResult ApplyAlarm(const etcdserverpb::AlarmRequest& req);

  const ServerConfig config_;
  std::string member_dir_;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<mvcc::SwappableStore> store_;
  std::string store_dir_;  // the directory the current store lives in (apply thread)
  Membership membership_;
  std::unique_ptr<peer::PeerTransport> transport_;
  std::function<void()> on_removed_;
  std::atomic<bool> removed_{false};
  std::atomic<bool> published_{false};
  absl::Mutex peers_mu_;
  std::set<uint64_t> known_peers_ ABSL_GUARDED_BY(peers_mu_);
  // MoveLeader calls waiting for the transfer (housekeeping checks them).
  struct MoveWaiter {
    uint64_t target;
    absl::Time deadline;
    std::function<void(absl::Status)> done;
  };
  std::vector<MoveWaiter> move_waiters_ ABSL_GUARDED_BY(wait_mu_);
  // Proposals dropped for want of a leader, to propose again.
  struct Retry {
    uint64_t id;
    std::string data;
    bool conf_change;
  };
  std::vector<Retry> retry_ ABSL_GUARDED_BY(wait_mu_);
  std::atomic<uint64_t> snapshot_seq_{0};
  std::unique_ptr<lease::Lessor> lessor_;
  // The term in which the lessor was last promoted (0: not the primary).
  // What it finds expired is proposed for that term only.
  std::atomic<uint64_t> lessor_term_{0};
  std::unique_ptr<Applier> applier_;
  std::unique_ptr<mvcc::WatchHub> watch_hub_;
  uint64_t member_id_ = 0;
  uint64_t cluster_id_ = 0;
  MemberInfo self_;

  // The newest applied (hence committed and durable) revision: what reads
  // and watchers may see.
  std::atomic<int64_t> durable_rev_{1};
  std::atomic<uint64_t> applied_index_{0};
  // The applied index readers see: durable_rev_ covers every entry up to
  // it. applied_index_ moves entry by entry while a batch is applied;
  // durable_rev_ and this move once the batch is done, so a linearizable
  // read waits for this, never for applied_index_.
  std::atomic<uint64_t> visible_index_{0};
  std::atomic<int64_t> db_size_bytes_{0};
  std::unique_ptr<IdGenerator> id_gen_;
  std::unique_ptr<RaftNode> raft_;
  raftpb::ConfState conf_state_;   // apply thread: membership as of applied_index_
  // Apply thread: Raft's membership as of the last conf change handed to it
  // (behind conf_state_ while replaying entries a snapshot already holds).
  raftpb::ConfState raft_conf_;
  uint64_t last_log_compaction_ = 0;  // apply thread
  // Test-only (ETCDPP_APPLY_FAILPOINTS="entry_delay_ms=N"): a pause after
  // each applied entry, to widen races between applying and serving.
  int64_t apply_entry_delay_ms_ = 0;

  absl::Mutex wait_mu_;  // leaf lock
  absl::flat_hash_map<uint64_t, Done> waiters_ ABSL_GUARDED_BY(wait_mu_);
  // (deadline, request ID) in registration order = deadline order.
  std::deque<std::pair<absl::Time, uint64_t>> deadlines_ ABSL_GUARDED_BY(wait_mu_);

  // Linearizable reads (see the top of this file).
  struct ReadWaiter {
    std::function<void(absl::Status)> done;
    absl::Time deadline;
  };
  absl::Mutex read_mu_;
  std::vector<ReadWaiter> read_pending_ ABSL_GUARDED_BY(read_mu_);   // next round
  std::vector<ReadWaiter> read_inflight_ ABSL_GUARDED_BY(read_mu_);  // this round
  std::string read_ctx_ ABSL_GUARDED_BY(read_mu_);                   // "" = none in flight
  absl::Time read_started_ ABSL_GUARDED_BY(read_mu_);
  // Confirmed rounds: serve once visible_index_ reaches the index.
  std::deque<std::pair<uint64_t, std::vector<ReadWaiter>>> read_confirmed_
      ABSL_GUARDED_BY(read_mu_);
  bool read_stopping_ ABSL_GUARDED_BY(read_mu_) = false;
  std::thread read_thread_;
  std::thread housekeeping_thread_;

  mutable absl::Mutex alarm_mu_;  // leaf lock
  std::vector<etcdserverpb::AlarmMember> alarms_ ABSL_GUARDED_BY(alarm_mu_);

  absl::Mutex mu_;  // guards the queue; never held while applying
  struct ApplyItem {
    raftpb::Entry entry;
    std::optional<raftpb::Snapshot> snapshot;  // set: install this instead
  };
  std::deque<ApplyItem> committed_ ABSL_GUARDED_BY(mu_);  // to apply, in order
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread apply_thread_;
  std::thread lease_thread_;
};

}  // namespace etcdpp::server
