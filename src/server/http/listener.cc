#include "server/http/listener.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include <grpcpp/server_posix.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace etcdpp::server::http {
namespace {

constexpr char kHttp2Preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t kPrefaceLen = sizeof(kHttp2Preface) - 1;

std::string GoErrorText(int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// The "embed" logger made in main, or the default one (tests).
std::shared_ptr<spdlog::logger> Logger() {
  auto log = spdlog::get("embed");
  return log ? log : spdlog::default_logger();
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

}  // namespace

absl::StatusOr<std::unique_ptr<ClientListener>> ClientListener::Listen(
    const std::vector<Url>& urls, const ListenerOptions& options) {
  std::unique_ptr<ClientListener> l(new ClientListener(options));
  for (const Url& url : urls) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    std::string port = std::to_string(url.port);
    const char* host = url.host.empty() ? nullptr : url.host.c_str();
    if (int rc = getaddrinfo(host, port.c_str(), &hints, &res); rc != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen tcp ", url.HostPort(), ": ", gai_strerror(rc)));
    }
    int bound_port = 0;
    int bound = 0;
    absl::Status first_error;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
      // A host that resolves to several addresses (localhost) shares the port
      // chosen for the first one.
      if (bound_port != 0) {
        if (ai->ai_family == AF_INET6) {
          reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_port = htons(bound_port);
        } else {
          reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_port = htons(bound_port);
        }
      }
      if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        if (first_error.ok()) {
          first_error = absl::UnavailableError(
              absl::StrCat("listen tcp ", url.HostPort(), ": bind: ", GoErrorText(errno)));
        }
        close(fd);
        continue;
      }
      if (bound_port == 0) {
        sockaddr_storage ss{};
        socklen_t len = sizeof(ss);
        getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
        bound_port = ss.ss_family == AF_INET6
                         ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                         : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
      }
      SetNonBlocking(fd);
      l->listen_fds_.push_back(fd);
      ++bound;
      // Go listens on the first address only for a name; binding the others
      // too is harmless and lets ::1 clients of "localhost" in.
    }
    freeaddrinfo(res);
    if (bound == 0) {
      return first_error.ok() ? absl::UnavailableError(absl::StrCat(
                                    "listen tcp ", url.HostPort(), ": cannot listen"))
                              : first_error;
    }
    l->ports_.push_back(bound_port);
  }
  if (pipe2(l->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError("pipe2 failed");
  }
  return l;
}

ClientListener::~ClientListener() {
  Stop();
  for (int fd : listen_fds_) close(fd);
  if (wake_pipe_[0] >= 0) close(wake_pipe_[0]);
  if (wake_pipe_[1] >= 0) close(wake_pipe_[1]);
}

void ClientListener::Start(grpc::Server* grpc, HttpServer* http) {
  grpc_ = grpc;
  http_ = http;
  thread_ = std::thread([this] { AcceptLoop(); });
}

void ClientListener::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    char c = 'x';
    (void)!write(wake_pipe_[1], &c, 1);
    thread_.join();
  }
  for (int fd : listen_fds_) close(fd);
  listen_fds_.clear();
}

void ClientListener::AcceptLoop() {
  struct Pending {
    int fd;
    absl::Time deadline;
  };
  std::vector<Pending> pending;
  std::vector<pollfd> pfds;
  for (;;) {
    pfds.clear();
    pfds.push_back({wake_pipe_[0], POLLIN, 0});
    for (int fd : listen_fds_) pfds.push_back({fd, POLLIN, 0});
    for (const Pending& p : pending) pfds.push_back({p.fd, POLLIN, 0});
    int timeout_ms = -1;
    if (!pending.empty()) {
      absl::Time earliest = pending[0].deadline;
      for (const Pending& p : pending) earliest = std::min(earliest, p.deadline);
      timeout_ms = static_cast<int>(
          std::max<int64_t>(0, absl::ToInt64Milliseconds(earliest - absl::Now()) + 1));
    }
    int n = poll(pfds.data(), pfds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) {
      Logger()->error("poll on the client listener failed: {}", std::strerror(errno));
      break;
    }
    if (pfds[0].revents != 0) break;  // Stop()
    // New connections.
    for (size_t i = 0; i < listen_fds_.size(); ++i) {
      if ((pfds[1 + i].revents & POLLIN) == 0) continue;
      for (int k = 0; k < 64; ++k) {
        int fd = accept4(listen_fds_[i], nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;  // EAGAIN, or EMFILE: retried on the next wake-up
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (pending.size() >= options_.max_undetected) {
          close(fd);
          continue;
        }
        pending.push_back({fd, absl::Now() + options_.detect_timeout});
      }
    }
    // Classify the connections that have sent bytes; drop the timed out.
    size_t base = 1 + listen_fds_.size();
    std::vector<Pending> still;
    absl::Time now = absl::Now();
    size_t polled = pfds.size() - base;
    for (size_t i = 0; i < pending.size(); ++i) {
      const Pending& p = pending[i];
      short rev = i < polled ? pfds[base + i].revents : 0;
      if (rev == 0) {
        if (now >= p.deadline) {
          close(p.fd);
        } else {
          still.push_back(p);
        }
        continue;
      }
      char buf[kPrefaceLen];
      ssize_t got = recv(p.fd, buf, sizeof(buf), MSG_PEEK);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
          still.push_back(p);
        } else {
          close(p.fd);  // closed or reset before a byte
        }
        continue;
      }
      bool prefix_ok = std::memcmp(buf, kHttp2Preface, static_cast<size_t>(got)) == 0;
      if (prefix_ok && static_cast<size_t>(got) < kPrefaceLen) {
        // Looks like HTTP/2 so far: wait for the rest of the preface. (A
        // client that stops half way times out.)
        if (now >= p.deadline) {
          close(p.fd);
        } else {
          still.push_back(p);
        }
        continue;
      }
      if (prefix_ok && grpc_ != nullptr) {
        grpc_conns_.fetch_add(1);
        grpc::AddInsecureChannelFromFd(grpc_, p.fd);
      } else {
        http_conns_.fetch_add(1);
        http_->Serve(p.fd);
      }
    }
    pending.swap(still);
  }
  for (const Pending& p : pending) close(p.fd);
}

}  // namespace etcdpp::server::http
