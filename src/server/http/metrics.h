// Prometheus metrics with etcd's names (text exposition format 0.0.4), and
// etcd's plain HTTP endpoints on the client and metrics ports: /version,
// /health (+ /livez, /readyz as etcd 3.5 has them), /metrics.
//
// Counters are lock-free atomics, safe from any thread. Gauges are read
// from the EtcdServer when /metrics is scraped.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/support/server_interceptor.h>

#include "server/etcd_server.h"
#include "server/http/http_server.h"

namespace etcdpp::server::http {

// A Prometheus histogram with fixed upper bounds. Observe() is lock-free.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  // "# HELP/# TYPE" lines, _bucket{le=...}, _sum, _count.
  std::string Render(const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> counts_;  // per bucket (not cumulative)
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_nanos_{0};  // sum in units of 1e-9
};

// Process-wide metrics other modules feed (hooks).
struct ServerMetrics {
  // etcd_disk_wal_fsync_duration_seconds: the WAL observes each fsync here
  // once it is wired into the server (buckets 0.001 .. 8.192 s, as etcd).
  Histogram wal_fsync_seconds{{0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
                               0.512, 1.024, 2.048, 4.096, 8.192}};
  std::atomic<uint64_t> health_success{0};
  std::atomic<uint64_t> health_failures{0};
};
ServerMetrics& GlobalMetrics();

// gRPC server metrics with go-grpc-prometheus's names, as etcd exports
// them (grpc_server_started_total, grpc_server_handled_total by code,
// grpc_server_msg_{received,sent}_total) and etcd's
// etcd_network_client_grpc_{received,sent}_bytes_total. One interceptor per
// call; counters are per method (fixed at start-up) and lock-free.
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MakeGrpcMetricsInterceptors();

// Renders every metric for /metrics.
std::string RenderMetrics(const EtcdServer& server);

// etcd 3.4's /health check: false when an alarm (not excluded by
// ?exclude=NAME) is active or there is no leader. Returns the JSON body.
bool CheckHealth(EtcdServer& server, const std::string& query, std::string* body);

// Registers /version, /health, /livez, /readyz, /metrics on `http`.
// `metrics_only`: the --listen-metrics-urls port (etcd serves /metrics and
// /health there).
void InstallEndpoints(HttpServer* http, EtcdServer* server, bool metrics_only);

}  // namespace etcdpp::server::http
