// ClientListener: the sockets of --listen-client-urls (and, without a gRPC
// server, of --listen-metrics-urls), serving gRPC and HTTP/1.1 on ONE port
// as etcd does (cmux).
//
// One accept thread polls the listening sockets and the connections whose
// protocol is not known yet. A connection is gRPC when its first 24 bytes
// are the HTTP/2 client preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"): it is
// handed to gRPC with grpc::AddInsecureChannelFromFd and from then on gRPC
// alone reads it, on its own threads. Anything else goes to the HttpServer.
// Peeking is non-blocking (MSG_PEEK after poll), so a client that sends
// nothing costs a slot in the poll set until the detection timeout, never
// a blocked thread; the number of undetected connections is capped.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/config.h"
#include "server/http/http_server.h"

namespace etcdpp::server::http {

struct ListenerOptions {
  absl::Duration detect_timeout = absl::Seconds(10);
  size_t max_undetected = 1024;
};

class ClientListener {
 public:
  // Binds and listens on every URL (every address the host resolves to;
  // IPv6 hosts such as [::1] included). Errors read like Go's:
  // "listen tcp 127.0.0.1:2379: bind: address already in use".
  static absl::StatusOr<std::unique_ptr<ClientListener>> Listen(const std::vector<Url>& urls,
                                                                const ListenerOptions& options = {});
  ~ClientListener();

  // The port actually bound for urls[i] (useful with port 0).
  int port(size_t i) const { return ports_[i]; }

  // Starts the accept thread. `grpc` (may be null: HTTP only) must be
  // started and outlive Stop(); `http` must outlive Stop().
  void Start(grpc::Server* grpc, HttpServer* http);

  // Closes the listening sockets and the undetected connections, joins the
  // accept thread. Idempotent. Connections already handed over are left to
  // their owners (HttpServer::Stop, grpc::Server::Shutdown).
  void Stop();

  // Connections handed to gRPC / HTTP so far (for tests and metrics).
  uint64_t grpc_connections() const { return grpc_conns_.load(); }
  uint64_t http_connections() const { return http_conns_.load(); }

 private:
  explicit ClientListener(const ListenerOptions& o) : options_(o) {}
  void AcceptLoop();

  ListenerOptions options_;
  std::vector<int> listen_fds_;
  std::vector<int> ports_;
  int wake_pipe_[2] = {-1, -1};
  grpc::Server* grpc_ = nullptr;
  HttpServer* http_ = nullptr;
  std::thread thread_;
  std::atomic<uint64_t> grpc_conns_{0};
  std::atomic<uint64_t> http_conns_{0};
  bool stopped_ = false;
};

}  // namespace etcdpp::server::http
