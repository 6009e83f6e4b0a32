// AlertMonitor: operator alert rules over what an aggregator observes.
//
//   rule                 value                                           fires when
//   round_failure_rate   share of the last `failure_window` rounds       value > threshold
//                        that failed
//   dropout              (selected - reported) / selected of one round   value > threshold
//   drift_share          share of the devices seen within `drift_window` value > threshold
//                        that reported drift within it
//   accuracy_drop        previous version's accuracy - the new one's     value > threshold
//   epsilon_budget       ε spent / ε budget                              value >= threshold
//
// A threshold <= 0 turns its rule off. State rules (round_failure_rate,
// drift_share, epsilon_budget) fire when their condition becomes true and
// again only after it was false in between, so a lasting condition raises
// one alert, not one per observation; event rules (dropout, accuracy_drop)
// fire on every round or version that breaks them.
//
// The server turns each Alert into an event (EventLog kind "alert"), a
// metric (fedge_alerts_total{rule=...}) and a log line.
//
// Thread safety: not thread-safe; the server calls it under its lock.
#ifndef FEDGE_AGGREGATOR_ALERTS_H_
#define FEDGE_AGGREGATOR_ALERTS_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace fedge::aggregator {

struct AlertRules {
  double round_failure_rate = 0.5;
  int failure_window = 5;  // REQUIRES: >= 1
  double dropout = 0.5;
  double drift_share = 0.25;
  std::chrono::milliseconds drift_window{10 * 60 * 1000};  // REQUIRES: > 0
  double accuracy_drop = 0.05;
  double epsilon_budget = 0.9;
};

// INVALID_ARGUMENT naming the field (alerts.<name>).
absl::Status ValidateAlertRules(const AlertRules& rules);

struct Alert {
  std::string rule;
  double value = 0.0;
  double threshold = 0.0;
  std::string message;
};

class AlertMonitor {
 public:
  explicit AlertMonitor(AlertRules rules) : rules_(std::move(rules)) {}

  const AlertRules& rules() const { return rules_; }

  // A round ended: failed (no version), or closed with `reported` of the
  // `selected` devices' updates.
  std::vector<Alert> OnRound(uint64_t round, bool failed, int selected, int reported);
  // A new version was evaluated; `previous_accuracy` is the live version's.
  std::vector<Alert> OnVersion(uint64_t version, double accuracy, double previous_accuracy);
  // Devices that reported drift, of those seen, within the drift window.
  std::vector<Alert> OnDrift(size_t drifting, size_t seen);
  // Privacy spent so far against the budget (budget <= 0: none).
  std::vector<Alert> OnPrivacy(double epsilon, double budget);

  // Alerts raised since start, by rule.
  const std::map<std::string, uint64_t>& fired() const { return fired_; }

 private:
  // Adds an alert to `out` when `breached` and (for state rules) the rule
  // was not breached at its previous observation.
  void Check(const std::string& rule, bool state_rule, bool breached, double value,
             double threshold, std::string message, std::vector<Alert>& out);

  AlertRules rules_;
  std::deque<bool> recent_failures_;
  std::map<std::string, bool> breached_;
  std::map<std::string, uint64_t> fired_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_ALERTS_H_
