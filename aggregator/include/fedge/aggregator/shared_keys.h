// The configuration keys fedge-sim and fedge-aggregator share, written once
// (fedge/proto/key_table.h): `strategy.*` (the server's aggregation),
// `train.*` (the local training every task asks for) and `privacy.*` (the
// rounds' differential privacy). Each program includes
// these groups in its own table, so a key means the same thing, with the
// same checks, in a simulation and in a deployment.
#ifndef FEDGE_AGGREGATOR_SHARED_KEYS_H_
#define FEDGE_AGGREGATOR_SHARED_KEYS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "fedge/aggregator/private_aggregation.h"

#include "fedge/aggregator/strategy.h"
#include "fedge/proto/key_table.h"
#include "fedge/proto/plugin.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::aggregator {

// The strategy a federation aggregates with, by registry name.
struct StrategyChoice {
  std::string name = "fedavg";
  StrategyOptions options;
};

// strategy.name (also: strategy), strategy.server_learning_rate,
// strategy.server_momentum, strategy.beta1, strategy.beta2, strategy.tau,
// strategy.trim_fraction, strategy.krum_byzantine, strategy.krum_select.
// strategy.name accepts the names registered when it is set.
const config::KeyTable<StrategyChoice>& StrategyKeys();

// The local training of each round's task.
struct TrainChoice {
  v1::TrainConfig train;
  // Round r trains with train.learning_rate * lr_decay^(r-1).
  double lr_decay = 1.0;
};

// train.local_epochs, train.batch_size, train.learning_rate, train.momentum,
// train.weight_decay, train.proximal_mu, train.lr_decay, train.max_steps.
// (The shuffling seed is per program: fedge-sim derives it from run.seed.)
const config::KeyTable<TrainChoice>& TrainKeys();

// Differential privacy of the rounds, as configured (private_aggregation.h
// has the mechanism's meaning).
struct PrivacyChoice {
  std::string mode = "none";  // none | central | local | distributed
  std::string mechanism = "gaussian";
  double noise_multiplier = 1.0;
  std::string clipping = "fixed";  // a registered clipper
  double clip_norm = 1.0;          // fixed bound, or adaptive's first bound
  double target_quantile = 0.5;
  double clip_learning_rate = 0.2;
  // Std of the noise on the adaptive clipper's count; 0 = devices per round
  // / 20 (Andrew et al. 2021).
  double count_noise_stddev = 0.0;
  double delta = 1e-5;
  double epsilon_budget = 0.0;  // 0 = none
  double integer_scale = 0.0;   // 0 = auto
  // "secure" (OpenSSL, seeded by the OS) or "seeded" (reproducible: for
  // simulations and tests; the noise is predictable to whoever knows the
  // seed).
  std::string random = "secure";
  // The plug-in keys set (fedge/proto/plugin.h), by full name.
  config::PluginParams params;
};

// privacy.mode, privacy.mechanism, privacy.noise_multiplier,
// privacy.clipping, privacy.clip_norm, privacy.target_quantile,
// privacy.clip_learning_rate, privacy.count_noise_stddev, privacy.delta,
// privacy.epsilon_budget, privacy.integer_scale, privacy.random.
const config::KeyTable<PrivacyChoice>& PrivacyKeys();

// The aggregator's options for `choice` (mode other than "none"), for rounds
// of `expected_cohort` devices drawn at `sampling_rate`; with random
// "seeded", the noise stream is keyed by `seed`. INVALID_ARGUMENT names a bad
// mode.
absl::StatusOr<PrivateAggregationOptions> PrivateAggregationOptionsFrom(
    const PrivacyChoice& choice, int expected_cohort, double sampling_rate, uint64_t seed);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SHARED_KEYS_H_
