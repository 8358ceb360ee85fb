#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench.h"

namespace etcdpp::bench {

// ---------------------------------------------------------------- flags

Flags::Flags(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      std::fprintf(stderr, "etcdpp-bench: unexpected argument %s (flags are --name=value)\n",
                   a.c_str());
      std::exit(2);
    }
    a = a.substr(2);
    size_t eq = a.find('=');
    if (eq != std::string::npos) {
      values_[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) {
      values_[a] = argv[++i];
    } else {
      values_[a] = "true";
    }
  }
}

std::string Flags::Str(const std::string& name, const std::string& def) const {
  used_.insert(name);
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second;
}

int64_t Flags::Int(const std::string& name, int64_t def) const {
  std::string s = Str(name, "");
  if (s.empty()) return def;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);  // accepts 1e6
  if (end == s.c_str() || *end != '\0' || v != std::floor(v)) {
    std::fprintf(stderr, "etcdpp-bench: --%s wants an integer, got %s\n", name.c_str(), s.c_str());
    std::exit(2);
  }
  return static_cast<int64_t>(v);
}

double Flags::Double(const std::string& name, double def) const {
  std::string s = Str(name, "");
  if (s.empty()) return def;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str()) {
    std::fprintf(stderr, "etcdpp-bench: --%s wants a number, got %s\n", name.c_str(), s.c_str());
    std::exit(2);
  }
  // Durations may carry a unit: 5s, 500ms.
  std::string unit = end;
  if (unit == "ms") v /= 1000;
  else if (unit == "m") v *= 60;
  else if (!unit.empty() && unit != "s") {
    std::fprintf(stderr, "etcdpp-bench: --%s: bad number %s\n", name.c_str(), s.c_str());
    std::exit(2);
  }
  return v;
}

bool Flags::Bool(const std::string& name, bool def) const {
  std::string s = Str(name, "");
  if (s.empty()) return def;
  if (s == "true" || s == "1" || s == "yes") return true;
  if (s == "false" || s == "0" || s == "no") return false;
  std::fprintf(stderr, "etcdpp-bench: --%s wants true/false, got %s\n", name.c_str(), s.c_str());
  std::exit(2);
}

void Flags::CheckAllUsed() const {
  bool bad = false;
  for (const auto& [k, v] : values_) {
    if (!used_.count(k)) {
      std::fprintf(stderr, "etcdpp-bench: unknown flag --%s for this mode\n", k.c_str());
      bad = true;
    }
  }
  if (bad) std::exit(2);
}

// ------------------------------------------------------------ histogram
//
// Bucket layout: values below 128 ns have a bucket each; above, each power
// of two [2^e, 2^(e+1)) is split into 64 equal sub-buckets. Index of v with
// e = floor(log2 v) >= 7: 128 + (e - 7) * 64 + (v >> (e - 6)) - 64.

namespace {
constexpr int kSubBits = 6;
constexpr int kSub = 1 << kSubBits;
constexpr int kBuckets = 2 * kSub + (63 - kSubBits) * kSub;

int BucketOf(int64_t v) {
  if (v < 0) v = 0;
  if (v < 2 * kSub) return static_cast<int>(v);
  int e = 63 - __builtin_clzll(static_cast<uint64_t>(v));
  int shift = e - kSubBits;
  return 2 * kSub + (e - kSubBits - 1) * kSub + static_cast<int>((v >> shift) - kSub);
}

// Midpoint of bucket b.
int64_t ValueOf(int b) {
  if (b < 2 * kSub) return b;
  int e = (b - 2 * kSub) / kSub + kSubBits + 1;
  int sub = (b - 2 * kSub) % kSub;
  int shift = e - kSubBits;
  int64_t lo = static_cast<int64_t>(kSub + sub) << shift;
  return lo + ((int64_t{1} << shift) >> 1);
}
}  // namespace

Histogram::Histogram() : buckets_(kBuckets, 0) {}

void Histogram::Record(int64_t ns) {
  ++buckets_[BucketOf(ns)];
  ++count_;
  sum_ += static_cast<double>(ns);
  max_ = std::max(max_, ns);
}

void Histogram::Merge(const Histogram& o) {
  for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += o.buckets_[i];
  count_ += o.count_;
  sum_ += o.sum_;
  max_ = std::max(max_, o.max_);
}

int64_t Histogram::PercentileNs(double p) const {
  if (count_ == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(ValueOf(static_cast<int>(i)), max_);
  }
  return max_;
}

