#include "server/http/metrics.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/byte_buffer.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/str_split.h"
#include "server/ids.h"

namespace etcdpp::server::http {
namespace {

// Go's strconv.FormatFloat(v, 'g', -1, 64) for the values we print.
std::string PromFloat(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  // Shortest representation that round-trips.
  for (int prec = 1; prec <= 17; ++prec) {
    char b2[64];
    std::snprintf(b2, sizeof(b2), "%.*g", prec, v);
    if (std::strtod(b2, nullptr) == v) return b2;
  }
  return buf;
}

void Metric(std::string* out, const char* name, const char* type, const char* help,
            const std::string& labels, const std::string& value) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name,
                  labels, " ", value, "\n");
}

// --- gRPC metrics -----------------------------------------------------------

constexpr int kGrpcCodes = 17;
constexpr const char* kCodeNames[kGrpcCodes] = {
    "OK",       "Canceled",          "Unknown",       "InvalidArgument", "DeadlineExceeded",
    "NotFound", "AlreadyExists",     "PermissionDenied", "ResourceExhausted",
    "FailedPrecondition", "Aborted", "OutOfRange",    "Unimplemented",   "Internal",
    "Unavailable", "DataLoss",       "Unauthenticated"};

struct MethodStats {
  std::string service;  // etcdserverpb.KV
  std::string method;   // Range
  const char* type;     // unary, client_stream, server_stream, bidi_stream
  std::atomic<uint64_t> started{0};
  std::atomic<uint64_t> msg_received{0};
  std::atomic<uint64_t> msg_sent{0};
  std::array<std::atomic<uint64_t>, kGrpcCodes> handled{};
};

struct GrpcStats {
  // "/etcdserverpb.KV/Range" -> stats; built once, read-only afterwards.
  std::map<std::string, std::unique_ptr<MethodStats>, std::less<>> methods;
  std::atomic<uint64_t> received_bytes{0};
  std::atomic<uint64_t> sent_bytes{0};
};

GrpcStats& Stats() {
  static GrpcStats* stats = [] {
    auto* s = new GrpcStats();
    const google::protobuf::FileDescriptor* file = etcdserverpb::RangeRequest::descriptor()->file();
    for (int i = 0; i < file->service_count(); ++i) {
      const google::protobuf::ServiceDescriptor* svc = file->service(i);
      for (int j = 0; j < svc->method_count(); ++j) {
        const google::protobuf::MethodDescriptor* m = svc->method(j);
        auto st = std::make_unique<MethodStats>();
        st->service = svc->full_name();
        st->method = m->name();
        st->type = m->client_streaming()
                       ? (m->server_streaming() ? "bidi_stream" : "client_stream")
                       : (m->server_streaming() ? "server_stream" : "unary");
        s->methods[absl::StrCat("/", svc->full_name(), "/", m->name())] = std::move(st);
      }
    }
    return s;
  }();
  return *stats;
}

class GrpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit GrpcMetricsInterceptor(MethodStats* m) : m_(m) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* b) override {
    using H = grpc::experimental::InterceptionHookPoints;
    if (b->QueryInterceptionHookPoint(H::POST_RECV_INITIAL_METADATA)) {
      m_->started.fetch_add(1, std::memory_order_relaxed);
    }
    if (b->QueryInterceptionHookPoint(H::POST_RECV_MESSAGE) && b->GetRecvMessage() != nullptr) {
      m_->msg_received.fetch_add(1, std::memory_order_relaxed);
      // Every method counted here has a generated protobuf request type.
      const auto* msg = static_cast<const google::protobuf::MessageLite*>(b->GetRecvMessage());
      Stats().received_bytes.fetch_add(msg->ByteSizeLong(), std::memory_order_relaxed);
    }
    if (b->QueryInterceptionHookPoint(H::PRE_SEND_MESSAGE)) {
      m_->msg_sent.fetch_add(1, std::memory_order_relaxed);
      // Serializes now; gRPC then sends this buffer (no second encoding).
      if (grpc::ByteBuffer* bb = b->GetSerializedSendMessage()) {
        Stats().sent_bytes.fetch_add(bb->Length(), std::memory_order_relaxed);
      }
    }
    if (b->QueryInterceptionHookPoint(H::PRE_SEND_STATUS)) {
      int code = static_cast<int>(b->GetSendStatus().error_code());
      if (code >= 0 && code < kGrpcCodes) {
        m_->handled[static_cast<size_t>(code)].fetch_add(1, std::memory_order_relaxed);
      }
    }
    b->Proceed();
  }

 private:
  MethodStats* m_;
};

class GrpcMetricsFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    auto& methods = Stats().methods;
    auto it = methods.find(absl::string_view(info->method() ? info->method() : ""));
    if (it == methods.end()) return nullptr;  // not an etcd API method
    return new GrpcMetricsInterceptor(it->second.get());
  }
};

