// The C API (fedge/client/c_api.h) over the C++ device library: a
// GrpcTransport, a DeviceClient on an ExampleSource that calls the app back
// one batch at a time, a BudgetedTraining control wrapping the app's policy,
// and the DeviceRunner loop. Every entry point catches everything: no C++
// exception crosses the API.
#include "fedge/client/c_api.h"

#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/client/device_config.h"
#include "fedge/proto/version.h"
#include "fedge/client/device_runner.h"
#include "fedge/client/drift_detector.h"
#include "fedge/client/enrollment.h"
#include "fedge/client/grpc_transport.h"
#include "fedge/client/training_budget.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_instance.h"

namespace {

using fedge::client::BudgetedTraining;
using fedge::client::BudgetEvent;

// --- errors ----------------------------------------------------------------

thread_local std::string g_last_error;

fedge_status Fail(fedge_status status, std::string message) {
  g_last_error = std::move(message);
  return status;
}

fedge_status FromStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return FEDGE_OK;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return FEDGE_ERR_INVALID_ARGUMENT;
    case absl::StatusCode::kFailedPrecondition:
      return FEDGE_ERR_STATE;
    case absl::StatusCode::kUnavailable:
      return FEDGE_ERR_UNAVAILABLE;
    case absl::StatusCode::kDeadlineExceeded:
      return FEDGE_ERR_TIMEOUT;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kDataLoss:
      return FEDGE_ERR_REFUSED;
    case absl::StatusCode::kResourceExhausted:
      return FEDGE_ERR_RESOURCE;
    case absl::StatusCode::kCancelled:
      return FEDGE_ERR_CANCELLED;
    default:
      return FEDGE_ERR_INTERNAL;
  }
}

// --- configuration -----------------------------------------------------------

using ClientConfig = fedge::client::DeviceConfig;

struct ConfigError {
  std::string message;
};

// Parses and validates `text` (YAML or JSON) on the device key table
// (fedge/client/device_config.h); the error names the offending key.
std::variant<ClientConfig, ConfigError> ParseConfig(const char* text) {
  ClientConfig config = fedge::client::DefaultDeviceConfig();
  if (absl::Status s = fedge::client::DeviceKeys().ApplyYaml(config, text, ""); !s.ok()) {
    return ConfigError{std::string(s.message())};
  }
  if (absl::Status s = fedge::client::ValidateDeviceConfig(config); !s.ok()) {
    return ConfigError{std::string(s.message())};
  }
  return config;
}

// --- the app's data, one batch at a time ------------------------------------

class CallbackExampleSource final : public fedge::client::ExampleSource {
 public:
  explicit CallbackExampleSource(const fedge_data_source& source) : source_(source) {}

  int64_t size() const override { return source_.num_examples; }
  int64_t example_numel() const override { return source_.example_size; }
  int64_t num_classes() const override { return source_.num_classes; }

  absl::Status ReadBatch(std::span<const int64_t> indices, std::span<float> features,
                         std::span<int64_t> labels) const override {
    labels32_.assign(indices.size(), 0);
    int rc;
    try {
      rc = source_.read_batch(source_.user_data, indices.data(), indices.size(), features.data(),
                              labels32_.data());
    } catch (...) {
      return absl::AbortedError("the data callback threw an exception");
    }
    if (rc != 0) {
      return absl::AbortedError(absl::StrCat("the data callback returned ", rc));
    }
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = labels32_[i];
    return absl::OkStatus();
  }

 private:
  const fedge_data_source source_;
  mutable std::vector<int32_t> labels32_;  // one batch; the training thread only
};

const char* EventName(fedge_event_type type) {
  switch (type) {
    case FEDGE_EVENT_JOINED:
      return "joined";
    case FEDGE_EVENT_TRAINING_STARTED:
      return "training_started";
    case FEDGE_EVENT_TRAINING_PAUSED:
      return "training_paused";
    case FEDGE_EVENT_TRAINING_RESUMED:
      return "training_resumed";
    case FEDGE_EVENT_BUDGET_LIMITED:
      return "budget_limited";
    case FEDGE_EVENT_UPDATE_SENT:
      return "update_sent";
    case FEDGE_EVENT_MODEL_UPDATED:
      return "model_updated";
    case FEDGE_EVENT_DRIFT_DETECTED:
      return "drift_detected";
    case FEDGE_EVENT_ERROR:
      return "error";
  }
  return "unknown";
}

}  // namespace

// --- the handle --------------------------------------------------------------

struct fedge_client {
  std::mutex mu;  // guards the fields up to `stop`
  std::optional<ClientConfig> config;
  std::shared_ptr<fedge::client::GrpcTransport> transport;
  std::shared_ptr<const CallbackExampleSource> source;
  fedge_policy_fn policy = nullptr;
  void* policy_user = nullptr;
  fedge_event_fn on_event = nullptr;
  void* event_user = nullptr;
  bool running = false;
  std::thread background;
  bool background_done = false;
  fedge_status background_result = FEDGE_OK;
  std::string background_message;
  // Kept across runs: the training model and the device (its error-feedback
  // residual). Used by the run only. The drift monitor's state is kept in
  // state_dir by the run's DeviceRunner.
  std::unique_ptr<fedge::models::ModelInstance> train_model;
  std::unique_ptr<fedge::client::DeviceClient> device;

