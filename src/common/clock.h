// Time enters etcdpp only through Clock, so simulations can drive it.
#pragma once

#include <chrono>
#include <cstdint>

namespace etcdpp {

// Thread-safe. Implementations: SystemClock (main), FakeClock (tests).
class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time, for timeouts and lease expiry.
  virtual std::chrono::steady_clock::time_point Now() const = 0;
  // Wall time in seconds since the epoch, for IDs that etcd derives from it.
  virtual int64_t UnixSeconds() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override {
    return std::chrono::steady_clock::now();
  }
  int64_t UnixSeconds() const override;
  static Clock* Default();
};

// A clock that moves only when told. Not thread-safe: tests step it.
class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override { return now_; }
  int64_t UnixSeconds() const override {
    return 1'700'000'000 + std::chrono::duration_cast<std::chrono::seconds>(
                               now_.time_since_epoch()).count();
  }
  void Advance(std::chrono::steady_clock::duration d) { now_ += d; }

 private:
  std::chrono::steady_clock::time_point now_{};
};

}  // namespace etcdpp
