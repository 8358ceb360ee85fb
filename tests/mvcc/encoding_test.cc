#include "mvcc/encoding.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace etcdpp::mvcc {
namespace {

TEST(EncodingTest, VersionKeyRoundTrip) {
  std::string k = VersionKey(std::string("a\0b", 3), {42, 7});
  EXPECT_EQ(VersionUserKey(k), std::string("a\0b", 3));
  EXPECT_EQ(VersionRevision(k), (Revision{42, 7}));
}

TEST(EncodingTest, ComparatorOrdersUserKeyThenNewestFirst) {
  const rocksdb::Comparator* c = KeyRevComparator();
  // Raw concatenation would put "a"+suffix after "ab"+suffix for some
  // suffixes; the comparator must not.
  std::vector<std::string> keys = {
      VersionKey("ab", {1, 0}),
      VersionKey("a", {1, 0}),
      VersionKey("a", {9, 0}),
      VersionKey("a", {9, 3}),
      VersionKey(std::string("a\0", 2), {5, 0}),
      VersionKey("a\xff", {2, 0}),
      VersionKey("", {3, 0}),
      VersionKey("\xff\xff", {1, 0}),
      VersionKey("b", {100, 0}),
  };
  std::sort(keys.begin(), keys.end(),
            [&](const std::string& a, const std::string& b) { return c->Compare(a, b) < 0; });
  std::vector<std::pair<std::string, Revision>> got;
  for (const auto& k : keys) got.emplace_back(std::string(VersionUserKey(k)), VersionRevision(k));
  std::vector<std::pair<std::string, Revision>> want = {
      {"", {3, 0}},
      {"a", {9, 3}},
      {"a", {9, 0}},
      {"a", {1, 0}},
      {std::string("a\0", 2), {5, 0}},
      {"ab", {1, 0}},  // 'b' < 0xff
      {"a\xff", {2, 0}},
      {"b", {100, 0}},
      {"\xff\xff", {1, 0}},
  };
  EXPECT_EQ(got, want);
}

TEST(EncodingTest, SeekKeysBracketVersions) {
  const rocksdb::Comparator* c = KeyRevComparator();
  // The seek key for rev R sorts before every version with main <= R and
  // after every version with main > R.
  EXPECT_LT(c->Compare(VersionSeekKey("k", 5), VersionKey("k", {5, 1000})), 0);
  EXPECT_LT(c->Compare(VersionSeekKey("k", 5), VersionKey("k", {4, 0})), 0);
  EXPECT_GT(c->Compare(VersionSeekKey("k", 5), VersionKey("k", {6, 0})), 0);
  EXPECT_GT(c->Compare(AfterAllVersionsKey("k"), VersionKey("k", {1, 0})), 0);
  EXPECT_LT(c->Compare(AfterAllVersionsKey("k"), VersionKey(std::string("k\0", 2), {99, 0})), 0);
}

TEST(EncodingTest, ValueRoundTrip) {
  VersionValue v;
  const std::string enc = EncodePutValue(1LL << 40, 3, 0x7fffffffffffffffLL, "hi");
  ASSERT_TRUE(DecodeVersionValue(enc, &v));  // v.value points into enc
  EXPECT_FALSE(v.tombstone);
  EXPECT_EQ(v.create_revision, 1LL << 40);
  EXPECT_EQ(v.version, 3);
  EXPECT_EQ(v.lease, 0x7fffffffffffffffLL);
  EXPECT_EQ(v.value, "hi");
  ASSERT_TRUE(DecodeVersionValue(EncodeTombstoneValue(), &v));
  EXPECT_TRUE(v.tombstone);
  EXPECT_FALSE(DecodeVersionValue("", &v));
  EXPECT_FALSE(DecodeVersionValue(std::string("\0\x80", 2), &v));
}

TEST(EncodingTest, RevKeyIsBigEndianOrdered) {
  EXPECT_LT(RevKey({1, 5}), RevKey({2, 0}));
  EXPECT_LT(RevKey({255, 0}), RevKey({256, 0}));
  EXPECT_EQ(DecodeRevKey(RevKey({123456789, 3})), (Revision{123456789, 3}));
  EventKind kind;
  std::string_view uk;
  const std::string enc = EncodeRevValue(EventKind::kDelete, "x");
  ASSERT_TRUE(DecodeRevValue(enc, &kind, &uk));
  EXPECT_EQ(kind, EventKind::kDelete);
  EXPECT_EQ(uk, "x");
}

}  // namespace
}  // namespace etcdpp::mvcc
