// Microbenchmarks of the raft core: a 3-node cluster in one thread, with
// MemoryStorage as the "disk" and direct in-memory message delivery. This
// measures the state machine alone (no fsync, no network, no apply cost).
//
//   build-raft/bench/raft/raft_bench
#include <benchmark/benchmark.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "raft/raw_node.h"
#include "raft/storage.h"

namespace etcdpp::raft {
namespace {

class Cluster {
 public:
  explicit Cluster(int n) {
    std::vector<uint64_t> ids;
    for (int i = 1; i <= n; ++i) ids.push_back(i);
    for (uint64_t id : ids) {
      auto s = std::make_unique<MemoryStorage>();
      raftpb::ConfState cs;
      for (uint64_t v : ids) cs.add_voters(v);
      s->SetConfState(cs);
      Config c;
      c.id = id;
      c.storage = s.get();
      c.max_inflight_msgs = 256;
      c.max_size_per_msg = 1024 * 1024;
      storages_.push_back(std::move(s));
      nodes_.push_back(std::make_unique<RawNode>(c));
    }
    (void)nodes_[0]->Campaign();
    Pump();
  }

  RawNode& leader() { return *nodes_[0]; }

  // Handles Readys and delivers messages until the cluster is quiet.
  void Pump() {
    bool busy = true;
    while (busy) {
      busy = false;
      for (size_t i = 0; i < nodes_.size(); ++i) {
        RawNode& n = *nodes_[i];
        if (!n.HasReady()) continue;
        busy = true;
        Ready rd = n.GetReady();
        MemoryStorage& s = *storages_[i];
        if (!rd.entries.empty()) (void)s.Append(rd.entries);
        if (rd.hard_state) s.SetHardState(*rd.hard_state);
        for (raftpb::Message& m : rd.messages) inbox_.push_back(std::move(m));
        committed_ += i == 0 ? rd.committed_entries.size() : 0;
        n.Advance();
        // Keep memory flat: compact what every node has applied.
        uint64_t applied = n.GetStatus().applied;
        if (applied > *s.FirstIndex() + 20000) (void)s.Compact(applied - 10000);
      }
      while (!inbox_.empty()) {
        raftpb::Message m = std::move(inbox_.front());
        inbox_.pop_front();
        (void)nodes_[m.to() - 1]->Step(std::move(m));
        ++stepped_;
        busy = true;
      }
    }
  }

  uint64_t committed() const { return committed_; }
  uint64_t stepped() const { return stepped_; }

 private:
  std::vector<std::unique_ptr<MemoryStorage>> storages_;
  std::vector<std::unique_ptr<RawNode>> nodes_;
  std::deque<raftpb::Message> inbox_;
  uint64_t committed_ = 0;
  uint64_t stepped_ = 0;
};

// Proposals committed per second: each iteration proposes `batch` entries of
// 128 bytes on the leader, then runs the cluster until they are committed
// and acknowledged everywhere. Also reports messages stepped per second.
void BM_ProposeCommit3Nodes(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  Cluster c(3);
  std::string data(128, 'x');
  uint64_t c0 = c.committed(), s0 = c.stepped();
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) (void)c.leader().Propose(data);
    c.Pump();
  }
  state.counters["committed/s"] =
      benchmark::Counter(static_cast<double>(c.committed() - c0), benchmark::Counter::kIsRate);
  state.counters["msgs_stepped/s"] =
      benchmark::Counter(static_cast<double>(c.stepped() - s0), benchmark::Counter::kIsRate);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}
BENCHMARK(BM_ProposeCommit3Nodes)->Arg(1)->Arg(16)->Arg(256);

// The same, but the batch goes in one ProposeBatch (one MsgProp, one MsgApp
// per follower), as the node loop does with proposals gathered during an
// fsync.
void BM_ProposeBatchCommit3Nodes(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  Cluster c(3);
  std::string data(128, 'x');
  uint64_t c0 = c.committed(), s0 = c.stepped();
  for (auto _ : state) {
    (void)c.leader().ProposeBatch(std::vector<std::string>(batch, data));
    c.Pump();
  }
  state.counters["committed/s"] =
      benchmark::Counter(static_cast<double>(c.committed() - c0), benchmark::Counter::kIsRate);
  state.counters["msgs_stepped/s"] =
      benchmark::Counter(static_cast<double>(c.stepped() - s0), benchmark::Counter::kIsRate);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}
BENCHMARK(BM_ProposeBatchCommit3Nodes)->Arg(16)->Arg(256);

// Messages stepped per second on one follower: a stream of MsgApp with one
// 128-byte entry each, as a replicating leader sends them.
void BM_FollowerStepMsgApp(benchmark::State& state) {
  MemoryStorage s;
  raftpb::ConfState cs;
  cs.add_voters(1);
  cs.add_voters(2);
  s.SetConfState(cs);
  Config c;
  c.id = 2;
  c.storage = &s;
  RawNode n(c);
  uint64_t index = 0;
  std::string data(128, 'x');
  for (auto _ : state) {
    raftpb::Message m;
    m.set_type(raftpb::MsgApp);
    m.set_from(1);
    m.set_to(2);
    m.set_term(1);
    m.set_index(index);
    m.set_log_term(index == 0 ? 0 : 1);
    m.set_commit(index);
    raftpb::Entry* e = m.add_entries();
    e->set_term(1);
    e->set_index(++index);
    e->set_data(data);
    (void)n.Step(std::move(m));
    if (index % 64 == 0) {
      Ready rd = n.GetReady();
      (void)s.Append(rd.entries);
      if (rd.hard_state) s.SetHardState(*rd.hard_state);
      n.Advance();
      if (index % 65536 == 0) (void)s.Compact(index - 1024);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_FollowerStepMsgApp);

// Heartbeat round trips handled by a 3-node leader per second.
void BM_LeaderHeartbeatRound(benchmark::State& state) {
  Cluster c(3);
  for (auto _ : state) {
    c.leader().Tick();
    c.Pump();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_LeaderHeartbeatRound);

}  // namespace
}  // namespace etcdpp::raft

BENCHMARK_MAIN();
