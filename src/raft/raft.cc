#include "raft/raft.h"

#include <algorithm>

#include "common/status.h"
#include "raft/errors.h"

namespace etcdpp::raft {

namespace {

// MsgVote context marking a campaign started by MsgTimeoutNow: voters grant
// it even while they still hear from the (transferring) leader.
constexpr char kCampaignTransfer[] = "CampaignTransfer";

bool IsVoteMsg(raftpb::MessageType t) {
  return t == raftpb::MsgVote || t == raftpb::MsgPreVote;
}
bool IsResponseToVote(raftpb::MessageType t) {
  return t == raftpb::MsgVoteResp || t == raftpb::MsgPreVoteResp;
}
raftpb::MessageType VoteRespType(raftpb::MessageType t) {
  return t == raftpb::MsgVote ? raftpb::MsgVoteResp : raftpb::MsgPreVoteResp;
}
std::vector<raftpb::Entry> ToVector(
    const google::protobuf::RepeatedPtrField<raftpb::Entry>& ents) {
  return std::vector<raftpb::Entry>(ents.begin(), ents.end());
}

}  // namespace

const char* StateTypeName(StateType s) {
  switch (s) {
    case StateType::kFollower: return "Follower";
    case StateType::kCandidate: return "Candidate";
    case StateType::kLeader: return "Leader";
    case StateType::kPreCandidate: return "PreCandidate";
  }
  return "?";
}

absl::Status Config::Validate() const {
  if (id == kNone) return absl::InvalidArgumentError("cannot use none as id");
  if (heartbeat_tick <= 0) return absl::InvalidArgumentError("heartbeat tick must be greater than 0");
  if (election_tick <= heartbeat_tick) {
    return absl::InvalidArgumentError("election tick must be greater than heartbeat tick");
  }
  if (storage == nullptr) return absl::InvalidArgumentError("storage cannot be nil");
  if (max_inflight_msgs <= 0) {
    return absl::InvalidArgumentError("max inflight messages must be greater than 0");
  }
  return absl::OkStatus();
}

// ---- ReadOnly ----

void ReadOnly::AddRequest(uint64_t index, const raftpb::Message& m) {
  const std::string& ctx = m.entries(0).data();
  if (pending_.count(ctx)) return;
  pending_.emplace(ctx, Status{m, index, {}});
  queue_.push_back(ctx);
}

const std::set<uint64_t>* ReadOnly::RecvAck(uint64_t id, const std::string& ctx) {
  auto it = pending_.find(ctx);
  if (it == pending_.end()) return nullptr;
  it->second.acks.insert(id);
  return &it->second.acks;
}

std::vector<ReadOnly::Status> ReadOnly::Advance(const std::string& ctx) {
  std::vector<Status> out;
  auto pos = std::find(queue_.begin(), queue_.end(), ctx);
  if (pos == queue_.end()) return out;
  size_t n = pos - queue_.begin() + 1;
  for (size_t i = 0; i < n; ++i) {
    auto it = pending_.find(queue_.front());
    out.push_back(std::move(it->second));
    pending_.erase(it);
    queue_.pop_front();
  }
  return out;
}

// ---- Raft ----

Raft::Raft(const Config& c)
    : config_(c),
      id_(c.id),
      logger_(c.logger ? c.logger : NullLogger::Instance()),
      own_random_(c.id * 0x9e3779b97f4a7c15ULL + 1),
      random_(c.random ? c.random : &own_random_),
      log_(c.storage, logger_, c.max_committed_size_per_ready),
      tracker_(static_cast<size_t>(c.max_inflight_msgs)) {
  ETCDPP_CHECK_OK(c.Validate());
  log_.set_testing_commit_any_term(c.testing.commit_old_term_by_count);
  tracker_.set_testing_count_learner_votes(c.testing.count_learner_votes);
  absl::StatusOr<InitialState> init = c.storage->GetInitialState();
  ETCDPP_CHECK_OK(init.status());
  tracker_.Reset(init->conf_state, log_.LastIndex() + 1);
  is_learner_ = tracker_.IsLearner(id_);
  const raftpb::HardState& hs = init->hard_state;
  if (hs.term() != 0 || hs.vote() != 0 || hs.commit() != 0) {
    ETCDPP_CHECK(hs.commit() >= log_.committed() && hs.commit() <= log_.LastIndex());
    log_.CommitTo(hs.commit());
    term_ = hs.term();
    vote_ = hs.vote();
  }
  if (c.applied > 0) log_.AppliedTo(c.applied);
  BecomeFollower(term_, kNone);
  RAFT_LOG(logger_, kInfo,
           "newRaft %x [term: %d, commit: %d, applied: %d, lastindex: %d, lastterm: %d, "
           "voters: %d, learners: %d]",
           id_, term_, log_.committed(), log_.applied(), log_.LastIndex(), log_.LastTerm(),
           tracker_.voters().size(), tracker_.learners().size());
}

raftpb::HardState Raft::GetHardState() const {
  raftpb::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(log_.committed());
  return hs;
}

void Raft::Send(raftpb::Message m) {
  if (m.from() == kNone) m.set_from(id_);
  if (IsVoteMsg(m.type()) || IsResponseToVote(m.type())) {
    // Votes carry the term they are for (a pre-vote: the future term).
    ETCDPP_CHECK(m.term() != 0);
  } else {
    ETCDPP_CHECK(m.term() == 0);
    // Proposals and read requests are forwarded as local messages.
    if (m.type() != raftpb::MsgProp && m.type() != raftpb::MsgReadIndex) m.set_term(term_);
  }
  msgs_.push_back(std::move(m));
}

bool Raft::MaybeSendAppend(uint64_t to, bool send_if_empty) {
  Progress* pr = tracker_.Get(to);
  if (pr == nullptr || pr->IsPaused()) return false;
  raftpb::Message m;
  m.set_to(to);
  absl::StatusOr<uint64_t> term = log_.Term(pr->next - 1);
  absl::StatusOr<std::vector<raftpb::Entry>> ents =
      log_.Entries(pr->next, config_.max_size_per_msg);
  if (term.ok() && ents.ok() && ents->empty() && !send_if_empty) return false;
  if (!term.ok() && !IsErrCompacted(term.status())) {
    // next-1 beyond our last index: nothing sensible to send yet.
    RAFT_LOG(logger_, kWarn, "%x has no entry at %d for %x", id_, pr->next - 1, to);
    return false;
  }
  if (!term.ok() || !ents.ok()) {
    // The entries the follower needs are compacted: send a snapshot.
    if (!pr->recent_active) {
      RAFT_LOG(logger_, kDebug, "ignore sending snapshot to %x since it is not recently active",
               to);
      return false;
    }
    absl::StatusOr<raftpb::Snapshot> snap = log_.Snapshot();
    if (!snap.ok()) {
      if (IsErrSnapshotTemporarilyUnavailable(snap.status())) {
        RAFT_LOG(logger_, kDebug, "%x failed to send snapshot to %x: temporarily unavailable",
                 id_, to);
        return false;
      }
      ETCDPP_CHECK_OK(snap.status());
    }
    ETCDPP_CHECK(snap->metadata().index() != 0);
    m.set_type(raftpb::MsgSnap);
    uint64_t si = snap->metadata().index();
    *m.mutable_snapshot() = *std::move(snap);
    RAFT_LOG(logger_, kInfo, "%x [firstindex: %d, commit: %d] sent snapshot[index: %d] to %x [%s]",
             id_, log_.FirstIndex(), log_.committed(), si, to, pr->DebugString());
    pr->BecomeSnapshot(si);
  } else {
    m.set_type(raftpb::MsgApp);
    m.set_index(pr->next - 1);
    m.set_log_term(*term);
    m.set_commit(log_.committed());
    for (raftpb::Entry& e : *ents) *m.add_entries() = std::move(e);
    if (m.entries_size() > 0) {
      switch (pr->state) {
        case ProgressState::kReplicate: {
          uint64_t last = m.entries(m.entries_size() - 1).index();
          pr->OptimisticUpdate(last);
          pr->inflights.Add(last);
          break;
        }
        case ProgressState::kProbe:
          pr->probe_sent = true;
          break;
        case ProgressState::kSnapshot:
          ETCDPP_CHECK(false);
      }
    }
  }
  Send(std::move(m));
  return true;
}

void Raft::SendHeartbeat(uint64_t to, const std::string& ctx) {
  // Never tell a follower to commit past what it is known to have.
  const Progress* pr = tracker_.Get(to);
  raftpb::Message m;
  m.set_to(to);
  m.set_type(raftpb::MsgHeartbeat);
  m.set_commit(std::min(pr->match, log_.committed()));
  m.set_context(ctx);
  Send(std::move(m));
}

void Raft::BcastAppend() {
  for (auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendAppend(id);
  }
}

void Raft::BcastHeartbeat() { BcastHeartbeatWithCtx(read_only_.LastPendingRequestCtx()); }

void Raft::BcastHeartbeatWithCtx(const std::string& ctx) {
  for (auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendHeartbeat(id, ctx);
  }
}

void Raft::SendTimeoutNow(uint64_t to) {
  raftpb::Message m;
  m.set_to(to);
  m.set_type(raftpb::MsgTimeoutNow);
  Send(std::move(m));
  if (state_ == StateType::kLeader && !tracker_.IsVoter(id_)) {
    // A removed leader hands off and steps down at once: the transferee's
    // new configuration no longer includes us, so we would never hear its
    // higher term.
    RAFT_LOG(logger_, kInfo, "%x steps down after handing off leadership to %x", id_, to);
    BecomeFollower(term_, kNone);
  }
}

bool Raft::MaybeCommit() { return log_.MaybeCommit(tracker_.Committed(), term_); }

bool Raft::AppendEntries(std::vector<raftpb::Entry> es) {
  uint64_t li = log_.LastIndex();
  for (size_t i = 0; i < es.size(); ++i) {
    es[i].set_term(term_);
    es[i].set_index(li + 1 + i);
  }
  li = log_.Append(es);
  // The leader's own entries count toward commit at once: the application
  // persists them before it applies anything committed in the same Ready.
  if (Progress* self = tracker_.Get(id_)) self->MaybeUpdate(li);
  MaybeCommit();
  return true;
}

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNone;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  tracker_.ResetVotes();
  uint64_t last = log_.LastIndex();
  for (auto& [id, pr] : tracker_.progress()) {
    bool learner = pr.is_learner;
    pr = Progress(static_cast<size_t>(config_.max_inflight_msgs));
    pr.is_learner = learner;
    pr.next = last + 1;
    if (id == id_) pr.match = last;
  }
  pending_conf_index_ = 0;
  read_only_.Reset();
  pending_read_index_messages_.clear();
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      config_.election_tick + static_cast<int>(random_->Uniform(config_.election_tick));
}

