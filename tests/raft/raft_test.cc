// Unit tests of the raft core: one or more per rule of figure 2 of the Raft
// paper and per feature of issue 3 (pre-vote, check-quorum, learners,
// leader transfer, ReadIndex, snapshots, membership changes).
#include "raft/raft.h"

#include <gtest/gtest.h>

#include "raft/errors.h"
#include "raft/progress.h"
#include "raft/raw_node.h"
#include "test_util.h"

namespace etcdpp::raft {
namespace {

using testing::Ent;
using testing::MakeConfState;
using testing::Msg;
using testing::Network;
using testing::NewStorage;
using testing::NewTestRaft;
using testing::PropMsg;

void PreVote(Config& c) { c.pre_vote = true; }
void CheckQuorum(Config& c) { c.check_quorum = true; }
void Both(Config& c) {
  c.pre_vote = true;
  c.check_quorum = true;
}

std::vector<raftpb::Entry> AllEntries(Raft& r) { return r.log().AllEntries(); }

// Ticks `id` until its election timeout fires, delivering messages.
void TickUntilElection(Network& nw, uint64_t id) {
  Raft& r = nw[id];
  for (int i = 0; i < 2 * r.config().election_tick + 1; ++i) {
    r.Tick();
    nw.Send(nw.node(id).TakeMsgs());
  }
}

// ---------- Election (figure 2: RequestVote, rules for servers) ----------

TEST(RaftElection, SingleCampaignWins) {
  for (auto tweak : {+[](Config&) {}, +[](Config& c) { PreVote(c); }}) {
    Network nw(3, tweak);
    nw.Campaign(1);
    EXPECT_EQ(nw[1].state(), StateType::kLeader);
    EXPECT_EQ(nw[1].term(), 1u);
    EXPECT_EQ(nw[2].state(), StateType::kFollower);
    EXPECT_EQ(nw[2].lead(), 1u);
    EXPECT_EQ(nw[2].vote(), 1u);
  }
}

TEST(RaftElection, SingleNodeBecomesLeaderAndCommits) {
  Network nw(1);
  nw.Campaign(1);
  EXPECT_EQ(nw[1].state(), StateType::kLeader);
  nw.Propose(1, "x");
  EXPECT_EQ(nw[1].log().committed(), 2u);
}

TEST(RaftElection, CandidateLosesWithoutQuorum) {
  Network nw(5);
  nw.Isolate(1);
  nw.Campaign(1);
  EXPECT_EQ(nw[1].state(), StateType::kCandidate);
  EXPECT_EQ(nw[1].term(), 1u);
}

TEST(RaftElection, RejectsCandidateWithStaleLog) {
  // Raft paper 5.4.1: vote only for candidates at least as up to date.
  auto s = NewStorage({1, 2});
  ASSERT_TRUE(s->Append({Ent(1, 1), Ent(2, 2)}).ok());
  auto r = NewTestRaft(1, std::move(s));
  r->BecomeFollower(2, kNone);
  struct Case {
    uint64_t index, log_term;
    bool reject;
  } cases[] = {{1, 1, true}, {2, 1, true}, {3, 1, true}, {1, 2, true},
               {2, 2, false}, {3, 2, false}, {1, 3, false}};
  for (const Case& c : cases) {
    r->BecomeFollower(2, kNone);  // reset the vote
    raftpb::Message m = Msg(2, 1, raftpb::MsgVote, 3);
    m.set_index(c.index);
    m.set_log_term(c.log_term);
    ASSERT_TRUE(r->Step(m).ok());
    auto msgs = r.TakeMsgs();
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0].type(), raftpb::MsgVoteResp);
    EXPECT_EQ(msgs[0].reject(), c.reject) << c.index << "/" << c.log_term;
  }
}

TEST(RaftElection, VotesOncePerTerm) {
  auto r = NewTestRaft(1, NewStorage({1, 2, 3}));
  raftpb::Message v2 = Msg(2, 1, raftpb::MsgVote, 1);
  ASSERT_TRUE(r->Step(v2).ok());
  EXPECT_FALSE(r.TakeMsgs()[0].reject());
  EXPECT_EQ(r->vote(), 2u);
  raftpb::Message v3 = Msg(3, 1, raftpb::MsgVote, 1);
  ASSERT_TRUE(r->Step(v3).ok());
  EXPECT_TRUE(r.TakeMsgs()[0].reject());
  // A repeated request from the same candidate is granted again.
  ASSERT_TRUE(r->Step(v2).ok());
  EXPECT_FALSE(r.TakeMsgs()[0].reject());
}

TEST(RaftElection, VoteRequestWithLowerTermRejected) {
  auto r = NewTestRaft(1, NewStorage({1, 2, 3}));
  r->BecomeFollower(5, kNone);
  ASSERT_TRUE(r->Step(Msg(2, 1, raftpb::MsgVote, 4)).ok());
  // Figure 2: reply false if term < currentTerm (a stale MsgVote is dropped).
  for (const auto& m : r.TakeMsgs()) EXPECT_TRUE(m.reject());
  EXPECT_EQ(r->vote(), kNone);
  EXPECT_EQ(r->term(), 5u);
}

TEST(RaftElection, CandidateStartsNewElectionOnTimeout) {
  Network nw(3);
  nw.Isolate(1);
  nw.Campaign(1);
  ASSERT_EQ(nw[1].term(), 1u);
  TickUntilElection(nw, 1);
  EXPECT_EQ(nw[1].state(), StateType::kCandidate);
  EXPECT_GE(nw[1].term(), 2u);
}

TEST(RaftElection, HigherTermMakesLeaderStepDown) {
  Network nw(3);
  nw.Campaign(1);
  ASSERT_EQ(nw[1].state(), StateType::kLeader);
  raftpb::Message app = Msg(2, 1, raftpb::MsgApp, 5);
  ASSERT_TRUE(nw[1].Step(app).ok());
  EXPECT_EQ(nw[1].state(), StateType::kFollower);
  EXPECT_EQ(nw[1].term(), 5u);
  EXPECT_EQ(nw[1].lead(), 2u);
}

TEST(RaftElection, CandidateStepsDownOnAppendOfSameTerm) {
  Network nw(3);
  nw.Isolate(1);
  nw.Campaign(1);
  ASSERT_EQ(nw[1].state(), StateType::kCandidate);
  raftpb::Message app = Msg(2, 1, raftpb::MsgApp, 1);
  ASSERT_TRUE(nw[1].Step(app).ok());
  EXPECT_EQ(nw[1].state(), StateType::kFollower);
  EXPECT_EQ(nw[1].lead(), 2u);
}

