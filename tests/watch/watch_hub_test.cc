// WatchHub on a real RocksStore, driven by hand (RunOnce), with in-memory
// sinks whose capacity the test controls. No threads, no sleeps.
#include <stdlib.h>

#include <deque>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mvcc/rocks_store.h"
#include "mvcc/watch.h"

namespace etcdpp::mvcc {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

template <typename T>
T Unwrap(absl::StatusOr<T> s) {
  if (!s.ok()) {
    ADD_FAILURE() << s.status();
    std::abort();
  }
  return std::move(s).value();
}

// A sink holding at most `capacity` responses (control responses always go
// in, as in the gRPC outbox; HasRoom is what the hub respects).
class FakeSink : public WatchSink {
 public:
  explicit FakeSink(size_t capacity = 1u << 30) : capacity_(capacity) {}
  bool HasRoom() const override { return queue.size() < capacity_; }
  void Send(WatchResponse r) override {
    queue.push_back(std::move(r));
    max_queued = std::max(max_queued, queue.size());
  }
  // The client reads everything queued.
  std::vector<WatchResponse> Drain() {
    std::vector<WatchResponse> out(queue.begin(), queue.end());
    queue.clear();
    return out;
  }
  void set_capacity(size_t c) { capacity_ = c; }
  std::deque<WatchResponse> queue;
  size_t max_queued = 0;

 private:
  size_t capacity_;
};

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/etcdpp-watch-XXXXXX";
    dir_ = mkdtemp(tmpl.data());
    Options o;
    o.path = dir_ + "/db";
    store_ = Unwrap(RocksStore::Open(o, InternalOptions{}));
    NewHub();
  }
  void TearDown() override {
    hub_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void NewHub(WatchHubOptions opts = {}) {
    opts.progress_notify_interval_ms = opts.progress_notify_interval_ms;
    hub_ = std::make_unique<WatchHub>(MakeStoreHistory(store_.get()), store_->CurrentRevision(),
                                      &clock_, opts);
  }

  // Applies one write transaction as the apply loop does and hands its
  // events to the hub (without running it).
  int64_t Write(const std::function<void(Store::WriteTxn*)>& f) {
    auto txn = store_->BeginWrite();
    f(txn.get());
    auto events = Unwrap(txn->Commit(++index_));
    // (No Store::Sync: durability is the apply loop's business, not the hub's.)
    for (const auto& e : events) log_.push_back(e);
    hub_->OnApplied(std::move(events), store_->CurrentRevision());
    return store_->CurrentRevision();
  }
  int64_t Put(const std::string& k, const std::string& v) {
    return Write([&](Store::WriteTxn* t) { Unwrap(t->Put(k, v, 0)); });
  }
  int64_t Del(const std::string& k, const std::string& end = "") {
    return Write([&](Store::WriteTxn* t) { Unwrap(t->DeleteRange(k, end)); });
  }
  void Run() {
    for (int i = 0; i < 1000 && hub_->RunOnce(); ++i) {
    }
  }

  static WatchRequest Create(const std::string& key, const std::string& end = "", int64_t rev = 0,
                             int64_t id = 0) {
    WatchRequest r;
    auto* c = r.mutable_create_request();
    c->set_key(key);
    c->set_range_end(end);
    c->set_start_revision(rev);
    c->set_watch_id(id);
    return r;
  }
  static WatchRequest Cancel(int64_t id) {
    WatchRequest r;
    r.mutable_cancel_request()->set_watch_id(id);
    return r;
  }
  static WatchRequest Progress() {
    WatchRequest r;
    r.mutable_progress_request();
    return r;
  }

  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<RocksStore> store_;
  std::unique_ptr<WatchHub> hub_;
  uint64_t index_ = 0;
  std::vector<mvccpb::Event> log_;
};