void Raft::Tick() {
  if (state_ == StateType::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (promotable() && PastElectionTimeout()) {
    election_elapsed_ = 0;
    raftpb::Message m;
    m.set_from(id_);
    m.set_type(raftpb::MsgHup);
    Step(std::move(m)).IgnoreError();
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_tick) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      raftpb::Message m;
      m.set_from(id_);
      m.set_type(raftpb::MsgCheckQuorum);
      Step(std::move(m)).IgnoreError();
    }
    // A transfer that did not finish within an election timeout is abandoned.
    if (state_ == StateType::kLeader && lead_transferee_ != kNone) AbortLeaderTransfer();
  }
  if (state_ != StateType::kLeader) return;
  MaybeHandOffLeadership();
  if (heartbeat_elapsed_ >= config_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    raftpb::Message m;
    m.set_from(id_);
    m.set_type(raftpb::MsgBeat);
    Step(std::move(m)).IgnoreError();
  }
}

void Raft::BecomeFollower(uint64_t term, uint64_t lead) {
  Reset(term);
  lead_ = lead;
  state_ = StateType::kFollower;
  RAFT_LOG(logger_, kInfo, "%x became follower at term %d", id_, term_);
}

void Raft::BecomeCandidate() {
  ETCDPP_CHECK(state_ != StateType::kLeader);
  Reset(term_ + 1);
  vote_ = id_;
  state_ = StateType::kCandidate;
  RAFT_LOG(logger_, kInfo, "%x became candidate at term %d", id_, term_);
}