  std::atomic<bool> stop{false};

  // The model predict uses: its own copy, so predict may run while a task
  // trains.
  std::mutex model_mu;
  std::unique_ptr<fedge::models::ModelInstance> inference;
  uint64_t inference_version = 0;
  std::string architecture;
};

namespace {

std::mutex g_handles_mu;
std::unordered_set<const fedge_client*>& Handles() {
  static auto* handles = new std::unordered_set<const fedge_client*>();
  return *handles;
}

bool IsLive(const fedge_client* client) {
  if (client == nullptr) return false;
  std::lock_guard<std::mutex> lock(g_handles_mu);
  return Handles().contains(client);
}

fedge_status InvalidHandle(const char* function) {
  return Fail(FEDGE_ERR_INVALID_HANDLE,
              absl::StrCat(function, ": the client handle is NULL or not a live fedge_client"));
}

// Every entry point: checks the handle and turns any exception into an
// error, so none crosses the C boundary.
template <typename F>
fedge_status Guarded(const char* function, fedge_client* client, F&& body) {
  if (!IsLive(client)) return InvalidHandle(function);
  try {
    return body(*client);
  } catch (const std::exception& e) {
    return Fail(FEDGE_ERR_INTERNAL, absl::StrCat(function, ": ", e.what()));
  } catch (...) {
    return Fail(FEDGE_ERR_INTERNAL, absl::StrCat(function, ": unknown exception"));
  }
}

// Makes `artifact` (already verified by the transport) the model predict
// uses when it is newer than the current one. Returns true if it was.
absl::StatusOr<bool> UpdateInferenceModel(fedge_client& c,
                                          const fedge::v1::ModelArtifact& artifact) {
  const uint64_t version = artifact.header().version();
  std::lock_guard<std::mutex> lock(c.model_mu);
  if (c.inference != nullptr && version <= c.inference_version) return false;
  absl::StatusOr<fedge::models::ModelSpec> spec =
      fedge::models::FromProto(artifact.header().model());
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::unique_ptr<fedge::models::ModelInstance>> model =
      fedge::models::ModelInstance::Create(*spec, 0);
  if (!model.ok()) return model.status();
  if (absl::Status s = fedge::models::DecodeArtifact(artifact, (*model)->parameters().layout(),
                                                     (*model)->parameters().values());
      !s.ok()) {
    return s;
  }
  (*model)->network().eval();
  c.inference = *std::move(model);
  c.inference_version = version;
  c.architecture = spec->architecture;
  return true;
}

// One run (foreground or background): what it needs, copied from the handle
// when it starts (the handle cannot change while `running`).
class Run {
 public:
  Run(fedge_client& c, int64_t max_tasks, std::optional<std::chrono::milliseconds> timeout)
      : c_(c), max_tasks_(max_tasks), timeout_(timeout) {
    config_ = *c.config;
    transport_ = c.transport;
    source_ = c.source;
    policy_ = c.policy;
    policy_user_ = c.policy_user;
    on_event_ = c.on_event;
    event_user_ = c.event_user;
  }

  // Runs to the end; sets the message of a failure in *message.
  fedge_status Execute(std::string* message) {
    std::thread watchdog;
    if (timeout_.has_value()) {
      watchdog = std::thread([this] {
        std::unique_lock<std::mutex> lock(watch_mu_);
        if (!watch_cv_.wait_for(lock, *timeout_, [this] { return finished_; })) {
          timed_out_ = true;
          c_.stop = true;
        }
      });
    }
    fedge_status result = FEDGE_OK;
    try {
      result = ExecuteUnwatched(message);
    } catch (const std::exception& e) {
      result = FEDGE_ERR_INTERNAL;
      *message = absl::StrCat("the run failed: ", e.what());
    } catch (...) {
      result = FEDGE_ERR_INTERNAL;
      *message = "the run failed with an unknown exception";
    }
    if (watchdog.joinable()) {
      {
        std::lock_guard<std::mutex> lock(watch_mu_);
        finished_ = true;
      }
      watch_cv_.notify_all();
      watchdog.join();
    }
    if (result == FEDGE_ERR_CANCELLED && timed_out_) {
      result = FEDGE_ERR_TIMEOUT;
      *message = absl::StrCat("the run timed out after ", timeout_->count(), " ms");
    }
    return result;
  }

 private:
  // Records the first fatal error of the run and stops it.
  void Abort(fedge_status status, std::string message) {
    std::lock_guard<std::mutex> lock(fatal_mu_);
    if (!fatal_.has_value()) fatal_.emplace(status, std::move(message));
    c_.stop = true;
  }

