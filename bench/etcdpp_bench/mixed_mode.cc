// mixed: a Kubernetes-like load, the requests kube-apiserver sends to etcd.
//   objects   /registry/pods/ns-NN/pod-NNNNNN, preloaded (--objects, --val-size)
//   get       Range of one object
//   list      paginated Range of one namespace (limit --page-size, following
//             `more` from the last key, like the apiserver's continue token)
//   update    GuaranteedUpdate: Range the object, then Txn(If mod_revision ==
//             read one, Then Put, Else Range), retried on conflict
//   watchers  --watchers on the whole prefix (one stream), counting events
// Weights choose each client's next operation. The headline latency is the
// one of all operations together ("op"); each kind is reported too.
#include <cstdio>

#include "bench.h"

namespace etcdpp::bench {
namespace {

using etcdserverpb::RangeRequest;
using etcdserverpb::TxnRequest;

struct MixedOptions {
  std::string prefix;
  int64_t objects = 10000;
  int namespaces = 10;
  int val_size = 1024;
  int64_t page_size = 500;
  int w_get = 30, w_list = 10, w_update = 60;

  std::string Namespace(int64_t ns) const { return MakeKey(prefix + "ns-", ns, 0) + "/"; }
  std::string Key(int64_t i) const { return Namespace(i % namespaces) + MakeKey("pod-", i, 10); }
};

struct Ops {
  int all, get, list, update;
};

class MixedClient final : public Client {
 public:
  MixedClient(Engine* e, int i, const MixedOptions* m, Ops ops) : Client(e, i), m_(m), ops_(ops) {}

  void Issue() override {
    start_ns_ = NowNs();
    int pick = static_cast<int>(rng_() % static_cast<uint64_t>(m_->w_get + m_->w_list + m_->w_update));
    if (pick < m_->w_get) {
      Get();
    } else if (pick < m_->w_get + m_->w_list) {
      int64_t ns = static_cast<int64_t>(rng_() % static_cast<uint64_t>(m_->namespaces));
      List(m_->Namespace(ns), m_->Namespace(ns));
    } else {
      Update();
    }
  }

 private:
  // One logical operation ended: record it under its kind and, if it
  // succeeded, under "op" too (an error is counted once).
  void Done(int op, const grpc::Status& st) {
    engine_->Record(stats_, op, start_ns_, st);
    if (st.ok()) engine_->Record(stats_, ops_.all, start_ns_, st);
    Next();
  }

  void Get() {
    RangeRequest req;
    req.set_key(m_->Key(static_cast<int64_t>(rng_() % static_cast<uint64_t>(m_->objects))));
    CallRange(engine_, index_, cq_, std::move(req), [this](auto& c) { Done(ops_.get, c.status); });
  }

  void List(const std::string& ns, const std::string& from) {
    RangeRequest req;
    req.set_key(from);
    req.set_range_end(PrefixEnd(ns));
    req.set_limit(m_->page_size);
    CallRange(engine_, index_, cq_, std::move(req), [this, ns](auto& c) {
      if (!c.status.ok()) return Done(ops_.list, c.status);
      ++stats_->counters["list_pages"];
      stats_->counters["list_kvs"] += c.resp.kvs_size();
      if (c.resp.more() && c.resp.kvs_size() > 0) {
        return List(ns, c.resp.kvs(c.resp.kvs_size() - 1).key() + std::string(1, '\0'));
      }
      Done(ops_.list, c.status);
    });
  }

  void Update() {
    std::string key = m_->Key(static_cast<int64_t>(rng_() % static_cast<uint64_t>(m_->objects)));
    RangeRequest req;
    req.set_key(key);
    CallRange(engine_, index_, cq_, std::move(req), [this, key](auto& c) {
      if (!c.status.ok()) return Done(ops_.update, c.status);
      int64_t mod = c.resp.kvs_size() > 0 ? c.resp.kvs(0).mod_revision() : 0;
      TryUpdate(key, mod, 0);
    });
  }

