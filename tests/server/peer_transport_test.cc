// PeerTransport over real loopback gRPC: members in one process, each with
// its own grpc::Server and a fake PeerHandler that records every call.
// Waits are on conditions with deadlines, never fixed sleeps.
#include "server/peer/transport.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "peer.grpc.pb.h"
#include "tests/common/free_port.h"

namespace etcdpp::server::peer {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kClusterId = 0xc1a55e7;
constexpr uint64_t kA = 0x8e9e05c52164694d;
constexpr uint64_t kB = 0x1a2b3c;
constexpr uint64_t kC = 0x3;
constexpr absl::Duration kWait = absl::Seconds(30);

using Clock = std::chrono::steady_clock;

int64_t ElapsedMs(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

std::string MakeTempDir(const std::string& tag) {
  std::string tmpl = (fs::path(::testing::TempDir()) / ("peer_transport_" + tag + "_XXXXXX")).string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* dir = ::mkdtemp(buf.data());
  EXPECT_NE(dir, nullptr);
  return dir ? std::string(dir) : std::string();
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& p, const std::string& data) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out << data;
}

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u + seed;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    s[i] = static_cast<char>(x & 0xff);
  }
  return s;
}

raftpb::Message Msg(uint64_t from, uint64_t to, uint64_t index, size_t payload = 0) {
  raftpb::Message m;
  m.set_type(raftpb::MsgApp);
  m.set_from(from);
  m.set_to(to);
  m.set_term(7);
  m.set_index(index);
  if (payload > 0) m.add_entries()->set_data(std::string(payload, 'x'));
  return m;
}

raftpb::Message SnapMsg(uint64_t from, uint64_t to, uint64_t index) {
  raftpb::Message m;
  m.set_type(raftpb::MsgSnap);
  m.set_from(from);
  m.set_to(to);
  m.set_term(3);
  m.mutable_snapshot()->mutable_metadata()->set_index(index);
  m.mutable_snapshot()->mutable_metadata()->set_term(2);
  return m;
}

// Records everything the transport tells it. Thread-safe.
class FakeHandler : public PeerHandler {
 public:
  void OnMessages(std::vector<raftpb::Message> messages) override {
    absl::MutexLock l(&mu);
    ++batches;
    for (auto& m : messages) received.push_back(std::move(m));
  }
  absl::Status OnSnapshot(raftpb::Message message, std::string dir) override {
    absl::MutexLock l(&mu);
    snapshots.emplace_back(std::move(message), dir);
    return on_snapshot_status;
  }
  bool IsRemoved(uint64_t id) override {
    absl::MutexLock l(&mu);
    return removed_ids.count(id) > 0;
  }
  peerpb::MembersResponse Members() override {
    absl::MutexLock l(&mu);
    return members;
  }
  absl::StatusOr<std::string> PrepareSnapshot(const raftpb::Message& message) override {
    absl::MutexLock l(&mu);
    ++prepare_calls;
    return prepare_result;
  }
  void ReportUnreachable(uint64_t id) override {
    absl::MutexLock l(&mu);
    ++unreachable[id];
  }
  void ReportSnapshot(uint64_t id, bool ok) override {
    absl::MutexLock l(&mu);
    snapshot_reports.emplace_back(id, ok);
  }
  void OnRemovedFromCluster() override {
    absl::MutexLock l(&mu);
    ++removed_calls;
  }

  // Waits until `pred` (called with mu held) holds; false on timeout.
  bool WaitFor(std::function<bool()> pred, absl::Duration timeout = kWait) {
    absl::MutexLock l(&mu);
    return mu.AwaitWithTimeout(
        absl::Condition(+[](std::function<bool()>* f) { return (*f)(); }, &pred), timeout);
  }
  size_t ReceivedCount() {
    absl::MutexLock l(&mu);
    return received.size();
  }
  int UnreachableCount(uint64_t id) {
    absl::MutexLock l(&mu);
    return unreachable[id];
  }

