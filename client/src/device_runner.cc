#include "fedge/client/device_runner.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fedge/models/model_trust.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "runner_drift.h"

namespace fedge::client {
namespace {

bool IsRefusal(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnauthenticated ||
         status.code() == absl::StatusCode::kPermissionDenied;
}

// DeviceClient prefixes the errors of the model download with this.
bool IsModelRefusal(const absl::Status& status) {
  return status.message().rfind("fetching the model", 0) == 0;
}

}  // namespace

// The transport as the device sees it: every call goes to the offline
// wrapper; FetchModel additionally verifies the artifact against the pinned
// key (when one is set) and remembers the last model that passed.
class DeviceRunner::ModelGate final : public ClientTransport {
 public:
  ModelGate(ClientTransport* inner, const std::optional<models::VerifyingKey>* pinned, bool log,
            bool keep)
      : inner_(inner), pinned_(pinned), log_(log), keep_(keep) {
    if (pinned_->has_value()) trusted_.push_back(**pinned_);
  }

  absl::StatusOr<v1::JoinResponse> Join(const std::string& client_id) override {
    absl::StatusOr<v1::JoinResponse> join = inner_->Join(client_id);
    if (!join.ok()) return join;
    FEDGE_RETURN_IF_ERROR(Check(*join));
    return join;
  }
  // A join response is refused when the aggregator signs with a key its
  // key chain does not lead to from the pinned one (models/model_trust.h);
  // otherwise the keys of the chain are the trusted ones.
  absl::Status Check(const v1::JoinResponse& join) const {
    if (!pinned_->has_value() || join.signing_key_id().empty()) return absl::OkStatus();
    models::ModelTrust trust(**pinned_);
    FEDGE_RETURN_IF_ERROR(trust.AdoptChain(
        std::vector<v1::KeyEndorsement>(join.key_chain().begin(), join.key_chain().end()),
        join.signing_key_id()));
    std::lock_guard<std::mutex> lock(mu_);
    trusted_ = trust.trusted();
    return absl::OkStatus();
  }
  absl::StatusOr<v1::Task> PollTask(const std::string& client_id) override {
    return inner_->PollTask(client_id);
  }
  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) override {
    absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> artifact = inner_->FetchModel(version);
    if (!artifact.ok()) return artifact.status();
    if (*artifact == nullptr) {
      return absl::DataLossError(
          absl::StrCat("the transport gave no artifact for version ", version));
    }
    std::lock_guard<std::mutex> lock(mu_);
    // Verified before: the same (immutable, still living) artifact object.
    const bool verified = std::any_of(
        verified_.begin(), verified_.end(),
        [&](const std::weak_ptr<const v1::ModelArtifact>& v) { return v.lock() == *artifact; });
    if (pinned_->has_value() && !verified) {
      if (absl::Status s = models::VerifySignedArtifact(**artifact, trusted_); !s.ok()) {
        if (log_) {
          LogEvent("error", "model_refused", {{"version", std::to_string(version)}}, s.ToString());
        }
        return absl::Status(s.code(),
                            absl::StrCat("model version ", version, " refused: ", s.message()));
      }
      verified_.push_back(*artifact);
      // An evaluation task alternates two versions: keep both verified.
      if (verified_.size() > 2) verified_.erase(verified_.begin());
    }
    if (keep_) current_ = *artifact;
    return artifact;
  }
  absl::Status SubmitUpdate(const v1::EncodedUpdate& update) override {
    return inner_->SubmitUpdate(update);
  }
  absl::Status ReportDrift(const v1::DriftReport& report) override {
    return inner_->ReportDrift(report);
  }
  absl::Status ReportMetrics(const v1::MetricsReport& report) override {
    return inner_->ReportMetrics(report);
  }
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& client_id) override {
    return inner_->Heartbeat(client_id);
  }
  absl::Status Leave(const std::string& client_id, const std::string& reason) override {
    return inner_->Leave(client_id, reason);
  }
  absl::Status SecAggSend(const v1::SecAggClientMessage& message) override {
    return inner_->SecAggSend(message);
  }
  absl::StatusOr<v1::SecAggServerMessage> SecAggPoll(const std::string& client_id, uint64_t round,
                                                     v1::SecAggPhase phase) override {
    return inner_->SecAggPoll(client_id, round, phase);
  }

  std::shared_ptr<const v1::ModelArtifact> current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
  }

 private:
  ClientTransport* const inner_;
  const std::optional<models::VerifyingKey>* const pinned_;
  const bool log_;
  const bool keep_;
  mutable std::mutex mu_;
  // Weak: the runner does not keep old versions alive (a simulation runs
  // thousands of runners); a freed artifact is verified again if it comes back.
  std::vector<std::weak_ptr<const v1::ModelArtifact>> verified_;
  std::shared_ptr<const v1::ModelArtifact> current_;
  // The pinned key and the keys its chain leads to (the last Join's).
  mutable std::vector<models::VerifyingKey> trusted_;
};

