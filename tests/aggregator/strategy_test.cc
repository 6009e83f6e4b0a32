// Strategy registry, options validation, and every built-in strategy against
// results derived by hand on tiny vectors (the derivations are in comments).
#include "fedge/aggregator/strategy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Pointwise;

constexpr float kTolerance = 1e-6f;

// Folds `updates` (with `weights`) into a fresh accumulator of `strategy`,
// aggregates, and returns the aggregated delta.
std::vector<float> AggregateAll(const Strategy& strategy,
                                const std::vector<std::vector<float>>& updates,
                                const std::vector<double>& weights) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy.NewAccumulator(updates.front().size());
  for (std::size_t i = 0; i < updates.size(); ++i) {
    const absl::Status status = accumulator->Accumulate(updates[i], weights[i]);
    EXPECT_TRUE(status.ok()) << status;
  }
  std::vector<float> out(updates.front().size(), -12345.0f);
  const absl::Status status = accumulator->Aggregate(out);
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

// --- registry ---------------------------------------------------------------

const std::vector<std::string>& BuiltInNames() {
  static const std::vector<std::string> names = {"fedavg",  "fedprox",      "fedavgm",
                                                 "fedadam", "fedyogi",      "fedadagrad",
                                                 "median",  "trimmed-mean", "krum"};
  return names;
}

TEST(StrategyRegistryTest, EveryBuiltInNameIsRegisteredAndCreates) {
  EXPECT_THAT(RegisteredStrategies(), IsSupersetOf(BuiltInNames()));
  for (const std::string& name : BuiltInNames()) {
    SCOPED_TRACE(name);
    // The adaptive strategies read beta2; all defaults are valid.
    absl::StatusOr<std::unique_ptr<Strategy>> strategy = CreateStrategy(name, {});
    ASSERT_THAT(strategy, IsOk());
    ASSERT_NE(*strategy, nullptr);
    EXPECT_EQ((*strategy)->name(), name);
  }
}

TEST(StrategyRegistryTest, RegisteredStrategiesAreSorted) {
  const std::vector<std::string> names = RegisteredStrategies();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

TEST(StrategyRegistryTest, UnknownNameIsNotFoundAndListsKnownNames) {
  const absl::StatusOr<std::unique_ptr<Strategy>> strategy = CreateStrategy("fedsgd", {});
  EXPECT_THAT(strategy, StatusIs(absl::StatusCode::kNotFound, HasSubstr("'fedsgd'")));
  for (const std::string& name : BuiltInNames()) {
    EXPECT_THAT(strategy, StatusIs(absl::StatusCode::kNotFound, HasSubstr(name)));
  }
}

TEST(StrategyRegistryTest, RegisterAddsAPluginSelectableByName) {
  // A plug-in reusing a built-in's behaviour under a new name. Registered once
  // per process, so the test also passes under --gtest_repeat.
  static const bool registered = RegisterStrategy(
      "test-plugin",
      [](const StrategyOptions& options) { return CreateStrategy("fedavg", options); });
  ASSERT_TRUE(registered);
  EXPECT_THAT(RegisteredStrategies(), IsSupersetOf({"test-plugin"}));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> plugin, CreateStrategy("test-plugin", {}));
  EXPECT_EQ(plugin->name(), "fedavg");
}

TEST(StrategyRegistryDeathTest, RegisteringANameTwiceAborts) {
  EXPECT_DEATH(RegisterStrategy("fedavg",
                                [](const StrategyOptions& options) {
                                  return CreateStrategy("fedprox", options);
                                }),
               "registered twice");
}

// --- options validation -------------------------------------------------------

struct BadOptionsCase {
  std::string strategy;
  StrategyOptions options;
  std::string message;
};

StrategyOptions With(void (*edit)(StrategyOptions&)) {
  StrategyOptions options;
  edit(options);
  return options;
}

class BadOptionsTest : public ::testing::TestWithParam<BadOptionsCase> {};

