// Runs the deterministic cluster simulator (sim.h) over many seeds, and
// proves the checker catches planted bugs. A failing seed prints the exact
// command that replays it alone: build-raft/tests/raft/raft_sim --seed=S.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "sim.h"

namespace etcdpp::raft::sim {
namespace {

void RunSeeds(uint64_t first, uint64_t count, int voters, int chaos_ticks = 200) {
  int failures = 0;
  uint64_t committed = 0, leaders = 0, conf = 0;
  for (uint64_t s = first; s < first + count; ++s) {
    SimOptions o;
    o.seed = s;
    o.voters = voters;
    o.chaos_ticks = chaos_ticks;
    SimResult r = RunSim(o);
    committed += r.committed;
    leaders += r.leaders;
    conf += r.conf_changes;
    if (!r.ok) {
      ++failures;
      ADD_FAILURE() << "seed " << s << ": " << r.failure << "\n  config: " << r.config
                    << "\n  replay: raft_sim --seed=" << s << " --voters=" << voters
                    << (chaos_ticks != 200 ? absl::StrCat(" --ticks=", chaos_ticks) : "");
      if (failures >= 5) return;
    }
  }
  // The runs did real work.
  EXPECT_GT(committed, count * 20);
  EXPECT_GT(leaders, count);
  EXPECT_GT(conf, count / 2);
}

TEST(RaftSim, Voters3) { RunSeeds(1, 1200, 3); }
TEST(RaftSim, Voters5) { RunSeeds(1, 900, 5); }
TEST(RaftSim, Voters7) { RunSeeds(1, 700, 7); }
TEST(RaftSim, SeedChosenSizeA) { RunSeeds(10'001, 600, 0); }
TEST(RaftSim, SeedChosenSizeB) { RunSeeds(20'001, 600, 0); }
TEST(RaftSim, LongChaos) { RunSeeds(30'001, 80, 0, /*chaos_ticks=*/2000); }

TEST(RaftSim, SameSeedSameRun) {
  for (uint64_t s : {7, 77, 777}) {
    SimOptions o;
    o.seed = s;
    SimResult a = RunSim(o), b = RunSim(o);
    EXPECT_EQ(a.ok, b.ok);
    EXPECT_EQ(a.config, b.config);
    EXPECT_EQ(a.committed, b.committed);
    EXPECT_EQ(a.messages, b.messages);
    EXPECT_EQ(a.leaders, b.leaders);
    EXPECT_EQ(a.recovery_ticks, b.recovery_ticks);
  }
}

// Returns the first failure over seeds [1, max_seeds] with the options.
std::string FirstFailure(SimOptions o, uint64_t max_seeds, uint64_t* seed) {
  for (uint64_t s = 1; s <= max_seeds; ++s) {
    o.seed = s;
    SimResult r = RunSim(o);
    if (!r.ok) {
      *seed = s;
      return r.failure;
    }
  }
  return "";
}

TEST(RaftSimPlantedBug, CountingLearnerVotesIsCaught) {
  SimOptions o;
  o.bug_count_learner_votes = true;
  o.learner_heavy = true;
  uint64_t seed = 0;
  std::string failure = FirstFailure(o, 200, &seed);
  ASSERT_FALSE(failure.empty()) << "the checker never fired";
  EXPECT_TRUE(failure.find("learners never vote") != std::string::npos ||
              failure.find("election safety") != std::string::npos)
      << failure;
  // The same seed is clean without the bug, and replays to the same failure.
  SimOptions clean = o;
  clean.seed = seed;
  clean.bug_count_learner_votes = false;
  EXPECT_TRUE(RunSim(clean).ok);
  SimOptions again = o;
  again.seed = seed;
  EXPECT_EQ(RunSim(again).failure, failure);
}

TEST(RaftSimPlantedBug, CommittingOldTermEntryByCountIsCaught) {
  SimOptions o;
  o.bug_commit_old_term_by_count = true;
  uint64_t seed = 0;
  std::string failure = FirstFailure(o, 400, &seed);
  ASSERT_FALSE(failure.empty()) << "the checker never fired";
  EXPECT_NE(failure.find("commit rule"), std::string::npos) << failure;
  SimOptions clean = o;
  clean.seed = seed;
  clean.bug_commit_old_term_by_count = false;
  EXPECT_TRUE(RunSim(clean).ok);
}

TEST(RaftSimPlantedBug, VotingTwiceInATermIsCaught) {
  SimOptions o;
  o.bug_vote_more_than_once = true;
  uint64_t seed = 0;
  std::string failure = FirstFailure(o, 200, &seed);
  ASSERT_FALSE(failure.empty()) << "the checker never fired";
  EXPECT_NE(failure.find("election safety"), std::string::npos) << failure;
}

TEST(RaftSimPlantedBug, ReadIndexWithoutQuorumIsCaught) {
  SimOptions o;
  o.bug_read_index_without_quorum = true;
  uint64_t seed = 0;
  std::string failure = FirstFailure(o, 400, &seed);
  ASSERT_FALSE(failure.empty()) << "the checker never fired";
  EXPECT_NE(failure.find("ReadIndex not linearizable"), std::string::npos) << failure;
}

}  // namespace
}  // namespace etcdpp::raft::sim