void Raft::BecomePreCandidate() {
  ETCDPP_CHECK(state_ != StateType::kLeader);
  // Pre-vote changes neither term nor vote (the thesis 9.6).
  tracker_.ResetVotes();
  lead_ = kNone;
  state_ = StateType::kPreCandidate;
  RAFT_LOG(logger_, kInfo, "%x became pre-candidate at term %d", id_, term_);
}

void Raft::BecomeLeader() {
  ETCDPP_CHECK(state_ != StateType::kFollower);
  Reset(term_);
  lead_ = id_;
  state_ = StateType::kLeader;
  if (Progress* self = tracker_.Get(id_)) self->BecomeReplicate();
  // An empty entry of the new term: committing it commits everything
  // before it (figure 8 of the Raft paper) and lets ReadIndex proceed.
  AppendEntries({raftpb::Entry()});
  // Conf changes wait until this entry is applied (fixes the single-server
  // change bug described on raft-dev, 2015).
  pending_conf_index_ = log_.LastIndex();
  RAFT_LOG(logger_, kInfo, "%x became leader at term %d", id_, term_);
}

bool Raft::HasUnappliedConfChanges() const {
  if (log_.applied() >= log_.committed()) return false;
  absl::StatusOr<std::vector<raftpb::Entry>> ents =
      log_.Slice(log_.applied() + 1, log_.committed() + 1, kNoLimit);
  if (!ents.ok()) return false;
  for (const raftpb::Entry& e : *ents) {
    if (e.type() == raftpb::EntryConfChange) return true;
  }
  return false;
}

void Raft::Hup(CampaignType t) {
  if (state_ == StateType::kLeader) return;
  if (!promotable()) {
    RAFT_LOG(logger_, kWarn, "%x is unpromotable and can not campaign", id_);
    return;
  }
  // Our membership may be about to change: campaigning under the old one
  // could let two configurations elect two leaders.
  if (HasUnappliedConfChanges()) {
    RAFT_LOG(logger_, kWarn, "%x cannot campaign at term %d since there are still pending "
             "configuration changes to apply", id_, term_);
    return;
  }
  RAFT_LOG(logger_, kInfo, "%x is starting a new election at term %d", id_, term_);
  Campaign(t);
}