TEST_P(BadOptionsTest, IsInvalidArgumentNamingTheField) {
  const BadOptionsCase& test_case = GetParam();
  EXPECT_THAT(CreateStrategy(test_case.strategy, test_case.options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(test_case.message)));
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

INSTANTIATE_TEST_SUITE_P(
    AllFields, BadOptionsTest,
    ::testing::Values(
        BadOptionsCase{"fedavg", With([](auto& o) { o.server_learning_rate = 0; }),
                       "StrategyOptions.server_learning_rate must be a finite number > 0, got 0"},
        BadOptionsCase{"fedprox", With([](auto& o) { o.server_learning_rate = -1; }),
                       "StrategyOptions.server_learning_rate must be a finite number > 0, got -1"},
        BadOptionsCase{"fedavg", With([](auto& o) { o.server_learning_rate = kNaN; }),
                       "StrategyOptions.server_learning_rate"},
        BadOptionsCase{"median", With([](auto& o) { o.server_learning_rate = kInf; }),
                       "StrategyOptions.server_learning_rate"},
        BadOptionsCase{"fedavgm", With([](auto& o) { o.server_momentum = 1.0; }),
                       "StrategyOptions.server_momentum must be in [0, 1), got 1"},
        BadOptionsCase{"fedavgm", With([](auto& o) { o.server_momentum = -0.5; }),
                       "StrategyOptions.server_momentum must be in [0, 1), got -0.5"},
        BadOptionsCase{"fedadam", With([](auto& o) { o.beta1 = 1.0; }),
                       "StrategyOptions.beta1 must be in [0, 1), got 1"},
        BadOptionsCase{"fedadagrad", With([](auto& o) { o.beta1 = kNaN; }),
                       "StrategyOptions.beta1"},
        BadOptionsCase{"fedadam", With([](auto& o) { o.beta2 = 1.5; }),
                       "StrategyOptions.beta2 must be in [0, 1), got 1.5"},
        BadOptionsCase{"fedyogi", With([](auto& o) { o.beta2 = -0.1; }),
                       "StrategyOptions.beta2 must be in [0, 1), got -0.1"},
        BadOptionsCase{"fedyogi", With([](auto& o) { o.tau = 0; }),
                       "StrategyOptions.tau must be a finite number > 0, got 0"},
        BadOptionsCase{"fedadagrad", With([](auto& o) { o.tau = -1e-3; }),
                       "StrategyOptions.tau must be a finite number > 0, got -0.001"},
        BadOptionsCase{"fedadam", With([](auto& o) { o.server_learning_rate = 0; }),
                       "StrategyOptions.server_learning_rate"},
        BadOptionsCase{"trimmed-mean", With([](auto& o) { o.trim_fraction = 0.6; }),
                       "StrategyOptions.trim_fraction must be in [0, 0.5), got 0.6"},
        BadOptionsCase{"trimmed-mean", With([](auto& o) { o.trim_fraction = 0.5; }),
                       "StrategyOptions.trim_fraction must be in [0, 0.5), got 0.5"},
        BadOptionsCase{"trimmed-mean", With([](auto& o) { o.trim_fraction = -0.01; }),
                       "StrategyOptions.trim_fraction"},
        BadOptionsCase{"krum", With([](auto& o) { o.krum_byzantine = -1; }),
                       "StrategyOptions.krum_byzantine must be >= 0, got -1"},
        BadOptionsCase{"krum", With([](auto& o) { o.krum_select = 0; }),
                       "StrategyOptions.krum_select must be >= 1, got 0"},
        BadOptionsCase{"krum", With([](auto& o) { o.server_learning_rate = -2; }),
                       "StrategyOptions.server_learning_rate"}));

TEST(StrategyOptionsTest, FieldsAStrategyDoesNotReadAreIgnored) {
  StrategyOptions options;
  options.trim_fraction = 0.9;
  options.krum_select = 0;
  options.server_momentum = 2.0;
  options.beta2 = 7.0;
  EXPECT_THAT(CreateStrategy("fedavg", options), IsOk());
  EXPECT_THAT(CreateStrategy("median", options), IsOk());
  // FedAdagrad has no second-moment decay, so beta2 is not its business.
  EXPECT_THAT(CreateStrategy("fedadagrad", options), IsOk());
}

// --- weighted mean + plain step: fedavg, fedprox ------------------------------

TEST(FedAvgTest, WeightedMeanAppliedWithServerLearningRate) {
  // a = {1, 2, -4} with weight 1, b = {3, 0, 8} with weight 3:
  // mean = (1*a + 3*b) / 4 = {1 + 9, 2 + 0, -4 + 24} / 4 = {2.5, 0.5, 5}.
  for (const std::string name : {"fedavg", "fedprox"}) {
    SCOPED_TRACE(name);
    StrategyOptions options;
    options.server_learning_rate = 0.5;
    FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy(name, options));
    const std::vector<float> mean = AggregateAll(*strategy, {{1, 2, -4}, {3, 0, 8}}, {1, 3});
    EXPECT_THAT(mean, ElementsAre(2.5f, 0.5f, 5.0f));
    // global {10, 10, 10} + 0.5 * {2.5, 0.5, 5} = {11.25, 10.25, 12.5}.
    std::vector<float> global = {10, 10, 10};
    FEDGE_ASSERT_OK(strategy->Apply(mean, global));
    EXPECT_THAT(global, ElementsAre(11.25f, 10.25f, 12.5f));
  }
}

