// rob_workload: the client side of a robustness run. Concurrent clients do
// linearizable reads, unique-value writes and compare-and-set txns over a
// small key set, each with a deadline; watchers follow every member from
// revision 1 over all keys; lease clients grant, attach, keep alive, revoke or
// let expire. Every invocation and completion is recorded (history.h) for
// rob_check. Thread per client, blocking gRPC with deadlines: the simplest
// client whose timing is easy to reason about (invoke = just before the call,
// complete = just after it returns).
//
//   rob_workload --endpoints H:P[,H:P...] --out FILE --duration-s N --seed S
//                [--clients 6] [--keys 4] [--watch 0|1] [--lease 0|1]
//                [--heal-file PATH] [--plant stale-read|lost-write|drop-watch-event]
//                [--think-ms 10] (mean pause between one client's ops)
//   rob_workload --probe --endpoints H:P     prints {"watch":B,"lease":B}
//
// After --duration-s the clients stop, the workload waits for --heal-file
// (the orchestrator creates it once every fault is healed), lets leases run
// out, reads the final state, reads every acknowledged write back at its
// revision, waits for the watchers to reach the final revision and writes the
// history. Outcome of an op: ok; fail (it cannot have taken effect: a read
// that errored, or a request the channel refused to send: "failed to connect
// to all addresses"); unknown (any other error: timed out, connection lost,
// leader changed, ... it may or may not have taken effect).
//
// --plant injects a known anomaly into the recorded history (test-only, to
// prove the checkers catch it): stale-read rewrites one linearizable read to
// return a value that was overwritten before the read began; lost-write
// records one write as acknowledged at a revision without ever sending it
// (what a server that acknowledges and then discards a write looks like);
// drop-watch-event removes one event from watcher 0's stream.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "history.h"
#include "rpc.grpc.pb.h"

namespace etcdpp::robustness {
namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point kStart = Clock::now();
int64_t NowNs() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - kStart).count(); }
void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

struct Options {
  std::vector<std::string> endpoints;
  std::string out;
  int duration_s = 20;
  uint64_t seed = 1;
  int clients = 6;
  int keys = 4;
  bool watch = false;
  bool lease = false;
  std::string heal_file;
  std::string plant;
  int op_timeout_ms = 1000;
  int think_ms = 10;  // pause between a client's ops: keeps long histories checkable
  bool probe = false;
};

class Recorder {
 public:
  void Add(std::string line) {
    std::lock_guard<std::mutex> l(mu_);
    lines_.push_back(std::move(line));
  }
  std::vector<std::string> Take() {
    std::lock_guard<std::mutex> l(mu_);
    return std::move(lines_);
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& ep) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 300);
  args.SetInt("grpc.use_local_subchannel_pool", 1);  // each client its own connection
  return grpc::CreateCustomChannel(ep, grpc::InsecureChannelCredentials(), args);
}

