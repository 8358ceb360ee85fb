#include "server/applier.h"

#include <algorithm>
#include <utility>

#include "common/status.h"
#include "server/errors.h"

namespace etcdpp::server {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using RangeFn = std::function<absl::StatusOr<mvcc::RangeResult>(
    std::string_view, std::string_view, const mvcc::RangeOptions&)>;

// etcd's Range semantics on top of any range function (store or write txn):
// fetch limit+1 to compute `more` unless sorting/filtering needs everything,
// prune by mod/create revision, sort (ASCEND by default for non-key
// targets), cut to the limit, drop values for keys_only.
absl::Status DoRange(const RangeFn& range, const RangeRequest& r, int64_t rev,
                     etcdserverpb::RangeResponse* resp) {
  int64_t limit = r.limit();
  if (r.sort_order() != RangeRequest::NONE || r.min_mod_revision() != 0 ||
      r.max_mod_revision() != 0 || r.min_create_revision() != 0 ||
      r.max_create_revision() != 0) {
    limit = 0;  // fetch everything; sort and truncate afterwards
  }
  if (limit > 0) limit++;  // one extra for `more`
  mvcc::RangeOptions ro;
  ro.limit = limit;
  ro.rev = rev;
  ro.count_only = r.count_only();
  // A VALUE target always sorts (ASCEND by default), and needs the values
  // even when they are not returned.
  ro.keys_only = r.keys_only() && r.sort_target() != RangeRequest::VALUE;
  ETCDPP_ASSIGN_OR_RETURN(mvcc::RangeResult rr, range(r.key(), r.range_end(), ro));

  auto prune = [&](auto drop) {
    rr.kvs.erase(std::remove_if(rr.kvs.begin(), rr.kvs.end(), drop), rr.kvs.end());
  };
  if (r.max_mod_revision() != 0)
    prune([&](const mvccpb::KeyValue& kv) { return kv.mod_revision() > r.max_mod_revision(); });
  if (r.min_mod_revision() != 0)
    prune([&](const mvccpb::KeyValue& kv) { return kv.mod_revision() < r.min_mod_revision(); });
  if (r.max_create_revision() != 0)
    prune([&](const mvccpb::KeyValue& kv) {
      return kv.create_revision() > r.max_create_revision();
    });
  if (r.min_create_revision() != 0)
    prune([&](const mvccpb::KeyValue& kv) {
      return kv.create_revision() < r.min_create_revision();
    });

  RangeRequest::SortOrder order = r.sort_order();
  if (r.sort_target() != RangeRequest::KEY && order == RangeRequest::NONE) {
    order = RangeRequest::ASCEND;  // results come key-ascending already
  }
  if (order != RangeRequest::NONE) {
    // Stable, like Go's insertion sort on the short slices etcd sorts most.
    auto less = [&](const mvccpb::KeyValue& a, const mvccpb::KeyValue& b) {
      switch (r.sort_target()) {
        case RangeRequest::VERSION: return a.version() < b.version();
        case RangeRequest::CREATE: return a.create_revision() < b.create_revision();
        case RangeRequest::MOD: return a.mod_revision() < b.mod_revision();
        case RangeRequest::VALUE: return a.value() < b.value();
        default: return a.key() < b.key();
      }
    };
    if (order == RangeRequest::ASCEND) {
      std::stable_sort(rr.kvs.begin(), rr.kvs.end(), less);
    } else {
      std::stable_sort(rr.kvs.begin(), rr.kvs.end(),
                       [&](const auto& a, const auto& b) { return less(b, a); });
    }
  }
  if (r.limit() > 0 && static_cast<int64_t>(rr.kvs.size()) > r.limit()) {
    rr.kvs.resize(r.limit());
    resp->set_more(true);
  }
  resp->mutable_header()->set_revision(rr.rev);
  resp->set_count(rr.count);
  for (auto& kv : rr.kvs) {
    if (r.keys_only()) kv.clear_value();
    *resp->add_kvs() = std::move(kv);
  }
  return absl::OkStatus();
}

bool CompareKv(const Compare& c, const mvccpb::KeyValue& kv) {
  int result = 0;
  auto cmp = [](int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); };
  switch (c.target()) {
    case Compare::VALUE: {
      const std::string& want = c.target_union_case() == Compare::kValue ? c.value() : "";
      int r = kv.value().compare(want);
      result = r < 0 ? -1 : (r > 0 ? 1 : 0);
      break;
    }
    case Compare::CREATE:
      result = cmp(kv.create_revision(),
                   c.target_union_case() == Compare::kCreateRevision ? c.create_revision() : 0);
      break;
    case Compare::MOD:
      result = cmp(kv.mod_revision(),
                   c.target_union_case() == Compare::kModRevision ? c.mod_revision() : 0);
      break;
    case Compare::VERSION:
      result = cmp(kv.version(), c.target_union_case() == Compare::kVersion ? c.version() : 0);
      break;
    case Compare::LEASE:
      result = cmp(kv.lease(), c.target_union_case() == Compare::kLease ? c.lease() : 0);
      break;
    default:
      break;
  }
  switch (c.result()) {
    case Compare::EQUAL: return result == 0;
    case Compare::NOT_EQUAL: return result != 0;
    case Compare::GREATER: return result > 0;
    case Compare::LESS: return result < 0;
    default: return true;
  }
}

