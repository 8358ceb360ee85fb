// HashKV: etcd's consistency hash of the key history, computed over our
// layout exactly as etcd computes it over its own, so members of a mixed or
// migrated cluster, `etcdctl endpoint hashkv` and corruption checks agree.
//
// etcd hashes its bbolt "key" bucket: CRC-32C of the bucket name "key", then,
// in revision order, each entry's key (be64(main) '_' be64(sub), plus 't' for
// a tombstone) and value (the marshalled mvccpb.KeyValue; a tombstone's holds
// only the key), for revisions <= rev, skipping history below the compacted
// revision that a compaction at rev would not keep.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "mvcc/store.h"

namespace etcdpp::mvcc {

class RocksStore;

// rev 0 = current. Errors: kErrCompacted when rev <= the compacted revision,
// kErrFutureRev when above the current one. Any thread; reads one snapshot.
// Memory: holds the hashed entries' keys and values to order them by
// revision (bounded by the live history, like etcd's own scan).
absl::StatusOr<HashKVResult> HashKV(const RocksStore& store, int64_t rev);

}  // namespace etcdpp::mvcc
