// The applier's etcd rules, on a real RocksDB store in a temp dir.
#include "server/applier.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "server/errors.h"

namespace etcdpp::server {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::TxnRequest;

class ApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("applier_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    mvcc::Options o;
    o.path = dir_.string();
    auto s = mvcc::Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    lease::Options lo;
    lo.clock = &clock_;
    lessor_ = std::make_unique<lease::Lessor>(lo);
    ASSERT_TRUE(lessor_->Grant(77, 60).ok());
    applier_ = std::make_unique<Applier>(store_.get(), lessor_.get());
  }
  void TearDown() override {
    applier_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  ApplyResult Apply(internalpb::InternalRequest req) { return applier_->Apply(req, ++index_); }

  etcdserverpb::PutResponse Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    internalpb::InternalRequest req;
    req.mutable_put()->set_key(k);
    req.mutable_put()->set_value(v);
    req.mutable_put()->set_lease(lease);
    ApplyResult r = Apply(req);
    EXPECT_TRUE(r.status.ok()) << r.status;
    return r.op.response_put();
  }

  etcdserverpb::DeleteRangeResponse Delete(const std::string& k, const std::string& end = "",
                                           bool prev_kv = false) {
    internalpb::InternalRequest req;
    req.mutable_delete_range()->set_key(k);
    req.mutable_delete_range()->set_range_end(end);
    req.mutable_delete_range()->set_prev_kv(prev_kv);
    ApplyResult r = Apply(req);
    EXPECT_TRUE(r.status.ok()) << r.status;
    return r.op.response_delete_range();
  }

  absl::StatusOr<etcdserverpb::RangeResponse> Range(RangeRequest r) {
    etcdserverpb::RangeResponse resp;
    absl::Status st = applier_->Range(r, 0, &resp);
    if (!st.ok()) return st;
    return resp;
  }

  std::vector<std::string> Keys(const etcdserverpb::RangeResponse& r) {
    std::vector<std::string> out;
    for (const auto& kv : r.kvs()) out.push_back(kv.key());
    return out;
  }

  ApplyResult Txn(const TxnRequest& t) {
    internalpb::InternalRequest req;
    *req.mutable_txn() = t;
    return Apply(req);
  }

  std::filesystem::path dir_;
  std::unique_ptr<mvcc::Store> store_;
  FakeClock clock_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<Applier> applier_;
  uint64_t index_ = 0;
};

Compare Cmp(const std::string& key, Compare::CompareTarget target, Compare::CompareResult result,
            int64_t n, const std::string& value = "") {
  Compare c;
  c.set_key(key);
  c.set_target(target);
  c.set_result(result);
  switch (target) {
    case Compare::VERSION: c.set_version(n); break;
    case Compare::CREATE: c.set_create_revision(n); break;
    case Compare::MOD: c.set_mod_revision(n); break;
    case Compare::LEASE: c.set_lease(n); break;
    case Compare::VALUE: c.set_value(value); break;
    default: break;
  }
  return c;
}

TEST_F(ApplierTest, PutRevisionsAndPrevKv) {
  EXPECT_EQ(Put("a", "1").header().revision(), 2);
  EXPECT_EQ(Put("a", "2").header().revision(), 3);
  internalpb::InternalRequest req;
  req.mutable_put()->set_key("a");
  req.mutable_put()->set_value("3");
  req.mutable_put()->set_prev_kv(true);
  ApplyResult r = Apply(req);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.op.response_put().header().revision(), 4);
  EXPECT_EQ(r.op.response_put().prev_kv().value(), "2");
  EXPECT_EQ(r.op.response_put().prev_kv().version(), 2);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].kv().value(), "3");
  EXPECT_EQ(store_->ConsistentIndex(), index_);
}

TEST_F(ApplierTest, IgnoreValueAndLease) {
  internalpb::InternalRequest req;
  req.mutable_put()->set_key("missing");
  req.mutable_put()->set_ignore_value(true);
  ApplyResult r = Apply(req);
  EXPECT_EQ(r.status.message(), kErrKeyNotFound);
  EXPECT_EQ(store_->CurrentRevision(), 1);
  EXPECT_EQ(store_->ConsistentIndex(), index_) << "a rejected request still consumes its index";

  Put("k", "v1", 77);
  req.mutable_put()->set_key("k");
  r = Apply(req);  // keeps value v1, and the lease unless ignore_lease... lease is reset to 0
  ASSERT_TRUE(r.status.ok()) << r.status;
  auto got = Range([] { RangeRequest q; q.set_key("k"); return q; }());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->kvs(0).value(), "v1");
  EXPECT_EQ(got->kvs(0).lease(), 0);

  internalpb::InternalRequest keep_lease;
  Put("k2", "a", 77);
  keep_lease.mutable_put()->set_key("k2");
  keep_lease.mutable_put()->set_value("b");
  keep_lease.mutable_put()->set_ignore_lease(true);
  ASSERT_TRUE(Apply(keep_lease).status.ok());
  got = Range([] { RangeRequest q; q.set_key("k2"); return q; }());
  EXPECT_EQ(got->kvs(0).value(), "b");
  EXPECT_EQ(got->kvs(0).lease(), 77);
}