  absl::Mutex mu;
  std::vector<raftpb::Message> received ABSL_GUARDED_BY(mu);
  int batches ABSL_GUARDED_BY(mu) = 0;
  std::map<uint64_t, int> unreachable ABSL_GUARDED_BY(mu);
  std::vector<std::pair<raftpb::Message, std::string>> snapshots ABSL_GUARDED_BY(mu);
  absl::Status on_snapshot_status ABSL_GUARDED_BY(mu);
  std::set<uint64_t> removed_ids ABSL_GUARDED_BY(mu);
  peerpb::MembersResponse members ABSL_GUARDED_BY(mu);
  int prepare_calls ABSL_GUARDED_BY(mu) = 0;
  absl::StatusOr<std::string> prepare_result ABSL_GUARDED_BY(mu) =
      absl::InternalError("no snapshot prepared");
  std::vector<std::pair<uint64_t, bool>> snapshot_reports ABSL_GUARDED_BY(mu);
  int removed_calls ABSL_GUARDED_BY(mu) = 0;
};

// One member: handler, transport and (once started) its peer-port server.
struct Member {
  Member(uint64_t id, uint64_t cluster_id, const std::string& tmp,
         std::function<void(PeerTransportOptions&)> tweak = nullptr)
      : id(id) {
    PeerTransportOptions o;
    o.member_id = id;
    o.cluster_id = cluster_id;
    o.snapshot_dir = (fs::path(tmp) / absl::StrCat("snap-", id)).string();
    if (tweak) tweak(o);
    options = o;
    transport = std::make_unique<PeerTransport>(o, &handler);
  }
  ~Member() { Shutdown(); }

  // Starts the server on `fixed_port`, or a port gRPC picks.
  void StartServer(int fixed_port = 0) {
    grpc::ServerBuilder builder;
    int selected = 0;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", fixed_port),
                             grpc::InsecureServerCredentials(), &selected);
    builder.SetMaxReceiveMessageSize(options.max_message_bytes);
    builder.RegisterService(transport->service());
    server = builder.BuildAndStart();
    ASSERT_NE(server, nullptr);
    ASSERT_GT(selected, 0);
    port = selected;
    url = absl::StrCat("http://127.0.0.1:", port);
  }

  void Shutdown() {
    transport->Stop();
    if (server) {
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      server->Wait();
      server.reset();
    }
  }

  uint64_t id;
  PeerTransportOptions options;
  FakeHandler handler;
  std::unique_ptr<PeerTransport> transport;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string url;
};

class PeerTransportTest : public ::testing::Test {
 protected:
  void SetUp() override { tmp_ = MakeTempDir("t"); }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  std::unique_ptr<Member> NewMember(uint64_t id, uint64_t cluster_id = kClusterId,
                                    std::function<void(PeerTransportOptions&)> tweak = nullptr) {
    return std::make_unique<Member>(id, cluster_id, tmp_, std::move(tweak));
  }
  std::string tmp_;
};

void ExpectInOrder(const std::vector<raftpb::Message>& got, uint64_t from, uint64_t to,
                   uint64_t first, size_t n) {
  ASSERT_EQ(got.size(), n);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(got[i].index(), first + i) << "at " << i;
    ASSERT_EQ(got[i].from(), from);
    ASSERT_EQ(got[i].to(), to);
    ASSERT_EQ(got[i].term(), 7u);
  }
}

TEST_F(PeerTransportTest, DeliversInOrderInBothDirections) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  a->StartServer();
  b->StartServer();
  a->transport->AddPeer(kB, {b->url});
  b->transport->AddPeer(kA, {a->url});

  constexpr size_t kN = 2000;
  for (size_t i = 0; i < kN; ++i) {
    a->transport->Send({Msg(kA, kB, i, i % 7 * 100)});
    b->transport->Send({Msg(kB, kA, 100000 + i)});
  }
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() >= kN; }));
  ASSERT_TRUE(a->handler.WaitFor([&] { return a->handler.received.size() >= kN; }));
  {
    absl::MutexLock l(&b->handler.mu);
    ExpectInOrder(b->handler.received, kA, kB, 0, kN);
    for (size_t i = 0; i < kN; ++i) {
      size_t want = i % 7 * 100;
      ASSERT_EQ(b->handler.received[i].entries_size(), want > 0 ? 1 : 0);
      if (want > 0) {
        ASSERT_EQ(b->handler.received[i].entries(0).data().size(), want);
      }
    }
  }
  {
    absl::MutexLock l(&a->handler.mu);
    ExpectInOrder(a->handler.received, kB, kA, 100000, kN);
  }
  EXPECT_GT(a->transport->ActiveSinceMs(kB), 0);
  EXPECT_GT(b->transport->ActiveSinceMs(kA), 0);
  EXPECT_EQ(a->transport->ActiveSinceMs(kC), 0);  // not a peer
}

