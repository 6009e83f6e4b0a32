#include "fedge/models/flat_parameters.h"

#include <torch/torch.h>

#include <numeric>

#include "fedge/models/model_instance.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::models {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<ModelInstance> MakeCnn(uint64_t seed = 5) {
  auto model = ModelInstance::Create(ModelSpec{"cnn", {1, 28, 28}, 10}, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

TEST(FlatParametersTest, ParametersAreViewsIntoOneBuffer) {
  auto model = MakeCnn();
  FlatParameters& flat = model->parameters();
  const float* base = flat.values().data();
  const auto params = model->network().named_parameters();
  ASSERT_EQ(params.size(), flat.layout().size());
  for (size_t i = 0; i < params.size(); ++i) {
    const ParameterLayout& p = flat.layout()[i];
    EXPECT_EQ(params[i].key(), p.name);
    EXPECT_EQ(params[i].value().data_ptr<float>(), base + p.offset) << p.name;
    EXPECT_EQ(params[i].value().numel(), p.numel);
  }
  EXPECT_EQ(flat.size(), 431080);
  EXPECT_EQ(LayoutSize(flat.layout()), flat.size());
}

TEST(FlatParametersTest, BindingKeepsTheValuesAndTheOutputs) {
  auto reference = MakeCnn(9);  // bound, but we compare against a fresh copy
  auto net = CreateModel(ModelSpec{"cnn", {1, 28, 28}, 10}, 9);
  ASSERT_TRUE(net.ok());
  torch::manual_seed(1);
  torch::Tensor x = torch::randn({4, 1, 28, 28});
  torch::Tensor before = (*net)->forward(x);
  ASSERT_TRUE(FlatParameters::Bind(**net).ok());
  EXPECT_TRUE(torch::allclose((*net)->forward(x), before));
  EXPECT_TRUE(torch::allclose(reference->network().forward(x), before));
}

TEST(FlatParametersTest, RoundTripThroughAVector) {
  auto model = MakeCnn();
  FlatParameters& flat = model->parameters();
  std::vector<float> values(flat.size());
  std::iota(values.begin(), values.end(), -100.0f);
  ASSERT_TRUE(flat.CopyFrom(values).ok());
  // Visible through the module's own parameter tensors.
  EXPECT_FLOAT_EQ(model->network().named_parameters()["conv1.weight"].view(-1)[0].item<float>(),
                  -100.0f);
  EXPECT_FLOAT_EQ(model->network().named_parameters()["conv1.bias"].view(-1)[0].item<float>(),
                  -100.0f + 500.0f);  // after 20*1*5*5 = 500 weights
  std::vector<float> back(flat.size());
  ASSERT_TRUE(flat.CopyTo(back).ok());
  EXPECT_EQ(back, values);
}

TEST(FlatParametersTest, SizeMismatchChangesNothing) {
  auto model = MakeCnn();
  FlatParameters& flat = model->parameters();
  torch::Tensor before = flat.tensor().clone();
  std::vector<float> wrong(flat.size() - 1, 1.0f);
  absl::Status status = flat.CopyFrom(wrong);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("431079"));
  EXPECT_TRUE(torch::equal(before, flat.tensor()));
  std::vector<float> small(3);
  EXPECT_EQ(flat.CopyTo(small).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FlatParametersTest, OptimizerStepsUpdateTheBuffer) {
  auto model = MakeCnn();
  torch::Tensor before = model->parameters().tensor().clone();
  torch::optim::SGD sgd(model->network().parameters(), 0.1);
  torch::Tensor loss = model->network().forward(torch::ones({2, 1, 28, 28})).sum();
  loss.backward();
  sgd.step();
  EXPECT_FALSE(torch::equal(before, model->parameters().tensor()));
  // The buffer and the parameters still alias after the step.
  EXPECT_EQ(model->network().parameters()[0].data_ptr<float>(),
            model->parameters().values().data());
}

TEST(FlatParametersTest, RefusesModulesWithoutParametersOrWithOtherDtypes) {
  torch::nn::ReLU relu;
  EXPECT_EQ(FlatParameters::Bind(*relu).status().code(), absl::StatusCode::kInvalidArgument);
  torch::nn::Linear linear(2, 2);
  linear->to(torch::kFloat64);
  absl::Status status = FlatParameters::Bind(*linear).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("weight"));
}

}  // namespace
}  // namespace fedge::models
