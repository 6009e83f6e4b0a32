#include "fedge/client/device_client.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "fedge/models/artifact.h"
#include "fedge/privacy/clipping.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/privacy/random.h"
#include "fedge/privacy/update_privacy.h"
#include "fedge/proto/status_macros.h"

namespace fedge::client {
namespace {

absl::Status Annotate(const absl::Status& status, const std::string& step) {
  return absl::Status(status.code(), absl::StrCat(step, ": ", status.message()));
}

// Fetches `version`, checks it is the device's architecture and loads it
// into `model`; `stored`, when given, receives the sparse artifact's mask.
absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> LoadVersion(ClientTransport& transport,
                                                                     uint64_t version,
                                                                     models::ModelInstance& model,
                                                                     std::vector<uint8_t>* stored) {
  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> artifact = transport.FetchModel(version);
  if (!artifact.ok()) return Annotate(artifact.status(), "fetching the model");
  const v1::ModelSpecProto& spec = (*artifact)->header().model();
  if (spec.architecture() != model.spec().architecture) {
    return absl::FailedPreconditionError(absl::StrCat("model version ", version, " is a '",
                                                      spec.architecture(), "', this device runs '",
                                                      model.spec().architecture, "'"));
  }
  const bool sparse = models::IsSparse(**artifact);
  if (absl::Status s =
          models::DecodeArtifact(**artifact, model.parameters().layout(),
                                 model.parameters().values(), sparse ? stored : nullptr);
      !s.ok()) {
    return Annotate(s, "loading the model");
  }
  return artifact;
}

// Evaluates `model` on the first `limit` of the device's examples.
absl::StatusOr<EvalMetrics> EvaluateLocal(models::ModelInstance& model, const LocalDataset& data,
                                          int64_t limit, int64_t batch_size) {
  if (data.size() == 0) return absl::FailedPreconditionError("the device has no local examples");
  if (data.store == nullptr || data.indices == nullptr) {
    // App-held data (ExampleSource, the C API) is not read here yet.
    return absl::UnimplementedError("evaluation tasks need examples held in an ExampleStore");
  }
  const int64_t n = std::min(data.size(), limit);
  const std::vector<int32_t>& indices = *data.indices;
  try {
    torch::NoGradGuard no_grad;
    model.network().eval();
    double loss_sum = 0.0;
    int64_t correct = 0;
    for (int64_t start = 0; start < n; start += batch_size) {
      const int64_t b = std::min(batch_size, n - start);
      const torch::Tensor idx =
          torch::from_blob(const_cast<int32_t*>(indices.data() + start), {b}, torch::kInt32)
              .to(torch::kInt64);
      const torch::Tensor logits = model.network().forward(data.store->GatherFeatures(idx));
      const torch::Tensor y = data.store->GatherLabels(idx);
      loss_sum +=
          torch::nn::functional::cross_entropy(
              logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
              .item<double>();
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    }
    EvalMetrics metrics;
    metrics.examples = n;
    metrics.loss = loss_sum / static_cast<double>(n);
    metrics.accuracy = static_cast<double>(correct) / static_cast<double>(n);
    return metrics;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("evaluating on the local data: ", e.what()));
  }
}

bool UsesSecAgg(const v1::Task& task) {
  return task.has_secagg() && task.secagg().protocol() != v1::SecAggConfig::PROTOCOL_NONE;
}

}  // namespace

absl::Status CheckPrivacyFloor(const PrivacyFloor& floor, const v1::Task& task) {
  if (task.kind() == v1::Task::KIND_EVALUATE) {
    // No update leaves the device, but its loss and accuracy on its data do,
    // in the clear.
    if (floor.require_secure_aggregation) {
      return absl::FailedPreconditionError(
          "privacy floor: privacy.require_secure_aggregation is set and an evaluation task sends "
          "the device's loss and accuracy in the clear");
    }
    return absl::OkStatus();
  }
  const v1::PrivacyConfig& dp = task.privacy();
  if (floor.require_secure_aggregation && !UsesSecAgg(task)) {
    return absl::FailedPreconditionError(
        "privacy floor: privacy.require_secure_aggregation is set and the task sends the update "
        "in the clear");
  }
  if (floor.max_clip_norm > 0.0 && dp.mode() != v1::PrivacyConfig::MODE_NONE &&
      !(dp.clip_norm() > 0.0 && dp.clip_norm() <= floor.max_clip_norm)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "privacy floor: the task's clip norm ", dp.clip_norm(), " is not within privacy.max_clip_norm ",
        floor.max_clip_norm));
  }
  if (floor.min_noise_multiplier > 0.0) {
    // What the device can check itself where it adds the noise: local, its
    // own multiplier; distributed, its share times the square root of the
    // cohort (the total when every share arrives). Central: the aggregator's
    // word (aggregate_noise_multiplier).
    double z = 0.0;
    switch (dp.mode()) {
      case v1::PrivacyConfig::MODE_LOCAL:
        z = dp.noise_multiplier();
        break;
      case v1::PrivacyConfig::MODE_DISTRIBUTED:
        z = dp.noise_multiplier() *
            std::sqrt(static_cast<double>(UsesSecAgg(task) ? task.secagg().cohort_size() : 1));
        break;
      case v1::PrivacyConfig::MODE_CENTRAL:
        z = dp.aggregate_noise_multiplier();
        break;
      default:
        break;
    }
    if (!(z >= floor.min_noise_multiplier * (1 - 1e-9))) {
      return absl::FailedPreconditionError(absl::StrCat(
          "privacy floor: the task's noise multiplier ", z, " is below privacy.min_noise_multiplier ",
          floor.min_noise_multiplier,
          dp.mode() == v1::PrivacyConfig::MODE_NONE ? " (the task asks for no DP)" : ""));
    }
  }
  if (floor.local_noise_multiplier > 0.0 && floor.max_clip_norm <= 0.0 &&
      !(dp.mode() != v1::PrivacyConfig::MODE_NONE && dp.clip_norm() > 0.0)) {
    return absl::FailedPreconditionError(
        "privacy floor: privacy.local_noise_multiplier needs a clip bound, and neither the task "
        "nor privacy.max_clip_norm sets one");
  }
  return absl::OkStatus();
}

