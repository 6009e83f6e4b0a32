// Trainer: fine-tunes a model on a device's local data for one round and
// returns the update (w_local - w_global), the example count and metrics.
//
// Local training is minibatch SGD (momentum, weight decay) over shuffled
// local data for `local_epochs` epochs, with the FedProx proximal term
// (mu/2)||w - w_global||^2 when proximal_mu > 0 (Li et al. 2020).
//
// A TrainingControl (optional) lets the caller budget and pause local
// training: it may lower the batch size before training starts (a memory
// budget), and it is asked before every optimizer step whether to go on; it
// may block there (training paused between two batches), end local training
// early (the steps taken so far become the update) or abandon the task.
//
// Thread safety: a Trainer holds no state between calls; the model passed in
// must not be used by another thread during Fit/Evaluate. A Trainer with a
// control may run one Fit at a time unless the control is thread-safe.
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

class TrainingControl {
 public:
  virtual ~TrainingControl() = default;
  // Before local training: the batch size to train with, in
  // [1, config.batch_size()]. An error refuses the task (nothing trained).
  virtual absl::StatusOr<int64_t> PlanBatch(models::ModelInstance& model,
                                            const v1::TrainConfig& config) {
    return static_cast<int64_t>(config.batch_size());
  }
  // Before every optimizer step (`so_far`: steps and examples done). true:
  // take the step; false: stop here, the update is what the steps so far
  // made (its weight, num_examples, becomes the examples seen). An error
  // abandons local training with that error. May block.
  virtual absl::StatusOr<bool> BeforeStep(const TrainMetrics& so_far) { return true; }
};

class Trainer {
 public:
  Trainer() = default;
  // `control` (not owned, may be null) must outlive the Trainer.
  explicit Trainer(TrainingControl* control) : control_(control) {}

  // Trains `model`, which must hold the global parameters on entry; on return
  // it holds the local ones. `mask`, when not empty, has one flag per
  // parameter: entries flagged 0 (pruned) are zeroed on entry and again after
  // every optimizer step, so they stay 0 (and their delta is 0).
  // INVALID_ARGUMENT for a bad config, empty data or a mask of the wrong size.
  absl::StatusOr<LocalUpdate> Fit(models::ModelInstance& model, const LocalDataset& data,
                                  const v1::TrainConfig& config,
                                  std::span<const uint8_t> mask = {}) const;

 private:
  TrainingControl* control_ = nullptr;
};

// Evaluates `model` on examples [begin, end) of `store` in batches.
absl::StatusOr<EvalMetrics> Evaluate(models::ModelInstance& model, const ExampleStore& store,
                                     int64_t begin, int64_t end, int64_t batch_size);

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_TRAINER_H_
