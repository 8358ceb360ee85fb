#include "server/validate.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "server/errors.h"

namespace etcdpp::server {
namespace {

using etcdserverpb::RequestOp;

absl::Status CheckRequestOp(const RequestOp& u, int64_t max_txn_ops);

absl::Status CheckTxnOps(const etcdserverpb::TxnRequest& r, int64_t max_txn_ops) {
  int64_t opc = r.compare_size();
  opc = std::max<int64_t>(opc, r.success_size());
  opc = std::max<int64_t>(opc, r.failure_size());
  if (opc > max_txn_ops) return EtcdError(kErrTooManyOps);
  for (const auto& c : r.compare()) {
    if (c.key().empty()) return EtcdError(kErrEmptyKey);
  }
  for (const auto& u : r.success()) ETCDPP_RETURN_IF_ERROR(CheckRequestOp(u, max_txn_ops - opc));
  for (const auto& u : r.failure()) ETCDPP_RETURN_IF_ERROR(CheckRequestOp(u, max_txn_ops - opc));
  return absl::OkStatus();
}

absl::Status CheckRequestOp(const RequestOp& u, int64_t max_txn_ops) {
  switch (u.request_case()) {
    case RequestOp::kRequestRange: return CheckRangeRequest(u.request_range());
    case RequestOp::kRequestPut: return CheckPutRequest(u.request_put());
    case RequestOp::kRequestDeleteRange: return CheckDeleteRequest(u.request_delete_range());
    case RequestOp::kRequestTxn: return CheckTxnOps(u.request_txn(), max_txn_ops);
    default: return EtcdError(kErrKeyNotFound);  // an empty op, as etcd answers it
  }
}

// A deleted interval [begin, end) in etcd's "string affine" order, where an
// empty end means +infinity; a point delete of k is [k, k+"\0").
struct Interval {
  std::string begin, end;
  bool Contains(const std::string& k) const {
    return begin <= k && (end.empty() || k < end);
  }
};

struct Intervals {
  std::vector<Interval> items;
  bool Intersects(const std::string& k) const {
    for (const auto& iv : items) {
      if (iv.Contains(k)) return true;
    }
    return false;
  }
};

absl::Status CheckIntervals(const google::protobuf::RepeatedPtrField<RequestOp>& reqs,
                            std::set<std::string>* puts, Intervals* dels) {
  for (const auto& req : reqs) {
    if (!req.has_request_delete_range()) continue;
    const auto& d = req.request_delete_range();
    if (!d.range_end().empty()) {
      dels->items.push_back({d.key(), d.range_end()});
    } else {
      dels->items.push_back({d.key(), d.key() + std::string(1, '\0')});
    }
  }
  for (const auto& req : reqs) {
    if (!req.has_request_txn()) continue;
    std::set<std::string> puts_then, puts_else;
    Intervals dels_then, dels_else;
    ETCDPP_RETURN_IF_ERROR(CheckIntervals(req.request_txn().success(), &puts_then, &dels_then));
    ETCDPP_RETURN_IF_ERROR(CheckIntervals(req.request_txn().failure(), &puts_else, &dels_else));
    for (const auto& k : puts_then) {
      if (puts->count(k) || dels->Intersects(k)) return EtcdError(kErrDuplicateKey);
      puts->insert(k);
    }
    for (const auto& k : puts_else) {
      // then/else exclude each other, so a key put by both is fine.
      if (puts->count(k) && !puts_then.count(k)) return EtcdError(kErrDuplicateKey);
      if (dels->Intersects(k)) return EtcdError(kErrDuplicateKey);
      puts->insert(k);
    }
    for (auto& iv : dels_then.items) dels->items.push_back(std::move(iv));
    for (auto& iv : dels_else.items) dels->items.push_back(std::move(iv));
  }
  for (const auto& req : reqs) {
    if (!req.has_request_put()) continue;
    const std::string& k = req.request_put().key();
    if (puts->count(k) || dels->Intersects(k)) return EtcdError(kErrDuplicateKey);
    puts->insert(k);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRangeRequest(const etcdserverpb::RangeRequest& r) {
  if (r.key().empty()) return EtcdError(kErrEmptyKey);
  return absl::OkStatus();
}

absl::Status CheckPutRequest(const etcdserverpb::PutRequest& r) {
  if (r.key().empty()) return EtcdError(kErrEmptyKey);
  if (r.ignore_value() && !r.value().empty()) return EtcdError(kErrValueProvided);
  if (r.ignore_lease() && r.lease() != 0) return EtcdError(kErrLeaseProvided);
  return absl::OkStatus();
}

absl::Status CheckDeleteRequest(const etcdserverpb::DeleteRangeRequest& r) {
  if (r.key().empty()) return EtcdError(kErrEmptyKey);
  return absl::OkStatus();
}

absl::Status CheckTxnRequest(const etcdserverpb::TxnRequest& r, int64_t max_txn_ops) {
  ETCDPP_RETURN_IF_ERROR(CheckTxnOps(r, max_txn_ops));
  // Overlaps are checked after the cheap checks to avoid quadratic work.
  for (const auto* branch : {&r.success(), &r.failure()}) {
    std::set<std::string> puts;
    Intervals dels;
    ETCDPP_RETURN_IF_ERROR(CheckIntervals(*branch, &puts, &dels));
  }
  return absl::OkStatus();
}

}  // namespace etcdpp::server
