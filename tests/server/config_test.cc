#include "server/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace etcdpp::server {
namespace {

using absl::StatusCode;

absl::StatusOr<ParseResult> Parse(std::vector<std::string> args, std::vector<std::string> env = {}) {
  return ParseFlags(args, env);
}

TEST(ConfigTest, DefaultsAreEtcds) {
  auto r = Parse({});
  ASSERT_TRUE(r.ok()) << r.status();
  const ServerConfig& c = r->config;
  EXPECT_EQ(c.name, "default");
  EXPECT_EQ(c.data_dir, "default.etcd");
  ASSERT_EQ(c.listen_client_urls.size(), 1u);
  EXPECT_EQ(c.listen_client_urls[0].HostPort(), "localhost:2379");
  EXPECT_EQ(c.initial_cluster.at("default"), std::vector<std::string>{"http://localhost:2380"});
  EXPECT_EQ(c.max_request_bytes, 1572864);
  EXPECT_EQ(c.max_txn_ops, 128);
  EXPECT_EQ(c.heartbeat_ms, 100);
  EXPECT_EQ(c.election_ms, 1000);
  EXPECT_EQ(c.QuotaBytes(), int64_t{2} << 30);
}

TEST(ConfigTest, GoFlagSyntaxes) {
  auto r = Parse({"-name", "n1", "--data-dir=/tmp/x", "--max-txn-ops", "3", "--debug"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.name, "n1");
  EXPECT_EQ(r->config.data_dir, "/tmp/x");
  EXPECT_EQ(r->config.max_txn_ops, 3);
  EXPECT_EQ(r->config.log_level, "debug");
  // data-dir defaults to ${name}.etcd.
  EXPECT_EQ(Parse({"--name", "abc"})->config.data_dir, "abc.etcd");
}

TEST(ConfigTest, UnknownFlagIsAnError) {
  auto r = Parse({"--foo"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "flag provided but not defined: -foo");
  EXPECT_EQ(Parse({"--name"}).status().message(), "flag needs an argument: -name");
  EXPECT_EQ(Parse({"stray"}).status().message(), "'stray' is not a valid flag");
  EXPECT_EQ(Parse({"--max-txn-ops", "x"}).status().message(),
            "invalid value \"x\" for flag -max-txn-ops: parse error");
  EXPECT_EQ(Parse({"--debug=maybe"}).status().message(),
            "invalid boolean value \"maybe\" for flag -debug: parse error");
}

TEST(ConfigTest, UnsupportedFeatureFailsFastUnlessDefault) {
  auto r = Parse({"--cert-file", "/x.pem"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("--cert-file"), absl::string_view::npos);
  // The default value of an unsupported flag is fine (tooling passes them).
  EXPECT_TRUE(Parse({"--enable-v2=false", "--max-wals", "5", "--auto-tls=false"}).ok());
}

TEST(ConfigTest, EnvironmentVariables) {
  auto r = Parse({"--name", "flag"}, {"ETCD_MAX_TXN_OPS=7", "ETCD_BOGUS=1", "PATH=/bin",
                                      "ETCD_DATA_DIR="});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.name, "flag");
  EXPECT_EQ(r->config.max_txn_ops, 7);
  ASSERT_EQ(r->warnings.size(), 2u);
  EXPECT_EQ(r->warnings[0], "unrecognized environment variable ETCD_BOGUS=1");
  // etcd uses only non-empty values.
  EXPECT_EQ(r->warnings[1], "unrecognized environment variable ETCD_DATA_DIR=");
  EXPECT_EQ(r->config.data_dir, "flag.etcd");
}

TEST(ConfigTest, EnvironmentShadowedByFlagIsFatalAsInEtcd34) {
  // etcd 3.4.23: "C | pkg/flags: conflicting environment variable ..." and exit 1.
  auto r = Parse({"--name", "flag"}, {"ETCD_NAME=env"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(),
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding "
            "command-line flag (either unset environment variable or disable flag)");
}

TEST(ConfigTest, EnvironmentValueErrorsAreEtcds) {
  // etcd: "error verifying flags, invalid value "abc" for ETCD_MAX_TXN_OPS: parse error", exit 1.
  auto r = Parse({}, {"ETCD_MAX_TXN_OPS=abc"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "invalid value \"abc\" for ETCD_MAX_TXN_OPS: parse error");
  EXPECT_EQ(Parse({}, {"ETCD_DEBUG=maybe"}).status().message(),
            "invalid value \"maybe\" for ETCD_DEBUG: parse error");
  EXPECT_EQ(Parse({}, {"ETCD_INITIAL_CLUSTER_STATE=foo"}).status().message(),
            "invalid value \"foo\" for ETCD_INITIAL_CLUSTER_STATE: invalid value");
  EXPECT_FALSE(Parse({}, {"ETCD_MAX_REQUEST_BYTES=abc"}).ok());
}

TEST(ConfigTest, NewSupportedFlags) {
  auto d = Parse({});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->config.force_new_cluster);
  EXPECT_TRUE(d->config.strict_reconfig_check);
  EXPECT_FALSE(d->config.pre_vote);
  EXPECT_TRUE(d->config.initial_election_tick_advance);
  EXPECT_EQ(d->config.max_snapshots, 5);
  EXPECT_FALSE(d->config.enable_lease_checkpoint);
  EXPECT_EQ(d->config.initial_cluster_state, "new");

  auto r = Parse({"--force-new-cluster", "--strict-reconfig-check=false", "-pre-vote",
                  "--initial-election-tick-advance=false", "--max-snapshots", "0",
                  "--experimental-enable-lease-checkpoint", "--initial-cluster-state=existing"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->config.force_new_cluster);
  EXPECT_FALSE(r->config.strict_reconfig_check);
  EXPECT_TRUE(r->config.pre_vote);
  EXPECT_FALSE(r->config.initial_election_tick_advance);
  EXPECT_EQ(r->config.max_snapshots, 0);
  EXPECT_TRUE(r->config.enable_lease_checkpoint);
  EXPECT_EQ(r->config.initial_cluster_state, "existing");

  auto e = Parse({}, {"ETCD_FORCE_NEW_CLUSTER=true", "ETCD_STRICT_RECONFIG_CHECK=false",
                      "ETCD_PRE_VOTE=1", "ETCD_INITIAL_ELECTION_TICK_ADVANCE=false",
                      "ETCD_MAX_SNAPSHOTS=9", "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT=true",
                      "ETCD_INITIAL_CLUSTER_STATE=existing"});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->config.force_new_cluster);
  EXPECT_FALSE(e->config.strict_reconfig_check);
  EXPECT_TRUE(e->config.pre_vote);
  EXPECT_FALSE(e->config.initial_election_tick_advance);
  EXPECT_EQ(e->config.max_snapshots, 9);
  EXPECT_TRUE(e->config.enable_lease_checkpoint);
  EXPECT_EQ(e->config.initial_cluster_state, "existing");
  EXPECT_TRUE(e->warnings.empty());

  // Go's flag.Uint: a sign is a parse error.
  EXPECT_EQ(Parse({"--max-snapshots", "-1"}).status().message(),
            "invalid value \"-1\" for flag -max-snapshots: parse error");
  // Flags etcd 3.4.23 has without documenting them are recognised too.
  EXPECT_TRUE(Parse({"--unsafe-no-fsync=false", "--experimental-enable-lease-checkpoint-persist=false",
                     "--log-output", "default"}).ok());
  EXPECT_EQ(Parse({"--unsafe-no-fsync"}).status().code(), StatusCode::kUnimplemented);
}

TEST(ConfigTest, InitialClusterStateAsEtcd) {
  // etcd 3.4.23 prints this, then the usage, and exits 2.
  auto r = Parse({"--initial-cluster-state", "foo"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "invalid value \"foo\" for flag -initial-cluster-state: invalid value");
  EXPECT_EQ(Parse({"--proxy", "bogus"}).status().message(),
            "invalid value \"bogus\" for flag -proxy: invalid value");
}

TEST(ConfigTest, TimingValidatedAsEtcd) {
  // Texts as etcd 3.4.23 prints them ("error verifying flags, <text>. See
  // 'etcd --help'."), all exit 1 (not a flag syntax error).
  auto r = Parse({"--heartbeat-interval", "300"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(),
            "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]");
  EXPECT_EQ(Parse({"--election-timeout", "100", "--heartbeat-interval", "100"}).status().message(),
            "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]");
  r = Parse({"--election-timeout", "60000"});
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(),
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms");
  EXPECT_TRUE(Parse({"--election-timeout", "50000"}).ok());
  EXPECT_EQ(Parse({"--heartbeat-interval", "0"}).status().message(),
            "--heartbeat-interval must be >0 (set to 0ms)");
  EXPECT_EQ(Parse({"--election-timeout", "0"}).status().message(),
            "--election-timeout must be >0 (set to 0ms)");
  EXPECT_EQ(Parse({"--heartbeat-interval", "-1"}).status().message(),
            "invalid value \"-1\" for flag -heartbeat-interval: parse error");
  EXPECT_EQ(Parse({}, {"ETCD_ELECTION_TIMEOUT=100"}).status().message(),
            "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]");
  EXPECT_TRUE(Parse({"--heartbeat-interval", "50", "--election-timeout", "500"}).ok());
}

TEST(ConfigTest, Urls) {
  auto u = ParseUrl("http://[::1]:2379");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->HostPort(), "[::1]:2379");
  EXPECT_EQ(ParseUrl("http://127.0.0.1:2379/")->HostPort(), "127.0.0.1:2379");
  EXPECT_FALSE(ParseUrl("127.0.0.1:2379").ok());
  EXPECT_FALSE(ParseUrl("http://127.0.0.1").ok());
  EXPECT_FALSE(ParseUrl("ftp://127.0.0.1:1").ok());
  EXPECT_EQ(ParseUrl("https://127.0.0.1:1").status().code(), absl::StatusCode::kUnimplemented);
  auto many = ParseUrls("http://127.0.0.1:1, http://[::1]:2");
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(many->size(), 2u);
}

TEST(ConfigTest, InitialCluster) {
  auto r = Parse({"--name", "a", "--initial-cluster", "a=http://127.0.0.1:1,a=http://127.0.0.1:2"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->config.initial_cluster.at("a").size(), 2u);
  EXPECT_FALSE(Parse({"--initial-cluster", "nourl"}).ok());
  EXPECT_FALSE(Parse({"--initial-cluster-state", "old"}).ok());
}

// ---------------------------------------------------------------------------
// --config-file: etcd 3.4's YAML configuration file.

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/etcdpp-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& f : files_) std::remove(f.c_str());
    rmdir(dir_.c_str());
  }
  std::string Write(const std::string& content, const std::string& name = "etcd.yaml") {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    files_.push_back(path);
    return path;
  }
  absl::StatusOr<ParseResult> ParseFile(const std::string& content,
                                        std::vector<std::string> more_args = {},
                                        std::vector<std::string> env = {}) {
    path_ = Write(content);
    std::vector<std::string> args = {"--config-file", path_};
    args.insert(args.end(), more_args.begin(), more_args.end());
    return ParseFlags(args, env);
  }
  std::string dir_;
  std::string path_;
  std::vector<std::string> files_;
};

TEST_F(ConfigFileTest, EveryValueType) {
  auto r = ParseFile(R"(# etcd.conf.yml, as in etcd's docs
---
name: 'infra1'   # a comment after a quoted value
data-dir: "/var/lib/etcd pp"
wal-dir:
snapshot-count: 10000
heartbeat-interval: 50
election-timeout: 0x3e8        # YAML 1.1 ints: hex too
max-snapshots: 0
max-wals: 3
quota-backend-bytes: 8589934592
max-txn-ops: 256.0
max-request-bytes: +2097152
max-concurrent-streams: 100
listen-peer-urls: http://127.0.0.1:12380
listen-client-urls: http://127.0.0.1:12379,http://[::1]:12379
initial-advertise-peer-urls: http://127.0.0.1:12380
advertise-client-urls: "http://127.0.0.1:12379"
listen-metrics-urls: ''
discovery:
initial-cluster: infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380
initial-cluster-token: "etcd-cluster-1"
initial-cluster-state: 'existing'
strict-reconfig-check: off
enable-v2: false
pre-vote: yes
initial-election-tick-advance: False
force-new-cluster: true
experimental-enable-lease-checkpoint: TRUE
grpc-keepalive-min-time: 3000000000
grpc-keepalive-interval: ~
grpc-keepalive-timeout: null
experimental-watch-progress-notify-interval: 60000000000
client-transport-security:
  # TLS is not in etcdpp yet: etcd's defaults only.
  cert-file: ''
  key-file:
  client-cert-auth: false
  trusted-ca-file: ""
  auto-tls: false
peer-transport-security:
    client-cert-auth: false
    auto-tls: no
log-level: debug
logger: zap
log-outputs: [stderr]
enable-grpc-gateway: false
Auto-Compaction-Mode: periodic      # Go's encoding/json matches keys case-insensitively
proxy: 'off'
proxy-dial-timeout: 1000
some-future-key: {}
...
this: is after the end of the document
)");
  ASSERT_TRUE(r.ok()) << r.status();
  const ServerConfig& c = r->config;
  EXPECT_EQ(r->config_file, path_);
  EXPECT_EQ(c.name, "infra1");
  EXPECT_EQ(c.data_dir, "/var/lib/etcd pp");
  EXPECT_EQ(c.snapshot_count, 10000u);
  EXPECT_EQ(c.heartbeat_ms, 50);
  EXPECT_EQ(c.election_ms, 1000);
  EXPECT_EQ(c.max_snapshots, 0);
  EXPECT_EQ(c.max_wals, 3);
  EXPECT_EQ(c.quota_backend_bytes, int64_t{8} << 30);
  EXPECT_EQ(c.max_txn_ops, 256);
  EXPECT_EQ(c.max_request_bytes, 2097152);
  EXPECT_EQ(c.max_concurrent_streams, 100u);
  ASSERT_EQ(c.listen_client_urls.size(), 2u);
  EXPECT_EQ(c.listen_client_urls[0].HostPort(), "127.0.0.1:12379");
  EXPECT_EQ(c.listen_client_urls[1].HostPort(), "[::1]:12379");
  ASSERT_EQ(c.advertise_client_urls.size(), 1u);
  EXPECT_EQ(c.advertise_client_urls[0].original, "http://127.0.0.1:12379");
  EXPECT_TRUE(c.listen_metrics_urls.empty());
  EXPECT_EQ(c.listen_peer_urls[0].HostPort(), "127.0.0.1:12380");
  EXPECT_EQ(c.initial_advertise_peer_urls[0].HostPort(), "127.0.0.1:12380");
  EXPECT_EQ(c.initial_cluster.size(), 2u);
  EXPECT_EQ(c.initial_cluster.at("infra2"), std::vector<std::string>{"http://127.0.0.1:22380"});
  EXPECT_EQ(c.initial_cluster_token, "etcd-cluster-1");
  EXPECT_EQ(c.initial_cluster_state, "existing");
  EXPECT_FALSE(c.strict_reconfig_check);
  EXPECT_TRUE(c.pre_vote);
  EXPECT_FALSE(c.initial_election_tick_advance);
  EXPECT_TRUE(c.force_new_cluster);
  EXPECT_TRUE(c.enable_lease_checkpoint);
  EXPECT_EQ(c.grpc_keepalive_min_time_ms, 3000);  // YAML durations are nanoseconds
  EXPECT_EQ(c.grpc_keepalive_interval_ms, 2 * 3600 * 1000);  // null keeps the default
  EXPECT_EQ(c.grpc_keepalive_timeout_ms, 20000);
  EXPECT_EQ(c.watch_progress_notify_interval_ms, 60000);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_outputs, "stderr");
  EXPECT_FALSE(c.enable_grpc_gateway);
  ASSERT_EQ(r->infos.size(), 1u);
  EXPECT_EQ(r->infos[0], "Loading server configuration from \"" + path_ +
                             "\". Other configuration command line flags and environment "
                             "variables will be ignored if provided.");
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_EQ(r->warnings[0],
            "config file " + path_ + " line 51: unknown key \"some-future-key\" ignored");
}

TEST_F(ConfigFileTest, BlockSequencesAndDefaults) {
  auto r = ParseFile("log-outputs:\n- stdout\nname: n1\n\n\n# only comments\nlog-output:\n  - default\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.log_outputs, "stdout");
  EXPECT_EQ(r->config.name, "n1");
  EXPECT_EQ(r->config.data_dir, "n1.etcd");  // etcd: ${name}.etcd
  EXPECT_EQ(r->config.initial_cluster.at("n1"), std::vector<std::string>{"http://localhost:2380"});
  EXPECT_EQ(r->config.heartbeat_ms, 100);
  EXPECT_EQ(r->config.election_ms, 1000);
  EXPECT_TRUE(r->config.strict_reconfig_check);
  EXPECT_TRUE(r->warnings.empty());
  // An empty file (or only comments) is etcd's defaults.
  auto e = ParseFile("# nothing here\n");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->config.name, "default");
  EXPECT_EQ(e->config.listen_client_urls[0].HostPort(), "localhost:2379");
  // Duplicate keys: the last one wins (as yaml.v2 + encoding/json).
  auto d = ParseFile("heartbeat-interval: 300\nheartbeat-interval: 100\n");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->config.heartbeat_ms, 100);
  // Flow sequences: quoted items, a trailing comma, empty; escapes in "...".
  auto f = ParseFile("log-outputs: ['stdout',]  # c\nname: \"caf\\u00e9 \\\"x\\\"\"\n"
                     "cipher-suites: []\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->config.log_outputs, "stdout");
  EXPECT_EQ(f->config.name, "caf\xc3\xa9 \"x\"");
  // Windows line endings.
  auto w = ParseFile("name: crlf\r\npre-vote: true\r\n");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->config.name, "crlf");
  EXPECT_TRUE(w->config.pre_vote);
}

TEST_F(ConfigFileTest, FileIsTheOnlySource) {
  // As etcd 3.4: other flags and ETCD_* variables are ignored (not even a
  // shadowing conflict), though flags are still parsed.
  auto r = ParseFile("name: fromfile\n",
                     {"--name", "fromflag", "--max-txn-ops", "3", "--cert-file", "/x.pem"},
                     {"ETCD_MAX_REQUEST_BYTES=7", "ETCD_NAME=env", "ETCD_BOGUS=1"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.name, "fromfile");
  EXPECT_EQ(r->config.max_txn_ops, 128);
  EXPECT_EQ(r->config.max_request_bytes, 1572864);
  EXPECT_TRUE(r->warnings.empty());
  EXPECT_EQ(ParseFile("name: a\n", {"--foo"}).status().message(),
            "flag provided but not defined: -foo");
  EXPECT_EQ(ParseFile("name: a\n", {"--max-txn-ops", "x"}).status().message(),
            "invalid value \"x\" for flag -max-txn-ops: parse error");
  EXPECT_TRUE(ParseFile("name: a\n", {"--version"})->show_version);
  // A file that would fail still fails with --election-timeout on the command line.
  EXPECT_EQ(ParseFile("election-timeout: 100\n", {"--election-timeout", "1000"}).status().message(),
            "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]");

  // ETCD_CONFIG_FILE names the file when --config-file is absent.
  std::string path = Write("name: fromenvfile\n", "env.yaml");
  auto e = ParseFlags({"--name", "ignored"}, {"ETCD_CONFIG_FILE=" + path, "ETCD_MAX_TXN_OPS=3"});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->config.name, "fromenvfile");
  EXPECT_EQ(e->config.max_txn_ops, 128);
  EXPECT_EQ(e->config_file, path);
  // --config-file wins over ETCD_CONFIG_FILE.
  std::string other = Write("name: fromflagfile\n", "flag.yaml");
  auto f = ParseFlags({"--config-file", other}, {"ETCD_CONFIG_FILE=" + path});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->config.name, "fromflagfile");
}

