#include "fedge/client/drift_monitor.h"

#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::client {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kFeatures = 4;

std::vector<float> Rows(std::mt19937_64& rng, int n, double shift) {
  std::normal_distribution<double> normal;
  std::vector<float> rows(static_cast<size_t>(n) * kFeatures);
  for (float& v : rows) v = static_cast<float>(normal(rng) + shift);
  return rows;
}

std::vector<float> Confidences(std::mt19937_64& rng, int n, double mean) {
  std::normal_distribution<double> c(mean, 0.05);
  std::vector<float> values(n);
  for (float& v : values) v = static_cast<float>(std::clamp(c(rng), 0.0, 1.0));
  return values;
}

std::vector<float> Errors(std::mt19937_64& rng, int n, double rate) {
  std::bernoulli_distribution e(rate);
  std::vector<float> values(n);
  for (float& v : values) v = e(rng) ? 1.0f : 0.0f;
  return values;
}

DriftMonitorOptions Options() {
  DriftMonitorOptions options;
  options.features = kFeatures;
  return options;
}

std::unique_ptr<DriftMonitor> Make(DriftMonitorOptions options = Options()) {
  auto monitor = DriftMonitor::Create("device-7", std::move(options));
  EXPECT_TRUE(monitor.ok()) << monitor.status();
  if (!monitor.ok()) return nullptr;
  std::mt19937_64 rng(1);
  EXPECT_TRUE((*monitor)->SetReference(Rows(rng, 300, 0.0), Confidences(rng, 300, 0.9)).ok());
  return std::move(*monitor);
}

TEST(DriftMonitorTest, ShiftedInputsProduceAReportThatNamesTheDetector) {
  DriftMonitorOptions options = Options();
  options.trigger = "ks";
  std::unique_ptr<DriftMonitor> monitor = Make(options);
  std::mt19937_64 rng(2);
  // Five rounds of 64 in-distribution examples: no report.
  for (int round = 1; round <= 5; ++round) {
    auto outcome =
        monitor->ObserveInference(Rows(rng, 64, 0.0), Confidences(rng, 64, 0.9), 3, round);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    EXPECT_FALSE(outcome->report.has_value()) << "round " << round;
  }
  auto outcome = monitor->ObserveInference(Rows(rng, 64, 1.5), Confidences(rng, 64, 0.6), 4, 6);
  ASSERT_TRUE(outcome.ok());
  ASSERT_TRUE(outcome->report.has_value());
  const v1::DriftReport& report = *outcome->report;
  EXPECT_EQ(report.client_id(), "device-7");
  EXPECT_EQ(report.model_version(), 4u);
  EXPECT_TRUE(report.request_join());
  ASSERT_EQ(report.events_size(), 1);
  const v1::DriftEvent& event = report.events(0);
  EXPECT_EQ(event.detector(), "ks");
  EXPECT_EQ(event.stream(), "features");
  EXPECT_LE(event.statistic(), event.threshold());
  EXPECT_EQ(event.threshold(), 0.001);
  EXPECT_EQ(event.observations(), 64u);
  EXPECT_EQ(event.monitor_samples(), 6u * 64u);
  EXPECT_EQ(event.time(), 6);
  // The confidence monitor fired too (recorded, not the trigger).
  std::vector<std::string> fired;
  for (const auto& alarm : outcome->alarms) fired.push_back(alarm.detector());
  EXPECT_THAT(fired, ::testing::Contains("confidence"));
  EXPECT_EQ(monitor->events().size(), outcome->alarms.size());
}

TEST(DriftMonitorTest, AlarmsInsideTheCooldownAreRecordedButNotReported) {
  DriftMonitorOptions options = Options();
  options.detectors = {"ks"};
  options.cooldown = 3;
  std::unique_ptr<DriftMonitor> monitor = Make(options);
  std::mt19937_64 rng(3);
  std::vector<int64_t> reported;
  for (int round = 10; round < 17; ++round) {
    auto outcome = monitor->ObserveInference(Rows(rng, 64, 2.0), {}, 1, round);
    ASSERT_TRUE(outcome.ok());
    ASSERT_EQ(outcome->alarms.size(), 1u) << "round " << round;
    if (outcome->report) reported.push_back(round);
  }
  EXPECT_THAT(reported, ElementsAre(10, 13, 16));
  EXPECT_EQ(monitor->events().size(), 7u);
}

