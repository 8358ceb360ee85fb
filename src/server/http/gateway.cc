#include "server/http/gateway.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/client_callback.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "rpc.pb.h"

namespace etcdpp::server::http {
namespace {

namespace pb = google::protobuf;

// etcd 3.4's google.api.http annotations (etcdserver/etcdserverpb/rpc.proto):
// path under /v3, service, method. Where two methods share a path
// (Hash and HashKV both say /maintenance/hash) the first wins, as in
// grpc-gateway's mux.
struct RouteSpec {
  const char* path;
  const char* service;
  const char* method;
};
constexpr RouteSpec kRoutes[] = {
    {"/kv/range", "KV", "Range"},
    {"/kv/put", "KV", "Put"},
    {"/kv/deleterange", "KV", "DeleteRange"},
    {"/kv/txn", "KV", "Txn"},
    {"/kv/compaction", "KV", "Compact"},
    {"/watch", "Watch", "Watch"},
    {"/lease/grant", "Lease", "LeaseGrant"},
    {"/lease/revoke", "Lease", "LeaseRevoke"},
    {"/kv/lease/revoke", "Lease", "LeaseRevoke"},
    {"/lease/keepalive", "Lease", "LeaseKeepAlive"},
    {"/lease/timetolive", "Lease", "LeaseTimeToLive"},
    {"/kv/lease/timetolive", "Lease", "LeaseTimeToLive"},
    {"/lease/leases", "Lease", "LeaseLeases"},
    {"/kv/lease/leases", "Lease", "LeaseLeases"},
    {"/cluster/member/add", "Cluster", "MemberAdd"},
    {"/cluster/member/remove", "Cluster", "MemberRemove"},
    {"/cluster/member/update", "Cluster", "MemberUpdate"},
    {"/cluster/member/list", "Cluster", "MemberList"},
    {"/cluster/member/promote", "Cluster", "MemberPromote"},
    {"/maintenance/alarm", "Maintenance", "Alarm"},
    {"/maintenance/status", "Maintenance", "Status"},
    {"/maintenance/defragment", "Maintenance", "Defragment"},
    {"/maintenance/hash", "Maintenance", "Hash"},
    {"/maintenance/snapshot", "Maintenance", "Snapshot"},
    {"/maintenance/transfer-leadership", "Maintenance", "MoveLeader"},
    {"/auth/enable", "Auth", "AuthEnable"},
    {"/auth/disable", "Auth", "AuthDisable"},
    {"/auth/authenticate", "Auth", "Authenticate"},
    {"/auth/user/add", "Auth", "UserAdd"},
    {"/auth/user/get", "Auth", "UserGet"},
    {"/auth/user/list", "Auth", "UserList"},
    {"/auth/user/delete", "Auth", "UserDelete"},
    {"/auth/user/changepw", "Auth", "UserChangePassword"},
    {"/auth/user/grant", "Auth", "UserGrantRole"},
    {"/auth/user/revoke", "Auth", "UserRevokeRole"},
    {"/auth/role/add", "Auth", "RoleAdd"},
    {"/auth/role/get", "Auth", "RoleGet"},
    {"/auth/role/list", "Auth", "RoleList"},
    {"/auth/role/delete", "Auth", "RoleDelete"},
    {"/auth/role/grant", "Auth", "RoleGrantPermission"},
    {"/auth/role/revoke", "Auth", "RoleRevokePermission"},
};

constexpr char kJson[] = "application/json";
// grpc-gateway forwards the gRPC response headers as Grpc-Metadata-*.
constexpr char kGrpcMetadata[] = "Grpc-Metadata-Content-Type: application/grpc\r\n";

grpc::ByteBuffer ToByteBuffer(const pb::Message& m) {
  grpc::Slice slice(m.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

bool FromByteBuffer(const grpc::ByteBuffer& bb, pb::Message* m) {
  std::vector<grpc::Slice> slices;
  if (!bb.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return m->ParseFromString(bytes);
}

// grpc-gateway's JSONPb{OrigName: true}: proto names, zero values omitted.
std::string ToJson(const pb::Message& m) {
  pb::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  std::string out;
  if (!pb::util::MessageToJsonString(m, &out, opts).ok()) return "{}";
  return out;
}

// runtime.HTTPError's body: {"error":msg,"message":msg,"code":N}.
std::string ErrorJson(int code, absl::string_view msg) {
  std::string q = GoJsonQuote(msg);
  return absl::StrCat("{\"error\":", q, ",\"message\":", q, ",\"code\":", code, "}");
}

bool WriteGrpcError(HttpConnection& conn, int code, absl::string_view msg, bool keep_alive) {
  return conn.WriteResponse(HttpStatusFromGrpcCode(code), kJson, ErrorJson(code, msg), keep_alive);
}

// Go's encoding/json syntax errors for the common cases (protobuf's parser
// is laxer: it takes a trailing comma). Returns "" when `v` is valid JSON.
std::string CheckJsonSyntax(absl::string_view v) {
  size_t i = 0;
  auto ws = [&] {
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r')) ++i;
  };
  auto bad = [&](const char* context) {
    if (i >= v.size()) return std::string("unexpected EOF");
    return absl::StrCat("invalid character '", std::string(1, v[i]), "' ", context);
  };
  // An object key and its colon, at i; "" when well-formed, else Go's error.
  auto object_key = [&]() -> std::string {
    if (i >= v.size() || v[i] != '"') return bad("looking for beginning of object key string");
    size_t close = i + 1;
    while (close < v.size() && v[close] != '"') close += v[close] == '\\' ? 2 : 1;
    if (close >= v.size()) return "unexpected EOF";
    i = close + 1;
    ws();
    if (i >= v.size() || v[i] != ':') return bad("after object key");
    ++i;
    return "";
  };
  // Iterative parse with an explicit stack of containers.
  std::string stack;
  enum { kValue, kAfterValue } state = kValue;
  for (;;) {
    ws();
    if (state == kValue) {
      if (i >= v.size()) return "unexpected EOF";
      char c = v[i];
      if (c == '{' || c == '[') {
        stack.push_back(c);
        ++i;
        ws();
        if (i < v.size() && v[i] == (c == '{' ? '}' : ']')) {
          ++i;
          stack.pop_back();
          state = kAfterValue;
          continue;
        }
        if (c == '{') {
          if (std::string err = object_key(); !err.empty()) return err;
        }
        continue;  // a value follows
      }
      if (c == '"') {
        size_t close = i + 1;
        while (close < v.size() && v[close] != '"') {
          if (static_cast<unsigned char>(v[close]) < 0x20) {
            i = close;
            return bad("in string literal");
          }
          close += v[close] == '\\' ? 2 : 1;
        }
        if (close >= v.size()) return "unexpected EOF";
        i = close + 1;
      } else if (c == '-' || absl::ascii_isdigit(c)) {
        ++i;
        while (i < v.size() && (absl::ascii_isdigit(v[i]) || v[i] == '.' || v[i] == 'e' ||
                                v[i] == 'E' || v[i] == '+' || v[i] == '-')) {
          ++i;
        }
      } else if (v.substr(i, 4) == "true" || v.substr(i, 4) == "null") {
        i += 4;
      } else if (v.substr(i, 5) == "false") {
        i += 5;
      } else {
        return bad("looking for beginning of value");
      }
      state = kAfterValue;
      continue;
    }
    // After a value: close containers or go on with the next element.
    if (stack.empty()) return "";
    if (i >= v.size()) return "unexpected EOF";
    char top = stack.back();
    if (v[i] == (top == '{' ? '}' : ']')) {
      ++i;
      stack.pop_back();
      continue;
    }
    if (v[i] != ',') {
      return bad(top == '{' ? "after object key:value pair" : "after array element");
    }
    ++i;
    if (top == '{') {
      ws();
      if (std::string err = object_key(); !err.empty()) return err;
    }
    state = kValue;
  }
}

// The Go type jsonpb decodes a field into, as encoding/json names it.
std::string GoTypeName(const pb::FieldDescriptor& f) {
  switch (f.type()) {
    case pb::FieldDescriptor::TYPE_BYTES: return "[]uint8";
    case pb::FieldDescriptor::TYPE_STRING: return "string";
    case pb::FieldDescriptor::TYPE_BOOL: return "bool";
    case pb::FieldDescriptor::TYPE_INT64:
    case pb::FieldDescriptor::TYPE_SINT64:
    case pb::FieldDescriptor::TYPE_SFIXED64: return "int64";
    case pb::FieldDescriptor::TYPE_UINT64:
    case pb::FieldDescriptor::TYPE_FIXED64: return "uint64";
    case pb::FieldDescriptor::TYPE_INT32:
    case pb::FieldDescriptor::TYPE_SINT32:
    case pb::FieldDescriptor::TYPE_SFIXED32: return "int32";
    case pb::FieldDescriptor::TYPE_UINT32:
    case pb::FieldDescriptor::TYPE_FIXED32: return "uint32";
    case pb::FieldDescriptor::TYPE_DOUBLE: return "float64";
    case pb::FieldDescriptor::TYPE_FLOAT: return "float32";
    case pb::FieldDescriptor::TYPE_ENUM: {
      // etcdserverpb.RangeRequest.SortOrder -> etcdserverpb.RangeRequest_SortOrder
      const pb::EnumDescriptor* e = f.enum_type();
      std::string name = e->full_name().substr(e->file()->package().size() + 1);
      std::replace(name.begin(), name.end(), '.', '_');
      return absl::StrCat(e->file()->package(), ".", name);
    }
    default: return "";
  }
}

bool IsGoNumber(absl::string_view s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  if (i >= s.size() || !absl::ascii_isdigit(s[i])) return false;
  for (; i < s.size(); ++i) {
    if (!absl::ascii_isdigit(s[i]) && s[i] != '.' && s[i] != 'e' && s[i] != 'E' && s[i] != '+' &&
        s[i] != '-') {
      return false;
    }
  }
  return true;
}

// protobuf's "(a.b): invalid value V for type TYPE_X" in Go jsonpb's words
// ("json: cannot unmarshal bool into Go value of type int64", ...). Other
// messages are passed through.
std::string GoJsonError(const pb::Descriptor& root, const std::string& pb_error) {
  static const std::string kMid = "): invalid value ";
  size_t mid = pb_error.find(kMid);
  size_t for_type = pb_error.rfind(" for type ");
  if (pb_error.empty() || pb_error[0] != '(' || mid == std::string::npos ||
      for_type == std::string::npos || for_type < mid) {
    return pb_error;
  }
  std::string path = pb_error.substr(1, mid - 1);
  std::string value = pb_error.substr(mid + kMid.size(), for_type - mid - kMid.size());
  // Resolve the field from its path of proto names.
  const pb::Descriptor* d = &root;
  const pb::FieldDescriptor* f = nullptr;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    if (d == nullptr) return pb_error;
    // Repeated elements appear as name[i].
    part = part.substr(0, part.find('['));
    f = d->FindFieldByName(std::string(part));
    if (f == nullptr) f = d->FindFieldByLowercaseName(std::string(part));
    if (f == nullptr) return pb_error;
    d = f->message_type();
  }
  if (f == nullptr) return pb_error;
  std::string go_type = GoTypeName(*f);
  if (go_type.empty()) return pb_error;
  bool is_string = !value.empty() && value[0] == '"';
  std::string inner = is_string && value.size() >= 2 ? value.substr(1, value.size() - 2) : value;
  const char* kind = (value == "true" || value == "false") ? "bool" : is_string ? "string"
                                                                                 : "number";
  bool numeric = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64 ||
                 f->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT64 ||
                 f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32 ||
                 f->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT32 ||
                 f->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE ||
                 f->cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT;
  if (f->type() == pb::FieldDescriptor::TYPE_ENUM && is_string) {
    return absl::StrCat("unknown value \"", inner, "\" for enum ", go_type);
  }
  if (numeric) {
    // jsonpb unquotes a string and decodes what is inside as a number.
    absl::string_view num = is_string ? absl::string_view(inner) : absl::string_view(value);
    if (is_string && !IsGoNumber(num)) {
      if (num.empty()) return "unexpected end of JSON input";
      return absl::StrCat("invalid character '", std::string(1, num[0]),
                          "' looking for beginning of value");
    }
    if (is_string || std::string(kind) == "number") {
      return absl::StrCat("json: cannot unmarshal number ", num, " into Go value of type ",
                          go_type);
    }
  }
  if (f->type() == pb::FieldDescriptor::TYPE_BYTES && is_string) {
    size_t bad = 0;
    while (bad < inner.size() && (absl::ascii_isalnum(inner[bad]) || inner[bad] == '+' ||
                                  inner[bad] == '/')) {
      ++bad;
    }
    if (bad < inner.size() && inner[bad] == '=') bad = inner.size() - inner.size() % 4;
    return absl::StrCat("illegal base64 data at input byte ", bad);
  }
  return absl::StrCat("json: cannot unmarshal ", kind, " into Go value of type ", go_type);
}

// Decodes one request as grpc-gateway's JSONPb decoder does: the first JSON
// value of the body; an empty body is the empty request (io.EOF is ignored).
// Unknown fields are ignored. On failure returns false and sets `error`
// (Go's wording where we know it).
bool DecodeRequest(absl::string_view body, pb::Message* m, std::string* error) {
  size_t begin = 0, end = 0;
  switch (ScanJsonValue(body, &begin, &end)) {
    case JsonScan::kEmpty:
      return true;
    case JsonScan::kIncomplete:
      *error = "unexpected EOF";
      return false;
    case JsonScan::kComplete:
      break;
  }
  absl::string_view value = body.substr(begin, end - begin);
  char c = value[0];
  if (!(c == '{' || c == '[' || c == '"' || c == '-' || absl::ascii_isdigit(c) || c == 't' ||
        c == 'f' || c == 'n')) {
    *error = absl::StrCat("invalid character '", std::string(1, c),
                          "' looking for beginning of value");
    return false;
  }
  if (c != '{' && value != "null") {
    // encoding/json's wording for a non-object where a message is expected.
    const char* kind = c == '[' ? "array" : c == '"' ? "string" : (c == 't' || c == 'f') ? "bool"
                                                                                           : "number";
    *error = absl::StrCat("json: cannot unmarshal ", kind,
                          " into Go value of type map[string]json.RawMessage");
    return false;
  }
  if (value == "null") return true;
  if (std::string syntax = CheckJsonSyntax(value); !syntax.empty()) {
    *error = std::string(syntax);
    return false;
  }
  // Strict first, so an unknown enum name is an error as in Go's jsonpb;
  // unknown fields, which jsonpb ignores, make us parse again leniently.
  pb::util::JsonParseOptions opts;
  pb::StringPiece piece(value.data(), value.size());
  auto st = pb::util::JsonStringToMessage(piece, m, opts);
  if (!st.ok() && absl::StrContains(std::string(st.message()), "Cannot find field")) {
    m->Clear();
    opts.ignore_unknown_fields = true;
    st = pb::util::JsonStringToMessage(piece, m, opts);
  }
  if (!st.ok()) {
    *error = GoJsonError(*m->GetDescriptor(), std::string(st.message()));
    return false;
  }
  return true;
}

// One bidi call over the in-process channel (also used for Snapshot's
// server stream: one request, then half-close). Reads are pulled one at a
// time by the HTTP thread (gRPC flow control does the rest); writes come
// from the body-reader thread, one in flight.
class StreamCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // Blocks until the write completed; false once the call can take no more.
  bool Write(const pb::Message& m) {
    std::unique_lock<std::mutex> l(mu_);
    if (write_failed_) return false;
    out_ = ToByteBuffer(m);
    write_done_ = false;
    l.unlock();
    StartWrite(&out_);
    l.lock();
    cv_.wait(l, [this] { return write_done_; });
    return !write_failed_;
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    write_done_ = true;
    if (!ok) write_failed_ = true;
    cv_.notify_all();
  }
  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    if (ok) {
      has_msg_ = true;
    } else {
      read_closed_ = true;
    }
    cv_.notify_all();
  }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard<std::mutex> l(mu_);
    status_ = s;
    done_ = true;
    read_closed_ = true;
    write_failed_ = true;
    write_done_ = true;
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  grpc::ByteBuffer in_;
  grpc::ByteBuffer out_;
  bool has_msg_ = false;
  bool read_closed_ = false;
  bool write_done_ = true;
  bool write_failed_ = false;
  bool done_ = false;
  grpc::Status status_;
};

}  // namespace

bool DecodeJsonRequest(absl::string_view body, pb::Message* m, std::string* error) {
  return DecodeRequest(body, m, error);
}

int HttpStatusFromGrpcCode(int code) {
  switch (code) {
    case 0: return 200;    // OK
    case 1: return 408;    // Canceled
    case 2: return 500;    // Unknown
    case 3: return 400;    // InvalidArgument
    case 4: return 504;    // DeadlineExceeded
    case 5: return 404;    // NotFound
    case 6: return 409;    // AlreadyExists
    case 7: return 403;    // PermissionDenied
    case 8: return 429;    // ResourceExhausted
    case 9: return 400;    // FailedPrecondition (deliberately not 412)
    case 10: return 409;   // Aborted
    case 11: return 400;   // OutOfRange
    case 12: return 501;   // Unimplemented
    case 13: return 500;   // Internal
    case 14: return 503;   // Unavailable
    case 15: return 500;   // DataLoss
    case 16: return 401;   // Unauthenticated
    default: return 500;
  }
}

std::string GoJsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '<': out += "\\u003c"; continue;
      case '>': out += "\\u003e"; continue;
      case '&': out += "\\u0026"; continue;
      default: break;
    }
    if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else if (c == 0xe2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(s[i + 2]) == 0xa8 ||
                static_cast<unsigned char>(s[i + 2]) == 0xa9)) {
      out += static_cast<unsigned char>(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += "\"";
  return out;
}

JsonScan ScanJsonValue(absl::string_view in, size_t* begin, size_t* end) {
  size_t i = 0;
  while (i < in.size() && absl::ascii_isspace(static_cast<unsigned char>(in[i]))) ++i;
  if (i == in.size()) return JsonScan::kEmpty;
  *begin = i;
  char c = in[i];
  if (c != '{' && c != '[' && c != '"') {
    // A scalar (or garbage): up to the next delimiter. It is complete only
    // if something follows it, as a streaming decoder would see it.
    size_t j = i;
    while (j < in.size() && !absl::ascii_isspace(static_cast<unsigned char>(in[j])) &&
           in[j] != '{' && in[j] != '[' && in[j] != ',' && in[j] != '}' && in[j] != ']') {
      ++j;
    }
    *end = std::max(j, i + 1);
    return JsonScan::kComplete;
  }
  int depth = 0;
  bool in_string = false;
  for (size_t j = i; j < in.size(); ++j) {
    char d = in[j];
    if (in_string) {
      if (d == '\\') {
        ++j;
      } else if (d == '"') {
        in_string = false;
        if (depth == 0) {
          *end = j + 1;
          return JsonScan::kComplete;
        }
      }
      continue;
    }
    if (d == '"') {
      in_string = true;
    } else if (d == '{' || d == '[') {
      ++depth;
    } else if (d == '}' || d == ']') {
      if (--depth == 0) {
        *end = j + 1;
        return JsonScan::kComplete;
      }
    }
  }
  return JsonScan::kIncomplete;
}

Gateway::Gateway(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(channel_) {
  const pb::FileDescriptor* file = etcdserverpb::RangeRequest::descriptor()->file();
  for (const RouteSpec& r : kRoutes) {
    const pb::ServiceDescriptor* svc = file->FindServiceByName(r.service);
    const pb::MethodDescriptor* md = svc ? svc->FindMethodByName(r.method) : nullptr;
    if (md == nullptr) continue;
    Method m;
    m.path = absl::StrCat("/v3", r.path);
    m.grpc_method = absl::StrCat("/", svc->full_name(), "/", md->name());
    m.input = md->input_type();
    m.output = md->output_type();
    m.streaming = md->client_streaming() || md->server_streaming();
    methods_.push_back(std::move(m));
  }
}

void Gateway::Install(HttpServer* http) {
  for (const char* prefix : {"/v3", "/v3beta"}) {
    for (const Method& m : methods_) {
      std::string path = absl::StrCat(prefix, m.path.substr(3));
      const Method* mp = &m;
      http->Route(path, [this, mp](const HttpRequest& req, HttpConnection& conn) {
        if (req.method != "POST") {
          std::string body;
          bool keep = conn.ReadBody(&body) == ReadStatus::kOk && req.keep_alive;
          return WriteGoError(conn, 405, "Method Not Allowed", keep) && keep;
        }
        return mp->streaming ? ServeStream(*mp, req, conn) : ServeUnary(*mp, req, conn);
      });
    }
    // grpc-gateway's mux: anything else under its prefix.
    http->RoutePrefix(absl::StrCat(prefix, "/"), [](const HttpRequest& req, HttpConnection& conn) {
      std::string body;
      bool keep = conn.ReadBody(&body) == ReadStatus::kOk && req.keep_alive;
      return WriteGoError(conn, 404, "Not Found", keep) && keep;
    });
  }
}

namespace {

// A body that cannot be read: the answer, and whether to keep the connection.
bool AnswerBodyError(ReadStatus st, HttpConnection& conn) {
  if (st == ReadStatus::kTooLarge) {
    WriteGoError(conn, 413, "Request Entity Too Large", false);
  } else if (st == ReadStatus::kBadRequest) {
    conn.WriteRaw(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Connection: close\r\n\r\n400 Bad Request");
  }
  return false;  // timeouts and resets just close
}

}  // namespace

bool Gateway::ServeUnary(const Method& m, const HttpRequest& req, HttpConnection& conn) {
  std::string body;
  if (ReadStatus st = conn.ReadBody(&body); st != ReadStatus::kOk) {
    return AnswerBodyError(st, conn);
  }
  const pb::Message* proto = pb::MessageFactory::generated_factory()->GetPrototype(m.input);
  std::unique_ptr<pb::Message> request(proto->New());
  std::string error;
  if (!DecodeRequest(body, request.get(), &error)) {
    return WriteGrpcError(conn, 3, error, req.keep_alive) && req.keep_alive;
  }
  grpc::ByteBuffer request_bytes = ToByteBuffer(*request);
  grpc::ByteBuffer response_bytes;
  grpc::ClientContext ctx;
  grpc::Status status;
  absl::Notification done;
  stub_.UnaryCall(&ctx, m.grpc_method, grpc::StubOptions(), &request_bytes, &response_bytes,
                  [&](grpc::Status s) {
                    status = std::move(s);
                    done.Notify();
                  });
  bool cancelled = false;
  while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(200))) {
    if (!cancelled && conn.PeerGone()) {
      ctx.TryCancel();  // as the gateway's CloseNotify cancels the context
      cancelled = true;
    }
  }
  if (!status.ok()) {
    return WriteGrpcError(conn, status.error_code(), status.error_message(), req.keep_alive) &&
           req.keep_alive;
  }
  std::unique_ptr<pb::Message> response(
      pb::MessageFactory::generated_factory()->GetPrototype(m.output)->New());
  if (!FromByteBuffer(response_bytes, response.get())) {
    return WriteGrpcError(conn, 13, "failed to parse the gRPC response", req.keep_alive) &&
           req.keep_alive;
  }
  return conn.WriteResponse(200, kJson, ToJson(*response), req.keep_alive, kGrpcMetadata) &&
         req.keep_alive;
}

bool Gateway::ServeStream(const Method& m, const HttpRequest& req, HttpConnection& conn) {
  pb::MessageFactory* factory = pb::MessageFactory::generated_factory();
  const pb::Message* in_proto = factory->GetPrototype(m.input);
  // The first request is decoded before the call starts: a bad one is an
  // HTTPError with an unknown (non-gRPC) error, i.e. code 2, status 500.
  std::string pending;
  std::unique_ptr<pb::Message> first;
  for (;;) {
    size_t b = 0, e = 0;
    JsonScan scan = ScanJsonValue(pending, &b, &e);
    if (scan == JsonScan::kComplete) {
      first.reset(in_proto->New());
      std::string error;
      if (!DecodeRequest(absl::string_view(pending).substr(0, e), first.get(), &error)) {
        conn.CancelReads();
        return WriteGrpcError(conn, 2, error, false) && false;
      }
      pending.erase(0, e);
      break;
    }
    ReadStatus st = conn.ReadBodySome(&pending, /*wait_forever=*/false);
    if (st == ReadStatus::kEnd) {
      if (scan == JsonScan::kIncomplete) {
        return WriteGrpcError(conn, 2, "unexpected EOF", req.keep_alive) && req.keep_alive;
      }
      break;  // empty body: the stream starts with nothing sent
    }
    if (st != ReadStatus::kOk) return AnswerBodyError(st, conn);
    if (static_cast<int64_t>(pending.size()) > (64 << 20)) {
      return AnswerBodyError(ReadStatus::kTooLarge, conn);
    }
  }

  StreamCall call;
  grpc::ClientContext ctx;
  stub_.PrepareBidiStreamingCall(&ctx, m.grpc_method, grpc::StubOptions(), &call);
  call.AddHold();  // released by the body reader when it stops writing
  // And one for the response loop below: it calls StartRead after each
  // message, which is only allowed while OnDone cannot have run yet.
  call.AddHold();
  call.StartRead(&call.in_);
  call.StartCall();

  // Body reader: the first request, then every further JSON object of the
  // body, then half-close (grpc-gateway's handleSend loop + CloseSend).
  std::thread reader([&, first = std::move(first)]() mutable {
    bool ok = first == nullptr || call.Write(*first);
    while (ok) {
      size_t b = 0, e = 0;
      JsonScan scan = ScanJsonValue(pending, &b, &e);
      if (scan == JsonScan::kComplete) {
        std::unique_ptr<pb::Message> next(in_proto->New());
        std::string error;
        if (!DecodeRequest(absl::string_view(pending).substr(0, e), next.get(), &error)) break;
        pending.erase(0, e);
        ok = call.Write(*next);
        continue;
      }
      if (static_cast<int64_t>(pending.size()) > (64 << 20)) break;
      ReadStatus st = conn.ReadBodySome(&pending, /*wait_forever=*/true);
      if (st != ReadStatus::kOk) break;
    }
    {
      std::lock_guard<std::mutex> l(call.mu_);
      ok = !call.write_failed_;
    }
    if (ok) call.StartWritesDone();
    call.RemoveHold();
  });

  bool wrote_header = false;
  bool alive = true;
  bool cancelled = false;
  std::unique_ptr<pb::Message> response(factory->GetPrototype(m.output)->New());
  for (;;) {
    std::unique_lock<std::mutex> l(call.mu_);
    call.cv_.wait_for(l, std::chrono::milliseconds(100),
                      [&] { return call.has_msg_ || call.read_closed_; });
    if (call.has_msg_) {
      call.has_msg_ = false;
      l.unlock();
      response->Clear();
      std::string chunk;
      if (FromByteBuffer(call.in_, response.get())) {
        chunk = absl::StrCat("{\"result\":", ToJson(*response), "}\n");
      }
      if (alive && !wrote_header) {
        alive = conn.BeginChunked(200, kJson, kGrpcMetadata);
        wrote_header = true;
      }
      if (alive) alive = conn.WriteChunk(chunk);
      if (!alive && !cancelled) {
        ctx.TryCancel();
        cancelled = true;
      }
      call.StartRead(&call.in_);
      continue;
    }
    if (call.read_closed_) break;
    l.unlock();
    if (!cancelled && conn.PeerGone()) {
      ctx.TryCancel();
      cancelled = true;
    }
  }
  // No read is outstanding and none will start: OnDone may now come.
  call.RemoveHold();
  // The server is done sending: stop the body reader, wait for the end.
  conn.CancelReads();
  reader.join();
  grpc::Status status;
  {
    std::unique_lock<std::mutex> l(call.mu_);
    call.cv_.wait(l, [&] { return call.done_; });
    status = call.status_;
  }
  if (!alive) return false;
  if (!status.ok() && !cancelled) {
    // grpc-gateway's handleForwardResponseStreamError: a StreamError chunk.
    int code = status.error_code();
    int http_status = HttpStatusFromGrpcCode(code);
    if (!wrote_header) {
      alive = conn.BeginChunked(http_status, kJson, kGrpcMetadata);
      wrote_header = true;
    }
    std::string err = absl::StrCat("{\"error\":{\"grpc_code\":", code,
                                   ",\"http_code\":", http_status);
    if (!status.error_message().empty()) {
      absl::StrAppend(&err, ",\"message\":", GoJsonQuote(status.error_message()));
    }
    absl::StrAppend(&err, ",\"http_status\":", GoJsonQuote(StatusText(http_status)), "}}");
    if (alive) alive = conn.WriteChunk(err);
  }
  if (!wrote_header && alive) alive = conn.BeginChunked(200, kJson, kGrpcMetadata);
  if (alive) alive = conn.EndChunked();
  // The whole request body was read and the response is complete: like Go's
  // net/http, keep the connection for the next request (clients such as
  // Patroni send a unary-looking /v3/lease/keepalive and reuse the
  // connection at once; closing it here made their next request fail with
  // a reset). A body left unread means the connection cannot be reused.
  if (alive && conn.BodyDone() && !conn.aborted()) {
    conn.ResumeReads();
    return req.keep_alive;
  }
  return false;
}

}  // namespace etcdpp::server::http
