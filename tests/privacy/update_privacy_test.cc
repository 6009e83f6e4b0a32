#include "fedge/privacy/update_privacy.h"

#include <cmath>
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

struct Moments {
  double mean = 0.0;
  double variance = 0.0;
};

Moments MomentsOf(const std::vector<float>& values, double offset) {
  Moments m;
  for (float v : values) m.mean += v - offset;
  m.mean /= static_cast<double>(values.size());
  for (float v : values) m.variance += (v - offset - m.mean) * (v - offset - m.mean);
  m.variance /= static_cast<double>(values.size() - 1);
  return m;
}

TEST(PrivacyModeTest, NamesRoundTripAndUnknownIsListed) {
  for (PrivacyMode mode : {PrivacyMode::kNone, PrivacyMode::kCentral, PrivacyMode::kLocal,
                           PrivacyMode::kDistributed}) {
    EXPECT_EQ(*ParsePrivacyMode(PrivacyModeName(mode)), mode);
  }
  EXPECT_THAT(ParsePrivacyMode("global"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("central, local")));
}

TEST(PrivatizeUpdateTest, ClipsWithoutNoise) {
  ClientPrivacy privacy;
  privacy.clip_norm = 1.0;
  std::vector<float> update = {3.0f, 4.0f};
  SeededRandom random(1);
  FEDGE_ASSERT_OK_AND_ASSIGN(PrivatizedUpdate result, PrivatizeUpdate(privacy, update, random));
  EXPECT_DOUBLE_EQ(result.norm_before_clip, 5.0);
  EXPECT_FALSE(result.within_bound);
  EXPECT_LE(L2Norm(update), 1.0);
}

TEST(PrivatizeUpdateTest, GaussianNoiseHasTheCalibratedStd) {
  // A zero update: what comes back is the noise alone, N(0, (z C)^2).
  ClientPrivacy privacy;
  privacy.clip_norm = 0.5;
  privacy.mechanism = "gaussian";
  privacy.noise_multiplier = 2.0;
  std::vector<float> update(200'000, 0.0f);
  SeededRandom random(42);
  FEDGE_ASSERT_OK_AND_ASSIGN(PrivatizedUpdate result, PrivatizeUpdate(privacy, update, random));
  EXPECT_TRUE(result.within_bound);
  const Moments m = MomentsOf(update, 0.0);
  // Standard errors: std/sqrt(n) = 0.0022 for the mean, ~0.3% for the variance.
  EXPECT_NEAR(m.mean, 0.0, 0.01);
  EXPECT_NEAR(m.variance, 1.0, 0.02);
}

TEST(PrivatizeUpdateTest, DiscreteGaussianIsUnbiasedOnTheFixedPointGrid) {
  // Every coordinate 0.3 (a vector within the bound); scale 10: the grid is
  // 0.1, and stochastic rounding plus integer noise keep the mean at 0.3.
  const size_t d = 100'000;
  ClientPrivacy privacy;
  privacy.clip_norm = 0.3 * std::sqrt(static_cast<double>(d)) * 1.001;
  privacy.mechanism = "discrete-gaussian";
  privacy.noise_multiplier = 0.01;
  privacy.integer_scale = 10.0;
  std::vector<float> update(d, 0.3f);
  SeededRandom random(5);
  FEDGE_ASSERT_OK_AND_ASSIGN(PrivatizedUpdate result, PrivatizeUpdate(privacy, update, random));
  EXPECT_TRUE(result.within_bound);
  for (size_t i = 0; i < d; i += 997) {
    const double grid = update[i] * 10.0;
    EXPECT_NEAR(grid, std::round(grid), 1e-3) << i;  // on the 1/γ grid
  }
  // Integer noise std = z · (γC + √d) = 0.01 · (10·94.9 + 316) = 12.7 grid
  // steps, i.e. 1.27 in update units; variance 1.6.
  const double sensitivity = IntegerSensitivity(privacy.clip_norm, 10.0, d);
  EXPECT_NEAR(sensitivity, 10.0 * privacy.clip_norm + std::sqrt(static_cast<double>(d)), 1e-9);
  const double expected_std = 0.01 * sensitivity / 10.0;
  const Moments m = MomentsOf(update, 0.3);
  EXPECT_NEAR(m.mean, 0.0, 5.0 * expected_std / std::sqrt(static_cast<double>(d)) + 1e-3);
  EXPECT_NEAR(m.variance, expected_std * expected_std, 0.03 * expected_std * expected_std);
}

TEST(PrivatizeUpdateTest, LaplaceNeedsAnL1Clip) {
  ClientPrivacy privacy;
  privacy.clip_norm = 1.0;
  privacy.norm = 2;
  privacy.mechanism = "laplace";
  privacy.noise_multiplier = 1.0;
  std::vector<float> update = {0.1f, 0.2f};
  SeededRandom random(1);
  EXPECT_THAT(PrivatizeUpdate(privacy, update, random),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("L1")));
  EXPECT_EQ(update, (std::vector<float>{0.1f, 0.2f}));
  privacy.norm = 1;
  EXPECT_TRUE(PrivatizeUpdate(privacy, update, random).ok());
  EXPECT_NE(update, (std::vector<float>{0.1f, 0.2f}));
}

TEST(PrivatizeUpdateTest, BadParametersChangeNothing) {
  const std::vector<float> original = {3.0f, 4.0f};
  SeededRandom random(1);
  auto expect_refused = [&](const ClientPrivacy& privacy, const std::string& message) {
    std::vector<float> update = original;
    EXPECT_THAT(PrivatizeUpdate(privacy, update, random),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)));
    EXPECT_EQ(update, original);
  };
  ClientPrivacy privacy;
  privacy.clip_norm = -1.0;
  expect_refused(privacy, "clip_norm");
  privacy = {};
  privacy.mechanism = "gaussian";
  privacy.noise_multiplier = 1.0;
  expect_refused(privacy, "clip_norm > 0");
  privacy.clip_norm = 1.0;
  privacy.noise_multiplier = 0.0;
  expect_refused(privacy, "noise_multiplier");
  privacy.noise_multiplier = 1.0;
  privacy.mechanism = "discrete-gaussian";
  expect_refused(privacy, "integer_scale");
  privacy.integer_scale = 1e300;
  expect_refused(privacy, "too large");  // γC beyond exact integers
  privacy.integer_scale = 1e6;
  expect_refused(privacy, "integer noise std");  // z · (γC + √d) beyond the sampler
  privacy.mechanism = "gaussian";
  privacy.norm = 0;
  expect_refused(privacy, "norm type");
}

TEST(PrivatizeUpdateTest, SameSeedSameNoise) {
  ClientPrivacy privacy;
  privacy.clip_norm = 1.0;
  privacy.mechanism = "gaussian";
  privacy.noise_multiplier = 1.0;
  std::vector<float> a(100, 0.01f), b(100, 0.01f);
  SeededRandom ra(9), rb(9);
  ASSERT_TRUE(PrivatizeUpdate(privacy, a, ra).ok());
  ASSERT_TRUE(PrivatizeUpdate(privacy, b, rb).ok());
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace fedge::privacy