TEST(DriftMonitorTest, FeedbackFeedsTheErrorDetectors) {
  DriftMonitorOptions options = Options();
  options.detectors = {"page-hinkley", "adwin", "ddm", "page-hinkley:loss"};
  options.trigger = "adwin";
  std::unique_ptr<DriftMonitor> monitor = Make(options);
  std::mt19937_64 rng(4);
  std::vector<float> loss_low(2000, 0.3f), loss_high(1000, 1.5f);
  auto before = monitor->ObserveFeedback(loss_low, Errors(rng, 2000, 0.1), 1, 1);
  ASSERT_TRUE(before.ok());
  EXPECT_THAT(before->alarms, IsEmpty());
  auto after = monitor->ObserveFeedback(loss_high, Errors(rng, 1000, 0.6), 1, 2);
  ASSERT_TRUE(after.ok());
  std::set<std::string> fired;
  for (const auto& alarm : after->alarms)
    fired.insert(absl::StrCat(alarm.detector(), ":", alarm.stream()));
  EXPECT_THAT(fired,
              ElementsAre("adwin:error", "ddm:error", "page-hinkley:error", "page-hinkley:loss"));
  ASSERT_TRUE(after->report.has_value());
  for (const auto& event : after->report->events()) EXPECT_EQ(event.detector(), "adwin");
  EXPECT_EQ(monitor->samples(), 3000u);
}

