#include "server/errors.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "mvcc/store.h"

namespace etcdpp::server {
namespace {

struct ErrorEntry {
  absl::string_view text;
  absl::StatusCode code;
};

// Codes as etcd's api/v3rpc/rpctypes/error.go.
constexpr ErrorEntry kTable[] = {
    {kErrEmptyKey, absl::StatusCode::kInvalidArgument},
    {kErrKeyNotFound, absl::StatusCode::kInvalidArgument},
    {kErrValueProvided, absl::StatusCode::kInvalidArgument},
    {kErrLeaseProvided, absl::StatusCode::kInvalidArgument},
    {kErrTooManyOps, absl::StatusCode::kInvalidArgument},
    {kErrDuplicateKey, absl::StatusCode::kInvalidArgument},
    {kErrCompacted, absl::StatusCode::kOutOfRange},
    {kErrFutureRev, absl::StatusCode::kOutOfRange},
    {kErrNoSpace, absl::StatusCode::kResourceExhausted},
    {kErrLeaseNotFound, absl::StatusCode::kNotFound},
    {kErrLeaseExist, absl::StatusCode::kFailedPrecondition},
    {kErrLeaseTTLTooLarge, absl::StatusCode::kOutOfRange},
    {kErrRequestTooLarge, absl::StatusCode::kInvalidArgument},
    {kErrNoLeader, absl::StatusCode::kUnavailable},
    {kErrNotLeader, absl::StatusCode::kFailedPrecondition},
    {kErrStopped, absl::StatusCode::kUnavailable},
    {kErrTimeout, absl::StatusCode::kUnavailable},
    {kErrMemberNotFound, absl::StatusCode::kNotFound},
    {kErrNotCapable, absl::StatusCode::kUnavailable},
    {kErrMemberExist, absl::StatusCode::kFailedPrecondition},
    {kErrPeerUrlExist, absl::StatusCode::kFailedPrecondition},
    {kErrMemberNotEnoughStarted, absl::StatusCode::kFailedPrecondition},
    {kErrMemberBadUrls, absl::StatusCode::kInvalidArgument},
    {kErrMemberNotLearner, absl::StatusCode::kFailedPrecondition},
    {kErrLearnerNotReady, absl::StatusCode::kFailedPrecondition},
    {kErrTooManyLearners, absl::StatusCode::kFailedPrecondition},
    {kErrLeaderChanged, absl::StatusCode::kUnavailable},
    {kErrTimeoutLeaderFail, absl::StatusCode::kUnavailable},
    {kErrUnhealthy, absl::StatusCode::kUnavailable},
    {kErrNotSupportedForLearner, absl::StatusCode::kUnavailable},
    {kErrBadLeaderTransferee, absl::StatusCode::kFailedPrecondition},
};

}  // namespace

absl::Status EtcdError(absl::string_view text) {
  for (const auto& e : kTable) {
    if (e.text == text) return absl::Status(e.code, text);
  }
  return absl::UnknownError(text);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  absl::string_view msg = status.message();
  if (msg == mvcc::kErrCompacted) return ToGrpcStatus(EtcdError(kErrCompacted));
  if (msg == mvcc::kErrFutureRev) return ToGrpcStatus(EtcdError(kErrFutureRev));
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(msg));
}

}  // namespace etcdpp::server
