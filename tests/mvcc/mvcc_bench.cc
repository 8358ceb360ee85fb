// A quick throughput figure for the MVCC store (not a test):
//   mvcc_bench [dir] [keys]
// Writes `keys` keys twice (one put per txn, Sync every 100 commits), then
// times single-key reads, 100-key ranges, ranges at an old revision, a
// compaction, and a reopen.
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/random.h"
#include "mvcc/rocks_store.h"

using namespace etcdpp;
using namespace etcdpp::mvcc;
using Clk = std::chrono::steady_clock;

static double Secs(Clk::time_point t0) {
  return std::chrono::duration<double>(Clk::now() - t0).count();
}
static std::string Key(int i) {
  char buf[32];
  snprintf(buf, sizeof buf, "/registry/pods/%08d", i);
  return buf;
}
template <typename T>
static T Must(absl::StatusOr<T> s) {
  if (!s.ok()) {
    fprintf(stderr, "%s\n", s.status().ToString().c_str());
    abort();
  }
  return std::move(s).value();
}

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/tmp/etcdpp-mvcc-bench";
  const int n = argc > 2 ? atoi(argv[2]) : 50000;
  std::filesystem::remove_all(dir);
  Options o;
  o.path = dir;
  auto store = Must(RocksStore::Open(o, InternalOptions{}));
  const std::string value(256, 'v');
  uint64_t index = 0;
  auto t0 = Clk::now();
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < n; ++i) {
      auto txn = store->BeginWrite();
      Must(txn->Put(Key(i), value, 0));
      Must(txn->Commit(++index));
      if (index % 100 == 0 && !store->Sync().ok()) abort();
    }
  }
  double put_s = Secs(t0);
  printf("puts: %d in %.2fs = %.0f/s (1 put per txn, Sync every 100)\n", 2 * n, put_s,
         2 * n / put_s);
  const int64_t mid_rev = 1 + n;  // after round 0

  Random rnd(1);
  const int reads = 100000;
  t0 = Clk::now();
  for (int i = 0; i < reads; ++i) {
    auto r = Must(store->Range(Key(static_cast<int>(rnd.Uniform(n))), "", RangeOptions{}));
    if (r.kvs.size() != 1) abort();
  }
  double get_s = Secs(t0);
  printf("single-key ranges: %.0f/s\n", reads / get_s);
  t0 = Clk::now();
  for (int i = 0; i < reads; ++i) {
    auto r = Must(store->Range("/registry/pods/zz", "", RangeOptions{}));
    if (!r.kvs.empty()) abort();
  }
  printf("absent-key ranges: %.0f/s\n", reads / Secs(t0));

  const int scans = 5000;
  t0 = Clk::now();
  for (int i = 0; i < scans; ++i) {
    int s = static_cast<int>(rnd.Uniform(n - 100));
    auto r = Must(store->Range(Key(s), Key(s + 100), RangeOptions{}));
    if (r.kvs.size() != 100) abort();
  }
  printf("100-key ranges (newest): %.0f/s\n", scans / Secs(t0));
  RangeOptions old;
  old.rev = mid_rev;
  t0 = Clk::now();
  for (int i = 0; i < scans; ++i) {
    int s = static_cast<int>(rnd.Uniform(n - 100));
    auto r = Must(store->Range(Key(s), Key(s + 100), old));
    if (r.kvs.size() != 100) abort();
  }
  printf("100-key ranges (at old rev): %.0f/s\n", scans / Secs(t0));
  RangeOptions co;
  co.count_only = true;
  t0 = Clk::now();
  auto all = Must(store->Range("/registry/", "/registry0", co));
  printf("count of all %ld keys: %.1f ms\n", static_cast<long>(all.count), Secs(t0) * 1e3);

  t0 = Clk::now();
  auto ev = Must(store->ReadEvents(2, 0, 0, false));
  printf("watch replay of %zu events: %.0f events/s\n", ev.events.size(),
         ev.events.size() / Secs(t0));

  t0 = Clk::now();
  if (!store->Compact(store->CurrentRevision(), ++index, nullptr).ok()) abort();
  store->WaitForCompactor();
  printf("compaction of %d versions: %.2fs (background)\n", n, Secs(t0));
  printf("size: %ld bytes (in use %ld)\n", static_cast<long>(store->SizeBytes()),
         static_cast<long>(store->SizeInUseBytes()));

  store.reset();
  t0 = Clk::now();
  store = Must(RocksStore::Open(o, InternalOptions{}));
  printf("reopen: %.1f ms (rev %ld)\n", Secs(t0) * 1e3,
         static_cast<long>(store->CurrentRevision()));
  store.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
