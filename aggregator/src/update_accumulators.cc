#include "update_accumulators.h"

#include <bit>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "fold_kernels.h"

namespace fedge::aggregator {

absl::string_view RuleName(AggregationRule rule) {
  switch (rule) {
    case AggregationRule::kWeightedMean:
      return "weighted-mean";
    case AggregationRule::kCoordinateMedian:
      return "median";
    case AggregationRule::kTrimmedMean:
      return "trimmed-mean";
    case AggregationRule::kMultiKrum:
      return "krum";
  }
  return "unknown";
}

std::unique_ptr<UpdateAccumulator> NewUpdateAccumulator(const AggregationConfig& config,
                                                        std::size_t dimension) {
  if (config.rule == AggregationRule::kWeightedMean) return NewWeightedMeanAccumulator(dimension);
  return NewStoredUpdatesAccumulator(config, dimension);
}

absl::StatusOr<std::unique_ptr<UpdateAccumulator>> RestoreUpdateAccumulator(
    const AggregationConfig& config, std::string_view serialized) {
  if (config.rule == AggregationRule::kWeightedMean) {
    return RestoreWeightedMeanAccumulator(serialized);
  }
  return RestoreStoredUpdatesAccumulator(config, serialized);
}

absl::StatusOr<float> ValidateUpdate(std::span<const float> delta, double weight,
                                     std::size_t dimension) {
  if (delta.size() != dimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("update has ", delta.size(), " values, expected ", dimension));
  }
  if (!(weight > 0.0) || !std::isfinite(weight)) {
    return absl::InvalidArgumentError(
        absl::StrCat("update weight must be a finite number > 0, got ", weight));
  }
  const std::uint32_t max_bits = MaxAbsBits(delta.data(), delta.size());
  if (max_bits >= kNonFiniteAbsBits) {
    // Slow path, only for rejected updates: find the first offender.
    for (std::size_t i = 0; i < delta.size(); ++i) {
      if (!std::isfinite(delta[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("update value at index ", i, " is not finite (", delta[i], ")"));
      }
    }
  }
  return std::bit_cast<float>(max_bits);
}

}  // namespace fedge::aggregator