  void Emit(fedge_event_type type, uint64_t round, uint64_t version, double value,
            const std::string& message) {
    if (on_event_ == nullptr) return;
    fedge_event event{type, round, version, value, message.c_str()};
    int rc;
    try {
      rc = on_event_(event_user_, &event);
    } catch (...) {
      Abort(FEDGE_ERR_CALLBACK, absl::StrCat("the event callback threw an exception for event '",
                                             EventName(type), "'"));
      return;
    }
    if (rc != 0) {
      Abort(FEDGE_ERR_CALLBACK,
            absl::StrCat("the event callback returned ", rc, " for event '", EventName(type), "'"));
    }
  }

  // Returns the version of the task's model (0 before one).
  uint64_t RefreshModel() {
    std::shared_ptr<const fedge::v1::ModelArtifact> current = transport_->current_model();
    if (current == nullptr) return 0;
    absl::StatusOr<bool> updated = UpdateInferenceModel(c_, *current);
    if (!updated.ok()) {
      Emit(FEDGE_EVENT_ERROR, 0, current->header().version(), 0,
           absl::StrCat("loading the received model for predict: ", updated.status().message()));
    } else if (*updated) {
      Emit(FEDGE_EVENT_MODEL_UPDATED, 0, current->header().version(), 0,
           absl::StrCat("model version ", current->header().version(), " is used for predict"));
    }
    return current->header().version();
  }

  // The app's policy and the budgets, with events; also reports the start
  // of training and the model the task brought.
  class Control final : public fedge::client::TrainingControl {
   public:
    explicit Control(Run& run)
        : run_(run),
          budgeted_(run.config_.budget, MakePolicy(run), MakeNotify(run), &run.c_.stop) {}

    absl::StatusOr<int64_t> PlanBatch(fedge::models::ModelInstance& model,
                                      const fedge::v1::TrainConfig& config) override {
      const uint64_t version = run_.RefreshModel();
      run_.Emit(FEDGE_EVENT_TRAINING_STARTED, run_.transport_->last_task().first, version, 0,
                absl::StrCat("training on ", run_.source_->size(), " examples, batch size ",
                             config.batch_size()));
      return budgeted_.PlanBatch(model, config);
    }
    absl::StatusOr<bool> BeforeStep(const fedge::client::TrainMetrics& so_far) override {
      return budgeted_.BeforeStep(so_far);
    }

   private:
    static BudgetedTraining::Policy MakePolicy(Run& run) {
      if (run.policy_ == nullptr) return nullptr;
      return [&run]() -> absl::StatusOr<bool> {
        int rc;
        try {
          rc = run.policy_(run.policy_user_);
        } catch (...) {
          run.Abort(FEDGE_ERR_CALLBACK, "the policy callback threw an exception");
          return absl::AbortedError("the policy callback threw an exception");
        }
        if (rc == 0 || rc == 1) return rc == 1;
        const std::string message =
            absl::StrCat("the policy callback returned ", rc, " (expected 1: train, 0: pause)");
        run.Abort(FEDGE_ERR_CALLBACK, message);
        return absl::AbortedError(message);
      };
    }
    static BudgetedTraining::Notify MakeNotify(Run& run) {
      return [&run](BudgetEvent event, const std::string& detail) {
        // The task in progress: its round and the version it trains on.
        const auto [round, version] = run.transport_->last_task();
        switch (event) {
          case BudgetEvent::kPaused:
            run.Emit(FEDGE_EVENT_TRAINING_PAUSED, round, version, 0, detail);
            break;
          case BudgetEvent::kResumed:
            run.Emit(FEDGE_EVENT_TRAINING_RESUMED, round, version, 0, detail);
            break;
          case BudgetEvent::kRefused:
            run.Emit(FEDGE_EVENT_BUDGET_LIMITED, round, version, 0, detail);
            run.Abort(FEDGE_ERR_RESOURCE, detail);
            break;
          case BudgetEvent::kBatchShrunk:
          case BudgetEvent::kTimeBudgetReached:
            run.Emit(FEDGE_EVENT_BUDGET_LIMITED, round, version, 0, detail);
            break;
        }
      };
    }

    Run& run_;
    BudgetedTraining budgeted_;
  };

  // The app's source as this run reads it: a failing callback, or one that
  // hands back labels out of range or non-finite features, ends the run with
  // FEDGE_ERR_CALLBACK (DeviceRunner alone would retry the task).
  class RunSource final : public fedge::client::ExampleSource {
   public:
    RunSource(Run& run, std::shared_ptr<const CallbackExampleSource> app)
        : run_(run), app_(std::move(app)) {}
    int64_t size() const override { return app_->size(); }
    int64_t example_numel() const override { return app_->example_numel(); }
    int64_t num_classes() const override { return app_->num_classes(); }
    absl::Status ReadBatch(std::span<const int64_t> indices, std::span<float> features,
                           std::span<int64_t> labels) const override {
      absl::Status status = app_->ReadBatch(indices, features, labels);
      if (status.ok()) {
        for (size_t i = 0; i < labels.size() && status.ok(); ++i) {
          if (labels[i] < 0 || labels[i] >= app_->num_classes()) {
            status = absl::InvalidArgumentError(
                absl::StrCat("the data callback gave label ", labels[i], " for example ",
                             indices[i], "; num_classes is ", app_->num_classes()));
          }
        }
        for (size_t i = 0; i < features.size() && status.ok(); ++i) {
          if (!std::isfinite(features[i])) {
            status = absl::InvalidArgumentError(
                absl::StrCat("the data callback gave a non-finite feature for example ",
                             indices[i / static_cast<size_t>(app_->example_numel())]));
          }
        }
      }
      if (!status.ok()) run_.Abort(FEDGE_ERR_CALLBACK, std::string(status.message()));
      return status;
    }

