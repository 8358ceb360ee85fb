// Status helpers shared by every module. Abseil 2022 ships absl::Status but
// not the RETURN_IF_ERROR / ASSIGN_OR_RETURN macros, so we define our own.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ETCDPP_CONCAT_INNER_(a, b) a##b
#define ETCDPP_CONCAT_(a, b) ETCDPP_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define ETCDPP_RETURN_IF_ERROR(expr)                   \
  do {                                                 \
    ::absl::Status etcdpp_status_ = (expr);            \
    if (!etcdpp_status_.ok()) return etcdpp_status_;   \
  } while (0)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its status.
#define ETCDPP_ASSIGN_OR_RETURN(lhs, rexpr) \
  ETCDPP_ASSIGN_OR_RETURN_IMPL_(ETCDPP_CONCAT_(etcdpp_statusor_, __LINE__), lhs, rexpr)
#define ETCDPP_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                  \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()

namespace etcdpp::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* what,
                              const char* detail);
}  // namespace etcdpp::internal

// A broken invariant is a bug: log and abort.
#define ETCDPP_CHECK(cond)                                                  \
  do {                                                                      \
    if (!(cond)) ::etcdpp::internal::CheckFailed(__FILE__, __LINE__, #cond, \
                                                 nullptr);                  \
  } while (0)

#define ETCDPP_CHECK_OK(expr)                                              \
  do {                                                                     \
    ::absl::Status etcdpp_check_status_ = (expr);                          \
    if (!etcdpp_check_status_.ok())                                        \
      ::etcdpp::internal::CheckFailed(                                     \
          __FILE__, __LINE__, #expr,                                       \
          std::string(etcdpp_check_status_.ToString()).c_str());           \
  } while (0)
