// DeviceRunner over a scripted ClientTransport (no gRPC): join, a task end
// to end, a refused model, offline buffering, drift reports and the drift
// state across runner instances; and the registry of client transports.
#include "fedge/client/device_runner.h"

#include <torch/torch.h>

#include <deque>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <thread>

#include "fedge/client/grpc_transport.h"
#include "fedge/client/transport_registry.h"
#include "fedge/models/artifact.h"
#include "fedge/models/signing.h"
#include "fedge/proto/atomic_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::client {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A scripted aggregator: serves queued tasks and artifacts by version, and
// records what the device sends.
class FakeAggregator final : public ClientTransport {
 public:
  absl::StatusOr<v1::JoinResponse> Join(const std::string& client_id) override {
    std::lock_guard<std::mutex> lock(mu);
    ++joins;
    if (!join_status.ok()) return join_status;
    v1::JoinResponse response;
    response.set_latest_version(latest_version);
    response.set_signing_key_id(signing_key_id);
    response.set_heartbeat_interval_ms(heartbeat_interval_ms);
    return response;
  }
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& client_id) override {
    std::lock_guard<std::mutex> lock(mu);
    ++heartbeats;
    return v1::HeartbeatResponse();
  }
  absl::Status Leave(const std::string& client_id, const std::string& reason) override {
    std::lock_guard<std::mutex> lock(mu);
    leaves.push_back(reason);
    return absl::OkStatus();
  }
  absl::StatusOr<v1::Task> PollTask(const std::string& client_id) override {
    std::unique_lock<std::mutex> lock(mu);
    ++polls;
    if (tasks.empty() && poll_wait.count() > 0) {  // as a long poll would
      lock.unlock();
      std::this_thread::sleep_for(poll_wait);
      lock.lock();
    }
    if (tasks.empty()) return absl::NotFoundError("no task for this device now");
    v1::Task task = tasks.front();
    tasks.pop_front();
    return task;
  }
  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) override {
    std::lock_guard<std::mutex> lock(mu);
    auto it = artifacts.find(version);
    if (it == artifacts.end()) return absl::NotFoundError("no such version");
    return it->second;
  }
  absl::Status SubmitUpdate(const v1::EncodedUpdate& update) override {
    std::lock_guard<std::mutex> lock(mu);
    ++submit_attempts;
    if (submit_status.ok()) accepted.push_back(update);
    return submit_status;
  }
  absl::Status ReportDrift(const v1::DriftReport& report) override {
    std::lock_guard<std::mutex> lock(mu);
    drift_reports.push_back(report);
    return absl::OkStatus();
  }
  absl::Status ReportMetrics(const v1::MetricsReport& report) override {
    std::lock_guard<std::mutex> lock(mu);
    metrics.push_back(report);
    return absl::OkStatus();
  }

  std::mutex mu;
  absl::Status join_status;
  uint64_t latest_version = 3;
  std::string signing_key_id;
  std::deque<v1::Task> tasks;
  std::map<uint64_t, std::shared_ptr<const v1::ModelArtifact>> artifacts;
  absl::Status submit_status;
  uint32_t heartbeat_interval_ms = 0;
  std::chrono::milliseconds poll_wait{0};
  int heartbeats = 0;
  std::vector<std::string> leaves;
  int joins = 0;
  int polls = 0;
  int submit_attempts = 0;
  std::vector<v1::EncodedUpdate> accepted;
  std::vector<v1::DriftReport> drift_reports;
  std::vector<v1::MetricsReport> metrics;
};

class DeviceRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(4);
    const torch::Tensor labels = torch::randint(0, 3, {60}, torch::kInt64);
    const torch::Tensor features =
        torch::randn({60, 5}) + 3.0f * labels.to(torch::kFloat32).unsqueeze(1);
    store_ = *ExampleStore::Create(features, labels, 3);
    // The same examples with every label moved to the next class: the model
    // trained on the first store is wrong on nearly all of them.
    shifted_store_ = *ExampleStore::Create(features, (labels + 1).remainder(3), 3);
    auto indices = std::make_shared<std::vector<int32_t>>(40);
    std::iota(indices->begin(), indices->end(), 10);
    indices_ = indices;

    key_ = std::make_unique<models::SigningKey>(*models::SigningKey::Generate());
    other_key_ = std::make_unique<models::SigningKey>(*models::SigningKey::Generate());
    // The federation's model fits the clean data (so drift shows in its loss).
    global_ = *models::ModelInstance::Create(spec_, 17);
    v1::TrainConfig fit;
    fit.set_local_epochs(30);
    fit.set_batch_size(8);
    fit.set_learning_rate(0.1f);
    fit.set_seed(1);
    ASSERT_TRUE(Trainer().Fit(*global_, LocalDataset{store_, indices_}, fit).ok());
    aggregator_.artifacts[3] = Signed(3, *key_);

    device_model_ = *models::ModelInstance::Create(spec_, 99);
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("device_runner_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    pending_ = std::make_unique<PendingUpdateStore>(dir_ / "pending", &store_key_);
  }

  std::shared_ptr<const v1::ModelArtifact> Signed(uint64_t version, const models::SigningKey& key) {
    models::ArtifactOptions options;
    options.version = version;
    v1::ModelArtifact artifact = *models::BuildFp32Artifact(
        spec_, global_->parameters().layout(), global_->parameters().values(), options);
    EXPECT_TRUE(models::SignArtifact(artifact, key).ok());
    return std::make_shared<const v1::ModelArtifact>(std::move(artifact));
  }

  static v1::Task Task(uint64_t round, uint64_t version) {
    v1::Task task;
    task.set_round(round);
    task.set_model_version(version);
    task.set_client_id("phone-1");
    task.mutable_train()->set_local_epochs(1);
    task.mutable_train()->set_batch_size(8);
    task.mutable_train()->set_learning_rate(0.1f);
    task.mutable_train()->set_seed(round);
    return task;
  }

  DeviceRunnerOptions Options() const {
    DeviceRunnerOptions options;
    options.pinned_key = key_->public_key();
    options.backoff.base = std::chrono::milliseconds(1);
    options.backoff.cap = std::chrono::milliseconds(2);
    return options;
  }

  // Page-Hinkley on the loss stream, reporting every alarm.
  static DriftMonitorOptions LossDrift() {
    DriftMonitorOptions drift;
    drift.detectors = {"page-hinkley:loss"};
    drift.cooldown = 0;
    drift.detector_options.page_hinkley.threshold = 10.0;
    drift.detector_options.page_hinkley.min_observations = 20;
    return drift;
  }

  std::unique_ptr<DeviceRunner> Runner(DeviceClient* device, DeviceRunnerOptions options) {
    absl::StatusOr<std::unique_ptr<DeviceRunner>> runner = DeviceRunner::Create(
        &aggregator_, pending_.get(), device, device_model_.get(), &trainer_, std::move(options));
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? *std::move(runner) : nullptr;
  }

  LocalDataset Clean() const { return {store_, indices_}; }
  LocalDataset Shifted() const { return {shifted_store_, indices_}; }

  models::ModelSpec spec_{"mlp", {5}, 3};
  std::shared_ptr<const ExampleStore> store_;
  std::shared_ptr<const ExampleStore> shifted_store_;
  std::shared_ptr<const std::vector<int32_t>> indices_;
  std::unique_ptr<models::SigningKey> key_;
  std::unique_ptr<models::SigningKey> other_key_;
  std::unique_ptr<models::ModelInstance> global_;
  std::unique_ptr<models::ModelInstance> device_model_;
  FakeAggregator aggregator_;
  Trainer trainer_;
  std::filesystem::path dir_;
  StaticKeyProvider store_key_{StoreKey{7}};
  std::unique_ptr<PendingUpdateStore> pending_;
};