TEST(RaftElection, StaleTermMessagesIgnored) {
  Network nw(3);
  nw.Campaign(1);
  nw.Campaign(2);  // term 2
  ASSERT_EQ(nw[2].state(), StateType::kLeader);
  uint64_t last = nw[2].log().LastIndex();
  raftpb::Message app = Msg(1, 2, raftpb::MsgApp, 1);
  app.set_index(last);
  app.set_log_term(2);
  *app.add_entries() = Ent(last + 1, 1);
  ASSERT_TRUE(nw[2].Step(app).ok());
  EXPECT_EQ(nw[2].state(), StateType::kLeader);
  EXPECT_EQ(nw[2].log().LastIndex(), last);
}

TEST(RaftElection, RandomizedTimeoutInRange) {
  auto r = NewTestRaft(1, NewStorage({1, 2, 3}));
  std::set<int> seen;
  for (int i = 0; i < 200; ++i) {
    r->BecomeFollower(r->term() + 1, kNone);
    int t = r->randomized_election_timeout();
    EXPECT_GE(t, 10);
    EXPECT_LT(t, 20);
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 5u);
}

TEST(RaftElection, FollowerCampaignsAfterTimeout) {
  Network nw(3);
  TickUntilElection(nw, 1);
  EXPECT_EQ(nw[1].state(), StateType::kLeader);
}

// ---------- Pre-vote ----------

TEST(RaftPreVote, DoesNotBumpTerms) {
  Network nw(3, +[](Config& c) { PreVote(c); });
  nw.Campaign(1);
  ASSERT_EQ(nw[1].state(), StateType::kLeader);
  nw.Isolate(3);
  for (int i = 0; i < 5; ++i) TickUntilElection(nw, 3);
  // The partitioned node keeps failing its pre-vote, so its term stays.
  EXPECT_EQ(nw[3].term(), 1u);
  EXPECT_EQ(nw[3].state(), StateType::kPreCandidate);
  nw.Recover();
  nw.Beat(1);
  EXPECT_EQ(nw[1].state(), StateType::kLeader);
  EXPECT_EQ(nw[1].term(), 1u);
  EXPECT_EQ(nw[3].state(), StateType::kFollower);
}

TEST(RaftPreVote, WithoutPreVoteARejoiningNodeDisrupts) {
  Network nw(3);
  nw.Campaign(1);
  nw.Isolate(3);
  TickUntilElection(nw, 3);
  EXPECT_EQ(nw[3].term(), 2u);
  nw.Recover();
  // Its next campaign (higher term) deposes the leader: this is the
  // disruption pre-vote prevents.
  TickUntilElection(nw, 3);
  EXPECT_NE(nw[1].state(), StateType::kLeader);
  EXPECT_GE(nw[1].term(), 3u);
}

TEST(RaftPreVote, PreVoteRespectsLogUpToDateness) {
  Network nw(3, +[](Config& c) { PreVote(c); });
  nw.Campaign(1);
  nw.Isolate(3);
  nw.Propose(1, "a");
  nw.Recover();
  // Node 3 lacks the entry: its pre-vote is rejected by both others.
  nw.node(1).raft->BecomeFollower(1, kNone);
  nw.node(2).raft->BecomeFollower(1, kNone);
  nw.Campaign(3);
  EXPECT_NE(nw[3].state(), StateType::kLeader);
  EXPECT_EQ(nw[3].term(), 1u);
}

// ---------- Check quorum ----------

TEST(RaftCheckQuorum, LeaderStepsDownWithoutQuorum) {
  Network nw(3, +[](Config& c) { CheckQuorum(c); });
  nw.Campaign(1);
  ASSERT_EQ(nw[1].state(), StateType::kLeader);
  nw.Isolate(1);
  for (int i = 0; i < 2 * 10 + 1; ++i) {
    nw[1].Tick();
    nw.Send(nw.node(1).TakeMsgs());
  }
  EXPECT_EQ(nw[1].state(), StateType::kFollower);
}

TEST(RaftCheckQuorum, LeaderStaysWithQuorum) {
  Network nw(3, +[](Config& c) { CheckQuorum(c); });
  nw.Campaign(1);
  nw.Isolate(3);
  for (int i = 0; i < 5 * 10; ++i) {
    nw[1].Tick();
    nw.Send(nw.node(1).TakeMsgs());
  }
  EXPECT_EQ(nw[1].state(), StateType::kLeader);
}

TEST(RaftCheckQuorum, FollowerInLeaseIgnoresVotes) {
  Network nw(3, +[](Config& c) { CheckQuorum(c); });
  nw.Campaign(1);
  raftpb::Message v = Msg(3, 2, raftpb::MsgVote, 5);
  v.set_index(100);
  v.set_log_term(100);
  ASSERT_TRUE(nw[2].Step(v).ok());
  EXPECT_TRUE(nw.node(2).TakeMsgs().empty());
  EXPECT_EQ(nw[2].term(), 1u);
}

TEST(RaftCheckQuorum, StaleLeaderLearnsNewTermFromAppResp) {
  Network nw(3, +[](Config& c) { Both(c); });
  nw.Campaign(1);
  nw.Isolate(1);
  // 2 and 3 elect a new leader once their leases expire.
  for (int i = 0; i < 2 * 10 + 1; ++i) nw[3].Tick();
  nw.node(3).TakeMsgs();
  TickUntilElection(nw, 2);
  ASSERT_EQ(nw[2].state(), StateType::kLeader);
  nw.Recover();
  nw.Beat(1);  // the stale leader's heartbeat is answered with the new term
  EXPECT_EQ(nw[1].state(), StateType::kFollower);
  EXPECT_EQ(nw[1].term(), nw[2].term());
}

// ---------- Replication: log matching, commit rules ----------

TEST(RaftReplication, ProposalCommitsOnQuorum) {
  Network nw(3);
  nw.Campaign(1);
  nw.Propose(1, "x");
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(nw[id].log().committed(), 2u);
    auto ents = AllEntries(nw[id]);
    ASSERT_EQ(ents.size(), 2u);
    EXPECT_EQ(ents[1].data(), "x");
  }
}

