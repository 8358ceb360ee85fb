// put, range, txn-put: closed-loop unary KV load (etcd benchmark's modes of
// the same names), and the preload helper other modes share.
#include <cstdio>

#include "bench.h"

namespace etcdpp::bench {

using etcdserverpb::PutRequest;
using etcdserverpb::PutResponse;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;

void CallPut(Engine* e, int conn, grpc::CompletionQueue* cq, PutRequest req,
             std::function<void(UnaryCall<PutRequest, PutResponse>&)> done) {
  auto* stub = e->kv(conn);
  CallUnary<PutRequest, PutResponse>(
      cq, std::move(req),
      [stub](grpc::ClientContext* ctx, const PutRequest& r, grpc::CompletionQueue* q) {
        return stub->PrepareAsyncPut(ctx, r, q);
      },
      std::move(done), e->options().timeout_ms);
}

void CallRange(Engine* e, int conn, grpc::CompletionQueue* cq, RangeRequest req,
               std::function<void(UnaryCall<RangeRequest, RangeResponse>&)> done) {
  auto* stub = e->kv(conn);
  CallUnary<RangeRequest, RangeResponse>(
      cq, std::move(req),
      [stub](grpc::ClientContext* ctx, const RangeRequest& r, grpc::CompletionQueue* q) {
        return stub->PrepareAsyncRange(ctx, r, q);
      },
      std::move(done), e->options().timeout_ms);
}

void CallTxn(Engine* e, int conn, grpc::CompletionQueue* cq, TxnRequest req,
             std::function<void(UnaryCall<TxnRequest, TxnResponse>&)> done) {
  auto* stub = e->kv(conn);
  CallUnary<TxnRequest, TxnResponse>(
      cq, std::move(req),
      [stub](grpc::ClientContext* ctx, const TxnRequest& r, grpc::CompletionQueue* q) {
        return stub->PrepareAsyncTxn(ctx, r, q);
      },
      std::move(done), e->options().timeout_ms);
}

bool StartEngine(Engine* e) {
  std::string err;
  if (e->Start(&err)) return true;
  std::fprintf(stderr, "etcdpp-bench: %s\n", err.c_str());
  return false;
}

int FinishRun(Engine* e, Result* r) {
  e->Shutdown();
  e->Collect(r);
  return Report(*r, e->options());
}

namespace {

// Writes keys key_of(0..n-1) in transactions of `batch` puts.
class PreloadClient final : public Client {
 public:
  PreloadClient(Engine* e, int i, int op, int64_t n, int batch, int val_size,
                const std::function<std::string(int64_t)>* key_of)
      : Client(e, i), op_(op), n_(n), batch_(batch), val_size_(val_size), key_of_(key_of) {}

  void Issue() override {
    TxnRequest req;
    for (int64_t k = ticket_ * batch_; k < n_ && k < (ticket_ + 1) * batch_; ++k) {
      auto* p = req.add_success()->mutable_request_put();
      p->set_key((*key_of_)(k));
      p->set_value(Values().Make(rng_, static_cast<size_t>(val_size_), true));
    }
    CallTxn(engine_, index_, cq_, std::move(req),
            [this](auto& c) { engine_->Complete(this, op_, c.start_ns, c.status); });
  }

 private:
  int op_;
  int64_t n_;
  int batch_;
  int val_size_;
  const std::function<std::string(int64_t)>* key_of_;
};

}  // namespace

double Preload(Engine* e, int op, int n_clients, int64_t n, int batch, int val_size,
               const std::function<std::string(int64_t)>& key_of) {
  if (n <= 0) return 0;
  e->SetBudget((n + batch - 1) / batch, 0, 0);
  return e->RunClients(
      n_clients,
      [&](int i) { return std::make_unique<PreloadClient>(e, i, op, n, batch, val_size, &key_of); },
      "preload");
}

namespace {

struct KeyOptions {
  std::string prefix;
  int key_size = 8;
  int val_size = 8;
  int64_t key_space = 1;
  bool sequential = false;

  void Parse(const Flags& f) {
    prefix = f.Str("prefix", "");
    key_size = static_cast<int>(f.Int("key-size", 8));
    val_size = static_cast<int>(f.Int("val-size", 8));
    key_space = f.Int("key-space-size", 1);
    sequential = f.Bool("sequential-keys", false);
    if (key_space < 1) key_space = 1;
  }
  std::string Key(int64_t i) const { return MakeKey(prefix, i % key_space, key_size); }
};

class PutClient final : public Client {
 public:
  PutClient(Engine* e, int i, int op, const KeyOptions* k) : Client(e, i), op_(op), k_(k) {}

  void Issue() override {
    int64_t n = k_->sequential ? ticket_ : static_cast<int64_t>(rng_() % k_->key_space);
    PutRequest req;
    req.set_key(k_->Key(n));
    req.set_value(Values().Make(rng_, static_cast<size_t>(k_->val_size), false));
    CallPut(engine_, index_, cq_, std::move(req),
            [this](auto& c) { engine_->Complete(this, op_, c.start_ns, c.status); });
  }

 private:
  int op_;
  const KeyOptions* k_;
};

class TxnPutClient final : public Client {
 public:
  TxnPutClient(Engine* e, int i, int op, const KeyOptions* k, int ops)
      : Client(e, i), op_(op), k_(k), ops_(ops) {}

