// A child process appends and acknowledges in a loop (several threads, group
// commit, tiny segments, writes cut into small pieces so a kill lands inside
// records) and is SIGKILLed at random moments, many times. After each kill
// every acknowledged record must be in the log, and every thread's records
// must appear in the order it wrote them, without gaps: nothing
// unacknowledged appears out of order.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

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

constexpr int kThreads = 4;
constexpr int kRounds = 40;

struct Ack {
  uint64_t thread;
  uint64_t seq;
  uint64_t index;
};

Options ChildOptions() {
  Options o;
  o.segment_size_bytes = 16 << 10;
  o.max_wals = 0;
  o.faults.write_chunk_bytes = 100;
  return o;
}

bool ParseData(const std::string& d, uint64_t* t, uint64_t* seq) {
  unsigned long long a, b;
  if (std::sscanf(d.c_str(), "%llu:%llu:", &a, &b) != 2) return false;
  *t = a;
  *seq = b;
  return true;
}

[[noreturn]] void Die(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "child: %s: %s\n", what, std::string(s.ToString()).c_str());
  _exit(3);
}

[[noreturn]] void RunChild(const std::string& dir, int ack_fd, uint64_t seed) {
  std::unique_ptr<Wal> wal;
  std::vector<uint64_t> next(kThreads, 0);
  if (!Wal::Exists(dir)) {
    auto w = Wal::Create(dir, "crash-test", ChildOptions());
    if (!w.ok()) Die("create", w.status());
    wal = std::move(*w);
  } else {
    auto w = Wal::Open(dir, {}, ChildOptions());
    if (!w.ok()) Die("open", w.status());
    auto r = (*w)->ReadAll();
    if (!r.ok()) Die("read", r.status());
    for (const auto& e : r->entries) {
      uint64_t t, seq;
      if (!ParseData(e.data, &t, &seq) || t >= kThreads) Die("parse", absl::DataLossError(e.data));
      next[t] = seq + 1;
    }
    wal = std::move(*w);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Random rnd(seed * 31 + static_cast<uint64_t>(t));
      for (uint64_t seq = next[t];; ++seq) {
        std::string data = absl::StrCat(t, ":", seq, ":", std::string(rnd.Uniform(700), 'x'));
        auto idx = wal->Append(1, data);
        if (!idx.ok()) Die("append", idx.status());
        Ack a{static_cast<uint64_t>(t), seq, *idx};
        if (::write(ack_fd, &a, sizeof(a)) != sizeof(a)) _exit(5);  // atomic: < PIPE_BUF
      }
    });
  }
  for (auto& th : threads) th.join();
  _exit(0);
}

bool ReadAck(int fd, Ack* a) {
  size_t got = 0;
  while (got < sizeof(*a)) {
    ssize_t n = ::read(fd, reinterpret_cast<char*>(a) + got, sizeof(*a) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

void Verify(const std::string& dir, const std::map<uint64_t, Ack>& acked, int round) {
  auto w = Wal::Open(dir, {}, ChildOptions());
  ASSERT_TRUE(w.ok()) << "round " << round << ": " << w.status();
  auto r = (*w)->ReadAll();
  ASSERT_TRUE(r.ok()) << "round " << round << ": " << r.status();
  std::vector<uint64_t> next(kThreads, 0);
  for (size_t i = 0; i < r->entries.size(); ++i) {
    const Entry& e = r->entries[i];
    ASSERT_EQ(e.index, i + 1);
    uint64_t t, seq;
    ASSERT_TRUE(ParseData(e.data, &t, &seq)) << "round " << round;
    ASSERT_LT(t, static_cast<uint64_t>(kThreads));
    ASSERT_EQ(seq, next[t]) << "round " << round << ": thread " << t << " out of order at index " << e.index;
    next[t] = seq + 1;
  }
  for (const auto& [index, a] : acked) {
    ASSERT_LE(index, r->entries.size()) << "round " << round << ": acknowledged index lost";
    uint64_t t, seq;
    ASSERT_TRUE(ParseData(r->entries[index - 1].data, &t, &seq));
    ASSERT_EQ(t, a.thread) << "round " << round << " index " << index;
    ASSERT_EQ(seq, a.seq) << "round " << round << " index " << index;
  }
}

// Simulates a power cut on top of the kill: bytes of the last segment after
// the newest acknowledged record may never have reached the disk, so zero a
// random suffix of them (at any byte, as a partly copied write would leave).
void LoseUnsyncedTail(const std::string& dir, uint64_t max_acked, Random& rnd) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (ParseSegmentName(e.path().filename().string())) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  const std::string path = dir + "/" + names.back();
  std::string data = ReadAllBytes(path);
  ChainState chain;
  uint64_t safe = 0;
  auto scan = ScanSegment(path, data, true, &chain, [&](const RecordView& r) {
    const uint64_t end = r.offset + RecordBytes(r.payload.size());
    if (r.type != RecordType::kEntry || GetU64(r.payload.data()) <= max_acked) safe = end;
    return absl::OkStatus();
  });
  ASSERT_TRUE(scan.ok()) << scan.status();
  // `safe` ends the header and every acknowledged record of this segment;
  // everything after it may be lost.
  ASSERT_LE(safe, scan->valid_end);
  const uint64_t cut = safe + rnd.Uniform(scan->valid_end - safe + 1);
  std::fill(data.begin() + static_cast<long>(cut), data.end(), '\0');
  WriteAllBytes(path, data);
}

TEST(WalCrashTest, AcknowledgedRecordsSurviveSigkill) {
  TempDir tmp;
  const std::string dir = tmp.Sub("wal");
  Random rnd(20261122);
  std::map<uint64_t, Ack> acked;  // by index
  int repaired_rounds = 0;
  for (int round = 0; round < kRounds; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const uint64_t seed = rnd.Next();
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      RunChild(dir, fds[1], seed);
    }
    ::close(fds[1]);
    // Kill after a random number of acknowledgements (sometimes at once,
    // during open or repair).
    const uint64_t target = rnd.Uniform(5) == 0 ? 0 : rnd.Uniform(150);
    Ack a;
    uint64_t got = 0;
    bool alive = true;
    while (got < target && (alive = ReadAck(fds[0], &a))) {
      acked[a.index] = a;
      ++got;
    }
    ::kill(pid, SIGKILL);
    while (ReadAck(fds[0], &a)) acked[a.index] = a;  // acks sent before death
    ::close(fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(alive && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "round " << round << ": child died by itself, status " << status;
    if (!Wal::Exists(dir)) {
      ASSERT_TRUE(acked.empty());
      continue;
    }
    if (round % 3 == 1 && !acked.empty()) {
      LoseUnsyncedTail(dir, acked.rbegin()->first, rnd);
      if (::testing::Test::HasFatalFailure()) return;
    }
    // Every other round, check a copy so the child itself must repair the tail.
    if (round % 2 == 0) {
      Verify(dir, acked, round);
    } else {
      const std::string copy = tmp.Sub("copy");
      CopyDir(dir, copy);
      std::filesystem::remove(copy + "/LOCK");
      Verify(copy, acked, round);
    }
    if (::testing::Test::HasFatalFailure()) return;
    ++repaired_rounds;
  }
  EXPECT_GT(acked.size(), static_cast<size_t>(kRounds));
  std::printf("crash test: %d rounds, %zu acknowledged records\n", repaired_rounds, acked.size());
}

}  // namespace
}  // namespace etcdpp::wal
