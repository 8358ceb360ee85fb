#include "server/http/http_conn.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace etcdpp::server::http {
namespace {

int PollMs(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return 200;  // re-check the cancel flags
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(200, absl::ToInt64Milliseconds(left) + 1));
}

// RFC 7231 IMF-fixdate, as Go's http.TimeFormat.
std::string HttpDate() {
  char buf[64];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

}  // namespace

const char* StatusText(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Request Entity Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

const std::string* HttpRequest::Header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

HttpConnection::HttpConnection(int fd, const HttpLimits& limits) : fd_(fd), limits_(limits) {}

HttpConnection::~HttpConnection() { close(fd_); }

void HttpConnection::Abort() {
  aborted_ = true;
  shutdown(fd_, SHUT_RDWR);
}

bool HttpConnection::PeerGone() {
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return aborted_;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  return aborted_;
}

ReadStatus HttpConnection::Fill(absl::Time deadline) {
  char chunk[16384];
  while (!aborted_ && !reads_cancelled_) {
    ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
      return ReadStatus::kOk;
    }
    if (n == 0) return ReadStatus::kEnd;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return ReadStatus::kError;
    int ms = PollMs(deadline);
    if (ms == 0) return ReadStatus::kTimeout;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, ms) < 0 && errno != EINTR) return ReadStatus::kError;
  }
  return ReadStatus::kError;
}

ReadStatus HttpConnection::ReadLine(std::string* line, absl::Time deadline, size_t max) {
  size_t scanned = 0;
  for (;;) {
    size_t nl = buf_.find('\n', scanned);
    if (nl != std::string::npos) {
      size_t end = (nl > 0 && buf_[nl - 1] == '\r') ? nl - 1 : nl;
      line->assign(buf_, 0, end);
      buf_.erase(0, nl + 1);
      return ReadStatus::kOk;
    }
    scanned = buf_.size();
    if (buf_.size() > max) return ReadStatus::kTooLarge;
    ReadStatus st = Fill(deadline);
    if (st == ReadStatus::kEnd) return ReadStatus::kBadRequest;  // EOF mid-line
    if (st != ReadStatus::kOk) return st;
  }
}

ReadStatus HttpConnection::ReadHead(HttpRequest* req) {
  *req = HttpRequest();
  send_continue_ = false;
  // Wait for the first byte of the request (keep-alive idle).
  absl::Time idle_deadline = absl::Now() + limits_.idle_timeout;
  while (buf_.empty()) {
    ReadStatus st = Fill(idle_deadline);
    if (st != ReadStatus::kOk) return st == ReadStatus::kTimeout ? ReadStatus::kEnd : st;
  }
  absl::Time deadline = absl::Now() + limits_.header_timeout;
  size_t budget = limits_.max_header_bytes;
  std::string line;
  // Tolerate empty lines before the request line (RFC 7230 3.5).
  do {
    ReadStatus st = ReadLine(&line, deadline, budget);
    if (st != ReadStatus::kOk) return st;
  } while (line.empty());
  budget -= std::min(budget, line.size());
  std::vector<std::string> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() ||
      (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0")) {
    bad_request_line_ = true;
    return ReadStatus::kBadRequest;
  }
  req->method = parts[0];
  req->target = parts[1];
  req->version = parts[2];
  size_t q = req->target.find('?');
  req->path = req->target.substr(0, q);
  if (q != std::string::npos) req->query = req->target.substr(q + 1);
  req->keep_alive = req->version == "HTTP/1.1";
  bool has_length = false;
  for (;;) {
    ReadStatus st = ReadLine(&line, deadline, budget);
    if (st != ReadStatus::kOk) return st;
    if (line.empty()) break;
    budget -= std::min(budget, line.size() + 2);
    if (budget == 0) return ReadStatus::kTooLarge;
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) return ReadStatus::kBadRequest;
    std::string name = absl::AsciiStrToLower(absl::string_view(line).substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(absl::string_view(line).substr(colon + 1)));
    if (name == "content-length") {
      int64_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || n < 0) return ReadStatus::kBadRequest;
      if (has_length && n != req->content_length) return ReadStatus::kBadRequest;
      req->content_length = n;
      has_length = true;
    } else if (name == "transfer-encoding") {
      if (absl::AsciiStrToLower(value) != "chunked") return ReadStatus::kBadRequest;
      req->chunked = true;
    } else if (name == "expect") {
      if (absl::AsciiStrToLower(value) == "100-continue") send_continue_ = true;
    } else if (name == "connection") {
      std::string v = absl::AsciiStrToLower(value);
      if (v.find("close") != std::string::npos) req->keep_alive = false;
      if (v.find("keep-alive") != std::string::npos) req->keep_alive = true;
    }
    req->headers.emplace_back(std::move(name), std::move(value));
  }
  if (req->chunked) {
    req->content_length = 0;  // RFC 7230 3.3.3: chunked wins
  }
  chunked_ = req->chunked;
  remaining_ = chunked_ ? 0 : req->content_length;
  body_done_ = !chunked_ && remaining_ == 0;
  return ReadStatus::kOk;
}

