// The gated rollout over gRPC, with simulated devices: a version worse on
// the validation set is refused, a canary that regresses on the devices is
// rolled back, and one that holds goes live.
#include <map>
#include <thread>

#include "deploy_fixture.h"
#include "fedge/aggregator/server.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/client/grpc_transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::testing_util {
namespace {

using ::testing::HasSubstr;

// The validation accuracy the aggregator "measures" for each version; the
// test scripts it (versions republished by a rollback carry their
// original's figures and are not evaluated again).
std::function<absl::StatusOr<std::map<std::string, double>>(const v1::ModelArtifact&)> Scripted(
    std::map<uint64_t, double> accuracy) {
  return
      [accuracy](const v1::ModelArtifact& master) -> absl::StatusOr<std::map<std::string, double>> {
        auto it = accuracy.find(master.header().version());
        if (it == accuracy.end()) return absl::NotFoundError("no scripted accuracy");
        return std::map<std::string, double>{{"accuracy", it->second}, {"loss", 1.0 - it->second}};
      };
}

class RolloutTest : public ::testing::Test {
 protected:
  void Start(std::map<uint64_t, double> accuracy) {
    state_ = ScratchDir() / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(state_);
    {
      auto store = aggregator::StateStore::Open(state_);
      ASSERT_TRUE(store.ok()) << store.status();
      for (const char* id : {"dev-1", "dev-2"}) FEDGE_ASSERT_OK((*store)->EnrollClient(id, ""));
    }
    aggregator::AggregatorServerOptions options = ServerOptions(state_);
    options.policy.deadline = std::chrono::seconds(30);
    options.validate = Scripted(std::move(accuracy));
    options.rollout.enabled = true;
    options.rollout.max_validation_accuracy_drop = 0.01;
    options.rollout.canary_fraction = 0.5;  // one of the two devices
    options.rollout.min_canary_reports = 1;
    options.rollout.max_canary_accuracy_drop = 0.02;
    options.rollout.canary_timeout = std::chrono::seconds(30);
    auto server = aggregator::AggregatorServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    for (const char* id : {"dev-1", "dev-2"}) {
      client::GrpcTransportOptions device = CertDevice(id, server_->port());
      device.poll_wait = std::chrono::milliseconds(500);
      auto transport = client::GrpcTransport::Create(device);
      ASSERT_TRUE(transport.ok()) << transport.status();
      absl::StatusOr<v1::JoinResponse> joined = (*transport)->Join();
      ASSERT_TRUE(joined.ok()) << joined.status();
      devices_.push_back(std::move(*transport));
    }
  }