// ---------------------------------------------------------------- keys

std::string MakeKey(const std::string& prefix, int64_t i, int key_size) {
  char digits[32];
  int n = std::snprintf(digits, sizeof(digits), "%" PRId64, i);
  int width = std::max<int>(n, key_size - static_cast<int>(prefix.size()));
  std::string k = prefix;
  k.append(static_cast<size_t>(width - n), '0');
  k.append(digits, static_cast<size_t>(n));
  return k;
}

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  for (int i = static_cast<int>(end.size()) - 1; i >= 0; --i) {
    if (static_cast<unsigned char>(end[i]) < 0xff) {
      end[i] = static_cast<char>(static_cast<unsigned char>(end[i]) + 1);
      end.resize(static_cast<size_t>(i) + 1);
      return end;
    }
  }
  return std::string(1, '\0');  // the whole key space
}

ValueSource::ValueSource(uint64_t seed) {
  std::mt19937_64 rng(seed);
  pool_.resize(1 << 20);
  for (size_t i = 0; i < pool_.size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(&pool_[i], &r, 8);
  }
}

std::string ValueSource::Make(std::mt19937_64& rng, size_t n, bool stamp) const {
  std::string v;
  v.reserve(n);
  while (v.size() < n) {
    size_t take = std::min(n - v.size(), pool_.size() / 2);
    size_t off = rng() % (pool_.size() - take + 1);
    v.append(pool_, off, take);
  }
  if (stamp && n >= 8) {
    int64_t t = NowNs();
    std::memcpy(v.data(), &t, 8);
  }
  return v;
}

int64_t ValueSource::Stamp(const std::string& value) {
  if (value.size() < 8) return 0;
  int64_t t;
  std::memcpy(&t, value.data(), 8);
  return t;
}

const ValueSource& Values() {
  static const ValueSource* v = new ValueSource(0x5eed);
  return *v;
}

// -------------------------------------------------------------- options

namespace {

std::string StripScheme(std::string e) {
  for (const char* s : {"http://", "https://"}) {
    if (e.rfind(s, 0) == 0) e = e.substr(std::strlen(s));
  }
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Asks each endpoint for its Status; returns those matching `target`.
std::vector<std::string> ResolveTarget(const std::vector<std::string>& eps,
                                       const std::string& target) {
  if (target == "all") return eps;
  if (target == "first") return {eps.front()};
  std::vector<std::string> leaders, followers;
  for (const auto& ep : eps) {
    auto ch = grpc::CreateChannel(ep, grpc::InsecureChannelCredentials());
    auto stub = etcdserverpb::Maintenance::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    ctx.set_wait_for_ready(true);
    etcdserverpb::StatusRequest req;
    etcdserverpb::StatusResponse resp;
    grpc::Status st = stub->Status(&ctx, req, &resp);
    if (!st.ok()) {
      std::fprintf(stderr, "etcdpp-bench: Status %s: %s\n", ep.c_str(), st.error_message().c_str());
      continue;
    }
    (resp.leader() != 0 && resp.leader() == resp.header().member_id() ? leaders : followers)
        .push_back(ep);
  }
  if (target == "leader") {
    if (leaders.empty()) {
      std::fprintf(stderr, "etcdpp-bench: no endpoint says it is the leader\n");
      std::exit(1);
    }
    return {leaders.front()};
  }
  if (target == "followers") {
    if (followers.empty()) {
      std::fprintf(stderr, "etcdpp-bench: no follower among the endpoints\n");
      std::exit(1);
    }
    return followers;
  }
  std::fprintf(stderr, "etcdpp-bench: --target is all, first, leader or followers\n");
  std::exit(2);
}

}  // namespace

CommonOptions ParseCommon(const Flags& f, const std::string& mode) {
  CommonOptions o;
  for (const auto& e : Split(f.Str("endpoints", "127.0.0.1:2379"), ',')) {
    o.endpoints.push_back(StripScheme(e));
  }
  if (o.endpoints.empty()) {
    std::fprintf(stderr, "etcdpp-bench: --endpoints is empty\n");
    std::exit(2);
  }
  o.target = f.Str("target", "all");
  o.clients = static_cast<int>(f.Int("clients", 1));
  o.conns = static_cast<int>(f.Int("conns", 1));
  o.threads = static_cast<int>(f.Int("threads", 0));
  o.total = f.Int("total", 0);
  o.duration_s = f.Double("duration", 0);
  o.rate = f.Double("rate", 0);
  o.timeout_ms = f.Int("timeout-ms", 30000);
  o.json = f.Bool("json", false);
  o.progress = f.Bool("progress", true);
  o.label = f.Str("label", "");
  o.seed = static_cast<uint64_t>(f.Int("seed", 1));
  o.max_time_s = f.Double("max-time", 0);
  if (o.max_time_s > 0) StartWatchdog(mode, o.max_time_s, "--max-time");
  if (o.clients < 1 || o.conns < 1) {
    std::fprintf(stderr, "etcdpp-bench: --clients and --conns must be >= 1\n");
    std::exit(2);
  }
  if (o.threads <= 0) {
    int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    o.threads = std::min(o.conns, cores);
  }
  o.endpoints = ResolveTarget(o.endpoints, o.target);
  return o;
}

void StartWatchdog(const std::string& mode, double seconds, const std::string& what) {
  if (seconds <= 0) return;
  std::thread([mode, seconds, what] {
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    std::fflush(stdout);
    std::fprintf(stderr, "etcdpp-bench: %s: gave up after %.0f s (%s): the run did not finish\n",
                 mode.c_str(), seconds, what.c_str());
    std::fflush(stderr);
    _exit(kExitTimeout);
  }).detach();
}

// --------------------------------------------------------------- report

namespace {

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string LatencyText(const Histogram& h) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "latency_ms avg=%.3f p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f max=%.3f",
                h.MeanNs() / 1e6, Ms(h.PercentileNs(50)), Ms(h.PercentileNs(90)),
                Ms(h.PercentileNs(99)), Ms(h.PercentileNs(99.9)), Ms(h.MaxNs()));
  return buf;
}

