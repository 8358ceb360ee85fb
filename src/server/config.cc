#include "server/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace etcdpp::server {
namespace {

// kUint is Go's flag.Uint/Uint64/Uint32: a sign is a parse error.
enum class Kind { kString, kBool, kInt, kUint, kDuration };

// kSupported: etcdpp implements it; kDefaultOnly: accepted only at its default.
enum class Support { kSupported, kDefaultOnly };

struct FlagSpec {
  absl::string_view name;
  absl::string_view default_value;
  Kind kind;
  Support support;
};

// etcd 3.4's server flags (etcd --help), with their defaults.
constexpr FlagSpec kFlags[] = {
    {"name", "default", Kind::kString, Support::kSupported},
    {"data-dir", "", Kind::kString, Support::kSupported},  // default ${name}.etcd
    {"wal-dir", "", Kind::kString, Support::kDefaultOnly},
    {"snapshot-count", "100000", Kind::kUint, Support::kSupported},
    {"heartbeat-interval", "100", Kind::kUint, Support::kSupported},
    {"election-timeout", "1000", Kind::kUint, Support::kSupported},
    {"initial-election-tick-advance", "true", Kind::kBool, Support::kSupported},
    {"listen-peer-urls", "http://localhost:2380", Kind::kString, Support::kSupported},
    {"listen-client-urls", "http://localhost:2379", Kind::kString, Support::kSupported},
    {"max-snapshots", "5", Kind::kUint, Support::kSupported},
    {"max-wals", "5", Kind::kUint, Support::kSupported},
    {"quota-backend-bytes", "0", Kind::kInt, Support::kSupported},
    {"backend-batch-interval", "", Kind::kString, Support::kDefaultOnly},
    {"backend-batch-limit", "0", Kind::kInt, Support::kDefaultOnly},
    {"max-txn-ops", "128", Kind::kUint, Support::kSupported},
    {"max-request-bytes", "1572864", Kind::kUint, Support::kSupported},
    {"max-concurrent-streams", "4294967295", Kind::kUint, Support::kSupported},
    {"grpc-keepalive-min-time", "5s", Kind::kDuration, Support::kSupported},
    {"grpc-keepalive-interval", "2h", Kind::kDuration, Support::kSupported},
    {"grpc-keepalive-timeout", "20s", Kind::kDuration, Support::kSupported},
    {"initial-advertise-peer-urls", "http://localhost:2380", Kind::kString, Support::kSupported},
    {"initial-cluster", "", Kind::kString, Support::kSupported},  // default ${name}=${peer urls}
    {"initial-cluster-state", "new", Kind::kString, Support::kSupported},
    {"initial-cluster-token", "etcd-cluster", Kind::kString, Support::kSupported},
    {"advertise-client-urls", "http://localhost:2379", Kind::kString, Support::kSupported},
    {"discovery", "", Kind::kString, Support::kDefaultOnly},
    {"discovery-fallback", "proxy", Kind::kString, Support::kDefaultOnly},
    {"discovery-proxy", "", Kind::kString, Support::kDefaultOnly},
    {"discovery-srv", "", Kind::kString, Support::kDefaultOnly},
    {"discovery-srv-name", "", Kind::kString, Support::kDefaultOnly},
    {"strict-reconfig-check", "true", Kind::kBool, Support::kSupported},
    {"pre-vote", "false", Kind::kBool, Support::kSupported},
    {"auto-compaction-retention", "0", Kind::kString, Support::kDefaultOnly},
    {"auto-compaction-mode", "periodic", Kind::kString, Support::kDefaultOnly},
    {"enable-v2", "false", Kind::kBool, Support::kDefaultOnly},
    {"cert-file", "", Kind::kString, Support::kDefaultOnly},
    {"key-file", "", Kind::kString, Support::kDefaultOnly},
    {"client-cert-auth", "false", Kind::kBool, Support::kDefaultOnly},
    {"client-crl-file", "", Kind::kString, Support::kDefaultOnly},
    {"client-cert-allowed-hostname", "", Kind::kString, Support::kDefaultOnly},
    {"trusted-ca-file", "", Kind::kString, Support::kDefaultOnly},
    {"auto-tls", "false", Kind::kBool, Support::kDefaultOnly},
    {"peer-cert-file", "", Kind::kString, Support::kDefaultOnly},
    {"peer-key-file", "", Kind::kString, Support::kDefaultOnly},
    {"peer-client-cert-auth", "false", Kind::kBool, Support::kDefaultOnly},
    {"peer-trusted-ca-file", "", Kind::kString, Support::kDefaultOnly},
    {"peer-cert-allowed-cn", "", Kind::kString, Support::kDefaultOnly},
    {"peer-cert-allowed-hostname", "", Kind::kString, Support::kDefaultOnly},
    {"peer-auto-tls", "false", Kind::kBool, Support::kDefaultOnly},
    {"peer-crl-file", "", Kind::kString, Support::kDefaultOnly},
    {"cipher-suites", "", Kind::kString, Support::kDefaultOnly},
    {"cors", "*", Kind::kString, Support::kDefaultOnly},
    {"host-whitelist", "*", Kind::kString, Support::kDefaultOnly},
    {"auth-token", "simple", Kind::kString, Support::kDefaultOnly},
    {"bcrypt-cost", "10", Kind::kUint, Support::kDefaultOnly},
    {"auth-token-ttl", "300", Kind::kUint, Support::kDefaultOnly},
    {"enable-pprof", "false", Kind::kBool, Support::kDefaultOnly},
    {"metrics", "basic", Kind::kString, Support::kDefaultOnly},
    {"listen-metrics-urls", "", Kind::kString, Support::kSupported},
    // etcd 3.5's: when set, the client URLs serve gRPC only and these serve
    // HTTP (gateway, /health, /metrics).
    {"listen-client-http-urls", "", Kind::kString, Support::kSupported},
    {"logger", "capnslog", Kind::kString, Support::kSupported},
    {"log-output", "default", Kind::kString, Support::kDefaultOnly},  // deprecated form
    {"log-outputs", "default", Kind::kString, Support::kSupported},
    {"log-level", "info", Kind::kString, Support::kSupported},
    {"proxy", "off", Kind::kString, Support::kDefaultOnly},
    {"proxy-failure-wait", "5000", Kind::kUint, Support::kDefaultOnly},
    {"proxy-refresh-interval", "30000", Kind::kUint, Support::kDefaultOnly},
    {"proxy-dial-timeout", "1000", Kind::kUint, Support::kDefaultOnly},
    {"proxy-write-timeout", "5000", Kind::kUint, Support::kDefaultOnly},
    {"proxy-read-timeout", "0", Kind::kUint, Support::kDefaultOnly},
    {"experimental-initial-corrupt-check", "false", Kind::kBool, Support::kDefaultOnly},
    {"experimental-corrupt-check-time", "0s", Kind::kDuration, Support::kDefaultOnly},
    {"experimental-enable-v2v3", "", Kind::kString, Support::kDefaultOnly},
    {"experimental-backend-bbolt-freelist-type", "array", Kind::kString, Support::kSupported},
    {"experimental-enable-lease-checkpoint", "false", Kind::kBool, Support::kSupported},
    {"experimental-enable-lease-checkpoint-persist", "false", Kind::kBool, Support::kDefaultOnly},
    {"experimental-compaction-batch-limit", "1000", Kind::kInt, Support::kSupported},
    {"experimental-peer-skip-client-san-verification", "false", Kind::kBool, Support::kDefaultOnly},
    {"experimental-watch-progress-notify-interval", "10m", Kind::kDuration, Support::kSupported},
    {"experimental-warning-apply-duration", "100ms", Kind::kDuration, Support::kSupported},
    {"force-new-cluster", "false", Kind::kBool, Support::kSupported},
    {"unsafe-no-fsync", "false", Kind::kBool, Support::kDefaultOnly},
    {"debug", "false", Kind::kBool, Support::kSupported},
    {"log-package-levels", "", Kind::kString, Support::kDefaultOnly},
    {"enable-grpc-gateway", "true", Kind::kBool, Support::kSupported},
    {"config-file", "", Kind::kString, Support::kSupported},
    {"version", "false", Kind::kBool, Support::kSupported},
    {"help", "false", Kind::kBool, Support::kSupported},
    {"h", "false", Kind::kBool, Support::kSupported},
};

const FlagSpec* FindFlag(absl::string_view name) {
  for (const auto& f : kFlags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::optional<bool> ParseBool(absl::string_view v) {
  // Go's strconv.ParseBool.
  if (v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" || v == "True") return true;
  if (v == "0" || v == "f" || v == "F" || v == "false" || v == "FALSE" || v == "False") return false;
  return std::nullopt;
}

// Go's time.ParseDuration for the units etcd's flags use.
std::optional<int64_t> ParseDurationMs(absl::string_view v) {
  bool negative = false;
  if (!v.empty() && (v[0] == '-' || v[0] == '+')) {
    negative = v[0] == '-';
    v.remove_prefix(1);
  }
  if (v == "0") return 0;
  double total_ms = 0;
  size_t i = 0;
  if (v.empty()) return std::nullopt;
  while (i < v.size()) {
    size_t start = i;
    while (i < v.size() && (std::isdigit(static_cast<unsigned char>(v[i])) || v[i] == '.')) ++i;
    if (start == i) return std::nullopt;
    double num = 0;
    if (!absl::SimpleAtod(v.substr(start, i - start), &num)) return std::nullopt;
    size_t ustart = i;
    while (i < v.size() && std::isalpha(static_cast<unsigned char>(v[i]))) ++i;
    absl::string_view unit = v.substr(ustart, i - ustart);
    double scale;
    if (unit == "ns") scale = 1e-6;
    else if (unit == "us" || unit == "µs") scale = 1e-3;
    else if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60000;
    else if (unit == "h") scale = 3600000;
    else return std::nullopt;
    total_ms += num * scale;
  }
  return static_cast<int64_t>(negative ? -total_ms : total_ms);
}

std::string EnvName(absl::string_view flag) {
  return "ETCD_" + absl::AsciiStrToUpper(absl::StrReplaceAll(flag, {{"-", "_"}}));
}

// Flags whose value must be one of a fixed set (etcd's SelectiveStringValue).
const std::vector<absl::string_view>* SelectiveValues(absl::string_view flag) {
  static const std::vector<absl::string_view> kClusterState = {"new", "existing"};
  static const std::vector<absl::string_view> kFallback = {"proxy", "exit"};
  static const std::vector<absl::string_view> kProxy = {"off", "readonly", "on"};
  if (flag == "initial-cluster-state") return &kClusterState;
  if (flag == "discovery-fallback") return &kFallback;
  if (flag == "proxy") return &kProxy;
  return nullptr;
}

bool AllDigits(absl::string_view v) {
  return !v.empty() &&
         std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Go's flag.Value.Set error text for `value`, or "" when it is valid.
std::string SetError(const FlagSpec& f, const std::string& value) {
  if (const auto* valid = SelectiveValues(f.name)) {
    if (std::find(valid->begin(), valid->end(), value) == valid->end()) return "invalid value";
    return "";
  }
  switch (f.kind) {
    case Kind::kBool:
      return ParseBool(value) ? "" : "parse error";
    case Kind::kInt: {
      absl::string_view digits = value;
      if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.remove_prefix(1);
      if (!AllDigits(digits)) return "parse error";
      int64_t n;
      return absl::SimpleAtoi(value, &n) ? "" : "value out of range";
    }
    case Kind::kUint: {
      uint64_t u;
      if (f.name == "max-concurrent-streams") {  // etcd's own Uint32Value
        if (!AllDigits(value)) {
          return absl::StrCat("strconv.ParseUint: parsing \"", value, "\": invalid syntax");
        }
        if (!absl::SimpleAtoi(value, &u) || u > 0xffffffffu) {
          return absl::StrCat("strconv.ParseUint: parsing \"", value, "\": value out of range");
        }
        return "";
      }
      if (!AllDigits(value)) return "parse error";
      return absl::SimpleAtoi(value, &u) ? "" : "value out of range";
    }
    case Kind::kDuration:
      return ParseDurationMs(value) ? "" : "parse error";
    case Kind::kString:
      return "";
  }
  return "";
}

// A command-line value: Go's flag package errors (etcd exits 2).
absl::Status ValidateFlagValue(const FlagSpec& f, const std::string& value) {
  std::string err = SetError(f, value);
  if (err.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      f.kind == Kind::kBool ? "invalid boolean value \"" : "invalid value \"", value,
      "\" for flag -", f.name, ": ", err));
}

// An ETCD_* value: etcd's flags.SetFlagsFromEnv error (etcd exits 1).
absl::Status ValidateEnvValue(const FlagSpec& f, const std::string& value) {
  std::string err = SetError(f, value);
  if (err.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("invalid value \"", value, "\" for ", EnvName(f.name), ": ", err));
}

// ---------------------------------------------------------------------------
// The YAML subset etcd's configuration files use: block mappings (nested for
// the *-transport-security blocks), block and flow sequences of scalars,
// plain/'single'/"double" quoted scalars, comments, null/~ and empty values.

struct YamlNode {
  enum Type { kNull, kScalar, kMap, kSeq } type = kNull;
  bool quoted = false;
  std::string text;  // kScalar
  std::vector<std::pair<std::string, YamlNode>> map;
  std::vector<YamlNode> seq;
  int line = 0;
};

struct YamlLine {
  int number;      // 1-based
  int indent;      // leading spaces
  std::string text;  // without the indentation; comment-only lines dropped
};

absl::Status YamlError(int line, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("error converting YAML to JSON: yaml: line ", line, ": ", what));
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Reads a quoted scalar starting at text[*pos] (a ' or "); advances *pos
// past the closing quote.
absl::StatusOr<std::string> ReadQuoted(absl::string_view text, size_t* pos, int line) {
  char q = text[*pos];
  std::string out;
  size_t i = *pos + 1;
  while (i < text.size()) {
    char c = text[i];
    if (q == '\'' && c == '\'') {
      if (i + 1 < text.size() && text[i + 1] == '\'') {
        out.push_back('\'');
        i += 2;
        continue;
      }
      *pos = i + 1;
      return out;
    }
    if (q == '"' && c == '"') {
      *pos = i + 1;
      return out;
    }
    if (q == '"' && c == '\\') {
      if (i + 1 >= text.size()) break;
      char e = text[i + 1];
      switch (e) {
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case '0': out.push_back('\0'); break;
        case '\\': out.push_back('\\'); break;
        case '"': out.push_back('"'); break;
        case '/': out.push_back('/'); break;
        case ' ': out.push_back(' '); break;
        case 'x':
        case 'u':
        case 'U': {
          size_t len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          if (i + 2 + len > text.size() ||
              !absl::SimpleHexAtoi(text.substr(i + 2, len), &cp) ||
              !std::all_of(text.begin() + i + 2, text.begin() + i + 2 + len,
                           [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); }) ||
              cp > 0x10ffff) {
            return YamlError(line, "did not find expected hexdecimal number");
          }
          AppendUtf8(cp, &out);
          i += 2 + len;
          continue;
        }
        default:
          return YamlError(line, "found unknown escape character while parsing a quoted scalar");
      }
      i += 2;
      continue;
    }
    out.push_back(c);
    ++i;
  }
  return YamlError(line, "found unexpected end of stream (unterminated quoted string; "
                         "multi-line quoted strings are not supported)");
}

// Position of a " #" comment in a plain (unquoted) remainder, or npos.
size_t CommentStart(absl::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t')) return i;
  }
  return absl::string_view::npos;
}

// After a quoted scalar or flow collection only a comment may follow.
absl::Status ExpectEnd(absl::string_view rest, int line) {
  rest = absl::StripLeadingAsciiWhitespace(rest);
  if (!rest.empty() && rest[0] != '#') return YamlError(line, "did not find expected key");
  return absl::OkStatus();
}

// A single scalar (plain or quoted) that makes up all of `text`.
absl::StatusOr<YamlNode> ParseInlineScalar(absl::string_view text, int line, bool in_flow) {
  YamlNode node;
  node.line = line;
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return node;  // null
  if (text[0] == '"' || text[0] == '\'') {
    size_t pos = 0;
    ETCDPP_ASSIGN_OR_RETURN(node.text, ReadQuoted(text, &pos, line));
    node.type = YamlNode::kScalar;
    node.quoted = true;
    ETCDPP_RETURN_IF_ERROR(ExpectEnd(text.substr(pos), line));
    return node;
  }
  if (text[0] == '&' || text[0] == '*' || text[0] == '!' || text[0] == '|' || text[0] == '>' ||
      text[0] == '@' || text[0] == '`' || text[0] == '%') {
    return YamlError(line, absl::StrCat("unsupported YAML construct '", text.substr(0, 1),
                                        "' (anchors, aliases, tags and block scalars are not "
                                        "supported in etcdpp's config files)"));
  }
  if (text[0] == '[' || text[0] == '{') {
    return YamlError(line, "nested flow collections are not supported");
  }
  if (!in_flow && (absl::StartsWith(text, "- ") || text == "-")) {
    return YamlError(line, "block sequence entries are not allowed in this context");
  }
  if (size_t c = CommentStart(text); c != absl::string_view::npos) {
    text = absl::StripTrailingAsciiWhitespace(text.substr(0, c));
  }
  if (text.find(": ") != absl::string_view::npos || absl::EndsWith(text, ":")) {
    return YamlError(line, "mapping values are not allowed in this context");
  }
  if (in_flow && text.find_first_of("[]{}") != absl::string_view::npos) {
    return YamlError(line, "did not find expected ',' or ']'");
  }
  node.type = YamlNode::kScalar;
  node.text = std::string(text);
  return node;
}

// A one-line flow sequence: [a, "b", c].
absl::StatusOr<YamlNode> ParseFlowSeq(absl::string_view text, int line) {
  YamlNode node;
  node.type = YamlNode::kSeq;
  node.line = line;
  size_t i = 1;  // past '['
  while (true) {
    while (i < text.size() && text[i] == ' ') ++i;
    if (i >= text.size()) {
      return YamlError(line, "did not find expected ',' or ']' (flow sequences must be on one line)");
    }
    if (text[i] == ']') {  // "[]", or "[a, b,]" (a trailing comma is allowed)
      ++i;
      break;
    }
    size_t start = i;
    if (text[i] == '"' || text[i] == '\'') {
      size_t pos = i;
      ETCDPP_RETURN_IF_ERROR(ReadQuoted(text, &pos, line).status());
      i = pos;
    }
    while (i < text.size() && text[i] != ',' && text[i] != ']') ++i;
    if (i >= text.size()) {
      return YamlError(line, "did not find expected ',' or ']' (flow sequences must be on one line)");
    }
    ETCDPP_ASSIGN_OR_RETURN(YamlNode item, ParseInlineScalar(text.substr(start, i - start), line, true));
    if (item.type == YamlNode::kNull &&
        absl::StripAsciiWhitespace(text.substr(start, i - start)).empty()) {
      return YamlError(line, "did not find expected node content");  // "[,]", "[a,,b]"
    }
    node.seq.push_back(std::move(item));
    if (text[i++] == ']') break;
  }
  ETCDPP_RETURN_IF_ERROR(ExpectEnd(text.substr(i), line));
  return node;
}

class YamlParser {
 public:
  explicit YamlParser(std::vector<YamlLine> lines) : lines_(std::move(lines)) {}

  absl::StatusOr<YamlNode> ParseDocument() {
    if (lines_.empty()) return YamlNode{};  // empty document: null
    const YamlLine& first = lines_[0];
    YamlNode root;
    if (absl::StartsWith(first.text, "- ") || first.text == "-") {
      ETCDPP_ASSIGN_OR_RETURN(root, ParseBlockSeq(first.indent));
    } else if (FindKeyColon(first.text) != std::string::npos) {
      ETCDPP_ASSIGN_OR_RETURN(root, ParseBlockMap(first.indent));
    } else {
      ETCDPP_ASSIGN_OR_RETURN(root, ParseInlineValue(first.text, first.number));
      ++next_;
    }
    if (next_ < lines_.size()) {
      const YamlLine& l = lines_[next_];
      if (FindKeyColon(l.text) != std::string::npos) {
        return YamlError(l.number, "mapping values are not allowed in this context");
      }
      return YamlError(l.number, "did not find expected key");
    }
    return root;
  }

 private:
  // The ':' ending a mapping key (followed by a space or the line's end), or npos.
  static size_t FindKeyColon(absl::string_view text) {
    size_t i = 0;
    if (!text.empty() && (text[0] == '"' || text[0] == '\'')) {
      char q = text[0];
      i = 1;
      while (i < text.size() && text[i] != q) ++i;
      if (i >= text.size()) return std::string::npos;
      ++i;
      while (i < text.size() && text[i] == ' ') ++i;
      if (i < text.size() && text[i] == ':' && (i + 1 == text.size() || text[i + 1] == ' ')) {
        return i;
      }
      return std::string::npos;
    }
    if (!text.empty() && (text[0] == '[' || text[0] == '{')) return std::string::npos;
    for (; i < text.size(); ++i) {
      if (text[i] == '#' && i > 0 && text[i - 1] == ' ') return std::string::npos;
      if (text[i] == ':' && (i + 1 == text.size() || text[i + 1] == ' ')) return i;
    }
    return std::string::npos;
  }

  absl::StatusOr<YamlNode> ParseInlineValue(absl::string_view text, int line) {
    text = absl::StripAsciiWhitespace(text);
    if (!text.empty() && text[0] == '[') return ParseFlowSeq(text, line);
    if (!text.empty() && text[0] == '{') {
      absl::string_view inner = absl::StripAsciiWhitespace(text.substr(1));
      if (absl::StartsWith(inner, "}")) {  // {} only
        ETCDPP_RETURN_IF_ERROR(ExpectEnd(inner.substr(1), line));
        YamlNode n;
        n.type = YamlNode::kMap;
        n.line = line;
        return n;
      }
      return YamlError(line, "flow mappings ({...}) are not supported; use an indented block");
    }
    return ParseInlineScalar(text, line, false);
  }

  // The value after "key:" (or "- "): inline, or the block on the lines below.
  absl::StatusOr<YamlNode> ParseValue(absl::string_view rest, int line, int parent_indent,
                                      bool in_map) {
    rest = absl::StripAsciiWhitespace(rest);
    if (!rest.empty() && rest[0] != '#') {
      ETCDPP_ASSIGN_OR_RETURN(YamlNode node, ParseInlineValue(rest, line));
      // A plain scalar may continue on more-indented lines (folded with spaces).
      while (node.type == YamlNode::kScalar && !node.quoted && next_ < lines_.size() &&
             lines_[next_].indent > parent_indent) {
        const YamlLine& l = lines_[next_];
        if (FindKeyColon(l.text) != std::string::npos) {
          return YamlError(l.number, "mapping values are not allowed in this context");
        }
        ETCDPP_ASSIGN_OR_RETURN(YamlNode more, ParseInlineScalar(l.text, l.number, false));
        if (more.quoted) return YamlError(l.number, "did not find expected key");
        absl::StrAppend(&node.text, " ", more.text);
        ++next_;
      }
      if (node.type != YamlNode::kScalar && next_ < lines_.size() &&
          lines_[next_].indent > parent_indent) {
        return YamlError(lines_[next_].number, "did not find expected key");
      }
      return node;
    }
    YamlNode null_node;
    null_node.line = line;
    if (next_ >= lines_.size()) return null_node;
    const YamlLine& l = lines_[next_];
    bool dash = absl::StartsWith(l.text, "- ") || l.text == "-";
    // A block sequence may sit at its key's own indentation.
    if (dash && (l.indent > parent_indent || (in_map && l.indent == parent_indent))) {
      return ParseBlockSeq(l.indent);
    }
    if (l.indent <= parent_indent) return null_node;
    if (FindKeyColon(l.text) != std::string::npos) return ParseBlockMap(l.indent);
    // An indented plain scalar on its own line.
    ETCDPP_ASSIGN_OR_RETURN(YamlNode node, ParseInlineValue(l.text, l.number));
    ++next_;
    if (next_ < lines_.size() && lines_[next_].indent > parent_indent) {
      return YamlError(lines_[next_].number, "did not find expected key");
    }
    return node;
  }

  absl::StatusOr<YamlNode> ParseBlockMap(int indent) {
    YamlNode node;
    node.type = YamlNode::kMap;
    node.line = lines_[next_].number;
    while (next_ < lines_.size()) {
      const YamlLine& l = lines_[next_];
      if (l.indent < indent) break;
      if (l.indent > indent) {
        return YamlError(l.number, "mapping values are not allowed in this context");
      }
      if (absl::StartsWith(l.text, "- ") || l.text == "-") {
        return YamlError(l.number, "did not find expected key");
      }
      size_t colon = FindKeyColon(l.text);
      if (colon == std::string::npos) {
        return YamlError(l.number, "could not find expected ':'");
      }
      absl::string_view key_text = absl::StripTrailingAsciiWhitespace(
          absl::string_view(l.text).substr(0, colon));
      std::string key;
      if (!key_text.empty() && (key_text[0] == '"' || key_text[0] == '\'')) {
        size_t pos = 0;
        ETCDPP_ASSIGN_OR_RETURN(key, ReadQuoted(key_text, &pos, l.number));
      } else {
        if (key_text.empty() || key_text[0] == '?' || key_text[0] == '&' || key_text[0] == '*' ||
            key_text[0] == '!') {
          return YamlError(l.number, "unsupported mapping key");
        }
        key = std::string(key_text);
      }
      int number = l.number;
      std::string rest = l.text.substr(colon + 1);
      ++next_;
      ETCDPP_ASSIGN_OR_RETURN(YamlNode value, ParseValue(rest, number, indent, true));
      value.line = value.line ? value.line : number;
      node.map.emplace_back(std::move(key), std::move(value));
    }
    return node;
  }

  absl::StatusOr<YamlNode> ParseBlockSeq(int indent) {
    YamlNode node;
    node.type = YamlNode::kSeq;
    node.line = lines_[next_].number;
    while (next_ < lines_.size()) {
      const YamlLine& l = lines_[next_];
      if (l.indent < indent) break;
      bool dash = absl::StartsWith(l.text, "- ") || l.text == "-";
      if (l.indent > indent || !dash) {
        if (l.indent == indent && FindKeyColon(l.text) != std::string::npos) break;  // parent's key
        return YamlError(l.number, "did not find expected '-' indicator");
      }
      absl::string_view item = absl::string_view(l.text).substr(1);
      int number = l.number;
      if (FindKeyColon(absl::StripLeadingAsciiWhitespace(item)) != std::string::npos) {
        return YamlError(number, "mappings inside sequences are not supported");
      }
      ++next_;
      ETCDPP_ASSIGN_OR_RETURN(YamlNode value, ParseValue(item, number, indent, false));
      node.seq.push_back(std::move(value));
    }
    return node;
  }

  std::vector<YamlLine> lines_;
  size_t next_ = 0;
};

absl::StatusOr<YamlNode> ParseYaml(absl::string_view content) {
  std::vector<YamlLine> lines;
  int number = 0;
  bool seen_content = false;
  for (absl::string_view raw : absl::StrSplit(content, '\n')) {
    ++number;
    if (absl::EndsWith(raw, "\r")) raw.remove_suffix(1);
    size_t indent = 0;
    while (indent < raw.size() && raw[indent] == ' ') ++indent;
    absl::string_view text = absl::StripTrailingAsciiWhitespace(raw.substr(indent));
    if (text.empty() || text[0] == '#') continue;
    if (text[0] == '\t') {
      if (absl::StripLeadingAsciiWhitespace(text).empty() ||
          absl::StripLeadingAsciiWhitespace(text)[0] == '#') {
        continue;
      }
      return YamlError(number, "found a tab character that violates indentation");
    }
    if (indent == 0 && (text == "---" || absl::StartsWith(text, "--- ") ||
                        absl::StartsWith(text, "%"))) {
      if (seen_content) return YamlError(number, "multiple YAML documents are not supported");
      if (text[0] == '%') continue;  // directive
      absl::string_view after = absl::StripLeadingAsciiWhitespace(text.substr(3));
      if (after.empty() || after[0] == '#') continue;
      return YamlError(number, "content on the '---' line is not supported");
    }
    if (indent == 0 && text == "...") break;
    seen_content = true;
    lines.push_back({number, static_cast<int>(indent), std::string(text)});
  }
  return YamlParser(std::move(lines)).ParseDocument();
}

// A YAML scalar as yaml.v2 resolves it (YAML 1.1), for sigs.k8s.io/yaml.
struct Resolved {
  enum Type { kNull, kBool, kInt, kFloat, kString } type = kString;
  bool b = false;
  bool negative = false;
  uint64_t magnitude = 0;  // kInt: |value|
  double f = 0;            // kFloat
};

Resolved Resolve(const YamlNode& n) {
  Resolved r;
  if (n.type == YamlNode::kNull) {
    r.type = Resolved::kNull;
    return r;
  }
  if (n.quoted) return r;
  const std::string& t = n.text;
  if (t == "~" || t == "null" || t == "Null" || t == "NULL" || t.empty()) {
    r.type = Resolved::kNull;
    return r;
  }
  static const char* kTrue[] = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE",
                                "on", "On", "ON"};
  static const char* kFalse[] = {"n", "N", "no", "No", "NO", "false", "False", "FALSE",
                                 "off", "Off", "OFF"};
  for (const char* v : kTrue) {
    if (t == v) {
      r.type = Resolved::kBool;
      r.b = true;
      return r;
    }
  }
  for (const char* v : kFalse) {
    if (t == v) {
      r.type = Resolved::kBool;
      return r;
    }
  }
  absl::string_view body = t;
  bool negative = false;
  if (body[0] == '-' || body[0] == '+') {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  std::string digits = absl::StrReplaceAll(body, {{"_", ""}});
  uint64_t mag = 0;
  bool is_int = false;
  if (absl::StartsWith(digits, "0x") && digits.size() > 2) {
    is_int = absl::SimpleHexAtoi(absl::string_view(digits).substr(2), &mag) &&
             std::all_of(digits.begin() + 2, digits.end(),
                         [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  } else if (AllDigits(digits) && !body.empty() && body[0] != '_') {
    is_int = absl::SimpleAtoi(digits, &mag);
  }
  if (is_int) {
    r.type = Resolved::kInt;
    r.negative = negative && mag != 0;
    r.magnitude = mag;
    return r;
  }
  // Floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
  bool has_digit = false;
  size_t i = 0;
  while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, has_digit = true;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, has_digit = true;
  }
  if (has_digit && i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    size_t j = i + 1;
    if (j < body.size() && (body[j] == '-' || body[j] == '+')) ++j;
    size_t k = j;
    while (k < body.size() && std::isdigit(static_cast<unsigned char>(body[k]))) ++k;
    if (k > j) i = k;
  }
  double f;
  if (has_digit && i == body.size() && absl::SimpleAtod(body, &f)) {
    r.type = Resolved::kFloat;
    r.f = negative ? -f : f;
    return r;
  }
  return r;  // a string
}

// Whether `value` means the same as the flag's default.
bool IsDefault(const FlagSpec& f, const std::string& value) {
  if (f.kind == Kind::kBool) return ParseBool(value) == ParseBool(f.default_value);
  if (f.kind == Kind::kDuration) return ParseDurationMs(value) == ParseDurationMs(f.default_value);
  if (f.kind == Kind::kInt || f.kind == Kind::kUint) {
    int64_t a, b;
    if (absl::SimpleAtoi(value, &a) && absl::SimpleAtoi(f.default_value, &b)) return a == b;
  }
  return value == f.default_value;
}

int64_t ToInt(const std::string& v) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n)) {
    uint64_t u = 0;
    (void)absl::SimpleAtoi(v, &u);
    n = static_cast<int64_t>(u);
  }
  return n;
}


// A key of etcd 3.4's configuration file (embed.configYAML, and etcdmain's
// configProxy, which etcd unmarshals from the same file) and its flag.
struct YamlKey {
  absl::string_view key;
  absl::string_view flag;
  absl::string_view go_struct;  // for error texts, as Go's encoding/json names it
  absl::string_view go_type;
};

constexpr YamlKey kYamlKeys[] = {
    {"name", "name", "configYAML", "string"},
    {"data-dir", "data-dir", "configYAML", "string"},
    {"wal-dir", "wal-dir", "configYAML", "string"},
    {"snapshot-count", "snapshot-count", "configYAML", "uint64"},
    {"max-snapshots", "max-snapshots", "configYAML", "uint"},
    {"max-wals", "max-wals", "configYAML", "uint"},
    {"heartbeat-interval", "heartbeat-interval", "configYAML", "uint"},
    {"election-timeout", "election-timeout", "configYAML", "uint"},
    {"initial-election-tick-advance", "initial-election-tick-advance", "configYAML", "bool"},
    {"backend-batch-interval", "backend-batch-interval", "configYAML", "time.Duration"},
    {"backend-batch-limit", "backend-batch-limit", "configYAML", "int"},
    {"quota-backend-bytes", "quota-backend-bytes", "configYAML", "int64"},
    {"max-txn-ops", "max-txn-ops", "configYAML", "uint"},
    {"max-request-bytes", "max-request-bytes", "configYAML", "uint"},
    {"max-concurrent-streams", "max-concurrent-streams", "configYAML", "uint32"},
    {"cipher-suites", "cipher-suites", "configYAML", "[]string"},
    {"initial-cluster-state", "initial-cluster-state", "configYAML", "string"},
    {"discovery-srv", "discovery-srv", "configYAML", "string"},
    {"discovery-srv-name", "discovery-srv-name", "configYAML", "string"},
    {"discovery-proxy", "discovery-proxy", "configYAML", "string"},
    {"discovery", "discovery", "configYAML", "string"},
    {"initial-cluster", "initial-cluster", "configYAML", "string"},
    {"initial-cluster-token", "initial-cluster-token", "configYAML", "string"},
    {"strict-reconfig-check", "strict-reconfig-check", "configYAML", "bool"},
    {"enable-v2", "enable-v2", "configYAML", "bool"},
    {"auto-compaction-mode", "auto-compaction-mode", "configYAML", "string"},
    {"auto-compaction-retention", "auto-compaction-retention", "configYAML", "string"},
    {"grpc-keepalive-min-time", "grpc-keepalive-min-time", "configYAML", "time.Duration"},
    {"grpc-keepalive-interval", "grpc-keepalive-interval", "configYAML", "time.Duration"},
    {"grpc-keepalive-timeout", "grpc-keepalive-timeout", "configYAML", "time.Duration"},
    {"pre-vote", "pre-vote", "configYAML", "bool"},
    {"auth-token", "auth-token", "configYAML", "string"},
    {"bcrypt-cost", "bcrypt-cost", "configYAML", "uint"},
    {"auth-token-ttl", "auth-token-ttl", "configYAML", "uint"},
    {"experimental-initial-corrupt-check", "experimental-initial-corrupt-check", "configYAML", "bool"},
    {"experimental-corrupt-check-time", "experimental-corrupt-check-time", "configYAML", "time.Duration"},
    {"experimental-enable-v2v3", "experimental-enable-v2v3", "configYAML", "string"},
    {"experimental-backend-bbolt-freelist-type", "experimental-backend-bbolt-freelist-type", "configYAML", "string"},
    {"experimental-enable-lease-checkpoint", "experimental-enable-lease-checkpoint", "configYAML", "bool"},
    {"experimental-enable-lease-checkpoint-persist", "experimental-enable-lease-checkpoint-persist", "configYAML", "bool"},
    {"experimental-compaction-batch-limit", "experimental-compaction-batch-limit", "configYAML", "int"},
    {"experimental-watch-progress-notify-interval", "experimental-watch-progress-notify-interval", "configYAML", "time.Duration"},
    {"experimental-warning-apply-duration", "experimental-warning-apply-duration", "configYAML", "time.Duration"},
    {"force-new-cluster", "force-new-cluster", "configYAML", "bool"},
    {"enable-pprof", "enable-pprof", "configYAML", "bool"},
    {"metrics", "metrics", "configYAML", "string"},
    {"listen-metrics-urls", "listen-metrics-urls", "configYAML", "string"},
    {"listen-client-http-urls", "listen-client-http-urls", "configYAML", "string"},
    {"logger", "logger", "configYAML", "string"},
    {"log-level", "log-level", "configYAML", "string"},
    {"log-outputs", "log-outputs", "configYAML", "[]string"},
    {"enable-grpc-gateway", "enable-grpc-gateway", "configYAML", "bool"},
    {"log-output", "log-output", "configYAML", "[]string"},
    {"debug", "debug", "configYAML", "bool"},
    {"log-package-levels", "log-package-levels", "configYAML", "string"},
    {"unsafe-no-fsync", "unsafe-no-fsync", "configYAML", "bool"},
    {"listen-peer-urls", "listen-peer-urls", "configYAML", "string"},
    {"listen-client-urls", "listen-client-urls", "configYAML", "string"},
    {"initial-advertise-peer-urls", "initial-advertise-peer-urls", "configYAML", "string"},
    {"advertise-client-urls", "advertise-client-urls", "configYAML", "string"},
    {"cors", "cors", "configYAML", "string"},
    {"host-whitelist", "host-whitelist", "configYAML", "string"},
    {"client-transport-security", "", "configYAML", "embed.securityConfig"},
    {"peer-transport-security", "peer-", "configYAML", "embed.securityConfig"},
    // etcdmain.configProxy
    {"proxy-failure-wait", "proxy-failure-wait", "configProxy", "uint"},
    {"proxy-refresh-interval", "proxy-refresh-interval", "configProxy", "uint"},
    {"proxy-dial-timeout", "proxy-dial-timeout", "configProxy", "uint"},
    {"proxy-write-timeout", "proxy-write-timeout", "configProxy", "uint"},
    {"proxy-read-timeout", "proxy-read-timeout", "configProxy", "uint"},
    {"proxy", "proxy", "configProxy", "string"},
    {"discovery-fallback", "discovery-fallback", "configProxy", "string"},
};

// embed.securityConfig's keys; the flag is the prefix ("" or "peer-") + this.
constexpr YamlKey kSecurityKeys[] = {
    {"cert-file", "cert-file", "securityConfig", "string"},
    {"key-file", "key-file", "securityConfig", "string"},
    {"client-cert-auth", "client-cert-auth", "securityConfig", "bool"},
    {"trusted-ca-file", "trusted-ca-file", "securityConfig", "string"},
    {"auto-tls", "auto-tls", "securityConfig", "bool"},
};

// Go's encoding/json: an exact key match first, else a case-insensitive one.
template <size_t N>
const YamlKey* FindYamlKey(const YamlKey (&table)[N], absl::string_view key) {
  for (const auto& k : table) {
    if (k.key == key) return &k;
  }
  for (const auto& k : table) {
    if (absl::EqualsIgnoreCase(k.key, key)) return &k;
  }
  return nullptr;
}

// Keys whose empty string means "keep the default" (etcd: `if cfg.XJSON != ""`).
bool EmptyKeepsDefault(absl::string_view key) {
  return key == "listen-peer-urls" || key == "listen-client-urls" ||
         key == "initial-advertise-peer-urls" || key == "advertise-client-urls" ||
         key == "listen-metrics-urls" || key == "listen-client-http-urls" || key == "cors" ||
         key == "host-whitelist" ||
         key == "initial-cluster-state";
}

class ConfigFileLoader {
 public:
  ConfigFileLoader(std::string path, std::map<std::string, std::string, std::less<>>* values,
                   std::vector<std::string>* warnings)
      : path_(std::move(path)), values_(values), warnings_(warnings) {}

