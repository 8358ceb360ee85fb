// Helpers for raft unit tests: nodes backed by MemoryStorage and a tiny
// synchronous network (messages are delivered breadth-first until quiet),
// with per-link drops and per-type filters.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "raft.pb.h"
#include "raft/raft.h"
#include "raft/raw_node.h"
#include "raft/storage.h"

namespace etcdpp::raft::testing {

inline raftpb::ConfState MakeConfState(std::vector<uint64_t> voters,
                                       std::vector<uint64_t> learners = {}) {
  raftpb::ConfState cs;
  for (uint64_t v : voters) cs.add_voters(v);
  for (uint64_t l : learners) cs.add_learners(l);
  return cs;
}

inline std::unique_ptr<MemoryStorage> NewStorage(std::vector<uint64_t> voters,
                                                 std::vector<uint64_t> learners = {}) {
  auto s = std::make_unique<MemoryStorage>();
  s->SetConfState(MakeConfState(std::move(voters), std::move(learners)));
  return s;
}

inline raftpb::Entry Ent(uint64_t index, uint64_t term, std::string data = "") {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(std::move(data));
  return e;
}

inline raftpb::Message Msg(uint64_t from, uint64_t to, raftpb::MessageType type,
                           uint64_t term = 0) {
  raftpb::Message m;
  m.set_from(from);
  m.set_to(to);
  m.set_type(type);
  m.set_term(term);
  return m;
}

inline raftpb::Message PropMsg(uint64_t id, std::string data) {
  raftpb::Message m = Msg(id, id, raftpb::MsgProp);
  m.add_entries()->set_data(std::move(data));
  return m;
}

// A Raft together with the storage it reads.
struct TestRaft {
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<Raft> raft;

  Raft* operator->() { return raft.get(); }
  std::vector<raftpb::Message> TakeMsgs() {
    std::vector<raftpb::Message> out = std::move(raft->msgs());
    raft->msgs().clear();
    return out;
  }
};

inline Config TestConfig(uint64_t id, int election, int heartbeat, Storage* s) {
  Config c;
  c.id = id;
  c.election_tick = election;
  c.heartbeat_tick = heartbeat;
  c.storage = s;
  c.max_size_per_msg = kNoLimit;
  c.max_inflight_msgs = 256;
  c.check_quorum = false;
  c.pre_vote = false;
  return c;
}

inline TestRaft NewTestRaft(uint64_t id, std::unique_ptr<MemoryStorage> s, int election = 10,
                            int heartbeat = 1,
                            std::function<void(Config&)> tweak = nullptr) {
  Config c = TestConfig(id, election, heartbeat, s.get());
  if (tweak) tweak(c);
  TestRaft t;
  t.raft = std::make_unique<Raft>(c);
  t.storage = std::move(s);
  return t;
}

// Synchronous network of Raft nodes.
class Network {
 public:
  // Creates nodes 1..n with voters 1..n (plus the given learners n+1..).
  explicit Network(size_t n, std::function<void(Config&)> tweak = nullptr, size_t learners = 0) {
    std::vector<uint64_t> voters, ls;
    for (uint64_t i = 1; i <= n; ++i) voters.push_back(i);
    for (uint64_t i = n + 1; i <= n + learners; ++i) ls.push_back(i);
    for (uint64_t i = 1; i <= n + learners; ++i) {
      nodes_[i] = NewTestRaft(i, NewStorage(voters, ls), 10, 1, tweak);
    }
  }
  Network() = default;
  void Add(uint64_t id, TestRaft t) { nodes_[id] = std::move(t); }

  Raft& operator[](uint64_t id) { return *nodes_.at(id).raft; }
  TestRaft& node(uint64_t id) { return nodes_.at(id); }

  void Send(std::vector<raftpb::Message> msgs) {
    std::deque<raftpb::Message> q(msgs.begin(), msgs.end());
    while (!q.empty()) {
      raftpb::Message m = std::move(q.front());
      q.pop_front();
      if (Dropped(m)) continue;
      auto it = nodes_.find(m.to());
      if (it == nodes_.end()) continue;
      it->second.raft->Step(m).IgnoreError();
      for (auto& out : it->second.TakeMsgs()) q.push_back(std::move(out));
    }
  }
  void Send(raftpb::Message m) { Send(std::vector<raftpb::Message>{std::move(m)}); }
  // Steps a local message into `id` and delivers everything it causes.
  void Local(uint64_t id, raftpb::Message m) {
    nodes_.at(id).raft->Step(std::move(m)).IgnoreError();
    Send(nodes_.at(id).TakeMsgs());
  }
  void Campaign(uint64_t id) { Local(id, Msg(id, id, raftpb::MsgHup)); }
  void Propose(uint64_t id, std::string data) { Local(id, PropMsg(id, std::move(data))); }
  void Beat(uint64_t id) { Local(id, Msg(id, id, raftpb::MsgBeat)); }

  void Cut(uint64_t a, uint64_t b) {
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  void CutOneWay(uint64_t from, uint64_t to) { cut_.insert({from, to}); }
  void Isolate(uint64_t id) {
    for (auto& [other, _] : nodes_) {
      if (other != id) Cut(id, other);
    }
  }
  void Ignore(raftpb::MessageType t) { ignored_.insert(t); }
  void Recover() {
    cut_.clear();
    ignored_.clear();
  }

 private:
  bool Dropped(const raftpb::Message& m) const {
    return cut_.count({m.from(), m.to()}) || ignored_.count(m.type());
  }
  std::map<uint64_t, TestRaft> nodes_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
  std::set<raftpb::MessageType> ignored_;
};

}  // namespace etcdpp::raft::testing
