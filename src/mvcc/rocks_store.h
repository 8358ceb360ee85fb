// RocksStore: the Store of store.h on RocksDB. Internal to src/mvcc and its
// tests; the server uses only store.h (Store::Open returns a RocksStore).
//
// Layout (encodings and worked example in encoding.h):
//   CF "key"  user_key|~main|~sub -> {tombstone, create_rev, version, lease, value}
//             ordered by KeyRevComparator (user key, then newest first);
//             prefix bloom on the user key for single-key reads.
//   CF "rev"  main|sub -> {put/delete, user_key}: the event log, for watch
//             replay (sequential scan) and compaction.
//   CF "lease" lease records and the lease -> key attachment index.
//   CF "meta" consistent_index, current_rev, scheduled_compact_rev,
//             finished_compact_rev, format.
// Everything lives in one RocksDB, so a checkpoint is a consistent snapshot,
// and a later CF (e.g. "lease") is one more entry in the CF list.
//
// Reads: a reader loads current_rev_, then creates a RocksDB iterator (an
// implicit snapshot), then loads compacted_rev_. Commits publish current_rev_
// only after their batch is in RocksDB, and Compact publishes compacted_rev_
// before the background deletion starts, so (a) every change <= the revision
// read is in the snapshot, changes above it are filtered by revision, and (b)
// if the check passes, no deletion that could hide the requested revision is
// in the snapshot. A read of the current revision (rev 0) that loses this race
// to a compaction retries instead of failing, as etcd never fails it. No locks
// on the read path. RangeResult.rev is the current revision of the snapshot,
// whatever revision was read: etcd puts exactly that in the response header.
//
// Write txn: changes go to a rocksdb::WriteBatchWithIndex; its reads merge
// the batch with the DB (NewIteratorWithBase), so it sees its own writes at
// Revision(). Commit writes the batch plus meta {consistent_index,
// current_rev} as ONE RocksDB write (not synced; Sync() = SyncWAL).
//
// Compaction at C (background thread, batched; see RunCompaction()): walk CF
// "rev" from finished_compact_rev to C; for each key changed there, keep its
// newest version <= C unless that is a tombstone, and delete every older
// version (a tombstone last, so a reader never sees an older version revive);
// delete the walked "rev" entries below C in the same WriteBatch (those at C
// stay so a watch from C replays what survives, as in etcd; the next
// compaction drops them). Each batch is idempotent, and the walked entries are
// the progress marker, so a compaction cut by a crash resumes on Open from
// scheduled_compact_rev. Compaction touches only versions <= C, which no
// writer changes, so it needs no lock against the apply thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "mvcc/encoding.h"
#include "mvcc/store.h"
#include "rocksdb/db.h"

namespace etcdpp::mvcc {

// Knobs for tests and benchmarks; the defaults are the production values.
struct InternalOptions {
  // "rev" entries walked per compaction batch (one WriteBatch, plus more only
  // when a hot key has many versions to delete).
  int64_t compaction_batch_revs = 1000;
  // A compaction WriteBatch is written once it holds this many deletions.
  int64_t compaction_max_batch_deletes = 10000;
  // Test only: the compactor stops (as if the process died) after this many
  // batches of a compaction, without finishing it. -1 = never.
  int64_t compaction_crash_after_batches = -1;
  // Test only: do not start the background compactor.
  bool disable_compactor = false;
};

class RocksStore final : public Store {
 public:
  static absl::StatusOr<std::unique_ptr<RocksStore>> Open(const Options& options,
                                                          const InternalOptions& internal);
  ~RocksStore() override;
  RocksStore(const RocksStore&) = delete;
  RocksStore& operator=(const RocksStore&) = delete;

