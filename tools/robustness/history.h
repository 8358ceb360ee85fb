// History records of a robustness run: one flat JSON object per line.
//
// The workload (workload.cc) writes them, the checkers (checker.h) read them,
// so a saved history can be checked again with `rob_check --history FILE`.
// Records are flat objects whose values are strings, integers, booleans or
// null; the parser here reads exactly that subset (no nesting, no floats).
//
// Record kinds ("t" field) and their fields, times in ns since the workload
// started (one steady clock for every thread of the one workload process):
//   op          id client key f=read|write|cas invoke complete
//               outcome=ok|fail|unknown rev; read: value (null = absent);
//               write: value; cas: expected (null = absent) value (new),
//               succeeded, observed (current value when it did not succeed)
//   watch       w member resp rev key type=put|delete value mod
//   watch_end   w member last_rev reconnects error
//   final       key value mod          (every key at the final revision)
//   final_rev   rev
//   at_rev      key rev value mod status  (acknowledged write re-read at its revision)
//   lease_grant lease ttl invoke complete outcome
//   lease_put   lease key outcome rev
//   lease_ka    lease invoke complete outcome ttl
//   lease_read  lease key invoke complete present
//   lease_revoke lease invoke complete outcome
//   lease_final lease ttl                 (TimeToLive after the run; -1 = gone)
//   meta        features, plant, ...
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace etcdpp::robustness {

struct Field {
  enum Kind { kNull, kBool, kInt, kString } kind = kNull;
  std::string s;
  int64_t i = 0;
  bool b = false;
};
using Record = std::map<std::string, Field>;

// Parses one line; false with *err set on malformed input.
bool ParseRecord(std::string_view line, Record* out, std::string* err);

// Reads every record of a JSON-lines file; false with *err on the first
// malformed line (named by its number).
bool ReadHistoryFile(const std::string& path, std::vector<Record>* out, std::string* err);

std::string GetStr(const Record& r, const std::string& k, const std::string& def = "");
std::optional<std::string> GetOptStr(const Record& r, const std::string& k);  // null -> nullopt
int64_t GetInt(const Record& r, const std::string& k, int64_t def = 0);
bool GetBool(const Record& r, const std::string& k, bool def = false);

// Writer side: builds one line.
class RecordWriter {
 public:
  explicit RecordWriter(std::string_view type);
  RecordWriter& Str(std::string_view k, std::string_view v);
  RecordWriter& OptStr(std::string_view k, const std::optional<std::string>& v);
  RecordWriter& Int(std::string_view k, int64_t v);
  RecordWriter& Bool(std::string_view k, bool v);
  std::string Line() const { return line_ + "}"; }

 private:
  void Key(std::string_view k);
  std::string line_;
};

std::string JsonQuote(std::string_view s);

}  // namespace etcdpp::robustness
