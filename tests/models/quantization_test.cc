#include "fedge/models/quantization.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fedge/models/artifact.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"
#include "test_layouts.h"

namespace fedge::models {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::Each;
using ::testing::HasSubstr;

constexpr float kUntouched = -777.0f;

// cnn-large's parameter layout (582,026 values).
std::vector<ParameterLayout> CnnLargeLayout() {
  return testing_layouts::LayoutOf({{"conv1.weight", {32, 1, 5, 5}},
                                    {"conv1.bias", {32}},
                                    {"conv2.weight", {64, 32, 5, 5}},
                                    {"conv2.bias", {64}},
                                    {"fc1.weight", {512, 1024}},
                                    {"fc1.bias", {512}},
                                    {"fc2.weight", {10, 512}},
                                    {"fc2.bias", {10}}});
}

// Weights whose magnitude differs from channel to channel, as trained ones do.
std::vector<float> RandomValues(const std::vector<ParameterLayout>& layout, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> channel_scale(0.01f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(LayoutSize(layout)));
  for (const ParameterLayout& p : layout) {
    const int64_t per_channel = p.numel / p.shape[0];
    for (int64_t c = 0; c < p.shape[0]; ++c) {
      const float scale = channel_scale(rng);
      for (int64_t i = 0; i < per_channel; ++i) {
        values[static_cast<size_t>(p.offset + c * per_channel + i)] = scale * normal(rng);
      }
    }
  }
  return values;
}

const ModelSpec kSpec{"cnn-large", {1, 28, 28}, 10};

class QuantizeArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    values_ = RandomValues(layout_, 1);
    ArtifactOptions options;
    options.version = 3;
    options.parent_version = 2;
    options.created_at_unix_ms = 99;
    options.metrics = {{"accuracy", 0.9}};
    auto fp32 = BuildFp32Artifact(kSpec, layout_, values_, options);
    ASSERT_THAT(fp32, IsOk());
    fp32_ = *std::move(fp32);
  }

  v1::ModelArtifact Quantize(bool per_channel = true) {
    QuantizeOptions options;
    options.per_channel = per_channel;
    auto int8 = QuantizeArtifact(fp32_, options);
    EXPECT_THAT(int8, IsOk());
    return int8.ok() ? *std::move(int8) : v1::ModelArtifact();
  }

  // Re-hashes after a deliberate edit, so that only the decoder's own checks
  // stand between the edit and the output.
  static void Rehash(v1::ModelArtifact& artifact) {
    artifact.mutable_header()->set_tensors_sha256(ComputeTensorsSha256(artifact));
  }

  void ExpectDecodeRefused(const v1::ModelArtifact& artifact, absl::StatusCode code,
                           const std::string& what) {
    std::vector<float> out(values_.size(), kUntouched);
    EXPECT_THAT(DecodeArtifact(artifact, layout_, out), StatusIs(code, HasSubstr(what)));
    EXPECT_THAT(out, Each(kUntouched));
  }

  const std::vector<ParameterLayout> layout_ = CnnLargeLayout();
  std::vector<float> values_;
  v1::ModelArtifact fp32_;
};

TEST_F(QuantizeArtifactTest, PerChannelLayoutOfTheTensors) {
  const v1::ModelArtifact int8 = Quantize();
  EXPECT_EQ(int8.header().encoding(), v1::TENSOR_ENCODING_INT8_PER_CHANNEL);
  EXPECT_EQ(int8.header().version(), 3u);
  EXPECT_EQ(int8.header().parent_version(), 2u);
  EXPECT_EQ(int8.header().created_at_unix_ms(), 99);
  EXPECT_EQ(int8.header().num_parameters(), values_.size());
  EXPECT_EQ(int8.header().model().architecture(), "cnn-large");
  EXPECT_DOUBLE_EQ(int8.header().metrics().at("accuracy"), 0.9);
  EXPECT_EQ(int8.header().tensors_sha256(), ComputeTensorsSha256(int8));
  EXPECT_THAT(VerifyArtifact(int8), IsOk());
  ASSERT_EQ(int8.tensors_size(), 8);
  for (int i = 0; i < int8.tensors_size(); ++i) {
    const v1::TensorProto& t = int8.tensors(i);
    const ParameterLayout& p = layout_[static_cast<size_t>(i)];
    EXPECT_EQ(t.name(), p.name);
    if (p.shape.size() == 1) {
      EXPECT_EQ(t.encoding(), v1::TENSOR_ENCODING_FP32) << t.name();
      EXPECT_EQ(t.data(), fp32_.tensors(i).data()) << t.name();
      EXPECT_EQ(t.scales_size(), 0);
      continue;
    }
    EXPECT_EQ(t.encoding(), v1::TENSOR_ENCODING_INT8_PER_CHANNEL) << t.name();
    EXPECT_EQ(t.channel_axis(), 0);
    EXPECT_EQ(t.scales_size(), p.shape[0]) << t.name();
    EXPECT_EQ(t.zero_points_size(), p.shape[0]);
    EXPECT_THAT(t.zero_points(), Each(0));
    EXPECT_EQ(t.data().size(), static_cast<size_t>(p.numel));
  }
}

