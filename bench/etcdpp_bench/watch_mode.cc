// watch: W watchers on P prefixes, spread over S streams; put clients write
// stamped values under those prefixes; figures are events/s (from the first
// put to the last event) and put-to-event latency.
#include <unistd.h>

#include <cstdio>

#include "bench.h"

namespace etcdpp::bench {

WatchStream::WatchStream(Engine* e, int index,
                         std::vector<std::pair<std::string, std::string>> ranges, int event_op)
    : e_(e),
      index_(index),
      event_op_(event_op),
      stats_(e->stats(index)),
      ranges_(std::move(ranges)),
      stub_(etcdserverpb::Watch::NewStub(e->channel(index))) {
  start_tag_.fn = [this](bool ok) {
    if (!ok) {
      read_done_ = true;
      MaybeFinish();
      return;
    }
    rpc_->Read(&resp_, &read_tag_);
    WriteNext();
  };
  write_tag_.fn = [this](bool ok) {
    write_pending_ = false;
    if (!ok) {
      next_create_ = ranges_.size();  // the stream is broken; the read sees why
      MaybeFinish();
      return;
    }
    WriteNext();
  };
  read_tag_.fn = [this](bool ok) { OnRead(ok); };
  finish_tag_.fn = [this](bool) {
    if (IsUnimplemented(status_)) {
      unsupported_ = "Watch: UNIMPLEMENTED" +
                     (status_.error_message().empty() ? "" : ": " + status_.error_message());
    } else if (!cancelled_.load() && !status_.ok()) {
      e_->Record(stats_, event_op_, 0, status_);
    }
    finished_.store(true);
  };
}

void WatchStream::Start() {
  rpc_ = stub_->PrepareAsyncWatch(&ctx_, e_->cq(index_));
  rpc_->StartCall(&start_tag_);
}

void WatchStream::WriteNext() {
  if (next_create_ >= ranges_.size() || write_pending_ || read_done_) return;
  req_.Clear();
  auto* c = req_.mutable_create_request();
  c->set_key(ranges_[next_create_].first);
  c->set_range_end(ranges_[next_create_].second);
  ++next_create_;
  write_pending_ = true;
  rpc_->Write(req_, &write_tag_);
}

void WatchStream::OnRead(bool ok) {
  if (!ok) {
    read_done_ = true;
    MaybeFinish();
    return;
  }
  if (resp_.created()) created_.fetch_add(1);
  if (resp_.canceled() && !cancelled_.load()) {
    stats_->errors.fetch_add(1);
    ++stats_->error_texts["watch canceled by server: " + resp_.cancel_reason()];
  }
  int64_t n = 0;
  for (const auto& ev : resp_.events()) {
    if (hook_) hook_(ev);
    if (ev.type() != mvccpb::Event::PUT) continue;
    int64_t stamp = ValueSource::Stamp(ev.kv().value());
    if (stamp <= 0) continue;
    e_->Record(stats_, event_op_, stamp, grpc::Status::OK);
    ++n;
  }
  if (n > 0) {
    events_.fetch_add(n);
    last_event_ns_.store(NowNs());
  }
  rpc_->Read(&resp_, &read_tag_);
}

void WatchStream::MaybeFinish() {
  if (finish_called_ || !read_done_ || write_pending_) return;
  finish_called_ = true;
  rpc_->Finish(&status_, &finish_tag_);
}

namespace {

class WatchPutClient final : public Client {
 public:
  WatchPutClient(Engine* e, int i, int op, const std::vector<std::string>* prefixes,
                 const std::vector<int64_t>* watchers_on, int val_size,
                 std::atomic<int64_t>* expected)
      : Client(e, i),
        op_(op),
        prefixes_(prefixes),
        watchers_on_(watchers_on),
        val_size_(val_size),
        expected_(expected) {}

  void Issue() override {
    size_t p = static_cast<size_t>(ticket_) % prefixes_->size();
    etcdserverpb::PutRequest req;
    req.set_key(MakeKey((*prefixes_)[p] + "k", ticket_, 10));
    req.set_value(Values().Make(rng_, static_cast<size_t>(val_size_), true));
    CallPut(engine_, index_, cq_, std::move(req), [this, p](auto& c) {
      if (c.status.ok()) expected_->fetch_add((*watchers_on_)[p]);
      engine_->Complete(this, op_, c.start_ns, c.status);
    });
  }

