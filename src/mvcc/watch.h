// The watch manager: etcd's Watch semantics over the MVCC history.
//
// WatchHub serves every watch stream of a member. It is fed by the apply loop
// (OnApplied, after the batch is durable) and by the revision-ordered history
// in the store (WatchHistory, for replay and for watchers that fell behind),
// so a follower can serve watches from its own applied state unchanged.
//
// Guarantees (etcd's): per watcher, events are delivered in revision order,
// never duplicated, never missed, and all events of one revision that match
// the watcher go out in ONE response (split only when the watcher asked for
// `fragment` and the response exceeds the size limit). As etcd does, a synced
// watcher gets one response per revision (header.revision = that revision),
// and a catching-up watcher one response per catch-up batch (several whole
// revisions; header.revision = the hub's revision).
//
// Design (one hub thread owns all watcher state; nothing here blocks apply):
//
//   apply loop ──OnApplied(events, rev)──► pending queue (bounded in bytes)
//   gRPC threads ──Request/OpenStream/CloseStream──► command queue
//                                   │
//                              hub thread (RunOnce):
//     1. pending batches: each revision's events are matched against the
//        SYNCED watchers through a key index (hash map for single keys, an
//        interval index for ranges/prefixes/from-key) and handed to each
//        watcher's stream sink;
//     2. commands: create (synced if start_revision is 0 or in the future,
//        else unsynced), cancel, progress request. After step 1, so "from
//        now" is after every write acknowledged before the request;
//     3. catch-up: UNSYNCED watchers (new with an old start_revision, or
//        moved aside because their stream's sink was full) replay at most
//        `catchup_batch_revs` revisions per round from WatchHistory, one read
//        shared by all of them, then rejoin the synced set when they reach
//        the hub's revision;
//     4. progress: pending progress requests (answered once every watcher of
//        the stream is synced) and periodic progress notifications.
//
// Bounds: the pending queue holds at most `max_pending_bytes` of events; past
// that it is dropped and every synced watcher becomes unsynced (they catch up
// from the store). A sink reports when it holds too much (HasRoom() false);
// a watcher whose next response does not fit is moved aside (unsynced) and
// its catch-up waits until the sink has room again. So memory is bounded by
// the sinks' bounds plus one catch-up batch, and a client that never reads
// slows nobody else.
//
// Revisions visible to watchers never exceed the newest revision passed to
// OnApplied: the store may hold newer, not yet durable, changes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "kv.pb.h"
#include "mvcc/store.h"
#include "rpc.pb.h"

namespace etcdpp::mvcc {

// etcd's watch errors (mvcc/watcher.go), sent as cancel_reason.
inline constexpr char kErrWatcherDuplicateId[] =
    "mvcc: duplicate watch ID provided on the WatchStream";
inline constexpr char kErrEmptyWatcherRange[] = "mvcc: watcher range is empty";
// clientv3.InvalidWatchID: the watch_id of failed creates and progress responses.
inline constexpr int64_t kInvalidWatchId = -1;

// The revision-ordered history the hub replays from. Thread-safe.
class WatchHistory {
 public:
  struct Batch {
    std::vector<mvccpb::Event> events;  // (main, sub) order
    int64_t next_rev = 0;               // first revision not covered
  };
  virtual ~WatchHistory() = default;
  // Events with main revision in [from_rev, to_rev], at most `max_revs` whole
  // revisions. Fails with OutOfRange(kErrCompacted) if from_rev < compacted.
  virtual absl::StatusOr<Batch> ReadEvents(int64_t from_rev, int64_t to_rev, int64_t max_revs,
                                           bool with_prev_kv) const = 0;
  virtual int64_t CompactedRevision() const = 0;
};

// The history of a Store opened by Store::Open (a RocksStore: the only
// implementation with an event log). `store` is not owned and must outlive
// the result. Returns null if `store` has no event log.
std::unique_ptr<WatchHistory> MakeStoreHistory(const Store* store);

// One watch stream's outgoing side (the gRPC reactor, or a test).
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // False while the sink holds more than its bound. Any thread.
  virtual bool HasRoom() const = 0;
  // Queues a response; never blocks. The hub sets header.revision; the sink
  // fills the rest of the header. Called from the hub thread only.
  virtual void Send(etcdserverpb::WatchResponse resp) = 0;
};

