// Secure aggregation in the in-process simulation: SecAgg+ learns as well as
// plain FedAvg on the same data and seed, survives simulated dropouts,
// composes with distributed DP, aborts (publishing nothing) below the
// threshold, and the config refuses what cannot work with it.
#include <cmath>
#include <string>

#include "fedge/simulations/config.h"
#include "fedge/simulations/simulation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "synthetic_run.h"

namespace fedge::simulations {
namespace {

using ::testing::HasSubstr;

SimulationConfig Base() {
  SimulationConfig config = sim_testing::SyntheticRunConfig("secagg-test", 5, /*devices=*/40,
                                                            /*clients_per_round=*/12, /*rounds=*/8);
  config.train.set_local_epochs(1);
  config.clip_norm = 5.0;  // the fixed-point bound; synthetic updates stay well within it
  config.train.set_learning_rate(0.01f);
  return config;
}

// One round: the secure sum is the plain weighted sum up to fixed-point
// rounding, so the published models agree to ~1e-7. (Over many rounds the
// runs drift apart the way any two runs whose models differ in the last bits
// do: local training amplifies tiny differences, so later rounds are
// compared by accuracy.)
TEST(SecAggSimulationTest, OneRoundEqualsPlainFedAvgUpToRounding) {
  SimulationConfig plain = Base();
  plain.round.rounds = 1;
  SimulationConfig secure = plain;
  secure.secure_aggregation.protocol = "secagg+";
  auto a = RunSimulation(plain, sim_testing::LoadTestData(plain));
  auto b = RunSimulation(secure, sim_testing::LoadTestData(secure));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->final_parameters.size(), b->final_parameters.size());
  double max_diff = 0.0;
  for (size_t k = 0; k < a->final_parameters.size(); ++k) {
    max_diff = std::max(
        max_diff, static_cast<double>(std::abs(a->final_parameters[k] - b->final_parameters[k])));
  }
  EXPECT_GT(max_diff, 0.0);  // fixed point is not float: some rounding shows
  EXPECT_LT(max_diff, 1e-5);
}

TEST(SecAggSimulationTest, SecAggPlusLearnsAsWellAsPlainFedAvg) {
  const SimulationConfig plain = Base();
  SimulationConfig secure = Base();
  secure.secure_aggregation.protocol = "secagg+";
  auto a = RunSimulation(plain, sim_testing::LoadTestData(plain));
  auto b = RunSimulation(secure, sim_testing::LoadTestData(secure));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rounds.size(), 8u);
  for (const RoundRecord& r : b->rounds) {
    EXPECT_EQ(r.participants, 12);
    EXPECT_EQ(r.secagg_dropped, 0);
    EXPECT_FALSE(r.secagg_aborted);
    // Upload: the masked vector (4 bytes per parameter, plus the weight)
    // and a few hundred bytes of keys and shares per client.
    EXPECT_GT(r.bytes_up, 12u * 4u * static_cast<uint64_t>(b->summary.num_parameters));
  }
  EXPECT_NEAR(a->summary.final_accuracy, b->summary.final_accuracy, 0.03);
  EXPECT_GT(b->summary.final_accuracy, 0.3);  // 10 classes: chance is 0.1
}

TEST(SecAggSimulationTest, DropoutsAreRecoveredAndCounted) {
  SimulationConfig config = Base();
  config.secure_aggregation.protocol = "secagg+";
  config.secure_aggregation.dropout = 0.25;  // 3 of 12, each at a random phase
  config.secure_aggregation.threshold = 0.4;
  auto result = RunSimulation(config, sim_testing::LoadTestData(config));
  ASSERT_TRUE(result.ok()) << result.status();
  int dropped = 0;
  for (const RoundRecord& r : result->rounds) {
    EXPECT_FALSE(r.secagg_aborted) << r.secagg_abort_reason;
    // Clients that drop only at unmasking are still in the sum.
    EXPECT_LE(r.secagg_dropped, 3);
    EXPECT_EQ(r.participants, 12 - r.secagg_dropped);
    dropped += r.secagg_dropped;
  }
  EXPECT_GT(dropped, 0);
  EXPECT_GT(result->summary.final_accuracy, 0.3);
}