  absl::Status Load(absl::string_view content) {
    auto root = ParseYaml(content);
    if (!root.ok()) return InFile(root.status(), 0);
    if (root->type == YamlNode::kNull) return absl::OkStatus();
    if (root->type != YamlNode::kMap) {
      return InFile(absl::FailedPreconditionError(absl::StrCat(
                        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ",
                        JsonType(*root), " into Go value of type embed.configYAML")),
                    root->line);
    }
    for (const auto& [key, node] : root->map) {
      const YamlKey* k = FindYamlKey(kYamlKeys, key);
      if (k == nullptr) {
        warnings_->push_back(absl::StrCat("config file ", path_, " line ", node.line,
                                          ": unknown key \"", key, "\" ignored"));
        continue;
      }
      if (k->go_type == "embed.securityConfig") {
        ETCDPP_RETURN_IF_ERROR(LoadSecurity(*k, node));
        continue;
      }
      ETCDPP_ASSIGN_OR_RETURN(
          std::optional<std::string> v,
          Convert(node, k->go_type, absl::StrCat(k->go_struct, ".", k->key)));
      if (!v) continue;  // null: keeps the default
      if (v->empty() && EmptyKeepsDefault(k->key)) continue;
      (*values_)[std::string(k->flag)] = *v;
    }
    return absl::OkStatus();
  }

