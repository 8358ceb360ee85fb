// Helpers shared by the MVCC tests: a unique temp dir per test and a store
// opened in it.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mvcc/rocks_store.h"

namespace etcdpp::mvcc::testing {

inline const std::string kNul(1, '\0');

template <typename T>
T Unwrap(absl::StatusOr<T> s) {
  if (!s.ok()) {
    ADD_FAILURE() << s.status();
    std::abort();
  }
  return std::move(s).value();
}

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/etcdpp-mvcc-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void TearDown() override { store_.reset(); }

  void Reopen(const InternalOptions& io = InternalOptions{}) {
    store_.reset();
    Options o;
    o.path = dir_.path() + "/db";
    store_ = Unwrap(RocksStore::Open(o, io));
  }

  // One txn with one put; returns its revision.
  int64_t Put(const std::string& key, const std::string& value, int64_t lease = 0) {
    auto txn = store_->BeginWrite();
    Unwrap(txn->Put(key, value, lease));
    int64_t rev = txn->Revision();
    Unwrap(txn->Commit(++index_));
    return rev;
  }
  // One txn with one delete range; returns the deleted kvs.
  std::vector<mvccpb::KeyValue> Delete(const std::string& key, const std::string& end = "") {
    auto txn = store_->BeginWrite();
    auto deleted = Unwrap(txn->DeleteRange(key, end));
    Unwrap(txn->Commit(++index_));
    return deleted;
  }
  RangeResult Get(const std::string& key, const std::string& end = "",
                  RangeOptions opts = RangeOptions{}) {
    return Unwrap(store_->Range(key, end, opts));
  }
  RangeResult GetAt(const std::string& key, const std::string& end, int64_t rev) {
    RangeOptions o;
    o.rev = rev;
    return Get(key, end, o);
  }
  static std::vector<std::string> Keys(const RangeResult& r) {
    std::vector<std::string> out;
    for (const auto& kv : r.kvs) out.push_back(kv.key());
    return out;
  }
  static std::vector<std::string> Values(const RangeResult& r) {
    std::vector<std::string> out;
    for (const auto& kv : r.kvs) out.push_back(kv.value());
    return out;
  }

  TempDir dir_;
  std::unique_ptr<RocksStore> store_;
  uint64_t index_ = 0;
};

}  // namespace etcdpp::mvcc::testing
