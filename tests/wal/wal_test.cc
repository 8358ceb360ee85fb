#include "wal/wal.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/wal/test_util.h"
#include "common/crc32c.h"
#include "wal/format.h"

namespace etcdpp::wal {
namespace {

using testing::CopyDir;
using testing::ReadAllBytes;
using testing::TempDir;
using testing::WriteAllBytes;

Options SmallSegments(uint64_t size = 4096, int max_wals = 5) {
  Options o;
  o.segment_size_bytes = size;
  o.max_wals = max_wals;
  return o;
}

std::string Payload(uint64_t index, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (index * 7 + i) % 26);
  return s;
}

std::vector<Entry> MakeEntries(uint64_t first, uint64_t last, uint64_t term, size_t size = 50) {
  std::vector<Entry> v;
  for (uint64_t i = first; i <= last; ++i) v.push_back({i, term, Payload(i + term, size)});
  return v;
}

absl::StatusOr<ReadResult> OpenAndRead(const std::string& dir, SnapshotMarker from = {},
                                       const Options& o = SmallSegments()) {
  ETCDPP_ASSIGN_OR_RETURN(auto wal, Wal::Open(dir, from, o));
  return wal->ReadAll();
}

// Record layout of one segment file: (offset, end, type, entry index).
struct RecInfo {
  uint64_t offset, end;
  RecordType type;
  uint64_t index;
};
std::vector<RecInfo> Layout(const std::string& path) {
  std::string data = ReadAllBytes(path);
  std::vector<RecInfo> out;
  ChainState chain;
  auto scan = ScanSegment(path, data, true, &chain, [&](const RecordView& r) {
    uint64_t end = r.offset + RecordBytes(r.payload.size());
    out.push_back({r.offset, end, r.type,
                   r.type == RecordType::kEntry ? GetU64(r.payload.data()) : 0});
    return absl::OkStatus();
  });
  EXPECT_TRUE(scan.ok()) << scan.status();
  return out;
}

// ---------------------------------------------------------------- CRC, names

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(0, "", 0), 0u);
  EXPECT_EQ(Crc32c(0, "123456789"), 0xE3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(0, zeros), 0x8A9136AAu);
  std::string ff(32, '\xff');
  EXPECT_EQ(Crc32c(0, ff), 0x62A8AB43u);
  EXPECT_EQ(Crc32cPortable(0, "123456789", 9), 0xE3069283u);
}

TEST(Crc32cTest, HardwareMatchesPortableAndChains) {
  Random rnd(7);
  std::string buf(4096 + 16, '\0');
  for (auto& c : buf) c = static_cast<char>(rnd.Next());
  for (int i = 0; i < 300; ++i) {
    size_t off = rnd.Uniform(16), n = rnd.Uniform(4096);
    uint32_t seed = static_cast<uint32_t>(rnd.Next());
    ASSERT_EQ(Crc32c(seed, buf.data() + off, n), Crc32cPortable(seed, buf.data() + off, n));
    size_t cut = n ? rnd.Uniform(n) : 0;
    ASSERT_EQ(Crc32c(Crc32c(seed, buf.data() + off, cut), buf.data() + off + cut, n - cut),
              Crc32c(seed, buf.data() + off, n));
  }
}

TEST(FormatTest, SegmentNames) {
  EXPECT_EQ(SegmentName(1, 0x2a), "0000000000000001-000000000000002a.wal");
  auto p = ParseSegmentName("0000000000000001-000000000000002a.wal");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->first, 1u);
  EXPECT_EQ(p->second, 42u);
  EXPECT_FALSE(ParseSegmentName("0000000000000001-000000000000002a.wal.tmp"));
  EXPECT_FALSE(ParseSegmentName("000000000000000g-000000000000002a.wal"));
  EXPECT_FALSE(ParseSegmentName("LOCK"));
}

