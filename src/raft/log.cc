#include "raft/log.h"

#include <algorithm>

#include "common/status.h"

namespace etcdpp::raft {

// ---- Unstable ----

std::optional<uint64_t> Unstable::MaybeFirstIndex() const {
  if (snapshot) return snapshot->metadata().index() + 1;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeLastIndex() const {
  if (!entries.empty()) return offset + entries.size() - 1;
  if (snapshot) return snapshot->metadata().index();
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeTerm(uint64_t i) const {
  if (i < offset) {
    if (snapshot && snapshot->metadata().index() == i) return snapshot->metadata().term();
    return std::nullopt;
  }
  std::optional<uint64_t> last = MaybeLastIndex();
  if (!last || i > *last) return std::nullopt;
  return entries[i - offset].term();
}

void Unstable::StableTo(uint64_t i, uint64_t t) {
  std::optional<uint64_t> gt = MaybeTerm(i);
  if (!gt) return;
  // Only if the entry is still the one that was persisted: a newer leader
  // may have replaced it in the meantime (then it stays unstable).
  if (*gt == t && i >= offset) {
    entries.erase(entries.begin(), entries.begin() + (i + 1 - offset));
    offset = i + 1;
  }
}

void Unstable::StableSnapTo(uint64_t i) {
  if (snapshot && snapshot->metadata().index() == i) snapshot.reset();
}

void Unstable::Restore(const raftpb::Snapshot& s) {
  offset = s.metadata().index() + 1;
  entries.clear();
  snapshot = s;
}

void Unstable::TruncateAndAppend(const std::vector<raftpb::Entry>& ents) {
  uint64_t after = ents.front().index();
  if (after == offset + entries.size()) {
    entries.insert(entries.end(), ents.begin(), ents.end());
  } else if (after <= offset) {
    // Replaces all unstable entries; the stable log is truncated when the
    // application persists these (storage Append truncates).
    offset = after;
    entries = ents;
  } else {
    entries.resize(after - offset);
    entries.insert(entries.end(), ents.begin(), ents.end());
  }
}

std::vector<raftpb::Entry> Unstable::Slice(uint64_t lo, uint64_t hi) const {
  ETCDPP_CHECK(offset <= lo && lo <= hi && hi <= offset + entries.size());
  return std::vector<raftpb::Entry>(entries.begin() + (lo - offset),
                                    entries.begin() + (hi - offset));
}

// ---- RaftLog ----

RaftLog::RaftLog(Storage* storage, Logger* logger, uint64_t max_next_ents_size)
    : storage_(storage), logger_(logger), max_next_ents_size_(max_next_ents_size) {
  absl::StatusOr<uint64_t> first = storage_->FirstIndex();
  absl::StatusOr<uint64_t> last = storage_->LastIndex();
  ETCDPP_CHECK_OK(first.status());
  ETCDPP_CHECK_OK(last.status());
  unstable_.offset = *last + 1;
  committed_ = *first - 1;
  applied_ = *first - 1;
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term,
                                             uint64_t committed,
                                             const std::vector<raftpb::Entry>& ents) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  uint64_t last_new = index + ents.size();
  uint64_t ci = FindConflict(ents);
  if (ci != 0) {
    // Log matching: never overwrite a committed entry.
    ETCDPP_CHECK(ci > committed_);
    uint64_t offset = index + 1;
    Append(std::vector<raftpb::Entry>(ents.begin() + (ci - offset), ents.end()));
  }
  CommitTo(std::min(committed, last_new));
  return last_new;
}

uint64_t RaftLog::Append(const std::vector<raftpb::Entry>& ents) {
  if (ents.empty()) return LastIndex();
  ETCDPP_CHECK(ents.front().index() - 1 >= committed_);
  unstable_.TruncateAndAppend(ents);
  return LastIndex();
}

uint64_t RaftLog::FindConflict(const std::vector<raftpb::Entry>& ents) const {
  for (const raftpb::Entry& e : ents) {
    if (!MatchTerm(e.index(), e.term())) {
      if (e.index() <= LastIndex()) {
        RAFT_LOG(logger_, kInfo, "found conflict at index %d [existing term: %d, conflicting term: %d]",
                 e.index(), ZeroTermOnErr(e.index()), e.term());
      }
      return e.index();
    }
  }
  return 0;
}

uint64_t RaftLog::FindConflictByTerm(uint64_t index, uint64_t term) const {
  if (index > LastIndex()) return index;
  while (true) {
    absl::StatusOr<uint64_t> t = Term(index);
    if (!t.ok() || *t <= term) break;
    --index;
  }
  return index;
}

std::vector<raftpb::Entry> RaftLog::NextEnts() const {
  uint64_t off = std::max(applied_ + 1, FirstIndex());
  if (committed_ + 1 > off) {
    absl::StatusOr<std::vector<raftpb::Entry>> ents =
        Slice(off, committed_ + 1, max_next_ents_size_);
    ETCDPP_CHECK_OK(ents.status());
    return *std::move(ents);
  }
  return {};
}

bool RaftLog::HasNextEnts() const {
  return committed_ + 1 > std::max(applied_ + 1, FirstIndex());
}

absl::StatusOr<raftpb::Snapshot> RaftLog::Snapshot() const {
  if (unstable_.snapshot) return *unstable_.snapshot;
  return storage_->GetSnapshot();
}

uint64_t RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  absl::StatusOr<uint64_t> i = storage_->FirstIndex();
  ETCDPP_CHECK_OK(i.status());
  return *i;
}

uint64_t RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  absl::StatusOr<uint64_t> i = storage_->LastIndex();
  ETCDPP_CHECK_OK(i.status());
  return *i;
}

