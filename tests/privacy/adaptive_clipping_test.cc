#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fedge/privacy/clipping.h"
#include "fedge/privacy/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

// Runs `rounds` rounds of `per_round` updates whose norms come from
// `sample_norm`, and returns the mean clip norm over the last quarter.
template <typename SampleNorm>
double SettledClipNorm(AdaptiveClipper& clipper, SampleNorm sample_norm, int rounds, int per_round,
                       RandomSource& random) {
  double sum = 0.0;
  int counted = 0;
  for (int round = 0; round < rounds; ++round) {
    for (int i = 0; i < per_round; ++i) {
      const float norm = static_cast<float>(sample_norm());
      std::vector<float> update = {0.6f * norm, 0.8f * norm};  // ||update|| = norm
      const absl::StatusOr<double> factor = clipper.ClipAndRecord(update);
      EXPECT_TRUE(factor.ok()) << factor.status();
      EXPECT_LE(L2Norm(update), clipper.clip_norm() * (1 + 1e-6));
      EXPECT_LE(factor.value_or(2.0), 1.0);
    }
    EXPECT_TRUE(clipper.EndRound(random, per_round).ok());
    if (round >= rounds * 3 / 4) {
      sum += clipper.clip_norm();
      ++counted;
    }
  }
  return sum / counted;
}

TEST(AdaptiveClipperTest, ConvergesToMedianOfUniformNorms) {
  for (double noise : {0.0, 5.0}) {
    AdaptiveClipperOptions options;
    options.initial_clip_norm = 0.1;
    options.target_quantile = 0.5;
    options.count_noise_stddev = noise;
    FEDGE_ASSERT_OK_AND_ASSIGN(AdaptiveClipper clipper, AdaptiveClipper::Create(options));
    SeededRandom data(1), random(2);
    const double clip = SettledClipNorm(
        clipper, [&] { return 10.0 * UniformOpen01(data); }, 600, 100, random);
    EXPECT_NEAR(clip, 5.0, noise == 0.0 ? 0.3 : 0.6) << "count noise " << noise;
  }
}

TEST(AdaptiveClipperTest, ConvergesToUpperQuantileOfLognormalNorms) {
  // norms = exp(N(0, 0.5²)); the 0.9-quantile is exp(0.5 · 1.28155).
  const double expected = std::exp(0.5 * 1.2815516);
  for (double noise : {0.0, 5.0}) {
    AdaptiveClipperOptions options;
    options.initial_clip_norm = 10.0;
    options.target_quantile = 0.9;
    options.count_noise_stddev = noise;
    FEDGE_ASSERT_OK_AND_ASSIGN(AdaptiveClipper clipper, AdaptiveClipper::Create(options));
    SeededRandom data(3), random(4);
    const double clip = SettledClipNorm(
        clipper, [&] { return std::exp(0.5 * SampleStandardGaussian(data)); }, 600, 100, random);
    EXPECT_NEAR(clip, expected, (noise == 0.0 ? 0.08 : 0.15) * expected) << "count noise " << noise;
  }
}

