// Helper modes for bench/compare.sh:
//   probe      which features the server serves (one line per feature)
//   ready      waits until a linearizable read succeeds (restart time)
//   fdatasync  the disk's raw write + fdatasync latency (durability floor)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "bench.h"

namespace etcdpp::bench {
namespace {

std::shared_ptr<grpc::Channel> FastReconnectChannel(const std::string& ep) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(ep, grpc::InsecureChannelCredentials(), args);
}

void SetDeadline(grpc::ClientContext* ctx, int64_t ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

std::string Why(const grpc::Status& st) {
  static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                 "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                 "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                 "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  int c = st.error_code();
  std::string name = c >= 0 && c <= 16 ? kNames[c] : std::to_string(c);
  std::string msg = st.error_message();
  for (char& ch : msg) {
    if (ch == '\n') ch = ' ';
  }
  return name + (msg.empty() ? "" : ": " + msg);
}

// "name=1" or "name=0 <why>".
void Line(const char* name, const grpc::Status& st) {
  if (st.ok()) {
    std::printf("%s=1\n", name);
  } else {
    std::printf("%s=0 %s\n", name, Why(st).c_str());
  }
}

}  // namespace

int RunProbe(const Flags& f) {
  std::string ep = f.Str("endpoints", "127.0.0.1:2379");
  if (ep.find(',') != std::string::npos) ep = ep.substr(0, ep.find(','));
  if (ep.rfind("http://", 0) == 0) ep = ep.substr(7);
  int64_t timeout_ms = f.Int("timeout-ms", 3000);
  f.CheckAllUsed();
  auto ch = FastReconnectChannel(ep);
  if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms))) {
    std::printf("connect=0 cannot connect to %s\n", ep.c_str());
    return 1;
  }
  std::printf("connect=1\n");
  {
    auto kv = etcdserverpb::KV::NewStub(ch);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout_ms);
    etcdserverpb::PutRequest req;
    req.set_key("/etcdpp-bench/probe");
    req.set_value("x");
    etcdserverpb::PutResponse resp;
    Line("kv", kv->Put(&ctx, req, &resp));
  }
  {
    auto kv = etcdserverpb::KV::NewStub(ch);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout_ms);
    etcdserverpb::TxnRequest req;
    req.add_success()->mutable_request_range()->set_key("/etcdpp-bench/probe");
    etcdserverpb::TxnResponse resp;
    Line("txn", kv->Txn(&ctx, req, &resp));
  }
  {
    auto w = etcdserverpb::Watch::NewStub(ch);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout_ms);
    auto stream = w->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    req.mutable_create_request()->set_key("/etcdpp-bench/probe");
    etcdserverpb::WatchResponse resp;
    bool created = stream->Write(req) && stream->Read(&resp) && resp.created();
    if (created) {
      ctx.TryCancel();
      stream->Finish();
      Line("watch", grpc::Status::OK);
    } else {
      stream->WritesDone();
      grpc::Status st = stream->Finish();
      if (st.ok()) st = grpc::Status(grpc::StatusCode::UNKNOWN, "no created response");
      Line("watch", st);
    }
  }
  {
    auto l = etcdserverpb::Lease::NewStub(ch);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout_ms);
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(10);
    etcdserverpb::LeaseGrantResponse resp;
    grpc::Status st = l->LeaseGrant(&ctx, req, &resp);
    if (st.ok()) {
      grpc::ClientContext ctx2;
      SetDeadline(&ctx2, timeout_ms);
      etcdserverpb::LeaseRevokeRequest rv;
      rv.set_id(resp.id());
      etcdserverpb::LeaseRevokeResponse rr;
      st = l->LeaseRevoke(&ctx2, rv, &rr);
    }
    Line("lease", st);
  }
  {
    auto c = etcdserverpb::Cluster::NewStub(ch);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout_ms);
    etcdserverpb::MemberListRequest req;
    etcdserverpb::MemberListResponse resp;
    grpc::Status st = c->MemberList(&ctx, req, &resp);
    if (st.ok()) {
      std::printf("members=%d\n", resp.members_size());
    } else {
      std::printf("members=0 %s\n", Why(st).c_str());
    }
  }
  {
    auto m = etcdserverpb::Maintenance::NewStub(ch);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout_ms);
    etcdserverpb::StatusRequest req;
    etcdserverpb::StatusResponse resp;
    grpc::Status st = m->Status(&ctx, req, &resp);
    if (st.ok()) {
      std::printf("status=1 version=%s leader=%llx member=%llx db_size=%lld\n",
                  resp.version().c_str(), static_cast<unsigned long long>(resp.leader()),
                  static_cast<unsigned long long>(resp.header().member_id()),
                  static_cast<long long>(resp.dbsize()));
    } else {
      Line("status", st);
    }
  }
  return 0;
}

