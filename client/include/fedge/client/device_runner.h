// DeviceRunner: a device's side of the federation, over any ClientTransport
// (gRPC in fedge-client and the C API, in-process for simulated devices).
//
//   join -> [send buffered updates] -> poll for a task -> fetch + verify the
//   model -> train -> submit (buffered when the aggregator is away; secure
//   aggregation over its phases) -> report metrics -> watch for drift
//
// RunOnce() is one step of that cycle and never sleeps, so a simulator can
// drive thousands of runners from its own loop; Run() is RunOnce in a loop
// with an exponential backoff with full jitter between failed attempts,
// reset after every task that completes.
//
// Models: with `pinned_key` set, every artifact the transport hands over is
// checked (signature by the pinned key or a key the aggregator's key chain,
// received at Join, leads to from it: fedge/models/model_trust.h; tensor
// hash) before it is loaded, whatever the transport; a model that fails is refused, the device keeps
// its current one and waits for the next version. An aggregator that
// refuses the device (UNAUTHENTICATED / PERMISSION_DENIED, not about a
// model) ends Run with that error.
//
// Drift (`drift` set): the runner owns a DriftMonitor. After each task it
// scores up to `drift_examples` of the device's examples with the model the
// device now runs (the task's version; the baseline after an evaluation
// task) and feeds the monitor their top-class confidence and input
// summaries (label-free) and their losses and 0/1 errors (the local data is
// labelled). Apps feed what they see at inference time and the labels they
// learn later through ObserveInference / ObserveFeedback. The first scored
// examples become the monitor's reference; a DriftReport goes to the
// aggregator through the transport, and the examples scored next become the
// new reference (the device adapts by training in the round it asked to
// join). With `state_dir` set the monitor's state is written there
// (drift_monitor.state, atomically) after every observation and restored
// when a runner starts, so detection survives a restart.
//
// Thread safety: RunOnce and Run must not run concurrently with themselves
// or each other. ObserveInference / ObserveFeedback may be called from any
// thread, also while Run runs.
#ifndef FEDGE_CLIENT_DEVICE_RUNNER_H_
#define FEDGE_CLIENT_DEVICE_RUNNER_H_

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "fedge/client/device_client.h"
#include "fedge/client/drift_monitor.h"
#include "fedge/client/offline_store.h"
#include "fedge/client/offline_transport.h"
#include "fedge/client/transport.h"
#include "fedge/models/signing.h"
#include "fedge/proto/log.h"

namespace fedge::client {

class RunnerDrift;  // client/src/runner_drift.h

struct DeviceRunnerOptions {
  // Stop Run after this many completed tasks; 0: run until `stop`.
  int max_tasks = 0;
  BackoffOptions backoff;
  uint64_t seed = 1;
  // When set, the current verified model is kept here (written atomically),
  // so a restarted device starts from it.
  std::filesystem::path model_file;
  // The device's state directory: the drift monitor's state lives here.
  // Empty: it lives in memory only. The directory is created if missing.
  std::filesystem::path state_dir;
  // The aggregator's model-signing key. When set, an artifact is trained on
  // only after models::VerifySignedArtifact accepts it. Default: unset (the
  // transport's own checks, e.g. GrpcTransport's, are all there is).
  std::optional<models::VerifyingKey> pinned_key;
  // Drift monitoring; unset: off. `drift->features` > 0 feeds the input
  // summaries: each example's values cut into that many contiguous chunks,
  // one mean per chunk. Validated by DriftMonitor::Create.
  std::optional<DriftMonitorOptions> drift;
  // Local examples scored for the monitor after each task (a seeded random
  // sample when the device has more). Default: 256. REQUIRES: >= 1.
  int drift_examples = 256;
  // The monitor's clock (its `time`; `drift->cooldown` is in the same units).
  // Default: milliseconds since the Unix epoch.
  std::function<int64_t()> clock;
  // Fault injection, for tests that compare a deployment with a simulation:
  // in round r (key) the device drops out of secure aggregation at phase p
  // (value, 1-4: it does not act in p or later; 1: it never advertises its
  // keys). Empty: never.
  std::map<uint64_t, int> secagg_drops;
  // Keep the last verified artifact (current_model()). Off: it is not kept
  // after its task, unless drift monitoring or model_file need it
  // (simulated devices: thousands of runners would keep old versions
  // alive). Default: on.
  bool keep_model = true;
  // Log lines (joined, task_done, model_refused, ...) on stderr. Off for
  // simulated devices, whose simulation reports what happened. Default: on.
  bool log_events = true;
  // Called after each completed task (e.g. to evaluate on local data).
  std::function<void(const TaskReport&)> on_task;
  // Called each time the device joined the federation.
  std::function<void(const v1::JoinResponse&)> on_join;
  // The answer to a join the app made itself before starting the runner
  // (fedge-client and the C API join to learn the model spec): the runner
  // takes it as its first join, checked against `pinned_key` like its own,
  // instead of joining again (the aggregator would count two joins).
  // Unset: the runner joins.
  std::optional<v1::JoinResponse> already_joined;
  // Called when a task failed, before the loop backs off (or ends, when the
  // aggregator refused the device). Not called for NOT_FOUND (no task yet).
  std::function<void(const absl::Status&)> on_task_failed;
  // Called when drift detectors fired (outcome.alarms non-empty); when
  // outcome.report is set it has been handed to the transport, and
  // `reported` is the aggregator's verdict. Called on the observing thread
  // with the monitor locked: it must not call ObserveInference /
  // ObserveFeedback.
  std::function<void(const MonitorOutcome& outcome, const absl::Status& reported)> on_drift;
};

// What one RunOnce did.
struct StepResult {
  enum class Kind {
    kNoTask,         // the aggregator has no task for this device now
    kTaskDone,       // a task completed; see `report`
    kSecAggWaiting,  // a secure-aggregation session waits for the aggregator
                     // to close a phase: call again
    kOffline,        // updates buffered while offline could not be sent yet
  };
  Kind kind = Kind::kNoTask;
  bool joined = false;               // this step joined the federation
  std::optional<TaskReport> report;  // kTaskDone
};

class DeviceRunner {
 public:
  // All pointers must outlive the runner. `pending` may be null: nothing is
  // buffered, and an unreachable aggregator's error is the step's (simulated
  // devices). `model` may be null for a runner that is always given one
  // (RunOnce(model)). Options are checked (and the drift state restored) on
  // the first RunOnce / Observe call, which returns the error; Create checks
  // them at once.
  DeviceRunner(ClientTransport* transport, PendingUpdateStore* pending, DeviceClient* device,
               models::ModelInstance* model, const Trainer* trainer, DeviceRunnerOptions options);

