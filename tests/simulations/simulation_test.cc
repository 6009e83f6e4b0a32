// End-to-end: a short federated simulation that must learn.
#include "fedge/simulations/simulation.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "synthetic_run.h"

namespace fedge::simulations {
namespace {

using ::testing::HasSubstr;

SimulationConfig SyntheticConfig() {
  SimulationConfig config = sim_testing::SyntheticRunConfig("synthetic-test", 5, /*devices=*/20,
                                                            /*clients_per_round=*/8, /*rounds=*/15);
  config.train.set_local_epochs(2);
  return config;
}

TrainTest Data(const SimulationConfig& config) { return sim_testing::LoadTestData(config); }

TEST(SimulationTest, FedAvgOnSyntheticLearnsWellAboveChance) {
  const SimulationConfig config = SyntheticConfig();
  std::vector<int> seen_rounds;
  auto result = RunSimulation(config, Data(config),
                              [&](const RoundRecord& r) { seen_rounds.push_back(r.round); });
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rounds.size(), 15u);
  EXPECT_EQ(seen_rounds.size(), 15u);
  const RoundRecord& first = result->rounds.front();
  const RoundRecord& last = result->rounds.back();
  // 10 classes: chance is 10%.
  EXPECT_GT(last.test_accuracy, 0.5) << "first round " << first.test_accuracy;
  EXPECT_LT(last.test_loss, first.test_loss);
  EXPECT_EQ(result->summary.final_accuracy, last.test_accuracy);
  for (const RoundRecord& r : result->rounds) {
    EXPECT_EQ(r.participants, 8);
    EXPECT_GT(r.bytes_up, 8u * 4u * static_cast<uint64_t>(result->summary.num_parameters));
    EXPECT_GT(r.bytes_down, r.bytes_up);  // artifacts + tasks are a little larger than updates
  }
  EXPECT_EQ(result->final_parameters.size(), static_cast<size_t>(result->summary.num_parameters));
}

TEST(SimulationTest, SameSeedSameRunBitForBitOnOneThread) {
  SimulationConfig config = SyntheticConfig();
  config.round.rounds = 3;
  config.run.threads = 1;
  auto a = RunSimulation(config, Data(config));
  auto b = RunSimulation(config, Data(config));
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < a->rounds.size(); ++i) {
    EXPECT_EQ(a->rounds[i].test_accuracy, b->rounds[i].test_accuracy) << i;
  }
  EXPECT_EQ(a->final_parameters, b->final_parameters);
}

// With several workers, updates arrive in a different order each run, and
// float addition is not associative: results agree to rounding, not bits.
TEST(SimulationTest, SameSeedSameRunToRoundingOnTwoThreads) {
  SimulationConfig config = SyntheticConfig();
  config.round.rounds = 3;
  config.run.threads = 2;
  auto a = RunSimulation(config, Data(config));
  auto b = RunSimulation(config, Data(config));
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < a->rounds.size(); ++i) {
    EXPECT_NEAR(a->rounds[i].test_accuracy, b->rounds[i].test_accuracy, 0.005) << i;
  }
  ASSERT_EQ(a->final_parameters.size(), b->final_parameters.size());
  for (size_t i = 0; i < a->final_parameters.size(); ++i) {
    ASSERT_NEAR(a->final_parameters[i], b->final_parameters[i], 1e-4) << i;
  }
}

TEST(SimulationTest, EveryStrategyRunsARound) {
  for (const char* strategy : {"fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "median",
                               "trimmed-mean", "krum"}) {
    SimulationConfig config = SyntheticConfig();
    config.strategy = strategy;
    config.round.rounds = 2;
    config.strategy_options.server_learning_rate = 0.5;
    auto result = RunSimulation(config, Data(config));
    ASSERT_TRUE(result.ok()) << strategy << ": " << result.status();
    EXPECT_GT(result->rounds.back().test_accuracy, 0.0) << strategy;
  }
}

