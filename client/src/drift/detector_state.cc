#include "detector_state.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/v1/drift.pb.h"

namespace fedge::client::drift_internal {

absl::Status CheckObservation(std::string_view detector, std::span<const float> observation,
                              size_t size) {
  if (observation.size() != size) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(detector), ": an observation has ",
                                                   size, " values, got ", observation.size()));
  }
  for (size_t i = 0; i < observation.size(); ++i) {
    if (!std::isfinite(observation[i])) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(detector), ": observation value ",
                                                     i, " is not finite (", observation[i], ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckReference(std::string_view detector, std::span<const float> rows, size_t size) {
  if (rows.size() % size != 0 || rows.size() < 2 * size) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(detector),
                                                   ": the reference must hold at least 2 rows of ",
                                                   size, " values, got ", rows.size(), " values"));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!std::isfinite(rows[i])) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(detector), ": reference value ", i,
                                                     " is not finite (", rows[i], ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status StateError(std::string_view detector, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(detector), " state: ", std::string(what)));
}

std::string PackState(std::string_view detector, uint32_t format,
                      const std::vector<uint64_t>& shape, const std::vector<double>& values,
                      const std::vector<uint64_t>& counts) {
  v1::DriftDetectorState state;
  state.set_detector(std::string(detector));
  state.set_format(format);
  state.mutable_shape()->Add(shape.begin(), shape.end());
  state.mutable_values()->Add(values.begin(), values.end());
  state.mutable_counts()->Add(counts.begin(), counts.end());
  return state.SerializeAsString();
}

absl::StatusOr<UnpackedState> UnpackState(std::string_view blob, std::string_view detector,
                                          uint32_t format, const std::vector<uint64_t>& shape) {
  v1::DriftDetectorState state;
  if (!state.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
    return StateError(detector, "not a serialized DriftDetectorState");
  }
  if (state.detector() != detector) {
    return StateError(detector,
                      absl::StrCat("the blob belongs to detector '", state.detector(), "'"));
  }
  if (state.format() != format) {
    return StateError(detector,
                      absl::StrCat("format ", state.format(), " is not the supported ", format));
  }
  std::vector<uint64_t> got(state.shape().begin(), state.shape().end());
  if (got != shape) {
    return StateError(detector, absl::StrCat("saved with shape [", absl::StrJoin(got, ", "),
                                             "], this detector has [", absl::StrJoin(shape, ", "),
                                             "] (different options)"));
  }
  UnpackedState out;
  out.values.assign(state.values().begin(), state.values().end());
  out.counts.assign(state.counts().begin(), state.counts().end());
  for (size_t i = 0; i < out.values.size(); ++i) {
    if (!std::isfinite(out.values[i])) {
      return StateError(detector, absl::StrCat("value ", i, " is not finite"));
    }
  }
  return out;
}

}  // namespace fedge::client::drift_internal
