// The applier turns one request into changes of the MVCC store and the
// response etcd would give, following etcd 3.4's applierV3backend rules
// (revisions, prev_kv, ignore_value/ignore_lease, txn compare and path
// evaluation, the checks a txn makes before it writes anything).
//
// Thread: Apply() only from the apply loop. Range() from any thread (it is
// the read path: serializable and linearizable reads do not go through apply).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "internal.pb.h"
#include "lease/lessor.h"
#include "kv.pb.h"
#include "mvcc/store.h"
#include "rpc.pb.h"

namespace etcdpp::server {

struct ApplyResult {
  absl::Status status;              // a client-visible error, or OK
  etcdserverpb::ResponseOp op;      // for range, put, delete_range, txn
  etcdserverpb::CompactionResponse compaction;
  etcdserverpb::AlarmResponse alarm;
  etcdserverpb::LeaseGrantResponse lease_grant;
  etcdserverpb::LeaseRevokeResponse lease_revoke;
  std::vector<mvccpb::Event> events;  // for the watch manager
};

class Applier {
 public:
  // `store` and `lessor` are not owned and must outlive the applier. The
  // lessor's lease state changes here, in log order, in step with the store.
  Applier(mvcc::Store* store, lease::Lessor* lessor);

  // Applies `req` proposed at raft index `index`. For a compaction,
  // `on_compacted` runs once the history is physically gone (may be empty).
  ApplyResult Apply(const internalpb::InternalRequest& req, uint64_t index,
                    std::function<void()> on_compacted = nullptr);

  // The read path: a Range on the store at r.revision (0 = `read_rev`, the
  // newest revision this server may expose; 0 = the store's current one).
  absl::Status Range(const etcdserverpb::RangeRequest& r, int64_t read_rev,
                     etcdserverpb::RangeResponse* resp) const;

 private:
  ApplyResult Put(const etcdserverpb::PutRequest& p, uint64_t index);
  ApplyResult DeleteRange(const etcdserverpb::DeleteRangeRequest& d, uint64_t index);
  ApplyResult Txn(const etcdserverpb::TxnRequest& t, uint64_t index);
  ApplyResult Compact(const etcdserverpb::CompactionRequest& c, uint64_t index,
                      std::function<void()> on_compacted);
  ApplyResult LeaseGrant(const etcdserverpb::LeaseGrantRequest& g, uint64_t index);
  ApplyResult LeaseRevoke(const etcdserverpb::LeaseRevokeRequest& r, uint64_t index);
  ApplyResult LeaseCheckpoint(const etcdserverpb::LeaseCheckpointRequest& c, uint64_t index);

  mvcc::Store* store_;
  lease::Lessor* lessor_;
};

}  // namespace etcdpp::server
