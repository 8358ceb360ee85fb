// Storage is the stable part of the raft log, as the application persisted
// it: the server implements it on top of the WAL, tests use MemoryStorage.
// The raft core only reads through it; writes happen in the application when
// it handles a Ready (persist entries / hard state / snapshot), before Advance.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft.pb.h"

namespace etcdpp::raft {

// Distinguished errors, recognised by their canonical code:
//  - compacted: the index is below the first index (kOutOfRange);
//  - unavailable: the index is past the last index (kNotFound);
//  - snapshot temporarily unavailable: try sending a snapshot later
//    (kUnavailable);
//  - snapshot out of date: the requested snapshot is older than the one held
//    (kFailedPrecondition).
absl::Status ErrCompacted();
absl::Status ErrUnavailable();
absl::Status ErrSnapshotTemporarilyUnavailable();
absl::Status ErrSnapOutOfDate();
inline bool IsErrCompacted(const absl::Status& s) { return absl::IsOutOfRange(s); }
inline bool IsErrUnavailable(const absl::Status& s) { return absl::IsNotFound(s); }
inline bool IsErrSnapshotTemporarilyUnavailable(const absl::Status& s) {
  return absl::IsUnavailable(s);
}

// No limit on the total byte size of a batch of entries.
inline constexpr uint64_t kNoLimit = UINT64_MAX;

struct InitialState {
  raftpb::HardState hard_state;
  // The membership as of Config::applied (not just as of the last snapshot):
  // the server records it beside its applied index, because conf change
  // entries at or below `applied` are not replayed into raft on restart.
  raftpb::ConfState conf_state;
};

// Called only from the thread that drives the RawNode (implementations may
// still lock, since the application writes from the same thread).
class Storage {
 public:
  virtual ~Storage() = default;
  virtual absl::StatusOr<InitialState> GetInitialState() const = 0;
  // Entries in [lo, hi), at most max_size bytes (always at least one entry).
  // ErrCompacted if lo <= snapshot index, ErrUnavailable if hi > last+1.
  virtual absl::StatusOr<std::vector<raftpb::Entry>> Entries(
      uint64_t lo, uint64_t hi, uint64_t max_size) const = 0;
  // Term of entry i, for i in [first-1, last] (first-1 is the snapshot's).
  virtual absl::StatusOr<uint64_t> Term(uint64_t i) const = 0;
  virtual absl::StatusOr<uint64_t> LastIndex() const = 0;
  // Index of the first entry still available (snapshot index + 1).
  virtual absl::StatusOr<uint64_t> FirstIndex() const = 0;
  // The most recent snapshot (for sending to a follower that fell behind).
  // ErrSnapshotTemporarilyUnavailable makes the leader retry later.
  virtual absl::StatusOr<raftpb::Snapshot> GetSnapshot() const = 0;
};

// Byte size that counts toward max_size_per_msg.
inline uint64_t EntrySize(const raftpb::Entry& e) { return e.data().size() + 24; }

// An in-memory Storage: used by tests and the simulator, and a model of what
// the WAL-backed one must do. Index 0 of ents_ is a dummy entry holding the
// snapshot's index and term. Not thread-safe.
class MemoryStorage : public Storage {
 public:
  MemoryStorage();

  absl::StatusOr<InitialState> GetInitialState() const override;
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t lo, uint64_t hi,
                                                     uint64_t max_size) const override;
  absl::StatusOr<uint64_t> Term(uint64_t i) const override;
  absl::StatusOr<uint64_t> LastIndex() const override;
  absl::StatusOr<uint64_t> FirstIndex() const override;
  absl::StatusOr<raftpb::Snapshot> GetSnapshot() const override;

  void SetHardState(const raftpb::HardState& hs) { hard_state_ = hs; }
  const raftpb::HardState& hard_state() const { return hard_state_; }
  // Overrides the conf state reported by GetInitialState (see InitialState).
  void SetConfState(const raftpb::ConfState& cs) { conf_state_ = cs; }
  // Replaces everything with the snapshot. ErrSnapOutOfDate if older.
  absl::Status ApplySnapshot(const raftpb::Snapshot& snap);
  // Records a snapshot of the application state at index i (<= last index),
  // with the membership cs as of i. Does not compact.
  absl::StatusOr<raftpb::Snapshot> CreateSnapshot(uint64_t i, const raftpb::ConfState& cs,
                                                  std::string data);
  // Discards entries up to and including compact_index (<= last index).
  absl::Status Compact(uint64_t compact_index);
  // Appends entries, truncating any conflicting suffix first. Entries must be
  // contiguous; those below the first index are ignored.
  absl::Status Append(const std::vector<raftpb::Entry>& entries);

 private:
  uint64_t first() const { return ents_[0].index() + 1; }
  uint64_t last() const { return ents_[0].index() + ents_.size() - 1; }

  raftpb::HardState hard_state_;
  raftpb::ConfState conf_state_;
  raftpb::Snapshot snapshot_;
  std::vector<raftpb::Entry> ents_;
};

}  // namespace etcdpp::raft
