#include "fedge/models/model_zoo.h"

#include <torch/torch.h>

#include "fedge/models/flat_parameters.h"
#include "fedge/models/model_instance.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::models {
namespace {

using ::testing::HasSubstr;

int64_t CountParameters(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

ModelSpec Spec(std::string architecture, std::vector<int64_t> shape = {1, 28, 28},
               int64_t classes = 10) {
  return ModelSpec{std::move(architecture), std::move(shape), classes};
}

TEST(ModelZooTest, EveryBuiltinIsRegistered) {
  std::vector<std::string> names = RegisteredArchitectures();
  for (const char* expected : {"mlp", "cnn", "cnn-large", "mobilenet-tiny"}) {
    EXPECT_THAT(names, ::testing::Contains(expected));
    EXPECT_TRUE(CreateModel(Spec(expected), 1).ok()) << expected;
  }
}

TEST(ModelZooTest, ParameterCountsMatchTheDocumentedArchitectures) {
  // cnn-large: conv 1->32 5x5 (832) + conv 32->64 5x5 (51,264) + fc 1024->512
  // (524,800) + fc 512->10 (5,130) = 582,026, the FedAvg paper's CNN.
  EXPECT_EQ(CountParameters(**CreateModel(Spec("cnn-large"), 1)), 582026);
  // cnn: conv 1->20 (520) + conv 20->50 (25,050) + fc 800->500 (400,500) +
  // fc 500->10 (5,010) = 431,080.
  EXPECT_EQ(CountParameters(**CreateModel(Spec("cnn"), 1)), 431080);
  // mlp on 784 inputs: 784*200+200 + 200*200+200 + 200*10+10 = 199,210.
  EXPECT_EQ(CountParameters(**CreateModel(Spec("mlp"), 1)), 199210);
  // mobilenet-tiny: stem 1->16 3x3 (160); blocks of depthwise 3x3 + pointwise
  // 1x1: 16->32 (160 + 544), 32->64 (320 + 2,112), 64->64 (640 + 4,160),
  // 64->128 (640 + 8,320); fc 128->10 (1,290) = 18,346.
  EXPECT_EQ(CountParameters(**CreateModel(Spec("mobilenet-tiny"), 1)), 18346);
}

TEST(ModelZooTest, MobileNetTinyIsDepthwiseSeparable) {
  auto net = CreateModel(Spec("mobilenet-tiny"), 1);
  ASSERT_TRUE(net.ok()) << net.status();
  int depthwise = 0, pointwise = 0;
  for (const auto& item : (*net)->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& p = item.value();
    if (name.rfind("dw", 0) == 0 && name.ends_with(".weight")) {
      EXPECT_EQ(p.size(1), 1) << name;  // one input channel per group
      EXPECT_EQ(p.size(2), 3) << name;
      ++depthwise;
    }
    if (name.rfind("pw", 0) == 0 && name.ends_with(".weight")) {
      EXPECT_EQ(p.size(2), 1) << name;  // 1x1
      ++pointwise;
    }
  }
  EXPECT_EQ(depthwise, 4);
  EXPECT_EQ(pointwise, 4);
  auto tiny = CreateModel(Spec("mobilenet-tiny", {1, 4, 4}), 1);
  EXPECT_EQ(tiny.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelZooTest, OutputsLogitsPerClass) {
  for (const char* name : {"mlp", "cnn", "cnn-large", "mobilenet-tiny"}) {
    auto net = CreateModel(Spec(name, {3, 32, 32}, 7), 3);
    ASSERT_TRUE(net.ok()) << net.status();
    torch::Tensor logits = (*net)->forward(torch::zeros({5, 3, 32, 32}));
    EXPECT_EQ(logits.sizes(), torch::IntArrayRef({5, 7})) << name;
  }
}

TEST(ModelZooTest, SameSeedSameWeightsDifferentSeedDifferent) {
  auto a = ModelInstance::Create(Spec("cnn"), 11);
  auto b = ModelInstance::Create(Spec("cnn"), 11);
  auto c = ModelInstance::Create(Spec("cnn"), 12);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(torch::equal((*a)->parameters().tensor(), (*b)->parameters().tensor()));
  EXPECT_FALSE(torch::equal((*a)->parameters().tensor(), (*c)->parameters().tensor()));
}

TEST(ModelZooTest, UnknownArchitectureListsKnownOnes) {
  auto net = CreateModel(Spec("resnet-9000"), 1);
  EXPECT_EQ(net.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(net.status().message(), HasSubstr("resnet-9000"));
  EXPECT_THAT(net.status().message(), HasSubstr("cnn-large"));
  EXPECT_THAT(net.status().message(), HasSubstr("mlp"));
}

TEST(ModelZooTest, BadSpecsAreRefusedWithTheField) {
  auto flat_input = CreateModel(Spec("cnn", {784}), 1);
  EXPECT_EQ(flat_input.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(flat_input.status().message(), HasSubstr("input_shape"));

  auto tiny = CreateModel(Spec("cnn", {1, 8, 8}), 1);
  EXPECT_EQ(tiny.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tiny.status().message(), HasSubstr("16x16"));

  auto one_class = CreateModel(Spec("mlp", {4}, 1), 1);
  EXPECT_EQ(one_class.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(one_class.status().message(), HasSubstr("num_classes"));

  auto negative = CreateModel(Spec("mlp", {4, -1}), 1);
  EXPECT_THAT(negative.status().message(), HasSubstr("input_shape"));
}

TEST(ModelZooTest, ResearchersCanRegisterTheirOwnArchitecture) {
  struct Linear final : Network {
    Linear() : fc(register_module("fc", torch::nn::Linear(4, 3))) {}
    torch::Tensor forward(torch::Tensor x) override { return fc->forward(x.flatten(1)); }
    torch::nn::Linear fc;
  };
  ASSERT_TRUE(RegisterArchitecture("test-linear", [](const ModelSpec&) -> absl::StatusOr<NetworkPtr> {
    return std::make_shared<Linear>();
  }));
  EXPECT_THAT(RegisteredArchitectures(), ::testing::Contains("test-linear"));
  auto net = CreateModel(Spec("test-linear", {4}, 3), 1);
  ASSERT_TRUE(net.ok());
  EXPECT_EQ(CountParameters(**net), 15);
}

}  // namespace
}  // namespace fedge::models
