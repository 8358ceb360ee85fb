#include "wal/wal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/failpoints.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace etcdpp::wal {
namespace {

constexpr char kLockName[] = "LOCK";

std::shared_ptr<spdlog::logger> Log() {
  auto logger = spdlog::get("wal");
  return logger ? logger : spdlog::default_logger();
}

absl::Status ErrnoError(absl::string_view op, absl::string_view path, int err) {
  return absl::InternalError(absl::StrCat("wal: ", op, " ", path, ": ", std::strerror(err)));
}

std::string Join(const std::string& dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

absl::Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync directory", dir, err);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListNames(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("wal: no directory ", dir));
    return ErrnoError("opendir", dir, errno);
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

struct SegmentFile {
  uint64_t seq;
  uint64_t first_index;
  std::string name;
};

// The segments in `dir`, by sequence. A gap in the sequence is DataLoss.
absl::StatusOr<std::vector<SegmentFile>> ListSegments(const std::string& dir) {
  ETCDPP_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir));
  std::vector<SegmentFile> segs;
  for (const auto& n : names) {
    if (auto parsed = ParseSegmentName(n)) segs.push_back({parsed->first, parsed->second, n});
  }
  std::sort(segs.begin(), segs.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.seq < b.seq; });
  for (size_t i = 1; i < segs.size(); ++i) {
    if (segs[i].seq != segs[i - 1].seq + 1) {
      return absl::DataLossError(absl::StrCat("wal: segment missing in ", dir, " between ",
                                              segs[i - 1].name, " and ", segs[i].name));
    }
  }
  return segs;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError("stat", path, err);
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError("read", path, err);
    }
    if (n == 0) break;  // shrank under us
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  data.resize(done);
  return data;
}

// Removes segment files a crash left half made (*.wal.tmp).
absl::Status RemoveTempFiles(const std::string& dir) {
  ETCDPP_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir));
  bool removed = false;
  for (const auto& n : names) {
    if (n.size() > 8 && n.substr(n.size() - 8) == ".wal.tmp") {
      std::string path = Join(dir, n);
      if (::unlink(path.c_str()) != 0) return ErrnoError("unlink", path, errno);
      removed = true;
    }
  }
  if (removed) return FsyncDir(dir);
  return absl::OkStatus();
}

// Preallocates [offset, size) so later writes need no block allocation.
// Filesystems without fallocate simply grow the file as it is written.
absl::Status Preallocate(int fd, uint64_t offset, uint64_t size, const std::string& path) {
  if (offset >= size) return absl::OkStatus();
  if (::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(size - offset)) != 0) {
    if (errno == EOPNOTSUPP || errno == ENOSYS) return absl::OkStatus();
    return ErrnoError("fallocate", path, errno);
  }
  return absl::OkStatus();
}

std::string EntryPrefix(uint64_t index, uint64_t term) {
  std::string p;
  PutU64(&p, index);
  PutU64(&p, term);
  return p;
}

std::string HardStatePayload(const HardState& hs) {
  std::string p;
  PutU64(&p, hs.term);
  PutU64(&p, hs.vote);
  PutU64(&p, hs.commit);
  return p;
}

std::string SnapshotPayload(const SnapshotMarker& m) {
  std::string p;
  PutU64(&p, m.index);
  PutU64(&p, m.term);
  return p;
}

HardState ParseHardState(std::string_view p) {
  return {GetU64(p.data()), GetU64(p.data() + 8), GetU64(p.data() + 16)};
}

SnapshotMarker ParseSnapshot(std::string_view p) { return {GetU64(p.data()), GetU64(p.data() + 8)}; }

std::string MarkerString(const SnapshotMarker& m) {
  return absl::StrCat("{index: ", m.index, ", term: ", m.term, "}");
}

}  // namespace