 private:
  absl::Status InFile(const absl::Status& st, int line) const {
    std::string where = line > 0 ? absl::StrCat(" (config file ", path_, ", line ", line, ")")
                                 : absl::StrCat(" (config file ", path_, ")");
    return absl::Status(st.code(), absl::StrCat(st.message(), where));
  }

  static std::string JsonType(const YamlNode& n) {
    switch (n.type) {
      case YamlNode::kMap: return "object";
      case YamlNode::kSeq: return "array";
      case YamlNode::kNull: return "null";
      case YamlNode::kScalar: break;
    }
    switch (Resolve(n).type) {
      case Resolved::kBool: return "bool";
      case Resolved::kInt:
      case Resolved::kFloat: return "number";
      case Resolved::kNull: return "null";
      case Resolved::kString: break;
    }
    return "string";
  }

  absl::Status TypeError(const YamlNode& n, absl::string_view field, absl::string_view go_type,
                         absl::string_view number = "") const {
    std::string what = JsonType(n);
    if (!number.empty()) absl::StrAppend(&what, " ", number);
    return InFile(absl::FailedPreconditionError(absl::StrCat(
                      "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ", what,
                      " into Go struct field ", field, " of type ", go_type)),
                  n.line);
  }

  // The node as a flag value for a Go field of `go_type`; nullopt for null.
  absl::StatusOr<std::optional<std::string>> Convert(const YamlNode& n, absl::string_view go_type,
                                                     absl::string_view field) const {
    if (n.type == YamlNode::kNull) return std::optional<std::string>();
    if (go_type == "[]string") {
      if (n.type != YamlNode::kSeq) return TypeError(n, field, go_type);
      std::vector<std::string> items;
      for (const YamlNode& item : n.seq) {
        ETCDPP_ASSIGN_OR_RETURN(std::optional<std::string> v, Convert(item, "string", field));
        if (v) items.push_back(*v);
      }
      return std::optional<std::string>(absl::StrJoin(items, ","));
    }
    if (n.type != YamlNode::kScalar) return TypeError(n, field, go_type);
    Resolved r = Resolve(n);
    if (r.type == Resolved::kNull) return std::optional<std::string>();
    if (go_type == "string") {
      if (r.type != Resolved::kString) return TypeError(n, field, go_type);
      return std::optional<std::string>(n.text);
    }
    if (go_type == "bool") {
      if (r.type != Resolved::kBool) return TypeError(n, field, go_type);
      return std::optional<std::string>(r.b ? "true" : "false");
    }
    // Numbers.
    if (r.type != Resolved::kInt && r.type != Resolved::kFloat) return TypeError(n, field, go_type);
    bool negative = r.negative;
    uint64_t mag = r.magnitude;
    std::string literal = absl::StrCat(negative ? "-" : "", mag);
    if (r.type == Resolved::kFloat) {
      literal = absl::StrCat(r.f);
      double a = r.f < 0 ? -r.f : r.f;
      if (a != static_cast<double>(static_cast<uint64_t>(a)) || a >= 1e19) {
        return TypeError(n, field, go_type, literal);
      }
      negative = r.f < 0;
      mag = static_cast<uint64_t>(a);
      literal = absl::StrCat(negative ? "-" : "", mag);
    }
    bool is_unsigned = absl::StartsWith(go_type, "uint");
    uint64_t max = go_type == "uint32" ? 0xffffffffu
                   : is_unsigned       ? ~uint64_t{0}
                                       : uint64_t{INT64_MAX};
    if ((negative && is_unsigned) || mag > (negative ? max + 1 : max)) {
      return TypeError(n, field, go_type, literal);
    }
    if (go_type == "time.Duration") {  // nanoseconds
      return std::optional<std::string>(absl::StrCat(literal, "ns"));
    }
    return std::optional<std::string>(literal);
  }