std::string RenderGrpcMetrics() {
  GrpcStats& s = Stats();
  std::string out;
  auto family = [&](const char* name, const char* help,
                    const std::function<void(const MethodStats&)>& rows) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n");
    for (const auto& [key, m] : s.methods) rows(*m);
  };
  auto labels = [](const MethodStats& m) {
    return absl::StrCat("grpc_method=\"", m.method, "\",grpc_service=\"", m.service,
                        "\",grpc_type=\"", m.type, "\"");
  };
  family("grpc_server_handled_total",
         "Total number of RPCs completed on the server, regardless of success or failure.",
         [&](const MethodStats& m) {
           for (int c = 0; c < kGrpcCodes; ++c) {
             absl::StrAppend(&out, "grpc_server_handled_total{grpc_code=\"", kCodeNames[c], "\",",
                             labels(m), "} ", m.handled[static_cast<size_t>(c)].load(), "\n");
           }
         });
  family("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.",
         [&](const MethodStats& m) {
           absl::StrAppend(&out, "grpc_server_msg_received_total{", labels(m), "} ",
                           m.msg_received.load(), "\n");
         });
  family("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.",
         [&](const MethodStats& m) {
           absl::StrAppend(&out, "grpc_server_msg_sent_total{", labels(m), "} ",
                           m.msg_sent.load(), "\n");
         });
  family("grpc_server_started_total", "Total number of RPCs started on the server.",
         [&](const MethodStats& m) {
           absl::StrAppend(&out, "grpc_server_started_total{", labels(m), "} ", m.started.load(),
                           "\n");
         });
  return out;
}

}  // namespace

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MakeGrpcMetricsInterceptors() {
  Stats();  // build the table before any call
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> v;
  v.push_back(std::make_unique<GrpcMetricsFactory>());
  return v;
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(std::llround(std::max(0.0, value) * 1e9)),
                       std::memory_order_relaxed);
}

std::string Histogram::Render(const std::string& name, const std::string& help) const {
  std::string out = absl::StrCat("# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    std::string le = i < bounds_.size() ? PromFloat(bounds_[i]) : "+Inf";
    absl::StrAppend(&out, name, "_bucket{le=\"", le, "\"} ", cumulative, "\n");
  }
  absl::StrAppend(&out, name, "_sum ",
                  PromFloat(static_cast<double>(sum_nanos_.load()) / 1e9), "\n", name,
                  "_count ", count_.load(), "\n");
  return out;
}

ServerMetrics& GlobalMetrics() {
  static ServerMetrics* m = new ServerMetrics();
  return *m;
}

std::string RenderMetrics(const EtcdServer& server) {
  etcdserverpb::StatusResponse st;
  server.FillStatus(&st);
  ServerMetrics& gm = GlobalMetrics();
  std::string out;
  // Sorted by name, as the Go client library prints them.
  Metric(&out, "etcd_cluster_version", "gauge",
         "Which version is running. 1 for 'cluster_version' label with current cluster version",
         "{cluster_version=\"3.4\"}", "1");
  Metric(&out, "etcd_debugging_mvcc_current_revision", "gauge",
         "The current revision of store.", "", absl::StrCat(st.header().revision()));
  out += gm.wal_fsync_seconds.Render("etcd_disk_wal_fsync_duration_seconds",
                                     "The latency distributions of fsync called by WAL.");
  Metric(&out, "etcd_mvcc_db_total_size_in_bytes", "gauge",
         "Total size of the underlying database physically allocated in bytes.", "",
         absl::StrCat(st.dbsize()));
  Metric(&out, "etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
         "Total size of the underlying database logically in use in bytes.", "",
         absl::StrCat(st.dbsizeinuse()));
  Metric(&out, "etcd_network_client_grpc_received_bytes_total", "counter",
         "The total number of bytes received from grpc clients.", "",
         absl::StrCat(Stats().received_bytes.load()));
  Metric(&out, "etcd_network_client_grpc_sent_bytes_total", "counter",
         "The total number of bytes sent to grpc clients.", "",
         absl::StrCat(Stats().sent_bytes.load()));
  Metric(&out, "etcd_server_has_leader", "gauge",
         "Whether or not a leader exists. 1 is existence, 0 is not.", "",
         st.leader() != 0 ? "1" : "0");
  Metric(&out, "etcd_server_health_failures", "counter",
         "The total number of failed health checks", "", absl::StrCat(gm.health_failures.load()));
  Metric(&out, "etcd_server_health_success", "counter",
         "The total number of successful health checks", "",
         absl::StrCat(gm.health_success.load()));
  Metric(&out, "etcd_server_id", "gauge",
         "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
         absl::StrCat("{server_id=\"", IdToHex(server.member_id()), "\"}"), "1");
  Metric(&out, "etcd_server_is_leader", "gauge",
         "Whether or not this member is a leader. 1 if is, 0 otherwise.", "",
         st.leader() == server.member_id() ? "1" : "0");
  Metric(&out, "etcd_server_proposals_applied_total", "gauge",
         "The total number of consensus proposals applied.", "",
         absl::StrCat(st.raftappliedindex()));
  Metric(&out, "etcd_server_proposals_committed_total", "gauge",
         "The total number of consensus proposals committed.", "",
         absl::StrCat(st.raftindex()));
  Metric(&out, "etcd_server_version", "gauge",
         "Which version is running. 1 for 'server_version' label with current version.",
         absl::StrCat("{server_version=\"", kEtcdApiVersion, "\"}"), "1");
  out += RenderGrpcMetrics();
  return out;
}

