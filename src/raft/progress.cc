#include "raft/progress.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/status.h"

namespace etcdpp::raft {

const char* ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe: return "Probe";
    case ProgressState::kReplicate: return "Replicate";
    case ProgressState::kSnapshot: return "Snapshot";
  }
  return "?";
}

void Inflights::Add(uint64_t index) {
  ETCDPP_CHECK(!Full());
  buffer_[(start_ + count_) % buffer_.size()] = index;
  ++count_;
}

void Inflights::FreeLE(uint64_t to) {
  if (count_ == 0 || to < buffer_[start_]) return;
  size_t i = 0;
  size_t idx = start_;
  for (; i < count_; ++i) {
    if (to < buffer_[idx]) break;
    idx = (idx + 1) % buffer_.size();
  }
  count_ -= i;
  start_ = idx;
  if (count_ == 0) start_ = 0;
}

void Inflights::FreeFirstOne() {
  if (count_ == 0) return;
  FreeLE(buffer_[start_]);
}

void Progress::ResetState(ProgressState s) {
  probe_sent = false;
  pending_snapshot = 0;
  state = s;
  inflights.Reset();
}

void Progress::BecomeProbe() {
  // Coming back from a snapshot: the follower has at least the snapshot.
  if (state == ProgressState::kSnapshot) {
    uint64_t pending = pending_snapshot;
    ResetState(ProgressState::kProbe);
    next = std::max(match + 1, pending + 1);
  } else {
    ResetState(ProgressState::kProbe);
    next = match + 1;
  }
}

void Progress::BecomeReplicate() {
  ResetState(ProgressState::kReplicate);
  next = match + 1;
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  ResetState(ProgressState::kSnapshot);
  pending_snapshot = snapshot_index;
}

bool Progress::MaybeUpdate(uint64_t n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressState::kReplicate) {
    // Stale: the rejected MsgApp was below what we know matches.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // Probing: only the answer to the last probe (at next-1) counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  probe_sent = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe: return probe_sent;
    case ProgressState::kReplicate: return inflights.Full();
    case ProgressState::kSnapshot: return true;
  }
  return true;
}

std::string Progress::DebugString() const {
  return absl::StrFormat("%s match=%d next=%d%s%s", ProgressStateName(state), match, next,
                         is_learner ? " learner" : "",
                         state == ProgressState::kSnapshot
                             ? absl::StrFormat(" pending_snap=%d", pending_snapshot)
                             : "");
}

void ProgressTracker::Reset(const raftpb::ConfState& cs, uint64_t next) {
  progress_.clear();
  voters_.clear();
  learners_.clear();
  votes_.clear();
  for (uint64_t id : cs.voters()) AddProgress(id, 0, next, false);
  for (uint64_t id : cs.learners()) AddProgress(id, 0, next, true);
}

void ProgressTracker::AddProgress(uint64_t id, uint64_t match, uint64_t next,
                                  bool is_learner) {
  if (progress_.count(id)) return;
  Progress pr(max_inflight_);
  pr.match = match;
  pr.next = next;
  pr.is_learner = is_learner;
  // A new member counts as active until the first check-quorum round, so
  // adding it cannot make the leader step down at once.
  pr.recent_active = true;
  progress_.emplace(id, std::move(pr));
  (is_learner ? learners_ : voters_).insert(id);
}

void ProgressTracker::Remove(uint64_t id) {
  progress_.erase(id);
  voters_.erase(id);
  learners_.erase(id);
  votes_.erase(id);
}

void ProgressTracker::Promote(uint64_t id) {
  ETCDPP_CHECK(learners_.count(id));
  learners_.erase(id);
  voters_.insert(id);
  progress_.at(id).is_learner = false;
}

Progress* ProgressTracker::Get(uint64_t id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

const Progress* ProgressTracker::Get(uint64_t id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

raftpb::ConfState ProgressTracker::ConfState() const {
  raftpb::ConfState cs;
  for (uint64_t id : voters_) cs.add_voters(id);
  for (uint64_t id : learners_) cs.add_learners(id);
  return cs;
}

uint64_t ProgressTracker::Committed() const {
  if (voters_.empty()) return 0;
  std::vector<uint64_t> matches;
  matches.reserve(voters_.size());
  for (uint64_t id : voters_) matches.push_back(progress_.at(id).match);
  std::sort(matches.begin(), matches.end(), std::greater<uint64_t>());
  // The q-th largest match, q = majority size.
  return matches[voters_.size() / 2];
}

bool ProgressTracker::QuorumActive(uint64_t self) const {
  std::set<uint64_t> active;
  for (uint64_t id : voters_) {
    if (id == self || progress_.at(id).recent_active) active.insert(id);
  }
  return IsQuorum(active);
}

bool ProgressTracker::IsQuorum(const std::set<uint64_t>& acks) const {
  size_t n = 0;
  for (uint64_t id : acks) n += voters_.count(id);
  return n > voters_.size() / 2;
}

void ProgressTracker::RecordVote(uint64_t id, bool granted) { votes_.emplace(id, granted); }

VoteResult ProgressTracker::TallyVotes(int* granted, int* rejected) const {
  *granted = 0;
  *rejected = 0;
  for (const auto& [id, v] : votes_) {
    bool counts = voters_.count(id) || (testing_count_learner_votes_ && learners_.count(id));
    if (!counts) continue;
    (v ? *granted : *rejected) += 1;
  }
  size_t q = voters_.size() / 2 + 1;
  if (static_cast<size_t>(*granted) >= q) return VoteResult::kWon;
  size_t missing = voters_.size() - std::min<size_t>(voters_.size(), *granted + *rejected);
  if (*granted + missing >= q) return VoteResult::kPending;
  return VoteResult::kLost;
}

}  // namespace etcdpp::raft
