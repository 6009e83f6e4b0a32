// RunnerDrift: the drift watch inside a DeviceRunner (see device_runner.h):
// its DriftMonitor, the scoring of the device's examples after a task, the
// reports sent through the transport and the monitor's state file.
//
// Thread safety: all methods may be called concurrently (one mutex guards
// the monitor); ObserveTask's scoring runs outside it on the caller's model.
#ifndef FEDGE_CLIENT_SRC_RUNNER_DRIFT_H_
#define FEDGE_CLIENT_SRC_RUNNER_DRIFT_H_

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/client/device_runner.h"
#include "fedge/client/drift_monitor.h"
#include "fedge/client/local_data.h"
#include "fedge/client/transport.h"
#include "fedge/models/model_instance.h"

namespace fedge::client {

class RunnerDrift {
 public:
  // The monitor's state file inside a device state directory.
  static constexpr char kStateFile[] = "drift_monitor.state";

  // Null (and OK) when options.drift is unset. Restores the state file when
  // options.state_dir holds one (DATA_LOSS naming the file when it does not
  // restore); the monitor's INVALID_ARGUMENT / NOT_FOUND for bad options.
  static absl::StatusOr<std::unique_ptr<RunnerDrift>> Create(const std::string& client_id,
                                                             const DeviceRunnerOptions& options);

  // Loads `artifact` into `model`, scores a seeded sample of `data` with it
  // and feeds the monitor (see device_runner.h). `round` seeds the sample.
  absl::Status ObserveTask(models::ModelInstance& model, const LocalDataset& data,
                           const v1::ModelArtifact& artifact, uint64_t round,
                           ClientTransport& transport);

  absl::StatusOr<MonitorOutcome> ObserveInference(std::span<const float> features,
                                                  std::span<const float> confidence,
                                                  uint64_t model_version,
                                                  ClientTransport& transport);
  absl::StatusOr<MonitorOutcome> ObserveFeedback(std::span<const float> loss,
                                                 std::span<const float> error,
                                                 uint64_t model_version,
                                                 ClientTransport& transport);

  std::vector<v1::DriftEvent> events() const;

 private:
  RunnerDrift(std::unique_ptr<DriftMonitor> monitor, const DeviceRunnerOptions& options);

  int64_t Now() const;
  // Sends outcome.report (if any), writes the state file, calls on_drift.
  // REQUIRES: mu_ held.
  absl::Status AfterObservation(const MonitorOutcome& outcome, ClientTransport& transport);

  const int features_;
  const int sample_size_;
  const uint64_t seed_;
  const std::filesystem::path state_file_;  // empty: in memory only
  const std::function<int64_t()> clock_;
  const std::function<void(const MonitorOutcome&, const absl::Status&)> on_drift_;

  mutable std::mutex mu_;
  std::unique_ptr<DriftMonitor> monitor_;
  // The monitor has a reference (set from the first scored examples, or
  // restored with its state).
  bool has_reference_ = false;
  // A report was sent: the next scored examples become the new reference.
  bool rereference_ = false;
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_SRC_RUNNER_DRIFT_H_