   private:
    Run& run_;
    std::shared_ptr<const CallbackExampleSource> app_;
  };

  // Joins (retrying while the aggregator is away) to learn the model spec.
  absl::StatusOr<fedge::v1::JoinResponse> JoinFederation() {
    auto delay = std::chrono::milliseconds(200);
    while (!c_.stop.load()) {
      absl::StatusOr<fedge::v1::JoinResponse> join = transport_->Join();
      if (join.ok() || !fedge::client::IsUnreachable(join.status())) return join;
      Emit(FEDGE_EVENT_ERROR, 0, 0, 0,
           absl::StrCat("the aggregator is unreachable: ", join.status().message()));
      const auto until = std::chrono::steady_clock::now() + delay;
      while (!c_.stop.load() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      delay = std::min(delay * 2, std::chrono::milliseconds(5000));
    }
    return absl::CancelledError("the run was stopped");
  }

  fedge_status ExecuteUnwatched(std::string* message) {
    fedge::models::SetComputeThreads(config_.threads);
    absl::StatusOr<fedge::v1::JoinResponse> join = JoinFederation();
    if (fatal_.has_value()) {
      *message = fatal_->second;
      return fatal_->first;
    }
    if (!join.ok()) {
      *message = absl::StrCat("joining the federation: ", join.status().message());
      return FromStatus(join.status());
    }
    absl::StatusOr<fedge::models::ModelSpec> spec = fedge::models::FromProto(join->model());
    if (!spec.ok()) {
      *message = absl::StrCat("the federation's model: ", spec.status().message());
      return FEDGE_ERR_INTERNAL;
    }
    int64_t numel = 1;
    for (int64_t d : spec->input_shape) numel *= d;
    if (source_->example_numel() != numel || source_->num_classes() != spec->num_classes) {
      *message =
          absl::StrCat("the data source has example_size ", source_->example_numel(),
                       " and num_classes ", source_->num_classes(), "; the federation's model '",
                       spec->architecture, "' takes ", numel, " and ", spec->num_classes);
      return FEDGE_ERR_INVALID_ARGUMENT;
    }
    Emit(FEDGE_EVENT_JOINED, 0, join->latest_version(), 0,
         absl::StrCat("joined ", config_.transport.target, " as ", config_.transport.client_id));

    if (c_.train_model == nullptr || c_.train_model->spec().architecture != spec->architecture) {
      absl::StatusOr<std::unique_ptr<fedge::models::ModelInstance>> model =
          fedge::models::ModelInstance::Create(*spec, 0);
      if (!model.ok()) {
        *message = std::string(model.status().message());
        return FromStatus(model.status());
      }
      c_.train_model = *std::move(model);
    }
    fedge::client::LocalDataset data;
    data.source = std::make_shared<const RunSource>(*this, source_);
    if (c_.device == nullptr) {
      fedge::client::DeviceClientOptions options;
      options.codec = config_.codec;
      options.floor = config_.privacy_floor;
      options.seeded_noise = config_.seeded_noise;
      c_.device =
          std::make_unique<fedge::client::DeviceClient>(config_.transport.client_id, data, options);
    } else {
      c_.device->SetData(data);
    }

    std::error_code ec;
    std::filesystem::create_directories(config_.state_dir, ec);
    if (ec) {
      *message =
          absl::StrCat("cannot create state_dir ", config_.state_dir.string(), ": ", ec.message());
      return FEDGE_ERR_BAD_CONFIG;
    }
    fedge::client::FileKeyProvider keys(config_.state_dir / "store.key");
    fedge::client::PendingUpdateStore pending(config_.state_dir / "pending", &keys);
    Control control(*this);
    fedge::client::Trainer trainer(&control);
    fedge::client::DeviceRunnerOptions options;
    options.max_tasks = static_cast<int>(max_tasks_);
    options.seed = std::hash<std::string>{}(config_.transport.client_id);
    options.model_file = config_.state_dir / "model.fedge";
    options.already_joined = *join;  // JoinFederation above: one join per start
    uint64_t task_round = 0;
    options.on_task = [this, &task_round](const fedge::client::TaskReport& report) {
      task_round = report.round;
      Emit(FEDGE_EVENT_UPDATE_SENT, report.round, report.model_version, report.metrics.loss,
           absl::StrCat("update of round ", report.round, " sent (", report.metrics.steps,
                        " steps, ", report.bytes_up, " bytes)"));
    };
    if (config_.drift_detector != "none") {
      // The runner's monitor watches the loss of the device's model on its
      // examples after each task (ParseConfig admits loss-stream detectors).
      fedge::client::DriftMonitorOptions drift;
      drift.detectors = {config_.drift_detector + ":loss"};
      drift.cooldown = 0;
      // adwin takes values in [0, value_range]: twice a uniform guess's loss.
      drift.detector_options.adwin.value_range =
          2.0 * std::log(static_cast<double>(std::max<int64_t>(source_->num_classes(), 2)));
      options.drift = drift;
      options.state_dir = config_.state_dir;
      options.on_drift = [this, &task_round](const fedge::client::MonitorOutcome& outcome,
                                             const absl::Status& reported) {
        std::string sent;
        if (outcome.report.has_value()) {
          sent = reported.ok() ? "; reported to the aggregator"
                               : absl::StrCat("; not reported: ", reported.message());
        }
        for (const fedge::v1::DriftEvent& e : outcome.alarms) {
          Emit(FEDGE_EVENT_DRIFT_DETECTED, task_round, e.model_version(), e.statistic(),
               absl::StrCat("the loss on the local data drifted (", e.detector(), " statistic ",
                            e.statistic(), " > ", e.threshold(), ")", sent));
        }
      };
    }
    options.on_task_failed = [this](const absl::Status& status) {
      Emit(FEDGE_EVENT_ERROR, 0, 0, 0, status.ToString());
    };
    fedge::client::DeviceRunner runner(transport_.get(), &pending, c_.device.get(),
                                       c_.train_model.get(), &trainer, options);
    absl::Status status = runner.Run(c_.stop);
    c_.device->SetData({});  // its source refers to this run
    RefreshModel();
    if (fatal_.has_value()) {
      *message = fatal_->second;
      return fatal_->first;
    }
    if (!status.ok()) {
      *message = status.ToString();
      return FromStatus(status);
    }
    if (max_tasks_ > 0 && runner.tasks_done() >= max_tasks_) return FEDGE_OK;
    *message = absl::StrCat("the run was stopped after ", runner.tasks_done(), " tasks");
    return FEDGE_ERR_CANCELLED;
  }

  fedge_client& c_;
  const int64_t max_tasks_;
  const std::optional<std::chrono::milliseconds> timeout_;
  ClientConfig config_;
  std::shared_ptr<fedge::client::GrpcTransport> transport_;
  std::shared_ptr<const CallbackExampleSource> source_;
  fedge_policy_fn policy_;
  void* policy_user_;
  fedge_event_fn on_event_;
  void* event_user_;

  std::mutex fatal_mu_;
  std::optional<std::pair<fedge_status, std::string>> fatal_;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool finished_ = false;
  std::atomic<bool> timed_out_{false};
};

// Marks the handle running, after checking it can run.
fedge_status BeginRun(fedge_client& c, const char* function) {
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.running) return Fail(FEDGE_ERR_STATE, absl::StrCat(function, ": a run is in progress"));
  if (!c.config.has_value()) {
    return Fail(FEDGE_ERR_STATE, absl::StrCat(function, ": configure the client first"));
  }
  if (c.source == nullptr) {
    return Fail(FEDGE_ERR_STATE, absl::StrCat(function, ": set a data source first"));
  }
  if (c.background.joinable()) {
    return Fail(FEDGE_ERR_STATE,
                absl::StrCat(function, ": the last background run was not joined"));
  }
  c.running = true;
  c.stop = false;
  return FEDGE_OK;
}

// For the setters: FEDGE_ERR_STATE while running.
fedge_status CheckIdle(fedge_client& c, const char* function) {
  if (c.running) {
    return Fail(FEDGE_ERR_STATE, absl::StrCat(function, ": not while a run is in progress"));
  }
  return FEDGE_OK;
}

}  // namespace

