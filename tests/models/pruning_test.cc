#include "fedge/models/pruning.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"
#include "test_layouts.h"

namespace fedge::models {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

// A small conv net's layout: conv [8,1,3,3], conv [16,8,3,3], fc [10,64].
std::vector<ParameterLayout> SmallLayout() {
  return testing_layouts::LayoutOf({{"conv1.weight", {8, 1, 3, 3}},
                                    {"conv1.bias", {8}},
                                    {"conv2.weight", {16, 8, 3, 3}},
                                    {"conv2.bias", {16}},
                                    {"fc.weight", {10, 64}},
                                    {"fc.bias", {10}}});
}

std::vector<float> RandomValues(const std::vector<ParameterLayout>& layout, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(LayoutSize(layout)));
  for (float& v : values) v = normal(rng);
  return values;
}

int64_t WeightCount(const std::vector<ParameterLayout>& layout) {
  int64_t n = 0;
  for (const auto& p : layout) n += p.shape.size() >= 2 ? p.numel : 0;
  return n;
}

int64_t ZeroWeights(const std::vector<ParameterLayout>& layout, const std::vector<float>& values) {
  int64_t zeros = 0;
  for (const auto& p : layout) {
    if (p.shape.size() < 2) continue;
    for (int64_t i = p.offset; i < p.offset + p.numel; ++i) zeros += values[i] == 0.0f ? 1 : 0;
  }
  return zeros;
}

TEST(PruningScheduleTest, FollowsZhuAndGuptasCubic) {
  PruningOptions options;
  options.target_sparsity = 0.8;
  options.begin_round = 5;
  options.end_round = 25;
  EXPECT_EQ(ScheduledSparsity(options, 1), 0.0);
  EXPECT_EQ(ScheduledSparsity(options, 4), 0.0);
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 5), 0.0);
  // Halfway: 0.8 (1 - 0.5^3) = 0.7.
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 15), 0.7);
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 10), 0.8 * (1 - 0.75 * 0.75 * 0.75));
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 25), 0.8);
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 1000), 0.8);
  // Rising, fast at first and ever more slowly near the target.
  double previous_step = INFINITY;
  for (int64_t t = 6; t <= 25; ++t) {
    const double step = ScheduledSparsity(options, t) - ScheduledSparsity(options, t - 1);
    EXPECT_GT(step, 0.0) << t;
    EXPECT_LT(step, previous_step) << t;
    previous_step = step;
  }
}

TEST(PruningScheduleTest, FrequencyHoldsBetweenStepsAndInitialSparsityStarts) {
  PruningOptions options;
  options.target_sparsity = 0.9;
  options.initial_sparsity = 0.5;
  options.begin_round = 1;
  options.end_round = 9;
  options.frequency = 4;
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 1), 0.5);
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 4), 0.5);
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 5), 0.9 - 0.4 * 0.125);
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 8), 0.9 - 0.4 * 0.125);
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 9), 0.9);

  options.end_round = options.begin_round;  // all at once
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 1), 0.9);
}

