// Member and cluster IDs, derived exactly as etcd derives them so that the
// same flags give the same IDs (and clients, scripts and tooling that print
// them see the same values): member ID = first 8 bytes (big-endian) of
// SHA-1(sorted peer URLs concatenated + cluster token); cluster ID = first 8
// bytes of SHA-1(the sorted member IDs as 8-byte big-endian words).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace etcdpp::server {

uint64_t ComputeMemberId(std::vector<std::string> peer_urls, const std::string& cluster_token);
uint64_t ComputeClusterId(std::vector<uint64_t> member_ids);
// Lower-case hex without leading zeros, as etcd's types.ID prints.
std::string IdToHex(uint64_t id);

}  // namespace etcdpp::server