bool CheckHealth(EtcdServer& server, const std::string& query, std::string* body) {
  std::vector<std::string> excluded;
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::vector<std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.size() == 2 && p[0] == "exclude") excluded.push_back(p[1]);
  }
  bool healthy = true;
  for (const auto& a : server.Alarms()) {
    std::string name = etcdserverpb::AlarmType_Name(a.alarm());
    if (std::find(excluded.begin(), excluded.end(), name) == excluded.end()) healthy = false;
  }
  etcdserverpb::StatusResponse st;
  if (healthy) {
    server.FillStatus(&st);
    if (st.leader() == 0) healthy = false;
  }
  if (healthy && server.NeedsReadBarrier()) {
    // etcd 3.4 also reads through Raft (a quorum get, 1 s): a leader that
    // lost its quorum but has not noticed yet is not healthy.
    auto done = std::make_shared<absl::Notification>();
    auto ok = std::make_shared<std::atomic<bool>>(false);
    server.ReadBarrier([done, ok](absl::Status s) {
      ok->store(s.ok());
      done->Notify();
    });
    if (!done->WaitForNotificationWithTimeout(absl::Seconds(1)) || !ok->load()) healthy = false;
  }
  (healthy ? GlobalMetrics().health_success : GlobalMetrics().health_failures).fetch_add(1);
  *body = healthy ? "{\"health\":\"true\"}" : "{\"health\":\"false\"}";
  return healthy;
}

namespace {

bool DrainBody(const HttpRequest& req, HttpConnection& conn) {
  std::string body;
  return conn.ReadBody(&body) == ReadStatus::kOk && req.keep_alive;
}

}  // namespace

void InstallEndpoints(HttpServer* http, EtcdServer* server, bool metrics_only) {
  http->Route("/metrics", [server](const HttpRequest& req, HttpConnection& conn) {
    bool keep = DrainBody(req, conn);
    return conn.WriteResponse(200, "text/plain; version=0.0.4; charset=utf-8",
                              RenderMetrics(*server), keep) &&
           keep;
  });
  http->Route("/health", [server](const HttpRequest& req, HttpConnection& conn) {
    bool keep = DrainBody(req, conn);
    if (req.method != "GET") {
      return WriteGoError(conn, 405, "Method Not Allowed", keep, "Allow: GET\r\n") && keep;
    }
    std::string body;
    if (!CheckHealth(*server, req.query, &body)) {
      return WriteGoError(conn, 503, body, keep) && keep;  // http.Error
    }
    return conn.WriteResponse(200, "text/plain; charset=utf-8", body, keep) && keep;
  });
  if (metrics_only) return;
  http->Route("/version", [](const HttpRequest& req, HttpConnection& conn) {
    bool keep = DrainBody(req, conn);
    if (req.method != "GET") {
      return WriteGoError(conn, 405, "Method Not Allowed", keep, "Allow: GET\r\n") && keep;
    }
    return conn.WriteResponse(200, "application/json",
                              absl::StrCat("{\"etcdserver\":\"", kEtcdApiVersion,
                                           "\",\"etcdcluster\":\"", kClusterVersion, "\"}"),
                              keep) &&
           keep;
  });
  // etcd 3.5's probes: "ok" when the server answers (livez) / is healthy
  // (readyz), else 503 with "not ok" (no alarm/leader detail in the body).
  auto probe = [server](bool readiness) {
    return [server, readiness](const HttpRequest& req, HttpConnection& conn) {
      bool keep = DrainBody(req, conn);
      std::string body;
      bool ok = !readiness || CheckHealth(*server, req.query, &body);
      if (!ok) return WriteGoError(conn, 503, "not ok", keep) && keep;
      return conn.WriteResponse(200, "text/plain; charset=utf-8", "ok", keep) && keep;
    };
  };
  http->Route("/livez", probe(false));
  http->Route("/readyz", probe(true));
}

}  // namespace etcdpp::server::http
