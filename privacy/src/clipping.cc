#include "fedge/privacy/clipping.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "fedge/proto/status_macros.h"

namespace fedge::privacy {

double L2Norm(std::span<const float> values) {
  double sum = 0.0;
  for (float v : values) sum += static_cast<double>(v) * v;
  return std::sqrt(sum);
}

namespace {

absl::Status CheckBound(const char* what, double max_norm) {
  if (max_norm > 0.0 && std::isfinite(max_norm)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": the clip bound must be finite and > 0, got ", max_norm));
}

}  // namespace

absl::StatusOr<double> ClipL2(std::span<float> values, double max_norm) {
  FEDGE_RETURN_IF_ERROR(CheckBound("L2 clipping", max_norm));
  const double norm = L2Norm(values);
  if (norm <= max_norm) return 1.0;
  // Shrink by a further 1e-6 so that float rounding of the scaled entries
  // cannot leave the norm a hair above the bound: the bound is a DP
  // sensitivity, it must hold exactly.
  const double factor = max_norm / norm * (1.0 - 1e-6);
  for (float& v : values) v = static_cast<float>(v * factor);
  return factor;
}

double L1Norm(std::span<const float> values) {
  double sum = 0.0;
  for (float v : values) sum += std::abs(static_cast<double>(v));
  return sum;
}

absl::StatusOr<double> ClipL1(std::span<float> values, double max_norm) {
  FEDGE_RETURN_IF_ERROR(CheckBound("L1 clipping", max_norm));
  const double norm = L1Norm(values);
  if (norm <= max_norm) return 1.0;
  // Shrink by a further 1e-6 so that float rounding of the scaled entries
  // cannot leave the norm a hair above the bound: the bound is a DP
  // sensitivity, it must hold exactly.
  const double factor = max_norm / norm * (1.0 - 1e-6);
  for (float& v : values) v = static_cast<float>(v * factor);
  return factor;
}

absl::StatusOr<AdaptiveClipper> AdaptiveClipper::Create(const AdaptiveClipperOptions& options) {
  if (!(options.initial_clip_norm > 0.0) || !std::isfinite(options.initial_clip_norm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdaptiveClipperOptions.initial_clip_norm must be finite and > 0, got ",
                     options.initial_clip_norm));
  }
  if (!(options.target_quantile >= 0.0 && options.target_quantile <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdaptiveClipperOptions.target_quantile must be in [0, 1], got ", options.target_quantile));
  }
  if (!(options.learning_rate > 0.0) || !std::isfinite(options.learning_rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdaptiveClipperOptions.learning_rate must be finite and > 0, got ",
                     options.learning_rate));
  }
  if (!(options.count_noise_stddev >= 0.0) || !std::isfinite(options.count_noise_stddev)) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdaptiveClipperOptions.count_noise_stddev must be finite and >= 0, got ",
                     options.count_noise_stddev));
  }
  return AdaptiveClipper(options);
}

absl::StatusOr<double> AdaptiveClipper::ClipAndRecord(std::span<float> update) {
  const bool within = L2Norm(update) <= clip_norm_;
  FEDGE_ASSIGN_OR_RETURN(const double factor, ClipL2(update, clip_norm_));
  Record(within);
  return factor;
}

void AdaptiveClipper::Record(bool norm_within_clip) { RecordCounts(1, norm_within_clip ? 1 : 0); }

void AdaptiveClipper::RecordCounts(int64_t updates, int64_t within_clip) {
  updates_ += std::max<int64_t>(updates, 0);
  within_clip_ += std::clamp<int64_t>(within_clip, 0, std::max<int64_t>(updates, 0));
}

absl::StatusOr<double> AdaptiveClipper::EndRound(RandomSource& random, double expected_updates) {
  if (updates_ == 0) {
    return absl::FailedPreconditionError("AdaptiveClipper::EndRound: no update recorded");
  }
  if (!(expected_updates > 0.0) || !std::isfinite(expected_updates)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdaptiveClipper::EndRound: expected_updates must be finite and > 0, got ",
        expected_updates));
  }
  // The centred count: each bit contributes b_i - 1/2, so adding or removing
  // one update moves the sum by exactly 1/2, the sensitivity the accounting
  // assumes (QuantileClipper::SumNoiseMultiplier). Dividing by the expected
  // cohort rather than the updates that arrived keeps the denominator public.
  double centred = static_cast<double>(within_clip_) - 0.5 * static_cast<double>(updates_);
  if (options_.count_noise_stddev > 0.0) {
    centred += options_.count_noise_stddev * SampleStandardGaussian(random);
  }
  const double fraction = 0.5 + centred / expected_updates;
  clip_norm_ *= std::exp(-options_.learning_rate * (fraction - options_.target_quantile));
  updates_ = 0;
  within_clip_ = 0;
  return fraction;
}

namespace {

constexpr std::string_view kClipperHeader = "fedge.adaptive_clipper.v1";

// Parses one space-terminated field from the front of `text`.
template <typename T>
bool ConsumeField(std::string_view& text, T& value) {
  const std::size_t end = text.find(' ');
  const std::string_view field = text.substr(0, end);
  if (field.empty()) return false;
  const auto result = std::from_chars(field.data(), field.data() + field.size(), value);
  if (result.ec != std::errc() || result.ptr != field.data() + field.size()) return false;
  text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
  return true;
}

}  // namespace

std::string AdaptiveClipper::Serialize() const {
  char clip[64];
  const auto end = std::to_chars(clip, clip + sizeof(clip), clip_norm_).ptr;
  return absl::StrCat(std::string(kClipperHeader), " ", std::string(clip, end), " ", updates_, " ",
                      within_clip_);
}

absl::Status AdaptiveClipper::Restore(std::string_view serialized) {
  std::string_view rest = serialized;
  double clip_norm = 0.0;
  int64_t updates = 0;
  int64_t within_clip = 0;
  if (rest.substr(0, kClipperHeader.size() + 1) != std::string(kClipperHeader) + " ") {
    return absl::InvalidArgumentError("not an AdaptiveClipper state (bad header)");
  }
  rest.remove_prefix(kClipperHeader.size() + 1);
  if (!ConsumeField(rest, clip_norm) || !ConsumeField(rest, updates) ||
      !ConsumeField(rest, within_clip) || !rest.empty()) {
    return absl::InvalidArgumentError("malformed AdaptiveClipper state");
  }
  if (!(clip_norm > 0.0) || !std::isfinite(clip_norm) || updates < 0 || within_clip < 0 ||
      within_clip > updates) {
    return absl::InvalidArgumentError("AdaptiveClipper state out of range");
  }
  clip_norm_ = clip_norm;
  updates_ = updates;
  within_clip_ = within_clip;
  return absl::OkStatus();
}

}  // namespace fedge::privacy
