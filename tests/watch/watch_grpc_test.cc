// Process-level tests of the Watch service: a real etcdpp (one per test, on
// free loopback ports and its own temp dir) driven by a gRPC client, checking
// the responses etcd 3.4 gives (created, cancel, duplicate ID, compaction,
// progress, fragment) and that a client that never reads slows nobody and
// costs bounded memory.
//
//   watch_grpc_test --bin build/etcdpp [gtest flags]
//
// With --bin "$(command -v etcd)" every test passes against etcd 3.4.23 too,
// except the memory bound of the slow-consumer test (etcd buffers what a
// client does not read: +75 MB there, etcdpp +10 MB).
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rpc.grpc.pb.h"
#include "tests/common/free_port.h"

namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;
using namespace std::chrono_literals;

std::string g_bin;

int FreePort() { return etcdpp::testing::FreeLoopbackPort(); }

// Resident memory of a process in KiB (/proc/<pid>/status VmRSS).
int64_t RssKb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// A bidirectional Watch stream; a reader thread queues responses unless the
// test wants a client that never reads.
class WatchStream {
 public:
  WatchStream(etcdserverpb::Watch::Stub* stub, bool read = true) {
    stream_ = stub->Watch(&ctx_);
    if (read) reader_ = std::thread([this] { ReadLoop(); });
  }
  ~WatchStream() {
    ctx_.TryCancel();
    if (reader_.joinable()) reader_.join();
  }
  void Send(const WatchRequest& r) { ASSERT_TRUE(stream_->Write(r)); }
  void Create(const std::string& key, const std::string& end = "", int64_t rev = 0, int64_t id = 0,
              bool progress = false, bool fragment = false) {
    WatchRequest r;
    auto* c = r.mutable_create_request();
    c->set_key(key);
    c->set_range_end(end);
    c->set_start_revision(rev);
    c->set_watch_id(id);
    c->set_progress_notify(progress);
    c->set_fragment(fragment);
    Send(r);
  }
  // The next response, or nullopt after `timeout`.
  std::optional<WatchResponse> Next(std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, timeout, [&] { return !queue_.empty() || done_; })) return std::nullopt;
    if (queue_.empty()) return std::nullopt;
    WatchResponse r = std::move(queue_.front());
    queue_.pop_front();
    return r;
  }
  // Starts reading later (for a client that did not read at first).
  void StartReading() {
    reader_ = std::thread([this] { ReadLoop(); });
  }

 private:
  void ReadLoop() {
    WatchResponse r;
    while (stream_->Read(&r)) {
      std::lock_guard<std::mutex> l(mu_);
      queue_.push_back(r);
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> l(mu_);
    done_ = true;
    cv_.notify_all();
  }
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<WatchRequest, WatchResponse>> stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WatchResponse> queue_;
  bool done_ = false;
};

class WatchGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}); }
  void Start(const std::vector<std::string>& flags) {
    char tmpl[] = "/tmp/etcdpp-watch-grpc-XXXXXX";
    dir_ = mkdtemp(tmpl);
    port_ = FreePort();
    int peer = FreePort();
    const std::string url = "http://127.0.0.1:" + std::to_string(port_);
    const std::string purl = "http://127.0.0.1:" + std::to_string(peer);
    std::vector<std::string> args = {g_bin,
                                     "--name=w",
                                     "--data-dir=" + dir_ + "/data",
                                     "--listen-client-urls=" + url,
                                     "--advertise-client-urls=" + url,
                                     "--listen-peer-urls=" + purl,
                                     "--initial-advertise-peer-urls=" + purl,
                                     "--initial-cluster=w=" + purl};
    args.insert(args.end(), flags.begin(), flags.end());
    // Everything the child needs is prepared before fork(): a child of a
    // multi-threaded process may only exec.
    const std::string log = dir_ + "/server.log";
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) dup2(fd, 2);
      execv(argv[0], argv.data());
      _exit(127);
    }
    // clientv3's default: accept responses of any size.
    grpc::ChannelArguments ca;
    ca.SetMaxReceiveMessageSize(INT32_MAX);
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_),
                                         grpc::InsecureChannelCredentials(), ca);
    kv_ = etcdserverpb::KV::NewStub(channel_);
    watch_ = etcdserverpb::Watch::NewStub(channel_);
    auto give_up = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < give_up) {
      grpc::ClientContext ctx;
      ctx.set_wait_for_ready(true);
      ctx.set_deadline(std::chrono::system_clock::now() + 200ms);
      etcdserverpb::RangeRequest req;
      req.set_key("ready?");
      etcdserverpb::RangeResponse resp;
      if (kv_->Range(&ctx, req, &resp).ok()) return;
    }
    FAIL() << "server did not start; see " << dir_ << "/server.log";
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }

  int64_t Put(const std::string& k, const std::string& v) {
    grpc::ClientContext ctx;
    etcdserverpb::PutRequest req;
    req.set_key(k);
    req.set_value(v);
    etcdserverpb::PutResponse resp;
    grpc::Status st = kv_->Put(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.header().revision();
  }
  void Compact(int64_t rev) {
    grpc::ClientContext ctx;
    etcdserverpb::CompactionRequest req;
    req.set_revision(rev);
    etcdserverpb::CompactionResponse resp;
    ASSERT_TRUE(kv_->Compact(&ctx, req, &resp).ok());
  }

  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
};

