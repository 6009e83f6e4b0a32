// The adaptive server optimizers of Reddi et al. 2021, "Adaptive Federated
// Optimization" (Algorithm 2) over a streaming weighted mean of the client
// deltas: fedadagrad, fedadam, fedyogi. See server_optimizers.h for the
// update rules.
//
// The step is eta * m / (sqrt(v) + tau): roughly eta per coordinate whatever
// the delta's scale, so server_learning_rate must be set explicitly; the
// shared default of 1.0 (right for FedAvg) is far too large here. The paper's
// tuned values are around 1e-2 to 1e-1 (fedadam, fedyogi) with tau = 1e-3.
#include <memory>

#include "absl/status/statusor.h"
#include "composed_strategy.h"
#include "fedge/aggregator/strategy.h"
#include "fedge/proto/status_macros.h"
#include "server_optimizers.h"
#include "strategy_options.h"
#include "update_accumulators.h"

namespace fedge::aggregator {
namespace {

absl::StatusOr<std::unique_ptr<Strategy>> MakeAdaptive(std::string name, AdaptiveVariant variant,
                                                       const StrategyOptions& options) {
  FEDGE_RETURN_IF_ERROR(CheckPositive("server_learning_rate", options.server_learning_rate));
  FEDGE_RETURN_IF_ERROR(CheckFraction("beta1", options.beta1, 1.0));
  // FedAdagrad accumulates squares without decay and never reads beta2.
  if (variant != AdaptiveVariant::kAdagrad) {
    FEDGE_RETURN_IF_ERROR(CheckFraction("beta2", options.beta2, 1.0));
  }
  FEDGE_RETURN_IF_ERROR(CheckPositive("tau", options.tau));
  return NewComposedStrategy(std::move(name), AggregationConfig{},
                             NewAdaptiveServerStep(variant, options.server_learning_rate,
                                                   options.beta1, options.beta2, options.tau));
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeFedAdagrad(const StrategyOptions& options) {
  return MakeAdaptive("fedadagrad", AdaptiveVariant::kAdagrad, options);
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeFedAdam(const StrategyOptions& options) {
  return MakeAdaptive("fedadam", AdaptiveVariant::kAdam, options);
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeFedYogi(const StrategyOptions& options) {
  return MakeAdaptive("fedyogi", AdaptiveVariant::kYogi, options);
}

[[maybe_unused]] const bool kFedAdagradRegistered = RegisterStrategy("fedadagrad", MakeFedAdagrad);
[[maybe_unused]] const bool kFedAdamRegistered = RegisterStrategy("fedadam", MakeFedAdam);
[[maybe_unused]] const bool kFedYogiRegistered = RegisterStrategy("fedyogi", MakeFedYogi);

}  // namespace
}  // namespace fedge::aggregator
