// Feeds random and mutated bytes to the WAL reader. Whatever it is given, it
// must not crash, and it must end in either a recovered log (a prefix of what
// was written) or a clear error.
#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "gtest/gtest.h"
#include "tests/wal/test_util.h"
#include "wal/format.h"
#include "wal/wal.h"

namespace etcdpp::wal {
namespace {

using testing::CopyDir;
using testing::ReadAllBytes;
using testing::TempDir;
using testing::WriteAllBytes;

constexpr uint64_t kSegmentBytes = 4096;

std::vector<Entry> Build(const std::string& dir) {
  Options o;
  o.segment_size_bytes = kSegmentBytes;
  std::vector<Entry> all;
  auto wal = Wal::Create(dir, "fuzz-metadata", o);
  EXPECT_TRUE(wal.ok());
  Random rnd(1);
  for (uint64_t i = 1; i <= 60; ++i) {
    std::string data(rnd.Uniform(300) + 1, '\0');
    for (auto& c : data) c = static_cast<char>(rnd.Next());
    Entry e{i, 1 + i / 20, data};
    EXPECT_TRUE((*wal)->Save({1 + i / 20, 1, i}, std::span(&e, 1), true).ok());
    all.push_back(e);
  }
  EXPECT_TRUE((*wal)->SaveSnapshot({30, 2}).ok());
  return all;
}

std::vector<std::string> Segments(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (ParseSegmentName(e.path().filename().string())) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

void Mutate(std::string* data, Random& rnd) {
  const int kinds = 1 + static_cast<int>(rnd.Uniform(3));
  for (int k = 0; k < kinds; ++k) {
    const size_t n = data->size();
    switch (rnd.Uniform(7)) {
      case 0:  // flip one bit
        if (n) (*data)[rnd.Uniform(n)] ^= static_cast<char>(1 << rnd.Uniform(8));
        break;
      case 1:  // overwrite a range with random bytes
        if (n) {
          size_t at = rnd.Uniform(n), len = std::min<size_t>(n - at, rnd.Uniform(64) + 1);
          for (size_t i = 0; i < len; ++i) (*data)[at + i] = static_cast<char>(rnd.Next());
        }
        break;
      case 2:  // zero a range (a lost sector, perhaps)
        if (n) {
          size_t at = rnd.Uniform(n), len = std::min<size_t>(n - at, rnd.Uniform(1024) + 1);
          std::fill(data->begin() + static_cast<long>(at), data->begin() + static_cast<long>(at + len), '\0');
        }
        break;
      case 3:  // truncate
        data->resize(n ? rnd.Uniform(n) : 0);
        break;
      case 4:  // grow with garbage
        for (uint64_t i = rnd.Uniform(100); i > 0; --i) data->push_back(static_cast<char>(rnd.Next()));
        break;
      case 5:  // a plausible but lying length field
        if (n >= 8) {
          size_t at = rnd.Uniform(n / 8) * 8;
          uint32_t len = static_cast<uint32_t>(rnd.Next());
          std::memcpy(data->data() + at, &len, 4);
        }
        break;
      case 6:  // replace with pure noise
        for (auto& c : *data) c = static_cast<char>(rnd.Next());
        break;
    }
  }
}

TEST(WalFuzzTest, ScannerSurvivesRandomAndMutatedSegments) {
  TempDir tmp;
  Build(tmp.path());
  std::vector<std::string> images;
  for (const auto& n : Segments(tmp.path())) images.push_back(ReadAllBytes(tmp.Sub(n)));
  ASSERT_GE(images.size(), 3u);
  Random rnd(2024);
  int ok = 0, bad = 0;
  for (int iter = 0; iter < 30000; ++iter) {
    std::string data;
    if (iter % 10 == 0) {
      data.resize(rnd.Uniform(8192));
      for (auto& c : data) c = static_cast<char>(rnd.Next());
    } else {
      data = images[rnd.Uniform(images.size())];
      Mutate(&data, rnd);
    }
    ChainState chain;
    if (rnd.Bernoulli(0.5)) {
      chain.known = true;
      chain.crc = static_cast<uint32_t>(rnd.Next());
    }
    uint64_t visited_end = 0;
    auto r = ScanSegment("fuzz.wal", data, rnd.Bernoulli(0.5), &chain, [&](const RecordView& rec) {
      EXPECT_LE(rec.offset + kHeaderBytes + rec.payload.size(), data.size());
      visited_end = rec.offset + RecordBytes(rec.payload.size());
      return absl::OkStatus();
    });
    if (r.ok()) {
      ++ok;
      ASSERT_LE(r->valid_end, data.size());
      ASSERT_GE(r->valid_end, visited_end);
    } else {
      ++bad;
      ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
      ASSERT_NE(r.status().message().find("fuzz.wal at offset "), std::string::npos);
    }
  }
  EXPECT_GT(ok, 100);
  EXPECT_GT(bad, 100);
}

TEST(WalFuzzTest, MutatedDirectoriesRecoverAPrefixOrFailClearly) {
  TempDir tmp;
  const std::string orig = tmp.Sub("orig");
  const std::vector<Entry> all = Build(orig);
  const std::vector<std::string> names = Segments(orig);
  const std::string work = tmp.Sub("work");
  Options o;
  o.segment_size_bytes = kSegmentBytes;
  Random rnd(99);
  int recovered = 0, refused = 0;
  for (int iter = 0; iter < 200; ++iter) {
    CopyDir(orig, work);
    const std::string victim = work + "/" + names[rnd.Uniform(names.size())];
    if (rnd.Uniform(20) == 0) {
      std::filesystem::remove(victim);
    } else {
      std::string data = ReadAllBytes(victim);
      Mutate(&data, rnd);
      WriteAllBytes(victim, data);
    }
    auto wal = Wal::Open(work, {}, o);
    if (!wal.ok()) {
      ASSERT_EQ(wal.status().code(), absl::StatusCode::kNotFound) << wal.status();
      ++refused;
      continue;
    }
    auto r = (*wal)->ReadAll();
    if (!r.ok()) {
      const auto code = r.status().code();
      ASSERT_TRUE(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kNotFound)
          << r.status();
      ++refused;
      continue;
    }
    ++recovered;
    ASSERT_LE(r->entries.size(), all.size());
    for (size_t i = 0; i < r->entries.size(); ++i) ASSERT_EQ(r->entries[i], all[i]) << "iter " << iter;
    ASSERT_EQ(r->metadata, "fuzz-metadata");
    // What was recovered must be writable and read back clean.
    ASSERT_TRUE((*wal)->Append(9, "more").ok());
    ASSERT_TRUE((*wal)->Close().ok());
    auto again = Wal::Open(work, {}, o);
    ASSERT_TRUE(again.ok());
    auto r2 = (*again)->ReadAll();
    ASSERT_TRUE(r2.ok()) << r2.status();
    ASSERT_EQ(r2->entries.size(), r->entries.size() + 1);
    ASSERT_FALSE(r2->tail_repaired);
  }
  EXPECT_GT(recovered, 10);
  EXPECT_GT(refused, 10);
}

}  // namespace
}  // namespace etcdpp::wal