TEST(RaftReplication, FollowerRejectsMismatchedPrevLogAndHints) {
  auto s = NewStorage({1, 2});
  ASSERT_TRUE(s->Append({Ent(1, 1), Ent(2, 1), Ent(3, 2), Ent(4, 2)}).ok());
  auto r = NewTestRaft(2, std::move(s));
  r->BecomeFollower(3, 1);
  raftpb::Message app = Msg(1, 2, raftpb::MsgApp, 3);
  app.set_index(4);
  app.set_log_term(3);  // we have term 2 at index 4
  ASSERT_TRUE(r->Step(app).ok());
  auto msgs = r.TakeMsgs();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_TRUE(msgs[0].reject());
  EXPECT_EQ(msgs[0].index(), 4u);
  EXPECT_EQ(msgs[0].reject_hint(), 4u);  // last index with term <= 3
  EXPECT_EQ(msgs[0].log_term(), 2u);
  // Probe that our log lacks entirely.
  app.set_index(9);
  app.set_log_term(3);
  ASSERT_TRUE(r->Step(app).ok());
  msgs = r.TakeMsgs();
  EXPECT_TRUE(msgs[0].reject());
  EXPECT_EQ(msgs[0].reject_hint(), 4u);
}

TEST(RaftReplication, ConflictingEntriesAreTruncated) {
  auto s = NewStorage({1, 2});
  ASSERT_TRUE(s->Append({Ent(1, 1), Ent(2, 1), Ent(3, 1)}).ok());
  auto r = NewTestRaft(2, std::move(s));
  r->BecomeFollower(2, 1);
  raftpb::Message app = Msg(1, 2, raftpb::MsgApp, 2);
  app.set_index(1);
  app.set_log_term(1);
  *app.add_entries() = Ent(2, 2, "new");
  ASSERT_TRUE(r->Step(app).ok());
  auto ents = AllEntries(*r.raft);
  ASSERT_EQ(ents.size(), 2u);
  EXPECT_EQ(ents[1].term(), 2u);
  EXPECT_EQ(ents[1].data(), "new");
  auto msgs = r.TakeMsgs();
  EXPECT_FALSE(msgs[0].reject());
  EXPECT_EQ(msgs[0].index(), 2u);
}

TEST(RaftReplication, DuplicateAppendIsIdempotent) {
  auto r = NewTestRaft(2, NewStorage({1, 2}));
  r->BecomeFollower(1, 1);
  raftpb::Message app = Msg(1, 2, raftpb::MsgApp, 1);
  app.set_index(0);
  app.set_log_term(0);
  *app.add_entries() = Ent(1, 1, "a");
  *app.add_entries() = Ent(2, 1, "b");
  ASSERT_TRUE(r->Step(app).ok());
  // An older, shorter copy must not truncate the longer log.
  raftpb::Message old = app;
  old.mutable_entries()->RemoveLast();
  ASSERT_TRUE(r->Step(old).ok());
  EXPECT_EQ(r->log().LastIndex(), 2u);
}

TEST(RaftReplication, FollowerCommitIsMinOfLeaderCommitAndLastNew) {
  auto r = NewTestRaft(2, NewStorage({1, 2}));
  r->BecomeFollower(1, 1);
  raftpb::Message app = Msg(1, 2, raftpb::MsgApp, 1);
  app.set_commit(10);
  *app.add_entries() = Ent(1, 1);
  *app.add_entries() = Ent(2, 1);
  ASSERT_TRUE(r->Step(app).ok());
  EXPECT_EQ(r->log().committed(), 2u);
}

// Figure 8 of the Raft paper: an entry of an older term that is stored on a
// majority must not be committed by counting; only a current-term entry
// commits it.
TEST(RaftReplication, OldTermEntryCommitsOnlyViaCurrentTermEntry) {
  Network nw(5);
  nw.Campaign(1);  // term 1, entry 1 committed everywhere
  ASSERT_EQ(nw[1].log().committed(), 1u);
  // Leader 1 (term 1) replicates entry 2 only to node 2.
  nw.Isolate(1);
  nw.Recover();
  for (uint64_t id : {3, 4, 5}) nw.Cut(1, id);
  nw.Propose(1, "old");
  ASSERT_EQ(nw[2].log().LastIndex(), 2u);
  ASSERT_EQ(nw[1].log().committed(), 1u);
  // Node 5 becomes leader in term 2 with votes of 3 and 4; its appends are
  // lost, then it crashes.
  nw.Recover();
  nw.Isolate(1);
  nw.Isolate(2);
  nw.Ignore(raftpb::MsgApp);
  nw.Campaign(5);
  ASSERT_EQ(nw[5].state(), StateType::kLeader);
  ASSERT_EQ(nw[5].term(), 2u);
  // Node 1 becomes leader in term 3 (votes from 2, 3, 4); its appends to 3
  // and 4 are lost.
  nw.Recover();
  nw.Isolate(5);
  nw.Ignore(raftpb::MsgApp);
  nw.node(1).raft->BecomeFollower(2, kNone);
  nw.Campaign(1);
  ASSERT_EQ(nw[1].state(), StateType::kLeader);
  ASSERT_EQ(nw[1].term(), 3u);
  // Leader 1 replicates the term-1 entry 2 to node 3 by hand-crafted
  // appends (as in figure 8 (c)): 1, 2, 3 store it, a majority of 5.
  uint64_t old_index = 2;
  raftpb::Message app = Msg(1, 3, raftpb::MsgApp, 3);
  app.set_index(1);
  app.set_log_term(1);
  *app.add_entries() = Ent(2, 1, "old");
  ASSERT_TRUE(nw[3].Step(app).ok());
  auto resp = nw.node(3).TakeMsgs();
  ASSERT_EQ(resp.size(), 1u);
  ASSERT_FALSE(resp[0].reject());
  // Rewrite the ack to claim only the old entry (index 2).
  resp[0].set_index(old_index);
  ASSERT_TRUE(nw[1].Step(resp[0]).ok());
  raftpb::Message ack2 = Msg(2, 1, raftpb::MsgAppResp, 3);
  ack2.set_index(old_index);
  ASSERT_TRUE(nw[1].Step(ack2).ok());
  // A majority stores index 2, but its term (1) is not the current term.
  EXPECT_EQ(nw[1].log().committed(), 1u);
  // Once the current-term entry (index 3) reaches a majority, both commit.
  raftpb::Message ack3 = Msg(2, 1, raftpb::MsgAppResp, 3);
  ack3.set_index(3);
  ASSERT_TRUE(nw[1].Step(ack3).ok());
  raftpb::Message ack3b = Msg(3, 1, raftpb::MsgAppResp, 3);
  ack3b.set_index(3);
  ASSERT_TRUE(nw[1].Step(ack3b).ok());
  EXPECT_EQ(nw[1].log().committed(), 3u);
}

