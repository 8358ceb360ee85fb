#include "mvcc/rocks_store.h"

#include "mvcc/hash_kv.h"

#include <algorithm>
#include <map>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "rocksdb/cache.h"
#include "rocksdb/convenience.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/utilities/table_properties_collectors.h"
#include "rocksdb/utilities/write_batch_with_index.h"
#include "rocksdb/write_batch.h"
#include "spdlog/spdlog.h"

namespace etcdpp::mvcc {
namespace {

constexpr char kKeyCf[] = "key";
constexpr char kRevCf[] = "rev";
constexpr char kMetaCf[] = "meta";
constexpr char kLeaseCf[] = "lease";
// Block cache shared by all column families when Options leaves it at 0.
constexpr uint64_t kDefaultBlockCacheBytes = 32ull << 20;
// Next() calls tried before a Seek when skipping a key's other versions:
// most keys have one or two versions, and Next is much cheaper than Seek.
constexpr int kNextsBeforeSeek = 3;

std::shared_ptr<spdlog::logger> Log() {
  auto logger = spdlog::get("mvcc");
  return logger ? logger : spdlog::default_logger();
}

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(std::string(what), ": ", s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

absl::Status CompactedError() { return absl::OutOfRangeError(std::string(kErrCompacted)); }
absl::Status FutureRevError() { return absl::OutOfRangeError(std::string(kErrFutureRev)); }

// Range bounds as etcd defines them (see store.h).
struct Bounds {
  enum Kind { kSingle, kFromKey, kRange };
  Kind kind;
  std::string_view key;
  std::string_view end;

  static Bounds Make(std::string_view key, std::string_view end) {
    if (end.empty()) return Bounds{kSingle, key, end};
    if (end == std::string_view("\0", 1)) return Bounds{kFromKey, key, end};
    return Bounds{kRange, key, end};
  }
  bool Empty() const { return kind == kRange && end <= key; }
  bool Past(std::string_view user_key) const {
    switch (kind) {
      case kSingle:
        return user_key != key;
      case kFromKey:
        return false;
      case kRange:
        return user_key >= end;
    }
    return true;
  }
};

// ReadOptions for scanning CF "key" within `b`. `upper` backs the upper bound
// slice and must outlive the iterator.
rocksdb::ReadOptions KeyReadOptions(const Bounds& b, std::string* upper,
                                    rocksdb::Slice* upper_slice) {
  rocksdb::ReadOptions ro;
  if (b.kind == Bounds::kSingle) {
    // Prefix mode: the bloom filter on the user key can skip whole files.
    ro.prefix_same_as_start = true;
  } else {
    ro.total_order_seek = true;
    if (b.kind == Bounds::kRange && !b.Empty()) {
      // The smallest CF "key" entry of user key `end`: everything below it
      // belongs to keys < end.
      *upper = VersionSeekKey(b.end, std::numeric_limits<int64_t>::max());
      *upper_slice = rocksdb::Slice(*upper);
      ro.iterate_upper_bound = upper_slice;
    }
  }
  return ro;
}

// Collects the keys in `b` visible at `rev` through `it` (any iterator over
// CF "key", including one merged with a write batch). Appends to `out`.
absl::Status ScanAt(rocksdb::Iterator* it, const Bounds& b, int64_t rev, const RangeOptions& opts,
                    RangeResult* out) {
  if (b.Empty()) return absl::OkStatus();
  it->Seek(VersionSeekKey(b.key, rev));
  std::string cur;
  while (it->Valid()) {
    rocksdb::Slice k = it->key();
    if (k.size() < kRevSuffixBytes) return absl::DataLossError("mvcc: short key in CF key");
    std::string_view uk = VersionUserKey(k);
    if (b.Past(uk)) break;
    Revision r = VersionRevision(k);
    if (r.main > rev) {
      // Newer than `rev`: the visible version of `uk`, if any, comes later.
      cur.assign(uk);
      bool landed = false;
      for (int i = 0; i < kNextsBeforeSeek; ++i) {
        it->Next();
        if (!it->Valid()) break;
        rocksdb::Slice nk = it->key();
        if (VersionUserKey(nk) != cur || VersionRevision(nk).main <= rev) {
          landed = true;
          break;
        }
      }
      if (!landed && it->Valid()) it->Seek(VersionSeekKey(cur, rev));
      continue;
    }
    VersionValue v;
    if (!DecodeVersionValue(it->value(), &v)) {
      return absl::DataLossError("mvcc: corrupt value in CF key");
    }
    if (!v.tombstone) {
      ++out->count;
      if (!opts.count_only &&
          (opts.limit <= 0 || static_cast<int64_t>(out->kvs.size()) < opts.limit)) {
        mvccpb::KeyValue& kv = out->kvs.emplace_back();
        kv.set_key(uk.data(), uk.size());
        kv.set_create_revision(v.create_revision);
        kv.set_mod_revision(r.main);
        kv.set_version(v.version);
        kv.set_lease(v.lease);
        if (!opts.keys_only) kv.set_value(v.value.data(), v.value.size());
      }
    }
    if (b.kind == Bounds::kSingle) break;
    // Skip the older versions of `uk`.
    cur.assign(uk);
    bool moved = false;
    for (int i = 0; i < kNextsBeforeSeek; ++i) {
      it->Next();
      if (!it->Valid()) break;
      if (VersionUserKey(it->key()) != cur) {
        moved = true;
        break;
      }
    }
    if (!moved && it->Valid()) it->Seek(AfterAllVersionsKey(cur));
  }
  return FromRocks(it->status(), "mvcc: range scan");
}

rocksdb::CompressionType PickCompression(bool bottommost) {
  auto supported = rocksdb::GetSupportedCompressions();
  auto has = [&](rocksdb::CompressionType t) {
    return std::find(supported.begin(), supported.end(), t) != supported.end();
  };
  if (bottommost && has(rocksdb::kZSTD)) return rocksdb::kZSTD;
  if (has(rocksdb::kLZ4Compression)) return rocksdb::kLZ4Compression;
  if (has(rocksdb::kSnappyCompression)) return rocksdb::kSnappyCompression;
  return rocksdb::kNoCompression;
}

}  // namespace

// ---------------------------------------------------------------------------
// Write transaction. Changes go to a WriteBatchWithIndex; reads merge it with
// the DB (NewIteratorWithBase), so the txn sees its own writes at Revision().

class RocksStore::Txn final : public Store::WriteTxn {
 public:
  explicit Txn(RocksStore* store) : store_(store), begin_rev_(store->current_rev_.load()) {}
  // A committed txn no longer counts as open, so the next BeginWrite may
  // come before this object is destroyed.
  ~Txn() override {
    if (!committed_) store_->txn_open_.store(false);
  }

  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                    const RangeOptions& opts) override {
    int64_t cur = begin_rev_ + (Changed() ? 1 : 0);
    int64_t rev = opts.rev;
    if (rev > cur) return FutureRevError();
    if (rev <= 0) rev = cur;
    if (rev < store_->compacted_rev_.load()) return CompactedError();
    Bounds b = Bounds::Make(key, end);
    std::string upper;
    rocksdb::Slice upper_slice;
    rocksdb::ReadOptions ro = KeyReadOptions(b, &upper, &upper_slice);
    std::unique_ptr<rocksdb::Iterator> it(store_->db_->NewIterator(ro, store_->key_cf_));
    if (Changed()) {
      // Takes ownership of the base iterator.
      it.reset(batch_.NewIteratorWithBase(store_->key_cf_, it.release(), &ro));
    }
    RangeResult out;
    out.rev = cur;
    ETCDPP_RETURN_IF_ERROR(ScanAt(it.get(), b, rev, opts, &out));
    return out;
  }

