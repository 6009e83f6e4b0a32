#include "fedge/client/trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <numeric>

#include "fedge/privacy/clipping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::client {
namespace {

using ::testing::HasSubstr;

// Two well-separated Gaussian blobs in 4-D, labels 0/1. Seeded.
std::shared_ptr<const ExampleStore> Blobs(int64_t n, uint64_t seed = 3) {
  torch::manual_seed(seed);
  torch::Tensor labels = torch::randint(0, 2, {n}, torch::kInt64);
  torch::Tensor features = torch::randn({n, 4}) * 0.5 + (labels.to(torch::kFloat32) * 4 - 2).unsqueeze(1);
  auto store = ExampleStore::Create(features, labels, 2);
  EXPECT_TRUE(store.ok()) << store.status();
  return *store;
}

LocalDataset AllOf(std::shared_ptr<const ExampleStore> store) {
  auto indices = std::make_shared<std::vector<int32_t>>(store->size());
  std::iota(indices->begin(), indices->end(), 0);
  return LocalDataset{std::move(store), std::move(indices)};
}

std::unique_ptr<models::ModelInstance> Mlp(uint64_t seed = 1) {
  auto model = models::ModelInstance::Create(models::ModelSpec{"mlp", {4}, 2}, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

v1::TrainConfig Config() {
  v1::TrainConfig config;
  config.set_local_epochs(2);
  config.set_batch_size(16);
  config.set_learning_rate(0.1f);
  config.set_seed(9);
  return config;
}

TEST(TrainerTest, LearnsAndReturnsTheDeltaFromTheGlobalModel) {
  LocalDataset data = AllOf(Blobs(256));
  auto model = Mlp();
  std::vector<float> global(model->parameters().values().begin(), model->parameters().values().end());
  auto before = Evaluate(*model, *data.store, 0, data.store->size(), 64);
  ASSERT_TRUE(before.ok());

  auto update = Trainer().Fit(*model, data, Config());
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(update->num_examples, 256);
  EXPECT_EQ(update->metrics.steps, 2 * 16);  // 2 epochs of 256/16 batches
  EXPECT_EQ(update->metrics.examples_seen, 512);
  ASSERT_EQ(update->delta.size(), global.size());
  const auto local = model->parameters().values();
  for (size_t i = 0; i < global.size(); i += 97) {
    EXPECT_FLOAT_EQ(update->delta[i], local[i] - global[i]) << i;
  }
  auto after = Evaluate(*model, *data.store, 0, data.store->size(), 64);
  ASSERT_TRUE(after.ok());
  EXPECT_LT(after->loss, before->loss);
  EXPECT_GT(after->accuracy, 0.95);  // the blobs are 4 sigma apart
}

TEST(TrainerTest, SameSeedSameUpdate) {
  LocalDataset data = AllOf(Blobs(128));
  auto a = Mlp(), b = Mlp();
  auto ua = Trainer().Fit(*a, data, Config());
  auto ub = Trainer().Fit(*b, data, Config());
  ASSERT_TRUE(ua.ok() && ub.ok());
  EXPECT_EQ(ua->delta, ub->delta);
  v1::TrainConfig other = Config();
  other.set_seed(10);
  auto c = Mlp();
  auto uc = Trainer().Fit(*c, data, other);
  ASSERT_TRUE(uc.ok());
  EXPECT_NE(ua->delta, uc->delta);
}

TEST(TrainerTest, MaxStepsCapsLocalWork) {
  LocalDataset data = AllOf(Blobs(256));
  auto model = Mlp();
  v1::TrainConfig config = Config();
  config.set_max_steps(5);
  auto update = Trainer().Fit(*model, data, config);
  ASSERT_TRUE(update.ok());
  EXPECT_EQ(update->metrics.steps, 5);
  EXPECT_EQ(update->metrics.examples_seen, 5 * 16);
}

TEST(TrainerTest, ProximalTermKeepsTheModelCloserToTheGlobalOne) {
  LocalDataset data = AllOf(Blobs(256));
  v1::TrainConfig plain = Config();
  plain.set_local_epochs(5);
  v1::TrainConfig prox = plain;
  prox.set_proximal_mu(5.0f);
  auto a = Mlp(), b = Mlp();
  auto free_update = Trainer().Fit(*a, data, plain);
  auto prox_update = Trainer().Fit(*b, data, prox);
  ASSERT_TRUE(free_update.ok() && prox_update.ok());
  EXPECT_LT(privacy::L2Norm(prox_update->delta), 0.8 * privacy::L2Norm(free_update->delta));
}

TEST(TrainerTest, RefusesEmptyDataAndBadConfigsNamingTheField) {
  auto model = Mlp();
  LocalDataset empty{Blobs(8), std::make_shared<std::vector<int32_t>>()};
  EXPECT_THAT(Trainer().Fit(*model, empty, Config()).status().message(), HasSubstr("empty"));

  struct Case {
    std::function<void(v1::TrainConfig&)> mutate;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](auto& c) { c.set_local_epochs(0); }, "local_epochs"},
      {[](auto& c) { c.set_batch_size(0); }, "batch_size"},
      {[](auto& c) { c.set_learning_rate(-0.1f); }, "learning_rate"},
      {[](auto& c) { c.set_learning_rate(NAN); }, "learning_rate"},
      {[](auto& c) { c.set_momentum(1.0f); }, "momentum"},
      {[](auto& c) { c.set_weight_decay(-1.0f); }, "weight_decay"},
      {[](auto& c) { c.set_proximal_mu(-1.0f); }, "proximal_mu"},
  };
  for (const Case& c : cases) {
    v1::TrainConfig config = Config();
    c.mutate(config);
    absl::Status status = ValidateTrainConfig(config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr("TrainConfig." + c.field));
  }
}

TEST(TrainerTest, PrunedEntriesStayZeroThroughTrainingAndMomentum) {
  LocalDataset data = AllOf(Blobs(256));
  auto model = Mlp();
  const size_t d = static_cast<size_t>(model->parameters().size());
  std::vector<uint8_t> mask(d, 1);
  for (size_t i = 0; i < d; i += 3) mask[i] = 0;  // every third entry pruned
  v1::TrainConfig config = Config();
  config.set_momentum(0.9f);
  auto update = Trainer().Fit(*model, data, config, mask);
  ASSERT_TRUE(update.ok()) << update.status();
  const auto local = model->parameters().values();
  size_t moved = 0;
  for (size_t i = 0; i < d; ++i) {
    if (mask[i] == 0) {
      ASSERT_EQ(local[i], 0.0f) << i;
      ASSERT_EQ(update->delta[i], 0.0f) << i;  // zeroed on entry, so no delta either
    } else {
      moved += update->delta[i] != 0.0f ? 1 : 0;
    }
  }
  EXPECT_GT(moved, d / 3);  // most kept entries trained (some feed dead ReLUs)
  auto after = Evaluate(*model, *data.store, 0, data.store->size(), 64);
  ASSERT_TRUE(after.ok());
  EXPECT_GT(after->accuracy, 0.9);  // a third of an over-sized MLP is plenty for two blobs

  std::vector<uint8_t> short_mask(d - 1, 1);
  EXPECT_THAT(Trainer().Fit(*model, data, config, short_mask).status().message(),
              HasSubstr("pruning mask has"));
}

TEST(ExampleStoreTest, NormalizesPixelsAndValidates) {
  torch::Tensor pixels = torch::tensor({0, 255, 51}, torch::kUInt8).view({3, 1});
  auto store = ExampleStore::Create(pixels, torch::tensor({0, 1, 1}, torch::kInt64), 2,
                                    /*mean=*/0.5f, /*stddev=*/0.25f);
  ASSERT_TRUE(store.ok());
  torch::Tensor x = (*store)->GatherFeatures(torch::tensor({2, 0, 1}, torch::kInt64));
  // (51/255 - 0.5)/0.25 = -1.2; (0 - 0.5)/0.25 = -2; (1 - 0.5)/0.25 = 2.
  EXPECT_NEAR(x[0][0].item<float>(), -1.2f, 1e-5);
  EXPECT_NEAR(x[1][0].item<float>(), -2.0f, 1e-5);
  EXPECT_NEAR(x[2][0].item<float>(), 2.0f, 1e-5);

  auto bad_label = ExampleStore::Create(pixels, torch::tensor({0, 1, 2}, torch::kInt64), 2);
  EXPECT_THAT(bad_label.status().message(), HasSubstr("[0, 2)"));
  auto count = ExampleStore::Create(pixels, torch::tensor({0, 1}, torch::kInt64), 2);
  EXPECT_THAT(count.status().message(), HasSubstr("3 examples but 2 labels"));
  auto dtype = ExampleStore::Create(pixels.to(torch::kInt32), torch::tensor({0, 1, 1}, torch::kInt64), 2);
  EXPECT_EQ(dtype.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EvaluateTest, RejectsBadRanges) {
  auto store = Blobs(10);
  auto model = Mlp();
  EXPECT_EQ(Evaluate(*model, *store, 0, 11, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Evaluate(*model, *store, 5, 4, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Evaluate(*model, *store, 0, 10, 0).status().code(), absl::StatusCode::kInvalidArgument);
  auto all = Evaluate(*model, *store, 0, 10, 3);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->examples, 10);
}

}  // namespace
}  // namespace fedge::client
