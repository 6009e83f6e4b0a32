// Validation of StrategyOptions fields. Each check names the field and the
// rejected value, e.g. "StrategyOptions.trim_fraction must be in [0, 0.5),
// got 0.6". NaN fails every check. Private to fedge::aggregator.
#ifndef FEDGE_AGGREGATOR_SRC_STRATEGY_OPTIONS_H_
#define FEDGE_AGGREGATOR_SRC_STRATEGY_OPTIONS_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fedge::aggregator {

// OK iff `value` is finite and > 0.
absl::Status CheckPositive(absl::string_view field, double value);

// OK iff 0 <= `value` < `upper`.
absl::Status CheckFraction(absl::string_view field, double value, double upper);

// OK iff `value` >= `minimum`.
absl::Status CheckAtLeast(absl::string_view field, int value, int minimum);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SRC_STRATEGY_OPTIONS_H_
