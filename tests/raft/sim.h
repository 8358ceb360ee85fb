// A deterministic whole-cluster simulator for the raft core.
//
// One seed decides everything: cluster size (3/5/7 voters), network (delay,
// loss, duplication, reordering through random delays, symmetric and
// one-way partitions), crash/restart (a node keeps only what it persisted),
// per-node tick rates, client proposals, ReadIndex requests, leader
// transfers and membership changes (add learner, promote, remove — the
// leader included). Single-threaded; no clock, no sleeps.
//
// After every Ready a node hands out, the checker verifies:
//   - election safety: at most one leader per term;
//   - log matching: entries with equal (index, term) have equal prefixes
//     (prefix hashes of every persisted log);
//   - leader completeness: a new leader's log holds every committed entry;
//   - no committed entry is ever lost or changed (every node's commit);
//   - the commit rule: a leader advances its commit index only to an entry
//     of its own term (Raft 5.4.2);
//   - state machine safety: every node's applied sequence is a prefix of one
//     common sequence (hash chain at each index, snapshots included);
//   - learners never vote: a leader's granted votes from its voters form a
//     quorum (votes of non-voters do not count);
//   - ReadIndex linearizability: a read index is at least the highest index
//     applied anywhere when the read was issued.
// After the faults heal it checks liveness: within liveness_ticks a leader
// emerges that all its voters follow, and every pending proposal commits.
//
// The client has bounded concurrency (64 outstanding proposals) and retries
// with back-off; removed members are shut down (as etcd's peers make them);
// conf changes are validated at apply time like a server's member list does
// (invalid ones applied as no-ops); learners are promoted only once caught up.
#pragma once

#include <cstdint>
#include <string>

namespace etcdpp::raft::sim {

struct SimOptions {
  uint64_t seed = 1;
  // 0: chosen from the seed among 3, 5, 7.
  int voters = 0;
  // Ticks (of the median node) with faults, then ticks allowed to recover.
  int chaos_ticks = 200;
  int liveness_ticks = 300;
  // Planted bugs (Config::TestingKnobs).
  bool bug_count_learner_votes = false;
  bool bug_commit_old_term_by_count = false;
  bool bug_vote_more_than_once = false;
  bool bug_read_index_without_quorum = false;
  // Bias for the planted-bug tests: more learners / more faults.
  bool learner_heavy = false;
  // Check the commit rule directly (leaders commit only current-term
  // entries). Off: only the consequences (lost committed entries) are seen.
  bool check_commit_rule = true;
  bool verbose = false;
};

struct SimResult {
  bool ok = true;
  std::string failure;  // first invariant violated, with context
  std::string config;   // the options the seed chose
  // Statistics.
  uint64_t committed = 0;
  uint64_t leaders = 0;
  uint64_t conf_changes = 0;
  uint64_t snapshots_sent = 0;
  uint64_t crashes = 0;
  uint64_t messages = 0;
  uint64_t reads = 0;
  int recovery_ticks = 0;
};

SimResult RunSim(const SimOptions& options);

}  // namespace etcdpp::raft::sim
