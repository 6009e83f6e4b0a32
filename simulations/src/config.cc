#include "fedge/simulations/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "fedge/models/inference.h"
#include "fedge/models/model_zoo.h"
#include "fedge/models/update_codec.h"
#include "fedge/privacy/clipper.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/privacy/update_privacy.h"
#include "fedge/proto/status_macros.h"

namespace fedge::simulations {

SimulationConfig DefaultConfig() {
  // Local training for the default experiment, chosen on Fashion-MNIST with
  // Dirichlet(0.5) over 100 clients (see docs/benchmarks.md): three local
  // epochs of SGD with momentum, and a per-round learning-rate decay that
  // damps the round-to-round swings a skewed cohort causes late in training.
  SimulationConfig config;
  config.round.rounds = 80;
  config.train.set_local_epochs(3);
  config.train.set_batch_size(32);
  config.train.set_learning_rate(0.02f);
  config.train.set_momentum(0.9f);
  config.train.set_weight_decay(0.0f);
  config.train.set_proximal_mu(0.0f);
  config.lr_decay = 0.965;
  return config;
}

std::vector<ConfigKeyInfo> ConfigKeys() {
  std::vector<ConfigKeyInfo> info;
  for (const config::KeyInfo& k : ConfigTable().Describe(DefaultConfig())) {
    info.push_back({k.key, k.type, k.value, k.help});
  }
  return info;
}

absl::Status SetConfigValue(SimulationConfig& config, const std::string& key,
                            const std::string& value) {
  return ConfigTable().Set(config, key, value);
}

absl::Status ApplyYaml(SimulationConfig& config, const std::string& yaml_text,
                       const std::string& origin) {
  return ConfigTable().ApplyYaml(config, yaml_text, origin);
}

absl::Status ApplyConfigLayers(SimulationConfig& config, const std::vector<std::string>& files,
                               const std::vector<std::string>& assignments,
                               const std::vector<std::string>& labels) {
  return ConfigTable().ApplyLayers(config, files, assignments, labels);
}

int ClientsPerRound(const SimulationConfig& config) {
  if (config.round.fraction > 0.0) {
    return std::max(1, static_cast<int>(
                           std::ceil(config.round.fraction * config.partition.num_clients - 1e-9)));
  }
  return config.round.clients_per_round;
}

std::optional<models::PruningOptions> PruningOptionsFor(const SimulationConfig& config) {
  if (!(config.prune.sparsity > 0.0)) return std::nullopt;
  models::PruningOptions options;
  options.target_sparsity = config.prune.sparsity;
  options.begin_round = config.prune.begin_round;
  options.end_round = config.prune.end_round > 0
                          ? config.prune.end_round
                          : std::max(config.prune.begin_round, 2 * config.round.rounds / 3);
  options.frequency = config.prune.every;
  options.structured = config.prune.structured;
  return options;
}

absl::StatusOr<models::ArtifactEncoding> ArtifactEncodingFor(const SimulationConfig& config) {
  models::ArtifactEncoding encoding;
  FEDGE_ASSIGN_OR_RETURN(encoding.precision,
                         models::ParseArtifactPrecision(config.artifact.precision));
  encoding.sparse = config.artifact.sparse == "on" ||
                    (config.artifact.sparse == "auto" && config.prune.sparsity > 0.0);
  return encoding;
}

std::vector<int> SecAggDropPhases(const SimulationConfig& config, uint64_t round,
                                  size_t cohort_size) {
  std::vector<int> drop_at(cohort_size, 5);
  std::mt19937_64 rng(config.run.seed ^ (0x44524F50ULL * (round + 1)));
  std::vector<size_t> order(cohort_size);
  std::iota(order.begin(), order.end(), size_t{0});
  std::shuffle(order.begin(), order.end(), rng);
  const auto drops = static_cast<size_t>(
      std::llround(config.secure_aggregation.dropout * static_cast<double>(cohort_size)));
  for (size_t j = 0; j < drops; ++j) drop_at[order[j]] = 1 + static_cast<int>(rng() % 4);
  return drop_at;
}

bool UsesErrorFeedback(const SimulationConfig& config) {
  if (config.error_feedback == "on") return true;
  if (config.error_feedback == "off") return false;
  return config.codec == "topk";
}

bool UsesPoissonSampling(const SimulationConfig& config) {
  if (config.round.sampling == "poisson") return true;
  if (config.round.sampling == "fixed") return false;
  return config.privacy.mode == "central" || config.privacy.mode == "distributed";
}

absl::StatusOr<aggregator::PrivateAggregationOptions> PrivateAggregationOptionsFor(
    const SimulationConfig& config, int num_clients) {
  const int per_round = ClientsPerRound(config);
  return aggregator::PrivateAggregationOptionsFrom(
      config.privacy, per_round,
      std::min(1.0, static_cast<double>(per_round) / std::max(1, num_clients)), config.run.seed);
}

absl::Status ValidateConfig(const SimulationConfig& config) {
  const int per_round = ClientsPerRound(config);
  if (per_round > config.partition.num_clients) {
    return absl::InvalidArgumentError(absl::StrCat("round.clients_per_round (", per_round,
                                                   ") exceeds partition.num_clients (",
                                                   config.partition.num_clients, ")"));
  }
  if (config.data.dataset == "mnist" && config.data.dir.rfind(data::kDefaultFashionMnistDir, 0) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.dataset 'mnist' needs data.dir set to a folder of MNIST IDX files; ",
                     data::kDefaultFashionMnistDir, " holds Fashion-MNIST"));
  }
  if (config.partition.method == "natural") {
    if (config.data.dataset != "synthetic") {
      return absl::InvalidArgumentError(
          "partition.method 'natural' needs data.dataset 'synthetic' (the only dataset with "
          "devices)");
    }
    if (config.partition.num_clients != config.data.synthetic.num_devices) {
      return absl::InvalidArgumentError(absl::StrCat(
          "partition.method 'natural' gives one client per device: set partition.num_clients to "
          "data.synthetic.devices (",
          config.data.synthetic.num_devices, "), got ", config.partition.num_clients));
    }
  }
  if (config.strategy == "fedprox" && !(config.train.proximal_mu() > 0.0f)) {
    return absl::InvalidArgumentError(
        "strategy.name 'fedprox' needs train.proximal_mu > 0 (the proximal term is what makes it "
        "FedProx)");
  }
  if (absl::StatusOr<std::unique_ptr<models::UpdateCodec>> codec =
          models::CreateUpdateCodec(config.codec, config.codec_options);
      !codec.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("update.codec '", config.codec, "': ", codec.status().message()));
  }
  if (std::optional<models::PruningOptions> pruning = PruningOptionsFor(config)) {
    if (pruning->end_round > config.round.rounds) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prune.end_round (", pruning->end_round, ") is after the last round (round.rounds = ",
          config.round.rounds, "): the target sparsity would never be reached"));
    }
    if (pruning->end_round < pruning->begin_round) {
      return absl::InvalidArgumentError(absl::StrCat("prune.end_round (", pruning->end_round,
                                                     ") is before prune.begin_round (",
                                                     pruning->begin_round, ")"));
    }
    if (config.artifact.sparse == "off") {
      return absl::InvalidArgumentError(
          "prune.sparsity > 0 with model.sparse_artifact off: devices learn which weights are "
          "pruned from the sparse artifact, and would train them back; use on or auto");
    }
  }
  if (config.proxy.examples == 0 && (config.eval.int8 || config.distill.student != "none")) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.eval.int8 ? "eval.int8 (activation calibration)" : "distill.student",
                     " needs the aggregator's proxy set: set proxy.examples > 0"));
  }
  if (config.privacy.mode == "distributed" && config.secure_aggregation.protocol == "none") {
    return absl::InvalidArgumentError(
        "privacy.mode 'distributed' without secure_aggregation: each device adds only a share of "
        "the noise, which protects it only inside a sum the aggregator cannot see apart; in the "
        "clear every update would reach the aggregator almost unnoised, and the epsilon reported "
        "(the sum's) would not hold. Set secure_aggregation to secagg or secagg+, or use "
        "privacy.mode 'local' (each device noises fully) or 'central'");
  }
  if (config.privacy.mode == "distributed" && config.codec != "fp32") {
    return absl::InvalidArgumentError(absl::StrCat(
        "update.codec '", config.codec,
        "' with privacy.mode 'distributed': each client's noise share is private only inside the "
        "exact sum of all shares, which a lossy per-client codec would change; use update.codec "
        "fp32 (or central or local DP, which compose with every codec)"));
  }
  if (config.drift.type != "none" && config.drift.round > config.round.rounds) {
    return absl::InvalidArgumentError(absl::StrCat("drift.round (", config.drift.round,
                                                   ") is after the last round (",
                                                   config.round.rounds, ")"));
  }
  if (config.reaction.policy.reaction != "none" && !config.monitor.enabled) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy.reaction '", config.reaction.policy.reaction,
        "' needs monitor.enabled on (the reaction is driven by the clients' drift reports)"));
  }
  if (config.monitor.enabled) {
    client::DriftMonitorOptions options = config.monitor.options;
    options.features = 1;  // the real count depends on the dataset
    absl::StatusOr<std::unique_ptr<client::DriftMonitor>> monitor =
        client::DriftMonitor::Create("config", options);
    if (!monitor.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("monitor: ", monitor.status().message()));
    }
    FEDGE_RETURN_IF_ERROR(aggregator::DriftTracker::Create(config.reaction.policy, 1).status());
  }
  absl::StatusOr<std::unique_ptr<aggregator::Strategy>> strategy =
      aggregator::CreateStrategy(config.strategy, config.strategy_options);
  if (!strategy.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("strategy '", config.strategy, "': ", strategy.status().message()));
  }
  if (config.secure_aggregation.protocol != "none") {
    const std::string which =
        absl::StrCat("secure_aggregation '", config.secure_aggregation.protocol, "'");
    if (!(*strategy)->NewAccumulator(1)->streaming()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strategy.name '", config.strategy, "' needs every individual update, but ", which,
          " shows the aggregator only their sum; use fedavg, fedavgm, fedadam, fedyogi, fedadagrad "
          "or fedprox"));
    }
    if (config.codec != "fp32") {
      return absl::InvalidArgumentError(absl::StrCat(
          "codec '", config.codec, "' with ", which,
          ": updates travel fixed-point encoded and masked, no update codec applies; use codec "
          "'fp32'"));
    }
    if (config.privacy.clipping != "fixed" && config.privacy.mode != "none" &&
        config.privacy.mode != "central") {
      return absl::InvalidArgumentError(absl::StrCat(
          "privacy.clipping '", config.privacy.clipping, "' with ", which, " and privacy.mode '",
          config.privacy.mode,
          "': adaptive clipping needs the count of updates within the bound noised by a trusted "
          "aggregator; use privacy.mode 'central' (the count then travels masked like the "
          "updates) or privacy.clipping 'fixed'"));
    }
    if (config.round.fraction == 0.0 &&
        config.round.clients_per_round < config.secure_aggregation.min_survivors) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round.clients_per_round ", config.round.clients_per_round, " with ", which,
          ": below secure_aggregation.min_survivors ", config.secure_aggregation.min_survivors,
          " (a sum of fewer devices would reveal too much), no round could finish"));
    }
    if (config.secure_aggregation.threshold >= 1.0 &&
        (config.secure_aggregation.threshold < 2.0 ||
         config.secure_aggregation.threshold != std::floor(config.secure_aggregation.threshold))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "secure_aggregation.threshold ", config.secure_aggregation.threshold,
          ": give a fraction below 1 or a whole count >= 2 (with 1, a single neighbour could "
          "rebuild a device's masks)"));
    }
    if (config.secure_aggregation.neighbours % 2 == 1) {
      return absl::InvalidArgumentError(absl::StrCat("secure_aggregation.neighbours ",
                                                     config.secure_aggregation.neighbours,
                                                     ": the SecAgg+ graph links each client to k/2 "
                                                     "clients on either side, so k must be even"));
    }
  } else if (config.secure_aggregation.dropout > 0.0) {
    return absl::InvalidArgumentError(
        "secure_aggregation.dropout is set but secure_aggregation is 'none'");
  }
  if (config.privacy.mode != "none") {
    if (!(*strategy)->NewAccumulator(1)->streaming()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strategy.name '", config.strategy, "' needs every individual update, but privacy.mode '",
          config.privacy.mode,
          "' adds noise to the sum of clipped updates; use fedavg, fedavgm, fedadam, fedyogi, "
          "fedadagrad or fedprox"));
    }
    if ((config.privacy.mode == "central" || config.privacy.mode == "distributed") &&
        !UsesPoissonSampling(config)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round.sampling 'fixed' with privacy.mode '", config.privacy.mode,
          "': the privacy accounting assumes Poisson sampling; set round.sampling to poisson or "
          "auto"));
    }
    if (config.reaction.policy.reaction == "extra-round") {
      return absl::InvalidArgumentError(absl::StrCat(
          "policy.reaction 'extra-round' with privacy.mode '", config.privacy.mode,
          "': extra rounds pick the clients that reported drift, not a Poisson sample, so the "
          "privacy accounting would not hold; use policy.reaction 'alert' or 'none'"));
    }
    FEDGE_ASSIGN_OR_RETURN(auto options,
                           PrivateAggregationOptionsFor(config, config.partition.num_clients));
    // Checks the combination (mechanism, mode, clipping); the model size is
    // not known yet, so the integer-scale checks wait for the run.
    if (absl::StatusOr<std::unique_ptr<aggregator::PrivateAggregation>> trial =
            aggregator::PrivateAggregation::Create(options, 1);
        !trial.ok()) {
      return absl::InvalidArgumentError(trial.status().message());
    }
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> DescribeConfig(const SimulationConfig& config) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const config::KeyInfo& k : ConfigTable().Describe(config)) out.emplace_back(k.key, k.value);
  return out;
}

}  // namespace fedge::simulations
