#include "fedge/privacy/clipper.h"

#include <cmath>
#include <memory>
#include <vector>

#include "fedge/privacy/clipping.h"
#include "fedge/privacy/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ClipperRegistryTest, ListsBuiltInsAndRejectsUnknown) {
  EXPECT_THAT(RegisteredClippers(), ElementsAre("adaptive", "fixed"));
  EXPECT_THAT(CreateClipper("percentile", {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("adaptive, fixed")));
}

TEST(ClipperOptionsTest, ValidatesEachField) {
  ClipperOptions options;
  options.clip_norm = 0.0;
  EXPECT_THAT(CreateClipper("fixed", options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clip_norm")));
  options = {};
  options.norm = 3;
  EXPECT_THAT(CreateClipper("fixed", options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("norm")));
  options = {};
  options.count_noise_stddev = 0.0;
  EXPECT_THAT(CreateClipper("adaptive", options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("count_noise_stddev")));
  options = {};
  options.target_quantile = 1.5;
  EXPECT_THAT(CreateClipper("adaptive", options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("target_quantile")));
}

TEST(FixedClipperTest, ClipsInTheConfiguredNormAndNeverMoves) {
  ClipperOptions options;
  options.clip_norm = 2.0;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto l2, CreateClipper("fixed", options));
  std::vector<float> long_update = {3.0f, 4.0f};
  EXPECT_FALSE(*l2->Clip(long_update));
  EXPECT_LE(L2Norm(long_update), 2.0);
  EXPECT_NEAR(L2Norm(long_update), 2.0, 1e-5);
  std::vector<float> short_update = {0.5f, 0.5f};
  EXPECT_TRUE(*l2->Clip(short_update));
  EXPECT_EQ(short_update, (std::vector<float>{0.5f, 0.5f}));

  options.norm = 1;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto l1, CreateClipper("fixed", options));
  std::vector<float> update = {1.5f, -1.5f};  // L2 2.12 > 2, L1 3 > 2
  EXPECT_FALSE(*l1->Clip(update));
  EXPECT_LE(L1Norm(update), 2.0);

  SeededRandom random(1);
  l2->Record(false);
  FEDGE_ASSERT_OK_AND_ASSIGN(const double next, l2->EndRound(random, 1));
  EXPECT_EQ(next, 2.0);
  FEDGE_ASSERT_OK_AND_ASSIGN(const double z, l2->SumNoiseMultiplier(1.3));
  EXPECT_EQ(z, 1.3);
}

TEST(AdaptiveClipperPluginTest, TracksTheMedianOfUniformNorms) {
  // Norms uniform on [0, 4]: the median is 2. Andrew et al.'s update moves
  // the bound geometrically towards it from far away.
  ClipperOptions options;
  options.clip_norm = 0.05;
  options.target_quantile = 0.5;
  options.learning_rate = 0.2;
  options.count_noise_stddev = 1.0;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto clipper, CreateClipper("adaptive", options));
  SeededRandom random(7);
  for (int round = 0; round < 300; ++round) {
    for (int i = 0; i < 100; ++i) {
      const float norm = static_cast<float>(4.0 * UniformOpen01(random));
      std::vector<float> update = {norm, 0.0f};
      FEDGE_ASSERT_OK_AND_ASSIGN(const bool within, clipper->Clip(update));
      clipper->Record(within);
      EXPECT_LE(L2Norm(update), clipper->clip_norm());
    }
    ASSERT_THAT(clipper->EndRound(random, 100).status(), IsOk());
  }
  EXPECT_NEAR(clipper->clip_norm(), 2.0, 0.25);
}

TEST(AdaptiveClipperPluginTest, EndRoundWithoutUpdatesKeepsTheBound) {
  ClipperOptions options;
  options.clip_norm = 0.7;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto clipper, CreateClipper("adaptive", options));
  SeededRandom random(3);
  FEDGE_ASSERT_OK_AND_ASSIGN(const double next, clipper->EndRound(random, 10));
  EXPECT_EQ(next, 0.7);
}

TEST(AdaptiveClipperPluginTest, SumNoiseFollowsAndrewEtAlTheoremOne) {
  ClipperOptions options;
  options.count_noise_stddev = 5.0;  // 2 sigma_b = 10
  FEDGE_ASSERT_OK_AND_ASSIGN(auto clipper, CreateClipper("adaptive", options));
  FEDGE_ASSERT_OK_AND_ASSIGN(const double z_sum, clipper->SumNoiseMultiplier(1.0));
  // (1 - 1/100)^(-1/2)
  EXPECT_NEAR(z_sum, 1.0 / std::sqrt(0.99), 1e-12);
  // Together the two releases cost what one with multiplier 1 costs.
  EXPECT_NEAR(1.0 / (z_sum * z_sum) + 1.0 / 100.0, 1.0, 1e-12);
  EXPECT_THAT(clipper->SumNoiseMultiplier(10.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("count noise")));
}

TEST(AdaptiveClipperPluginTest, StateRoundTripsAndGarbageChangesNothing) {
  ClipperOptions options;
  options.clip_norm = 1.0;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto clipper, CreateClipper("adaptive", options));
  clipper->Record(true);
  clipper->Record(false);
  const std::string state = clipper->Serialize();
  FEDGE_ASSERT_OK_AND_ASSIGN(auto restored, CreateClipper("adaptive", options));
  ASSERT_THAT(restored->Restore(state), IsOk());
  SeededRandom a(11), b(11);
  EXPECT_EQ(*clipper->EndRound(a, 2), *restored->EndRound(b, 2));
  const std::string before = restored->Serialize();
  EXPECT_THAT(restored->Restore("fedge.fixed_clipper.v1"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(restored->Serialize(), before);
}

}  // namespace
}  // namespace fedge::privacy