  absl::StatusOr<std::optional<mvccpb::KeyValue>> Put(std::string_view key, std::string_view value,
                                                      int64_t lease) override {
    if (committed_) return absl::FailedPreconditionError("mvcc: txn already committed");
    ETCDPP_ASSIGN_OR_RETURN(RangeResult prev, Range(key, "", RangeOptions{}));
    const mvcc::Revision rev{begin_rev_ + 1, next_sub_};
    std::optional<mvccpb::KeyValue> prev_kv;
    if (!prev.kvs.empty()) prev_kv = std::move(prev.kvs[0]);
    // etcd: a put on an absent or deleted key starts a new generation.
    int64_t create_rev = prev_kv ? prev_kv->create_revision() : rev.main;
    int64_t version = prev_kv ? prev_kv->version() + 1 : 1;
    ETCDPP_RETURN_IF_ERROR(FromRocks(batch_.Put(store_->key_cf_, VersionKey(key, rev),
                                                EncodePutValue(create_rev, version, lease, value)),
                                     "mvcc: put"));
    ETCDPP_RETURN_IF_ERROR(
        FromRocks(batch_.Put(store_->rev_cf_, RevKey(rev), EncodeRevValue(EventKind::kPut, key)),
                  "mvcc: put"));
    // The lease -> key index follows the live version.
    if (prev_kv && prev_kv->lease() != 0 && prev_kv->lease() != lease) {
      ETCDPP_RETURN_IF_ERROR(FromRocks(
          batch_.Delete(store_->lease_cf_, LeaseAttachKey(prev_kv->lease(), key)), "mvcc: put"));
    }
    if (lease != 0) {
      ETCDPP_RETURN_IF_ERROR(
          FromRocks(batch_.Put(store_->lease_cf_, LeaseAttachKey(lease, key), ""), "mvcc: put"));
    }
    mvccpb::Event& ev = events_.emplace_back();
    ev.set_type(mvccpb::Event::PUT);
    mvccpb::KeyValue* kv = ev.mutable_kv();
    kv->set_key(key.data(), key.size());
    kv->set_create_revision(create_rev);
    kv->set_mod_revision(rev.main);
    kv->set_version(version);
    kv->set_value(value.data(), value.size());
    kv->set_lease(lease);
    if (prev_kv) *ev.mutable_prev_kv() = *prev_kv;
    ++next_sub_;
    return prev_kv;
  }

