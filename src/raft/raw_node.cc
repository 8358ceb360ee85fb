#include "raft/raw_node.h"

#include "common/status.h"

namespace etcdpp::raft {

namespace {

bool IsLocalMsg(raftpb::MessageType t) {
  return t == raftpb::MsgHup || t == raftpb::MsgBeat || t == raftpb::MsgUnreachable ||
         t == raftpb::MsgSnapStatus || t == raftpb::MsgCheckQuorum;
}

bool IsResponseMsg(raftpb::MessageType t) {
  return t == raftpb::MsgAppResp || t == raftpb::MsgVoteResp ||
         t == raftpb::MsgHeartbeatResp || t == raftpb::MsgUnreachable ||
         t == raftpb::MsgPreVoteResp;
}

bool HardStateEqual(const raftpb::HardState& a, const raftpb::HardState& b) {
  return a.term() == b.term() && a.vote() == b.vote() && a.commit() == b.commit();
}

bool HardStateEmpty(const raftpb::HardState& hs) {
  return hs.term() == 0 && hs.vote() == 0 && hs.commit() == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RawNode>> RawNode::Create(const Config& c) {
  ETCDPP_RETURN_IF_ERROR(c.Validate());
  return std::make_unique<RawNode>(c);
}

RawNode::RawNode(const Config& c) : raft_(c) {
  prev_soft_ = raft_.GetSoftState();
  prev_hard_ = raft_.GetHardState();
}

absl::Status RawNode::Bootstrap(const std::vector<uint64_t>& voters) {
  if (voters.empty()) return absl::InvalidArgumentError("must provide at least one peer");
  if (raft_.log().LastIndex() != 0) {
    return absl::FailedPreconditionError("can't bootstrap a nonempty Storage");
  }
  raft_.Bootstrap(voters);
  // The hard state (term 1, commit n) is new: report it in the next Ready.
  prev_hard_ = raftpb::HardState();
  return absl::OkStatus();
}

void RawNode::Tick() { raft_.Tick(); }

absl::Status RawNode::Campaign() {
  raftpb::Message m;
  m.set_type(raftpb::MsgHup);
  return raft_.Step(std::move(m));
}

absl::Status RawNode::Propose(std::string data) {
  raftpb::Message m;
  m.set_type(raftpb::MsgProp);
  m.set_from(raft_.id());
  m.add_entries()->set_data(std::move(data));
  return raft_.Step(std::move(m));
}

absl::Status RawNode::ProposeBatch(std::vector<std::string> data) {
  if (data.empty()) return absl::OkStatus();
  raftpb::Message m;
  m.set_type(raftpb::MsgProp);
  m.set_from(raft_.id());
  for (std::string& d : data) m.add_entries()->set_data(std::move(d));
  return raft_.Step(std::move(m));
}

absl::Status RawNode::ProposeConfChange(const raftpb::ConfChange& cc) {
  raftpb::Message m;
  m.set_type(raftpb::MsgProp);
  m.set_from(raft_.id());
  raftpb::Entry* e = m.add_entries();
  e->set_type(raftpb::EntryConfChange);
  e->set_data(cc.SerializeAsString());
  return raft_.Step(std::move(m));
}

raftpb::ConfState RawNode::ApplyConfChange(const raftpb::ConfChange& cc) {
  return raft_.ApplyConfChange(cc);
}

absl::Status RawNode::Step(raftpb::Message m) {
  if (IsLocalMsg(m.type())) return ErrStepLocalMsg();
  if (IsResponseMsg(m.type()) && raft_.tracker().Get(m.from()) == nullptr) {
    return ErrStepPeerNotFound();
  }
  return raft_.Step(std::move(m));
}

void RawNode::ReadIndex(std::string ctx) {
  raftpb::Message m;
  m.set_type(raftpb::MsgReadIndex);
  m.add_entries()->set_data(std::move(ctx));
  raft_.Step(std::move(m)).IgnoreError();  // dropped without a leader: retry
}

void RawNode::TransferLeader(uint64_t transferee) {
  raftpb::Message m;
  m.set_type(raftpb::MsgTransferLeader);
  m.set_from(transferee);
  raft_.Step(std::move(m)).IgnoreError();
}

void RawNode::ReportUnreachable(uint64_t id) {
  raftpb::Message m;
  m.set_type(raftpb::MsgUnreachable);
  m.set_from(id);
  raft_.Step(std::move(m)).IgnoreError();
}

void RawNode::ReportSnapshot(uint64_t id, SnapshotStatus status) {
  raftpb::Message m;
  m.set_type(raftpb::MsgSnapStatus);
  m.set_from(id);
  m.set_reject(status == SnapshotStatus::kFailure);
  raft_.Step(std::move(m)).IgnoreError();
}

bool RawNode::HasReady() const {
  const RaftLog& log = raft_.log();
  if (!(raft_.GetSoftState() == prev_soft_)) return true;
  raftpb::HardState hs = raft_.GetHardState();
  if (!HardStateEmpty(hs) && !HardStateEqual(hs, prev_hard_)) return true;
  if (log.HasPendingSnapshot()) return true;
  if (!log.UnstableEntries().empty() || log.HasNextEnts()) return true;
  if (!raft_.msgs().empty() || !raft_.read_states().empty()) return true;
  return false;
}

Ready RawNode::GetReady() {
  ETCDPP_CHECK(!ready_outstanding_);
  Ready rd;
  RaftLog& log = raft_.log();
  rd.entries = log.UnstableEntries();
  rd.committed_entries = log.NextEnts();
  rd.messages = std::move(raft_.msgs());
  raft_.msgs().clear();
  SoftState ss = raft_.GetSoftState();
  if (!(ss == prev_soft_)) {
    rd.soft_state = ss;
    prev_soft_ = ss;
  }
  raftpb::HardState hs = raft_.GetHardState();
  if (!HardStateEmpty(hs) && !HardStateEqual(hs, prev_hard_)) {
    rd.must_sync = !rd.entries.empty() || hs.term() != prev_hard_.term() ||
                   hs.vote() != prev_hard_.vote();
    rd.hard_state = hs;
    prev_hard_ = hs;
  }
  if (!rd.entries.empty()) rd.must_sync = true;
  if (log.UnstableSnapshot()) {
    rd.snapshot = *log.UnstableSnapshot();
    rd.must_sync = true;
  }
  rd.read_states = std::move(raft_.read_states());
  raft_.read_states().clear();

  ready_outstanding_ = true;
  rd_last_entry_.reset();
  if (!rd.entries.empty()) {
    rd_last_entry_ = std::make_pair(rd.entries.back().index(), rd.entries.back().term());
  }
  rd_snapshot_index_.reset();
  if (rd.snapshot) rd_snapshot_index_ = rd.snapshot->metadata().index();
  rd_last_committed_ = rd.committed_entries.empty() ? 0 : rd.committed_entries.back().index();
  return rd;
}

void RawNode::Advance() {
  ETCDPP_CHECK(ready_outstanding_);
  ready_outstanding_ = false;
  RaftLog& log = raft_.log();
  if (rd_snapshot_index_) {
    log.StableSnapTo(*rd_snapshot_index_);
    // The application installed the snapshot: it has applied up to it.
    if (*rd_snapshot_index_ > log.applied()) raft_.AdvanceApplied(*rd_snapshot_index_);
  }
  if (rd_last_committed_ != 0) raft_.AdvanceApplied(rd_last_committed_);
  if (rd_last_entry_) log.StableTo(rd_last_entry_->first, rd_last_entry_->second);
}

RaftStatus RawNode::GetStatus() const {
  RaftStatus s;
  s.id = raft_.id();
  s.hard_state = raft_.GetHardState();
  s.soft_state = raft_.GetSoftState();
  s.applied = raft_.log().applied();
  s.lead_transferee = raft_.lead_transferee();
  s.conf_state = raft_.tracker().ConfState();
  if (raft_.state() == StateType::kLeader) s.progress = raft_.tracker().progress();
  return s;
}

}  // namespace etcdpp::raft
