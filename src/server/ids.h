// Member and cluster IDs, derived exactly as etcd derives them so that the
// same flags give the same IDs (and clients, scripts and tooling that print
// them see the same values): member ID = first 8 bytes (big-endian) of
// SHA-1(sorted peer URLs concatenated + cluster token); cluster ID = first 8
// bytes of SHA-1(the sorted member IDs as 8-byte big-endian words).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace etcdpp::server {

uint64_t ComputeMemberId(std::vector<std::string> peer_urls, const std::string& cluster_token);
uint64_t ComputeClusterId(std::vector<uint64_t> member_ids);
// Lower-case hex without leading zeros, as etcd's types.ID prints.
std::string IdToHex(uint64_t id);

}  // namespace etcdpp::server

namespace etcdpp::server {

// etcd's request/lease ID generator (pkg/idutil): the low 16 bits of the
// member ID in the top 16 bits, then a 40-bit millisecond timestamp taken at
// start and an 8-bit counter, incremented together. IDs are unique across
// members and across restarts of one member (unless 2^8 IDs per ms are used
// for longer than the restart takes). Thread-safe.
class IdGenerator {
 public:
  IdGenerator(uint64_t member_id, int64_t unix_ms);
  uint64_t Next();

 private:
  uint64_t prefix_;
  std::atomic<uint64_t> suffix_;
};

}  // namespace etcdpp::server
