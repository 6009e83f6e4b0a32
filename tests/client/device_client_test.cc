#include "fedge/client/device_client.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "fedge/models/artifact.h"
#include "fedge/models/update_codec.h"
#include "fedge/privacy/clipping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::client {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

// A scripted aggregator: one task, one artifact, records what is submitted.
class FakeTransport final : public ClientTransport {
 public:
  absl::StatusOr<v1::Task> PollTask(const std::string& client_id) override {
    if (!task) return absl::NotFoundError("no task");
    return *task;
  }
  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) override {
    if (baseline != nullptr && baseline->header().version() == version) return baseline;
    if (artifact == nullptr || artifact->header().version() != version) {
      return absl::NotFoundError("no such version");
    }
    return artifact;
  }
  absl::Status SubmitUpdate(const v1::EncodedUpdate& update) override {
    submitted.push_back(update);
    return submit_status;
  }
  absl::Status ReportMetrics(const v1::MetricsReport& report) override {
    reports.push_back(report);
    return absl::OkStatus();
  }

  std::optional<v1::Task> task;
  std::shared_ptr<const v1::ModelArtifact> artifact;
  std::shared_ptr<const v1::ModelArtifact> baseline;  // evaluation tasks
  std::vector<v1::EncodedUpdate> submitted;
  std::vector<v1::MetricsReport> reports;
  absl::Status submit_status;
};

class DeviceClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(4);
    torch::Tensor labels = torch::randint(0, 3, {60}, torch::kInt64);
    torch::Tensor features = torch::randn({60, 5}) + labels.to(torch::kFloat32).unsqueeze(1);
    store_ = *ExampleStore::Create(features, labels, 3);
    auto indices = std::make_shared<std::vector<int32_t>>(40);
    std::iota(indices->begin(), indices->end(), 10);
    data_ = LocalDataset{store_, indices};

    auto global = models::ModelInstance::Create(spec_, 17);
    ASSERT_TRUE(global.ok());
    global_ = std::move(*global);
    models::ArtifactOptions options;
    options.version = 3;
    artifact_ = *models::BuildFp32Artifact(spec_, global_->parameters().layout(),
                                           global_->parameters().values(), options);
    transport_.artifact = std::make_shared<const v1::ModelArtifact>(artifact_);
    v1::Task task;
    task.set_round(8);
    task.set_model_version(3);
    task.set_client_id("phone-1");
    task.mutable_train()->set_local_epochs(1);
    task.mutable_train()->set_batch_size(8);
    task.mutable_train()->set_learning_rate(0.1f);
    transport_.task = task;
    // The device's own model starts from different weights: the artifact
    // must replace them.
    device_model_ = std::move(*models::ModelInstance::Create(spec_, 99));
  }

  models::ModelSpec spec_{"mlp", {5}, 3};
  std::shared_ptr<const ExampleStore> store_;
  LocalDataset data_;
  std::unique_ptr<models::ModelInstance> global_;
  std::unique_ptr<models::ModelInstance> device_model_;
  v1::ModelArtifact artifact_;
  FakeTransport transport_;
};

TEST_F(DeviceClientTest, RunsTheTaskAndSubmitsAnUpdateAgainstTheDownloadedModel) {
  DeviceClient client("phone-1", data_);
  auto report = client.RunTask(transport_, *device_model_, Trainer());
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(transport_.submitted.size(), 1u);
  const v1::EncodedUpdate& update = transport_.submitted[0];
  EXPECT_EQ(update.round(), 8u);
  EXPECT_EQ(update.model_version(), 3u);
  EXPECT_EQ(update.client_id(), "phone-1");
  EXPECT_EQ(update.num_examples(), 40u);
  EXPECT_EQ(update.codec(), "fp32");
  EXPECT_TRUE(update.metrics().contains("train_loss"));
  EXPECT_EQ(report->bytes_up, update.ByteSizeLong());
  EXPECT_GT(report->bytes_down, artifact_.ByteSizeLong());

  // The update is relative to the artifact's weights, not the device's old ones.
  std::vector<float> delta(global_->parameters().size());
  ASSERT_TRUE((*models::CreateUpdateCodec("fp32"))->Decode(update, delta).ok());
  const auto local = device_model_->parameters().values();
  const auto global = global_->parameters().values();
  for (size_t i = 0; i < delta.size(); i += 31) {
    EXPECT_NEAR(delta[i], local[i] - global[i], 1e-6) << i;
  }
}

