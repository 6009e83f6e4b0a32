// Sparse model artifacts: SparsifyArtifact, sparse int8, decoding with the
// stored-values mask, and the refusal of malformed masks.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "fedge/models/artifact.h"
#include "fedge/models/quantization.h"
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
const ModelSpec kSpec{"cnn", {1, 28, 28}, 10};

// cnn's layout (431,080 values).
std::vector<ParameterLayout> CnnLayout() {
  return testing_layouts::LayoutOf({{"conv1.weight", {20, 1, 5, 5}},
                                    {"conv1.bias", {20}},
                                    {"conv2.weight", {50, 20, 5, 5}},
                                    {"conv2.bias", {50}},
                                    {"fc1.weight", {500, 800}},
                                    {"fc1.bias", {500}},
                                    {"fc2.weight", {10, 500}},
                                    {"fc2.bias", {10}}});
}

class SparseArtifactTest : public ::testing::Test {
 protected:
  // Weights (rank >= 2) with `sparsity` of them exactly 0 and a few tiny
  // ones that int8 rounds to 0; biases dense.
  void SetUp() override {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 0.1f);
    std::bernoulli_distribution pruned(0.8);
    std::bernoulli_distribution tiny(0.01);
    values_.resize(static_cast<size_t>(LayoutSize(layout_)));
    for (const ParameterLayout& p : layout_) {
      for (int64_t i = p.offset; i < p.offset + p.numel; ++i) {
        float v = normal(rng);
        if (p.shape.size() >= 2 && pruned(rng)) v = 0.0f;
        if (v != 0.0f && tiny(rng)) v = 1e-7f;
        values_[static_cast<size_t>(i)] = v;
      }
    }
    auto fp32 = BuildFp32Artifact(kSpec, layout_, values_, {});
    ASSERT_THAT(fp32, IsOk());
    fp32_ = *std::move(fp32);
  }

  v1::ModelArtifact Sparse() {
    auto sparse = SparsifyArtifact(fp32_);
    EXPECT_THAT(sparse, IsOk());
    return sparse.ok() ? *std::move(sparse) : v1::ModelArtifact();
  }

  static void Rehash(v1::ModelArtifact& artifact) {
    artifact.mutable_header()->set_tensors_sha256(ComputeTensorsSha256(artifact));
  }

  void ExpectDecodeRefused(const v1::ModelArtifact& artifact, absl::StatusCode code,
                           const std::string& what) {
    std::vector<float> out(values_.size(), kUntouched);
    std::vector<uint8_t> stored(3, 7);
    EXPECT_THAT(DecodeArtifact(artifact, layout_, out, &stored), StatusIs(code, HasSubstr(what)));
    EXPECT_THAT(out, Each(kUntouched));
    EXPECT_EQ(stored, std::vector<uint8_t>(3, 7));
  }

  const std::vector<ParameterLayout> layout_ = CnnLayout();
  std::vector<float> values_;
  v1::ModelArtifact fp32_;
};

TEST_F(SparseArtifactTest, Fp32RoundTripIsExactAndMarksThePrunedEntries) {
  const v1::ModelArtifact sparse = Sparse();
  EXPECT_TRUE(IsSparse(sparse));
  EXPECT_FALSE(IsSparse(fp32_));
  std::vector<float> out(values_.size());
  std::vector<uint8_t> stored;
  ASSERT_THAT(DecodeArtifact(sparse, layout_, out, &stored), IsOk());
  EXPECT_EQ(out, values_);
  ASSERT_EQ(stored.size(), values_.size());
  for (size_t i = 0; i < values_.size(); ++i) {
    // Biases have no zeros and stay dense; every weight is stored unless 0.
    ASSERT_EQ(stored[i], values_[i] != 0.0f ? 1 : 0) << i;
  }
  // Weights are 99.8% of cnn; biases stay dense (no zeros to drop).
  EXPECT_TRUE(sparse.tensors(1).stored_mask().empty());
  EXPECT_FALSE(sparse.tensors(4).stored_mask().empty());
}

TEST_F(SparseArtifactTest, EightyPercentSparseIsAtLeastFourTimesSmaller) {
  const double fp32_bytes = static_cast<double>(fp32_.ByteSizeLong());
  const double sparse_bytes = static_cast<double>(Sparse().ByteSizeLong());
  // Expected: (0.2 * 4 + 1/8) / 4 of the dense size, i.e. 4.3x smaller.
  EXPECT_GT(fp32_bytes / sparse_bytes, 4.0);
  EXPECT_LT(fp32_bytes / sparse_bytes, 4.6);
}

TEST_F(SparseArtifactTest, SerializedSparseArtifactDecodesTheSame) {
  const v1::ModelArtifact sparse = Sparse();
  v1::ModelArtifact parsed;
  ASSERT_TRUE(parsed.ParseFromString(sparse.SerializeAsString()));
  std::vector<float> out(values_.size());
  ASSERT_THAT(DecodeArtifact(parsed, layout_, out), IsOk());
  EXPECT_EQ(out, values_);
}

TEST_F(SparseArtifactTest, DenseTensorsStayDense) {
  std::vector<float> dense(values_.size(), 0.5f);
  dense[3] = 0.0f;  // one zero: a 1/32 mask would cost more than it saves
  auto fp32 = BuildFp32Artifact(kSpec, layout_, dense, {});
  ASSERT_THAT(fp32, IsOk());
  auto sparse = SparsifyArtifact(*fp32);
  ASSERT_THAT(sparse, IsOk());
  EXPECT_FALSE(IsSparse(*sparse));
  EXPECT_EQ(sparse->ByteSizeLong(), fp32->ByteSizeLong());
}