TEST_F(ConfigFileTest, ValidationAsEtcd) {
  // etcd 3.4.23 with the same file: "error verifying flags, <text>. See 'etcd --help'.", exit 1.
  auto r = ParseFile("initial-cluster-state: foo\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "unexpected clusterState \"foo\"");
  EXPECT_TRUE(ParseFile("initial-cluster-state: ''\n").ok());  // "" means "new"
  r = ParseFile("election-timeout: 100\n");
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(),
            "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]");
  EXPECT_EQ(ParseFile("election-timeout: 50001\n").status().message(),
            "--election-timeout[50001ms] is too long, and should be set less than 50000ms");
  EXPECT_EQ(ParseFile("heartbeat-interval: 0\n").status().message(),
            "--heartbeat-interval must be >0 (set to 0ms)");
  // A bad URL exits 1 from a file (not a flag syntax error).
  EXPECT_EQ(ParseFile("listen-client-urls: 127.0.0.1:2379\n").status().code(),
            StatusCode::kFailedPrecondition);
  auto missing = ParseFlags({"--config-file", dir_ + "/nope.yaml"}, {});
  EXPECT_EQ(missing.status().message(), "open " + dir_ + "/nope.yaml: no such file or directory");
  EXPECT_EQ(missing.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ConfigFileTest, UnsupportedFeatureFailsLikeTheFlag) {
  auto r = ParseFile("client-transport-security:\n  cert-file: /x.pem\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(r.status().message(), "--cert-file=/x.pem: this etcd flag is not supported by etcdpp yet");
  EXPECT_EQ(ParseFile("peer-transport-security:\n  auto-tls: true\n").status().message(),
            "--peer-auto-tls=true: this etcd flag is not supported by etcdpp yet");
  EXPECT_EQ(ParseFile("enable-v2: true\n").status().message(),
            "--enable-v2=true: this etcd flag is not supported by etcdpp yet");
  EXPECT_EQ(ParseFile("auto-compaction-retention: '1'\n").status().message(),
            "--auto-compaction-retention=1: this etcd flag is not supported by etcdpp yet");
  // Unknown keys inside a TLS block are warnings, like top-level ones.
  auto w = ParseFile("client-transport-security:\n  cert-file: ''\n  bogus: 1\n");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->warnings.size(), 1u);
  EXPECT_EQ(w->warnings[0], "config file " + path_ +
                                " line 3: unknown key \"client-transport-security.bogus\" ignored");
}