bool FaultInjection::FromEnv(FaultInjection* out) {
  auto fps = FailpointsFromEnv("ETCDPP_WAL_FAILPOINTS", "wal");
  if (!fps) return false;
  FaultInjection f;
  for (const auto& [key, v] : *fps) {
    if (key == "write_chunk") {
      f.write_chunk_bytes = static_cast<size_t>(std::max<int64_t>(v, 0));
    } else if (key == "fail_sync_after") {
      f.fail_sync_after = v;
    } else if (key == "fail_write_after_bytes") {
      f.fail_write_after_bytes = v;
    } else {
      Log()->warn("wal: ignoring unknown failpoint '{}'", key);
    }
  }
  *out = f;
  return true;
}

Wal::Wal(std::string dir, const Options& options) : dir_(std::move(dir)), options_(options) {
  faults_ = options.faults;
  if (FaultInjection::FromEnv(&faults_)) Log()->warn("wal: failpoints enabled for {}", dir_);
}

bool Wal::Exists(const std::string& dir) {
  auto names = ListNames(dir);
  if (!names.ok()) return false;
  for (const auto& n : *names) {
    if (ParseSegmentName(n)) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Create(const std::string& dir, std::string_view metadata,
                                                 const Options& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("wal: mkdir ", dir, ": ", ec.message()));
  ETCDPP_ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock, FileLock::Acquire(Join(dir, kLockName)));
  if (Exists(dir)) return absl::AlreadyExistsError(absl::StrCat("wal: ", dir, " already has a WAL"));
  ETCDPP_RETURN_IF_ERROR(RemoveTempFiles(dir));
  std::unique_ptr<Wal> wal(new Wal(dir, options));
  wal->lock_ = std::move(lock);
  wal->metadata_ = std::string(metadata);
  std::string header;
  AppendCrcRecord(&header);
  AppendRecord(&header, RecordType::kMetadata, metadata);
  AppendRecord(&header, RecordType::kSnapshot, SnapshotPayload({}));
  // The directory itself may be new: make its entry durable in its parent.
  std::string parent = std::filesystem::absolute(dir).lexically_normal().parent_path().string();
  if (!parent.empty()) ETCDPP_RETURN_IF_ERROR(FsyncDir(parent));
  ETCDPP_RETURN_IF_ERROR(wal->CreateSegment(0, 0, std::move(header)));
  absl::MutexLock l(&wal->mu_);
  wal->state_ = State::kWritable;
  return wal;
}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(const std::string& dir, const SnapshotMarker& from,
                                               const Options& options) {
  if (!Exists(dir)) return absl::NotFoundError(absl::StrCat("wal: no WAL in ", dir));
  ETCDPP_ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock, FileLock::Acquire(Join(dir, kLockName)));
  ETCDPP_RETURN_IF_ERROR(RemoveTempFiles(dir));
  std::unique_ptr<Wal> wal(new Wal(dir, options));
  wal->lock_ = std::move(lock);
  wal->from_ = from;
  return wal;
}

