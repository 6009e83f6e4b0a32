#include "strategy_options.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedge::aggregator {

absl::Status CheckPositive(absl::string_view field, double value) {
  if (value > 0.0 && std::isfinite(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("StrategyOptions.", field, " must be a finite number > 0, got ", value));
}

absl::Status CheckFraction(absl::string_view field, double value, double upper) {
  if (value >= 0.0 && value < upper) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("StrategyOptions.", field, " must be in [0, ", upper, "), got ", value));
}

absl::Status CheckAtLeast(absl::string_view field, int value, int minimum) {
  if (value >= minimum) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("StrategyOptions.", field, " must be >= ", minimum, ", got ", value));
}

}  // namespace fedge::aggregator
