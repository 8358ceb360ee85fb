// HashKV (etcd's consistency hash; its values are also checked against real
// etcd by tests/e2e/scenarios/maintenance_hashkv.txt) and app metadata.
#include "mvcc/hash_kv.h"

#include "absl/synchronization/notification.h"
#include "test_util.h"

namespace etcdpp::mvcc::testing {
namespace {

using HashMetaTest = StoreFixture;

TEST_F(HashMetaTest, HashIsAFunctionOfHistory) {
  auto empty = Unwrap(store_->HashKV(0));
  EXPECT_EQ(empty.revision, 1);
  EXPECT_EQ(empty.compact_revision, -1) << "etcd reports -1 before any compaction";
  Put("a", "1");
  Put("b", "2");
  auto h3 = Unwrap(store_->HashKV(0));
  EXPECT_EQ(h3.revision, 3);
  EXPECT_NE(h3.hash, empty.hash);
  Put("a", "3");
  auto h3again = Unwrap(store_->HashKV(3));
  EXPECT_EQ(h3again.hash, h3.hash) << "hashing at an old revision ignores later history";
  EXPECT_EQ(h3again.revision, 3);

  // Same history in another store, same hash; one value different, different.
  TempDir other_dir;
  Options o;
  o.path = other_dir.path() + "/db";
  auto other = Unwrap(RocksStore::Open(o, InternalOptions{}));
  for (auto [k, v] : {std::pair{"a", "1"}, {"b", "2"}, {"a", "3"}}) {
    auto txn = other->BeginWrite();
    Unwrap(txn->Put(k, v, 0));
    Unwrap(txn->Commit(1));
  }
  EXPECT_EQ(Unwrap(other->HashKV(0)).hash, Unwrap(store_->HashKV(0)).hash);
  auto txn = other->BeginWrite();
  Unwrap(txn->Put("b", "changed", 0));
  Unwrap(txn->Commit(2));
  EXPECT_NE(Unwrap(other->HashKV(0)).hash, Unwrap(store_->HashKV(0)).hash);
}

TEST_F(HashMetaTest, HashErrorsAndCompaction) {
  Put("a", "1");
  Put("a", "2");
  Delete("a");
  Put("b", "1");  // rev 5
  EXPECT_EQ(store_->HashKV(6).status().message(), kErrFutureRev);
  absl::Notification done;
  ASSERT_TRUE(store_->Compact(4, ++index_, [&] { done.Notify(); }).ok());
  done.WaitForNotification();
  EXPECT_EQ(store_->HashKV(4).status().message(), kErrCompacted) << "rev <= compacted, as etcd";
  auto h = Unwrap(store_->HashKV(5));
  EXPECT_EQ(h.compact_revision, 4);
  Reopen();
  EXPECT_EQ(Unwrap(store_->HashKV(5)).hash, h.hash) << "stable across a restart";
}

TEST_F(HashMetaTest, MetaRoundTripsAndPersists) {
  EXPECT_FALSE(Unwrap(store_->GetMeta("conf_state")).has_value());
  auto txn = store_->BeginWrite();
  txn->SetMeta("conf_state", "voters=1");
  Unwrap(txn->Commit(7));
  EXPECT_EQ(*Unwrap(store_->GetMeta("conf_state")), "voters=1");
  // App names never collide with the store's own meta keys.
  auto clash = store_->BeginWrite();
  clash->SetMeta("consistent_index", "garbage");
  Unwrap(clash->Commit(8));
  Reopen();
  EXPECT_EQ(store_->ConsistentIndex(), 8u);
  EXPECT_EQ(*Unwrap(store_->GetMeta("conf_state")), "voters=1");
  EXPECT_EQ(*Unwrap(store_->GetMeta("consistent_index")), "garbage");
}

TEST_F(HashMetaTest, LeasesAndTheirKeysPersist) {
  Put("k1", "v", 5);
  Put("k2", "v", 5);
  Put("k3", "v", 6);
  auto txn = store_->BeginWrite();
  txn->PutLease(5, 10, 0);
  txn->PutLease(6, 20, 3);
  Unwrap(txn->Commit(++index_));
  auto leases = Unwrap(store_->LoadLeases());
  ASSERT_EQ(leases.size(), 2u);
  EXPECT_EQ(leases[0].id, 5);
  EXPECT_EQ(leases[0].ttl, 10);
  EXPECT_EQ(leases[0].keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_EQ(leases[1].remaining_ttl, 3);
  EXPECT_EQ(leases[1].keys, (std::vector<std::string>{"k3"}));

  Put("k1", "v2", 6);  // moves to lease 6
  Put("k2", "v2", 0);  // leaves its lease
  Delete("k3");        // gone with its attachment
  Reopen();
  leases = Unwrap(store_->LoadLeases());
  ASSERT_EQ(leases.size(), 2u);
  EXPECT_TRUE(leases[0].keys.empty());
  EXPECT_EQ(leases[1].keys, (std::vector<std::string>{"k1"}));

  // A revoke: the record and the attached keys go in one batch.
  auto revoke = store_->BeginWrite();
  Unwrap(revoke->DeleteRange("k1", ""));
  revoke->DeleteLease(6);
  Unwrap(revoke->Commit(++index_));
  leases = Unwrap(store_->LoadLeases());
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].id, 5);
  // A txn that is dropped writes nothing.
  {
    auto dropped = store_->BeginWrite();
    dropped->PutLease(9, 9, 0);
  }
  EXPECT_EQ(Unwrap(store_->LoadLeases()).size(), 1u);
}

}  // namespace
}  // namespace etcdpp::mvcc::testing
