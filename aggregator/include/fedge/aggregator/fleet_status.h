// What an operator sees of, and does to, a running aggregator: snapshots of
// the fleet (devices, rounds, model versions) and the admin actions (revoke,
// pause/resume, promote, roll back). AggregatorServer implements FleetControl;
// the ops API (ops_api.h) renders it as JSON and the dashboard and fedge-ctl
// read that.
//
// Thread safety: every FleetControl method may be called concurrently with
// the aggregator serving devices.
#ifndef FEDGE_AGGREGATOR_FLEET_STATUS_H_
#define FEDGE_AGGREGATOR_FLEET_STATUS_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/aggregator/event_log.h"
#include "fedge/aggregator/state_store.h"

namespace fedge::aggregator {

// The statuses of DeviceStatus::status, in the order operators read them.
inline constexpr std::array<std::string_view, 4> kDeviceStatuses = {"active", "idle", "gone",
                                                                     "revoked"};
inline bool ValidDeviceStatus(std::string_view status) {
  return std::find(kDeviceStatuses.begin(), kDeviceStatuses.end(), status) !=
         kDeviceStatuses.end();
}

// One device as the aggregator knows it (in memory since start; enrollment,
// revocation and the last drift report are restored from the state store).
struct DeviceStatus {
  std::string id;
  // "active": connected (see LivenessOptions in server.h) and called for
  // work within the active window; "idle": connected, but only heartbeats
  // lately (or, for a device that sends none, silent past the active
  // window); "gone": said Leave, stopped heartbeating, or not heard from
  // since the aggregator started; "revoked".
  std::string status;
  std::string auth;            // "token" or "certificate"
  int64_t enrolled_at_ms = 0;  // wall clock, ms since the Unix epoch
  int64_t last_seen_ms = 0;    // any call; 0: not since the aggregator started
  int64_t last_work_ms = 0;    // any call but a heartbeat
  bool heartbeats = false;     // has heartbeated since it last joined
  int64_t left_at_ms = 0;      // its last Leave (0: none since start)
  std::string left_reason;
  uint64_t model_version = 0;  // last downloaded or trained on
  bool has_model_version = false;
  int64_t last_drift_ms = 0;  // 0: never reported drift
  std::string last_drift_detector;
  std::string last_drift_stream;
  uint64_t drift_reports = 0;
  uint64_t rounds_selected = 0;
  uint64_t updates_accepted = 0;
  uint64_t updates_refused = 0;                // failures: refused updates
  uint64_t tasks_failed = 0;                   // failures: selected, no update by the round's end
  std::map<std::string, double> last_metrics;  // e.g. train_accuracy of its last task
};

struct DeviceQuery {
  size_t offset = 0;
  size_t limit = 50;          // REQUIRES: 1..1000
  std::string id_contains;    // empty: any
  std::string status;         // "", "active", "idle", "gone" or "revoked"
  std::optional<bool> drift;  // has reported drift / has not
};

struct DevicePage {
  size_t total = 0;  // devices matching the query
  size_t offset = 0;
  std::vector<DeviceStatus> devices;  // sorted by id
};

// A round, open or finished.
struct RoundSummary {
  uint64_t round = 0;
  uint64_t model_version = 0;  // the version it trains
  std::string outcome;         // "open", "closed" or "failed"
  int64_t opened_at_ms = 0;
  int64_t closed_at_ms = 0;  // 0 while open
  uint64_t selected = 0;
  uint64_t reported = 0;     // accepted updates (secure aggregation: survivors)
  uint64_t dropped = 0;      // selected - reported, once finished
  uint64_t bytes_up = 0;     // updates received
  uint64_t bytes_down = 0;   // model bytes served while it was open
  uint64_t new_version = 0;  // closed rounds
  std::string reason;        // why it closed or failed
};

struct CurrentRound {
  bool open = false;
  bool paused = false;
  RoundSummary round;  // when open
  uint64_t goal = 0;
  int64_t deadline_at_ms = 0;
  // "training", a secure-aggregation phase, or (closed) "waiting" /
  // "paused" / "finished".
  std::string phase;
  uint64_t devices_available = 0;  // polling now (what the next round draws from)
  uint64_t min_clients = 0;
  uint64_t next_round = 0;
  uint64_t closed_rounds = 0;
};

struct VersionStatus {
  // record.status as the operator reads it: exactly one version is "live"
  // (the one devices are served); a version the store keeps as approved
  // that is not served (a later version went live, or an operator promoted
  // an earlier one) is "superseded"; "canary", "rejected" and
  // "rolled_back" are the store's own.
  VersionRecord record;
  // "verified" (both files verify with the aggregator's key), "invalid: ..."
  // or "missing: ..." (a file cannot be read).
  std::string signature;
  bool served = false;  // devices can download it now
};

struct FleetOverview {
  uint64_t latest_version = 0;
  std::optional<uint64_t> live_version;
  std::optional<double> accuracy;  // of the live version (validation, else devices' mean)
  std::string accuracy_source;     // "validation_accuracy" or "clients_train_accuracy"
  std::optional<double> loss;
  double epsilon_spent = 0.0;  // 0 without differential privacy
  std::optional<double> epsilon_budget;
  std::map<std::string, uint64_t> devices_by_status;  // active, idle, gone, revoked
  uint64_t devices = 0;
  uint64_t devices_with_drift = 0;
  uint64_t alerts = 0;  // events of kind "alert" since start
  uint64_t last_event = 0;
  CurrentRound round;
  uint64_t rounds_failed = 0;
};

// The operator's view of and controls over an aggregator.
class FleetControl {
 public:
  virtual ~FleetControl() = default;

  virtual FleetOverview Overview() const = 0;
  virtual CurrentRound Round() const = 0;
  // Newest first; at most `limit`, rounds numbered below `before` (0: any).
  virtual std::vector<RoundSummary> RoundHistory(size_t limit, uint64_t before) const = 0;
  // INVALID_ARGUMENT naming a bad field of the query.
  virtual absl::StatusOr<DevicePage> Devices(const DeviceQuery& query) const = 0;
  // Newest first.
  virtual absl::StatusOr<std::vector<VersionStatus>> Versions() const = 0;
  virtual const EventLog& events() const = 0;
  // The Prometheus text of every aggregator metric.
  virtual std::string RenderMetrics() const = 0;

  // Refuses the device from now on (durably) and drops it from the open
  // round's cohort (an update it already delivered stays in the round).
  // NOT_FOUND for an unknown device, FAILED_PRECONDITION if revoked already.
  virtual absl::Status RevokeDevice(const std::string& id, const std::string& reason) = 0;
  // Paused: no new round opens (an open round finishes); kept across
  // restarts. FAILED_PRECONDITION when already paused / not paused.
  virtual absl::Status PauseRounds(const std::string& reason) = 0;
  virtual absl::Status ResumeRounds(const std::string& reason) = 0;
  // Makes a held version (canary, rejected or rolled_back) live and serves
  // it. NOT_FOUND for an unknown version, FAILED_PRECONDITION if live.
  virtual absl::Status Promote(uint64_t version, const std::string& reason) = 0;
  // Publishes the model of `version` again as the newest, live version
  // (signed anew; its parent is `version`) and returns its number. Refused
  // with FAILED_PRECONDITION while a round is open (its result would be
  // built on the version being withdrawn): pause, let the round finish,
  // roll back, resume. NOT_FOUND for an unknown version.
  virtual absl::StatusOr<uint64_t> RollBackTo(uint64_t version, const std::string& reason) = 0;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_FLEET_STATUS_H_
