// The node loop on a single member with a real WAL in a temp dir.
#include "server/raft_node.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace etcdpp::server {
namespace {

using namespace std::chrono_literals;

// Plays the apply loop: takes committed entries off the node thread, applies
// conf changes back into raft, records normal entries.
class FakeApplier {
 public:
  void Push(std::vector<raftpb::Entry> entries) {
    absl::MutexLock l(&mu_);
    for (auto& e : entries) queue_.push_back(std::move(e));
  }
  void Run(RaftNode* node) {
    thread_ = std::thread([this, node] {
      for (;;) {
        raftpb::Entry e;
        {
          absl::MutexLock l(&mu_);
          mu_.Await(absl::Condition(
              +[](FakeApplier* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->mu_) {
                return a->stop_ || !a->queue_.empty();
              },
              this));
          if (stop_) return;
          e = std::move(queue_.front());
          queue_.pop_front();
        }
        if (e.type() == raftpb::EntryConfChange) {
          raftpb::ConfChange cc;
          ASSERT_TRUE(cc.ParseFromString(e.data()));
          raftpb::ConfState cs = node->ApplyConfChange(cc);
          absl::MutexLock l(&mu_);
          conf_ = cs;
        }
        absl::MutexLock l(&mu_);
        applied_.push_back(e);
      }
    });
  }
  void Stop() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  // Waits (bounded) until `n` normal entries with data were applied.
  std::vector<raftpb::Entry> WaitForData(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return DataLocked().size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(20));
    return DataLocked();
  }
  std::vector<raftpb::Entry> applied() {
    absl::MutexLock l(&mu_);
    return applied_;
  }
  raftpb::ConfState conf() {
    absl::MutexLock l(&mu_);
    return conf_;
  }

 private:
  std::vector<raftpb::Entry> DataLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<raftpb::Entry> out;
    for (const auto& e : applied_) {
      if (e.type() == raftpb::EntryNormal && !e.data().empty()) out.push_back(e);
    }
    return out;
  }
  absl::Mutex mu_;
  std::deque<raftpb::Entry> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<raftpb::Entry> applied_ ABSL_GUARDED_BY(mu_);
  raftpb::ConfState conf_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class RaftNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("raft_node_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  RaftNode::Options Opts(FakeApplier* applier, uint64_t applied, raftpb::ConfState cs) {
    RaftNode::Options o;
    o.id = 1;
    o.wal_dir = (dir_ / "wal").string();
    o.wal_metadata = "member=1";
    o.bootstrap_voters = {1};
    o.applied_index = applied;
    o.applied_conf_state = cs;
    o.tick_interval = 10ms;
    o.clock = SystemClock::Default();
    o.on_committed = [applier](std::vector<raftpb::Entry> e) { applier->Push(std::move(e)); };
    return o;
  }

  std::filesystem::path dir_;
};

bool WaitForLeader(RaftNode* n) {
  for (int i = 0; i < 2000 && !n->is_leader(); ++i) std::this_thread::sleep_for(5ms);
  return n->is_leader();
}

TEST_F(RaftNodeTest, SingleMemberCommitsInOrderAndReplaysAfterRestart) {
  uint64_t last_applied = 0;
  raftpb::ConfState cs;
  {
    FakeApplier applier;
    auto node = RaftNode::Start(Opts(&applier, 0, {}));
    ASSERT_TRUE(node.ok()) << node.status();
    applier.Run(node->get());
    ASSERT_TRUE(WaitForLeader(node->get()));
    EXPECT_GE((*node)->term(), 1u);
    for (int i = 0; i < 100; ++i) {
      (*node)->Propose("p" + std::to_string(i), [](absl::Status st, std::string) { FAIL() << st; });
    }
    auto data = applier.WaitForData(100);
    ASSERT_EQ(data.size(), 100u);
    for (int i = 0; i < 100; ++i) {
      EXPECT_EQ(data[i].data(), "p" + std::to_string(i));
      if (i > 0) {
        EXPECT_EQ(data[i].index(), data[i - 1].index() + 1);
      }
    }
    cs = applier.conf();
    ASSERT_EQ(cs.voters_size(), 1);
    EXPECT_EQ(cs.voters(0), 1u);
    // Pretend the state machine made the first 50 proposals durable.
    last_applied = data[49].index();
    applier.Stop();
    (*node)->Stop();
  }
  {
    // Restart: only what is after the applied index comes back, in order,
    // followed by new proposals.
    FakeApplier applier;
    auto node = RaftNode::Start(Opts(&applier, last_applied, cs));
    ASSERT_TRUE(node.ok()) << node.status();
    applier.Run(node->get());
    ASSERT_TRUE(WaitForLeader(node->get()));
    (*node)->Propose("after-restart", nullptr);
    auto data = applier.WaitForData(51);
    ASSERT_EQ(data.size(), 51u);
    EXPECT_EQ(data[0].data(), "p50");
    EXPECT_EQ(data[0].index(), last_applied + 1);
    EXPECT_EQ(data[49].data(), "p99");
    EXPECT_EQ(data[50].data(), "after-restart");
    EXPECT_GT(data[50].term(), data[49].term()) << "a restart is a new election";
    applier.Stop();
    (*node)->Stop();
  }
}

// A proposal bound to a leader term is appended only by the leader of that
// term: anything else drops it, empty (never proposed again), so what a
// deposed leader decided cannot be forwarded to its successor.
TEST_F(RaftNodeTest, TermBoundProposalOnlyByThatTermsLeader) {
  FakeApplier applier;
  auto node = RaftNode::Start(Opts(&applier, 0, {}));
  ASSERT_TRUE(node.ok()) << node.status();
  applier.Run(node->get());
  ASSERT_TRUE(WaitForLeader(node->get()));
  const uint64_t term = (*node)->term();
  absl::Notification dropped;
  std::string back = "unset";
  (*node)->Propose(
      "other-term",
      [&](absl::Status st, std::string data) {
        EXPECT_FALSE(st.ok());
        back = std::move(data);
        dropped.Notify();
      },
      term + 1);
  (*node)->Propose("this-term", [](absl::Status st, std::string) { FAIL() << st; }, term);
  ASSERT_TRUE(dropped.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(back, "") << "a term-bound proposal never comes back for a retry";
  auto data = applier.WaitForData(1);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].data(), "this-term");
  EXPECT_EQ(data[0].term(), term);
  // Nothing else was appended behind it.
  (*node)->Propose("after", nullptr);
  data = applier.WaitForData(2);
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[1].data(), "after");
  applier.Stop();
  (*node)->Stop();
}

TEST_F(RaftNodeTest, AppliedIndexBeyondTheWalIsDataLoss) {
  {
    FakeApplier applier;
    auto node = RaftNode::Start(Opts(&applier, 0, {}));
    ASSERT_TRUE(node.ok());
    applier.Run(node->get());
    ASSERT_TRUE(WaitForLeader(node->get()));
    applier.Stop();
    (*node)->Stop();
  }
  FakeApplier applier;
  raftpb::ConfState cs;
  cs.add_voters(1);
  auto node = RaftNode::Start(Opts(&applier, 1000, cs));
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), absl::StatusCode::kDataLoss) << node.status();
}

TEST_F(RaftNodeTest, ForeignWalIsRefused) {
  {
    FakeApplier applier;
    auto node = RaftNode::Start(Opts(&applier, 0, {}));
    ASSERT_TRUE(node.ok());
    (*node)->Stop();
  }
  FakeApplier applier;
  RaftNode::Options o = Opts(&applier, 0, {});
  o.wal_metadata = "member=2";
  auto node = RaftNode::Start(o);
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace etcdpp::server