  absl::Status LoadSecurity(const YamlKey& block, const YamlNode& node) {
    if (node.type == YamlNode::kNull) return absl::OkStatus();
    if (node.type != YamlNode::kMap) {
      return TypeError(node, absl::StrCat("configYAML.", block.key), block.go_type);
    }
    for (const auto& [key, value] : node.map) {
      const YamlKey* k = FindYamlKey(kSecurityKeys, key);
      if (k == nullptr) {
        warnings_->push_back(absl::StrCat("config file ", path_, " line ", value.line,
                                          ": unknown key \"", block.key, ".", key, "\" ignored"));
        continue;
      }
      ETCDPP_ASSIGN_OR_RETURN(
          std::optional<std::string> v,
          Convert(value, k->go_type, absl::StrCat("securityConfig.", block.key, ".", k->key)));
      if (v) (*values_)[absl::StrCat(block.flag, k->flag)] = *v;
    }
    return absl::OkStatus();
  }

  std::string path_;
  std::map<std::string, std::string, std::less<>>* values_;
  std::vector<std::string>* warnings_;
};

// Go's text for an errno (strerror, lower-cased as Go's syscall table has it).
std::string GoErrno(int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// ioutil.ReadFile's errors: "open PATH: ..." / "read PATH: ...".
absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat("open ", path, ": ", GoErrno(errno)));
  std::string content;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return absl::FailedPreconditionError(absl::StrCat("read ", path, ": ", GoErrno(err)));
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return content;
}

