#include "federation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "fedge/models/artifact.h"
#include "fedge/privacy/secagg/protocol.h"
#include "fedge/proto/status_macros.h"

namespace fedge::simulations::internal {

void RoundWatcher::OnRoundOpened(const aggregator::RoundOpened& opened) {
  std::lock_guard<std::mutex> lock(mu_);
  opened_ = opened;
}

void RoundWatcher::OnRoundEnded(const aggregator::RoundEnded& ended) {
  std::lock_guard<std::mutex> lock(mu_);
  ended_ = ended;
}

std::optional<aggregator::RoundOpened> RoundWatcher::TakeOpened() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(opened_, std::nullopt);
}

std::optional<aggregator::RoundEnded> RoundWatcher::TakeEnded() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(ended_, std::nullopt);
}

bool RoundWatcher::ended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ended_.has_value();
}

absl::StatusOr<aggregator::RoundCoordinatorOptions> CoordinatorOptionsFor(
    const FederationInputs& inputs) {
  const SimulationConfig& config = *inputs.config;
  aggregator::RoundCoordinatorOptions o;
  // Rounds close when every selected device delivered: a simulated device
  // never straggles, and a secure-aggregation dropout is ended by the
  // simulation advancing the clock past the phase's deadline.
  o.goal = inputs.clients_per_round;
  o.min_clients = 1;
  o.min_updates = 1;
  o.deadline = std::chrono::hours(1);
  o.availability_window = std::chrono::hours(24 * 365);
  o.train = config.train;
  o.train.set_seed(config.run.seed);
  o.lr_decay = config.lr_decay;
  o.seed = config.run.seed;
  if (UsesPoissonSampling(config)) {
    // Every client joins each round independently with the accounted rate;
    // the round waits for all that were drawn.
    const double rate = std::min(1.0, static_cast<double>(inputs.clients_per_round) /
                                          static_cast<double>(std::max<size_t>(1, inputs.clients)));
    o.goal = static_cast<int>(inputs.clients);
    o.cohort_sampler = aggregator::SeededPoissonCohortSampler(rate, config.run.seed);
  }
  o.strategy = config.strategy;
  o.strategy_options = config.strategy_options;
  o.codec = config.codec;
  o.pruning = PruningOptionsFor(config);
  o.checkpoint_every = 0;  // in memory, the journal alone restores a round
  if (config.privacy.mode != "none") {
    FEDGE_ASSIGN_OR_RETURN(o.privacy,
                           PrivateAggregationOptionsFor(config, static_cast<int>(inputs.clients)));
  }
  if (config.secure_aggregation.protocol != "none") {
    aggregator::SecureAggregationOptions secure;
    FEDGE_ASSIGN_OR_RETURN(secure.protocol.protocol,
                           privacy::secagg::ParseProtocol(config.secure_aggregation.protocol));
    secure.protocol.threshold = config.secure_aggregation.threshold;
    secure.protocol.neighbours = config.secure_aggregation.neighbours;
    secure.protocol.min_survivors = config.secure_aggregation.min_survivors;
    secure.protocol.clip_bound =
        config.clip_norm > 0.0 ? config.clip_norm : config.secure_aggregation.bound;
    // Without DP, updates are weighted by example count as in plain FedAvg:
    // the cap is the largest client, so no weight is cut.
    if (config.privacy.mode == "none") secure.max_weight = inputs.max_client_examples;
    secure.graph_seed = config.run.seed;
    o.secure_aggregation = secure;
  }
  FEDGE_ASSIGN_OR_RETURN(const models::ArtifactEncoding encoding, ArtifactEncodingFor(config));
  o.precision = encoding.precision;
  o.sparse_artifacts = encoding.sparse;
  o.annotate = inputs.annotate;
  if (config.monitor.enabled) {
    o.drift = config.reaction.policy;
    o.drift_population = static_cast<int64_t>(std::max<size_t>(1, inputs.clients));
    o.drift_extra_rounds = config.reaction.extra_rounds;
    o.drift_extra_round_devices = config.reaction.extra_round_clients > 0
                                      ? config.reaction.extra_round_clients
                                      : inputs.clients_per_round;
  }
  o.log_events = false;  // the report says what happened
  return o;
}

absl::StatusOr<std::unique_ptr<Federation>> StartFederation(const FederationInputs& inputs,
                                                            const std::vector<std::string>& ids) {
  FEDGE_ASSIGN_OR_RETURN(aggregator::RoundCoordinatorOptions options,
                         CoordinatorOptionsFor(inputs));
  auto federation = std::make_unique<Federation>();
  FEDGE_ASSIGN_OR_RETURN(federation->key, models::SigningKey::Generate());
  options.signing_key = &*federation->key;
  FEDGE_ASSIGN_OR_RETURN(
      options.initial_model,
      models::BuildFp32Artifact(inputs.spec, inputs.layout, inputs.initial, {}));
  FEDGE_ASSIGN_OR_RETURN(federation->coordinator,
                         aggregator::RoundCoordinator::Start(
                             std::move(options), &federation->store, &federation->clock,
                             &federation->watcher));
  federation->transport = std::make_unique<InProcTransport>(federation->coordinator.get());
  for (const std::string& id : ids) federation->coordinator->MarkAvailable(id);
  return federation;
}

}  // namespace fedge::simulations::internal
