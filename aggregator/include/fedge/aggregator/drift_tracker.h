// DriftTracker: the aggregator's side of drift detection.
//
// Devices send v1::DriftReport messages (see fedge/client/drift_monitor.h).
// The tracker validates each one, stores its events with the client, the
// round it arrived in and the model version the device ran, keeps the
// devices' requests to join the next round, and applies a policy:
//
//   share(r) = distinct clients that reported in rounds (r - window_rounds, r]
//              / population
//
// When share(r) >= threshold (and the last reaction is at least
// cooldown_rounds old), the policy reacts: "alert" raises an alert,
// "extra-round" raises the alert and asks for an extra training round with
// the clients that asked to join; "none" only records.
//
// Drift reports per model version are kept for the metrics.
//
// Thread safety: all methods may be called concurrently.
#ifndef FEDGE_AGGREGATOR_DRIFT_TRACKER_H_
#define FEDGE_AGGREGATOR_DRIFT_TRACKER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/v1/drift.pb.h"

namespace fedge::aggregator {

struct DriftPolicyOptions {
  // "none", "alert" or "extra-round". Default: "none".
  std::string reaction = "none";
  // Rounds over which reporting clients are counted. Default: 2. REQUIRES: >= 1.
  int window_rounds = 2;
  // Share of the population that must report within the window.
  // Default: 0.1. REQUIRES: 0 < value <= 1.
  double threshold = 0.1;
  // Rounds after a reaction before the next one. Default: 3. REQUIRES: >= 0.
  int cooldown_rounds = 3;
  // Most events one report may carry. Default: 64. REQUIRES: >= 1.
  int max_events_per_report = 64;
};

// The names accepted for DriftPolicyOptions::reaction.
std::vector<std::string> DriftReactions();

struct StoredDriftEvent {
  std::string client_id;
  uint64_t round = 0;  // the round open (or last closed) when the report arrived
  v1::DriftEvent event;
};

struct DriftPolicyDecision {
  uint64_t round = 0;
  int reporting_clients = 0;  // distinct clients in the window
  double share = 0.0;
  bool alert = false;
  bool extra_round = false;
};

class DriftTracker {
 public:
  // `population`: the number of clients the share is taken of. INVALID_ARGUMENT
  // names a bad option; population must be >= 1.
  static absl::StatusOr<std::unique_ptr<DriftTracker>> Create(DriftPolicyOptions options,
                                                              int64_t population);

  // Validates and stores one report that arrived in `round` while
  // `latest_version` was the newest model. INVALID_ARGUMENT (nothing stored)
  // for an empty client id, no events or too many, an event without detector
  // or stream, a non-finite statistic or threshold, an event whose model
  // version differs from the report's, or a model version newer than
  // `latest_version`; ALREADY_EXISTS for a second report from the same client
  // in the same round.
  absl::Status Record(const v1::DriftReport& report, uint64_t round, uint64_t latest_version);

  // Applies the policy at the end of `round`.
  DriftPolicyDecision Evaluate(uint64_t round);

  // The clients that asked to join, sorted; the requests are cleared.
  std::vector<std::string> TakeJoinRequests();

  std::vector<StoredDriftEvent> events() const;
  // Reports received per model version the devices ran.
  std::map<uint64_t, int64_t> ReportsByVersion() const;
  // Reports received in `round`.
  int64_t ReportsInRound(uint64_t round) const;
  const DriftPolicyOptions& options() const { return options_; }

 private:
  DriftTracker(DriftPolicyOptions options, int64_t population)
      : options_(std::move(options)), population_(population) {}

  const DriftPolicyOptions options_;
  const int64_t population_;
  mutable std::mutex mu_;
  std::vector<StoredDriftEvent> events_;
  std::map<uint64_t, std::set<std::string>> reporters_by_round_;
  std::map<uint64_t, int64_t> reports_by_version_;
  std::set<std::string> join_requests_;
  bool reacted_ = false;
  uint64_t last_reaction_round_ = 0;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_DRIFT_TRACKER_H_