// etcd's applyCompare: every key in the compare's range must satisfy it; a
// missing key compares as the zero KeyValue, except VALUE which then fails.
bool ApplyCompare(mvcc::Store::WriteTxn* txn, const Compare& c) {
  auto rr = txn->Range(c.key(), c.range_end(), mvcc::RangeOptions{});
  if (!rr.ok()) return false;
  if (rr->kvs.empty()) {
    if (c.target() == Compare::VALUE) return false;
    return CompareKv(c, mvccpb::KeyValue());
  }
  for (const auto& kv : rr->kvs) {
    if (!CompareKv(c, kv)) return false;
  }
  return true;
}

// The branch taken by a txn and, in order, by every nested txn on that
// branch, all decided against the state before the txn writes anything.
void CompareToPath(mvcc::Store::WriteTxn* txn, const TxnRequest& t, std::vector<bool>* path) {
  bool ok = true;
  for (const auto& c : t.compare()) {
    if (!ApplyCompare(txn, c)) {
      ok = false;
      break;
    }
  }
  path->push_back(ok);
  const auto& ops = ok ? t.success() : t.failure();
  for (const auto& op : ops) {
    if (op.has_request_txn()) CompareToPath(txn, op.request_txn(), path);
  }
}

}  // namespace

Applier::Applier(mvcc::Store* store, lease::Lessor* lessor) : store_(store), lessor_(lessor) {}

absl::Status Applier::Range(const RangeRequest& r, int64_t read_rev,
                            etcdserverpb::RangeResponse* resp) const {
  int64_t rev = r.revision();
  if (rev > 0 && read_rev > 0 && rev > read_rev) {
    return absl::OutOfRangeError(mvcc::kErrFutureRev);
  }
  if (rev <= 0) rev = read_rev;
  RangeFn fn = [this](std::string_view k, std::string_view e, const mvcc::RangeOptions& o) {
    return store_->Range(k, e, o);
  };
  return DoRange(fn, r, rev, resp);
}

ApplyResult Applier::Apply(const internalpb::InternalRequest& req, uint64_t index,
                           std::function<void()> on_compacted) {
  if (req.has_put()) return Put(req.put(), index);
  if (req.has_delete_range()) return DeleteRange(req.delete_range(), index);
  if (req.has_txn()) return Txn(req.txn(), index);
  if (req.has_compaction()) return Compact(req.compaction(), index, std::move(on_compacted));
  if (req.has_lease_grant()) return LeaseGrant(req.lease_grant(), index);
  if (req.has_lease_revoke()) return LeaseRevoke(req.lease_revoke(), index);
  if (req.has_lease_checkpoint()) return LeaseCheckpoint(req.lease_checkpoint(), index);
  ApplyResult result;
  if (req.has_range()) {
    // A range proposed through the log (etcd does this for some reads).
    result.status = Range(req.range(), 0, result.op.mutable_response_range());
    return result;
  }
  // Nothing this applier knows: still record the index so replay skips it.
  auto txn = store_->BeginWrite();
  result.status = txn->Commit(index).status();
  return result;
}

