#include "mvcc/watch.h"

#include <algorithm>
#include <unordered_set>

#include "spdlog/spdlog.h"

namespace etcdpp::mvcc {
namespace {

std::shared_ptr<spdlog::logger> Log() {
  auto l = spdlog::get("mvcc");
  return l ? l : spdlog::default_logger();
}

}  // namespace

struct WatchHub::Stream {
  int64_t id = 0;
  std::shared_ptr<WatchSink> sink;
  std::map<int64_t, std::unique_ptr<Watcher>> watchers;
  int64_t next_auto_id = 0;  // etcd: auto IDs count up from 0, skipping used ones
};

struct WatchHub::Watcher {
  Stream* stream = nullptr;
  int64_t id = 0;
  // The range, normalised as etcd's watch server does: key "" -> "\0";
  // range_end "" -> the single key; "\0" -> every key >= key (from_key).
  std::string key;
  std::string end;
  bool from_key = false;
  bool prev_kv = false;
  bool no_put = false;
  bool no_delete = false;
  bool progress_notify = false;
  bool fragment = false;
  // First revision not yet delivered (or skipped as unmatched) to this watcher.
  // For a synced watcher it may lag rev_+1 (unmatched revisions are not
  // recorded) or lie beyond it (a start_revision in the future).
  int64_t next_rev = 0;
  bool synced = false;
  bool sent_since_tick = false;  // events sent since the last progress tick

  bool Single() const { return end.empty() && !from_key; }
  bool Contains(std::string_view k) const {
    if (Single()) return k == key;
    if (k < std::string_view(key)) return false;
    return from_key || k < std::string_view(end);
  }
  // The range's upper bound lies above `k`.
  bool EndAbove(std::string_view k) const { return from_key || std::string_view(end) > k; }
};

// The synced watchers, indexed by key. Single-key watchers sit in a hash map;
// range watchers (ranges, prefixes, from-key) in an interval index: a sorted
// array of ranges, viewed as an implicit balanced binary tree (the root of
// [lo, hi) is mid = (lo + hi) / 2), each node annotated with the range whose
// end is highest in its subtree. A stabbing query for key k skips a subtree
// whose highest end is <= k, and the right subtree once start[mid] > k, so it
// costs O(log n + matches). The array is rebuilt (O(n log n)) on the first
// query after watchers were added or removed, at most once per fan-out.
//
// Example: ranges a=[b,d) b=[c,z) c=[x,y) sorted by start, mid = b (index 1),
// max_end[1] = z. Stab("e"): b's subtree max z > e; left a: max d <= e, skip;
// mid b=[c,z) contains e; right c: start x > e, so nothing there matches.
class WatchHub::KeyIndex {
 public:
  void Add(Watcher* w) {
    if (w->Single()) {
      keys_[w->key].push_back(w);
    } else {
      ranges_.insert(w);
      dirty_ = true;
    }
  }
  void Remove(Watcher* w) {
    if (w->Single()) {
      auto it = keys_.find(w->key);
      if (it == keys_.end()) return;
      auto& v = it->second;
      v.erase(std::remove(v.begin(), v.end(), w), v.end());
      if (v.empty()) keys_.erase(it);
    } else {
      ranges_.erase(w);
      dirty_ = true;
    }
  }
  // Appends every watcher whose range holds `key`, in no particular order.
  void Match(std::string_view key, std::vector<Watcher*>* out) {
    if (!keys_.empty()) {
      auto it = keys_.find(std::string(key));
      if (it != keys_.end()) out->insert(out->end(), it->second.begin(), it->second.end());
    }
    if (ranges_.empty()) return;
    if (dirty_) Rebuild();
    Stab(0, sorted_.size(), key, out);
  }

