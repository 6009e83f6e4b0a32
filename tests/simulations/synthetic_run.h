// Small, fast simulation runs for tests: Synthetic(0, 0) with one client per
// device (natural partition), an mlp, two worker threads, no progress line.
#ifndef FEDGE_TESTS_SIMULATIONS_SYNTHETIC_RUN_H_
#define FEDGE_TESTS_SIMULATIONS_SYNTHETIC_RUN_H_

#include <string>
#include <utility>

#include "fedge/simulations/config.h"
#include "fedge/simulations/simulation.h"
#include "gtest/gtest.h"

namespace fedge::simulations::sim_testing {

inline SimulationConfig SyntheticRunConfig(const std::string& name, uint64_t seed, int devices,
                                           int clients_per_round, int rounds) {
  SimulationConfig config = DefaultConfig();
  config.run.name = name;
  config.run.seed = seed;
  config.run.threads = 2;
  config.run.progress = "off";
  config.data.dataset = "synthetic";
  config.data.synthetic.alpha = 0.0;
  config.data.synthetic.beta = 0.0;
  config.data.synthetic.num_devices = devices;
  config.partition.method = "natural";
  config.partition.num_clients = devices;
  config.model.architecture = "mlp";
  config.round.rounds = rounds;
  config.round.clients_per_round = clients_per_round;
  config.train.set_batch_size(10);
  config.train.set_learning_rate(0.05f);
  return config;
}

// The config's data; a failure to load fails the calling test.
inline data::TrainTest LoadTestData(const SimulationConfig& config) {
  auto data = LoadData(config);
  EXPECT_TRUE(data.ok()) << data.status();
  return std::move(*data);
}

}  // namespace fedge::simulations::sim_testing

#endif  // FEDGE_TESTS_SIMULATIONS_SYNTHETIC_RUN_H_
