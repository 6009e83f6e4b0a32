// The aggregator's secure-aggregation round: the published model equals the
// plain example-weighted FedAvg result up to fixed-point rounding, an
// aborted round publishes nothing, and strategies that need individual
// updates are refused.
#include "fedge/aggregator/secure_aggregation.h"

#include <cmath>
#include <map>

#include "fedge/proto/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "round_fixtures.h"
#include "status_matchers.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using round_testing::kLayout;
using round_testing::kSpec;
using round_testing::Train;
using ::testing::HasSubstr;

namespace secagg = privacy::secagg;

class SecureAggregationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::make_unique<ModelRegistry>(kSpec, kLayout);
    ASSERT_TRUE(registry_->Publish(std::vector<float>{1, 2, 3, 4}, 0).ok());
    FEDGE_ASSERT_OK_AND_ASSIGN(auto strategy, CreateStrategy("fedavg", StrategyOptions{}));
    SecureAggregationOptions options;
    options.protocol.protocol = v1::SecAggConfig::PROTOCOL_SECAGG_PLUS;
    options.protocol.threshold = 2;
    options.protocol.clip_bound = 8.0;
    options.max_weight = 100;
    options.graph_seed = 3;
    FEDGE_ASSERT_OK_AND_ASSIGN(secure_, SecureAggregation::Create(options, *strategy));
    FEDGE_ASSERT_OK_AND_ASSIGN(manager_,
                               RoundManager::Create(std::move(strategy), registry_.get(), {}));
    ASSERT_THAT(manager_->OpenRound(1, cohort_, Train()), IsOk());
    FEDGE_ASSERT_OK_AND_ASSIGN(config_, secure_->StartRound(1, cohort_, 4, v1::PrivacyConfig()));
  }

  // Runs every client of the cohort through the four phases; clients in
  // `stop_before` send nothing from that phase on.
  absl::Status Run(const std::map<std::string, std::vector<float>>& deltas,
                   const std::map<std::string, uint64_t>& examples,
                   std::map<std::string, int> stop_before = {}) {
    FEDGE_ASSIGN_OR_RETURN(secagg::FixedPointCodec codec, secagg::CodecFor(config_));
    std::map<std::string, std::unique_ptr<secagg::SecAggClient>> clients;
    std::map<std::string, std::vector<uint32_t>> inputs;
    for (const std::string& id : cohort_) {
      FEDGE_ASSIGN_OR_RETURN(clients[id], secagg::SecAggClient::Create(config_, 1, id));
      std::vector<float> values = deltas.at(id);
      const auto w = static_cast<float>(examples.at(id));
      for (float& v : values) v *= w;
      values.push_back(w);
      inputs[id].resize(values.size());
      FEDGE_RETURN_IF_ERROR(codec.Encode(values, inputs[id], 17));
    }
    for (int p = 1; p <= 4; ++p) {
      for (const std::string& id : cohort_) {
        if (stop_before.contains(id) && stop_before[id] <= p) continue;
        absl::StatusOr<v1::SecAggClientMessage> m;
        if (p == 1) {
          m = clients[id]->AdvertiseKeys();
        } else {
          FEDGE_ASSIGN_OR_RETURN(v1::SecAggServerMessage answer,
                                 secure_->Poll(id, 1, static_cast<v1::SecAggPhase>(p - 1)));
          if (p == 2) m = clients[id]->ShareKeys(answer);
          if (p == 3) m = clients[id]->MaskedInput(answer, inputs[id]);
          if (p == 4) m = clients[id]->Unmask(answer);
        }
        FEDGE_RETURN_IF_ERROR(m.status());
        FEDGE_RETURN_IF_ERROR(secure_->Receive(*m));
      }
      FEDGE_RETURN_IF_ERROR(secure_->ClosePhase());
    }
    return absl::OkStatus();
  }

  std::vector<std::string> cohort_ = {"a", "b", "c", "d", "e"};
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<RoundManager> manager_;
  std::unique_ptr<SecureAggregation> secure_;
  v1::SecAggConfig config_;
};

