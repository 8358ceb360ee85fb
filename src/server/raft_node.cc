#include "server/raft_node.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace etcdpp::server {
namespace {

// The raft core's log lines go to spdlog's "raft" logger.
class SpdlogRaftLogger final : public raft::Logger {
 public:
  SpdlogRaftLogger() {
    logger_ = spdlog::get("raft");
    if (!logger_) logger_ = spdlog::default_logger();
  }
  bool Enabled(raft::LogLevel level) const override {
    return logger_->should_log(ToSpd(level));
  }
  void Log(raft::LogLevel level, std::string_view message) override {
    logger_->log(ToSpd(level), "{}", message);
  }

 private:
  static spdlog::level::level_enum ToSpd(raft::LogLevel l) {
    switch (l) {
      case raft::LogLevel::kDebug: return spdlog::level::debug;
      case raft::LogLevel::kInfo: return spdlog::level::info;
      case raft::LogLevel::kWarn: return spdlog::level::warn;
      default: return spdlog::level::err;
    }
  }
  std::shared_ptr<spdlog::logger> logger_;
};

raft::Logger* RaftLogger() {
  static SpdlogRaftLogger logger;
  return &logger;
}

bool OnlyVoterIs(const std::vector<uint64_t>& voters, uint64_t id) {
  return voters.size() == 1 && voters[0] == id;
}

}  // namespace

RaftNode::RaftNode(Options options) : options_(std::move(options)), id_(options_.id) {}

absl::StatusOr<std::unique_ptr<RaftNode>> RaftNode::Start(Options options) {
  ETCDPP_CHECK(options.clock != nullptr);
  std::unique_ptr<RaftNode> n(new RaftNode(std::move(options)));
  ETCDPP_RETURN_IF_ERROR(n->Init());
  n->thread_ = std::thread([p = n.get()] { p->Loop(); });
  return n;
}

absl::Status RaftNode::Init() {
  const bool existed = wal::Wal::Exists(options_.wal_dir);
  if (!existed) {
    ETCDPP_ASSIGN_OR_RETURN(
        wal_, wal::Wal::Create(options_.wal_dir, options_.wal_metadata, options_.wal_options));
  } else {
    // Start from the newest snapshot marker the state machine has covered
    // (it made everything up to the marker durable before the marker was
    // written, so its applied index is at least the marker's).
    ETCDPP_ASSIGN_OR_RETURN(std::vector<wal::SnapshotMarker> markers,
                            wal::Wal::ReadSnapshotMarkers(options_.wal_dir));
    wal::SnapshotMarker from;
    for (const wal::SnapshotMarker& m : markers) {
      if (m.index <= options_.applied_index && m.index >= from.index) from = m;
    }
    ETCDPP_ASSIGN_OR_RETURN(wal_, wal::Wal::Open(options_.wal_dir, from, options_.wal_options));
    ETCDPP_ASSIGN_OR_RETURN(wal::ReadResult rr, wal_->ReadAll());
    if (from.index > 0) {
      raftpb::Snapshot snap;
      snap.mutable_metadata()->set_index(from.index);
      snap.mutable_metadata()->set_term(from.term);
      *snap.mutable_metadata()->mutable_conf_state() = options_.applied_conf_state;
      ETCDPP_RETURN_IF_ERROR(storage_.ApplySnapshot(snap));
      snapshot_index_ = from.index;
    }
    if (rr.metadata != options_.wal_metadata) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the WAL in ", options_.wal_dir, " belongs to another member or cluster"));
    }
    raftpb::HardState hs;
    hs.set_term(rr.hard_state.term);
    hs.set_vote(rr.hard_state.vote);
    hs.set_commit(rr.hard_state.commit);
    storage_.SetHardState(hs);
    term_ = hs.term();
    commit_ = hs.commit();
    std::vector<raftpb::Entry> entries;
    entries.reserve(rr.entries.size());
    for (const wal::Entry& e : rr.entries) {
      raftpb::Entry pe;
      if (!pe.ParseFromString(e.data) || pe.index() != e.index || pe.term() != e.term) {
        return absl::DataLossError(absl::StrCat("WAL entry ", e.index, " in ", options_.wal_dir,
                                                " does not decode as a raft entry"));
      }
      entries.push_back(std::move(pe));
    }
    ETCDPP_RETURN_IF_ERROR(storage_.Append(entries));
    ETCDPP_ASSIGN_OR_RETURN(uint64_t last, storage_.LastIndex());
    if (options_.applied_index > last) {
      return absl::DataLossError(absl::StrCat(
          "the store has applied index ", options_.applied_index, " but the WAL in ",
          options_.wal_dir, " ends at ", last, ": the WAL lost acknowledged entries"));
    }
    spdlog::get("etcdserver")
        ? spdlog::get("etcdserver")->info("replaying WAL: {} entries, term {}, commit {}, applied {}",
                                         entries.size(), hs.term(), hs.commit(),
                                         options_.applied_index)
        : void();
  }
  storage_.SetConfState(options_.applied_conf_state);

  raft::Config c;
  c.id = id_;
  c.election_tick = options_.election_ticks;
  c.heartbeat_tick = 1;
  c.storage = &storage_;
  c.applied = options_.applied_index;
  c.pre_vote = options_.pre_vote;
  c.check_quorum = true;
  c.logger = RaftLogger();
  if (existed && options_.force_new_cluster) ETCDPP_RETURN_IF_ERROR(ForceNewCluster());
  ETCDPP_ASSIGN_OR_RETURN(node_, raft::RawNode::Create(c));
  if (!existed) {
    // A member joining an existing cluster starts empty and hears from the
    // leader; one of a new cluster writes the bootstrap entries.
    if (!options_.bootstrap_voters.empty()) {
      ETCDPP_RETURN_IF_ERROR(node_->Bootstrap(options_.bootstrap_voters));
    }
    campaign_at_start_ = OnlyVoterIs(options_.bootstrap_voters, id_);
  } else {
    std::vector<uint64_t> voters(options_.applied_conf_state.voters().begin(),
                                 options_.applied_conf_state.voters().end());
    campaign_at_start_ = voters.empty() ? OnlyVoterIs(options_.bootstrap_voters, id_)
                                        : OnlyVoterIs(voters, id_);
  }
  return absl::OkStatus();
}