DeviceRunner::DeviceRunner(ClientTransport* transport, PendingUpdateStore* pending,
                           DeviceClient* device, models::ModelInstance* model,
                           const Trainer* trainer, DeviceRunnerOptions options)
    : transport_(transport),
      pending_(pending),
      offline_(transport, pending),
      device_(device),
      model_(model),
      trainer_(trainer),
      options_(std::move(options)) {
  gate_ = std::make_unique<ModelGate>(&offline_, &options_.pinned_key, options_.log_events,
                                      options_.keep_model || options_.drift.has_value() ||
                                          !options_.model_file.empty());
}

DeviceRunner::~DeviceRunner() = default;

absl::StatusOr<std::unique_ptr<DeviceRunner>> DeviceRunner::Create(
    ClientTransport* transport, PendingUpdateStore* pending, DeviceClient* device,
    models::ModelInstance* model, const Trainer* trainer, DeviceRunnerOptions options) {
  auto runner = std::make_unique<DeviceRunner>(transport, pending, device, model, trainer,
                                               std::move(options));
  FEDGE_RETURN_IF_ERROR(runner->Prepare());
  return runner;
}

absl::Status DeviceRunner::Prepare() {
  std::call_once(prepare_once_, [this] {
    absl::StatusOr<std::unique_ptr<RunnerDrift>> drift =
        RunnerDrift::Create(device_->id(), options_);
    if (drift.ok()) {
      drift_ = *std::move(drift);
      prepared_ = absl::OkStatus();
    } else {
      prepared_ = drift.status();
    }
  });
  return prepared_;
}

void DeviceRunner::Wait(std::chrono::milliseconds delay, const std::atomic<bool>& stop) {
  const auto until = std::chrono::steady_clock::now() + delay;
  while (!stop.load() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(50), std::chrono::duration_cast<std::chrono::milliseconds>(
                                           until - std::chrono::steady_clock::now()) +
                                           std::chrono::milliseconds(1)));
  }
}

std::shared_ptr<const v1::ModelArtifact> DeviceRunner::current_model() const {
  return gate_->current();
}

void DeviceRunner::Log(std::string_view level, std::string_view event, const LogFields& fields,
                       std::string_view message) const {
  if (options_.log_events) LogEvent(level, event, fields, message);
}

bool DeviceRunner::DropsOut(uint64_t round) {
  auto it = options_.secagg_drops.find(round);
  if (it == options_.secagg_drops.end() || !device_->secagg_pending() ||
      static_cast<int>(device_->secagg_phase()) < it->second) {
    return false;
  }
  Log("warning", "secagg_dropped",
      {{"client", device_->id()},
       {"round", std::to_string(round)},
       {"phase", v1::SecAggPhase_Name(device_->secagg_phase())}},
      "fault injection (secagg_drops)");
  device_->AbandonSecAgg();
  return true;
}

absl::StatusOr<StepResult> DeviceRunner::RunOnce(models::ModelInstance& model) {
  models::ModelInstance* const own = model_;
  model_ = &model;
  absl::StatusOr<StepResult> step = RunOnce();
  model_ = own;
  return step;
}