TEST_F(PeerTransportTest, OneSendOfManyMessagesIsOneBatch) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  b->StartServer();
  a->transport->AddPeer(kB, {b->url});
  // Make sure the stream is up before the burst.
  a->transport->Send({Msg(kA, kB, 0)});
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 1; }));

  std::vector<raftpb::Message> burst;
  for (uint64_t i = 1; i <= 1000; ++i) burst.push_back(Msg(kA, kB, i));
  a->transport->Send(std::move(burst));
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 1001; }));
  absl::MutexLock l(&b->handler.mu);
  EXPECT_EQ(b->handler.batches, 2);
  ExpectInOrder(b->handler.received, kA, kB, 0, 1001);
}

TEST_F(PeerTransportTest, ManySendsWhileConnectingGoInFewBatches) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  int b_port = etcdpp::testing::FreeLoopbackPort();
  a->transport->AddPeer(kB, {absl::StrCat("http://127.0.0.1:", b_port)});
  constexpr size_t kN = 500;
  for (size_t i = 0; i < kN; ++i) a->transport->Send({Msg(kA, kB, i)});
  b->StartServer(b_port);
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() >= kN; }));
  absl::MutexLock l(&b->handler.mu);
  ExpectInOrder(b->handler.received, kA, kB, 0, kN);
  // Everything was queued before the stream came up: one write takes it all.
  EXPECT_EQ(b->handler.batches, 1);
}

TEST_F(PeerTransportTest, BatchesRespectMaxBatchBytes) {
  auto a = NewMember(kA, kClusterId, [](PeerTransportOptions& o) { o.max_batch_bytes = 10000; });
  auto b = NewMember(kB);
  b->StartServer();
  a->transport->AddPeer(kB, {b->url});
  std::vector<raftpb::Message> burst;
  for (uint64_t i = 0; i < 100; ++i) burst.push_back(Msg(kA, kB, i, 1000));
  a->transport->Send(std::move(burst));
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 100; }));
  absl::MutexLock l(&b->handler.mu);
  ExpectInOrder(b->handler.received, kA, kB, 0, 100);
  // ~1KB each, 10KB per batch at most: at least 10 batches.
  EXPECT_GE(b->handler.batches, 10);
  EXPECT_LE(b->handler.batches, 100);
}

TEST_F(PeerTransportTest, LargeBatchesArrive) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  b->StartServer();
  a->transport->AddPeer(kB, {b->url});
  // 6 MiB in one Send: one batch, more than gRPC's default 4 MiB limit.
  std::vector<raftpb::Message> burst;
  for (uint64_t i = 0; i < 60; ++i) burst.push_back(Msg(kA, kB, i, 100 << 10));
  a->transport->Send(std::move(burst));
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 60; }));
  absl::MutexLock l(&b->handler.mu);
  ExpectInOrder(b->handler.received, kA, kB, 0, 60);
  EXPECT_EQ(b->handler.batches, 1);
}

TEST_F(PeerTransportTest, WrongClusterIdIsRefused) {
  auto a = NewMember(kA, kClusterId);
  auto b = NewMember(kB, kClusterId + 1);
  b->StartServer();
  a->transport->AddPeer(kB, {b->url});
  for (uint64_t i = 0; i < 10; ++i) a->transport->Send({Msg(kA, kB, i)});
  // Refused, reported, and retried (so reported again).
  ASSERT_TRUE(a->handler.WaitFor([&] { return a->handler.unreachable[kB] >= 3; }));
  EXPECT_EQ(b->handler.ReceivedCount(), 0u);
  EXPECT_EQ(a->transport->ActiveSinceMs(kB), 0);
  absl::MutexLock l(&a->handler.mu);
  EXPECT_EQ(a->handler.removed_calls, 0);
}

