// etcdpp-bench: a load generator over the etcd v3 gRPC API, modelled on
// etcd's own `benchmark` tool, used to compare etcd and etcdpp side by side
// (bench/compare.sh). Everything here is the client side: it never links
// any server code, so the same binary measures etcd, etcdpp and the no-op
// server alike.
//
// Shape of a run: `Engine` owns C connections (gRPC channels, each its own
// TCP connection) and T worker threads, each polling its own completion
// queue. A "client" is a closed loop with one request in flight (optionally
// paced to a rate); client i uses connection i % C and queue i % T, so all
// of its callbacks run on one thread and need no locks. Each thread records
// into its own `ThreadStats`; they are merged when the run ends.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <condition_variable>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include "rpc.grpc.pb.h"

namespace etcdpp::bench {

// Exit code of a run that the server cannot serve (a method answered
// UNIMPLEMENTED): compare.sh prints "n/a (unsupported by server)".
inline constexpr int kExitUnsupported = 3;
// Exit code of a run that did not finish within one of its deadlines (a
// phase's own timeout or --max-time); the last line on stderr says which.
inline constexpr int kExitTimeout = 4;

// Bounds the whole process: after `seconds` (> 0), prints
// "etcdpp-bench: MODE: gave up after ..." on stderr and exits with
// kExitTimeout, whatever the run is waiting for. Call at most once.
void StartWatchdog(const std::string& mode, double seconds, const std::string& what);

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Command-line flags: --name=value, --name value, or a bare --name (= true).
// Every flag given must be read by the mode, so a typo is an error.
class Flags {
 public:
  // Parses argv[first..]; exits with a message on malformed input.
  Flags(int argc, char** argv, int first);
  std::string Str(const std::string& name, const std::string& def) const;
  int64_t Int(const std::string& name, int64_t def) const;
  double Double(const std::string& name, double def) const;
  bool Bool(const std::string& name, bool def) const;
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  // Exits with status 2 if a flag was given that no one read.
  void CheckAllUsed() const;

 private:
  std::map<std::string, std::string> values_;
  mutable std::set<std::string> used_;
};

// Log-linear latency histogram (64 sub-buckets per power of two: < 1.6%
// relative error), plus exact count, sum and max. Not thread-safe.
class Histogram {
 public:
  Histogram();
  void Record(int64_t ns);
  void Merge(const Histogram& o);
  int64_t count() const { return count_; }
  double MeanNs() const { return count_ ? sum_ / static_cast<double>(count_) : 0; }
  int64_t MaxNs() const { return max_; }
  // p in [0, 100].
  int64_t PercentileNs(double p) const;