TEST_F(SparseArtifactTest, SparseInt8KeepsThePruningMaskNotTheRoundedZeros) {
  ArtifactEncoding encoding;
  encoding.precision = ArtifactEncoding::Precision::kInt8PerChannel;
  encoding.sparse = true;
  auto int8 = BuildArtifact(kSpec, layout_, values_, {}, encoding);
  ASSERT_THAT(int8, IsOk());
  EXPECT_EQ(int8->header().encoding(), v1::TENSOR_ENCODING_INT8_PER_CHANNEL);
  std::vector<float> out(values_.size());
  std::vector<uint8_t> stored;
  ASSERT_THAT(DecodeArtifact(*int8, layout_, out, &stored), IsOk());
  for (size_t t = 0; t < layout_.size(); ++t) {
    const ParameterLayout& p = layout_[t];
    const v1::TensorProto& tensor = int8->tensors(static_cast<int>(t));
    const int64_t per_channel = p.numel / p.shape[0];
    for (int64_t i = 0; i < p.numel; ++i) {
      const size_t k = static_cast<size_t>(p.offset + i);
      // 1e-7 weights round to int8 0 but are still stored (not pruned).
      ASSERT_EQ(stored[k], values_[k] != 0.0f ? 1 : 0) << p.name << " " << i;
      if (values_[k] == 0.0f) {
        ASSERT_EQ(out[k], 0.0f);
      } else if (p.shape.size() >= 2) {
        const float scale = tensor.scales(static_cast<int>(i / per_channel));
        ASSERT_LE(std::fabs(out[k] - values_[k]), scale / 2 * (1 + 1e-5f)) << p.name << " " << i;
      } else {
        ASSERT_EQ(out[k], values_[k]);
      }
    }
  }
  // int8 values of 20% of the weights plus a 1/8-byte mask: about 12x.
  EXPECT_GT(static_cast<double>(fp32_.ByteSizeLong()) / static_cast<double>(int8->ByteSizeLong()),
            10.0);
}

TEST_F(SparseArtifactTest, PerTensorSparseInt8RoundTripsWithinHalfAScale) {
  ArtifactEncoding encoding;
  encoding.precision = ArtifactEncoding::Precision::kInt8PerTensor;
  encoding.sparse = true;
  auto int8 = BuildArtifact(kSpec, layout_, values_, {}, encoding);
  ASSERT_THAT(int8, IsOk());
  std::vector<float> out(values_.size());
  ASSERT_THAT(DecodeArtifact(*int8, layout_, out), IsOk());
  for (size_t t = 0; t < layout_.size(); ++t) {
    const ParameterLayout& p = layout_[t];
    if (p.shape.size() < 2) continue;
    const float scale = int8->tensors(static_cast<int>(t)).scales(0);
    for (int64_t i = p.offset; i < p.offset + p.numel; ++i) {
      ASSERT_LE(std::fabs(out[i] - values_[i]), scale / 2 * (1 + 1e-5f));
    }
  }
}

TEST_F(SparseArtifactTest, RefusesMalformedMasks) {
  const v1::ModelArtifact sparse = Sparse();
  v1::ModelArtifact short_mask = sparse;
  short_mask.mutable_tensors(2)->mutable_stored_mask()->pop_back();
  Rehash(short_mask);
  ExpectDecodeRefused(short_mask, absl::StatusCode::kDataLoss, "'conv2.weight' has a 3124-byte");

  // conv1.weight has 500 values: 4 spare bits in its last mask byte.
  v1::ModelArtifact past_end = sparse;
  std::string& mask = *past_end.mutable_tensors(0)->mutable_stored_mask();
  mask.back() = static_cast<char>(mask.back() | 0x80);
  Rehash(past_end);
  ExpectDecodeRefused(past_end, absl::StatusCode::kDataLoss, "past its last value");

  v1::ModelArtifact missing_value = sparse;
  std::string& data = *missing_value.mutable_tensors(4)->mutable_data();
  data.resize(data.size() - 4);
  Rehash(missing_value);
  ExpectDecodeRefused(missing_value, absl::StatusCode::kDataLoss, "stored TENSOR_ENCODING_FP32");

  v1::ModelArtifact flipped = sparse;
  (*flipped.mutable_tensors(4)->mutable_stored_mask())[10] ^= 0x01;
  ExpectDecodeRefused(flipped, absl::StatusCode::kDataLoss, "SHA-256");
}

TEST_F(SparseArtifactTest, SparsifyRefusesWhatItCannotHandle) {
  QuantizeOptions per_channel;
  auto int8 = QuantizeArtifact(fp32_, per_channel);
  ASSERT_THAT(int8, IsOk());
  EXPECT_THAT(SparsifyArtifact(*int8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs dense fp32")));
  EXPECT_THAT(SparsifyArtifact(Sparse()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("already sparse")));
  v1::ModelArtifact tampered = fp32_;
  (*tampered.mutable_tensors(0)->mutable_data())[0] ^= 0x01;
  EXPECT_THAT(SparsifyArtifact(tampered), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(ArtifactPrecisionTest, NamesParse) {
  for (const std::string& name : ArtifactPrecisionNames()) {
    EXPECT_THAT(ParseArtifactPrecision(name), IsOk()) << name;
  }
  EXPECT_EQ(*ParseArtifactPrecision("int8"), ArtifactEncoding::Precision::kInt8PerChannel);
  EXPECT_THAT(ParseArtifactPrecision("int4"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                       HasSubstr("fp32, int8, int8-per-tensor")));
}

}  // namespace
}  // namespace fedge::models
