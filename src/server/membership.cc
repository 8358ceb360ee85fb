#include "server/membership.h"

#include <algorithm>

namespace etcdpp::server {

void Membership::Reset(const internalpb::Membership& m) {
  absl::MutexLock l(&mu_);
  members_.clear();
  removed_.clear();
  for (const auto& mem : m.members()) members_[mem.id()] = mem;
  removed_.insert(m.removed().begin(), m.removed().end());
}

internalpb::Membership Membership::ToProto() const {
  absl::MutexLock l(&mu_);
  internalpb::Membership out;
  for (const auto& [id, m] : members_) *out.add_members() = m;
  for (uint64_t id : removed_) out.add_removed(id);
  return out;
}

std::vector<internalpb::Member> Membership::Members() const {
  absl::MutexLock l(&mu_);
  std::vector<internalpb::Member> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) out.push_back(m);
  return out;
}

std::optional<internalpb::Member> Membership::Get(uint64_t id) const {
  absl::MutexLock l(&mu_);
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  return it->second;
}

bool Membership::IsRemoved(uint64_t id) const {
  absl::MutexLock l(&mu_);
  return removed_.count(id) > 0;
}

size_t Membership::VoterCount() const {
  absl::MutexLock l(&mu_);
  return std::count_if(members_.begin(), members_.end(),
                       [](const auto& p) { return !p.second.is_learner(); });
}

std::optional<internalpb::Member> Membership::FindByPeerUrls(
    std::vector<std::string> peer_urls) const {
  std::sort(peer_urls.begin(), peer_urls.end());
  absl::MutexLock l(&mu_);
  for (const auto& [id, m] : members_) {
    std::vector<std::string> urls(m.peer_urls().begin(), m.peer_urls().end());
    std::sort(urls.begin(), urls.end());
    if (urls == peer_urls) return m;
  }
  return std::nullopt;
}

bool Membership::PeerUrlInUse(const std::vector<std::string>& peer_urls, uint64_t except_id) const {
  absl::MutexLock l(&mu_);
  for (const auto& [id, m] : members_) {
    if (id == except_id) continue;
    for (const auto& u : m.peer_urls()) {
      if (std::find(peer_urls.begin(), peer_urls.end(), u) != peer_urls.end()) return true;
    }
  }
  return false;
}

void Membership::ApplyConfChange(const raftpb::ConfChange& cc) {
  internalpb::Member m;
  const bool has_member = !cc.context().empty() && m.ParseFromString(cc.context());
  absl::MutexLock l(&mu_);
  switch (cc.type()) {
    case raftpb::ConfChangeAddNode:
    case raftpb::ConfChangeAddLearnerNode: {
      auto it = members_.find(cc.node_id());
      if (it != members_.end()) {
        // Promotion of a learner (AddNode), or a replay / bootstrap entry.
        if (cc.type() == raftpb::ConfChangeAddNode) it->second.set_is_learner(false);
        break;
      }
      if (removed_.count(cc.node_id())) break;  // never back
      if (!has_member) {
        m.Clear();
      }
      m.set_id(cc.node_id());
      m.set_is_learner(cc.type() == raftpb::ConfChangeAddLearnerNode);
      members_[cc.node_id()] = m;
      break;
    }
    case raftpb::ConfChangeRemoveNode:
      members_.erase(cc.node_id());
      removed_.insert(cc.node_id());
      break;
    case raftpb::ConfChangeUpdateNode: {
      auto it = members_.find(cc.node_id());
      if (it != members_.end() && has_member) {
        *it->second.mutable_peer_urls() = m.peer_urls();
      }
      break;
    }
    default:
      break;
  }
}

void Membership::ApplyAttributes(const internalpb::MemberAttributes& a) {
  absl::MutexLock l(&mu_);
  auto it = members_.find(a.id());
  if (it == members_.end()) return;
  it->second.set_name(a.name());
  *it->second.mutable_client_urls() = a.client_urls();
}

}  // namespace etcdpp::server