 private:
  static Watcher* HigherEnd(Watcher* a, Watcher* b) {
    if (a == nullptr) return b;
    if (b == nullptr) return a;
    if (a->from_key) return a;
    if (b->from_key) return b;
    return a->end >= b->end ? a : b;
  }
  Watcher* Build(size_t lo, size_t hi) {
    if (lo >= hi) return nullptr;
    size_t mid = lo + (hi - lo) / 2;
    Watcher* m = HigherEnd(sorted_[mid], HigherEnd(Build(lo, mid), Build(mid + 1, hi)));
    max_end_[mid] = m;
    return m;
  }
  void Rebuild() {
    sorted_.assign(ranges_.begin(), ranges_.end());
    std::sort(sorted_.begin(), sorted_.end(),
              [](const Watcher* a, const Watcher* b) { return a->key < b->key; });
    max_end_.assign(sorted_.size(), nullptr);
    Build(0, sorted_.size());
    dirty_ = false;
  }
  void Stab(size_t lo, size_t hi, std::string_view key, std::vector<Watcher*>* out) const {
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (!max_end_[mid]->EndAbove(key)) return;
      Stab(lo, mid, key, out);
      const Watcher* w = sorted_[mid];
      if (std::string_view(w->key) > key) return;
      if (w->EndAbove(key)) out->push_back(sorted_[mid]);
      lo = mid + 1;  // the right subtree, iteratively
    }
  }

  std::unordered_map<std::string, std::vector<Watcher*>> keys_;
  std::unordered_set<Watcher*> ranges_;
  bool dirty_ = false;
  std::vector<Watcher*> sorted_;
  std::vector<Watcher*> max_end_;
};

WatchHub::WatchHub(std::unique_ptr<WatchHistory> history, int64_t current_rev, Clock* clock,
                   WatchHubOptions options)
    : history_(std::move(history)),
      clock_(clock),
      options_(options),
      rev_(current_rev),
      catchup_revs_(options.catchup_batch_revs),
      synced_(std::make_unique<KeyIndex>()) {
  latest_rev_ = current_rev;
  if (options_.progress_notify_interval_ms > 0) {
    next_progress_ =
        clock_->Now() + std::chrono::milliseconds(options_.progress_notify_interval_ms);
  }
}

WatchHub::~WatchHub() { Stop(); }

void WatchHub::Start() {
  absl::MutexLock l(&mu_);
  if (stopping_ || thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void WatchHub::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

int64_t WatchHub::OpenStream(std::shared_ptr<WatchSink> sink) {
  absl::MutexLock l(&mu_);
  int64_t id = ++next_stream_id_;
  if (!stopping_) commands_.push_back(Command{Command::kOpen, id, std::move(sink), {}});
  return id;
}

void WatchHub::Request(int64_t stream_id, etcdserverpb::WatchRequest req) {
  absl::MutexLock l(&mu_);
  if (!stopping_)
    commands_.push_back(Command{Command::kRequest, stream_id, nullptr, std::move(req)});
}

void WatchHub::CloseStream(int64_t stream_id) {
  absl::MutexLock l(&mu_);
  if (!stopping_) commands_.push_back(Command{Command::kClose, stream_id, nullptr, {}});
}

void WatchHub::Wake() {
  absl::MutexLock l(&mu_);
  woken_ = true;
}

void WatchHub::OnApplied(std::vector<mvccpb::Event> events, int64_t rev) {
  int64_t bytes = 0;
  for (const auto& e : events) bytes += static_cast<int64_t>(e.ByteSizeLong());
  absl::MutexLock l(&mu_);
  if (stopping_) return;
  latest_rev_ = std::max(latest_rev_, rev);
  if (events.empty() || overflowed_) return;
  if (pending_bytes_ + bytes > options_.max_pending_bytes) {
    // The hub is far behind: forget the queued events; every synced watcher
    // will replay them from the store instead.
    overflowed_ = true;
    pending_.clear();
    pending_bytes_ = 0;
    return;
  }
  pending_bytes_ += bytes;
  pending_.emplace_back(std::move(events), rev);
}

WatchHub::Stats WatchHub::GetStats() const {
  absl::MutexLock l(&mu_);
  Stats s = stats_;
  s.pending_bytes = pending_bytes_;
  return s;
}

void WatchHub::Loop() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      absl::Duration wait = absl::Milliseconds(500);
      if (options_.progress_notify_interval_ms > 0) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(next_progress_ - clock_->Now());
        wait = std::clamp(absl::Milliseconds(left.count()), absl::Milliseconds(1), wait);
      }
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](WatchHub* h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(h->mu_) {
                                 return h->stopping_ || h->woken_ || h->overflowed_ ||
                                        !h->commands_.empty() || !h->pending_.empty();
                               },
                               this),
                           wait);
      if (stopping_) return;
    }
    while (RunOnce()) {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
    }
  }
}

