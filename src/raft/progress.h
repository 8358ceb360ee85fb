// The leader's view of each follower (Progress) and of the membership and
// votes (ProgressTracker). Owned by Raft; single-threaded.
//
// A follower's Progress is in one of three states (etcd's design, cf. the
// Raft thesis 10.2.1 on pipelining):
//   kProbe:     we do not know its match; send one MsgApp per heartbeat
//               interval and wait for the answer (back off on rejection).
//   kReplicate: matching; stream MsgApps optimistically (next = last sent
//               + 1) up to max_inflight_msgs unacknowledged messages.
//   kSnapshot:  a snapshot is on its way; send nothing until it lands.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "raft.pb.h"

namespace etcdpp::raft {

enum class ProgressState { kProbe, kReplicate, kSnapshot };
const char* ProgressStateName(ProgressState s);

// A bounded ring of the last indexes of in-flight MsgApps.
class Inflights {
 public:
  explicit Inflights(size_t size) : buffer_(size) {}
  void Add(uint64_t index);
  // Frees every in-flight message whose last index is <= to.
  void FreeLE(uint64_t to);
  void FreeFirstOne();
  bool Full() const { return count_ == buffer_.size(); }
  size_t Count() const { return count_; }
  void Reset() { count_ = 0; start_ = 0; }

 private:
  std::vector<uint64_t> buffer_;
  size_t start_ = 0;
  size_t count_ = 0;
};

struct Progress {
  explicit Progress(size_t max_inflight) : inflights(max_inflight) {}

  uint64_t match = 0;
  uint64_t next = 1;
  ProgressState state = ProgressState::kProbe;
  // In kSnapshot: the index of the snapshot being sent.
  uint64_t pending_snapshot = 0;
  // Heard from since the last check-quorum round.
  bool recent_active = false;
  // In kProbe: a MsgApp was sent; wait for its answer or a heartbeat reply.
  bool probe_sent = false;
  Inflights inflights;
  bool is_learner = false;

  void ResetState(ProgressState s);
  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // The follower acknowledged n. Returns false if the ack is stale.
  bool MaybeUpdate(uint64_t n);
  void OptimisticUpdate(uint64_t n) { next = n + 1; }
  // A MsgApp at `rejected` was rejected; the follower hints that its log
  // may match up to match_hint. Returns false if the rejection is stale.
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);
  bool IsPaused() const;
  std::string DebugString() const;
};

enum class VoteResult { kPending, kWon, kLost };

class ProgressTracker {
 public:
  explicit ProgressTracker(size_t max_inflight) : max_inflight_(max_inflight) {}

  // Replaces the membership; progress of new members starts at next.
  void Reset(const raftpb::ConfState& cs, uint64_t next);
  void AddProgress(uint64_t id, uint64_t match, uint64_t next, bool is_learner);
  void Remove(uint64_t id);
  // REQUIRES: id is a learner.
  void Promote(uint64_t id);

  Progress* Get(uint64_t id);
  const Progress* Get(uint64_t id) const;
  bool IsVoter(uint64_t id) const { return voters_.count(id) > 0; }
  bool IsLearner(uint64_t id) const { return learners_.count(id) > 0; }
  const std::set<uint64_t>& voters() const { return voters_; }
  const std::set<uint64_t>& learners() const { return learners_; }
  std::map<uint64_t, Progress>& progress() { return progress_; }
  const std::map<uint64_t, Progress>& progress() const { return progress_; }
  raftpb::ConfState ConfState() const;

  // The largest index acknowledged by a quorum of voters (learners never
  // count). With no voters, returns 0.
  uint64_t Committed() const;
  // Whether a quorum of voters is recent_active. `self` always counts.
  bool QuorumActive(uint64_t self) const;
  bool IsQuorum(const std::set<uint64_t>& acks) const;

  void ResetVotes() { votes_.clear(); }
  void RecordVote(uint64_t id, bool granted);
  // Tallies the recorded votes of voters only (or, with the planted test
  // bug, of learners too). granted/rejected are out-parameters.
  VoteResult TallyVotes(int* granted, int* rejected) const;
  void set_testing_count_learner_votes(bool v) { testing_count_learner_votes_ = v; }

 private:
  size_t max_inflight_;
  std::map<uint64_t, Progress> progress_;  // ordered: deterministic iteration
  std::set<uint64_t> voters_;
  std::set<uint64_t> learners_;
  std::map<uint64_t, bool> votes_;
  bool testing_count_learner_votes_ = false;
};

}  // namespace etcdpp::raft