TEST(SecAggSimulationTest, RoundsBelowThresholdAbortAndPublishNothing) {
  SimulationConfig config = Base();
  config.round.rounds = 2;
  config.secure_aggregation.protocol = "secagg";
  config.secure_aggregation.threshold = 11;  // of 11 neighbours: any dropout is fatal
  config.secure_aggregation.dropout = 0.5;
  auto result = RunSimulation(config, sim_testing::LoadTestData(config));
  ASSERT_TRUE(result.ok()) << result.status();
  for (const RoundRecord& r : result->rounds) {
    EXPECT_TRUE(r.secagg_aborted);
    EXPECT_THAT(r.secagg_abort_reason, HasSubstr("aborted"));
    EXPECT_EQ(r.participants, 0);
  }
  // No version was published: the model is the initial one.
  EXPECT_EQ(result->rounds.front().test_accuracy, result->rounds.back().test_accuracy);
}

TEST(SecAggSimulationTest, ComposesWithDistributedDiscreteGaussian) {
  SimulationConfig config = Base();
  config.round.rounds = 3;
  config.secure_aggregation.protocol = "secagg+";
  config.privacy.mode = "distributed";
  config.privacy.mechanism = "discrete-gaussian";
  config.privacy.noise_multiplier = 0.5;
  config.privacy.clip_norm = 1.0;
  config.privacy.random = "seeded";
  auto result = RunSimulation(config, sim_testing::LoadTestData(config));
  ASSERT_TRUE(result.ok()) << result.status();
  for (const RoundRecord& r : result->rounds) {
    EXPECT_FALSE(r.secagg_aborted);
    EXPECT_GT(r.participants, 0);
    EXPECT_TRUE(std::isfinite(r.epsilon));
  }
}

TEST(SecAggSimulationTest, ConfigRefusesWhatCannotWork) {
  SimulationConfig config = Base();
  config.secure_aggregation.protocol = "secagg+";
  config.strategy = "median";
  EXPECT_THAT(std::string(ValidateConfig(config).message()),
              HasSubstr("needs every individual update"));
  config.strategy = "krum";
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("only their sum"));
  config.strategy = "fedavg";
  config.codec = "int8";
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("codec 'int8'"));
  config.codec = "fp32";
  config.secure_aggregation.neighbours = 5;
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("must be even"));
  config.secure_aggregation.neighbours = 0;
  config.secure_aggregation.threshold = 2.5;
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("whole count"));
  // One share would let a single neighbour rebuild a device's masks.
  config.secure_aggregation.threshold = 1;
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("whole count >= 2"));
  config.secure_aggregation.threshold = 0.5;
  // A round of two could be unmasked with one survivor's update alone.
  config.round.clients_per_round = 2;
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("min_survivors"));
  config.round.clients_per_round = Base().round.clients_per_round;
  config.secure_aggregation = SecureAggregationConfig{};
  config.secure_aggregation.dropout = 0.1;
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("dropout is set"));
  // The YAML / --set keys.
  SimulationConfig keyed = Base();
  ASSERT_TRUE(SetConfigValue(keyed, "secure_aggregation", "secagg+").ok());
  ASSERT_TRUE(SetConfigValue(keyed, "secure_aggregation.threshold", "0.6").ok());
  ASSERT_TRUE(SetConfigValue(keyed, "secure_aggregation.dropout", "0.1").ok());
  EXPECT_EQ(keyed.secure_aggregation.protocol, "secagg+");
  EXPECT_EQ(keyed.secure_aggregation.threshold, 0.6);
  EXPECT_FALSE(SetConfigValue(keyed, "secure_aggregation", "secagg++").ok());
  EXPECT_FALSE(SetConfigValue(keyed, "secure_aggregation.dropout", "1").ok());
}

}  // namespace
}  // namespace fedge::simulations
