#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "fedge/privacy/secagg/crypto.h"
#include "fedge/privacy/secagg/fixed_point.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy::secagg {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

FixedPointCodec MakeCodec(double bound, int clients,
                          FixedPointRounding rounding = FixedPointRounding::kStochastic) {
  FixedPointOptions options;
  options.clip_bound = bound;
  options.num_clients = clients;
  options.rounding = rounding;
  absl::StatusOr<FixedPointCodec> codec = FixedPointCodec::Create(options);
  EXPECT_TRUE(codec.ok()) << codec.status();
  return *codec;
}

std::vector<std::vector<float>> RandomUpdates(int clients, std::size_t dimension, double bound,
                                              std::uint32_t seed) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> value(static_cast<float>(-bound),
                                              static_cast<float>(bound));
  std::vector<std::vector<float>> updates(static_cast<std::size_t>(clients),
                                          std::vector<float>(dimension));
  for (auto& update : updates) {
    for (float& v : update) v = value(engine);
  }
  return updates;
}

TEST(FixedPointTest, ScaleFollowsTheDocumentedFormula) {
  const FixedPointCodec codec = MakeCodec(0.5, 4);
  EXPECT_EQ(codec.scale(), std::ldexp(1.0, 30) / (4 * 0.5));
  EXPECT_EQ(codec.max_encoded_magnitude(), (1 << 28) + 1);

  FixedPointOptions options;
  options.clip_bound = 2.0;
  options.num_clients = 10;
  options.headroom_bits = 5;
  FEDGE_ASSERT_OK_AND_ASSIGN(FixedPointCodec roomy, FixedPointCodec::Create(options));
  EXPECT_DOUBLE_EQ(roomy.scale(), std::ldexp(1.0, 26) / 20.0);
  // The worst-case sum stays below 2^31 (and below 2^(31-h) + n).
  EXPECT_LT(10 * roomy.max_encoded_magnitude(), std::int64_t{1} << 31);
}

class FixedPointRoundTripTest : public ::testing::TestWithParam<FixedPointRounding> {};

TEST_P(FixedPointRoundTripTest, DecodedSumMatchesFloatSumWithinNOverScale) {
  constexpr int kClients = 50;
  constexpr std::size_t kDimension = 2000;
  constexpr double kBound = 0.25;
  const FixedPointCodec codec = MakeCodec(kBound, kClients, GetParam());
  const auto updates = RandomUpdates(kClients, kDimension, kBound, 7);

  std::vector<std::uint32_t> sum(kDimension, 0);
  std::vector<double> expected(kDimension, 0.0);
  std::vector<std::uint32_t> encoded(kDimension);
  for (int c = 0; c < kClients; ++c) {
    FEDGE_ASSERT_OK(codec.Encode(updates[c], encoded, /*rounding_seed=*/1000 + c));
    for (std::size_t k = 0; k < kDimension; ++k) {
      sum[k] += encoded[k];
      expected[k] += updates[c][k];
    }
  }
  std::vector<float> decoded(kDimension);
  FEDGE_ASSERT_OK(codec.DecodeSum(sum, kClients, decoded));
  const double tolerance = kClients / codec.scale();
  for (std::size_t k = 0; k < kDimension; ++k) {
    const double float_rounding = std::abs(expected[k]) * std::numeric_limits<float>::epsilon();
    ASSERT_NEAR(decoded[k], expected[k], tolerance + float_rounding) << "k=" << k;
  }
}

INSTANTIATE_TEST_SUITE_P(BothRoundings, FixedPointRoundTripTest,
                         ::testing::Values(FixedPointRounding::kStochastic,
                                           FixedPointRounding::kDeterministic));

TEST(FixedPointTest, ExtremeValuesFromEveryClientDoNotWrap) {
  constexpr int kClients = 1000;
  const FixedPointCodec codec = MakeCodec(3.0, kClients);
  const std::vector<float> values = {3.0f, -3.0f, 0.0f};
  std::vector<std::uint32_t> sum(values.size(), 0), encoded(values.size());
  for (int c = 0; c < kClients; ++c) {
    FEDGE_ASSERT_OK(codec.Encode(values, encoded, c));
    for (std::size_t k = 0; k < values.size(); ++k) sum[k] += encoded[k];
  }
  std::vector<float> decoded(values.size());
  FEDGE_ASSERT_OK(codec.DecodeSum(sum, kClients, decoded));
  EXPECT_NEAR(decoded[0], 3000.0, kClients / codec.scale());
  EXPECT_NEAR(decoded[1], -3000.0, kClients / codec.scale());
  EXPECT_EQ(decoded[2], 0.0f);
}

