#include "fedge/aggregator/rollout.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;
using Kind = RolloutDecision::Kind;
using Clock = std::chrono::steady_clock;

RolloutPolicy Policy() {
  RolloutPolicy policy;
  policy.enabled = true;
  policy.max_validation_accuracy_drop = 0.01;
  policy.canary_fraction = 0.5;
  policy.min_canary_reports = 2;
  policy.max_canary_accuracy_drop = 0.02;
  policy.max_canary_loss_increase = 0.05;
  policy.canary_timeout = std::chrono::seconds(30);
  return policy;
}

std::vector<std::string> Devices(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back("dev-" + std::to_string(i));
  return ids;
}

TEST(RolloutPolicyTest, EachBadFieldIsNamed) {
  FEDGE_EXPECT_OK(ValidateRolloutPolicy(Policy()));
  RolloutPolicy p = Policy();
  p.canary_fraction = 1.5;
  EXPECT_THAT(ValidateRolloutPolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rollout.canary_fraction")));
  p = Policy();
  p.min_canary_reports = 0;
  EXPECT_THAT(ValidateRolloutPolicy(p), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("rollout.min_canary_reports")));
  p = Policy();
  p.max_validation_accuracy_drop = -0.1;
  EXPECT_THAT(ValidateRolloutPolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rollout.max_validation_accuracy_drop")));
  p = Policy();
  p.max_canary_loss_increase = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(ValidateRolloutPolicy(p), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("rollout.max_canary_loss_increase")));
  p = Policy();
  p.canary_timeout = std::chrono::milliseconds(0);
  EXPECT_THAT(ValidateRolloutPolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rollout.canary_timeout")));
}

TEST(RolloutGateTest, ValidationRefusesAVersionWorseThanTheTolerance) {
  RolloutGate gate(Policy());
  RolloutDecision worse = gate.Validate(5, 0.70, 0.72);
  EXPECT_EQ(worse.kind, Kind::kReject);
  EXPECT_THAT(worse.reason, HasSubstr("0.7000"));
  EXPECT_THAT(worse.reason, HasSubstr("0.7200"));
  // Within the tolerance, or better: on to the canary.
  EXPECT_EQ(gate.Validate(5, 0.715, 0.72).kind, Kind::kPending);
  EXPECT_EQ(gate.Validate(5, 0.80, 0.72).kind, Kind::kPending);
  EXPECT_EQ(gate.Validate(5, std::numeric_limits<double>::quiet_NaN(), 0.72).kind, Kind::kReject);
  RolloutPolicy no_canary = Policy();
  no_canary.canary_fraction = 0.0;
  EXPECT_EQ(RolloutGate(no_canary).Validate(5, 0.80, 0.72).kind, Kind::kPromote);
}

TEST(RolloutGateTest, ACanaryThatHoldsIsPromoted) {
  RolloutGate gate(Policy());
  const auto now = Clock::now();
  FEDGE_ASSERT_OK(gate.StartCanary(5, 4, Devices(6), now));
  ASSERT_EQ(gate.canary_devices().size(), 3u);  // ceil(0.5 * 6)
  EXPECT_THAT(gate.StartCanary(6, 4, Devices(6), now),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  int reported = 0;
  for (const std::string& device : gate.canary_devices()) {
    EXPECT_TRUE(gate.AwaitingReport(device));
    EXPECT_EQ(gate.Decide(now).kind, Kind::kPending);
    FEDGE_ASSERT_OK(gate.AddReport(device, 5,
                                   {.accuracy = 0.81,
                                    .loss = 0.50,
                                    .baseline_accuracy = 0.80,
                                    .baseline_loss = 0.52,
                                    .examples = 100}));
    EXPECT_FALSE(gate.AwaitingReport(device));
    ++reported;
  }
  RolloutDecision decision = gate.Decide(now);
  EXPECT_EQ(decision.kind, Kind::kPromote);
  EXPECT_EQ(decision.reports, 3);
  EXPECT_NEAR(decision.accuracy_change, 0.01, 1e-9);
  EXPECT_NEAR(decision.loss_change, -0.02, 1e-9);
  EXPECT_FALSE(gate.canary_active());
}

TEST(RolloutGateTest, ACanaryThatRegressesIsRolledBack) {
  RolloutGate gate(Policy());
  const auto now = Clock::now();
  FEDGE_ASSERT_OK(gate.StartCanary(5, 4, Devices(4), now));
  for (const std::string& device : gate.canary_devices()) {
    // Accuracy holds, but the loss rises by 0.2 on every device.
    FEDGE_ASSERT_OK(gate.AddReport(
        device, 5,
        {.accuracy = 0.80, .loss = 0.70, .baseline_accuracy = 0.80, .baseline_loss = 0.50}));
  }
  RolloutDecision decision = gate.Decide(now);
  EXPECT_EQ(decision.kind, Kind::kRollBack);
  EXPECT_THAT(decision.reason, HasSubstr("loss +0.2000"));

  FEDGE_ASSERT_OK(gate.StartCanary(6, 4, Devices(4), now));
  for (const std::string& device : gate.canary_devices()) {
    FEDGE_ASSERT_OK(gate.AddReport(
        device, 6,
        {.accuracy = 0.70, .loss = 0.50, .baseline_accuracy = 0.80, .baseline_loss = 0.50}));
  }
  decision = gate.Decide(now);
  EXPECT_EQ(decision.kind, Kind::kRollBack);
  EXPECT_THAT(decision.reason, HasSubstr("accuracy -0.1000"));
}

TEST(RolloutGateTest, TooFewReportsByTheDeadlineRollBack) {
  RolloutGate gate(Policy());
  const auto now = Clock::now();
  FEDGE_ASSERT_OK(gate.StartCanary(5, 4, Devices(8), now));
  const std::string first = *gate.canary_devices().begin();
  FEDGE_ASSERT_OK(gate.AddReport(first, 5, {.accuracy = 0.9, .baseline_accuracy = 0.8}));
  EXPECT_EQ(gate.Decide(now + std::chrono::seconds(29)).kind, Kind::kPending);
  RolloutDecision decision = gate.Decide(now + std::chrono::seconds(31));
  EXPECT_EQ(decision.kind, Kind::kRollBack);
  EXPECT_THAT(decision.reason, HasSubstr("only 1 of 4"));
}

TEST(RolloutGateTest, BadReportsAreRefusedAndChangeNothing) {
  RolloutGate gate(Policy());
  const auto now = Clock::now();
  EXPECT_THAT(gate.StartCanary(5, 4, {}, now), StatusIs(absl::StatusCode::kFailedPrecondition));
  FEDGE_ASSERT_OK(gate.StartCanary(5, 4, Devices(2), now));
  const std::string device = *gate.canary_devices().begin();
  EXPECT_THAT(gate.AddReport(device, 4, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version 4")));
  EXPECT_THAT(gate.AddReport("stranger", 5, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stranger")));
  EXPECT_THAT(gate.AddReport(device, 5, {.accuracy = 1.5}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("accuracy 1.5")));
  EXPECT_THAT(gate.AddReport(device, 5, {.loss = -1}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("loss -1")));
  EXPECT_TRUE(gate.AwaitingReport(device));
  gate.Cancel();
  EXPECT_FALSE(gate.canary_active());
  EXPECT_EQ(gate.Decide(now).kind, Kind::kPending);
}

}  // namespace
}  // namespace fedge::aggregator