DeviceClient::DeviceClient(std::string id, LocalDataset data, DeviceClientOptions options)
    : id_(std::move(id)), data_(std::move(data)), options_(std::move(options)) {}

absl::StatusOr<TaskReport> DeviceClient::RunTask(ClientTransport& transport,
                                                 models::ModelInstance& model,
                                                 const Trainer& trainer) {
  FEDGE_ASSIGN_OR_RETURN(v1::Task task, transport.PollTask(id_));
  if (absl::Status below = CheckPrivacyFloor(options_.floor, task); !below.ok()) {
    // Tell the aggregator why, so it records the refusal (best effort: the
    // refusal stands whether or not the report arrives).
    v1::MetricsReport refusal;
    refusal.set_client_id(id_);
    refusal.set_round(task.round());
    refusal.set_model_version(task.model_version());
    refusal.set_task_refused(std::string(below.message()));
    (void)transport.ReportMetrics(refusal);
    return below;
  }
  if (task.kind() == v1::Task::KIND_EVALUATE) return RunEvaluation(transport, task, model);
  if (codec_ == nullptr) {
    absl::StatusOr<std::unique_ptr<models::UpdateCodec>> codec =
        models::CreateUpdateCodec(options_.codec, options_.codec_options);
    if (!codec.ok()) return Annotate(codec.status(), "creating the update codec");
    codec_ = std::move(*codec);
  }
  if (task.privacy().mode() == v1::PrivacyConfig::MODE_DISTRIBUTED && codec_->name() != "fp32") {
    return absl::FailedPreconditionError(absl::StrCat(
        "the task asks for distributed DP, whose noise shares must reach the aggregator's sum "
        "exactly, but this device encodes with the lossy codec '",
        std::string(codec_->name()), "'; distributed DP needs 'fp32'"));
  }
  // A sparse (pruned) artifact's unstored entries stay zero while training.
  std::vector<uint8_t> stored;
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<const v1::ModelArtifact> artifact,
                         LoadVersion(transport, task.model_version(), model, &stored));

  absl::StatusOr<LocalUpdate> local = trainer.Fit(model, data_, task.train(), stored);
  if (!local.ok()) return Annotate(local.status(), "local training");

  bool within_bound = true;
  const v1::PrivacyConfig& dp = task.privacy();
  const int norm = dp.clip_norm_type() == 0 ? 2 : static_cast<int>(dp.clip_norm_type());
  if (dp.mode() == v1::PrivacyConfig::MODE_LOCAL ||
      dp.mode() == v1::PrivacyConfig::MODE_DISTRIBUTED) {
    privacy::ClientPrivacy params;
    params.clip_norm = dp.clip_norm();
    params.norm = norm;
    params.mechanism = dp.mechanism();
    params.noise_multiplier = dp.noise_multiplier();
    params.integer_scale = dp.integer_scale();
    if (!(params.clip_norm > 0.0)) {
      return absl::InvalidArgumentError(
          "the task asks for local or distributed DP without a clip norm");
    }
    absl::StatusOr<privacy::PrivatizedUpdate> privatized;
    if (options_.seeded_noise) {
      privacy::SeededRandom random(task.train().seed() ^ 0x6A09E667F3BCC909ULL);
      privatized = privacy::PrivatizeUpdate(params, local->delta, random);
    } else {
      privatized = privacy::PrivatizeUpdate(params, local->delta, privacy::DefaultRandom());
    }
    if (!privatized.ok()) return Annotate(privatized.status(), "privatizing the update");
    within_bound = privatized->within_bound;
  } else if (dp.mode() == v1::PrivacyConfig::MODE_CENTRAL && UsesSecAgg(task)) {
    // The aggregator cannot clip what it only sees summed: clip here.
    if (!(dp.clip_norm() > 0.0)) {
      return absl::InvalidArgumentError(
          "the task asks for central DP under secure aggregation without a clip norm: the "
          "aggregator could not bound this device's contribution");
    }
    within_bound = (norm == 1 ? privacy::L1Norm(local->delta) : privacy::L2Norm(local->delta)) <=
                   dp.clip_norm();
    absl::StatusOr<double> clipped = norm == 1 ? privacy::ClipL1(local->delta, dp.clip_norm())
                                               : privacy::ClipL2(local->delta, dp.clip_norm());
    if (!clipped.ok()) return Annotate(clipped.status(), "clipping the update");
  } else if (options_.clip_norm > 0.0) {
    if (absl::Status s = privacy::ClipL2(local->delta, options_.clip_norm).status(); !s.ok()) {
      return Annotate(s, "clipping the update");
    }
  }
  if (options_.floor.local_noise_multiplier > 0.0) {
    FEDGE_RETURN_IF_ERROR(AddFloorNoise(task, local->delta));
  }

  if (UsesSecAgg(task)) return StartSecAgg(task, *local, *artifact, within_bound);

  v1::EncodedUpdate update;
  update.set_round(task.round());
  update.set_model_version(task.model_version());
  update.set_client_id(id_);
  update.set_num_examples(static_cast<uint64_t>(local->num_examples));
  if (options_.error_feedback) {
    if (feedback_ == nullptr || feedback_->dimension() != local->delta.size()) {
      feedback_ = std::make_unique<models::ErrorFeedback>(codec_, local->delta.size());
    }
    FEDGE_RETURN_IF_ERROR(feedback_->Encode(local->delta, &update));
  } else {
    FEDGE_RETURN_IF_ERROR(codec_->Encode(local->delta, &update));
  }
  (*update.mutable_metrics())["train_loss"] = local->metrics.loss;
  (*update.mutable_metrics())["train_accuracy"] = local->metrics.accuracy;

  TaskReport report;
  report.round = task.round();
  report.model_version = task.model_version();
  report.num_examples = local->num_examples;
  report.metrics = local->metrics;
  report.bytes_down = task.ByteSizeLong() + artifact->ByteSizeLong();
  report.bytes_up = update.ByteSizeLong();
  if (absl::Status s = transport.SubmitUpdate(update); !s.ok()) {
    // The aggregator never counted it: what it carried goes back into the
    // residual, to be sent later.
    if (feedback_ != nullptr && options_.error_feedback) {
      FEDGE_RETURN_IF_ERROR(feedback_->ReturnUndelivered(update));
    }
    return Annotate(s, "submitting the update");
  }
  return report;
}

