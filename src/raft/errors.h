// Errors returned by the raft core (canonical codes; callers branch on the
// helpers, never on message text).
#pragma once

#include "absl/status/status.h"

namespace etcdpp::raft {

// The proposal was dropped (no leader known, leader transfer in progress,
// or this node was removed). The caller may retry later.
inline absl::Status ErrProposalDropped() { return absl::AbortedError("raft proposal dropped"); }
inline bool IsProposalDropped(const absl::Status& s) { return absl::IsAborted(s); }
// A local-only message type arrived through RawNode::Step.
inline absl::Status ErrStepLocalMsg() {
  return absl::InvalidArgumentError("raft: cannot step raft local message");
}
// A response from a peer that is not (or no longer) a member.
inline absl::Status ErrStepPeerNotFound() {
  return absl::NotFoundError("raft: cannot step as peer not found");
}

}  // namespace etcdpp::raft
