// RunSimulation: a federated experiment with N virtual clients in one
// process.
//
// Each round the aggregator's RoundManager samples a cohort and opens a
// round; the cohort's DeviceClients run their tasks on a WorkerPool (one
// model replica per worker, LibTorch threads set explicitly) through the
// InProcTransport, which folds every update into the strategy's accumulator
// as it arrives; the round closes, a new version is published, and the
// global model is evaluated on the test split (in parallel over workers).
//
// A virtual client costs its id and its index list: the dataset is shared.
#ifndef FEDGE_SIMULATIONS_SIMULATION_H_
#define FEDGE_SIMULATIONS_SIMULATION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/data/dataset.h"
#include "fedge/simulations/config.h"
#include "fedge/simulations/report.h"
#include "fedge/v1/model.pb.h"

namespace fedge::simulations {

struct SimulationResult {
  std::vector<RoundRecord> rounds;
  RunSummary summary;
  std::vector<float> final_parameters;
  // The last published version as devices download it, and the distilled
  // student's artifact (null unless distill.student is set).
  std::shared_ptr<const v1::ModelArtifact> final_artifact;
  std::shared_ptr<const v1::ModelArtifact> student_artifact;
  // Training examples the clients hold, and those held out as the
  // aggregator's proxy set (sorted store indices).
  int64_t client_examples = 0;
  std::vector<int32_t> proxy_indices;
  // Set when drift is injected or clients monitor for it.
  std::optional<DriftRunSummary> drift;
};

// Called on the driving thread after every round.
using RoundCallback = std::function<void(const RoundRecord& record)>;

// Loads the dataset named by config.data (IDX files or Synthetic).
absl::StatusOr<data::TrainTest> LoadData(const SimulationConfig& config);

// Runs the experiment on `data` (consumed: its buffers move into the shared
// example stores). Validates the config first (ValidateConfig).
absl::StatusOr<SimulationResult> RunSimulation(const SimulationConfig& config, data::TrainTest data,
                                               const RoundCallback& on_round = {});

// Peak resident set size of this process so far, in MiB.
double PeakRssMb();

}  // namespace fedge::simulations

#endif  // FEDGE_SIMULATIONS_SIMULATION_H_