TEST_F(DeviceClientTest, AnEvaluationTaskEvaluatesBothVersionsAndSubmitsNothing) {
  // The baseline (version 2) has other weights than the candidate (3).
  auto baseline_model = models::ModelInstance::Create(spec_, 5);
  ASSERT_TRUE(baseline_model.ok());
  models::ArtifactOptions options;
  options.version = 2;
  transport_.baseline = std::make_shared<const v1::ModelArtifact>(
      *models::BuildFp32Artifact(spec_, (*baseline_model)->parameters().layout(),
                                 (*baseline_model)->parameters().values(), options));
  transport_.task->set_kind(v1::Task::KIND_EVALUATE);
  transport_.task->set_baseline_version(2);

  DeviceClient client("phone-1", data_);
  auto report = client.RunTask(transport_, *device_model_, Trainer());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->evaluation);
  EXPECT_TRUE(transport_.submitted.empty());
  EXPECT_EQ(report->model_version, 3u);
  // The device's examples are rows [10, 50) of the store: the same figures
  // as evaluating each version there directly.
  auto candidate = Evaluate(*global_, *store_, 10, 50, 32);
  auto baseline = Evaluate(**baseline_model, *store_, 10, 50, 32);
  ASSERT_TRUE(candidate.ok() && baseline.ok());
  const std::map<std::string, double>& m = report->evaluation_metrics;
  EXPECT_NEAR(m.at("eval_accuracy"), candidate->accuracy, 1e-9);
  EXPECT_NEAR(m.at("eval_loss"), candidate->loss, 1e-5);
  EXPECT_NEAR(m.at("baseline_accuracy"), baseline->accuracy, 1e-9);
  EXPECT_NEAR(m.at("baseline_loss"), baseline->loss, 1e-5);
  EXPECT_EQ(m.at("eval_examples"), 40);
  EXPECT_NE(m.at("eval_loss"), m.at("baseline_loss"));
  // The model ends up holding the baseline: the version the device runs.
  const auto held = device_model_->parameters().values();
  const auto expected = (*baseline_model)->parameters().values();
  for (size_t i = 0; i < held.size(); i += 7) EXPECT_EQ(held[i], expected[i]) << i;

  // A baseline the aggregator does not have fails the task, naming the step.
  transport_.task->set_baseline_version(9);
  EXPECT_THAT(client.RunTask(transport_, *device_model_, Trainer()).status().message(),
              HasSubstr("fetching the model"));

  // A device that requires secure aggregation sends no figures in the
  // clear, so it refuses to evaluate; other floors do not concern a task
  // that sends no update.
  transport_.task->set_baseline_version(2);
  DeviceClientOptions strict;
  strict.floor.require_secure_aggregation = true;
  EXPECT_THAT(DeviceClient("phone-1", data_, strict)
                  .RunTask(transport_, *device_model_, Trainer())
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("evaluation task")));
  DeviceClientOptions noisy;
  noisy.floor.min_noise_multiplier = 1.0;
  EXPECT_TRUE(
      DeviceClient("phone-1", data_, noisy).RunTask(transport_, *device_model_, Trainer()).ok());
}

