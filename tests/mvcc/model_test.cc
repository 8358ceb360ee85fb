// Randomized check against a tiny in-memory model of etcd's revision rules:
// random txns (puts, deletes, delete ranges), reads at random revisions,
// compactions, flushes and reopens. The seed is printed on failure.
#include <map>
#include <optional>

#include "common/random.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace etcdpp::mvcc::testing {
namespace {

struct ModelVersion {
  Revision rev;
  bool tombstone = false;
  int64_t create = 0, version = 0, lease = 0;
  std::string value;
};

class Model {
 public:
  // The visible version of `key` at `rev`, if live.
  std::optional<ModelVersion> At(const std::string& key, int64_t rev) const {
    auto it = keys_.find(key);
    if (it == keys_.end()) return std::nullopt;
    const ModelVersion* best = nullptr;
    for (const auto& v : it->second) {
      if (v.rev.main <= rev && (best == nullptr || best->rev < v.rev)) best = &v;
    }
    if (best == nullptr || best->tombstone) return std::nullopt;
    return *best;
  }
  std::vector<ModelVersion> Range(const std::string& key, const std::string& end,
                                  int64_t rev) const {
    std::vector<ModelVersion> out;
    for (const auto& [k, _] : keys_) {
      bool in = end.empty() ? k == key : (end == kNul ? k >= key : (k >= key && k < end));
      if (!in) continue;
      if (auto v = At(k, rev)) {
        out.push_back(*v);
        out.back().value = k + "\x01" + out.back().value;  // remember the key
      }
    }
    return out;
  }
  void Put(const std::string& key, const std::string& value, int64_t lease, Revision rev) {
    auto prev = At(key, rev.main);
    ModelVersion v{rev,   false, prev ? prev->create : rev.main, prev ? prev->version + 1 : 1,
                   lease, value};
    keys_[key].push_back(v);
  }
  int Delete(const std::string& key, const std::string& end, Revision* rev) {
    int n = 0;
    for (const auto& mv : Range(key, end, rev->main)) {
      std::string k = mv.value.substr(0, mv.value.find('\x01'));
      keys_[k].push_back(ModelVersion{*rev, true, 0, 0, 0, ""});
      ++rev->sub;
      ++n;
    }
    return n;
  }
  // The versions compaction at `c` must leave, newest first.
  std::vector<Revision> Kept(const std::string& key, int64_t c) const {
    std::vector<Revision> out;
    auto it = keys_.find(key);
    if (it == keys_.end()) return out;
    std::vector<ModelVersion> vs = it->second;
    std::sort(vs.begin(), vs.end(), [](auto& a, auto& b) { return b.rev < a.rev; });
    bool kept_one = false;
    for (const auto& v : vs) {
      if (v.rev.main > c) {
        out.push_back(v.rev);
      } else if (!kept_one) {
        kept_one = true;
        if (!v.tombstone) out.push_back(v.rev);
      }
    }
    return out;
  }