absl::StatusOr<TaskReport> DeviceClient::RunEvaluation(ClientTransport& transport,
                                                       const v1::Task& task,
                                                       models::ModelInstance& model) {
  const int64_t batch = std::max<int64_t>(task.train().batch_size(), 32);
  TaskReport report;
  report.round = task.round();
  report.model_version = task.model_version();
  report.num_examples = std::min(data_.size(), kMaxEvaluationExamples);
  report.evaluation = true;
  report.bytes_down = task.ByteSizeLong();
  for (const auto& [version, prefix] :
       {std::pair<uint64_t, const char*>{task.model_version(), "eval"},
        {task.baseline_version(), "baseline"}}) {
    FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<const v1::ModelArtifact> artifact,
                           LoadVersion(transport, version, model, nullptr));
    report.bytes_down += artifact->ByteSizeLong();
    absl::StatusOr<EvalMetrics> metrics =
        EvaluateLocal(model, data_, kMaxEvaluationExamples, batch);
    if (!metrics.ok()) return Annotate(metrics.status(), "evaluating the model");
    report.evaluation_metrics[absl::StrCat(prefix, "_loss")] = metrics->loss;
    report.evaluation_metrics[absl::StrCat(prefix, "_accuracy")] = metrics->accuracy;
  }
  report.evaluation_metrics["eval_examples"] = static_cast<double>(report.num_examples);
  return report;
}

}  // namespace fedge::client

