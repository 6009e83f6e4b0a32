// Server optimizers: the step that applies a round's aggregated delta to the
// global parameters. Private to fedge::aggregator.
//
//  plain      global += eta * delta                         (FedAvg, FedProx,
//                                                             robust rules)
//  momentum   v = beta * v + delta; global += eta * v       (FedAvgM, Hsu et
//                                                             al. 2019)
//  adaptive   Reddi et al. 2021, "Adaptive Federated Optimization", Alg. 2:
//             m = beta1 * m + (1 - beta1) * delta
//             FedAdagrad v = v + delta^2
//             FedAdam    v = beta2 * v + (1 - beta2) * delta^2
//             FedYogi    v = v - (1 - beta2) * delta^2 * sign(v - delta^2)
//             global += eta * m / (sqrt(v) + tau)
//             starting from m = 0, v = tau^2, without bias correction.
//
// The state vectors are sized by the first Apply; later rounds must use the
// same dimension. State is stored in float and each step computed in double.
// Not thread-safe: the round manager applies one round at a time.
#ifndef FEDGE_AGGREGATOR_SRC_SERVER_OPTIMIZERS_H_
#define FEDGE_AGGREGATOR_SRC_SERVER_OPTIMIZERS_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace fedge::aggregator {

class ServerOptimizer {
 public:
  virtual ~ServerOptimizer() = default;

  // Validates the sizes (equal, and equal to earlier rounds) and that every
  // aggregated value is finite; on error returns INVALID_ARGUMENT and changes
  // neither `global` nor the optimizer state.
  absl::Status Apply(std::span<const float> aggregated_delta, std::span<float> global);

  // Momentum / moment vectors and the dimension fixed so far.
  virtual std::string SerializeState() const = 0;
  // INVALID_ARGUMENT if the bytes are not a state of this same optimizer
  // (kind and variant); the current state is kept then.
  virtual absl::Status RestoreState(std::string_view serialized) = 0;

 protected:
  // Advances the state and updates `global`. Apply has validated both spans,
  // which have the established dimension; InitializeState ran before the
  // first call.
  virtual void Step(std::span<const float> aggregated_delta, std::span<float> global) = 0;
  // Allocates the state for `dimension` parameters.
  virtual void InitializeState(std::size_t dimension) = 0;

  // The dimension fixed by the first Apply (or by RestoreState).
  bool has_dimension() const { return has_dimension_; }
  std::size_t dimension() const { return dimension_; }
  // For RestoreState, once the whole state has been validated.
  void RestoreDimension(bool has_dimension, std::size_t dimension) {
    has_dimension_ = has_dimension;
    dimension_ = dimension;
  }

 private:
  bool has_dimension_ = false;
  std::size_t dimension_ = 0;
};

std::unique_ptr<ServerOptimizer> NewPlainServerStep(double learning_rate);
std::unique_ptr<ServerOptimizer> NewMomentumServerStep(double learning_rate, double momentum);

enum class AdaptiveVariant { kAdagrad = 1, kAdam = 2, kYogi = 3 };
std::unique_ptr<ServerOptimizer> NewAdaptiveServerStep(AdaptiveVariant variant,
                                                       double learning_rate, double beta1,
                                                       double beta2, double tau);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SRC_SERVER_OPTIMIZERS_H_