std::string LatencyJson(const Histogram& h) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "{\"count\":%" PRId64
                ",\"avg\":%.4f,\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p999\":%.4f,\"max\":%.4f}",
                h.count(), h.MeanNs() / 1e6, Ms(h.PercentileNs(50)), Ms(h.PercentileNs(90)),
                Ms(h.PercentileNs(99)), Ms(h.PercentileNs(99.9)), Ms(h.MaxNs()));
  return buf;
}

}  // namespace

int Report(const Result& r, const CommonOptions& o) {
  double qps = r.duration_s > 0 ? static_cast<double>(r.ops) / r.duration_s : 0;
  Histogram empty;
  auto it = r.hist.find(r.main_op);
  const Histogram& main = it == r.hist.end() ? empty : it->second;
  if (!r.unsupported.empty()) {
    std::printf("%s: unsupported by server: %s\n", r.mode.c_str(), r.unsupported.c_str());
  } else {
    std::printf("%s: ops=%" PRId64 " errors=%" PRId64 " qps=%.1f duration=%.2fs %s\n",
                r.mode.c_str(), r.ops, r.errors, qps, r.duration_s, LatencyText(main).c_str());
    for (const auto& [name, h] : r.hist) {
      if (name == r.main_op || h.count() == 0) continue;
      std::printf("  %s: count=%" PRId64 " %s\n", name.c_str(), h.count(), LatencyText(h).c_str());
    }
    if (!r.extra.empty()) {
      std::printf("  extra:");
      for (const auto& [k, v] : r.extra) std::printf(" %s=%.6g", k.c_str(), v);
      std::printf("\n");
    }
    std::vector<std::pair<int64_t, std::string>> errs;
    for (const auto& [text, n] : r.error_texts) errs.emplace_back(n, text);
    std::sort(errs.rbegin(), errs.rend());
    for (size_t i = 0; i < errs.size() && i < 5; ++i) {
      std::printf("  error x%" PRId64 ": %s\n", errs[i].first, errs[i].second.c_str());
    }
  }
  if (o.json) {
    std::string j = "{\"mode\":\"" + JsonEscape(r.mode) + "\",\"label\":\"" + JsonEscape(o.label) +
                    "\",\"unsupported\":\"" + JsonEscape(r.unsupported) + "\"";
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  ",\"ops\":%" PRId64 ",\"errors\":%" PRId64 ",\"qps\":%.3f,\"duration_s\":%.4f",
                  r.ops, r.errors, qps, r.duration_s);
    j += buf;
    j += ",\"clients\":" + std::to_string(o.clients) + ",\"conns\":" + std::to_string(o.conns);
    j += ",\"latency_ms\":" + LatencyJson(main);
    j += ",\"ops_latency_ms\":{";
    bool first = true;
    for (const auto& [name, h] : r.hist) {
      if (h.count() == 0) continue;
      j += (first ? "\"" : ",\"") + JsonEscape(name) + "\":" + LatencyJson(h);
      first = false;
    }
    j += "},\"extra\":{";
    first = true;
    for (const auto& [k, v] : r.extra) {
      std::snprintf(buf, sizeof(buf), "%s\"%s\":%.6g", first ? "" : ",", JsonEscape(k).c_str(), v);
      j += buf;
      first = false;
    }
    j += "},\"error_texts\":{";
    first = true;
    for (const auto& [text, n] : r.error_texts) {
      j += (first ? "\"" : ",\"") + JsonEscape(text) + "\":" + std::to_string(n);
      first = false;
    }
    j += "}}";
    std::printf("%s\n", j.c_str());
  }
  std::fflush(stdout);
  if (!r.unsupported.empty()) return kExitUnsupported;
  return r.errors > 0 ? 1 : 0;
}