TEST_F(ConfigFileTest, TypeErrorsAsEtcdWithFileAndLine) {
  auto expect = [&](const std::string& yaml, const std::string& etcd_text, int line) {
    auto r = ParseFile(yaml);
    ASSERT_FALSE(r.ok()) << yaml;
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << yaml;
    EXPECT_EQ(r.status().message(),
              "error unmarshaling JSON: while decoding JSON: json: " + etcd_text +
                  " (config file " + path_ + ", line " + std::to_string(line) + ")")
        << yaml;
  };
  // Each text is what etcd 3.4.23 prints for the same file.
  expect("name: a\nheartbeat-interval: \"100\"\n",
         "cannot unmarshal string into Go struct field configYAML.heartbeat-interval of type uint", 2);
  expect("grpc-keepalive-min-time: 5s\n",
         "cannot unmarshal string into Go struct field configYAML.grpc-keepalive-min-time of type "
         "time.Duration", 1);
  expect("name: 123\n", "cannot unmarshal number into Go struct field configYAML.name of type string", 1);
  expect("name: true\n", "cannot unmarshal bool into Go struct field configYAML.name of type string", 1);
  expect("strict-reconfig-check: \"true\"\n",
         "cannot unmarshal string into Go struct field configYAML.strict-reconfig-check of type bool", 1);
  expect("heartbeat-interval: -1\n",
         "cannot unmarshal number -1 into Go struct field configYAML.heartbeat-interval of type uint", 1);
  expect("heartbeat-interval: 100.5\n",
         "cannot unmarshal number 100.5 into Go struct field configYAML.heartbeat-interval of type uint", 1);
  expect("max-concurrent-streams: 4294967296\n",
         "cannot unmarshal number 4294967296 into Go struct field configYAML.max-concurrent-streams "
         "of type uint32", 1);
  expect("heartbeat-interval: [1]\n",
         "cannot unmarshal array into Go struct field configYAML.heartbeat-interval of type uint", 1);
  expect("name:\n  a: b\n", "cannot unmarshal object into Go struct field configYAML.name of type string", 2);
  expect("log-outputs: stderr\n",
         "cannot unmarshal string into Go struct field configYAML.log-outputs of type []string", 1);
  expect("log-outputs: [1]\n",
         "cannot unmarshal number into Go struct field configYAML.log-outputs of type string", 1);
  expect("client-transport-security: abc\n",
         "cannot unmarshal string into Go struct field configYAML.client-transport-security of type "
         "embed.securityConfig", 1);
  expect("client-transport-security:\n  cert-file: 12\n",
         "cannot unmarshal number into Go struct field "
         "securityConfig.client-transport-security.cert-file of type string", 2);
  expect("proxy-dial-timeout: x\n",
         "cannot unmarshal string into Go struct field configProxy.proxy-dial-timeout of type uint", 1);
  expect("- a\n- b\n", "cannot unmarshal array into Go value of type embed.configYAML", 1);
  expect("hello\n", "cannot unmarshal string into Go value of type embed.configYAML", 1);
}