struct WatchHubOptions {
  // --experimental-watch-progress-notify-interval (etcd: 10 min; 0 = off).
  int64_t progress_notify_interval_ms = 10 * 60 * 1000;
  // At most this many revisions are read from the history per catch-up
  // round (etcd's watchBatchMaxRevs); fewer when the revisions are big (the
  // hub aims at about 2 x fragment_bytes per read).
  int64_t catchup_batch_revs = 1000;
  // Bytes of applied events queued for the hub before it gives up on them
  // and lets every synced watcher catch up from the store instead.
  int64_t max_pending_bytes = 64ll << 20;
  // Responses of fragmenting watchers are split above this size (etcd:
  // --max-request-bytes plus gRPC's overhead).
  int64_t fragment_bytes = 1572864 + 512 * 1024;
};

class WatchHub {
 public:
  // `history` is owned. `clock` (not owned) times progress notifications.
  // `current_rev`: the newest durable revision at start.
  WatchHub(std::unique_ptr<WatchHistory> history, int64_t current_rev, Clock* clock,
           WatchHubOptions options);
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Starts/stops the hub thread (tests may call RunOnce instead). Stop is
  // idempotent; after it, every call is a no-op.
  void Start();
  void Stop();

  // ---- any thread ----
  // A new stream; `sink` is shared with the caller until CloseStream.
  int64_t OpenStream(std::shared_ptr<WatchSink> sink);
  void Request(int64_t stream_id, etcdserverpb::WatchRequest req);
  void CloseStream(int64_t stream_id);
  // A sink has room again.
  void Wake();

  // ---- apply loop ----
  // The events of an applied, durable batch in (main, sub) order, and the
  // store revision after it. Never blocks on watchers.
  void OnApplied(std::vector<mvccpb::Event> events, int64_t rev);

  // ---- hub thread, or a test driving the hub by hand ----
  // Does everything that is ready; returns true if more work is ready now
  // (a catch-up round left unsynced watchers that could take more).
  bool RunOnce();

  // For tests and metrics (any thread).
  struct Stats {
    int64_t rev = 0;
    int64_t watchers = 0;
    int64_t synced = 0;
    int64_t unsynced = 0;
    int64_t pending_bytes = 0;
    int64_t overflows = 0;
  };
  Stats GetStats() const;

 private:
  struct Watcher;
  struct Stream;
  class KeyIndex;
  struct Command {
    enum Kind { kOpen, kRequest, kClose } kind;
    int64_t stream_id = 0;
    std::shared_ptr<WatchSink> sink;
    etcdserverpb::WatchRequest req;
  };

  void Loop();
  void HandleCommand(Command& c);
  void Create(Stream& s, const etcdserverpb::WatchCreateRequest& cr);
  void RemoveWatcher(Stream& s, int64_t id);
  void FanOut(std::vector<mvccpb::Event>& events, int64_t rev);
  void FanOutRevision(const mvccpb::Event* begin, const mvccpb::Event* end, int64_t rev);
  // Sends `evs` (whole revisions, matching `w`) to w's sink as one response
  // (or fragments) at `header_rev`, applying its filters and prev_kv choice.
  // False if the sink had no room (nothing sent).
  bool Deliver(Watcher& w, const std::vector<const mvccpb::Event*>& evs, int64_t header_rev);
  void MakeUnsynced(Watcher& w, int64_t next_rev);
  void MakeSynced(Watcher& w);
  bool CatchUp();
  void AnswerProgressRequests();
  void MaybeNotifyProgress();
  bool AllSynced(const Stream& s) const;
  void SendControl(Stream& s, etcdserverpb::WatchResponse r);

  const std::unique_ptr<WatchHistory> history_;
  Clock* const clock_;
  const WatchHubOptions options_;

  // ---- shared with other threads ----
  mutable absl::Mutex mu_;  // leaf lock; never held while matching or reading history
  std::vector<Command> commands_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::vector<mvccpb::Event>, int64_t>> pending_ ABSL_GUARDED_BY(mu_);
  int64_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t latest_rev_ ABSL_GUARDED_BY(mu_) = 0;  // newest rev passed to OnApplied
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_stream_id_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;

  // ---- hub thread only ----
  int64_t rev_ = 0;           // newest revision delivered to synced watchers
  int64_t catchup_revs_ = 0;  // revisions per history read, adapted to their size
  std::map<int64_t, std::unique_ptr<Stream>> streams_;
  std::unique_ptr<KeyIndex> synced_;
  // Unsynced watchers by (stream, watch id): a deterministic order.
  std::map<std::pair<int64_t, int64_t>, Watcher*> unsynced_;
  std::set<int64_t> progress_requested_;  // streams awaiting a progress answer
  std::chrono::steady_clock::time_point next_progress_;
  int64_t overflows_ = 0;
};

}  // namespace etcdpp::mvcc