absl::StatusOr<StepResult> DeviceRunner::RunOnce() {
  FEDGE_RETURN_IF_ERROR(Prepare());
  const std::string& id = device_->id();
  StepResult step;
  if (!joined_) {
    // The app may have joined already (to learn the model spec): that join
    // counts, checked as the runner checks its own, and the runner does not
    // join a second time.
    absl::StatusOr<v1::JoinResponse> join = absl::UnknownError("not joined");
    if (options_.already_joined.has_value()) {
      FEDGE_RETURN_IF_ERROR(gate_->Check(*options_.already_joined));
      join = *options_.already_joined;
      options_.already_joined.reset();
    } else {
      join = gate_->Join(id);
    }
    if (!join.ok()) return join.status();
    joined_ = true;
    heartbeat_interval_ = std::chrono::milliseconds(join->heartbeat_interval_ms());
    step.joined = true;
    if (options_.on_join) options_.on_join(*join);
    Log("info", "joined",
             {{"client", id}, {"latest_version", std::to_string(join->latest_version())}});
  }
  absl::StatusOr<TaskReport> report;
  if (secagg_report_.has_value() && DropsOut(secagg_report_->round)) {
    secagg_report_.reset();
    step.kind = StepResult::Kind::kNoTask;
    return step;
  }
  if (secagg_report_.has_value()) {
    // Secure aggregation: the update leaves the device only masked, over
    // the protocol's phases, one phase per step.
    absl::StatusOr<uint64_t> sent = device_->SecAggStep(*gate_);
    if (absl::IsUnavailable(sent.status()) && device_->secagg_pending()) {
      step.kind = StepResult::Kind::kSecAggWaiting;
      return step;
    }
    if (sent.ok()) {
      secagg_report_->bytes_up += *sent;
      if (device_->secagg_pending()) {
        step.kind = StepResult::Kind::kSecAggWaiting;
        return step;
      }
      report = *std::move(secagg_report_);
    } else {
      report = sent.status();  // this device dropped out of the round
    }
    secagg_report_.reset();
  } else {
    absl::StatusOr<FlushReport> flushed = offline_.Flush();
    if (!flushed.ok()) {
      Log("error", "pending_updates_unreadable", {{"client", id}},
               flushed.status().ToString());
    } else if (flushed->kept > 0) {
      step.kind = StepResult::Kind::kOffline;
      return step;
    }
    if (model_ == nullptr) {
      return absl::FailedPreconditionError(
          "this runner has no model of its own: call RunOnce(model)");
    }
    report = device_->RunTask(*gate_, *model_, *trainer_);
    if (report.ok() && report->secagg) {
      secagg_report_ = *std::move(report);
      // The first phase (advertising keys) polls nothing: run it now.
      absl::StatusOr<StepResult> first = RunOnce();
      if (first.ok()) first->joined = step.joined;
      return first;
    }
  }
  if (!report.ok()) {
    if (absl::IsNotFound(report.status())) {
      step.kind = StepResult::Kind::kNoTask;
      return step;
    }
    if (options_.on_task_failed) options_.on_task_failed(report.status());
    return report.status();
  }
  StepResult done = FinishTask(*std::move(report));
  done.joined = step.joined;
  return done;
}

StepResult DeviceRunner::FinishTask(TaskReport report) {
  const std::string& id = device_->id();
  ++tasks_done_;
  v1::MetricsReport metrics;
  metrics.set_client_id(id);
  metrics.set_round(report.round);
  metrics.set_model_version(report.model_version);
  if (report.evaluation) {
    metrics.mutable_metrics()->insert(report.evaluation_metrics.begin(),
                                      report.evaluation_metrics.end());
  } else if (!report.secagg) {
    // Under secure aggregation the device's figures stay on the device: a
    // loss sent in the clear next to a masked update would say what the
    // masking hides.
    (*metrics.mutable_metrics())["train_loss"] = report.metrics.loss;
    (*metrics.mutable_metrics())["train_accuracy"] = report.metrics.accuracy;
  }
  if (metrics.metrics_size() > 0) {
    if (absl::Status s = gate_->ReportMetrics(metrics);
        !s.ok() && !IsUnreachable(s) && !absl::IsUnimplemented(s)) {
      Log("warning", "metrics_refused", {{"client", id}}, s.ToString());
    }
  }
  std::shared_ptr<const v1::ModelArtifact> model = gate_->current();
  if (!options_.model_file.empty() && model != nullptr && model != saved_model_) {
    if (absl::Status s = proto::WriteFileAtomic(options_.model_file, model->SerializeAsString());
        !s.ok()) {
      Log("warning", "model_not_saved", {{"client", id}}, s.ToString());
    } else {
      saved_model_ = model;
    }
  }
  Log("info", report.evaluation ? "evaluation_done" : "task_done",
           {{"client", id},
            {"round", std::to_string(report.round)},
            {"model_version", std::to_string(report.model_version)},
            {"examples", std::to_string(report.num_examples)},
            {"train_loss", std::to_string(report.metrics.loss)},
            {"bytes_down", std::to_string(report.bytes_down)},
            {"bytes_up", std::to_string(report.bytes_up)}});
  if (options_.on_task) options_.on_task(report);
  if (drift_ != nullptr && model != nullptr) {
    if (absl::Status s =
            drift_->ObserveTask(*model_, device_->data(), *model, report.round, *gate_);
        !s.ok()) {
      Log("warning", "drift_observation_failed", {{"client", id}}, s.ToString());
    }
  }
  StepResult step;
  step.kind = StepResult::Kind::kTaskDone;
  step.report = std::move(report);
  return step;
}

