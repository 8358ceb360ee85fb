// Test-only failpoints from the environment: NAME="key=int,key=int".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace etcdpp {

// The integer failpoints in environment variable `name`: nullopt when it is
// unset or empty. Items that are not key=integer are skipped, with a warning
// naming them (logged to `logger`, spdlog's default if none by that name).
std::optional<std::map<std::string, int64_t>> FailpointsFromEnv(const char* name,
                                                                const char* logger);

// The one positive failpoint `key` of environment variable `name` (0 when
// absent): logged as test-only when set; any other key in it is warned
// about and ignored.
int64_t PositiveFailpointFromEnv(const char* name, const char* key, const char* logger);

}  // namespace etcdpp