absl::Status Wal::CreateSegment(uint64_t seq, uint64_t first_index, std::string header) {
  const std::string name = SegmentName(seq, first_index);
  const std::string path = Join(dir_, name);
  const std::string tmp = path + ".tmp";
  // Made complete under a temporary name, then renamed: a crash never leaves
  // a segment without its header.
  int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create", tmp, errno);
  absl::Status s = Preallocate(fd, 0, options_.segment_size_bytes, tmp);
  if (s.ok()) {
    SealRecords(header.data(), header.size(), &chain_);
    s = WriteAll(fd, 0, header);
  }
  if (s.ok()) s = SyncFd(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoError("rename", tmp, errno);
  if (s.ok()) s = FsyncDir(dir_);
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  offset_ = header.size();
  seq_ = seq;
  absl::MutexLock l(&mu_);
  segments_.push_back({seq, first_index, name});
  stats_.segments_created++;
  return absl::OkStatus();
}

absl::Status Wal::WriteAll(int fd, uint64_t offset, std::string_view data) {
  while (!data.empty()) {
    size_t n = data.size();
    if (faults_.write_chunk_bytes > 0) n = std::min(n, faults_.write_chunk_bytes);
    bool inject = false;
    if (faults_.fail_write_after_bytes >= 0 &&
        bytes_done_ + static_cast<int64_t>(n) > faults_.fail_write_after_bytes) {
      n = static_cast<size_t>(std::max<int64_t>(faults_.fail_write_after_bytes - bytes_done_, 0));
      inject = true;
    }
    if (n > 0) {
      ssize_t w = ::pwrite(fd, data.data(), n, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return ErrnoError("write to a segment in", dir_, errno);
      n = static_cast<size_t>(w);
      data.remove_prefix(n);
      offset += n;
      bytes_done_ += static_cast<int64_t>(n);
    }
    if (inject) {
      return absl::ResourceExhaustedError(
          absl::StrCat("wal: write in ", dir_, ": injected short write (ENOSPC)"));
    }
  }
  return absl::OkStatus();
}

absl::Status Wal::SyncFd(int fd) {
  if (faults_.fail_sync_after >= 0 && syncs_done_ >= faults_.fail_sync_after) {
    return absl::InternalError(absl::StrCat("wal: fdatasync in ", dir_, ": injected EIO"));
  }
  if (::fdatasync(fd) != 0) return ErrnoError("fdatasync", dir_, errno);
  ++syncs_done_;
  return absl::OkStatus();
}

absl::StatusOr<ReadResult> Wal::ReadAll() {
  {
    absl::MutexLock l(&mu_);
    if (state_ != State::kOpened) {
      return absl::FailedPreconditionError("wal: ReadAll must be called once, right after Open");
    }
  }
  ETCDPP_ASSIGN_OR_RETURN(std::vector<SegmentFile> segs, ListSegments(dir_));
  int start = -1;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (segs[i].first_index <= from_.index) start = static_cast<int>(i);
  }
  if (start < 0) {
    return absl::NotFoundError(absl::StrCat("wal: no segment in ", dir_, " covers snapshot ",
                                            MarkerString(from_)));
  }
  ReadResult r;
  r.snapshot = from_;
  ChainState chain;
  bool metadata_seen = false;
  bool matched = false;
  ScanResult last_scan;
  std::string last_path;
  for (size_t i = static_cast<size_t>(start); i < segs.size(); ++i) {
    const std::string path = Join(dir_, segs[i].name);
    const bool is_last = i + 1 == segs.size();
    ETCDPP_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
    auto visit = [&](const RecordView& rec) -> absl::Status {
      switch (rec.type) {
        case RecordType::kMetadata:
          if (metadata_seen && rec.payload != r.metadata) {
            return CorruptError(path, rec.offset, "metadata differs from the previous segment's");
          }
          r.metadata = std::string(rec.payload);
          metadata_seen = true;
          break;
        case RecordType::kEntry: {
          const uint64_t index = GetU64(rec.payload.data());
          if (index <= from_.index) break;
          const uint64_t up = index - from_.index - 1;
          if (up > r.entries.size()) {
            return CorruptError(path, rec.offset,
                                absl::StrCat("entry ", index, " leaves a gap after entry ",
                                             from_.index + r.entries.size()));
          }
          r.entries.resize(up);
          r.entries.push_back(
              {index, GetU64(rec.payload.data() + 8), std::string(rec.payload.substr(16))});
          break;
        }
        case RecordType::kHardState:
          r.hard_state = ParseHardState(rec.payload);
          break;
        case RecordType::kSnapshot: {
          const SnapshotMarker m = ParseSnapshot(rec.payload);
          r.snapshots.push_back(m);
          if (m.index == from_.index) {
            if (m.term != from_.term) {
              return absl::FailedPreconditionError(
                  absl::StrCat("wal: snapshot ", MarkerString(from_), " does not match ",
                               MarkerString(m), " in ", path, " at offset ", rec.offset));
            }
            matched = true;
          }
          break;
        }
        case RecordType::kCrc:
          break;
      }
      return absl::OkStatus();
    };
    ETCDPP_ASSIGN_OR_RETURN(ScanResult scan, ScanSegment(path, data, is_last, &chain, visit));
    if (!scan.saw_crc_header) return CorruptError(path, 0, "segment has no header");
    if (is_last) {
      last_scan = scan;
      last_path = path;
    }
  }
  if (!matched) {
    return absl::NotFoundError(
        absl::StrCat("wal: snapshot ", MarkerString(from_), " not found in ", dir_));
  }

  // Cut off whatever follows the last whole record and re-preallocate, so the
  // next record written lands on zeros.
  if (last_scan.torn || last_scan.discarded_nonzero_bytes > 0) {
    r.tail_repaired = true;
    r.repair_detail = absl::StrCat(
        last_scan.torn ? absl::StrCat("torn record (", last_scan.torn_reason, ")")
                       : std::string("unsynced data after the end of the log"),
        " in ", last_path, " at offset ", last_scan.valid_end, "; discarding ",
        last_scan.discarded_nonzero_bytes, " non-zero bytes");
    Log()->warn("wal: repairing tail: {}", r.repair_detail);
  }
  int fd = ::open(last_path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", last_path, errno);
  absl::Status s;
  if (::ftruncate(fd, static_cast<off_t>(last_scan.valid_end)) != 0) {
    s = ErrnoError("truncate", last_path, errno);
  }
  if (s.ok()) s = Preallocate(fd, last_scan.valid_end, options_.segment_size_bytes, last_path);
  if (s.ok()) s = SyncFd(fd);
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  fd_ = fd;
  offset_ = last_scan.valid_end;
  chain_ = chain.crc;
  seq_ = segs.back().seq;
  metadata_ = r.metadata;
  absl::MutexLock l(&mu_);
  segments_.clear();
  for (const auto& sf : segs) segments_.push_back({sf.seq, sf.first_index, sf.name});
  last_index_ = r.entries.empty() ? from_.index : r.entries.back().index;
  queued_hard_state_ = r.hard_state;
  state_ = State::kWritable;
  return r;
}

absl::StatusOr<std::vector<SnapshotMarker>> Wal::ReadSnapshotMarkers(const std::string& dir) {
  ETCDPP_ASSIGN_OR_RETURN(std::vector<SegmentFile> segs, ListSegments(dir));
  if (segs.empty()) return absl::NotFoundError(absl::StrCat("wal: no WAL in ", dir));
  std::vector<SnapshotMarker> markers;
  HardState hs;
  ChainState chain;
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string path = Join(dir, segs[i].name);
    ETCDPP_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
    ETCDPP_ASSIGN_OR_RETURN(
        ScanResult scan,
        ScanSegment(path, data, i + 1 == segs.size(), &chain,
                    [&](const RecordView& rec) {
                      if (rec.type == RecordType::kSnapshot) markers.push_back(ParseSnapshot(rec.payload));
                      if (rec.type == RecordType::kHardState) hs = ParseHardState(rec.payload);
                      return absl::OkStatus();
                    }));
    (void)scan;
  }
  // A marker beyond the saved commit index may describe a snapshot whose
  // hard state never reached the disk; it is not safe to start from.
  std::erase_if(markers, [&](const SnapshotMarker& m) { return m.index > hs.commit; });
  return markers;
}

absl::Status Wal::CheckWritableLocked() const {
  if (!failed_.ok()) return failed_;
  if (state_ != State::kWritable) {
    return absl::FailedPreconditionError(state_ == State::kClosed
                                             ? "wal: closed"
                                             : "wal: ReadAll must succeed before writing");
  }
  return absl::OkStatus();
}

void Wal::QueueLocked(RecordType type, std::string_view a, std::string_view b) {
  AppendRecord(&queue_, type, a, b);
  stats_.records++;
}

absl::Status Wal::CommitLocked(uint64_t ticket, bool sync) {
  if (sync) sync_wanted_ticket_ = std::max(sync_wanted_ticket_, ticket);
  struct Waiter {
    const Wal* wal;
    uint64_t ticket;
    bool sync;
    // Evaluated by absl::Mutex with mu_ held, on each unlock: only waiters
    // that are done, or that may write the next batch, are woken.
    static bool Wake(const Waiter* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      const Wal& x = *w->wal;
      return !x.failed_.ok() || !x.writing_ ||
             (w->sync ? x.synced_ticket_ : x.written_ticket_) >= w->ticket;
    }
  };
  const Waiter waiter{this, ticket, sync};
  while (true) {
    if (!failed_.ok()) return failed_;
    if ((sync ? synced_ticket_ : written_ticket_) >= ticket) return absl::OkStatus();
    if (!writing_) {
      WriteBatchLocked();
    } else {
      mu_.Await(absl::Condition(&Waiter::Wake, &waiter));
    }
  }
}

// Group commit: this thread writes everything queued so far, by itself and
// by every caller waiting on it, with one write and at most one fdatasync.
// Callers arriving meanwhile queue behind it and one of them writes the next
// batch when this one is done.
void Wal::WriteBatchLocked() {
  writing_ = true;
  std::string batch = std::move(queue_);
  queue_ = std::move(spare_);
  queue_.clear();
  const uint64_t hi = queued_ticket_;
  const bool do_sync = sync_wanted_ticket_ > synced_ticket_;
  const uint64_t last_index = last_index_;
  const HardState hard_state = queued_hard_state_;
  const int64_t syncs_before = syncs_done_;
  mu_.Unlock();

  absl::Status s;
  const uint64_t bytes = batch.size();
  if (!batch.empty()) {
    SealRecords(batch.data(), batch.size(), &chain_);
    s = WriteAll(fd_, offset_, batch);
    if (s.ok()) offset_ += batch.size();
  }
  if (s.ok() && do_sync) s = SyncFd(fd_);
  if (s.ok() && offset_ >= options_.segment_size_bytes) {
    // Roll over. The full segment is synced first, so that only the newest
    // segment can ever hold a torn write.
    if (!do_sync) s = SyncFd(fd_);
    if (s.ok()) {
      std::string header;
      AppendCrcRecord(&header);
      AppendRecord(&header, RecordType::kMetadata, metadata_);
      if (!hard_state.IsEmpty()) {
        AppendRecord(&header, RecordType::kHardState, HardStatePayload(hard_state));
      }
      s = CreateSegment(seq_ + 1, last_index + 1, std::move(header));
    }
  }
  batch.clear();
  spare_ = std::move(batch);

  mu_.Lock();
  writing_ = false;
  stats_.batches++;
  stats_.bytes_written += bytes;
  stats_.syncs += static_cast<uint64_t>(syncs_done_ - syncs_before);
  if (!s.ok()) {
    if (failed_.ok()) {
      Log()->error("wal: {}; the WAL is now unusable", s.ToString());
      failed_ = s;
    }
  } else {
    written_ticket_ = hi;
    if (do_sync) synced_ticket_ = hi;
  }
  // Unlocking mu_ (in the caller) wakes the waiters this batch completed.
}

absl::Status Wal::Save(const HardState& hard_state, std::span<const Entry> entries, bool sync) {
  absl::MutexLock l(&mu_);
  ETCDPP_RETURN_IF_ERROR(CheckWritableLocked());
  if (hard_state.IsEmpty() && entries.empty()) return absl::OkStatus();
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].index != entries[i - 1].index + 1) {
      return absl::InvalidArgumentError(absl::StrCat("wal: Save: entry ", entries[i].index,
                                                     " does not follow ", entries[i - 1].index));
    }
  }
  for (const Entry& e : entries) {
    QueueLocked(RecordType::kEntry, EntryPrefix(e.index, e.term), e.data);
  }
  if (!entries.empty()) last_index_ = entries.back().index;
  if (!hard_state.IsEmpty()) {
    QueueLocked(RecordType::kHardState, HardStatePayload(hard_state));
    queued_hard_state_ = hard_state;
  }
  return CommitLocked(++queued_ticket_, sync);
}

