// The fp32/int8 inference engine: plans that match forward(), activation
// calibration, int8 close to fp32, dead-channel removal, refusals.
#include "fedge/models/inference.h"

#include <torch/torch.h>

#include <string>
#include <vector>

#include "fedge/models/artifact.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/pruning.h"
#include "fedge/models/quantization.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::models {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;

ModelSpec Spec(const std::string& architecture) { return ModelSpec{architecture, {1, 28, 28}, 10}; }

// Image-like inputs in [-1, 2], the range of normalized Fashion-MNIST.
torch::Tensor Images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::rand({n, 1, 28, 28}) * 3.0 - 1.0;
}

v1::ModelArtifact ArtifactOf(ModelInstance& model) {
  auto artifact =
      BuildFp32Artifact(model.spec(), model.parameters().layout(), model.parameters().values(), {});
  EXPECT_THAT(artifact, IsOk());
  return *artifact;
}

void AddRanges(ModelInstance& model, const torch::Tensor& sample, v1::ModelArtifact& artifact) {
  auto ranges = CalibrateActivations(model.network(), sample);
  ASSERT_THAT(ranges, IsOk());
  for (const v1::ActivationRange& r : *ranges)
    *artifact.mutable_header()->add_activation_ranges() = r;
}

torch::Tensor Forward(InferenceModel& engine, const torch::Tensor& x) {
  auto y = engine.Forward(x);
  EXPECT_THAT(y, IsOk());
  return y.ok() ? *y : torch::Tensor();
}

double RelativeError(const torch::Tensor& approx, const torch::Tensor& exact) {
  return ((approx - exact).norm() / exact.norm()).item<double>();
}

class EveryArchitectureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryArchitectureTest, Fp32EngineComputesForward) {
  auto model = ModelInstance::Create(Spec(GetParam()), 3);
  ASSERT_THAT(model, IsOk());
  ASSERT_FALSE((*model)->network().InferencePlan().empty());
  auto engine = InferenceModel::Create(ArtifactOf(**model), {});
  ASSERT_THAT(engine, IsOk());
  EXPECT_EQ((*engine)->num_parameters(), (*model)->parameters().size());
  EXPECT_EQ((*engine)->dropped_channels(), 0);
  const torch::Tensor x = Images(16, 1);
  torch::NoGradGuard no_grad;
  (*model)->network().eval();
  const torch::Tensor expected = (*model)->network().forward(x);
  EXPECT_TRUE(torch::allclose(Forward(**engine, x), expected, 1e-5, 1e-5));
}

TEST_P(EveryArchitectureTest, CalibrationNamesTheInputAndEveryLayer) {
  auto model = ModelInstance::Create(Spec(GetParam()), 3);
  ASSERT_THAT(model, IsOk());
  const torch::Tensor sample = Images(64, 2);
  auto ranges = CalibrateActivations((*model)->network(), sample, 24);  // uneven batches
  ASSERT_THAT(ranges, IsOk());
  std::vector<std::string> names;
  for (const auto& r : *ranges) names.push_back(r.name());
  EXPECT_EQ(names[0], "input");
  EXPECT_FLOAT_EQ((*ranges)[0].min(), sample.min().item<float>());
  EXPECT_FLOAT_EQ((*ranges)[0].max(), sample.max().item<float>());
  int layers = 0;
  for (const PlanStep& step : (*model)->network().InferencePlan()) {
    if (step.op != PlanStep::Op::kConv2d && step.op != PlanStep::Op::kLinear) continue;
    ++layers;
    EXPECT_THAT(names, Contains(step.name));
  }
  EXPECT_EQ(ranges->size(), static_cast<size_t>(layers) + 1);
  for (const auto& r : *ranges) {
    EXPECT_LE(r.min(), r.max()) << r.name();
  }
  // Every hidden layer ends in a ReLU.
  for (size_t i = 1; i + 1 < ranges->size(); ++i) EXPECT_GE((*ranges)[i].min(), 0.0f);
}

