#include "server/config.h"

#include <gtest/gtest.h>

namespace etcdpp::server {
namespace {

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
  auto r = Parse({"--name", "flag"}, {"ETCD_NAME=env", "ETCD_MAX_TXN_OPS=7", "ETCD_BOGUS=1",
                                      "PATH=/bin"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.name, "flag");  // the flag wins
  EXPECT_EQ(r->config.max_txn_ops, 7);
  ASSERT_EQ(r->warnings.size(), 2u);
  EXPECT_EQ(r->warnings[0], "recognized environment variable ETCD_NAME, but unused: shadowed by corresponding flag");
  EXPECT_EQ(r->warnings[1], "unrecognized environment variable ETCD_BOGUS=1");
  EXPECT_FALSE(Parse({}, {"ETCD_MAX_REQUEST_BYTES=abc"}).ok());
}

TEST(ConfigTest, TimingValidatedAsEtcd) {
  EXPECT_EQ(Parse({"--heartbeat-interval", "300"}).status().message(),
            "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]");
  EXPECT_FALSE(Parse({"--election-timeout", "60000"}).ok());
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

}  // namespace
}  // namespace etcdpp::server
