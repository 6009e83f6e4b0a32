#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "fedge/models/quantization.h"
#include "fedge/models/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::models {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

constexpr float kUntouched = -12345.0f;

std::unique_ptr<UpdateCodec> MustCreate(std::string_view name,
                                        const UpdateCodecOptions& options = {}) {
  auto codec = CreateUpdateCodec(name, options);
  EXPECT_THAT(codec, IsOk());
  return codec.ok() ? std::move(*codec) : nullptr;
}

std::vector<float> RandomDelta(size_t d, uint32_t seed, float stddev = 0.05f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> delta(d);
  for (float& v : delta) v = normal(rng);
  return delta;
}

v1::EncodedUpdate MustEncode(const UpdateCodec& codec, std::span<const float> delta) {
  v1::EncodedUpdate update;
  EXPECT_THAT(codec.Encode(delta, &update), IsOk());
  return update;
}

std::vector<float> MustDecode(const UpdateCodec& codec, const v1::EncodedUpdate& update) {
  std::vector<float> out(update.dimension(), kUntouched);
  EXPECT_THAT(codec.Decode(update, out), IsOk());
  return out;
}

// Decode must fail with INVALID_ARGUMENT mentioning `what` and write nothing.
void ExpectRefused(const UpdateCodec& codec, const v1::EncodedUpdate& update, size_t dimension,
                   const std::string& what) {
  std::vector<float> out(dimension, kUntouched);
  EXPECT_THAT(codec.Decode(update, out),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(what)));
  EXPECT_THAT(out, Each(kUntouched));
}

void PutU32(std::string& payload, size_t offset, uint32_t value) {
  std::memcpy(payload.data() + offset, &value, sizeof(value));
}
void PutF32(std::string& payload, size_t offset, float value) {
  std::memcpy(payload.data() + offset, &value, sizeof(value));
}

// ---------------------------------------------------------------- registry

TEST(CodecRegistryTest, ListsEveryBuiltIn) {
  EXPECT_THAT(RegisteredUpdateCodecs(), IsSupersetOf({"fp32", "fp16", "int8", "qsgd", "topk"}));
}

TEST(CodecRegistryTest, UnknownNameIsNotFoundAndListsTheKnownOnes) {
  EXPECT_THAT(CreateUpdateCodec("zip", UpdateCodecOptions()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("qsgd")));
}

TEST(CodecRegistryTest, OneArgumentFactoryUsesDefaults) {
  for (const char* name : {"fp32", "fp16", "int8", "qsgd", "topk"}) {
    auto codec = CreateUpdateCodec(name);
    ASSERT_THAT(codec, IsOk()) << name;
    EXPECT_EQ((*codec)->name(), name);
  }
}