bool WatchHub::RunOnce() {
  std::vector<Command> commands;
  std::vector<std::pair<std::vector<mvccpb::Event>, int64_t>> pending;
  bool overflowed;
  int64_t latest;
  {
    absl::MutexLock l(&mu_);
    commands.swap(commands_);
    pending.swap(pending_);
    pending_bytes_ = 0;
    overflowed = overflowed_;
    overflowed_ = false;
    latest = latest_rev_;
    woken_ = false;
  }
  // Events first, then commands: every write acknowledged to a client before
  // it sent a request was handed to OnApplied before the acknowledgement, so
  // it is in `pending` by now, and a watch "from now" (or a progress answer)
  // starts after it, as with etcd, whose watch starts at the store revision.
  if (overflowed) {
    ++overflows_;
    Log()->warn(
        "watch: applied events outran the watch hub; {} synced watchers replay from revision {}",
        stats_.synced, rev_ + 1);
    for (auto& [sid, s] : streams_) {
      for (auto& [wid, w] : s->watchers) {
        if (w->synced) MakeUnsynced(*w, rev_ + 1);
      }
    }
  } else {
    for (auto& [events, rev] : pending) FanOut(events, rev);
  }
  rev_ = std::max(rev_, latest);
  for (Command& c : commands) HandleCommand(c);
  bool more = CatchUp();
  AnswerProgressRequests();
  MaybeNotifyProgress();
  {
    int64_t watchers = 0;
    for (const auto& [sid, s] : streams_) watchers += static_cast<int64_t>(s->watchers.size());
    absl::MutexLock l(&mu_);
    stats_.rev = rev_;
    stats_.watchers = watchers;
    stats_.unsynced = static_cast<int64_t>(unsynced_.size());
    stats_.synced = watchers - stats_.unsynced;
    stats_.overflows = overflows_;
  }
  return more;
}

void WatchHub::HandleCommand(Command& c) {
  if (c.kind == Command::kOpen) {
    auto s = std::make_unique<Stream>();
    s->id = c.stream_id;
    s->sink = std::move(c.sink);
    streams_[c.stream_id] = std::move(s);
    return;
  }
  auto it = streams_.find(c.stream_id);
  if (it == streams_.end()) return;
  Stream& s = *it->second;
  if (c.kind == Command::kClose) {
    while (!s.watchers.empty()) RemoveWatcher(s, s.watchers.begin()->first);
    progress_requested_.erase(c.stream_id);
    streams_.erase(it);
    return;
  }
  const etcdserverpb::WatchRequest& req = c.req;
  switch (req.request_union_case()) {
    case etcdserverpb::WatchRequest::kCreateRequest:
      Create(s, req.create_request());
      break;
    case etcdserverpb::WatchRequest::kCancelRequest: {
      // etcd answers a cancel only for a watcher that exists.
      int64_t id = req.cancel_request().watch_id();
      if (s.watchers.count(id) == 0) break;
      RemoveWatcher(s, id);
      etcdserverpb::WatchResponse r;
      r.mutable_header()->set_revision(rev_);
      r.set_watch_id(id);
      r.set_canceled(true);
      SendControl(s, std::move(r));
      break;
    }
    case etcdserverpb::WatchRequest::kProgressRequest:
      // Answered (watch_id -1, the hub's revision) once every watcher on the
      // stream is synced, so the revision never runs ahead of the events.
      progress_requested_.insert(s.id);
      break;
    default:
      break;
  }
}