TEST_F(WatchHubTest, CreateFromNowDeliversOneResponsePerRevision) {
  Put("a", "0");  // rev 2
  Run();
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  hub_->Request(s, Create("a"));
  hub_->Request(s, Create("b", "d"));  // range [b, d)
  Run();
  auto rs = sink->Drain();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_TRUE(rs[0].created());
  EXPECT_EQ(rs[0].watch_id(), 0);
  EXPECT_EQ(rs[0].header().revision(), 2);
  EXPECT_EQ(rs[1].watch_id(), 1);

  Put("a", "1");                  // 3
  Write([](Store::WriteTxn* t) {  // 4: a txn touching both watchers
    Unwrap(t->Put("b", "x", 0));
    Unwrap(t->Put("c", "y", 0));
    Unwrap(t->Put("a", "z", 0));
    Unwrap(t->Put("d", "no", 0));
  });
  Del("a");  // 5
  Run();
  rs = sink->Drain();
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0].watch_id(), 0);
  EXPECT_EQ(rs[0].header().revision(), 3);
  EXPECT_EQ(rs[1].watch_id(), 0);
  EXPECT_EQ(rs[1].header().revision(), 4);
  ASSERT_EQ(rs[1].events_size(), 1);
  EXPECT_EQ(rs[1].events(0).kv().value(), "z");
  EXPECT_FALSE(rs[1].events(0).has_prev_kv());
  EXPECT_EQ(rs[2].watch_id(), 1);
  ASSERT_EQ(rs[2].events_size(), 2);  // b and c in one response
  EXPECT_EQ(rs[2].events(0).kv().key(), "b");
  EXPECT_EQ(rs[2].events(1).kv().key(), "c");
  EXPECT_EQ(rs[3].events(0).type(), mvccpb::Event::DELETE);
  EXPECT_EQ(rs[3].events(0).kv().mod_revision(), 5);
}

// A write acknowledged before a watch "from now" was requested is not an
// event of that watch, even if the hub had not fanned it out yet.
TEST_F(WatchHubTest, FromNowStartsAfterAcknowledgedWrites) {
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  int64_t acked = Put("a", "0");  // applied (OnApplied), not yet run
  hub_->Request(s, Create("a"));
  WatchRequest p;
  p.mutable_progress_request();
  hub_->Request(s, p);
  Run();
  auto rs = sink->Drain();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_TRUE(rs[0].created());
  EXPECT_EQ(rs[0].header().revision(), acked);
  EXPECT_EQ(rs[1].watch_id(), -1);
  EXPECT_EQ(rs[1].header().revision(), acked);
  int64_t next = Put("a", "1");
  Run();
  rs = sink->Drain();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].events(0).kv().mod_revision(), next);
}

TEST_F(WatchHubTest, PrefixFromKeyFiltersPrevKv) {
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  hub_->Request(s, Create("p/", "p0"));                 // prefix p/
  hub_->Request(s, Create("m", std::string(1, '\0')));  // from-key m
  WatchRequest nd = Create("", std::string(1, '\0'));   // every key, NOPUT, prev_kv
  nd.mutable_create_request()->add_filters(etcdserverpb::WatchCreateRequest::NOPUT);
  nd.mutable_create_request()->set_prev_kv(true);
  hub_->Request(s, nd);
  Run();
  sink->Drain();
  Put("p/1", "v1");
  Put("a", "va");
  Del("p/1");
  Run();
  auto rs = sink->Drain();
  std::map<int64_t, std::vector<std::string>> got;
  for (const auto& r : rs) {
    for (const auto& e : r.events()) {
      got[r.watch_id()].push_back(absl::StrCat(e.type(), ":", e.kv().key(), ":",
                                               e.kv().mod_revision(), ":", e.prev_kv().value()));
    }
  }
  EXPECT_EQ(got[0], (std::vector<std::string>{"0:p/1:2:", "1:p/1:4:"}));
  EXPECT_EQ(got[1], (std::vector<std::string>{"0:p/1:2:", "1:p/1:4:"}));
  EXPECT_EQ(got[2], (std::vector<std::string>{"1:p/1:4:v1"}));
}