void SetDeadline(grpc::ClientContext* ctx, int ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

// Could the request have reached a server? Only the channel refusing to
// send it (no connection at all) proves it did not.
bool NeverSent(const grpc::Status& st) {
  if (st.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
  const std::string& m = st.error_message();
  return m.find("failed to connect to all addresses") != std::string::npos;
}

std::string Outcome(const grpc::Status& st, bool is_read) {
  if (st.ok()) return "ok";
  if (is_read || NeverSent(st)) return "fail";
  return "unknown";
}

struct Shared {
  Options opt;
  Recorder rec;
  std::atomic<bool> stop_clients{false};
  std::atomic<int64_t> next_op_id{1};
  std::mutex mu;
  std::map<std::string, std::optional<std::string>> last_seen;  // guarded by mu
  std::vector<int64_t> leases_to_finish;                       // guarded by mu
  std::vector<std::tuple<std::string, std::string, int64_t>> acked;  // key, value, rev; guarded by mu
  std::vector<std::string> keys;
  std::string prefix;
};

void KvClient(Shared* sh, int c) {
  const Options& opt = sh->opt;
  std::mt19937_64 rng(opt.seed * 1000003 + c);
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs;
  for (const auto& ep : opt.endpoints) stubs.push_back(etcdserverpb::KV::NewStub(MakeChannel(ep)));
  size_t ep = c % stubs.size();
  int64_t seq = 0, last_header_rev = 0;
  bool planted = false;
  const int64_t end_ns = int64_t{opt.duration_s} * 1'000'000'000;
  while (!sh->stop_clients.load() && NowNs() < end_ns) {
    const std::string& key = sh->keys[rng() % sh->keys.size()];
    int dice = static_cast<int>(rng() % 100);
    int64_t id = sh->next_op_id.fetch_add(1);
    std::string value = "c" + std::to_string(c) + "-" + std::to_string(++seq);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, opt.op_timeout_ms);
    RecordWriter w("op");
    w.Int("id", id).Int("client", c).Str("key", key);
    grpc::Status st;
    bool is_read = false;
    std::optional<std::string> seen;
    bool seen_valid = false;
    int64_t rev = 0;
    if (dice < 40) {
      is_read = true;
      etcdserverpb::RangeRequest req;
      req.set_key(key);
      etcdserverpb::RangeResponse resp;
      int64_t inv = NowNs();
      st = stubs[ep]->Range(&ctx, req, &resp);
      int64_t comp = NowNs();
      if (st.ok()) {
        if (resp.kvs_size() > 0) seen = resp.kvs(0).value();
        seen_valid = true;
        rev = resp.header().revision();
      }
      w.Str("f", "read").OptStr("value", seen).Int("invoke", inv).Int("complete", comp);
    } else if (dice < 70) {
      if (opt.plant == "lost-write" && c == 0 && !planted && NowNs() > 2'000'000'000 && last_header_rev > 1) {
        // Planted anomaly: acknowledged, never applied.
        planted = true;
        int64_t t = NowNs();
        w.Str("f", "write").Str("value", value).Int("invoke", t).Int("complete", t + 1000)
            .Str("outcome", "ok").Int("rev", last_header_rev);
        fprintf(stderr, "planted: op %lld (%s=%s) recorded as acknowledged at revision %lld, never sent\n",
                static_cast<long long>(id), key.c_str(), value.c_str(), static_cast<long long>(last_header_rev));
        sh->rec.Add(w.Line());
        std::lock_guard<std::mutex> l(sh->mu);
        sh->acked.emplace_back(key, value, last_header_rev);
        continue;
      }
      etcdserverpb::PutRequest req;
      req.set_key(key);
      req.set_value(value);
      etcdserverpb::PutResponse resp;
      int64_t inv = NowNs();
      st = stubs[ep]->Put(&ctx, req, &resp);
      int64_t comp = NowNs();
      if (st.ok()) {
        seen = value;
        seen_valid = true;
        rev = resp.header().revision();
      }
      w.Str("f", "write").Str("value", value).Int("invoke", inv).Int("complete", comp);
    } else {
      std::optional<std::string> expected;
      {
        std::lock_guard<std::mutex> l(sh->mu);
        expected = sh->last_seen[key];
      }
      etcdserverpb::TxnRequest req;
      auto* cmp = req.add_compare();
      cmp->set_key(key);
      if (expected) {
        cmp->set_target(etcdserverpb::Compare::VALUE);
        cmp->set_result(etcdserverpb::Compare::EQUAL);
        cmp->set_value(*expected);
      } else {
        cmp->set_target(etcdserverpb::Compare::CREATE);
        cmp->set_result(etcdserverpb::Compare::EQUAL);
        cmp->set_create_revision(0);
      }
      auto* put = req.add_success()->mutable_request_put();
      put->set_key(key);
      put->set_value(value);
      req.add_failure()->mutable_request_range()->set_key(key);
      etcdserverpb::TxnResponse resp;
      int64_t inv = NowNs();
      st = stubs[ep]->Txn(&ctx, req, &resp);
      int64_t comp = NowNs();
      w.Str("f", "cas").OptStr("expected", expected).Str("value", value).Int("invoke", inv).Int("complete", comp);
      if (st.ok()) {
        rev = resp.header().revision();
        w.Bool("succeeded", resp.succeeded());
        if (resp.succeeded()) {
          seen = value;
        } else if (resp.responses_size() > 0 && resp.responses(0).has_response_range()) {
          const auto& rr = resp.responses(0).response_range();
          if (rr.kvs_size() > 0) seen = rr.kvs(0).value();
          w.OptStr("observed", seen);
        }
        seen_valid = true;
      }
    }
    std::string outcome = Outcome(st, is_read);
    w.Str("outcome", outcome).Int("rev", rev);
    if (!st.ok()) w.Str("error", st.error_message().substr(0, 120));
    sh->rec.Add(w.Line());
    if (st.ok()) {
      last_header_rev = std::max(last_header_rev, rev);
      std::lock_guard<std::mutex> l(sh->mu);
      if (seen_valid) sh->last_seen[key] = seen;
      if (!is_read && seen && *seen == value) sh->acked.emplace_back(key, value, rev);
    } else {
      // Back off and try another member.
      SleepMs(100 + static_cast<int>(rng() % 200));
      ep = (ep + 1) % stubs.size();
    }
    if (opt.think_ms > 0) SleepMs(static_cast<int>(rng() % (2 * opt.think_ms + 1)));
  }
}

// One-shot keepalive over a LeaseKeepAlive stream: TTL, or -1 when the
// lease is gone, or nullopt on an RPC error.
std::optional<int64_t> KeepAliveOnce(etcdserverpb::Lease::Stub* stub, int64_t id, int timeout_ms, grpc::Status* st) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout_ms);
  auto stream = stub->LeaseKeepAlive(&ctx);
  etcdserverpb::LeaseKeepAliveRequest req;
  req.set_id(id);
  etcdserverpb::LeaseKeepAliveResponse resp;
  bool ok = stream->Write(req) && stream->Read(&resp);
  stream->WritesDone();
  ctx.TryCancel();
  *st = stream->Finish();
  if (!ok) {
    if (st->ok()) *st = grpc::Status(grpc::StatusCode::UNKNOWN, "keepalive stream closed");
    return std::nullopt;
  }
  *st = grpc::Status::OK;
  return resp.ttl() > 0 ? resp.ttl() : -1;
}

