#include "sim.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/random.h"
#include "raft.pb.h"
#include "raft/raw_node.h"
#include "raft/storage.h"

namespace etcdpp::raft::sim {
namespace {

// Time unit: one tick of a "median" node is kTickUnits units.
constexpr int64_t kTickUnits = 10;

uint64_t Mix(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t HashBytes(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

uint64_t EntryHash(uint64_t prev, const raftpb::Entry& e) {
  return Mix(Mix(Mix(Mix(prev, e.index()), e.term()), e.type()), HashBytes(e.data()));
}

// The replicated state machine: a hash chain over applied entries plus the
// membership. Persisted atomically with its applied index (like the MVCC
// store's consistent index), so it survives crashes.
struct AppState {
  uint64_t applied = 0;
  uint64_t hash = 0;
  uint64_t max_member = 0;
  raftpb::ConfState conf;
};

// Snapshot data layout: applied (8) | hash (8) | max_member (8), little endian.
std::string EncodeApp(const AppState& a) {
  std::string out(24, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(a.applied >> (8 * i));
    out[8 + i] = static_cast<char>(a.hash >> (8 * i));
    out[16 + i] = static_cast<char>(a.max_member >> (8 * i));
  }
  return out;
}

AppState DecodeApp(const std::string& s, const raftpb::ConfState& cs) {
  AppState a;
  for (int i = 0; i < 8 && s.size() == 24; ++i) {
    a.applied |= static_cast<uint64_t>(static_cast<unsigned char>(s[i])) << (8 * i);
    a.hash |= static_cast<uint64_t>(static_cast<unsigned char>(s[8 + i])) << (8 * i);
    a.max_member |= static_cast<uint64_t>(static_cast<unsigned char>(s[16 + i])) << (8 * i);
  }
  a.conf = cs;
  return a;
}

bool Contains(const google::protobuf::RepeatedField<uint64_t>& f, uint64_t v) {
  return std::find(f.begin(), f.end(), v) != f.end();
}

class SimLogger : public Logger {
 public:
  SimLogger(uint64_t id, const int64_t* now, bool verbose)
      : id_(id), now_(now), verbose_(verbose) {}
  bool Enabled(LogLevel level) const override { return verbose_ && level >= LogLevel::kInfo; }
  void Log(LogLevel, std::string_view msg) override {
    std::printf("[t=%lld n%llu] %.*s\n", static_cast<long long>(*now_),
                static_cast<unsigned long long>(id_), static_cast<int>(msg.size()), msg.data());
  }

 private:
  uint64_t id_;
  const int64_t* now_;
  bool verbose_;
};

struct Node {
  uint64_t id = 0;
  bool up = false;
  bool retired = false;
  bool retire_pending = false;
  int restarts = 0;
  int64_t down_until = 0;
  int64_t tick_period = kTickUnits;
  int64_t next_tick = 0;
  // Persisted ("disk"): the raft log + hard state + snapshot, and the app.
  std::unique_ptr<MemoryStorage> storage;
  AppState app;
  // Volatile.
  std::unique_ptr<Random> rng;
  std::unique_ptr<SimLogger> logger;
  std::unique_ptr<RawNode> raw;
  uint64_t observed_leader_term = 0;
  uint64_t commit_seen = 0;
  // Checker state: prefix hash and term of each persisted entry from lh_base.
  uint64_t lh_base = 0;
  std::vector<uint64_t> lh{0};
  std::vector<uint64_t> lt{0};
  uint64_t checked_commit = 0;
};

struct InFlight {
  int64_t at;
  uint64_t seq;
  raftpb::Message m;
  bool operator>(const InFlight& o) const {
    return at != o.at ? at > o.at : seq > o.seq;
  }
};

class Simulator {
 public:
  explicit Simulator(const SimOptions& o) : opt_(o), rng_(o.seed * 0x2545F4914F6CDD1DULL + 7) {}

  SimResult Run();

 private:
  void Fail(const std::string& what) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.failure = absl::StrFormat("t=%d (tick ~%d): %s", now_, now_ / kTickUnits, what);
  }
  void Trace(const std::string& what) {
    if (opt_.verbose) std::printf("[t=%lld] %s\n", static_cast<long long>(now_), what.c_str());
  }

  Node& NewNode(uint64_t id);
  void Start(Node& n);
  void Crash(Node& n);
  void Observe(Node& n);
  void HandleReady(Node& n);
  void Send(Node& n, raftpb::Message m);
  void UpdateLogHash(Node& n, const std::vector<raftpb::Entry>& ents);
  void InstallSnapshot(Node& n, const raftpb::Snapshot& s);
  void CheckCommit(Node& n, uint64_t commit);
  void Apply(Node& n, const raftpb::Entry& e);
  void MaybeSnapshot(Node& n);
  void CheckLeader(Node& n, uint64_t term);
  void Deliver();
  void TickNodes();
  void Chaos();
  void Client();
  void ProposeViaClient(uint64_t id);
  void Heal();
  bool Live();
  Node* Leader();
  Node* RandomUpNode();
  bool Blocked(uint64_t from, uint64_t to) const { return blocked_.count({from, to}) > 0; }

  SimOptions opt_;
  Random rng_;
  SimResult result_;
  int64_t now_ = 0;
  bool healed_ = false;

  // Seed-chosen parameters.
  int voters_ = 3;
  bool pre_vote_ = true;
  bool check_quorum_ = true;
  double drop_ = 0, dup_ = 0;
  int64_t max_delay_ = 10;
  int64_t base_delay_ = 1;
  double reorder_ = 0;
  uint64_t snap_interval_ = 20, compact_margin_ = 5;
  uint64_t max_size_per_msg_ = 0;
  int max_inflight_ = 4;
  double p_partition_ = 0, p_crash_ = 0, p_conf_ = 0, p_prop_ = 0, p_transfer_ = 0, p_read_ = 0;

  std::map<uint64_t, std::unique_ptr<Node>> nodes_;
  uint64_t next_id_ = 1;
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<InFlight>> net_;
  uint64_t seq_ = 0;
  std::set<std::pair<uint64_t, uint64_t>> blocked_;

  // Checker state.
  std::map<uint64_t, uint64_t> leader_of_term_;
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> prefix_;  // (index, term) -> hash
  struct Committed {
    uint64_t term, hash;
  };
  std::map<uint64_t, Committed> committed_;
  std::map<uint64_t, uint64_t> applied_hash_;
  std::map<std::pair<uint64_t, uint64_t>, std::set<uint64_t>> grants_;  // (term, cand)
  uint64_t max_applied_ = 0;
  std::map<uint64_t, int64_t> removed_at_;
  std::map<std::string, uint64_t> reads_;  // ctx -> minimum linearizable index
  uint64_t next_read_ = 1;

  // Client.
  uint64_t next_prop_ = 1;
  struct Pending {
    int64_t at;     // last (re)proposed
    int64_t retry;  // back-off before the next retry
  };
  std::map<uint64_t, Pending> pending_;
};

Node& Simulator::NewNode(uint64_t id) {
  auto n = std::make_unique<Node>();
  n->id = id;
  n->storage = std::make_unique<MemoryStorage>();
  n->tick_period = kTickUnits - 2 + static_cast<int64_t>(rng_.Uniform(5));  // 8..12
  Node& ref = *n;
  nodes_[id] = std::move(n);
  return ref;
}

void Simulator::Start(Node& n) {
  n.storage->SetConfState(n.app.conf);
  Config c;
  c.id = n.id;
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  c.storage = n.storage.get();
  c.applied = n.app.applied;
  c.max_size_per_msg = max_size_per_msg_;
  c.max_inflight_msgs = max_inflight_;
  c.check_quorum = check_quorum_;
  c.pre_vote = pre_vote_;
  n.rng = std::make_unique<Random>(opt_.seed * 1000003 + n.id * 7919 + n.restarts);
  c.random = n.rng.get();
  n.logger = std::make_unique<SimLogger>(n.id, &now_, opt_.verbose);
  c.logger = n.logger.get();
  c.testing.count_learner_votes = opt_.bug_count_learner_votes;
  c.testing.commit_old_term_by_count = opt_.bug_commit_old_term_by_count;
  c.testing.vote_more_than_once = opt_.bug_vote_more_than_once;
  c.testing.read_index_without_quorum = opt_.bug_read_index_without_quorum;
  n.raw = std::make_unique<RawNode>(c);
  n.up = true;
  n.observed_leader_term = 0;
  n.commit_seen = 0;
  n.next_tick = now_ + 1 + static_cast<int64_t>(rng_.Uniform(n.tick_period));
}

void Simulator::Crash(Node& n) {
  Trace(absl::StrCat("crash n", n.id));
  n.raw.reset();
  n.up = false;
  ++n.restarts;
  ++result_.crashes;
}

Node* Simulator::RandomUpNode() {
  std::vector<Node*> up;
  for (auto& [id, n] : nodes_) {
    if (n->up) up.push_back(n.get());
  }
  if (up.empty()) return nullptr;
  return up[rng_.Uniform(up.size())];
}

Node* Simulator::Leader() {
  Node* best = nullptr;
  for (auto& [id, n] : nodes_) {
    if (!n->up || n->raw->raft().state() != StateType::kLeader) continue;
    if (best == nullptr || n->raw->raft().term() > best->raw->raft().term()) best = n.get();
  }
  return best;
}

// Called after anything that can change a node's role.
void Simulator::Observe(Node& n) {
  if (!n.up) return;
  const Raft& r = n.raw->raft();
  uint64_t commit = r.log().committed();
  if (r.state() == StateType::kLeader && n.observed_leader_term != r.term()) {
    n.observed_leader_term = r.term();
    CheckLeader(n, r.term());
  } else if (opt_.check_commit_rule && r.state() == StateType::kLeader &&
             commit > n.commit_seen) {
    // Raft 5.4.2: a leader advances its commit index only to an entry of
    // its own term (older entries commit indirectly, never by counting).
    uint64_t t = r.log().ZeroTermOnErr(commit);
    if (t != r.term()) {
      Fail(absl::StrFormat("commit rule: leader %d of term %d advanced its commit index to %d, "
                           "an entry of term %d", n.id, r.term(), commit, t));
    }
  }
  n.commit_seen = commit;
}

void Simulator::CheckLeader(Node& n, uint64_t term) {
  ++result_.leaders;
  Trace(absl::StrCat("n", n.id, " is leader of term ", term));
  auto [it, fresh] = leader_of_term_.emplace(term, n.id);
  if (!fresh && it->second != n.id) {
    Fail(absl::StrFormat("election safety: two leaders in term %d: %d and %d", term, it->second,
                         n.id));
    return;
  }
  if (!fresh) return;
  const Raft& r = n.raw->raft();
  // Learners never vote: the leader's grants from its voters are a quorum.
  const std::set<uint64_t>& voters = r.tracker().voters();
  if (!voters.count(n.id)) {
    Fail(absl::StrFormat("non-voter %d became leader of term %d", n.id, term));
    return;
  }
  size_t granted = 1;
  for (uint64_t g : grants_[{term, n.id}]) granted += (g != n.id && voters.count(g)) ? 1 : 0;
  if (granted < voters.size() / 2 + 1) {
    Fail(absl::StrFormat(
        "learners never vote: %d won term %d with %d voter votes of %d voters (a non-voter's "
        "vote was counted)", n.id, term, granted, voters.size()));
    return;
  }
  // Leader completeness: every committed entry is in the new leader's log.
  const RaftLog& log = r.log();
  uint64_t first = log.FirstIndex();
  for (auto c = committed_.lower_bound(first - 1); c != committed_.end(); ++c) {
    absl::StatusOr<uint64_t> t = log.Term(c->first);
    if (!t.ok() || *t != c->second.term) {
      Fail(absl::StrFormat("leader completeness: leader %d of term %d lacks committed entry "
                           "%d (term %d); its term there: %s", n.id, term, c->first,
                           c->second.term, t.ok() ? absl::StrCat(*t) : "missing"));
      return;
    }
  }
}

void Simulator::UpdateLogHash(Node& n, const std::vector<raftpb::Entry>& ents) {
  for (const raftpb::Entry& e : ents) {
    uint64_t i = e.index();
    if (i <= n.lh_base) continue;
    if (i - 1 - n.lh_base >= n.lh.size()) {
      Fail(absl::StrFormat("node %d persisted entry %d with a gap (last %d)", n.id, i,
                           n.lh_base + n.lh.size() - 1));
      return;
    }
    uint64_t h = EntryHash(n.lh[i - 1 - n.lh_base], e);
    if (i <= n.checked_commit && i - n.lh_base < n.lh.size() && n.lh[i - n.lh_base] != h) {
      Fail(absl::StrFormat("node %d overwrote committed entry %d", n.id, i));
      return;
    }
    n.lh.resize(i - n.lh_base);
    n.lt.resize(i - n.lh_base);
    n.lh.push_back(h);
    n.lt.push_back(e.term());
    auto [it, fresh] = prefix_.emplace(std::make_pair(i, e.term()), h);
    if (!fresh && it->second != h) {
      Fail(absl::StrFormat("log matching: node %d has entry (index %d, term %d) with a "
                           "different prefix than another node", n.id, i, e.term()));
      return;
    }
  }
}

void Simulator::InstallSnapshot(Node& n, const raftpb::Snapshot& s) {
  uint64_t si = s.metadata().index(), st = s.metadata().term();
  Trace(absl::StrFormat("n%d installs snapshot %d/%d", n.id, si, st));
  absl::Status status = n.storage->ApplySnapshot(s);
  if (!status.ok()) {
    Fail(absl::StrCat("node ", n.id, " cannot apply snapshot: ", status.ToString()));
    return;
  }
  auto p = prefix_.find({si, st});
  if (p == prefix_.end()) {
    Fail(absl::StrFormat("node %d got a snapshot at unknown entry %d/%d", n.id, si, st));
    return;
  }
  n.lh_base = si;
  n.lh = {p->second};
  n.lt = {st};
  auto c = committed_.find(si);
  if (c != committed_.end() && c->second.hash != p->second) {
    Fail(absl::StrFormat("snapshot at %d contradicts the committed entry", si));
    return;
  }
  committed_[si] = Committed{st, p->second};
  n.checked_commit = std::max(n.checked_commit, si);
  n.app = DecodeApp(s.data(), s.metadata().conf_state());
  if (n.app.applied != si) {
    Fail(absl::StrFormat("snapshot data index %d != metadata index %d", n.app.applied, si));
    return;
  }
  auto [it, fresh] = applied_hash_.emplace(si, n.app.hash);
  if (!fresh && it->second != n.app.hash) {
    Fail(absl::StrFormat("state machine safety: snapshot of node %d at %d differs", n.id, si));
  }
}

void Simulator::CheckCommit(Node& n, uint64_t commit) {
  for (uint64_t i = n.checked_commit + 1; i <= commit; ++i) {
    if (i <= n.lh_base) continue;
    if (i - n.lh_base >= n.lh.size()) {
      Fail(absl::StrFormat("node %d committed %d beyond its persisted log (last %d)", n.id,
                           commit, n.lh_base + n.lh.size() - 1));
      return;
    }
    uint64_t h = n.lh[i - n.lh_base];
    auto [it, fresh] = committed_.emplace(i, Committed{n.lt[i - n.lh_base], h});
    if (!fresh && it->second.hash != h) {
      Fail(absl::StrFormat("committed entry lost: node %d committed a different entry at "
                           "index %d (term %d) than committed before (term %d)", n.id, i,
                           n.lt[i - n.lh_base], it->second.term));
      return;
    }
  }
  n.checked_commit = std::max(n.checked_commit, commit);
}

void Simulator::Apply(Node& n, const raftpb::Entry& e) {
  if (e.index() != n.app.applied + 1) {
    Fail(absl::StrFormat("node %d applies %d after %d", n.id, e.index(), n.app.applied));
    return;
  }
  n.app.hash = EntryHash(n.app.hash, e);
  n.app.applied = e.index();
  auto [it, fresh] = applied_hash_.emplace(e.index(), n.app.hash);
  if (!fresh && it->second != n.app.hash) {
    Fail(absl::StrFormat("state machine safety: node %d applied a different sequence at "
                         "index %d", n.id, e.index()));
    return;
  }
  max_applied_ = std::max(max_applied_, e.index());
  if (e.type() == raftpb::EntryConfChange) {
    raftpb::ConfChange cc;
    if (!cc.ParseFromString(e.data())) {
      Fail("bad conf change entry");
      return;
    }
    // Validate like a server does against its member list; an invalid
    // change is applied as a no-op (node_id 0) on every node alike.
    uint64_t id = cc.node_id();
    const raftpb::ConfState& cs = n.app.conf;
    bool voter = Contains(cs.voters(), id), learner = Contains(cs.learners(), id);
    bool valid = false;
    switch (cc.type()) {
      case raftpb::ConfChangeAddNode:
        valid = learner || (!voter && id > n.app.max_member);
        break;
      case raftpb::ConfChangeAddLearnerNode:
        valid = !voter && !learner && id > n.app.max_member;
        break;
      case raftpb::ConfChangeRemoveNode:
        valid = learner || (voter && cs.voters_size() > 1);
        break;
      default:
        break;
    }
    if (!valid) cc.set_node_id(0);
    n.app.conf = n.raw->ApplyConfChange(cc);
    if (valid) {
      n.app.max_member = std::max(n.app.max_member, id);
      if (fresh) {
        ++result_.conf_changes;
        Trace(absl::StrFormat("conf change %s %d committed at %d",
                              raftpb::ConfChangeType_Name(cc.type()), id, e.index()));
      }
      if (cc.type() == raftpb::ConfChangeRemoveNode) {
        if (id == n.id) n.retire_pending = true;
        // Like etcd's peers, which refuse a removed member so that it shuts
        // itself down, the sim retires it a while after the removal applies
        // anywhere (even if it never learns of it).
        removed_at_.emplace(id, now_);
      }
    }
  } else if (!e.data().empty() && e.data()[0] == 'p') {
    uint64_t id = std::strtoull(e.data().c_str() + 1, nullptr, 10);
    if (pending_.erase(id) && fresh) ++result_.committed;
  }
}

void Simulator::MaybeSnapshot(Node& n) {
  absl::StatusOr<raftpb::Snapshot> cur = n.storage->GetSnapshot();
  uint64_t si = cur->metadata().index();
  if (n.app.applied < si + snap_interval_) return;
  absl::StatusOr<raftpb::Snapshot> snap =
      n.storage->CreateSnapshot(n.app.applied, n.app.conf, EncodeApp(n.app));
  if (!snap.ok()) {
    Fail(absl::StrCat("create snapshot: ", snap.status().ToString()));
    return;
  }
  if (n.app.applied > compact_margin_) {
    uint64_t to = n.app.applied - compact_margin_;
    if (to >= *n.storage->FirstIndex()) {
      absl::Status s = n.storage->Compact(to);
      if (!s.ok()) Fail(absl::StrCat("compact: ", s.ToString()));
    }
  }
}

void Simulator::Send(Node& n, raftpb::Message m) {
  ++result_.messages;
  if (m.type() == raftpb::MsgVoteResp && !m.reject()) grants_[{m.term(), m.to()}].insert(n.id);
  bool lost = Blocked(m.from(), m.to()) || (!healed_ && rng_.Bernoulli(drop_));
  if (m.type() == raftpb::MsgSnap) {
    ++result_.snapshots_sent;
    n.raw->ReportSnapshot(m.to(), lost ? SnapshotStatus::kFailure : SnapshotStatus::kFinish);
  }
  if (lost) return;
  int copies = (!healed_ && rng_.Bernoulli(dup_)) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    // Mostly a fixed link latency; some messages are delayed further, which
    // reorders them (and duplicates arrive at different times).
    int64_t delay = base_delay_;
    if (rng_.Bernoulli(reorder_)) delay += 1 + static_cast<int64_t>(rng_.Uniform(max_delay_));
    net_.push(InFlight{now_ + delay, seq_++, m});
  }
}

void Simulator::HandleReady(Node& n) {
  Ready rd = n.raw->GetReady();
  // 1. snapshot, 2. entries + hard state (the order the server uses).
  if (rd.snapshot) InstallSnapshot(n, *rd.snapshot);
  if (!rd.entries.empty()) {
    absl::Status s = n.storage->Append(rd.entries);
    if (!s.ok()) Fail(absl::StrCat("append: ", s.ToString()));
    UpdateLogHash(n, rd.entries);
  }
  if (rd.hard_state) {
    n.storage->SetHardState(*rd.hard_state);
    CheckCommit(n, rd.hard_state->commit());
  }
  // 3. messages, 4. apply.
  for (raftpb::Message& m : rd.messages) Send(n, std::move(m));
  for (const raftpb::Entry& e : rd.committed_entries) {
    if (!result_.ok) break;
    Apply(n, e);
  }
  for (const ReadState& rs : rd.read_states) {
    auto it = reads_.find(rs.request_ctx);
    if (it == reads_.end()) continue;  // duplicate answer
    if (rs.index < it->second) {
      Fail(absl::StrFormat("ReadIndex not linearizable: node %d got index %d for a read issued "
                           "after index %d was applied", n.id, rs.index, it->second));
    }
    reads_.erase(it);
    ++result_.reads;
  }
  n.raw->Advance();
  MaybeSnapshot(n);
  Observe(n);
}

void Simulator::Deliver() {
  while (!net_.empty() && net_.top().at <= now_) {
    InFlight f = net_.top();
    net_.pop();
    auto it = nodes_.find(f.m.to());
    if (it == nodes_.end() || !it->second->up) continue;
    if (Blocked(f.m.from(), f.m.to())) continue;
    Node& n = *it->second;
    n.raw->Step(std::move(f.m)).IgnoreError();
    Observe(n);
  }
}

void Simulator::TickNodes() {
  for (auto& [id, n] : nodes_) {
    if (!n->up || now_ < n->next_tick) continue;
    n->raw->Tick();
    n->next_tick += n->tick_period;
    Observe(*n);
  }
}

void Simulator::Chaos() {
  // Restart crashed nodes whose downtime is over.
  for (auto& [id, n] : nodes_) {
    if (!n->up && !n->retired && now_ >= n->down_until) {
      Trace(absl::StrCat("restart n", id));
      Start(*n);
    }
  }
  if (rng_.Bernoulli(p_partition_)) {
    std::vector<uint64_t> ids;
    for (auto& [id, n] : nodes_) {
      if (!n->retired) ids.push_back(id);
    }
    double r = static_cast<double>(rng_.Uniform(1000)) / 1000;
    if (r < 0.35) {
      blocked_.clear();
      Trace("partition: heal");
    } else if (r < 0.65 && ids.size() >= 2) {
      blocked_.clear();
      for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[rng_.Uniform(i)]);
      size_t k = 1 + rng_.Uniform(ids.size() - 1);
      for (size_t i = 0; i < k; ++i) {
        for (size_t j = k; j < ids.size(); ++j) {
          blocked_.insert({ids[i], ids[j]});
          blocked_.insert({ids[j], ids[i]});
        }
      }
      Trace(absl::StrCat("partition: symmetric split at ", k));
    } else if (r < 0.85) {
      blocked_.clear();
      uint64_t x = ids[rng_.Uniform(ids.size())];
      for (uint64_t y : ids) {
        if (y != x) {
          blocked_.insert({x, y});
          blocked_.insert({y, x});
        }
      }
      Trace(absl::StrCat("partition: isolate n", x));
    } else if (ids.size() >= 2) {
      uint64_t a = ids[rng_.Uniform(ids.size())], b = ids[rng_.Uniform(ids.size())];
      if (a != b) blocked_.insert({a, b});
      Trace(absl::StrFormat("partition: one-way %d -> %d", a, b));
    }
  }
  if (rng_.Bernoulli(p_crash_)) {
    Node* n = RandomUpNode();
    if (n != nullptr) {
      Crash(*n);
      n->down_until = now_ + 20 + static_cast<int64_t>(rng_.Uniform(800));
    }
  }
  if (rng_.Bernoulli(0.002)) {
    // Clock drift: a node's tick rate changes.
    Node* n = RandomUpNode();
    if (n != nullptr) n->tick_period = kTickUnits - 3 + static_cast<int64_t>(rng_.Uniform(7));
  }
  Node* leader = Leader();
  if (leader != nullptr && rng_.Bernoulli(p_transfer_)) {
    std::vector<uint64_t> vs(leader->raw->raft().tracker().voters().begin(),
                             leader->raw->raft().tracker().voters().end());
    uint64_t to = vs[rng_.Uniform(vs.size())];
    Trace(absl::StrFormat("transfer leader %d -> %d", leader->id, to));
    leader->raw->TransferLeader(to);
    Observe(*leader);
  }
  if (leader != nullptr && rng_.Bernoulli(p_conf_)) {
    const Raft& r = leader->raw->raft();
    if (r.pending_conf_index() <= r.log().applied()) {
      const raftpb::ConfState& cs = leader->app.conf;
      raftpb::ConfChange cc;
      if (cs.learners_size() > 0) {
        uint64_t l = cs.learners(rng_.Uniform(cs.learners_size()));
        // Like etcd, promote only a learner that has caught up (match at
        // least 90% of the leader's commit); otherwise sometimes give up.
        const Progress* pr = r.tracker().Get(l);
        bool ready = pr != nullptr && pr->match * 10 >= r.log().committed() * 9;
        if (ready && rng_.Bernoulli(0.85)) {
          cc.set_type(raftpb::ConfChangeAddNode);
          cc.set_node_id(l);
        } else if (rng_.Bernoulli(0.2)) {
          cc.set_type(raftpb::ConfChangeRemoveNode);
          cc.set_node_id(l);
        }
      } else if (cs.voters_size() > voters_) {
        cc.set_type(raftpb::ConfChangeRemoveNode);
        cc.set_node_id(cs.voters(rng_.Uniform(cs.voters_size())));
      } else if (next_id_ <= static_cast<uint64_t>(voters_) + 8) {
        uint64_t id = next_id_++;
        Node& fresh = NewNode(id);
        Start(fresh);
        cc.set_type(raftpb::ConfChangeAddLearnerNode);
        cc.set_node_id(id);
      }
      if (cc.node_id() != 0) {
        Trace(absl::StrFormat("propose %s %d via n%d", raftpb::ConfChangeType_Name(cc.type()),
                              cc.node_id(), leader->id));
        leader->raw->ProposeConfChange(cc).IgnoreError();
      }
    }
  }
  if (rng_.Bernoulli(p_read_)) {
    Node* n = RandomUpNode();
    if (n != nullptr) {
      std::string ctx = absl::StrCat("r", next_read_++);
      reads_[ctx] = max_applied_;
      n->raw->ReadIndex(ctx);
    }
  }
}

// Like a client with the member list: sends to a random member and, if that
// member has no leader to forward to, tries another one (at most 3).
void Simulator::ProposeViaClient(uint64_t id) {
  std::vector<Node*> members;
  for (auto& [nid, n] : nodes_) {
    if (n->up && (Contains(n->app.conf.voters(), nid) || Contains(n->app.conf.learners(), nid))) {
      members.push_back(n.get());
    }
  }
  for (int attempt = 0; attempt < 3 && !members.empty(); ++attempt) {
    Node* n = members[rng_.Uniform(members.size())];
    absl::Status st = n->raw->Propose(absl::StrCat("p", id));
    Observe(*n);
    Trace(absl::StrFormat("propose p%d via n%d: %s", id, n->id, st.ToString()));
    if (st.ok()) return;
  }
}

void Simulator::Client() {
  // Clients have bounded concurrency: at most 64 proposals outstanding.
  if (!healed_ && pending_.size() < 64 && rng_.Bernoulli(p_prop_)) {
    uint64_t id = next_prop_++;
    pending_[id] = Pending{now_, 30 * kTickUnits};
    ProposeViaClient(id);
  }
  // Re-propose what has not committed after a while (a proposal may be
  // dropped or lost with a deposed leader's log).
  // Exponential back-off (30, 60, 120 ticks), like a client whose request
  // timed out, so retries do not flood a slow cluster.
  int budget = 4;
  for (auto& [id, p] : pending_) {
    if (budget == 0) break;
    if (now_ - p.at < p.retry) continue;
    p.at = now_;
    p.retry = std::min<int64_t>(2 * p.retry, (healed_ ? 40 : 120) * kTickUnits);
    --budget;
    ProposeViaClient(id);
  }
}

void Simulator::Heal() {
  Trace("heal: no more faults");
  healed_ = true;
  blocked_.clear();
  for (auto& [id, p] : pending_) p = Pending{now_, 20 * kTickUnits};
  for (auto& [id, n] : nodes_) {
    if (!n->up && !n->retired) Start(*n);
  }
}

bool Simulator::Live() {
  if (!pending_.empty()) return false;
  Node* l = Leader();
  if (l == nullptr) return false;
  const Raft& r = l->raw->raft();
  if (!r.tracker().IsVoter(l->id)) return false;
  for (uint64_t v : r.tracker().voters()) {
    auto it = nodes_.find(v);
    if (it == nodes_.end() || !it->second->up) return false;
    const Raft& f = it->second->raw->raft();
    if (f.lead() != l->id || f.term() != r.term()) return false;
  }
  return true;
}

SimResult Simulator::Run() {
  voters_ = opt_.voters != 0 ? opt_.voters : 3 + 2 * static_cast<int>(rng_.Uniform(3));
  pre_vote_ = rng_.Bernoulli(0.8);
  check_quorum_ = rng_.Bernoulli(0.8);
  drop_ = static_cast<double>(rng_.Uniform(15)) / 100;
  dup_ = static_cast<double>(rng_.Uniform(10)) / 100;
  max_delay_ = 1 + static_cast<int64_t>(rng_.Uniform(25));
  base_delay_ = 1 + static_cast<int64_t>(rng_.Uniform(8));
  reorder_ = static_cast<double>(rng_.Uniform(40)) / 100;
  snap_interval_ = 5 + rng_.Uniform(40);
  compact_margin_ = rng_.Uniform(10);
  max_size_per_msg_ = rng_.Bernoulli(0.1) ? 0 : 128 + rng_.Uniform(2048);
  max_inflight_ = 1 + static_cast<int>(rng_.Uniform(16));
  // One entry per message needs a deep pipeline to keep up with the client.
  if (max_size_per_msg_ == 0) max_inflight_ = std::max(max_inflight_, 8);
  p_partition_ = 1.0 / (100 + rng_.Uniform(400));
  p_crash_ = 1.0 / (150 + rng_.Uniform(600));
  p_conf_ = opt_.learner_heavy ? 1.0 / 40 : 1.0 / (100 + rng_.Uniform(300));
  p_prop_ = 1.0 / (5 + rng_.Uniform(30));
  p_transfer_ = 1.0 / (300 + rng_.Uniform(1000));
  p_read_ = 1.0 / (20 + rng_.Uniform(60));
  result_.config = absl::StrFormat(
      "voters=%d pre_vote=%d check_quorum=%d drop=%.2f dup=%.2f delay=%d+[0,%d] reorder=%.2f "
      "snap_interval=%d compact_margin=%d max_size_per_msg=%d max_inflight=%d", voters_,
      pre_vote_, check_quorum_, drop_, dup_, base_delay_, max_delay_, reorder_, snap_interval_, compact_margin_, max_size_per_msg_, max_inflight_);

  std::vector<uint64_t> ids;
  for (int i = 0; i < voters_; ++i) ids.push_back(next_id_++);
  for (uint64_t id : ids) {
    Node& n = NewNode(id);
    Start(n);
    absl::Status s = n.raw->Bootstrap(ids);
    if (!s.ok()) {
      Fail(s.ToString());
      return result_;
    }
  }

  int64_t chaos_end = opt_.chaos_ticks * kTickUnits;
  int64_t end = chaos_end + opt_.liveness_ticks * kTickUnits;
  bool live = false;
  for (now_ = 0; now_ < end && result_.ok; ++now_) {
    if (now_ == chaos_end) Heal();
    Deliver();
    TickNodes();
    if (!healed_) Chaos();
    Client();
    for (auto& [id, n] : nodes_) {
      if (!n->up) {
        if (!n->retired && removed_at_.count(id)) n->retired = true;
        continue;
      }
      while (result_.ok && n->raw->HasReady()) HandleReady(*n);
      auto rm = removed_at_.find(id);
      if (rm != removed_at_.end() && now_ >= rm->second + 20 * kTickUnits) {
        n->retire_pending = true;
      }
      if (n->retire_pending) {
        Trace(absl::StrCat("n", id, " removed: shutting down"));
        n->raw.reset();
        n->up = false;
        n->retired = true;
        n->retire_pending = false;
      }
    }
    if (healed_ && result_.ok && now_ % kTickUnits == 0 && Live()) {
      live = true;
      result_.recovery_ticks = static_cast<int>((now_ - chaos_end) / kTickUnits);
      break;
    }
  }
  if (result_.ok && !live) {
    Node* l = Leader();
    if (opt_.verbose) {
      for (auto& [id, p] : pending_) std::printf("pending p%llu last proposed t=%lld\n", (unsigned long long)id, (long long)p.at);
      if (l) for (auto& [id, pr] : l->raw->raft().tracker().progress()) std::printf("  progress %llu: %s active=%d\n", (unsigned long long)id, pr.DebugString().c_str(), pr.recent_active);
      if (l) std::printf("  leader commit=%llu last=%llu applied=%llu transferee=%llu\n", (unsigned long long)l->raw->raft().log().committed(), (unsigned long long)l->raw->raft().log().LastIndex(), (unsigned long long)l->raw->raft().log().applied(), (unsigned long long)l->raw->raft().lead_transferee());
    }
    Fail(absl::StrFormat("liveness: %d ticks after healing: leader=%s, %d proposals pending",
                         opt_.liveness_ticks,
                         l ? absl::StrCat(l->id, " term ", l->raw->raft().term()) : "none",
                         pending_.size()));
  }
  return result_;
}

}  // namespace

SimResult RunSim(const SimOptions& options) { return Simulator(options).Run(); }

}  // namespace etcdpp::raft::sim
