// fedge-sim --mode multiprocess: the same experiment as the in-process mode,
// run as a real deployment on loopback. One fedge-aggregator process and
// one fedge-client process per client, talking gRPC over TLS (a throwaway
// development CA, server certificate and signing key made with
// scripts/make-dev-certs.sh; devices authenticate with enrollment tokens).
//
// The aggregator gets the config's model, seed, strategy, codec, artifact
// precision, round count and clients per round; each client process reads
// its shard of the training split (the partition the in-process mode makes,
// for the same seed). After the aggregator's last round, every published
// version is read back from its state directory and evaluated on the test
// split, so the reports have the in-process mode's columns.
//
// Secure aggregation (secure_aggregation: secagg | secagg+) runs over gRPC
// as it would in a deployment. Not every in-process feature has a
// deployment counterpart yet: privacy, drift, proxy data, distillation,
// pruning, simulated secure-aggregation dropouts and the Synthetic dataset
// are refused (INVALID_ARGUMENT, naming the key). One process per client bounds
// the client count (each process loads LibTorch): at most 64.
#ifndef FEDGE_SIMULATIONS_MULTIPROCESS_H_
#define FEDGE_SIMULATIONS_MULTIPROCESS_H_

#include <filesystem>

#include "absl/status/statusor.h"
#include "fedge/simulations/config.h"
#include "fedge/simulations/simulation.h"

namespace fedge::simulations {

struct MultiprocessOptions {
  std::filesystem::path aggregator_binary;  // fedge-aggregator
  std::filesystem::path client_binary;      // fedge-client
  std::filesystem::path cert_script;        // scripts/make-dev-certs.sh
  // Scratch space: certificates, the aggregator's state, device states, logs.
  std::filesystem::path work_dir;
  // Most training examples any client can hold (the training split's size):
  // the weight cap of secure aggregation.
  uint64_t max_client_examples = 0;
};

// Checks that `config` can run as a deployment; the error names the key.
absl::Status CheckMultiprocessConfig(const SimulationConfig& config);

// Runs the experiment; `test` is the split the versions are evaluated on.
absl::StatusOr<SimulationResult> RunMultiprocess(const SimulationConfig& config, data::Dataset test,
                                                 const MultiprocessOptions& options,
                                                 const RoundCallback& on_round = {});

}  // namespace fedge::simulations

#endif  // FEDGE_SIMULATIONS_MULTIPROCESS_H_