  int64_t CurrentRevision() const override { return current_rev_.load(); }
  int64_t CompactedRevision() const override { return compacted_rev_.load(); }
  uint64_t ConsistentIndex() const override { return consistent_index_.load(); }
  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                    const RangeOptions& opts) const override;
  std::unique_ptr<WriteTxn> BeginWrite() override;
  absl::Status Sync() override;
  absl::Status Compact(int64_t rev, uint64_t consistent_index, std::function<void()> done) override;
  absl::StatusOr<std::vector<LeaseData>> LoadLeases() const override;
  absl::StatusOr<std::optional<std::string>> GetMeta(std::string_view name) const override;
  absl::StatusOr<HashKVResult> HashKV(int64_t rev) const override;
  int64_t SizeBytes() const override;
  int64_t SizeInUseBytes() const override;
  absl::Status Checkpoint(const std::string& dir) const override;

  // Watch replay, for the watch manager (any thread): the events with main
  // revision in [from_rev, to_rev] (to_rev <= 0: current), in (main, sub)
  // order, at most `max_revs` whole revisions (<= 0: no limit). One scan of
  // CF "rev" from from_rev plus one point read per event, all at one RocksDB
  // snapshot. Events are shaped as Commit returns them; prev_kv is filled
  // only with `with_prev_kv`, as etcd's watch server does it: a read at
  // main-1, left empty when that revision is compacted. Fails with
  // kErrCompacted when from_rev < CompactedRevision() (etcd replays from the
  // compacted revision itself: the events whose versions survived).
  struct EventBatch {
    std::vector<mvccpb::Event> events;
    int64_t next_rev = 0;  // first revision not returned: resume from here
  };
  absl::StatusOr<EventBatch> ReadEvents(int64_t from_rev, int64_t to_rev, int64_t max_revs,
                                        bool with_prev_kv) const;

  // ---- for tests and tools ----
  // The newest compaction whose physical deletion has finished.
  int64_t FinishedCompactionRevision() const;
  // Blocks until the compactor has nothing left to do (or has stopped).
  void WaitForCompactor();
  // Flushes memtables to SST files, so reads exercise the table readers.
  absl::Status FlushForTest();
  // Every stored version of `user_key` (tombstones too), newest first.
  std::vector<Revision> RawVersionsForTest(std::string_view user_key) const;
  // Number of entries in CF "rev".
  int64_t RawRevEntriesForTest() const;

  // Used by the write txn.
  rocksdb::DB* db() const { return db_; }
  rocksdb::ColumnFamilyHandle* key_cf() const { return key_cf_; }
  rocksdb::ColumnFamilyHandle* rev_cf() const { return rev_cf_; }
  rocksdb::ColumnFamilyHandle* meta_cf() const { return meta_cf_; }

 private:
  class Txn;
  friend class Txn;

  RocksStore(const Options& options, const InternalOptions& internal);
  absl::Status OpenDb();
  void OnCommitted(int64_t rev, bool changed, uint64_t consistent_index);
  void CompactorLoop();
  // Deletes history up to `rev`. Returns Cancelled if stopped before the end.
  absl::Status RunCompaction(int64_t rev);

  const Options options_;
  const InternalOptions internal_;
  rocksdb::DB* db_ = nullptr;                          // owned
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // owned
  rocksdb::ColumnFamilyHandle* key_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* rev_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* lease_cf_ = nullptr;

  std::atomic<int64_t> current_rev_{1};
  std::atomic<int64_t> compacted_rev_{0};
  std::atomic<uint64_t> consistent_index_{0};
  std::atomic<bool> txn_open_{false};

  // Compactor state. Lock order: mu_ is a leaf (never held across RocksDB
  // writes or `done` callbacks).
  mutable absl::Mutex mu_;
  int64_t compact_target_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t compact_finished_ ABSL_GUARDED_BY(mu_) = 0;
  bool compactor_busy_ ABSL_GUARDED_BY(mu_) = false;
  bool compactor_stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<int64_t, std::function<void()>>> done_ ABSL_GUARDED_BY(mu_);
  std::thread compactor_;
};

}  // namespace etcdpp::mvcc
