// The one table of client-visible errors: etcd's gRPC code and exact text.
// Clients (clientv3, etcdctl, python etcd3) match errors by their text, so
// every error a client can see comes from here.
#pragma once

#include "absl/strings/string_view.h"

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace etcdpp::server {

// etcd's rpctypes error messages.
inline constexpr char kErrEmptyKey[] = "etcdserver: key is not provided";
inline constexpr char kErrKeyNotFound[] = "etcdserver: key not found";
inline constexpr char kErrValueProvided[] = "etcdserver: value is provided";
inline constexpr char kErrLeaseProvided[] = "etcdserver: lease is provided";
inline constexpr char kErrTooManyOps[] = "etcdserver: too many operations in txn request";
inline constexpr char kErrDuplicateKey[] = "etcdserver: duplicate key given in txn request";
inline constexpr char kErrCompacted[] = "etcdserver: mvcc: required revision has been compacted";
inline constexpr char kErrFutureRev[] = "etcdserver: mvcc: required revision is a future revision";
inline constexpr char kErrNoSpace[] = "etcdserver: mvcc: database space exceeded";
inline constexpr char kErrLeaseNotFound[] = "etcdserver: requested lease not found";
inline constexpr char kErrLeaseExist[] = "etcdserver: lease already exists";
inline constexpr char kErrLeaseTTLTooLarge[] = "etcdserver: too large lease TTL";
inline constexpr char kErrRequestTooLarge[] = "etcdserver: request is too large";
inline constexpr char kErrNoLeader[] = "etcdserver: no leader";
inline constexpr char kErrNotLeader[] = "etcdserver: not leader";
inline constexpr char kErrStopped[] = "etcdserver: server stopped";
inline constexpr char kErrTimeout[] = "etcdserver: request timed out";
inline constexpr char kErrMemberNotFound[] = "etcdserver: member not found";
inline constexpr char kErrNotCapable[] = "etcdserver: not capable";
inline constexpr char kErrMemberExist[] = "etcdserver: member ID already exist";
inline constexpr char kErrPeerUrlExist[] = "etcdserver: Peer URLs already exists";
inline constexpr char kErrMemberNotEnoughStarted[] =
    "etcdserver: re-configuration failed due to not enough started members";
inline constexpr char kErrMemberBadUrls[] = "etcdserver: given member URLs are invalid";
inline constexpr char kErrMemberNotLearner[] = "etcdserver: can only promote a learner member";
inline constexpr char kErrLearnerNotReady[] =
    "etcdserver: can only promote a learner member which is in sync with leader";
inline constexpr char kErrTooManyLearners[] = "etcdserver: too many learner members in cluster";
inline constexpr char kErrLeaderChanged[] = "etcdserver: leader changed";
inline constexpr char kErrTimeoutLeaderFail[] =
    "etcdserver: request timed out, possibly due to previous leader failure";
inline constexpr char kErrUnhealthy[] = "etcdserver: unhealthy cluster";
inline constexpr char kErrNotSupportedForLearner[] = "etcdserver: rpc not supported for learner";
inline constexpr char kErrBadLeaderTransferee[] = "etcdserver: bad leader transferee";

// Builds the absl::Status for one of the texts above, with etcd's code.
absl::Status EtcdError(absl::string_view text);

// Converts any status reaching a client into a gRPC status. Errors that carry
// one of etcd's texts keep their code and text; mvcc errors get their
// "etcdserver: " prefix; anything else becomes etcd's generic form.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace etcdpp::server