  absl::StatusOr<std::vector<mvccpb::KeyValue>> DeleteRange(std::string_view key,
                                                            std::string_view end) override {
    if (committed_) return absl::FailedPreconditionError("mvcc: txn already committed");
    ETCDPP_ASSIGN_OR_RETURN(RangeResult live, Range(key, end, RangeOptions{}));
    for (const mvccpb::KeyValue& kv : live.kvs) {
      const mvcc::Revision rev{begin_rev_ + 1, next_sub_};
      ETCDPP_RETURN_IF_ERROR(
          FromRocks(batch_.Put(store_->key_cf_, VersionKey(kv.key(), rev), EncodeTombstoneValue()),
                    "mvcc: delete"));
      ETCDPP_RETURN_IF_ERROR(FromRocks(
          batch_.Put(store_->rev_cf_, RevKey(rev), EncodeRevValue(EventKind::kDelete, kv.key())),
          "mvcc: delete"));
      if (kv.lease() != 0) {
        ETCDPP_RETURN_IF_ERROR(FromRocks(
            batch_.Delete(store_->lease_cf_, LeaseAttachKey(kv.lease(), kv.key())),
            "mvcc: delete"));
      }
      mvccpb::Event& ev = events_.emplace_back();
      ev.set_type(mvccpb::Event::DELETE);
      ev.mutable_kv()->set_key(kv.key());
      ev.mutable_kv()->set_mod_revision(rev.main);
      *ev.mutable_prev_kv() = kv;
      ++next_sub_;
    }
    return std::move(live.kvs);
  }

  void PutLease(int64_t id, int64_t ttl, int64_t remaining_ttl) override {
    ETCDPP_CHECK_OK(FromRocks(batch_.Put(store_->lease_cf_, LeaseRecordKey(id),
                                         EncodeLeaseRecord(ttl, remaining_ttl)),
                              "mvcc: lease"));
  }

  void DeleteLease(int64_t id) override {
    ETCDPP_CHECK_OK(FromRocks(batch_.Delete(store_->lease_cf_, LeaseRecordKey(id)), "mvcc: lease"));
  }

  void SetMeta(std::string_view name, std::string_view value) override {
    ETCDPP_CHECK_OK(FromRocks(
        batch_.Put(store_->meta_cf_, std::string(kMetaAppPrefix) + std::string(name), value), "mvcc: meta"));
  }

  int64_t Revision() const override { return begin_rev_ + 1; }
  bool Changed() const override { return next_sub_ > 0; }

  absl::StatusOr<std::vector<mvccpb::Event>> Commit(uint64_t consistent_index) override {
    if (committed_) return absl::FailedPreconditionError("mvcc: txn already committed");
    const bool changed = Changed();
    ETCDPP_RETURN_IF_ERROR(
        FromRocks(batch_.Put(store_->meta_cf_, kMetaConsistentIndex, EncodeU64(consistent_index)),
                  "mvcc: commit"));
    if (changed) {
      ETCDPP_RETURN_IF_ERROR(
          FromRocks(batch_.Put(store_->meta_cf_, kMetaCurrentRev, EncodeU64(begin_rev_ + 1)),
                    "mvcc: commit"));
    }
    // Not synced: the server calls Sync() once per group of commits.
    rocksdb::WriteOptions wo;
    ETCDPP_RETURN_IF_ERROR(
        FromRocks(store_->db_->Write(wo, batch_.GetWriteBatch()), "mvcc: commit"));
    committed_ = true;
    store_->OnCommitted(begin_rev_ + 1, changed, consistent_index);
    store_->txn_open_.store(false);
    return std::move(events_);
  }

 private:
  RocksStore* const store_;
  const int64_t begin_rev_;
  rocksdb::WriteBatchWithIndex batch_;
  int64_t next_sub_ = 0;
  bool committed_ = false;
  std::vector<mvccpb::Event> events_;
};

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const Options& options) {
  ETCDPP_ASSIGN_OR_RETURN(std::unique_ptr<RocksStore> store,
                          RocksStore::Open(options, InternalOptions{}));
  return std::unique_ptr<Store>(std::move(store));
}

