#include "common/clock.h"

#include <ctime>

namespace etcdpp {

int64_t SystemClock::UnixSeconds() const { return static_cast<int64_t>(std::time(nullptr)); }

Clock* SystemClock::Default() {
  static SystemClock clock;
  return &clock;
}

}  // namespace etcdpp
