// Local training from an app's ExampleSource, under a TrainingControl:
// budgets (memory, time), the app's policy (pause / resume) and stop.
#include "fedge/client/training_budget.h"

#include <torch/torch.h>

#include <random>
#include <thread>

#include "fedge/client/trainer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::client {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kFeatures = 4;
constexpr int64_t kExamples = 64;

// Two Gaussian blobs in 4-D (seeded), held as plain vectors the way an app
// would hold them.
struct AppData {
  std::vector<float> features;
  std::vector<int64_t> labels;
};

AppData MakeAppData() {
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  AppData data;
  for (int64_t i = 0; i < kExamples; ++i) {
    const int64_t label = i % 2;
    data.labels.push_back(label);
    for (int64_t f = 0; f < kFeatures; ++f)
      data.features.push_back(label * 4.0f - 2.0f + noise(rng));
  }
  return data;
}

class VectorSource final : public ExampleSource {
 public:
  explicit VectorSource(AppData data) : data_(std::move(data)) {}
  int64_t size() const override { return kExamples; }
  int64_t example_numel() const override { return kFeatures; }
  int64_t num_classes() const override { return 2; }
  absl::Status ReadBatch(std::span<const int64_t> indices, std::span<float> features,
                         std::span<int64_t> labels) const override {
    ++batches_read;
    if (fail_at_batch > 0 && batches_read == fail_at_batch) {
      return absl::AbortedError("the app's storage is gone");
    }
    largest_batch = std::max<int64_t>(largest_batch, static_cast<int64_t>(indices.size()));
    if (sleep_per_batch.count() > 0) std::this_thread::sleep_for(sleep_per_batch);
    for (size_t i = 0; i < indices.size(); ++i) {
      std::copy_n(data_.features.begin() + indices[i] * kFeatures, kFeatures,
                  features.begin() + static_cast<std::ptrdiff_t>(i) * kFeatures);
      labels[i] = label_override >= 0 ? label_override : data_.labels[indices[i]];
    }
    return absl::OkStatus();
  }

  mutable int batches_read = 0;
  mutable int64_t largest_batch = 0;
  int fail_at_batch = 0;
  int64_t label_override = -1;
  std::chrono::milliseconds sleep_per_batch{0};

 private:
  AppData data_;
};

std::unique_ptr<models::ModelInstance> Mlp() {
  auto model = models::ModelInstance::Create(models::ModelSpec{"mlp", {kFeatures}, 2}, 1);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

v1::TrainConfig Config() {
  v1::TrainConfig config;
  config.set_local_epochs(2);
  config.set_batch_size(8);
  config.set_learning_rate(0.1f);
  config.set_momentum(0.5f);
  config.set_seed(9);
  return config;
}

LocalDataset FromSource(std::shared_ptr<const ExampleSource> source) {
  LocalDataset data;
  data.source = std::move(source);
  return data;
}

class TrainingBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override { models::SetComputeThreads(1); }

  std::shared_ptr<VectorSource> source_ = std::make_shared<VectorSource>(MakeAppData());
  std::vector<BudgetEvent> events_;
  BudgetedTraining::Notify notify_ = [this](BudgetEvent e, const std::string&) {
    events_.push_back(e);
  };
};

TEST_F(TrainingBudgetTest, SourceTrainsExactlyLikeTheSameDataInAStore) {
  const AppData app = MakeAppData();
  torch::Tensor features = torch::from_blob(const_cast<float*>(app.features.data()),
                                            {kExamples, kFeatures}, torch::kFloat32)
                               .clone();
  torch::Tensor labels =
      torch::from_blob(const_cast<int64_t*>(app.labels.data()), {kExamples}, torch::kInt64).clone();
  auto store = ExampleStore::Create(features, labels, 2);
  ASSERT_TRUE(store.ok());
  auto indices = std::make_shared<std::vector<int32_t>>();
  for (int32_t i = 0; i < kExamples; ++i) indices->push_back(i);

  auto a = Mlp();
  auto b = Mlp();
  auto from_store = Trainer().Fit(*a, LocalDataset{*store, indices}, Config());
  auto from_source = Trainer().Fit(*b, FromSource(source_), Config());
  ASSERT_TRUE(from_store.ok()) << from_store.status();
  ASSERT_TRUE(from_source.ok()) << from_source.status();
  EXPECT_EQ(from_source->delta, from_store->delta);
  EXPECT_EQ(from_source->num_examples, kExamples);
  EXPECT_EQ(from_source->metrics.steps, 2 * kExamples / 8);
  // One batch at a time, never more.
  EXPECT_EQ(source_->largest_batch, 8);
  EXPECT_EQ(source_->batches_read, 2 * kExamples / 8);
}

TEST_F(TrainingBudgetTest, PausedTrainingResumesAndGivesTheSameUpdate) {
  auto reference_model = Mlp();
  auto reference = Trainer().Fit(*reference_model, FromSource(source_), Config());
  ASSERT_TRUE(reference.ok());

  int calls = 0;
  TrainingBudget budget;
  budget.policy_poll = std::chrono::milliseconds(1);
  // Says no on its 3rd to 5th answers: training pauses after two steps.
  BudgetedTraining control(
      budget,
      [&]() -> absl::StatusOr<bool> {
        ++calls;
        return calls < 3 || calls > 5;
      },
      notify_, nullptr);
  auto model = Mlp();
  auto update = Trainer(&control).Fit(*model, FromSource(source_), Config());
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_THAT(events_, ElementsAre(BudgetEvent::kPaused, BudgetEvent::kResumed));
  EXPECT_EQ(calls, 2 * kExamples / 8 + 3);  // once per step, plus the three refusals
  EXPECT_EQ(update->delta, reference->delta);
  EXPECT_EQ(update->num_examples, kExamples);
}