TEST(FixedPointTest, NegativeValuesAreTwosComplement) {
  const FixedPointCodec codec = MakeCodec(1.0, 1, FixedPointRounding::kDeterministic);
  const std::vector<float> values = {-1.0f, 1.0f};
  std::vector<std::uint32_t> encoded(2);
  FEDGE_ASSERT_OK(codec.Encode(values, encoded));
  EXPECT_EQ(encoded[0], static_cast<std::uint32_t>(-(std::int64_t{1} << 30)));
  EXPECT_EQ(encoded[1], std::uint32_t{1} << 30);
}

// Masks are uniform in Z_{2^32}: masked encodings wrap around freely, and the
// wrap-around cancels exactly once the masks sum to zero.
TEST(FixedPointTest, MasksAddedModulo2To32CancelExactly) {
  constexpr int kClients = 8;
  constexpr std::size_t kDimension = 5000;
  const FixedPointCodec codec = MakeCodec(1.0, kClients);
  const auto updates = RandomUpdates(kClients, kDimension, 1.0, 3);

  std::vector<std::uint32_t> plain_sum(kDimension, 0), masked_sum(kDimension, 0);
  for (int c = 0; c < kClients; ++c) {
    std::vector<std::uint32_t> encoded(kDimension);
    FEDGE_ASSERT_OK(codec.Encode(updates[c], encoded, c));
    for (std::size_t k = 0; k < kDimension; ++k) plain_sum[k] += encoded[k];
    // Client c adds r_c and subtracts r_{c+1}: a ring of masks summing to 0.
    Seed own, next;
    own.fill(static_cast<std::uint8_t>(c));
    next.fill(static_cast<std::uint8_t>((c + 1) % kClients));
    FEDGE_ASSERT_OK_AND_ASSIGN(AesCtrPrg add, AesCtrPrg::Create(own));
    FEDGE_ASSERT_OK_AND_ASSIGN(AesCtrPrg subtract, AesCtrPrg::Create(next));
    FEDGE_ASSERT_OK(add.AddTo(encoded));
    FEDGE_ASSERT_OK(subtract.SubtractFrom(encoded));
    for (std::size_t k = 0; k < kDimension; ++k) masked_sum[k] += encoded[k];
  }
  EXPECT_EQ(masked_sum, plain_sum);
  std::vector<float> decoded(kDimension);
  FEDGE_EXPECT_OK(codec.DecodeSum(masked_sum, kClients, decoded));
}

TEST(FixedPointTest, StochasticRoundingIsUnbiased) {
  const FixedPointCodec codec = MakeCodec(1.0, 1);
  // 0.3 units of resolution: deterministic rounding would always give 0.
  const float value = static_cast<float>(0.3 / codec.scale());
  std::vector<float> values(100000, value);
  std::vector<std::uint32_t> encoded(values.size());
  FEDGE_ASSERT_OK(codec.Encode(values, encoded, 42));
  double mean = 0;
  for (std::uint32_t q : encoded) {
    ASSERT_TRUE(q == 0 || q == 1) << q;
    mean += q;
  }
  mean /= static_cast<double>(encoded.size());
  // Binomial(1e5, ~0.3): sd of the mean ~0.0015.
  EXPECT_NEAR(mean, static_cast<double>(value) * codec.scale(), 0.01);
}

