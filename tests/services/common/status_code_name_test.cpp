// services/common/status_code_name.hpp: the upper-snake names that
// shoutflow-bench's reports, shoutflowctl and the test harness print, and a
// number for a code gRPC does not define.

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "services/common/status_code_name.hpp"

namespace shoutflow::services {
namespace {

TEST(status_code_name, names_the_codes_grpc_defines) {
  EXPECT_EQ(status_code_name(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(status_code_name(grpc::StatusCode::CANCELLED), "CANCELLED");
  EXPECT_EQ(status_code_name(grpc::StatusCode::INVALID_ARGUMENT),
            "INVALID_ARGUMENT");
  EXPECT_EQ(status_code_name(grpc::StatusCode::DEADLINE_EXCEEDED),
            "DEADLINE_EXCEEDED");
  EXPECT_EQ(status_code_name(grpc::StatusCode::FAILED_PRECONDITION),
            "FAILED_PRECONDITION");
  EXPECT_EQ(status_code_name(grpc::StatusCode::UNAVAILABLE), "UNAVAILABLE");
  EXPECT_EQ(status_code_name(grpc::StatusCode::UNAUTHENTICATED),
            "UNAUTHENTICATED");
}

TEST(status_code_name, names_every_defined_code_distinctly) {
  // OK (0) to UNAUTHENTICATED (16): none falls through to a number, and no
  // two share a name (a report would add their counts together).
  std::set<std::string> names;
  for (int c = 0; c <= 16; ++c) {
    auto name = status_code_name(static_cast<grpc::StatusCode>(c));
    EXPECT_EQ(name.rfind("CODE_", 0), std::string::npos) << c;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), 17u);
}

TEST(status_code_name, names_an_unknown_code_by_its_number) {
  EXPECT_EQ(status_code_name(static_cast<grpc::StatusCode>(17)), "CODE_17");
  EXPECT_EQ(status_code_name(static_cast<grpc::StatusCode>(42)), "CODE_42");
}

} // namespace
} // namespace shoutflow::services