TEST(RaftReplication, PlantedBugCommitsOldTermByCount) {
  // The same situation with the planted bug commits index 2 by count.
  auto s = NewStorage({1, 2, 3});
  ASSERT_TRUE(s->Append({Ent(1, 1), Ent(2, 1)}).ok());
  auto r = NewTestRaft(1, std::move(s), 10, 1,
                       [](Config& c) { c.testing.commit_old_term_by_count = true; });
  r->BecomeFollower(2, kNone);
  r->BecomeCandidate();
  r->BecomeLeader();  // term 3, empty entry at 3
  raftpb::Message ack = Msg(2, 1, raftpb::MsgAppResp, 3);
  ack.set_index(2);
  ASSERT_TRUE(r->Step(ack).ok());
  EXPECT_EQ(r->log().committed(), 2u);  // the bug
}

TEST(RaftReplication, LeaderOnlyAppendsNeverOverwrites) {
  Network nw(3);
  nw.Campaign(1);
  nw.Propose(1, "a");
  uint64_t last = nw[1].log().LastIndex();
  // A rejected append never makes the leader truncate its own log.
  raftpb::Message rej = Msg(2, 1, raftpb::MsgAppResp, 1);
  rej.set_index(last);
  rej.set_reject(true);
  rej.set_reject_hint(0);
  ASSERT_TRUE(nw[1].Step(rej).ok());
  EXPECT_EQ(nw[1].log().LastIndex(), last);
}

TEST(RaftReplication, FastBackOffSkipsTerms) {
  // Leader log: terms 1..1 then 5 x 100; follower diverged with term 2..4
  // entries. Back-off should take a handful of round trips, not 100.
  auto ls = NewStorage({1, 2});
  std::vector<raftpb::Entry> le = {Ent(1, 1)};
  for (uint64_t i = 2; i <= 100; ++i) le.push_back(Ent(i, 5));
  ASSERT_TRUE(ls->Append(le).ok());
  ls->SetHardState([] { raftpb::HardState h; h.set_term(5); return h; }());
  auto fs = NewStorage({1, 2});
  std::vector<raftpb::Entry> fe = {Ent(1, 1)};
  for (uint64_t i = 2; i <= 120; ++i) fe.push_back(Ent(i, 2 + i % 3));
  ASSERT_TRUE(fs->Append(fe).ok());
  Network nw;
  nw.Add(1, NewTestRaft(1, std::move(ls)));
  nw.Add(2, NewTestRaft(2, std::move(fs)));
  nw[1].BecomeCandidate();
  nw[1].BecomeLeader();
  int apps = 0;
  std::vector<raftpb::Message> q = nw.node(1).TakeMsgs();
  nw[1].Step(Msg(1, 1, raftpb::MsgBeat)).IgnoreError();
  q = nw.node(1).TakeMsgs();
  // Drive by hand, counting MsgApps.
  std::deque<raftpb::Message> dq(q.begin(), q.end());
  while (!dq.empty()) {
    raftpb::Message m = dq.front();
    dq.pop_front();
    if (m.type() == raftpb::MsgApp) ++apps;
    nw[m.to()].Step(m).IgnoreError();
    for (auto& o : nw.node(m.to()).TakeMsgs()) dq.push_back(o);
  }
  EXPECT_EQ(nw[2].log().LastIndex(), nw[1].log().LastIndex());
  EXPECT_EQ(nw[2].log().LastTerm(), nw[1].log().LastTerm());
  EXPECT_LE(apps, 6);
}

TEST(RaftReplication, ProbeStateSendsOneAppendAtATime) {
  Network nw(2);
  nw.Campaign(1);
  nw.Isolate(2);
  Raft& l = nw[1];
  l.tracker().Get(2)->BecomeProbe();
  nw.node(1).TakeMsgs();
  for (int i = 0; i < 3; ++i) l.Step(PropMsg(1, "x")).IgnoreError();
  int apps = 0;
  for (auto& m : nw.node(1).TakeMsgs()) apps += m.type() == raftpb::MsgApp;
  EXPECT_EQ(apps, 1);
  EXPECT_TRUE(l.tracker().Get(2)->probe_sent);
}

TEST(RaftReplication, ReplicateStateIsBoundedByInflightWindow) {
  Network nw(2, +[](Config& c) { c.max_inflight_msgs = 3; c.max_size_per_msg = 0; });
  nw.Campaign(1);
  ASSERT_EQ(nw[1].tracker().Get(2)->state, ProgressState::kReplicate);
  nw.Isolate(2);
  for (int i = 0; i < 10; ++i) nw.Propose(1, "x");
  EXPECT_TRUE(nw[1].tracker().Get(2)->inflights.Full());
  EXPECT_EQ(nw[1].tracker().Get(2)->inflights.Count(), 3u);
  // Heartbeat responses free a slot so replication resumes slowly.
  nw.Recover();
  for (int i = 0; i < 12; ++i) nw.Beat(1);
  EXPECT_EQ(nw[2].log().LastIndex(), nw[1].log().LastIndex());
}

TEST(RaftReplication, BatchesEntriesUpToMaxSizePerMsg) {
  Network nw(2, +[](Config& c) { c.max_size_per_msg = 3 * (24 + 10); });
  nw.Campaign(1);
  nw.Isolate(2);
  for (int i = 0; i < 9; ++i) nw.Propose(1, std::string(10, 'x'));
  // Reconnect and force a fresh probe from the match index.
  nw.Recover();
  nw[1].tracker().Get(2)->BecomeProbe();
  nw.node(1).TakeMsgs();
  nw[1].Step(Msg(2, 1, raftpb::MsgHeartbeatResp, 1)).IgnoreError();
  auto msgs = nw.node(1).TakeMsgs();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].type(), raftpb::MsgApp);
  EXPECT_EQ(msgs[0].entries_size(), 3);
}

// ---------- Learners ----------

TEST(RaftLearner, NeverCountedInQuorum) {
  Network nw(2, nullptr, /*learners=*/1);  // voters 1,2; learner 3
  nw.Campaign(1);
  ASSERT_EQ(nw[1].state(), StateType::kLeader);
  uint64_t committed = nw[1].log().committed();
  nw.Isolate(2);
  nw.Propose(1, "x");
  // Leader + learner have it, but the learner does not count.
  EXPECT_EQ(nw[3].log().LastIndex(), nw[1].log().LastIndex());
  EXPECT_EQ(nw[1].log().committed(), committed);
}