RocksStore::RocksStore(const Options& options, const InternalOptions& internal)
    : options_(options), internal_(internal) {}

absl::StatusOr<std::unique_ptr<RocksStore>> RocksStore::Open(const Options& options,
                                                             const InternalOptions& internal) {
  if (options.path.empty()) return absl::InvalidArgumentError("mvcc: empty store path");
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("mvcc: cannot create ", options.path, ": ", ec.message()));
  }
  std::unique_ptr<RocksStore> store(new RocksStore(options, internal));
  ETCDPP_RETURN_IF_ERROR(store->OpenDb());
  if (!internal.disable_compactor) {
    store->compactor_ = std::thread([s = store.get()] { s->CompactorLoop(); });
  }
  return store;
}

absl::Status RocksStore::OpenDb() {
  rocksdb::DBOptions dbo;
  dbo.create_if_missing = true;
  dbo.create_missing_column_families = true;
  // Two cores are the norm for an etcd member; RocksDB flushes and compacts
  // in the background without ever blocking our reads.
  dbo.max_background_jobs = 2;
  dbo.bytes_per_sync = 1 << 20;
  dbo.keep_log_file_num = 4;
  dbo.max_total_wal_size = 256ull << 20;
  // Memtables of all column families share one budget: memory stays bounded
  // whatever the write rate or the number of keys.
  dbo.db_write_buffer_size = 128ull << 20;

  auto cache = rocksdb::NewLRUCache(options_.block_cache_bytes > 0 ? options_.block_cache_bytes
                                                                   : kDefaultBlockCacheBytes);
  auto base_cf = [&](bool bloom) {
    rocksdb::ColumnFamilyOptions cfo;
    cfo.compaction_style = rocksdb::kCompactionStyleLevel;
    cfo.level_compaction_dynamic_level_bytes = true;
    cfo.compression = PickCompression(false);
    cfo.bottommost_compression = PickCompression(true);
    rocksdb::BlockBasedTableOptions t;
    t.block_cache = cache;
    t.format_version = 5;
    if (bloom) t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    cfo.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
    return cfo;
  };

  // CF "key": custom order, prefix bloom on the user key (single-key reads)
  // plus whole-key bloom (exact version lookups for watch replay). Files
  // made mostly of compaction tombstones get compacted early, so space comes
  // back without an operator-run defragment.
  rocksdb::ColumnFamilyOptions key_opts = base_cf(true);
  key_opts.comparator = KeyRevComparator();
  key_opts.prefix_extractor.reset(NewUserKeyPrefixExtractor());
  key_opts.table_properties_collector_factories.push_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(128 * 1024, 32 * 1024));
  // CF "rev": append-only in revision order, read by sequential scans; its
  // head is deleted by compaction.
  rocksdb::ColumnFamilyOptions rev_opts = base_cf(false);
  rev_opts.table_properties_collector_factories.push_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(128 * 1024, 32 * 1024));
  rev_opts.write_buffer_size = 32ull << 20;
  // CF "meta": a handful of keys, rewritten by every commit.
  rocksdb::ColumnFamilyOptions meta_opts = base_cf(false);
  meta_opts.write_buffer_size = 4ull << 20;

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kKeyCf, key_opts},
      {kRevCf, rev_opts},
      {kMetaCf, meta_opts},
      {kLeaseCf, base_cf(false)},
  };
  rocksdb::Status s = rocksdb::DB::Open(dbo, options_.path, cfs, &handles_, &db_);
  ETCDPP_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("mvcc: open ", options_.path)));
  key_cf_ = handles_[1];
  rev_cf_ = handles_[2];
  meta_cf_ = handles_[3];
  lease_cf_ = handles_[4];

  // Start-up reads only these few meta keys: no history scan.
  auto read_meta = [&](std::string_view name, uint64_t* out, bool* found) -> absl::Status {
    std::string v;
    rocksdb::Status rs = db_->Get(rocksdb::ReadOptions(), meta_cf_, name, &v);
    *found = rs.ok();
    if (rs.IsNotFound()) return absl::OkStatus();
    ETCDPP_RETURN_IF_ERROR(FromRocks(rs, "mvcc: read meta"));
    if (!DecodeU64(v, out)) {
      return absl::DataLossError(absl::StrCat("mvcc: corrupt meta key ", std::string(name)));
    }
    return absl::OkStatus();
  };
  uint64_t format = 0, ci = 0, cur = 1, scheduled = 0, finished = 0;
  bool has_format, found;
  ETCDPP_RETURN_IF_ERROR(read_meta(kMetaFormat, &format, &has_format));
  if (!has_format) {
    ETCDPP_RETURN_IF_ERROR(FromRocks(
        db_->Put(rocksdb::WriteOptions(), meta_cf_, kMetaFormat, EncodeU64(kFormatVersion)),
        "mvcc: write format"));
  } else if (format != kFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("mvcc: unsupported store format ", format, " in ", options_.path));
  }
  ETCDPP_RETURN_IF_ERROR(read_meta(kMetaConsistentIndex, &ci, &found));
  ETCDPP_RETURN_IF_ERROR(read_meta(kMetaCurrentRev, &cur, &found));
  if (!found) cur = 1;  // etcd: an empty store is at revision 1
  ETCDPP_RETURN_IF_ERROR(read_meta(kMetaScheduledCompact, &scheduled, &found));
  ETCDPP_RETURN_IF_ERROR(read_meta(kMetaFinishedCompact, &finished, &found));

  current_rev_.store(static_cast<int64_t>(cur));
  consistent_index_.store(ci);
  compacted_rev_.store(static_cast<int64_t>(scheduled));
  {
    absl::MutexLock l(&mu_);
    compact_target_ = static_cast<int64_t>(scheduled);
    compact_finished_ = static_cast<int64_t>(finished);
  }
  if (scheduled > finished) {
    Log()->info("mvcc: resuming compaction at revision {} (finished {})", scheduled, finished);
  }
  return absl::OkStatus();
}

