#include "common/failpoints.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace etcdpp {

std::optional<std::map<std::string, int64_t>> FailpointsFromEnv(const char* name,
                                                                const char* logger) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return std::nullopt;
  auto log = spdlog::get(logger);
  if (!log) log = spdlog::default_logger();
  std::map<std::string, int64_t> out;
  for (absl::string_view item : absl::StrSplit(env, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, '=');
    int64_t v = 0;
    if (!absl::SimpleAtoi(kv.second, &v)) {
      log->warn("{}: ignoring malformed failpoint '{}'", name, std::string(item));
      continue;
    }
    out[std::string(kv.first)] = v;
  }
  return out;
}

int64_t PositiveFailpointFromEnv(const char* name, const char* key, const char* logger) {
  auto fps = FailpointsFromEnv(name, logger);
  if (!fps) return 0;
  auto log = spdlog::get(logger);
  if (!log) log = spdlog::default_logger();
  int64_t out = 0;
  for (const auto& [k, v] : *fps) {
    if (k == key && v > 0) {
      out = v;
      log->warn("{}: failpoint {}={} (test only)", name, k, v);
    } else {
      log->warn("{}: ignoring unknown failpoint '{}'", name, k);
    }
  }
  return out;
}

}  // namespace etcdpp
