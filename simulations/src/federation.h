// The aggregator side of an in-process simulation: the deployment's
// RoundCoordinator, over an in-memory state store, a manual clock (a round
// takes no time unless the simulation says so) and a fresh signing key,
// configured from the simulation's keys; devices reach it through an
// InProcTransport. Internal to fedge::sim.
#ifndef FEDGE_SIMULATIONS_SRC_FEDERATION_H_
#define FEDGE_SIMULATIONS_SRC_FEDERATION_H_

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/aggregator/in_memory_state_store.h"
#include "fedge/aggregator/round_coordinator.h"
#include "fedge/models/model_spec.h"
#include "fedge/models/signing.h"
#include "fedge/simulations/config.h"
#include "fedge/simulations/inproc_transport.h"

namespace fedge::simulations::internal {

// Keeps the coordinator's notices about the round a simulation drives.
// Thread safety: notices may arrive from any worker thread.
class RoundWatcher final : public aggregator::CoordinatorListener {
 public:
  void OnRoundOpened(const aggregator::RoundOpened& opened) override;
  void OnRoundEnded(const aggregator::RoundEnded& ended) override;
  // The newest notice since the last Take, if any.
  std::optional<aggregator::RoundOpened> TakeOpened();
  std::optional<aggregator::RoundEnded> TakeEnded();
  bool ended() const;

 private:
  mutable std::mutex mu_;
  std::optional<aggregator::RoundOpened> opened_;
  std::optional<aggregator::RoundEnded> ended_;
};

// What the federation is built from, besides the configuration.
struct FederationInputs {
  const SimulationConfig* config = nullptr;
  models::ModelSpec spec;
  std::vector<models::ParameterLayout> layout;
  std::span<const float> initial;  // version 0's parameters
  size_t clients = 0;              // clients with data
  uint64_t max_client_examples = 0;
  int clients_per_round = 0;
  // Adds activation ranges to int8 downloads (empty: none).
  std::function<absl::Status(std::span<const float>, v1::ModelArtifact&)> annotate;
};

// The coordinator options a simulation's keys mean: the same a deployment's
// fedge-aggregator gets for the same keys (multiprocess.cc passes them).
absl::StatusOr<aggregator::RoundCoordinatorOptions> CoordinatorOptionsFor(
    const FederationInputs& inputs);

struct Federation {
  aggregator::ManualClock clock;
  // The version being trained and the newest (all a simulation reads
  // back), and no journal of updates: a simulation never resumes a round.
  aggregator::InMemoryStateStore store{2, /*keep_journal=*/false};
  std::optional<models::SigningKey> key;
  RoundWatcher watcher;
  std::unique_ptr<aggregator::RoundCoordinator> coordinator;
  std::unique_ptr<InProcTransport> transport;
};

// Starts the coordinator and marks every client (`ids`) available.
absl::StatusOr<std::unique_ptr<Federation>> StartFederation(const FederationInputs& inputs,
                                                            const std::vector<std::string>& ids);

}  // namespace fedge::simulations::internal

#endif  // FEDGE_SIMULATIONS_SRC_FEDERATION_H_