TEST_F(WatchGrpcTest, CreatedEventsCancelAndIds) {
  int64_t r0 = Put("a", "0");
  WatchStream s(watch_.get());
  s.Create("a");
  auto c = s.Next();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->created());
  EXPECT_EQ(c->watch_id(), 0);
  EXPECT_EQ(c->header().revision(), r0);
  EXPECT_NE(c->header().cluster_id(), 0u);
  EXPECT_NE(c->header().member_id(), 0u);
  int64_t r1 = Put("a", "1");
  auto e = s.Next();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->watch_id(), 0);
  EXPECT_EQ(e->header().revision(), r1);
  ASSERT_EQ(e->events_size(), 1);
  EXPECT_EQ(e->events(0).kv().value(), "1");

  s.Create("b", "", 0, 7);
  c = s.Next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->watch_id(), 7);
  s.Create("c", "", 0, 7);
  c = s.Next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->watch_id(), -1);
  EXPECT_TRUE(c->created());
  EXPECT_TRUE(c->canceled());
  EXPECT_EQ(c->cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");

  WatchRequest cancel;
  cancel.mutable_cancel_request()->set_watch_id(12345);  // unknown: no answer
  s.Send(cancel);
  cancel.mutable_cancel_request()->set_watch_id(7);
  s.Send(cancel);
  c = s.Next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->watch_id(), 7);
  EXPECT_TRUE(c->canceled());
  EXPECT_FALSE(c->created());
  EXPECT_EQ(c->header().revision(), r1);
  Put("b", "x");  // canceled: nothing more for 7
  Put("a", "2");
  e = s.Next();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->watch_id(), 0);
}

TEST_F(WatchGrpcTest, CompactedStartRevisionIsCanceled) {
  for (int i = 0; i < 5; ++i) Put("k", std::to_string(i));  // 2..6
  Compact(4);
  WatchStream s(watch_.get());
  s.Create("k", "", 2);
  auto c = s.Next();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->created());
  auto x = s.Next();
  ASSERT_TRUE(x);
  EXPECT_TRUE(x->canceled());
  EXPECT_EQ(x->compact_revision(), 4);
  EXPECT_EQ(x->header().revision(), 0);
  EXPECT_EQ(x->events_size(), 0);
  // From the compacted revision itself: replayed in one response at the
  // current revision (etcd's catch-up).
  s.Create("k", "", 4);
  c = s.Next();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->created());
  auto e = s.Next();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->header().revision(), 6);
  ASSERT_EQ(e->events_size(), 3);
  EXPECT_EQ(e->events(0).kv().mod_revision(), 4);
  EXPECT_EQ(e->events(2).kv().mod_revision(), 6);
}

TEST_F(WatchGrpcTest, ProgressRequest) {
  int64_t r = Put("p", "1");
  WatchStream s(watch_.get());
  s.Create("p");
  ASSERT_TRUE(s.Next());
  WatchRequest pr;
  pr.mutable_progress_request();
  s.Send(pr);
  auto p = s.Next();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->watch_id(), -1);
  EXPECT_EQ(p->header().revision(), r);
  EXPECT_FALSE(p->created());
  EXPECT_FALSE(p->canceled());
  EXPECT_EQ(p->events_size(), 0);
}

TEST_F(WatchGrpcTest, PeriodicProgressNotify) {
  TearDown();
  Start({"--experimental-watch-progress-notify-interval=200ms"});
  int64_t r = Put("n", "1");
  WatchStream s(watch_.get());
  s.Create("n", "", 0, 0, /*progress=*/true);
  s.Create("m");  // did not ask: never notified
  ASSERT_TRUE(s.Next());
  ASSERT_TRUE(s.Next());
  for (int i = 0; i < 2; ++i) {
    auto p = s.Next(3000ms);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->watch_id(), 0);
    EXPECT_EQ(p->header().revision(), r);
    EXPECT_EQ(p->events_size(), 0);
  }
}