namespace fedge::client {

absl::Status DeviceClient::AddFloorNoise(const v1::Task& task, std::span<float> delta) {
  const v1::PrivacyConfig& dp = task.privacy();
  // The device's own noise is calibrated to a bound it applied itself.
  const double bound = dp.mode() != v1::PrivacyConfig::MODE_NONE && dp.clip_norm() > 0.0
                           ? dp.clip_norm()
                           : options_.floor.max_clip_norm;
  // CheckPrivacyFloor refused the task already when neither sets a bound.
  if (absl::Status s = privacy::ClipL2(delta, bound).status(); !s.ok()) {
    return Annotate(s, "privacy floor: clipping the update");
  }
  privacy::MechanismOptions noise;
  noise.noise_multiplier = options_.floor.local_noise_multiplier;
  noise.l2_sensitivity = bound;
  noise.l1_sensitivity = bound;
  absl::StatusOr<std::unique_ptr<privacy::Mechanism>> gaussian =
      privacy::CreateMechanism("gaussian", noise);
  if (!gaussian.ok()) return Annotate(gaussian.status(), "privacy floor: local noise");
  if (options_.seeded_noise) {
    privacy::SeededRandom random(task.train().seed() ^ 0xBB67AE8584CAA73BULL);
    return (*gaussian)->AddNoise(delta, random);
  }
  return (*gaussian)->AddNoise(delta, privacy::DefaultRandom());
}

absl::StatusOr<TaskReport> DeviceClient::StartSecAgg(const v1::Task& task, const LocalUpdate& local,
                                                     const v1::ModelArtifact& artifact,
                                                     bool within_bound) {
  secagg_.reset();
  const v1::SecAggConfig& config = task.secagg();
  if (absl::Status s = privacy::secagg::ValidateSecAggConfig(config); !s.ok()) {
    return Annotate(s, "secure aggregation config");
  }
  const size_t extra = (config.weighted() ? 1 : 0) + (config.clip_count() ? 1 : 0);
  if (config.dimension() != local.delta.size() + extra) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secure aggregation expects vectors of ", config.dimension(), " words, this update has ",
        local.delta.size(), " parameters", config.weighted() ? " plus its weight" : "",
        config.clip_count() ? " plus its clip bit" : ""));
  }
  absl::StatusOr<privacy::secagg::FixedPointCodec> codec = privacy::secagg::CodecFor(config);
  if (!codec.ok()) return Annotate(codec.status(), "secure aggregation encoding");
  std::vector<float> values(local.delta.begin(), local.delta.end());
  if (config.weighted()) {
    const double weight = static_cast<double>(
        std::min<uint64_t>(static_cast<uint64_t>(local.num_examples), config.max_weight()));
    for (float& v : values) v = static_cast<float>(v * weight);
    values.push_back(static_cast<float>(weight));
  }
  if (config.clip_count()) {
    values.push_back(within_bound ? static_cast<float>(config.clip_bound()) : 0.0f);
  }
  secagg_input_.resize(values.size());
  if (absl::Status s = codec->Encode(values, secagg_input_, task.train().seed() ^ 0x5EC0A66ULL);
      !s.ok()) {
    return Annotate(s, "fixed-point encoding");
  }
  absl::StatusOr<std::unique_ptr<privacy::secagg::SecAggClient>> client =
      privacy::secagg::SecAggClient::Create(config, task.round(), id_);
  if (!client.ok()) return Annotate(client.status(), "secure aggregation");
  secagg_ = *std::move(client);
  secagg_round_ = task.round();

  TaskReport report;
  report.round = task.round();
  report.model_version = task.model_version();
  report.num_examples = local.num_examples;
  report.metrics = local.metrics;
  report.bytes_down = task.ByteSizeLong() + artifact.ByteSizeLong();
  report.secagg = true;
  return report;
}