void LeaseClient(Shared* sh, int c) {
  const Options& opt = sh->opt;
  std::mt19937_64 rng(opt.seed * 7919 + c);
  size_t ep = c % opt.endpoints.size();
  const int64_t end_ns = int64_t{opt.duration_s} * 1'000'000'000;
  while (!sh->stop_clients.load() && NowNs() + 4'000'000'000 < end_ns) {
    auto ch = MakeChannel(opt.endpoints[ep]);
    auto lease = etcdserverpb::Lease::NewStub(ch);
    auto kv = etcdserverpb::KV::NewStub(ch);
    int64_t ttl = 2 + static_cast<int64_t>(rng() % 2);
    etcdserverpb::LeaseGrantRequest greq;
    greq.set_ttl(ttl);
    etcdserverpb::LeaseGrantResponse gresp;
    grpc::ClientContext gctx;
    SetDeadline(&gctx, opt.op_timeout_ms);
    int64_t inv = NowNs();
    grpc::Status st = lease->LeaseGrant(&gctx, greq, &gresp);
    int64_t comp = NowNs();
    if (!st.ok() || !gresp.error().empty()) {
      ep = (ep + 1) % opt.endpoints.size();
      SleepMs(200);
      continue;
    }
    int64_t id = gresp.id();
    sh->rec.Add(RecordWriter("lease_grant").Int("lease", id).Int("ttl", gresp.ttl()).Int("invoke", inv)
                    .Int("complete", comp).Str("outcome", "ok").Line());
    {
      std::lock_guard<std::mutex> l(sh->mu);
      sh->leases_to_finish.push_back(id);
    }
    std::string key_a = sh->prefix + "lease/" + std::to_string(id) + "/a";
    bool attached = true;
    for (const char* suffix : {"a", "b"}) {
      std::string key = sh->prefix + "lease/" + std::to_string(id) + "/" + suffix;
      etcdserverpb::PutRequest preq;
      preq.set_key(key);
      preq.set_value("leased");
      preq.set_lease(id);
      etcdserverpb::PutResponse presp;
      grpc::ClientContext pctx;
      SetDeadline(&pctx, opt.op_timeout_ms);
      int64_t pinv = NowNs();
      st = kv->Put(&pctx, preq, &presp);
      int64_t pcomp = NowNs();
      sh->rec.Add(RecordWriter("lease_put").Int("lease", id).Str("key", key).Int("invoke", pinv)
                      .Int("complete", pcomp).Str("outcome", Outcome(st, false))
                      .Int("rev", st.ok() ? presp.header().revision() : 0).Line());
      if (!st.ok()) attached = false;
    }
    bool revoke = rng() % 2 == 0;
    int64_t keep_until = NowNs() + 1'000'000'000 + static_cast<int64_t>(rng() % 2'000'000'000);
    auto read_key = [&]() {
      etcdserverpb::RangeRequest rreq;
      rreq.set_key(key_a);
      etcdserverpb::RangeResponse rresp;
      grpc::ClientContext rctx;
      SetDeadline(&rctx, opt.op_timeout_ms);
      int64_t rinv = NowNs();
      grpc::Status rst = kv->Range(&rctx, rreq, &rresp);
      int64_t rcomp = NowNs();
      if (!rst.ok()) return std::optional<bool>();
      bool present = rresp.kvs_size() > 0;
      sh->rec.Add(RecordWriter("lease_read").Int("lease", id).Str("key", key_a).Int("invoke", rinv)
                      .Int("complete", rcomp).Bool("present", present).Line());
      return std::optional<bool>(present);
    };
    while (NowNs() < keep_until && !sh->stop_clients.load()) {
      grpc::Status kst;
      int64_t kinv = NowNs();
      std::optional<int64_t> kttl = KeepAliveOnce(lease.get(), id, opt.op_timeout_ms, &kst);
      int64_t kcomp = NowNs();
      RecordWriter kw("lease_ka");
      kw.Int("lease", id).Int("invoke", kinv).Int("complete", kcomp);
      if (kttl) kw.Str("outcome", "ok").Int("ttl", *kttl);
      else kw.Str("outcome", "unknown").Str("error", kst.error_message().substr(0, 120));
      sh->rec.Add(kw.Line());
      if (attached) read_key();
      SleepMs(400);
    }
    if (revoke) {
      for (int attempt = 0; attempt < 5; ++attempt) {
        etcdserverpb::LeaseRevokeRequest rreq;
        rreq.set_id(id);
        etcdserverpb::LeaseRevokeResponse rresp;
        grpc::ClientContext rctx;
        SetDeadline(&rctx, opt.op_timeout_ms);
        int64_t rinv = NowNs();
        st = lease->LeaseRevoke(&rctx, rreq, &rresp);
        int64_t rcomp = NowNs();
        bool gone = st.error_code() == grpc::StatusCode::NOT_FOUND;
        sh->rec.Add(RecordWriter("lease_revoke").Int("lease", id).Int("invoke", rinv).Int("complete", rcomp)
                        .Str("outcome", st.ok() || gone ? "ok" : "unknown").Line());
        if (st.ok() || gone) break;
        SleepMs(200);
      }
    } else if (attached) {
      // Left to expire: watch it go, reading often enough to catch an early loss.
      int64_t give_up = NowNs() + (ttl + 4) * 1'000'000'000;
      while (NowNs() < give_up && !sh->stop_clients.load()) {
        std::optional<bool> present = read_key();
        if (present && !*present) break;
        SleepMs(150);
      }
    }
  }
}

