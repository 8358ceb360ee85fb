// The etcd revision model, case by case (etcd 3.4 mvcc/kvstore*.go is the
// reference for every expectation here).
#include <atomic>
#include <future>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mvcc/rocks_store.h"
#include "test_util.h"

namespace etcdpp::mvcc::testing {
namespace {

using ::testing::ElementsAre;

class StoreTest : public StoreFixture {};

TEST_F(StoreTest, EmptyStoreIsAtRevisionOne) {
  EXPECT_EQ(store_->CurrentRevision(), 1);
  EXPECT_EQ(store_->CompactedRevision(), 0);
  EXPECT_EQ(store_->ConsistentIndex(), 0u);
  RangeResult r = Get("a", kNul);
  EXPECT_EQ(r.rev, 1);
  EXPECT_EQ(r.count, 0);
  EXPECT_TRUE(r.kvs.empty());
}

TEST_F(StoreTest, FirstWriteIsRevisionTwo) {
  EXPECT_EQ(Put("a", "1"), 2);
  EXPECT_EQ(store_->CurrentRevision(), 2);
  EXPECT_EQ(Put("b", "1"), 3);
  RangeResult r = Get("a");
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.rev, 3);
  EXPECT_EQ(r.kvs[0].create_revision(), 2);
  EXPECT_EQ(r.kvs[0].mod_revision(), 2);
  EXPECT_EQ(r.kvs[0].version(), 1);
  EXPECT_EQ(r.kvs[0].value(), "1");
}

TEST_F(StoreTest, OneMainRevisionPerTxnWithSubRevisions) {
  auto txn = store_->BeginWrite();
  EXPECT_EQ(txn->Revision(), 2);
  EXPECT_FALSE(txn->Changed());
  Unwrap(txn->Put("a", "1", 0));
  Unwrap(txn->Put("b", "1", 0));
  Unwrap(txn->Put("a", "2", 0));  // same key twice: sub 0 then sub 2
  EXPECT_TRUE(txn->Changed());
  auto events = Unwrap(txn->Commit(7));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(store_->CurrentRevision(), 2);
  EXPECT_EQ(store_->ConsistentIndex(), 7u);
  EXPECT_THAT(store_->RawVersionsForTest("a"), ElementsAre(Revision{2, 2}, Revision{2, 0}));
  EXPECT_THAT(store_->RawVersionsForTest("b"), ElementsAre(Revision{2, 1}));
  EXPECT_EQ(store_->RawRevEntriesForTest(), 3);
  RangeResult r = Get("a");
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].value(), "2");
  EXPECT_EQ(r.kvs[0].version(), 2);  // etcd counts both puts
  EXPECT_EQ(r.kvs[0].create_revision(), 2);
  EXPECT_EQ(Put("c", "1"), 3);
}

TEST_F(StoreTest, VersionsAcrossDeleteAndRecreate) {
  Put("k", "v1");                     // 2
  Put("k", "v2");                     // 3
  ASSERT_EQ(Delete("k").size(), 1u);  // 4
  EXPECT_EQ(store_->CurrentRevision(), 4);
  EXPECT_EQ(Get("k").count, 0);
  Put("k", "v3");  // 5: new generation
  RangeResult r = Get("k");
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].create_revision(), 5);
  EXPECT_EQ(r.kvs[0].mod_revision(), 5);
  EXPECT_EQ(r.kvs[0].version(), 1);
  Put("k", "v4");  // 6
  r = Get("k");
  EXPECT_EQ(r.kvs[0].create_revision(), 5);
  EXPECT_EQ(r.kvs[0].version(), 2);
  // History.
  r = GetAt("k", "", 3);
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].value(), "v2");
  EXPECT_EQ(r.kvs[0].version(), 2);
  EXPECT_EQ(r.kvs[0].create_revision(), 2);
  EXPECT_EQ(r.kvs[0].mod_revision(), 3);
  EXPECT_EQ(r.rev, 6);  // etcd: the header revision is the current one
  EXPECT_EQ(GetAt("k", "", 4).count, 0);
}

