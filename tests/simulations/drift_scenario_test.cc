#include "fedge/data/drift_scenario.h"

#include <algorithm>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::data {
namespace {


using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

// Two 1x4x4 uint8 images: a single bright pixel at the top-right corner, and
// an all-255 one.
Dataset Images() {
  Dataset d;
  d.example_shape = {1, 4, 4};
  d.num_classes = 10;
  d.pixels.assign(32, 0);
  d.pixels[3] = 200;
  std::fill(d.pixels.begin() + 16, d.pixels.end(), 255);
  d.labels = {0, 6};
  return d;
}

DriftScenarioOptions Of(const std::string& type) {
  DriftScenarioOptions o;
  o.type = type;
  return o;
}

TEST(DriftScenarioTest, RotationMovesPixelsAboutTheCentre) {
  DriftScenarioOptions o = Of("rotation");
  o.rotation_degrees = 90;
  auto rotated = MakeDriftedCopy(Images(), o, 1);
  ASSERT_TRUE(rotated.ok());
  // A quarter turn takes the top-right corner to the bottom-right one.
  EXPECT_EQ(rotated->pixels[15], 200);
  EXPECT_EQ(std::accumulate(rotated->pixels.begin(), rotated->pixels.begin() + 16, 0), 200);
  EXPECT_EQ(rotated->labels, Images().labels);
  o.rotation_degrees = 360;
  auto full = MakeDriftedCopy(Images(), o, 1);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->pixels, Images().pixels);
}

TEST(DriftScenarioTest, RotationOfVectorsPreservesNorms) {
  Dataset d;
  d.example_shape = {4};
  d.num_classes = 2;
  d.values = {1, 0, 3, 4};
  d.labels = {1};
  DriftScenarioOptions o = Of("rotation");
  o.rotation_degrees = 90;
  auto rotated = MakeDriftedCopy(d, o, 1);
  ASSERT_TRUE(rotated.ok());
  EXPECT_NEAR(rotated->values[0], 0.0f, 1e-6);
  EXPECT_NEAR(rotated->values[1], 1.0f, 1e-6);
  EXPECT_NEAR(rotated->values[2], -4.0f, 1e-6);
  EXPECT_NEAR(rotated->values[3], 3.0f, 1e-6);
}

TEST(DriftScenarioTest, NoiseIsSeededAndScaledToTheRange) {
  Dataset d = Images();
  std::fill(d.pixels.begin(), d.pixels.end(), 128);
  d.pixels.resize(16 * 200, 128);
  d.labels.resize(200, 0);
  DriftScenarioOptions o = Of("noise");
  o.noise_std = 0.1;
  auto a = MakeDriftedCopy(d, o, 5), b = MakeDriftedCopy(d, o, 5), c = MakeDriftedCopy(d, o, 6);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->pixels, b->pixels);
  EXPECT_NE(a->pixels, c->pixels);
  double sq = 0;
  for (uint8_t p : a->pixels) sq += (p - 128.0) * (p - 128.0);
  EXPECT_NEAR(std::sqrt(sq / a->pixels.size()), 25.5, 2.0);
}

TEST(DriftScenarioTest, BrightnessContrastMapsValues) {
  DriftScenarioOptions o = Of("brightness-contrast");
  o.contrast = 0.5;
  o.brightness = 0.2;
  auto out = MakeDriftedCopy(Images(), o, 1);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->pixels[0], std::lround(0.5 * (0 - 127.5) + 127.5 + 51));
  EXPECT_EQ(out->pixels[16], std::lround(0.5 * (255 - 127.5) + 127.5 + 51));
}

TEST(DriftScenarioTest, OcclusionZeroesOneSquarePerExample) {
  DriftScenarioOptions o = Of("occlusion");
  o.occlusion_size = 2;
  auto out = MakeDriftedCopy(Images(), o, 1);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(std::count(out->pixels.begin() + 16, out->pixels.end(), 0), 4);
  o.occlusion_size = 5;
  EXPECT_THAT(MakeDriftedCopy(Images(), o, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("drift.occlusion_size 5")));
}

TEST(DriftScenarioTest, LabelSwapExchangesTwoClasses) {
  auto out = MakeDriftedCopy(Images(), Of("label-swap"), 1);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->labels, (std::vector<int32_t>{6, 0}));
  EXPECT_EQ(out->pixels, Images().pixels);
  DriftScenarioOptions o = Of("label-swap");
  o.swap_b = 10;
  EXPECT_THAT(MakeDriftedCopy(Images(), o, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("class 10")));
  o.swap_b = 0;
  EXPECT_THAT(MakeDriftedCopy(Images(), o, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must differ")));
}

TEST(DriftScenarioTest, ChoosesTheRequestedShareOfClients) {
  const std::vector<bool> a = ChooseDriftedClients(100, 0.3, 9);
  EXPECT_EQ(std::count(a.begin(), a.end(), true), 30);
  EXPECT_EQ(a, ChooseDriftedClients(100, 0.3, 9));
  EXPECT_NE(a, ChooseDriftedClients(100, 0.3, 10));
  const std::vector<bool> one = ChooseDriftedClients(5, 0.01, 9);
  EXPECT_EQ(std::count(one.begin(), one.end(), true), 1);
}

TEST(DriftScenarioTest, SuddenAndGradualShares) {
  DriftScenarioOptions o = Of("rotation");
  o.round = 10;
  EXPECT_EQ(DriftedShare(o, 9), 0.0);
  EXPECT_EQ(DriftedShare(o, 10), 1.0);
  o.mode = "gradual";
  o.gradual_rounds = 4;
  EXPECT_EQ(DriftedShare(o, 9), 0.0);
  EXPECT_EQ(DriftedShare(o, 10), 0.25);
  EXPECT_EQ(DriftedShare(o, 12), 0.75);
  EXPECT_EQ(DriftedShare(o, 20), 1.0);
  EXPECT_EQ(DriftedShare(Of("none"), 20), 0.0);
  // The drifted examples at a share are a subset of those at a larger share.
  int at_quarter = 0, at_half = 0;
  for (int32_t i = 0; i < 10000; ++i) {
    const bool q = ExampleDrifted(i, 0.25, 3), h = ExampleDrifted(i, 0.5, 3);
    EXPECT_TRUE(!q || h);
    at_quarter += q;
    at_half += h;
  }
  EXPECT_NEAR(at_quarter, 2500, 200);
  EXPECT_NEAR(at_half, 5000, 200);
}

TEST(DriftScenarioTest, LabelShiftSkewsClassShares) {
  std::vector<int32_t> labels(1000);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>(i % 10);
  const std::vector<int32_t> picked = LabelShiftIndices(labels, 10, 500, 0.2, 4);
  ASSERT_EQ(picked.size(), 500u);
  EXPECT_EQ(picked, LabelShiftIndices(labels, 10, 500, 0.2, 4));
  std::vector<int> counts(10, 0);
  for (int32_t i : picked) ++counts[labels[i]];
  // Uniform priors would give 50 per class; Dirichlet(0.2) concentrates them.
  EXPECT_GT(*std::max_element(counts.begin(), counts.end()), 150);
}

}  // namespace
}  // namespace fedge::data