TEST_F(QuantizeArtifactTest, PerChannelErrorWithinHalfAScale) {
  const v1::ModelArtifact int8 = Quantize();
  std::vector<float> out(values_.size(), kUntouched);
  ASSERT_THAT(DecodeArtifact(int8, layout_, out), IsOk());
  for (size_t t = 0; t < layout_.size(); ++t) {
    const ParameterLayout& p = layout_[t];
    const v1::TensorProto& tensor = int8.tensors(static_cast<int>(t));
    const int64_t per_channel = p.numel / p.shape[0];
    for (int64_t i = 0; i < p.numel; ++i) {
      const auto at = static_cast<size_t>(p.offset + i);
      if (p.shape.size() == 1) {
        ASSERT_EQ(out[at], values_[at]) << p.name;  // biases stay exact
        continue;
      }
      const float scale = tensor.scales(static_cast<int>(i / per_channel));
      ASSERT_LE(std::fabs(out[at] - values_[at]), scale / 2 * (1 + 1e-5f)) << p.name << " " << i;
    }
  }
}

TEST_F(QuantizeArtifactTest, ScalesFollowEachChannelsRange) {
  const v1::ModelArtifact int8 = Quantize();
  const ParameterLayout& conv2 = layout_[2];
  const int64_t per_channel = conv2.numel / 64;
  for (int c = 0; c < 64; ++c) {
    float max_abs = 0;
    for (int64_t i = 0; i < per_channel; ++i) {
      max_abs = std::max(
          max_abs, std::fabs(values_[static_cast<size_t>(conv2.offset + c * per_channel + i)]));
    }
    EXPECT_FLOAT_EQ(int8.tensors(2).scales(c), max_abs / 127) << c;
  }
}

TEST_F(QuantizeArtifactTest, AtLeast3Point9TimesSmaller) {
  const v1::ModelArtifact int8 = Quantize();
  const double ratio = static_cast<double>(fp32_.SerializeAsString().size()) /
                       static_cast<double>(int8.SerializeAsString().size());
  EXPECT_GE(ratio, 3.9) << "fp32 " << fp32_.ByteSizeLong() << " int8 " << int8.ByteSizeLong();
  const v1::ModelArtifact per_tensor = Quantize(/*per_channel=*/false);
  EXPECT_GE(static_cast<double>(fp32_.ByteSizeLong()) / per_tensor.ByteSizeLong(), 3.9);
}

TEST_F(QuantizeArtifactTest, PerTensorOption) {
  const v1::ModelArtifact int8 = Quantize(/*per_channel=*/false);
  EXPECT_EQ(int8.header().encoding(), v1::TENSOR_ENCODING_INT8_PER_TENSOR);
  const v1::TensorProto& fc1 = int8.tensors(4);
  EXPECT_EQ(fc1.encoding(), v1::TENSOR_ENCODING_INT8_PER_TENSOR);
  ASSERT_EQ(fc1.scales_size(), 1);
  std::vector<float> out(values_.size(), kUntouched);
  ASSERT_THAT(DecodeArtifact(int8, layout_, out), IsOk());
  const ParameterLayout& p = layout_[4];
  for (int64_t i = 0; i < p.numel; ++i) {
    const auto at = static_cast<size_t>(p.offset + i);
    ASSERT_LE(std::fabs(out[at] - values_[at]), fc1.scales(0) / 2 * (1 + 1e-5f)) << i;
  }
}