 private:
  std::vector<uint64_t> buckets_;
  int64_t count_ = 0;
  double sum_ = 0;
  int64_t max_ = 0;
};

// Everything one worker thread records. Only its thread writes; the
// progress reporter reads the atomics.
struct ThreadStats {
  explicit ThreadStats(size_t n_ops) : hist(n_ops) {}
  std::vector<Histogram> hist;  // by op index (see Engine::AddOp)
  std::atomic<int64_t> ops{0};
  std::atomic<int64_t> errors{0};
  std::map<std::string, int64_t> error_texts;
  std::map<std::string, int64_t> counters;  // mode-specific extras
};

// A completion-queue tag: Done runs on the queue's thread.
struct Tag {
  virtual ~Tag() = default;
  virtual void Done(bool ok) = 0;
};

// Tag that calls a function (timers, stream steps).
struct FnTag final : Tag {
  std::function<void(bool)> fn;
  void Done(bool ok) override { fn(ok); }
};

template <class Req, class Resp>
struct UnaryCall final : Tag {
  grpc::ClientContext ctx;
  Req req;
  Resp resp;
  grpc::Status status;
  int64_t start_ns = 0;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Resp>> reader;
  std::function<void(UnaryCall&)> done;
  void Done(bool) override {
    done(*this);
    delete this;
  }
};

// Starts one asynchronous unary call; `done` runs on the queue's thread.
// `prepare(ctx, req, cq)` is the stub's PrepareAsyncX.
template <class Req, class Resp, class Prepare>
void CallUnary(grpc::CompletionQueue* cq, Req req, Prepare prepare,
               std::function<void(UnaryCall<Req, Resp>&)> done, int64_t timeout_ms = 0) {
  auto* c = new UnaryCall<Req, Resp>();
  c->req = std::move(req);
  c->done = std::move(done);
  if (timeout_ms > 0) {
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  }
  c->start_ns = NowNs();
  c->reader = prepare(&c->ctx, c->req, cq);
  c->reader->StartCall();
  c->reader->Finish(&c->resp, &c->status, c);
}

// LeaseGrant(ttl) as one asynchronous call (lease modes).
inline void GrantLease(
    grpc::CompletionQueue* cq, etcdserverpb::Lease::Stub* stub, int64_t ttl, int64_t timeout_ms,
    std::function<void(UnaryCall<etcdserverpb::LeaseGrantRequest, etcdserverpb::LeaseGrantResponse>&)>
        done) {
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(ttl);
  CallUnary<etcdserverpb::LeaseGrantRequest, etcdserverpb::LeaseGrantResponse>(
      cq, std::move(req),
      [stub](grpc::ClientContext* ctx, const etcdserverpb::LeaseGrantRequest& r,
             grpc::CompletionQueue* q) { return stub->PrepareAsyncLeaseGrant(ctx, r, q); },
      std::move(done), timeout_ms);
}

// Options every mode shares.
struct CommonOptions {
  std::vector<std::string> endpoints;  // host:port
  std::string target = "all";          // all | leader | followers | first
  int clients = 1;
  int conns = 1;
  int threads = 0;  // 0: min(conns, cores)
  int64_t total = 0;        // requests; 0: no limit (then duration is required)
  double duration_s = 0;    // 0: no limit
  double rate = 0;          // requests/s over all clients; 0: unpaced
  int64_t timeout_ms = 30000;
  bool json = false;
  bool progress = true;
  std::string label;  // free text copied into the JSON line
  uint64_t seed = 1;
  double max_time_s = 0;  // --max-time: hard bound on the process (0: mode's default)
};

// Reads the common flags (and resolves --target against the cluster).
CommonOptions ParseCommon(const Flags& f, const std::string& mode);

// Result of one run, printed as the summary line (and JSON line).
struct Result {
  std::string mode;
  std::string main_op;  // which op's latency is the headline
  int64_t ops = 0;
  int64_t errors = 0;
  double duration_s = 0;
  std::string unsupported;  // non-empty: the server cannot serve this mode
  std::map<std::string, Histogram> hist;
  std::map<std::string, int64_t> error_texts;
  std::map<std::string, double> extra;  // mode-specific figures
};

// Prints the summary line(s) and, if json, the JSON line; returns the exit
// code (0, 1 if there were errors, kExitUnsupported).
int Report(const Result& r, const CommonOptions& o);

class Engine;

// One closed-loop client. Issue() sends one logical operation; when it
// completes the client calls engine->Complete(...), which records it and
// issues the next while the budget (total, duration) lasts.
class Client {
 public:
  Client(Engine* e, int index);
  virtual ~Client() = default;
  virtual void Issue() = 0;
  int index() const { return index_; }
  grpc::CompletionQueue* cq() const { return cq_; }
  ThreadStats* stats() const { return stats_; }
  std::mt19937_64& rng() { return rng_; }
  // Takes a ticket and issues (after a pacing wait); or, when the budget
  // is spent, tells the engine that this client is finished.
  void Next();
  // Schedules the first Next() on the client's own queue thread.
  void Kick() {
    next_send_ns_ = -1;
    alarm_.Set(cq_, std::chrono::system_clock::now(), &alarm_tag_);
  }

 protected:
  Engine* engine_;
  int index_;
  grpc::CompletionQueue* cq_;
  ThreadStats* stats_;
  std::mt19937_64 rng_;
  int64_t ticket_ = 0;        // index of the request being issued
  int64_t next_send_ns_ = 0;  // pacing; -1 while the start kick is pending
  grpc::Alarm alarm_;
  FnTag alarm_tag_;
};

class Engine {
 public:
  explicit Engine(const CommonOptions& o);
  ~Engine();
  const CommonOptions& options() const { return o_; }

  // Registers an op name (for per-op latency); call before Start().
  int AddOp(const std::string& name);
  const std::vector<std::string>& op_names() const { return op_names_; }