absl::StatusOr<uint64_t> DeviceClient::SecAggStep(ClientTransport& transport) {
  if (secagg_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("client '", id_, "' has no secure-aggregation session"));
  }
  privacy::secagg::SecAggClient& client = *secagg_;
  const v1::SecAggPhase phase = client.phase();
  absl::StatusOr<v1::SecAggClientMessage> message;
  uint64_t round = 0;
  if (phase == v1::SECAGG_PHASE_ADVERTISE_KEYS) {
    message = client.AdvertiseKeys();
  } else {
    // The round id is in every message the client sent; ask for the answer
    // to the phase before this one.
    absl::StatusOr<v1::SecAggServerMessage> answer = transport.SecAggPoll(
        id_, secagg_round_, static_cast<v1::SecAggPhase>(static_cast<int>(phase) - 1));
    if (absl::IsUnavailable(answer.status())) return answer.status();
    if (!answer.ok()) {
      secagg_.reset();
      return Annotate(answer.status(), "secure aggregation poll");
    }
    if (phase == v1::SECAGG_PHASE_SHARE_KEYS) message = client.ShareKeys(*answer);
    if (phase == v1::SECAGG_PHASE_MASKED_INPUT)
      message = client.MaskedInput(*answer, secagg_input_);
    if (phase == v1::SECAGG_PHASE_UNMASKING) message = client.Unmask(*answer);
  }
  if (!message.ok()) {
    secagg_.reset();
    return Annotate(message.status(), "secure aggregation");
  }
  round = message->round();
  secagg_round_ = round;
  const uint64_t bytes = message->ByteSizeLong();
  absl::Status sent = transport.SecAggSend(*message);
  if (phase == v1::SECAGG_PHASE_MASKED_INPUT || !sent.ok()) {
    secagg_input_.clear();
    secagg_input_.shrink_to_fit();
  }
  if (!sent.ok() || client.phase() == v1::SECAGG_PHASE_UNSPECIFIED) secagg_.reset();
  if (!sent.ok()) return Annotate(sent, "secure aggregation send");
  return bytes;
}

}  // namespace fedge::client