TEST(FedAvgTest, DefaultLearningRateReplacesTheModelByTheMean) {
  // eta = 1: global {1, 1} + mean {-0.5, 2} = {0.5, 3}.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("fedavg", {}));
  std::vector<float> global = {1, 1};
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{-0.5f, 2.0f}, global));
  EXPECT_THAT(global, ElementsAre(0.5f, 3.0f));
}

// --- server momentum: fedavgm -------------------------------------------------

TEST(FedAvgMTest, TwoRoundsOfServerMomentum) {
  // beta = 0.5, eta = 2, v0 = 0, global0 = {0, 0}.
  // Round 1, delta {1, -2}: v = {1, -2};            global = {2, -4}.
  // Round 2, delta {3, 0}:  v = 0.5*{1,-2} + {3,0} = {3.5, -1};
  //                         global = {2, -4} + 2*{3.5, -1} = {9, -6}.
  StrategyOptions options;
  options.server_momentum = 0.5;
  options.server_learning_rate = 2.0;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy,
                             CreateStrategy("fedavgm", options));
  std::vector<float> global = {0, 0};
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{1, -2}, global));
  EXPECT_THAT(global, ElementsAre(2.0f, -4.0f));
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{3, 0}, global));
  EXPECT_THAT(global, ElementsAre(9.0f, -6.0f));
}

// --- adaptive: fedadam, fedyogi, fedadagrad -----------------------------------
//
// All three with beta1 = 0.5, beta2 = 0.5, tau = 2 (so v starts at tau^2 = 4,
// m at 0), eta = 0.5; step = eta * m / (sqrt(v) + tau), no bias correction.

StrategyOptions AdaptiveOptions() {
  StrategyOptions options;
  options.beta1 = 0.5;
  options.beta2 = 0.5;
  options.tau = 2.0;
  options.server_learning_rate = 0.5;
  return options;
}

TEST(AdaptiveStrategyTest, FedAdamTwoRounds) {
  // Coordinate A, global 0:
  //   round 1, d = 2:  m = 0.5*2 = 1;          v = 0.5*4 + 0.5*4 = 4;
  //                    step = 0.5 * 1 / (2 + 2) = 0.125            -> 0.125
  //   round 2, d = 14: m = 0.5*1 + 0.5*14 = 7.5; v = 0.5*4 + 0.5*196 = 100;
  //                    step = 0.5 * 7.5 / (10 + 2) = 0.3125        -> 0.4375
  // Coordinate B, global 1:
  //   round 1, d = -2: m = -1; v = 2 + 2 = 4; step = 0.5 * -1 / 4 = -0.125 -> 0.875
  //   round 2, d = 0:  m = -0.5; v = 2;
  //                    step = 0.5 * -0.5 / (1.41421356 + 2) = -0.07322330
  //                                                                -> 0.80177670
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy,
                             CreateStrategy("fedadam", AdaptiveOptions()));
  std::vector<float> global = {0, 1};
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{2, -2}, global));
  EXPECT_THAT(global, Pointwise(FloatNear(kTolerance), {0.125f, 0.875f}));
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{14, 0}, global));
  EXPECT_THAT(global, Pointwise(FloatNear(kTolerance), {0.4375f, 0.80177670f}));
}

