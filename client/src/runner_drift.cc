#include "runner_drift.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "fedge/models/artifact.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"

namespace fedge::client {
namespace {

// What the device's model makes of some of its examples, one entry per
// example (features: `features` values per example).
struct ScoredExamples {
  std::vector<float> features;
  std::vector<float> confidence;
  std::vector<float> loss;
  std::vector<float> error;
};

// Up to `limit` distinct positions in [0, size), in a seeded random order.
std::vector<int64_t> SamplePositions(int64_t size, int64_t limit, uint64_t seed) {
  std::vector<int64_t> positions(static_cast<size_t>(size));
  std::iota(positions.begin(), positions.end(), 0);
  if (size <= limit) return positions;
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < limit; ++i) {
    std::uniform_int_distribution<int64_t> pick(i, size - 1);
    std::swap(positions[static_cast<size_t>(i)], positions[static_cast<size_t>(pick(rng))]);
  }
  positions.resize(static_cast<size_t>(limit));
  return positions;
}

// The examples at `positions` of the device's data, as the model takes them.
absl::Status Gather(const LocalDataset& data, std::span<const int64_t> positions,
                    const std::vector<int64_t>& input_shape, torch::Tensor* x, torch::Tensor* y) {
  std::vector<int64_t> rows(positions.begin(), positions.end());
  if (data.indices != nullptr) {
    for (int64_t& r : rows) r = (*data.indices)[static_cast<size_t>(r)];
  }
  const int64_t b = static_cast<int64_t>(rows.size());
  if (data.store != nullptr) {
    const torch::Tensor idx = torch::tensor(rows, torch::kInt64);
    *x = data.store->GatherFeatures(idx);
    *y = data.store->GatherLabels(idx);
    return absl::OkStatus();
  }
  if (data.source == nullptr) return absl::FailedPreconditionError("the device has no data");
  const int64_t numel = data.source->example_numel();
  std::vector<float> features(static_cast<size_t>(b * numel));
  std::vector<int64_t> labels(static_cast<size_t>(b));
  FEDGE_RETURN_IF_ERROR(data.source->ReadBatch(rows, features, labels));
  std::vector<int64_t> shape = {b};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  *x = torch::from_blob(features.data(), shape, torch::kFloat32).clone();
  *y = torch::tensor(labels, torch::kInt64);
  return absl::OkStatus();
}

// Scores up to `limit` of the device's examples with `model`. Input
// summaries: each example's values cut into `features` contiguous chunks,
// one mean per chunk (none when `features` is 0).
absl::StatusOr<ScoredExamples> ScoreExamples(models::ModelInstance& model, const LocalDataset& data,
                                             int64_t limit, int features, uint64_t seed) {
  if (data.size() == 0) {
    return absl::FailedPreconditionError("the device has no local examples to watch for drift");
  }
  const std::vector<int64_t> positions = SamplePositions(data.size(), limit, seed);
  constexpr int64_t kBatch = 64;
  ScoredExamples scored;
  try {
    torch::NoGradGuard no_grad;
    model.network().eval();
    for (size_t start = 0; start < positions.size(); start += kBatch) {
      const size_t count = std::min<size_t>(kBatch, positions.size() - start);
      torch::Tensor x;
      torch::Tensor y;
      FEDGE_RETURN_IF_ERROR(Gather(data, std::span<const int64_t>(positions).subspan(start, count),
                                   model.spec().input_shape, &x, &y));
      const torch::Tensor logits = model.network().forward(x);
      const torch::Tensor confidence =
          std::get<0>(torch::softmax(logits, 1).max(1)).to(torch::kFloat32).contiguous();
      const torch::Tensor loss =
          torch::nn::functional::cross_entropy(
              logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
              .to(torch::kFloat32)
              .contiguous();
      const torch::Tensor error = logits.argmax(1).ne(y).to(torch::kFloat32).contiguous();
      auto append = [](std::vector<float>& out, const torch::Tensor& t) {
        out.insert(out.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      };
      append(scored.confidence, confidence);
      append(scored.loss, loss);
      append(scored.error, error);
      if (features > 0) {
        const torch::Tensor flat = x.reshape({static_cast<int64_t>(count), -1});
        const int64_t numel = flat.size(1);
        if (numel < features) {
          return absl::InvalidArgumentError(absl::StrCat("DriftMonitorOptions.features: ", features,
                                                         " summaries of examples with only ", numel,
                                                         " values"));
        }
        std::vector<torch::Tensor> chunks;
        for (int64_t f = 0; f < features; ++f) {
          const int64_t begin = f * numel / features;
          const int64_t end = (f + 1) * numel / features;
          chunks.push_back(flat.narrow(1, begin, end - begin).mean(1));
        }
        append(scored.features, torch::stack(chunks, 1).to(torch::kFloat32).contiguous());
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("scoring the local examples for drift: ", e.what()));
  }
  return scored;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunnerDrift>> RunnerDrift::Create(
    const std::string& client_id, const DeviceRunnerOptions& options) {
  if (!options.drift.has_value()) return std::unique_ptr<RunnerDrift>();
  if (options.drift_examples < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DeviceRunnerOptions.drift_examples: must be >= 1, got ", options.drift_examples));
  }
  FEDGE_ASSIGN_OR_RETURN(std::unique_ptr<DriftMonitor> monitor,
                         DriftMonitor::Create(client_id, *options.drift));
  std::unique_ptr<RunnerDrift> drift(new RunnerDrift(std::move(monitor), options));
  if (drift->state_file_.empty()) return drift;
  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat("cannot create the device state directory ",
                                                      options.state_dir.string(), ": ",
                                                      ec.message()));
  }
  if (!std::filesystem::exists(drift->state_file_, ec)) return drift;
  absl::StatusOr<std::string> blob = proto::ReadFile(drift->state_file_);
  absl::Status restored = blob.ok() ? drift->monitor_->RestoreState(*blob) : blob.status();
  if (!restored.ok()) {
    return absl::DataLossError(absl::StrCat("drift monitor state ", drift->state_file_.string(),
                                            ": ", restored.message()));
  }
  // The state is only ever written after the reference was set.
  drift->has_reference_ = true;
  LogEvent("info", "drift_state_restored",
           {{"client", client_id}, {"samples", std::to_string(drift->monitor_->samples())}});
  return drift;
}

RunnerDrift::RunnerDrift(std::unique_ptr<DriftMonitor> monitor, const DeviceRunnerOptions& options)
    : features_(options.drift->features),
      sample_size_(options.drift_examples),
      seed_(options.seed),
      state_file_(options.state_dir.empty() ? std::filesystem::path()
                                            : options.state_dir / kStateFile),
      clock_(options.clock),
      on_drift_(options.on_drift),
      monitor_(std::move(monitor)) {}

int64_t RunnerDrift::Now() const {
  if (clock_) return clock_();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status RunnerDrift::ObserveTask(models::ModelInstance& model, const LocalDataset& data,
                                      const v1::ModelArtifact& artifact, uint64_t round,
                                      ClientTransport& transport) {
  if (absl::Status s = models::DecodeArtifact(artifact, model.parameters().layout(),
                                              model.parameters().values());
      !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("loading the model to watch for drift: ", s.message()));
  }
  FEDGE_ASSIGN_OR_RETURN(
      ScoredExamples scored,
      ScoreExamples(model, data, sample_size_, features_, seed_ ^ (round * 0x9E3779B97F4A7C15ULL)));
  const uint64_t version = artifact.header().version();
  std::lock_guard<std::mutex> lock(mu_);
  if (!has_reference_ || rereference_) {
    if (rereference_) monitor_->ResetDetectors();
    FEDGE_RETURN_IF_ERROR(monitor_->SetReference(scored.features, scored.confidence));
    has_reference_ = true;
    rereference_ = false;
  }
  const int64_t now = Now();
  FEDGE_ASSIGN_OR_RETURN(
      MonitorOutcome outcome,
      monitor_->ObserveInference(scored.features, scored.confidence, version, now));
  FEDGE_ASSIGN_OR_RETURN(MonitorOutcome feedback,
                         monitor_->ObserveFeedback(scored.loss, scored.error, version, now));
  outcome.alarms.insert(outcome.alarms.end(), feedback.alarms.begin(), feedback.alarms.end());
  if (!outcome.report.has_value()) {
    outcome.report = std::move(feedback.report);
  } else if (feedback.report.has_value()) {
    for (const v1::DriftEvent& e : feedback.report->events()) *outcome.report->add_events() = e;
  }
  return AfterObservation(outcome, transport);
}

absl::StatusOr<MonitorOutcome> RunnerDrift::ObserveInference(std::span<const float> features,
                                                             std::span<const float> confidence,
                                                             uint64_t model_version,
                                                             ClientTransport& transport) {
  std::lock_guard<std::mutex> lock(mu_);
  FEDGE_ASSIGN_OR_RETURN(MonitorOutcome outcome,
                         monitor_->ObserveInference(features, confidence, model_version, Now()));
  FEDGE_RETURN_IF_ERROR(AfterObservation(outcome, transport));
  return outcome;
}

absl::StatusOr<MonitorOutcome> RunnerDrift::ObserveFeedback(std::span<const float> loss,
                                                            std::span<const float> error,
                                                            uint64_t model_version,
                                                            ClientTransport& transport) {
  std::lock_guard<std::mutex> lock(mu_);
  FEDGE_ASSIGN_OR_RETURN(MonitorOutcome outcome,
                         monitor_->ObserveFeedback(loss, error, model_version, Now()));
  FEDGE_RETURN_IF_ERROR(AfterObservation(outcome, transport));
  return outcome;
}

absl::Status RunnerDrift::AfterObservation(const MonitorOutcome& outcome,
                                           ClientTransport& transport) {
  const std::string& id = monitor_->client_id();
  for (const v1::DriftEvent& e : outcome.alarms) {
    LogEvent("warning", "drift_detected",
             {{"client", id},
              {"detector", absl::StrCat(e.detector(), ":", e.stream())},
              {"statistic", std::to_string(e.statistic())},
              {"threshold", std::to_string(e.threshold())},
              {"model_version", std::to_string(e.model_version())}});
  }
  absl::Status reported;
  if (outcome.report.has_value()) {
    reported = transport.ReportDrift(*outcome.report);
    if (reported.ok()) {
      LogEvent("info", "drift_reported",
               {{"client", id}, {"events", std::to_string(outcome.report->events_size())}});
    } else {
      LogEvent("warning", "drift_report_failed", {{"client", id}}, reported.ToString());
    }
    // The device adapts (it asked to join the next round): what it sees next
    // is its new normal.
    rereference_ = true;
  }
  absl::Status saved;
  if (!state_file_.empty()) {
    saved = proto::WriteFileAtomic(state_file_, monitor_->SaveState());
    if (!saved.ok()) {
      saved = absl::Status(saved.code(),
                           absl::StrCat("saving the drift monitor state: ", saved.message()));
    }
  }
  if (!outcome.alarms.empty() && on_drift_) on_drift_(outcome, reported);
  return saved;
}

std::vector<v1::DriftEvent> RunnerDrift::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::vector<v1::DriftEvent>(monitor_->events().begin(), monitor_->events().end());
}

}  // namespace fedge::client
