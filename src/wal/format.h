// The on-disk format of WAL segments: record framing, checksums, names.
// Internal to src/wal (wal.h is the public API); tests use it directly.
//
// A segment is a file <dir>/<seq:016x>-<first_index:016x>.wal, preallocated
// to Options::segment_size_bytes and filled with records from offset 0. The
// unused tail is zeros. Every record starts at a multiple of 8:
//
//   offset  size  field
//   0       4     payload length L (little-endian), L <= kMaxPayloadBytes
//   4       1     type (RecordType)
//   5       3     reserved, zero
//   8       4     chained CRC-32C: Crc32c(crc of the previous record, type byte + payload)
//   12      4     header CRC-32C of bytes 0..11 (so a damaged length is caught
//                 before it is trusted)
//   16      L     payload
//   16+L    1     end mark 0xA5 (never zero, so a record cut short by a crash
//                 can be told from a whole one, whatever its payload ends with)
//   17+L    0..7  zero padding to the next multiple of 8
//
// The chain runs through all segments: each segment starts with a kCrc record
// whose payload is the chained CRC of the last record before it (0 for the
// first segment ever), so a reordered, dropped or foreign record or segment
// breaks the chain. Each segment's header is kCrc, kMetadata, then kSnapshot
// (first segment) or kHardState (later ones, when a hard state exists).
//
// Payloads (all integers little-endian):
//   kCrc        u32 previous chained CRC
//   kMetadata   opaque bytes (the same in every segment)
//   kEntry      u64 index, u64 term, opaque data
//   kHardState  u64 term, u64 vote, u64 commit
//   kSnapshot   u64 index, u64 term
//
// Example: a 3-byte entry "abc" at index 7, term 2 is a 16-byte header
// (L=19, type=3), 19 payload bytes (07 00.. 02 00.. 'a' 'b' 'c'), the end
// mark and 4 bytes of padding: 40 bytes.
//
// Torn tail vs corruption. Only the last segment can hold bytes that were
// never fsynced (a segment is fsynced before the next is created). There a
// record that fails is a torn write - the log ends before it - when it runs
// past the end of the file, or when its end mark and everything after it
// are zeros (a write interrupted at any byte of a preallocated file), or when
// one of its 512-byte disk sectors is all zeros (pages written back out of
// order). An all-zero header is the clean end. Anything else that fails - in
// any segment, including a fully written record with a bad CRC in the last
// one - is corruption, reported as DataLoss with file and offset.
// Known limit (shared with etcd): damage that zeroes a whole sector of the
// last segment, or the end mark of its last record, reads as a torn tail;
// the repair warning then names file, offset and how many bytes it dropped.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace etcdpp::wal {

enum class RecordType : uint8_t {
  kCrc = 1,
  kMetadata = 2,
  kEntry = 3,
  kHardState = 4,
  kSnapshot = 5,
};

inline constexpr size_t kHeaderBytes = 16;
inline constexpr size_t kSectorBytes = 512;
inline constexpr uint32_t kMaxPayloadBytes = 1u << 30;

inline constexpr char kEndMark = static_cast<char>(0xA5);

inline size_t Padded(size_t n) { return (n + 7) & ~size_t{7}; }
// Bytes a record with an n-byte payload takes in the file.
inline size_t RecordBytes(size_t n) { return kHeaderBytes + Padded(n + 1); }

// Appends one framed record to `buf` with both CRC fields zero; SealRecords
// fills them. The payload is `a` followed by `b`. REQUIRES: buf->size() % 8 == 0.
void AppendRecord(std::string* buf, RecordType type, std::string_view a, std::string_view b = {});
// Appends a kCrc record; SealRecords writes the chain value into it.
void AppendCrcRecord(std::string* buf);

// Fills the CRC fields of the records in buf[0, n), which AppendRecord built,
// continuing the chain from `*chain` and leaving the last record's CRC there.
void SealRecords(char* buf, size_t n, uint32_t* chain);

void PutU64(std::string* buf, uint64_t v);
uint64_t GetU64(const char* p);
uint32_t GetU32(const char* p);

std::string SegmentName(uint64_t seq, uint64_t first_index);
// Parses "<seq>-<index>.wal"; nullopt for any other name.
std::optional<std::pair<uint64_t, uint64_t>> ParseSegmentName(std::string_view name);

struct RecordView {
  RecordType type;
  std::string_view payload;
  uint64_t offset;  // of the record's header in its file
};

// The chained CRC while reading across segments.
struct ChainState {
  bool known = false;  // false before the first kCrc record is read
  uint32_t crc = 0;
};

struct ScanResult {
  uint64_t valid_end = 0;      // offset just past the last whole record
  bool torn = false;           // a torn record was found at valid_end
  bool saw_crc_header = false; // the segment started with its kCrc record
  uint64_t discarded_nonzero_bytes = 0;  // non-zero bytes at or after valid_end
  std::string torn_reason;
};

// Reads the records of one segment, whose whole content is `data`, calling
// `visit` for each whole, checksummed record in order (a visit error stops the
// scan and is returned). `is_last` allows a torn tail (see above); otherwise
// any damage is DataLoss naming `path` and the offset. Never reads outside
// `data`, whatever it holds.
absl::StatusOr<ScanResult> ScanSegment(absl::string_view path, std::string_view data, bool is_last,
                                       ChainState* chain,
                                       const std::function<absl::Status(const RecordView&)>& visit);

// DataLoss status "wal: corrupt <path> at offset <offset>: <why>".
absl::Status CorruptError(absl::string_view path, uint64_t offset, absl::string_view why);

}  // namespace etcdpp::wal
