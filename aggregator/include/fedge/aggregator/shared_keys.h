// The configuration keys fedge-sim and fedge-aggregator share, written once
// (fedge/proto/key_table.h): `strategy.*` (the server's aggregation) and
// `train.*` (the local training every task asks for). Each program includes
// these groups in its own table, so a key means the same thing, with the
// same checks, in a simulation and in a deployment.
#ifndef FEDGE_AGGREGATOR_SHARED_KEYS_H_
#define FEDGE_AGGREGATOR_SHARED_KEYS_H_

#include <string>

#include "fedge/aggregator/strategy.h"
#include "fedge/proto/key_table.h"
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

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SHARED_KEYS_H_
