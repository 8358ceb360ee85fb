#include "lease/lessor.h"

#include <gtest/gtest.h>

#include <map>

namespace etcdpp::lease {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class LessorTest : public ::testing::Test {
 protected:
  Options Opts() {
    Options o;
    o.clock = &clock_;
    return o;
  }
  FakeClock clock_;
};

TEST_F(LessorTest, GrantRules) {
  Lessor l(Opts());
  auto r = l.Grant(1, 60);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ttl, 60);
  EXPECT_EQ(l.Grant(1, 60).status().message(), kErrLeaseExists);
  EXPECT_EQ(l.Grant(0, 60).status().message(), kErrLeaseNotFound);
  EXPECT_EQ(l.Grant(2, kMaxLeaseTtl + 1).status().message(), kErrLeaseTtlTooLarge);
  EXPECT_EQ(l.Grant(3, 1)->ttl, 2) << "raised to the minimum TTL";
  EXPECT_EQ(l.Leases(), (std::vector<LeaseId>{1, 3}));
}

TEST_F(LessorTest, OnlyThePrimaryExpiresLeases) {
  Lessor l(Opts());
  ASSERT_TRUE(l.Grant(1, 5).ok());
  clock_.Advance(seconds(100));
  EXPECT_TRUE(l.FindExpired(10).empty()) << "a follower never expires";
  EXPECT_EQ(l.Renew(1).status().message(), kErrNotPrimary);
  l.Promote(seconds(0));
  clock_.Advance(seconds(4));
  EXPECT_TRUE(l.FindExpired(10).empty());
  clock_.Advance(seconds(1));
  EXPECT_EQ(l.FindExpired(10), (std::vector<LeaseId>{1}));
}

TEST_F(LessorTest, RenewPushesExpiryBack) {
  Lessor l(Opts());
  l.Promote(seconds(0));
  ASSERT_TRUE(l.Grant(1, 10).ok());
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(seconds(8));
    auto ttl = l.Renew(1);
    ASSERT_TRUE(ttl.ok());
    EXPECT_EQ(*ttl, 10);
    EXPECT_TRUE(l.FindExpired(10).empty());
  }
  clock_.Advance(seconds(10));
  EXPECT_EQ(l.FindExpired(10), (std::vector<LeaseId>{1}));
  EXPECT_EQ(l.Renew(1).status().message(), kErrLeaseNotFound) << "too late once expired";
  EXPECT_EQ(l.Renew(42).status().message(), kErrLeaseNotFound);
}

TEST_F(LessorTest, ExpiredOrderLimitAndRetry) {
  Options o = Opts();
  o.expired_retry_interval = milliseconds(3000);
  Lessor l(o);
  l.Promote(seconds(0));
  for (LeaseId id = 1; id <= 5; ++id) ASSERT_TRUE(l.Grant(id, 10 + id).ok());
  clock_.Advance(seconds(20));
  EXPECT_EQ(l.FindExpired(2), (std::vector<LeaseId>{1, 2})) << "soonest first, limited";
  EXPECT_EQ(l.FindExpired(10), (std::vector<LeaseId>{3, 4, 5}));
  EXPECT_TRUE(l.FindExpired(10).empty()) << "offered once per retry interval";
  ASSERT_TRUE(l.Revoke(1).ok());
  clock_.Advance(seconds(3));
  EXPECT_EQ(l.FindExpired(10), (std::vector<LeaseId>{2, 3, 4, 5}))
      << "not revoked yet: offered again; revoked: never again";
}

