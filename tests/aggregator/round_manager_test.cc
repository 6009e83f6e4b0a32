#include "fedge/aggregator/round_manager.h"

#include <cmath>
#include <map>
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

// A device's loss is its own report: NaN or inf (or a negative loss) from
// one device used to make the published mean NaN. It is left out.
TEST_F(RoundManagerTest, ALossThatIsNotAFiniteNumberIsLeftOutOfTheMean) {
  v1::EncodedUpdate nan = Update("a", {1, 0, 0, 0}, 1);
  (*nan.mutable_metrics())["train_loss"] = std::nan("");
  v1::EncodedUpdate inf = Update("c", {1, 0, 0, 0}, 1);
  (*inf.mutable_metrics())["train_loss"] = INFINITY;
  ASSERT_TRUE(manager_->Submit(nan).ok());
  ASSERT_TRUE(manager_->Submit(Update("b", {0, 4, 0, -4}, 3)).ok());
  ASSERT_TRUE(manager_->Submit(inf).ok());
  auto outcome = manager_->CloseRound();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->participants, 3);  // the updates count; their losses do not
  EXPECT_DOUBLE_EQ(outcome->train_loss, 3.0);
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

TEST_F(RoundManagerTest, DistributedDpAcceptsOnlyTheExactCodec) {
  PrivateAggregationOptions dp;
  dp.mode = privacy::PrivacyMode::kDistributed;
  dp.sampling_rate = 0.5;
  dp.expected_cohort = 2;
  for (const char* codec : {"fp16", "int8", "qsgd", "topk"}) {
    RoundManagerOptions options;
    options.codec = codec;
    auto manager = RoundManager::Create(*CreateStrategy("fedavg", {}), registry_.get(), options,
                                        *PrivateAggregation::Create(dp, 4));
    EXPECT_EQ(manager.status().code(), absl::StatusCode::kInvalidArgument) << codec;
    EXPECT_THAT(manager.status().message(), HasSubstr("use codec 'fp32'")) << codec;
  }
  EXPECT_TRUE(RoundManager::Create(*CreateStrategy("fedavg", {}), registry_.get(), {},
                                   *PrivateAggregation::Create(dp, 4))
                  .ok());
  // Central DP clips what it decodes: any codec composes with it.
  dp.mode = privacy::PrivacyMode::kCentral;
  RoundManagerOptions topk;
  topk.codec = "topk";
  EXPECT_TRUE(RoundManager::Create(*CreateStrategy("fedavg", {}), registry_.get(), topk,
                                   *PrivateAggregation::Create(dp, 4))
                  .ok());
}

// A 2-layer "model": w [4, 5] and b [4], so there are weights to prune.
const std::vector<models::ParameterLayout> kPrunableLayout = {{"fc.weight", {4, 5}, 0, 20},
                                                              {"fc.bias", {4}, 20, 4}};

TEST(RoundManagerPruningTest, PrunesAfterTheServerStepAndPublishesSparseArtifacts) {
  ModelRegistryOptions registry_options;
  registry_options.encoding.sparse = true;
  ModelRegistry registry(kSpec, kPrunableLayout, registry_options);
  std::vector<float> initial(24);
  for (size_t i = 0; i < initial.size(); ++i) initial[i] = static_cast<float>(i + 1);
  ASSERT_TRUE(registry.Publish(initial, 0).ok());
  RoundManagerOptions options;
  options.pruning.emplace();
  options.pruning->target_sparsity = 0.5;
  options.pruning->begin_round = 1;
  options.pruning->end_round = 2;
  auto manager = RoundManager::Create(*CreateStrategy("fedavg", {}), &registry, options);
  ASSERT_TRUE(manager.ok()) << manager.status();
  for (uint64_t round = 1; round <= 2; ++round) {
    ASSERT_TRUE((*manager)->OpenRound(round, {"a"}, Train()).ok());
    v1::EncodedUpdate update;
    update.set_round(round);
    update.set_model_version(round - 1);
    update.set_client_id("a");
    update.set_num_examples(1);
    ASSERT_TRUE(
        (*models::CreateUpdateCodec("fp32"))->Encode(std::vector<float>(24, 0.5f), &update).ok());
    ASSERT_TRUE((*manager)->Submit(update).ok());
    auto outcome = (*manager)->CloseRound();
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    // Round 1 is the schedule's start (s_i = 0); round 2 reaches 0.5.
    EXPECT_DOUBLE_EQ(outcome->sparsity, round == 1 ? 0.0 : 0.5);
    auto version = registry.Get(outcome->new_version);
    ASSERT_TRUE(version.ok());
    EXPECT_EQ((*version)->artifact_bytes, outcome->artifact_bytes);
    if (round == 2) {
      // Two rounds of +0.5 made entry i worth i + 2; the 10 smallest weights
      // are gone, biases are never pruned.
      for (int i = 0; i < 10; ++i) EXPECT_EQ((*version)->parameters[i], 0.0f) << i;
      for (int i = 10; i < 24; ++i) EXPECT_EQ((*version)->parameters[i], i + 2.0f) << i;
      EXPECT_TRUE(models::IsSparse(*(*version)->artifact));
      EXPECT_LT((*version)->artifact_bytes, (*version)->fp32_artifact_bytes);
    }
  }
  options.pruning->frequency = 0;
  EXPECT_THAT(
      RoundManager::Create(*CreateStrategy("fedavg", {}), &registry, options).status().message(),
      HasSubstr("RoundManagerOptions.pruning: PruningOptions.frequency"));
}