TEST_F(StoreTest, RangeAtPastRevisions) {
  Put("a", "a2");  // 2
  Put("b", "b3");  // 3
  Put("a", "a4");  // 4
  Delete("b");     // 5
  Put("c", "c6");  // 6
  EXPECT_THAT(Values(GetAt("a", kNul, 1)), ElementsAre());
  EXPECT_THAT(Values(GetAt("a", kNul, 2)), ElementsAre("a2"));
  EXPECT_THAT(Values(GetAt("a", kNul, 3)), ElementsAre("a2", "b3"));
  EXPECT_THAT(Values(GetAt("a", kNul, 4)), ElementsAre("a4", "b3"));
  EXPECT_THAT(Values(GetAt("a", kNul, 5)), ElementsAre("a4"));
  EXPECT_THAT(Values(GetAt("a", kNul, 6)), ElementsAre("a4", "c6"));
  EXPECT_THAT(Values(GetAt("a", kNul, 0)), ElementsAre("a4", "c6"));
  RangeOptions o;
  o.rev = 7;
  auto s = store_->Range("a", kNul, o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.status().message(), kErrFutureRev);
}

TEST_F(StoreTest, LimitCountCountOnlyKeysOnly) {
  for (const char* k : {"a", "b", "c", "d", "e"}) Put(k, std::string("v") + k);
  Delete("c");
  RangeOptions o;
  o.limit = 2;
  RangeResult r = Get("a", kNul, o);
  EXPECT_THAT(Keys(r), ElementsAre("a", "b"));
  EXPECT_EQ(r.count, 4);
  o = RangeOptions{};
  o.count_only = true;
  r = Get("a", kNul, o);
  EXPECT_TRUE(r.kvs.empty());
  EXPECT_EQ(r.count, 4);
  o = RangeOptions{};
  o.keys_only = true;
  r = Get("b", "e", o);
  EXPECT_THAT(Keys(r), ElementsAre("b", "d"));
  EXPECT_THAT(Values(r), ElementsAre("", ""));
  EXPECT_EQ(r.kvs[0].mod_revision(), 3);
  EXPECT_EQ(r.kvs[0].version(), 1);
  o = RangeOptions{};
  o.limit = 10;
  EXPECT_EQ(Get("a", kNul, o).kvs.size(), 4u);
  o.limit = 2;
  o.rev = 4;  // before the delete of c
  r = Get("b", kNul, o);
  EXPECT_THAT(Keys(r), ElementsAre("b", "c"));
  EXPECT_EQ(r.count, 2);  // d and e come after rev 4
}

TEST_F(StoreTest, RangeBounds) {
  for (const char* k : {"a", "ab", "abc", "b", "c"}) Put(k, "v");
  EXPECT_THAT(Keys(Get("ab")), ElementsAre("ab"));               // single
  EXPECT_THAT(Keys(Get("zz")), ElementsAre());                   // single, absent
  EXPECT_THAT(Keys(Get("ab", "ac")), ElementsAre("ab", "abc"));  // prefix-like
  EXPECT_THAT(Keys(Get("a", "b")), ElementsAre("a", "ab", "abc"));
  EXPECT_THAT(Keys(Get("ab", kNul)), ElementsAre("ab", "abc", "b", "c"));       // from key
  EXPECT_THAT(Keys(Get(kNul, kNul)), ElementsAre("a", "ab", "abc", "b", "c"));  // all
  EXPECT_THAT(Keys(Get("b", "b")), ElementsAre());                              // end == key
  EXPECT_THAT(Keys(Get("c", "a")), ElementsAre());                              // end < key
  EXPECT_THAT(Keys(Get("abc", "abc\x01")), ElementsAre("abc"));
  EXPECT_EQ(Get("c", "a").count, 0);
}