TEST_F(WatchHubTest, ErrorsCancelAndAutoIds) {
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  hub_->Request(s, Create("a", "", 0, 7));
  hub_->Request(s, Create("b", "", 0, 7));  // duplicate
  hub_->Request(s, Create("b", "a"));       // empty range
  hub_->Request(s, Create("c"));            // auto: 0
  hub_->Request(s, Cancel(7));
  hub_->Request(s, Cancel(99));  // unknown: no answer (etcd)
  Run();
  auto rs = sink->Drain();
  ASSERT_EQ(rs.size(), 5u);
  EXPECT_EQ(rs[0].watch_id(), 7);
  EXPECT_EQ(rs[1].watch_id(), -1);
  EXPECT_TRUE(rs[1].created());
  EXPECT_TRUE(rs[1].canceled());
  EXPECT_EQ(rs[1].cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");
  EXPECT_EQ(rs[2].cancel_reason(), "mvcc: watcher range is empty");
  EXPECT_EQ(rs[3].watch_id(), 0);
  EXPECT_TRUE(rs[4].canceled());
  EXPECT_FALSE(rs[4].created());
  EXPECT_EQ(rs[4].watch_id(), 7);
  Put("a", "x");
  Run();
  EXPECT_TRUE(sink->Drain().empty());
}

TEST_F(WatchHubTest, ReplayAndCompaction) {
  for (int i = 0; i < 10; ++i) Put("k", std::to_string(i));  // revs 2..11
  Run();
  ASSERT_TRUE(store_->Compact(5, ++index_, nullptr).ok());
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  hub_->Request(s, Create("k", "", 3));  // compacted
  hub_->Request(s, Create("k", "", 5));  // the compacted revision itself is readable
  Run();
  auto rs = sink->Drain();
  ASSERT_GE(rs.size(), 3u);
  EXPECT_TRUE(rs[0].created());
  EXPECT_TRUE(rs[1].created());
  EXPECT_EQ(rs[2].watch_id(), 0);
  EXPECT_TRUE(rs[2].canceled());
  EXPECT_EQ(rs[2].compact_revision(), 5);
  EXPECT_EQ(rs[2].header().revision(), 0);
  std::vector<int64_t> revs;
  for (size_t i = 3; i < rs.size(); ++i) {
    EXPECT_EQ(rs[i].watch_id(), 1);
    for (const auto& e : rs[i].events()) revs.push_back(e.kv().mod_revision());
  }
  EXPECT_EQ(revs, (std::vector<int64_t>{5, 6, 7, 8, 9, 10, 11}));
}

TEST_F(WatchHubTest, ProgressRequestWaitsUntilSynced) {
  WatchHubOptions o;
  o.catchup_batch_revs = 10;
  NewHub(o);
  for (int i = 0; i < 300; ++i) Put("k", "v");  // revs 2..301
  Run();
  auto sink = std::make_shared<FakeSink>(/*capacity=*/10);
  int64_t s = hub_->OpenStream(sink);
  hub_->Request(s, Create("k", "", 2));
  hub_->Request(s, Progress());
  Run();
  // Not synced yet: only responses with events (the sink is full).
  for (const auto& r : sink->queue) EXPECT_NE(r.watch_id(), -1);
  int64_t last = 0;
  bool progressed = false;
  for (int round = 0; round < 100 && !progressed; ++round) {
    for (const auto& r : sink->Drain()) {
      if (r.watch_id() == -1) {
        EXPECT_EQ(r.header().revision(), 301);
        EXPECT_EQ(last, 301);  // after every event
        progressed = true;
      }
      for (const auto& e : r.events()) {
        EXPECT_EQ(e.kv().mod_revision(), last == 0 ? 2 : last + 1);
        last = e.kv().mod_revision();
      }
    }
    Run();
  }
  EXPECT_TRUE(progressed);
}

TEST_F(WatchHubTest, PeriodicProgressNotify) {
  WatchHubOptions o;
  o.progress_notify_interval_ms = 1000;
  NewHub(o);
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  WatchRequest c = Create("a");
  c.mutable_create_request()->set_progress_notify(true);
  hub_->Request(s, c);
  hub_->Request(s, Create("b"));
  Run();
  sink->Drain();
  clock_.Advance(std::chrono::milliseconds(1001));
  Run();
  auto rs = sink->Drain();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].watch_id(), 0);
  EXPECT_EQ(rs[0].events_size(), 0);
  EXPECT_EQ(rs[0].header().revision(), 1);
  Put("a", "x");  // events in the interval: no notification at its end
  Run();
  sink->Drain();
  clock_.Advance(std::chrono::milliseconds(1001));
  Run();
  EXPECT_TRUE(sink->Drain().empty());
  clock_.Advance(std::chrono::milliseconds(1001));
  Run();
  rs = sink->Drain();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].header().revision(), 2);
}