void WatchHub::Create(Stream& s, const etcdserverpb::WatchCreateRequest& cr) {
  auto w = std::make_unique<Watcher>();
  w->stream = &s;
  w->key = cr.key().empty() ? std::string(1, '\0') : cr.key();
  if (cr.range_end().size() == 1 && cr.range_end()[0] == '\0') {
    w->from_key = true;
  } else {
    w->end = cr.range_end();
  }
  auto fail = [&](const char* reason) {
    etcdserverpb::WatchResponse r;
    r.mutable_header()->set_revision(rev_);
    r.set_watch_id(kInvalidWatchId);
    r.set_created(true);
    r.set_canceled(true);
    r.set_cancel_reason(reason);
    SendControl(s, std::move(r));
  };
  if (!w->end.empty() && w->key >= w->end) return fail(kErrEmptyWatcherRange);
  int64_t id = cr.watch_id();
  if (id == 0) {  // clientv3.AutoWatchID
    while (s.watchers.count(s.next_auto_id)) ++s.next_auto_id;
    id = s.next_auto_id++;
  } else if (s.watchers.count(id)) {
    return fail(kErrWatcherDuplicateId);
  }
  w->id = id;
  w->prev_kv = cr.prev_kv();
  w->progress_notify = cr.progress_notify();
  w->fragment = cr.fragment();
  for (int f : cr.filters()) {
    if (f == etcdserverpb::WatchCreateRequest::NOPUT) w->no_put = true;
    if (f == etcdserverpb::WatchCreateRequest::NODELETE) w->no_delete = true;
  }
  const int64_t start = cr.start_revision() < 0 ? 1 : cr.start_revision();
  etcdserverpb::WatchResponse r;
  r.mutable_header()->set_revision(rev_);
  r.set_watch_id(id);
  r.set_created(true);
  SendControl(s, std::move(r));

  Watcher* p = w.get();
  s.watchers[id] = std::move(w);
  if (start == 0 || start > rev_) {
    p->next_rev = std::max(start, rev_ + 1);
    p->synced = true;
    synced_->Add(p);
  } else {
    p->next_rev = start;
    p->synced = false;
    unsynced_[{s.id, id}] = p;
  }
}

void WatchHub::RemoveWatcher(Stream& s, int64_t id) {
  auto it = s.watchers.find(id);
  if (it == s.watchers.end()) return;
  Watcher* w = it->second.get();
  if (w->synced) {
    synced_->Remove(w);
  } else {
    unsynced_.erase({s.id, id});
  }
  s.watchers.erase(it);
}

void WatchHub::SendControl(Stream& s, etcdserverpb::WatchResponse r) { s.sink->Send(std::move(r)); }

void WatchHub::MakeUnsynced(Watcher& w, int64_t next_rev) {
  if (!w.synced) return;
  synced_->Remove(&w);
  w.synced = false;
  w.next_rev = std::max(w.next_rev, next_rev);
  unsynced_[{w.stream->id, w.id}] = &w;
}

void WatchHub::MakeSynced(Watcher& w) {
  if (w.synced) return;
  unsynced_.erase({w.stream->id, w.id});
  w.synced = true;
  w.next_rev = std::max(w.next_rev, rev_ + 1);
  synced_->Add(&w);
}

void WatchHub::FanOut(std::vector<mvccpb::Event>& events, int64_t rev) {
  size_t i = 0;
  while (i < events.size()) {
    const int64_t r = events[i].kv().mod_revision();
    size_t j = i + 1;
    while (j < events.size() && events[j].kv().mod_revision() == r) ++j;
    if (r > rev_) {  // never deliver a revision twice
      FanOutRevision(events.data() + i, events.data() + j, r);
      rev_ = r;
    }
    i = j;
  }
  rev_ = std::max(rev_, rev);
}