  // Both devices take round `round`'s task and submit an update.
  void RunRound(uint64_t round, uint64_t version) {
    std::vector<std::thread> threads;
    for (auto& device : devices_) {
      threads.emplace_back([&, d = device.get()] {
        absl::StatusOr<v1::Task> task = WaitForTask(*d);
        ASSERT_TRUE(task.ok()) << task.status();
        EXPECT_EQ(task->kind(), v1::Task::KIND_TRAIN);
        EXPECT_EQ(task->round(), round);
        EXPECT_EQ(task->model_version(), version);
        FEDGE_EXPECT_OK(d->SubmitUpdate(MakeUpdate(*task, kSmallModelSize, 0.01f)));
      });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < 200 && server_->closed_rounds() < round; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_EQ(server_->closed_rounds(), round);
  }

  // Polls every device until one gets the canary's evaluation task; returns
  // its index and the task.
  std::pair<size_t, v1::Task> CanaryTask() {
    for (int attempt = 0; attempt < 20; ++attempt) {
      for (size_t i = 0; i < devices_.size(); ++i) {
        absl::StatusOr<v1::Task> task = devices_[i]->PollTask(devices_[i]->options().client_id);
        if (task.ok()) return {i, *task};
      }
    }
    ADD_FAILURE() << "no canary task came";
    return {0, v1::Task()};
  }

  void Report(size_t device, const v1::Task& task, double accuracy, double loss,
              double baseline_accuracy, double baseline_loss) {
    v1::MetricsReport report;
    report.set_client_id(devices_[device]->options().client_id);
    report.set_round(task.round());
    report.set_model_version(task.model_version());
    (*report.mutable_metrics())["eval_accuracy"] = accuracy;
    (*report.mutable_metrics())["eval_loss"] = loss;
    (*report.mutable_metrics())["baseline_accuracy"] = baseline_accuracy;
    (*report.mutable_metrics())["baseline_loss"] = baseline_loss;
    (*report.mutable_metrics())["eval_examples"] = 100;
    FEDGE_ASSERT_OK(devices_[device]->ReportMetrics(report));
  }

  void WaitForLive(uint64_t version) {
    for (int i = 0; i < 200 && server_->live_version() != version; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(server_->live_version(), version);
  }

  std::vector<std::string> EventKinds() const {
    std::vector<std::string> kinds;
    for (const aggregator::FleetEvent& e : server_->events().Since(0, 100)) {
      kinds.push_back(e.kind);
    }
    return kinds;
  }

  // The versions' statuses as the status API reports them, oldest first.
  std::vector<std::string> OperatorStatuses() {
    absl::StatusOr<std::vector<aggregator::VersionStatus>> versions =
        server_->fleet().Versions();
    EXPECT_TRUE(versions.ok()) << versions.status();
    std::vector<std::string> statuses;
    for (auto it = versions->rbegin(); it != versions->rend(); ++it) {
      statuses.push_back(it->record.status);
    }
    return statuses;
  }

  std::vector<aggregator::VersionRecord> StoredVersions() {
    server_.reset();
    auto store = aggregator::StateStore::Open(state_);
    EXPECT_TRUE(store.ok()) << store.status();
    auto versions = (*store)->Versions();
    EXPECT_TRUE(versions.ok());
    return *versions;
  }

  std::filesystem::path state_;
  std::unique_ptr<aggregator::AggregatorServer> server_;
  std::vector<std::unique_ptr<client::GrpcTransport>> devices_;
};

TEST_F(RolloutTest, AVersionWorseOnTheValidationSetIsRefused) {
  Start({{0, 0.80}, {1, 0.70}, {3, 0.82}});
  RunRound(1, 0);
  // Version 1 is refused; version 2 republishes version 0 and is live. As
  // operators read them, it is the one live version; v0 is superseded.
  WaitForLive(2);
  EXPECT_THAT(OperatorStatuses(), ::testing::ElementsAre("superseded", "rejected", "live"));
  EXPECT_EQ(server_->metrics().rollouts_rejected.load(), 1u);
  EXPECT_THAT(EventKinds(),
              ::testing::IsSupersetOf({"rollout_rejected", "version_rolled_back", "alert"}));
  // Devices are told the live version, and the next round trains from it.
  absl::StatusOr<v1::JoinResponse> join = devices_[0]->Join();
  ASSERT_TRUE(join.ok());
  EXPECT_EQ(join->latest_version(), 2u);
  RunRound(2, 2);

  std::vector<aggregator::VersionRecord> versions = StoredVersions();
  ASSERT_GE(versions.size(), 3u);
  EXPECT_EQ(versions[1].status, "rejected");
  EXPECT_THAT(versions[1].status_reason, HasSubstr("validation accuracy 0.7000"));
  EXPECT_EQ(versions[1].metrics.at("validation_accuracy"), 0.70);
  EXPECT_EQ(versions[2].status, "live");
  EXPECT_EQ(versions[2].metrics.at("rollback_of"), 0);
  EXPECT_EQ(versions[2].metrics.at("validation_accuracy"), 0.80);
  EXPECT_THAT(versions[2].note, HasSubstr("rollback to 0"));
  // The first version's validation is stored with it, like any version's.
  EXPECT_EQ(versions[0].metrics.at("validation_accuracy"), 0.80);
  EXPECT_EQ(versions[0].metrics.at("validation_loss"), 1.0 - 0.80);
}

TEST_F(RolloutTest, ACanaryThatRegressesOnTheDevicesIsRolledBack) {
  Start({{0, 0.80}, {1, 0.81}});
  RunRound(1, 0);
  EXPECT_EQ(server_->live_version(), 0u);  // version 1 waits for its canary
  auto [canary, task] = CanaryTask();
  EXPECT_EQ(task.kind(), v1::Task::KIND_EVALUATE);
  EXPECT_EQ(task.model_version(), 1u);
  EXPECT_EQ(task.baseline_version(), 0u);
  // No round opens while the canary runs: the other device gets no task.
  const size_t other = 1 - canary;
  EXPECT_THAT(devices_[other]->PollTask(devices_[other]->options().client_id).status(),
              StatusIs(absl::StatusCode::kNotFound));
  // On the canary's own data the candidate is much worse.
  Report(canary, task, 0.60, 1.40, 0.80, 0.60);
  WaitForLive(2);
  EXPECT_EQ(server_->metrics().rollouts_rolled_back.load(), 1u);
  EXPECT_EQ(server_->metrics().rollouts_promoted.load(), 0u);
  std::vector<aggregator::FleetEvent> events = server_->events().Since(0, 100);
  auto rolled_back = std::find_if(events.begin(), events.end(),
                                  [](const auto& e) { return e.kind == "rollout_rolled_back"; });
  ASSERT_NE(rolled_back, events.end());
  EXPECT_THAT(rolled_back->message, HasSubstr("accuracy -0.2000"));
  EXPECT_EQ(rolled_back->fields.at("version"), "1");

  std::vector<aggregator::VersionRecord> versions = StoredVersions();
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[1].status, "rolled_back");
  EXPECT_EQ(versions[2].status, "live");
  EXPECT_EQ(versions[2].metrics.at("rollback_of"), 0);
}

TEST_F(RolloutTest, ACanaryThatHoldsGoesLiveAndTrainingResumesFromIt) {
  Start({{0, 0.80}, {1, 0.81}, {2, 0.83}});
  RunRound(1, 0);
  auto [canary, task] = CanaryTask();
  // A report on another version, or a malformed one, changes nothing.
  v1::Task wrong = task;
  wrong.set_model_version(0);
  Report(canary, wrong, 0.1, 9.0, 0.8, 0.6);
  Report(canary, task, 0.82, 0.55, 0.80, 0.60);
  WaitForLive(1);
  EXPECT_EQ(server_->metrics().rollouts_promoted.load(), 1u);
  EXPECT_EQ(server_->latest_version(), 1u);  // nothing republished
  RunRound(2, 1);
  EXPECT_THAT(OperatorStatuses(), ::testing::ElementsAre("superseded", "live", "canary"));
  std::vector<aggregator::VersionRecord> versions = StoredVersions();
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[1].status, "live");
  EXPECT_THAT(versions[1].status_reason, HasSubstr("accuracy +0.0200"));
  EXPECT_EQ(versions[2].status, "canary");  // version 2 now awaits its own canary
}

TEST_F(RolloutTest, RolloutWithoutAValidationSetIsRefusedAtStart) {
  aggregator::AggregatorServerOptions options = ServerOptions(ScratchDir() / "no-validation");
  options.rollout.enabled = true;
  EXPECT_THAT(aggregator::AggregatorServer::Start(std::move(options)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("validation")));
}

}  // namespace
}  // namespace fedge::testing_util