TEST_F(ConfigFileTest, MalformedYamlNamesFileAndLine) {
  auto expect = [&](const std::string& yaml, const std::string& what) {
    auto r = ParseFile(yaml);
    ASSERT_FALSE(r.ok()) << yaml;
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << yaml;
    EXPECT_EQ(r.status().message(),
              "error converting YAML to JSON: yaml: " + what + " (config file " + path_ + ")")
        << yaml;
  };
  // The first three are etcd 3.4.23's own texts for these files.
  expect("name: a\n\tdata-dir: x\n", "line 2: found a tab character that violates indentation");
  expect("name: a\n data-dir: b\n", "line 2: mapping values are not allowed in this context");
  expect("name: a\n  foo: [\ndata-dir: x\n", "line 2: mapping values are not allowed in this context");
  expect("name a\ndata-dir: b\n", "line 2: mapping values are not allowed in this context");
  expect("# c\nname: a: b\n", "line 2: mapping values are not allowed in this context");
  expect("name: a\nbogus\n", "line 2: could not find expected ':'");
  expect("name: a\ndata-dir: \"/x\n",
         "line 2: found unexpected end of stream (unterminated quoted string; multi-line quoted "
         "strings are not supported)");
  expect("name: 'a' b\n", "line 1: did not find expected key");
  expect("log-outputs: [stderr\n",
         "line 1: did not find expected ',' or ']' (flow sequences must be on one line)");
  expect("name: &x a\n",
         "line 1: unsupported YAML construct '&' (anchors, aliases, tags and block scalars are "
         "not supported in etcdpp's config files)");
  expect("name: |\n  a\n",
         "line 1: unsupported YAML construct '|' (anchors, aliases, tags and block scalars are "
         "not supported in etcdpp's config files)");
  expect("name: a\n---\nname: b\n", "line 2: multiple YAML documents are not supported");
  expect("name: - x\n", "line 1: block sequence entries are not allowed in this context");
  expect("log-outputs: [,]\n", "line 1: did not find expected node content");
  expect("name: \"\\u00\"\n", "line 1: did not find expected hexdecimal number");
  expect("log-outputs:\n  - stderr\n  x: 1\n", "line 3: mapping values are not allowed in this context");
}

}  // namespace
}  // namespace etcdpp::server
