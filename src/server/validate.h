// Request checks made before a request is proposed, exactly as etcd's
// api/v3rpc/key.go makes them (same order, same errors).
#pragma once

#include "absl/status/status.h"
#include "rpc.pb.h"

namespace etcdpp::server {

absl::Status CheckRangeRequest(const etcdserverpb::RangeRequest& r);
absl::Status CheckPutRequest(const etcdserverpb::PutRequest& r);
absl::Status CheckDeleteRequest(const etcdserverpb::DeleteRangeRequest& r);
// Op count against max_txn_ops, empty keys, then duplicate/overlapping
// puts and deletes within one branch (nested txns included).
absl::Status CheckTxnRequest(const etcdserverpb::TxnRequest& r, int64_t max_txn_ops);

}  // namespace etcdpp::server
