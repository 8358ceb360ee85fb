#include "server/ids.h"

#include <gtest/gtest.h>

namespace etcdpp::server {
namespace {

// Values printed by real etcd 3.4.23 started with its defaults
// (etcdctl member list / endpoint status).
TEST(IdsTest, MatchesEtcdDefaults) {
  uint64_t member = ComputeMemberId({"http://localhost:2380"}, "etcd-cluster");
  EXPECT_EQ(IdToHex(member), "8e9e05c52164694d");
  EXPECT_EQ(IdToHex(ComputeClusterId({member})), "cdf818194e3a8c32");
}

TEST(IdsTest, PeerUrlOrderDoesNotMatter) {
  EXPECT_EQ(ComputeMemberId({"http://a:1", "http://b:2"}, "t"),
            ComputeMemberId({"http://b:2", "http://a:1"}, "t"));
  EXPECT_NE(ComputeMemberId({"http://a:1"}, "t1"), ComputeMemberId({"http://a:1"}, "t2"));
  EXPECT_EQ(ComputeClusterId({1, 2, 3}), ComputeClusterId({3, 1, 2}));
}

}  // namespace
}  // namespace etcdpp::server

namespace etcdpp::server {
namespace {

TEST(IdGeneratorTest, LayoutAndUniqueness) {
  // Member 0x8e9e05c52164694d: low 16 bits 0x694d on top; 40-bit ms; counter.
  IdGenerator gen(0x8e9e05c52164694dULL, 0x0123456789);
  uint64_t a = gen.Next();
  uint64_t b = gen.Next();
  EXPECT_EQ(a >> 48, 0x694du);
  EXPECT_EQ((a >> 8) & ((uint64_t{1} << 40) - 1), 0x0123456789u);
  EXPECT_EQ(a & 0xff, 1u);
  EXPECT_EQ(b, a + 1);
  // A restart a millisecond later never reuses an ID handed out before it,
  // as long as fewer than 256 were taken in that millisecond.
  IdGenerator later(0x8e9e05c52164694dULL, 0x0123456789 + 1);
  EXPECT_GT(later.Next(), b);
}

}  // namespace
}  // namespace etcdpp::server