TEST_F(WatchGrpcTest, FragmentsOverTheSizeLimit) {
  TearDown();
  Start({"--max-request-bytes=20000"});  // fragments above 20000 + 512 KiB
  const std::string v(15000, 'v');
  for (int i = 0; i < 80; ++i) Put("f/" + std::to_string(i), v);
  WatchStream s(watch_.get());
  // One revision of 80 deletes whose prev_kv carry 1.2 MB: only a
  // fragmenting watcher may split it.
  WatchRequest c;
  c.mutable_create_request()->set_key("f/");
  c.mutable_create_request()->set_range_end("f0");
  c.mutable_create_request()->set_prev_kv(true);
  c.mutable_create_request()->set_fragment(true);
  s.Send(c);
  c.mutable_create_request()->set_fragment(false);
  s.Send(c);
  ASSERT_TRUE(s.Next());
  ASSERT_TRUE(s.Next());
  {
    grpc::ClientContext ctx;
    etcdserverpb::DeleteRangeRequest req;
    req.set_key("f/");
    req.set_range_end("f0");
    etcdserverpb::DeleteRangeResponse resp;
    ASSERT_TRUE(kv_->DeleteRange(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.deleted(), 80);
  }
  int fragmented_events = 0, responses = 0, whole_events = 0;
  while (fragmented_events < 80 || whole_events < 80) {
    auto r = s.Next();
    ASSERT_TRUE(r);
    if (r->watch_id() == 0) {
      ++responses;
      fragmented_events += r->events_size();
      EXPECT_LE(r->ByteSizeLong(), 20000u + 512 * 1024);
      EXPECT_EQ(r->fragment(), fragmented_events < 80);
    } else {
      EXPECT_EQ(r->events_size(), 80);
      EXPECT_FALSE(r->fragment());
      whole_events += r->events_size();
    }
  }
  EXPECT_GE(responses, 3);
}

// Three clients that never read, one that does, and writers. The slow ones
// must not slow the writes or the reading client, nor make the server buffer
// what they do not read; once they read, they get everything, in order.
TEST_F(WatchGrpcTest, SlowConsumersDoNotStallOthersAndMemoryStaysBounded) {
  const std::string v(100 * 1024, 'x');
  const int kPuts = 300;  // 30 MB per phase
  auto write_phase = [&](const std::string& key) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ws;
    for (int t = 0; t < 3; ++t) {
      ws.emplace_back([&, t] {
        for (int i = t; i < kPuts; i += 3) Put(key, v);
      });
    }
    for (auto& w : ws) w.join();
    return std::chrono::steady_clock::now() - t0;
  };
  // Phase 1: no watchers at all (warms RocksDB and the allocator up).
  write_phase("warm");
  int64_t rss0 = RssKb(pid_);
  auto t1 = write_phase("warm");
  int64_t rss1 = RssKb(pid_);

  // Each slow client on its own connection, as separate processes would be.
  std::vector<std::unique_ptr<etcdserverpb::Watch::Stub>> stubs;
  std::vector<std::unique_ptr<WatchStream>> slow;
  for (int i = 0; i < 3; ++i) {
    grpc::ChannelArguments ca;
    ca.SetInt("etcdpp.test.connection", i);  // no subchannel sharing
    ca.SetMaxReceiveMessageSize(INT32_MAX);
    stubs.push_back(etcdserverpb::Watch::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials(), ca)));
    slow.push_back(std::make_unique<WatchStream>(stubs.back().get(), /*read=*/false));
    slow.back()->Create("hot");
  }
  WatchStream fast(watch_.get());
  fast.Create("hot");
  ASSERT_TRUE(fast.Next());
  int64_t start_rev = Put("hot", "start");
  auto t2 = write_phase("hot");
  int64_t rss2 = RssKb(pid_);

  // The reading client got every event live, in order.
  int64_t next = start_rev;
  while (next < start_rev + 1 + kPuts) {
    auto r = fast.Next();
    ASSERT_TRUE(r) << "fast watcher stalled at " << next;
    for (const auto& e : r->events()) ASSERT_EQ(e.kv().mod_revision(), next++);
  }
  std::printf(
      "phase without watchers: %lld ms, rss +%lld KiB; with 3 non-reading: %lld ms, "
      "rss +%lld KiB\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t1).count()),
      static_cast<long long>(rss1 - rss0),
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t2).count()),
      static_cast<long long>(rss2 - rss1));
  // Unbounded buffering would hold 3 x 30 MB; allow the stream bound and
  // gRPC's windows per stream plus noise.
  EXPECT_LT(rss2 - rss1, 40 * 1024);  // measured: ~10 MB bounded, ~77 MB unbounded
  EXPECT_LT(t2, 3 * t1 + 2s);

  // Now a slow client reads: everything arrives, in order, no duplicates.
  slow[0]->StartReading();
  auto created = slow[0]->Next();
  ASSERT_TRUE(created);
  EXPECT_TRUE(created->created());
  next = start_rev;
  while (next < start_rev + 1 + kPuts) {
    auto r = slow[0]->Next(10000ms);
    ASSERT_TRUE(r) << "slow watcher did not catch up at " << next;
    for (const auto& e : r->events()) ASSERT_EQ(e.kv().mod_revision(), next++);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--bin" && i + 1 < argc) g_bin = argv[++i];
  }
  if (g_bin.empty()) {
    const char* e = getenv("ETCDPP_BIN");
    if (e) g_bin = e;
  }
  if (g_bin.empty() || access(g_bin.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "watch_grpc_test: no server binary (--bin)\n");
    return 77;
  }
  return RUN_ALL_TESTS();
}