TEST_F(DeviceRunnerTest, JoinsOnceAndFindsNoTask) {
  DeviceClient device("phone-1", Clean());
  int on_join = 0;
  DeviceRunnerOptions options = Options();
  options.on_join = [&](const v1::JoinResponse& join) {
    ++on_join;
    EXPECT_EQ(join.latest_version(), 3u);
  };
  auto runner = Runner(&device, options);
  ASSERT_NE(runner, nullptr);

  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult first, runner->RunOnce());
  EXPECT_TRUE(first.joined);
  EXPECT_EQ(first.kind, StepResult::Kind::kNoTask);
  EXPECT_FALSE(first.report.has_value());
  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult second, runner->RunOnce());
  EXPECT_FALSE(second.joined);
  EXPECT_EQ(second.kind, StepResult::Kind::kNoTask);
  EXPECT_EQ(aggregator_.joins, 1);
  EXPECT_EQ(aggregator_.polls, 2);
  EXPECT_EQ(on_join, 1);
  EXPECT_EQ(runner->tasks_done(), 0);
  EXPECT_TRUE(aggregator_.accepted.empty());
}

// fedge-client and the C API join before the runner starts (to learn the
// model spec): the runner takes that join as its own instead of joining a
// second time, which the aggregator counted as a second join. A response
// from an aggregator signing with another key is refused as its own would be.
TEST_F(DeviceRunnerTest, AJoinTheAppMadeCountsAndIsNotRepeated) {
  DeviceClient device("phone-1", Clean());
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::JoinResponse join, aggregator_.Join("phone-1"));
  ASSERT_EQ(aggregator_.joins, 1);
  int on_join = 0;
  DeviceRunnerOptions options = Options();
  options.already_joined = join;
  options.on_join = [&](const v1::JoinResponse&) { ++on_join; };
  auto runner = Runner(&device, options);
  ASSERT_NE(runner, nullptr);
  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult first, runner->RunOnce());
  EXPECT_TRUE(first.joined);
  FEDGE_ASSERT_OK(runner->RunOnce().status());
  EXPECT_EQ(aggregator_.joins, 1);
  EXPECT_EQ(on_join, 1);
  EXPECT_EQ(aggregator_.polls, 2);

  v1::JoinResponse foreign = join;
  foreign.set_signing_key_id(other_key_->key_id());
  DeviceClient other("phone-2", Clean());
  options.already_joined = foreign;
  auto refused = Runner(&other, options);
  ASSERT_NE(refused, nullptr);
  EXPECT_THAT(refused->RunOnce().status(),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("this device pins key")));
  EXPECT_FALSE(refused->joined());
}

