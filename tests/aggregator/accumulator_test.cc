// UpdateAccumulator contracts, for the accumulator of every aggregation rule:
// input validation (each branch, state left unchanged), MergeWith,
// Serialize/Restore, and the O(d) memory of the streaming mean.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "status_matchers.h"
#include "fedge/aggregator/strategy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::unique_ptr<Strategy> MakeStrategy(const std::string& name, StrategyOptions options = {}) {
  absl::StatusOr<std::unique_ptr<Strategy>> strategy = CreateStrategy(name, options);
  EXPECT_TRUE(strategy.ok()) << strategy.status();
  return strategy.ok() ? std::move(strategy).value() : nullptr;
}

// One strategy per accumulator kind. krum with f = 0 so three updates suffice.
std::unique_ptr<Strategy> MakeStrategyForRule(const std::string& name) {
  StrategyOptions options;
  options.krum_byzantine = 0;
  options.trim_fraction = 0.25;
  return MakeStrategy(name, options);
}

// Updates whose sums and means are exact in float (small dyadic values), so
// results can be compared for equality whatever the summation order.
const std::vector<std::vector<float>> kUpdates = {{1.0f, -2.0f, 0.5f, 4.0f},
                                                  {3.0f, 0.25f, -1.0f, 2.0f},
                                                  {-1.0f, 1.0f, 2.0f, 0.0f},
                                                  {0.5f, 0.5f, 0.5f, 0.5f},
                                                  {2.0f, -4.0f, 8.0f, -0.25f}};
const std::vector<double> kWeights = {1, 2, 1, 4, 2};

class AccumulatorContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    strategy_ = MakeStrategyForRule(GetParam());
    ASSERT_NE(strategy_, nullptr);
  }

  std::unique_ptr<Strategy> strategy_;
};

INSTANTIATE_TEST_SUITE_P(EveryRule, AccumulatorContractTest,
                         ::testing::Values("fedavg", "median", "trimmed-mean", "krum"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

TEST_P(AccumulatorContractTest, FreshAccumulatorReportsItsShape) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(10);
  EXPECT_EQ(accumulator->dimension(), 10u);
  EXPECT_EQ(accumulator->count(), 0u);
  EXPECT_EQ(accumulator->total_weight(), 0.0);
  EXPECT_EQ(accumulator->streaming(), GetParam() == "fedavg");
}

TEST_P(AccumulatorContractTest, CountsUpdatesAndSumsWeights) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(4);
  FEDGE_ASSERT_OK(accumulator->Accumulate(kUpdates[0], 3));
  FEDGE_ASSERT_OK(accumulator->Accumulate(kUpdates[1], 4.5));
  EXPECT_EQ(accumulator->count(), 2u);
  EXPECT_EQ(accumulator->total_weight(), 7.5);
}

TEST_P(AccumulatorContractTest, WrongSizeIsRejectedAndChangesNothing) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(10);
  FEDGE_ASSERT_OK(accumulator->Accumulate(std::vector<float>(10, 1.0f), 1));
  const std::string before = accumulator->Serialize();
  EXPECT_THAT(
      accumulator->Accumulate(std::vector<float>(9, 1.0f), 1),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("update has 9 values, expected 10")));
  EXPECT_THAT(
      accumulator->Accumulate(std::vector<float>(11, 1.0f), 1),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("update has 11 values, expected 10")));
  EXPECT_EQ(accumulator->count(), 1u);
  EXPECT_EQ(accumulator->Serialize(), before);
}