namespace {

// Executes one op inside a write txn; `path` is consumed for nested txns.
absl::Status ExecuteOp(mvcc::Store::WriteTxn* txn, lease::Lessor* lessor, const RequestOp& op,
                       const std::vector<bool>& path, size_t* path_pos,
                       etcdserverpb::ResponseOp* out);

absl::Status ExecuteTxn(mvcc::Store::WriteTxn* txn, lease::Lessor* lessor, const TxnRequest& t,
                        const std::vector<bool>& path, size_t* path_pos,
                        etcdserverpb::TxnResponse* resp) {
  bool ok = path[(*path_pos)++];
  resp->set_succeeded(ok);
  // etcd gives every txn response a header; a nested one stays empty.
  resp->mutable_header();
  for (const auto& op : ok ? t.success() : t.failure()) {
    ETCDPP_RETURN_IF_ERROR(ExecuteOp(txn, lessor, op, path, path_pos, resp->add_responses()));
  }
  return absl::OkStatus();
}

absl::Status ExecutePut(mvcc::Store::WriteTxn* txn, lease::Lessor* lessor,
                        const etcdserverpb::PutRequest& p, etcdserverpb::PutResponse* resp) {
  std::string value = p.value();
  int64_t lease = p.lease();
  if (p.ignore_value() || p.ignore_lease()) {
    ETCDPP_ASSIGN_OR_RETURN(mvcc::RangeResult rr, txn->Range(p.key(), "", {}));
    if (rr.kvs.empty()) return EtcdError(kErrKeyNotFound);
    if (p.ignore_value()) value = rr.kvs[0].value();
    if (p.ignore_lease()) lease = rr.kvs[0].lease();
  }
  ETCDPP_ASSIGN_OR_RETURN(std::optional<mvccpb::KeyValue> prev, txn->Put(p.key(), value, lease));
  // The key follows its newest version: off its old lease, onto the new one.
  if (lessor != nullptr) {
    if (prev && prev->lease() != 0 && prev->lease() != lease) lessor->Detach(prev->lease(), p.key());
    if (lease != 0) ETCDPP_RETURN_IF_ERROR(lessor->Attach(lease, p.key()));
  }
  if (p.prev_kv() && prev) *resp->mutable_prev_kv() = std::move(*prev);
  resp->mutable_header()->set_revision(txn->Revision());
  return absl::OkStatus();
}

absl::Status ExecuteDelete(mvcc::Store::WriteTxn* txn, lease::Lessor* lessor,
                           const etcdserverpb::DeleteRangeRequest& d,
                           etcdserverpb::DeleteRangeResponse* resp) {
  ETCDPP_ASSIGN_OR_RETURN(std::vector<mvccpb::KeyValue> deleted,
                          txn->DeleteRange(d.key(), d.range_end()));
  if (lessor != nullptr) {
    for (const auto& kv : deleted) {
      if (kv.lease() != 0) lessor->Detach(kv.lease(), kv.key());
    }
  }
  resp->set_deleted(static_cast<int64_t>(deleted.size()));
  if (d.prev_kv()) {
    for (auto& kv : deleted) *resp->add_prev_kvs() = std::move(kv);
  }
  resp->mutable_header()->set_revision(txn->Changed() ? txn->Revision() : txn->Revision() - 1);
  return absl::OkStatus();
}

absl::Status ExecuteOp(mvcc::Store::WriteTxn* txn, lease::Lessor* lessor, const RequestOp& op,
                       const std::vector<bool>& path, size_t* path_pos,
                       etcdserverpb::ResponseOp* out) {
  switch (op.request_case()) {
    case RequestOp::kRequestRange: {
      RangeFn fn = [txn](std::string_view k, std::string_view e, const mvcc::RangeOptions& o) {
        return txn->Range(k, e, o);
      };
      const RangeRequest& r = op.request_range();
      return DoRange(fn, r, r.revision(), out->mutable_response_range());
    }
    case RequestOp::kRequestPut:
      return ExecutePut(txn, lessor, op.request_put(), out->mutable_response_put());
    case RequestOp::kRequestDeleteRange:
      return ExecuteDelete(txn, lessor, op.request_delete_range(),
                           out->mutable_response_delete_range());
    case RequestOp::kRequestTxn:
      return ExecuteTxn(txn, lessor, op.request_txn(), path, path_pos, out->mutable_response_txn());
    default:
      // An empty RequestOp: etcd answers an empty ResponseOp.
      return absl::OkStatus();
  }
}

// The checks etcd makes on the taken path before a txn writes anything:
// puts with ignore_* need the key, leases must exist, range revisions must
// be readable. `path_pos` walks the nested txns as CompareToPath laid them.
absl::Status CheckPath(mvcc::Store::WriteTxn* txn, const mvcc::Store* store,
                       const lease::Lessor* lessor, const TxnRequest& t,
                       const std::vector<bool>& path, size_t* path_pos) {
  bool ok = path[(*path_pos)++];
  const auto& ops = ok ? t.success() : t.failure();
  for (const auto& op : ops) {
    if (op.has_request_put()) {
      const auto& p = op.request_put();
      if (p.ignore_value() || p.ignore_lease()) {
        ETCDPP_ASSIGN_OR_RETURN(mvcc::RangeResult rr, txn->Range(p.key(), "", {}));
        if (rr.kvs.empty()) return EtcdError(kErrKeyNotFound);
      }
      if (p.lease() != 0 && !(lessor && lessor->Exists(p.lease()))) {
        return EtcdError(kErrLeaseNotFound);
      }
    } else if (op.has_request_range()) {
      int64_t rev = op.request_range().revision();
      if (rev != 0) {
        if (rev > store->CurrentRevision()) return EtcdError(kErrFutureRev);
        if (rev < store->CompactedRevision()) return EtcdError(kErrCompacted);
      }
    }
  }
  for (const auto& op : ops) {
    if (op.has_request_txn()) {
      ETCDPP_RETURN_IF_ERROR(
          CheckPath(txn, store, lessor, op.request_txn(), path, path_pos));
    }
  }
  return absl::OkStatus();
}

}  // namespace