TEST_F(DeviceClientTest, ClipsTheUpdateWhenAskedTo) {
  DeviceClientOptions options;
  options.clip_norm = 1e-3;
  DeviceClient client("phone-1", data_, options);
  ASSERT_TRUE(client.RunTask(transport_, *device_model_, Trainer()).ok());
  std::vector<float> delta(global_->parameters().size());
  ASSERT_TRUE((*models::CreateUpdateCodec("fp32"))->Decode(transport_.submitted[0], delta).ok());
  EXPECT_NEAR(privacy::L2Norm(delta), 1e-3, 1e-6);
}

TEST_F(DeviceClientTest, LocalDpClipsAndNoisesAndSendsNoBoundBitInTheClear) {
  v1::PrivacyConfig& dp = *transport_.task->mutable_privacy();
  dp.set_mode(v1::PrivacyConfig::MODE_LOCAL);
  dp.set_clip_norm(1e-3);
  dp.set_mechanism("gaussian");
  dp.set_noise_multiplier(2.0);
  DeviceClientOptions options;
  options.seeded_noise = true;
  DeviceClient client("phone-1", data_, options);
  ASSERT_TRUE(client.RunTask(transport_, *device_model_, Trainer()).ok());
  ASSERT_TRUE(client.RunTask(transport_, *device_model_, Trainer()).ok());
  ASSERT_EQ(transport_.submitted.size(), 2u);
  const size_t d = global_->parameters().size();
  std::vector<float> first(d), second(d);
  ASSERT_TRUE((*models::CreateUpdateCodec("fp32"))->Decode(transport_.submitted[0], first).ok());
  ASSERT_TRUE((*models::CreateUpdateCodec("fp32"))->Decode(transport_.submitted[1], second).ok());
  // Noise N(0, (2e-3)^2) per coordinate dominates the clipped update (norm
  // 1e-3): the norm is about 2e-3 sqrt(d).
  const double expected = 2e-3 * std::sqrt(static_cast<double>(d));
  EXPECT_NEAR(privacy::L2Norm(first), expected, 0.1 * expected);
  // Whether the update was within the bound says something about the data:
  // it is not sent beside a locally private update.
  EXPECT_FALSE(transport_.submitted[0].metrics().contains("clip_within"));
  // Seeded from the task: the same task gives the same noise.
  EXPECT_EQ(first, second);

  // With the OS's generator (the default) two runs differ.
  DeviceClient device("phone-1", data_);
  ASSERT_TRUE(device.RunTask(transport_, *device_model_, Trainer()).ok());
  ASSERT_TRUE(device.RunTask(transport_, *device_model_, Trainer()).ok());
  std::vector<float> a(d), b(d);
  ASSERT_TRUE((*models::CreateUpdateCodec("fp32"))->Decode(transport_.submitted[2], a).ok());
  ASSERT_TRUE((*models::CreateUpdateCodec("fp32"))->Decode(transport_.submitted[3], b).ok());
  EXPECT_NE(a, b);
}

TEST_F(DeviceClientTest, PrivacyTaskWithoutAClipNormIsRefused) {
  v1::PrivacyConfig& dp = *transport_.task->mutable_privacy();
  dp.set_mode(v1::PrivacyConfig::MODE_DISTRIBUTED);
  dp.set_mechanism("gaussian");
  dp.set_noise_multiplier(0.5);
  auto report = DeviceClient("phone-1", data_).RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report.status().message(), HasSubstr("clip norm"));
  dp.set_clip_norm(1.0);
  dp.set_mechanism("cauchy");
  report = DeviceClient("phone-1", data_).RunTask(transport_, *device_model_, Trainer());
  EXPECT_THAT(report.status().message(), HasSubstr("privatizing the update"));
  EXPECT_TRUE(transport_.submitted.empty());
}