TEST_F(TrainingBudgetTest, PolicyErrorAbandonsTheTask) {
  BudgetedTraining control(
      {}, []() -> absl::StatusOr<bool> { return absl::AbortedError("policy broke"); }, notify_,
      nullptr);
  auto model = Mlp();
  EXPECT_THAT(Trainer(&control).Fit(*model, FromSource(source_), Config()).status(),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("policy broke")));
}

TEST_F(TrainingBudgetTest, StopCancelsEvenWhilePaused) {
  std::atomic<bool> stop{false};
  TrainingBudget budget;
  budget.policy_poll = std::chrono::milliseconds(1);
  int calls = 0;
  BudgetedTraining control(
      budget,
      [&]() -> absl::StatusOr<bool> {
        if (++calls == 3) stop = true;  // the app stops the run while it is paused
        return false;
      },
      notify_, &stop);
  auto model = Mlp();
  EXPECT_THAT(Trainer(&control).Fit(*model, FromSource(source_), Config()).status(),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(events_, ElementsAre(BudgetEvent::kPaused));
}

TEST_F(TrainingBudgetTest, TimeBudgetSubmitsTheStepsDone) {
  // Each batch takes at least 20 ms to read; the budget is 1 ms, so it has
  // run out after the first step, however fast the machine.
  source_->sleep_per_batch = std::chrono::milliseconds(20);
  TrainingBudget budget;
  budget.max_training_time = std::chrono::milliseconds(1);
  BudgetedTraining control(budget, nullptr, notify_, nullptr);
  auto model = Mlp();
  auto update = Trainer(&control).Fit(*model, FromSource(source_), Config());
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(update->metrics.steps, 1);
  EXPECT_EQ(update->num_examples, 8);  // weighted by what it saw
  EXPECT_THAT(events_, ElementsAre(BudgetEvent::kTimeBudgetReached));
  EXPECT_TRUE(
      std::any_of(update->delta.begin(), update->delta.end(), [](float v) { return v != 0.0f; }));
}

TEST_F(TrainingBudgetTest, MemoryEstimateGrowsWithTheBatch) {
  auto model = Mlp();
  auto estimate = EstimateTrainingMemory(*model, Config());
  ASSERT_TRUE(estimate.ok()) << estimate.status();
  const int64_t parameter_bytes = model->parameters().size() * 4;
  EXPECT_EQ(estimate->task_state_bytes, 3 * parameter_bytes);  // global copy, delta, momentum
  EXPECT_GE(estimate->step_fixed_bytes, parameter_bytes);      // at least the gradients
  EXPECT_GT(estimate->step_per_example_bytes, 0);
  EXPECT_LT(estimate->Total(1), estimate->Total(8));
}

TEST_F(TrainingBudgetTest, MemoryBudgetShrinksTheBatch) {
  auto probe = Mlp();
  auto estimate = EstimateTrainingMemory(*probe, Config());
  ASSERT_TRUE(estimate.ok());
  TrainingBudget budget;
  budget.max_training_bytes = estimate->Total(3);
  BudgetedTraining control(budget, nullptr, notify_, nullptr);
  auto model = Mlp();
  auto update = Trainer(&control).Fit(*model, FromSource(source_), Config());
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(source_->largest_batch, 3);
  EXPECT_EQ(update->metrics.steps, 2 * ((kExamples + 2) / 3));
  EXPECT_THAT(events_, ElementsAre(BudgetEvent::kBatchShrunk));
}

TEST_F(TrainingBudgetTest, MemoryBudgetRefusesWhatCannotFit) {
  TrainingBudget budget;
  budget.max_training_bytes = 1024;
  BudgetedTraining control(budget, nullptr, notify_, nullptr);
  auto model = Mlp();
  EXPECT_THAT(Trainer(&control).Fit(*model, FromSource(source_), Config()).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("memory budget")));
  EXPECT_THAT(events_, ElementsAre(BudgetEvent::kRefused));
  EXPECT_EQ(source_->batches_read, 0);
}

TEST_F(TrainingBudgetTest, SourceErrorsEndTraining) {
  auto model = Mlp();
  source_->fail_at_batch = 2;
  EXPECT_THAT(Trainer().Fit(*model, FromSource(source_), Config()).status(),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("the app's storage is gone")));
  source_->fail_at_batch = 0;
  source_->label_override = 7;
  EXPECT_THAT(Trainer().Fit(*model, FromSource(source_), Config()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label 7")));
}

TEST_F(TrainingBudgetTest, SourceMustFitTheModel) {
  auto model = models::ModelInstance::Create(models::ModelSpec{"mlp", {5}, 2}, 1);
  ASSERT_TRUE(model.ok());
  EXPECT_THAT(Trainer().Fit(**model, FromSource(source_), Config()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("takes 5 features")));
}

}  // namespace
}  // namespace fedge::client