TEST(FormatTest, RecordLayoutExample) {
  // The worked example in format.h.
  std::string buf;
  std::string prefix;
  PutU64(&prefix, 7);
  PutU64(&prefix, 2);
  AppendRecord(&buf, RecordType::kEntry, prefix, "abc");
  ASSERT_EQ(buf.size(), 40u);
  uint32_t chain = 0;
  SealRecords(buf.data(), buf.size(), &chain);
  EXPECT_EQ(GetU32(buf.data()), 19u);
  EXPECT_EQ(buf[4], 3);
  EXPECT_EQ(GetU32(buf.data() + 8), chain);
}

// ---------------------------------------------------------------- round trip

TEST(WalTest, RoundTrip) {
  TempDir tmp;
  const std::string dir = tmp.Sub("wal");
  EXPECT_FALSE(Wal::Exists(dir));
  {
    auto wal = Wal::Create(dir, "node=1,cluster=2", SmallSegments(1 << 20));
    ASSERT_TRUE(wal.ok()) << wal.status();
    auto ents = MakeEntries(1, 100, 1);
    ASSERT_TRUE((*wal)->Save({1, 1, 0}, std::span(ents).first(50), true).ok());
    ASSERT_TRUE((*wal)->Save({1, 1, 40}, std::span(ents).subspan(50), true).ok());
    ASSERT_TRUE((*wal)->Save({1, 1, 90}, {}, false).ok());
    EXPECT_EQ((*wal)->LastIndex(), 100u);
    ASSERT_TRUE((*wal)->Close().ok());
  }
  EXPECT_TRUE(Wal::Exists(dir));
  auto r = OpenAndRead(dir);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metadata, "node=1,cluster=2");
  EXPECT_EQ(r->hard_state, (HardState{1, 1, 90}));
  EXPECT_EQ(r->entries, MakeEntries(1, 100, 1));
  EXPECT_FALSE(r->tail_repaired);
  ASSERT_EQ(r->snapshots.size(), 1u);
  EXPECT_EQ(r->snapshots[0], (SnapshotMarker{0, 0}));
}

TEST(WalTest, CreateRefusesExistingWalAndEmptyEntriesAreFine) {
  TempDir tmp;
  auto wal = Wal::Create(tmp.path(), "m");
  ASSERT_TRUE(wal.ok());
  ASSERT_TRUE((*wal)->Save({}, {}, true).ok());
  ASSERT_TRUE((*wal)->Save({2, 0, 0}, {}, true).ok());
  ASSERT_TRUE((*wal)->Close().ok());
  EXPECT_EQ(Wal::Create(tmp.path(), "m").status().code(), absl::StatusCode::kAlreadyExists);
  auto r = OpenAndRead(tmp.path());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->entries.empty());
  EXPECT_EQ(r->hard_state, (HardState{2, 0, 0}));
}

TEST(WalTest, LaterWriteOfAnIndexReplacesTheTail) {
  TempDir tmp;
  {
    auto wal = Wal::Create(tmp.path(), "m", SmallSegments(2048));
    ASSERT_TRUE(wal.ok());
    auto a = MakeEntries(1, 30, 1);
    ASSERT_TRUE((*wal)->Save({1, 1, 3}, a, true).ok());
    auto b = MakeEntries(5, 7, 2);  // raft truncates 5..30 and appends 5..7
    ASSERT_TRUE((*wal)->Save({2, 2, 4}, b, true).ok());
    EXPECT_EQ((*wal)->LastIndex(), 7u);
    // Appends continue after the new tail.
    auto idx = (*wal)->Append(2, "x");
    ASSERT_TRUE(idx.ok());
    EXPECT_EQ(*idx, 8u);
  }
  auto r = OpenAndRead(tmp.path(), {}, SmallSegments(2048));
  ASSERT_TRUE(r.ok()) << r.status();
  auto want = MakeEntries(1, 4, 1);
  for (auto& e : MakeEntries(5, 7, 2)) want.push_back(e);
  want.push_back({8, 2, "x"});
  EXPECT_EQ(r->entries, want);
  EXPECT_EQ(r->hard_state, (HardState{2, 2, 4}));
}