TEST_F(DeviceClientTest, RefusesATamperedModelAndSubmitsNothing) {
  v1::ModelArtifact tampered = artifact_;
  (*tampered.mutable_tensors(0)->mutable_data())[5] ^= 0x40;
  transport_.artifact = std::make_shared<const v1::ModelArtifact>(tampered);
  std::vector<float> before(device_model_->parameters().values().begin(),
                            device_model_->parameters().values().end());
  auto report = DeviceClient("phone-1", data_).RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(report.status().message(), HasSubstr("loading the model"));
  EXPECT_TRUE(transport_.submitted.empty());
  EXPECT_TRUE(
      std::equal(before.begin(), before.end(), device_model_->parameters().values().begin()));
}

TEST_F(DeviceClientTest, RefusesAModelOfAnotherArchitecture) {
  auto cnn = models::ModelInstance::Create(models::ModelSpec{"cnn", {1, 28, 28}, 3}, 1);
  ASSERT_TRUE(cnn.ok());
  auto report = DeviceClient("phone-1", data_).RunTask(transport_, **cnn, Trainer());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("'mlp'"));
}

TEST_F(DeviceClientTest, PassesOnNoTaskAndSubmissionErrors) {
  transport_.task.reset();
  auto none = DeviceClient("phone-1", data_).RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);

  SetUp();
  transport_.submit_status = absl::FailedPreconditionError("round 8 is closed");
  auto refused = DeviceClient("phone-1", data_).RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("submitting the update: round 8 is closed"));
}

TEST_F(DeviceClientTest, UnknownCodecIsReported) {
  DeviceClientOptions options;
  options.codec = "zip";
  auto report =
      DeviceClient("phone-1", data_, options).RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(transport_.submitted.empty());
}

std::vector<float> DecodeWith(const std::string& codec, const v1::EncodedUpdate& update) {
  std::vector<float> out(update.dimension());
  EXPECT_TRUE((*models::CreateUpdateCodec(codec))->Decode(update, out).ok());
  return out;
}

TEST_F(DeviceClientTest, UsesTheCodecOptions) {
  DeviceClientOptions options;
  options.codec = "topk";
  options.codec_options.density = 0.05;
  DeviceClient client("phone-1", data_, options);
  ASSERT_TRUE(client.RunTask(transport_, *device_model_, Trainer()).ok());
  const std::vector<float> decoded = DecodeWith("topk", transport_.submitted[0]);
  const auto kept = std::count_if(decoded.begin(), decoded.end(), [](float v) { return v != 0; });
  EXPECT_EQ(kept, static_cast<long>(std::ceil(0.05 * static_cast<double>(decoded.size()))));
  EXPECT_EQ(client.error_feedback(), nullptr);  // off unless asked for

  options.codec_options.density = 0.0;
  auto bad = DeviceClient("phone-1", data_, options).RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("density"));
}

// What the device sends plus what it keeps adds up, round after round, to
// the true deltas (taken from an fp32 device training identically).
TEST_F(DeviceClientTest, ErrorFeedbackKeepsWhatTopKDroppedAcrossTasks) {
  DeviceClientOptions topk;
  topk.codec = "topk";
  topk.codec_options.density = 0.02;
  topk.error_feedback = true;
  DeviceClient device("phone-1", data_, topk);
  DeviceClient reference("phone-1", data_);
  const size_t d = static_cast<size_t>(global_->parameters().size());
  std::vector<float> true_sum(d, 0.0f), sent_sum(d, 0.0f);
  for (int task = 0; task < 3; ++task) {
    transport_.task->mutable_train()->set_seed(100 + task);
    ASSERT_TRUE(reference.RunTask(transport_, *device_model_, Trainer()).ok());
    ASSERT_TRUE(device.RunTask(transport_, *device_model_, Trainer()).ok());
    const std::vector<float> delta = DecodeWith("fp32", transport_.submitted[2 * task]);
    const std::vector<float> sent = DecodeWith("topk", transport_.submitted[2 * task + 1]);
    ASSERT_NE(device.error_feedback(), nullptr);
    const auto residual = device.error_feedback()->residual();
    double residual_norm = 0.0;
    for (size_t i = 0; i < d; ++i) {
      true_sum[i] += delta[i];
      sent_sum[i] += sent[i];
      ASSERT_NEAR(sent_sum[i] + residual[i], true_sum[i], 1e-5) << "task " << task << ", " << i;
      residual_norm += residual[i] * residual[i];
    }
    EXPECT_GT(residual_norm, 0.0);  // topk at 2% did drop something
  }
}