TEST(RaftLearner, NeverCampaignsOrGetsVoteRequests) {
  Network nw(2, nullptr, 1);
  for (int i = 0; i < 100; ++i) {
    nw[3].Tick();
    EXPECT_TRUE(nw.node(3).TakeMsgs().empty());
  }
  EXPECT_EQ(nw[3].state(), StateType::kFollower);
  nw[1].Step(Msg(1, 1, raftpb::MsgHup)).IgnoreError();
  for (auto& m : nw.node(1).TakeMsgs()) EXPECT_NE(m.to(), 3u);
}

TEST(RaftLearner, VoteOfLearnerIsNotCounted) {
  auto r = NewTestRaft(1, NewStorage({1, 2, 3}, {4}));
  r->Step(Msg(1, 1, raftpb::MsgHup)).IgnoreError();
  ASSERT_EQ(r->state(), StateType::kCandidate);
  r->Step(Msg(4, 1, raftpb::MsgVoteResp, 1)).IgnoreError();
  EXPECT_EQ(r->state(), StateType::kCandidate);
  r->Step(Msg(2, 1, raftpb::MsgVoteResp, 1)).IgnoreError();
  EXPECT_EQ(r->state(), StateType::kLeader);
}

TEST(RaftLearner, PlantedBugCountsLearnerVote) {
  auto r = NewTestRaft(1, NewStorage({1, 2, 3}, {4}), 10, 1,
                       [](Config& c) { c.testing.count_learner_votes = true; });
  r->Step(Msg(1, 1, raftpb::MsgHup)).IgnoreError();
  ASSERT_EQ(r->state(), StateType::kCandidate);
  r->Step(Msg(4, 1, raftpb::MsgVoteResp, 1)).IgnoreError();
  EXPECT_EQ(r->state(), StateType::kLeader);  // the bug
}

TEST(RaftLearner, PromotionMakesItCount) {
  Network nw(2, nullptr, 1);
  nw.Campaign(1);
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeAddNode);
  cc.set_node_id(3);
  for (uint64_t id : {1, 2, 3}) nw[id].ApplyConfChange(cc);
  EXPECT_TRUE(nw[1].tracker().IsVoter(3));
  EXPECT_FALSE(nw[3].is_learner());
  nw.Isolate(2);
  uint64_t committed = nw[1].log().committed();
  nw.Propose(1, "x");
  EXPECT_EQ(nw[1].log().committed(), committed + 1);
}

// ---------- Membership changes ----------

raftpb::Message ConfPropMsg(uint64_t id, raftpb::ConfChangeType t, uint64_t node) {
  raftpb::ConfChange cc;
  cc.set_type(t);
  cc.set_node_id(node);
  raftpb::Message m = Msg(id, id, raftpb::MsgProp);
  raftpb::Entry* e = m.add_entries();
  e->set_type(raftpb::EntryConfChange);
  e->set_data(cc.SerializeAsString());
  return m;
}

TEST(RaftConfChange, OnlyOnePendingAtATime) {
  Network nw(3);
  nw.Campaign(1);
  // Apply the leader's empty entry so conf changes are allowed.
  nw[1].AdvanceApplied(nw[1].log().committed());
  nw.Local(1, ConfPropMsg(1, raftpb::ConfChangeAddLearnerNode, 4));
  nw.Local(1, ConfPropMsg(1, raftpb::ConfChangeAddLearnerNode, 5));
  auto ents = AllEntries(nw[1]);
  ASSERT_EQ(ents.size(), 3u);
  EXPECT_EQ(ents[1].type(), raftpb::EntryConfChange);
  EXPECT_EQ(ents[2].type(), raftpb::EntryNormal);  // refused: replaced
  EXPECT_TRUE(ents[2].data().empty());
}

TEST(RaftConfChange, NewLeaderRefusesConfChangeUntilItsEntryApplied) {
  Network nw(3);
  nw.Campaign(1);
  nw.Local(1, ConfPropMsg(1, raftpb::ConfChangeAddLearnerNode, 4));
  EXPECT_EQ(AllEntries(nw[1]).back().type(), raftpb::EntryNormal);
}

TEST(RaftConfChange, NoCampaignWithUnappliedConfChange) {
  Network nw(3);
  nw.Campaign(1);
  nw[1].AdvanceApplied(nw[1].log().committed());
  nw.Local(1, ConfPropMsg(1, raftpb::ConfChangeAddLearnerNode, 4));
  ASSERT_GT(nw[2].log().committed(), nw[2].log().applied());
  nw.Campaign(2);
  EXPECT_EQ(nw[2].state(), StateType::kFollower);
}

TEST(RaftConfChange, RemovingVoterShrinksQuorumAndCommits) {
  Network nw(3);
  nw.Campaign(1);
  nw.Isolate(2);
  nw.Isolate(3);
  nw.Propose(1, "x");
  uint64_t li = nw[1].log().LastIndex();
  ASSERT_LT(nw[1].log().committed(), li);
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeRemoveNode);
  cc.set_node_id(2);
  nw[1].ApplyConfChange(cc);
  EXPECT_LT(nw[1].log().committed(), li);  // 1 of {1,3} is not a quorum
  cc.set_node_id(3);
  nw[1].ApplyConfChange(cc);
  EXPECT_EQ(nw[1].log().committed(), li);  // {1} alone
}

TEST(RaftConfChange, RemovedLeaderHandsOffLeadership) {
  Network nw(3);
  nw.Campaign(1);
  nw.Propose(1, "x");
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeRemoveNode);
  cc.set_node_id(1);
  for (uint64_t id : {2, 3}) nw[id].ApplyConfChange(cc);
  nw[1].ApplyConfChange(cc);
  nw.Send(nw.node(1).TakeMsgs());
  EXPECT_NE(nw[1].state(), StateType::kLeader);
  bool new_leader = nw[2].state() == StateType::kLeader || nw[3].state() == StateType::kLeader;
  EXPECT_TRUE(new_leader);
  EXPECT_EQ(nw[1].tracker().Get(1), nullptr);
  // The removed node never campaigns again.
  for (int i = 0; i < 50; ++i) nw[1].Tick();
  for (auto& m : nw.node(1).TakeMsgs()) {
    EXPECT_NE(m.type(), raftpb::MsgVote);
    EXPECT_NE(m.type(), raftpb::MsgPreVote);
  }
}