 private:
  std::map<std::string, std::vector<ModelVersion>> keys_;
};

class ModelTest : public StoreFixture, public ::testing::WithParamInterface<uint64_t> {};

TEST_P(ModelTest, RandomOpsMatchModel) {
  const uint64_t seed = GetParam();
  SCOPED_TRACE("seed=" + std::to_string(seed));
  Random rnd(seed);
  const std::vector<std::string> keys = {
      kNul, "a", std::string("a\0", 2), "a\xff", "ab", "abc", "b", "\xff", "\xff\xff"};
  auto pick_key = [&] { return keys[rnd.Uniform(keys.size())]; };
  auto pick_end = [&]() -> std::string {
    switch (rnd.Uniform(4)) {
      case 0:
        return "";
      case 1:
        return kNul;
      default:
        return pick_key();
    }
  };
  Model model;
  int64_t cur = 1, compacted = 0;
  InternalOptions io;
  io.compaction_batch_revs = 1 + rnd.Uniform(5);
  io.compaction_max_batch_deletes = 1 + rnd.Uniform(10);
  Reopen(io);
  for (int step = 0; step < 400; ++step) {
    // A write txn of 1-3 ops.
    auto txn = store_->BeginWrite();
    Revision rev{cur + 1, 0};
    int ops = 1 + static_cast<int>(rnd.Uniform(3));
    for (int i = 0; i < ops; ++i) {
      if (rnd.Bernoulli(0.65)) {
        std::string k = pick_key(), v = "v" + std::to_string(step) + "." + std::to_string(i);
        int64_t lease = static_cast<int64_t>(rnd.Uniform(3));
        auto prev = Unwrap(txn->Put(k, v, lease));
        auto mprev = model.At(k, rev.main);
        ASSERT_EQ(prev.has_value(), mprev.has_value());
        model.Put(k, v, lease, rev);
        ++rev.sub;
      } else {
        std::string k = pick_key(), e = pick_end();
        auto deleted = Unwrap(txn->DeleteRange(k, e));
        int n = model.Delete(k, e, &rev);
        ASSERT_EQ(static_cast<int>(deleted.size()), n);
      }
    }
    Unwrap(txn->Commit(++index_));
    txn.reset();
    if (rev.sub > 0) ++cur;
    ASSERT_EQ(store_->CurrentRevision(), cur);

    // Reads at random revisions.
    for (int i = 0; i < 3; ++i) {
      std::string k = pick_key(), e = pick_end();
      int64_t at = compacted + static_cast<int64_t>(rnd.Uniform(cur - compacted + 1));
      if (at == 0) at = cur;
      RangeOptions o;
      o.rev = at;
      o.limit = static_cast<int64_t>(rnd.Uniform(3));
      auto r = store_->Range(k, e, o);
      ASSERT_TRUE(r.ok()) << r.status() << " at " << at << " compacted " << compacted;
      auto want = model.Range(k, e, at);
      auto show = [](const std::string& s) {
        std::string o;
        for (unsigned char c : s)
          o += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : "\\x" + std::to_string(c);
        return o;
      };
      std::string got_s, want_s;
      for (const auto& kv : r->kvs)
        got_s += show(kv.key()) + "@" + std::to_string(kv.mod_revision()) + " ";
      for (const auto& kv : r->kvs) {
        got_s += "[raw:";
        for (auto rv : store_->RawVersionsForTest(kv.key()))
          got_s += " " + std::to_string(rv.main) + "." + std::to_string(rv.sub);
        got_s += " kept:";
        for (auto rv : model.Kept(kv.key(), compacted))
          got_s += " " + std::to_string(rv.main) + "." + std::to_string(rv.sub);
        got_s += "] ";
      }
      for (const auto& w : want) want_s += show(w.value) + "@" + std::to_string(w.rev.main) + " ";
      ASSERT_EQ(r->count, static_cast<int64_t>(want.size()))
          << "step " << step << " range [" << show(k) << ", " << show(e) << ") at " << at << " cur "
          << cur << " compacted " << compacted << " limit " << o.limit << "\n got " << got_s
          << "\n want " << want_s;
      size_t n = o.limit > 0 ? std::min<size_t>(o.limit, want.size()) : want.size();
      ASSERT_EQ(r->kvs.size(), n);
      for (size_t j = 0; j < n; ++j) {
        const auto& kv = r->kvs[j];
        EXPECT_EQ(kv.key() + "\x01" + kv.value(), want[j].value);
        EXPECT_EQ(kv.mod_revision(), want[j].rev.main);
        EXPECT_EQ(kv.create_revision(), want[j].create);
        EXPECT_EQ(kv.version(), want[j].version);
        EXPECT_EQ(kv.lease(), want[j].lease);
      }
    }
    if (compacted > 1) {
      RangeOptions o;
      o.rev = compacted - 1;
      ASSERT_EQ(store_->Range(kNul, kNul, o).status().message(), kErrCompacted);
    }

    // Now and then: compact, flush, reopen.
    if (rnd.Bernoulli(0.05) && cur > compacted) {
      int64_t c = compacted + 1 + static_cast<int64_t>(rnd.Uniform(cur - compacted));
      ASSERT_TRUE(store_->Compact(c, ++index_, nullptr).ok());
      compacted = c;
      if (rnd.Bernoulli(0.5)) {
        store_->WaitForCompactor();
        for (const auto& k : keys) {
          ASSERT_EQ(store_->RawVersionsForTest(k), model.Kept(k, c)) << "key " << k;
        }
      }
    }
    if (rnd.Bernoulli(0.03)) {
      ASSERT_TRUE(store_->FlushForTest().ok());
    }
    if (rnd.Bernoulli(0.02)) {
      Reopen(io);
      ASSERT_EQ(store_->CurrentRevision(), cur);
      ASSERT_EQ(store_->CompactedRevision(), compacted);
      ASSERT_EQ(store_->ConsistentIndex(), index_);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, ModelTest, ::testing::Range<uint64_t>(1, 17));

}  // namespace
}  // namespace etcdpp::mvcc::testing