absl::Status Wal::SaveSnapshot(const SnapshotMarker& marker) {
  absl::MutexLock l(&mu_);
  ETCDPP_RETURN_IF_ERROR(CheckWritableLocked());
  QueueLocked(RecordType::kSnapshot, SnapshotPayload(marker));
  last_index_ = std::max(last_index_, marker.index);
  return CommitLocked(++queued_ticket_, true);
}

absl::StatusOr<uint64_t> Wal::Append(uint64_t term, std::string_view data) {
  absl::MutexLock l(&mu_);
  ETCDPP_RETURN_IF_ERROR(CheckWritableLocked());
  const uint64_t index = ++last_index_;
  QueueLocked(RecordType::kEntry, EntryPrefix(index, term), data);
  ETCDPP_RETURN_IF_ERROR(CommitLocked(++queued_ticket_, true));
  return index;
}

absl::Status Wal::Sync() {
  absl::MutexLock l(&mu_);
  ETCDPP_RETURN_IF_ERROR(CheckWritableLocked());
  return CommitLocked(queued_ticket_, true);
}

absl::Status Wal::ReleaseTo(uint64_t index) {
  absl::MutexLock l(&mu_);
  ETCDPP_RETURN_IF_ERROR(CheckWritableLocked());
  released_index_ = std::max(released_index_, index);
  if (options_.max_wals <= 0) return absl::OkStatus();
  // Open(from) starts at the last segment whose first index is <= from.index;
  // everything before that one is no longer needed.
  size_t keep_from = 0;
  for (size_t i = 0; i < segments_.size(); ++i) {
    if (segments_[i].first_index <= released_index_) keep_from = i;
  }
  size_t deleted = 0;
  while (deleted < keep_from && segments_.size() > static_cast<size_t>(options_.max_wals)) {
    const std::string path = Join(dir_, segments_.front().name);
    if (::unlink(path.c_str()) != 0) return ErrnoError("unlink", path, errno);
    Log()->info("wal: released segment {}", path);
    segments_.erase(segments_.begin());
    ++deleted;
  }
  if (deleted > 0) {
    stats_.segments_deleted += deleted;
    ETCDPP_RETURN_IF_ERROR(FsyncDir(dir_));
  }
  return absl::OkStatus();
}