absl::Status RaftNode::ForceNewCluster() {
  // Who else is a member as of the last committed entry: the membership as
  // of the applied index, then every committed conf change after it.
  ETCDPP_ASSIGN_OR_RETURN(uint64_t first, storage_.FirstIndex());
  ETCDPP_ASSIGN_OR_RETURN(uint64_t last, storage_.LastIndex());
  raftpb::HardState hs = storage_.hard_state();
  const uint64_t commit = std::min(hs.commit(), last);
  std::set<uint64_t> others;
  for (uint64_t id : options_.applied_conf_state.voters()) others.insert(id);
  for (uint64_t id : options_.applied_conf_state.learners()) others.insert(id);
  std::vector<raftpb::Entry> committed;
  if (commit >= first) {
    ETCDPP_ASSIGN_OR_RETURN(committed, storage_.Entries(first, commit + 1, UINT64_MAX));
  }
  for (const raftpb::Entry& e : committed) {
    if (e.index() <= options_.applied_index || e.type() != raftpb::EntryConfChange) continue;
    raftpb::ConfChange cc;
    if (!cc.ParseFromString(e.data())) continue;
    if (cc.type() == raftpb::ConfChangeRemoveNode) others.erase(cc.node_id());
    else if (cc.type() != raftpb::ConfChangeUpdateNode) others.insert(cc.node_id());
  }
  others.erase(id_);
  // Drop the uncommitted tail: nobody else will ever vote for it.
  uint64_t term = hs.term();
  if (commit >= first) {
    ETCDPP_ASSIGN_OR_RETURN(term, storage_.Term(commit));
    term = std::max(term, hs.term());
  }
  std::vector<raftpb::Entry> ents;
  uint64_t index = commit;
  for (uint64_t id : others) {
    raftpb::ConfChange cc;
    cc.set_type(raftpb::ConfChangeRemoveNode);
    cc.set_node_id(id);
    raftpb::Entry e;
    e.set_type(raftpb::EntryConfChange);
    e.set_term(term);
    e.set_index(++index);
    e.set_data(cc.SerializeAsString());
    ents.push_back(std::move(e));
  }
  hs.set_commit(index);
  hs.set_term(term);
  std::vector<wal::Entry> wents;
  for (const raftpb::Entry& e : ents) wents.push_back({e.index(), e.term(), e.SerializeAsString()});
  // An empty batch still rewrites the hard state (commit) durably.
  ETCDPP_RETURN_IF_ERROR(wal_->Save({hs.term(), hs.vote(), hs.commit()}, wents, true));
  // (With nobody to remove, an uncommitted tail stays: this member, now
  // alone, commits it as any new leader would.)
  if (!ents.empty()) ETCDPP_RETURN_IF_ERROR(storage_.Append(ents));
  storage_.SetHardState(hs);
  commit_ = hs.commit();
  auto log = spdlog::get("etcdserver");
  if (log) {
    log->warn("forcing a new cluster: removing {} other member(s) at commit index {}",
              others.size(), index);
  }
  return absl::OkStatus();
}