TEST(WalTest, SaveRejectsNonConsecutiveEntries) {
  TempDir tmp;
  auto wal = Wal::Create(tmp.path(), "m");
  ASSERT_TRUE(wal.ok());
  std::vector<Entry> bad = {{1, 1, "a"}, {3, 1, "b"}};
  EXPECT_EQ((*wal)->Save({}, bad, true).code(), absl::StatusCode::kInvalidArgument);
}

TEST(WalTest, EntryGapIsDataLoss) {
  TempDir tmp;
  {
    auto wal = Wal::Create(tmp.path(), "m");
    ASSERT_TRUE(wal.ok());
    ASSERT_TRUE((*wal)->Save({}, MakeEntries(1, 3, 1), true).ok());
    ASSERT_TRUE((*wal)->Save({}, MakeEntries(6, 7, 1), true).ok());
  }
  auto r = OpenAndRead(tmp.path());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("entry 6 leaves a gap after entry 3"), std::string::npos)
      << r.status();
}

TEST(WalTest, LockKeepsASecondOpenerOut) {
  TempDir tmp;
  auto wal = Wal::Create(tmp.path(), "m");
  ASSERT_TRUE(wal.ok());
  auto second = Wal::Open(tmp.path(), {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  ASSERT_TRUE((*wal)->Close().ok());
  auto third = Wal::Open(tmp.path(), {});
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(WalTest, WritesNeedReadAllAfterOpen) {
  TempDir tmp;
  ASSERT_TRUE(Wal::Create(tmp.path(), "m").ok());
  auto wal = Wal::Open(tmp.path(), {});
  ASSERT_TRUE(wal.ok());
  EXPECT_EQ((*wal)->Append(1, "x").status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*wal)->ReadAll().ok());
  EXPECT_EQ((*wal)->ReadAll().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*wal)->Append(1, "x").ok());
}

// ------------------------------------------------- hard state and snapshots

TEST(WalTest, HardStateAndSnapshotMarkersAcrossSegments) {
  TempDir tmp;
  const Options o = SmallSegments(2048, 1);
  {
    auto wal = Wal::Create(tmp.path(), "meta", o);
    ASSERT_TRUE(wal.ok());
    ASSERT_TRUE((*wal)->Save({3, 2, 5}, MakeEntries(1, 10, 3), true).ok());
    ASSERT_TRUE((*wal)->SaveSnapshot({5, 3}).ok());
    // Many entries without hard state: the hard state must be carried into
    // each new segment's header.
    for (uint64_t i = 11; i <= 120; ++i) {
      ASSERT_TRUE((*wal)->Save({}, MakeEntries(i, i, 3), true).ok());
    }
    ASSERT_TRUE((*wal)->SaveSnapshot({100, 3}).ok());
    ASSERT_TRUE((*wal)->SaveSnapshot({110, 3}).ok());  // beyond commit 5 ... for now
    ASSERT_TRUE((*wal)->Save({3, 2, 105}, {}, true).ok());
    EXPECT_GT((*wal)->SegmentNames().size(), 5u);
  }
  auto markers = Wal::ReadSnapshotMarkers(tmp.path());
  ASSERT_TRUE(markers.ok()) << markers.status();
  // {110,3} is past the saved commit (105): not usable.
  EXPECT_EQ(*markers, (std::vector<SnapshotMarker>{{0, 0}, {5, 3}, {100, 3}}));

  auto r = OpenAndRead(tmp.path(), {100, 3}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->hard_state, (HardState{3, 2, 105}));
  EXPECT_EQ(r->entries, MakeEntries(101, 120, 3));
  EXPECT_EQ(r->metadata, "meta");
  EXPECT_EQ(r->snapshot, (SnapshotMarker{100, 3}));

  // Reading from the marker at 5 gives the rest, and the latest hard state.
  r = OpenAndRead(tmp.path(), {5, 3}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries.front().index, 6u);
  EXPECT_EQ(r->entries.size(), 115u);

  EXPECT_EQ(OpenAndRead(tmp.path(), {100, 4}, o).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(OpenAndRead(tmp.path(), {99, 3}, o).status().code(), absl::StatusCode::kNotFound);
}

TEST(WalTest, HardStateOnlyInHeaderOfLaterSegment) {
  TempDir tmp;
  const Options o = SmallSegments(1024, 1);
  {
    auto wal = Wal::Create(tmp.path(), "m", o);
    ASSERT_TRUE(wal.ok());
    ASSERT_TRUE((*wal)->Save({7, 1, 3}, MakeEntries(1, 3, 7), true).ok());
    for (uint64_t i = 4; i <= 60; ++i) ASSERT_TRUE((*wal)->Save({}, MakeEntries(i, i, 7), true).ok());
    ASSERT_TRUE((*wal)->SaveSnapshot({3, 7}).ok());
    ASSERT_TRUE((*wal)->ReleaseTo(3).ok());
  }
  // The snapshot marker was written in a late segment; reading starts from
  // the last segment whose first index <= 3, and the hard state is found.
  auto r = OpenAndRead(tmp.path(), {3, 7}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->hard_state, (HardState{7, 1, 3}));
  EXPECT_EQ(r->entries, MakeEntries(4, 60, 7));
}

// ------------------------------------------------------ roll-over, release

TEST(WalTest, RollOverAndRelease) {
  TempDir tmp;
  const Options o = SmallSegments(4096, 2);
  std::vector<std::string> names;
  {
    auto wal = Wal::Create(tmp.path(), "m", o);
    ASSERT_TRUE(wal.ok());
    for (uint64_t i = 1; i <= 200; ++i) {
      ASSERT_TRUE((*wal)->Save({1, 1, i - 1}, MakeEntries(i, i, 1, 100), true).ok());
    }
    names = (*wal)->SegmentNames();
    ASSERT_GT(names.size(), 8u);
    uint64_t prev_index = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      auto p = ParseSegmentName(names[i]);
      ASSERT_TRUE(p);
      EXPECT_EQ(p->first, i);
      EXPECT_GE(p->second, prev_index);
      prev_index = p->second;
    }
    // Every sealed segment is preallocated and was filled past its size.
    struct stat st;
    ASSERT_EQ(::stat(tmp.Sub(names[0]).c_str(), &st), 0);
    EXPECT_GE(static_cast<uint64_t>(st.st_size), o.segment_size_bytes);
    ASSERT_TRUE((*wal)->Close().ok());
  }
  {
    auto r = OpenAndRead(tmp.path(), {}, o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->entries, MakeEntries(1, 200, 1, 100));
  }
  {
    auto wal = Wal::Open(tmp.path(), {}, o);
    ASSERT_TRUE(wal.ok());
    ASSERT_TRUE((*wal)->ReadAll().ok());
    ASSERT_TRUE((*wal)->SaveSnapshot({150, 1}).ok());
    const Stats before = (*wal)->GetStats();
    ASSERT_TRUE((*wal)->ReleaseTo(150).ok());
    auto left = (*wal)->SegmentNames();
    // Kept: the segment holding index 150 and everything after it (never
    // fewer than max_wals files).
    auto p = ParseSegmentName(left.front());
    ASSERT_TRUE(p);
    EXPECT_LE(p->second, 150u);
    auto p2 = ParseSegmentName(left.size() > 1 ? left[1] : left[0]);
    EXPECT_TRUE(left.size() == 1 || p2->second > 150u);
    EXPECT_GE(left.size(), 2u);
    const Stats after = (*wal)->GetStats();
    const size_t existed = names.size() + (after.segments_created - before.segments_created);
    EXPECT_EQ(after.segments_deleted - before.segments_deleted, existed - left.size());
    // Releasing again changes nothing.
    ASSERT_TRUE((*wal)->ReleaseTo(150).ok());
    EXPECT_EQ((*wal)->SegmentNames(), left);
    EXPECT_FALSE(std::filesystem::exists(tmp.Sub(names[0])));
  }
  EXPECT_EQ(OpenAndRead(tmp.path(), {}, o).status().code(), absl::StatusCode::kNotFound);
  auto r = OpenAndRead(tmp.path(), {150, 1}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries, MakeEntries(151, 200, 1, 100));
  EXPECT_EQ(r->hard_state, (HardState{1, 1, 199}));
}

TEST(WalTest, MaxWalsKeepsOldFilesAndZeroKeepsAll) {
  for (int max_wals : {0, 4}) {
    TempDir tmp;
    const Options o = SmallSegments(2048, max_wals);
    auto wal = Wal::Create(tmp.path(), "m", o);
    ASSERT_TRUE(wal.ok());
    for (uint64_t i = 1; i <= 100; ++i) ASSERT_TRUE((*wal)->Save({}, MakeEntries(i, i, 1, 100), true).ok());
    const size_t before = (*wal)->SegmentNames().size();
    ASSERT_TRUE((*wal)->SaveSnapshot({100, 1}).ok());
    ASSERT_TRUE((*wal)->ReleaseTo(100).ok());
    const size_t after = (*wal)->SegmentNames().size();
    if (max_wals == 0) {
      EXPECT_EQ(after, before);
    } else {
      EXPECT_EQ(after, 4u);
    }
  }
}

// ------------------------------------------------------------- torn tails

// Builds a WAL whose last segment ends with records of varied sizes, so the
// truncation points cover headers, payloads, padding and sector boundaries.
void BuildTail(const std::string& dir, const Options& o) {
  auto wal = Wal::Create(dir, "meta", o);
  ASSERT_TRUE(wal.ok());
  ASSERT_TRUE((*wal)->Save({1, 1, 0}, MakeEntries(1, 5, 1, 30), true).ok());
  ASSERT_TRUE((*wal)->Save({}, MakeEntries(6, 6, 1, 3), true).ok());
  ASSERT_TRUE((*wal)->Save({}, MakeEntries(7, 7, 1, 700), true).ok());
  ASSERT_TRUE((*wal)->Save({1, 1, 6}, MakeEntries(8, 8, 1, 101), true).ok());
  ASSERT_TRUE((*wal)->Close().ok());
}

TEST(TornTailTest, EveryTruncationPointOfTheLastRecordsRecoversTheWholeOnes) {
  TempDir tmp;
  const Options o = SmallSegments(1 << 16);
  const std::string orig = tmp.Sub("orig");
  BuildTail(orig, o);
  const std::string name = SegmentName(0, 0);
  const std::string data = ReadAllBytes(orig + "/" + name);
  auto layout = Layout(orig + "/" + name);
  ASSERT_GE(layout.size(), 8u);
  // Cover the last five records: entries 5..8 and the final hard state.
  const uint64_t from = layout[layout.size() - 5].offset;
  const uint64_t end = layout.back().end;
  const std::string work = tmp.Sub("work");
  CopyDir(orig, work);
  const std::string seg = work + "/" + name;
  int checked = 0;
  for (uint64_t cut = from; cut <= end; ++cut) {
    WriteAllBytes(seg, data.substr(0, cut));
    auto wal = Wal::Open(work, {}, o);
    ASSERT_TRUE(wal.ok()) << wal.status();
    auto r = (*wal)->ReadAll();
    ASSERT_TRUE(r.ok()) << "cut at " << cut << ": " << r.status();
    uint64_t want_last = 0;
    HardState want_hs;
    for (const auto& rec : layout) {
      if (rec.end > cut) break;
      if (rec.type == RecordType::kEntry) want_last = rec.index;
      // BuildTail saved hard state {1,1,0} first and {1,1,6} as the last record.
      if (rec.type == RecordType::kHardState) {
        want_hs = rec.offset == layout.back().offset ? HardState{1, 1, 6} : HardState{1, 1, 0};
      }
    }
    ASSERT_EQ(r->entries.size(), want_last) << "cut at " << cut;
    ASSERT_EQ(r->hard_state, want_hs) << "cut at " << cut;
    const bool on_boundary = std::any_of(layout.begin(), layout.end(), [&](const RecInfo& x) { return x.end == cut; });
    ASSERT_EQ(r->tail_repaired, !on_boundary) << "cut at " << cut;
    if (!r->entries.empty()) {
      auto all = MakeEntries(1, 5, 1, 30);
      all.push_back(MakeEntries(6, 6, 1, 3)[0]);
      all.push_back(MakeEntries(7, 7, 1, 700)[0]);
      all.push_back(MakeEntries(8, 8, 1, 101)[0]);
      all.resize(want_last);
      ASSERT_EQ(r->entries, all) << "cut at " << cut;
    }
    // Now and then: the repaired log takes new writes and reads back whole.
    if (cut % 61 == 0 || cut == end) {
      auto idx = (*wal)->Append(2, "after-repair");
      ASSERT_TRUE(idx.ok()) << idx.status();
      ASSERT_EQ(*idx, want_last + 1);
      ASSERT_TRUE((*wal)->Close().ok());
      auto again = OpenAndRead(work, {}, o);
      ASSERT_TRUE(again.ok()) << "cut at " << cut << ": " << again.status();
      ASSERT_EQ(again->entries.size(), want_last + 1);
      ASSERT_EQ(again->entries.back().data, "after-repair");
      ASSERT_FALSE(again->tail_repaired);
    }
    ++checked;
  }
  EXPECT_GT(checked, 900);
}

TEST(TornTailTest, UnwrittenSectorInsideTheLastRecordIsTorn) {
  TempDir tmp;
  const Options o = SmallSegments(1 << 16);
  BuildTail(tmp.path(), o);
  const std::string seg = tmp.Sub(SegmentName(0, 0));
  auto layout = Layout(seg);
  // Entry 7 (700 bytes) is followed by entry 8 and a hard state; make it the
  // last whole-looking record by zeroing everything after one of its sectors.
  const RecInfo rec7 = *std::find_if(layout.begin(), layout.end(), [](const RecInfo& r) { return r.index == 7; });
  std::string data = ReadAllBytes(seg);
  const uint64_t sector = (rec7.offset / 512 + 1) * 512;  // a sector boundary inside it
  ASSERT_LT(sector, rec7.end);
  std::fill(data.begin() + static_cast<long>(sector),
            data.begin() + static_cast<long>(std::min<uint64_t>(sector + 512, rec7.end)), '\0');
  WriteAllBytes(seg, data);  // entry 8 and the hard state are still there, as if reordered
  auto r = OpenAndRead(tmp.path(), {}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->tail_repaired);
  EXPECT_NE(r->repair_detail.find(absl::StrCat("at offset ", rec7.offset)), std::string::npos)
      << r->repair_detail;
  EXPECT_NE(r->repair_detail.find(SegmentName(0, 0)), std::string::npos);
  EXPECT_EQ(r->entries.size(), 6u);
  // The repair wiped the rest: a reopen is clean.
  auto again = OpenAndRead(tmp.path(), {}, o);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->tail_repaired);
  EXPECT_EQ(again->entries.size(), 6u);
}

