#include "common/status.h"

#include <string>

namespace etcdpp::internal {

void CheckFailed(const char* file, int line, const char* what, const char* detail) {
  std::fprintf(stderr, "FATAL %s:%d: check failed: %s%s%s\n", file, line, what,
               detail ? ": " : "", detail ? detail : "");
  std::fflush(stderr);
  std::abort();
}

}  // namespace etcdpp::internal