TEST_F(DeviceClientTest, ARefusedUpdateGoesBackIntoTheResidual) {
  DeviceClientOptions topk;
  topk.codec = "topk";
  topk.codec_options.density = 0.02;
  topk.error_feedback = true;
  DeviceClient device("phone-1", data_, topk);
  DeviceClient reference("phone-1", data_);
  ASSERT_TRUE(reference.RunTask(transport_, *device_model_, Trainer()).ok());
  transport_.submit_status = absl::FailedPreconditionError("round 8 is closed");
  EXPECT_FALSE(device.RunTask(transport_, *device_model_, Trainer()).ok());
  // Nothing was delivered: the device still holds the whole delta.
  const std::vector<float> delta = DecodeWith("fp32", transport_.submitted[0]);
  const auto residual = device.error_feedback()->residual();
  for (size_t i = 0; i < delta.size(); ++i) ASSERT_NEAR(residual[i], delta[i], 1e-6) << i;
}

TEST_F(DeviceClientTest, ASparseModelKeepsItsPrunedWeightsAtZero) {
  std::vector<float> pruned(global_->parameters().values().begin(),
                            global_->parameters().values().end());
  const models::ParameterLayout& fc1 = global_->parameters().layout()[0];  // fc1.weight
  ASSERT_EQ(fc1.name, "fc1.weight");
  for (int64_t i = fc1.offset; i < fc1.offset + fc1.numel; i += 2) pruned[i] = 0.0f;
  models::ArtifactOptions options;
  options.version = 3;
  models::ArtifactEncoding encoding;
  encoding.sparse = true;
  encoding.precision = models::ArtifactEncoding::Precision::kInt8PerChannel;
  auto artifact =
      models::BuildArtifact(spec_, global_->parameters().layout(), pruned, options, encoding);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  ASSERT_TRUE(models::IsSparse(*artifact));
  transport_.artifact = std::make_shared<const v1::ModelArtifact>(*artifact);

  DeviceClient client("phone-1", data_);
  ASSERT_TRUE(client.RunTask(transport_, *device_model_, Trainer()).ok());
  const std::vector<float> delta = DecodeWith("fp32", transport_.submitted[0]);
  const auto local = device_model_->parameters().values();
  for (int64_t i = fc1.offset; i < fc1.offset + fc1.numel; ++i) {
    if ((i - fc1.offset) % 2 == 0) {
      ASSERT_EQ(local[i], 0.0f) << i;
      ASSERT_EQ(delta[i], 0.0f) << i;
    }
  }
  // The others trained.
  EXPECT_NE(delta[fc1.offset + 1], 0.0f);
}

TEST_F(DeviceClientTest, DistributedDpRefusesALossyCodecBeforeTraining) {
  transport_.task->mutable_privacy()->set_mode(v1::PrivacyConfig::MODE_DISTRIBUTED);
  transport_.task->mutable_privacy()->set_clip_norm(1.0);
  transport_.task->mutable_privacy()->set_mechanism("gaussian");
  transport_.task->mutable_privacy()->set_noise_multiplier(0.5);
  DeviceClientOptions options;
  options.codec = "int8";
  std::vector<float> before(device_model_->parameters().values().begin(),
                            device_model_->parameters().values().end());
  auto report =
      DeviceClient("phone-1", data_, options).RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("distributed DP needs 'fp32'"));
  EXPECT_TRUE(transport_.submitted.empty());
  EXPECT_TRUE(
      std::equal(before.begin(), before.end(), device_model_->parameters().values().begin()));

  // Local DP then a lossy codec is post-processing: allowed.
  transport_.task->mutable_privacy()->set_mode(v1::PrivacyConfig::MODE_LOCAL);
  DeviceClientOptions seeded = options;
  seeded.seeded_noise = true;
  EXPECT_TRUE(
      DeviceClient("phone-1", data_, seeded).RunTask(transport_, *device_model_, Trainer()).ok());
}

