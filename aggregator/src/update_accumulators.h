// The UpdateAccumulator implementations behind the built-in strategies, and
// the input validation they share. Private to fedge::aggregator.
//
// Two families:
//  * the weighted mean (weighted_mean_accumulator.cc) folds each update into
//    one float sum as it arrives: O(d) memory, streaming() == true;
//  * the robust rules (stored_updates_accumulator.cc): coordinate-wise median,
//    coordinate-wise trimmed mean and (Multi-)Krum keep every update, O(n*d).
#ifndef FEDGE_AGGREGATOR_SRC_UPDATE_ACCUMULATORS_H_
#define FEDGE_AGGREGATOR_SRC_UPDATE_ACCUMULATORS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fedge/aggregator/strategy.h"

namespace fedge::aggregator {

// How a round's updates are combined. Values are part of the serialized
// format: never renumber, only append.
enum class AggregationRule : std::uint16_t {
  kWeightedMean = 1,
  kCoordinateMedian = 2,
  kTrimmedMean = 3,
  kMultiKrum = 4,
};

// A rule and the parameters it reads. Two accumulators can be merged only if
// their configs are equal. The parameters are validated by the strategy
// factories (strategy_options.h) before they reach an accumulator.
struct AggregationConfig {
  AggregationRule rule = AggregationRule::kWeightedMean;
  // kTrimmedMean: fraction dropped at each end per coordinate, in [0, 0.5).
  double trim_fraction = 0.0;
  // kMultiKrum: Byzantine clients tolerated (>= 0), and how many of the
  // best-scored updates are averaged (>= 1).
  int krum_byzantine = 0;
  int krum_select = 1;

  friend bool operator==(const AggregationConfig&, const AggregationConfig&) = default;
};

// Human-readable rule name for error messages ("trimmed-mean").
absl::string_view RuleName(AggregationRule rule);

// A fresh accumulator for `config` over `dimension` parameters.
std::unique_ptr<UpdateAccumulator> NewUpdateAccumulator(const AggregationConfig& config,
                                                        std::size_t dimension);

// Parses UpdateAccumulator::Serialize() output. INVALID_ARGUMENT if the bytes
// are not a valid state of an accumulator with exactly `config`.
absl::StatusOr<std::unique_ptr<UpdateAccumulator>> RestoreUpdateAccumulator(
    const AggregationConfig& config, std::string_view serialized);

// Validates one client update against an accumulator of `dimension`:
// the size, every value finite, and 0 < weight < infinity. On success returns
// max_i |delta[i]|. The INVALID_ARGUMENT message names what is wrong, e.g.
// "update has 9 values, expected 10" or "update value at index 3 is not
// finite (nan)".
absl::StatusOr<float> ValidateUpdate(std::span<const float> delta, double weight,
                                     std::size_t dimension);

// The weighted-mean accumulator; see weighted_mean_accumulator.cc.
std::unique_ptr<UpdateAccumulator> NewWeightedMeanAccumulator(std::size_t dimension);
absl::StatusOr<std::unique_ptr<UpdateAccumulator>> RestoreWeightedMeanAccumulator(
    std::string_view serialized);

// The accumulator of the robust rules; see stored_updates_accumulator.cc.
// REQUIRES: config.rule != kWeightedMean.
std::unique_ptr<UpdateAccumulator> NewStoredUpdatesAccumulator(const AggregationConfig& config,
                                                               std::size_t dimension);
absl::StatusOr<std::unique_ptr<UpdateAccumulator>> RestoreStoredUpdatesAccumulator(
    const AggregationConfig& config, std::string_view serialized);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SRC_UPDATE_ACCUMULATORS_H_