extern "C" {

int fedge_version(void) { return FEDGE_C_API_VERSION; }

const char* fedge_client_version(void) { return FEDGE_VERSION_STRING; }

const char* fedge_status_name(fedge_status status) {
  switch (status) {
    case FEDGE_OK:
      return "FEDGE_OK";
    case FEDGE_ERR_INVALID_ARGUMENT:
      return "FEDGE_ERR_INVALID_ARGUMENT";
    case FEDGE_ERR_INVALID_HANDLE:
      return "FEDGE_ERR_INVALID_HANDLE";
    case FEDGE_ERR_BAD_CONFIG:
      return "FEDGE_ERR_BAD_CONFIG";
    case FEDGE_ERR_STATE:
      return "FEDGE_ERR_STATE";
    case FEDGE_ERR_CALLBACK:
      return "FEDGE_ERR_CALLBACK";
    case FEDGE_ERR_UNAVAILABLE:
      return "FEDGE_ERR_UNAVAILABLE";
    case FEDGE_ERR_REFUSED:
      return "FEDGE_ERR_REFUSED";
    case FEDGE_ERR_TIMEOUT:
      return "FEDGE_ERR_TIMEOUT";
    case FEDGE_ERR_NO_MODEL:
      return "FEDGE_ERR_NO_MODEL";
    case FEDGE_ERR_RESOURCE:
      return "FEDGE_ERR_RESOURCE";
    case FEDGE_ERR_CANCELLED:
      return "FEDGE_ERR_CANCELLED";
    case FEDGE_ERR_INTERNAL:
      return "FEDGE_ERR_INTERNAL";
  }
  return "FEDGE_ERR_UNKNOWN";
}

const char* fedge_last_error(void) { return g_last_error.c_str(); }

fedge_status fedge_client_create(fedge_client** out) {
  if (out == nullptr) {
    return Fail(FEDGE_ERR_INVALID_ARGUMENT, "fedge_client_create: out is NULL");
  }
  try {
    auto client = std::make_unique<fedge_client>();
    std::lock_guard<std::mutex> lock(g_handles_mu);
    Handles().insert(client.get());
    *out = client.release();
    return FEDGE_OK;
  } catch (const std::exception& e) {
    *out = nullptr;
    return Fail(FEDGE_ERR_INTERNAL, absl::StrCat("fedge_client_create: ", e.what()));
  }
}

void fedge_client_destroy(fedge_client* client) {
  if (!IsLive(client)) return;
  try {
    client->stop = true;
    if (client->background.joinable()) client->background.join();
    {
      std::lock_guard<std::mutex> lock(g_handles_mu);
      Handles().erase(client);
    }
    delete client;
  } catch (...) {
    // Nothing may escape; a failed join leaves the handle alive.
  }
}

fedge_status fedge_client_configure(fedge_client* client, const char* config) {
  return Guarded("fedge_client_configure", client, [&](fedge_client& c) {
    if (config == nullptr) {
      return Fail(FEDGE_ERR_INVALID_ARGUMENT, "fedge_client_configure: config is NULL");
    }
    std::lock_guard<std::mutex> lock(c.mu);
    if (fedge_status s = CheckIdle(c, "fedge_client_configure"); s != FEDGE_OK) return s;
    std::variant<ClientConfig, ConfigError> parsed = ParseConfig(config);
    if (auto* error = std::get_if<ConfigError>(&parsed)) {
      return Fail(FEDGE_ERR_BAD_CONFIG, error->message);
    }
    ClientConfig& parsed_config = std::get<ClientConfig>(parsed);
    absl::StatusOr<std::unique_ptr<fedge::client::GrpcTransport>> transport =
        fedge::client::GrpcTransport::Create(
            fedge::client::GrpcTransport::FromClientOptions(parsed_config.transport));
    if (!transport.ok()) {
      return Fail(FEDGE_ERR_BAD_CONFIG, absl::StrCat("config: ", transport.status().message()));
    }
    c.transport = *std::move(transport);
    c.config = std::move(parsed_config);
    c.device.reset();  // a new identity or codec starts a new device state
    return FEDGE_OK;
  });
}

fedge_status fedge_client_set_data_source(fedge_client* client, const fedge_data_source* source) {
  return Guarded("fedge_client_set_data_source", client, [&](fedge_client& c) {
    if (source == nullptr) {
      return Fail(FEDGE_ERR_INVALID_ARGUMENT, "fedge_client_set_data_source: source is NULL");
    }
    if (source->read_batch == nullptr) {
      return Fail(FEDGE_ERR_INVALID_ARGUMENT,
                  "fedge_client_set_data_source: source->read_batch is NULL");
    }
    if (source->num_examples < 1 || source->example_size < 1 || source->num_classes < 2) {
      return Fail(
          FEDGE_ERR_INVALID_ARGUMENT,
          absl::StrCat("fedge_client_set_data_source: needs num_examples >= 1 (got ",
                       source->num_examples, "), example_size >= 1 (got ", source->example_size,
                       ") and num_classes >= 2 (got ", source->num_classes, ")"));
    }
    std::lock_guard<std::mutex> lock(c.mu);
    if (fedge_status s = CheckIdle(c, "fedge_client_set_data_source"); s != FEDGE_OK) return s;
    c.source = std::make_shared<const CallbackExampleSource>(*source);
    return FEDGE_OK;
  });
}

fedge_status fedge_client_set_policy(fedge_client* client, fedge_policy_fn policy,
                                     void* user_data) {
  return Guarded("fedge_client_set_policy", client, [&](fedge_client& c) {
    std::lock_guard<std::mutex> lock(c.mu);
    if (fedge_status s = CheckIdle(c, "fedge_client_set_policy"); s != FEDGE_OK) return s;
    c.policy = policy;
    c.policy_user = user_data;
    return FEDGE_OK;
  });
}

fedge_status fedge_client_set_event_callback(fedge_client* client, fedge_event_fn callback,
                                             void* user_data) {
  return Guarded("fedge_client_set_event_callback", client, [&](fedge_client& c) {
    std::lock_guard<std::mutex> lock(c.mu);
    if (fedge_status s = CheckIdle(c, "fedge_client_set_event_callback"); s != FEDGE_OK) return s;
    c.on_event = callback;
    c.event_user = user_data;
    return FEDGE_OK;
  });
}

fedge_status fedge_client_run_task(fedge_client* client, int64_t timeout_ms) {
  return Guarded("fedge_client_run_task", client, [&](fedge_client& c) {
    if (timeout_ms < 0) {
      return Fail(FEDGE_ERR_INVALID_ARGUMENT, "fedge_client_run_task: timeout_ms must be >= 0");
    }
    if (fedge_status s = BeginRun(c, "fedge_client_run_task"); s != FEDGE_OK) return s;
    std::optional<std::chrono::milliseconds> timeout;
    if (timeout_ms > 0) timeout = std::chrono::milliseconds(timeout_ms);
    std::string message;
    fedge_status result;
    {
      Run run(c, /*max_tasks=*/1, timeout);
      result = run.Execute(&message);
    }
    {
      std::lock_guard<std::mutex> lock(c.mu);
      c.running = false;
    }
    if (result != FEDGE_OK) return Fail(result, absl::StrCat("fedge_client_run_task: ", message));
    return FEDGE_OK;
  });
}

fedge_status fedge_client_start(fedge_client* client) {
  return Guarded("fedge_client_start", client, [&](fedge_client& c) {
    if (fedge_status s = BeginRun(c, "fedge_client_start"); s != FEDGE_OK) return s;
    std::lock_guard<std::mutex> lock(c.mu);
    c.background_done = false;
    try {
      c.background = std::thread([&c] {
        std::string message;
        fedge_status result;
        {
          Run run(c, c.config->max_tasks, std::nullopt);
          result = run.Execute(&message);
        }
        std::lock_guard<std::mutex> lock(c.mu);
        c.background_result = result;
        c.background_message = std::move(message);
        c.background_done = true;
        c.running = false;
      });
    } catch (const std::exception& e) {
      c.running = false;
      return Fail(FEDGE_ERR_INTERNAL, absl::StrCat("fedge_client_start: ", e.what()));
    }
    return FEDGE_OK;
  });
}

fedge_status fedge_client_stop(fedge_client* client) {
  if (!IsLive(client)) return InvalidHandle("fedge_client_stop");
  client->stop = true;
  return FEDGE_OK;
}

fedge_status fedge_client_join(fedge_client* client) {
  return Guarded("fedge_client_join", client, [&](fedge_client& c) {
    std::thread background;
    {
      std::lock_guard<std::mutex> lock(c.mu);
      if (!c.background.joinable()) {
        return Fail(FEDGE_ERR_STATE, "fedge_client_join: no background run to join");
      }
      if (c.background.get_id() == std::this_thread::get_id()) {
        return Fail(FEDGE_ERR_STATE, "fedge_client_join: called from the run's own callback");
      }
      background = std::move(c.background);
    }
    background.join();
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.background_result != FEDGE_OK) {
      return Fail(c.background_result, absl::StrCat("fedge_client_join: ", c.background_message));
    }
    return FEDGE_OK;
  });
}