TEST(CodecRegistryTest, QsgdBitsAreValidated) {
  for (int bits : {0, -1, 17, 32}) {
    UpdateCodecOptions options;
    options.bits = bits;
    EXPECT_THAT(CreateUpdateCodec("qsgd", options),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bits")))
        << bits;
  }
}

TEST(CodecRegistryTest, TopKDensityIsValidated) {
  for (double density : {0.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    UpdateCodecOptions options;
    options.density = density;
    EXPECT_THAT(CreateUpdateCodec("topk", options),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("density")))
        << density;
  }
}

TEST(CodecRegistryTest, CodecsIgnoreOptionsTheyDoNotUse) {
  UpdateCodecOptions options;
  options.density = 0.0;  // invalid for topk, irrelevant to qsgd
  EXPECT_THAT(CreateUpdateCodec("qsgd", options), IsOk());
  options = UpdateCodecOptions();
  options.bits = 0;
  EXPECT_THAT(CreateUpdateCodec("topk", options), IsOk());
}

// ------------------------------------------------------- common validation

class EveryCodecTest : public ::testing::TestWithParam<const char*> {};

TEST_P(EveryCodecTest, RefusesAnotherCodecsUpdate) {
  auto codec = MustCreate(GetParam());
  v1::EncodedUpdate update = MustEncode(*codec, RandomDelta(50, 1));
  update.set_codec(std::string(GetParam()) == "fp32" ? "fp16" : "fp32");
  ExpectRefused(*codec, update, 50, "encoded with codec");
}

TEST_P(EveryCodecTest, RefusesAWrongDimension) {
  auto codec = MustCreate(GetParam());
  v1::EncodedUpdate update = MustEncode(*codec, RandomDelta(50, 1));
  ExpectRefused(*codec, update, 49, "dimension 50");
}

TEST_P(EveryCodecTest, RefusesATruncatedOrPaddedPayload) {
  auto codec = MustCreate(GetParam());
  const v1::EncodedUpdate update = MustEncode(*codec, RandomDelta(50, 1));
  v1::EncodedUpdate truncated = update;
  truncated.mutable_payload()->pop_back();
  ExpectRefused(*codec, truncated, 50, "payload holds");
  v1::EncodedUpdate padded = update;
  padded.mutable_payload()->push_back('\0');
  ExpectRefused(*codec, padded, 50, "payload holds");
  v1::EncodedUpdate empty = update;
  empty.clear_payload();
  ExpectRefused(*codec, empty, 50, "payload holds");
}

TEST_P(EveryCodecTest, EmptyDeltaRoundTrips) {
  auto codec = MustCreate(GetParam());
  const v1::EncodedUpdate update = MustEncode(*codec, {});
  EXPECT_EQ(update.dimension(), 0u);
  EXPECT_TRUE(MustDecode(*codec, update).empty());
}

TEST_P(EveryCodecTest, SetsNameAndDimension) {
  auto codec = MustCreate(GetParam());
  const v1::EncodedUpdate update = MustEncode(*codec, RandomDelta(33, 2));
  EXPECT_EQ(update.codec(), GetParam());
  EXPECT_EQ(update.dimension(), 33u);
}

TEST_P(EveryCodecTest, AllZeroDeltaDecodesToZeros) {
  auto codec = MustCreate(GetParam());
  const std::vector<float> zeros(40, 0.0f);
  EXPECT_THAT(MustDecode(*codec, MustEncode(*codec, zeros)), Each(0.0f));
}

INSTANTIATE_TEST_SUITE_P(BuiltIns, EveryCodecTest,
                         ::testing::Values("fp32", "fp16", "int8", "qsgd", "topk"));

// fp32 is lossless and copies anything; the others need finite input.
class LossyCodecTest : public ::testing::TestWithParam<const char*> {};

TEST_P(LossyCodecTest, RefusesNonFiniteDeltas) {
  auto codec = MustCreate(GetParam());
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> delta = RandomDelta(10, 3);
    delta[4] = bad;
    v1::EncodedUpdate update;
    update.set_codec("untouched");
    EXPECT_THAT(codec->Encode(delta, &update),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entry 4")));
    EXPECT_EQ(update.codec(), "untouched");
  }
}

INSTANTIATE_TEST_SUITE_P(BuiltIns, LossyCodecTest,
                         ::testing::Values("fp16", "int8", "qsgd", "topk"));

// -------------------------------------------------------------------- fp32

TEST(Fp32CodecTest, RoundTripIsExact) {
  auto codec = MustCreate("fp32");
  std::vector<float> delta = RandomDelta(1000, 4);
  delta[0] = std::numeric_limits<float>::denorm_min();
  delta[1] = -std::numeric_limits<float>::max();
  const v1::EncodedUpdate update = MustEncode(*codec, delta);
  EXPECT_EQ(update.payload().size(), 4 * delta.size());
  EXPECT_EQ(MustDecode(*codec, update), delta);
}

// -------------------------------------------------------------------- fp16

float Pow2(int e) { return std::ldexp(1.0f, e); }

TEST(HalfConversionTest, KnownValues) {
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);               // largest finite
  EXPECT_EQ(FloatToHalf(Pow2(-14)), 0x0400);              // smallest normal
  EXPECT_EQ(FloatToHalf(Pow2(-24)), 0x0001);              // smallest subnormal
  EXPECT_EQ(FloatToHalf(Pow2(-14) - Pow2(-24)), 0x03FF);  // largest subnormal
  EXPECT_EQ(FloatToHalf(0.333251953125f), 0x3555);
}

