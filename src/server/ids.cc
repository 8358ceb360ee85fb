#include "server/ids.h"

#include <openssl/evp.h>

#include <algorithm>

#include "absl/strings/str_format.h"

namespace etcdpp::server {
namespace {

uint64_t Sha1Prefix64(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha1(), nullptr);
  uint64_t id = 0;
  for (int i = 0; i < 8; ++i) id = (id << 8) | digest[i];
  return id;
}

}  // namespace

uint64_t ComputeMemberId(std::vector<std::string> peer_urls, const std::string& cluster_token) {
  std::sort(peer_urls.begin(), peer_urls.end());
  std::string b;
  for (const auto& u : peer_urls) b += u;
  b += cluster_token;
  return Sha1Prefix64(b);
}

uint64_t ComputeClusterId(std::vector<uint64_t> member_ids) {
  std::sort(member_ids.begin(), member_ids.end());
  std::string b;
  for (uint64_t id : member_ids) {
    for (int shift = 56; shift >= 0; shift -= 8) b.push_back(static_cast<char>(id >> shift));
  }
  return Sha1Prefix64(b);
}

std::string IdToHex(uint64_t id) { return absl::StrFormat("%x", id); }

}  // namespace etcdpp::server

namespace etcdpp::server {

namespace {
constexpr int kTimestampBits = 40;
constexpr int kCounterBits = 8;
constexpr int kSuffixBits = kTimestampBits + kCounterBits;
constexpr uint64_t LowBits(uint64_t x, int n) { return x & ((uint64_t{1} << n) - 1); }
}  // namespace

IdGenerator::IdGenerator(uint64_t member_id, int64_t unix_ms)
    : prefix_(LowBits(member_id, 16) << kSuffixBits),
      suffix_(LowBits(static_cast<uint64_t>(unix_ms), kTimestampBits) << kCounterBits) {}

uint64_t IdGenerator::Next() {
  uint64_t suffix = suffix_.fetch_add(1) + 1;
  return prefix_ | LowBits(suffix, kSuffixBits);
}

}  // namespace etcdpp::server
