#include "fedge/aggregator/alerts.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace fedge::aggregator {

absl::Status ValidateAlertRules(const AlertRules& rules) {
  for (const auto& [name, value] :
       {std::pair<const char*, double>{"round_failure_rate", rules.round_failure_rate},
        {"dropout", rules.dropout},
        {"drift_share", rules.drift_share},
        {"accuracy_drop", rules.accuracy_drop},
        {"epsilon_budget", rules.epsilon_budget}}) {
    if (!std::isfinite(value) || value > 1.0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "alerts.%s must be a share in (0, 1] (or <= 0 to turn the rule off), not %g", name,
          value));
    }
  }
  if (rules.failure_window < 1) {
    return absl::InvalidArgumentError("alerts.failure_window must be >= 1 rounds");
  }
  if (rules.drift_window.count() <= 0) {
    return absl::InvalidArgumentError("alerts.drift_window must be > 0");
  }
  return absl::OkStatus();
}

void AlertMonitor::Check(const std::string& rule, bool state_rule, bool breached, double value,
                         double threshold, std::string message, std::vector<Alert>& out) {
  bool& was = breached_[rule];
  const bool fire = breached && (!state_rule || !was);
  was = breached;
  if (!fire) return;
  ++fired_[rule];
  out.push_back({rule, value, threshold, std::move(message)});
}

std::vector<Alert> AlertMonitor::OnRound(uint64_t round, bool failed, int selected, int reported) {
  std::vector<Alert> out;
  recent_failures_.push_back(failed);
  while (recent_failures_.size() > static_cast<size_t>(rules_.failure_window)) {
    recent_failures_.pop_front();
  }
  if (rules_.round_failure_rate > 0.0) {
    int failures = 0;
    for (bool f : recent_failures_) failures += f ? 1 : 0;
    const double rate = static_cast<double>(failures) / recent_failures_.size();
    Check("round_failure_rate", true, rate > rules_.round_failure_rate, rate,
          rules_.round_failure_rate,
          absl::StrFormat("%d of the last %d rounds failed (round %d %s)", failures,
                          recent_failures_.size(), round, failed ? "failed" : "closed"),
          out);
  }
  if (rules_.dropout > 0.0 && selected > 0) {
    const double dropout = static_cast<double>(selected - std::min(reported, selected)) /
                           static_cast<double>(selected);
    Check("dropout", false, dropout > rules_.dropout, dropout, rules_.dropout,
          absl::StrFormat("round %d: %d of %d selected devices sent no update", round,
                          selected - std::min(reported, selected), selected),
          out);
  }
  return out;
}

std::vector<Alert> AlertMonitor::OnVersion(uint64_t version, double accuracy,
                                           double previous_accuracy) {
  std::vector<Alert> out;
  if (rules_.accuracy_drop > 0.0 && std::isfinite(accuracy) && std::isfinite(previous_accuracy)) {
    const double drop = previous_accuracy - accuracy;
    Check("accuracy_drop", false, drop > rules_.accuracy_drop, drop, rules_.accuracy_drop,
          absl::StrFormat("version %d: accuracy %.4f, %.4f below the live version's %.4f", version,
                          accuracy, drop, previous_accuracy),
          out);
  }
  return out;
}

std::vector<Alert> AlertMonitor::OnDrift(size_t drifting, size_t seen) {
  std::vector<Alert> out;
  if (rules_.drift_share > 0.0 && seen > 0) {
    const double share = static_cast<double>(drifting) / static_cast<double>(seen);
    Check("drift_share", true, share > rules_.drift_share, share, rules_.drift_share,
          absl::StrFormat("%d of %d recently seen devices report drift", drifting, seen), out);
  }
  return out;
}

std::vector<Alert> AlertMonitor::OnPrivacy(double epsilon, double budget) {
  std::vector<Alert> out;
  if (rules_.epsilon_budget > 0.0 && budget > 0.0) {
    const double used = epsilon / budget;
    Check("epsilon_budget", true, used >= rules_.epsilon_budget, used, rules_.epsilon_budget,
          absl::StrFormat("epsilon %.3f spent of a budget of %.3f (%.0f%%)", epsilon, budget,
                          100.0 * used),
          out);
  }
  return out;
}

}  // namespace fedge::aggregator
