#include "server/http/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace etcdpp::server::http {
namespace {
// The "embed" logger made in main, or the default one (tests).
std::shared_ptr<spdlog::logger> Logger() {
  auto log = spdlog::get("embed");
  return log ? log : spdlog::default_logger();
}
}  // namespace

bool WriteGoError(HttpConnection& conn, int status, absl::string_view msg, bool keep_alive,
                  absl::string_view extra_headers) {
  return conn.WriteResponse(status, "text/plain; charset=utf-8", absl::StrCat(msg, "\n"),
                            keep_alive,
                            absl::StrCat(extra_headers, "X-Content-Type-Options: nosniff\r\n"));
}

HttpServer::HttpServer(const HttpLimits& limits, int max_connections)
    : limits_(limits), max_connections_(max_connections) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Route(const std::string& path, Handler h) { exact_[path] = std::move(h); }

void HttpServer::RoutePrefix(const std::string& prefix, Handler h) {
  prefixes_[prefix] = std::move(h);
}

const HttpServer::Handler* HttpServer::Find(const std::string& path) const {
  if (auto it = exact_.find(path); it != exact_.end()) return &it->second;
  const Handler* best = nullptr;
  size_t best_len = 0;
  for (const auto& [prefix, h] : prefixes_) {
    if (path.compare(0, prefix.size(), prefix) == 0 && prefix.size() >= best_len) {
      best = &h;
      best_len = prefix.size();
    }
  }
  return best;
}

int HttpServer::active_connections() const {
  absl::MutexLock l(&mu_);
  return active_;
}

void HttpServer::Serve(int fd) {
  {
    absl::MutexLock l(&mu_);
    if (!stopping_ && active_ < max_connections_) {
      auto* conn = new HttpConnection(fd, limits_);
      try {
        std::thread([this, conn] { ConnectionLoop(conn); }).detach();
      } catch (const std::system_error&) {  // out of threads: refuse like over the cap
        conn->Abort();
        delete conn;  // closes fd
        return;
      }
      ++active_;  // the new thread needs mu_ to finish, so this is in time
      conns_.insert(conn);
      return;
    }
  }
  // Over the cap (or stopping): a best-effort 503 on the non-blocking
  // socket, then close. Never waits.
  static constexpr char k503[] =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Connection: close\r\nContent-Length: 20\r\n\r\ntoo many connections";
  (void)!send(fd, k503, sizeof(k503) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  close(fd);
}

void HttpServer::ConnectionLoop(HttpConnection* conn) {
  for (bool first = true;; first = false) {
    HttpRequest req;
    ReadStatus st = conn->ReadHead(&req);
    // etcd's cmux closes a connection whose first line is not an HTTP/1
    // request line, without a word.
    if (st == ReadStatus::kBadRequest && first && conn->bad_request_line()) break;
    if (st == ReadStatus::kTooLarge) {
      // Go's net/http answers a too-large head in this bare form.
      conn->WriteRaw(
          "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; "
          "charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large");
      break;
    }
    if (st == ReadStatus::kBadRequest) {
      conn->WriteRaw(
          "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
          "Connection: close\r\n\r\n400 Bad Request");
      break;
    }
    if (st != ReadStatus::kOk) break;  // EOF, idle or header timeout, reset
    bool keep = req.keep_alive;
    if (req.method == "OPTIONS") {
      // etcd's CORS handler answers every preflight itself.
      std::string body;
      if (conn->ReadBody(&body) != ReadStatus::kOk) break;
      keep = conn->WriteResponse(200, "", "", keep) && keep;
    } else if (const Handler* h = Find(req.path)) {
      keep = (*h)(req, *conn) && keep;
    } else {
      std::string body;
      if (conn->ReadBody(&body) != ReadStatus::kOk) keep = false;
      keep = WriteGoError(*conn, 404, "404 page not found", keep) && keep;
    }
    // A handler that left body bytes unread cannot keep the connection.
    if (!keep || !conn->BodyDone()) break;
  }
  absl::MutexLock l(&mu_);
  conns_.erase(conn);
  delete conn;
  --active_;
}

void HttpServer::Stop() {
  absl::MutexLock l(&mu_);
  stopping_ = true;
  for (HttpConnection* c : conns_) c->Abort();
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10))) {
    Logger()->warn("{} HTTP connections still open at shutdown", active_);
  }
}

}  // namespace etcdpp::server::http