TEST(AdaptiveClipperTest, EndRoundNeedsUpdates) {
  FEDGE_ASSERT_OK_AND_ASSIGN(AdaptiveClipper clipper, AdaptiveClipper::Create({}));
  SeededRandom random(1);
  EXPECT_THAT(clipper.EndRound(random, 2), StatusIs(absl::StatusCode::kFailedPrecondition));
  clipper.Record(true);
  clipper.Record(false);
  EXPECT_EQ(clipper.updates(), 2);
  EXPECT_EQ(clipper.within_clip(), 1);
  EXPECT_THAT(clipper.EndRound(random, 0.0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(clipper.updates(), 2);  // unchanged by the error
  FEDGE_ASSERT_OK_AND_ASSIGN(double fraction, clipper.EndRound(random, 2));
  EXPECT_DOUBLE_EQ(fraction, 0.5);
  EXPECT_DOUBLE_EQ(clipper.clip_norm(), 0.1);  // b̄ == γ: unchanged
  EXPECT_EQ(clipper.updates(), 0);
}

// The release is the one accounted (QuantileClipper::SumNoiseMultiplier
// assumes sensitivity 1/2 and std σ_b): b̄ = 1/2 + (Σ(b_i - 1/2) + noise) / m̄
// with m̄ the public expected cohort. Without noise, (b̄ - 1/2) m̄ is the
// released sum: adding or removing one update moves it by exactly 1/2. The
// old release, count / updates, moved by up to m̄/2 times that (here 5).
TEST(AdaptiveClipperTest, OneUpdateMovesTheReleasedCountByAtMostOneHalf) {
  constexpr double kExpected = 10.0;
  auto released = [&](const std::vector<bool>& bits) {
    AdaptiveClipper clipper = *AdaptiveClipper::Create({});  // count noise 0
    for (bool b : bits) clipper.Record(b);
    SeededRandom random(1);
    return (*clipper.EndRound(random, kExpected) - 0.5) * kExpected;
  };
  const std::vector<std::vector<bool>> neighbours[] = {
      {{true}, {true, false}}, {{true}, {true, true}}, {{false, false}, {false, false, true}},
      {{true, true, false, true}, {true, true, false}}};
  for (const auto& pair : neighbours) {
    EXPECT_NEAR(std::abs(released(pair[0]) - released(pair[1])), 0.5, 1e-12);
  }
}

// ... and the noise on it has std σ_b whatever the number of updates (5 of
// an expected 10 here; the old release scaled it by m̄ / updates = 2).
TEST(AdaptiveClipperTest, TheCountNoiseHasTheAccountedStd) {
  constexpr double kExpected = 10.0;
  constexpr double kSigma = 2.0;
  constexpr int kTrials = 4000;
  AdaptiveClipperOptions options;
  options.count_noise_stddev = kSigma;
  double sum = 0.0, sum_sq = 0.0;
  SeededRandom random(7);
  for (int t = 0; t < kTrials; ++t) {
    AdaptiveClipper clipper = *AdaptiveClipper::Create(options);
    for (bool b : {true, true, true, false, false}) clipper.Record(b);
    const double noise = (*clipper.EndRound(random, kExpected) - 0.5) * kExpected - 0.5;
    sum += noise;
    sum_sq += noise * noise;
  }
  const double mean = sum / kTrials;
  const double stddev = std::sqrt(sum_sq / kTrials - mean * mean);
  // The sample std of 4000 draws is within 5% of σ with probability > 0.998.
  EXPECT_NEAR(stddev, kSigma, 0.05 * kSigma);
  EXPECT_NEAR(mean, 0.0, 4 * kSigma / std::sqrt(kTrials));
}

TEST(AdaptiveClipperTest, SerializeRoundTrip) {
  FEDGE_ASSERT_OK_AND_ASSIGN(AdaptiveClipper clipper, AdaptiveClipper::Create({}));
  SeededRandom random(5);
  clipper.Record(false);
  FEDGE_ASSERT_OK(clipper.EndRound(random, 1));  // clip norm is now 0.1 · e^0.1
  clipper.Record(true);
  clipper.Record(false);
  clipper.Record(true);
  FEDGE_ASSERT_OK_AND_ASSIGN(AdaptiveClipper restored, AdaptiveClipper::Create({}));
  FEDGE_ASSERT_OK(restored.Restore(clipper.Serialize()));
  EXPECT_EQ(restored.clip_norm(), clipper.clip_norm());
  EXPECT_EQ(restored.updates(), 3);
  EXPECT_EQ(restored.within_clip(), 2);
  EXPECT_EQ(restored.Serialize(), clipper.Serialize());

  const std::string before = restored.Serialize();
  for (const char* bad : {"", "fedge.adaptive_clipper.v1", "fedge.adaptive_clipper.v1 1 2",
                          "fedge.adaptive_clipper.v1 1 2 3", "fedge.adaptive_clipper.v1 -1 2 1",
                          "fedge.adaptive_clipper.v1 1 2 1 9", "other 1 2 1"}) {
    EXPECT_THAT(restored.Restore(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_EQ(restored.Serialize(), before);
}

TEST(AdaptiveClipperTest, ValidatesEachField) {
  using absl::StatusCode::kInvalidArgument;
  AdaptiveClipperOptions options;
  options.initial_clip_norm = 0.0;
  EXPECT_THAT(AdaptiveClipper::Create(options),
              StatusIs(kInvalidArgument, HasSubstr("initial_clip_norm")));
  options = {};
  options.target_quantile = 1.5;
  EXPECT_THAT(AdaptiveClipper::Create(options),
              StatusIs(kInvalidArgument, HasSubstr("target_quantile")));
  options = {};
  options.learning_rate = -0.1;
  EXPECT_THAT(AdaptiveClipper::Create(options),
              StatusIs(kInvalidArgument, HasSubstr("learning_rate")));
  options = {};
  options.count_noise_stddev = -1.0;
  EXPECT_THAT(AdaptiveClipper::Create(options),
              StatusIs(kInvalidArgument, HasSubstr("count_noise_stddev")));
}

}  // namespace
}  // namespace fedge::privacy