fedge_status fedge_client_enroll(fedge_client* client) {
  return Guarded("fedge_client_enroll", client, [&](fedge_client& c) {
    std::lock_guard<std::mutex> lock(c.mu);
    if (fedge_status s = CheckIdle(c, "fedge_client_enroll"); s != FEDGE_OK) return s;
    if (c.transport == nullptr) {
      return Fail(FEDGE_ERR_STATE, "fedge_client_enroll: configure the client first");
    }
    const fedge::client::ClientTransportOptions& options = c.config->transport;
    if (options.cert_file.empty() || options.key_file.empty() || options.token.empty()) {
      return Fail(FEDGE_ERR_BAD_CONFIG,
                  "fedge_client_enroll: needs tls.cert, tls.key and tls.token in the config");
    }
    absl::StatusOr<fedge::client::Enrollment> enrolled = fedge::client::EnrollDevice(options);
    if (!enrolled.ok()) {
      const fedge_status code = enrolled.status().code() == absl::StatusCode::kInvalidArgument
                                    ? FEDGE_ERR_BAD_CONFIG
                                    : FromStatus(enrolled.status());
      return Fail(code, absl::StrCat("fedge_client_enroll: ", enrolled.status().message()));
    }
    absl::StatusOr<std::unique_ptr<fedge::client::GrpcTransport>> transport =
        fedge::client::GrpcTransport::Create(
            fedge::client::GrpcTransport::FromClientOptions(options));
    if (!transport.ok()) {
      return Fail(FromStatus(transport.status()),
                  absl::StrCat("fedge_client_enroll: ", transport.status().message()));
    }
    c.transport = *std::move(transport);
    return FEDGE_OK;
  });
}