TEST_F(WatchHubTest, FragmentsLargeResponses) {
  WatchHubOptions o;
  o.fragment_bytes = 1000;
  NewHub(o);
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  WatchRequest c = Create("f/", "f0");
  c.mutable_create_request()->set_fragment(true);
  hub_->Request(s, c);
  hub_->Request(s, Create("f/", "f0"));  // no fragment
  Run();
  sink->Drain();
  Write([](Store::WriteTxn* t) {
    for (int i = 0; i < 10; ++i) Unwrap(t->Put("f/" + std::to_string(i), std::string(300, 'x'), 0));
  });
  Run();
  auto rs = sink->Drain();
  int frag_events = 0, whole = 0, frags = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    if (rs[i].watch_id() == 0) {
      ++frags;
      frag_events += rs[i].events_size();
      EXPECT_LT(rs[i].ByteSizeLong(), 1000u);
      EXPECT_EQ(rs[i].fragment(), frag_events < 10) << i;
    } else {
      whole += rs[i].events_size();
      EXPECT_FALSE(rs[i].fragment());
    }
  }
  EXPECT_EQ(frag_events, 10);
  EXPECT_EQ(whole, 10);
  EXPECT_GE(frags, 4);
}

// A client that stops reading: its watchers are moved aside once its sink is
// full, nobody else waits, and it catches up without gaps once it reads.
TEST_F(WatchHubTest, SlowConsumerIsMovedAsideAndCatchesUp) {
  auto slow = std::make_shared<FakeSink>(/*capacity=*/5);
  auto fast = std::make_shared<FakeSink>();
  int64_t s1 = hub_->OpenStream(slow);
  int64_t s2 = hub_->OpenStream(fast);
  hub_->Request(s1, Create("k"));
  hub_->Request(s2, Create("k"));
  Run();
  slow->Drain();
  fast->Drain();
  for (int i = 0; i < 1000; ++i) {
    Put("k", std::to_string(i));
    if (i % 10 == 0) Run();
  }
  Run();
  EXPECT_LE(slow->max_queued, 5u);
  EXPECT_EQ(fast->Drain().size(), 1000u);
  EXPECT_EQ(hub_->GetStats().unsynced, 1);
  int64_t next = 2;
  for (int round = 0; round < 1000 && next <= 1001; ++round) {
    for (const auto& r : slow->Drain()) {
      for (const auto& e : r.events()) {
        ASSERT_EQ(e.kv().mod_revision(), next);
        ++next;
      }
    }
    Run();
  }
  EXPECT_EQ(next, 1002);
  EXPECT_EQ(hub_->GetStats().unsynced, 0);
}

TEST_F(WatchHubTest, PendingOverflowReplaysFromStore) {
  WatchHubOptions o;
  o.max_pending_bytes = 2000;
  NewHub(o);
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  hub_->Request(s, Create("k"));
  Run();
  sink->Drain();
  for (int i = 0; i < 200; ++i) Put("k", std::to_string(i));  // never run: overflows
  Run();
  EXPECT_EQ(hub_->GetStats().overflows, 1);
  int64_t next = 2;
  for (const auto& r : sink->Drain()) {
    for (const auto& e : r.events()) ASSERT_EQ(e.kv().mod_revision(), next++);
  }
  EXPECT_EQ(next, 202);
}