TEST_F(PeerTransportTest, WrongRecipientIsRefused) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  b->StartServer();
  // A believes member kC lives at B's URL.
  a->transport->AddPeer(kC, {b->url});
  a->transport->Send({Msg(kA, kC, 1)});
  ASSERT_TRUE(a->handler.WaitFor([&] { return a->handler.unreachable[kC] >= 2; }));
  EXPECT_EQ(b->handler.ReceivedCount(), 0u);
  EXPECT_EQ(a->transport->ActiveSinceMs(kC), 0);
}

// The refusal texts, seen by a client that sends the headers itself.
TEST_F(PeerTransportTest, RefusalsCarryClearStatus) {
  auto b = NewMember(kB);
  b->StartServer();
  auto stub = peerpb::Peer::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", b->port), grpc::InsecureChannelCredentials()));
  auto call = [&](std::string cluster, std::string from, std::string to) {
    grpc::ClientContext ctx;
    if (!cluster.empty()) ctx.AddMetadata(kClusterIdHeader, cluster);
    if (!from.empty()) ctx.AddMetadata(kFromHeader, from);
    if (!to.empty()) ctx.AddMetadata(kToHeader, to);
    peerpb::StreamAck ack;
    auto w = stub->Stream(&ctx, &ack);
    w->WritesDone();
    return w->Finish();
  };
  grpc::Status s = call("c1a55e8", "8e9e05c52164694d", "1a2b3c");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("cluster ID mismatch"), std::string::npos) << s.error_message();
  s = call("c1a55e7", "8e9e05c52164694d", "3");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("member ID mismatch"), std::string::npos) << s.error_message();
  s = call("", "", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  {
    absl::MutexLock l(&b->handler.mu);
    b->handler.removed_ids.insert(kA);
  }
  s = call("c1a55e7", "8e9e05c52164694d", "1a2b3c");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), kMemberRemovedText);
  s = call("c1a55e7", "2", "1a2b3c");
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// What the sender puts on the wire: lower-case hex, no 0x, no padding.
class HeaderRecorder final : public peerpb::Peer::Service {
 public:
  grpc::Status Stream(grpc::ServerContext* ctx, grpc::ServerReader<peerpb::MessageBatch>*,
                      peerpb::StreamAck*) override {
    absl::MutexLock l(&mu);
    for (const auto& [k, v] : ctx->client_metadata()) {
      headers[std::string(k.data(), k.size())] = std::string(v.data(), v.size());
    }
    ++calls;
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "recorded");
  }
  absl::Mutex mu;
  std::map<std::string, std::string> headers ABSL_GUARDED_BY(mu);
  int calls ABSL_GUARDED_BY(mu) = 0;
};

TEST_F(PeerTransportTest, SendsHexHeaders) {
  HeaderRecorder recorder;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&recorder);
  auto server = builder.BuildAndStart();
  ASSERT_GT(port, 0);
  {
    auto a = NewMember(kA);
    a->transport->AddPeer(kB, {absl::StrCat("http://127.0.0.1:", port, "/")});
    a->transport->Send({Msg(kA, kB, 1)});
    absl::MutexLock l(&recorder.mu);
    ASSERT_TRUE(recorder.mu.AwaitWithTimeout(
        absl::Condition(+[](int* c) { return *c > 0; }, &recorder.calls), kWait));
    EXPECT_EQ(recorder.headers[kClusterIdHeader], "c1a55e7");
    EXPECT_EQ(recorder.headers[kFromHeader], "8e9e05c52164694d");
    EXPECT_EQ(recorder.headers[kToHeader], "1a2b3c");
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

TEST_F(PeerTransportTest, RemovedSenderIsToldOnce) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  auto c = NewMember(kC);
  {
    absl::MutexLock l(&b->handler.mu);
    b->handler.removed_ids.insert(kA);
  }
  {
    absl::MutexLock l(&c->handler.mu);
    c->handler.removed_ids.insert(kA);
  }
  b->StartServer();
  c->StartServer();
  a->transport->AddPeer(kB, {b->url});
  a->transport->AddPeer(kC, {c->url});
  a->transport->Send({Msg(kA, kB, 1), Msg(kA, kC, 1)});
  // Both refuse, repeatedly; the handler hears it once.
  ASSERT_TRUE(a->handler.WaitFor(
      [&] { return a->handler.unreachable[kB] >= 3 && a->handler.unreachable[kC] >= 3; }));
  absl::MutexLock l(&a->handler.mu);
  EXPECT_EQ(a->handler.removed_calls, 1);
  EXPECT_EQ(b->handler.ReceivedCount(), 0u);
  EXPECT_EQ(c->handler.ReceivedCount(), 0u);
}