TEST_F(SecureAggregationTest, PublishesTheExampleWeightedMeanOfTheSurvivors) {
  EXPECT_TRUE(config_.weighted());
  EXPECT_EQ(config_.dimension(), 5u);  // 4 parameters and the weight
  const std::map<std::string, std::vector<float>> deltas = {{"a", {1, 0, 0, 0}},
                                                            {"b", {0, 4, 0, -4}},
                                                            {"c", {0.5f, 0.5f, 0.5f, 0.5f}},
                                                            {"d", {-2, 0, 1, 0}},
                                                            {"e", {7, 7, 7, 7}}};
  const std::map<std::string, uint64_t> examples = {
      {"a", 1}, {"b", 3}, {"c", 10}, {"d", 6}, {"e", 2}};
  // "e" drops after sharing keys: its masks are removed, its input is not in.
  ASSERT_THAT(Run(deltas, examples, {{"e", 3}}), IsOk());
  FEDGE_ASSERT_OK_AND_ASSIGN(SecureRoundOutcome outcome, secure_->Finish(*manager_));
  EXPECT_EQ(outcome.stats.masked, 4);
  EXPECT_EQ(outcome.stats.recovered_mask_keys, 1);
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundOutcome round, manager_->CloseRound());
  EXPECT_EQ(round.participants, 4);
  EXPECT_EQ(round.total_examples, 20u);
  // Plain FedAvg of a..d weighted 1, 3, 10, 6.
  const std::vector<float> base = {1, 2, 3, 4};
  FEDGE_ASSERT_OK_AND_ASSIGN(auto latest, registry_->Latest());
  for (size_t k = 0; k < 4; ++k) {
    double sum = 0.0;
    for (const std::string& id : {"a", "b", "c", "d"}) {
      sum += deltas.at(id)[k] * static_cast<double>(examples.at(id));
    }
    EXPECT_NEAR(latest->parameters[k], base[k] + sum / 20.0, 1e-4) << k;
  }
}

TEST_F(SecureAggregationTest, AbortedRoundPublishesNothing) {
  const std::map<std::string, std::vector<float>> deltas = {{"a", {1, 1, 1, 1}},
                                                            {"b", {1, 1, 1, 1}},
                                                            {"c", {1, 1, 1, 1}},
                                                            {"d", {1, 1, 1, 1}},
                                                            {"e", {1, 1, 1, 1}}};
  const std::map<std::string, uint64_t> examples = {
      {"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}, {"e", 1}};
  // Only one client answers the unmasking phase; the threshold is 2.
  const absl::Status ran = Run(deltas, examples, {{"a", 4}, {"b", 4}, {"c", 4}, {"d", 4}});
  EXPECT_THAT(ran, StatusIs(absl::StatusCode::kAborted, HasSubstr("too few")));
  EXPECT_THAT(secure_->Finish(*manager_).status(), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(manager_->CloseRound().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no new model version")));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto latest, registry_->Latest());
  EXPECT_EQ(latest->version, 0u);
}

TEST_F(SecureAggregationTest, PollAnswersOnlyClosedPhasesOfTheCurrentRound) {
  EXPECT_THAT(secure_->Poll("a", 1, v1::SECAGG_PHASE_ADVERTISE_KEYS).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(secure_->Poll("a", 2, v1::SECAGG_PHASE_ADVERTISE_KEYS).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(secure_->ConfigFor(2).status(), StatusIs(absl::StatusCode::kNotFound));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::SecAggConfig config, secure_->ConfigFor(1));
  EXPECT_EQ(config.cohort_size(), 5);
}

TEST_F(SecureAggregationTest, SubmitAggregateValidatesItsInput) {
  AggregateContribution c;
  c.sum = {1, 2, 3};
  c.total_weight = 2;
  c.contributors = {"a", "b"};
  EXPECT_THAT(manager_->SubmitAggregate(c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dimension 3")));
  c.sum = {1, 2, 3, 4};
  c.contributors = {"a", "zed"};
  EXPECT_THAT(manager_->SubmitAggregate(c), StatusIs(absl::StatusCode::kPermissionDenied));
  c.contributors = {"a", "a"};
  EXPECT_THAT(manager_->SubmitAggregate(c), StatusIs(absl::StatusCode::kAlreadyExists));
  c.contributors = {"a", "b"};
  c.total_weight = 0;
  EXPECT_THAT(manager_->SubmitAggregate(c), StatusIs(absl::StatusCode::kInvalidArgument));
  c.total_weight = 2;
  ASSERT_THAT(manager_->SubmitAggregate(c), IsOk());
  EXPECT_THAT(manager_->SubmitAggregate(c), StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST(SecureAggregationCreateTest, RefusesStrategiesThatNeedIndividualUpdates) {
  for (const char* name : {"median", "trimmed-mean", "krum"}) {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto strategy, CreateStrategy(name, StrategyOptions{}));
    EXPECT_THAT(SecureAggregation::Create({}, *strategy).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reveals only their sum")))
        << name;
  }
  for (const char* name : {"fedavg", "fedadam", "fedyogi", "fedadagrad", "fedavgm"}) {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto strategy, CreateStrategy(name, StrategyOptions{}));
    EXPECT_THAT(SecureAggregation::Create({}, *strategy).status(), IsOk()) << name;
  }
}

}  // namespace
}  // namespace fedge::aggregator
