#include "server/config.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace etcdpp::server {
namespace {

enum class Kind { kString, kBool, kInt, kDuration };

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
    {"snapshot-count", "100000", Kind::kInt, Support::kSupported},
    {"heartbeat-interval", "100", Kind::kInt, Support::kSupported},
    {"election-timeout", "1000", Kind::kInt, Support::kSupported},
    {"initial-election-tick-advance", "true", Kind::kBool, Support::kSupported},
    {"listen-peer-urls", "http://localhost:2380", Kind::kString, Support::kSupported},
    {"listen-client-urls", "http://localhost:2379", Kind::kString, Support::kSupported},
    {"max-snapshots", "5", Kind::kInt, Support::kDefaultOnly},
    {"max-wals", "5", Kind::kInt, Support::kSupported},
    {"quota-backend-bytes", "0", Kind::kInt, Support::kSupported},
    {"backend-batch-interval", "", Kind::kString, Support::kDefaultOnly},
    {"backend-batch-limit", "0", Kind::kInt, Support::kDefaultOnly},
    {"max-txn-ops", "128", Kind::kInt, Support::kSupported},
    {"max-request-bytes", "1572864", Kind::kInt, Support::kSupported},
    {"max-concurrent-streams", "4294967295", Kind::kInt, Support::kSupported},
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
    {"bcrypt-cost", "10", Kind::kInt, Support::kDefaultOnly},
    {"auth-token-ttl", "300", Kind::kInt, Support::kDefaultOnly},
    {"enable-pprof", "false", Kind::kBool, Support::kDefaultOnly},
    {"metrics", "basic", Kind::kString, Support::kDefaultOnly},
    {"listen-metrics-urls", "", Kind::kString, Support::kSupported},
    {"logger", "capnslog", Kind::kString, Support::kSupported},
    {"log-outputs", "default", Kind::kString, Support::kSupported},
    {"log-level", "info", Kind::kString, Support::kSupported},
    {"proxy", "off", Kind::kString, Support::kDefaultOnly},
    {"proxy-failure-wait", "5000", Kind::kInt, Support::kDefaultOnly},
    {"proxy-refresh-interval", "30000", Kind::kInt, Support::kDefaultOnly},
    {"proxy-dial-timeout", "1000", Kind::kInt, Support::kDefaultOnly},
    {"proxy-write-timeout", "5000", Kind::kInt, Support::kDefaultOnly},
    {"proxy-read-timeout", "0", Kind::kInt, Support::kDefaultOnly},
    {"experimental-initial-corrupt-check", "false", Kind::kBool, Support::kDefaultOnly},
    {"experimental-corrupt-check-time", "0s", Kind::kDuration, Support::kDefaultOnly},
    {"experimental-enable-v2v3", "", Kind::kString, Support::kDefaultOnly},
    {"experimental-backend-bbolt-freelist-type", "array", Kind::kString, Support::kSupported},
    {"experimental-enable-lease-checkpoint", "false", Kind::kBool, Support::kDefaultOnly},
    {"experimental-compaction-batch-limit", "1000", Kind::kInt, Support::kSupported},
    {"experimental-peer-skip-client-san-verification", "false", Kind::kBool, Support::kDefaultOnly},
    {"experimental-watch-progress-notify-interval", "10m", Kind::kDuration, Support::kSupported},
    {"experimental-warning-apply-duration", "100ms", Kind::kDuration, Support::kSupported},
    {"force-new-cluster", "false", Kind::kBool, Support::kDefaultOnly},
    {"debug", "false", Kind::kBool, Support::kSupported},
    {"log-package-levels", "", Kind::kString, Support::kDefaultOnly},
    {"enable-grpc-gateway", "true", Kind::kBool, Support::kSupported},
    {"config-file", "", Kind::kString, Support::kDefaultOnly},
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
  return static_cast<int64_t>(total_ms);
}

std::string EnvName(absl::string_view flag) {
  return "ETCD_" + absl::AsciiStrToUpper(absl::StrReplaceAll(flag, {{"-", "_"}}));
}

absl::Status ValidateValue(const FlagSpec& f, const std::string& value, bool from_env) {
  std::string where = from_env ? absl::StrCat("environment variable ", EnvName(f.name))
                               : absl::StrCat("flag -", f.name);
  switch (f.kind) {
    case Kind::kBool:
      if (!ParseBool(value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid boolean value \"", value, "\" for ", where, ": parse error"));
      }
      break;
    case Kind::kInt: {
      int64_t n;
      if (!absl::SimpleAtoi(value, &n)) {
        uint64_t u;
        if (!absl::SimpleAtoi(value, &u)) {
          return absl::InvalidArgumentError(
              absl::StrCat("invalid value \"", value, "\" for ", where, ": parse error"));
        }
      }
      break;
    }
    case Kind::kDuration:
      if (!ParseDurationMs(value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid value \"", value, "\" for ", where, ": parse error"));
      }
      break;
    case Kind::kString:
      break;
  }
  return absl::OkStatus();
}