TEST_P(EveryArchitectureTest, Int8EngineStaysCloseToFp32OnEveryEngine) {
  auto model = ModelInstance::Create(Spec(GetParam()), 3);
  ASSERT_THAT(model, IsOk());
  v1::ModelArtifact artifact = ArtifactOf(**model);
  AddRanges(**model, Images(256, 4), artifact);
  auto fp32 = InferenceModel::Create(artifact, {});
  ASSERT_THAT(fp32, IsOk());
  const torch::Tensor x = Images(64, 5);
  const torch::Tensor exact = Forward(**fp32, x);
  for (const std::string& engine : QuantizedEngines()) {
    InferenceOptions options;
    options.int8 = true;
    options.engine = engine;
    auto int8 = InferenceModel::Create(artifact, options);
    ASSERT_THAT(int8, IsOk()) << engine;
    // uint8 activations and int8 weights: a few percent of the logits' size.
    EXPECT_LT(RelativeError(Forward(**int8, x), exact), 0.1) << engine;
  }
}

INSTANTIATE_TEST_SUITE_P(BuiltIns, EveryArchitectureTest,
                         ::testing::Values("mlp", "cnn", "cnn-large", "mobilenet-tiny"));

TEST(InferenceModelTest, QnnpackIsAvailable) {
  EXPECT_THAT(QuantizedEngines(), Contains("qnnpack"));
}

TEST(InferenceModelTest, Int8ArtifactWeightsAreUsedAsDecoded) {
  auto model = ModelInstance::Create(Spec("cnn"), 7);
  ASSERT_THAT(model, IsOk());
  auto int8 = QuantizeArtifact(ArtifactOf(**model), QuantizeOptions{});
  ASSERT_THAT(int8, IsOk());
  // The fp32 engine on an int8 artifact is the network with dequantized weights.
  ASSERT_THAT(
      DecodeArtifact(*int8, (*model)->parameters().layout(), (*model)->parameters().values()),
      IsOk());
  auto engine = InferenceModel::Create(*int8, {});
  ASSERT_THAT(engine, IsOk());
  const torch::Tensor x = Images(8, 8);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(Forward(**engine, x), (*model)->network().forward(x), 1e-5, 1e-5));
}

// Prunes `model` structurally and returns its artifact, calibrated.
v1::ModelArtifact StructurallyPruned(ModelInstance& model, double sparsity) {
  PruningOptions options;
  options.target_sparsity = sparsity;
  options.structured = true;
  auto pruner = MagnitudePruner::Create(options, model.parameters().layout());
  EXPECT_THAT(pruner, IsOk());
  EXPECT_THAT(pruner->Prune(1, model.parameters().values()), IsOk());
  v1::ModelArtifact artifact = ArtifactOf(model);
  AddRanges(model, Images(128, 9), artifact);
  return artifact;
}

class DeadChannelTest : public ::testing::TestWithParam<std::string> {};

// At 50% of the channels, a freshly initialized mobilenet-tiny has layers
// that are all zeros on the sample: int8 must cope with empty ranges too.
TEST_P(DeadChannelTest, DroppingThemShrinksTheLayersAndChangesNoOutput) {
  auto model = ModelInstance::Create(Spec(GetParam()), 11);
  ASSERT_THAT(model, IsOk());
  const v1::ModelArtifact artifact = StructurallyPruned(**model, 0.5);
  InferenceOptions keep;
  keep.drop_dead_channels = false;
  auto dense = InferenceModel::Create(artifact, keep);
  auto compact = InferenceModel::Create(artifact, {});
  ASSERT_THAT(dense, IsOk());
  ASSERT_THAT(compact, IsOk());
  EXPECT_GT((*compact)->dropped_channels(), 0);
  EXPECT_LT((*compact)->num_parameters(), (*dense)->num_parameters());
  const torch::Tensor x = Images(16, 12);
  EXPECT_TRUE(torch::allclose(Forward(**compact, x), Forward(**dense, x), 1e-4, 1e-5));

  InferenceOptions int8;
  int8.int8 = true;
  auto quantized = InferenceModel::Create(artifact, int8);
  ASSERT_THAT(quantized, IsOk());
  EXPECT_LT(RelativeError(Forward(**quantized, x), Forward(**dense, x)), 0.1);
}