int RunReady(const Flags& f) {
  std::string ep = f.Str("endpoints", "127.0.0.1:2379");
  if (ep.find(',') != std::string::npos) ep = ep.substr(0, ep.find(','));
  if (ep.rfind("http://", 0) == 0) ep = ep.substr(7);
  double timeout_s = f.Double("timeout", 60);
  f.CheckAllUsed();
  int64_t start = NowNs();
  int64_t until = start + static_cast<int64_t>(timeout_s * 1e9);
  auto ch = FastReconnectChannel(ep);
  auto kv = etcdserverpb::KV::NewStub(ch);
  std::string last = "no attempt";
  while (NowNs() < until) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 500);
    ctx.set_wait_for_ready(true);
    etcdserverpb::RangeRequest req;
    req.set_key("/etcdpp-bench/ready");  // linearizable (serializable=false)
    etcdserverpb::RangeResponse resp;
    grpc::Status st = kv->Range(&ctx, req, &resp);
    if (st.ok()) {
      std::printf("ready_ms=%.1f\n", static_cast<double>(NowNs() - start) / 1e6);
      return 0;
    }
    last = Why(st);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::printf("ready=0 not ready after %.0f s: %s\n", timeout_s, last.c_str());
  return 1;
}

int RunFdatasync(const Flags& f) {
  std::string dir = f.Str("dir", "/tmp");
  int64_t size = f.Int("size", 4096);
  int64_t total = f.Int("total", 0);
  double duration_s = f.Double("duration", 0);
  CommonOptions o;
  o.json = f.Bool("json", false);
  o.label = f.Str("label", "");
  // With --spin a thread keeps one CPU busy meanwhile: on some VMs an idle
  // guest CPU adds a timer tick (~4 ms) to every fdatasync wake-up, and a
  // server whose threads spin (Go's scheduler does) never sees it.
  bool spin = f.Bool("spin", false);
  f.Bool("progress", false);  // accepted for symmetry with the load modes
  f.CheckAllUsed();
  if (total == 0 && duration_s == 0) total = 1000;
  // A preallocated file written sequentially, like a WAL segment (etcd
  // preallocates 64 MB), so fdatasync need not update the file size.
  std::string path = dir + "/etcdpp-bench-fdatasync." + std::to_string(getpid());
  int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "etcdpp-bench: open %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  const int64_t kFile = 64 << 20;
  if (posix_fallocate(fd, 0, kFile) != 0) {
    std::fprintf(stderr, "etcdpp-bench: fallocate %s failed\n", path.c_str());
  }
  ::fsync(fd);
  std::atomic<bool> stop_spin{false};
  std::thread spinner;
  if (spin) {
    spinner = std::thread([&stop_spin] {
      while (!stop_spin.load(std::memory_order_relaxed)) {
      }
    });
  }
  std::string buf(static_cast<size_t>(size), 'x');
  Histogram h;
  int64_t start = NowNs();
  int64_t until = duration_s > 0 ? start + static_cast<int64_t>(duration_s * 1e9) : 0;
  int64_t off = 0;
  int64_t n = 0;
  int errors = 0;
  while ((total == 0 || n < total) && (until == 0 || NowNs() < until)) {
    if (off + size > kFile) off = 0;
    int64_t t = NowNs();
    if (::pwrite(fd, buf.data(), buf.size(), off) != static_cast<ssize_t>(buf.size()) ||
        ::fdatasync(fd) != 0) {
      ++errors;
      break;
    }
    h.Record(NowNs() - t);
    off += size;
    ++n;
  }
  double secs = static_cast<double>(NowNs() - start) / 1e9;
  stop_spin.store(true);
  if (spinner.joinable()) spinner.join();
  ::close(fd);
  ::unlink(path.c_str());
  Result r;
  r.mode = spin ? "fdatasync-spin" : "fdatasync";
  r.main_op = "fdatasync";
  r.hist["fdatasync"] = h;
  r.ops = h.count();
  r.errors = errors;
  r.duration_s = secs;
  r.extra["write_bytes"] = static_cast<double>(size);
  return Report(r, o);
}

}  // namespace etcdpp::bench