TEST_F(PeerTransportTest, UnknownPeerIsReportedUnreachable) {
  auto a = NewMember(kA);
  a->transport->Send({Msg(kA, kC, 1), Msg(kA, kC, 2), SnapMsg(kA, kC, 5)});
  EXPECT_EQ(a->handler.UnreachableCount(kC), 1);
  absl::MutexLock l(&a->handler.mu);
  ASSERT_EQ(a->handler.snapshot_reports.size(), 1u);
  EXPECT_EQ(a->handler.snapshot_reports[0], std::make_pair(kC, false));
  EXPECT_EQ(a->handler.prepare_calls, 0);
}

// A dead peer never blocks Send, gets reported, and its queue stays bounded;
// once it starts it gets the queued messages and what is sent afterwards.
TEST_F(PeerTransportTest, DeadPeerThenLateStart) {
  constexpr size_t kQueue = 1000;
  auto a = NewMember(kA, kClusterId, [](PeerTransportOptions& o) { o.max_queued_messages = kQueue; });
  auto b = NewMember(kB);
  int b_port = etcdpp::testing::FreeLoopbackPort();
  a->transport->AddPeer(kB, {absl::StrCat("http://127.0.0.1:", b_port)});

  auto start = Clock::now();
  int64_t slowest_ms = 0;
  for (uint64_t i = 0; i < 100000; ++i) {
    auto t = Clock::now();
    a->transport->Send({Msg(kA, kB, i)});
    slowest_ms = std::max<int64_t>(slowest_ms, ElapsedMs(t));
  }
  EXPECT_LT(ElapsedMs(start), 10000);
  EXPECT_LT(slowest_ms, 1000);
  ASSERT_TRUE(a->handler.WaitFor([&] { return a->handler.unreachable[kB] >= 2; }));
  EXPECT_EQ(a->transport->ActiveSinceMs(kB), 0);

  b->StartServer(b_port);
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() >= kQueue; }));
  // Only what fit in the queue: the first kQueue messages.
  {
    absl::MutexLock l(&b->handler.mu);
    ExpectInOrder(b->handler.received, kA, kB, 0, kQueue);
  }
  EXPECT_GT(a->transport->ActiveSinceMs(kB), 0);
  a->transport->Send({Msg(kA, kB, 200000)});
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() >= kQueue + 1; }));
  absl::MutexLock l(&b->handler.mu);
  ASSERT_EQ(b->handler.received.size(), kQueue + 1);
  EXPECT_EQ(b->handler.received.back().index(), 200000u);
}

TEST_F(PeerTransportTest, PeerGoingDownIsNoticed) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  b->StartServer();
  a->transport->AddPeer(kB, {b->url});
  a->transport->Send({Msg(kA, kB, 1)});
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 1; }));
  ASSERT_GT(a->transport->ActiveSinceMs(kB), 0);
  int before = a->handler.UnreachableCount(kB);
  b->Shutdown();
  // Noticed even with nothing to send (idle heartbeat).
  ASSERT_TRUE(a->handler.WaitFor([&] { return a->handler.unreachable[kB] > before; }));
  EXPECT_EQ(a->transport->ActiveSinceMs(kB), 0);
}