TEST(HalfConversionTest, RoundsToNearestEven) {
  EXPECT_EQ(FloatToHalf(1.0f + Pow2(-11)), 0x3C00);              // tie, down to even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * Pow2(-11)), 0x3C02);          // tie, up to even
  EXPECT_EQ(FloatToHalf(1.0f + Pow2(-11) + Pow2(-20)), 0x3C01);  // above the tie
  EXPECT_EQ(FloatToHalf(Pow2(-25)), 0x0000);                     // subnormal tie to 0
  EXPECT_EQ(FloatToHalf(Pow2(-25) + Pow2(-40)), 0x0001);
  EXPECT_EQ(FloatToHalf(3 * Pow2(-25)), 0x0002);          // subnormal tie up to even
  EXPECT_EQ(FloatToHalf(5 * Pow2(-25)), 0x0002);          // subnormal tie down to even
  EXPECT_EQ(FloatToHalf(Pow2(-14) - Pow2(-25)), 0x0400);  // carries into the normals
  EXPECT_EQ(FloatToHalf(Pow2(-30)), 0x0000);
  EXPECT_EQ(FloatToHalf(-Pow2(-30)), 0x8000);
}

TEST(HalfConversionTest, OverflowInfinityAndNan) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToHalf(-1e10f), 0xFC00);
  EXPECT_EQ(FloatToHalf(inf), 0x7C00);
  EXPECT_EQ(FloatToHalf(-inf), 0xFC00);
  const uint16_t nan = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  // A signalling NaN whose payload lives only in the low bits stays a NaN.
  EXPECT_NE(FloatToHalf(std::bit_cast<float>(0x7F800001u)) & 0x03FF, 0);
  EXPECT_EQ(HalfToFloat(0x7C00), inf);
  EXPECT_EQ(HalfToFloat(0xFC00), -inf);
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
}

TEST(HalfConversionTest, EveryHalfRoundTripsExactly) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_EQ(h & 0x7C00, 0x7C00u);
      EXPECT_NE(h & 0x03FF, 0u);
      continue;
    }
    ASSERT_EQ(FloatToHalf(f), h) << "half 0x" << std::hex << h;
  }
  EXPECT_EQ(HalfToFloat(0x0001), Pow2(-24));
  EXPECT_EQ(HalfToFloat(0x3C01), 1.0f + Pow2(-10));
}

#ifdef __FLT16_MAX__
// The compiler's own binary16 conversion is an independent reference.
TEST(HalfConversionTest, MatchesTheCompilersFloat16OnRandomBits) {
  std::mt19937 rng(5);
  for (int i = 0; i < 2'000'000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    const auto reference = std::bit_cast<uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(FloatToHalf(f), reference) << f;
  }
}
#endif

TEST(Fp16CodecTest, RelativeErrorWithinHalfAnUlp) {
  auto codec = MustCreate("fp16");
  std::vector<float> delta = RandomDelta(5000, 6, 10.0f);
  for (float& v : delta) {
    if (std::fabs(v) < Pow2(-14)) v = Pow2(-14);  // keep to the normal range
  }
  const v1::EncodedUpdate update = MustEncode(*codec, delta);
  EXPECT_EQ(update.payload().size(), 2 * delta.size());
  const std::vector<float> decoded = MustDecode(*codec, update);
  for (size_t i = 0; i < delta.size(); ++i) {
    EXPECT_LE(std::fabs(decoded[i] - delta[i]), std::fabs(delta[i]) * Pow2(-11)) << i;
  }
}

TEST(Fp16CodecTest, SubnormalsKeepAbsoluteErrorWithinHalfAStep) {
  auto codec = MustCreate("fp16");
  const std::vector<float> delta = {Pow2(-20), -3.3e-7f, 1e-8f, 5.9e-5f};
  const std::vector<float> decoded = MustDecode(*codec, MustEncode(*codec, delta));
  for (size_t i = 0; i < delta.size(); ++i) {
    EXPECT_LE(std::fabs(decoded[i] - delta[i]), Pow2(-25)) << i;
  }
}

TEST(Fp16CodecTest, RefusesValuesOutsideBinary16) {
  auto codec = MustCreate("fp16");
  v1::EncodedUpdate update;
  const std::vector<float> delta = {1.0f, 70000.0f};
  EXPECT_THAT(codec->Encode(delta, &update),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("65520")));
  EXPECT_TRUE(update.payload().empty());
}

// -------------------------------------------------------------------- int8

float Int8Scale(const v1::EncodedUpdate& update) {
  float scale;
  std::memcpy(&scale, update.payload().data(), sizeof(scale));
  return scale;
}

