#include "wal/format.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/crc32c.h"

namespace etcdpp::wal {
namespace {

void PutU32At(char* p, uint32_t v) { std::memcpy(p, &v, 4); }

bool AllZero(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

uint64_t CountNonZero(std::string_view s) {
  uint64_t n = 0;
  for (char c : s) n += (c != 0);
  return n;
}

// True if some 512-byte disk sector's share of data[begin, end) is all zeros:
// the mark of a write that never fully reached a preallocated file.
bool HasZeroSector(std::string_view data, uint64_t begin, uint64_t end) {
  uint64_t off = begin;
  while (off < end) {
    uint64_t chunk_end = std::min<uint64_t>(end, (off / kSectorBytes + 1) * kSectorBytes);
    if (AllZero(data.data() + off, chunk_end - off)) return true;
    off = chunk_end;
  }
  return false;
}

// True if data[from, end of file) is all zeros.
bool ZeroFrom(std::string_view data, uint64_t from) {
  return from >= data.size() || AllZero(data.data() + from, data.size() - from);
}

// True if the file reads as an interrupted write of the record (or header)
// spanning data[begin, end): its last byte and everything after it are zeros,
// as after a crash in the middle of copying it (a write cut at any byte), or
// one of its disk sectors is all zeros (pages written back out of order). A
// whole record never ends in zeros: it ends with the end mark, and a whole
// header is followed by its payload's end mark.
bool LooksTorn(std::string_view data, uint64_t begin, uint64_t end) {
  if (end > begin && data[end - 1] == 0 && ZeroFrom(data, end)) return true;
  return HasZeroSector(data, begin, end);
}

}  // namespace

void PutU64(std::string* buf, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  buf->append(b, 8);
}

uint64_t GetU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void AppendRecord(std::string* buf, RecordType type, std::string_view a, std::string_view b) {
  const size_t len = a.size() + b.size();
  char header[kHeaderBytes] = {};
  PutU32At(header, static_cast<uint32_t>(len));
  header[4] = static_cast<char>(type);
  const size_t start = buf->size();
  buf->reserve(start + RecordBytes(len));
  buf->append(header, kHeaderBytes);
  buf->append(a);
  buf->append(b);
  buf->push_back(kEndMark);
  buf->resize(start + RecordBytes(len), '\0');
}

void AppendCrcRecord(std::string* buf) { AppendRecord(buf, RecordType::kCrc, std::string(4, '\0')); }

void SealRecords(char* buf, size_t n, uint32_t* chain) {
  size_t off = 0;
  uint32_t c = *chain;
  while (off < n) {
    char* h = buf + off;
    const uint32_t len = GetU32(h);
    char* payload = h + kHeaderBytes;
    if (static_cast<RecordType>(h[4]) == RecordType::kCrc) PutU32At(payload, c);
    c = Crc32c(c, h + 4, 1);
    c = Crc32c(c, payload, len);
    PutU32At(h + 8, c);
    PutU32At(h + 12, Crc32c(0, h, 12));
    off += RecordBytes(len);
  }
  *chain = c;
}

std::string SegmentName(uint64_t seq, uint64_t first_index) {
  char name[64];
  std::snprintf(name, sizeof(name), "%016" PRIx64 "-%016" PRIx64 ".wal", seq, first_index);
  return name;
}

std::optional<std::pair<uint64_t, uint64_t>> ParseSegmentName(std::string_view name) {
  if (name.size() != 16 + 1 + 16 + 4 || name[16] != '-' || name.substr(33) != ".wal") {
    return std::nullopt;
  }
  auto hex = [](std::string_view s) -> std::optional<uint64_t> {
    uint64_t v = 0;
    for (char c : s) {
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        return std::nullopt;
      }
      v = v * 16 + static_cast<uint64_t>(d);
    }
    return v;
  };
  auto seq = hex(name.substr(0, 16));
  auto index = hex(name.substr(17, 16));
  if (!seq || !index) return std::nullopt;
  return std::make_pair(*seq, *index);
}

absl::Status CorruptError(absl::string_view path, uint64_t offset, absl::string_view why) {
  return absl::DataLossError(absl::StrCat("wal: corrupt ", path, " at offset ", offset, ": ", why));
}

absl::StatusOr<ScanResult> ScanSegment(absl::string_view path, std::string_view data, bool is_last,
                                       ChainState* chain,
                                       const std::function<absl::Status(const RecordView&)>& visit) {
  ScanResult result;
  const uint64_t size = data.size();
  uint64_t off = 0;
  bool first = true;
  auto torn = [&](std::string reason) -> absl::StatusOr<ScanResult> {
    result.valid_end = off;
    result.torn = true;
    result.torn_reason = std::move(reason);
    result.discarded_nonzero_bytes = CountNonZero(data.substr(off));
    return result;
  };
  while (true) {
    const uint64_t remaining = size - off;
    if (remaining == 0) break;
    if (remaining < kHeaderBytes) {
      if (AllZero(data.data() + off, remaining)) break;
      if (is_last) return torn("partial record header at end of file");
      return CorruptError(path, off, "partial record header at end of file");
    }
    const char* h = data.data() + off;
    if (AllZero(h, kHeaderBytes)) {
      // The clean end of the log in this segment. Behind it only zeros may
      // follow, except in the last segment, where writes that were never
      // fsynced may have reached the disk out of order.
      const uint64_t junk = CountNonZero(data.substr(off));
      if (junk != 0 && !is_last) {
        return CorruptError(path, off, "data after the end of the log in a sealed segment");
      }
      result.discarded_nonzero_bytes = junk;
      break;
    }
    if (Crc32c(0, h, 12) != GetU32(h + 12)) {
      if (is_last && LooksTorn(data, off, off + kHeaderBytes)) {
        return torn("partially written record header");
      }
      return CorruptError(path, off, "record header checksum mismatch");
    }
    const uint32_t len = GetU32(h);
    const uint8_t type = static_cast<uint8_t>(h[4]);
    if (h[5] != 0 || h[6] != 0 || h[7] != 0) {
      return CorruptError(path, off, "nonzero reserved header bytes");
    }
    if (type < static_cast<uint8_t>(RecordType::kCrc) ||
        type > static_cast<uint8_t>(RecordType::kSnapshot)) {
      return CorruptError(path, off, absl::StrCat("unknown record type ", type));
    }
    if (len > kMaxPayloadBytes) {
      return CorruptError(path, off, absl::StrCat("record length ", len, " exceeds the limit"));
    }
    const uint64_t total = RecordBytes(len);
    if (total > remaining) {
      if (is_last) return torn("record runs past the end of the file");
      return CorruptError(path, off, "record runs past the end of the file");
    }
    const auto rtype = static_cast<RecordType>(type);
    std::string_view payload = data.substr(off + kHeaderBytes, len);
    if (first != (rtype == RecordType::kCrc)) {
      return CorruptError(path, off,
                          first ? "segment does not start with a crc record"
                                : "crc record in the middle of a segment");
    }
    uint32_t prev = chain->crc;
    if (rtype == RecordType::kCrc) {
      if (len != 4) return CorruptError(path, off, "malformed crc record");
      const uint32_t carried = GetU32(payload.data());
      // The record checksums itself from the value it carries; whether that
      // value continues the chain is checked below, so a torn kCrc record
      // reads as torn, not as a broken chain.
      prev = carried;
    }
    uint32_t c = Crc32c(prev, h + 4, 1);
    c = Crc32c(c, payload);
    const bool marked = data[off + kHeaderBytes + len] == kEndMark;
    if (c != GetU32(h + 8) || !marked) {
      if (is_last && LooksTorn(data, off, off + kHeaderBytes + len + 1)) {
        return torn("partially written record");
      }
      return CorruptError(path, off, marked ? "record checksum mismatch" : "record end mark missing");
    }
    if (rtype == RecordType::kCrc) {
      if (chain->known && GetU32(payload.data()) != chain->crc) {
        return CorruptError(path, off,
                            "crc chain broken: this segment does not follow the previous one");
      }
      result.saw_crc_header = true;
    }
    chain->known = true;
    chain->crc = c;
    first = false;
    switch (rtype) {
      case RecordType::kEntry:
        if (len < 16) return CorruptError(path, off, "malformed entry record");
        break;
      case RecordType::kHardState:
        if (len != 24) return CorruptError(path, off, "malformed hard state record");
        break;
      case RecordType::kSnapshot:
        if (len != 16) return CorruptError(path, off, "malformed snapshot record");
        break;
      default:
        break;
    }
    ETCDPP_RETURN_IF_ERROR(visit(RecordView{rtype, payload, off}));
    off += total;
  }
  result.valid_end = off;
  return result;
}

}  // namespace etcdpp::wal