TEST(AdaptiveStrategyTest, FedYogiTwoRoundsCoverEverySignOfVMinusDeltaSquared) {
  // v -= (1 - beta2) * d^2 * sign(v - d^2), with (1 - beta2) = 0.5.
  // Coordinate A, global 0:
  //   round 1, d = 2: d^2 = 4 = v -> sign 0, v stays 4; m = 1;
  //                   step = 0.5 * 1 / (2 + 2) = 0.125              -> 0.125
  //   round 2, d = 4: d^2 = 16 > v -> sign -1, v = 4 + 0.5*16 = 12; m = 0.5 + 2 = 2.5;
  //                   step = 0.5 * 2.5 / (3.46410162 + 2) = 0.22876588 -> 0.35376588
  // Coordinate B, global 0:
  //   round 1, d = 1:  d^2 = 1 < v -> sign +1, v = 4 - 0.5 = 3.5; m = 0.5;
  //                    step = 0.5 * 0.5 / (1.87082869 + 2) = 0.06458565 -> 0.06458565
  //   round 2, d = -1: v = 3.5 - 0.5 = 3; m = 0.25 - 0.5 = -0.25;
  //                    step = 0.5 * -0.25 / (1.73205081 + 2) = -0.03349365
  //                                                               -> 0.03109200
  // (FedAdam would have v = 2.5 after round 1 on B, and 10 after round 2 on A.)
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy,
                             CreateStrategy("fedyogi", AdaptiveOptions()));
  std::vector<float> global = {0, 0};
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{2, 1}, global));
  EXPECT_THAT(global, Pointwise(FloatNear(kTolerance), {0.125f, 0.06458565f}));
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{4, -1}, global));
  EXPECT_THAT(global, Pointwise(FloatNear(kTolerance), {0.35376588f, 0.03109200f}));
}

TEST(AdaptiveStrategyTest, FedAdagradTwoRounds) {
  // v += d^2.
  // Coordinate A, global 0:
  //   round 1, d = 3: v = 4 + 9 = 13; m = 1.5;
  //                   step = 0.5 * 1.5 / (3.60555128 + 2) = 0.13379594  -> 0.13379594
  //   round 2, d = 3: v = 22; m = 0.75 + 1.5 = 2.25;
  //                   step = 0.5 * 2.25 / (4.69041576 + 2) = 0.16815098 -> 0.30194692
  // Coordinate B, global 0:
  //   round 1, d = -1: v = 5; m = -0.5;
  //                    step = 0.5 * -0.5 / (2.23606798 + 2) = -0.05901699 -> -0.05901699
  //   round 2, d = 0:  v = 5; m = -0.25;
  //                    step = 0.5 * -0.25 / 4.23606798 = -0.02950850 -> -0.08852549
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy,
                             CreateStrategy("fedadagrad", AdaptiveOptions()));
  std::vector<float> global = {0, 0};
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{3, -1}, global));
  EXPECT_THAT(global, Pointwise(FloatNear(kTolerance), {0.13379594f, -0.05901699f}));
  FEDGE_ASSERT_OK(strategy->Apply(std::vector<float>{3, 0}, global));
  EXPECT_THAT(global, Pointwise(FloatNear(kTolerance), {0.30194692f, -0.08852549f}));
}

TEST(AdaptiveStrategyTest, AdaptiveStrategiesAggregateByWeightedMean) {
  // {4, 0} weight 1 and {0, 8} weight 3 -> {1, 6}; the server step is separate.
  for (const std::string name : {"fedadam", "fedyogi", "fedadagrad", "fedavgm"}) {
    SCOPED_TRACE(name);
    FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy,
                               CreateStrategy(name, AdaptiveOptions()));
    EXPECT_THAT(AggregateAll(*strategy, {{4, 0}, {0, 8}}, {1, 3}), ElementsAre(1.0f, 6.0f));
  }
}

// --- robust rules: median, trimmed-mean, krum ---------------------------------

TEST(MedianTest, OddCountTakesTheMiddleValueUnweighted) {
  // Coordinate 0: {1, 5, 3} -> sorted {1, 3, 5} -> 3.
  // Coordinate 1: {10, -2, 4} -> sorted {-2, 4, 10} -> 4.
  // The weight 100 on the second update does not matter (a weighted median
  // would give {5, -2}).
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("median", {}));
  EXPECT_THAT(AggregateAll(*strategy, {{1, 10}, {5, -2}, {3, 4}}, {1, 100, 1}),
              ElementsAre(3.0f, 4.0f));
}

TEST(MedianTest, EvenCountAveragesTheTwoMiddleValues) {
  // Coordinate 0: {1, 5, 3, 7} -> {1, 3, 5, 7} -> (3 + 5) / 2 = 4.
  // Coordinate 1: {10, -2, 4, 0} -> {-2, 0, 4, 10} -> (0 + 4) / 2 = 2.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("median", {}));
  const std::vector<float> median =
      AggregateAll(*strategy, {{1, 10}, {5, -2}, {3, 4}, {7, 0}}, {1, 1, 1, 1});
  EXPECT_THAT(median, ElementsAre(4.0f, 2.0f));
  // eta = 1: global {1, 1} + {4, 2} = {5, 3}.
  std::vector<float> global = {1, 1};
  FEDGE_ASSERT_OK(strategy->Apply(median, global));
  EXPECT_THAT(global, ElementsAre(5.0f, 3.0f));
}

