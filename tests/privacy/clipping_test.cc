#include "fedge/privacy/clipping.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

TEST(ClippingTest, NormOfAThreeFourVectorIsFive) {
  std::vector<float> v = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(L2Norm(v), 5.0);
}

TEST(ClippingTest, ScalesDownToTheBound) {
  std::vector<float> v = {3.0f, 4.0f};
  EXPECT_NEAR(*ClipL2(v, 1.0), 0.2, 1e-6);
  EXPECT_NEAR(v[0], 0.6f, 1e-6);
  EXPECT_NEAR(v[1], 0.8f, 1e-6);
  EXPECT_NEAR(L2Norm(v), 1.0, 2e-6);
  EXPECT_LE(L2Norm(v), 1.0);  // a sensitivity bound: never above, even by rounding
}

TEST(ClippingTest, ClippedNormNeverExceedsTheBound) {
  // Vectors whose float-rounded scaled entries would round up past the bound
  // without the safety shrink.
  for (int n = 1; n <= 200; ++n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) v[i] = 0.1f + 0.37f * static_cast<float>(i % 7);
    const double bound = 0.3 + 0.01 * n;
    std::vector<float> w = v;
    ASSERT_TRUE(ClipL2(v, bound).ok());
    EXPECT_LE(L2Norm(v), bound) << n;
    ASSERT_TRUE(ClipL1(w, bound).ok());
    EXPECT_LE(L1Norm(w), bound) << n;
  }
}

TEST(ClippingTest, L1NormAndClip) {
  std::vector<float> v = {3.0f, -1.0f};
  EXPECT_DOUBLE_EQ(L1Norm(v), 4.0);
  EXPECT_NEAR(*ClipL1(v, 2.0), 0.5, 1e-6);
  EXPECT_NEAR(v[0], 1.5f, 1e-5);
  EXPECT_NEAR(v[1], -0.5f, 1e-5);
  std::vector<float> short_vector = {0.5f, -0.25f};
  EXPECT_DOUBLE_EQ(*ClipL1(short_vector, 1.0), 1.0);
  EXPECT_EQ(short_vector, (std::vector<float>{0.5f, -0.25f}));
}

TEST(ClippingTest, LeavesShortVectorsAlone) {
  std::vector<float> v = {0.3f, -0.4f};
  EXPECT_DOUBLE_EQ(*ClipL2(v, 1.0), 1.0);
  EXPECT_EQ(v, (std::vector<float>{0.3f, -0.4f}));
}

// The bound can come from the network (a task's clip norm): a bad one is an
// error naming it, and the values are left as they were (it used to abort).
TEST(ClippingTest, ABoundThatIsNotPositiveAndFiniteIsAnErrorNotAnAbort) {
  for (double bound : {0.0, -1.0, std::nan(""), static_cast<double>(INFINITY)}) {
    std::vector<float> v = {3.0f, 4.0f};
    EXPECT_THAT(ClipL2(v, bound).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clip bound"))) << bound;
    EXPECT_THAT(ClipL1(v, bound).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clip bound"))) << bound;
    EXPECT_EQ(v, (std::vector<float>{3.0f, 4.0f}));
  }
}

}  // namespace
}  // namespace fedge::privacy