RocksStore::~RocksStore() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (compactor_.joinable()) compactor_.join();
  if (db_ != nullptr) {
    // A clean close flushes the memtables, so the next Open does not replay
    // the RocksDB WAL (after a crash the replay is bounded by
    // max_total_wal_size, never by the length of the history).
    rocksdb::FlushOptions fo;
    rocksdb::Status fs = db_->Flush(fo, handles_);
    if (!fs.ok()) Log()->warn("mvcc: flush on close: {}", fs.ToString());
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    rocksdb::Status s = db_->Close();
    if (!s.ok()) Log()->error("mvcc: close: {}", s.ToString());
    delete db_;
  }
}

absl::StatusOr<RangeResult> RocksStore::Range(std::string_view key, std::string_view end,
                                              const RangeOptions& opts) const {
  Bounds b = Bounds::Make(key, end);
  std::string upper;
  rocksdb::Slice upper_slice;
  rocksdb::ReadOptions ro = KeyReadOptions(b, &upper, &upper_slice);
  int64_t cur, rev;
  std::unique_ptr<rocksdb::Iterator> it;
  while (true) {
    // Order matters (see the header): current, then snapshot, then compacted.
    cur = current_rev_.load();
    it.reset(db_->NewIterator(ro, key_cf_));
    const int64_t compacted = compacted_rev_.load();
    rev = opts.rev;
    if (rev > cur) return FutureRevError();
    if (rev <= 0) rev = cur;
    if (rev >= compacted) break;
    // A read of the current revision never fails in etcd; here it raced
    // with commits and a compaction past the revision it loaded: retry
    // with a fresh one (a compaction never passes the current revision).
    if (opts.rev > 0) return CompactedError();
  }
  RangeResult out;
  out.rev = cur;  // etcd answers with the store revision, whatever rev was read
  ETCDPP_RETURN_IF_ERROR(ScanAt(it.get(), b, rev, opts, &out));
  return out;
}

std::unique_ptr<Store::WriteTxn> RocksStore::BeginWrite() {
  ETCDPP_CHECK(!txn_open_.exchange(true));
  return std::make_unique<Txn>(this);
}

void RocksStore::OnCommitted(int64_t rev, bool changed, uint64_t consistent_index) {
  consistent_index_.store(consistent_index);
  if (changed) current_rev_.store(rev);
}

absl::Status RocksStore::Sync() { return FromRocks(db_->SyncWAL(), "mvcc: sync"); }

absl::Status RocksStore::Compact(int64_t rev, uint64_t consistent_index,
                                 std::function<void()> done) {
  if (rev <= compacted_rev_.load()) return CompactedError();
  if (rev > current_rev_.load()) return FutureRevError();
  rocksdb::WriteBatch wb;
  ETCDPP_RETURN_IF_ERROR(
      FromRocks(wb.Put(meta_cf_, kMetaScheduledCompact, EncodeU64(rev)), "mvcc: compact"));
  ETCDPP_RETURN_IF_ERROR(FromRocks(
      wb.Put(meta_cf_, kMetaConsistentIndex, EncodeU64(consistent_index)), "mvcc: compact"));
  rocksdb::WriteOptions wo;
  wo.sync = true;  // a compaction is rare; make it durable at once
  ETCDPP_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &wb), "mvcc: compact"));
  // Reads below `rev` fail from now on, before any deletion starts.
  compacted_rev_.store(rev);
  consistent_index_.store(consistent_index);
  absl::MutexLock l(&mu_);
  compact_target_ = rev;
  done_.emplace_back(rev, std::move(done));
  return absl::OkStatus();
}