class Watcher {
 public:
  Watcher(Shared* sh, int w, std::string endpoint) : sh_(sh), w_(w), endpoint_(std::move(endpoint)) {}

  void Run() {
    auto stub = etcdserverpb::Watch::NewStub(MakeChannel(endpoint_));
    int64_t next_rev = 1;
    while (!stop_.load()) {
      auto ctx = std::make_shared<grpc::ClientContext>();
      {
        std::lock_guard<std::mutex> l(mu_);
        ctx_ = ctx;
      }
      auto stream = stub->Watch(ctx.get());
      etcdserverpb::WatchRequest req;
      auto* cr = req.mutable_create_request();
      cr->set_key(std::string(1, '\0'));
      cr->set_range_end(std::string(1, '\0'));
      cr->set_start_revision(next_rev);
      if (stream->Write(req)) {
        etcdserverpb::WatchResponse resp;
        while (stream->Read(&resp)) {
          if (resp.canceled()) {
            error_ = "canceled: " + resp.cancel_reason() + " compact_revision " +
                     std::to_string(resp.compact_revision());
            break;
          }
          if (resp.events_size() == 0) continue;
          ++resp_seq_;
          for (const auto& ev : resp.events()) {
            int64_t rev = ev.kv().mod_revision();
            sh_->rec.Add(RecordWriter("watch").Int("w", w_).Str("member", endpoint_).Int("resp", resp_seq_)
                             .Int("rev", rev).Str("key", ev.kv().key())
                             .Str("type", ev.type() == mvccpb::Event::PUT ? "put" : "delete")
                             .Str("value", ev.kv().value()).Int("mod", ev.kv().mod_revision()).Line());
            next_rev = std::max(next_rev, rev + 1);
          }
          last_rev_.store(next_rev - 1);
        }
      }
      stream->Finish();
      if (stop_.load()) break;
      ++reconnects_;
      SleepMs(200);
    }
    sh_->rec.Add(RecordWriter("watch_end").Int("w", w_).Str("member", endpoint_).Int("last_rev", last_rev_.load())
                     .Int("reconnects", reconnects_).Str("error", error_).Line());
  }

