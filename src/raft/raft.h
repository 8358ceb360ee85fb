// The Raft state machine (the Raft paper, figure 2, plus the thesis's
// pre-vote, check-quorum, leader transfer, ReadIndex and learners). It is
// pure: no threads, clock, sockets or files. Inputs: Tick() and Step(msg).
// Outputs accumulate in msgs_, read_states_ and the RaftLog's unstable part;
// RawNode turns them into a Ready. Most users want RawNode (raw_node.h);
// Raft is public for tests. Single-threaded; not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/random.h"
#include "raft.pb.h"
#include "raft/log.h"
#include "raft/logger.h"
#include "raft/progress.h"
#include "raft/storage.h"

namespace etcdpp::raft {

inline constexpr uint64_t kNone = 0;

enum class StateType { kFollower, kCandidate, kLeader, kPreCandidate };
const char* StateTypeName(StateType s);

struct Config {
  // This node's id. REQUIRES: != 0.
  uint64_t id = 0;
  // Ticks without hearing from a leader before a follower campaigns; the
  // actual timeout is randomized in [election_tick, 2 * election_tick).
  int election_tick = 10;
  // Ticks between leader heartbeats. REQUIRES: < election_tick.
  int heartbeat_tick = 1;
  // The log. Not owned; must outlive the node.
  Storage* storage = nullptr;
  // The last applied index (restart: what the state machine has applied, so
  // committed entries at or below it are not handed out again).
  uint64_t applied = 0;
  // Max bytes of entries per MsgApp (0: one entry per message).
  uint64_t max_size_per_msg = 1024 * 1024;
  // Max bytes of committed entries per Ready.
  uint64_t max_committed_size_per_ready = kNoLimit;
  // Max unacknowledged MsgApps per follower in kReplicate.
  int max_inflight_msgs = 256;
  // The leader steps down when it has not heard from a quorum for an
  // election timeout; followers ignore votes while they hear from a leader.
  bool check_quorum = true;
  // A candidate first asks whether it could win, without bumping terms, so
  // a partitioned node cannot disrupt the cluster when it rejoins.
  bool pre_vote = true;
  // Election jitter. Not owned; null: an internal Random seeded with id.
  Random* random = nullptr;
  // Not owned; null: NullLogger.
  Logger* logger = nullptr;

  // Test-only switches that plant known bugs, so tests can prove the
  // simulator's invariant checker catches them. Never set in production.
  struct TestingKnobs {
    bool count_learner_votes = false;      // learners vote and are counted
    bool commit_old_term_by_count = false; // no "current term" commit rule
    bool vote_more_than_once = false;      // ignore votedFor
    bool read_index_without_quorum = false;  // answer reads at once
  } testing;

  absl::Status Validate() const;
};

struct SoftState {
  uint64_t lead = kNone;
  StateType state = StateType::kFollower;
  bool operator==(const SoftState& o) const { return lead == o.lead && state == o.state; }
};

// The answer to a ReadIndex request: reading at or after `index` is
// linearizable once the state machine has applied it.
struct ReadState {
  uint64_t index = 0;
  std::string request_ctx;
};

enum class SnapshotStatus { kFinish, kFailure };

// Pending ReadIndex requests waiting for a heartbeat quorum (the thesis
// 6.4: the leader confirms it is still the leader before answering).
class ReadOnly {
 public:
  struct Status {
    raftpb::Message req;
    uint64_t index = 0;
    std::set<uint64_t> acks;
  };
  void AddRequest(uint64_t index, const raftpb::Message& m);
  // Records an ack; returns the acks so far (null if ctx is unknown).
  const std::set<uint64_t>* RecvAck(uint64_t id, const std::string& ctx);
  // Pops every request up to and including ctx (older ones are confirmed by
  // the same quorum) and returns them in arrival order.
  std::vector<Status> Advance(const std::string& ctx);
  std::string LastPendingRequestCtx() const {
    return queue_.empty() ? std::string() : queue_.back();
  }
  size_t Pending() const { return queue_.size(); }
  void Reset() {
    pending_.clear();
    queue_.clear();
  }

 private:
  std::map<std::string, Status> pending_;
  std::deque<std::string> queue_;
};

class Raft {
 public:
  // REQUIRES: c.Validate().ok(). Reads the initial state from c.storage.
  explicit Raft(const Config& c);

  absl::Status Step(raftpb::Message m);
  void Tick();

