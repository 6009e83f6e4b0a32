#include "fedge/models/artifact.h"

#include <numeric>

#include "fedge/models/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::models {
namespace {

using ::testing::HasSubstr;

const ModelSpec kSpec{"mlp", {3}, 2};

std::vector<ParameterLayout> Layout() {
  return {{"fc.weight", {2, 3}, 0, 6}, {"fc.bias", {2}, 6, 2}};
}

std::vector<float> Values() {
  std::vector<float> v(8);
  std::iota(v.begin(), v.end(), 0.5f);
  return v;
}

v1::ModelArtifact Build() {
  ArtifactOptions options;
  options.version = 7;
  options.parent_version = 6;
  options.created_at_unix_ms = 1234;
  options.metrics = {{"accuracy", 0.75}};
  auto artifact = BuildFp32Artifact(kSpec, Layout(), Values(), options);
  EXPECT_TRUE(artifact.ok()) << artifact.status();
  return *artifact;
}

TEST(ArtifactTest, SerializedRoundTripRestoresEverything) {
  v1::ModelArtifact original = Build();
  std::string bytes = original.SerializeAsString();
  v1::ModelArtifact parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(parsed.header().version(), 7u);
  EXPECT_EQ(parsed.header().parent_version(), 6u);
  EXPECT_EQ(parsed.header().created_at_unix_ms(), 1234);
  EXPECT_EQ(parsed.header().num_parameters(), 8u);
  EXPECT_EQ(parsed.header().encoding(), v1::TENSOR_ENCODING_FP32);
  EXPECT_DOUBLE_EQ(parsed.header().metrics().at("accuracy"), 0.75);
  EXPECT_EQ(parsed.header().tensors_sha256().size(), 32u);
  auto spec = FromProto(parsed.header().model());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(*spec, kSpec);

  std::vector<float> out(8, -1.0f);
  ASSERT_TRUE(DecodeArtifact(parsed, Layout(), out).ok());
  EXPECT_EQ(out, Values());
}

TEST(ArtifactTest, TamperedTensorFailsTheHashAndWritesNothing) {
  v1::ModelArtifact artifact = Build();
  (*artifact.mutable_tensors(1)->mutable_data())[0] ^= 0x01;
  std::vector<float> out(8, -1.0f);
  absl::Status status = DecodeArtifact(artifact, Layout(), out);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("SHA-256"));
  EXPECT_EQ(out, std::vector<float>(8, -1.0f));
}

TEST(ArtifactTest, RenamedOrReshapedTensorFailsTheHash) {
  v1::ModelArtifact renamed = Build();
  renamed.mutable_tensors(0)->set_name("fc.weigh");
  EXPECT_EQ(VerifyArtifact(renamed).code(), absl::StatusCode::kDataLoss);
  v1::ModelArtifact reshaped = Build();
  reshaped.mutable_tensors(0)->set_shape(0, 3);
  reshaped.mutable_tensors(0)->set_shape(1, 2);
  EXPECT_EQ(VerifyArtifact(reshaped).code(), absl::StatusCode::kDataLoss);
}

TEST(ArtifactTest, LayoutMismatchNamesTheTensor) {
  v1::ModelArtifact artifact = Build();
  std::vector<float> out(8);
  std::vector<ParameterLayout> other = Layout();
  other[1].name = "fc.offset";
  absl::Status status = DecodeArtifact(artifact, other, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("fc.offset"));

  std::vector<ParameterLayout> shape = Layout();
  shape[0].shape = {3, 2};
  status = DecodeArtifact(artifact, shape, out);
  EXPECT_THAT(status.message(), HasSubstr("shape [2, 3]"));

  std::vector<float> wrong_size(9);
  EXPECT_EQ(DecodeArtifact(artifact, Layout(), wrong_size).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ArtifactTest, UnsupportedFormatVersionIsRefused) {
  v1::ModelArtifact artifact = Build();
  artifact.mutable_header()->set_format_version(99);
  absl::Status status = VerifyArtifact(artifact);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("99"));
}

TEST(ArtifactTest, LayoutMustCoverTheValues) {
  std::vector<float> too_many(9);
  auto artifact = BuildFp32Artifact(kSpec, Layout(), too_many, {});
  EXPECT_EQ(artifact.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(UpdateCodecTest, Fp32RoundTripAndValidation) {
  auto codec = CreateUpdateCodec("fp32");
  ASSERT_TRUE(codec.ok());
  std::vector<float> delta = {1.5f, -2.25f, 0.0f, 3e-8f};
  v1::EncodedUpdate update;
  ASSERT_TRUE((*codec)->Encode(delta, &update).ok());
  EXPECT_EQ(update.codec(), "fp32");
  EXPECT_EQ(update.dimension(), 4u);
  EXPECT_EQ(update.payload().size(), 16u);
  std::vector<float> out(4);
  ASSERT_TRUE((*codec)->Decode(update, out).ok());
  EXPECT_EQ(out, delta);

  std::vector<float> wrong_dim(5);
  EXPECT_THAT((*codec)->Decode(update, wrong_dim).message(), HasSubstr("dimension 4"));
  v1::EncodedUpdate short_payload = update;
  short_payload.mutable_payload()->pop_back();
  EXPECT_THAT((*codec)->Decode(short_payload, out).message(), HasSubstr("15 bytes"));
  v1::EncodedUpdate other = update;
  other.set_codec("int8");
  EXPECT_THAT((*codec)->Decode(other, out).message(), HasSubstr("'int8'"));
}

TEST(UpdateCodecTest, UnknownCodecListsKnownOnes) {
  auto codec = CreateUpdateCodec("zip");
  EXPECT_EQ(codec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(codec.status().message(), HasSubstr("fp32"));
  EXPECT_THAT(RegisteredUpdateCodecs(), ::testing::Contains("fp32"));
}

}  // namespace
}  // namespace fedge::models
