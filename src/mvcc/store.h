// The multi-version key-value store: etcd's revision model on RocksDB.
//
// Every change gets a revision (main, sub): `main` is the store revision of
// the request that made it (one per write request, so a txn is one revision),
// `sub` numbers the changes within that request from 0. Each key keeps its
// history of versions; a delete writes a tombstone. A read at revision R sees,
// for every key, its newest version with main <= R unless that is a tombstone.
// Compaction at C forgets all history that no read at R >= C can see.
//
// Threads: Range(), CurrentRevision(), CompactedRevision() may be called from
// any thread at any time. Write transactions come from ONE thread (the apply
// loop); at most one WriteTxn is open at a time. Reads never wait for writes,
// and a reader never sees half of a write transaction.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv.pb.h"

namespace etcdpp::mvcc {

// Errors, matched by the server's error table to etcd's text and code:
//   absl::OutOfRangeError(kErrCompacted)  -> "etcdserver: mvcc: required revision has been compacted"
//   absl::OutOfRangeError(kErrFutureRev)  -> "etcdserver: mvcc: required revision is a future revision"
inline constexpr char kErrCompacted[] = "mvcc: required revision has been compacted";
inline constexpr char kErrFutureRev[] = "mvcc: required revision is a future revision";

struct RangeOptions {
  int64_t limit = 0;        // at most this many kvs; 0 = no limit
  int64_t rev = 0;          // read at this revision; 0 = current
  bool count_only = false;  // fill only `count`
  bool keys_only = false;   // leave KeyValue.value empty (may skip reading it)
};

struct RangeResult {
  std::vector<mvccpb::KeyValue> kvs;  // ascending by key, at most `limit`
  // The store's current revision when read (etcd answers with it whatever
  // revision was asked for).
  int64_t rev = 0;
  int64_t count = 0;                  // keys in the range at the read revision, ignoring limit
};

// A lease as persisted (etcd's lease bucket), with the keys attached to it.
struct LeaseData {
  int64_t id = 0;
  int64_t ttl = 0;
  int64_t remaining_ttl = 0;  // last checkpoint; 0 = unset
  std::vector<std::string> keys;  // ascending
};

// etcd's HashKV answer (see mvcc/hash_kv.h for how it is computed).
struct HashKVResult {
  uint32_t hash = 0;
  int64_t revision = 0;          // the revision hashed (current when asked 0)
  int64_t compact_revision = 0;  // -1 when never compacted, as etcd reports
};

// Range bounds follow etcd: end == ""   -> the single key `key`;
//                           end == "\0" -> every key >= `key`;
//                           otherwise   -> keys in [key, end) (empty if end <= key).
// A key of "\0" with end "\0" is therefore every key.

struct Options {
  std::string path;  // the RocksDB directory (created if missing)
  // RocksDB block cache size; 0 = RocksDB's default.
  uint64_t block_cache_bytes = 0;
};

class Store {
 public:
  static absl::StatusOr<std::unique_ptr<Store>> Open(const Options& options);
  virtual ~Store() = default;

  // The revision of the newest committed write (1 for an empty store, as etcd).
  virtual int64_t CurrentRevision() const = 0;
  // The newest compaction revision requested (0 if never compacted).
  virtual int64_t CompactedRevision() const = 0;
  // The raft index recorded by the newest committed WriteTxn (0 if none).
  virtual uint64_t ConsistentIndex() const = 0;

  // Reads at opts.rev (0 = current). Fails with kErrCompacted when
  // 0 < rev < CompactedRevision(), with kErrFutureRev when rev > current.
  // rev == CompactedRevision() is still readable.
  virtual absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                            const RangeOptions& opts) const = 0;