TEST_P(AccumulatorContractTest, NonFiniteValuesAreRejectedWithTheirIndex) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(10);
  FEDGE_ASSERT_OK(accumulator->Accumulate(std::vector<float>(10, 1.0f), 1));
  const std::string before = accumulator->Serialize();
  struct Case {
    std::size_t index;
    float value;
  };
  for (const Case& bad : {Case{3, kNaN}, Case{0, kInf}, Case{9, -kInf}, Case{7, -kNaN}}) {
    std::vector<float> update(10, 2.0f);
    update[bad.index] = bad.value;
    EXPECT_THAT(accumulator->Accumulate(update, 1),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("update value at index " + std::to_string(bad.index) +
                                   " is not finite")));
  }
  // Several bad values: the first is named.
  std::vector<float> update(10, 2.0f);
  update[5] = kInf;
  update[2] = kNaN;
  EXPECT_THAT(accumulator->Accumulate(update, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index 2")));
  EXPECT_EQ(accumulator->count(), 1u);
  EXPECT_EQ(accumulator->Serialize(), before);
}

TEST_P(AccumulatorContractTest, NonPositiveOrNonFiniteWeightIsRejected) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(4);
  FEDGE_ASSERT_OK(accumulator->Accumulate(kUpdates[0], 1));
  const std::string before = accumulator->Serialize();
  for (const double weight : {0.0, -1.0, -0.0, std::numeric_limits<double>::quiet_NaN(),
                              std::numeric_limits<double>::infinity()}) {
    EXPECT_THAT(accumulator->Accumulate(kUpdates[1], weight),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("weight must be a finite number > 0")))
        << "weight " << weight;
  }
  EXPECT_EQ(accumulator->Serialize(), before);
}

TEST_P(AccumulatorContractTest, AggregateOfNothingIsFailedPrecondition) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(4);
  std::vector<float> out(4);
  EXPECT_THAT(accumulator->Aggregate(out),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("empty")));
}

TEST_P(AccumulatorContractTest, AggregateIntoWrongSizeIsInvalidArgument) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(4);
  for (std::size_t i = 0; i < 3; ++i) FEDGE_ASSERT_OK(accumulator->Accumulate(kUpdates[i], 1));
  std::vector<float> out(5);
  EXPECT_THAT(accumulator->Aggregate(out),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("aggregate output has 5 values, expected 4")));
}

TEST_P(AccumulatorContractTest, MergeEqualsAccumulatingEverythingInOne) {
  std::unique_ptr<UpdateAccumulator> all = strategy_->NewAccumulator(4);
  std::unique_ptr<UpdateAccumulator> left = strategy_->NewAccumulator(4);
  std::unique_ptr<UpdateAccumulator> right = strategy_->NewAccumulator(4);
  for (std::size_t i = 0; i < kUpdates.size(); ++i) {
    FEDGE_ASSERT_OK(all->Accumulate(kUpdates[i], kWeights[i]));
    FEDGE_ASSERT_OK((i < 2 ? left : right)->Accumulate(kUpdates[i], kWeights[i]));
  }
  FEDGE_ASSERT_OK(left->MergeWith(*right));
  EXPECT_EQ(left->count(), all->count());
  EXPECT_EQ(left->total_weight(), all->total_weight());
  std::vector<float> merged(4), expected(4);
  FEDGE_ASSERT_OK(left->Aggregate(merged));
  FEDGE_ASSERT_OK(all->Aggregate(expected));
  EXPECT_EQ(merged, expected);
}

TEST_P(AccumulatorContractTest, MergeIntoAnEmptyAccumulator) {
  std::unique_ptr<UpdateAccumulator> empty = strategy_->NewAccumulator(4);
  std::unique_ptr<UpdateAccumulator> full = strategy_->NewAccumulator(4);
  for (std::size_t i = 0; i < 3; ++i) FEDGE_ASSERT_OK(full->Accumulate(kUpdates[i], 1));
  std::vector<float> expected(4), merged(4);
  FEDGE_ASSERT_OK(full->Aggregate(expected));
  FEDGE_ASSERT_OK(empty->MergeWith(*full));
  FEDGE_ASSERT_OK(empty->Aggregate(merged));
  EXPECT_EQ(merged, expected);
}

TEST_P(AccumulatorContractTest, MergeRejectsOtherDimensionOtherKindAndSelf) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(4);
  FEDGE_ASSERT_OK(accumulator->Accumulate(kUpdates[0], 1));
  const std::string before = accumulator->Serialize();

  std::unique_ptr<UpdateAccumulator> wider = strategy_->NewAccumulator(5);
  EXPECT_THAT(accumulator->MergeWith(*wider),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dimension 5")));

  const std::string other_kind = GetParam() == "median" ? "fedavg" : "median";
  std::unique_ptr<UpdateAccumulator> other = MakeStrategy(other_kind)->NewAccumulator(4);
  EXPECT_THAT(accumulator->MergeWith(*other),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("another kind")));

  EXPECT_THAT(accumulator->MergeWith(*accumulator),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("itself")));
  EXPECT_EQ(accumulator->Serialize(), before);
}