struct SnapshotSource {
  std::string dir;
  std::map<std::string, std::string> files;
};

SnapshotSource MakeSnapshotSource(const std::string& tmp) {
  SnapshotSource s;
  s.dir = (fs::path(tmp) / "checkpoint").string();
  s.files["db"] = Pattern(4096 * 2 + 123, 1);  // three chunks of 4096
  s.files["exact"] = Pattern(4096, 2);         // exactly one chunk
  s.files["MANIFEST"] = "manifest";
  s.files["empty"] = "";
  s.files["sub/dir/file.bin"] = Pattern(5000, 3);
  for (const auto& [name, data] : s.files) WriteFile(fs::path(s.dir) / name, data);
  return s;
}

TEST_F(PeerTransportTest, SnapshotArrivesByteIdentical) {
  auto a = NewMember(kA, kClusterId, [](PeerTransportOptions& o) { o.snapshot_chunk_bytes = 4096; });
  auto b = NewMember(kB);
  b->StartServer();
  SnapshotSource src = MakeSnapshotSource(tmp_);
  {
    absl::MutexLock l(&a->handler.mu);
    a->handler.prepare_result = src.dir;
  }
  a->transport->AddPeer(kB, {b->url});
  a->transport->Send({Msg(kA, kB, 1), SnapMsg(kA, kB, 42), Msg(kA, kB, 2)});

  ASSERT_TRUE(a->handler.WaitFor([&] { return !a->handler.snapshot_reports.empty(); }));
  {
    absl::MutexLock l(&a->handler.mu);
    ASSERT_EQ(a->handler.snapshot_reports.size(), 1u);
    EXPECT_EQ(a->handler.snapshot_reports[0], std::make_pair(kB, true));
  }
  EXPECT_FALSE(fs::exists(src.dir));  // the sender deletes the checkpoint
  std::string got_dir;
  {
    absl::MutexLock l(&b->handler.mu);
    ASSERT_EQ(b->handler.snapshots.size(), 1u);
    const raftpb::Message& m = b->handler.snapshots[0].first;
    EXPECT_EQ(m.type(), raftpb::MsgSnap);
    EXPECT_EQ(m.from(), kA);
    EXPECT_EQ(m.to(), kB);
    EXPECT_EQ(m.snapshot().metadata().index(), 42u);
    got_dir = b->handler.snapshots[0].second;
  }
  EXPECT_EQ(fs::path(got_dir).parent_path(), fs::path(b->options.snapshot_dir));
  std::map<std::string, std::string> got;
  for (const auto& e : fs::recursive_directory_iterator(got_dir)) {
    if (e.is_regular_file()) got[fs::relative(e.path(), got_dir).string()] = ReadFile(e.path());
  }
  EXPECT_EQ(got.size(), src.files.size());
  for (const auto& [name, data] : src.files) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TRUE(got[name] == data) << name << ": " << got[name].size() << " vs " << data.size();
  }
  // The MsgSnap did not go on the stream; the others did, in order.
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 2; }));
  absl::MutexLock l(&b->handler.mu);
  EXPECT_EQ(b->handler.received[0].index(), 1u);
  EXPECT_EQ(b->handler.received[1].index(), 2u);
}

TEST_F(PeerTransportTest, PrepareSnapshotErrorReportsFailure) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  b->StartServer();
  a->transport->AddPeer(kB, {b->url});
  a->transport->Send({SnapMsg(kA, kB, 42)});
  ASSERT_TRUE(a->handler.WaitFor([&] { return !a->handler.snapshot_reports.empty(); }));
  {
    absl::MutexLock l(&a->handler.mu);
    EXPECT_EQ(a->handler.snapshot_reports[0], std::make_pair(kB, false));
    EXPECT_EQ(a->handler.prepare_calls, 1);
  }
  absl::MutexLock l(&b->handler.mu);
  EXPECT_TRUE(b->handler.snapshots.empty());
}