  // A write transaction. All changes get main revision CurrentRevision()+1,
  // but only if at least one change is made; a txn of reads only (or a delete
  // that matched nothing) creates no revision.
  class WriteTxn {
   public:
    // Destroying a txn without Commit() discards its changes.
    virtual ~WriteTxn() = default;
    // Like Store::Range, but sees this txn's own earlier changes (etcd: a
    // range after a put in the same txn returns the new value, at rev+1).
    virtual absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                              const RangeOptions& opts) = 0;
    // Puts a new version. Returns the previous live version, if any
    // (for prev_kv). create_revision/version follow etcd: a put on an absent
    // (or deleted) key starts at version 1 with create_revision = this rev.
    virtual absl::StatusOr<std::optional<mvccpb::KeyValue>> Put(std::string_view key,
                                                                std::string_view value,
                                                                int64_t lease) = 0;
    // Deletes every live key in the range (same bounds as Range), writing
    // tombstones. Returns the deleted versions, ascending by key.
    virtual absl::StatusOr<std::vector<mvccpb::KeyValue>> DeleteRange(std::string_view key,
                                                                      std::string_view end) = 0;
    // Lease records, in the same WriteBatch as the txn (a revoke deletes the
    // record and the keys atomically). Which keys are attached to which
    // lease needs no call: Put and DeleteRange keep that index themselves.
    virtual void PutLease(int64_t id, int64_t ttl, int64_t remaining_ttl) = 0;
    virtual void DeleteLease(int64_t id) = 0;
    // Records application metadata (e.g. the raft membership as of this
    // index) in the same WriteBatch. Names live in their own namespace.
    virtual void SetMeta(std::string_view name, std::string_view value) = 0;
    // The revision this txn writes at if it changes anything.
    virtual int64_t Revision() const = 0;
    // True once Put or DeleteRange changed something.
    virtual bool Changed() const = 0;
    // Makes everything atomic and visible in ONE RocksDB WriteBatch, together
    // with `consistent_index` (the raft index of the request). Returns the
    // events in (main, sub) order: PUT with the full kv; DELETE with
    // kv {key, mod_revision = rev}. prev_kv is filled for both. Not synced to
    // disk: call Store::Sync() before acknowledging.
    // A txn that changed nothing still records consistent_index.
    virtual absl::StatusOr<std::vector<mvccpb::Event>> Commit(uint64_t consistent_index) = 0;
  };
  // REQUIRES: no other WriteTxn open. Called from the apply thread only.
  virtual std::unique_ptr<WriteTxn> BeginWrite() = 0;

  // Makes every committed WriteTxn durable (one fsync for all since the last).
  virtual absl::Status Sync() = 0;

  // Compacts at `rev`: errors kErrCompacted if rev <= CompactedRevision(),
  // kErrFutureRev if rev > CurrentRevision(). Records the compaction durably
  // (together with consistent_index) and makes reads below `rev` fail at once;
  // the history is deleted in the background without blocking reads or
  // writes. `done` (may be empty) runs on the background thread when the
  // physical deletion has finished (etcd's `physical` compaction).
  // Apply thread only. A compaction interrupted by a crash resumes on Open.
  virtual absl::Status Compact(int64_t rev, uint64_t consistent_index,
                               std::function<void()> done) = 0;

  // Every persisted lease with its attached keys (live keys only), ascending
  // by ID: what a restarted member rebuilds its lessor from, without
  // scanning the key space.
  virtual absl::StatusOr<std::vector<LeaseData>> LoadLeases() const = 0;

  // Application metadata written by WriteTxn::SetMeta; nullopt if never set.
  virtual absl::StatusOr<std::optional<std::string>> GetMeta(std::string_view name) const = 0;

  // etcd's consistency hash of the history up to `rev` (0 = current).
  // Errors: kErrCompacted when rev <= the compacted revision, kErrFutureRev.
  virtual absl::StatusOr<HashKVResult> HashKV(int64_t rev) const = 0;

  // Approximate bytes the store occupies on disk (Status.db_size).
  virtual int64_t SizeBytes() const = 0;
  // Bytes in use (Status.db_size_in_use); may equal SizeBytes().
  virtual int64_t SizeInUseBytes() const = 0;

  // Writes a consistent copy of the whole store (its consistent index
  // included) into `dir`, which must not exist: what a member sends a
  // follower that fell behind the log. Any thread.
  virtual absl::Status Checkpoint(const std::string& dir) const {
    return absl::UnimplementedError("this store cannot checkpoint");
  }
};

// A Store whose contents can be replaced whole by another store (a snapshot
// received from the leader) while other threads keep using it: every call
// goes to the current store under a shared lock; Swap takes it exclusively.
class SwappableStore final : public Store {
 public:
  explicit SwappableStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}

  // Replaces the store; returns the old one (close it by destroying it).
  // REQUIRES: no WriteTxn open (call from the apply thread).
  std::unique_ptr<Store> Swap(std::unique_ptr<Store> next);
  // Runs f on the current store under the shared lock.
  template <typename F>
  auto With(F&& f) const {
    absl::ReaderMutexLock l(&mu_);
    return f(inner_.get());
  }

  int64_t CurrentRevision() const override;
  int64_t CompactedRevision() const override;
  uint64_t ConsistentIndex() const override;
  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                    const RangeOptions& opts) const override;
  std::unique_ptr<WriteTxn> BeginWrite() override;
  absl::Status Sync() override;
  absl::Status Compact(int64_t rev, uint64_t consistent_index,
                       std::function<void()> done) override;
  absl::StatusOr<std::vector<LeaseData>> LoadLeases() const override;
  absl::StatusOr<std::optional<std::string>> GetMeta(std::string_view name) const override;
  absl::StatusOr<HashKVResult> HashKV(int64_t rev) const override;
  int64_t SizeBytes() const override;
  int64_t SizeInUseBytes() const override;
  absl::Status Checkpoint(const std::string& dir) const override;

 private:
  mutable absl::Mutex mu_;
  std::unique_ptr<Store> inner_ ABSL_GUARDED_BY(mu_);
};

}  // namespace etcdpp::mvcc