TEST(MedianTest, ManyCoordinatesSpanSeveralColumnBlocks) {
  // u1[j] = j, u2[j] = -j, u3[j] = 2j: for j >= 0 the sorted values are
  // {-j, j, 2j}, so the median is j.
  constexpr int kDimension = 130;
  std::vector<float> u1(kDimension), u2(kDimension), u3(kDimension), expected(kDimension);
  for (int j = 0; j < kDimension; ++j) {
    u1[j] = static_cast<float>(j);
    u2[j] = static_cast<float>(-j);
    u3[j] = static_cast<float>(2 * j);
    expected[j] = static_cast<float>(j);
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("median", {}));
  EXPECT_EQ(AggregateAll(*strategy, {u2, u3, u1}, {1, 1, 1}), expected);
}

TEST(TrimmedMeanTest, DropsTrimFractionAtEachEnd) {
  // trim_fraction 0.2, n = 5 -> k = 1 dropped at each end.
  // Coordinate 0: {100, 2, 4, 1, 3} -> {1, 2, 3, 4, 100} -> mean(2, 3, 4) = 3.
  // Coordinate 1: {2, -50, 3, 0, 1} -> {-50, 0, 1, 2, 3} -> mean(0, 1, 2) = 1.
  StrategyOptions options;
  options.trim_fraction = 0.2;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy,
                             CreateStrategy("trimmed-mean", options));
  EXPECT_THAT(
      AggregateAll(*strategy, {{100, 2}, {2, -50}, {4, 3}, {1, 0}, {3, 1}}, {1, 1, 1, 1, 1}),
      ElementsAre(3.0f, 1.0f));
}

TEST(TrimmedMeanTest, TrimCountRoundsDownSoSmallRoundsKeepEverything) {
  // trim_fraction 0.1, n = 5 -> k = floor(0.5) = 0: the plain, unweighted mean.
  // Coordinate 0: (100 + 2 + 4 + 1 + 3) / 5 = 22; coordinate 1: -44 / 5 = -8.8.
  StrategyOptions options;
  options.trim_fraction = 0.1;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy,
                             CreateStrategy("trimmed-mean", options));
  EXPECT_THAT(
      AggregateAll(*strategy, {{100, 2}, {2, -50}, {4, 3}, {1, 0}, {3, 1}}, {1, 7, 1, 1, 1}),
      ElementsAre(22.0f, -8.8f));
}

TEST(TrimmedMeanTest, TrimCountIsExactDespiteDecimalFractions) {
  // trim_fraction 0.29, n = 100 -> k = 29 (0.29 * 100 is 28.999999999999996
  // in binary). Values: 29 x -1000, then 30, 31, ..., 71, then 29 x 1000.
  // k = 29 leaves 30..71: mean 50.5. (k = 28 would leave one -1000 and one
  // 1000 as well: (sum 30..71 = 2121) / 44 = 48.2045.)
  StrategyOptions options;
  options.trim_fraction = 0.29;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy,
                             CreateStrategy("trimmed-mean", options));
  std::vector<std::vector<float>> updates;
  for (int i = 1; i <= 100; ++i) {
    updates.push_back({i <= 29 ? -1000.0f : (i >= 72 ? 1000.0f : static_cast<float>(i))});
  }
  EXPECT_THAT(AggregateAll(*strategy, updates, std::vector<double>(100, 1.0)), ElementsAre(50.5f));
}

// Five 2-d updates; the first is the outlier. Squared distances:
//   u0 = (10, 10), u1 = (0, 0), u2 = (1, 0), u3 = (0, 3), u4 = (2, 1)
//   d(1,2) = 1   d(1,3) = 9   d(1,4) = 5   d(1,0) = 200
//   d(2,3) = 10  d(2,4) = 2   d(2,0) = 181
//   d(3,4) = 8   d(3,0) = 149
//   d(4,0) = 145
// With f = 1, each score sums the n - f - 2 = 2 smallest distances:
//   u1: {1, 9, 5, 200} -> 1 + 5 = 6      u2: {1, 10, 2, 181} -> 1 + 2 = 3
//   u3: {9, 10, 8, 149} -> 8 + 9 = 17    u4: {5, 2, 8, 145} -> 2 + 5 = 7
//   u0: {200, 181, 149, 145} -> 294
// Order by score: u2 (3), u1 (6), u4 (7), u3 (17), u0 (294).
const std::vector<std::vector<float>> kKrumUpdates = {{10, 10}, {0, 0}, {1, 0}, {0, 3}, {2, 1}};
// Krum ignores weights; the outlier claims the most examples.
const std::vector<double> kKrumWeights = {1000, 1, 1, 1, 1};