TEST_F(QuantizeArtifactTest, SerializedArtifactDecodesTheSame) {
  const v1::ModelArtifact int8 = Quantize();
  v1::ModelArtifact parsed;
  ASSERT_TRUE(parsed.ParseFromString(int8.SerializeAsString()));
  std::vector<float> a(values_.size()), b(values_.size());
  ASSERT_THAT(DecodeArtifact(int8, layout_, a), IsOk());
  ASSERT_THAT(DecodeArtifact(parsed, layout_, b), IsOk());
  EXPECT_EQ(a, b);
}

TEST_F(QuantizeArtifactTest, ZeroChannelHasScaleZero) {
  for (int64_t i = 0; i < 25; ++i) values_[static_cast<size_t>(i)] = 0.0f;  // conv1 channel 0
  auto fp32 = BuildFp32Artifact(kSpec, layout_, values_, {});
  ASSERT_THAT(fp32, IsOk());
  fp32_ = *fp32;
  const v1::ModelArtifact int8 = Quantize();
  EXPECT_EQ(int8.tensors(0).scales(0), 0.0f);
  std::vector<float> out(values_.size());
  ASSERT_THAT(DecodeArtifact(int8, layout_, out), IsOk());
  for (int i = 0; i < 25; ++i) EXPECT_EQ(out[static_cast<size_t>(i)], 0.0f);
}

TEST_F(QuantizeArtifactTest, DropsTheSignatureOfTheFp32Version) {
  fp32_.set_signature("sig");
  fp32_.set_signing_key_id("key");
  const v1::ModelArtifact int8 = Quantize();
  EXPECT_TRUE(int8.signature().empty());
  EXPECT_TRUE(int8.signing_key_id().empty());
}

TEST_F(QuantizeArtifactTest, TamperingIsCaughtByTheHash) {
  const v1::ModelArtifact int8 = Quantize();
  v1::ModelArtifact data = int8;
  (*data.mutable_tensors(2)->mutable_data())[100] ^= 0x01;
  ExpectDecodeRefused(data, absl::StatusCode::kDataLoss, "SHA-256");
  v1::ModelArtifact scale = int8;
  scale.mutable_tensors(2)->set_scales(3, scale.tensors(2).scales(3) * 2);
  ExpectDecodeRefused(scale, absl::StatusCode::kDataLoss, "SHA-256");
  v1::ModelArtifact axis = int8;
  axis.mutable_tensors(6)->set_channel_axis(1);
  ExpectDecodeRefused(axis, absl::StatusCode::kDataLoss, "SHA-256");
}

TEST_F(QuantizeArtifactTest, RefusesMalformedScales) {
  const v1::ModelArtifact int8 = Quantize();
  v1::ModelArtifact missing = int8;
  missing.mutable_tensors(2)->mutable_scales()->RemoveLast();
  Rehash(missing);
  ExpectDecodeRefused(missing, absl::StatusCode::kInvalidArgument, "63 scales, expected 64");

  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -0.25f}) {
    v1::ModelArtifact non_finite = int8;
    non_finite.mutable_tensors(4)->set_scales(7, bad);
    Rehash(non_finite);
    ExpectDecodeRefused(non_finite, absl::StatusCode::kInvalidArgument, "finite and >= 0");
  }

  v1::ModelArtifact per_tensor_many = int8;
  per_tensor_many.mutable_tensors(6)->set_encoding(v1::TENSOR_ENCODING_INT8_PER_TENSOR);
  Rehash(per_tensor_many);
  ExpectDecodeRefused(per_tensor_many, absl::StatusCode::kInvalidArgument, "10 scales, expected 1");
}

TEST_F(QuantizeArtifactTest, RefusesBadAxesZeroPointsAndSizes) {
  const v1::ModelArtifact int8 = Quantize();
  v1::ModelArtifact axis = int8;
  axis.mutable_tensors(6)->set_channel_axis(2);
  Rehash(axis);
  ExpectDecodeRefused(axis, absl::StatusCode::kInvalidArgument, "channel axis 2");

  v1::ModelArtifact zero_point = int8;
  zero_point.mutable_tensors(6)->set_zero_points(1, 3);
  Rehash(zero_point);
  ExpectDecodeRefused(zero_point, absl::StatusCode::kInvalidArgument, "zero point 3");

  v1::ModelArtifact zero_points = int8;
  zero_points.mutable_tensors(6)->mutable_zero_points()->RemoveLast();
  Rehash(zero_points);
  ExpectDecodeRefused(zero_points, absl::StatusCode::kInvalidArgument, "9 zero points");

  v1::ModelArtifact size = int8;
  size.mutable_tensors(6)->mutable_data()->pop_back();
  Rehash(size);
  ExpectDecodeRefused(size, absl::StatusCode::kDataLoss, "5119 bytes, expected 5120");

  v1::ModelArtifact unknown = int8;
  unknown.mutable_tensors(6)->set_encoding(v1::TENSOR_ENCODING_UNSPECIFIED);
  Rehash(unknown);
  ExpectDecodeRefused(unknown, absl::StatusCode::kUnimplemented, "TENSOR_ENCODING_UNSPECIFIED");
}