  // Applies a committed conf change to the membership; see RawNode.
  raftpb::ConfState ApplyConfChange(const raftpb::ConfChange& cc);
  void Bootstrap(const std::vector<uint64_t>& voters);

  // For RawNode.
  SoftState GetSoftState() const { return {lead_, state_}; }
  raftpb::HardState GetHardState() const;
  std::vector<raftpb::Message>& msgs() { return msgs_; }
  const std::vector<raftpb::Message>& msgs() const { return msgs_; }
  std::vector<ReadState>& read_states() { return read_states_; }
  const std::vector<ReadState>& read_states() const { return read_states_; }
  RaftLog& log() { return log_; }
  const RaftLog& log() const { return log_; }
  ProgressTracker& tracker() { return tracker_; }
  const ProgressTracker& tracker() const { return tracker_; }
  void AdvanceApplied(uint64_t applied);

  uint64_t id() const { return id_; }
  uint64_t term() const { return term_; }
  uint64_t vote() const { return vote_; }
  uint64_t lead() const { return lead_; }
  StateType state() const { return state_; }
  uint64_t lead_transferee() const { return lead_transferee_; }
  bool is_learner() const { return is_learner_; }
  bool promotable() const { return tracker_.IsVoter(id_); }
  int election_elapsed() const { return election_elapsed_; }
  int randomized_election_timeout() const { return randomized_election_timeout_; }
  uint64_t pending_conf_index() const { return pending_conf_index_; }
  const ReadOnly& read_only() const { return read_only_; }
  const Config& config() const { return config_; }

  // Test helpers.
  void BecomeFollower(uint64_t term, uint64_t lead);
  void BecomeCandidate();
  void BecomePreCandidate();
  void BecomeLeader();
  void set_randomized_election_timeout(int t) { randomized_election_timeout_ = t; }

 private:
  enum class CampaignType { kPreElection, kElection, kTransfer };

  void Reset(uint64_t term);
  void ResetRandomizedElectionTimeout();
  bool PastElectionTimeout() const { return election_elapsed_ >= randomized_election_timeout_; }
  void TickElection();
  void TickHeartbeat();

  void Hup(CampaignType t);
  void Campaign(CampaignType t);
  VoteResult Poll(uint64_t id, raftpb::MessageType t, bool granted);
  bool HasUnappliedConfChanges() const;

  absl::Status StepLeader(raftpb::Message& m);
  absl::Status StepCandidate(raftpb::Message& m);
  absl::Status StepFollower(raftpb::Message& m);

  void HandleAppendEntries(const raftpb::Message& m);
  void HandleHeartbeat(const raftpb::Message& m);
  void HandleSnapshot(const raftpb::Message& m);
  bool Restore(const raftpb::Snapshot& s);

  void Send(raftpb::Message m);
  void SendAppend(uint64_t to) { MaybeSendAppend(to, true); }
  bool MaybeSendAppend(uint64_t to, bool send_if_empty);
  void SendHeartbeat(uint64_t to, const std::string& ctx);
  void BcastAppend();
  void BcastHeartbeat();
  void BcastHeartbeatWithCtx(const std::string& ctx);
  void SendTimeoutNow(uint64_t to);
  bool MaybeCommit();
  bool AppendEntries(std::vector<raftpb::Entry> es);
  bool CommittedEntryInCurrentTerm() const;
  void HandleReadIndex(const raftpb::Message& m);
  void ReleasePendingReadIndexMessages();
  void AbortLeaderTransfer() { lead_transferee_ = kNone; }
  void TransferTo(uint64_t transferee);
  void MaybeHandOffLeadership();

  Config config_;
  uint64_t id_;
  Logger* logger_;
  Random own_random_;
  Random* random_;

  uint64_t term_ = 0;
  uint64_t vote_ = kNone;
  uint64_t lead_ = kNone;
  StateType state_ = StateType::kFollower;
  bool is_learner_ = false;

  RaftLog log_;
  ProgressTracker tracker_;
  std::vector<raftpb::Message> msgs_;
  std::vector<ReadState> read_states_;
  ReadOnly read_only_;
  // ReadIndex requests that arrived before this leader committed an entry
  // of its term; answered once it has (the thesis 6.4, step 1).
  std::vector<raftpb::Message> pending_read_index_messages_;

  uint64_t lead_transferee_ = kNone;
  // Only one conf change may be pending: a new one is refused until the
  // entry at this index is applied.
  uint64_t pending_conf_index_ = 0;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
};

}  // namespace etcdpp::raft