INSTANTIATE_TEST_SUITE_P(BuiltIns, DeadChannelTest,
                         ::testing::Values("cnn", "mlp", "mobilenet-tiny"));

TEST(DeadChannelTest, HalfTheChannelsOfCnnGoAway) {
  auto model = ModelInstance::Create(Spec("cnn"), 13);
  ASSERT_THAT(model, IsOk());
  auto engine = InferenceModel::Create(StructurallyPruned(**model, 0.5), {});
  ASSERT_THAT(engine, IsOk());
  // 570 prunable channels (conv1 20, conv2 50, fc1 500): 285 go.
  EXPECT_EQ((*engine)->dropped_channels(), 285);
}

TEST(InferenceModelTest, RefusesWhatItCannotRun) {
  auto model = ModelInstance::Create(Spec("cnn"), 1);
  ASSERT_THAT(model, IsOk());
  v1::ModelArtifact artifact = ArtifactOf(**model);
  InferenceOptions int8;
  int8.int8 = true;
  EXPECT_THAT(InferenceModel::Create(artifact, int8).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("none for input, conv1, conv2, fc1, fc2")));

  AddRanges(**model, Images(16, 1), artifact);
  InferenceOptions unknown = int8;
  unknown.engine = "tpu";
  EXPECT_THAT(InferenceModel::Create(artifact, unknown).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("qnnpack")));

  v1::ModelArtifact bad_range = artifact;
  bad_range.mutable_header()->mutable_activation_ranges(1)->set_min(5.0f);
  bad_range.mutable_header()->mutable_activation_ranges(1)->set_max(1.0f);
  EXPECT_THAT(InferenceModel::Create(bad_range, int8).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'conv1'")));

  v1::ModelArtifact tampered = artifact;
  (*tampered.mutable_tensors(0)->mutable_data())[0] ^= 0x10;
  EXPECT_THAT(InferenceModel::Create(tampered, {}).status(), StatusIs(absl::StatusCode::kDataLoss));

  auto engine = InferenceModel::Create(artifact, int8);
  ASSERT_THAT(engine, IsOk());
  EXPECT_THAT((*engine)->Forward(torch::zeros({2, 1, 27, 28})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[B, 1, 28, 28]")));
  EXPECT_THAT(CalibrateActivations((*model)->network(), torch::zeros({0, 1, 28, 28})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// A user's network without an inference plan.
class PlanlessNet final : public Network {
 public:
  PlanlessNet() : fc_(register_module("fc", torch::nn::Linear(4, 2))) {}
  torch::Tensor forward(torch::Tensor x) override { return fc_->forward(x); }

 private:
  torch::nn::Linear fc_;
};

TEST(InferenceModelTest, ANetworkWithoutAPlanIsUnimplemented) {
  static const bool registered =
      RegisterArchitecture("planless-test-net", [](const ModelSpec&) -> absl::StatusOr<NetworkPtr> {
        return std::make_shared<PlanlessNet>();
      });
  ASSERT_TRUE(registered);
  auto model = ModelInstance::Create(ModelSpec{"planless-test-net", {4}, 2}, 1);
  ASSERT_THAT(model, IsOk());
  EXPECT_THAT(InferenceModel::Create(ArtifactOf(**model), {}).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("planless-test-net")));
  EXPECT_THAT(CalibrateActivations((*model)->network(), torch::zeros({2, 4})).status(),
              StatusIs(absl::StatusCode::kUnimplemented));
}

}  // namespace
}  // namespace fedge::models