// The key index (hash map + interval index) against brute force: many
// synced watchers on single keys, ranges, prefixes and from-key ranges,
// some canceled halfway (the interval index is rebuilt), random puts.
TEST_F(WatchHubTest, ManyRangeWatchersMatchBruteForce) {
  std::mt19937 rng(42);
  auto key = [&] {
    std::string k;
    for (int i = 0, n = 1 + static_cast<int>(rng() % 3); i < n; ++i) {
      k.push_back(static_cast<char>('a' + rng() % 6));
    }
    return k;
  };
  struct W {
    std::string key, end;
    bool canceled = false;
    std::vector<int64_t> got, want;
  };
  auto sink = std::make_shared<FakeSink>();
  int64_t s = hub_->OpenStream(sink);
  std::vector<W> ws(600);
  for (size_t i = 0; i < ws.size(); ++i) {
    W& w = ws[i];
    w.key = key();
    switch (i % 4) {
      case 0:
        break;  // single key
      case 1:
        w.end = key();
        if (w.end <= w.key) w.end = w.key + "z";
        break;
      case 2:
        w.end = w.key;
        w.end.back()++;  // prefix
        break;
      case 3:
        w.end = std::string(1, '\0');  // from key
        break;
    }
    hub_->Request(s, Create(w.key, w.end, 0, static_cast<int64_t>(i) + 1));
  }
  Run();
  sink->Drain();
  auto contains = [](const W& w, const std::string& k) {
    if (w.end.empty()) return k == w.key;
    if (w.end == std::string(1, '\0')) return k >= w.key;
    return k >= w.key && k < w.end;
  };
  for (int step = 0; step < 400; ++step) {
    if (step == 200) {
      Run();  // deliver everything before the cancels
      for (size_t i = 0; i < ws.size(); i += 3) {
        ws[i].canceled = true;
        hub_->Request(s, Cancel(static_cast<int64_t>(i) + 1));
      }
      Run();  // the cancels take effect before the next write
    }
    std::string k = key();
    int64_t rev = Put(k, "v");
    if (step >= 200 || step % 7 == 0) Run();  // several revisions per round too
    for (auto& w : ws) {
      bool live = !w.canceled || step < 200;
      if (live && contains(w, k)) w.want.push_back(rev);
    }
  }
  Run();
  for (const auto& r : sink->Drain()) {
    if (r.created() || r.canceled()) continue;
    ASSERT_GE(r.watch_id(), 1);
    for (const auto& e : r.events()) ws[r.watch_id() - 1].got.push_back(e.kv().mod_revision());
  }
  int64_t matched = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    EXPECT_EQ(ws[i].got, ws[i].want) << i << " " << ws[i].key << ".." << ws[i].end;
    matched += static_cast<int64_t>(ws[i].got.size());
  }
  EXPECT_GT(matched, 10000);
}