TEST_F(StoreTest, KeyOrderWithPrefixesAndExtremeBytes) {
  const std::vector<std::string> keys = {std::string("\0", 1),
                                         std::string("\0\0", 2),
                                         "a",
                                         std::string("a\0", 2),
                                         std::string("a\0\0", 3),
                                         "a\x01",
                                         "a\xff",
                                         "a\xff\xff",
                                         "ab",
                                         "b",
                                         "\xff",
                                         "\xff\xff",
                                         std::string("\xff\0", 2)};
  // Several versions each, written in a scrambled order.
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < keys.size(); ++i) {
      const std::string& k = keys[(i * 7 + round) % keys.size()];
      Put(k, k + std::to_string(round));
    }
  }
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  auto check = [&] {
    EXPECT_EQ(Keys(Get(kNul, kNul)), sorted);
    EXPECT_EQ(Keys(Get("a", "b")),
              (std::vector<std::string>{"a", std::string("a\0", 2), std::string("a\0\0", 3),
                                        "a\x01", "ab", "a\xff", "a\xff\xff"}));
    EXPECT_EQ(Keys(Get(std::string("a\0", 2), "a\x01")),
              (std::vector<std::string>{std::string("a\0", 2), std::string("a\0\0", 3)}));
    EXPECT_EQ(Keys(Get("\xff", kNul)),
              (std::vector<std::string>{"\xff", std::string("\xff\0", 2), "\xff\xff"}));
    for (const auto& k : keys) {
      RangeResult r = Get(k);
      ASSERT_EQ(r.kvs.size(), 1u) << k;
      EXPECT_EQ(r.kvs[0].key(), k);
      EXPECT_EQ(r.kvs[0].value(), k + "2");
      EXPECT_EQ(r.kvs[0].version(), 3);
    }
    // A past revision: after round 0 only.
    RangeResult r = GetAt(kNul, kNul, 1 + static_cast<int64_t>(keys.size()));
    EXPECT_EQ(Keys(r), sorted);
    for (const auto& kv : r.kvs) EXPECT_EQ(kv.value(), kv.key() + "0");
  };
  check();
  ASSERT_TRUE(store_->FlushForTest().ok());  // same answers from SST files
  check();
  Reopen();
  check();
}

TEST_F(StoreTest, TombstonesAreHidden) {
  Put("a", "1");
  Put("b", "1");
  Put("c", "1");
  auto deleted = Delete("a", "c");
  EXPECT_THAT(Keys(RangeResult{deleted, 0, 0}), ElementsAre("a", "b"));
  EXPECT_EQ(deleted[0].value(), "1");
  EXPECT_EQ(store_->CurrentRevision(), 5);
  RangeResult r = Get(kNul, kNul);
  EXPECT_THAT(Keys(r), ElementsAre("c"));
  EXPECT_EQ(r.count, 1);
  EXPECT_EQ(Get("a").count, 0);
  // Deleting again matches nothing and creates no revision.
  EXPECT_TRUE(Delete("a", "c").empty());
  EXPECT_EQ(store_->CurrentRevision(), 5);
}

TEST_F(StoreTest, TxnSeesItsOwnWrites) {
  Put("a", "old");  // 2
  Put("b", "old");  // 3
  auto txn = store_->BeginWrite();
  RangeResult r = Unwrap(txn->Range("a", "", RangeOptions{}));
  EXPECT_EQ(r.rev, 3);
  EXPECT_EQ(r.kvs[0].value(), "old");
  auto prev = Unwrap(txn->Put("a", "new", 5));
  ASSERT_TRUE(prev.has_value());
  EXPECT_EQ(prev->value(), "old");
  r = Unwrap(txn->Range("a", kNul, RangeOptions{}));
  EXPECT_EQ(r.rev, 4);  // etcd: reads after a change are at rev+1
  ASSERT_EQ(r.kvs.size(), 2u);
  EXPECT_EQ(r.kvs[0].value(), "new");
  EXPECT_EQ(r.kvs[0].mod_revision(), 4);
  EXPECT_EQ(r.kvs[0].version(), 2);
  EXPECT_EQ(r.kvs[0].lease(), 5);
  // Reads at an explicit older revision still see history.
  RangeOptions o;
  o.rev = 3;
  EXPECT_EQ(Unwrap(txn->Range("a", "", o)).kvs[0].value(), "old");
  o.rev = 5;
  EXPECT_FALSE(txn->Range("a", "", o).ok());
  // Delete what was just written, then re-create it.
  auto del = Unwrap(txn->DeleteRange("a", "c"));
  ASSERT_EQ(del.size(), 2u);
  EXPECT_EQ(del[0].value(), "new");
  EXPECT_EQ(Unwrap(txn->Range("a", "c", RangeOptions{})).count, 0);
  EXPECT_FALSE(Unwrap(txn->Put("b", "again", 0)).has_value());
  r = Unwrap(txn->Range("b", "", RangeOptions{}));
  EXPECT_EQ(r.kvs[0].version(), 1);
  EXPECT_EQ(r.kvs[0].create_revision(), 4);
  // Outsiders see nothing of it until Commit.
  EXPECT_EQ(Get("a").kvs[0].value(), "old");
  EXPECT_EQ(store_->CurrentRevision(), 3);
  Unwrap(txn->Commit(10));
  txn.reset();
  EXPECT_EQ(store_->CurrentRevision(), 4);
  EXPECT_EQ(Get("a").count, 0);
  EXPECT_EQ(Get("b").kvs[0].value(), "again");
  EXPECT_EQ(Get("b").kvs[0].mod_revision(), 4);
  EXPECT_THAT(store_->RawVersionsForTest("a"),
              ElementsAre(Revision{4, 1}, Revision{4, 0}, Revision{2, 0}));
}