absl::Status Wal::DoCloseLocked() {
  if (state_ == State::kClosed) return absl::OkStatus();
  absl::Status s;
  if (state_ == State::kWritable && failed_.ok()) s = CommitLocked(queued_ticket_, true);
  mu_.Await(absl::Condition(
      +[](bool* writing) { return !*writing; }, &writing_));
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  state_ = State::kClosed;
  lock_.reset();
  if (!failed_.ok()) return failed_;
  return s;
}

absl::Status Wal::Close() {
  absl::MutexLock l(&mu_);
  return DoCloseLocked();
}

Wal::~Wal() {
  absl::MutexLock l(&mu_);
  absl::Status s = DoCloseLocked();
  if (!s.ok()) Log()->error("wal: close {}: {}", dir_, s.ToString());
}

uint64_t Wal::LastIndex() const {
  absl::MutexLock l(&mu_);
  return last_index_;
}

Stats Wal::GetStats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

std::vector<std::string> Wal::SegmentNames() const {
  absl::MutexLock l(&mu_);
  std::vector<std::string> names;
  for (const auto& s : segments_) names.push_back(s.name);
  return names;
}

absl::Status Describe(const std::string& dir, bool list_records, std::string* out) {
  ETCDPP_ASSIGN_OR_RETURN(std::vector<SegmentFile> segs, ListSegments(dir));
  ChainState chain;
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string path = Join(dir, segs[i].name);
    ETCDPP_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
    uint64_t count = 0;
    uint64_t first_entry = 0, last_entry = 0;
    auto visit = [&](const RecordView& rec) -> absl::Status {
      ++count;
      if (rec.type == RecordType::kEntry) {
        last_entry = GetU64(rec.payload.data());
        if (first_entry == 0) first_entry = last_entry;
      }
      if (!list_records) return absl::OkStatus();
      absl::StrAppend(out, "  @", rec.offset, " ");
      switch (rec.type) {
        case RecordType::kCrc:
          absl::StrAppend(out, "crc ", GetU32(rec.payload.data()));
          break;
        case RecordType::kMetadata:
          absl::StrAppend(out, "metadata ", rec.payload.size(), " bytes");
          break;
        case RecordType::kEntry:
          absl::StrAppend(out, "entry index ", GetU64(rec.payload.data()), " term ",
                          GetU64(rec.payload.data() + 8), " ", rec.payload.size() - 16, " bytes");
          break;
        case RecordType::kHardState: {
          HardState hs = ParseHardState(rec.payload);
          absl::StrAppend(out, "hardstate term ", hs.term, " vote ", hs.vote, " commit ", hs.commit);
          break;
        }
        case RecordType::kSnapshot:
          absl::StrAppend(out, "snapshot ", MarkerString(ParseSnapshot(rec.payload)));
          break;
      }
      absl::StrAppend(out, "\n");
      return absl::OkStatus();
    };
    absl::StrAppend(out, path, ":\n");
    auto scan = ScanSegment(path, data, i + 1 == segs.size(), &chain, visit);
    if (!scan.ok()) {
      absl::StrAppend(out, "  ERROR: ", scan.status().message(), "\n");
      return scan.status();
    }
    absl::StrAppend(out, "  ", count, " records, entries ", first_entry, "..", last_entry,
                    ", log ends at offset ", scan->valid_end, "\n");
    if (scan->torn) {
      absl::StrAppend(out, "  torn tail at offset ", scan->valid_end, " (", scan->torn_reason,
                      "); Open will cut it off\n");
    }
  }
  return absl::OkStatus();
}

