// Gateway: etcd's JSON gateway (grpc-gateway v1 with OrigName, as etcd 3.4
// mounts it) on the client port: POST /v3/<service>/<method> (and the
// /v3beta/ alias) carries a JSON request, answered by the gRPC service
// itself, called through an in-process channel exactly as etcd's gateway
// dials its own endpoint, so no request logic is duplicated here.
//
// JSON mapping (protobuf's JSON utilities, not hand-written): bytes as
// base64, 64-bit integers as strings (accepted as strings or numbers),
// zero values omitted, proto field names. Errors as grpc-gateway prints
// them: {"error":msg,"message":msg,"code":grpc_code} with the HTTP status of
// the gRPC code. Streams (/v3/watch, /v3/lease/keepalive,
// /v3/maintenance/snapshot): the request body is a stream of JSON objects,
// the response a chunked stream of {"result":{...}} lines.
//
// A method whose service is not registered answers what gRPC answers
// (Unimplemented), so a route starts working as soon as its service lands.
// Handlers run on the HTTP connection's thread (see HttpServer).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>

#include "absl/strings/string_view.h"
#include "server/http/http_server.h"

namespace google::protobuf {
class Descriptor;
class Message;
}  // namespace google::protobuf

namespace etcdpp::server::http {

// grpc-gateway's runtime.HTTPStatusFromCode.
int HttpStatusFromGrpcCode(int code);

// Go's encoding/json string quoting (escapes <, >, & and U+2028/9 too).
std::string GoJsonQuote(absl::string_view s);

// The end of the first JSON value in `in` (after leading white space):
// kComplete sets *end one past it; kIncomplete means more bytes are needed;
// kEmpty means only white space.
enum class JsonScan { kComplete, kIncomplete, kEmpty };
JsonScan ScanJsonValue(absl::string_view in, size_t* begin, size_t* end);

// Decodes a request body as grpc-gateway's JSONPb decoder does (first JSON
// value; empty body = empty request; unknown fields ignored; unknown enum
// names rejected) with Go's error texts for the common mistakes.
bool DecodeJsonRequest(absl::string_view body, google::protobuf::Message* m, std::string* error);

class Gateway {
 public:
  struct Method {
    std::string path;         // "/v3/kv/range"
    std::string grpc_method;  // "/etcdserverpb.KV/Range"
    const google::protobuf::Descriptor* input = nullptr;
    const google::protobuf::Descriptor* output = nullptr;
    bool streaming = false;   // client or server streaming
  };

  explicit Gateway(std::shared_ptr<grpc::Channel> channel);

  // Registers every route under /v3/ and /v3beta/ (unknown paths there get
  // grpc-gateway's "Not Found").
  void Install(HttpServer* http);

  const std::vector<Method>& methods() const { return methods_; }

 private:
  bool ServeUnary(const Method& m, const HttpRequest& req, HttpConnection& conn);
  bool ServeStream(const Method& m, const HttpRequest& req, HttpConnection& conn);

  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  std::vector<Method> methods_;
};

}  // namespace etcdpp::server::http
