// RolloutGate: the decisions of a gated model rollout, without I/O.
//
// A version a round produced is not served to the fleet at once. It goes
// through two gates (the practice of staged rollouts with automated canary
// analysis, applied to model versions):
//
//   1. validation: the aggregator evaluates the candidate on its own
//      validation set. It is refused when its accuracy is below the live
//      version's by more than `max_validation_accuracy_drop`.
//   2. canary: a `canary_fraction` of the devices then evaluate the
//      candidate AND the live version on their local data (an evaluation
//      task; they submit no update) and report both. The candidate goes
//      live only if, paired device by device, its mean accuracy is not
//      lower than the live version's by more than `max_canary_accuracy_drop`
//      and its mean loss not higher by more than `max_canary_loss_increase`.
//      Otherwise, or when fewer than `min_canary_reports` reports arrived by
//      `canary_timeout`, it is rolled back.
//
// Pairing each canary device's two evaluations removes the spread between
// devices' data from the comparison: a device whose data is hard lowers
// both figures alike.
//
// While a candidate is in canary, no training round opens (rounds train
// from the live version only). The server records every decision as an
// event and in the version's status (see StateStore::SetVersionStatus).
//
// Thread safety: not thread-safe; the server calls it under its lock.
#ifndef FEDGE_AGGREGATOR_ROLLOUT_H_
#define FEDGE_AGGREGATOR_ROLLOUT_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace fedge::aggregator {

struct RolloutPolicy {
  // Gate new versions at all. Default: off (every version goes live).
  bool enabled = false;
  // Largest drop in validation accuracy (absolute, in [0, 1]) a candidate
  // may show against the live version. Default: 0.01.
  double max_validation_accuracy_drop = 0.01;
  // Fraction of the available devices that evaluate a candidate, in
  // [0, 1]; 0 skips the canary stage. Default: 0.1.
  double canary_fraction = 0.1;
  // Fewest canary reports a verdict needs. REQUIRES: >= 1. Default: 1.
  int min_canary_reports = 1;
  // Largest mean paired drop in accuracy, and rise in loss, on the canary
  // devices. Defaults: 0.02 and 0.05.
  double max_canary_accuracy_drop = 0.02;
  double max_canary_loss_increase = 0.05;
  // How long the canary stage waits for reports. Default: 60 s.
  std::chrono::milliseconds canary_timeout{60'000};
  // Seeds the choice of canary devices.
  uint64_t seed = 1;
};

// INVALID_ARGUMENT naming the field.
absl::Status ValidateRolloutPolicy(const RolloutPolicy& policy);

// One canary device's evaluation of the candidate and of the live version.
struct CanaryReport {
  double accuracy = 0.0;
  double loss = 0.0;
  double baseline_accuracy = 0.0;
  double baseline_loss = 0.0;
  int64_t examples = 0;
};

struct RolloutDecision {
  enum class Kind { kPending, kPromote, kReject, kRollBack };
  Kind kind = Kind::kPending;
  std::string reason;  // one sentence with the figures behind the decision
  // Canary figures (mean paired differences; reports counted).
  double accuracy_change = 0.0;
  double loss_change = 0.0;
  int reports = 0;
};

class RolloutGate {
 public:
  explicit RolloutGate(RolloutPolicy policy) : policy_(std::move(policy)) {}

  const RolloutPolicy& policy() const { return policy_; }

  // Gate 1. kReject or, when the canary stage is off, kPromote; otherwise
  // kPending (start the canary with StartCanary).
  RolloutDecision Validate(uint64_t candidate, double candidate_accuracy,
                           double live_accuracy) const;

  // Gate 2 starts: picks ceil(canary_fraction * |available|) (at least 1)
  // of `available` as the canary devices of `candidate` against `baseline`.
  // Returns them. FAILED_PRECONDITION when a canary is running already or
  // no device is available.
  absl::Status StartCanary(uint64_t candidate, uint64_t baseline,
                           const std::vector<std::string>& available,
                           std::chrono::steady_clock::time_point now);

  bool canary_active() const { return candidate_.has_value(); }
  uint64_t candidate() const { return candidate_.value_or(0); }
  uint64_t baseline() const { return baseline_; }
  const std::set<std::string, std::less<>>& canary_devices() const { return devices_; }
  // True when `device` is a canary device that has not reported yet.
  bool AwaitingReport(const std::string& device) const;

  // Records a canary device's report on `version`. INVALID_ARGUMENT for a
  // report on another version, from a device outside the canary, or with
  // figures out of range (accuracy outside [0, 1], negative or non-finite
  // loss); a device's second report replaces its first.
  absl::Status AddReport(const std::string& device, uint64_t version, const CanaryReport& report);

  // The verdict now: kPending until every canary device reported or the
  // timeout passed; then kPromote or kRollBack. A verdict other than
  // kPending ends the canary.
  RolloutDecision Decide(std::chrono::steady_clock::time_point now);

  // Ends a running canary without a verdict (an operator decided).
  void Cancel();

 private:
  RolloutDecision Verdict() const;

  RolloutPolicy policy_;
  std::optional<uint64_t> candidate_;
  uint64_t baseline_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  std::set<std::string, std::less<>> devices_;
  std::map<std::string, CanaryReport, std::less<>> reports_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_ROLLOUT_H_