// Random puts, deletes, txns and compactions; watchers on random ranges
// created at random times from random revisions, on sinks that fill up and
// drain at random. Every watcher's stream must equal the history filtered to
// its range from its start revision: ordered, no gaps, no duplicates, one
// response per revision - or a prefix of it followed by a compaction cancel
// when its next revision was compacted.
TEST_F(WatchHubTest, PropertyRandomHistory) {
  int64_t total_events = 0, compact_cancels = 0, watchers = 0;
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE(seed);
    TearDown();
    SetUp();
    log_.clear();
    index_ = 0;
    WatchHubOptions o;
    o.catchup_batch_revs = 1 + 7 * (seed - 1);  // 1, 8, 15 revisions per catch-up read
    NewHub(o);
    std::mt19937 rng(seed);
    auto rnd = [&](int n) { return static_cast<int>(rng() % n); };
    auto key = [&] { return std::string(1, static_cast<char>('a' + rnd(8))); };
    struct W {
      std::shared_ptr<FakeSink> sink;
      int64_t stream;
      std::string key, end;
      int64_t start;
      int64_t created_at;  // hub revision in the created response
      std::vector<WatchResponse> got;
    };
    std::vector<W> ws;
    int64_t compacted = 0;
    std::set<int64_t> compactions;
    auto drain = [&](W& w) {
      for (auto& r : w.sink->Drain()) w.got.push_back(std::move(r));
    };
    for (int step = 0; step < 600; ++step) {
      int op = rnd(100);
      if (op < 40) {
        Put(key(), std::to_string(step));
      } else if (op < 50) {
        std::string a = key(), b = key();
        if (a > b) std::swap(a, b);
        Del(a, b == a ? "" : b);
      } else if (op < 60) {
        Write([&](Store::WriteTxn* t) {
          int n = 1 + rnd(4);
          for (int i = 0; i < n; ++i) {
            if (rnd(3) == 0) {
              Unwrap(t->DeleteRange(key(), ""));
            } else {
              Unwrap(t->Put(key(), std::to_string(step), 0));
            }
          }
        });
      } else if (op < 61) {
        int64_t cur = store_->CurrentRevision();
        if (cur > compacted + 1) {
          int64_t c = compacted + 1 + rnd(std::max<int>(1, static_cast<int>(cur - compacted) / 3));
          if (c > compacted && c <= cur) {
            ASSERT_TRUE(store_->Compact(c, ++index_, nullptr).ok());
            compacted = c;
            compactions.insert(c);
          }
        }
      } else if (op < 68 && ws.size() < 40) {
        W w;
        w.sink = std::make_shared<FakeSink>(1 + rnd(20));
        w.stream = hub_->OpenStream(w.sink);
        w.key = key();
        int kind = rnd(3);
        if (kind == 1) w.end = std::string(1, static_cast<char>(w.key[0] + 1 + rnd(3)));
        if (kind == 2) w.end = std::string(1, '\0');
        int64_t cur = store_->CurrentRevision();
        w.start = rnd(4) == 0 ? 0 : 1 + rnd(static_cast<int>(cur + 3));
        hub_->Request(w.stream, Create(w.key, w.end, w.start));
        ws.push_back(std::move(w));
      } else if (op < 85) {
        hub_->RunOnce();
      } else {
        if (!ws.empty()) drain(ws[rnd(static_cast<int>(ws.size()))]);
      }
    }
    // Let everyone catch up.
    for (int round = 0; round < 2000; ++round) {
      for (auto& w : ws) drain(w);
      if (!hub_->RunOnce() && hub_->GetStats().unsynced == 0) break;
    }
    for (auto& w : ws) drain(w);
    const int64_t final_rev = store_->CurrentRevision();
    for (size_t i = 0; i < ws.size(); ++i) {
      SCOPED_TRACE(i);
      const W& w = ws[i];
      ASSERT_FALSE(w.got.empty());
      ASSERT_TRUE(w.got[0].created());
      const int64_t created_rev = w.got[0].header().revision();
      const int64_t from = w.start == 0 ? created_rev + 1 : w.start;
      auto contains = [&](const std::string& k) {
        if (w.end.empty()) return k == w.key;
        if (w.end == std::string(1, '\0')) return k >= w.key;
        return k >= w.key && k < w.end;
      };
      // Expected: revision -> events, from `from` on.
      std::map<int64_t, std::vector<std::string>> want;
      for (const auto& e : log_) {
        // Tombstones at a compaction revision itself are gone from the
        // history (etcd's rule too): a replay starting there cannot see them.
        if (e.type() == mvccpb::Event::DELETE && compactions.count(e.kv().mod_revision())) continue;
        if (e.kv().mod_revision() >= from && contains(e.kv().key())) {
          want[e.kv().mod_revision()].push_back(
              absl::StrCat(e.type(), e.kv().key(), "=", e.kv().value(), "@", e.kv().version()));
        }
      }
      std::map<int64_t, std::vector<std::string>> got;
      int64_t last = 0;
      int64_t compact_cancel = 0;
      for (size_t j = 1; j < w.got.size(); ++j) {
        const auto& r = w.got[j];
        ASSERT_EQ(compact_cancel, 0) << "response after the compaction cancel";
        ASSERT_FALSE(r.created());
        if (r.compact_revision() != 0) {
          EXPECT_TRUE(r.canceled());
          compact_cancel = r.compact_revision();
          continue;
        }
        ASSERT_GT(r.events_size(), 0);
        // Revisions strictly increase from one response to the next (so no
        // revision is split or repeated) and never decrease within one.
        ASSERT_GT(r.events(0).kv().mod_revision(), last) << "out of order, split or duplicated";
        EXPECT_GE(r.header().revision(), r.events(r.events_size() - 1).kv().mod_revision());
        for (const auto& e : r.events()) {
          const int64_t rev = e.kv().mod_revision();
          ASSERT_GE(rev, last);
          last = rev;
          if (e.type() == mvccpb::Event::DELETE && compactions.count(rev)) continue;
          got[rev].push_back(
              absl::StrCat(e.type(), e.kv().key(), "=", e.kv().value(), "@", e.kv().version()));
        }
      }
      if (compact_cancel != 0) {
        // A prefix of the history, then the cancel; the next revision it
        // needed was compacted.
        int64_t next = last == 0 ? from : last + 1;
        EXPECT_LT(next, compact_cancel);
        for (auto it = want.begin(); it != want.end();) {
          it = it->first > last ? want.erase(it) : std::next(it);
        }
      }
      ++watchers;
      compact_cancels += compact_cancel != 0;
      for (const auto& [r, evs] : got) total_events += static_cast<int64_t>(evs.size());
      EXPECT_EQ(got, want) << "watch " << w.key << ".." << w.end << " from " << w.start
                           << " final rev " << final_rev;
    }
  }
  // The run exercised what it claims to.
  EXPECT_GT(watchers, 60);
  EXPECT_GT(compact_cancels, 0);
  EXPECT_GT(total_events, 1000);
  std::printf("property: %lld watchers, %lld events checked, %lld compaction cancels\n",
              static_cast<long long>(watchers), static_cast<long long>(total_events),
              static_cast<long long>(compact_cancels));
}

}  // namespace
}  // namespace etcdpp::mvcc