TEST(Int8CodecTest, ErrorWithinHalfAScaleAndPayloadAboutOneBytePerValue) {
  auto codec = MustCreate("int8");
  const std::vector<float> delta = RandomDelta(10000, 7);
  const v1::EncodedUpdate update = MustEncode(*codec, delta);
  EXPECT_LE(update.payload().size(), delta.size() + 16);
  const float max_abs = std::fabs(*std::max_element(
      delta.begin(), delta.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); }));
  const float scale = Int8Scale(update);
  EXPECT_FLOAT_EQ(scale, max_abs / 127.0f);
  const std::vector<float> decoded = MustDecode(*codec, update);
  for (size_t i = 0; i < delta.size(); ++i) {
    EXPECT_LE(std::fabs(decoded[i] - delta[i]), scale / 2 * (1 + 1e-5f)) << i;
  }
}

TEST(Int8CodecTest, ExtremesMapToPlusMinus127) {
  auto codec = MustCreate("int8");
  const std::vector<float> delta = {-2.0f, 1.0f, 2.0f};
  const v1::EncodedUpdate update = MustEncode(*codec, delta);
  EXPECT_EQ(static_cast<int8_t>(update.payload()[4]), -127);
  EXPECT_EQ(static_cast<int8_t>(update.payload()[6]), 127);
  const std::vector<float> decoded = MustDecode(*codec, update);
  EXPECT_FLOAT_EQ(decoded[0], -2.0f);
  EXPECT_FLOAT_EQ(decoded[2], 2.0f);
}

TEST(Int8CodecTest, AllZeroDeltaHasScaleZero) {
  auto codec = MustCreate("int8");
  const v1::EncodedUpdate update = MustEncode(*codec, std::vector<float>(8, 0.0f));
  EXPECT_EQ(Int8Scale(update), 0.0f);
  EXPECT_EQ(update.payload().size(), 12u);
}

TEST(Int8CodecTest, RefusesBadScales) {
  auto codec = MustCreate("int8");
  const v1::EncodedUpdate update = MustEncode(*codec, RandomDelta(20, 8));
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -0.5f}) {
    v1::EncodedUpdate tampered = update;
    PutF32(*tampered.mutable_payload(), 0, bad);
    ExpectRefused(*codec, tampered, 20, "scale");
  }
}

TEST(Int8CodecTest, RefusesMinus128) {
  auto codec = MustCreate("int8");
  v1::EncodedUpdate update = MustEncode(*codec, RandomDelta(20, 8));
  (*update.mutable_payload())[10] = static_cast<char>(-128);
  ExpectRefused(*codec, update, 20, "-128");
}

// -------------------------------------------------------------------- qsgd

float QsgdNorm(const v1::EncodedUpdate& update) {
  float norm;
  std::memcpy(&norm, update.payload().data() + 1, sizeof(norm));
  return norm;
}

UpdateCodecOptions QsgdOptions(int bits, uint64_t seed) {
  UpdateCodecOptions options;
  options.bits = bits;
  options.seed = seed;
  return options;
}

TEST(QsgdCodecTest, PayloadHoldsBitsNormAndPackedFields) {
  for (int bits : {1, 2, 3, 7, 8, 12, 16}) {
    auto codec = MustCreate("qsgd", QsgdOptions(bits, 1));
    const std::vector<float> delta = RandomDelta(1001, 9);
    const v1::EncodedUpdate update = MustEncode(*codec, delta);
    EXPECT_EQ(update.payload().size(), 5 + (1001 * static_cast<size_t>(bits + 1) + 7) / 8) << bits;
    EXPECT_EQ(static_cast<int>(static_cast<uint8_t>(update.payload()[0])), bits);
    double sum_squares = 0;
    for (float v : delta) sum_squares += double{v} * v;
    EXPECT_FLOAT_EQ(QsgdNorm(update), static_cast<float>(std::sqrt(sum_squares)));
  }
}

TEST(QsgdCodecTest, DecodesToAdjacentLevelsWithTheRightSign) {
  for (int bits : {1, 4, 8, 16}) {
    auto codec = MustCreate("qsgd", QsgdOptions(bits, 2));
    const std::vector<float> delta = RandomDelta(777, 10);
    const v1::EncodedUpdate update = MustEncode(*codec, delta);
    const std::vector<float> decoded = MustDecode(*codec, update);
    const double levels = std::ldexp(1.0, bits) - 1;
    const double step = QsgdNorm(update) / levels;
    for (size_t i = 0; i < delta.size(); ++i) {
      const double r = std::fabs(delta[i]) / step;
      const double level = std::fabs(decoded[i]) / step;
      EXPECT_NEAR(level, std::round(level), 1e-3) << i;
      EXPECT_GE(level, std::floor(r) - 1e-3) << i;
      EXPECT_LE(level, std::ceil(r) + 1e-3) << i;
      if (decoded[i] != 0.0f) {
        EXPECT_EQ(std::signbit(decoded[i]), std::signbit(delta[i])) << i;
      }
    }
  }
}