using FlagValues = std::map<std::string, std::string, std::less<>>;
using Getter = std::function<std::string(absl::string_view)>;

// etcd's maxElectionMs (embed/config.go).
constexpr int64_t kMaxElectionMs = 50000;

// Fills `config` from the flag values; defined below ParseFlags.
absl::Status BuildConfig(const FlagValues& values, const Getter& get, bool from_file,
                         ServerConfig* config);

}  // namespace

std::string Url::HostPort() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<Url> ParseUrl(const std::string& text) {
  Url url;
  url.original = text;
  absl::string_view rest = text;
  size_t scheme_end = rest.find("://");
  if (scheme_end == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL scheme must be http, https, unix, or unixs: ", text));
  }
  url.scheme = std::string(rest.substr(0, scheme_end));
  if (url.scheme == "https" || url.scheme == "unix" || url.scheme == "unixs") {
    return absl::UnimplementedError(
        absl::StrCat("etcdpp does not support ", url.scheme, " URLs yet: ", text));
  }
  if (url.scheme != "http") {
    return absl::InvalidArgumentError(
        absl::StrCat("URL scheme must be http, https, unix, or unixs: ", text));
  }
  rest.remove_prefix(scheme_end + 3);
  size_t slash = rest.find('/');
  if (slash != absl::string_view::npos) {
    if (rest.substr(slash) != "/") {
      return absl::InvalidArgumentError(absl::StrCat("URL must not contain a path: ", text));
    }
    rest = rest.substr(0, slash);
  }
  absl::string_view host, port;
  if (absl::StartsWith(rest, "[")) {
    size_t close = rest.find(']');
    if (close == absl::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("URL address does not have the form \"host:port\": ", text));
    }
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == absl::string_view::npos || rest.find(':') != colon) {
      return absl::InvalidArgumentError(
          absl::StrCat("URL address does not have the form \"host:port\": ", text));
    }
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (!absl::SimpleAtoi(port, &url.port) || url.port < 0 || url.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL address does not have the form \"host:port\": ", text));
  }
  url.host = std::string(host);
  return url;
}

