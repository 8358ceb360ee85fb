// Checkers on hand-written histories: linearizable ones pass, the classic
// anomalies (stale read, lost write, CAS anomalies, watch gaps, early lease
// expiry) fail, and the search budget ends in UNDECIDED, never a hang.
#include "checker.h"

#include <gtest/gtest.h>

namespace etcdpp::robustness {
namespace {

constexpr int64_t kInf = -1;  // "unknown outcome" marker for the helpers

std::optional<std::string> V(const char* s) { return s ? std::optional<std::string>(s) : std::nullopt; }

class H {
 public:
  H& W(int client, const char* v, int64_t inv, int64_t comp, int64_t rev = 0) {
    RegOp op = Base(client, inv, comp);
    op.fn = RegOp::kWrite;
    op.value = V(v);
    op.rev = rev;
    ops_.push_back(op);
    return *this;
  }
  H& R(int client, const char* v, int64_t inv, int64_t comp) {
    RegOp op = Base(client, inv, comp);
    op.fn = RegOp::kRead;
    op.value = V(v);
    ops_.push_back(op);
    return *this;
  }
  // cas(expected -> new); succeeded, or failed having seen `observed`.
  H& Cas(int client, const char* expected, const char* nv, bool ok, int64_t inv, int64_t comp,
         const char* observed = nullptr) {
    RegOp op = Base(client, inv, comp);
    op.fn = RegOp::kCas;
    op.expected = V(expected);
    op.value = V(nv);
    op.succeeded = ok;
    if (!ok && op.outcome == RegOp::kOk) {
      op.observed_known = true;
      op.observed = V(observed);
    }
    ops_.push_back(op);
    return *this;
  }
  std::vector<RegOp> Ops() const { return ops_; }
  Verdict Check(int64_t max_steps = 1'000'000) const {
    LinearizabilityOptions opt;
    opt.max_steps_per_key = max_steps;
    return CheckKeyLinearizable(ops_, opt);
  }

