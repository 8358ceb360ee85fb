// An exclusive advisory lock on a file (flock), held for the owner's lifetime,
// so two processes never share a data dir or a WAL.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace etcdpp {

class FileLock {
 public:
  // Creates `path` if missing and locks it without waiting. Fails with
  // kUnavailable, naming the path, when another process holds it.
  static absl::StatusOr<std::unique_ptr<FileLock>> Acquire(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  FileLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

}  // namespace etcdpp