absl::Status TruncateAt(const std::string& dir, const std::string& file_name, uint64_t offset) {
  ETCDPP_ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock, FileLock::Acquire(Join(dir, kLockName)));
  ETCDPP_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir));
  std::vector<SegmentFile> segs;
  for (const auto& n : names) {
    if (auto parsed = ParseSegmentName(n)) segs.push_back({parsed->first, parsed->second, n});
  }
  std::sort(segs.begin(), segs.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.seq < b.seq; });
  auto it = std::find_if(segs.begin(), segs.end(),
                         [&](const SegmentFile& s) { return s.name == file_name; });
  if (it == segs.end()) return absl::NotFoundError(absl::StrCat("wal: no segment ", file_name));
  if (offset % 8 != 0) {
    return absl::InvalidArgumentError("wal: offset must be a record boundary (a multiple of 8)");
  }
  const std::string path = Join(dir, file_name);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path, errno);
  absl::Status s;
  if (::ftruncate(fd, static_cast<off_t>(offset)) != 0) s = ErrnoError("truncate", path, errno);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoError("fsync", path, errno);
  ::close(fd);
  ETCDPP_RETURN_IF_ERROR(s);
  Log()->warn("wal: operator truncated {} at offset {}", path, offset);
  for (auto later = it + 1; later != segs.end(); ++later) {
    const std::string from = Join(dir, later->name);
    const std::string to = from + ".broken";
    if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoError("rename", from, errno);
    Log()->warn("wal: operator moved {} aside to {}", from, to);
  }
  return FsyncDir(dir);
}

}  // namespace etcdpp::wal
