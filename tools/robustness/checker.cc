#include "checker.h"

#include <algorithm>
#include <climits>
#include <map>
#include <set>
#include <unordered_set>

namespace etcdpp::robustness {
namespace {

std::string Show(const std::optional<std::string>& v) { return v ? "\"" + *v + "\"" : "<absent>"; }

std::string DescribeOp(const RegOp& op) {
  std::string s = "op " + std::to_string(op.id) + " (client " + std::to_string(op.client) + ", key " +
                  op.key + ", ";
  switch (op.fn) {
    case RegOp::kRead: s += "read -> " + Show(op.value); break;
    case RegOp::kWrite: s += "write " + Show(op.value); break;
    case RegOp::kCas:
      s += "cas " + Show(op.expected) + " -> " + Show(op.value);
      if (op.outcome == RegOp::kOk) {
        s += op.succeeded ? " succeeded" : " failed, saw " + Show(op.observed);
      }
      break;
  }
  s += op.outcome == RegOp::kOk ? "" : op.outcome == RegOp::kUnknown ? ", outcome unknown" : ", failed";
  char buf[96];
  snprintf(buf, sizeof(buf), ", invoked %.3fs", op.invoke_ns / 1e9);
  s += buf;
  if (op.outcome != RegOp::kUnknown) {
    snprintf(buf, sizeof(buf), ", completed %.3fs", op.complete_ns / 1e9);
    s += buf;
  }
  return s + ")";
}

// The register as the search sees it: every value interned to an int,
// 0 = key absent.
struct ModelOp {
  RegOp::Fn fn;
  bool unknown;
  int value;
  int expected;
  bool succeeded;
  bool observed_known;
  int observed;
  int index = 0;  // revision order: the write's place in the key's chain of writes (1-based)
};

bool Step(const ModelOp& m, int s, int* next) {
  switch (m.fn) {
    case RegOp::kRead:
      if (s != m.value) return false;
      *next = s;
      return true;
    case RegOp::kWrite:
      *next = m.value;
      return true;
    case RegOp::kCas:
      if (m.unknown) {
        *next = s == m.expected ? m.value : s;
        return true;
      }
      if (m.succeeded) {
        if (s != m.expected) return false;
        *next = m.value;
        return true;
      }
      if (s == m.expected) return false;
      if (m.observed_known && s != m.observed) return false;
      *next = s;
      return true;
  }
  return false;
}

// The same register when every write's place in revision order is known:
// the state is the number of writes applied, value_of[s] the value they left.
bool StepChain(const ModelOp& m, int s, const std::vector<int>& value_of, int* next) {
  switch (m.fn) {
    case RegOp::kRead:
      if (value_of[s] != m.value) return false;
      *next = s;
      return true;
    case RegOp::kWrite:
      if (s + 1 != m.index) return false;
      *next = m.index;
      return true;
    case RegOp::kCas:
      if (m.index != 0) {
        if (s + 1 != m.index || value_of[s] != m.expected) return false;
        *next = m.index;
        return true;
      }
      if (value_of[s] == m.expected) return false;
      if (m.observed_known && value_of[s] != m.observed) return false;
      *next = s;
      return true;
  }
  return false;
}

struct Entry {
  int op = -1;
  bool call = false;
  int64_t time = 0;
  Entry* match = nullptr;
  Entry* prev = nullptr;
  Entry* next = nullptr;
};

void Lift(Entry* e) {
  e->prev->next = e->next;
  if (e->next) e->next->prev = e->prev;
  Entry* m = e->match;
  m->prev->next = m->next;
  if (m->next) m->next->prev = m->prev;
}

void Unlift(Entry* e) {
  Entry* m = e->match;
  m->prev->next = m;
  if (m->next) m->next->prev = m;
  e->prev->next = e;
  if (e->next) e->next->prev = e;
}

// The memo key: (set of linearized ops, register state). The set is a
// 128-bit Zobrist hash (XOR of two random words per op) updated in O(1) per
// step, so a step costs O(1) however long the history; a collision (odds
// about steps^2 / 2^128) could only prune a branch, never invent a pass.
struct CacheKey {
  uint64_t h1, h2;
  int state;
  bool operator==(const CacheKey& o) const { return h1 == o.h1 && h2 == o.h2 && state == o.state; }
};
struct CacheKeyHash {
  size_t operator()(const CacheKey& k) const {
    return static_cast<size_t>(k.h1 ^ (static_cast<uint64_t>(k.state) * 0x9e3779b97f4a7c15ull));
  }
};

uint64_t SplitMix(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

const char* VerdictKindName(Verdict::Kind k) {
  switch (k) {
    case Verdict::kPass: return "PASS";
    case Verdict::kFail: return "FAIL";
    case Verdict::kSkip: return "SKIP";
    case Verdict::kUndecided: return "UNDECIDED";
  }
  return "?";
}

std::vector<RegOp> ExtractOps(const std::vector<Record>& records) {
  std::vector<RegOp> ops;
  for (const Record& r : records) {
    if (GetStr(r, "t") != "op") continue;
    RegOp op;
    std::string f = GetStr(r, "f");
    op.fn = f == "read" ? RegOp::kRead : f == "write" ? RegOp::kWrite : RegOp::kCas;
    std::string o = GetStr(r, "outcome");
    op.outcome = o == "ok" ? RegOp::kOk : o == "fail" ? RegOp::kFail : RegOp::kUnknown;
    op.id = GetInt(r, "id");
    op.client = GetInt(r, "client");
    op.key = GetStr(r, "key");
    op.value = GetOptStr(r, "value");
    op.expected = GetOptStr(r, "expected");
    op.succeeded = GetBool(r, "succeeded");
    op.observed_known = r.count("observed") > 0;
    op.observed = GetOptStr(r, "observed");
    op.invoke_ns = GetInt(r, "invoke");
    op.complete_ns = GetInt(r, "complete");
    op.rev = GetInt(r, "rev");
    ops.push_back(std::move(op));
  }
  return ops;
}

Resolution ResolveUnknownWrites(std::vector<RegOp>* ops, const WatchedWrites& watched) {
  Resolution res;
  std::set<std::string> values;
  for (const RegOp& op : *ops) {
    if (op.fn == RegOp::kRead || !op.value) continue;
    if (!values.insert(*op.value).second) return res;  // a value that does not name one write
  }
  std::vector<RegOp> kept;
  kept.reserve(ops->size());
  for (RegOp& op : *ops) {
    if (op.outcome == RegOp::kUnknown && op.fn != RegOp::kRead && op.value) {
      auto it = watched.rev_of_value.find(*op.value);
      if (it != watched.rev_of_value.end()) {
        op.applied = true;
        op.succeeded = true;
        op.rev = it->second;
        ++res.applied;
      } else if (watched.complete) {
        ++res.dropped;
        continue;
      }
    }
    kept.push_back(std::move(op));
  }
  *ops = std::move(kept);
  return res;
}

Verdict CheckKeyLinearizable(const std::vector<RegOp>& all, const LinearizabilityOptions& opt) {
  Verdict v;
  v.name = "linearizability";
  // A failed op had no effect; a read that did not complete observed nothing.
  std::vector<const RegOp*> ops;
  for (const RegOp& op : all) {
    if (op.outcome == RegOp::kFail) continue;
    if (op.fn == RegOp::kRead && op.outcome != RegOp::kOk) continue;
    ops.push_back(&op);
  }
  const int n = static_cast<int>(ops.size());
  std::map<std::string, int> interned;
  auto intern = [&](const std::optional<std::string>& s) -> int {
    if (!s) return 0;
    auto [it, inserted] = interned.emplace(*s, static_cast<int>(interned.size()) + 1);
    return it->second;
  };
  std::vector<ModelOp> model(n);
  for (int i = 0; i < n; ++i) {
    const RegOp& op = *ops[i];
    const bool unknown = op.outcome == RegOp::kUnknown && !op.applied;
    model[i] = ModelOp{op.fn,          unknown,           intern(op.value), intern(op.expected),
                       op.succeeded, op.observed_known, intern(op.observed)};
  }
  // Revision order: possible when every write that may have taken effect is
  // known to have, at a revision, and no two share one.
  bool chain = true;
  std::vector<std::pair<int64_t, int>> writes;  // (revision, op)
  for (int i = 0; i < n && chain; ++i) {
    const RegOp& op = *ops[i];
    const bool writes_value = op.fn == RegOp::kWrite || (op.fn == RegOp::kCas && (op.succeeded || op.applied));
    if (op.outcome == RegOp::kUnknown && !op.applied && op.fn != RegOp::kRead) chain = false;
    if (writes_value) {
      if (op.rev <= 0) chain = false;
      writes.emplace_back(op.rev, i);
    }
  }
  std::vector<int> value_of;  // chain mode: value after the first s writes
  if (chain) {
    std::sort(writes.begin(), writes.end());
    for (size_t j = 1; j < writes.size(); ++j) {
      if (writes[j].first == writes[j - 1].first) chain = false;
    }
  }
  if (chain) {
    value_of.push_back(0);  // absent before the first write
    for (size_t j = 0; j < writes.size(); ++j) {
      model[writes[j].second].index = static_cast<int>(j + 1);
      value_of.push_back(model[writes[j].second].value);
    }
  }
  // Entries sorted by time; an unknown op returns at +infinity. At equal
  // times calls sort before returns (the ops count as concurrent: the
  // permissive choice, never a false alarm).
  std::vector<Entry> entries(2 * n);
  for (int i = 0; i < n; ++i) {
    entries[2 * i] = Entry{i, true, ops[i]->invoke_ns};
    int64_t ret = ops[i]->outcome == RegOp::kUnknown ? INT64_MAX
                                                      : std::max(ops[i]->complete_ns, ops[i]->invoke_ns);
    entries[2 * i + 1] = Entry{i, false, ret};
    entries[2 * i].match = &entries[2 * i + 1];
  }
  std::vector<Entry*> order;
  for (auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    if (a->time != b->time) return a->time < b->time;
    if (a->call != b->call) return a->call;
    return a->op < b->op;
  });
  Entry head;
  Entry* prev = &head;
  for (Entry* e : order) {
    prev->next = e;
    e->prev = prev;
    prev = e;
  }
  prev->next = nullptr;

  std::vector<uint64_t> z1(n), z2(n);
  uint64_t seed = 0x5eed;
  for (int i = 0; i < n; ++i) {
    z1[i] = SplitMix(&seed);
    z2[i] = SplitMix(&seed);
  }
  uint64_t h1 = 0, h2 = 0;
  std::unordered_set<CacheKey, CacheKeyHash> cache;
  size_t cache_bytes = 0;
  std::vector<std::pair<Entry*, int>> calls;
  int state = 0;
  Entry* e = head.next;
  int64_t steps = 0;
  size_t best_depth = 0;
  int stuck_op = -1;
  while (head.next != nullptr) {
    if (++steps > opt.max_steps_per_key || cache_bytes > opt.max_cache_bytes) {
      v.kind = Verdict::kUndecided;
      v.detail = "search budget exhausted after " + std::to_string(steps) + " steps on " +
                 std::to_string(n) + " ops (" + std::to_string(calls.size()) + " linearized so far)";
      return v;
    }
    if (e->call) {
      int next = 0;
      if (chain ? StepChain(model[e->op], state, value_of, &next) : Step(model[e->op], state, &next)) {
        CacheKey key{h1 ^ z1[e->op], h2 ^ z2[e->op], next};
        if (cache.insert(key).second) {
          cache_bytes += 48;
          h1 = key.h1;
          h2 = key.h2;
          calls.emplace_back(e, state);
          state = next;
          Lift(e);
          e = head.next;
          continue;
        }
      }
      e = e->next;
    } else {
      // A return whose call is not linearized yet: backtrack.
      if (calls.size() >= best_depth) {
        best_depth = calls.size();
        stuck_op = e->op;
      }
      if (calls.empty()) break;
      auto [ce, st] = calls.back();
      calls.pop_back();
      state = st;
      h1 ^= z1[ce->op];
      h2 ^= z2[ce->op];
      Unlift(ce);
      e = ce->next;
    }
  }
  if (head.next == nullptr) {
    v.kind = Verdict::kPass;
    v.detail = std::to_string(n) + " ops, " + std::to_string(steps) + " search steps" +
               (chain ? ", writes in revision order" : "");
    return v;
  }
  v.kind = Verdict::kFail;
  v.detail = "not linearizable" + std::string(chain ? " (writes in revision order)" : "") +
             ": at most " + std::to_string(best_depth) + " of " + std::to_string(n) +
             " ops can be linearized; no order fits " +
             (stuck_op >= 0 ? DescribeOp(*ops[stuck_op]) : std::string("?"));
  return v;
}

Verdict CheckLinearizability(const std::vector<Record>& records, const LinearizabilityOptions& opt) {
  Verdict v;
  v.name = "linearizability";
  std::map<std::string, std::vector<RegOp>> by_key;
  size_t total = 0, unknown = 0, failed = 0;
  for (RegOp& op : ExtractOps(records)) {
    ++total;
    if (op.outcome == RegOp::kUnknown) ++unknown;
    if (op.outcome == RegOp::kFail) ++failed;
    std::string k = op.key;
    by_key[k].push_back(std::move(op));
  }
  if (total == 0) {
    v.kind = Verdict::kFail;
    v.detail = "no operations in the history: it proves nothing";
    return v;
  }
  // The watch streams: the revision each value was put at, and whether some
  // watcher saw every revision from 2 to the final one.
  std::map<std::string, WatchedWrites> watched;
  int64_t final_rev = -1;
  std::map<int64_t, std::set<int64_t>> revs_seen;  // watcher -> revisions
  for (const Record& r : records) {
    const std::string t = GetStr(r, "t");
    if (t == "final_rev") final_rev = GetInt(r, "rev");
    if (t != "watch") continue;
    const int64_t rev = GetInt(r, "rev");
    revs_seen[GetInt(r, "w")].insert(rev);
    if (GetStr(r, "type") == "put") watched[GetStr(r, "key")].rev_of_value.emplace(GetStr(r, "value"), rev);
  }
  bool complete = false;
  for (const auto& [w, revs] : revs_seen) {
    if (final_rev >= 1 && static_cast<int64_t>(revs.size()) == final_rev - 1 && *revs.begin() == 2 &&
        *revs.rbegin() == final_rev) {
      complete = true;
    }
  }
  std::vector<std::string> bad, undecided;
  size_t applied = 0, dropped = 0;
  for (auto& [key, ops] : by_key) {
    if (!revs_seen.empty()) {
      WatchedWrites& ww = watched[key];
      ww.complete = complete;
      Resolution res = ResolveUnknownWrites(&ops, ww);
      applied += res.applied;
      dropped += res.dropped;
    }
    Verdict kv = CheckKeyLinearizable(ops, opt);
    if (kv.kind == Verdict::kFail) bad.push_back("key " + key + ": " + kv.detail);
    if (kv.kind == Verdict::kUndecided) undecided.push_back("key " + key + ": " + kv.detail);
  }
  std::string summary = std::to_string(by_key.size()) + " keys, " + std::to_string(total) + " ops (" +
                        std::to_string(unknown) + " unknown, " + std::to_string(failed) + " failed)";
  if (applied + dropped > 0) {
    summary += "; watch streams settled " + std::to_string(applied + dropped) + " unknown writes (" +
               std::to_string(applied) + " applied, " + std::to_string(dropped) + " never applied)";
  }
  if (!bad.empty()) {
    v.kind = Verdict::kFail;
    v.detail = summary;
    for (const auto& b : bad) v.detail += "; " + b;
  } else if (!undecided.empty()) {
    v.kind = Verdict::kUndecided;
    v.detail = summary;
    for (const auto& b : undecided) v.detail += "; " + b;
  } else {
    v.kind = Verdict::kPass;
    v.detail = summary;
  }
  return v;
}

namespace {

struct Acked {
  std::string key, value;
  int64_t rev;
  int64_t id;
};

std::vector<Acked> AckedWrites(const std::vector<RegOp>& ops) {
  std::vector<Acked> out;
  for (const RegOp& op : ops) {
    if (op.outcome != RegOp::kOk || !op.value) continue;
    if (op.fn == RegOp::kWrite || (op.fn == RegOp::kCas && op.succeeded)) {
      out.push_back({op.key, *op.value, op.rev, op.id});
    }
  }
  return out;
}

bool FeatureOff(const std::vector<Record>& records, const std::string& feature) {
  for (const Record& r : records) {
    if (GetStr(r, "t") == "meta" && r.count(feature) && !GetBool(r, feature)) return true;
  }
  return false;
}

void AddEvidence(std::string* detail, int* count, const std::string& s) {
  if ((*count)++ < 5) *detail += (detail->empty() ? "" : "; ") + s;
}

}  // namespace

Verdict CheckAckedWrites(const std::vector<Record>& records) {
  Verdict v;
  v.name = "no-lost-acked-writes";
  std::vector<Acked> acked = AckedWrites(ExtractOps(records));
  std::map<std::pair<std::string, int64_t>, const Record*> at_rev;
  for (const Record& r : records) {
    if (GetStr(r, "t") == "at_rev") at_rev[{GetStr(r, "key"), GetInt(r, "rev")}] = &r;
  }
  if (acked.empty()) {
    v.kind = Verdict::kFail;
    v.detail = "no write was acknowledged: the run proves nothing";
    return v;
  }
  int bad = 0;
  std::string ev;
  std::map<int64_t, int64_t> rev_owner;
  for (const Acked& a : acked) {
    if (a.rev <= 0) {
      AddEvidence(&ev, &bad, "op " + std::to_string(a.id) + " acknowledged without a revision");
      continue;
    }
    auto [it, inserted] = rev_owner.emplace(a.rev, a.id);
    if (!inserted) {
      AddEvidence(&ev, &bad, "ops " + std::to_string(it->second) + " and " + std::to_string(a.id) +
                                 " both acknowledged at revision " + std::to_string(a.rev));
    }
    auto r = at_rev.find({a.key, a.rev});
    if (r == at_rev.end()) {
      AddEvidence(&ev, &bad, "op " + std::to_string(a.id) + " (" + a.key + "=" + a.value + " at revision " +
                                 std::to_string(a.rev) + ") was never read back");
      continue;
    }
    const Record& rr = *r->second;
    if (GetStr(rr, "status") != "ok") {
      AddEvidence(&ev, &bad, "read-back of op " + std::to_string(a.id) + " failed: " + GetStr(rr, "status"));
      continue;
    }
    std::optional<std::string> got = GetOptStr(rr, "value");
    if (!got || *got != a.value || GetInt(rr, "mod") != a.rev) {
      AddEvidence(&ev, &bad, "LOST op " + std::to_string(a.id) + ": " + a.key + "=" + a.value +
                                 " acknowledged at revision " + std::to_string(a.rev) + ", but at that revision " +
                                 a.key + " is " + Show(got) + " (mod revision " +
                                 std::to_string(GetInt(rr, "mod")) + ")");
    }
  }
  if (bad) {
    v.kind = Verdict::kFail;
    v.detail = std::to_string(bad) + " of " + std::to_string(acked.size()) + " acknowledged writes: " + ev;
  } else {
    v.detail = std::to_string(acked.size()) + " acknowledged writes read back at their revisions";
  }
  return v;
}

Verdict CheckWatch(const std::vector<Record>& records) {
  Verdict v;
  v.name = "watch";
  if (FeatureOff(records, "watch")) {
    v.kind = Verdict::kSkip;
    v.detail = "skipped: server lacks watch";
    return v;
  }
  int64_t final_rev = -1;
  std::map<std::string, std::string> final_state;
  for (const Record& r : records) {
    std::string t = GetStr(r, "t");
    if (t == "final_rev") final_rev = GetInt(r, "rev");
    if (t == "final") final_state[GetStr(r, "key")] = GetStr(r, "value");
  }
  struct Ev {
    int64_t resp, rev, mod;
    std::string key, type, value;
  };
  std::map<int64_t, std::vector<Ev>> streams;
  std::map<int64_t, std::string> member_of;
  for (const Record& r : records) {
    std::string t = GetStr(r, "t");
    if (t == "watch" || t == "watch_end") {
      member_of[GetInt(r, "w")] = GetStr(r, "member");
      if (t == "watch") {
        streams[GetInt(r, "w")].push_back(Ev{GetInt(r, "resp"), GetInt(r, "rev"), GetInt(r, "mod"),
                                             GetStr(r, "key"), GetStr(r, "type"), GetStr(r, "value")});
      } else {
        streams[GetInt(r, "w")];
      }
    }
  }
  if (final_rev < 0) {
    v.kind = Verdict::kFail;
    v.detail = "no final revision recorded";
    return v;
  }
  if (streams.empty()) {
    v.kind = Verdict::kFail;
    v.detail = "no watcher recorded anything";
    return v;
  }
  std::vector<Acked> acked = AckedWrites(ExtractOps(records));
  int bad = 0;
  std::string ev;
  std::vector<Ev> reference;
  int64_t reference_w = -1;
  size_t total_events = 0;
  for (auto& [w, evs] : streams) {
    std::string who = "watcher " + std::to_string(w) + " (member " + member_of[w] + ")";
    int64_t prev_rev = 0, prev_resp = -1;
    std::set<std::pair<int64_t, std::string>> seen;
    std::set<int64_t> revs;
    std::map<std::string, std::string> state;
    std::map<std::pair<int64_t, std::string>, std::pair<std::string, std::string>> at;  // (rev,key)->(type,value)
    std::vector<Ev> upto;
    for (const Ev& e : evs) {
      if (e.rev < prev_rev) {
        AddEvidence(&ev, &bad, who + ": revision " + std::to_string(e.rev) + " delivered after " +
                                   std::to_string(prev_rev) + " (out of order)");
      }
      if (e.rev == prev_rev && e.resp != prev_resp) {
        AddEvidence(&ev, &bad, who + ": revision " + std::to_string(e.rev) +
                                   " split across watch responses (not atomic)");
      }
      if (!seen.insert({e.rev, e.key}).second) {
        AddEvidence(&ev, &bad, who + ": duplicate event " + e.key + "@" + std::to_string(e.rev));
      }
      if (e.mod != e.rev) {
        AddEvidence(&ev, &bad, who + ": event at revision " + std::to_string(e.rev) + " carries mod revision " +
                                   std::to_string(e.mod));
      }
      prev_rev = std::max(prev_rev, e.rev);
      prev_resp = e.resp;
      if (e.rev > final_rev) continue;
      revs.insert(e.rev);
      at[{e.rev, e.key}] = {e.type, e.value};
      upto.push_back(e);
      if (e.type == "put") state[e.key] = e.value;
      else state.erase(e.key);
    }
    total_events += upto.size();
    // Gap-free: every revision 2..final_rev touched something under the
    // watched range (all keys), so each must be delivered.
    int64_t missing = 0, first_missing = -1;
    for (int64_t r = 2; r <= final_rev; ++r) {
      if (!revs.count(r)) {
        if (first_missing < 0) first_missing = r;
        ++missing;
      }
    }
    if (missing) {
      AddEvidence(&ev, &bad, who + ": " + std::to_string(missing) + " revisions in 2.." +
                                 std::to_string(final_rev) + " never delivered (first gap at " +
                                 std::to_string(first_missing) + ")");
    }
    if (state != final_state) {
      std::string diff;
      for (const auto& [k, val] : final_state) {
        auto it = state.find(k);
        if (it == state.end() || it->second != val) {
          diff = k + ": final state " + val + ", replay " + (it == state.end() ? "<absent>" : it->second);
          break;
        }
      }
      if (diff.empty()) {
        for (const auto& [k, val] : state) {
          if (!final_state.count(k)) {
            diff = k + ": final state <absent>, replay " + val;
            break;
          }
        }
      }
      AddEvidence(&ev, &bad, who + ": replay up to revision " + std::to_string(final_rev) +
                                 " differs from the final state (" + diff + ")");
    }
    int missing_acked = 0;
    std::string first_acked;
    for (const Acked& a : acked) {
      if (a.rev <= 0 || a.rev > final_rev) continue;
      auto it = at.find({a.rev, a.key});
      if (it == at.end() || it->second.first != "put" || it->second.second != a.value) {
        if (missing_acked++ == 0) {
          first_acked = a.key + "=" + a.value + "@" + std::to_string(a.rev);
        }
      }
    }
    if (missing_acked) {
      AddEvidence(&ev, &bad, who + ": " + std::to_string(missing_acked) +
                                 " acknowledged writes missing from the stream (first " + first_acked + ")");
    }
    if (reference_w < 0) {
      reference = upto;
      reference_w = w;
    } else {
      size_t i = 0;
      while (i < reference.size() && i < upto.size() && reference[i].rev == upto[i].rev &&
             reference[i].key == upto[i].key && reference[i].type == upto[i].type &&
             reference[i].value == upto[i].value) {
        ++i;
      }
      if (i != reference.size() || i != upto.size()) {
        AddEvidence(&ev, &bad, who + " and watcher " + std::to_string(reference_w) +
                                   " disagree from event " + std::to_string(i));
      }
    }
  }
  if (bad) {
    v.kind = Verdict::kFail;
    v.detail = ev;
  } else {
    v.detail = std::to_string(streams.size()) + " watchers, " + std::to_string(total_events) +
               " events up to revision " + std::to_string(final_rev) +
               ": ordered, unique, atomic, gap-free, equal to the final state, every acknowledged write present";
  }
  return v;
}

Verdict CheckLeases(const std::vector<Record>& records) {
  Verdict v;
  v.name = "lease";
  if (FeatureOff(records, "lease")) {
    v.kind = Verdict::kSkip;
    v.detail = "skipped: server lacks lease";
    return v;
  }
  struct Lease {
    bool granted = false;
    int64_t ttl_s = 0;
    int64_t alive_until_ns = 0;    // a lower bound of its expiry
    int64_t revoke_invoke_ns = INT64_MAX;
    bool revoked_ok = false;
    std::vector<std::string> keys;  // attached with an acknowledged put
    int64_t put_complete_ns = 0;
    int64_t final_ttl = INT64_MIN;
  };
  std::map<int64_t, Lease> leases;
  std::map<std::string, std::string> final_state;
  bool have_final = false;
  for (const Record& r : records) {
    std::string t = GetStr(r, "t");
    if (t == "final") final_state[GetStr(r, "key")] = GetStr(r, "value");
    if (t == "final_rev") have_final = true;
    if (t.rfind("lease_", 0) != 0) continue;
    Lease& l = leases[GetInt(r, "lease")];
    bool ok = GetStr(r, "outcome") == "ok";
    if (t == "lease_grant" && ok) {
      l.granted = true;
      l.ttl_s = GetInt(r, "ttl");
      l.alive_until_ns = std::max(l.alive_until_ns, GetInt(r, "invoke") + l.ttl_s * 1'000'000'000);
    } else if (t == "lease_ka" && ok && GetInt(r, "ttl") > 0) {
      l.alive_until_ns = std::max(l.alive_until_ns, GetInt(r, "invoke") + GetInt(r, "ttl") * 1'000'000'000);
    } else if (t == "lease_put" && ok) {
      l.keys.push_back(GetStr(r, "key"));
      l.put_complete_ns = std::max(l.put_complete_ns, GetInt(r, "complete"));
    } else if (t == "lease_revoke") {
      l.revoke_invoke_ns = std::min(l.revoke_invoke_ns, GetInt(r, "invoke"));
      if (ok) l.revoked_ok = true;
    } else if (t == "lease_final") {
      l.final_ttl = GetInt(r, "ttl");
    }
  }
  // Early loss needs the keepalive history in full, so a second pass.
  int bad = 0;
  std::string ev;
  size_t reads = 0;
  for (const Record& r : records) {
    if (GetStr(r, "t") != "lease_read") continue;
    ++reads;
    const Lease& l = leases[GetInt(r, "lease")];
    if (GetBool(r, "present") || !l.granted) continue;
    int64_t inv = GetInt(r, "invoke"), comp = GetInt(r, "complete");
    if (inv < l.put_complete_ns || l.revoke_invoke_ns <= comp) continue;
    if (comp < l.alive_until_ns) {
      char buf[200];
      snprintf(buf, sizeof(buf), "lease %lld: key %s gone at %.3fs, but the lease was renewed to live until >= %.3fs",
               static_cast<long long>(GetInt(r, "lease")), GetStr(r, "key").c_str(), comp / 1e9,
               l.alive_until_ns / 1e9);
      AddEvidence(&ev, &bad, buf);
    }
  }
  size_t ended = 0;
  for (const auto& [id, l] : leases) {
    if (!l.granted) continue;
    ++ended;
    if (l.final_ttl == -2) {
      AddEvidence(&ev, &bad, "lease " + std::to_string(id) + ": LeaseTimeToLive never answered after the run");
    } else if (l.final_ttl != INT64_MIN && l.final_ttl != -1) {
      AddEvidence(&ev, &bad, "lease " + std::to_string(id) + " still exists after the run (TTL " +
                                 std::to_string(l.final_ttl) + ")");
    }
    if (!have_final) continue;
    for (const std::string& k : l.keys) {
      if (final_state.count(k)) {
        AddEvidence(&ev, &bad, std::string("lease ") + std::to_string(id) + (l.revoked_ok ? " revoked" : " expired") +
                                   " but its key " + k + " is still there");
      }
    }
  }
  if (leases.empty()) {
    v.kind = Verdict::kFail;
    v.detail = "no lease was granted: the run proves nothing";
  } else if (bad) {
    v.kind = Verdict::kFail;
    v.detail = ev;
  } else {
    v.detail = std::to_string(ended) + " leases, " + std::to_string(reads) +
               " reads of attached keys: no key lost early, every revoked/expired lease and its keys gone";
  }
  return v;
}

std::vector<Verdict> CheckAll(const std::vector<Record>& records, const LinearizabilityOptions& opt) {
  return {CheckLinearizability(records, opt), CheckAckedWrites(records), CheckWatch(records),
          CheckLeases(records)};
}

}  // namespace etcdpp::robustness
