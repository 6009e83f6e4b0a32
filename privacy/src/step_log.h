// StepLog: the state shared by the accountants in accountant.h — a list of
// (sampling rate, noise multiplier, count) entries in the order they were
// first recorded — with its validation and serialization. Private to
// fedge::privacy.
#ifndef FEDGE_PRIVACY_SRC_STEP_LOG_H_
#define FEDGE_PRIVACY_SRC_STEP_LOG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace fedge::privacy::internal {

struct StepEntry {
  double sampling_rate = 1.0;
  double noise_multiplier = 1.0;
  int64_t count = 0;
};

class StepLog {
 public:
  // `header` tags the serialized form ("fedge.rdp_accountant.v1").
  explicit StepLog(std::string header) : header_(std::move(header)) {}

  // Validates and records; INVALID_ARGUMENT names the argument.
  absl::Status Add(double sampling_rate, double noise_multiplier, int64_t count);
  // Repeats the last entry; FAILED_PRECONDITION when there is none.
  absl::Status Repeat(int64_t count);

  const std::vector<StepEntry>& entries() const { return entries_; }
  int64_t steps() const { return steps_; }

  // Text form: the header line, then one "q sigma count" line per entry,
  // doubles in shortest round-trip form.
  std::string Serialize() const;
  absl::Status Restore(std::string_view serialized);

 private:
  std::string header_;
  std::vector<StepEntry> entries_;
  int64_t steps_ = 0;
};

// INVALID_ARGUMENT naming the argument unless 0 < sampling_rate <= 1,
// noise_multiplier > 0 (finite), count >= 0.
absl::Status ValidateStep(double sampling_rate, double noise_multiplier, int64_t count);

}  // namespace fedge::privacy::internal

#endif  // FEDGE_PRIVACY_SRC_STEP_LOG_H_