// Whether `value` means the same as the flag's default.
bool IsDefault(const FlagSpec& f, const std::string& value) {
  if (f.kind == Kind::kBool) return ParseBool(value) == ParseBool(f.default_value);
  if (f.kind == Kind::kDuration) return ParseDurationMs(value) == ParseDurationMs(f.default_value);
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
    ETCDPP_RETURN_IF_ERROR(ValidateValue(*f, *value, false));
    values[std::string(f->name)] = *value;
  }

  // Environment: ETCD_<FLAG> for flags not given on the command line.
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
      result.warnings.push_back(absl::StrCat("recognized environment variable ", key,
                                             ", but unused: shadowed by corresponding flag"));
      continue;
    }
    ETCDPP_RETURN_IF_ERROR(ValidateValue(*match, val, true));
    values[std::string(match->name)] = val;
    from_env[std::string(match->name)] = true;
  }

  auto get = [&](absl::string_view name) -> std::string {
    auto it = values.find(name);
    if (it != values.end()) return it->second;
    return std::string(FindFlag(name)->default_value);
  };
  auto get_bool = [&](absl::string_view name) { return ParseBool(get(name)).value_or(false); };

  result.show_help = get_bool("help") || get_bool("h");
  result.show_version = get_bool("version");
  if (result.show_help || result.show_version) return result;

  for (const auto& [name, value] : values) {
    const FlagSpec* f = FindFlag(name);
    if (f->support == Support::kDefaultOnly && !IsDefault(*f, value)) {
      return absl::UnimplementedError(absl::StrCat("--", name, "=", value,
                                                   ": this etcd flag is not supported by etcdpp yet"));
    }
  }

  ServerConfig& c = result.config;
  c.name = get("name");
  c.data_dir = values.count("data-dir") ? get("data-dir") : c.name + ".etcd";
  if (c.data_dir.empty()) c.data_dir = c.name + ".etcd";
  ETCDPP_ASSIGN_OR_RETURN(c.listen_client_urls, ParseUrls(get("listen-client-urls")));
  ETCDPP_ASSIGN_OR_RETURN(c.advertise_client_urls, ParseUrls(get("advertise-client-urls")));
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
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid value \"", c.initial_cluster_state,
        "\" for flag -initial-cluster-state: valid values are \"new\", \"existing\""));
  }
  c.initial_cluster_token = get("initial-cluster-token");
  c.heartbeat_ms = ToInt(get("heartbeat-interval"));
  c.election_ms = ToInt(get("election-timeout"));
  if (c.heartbeat_ms <= 0) {
    return absl::InvalidArgumentError("--heartbeat-interval must be greater than 0");
  }
  if (5 * c.heartbeat_ms > c.election_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--election-timeout[", c.election_ms, "ms] should be at least as 5 times as --heartbeat-interval[",
        c.heartbeat_ms, "ms]"));
  }
  if (c.election_ms > 50000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--election-timeout[", c.election_ms, "ms] is too long, and should be set less than 50000ms"));
  }
  c.snapshot_count = static_cast<uint64_t>(ToInt(get("snapshot-count")));
  c.max_wals = static_cast<int>(ToInt(get("max-wals")));
  if (c.max_wals < 0) return absl::InvalidArgumentError("--max-wals must not be negative");
  c.max_request_bytes = ToInt(get("max-request-bytes"));
  c.max_txn_ops = ToInt(get("max-txn-ops"));
  c.quota_backend_bytes = ToInt(get("quota-backend-bytes"));
  c.max_concurrent_streams = static_cast<uint32_t>(ToInt(get("max-concurrent-streams")));
  c.grpc_keepalive_min_time_ms = *ParseDurationMs(get("grpc-keepalive-min-time"));
  c.grpc_keepalive_interval_ms = *ParseDurationMs(get("grpc-keepalive-interval"));
  c.grpc_keepalive_timeout_ms = *ParseDurationMs(get("grpc-keepalive-timeout"));
  if (int64_t ms = *ParseDurationMs(get("experimental-watch-progress-notify-interval")); ms > 0) {
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
  return result;
}

}  // namespace etcdpp::server