  void Stop() {
    stop_.store(true);
    std::lock_guard<std::mutex> l(mu_);
    if (ctx_) ctx_->TryCancel();
  }
  int64_t last_rev() const { return last_rev_.load(); }

 private:
  Shared* sh_;
  int w_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> last_rev_{0};
  int64_t resp_seq_ = 0;
  int reconnects_ = 0;
  std::string error_;
  std::mutex mu_;
  std::shared_ptr<grpc::ClientContext> ctx_;  // guarded by mu_
};

// Retries fn over every endpoint until it succeeds or deadline_s passes.
template <typename Fn>
bool Retry(const Options& opt, int deadline_s, Fn fn) {
  int64_t give_up = NowNs() + int64_t{deadline_s} * 1'000'000'000;
  for (size_t i = 0; NowNs() < give_up; ++i) {
    if (fn(opt.endpoints[i % opt.endpoints.size()])) return true;
    SleepMs(200);
  }
  return false;
}

int Probe(const Options& opt) {
  auto ch = MakeChannel(opt.endpoints[0]);
  bool watch = false, lease = false;
  {
    auto stub = etcdserverpb::Watch::NewStub(ch);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 5000);
    auto stream = stub->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    req.mutable_create_request()->set_key("probe");
    etcdserverpb::WatchResponse resp;
    if (stream->Write(req) && stream->Read(&resp) && resp.created()) watch = true;
    ctx.TryCancel();
    grpc::Status st = stream->Finish();
    if (!watch && st.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
      fprintf(stderr, "probe: watch answered neither created nor UNIMPLEMENTED: %s\n", st.error_message().c_str());
    }
  }
  {
    auto stub = etcdserverpb::Lease::NewStub(ch);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 5000);
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(5);
    etcdserverpb::LeaseGrantResponse resp;
    grpc::Status st = stub->LeaseGrant(&ctx, req, &resp);
    if (st.ok()) {
      lease = true;
      grpc::ClientContext rctx;
      SetDeadline(&rctx, 5000);
      etcdserverpb::LeaseRevokeRequest rreq;
      rreq.set_id(resp.id());
      etcdserverpb::LeaseRevokeResponse rresp;
      stub->LeaseRevoke(&rctx, rreq, &rresp);
    } else if (st.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
      fprintf(stderr, "probe: lease grant failed: %s\n", st.error_message().c_str());
    }
  }
  printf("{\"watch\":%s,\"lease\":%s}\n", watch ? "true" : "false", lease ? "true" : "false");
  return 0;
}

