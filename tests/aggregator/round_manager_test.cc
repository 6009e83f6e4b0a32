#include "fedge/aggregator/round_manager.h"

#include <cmath>
#include <set>

#include "fedge/models/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "round_fixtures.h"

namespace fedge::aggregator {
namespace {

using ::testing::HasSubstr;

using round_testing::kLayout;
using round_testing::kSpec;
using round_testing::Train;

class RoundManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::make_unique<ModelRegistry>(kSpec, kLayout);
    ASSERT_TRUE(registry_->Publish(std::vector<float>{1, 2, 3, 4}, 0).ok());
    auto strategy = CreateStrategy("fedavg", StrategyOptions{});
    ASSERT_TRUE(strategy.ok());
    auto manager = RoundManager::Create(std::move(*strategy), registry_.get(), {});
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
    ASSERT_TRUE(manager_->OpenRound(1, {"a", "b", "c"}, Train()).ok());
  }

  static v1::EncodedUpdate Update(const std::string& client, std::vector<float> delta,
                                  uint64_t examples, uint64_t round = 1, uint64_t version = 0) {
    v1::EncodedUpdate update;
    update.set_round(round);
    update.set_model_version(version);
    update.set_client_id(client);
    update.set_num_examples(examples);
    EXPECT_TRUE((*models::CreateUpdateCodec("fp32"))->Encode(delta, &update).ok());
    (*update.mutable_metrics())["train_loss"] = static_cast<double>(examples);
    return update;
  }

  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<RoundManager> manager_;
};

TEST_F(RoundManagerTest, FedAvgRoundPublishesTheExampleWeightedMean) {
  ASSERT_TRUE(manager_->Submit(Update("a", {1, 0, 0, 0}, 1)).ok());
  ASSERT_TRUE(manager_->Submit(Update("b", {0, 4, 0, -4}, 3)).ok());
  auto outcome = manager_->CloseRound();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->new_version, 1u);
  EXPECT_EQ(outcome->participants, 2);
  EXPECT_EQ(outcome->cohort_size, 3);
  EXPECT_EQ(outcome->total_examples, 4u);
  // train_loss reported = examples, so weighted mean = (1*1 + 3*3) / 4 = 2.5.
  EXPECT_DOUBLE_EQ(outcome->train_loss, 2.5);
  // mean delta = (1*[1,0,0,0] + 3*[0,4,0,-4]) / 4 = [0.25, 3, 0, -3]
  auto v1 = registry_->Get(1);
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ((*v1)->parameters, (std::vector<float>{1.25f, 5.0f, 3.0f, 1.0f}));
  EXPECT_EQ((*v1)->parent_version, 0u);
  EXPECT_EQ((*v1)->artifact->header().version(), 1u);
}

