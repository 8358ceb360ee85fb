#include "mvcc/hash_kv.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/crc32c.h"
#include "kv.pb.h"
#include "mvcc/encoding.h"
#include "mvcc/rocks_store.h"

namespace etcdpp::mvcc {
namespace {

struct Entry {
  Revision rev;
  std::string key;    // etcd's bucket key
  std::string value;  // marshalled mvccpb.KeyValue
};

std::string EtcdRevisionKey(Revision rev, bool tombstone) {
  std::string k;
  PutBigEndian64(&k, static_cast<uint64_t>(rev.main));
  k.push_back('_');
  PutBigEndian64(&k, static_cast<uint64_t>(rev.sub));
  if (tombstone) k.push_back('t');
  return k;
}

}  // namespace

absl::StatusOr<HashKVResult> HashKV(const RocksStore& store, int64_t rev) {
  const int64_t current = store.CurrentRevision();
  const int64_t compacted = store.CompactedRevision();
  // etcd starts with compactMainRev = -1; we never record a compaction at 0.
  const int64_t compact_rev = compacted == 0 ? -1 : compacted;
  if (rev > 0 && rev <= compact_rev) return absl::OutOfRangeError(kErrCompacted);
  if (rev > current) return absl::OutOfRangeError(kErrFutureRev);
  if (rev == 0) rev = current;

  rocksdb::DB* db = store.db();
  const rocksdb::Snapshot* snap = db->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  ro.total_order_seek = true;
  std::vector<Entry> entries;
  {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, store.key_cf()));
    std::string group;        // the user key of the versions being walked
    bool group_seen = false;  // whether the newest version <= rev was met
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key();
      std::string_view user_key = VersionUserKey(k);
      Revision r = VersionRevision(k);
      if (user_key != group) {
        group.assign(user_key);
        group_seen = false;
      }
      if (r.main > rev) continue;  // newer than what is hashed
      bool newest_at_rev = !group_seen;
      group_seen = true;
      VersionValue v;
      if (!DecodeVersionValue(it->value(), &v)) {
        db->ReleaseSnapshot(snap);
        return absl::DataLossError("mvcc: corrupt version value while hashing");
      }
      // History at or below the compaction survives only as the version a
      // compaction at `rev` would keep: each key's newest, unless deleted.
      if (r.main <= compact_rev && !(newest_at_rev && !v.tombstone)) continue;
      mvccpb::KeyValue kv;
      kv.set_key(std::string(user_key));
      if (!v.tombstone) {
        kv.set_create_revision(v.create_revision);
        kv.set_mod_revision(r.main);
        kv.set_version(v.version);
        kv.set_value(std::string(v.value));
        kv.set_lease(v.lease);
      }
      entries.push_back({r, EtcdRevisionKey(r, v.tombstone), kv.SerializeAsString()});
    }
    absl::Status st = it->status().ok()
                          ? absl::OkStatus()
                          : absl::InternalError(it->status().ToString());
    db->ReleaseSnapshot(snap);
    if (!st.ok()) return st;
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.rev < b.rev; });
  uint32_t crc = Crc32c(0, "key", 3);
  for (const Entry& e : entries) {
    crc = Crc32c(crc, e.key.data(), e.key.size());
    crc = Crc32c(crc, e.value.data(), e.value.size());
  }
  return HashKVResult{crc, rev, compact_rev};
}

}  // namespace etcdpp::mvcc