TEST_F(QuantizeArtifactTest, AcceptsAbsentZeroPoints) {
  v1::ModelArtifact int8 = Quantize();
  int8.mutable_tensors(6)->clear_zero_points();
  Rehash(int8);
  std::vector<float> out(values_.size());
  EXPECT_THAT(DecodeArtifact(int8, layout_, out), IsOk());
}

TEST_F(QuantizeArtifactTest, QuantizeRefusesBadInput) {
  v1::ModelArtifact tampered = fp32_;
  (*tampered.mutable_tensors(0)->mutable_data())[0] ^= 0x10;
  EXPECT_THAT(QuantizeArtifact(tampered, {}), StatusIs(absl::StatusCode::kDataLoss));

  const v1::ModelArtifact already = Quantize();
  EXPECT_THAT(QuantizeArtifact(already, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs fp32")));

  v1::ModelArtifact non_finite = fp32_;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  non_finite.mutable_tensors(2)->mutable_data()->replace(8, 4, reinterpret_cast<const char*>(&nan),
                                                         4);
  Rehash(non_finite);
  EXPECT_THAT(QuantizeArtifact(non_finite, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-finite")));

  v1::ModelArtifact negative = fp32_;
  negative.mutable_tensors(1)->set_shape(0, -32);
  Rehash(negative);
  EXPECT_THAT(QuantizeArtifact(negative, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative dimension")));

  v1::ModelArtifact short_data = fp32_;
  short_data.mutable_tensors(2)->mutable_data()->resize(12);
  Rehash(short_data);
  EXPECT_THAT(QuantizeArtifact(short_data, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("its shape needs")));
}

// Tensors encoded by hand: FP16, and per-channel int8 along an inner axis.
TEST(DecodeArtifactEncodingsTest, Fp16AndInnerChannelAxis) {
  const std::vector<ParameterLayout> layout = {{"w", {2, 3}, 0, 6}, {"b", {2}, 6, 2}};
  const std::vector<float> values = {1, 2, 3, 4, 5, 6, 7, 8};
  auto artifact = BuildFp32Artifact({"mlp", {3}, 2}, layout, values, {});
  ASSERT_THAT(artifact, IsOk());

  v1::TensorProto& w = *artifact->mutable_tensors(0);
  w.set_encoding(v1::TENSOR_ENCODING_INT8_PER_CHANNEL);
  w.set_channel_axis(1);  // 3 channels: columns
  w.clear_data();
  for (int8_t q : {1, 2, 3, -1, -2, -3}) w.mutable_data()->push_back(static_cast<char>(q));
  for (float s : {0.5f, 1.0f, 2.0f}) w.add_scales(s);
  v1::TensorProto& b = *artifact->mutable_tensors(1);
  b.set_encoding(v1::TENSOR_ENCODING_FP16);
  b.clear_data();
  for (float v : {1.5f, -0.25f}) {
    const uint16_t half = FloatToHalf(v);
    b.mutable_data()->append(reinterpret_cast<const char*>(&half), 2);
  }
  artifact->mutable_header()->set_tensors_sha256(ComputeTensorsSha256(*artifact));

  std::vector<float> out(8);
  ASSERT_THAT(DecodeArtifact(*artifact, layout, out), IsOk());
  EXPECT_EQ(out, (std::vector<float>{0.5f, 2.0f, 6.0f, -0.5f, -2.0f, -6.0f, 1.5f, -0.25f}));

  b.mutable_data()->pop_back();
  artifact->mutable_header()->set_tensors_sha256(ComputeTensorsSha256(*artifact));
  EXPECT_THAT(DecodeArtifact(*artifact, layout, out),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("TENSOR_ENCODING_FP16")));
}

}  // namespace
}  // namespace fedge::models
