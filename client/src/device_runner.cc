#include "fedge/client/device_runner.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"

namespace fedge::client {
namespace {

bool IsRefusal(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnauthenticated ||
         status.code() == absl::StatusCode::kPermissionDenied;
}

}  // namespace

DeviceRunner::DeviceRunner(GrpcTransport* transport, PendingUpdateStore* pending,
                           DeviceClient* device, models::ModelInstance* model,
                           const Trainer* trainer, DeviceRunnerOptions options)
    : transport_(transport),
      pending_(pending),
      offline_(transport, pending),
      device_(device),
      model_(model),
      trainer_(trainer),
      options_(std::move(options)) {}

void DeviceRunner::Wait(std::chrono::milliseconds delay, const std::atomic<bool>& stop) {
  const auto until = std::chrono::steady_clock::now() + delay;
  while (!stop.load() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(50), std::chrono::duration_cast<std::chrono::milliseconds>(
                                           until - std::chrono::steady_clock::now()) +
                                           std::chrono::milliseconds(1)));
  }
}

absl::Status DeviceRunner::Run(const std::atomic<bool>& stop) {
  absl::StatusOr<Backoff> created = Backoff::Create(options_.backoff, options_.seed);
  if (!created.ok()) return created.status();
  Backoff backoff = *std::move(created);
  const std::string& id = device_->id();
  bool joined = false;
  while (!stop.load() && (options_.max_tasks == 0 || tasks_done_ < options_.max_tasks)) {
    if (!joined) {
      absl::StatusOr<v1::JoinResponse> join = transport_->Join();
      if (!join.ok()) {
        if (!IsUnreachable(join.status())) return join.status();
        const auto delay = backoff.Next();
        LogEvent("warning", "aggregator_unreachable",
                 {{"client", id}, {"retry_in_ms", std::to_string(delay.count())}},
                 join.status().ToString());
        Wait(delay, stop);
        continue;
      }
      joined = true;
      if (options_.on_join) options_.on_join(*join);
      LogEvent("info", "joined",
               {{"client", id}, {"latest_version", std::to_string(join->latest_version())}});
    }
    absl::StatusOr<FlushReport> flushed = offline_.Flush();
    if (!flushed.ok()) {
      LogEvent("error", "pending_updates_unreadable", {{"client", id}},
               flushed.status().ToString());
    } else if (flushed->kept > 0) {
      Wait(backoff.Next(), stop);
      continue;
    }
    absl::StatusOr<TaskReport> report = device_->RunTask(offline_, *model_, *trainer_);
    if (report.ok() && report->secagg) {
      // Secure aggregation: the update leaves the device only masked, over
      // the protocol's phases (each poll waits for the aggregator to close
      // the phase before).
      while (device_->secagg_pending() && !stop.load()) {
        absl::StatusOr<uint64_t> sent = device_->SecAggStep(*transport_);
        if (sent.ok()) {
          report->bytes_up += *sent;
        } else if (!absl::IsUnavailable(sent.status())) {
          report = sent.status();  // this device dropped out of the round
          break;
        }
      }
    }
    if (report.ok()) {
      ++tasks_done_;
      backoff.Reset();
      v1::MetricsReport metrics;
      metrics.set_client_id(id);
      metrics.set_round(report->round);
      metrics.set_model_version(report->model_version);
      if (report->evaluation) {
        metrics.mutable_metrics()->insert(report->evaluation_metrics.begin(),
                                          report->evaluation_metrics.end());
      } else {
        (*metrics.mutable_metrics())["train_loss"] = report->metrics.loss;
        (*metrics.mutable_metrics())["train_accuracy"] = report->metrics.accuracy;
      }
      if (absl::Status s = transport_->ReportMetrics(metrics); !s.ok() && !IsUnreachable(s)) {
        LogEvent("warning", "metrics_refused", {{"client", id}}, s.ToString());
      }
      if (!options_.model_file.empty()) {
        if (std::shared_ptr<const v1::ModelArtifact> model = transport_->current_model()) {
          if (absl::Status s =
                  proto::WriteFileAtomic(options_.model_file, model->SerializeAsString());
              !s.ok()) {
            LogEvent("warning", "model_not_saved", {{"client", id}}, s.ToString());
          }
        }
      }
      LogEvent("info", report->evaluation ? "evaluation_done" : "task_done",
               {{"client", id},
                {"round", std::to_string(report->round)},
                {"model_version", std::to_string(report->model_version)},
                {"examples", std::to_string(report->num_examples)},
                {"train_loss", std::to_string(report->metrics.loss)},
                {"bytes_down", std::to_string(report->bytes_down)},
                {"bytes_up", std::to_string(report->bytes_up)}});
      if (options_.on_task) options_.on_task(*report);
      continue;
    }
    const absl::Status& status = report.status();
    if (status.code() == absl::StatusCode::kNotFound) continue;  // no task yet: poll again
    if (options_.on_task_failed) options_.on_task_failed(status);
    // A refused model (DeviceClient prefixes its errors with "fetching the
    // model") is skipped: the device keeps its model and waits for the next
    // version. A refused device ends the loop.
    if (IsRefusal(status) && status.message().rfind("fetching the model", 0) != 0) {
      return status;
    }
    const auto delay = backoff.Next();
    LogEvent(IsUnreachable(status) ? "warning" : "error", "task_failed",
             {{"client", id}, {"retry_in_ms", std::to_string(delay.count())}}, status.ToString());
    Wait(delay, stop);
  }
  return absl::OkStatus();
}

}  // namespace fedge::client