ReadStatus HttpConnection::ReadBodySome(std::string* out, bool wait_forever) {
  if (body_done_) return ReadStatus::kEnd;
  if (send_continue_) {
    send_continue_ = false;
    if (!WriteAll("HTTP/1.1 100 Continue\r\n\r\n")) return ReadStatus::kError;
  }
  absl::Time deadline =
      wait_forever ? absl::InfiniteFuture() : absl::Now() + limits_.body_timeout;
  if (chunked_ && remaining_ == 0) {
    // Next chunk header: "<hex size>[;ext]".
    std::string line;
    ReadStatus st = ReadLine(&line, deadline, 4096);
    if (st != ReadStatus::kOk) return st;
    absl::string_view hex = line;
    hex = hex.substr(0, hex.find(';'));
    hex = absl::StripAsciiWhitespace(hex);
    uint64_t size = 0;
    if (hex.empty() || hex.size() > 15) return ReadStatus::kBadRequest;
    for (char c : hex) {
      int d = absl::ascii_isdigit(c) ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (d < 0) return ReadStatus::kBadRequest;
      size = size * 16 + static_cast<uint64_t>(d);
    }
    if (size == 0) {
      // Trailers up to the empty line.
      do {
        st = ReadLine(&line, deadline, 4096);
        if (st != ReadStatus::kOk) return st;
      } while (!line.empty());
      body_done_ = true;
      return ReadStatus::kEnd;
    }
    remaining_ = static_cast<int64_t>(size);
  }
  while (buf_.empty()) {
    ReadStatus st = Fill(deadline);
    if (st == ReadStatus::kEnd) return ReadStatus::kBadRequest;  // body cut short
    if (st != ReadStatus::kOk) return st;
  }
  size_t n = static_cast<size_t>(std::min<int64_t>(remaining_, static_cast<int64_t>(buf_.size())));
  out->append(buf_, 0, n);
  buf_.erase(0, n);
  remaining_ -= static_cast<int64_t>(n);
  if (remaining_ == 0) {
    if (chunked_) {
      // The CRLF after the chunk data.
      std::string line;
      ReadStatus st = ReadLine(&line, deadline, 2);
      if (st != ReadStatus::kOk) return st;
      if (!line.empty()) return ReadStatus::kBadRequest;
    } else {
      body_done_ = true;
    }
  }
  return ReadStatus::kOk;
}

ReadStatus HttpConnection::ReadBody(std::string* out) {
  out->clear();
  absl::Time deadline = absl::Now() + limits_.body_timeout;
  while (!body_done_) {
    if (absl::Now() > deadline) return ReadStatus::kTimeout;
    ReadStatus st = ReadBodySome(out, false);
    if (st == ReadStatus::kEnd) break;
    if (st != ReadStatus::kOk) return st;
    if (static_cast<int64_t>(out->size()) > limits_.max_body_bytes) return ReadStatus::kTooLarge;
  }
  return ReadStatus::kOk;
}

bool HttpConnection::WriteAll(absl::string_view data) {
  absl::Time deadline = absl::Now() + limits_.write_timeout;
  while (!data.empty()) {
    if (aborted_) return false;
    ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    int ms = PollMs(deadline);
    if (ms == 0) return false;
    pollfd p{fd_, POLLOUT, 0};
    if (poll(&p, 1, ms) < 0 && errno != EINTR) return false;
  }
  return true;
}

// etcd wraps its client handlers in a CORS handler (--cors, default "*").
std::string HttpConnection::CommonHeaders() const {
  return absl::StrCat(
      "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
      "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
      "Access-Control-Allow-Origin: *\r\n");
}

bool HttpConnection::WriteResponse(int status, absl::string_view content_type,
                                   absl::string_view body, bool keep_alive,
                                   absl::string_view extra_headers) {
  // Go's order: sorted headers, then Date, then Content-Length.
  std::string head = absl::StrCat("HTTP/1.1 ", status, " ", StatusText(status), "\r\n",
                                  CommonHeaders());
  if (!content_type.empty()) absl::StrAppend(&head, "Content-Type: ", content_type, "\r\n");
  absl::StrAppend(&head, extra_headers, "Date: ", HttpDate(), "\r\n",
                  "Content-Length: ", body.size(), "\r\n");
  if (!keep_alive) absl::StrAppend(&head, "Connection: close\r\n");
  head += "\r\n";
  if (body.size() < 64 * 1024) {
    head.append(body.data(), body.size());
    return WriteAll(head);
  }
  return WriteAll(head) && WriteAll(body);
}

bool HttpConnection::BeginChunked(int status, absl::string_view content_type,
                                  absl::string_view extra_headers) {
  return WriteAll(absl::StrCat("HTTP/1.1 ", status, " ", StatusText(status), "\r\n",
                               CommonHeaders(), "Content-Type: ", content_type, "\r\n",
                               extra_headers, "Date: ", HttpDate(), "\r\n",
                               "Transfer-Encoding: chunked\r\n\r\n"));
}

bool HttpConnection::WriteChunk(absl::string_view data) {
  if (data.empty()) return true;
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  return WriteAll(absl::StrCat(size, data, "\r\n"));
}

bool HttpConnection::EndChunked(absl::string_view trailers) {
  return WriteAll(absl::StrCat("0\r\n", trailers, "\r\n"));
}

}  // namespace etcdpp::server::http
