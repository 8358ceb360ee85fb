#include "lease/lessor.h"

#include <algorithm>
#include <cmath>

#include "common/status.h"

namespace etcdpp::lease {
namespace {

using std::chrono::duration_cast;
using std::chrono::nanoseconds;
using std::chrono::seconds;

}  // namespace

Lessor::Lessor(const Options& options) : options_(options) {
  ETCDPP_CHECK(options_.clock != nullptr);
}

void Lessor::Recover(const std::vector<LeaseRecord>& records) {
  absl::MutexLock l(&mu_);
  for (const LeaseRecord& r : records) {
    Lease& lease = leases_[r.id];
    lease.ttl = std::max(r.ttl, options_.min_ttl_seconds);
    lease.remaining_ttl = r.remaining_ttl;
    lease.expiry = kForever;  // refreshed when promoted
    if (primary_) RefreshLocked(r.id, lease, nanoseconds(0));
  }
}

void Lessor::Clear() {
  absl::MutexLock l(&mu_);
  leases_.clear();
  key_to_lease_.clear();
  expiry_heap_ = MinHeap();
  checkpoint_heap_ = MinHeap();
}

absl::StatusOr<LeaseRecord> Lessor::Grant(LeaseId id, int64_t ttl) {
  if (id == kNoLease) return absl::NotFoundError(kErrLeaseNotFound);
  if (ttl > kMaxLeaseTtl) return absl::OutOfRangeError(kErrLeaseTtlTooLarge);
  absl::MutexLock l(&mu_);
  if (leases_.count(id)) return absl::FailedPreconditionError(kErrLeaseExists);
  Lease& lease = leases_[id];
  lease.ttl = std::max(ttl, options_.min_ttl_seconds);
  if (primary_) {
    RefreshLocked(id, lease, nanoseconds(0));
    ScheduleCheckpointLocked(id, lease);
  }
  return LeaseRecord{id, lease.ttl, 0};
}

absl::StatusOr<std::vector<std::string>> Lessor::Revoke(LeaseId id) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return absl::NotFoundError(kErrLeaseNotFound);
  std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  for (const auto& k : keys) key_to_lease_.erase(k);
  leases_.erase(it);  // its heap entries become stale and are skipped
  return keys;
}

absl::Status Lessor::Attach(LeaseId id, const std::string& key) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return absl::NotFoundError(kErrLeaseNotFound);
  it->second.keys.insert(key);
  key_to_lease_[key] = id;
  return absl::OkStatus();
}

void Lessor::Detach(LeaseId id, const std::string& key) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it != leases_.end()) it->second.keys.erase(key);
  auto k = key_to_lease_.find(key);
  if (k != key_to_lease_.end() && k->second == id) key_to_lease_.erase(k);
}

std::optional<LeaseRecord> Lessor::ApplyCheckpoint(LeaseId id, int64_t remaining_ttl) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  // Only the remaining TTL changes; Promote applies it to the expiry.
  it->second.remaining_ttl = remaining_ttl;
  if (primary_) ScheduleCheckpointLocked(id, it->second);
  return LeaseRecord{id, it->second.ttl, remaining_ttl};
}

bool Lessor::Exists(LeaseId id) const {
  absl::MutexLock l(&mu_);
  return leases_.count(id) > 0;
}

void Lessor::RefreshLocked(LeaseId id, Lease& l, nanoseconds extend) {
  l.expiry = options_.clock->Now() + extend + seconds(l.RemainingTtlOrTtl());
  l.heap_time = l.expiry;
  expiry_heap_.push({l.expiry, id});
}

void Lessor::ScheduleCheckpointLocked(LeaseId id, const Lease& l) {
  if (!options_.checkpointing) return;
  auto interval_s = duration_cast<seconds>(options_.checkpoint_interval).count();
  if (l.RemainingTtlOrTtl() > interval_s) {
    checkpoint_heap_.push({options_.clock->Now() + options_.checkpoint_interval, id});
  }
}

void Lessor::Promote(nanoseconds extend) {
  absl::MutexLock l(&mu_);
  primary_ = true;
  expiry_heap_ = MinHeap();
  checkpoint_heap_ = MinHeap();
  for (auto& [id, lease] : leases_) {
    RefreshLocked(id, lease, extend);
    ScheduleCheckpointLocked(id, lease);
  }
  if (static_cast<int64_t>(leases_.size()) < options_.revoke_rate_per_second) return;

  // Too many leases could expire in the same second after a failover:
  // spread them so that at most 3/4 of the revoke rate expire per second,
  // delaying the later ones (etcd's Promote does the same).
  const TimePoint now = options_.clock->Now();
  std::vector<std::pair<TimePoint, LeaseId>> order;
  order.reserve(leases_.size());
  for (const auto& [id, lease] : leases_) order.emplace_back(lease.expiry, id);
  std::sort(order.begin(), order.end());
  const int64_t target_per_second = 3 * options_.revoke_rate_per_second / 4;
  nanoseconds base_window = order.front().first - now;
  nanoseconds next_window = base_window + seconds(1);
  int64_t expires = 0;
  for (const auto& [expiry, id] : order) {
    nanoseconds remaining = expiry - now;
    if (remaining > next_window) {
      base_window = remaining;
      next_window = base_window + seconds(1);
      expires = 1;
      continue;
    }
    if (++expires <= target_per_second) continue;
    double rate_delay_ns = 1e9 * static_cast<double>(expires) / target_per_second;
    // A lease n seconds past the base window needs n seconds less delay.
    rate_delay_ns -= static_cast<double>((remaining - base_window).count());
    nanoseconds delay(static_cast<int64_t>(rate_delay_ns));
    next_window = base_window + delay;
    Lease& lease = leases_[id];
    RefreshLocked(id, lease, delay + extend);
  }
}

