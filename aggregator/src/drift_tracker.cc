#include "fedge/aggregator/drift_tracker.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedge::aggregator {

std::vector<std::string> DriftReactions() { return {"alert", "extra-round", "none"}; }

absl::StatusOr<std::unique_ptr<DriftTracker>> DriftTracker::Create(DriftPolicyOptions options,
                                                                   int64_t population) {
  const std::vector<std::string> reactions = DriftReactions();
  if (std::find(reactions.begin(), reactions.end(), options.reaction) == reactions.end()) {
    return absl::InvalidArgumentError(absl::StrCat("DriftPolicyOptions.reaction must be one of ",
                                                   absl::StrJoin(reactions, ", "), "; got '",
                                                   options.reaction, "'"));
  }
  if (options.window_rounds < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("DriftPolicyOptions.window_rounds must be >= 1, got ", options.window_rounds));
  }
  if (!(options.threshold > 0.0 && options.threshold <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DriftPolicyOptions.threshold must be in (0, 1], got ", options.threshold));
  }
  if (options.cooldown_rounds < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DriftPolicyOptions.cooldown_rounds must be >= 0, got ", options.cooldown_rounds));
  }
  if (options.max_events_per_report < 1) {
    return absl::InvalidArgumentError("DriftPolicyOptions.max_events_per_report must be >= 1");
  }
  if (population < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("DriftTracker needs a population >= 1, got ", population));
  }
  return std::unique_ptr<DriftTracker>(new DriftTracker(std::move(options), population));
}

absl::Status DriftTracker::Record(const v1::DriftReport& report, uint64_t round,
                                  uint64_t latest_version) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift report from '", report.client_id(), "': ", what));
  };
  if (report.client_id().empty()) return bad("no client id");
  if (report.events_size() == 0) return bad("no events");
  if (report.events_size() > options_.max_events_per_report) {
    return bad(absl::StrCat(report.events_size(), " events, more than the ",
                            options_.max_events_per_report, " allowed"));
  }
  if (report.model_version() > latest_version) {
    return bad(absl::StrCat("model version ", report.model_version(),
                            " is newer than the latest published (", latest_version, ")"));
  }
  for (int i = 0; i < report.events_size(); ++i) {
    const v1::DriftEvent& e = report.events(i);
    if (e.detector().empty() || e.stream().empty()) {
      return bad(absl::StrCat("event ", i, " names no detector or stream"));
    }
    if (!std::isfinite(e.statistic()) || !std::isfinite(e.threshold())) {
      return bad(absl::StrCat("event ", i, " (", e.detector(),
                              ") has a non-finite statistic or threshold"));
    }
    if (e.model_version() != report.model_version()) {
      return bad(absl::StrCat("event ", i, " is for model version ", e.model_version(),
                              ", the report for ", report.model_version()));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string>& reporters = reporters_by_round_[round];
  if (reporters.contains(report.client_id())) {
    return absl::AlreadyExistsError(
        absl::StrCat("client '", report.client_id(), "' already reported drift in round ", round));
  }
  reporters.insert(report.client_id());
  for (const v1::DriftEvent& e : report.events()) {
    events_.push_back(StoredDriftEvent{report.client_id(), round, e});
  }
  ++reports_by_version_[report.model_version()];
  if (report.request_join()) join_requests_.insert(report.client_id());
  return absl::OkStatus();
}

DriftPolicyDecision DriftTracker::Evaluate(uint64_t round) {
  std::lock_guard<std::mutex> lock(mu_);
  DriftPolicyDecision decision;
  decision.round = round;
  std::set<std::string> clients;
  const uint64_t first = round >= static_cast<uint64_t>(options_.window_rounds)
                             ? round - options_.window_rounds + 1
                             : 0;
  for (auto it = reporters_by_round_.lower_bound(first);
       it != reporters_by_round_.end() && it->first <= round; ++it) {
    clients.insert(it->second.begin(), it->second.end());
  }
  decision.reporting_clients = static_cast<int>(clients.size());
  decision.share = static_cast<double>(clients.size()) / static_cast<double>(population_);
  const bool cooled =
      !reacted_ || round >= last_reaction_round_ + static_cast<uint64_t>(options_.cooldown_rounds);
  if (options_.reaction != "none" && decision.share >= options_.threshold && cooled) {
    decision.alert = true;
    decision.extra_round = options_.reaction == "extra-round";
    reacted_ = true;
    last_reaction_round_ = round;
  }
  return decision;
}

std::vector<std::string> DriftTracker::TakeJoinRequests() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out(join_requests_.begin(), join_requests_.end());
  join_requests_.clear();
  return out;
}

std::vector<StoredDriftEvent> DriftTracker::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

std::map<uint64_t, int64_t> DriftTracker::ReportsByVersion() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reports_by_version_;
}

int64_t DriftTracker::ReportsInRound(uint64_t round) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = reporters_by_round_.find(round);
  return it == reporters_by_round_.end() ? 0 : static_cast<int64_t>(it->second.size());
}

}  // namespace fedge::aggregator