TEST_F(DeviceRunnerTest, ARefusedJoinEndsTheRun) {
  aggregator_.join_status = absl::PermissionDeniedError("device revoked");
  DeviceClient device("phone-1", Clean());
  auto runner = Runner(&device, Options());
  ASSERT_NE(runner, nullptr);
  EXPECT_THAT(runner->RunOnce().status(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("revoked")));
  std::atomic<bool> stop{false};
  EXPECT_THAT(runner->Run(stop), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_FALSE(runner->joined());
  EXPECT_EQ(aggregator_.polls, 0);
  EXPECT_TRUE(aggregator_.leaves.empty());  // a refused device does not say goodbye
}

// Run heartbeats at the interval the join asked for, from its own thread
// (whatever the loop is doing), stops heartbeating when it ends, and tells
// the aggregator it leaves: when stopped, and after its last task.
TEST_F(DeviceRunnerTest, RunHeartbeatsWhileItRunsAndLeavesWhenItEnds) {
  aggregator_.heartbeat_interval_ms = 20;
  aggregator_.poll_wait = std::chrono::milliseconds(5);
  DeviceClient device("phone-1", Clean());
  auto runner = Runner(&device, Options());
  ASSERT_NE(runner, nullptr);
  std::atomic<bool> stop{false};
  absl::Status ended = absl::UnknownError("still running");
  std::thread run([&] { ended = runner->Run(stop); });
  auto beats = [&] {
    std::lock_guard<std::mutex> lock(aggregator_.mu);
    return aggregator_.heartbeats;
  };
  for (int i = 0; i < 500 && beats() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(beats(), 3);
  EXPECT_TRUE(aggregator_.leaves.empty());
  stop = true;
  run.join();
  FEDGE_EXPECT_OK(ended);
  EXPECT_THAT(aggregator_.leaves, ::testing::ElementsAre("stopped"));
  const int after = beats();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(beats(), after);  // the heartbeat thread ended with the run

  // A run that ends after its last task leaves too, saying so. An interval
  // of 0 asks for no heartbeats.
  aggregator_.heartbeat_interval_ms = 0;
  aggregator_.heartbeats = 0;
  aggregator_.tasks.push_back(Task(1, 3));
  DeviceClient second("phone-1", Clean());
  DeviceRunnerOptions options = Options();
  options.max_tasks = 1;
  auto one_task = Runner(&second, options);
  ASSERT_NE(one_task, nullptr);
  std::atomic<bool> never{false};
  FEDGE_ASSERT_OK(one_task->Run(never));
  EXPECT_EQ(one_task->tasks_done(), 1);
  EXPECT_THAT(aggregator_.leaves, ::testing::ElementsAre("stopped", "done after 1 tasks"));
  EXPECT_EQ(beats(), 0);
}

TEST_F(DeviceRunnerTest, AnAggregatorSigningWithAnotherKeyIsRefusedAtJoin) {
  aggregator_.signing_key_id = other_key_->key_id();
  DeviceClient device("phone-1", Clean());
  auto runner = Runner(&device, Options());
  ASSERT_NE(runner, nullptr);
  EXPECT_THAT(runner->RunOnce().status(),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("this device pins key")));
  EXPECT_FALSE(runner->joined());
  // The pinned key's own id is accepted.
  aggregator_.signing_key_id = key_->key_id();
  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult step, runner->RunOnce());
  EXPECT_TRUE(step.joined);
}

TEST_F(DeviceRunnerTest, RunsATaskEndToEnd) {
  aggregator_.tasks.push_back(Task(8, 3));
  DeviceClient device("phone-1", Clean());
  DeviceRunnerOptions options = Options();
  options.model_file = dir_ / "model.fedge";
  std::vector<uint64_t> done_rounds;
  options.on_task = [&](const TaskReport& report) { done_rounds.push_back(report.round); };
  auto runner = Runner(&device, options);
  ASSERT_NE(runner, nullptr);

  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult step, runner->RunOnce());
  ASSERT_EQ(step.kind, StepResult::Kind::kTaskDone);
  ASSERT_TRUE(step.report.has_value());
  EXPECT_EQ(step.report->round, 8u);
  EXPECT_EQ(step.report->model_version, 3u);
  EXPECT_EQ(step.report->num_examples, 40);
  EXPECT_EQ(done_rounds, std::vector<uint64_t>{8});
  EXPECT_EQ(runner->tasks_done(), 1);

  ASSERT_THAT(aggregator_.accepted, SizeIs(1));
  EXPECT_EQ(aggregator_.accepted[0].client_id(), "phone-1");
  EXPECT_EQ(aggregator_.accepted[0].round(), 8u);
  EXPECT_EQ(aggregator_.accepted[0].model_version(), 3u);
  ASSERT_THAT(aggregator_.metrics, SizeIs(1));
  EXPECT_EQ(aggregator_.metrics[0].round(), 8u);
  EXPECT_NEAR(aggregator_.metrics[0].metrics().at("train_loss"), step.report->metrics.loss, 1e-9);

  // The verified model is the device's current one, also on disk.
  ASSERT_NE(runner->current_model(), nullptr);
  EXPECT_EQ(runner->current_model()->header().version(), 3u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string saved, proto::ReadFile(dir_ / "model.fedge"));
  v1::ModelArtifact on_disk;
  ASSERT_TRUE(on_disk.ParseFromString(saved));
  EXPECT_EQ(on_disk.header().version(), 3u);
  EXPECT_EQ(on_disk.signature(), aggregator_.artifacts[3]->signature());

  // Run with max_tasks stops after the next task.
  aggregator_.tasks.push_back(Task(9, 3));
  DeviceRunnerOptions again = options;
  again.max_tasks = 2;
  DeviceRunner looping(&aggregator_, pending_.get(), &device, device_model_.get(), &trainer_,
                       again);
  std::atomic<bool> stop{false};
  aggregator_.tasks.push_front(Task(10, 3));
  FEDGE_ASSERT_OK(looping.Run(stop));
  EXPECT_EQ(looping.tasks_done(), 2);
  EXPECT_THAT(aggregator_.accepted, SizeIs(3));
}