absl::StatusOr<std::vector<Url>> ParseUrls(const std::string& comma_separated) {
  std::vector<Url> urls;
  for (absl::string_view part : absl::StrSplit(comma_separated, ',', absl::SkipWhitespace())) {
    ETCDPP_ASSIGN_OR_RETURN(Url u, ParseUrl(std::string(absl::StripAsciiWhitespace(part))));
    urls.push_back(std::move(u));
  }
  if (urls.empty()) return absl::InvalidArgumentError("no URL given");
  return urls;
}

int64_t ServerConfig::QuotaBytes() const {
  constexpr int64_t kDefaultQuota = int64_t{2} * 1024 * 1024 * 1024;
  return quota_backend_bytes > 0 ? quota_backend_bytes : kDefaultQuota;
}

std::string UsageText() {
  std::string out =
      "Usage:\n\n"
      "  etcdpp [flags]\n"
      "    Start an etcdpp server (etcd v3 API compatible).\n\n"
      "  etcdpp --version\n"
      "    Show the version.\n\n"
      "  etcdpp -h | --help\n"
      "    Show this help.\n\n"
      "  etcdpp --config-file\n"
      "    Path to the server configuration file (etcd's YAML format). Note that if a\n"
      "    configuration file is provided, other command line flags and environment\n"
      "    variables will be ignored.\n\n"
      "Flags (etcd 3.4's; each also settable as ETCD_<NAME>, e.g. ETCD_DATA_DIR):\n";
  for (const auto& f : kFlags) {
    if (f.name == "h") continue;
    absl::StrAppend(&out, "  --", f.name, " '", f.default_value, "'",
                    f.support == Support::kDefaultOnly ? "  (not supported yet)" : "", "\n");
  }
  return out;
}

