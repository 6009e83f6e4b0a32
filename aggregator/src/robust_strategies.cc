// Byzantine-robust strategies: the round keeps every update and combines
// them with a robust rule (see stored_updates_accumulator.cc), then applies
// global += server_learning_rate * result.
//
//  median        coordinate-wise median (Yin et al. 2018)
//  trimmed-mean  coordinate-wise trimmed mean, trim_fraction at each end
//  krum          Krum / Multi-Krum (Blanchard et al. 2017), krum_byzantine
//                tolerated, krum_select averaged
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

absl::StatusOr<std::unique_ptr<Strategy>> MakeMedian(const StrategyOptions& options) {
  FEDGE_RETURN_IF_ERROR(CheckPositive("server_learning_rate", options.server_learning_rate));
  AggregationConfig config;
  config.rule = AggregationRule::kCoordinateMedian;
  return NewComposedStrategy("median", config, NewPlainServerStep(options.server_learning_rate));
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeTrimmedMean(const StrategyOptions& options) {
  FEDGE_RETURN_IF_ERROR(CheckPositive("server_learning_rate", options.server_learning_rate));
  FEDGE_RETURN_IF_ERROR(CheckFraction("trim_fraction", options.trim_fraction, 0.5));
  AggregationConfig config;
  config.rule = AggregationRule::kTrimmedMean;
  config.trim_fraction = options.trim_fraction;
  return NewComposedStrategy("trimmed-mean", config,
                             NewPlainServerStep(options.server_learning_rate));
}

absl::StatusOr<std::unique_ptr<Strategy>> MakeKrum(const StrategyOptions& options) {
  FEDGE_RETURN_IF_ERROR(CheckPositive("server_learning_rate", options.server_learning_rate));
  FEDGE_RETURN_IF_ERROR(CheckAtLeast("krum_byzantine", options.krum_byzantine, 0));
  FEDGE_RETURN_IF_ERROR(CheckAtLeast("krum_select", options.krum_select, 1));
  AggregationConfig config;
  config.rule = AggregationRule::kMultiKrum;
  config.krum_byzantine = options.krum_byzantine;
  config.krum_select = options.krum_select;
  return NewComposedStrategy("krum", config, NewPlainServerStep(options.server_learning_rate));
}

[[maybe_unused]] const bool kMedianRegistered = RegisterStrategy("median", MakeMedian);
[[maybe_unused]] const bool kTrimmedMeanRegistered =
    RegisterStrategy("trimmed-mean", MakeTrimmedMean);
[[maybe_unused]] const bool kKrumRegistered = RegisterStrategy("krum", MakeKrum);

}  // namespace
}  // namespace fedge::aggregator