TEST_F(StoreTest, ReadOnlyTxnAndEmptyDeleteCreateNoRevision) {
  Put("a", "1");
  {
    auto txn = store_->BeginWrite();
    Unwrap(txn->Range("a", "", RangeOptions{}));
    EXPECT_TRUE(Unwrap(txn->DeleteRange("zz", "")).empty());
    EXPECT_TRUE(Unwrap(txn->DeleteRange("x", "y")).empty());
    EXPECT_FALSE(txn->Changed());
    auto events = Unwrap(txn->Commit(42));
    EXPECT_TRUE(events.empty());
  }
  EXPECT_EQ(store_->CurrentRevision(), 2);
  EXPECT_EQ(store_->ConsistentIndex(), 42u);  // still recorded
  EXPECT_EQ(Put("b", "1"), 3);
  {
    auto txn = store_->BeginWrite();  // abandoned without Commit: no effect
    Unwrap(txn->Put("c", "1", 0));
  }
  EXPECT_EQ(store_->CurrentRevision(), 3);
  EXPECT_EQ(Get("c").count, 0);
  EXPECT_EQ(Put("c", "1"), 4);
}

TEST_F(StoreTest, CommitReturnsEvents) {
  Put("a", "1");  // 2
  auto txn = store_->BeginWrite();
  Unwrap(txn->Put("a", "2", 9));
  Unwrap(txn->Put("n", "new", 0));
  Unwrap(txn->DeleteRange("a", ""));
  auto events = Unwrap(txn->Commit(5));
  ASSERT_EQ(events.size(), 3u);
  const auto& e0 = events[0];
  EXPECT_EQ(e0.type(), mvccpb::Event::PUT);
  EXPECT_EQ(e0.kv().key(), "a");
  EXPECT_EQ(e0.kv().value(), "2");
  EXPECT_EQ(e0.kv().create_revision(), 2);
  EXPECT_EQ(e0.kv().mod_revision(), 3);
  EXPECT_EQ(e0.kv().version(), 2);
  EXPECT_EQ(e0.kv().lease(), 9);
  ASSERT_TRUE(e0.has_prev_kv());
  EXPECT_EQ(e0.prev_kv().value(), "1");
  EXPECT_EQ(e0.prev_kv().mod_revision(), 2);
  const auto& e1 = events[1];
  EXPECT_EQ(e1.type(), mvccpb::Event::PUT);
  EXPECT_EQ(e1.kv().create_revision(), 3);
  EXPECT_EQ(e1.kv().version(), 1);
  EXPECT_FALSE(e1.has_prev_kv());
  const auto& e2 = events[2];
  EXPECT_EQ(e2.type(), mvccpb::Event::DELETE);
  EXPECT_EQ(e2.kv().key(), "a");
  EXPECT_EQ(e2.kv().mod_revision(), 3);
  EXPECT_EQ(e2.kv().create_revision(), 0);
  EXPECT_EQ(e2.kv().version(), 0);
  EXPECT_EQ(e2.kv().value(), "");
  ASSERT_TRUE(e2.has_prev_kv());
  EXPECT_EQ(e2.prev_kv().value(), "2");
  EXPECT_EQ(e2.prev_kv().mod_revision(), 3);
}