TEST_F(DeviceRunnerTest, RefusesAModelNotSignedByThePinnedKeyAndTakesTheNextOne) {
  aggregator_.artifacts[3] = Signed(3, *other_key_);
  aggregator_.tasks.push_back(Task(8, 3));
  DeviceClient device("phone-1", Clean());
  std::vector<absl::Status> failures;
  DeviceRunnerOptions options = Options();
  options.model_file = dir_ / "model.fedge";
  options.on_task_failed = [&](const absl::Status& s) { failures.push_back(s); };
  auto runner = Runner(&device, options);
  ASSERT_NE(runner, nullptr);

  absl::StatusOr<StepResult> refused = runner->RunOnce();
  EXPECT_THAT(refused.status(), StatusIs(absl::StatusCode::kUnauthenticated,
                                         HasSubstr("fetching the model: model version 3 refused")));
  ASSERT_THAT(failures, SizeIs(1));
  EXPECT_EQ(aggregator_.submit_attempts, 0);
  EXPECT_EQ(runner->current_model(), nullptr);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "model.fedge"));

  // An unsigned artifact is refused as well.
  models::ArtifactOptions unsigned_options;
  unsigned_options.version = 4;
  aggregator_.artifacts[4] = std::make_shared<const v1::ModelArtifact>(*models::BuildFp32Artifact(
      spec_, global_->parameters().layout(), global_->parameters().values(), unsigned_options));
  aggregator_.tasks.push_back(Task(9, 4));
  EXPECT_FALSE(runner->RunOnce().ok());
  EXPECT_EQ(aggregator_.submit_attempts, 0);

  // The next properly signed version is trained on.
  aggregator_.artifacts[5] = Signed(5, *key_);
  aggregator_.tasks.push_back(Task(10, 5));
  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult step, runner->RunOnce());
  EXPECT_EQ(step.kind, StepResult::Kind::kTaskDone);
  ASSERT_THAT(aggregator_.accepted, SizeIs(1));
  EXPECT_EQ(aggregator_.accepted[0].model_version(), 5u);
  EXPECT_EQ(runner->current_model()->header().version(), 5u);
}

TEST_F(DeviceRunnerTest, BuffersTheUpdateWhileOfflineAndDeliversItLater) {
  aggregator_.tasks.push_back(Task(8, 3));
  aggregator_.submit_status = absl::UnavailableError("connection refused");
  DeviceClient device("phone-1", Clean());
  auto runner = Runner(&device, Options());
  ASSERT_NE(runner, nullptr);

  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult buffered, runner->RunOnce());
  EXPECT_EQ(buffered.kind, StepResult::Kind::kTaskDone);
  EXPECT_TRUE(aggregator_.accepted.empty());
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> stored, pending_->List());
  ASSERT_THAT(stored, SizeIs(1));
  EXPECT_EQ(stored[0].round(), 8u);

  // Still away: the runner neither polls nor trains.
  const int polls = aggregator_.polls;
  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult offline, runner->RunOnce());
  EXPECT_EQ(offline.kind, StepResult::Kind::kOffline);
  EXPECT_EQ(aggregator_.polls, polls);

  // Back: the stored update lands first, then the runner polls again.
  aggregator_.submit_status = absl::OkStatus();
  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult back, runner->RunOnce());
  EXPECT_EQ(back.kind, StepResult::Kind::kNoTask);
  ASSERT_THAT(aggregator_.accepted, SizeIs(1));
  EXPECT_EQ(aggregator_.accepted[0].round(), 8u);
  EXPECT_EQ(aggregator_.polls, polls + 1);
  FEDGE_ASSERT_OK_AND_ASSIGN(stored, pending_->List());
  EXPECT_TRUE(stored.empty());
}

