// Server configuration from etcd's flags and ETCD_* environment variables.
//
// Every etcd 3.4 server flag is recognised. A flag whose feature etcdpp does
// not have yet is accepted only at its default; any other value fails fast
// with a message naming it, so an operator learns at once what is missing
// (never silently ignored). Parsing follows Go's flag package as etcd uses
// it: -flag / --flag, -flag=value, -flag value (non-boolean), and a boolean
// flag given alone means true. Command-line flags win over the environment
// (and, as in etcd 3.4, an ETCD_* variable that a flag shadows is an error).
//
// --config-file (or ETCD_CONFIG_FILE) names etcd's YAML configuration file;
// as in etcd 3.4 that file is then the only source: every other flag and
// environment variable is ignored (flags are still checked for syntax).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace etcdpp::server {

// A parsed URL such as http://127.0.0.1:2379 or http://[::1]:2379.
struct Url {
  std::string scheme;  // "http" (https once TLS exists)
  std::string host;    // without brackets
  int port = 0;
  std::string original;
  // "host:port" with IPv6 hosts bracketed, for listening and dialing.
  std::string HostPort() const;
};

absl::StatusOr<Url> ParseUrl(const std::string& text);
absl::StatusOr<std::vector<Url>> ParseUrls(const std::string& comma_separated);

struct ServerConfig {
  std::string name = "default";
  std::string data_dir;
  std::vector<Url> listen_client_urls;
  // --listen-client-http-urls (etcd 3.5): HTTP (gateway, /health, /metrics)
  // here, and gRPC alone on the client URLs. Empty: both on the client URLs.
  std::vector<Url> listen_client_http_urls;
  // Extra HTTP ports serving /metrics and /health only (--listen-metrics-urls).
  std::vector<Url> listen_metrics_urls;
  // The JSON gateway (/v3/...) on the client port (--enable-grpc-gateway).
  bool enable_grpc_gateway = true;
  std::vector<Url> advertise_client_urls;
  std::vector<Url> listen_peer_urls;
  std::vector<Url> initial_advertise_peer_urls;
  // name -> peer URLs, from --initial-cluster.
  std::map<std::string, std::vector<std::string>> initial_cluster;
  std::string initial_cluster_state = "new";  // "new" or "existing"
  std::string initial_cluster_token = "etcd-cluster";
  // --force-new-cluster: start as a one-member cluster from the existing data.
  bool force_new_cluster = false;
  // --strict-reconfig-check: reject member changes that would lose quorum.
  bool strict_reconfig_check = true;
  // --pre-vote: raft's pre-vote phase.
  bool pre_vote = false;
  // --initial-election-tick-advance: fast-forward election ticks at boot.
  bool initial_election_tick_advance = true;

  int64_t heartbeat_ms = 100;
  int64_t election_ms = 1000;
  uint64_t snapshot_count = 100000;
  int max_wals = 5;  // WAL segments kept beyond what snapshots cover; 0 = keep all
  int max_snapshots = 5;  // snapshot files kept; 0 = keep all (--max-snapshots)
  int64_t max_request_bytes = 1572864;
  int64_t max_txn_ops = 128;
  int64_t quota_backend_bytes = 0;  // 0 = etcd's default (2 GiB)
  uint32_t max_concurrent_streams = 0xffffffffu;
  int64_t grpc_keepalive_min_time_ms = 5000;
  int64_t grpc_keepalive_interval_ms = 2 * 3600 * 1000;
  int64_t grpc_keepalive_timeout_ms = 20000;
  // --experimental-watch-progress-notify-interval. As etcd: 0 keeps the
  // default (10 min); below 100 ms is raised to 100 ms.
  int64_t watch_progress_notify_interval_ms = 10 * 60 * 1000;
  // --experimental-enable-lease-checkpoint.
  bool enable_lease_checkpoint = false;

  std::string log_level = "info";
  std::string log_outputs = "default";

  // The quota in force: quota_backend_bytes, or 2 GiB when 0 (etcd's default).
  int64_t QuotaBytes() const;
};

struct ParseResult {
  ServerConfig config;
  bool show_version = false;
  bool show_help = false;
  std::vector<std::string> warnings;  // to log once logging is set up
  std::vector<std::string> infos;     // likewise, at info level
  // The configuration file the values came from ("" when flags/environment).
  std::string config_file;
};

// Parses argv (without argv[0]) and the environment (NAME=VALUE strings),
// and the file named by --config-file / ETCD_CONFIG_FILE if any.
// Errors carry the text to print, e.g. "flag provided but not defined: -foo".
// Status codes follow etcd's exit codes: kInvalidArgument for command-line
// syntax errors (etcd prints the usage and exits 2); every other error
// (environment, config file, validation; kFailedPrecondition, or
// kUnimplemented for a feature etcdpp lacks) exits 1.
absl::StatusOr<ParseResult> ParseFlags(const std::vector<std::string>& args,
                                       const std::vector<std::string>& environ);

// The usage text printed for --help and after a flag error.
std::string UsageText();

}  // namespace etcdpp::server