TEST_F(StoreTest, CompactionErrorsAndBoundaries) {
  for (int i = 0; i < 5; ++i) Put("k", std::to_string(i));  // revs 2..6
  EXPECT_EQ(store_->Compact(7, 1, nullptr).message(), kErrFutureRev);
  EXPECT_EQ(store_->Compact(0, 1, nullptr).message(), kErrCompacted);
  ASSERT_TRUE(store_->Compact(4, 1, nullptr).ok());
  EXPECT_EQ(store_->CompactedRevision(), 4);
  auto again = store_->Compact(4, 1, nullptr);
  EXPECT_EQ(again.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(again.message(), kErrCompacted);
  EXPECT_EQ(store_->Compact(3, 1, nullptr).message(), kErrCompacted);
  // Reading at the compacted revision works; below fails at once.
  EXPECT_EQ(GetAt("k", "", 4).kvs[0].value(), "2");
  RangeOptions o;
  o.rev = 3;
  auto r = store_->Range("k", "", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(r.status().message(), kErrCompacted);
  {
    auto txn = store_->BeginWrite();
    EXPECT_EQ(txn->Range("k", "", o).status().message(), kErrCompacted);
  }
  // Compact at the current revision.
  std::promise<void> done;
  ASSERT_TRUE(store_->Compact(6, 2, [&] { done.set_value(); }).ok());
  done.get_future().wait();
  EXPECT_EQ(store_->FinishedCompactionRevision(), 6);
  EXPECT_EQ(GetAt("k", "", 6).kvs[0].value(), "4");
  EXPECT_EQ(Get("k").kvs[0].version(), 5);
  EXPECT_THAT(store_->RawVersionsForTest("k"), ElementsAre(Revision{6, 0}));
  EXPECT_EQ(store_->ConsistentIndex(), 2u);
  EXPECT_EQ(store_->CurrentRevision(), 6);  // compaction makes no revision
  EXPECT_EQ(Put("k", "x"), 7);
}

TEST_F(StoreTest, CompactionDropsShadowedVersionsAndTombstones) {
  Put("live", "1");       // 2
  Put("live", "2");       // 3
  Put("dead", "1");       // 4
  Delete("dead");         // 5
  Put("reborn", "1");     // 6
  Delete("reborn");       // 7
  Put("untouched", "1");  // 8
  Put("live", "3");       // 9  (after C)
  Put("reborn", "2");     // 10 (re-created after C)
  Put("late", "1");       // 11
  const int64_t c = 8;
  ASSERT_TRUE(store_->Compact(c, 1, nullptr).ok());
  store_->WaitForCompactor();
  EXPECT_EQ(store_->FinishedCompactionRevision(), c);
  EXPECT_THAT(store_->RawVersionsForTest("live"), ElementsAre(Revision{9, 0}, Revision{3, 0}));
  EXPECT_THAT(store_->RawVersionsForTest("dead"), ElementsAre());
  EXPECT_THAT(store_->RawVersionsForTest("reborn"), ElementsAre(Revision{10, 0}));
  EXPECT_THAT(store_->RawVersionsForTest("untouched"), ElementsAre(Revision{8, 0}));
  EXPECT_THAT(store_->RawVersionsForTest("late"), ElementsAre(Revision{11, 0}));
  EXPECT_EQ(store_->RawRevEntriesForTest(), 4);  // revs 8 (kept for watch at C), 9, 10, 11
  // Reads at C and later are unchanged.
  EXPECT_THAT(Keys(GetAt(kNul, kNul, c)), ElementsAre("live", "untouched"));
  EXPECT_EQ(GetAt("live", "", c).kvs[0].value(), "2");
  EXPECT_THAT(Keys(GetAt(kNul, kNul, 9)), ElementsAre("live", "untouched"));
  EXPECT_THAT(Keys(Get(kNul, kNul)), ElementsAre("late", "live", "reborn", "untouched"));
  RangeResult r = Get("reborn");
  EXPECT_EQ(r.kvs[0].create_revision(), 10);
  EXPECT_EQ(r.kvs[0].version(), 1);
  r = Get("live");
  EXPECT_EQ(r.kvs[0].create_revision(), 2);
  EXPECT_EQ(r.kvs[0].version(), 3);
  // A second compaction removes the version kept by the first.
  Put("untouched", "2");  // 12
  ASSERT_TRUE(store_->Compact(12, 2, nullptr).ok());
  store_->WaitForCompactor();
  EXPECT_THAT(store_->RawVersionsForTest("live"), ElementsAre(Revision{9, 0}));
  EXPECT_THAT(store_->RawVersionsForTest("untouched"), ElementsAre(Revision{12, 0}));
  EXPECT_EQ(store_->RawRevEntriesForTest(), 1);  // rev 12
  EXPECT_EQ(Get("untouched").kvs[0].version(), 2);
}

TEST_F(StoreTest, CompactTombstoneAtExactlyC) {
  Put("a", "1");  // 2
  Delete("a");    // 3
  ASSERT_TRUE(store_->Compact(3, 1, nullptr).ok());
  store_->WaitForCompactor();
  EXPECT_THAT(store_->RawVersionsForTest("a"), ElementsAre());
  EXPECT_EQ(GetAt("a", "", 3).count, 0);
  EXPECT_EQ(Put("a", "2"), 4);
  EXPECT_EQ(Get("a").kvs[0].create_revision(), 4);
}

TEST_F(StoreTest, PersistenceAcrossReopen) {
  Put("a", "1");
  Put("b", "2");
  Put("a", "3");
  Delete("b");
  ASSERT_TRUE(store_->Compact(3, 100, nullptr).ok());
  {
    auto txn = store_->BeginWrite();
    Unwrap(txn->Commit(101));  // a no-op entry still moves the index
  }
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  EXPECT_EQ(store_->CurrentRevision(), 5);
  EXPECT_EQ(store_->CompactedRevision(), 3);
  EXPECT_EQ(store_->ConsistentIndex(), 101u);
  EXPECT_EQ(Get("a").kvs[0].value(), "3");
  EXPECT_EQ(Get("a").kvs[0].version(), 2);
  EXPECT_EQ(Get("b").count, 0);
  EXPECT_EQ(GetAt("b", "", 3).kvs[0].value(), "2");
  EXPECT_FALSE(store_->Range("a", "", RangeOptions{.rev = 2}).ok());
  EXPECT_EQ(Put("c", "1"), 6);
}

TEST_F(StoreTest, CurrentRevisionSurvivesCompactingEverything) {
  Put("a", "1");  // 2
  Delete("a");    // 3
  ASSERT_TRUE(store_->Compact(3, 1, nullptr).ok());
  store_->WaitForCompactor();
  EXPECT_THAT(store_->RawVersionsForTest("a"), ElementsAre());
  Reopen();
  EXPECT_EQ(store_->CurrentRevision(), 3);
  EXPECT_EQ(Put("a", "2"), 4);
}

TEST_F(StoreTest, InterruptedCompactionResumesOnOpen) {
  for (int i = 0; i < 20; ++i) Put("k" + std::to_string(i % 5), std::to_string(i));  // 2..21
  Delete("k0");                                                                      // 22
  InternalOptions crashy;
  crashy.compaction_batch_revs = 3;
  crashy.compaction_crash_after_batches = 2;
  Reopen(crashy);
  ASSERT_TRUE(store_->Compact(22, 9, nullptr).ok());
  store_->WaitForCompactor();  // "crashed" after 2 of 7 batches
  EXPECT_EQ(store_->FinishedCompactionRevision(), 0);
  EXPECT_EQ(store_->RawRevEntriesForTest(), 21 - 6);
  EXPECT_EQ(GetAt(kNul, kNul, 22).count, 4);
  InternalOptions small;
  small.compaction_batch_revs = 3;
  small.compaction_max_batch_deletes = 2;
  Reopen(small);
  EXPECT_EQ(store_->CompactedRevision(), 22);
  EXPECT_EQ(store_->ConsistentIndex(), 9u);
  store_->WaitForCompactor();
  EXPECT_EQ(store_->FinishedCompactionRevision(), 22);
  EXPECT_EQ(store_->RawRevEntriesForTest(), 1);  // rev 22 stays until the next compaction
  EXPECT_THAT(store_->RawVersionsForTest("k0"), ElementsAre());
  for (int i = 1; i < 5; ++i) {
    EXPECT_THAT(store_->RawVersionsForTest("k" + std::to_string(i)),
                ElementsAre(Revision{17 + i, 0}))
        << i;
    EXPECT_EQ(Get("k" + std::to_string(i)).kvs[0].version(), 4);
  }
  Reopen();
  EXPECT_EQ(store_->FinishedCompactionRevision(), 22);
}

TEST_F(StoreTest, HotKeyCompactionSpillsBatches) {
  InternalOptions io;
  io.compaction_batch_revs = 1000;
  io.compaction_max_batch_deletes = 7;
  Reopen(io);
  for (int i = 0; i < 100; ++i) Put("hot", std::to_string(i));  // 2..101
  std::promise<void> done;
  ASSERT_TRUE(store_->Compact(101, 1, [&] { done.set_value(); }).ok());
  done.get_future().wait();
  EXPECT_THAT(store_->RawVersionsForTest("hot"), ElementsAre(Revision{101, 0}));
  EXPECT_EQ(Get("hot").kvs[0].version(), 100);
}

TEST_F(StoreTest, OpenCreatesMissingDirectories) {
  Options o;
  o.path = dir_.path() + "/x/y/z";
  auto s = Store::Open(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->CurrentRevision(), 1);
  EXPECT_GT((*s)->SizeBytes(), -1);
}

TEST_F(StoreTest, SecondOpenOfSameDirFails) {
  Options o;
  o.path = dir_.path() + "/db";
  EXPECT_FALSE(Store::Open(o).ok());  // RocksDB's LOCK file
}

TEST_F(StoreTest, ReadEventsReplaysHistory) {
  Put("a", "1");  // 2
  {
    auto txn = store_->BeginWrite();  // 3
    Unwrap(txn->Put("b", "1", 0));
    Unwrap(txn->Put("c", "1", 7));
    Unwrap(txn->Commit(++index_));
  }
  Delete("a");    // 4
  Put("b", "2");  // 5
  auto batch = Unwrap(store_->ReadEvents(1, 0, 0, true));
  EXPECT_EQ(batch.next_rev, 6);
  ASSERT_EQ(batch.events.size(), 5u);
  std::vector<std::string> got;
  for (const auto& ev : batch.events) {
    got.push_back(std::string(ev.type() == mvccpb::Event::PUT ? "put " : "del ") + ev.kv().key() +
                  "@" + std::to_string(ev.kv().mod_revision()) + " prev=" +
                  (ev.has_prev_kv()
                       ? ev.prev_kv().value() + "@" + std::to_string(ev.prev_kv().mod_revision())
                       : "-"));
  }
  EXPECT_THAT(got, ElementsAre("put a@2 prev=-", "put b@3 prev=-", "put c@3 prev=-",
                               "del a@4 prev=1@2", "put b@5 prev=1@3"));
  EXPECT_EQ(batch.events[2].kv().lease(), 7);
  EXPECT_EQ(batch.events[2].kv().create_revision(), 3);
  EXPECT_EQ(batch.events[4].kv().version(), 2);
  EXPECT_EQ(batch.events[3].kv().value(), "");
  // The same events Commit returned, without prev_kv unless asked.
  EXPECT_FALSE(Unwrap(store_->ReadEvents(4, 4, 0, false)).events[0].has_prev_kv());
  // Whole revisions, resumable.
  batch = Unwrap(store_->ReadEvents(2, 0, 2, false));
  EXPECT_EQ(batch.events.size(), 3u);
  EXPECT_EQ(batch.next_rev, 4);
  batch = Unwrap(store_->ReadEvents(batch.next_rev, 4, 0, false));
  EXPECT_EQ(batch.events.size(), 1u);
  EXPECT_EQ(batch.next_rev, 5);
  EXPECT_TRUE(Unwrap(store_->ReadEvents(6, 0, 0, false)).events.empty());
  // After compaction at 3: from 2 is compacted; from 3 replays what survived.
  ASSERT_TRUE(store_->Compact(3, ++index_, nullptr).ok());
  store_->WaitForCompactor();
  EXPECT_EQ(store_->ReadEvents(2, 0, 0, false).status().message(), kErrCompacted);
  batch = Unwrap(store_->ReadEvents(3, 0, 0, true));
  ASSERT_EQ(batch.events.size(), 4u);
  EXPECT_EQ(batch.events[0].kv().key(), "b");
  EXPECT_FALSE(batch.events[0].has_prev_kv());  // rev 2 is compacted
  EXPECT_EQ(batch.events[2].type(), mvccpb::Event::DELETE);
  EXPECT_TRUE(batch.events[2].has_prev_kv());  // read at 3
  // A delete at exactly the compacted revision is gone, as in etcd.
  Put("x", "1");  // 6
  Delete("x");    // 7
  ASSERT_TRUE(store_->Compact(7, ++index_, nullptr).ok());
  store_->WaitForCompactor();
  batch = Unwrap(store_->ReadEvents(7, 0, 0, false));
  EXPECT_TRUE(batch.events.empty());
  EXPECT_EQ(batch.next_rev, 8);
  EXPECT_EQ(store_->RawRevEntriesForTest(), 1);
}

// Readers on other threads, during writes and a background compaction, never
// see half of a txn: every txn writes all ten keys with the same value.
TEST_F(StoreTest, ConcurrentReadersNeverSeeHalfATxn) {
  constexpr int kKeys = 10;
  constexpr int kTxns = 300;
  auto write_all = [&](int64_t i) {
    auto txn = store_->BeginWrite();
    for (int k = 0; k < kKeys; ++k)
      Unwrap(txn->Put("key" + std::to_string(k), std::to_string(i), 0));
    Unwrap(txn->Commit(++index_));
  };
  write_all(0);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> checks{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto r = store_->Range("key", "kez", RangeOptions{});
        if (!r.ok() || r->count != kKeys || r->kvs.size() != kKeys) {
          ++failures;
          continue;
        }
        for (const auto& kv : r->kvs) {
          if (kv.value() != r->kvs[0].value() || kv.mod_revision() != r->kvs[0].mod_revision()) {
            ++failures;
          }
        }
        if (r->kvs[0].mod_revision() > r->rev) ++failures;
        ++checks;
      }
    });
  }
  for (int i = 1; i <= kTxns; ++i) {
    write_all(i);
    if (i % 50 == 0) {
      ASSERT_TRUE(store_->Compact(store_->CurrentRevision() - 1, index_, nullptr).ok());
    }
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(checks.load(), 0);
  store_->WaitForCompactor();
  EXPECT_EQ(Get("key0").kvs[0].value(), std::to_string(kTxns));
}