TEST_F(RoundManagerTest, TasksNameTheRoundVersionAndConfig) {
  auto task = manager_->TaskFor("b");
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->round(), 1u);
  EXPECT_EQ(task->model_version(), 0u);
  EXPECT_EQ(task->client_id(), "b");
  EXPECT_FLOAT_EQ(task->train().learning_rate(), 0.1f);
  EXPECT_NE(task->train().seed(), manager_->TaskFor("a")->train().seed());
  EXPECT_EQ(manager_->TaskFor("z").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(manager_->Submit(Update("b", {0, 0, 0, 0}, 1)).ok());
  EXPECT_EQ(manager_->TaskFor("b").status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(RoundManagerTest, RefusedUpdatesChangeNothing) {
  struct Case {
    v1::EncodedUpdate update;
    absl::StatusCode code;
    std::string message;
  };
  v1::EncodedUpdate wrong_codec = Update("a", {1, 1, 1, 1}, 1);
  wrong_codec.set_codec("int8");
  v1::EncodedUpdate short_payload = Update("a", {1, 1, 1, 1}, 1);
  short_payload.mutable_payload()->resize(12);
  const std::vector<Case> cases = {
      {Update("a", {1, 1, 1, 1}, 1, /*round=*/2), absl::StatusCode::kFailedPrecondition, "round 2"},
      {Update("a", {1, 1, 1, 1}, 1, 1, /*version=*/5), absl::StatusCode::kFailedPrecondition,
       "model version 5"},
      {Update("mallory", {1, 1, 1, 1}, 1), absl::StatusCode::kPermissionDenied,
       "not in the cohort"},
      {Update("a", {1, 1, 1}, 1), absl::StatusCode::kInvalidArgument, "dimension 3"},
      {short_payload, absl::StatusCode::kInvalidArgument, "12 bytes"},
      {wrong_codec, absl::StatusCode::kInvalidArgument, "codec 'int8'"},
      {Update("a", {1, NAN, 1, 1}, 1), absl::StatusCode::kInvalidArgument, "finite"},
      {Update("a", {1, 1, INFINITY, 1}, 1), absl::StatusCode::kInvalidArgument, "finite"},
      {Update("a", {1, 1, 1, 1}, 0), absl::StatusCode::kInvalidArgument, "0 examples"},
  };
  for (const Case& c : cases) {
    absl::Status status = manager_->Submit(c.update);
    EXPECT_EQ(status.code(), c.code) << c.message << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
  // "a" was never accepted, so it can still submit; the result ignores all of the above.
  ASSERT_TRUE(manager_->Submit(Update("a", {2, 2, 2, 2}, 1)).ok());
  EXPECT_EQ(manager_->Submit(Update("a", {9, 9, 9, 9}, 1)).code(),
            absl::StatusCode::kAlreadyExists);
  auto outcome = manager_->CloseRound();
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(outcome->participants, 1);
  EXPECT_EQ((*registry_->Get(1))->parameters, (std::vector<float>{3, 4, 5, 6}));
}

TEST_F(RoundManagerTest, LateUpdatesAfterCloseAreRefused) {
  ASSERT_TRUE(manager_->Submit(Update("a", {1, 1, 1, 1}, 1)).ok());
  ASSERT_TRUE(manager_->CloseRound().ok());
  EXPECT_EQ(manager_->Submit(Update("b", {1, 1, 1, 1}, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(manager_->OpenRound(2, {"b"}, Train()).ok());
  // An update computed against version 0 for round 1 is stale in round 2.
  EXPECT_THAT(manager_->Submit(Update("b", {1, 1, 1, 1}, 1)).message(), HasSubstr("round 1"));
  EXPECT_TRUE(manager_->Submit(Update("b", {1, 1, 1, 1}, 1, 2, 1)).ok());
}

TEST_F(RoundManagerTest, TooFewUpdatesPublishNothing) {
  auto strategy = CreateStrategy("fedavg", StrategyOptions{});
  RoundManagerOptions options;
  options.min_updates = 2;
  auto manager = RoundManager::Create(std::move(*strategy), registry_.get(), options);
  ASSERT_TRUE(manager.ok());
  ASSERT_TRUE((*manager)->OpenRound(1, {"a", "b"}, Train()).ok());
  ASSERT_TRUE((*manager)->Submit(Update("a", {1, 1, 1, 1}, 1)).ok());
  auto outcome = (*manager)->CloseRound();
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(outcome.status().message(), HasSubstr("1 of 2"));
  EXPECT_EQ((*registry_->Latest())->version, 0u);
  EXPECT_FALSE((*manager)->round_open());
}

TEST_F(RoundManagerTest, RoundLifecycleErrors) {
  EXPECT_EQ(manager_->OpenRound(2, {"a"}, Train()).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(manager_->Submit(Update("a", {0, 0, 0, 0}, 1)).ok());
  ASSERT_TRUE(manager_->CloseRound().ok());
  EXPECT_EQ(manager_->CloseRound().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(manager_->OpenRound(1, {"a"}, Train()).message(), HasSubstr("must increase"));
  EXPECT_THAT(manager_->OpenRound(3, {"a", "a"}, Train()).message(), HasSubstr("more than once"));
  EXPECT_EQ(manager_->OpenRound(3, {}, Train()).code(), absl::StatusCode::kInvalidArgument);
  v1::TrainConfig bad = Train();
  bad.set_learning_rate(0);
  EXPECT_THAT(manager_->OpenRound(3, {"a"}, bad).message(), HasSubstr("learning_rate"));
}

TEST_F(RoundManagerTest, CreateValidatesItsOptions) {
  RoundManagerOptions options;
  options.min_updates = 0;
  auto manager = RoundManager::Create(*CreateStrategy("fedavg", {}), registry_.get(), options);
  EXPECT_THAT(manager.status().message(), HasSubstr("min_updates"));
  options = {};
  options.codec = "zip";
  manager = RoundManager::Create(*CreateStrategy("fedavg", {}), registry_.get(), options);
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kNotFound);
  ModelRegistry empty(kSpec, kLayout);
  manager = RoundManager::Create(*CreateStrategy("fedavg", {}), &empty, {});
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SelectCohortTest, DistinctReproducibleAndBounded) {
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(std::string("c").append(std::to_string(i)));
  auto a = RoundManager::SelectCohort(ids, 10, 7, 3);
  auto b = RoundManager::SelectCohort(ids, 10, 7, 3);
  auto c = RoundManager::SelectCohort(ids, 10, 7, 4);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  EXPECT_EQ(std::set<std::string>(a->begin(), a->end()).size(), 10u);
  EXPECT_EQ(RoundManager::SelectCohort(ids, 51, 7, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RoundManager::SelectCohort(ids, 0, 7, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto all = RoundManager::SelectCohort(ids, 50, 1, 1);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(std::set<std::string>(all->begin(), all->end()).size(), 50u);
}

TEST(SelectCohortTest, EveryClientIsEventuallySelectedUniformly) {
  std::vector<std::string> ids = {"a", "b", "c", "d"};
  std::map<std::string, int> counts;
  for (uint64_t r = 1; r <= 4000; ++r) {
    auto cohort = RoundManager::SelectCohort(ids, 1, 11, r);
    ASSERT_TRUE(cohort.ok());
    for (const std::string& id : *cohort) ++counts[id];
  }
  for (const std::string& id : ids) EXPECT_NEAR(counts[id], 1000, 120) << id;
}

TEST(ModelRegistryTest, VersionsParentsPruningAndValidation) {
  ModelRegistry registry(kSpec, kLayout, /*keep_latest=*/2);
  EXPECT_EQ(registry.Latest().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ((*registry.Publish(std::vector<float>{0, 0, 0, 0}, 0))->version, 0u);
  ASSERT_EQ((*registry.Publish(std::vector<float>{1, 1, 1, 1}, 0))->version, 1u);
  auto v2 = registry.Publish(std::vector<float>{2, 2, 2, 2}, 1);
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ((*v2)->parent_version, 1u);
  EXPECT_GT((*v2)->artifact_bytes, 16u);
  EXPECT_THAT(registry.Get(0).status().message(), HasSubstr("no longer held"));
  EXPECT_THAT(registry.Get(9).status().message(), HasSubstr("does not exist"));
  EXPECT_EQ(registry.Publish(std::vector<float>{1, 1, 1, 1}, 0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Publish(std::vector<float>{1, 1, 1}, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(registry.Publish(std::vector<float>{1, NAN, 1, 1}, 2).status().message(),
              HasSubstr("not finite"));
  EXPECT_EQ((*registry.Latest())->version, 2u);
}

}  // namespace
}  // namespace fedge::aggregator