// --------------------------------------------------------------- engine

Client::Client(Engine* e, int index)
    : engine_(e),
      index_(index),
      cq_(e->cq(index)),
      stats_(e->stats(index)),
      rng_(e->options().seed * 1000003 + static_cast<uint64_t>(index)) {
  alarm_tag_.fn = [this](bool ok) {
    (void)ok;
    if (next_send_ns_ < 0) {  // the start kick (see RunClients)
      next_send_ns_ = 0;
      Next();
    } else {
      Issue();
    }
  };
}

void Client::Next() {
  ticket_ = engine_->TakeTicket();
  if (ticket_ < 0) {
    engine_->ClientFinished();
    return;
  }
  int64_t interval = engine_->PacingIntervalNs();
  if (interval > 0) {
    int64_t now = NowNs();
    if (next_send_ns_ == 0) {
      // Spread the clients over one interval.
      next_send_ns_ = now + static_cast<int64_t>(rng_() % static_cast<uint64_t>(interval));
    }
    // Never bank more than one interval of missed sends (no bursts).
    next_send_ns_ = std::max(next_send_ns_, now - interval);
    int64_t at = next_send_ns_;
    next_send_ns_ += interval;
    if (at > now) {
      alarm_.Set(cq_, std::chrono::system_clock::now() + std::chrono::nanoseconds(at - now),
                 &alarm_tag_);
      return;
    }
  }
  Issue();
}

Engine::Engine(const CommonOptions& o) : o_(o) {}

Engine::~Engine() { Shutdown(); }

int Engine::AddOp(const std::string& name) {
  op_names_.push_back(name);
  return static_cast<int>(op_names_.size()) - 1;
}

bool Engine::Start(std::string* error) {
  for (int i = 0; i < o_.conns; ++i) {
    const std::string& ep = o_.endpoints[static_cast<size_t>(i) % o_.endpoints.size()];
    grpc::ChannelArguments args;
    // A channel of its own = a TCP connection of its own.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("etcdpp_bench.conn", i);
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    auto ch = grpc::CreateCustomChannel(ep, grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      *error = "cannot connect to " + ep;
      return false;
    }
    kv_.push_back(etcdserverpb::KV::NewStub(ch));
    channels_.push_back(std::move(ch));
  }
  for (int i = 0; i < o_.threads; ++i) {
    cqs_.push_back(std::make_unique<grpc::CompletionQueue>());
    stats_.push_back(std::make_unique<ThreadStats>(op_names_.size()));
  }
  for (int i = 0; i < o_.threads; ++i) {
    grpc::CompletionQueue* cq = cqs_[i].get();
    threads_.emplace_back([cq] {
      void* tag;
      bool ok;
      while (cq->Next(&tag, &ok)) static_cast<Tag*>(tag)->Done(ok);
    });
  }
  return true;
}

void Engine::SetBudget(int64_t total, double duration_s, double rate) {
  issued_.store(0);
  total_ = total;
  deadline_ns_ = duration_s > 0 ? NowNs() + static_cast<int64_t>(duration_s * 1e9) : 0;
  rate_ = rate;
}

int64_t Engine::TakeTicket() {
  if (stop_.load(std::memory_order_relaxed)) return -1;
  if (deadline_ns_ != 0 && NowNs() >= deadline_ns_) return -1;
  int64_t t = issued_.fetch_add(1, std::memory_order_relaxed);
  if (total_ > 0 && t >= total_) return -1;
  return t;
}

