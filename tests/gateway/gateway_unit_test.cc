// Unit tests of the client port's HTTP pieces: JSON decoding with Go's error
// texts, gRPC code -> HTTP status, Go string quoting, the Prometheus
// histogram, and HttpServer / ClientListener on real loopback sockets.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "rpc.pb.h"
#include "server/config.h"
#include "server/http/gateway.h"
#include "server/http/http_server.h"
#include "server/http/listener.h"
#include "server/http/metrics.h"

namespace etcdpp::server::http {
namespace {

std::string Decode(const std::string& body, etcdserverpb::RangeRequest* r = nullptr) {
  etcdserverpb::RangeRequest local;
  std::string error;
  if (!DecodeJsonRequest(body, r ? r : &local, &error)) return error;
  return "ok";
}

TEST(DecodeJsonRequest, AcceptsWhatJsonpbAccepts) {
  etcdserverpb::RangeRequest r;
  EXPECT_EQ(Decode(R"({"key":"Zm9v","limit":"2","revision":3,"sort_order":"DESCEND"})", &r), "ok");
  EXPECT_EQ(r.key(), "foo");
  EXPECT_EQ(r.limit(), 2);
  EXPECT_EQ(r.revision(), 3);
  EXPECT_EQ(r.sort_order(), etcdserverpb::RangeRequest::DESCEND);
  EXPECT_EQ(Decode(""), "ok");                            // empty body: empty request
  EXPECT_EQ(Decode(" \n"), "ok");
  EXPECT_EQ(Decode(R"({"kez":"Zm9v"})"), "ok");           // unknown fields ignored
  EXPECT_EQ(Decode(R"({"key":"Zm9v"} trailing)"), "ok");  // only the first value
  EXPECT_EQ(Decode(R"({"key":null})"), "ok");
}

// Texts recorded from etcd 3.4.23's gateway (see tests/gateway/golden).
TEST(DecodeJsonRequest, GoErrorTexts) {
  EXPECT_EQ(Decode(R"({"key":"Zm9v)"), "unexpected EOF");
  EXPECT_EQ(Decode("xyz"), "invalid character 'x' looking for beginning of value");
  EXPECT_EQ(Decode("[1]"),
            "json: cannot unmarshal array into Go value of type map[string]json.RawMessage");
  EXPECT_EQ(Decode(R"({"key":5})"), "json: cannot unmarshal number into Go value of type []uint8");
  EXPECT_EQ(Decode(R"({"key":true})"), "json: cannot unmarshal bool into Go value of type []uint8");
  EXPECT_EQ(Decode(R"({"limit":true})"), "json: cannot unmarshal bool into Go value of type int64");
  EXPECT_EQ(Decode(R"({"serializable":"x"})"),
            "json: cannot unmarshal string into Go value of type bool");
  EXPECT_EQ(Decode(R"({"limit":1.5})"),
            "json: cannot unmarshal number 1.5 into Go value of type int64");
  EXPECT_EQ(Decode(R"({"limit":"18446744073709551616"})"),
            "json: cannot unmarshal number 18446744073709551616 into Go value of type int64");
  EXPECT_EQ(Decode(R"({"limit":"abc"})"), "invalid character 'a' looking for beginning of value");
  EXPECT_EQ(Decode(R"({"sort_order":"FOO"})"),
            "unknown value \"FOO\" for enum etcdserverpb.RangeRequest_SortOrder");
  EXPECT_EQ(Decode(R"({"key":"!!"})"), "illegal base64 data at input byte 0");
  EXPECT_EQ(Decode(R"({"key":"Zm9v",})"),
            "invalid character '}' looking for beginning of object key string");
  EXPECT_EQ(Decode(R"({"key" "Zm9v"})"), "invalid character '\"' after object key");
  EXPECT_EQ(Decode(R"({"key":"Zm9v" "a":1})"),
            "invalid character '\"' after object key:value pair");
}

TEST(Gateway, HttpStatusFromGrpcCode) {
  EXPECT_EQ(HttpStatusFromGrpcCode(0), 200);
  EXPECT_EQ(HttpStatusFromGrpcCode(3), 400);
  EXPECT_EQ(HttpStatusFromGrpcCode(5), 404);
  EXPECT_EQ(HttpStatusFromGrpcCode(8), 429);
  EXPECT_EQ(HttpStatusFromGrpcCode(9), 400);
  EXPECT_EQ(HttpStatusFromGrpcCode(11), 400);
  EXPECT_EQ(HttpStatusFromGrpcCode(12), 501);
  EXPECT_EQ(HttpStatusFromGrpcCode(14), 503);
  EXPECT_EQ(HttpStatusFromGrpcCode(16), 401);
}

TEST(Gateway, GoJsonQuote) {
  EXPECT_EQ(GoJsonQuote("a\"b\\c\n<&>"), R"("a\"b\\c\n\u003c\u0026\u003e")");
  EXPECT_EQ(GoJsonQuote(std::string("\x01", 1)), R"("\u0001")");
}

TEST(Gateway, ScanJsonValue) {
  size_t b = 0, e = 0;
  EXPECT_EQ(ScanJsonValue("  ", &b, &e), JsonScan::kEmpty);
  EXPECT_EQ(ScanJsonValue(R"( {"a":"}"} {"b":1})", &b, &e), JsonScan::kComplete);
  EXPECT_EQ(b, 1u);
  EXPECT_EQ(e, 10u);
  EXPECT_EQ(ScanJsonValue(R"({"a":{"b":[1,2)", &b, &e), JsonScan::kIncomplete);
  EXPECT_EQ(ScanJsonValue(R"({"a":"\"}"})", &b, &e), JsonScan::kComplete);
}

TEST(Metrics, HistogramRendersCumulativeBuckets) {
  Histogram h({0.001, 0.01});
  h.Observe(0.0005);
  h.Observe(0.005);
  h.Observe(1);
  EXPECT_EQ(h.Render("x_seconds", "help"),
            "# HELP x_seconds help\n# TYPE x_seconds histogram\n"
            "x_seconds_bucket{le=\"0.001\"} 1\nx_seconds_bucket{le=\"0.01\"} 2\n"
            "x_seconds_bucket{le=\"+Inf\"} 3\nx_seconds_sum 1.0055\nx_seconds_count 3\n");
}

// --- HttpServer / ClientListener on loopback --------------------------------

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

// Reads until `want` bytes were seen after the blank line, or EOF/timeout.
std::string ReadSome(int fd, const std::string& until) {
  std::string out;
  char buf[4096];
  for (;;) {
    if (!until.empty() && out.find(until) != std::string::npos) return out;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return out;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

class HttpFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpLimits limits;
    limits.max_body_bytes = 1000;
    limits.header_timeout = absl::Seconds(2);
    server_ = std::make_unique<HttpServer>(limits, 4);
    server_->Route("/echo", [](const HttpRequest& req, HttpConnection& conn) {
      std::string body;
      ReadStatus st = conn.ReadBody(&body);
      if (st == ReadStatus::kTooLarge) {
        WriteGoError(conn, 413, "Request Entity Too Large", false);
        return false;
      }
      return conn.WriteResponse(200, "text/plain", "echo:" + body, req.keep_alive) &&
             req.keep_alive;
    });
    Url url;
    url.scheme = "http";
    url.host = "127.0.0.1";
    url.port = 0;
    auto l = ClientListener::Listen({url});
    ASSERT_TRUE(l.ok()) << l.status();
    listener_ = std::move(*l);
    listener_->Start(nullptr, server_.get());
    port_ = listener_->port(0);
  }
  void TearDown() override {
    listener_->Stop();
    server_->Stop();
  }
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<ClientListener> listener_;
  int port_ = 0;
};

TEST_F(HttpFixture, KeepAliveAndChunkedBody) {
  int fd = Connect(port_);
  std::string req1 = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
  std::string req2 =
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\nde\r\n1;ext=1\r\nf\r\n0\r\n\r\n";
  ASSERT_EQ(send(fd, req1.data(), req1.size(), 0), static_cast<ssize_t>(req1.size()));
  std::string r1 = ReadSome(fd, "echo:abc");
  EXPECT_EQ(r1.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r1;
  ASSERT_EQ(send(fd, req2.data(), req2.size(), 0), static_cast<ssize_t>(req2.size()));
  EXPECT_NE(ReadSome(fd, "echo:def").find("echo:def"), std::string::npos);
  close(fd);
}

TEST_F(HttpFixture, NotFoundBadLineAndTooLarge) {
  int fd = Connect(port_);
  std::string req = "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
  send(fd, req.data(), req.size(), 0);
  EXPECT_NE(ReadSome(fd, "404 page not found\n").find("HTTP/1.1 404 Not Found"),
            std::string::npos);
  close(fd);

  fd = Connect(port_);  // not HTTP/1 at all: closed without a reply (cmux)
  send(fd, "HELLO\r\n\r\n", 9, 0);
  EXPECT_EQ(ReadSome(fd, ""), "");
  close(fd);

  fd = Connect(port_);
  req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x');
  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  EXPECT_EQ(ReadSome(fd, "\r\n").rfind("HTTP/1.1 413", 0), 0u);
  close(fd);
}

TEST_F(HttpFixture, SlowClientsDoNotBlockOthers) {
  // A silent connection, a half HTTP/2 preface and a half request head.
  int silent = Connect(port_);
  int half_preface = Connect(port_);
  send(half_preface, "PRI * HT", 8, 0);
  int half_head = Connect(port_);
  send(half_head, "POST /echo HTTP/1.1\r\nHo", 23, 0);
  int fd = Connect(port_);
  std::string req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok";
  send(fd, req.data(), req.size(), 0);
  EXPECT_NE(ReadSome(fd, "echo:ok").find("echo:ok"), std::string::npos);
  close(fd);
  // The half head times out (header_timeout = 2 s) and is closed.
  EXPECT_EQ(ReadSome(half_head, ""), "");
  close(silent);
  close(half_preface);
  close(half_head);
}

}  // namespace
}  // namespace etcdpp::server::http