fedge_status fedge_client_sync_model(fedge_client* client) {
  return Guarded("fedge_client_sync_model", client, [&](fedge_client& c) {
    std::shared_ptr<fedge::client::GrpcTransport> transport;
    fedge_event_fn on_event = nullptr;
    void* event_user = nullptr;
    {
      std::lock_guard<std::mutex> lock(c.mu);
      if (fedge_status s = CheckIdle(c, "fedge_client_sync_model"); s != FEDGE_OK) return s;
      if (c.transport == nullptr) {
        return Fail(FEDGE_ERR_STATE, "fedge_client_sync_model: configure the client first");
      }
      transport = c.transport;
      on_event = c.on_event;
      event_user = c.event_user;
    }
    absl::StatusOr<fedge::v1::JoinResponse> join = transport->Join();
    if (!join.ok()) {
      return Fail(FromStatus(join.status()),
                  absl::StrCat("fedge_client_sync_model: joining: ", join.status().message()));
    }
    // The aggregator announces a version (Join's latest_version) a moment
    // before it serves its artifact: NOT_FOUND right after a round closed
    // is retried for up to two seconds.
    absl::StatusOr<std::shared_ptr<const fedge::v1::ModelArtifact>> model =
        transport->FetchModel(join->latest_version());
    for (int attempt = 0; attempt < 20 && absl::IsNotFound(model.status()); ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      model = transport->FetchModel(join->latest_version());
    }
    if (!model.ok()) {
      return Fail(FromStatus(model.status()),
                  absl::StrCat("fedge_client_sync_model: fetching model version ",
                               join->latest_version(), ": ", model.status().message()));
    }
    absl::StatusOr<bool> updated = UpdateInferenceModel(c, **model);
    if (!updated.ok()) {
      return Fail(FromStatus(updated.status()),
                  absl::StrCat("fedge_client_sync_model: ", updated.status().message()));
    }
    if (*updated && on_event != nullptr) {
      const std::string message =
          absl::StrCat("model version ", join->latest_version(), " is used for predict");
      fedge_event event{FEDGE_EVENT_MODEL_UPDATED, 0, join->latest_version(), 0, message.c_str()};
      int rc;
      try {
        rc = on_event(event_user, &event);
      } catch (...) {
        return Fail(FEDGE_ERR_CALLBACK,
                    "fedge_client_sync_model: the event callback threw an exception for event "
                    "'model_updated'");
      }
      if (rc != 0) {
        return Fail(FEDGE_ERR_CALLBACK,
                    absl::StrCat("fedge_client_sync_model: the event callback returned ", rc,
                                 " for event 'model_updated'"));
      }
    }
    return FEDGE_OK;
  });
}

