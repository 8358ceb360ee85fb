// The write-ahead log: the durable record of raft entries, hard state and
// snapshot markers, kept in checksummed segment files (format in wal/format.h).
//
// Lifecycle, as the server uses it:
//   first start:  Wal::Create(dir, metadata)            -> ready to write
//   restart:      markers = Wal::ReadSnapshotMarkers(dir) (before Open)
//                 Wal::Open(dir, newest usable marker)  -> ReadAll() once -> ready to write
//   per Ready:    Save(hard_state, entries, must_sync)
//   snapshot:     SaveSnapshot(marker); later ReleaseTo(index)
//
// Threads: after Create, or after ReadAll has returned OK, Save, SaveSnapshot,
// Append, Sync, ReleaseTo, LastIndex and GetStats may be called from any
// thread concurrently. Writers are ordered by the order their calls take the
// internal lock; whoever finds no write in progress writes everything queued
// so far with one write and ONE fdatasync (group commit); the rest wait and
// are served by the next such batch. The WAL owns no threads.
//
// Errors: a failed write or fdatasync poisons the WAL - every later call
// returns that error, nothing is retried (a retried fsync can report success
// for pages the kernel already dropped). The server must treat it as fatal.
// Opening reports damage as DataLoss naming the file and the offset; only a
// torn tail of the last segment is repaired (truncated, with a warning).
//
// A directory holds at most one open Wal: Create/Open lock <dir>/LOCK.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/file_lock.h"
#include "wal/format.h"

namespace etcdpp::wal {

// A raft log entry as the WAL sees it; `data` is opaque (the server stores
// the serialized raft entry there).
struct Entry {
  uint64_t index = 0;
  uint64_t term = 0;
  std::string data;
  bool operator==(const Entry&) const = default;
};

struct HardState {
  uint64_t term = 0;
  uint64_t vote = 0;
  uint64_t commit = 0;
  bool IsEmpty() const { return term == 0 && vote == 0 && commit == 0; }
  bool operator==(const HardState&) const = default;
};

// Says that a snapshot of the state machine at (index, term) exists, so the
// log before it is no longer needed to rebuild state.
struct SnapshotMarker {
  uint64_t index = 0;
  uint64_t term = 0;
  bool operator==(const SnapshotMarker&) const = default;
};

// Test and fault-injection hooks. All off by default. They can also be set
// for a real process through the environment, e.g.
//   ETCDPP_WAL_FAILPOINTS="write_chunk=64,fail_sync_after=10,fail_write_after_bytes=100000"
struct FaultInjection {
  // Each write(2) carries at most this many bytes (0 = no limit), so that a
  // SIGKILL can land between the pieces of one record.
  size_t write_chunk_bytes = 0;
  // After this many successful fdatasyncs the next one fails with EIO.
  int64_t fail_sync_after = -1;
  // After this many bytes in total, a write stops short and fails (ENOSPC).
  int64_t fail_write_after_bytes = -1;

  // Parses ETCDPP_WAL_FAILPOINTS into *out; false (and *out untouched) when
  // the variable is unset or empty.
  static bool FromEnv(FaultInjection* out);
};

struct Options {
  // Size segments are preallocated to; a segment is closed and the next one
  // started once a write takes it past this size.
  uint64_t segment_size_bytes = 64ull << 20;
  // etcd's --max-wals: ReleaseTo deletes released segments, oldest first,
  // while more than this many segment files exist. 0 = never delete.
  int max_wals = 5;
  // Used when ETCDPP_WAL_FAILPOINTS is unset.
  FaultInjection faults;
};

// What ReadAll found.
struct ReadResult {
  std::string metadata;
  HardState hard_state;  // the newest one; empty if none was ever saved
  SnapshotMarker snapshot;  // the marker Open started from
  // Entries after `snapshot`, contiguous from snapshot.index + 1. When an
  // index was written more than once the last write wins and drops every
  // entry after it that was written before it (raft's conflicting tail).
  std::vector<Entry> entries;
  // Snapshot markers read from the start segment on, in log order.
  std::vector<SnapshotMarker> snapshots;
  // Set when a torn tail was cut off (also logged as a warning).
  bool tail_repaired = false;
  std::string repair_detail;
};

struct Stats {
  uint64_t records = 0;        // records queued by callers
  uint64_t batches = 0;        // write batches (group commits)
  uint64_t syncs = 0;          // fdatasyncs of segment data
  uint64_t bytes_written = 0;  // record bytes written
  uint64_t segments_created = 0;
  uint64_t segments_deleted = 0;
};

class Wal {
 public:
  // True if `dir` holds at least one segment file.
  static bool Exists(const std::string& dir);

  // Makes `dir` (and missing parents), locks it, and writes the first segment:
  // metadata and the snapshot marker {0, 0}. Fails with AlreadyExists if `dir`
  // already holds segments. The returned WAL is ready to write; LastIndex() == 0.
  static absl::StatusOr<std::unique_ptr<Wal>> Create(const std::string& dir,
                                                     std::string_view metadata,
                                                     const Options& options = {});