void Raft::Campaign(CampaignType t) {
  if (!promotable()) return;
  uint64_t term;
  raftpb::MessageType vote_msg;
  if (t == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_msg = raftpb::MsgPreVote;
    term = term_ + 1;
  } else {
    BecomeCandidate();
    vote_msg = raftpb::MsgVote;
    term = term_;
  }
  if (Poll(id_, VoteRespType(vote_msg), true) == VoteResult::kWon) {
    // Single voter: we won at once.
    if (t == CampaignType::kPreElection) {
      Campaign(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  std::vector<uint64_t> targets(tracker_.voters().begin(), tracker_.voters().end());
  if (config_.testing.count_learner_votes) {
    targets.insert(targets.end(), tracker_.learners().begin(), tracker_.learners().end());
  }
  for (uint64_t id : targets) {
    if (id == id_) continue;
    raftpb::Message m;
    m.set_to(id);
    m.set_term(term);
    m.set_type(vote_msg);
    m.set_index(log_.LastIndex());
    m.set_log_term(log_.LastTerm());
    if (t == CampaignType::kTransfer) m.set_context(kCampaignTransfer);
    RAFT_LOG(logger_, kInfo, "%x [logterm: %d, index: %d] sent %s request to %x at term %d",
             id_, log_.LastTerm(), log_.LastIndex(), raftpb::MessageType_Name(vote_msg), id,
             term_);
    Send(std::move(m));
  }
}

VoteResult Raft::Poll(uint64_t id, raftpb::MessageType t, bool granted) {
  RAFT_LOG(logger_, kInfo, "%x received %s %s from %x at term %d", id_,
           raftpb::MessageType_Name(t), granted ? "grant" : "rejection", id, term_);
  tracker_.RecordVote(id, granted);
  int g = 0, r = 0;
  return tracker_.TallyVotes(&g, &r);
}

absl::Status Raft::Step(raftpb::Message m) {
  // Term handling (figure 2, "All Servers"), with the pre-vote and
  // check-quorum refinements.
  if (m.term() == 0) {
    // Local message.
  } else if (m.term() > term_) {
    if (IsVoteMsg(m.type())) {
      bool force = m.context() == kCampaignTransfer;
      bool in_lease = config_.check_quorum && lead_ != kNone &&
                      election_elapsed_ < config_.election_tick;
      if (!force && in_lease) {
        // We heard from a leader within the minimum election timeout: a
        // disruptive (e.g. just-rejoined) node must not depose it.
        RAFT_LOG(logger_, kInfo,
                 "%x [logterm: %d, index: %d, vote: %x] ignored %s from %x [logterm: %d, "
                 "index: %d] at term %d: lease is not expired",
                 id_, log_.LastTerm(), log_.LastIndex(), vote_,
                 raftpb::MessageType_Name(m.type()), m.from(), m.log_term(), m.index(), term_);
        return absl::OkStatus();
      }
    }
    if (m.type() == raftpb::MsgPreVote) {
      // Never change our term in response to a pre-vote.
    } else if (m.type() == raftpb::MsgPreVoteResp && !m.reject()) {
      // The future term we asked about; we bump when we get a quorum.
    } else {
      RAFT_LOG(logger_, kInfo, "%x [term: %d] received a %s message with higher term from %x "
               "[term: %d]", id_, term_, raftpb::MessageType_Name(m.type()), m.from(), m.term());
      if (m.type() == raftpb::MsgApp || m.type() == raftpb::MsgHeartbeat ||
          m.type() == raftpb::MsgSnap) {
        BecomeFollower(m.term(), m.from());
      } else {
        int elapsed = election_elapsed_;
        BecomeFollower(m.term(), kNone);
        // Figure 2: the election timer restarts only on hearing from the
        // leader or granting a vote. A candidate we reject (stale log) must
        // not keep resetting our timer, or a stale node with a fast clock
        // could hold off every election (etcd resets here; we do not).
        if (m.type() == raftpb::MsgVote && !log_.IsUpToDate(m.index(), m.log_term())) {
          election_elapsed_ = elapsed;
        }
      }
    }
  } else if (m.term() < term_) {
    if (m.type() == raftpb::MsgHeartbeat || m.type() == raftpb::MsgApp) {
      // A stale leader learns our term from this and steps down, so a node
      // whose term ran ahead (during a partition) can rejoin. etcd does this
      // only with check_quorum or pre_vote and otherwise relies on our
      // MsgVote reaching the leader; but when our membership is stale (we
      // missed conf changes) our votes go elsewhere, and we would be stuck.
      raftpb::Message r;
      r.set_to(m.from());
      r.set_type(raftpb::MsgAppResp);
      Send(std::move(r));
    } else if (m.type() == raftpb::MsgPreVote) {
      raftpb::Message r;
      r.set_to(m.from());
      r.set_term(term_);
      r.set_type(raftpb::MsgPreVoteResp);
      r.set_reject(true);
      Send(std::move(r));
    } else {
      RAFT_LOG(logger_, kDebug, "%x [term: %d] ignored a %s message with lower term from %x "
               "[term: %d]", id_, term_, raftpb::MessageType_Name(m.type()), m.from(), m.term());
    }
    return absl::OkStatus();
  }

  switch (m.type()) {
    case raftpb::MsgHup:
      Hup(config_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection);
      return absl::OkStatus();
    case raftpb::MsgVote:
    case raftpb::MsgPreVote: {
      // Figure 2, RequestVote: grant if we have not voted for someone else
      // in this term and the candidate's log is at least as up to date.
      bool can_vote = vote_ == m.from() || (vote_ == kNone && lead_ == kNone) ||
                      (m.type() == raftpb::MsgPreVote && m.term() > term_) ||
                      config_.testing.vote_more_than_once;
      raftpb::Message r;
      r.set_to(m.from());
      r.set_type(VoteRespType(m.type()));
      if (can_vote && log_.IsUpToDate(m.index(), m.log_term())) {
        RAFT_LOG(logger_, kInfo, "%x [logterm: %d, index: %d, vote: %x] cast %s for %x "
                 "[logterm: %d, index: %d] at term %d", id_, log_.LastTerm(), log_.LastIndex(),
                 vote_, raftpb::MessageType_Name(m.type()), m.from(), m.log_term(), m.index(),
                 term_);
        r.set_term(m.term());
        Send(std::move(r));
        if (m.type() == raftpb::MsgVote) {
          election_elapsed_ = 0;
          vote_ = m.from();
        }
      } else {
        r.set_term(term_);
        r.set_reject(true);
        Send(std::move(r));
      }
      return absl::OkStatus();
    }
    default:
      break;
  }
  switch (state_) {
    case StateType::kLeader: return StepLeader(m);
    case StateType::kCandidate:
    case StateType::kPreCandidate: return StepCandidate(m);
    case StateType::kFollower: return StepFollower(m);
  }
  return absl::OkStatus();
}

bool Raft::CommittedEntryInCurrentTerm() const {
  return log_.ZeroTermOnErr(log_.committed()) == term_;
}

void Raft::HandleReadIndex(const raftpb::Message& m) {
  auto respond = [&](uint64_t index) {
    if (m.from() == kNone || m.from() == id_) {
      read_states_.push_back(ReadState{index, m.entries(0).data()});
    } else {
      raftpb::Message r;
      r.set_to(m.from());
      r.set_type(raftpb::MsgReadIndexResp);
      r.set_index(index);
      *r.mutable_entries() = m.entries();
      Send(std::move(r));
    }
  };
  if ((tracker_.voters().size() == 1 && tracker_.IsVoter(id_)) ||
      config_.testing.read_index_without_quorum) {
    respond(log_.committed());
    return;
  }
  if (!CommittedEntryInCurrentTerm()) {
    // Our commit index may lag the true one until an entry of this term
    // commits (the thesis 6.4): hold the request until then.
    pending_read_index_messages_.push_back(m);
    return;
  }
  read_only_.AddRequest(log_.committed(), m);
  read_only_.RecvAck(id_, m.entries(0).data());
  BcastHeartbeatWithCtx(m.entries(0).data());
}

void Raft::ReleasePendingReadIndexMessages() {
  if (pending_read_index_messages_.empty() || !CommittedEntryInCurrentTerm()) return;
  std::vector<raftpb::Message> msgs = std::move(pending_read_index_messages_);
  pending_read_index_messages_.clear();
  for (const raftpb::Message& m : msgs) HandleReadIndex(m);
}

void Raft::TransferTo(uint64_t transferee) {
  election_elapsed_ = 0;
  lead_transferee_ = transferee;
  const Progress* pr = tracker_.Get(transferee);
  if (pr->match == log_.LastIndex()) {
    RAFT_LOG(logger_, kInfo, "%x sends MsgTimeoutNow to %x immediately as %x already has "
             "up-to-date log", id_, transferee, transferee);
    SendTimeoutNow(transferee);
  } else {
    SendAppend(transferee);
  }
}

void Raft::MaybeHandOffLeadership() {
  // A leader that applied its own removal hands leadership to the most
  // up-to-date remaining voter instead of leaving the cluster to time out.
  if (state_ != StateType::kLeader || tracker_.IsVoter(id_) || lead_transferee_ != kNone) return;
  uint64_t best = kNone;
  uint64_t best_match = 0;
  for (uint64_t id : tracker_.voters()) {
    const Progress* pr = tracker_.Get(id);
    if (best == kNone || pr->match > best_match) {
      best = id;
      best_match = pr->match;
    }
  }
  if (best == kNone) return;
  RAFT_LOG(logger_, kInfo, "%x is no longer a voter; transferring leadership to %x", id_, best);
  TransferTo(best);
}

absl::Status Raft::StepLeader(raftpb::Message& m) {
  switch (m.type()) {
    case raftpb::MsgBeat:
      BcastHeartbeat();
      return absl::OkStatus();
    case raftpb::MsgCheckQuorum:
      if (!tracker_.QuorumActive(id_)) {
        RAFT_LOG(logger_, kWarn, "%x stepped down to follower since quorum is not active", id_);
        BecomeFollower(term_, kNone);
      }
      for (auto& [id, pr] : tracker_.progress()) {
        if (id != id_) pr.recent_active = false;
      }
      return absl::OkStatus();
    case raftpb::MsgProp: {
      ETCDPP_CHECK(m.entries_size() > 0);
      if (tracker_.Get(id_) == nullptr) return ErrProposalDropped();  // removed
      if (lead_transferee_ != kNone) {
        RAFT_LOG(logger_, kDebug, "%x [term %d] transfer leadership to %x is in progress; "
                 "dropping proposal", id_, term_, lead_transferee_);
        return ErrProposalDropped();
      }
      std::vector<raftpb::Entry> ents = ToVector(m.entries());
      for (size_t i = 0; i < ents.size(); ++i) {
        if (ents[i].type() != raftpb::EntryConfChange) continue;
        if (pending_conf_index_ > log_.applied()) {
          // One membership change at a time: the proposer sees its change
          // come back as an empty normal entry (etcd does the same).
          RAFT_LOG(logger_, kInfo, "%x propose conf change ignored since pending unapplied "
                   "configuration [index %d, applied %d]", id_, pending_conf_index_,
                   log_.applied());
          ents[i] = raftpb::Entry();
        } else {
          pending_conf_index_ = log_.LastIndex() + i + 1;
        }
      }
      AppendEntries(std::move(ents));
      BcastAppend();
      return absl::OkStatus();
    }
    case raftpb::MsgReadIndex:
      HandleReadIndex(m);
      return absl::OkStatus();
    default:
      break;
  }

  Progress* pr = tracker_.Get(m.from());
  if (pr == nullptr) {
    RAFT_LOG(logger_, kDebug, "%x no progress available for %x", id_, m.from());
    return absl::OkStatus();
  }
  switch (m.type()) {
    case raftpb::MsgAppResp: {
      pr->recent_active = true;
      if (m.reject()) {
        RAFT_LOG(logger_, kDebug, "%x received MsgAppResp(rejected, hint: (index %d, term %d)) "
                 "from %x for index %d", id_, m.reject_hint(), m.log_term(), m.from(), m.index());
        // Fast back-off: skip every entry of a term the follower's log
        // cannot match (the follower found its last entry with term <= ours).
        uint64_t next_probe = m.reject_hint();
        if (m.log_term() > 0) next_probe = log_.FindConflictByTerm(m.reject_hint(), m.log_term());
        if (pr->MaybeDecrTo(m.index(), next_probe)) {
          if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
          SendAppend(m.from());
        }
      } else {
        bool old_paused = pr->IsPaused();
        if (pr->MaybeUpdate(m.index())) {
          if (pr->state == ProgressState::kProbe) {
            pr->BecomeReplicate();
          } else if (pr->state == ProgressState::kSnapshot &&
                     pr->match >= pr->pending_snapshot) {
            RAFT_LOG(logger_, kInfo, "%x recovered from needing snapshot, resumed sending "
                     "replication messages to %x [%s]", id_, m.from(), pr->DebugString());
            pr->BecomeProbe();
            pr->BecomeReplicate();
          } else if (pr->state == ProgressState::kReplicate) {
            pr->inflights.FreeLE(m.index());
          }
          if (MaybeCommit()) {
            ReleasePendingReadIndexMessages();
            BcastAppend();
          } else if (old_paused) {
            SendAppend(m.from());
          }
          // Pipelining: keep the window full while there is more to send.
          while (MaybeSendAppend(m.from(), false)) {
          }
          if (m.from() == lead_transferee_ && pr->match == log_.LastIndex()) {
            RAFT_LOG(logger_, kInfo, "%x sent MsgTimeoutNow to %x after received MsgAppResp",
                     id_, m.from());
            SendTimeoutNow(m.from());
          }
        }
      }
      return absl::OkStatus();
    }
    case raftpb::MsgHeartbeatResp: {
      pr->recent_active = true;
      pr->probe_sent = false;
      if (pr->state == ProgressState::kReplicate && pr->inflights.Full()) {
        pr->inflights.FreeFirstOne();
      }
      if (pr->match < log_.LastIndex()) SendAppend(m.from());
      if (m.context().empty()) return absl::OkStatus();
      const std::set<uint64_t>* acks = read_only_.RecvAck(m.from(), m.context());
      if (acks == nullptr || !tracker_.IsQuorum(*acks)) return absl::OkStatus();
      for (ReadOnly::Status& rs : read_only_.Advance(m.context())) {
        if (rs.req.from() == kNone || rs.req.from() == id_) {
          read_states_.push_back(ReadState{rs.index, rs.req.entries(0).data()});
        } else {
          raftpb::Message r;
          r.set_to(rs.req.from());
          r.set_type(raftpb::MsgReadIndexResp);
          r.set_index(rs.index);
          *r.mutable_entries() = rs.req.entries();
          Send(std::move(r));
        }
      }
      return absl::OkStatus();
    }
    case raftpb::MsgSnapStatus:
      if (pr->state != ProgressState::kSnapshot) return absl::OkStatus();
      if (!m.reject()) {
        pr->BecomeProbe();
      } else {
        pr->pending_snapshot = 0;
        pr->BecomeProbe();
      }
      // Wait for a heartbeat answer (or the MsgAppResp) before probing.
      pr->probe_sent = true;
      return absl::OkStatus();
    case raftpb::MsgUnreachable:
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      return absl::OkStatus();
    case raftpb::MsgTransferLeader: {
      if (pr->is_learner) {
        RAFT_LOG(logger_, kDebug, "%x is learner. Ignored transferring leadership", id_);
        return absl::OkStatus();
      }
      uint64_t transferee = m.from();
      if (lead_transferee_ != kNone) {
        if (lead_transferee_ == transferee) return absl::OkStatus();
        AbortLeaderTransfer();
      }
      if (transferee == id_) return absl::OkStatus();
      RAFT_LOG(logger_, kInfo, "%x [term %d] starts to transfer leadership to %x", id_, term_,
               transferee);
      TransferTo(transferee);
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status Raft::StepCandidate(raftpb::Message& m) {
  raftpb::MessageType my_resp = state_ == StateType::kPreCandidate ? raftpb::MsgPreVoteResp
                                                                   : raftpb::MsgVoteResp;
  switch (m.type()) {
    case raftpb::MsgProp:
      return ErrProposalDropped();
    case raftpb::MsgApp:
      BecomeFollower(m.term(), m.from());
      HandleAppendEntries(m);
      return absl::OkStatus();
    case raftpb::MsgHeartbeat:
      BecomeFollower(m.term(), m.from());
      HandleHeartbeat(m);
      return absl::OkStatus();
    case raftpb::MsgSnap:
      BecomeFollower(m.term(), m.from());
      HandleSnapshot(m);
      return absl::OkStatus();
    case raftpb::MsgVoteResp:
    case raftpb::MsgPreVoteResp: {
      if (m.type() != my_resp) return absl::OkStatus();
      VoteResult res = Poll(m.from(), m.type(), !m.reject());
      if (res == VoteResult::kWon) {
        if (state_ == StateType::kPreCandidate) {
          Campaign(CampaignType::kElection);
        } else {
          BecomeLeader();
          BcastAppend();
        }
      } else if (res == VoteResult::kLost) {
        BecomeFollower(term_, kNone);
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status Raft::StepFollower(raftpb::Message& m) {
  switch (m.type()) {
    case raftpb::MsgProp:
      if (lead_ == kNone) {
        RAFT_LOG(logger_, kDebug, "%x no leader at term %d; dropping proposal", id_, term_);
        return ErrProposalDropped();
      }
      m.set_to(lead_);
      m.set_term(0);
      Send(std::move(m));
      return absl::OkStatus();
    case raftpb::MsgApp:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleAppendEntries(m);
      return absl::OkStatus();
    case raftpb::MsgHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleHeartbeat(m);
      return absl::OkStatus();
    case raftpb::MsgSnap:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleSnapshot(m);
      return absl::OkStatus();
    case raftpb::MsgTransferLeader:
      if (lead_ == kNone) return ErrProposalDropped();
      m.set_to(lead_);
      m.set_term(0);
      Send(std::move(m));
      return absl::OkStatus();
    case raftpb::MsgTimeoutNow:
      RAFT_LOG(logger_, kInfo, "%x [term %d] received MsgTimeoutNow from %x and starts an "
               "election to get leadership", id_, term_, m.from());
      // Leader transfer skips pre-vote: the old leader asked for it.
      Hup(CampaignType::kTransfer);
      return absl::OkStatus();
    case raftpb::MsgReadIndex:
      if (lead_ == kNone) return ErrProposalDropped();
      m.set_to(lead_);
      m.set_term(0);
      Send(std::move(m));
      return absl::OkStatus();
    case raftpb::MsgReadIndexResp:
      if (m.entries_size() != 1) return absl::OkStatus();
      read_states_.push_back(ReadState{m.index(), m.entries(0).data()});
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

void Raft::HandleAppendEntries(const raftpb::Message& m) {
  raftpb::Message r;
  r.set_to(m.from());
  r.set_type(raftpb::MsgAppResp);
  if (m.index() < log_.committed()) {
    r.set_index(log_.committed());
    Send(std::move(r));
    return;
  }
  if (std::optional<uint64_t> last_new =
          log_.MaybeAppend(m.index(), m.log_term(), m.commit(), ToVector(m.entries()))) {
    r.set_index(*last_new);
    Send(std::move(r));
    return;
  }
  // Log matching failed at (index, log_term). Hint the largest index whose
  // term is <= log_term, so the leader can skip whole terms.
  uint64_t hint = std::min(m.index(), log_.LastIndex());
  hint = log_.FindConflictByTerm(hint, m.log_term());
  RAFT_LOG(logger_, kDebug, "%x [logterm: %d, index: %d] rejected MsgApp [logterm: %d, index: "
           "%d] from %x", id_, log_.ZeroTermOnErr(m.index()), m.index(), m.log_term(),
           m.index(), m.from());
  r.set_index(m.index());
  r.set_reject(true);
  r.set_reject_hint(hint);
  r.set_log_term(log_.ZeroTermOnErr(hint));
  Send(std::move(r));
}

void Raft::HandleHeartbeat(const raftpb::Message& m) {
  log_.CommitTo(m.commit());
  raftpb::Message r;
  r.set_to(m.from());
  r.set_type(raftpb::MsgHeartbeatResp);
  r.set_context(m.context());
  Send(std::move(r));
}

void Raft::HandleSnapshot(const raftpb::Message& m) {
  raftpb::Message r;
  r.set_to(m.from());
  r.set_type(raftpb::MsgAppResp);
  if (Restore(m.snapshot())) {
    RAFT_LOG(logger_, kInfo, "%x [commit: %d] restored snapshot [index: %d, term: %d]", id_,
             log_.committed(), m.snapshot().metadata().index(), m.snapshot().metadata().term());
    r.set_index(log_.LastIndex());
  } else {
    RAFT_LOG(logger_, kInfo, "%x [commit: %d] ignored snapshot [index: %d, term: %d]", id_,
             log_.committed(), m.snapshot().metadata().index(), m.snapshot().metadata().term());
    r.set_index(log_.committed());
  }
  Send(std::move(r));
}

bool Raft::Restore(const raftpb::Snapshot& s) {
  const raftpb::SnapshotMetadata& md = s.metadata();
  if (md.index() <= log_.committed()) return false;
  if (state_ != StateType::kFollower) {
    // Defensive (etcd does the same): only followers install snapshots.
    BecomeFollower(term_ + 1, kNone);
    return false;
  }
  const raftpb::ConfState& cs = md.conf_state();
  bool found = std::find(cs.voters().begin(), cs.voters().end(), id_) != cs.voters().end() ||
               std::find(cs.learners().begin(), cs.learners().end(), id_) != cs.learners().end();
  if (!found) {
    // Unlike etcd we accept it: a member added after the snapshot was taken
    // (its log compacted away meanwhile) learns of itself from the entries
    // that follow; a removed member learns it is out. The snapshot holds only
    // committed state either way, and no code path assumes we have progress.
    RAFT_LOG(logger_, kInfo, "%x restoring a snapshot [index: %d] whose ConfState does not "
             "include it", id_, md.index());
  }
  // Our log already has the snapshot's last entry: just fast-forward.
  if (log_.MatchTerm(md.index(), md.term())) {
    log_.CommitTo(md.index());
    return false;
  }
  log_.Restore(s);
  tracker_.Reset(cs, log_.LastIndex() + 1);
  if (Progress* self = tracker_.Get(id_)) self->match = log_.LastIndex();
  is_learner_ = tracker_.IsLearner(id_);
  return true;
}

raftpb::ConfState Raft::ApplyConfChange(const raftpb::ConfChange& cc) {
  uint64_t id = cc.node_id();
  if (id == kNone) return tracker_.ConfState();
  std::vector<uint64_t> added;
  switch (cc.type()) {
    case raftpb::ConfChangeAddNode:
      if (tracker_.IsLearner(id)) {
        tracker_.Promote(id);
      } else if (!tracker_.IsVoter(id)) {
        tracker_.AddProgress(id, 0, log_.LastIndex() + 1, false);
        added.push_back(id);
      }
      break;
    case raftpb::ConfChangeAddLearnerNode:
      if (tracker_.IsVoter(id)) {
        RAFT_LOG(logger_, kWarn, "%x ignored addLearner: cannot demote voter %x", id_, id);
      } else if (!tracker_.IsLearner(id)) {
        tracker_.AddProgress(id, 0, log_.LastIndex() + 1, true);
        added.push_back(id);
      }
      break;
    case raftpb::ConfChangeRemoveNode:
      tracker_.Remove(id);
      if (id == lead_transferee_) AbortLeaderTransfer();
      break;
    case raftpb::ConfChangeUpdateNode:
    default:
      break;
  }
  is_learner_ = tracker_.IsLearner(id_);
  RAFT_LOG(logger_, kInfo, "%x applied conf change %s of %x: %d voters, %d learners", id_,
           raftpb::ConfChangeType_Name(cc.type()), id, tracker_.voters().size(),
           tracker_.learners().size());
  if (state_ == StateType::kLeader) {
    if (Progress* self = tracker_.Get(id_)) self->match = std::max(self->match, log_.LastIndex());
    // The quorum changed: something may now be committed.
    if (MaybeCommit()) {
      ReleasePendingReadIndexMessages();
      BcastAppend();
    }
    for (uint64_t a : added) SendAppend(a);
    MaybeHandOffLeadership();
  }
  return tracker_.ConfState();
}

void Raft::Bootstrap(const std::vector<uint64_t>& voters) {
  ETCDPP_CHECK(log_.LastIndex() == 0);
  ETCDPP_CHECK(!voters.empty());
  BecomeFollower(1, kNone);
  std::vector<raftpb::Entry> ents;
  for (size_t i = 0; i < voters.size(); ++i) {
    raftpb::ConfChange cc;
    cc.set_type(raftpb::ConfChangeAddNode);
    cc.set_node_id(voters[i]);
    raftpb::Entry e;
    e.set_type(raftpb::EntryConfChange);
    e.set_term(1);
    e.set_index(i + 1);
    e.set_data(cc.SerializeAsString());
    ents.push_back(std::move(e));
  }
  log_.Append(ents);
  // The bootstrap entries are committed by definition; the application
  // applies them (again, harmlessly) when they appear in a Ready.
  log_.CommitTo(ents.size());
  for (uint64_t id : voters) {
    raftpb::ConfChange cc;
    cc.set_type(raftpb::ConfChangeAddNode);
    cc.set_node_id(id);
    ApplyConfChange(cc);
  }
}

void Raft::AdvanceApplied(uint64_t applied) { log_.AppliedTo(applied); }

}  // namespace etcdpp::raft