  // As the constructor, but INVALID_ARGUMENT / NOT_FOUND naming the offending
  // option, or DATA_LOSS naming an unreadable drift state file, now.
  static absl::StatusOr<std::unique_ptr<DeviceRunner>> Create(
      ClientTransport* transport, PendingUpdateStore* pending, DeviceClient* device,
      models::ModelInstance* model, const Trainer* trainer, DeviceRunnerOptions options);

  ~DeviceRunner();

  // One step: join if not joined yet; advance an open secure-aggregation
  // session by one phase; or send buffered updates, poll for a task and run
  // it (fetch, verify, train, submit) and, when it completes, report its
  // metrics and feed the drift monitor. Never sleeps (the transport's own
  // calls may wait, e.g. a gRPC long poll). Errors: the join's or the
  // task's (UNAVAILABLE when the aggregator is unreachable; a refused model
  // says "fetching the model: ..."); nothing is retried here.
  absl::StatusOr<StepResult> RunOnce();
  // RunOnce on `model` instead of the runner's own: simulated devices share
  // one model per worker thread, so 10,000 of them stay cheap. The model's
  // weights are the task's afterwards.
  absl::StatusOr<StepResult> RunOnce(models::ModelInstance& model);

  // Runs until max_tasks tasks completed or `stop` becomes true (checked
  // between steps and while waiting). Once joined it heartbeats from a thread
  // of its own at the interval the aggregator asked for (through training
  // and long polls alike), and when it ends by `stop` or max_tasks it tells
  // the aggregator it leaves. Returns the error that ended it
  // (UNAUTHENTICATED / PERMISSION_DENIED from the aggregator, bad options),
  // OK otherwise.
  absl::Status Run(const std::atomic<bool>& stop);

  // What the app's model saw at inference: `features` rows of
  // drift->features values (may be empty), `confidence` top-class
  // probabilities (may be empty), for the model version it runs. A report
  // that results is sent through the transport. FAILED_PRECONDITION when
  // drift monitoring is off; the monitor's INVALID_ARGUMENT for malformed
  // input (nothing changes).
  absl::StatusOr<MonitorOutcome> ObserveInference(std::span<const float> features,
                                                  std::span<const float> confidence,
                                                  uint64_t model_version);
  // Labelled feedback on earlier predictions: per-example losses and/or 0/1
  // errors. As ObserveInference.
  absl::StatusOr<MonitorOutcome> ObserveFeedback(std::span<const float> loss,
                                                 std::span<const float> error,
                                                 uint64_t model_version);

  int tasks_done() const { return tasks_done_; }
  bool joined() const { return joined_; }
  // The last model that verified (null before one).
  std::shared_ptr<const v1::ModelArtifact> current_model() const;
  // Recent drift events (empty when drift monitoring is off).
  std::vector<v1::DriftEvent> drift_events() const;

 private:
  class ModelGate;

  // Checks the options and restores the drift state, once.
  absl::Status Prepare();
  void Log(std::string_view level, std::string_view event, const LogFields& fields,
           std::string_view message = {}) const;
  // Fault injection: true (and the session abandoned) when the device drops
  // out of `round`'s secure aggregation at the phase it would act in now.
  bool DropsOut(uint64_t round);
  // Reports, persists, logs what a finished task produced.
  StepResult FinishTask(TaskReport report);
  // Run's loop, until `stop`, max_tasks or an error that ends it.
  absl::Status RunLoop(const std::atomic<bool>& stop, Backoff& backoff);
  // Sleeps up to `delay`, waking early on `stop`.
  static void Wait(std::chrono::milliseconds delay, const std::atomic<bool>& stop);

  ClientTransport* transport_;
  PendingUpdateStore* pending_;
  OfflineTransport offline_;
  std::unique_ptr<ModelGate> gate_;
  DeviceClient* device_;
  models::ModelInstance* model_;
  const Trainer* trainer_;
  DeviceRunnerOptions options_;
  std::once_flag prepare_once_;
  absl::Status prepared_;
  std::unique_ptr<RunnerDrift> drift_;  // null when drift monitoring is off
  bool joined_ = false;
  std::chrono::milliseconds heartbeat_interval_{0};  // from the last join
  std::optional<TaskReport> secagg_report_;  // the task whose session is open
  std::shared_ptr<const v1::ModelArtifact> saved_model_;
  int tasks_done_ = 0;
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_DEVICE_RUNNER_H_
