// The lessor: etcd's leases, TTLs and expiry, as a deterministic library.
//
// Two kinds of callers:
//  * the apply thread changes lease state in log order: Grant, Revoke,
//    Attach/Detach, Checkpoint, Recover. Every member applies the same
//    changes, so every member has the same leases and attached keys. The
//    lessor does not persist anything itself: the applier writes the
//    LeaseRecord (and, for a revoke, deletes the attached keys) in the same
//    MVCC WriteBatch as the change, so a crash never splits them.
//  * the leader side (the "primary"): Renew (keepalives), FindExpired (the
//    revokes to propose through Raft), FindDueCheckpoints. Only the primary
//    tracks expiry; on a follower every lease lives forever until it is
//    promoted (etcd's rule: only the leader's clock decides expiry).
//
// Expiry is a min-heap keyed by expiry time with lazy invalidation, never a
// scan of all leases; FindExpired hands out at most `limit` leases per call
// (the caller's rate limit) and offers a lease again after a retry interval
// if its revoke did not get through.
//
// Thread-safe (one mutex); time comes only from the injected Clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace etcdpp::lease {

using LeaseId = int64_t;
inline constexpr LeaseId kNoLease = 0;
// etcd's MaxLeaseTTL (seconds).
inline constexpr int64_t kMaxLeaseTtl = 9'000'000'000;

// Error texts of etcd's lease package; the server maps them to its table
// ("etcdserver: requested lease not found", ...).
inline constexpr char kErrLeaseNotFound[] = "lease not found";
inline constexpr char kErrLeaseExists[] = "lease already exists";
inline constexpr char kErrLeaseTtlTooLarge[] = "too large lease TTL";
inline constexpr char kErrNotPrimary[] = "not a primary lessor";

// What is persisted per lease (etcd's leasepb.Lease).
struct LeaseRecord {
  LeaseId id = kNoLease;
  int64_t ttl = 0;            // granted TTL in seconds (after the minimum)
  int64_t remaining_ttl = 0;  // last checkpointed remaining TTL; 0 = unset
  bool operator==(const LeaseRecord&) const = default;
};

struct Checkpoint {
  LeaseId id = kNoLease;
  int64_t remaining_ttl = 0;
};

struct TimeToLive {
  LeaseId id = kNoLease;
  int64_t ttl = 0;          // whole seconds left (floor), as etcd reports
  int64_t granted_ttl = 0;
  std::vector<std::string> keys;  // sorted; only when asked
};

struct Options {
  Clock* clock = nullptr;  // not owned; required
  // Shorter TTLs are raised to this (etcd: ceil(1.5 x election timeout)).
  int64_t min_ttl_seconds = 2;
  // A lease offered by FindExpired is offered again after this long if it
  // is still there (its revoke proposal may have been lost).
  std::chrono::milliseconds expired_retry_interval{3000};
  // Checkpointing (--experimental-enable-lease-checkpoint): remaining TTLs
  // are checkpointed through Raft this often for leases that live longer.
  bool checkpointing = false;
  std::chrono::milliseconds checkpoint_interval{5 * 60 * 1000};
  // etcd's leaseRevokeRate: Promote spreads expiries so that no second holds
  // more than 3/4 of this many.
  int64_t revoke_rate_per_second = 1000;
};

class Lessor {
 public:
  explicit Lessor(const Options& options);

  // ---- apply thread, in log order ----

  // Rebuilds the leases of a restarted member (keys are attached by the
  // caller as it loads them). Every lease lives forever until Promote.
  void Recover(const std::vector<LeaseRecord>& records);
  // Forgets every lease (before Recover from a snapshot that replaced the
  // whole state). Keeps the primary/non-primary role.
  void Clear();
  // Errors: kErrLeaseNotFound for ID 0 (the caller picks IDs), kErrLeaseExists,
  // kErrLeaseTtlTooLarge. TTL below the minimum is raised to it.
  absl::StatusOr<LeaseRecord> Grant(LeaseId id, int64_t ttl);
  // Removes the lease and returns its keys, sorted (the order in which every
  // member deletes them). NotFound (kErrLeaseNotFound) if absent.
  absl::StatusOr<std::vector<std::string>> Revoke(LeaseId id);
  // Attaches `key` to the lease (a put with this lease). NotFound if absent.
  absl::Status Attach(LeaseId id, const std::string& key);
  // Detaches `key` (deleted, or put with another lease). No-op if not there.
  void Detach(LeaseId id, const std::string& key);
  // Records a checkpointed remaining TTL; returns the record to persist, or
  // nothing if the lease is gone.
  std::optional<LeaseRecord> ApplyCheckpoint(LeaseId id, int64_t remaining_ttl);
  bool Exists(LeaseId id) const;

  // ---- the leader's side ----

  // Becoming leader: every lease expires at now + its remaining TTL +
  // `extend` (so a failover never expires a lease its holder kept alive),
  // spread so expiries do not pile up beyond the revoke rate.
  void Promote(std::chrono::nanoseconds extend);
  // No longer leader: nothing expires here any more.
  void Demote();
  bool IsPrimary() const;
  // A keepalive. Returns the TTL. Errors: kErrNotPrimary on a follower
  // (forward to the leader), kErrLeaseNotFound if absent or already expired.
  // Also returns, in *clear_checkpoint, whether the lease had a checkpointed
  // remaining TTL that must be cleared through Raft (etcd does so).
  absl::StatusOr<int64_t> Renew(LeaseId id, bool* clear_checkpoint = nullptr);
  // Up to `limit` expired leases, soonest-expired first; each is offered
  // again after expired_retry_interval unless revoked meanwhile.
  std::vector<LeaseId> FindExpired(size_t limit);
  // Checkpoints that are due (checkpointing only), at most `limit`.
  std::vector<Checkpoint> FindDueCheckpoints(size_t limit);

  // ---- reads ----

  std::optional<TimeToLive> GetTimeToLive(LeaseId id, bool with_keys) const;
  // Every lease ID, ascending.
  std::vector<LeaseId> Leases() const;
  // The lease a key is attached to, or kNoLease.
  LeaseId LeaseOf(const std::string& key) const;
  size_t size() const;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  static constexpr TimePoint kForever = TimePoint::max();

  struct Lease {
    int64_t ttl = 0;
    int64_t remaining_ttl = 0;
    TimePoint expiry = kForever;
    TimePoint heap_time = kForever;  // the heap entry that is current
    std::set<std::string> keys;
    int64_t RemainingTtlOrTtl() const { return remaining_ttl > 0 ? remaining_ttl : ttl; }
  };
  struct HeapItem {
    TimePoint time;
    LeaseId id;
    bool operator>(const HeapItem& o) const {
      return time != o.time ? time > o.time : id > o.id;
    }
  };
  using MinHeap = std::priority_queue<HeapItem, std::vector<HeapItem>, std::greater<HeapItem>>;

  // Sets expiry = now + remaining TTL + extend and (re)registers it.
  void RefreshLocked(LeaseId id, Lease& l, std::chrono::nanoseconds extend)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleCheckpointLocked(LeaseId id, const Lease& l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::map<LeaseId, Lease> leases_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, LeaseId> key_to_lease_ ABSL_GUARDED_BY(mu_);
  bool primary_ ABSL_GUARDED_BY(mu_) = false;
  MinHeap expiry_heap_ ABSL_GUARDED_BY(mu_);
  MinHeap checkpoint_heap_ ABSL_GUARDED_BY(mu_);
};

}  // namespace etcdpp::lease
