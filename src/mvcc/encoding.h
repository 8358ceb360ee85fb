// On-disk encodings of the MVCC store (see rocks_store.h for the layout).
// Pure functions and two RocksDB plug-ins (a comparator and a prefix
// extractor); thread-safe, no state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "rocksdb/comparator.h"
#include "rocksdb/slice.h"
#include "rocksdb/slice_transform.h"

namespace etcdpp::mvcc {

// A revision: `main` is the store revision of a write txn, `sub` numbers the
// changes inside it from 0. Ordered by (main, sub).
struct Revision {
  int64_t main = 0;
  int64_t sub = 0;
  friend bool operator==(const Revision&, const Revision&) = default;
  friend auto operator<=>(const Revision&, const Revision&) = default;
};

inline constexpr size_t kRevSuffixBytes = 16;

void PutBigEndian64(std::string* dst, uint64_t v);
uint64_t GetBigEndian64(const char* p);

// ---- CF "key": one entry per version of a user key -------------------------
//
//   key   = user_key | be64(~main) | be64(~sub)         (16-byte suffix)
//   value = flags:u8 [ create_rev:varint version:varint lease:varint value... ]
//
// flags bit 0 = tombstone; a tombstone has no other fields. The inverted
// revision makes the newest version of a key sort first, so "the version of k
// visible at R" is one Seek to VersionKey(k, {R, max}). Raw concatenation does
// not order user keys ("a"+suffix vs "ab"+suffix), so the CF uses
// KeyRevComparator: user-key part bytewise first, then the suffix.
//
// Worked example (newest first within a key):
//   "a"  ~(5,0)  put v=2     <- visible at R >= 5
//   "a"  ~(3,1)  put v=1     <- visible at R in [3, 4]
//   "ab" ~(4,0)  tombstone
//   "ab" ~(2,0)  put v=1
std::string VersionKey(std::string_view user_key, Revision rev);
// The seek target for "newest version of `user_key` with main <= rev".
std::string VersionSeekKey(std::string_view user_key, int64_t rev);
// A key sorting after every version of `user_key` and before any other key.
std::string AfterAllVersionsKey(std::string_view user_key);
// Splits a CF "key" key. REQUIRES: size >= kRevSuffixBytes.
std::string_view VersionUserKey(rocksdb::Slice k);
Revision VersionRevision(rocksdb::Slice k);

struct VersionValue {
  bool tombstone = false;
  int64_t create_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  std::string_view value;  // points into the decoded buffer
};
std::string EncodePutValue(int64_t create_revision, int64_t version, int64_t lease,
                           std::string_view value);
std::string EncodeTombstoneValue();
// False on corrupt input.
bool DecodeVersionValue(rocksdb::Slice in, VersionValue* out);

// ---- CF "rev": one entry per change, in revision order ---------------------
//
//   key   = be64(main) | be64(sub)
//   value = type:u8 (0 put, 1 delete) | user_key
//
// Watch replay from revision R is a forward scan from RevKey({R,0}) plus one
// point lookup per event in CF "key" (VersionKey(user_key, rev)); we do not
// duplicate the value here, which would double every write. Compaction walks
// this CF to find the keys changed up to its revision.
enum class EventKind : uint8_t { kPut = 0, kDelete = 1 };
std::string RevKey(Revision rev);
Revision DecodeRevKey(rocksdb::Slice k);  // REQUIRES: size == 16
std::string EncodeRevValue(EventKind kind, std::string_view user_key);
bool DecodeRevValue(rocksdb::Slice in, EventKind* kind, std::string_view* user_key);

// ---- CF "lease": lease records and the lease -> key attachment index ------
//
//   'L' | be64(id)        -> varint ttl | varint remaining_ttl
//   'A' | be64(id) | key  -> ""   (key is attached to lease id)
//
// Put/DeleteRange maintain the 'A' entries in the same batch as the version
// they write, so the index always equals "live keys whose lease is id".
std::string LeaseRecordKey(int64_t id);
std::string LeaseAttachKey(int64_t id, std::string_view user_key);
std::string EncodeLeaseRecord(int64_t ttl, int64_t remaining_ttl);
bool DecodeLeaseRecord(rocksdb::Slice in, int64_t* ttl, int64_t* remaining_ttl);

// ---- CF "meta": fixed names -> be64 ----------------------------------------
inline constexpr std::string_view kMetaFormat = "format";  // layout version
inline constexpr std::string_view kMetaConsistentIndex = "consistent_index";
inline constexpr std::string_view kMetaCurrentRev = "current_rev";
inline constexpr std::string_view kMetaScheduledCompact = "scheduled_compact_rev";
inline constexpr std::string_view kMetaFinishedCompact = "finished_compact_rev";
inline constexpr uint64_t kFormatVersion = 1;
// WriteTxn::SetMeta names are stored under this prefix, apart from ours.
inline constexpr std::string_view kMetaAppPrefix = "app/";
std::string EncodeU64(uint64_t v);
bool DecodeU64(rocksdb::Slice in, uint64_t* out);

// Orders CF "key": user-key part bytewise, then the 16-byte revision suffix
// bytewise. Keys shorter than the suffix (never written) compare whole.
// The name is persisted by RocksDB: never change the order without renaming.
const rocksdb::Comparator* KeyRevComparator();

// Prefix extractor for CF "key": the user key (all but the suffix), so
// single-key reads use the prefix bloom filter.
const rocksdb::SliceTransform* NewUserKeyPrefixExtractor();

}  // namespace etcdpp::mvcc
