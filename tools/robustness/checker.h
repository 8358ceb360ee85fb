// Checkers over a robustness history (history.h).
//
// Each checker returns a Verdict: PASS, FAIL (with the evidence) or SKIP /
// UNDECIDED. They are pure functions of the records, so a saved history can
// be re-checked and hand-written histories unit-test them.
//
//   linearizability   per-key register with read / write / compare-and-set,
//                     Wing-Gong-Lowe search with porcupine's memo of
//                     (linearized set, state); an op with an unknown outcome
//                     gets an infinite completion time, so it may take effect
//                     at any point after its invocation or never; bounded by a
//                     step budget: exhausting it is UNDECIDED, never a hang.
//                     Unknown writes are first resolved from the watch
//                     streams (values are unique): one a watcher saw took
//                     effect at that revision; when a watcher saw every
//                     revision of the run, one nobody saw never took effect.
//                     If that settles every write of a key, its writes are
//                     linearized in revision order (etcd's revisions are its
//                     commit order), so only the reads are searched.
//   acked-writes      every acknowledged write / successful CAS is found, with
//                     its value, when its key is read back at its revision, and
//                     no two acknowledged writes share a revision.
//   watch             per watcher: ordered, unique, atomic (one revision = one
//                     response), gap-free from revision 2 to the final
//                     revision, replay equals the final state, contains every
//                     acknowledged write at its revision; all watchers agree.
//   lease             an attached key is never gone while its lease could not
//                     yet have expired; keys of revoked / expired leases are
//                     gone at the end, and the lease too.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "history.h"

namespace etcdpp::robustness {

struct Verdict {
  enum Kind { kPass, kFail, kSkip, kUndecided } kind = kPass;
  std::string name;
  std::string detail;  // summary on PASS, evidence on FAIL, reason on SKIP
};

const char* VerdictKindName(Verdict::Kind k);

// One register operation, as the linearizability search sees it.
struct RegOp {
  enum Fn { kRead, kWrite, kCas } fn = kRead;
  enum Outcome { kOk, kFail, kUnknown } outcome = kOk;
  int64_t id = 0;
  int64_t client = 0;
  std::string key;
  std::optional<std::string> value;     // read result / written value / CAS new value
  std::optional<std::string> expected;  // CAS: nullopt = "key absent"
  bool succeeded = false;               // CAS
  bool observed_known = false;          // CAS that did not succeed: the value it saw
  std::optional<std::string> observed;
  int64_t invoke_ns = 0;
  int64_t complete_ns = 0;
  int64_t rev = 0;
  // Outcome unknown, but a watcher saw its value put at `rev`: it took
  // effect (a CAS: it succeeded).
  bool applied = false;
};

std::vector<RegOp> ExtractOps(const std::vector<Record>& records);

struct LinearizabilityOptions {
  int64_t max_steps_per_key = 50'000'000;
  size_t max_cache_bytes = size_t{768} << 20;
};

// What the watch streams say of the writes of one key: the revision each
// value was put at, and whether some watcher saw every revision of the run
// (then a value nobody saw was never written).
struct WatchedWrites {
  std::map<std::string, int64_t> rev_of_value;
  bool complete = false;
};

// Resolves the unknown writes / CASes of one key against `watched`: marks the
// ones seen as applied (at the revision seen), drops the ones that cannot
// have taken effect. Leaves the ops as they are when two writes of the key
// share a value (then a value does not name its write).
struct Resolution {
  size_t applied = 0, dropped = 0;
};
Resolution ResolveUnknownWrites(std::vector<RegOp>* ops, const WatchedWrites& watched);

// Checks one key's ops (all must have the same key).
Verdict CheckKeyLinearizable(const std::vector<RegOp>& ops, const LinearizabilityOptions& opt);
Verdict CheckLinearizability(const std::vector<Record>& records, const LinearizabilityOptions& opt);
Verdict CheckAckedWrites(const std::vector<Record>& records);
Verdict CheckWatch(const std::vector<Record>& records);
Verdict CheckLeases(const std::vector<Record>& records);

// Every checker, in a fixed order.
std::vector<Verdict> CheckAll(const std::vector<Record>& records, const LinearizabilityOptions& opt);

}  // namespace etcdpp::robustness
