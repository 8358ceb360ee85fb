// The raft core logs through this interface so that it never touches spdlog,
// files or clocks: `main` adapts it to the module's spdlog logger, simulation
// captures or drops it. Called only from the thread that drives the RawNode.
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/str_format.h"

namespace etcdpp::raft {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

class Logger {
 public:
  virtual ~Logger() = default;
  virtual bool Enabled(LogLevel level) const = 0;
  virtual void Log(LogLevel level, std::string_view message) = 0;
};

// Drops everything. The default when Config::logger is null.
class NullLogger final : public Logger {
 public:
  bool Enabled(LogLevel) const override { return false; }
  void Log(LogLevel, std::string_view) override {}
  static NullLogger* Instance() {
    static NullLogger logger;
    return &logger;
  }
};

}  // namespace etcdpp::raft

// Formats only when the level is enabled, so debug logging costs one virtual
// call on the hot path.
#define RAFT_LOG(logger, level, ...)                                \
  do {                                                              \
    if ((logger)->Enabled(::etcdpp::raft::LogLevel::level))         \
      (logger)->Log(::etcdpp::raft::LogLevel::level,                \
                    ::absl::StrFormat(__VA_ARGS__));                \
  } while (0)
