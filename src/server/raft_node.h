// RaftNode: the node loop. One thread owns the Raft state machine
// (raft::RawNode) and, for each Ready, in this order:
//   1. appends the entries and hard state to the WAL, with ONE fdatasync when
//      Raft asks for it (group commit: everything gathered while the previous
//      fsync ran goes into the next one);
//   2. sends the messages (only now: a response promises durability);
//   3. hands the committed entries to the apply loop (never applies here:
//      a slow apply must not delay heartbeats);
//   4. Advance().
// Time enters as Tick() every heartbeat interval, read from the injected
// Clock; proposals, peer messages and read requests arrive through a queue
// that any thread may fill.
//
// The log in memory (raft::MemoryStorage) is rebuilt from the WAL at start,
// as etcd does; the WAL is the source of truth.
#pragma once

#include <atomic>
#include <chrono>
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
#include "common/clock.h"
#include "raft.pb.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "wal/wal.h"

namespace etcdpp::server {

// Sends Raft messages to peers. Must not block the caller (queue per peer).
class RaftTransport {
 public:
  virtual ~RaftTransport() = default;
  virtual void Send(std::vector<raftpb::Message> messages) = 0;
};

class RaftNode {
 public:
  struct Options {
    uint64_t id = 0;
    std::string wal_dir;
    std::string wal_metadata;                // written when the WAL is created
    // Used when the WAL is created: the voters of a new cluster. Empty for a
    // member joining an existing cluster (it waits for the leader's log).
    std::vector<uint64_t> bootstrap_voters;
    // --force-new-cluster: drop the uncommitted tail of the log and commit
    // the removal of every other member, so this one continues alone.
    bool force_new_cluster = false;
    uint64_t applied_index = 0;              // the state machine's consistent index
    raftpb::ConfState applied_conf_state;    // membership as of applied_index
    std::chrono::milliseconds tick_interval{100};  // --heartbeat-interval
    int election_ticks = 10;                       // election-timeout / heartbeat
    bool pre_vote = true;
    Clock* clock = nullptr;                  // not owned; required
    RaftTransport* transport = nullptr;      // not owned; null for one member
    wal::Options wal_options;
    // After a log compaction at index i, the entries from i - this on stay
    // in memory so a slow follower can still catch up from the log (etcd's
    // snapshotCatchUpEntries).
    uint64_t catch_up_entries = 5000;
    // Node thread: committed entries, in index order, once durable here.
    // Must not block: queue them for the apply loop.
    std::function<void(std::vector<raftpb::Entry>)> on_committed;
    // Node thread: the leader changed (lead 0 = none known).
    std::function<void(uint64_t lead, uint64_t term)> on_leader_change;
    // Node thread: ReadIndex answers.
    std::function<void(std::vector<raft::ReadState>)> on_read_states;
    // Node thread: a snapshot from the leader was made durable in the WAL;
    // the state machine must install it before applying anything after it.
    // Called before the committed entries of the same Ready.
    std::function<void(raftpb::Snapshot)> on_snapshot;
  };

  // Opens or creates the WAL, rebuilds the log, starts the node thread. A
  // single-voter member campaigns at once (etcd fast-forwards its ticks).
  static absl::StatusOr<std::unique_ptr<RaftNode>> Start(Options options);
  ~RaftNode();

  // Thread-safe. `on_dropped` runs on the node thread if Raft refuses the
  // proposal (no leader known, leader transfer): the caller fails the
  // request (or proposes it again later) rather than waiting for a commit
  // that will not come. When no leader is known the data comes back with
  // it (never appended anywhere, so proposing it again is safe); otherwise
  // it is empty. A conf change comes back serialized.
  //
  // A nonzero `leader_term` appends the entry only while this node leads in
  // that term: never forwarded to another leader nor kept for a later one
  // (dropped with empty data). For what this member decided as the leader
  // of that term, e.g. that a lease expired by its clock (etcd #15247).
  using Dropped = std::function<void(absl::Status, std::string data)>;
  void Propose(std::string data, Dropped on_dropped, uint64_t leader_term = 0);
  void Step(raftpb::Message m);
  void ReadIndex(std::string ctx);
  void ProposeConfChange(raftpb::ConfChange cc, Dropped on_dropped);
  void TransferLeader(uint64_t transferee);
  void ReportUnreachable(uint64_t id);
  void ReportSnapshot(uint64_t id, bool ok);
  // The node's status (progress of every member on the leader). Blocks
  // until the node thread answers; empty if it stopped.
  raft::RaftStatus Status();
  // Log compaction. The state machine has applied `index`, made it
  // durable, and its membership there is `cs`: record a snapshot marker in
  // the WAL, drop the in-memory log up to index - catch_up_entries, and
  // release the WAL segments the marker covers. Thread-safe (queued).
  void CompactLog(uint64_t index, raftpb::ConfState cs);

  // The apply loop calls this for each committed conf change, in order, and
  // gets the membership after it. Blocks until the node thread applied it.
  raftpb::ConfState ApplyConfChange(const raftpb::ConfChange& cc);

  uint64_t lead() const { return lead_.load(); }
  uint64_t term() const { return term_.load(); }
  uint64_t commit_index() const { return commit_.load(); }
  bool is_leader() const { return lead_.load() == id_; }

  // Stops the node thread; queued work is dropped. Idempotent.
  void Stop();

 private:
  using Task = std::function<void(raft::RawNode&)>;

  explicit RaftNode(Options options);
  absl::Status Init();
  // --force-new-cluster, after the WAL was read (see Options).
  absl::Status ForceNewCluster();
  void Loop();
  void Enqueue(Task task);
  void HandleReady(raft::Ready rd);

  Options options_;
  const uint64_t id_;
  raft::MemoryStorage storage_;  // node thread only (after Init)
  std::unique_ptr<wal::Wal> wal_;
  std::unique_ptr<raft::RawNode> node_;
  bool campaign_at_start_ = false;
  uint64_t snapshot_index_ = 0;  // node thread

  std::atomic<uint64_t> lead_{0};
  std::atomic<uint64_t> term_{0};
  std::atomic<uint64_t> commit_{0};

  absl::Mutex mu_;
  std::deque<Task> inbox_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace etcdpp::server
