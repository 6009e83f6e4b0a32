#include "fedge/aggregator/rollout.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/aggregator/round_manager.h"

namespace fedge::aggregator {
namespace {

bool InUnit(double x) { return x >= 0.0 && x <= 1.0; }

}  // namespace

absl::Status ValidateRolloutPolicy(const RolloutPolicy& policy) {
  if (!InUnit(policy.max_validation_accuracy_drop)) {
    return absl::InvalidArgumentError("rollout.max_validation_accuracy_drop must be in [0, 1]");
  }
  if (!InUnit(policy.canary_fraction)) {
    return absl::InvalidArgumentError("rollout.canary_fraction must be in [0, 1]");
  }
  if (policy.min_canary_reports < 1) {
    return absl::InvalidArgumentError("rollout.min_canary_reports must be >= 1");
  }
  if (!InUnit(policy.max_canary_accuracy_drop)) {
    return absl::InvalidArgumentError("rollout.max_canary_accuracy_drop must be in [0, 1]");
  }
  if (!(policy.max_canary_loss_increase >= 0.0) || std::isinf(policy.max_canary_loss_increase)) {
    return absl::InvalidArgumentError("rollout.max_canary_loss_increase must be finite and >= 0");
  }
  if (policy.canary_timeout.count() <= 0) {
    return absl::InvalidArgumentError("rollout.canary_timeout must be > 0");
  }
  return absl::OkStatus();
}

RolloutDecision RolloutGate::Validate(uint64_t candidate, double candidate_accuracy,
                                      double live_accuracy) const {
  RolloutDecision decision;
  const double drop = live_accuracy - candidate_accuracy;
  if (!std::isfinite(candidate_accuracy) || drop > policy_.max_validation_accuracy_drop) {
    decision.kind = RolloutDecision::Kind::kReject;
    decision.reason = absl::StrFormat(
        "version %d: validation accuracy %.4f is %.4f below the live version's %.4f (tolerance "
        "%.4f)",
        candidate, candidate_accuracy, drop, live_accuracy, policy_.max_validation_accuracy_drop);
    return decision;
  }
  decision.kind = policy_.canary_fraction > 0.0 ? RolloutDecision::Kind::kPending
                                                : RolloutDecision::Kind::kPromote;
  decision.reason = absl::StrFormat(
      "version %d: validation accuracy %.4f against the live version's %.4f (tolerance %.4f)",
      candidate, candidate_accuracy, live_accuracy, policy_.max_validation_accuracy_drop);
  return decision;
}

absl::Status RolloutGate::StartCanary(uint64_t candidate, uint64_t baseline,
                                      const std::vector<std::string>& available,
                                      std::chrono::steady_clock::time_point now) {
  if (candidate_.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("version ", *candidate_, " is in canary already"));
  }
  if (available.empty()) {
    return absl::FailedPreconditionError("no device is available for a canary");
  }
  const int count = std::max(1, static_cast<int>(std::ceil(policy_.canary_fraction *
                                                           static_cast<double>(available.size()))));
  absl::StatusOr<std::vector<std::string>> chosen =
      RoundManager::SelectCohort(available, count, policy_.seed, candidate);
  if (!chosen.ok()) return chosen.status();
  candidate_ = candidate;
  baseline_ = baseline;
  deadline_ = now + policy_.canary_timeout;
  devices_ = {chosen->begin(), chosen->end()};
  reports_.clear();
  return absl::OkStatus();
}

bool RolloutGate::AwaitingReport(const std::string& device) const {
  return candidate_.has_value() && devices_.contains(device) && !reports_.contains(device);
}

absl::Status RolloutGate::AddReport(const std::string& device, uint64_t version,
                                    const CanaryReport& report) {
  if (!candidate_.has_value() || version != *candidate_) {
    return absl::InvalidArgumentError(
        absl::StrCat("no canary of version ", version, " is running"));
  }
  if (!devices_.contains(device)) {
    return absl::InvalidArgumentError(
        absl::StrCat("device '", device, "' is not a canary of version ", version));
  }
  for (double accuracy : {report.accuracy, report.baseline_accuracy}) {
    if (!InUnit(accuracy)) {
      return absl::InvalidArgumentError(absl::StrCat("canary report of '", device, "': accuracy ",
                                                     accuracy, " is not in [0, 1]"));
    }
  }
  for (double loss : {report.loss, report.baseline_loss}) {
    if (!(loss >= 0.0) || std::isinf(loss)) {
      return absl::InvalidArgumentError(
          absl::StrCat("canary report of '", device, "': loss ", loss, " is not finite and >= 0"));
    }
  }
  reports_[device] = report;
  return absl::OkStatus();
}

RolloutDecision RolloutGate::Verdict() const {
  RolloutDecision decision;
  decision.reports = static_cast<int>(reports_.size());
  if (decision.reports < policy_.min_canary_reports) {
    decision.kind = RolloutDecision::Kind::kRollBack;
    decision.reason = absl::StrFormat(
        "version %d: only %d of %d canary devices reported by the deadline (%d needed)",
        *candidate_, decision.reports, static_cast<int>(devices_.size()),
        policy_.min_canary_reports);
    return decision;
  }
  for (const auto& [device, report] : reports_) {
    decision.accuracy_change += report.accuracy - report.baseline_accuracy;
    decision.loss_change += report.loss - report.baseline_loss;
  }
  decision.accuracy_change /= decision.reports;
  decision.loss_change /= decision.reports;
  const bool accuracy_holds = -decision.accuracy_change <= policy_.max_canary_accuracy_drop;
  const bool loss_holds = decision.loss_change <= policy_.max_canary_loss_increase;
  decision.kind = accuracy_holds && loss_holds ? RolloutDecision::Kind::kPromote
                                               : RolloutDecision::Kind::kRollBack;
  decision.reason = absl::StrFormat(
      "version %d on %d canary devices: accuracy %+.4f (tolerance -%.4f), loss %+.4f "
      "(tolerance +%.4f) against version %d",
      *candidate_, decision.reports, decision.accuracy_change, policy_.max_canary_accuracy_drop,
      decision.loss_change, policy_.max_canary_loss_increase, baseline_);
  return decision;
}

RolloutDecision RolloutGate::Decide(std::chrono::steady_clock::time_point now) {
  if (!candidate_.has_value()) return {};
  if (reports_.size() < devices_.size() && now < deadline_) return {};
  RolloutDecision decision = Verdict();
  Cancel();
  return decision;
}

void RolloutGate::Cancel() {
  candidate_.reset();
  devices_.clear();
  reports_.clear();
}

}  // namespace fedge::aggregator