TEST(RaftConfChange, AddedNodeCatchesUp) {
  Network nw(3);
  nw.Campaign(1);
  nw.Propose(1, "a");
  nw.Propose(1, "b");
  nw.Add(4, NewTestRaft(4, std::make_unique<MemoryStorage>()));
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeAddLearnerNode);
  cc.set_node_id(4);
  nw[1].ApplyConfChange(cc);
  nw.Send(nw.node(1).TakeMsgs());
  nw.Beat(1);
  EXPECT_EQ(nw[4].log().LastIndex(), nw[1].log().LastIndex());
  EXPECT_EQ(nw[4].lead(), 1u);
}

// ---------- Leader transfer ----------

TEST(RaftTransfer, ToUpToDateFollower) {
  Network nw(3);
  nw.Campaign(1);
  nw.Local(1, Msg(2, 1, raftpb::MsgTransferLeader));
  EXPECT_EQ(nw[2].state(), StateType::kLeader);
  EXPECT_EQ(nw[1].state(), StateType::kFollower);
  EXPECT_EQ(nw[1].lead(), 2u);
  EXPECT_EQ(nw[2].term(), 2u);
}

TEST(RaftTransfer, WithCheckQuorumBypassesLease) {
  Network nw(3, +[](Config& c) { Both(c); });
  nw.Campaign(1);
  nw.Local(1, Msg(3, 1, raftpb::MsgTransferLeader));
  EXPECT_EQ(nw[3].state(), StateType::kLeader);
}

TEST(RaftTransfer, ToLaggingFollowerCatchesItUpFirst) {
  Network nw(3);
  nw.Campaign(1);
  nw.Isolate(3);
  nw.Propose(1, "x");
  nw.Recover();
  // Hold back appends first so the transfer has to wait.
  nw.Ignore(raftpb::MsgApp);
  nw.Local(1, Msg(3, 1, raftpb::MsgTransferLeader));
  EXPECT_EQ(nw[1].lead_transferee(), 3u);
  EXPECT_EQ(nw[1].state(), StateType::kLeader);
  // Proposals are dropped while transferring.
  EXPECT_TRUE(IsProposalDropped(nw[1].Step(PropMsg(1, "y"))));
  nw.Recover();
  nw.Beat(1);  // heartbeat resp -> append -> ack -> MsgTimeoutNow
  EXPECT_EQ(nw[3].state(), StateType::kLeader);
}

TEST(RaftTransfer, AbortsAfterElectionTimeout) {
  Network nw(3);
  nw.Campaign(1);
  nw.Isolate(3);
  nw.Local(1, Msg(3, 1, raftpb::MsgTransferLeader));
  EXPECT_EQ(nw[1].lead_transferee(), 3u);
  for (int i = 0; i < 10; ++i) {
    nw[1].Tick();
    nw.Send(nw.node(1).TakeMsgs());
  }
  EXPECT_EQ(nw[1].lead_transferee(), kNone);
  EXPECT_EQ(nw[1].state(), StateType::kLeader);
}

TEST(RaftTransfer, ToLearnerIgnored) {
  Network nw(2, nullptr, 1);
  nw.Campaign(1);
  nw.Local(1, Msg(3, 1, raftpb::MsgTransferLeader));
  EXPECT_EQ(nw[1].lead_transferee(), kNone);
  EXPECT_EQ(nw[1].state(), StateType::kLeader);
}

TEST(RaftTransfer, FromFollowerIsForwarded) {
  Network nw(3);
  nw.Campaign(1);
  nw.Local(2, Msg(2, 2, raftpb::MsgTransferLeader));
  EXPECT_EQ(nw[2].state(), StateType::kLeader);
}

// ---------- ReadIndex ----------

TEST(RaftReadIndex, LeaderConfirmsWithHeartbeatQuorum) {
  Network nw(3);
  nw.Campaign(1);
  nw.Propose(1, "x");
  nw.Isolate(2);
  nw.Isolate(3);
  raftpb::Message ri = Msg(1, 1, raftpb::MsgReadIndex);
  ri.set_from(0);
  ri.add_entries()->set_data("ctx1");
  nw.Local(1, ri);
  EXPECT_TRUE(nw[1].read_states().empty());  // no quorum yet
  nw.Recover();
  nw.Beat(1);
  ASSERT_EQ(nw[1].read_states().size(), 1u);
  EXPECT_EQ(nw[1].read_states()[0].request_ctx, "ctx1");
  EXPECT_EQ(nw[1].read_states()[0].index, nw[1].log().committed());
}

TEST(RaftReadIndex, BatchedRequestsAnsweredByOneRound) {
  Network nw(3);
  nw.Campaign(1);
  nw.Ignore(raftpb::MsgHeartbeatResp);
  for (std::string ctx : {"a", "b", "c"}) {
    raftpb::Message ri = Msg(0, 1, raftpb::MsgReadIndex);
    ri.add_entries()->set_data(ctx);
    nw.Local(1, ri);
  }
  nw.Recover();
  EXPECT_EQ(nw[1].read_only().Pending(), 3u);
  nw.Beat(1);  // one heartbeat round carries the last ctx and answers all
  ASSERT_EQ(nw[1].read_states().size(), 3u);
  EXPECT_EQ(nw[1].read_states()[0].request_ctx, "a");
  EXPECT_EQ(nw[1].read_states()[2].request_ctx, "c");
}

TEST(RaftReadIndex, FollowerForwardsToLeader) {
  Network nw(3);
  nw.Campaign(1);
  nw.Propose(1, "x");
  raftpb::Message ri = Msg(0, 2, raftpb::MsgReadIndex);
  ri.add_entries()->set_data("f");
  nw.Local(2, ri);
  ASSERT_EQ(nw[2].read_states().size(), 1u);
  EXPECT_EQ(nw[2].read_states()[0].index, nw[1].log().committed());
}

TEST(RaftReadIndex, AfterLeaderChangeWaitsForCurrentTermCommit) {
  Network nw(3);
  nw.Campaign(1);
  nw.Propose(1, "x");
  // Node 2 becomes leader but its empty entry is not yet committed.
  nw.Ignore(raftpb::MsgApp);
  nw.Campaign(2);
  ASSERT_EQ(nw[2].state(), StateType::kLeader);
  uint64_t empty_index = nw[2].log().LastIndex();
  ASSERT_LT(nw[2].log().committed(), empty_index);
  raftpb::Message ri = Msg(0, 2, raftpb::MsgReadIndex);
  ri.add_entries()->set_data("r");
  nw.Local(2, ri);
  EXPECT_TRUE(nw[2].read_states().empty());
  nw.Recover();
  nw.Beat(2);  // entries replicate, commit in term 2, then confirm
  ASSERT_EQ(nw[2].read_states().size(), 1u);
  EXPECT_GE(nw[2].read_states()[0].index, empty_index);
}

