// Trainer: fine-tunes a model on a device's local data for one round and
// returns the update (w_local - w_global), the example count and metrics.
//
// Local training is minibatch SGD (momentum, weight decay) over shuffled
// local data for `local_epochs` epochs, with the FedProx proximal term
// (mu/2)||w - w_global||^2 when proximal_mu > 0 (Li et al. 2020).
//
// Thread safety: a Trainer holds no state between calls; the model passed in
// must not be used by another thread during Fit/Evaluate.
#ifndef FEDGE_CLIENT_TRAINER_H_
#define FEDGE_CLIENT_TRAINER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/client/local_data.h"
#include "fedge/models/model_instance.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::client {

struct TrainMetrics {
  double loss = 0.0;      // mean cross-entropy over the examples seen in training
  double accuracy = 0.0;  // fraction of training examples classified correctly (pre-step)
  int64_t steps = 0;      // optimizer steps taken
  int64_t examples_seen = 0;
};

struct LocalUpdate {
  std::vector<float> delta;  // w_local - w_global, one entry per parameter
  int64_t num_examples = 0;  // size of the local dataset (the aggregation weight)
  TrainMetrics metrics;
};

struct EvalMetrics {
  double loss = 0.0;
  double accuracy = 0.0;
  int64_t examples = 0;
};

// Checks a TrainConfig: local_epochs >= 1, batch_size >= 1, learning_rate > 0
// and finite, momentum in [0, 1), weight_decay >= 0, proximal_mu >= 0.
// INVALID_ARGUMENT names the field.
absl::Status ValidateTrainConfig(const v1::TrainConfig& config);

class Trainer {
 public:
  // Trains `model`, which must hold the global parameters on entry; on return
  // it holds the local ones. `mask`, when not empty, has one flag per
  // parameter: entries flagged 0 (pruned) are zeroed on entry and again after
  // every optimizer step, so they stay 0 (and their delta is 0).
  // INVALID_ARGUMENT for a bad config, empty data or a mask of the wrong size.
  absl::StatusOr<LocalUpdate> Fit(models::ModelInstance& model, const LocalDataset& data,
                                  const v1::TrainConfig& config,
                                  std::span<const uint8_t> mask = {}) const;
};

// Evaluates `model` on examples [begin, end) of `store` in batches.
absl::StatusOr<EvalMetrics> Evaluate(models::ModelInstance& model, const ExampleStore& store,
                                     int64_t begin, int64_t end, int64_t batch_size);

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_TRAINER_H_