TEST(FixedPointTest, StochasticRoundingIsDeterministicPerSeed) {
  const FixedPointCodec codec = MakeCodec(1.0, 3);
  const auto updates = RandomUpdates(1, 1000, 1.0, 9);
  std::vector<std::uint32_t> a(1000), b(1000), c(1000);
  FEDGE_ASSERT_OK(codec.Encode(updates[0], a, 5));
  FEDGE_ASSERT_OK(codec.Encode(updates[0], b, 5));
  FEDGE_ASSERT_OK(codec.Encode(updates[0], c, 6));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(FixedPointTest, OutOfRangeValuesAreClippedByDefault) {
  const FixedPointCodec codec = MakeCodec(0.5, 2, FixedPointRounding::kDeterministic);
  const std::vector<float> values = {0.5f, 7.0f, -0.5f, -1e30f};
  std::vector<std::uint32_t> encoded(values.size());
  FEDGE_ASSERT_OK(codec.Encode(values, encoded));
  EXPECT_EQ(encoded[1], encoded[0]);
  EXPECT_EQ(encoded[3], encoded[2]);
}

TEST(FixedPointTest, OutOfRangeValuesAreRefusedWhenNotClipping) {
  FixedPointOptions options;
  options.clip_bound = 0.5;
  options.clip_out_of_range = false;
  FEDGE_ASSERT_OK_AND_ASSIGN(FixedPointCodec codec, FixedPointCodec::Create(options));
  const std::vector<float> values = {0.5f, -0.25f, 0.75f};
  std::vector<std::uint32_t> encoded(values.size());
  EXPECT_THAT(codec.Encode(values, encoded), StatusIs(absl::StatusCode::kInvalidArgument,
                                                      HasSubstr("index 2 exceeds clip_bound 0.5")));
}

TEST(FixedPointTest, NonFiniteValuesAreRefused) {
  const FixedPointCodec codec = MakeCodec(1.0, 2);
  std::vector<std::uint32_t> encoded(2);
  const std::vector<float> nan = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_THAT(codec.Encode(nan, encoded),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index 1 is not finite")));
  const std::vector<float> inf = {-std::numeric_limits<float>::infinity(), 0.0f};
  EXPECT_THAT(codec.Encode(inf, encoded),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index 0 is not finite")));
}

TEST(FixedPointTest, SizeMismatchesAreRefused) {
  const FixedPointCodec codec = MakeCodec(1.0, 2);
  const std::vector<float> values(3, 0.0f);
  std::vector<std::uint32_t> encoded(2);
  EXPECT_THAT(codec.Encode(values, encoded),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 values but 2")));
  std::vector<float> decoded(3);
  EXPECT_THAT(codec.DecodeSum(encoded, 1, decoded),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 sums but 3")));
}

TEST(FixedPointTest, DecodeRefusesMoreSummandsThanClients) {
  const FixedPointCodec codec = MakeCodec(1.0, 2);
  std::vector<std::uint32_t> sum(1, 0);
  std::vector<float> decoded(1);
  EXPECT_THAT(codec.DecodeSum(sum, 3, decoded),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_summed 3")));
  EXPECT_THAT(codec.DecodeSum(sum, -1, decoded), StatusIs(absl::StatusCode::kInvalidArgument));
  FEDGE_EXPECT_OK(codec.DecodeSum(sum, 0, decoded));
  EXPECT_EQ(decoded[0], 0.0f);
}

TEST(FixedPointTest, DecodeDetectsAMaskThatWasNotRemoved) {
  const FixedPointCodec codec = MakeCodec(1.0, 10);
  // One honest encoding can be at most ~2^30 / 10; 2^30 is out of reach.
  std::vector<std::uint32_t> sum = {0, std::uint32_t{1} << 30};
  std::vector<float> decoded(2);
  EXPECT_THAT(codec.DecodeSum(sum, 1, decoded),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("coordinate 1")));
}

TEST(FixedPointTest, CreateValidatesEachField) {
  FixedPointOptions options;
  options.clip_bound = 0.0;
  EXPECT_THAT(FixedPointCodec::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clip_bound")));
  options.clip_bound = std::numeric_limits<double>::infinity();
  EXPECT_THAT(FixedPointCodec::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clip_bound")));
  options.clip_bound = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(FixedPointCodec::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clip_bound")));
  options.clip_bound = 1e-320;  // Subnormal: the scale overflows.
  EXPECT_THAT(FixedPointCodec::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scale")));
  options.clip_bound = 1.0;
  options.num_clients = 0;
  EXPECT_THAT(FixedPointCodec::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_clients")));
  options.num_clients = 1 << 30;
  EXPECT_THAT(FixedPointCodec::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_clients")));
  options.num_clients = 5;
  options.headroom_bits = 0;
  EXPECT_THAT(FixedPointCodec::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("headroom_bits")));
  options.headroom_bits = 31;
  EXPECT_THAT(FixedPointCodec::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("headroom_bits")));
}

TEST(FixedPointTest, FixedScaleEncodesIntegerNoisedValuesExactly) {
  // Values that are integers divided by gamma (what an integer DP mechanism
  // outputs) encode to exactly those integers, so the sum carries the noise
  // shares exactly.
  FixedPointOptions options;
  options.num_clients = 100;
  options.scale = 6324.5;
  FEDGE_ASSERT_OK_AND_ASSIGN(FixedPointCodec codec, FixedPointCodec::Create(options));
  EXPECT_EQ(codec.scale(), 6324.5);
  EXPECT_NEAR(codec.options().clip_bound, std::ldexp(1.0, 30) / (100 * 6324.5), 1e-9);
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> pick(-200000, 200000);
  std::vector<std::int64_t> total(64, 0);
  std::vector<std::uint32_t> sum(64, 0), encoded(64);
  for (int client = 0; client < 100; ++client) {
    std::vector<float> values(64);
    std::vector<int> ints(64);
    for (int k = 0; k < 64; ++k) {
      ints[k] = pick(rng);
      values[k] = static_cast<float>(ints[k] / 6324.5);
    }
    FEDGE_ASSERT_OK(codec.Encode(values, encoded));
    for (int k = 0; k < 64; ++k) {
      ASSERT_EQ(static_cast<std::int32_t>(encoded[k]), ints[k]);
      sum[k] += encoded[k];
      total[k] += ints[k];
    }
  }
  for (int k = 0; k < 64; ++k) EXPECT_EQ(static_cast<std::int32_t>(sum[k]), total[k]);
  options.scale = -1;
  EXPECT_THAT(FixedPointCodec::Create(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scale")));
}

}  // namespace
}  // namespace fedge::privacy::secagg