TEST(RaftReadIndex, DeposedLeaderDropsPendingReads) {
  Network nw(3);
  nw.Campaign(1);
  nw.Isolate(1);
  raftpb::Message ri = Msg(0, 1, raftpb::MsgReadIndex);
  ri.add_entries()->set_data("z");
  nw.Local(1, ri);
  nw[1].Step(Msg(2, 1, raftpb::MsgApp, 5)).IgnoreError();
  EXPECT_EQ(nw[1].read_only().Pending(), 0u);
  EXPECT_TRUE(nw[1].read_states().empty());
}

// ---------- Snapshots ----------

TEST(RaftSnapshot, LeaderSendsSnapshotToLaggingFollower) {
  Network nw(3);
  nw.Campaign(1);
  nw.Isolate(3);
  for (int i = 0; i < 5; ++i) nw.Propose(1, "x");
  // Persist and compact the leader's log.
  MemoryStorage& s = *nw.node(1).storage;
  ASSERT_TRUE(s.Append(nw[1].log().UnstableEntries()).ok());
  nw[1].log().StableTo(nw[1].log().LastIndex(), nw[1].log().LastTerm());
  uint64_t ci = nw[1].log().committed();
  nw[1].AdvanceApplied(ci);
  ASSERT_TRUE(s.CreateSnapshot(ci, MakeConfState({1, 2, 3}), "state").ok());
  ASSERT_TRUE(s.Compact(ci).ok());
  nw.Recover();
  nw.Beat(1);
  EXPECT_EQ(nw[3].log().committed(), ci);
  ASSERT_TRUE(nw[3].log().UnstableSnapshot().has_value());
  EXPECT_EQ(nw[3].log().UnstableSnapshot()->data(), "state");
  EXPECT_EQ(nw[1].tracker().Get(3)->state, ProgressState::kReplicate);
}

TEST(RaftSnapshot, SnapshotFailureMovesToProbeAndPauses) {
  Network nw(3);
  nw.Campaign(1);
  Progress* pr = nw[1].tracker().Get(2);
  pr->BecomeSnapshot(11);
  raftpb::Message st = Msg(2, 1, raftpb::MsgSnapStatus);
  st.set_reject(true);
  nw[1].Step(st).IgnoreError();
  EXPECT_EQ(pr->state, ProgressState::kProbe);
  EXPECT_TRUE(pr->probe_sent);
  EXPECT_EQ(pr->pending_snapshot, 0u);
}

TEST(RaftSnapshot, RestoresAndIgnoresStaleSnapshot) {
  auto r = NewTestRaft(2, NewStorage({1, 2}));
  raftpb::Message m = Msg(1, 2, raftpb::MsgSnap, 1);
  m.mutable_snapshot()->mutable_metadata()->set_index(5);
  m.mutable_snapshot()->mutable_metadata()->set_term(1);
  *m.mutable_snapshot()->mutable_metadata()->mutable_conf_state() = MakeConfState({1, 2});
  r->Step(m).IgnoreError();
  EXPECT_EQ(r->log().committed(), 5u);
  EXPECT_EQ(r->log().LastIndex(), 5u);
  auto msgs = r.TakeMsgs();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].index(), 5u);
  // An older snapshot is ignored and answered with our commit index.
  m.mutable_snapshot()->mutable_metadata()->set_index(3);
  r->Step(m).IgnoreError();
  msgs = r.TakeMsgs();
  EXPECT_EQ(msgs[0].index(), 5u);
  EXPECT_EQ(r->log().LastIndex(), 5u);
}

TEST(RaftSnapshot, MemberAddedAfterSnapshotStillRestoresIt) {
  // A learner added after the leader's snapshot was taken (and the log
  // compacted) must still be able to catch up from that snapshot.
  auto r = NewTestRaft(4, std::make_unique<MemoryStorage>());
  raftpb::Message m = Msg(1, 4, raftpb::MsgSnap, 3);
  m.mutable_snapshot()->mutable_metadata()->set_index(88);
  m.mutable_snapshot()->mutable_metadata()->set_term(3);
  *m.mutable_snapshot()->mutable_metadata()->mutable_conf_state() = MakeConfState({1, 2, 3});
  r->Step(m).IgnoreError();
  EXPECT_EQ(r->log().committed(), 88u);
  EXPECT_FALSE(r->promotable());
}

// ---------- Progress and quorum math ----------

TEST(RaftProgress, InflightsRing) {
  Inflights in(4);
  for (uint64_t i : {1, 2, 3, 4}) in.Add(i);
  EXPECT_TRUE(in.Full());
  in.FreeLE(2);
  EXPECT_EQ(in.Count(), 2u);
  in.Add(5);
  in.Add(6);
  EXPECT_TRUE(in.Full());
  in.FreeFirstOne();
  EXPECT_EQ(in.Count(), 3u);
  in.FreeLE(10);
  EXPECT_EQ(in.Count(), 0u);
}

TEST(RaftProgress, MaybeDecrTo) {
  Progress p(8);
  p.match = 5;
  p.next = 10;
  p.state = ProgressState::kProbe;
  EXPECT_FALSE(p.MaybeDecrTo(5, 5));  // stale: not the last probe
  EXPECT_TRUE(p.MaybeDecrTo(9, 7));
  EXPECT_EQ(p.next, 8u);
  EXPECT_TRUE(p.MaybeDecrTo(7, 0));
  EXPECT_EQ(p.next, 6u);  // never below match + 1
  p.BecomeReplicate();
  EXPECT_FALSE(p.MaybeDecrTo(4, 0));
  EXPECT_TRUE(p.MaybeDecrTo(8, 0));
  EXPECT_EQ(p.next, 6u);
}

TEST(RaftQuorum, CommittedIsMajorityMatch) {
  ProgressTracker t(8);
  t.Reset(MakeConfState({1, 2, 3, 4, 5}, {6}), 1);
  uint64_t m[] = {0, 10, 9, 3, 2, 1, 100};
  for (uint64_t id = 1; id <= 6; ++id) t.Get(id)->match = m[id];
  EXPECT_EQ(t.Committed(), 3u);  // learner 6 (100) ignored
  t.Reset(MakeConfState({1, 2, 3, 4}), 1);
  for (uint64_t id = 1; id <= 4; ++id) t.Get(id)->match = m[id];
  EXPECT_EQ(t.Committed(), 3u);  // 3 of 4 have >= 3
}

