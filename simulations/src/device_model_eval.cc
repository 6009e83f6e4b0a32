#include "device_model_eval.h"

#include <algorithm>
#include <chrono>

#include "fedge/models/artifact.h"
#include "fedge/models/distillation.h"
#include "fedge/models/inference.h"
#include "fedge/models/quantization.h"
#include "fedge/proto/status_macros.h"

namespace fedge::simulations::internal {
namespace {

using Clock = std::chrono::steady_clock;

// Test accuracy of an inference engine, in batches.
absl::StatusOr<double> EngineAccuracy(models::InferenceModel& engine,
                                      const client::ExampleStore& test, int64_t batch_size) {
  int64_t correct = 0;
  for (int64_t begin = 0; begin < test.size(); begin += batch_size) {
    const torch::Tensor idx =
        torch::arange(begin, std::min(test.size(), begin + batch_size), torch::kInt64);
    FEDGE_ASSIGN_OR_RETURN(torch::Tensor logits, engine.Forward(test.GatherFeatures(idx)));
    correct += logits.argmax(1).eq(test.GatherLabels(idx)).sum().item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(test.size());
}

double Median(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
  return values[values.size() / 2];
}

}  // namespace

absl::Status AddActivationRanges(models::ModelInstance& scratch, const torch::Tensor& sample,
                                 v1::ModelArtifact& artifact) {
  FEDGE_RETURN_IF_ERROR(models::DecodeArtifact(artifact, scratch.parameters().layout(),
                                               scratch.parameters().values()));
  FEDGE_ASSIGN_OR_RETURN(std::vector<v1::ActivationRange> ranges,
                         models::CalibrateActivations(scratch.network(), sample));
  artifact.mutable_header()->clear_activation_ranges();
  for (v1::ActivationRange& r : ranges) {
    *artifact.mutable_header()->add_activation_ranges() = std::move(r);
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceModelSummary> EvaluateDeviceModel(const v1::ModelArtifact& published,
                                                       const torch::Tensor& calibration,
                                                       const client::ExampleStore& test,
                                                       const SimulationConfig& config) {
  DeviceModelSummary summary;
  summary.architecture = published.header().model().architecture();
  summary.artifact_bytes = published.ByteSizeLong();
  FEDGE_ASSIGN_OR_RETURN(auto fp32, models::InferenceModel::Create(published, {}));
  summary.parameters = fp32->num_parameters();
  FEDGE_ASSIGN_OR_RETURN(summary.accuracy, EngineAccuracy(*fp32, test, config.eval.batch_size));
  if (!config.eval.int8) return summary;

  v1::ModelArtifact int8 = published;
  if (published.header().encoding() == v1::TENSOR_ENCODING_FP32) {
    FEDGE_ASSIGN_OR_RETURN(int8, models::QuantizeArtifact(published, models::QuantizeOptions{}));
  }
  FEDGE_ASSIGN_OR_RETURN(models::ModelSpec spec, models::FromProto(published.header().model()));
  FEDGE_ASSIGN_OR_RETURN(auto scratch, models::ModelInstance::Create(spec, 0));
  FEDGE_RETURN_IF_ERROR(AddActivationRanges(*scratch, calibration, int8));
  summary.int8_artifact_bytes = int8.ByteSizeLong();
  models::InferenceOptions options;
  options.int8 = true;
  options.engine = config.eval.int8_engine;
  summary.int8_engine = options.engine;
  FEDGE_ASSIGN_OR_RETURN(auto quantized, models::InferenceModel::Create(int8, options));
  FEDGE_ASSIGN_OR_RETURN(summary.int8_accuracy,
                         EngineAccuracy(*quantized, test, config.eval.batch_size));

  // One example at a time, as an app classifies what it sees; the engines
  // alternate so that both see the same machine load.
  std::vector<double> fp32_us, int8_us;
  const int64_t examples = std::min<int64_t>(test.size(), 256);
  const torch::Tensor inputs = test.GatherFeatures(torch::arange(examples, torch::kInt64));
  for (int run = -10; run < config.eval.latency_runs; ++run) {  // 10 warm-up runs
    const torch::Tensor x = inputs.narrow(0, (run + 10) % examples, 1);
    for (int engine = 0; engine < 2; ++engine) {
      const Clock::time_point start = Clock::now();
      FEDGE_RETURN_IF_ERROR((engine == 0 ? *fp32 : *quantized).Forward(x).status());
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
      if (run >= 0) (engine == 0 ? fp32_us : int8_us).push_back(us);
    }
  }
  summary.fp32_latency_us = Median(fp32_us);
  summary.int8_latency_us = Median(int8_us);
  return summary;
}

absl::StatusOr<DistilledStudent> DistillStudent(models::ModelInstance& teacher,
                                                const torch::Tensor& proxy,
                                                const torch::Tensor& calibration,
                                                const client::ExampleStore& test,
                                                const SimulationConfig& config, uint64_t version,
                                                models::ArtifactEncoding encoding) {
  models::ModelSpec student_spec = teacher.spec();
  student_spec.architecture = config.distill.student;
  FEDGE_ASSIGN_OR_RETURN(auto student, models::ModelInstance::Create(student_spec, config.run.seed));
  models::DistillationOptions options;
  options.temperature = config.distill.temperature;
  options.epochs = config.distill.epochs;
  options.batch_size = config.distill.batch_size;
  options.learning_rate = config.distill.learning_rate;
  options.seed = config.run.seed;
  FEDGE_RETURN_IF_ERROR(models::Distill(teacher.network(), *student, proxy, options).status());
  models::ArtifactOptions artifact_options;
  artifact_options.version = version;
  artifact_options.parent_version = version;
  encoding.sparse = false;  // the student is dense
  FEDGE_ASSIGN_OR_RETURN(
      v1::ModelArtifact artifact,
      models::BuildArtifact(student_spec, student->parameters().layout(),
                            student->parameters().values(), artifact_options, encoding));
  if (encoding.precision != models::ArtifactEncoding::Precision::kFp32) {
    FEDGE_RETURN_IF_ERROR(AddActivationRanges(*student, calibration, artifact));
  }
  DistilledStudent out;
  FEDGE_ASSIGN_OR_RETURN(out.summary, EvaluateDeviceModel(artifact, calibration, test, config));
  out.artifact = std::make_shared<const v1::ModelArtifact>(std::move(artifact));
  return out;
}

}  // namespace fedge::simulations::internal