TEST(SimulationTest, EveryUpdateCodecRunsEndToEndAndShrinksTheUpload) {
  std::map<std::string, uint64_t> bytes_up;
  for (const char* codec : {"fp32", "fp16", "int8", "qsgd", "topk"}) {
    SimulationConfig config = SyntheticConfig();
    config.codec = codec;
    config.round.rounds = 2;
    auto result = RunSimulation(config, Data(config));
    ASSERT_TRUE(result.ok()) << codec << ": " << result.status();
    EXPECT_GT(result->rounds.back().test_accuracy, 0.1) << codec;
    bytes_up[codec] = result->summary.bytes_up;
  }
  // fp16 halves the payload, int8 quarters it, top-1% keeps ~2% (index + value).
  EXPECT_NEAR(static_cast<double>(bytes_up["fp16"]) / bytes_up["fp32"], 0.5, 0.02);
  EXPECT_NEAR(static_cast<double>(bytes_up["int8"]) / bytes_up["fp32"], 0.25, 0.02);
  EXPECT_LT(bytes_up["qsgd"], bytes_up["fp16"]);
  EXPECT_LT(static_cast<double>(bytes_up["topk"]) / bytes_up["fp32"], 0.05);
}

TEST(SimulationTest, DirichletPartitionOverSyntheticLabels) {
  SimulationConfig config = SyntheticConfig();
  config.partition.method = "dirichlet";
  config.partition.num_clients = 30;
  config.round.rounds = 2;
  auto result = RunSimulation(config, Data(config));
  ASSERT_TRUE(result.ok()) << result.status();
}

TEST(SimulationTest, InvalidConfigIsRefusedBeforeAnyWork) {
  SimulationConfig config = SyntheticConfig();
  config.round.clients_per_round = 21;
  auto result = RunSimulation(config, Data(config));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("round.clients_per_round"));
}

TEST(SimulationTest, DivergingTrainingIsReportedNotPublished) {
  SimulationConfig config = SyntheticConfig();
  config.train.set_learning_rate(1e9f);
  config.round.rounds = 3;
  auto result = RunSimulation(config, Data(config));
  EXPECT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(),
              ::testing::AnyOf(HasSubstr("diverged"), HasSubstr("finite")));
}

// Gaussian noise on half of the Synthetic clients from round 6: ks on the
// clients' input summaries finds them, the aggregator reacts with extra
// rounds, and drift.json-level figures are consistent.
TEST(SimulationTest, DriftIsInjectedDetectedAndReactedTo) {
  SimulationConfig config = SyntheticConfig();
  config.round.rounds = 10;
  config.drift.type = "noise";
  config.drift.noise_std = 2.0;
  config.drift.round = 6;
  config.drift.fraction = 0.5;
  config.monitor.enabled = true;
  config.monitor.options.detectors = {"ks", "adwin"};
  config.monitor.options.trigger = "ks";
  config.monitor.samples_per_round = 64;
  config.reaction.policy.reaction = "extra-round";
  config.reaction.policy.threshold = 0.2;
  config.reaction.extra_rounds = 2;
  auto result = RunSimulation(config, Data(config));
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->drift.has_value());
  const DriftRunSummary& drift = *result->drift;
  EXPECT_EQ(drift.clients, 20);
  EXPECT_EQ(drift.drifted_clients, 10);
  EXPECT_EQ(drift.injection_round, 6);
  ASSERT_EQ(drift.detectors.size(), 2u);
  const DetectorDriftStats& ks = drift.detectors[0];
  EXPECT_EQ(ks.detector, "ks:features");
  EXPECT_EQ(ks.drifted_clients + ks.clean_clients, 20);
  EXPECT_GE(ks.detected_within_one_round, 8) << "of " << ks.drifted_clients;
  EXPECT_LE(ks.clean_with_alarm, 2);
  // Reports arrive from round 6 on; the policy adds an extra round to the
  // next two rounds.
  ASSERT_EQ(drift.rounds.size(), 10u);
  for (int r = 0; r < 5; ++r) EXPECT_FALSE(drift.rounds[r].extra_round);
  EXPECT_GE(drift.rounds[5].reports, 4);
  EXPECT_TRUE(drift.rounds[5].alert);
  EXPECT_TRUE(drift.rounds[6].extra_round);
  EXPECT_TRUE(drift.rounds[7].extra_round);
  EXPECT_EQ(drift.extra_rounds, 2);
  int64_t reports = 0;
  for (const auto& [version, count] : drift.reports_by_version) reports += count;
  int64_t per_round = 0;
  for (const DriftRoundRecord& r : drift.rounds) per_round += r.reports;
  EXPECT_EQ(reports, per_round);
  // Each report made its client fine-tune locally once.
  EXPECT_EQ(drift.fine_tunes, reports);
  // Rounds with an extra round aggregate two cohorts.
  EXPECT_EQ(result->rounds[6].participants, 16);
  EXPECT_EQ(result->rounds[5].participants, 8);
}

}  // namespace
}  // namespace fedge::simulations
