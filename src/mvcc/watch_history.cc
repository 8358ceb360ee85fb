// WatchHistory over the RocksStore event log (CF "rev").
//
// Why a cast and not a Store method: the event log is a RocksStore feature
// (RocksStore::ReadEvents, non-virtual); store.h is owned by the MVCC store
// and its other implementations (test models) have no event log. Keeping the
// cast here, inside src/mvcc, leaves store.h untouched and the server free of
// rocks_store.h.
#include <memory>

#include "mvcc/rocks_store.h"
#include "mvcc/watch.h"

namespace etcdpp::mvcc {
namespace {

class RocksHistory final : public WatchHistory {
 public:
  explicit RocksHistory(const RocksStore* store) : store_(store) {}

  absl::StatusOr<Batch> ReadEvents(int64_t from_rev, int64_t to_rev, int64_t max_revs,
                                   bool with_prev_kv) const override {
    auto b = store_->ReadEvents(from_rev, to_rev, max_revs, with_prev_kv);
    if (!b.ok()) return b.status();
    Batch out;
    out.events = std::move(b->events);
    out.next_rev = b->next_rev;
    return out;
  }
  int64_t CompactedRevision() const override { return store_->CompactedRevision(); }

 private:
  const RocksStore* store_;
};

// Over a SwappableStore: each read goes to the store current at that time.
class SwappableHistory final : public WatchHistory {
 public:
  explicit SwappableHistory(const SwappableStore* store) : store_(store) {}

  absl::StatusOr<Batch> ReadEvents(int64_t from_rev, int64_t to_rev, int64_t max_revs,
                                   bool with_prev_kv) const override {
    return store_->With([&](const Store* s) -> absl::StatusOr<Batch> {
      const auto* rocks = dynamic_cast<const RocksStore*>(s);
      if (rocks == nullptr) return absl::UnimplementedError("store has no event log");
      return RocksHistory(rocks).ReadEvents(from_rev, to_rev, max_revs, with_prev_kv);
    });
  }
  int64_t CompactedRevision() const override { return store_->CompactedRevision(); }

 private:
  const SwappableStore* store_;
};

}  // namespace

std::unique_ptr<WatchHistory> MakeStoreHistory(const Store* store) {
  if (const auto* sw = dynamic_cast<const SwappableStore*>(store)) {
    return std::make_unique<SwappableHistory>(sw);
  }
  const auto* rocks = dynamic_cast<const RocksStore*>(store);
  if (rocks == nullptr) return nullptr;
  return std::make_unique<RocksHistory>(rocks);
}

}  // namespace etcdpp::mvcc