  // Connects every channel (bounded wait) and starts the worker threads.
  bool Start(std::string* error);

  int n_conns() const { return static_cast<int>(channels_.size()); }
  int n_threads() const { return static_cast<int>(cqs_.size()); }
  std::shared_ptr<grpc::Channel> channel(int i) const { return channels_[i % channels_.size()]; }
  grpc::CompletionQueue* cq(int i) const { return cqs_[i % cqs_.size()].get(); }
  ThreadStats* stats(int i) const { return stats_[i % stats_.size()].get(); }
  etcdserverpb::KV::Stub* kv(int i) const { return kv_[i % kv_.size()].get(); }

  // Budget: total requests and/or a deadline. Reset before each phase.
  void SetBudget(int64_t total, double duration_s, double rate);
  // The index of the next request of the budget (0, 1, ...), or -1 once
  // the budget is spent or the run was stopped.
  int64_t TakeTicket();
  // Per-client send interval under --rate (0: unpaced).
  int64_t PacingIntervalNs() const { return pacing_ns_.load(std::memory_order_relaxed); }

  // Runs n clients made by `make` until the budget is spent (or Stop).
  // Blocks; shows progress under `phase`. Returns elapsed seconds.
  double RunClients(int n, const std::function<std::unique_ptr<Client>(int)>& make,
                    const std::string& phase);

  // Records one completed operation of `op` that began at start_ns.
  void Complete(Client* c, int op, int64_t start_ns, const grpc::Status& st);
  // Records an outcome without continuing any loop.
  void Record(ThreadStats* s, int op, int64_t start_ns, const grpc::Status& st);
  void ClientFinished();

  // The server answered UNIMPLEMENTED: remember why and stop everything.
  void MarkUnsupported(const std::string& what);
  std::string unsupported() const;
  void RequestStop() { stop_.store(true); }
  bool stopped() const { return stop_.load(); }

  // Progress line on stderr while `phase` runs; `counter` gives the count.
  void StartProgress(const std::string& phase, std::function<int64_t()> counter);
  void StopProgress();

  // Total ops / errors over all threads so far.
  int64_t TotalOps() const;
  int64_t TotalErrors() const;

  // Stops the threads; after this, results may be collected.
  void Shutdown();
  // Merges the stats of every thread into r (hist by op name).
  void Collect(Result* r) const;

  // Keeps streaming RPC objects alive until Shutdown (they must outlive
  // their pending tags).
  void Keep(std::shared_ptr<void> p) {
    std::lock_guard<std::mutex> l(mu_);
    kept_.push_back(std::move(p));
  }

 private:
  CommonOptions o_;
  std::vector<std::string> op_names_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> kv_;
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs_;
  std::vector<std::unique_ptr<ThreadStats>> stats_;
  std::vector<std::thread> threads_;
  bool shut_down_ = false;

  std::atomic<bool> stop_{false};
  std::atomic<int64_t> issued_{0};
  int64_t total_ = 0;
  int64_t deadline_ns_ = 0;
  double rate_ = 0;
  std::atomic<int64_t> pacing_ns_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;  // guarded by mu_
  std::vector<std::unique_ptr<Client>> clients_;  // freed at Shutdown
  std::string unsupported_;  // guarded by mu_
  std::vector<std::shared_ptr<void>> kept_;  // guarded by mu_

  std::thread progress_;
  std::atomic<bool> progress_stop_{false};
};

// Key i of a key space: prefix + decimal i, zero-padded so that the key is
// key_size bytes long (longer if i needs more digits).
std::string MakeKey(const std::string& prefix, int64_t i, int key_size);

// A value of n bytes: random bytes (incompressible, so that on-disk sizes
// are honest for both servers). If stamp, the first 8 bytes hold NowNs()
// (little endian), for put-to-event latency.
class ValueSource {
 public:
  explicit ValueSource(uint64_t seed);
  std::string Make(std::mt19937_64& rng, size_t n, bool stamp) const;
  static int64_t Stamp(const std::string& value);