ApplyResult Applier::Put(const etcdserverpb::PutRequest& p, uint64_t index) {
  ApplyResult result;
  auto txn = store_->BeginWrite();
  auto* resp = result.op.mutable_response_put();
  if (p.lease() != 0 && !(lessor_ && lessor_->Exists(p.lease()))) {
    result.status = EtcdError(kErrLeaseNotFound);
  } else {
    result.status = ExecutePut(txn.get(), lessor_, p, resp);
  }
  if (!result.status.ok()) {
    // Rejected before any change: the index is still consumed.
    ETCDPP_CHECK_OK(txn->Commit(index).status());
    result.op.Clear();
    return result;
  }
  auto events = txn->Commit(index);
  if (!events.ok()) {
    result.status = events.status();
    return result;
  }
  result.events = std::move(*events);
  return result;
}

ApplyResult Applier::DeleteRange(const etcdserverpb::DeleteRangeRequest& d, uint64_t index) {
  ApplyResult result;
  auto txn = store_->BeginWrite();
  result.status = ExecuteDelete(txn.get(), lessor_, d, result.op.mutable_response_delete_range());
  if (!result.status.ok()) return result;
  auto events = txn->Commit(index);
  if (!events.ok()) {
    result.status = events.status();
    return result;
  }
  result.events = std::move(*events);
  return result;
}