TEST_F(ApplierTest, UnknownLeaseIsRejected) {
  internalpb::InternalRequest req;
  req.mutable_put()->set_key("k");
  req.mutable_put()->set_lease(1234);
  ApplyResult r = Apply(req);
  EXPECT_EQ(r.status.message(), kErrLeaseNotFound);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->CurrentRevision(), 1);
}

TEST_F(ApplierTest, DeleteRange) {
  Put("a", "1");
  Put("b", "2");
  Put("c", "3");
  auto d = Delete("a", "c", true);
  EXPECT_EQ(d.deleted(), 2);
  EXPECT_EQ(d.header().revision(), 5);
  ASSERT_EQ(d.prev_kvs_size(), 2);
  EXPECT_EQ(d.prev_kvs(1).key(), "b");
  auto none = Delete("zzz");
  EXPECT_EQ(none.deleted(), 0);
  EXPECT_EQ(none.header().revision(), 5) << "deleting nothing makes no revision";
  EXPECT_EQ(store_->CurrentRevision(), 5);
}

TEST_F(ApplierTest, RangeLimitSortAndFilters) {
  Put("k1", "c");  // rev 2
  Put("k2", "a");  // rev 3
  Put("k3", "b");  // rev 4
  Put("k1", "d");  // rev 5: k1 version 2
  RangeRequest r;
  r.set_key("k");
  r.set_range_end("l");
  r.set_limit(2);
  auto got = Range(r);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"k1", "k2"}));
  EXPECT_TRUE(got->more());
  EXPECT_EQ(got->count(), 3);
  EXPECT_EQ(got->header().revision(), 5);

  r.set_limit(0);
  r.set_sort_target(RangeRequest::VALUE);  // order NONE + non-key target -> ASCEND
  EXPECT_EQ(Keys(*Range(r)), (std::vector<std::string>{"k2", "k3", "k1"}));
  r.set_sort_order(RangeRequest::DESCEND);
  EXPECT_EQ(Keys(*Range(r)), (std::vector<std::string>{"k1", "k3", "k2"}));
  r.set_sort_target(RangeRequest::MOD);
  EXPECT_EQ(Keys(*Range(r)), (std::vector<std::string>{"k1", "k3", "k2"}));
  r.set_sort_target(RangeRequest::CREATE);
  r.set_sort_order(RangeRequest::ASCEND);
  EXPECT_EQ(Keys(*Range(r)), (std::vector<std::string>{"k1", "k2", "k3"}));
  r.set_sort_target(RangeRequest::VERSION);
  r.set_sort_order(RangeRequest::DESCEND);
  EXPECT_EQ(Keys(*Range(r)), (std::vector<std::string>{"k1", "k2", "k3"}))
      << "ties keep key order (stable)";
  r.set_sort_target(RangeRequest::KEY);
  r.set_limit(1);
  got = Range(r);
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"k3"}));
  EXPECT_TRUE(got->more());

  RangeRequest f;
  f.set_key("k");
  f.set_range_end("l");
  f.set_min_mod_revision(3);
  f.set_max_mod_revision(4);
  EXPECT_EQ(Keys(*Range(f)), (std::vector<std::string>{"k2", "k3"}));
  f.clear_min_mod_revision();
  f.clear_max_mod_revision();
  f.set_min_create_revision(3);
  EXPECT_EQ(Keys(*Range(f)), (std::vector<std::string>{"k2", "k3"}));
  f.set_max_create_revision(2);
  EXPECT_TRUE(Keys(*Range(f)).empty());

  RangeRequest ko;
  ko.set_key("k1");
  ko.set_keys_only(true);
  got = Range(ko);
  EXPECT_EQ(got->kvs(0).value(), "");
  EXPECT_EQ(got->kvs(0).version(), 2);

  RangeRequest co;
  co.set_key("k");
  co.set_range_end("l");
  co.set_count_only(true);
  got = Range(co);
  EXPECT_EQ(got->kvs_size(), 0);
  EXPECT_EQ(got->count(), 3);
}