TEST(QsgdCodecTest, SeedRoundAndClientMakeItReproducibleAndIndependent) {
  const std::vector<float> delta = RandomDelta(500, 11);
  auto a = MustCreate("qsgd", QsgdOptions(2, 42));
  auto b = MustCreate("qsgd", QsgdOptions(2, 42));
  auto c = MustCreate("qsgd", QsgdOptions(2, 43));
  EXPECT_EQ(MustEncode(*a, delta).payload(), MustEncode(*b, delta).payload());
  EXPECT_NE(MustEncode(*a, delta).payload(), MustEncode(*c, delta).payload());
  v1::EncodedUpdate next_round;
  next_round.set_round(1);
  ASSERT_THAT(a->Encode(delta, &next_round), IsOk());
  EXPECT_NE(next_round.payload(), MustEncode(*a, delta).payload());
  v1::EncodedUpdate other_client;
  other_client.set_client_id("device-7");
  ASSERT_THAT(a->Encode(delta, &other_client), IsOk());
  EXPECT_NE(other_client.payload(), MustEncode(*a, delta).payload());
}

// E[decode] = x: the mean over n independent seeds converges at rate
// sigma / sqrt(n), where each coordinate's variance is at most step^2 / 4
// (a Bernoulli choice between two levels one step apart).
TEST(QsgdCodecTest, IsUnbiased) {
  constexpr int kDimension = 64;
  constexpr int kSamples = 4000;
  for (int bits : {1, 2, 8}) {
    const std::vector<float> delta = RandomDelta(kDimension, 12);
    std::vector<double> mean(kDimension, 0.0);
    double step = 0;
    for (int seed = 0; seed < kSamples; ++seed) {
      auto codec = MustCreate("qsgd", QsgdOptions(bits, static_cast<uint64_t>(seed)));
      const v1::EncodedUpdate update = MustEncode(*codec, delta);
      step = QsgdNorm(update) / (std::ldexp(1.0, bits) - 1);
      const std::vector<float> decoded = MustDecode(*codec, update);
      for (int i = 0; i < kDimension; ++i) mean[i] += decoded[i] / double{kSamples};
    }
    const double tolerance = 5.0 * (step / 2) / std::sqrt(double{kSamples});
    for (int i = 0; i < kDimension; ++i) {
      EXPECT_NEAR(mean[i], delta[i], tolerance) << "bits " << bits << " coordinate " << i;
    }
  }
}

// Lemma 3.1: E||Q(x) - x||^2 <= min(d / s^2, sqrt(d) / s) ||x||^2.
TEST(QsgdCodecTest, VarianceWithinThePaperBound) {
  constexpr int kDimension = 256;
  constexpr int kSamples = 300;
  const std::vector<float> delta = RandomDelta(kDimension, 13);
  double norm_squared = 0;
  for (float v : delta) norm_squared += double{v} * v;
  for (int bits : {1, 2, 4}) {
    const double s = std::ldexp(1.0, bits) - 1;
    double mean_error = 0;
    for (int seed = 0; seed < kSamples; ++seed) {
      auto codec = MustCreate("qsgd", QsgdOptions(bits, static_cast<uint64_t>(seed)));
      const std::vector<float> decoded = MustDecode(*codec, MustEncode(*codec, delta));
      for (int i = 0; i < kDimension; ++i) {
        mean_error += std::pow(decoded[i] - delta[i], 2) / kSamples;
      }
    }
    const double bound = std::min(kDimension / (s * s), std::sqrt(kDimension) / s) * norm_squared;
    EXPECT_LE(mean_error, bound) << "bits " << bits;
    EXPECT_GT(mean_error, 0.0);
  }
}

TEST(QsgdCodecTest, SingleEntryIsExact) {
  auto codec = MustCreate("qsgd", QsgdOptions(3, 0));
  const std::vector<float> delta = {0.0f, -0.75f, 0.0f};
  EXPECT_EQ(MustDecode(*codec, MustEncode(*codec, delta)), delta);
}

