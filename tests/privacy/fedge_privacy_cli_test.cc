// Runs the fedge-privacy binary as a user would and checks what it prints.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "fedge/privacy/accountant.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;

struct ProcessResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

ProcessResult FedgePrivacy(const std::string& args) {
  const std::string command = std::string(FEDGE_PRIVACY_BINARY) + " " + args + " 2>&1";
  ProcessResult run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.output.append(buffer, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string LastLine(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const std::size_t newline = text.rfind('\n');
  return newline == std::string::npos ? text : text.substr(newline + 1);
}

TEST(FedgePrivacyCliTest, EpsilonPrintsComputeEpsilon) {
  const ProcessResult run =
      FedgePrivacy("epsilon --sampling-rate 0.01 --noise-multiplier 1.1 --steps 1000 --delta 1e-5");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const double printed = std::strtod(LastLine(run.output).c_str(), nullptr);
  const absl::StatusOr<double> expected = fedge::privacy::ComputeEpsilon(0.01, 1.1, 1000, 1e-5);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(printed, *expected);
}

TEST(FedgePrivacyCliTest, CalibratePrintsTheNoiseMultiplier) {
  const ProcessResult run =
      FedgePrivacy("calibrate --sampling-rate=0.01 --steps 1000 --delta 1e-5 --epsilon 2");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const double sigma = std::strtod(LastLine(run.output).c_str(), nullptr);
  const absl::StatusOr<double> epsilon = fedge::privacy::ComputeEpsilon(0.01, sigma, 1000, 1e-5);
  ASSERT_TRUE(epsilon.ok());
  EXPECT_LE(*epsilon, 2.0);
  EXPECT_GT(*fedge::privacy::ComputeEpsilon(0.01, 0.99 * sigma, 1000, 1e-5), 2.0);
}

TEST(FedgePrivacyCliTest, BadFlagsExitTwoNamingTheFlag) {
  ProcessResult run = FedgePrivacy(
      "epsilon --sampling-rate 0.01 --noise-multiplier 1.1 --steps 1000 --delta 1e-5 --bogus 1");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("--bogus"));

  run = FedgePrivacy("epsilon --sampling-rate 0.01 --steps 1000 --delta 1e-5");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("missing flag --noise-multiplier"));

  run = FedgePrivacy("epsilon --sampling-rate abc --noise-multiplier 1 --steps 10 --delta 1e-5");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("--sampling-rate"));

  run = FedgePrivacy("calibrate --sampling-rate 0.01 --steps 10 --delta 2 --epsilon 1");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("--delta"));

  run = FedgePrivacy("calibrate --sampling-rate 0.01 --steps 10 --delta 1e-5 --epsilon");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("--epsilon needs a value"));

  run = FedgePrivacy("frobnicate");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("frobnicate"));
}

}  // namespace
