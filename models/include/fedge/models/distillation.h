// Knowledge distillation at the aggregator (Hinton, Vinyals, Dean 2015,
// "Distilling the knowledge in a neural network"): a small student (e.g.
// mobilenet-tiny) learns to match the federated teacher's softened output
// distribution on an unlabeled proxy set the aggregator holds; the student is
// then published as the device model. No client data and no labels are used.
//
// The loss is T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), averaged over
// the batch, for teacher logits z_t, student logits z_s and temperature T.
// A higher T exposes more of the teacher's "dark knowledge" (the relative
// probabilities of the wrong classes); the T^2 factor keeps the gradient's
// size independent of T (Hinton et al., section 2).
//
// Thread safety: none; the networks passed in must not be used elsewhere
// meanwhile.
#ifndef FEDGE_MODELS_DISTILLATION_H_
#define FEDGE_MODELS_DISTILLATION_H_

#include <torch/types.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/model_zoo.h"

namespace fedge::models {

struct DistillationOptions {
  // T. Default: 4. REQUIRES: > 0 and finite.
  double temperature = 4.0;
  // Passes over the proxy set. Default: 10. REQUIRES: >= 1.
  int epochs = 10;
  // Default: 64. REQUIRES: >= 1.
  int64_t batch_size = 64;
  // Adam's step size (Kingma & Ba 2015). Default: 0.003. REQUIRES: > 0.
  double learning_rate = 0.003;
  // Seed of the proxy set's shuffling. Default: 0.
  uint64_t seed = 0;
};

// INVALID_ARGUMENT naming the offending field.
absl::Status ValidateDistillationOptions(const DistillationOptions& options);

// The distillation loss above (a scalar, differentiable in
// student_logits). REQUIRES: both [B, C], B >= 1, temperature > 0.
torch::Tensor DistillationLoss(const torch::Tensor& student_logits,
                               const torch::Tensor& teacher_logits, double temperature);

struct DistillationReport {
  double first_epoch_loss = 0.0;  // mean loss over the first epoch
  double last_epoch_loss = 0.0;   // and over the last
  int64_t steps = 0;
};

// Trains `student` to match `teacher` on `proxy` ([N, input_shape...] as the
// models take it; no labels). The teacher is only evaluated. INVALID_ARGUMENT
// for bad options, an empty proxy set, or networks whose class counts
// differ; FAILED_PRECONDITION if the loss stops being finite.
absl::StatusOr<DistillationReport> Distill(Network& teacher, ModelInstance& student,
                                           const torch::Tensor& proxy,
                                           const DistillationOptions& options);

}  // namespace fedge::models

#endif  // FEDGE_MODELS_DISTILLATION_H_