 private:
  int op_;
  const std::vector<std::string>* prefixes_;
  const std::vector<int64_t>* watchers_on_;
  int val_size_;
  std::atomic<int64_t>* expected_;
};

// Waits (polling) until done() or the timeout; false on timeout.
bool WaitFor(const std::function<bool()>& done, double timeout_s) {
  int64_t until = NowNs() + static_cast<int64_t>(timeout_s * 1e9);
  while (!done()) {
    if (NowNs() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace

int RunWatch(const Flags& f) {
  CommonOptions o = ParseCommon(f, "watch");
  int64_t watchers = f.Int("watchers", 1000);
  int streams = static_cast<int>(f.Int("streams", 10));
  int n_prefixes = static_cast<int>(f.Int("prefixes", 10));
  std::string base = f.Str("prefix", "/bench-watch/");
  int64_t put_total = f.Int("put-total", 1000);
  int put_clients = static_cast<int>(f.Int("put-clients", 4));
  double put_rate = f.Double("put-rate", 0);
  int val_size = std::max<int>(8, static_cast<int>(f.Int("val-size", 32)));
  double drain_s = f.Double("drain-timeout", 30);
  double create_timeout_s = f.Double("create-timeout", 120);
  f.CheckAllUsed();
  if (watchers < 1 || streams < 1 || n_prefixes < 1) {
    std::fprintf(stderr, "etcdpp-bench: --watchers, --streams, --prefixes must be >= 1\n");
    return 2;
  }
  o.clients = put_clients;
  Engine e(o);
  int op_put = e.AddOp("put");
  int op_event = e.AddOp("event");
  if (!StartEngine(&e)) return 1;

  // A run-unique prefix, so that keys of an earlier run never match.
  std::string run = base + "r" + std::to_string(getpid()) + "-" + std::to_string(NowNs() % 1000000) + "/";
  std::vector<std::string> prefixes;
  std::vector<int64_t> watchers_on(static_cast<size_t>(n_prefixes), 0);
  for (int p = 0; p < n_prefixes; ++p) prefixes.push_back(MakeKey(run + "p", p, 0) + "/");
  std::vector<std::vector<std::pair<std::string, std::string>>> per_stream(streams);
  for (int64_t w = 0; w < watchers; ++w) {
    size_t p = static_cast<size_t>(w % n_prefixes);
    ++watchers_on[p];
    per_stream[static_cast<size_t>(w % streams)].emplace_back(prefixes[p], PrefixEnd(prefixes[p]));
  }
  std::vector<std::unique_ptr<WatchStream>> ws;
  for (int s = 0; s < streams; ++s) {
    ws.push_back(std::make_unique<WatchStream>(&e, s, std::move(per_stream[static_cast<size_t>(s)]),
                                               op_event));
  }
  Result r;
  r.mode = "watch";
  r.main_op = "event";
  auto created = [&] {
    int64_t n = 0;
    for (auto& s : ws) n += s->created();
    return n;
  };
  auto all_finished = [&] {
    for (auto& s : ws)
      if (!s->finished()) return false;
    return true;
  };
  auto stop_streams = [&] {
    for (auto& s : ws) s->Cancel();
    WaitFor(all_finished, 10);
  };

  int64_t t0 = NowNs();
  for (auto& s : ws) s->Start();
  e.StartProgress("watch-create", created);
  auto refused = [&] {
    for (auto& s : ws) {
      if (!s->unsupported().empty()) {
        e.MarkUnsupported(s->unsupported());
        return true;
      }
    }
    return false;
  };
  bool ok = WaitFor([&] { return created() >= watchers || refused() || all_finished(); },
                    create_timeout_s);
  refused();
  e.StopProgress();
  double create_s = static_cast<double>(NowNs() - t0) / 1e9;
  r.extra["create_s"] = create_s;
  r.extra["watchers_created"] = static_cast<double>(created());
  if (!e.unsupported().empty() || !ok || created() < watchers) {
    if (e.unsupported().empty()) {
      std::fprintf(stderr, "etcdpp-bench: only %lld of %lld watchers created\n",
                   static_cast<long long>(created()), static_cast<long long>(watchers));
      r.errors += watchers - created();
    }
    stop_streams();
    return FinishRun(&e, &r);
  }

  std::atomic<int64_t> expected{0};
  e.SetBudget(put_total, o.duration_s, put_rate);
  int64_t put_start = NowNs();
  double put_s = e.RunClients(
      put_clients,
      [&](int i) {
        return std::make_unique<WatchPutClient>(&e, i, op_put, &prefixes, &watchers_on, val_size,
                                                &expected);
      },
      "watch-put");
  auto events = [&] {
    int64_t n = 0;
    for (auto& s : ws) n += s->events();
    return n;
  };
  e.StartProgress("watch-drain", events);
  WaitFor([&] { return events() >= expected.load() || !e.unsupported().empty(); }, drain_s);
  e.StopProgress();
  int64_t last = put_start;
  for (auto& s : ws) last = std::max(last, s->last_event_ns());
  r.duration_s = static_cast<double>(last - put_start) / 1e9;
  int64_t got = events();
  stop_streams();
  e.Shutdown();
  e.Collect(&r);
  int64_t puts = r.hist["put"].count();
  r.extra["watchers"] = static_cast<double>(watchers);
  r.extra["streams"] = streams;
  r.extra["puts"] = static_cast<double>(puts);
  r.extra["put_qps"] = put_s > 0 ? static_cast<double>(puts) / put_s : 0;
  r.extra["expected_events"] = static_cast<double>(expected.load());
  int64_t missing = std::max<int64_t>(0, expected.load() - got);
  r.extra["missing_events"] = static_cast<double>(missing);
  r.errors += missing;
  return Report(r, o);
}

}  // namespace etcdpp::bench