TEST_F(DeviceRunnerTest, DriftInTheLocalDataSendsADriftReport) {
  aggregator_.tasks.push_back(Task(8, 3));
  DeviceClient device("phone-1", Clean());
  DeviceRunnerOptions options = Options();
  options.drift = LossDrift();
  std::vector<absl::Status> verdicts;
  options.on_drift = [&](const MonitorOutcome& outcome, const absl::Status& reported) {
    if (outcome.report.has_value()) verdicts.push_back(reported);
  };
  auto runner = Runner(&device, options);
  ASSERT_NE(runner, nullptr);

  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult clean, runner->RunOnce());
  ASSERT_EQ(clean.kind, StepResult::Kind::kTaskDone);
  EXPECT_TRUE(aggregator_.drift_reports.empty()) << "false alarm on the data the model fits";

  // The device's labels change; the next task's examples show it.
  device.SetData(Shifted());
  aggregator_.tasks.push_back(Task(9, 3));
  FEDGE_ASSERT_OK_AND_ASSIGN(StepResult shifted, runner->RunOnce());
  ASSERT_EQ(shifted.kind, StepResult::Kind::kTaskDone);
  ASSERT_THAT(aggregator_.drift_reports, SizeIs(1));
  const v1::DriftReport& report = aggregator_.drift_reports[0];
  EXPECT_EQ(report.client_id(), "phone-1");
  EXPECT_EQ(report.model_version(), 3u);
  EXPECT_TRUE(report.request_join());
  ASSERT_GE(report.events_size(), 1);
  EXPECT_EQ(report.events(0).detector(), "page-hinkley");
  EXPECT_EQ(report.events(0).stream(), "loss");
  EXPECT_GT(report.events(0).statistic(), report.events(0).threshold());
  ASSERT_THAT(verdicts, SizeIs(1));
  FEDGE_EXPECT_OK(verdicts[0]);
  EXPECT_FALSE(runner->drift_events().empty());
}

TEST_F(DeviceRunnerTest, DetectorStateSurvivesANewRunner) {
  const std::vector<float> baseline(30, 0.1f);
  const float high = 2.0f;
  DeviceClient device("phone-1", Clean());
  // Calibration, in memory only: how many high losses after the baseline
  // make the detector fire.
  int needed = 0;
  {
    DeviceRunnerOptions options = Options();
    options.drift = LossDrift();
    auto runner = Runner(&device, options);
    ASSERT_NE(runner, nullptr);
    FEDGE_ASSERT_OK_AND_ASSIGN(MonitorOutcome none, runner->ObserveFeedback(baseline, {}, 3));
    ASSERT_TRUE(none.alarms.empty());
    for (needed = 1; needed < 50; ++needed) {
      FEDGE_ASSERT_OK_AND_ASSIGN(MonitorOutcome o, runner->ObserveFeedback({&high, 1}, {}, 3));
      if (!o.alarms.empty()) break;
    }
    ASSERT_GT(needed, 1);
    ASSERT_LT(needed, 50);
  }
  DeviceRunnerOptions persisted = Options();
  persisted.drift = LossDrift();
  persisted.state_dir = dir_ / "state";
  {
    // The first device process sees all but the last high loss, then stops.
    auto runner = Runner(&device, persisted);
    ASSERT_NE(runner, nullptr);
    FEDGE_ASSERT_OK(runner->ObserveFeedback(baseline, {}, 3).status());
    for (int i = 0; i + 1 < needed; ++i) {
      FEDGE_ASSERT_OK_AND_ASSIGN(MonitorOutcome o, runner->ObserveFeedback({&high, 1}, {}, 3));
      ASSERT_TRUE(o.alarms.empty());
    }
  }
  EXPECT_TRUE(std::filesystem::exists(dir_ / "state" / "drift_monitor.state"));
  {
    // A fresh runner without the state does not fire on one high loss ...
    DeviceRunnerOptions fresh = Options();
    fresh.drift = LossDrift();
    auto runner = Runner(&device, fresh);
    ASSERT_NE(runner, nullptr);
    FEDGE_ASSERT_OK_AND_ASSIGN(MonitorOutcome o, runner->ObserveFeedback({&high, 1}, {}, 3));
    EXPECT_TRUE(o.alarms.empty());
  }
  // ... the restarted device, which restores it, does, and reports it.
  auto restarted = Runner(&device, persisted);
  ASSERT_NE(restarted, nullptr);
  FEDGE_ASSERT_OK_AND_ASSIGN(MonitorOutcome o, restarted->ObserveFeedback({&high, 1}, {}, 3));
  ASSERT_THAT(o.alarms, SizeIs(1));
  EXPECT_EQ(o.alarms[0].detector(), "page-hinkley");
  EXPECT_EQ(o.alarms[0].observations(), 30u + static_cast<uint64_t>(needed));
  ASSERT_THAT(aggregator_.drift_reports, SizeIs(2));  // the calibration's and this one
  EXPECT_EQ(aggregator_.drift_reports[1].events(0).observations(),
            30u + static_cast<uint64_t>(needed));
}