// Reads at exactly the compacted revision, and at the newest one, stay
// unchanged while the background compaction deletes history in small,
// spilled batches.
TEST_F(StoreTest, ReadsAtCompactedRevisionDuringCompaction) {
  InternalOptions io;
  io.compaction_batch_revs = 4;
  io.compaction_max_batch_deletes = 3;
  Reopen(io);
  for (int round = 0; round < 6; ++round) {
    for (int k = 0; k < 40; ++k) {
      std::string key = "k" + std::to_string(k);
      if ((k + round) % 5 == 0) {
        Delete(key);
      } else {
        Put(key, std::to_string(round));
      }
    }
  }
  const int64_t c = store_->CurrentRevision() - 10;
  const RangeResult at_c = GetAt(kNul, kNul, c);
  const RangeResult now = Get(kNul, kNul);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, checks{0};
  auto same = [](const RangeResult& a, const RangeResult& b) {
    if (a.count != b.count || a.kvs.size() != b.kvs.size()) return false;
    for (size_t i = 0; i < a.kvs.size(); ++i) {
      if (a.kvs[i].SerializeAsString() != b.kvs[i].SerializeAsString()) return false;
    }
    return true;
  };
  std::thread reader([&] {
    while (!stop.load()) {
      RangeOptions o;
      o.rev = c;
      auto r1 = store_->Range(kNul, kNul, o);
      auto r2 = store_->Range(kNul, kNul, RangeOptions{});
      if (!r1.ok() || !same(*r1, at_c) || !r2.ok() || !same(*r2, now)) ++failures;
      ++checks;
    }
  });
  while (checks.load() == 0) std::this_thread::yield();  // reader is running
  ASSERT_TRUE(store_->Compact(c, ++index_, nullptr).ok());
  store_->WaitForCompactor();
  const int during = checks.load();
  stop.store(true);
  reader.join();
  EXPECT_GE(during, 1);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(checks.load(), 0);
  EXPECT_TRUE(same(GetAt(kNul, kNul, c), at_c));
  EXPECT_EQ(store_->FinishedCompactionRevision(), c);
}

}  // namespace
}  // namespace etcdpp::mvcc::testing