void RocksStore::CompactorLoop() {
  while (true) {
    int64_t target;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](RocksStore* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return s->stopping_ || s->compact_target_ > s->compact_finished_;
          },
          this));
      if (stopping_) break;
      target = compact_target_;
      compactor_busy_ = true;
    }
    absl::Status s = RunCompaction(target);
    std::vector<std::function<void()>> ready;
    {
      absl::MutexLock l(&mu_);
      compactor_busy_ = false;
      if (!s.ok()) {
        if (!absl::IsCancelled(s)) Log()->error("mvcc: compaction at {}: {}", target, s.ToString());
        break;
      }
      compact_finished_ = target;
      auto it = std::stable_partition(done_.begin(), done_.end(),
                                      [&](const auto& d) { return d.first > target; });
      for (auto i = it; i != done_.end(); ++i) ready.push_back(std::move(i->second));
      done_.erase(it, done_.end());
    }
    Log()->info("mvcc: finished compaction at revision {}", target);
    for (auto& f : ready) {
      if (f) f();
    }
  }
  absl::MutexLock l(&mu_);
  compactor_stopped_ = true;
}

absl::Status RocksStore::RunCompaction(int64_t target) {
  int64_t from;
  {
    absl::MutexLock l(&mu_);
    // The previous compaction kept its own revision's events (see step 3).
    from = compact_finished_;
  }
  std::string cursor = RevKey({from, 0});
  const std::string upper = RevKey({target + 1, 0});
  const rocksdb::Slice upper_slice(upper);
  int64_t batches = 0;
  const size_t batch_revs =
      static_cast<size_t>(std::max<int64_t>(1, internal_.compaction_batch_revs));
  const int max_deletes =
      static_cast<int>(std::max<int64_t>(1, internal_.compaction_max_batch_deletes));
  rocksdb::WriteOptions wo;
  while (true) {
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return absl::CancelledError("mvcc: store closing");
    }
    // 1. The next run of events <= target.
    std::vector<std::string> rev_keys;
    std::set<std::string> user_keys;  // ordered: deterministic batches
    bool last;
    {
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper_slice;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, rev_cf_));
      for (it->Seek(cursor); it->Valid() && rev_keys.size() < batch_revs; it->Next()) {
        EventKind kind;
        std::string_view uk;
        if (it->key().size() != 16 || !DecodeRevValue(it->value(), &kind, &uk)) {
          return absl::DataLossError("mvcc: corrupt entry in CF rev");
        }
        rev_keys.push_back(it->key().ToString());
        user_keys.emplace(uk);
      }
      ETCDPP_RETURN_IF_ERROR(FromRocks(it->status(), "mvcc: compaction scan"));
      last = !it->Valid();
    }
    // 2. For each key changed there: keep its newest version <= target unless
    // it is a tombstone; delete all older ones. Idempotent, so a batch cut by
    // a crash is simply redone.
    rocksdb::WriteBatch wb;
    {
      rocksdb::ReadOptions ro;
      ro.total_order_seek = true;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, key_cf_));
      for (const std::string& uk : user_keys) {
        bool newest = true;
        // A tombstone that is the newest version <= target is deleted after
        // every older version: if a spill wrote it first, a reader at
        // >= target would see the older version come back to life.
        std::string tombstone;
        for (it->Seek(VersionSeekKey(uk, target)); it->Valid() && VersionUserKey(it->key()) == uk;
             it->Next()) {
          if (newest) {
            newest = false;
            VersionValue v;
            if (!DecodeVersionValue(it->value(), &v)) {
              return absl::DataLossError("mvcc: corrupt value in CF key");
            }
            if (v.tombstone) tombstone = it->key().ToString();
            continue;  // kept, or deleted last
          }
          ETCDPP_RETURN_IF_ERROR(FromRocks(wb.Delete(key_cf_, it->key()), "mvcc: compaction"));
          if (wb.Count() >= static_cast<uint32_t>(max_deletes)) {
            // A hot key with a long history: spill. The rev entries that
            // lead here are deleted only with the last write of the batch,
            // so a crash in between redoes this key.
            ETCDPP_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &wb), "mvcc: compaction write"));
            wb.Clear();
          }
        }
        ETCDPP_RETURN_IF_ERROR(FromRocks(it->status(), "mvcc: compaction scan"));
        if (!tombstone.empty()) {
          ETCDPP_RETURN_IF_ERROR(FromRocks(wb.Delete(key_cf_, tombstone), "mvcc: compaction"));
        }
      }
    }
    // 3. Drop the walked events (they are the progress marker) in the same
    // batch, except those of `target` itself: etcd still replays a watch that
    // starts at the compacted revision, with the events whose version
    // survived (puts that are their key's newest version <= target). The
    // next compaction walks from here and drops them.
    for (const std::string& rk : rev_keys) {
      if (DecodeRevKey(rk).main >= target) continue;
      ETCDPP_RETURN_IF_ERROR(FromRocks(wb.Delete(rev_cf_, rk), "mvcc: compaction"));
    }
    if (last) {
      ETCDPP_RETURN_IF_ERROR(
          FromRocks(wb.Put(meta_cf_, kMetaFinishedCompact, EncodeU64(target)), "mvcc: compaction"));
    }
    ETCDPP_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &wb), "mvcc: compaction write"));
    if (last) return absl::OkStatus();
    Revision r = DecodeRevKey(rev_keys.back());
    cursor = RevKey({r.main, r.sub + 1});
    ++batches;
    if (internal_.compaction_crash_after_batches >= 0 &&
        batches >= internal_.compaction_crash_after_batches) {
      return absl::CancelledError("mvcc: simulated crash during compaction");
    }
  }
}