TEST(QsgdCodecTest, DecodeIgnoresTheDecodersOwnBits) {
  // Parameters travel in the payload: a default codec decodes a 3-bit update.
  auto encoder = MustCreate("qsgd", QsgdOptions(3, 5));
  auto decoder = MustCreate("qsgd");
  const v1::EncodedUpdate update = MustEncode(*encoder, RandomDelta(100, 14));
  EXPECT_EQ(MustDecode(*decoder, update), MustDecode(*encoder, update));
}

TEST(QsgdCodecTest, RefusesMalformedHeaders) {
  auto codec = MustCreate("qsgd");
  const v1::EncodedUpdate update = MustEncode(*codec, RandomDelta(40, 15));
  v1::EncodedUpdate short_header = update;
  short_header.set_payload(update.payload().substr(0, 3));
  ExpectRefused(*codec, short_header, 40, "header");
  for (uint8_t bits : {0, 17, 255}) {
    v1::EncodedUpdate bad_bits = update;
    (*bad_bits.mutable_payload())[0] = static_cast<char>(bits);
    ExpectRefused(*codec, bad_bits, 40, "bits");
  }
  // Consistent size for the claimed bits, but a different bit width than sent.
  v1::EncodedUpdate other_bits = update;
  (*other_bits.mutable_payload())[0] = 4;
  ExpectRefused(*codec, other_bits, 40, "at 4 bits");
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -1.0f}) {
    v1::EncodedUpdate bad_norm = update;
    PutF32(*bad_norm.mutable_payload(), 1, bad);
    ExpectRefused(*codec, bad_norm, 40, "norm");
  }
}

// -------------------------------------------------------------------- topk

UpdateCodecOptions TopKOptions(double density) {
  UpdateCodecOptions options;
  options.density = density;
  return options;
}

TEST(TopKCodecTest, KeepsExactlyTheKLargestMagnitudes) {
  auto codec = MustCreate("topk");  // density 0.01
  const std::vector<float> delta = RandomDelta(10000, 16);
  const v1::EncodedUpdate update = MustEncode(*codec, delta);
  EXPECT_EQ(update.payload().size(), 4 + 8 * 100u);
  const std::vector<float> decoded = MustDecode(*codec, update);

  std::vector<size_t> order(delta.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return std::fabs(delta[a]) > std::fabs(delta[b]); });
  std::vector<float> expected(delta.size(), 0.0f);
  for (size_t j = 0; j < 100; ++j) expected[order[j]] = delta[order[j]];
  EXPECT_EQ(decoded, expected);
}

// Both selection paths (a heap for k <= d / 16, a selection above that)
// against a full sort, with magnitude ties among the values.
TEST(TopKCodecTest, MatchesAFullSortAtEveryDensity) {
  std::vector<float> delta = RandomDelta(2000, 21);
  for (size_t i = 0; i < delta.size(); i += 7) delta[i] = (i % 2 == 0 ? 0.125f : -0.125f);
  for (double density : {0.001, 0.01, 0.0625, 0.07, 0.3, 0.9}) {
    auto codec = MustCreate("topk", TopKOptions(density));
    const std::vector<float> decoded = MustDecode(*codec, MustEncode(*codec, delta));
    const auto k = static_cast<size_t>(std::ceil(density * 2000));
    std::vector<size_t> order(delta.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return std::fabs(delta[a]) > std::fabs(delta[b]); });
    std::vector<float> expected(delta.size(), 0.0f);
    for (size_t j = 0; j < k; ++j) expected[order[j]] = delta[order[j]];
    EXPECT_EQ(decoded, expected) << density;
  }
}

TEST(TopKCodecTest, AllEqualMagnitudesKeepTheFirstK) {
  auto codec = MustCreate("topk");
  std::vector<float> delta(1000, 0.5f);
  for (size_t i = 0; i < delta.size(); i += 3) delta[i] = -0.5f;
  std::vector<float> expected(1000, 0.0f);
  std::copy(delta.begin(), delta.begin() + 10, expected.begin());
  EXPECT_EQ(MustDecode(*codec, MustEncode(*codec, delta)), expected);
}

