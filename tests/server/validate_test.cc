#include "server/validate.h"

#include <gtest/gtest.h>

#include "server/errors.h"

namespace etcdpp::server {
namespace {

using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;

void AddPut(google::protobuf::RepeatedPtrField<RequestOp>* ops, const std::string& k) {
  ops->Add()->mutable_request_put()->set_key(k);
}
void AddDel(google::protobuf::RepeatedPtrField<RequestOp>* ops, const std::string& k,
            const std::string& end = "") {
  auto* d = ops->Add()->mutable_request_delete_range();
  d->set_key(k);
  d->set_range_end(end);
}

TEST(ValidateTest, PutChecks) {
  etcdserverpb::PutRequest p;
  EXPECT_EQ(CheckPutRequest(p).message(), kErrEmptyKey);
  p.set_key("k");
  EXPECT_TRUE(CheckPutRequest(p).ok());
  p.set_ignore_value(true);
  p.set_value("v");
  EXPECT_EQ(CheckPutRequest(p).message(), kErrValueProvided);
  p.clear_value();
  p.set_ignore_lease(true);
  p.set_lease(5);
  EXPECT_EQ(CheckPutRequest(p).message(), kErrLeaseProvided);
  EXPECT_EQ(CheckPutRequest(p).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateTest, TooManyOps) {
  TxnRequest t;
  for (int i = 0; i < 4; ++i) AddPut(t.mutable_success(), "k" + std::to_string(i));
  EXPECT_EQ(CheckTxnRequest(t, 3).message(), kErrTooManyOps);
  EXPECT_TRUE(CheckTxnRequest(t, 4).ok());
}

TEST(ValidateTest, EmptyOpIsKeyNotFound) {
  TxnRequest t;
  t.add_success();
  EXPECT_EQ(CheckTxnRequest(t, 128).message(), kErrKeyNotFound);
}

TEST(ValidateTest, DuplicateKeys) {
  TxnRequest t;
  AddPut(t.mutable_success(), "a");
  AddPut(t.mutable_success(), "a");
  EXPECT_EQ(CheckTxnRequest(t, 128).message(), kErrDuplicateKey);

  TxnRequest put_in_deleted_range;
  AddDel(put_in_deleted_range.mutable_success(), "a", "c");
  AddPut(put_in_deleted_range.mutable_success(), "b");
  EXPECT_EQ(CheckTxnRequest(put_in_deleted_range, 128).message(), kErrDuplicateKey);

  TxnRequest put_and_point_delete;
  AddDel(put_and_point_delete.mutable_failure(), "a");
  AddPut(put_and_point_delete.mutable_failure(), "a");
  EXPECT_EQ(CheckTxnRequest(put_and_point_delete, 128).message(), kErrDuplicateKey);

  // Success and failure branches are separate: the same key in both is fine.
  TxnRequest branches;
  AddPut(branches.mutable_success(), "a");
  AddPut(branches.mutable_failure(), "a");
  EXPECT_TRUE(CheckTxnRequest(branches, 128).ok());

  // A put next to a delete of a different key is fine; so is a from-key
  // delete ("\0" end), which etcd's interval check never matches.
  TxnRequest ok;
  AddDel(ok.mutable_success(), "x", std::string(1, '\0'));
  AddPut(ok.mutable_success(), "y");
  AddDel(ok.mutable_success(), "b");
  AddPut(ok.mutable_success(), "a");
  EXPECT_TRUE(CheckTxnRequest(ok, 128).ok());
}

TEST(ValidateTest, NestedTxnDuplicates) {
  TxnRequest outer;
  AddPut(outer.mutable_success(), "a");
  auto* inner = outer.add_success()->mutable_request_txn();
  AddPut(inner->mutable_success(), "a");
  EXPECT_EQ(CheckTxnRequest(outer, 128).message(), kErrDuplicateKey);

  // then/else of one nested txn may both put the same key.
  TxnRequest outer2;
  auto* inner2 = outer2.add_success()->mutable_request_txn();
  AddPut(inner2->mutable_success(), "a");
  AddPut(inner2->mutable_failure(), "a");
  EXPECT_TRUE(CheckTxnRequest(outer2, 128).ok());

  // A delete inside a nested txn conflicts with a put at the outer level.
  TxnRequest outer3;
  auto* inner3 = outer3.add_success()->mutable_request_txn();
  AddDel(inner3->mutable_failure(), "k");
  AddPut(outer3.mutable_success(), "k");
  EXPECT_EQ(CheckTxnRequest(outer3, 128).message(), kErrDuplicateKey);
}

}  // namespace
}  // namespace etcdpp::server