TEST_F(DeviceClientTest, SecureAggregationTaskOpensASessionInsteadOfSubmitting) {
  privacy::secagg::SecAggOptions options;
  options.protocol = v1::SecAggConfig::PROTOCOL_SECAGG;
  options.threshold = 2;
  options.weighted = true;
  options.max_weight = 100;
  auto config = privacy::secagg::MakeSecAggConfig(options, {"phone-1", "phone-2", "phone-3"},
                                                  global_->parameters().size() + 1, 5);
  ASSERT_TRUE(config.ok()) << config.status();
  *transport_.task->mutable_secagg() = *config;
  DeviceClient client("phone-1", data_);
  EXPECT_THAT(client.SecAggStep(transport_).status().code(), absl::StatusCode::kFailedPrecondition);
  auto report = client.RunTask(transport_, *device_model_, Trainer());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->secagg);
  EXPECT_TRUE(transport_.submitted.empty());  // nothing in the clear
  EXPECT_TRUE(client.secagg_pending());
  // This transport carries no secure aggregation: the default refuses, and
  // the device leaves the round.
  absl::StatusOr<uint64_t> step = client.SecAggStep(transport_);
  EXPECT_EQ(step.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(step.status().message()), HasSubstr("no secure aggregation"));
  EXPECT_FALSE(client.secagg_pending());

  // A config whose dimension does not fit the model is refused before
  // anything is sent.
  transport_.task->mutable_secagg()->set_dimension(7);
  auto refused = client.RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("expects vectors of 7 words"));
  EXPECT_FALSE(client.secagg_pending());
}

// Central DP under secure aggregation: the aggregator sees only the sum, so
// the device clips to the task's bound. A task without one used to abort the
// device (ClipL2 on a zero bound); now it is refused with a reason.
TEST_F(DeviceClientTest, CentralDpUnderSecAggWithoutAClipNormIsRefusedNotAborted) {
  privacy::secagg::SecAggOptions options;
  options.protocol = v1::SecAggConfig::PROTOCOL_SECAGG;
  auto config = privacy::secagg::MakeSecAggConfig(options, {"phone-1", "phone-2", "phone-3"},
                                                  global_->parameters().size(), 5);
  ASSERT_TRUE(config.ok()) << config.status();
  *transport_.task->mutable_secagg() = *config;
  transport_.task->mutable_privacy()->set_mode(v1::PrivacyConfig::MODE_CENTRAL);
  DeviceClient client("phone-1", data_);
  auto refused = client.RunTask(transport_, *device_model_, Trainer());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("without a clip norm"));
  EXPECT_FALSE(client.secagg_pending());
  // With the bound the aggregator now sends, the session opens.
  transport_.task->mutable_privacy()->set_clip_norm(0.5);
  auto report = client.RunTask(transport_, *device_model_, Trainer());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->secagg);
}