double Engine::RunClients(int n, const std::function<std::unique_ptr<Client>(int)>& make,
                          const std::string& phase) {
  std::vector<Client*> batch;
  {
    std::lock_guard<std::mutex> l(mu_);
    active_ = n;
  }
  pacing_ns_.store(rate_ > 0 ? static_cast<int64_t>(1e9 * n / rate_) : 0);
  for (int i = 0; i < n; ++i) {
    auto c = make(i);
    batch.push_back(c.get());
    clients_.push_back(std::move(c));
  }
  int64_t start = NowNs();
  StartProgress(phase, [this] { return TotalOps(); });
  // Kick each client on its own queue's thread.
  for (Client* c : batch) c->Kick();
  {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return active_ == 0; });
  }
  StopProgress();
  return static_cast<double>(NowNs() - start) / 1e9;
}

void Engine::Record(ThreadStats* s, int op, int64_t start_ns, const grpc::Status& st) {
  if (st.ok()) {
    s->hist[op].Record(NowNs() - start_ns);
    s->ops.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (IsUnimplemented(st)) {
    MarkUnsupported(op_names_[op] + ": UNIMPLEMENTED" +
                    (st.error_message().empty() ? "" : ": " + st.error_message()));
    return;
  }
  s->errors.fetch_add(1, std::memory_order_relaxed);
  std::string text = op_names_[op] + ": code " + std::to_string(st.error_code()) + ": " +
                     st.error_message();
  ++s->error_texts[text];
}

void Engine::Complete(Client* c, int op, int64_t start_ns, const grpc::Status& st) {
  Record(c->stats(), op, start_ns, st);
  c->Next();
}

void Engine::ClientFinished() {
  std::lock_guard<std::mutex> l(mu_);
  if (--active_ == 0) cv_.notify_all();
}

void Engine::MarkUnsupported(const std::string& what) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (unsupported_.empty()) unsupported_ = what;
  }
  stop_.store(true);
}

std::string Engine::unsupported() const {
  std::lock_guard<std::mutex> l(mu_);
  return unsupported_;
}

int64_t Engine::TotalOps() const {
  int64_t n = 0;
  for (const auto& s : stats_) n += s->ops.load(std::memory_order_relaxed);
  return n;
}

int64_t Engine::TotalErrors() const {
  int64_t n = 0;
  for (const auto& s : stats_) n += s->errors.load(std::memory_order_relaxed);
  return n;
}

void Engine::StartProgress(const std::string& phase, std::function<int64_t()> counter) {
  if (!o_.progress) return;
  progress_stop_.store(false);
  progress_ = std::thread([this, phase, counter] {
    bool tty = isatty(2);
    int64_t start = NowNs();
    int64_t last = counter();
    int64_t last_t = start;
    int tick = 0;
    while (!progress_stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (progress_stop_.load()) break;
      if (++tick % 10 != 0) continue;
      int64_t now = NowNs();
      int64_t n = counter();
      double rate = static_cast<double>(n - last) / (static_cast<double>(now - last_t) / 1e9);
      last = n;
      last_t = now;
      if (!tty && tick % 50 != 0) continue;
      std::fprintf(stderr, "%s[%s] %.0fs %" PRId64 " done, %.0f/s, %" PRId64 " errors%s",
                   tty ? "\r" : "", phase.c_str(), static_cast<double>(now - start) / 1e9, n, rate,
                   TotalErrors(), tty ? "   " : "\n");
      std::fflush(stderr);
    }
    if (tty && tick >= 10) std::fprintf(stderr, "\n");
  });
}

void Engine::StopProgress() {
  if (!progress_.joinable()) return;
  progress_stop_.store(true);
  progress_.join();
}

void Engine::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  StopProgress();
  for (auto& cq : cqs_) cq->Shutdown();
  for (auto& t : threads_) t.join();
  clients_.clear();
  std::lock_guard<std::mutex> l(mu_);
  kept_.clear();
}

void Engine::Collect(Result* r) const {
  for (size_t op = 0; op < op_names_.size(); ++op) {
    Histogram h;
    for (const auto& s : stats_) h.Merge(s->hist[op]);
    r->hist[op_names_[op]].Merge(h);
  }
  for (const auto& s : stats_) {
    r->errors += s->errors.load();
    for (const auto& [k, v] : s->error_texts) r->error_texts[k] += v;
    for (const auto& [k, v] : s->counters) r->extra[k] += static_cast<double>(v);
  }
  auto it = r->hist.find(r->main_op);
  if (it != r->hist.end()) r->ops = it->second.count();
  if (r->unsupported.empty()) r->unsupported = unsupported();
}

}  // namespace etcdpp::bench
