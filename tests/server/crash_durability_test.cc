// Process-level durability test: writers put unique keys through gRPC and
// record each acknowledged one; the server is SIGKILLed at a random moment
// (seeded); after a restart on the same data dir every acknowledged write
// must be there with its value. Repeats for --rounds rounds on one data dir,
// so recovery of a store that was itself recovered is covered too.
//
//   crash_durability_test --bin build/etcdpp [--rounds 5] [--seed N] [--snapshot-count N]
//
// With a small --snapshot-count the server compacts its Raft log and
// releases WAL segments often, so restarts start from snapshot markers.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "rpc.grpc.pb.h"
#include "tests/common/free_port.h"

namespace {

int FreePort() { return etcdpp::testing::FreeLoopbackPort(); }

std::string g_snapshot_count;  // --snapshot-count passed to the server, if set
std::string g_peer_url;        // a free peer port, kept across restarts

pid_t StartServer(const std::string& bin, const std::string& dir, int port,
                  const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    std::string url = "http://127.0.0.1:" + std::to_string(port);
    FILE* f = freopen(log.c_str(), "a", stderr);
    (void)f;
    std::vector<const char*> argv = {bin.c_str(), "--data-dir", dir.c_str(),
                                     "--listen-client-urls", url.c_str(),
                                     "--advertise-client-urls", url.c_str(),
                                     "--listen-peer-urls", g_peer_url.c_str(),
                                     "--initial-advertise-peer-urls", g_peer_url.c_str()};
    if (!g_snapshot_count.empty()) {
      argv.push_back("--snapshot-count");
      argv.push_back(g_snapshot_count.c_str());
    }
    argv.push_back(nullptr);
    execv(bin.c_str(), const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  return pid;
}

bool WaitReady(etcdserverpb::KV::Stub* kv, pid_t pid) {
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < give_up) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;  // it died
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    etcdserverpb::RangeRequest req;
    req.set_key("ready?");
    etcdserverpb::RangeResponse resp;
    if (kv->Range(&ctx, req, &resp).ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bin;
  int rounds = 5;
  uint64_t seed = static_cast<uint64_t>(time(nullptr));
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--bin") bin = argv[i + 1];
    else if (a == "--rounds") rounds = atoi(argv[i + 1]);
    else if (a == "--seed") seed = strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--snapshot-count") g_snapshot_count = argv[i + 1];
  }
  if (bin.empty()) {
    fprintf(stderr, "usage: %s --bin PATH [--rounds N] [--seed N]\n", argv[0]);
    return 2;
  }
  printf("seed %llu (rerun with --seed %llu)\n", (unsigned long long)seed,
         (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  auto dir = std::filesystem::temp_directory_path() /
             ("etcdpp_crash_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::string log = dir.string() + ".log";
  int port = FreePort();
  g_peer_url = "http://127.0.0.1:" + std::to_string(FreePort());
  // Reconnect quickly after each restart (gRPC's default backoff reaches
  // seconds).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                           grpc::InsecureChannelCredentials(), args);
  auto kv = etcdserverpb::KV::NewStub(channel);

  absl::Mutex mu;
  std::vector<std::pair<std::string, std::string>> acked;  // guarded by mu
  int failures = 0;
  for (int round = 0; round < rounds; ++round) {
    pid_t pid = StartServer(bin, dir.string(), port, log);
    if (!WaitReady(kv.get(), pid)) {
      fprintf(stderr, "round %d: server not ready; see %s\n", round, log.c_str());
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      return 1;
    }
    // Everything acknowledged in earlier rounds must have survived.
    size_t missing = 0;
    {
      absl::MutexLock l(&mu);
      for (const auto& [k, v] : acked) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        etcdserverpb::RangeRequest req;
        req.set_key(k);
        etcdserverpb::RangeResponse resp;
        grpc::Status st = kv->Range(&ctx, req, &resp);
        if (!st.ok() || resp.kvs_size() != 1 || resp.kvs(0).value() != v) {
          if (missing++ < 5) fprintf(stderr, "round %d: LOST acknowledged write %s\n", round, k.c_str());
        }
      }
      printf("round %d: %zu acknowledged writes checked, %zu lost\n", round, acked.size(), missing);
    }
    if (missing) ++failures;

    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < 8; ++w) {
      writers.emplace_back([&, w] {
        for (int seq = 0; !stop.load() && seq < 100000; ++seq) {
          std::string key = "r" + std::to_string(round) + "/w" + std::to_string(w) + "/" +
                            std::to_string(seq);
          std::string value = "v" + key;
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
          etcdserverpb::PutRequest req;
          req.set_key(key);
          req.set_value(value);
          etcdserverpb::PutResponse resp;
          if (!kv->Put(&ctx, req, &resp).ok()) return;  // server gone
          absl::MutexLock l(&mu);
          acked.emplace_back(key, value);
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 500));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    stop = true;
    for (auto& t : writers) t.join();
  }
  // Final check after the last kill.
  pid_t pid = StartServer(bin, dir.string(), port, log);
  if (!WaitReady(kv.get(), pid)) {
    fprintf(stderr, "final: server not ready; see %s\n", log.c_str());
    return 1;
  }
  size_t missing = 0;
  for (const auto& [k, v] : acked) {
    grpc::ClientContext ctx;
    etcdserverpb::RangeRequest req;
    req.set_key(k);
    etcdserverpb::RangeResponse resp;
    grpc::Status st = kv->Range(&ctx, req, &resp);
    if (!st.ok() || resp.kvs_size() != 1 || resp.kvs(0).value() != v) ++missing;
  }
  printf("final: %zu acknowledged writes checked, %zu lost\n", acked.size(), missing);
  if (missing) ++failures;
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!clean_exit) {
    fprintf(stderr, "server did not exit cleanly on SIGTERM (status %d)\n", status);
    ++failures;
  }
  if (acked.empty()) {
    fprintf(stderr, "no write was acknowledged: the test proved nothing\n");
    ++failures;
  }
  if (failures == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::remove(log);
  }
  printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
  return failures == 0 ? 0 : 1;
}