absl::StatusOr<RocksStore::EventBatch> RocksStore::ReadEvents(int64_t from_rev, int64_t to_rev,
                                                              int64_t max_revs,
                                                              bool with_prev_kv) const {
  // Same order as Range: current, then snapshot, then compacted.
  const int64_t cur = current_rev_.load();
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  struct Release {
    rocksdb::DB* db;
    const rocksdb::Snapshot* snap;
    ~Release() { db->ReleaseSnapshot(snap); }
  } release{db_, snap};
  const int64_t compacted = compacted_rev_.load();
  if (from_rev < compacted) return CompactedError();
  if (to_rev <= 0 || to_rev > cur) to_rev = cur;
  EventBatch out;
  out.next_rev = std::max<int64_t>(from_rev, 1);
  if (out.next_rev > to_rev) return out;

  const std::string upper = RevKey({to_rev + 1, 0});
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, rev_cf_));
  rocksdb::ReadOptions get_ro;
  get_ro.snapshot = snap;
  std::unique_ptr<rocksdb::Iterator> prev_it;
  if (with_prev_kv) {
    rocksdb::ReadOptions pro;
    pro.snapshot = snap;
    pro.total_order_seek = true;
    prev_it.reset(db_->NewIterator(pro, key_cf_));
  }
  int64_t revs = 0, last_main = 0;
  std::string value;
  for (it->Seek(RevKey({out.next_rev, 0})); it->Valid(); it->Next()) {
    EventKind kind;
    std::string_view uk;
    if (it->key().size() != 16 || !DecodeRevValue(it->value(), &kind, &uk)) {
      return absl::DataLossError("mvcc: corrupt entry in CF rev");
    }
    const Revision rev = DecodeRevKey(it->key());
    if (rev.main != last_main) {
      if (max_revs > 0 && revs == max_revs) break;
      ++revs;
      last_main = rev.main;
    }
    out.next_rev = rev.main + 1;
    rocksdb::Status gs = db_->Get(get_ro, key_cf_, VersionKey(uk, rev), &value);
    if (gs.IsNotFound()) continue;  // compacted away at exactly the compacted revision
    ETCDPP_RETURN_IF_ERROR(FromRocks(gs, "mvcc: read event"));
    VersionValue v;
    if (!DecodeVersionValue(value, &v)) return absl::DataLossError("mvcc: corrupt value in CF key");
    mvccpb::Event& ev = out.events.emplace_back();
    mvccpb::KeyValue* kv = ev.mutable_kv();
    kv->set_key(uk.data(), uk.size());
    kv->set_mod_revision(rev.main);
    if (v.tombstone) {
      ev.set_type(mvccpb::Event::DELETE);
    } else {
      ev.set_type(mvccpb::Event::PUT);
      kv->set_create_revision(v.create_revision);
      kv->set_version(v.version);
      kv->set_lease(v.lease);
      kv->set_value(v.value.data(), v.value.size());
    }
    if (with_prev_kv && rev.main - 1 >= std::max<int64_t>(compacted, 1)) {
      RangeResult prev;
      ETCDPP_RETURN_IF_ERROR(
          ScanAt(prev_it.get(), Bounds::Make(uk, ""), rev.main - 1, RangeOptions{}, &prev));
      if (!prev.kvs.empty()) *ev.mutable_prev_kv() = std::move(prev.kvs[0]);
    }
  }
  ETCDPP_RETURN_IF_ERROR(FromRocks(it->status(), "mvcc: read events"));
  if (!it->Valid()) out.next_rev = to_rev + 1;
  return out;
}