TEST_F(ApplierTest, RangeAtRevisionAndErrors) {
  Put("a", "1");
  Put("a", "2");
  RangeRequest r;
  r.set_key("a");
  r.set_revision(2);
  EXPECT_EQ(Range(r)->kvs(0).value(), "1");
  r.set_revision(9);
  EXPECT_EQ(ToGrpcStatus(Range(r).status()).error_message(), kErrFutureRev);
  internalpb::InternalRequest c;
  c.mutable_compaction()->set_revision(3);
  ASSERT_TRUE(Apply(c).status.ok());
  r.set_revision(2);
  grpc::Status st = ToGrpcStatus(Range(r).status());
  EXPECT_EQ(st.error_message(), kErrCompacted);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  r.set_revision(3);
  EXPECT_EQ(Range(r)->kvs(0).value(), "2");
  // Compacting again at or below is an error; above the current one too.
  EXPECT_EQ(ToGrpcStatus(Apply(c).status).error_message(), kErrCompacted);
  c.mutable_compaction()->set_revision(99);
  EXPECT_EQ(ToGrpcStatus(Apply(c).status).error_message(), kErrFutureRev);
}

// Every compare target with every result, on an existing key.
TEST_F(ApplierTest, TxnEveryCompare) {
  Put("x", "m");       // rev 2
  Put("x", "m", 77);   // rev 3: version 2, create 2, mod 3, lease 77
  struct Case {
    Compare::CompareTarget target;
    int64_t actual;
    std::string value_actual;
  };
  const Case cases[] = {{Compare::VERSION, 2, ""}, {Compare::CREATE, 2, ""},
                        {Compare::MOD, 3, ""},     {Compare::LEASE, 77, ""},
                        {Compare::VALUE, 0, "m"}};
  for (const Case& c : cases) {
    for (int delta : {-1, 0, 1}) {
      int64_t operand = c.actual + delta;
      std::string value_operand =
          delta < 0 ? "l" : (delta == 0 ? "m" : "n");
      for (auto result : {Compare::EQUAL, Compare::NOT_EQUAL, Compare::GREATER, Compare::LESS}) {
        TxnRequest t;
        *t.add_compare() = Cmp("x", c.target, result, operand, value_operand);
        bool expect;
        // actual OP operand, where actual - operand = -delta.
        switch (result) {
          case Compare::EQUAL: expect = delta == 0; break;
          case Compare::NOT_EQUAL: expect = delta != 0; break;
          case Compare::GREATER: expect = delta < 0; break;
          default: expect = delta > 0; break;
        }
        ApplyResult r = Txn(t);
        ASSERT_TRUE(r.status.ok());
        EXPECT_EQ(r.op.response_txn().succeeded(), expect)
            << "target " << c.target << " result " << result << " delta " << delta;
      }
    }
  }
  EXPECT_EQ(store_->CurrentRevision(), 3) << "read-only txns make no revision";
}

TEST_F(ApplierTest, TxnMissingKeyAndRangeCompare) {
  TxnRequest t;
  *t.add_compare() = Cmp("nope", Compare::VERSION, Compare::EQUAL, 0);
  EXPECT_TRUE(Txn(t).op.response_txn().succeeded()) << "a missing key has version 0";
  TxnRequest v;
  *v.add_compare() = Cmp("nope", Compare::VALUE, Compare::EQUAL, 0, "");
  EXPECT_FALSE(Txn(v).op.response_txn().succeeded()) << "VALUE on a missing key always fails";

  Put("p/a", "1");
  Put("p/b", "2");
  TxnRequest all;
  Compare c = Cmp("p/", Compare::VERSION, Compare::EQUAL, 1);
  c.set_range_end("p0");
  *all.add_compare() = c;
  EXPECT_TRUE(Txn(all).op.response_txn().succeeded());
  Put("p/b", "3");
  EXPECT_FALSE(Txn(all).op.response_txn().succeeded()) << "every key in the range must match";
}