TEST(KrumTest, PicksTheUpdateWithTheLowestScore) {
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("krum", {}));
  EXPECT_THAT(AggregateAll(*strategy, kKrumUpdates, kKrumWeights), ElementsAre(1.0f, 0.0f));
}

TEST(KrumTest, MultiKrumAveragesTheBestScored) {
  StrategyOptions options;
  // m = 2: mean(u2, u1) = (0.5, 0).
  options.krum_select = 2;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> two, CreateStrategy("krum", options));
  EXPECT_THAT(AggregateAll(*two, kKrumUpdates, kKrumWeights), ElementsAre(0.5f, 0.0f));
  // m = 3: mean(u2, u1, u4) = ((1 + 0 + 2) / 3, (0 + 0 + 1) / 3) = (1, 1/3).
  options.krum_select = 3;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> three, CreateStrategy("krum", options));
  EXPECT_THAT(AggregateAll(*three, kKrumUpdates, kKrumWeights),
              Pointwise(FloatNear(kTolerance), {1.0f, 1.0f / 3.0f}));
}

TEST(KrumTest, LongVectorsScoreLikeTheirOneDimensionalPattern) {
  // u_k = c_k * (1, ..., 1) over 300 coordinates, c = {0, 1, 3, 7, 100}:
  // squared distances are 300 * (c_i - c_j)^2, so the order is the 1-d one.
  // f = 1, 2 nearest: c=0: 1 + 9 = 10; c=1: 1 + 4 = 5; c=3: 4 + 9 = 13;
  // c=7: 16 + 36 = 52; c=100: large. Krum picks c = 1.
  constexpr std::size_t kDimension = 300;
  std::vector<std::vector<float>> updates;
  for (const float c : {0.0f, 1.0f, 3.0f, 7.0f, 100.0f}) {
    updates.emplace_back(kDimension, c);
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("krum", {}));
  EXPECT_EQ(AggregateAll(*strategy, updates, {1, 1, 1, 1, 1}), std::vector<float>(kDimension, 1));
}

TEST(KrumTest, TooFewUpdatesIsFailedPrecondition) {
  // f = 1 needs n > 4.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("krum", {}));
  std::unique_ptr<UpdateAccumulator> accumulator = strategy->NewAccumulator(2);
  for (int i = 0; i < 4; ++i) FEDGE_ASSERT_OK(accumulator->Accumulate(kKrumUpdates[i], 1));
  std::vector<float> out(2);
  EXPECT_THAT(accumulator->Aggregate(out),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("n > 2f + 2 = 4"), HasSubstr("got n = 4"))));
  FEDGE_ASSERT_OK(accumulator->Accumulate(kKrumUpdates[4], 1));
  EXPECT_THAT(accumulator->Aggregate(out), IsOk());
}

TEST(KrumTest, SelectingMoreThanAccumulatedIsFailedPrecondition) {
  StrategyOptions options;
  options.krum_byzantine = 0;
  options.krum_select = 4;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("krum", options));
  std::unique_ptr<UpdateAccumulator> accumulator = strategy->NewAccumulator(2);
  for (int i = 0; i < 3; ++i) FEDGE_ASSERT_OK(accumulator->Accumulate(kKrumUpdates[i], 1));
  std::vector<float> out(2);
  EXPECT_THAT(accumulator->Aggregate(out),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("krum_select = 4")));
}

TEST(RobustStrategyTest, ServerLearningRateScalesTheRobustResult) {
  // median of {2}, {4}, {9} = 4; global 1 + 0.25 * 4 = 2.
  StrategyOptions options;
  options.server_learning_rate = 0.25;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Strategy> strategy, CreateStrategy("median", options));
  std::vector<float> global = {1};
  FEDGE_ASSERT_OK(strategy->Apply(AggregateAll(*strategy, {{2}, {4}, {9}}, {1, 1, 1}), global));
  EXPECT_THAT(global, ElementsAre(2.0f));
}

}  // namespace
}  // namespace fedge::aggregator