ApplyResult Applier::Txn(const TxnRequest& t, uint64_t index) {
  ApplyResult result;
  auto* resp = result.op.mutable_response_txn();
  auto txn = store_->BeginWrite();
  std::vector<bool> path;
  CompareToPath(txn.get(), t, &path);
  size_t pos = 0;
  result.status = CheckPath(txn.get(), store_, lessor_, t, path, &pos);
  if (result.status.ok()) {
    pos = 0;
    result.status = ExecuteTxn(txn.get(), lessor_, t, path, &pos, resp);
  }
  if (!result.status.ok()) {
    // The checks run before any change, so nothing is written; the index is
    // still consumed.
    ETCDPP_CHECK(!txn->Changed());
    ETCDPP_CHECK_OK(txn->Commit(index).status());
    resp->Clear();
    return result;
  }
  int64_t rev = txn->Changed() ? txn->Revision() : txn->Revision() - 1;
  auto events = txn->Commit(index);
  if (!events.ok()) {
    result.status = events.status();
    return result;
  }
  resp->mutable_header()->set_revision(rev);
  result.events = std::move(*events);
  return result;
}

ApplyResult Applier::Compact(const etcdserverpb::CompactionRequest& c, uint64_t index,
                             std::function<void()> on_compacted) {
  ApplyResult result;
  if (c.revision() == 0 && store_->CompactedRevision() == 0) {
    // etcd starts with compactMainRev = -1, so compacting at 0 on a store
    // never compacted succeeds and changes nothing.
    ETCDPP_CHECK_OK(store_->BeginWrite()->Commit(index).status());
    if (on_compacted) on_compacted();
    result.compaction.mutable_header()->set_revision(store_->CurrentRevision());
    return result;
  }
  result.status = store_->Compact(c.revision(), index, std::move(on_compacted));
  result.compaction.mutable_header()->set_revision(store_->CurrentRevision());
  return result;
}

namespace {

// The lessor's errors in etcd's words.
absl::Status LeaseError(const absl::Status& st) {
  absl::string_view m = st.message();
  if (m == lease::kErrLeaseExists) return EtcdError(kErrLeaseExist);
  if (m == lease::kErrLeaseTtlTooLarge) return EtcdError(kErrLeaseTTLTooLarge);
  if (m == lease::kErrLeaseNotFound) return EtcdError(kErrLeaseNotFound);
  return st;
}

}  // namespace

ApplyResult Applier::LeaseGrant(const etcdserverpb::LeaseGrantRequest& g, uint64_t index) {
  ApplyResult result;
  auto txn = store_->BeginWrite();
  auto granted = lessor_->Grant(g.id(), g.ttl());
  if (granted.ok()) {
    txn->PutLease(granted->id, granted->ttl, 0);
    result.lease_grant.set_id(granted->id);
    result.lease_grant.set_ttl(granted->ttl);
  } else {
    result.status = LeaseError(granted.status());
  }
  ETCDPP_CHECK_OK(txn->Commit(index).status());
  return result;
}

ApplyResult Applier::LeaseRevoke(const etcdserverpb::LeaseRevokeRequest& r, uint64_t index) {
  ApplyResult result;
  auto txn = store_->BeginWrite();
  auto keys = lessor_->Revoke(r.id());
  if (!keys.ok()) {
    result.status = LeaseError(keys.status());
    ETCDPP_CHECK_OK(txn->Commit(index).status());
    return result;
  }
  // Every attached key goes in this one revision, in key order (the same
  // order on every member), together with the lease record.
  for (const std::string& k : *keys) ETCDPP_CHECK_OK(txn->DeleteRange(k, "").status());
  txn->DeleteLease(r.id());
  auto events = txn->Commit(index);
  ETCDPP_CHECK_OK(events.status());
  result.events = std::move(*events);
  result.lease_revoke.mutable_header()->set_revision(store_->CurrentRevision());
  return result;
}

ApplyResult Applier::LeaseCheckpoint(const etcdserverpb::LeaseCheckpointRequest& c,
                                     uint64_t index) {
  ApplyResult result;
  auto txn = store_->BeginWrite();
  for (const auto& cp : c.checkpoints()) {
    if (auto rec = lessor_->ApplyCheckpoint(cp.id(), cp.remaining_ttl())) {
      txn->PutLease(rec->id, rec->ttl, rec->remaining_ttl);
    }
  }
  ETCDPP_CHECK_OK(txn->Commit(index).status());
  return result;
}

}  // namespace etcdpp::server