TEST_F(PeerTransportTest, RejectedSnapshotIsReportedAndCleanedUp) {
  auto a = NewMember(kA, kClusterId, [](PeerTransportOptions& o) { o.snapshot_chunk_bytes = 4096; });
  auto b = NewMember(kB);
  b->StartServer();
  SnapshotSource src = MakeSnapshotSource(tmp_);
  {
    absl::MutexLock l(&a->handler.mu);
    a->handler.prepare_result = src.dir;
  }
  {
    absl::MutexLock l(&b->handler.mu);
    b->handler.on_snapshot_status = absl::FailedPreconditionError("stale snapshot");
  }
  a->transport->AddPeer(kB, {b->url});
  a->transport->Send({SnapMsg(kA, kB, 42)});
  ASSERT_TRUE(a->handler.WaitFor([&] { return !a->handler.snapshot_reports.empty(); }));
  {
    absl::MutexLock l(&a->handler.mu);
    EXPECT_EQ(a->handler.snapshot_reports[0], std::make_pair(kB, false));
  }
  EXPECT_FALSE(fs::exists(src.dir));
  // The receiver removed what it had written.
  size_t left = 0;
  if (fs::exists(b->options.snapshot_dir)) {
    for (const auto& e : fs::directory_iterator(b->options.snapshot_dir)) (void)e, ++left;
  }
  EXPECT_EQ(left, 0u);
}

TEST_F(PeerTransportTest, SnapshotRefusesEscapingPaths) {
  auto b = NewMember(kB);
  b->StartServer();
  auto stub = peerpb::Peer::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", b->port), grpc::InsecureChannelCredentials()));
  for (std::string bad : {"../evil", "a/../../evil", "/tmp/evil", "a/.."}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kClusterIdHeader, "c1a55e7");
    ctx.AddMetadata(kFromHeader, "8e9e05c52164694d");
    ctx.AddMetadata(kToHeader, "1a2b3c");
    peerpb::SnapshotAck ack;
    auto w = stub->Snapshot(&ctx, &ack);
    peerpb::SnapshotChunk chunk;
    *chunk.mutable_message() = SnapMsg(kA, kB, 5);
    chunk.set_file(bad);
    chunk.set_data("x");
    w->Write(chunk);
    peerpb::SnapshotChunk last;
    last.set_done(true);
    w->Write(last);
    w->WritesDone();
    grpc::Status s = w->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
  EXPECT_FALSE(fs::exists(fs::path(b->options.snapshot_dir).parent_path() / "evil"));
  absl::MutexLock l(&b->handler.mu);
  EXPECT_TRUE(b->handler.snapshots.empty());
}

TEST_F(PeerTransportTest, FetchMembers) {
  auto b = NewMember(kB);
  {
    absl::MutexLock l(&b->handler.mu);
    b->handler.members.set_cluster_id(kClusterId);
    auto* m = b->handler.members.mutable_membership()->add_members();
    m->set_id(kA);
    m->set_name("a");
    m->add_peer_urls("http://127.0.0.1:1");
    m = b->handler.members.mutable_membership()->add_members();
    m->set_id(kB);
    m->set_name("b");
    b->handler.members.mutable_membership()->add_removed(kC);
  }
  b->StartServer();
  std::string dead = absl::StrCat("http://127.0.0.1:", etcdpp::testing::FreeLoopbackPort());
  auto got = FetchMembers({dead, b->url}, 5000);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->cluster_id(), kClusterId);
  ASSERT_EQ(got->membership().members_size(), 2);
  EXPECT_EQ(got->membership().members(0).id(), kA);
  EXPECT_EQ(got->membership().members(0).name(), "a");
  EXPECT_EQ(got->membership().members(1).id(), kB);
  ASSERT_EQ(got->membership().removed_size(), 1);
  EXPECT_EQ(got->membership().removed(0), kC);
}

TEST_F(PeerTransportTest, FetchMembersFailsClearlyWhenNobodyListens) {
  std::string dead1 = absl::StrCat("http://127.0.0.1:", etcdpp::testing::FreeLoopbackPort());
  std::string dead2 = absl::StrCat("http://127.0.0.1:", etcdpp::testing::FreeLoopbackPort());
  auto start = Clock::now();
  auto got = FetchMembers({dead1, dead2}, 2000);
  EXPECT_LT(ElapsedMs(start), 10000);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  std::string text(got.status().message());
  EXPECT_NE(text.find(dead1), std::string::npos) << text;
  EXPECT_NE(text.find(dead2), std::string::npos) << text;
  EXPECT_FALSE(FetchMembers({}, 100).ok());
}

