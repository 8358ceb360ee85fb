// raft_sim: soak the raft core in the deterministic cluster simulator.
//
//   raft_sim --seeds 10000            # seeds 1..10000 (--start=S to offset)
//   raft_sim --seed=1234 [--verbose]  # replay one seed exactly
//   raft_sim --seeds 500 --bug=learner-votes   # show the checker firing
//     (bugs: learner-votes, old-term-commit, double-vote, read-without-quorum;
//      --no-commit-rule-check hides the direct commit-rule check)
//
// Other flags: --voters=3|5|7 (default: chosen by the seed), --ticks=T
// (chaos ticks, default 200), --liveness=T (default 300).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "sim.h"

namespace {

bool Flag(int argc, char** argv, int* i, const char* name, std::string* value) {
  std::string arg = argv[*i];
  std::string prefix = std::string("--") + name;
  if (arg == prefix && *i + 1 < argc) {
    *value = argv[++*i];
    return true;
  }
  if (arg.rfind(prefix + "=", 0) == 0) {
    *value = arg.substr(prefix.size() + 1);
    return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  using etcdpp::raft::sim::RunSim;
  using etcdpp::raft::sim::SimOptions;
  using etcdpp::raft::sim::SimResult;
  SimOptions base;
  uint64_t start = 1, count = 100;
  bool single = false;
  std::string bug;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (Flag(argc, argv, &i, "seeds", &v)) {
      count = std::strtoull(v.c_str(), nullptr, 10);
    } else if (Flag(argc, argv, &i, "start", &v)) {
      start = std::strtoull(v.c_str(), nullptr, 10);
    } else if (Flag(argc, argv, &i, "seed", &v)) {
      start = std::strtoull(v.c_str(), nullptr, 10);
      count = 1;
      single = true;
    } else if (Flag(argc, argv, &i, "voters", &v)) {
      base.voters = std::atoi(v.c_str());
    } else if (Flag(argc, argv, &i, "ticks", &v)) {
      base.chaos_ticks = std::atoi(v.c_str());
    } else if (Flag(argc, argv, &i, "liveness", &v)) {
      base.liveness_ticks = std::atoi(v.c_str());
    } else if (Flag(argc, argv, &i, "bug", &v)) {
      bug = v;
    } else if (std::strcmp(argv[i], "--no-commit-rule-check") == 0) {
      base.check_commit_rule = false;
    } else if (std::strcmp(argv[i], "--verbose") == 0) {
      base.verbose = true;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (bug == "learner-votes") {
    base.bug_count_learner_votes = true;
    base.learner_heavy = true;
  } else if (bug == "old-term-commit") {
    base.bug_commit_old_term_by_count = true;
  } else if (bug == "double-vote") {
    base.bug_vote_more_than_once = true;
  } else if (bug == "read-without-quorum") {
    base.bug_read_index_without_quorum = true;
  } else if (!bug.empty()) {
    std::fprintf(stderr, "unknown --bug=%s (learner-votes | old-term-commit | double-vote | "
                 "read-without-quorum)\n", bug.c_str());
    return 2;
  }
  std::string extra;
  if (base.voters) extra += " --voters=" + std::to_string(base.voters);
  if (base.chaos_ticks != 200) extra += " --ticks=" + std::to_string(base.chaos_ticks);
  if (base.liveness_ticks != 300) extra += " --liveness=" + std::to_string(base.liveness_ticks);
  if (!bug.empty()) extra += " --bug=" + bug;
  if (!base.check_commit_rule) extra += " --no-commit-rule-check";

  uint64_t failures = 0, committed = 0, leaders = 0, conf = 0, snaps = 0, crashes = 0, reads = 0;
  int max_recovery = 0;
  for (uint64_t s = start; s < start + count; ++s) {
    SimOptions o = base;
    o.seed = s;
    SimResult r = RunSim(o);
    committed += r.committed;
    leaders += r.leaders;
    conf += r.conf_changes;
    snaps += r.snapshots_sent;
    crashes += r.crashes;
    reads += r.reads;
    if (r.recovery_ticks > max_recovery) max_recovery = r.recovery_ticks;
    if (single) {
      std::printf("seed=%llu %s\n  config: %s\n  committed=%llu leaders=%llu conf_changes=%llu "
                  "snapshots_sent=%llu crashes=%llu messages=%llu reads=%llu "
                  "recovery_ticks=%d\n",
                  static_cast<unsigned long long>(s), r.ok ? "OK" : "FAILED", r.config.c_str(),
                  (unsigned long long)r.committed, (unsigned long long)r.leaders,
                  (unsigned long long)r.conf_changes, (unsigned long long)r.snapshots_sent,
                  (unsigned long long)r.crashes, (unsigned long long)r.messages,
                  (unsigned long long)r.reads, r.recovery_ticks);
    }
    if (!r.ok) {
      ++failures;
      std::printf("FAILED seed=%llu: %s\n  config: %s\n  replay: raft_sim --seed=%llu%s\n",
                  static_cast<unsigned long long>(s), r.failure.c_str(), r.config.c_str(),
                  static_cast<unsigned long long>(s), extra.c_str());
      std::fflush(stdout);
    }
  }
  std::printf("%llu seeds [%llu, %llu): %llu failed; committed=%llu leaders=%llu "
              "conf_changes=%llu snapshots_sent=%llu crashes=%llu reads=%llu "
              "max_recovery_ticks=%d\n",
              (unsigned long long)count, (unsigned long long)start,
              (unsigned long long)(start + count), (unsigned long long)failures,
              (unsigned long long)committed, (unsigned long long)leaders,
              (unsigned long long)conf, (unsigned long long)snaps,
              (unsigned long long)crashes, (unsigned long long)reads, max_recovery);
  return failures == 0 ? 0 : 1;
}
