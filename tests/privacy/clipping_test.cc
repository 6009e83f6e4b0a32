#include "fedge/privacy/clipping.h"

#include <vector>

#include "gtest/gtest.h"

namespace fedge::privacy {
namespace {

TEST(ClippingTest, NormOfAThreeFourVectorIsFive) {
  std::vector<float> v = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(L2Norm(v), 5.0);
}

TEST(ClippingTest, ScalesDownToTheBound) {
  std::vector<float> v = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(ClipL2(v, 1.0), 0.2);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  EXPECT_FLOAT_EQ(v[1], 0.8f);
  EXPECT_NEAR(L2Norm(v), 1.0, 1e-6);
}

TEST(ClippingTest, LeavesShortVectorsAlone) {
  std::vector<float> v = {0.3f, -0.4f};
  EXPECT_DOUBLE_EQ(ClipL2(v, 1.0), 1.0);
  EXPECT_EQ(v, (std::vector<float>{0.3f, -0.4f}));
}

TEST(ClippingDeathTest, NonPositiveBoundIsAProgrammerError) {
  std::vector<float> v = {1.0f};
  EXPECT_DEATH(ClipL2(v, 0.0), "");
}

}  // namespace
}  // namespace fedge::privacy