// A listener that never accepts: TCP connects, HTTP/2 never answers.
class Blackhole {
 public:
  Blackhole() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 16);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~Blackhole() { ::close(fd_); }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(PeerTransportTest, StopIsPromptWithUnreachablePeers) {
  Blackhole hole;
  auto a = NewMember(kA, kClusterId, [](PeerTransportOptions& o) { o.dial_timeout_ms = 60000; });
  std::string dead = absl::StrCat("http://127.0.0.1:", etcdpp::testing::FreeLoopbackPort());
  a->transport->AddPeer(kB, {hole.url()});
  a->transport->AddPeer(kC, {dead});
  SnapshotSource src = MakeSnapshotSource(tmp_);
  {
    absl::MutexLock l(&a->handler.mu);
    a->handler.prepare_result = src.dir;
  }
  for (uint64_t i = 0; i < 100; ++i) a->transport->Send({Msg(kA, kB, i), Msg(kA, kC, i)});
  a->transport->Send({SnapMsg(kA, kB, 9)});
  // The snapshot sender is now dialing the blackhole.
  ASSERT_TRUE(a->handler.WaitFor([&] { return a->handler.prepare_calls == 1; }));
  auto start = Clock::now();
  a->transport->Stop();
  EXPECT_LT(ElapsedMs(start), 3000);
  a->transport->Stop();  // idempotent
  a->transport->Send({Msg(kA, kB, 1000)});  // dropped, no crash
  EXPECT_EQ(a->transport->ActiveSinceMs(kB), 0);
}

TEST_F(PeerTransportTest, StopIsPromptWithOpenStreams) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  a->StartServer();
  b->StartServer();
  a->transport->AddPeer(kB, {b->url});
  b->transport->AddPeer(kA, {a->url});
  a->transport->Send({Msg(kA, kB, 1)});
  b->transport->Send({Msg(kB, kA, 1)});
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 1; }));
  ASSERT_TRUE(a->handler.WaitFor([&] { return a->handler.received.size() == 1; }));
  auto start = Clock::now();
  a->Shutdown();  // transport Stop, then the server: no call left hanging
  b->Shutdown();
  EXPECT_LT(ElapsedMs(start), 5000);
}

TEST_F(PeerTransportTest, RemovePeerAndUpdatePeer) {
  auto a = NewMember(kA);
  auto b = NewMember(kB);
  b->StartServer();
  std::string dead = absl::StrCat("http://127.0.0.1:", etcdpp::testing::FreeLoopbackPort());
  // First URL dead, second live: the sender moves on to the next one.
  a->transport->AddPeer(kB, {dead, b->url});
  a->transport->Send({Msg(kA, kB, 1)});
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 1; }));
  a->transport->UpdatePeer(kB, {b->url});
  a->transport->Send({Msg(kA, kB, 2)});
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 2; }));
  a->transport->RemovePeer(kB);
  EXPECT_EQ(a->transport->ActiveSinceMs(kB), 0);
  int before = a->handler.UnreachableCount(kB);
  a->transport->Send({Msg(kA, kB, 3)});
  EXPECT_EQ(a->handler.UnreachableCount(kB), before + 1);
}

TEST_F(PeerTransportTest, Ipv6Url) {
  auto b = NewMember(kB);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("[::1]:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(b->transport->service());
  b->server = builder.BuildAndStart();
  if (!b->server || port == 0) GTEST_SKIP() << "no IPv6 loopback";
  auto a = NewMember(kA);
  a->transport->AddPeer(kB, {absl::StrCat("http://[::1]:", port)});
  a->transport->Send({Msg(kA, kB, 1)});
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.received.size() == 1; }));
}

}  // namespace
}  // namespace etcdpp::server::peer