bool PlantStaleRead(std::vector<std::string>* lines) {
  struct W {
    int64_t inv, comp;
    std::string value;
  };
  std::map<std::string, std::vector<W>> writes;
  std::vector<std::pair<size_t, Record>> reads;
  for (size_t i = 0; i < lines->size(); ++i) {
    Record r;
    std::string err;
    if (!ParseRecord((*lines)[i], &r, &err) || GetStr(r, "t") != "op" || GetStr(r, "outcome") != "ok") continue;
    std::string f = GetStr(r, "f");
    if (f == "write" || (f == "cas" && GetBool(r, "succeeded"))) {
      writes[GetStr(r, "key")].push_back({GetInt(r, "invoke"), GetInt(r, "complete"), GetStr(r, "value")});
    } else if (f == "read") {
      reads.emplace_back(i, r);
    }
  }
  // The last read for which some write w1 was overwritten by w2 entirely
  // before the read began: returning w1's value is a stale read.
  for (auto it = reads.rbegin(); it != reads.rend(); ++it) {
    Record& r = it->second;
    int64_t rinv = GetInt(r, "invoke");
    const auto& ws = writes[GetStr(r, "key")];
    for (const W& w2 : ws) {
      if (w2.comp >= rinv) continue;
      for (const W& w1 : ws) {
        if (w1.comp < w2.inv && w1.value != w2.value) {
          RecordWriter nw("op");
          nw.Int("id", GetInt(r, "id")).Int("client", GetInt(r, "client")).Str("key", GetStr(r, "key"))
              .Str("f", "read").Str("value", w1.value).Int("invoke", rinv).Int("complete", GetInt(r, "complete"))
              .Str("outcome", "ok").Int("rev", GetInt(r, "rev"));
          (*lines)[it->first] = nw.Line();
          fprintf(stderr, "planted: read op %lld of %s now returns stale %s (overwritten by %s before the read began)\n",
                  static_cast<long long>(GetInt(r, "id")), GetStr(r, "key").c_str(), w1.value.c_str(),
                  w2.value.c_str());
          return true;
        }
      }
    }
  }
  return false;
}

bool PlantDropWatchEvent(std::vector<std::string>* lines, int64_t final_rev) {
  std::vector<size_t> candidates;
  for (size_t i = 0; i < lines->size(); ++i) {
    Record r;
    std::string err;
    if (!ParseRecord((*lines)[i], &r, &err) || GetStr(r, "t") != "watch" || GetInt(r, "w") != 0) continue;
    if (GetInt(r, "rev") > 2 && GetInt(r, "rev") < final_rev) candidates.push_back(i);
  }
  if (candidates.empty()) return false;
  size_t victim = candidates[candidates.size() / 2];
  fprintf(stderr, "planted: dropped watch event %s\n", (*lines)[victim].c_str());
  lines->erase(lines->begin() + static_cast<std::ptrdiff_t>(victim));
  return true;
}