int64_t RocksStore::FinishedCompactionRevision() const {
  absl::MutexLock l(&mu_);
  return compact_finished_;
}

void RocksStore::WaitForCompactor() {
  absl::MutexLock l(&mu_);
  if (!compactor_.joinable()) return;
  mu_.Await(absl::Condition(
      +[](RocksStore* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return s->compactor_stopped_ ||
               (!s->compactor_busy_ && s->compact_target_ <= s->compact_finished_);
      },
      this));
}

absl::Status RocksStore::FlushForTest() {
  rocksdb::FlushOptions fo;
  for (auto* h : handles_) {
    ETCDPP_RETURN_IF_ERROR(FromRocks(db_->Flush(fo, h), "mvcc: flush"));
  }
  return absl::OkStatus();
}

std::vector<Revision> RocksStore::RawVersionsForTest(std::string_view user_key) const {
  std::vector<Revision> out;
  rocksdb::ReadOptions ro;
  ro.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, key_cf_));
  for (it->Seek(VersionSeekKey(user_key, std::numeric_limits<int64_t>::max()));
       it->Valid() && VersionUserKey(it->key()) == user_key; it->Next()) {
    out.push_back(VersionRevision(it->key()));
  }
  return out;
}

int64_t RocksStore::RawRevEntriesForTest() const {
  int64_t n = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), rev_cf_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
  return n;
}

absl::StatusOr<std::vector<LeaseData>> RocksStore::LoadLeases() const {
  std::map<int64_t, LeaseData> leases;
  std::map<int64_t, std::vector<std::string>> attached;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), lease_cf_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    if (k.size() < 9 || (k[0] != 'L' && k[0] != 'A') || (k[0] == 'L' && k.size() != 9)) {
      return absl::DataLossError("mvcc: corrupt key in CF lease");
    }
    int64_t id = static_cast<int64_t>(GetBigEndian64(k.data() + 1));
    if (k[0] == 'A') {
      attached[id].emplace_back(k.data() + 9, k.size() - 9);
      continue;
    }
    LeaseData& d = leases[id];
    d.id = id;
    if (!DecodeLeaseRecord(it->value(), &d.ttl, &d.remaining_ttl)) {
      return absl::DataLossError(absl::StrCat("mvcc: corrupt lease record ", id));
    }
  }
  ETCDPP_RETURN_IF_ERROR(FromRocks(it->status(), "mvcc: load leases"));
  std::vector<LeaseData> out;
  out.reserve(leases.size());
  for (auto& [id, d] : leases) {
    auto a = attached.find(id);
    if (a != attached.end()) d.keys = std::move(a->second);  // ascending: the CF's order
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<std::optional<std::string>> RocksStore::GetMeta(std::string_view name) const {
  std::string v;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), meta_cf_, std::string(kMetaAppPrefix) + std::string(name), &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  ETCDPP_RETURN_IF_ERROR(FromRocks(s, "mvcc: read meta"));
  return std::optional<std::string>(std::move(v));
}

absl::StatusOr<HashKVResult> RocksStore::HashKV(int64_t rev) const {
  return mvcc::HashKV(*this, rev);
}

int64_t RocksStore::SizeBytes() const {
  uint64_t total = 0;
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, "rocksdb.total-sst-files-size", &v)) total += v;
    if (db_->GetIntProperty(h, "rocksdb.cur-size-all-mem-tables", &v)) total += v;
  }
  return static_cast<int64_t>(total);
}

int64_t RocksStore::SizeInUseBytes() const {
  uint64_t total = 0;
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, "rocksdb.estimate-live-data-size", &v)) total += v;
    if (db_->GetIntProperty(h, "rocksdb.cur-size-all-mem-tables", &v)) total += v;
  }
  return static_cast<int64_t>(std::min(total, static_cast<uint64_t>(SizeBytes())));
}

absl::Status RocksStore::Checkpoint(const std::string& dir) const {
  rocksdb::Checkpoint* cp = nullptr;
  ETCDPP_RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_, &cp), "mvcc: checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> owned(cp);
  // log_size_for_flush 0: flush the memtables first, so the copy is SST
  // files (hard links) and needs no WAL replay where it is opened.
  return FromRocks(owned->CreateCheckpoint(dir, 0), absl::StrCat("mvcc: checkpoint to ", dir));
}

}  // namespace etcdpp::mvcc
