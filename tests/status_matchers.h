// gMock matchers for absl::Status and absl::StatusOr<T> in fedge tests.
//
//   EXPECT_THAT(ReadIdxPair(a, b), StatusIs(absl::StatusCode::kDataLoss,
//                                           HasSubstr("truncated")));
#ifndef FEDGE_TESTS_STATUS_MATCHERS_H_
#define FEDGE_TESTS_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::testing_util {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }

template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// Matches a Status or StatusOr whose code is `code` and whose message
// matches `message_matcher`.
MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code) + " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher, negation)) {
  const absl::Status& status = StatusOf(arg);
  *result_listener << "whose status is " << status;
  return status.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(status.message()),
                                       result_listener);
}

// Matches a Status or StatusOr whose code is `code`.
MATCHER_P(StatusIs, code, "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& status = StatusOf(arg);
  *result_listener << "whose status is " << status;
  return status.code() == code;
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = StatusOf(arg);
  *result_listener << "whose status is " << status;
  return status.ok();
}

}  // namespace fedge::testing_util

// Asserts that `expr` (a Status or StatusOr) is OK, printing it otherwise.
#define FEDGE_ASSERT_OK(expr) ASSERT_THAT((expr), ::fedge::testing_util::IsOk())
#define FEDGE_EXPECT_OK(expr) EXPECT_THAT((expr), ::fedge::testing_util::IsOk())

// Asserts that `rexpr` (a StatusOr<T>) is OK and moves its value into `lhs`
// (which may be a declaration).
#define FEDGE_ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  FEDGE_ASSERT_OK_AND_ASSIGN_IMPL_(FEDGE_TEST_CONCAT_(fedge_statusor_, __LINE__), lhs, rexpr)
#define FEDGE_TEST_CONCAT_INNER_(a, b) a##b
#define FEDGE_TEST_CONCAT_(a, b) FEDGE_TEST_CONCAT_INNER_(a, b)
#define FEDGE_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                     \
  ASSERT_THAT(statusor, ::fedge::testing_util::IsOk());        \
  lhs = std::move(statusor).value()

#endif  // FEDGE_TESTS_STATUS_MATCHERS_H_