uint64_t RaftLog::LastTerm() const {
  absl::StatusOr<uint64_t> t = Term(LastIndex());
  ETCDPP_CHECK_OK(t.status());
  return *t;
}

absl::StatusOr<uint64_t> RaftLog::Term(uint64_t i) const {
  uint64_t dummy = FirstIndex() - 1;
  if (i < dummy) return ErrCompacted();
  if (i > LastIndex()) return ErrUnavailable();
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  absl::StatusOr<uint64_t> t = storage_->Term(i);
  if (t.ok() || IsErrCompacted(t.status()) || IsErrUnavailable(t.status())) return t;
  ETCDPP_CHECK_OK(t.status());
  return t;
}

uint64_t RaftLog::ZeroTermOnErr(uint64_t i) const {
  absl::StatusOr<uint64_t> t = Term(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(uint64_t i, uint64_t t) const {
  absl::StatusOr<uint64_t> got = Term(i);
  return got.ok() && *got == t;
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t term) const {
  uint64_t our_term = LastTerm();
  return term > our_term || (term == our_term && last_index >= LastIndex());
}

absl::StatusOr<std::vector<raftpb::Entry>> RaftLog::Entries(uint64_t i,
                                                            uint64_t max_size) const {
  if (i > LastIndex()) return std::vector<raftpb::Entry>{};
  return Slice(i, LastIndex() + 1, max_size);
}

std::vector<raftpb::Entry> RaftLog::AllEntries() const {
  absl::StatusOr<std::vector<raftpb::Entry>> ents = Entries(FirstIndex(), kNoLimit);
  ETCDPP_CHECK_OK(ents.status());
  return *std::move(ents);
}

absl::Status RaftLog::MustCheckOutOfBounds(uint64_t lo, uint64_t hi) const {
  ETCDPP_CHECK(lo <= hi);
  uint64_t fi = FirstIndex();
  if (lo < fi) return ErrCompacted();
  ETCDPP_CHECK(hi <= LastIndex() + 1);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<raftpb::Entry>> RaftLog::Slice(uint64_t lo, uint64_t hi,
                                                          uint64_t max_size) const {
  ETCDPP_RETURN_IF_ERROR(MustCheckOutOfBounds(lo, hi));
  std::vector<raftpb::Entry> ents;
  if (lo == hi) return ents;
  if (lo < unstable_.offset) {
    uint64_t stored_hi = std::min(hi, unstable_.offset);
    absl::StatusOr<std::vector<raftpb::Entry>> stored =
        storage_->Entries(lo, stored_hi, max_size);
    if (!stored.ok()) {
      if (IsErrCompacted(stored.status())) return stored.status();
      ETCDPP_CHECK_OK(stored.status());
    }
    ents = *std::move(stored);
    // Cut short by the size limit: the unstable part would not fit either.
    if (ents.size() < stored_hi - lo) return ents;
  }
  if (hi > unstable_.offset) {
    std::vector<raftpb::Entry> u = unstable_.Slice(std::max(lo, unstable_.offset), hi);
    if (ents.empty()) {
      ents = std::move(u);
    } else {
      ents.insert(ents.end(), std::make_move_iterator(u.begin()),
                  std::make_move_iterator(u.end()));
    }
  }
  // Limit the total size, but always return at least one entry.
  uint64_t size = 0;
  for (size_t k = 0; k < ents.size(); ++k) {
    size += EntrySize(ents[k]);
    if (k > 0 && size > max_size) {
      ents.resize(k);
      break;
    }
  }
  return ents;
}

bool RaftLog::MaybeCommit(uint64_t max_index, uint64_t term) {
  if (max_index > committed_ &&
      (testing_commit_any_term_ || ZeroTermOnErr(max_index) == term)) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::CommitTo(uint64_t to_commit) {
  if (committed_ < to_commit) {
    ETCDPP_CHECK(to_commit <= LastIndex());
    committed_ = to_commit;
  }
}

void RaftLog::AppliedTo(uint64_t i) {
  if (i == 0) return;
  ETCDPP_CHECK(i <= committed_ && i >= applied_);
  applied_ = i;
}

void RaftLog::Restore(const raftpb::Snapshot& s) {
  RAFT_LOG(logger_, kInfo, "log starts to restore snapshot [index: %d, term: %d]",
           s.metadata().index(), s.metadata().term());
  committed_ = s.metadata().index();
  unstable_.Restore(s);
}

}  // namespace etcdpp::raft