// The privacy floor: each minimum refuses a weaker task before training,
// tells the aggregator why, and sends nothing else.
TEST_F(DeviceClientTest, APrivacyFloorRefusesWeakerTasksAndSaysWhy) {
  struct Case {
    const char* name;
    PrivacyFloor floor;
    const char* key;
  };
  PrivacyFloor secagg;
  secagg.require_secure_aggregation = true;
  PrivacyFloor clip;
  clip.max_clip_norm = 1e-4;
  PrivacyFloor noise;
  noise.min_noise_multiplier = 1.0;
  v1::PrivacyConfig& dp = *transport_.task->mutable_privacy();
  dp.set_mode(v1::PrivacyConfig::MODE_CENTRAL);
  dp.set_clip_norm(1e-3);
  dp.set_aggregate_noise_multiplier(0.5);
  for (const Case& c : {Case{"secagg", secagg, "require_secure_aggregation"},
                        Case{"clip", clip, "max_clip_norm"},
                        Case{"noise", noise, "min_noise_multiplier"}}) {
    transport_.reports.clear();
    DeviceClientOptions options;
    options.floor = c.floor;
    DeviceClient client("phone-1", data_, options);
    auto refused = client.RunTask(transport_, *device_model_, Trainer());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << c.name;
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr(c.key)) << c.name;
    ASSERT_EQ(transport_.reports.size(), 1u) << c.name;
    EXPECT_EQ(transport_.reports[0].round(), 8u);
    EXPECT_THAT(transport_.reports[0].task_refused(), HasSubstr(c.key)) << c.name;
    EXPECT_TRUE(transport_.reports[0].metrics().empty());
  }
  EXPECT_TRUE(transport_.submitted.empty());

  // A task at or above the floor runs.
  dp.set_aggregate_noise_multiplier(1.0);
  DeviceClientOptions options;
  options.floor = noise;
  options.floor.max_clip_norm = 1e-3;
  ASSERT_TRUE(DeviceClient("phone-1", data_, options)
                  .RunTask(transport_, *device_model_, Trainer())
                  .ok());
  EXPECT_EQ(transport_.submitted.size(), 1u);
}

// The floor's own noise: clipped to the floor's bound (the task sets none)
// and noised by the device, whatever the aggregator asked.
TEST_F(DeviceClientTest, ThePrivacyFloorAddsTheDevicesOwnNoise) {
  DeviceClientOptions options;
  options.floor.max_clip_norm = 1e-3;
  options.floor.local_noise_multiplier = 2.0;
  options.seeded_noise = true;
  DeviceClient client("phone-1", data_, options);
  ASSERT_TRUE(client.RunTask(transport_, *device_model_, Trainer()).ok());
  ASSERT_EQ(transport_.submitted.size(), 1u);
  const size_t d = global_->parameters().size();
  std::vector<float> delta(d);
  ASSERT_TRUE((*models::CreateUpdateCodec("fp32"))->Decode(transport_.submitted[0], delta).ok());
  // N(0, (2e-3)^2) per coordinate on an update clipped to 1e-3.
  const double expected = 2e-3 * std::sqrt(static_cast<double>(d));
  EXPECT_NEAR(privacy::L2Norm(delta), expected, 0.1 * expected);
  // Without a bound anywhere the device cannot calibrate its noise: refused
  // before training, and said so.
  options.floor.max_clip_norm = 0.0;
  EXPECT_EQ(DeviceClient("phone-1", data_, options)
                .RunTask(transport_, *device_model_, Trainer())
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(transport_.reports.size(), 1u);
  EXPECT_THAT(transport_.reports[0].task_refused(), HasSubstr("local_noise_multiplier"));
}

// In local mode the device checks the noise it adds itself, whatever the
// aggregator claims the aggregate carries.
TEST_F(DeviceClientTest, TheFloorChecksTheLocalNoiseTheDeviceAddsNotTheClaim) {
  v1::PrivacyConfig& dp = *transport_.task->mutable_privacy();
  dp.set_mode(v1::PrivacyConfig::MODE_LOCAL);
  dp.set_clip_norm(1e-3);
  dp.set_mechanism("gaussian");
  dp.set_noise_multiplier(0.5);
  dp.set_aggregate_noise_multiplier(4.0);  // a claim the device need not believe
  DeviceClientOptions options;
  options.floor.min_noise_multiplier = 1.0;
  auto refused = DeviceClient("phone-1", data_, options).RunTask(transport_, *device_model_,
                                                                 Trainer());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("0.5"));
}

}  // namespace
}  // namespace fedge::client