 private:
  std::string pool_;
};
const ValueSource& Values();

// The end of a prefix range (etcd's clientv3.GetPrefixRangeEnd).
std::string PrefixEnd(const std::string& prefix);

// True if st means "the server does not implement this".
inline bool IsUnimplemented(const grpc::Status& st) {
  return st.error_code() == grpc::StatusCode::UNIMPLEMENTED;
}

// Unary KV calls on connection `conn`, completing on `cq`.
void CallPut(Engine* e, int conn, grpc::CompletionQueue* cq, etcdserverpb::PutRequest req,
             std::function<void(UnaryCall<etcdserverpb::PutRequest, etcdserverpb::PutResponse>&)> done);
void CallRange(Engine* e, int conn, grpc::CompletionQueue* cq, etcdserverpb::RangeRequest req,
               std::function<void(UnaryCall<etcdserverpb::RangeRequest, etcdserverpb::RangeResponse>&)> done);
void CallTxn(Engine* e, int conn, grpc::CompletionQueue* cq, etcdserverpb::TxnRequest req,
             std::function<void(UnaryCall<etcdserverpb::TxnRequest, etcdserverpb::TxnResponse>&)> done);

// Engine::Start, printing the error; false if it failed.
bool StartEngine(Engine* e);
// Shuts the engine down, collects into r, prints; returns the exit code.
int FinishRun(Engine* e, Result* r);
// Writes keys key_of(0 .. n-1) (stamped random values of val_size bytes) in
// transactions of `batch` puts with n_clients clients, recorded as `op`.
// Returns the elapsed seconds.
double Preload(Engine* e, int op, int n_clients, int64_t n, int batch, int val_size,
               const std::function<std::string(int64_t)>& key_of);

// One Watch stream (on connection/queue `index`) carrying one watcher per
// [key, range_end) in `ranges`, created one after another. Every PUT event
// whose value is stamped (ValueSource) is recorded as `event_op` with its
// put-to-event latency. unsupported() says why the server refused the
// stream (UNIMPLEMENTED), once finished(). Start and Cancel may be called from any thread; the
// object must outlive Finished() (keep it until Engine::Shutdown).
class WatchStream {
 public:
  WatchStream(Engine* e, int index, std::vector<std::pair<std::string, std::string>> ranges,
              int event_op);
  void Start();
  void Cancel() { cancelled_.store(true); ctx_.TryCancel(); }
  int created() const { return created_.load(); }
  bool finished() const { return finished_.load(); }
  int64_t events() const { return events_.load(); }
  int64_t last_event_ns() const { return last_event_ns_.load(); }
  std::string unsupported() const { return finished() ? unsupported_ : std::string(); }
  // Called (on the stream's queue thread) for every event received, before
  // the stamped-PUT accounting; set before Start().
  void SetEventHook(std::function<void(const mvccpb::Event&)> hook) { hook_ = std::move(hook); }

 private:
  void WriteNext();
  void OnRead(bool ok);
  void MaybeFinish();

  Engine* e_;
  int index_;
  int event_op_;
  ThreadStats* stats_;
  std::vector<std::pair<std::string, std::string>> ranges_;
  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<etcdserverpb::WatchRequest,
                                                etcdserverpb::WatchResponse>> rpc_;
  etcdserverpb::WatchRequest req_;
  etcdserverpb::WatchResponse resp_;
  grpc::Status status_;
  std::string unsupported_;  // set before finished_
  FnTag start_tag_, read_tag_, write_tag_, finish_tag_;
  size_t next_create_ = 0;
  bool write_pending_ = false;
  bool read_done_ = false;
  bool finish_called_ = false;
  std::atomic<bool> cancelled_{false};
  std::atomic<int> created_{0};
  std::atomic<bool> finished_{false};
  std::atomic<int64_t> events_{0};
  std::atomic<int64_t> last_event_ns_{0};
  std::function<void(const mvccpb::Event&)> hook_;
};

// Modes (each parses its own flags and returns the process exit code).
int RunPut(const Flags& f);
int RunRange(const Flags& f);
int RunTxnPut(const Flags& f);
int RunWatch(const Flags& f);
int RunLeaseKeepalive(const Flags& f);
int RunLeaseExpiry(const Flags& f);
int RunMixed(const Flags& f);
int RunProbe(const Flags& f);
int RunReady(const Flags& f);
int RunFdatasync(const Flags& f);

}  // namespace etcdpp::bench
