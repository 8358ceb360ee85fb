#include "mvcc/store.h"

namespace etcdpp::mvcc {

std::unique_ptr<Store> SwappableStore::Swap(std::unique_ptr<Store> next) {
  absl::WriterMutexLock l(&mu_);
  std::swap(inner_, next);
  return next;
}

int64_t SwappableStore::CurrentRevision() const {
  return With([](const Store* s) { return s->CurrentRevision(); });
}
int64_t SwappableStore::CompactedRevision() const {
  return With([](const Store* s) { return s->CompactedRevision(); });
}
uint64_t SwappableStore::ConsistentIndex() const {
  return With([](const Store* s) { return s->ConsistentIndex(); });
}
absl::StatusOr<RangeResult> SwappableStore::Range(std::string_view key, std::string_view end,
                                                  const RangeOptions& opts) const {
  return With([&](const Store* s) { return s->Range(key, end, opts); });
}
std::unique_ptr<Store::WriteTxn> SwappableStore::BeginWrite() {
  absl::ReaderMutexLock l(&mu_);
  return inner_->BeginWrite();
}
absl::Status SwappableStore::Sync() {
  absl::ReaderMutexLock l(&mu_);
  return inner_->Sync();
}
absl::Status SwappableStore::Compact(int64_t rev, uint64_t consistent_index,
                                     std::function<void()> done) {
  absl::ReaderMutexLock l(&mu_);
  return inner_->Compact(rev, consistent_index, std::move(done));
}
absl::StatusOr<std::vector<LeaseData>> SwappableStore::LoadLeases() const {
  return With([](const Store* s) { return s->LoadLeases(); });
}
absl::StatusOr<std::optional<std::string>> SwappableStore::GetMeta(std::string_view name) const {
  return With([&](const Store* s) { return s->GetMeta(name); });
}
absl::StatusOr<HashKVResult> SwappableStore::HashKV(int64_t rev) const {
  return With([&](const Store* s) { return s->HashKV(rev); });
}
int64_t SwappableStore::SizeBytes() const {
  return With([](const Store* s) { return s->SizeBytes(); });
}
int64_t SwappableStore::SizeInUseBytes() const {
  return With([](const Store* s) { return s->SizeInUseBytes(); });
}
absl::Status SwappableStore::Checkpoint(const std::string& dir) const {
  return With([&](const Store* s) { return s->Checkpoint(dir); });
}

}  // namespace etcdpp::mvcc
