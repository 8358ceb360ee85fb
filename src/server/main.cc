// etcdpp: an etcd v3 API compatible key-value server. Takes etcd's flags and
// ETCD_* environment variables, prints etcd's well-known log lines (scripts
// wait for "ready to serve client requests"), stops cleanly on SIGTERM/SIGINT.
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <climits>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/debugging/failure_signal_handler.h"
#include "absl/debugging/symbolize.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_join.h"
#include "server/config.h"
#include "server/etcd_server.h"
#include "server/http/gateway.h"
#include "server/http/listener.h"
#include "server/http/metrics.h"
#include "server/ids.h"
#include "server/lease_service.h"
#include "server/services.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace etcdpp::server {
namespace {

void SetupLogging(const ServerConfig& c) {
  spdlog::sink_ptr sink;
  if (c.log_outputs == "stdout") {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  }
  spdlog::level::level_enum level = spdlog::level::info;
  if (c.log_level == "debug") level = spdlog::level::debug;
  else if (c.log_level == "warn") level = spdlog::level::warn;
  else if (c.log_level == "error" || c.log_level == "panic" || c.log_level == "fatal")
    level = spdlog::level::err;
  for (const char* name : {"etcdmain", "embed", "etcdserver", "mvcc", "wal", "raft", "rafthttp"}) {
    auto logger = std::make_shared<spdlog::logger>(name, sink);
    // etcd 3.4's capnslog layout: "2006-01-02 15:04:05.000000 I | pkg: msg".
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%f %L | %n: %v", spdlog::pattern_time_type::utc);
    logger->set_level(level);
    logger->flush_on(spdlog::level::trace);
    spdlog::register_logger(logger);
  }
  spdlog::set_default_logger(spdlog::get("etcdmain"));
}

// Go (and so etcd) spells system errors in lower case: "address already in use".
std::string GoErrorText(int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// Binds once to learn whether the address is free, so a busy port is a
// clear error naming it (gRPC only says that it failed).
absl::Status CheckListenable(const Url& url) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  std::string port = std::to_string(url.port);
  if (int rc = getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen tcp ", url.HostPort(), ": ", gai_strerror(rc)));
  }
  absl::Status st;
  int fd = socket(res->ai_family, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    st = absl::UnavailableError(
        absl::StrCat("listen tcp ", url.HostPort(), ": bind: ", GoErrorText(errno)));
  }
  close(fd);
  freeaddrinfo(res);
  return st;
}

int Fail(const std::string& msg) {
  spdlog::get("etcdmain")->critical("{}", msg);
  return 1;
}

int Run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  auto parsed = ParseFlags(args, env);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n", std::string(parsed.status().message()).c_str());
    if (parsed.status().code() == absl::StatusCode::kInvalidArgument) {
      std::fprintf(stderr, "%s", UsageText().c_str());
      return 2;
    }
    return 1;
  }
  if (parsed->show_help) {
    std::printf("%s", UsageText().c_str());
    return 0;
  }
  if (parsed->show_version) {
    std::printf("etcdpp Version: %s\netcd Version: %s (API compatible)\n", kEtcdppVersion,
                kEtcdApiVersion);
    return 0;
  }
  const ServerConfig& config = parsed->config;
  SetupLogging(config);
  auto log = spdlog::get("etcdmain");
  auto embed = spdlog::get("embed");
  for (const auto& i : parsed->infos) log->info("{}", i);
  for (const auto& w : parsed->warnings) log->warn("{}", w);
  log->info("etcdpp Version: {} (etcd API {})", kEtcdppVersion, kEtcdApiVersion);
  embed->info("name = {}", config.name);
  embed->info("data dir = {}", config.data_dir);
  embed->info("member dir = {}/member", config.data_dir);
  embed->info("heartbeat = {}ms", config.heartbeat_ms);
  embed->info("election = {}ms", config.election_ms);
  std::vector<std::string> adv;
  for (const auto& u : config.advertise_client_urls) adv.push_back(u.original);
  embed->info("advertise client URLs = {}", absl::StrJoin(adv, ","));

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  for (const auto& u : config.listen_client_urls) {
    if (auto st = CheckListenable(u); !st.ok()) return Fail(std::string(st.message()));
  }
  for (const auto& u : config.listen_peer_urls) {
    if (auto st = CheckListenable(u); !st.ok()) return Fail(std::string(st.message()));
  }

  auto server = EtcdServer::Start(config);
  if (!server.ok() && server.status().code() == absl::StatusCode::kAborted) {
    // Removed from the cluster: nothing to serve, not an error (etcd exits 0).
    spdlog::get("etcdserver")->error("{}", std::string(server.status().message()));
    spdlog::get("etcdserver")->error("the data-dir used by this member must be removed.");
    return 0;
  }
  if (!server.ok()) return Fail(std::string(server.status().message()));
  // Removed from the cluster: stop as if told to (etcd exits too).
  (*server)->set_on_removed([] { kill(getpid(), SIGTERM); });

  // The peer port: raft messages, snapshots, the member list for joiners.
  grpc::ServerBuilder peer_builder;
  peer_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  peer_builder.SetMaxReceiveMessageSize(INT_MAX);
  peer_builder.SetMaxSendMessageSize(INT_MAX);
  for (const auto& u : config.listen_peer_urls) {
    peer_builder.AddListeningPort(u.HostPort(), grpc::InsecureServerCredentials());
  }
  peer_builder.RegisterService((*server)->peer_service());
  std::unique_ptr<grpc::Service> peer_lease = MakePeerLeaseService(server->get());
  peer_builder.RegisterService(peer_lease.get());
  std::unique_ptr<grpc::Server> peer_server = peer_builder.BuildAndStart();
  if (!peer_server) return Fail("cannot start the peer server on --listen-peer-urls");
  for (const auto& u : config.listen_peer_urls) {
    embed->info("listening for peers on {}", u.original);
  }
  const bool published = (*server)->WaitReady();

  // One port, two protocols (etcd's cmux): the listener accepts, peeks at
  // the first bytes and hands HTTP/2 connections to gRPC, the rest to HTTP.
  // With --listen-client-http-urls, gRPC owns the client URLs alone and the
  // HTTP side listens elsewhere (etcd 3.5); by default they share a port.
  const bool split_http = !config.listen_client_http_urls.empty();
  for (const auto& u : config.listen_client_http_urls) {
    if (auto st = CheckListenable(u); !st.ok()) return Fail(std::string(st.message()));
  }
  auto listener = http::ClientListener::Listen(split_http ? config.listen_client_http_urls
                                                          : config.listen_client_urls);
  if (!listener.ok()) return Fail(std::string(listener.status().message()));
  std::unique_ptr<http::ClientListener> metrics_listener;
  if (!config.listen_metrics_urls.empty()) {
    auto ml = http::ClientListener::Listen(config.listen_metrics_urls);
    if (!ml.ok()) return Fail(std::string(ml.status().message()));
    metrics_listener = std::move(*ml);
  }

  grpc::ServerBuilder builder;
  // Never share a port silently with another process.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // etcd allows a request of max-request-bytes plus gRPC's overhead; the
  // services check that limit themselves (see kGrpcHardLimitSlackBytes).
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(
      INT_MAX, config.max_request_bytes + kGrpcOverheadBytes + kGrpcHardLimitSlackBytes)));
  builder.SetMaxSendMessageSize(INT_MAX);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(std::min<uint64_t>(INT_MAX, config.max_concurrent_streams)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(std::min<int64_t>(INT_MAX, config.grpc_keepalive_interval_ms)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(config.grpc_keepalive_timeout_ms));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(config.grpc_keepalive_min_time_ms));
  // grpc_server_handled_total & co. and etcd's gRPC byte counters (/metrics).
  builder.experimental().SetInterceptorCreators(http::MakeGrpcMetricsInterceptors());
  auto services = MakeClientServices(server->get());
  for (auto& s : services) builder.RegisterService(s.get());
  if (split_http) {
    for (const auto& u : config.listen_client_urls) {
      builder.AddListeningPort(u.HostPort(), grpc::InsecureServerCredentials());
    }
  }
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (!grpc_server) return Fail("cannot start the gRPC server on the client URLs");

  // HTTP/1.1 on the client port: the JSON gateway (calling the services
  // above through an in-process channel), /version, /health, /metrics.
  http::HttpLimits http_limits;
  // A JSON body carries the largest gRPC request base64-encoded.
  http_limits.max_body_bytes = 2 * (config.max_request_bytes + kGrpcOverheadBytes) + (1 << 20);
  http::HttpServer http_server(http_limits, /*max_connections=*/512);
  std::unique_ptr<http::Gateway> gateway;
  if (config.enable_grpc_gateway) {
    grpc::ChannelArguments channel_args;
    channel_args.SetMaxReceiveMessageSize(-1);
    channel_args.SetMaxSendMessageSize(-1);
    gateway = std::make_unique<http::Gateway>(grpc_server->InProcessChannel(channel_args));
    gateway->Install(&http_server);
  }
  http::InstallEndpoints(&http_server, server->get(), /*metrics_only=*/false);
  http::HttpServer metrics_http(http_limits, /*max_connections=*/64);
  http::InstallEndpoints(&metrics_http, server->get(), /*metrics_only=*/true);
  (*listener)->Start(split_http ? nullptr : grpc_server.get(), &http_server);
  if (metrics_listener) metrics_listener->Start(nullptr, &metrics_http);
  auto etcdserver_log = spdlog::get("etcdserver");
  if (published) {
    etcdserver_log->info("published {{Name:{} ClientURLs:[{}]}} to cluster {}", config.name,
                         absl::StrJoin(adv, " "), IdToHex((*server)->cluster_id()));
  } else {
    etcdserver_log->warn("publish error: {{Name:{} ClientURLs:[{}]}} not published to cluster {} "
                         "yet (no leader or no quorum); serving anyway, publishing goes on",
                         config.name, absl::StrJoin(adv, " "), IdToHex((*server)->cluster_id()));
  }
  embed->info("ready to serve client requests");
  for (const auto& u : config.listen_client_urls) {
    embed->info("serving insecure client requests on {}, this is strongly discouraged!",
                u.HostPort());
  }
  for (const auto& u : config.listen_metrics_urls) {
    embed->info("listening for metrics on {}", u.original);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  log->info("received {} signal, shutting down...", sig == SIGINT ? "interrupt" : "terminated");
  // Close the listeners, end the HTTP connections, then stop gRPC.
  (*listener)->Stop();
  if (metrics_listener) metrics_listener->Stop();
  http_server.Stop();
  metrics_http.Stop();
  grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  // Stopping the server hands leadership over (peers still needed), then
  // stops the transport, which ends the peer streams the peer server holds.
  (*server)->Stop();
  peer_server->Shutdown(std::chrono::system_clock::now());
  grpc_server->Wait();
  peer_server->Wait();
  server->reset();
  log->info("stopped");
  return 0;
}

}  // namespace
}  // namespace etcdpp::server

int main(int argc, char** argv) {
  // A crash (SIGSEGV, SIGABRT from a failed check, ...) prints the crashing
  // thread's stack, symbolized, to stderr (the log) before dying, as a Go
  // panic prints its goroutines. SIGTERM/SIGINT never reach it: they are
  // blocked and taken by sigwait.
  absl::InitializeSymbolizer(argv[0]);
  absl::InstallFailureSignalHandler(absl::FailureSignalHandlerOptions());
  // Debian's Abseil is built with mutex deadlock detection on; it costs ~3%
  // of CPU on the write and watch paths (measured, bench/RESULTS.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return etcdpp::server::Run(argc, argv);
}