TEST(RaftQuorum, TallyVotes) {
  ProgressTracker t(8);
  t.Reset(MakeConfState({1, 2, 3, 4, 5}), 1);
  int g, r;
  t.RecordVote(1, true);
  t.RecordVote(2, true);
  EXPECT_EQ(t.TallyVotes(&g, &r), VoteResult::kPending);
  t.RecordVote(3, false);
  t.RecordVote(4, false);
  EXPECT_EQ(t.TallyVotes(&g, &r), VoteResult::kPending);
  t.RecordVote(5, false);
  EXPECT_EQ(t.TallyVotes(&g, &r), VoteResult::kLost);
}

// ---------- Storage ----------

TEST(RaftStorage, MemoryStorageAppendCompactSnapshot) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({Ent(1, 1), Ent(2, 1), Ent(3, 2)}).ok());
  EXPECT_EQ(*s.LastIndex(), 3u);
  ASSERT_TRUE(s.Append({Ent(3, 3), Ent(4, 3)}).ok());
  EXPECT_EQ(*s.Term(3), 3u);
  ASSERT_TRUE(s.CreateSnapshot(2, MakeConfState({1}), "d").ok());
  ASSERT_TRUE(s.Compact(2).ok());
  EXPECT_EQ(*s.FirstIndex(), 3u);
  EXPECT_TRUE(IsErrCompacted(s.Term(1).status()));
  EXPECT_TRUE(IsErrCompacted(s.Entries(2, 4, kNoLimit).status()));
  EXPECT_EQ(s.Entries(3, 5, kNoLimit)->size(), 2u);
  EXPECT_EQ(s.Entries(3, 5, 1)->size(), 1u);  // size limit keeps one
  EXPECT_TRUE(IsErrUnavailable(s.Entries(3, 7, kNoLimit).status()));
  raftpb::Snapshot snap;
  snap.mutable_metadata()->set_index(10);
  snap.mutable_metadata()->set_term(4);
  ASSERT_TRUE(s.ApplySnapshot(snap).ok());
  EXPECT_EQ(*s.FirstIndex(), 11u);
  EXPECT_EQ(*s.LastIndex(), 10u);
  EXPECT_FALSE(s.ApplySnapshot(snap).ok());
}

// ---------- RawNode ----------

TEST(RawNode, ReadyLifecycleAndBootstrap) {
  MemoryStorage storage;
  Config c = testing::TestConfig(1, 10, 1, &storage);
  auto node = RawNode::Create(c);
  ASSERT_TRUE(node.ok());
  RawNode& n = **node;
  ASSERT_TRUE(n.Bootstrap({1}).ok());
  ASSERT_TRUE(n.HasReady());
  Ready rd = n.GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->term(), 1u);
  EXPECT_TRUE(rd.must_sync);
  ASSERT_TRUE(storage.Append(rd.entries).ok());
  storage.SetHardState(*rd.hard_state);
  raftpb::ConfChange cc;
  ASSERT_TRUE(cc.ParseFromString(rd.committed_entries[0].data()));
  n.ApplyConfChange(cc);
  n.Advance();
  EXPECT_FALSE(n.HasReady());
  ASSERT_TRUE(n.Campaign().ok());
  rd = n.GetReady();
  ASSERT_TRUE(rd.soft_state.has_value());
  EXPECT_EQ(rd.soft_state->state, StateType::kLeader);
  ASSERT_TRUE(storage.Append(rd.entries).ok());
  n.Advance();
  ASSERT_TRUE(n.Propose("hello").ok());
  rd = n.GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.committed_entries[0].data(), "hello");
  ASSERT_TRUE(storage.Append(rd.entries).ok());
  n.Advance();
  EXPECT_EQ(n.GetStatus().applied, 3u);
  n.ReadIndex("q");
  rd = n.GetReady();
  ASSERT_EQ(rd.read_states.size(), 1u);
  EXPECT_EQ(rd.read_states[0].index, 3u);
  n.Advance();
  // Restart from storage keeps term and commit.
  Config c2 = c;
  c2.applied = 3;
  storage.SetConfState(MakeConfState({1}));
  storage.SetHardState(n.raft().GetHardState());
  RawNode restarted(c2);
  EXPECT_EQ(restarted.raft().term(), 2u);
  EXPECT_EQ(restarted.raft().log().committed(), 3u);
  EXPECT_FALSE(restarted.HasReady());
}

TEST(RawNode, ProposeBatchSendsOneAppendPerFollower) {
  auto s = NewStorage({1, 2, 3});
  RawNode n(testing::TestConfig(1, 10, 1, s.get()));
  ASSERT_TRUE(n.Campaign().ok());
  for (uint64_t from : {2, 3}) {
    ASSERT_TRUE(n.Step(Msg(from, 1, raftpb::MsgVoteResp, 1)).ok());
  }
  ASSERT_EQ(n.raft().state(), StateType::kLeader);
  for (uint64_t from : {2, 3}) {
    raftpb::Message ack = Msg(from, 1, raftpb::MsgAppResp, 1);
    ack.set_index(1);
    ASSERT_TRUE(n.Step(ack).ok());
  }
  ASSERT_EQ(n.raft().tracker().Get(2)->state, ProgressState::kReplicate);
  ASSERT_TRUE(s->Append(n.GetReady().entries).ok());  // persist, then Advance
  n.Advance();
  ASSERT_TRUE(n.ProposeBatch({"a", "b", "c"}).ok());
  Ready rd = n.GetReady();
  EXPECT_EQ(rd.entries.size(), 3u);
  int apps = 0;
  for (const auto& m : rd.messages) {
    if (m.type() == raftpb::MsgApp) {
      ++apps;
    }
  }
  EXPECT_EQ(apps, 2);  // one per follower, carrying all three entries
  n.Advance();
}

TEST(RawNode, RejectsLocalMessagesAndUnknownResponders) {
  auto s = NewStorage({1, 2});
  RawNode n(testing::TestConfig(1, 10, 1, s.get()));
  EXPECT_FALSE(n.Step(Msg(1, 1, raftpb::MsgHup)).ok());
  EXPECT_FALSE(n.Step(Msg(9, 1, raftpb::MsgAppResp, 1)).ok());
}

TEST(RawNode, ConfigValidation) {
  MemoryStorage s;
  Config c;
  EXPECT_FALSE(c.Validate().ok());
  c.id = 1;
  c.storage = &s;
  EXPECT_TRUE(c.Validate().ok());
  c.election_tick = 1;
  EXPECT_FALSE(c.Validate().ok());
}

}  // namespace
}  // namespace etcdpp::raft