TEST(PruningOptionsTest, EachFieldIsValidated) {
  const auto refused = [](PruningOptions o, const std::string& field) {
    EXPECT_THAT(ValidatePruningOptions(o),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
    EXPECT_THAT(MagnitudePruner::Create(o, SmallLayout()).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
  };
  PruningOptions o;
  o.target_sparsity = 1.0;
  refused(o, "target_sparsity");
  o = {};
  o.target_sparsity = -0.1;
  refused(o, "target_sparsity");
  o = {};
  o.target_sparsity = 0.5;
  o.initial_sparsity = 0.6;
  refused(o, "initial_sparsity");
  o = {};
  o.begin_round = 0;
  refused(o, "begin_round");
  o = {};
  o.begin_round = 5;
  o.end_round = 4;
  refused(o, "end_round");
  o = {};
  o.frequency = 0;
  refused(o, "frequency");
  EXPECT_THAT(ValidatePruningOptions(PruningOptions{}), IsOk());

  const std::vector<ParameterLayout> biases_only = {{"b", {4}, 0, 4}};
  EXPECT_THAT(MagnitudePruner::Create(PruningOptions{}, biases_only).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no weight tensor")));
  PruningOptions structured;
  structured.structured = true;
  const std::vector<ParameterLayout> classifier_only = {{"fc.weight", {3, 4}, 0, 12}};
  EXPECT_THAT(MagnitudePruner::Create(structured, classifier_only).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("before the classifier")));
}

TEST(MagnitudePrunerTest, ReachesTheTargetWithTheSmallestWeightsAndSparesBiases) {
  const auto layout = SmallLayout();
  std::vector<float> values = RandomValues(layout, 1);
  const std::vector<float> original = values;
  PruningOptions options;
  options.target_sparsity = 0.8;
  FEDGE_ASSERT_OK_AND_ASSIGN(MagnitudePruner pruner, MagnitudePruner::Create(options, layout));
  ASSERT_THAT(pruner.Prune(1, values), IsOk());
  const int64_t n = WeightCount(layout);
  EXPECT_EQ(ZeroWeights(layout, values), std::llround(0.8 * n));
  EXPECT_NEAR(pruner.sparsity(), 0.8, 0.5 / n);
  float largest_pruned = 0.0f, smallest_kept = INFINITY;
  for (const auto& p : layout) {
    for (int64_t i = p.offset; i < p.offset + p.numel; ++i) {
      if (p.shape.size() < 2) {
        EXPECT_EQ(values[i], original[i]) << p.name;  // biases untouched
        EXPECT_EQ(pruner.kept()[i], 1);
      } else if (values[i] == 0.0f) {
        largest_pruned = std::max(largest_pruned, std::fabs(original[i]));
        EXPECT_EQ(pruner.kept()[i], 0);
      } else {
        smallest_kept = std::min(smallest_kept, std::fabs(original[i]));
        EXPECT_EQ(values[i], original[i]);
      }
    }
  }
  EXPECT_LE(largest_pruned, smallest_kept);  // one global threshold
}

TEST(MagnitudePrunerTest, GradualMasksOnlyGrowAndStayApplied) {
  const auto layout = SmallLayout();
  std::vector<float> values = RandomValues(layout, 2);
  PruningOptions options;
  options.target_sparsity = 0.75;
  options.begin_round = 1;
  options.end_round = 7;
  options.frequency = 2;
  FEDGE_ASSERT_OK_AND_ASSIGN(MagnitudePruner pruner, MagnitudePruner::Create(options, layout));
  std::mt19937 rng(3);
  std::normal_distribution<float> step(0.0f, 0.5f);
  std::vector<uint8_t> previous(values.size(), 1);
  for (int64_t round = 1; round <= 9; ++round) {
    ASSERT_THAT(pruner.Prune(round, values), IsOk());
    const std::vector<uint8_t> kept(pruner.kept().begin(), pruner.kept().end());
    for (size_t i = 0; i < kept.size(); ++i) {
      ASSERT_LE(kept[i], previous[i]) << "round " << round << ": entry " << i << " revived";
      if (!kept[i]) {
        ASSERT_EQ(values[i], 0.0f);
      }
    }
    EXPECT_EQ(ZeroWeights(layout, values),
              std::llround(ScheduledSparsity(options, round) * WeightCount(layout)))
        << round;
    previous = kept;
    // A round of training (and a server optimizer's momentum) moves every
    // entry, pruned ones too; the next Prune must zero them again.
    for (float& v : values) v += step(rng);
  }
  EXPECT_DOUBLE_EQ(ScheduledSparsity(options, 9), 0.75);
}

TEST(MagnitudePrunerTest, StructuredRemovesWholeChannelsWithTheirBiases) {
  const auto layout = SmallLayout();
  std::vector<float> values = RandomValues(layout, 4);
  // Make conv2 channel 3 and conv1 channel 5 clearly the weakest, and conv2
  // as a whole 100x larger than conv1: each layer still loses half.
  for (int64_t i = 0; i < 9; ++i) values[layout[0].offset + 5 * 9 + i] *= 1e-3f;
  for (int64_t i = 0; i < 72; ++i) values[layout[2].offset + i] *= 100.0f;
  for (int64_t i = 0; i < 72; ++i) values[layout[2].offset + 3 * 72 + i] *= 1e-3f;
  const std::vector<float> original = values;
  PruningOptions options;
  options.target_sparsity = 0.5;
  options.structured = true;
  FEDGE_ASSERT_OK_AND_ASSIGN(MagnitudePruner pruner, MagnitudePruner::Create(options, layout));
  ASSERT_THAT(pruner.Prune(1, values), IsOk());
  EXPECT_EQ(pruner.pruned_channels(), 12);  // half of conv1's 8 + conv2's 16
  const auto row_pruned = [&](const ParameterLayout& w, int64_t row) {
    const int64_t size = w.numel / w.shape[0];
    bool all = true, any = false;
    for (int64_t i = 0; i < size; ++i) {
      const bool zero = values[w.offset + row * size + i] == 0.0f;
      all = all && zero;
      any = any || zero;
    }
    EXPECT_EQ(all, any) << w.name << " row " << row << " is partly pruned";
    return all;
  };
  EXPECT_TRUE(row_pruned(layout[0], 5));
  EXPECT_TRUE(row_pruned(layout[2], 3));
  int64_t pruned_weights = 0;
  for (int t : {0, 2}) {
    const ParameterLayout& w = layout[t];
    const ParameterLayout& b = layout[t + 1];
    int kept_rows = 0;
    double largest_pruned = 0.0, smallest_kept = INFINITY;
    const int64_t size = w.numel / w.shape[0];
    for (int64_t r = 0; r < w.shape[0]; ++r) {
      const bool pruned = row_pruned(w, r);
      EXPECT_EQ(values[b.offset + r] == 0.0f, pruned) << b.name << " " << r;
      kept_rows += pruned ? 0 : 1;
      pruned_weights += pruned ? size : 0;
      double norm = 0.0;
      for (int64_t i = 0; i < size; ++i) {
        norm += std::pow(original[w.offset + r * size + i], 2.0);
      }
      (pruned ? largest_pruned : smallest_kept) =
          pruned ? std::max(largest_pruned, norm) : std::min(smallest_kept, norm);
    }
    EXPECT_EQ(kept_rows, w.shape[0] / 2) << w.name;      // the same fraction of every layer
    EXPECT_LE(largest_pruned, smallest_kept) << w.name;  // the weakest ones within it
  }
  // The classifier keeps every class.
  for (int64_t i = layout[4].offset; i < layout[4].offset + layout[4].numel; ++i) {
    EXPECT_EQ(values[i], original[i]);
  }
  EXPECT_DOUBLE_EQ(pruner.sparsity(),
                   static_cast<double>(pruned_weights) / static_cast<double>(WeightCount(layout)));
}

TEST(MagnitudePrunerTest, StructuredKeepsOneChannelPerLayerAtHighSparsity) {
  // conv1: 8 rows, conv2: 16; at 0.99 each keeps exactly one.
  const auto layout = SmallLayout();
  std::vector<float> values = RandomValues(layout, 5);
  PruningOptions options;
  options.target_sparsity = 0.99;
  options.structured = true;
  FEDGE_ASSERT_OK_AND_ASSIGN(MagnitudePruner pruner, MagnitudePruner::Create(options, layout));
  ASSERT_THAT(pruner.Prune(1, values), IsOk());
  EXPECT_EQ(pruner.pruned_channels(), 22);  // 24 channels, one per layer survives
}

TEST(MagnitudePrunerTest, RefusesAWrongSizeAndChangesNothing) {
  const auto layout = SmallLayout();
  PruningOptions options;
  options.target_sparsity = 0.5;
  FEDGE_ASSERT_OK_AND_ASSIGN(MagnitudePruner pruner, MagnitudePruner::Create(options, layout));
  std::vector<float> values(static_cast<size_t>(LayoutSize(layout)) - 1, 1.0f);
  EXPECT_THAT(pruner.Prune(1, values), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(pruner.sparsity(), 0.0);
  EXPECT_TRUE(std::all_of(values.begin(), values.end(), [](float v) { return v == 1.0f; }));
}

}  // namespace
}  // namespace fedge::models
