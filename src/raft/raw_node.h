// RawNode: the API the server drives (etcd's RawNode, in our words).
// Not thread-safe: exactly one thread (the node loop) calls it.
//
// How to drive it (one iteration of the node loop):
//
//   node.Tick();                     // every heartbeat-interval / heartbeat_tick
//   node.Step(msg);                  // for every message from a peer
//   node.Propose(data); node.ReadIndex(ctx); ...
//   if (node.HasReady()) {
//     Ready rd = node.GetReady();
//     1. if rd.snapshot: persist it (WAL snapshot record + the data),
//        then install it in the state machine.
//     2. persist rd.entries (append; an entry at an existing index replaces
//        that index and everything after it) and rd.hard_state, with one
//        fsync if rd.must_sync.
//     3. send rd.messages (only after step 2: responses promise durability).
//        Report MsgSnap delivery with ReportSnapshot, failures with
//        ReportUnreachable.
//     4. apply rd.committed_entries in order; for an EntryConfChange entry,
//        parse raftpb::ConfChange from data and call ApplyConfChange (it
//        returns the new ConfState to record beside the applied index).
//        rd.read_states: a read with that ctx may be served once the applied
//        index reaches rd.read_states[i].index.
//     5. node.Advance();
//   }
//
// Snapshots for log compaction are made by the application: at some applied
// index i, it saves its state and the ConfState as of i in its Storage and
// then compacts the log up to i (minus a margin so slow followers can still
// catch up from the log). The leader sends Storage::GetSnapshot() to a
// follower whose next entry was compacted.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft.pb.h"
#include "raft/errors.h"
#include "raft/raft.h"

namespace etcdpp::raft {

struct Ready {
  // Set when leader or role changed since the last Ready. Not persisted.
  std::optional<SoftState> soft_state;
  // Set when term, vote or commit changed: persist before sending messages.
  std::optional<raftpb::HardState> hard_state;
  // Answers to ReadIndex requests, in request order.
  std::vector<ReadState> read_states;
  // Entries to append to stable storage before sending messages.
  std::vector<raftpb::Entry> entries;
  // A snapshot to persist and install (a follower that fell behind).
  std::optional<raftpb::Snapshot> snapshot;
  // Committed entries to apply (may include some of `entries`; persist
  // first). Their indexes are contiguous and increasing.
  std::vector<raftpb::Entry> committed_entries;
  // Messages to send once entries and hard_state are persisted.
  std::vector<raftpb::Message> messages;
  // Whether the write of entries / hard_state must be fsynced (a new entry,
  // term or vote; a commit index change alone need not be).
  bool must_sync = false;
};

// A snapshot of the node's state for the server (metrics, MoveLeader).
struct RaftStatus {
  uint64_t id = 0;
  raftpb::HardState hard_state;
  SoftState soft_state;
  uint64_t applied = 0;
  uint64_t lead_transferee = kNone;
  raftpb::ConfState conf_state;
  // Only on the leader: the replication state of every member.
  std::map<uint64_t, Progress> progress;
};

class RawNode {
 public:
  // Validates c and reads the initial state from c.storage.
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(const Config& c);
  // REQUIRES: c.Validate().ok().
  explicit RawNode(const Config& c);

  // Starts a brand-new cluster: appends one committed ConfChangeAddNode entry
  // per voter at indexes 1..n (term 1). The application persists and applies
  // them like any other entries. REQUIRES: the storage is empty.
  absl::Status Bootstrap(const std::vector<uint64_t>& voters);

  void Tick();
  // Starts an election now (tests; etcd's --force-new-cluster style tools).
  absl::Status Campaign();
  // Proposes data to be appended. ErrProposalDropped when no leader is known
  // or a leader transfer is in progress; otherwise the entry may still be
  // lost (re-propose after a timeout if it never comes back committed).
  absl::Status Propose(std::string data);
  // Proposes several entries in one message: the leader appends them
  // together and replicates them in one MsgApp per follower (what the node
  // loop should do with every proposal that arrived during the last fsync).
  absl::Status ProposeBatch(std::vector<std::string> data);
  // Proposes a membership change. Only one may be pending at a time: while
  // one is unapplied, a new one comes back as an empty normal entry.
  absl::Status ProposeConfChange(const raftpb::ConfChange& cc);
  // Applies a committed conf change (call from step 4 above); returns the new
  // membership. A change with node_id == kNone is a no-op (use it to apply a
  // change the server rejected).
  raftpb::ConfState ApplyConfChange(const raftpb::ConfChange& cc);
  // Steps a message received from a peer.
  absl::Status Step(raftpb::Message m);
  // Requests a linearizable read point; the answer arrives as a ReadState
  // carrying ctx (make ctx unique, e.g. a request id; one ctx can batch all
  // reads that arrived meanwhile).
  void ReadIndex(std::string ctx);
  // Asks the leader to hand leadership to transferee (MoveLeader, graceful
  // shutdown). Proposals are dropped while the transfer is in progress.
  void TransferLeader(uint64_t transferee);
  void ReportUnreachable(uint64_t id);
  void ReportSnapshot(uint64_t id, SnapshotStatus status);

  bool HasReady() const;
  // REQUIRES: the previous Ready was Advance()d.
  Ready GetReady();
  // Acknowledges the last Ready: it was persisted, sent and applied.
  void Advance();

  RaftStatus GetStatus() const;
  Raft& raft() { return raft_; }
  const Raft& raft() const { return raft_; }

 private:
  Raft raft_;
  SoftState prev_soft_;
  raftpb::HardState prev_hard_;
  // What the outstanding Ready handed out, for Advance.
  bool ready_outstanding_ = false;
  std::optional<std::pair<uint64_t, uint64_t>> rd_last_entry_;  // index, term
  std::optional<uint64_t> rd_snapshot_index_;
  uint64_t rd_last_committed_ = 0;
};

}  // namespace etcdpp::raft