TEST_F(LessorTest, RevokeReturnsSortedKeys) {
  Lessor l(Opts());
  ASSERT_TRUE(l.Grant(7, 30).ok());
  for (const char* k : {"b", "a", "c"}) ASSERT_TRUE(l.Attach(7, k).ok());
  EXPECT_EQ(l.LeaseOf("a"), 7);
  l.Detach(7, "c");
  EXPECT_EQ(l.LeaseOf("c"), kNoLease);
  EXPECT_EQ(l.Attach(8, "x").message(), kErrLeaseNotFound);
  auto ttl = l.GetTimeToLive(7, true);
  ASSERT_TRUE(ttl.has_value());
  EXPECT_EQ(ttl->keys, (std::vector<std::string>{"a", "b"}));
  auto keys = l.Revoke(7);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(*keys, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(l.LeaseOf("a"), kNoLease);
  EXPECT_FALSE(l.Exists(7));
  EXPECT_EQ(l.Revoke(7).status().message(), kErrLeaseNotFound);
}

TEST_F(LessorTest, TimeToLiveFloorsSeconds) {
  Lessor l(Opts());
  l.Promote(seconds(0));
  ASSERT_TRUE(l.Grant(1, 60).ok());
  clock_.Advance(milliseconds(1));
  auto t = l.GetTimeToLive(1, false);
  EXPECT_EQ(t->ttl, 59) << "etcd truncates: just granted 60 shows 59";
  EXPECT_EQ(t->granted_ttl, 60);
  EXPECT_FALSE(l.GetTimeToLive(2, false).has_value());
}

TEST_F(LessorTest, PromoteExtendsAndUsesCheckpointedRemainingTtl) {
  Lessor l(Opts());
  l.Recover({{1, 100, 0}, {2, 100, 30}});
  EXPECT_TRUE(l.FindExpired(10).empty());
  l.Promote(seconds(1));  // extend by an election timeout
  clock_.Advance(seconds(30));
  EXPECT_TRUE(l.FindExpired(10).empty()) << "30 s remaining + 1 s extend";
  clock_.Advance(seconds(1));
  EXPECT_EQ(l.FindExpired(10), (std::vector<LeaseId>{2}));
  ASSERT_TRUE(l.Revoke(2).ok());
  clock_.Advance(seconds(70));
  EXPECT_EQ(l.FindExpired(10), (std::vector<LeaseId>{1}));
}

TEST_F(LessorTest, DemoteStopsExpiry) {
  Lessor l(Opts());
  l.Promote(seconds(0));
  ASSERT_TRUE(l.Grant(1, 5).ok());
  l.Demote();
  clock_.Advance(seconds(60));
  EXPECT_TRUE(l.FindExpired(10).empty());
  l.Promote(seconds(0));
  EXPECT_TRUE(l.FindExpired(10).empty()) << "a new leader gives the full TTL again";
  clock_.Advance(seconds(5));
  EXPECT_EQ(l.FindExpired(10).size(), 1u);
}

// After a failover, thousands of leases due in the same second are spread so
// that no second holds more than 3/4 of the revoke rate.
TEST_F(LessorTest, PromoteSpreadsExpiryPileUp) {
  Options o = Opts();
  o.revoke_rate_per_second = 1000;
  Lessor l(o);
  const int n = 3000;
  std::vector<LeaseRecord> records;
  for (int i = 1; i <= n; ++i) records.push_back({i, 10, 0});
  l.Recover(records);
  l.Promote(seconds(0));
  std::map<int64_t, int> per_second;
  int total = 0;
  for (int s = 0; s < 30; ++s) {
    clock_.Advance(seconds(1));
    auto expired = l.FindExpired(100000);
    for (LeaseId id : expired) ASSERT_TRUE(l.Revoke(id).ok());
    per_second[s] = static_cast<int>(expired.size());
    total += static_cast<int>(expired.size());
  }
  EXPECT_EQ(total, n) << "every lease still expires";
  for (const auto& [s, count] : per_second) {
    EXPECT_LE(count, 750 + 1) << "second " << s;
  }
}

TEST_F(LessorTest, Checkpoints) {
  Options o = Opts();
  o.checkpointing = true;
  o.checkpoint_interval = seconds(5);
  Lessor l(o);
  l.Promote(seconds(0));
  ASSERT_TRUE(l.Grant(1, 60).ok());
  ASSERT_TRUE(l.Grant(2, 3).ok());  // shorter than the interval: never checkpointed
  clock_.Advance(seconds(5));
  auto due = l.FindDueCheckpoints(10);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, 1);
  EXPECT_EQ(due[0].remaining_ttl, 55);
  auto rec = l.ApplyCheckpoint(1, 55);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->remaining_ttl, 55);
  // A keepalive clears the checkpoint (the caller proposes the clearing).
  bool clear = false;
  ASSERT_TRUE(l.Renew(1, &clear).ok());
  EXPECT_TRUE(clear);
  EXPECT_FALSE(l.ApplyCheckpoint(99, 1).has_value());
}

}  // namespace
}  // namespace etcdpp::lease
