#include "mvcc/encoding.h"

#include <cstring>
#include <limits>

namespace etcdpp::mvcc {
namespace {

void PutVarint64(std::string* dst, uint64_t v) {
  while (v >= 0x80) {
    dst->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  dst->push_back(static_cast<char>(v));
}

bool GetVarint64(rocksdb::Slice* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    uint8_t byte = static_cast<uint8_t>((*in)[0]);
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

constexpr uint8_t kFlagTombstone = 0x01;

class KeyRevComparatorImpl final : public rocksdb::Comparator {
 public:
  const char* Name() const override { return "etcdpp.KeyRevComparator.v1"; }

  int Compare(const rocksdb::Slice& a, const rocksdb::Slice& b) const override {
    if (a.size() < kRevSuffixBytes || b.size() < kRevSuffixBytes) return a.compare(b);
    rocksdb::Slice ua(a.data(), a.size() - kRevSuffixBytes);
    rocksdb::Slice ub(b.data(), b.size() - kRevSuffixBytes);
    int c = ua.compare(ub);
    if (c != 0) return c;
    return std::memcmp(a.data() + ua.size(), b.data() + ub.size(), kRevSuffixBytes);
  }
  bool Equal(const rocksdb::Slice& a, const rocksdb::Slice& b) const override { return a == b; }
  // Index separators stay full keys: always valid, slightly larger indexes.
  void FindShortestSeparator(std::string*, const rocksdb::Slice&) const override {}
  void FindShortSuccessor(std::string*) const override {}
  bool CanKeysWithDifferentByteContentsBeEqual() const override { return false; }
};

class UserKeyPrefixExtractor final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "etcdpp.UserKeyPrefix.v1"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), key.size() - kRevSuffixBytes);
  }
  bool InDomain(const rocksdb::Slice& key) const override { return key.size() >= kRevSuffixBytes; }
};

}  // namespace

void PutBigEndian64(std::string* dst, uint64_t v) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  dst->append(buf, 8);
}

uint64_t GetBigEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string VersionKey(std::string_view user_key, Revision rev) {
  std::string k;
  k.reserve(user_key.size() + kRevSuffixBytes);
  k.append(user_key);
  PutBigEndian64(&k, ~static_cast<uint64_t>(rev.main));
  PutBigEndian64(&k, ~static_cast<uint64_t>(rev.sub));
  return k;
}

std::string VersionSeekKey(std::string_view user_key, int64_t rev) {
  std::string k;
  k.reserve(user_key.size() + kRevSuffixBytes);
  k.append(user_key);
  PutBigEndian64(&k, ~static_cast<uint64_t>(rev));
  PutBigEndian64(&k, 0);  // ~sub for the largest sub: first of `rev`
  return k;
}

std::string AfterAllVersionsKey(std::string_view user_key) {
  std::string k;
  k.reserve(user_key.size() + kRevSuffixBytes);
  k.append(user_key);
  // ~main == all ones is main 0, which no version has (revisions start at 1).
  k.append(kRevSuffixBytes, '\xff');
  return k;
}

std::string_view VersionUserKey(rocksdb::Slice k) {
  return std::string_view(k.data(), k.size() - kRevSuffixBytes);
}

Revision VersionRevision(rocksdb::Slice k) {
  const char* p = k.data() + k.size() - kRevSuffixBytes;
  return Revision{static_cast<int64_t>(~GetBigEndian64(p)),
                  static_cast<int64_t>(~GetBigEndian64(p + 8))};
}

std::string EncodePutValue(int64_t create_revision, int64_t version, int64_t lease,
                           std::string_view value) {
  std::string out;
  out.reserve(1 + 30 + value.size());
  out.push_back(0);
  PutVarint64(&out, static_cast<uint64_t>(create_revision));
  PutVarint64(&out, static_cast<uint64_t>(version));
  PutVarint64(&out, static_cast<uint64_t>(lease));
  out.append(value);
  return out;
}

std::string EncodeTombstoneValue() { return std::string(1, static_cast<char>(kFlagTombstone)); }

bool DecodeVersionValue(rocksdb::Slice in, VersionValue* out) {
  if (in.empty()) return false;
  uint8_t flags = static_cast<uint8_t>(in[0]);
  in.remove_prefix(1);
  *out = VersionValue{};
  if (flags & kFlagTombstone) {
    out->tombstone = true;
    return true;
  }
  uint64_t c, v, l;
  if (!GetVarint64(&in, &c) || !GetVarint64(&in, &v) || !GetVarint64(&in, &l)) return false;
  out->create_revision = static_cast<int64_t>(c);
  out->version = static_cast<int64_t>(v);
  out->lease = static_cast<int64_t>(l);
  out->value = std::string_view(in.data(), in.size());
  return true;
}

std::string RevKey(Revision rev) {
  std::string k;
  k.reserve(16);
  PutBigEndian64(&k, static_cast<uint64_t>(rev.main));
  PutBigEndian64(&k, static_cast<uint64_t>(rev.sub));
  return k;
}

Revision DecodeRevKey(rocksdb::Slice k) {
  return Revision{static_cast<int64_t>(GetBigEndian64(k.data())),
                  static_cast<int64_t>(GetBigEndian64(k.data() + 8))};
}

std::string EncodeRevValue(EventKind kind, std::string_view user_key) {
  std::string out;
  out.reserve(1 + user_key.size());
  out.push_back(static_cast<char>(kind));
  out.append(user_key);
  return out;
}

bool DecodeRevValue(rocksdb::Slice in, EventKind* kind, std::string_view* user_key) {
  if (in.empty() || static_cast<uint8_t>(in[0]) > 1) return false;
  *kind = static_cast<EventKind>(in[0]);
  *user_key = std::string_view(in.data() + 1, in.size() - 1);
  return true;
}

std::string EncodeU64(uint64_t v) {
  std::string s;
  PutBigEndian64(&s, v);
  return s;
}

bool DecodeU64(rocksdb::Slice in, uint64_t* out) {
  if (in.size() != 8) return false;
  *out = GetBigEndian64(in.data());
  return true;
}

const rocksdb::Comparator* KeyRevComparator() {
  static const KeyRevComparatorImpl* const kComparator = new KeyRevComparatorImpl();
  return kComparator;
}

const rocksdb::SliceTransform* NewUserKeyPrefixExtractor() { return new UserKeyPrefixExtractor(); }

std::string LeaseRecordKey(int64_t id) {
  std::string k(1, 'L');
  PutBigEndian64(&k, static_cast<uint64_t>(id));
  return k;
}

std::string LeaseAttachKey(int64_t id, std::string_view user_key) {
  std::string k(1, 'A');
  PutBigEndian64(&k, static_cast<uint64_t>(id));
  k.append(user_key.data(), user_key.size());
  return k;
}

std::string EncodeLeaseRecord(int64_t ttl, int64_t remaining_ttl) {
  std::string out;
  PutVarint64(&out, static_cast<uint64_t>(ttl));
  PutVarint64(&out, static_cast<uint64_t>(remaining_ttl));
  return out;
}

bool DecodeLeaseRecord(rocksdb::Slice in, int64_t* ttl, int64_t* remaining_ttl) {
  uint64_t t, r;
  if (!GetVarint64(&in, &t) || !GetVarint64(&in, &r) || !in.empty()) return false;
  *ttl = static_cast<int64_t>(t);
  *remaining_ttl = static_cast<int64_t>(r);
  return true;
}

}  // namespace etcdpp::mvcc