TEST(TopKCodecTest, KIsTheCeilingOfDensityTimesD) {
  const std::vector<float> delta = RandomDelta(1000, 17);
  for (const auto& [density, k] : std::vector<std::pair<double, size_t>>{
           {0.0015, 2}, {0.001, 1}, {1e-9, 1}, {0.25, 250}, {1.0, 1000}}) {
    auto codec = MustCreate("topk", TopKOptions(density));
    const v1::EncodedUpdate update = MustEncode(*codec, delta);
    EXPECT_EQ(update.payload().size(), 4 + 8 * k) << density;
    const std::vector<float> decoded = MustDecode(*codec, update);
    EXPECT_EQ(static_cast<size_t>(
                  std::count_if(decoded.begin(), decoded.end(), [](float v) { return v != 0.0f; })),
              k)
        << density;
  }
}

TEST(TopKCodecTest, DensityOneIsLossless) {
  auto codec = MustCreate("topk", TopKOptions(1.0));
  const std::vector<float> delta = RandomDelta(300, 18);
  EXPECT_EQ(MustDecode(*codec, MustEncode(*codec, delta)), delta);
}

TEST(TopKCodecTest, TiesGoToTheLowerIndex) {
  auto codec = MustCreate("topk", TopKOptions(0.5));
  const std::vector<float> delta = {1.0f, -1.0f, 1.0f, 0.5f, -1.0f, 1.0f};
  EXPECT_EQ(MustDecode(*codec, MustEncode(*codec, delta)),
            (std::vector<float>{1.0f, -1.0f, 1.0f, 0.0f, 0.0f, 0.0f}));
}

TEST(TopKCodecTest, RefusesMalformedPayloads) {
  auto codec = MustCreate("topk", TopKOptions(0.1));
  const v1::EncodedUpdate update = MustEncode(*codec, RandomDelta(50, 19));  // k = 5
  ASSERT_EQ(update.payload().size(), 44u);

  v1::EncodedUpdate short_header = update;
  short_header.set_payload("ab");
  ExpectRefused(*codec, short_header, 50, "header");

  v1::EncodedUpdate large_k = update;
  PutU32(*large_k.mutable_payload(), 0, 51);
  ExpectRefused(*codec, large_k, 50, "k = 51");

  v1::EncodedUpdate wrong_k = update;
  PutU32(*wrong_k.mutable_payload(), 0, 4);
  ExpectRefused(*codec, wrong_k, 50, "for k = 4");

  v1::EncodedUpdate out_of_range = update;
  PutU32(*out_of_range.mutable_payload(), 4 + 4 * 4, 50);
  ExpectRefused(*codec, out_of_range, 50, "out of range");

  v1::EncodedUpdate duplicate = update;
  uint32_t first;
  std::memcpy(&first, update.payload().data() + 4, sizeof(first));
  PutU32(*duplicate.mutable_payload(), 4 + 4, first);
  ExpectRefused(*codec, duplicate, 50, "ascending");

  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    v1::EncodedUpdate bad_value = update;
    PutF32(*bad_value.mutable_payload(), 4 + 4 * 5 + 4 * 2, bad);
    ExpectRefused(*codec, bad_value, 50, "not finite");
  }
}

TEST(TopKCodecTest, ZeroKDecodesToZeros) {
  auto codec = MustCreate("topk");
  v1::EncodedUpdate update;
  update.set_codec("topk");
  update.set_dimension(5);
  update.set_payload(std::string(4, '\0'));
  EXPECT_THAT(MustDecode(*codec, update), Each(0.0f));
}

// ------------------------------------------------------------------- sizes

TEST(CodecSizeTest, PayloadBytesPerCodec) {
  constexpr size_t kDimension = 582026;  // cnn-large
  const std::vector<float> delta = RandomDelta(kDimension, 20);
  EXPECT_EQ(MustEncode(*MustCreate("fp32"), delta).payload().size(), 4 * kDimension);
  EXPECT_EQ(MustEncode(*MustCreate("fp16"), delta).payload().size(), 2 * kDimension);
  EXPECT_EQ(MustEncode(*MustCreate("int8"), delta).payload().size(), kDimension + 4);
  EXPECT_EQ(MustEncode(*MustCreate("qsgd"), delta).payload().size(), 5 + (9 * kDimension + 7) / 8);
  EXPECT_EQ(MustEncode(*MustCreate("topk"), delta).payload().size(), 4 + 8 * 5821u);
}

}  // namespace
}  // namespace fedge::models