int Run(Options opt) {
  Shared sh;
  sh.opt = opt;
  sh.prefix = "rob/";
  for (int k = 0; k < opt.keys; ++k) sh.keys.push_back(sh.prefix + "k" + std::to_string(k));
  sh.rec.Add(RecordWriter("meta").Bool("watch", opt.watch).Bool("lease", opt.lease).Int("seed", static_cast<int64_t>(opt.seed))
                 .Str("plant", opt.plant).Int("clients", opt.clients).Int("keys", opt.keys).Line());

  std::vector<std::unique_ptr<Watcher>> watchers;
  std::vector<std::thread> watcher_threads;
  if (opt.watch) {
    for (size_t i = 0; i < opt.endpoints.size(); ++i) {
      watchers.push_back(std::make_unique<Watcher>(&sh, static_cast<int>(i), opt.endpoints[i]));
      watcher_threads.emplace_back([w = watchers.back().get()] { w->Run(); });
    }
  }
  std::vector<std::thread> clients;
  for (int c = 0; c < opt.clients; ++c) clients.emplace_back(KvClient, &sh, c);
  if (opt.lease) {
    for (int c = 0; c < 2; ++c) clients.emplace_back(LeaseClient, &sh, c);
  }
  for (auto& t : clients) t.join();
  fprintf(stderr, "workload: clients done at %.1fs\n", NowNs() / 1e9);

  if (!opt.heal_file.empty()) {
    int64_t give_up = NowNs() + 180'000'000'000;
    while (access(opt.heal_file.c_str(), F_OK) != 0 && NowNs() < give_up) SleepMs(100);
    if (access(opt.heal_file.c_str(), F_OK) != 0) fprintf(stderr, "workload: heal file never appeared\n");
  }
  fprintf(stderr, "workload: final phase at %.1fs\n", NowNs() / 1e9);

  // Leases: every one must be gone (revoked, or expired: a restarted leader
  // renews them, so poll rather than predict).
  std::vector<int64_t> leases;
  {
    std::lock_guard<std::mutex> l(sh.mu);
    leases = sh.leases_to_finish;
  }
  int64_t lease_give_up = NowNs() + 60'000'000'000;
  for (int64_t id : leases) {
    int64_t ttl = -2;
    while (NowNs() < lease_give_up) {
      bool ok = Retry(opt, 10, [&](const std::string& ep) {
        auto stub = etcdserverpb::Lease::NewStub(MakeChannel(ep));
        grpc::ClientContext ctx;
        SetDeadline(&ctx, 2000);
        etcdserverpb::LeaseTimeToLiveRequest req;
        req.set_id(id);
        etcdserverpb::LeaseTimeToLiveResponse resp;
        grpc::Status st = stub->LeaseTimeToLive(&ctx, req, &resp);
        if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
          ttl = -1;
          return true;
        }
        if (!st.ok()) return false;
        ttl = resp.ttl();
        return true;
      });
      if (!ok || ttl == -1) break;
      SleepMs(300);
    }
    sh.rec.Add(RecordWriter("lease_final").Int("lease", id).Int("ttl", ttl).Line());
  }

  // Final state of every key.
  int64_t final_rev = -1;
  Retry(opt, 60, [&](const std::string& ep) {
    auto stub = etcdserverpb::KV::NewStub(MakeChannel(ep));
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 3000);
    etcdserverpb::RangeRequest req;
    req.set_key(std::string(1, '\0'));
    req.set_range_end(std::string(1, '\0'));
    etcdserverpb::RangeResponse resp;
    if (!stub->Range(&ctx, req, &resp).ok()) return false;
    final_rev = resp.header().revision();
    for (const auto& kv : resp.kvs()) {
      sh.rec.Add(RecordWriter("final").Str("key", kv.key()).Str("value", kv.value()).Int("mod", kv.mod_revision()).Line());
    }
    sh.rec.Add(RecordWriter("final_rev").Int("rev", final_rev).Line());
    return true;
  });
  if (final_rev < 0) fprintf(stderr, "workload: could not read the final state\n");

  // Every acknowledged write, read back at its revision.
  std::vector<std::tuple<std::string, std::string, int64_t>> acked;
  {
    std::lock_guard<std::mutex> l(sh.mu);
    acked = sh.acked;
  }
  auto kv0 = etcdserverpb::KV::NewStub(MakeChannel(opt.endpoints[0]));
  for (const auto& [key, value, rev] : acked) {
    std::string status = "not attempted";
    if (final_rev < 0) {  // the cluster never answered: do not spend minutes failing
      sh.rec.Add(RecordWriter("at_rev").Str("key", key).Int("rev", rev).OptStr("value", std::nullopt).Int("mod", 0)
                     .Str("status", "not read back: the cluster never answered the final read").Line());
      continue;
    }
    std::optional<std::string> got;
    int64_t mod = 0;
    for (int attempt = 0; attempt < 3; ++attempt) {
      grpc::ClientContext ctx;
      SetDeadline(&ctx, 3000);
      etcdserverpb::RangeRequest req;
      req.set_key(key);
      req.set_revision(rev);
      etcdserverpb::RangeResponse resp;
      grpc::Status st = kv0->Range(&ctx, req, &resp);
      if (st.ok()) {
        status = "ok";
        if (resp.kvs_size() > 0) {
          got = resp.kvs(0).value();
          mod = resp.kvs(0).mod_revision();
        }
        break;
      }
      status = st.error_message();
      SleepMs(200);
    }
    sh.rec.Add(RecordWriter("at_rev").Str("key", key).Int("rev", rev).OptStr("value", got).Int("mod", mod)
                   .Str("status", status).Line());
  }

  // Watchers: let them reach the final revision, then stop them.
  int64_t watch_give_up = NowNs() + 60'000'000'000;
  for (auto& w : watchers) {
    while (w->last_rev() < final_rev && NowNs() < watch_give_up) SleepMs(50);
  }
  for (auto& w : watchers) w->Stop();
  for (auto& t : watcher_threads) t.join();

  std::vector<std::string> lines = sh.rec.Take();
  int rc = 0;
  if (opt.plant == "stale-read" && !PlantStaleRead(&lines)) {
    fprintf(stderr, "plant: no read qualifies for a stale-read plant\n");
    rc = 3;
  }
  if (opt.plant == "drop-watch-event" && !PlantDropWatchEvent(&lines, final_rev)) {
    fprintf(stderr, "plant: no watch event to drop\n");
    rc = 3;
  }
  std::ofstream out(opt.out);
  for (const auto& l : lines) out << l << "\n";
  out.close();
  fprintf(stderr, "workload: %zu records written to %s\n", lines.size(), opt.out.c_str());
  return out ? rc : 1;
}

}  // namespace
}  // namespace etcdpp::robustness

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  etcdpp::robustness::Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", a.c_str());
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--probe") opt.probe = true;
    else if (a == "--endpoints") {
      std::string s = val();
      size_t p = 0;
      while (p <= s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        if (q > p) opt.endpoints.push_back(s.substr(p, q - p));
        p = q + 1;
      }
    } else if (a == "--out") opt.out = val();
    else if (a == "--duration-s") opt.duration_s = std::stoi(val());
    else if (a == "--seed") opt.seed = std::stoull(val());
    else if (a == "--clients") opt.clients = std::stoi(val());
    else if (a == "--keys") opt.keys = std::stoi(val());
    else if (a == "--watch") opt.watch = val() == "1";
    else if (a == "--lease") opt.lease = val() == "1";
    else if (a == "--heal-file") opt.heal_file = val();
    else if (a == "--plant") opt.plant = val();
    else if (a == "--op-timeout-ms") opt.op_timeout_ms = std::stoi(val());
    else if (a == "--think-ms") opt.think_ms = std::stoi(val());
    else {
      fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (opt.endpoints.empty() || (!opt.probe && opt.out.empty())) {
    fprintf(stderr, "usage: %s --endpoints H:P[,...] (--probe | --out FILE --duration-s N ...)\n", argv[0]);
    return 2;
  }
  if (!opt.plant.empty() && opt.plant != "stale-read" && opt.plant != "lost-write" && opt.plant != "drop-watch-event") {
    fprintf(stderr, "unknown --plant %s\n", opt.plant.c_str());
    return 2;
  }
  if (opt.probe) return etcdpp::robustness::Probe(opt);
  return etcdpp::robustness::Run(opt);
}