  void Issue() override {
    TxnRequest req;
    // Consecutive keys from a random (or the next sequential) start: etcd
    // refuses a txn that puts one key twice.
    int64_t base = k_->sequential ? ticket_ * ops_ : static_cast<int64_t>(rng_() % k_->key_space);
    for (int j = 0; j < ops_; ++j) {
      int64_t n = base + j;
      auto* p = req.add_success()->mutable_request_put();
      p->set_key(k_->Key(n));
      p->set_value(Values().Make(rng_, static_cast<size_t>(k_->val_size), false));
    }
    CallTxn(engine_, index_, cq_, std::move(req),
            [this](auto& c) { engine_->Complete(this, op_, c.start_ns, c.status); });
  }

 private:
  int op_;
  const KeyOptions* k_;
  int ops_;
};

struct RangeOptions {
  std::string key;        // fixed key ("" = random keys of the key space)
  std::string range_end;  // with key
  bool serializable = false;
  int64_t limit = 0;
};

class RangeClient final : public Client {
 public:
  RangeClient(Engine* e, int i, int op, const KeyOptions* k, const RangeOptions* r)
      : Client(e, i), op_(op), k_(k), r_(r) {}

  void Issue() override {
    RangeRequest req;
    if (!r_->key.empty()) {
      req.set_key(r_->key);
      req.set_range_end(r_->range_end);
    } else {
      int64_t n = k_->sequential ? ticket_ : static_cast<int64_t>(rng_() % k_->key_space);
      req.set_key(k_->Key(n));
    }
    req.set_serializable(r_->serializable);
    req.set_limit(r_->limit);
    CallRange(engine_, index_, cq_, std::move(req), [this](auto& c) {
      if (c.status.ok()) {
        stats_->counters["kvs_read"] += c.resp.kvs_size();
      }
      engine_->Complete(this, op_, c.start_ns, c.status);
    });
  }

 private:
  int op_;
  const KeyOptions* k_;
  const RangeOptions* r_;
};

void DefaultBudget(CommonOptions* o) {
  if (o->total == 0 && o->duration_s == 0) o->total = 10000;
}

}  // namespace

int RunPut(const Flags& f) {
  CommonOptions o = ParseCommon(f, "put");
  KeyOptions k;
  k.Parse(f);
  f.CheckAllUsed();
  DefaultBudget(&o);
  Engine e(o);
  int op = e.AddOp("put");
  if (!StartEngine(&e)) return 1;
  e.SetBudget(o.total, o.duration_s, o.rate);
  Result r;
  r.mode = "put";
  r.main_op = "put";
  r.duration_s = e.RunClients(
      o.clients, [&](int i) { return std::make_unique<PutClient>(&e, i, op, &k); }, "put");
  return FinishRun(&e, &r);
}

int RunTxnPut(const Flags& f) {
  CommonOptions o = ParseCommon(f, "txn-put");
  KeyOptions k;
  k.Parse(f);
  int ops = static_cast<int>(f.Int("txn-ops", 1));
  f.CheckAllUsed();
  DefaultBudget(&o);
  Engine e(o);
  int op = e.AddOp("txn");
  if (!StartEngine(&e)) return 1;
  e.SetBudget(o.total, o.duration_s, o.rate);
  Result r;
  r.mode = "txn-put";
  r.main_op = "txn";
  r.duration_s = e.RunClients(
      o.clients, [&](int i) { return std::make_unique<TxnPutClient>(&e, i, op, &k, ops); },
      "txn-put");
  r.extra["puts_per_s"] = 0;
  e.Shutdown();
  e.Collect(&r);
  r.extra["puts_per_s"] = r.duration_s > 0 ? static_cast<double>(r.ops) * ops / r.duration_s : 0;
  return Report(r, o);
}

int RunRange(const Flags& f) {
  CommonOptions o = ParseCommon(f, "range");
  KeyOptions k;
  k.Parse(f);
  RangeOptions ro;
  ro.key = f.Str("key", "");
  ro.range_end = f.Str("range-end", "");
  if (f.Bool("prefix-range", false)) ro.range_end = PrefixEnd(ro.key);
  std::string consistency = f.Str("consistency", "l");
  if (consistency != "l" && consistency != "s") {
    std::fprintf(stderr, "etcdpp-bench: --consistency is l (linearizable) or s (serializable)\n");
    return 2;
  }
  ro.serializable = consistency == "s";
  ro.limit = f.Int("limit", 0);
  int64_t preload = f.Int("preload", 0);
  int batch = static_cast<int>(f.Int("preload-batch", 100));
  if (preload > 0 && !f.Has("key-space-size")) k.key_space = preload;
  f.CheckAllUsed();
  DefaultBudget(&o);
  Engine e(o);
  int op_preload = e.AddOp("preload");
  int op = e.AddOp("range");
  if (!StartEngine(&e)) return 1;
  Result r;
  r.mode = ro.serializable ? "range-serializable" : "range-linearizable";
  r.main_op = "range";
  std::function<std::string(int64_t)> key_of = [&k](int64_t i) { return k.Key(i); };
  double t = Preload(&e, op_preload, o.clients, preload, batch, k.val_size, key_of);
  if (preload > 0) r.extra["preload_s"] = t;
  if (!e.unsupported().empty()) return FinishRun(&e, &r);
  e.SetBudget(o.total, o.duration_s, o.rate);
  r.duration_s = e.RunClients(
      o.clients, [&](int i) { return std::make_unique<RangeClient>(&e, i, op, &k, &ro); }, "range");
  return FinishRun(&e, &r);
}

}  // namespace etcdpp::bench