TEST_P(AccumulatorContractTest, SerializeRestoreRoundTripsExactly) {
  std::unique_ptr<UpdateAccumulator> original = strategy_->NewAccumulator(4);
  std::unique_ptr<UpdateAccumulator> uninterrupted = strategy_->NewAccumulator(4);
  for (std::size_t i = 0; i < 3; ++i) {
    FEDGE_ASSERT_OK(original->Accumulate(kUpdates[i], kWeights[i]));
    FEDGE_ASSERT_OK(uninterrupted->Accumulate(kUpdates[i], kWeights[i]));
  }
  const std::string bytes = original->Serialize();
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UpdateAccumulator> restored,
                             strategy_->Restore(bytes));
  EXPECT_EQ(restored->Serialize(), bytes);
  EXPECT_EQ(restored->dimension(), 4u);
  EXPECT_EQ(restored->count(), 3u);
  EXPECT_EQ(restored->total_weight(), original->total_weight());
  EXPECT_EQ(restored->streaming(), original->streaming());

  // The restored round goes on as if never interrupted.
  for (std::size_t i = 3; i < kUpdates.size(); ++i) {
    FEDGE_ASSERT_OK(restored->Accumulate(kUpdates[i], kWeights[i]));
    FEDGE_ASSERT_OK(uninterrupted->Accumulate(kUpdates[i], kWeights[i]));
  }
  std::vector<float> resumed(4), expected(4);
  FEDGE_ASSERT_OK(restored->Aggregate(resumed));
  FEDGE_ASSERT_OK(uninterrupted->Aggregate(expected));
  EXPECT_EQ(resumed, expected);
  EXPECT_EQ(restored->Serialize(), uninterrupted->Serialize());
}

TEST_P(AccumulatorContractTest, EmptyAccumulatorRoundTrips) {
  const std::string bytes = strategy_->NewAccumulator(3)->Serialize();
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UpdateAccumulator> restored,
                             strategy_->Restore(bytes));
  EXPECT_EQ(restored->dimension(), 3u);
  EXPECT_EQ(restored->count(), 0u);
  std::vector<float> out(3);
  EXPECT_THAT(restored->Aggregate(out),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("empty")));
}