void WatchHub::FanOutRevision(const mvccpb::Event* begin, const mvccpb::Event* end, int64_t rev) {
  // (watcher, event index) pairs, ordered by (stream, watch id, event).
  std::vector<std::pair<Watcher*, size_t>> matches;
  std::vector<Watcher*> hits;
  for (const mvccpb::Event* e = begin; e != end; ++e) {
    hits.clear();
    synced_->Match(e->kv().key(), &hits);
    for (Watcher* w : hits) matches.emplace_back(w, static_cast<size_t>(e - begin));
  }
  if (matches.empty()) return;
  std::sort(matches.begin(), matches.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first->stream->id, a.first->id, a.second) <
           std::tie(b.first->stream->id, b.first->id, b.second);
  });
  std::vector<const mvccpb::Event*> evs;
  for (size_t i = 0; i < matches.size();) {
    Watcher* w = matches[i].first;
    evs.clear();
    for (; i < matches.size() && matches[i].first == w; ++i)
      evs.push_back(begin + matches[i].second);
    if (!w->synced || w->next_rev > rev) continue;
    if (Deliver(*w, evs, rev)) {
      w->next_rev = rev + 1;
    } else {
      MakeUnsynced(*w, rev);
    }
  }
}

bool WatchHub::Deliver(Watcher& w, const std::vector<const mvccpb::Event*>& evs,
                       int64_t header_rev) {
  etcdserverpb::WatchResponse r;
  for (const mvccpb::Event* e : evs) {
    if (w.no_put && e->type() == mvccpb::Event::PUT) continue;
    if (w.no_delete && e->type() == mvccpb::Event::DELETE) continue;
    // Copy only what this watcher gets (prev_kv is often as big as kv).
    mvccpb::Event* out = r.add_events();
    out->set_type(e->type());
    *out->mutable_kv() = e->kv();
    if (w.prev_kv && e->has_prev_kv()) *out->mutable_prev_kv() = e->prev_kv();
  }
  if (r.events_size() == 0) return true;  // etcd sends nothing when all are filtered
  if (!w.stream->sink->HasRoom()) return false;
  w.sent_since_tick = true;
  r.mutable_header()->set_revision(header_rev);
  r.set_watch_id(w.id);
  const int64_t limit = options_.fragment_bytes;
  if (!w.fragment || r.events_size() < 2 || static_cast<int64_t>(r.ByteSizeLong()) < limit) {
    w.stream->sink->Send(std::move(r));
    return true;
  }
  // etcd's sendFragments: fill each fragment until it reaches the limit
  // (at least one event each); all but the last carry fragment = true.
  etcdserverpb::WatchResponse proto = r;
  proto.clear_events();
  int idx = 0;
  while (idx < r.events_size()) {
    etcdserverpb::WatchResponse cur = proto;
    int64_t size = static_cast<int64_t>(cur.ByteSizeLong());
    while (idx < r.events_size()) {
      // A repeated field costs its size plus a tag byte and length prefix.
      int64_t ev = static_cast<int64_t>(r.events(idx).ByteSizeLong()) + 1 + 5;
      if (cur.events_size() > 0 && size + ev >= limit) break;
      *cur.add_events() = r.events(idx);
      size += ev;
      ++idx;
    }
    cur.set_fragment(idx < r.events_size());
    w.stream->sink->Send(std::move(cur));
  }
  return true;
}

