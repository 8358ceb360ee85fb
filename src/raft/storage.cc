#include "raft/storage.h"

#include <algorithm>

namespace etcdpp::raft {

absl::Status ErrCompacted() {
  return absl::OutOfRangeError("requested index is unavailable due to compaction");
}
absl::Status ErrUnavailable() {
  return absl::NotFoundError("requested entry at index is unavailable");
}
absl::Status ErrSnapshotTemporarilyUnavailable() {
  return absl::UnavailableError("snapshot is temporarily unavailable");
}
absl::Status ErrSnapOutOfDate() {
  return absl::FailedPreconditionError(
      "requested index is older than the existing snapshot");
}

MemoryStorage::MemoryStorage() { ents_.emplace_back(); }

absl::StatusOr<InitialState> MemoryStorage::GetInitialState() const {
  return InitialState{hard_state_, conf_state_};
}

absl::StatusOr<std::vector<raftpb::Entry>> MemoryStorage::Entries(uint64_t lo, uint64_t hi,
                                                                  uint64_t max_size) const {
  uint64_t offset = ents_[0].index();
  if (lo <= offset) return ErrCompacted();
  if (hi > last() + 1) return ErrUnavailable();
  std::vector<raftpb::Entry> out;
  if (ents_.size() == 1) return out;  // only the dummy entry
  uint64_t size = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const raftpb::Entry& e = ents_[i - offset];
    size += EntrySize(e);
    if (!out.empty() && size > max_size) break;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<uint64_t> MemoryStorage::Term(uint64_t i) const {
  uint64_t offset = ents_[0].index();
  if (i < offset) return ErrCompacted();
  if (i - offset >= ents_.size()) return ErrUnavailable();
  return ents_[i - offset].term();
}

absl::StatusOr<uint64_t> MemoryStorage::LastIndex() const { return last(); }
absl::StatusOr<uint64_t> MemoryStorage::FirstIndex() const { return first(); }
absl::StatusOr<raftpb::Snapshot> MemoryStorage::GetSnapshot() const { return snapshot_; }

absl::Status MemoryStorage::ApplySnapshot(const raftpb::Snapshot& snap) {
  if (snapshot_.metadata().index() >= snap.metadata().index()) return ErrSnapOutOfDate();
  snapshot_ = snap;
  conf_state_ = snap.metadata().conf_state();
  ents_.clear();
  raftpb::Entry dummy;
  dummy.set_index(snap.metadata().index());
  dummy.set_term(snap.metadata().term());
  ents_.push_back(std::move(dummy));
  return absl::OkStatus();
}

absl::StatusOr<raftpb::Snapshot> MemoryStorage::CreateSnapshot(uint64_t i,
                                                               const raftpb::ConfState& cs,
                                                               std::string data) {
  if (i <= snapshot_.metadata().index()) return ErrSnapOutOfDate();
  uint64_t offset = ents_[0].index();
  if (i > last()) {
    return absl::InvalidArgumentError("snapshot index is out of bound of the last index");
  }
  snapshot_.mutable_metadata()->set_index(i);
  snapshot_.mutable_metadata()->set_term(ents_[i - offset].term());
  *snapshot_.mutable_metadata()->mutable_conf_state() = cs;
  snapshot_.set_data(std::move(data));
  return snapshot_;
}

absl::Status MemoryStorage::Compact(uint64_t compact_index) {
  uint64_t offset = ents_[0].index();
  if (compact_index <= offset) return ErrCompacted();
  if (compact_index > last()) {
    return absl::InvalidArgumentError("compact index is out of bound of the last index");
  }
  uint64_t k = compact_index - offset;
  raftpb::Entry dummy;
  dummy.set_index(ents_[k].index());
  dummy.set_term(ents_[k].term());
  std::vector<raftpb::Entry> rest;
  rest.reserve(ents_.size() - k);
  rest.push_back(std::move(dummy));
  for (size_t j = k + 1; j < ents_.size(); ++j) rest.push_back(std::move(ents_[j]));
  ents_ = std::move(rest);
  return absl::OkStatus();
}

absl::Status MemoryStorage::Append(const std::vector<raftpb::Entry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  uint64_t first_new = first();
  uint64_t last_new = entries.back().index();
  if (last_new < first_new) return absl::OkStatus();  // all already compacted
  size_t skip = 0;
  if (entries.front().index() < first_new) skip = first_new - entries.front().index();
  uint64_t start = entries[skip].index();
  uint64_t offset = start - ents_[0].index();
  if (offset > ents_.size()) {
    return absl::InternalError("missing log entries before appended ones");
  }
  ents_.resize(offset);  // truncate the conflicting (or equal) suffix
  for (size_t j = skip; j < entries.size(); ++j) ents_.push_back(entries[j]);
  return absl::OkStatus();
}

}  // namespace etcdpp::raft
