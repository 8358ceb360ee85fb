// CRC-32C (Castagnoli): the checksum of every WAL record, and of etcd's
// HashKV (src/mvcc/hash_kv.h).
//
// Our own small implementation, depending on nothing but the C++ library:
// SSE4.2's crc32 instruction when the CPU has it, a table otherwise.
// Both give identical results (checked by tests/wal against known vectors).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace etcdpp {

// Extends `crc` (the CRC-32C of some prefix, 0 for the empty prefix) by `n`
// bytes at `data`. Crc32c(Crc32c(0, a), b) == Crc32c(0, a + b), which is what
// lets the WAL chain one record's checksum into the next. Thread-safe.
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);

inline uint32_t Crc32c(uint32_t crc, std::string_view s) {
  return Crc32c(crc, s.data(), s.size());
}

// The portable table-driven version, exposed so tests can compare the two.
uint32_t Crc32cPortable(uint32_t crc, const void* data, size_t n);

}  // namespace etcdpp
