// WAL group-commit benchmark: records/s and MB/s with 1, 8 and 64 concurrent
// appenders (each Append waits until its record is durable), next to the raw
// fdatasync rate of the same disk measured in the same run.
//
//   wal_bench [--dir=PATH] [--seconds=2] [--rounds=3] [--record-bytes=256] [--threads=1,8,64]
//
// PATH (default $TMPDIR or /tmp) must be on the disk to measure; the program
// makes and removes its own subdirectory there. Prints a Markdown table.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "wal/wal.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string dir;
  double seconds = 2;
  size_t record_bytes = 256;
  std::vector<int> threads = {1, 8, 64};
  int rounds = 3;
};

Flags Parse(int argc, char** argv) {
  Flags f;
  const char* tmp = std::getenv("TMPDIR");
  f.dir = tmp && *tmp ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* name) -> const char* {
      size_t n = std::strlen(name);
      return a.compare(0, n, name) == 0 ? a.c_str() + n : nullptr;
    };
    if (const char* v = val("--dir=")) {
      f.dir = v;
    } else if (const char* v = val("--seconds=")) {
      f.seconds = std::atof(v);
    } else if (const char* v = val("--record-bytes=")) {
      f.record_bytes = static_cast<size_t>(std::atol(v));
    } else if (const char* v = val("--rounds=")) {
      f.rounds = std::max(1, std::atoi(v));
    } else if (const char* v = val("--threads=")) {
      f.threads.clear();
      for (const char* p = v; *p;) {
        f.threads.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      std::exit(2);
    }
  }
  return f;
}

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Appends `record_bytes` at a time to a preallocated file, fdatasync after
// each: the ceiling for one writer that syncs every record.
// With `spin`, another thread keeps a CPU busy meanwhile: on VMs an idle
// guest CPU can add a timer tick to every I/O completion, which a busy WAL
// never sees; this shows the disk's rate without that artifact.
double RawFdatasyncRate(const std::string& dir, size_t record_bytes, double seconds, bool spin) {
  std::atomic<bool> stop{false};
  std::thread spinner;
  if (spin) {
    spinner = std::thread([&] {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  }
  const std::string path = dir + "/raw.dat";
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0 || ::fallocate(fd, 0, 0, 64 << 20) != 0) {
    std::perror("raw file");
    std::exit(1);
  }
  std::string buf(record_bytes, 'r');
  uint64_t ops = 0;
  off_t off = 0;
  const auto start = Clock::now();
  while (Since(start) < seconds) {
    if (::pwrite(fd, buf.data(), buf.size(), off) != static_cast<ssize_t>(buf.size()) ||
        ::fdatasync(fd) != 0) {
      std::perror("raw write");
      std::exit(1);
    }
    off = (off + static_cast<off_t>(buf.size())) % (60 << 20);
    ++ops;
  }
  const double rate = static_cast<double>(ops) / Since(start);
  stop = true;
  if (spinner.joinable()) spinner.join();
  ::close(fd);
  ::unlink(path.c_str());
  return rate;
}

struct Result {
  int threads;
  double records_per_s;
  double mb_per_s;
  double syncs_per_s;
  double records_per_sync;
  double p50_us, p99_us;
};

Result RunWal(const std::string& dir, int threads, size_t record_bytes, double seconds) {
  std::filesystem::remove_all(dir);
  auto wal = etcdpp::wal::Wal::Create(dir, "bench");
  if (!wal.ok()) {
    std::fprintf(stderr, "%s\n", std::string(wal.status().ToString()).c_str());
    std::exit(1);
  }
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lat(static_cast<size_t>(threads));
  std::vector<std::thread> ts;
  const std::string payload(record_bytes, 'w');
  const auto before = (*wal)->GetStats();
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      auto& l = lat[static_cast<size_t>(t)];
      while (!stop.load(std::memory_order_relaxed)) {
        const auto t0 = Clock::now();
        auto idx = (*wal)->Append(1, payload);
        if (!idx.ok()) {
          std::fprintf(stderr, "%s\n", std::string(idx.status().ToString()).c_str());
          std::exit(1);
        }
        l.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : ts) th.join();
  const double elapsed = Since(start);
  const auto after = (*wal)->GetStats();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  const double n = static_cast<double>(all.size());
  const double syncs = static_cast<double>(after.syncs - before.syncs);
  Result r{threads,
           n / elapsed,
           n * static_cast<double>(record_bytes) / elapsed / 1e6,
           syncs / elapsed,
           syncs > 0 ? n / syncs : 0,
           all.empty() ? 0 : all[all.size() / 2],
           all.empty() ? 0 : all[std::min(all.size() - 1, all.size() * 99 / 100)]};
  if (!(*wal)->Close().ok()) std::exit(1);
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  const Flags f = Parse(argc, argv);
  const std::string dir = f.dir + "/etcdpp-wal-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  // The disk's sync latency on a shared VM drifts with the host's load, so
  // every measurement is repeated in interleaved rounds and the median shown.
  std::vector<double> raw, raw_busy;
  std::vector<std::vector<Result>> runs(f.threads.size());
  for (int round = 0; round < f.rounds; ++round) {
    raw.push_back(RawFdatasyncRate(dir, f.record_bytes, f.seconds, false));
    raw_busy.push_back(RawFdatasyncRate(dir, f.record_bytes, f.seconds, true));
    for (size_t i = 0; i < f.threads.size(); ++i) {
      runs[i].push_back(RunWal(dir + "/wal", f.threads[i], f.record_bytes, f.seconds));
    }
  }
  const double raw_m = Median(raw), raw_busy_m = Median(raw_busy);
  std::printf("dir: %s, record payload: %zu bytes, %d interleaved rounds of %.1f s per run, medians\n\n",
              f.dir.c_str(), f.record_bytes, f.rounds, f.seconds);
  std::printf("raw fdatasync (write %zu B + fdatasync, one writer): %.0f/s (rounds:", f.record_bytes, raw_m);
  for (double r : raw) std::printf(" %.0f", r);
  std::printf(")\nraw fdatasync, same, with a second thread keeping a CPU busy: %.0f/s (rounds:", raw_busy_m);
  for (double r : raw_busy) std::printf(" %.0f", r);
  std::printf(")\n\n");
  std::printf("| appenders | records/s | MB/s | fdatasyncs/s | records/fdatasync | p50 us | p99 us | x raw rate | x busy raw rate |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; i < f.threads.size(); ++i) {
    auto m = [&](double Result::*field) {
      std::vector<double> v;
      for (const auto& r : runs[i]) v.push_back(r.*field);
      return Median(v);
    };
    const double rps = m(&Result::records_per_s);
    std::printf("| %d | %.0f | %.2f | %.0f | %.1f | %.0f | %.0f | %.1fx | %.1fx |\n", f.threads[i], rps,
                m(&Result::mb_per_s), m(&Result::syncs_per_s), m(&Result::records_per_sync),
                m(&Result::p50_us), m(&Result::p99_us), rps / raw_m, rps / raw_busy_m);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
