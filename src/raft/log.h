// RaftLog: the node's view of the log = stable part (Storage, persisted) +
// unstable part (entries and possibly a snapshot not yet persisted), plus the
// commit and applied indexes. Layout of indexes, a worked example:
//
//   storage:  [snap 5] 6 7 8           first=6, last(stable)=8
//   unstable:                 9 10     offset=9
//   applied=6  committed=8  =>  entries 7..8 are ready to apply.
//
// Owned by Raft; single-threaded.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "raft.pb.h"
#include "raft/logger.h"
#include "raft/storage.h"

namespace etcdpp::raft {

// Entries and snapshot not yet persisted. unstable entries start at offset.
struct Unstable {
  std::optional<raftpb::Snapshot> snapshot;
  std::vector<raftpb::Entry> entries;
  uint64_t offset = 0;

  std::optional<uint64_t> MaybeFirstIndex() const;
  std::optional<uint64_t> MaybeLastIndex() const;
  std::optional<uint64_t> MaybeTerm(uint64_t i) const;
  void StableTo(uint64_t i, uint64_t t);
  void StableSnapTo(uint64_t i);
  void Restore(const raftpb::Snapshot& s);
  void TruncateAndAppend(const std::vector<raftpb::Entry>& ents);
  // REQUIRES: offset <= lo <= hi <= offset + entries.size().
  std::vector<raftpb::Entry> Slice(uint64_t lo, uint64_t hi) const;
};

class RaftLog {
 public:
  // REQUIRES: storage outlives the log.
  RaftLog(Storage* storage, Logger* logger, uint64_t max_next_ents_size);

  // Appends ents received from a leader if (index, log_term) matches our log.
  // Returns the index of the last new entry, or nullopt on mismatch.
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                      const std::vector<raftpb::Entry>& ents);
  uint64_t Append(const std::vector<raftpb::Entry>& ents);
  // The index of the first entry of ents that conflicts (same index, other
  // term) or is new; 0 when all are already in the log.
  uint64_t FindConflict(const std::vector<raftpb::Entry>& ents) const;
  // The largest index <= index whose term is <= term (fast back-off, cf.
  // the Raft thesis 5.3 optimisation and etcd's findConflictByTerm).
  uint64_t FindConflictByTerm(uint64_t index, uint64_t term) const;

  const std::vector<raftpb::Entry>& UnstableEntries() const { return unstable_.entries; }
  // Committed entries not yet applied, at most max_next_ents_size bytes.
  std::vector<raftpb::Entry> NextEnts() const;
  bool HasNextEnts() const;
  const std::optional<raftpb::Snapshot>& UnstableSnapshot() const { return unstable_.snapshot; }
  bool HasPendingSnapshot() const { return unstable_.snapshot.has_value(); }
  absl::StatusOr<raftpb::Snapshot> Snapshot() const;

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const;
  // 0 for indexes outside [first-1, last] when `or_zero` style is needed.
  absl::StatusOr<uint64_t> Term(uint64_t i) const;
  uint64_t ZeroTermOnErr(uint64_t i) const;
  bool MatchTerm(uint64_t i, uint64_t t) const;
  // Raft paper 5.4.1: is (last_index, term) at least as up to date as ours?
  bool IsUpToDate(uint64_t last_index, uint64_t term) const;

  // Entries from i, at most max_size bytes.
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t i, uint64_t max_size) const;
  absl::StatusOr<std::vector<raftpb::Entry>> Slice(uint64_t lo, uint64_t hi,
                                                   uint64_t max_size) const;
  std::vector<raftpb::Entry> AllEntries() const;

  // Commits up to max_index if its entry has the given term (Raft paper
  // 5.4.2: a leader only commits entries of its current term by counting).
  bool MaybeCommit(uint64_t max_index, uint64_t term);
  void CommitTo(uint64_t to_commit);
  void AppliedTo(uint64_t i);
  void StableTo(uint64_t i, uint64_t t) { unstable_.StableTo(i, t); }
  void StableSnapTo(uint64_t i) { unstable_.StableSnapTo(i); }
  void Restore(const raftpb::Snapshot& s);

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  // Test-only (Config::TestingKnobs): plants the bug "commit an entry of an
  // older term by counting replicas", which the simulator must catch.
  void set_testing_commit_any_term(bool v) { testing_commit_any_term_ = v; }

 private:
  absl::Status MustCheckOutOfBounds(uint64_t lo, uint64_t hi) const;

  Storage* storage_;
  Logger* logger_;
  Unstable unstable_;
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;
  uint64_t max_next_ents_size_;
  bool testing_commit_any_term_ = false;
};

}  // namespace etcdpp::raft