RaftNode::~RaftNode() { Stop(); }

void RaftNode::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (wal_) {
    absl::Status st = wal_->Close();
    if (!st.ok()) spdlog::default_logger()->error("closing the WAL: {}", st.ToString());
    wal_.reset();
  }
}

void RaftNode::Enqueue(Task task) {
  absl::MutexLock l(&mu_);
  if (!stopping_) inbox_.push_back(std::move(task));
}

void RaftNode::Propose(std::string data, Dropped on_dropped, uint64_t leader_term) {
  Enqueue([data = std::move(data), on_dropped = std::move(on_dropped),
           leader_term](raft::RawNode& n) mutable {
    if (leader_term != 0 &&
        (n.raft().state() != raft::StateType::kLeader || n.raft().term() != leader_term)) {
      if (on_dropped) on_dropped(raft::ErrProposalDropped(), std::string());
      return;
    }
    if (n.raft().lead() == raft::kNone) {
      if (on_dropped) on_dropped(raft::ErrProposalDropped(), std::move(data));
      return;
    }
    absl::Status st = n.Propose(std::move(data));
    if (!st.ok() && on_dropped) on_dropped(st, std::string());
  });
}

void RaftNode::Step(raftpb::Message m) {
  Enqueue([m = std::move(m)](raft::RawNode& n) mutable { (void)n.Step(std::move(m)); });
}

void RaftNode::ReadIndex(std::string ctx) {
  Enqueue([ctx = std::move(ctx)](raft::RawNode& n) mutable { n.ReadIndex(std::move(ctx)); });
}

void RaftNode::ProposeConfChange(raftpb::ConfChange cc, Dropped on_dropped) {
  Enqueue([cc = std::move(cc), on_dropped = std::move(on_dropped)](raft::RawNode& n) {
    if (n.raft().lead() == raft::kNone) {
      if (on_dropped) on_dropped(raft::ErrProposalDropped(), cc.SerializeAsString());
      return;
    }
    absl::Status st = n.ProposeConfChange(cc);
    if (!st.ok() && on_dropped) on_dropped(st, std::string());
  });
}

void RaftNode::TransferLeader(uint64_t transferee) {
  Enqueue([transferee](raft::RawNode& n) { n.TransferLeader(transferee); });
}

void RaftNode::ReportUnreachable(uint64_t id) {
  Enqueue([id](raft::RawNode& n) { n.ReportUnreachable(id); });
}

void RaftNode::ReportSnapshot(uint64_t id, bool ok) {
  Enqueue([id, ok](raft::RawNode& n) {
    n.ReportSnapshot(id, ok ? raft::SnapshotStatus::kFinish : raft::SnapshotStatus::kFailure);
  });
}

raft::RaftStatus RaftNode::Status() {
  auto done = std::make_shared<absl::Notification>();
  auto out = std::make_shared<raft::RaftStatus>();
  Enqueue([done, out](raft::RawNode& n) {
    *out = n.GetStatus();
    done->Notify();
  });
  while (!done->WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    absl::MutexLock l(&mu_);
    if (stopping_) return raft::RaftStatus();
  }
  return *out;
}

void RaftNode::CompactLog(uint64_t index, raftpb::ConfState cs) {
  Enqueue([this, index, cs = std::move(cs)](raft::RawNode&) {
    if (index <= snapshot_index_) return;
    auto term = storage_.Term(index);
    if (!term.ok()) return;  // not in the log (yet): try next time
    auto snap = storage_.CreateSnapshot(index, cs, "");
    if (!snap.ok()) return;
    uint64_t first = storage_.FirstIndex().value_or(0);
    if (index > options_.catch_up_entries && index - options_.catch_up_entries > first) {
      ETCDPP_CHECK_OK(storage_.Compact(index - options_.catch_up_entries));
    }
    ETCDPP_CHECK_OK(wal_->SaveSnapshot(wal::SnapshotMarker{index, *term}));
    ETCDPP_CHECK_OK(wal_->ReleaseTo(index));
    snapshot_index_ = index;
    auto log = spdlog::get("etcdserver");
    if (log) log->info("compacted raft log at index {} (term {})", index, *term);
  });
}