TEST_P(AccumulatorContractTest, RestoreRejectsGarbage) {
  std::unique_ptr<UpdateAccumulator> accumulator = strategy_->NewAccumulator(4);
  FEDGE_ASSERT_OK(accumulator->Accumulate(kUpdates[0], 2));
  FEDGE_ASSERT_OK(accumulator->Accumulate(kUpdates[1], 1));
  const std::string bytes = accumulator->Serialize();

  EXPECT_THAT(strategy_->Restore(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic")));
  EXPECT_THAT(strategy_->Restore("not an accumulator at all"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic")));
  // Every proper prefix is truncated.
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_THAT(strategy_->Restore(bytes.substr(0, length)),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << "prefix of " << length << " bytes";
  }
  EXPECT_THAT(strategy_->Restore(bytes + "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailing")));
  std::string wrong_version = bytes;
  wrong_version[4] = 99;
  EXPECT_THAT(strategy_->Restore(wrong_version),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version 99")));
  // The last four bytes are the last float of the state: make it a NaN.
  std::string nan_value = bytes;
  const float nan = kNaN;
  std::memcpy(nan_value.data() + nan_value.size() - sizeof(float), &nan, sizeof(float));
  EXPECT_THAT(strategy_->Restore(nan_value),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not finite")));
}

// Overwrites the little-endian u64 at `offset` of `bytes`.
std::string WithU64At(std::string bytes, std::size_t offset, std::uint64_t value) {
  for (int b = 0; b < 8; ++b) bytes[offset + b] = static_cast<char>(value >> (8 * b));
  return bytes;
}

TEST(AccumulatorRestoreTest, HugeClaimedSizesAreRejectedBeforeAllocating) {
  constexpr std::uint64_t kHuge = std::uint64_t{1} << 60;
  // Weighted mean layout (weighted_mean_accumulator.cc): 8-byte header, then
  // u64 dimension at offset 8.
  std::unique_ptr<Strategy> fedavg = MakeStrategy("fedavg");
  const std::string mean = fedavg->NewAccumulator(4)->Serialize();
  EXPECT_THAT(fedavg->Restore(WithU64At(mean, 8, kHuge)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated")));

  // Stored updates layout (stored_updates_accumulator.cc): header (8), u16
  // rule, f64 trim_fraction, u32 krum_byzantine, u32 krum_select, then u64
  // dimension at offset 26 and u64 count at offset 34.
  std::unique_ptr<Strategy> median = MakeStrategy("median");
  std::unique_ptr<UpdateAccumulator> accumulator = median->NewAccumulator(4);
  FEDGE_ASSERT_OK(accumulator->Accumulate(kUpdates[0], 1));
  const std::string stored = accumulator->Serialize();
  EXPECT_THAT(median->Restore(WithU64At(stored, 34, kHuge)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated")));
  EXPECT_THAT(median->Restore(WithU64At(stored, 26, kHuge)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated")));
  // count * dimension would wrap around 2^64 to a small number.
  EXPECT_THAT(median->Restore(WithU64At(WithU64At(stored, 26, std::uint64_t{1} << 63), 34, 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows")));
}

TEST(AccumulatorRestoreTest, StateOfAnotherRuleOrConfigurationIsRejected) {
  std::unique_ptr<UpdateAccumulator> median = MakeStrategy("median")->NewAccumulator(2);
  FEDGE_ASSERT_OK(median->Accumulate(std::vector<float>{1, 2}, 1));
  EXPECT_THAT(MakeStrategy("fedavg")->Restore(median->Serialize()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind")));
  EXPECT_THAT(MakeStrategy("trimmed-mean")->Restore(median->Serialize()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("written for rule median (trim_fraction 0, krum_byzantine 0, "
                                 "krum_select 1), but this strategy uses trimmed-mean")));

  StrategyOptions tenth;
  tenth.trim_fraction = 0.1;
  StrategyOptions fifth;
  fifth.trim_fraction = 0.2;
  std::unique_ptr<UpdateAccumulator> trimmed =
      MakeStrategy("trimmed-mean", tenth)->NewAccumulator(2);
  EXPECT_THAT(MakeStrategy("trimmed-mean", fifth)->Restore(trimmed->Serialize()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trim_fraction 0.2")));
  // ... and accumulators of differently configured rules do not merge.
  std::unique_ptr<UpdateAccumulator> other = MakeStrategy("trimmed-mean", fifth)->NewAccumulator(2);
  EXPECT_THAT(trimmed->MergeWith(*other),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("configuration")));

  // The weighted mean is shared by every averaging strategy.
  std::unique_ptr<UpdateAccumulator> mean = MakeStrategy("fedavg")->NewAccumulator(2);
  EXPECT_THAT(MakeStrategy("fedadam")->Restore(mean->Serialize()), IsOk());
}

// --- the streaming weighted mean ------------------------------------------------

TEST(WeightedMeanTest, HoldsOnlyOrderDMemory) {
  std::unique_ptr<UpdateAccumulator> accumulator = MakeStrategy("fedavg")->NewAccumulator(100);
  EXPECT_TRUE(accumulator->streaming());
  const std::size_t empty_size = accumulator->Serialize().size();
  std::vector<float> update(100, 0.5f);
  FEDGE_ASSERT_OK(accumulator->Accumulate(update, 1));
  const std::size_t one_size = accumulator->Serialize().size();
  for (int i = 0; i < 200; ++i) FEDGE_ASSERT_OK(accumulator->Accumulate(update, 3));
  EXPECT_EQ(one_size, empty_size);
  EXPECT_EQ(accumulator->Serialize().size(), one_size);
  // A float per coordinate plus a fixed header.
  EXPECT_LT(one_size, 100 * sizeof(float) + 64);

  // The robust rules, for contrast, grow with every update.
  std::unique_ptr<UpdateAccumulator> median = MakeStrategy("median")->NewAccumulator(100);
  EXPECT_FALSE(median->streaming());
  FEDGE_ASSERT_OK(median->Accumulate(update, 1));
  const std::size_t median_one = median->Serialize().size();
  FEDGE_ASSERT_OK(median->Accumulate(update, 1));
  EXPECT_GE(median->Serialize().size(), median_one + 100 * sizeof(float));
}

TEST(WeightedMeanTest, MatchesADoublePrecisionReferenceOnRandomUpdates) {
  // An odd dimension exercises the vector loops' remainders.
  constexpr std::size_t kDimension = 1003;
  constexpr int kClients = 37;
  std::mt19937 rng(20240611);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::uniform_int_distribution<int> examples(1, 500);
  std::vector<double> reference(kDimension, 0.0);
  double total = 0.0;
  std::unique_ptr<UpdateAccumulator> accumulator =
      MakeStrategy("fedavg")->NewAccumulator(kDimension);
  for (int client = 0; client < kClients; ++client) {
    std::vector<float> update(kDimension);
    for (float& v : update) v = value(rng);
    const double weight = examples(rng);
    for (std::size_t i = 0; i < kDimension; ++i) reference[i] += weight * update[i];
    total += weight;
    FEDGE_ASSERT_OK(accumulator->Accumulate(update, weight));
  }
  std::vector<float> mean(kDimension);
  FEDGE_ASSERT_OK(accumulator->Aggregate(mean));
  for (std::size_t i = 0; i < kDimension; ++i) {
    ASSERT_NEAR(mean[i], reference[i] / total, 1e-5) << "coordinate " << i;
  }
}

TEST(WeightedMeanTest, AnUpdateThatCouldOverflowIsRejectedAndChangesNothing) {
  std::unique_ptr<UpdateAccumulator> accumulator = MakeStrategy("fedavg")->NewAccumulator(2);
  FEDGE_ASSERT_OK(accumulator->Accumulate(std::vector<float>{3e38f, 1.0f}, 1));
  const std::string before = accumulator->Serialize();
  // 3e38 + 3e38 is past the float range (3.4e38).
  EXPECT_THAT(accumulator->Accumulate(std::vector<float>{3e38f, 1.0f}, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflow")));
  // So is a modest value with a huge weight.
  EXPECT_THAT(accumulator->Accumulate(std::vector<float>{1.0f, 1.0f}, 1e38),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflow")));
  EXPECT_EQ(accumulator->Serialize(), before);
  std::vector<float> mean(2);
  FEDGE_ASSERT_OK(accumulator->Aggregate(mean));
  EXPECT_THAT(mean, ElementsAre(3e38f, 1.0f));
}

TEST(WeightedMeanTest, AWeightOutsideFloatRangeIsRejected) {
  std::unique_ptr<UpdateAccumulator> accumulator = MakeStrategy("fedavg")->NewAccumulator(1);
  EXPECT_THAT(accumulator->Accumulate(std::vector<float>{0.0f}, 1e300),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("float range")));
  // Positive as a double but 0 as a float: it would make the mean 0 / 0.
  EXPECT_THAT(accumulator->Accumulate(std::vector<float>{0.0f}, 1e-50),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("float range")));
  EXPECT_EQ(accumulator->count(), 0u);
}

TEST(WeightedMeanTest, MergeThatCouldOverflowIsRejected) {
  std::unique_ptr<Strategy> strategy = MakeStrategy("fedavg");
  std::unique_ptr<UpdateAccumulator> left = strategy->NewAccumulator(1);
  std::unique_ptr<UpdateAccumulator> right = strategy->NewAccumulator(1);
  FEDGE_ASSERT_OK(left->Accumulate(std::vector<float>{2e38f}, 1));
  FEDGE_ASSERT_OK(right->Accumulate(std::vector<float>{2e38f}, 1));
  EXPECT_THAT(left->MergeWith(*right),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflow")));
  EXPECT_EQ(left->count(), 1u);
}

}  // namespace
}  // namespace fedge::aggregator