  void TryUpdate(const std::string& key, int64_t mod, int attempt) {
    TxnRequest req;
    auto* cmp = req.add_compare();
    cmp->set_key(key);
    cmp->set_target(etcdserverpb::Compare::MOD);
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_mod_revision(mod);
    auto* put = req.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(Values().Make(rng_, static_cast<size_t>(m_->val_size), true));
    req.add_failure()->mutable_request_range()->set_key(key);
    CallTxn(engine_, index_, cq_, std::move(req), [this, key, attempt](auto& c) {
      if (!c.status.ok() || c.resp.succeeded()) return Done(ops_.update, c.status);
      ++stats_->counters["update_conflicts"];
      if (attempt >= 10) {
        return Done(ops_.update, grpc::Status(grpc::StatusCode::ABORTED, "update: 10 conflicts in a row"));
      }
      int64_t mod = 0;
      if (c.resp.responses_size() > 0 && c.resp.responses(0).response_range().kvs_size() > 0) {
        mod = c.resp.responses(0).response_range().kvs(0).mod_revision();
      }
      TryUpdate(key, mod, attempt + 1);
    });
  }

  const MixedOptions* m_;
  Ops ops_;
  int64_t start_ns_ = 0;
};

}  // namespace

int RunMixed(const Flags& f) {
  CommonOptions o = ParseCommon(f, "mixed");
  MixedOptions m;
  m.prefix = f.Str("prefix", "/registry/pods/");
  m.objects = f.Int("objects", 10000);
  m.namespaces = static_cast<int>(f.Int("namespaces", 10));
  m.val_size = static_cast<int>(f.Int("val-size", 1024));
  m.page_size = f.Int("page-size", 500);
  m.w_get = static_cast<int>(f.Int("get-weight", 30));
  m.w_list = static_cast<int>(f.Int("list-weight", 10));
  m.w_update = static_cast<int>(f.Int("update-weight", 60));
  int watchers = static_cast<int>(f.Int("watchers", 10));
  bool preload = f.Bool("preload", true);
  f.CheckAllUsed();
  if (o.total == 0 && o.duration_s == 0) o.total = 10000;
  if (m.objects < 1 || m.namespaces < 1 || m.w_get + m.w_list + m.w_update <= 0 || m.val_size < 8) {
    std::fprintf(stderr, "etcdpp-bench: bad --objects/--namespaces/--*-weight/--val-size\n");
    return 2;
  }
  Engine e(o);
  Ops ops;
  int op_preload = e.AddOp("preload");
  ops.all = e.AddOp("op");
  ops.get = e.AddOp("get");
  ops.list = e.AddOp("list");
  ops.update = e.AddOp("update");
  int op_event = e.AddOp("watch-event");
  if (!StartEngine(&e)) return 1;
  Result r;
  r.mode = "mixed";
  r.main_op = "op";
  if (preload) {
    r.extra["preload_s"] =
        Preload(&e, op_preload, o.clients, m.objects, 100, m.val_size,
                [&m](int64_t i) { return m.Key(i); });
    if (!e.unsupported().empty()) return FinishRun(&e, &r);
  }
  // Watchers on the whole prefix, on one stream (the apiserver's cacher
  // holds one watch per resource; more watchers model more apiservers).
  std::unique_ptr<WatchStream> ws;
  if (watchers > 0) {
    std::vector<std::pair<std::string, std::string>> ranges(
        static_cast<size_t>(watchers), {m.prefix, PrefixEnd(m.prefix)});
    ws = std::make_unique<WatchStream>(&e, 0, std::move(ranges), op_event);
    ws->Start();
    int64_t until = NowNs() + 30'000'000'000;
    while (ws->created() < watchers && !ws->finished() && NowNs() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (ws->created() < watchers) {
      // No watch support (or too slow): run the rest without watchers.
      std::string why = ws->unsupported();
      std::fprintf(stderr, "etcdpp-bench: mixed: watchers not available (%s); running without\n",
                   why.empty() ? "not created in 30 s" : why.c_str());
      r.extra["watch_unsupported"] = 1;
      ws->Cancel();
    }
  }
  e.SetBudget(o.total, o.duration_s, o.rate);
  r.duration_s = e.RunClients(
      o.clients, [&](int i) { return std::make_unique<MixedClient>(&e, i, &m, ops); }, "mixed");
  if (ws) {
    // Let the last events arrive.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ws->Cancel();
    int64_t until = NowNs() + 10'000'000'000;
    while (!ws->finished() && NowNs() < until) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return FinishRun(&e, &r);
}

}  // namespace etcdpp::bench