TEST(ModelRegistryTest, EncodesArtifactsAndCallsTheAnnotateHook) {
  // cnn's fc1: 500 x 800.
  std::vector<models::ParameterLayout> layout = {{"fc.weight", {500, 800}, 0, 500 * 800},
                                                 {"fc.bias", {500}, 500 * 800, 500}};
  std::vector<float> values(500 * 800 + 500);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(static_cast<float>(i));
  ModelRegistryOptions options;
  options.encoding.precision = models::ArtifactEncoding::Precision::kInt8PerChannel;
  int calls = 0;
  options.annotate = [&](std::span<const float> parameters, v1::ModelArtifact& artifact) {
    ++calls;
    EXPECT_EQ(parameters.size(), values.size());
    v1::ActivationRange* range = artifact.mutable_header()->add_activation_ranges();
    range->set_name("input");
    range->set_max(1.0f);
    return absl::OkStatus();
  };
  ModelRegistry registry(kSpec, layout, options);
  auto version = registry.Publish(values, 0);
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ((*version)->artifact->header().encoding(), v1::TENSOR_ENCODING_INT8_PER_CHANNEL);
  EXPECT_EQ((*version)->artifact->header().activation_ranges_size(), 1);
  EXPECT_GE(static_cast<double>((*version)->fp32_artifact_bytes) /
                static_cast<double>((*version)->artifact_bytes),
            3.9);
  EXPECT_EQ((*version)->parameters, values);  // the master copy stays fp32

  options.annotate = [](std::span<const float>, v1::ModelArtifact&) {
    return absl::InternalError("calibration failed");
  };
  ModelRegistry failing(kSpec, layout, options);
  EXPECT_THAT(failing.Publish(values, 0).status().message(), HasSubstr("calibration failed"));
  EXPECT_EQ(failing.Latest().status().code(), absl::StatusCode::kFailedPrecondition);
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

namespace fedge::aggregator {
namespace {

// Checkpoint + ResumeRound: a manager rebuilt from a checkpoint and the
// updates accepted after it publishes exactly what the original would have.
class RoundResumeTest : public ::testing::Test {
 protected:
  std::unique_ptr<RoundManager> NewManager(ModelRegistry* registry,
                                           RoundManagerOptions options = {}) {
    auto strategy = CreateStrategy("fedadam", StrategyOptions{});
    EXPECT_TRUE(strategy.ok());
    auto manager = RoundManager::Create(std::move(*strategy), registry, std::move(options));
    EXPECT_TRUE(manager.ok()) << manager.status();
    return std::move(*manager);
  }
  static v1::EncodedUpdate Update(const std::string& client, std::vector<float> delta) {
    v1::EncodedUpdate update;
    update.set_round(1);
    update.set_model_version(0);
    update.set_client_id(client);
    update.set_num_examples(3);
    EXPECT_TRUE((*models::CreateUpdateCodec("fp32"))->Encode(delta, &update).ok());
    return update;
  }
};

TEST_F(RoundResumeTest, CheckpointPlusJournalEqualsTheUninterruptedRound) {
  const std::vector<v1::EncodedUpdate> updates = {Update("a", {0.1f, -0.2f, 0.3f, 0.7f}),
                                                  Update("b", {1.1f, 0.2f, -0.3f, 0.01f}),
                                                  Update("c", {-0.5f, 0.25f, 0.125f, 3.0f})};
  ModelRegistry straight_registry(round_testing::kSpec, round_testing::kLayout);
  ASSERT_TRUE(straight_registry.Publish(std::vector<float>{1, 2, 3, 4}, 0).ok());
  auto straight = NewManager(&straight_registry);
  ASSERT_TRUE(straight->OpenRound(1, {"a", "b", "c"}, round_testing::Train()).ok());
  std::vector<uint64_t> sequence;
  ModelRegistry registry(round_testing::kSpec, round_testing::kLayout);
  ASSERT_TRUE(registry.Publish(std::vector<float>{1, 2, 3, 4}, 0).ok());
  RoundManagerOptions options;
  options.on_accept = [&](const v1::EncodedUpdate&, uint64_t s) {
    sequence.push_back(s);
    return absl::OkStatus();
  };
  auto first = NewManager(&registry, options);
  ASSERT_TRUE(first->OpenRound(1, {"a", "b", "c"}, round_testing::Train()).ok());
  for (const auto& u : updates) ASSERT_TRUE(straight->Submit(u).ok());
  ASSERT_TRUE(first->Submit(updates[0]).ok());
  ASSERT_TRUE(first->Submit(updates[1]).ok());
  EXPECT_EQ(sequence, (std::vector<uint64_t>{1, 2}));
  auto checkpoint = first->Checkpoint();
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->accepted(), 2u);
  first.reset();  // the "crash"

  auto resumed = NewManager(&registry);
  ASSERT_TRUE(
      resumed->ResumeRound(1, 0, {"a", "b", "c"}, round_testing::Train(), &*checkpoint).ok());
  EXPECT_EQ(resumed->accepted(), 2u);
  EXPECT_THAT(resumed->Submit(updates[1]).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(resumed->Submit(updates[2]).ok());
  auto a = straight->CloseRound();
  auto b = resumed->CloseRound();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*straight_registry.Latest())->parameters, (*registry.Latest())->parameters);
  EXPECT_DOUBLE_EQ(a->train_loss, b->train_loss);
  EXPECT_EQ(a->total_examples, b->total_examples);
}

TEST_F(RoundResumeTest, RefusesCheckpointsThatDoNotFit) {
  ModelRegistry registry(round_testing::kSpec, round_testing::kLayout);
  ASSERT_TRUE(registry.Publish(std::vector<float>{1, 2, 3, 4}, 0).ok());
  auto manager = NewManager(&registry);
  EXPECT_EQ(manager->Checkpoint().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(manager->OpenRound(1, {"a", "b"}, round_testing::Train()).ok());
  ASSERT_TRUE(manager->Submit(Update("a", {1, 1, 1, 1})).ok());
  v1::RoundCheckpoint good = *manager->Checkpoint();
  auto fresh = NewManager(&registry);
  v1::RoundCheckpoint other_round = good;
  other_round.set_round(2);
  EXPECT_THAT(fresh->ResumeRound(1, 0, {"a", "b"}, round_testing::Train(), &other_round).message(),
              HasSubstr("checkpoint is of round 2"));
  v1::RoundCheckpoint garbage = good;
  garbage.set_accumulator("not an accumulator");
  EXPECT_EQ(fresh->ResumeRound(1, 0, {"a", "b"}, round_testing::Train(), &garbage).code(),
            absl::StatusCode::kInvalidArgument);
  v1::RoundCheckpoint stranger = good;
  stranger.set_submitted(0, "z");
  EXPECT_THAT(fresh->ResumeRound(1, 0, {"a", "b"}, round_testing::Train(), &stranger).message(),
              HasSubstr("not in the cohort"));
  v1::RoundCheckpoint miscounted = good;
  miscounted.set_accepted(5);
  EXPECT_THAT(fresh->ResumeRound(1, 0, {"a", "b"}, round_testing::Train(), &miscounted).message(),
              HasSubstr("inconsistent"));
  EXPECT_EQ(fresh->ResumeRound(1, 9, {"a", "b"}, round_testing::Train(), &good).code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(fresh->round_open());  // nothing changed
  ASSERT_TRUE(fresh->ResumeRound(1, 0, {"a", "b"}, round_testing::Train(), &good).ok());
  EXPECT_EQ(fresh->accepted(), 1u);
}

TEST_F(RoundResumeTest, AFailingJournalRefusesTheUpdate) {
  ModelRegistry registry(round_testing::kSpec, round_testing::kLayout);
  ASSERT_TRUE(registry.Publish(std::vector<float>{1, 2, 3, 4}, 0).ok());
  RoundManagerOptions options;
  options.on_accept = [](const v1::EncodedUpdate&, uint64_t) {
    return absl::UnavailableError("disk full");
  };
  auto manager = NewManager(&registry, options);
  ASSERT_TRUE(manager->OpenRound(1, {"a"}, round_testing::Train()).ok());
  EXPECT_EQ(manager->Submit(Update("a", {1, 1, 1, 1})).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(manager->accepted(), 0u);
  // A non-finite update never reaches the journal.
  int journaled = 0;
  RoundManagerOptions counting;
  counting.on_accept = [&](const v1::EncodedUpdate&, uint64_t) {
    ++journaled;
    return absl::OkStatus();
  };
  auto other = NewManager(&registry, counting);
  ASSERT_TRUE(other->OpenRound(1, {"a"}, round_testing::Train()).ok());
  EXPECT_EQ(other->Submit(Update("a", {1, NAN, 1, 1})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(journaled, 0);
}

}  // namespace
}  // namespace fedge::aggregator