  // Locks `dir` and prepares to read from the last segment whose first index
  // is <= from.index. Call ReadAll() next. Unavailable if another process (or
  // another Wal in this one) holds the directory.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(const std::string& dir,
                                                   const SnapshotMarker& from,
                                                   const Options& options = {});

  // Reads every segment (without locking or repairing anything) and returns
  // the snapshot markers whose index is <= the newest hard state's commit,
  // in log order: the ones a restart may use (etcd's ValidSnapshotEntries).
  // Call it before Open on the same directory.
  static absl::StatusOr<std::vector<SnapshotMarker>> ReadSnapshotMarkers(const std::string& dir);

  // Reads the log from Open's marker on. NotFound if from.index > 0 and no
  // marker (from.index, from.term) is in the log; DataLoss on damage. A torn
  // tail of the last segment is cut off. Afterwards the WAL appends after the
  // last whole record. REQUIRES: called once, after Open, before any write.
  absl::StatusOr<ReadResult> ReadAll();

  // Persists `entries` (REQUIRES: consecutive indexes) and then `hard_state`
  // (skipped if empty), durably before returning if `sync`. An entry at index
  // i supersedes every entry >= i written before. Nothing to do if both are
  // empty. Called once per raft Ready with sync = Ready's must_sync.
  absl::Status Save(const HardState& hard_state, std::span<const Entry> entries, bool sync);

  // Persists a snapshot marker durably. Save the entries up to marker.index
  // first.
  absl::Status SaveSnapshot(const SnapshotMarker& marker);

  // Appends one entry at index LastIndex() + 1 (assigned under the WAL's
  // lock, so concurrent callers get increasing indexes in log order) and
  // returns its index once it is durable. For many concurrent producers and
  // the benchmark; raft uses Save.
  absl::StatusOr<uint64_t> Append(uint64_t term, std::string_view data);

  // Makes everything written so far durable.
  absl::Status Sync();

  // Declares the log up to `index` no longer needed: the server passes the
  // index of a snapshot marker it has saved, and no more than what the MVCC
  // store has made durable (its consistent index after a flush). Segments
  // before the last one whose first index is <= `index` become releasable and
  // are deleted, oldest first, while more than max_wals segments exist.
  absl::Status ReleaseTo(uint64_t index);

  // Writes and syncs what is queued, then closes the segment and unlocks the
  // directory. Further calls fail. The destructor does this if not done.
  absl::Status Close();
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Index of the newest entry queued (overwrites included).
  uint64_t LastIndex() const;
  Stats GetStats() const;
  // The segment file names in the directory, oldest first (for tests/tools).
  std::vector<std::string> SegmentNames() const;

 private:
  struct Segment {
    uint64_t seq;
    uint64_t first_index;
    std::string name;
  };

  Wal(std::string dir, const Options& options);

  absl::Status CreateSegment(uint64_t seq, uint64_t first_index, std::string header);
  absl::Status WriteAll(int fd, uint64_t offset, std::string_view data);
  absl::Status SyncFd(int fd);
  // Queues one record; caller holds mu_.
  void QueueLocked(RecordType type, std::string_view a, std::string_view b = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until `ticket` is written (and synced if `sync`), writing a batch
  // itself whenever no one else is.
  absl::Status CommitLocked(uint64_t ticket, bool sync) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteBatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckWritableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DoCloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const Options options_;
  FaultInjection faults_;
  std::unique_ptr<FileLock> lock_;
  SnapshotMarker from_;

  // Lock order: mu_ is the only lock; no file I/O happens under it except
  // deleting released segments.
  mutable absl::Mutex mu_;
  enum class State { kOpened, kWritable, kClosed };
  State state_ ABSL_GUARDED_BY(mu_) = State::kOpened;
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  std::string queue_ ABSL_GUARDED_BY(mu_);  // framed records, CRCs not yet filled
  uint64_t queued_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t written_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t synced_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sync_wanted_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // a batch is being written
  uint64_t last_index_ ABSL_GUARDED_BY(mu_) = 0;
  HardState queued_hard_state_ ABSL_GUARDED_BY(mu_);
  std::vector<Segment> segments_ ABSL_GUARDED_BY(mu_);
  uint64_t released_index_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);

  // Owned by the thread that set writing_ (or by Create/ReadAll/Close, when
  // no writer can exist): the open segment and the checksum chain.
  int fd_ = -1;
  uint64_t offset_ = 0;
  uint32_t chain_ = 0;
  uint64_t seq_ = 0;
  std::string metadata_;
  std::string spare_;  // reused batch buffer
  int64_t syncs_done_ = 0;
  int64_t bytes_done_ = 0;
};

// Repair, for operators (etcdpp-wal-tool). Describes every record of every
// segment (with list_records, every record), one line each, into *out, and
// returns the first damage found as DataLoss naming file and offset. Changes
// nothing and takes no lock.
absl::Status Describe(const std::string& dir, bool list_records, std::string* out);

// Deliberately cuts the log: zeroes segment `file_name` from `offset` (a
// record boundary, as named by a DataLoss error) to its end and renames every
// later segment to <name>.broken. Everything after the cut is lost; use only
// when the operator has decided so. Takes the directory lock.
absl::Status TruncateAt(const std::string& dir, const std::string& file_name, uint64_t offset);

}  // namespace etcdpp::wal