namespace {

// "Still here", every `interval` from a thread of its own, from Start until
// destruction: the aggregator counts a device that stops heartbeating gone.
class Heartbeats {
 public:
  Heartbeats(ClientTransport* transport, std::string id)
      : transport_(transport), id_(std::move(id)) {}
  ~Heartbeats() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  Heartbeats(const Heartbeats&) = delete;
  Heartbeats& operator=(const Heartbeats&) = delete;

  // Idempotent; an interval of 0 (the aggregator wants none) starts nothing.
  void Start(std::chrono::milliseconds interval) {
    if (thread_.joinable() || interval.count() <= 0) return;
    thread_ = std::thread([this, interval] { Loop(interval); });
  }

 private:
  void Loop(std::chrono::milliseconds interval) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, interval, [this] { return done_; })) {
      lock.unlock();
      // A failed beat is not retried: the next one comes an interval later,
      // and the runner's own calls report an unreachable aggregator.
      const absl::Status beat = transport_->Heartbeat(id_).status();
      lock.lock();
      if (absl::IsUnimplemented(beat)) return;  // this aggregator takes none
    }
  }

  ClientTransport* const transport_;
  const std::string id_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

absl::Status DeviceRunner::Run(const std::atomic<bool>& stop) {
  FEDGE_RETURN_IF_ERROR(Prepare());
  absl::StatusOr<Backoff> created = Backoff::Create(options_.backoff, options_.seed);
  if (!created.ok()) return created.status();
  Backoff backoff = *std::move(created);
  const std::string& id = device_->id();
  absl::Status ended = RunLoop(stop, backoff);
  if (ended.ok() && joined_) {
    const std::string reason =
        stop.load() ? "stopped" : absl::StrCat("done after ", tasks_done_, " tasks");
    absl::Status left = transport_->Leave(id, reason);
    if (left.ok()) {
      Log("info", "left", {{"client", id}, {"reason", reason}});
    } else if (!absl::IsUnimplemented(left)) {
      Log("warning", "leave_not_sent", {{"client", id}}, left.ToString());
    }
  }
  return ended;
}

absl::Status DeviceRunner::RunLoop(const std::atomic<bool>& stop, Backoff& backoff) {
  const std::string& id = device_->id();
  Heartbeats heartbeats(transport_, id);
  while (!stop.load() && (options_.max_tasks == 0 || tasks_done_ < options_.max_tasks)) {
    if (joined_) heartbeats.Start(heartbeat_interval_);
    absl::StatusOr<StepResult> step = RunOnce();
    if (!step.ok()) {
      const absl::Status& status = step.status();
      const auto delay = backoff.Next();
      if (!joined_) {
        if (!IsUnreachable(status)) return status;
        Log("warning", "aggregator_unreachable",
                 {{"client", id}, {"retry_in_ms", std::to_string(delay.count())}},
                 status.ToString());
      } else {
        // A refused model is skipped: the device keeps its model and waits
        // for the next version. A refused device ends the loop.
        if (IsRefusal(status) && !IsModelRefusal(status)) return status;
        Log(IsUnreachable(status) ? "warning" : "error", "task_failed",
                 {{"client", id}, {"retry_in_ms", std::to_string(delay.count())}},
                 status.ToString());
      }
      Wait(delay, stop);
      continue;
    }
    switch (step->kind) {
      case StepResult::Kind::kTaskDone:
        backoff.Reset();
        break;
      case StepResult::Kind::kOffline:
        Wait(backoff.Next(), stop);
        break;
      case StepResult::Kind::kNoTask:         // the transport's poll waited
      case StepResult::Kind::kSecAggWaiting:  // likewise
        break;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MonitorOutcome> DeviceRunner::ObserveInference(std::span<const float> features,
                                                              std::span<const float> confidence,
                                                              uint64_t model_version) {
  FEDGE_RETURN_IF_ERROR(Prepare());
  if (drift_ == nullptr) {
    return absl::FailedPreconditionError("drift monitoring is off (DeviceRunnerOptions.drift)");
  }
  return drift_->ObserveInference(features, confidence, model_version, *gate_);
}

absl::StatusOr<MonitorOutcome> DeviceRunner::ObserveFeedback(std::span<const float> loss,
                                                             std::span<const float> error,
                                                             uint64_t model_version) {
  FEDGE_RETURN_IF_ERROR(Prepare());
  if (drift_ == nullptr) {
    return absl::FailedPreconditionError("drift monitoring is off (DeviceRunnerOptions.drift)");
  }
  return drift_->ObserveFeedback(loss, error, model_version, *gate_);
}

std::vector<v1::DriftEvent> DeviceRunner::drift_events() const {
  if (drift_ == nullptr) return {};
  return drift_->events();
}

}  // namespace fedge::client
