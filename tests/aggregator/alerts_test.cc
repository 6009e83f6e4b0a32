#include "fedge/aggregator/alerts.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

AlertRules Rules() {
  AlertRules rules;
  rules.round_failure_rate = 0.5;
  rules.failure_window = 4;
  rules.dropout = 0.3;
  rules.drift_share = 0.25;
  rules.accuracy_drop = 0.05;
  rules.epsilon_budget = 0.9;
  return rules;
}

TEST(AlertRulesTest, BadRulesAreNamed) {
  FEDGE_EXPECT_OK(ValidateAlertRules(Rules()));
  AlertRules r = Rules();
  r.dropout = 1.5;
  EXPECT_THAT(ValidateAlertRules(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alerts.dropout")));
  r = Rules();
  r.failure_window = 0;
  EXPECT_THAT(ValidateAlertRules(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alerts.failure_window")));
  r = Rules();
  r.drift_share = std::numeric_limits<double>::infinity();
  EXPECT_THAT(ValidateAlertRules(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alerts.drift_share")));
}

TEST(AlertMonitorTest, RoundFailureRateFiresOnceWhileItLasts) {
  AlertRules rules = Rules();
  rules.dropout = 0;  // off: failed rounds here also lose every update
  AlertMonitor monitor(rules);
  EXPECT_TRUE(monitor.OnRound(1, false, 4, 4).empty());
  EXPECT_TRUE(monitor.OnRound(2, true, 4, 0).empty());         // 1 of 2: not above 0.5
  std::vector<Alert> alerts = monitor.OnRound(3, true, 4, 0);  // 2 of 3
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].rule, "round_failure_rate");
  EXPECT_NEAR(alerts[0].value, 2.0 / 3.0, 1e-12);
  EXPECT_THAT(alerts[0].message, HasSubstr("2 of the last 3 rounds failed"));
  EXPECT_TRUE(monitor.OnRound(4, true, 4, 0).empty());  // still breached: no repeat
  // The window (4) forgets the failures; the rule re-arms, then fires again.
  for (uint64_t r = 5; r <= 7; ++r) monitor.OnRound(r, false, 4, 4);
  EXPECT_TRUE(monitor.OnRound(8, false, 4, 4).empty());
  monitor.OnRound(9, true, 4, 0);
  monitor.OnRound(10, true, 4, 0);
  EXPECT_EQ(monitor.OnRound(11, true, 4, 0).size(), 1u);
  EXPECT_EQ(monitor.fired().at("round_failure_rate"), 2u);
}

TEST(AlertMonitorTest, DropoutFiresOnEveryRoundAboveTheThreshold) {
  AlertRules rules = Rules();
  rules.round_failure_rate = 0;  // off
  AlertMonitor monitor(rules);
  EXPECT_TRUE(monitor.OnRound(1, false, 10, 8).empty());         // 0.2
  std::vector<Alert> alerts = monitor.OnRound(2, false, 10, 6);  // 0.4
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].rule, "dropout");
  EXPECT_NEAR(alerts[0].value, 0.4, 1e-12);
  EXPECT_THAT(alerts[0].message, HasSubstr("4 of 10"));
  EXPECT_EQ(monitor.OnRound(3, false, 10, 5).size(), 1u);
  EXPECT_EQ(monitor.fired().at("dropout"), 2u);
}

TEST(AlertMonitorTest, AccuracyDriftAndPrivacyRules) {
  AlertMonitor monitor(Rules());
  EXPECT_TRUE(monitor.OnVersion(3, 0.80, 0.82).empty());
  std::vector<Alert> drop = monitor.OnVersion(4, 0.70, 0.82);
  ASSERT_EQ(drop.size(), 1u);
  EXPECT_EQ(drop[0].rule, "accuracy_drop");
  EXPECT_NEAR(drop[0].value, 0.12, 1e-12);

  EXPECT_TRUE(monitor.OnDrift(2, 10).empty());
  ASSERT_EQ(monitor.OnDrift(3, 10).size(), 1u);
  EXPECT_TRUE(monitor.OnDrift(4, 10).empty());  // still breached
  EXPECT_TRUE(monitor.OnDrift(0, 0).empty());   // nobody seen: no verdict

  EXPECT_TRUE(monitor.OnPrivacy(2.0, 0.0).empty());  // no budget
  EXPECT_TRUE(monitor.OnPrivacy(2.0, 4.0).empty());
  std::vector<Alert> eps = monitor.OnPrivacy(3.7, 4.0);
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].rule, "epsilon_budget");
  EXPECT_THAT(eps[0].message, HasSubstr("92%"));
}

TEST(AlertMonitorTest, AThresholdOfZeroTurnsARuleOff) {
  AlertRules rules;
  rules.round_failure_rate = 0;
  rules.dropout = 0;
  rules.drift_share = 0;
  rules.accuracy_drop = 0;
  rules.epsilon_budget = 0;
  AlertMonitor monitor(rules);
  EXPECT_TRUE(monitor.OnRound(1, true, 10, 0).empty());
  EXPECT_TRUE(monitor.OnVersion(2, 0.1, 0.9).empty());
  EXPECT_TRUE(monitor.OnDrift(10, 10).empty());
  EXPECT_TRUE(monitor.OnPrivacy(10, 1).empty());
  EXPECT_TRUE(monitor.fired().empty());
}

}  // namespace
}  // namespace fedge::aggregator