TEST_F(DeviceRunnerTest, AnUnreadableDriftStateIsRefusedByName) {
  std::filesystem::create_directories(dir_ / "state");
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_ / "state" / "drift_monitor.state", "not a state"));
  DeviceClient device("phone-1", Clean());
  DeviceRunnerOptions options = Options();
  options.drift = LossDrift();
  options.state_dir = dir_ / "state";
  EXPECT_THAT(DeviceRunner::Create(&aggregator_, pending_.get(), &device, device_model_.get(),
                                   &trainer_, options)
                  .status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("drift_monitor.state")));
  // The constructor defers the same error to the first step.
  DeviceRunner runner(&aggregator_, pending_.get(), &device, device_model_.get(), &trainer_,
                      options);
  EXPECT_THAT(runner.RunOnce().status(), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(aggregator_.joins, 0);
}

TEST_F(DeviceRunnerTest, BadDriftOptionsNameTheField) {
  DeviceClient device("phone-1", Clean());
  DeviceRunnerOptions options = Options();
  options.drift = LossDrift();
  options.drift_examples = 0;
  EXPECT_THAT(DeviceRunner::Create(&aggregator_, pending_.get(), &device, device_model_.get(),
                                   &trainer_, options)
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("drift_examples")));
  options = Options();
  options.drift = LossDrift();
  options.drift->detectors = {"no-such-detector:loss"};
  EXPECT_THAT(DeviceRunner::Create(&aggregator_, pending_.get(), &device, device_model_.get(),
                                   &trainer_, options)
                  .status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("page-hinkley")));
  // Without a monitor, observations are refused.
  auto runner = Runner(&device, Options());
  ASSERT_NE(runner, nullptr);
  const float loss = 1.0f;
  EXPECT_THAT(runner->ObserveFeedback({&loss, 1}, {}, 3).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("drift")));
}

TEST(ClientTransportRegistryTest, EveryBuiltInIsRegistered) {
  EXPECT_THAT(RegisteredClientTransports(), Contains(std::string(GrpcTransportName())));
}

TEST(ClientTransportRegistryTest, AnUnknownNameListsTheKnownOnes) {
  ClientTransportOptions options;
  EXPECT_THAT(CreateClientTransport("carrier-pigeon", options).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       ::testing::AllOf(HasSubstr("carrier-pigeon"), HasSubstr("grpc"))));
}

TEST(ClientTransportRegistryTest, TheGrpcFactoryChecksItsOptions) {
  ClientTransportOptions options;
  options.target = "localhost:1";
  options.client_id = "phone-1";
  EXPECT_THAT(CreateClientTransport("grpc", options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pinned_key")));
}

}  // namespace
}  // namespace fedge::client