absl::StatusOr<ParseResult> ParseFlags(const std::vector<std::string>& args,
                                       const std::vector<std::string>& environ) {
  ParseResult result;
  std::map<std::string, std::string, std::less<>> values;  // explicitly set
  std::map<std::string, bool, std::less<>> from_env;

  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") {
      if (i + 1 < args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("'", args[i + 1], "' is not a valid flag"));
      }
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      return absl::InvalidArgumentError(absl::StrCat("'", arg, "' is not a valid flag"));
    }
    absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (size_t eq = body.find('='); eq != absl::string_view::npos) {
      value = std::string(body.substr(eq + 1));
      body = body.substr(0, eq);
    }
    const FlagSpec* f = FindFlag(body);
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("flag provided but not defined: -", body));
    }
    if (!value) {
      if (f->kind == Kind::kBool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag needs an argument: -", body));
      }
    }
    ETCDPP_RETURN_IF_ERROR(ValidateFlagValue(*f, *value));
    values[std::string(f->name)] = *value;
  }

  {
    auto flag_bool = [&](absl::string_view name) {
      auto it = values.find(name);
      return it != values.end() && ParseBool(it->second).value_or(false);
    };
    result.show_help = flag_bool("help") || flag_bool("h");
    result.show_version = flag_bool("version");
    if (result.show_help || result.show_version) return result;
  }

  // etcd 3.4 (etcdmain/config.go): --config-file, else ETCD_CONFIG_FILE; a
  // configuration file is then the only source of configuration.
  std::string config_file;
  if (auto it = values.find("config-file"); it != values.end()) config_file = it->second;
  if (config_file.empty()) {
    for (const std::string& kv : environ) {
      if (absl::StartsWith(kv, "ETCD_CONFIG_FILE=")) {  // getenv: the first one
        config_file = kv.substr(17);
        break;
      }
    }
  }
  const bool from_file = !config_file.empty();
  if (from_file) {
    values.clear();
    result.config_file = config_file;
    result.infos.push_back(absl::StrCat(
        "Loading server configuration from \"", config_file,
        "\". Other configuration command line flags and environment variables will be ignored "
        "if provided."));
    ETCDPP_ASSIGN_OR_RETURN(std::string content, ReadConfigFile(config_file));
    ConfigFileLoader loader(config_file, &values, &result.warnings);
    ETCDPP_RETURN_IF_ERROR(loader.Load(content));
  } else {
    // Environment: ETCD_<FLAG> for flags not given on the command line
    // (etcd's flags.SetFlagsFromEnv; empty values are not used).
    for (const std::string& kv : environ) {
      if (!absl::StartsWith(kv, "ETCD_")) continue;
      size_t eq = kv.find('=');
      if (eq == std::string::npos) continue;
      std::string key = kv.substr(0, eq);
      std::string val = kv.substr(eq + 1);
      const FlagSpec* match = nullptr;
      for (const auto& f : kFlags) {
        if (EnvName(f.name) == key) match = &f;
      }
      if (match == nullptr || match->name == "h" || match->name == "help" ||
          match->name == "version") {
        result.warnings.push_back(absl::StrCat("unrecognized environment variable ", kv));
        continue;
      }
      if (values.count(match->name) && !from_env.count(match->name)) {
        // etcd 3.4 (pkg/flags verifyEnv): plog.Fatalf, exit 1.
        return absl::FailedPreconditionError(absl::StrCat(
            "conflicting environment variable \"", key,
            "\" is shadowed by corresponding command-line flag (either unset environment "
            "variable or disable flag)"));
      }
      if (val.empty()) {
        result.warnings.push_back(absl::StrCat("unrecognized environment variable ", kv));
        continue;
      }
      ETCDPP_RETURN_IF_ERROR(ValidateEnvValue(*match, val));
      values[std::string(match->name)] = val;
      from_env[std::string(match->name)] = true;
    }
  }

  auto get = [&](absl::string_view name) -> std::string {
    auto it = values.find(name);
    if (it != values.end()) return it->second;
    return std::string(FindFlag(name)->default_value);
  };

  for (const auto& [name, value] : values) {
    const FlagSpec* f = FindFlag(name);
    if (f == nullptr) continue;
    if (f->support == Support::kDefaultOnly && !IsDefault(*f, value)) {
      return absl::UnimplementedError(absl::StrCat("--", name, "=", value,
                                                   ": this etcd flag is not supported by etcdpp yet"));
    }
  }

  // Validation and conversion (etcd's embed.Config.Validate and friends):
  // errors here exit 1. From a file every error is a file error (exit 1).
  absl::Status st = BuildConfig(values, get, from_file, &result.config);
  if (!st.ok()) {
    if (from_file && st.code() == absl::StatusCode::kInvalidArgument) {
      return absl::FailedPreconditionError(st.message());
    }
    return st;
  }
  return result;
}