 private:
  RegOp Base(int client, int64_t inv, int64_t comp) {
    RegOp op;
    op.id = static_cast<int64_t>(ops_.size());
    op.client = client;
    op.key = "k";
    op.invoke_ns = inv;
    op.complete_ns = comp == kInf ? 0 : comp;
    op.outcome = comp == kInf ? RegOp::kUnknown : RegOp::kOk;
    return op;
  }
  std::vector<RegOp> ops_;
};

TEST(Linearizability, SequentialHistoryPasses) {
  auto v = H().R(0, nullptr, 0, 1).W(0, "a", 2, 3).R(1, "a", 4, 5).W(1, "b", 6, 7).R(0, "b", 8, 9).Check();
  EXPECT_EQ(v.kind, Verdict::kPass) << v.detail;
}

TEST(Linearizability, ConcurrentReadMaySeeEitherValue) {
  // The read overlaps the write of b: a and b are both fine.
  EXPECT_EQ(H().W(0, "a", 0, 1).W(0, "b", 2, 6).R(1, "a", 3, 4).Check().kind, Verdict::kPass);
  EXPECT_EQ(H().W(0, "a", 0, 1).W(0, "b", 2, 6).R(1, "b", 3, 4).Check().kind, Verdict::kPass);
}

TEST(Linearizability, StaleReadFails) {
  // b completed before the read began, yet the read returned a.
  auto v = H().W(0, "a", 0, 1).W(0, "b", 2, 3).R(1, "a", 4, 5).Check();
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_NE(v.detail.find("read -> \"a\""), std::string::npos) << v.detail;
}

TEST(Linearizability, NonMonotonicReadsFail) {
  // Two sequential reads see b then a, with the writes done long before.
  auto v = H().W(0, "a", 0, 10).W(1, "b", 0, 10).R(2, "b", 11, 12).R(2, "a", 13, 14).Check();
  EXPECT_EQ(v.kind, Verdict::kFail);
}

TEST(Linearizability, LostWriteFails) {
  // a acknowledged, then every later read sees the key absent.
  auto v = H().W(0, "a", 0, 1).R(1, nullptr, 2, 3).Check();
  EXPECT_EQ(v.kind, Verdict::kFail);
}

TEST(Linearizability, ReadOfNeverWrittenValueFails) {
  EXPECT_EQ(H().W(0, "a", 0, 1).R(1, "zzz", 2, 3).Check().kind, Verdict::kFail);
}

TEST(Linearizability, UnknownWriteMayTakeEffectLate) {
  // The write timed out; its value shows up much later: fine.
  auto v = H().W(0, "a", 0, 1).W(1, "b", 2, kInf).R(2, "a", 10, 11).R(2, "b", 20, 21).Check();
  EXPECT_EQ(v.kind, Verdict::kPass) << v.detail;
}

TEST(Linearizability, UnknownWriteMayNeverTakeEffect) {
  auto v = H().W(0, "a", 0, 1).W(1, "b", 2, kInf).R(2, "a", 10, 11).R(2, "a", 20, 21).Check();
  EXPECT_EQ(v.kind, Verdict::kPass) << v.detail;
}

TEST(Linearizability, UnknownWriteCannotTakeEffectBeforeItsInvocation) {
  auto v = H().W(0, "a", 0, 1).R(2, "b", 2, 3).W(1, "b", 4, kInf).Check();
  EXPECT_EQ(v.kind, Verdict::kFail);
}

TEST(Linearizability, UnknownWriteTakesEffectOnce) {
  // b seen, then a (a later ack'd write), then b again: b cannot reappear.
  auto v = H().W(0, "a", 0, 1).W(1, "b", 2, kInf).R(2, "b", 3, 4).W(0, "c", 5, 6).R(2, "b", 7, 8).Check();
  EXPECT_EQ(v.kind, Verdict::kFail);
}

TEST(Linearizability, FailedOpsHaveNoEffect) {
  H h;
  h.W(0, "a", 0, 1).R(1, "a", 5, 6);
  auto ops_v = h.Check();
  EXPECT_EQ(ops_v.kind, Verdict::kPass);
  std::vector<RegOp> ops;
  RegOp w;
  w.id = 0; w.key = "k"; w.fn = RegOp::kWrite; w.value = "a"; w.invoke_ns = 0; w.complete_ns = 1;
  ops.push_back(w);
  RegOp f = w;
  f.id = 1; f.value = "b"; f.outcome = RegOp::kFail; f.invoke_ns = 2; f.complete_ns = 3;
  ops.push_back(f);
  RegOp r;
  r.id = 2; r.key = "k"; r.fn = RegOp::kRead; r.value = "b"; r.invoke_ns = 4; r.complete_ns = 5;
  ops.push_back(r);
  EXPECT_EQ(CheckKeyLinearizable(ops, {}).kind, Verdict::kFail);  // b was never written
}

TEST(Linearizability, CasSucceedsOnlyOnExpectedValue) {
  EXPECT_EQ(H().W(0, "a", 0, 1).Cas(1, "a", "b", true, 2, 3).R(2, "b", 4, 5).Check().kind, Verdict::kPass);
  // CAS from a succeeded though the value was c: anomaly.
  EXPECT_EQ(H().W(0, "a", 0, 1).W(0, "c", 2, 3).Cas(1, "a", "b", true, 4, 5).Check().kind, Verdict::kFail);
}

TEST(Linearizability, TwoCasFromTheSameValueCannotBothSucceed) {
  auto v = H().W(0, "a", 0, 1).Cas(1, "a", "b", true, 2, 10).Cas(2, "a", "c", true, 2, 10).Check();
  EXPECT_EQ(v.kind, Verdict::kFail);
}

TEST(Linearizability, FailedCasMustSeeAnotherValue) {
  // Nothing but a was ever written, yet the CAS from a failed: anomaly.
  EXPECT_EQ(H().W(0, "a", 0, 1).Cas(1, "a", "b", false, 2, 3, "a").Check().kind, Verdict::kFail);
  EXPECT_EQ(H().W(0, "a", 0, 1).W(0, "c", 2, 3).Cas(1, "a", "b", false, 4, 5, "c").Check().kind,
            Verdict::kPass);
  // Failed CAS on an absent key (expected absent) must observe a value.
  EXPECT_EQ(H().Cas(1, nullptr, "b", false, 0, 1, nullptr).Check().kind, Verdict::kFail);
}

TEST(Linearizability, UnknownCasMayApplyOrNot) {
  EXPECT_EQ(H().W(0, "a", 0, 1).Cas(1, "a", "b", false, 2, kInf).R(2, "b", 5, 6).Check().kind, Verdict::kPass);
  EXPECT_EQ(H().W(0, "a", 0, 1).Cas(1, "a", "b", false, 2, kInf).R(2, "a", 5, 6).Check().kind, Verdict::kPass);
  // It cannot apply when the value was no longer a.
  EXPECT_EQ(H().W(0, "a", 0, 1).W(0, "c", 2, 3).Cas(1, "a", "b", false, 4, kInf).R(2, "b", 5, 6).Check().kind,
            Verdict::kFail);
}

TEST(Linearizability, BudgetExhaustedIsUndecided) {
  H h;
  // Many concurrent unknown writes and reads of each: large search space.
  for (int i = 0; i < 40; ++i) {
    static std::vector<std::string> names;
    names.push_back("v" + std::to_string(i));
    h.W(i, names.back().c_str(), 0, kInf);
  }
  h.R(99, "zzz", 1, 2);  // impossible: forces exhaustive search
  auto v = h.Check(/*max_steps=*/2000);
  EXPECT_EQ(v.kind, Verdict::kUndecided) << v.detail;
  EXPECT_NE(v.detail.find("budget"), std::string::npos);
}

// ---- unknown writes settled by the watch streams; writes in revision order

WatchedWrites Watched(std::map<std::string, int64_t> revs, bool complete) {
  WatchedWrites w;
  w.rev_of_value = std::move(revs);
  w.complete = complete;
  return w;
}

TEST(Linearizability, WatchSettlesUnknownWrites) {
  // b and c timed out; a watcher that saw every revision saw b at 3, never c.
  auto ops = H().W(0, "a", 0, 1, 2).W(1, "b", 2, kInf).W(3, "c", 2, kInf).R(2, "b", 10, 11).Ops();
  Resolution r = ResolveUnknownWrites(&ops, Watched({{"a", 2}, {"b", 3}}, true));
  EXPECT_EQ(r.applied, 1u);
  EXPECT_EQ(r.dropped, 1u);
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_TRUE(ops[1].applied);
  EXPECT_EQ(ops[1].rev, 3);
  auto v = CheckKeyLinearizable(ops, {});
  EXPECT_EQ(v.kind, Verdict::kPass) << v.detail;
  EXPECT_NE(v.detail.find("revision order"), std::string::npos) << v.detail;
}

TEST(Linearizability, IncompleteWatchKeepsUnseenUnknownWrites) {
  auto ops = H().W(0, "a", 0, 1, 2).W(1, "c", 2, kInf).R(2, "c", 5, 6).Ops();
  Resolution r = ResolveUnknownWrites(&ops, Watched({{"a", 2}}, false));
  EXPECT_EQ(r.applied + r.dropped, 0u);
  EXPECT_EQ(ops.size(), 3u);
  auto v = CheckKeyLinearizable(ops, {});
  EXPECT_EQ(v.kind, Verdict::kPass) << v.detail;  // c may have been applied unseen
  EXPECT_EQ(v.detail.find("revision order"), std::string::npos) << v.detail;
}

TEST(Linearizability, ReadOfAValueNoWatcherSawFails) {
  // c timed out and a complete watch never saw it: reading c reads a value
  // never written (unresolved, the search lets c take effect and passes).
  auto ops = H().W(0, "a", 0, 1, 2).W(1, "c", 2, kInf).R(2, "c", 5, 6).Ops();
  EXPECT_EQ(CheckKeyLinearizable(ops, {}).kind, Verdict::kPass);
  ResolveUnknownWrites(&ops, Watched({{"a", 2}}, true));
  EXPECT_EQ(CheckKeyLinearizable(ops, {}).kind, Verdict::kFail);
}

TEST(Linearizability, RepeatedValuesAreNotResolved) {
  auto ops = H().W(0, "a", 0, 1, 2).W(1, "a", 2, kInf).Ops();
  Resolution r = ResolveUnknownWrites(&ops, Watched({{"a", 2}}, true));
  EXPECT_EQ(r.applied + r.dropped, 0u);
  EXPECT_FALSE(ops[1].applied);
}

TEST(Linearizability, WritesOutOfRevisionOrderFail) {
  // a was acknowledged at revision 3 before b was sent, yet b got revision 2.
  auto v = H().W(0, "a", 0, 1, 3).W(1, "b", 2, 3, 2).Check();
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_NE(v.detail.find("revision order"), std::string::npos) << v.detail;
  // Without revisions only the values are checked, and they fit.
  EXPECT_EQ(H().W(0, "a", 0, 1).W(1, "b", 2, 3).Check().kind, Verdict::kPass);
}

TEST(Linearizability, StaleReadFailsInRevisionOrder) {
  auto v = H().W(0, "a", 0, 1, 2).W(1, "b", 2, 3, 3).R(2, "a", 4, 5).Check();
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_NE(v.detail.find("revision order"), std::string::npos) << v.detail;
}

TEST(Linearizability, RevisionOrderDecidesWhatTheValueSearchCannot) {
  // The history of BudgetExhaustedIsUndecided, its 40 unknown writes seen by
  // a complete watch: the same budget now decides it, both ways.
  for (const char* read : {"zzz", "v39"}) {
    H h;
    std::map<std::string, int64_t> revs;
    static std::vector<std::string> names;
    for (int i = 0; i < 40; ++i) {
      names.push_back("v" + std::to_string(i));
      h.W(i, names.back().c_str(), 0, kInf);
      revs[names.back()] = 2 + i;
    }
    h.R(99, read, 1, 2);
    auto ops = h.Ops();
    ResolveUnknownWrites(&ops, Watched(revs, true));
    LinearizabilityOptions opt;
    opt.max_steps_per_key = 2000;
    auto v = CheckKeyLinearizable(ops, opt);
    EXPECT_EQ(v.kind, std::string(read) == "zzz" ? Verdict::kFail : Verdict::kPass) << read << ": " << v.detail;
  }
}

// ---- record-level checkers

std::vector<Record> Parse(const std::vector<std::string>& lines) {
  std::vector<Record> out;
  for (const auto& l : lines) {
    Record r;
    std::string err;
    EXPECT_TRUE(ParseRecord(l, &r, &err)) << l << ": " << err;
    out.push_back(r);
  }
  return out;
}

std::vector<std::string> BaseRun() {
  return {
      R"({"t":"meta","watch":true,"lease":false})",
      R"({"t":"op","id":1,"client":0,"key":"k1","f":"write","value":"a","invoke":0,"complete":5,"outcome":"ok","rev":2})",
      R"({"t":"op","id":2,"client":1,"key":"k2","f":"cas","expected":null,"value":"b","succeeded":true,"invoke":6,"complete":9,"outcome":"ok","rev":3})",
      R"({"t":"op","id":3,"client":0,"key":"k1","f":"read","value":"a","invoke":10,"complete":12,"outcome":"ok","rev":3})",
      R"({"t":"final","key":"k1","value":"a","mod":2})",
      R"({"t":"final","key":"k2","value":"b","mod":3})",
      R"({"t":"final_rev","rev":3})",
      R"({"t":"at_rev","key":"k1","rev":2,"value":"a","mod":2,"status":"ok"})",
      R"({"t":"at_rev","key":"k2","rev":3,"value":"b","mod":3,"status":"ok"})",
  };
}

std::vector<std::string> Watcher(int w, bool drop_second = false, bool dup = false) {
  std::string ws = std::to_string(w);
  std::vector<std::string> out = {
      R"({"t":"watch","w":)" + ws + R"(,"member":"m","resp":1,"rev":2,"key":"k1","type":"put","value":"a","mod":2})"};
  if (!drop_second) {
    out.push_back(R"({"t":"watch","w":)" + ws +
                  R"(,"member":"m","resp":2,"rev":3,"key":"k2","type":"put","value":"b","mod":3})");
  }
  if (dup) {
    out.push_back(R"({"t":"watch","w":)" + ws +
                  R"(,"member":"m","resp":3,"rev":3,"key":"k2","type":"put","value":"b","mod":3})");
  }
  return out;
}

TEST(Records, ParseRoundTrip) {
  std::string line = RecordWriter("op").Str("key", "a\"b\\c\n").Int("rev", -5).Bool("ok", true).OptStr("v", {}).Line();
  Record r;
  std::string err;
  ASSERT_TRUE(ParseRecord(line, &r, &err)) << err;
  EXPECT_EQ(GetStr(r, "key"), "a\"b\\c\n");
  EXPECT_EQ(GetInt(r, "rev"), -5);
  EXPECT_TRUE(GetBool(r, "ok"));
  EXPECT_FALSE(GetOptStr(r, "v").has_value());
  EXPECT_FALSE(ParseRecord("{\"a\":", &r, &err));
}

TEST(Records, HealthyRunPassesEveryChecker) {
  auto lines = BaseRun();
  for (int w = 0; w < 2; ++w) {
    auto ws = Watcher(w);
    lines.insert(lines.end(), ws.begin(), ws.end());
  }
  auto recs = Parse(lines);
  EXPECT_EQ(CheckLinearizability(recs, {}).kind, Verdict::kPass);
  auto a = CheckAckedWrites(recs);
  EXPECT_EQ(a.kind, Verdict::kPass) << a.detail;
  auto w = CheckWatch(recs);
  EXPECT_EQ(w.kind, Verdict::kPass) << w.detail;
  EXPECT_EQ(CheckLeases(recs).kind, Verdict::kSkip);
}

TEST(Records, UnknownWriteNoWatcherSawCannotBeRead) {
  auto lines = BaseRun();
  for (int w = 0; w < 2; ++w) {
    auto ws = Watcher(w);
    lines.insert(lines.end(), ws.begin(), ws.end());
  }
  lines.push_back(R"({"t":"op","id":4,"client":2,"key":"k1","f":"write","value":"z","invoke":13,"complete":0,"outcome":"unknown","rev":0})");
  auto v = CheckLinearizability(Parse(lines), {});
  EXPECT_EQ(v.kind, Verdict::kPass) << v.detail;
  EXPECT_NE(v.detail.find("settled 1 unknown writes (0 applied, 1 never applied)"), std::string::npos) << v.detail;
  lines.push_back(R"({"t":"op","id":5,"client":0,"key":"k1","f":"read","value":"z","invoke":14,"complete":15,"outcome":"ok","rev":3})");
  v = CheckLinearizability(Parse(lines), {});
  EXPECT_EQ(v.kind, Verdict::kFail) << v.detail;
}

TEST(Records, AckedWriteMissingAtItsRevisionFails) {
  auto lines = BaseRun();
  lines[7] = R"({"t":"at_rev","key":"k1","rev":2,"value":null,"mod":0,"status":"ok"})";
  auto v = CheckAckedWrites(Parse(lines));
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_NE(v.detail.find("LOST op 1"), std::string::npos) << v.detail;
}

TEST(Records, TwoAcksAtOneRevisionFail) {
  auto lines = BaseRun();
  lines[2] = R"({"t":"op","id":2,"client":1,"key":"k2","f":"cas","expected":null,"value":"b","succeeded":true,"invoke":6,"complete":9,"outcome":"ok","rev":2})";
  EXPECT_EQ(CheckAckedWrites(Parse(lines)).kind, Verdict::kFail);
}

TEST(Records, WatchGapFails) {
  auto lines = BaseRun();
  auto w = Watcher(0, /*drop_second=*/true);
  lines.insert(lines.end(), w.begin(), w.end());
  auto v = CheckWatch(Parse(lines));
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_NE(v.detail.find("never delivered"), std::string::npos) << v.detail;
}

TEST(Records, WatchDuplicateFails) {
  auto lines = BaseRun();
  auto w = Watcher(0, false, /*dup=*/true);
  lines.insert(lines.end(), w.begin(), w.end());
  auto v = CheckWatch(Parse(lines));
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_NE(v.detail.find("duplicate"), std::string::npos) << v.detail;
}

TEST(Records, WatchersThatDisagreeFail) {
  auto lines = BaseRun();
  auto w0 = Watcher(0);
  lines.insert(lines.end(), w0.begin(), w0.end());
  lines.push_back(R"({"t":"watch","w":1,"member":"m2","resp":1,"rev":2,"key":"k1","type":"put","value":"X","mod":2})");
  lines.push_back(R"({"t":"watch","w":1,"member":"m2","resp":2,"rev":3,"key":"k2","type":"put","value":"b","mod":3})");
  EXPECT_EQ(CheckWatch(Parse(lines)).kind, Verdict::kFail);
}

TEST(Records, WatchSkippedWhenServerLacksIt) {
  auto lines = BaseRun();
  lines[0] = R"({"t":"meta","watch":false,"lease":false})";
  auto v = CheckWatch(Parse(lines));
  EXPECT_EQ(v.kind, Verdict::kSkip);
  EXPECT_EQ(v.detail, "skipped: server lacks watch");
}

std::vector<std::string> LeaseRun(bool early_loss, bool key_left) {
  std::vector<std::string> l = {
      R"({"t":"meta","watch":false,"lease":true})",
      R"({"t":"lease_grant","lease":7,"ttl":2,"invoke":0,"complete":1000,"outcome":"ok"})",
      R"({"t":"lease_put","lease":7,"key":"L7","invoke":1000,"complete":2000,"outcome":"ok","rev":2})",
      R"({"t":"lease_ka","lease":7,"invoke":1000000000,"complete":1000001000,"outcome":"ok","ttl":2})",
      R"({"t":"lease_read","lease":7,"key":"L7","invoke":1500000000,"complete":1500001000,"present":true})",
      R"({"t":"lease_final","lease":7,"ttl":-1})",
      R"({"t":"final_rev","rev":3})",
  };
  if (early_loss) {
    // The keepalive at 1 s promised life until >= 3 s; gone at 2.5 s.
    l.push_back(R"({"t":"lease_read","lease":7,"key":"L7","invoke":2500000000,"complete":2500001000,"present":false})");
  } else {
    l.push_back(R"({"t":"lease_read","lease":7,"key":"L7","invoke":3500000000,"complete":3500001000,"present":false})");
  }
  if (key_left) l.push_back(R"({"t":"final","key":"L7","value":"x","mod":2})");
  return l;
}

TEST(Records, LeaseExpiringOnTimePasses) {
  auto v = CheckLeases(Parse(LeaseRun(false, false)));
  EXPECT_EQ(v.kind, Verdict::kPass) << v.detail;
}

TEST(Records, LeaseKeyGoneEarlyFails) {
  auto v = CheckLeases(Parse(LeaseRun(true, false)));
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_NE(v.detail.find("gone at 2.500s"), std::string::npos) << v.detail;
}

TEST(Records, ExpiredLeaseKeyLeftBehindFails) {
  auto v = CheckLeases(Parse(LeaseRun(false, true)));
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_NE(v.detail.find("still there"), std::string::npos) << v.detail;
}

}  // namespace
}  // namespace etcdpp::robustness