fedge_status fedge_client_model_info(fedge_client* client, fedge_model_info* out) {
  return Guarded("fedge_client_model_info", client, [&](fedge_client& c) {
    if (out == nullptr) {
      return Fail(FEDGE_ERR_INVALID_ARGUMENT, "fedge_client_model_info: out is NULL");
    }
    std::lock_guard<std::mutex> lock(c.model_mu);
    if (c.inference == nullptr) {
      return Fail(FEDGE_ERR_NO_MODEL, "fedge_client_model_info: no model received yet");
    }
    int64_t numel = 1;
    for (int64_t d : c.inference->spec().input_shape) numel *= d;
    out->version = c.inference_version;
    out->example_size = numel;
    out->num_classes = static_cast<int32_t>(c.inference->spec().num_classes);
    out->num_parameters = c.inference->parameters().size();
    out->architecture = c.architecture.c_str();
    return FEDGE_OK;
  });
}

fedge_status fedge_client_predict(fedge_client* client, const float* features, size_t count,
                                  float* logits, int32_t* labels) {
  return Guarded("fedge_client_predict", client, [&](fedge_client& c) {
    if (features == nullptr || count == 0 || (logits == nullptr && labels == nullptr)) {
      return Fail(FEDGE_ERR_INVALID_ARGUMENT,
                  "fedge_client_predict: needs features, count >= 1 and logits or labels");
    }
    std::lock_guard<std::mutex> lock(c.model_mu);
    if (c.inference == nullptr) {
      return Fail(FEDGE_ERR_NO_MODEL, "fedge_client_predict: no model received yet");
    }
    std::vector<int64_t> shape = {static_cast<int64_t>(count)};
    shape.insert(shape.end(), c.inference->spec().input_shape.begin(),
                 c.inference->spec().input_shape.end());
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::from_blob(const_cast<float*>(features), shape, torch::kFloat32);
    const torch::Tensor out = c.inference->network().forward(x).contiguous();
    if (logits != nullptr) {
      std::memcpy(logits, out.data_ptr<float>(), sizeof(float) * static_cast<size_t>(out.numel()));
    }
    if (labels != nullptr) {
      const torch::Tensor best = out.argmax(1).to(torch::kInt32).contiguous();
      std::memcpy(labels, best.data_ptr<int32_t>(), sizeof(int32_t) * count);
    }
    return FEDGE_OK;
  });
}

}  // extern "C"