namespace {

absl::Status BuildConfig(const FlagValues& values, const Getter& get, bool from_file,
                         ServerConfig* config) {
  auto get_bool = [&](absl::string_view name) { return ParseBool(get(name)).value_or(false); };
  ServerConfig& c = *config;
  c.name = get("name");
  c.data_dir = values.count("data-dir") ? get("data-dir") : c.name + ".etcd";
  if (c.data_dir.empty()) c.data_dir = c.name + ".etcd";
  ETCDPP_ASSIGN_OR_RETURN(c.listen_client_urls, ParseUrls(get("listen-client-urls")));
  ETCDPP_ASSIGN_OR_RETURN(c.advertise_client_urls, ParseUrls(get("advertise-client-urls")));
  if (!get("listen-client-http-urls").empty()) {
    ETCDPP_ASSIGN_OR_RETURN(c.listen_client_http_urls, ParseUrls(get("listen-client-http-urls")));
  }
  if (!get("listen-metrics-urls").empty()) {
    ETCDPP_ASSIGN_OR_RETURN(c.listen_metrics_urls, ParseUrls(get("listen-metrics-urls")));
  }
  c.enable_grpc_gateway = get_bool("enable-grpc-gateway");
  ETCDPP_ASSIGN_OR_RETURN(c.listen_peer_urls, ParseUrls(get("listen-peer-urls")));
  ETCDPP_ASSIGN_OR_RETURN(c.initial_advertise_peer_urls,
                          ParseUrls(get("initial-advertise-peer-urls")));
  std::string initial_cluster = get("initial-cluster");
  if (initial_cluster.empty()) {
    std::vector<std::string> parts;
    for (const auto& u : c.initial_advertise_peer_urls) parts.push_back(c.name + "=" + u.original);
    initial_cluster = absl::StrJoin(parts, ",");
  }
  for (absl::string_view entry : absl::StrSplit(initial_cluster, ',', absl::SkipWhitespace())) {
    std::vector<std::string> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--initial-cluster: expected name=url, got \"", entry, "\""));
    }
    ETCDPP_RETURN_IF_ERROR(ParseUrl(kv[1]).status());
    c.initial_cluster[kv[0]].push_back(kv[1]);
  }
  c.initial_cluster_state = get("initial-cluster-state");
  if (c.initial_cluster_state != "new" && c.initial_cluster_state != "existing") {
    // Only a file gets here: flags and ETCD_* fail when parsed ("invalid value").
    return absl::FailedPreconditionError(
        absl::StrCat("unexpected clusterState \"", c.initial_cluster_state, "\""));
  }
  c.initial_cluster_token = get("initial-cluster-token");
  c.heartbeat_ms = ToInt(get("heartbeat-interval"));
  c.election_ms = ToInt(get("election-timeout"));
  // embed.Config.Validate's checks and texts (etcd 3.4.23), in its order.
  if (c.heartbeat_ms <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--heartbeat-interval must be >0 (set to ", c.heartbeat_ms, "ms)"));
  }
  if (c.election_ms <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--election-timeout must be >0 (set to ", c.election_ms, "ms)"));
  }
  if (5 * c.heartbeat_ms > c.election_ms) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--election-timeout[", c.election_ms,
        "ms] should be at least as 5 times as --heartbeat-interval[", c.heartbeat_ms, "ms]"));
  }
  if (c.election_ms > kMaxElectionMs) {
    return absl::FailedPreconditionError(
        absl::StrCat("--election-timeout[", c.election_ms,
                     "ms] is too long, and should be set less than ", kMaxElectionMs, "ms"));
  }
  c.initial_election_tick_advance = get_bool("initial-election-tick-advance");
  c.strict_reconfig_check = get_bool("strict-reconfig-check");
  c.pre_vote = get_bool("pre-vote");
  c.force_new_cluster = get_bool("force-new-cluster");
  c.enable_lease_checkpoint = get_bool("experimental-enable-lease-checkpoint");
  c.max_snapshots = static_cast<int>(std::min<int64_t>(ToInt(get("max-snapshots")), INT_MAX));
  c.snapshot_count = static_cast<uint64_t>(ToInt(get("snapshot-count")));
  c.max_wals = static_cast<int>(std::min<int64_t>(ToInt(get("max-wals")), INT_MAX));
  if (c.max_wals < 0) return absl::InvalidArgumentError("--max-wals must not be negative");
  c.max_request_bytes = ToInt(get("max-request-bytes"));
  c.max_txn_ops = ToInt(get("max-txn-ops"));
  c.quota_backend_bytes = ToInt(get("quota-backend-bytes"));
  c.max_concurrent_streams = static_cast<uint32_t>(ToInt(get("max-concurrent-streams")));
  // Go durations may be negative; none of these means anything below 0.
  auto duration_ms = [&](absl::string_view name) {
    return std::max<int64_t>(0, ParseDurationMs(get(name)).value_or(0));
  };
  c.grpc_keepalive_min_time_ms = duration_ms("grpc-keepalive-min-time");
  c.grpc_keepalive_interval_ms = duration_ms("grpc-keepalive-interval");
  c.grpc_keepalive_timeout_ms = duration_ms("grpc-keepalive-timeout");
  if (int64_t ms = duration_ms("experimental-watch-progress-notify-interval"); ms > 0) {
    c.watch_progress_notify_interval_ms = std::max<int64_t>(ms, 100);
  }
  c.log_level = get_bool("debug") ? "debug" : get("log-level");
  static const char* kLevels[] = {"debug", "info", "warn", "error", "panic", "fatal"};
  if (std::find(std::begin(kLevels), std::end(kLevels), c.log_level) == std::end(kLevels)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown log level \"", c.log_level,
                                                   "\" (debug, info, warn, error, panic, fatal)"));
  }
  c.log_outputs = get("log-outputs");
  if (c.log_outputs != "default" && c.log_outputs != "stderr" && c.log_outputs != "stdout") {
    return absl::UnimplementedError(absl::StrCat(
        "--log-outputs=", c.log_outputs, ": etcdpp supports default, stderr and stdout"));
  }
  if (c.max_request_bytes <= 0) {
    return absl::InvalidArgumentError("--max-request-bytes must be greater than 0");
  }
  if (c.max_txn_ops <= 0) return absl::InvalidArgumentError("--max-txn-ops must be greater than 0");
  if (c.snapshot_count == 0) c.snapshot_count = 100000;  // etcd: 0 means the default
  (void)values;
  (void)from_file;
  return absl::OkStatus();
}

}  // namespace

}  // namespace etcdpp::server