TEST(TornTailTest, UnsyncedBytesAfterTheEndAreWiped) {
  TempDir tmp;
  const Options o = SmallSegments(1 << 16);
  BuildTail(tmp.path(), o);
  const std::string seg = tmp.Sub(SegmentName(0, 0));
  auto layout = Layout(seg);
  std::string data = ReadAllBytes(seg);
  const uint64_t junk_at = layout.back().end + 1024;
  ASSERT_LT(junk_at + 100, data.size());
  std::fill(data.begin() + static_cast<long>(junk_at), data.begin() + static_cast<long>(junk_at + 100), 'z');
  WriteAllBytes(seg, data);
  auto r = OpenAndRead(tmp.path(), {}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->tail_repaired);
  EXPECT_EQ(r->entries.size(), 8u);
  auto again = OpenAndRead(tmp.path(), {}, o);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->tail_repaired);
}

// ------------------------------------------------------------- corruption

TEST(CorruptionTest, FlippedBitAnywhereBeforeTheTailIsNamed) {
  TempDir tmp;
  const Options o = SmallSegments(2048);
  const std::string orig = tmp.Sub("orig");
  {
    auto wal = Wal::Create(orig, "meta", o);
    ASSERT_TRUE(wal.ok());
    for (uint64_t i = 1; i <= 60; ++i) {
      ASSERT_TRUE((*wal)->Save({1, 1, i}, MakeEntries(i, i, 1, 20 + i * 3), true).ok());
    }
  }
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(orig)) {
    if (ParseSegmentName(e.path().filename().string())) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  ASSERT_GE(names.size(), 3u);
  const std::string work = tmp.Sub("work");
  Random rnd(42);
  int checked = 0;
  // A middle segment, and the last one (whose final records are fully written,
  // so a flip there is damage too, not a torn write).
  for (const std::string& name : {names[names.size() / 2], names.back()}) {
    auto layout = Layout(orig + "/" + name);
    for (const RecInfo& rec : layout) {
      for (int k = 0; k < 3; ++k) {
        CopyDir(orig, work);
        const std::string seg = work + "/" + name;
        std::string data = ReadAllBytes(seg);
        // Any byte of the header or payload (padding carries nothing).
        const uint32_t len = GetU32(data.data() + rec.offset);
        const uint64_t pos = rec.offset + rnd.Uniform(kHeaderBytes + len);
        data[pos] = static_cast<char>(data[pos] ^ (1 << rnd.Uniform(8)));
        WriteAllBytes(seg, data);
        auto r = OpenAndRead(work, {}, o);
        ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss)
            << name << " byte " << pos << ": " << r.status();
        const std::string msg(r.status().message());
        EXPECT_NE(msg.find(name), std::string::npos) << msg;
        EXPECT_NE(msg.find(absl::StrCat("at offset ", rec.offset, ":")), std::string::npos)
            << "flip at " << pos << ": " << msg;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 30);
}

TEST(CorruptionTest, MissingOrReorderedSegmentsAreDetected) {
  TempDir tmp;
  const Options o = SmallSegments(1024);
  const std::string orig = tmp.Sub("orig");
  {
    auto wal = Wal::Create(orig, "meta", o);
    ASSERT_TRUE(wal.ok());
    for (uint64_t i = 1; i <= 40; ++i) ASSERT_TRUE((*wal)->Save({}, MakeEntries(i, i, 1, 60), true).ok());
  }
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(orig)) {
    if (ParseSegmentName(e.path().filename().string())) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  ASSERT_GE(names.size(), 4u);
  const std::string work = tmp.Sub("work");
  CopyDir(orig, work);
  std::filesystem::remove(work + "/" + names[2]);
  auto r = OpenAndRead(work, {}, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("segment missing"), std::string::npos) << r.status();

  // Swap the contents of two sealed segments: the CRC chain breaks.
  CopyDir(orig, work);
  std::string a = ReadAllBytes(work + "/" + names[1]), b = ReadAllBytes(work + "/" + names[2]);
  WriteAllBytes(work + "/" + names[1], b);
  WriteAllBytes(work + "/" + names[2], a);
  r = OpenAndRead(work, {}, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("crc chain broken"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find(names[1]), std::string::npos) << r.status();

  // Data behind a zeroed header in a sealed segment is not silently dropped.
  CopyDir(orig, work);
  auto layout = Layout(work + "/" + names[1]);
  std::string d = ReadAllBytes(work + "/" + names[1]);
  std::fill(d.begin() + static_cast<long>(layout[3].offset),
            d.begin() + static_cast<long>(layout[3].offset + kHeaderBytes), '\0');
  WriteAllBytes(work + "/" + names[1], d);
  r = OpenAndRead(work, {}, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
}

TEST(CorruptionTest, OperatorCanTruncateAtTheNamedOffset) {
  TempDir tmp;
  const Options o = SmallSegments(1 << 16);
  BuildTail(tmp.path(), o);
  const std::string name = SegmentName(0, 0);
  auto layout = Layout(tmp.Sub(name));
  const RecInfo rec7 = *std::find_if(layout.begin(), layout.end(), [](const RecInfo& r) { return r.index == 7; });
  std::string data = ReadAllBytes(tmp.Sub(name));
  data[rec7.offset + 100] ^= 0x10;
  WriteAllBytes(tmp.Sub(name), data);
  auto r = OpenAndRead(tmp.path(), {}, o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  std::string out;
  absl::Status described = Describe(tmp.path(), true, &out);
  EXPECT_EQ(described.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(out.find("entry index 6"), std::string::npos) << out;
  ASSERT_TRUE(TruncateAt(tmp.path(), name, rec7.offset).ok());
  r = OpenAndRead(tmp.path(), {}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries.size(), 6u);
}

// ------------------------------------------------------ faults, concurrency

TEST(FaultTest, FsyncFailureIsStickyAndLosesNothingAcknowledged) {
  TempDir tmp;
  Options o = SmallSegments(1 << 16);
  o.faults.fail_sync_after = 5;  // Create uses 1
  uint64_t acked = 0;
  {
    auto wal = Wal::Create(tmp.path(), "m", o);
    ASSERT_TRUE(wal.ok());
    absl::Status s;
    for (uint64_t i = 1; i <= 10 && s.ok(); ++i) {
      s = (*wal)->Save({}, MakeEntries(i, i, 1), true);
      if (s.ok()) acked = i;
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_EQ(acked, 4u);
    EXPECT_EQ((*wal)->Append(1, "x").status(), s);
    EXPECT_EQ((*wal)->Sync(), s);
    EXPECT_EQ((*wal)->Close(), s);
  }
  auto r = OpenAndRead(tmp.path(), {}, SmallSegments(1 << 16));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->entries.size(), acked);
}

TEST(FaultTest, ShortWriteLeavesARecoverableTail) {
  TempDir tmp;
  Options o = SmallSegments(1 << 16);
  o.faults.fail_write_after_bytes = 1500;
  o.faults.write_chunk_bytes = 7;
  uint64_t acked = 0;
  {
    auto wal = Wal::Create(tmp.path(), "m", o);
    ASSERT_TRUE(wal.ok());
    absl::Status s;
    for (uint64_t i = 1; i <= 100 && s.ok(); ++i) {
      s = (*wal)->Save({}, MakeEntries(i, i, 1, 90), true);
      if (s.ok()) acked = i;
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  }
  auto r = OpenAndRead(tmp.path(), {}, SmallSegments(1 << 16));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries.size(), acked);
  EXPECT_TRUE(r->tail_repaired);
}

TEST(GroupCommitTest, ConcurrentAppendersShareSyncsAndKeepOrder) {
  TempDir tmp;
  const Options o = SmallSegments(64 << 10);
  constexpr int kThreads = 8, kPerThread = 150;
  uint64_t syncs = 0;
  {
    auto wal = Wal::Create(tmp.path(), "m", o);
    ASSERT_TRUE(wal.ok());
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        uint64_t prev = 0;
        for (int i = 0; i < kPerThread; ++i) {
          auto idx = (*wal)->Append(1, absl::StrCat(t, ":", i, ":", Payload(i, 40)));
          if (!idx.ok() || *idx <= prev) failures++;
          if (idx.ok()) prev = *idx;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    Stats st = (*wal)->GetStats();
    syncs = st.syncs;
    EXPECT_EQ(st.records, static_cast<uint64_t>(kThreads * kPerThread) + 0);
    EXPECT_GT((*wal)->GetStats().segments_created, 1u);
  }
  // With 8 threads waiting, batches must have formed (not one sync each).
  EXPECT_LT(syncs, static_cast<uint64_t>(kThreads * kPerThread));
  auto r = OpenAndRead(tmp.path(), {}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->entries.size(), static_cast<size_t>(kThreads * kPerThread));
  std::vector<int> next(kThreads, 0);
  for (size_t i = 0; i < r->entries.size(); ++i) {
    ASSERT_EQ(r->entries[i].index, i + 1);
    int t = 0, seq = 0;
    ASSERT_EQ(std::sscanf(r->entries[i].data.c_str(), "%d:%d:", &t, &seq), 2);
    ASSERT_EQ(seq, next[t]++) << "thread " << t;
  }
}

}  // namespace
}  // namespace etcdpp::wal
