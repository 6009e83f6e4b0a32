// Helpers shared by the drift detectors: input checks and the packing of a
// detector's statistics into a v1::DriftDetectorState blob.
#ifndef FEDGE_CLIENT_SRC_DRIFT_DETECTOR_STATE_H_
#define FEDGE_CLIENT_SRC_DRIFT_DETECTOR_STATE_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::client::drift_internal {

// INVALID_ARGUMENT unless `observation` has `size` finite values.
absl::Status CheckObservation(std::string_view detector, std::span<const float> observation,
                              size_t size);

// INVALID_ARGUMENT unless `rows` holds at least two whole rows of `size`
// finite values.
absl::Status CheckReference(std::string_view detector, std::span<const float> rows, size_t size);

struct UnpackedState {
  std::vector<double> values;
  std::vector<uint64_t> counts;
};

std::string PackState(std::string_view detector, uint32_t format,
                      const std::vector<uint64_t>& shape, const std::vector<double>& values,
                      const std::vector<uint64_t>& counts);

// Parses `blob` and checks that it is a state of `detector` in `format` with
// exactly `shape`, and that every value is finite. Sizes are the caller's to
// check (use StateError for the message).
absl::StatusOr<UnpackedState> UnpackState(std::string_view blob, std::string_view detector,
                                          uint32_t format, const std::vector<uint64_t>& shape);

// INVALID_ARGUMENT "<detector> state: <what>".
absl::Status StateError(std::string_view detector, std::string_view what);

}  // namespace fedge::client::drift_internal

#endif  // FEDGE_CLIENT_SRC_DRIFT_DETECTOR_STATE_H_