TEST(DriftMonitorTest, BadBatchesAreRefusedAndChangeNothing) {
  std::unique_ptr<DriftMonitor> monitor = Make();
  std::mt19937_64 rng(5);
  ASSERT_TRUE(monitor->ObserveInference(Rows(rng, 10, 0.0), Confidences(rng, 10, 0.9), 1, 1).ok());
  const std::string before = monitor->SaveState();
  EXPECT_THAT(monitor->ObserveInference(Rows(rng, 10, 0.0), Confidences(rng, 9, 0.9), 1, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("10 and 9 examples")));
  std::vector<float> ragged(kFeatures * 3 + 1, 0.0f);
  EXPECT_THAT(monitor->ObserveInference(ragged, {}, 1, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("4 values each")));
  std::vector<float> nan = Confidences(rng, 5, 0.9);
  nan[3] = std::nanf("");
  EXPECT_THAT(monitor->ObserveInference({}, nan, 1, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not finite")));
  EXPECT_THAT(monitor->ObserveFeedback({}, std::vector<float>{0, 1, 0.5f}, 1, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0 or 1")));
  EXPECT_THAT(monitor->ObserveFeedback({}, {}, 1, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nothing")));
  EXPECT_THAT(monitor->SetReference(ragged, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reference for ks")));
  EXPECT_EQ(monitor->SaveState(), before);
}

TEST(DriftMonitorTest, FeaturesBeforeAReferenceAreAPreconditionError) {
  auto monitor = DriftMonitor::Create("d", Options());
  ASSERT_TRUE(monitor.ok());
  EXPECT_THAT((*monitor)->ObserveInference(std::vector<float>(kFeatures, 0.0f), {}, 1, 1),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SetReference")));
}

TEST(DriftMonitorTest, SaveRestoreGivesIdenticalOutcomes) {
  std::unique_ptr<DriftMonitor> original = Make();
  std::mt19937_64 rng(6);
  for (int round = 1; round <= 3; ++round) {
    ASSERT_TRUE(
        original->ObserveInference(Rows(rng, 40, 0.0), Confidences(rng, 40, 0.9), 1, round).ok());
    ASSERT_TRUE(original->ObserveFeedback({}, Errors(rng, 40, 0.1), 1, round).ok());
  }
  auto restored = DriftMonitor::Create("device-7", Options());
  ASSERT_TRUE(restored.ok());
  ASSERT_TRUE((*restored)->RestoreState(original->SaveState()).ok());
  for (int round = 4; round <= 8; ++round) {
    const double shift = round >= 6 ? 1.0 : 0.0;
    const auto rows = Rows(rng, 40, shift);
    const auto conf = Confidences(rng, 40, 0.9 - 0.2 * shift);
    const auto err = Errors(rng, 40, 0.1 + 0.4 * shift);
    for (bool inference : {true, false}) {
      auto a = inference ? original->ObserveInference(rows, conf, 2, round)
                         : original->ObserveFeedback({}, err, 2, round);
      auto b = inference ? (*restored)->ObserveInference(rows, conf, 2, round)
                         : (*restored)->ObserveFeedback({}, err, 2, round);
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->alarms.size(), b->alarms.size());
      for (size_t i = 0; i < a->alarms.size(); ++i) {
        EXPECT_EQ(a->alarms[i].SerializeAsString(), b->alarms[i].SerializeAsString());
      }
      EXPECT_EQ(a->report.has_value(), b->report.has_value());
    }
  }
  EXPECT_EQ(original->SaveState(), (*restored)->SaveState());
}

TEST(DriftMonitorTest, RestoreRefusesOtherMonitorsAndGarbage) {
  std::unique_ptr<DriftMonitor> monitor = Make();
  const std::string before = monitor->SaveState();
  EXPECT_THAT(monitor->RestoreState("garbage\xff"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a serialized")));
  DriftMonitorOptions fewer = Options();
  fewer.detectors = {"adwin"};
  auto other = DriftMonitor::Create("x", fewer);
  ASSERT_TRUE(other.ok());
  EXPECT_THAT(
      monitor->RestoreState((*other)->SaveState()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("saved for detectors [adwin:error]")));
  // A detector state from another configuration (ks with other bins).
  DriftMonitorOptions coarse = Options();
  coarse.detector_options.ks.bins = 4;
  auto coarse_monitor = DriftMonitor::Create("x", coarse);
  ASSERT_TRUE(coarse_monitor.ok());
  EXPECT_THAT(monitor->RestoreState((*coarse_monitor)->SaveState()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ks state")));
  EXPECT_EQ(monitor->SaveState(), before);
}

TEST(DriftMonitorOptionsTest, EachBadOptionIsNamed) {
  struct BadCase {
    std::function<void(DriftMonitorOptions&)> spoil;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<BadCase> cases = {
      {[](auto& o) { o.detectors.clear(); }, absl::StatusCode::kInvalidArgument, "detectors"},
      {[](auto& o) { o.detectors = {"adwin:pixels"}; }, absl::StatusCode::kInvalidArgument,
       "unknown stream 'pixels'"},
      {[](auto& o) {
         o.detectors = {"adwin", "adwin:error"};
       },
       absl::StatusCode::kInvalidArgument, "listed twice"},
      {[](auto& o) { o.features = 0; }, absl::StatusCode::kInvalidArgument, "features"},
      {[](auto& o) { o.detectors = {"ddm:loss"}; }, absl::StatusCode::kInvalidArgument,
       "ddm watches 0/1 errors"},
      {[](auto& o) { o.detectors = {"adwin:features"}; }, absl::StatusCode::kInvalidArgument,
       "takes observations of 1"},
      {[](auto& o) { o.detectors = {"cusum:error"}; }, absl::StatusCode::kNotFound,
       "unknown drift detector 'cusum'"},
      {[](auto& o) { o.detectors = {"my-detector"}; }, absl::StatusCode::kInvalidArgument,
       "no default stream"},
      {[](auto& o) { o.trigger = "psi-2"; }, absl::StatusCode::kInvalidArgument, "trigger"},
      {[](auto& o) { o.cooldown = -1; }, absl::StatusCode::kInvalidArgument, "cooldown"},
      {[](auto& o) { o.max_events = 0; }, absl::StatusCode::kInvalidArgument, "max_events"},
      {[](auto& o) { o.detector_options.ks.alpha = 2; }, absl::StatusCode::kInvalidArgument,
       "ks.alpha"},
  };
  for (const BadCase& c : cases) {
    DriftMonitorOptions options = Options();
    c.spoil(options);
    EXPECT_THAT(DriftMonitor::Create("d", options), StatusIs(c.code, HasSubstr(c.message)))
        << c.message;
  }
}

}  // namespace
}  // namespace fedge::client
