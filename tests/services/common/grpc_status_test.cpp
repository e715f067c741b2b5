// services/common/grpc_status.hpp: to_status keeps a rejection's message
// as the client's status message; cancelled is the one status no rejection
// carries; code_label: the `code` label values of the request counters
// (docs/metrics.md), the lower-case status names of the codes the services
// answer with, and "internal" for every other code.

#include <gtest/gtest.h>

#include "services/common/grpc_status.hpp"

#include "actors/entity/effect.hpp"

namespace shoutflow::services {
namespace {

TEST(to_status, maps_the_code_and_keeps_the_message) {
  auto s = to_status(entity::make_rejection(
    v1::REJECTION_CODE_RESOURCE_EXHAUSTED, "", "watch: resubscribe"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "watch: resubscribe");
  s = to_status(entity::make_rejection(v1::REJECTION_CODE_INTERNAL, "",
                                       "internal: malformed reply"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(s.error_message(), "internal: malformed reply");
}

TEST(cancelled, is_cancelled_with_the_reason) {
  auto s = cancelled("the client is gone");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(s.error_message(), "the client is gone");
}

TEST(code_label, lower_cases_the_codes_the_services_answer_with) {
  EXPECT_EQ(code_label(grpc::StatusCode::OK), "ok");
  EXPECT_EQ(code_label(grpc::StatusCode::CANCELLED), "cancelled");
  EXPECT_EQ(code_label(grpc::StatusCode::NOT_FOUND), "not_found");
  EXPECT_EQ(code_label(grpc::StatusCode::DEADLINE_EXCEEDED),
            "deadline_exceeded");
  EXPECT_EQ(code_label(grpc::StatusCode::RESOURCE_EXHAUSTED),
            "resource_exhausted");
  EXPECT_EQ(code_label(grpc::StatusCode::UNAUTHENTICATED), "unauthenticated");
}

TEST(code_label, counts_every_other_code_as_internal) {
  EXPECT_EQ(code_label(grpc::StatusCode::INTERNAL), "internal");
  EXPECT_EQ(code_label(grpc::StatusCode::UNKNOWN), "internal");
  EXPECT_EQ(code_label(grpc::StatusCode::ABORTED), "internal");
  EXPECT_EQ(code_label(grpc::StatusCode::DATA_LOSS), "internal");
  EXPECT_EQ(code_label(static_cast<grpc::StatusCode>(42)), "internal");
}

} // namespace
} // namespace shoutflow::services
