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