bool WatchHub::CatchUp() {
  if (unsynced_.empty() || history_ == nullptr) return false;
  const int64_t compacted = history_->CompactedRevision();
  std::vector<Watcher*> ready;
  bool with_prev_kv = false;
  int64_t from = INT64_MAX;
  std::vector<Watcher*> all;
  all.reserve(unsynced_.size());
  for (auto& [k, w] : unsynced_) all.push_back(w);
  for (Watcher* w : all) {
    if (w->next_rev > rev_) {
      MakeSynced(*w);
      continue;
    }
    if (!w->stream->sink->HasRoom()) continue;
    if (w->next_rev < compacted) {
      // etcd: the watcher is dropped with compact_revision set and canceled;
      // the header carries no revision.
      etcdserverpb::WatchResponse r;
      r.mutable_header()->set_revision(0);
      r.set_watch_id(w->id);
      r.set_compact_revision(compacted);
      r.set_canceled(true);
      Stream& s = *w->stream;
      RemoveWatcher(s, w->id);
      SendControl(s, std::move(r));
      continue;
    }
    ready.push_back(w);
    with_prev_kv |= w->prev_kv;
    from = std::min(from, w->next_rev);
  }
  if (ready.empty()) return false;
  auto batch = history_->ReadEvents(from, rev_, catchup_revs_, with_prev_kv);
  if (!batch.ok()) {
    if (absl::IsOutOfRange(batch.status())) return true;  // compacted meanwhile: retry
    Log()->error("watch: reading history from revision {}: {}", from, batch.status().ToString());
    return false;
  }
  const int64_t end = std::max(batch->next_rev, from + 1);
  const auto& events = batch->events;
  // Size the next read so that it holds about two responses' worth of
  // events: a history of big values is not read 1000 revisions at a time.
  {
    int64_t bytes = 0;
    for (const auto& ev : events) bytes += static_cast<int64_t>(ev.ByteSizeLong());
    const int64_t per_rev = std::max<int64_t>(1, bytes / std::max<int64_t>(1, end - from));
    catchup_revs_ =
        std::clamp<int64_t>(2 * options_.fragment_bytes / per_rev, 1, options_.catchup_batch_revs);
  }
  // As etcd's syncWatchers: each watcher gets ONE response with its events
  // of the whole batch (whole revisions only), at the hub's revision.
  // Unlike etcd, a response also stops at a revision boundary once it holds
  // `fragment_bytes` of events (the rest follows in the next round), so one
  // response never carries a whole batch of big values.
  std::vector<const mvccpb::Event*> evs;
  for (Watcher* w : ready) {
    evs.clear();
    int64_t bytes = 0;
    int64_t upto = end;  // first revision not in this response
    for (const auto& ev : events) {
      const int64_t r = ev.kv().mod_revision();
      if (r < w->next_rev || !w->Contains(ev.kv().key())) continue;
      if (bytes >= options_.fragment_bytes && r != evs.back()->kv().mod_revision()) {
        upto = r;
        break;
      }
      evs.push_back(&ev);
      bytes += static_cast<int64_t>(ev.ByteSizeLong());
    }
    if (!evs.empty() && !Deliver(*w, evs, rev_)) continue;  // retried once the sink has room
    w->next_rev = std::max(w->next_rev, upto);
    if (w->next_rev > rev_) MakeSynced(*w);
  }
  for (auto& [k, w] : unsynced_) {
    if (w->stream->sink->HasRoom()) return true;
  }
  return false;
}

bool WatchHub::AllSynced(const Stream& s) const {
  for (const auto& [id, w] : s.watchers) {
    if (!w->synced) return false;
  }
  return true;
}

void WatchHub::AnswerProgressRequests() {
  for (auto it = progress_requested_.begin(); it != progress_requested_.end();) {
    auto s = streams_.find(*it);
    if (s == streams_.end()) {
      it = progress_requested_.erase(it);
      continue;
    }
    if (!AllSynced(*s->second)) {
      ++it;
      continue;
    }
    etcdserverpb::WatchResponse r;
    r.mutable_header()->set_revision(rev_);
    r.set_watch_id(kInvalidWatchId);
    SendControl(*s->second, std::move(r));
    it = progress_requested_.erase(it);
  }
}

void WatchHub::MaybeNotifyProgress() {
  if (options_.progress_notify_interval_ms <= 0) return;
  const auto now = clock_->Now();
  if (now < next_progress_) return;
  next_progress_ = now + std::chrono::milliseconds(options_.progress_notify_interval_ms);
  // etcd: a watcher that asked for progress notifications and got no events
  // during the last interval gets an empty response at the current revision,
  // if it is synced (an unsynced one will see events soon enough).
  for (auto& [sid, s] : streams_) {
    for (auto& [id, w] : s->watchers) {
      if (!w->progress_notify) continue;
      if (w->synced && !w->sent_since_tick && s->sink->HasRoom()) {
        etcdserverpb::WatchResponse r;
        r.mutable_header()->set_revision(rev_);
        r.set_watch_id(id);
        s->sink->Send(std::move(r));
      }
      w->sent_since_tick = false;
    }
  }
}

}  // namespace etcdpp::mvcc