raftpb::ConfState RaftNode::ApplyConfChange(const raftpb::ConfChange& cc) {
  auto done = std::make_shared<absl::Notification>();
  auto out = std::make_shared<raftpb::ConfState>();
  Enqueue([cc, done, out](raft::RawNode& n) {
    *out = n.ApplyConfChange(cc);
    done->Notify();
  });
  // The node thread may be stopping: never wait for it forever.
  while (!done->WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    absl::MutexLock l(&mu_);
    if (stopping_) return raftpb::ConfState();
  }
  return *out;
}

void RaftNode::Loop() {
  Clock* clock = options_.clock;
  auto next_tick = clock->Now() + options_.tick_interval;
  for (;;) {
    // A single voter elects itself as soon as Raft lets it (once the
    // bootstrap conf changes are handed out), not after an election timeout.
    if (campaign_at_start_) {
      raft::RaftStatus st = node_->GetStatus();
      if (st.applied >= st.hard_state.commit()) {
        (void)node_->Campaign();
        campaign_at_start_ = false;
      }
    }
    std::deque<Task> tasks;
    {
      absl::MutexLock l(&mu_);
      auto wait = next_tick - clock->Now();
      if (wait > std::chrono::steady_clock::duration::zero() && inbox_.empty() && !stopping_) {
        mu_.AwaitWithTimeout(absl::Condition(
                                 +[](RaftNode* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(n->mu_) {
                                   return n->stopping_ || !n->inbox_.empty();
                                 },
                                 this),
                             absl::FromChrono(wait));
      }
      if (stopping_) return;
      tasks.swap(inbox_);
    }
    for (Task& t : tasks) t(*node_);
    auto now = clock->Now();
    if (now >= next_tick) {
      node_->Tick();
      next_tick += options_.tick_interval;
      if (next_tick < now) next_tick = now + options_.tick_interval;  // fell behind: no burst
    }
    while (node_->HasReady()) HandleReady(node_->GetReady());
  }
}

void RaftNode::HandleReady(raft::Ready rd) {
  if (rd.hard_state) {
    term_ = rd.hard_state->term();
    commit_ = rd.hard_state->commit();
  }
  if (rd.soft_state) {
    lead_ = rd.soft_state->lead;
    if (options_.on_leader_change) options_.on_leader_change(rd.soft_state->lead, term_.load());
  }
  // 0. A snapshot from the leader: its marker goes to the WAL first (the
  // entries of this Ready follow it), then the log restarts at it.
  if (rd.snapshot) {
    const auto& md = rd.snapshot->metadata();
    ETCDPP_CHECK_OK(wal_->SaveSnapshot(wal::SnapshotMarker{md.index(), md.term()}));
    ETCDPP_CHECK_OK(storage_.ApplySnapshot(*rd.snapshot));
    snapshot_index_ = md.index();
    if (options_.on_snapshot) options_.on_snapshot(*rd.snapshot);
  }

  // 1. Persist: entries, then hard state; one fdatasync when Raft needs it.
  if (!rd.entries.empty() || rd.hard_state) {
    wal::HardState hs;
    if (rd.hard_state) hs = {rd.hard_state->term(), rd.hard_state->vote(), rd.hard_state->commit()};
    std::vector<wal::Entry> entries;
    entries.reserve(rd.entries.size());
    for (const raftpb::Entry& e : rd.entries) {
      entries.push_back({e.index(), e.term(), e.SerializeAsString()});
    }
    // A WAL that cannot write cannot promise anything: stop, never guess.
    ETCDPP_CHECK_OK(wal_->Save(hs, entries, rd.must_sync));
    ETCDPP_CHECK_OK(storage_.Append(rd.entries));
    if (rd.hard_state) storage_.SetHardState(*rd.hard_state);
  }
  // 2. Send, now that what the messages promise is durable.
  if (!rd.messages.empty() && options_.transport) {
    options_.transport->Send(std::move(rd.messages));
  }
  if (!rd.read_states.empty() && options_.on_read_states) {
    options_.on_read_states(std::move(rd.read_states));
  }
  // 3. Apply elsewhere.
  if (!rd.committed_entries.empty() && options_.on_committed) {
    options_.on_committed(std::move(rd.committed_entries));
  }
  node_->Advance();
}

}  // namespace etcdpp::server
