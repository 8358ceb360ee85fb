// Membership: the cluster's members as every member records them (etcd's
// membership store). Changed only by the apply loop, through committed raft
// conf changes (whose context carries the member) and published member
// attributes, so all members agree; persisted in the store's meta beside
// the applied index. Removed member IDs are remembered forever: a removed
// member may never talk to the cluster again. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "internal.pb.h"
#include "raft.pb.h"

namespace etcdpp::server {

class Membership {
 public:
  Membership() = default;

  // Replaces everything (start-up: from the store, the flags or a peer).
  void Reset(const internalpb::Membership& m);
  internalpb::Membership ToProto() const;

  std::vector<internalpb::Member> Members() const;  // ascending by ID
  std::optional<internalpb::Member> Get(uint64_t id) const;
  bool IsRemoved(uint64_t id) const;
  bool IsMember(uint64_t id) const { return Get(id).has_value(); }
  size_t VoterCount() const;
  // The member whose peer URLs are exactly `peer_urls` (any order).
  std::optional<internalpb::Member> FindByPeerUrls(std::vector<std::string> peer_urls) const;
  // Whether another member already uses one of `peer_urls`.
  bool PeerUrlInUse(const std::vector<std::string>& peer_urls, uint64_t except_id = 0) const;

  // Applies a committed conf change. Add with a member in the context
  // (an AddNode for a known learner promotes it; one for a known voter is a
  // no-op, as the bootstrap entries are); Remove; Update (new peer URLs).
  void ApplyConfChange(const raftpb::ConfChange& cc);
  void ApplyAttributes(const internalpb::MemberAttributes& a);

 private:
  mutable absl::Mutex mu_;
  std::map<uint64_t, internalpb::Member> members_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> removed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace etcdpp::server
