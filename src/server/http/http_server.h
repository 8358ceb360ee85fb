// HttpServer: HTTP/1.1 on connections handed over by the listener (the
// client port after protocol detection, or a metrics port).
//
// Threads: one thread per connection, at most `max_connections` at once; a
// connection over the cap gets 503 and is closed at once. Every read and
// write has a deadline (HttpLimits), so slow or idle clients only ever cost
// their own thread until their timeout. Handlers run on the connection's
// thread and may block it (a unary gateway call waits for its answer there),
// never a gRPC thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/http/http_conn.h"

namespace etcdpp::server::http {

// Writes Go's http.Error: text/plain, nosniff, `msg` + "\n".
bool WriteGoError(HttpConnection& conn, int status, absl::string_view msg, bool keep_alive,
                  absl::string_view extra_headers = "");

class HttpServer {
 public:
  // Called with the request head read; the handler reads the body itself
  // (ReadBody / ReadBodySome), writes one response, and returns whether the
  // connection may carry another request.
  using Handler = std::function<bool(const HttpRequest&, HttpConnection&)>;

  HttpServer(const HttpLimits& limits, int max_connections);
  ~HttpServer();

  // Routes: an exact path, or a prefix (the longest matching prefix wins).
  // Register before the first Serve().
  void Route(const std::string& path, Handler h);
  void RoutePrefix(const std::string& prefix, Handler h);

  // Takes ownership of an accepted, non-blocking socket. Never blocks.
  void Serve(int fd);

  // Aborts every connection (their blocked reads/writes fail), then waits
  // for their threads to finish. Later Serve() calls close the fd at once.
  void Stop();

  int active_connections() const;

 private:
  void ConnectionLoop(HttpConnection* conn);
  const Handler* Find(const std::string& path) const;

  const HttpLimits limits_;
  const int max_connections_;
  std::map<std::string, Handler> exact_;
  std::map<std::string, Handler> prefixes_;

  mutable absl::Mutex mu_;  // leaf lock
  std::set<HttpConnection*> conns_ ABSL_GUARDED_BY(mu_);
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace etcdpp::server::http