void Lessor::Demote() {
  absl::MutexLock l(&mu_);
  primary_ = false;
  for (auto& [id, lease] : leases_) {
    lease.expiry = kForever;
    lease.heap_time = kForever;
  }
  expiry_heap_ = MinHeap();
  checkpoint_heap_ = MinHeap();
}

bool Lessor::IsPrimary() const {
  absl::MutexLock l(&mu_);
  return primary_;
}

absl::StatusOr<int64_t> Lessor::Renew(LeaseId id, bool* clear_checkpoint) {
  absl::MutexLock l(&mu_);
  if (!primary_) return absl::FailedPreconditionError(kErrNotPrimary);
  auto it = leases_.find(id);
  if (it == leases_.end()) return absl::NotFoundError(kErrLeaseNotFound);
  Lease& lease = it->second;
  // An expired lease is being revoked: it cannot be saved any more.
  if (lease.expiry <= options_.clock->Now()) return absl::NotFoundError(kErrLeaseNotFound);
  if (clear_checkpoint) *clear_checkpoint = options_.checkpointing && lease.remaining_ttl > 0;
  // The renewed lease runs its full TTL again.
  lease.remaining_ttl = 0;
  RefreshLocked(id, lease, nanoseconds(0));
  return lease.ttl;
}

std::vector<LeaseId> Lessor::FindExpired(size_t limit) {
  std::vector<LeaseId> out;
  absl::MutexLock l(&mu_);
  if (!primary_) return out;
  const TimePoint now = options_.clock->Now();
  while (!expiry_heap_.empty() && out.size() < limit) {
    HeapItem top = expiry_heap_.top();
    auto it = leases_.find(top.id);
    if (it == leases_.end() || it->second.heap_time != top.time) {
      expiry_heap_.pop();  // revoked or re-registered since: stale
      continue;
    }
    if (top.time > now) break;
    expiry_heap_.pop();
    // Offer it again later unless the revoke goes through meanwhile.
    it->second.heap_time = now + options_.expired_retry_interval;
    expiry_heap_.push({it->second.heap_time, top.id});
    if (it->second.expiry <= now) out.push_back(top.id);
  }
  return out;
}

std::vector<Checkpoint> Lessor::FindDueCheckpoints(size_t limit) {
  std::vector<Checkpoint> out;
  absl::MutexLock l(&mu_);
  if (!primary_ || !options_.checkpointing) return out;
  const TimePoint now = options_.clock->Now();
  while (!checkpoint_heap_.empty() && out.size() < limit) {
    HeapItem top = checkpoint_heap_.top();
    if (top.time > now) break;
    checkpoint_heap_.pop();
    auto it = leases_.find(top.id);
    if (it == leases_.end() || it->second.expiry <= now) continue;
    auto left = duration_cast<nanoseconds>(it->second.expiry - now).count();
    int64_t remaining = static_cast<int64_t>(std::ceil(static_cast<double>(left) / 1e9));
    if (remaining >= it->second.ttl) continue;
    out.push_back({top.id, remaining});
  }
  return out;
}

std::optional<TimeToLive> Lessor::GetTimeToLive(LeaseId id, bool with_keys) const {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  const Lease& lease = it->second;
  TimeToLive t;
  t.id = id;
  t.granted_ttl = lease.ttl;
  if (lease.expiry == kForever) {
    // A follower does not track expiry; it reports the remaining TTL it knows.
    t.ttl = lease.RemainingTtlOrTtl();
  } else {
    auto left = lease.expiry - options_.clock->Now();
    t.ttl = std::max<int64_t>(0, duration_cast<seconds>(left).count());
  }
  if (with_keys) t.keys.assign(lease.keys.begin(), lease.keys.end());
  return t;
}

std::vector<LeaseId> Lessor::Leases() const {
  absl::MutexLock l(&mu_);
  std::vector<LeaseId> out;
  out.reserve(leases_.size());
  for (const auto& [id, lease] : leases_) out.push_back(id);
  return out;
}

LeaseId Lessor::LeaseOf(const std::string& key) const {
  absl::MutexLock l(&mu_);
  auto it = key_to_lease_.find(key);
  return it == key_to_lease_.end() ? kNoLease : it->second;
}

size_t Lessor::size() const {
  absl::MutexLock l(&mu_);
  return leases_.size();
}

}  // namespace etcdpp::lease
