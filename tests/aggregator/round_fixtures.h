// Shared fixtures of the round tests: a 4-parameter "model" and a small
// training config.
#ifndef FEDGE_TESTS_AGGREGATOR_ROUND_FIXTURES_H_
#define FEDGE_TESTS_AGGREGATOR_ROUND_FIXTURES_H_

#include <vector>

#include "fedge/models/model_spec.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::aggregator::round_testing {

// One tensor of 4 parameters.
inline const models::ModelSpec kSpec{"mlp", {3}, 2};
inline const std::vector<models::ParameterLayout> kLayout = {{"w", {4}, 0, 4}};

inline v1::TrainConfig Train() {
  v1::TrainConfig train;
  train.set_local_epochs(1);
  train.set_batch_size(4);
  train.set_learning_rate(0.1f);
  return train;
}

}  // namespace fedge::aggregator::round_testing

#endif  // FEDGE_TESTS_AGGREGATOR_ROUND_FIXTURES_H_
