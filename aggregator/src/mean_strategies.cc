// Strategies whose round is a streaming weighted mean of the client deltas,
// applied with a plain or a momentum server step:
//
//  fedavg   McMahan et al. 2017: global += server_learning_rate * mean.
//  fedprox  Li et al. 2020: the server side is FedAvg's; the proximal term
//           mu * ||w - w_global||^2 / 2 is a client-side training setting.
//  fedavgm  Hsu et al. 2019: v = server_momentum * v + mean;
//           global += server_learning_rate * v.
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

absl::StatusOr<std::unique_ptr<Strategy>> MakeAveraging(std::string name,
                                                        const StrategyOptions& options) {
  FEDGE_RETURN_IF_ERROR(CheckPositive("server_learning_rate", options.server_learning_rate));
  return NewComposedStrategy(std::move(name), AggregationConfig{},
                             NewPlainServerStep(options.server_learning_rate));
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeFedAvg(const StrategyOptions& options) {
  return MakeAveraging("fedavg", options);
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeFedProx(const StrategyOptions& options) {
  return MakeAveraging("fedprox", options);
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeFedAvgM(const StrategyOptions& options) {
  FEDGE_RETURN_IF_ERROR(CheckPositive("server_learning_rate", options.server_learning_rate));
  FEDGE_RETURN_IF_ERROR(CheckFraction("server_momentum", options.server_momentum, 1.0));
  return NewComposedStrategy(
      "fedavgm", AggregationConfig{},
      NewMomentumServerStep(options.server_learning_rate, options.server_momentum));
}

[[maybe_unused]] const bool kFedAvgRegistered = RegisterStrategy("fedavg", MakeFedAvg);
[[maybe_unused]] const bool kFedProxRegistered = RegisterStrategy("fedprox", MakeFedProx);
[[maybe_unused]] const bool kFedAvgMRegistered = RegisterStrategy("fedavgm", MakeFedAvgM);

}  // namespace
}  // namespace fedge::aggregator
