// One HTTP/1.1 connection on the client (or metrics) port: request parsing
// (head, Content-Length and chunked bodies, streamed or whole), responses
// with etcd's headers (fixed-length or chunked) and keep-alive.
//
// Every read and write is bounded: the socket is non-blocking and each
// operation polls with a deadline, so a slow-loris client costs one
// connection thread until its timeout, never more. Owned and used by one
// connection thread; Abort() may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace etcdpp::server::http {

struct HttpLimits {
  // Go's http.DefaultMaxHeaderBytes (1 MiB) plus its 4 KiB slack.
  size_t max_header_bytes = (1 << 20) + 4096;
  // A request body larger than this is refused with 413 (set by the server
  // from --max-request-bytes: base64 JSON of the largest gRPC request).
  int64_t max_body_bytes = 8 << 20;
  absl::Duration header_timeout = absl::Seconds(10);  // first byte to end of head
  absl::Duration body_timeout = absl::Seconds(30);    // a whole unary body
  absl::Duration idle_timeout = absl::Seconds(120);   // keep-alive wait
  absl::Duration write_timeout = absl::Seconds(30);   // one response write
};

struct HttpRequest {
  std::string method;
  std::string target;  // as sent: path?query
  std::string path;
  std::string query;
  std::string version;  // "HTTP/1.1"
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  bool keep_alive = true;
  bool chunked = false;
  int64_t content_length = 0;

  // The first value of a header (name lower-case), or nullptr.
  const std::string* Header(absl::string_view name) const;
};

enum class ReadStatus {
  kOk,
  kEnd,         // clean end: EOF before a request, or end of the body
  kTimeout,
  kTooLarge,    // head or body over its limit
  kBadRequest,  // malformed HTTP
  kError,       // reset, aborted
};

class HttpConnection {
 public:
  // Takes ownership of `fd` (closed in the destructor).
  HttpConnection(int fd, const HttpLimits& limits);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Waits (idle timeout) for the next request and parses its head.
  ReadStatus ReadHead(HttpRequest* req);
  // Reads the whole body of `req` (body timeout, max_body_bytes).
  ReadStatus ReadBody(std::string* out);
  // Streaming: appends whatever body bytes come next (no deadline while
  // `wait_forever`, else the body timeout); kEnd once the body is complete.
  ReadStatus ReadBodySome(std::string* out, bool wait_forever);
  bool BodyDone() const { return body_done_; }
  // The last kBadRequest from ReadHead was in the request line itself.
  bool bad_request_line() const { return bad_request_line_; }

  // Writes a complete response. `extra_headers` are "Name: value\r\n" lines.
  bool WriteResponse(int status, absl::string_view content_type, absl::string_view body,
                     bool keep_alive, absl::string_view extra_headers = "");
  bool BeginChunked(int status, absl::string_view content_type, absl::string_view extra_headers);
  bool WriteChunk(absl::string_view data);
  bool EndChunked(absl::string_view trailers = "");

  // True once the peer has closed (or reset) its side. Non-blocking.
  bool PeerGone();
  // Wakes any blocked read or write and fails later ones. Any thread.
  void Abort();
  bool aborted() const { return aborted_; }
  // Makes blocked and later body reads fail (within 200 ms) without
  // touching the socket, so a response can still be written. Any thread.
  void CancelReads() { reads_cancelled_ = true; }
  // Undoes CancelReads, for a connection that goes on to its next request.
  void ResumeReads() { reads_cancelled_ = false; }
  // Writes raw bytes (for Go-style bare error responses). Bounded.
  bool WriteRaw(absl::string_view data) { return WriteAll(data); }

 private:
  ReadStatus Fill(absl::Time deadline);  // reads more bytes into buf_
  ReadStatus ReadLine(std::string* line, absl::Time deadline, size_t max);
  bool WriteAll(absl::string_view data);
  std::string CommonHeaders() const;

  int fd_;
  HttpLimits limits_;
  std::string buf_;  // unread input
  // Body state of the current request.
  bool chunked_ = false;
  int64_t remaining_ = 0;  // bytes left in the body (or current chunk)
  bool body_done_ = true;
  bool bad_request_line_ = false;
  // "Expect: 100-continue" seen: "100 Continue" goes out before the first
  // body read (as Go's net/http does; curl waits 1 s for it otherwise).
  bool send_continue_ = false;
  std::atomic<bool> aborted_{false};
  std::atomic<bool> reads_cancelled_{false};
};

// Go's http.StatusText for the codes etcd uses.
const char* StatusText(int status);

}  // namespace etcdpp::server::http