TEST_F(ApplierTest, TxnBranchesOneRevisionAndOwnWrites) {
  Put("k", "v");  // rev 2
  TxnRequest t;
  *t.add_compare() = Cmp("k", Compare::VALUE, Compare::EQUAL, 0, "v");
  auto* put1 = t.add_success()->mutable_request_put();
  put1->set_key("a");
  put1->set_value("1");
  auto* put2 = t.add_success()->mutable_request_put();
  put2->set_key("b");
  put2->set_value("2");
  t.add_success()->mutable_request_range()->set_key("a");
  t.add_failure()->mutable_request_range()->set_key("k");
  ApplyResult r = Txn(t);
  ASSERT_TRUE(r.status.ok()) << r.status;
  const auto& resp = r.op.response_txn();
  EXPECT_TRUE(resp.succeeded());
  EXPECT_EQ(resp.header().revision(), 3);
  ASSERT_EQ(resp.responses_size(), 3);
  EXPECT_EQ(resp.responses(0).response_put().header().revision(), 3);
  const auto& rr = resp.responses(2).response_range();
  ASSERT_EQ(rr.kvs_size(), 1);
  EXPECT_EQ(rr.kvs(0).value(), "1") << "a range after a put in the same txn sees it";
  EXPECT_EQ(rr.header().revision(), 3);
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].kv().mod_revision(), 3);
  EXPECT_EQ(r.events[1].kv().mod_revision(), 3);
  EXPECT_EQ(store_->CurrentRevision(), 3);

  // Failure branch: read-only, no new revision.
  t.mutable_compare(0)->set_value("other");
  r = Txn(t);
  EXPECT_FALSE(r.op.response_txn().succeeded());
  EXPECT_EQ(r.op.response_txn().header().revision(), 3);
  EXPECT_EQ(r.op.response_txn().responses(0).response_range().kvs(0).value(), "v");
}

TEST_F(ApplierTest, NestedTxnComparesSeeStateBeforeTheTxn) {
  TxnRequest t;  // no compares: success
  auto* put = t.add_success()->mutable_request_put();
  put->set_key("n");
  put->set_value("1");
  auto* inner = t.add_success()->mutable_request_txn();
  // Decided before the outer put: "n" does not exist yet, so version == 0.
  *inner->add_compare() = Cmp("n", Compare::VERSION, Compare::EQUAL, 0);
  auto* inner_put = inner->add_success()->mutable_request_put();
  inner_put->set_key("m");
  inner_put->set_value("inner-success");
  ApplyResult r = Txn(t);
  ASSERT_TRUE(r.status.ok()) << r.status;
  const auto& nested = r.op.response_txn().responses(1).response_txn();
  EXPECT_TRUE(nested.succeeded());
  RangeRequest q;
  q.set_key("m");
  EXPECT_EQ(Range(q)->kvs(0).value(), "inner-success");
  EXPECT_EQ(Range(q)->kvs(0).mod_revision(), 2) << "a nested txn is the same revision";
}

TEST_F(ApplierTest, TxnChecksRunBeforeAnyWrite) {
  TxnRequest t;
  auto* ok_put = t.add_success()->mutable_request_put();
  ok_put->set_key("a");
  ok_put->set_value("1");
  auto* bad_put = t.add_success()->mutable_request_put();
  bad_put->set_key("b");
  bad_put->set_lease(999);
  ApplyResult r = Txn(t);
  EXPECT_EQ(r.status.message(), kErrLeaseNotFound);
  EXPECT_EQ(store_->CurrentRevision(), 1) << "nothing of a rejected txn is written";

  TxnRequest future;
  future.add_success()->mutable_request_range()->set_key("a");
  future.mutable_success(0)->mutable_request_range()->set_revision(50);
  EXPECT_EQ(ToGrpcStatus(Txn(future).status).error_message(), kErrFutureRev);

  TxnRequest ignore;
  auto* iv = ignore.add_success()->mutable_request_put();
  iv->set_key("absent");
  iv->set_ignore_value(true);
  EXPECT_EQ(Txn(ignore).status.message(), kErrKeyNotFound);
}

TEST_F(ApplierTest, TxnDeleteThenRange) {
  Put("a", "1");
  Put("b", "2");
  TxnRequest t;
  auto* d = t.add_success()->mutable_request_delete_range();
  d->set_key("a");
  d->set_range_end("c");
  d->set_prev_kv(true);
  auto* q = t.add_success()->mutable_request_range();
  q->set_key("a");
  q->set_range_end("c");
  ApplyResult r = Txn(t);
  ASSERT_TRUE(r.status.ok());
  const auto& resp = r.op.response_txn();
  EXPECT_EQ(resp.responses(0).response_delete_range().deleted(), 2);
  EXPECT_EQ(resp.responses(0).response_delete_range().prev_kvs_size(), 2);
  EXPECT_EQ(resp.responses(1).response_range().count(), 0);
  EXPECT_EQ(resp.header().revision(), 4);
  EXPECT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].type(), mvccpb::Event::DELETE);
}

}  // namespace
}  // namespace etcdpp::server
