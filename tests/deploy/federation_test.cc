// A five-device federation over mutual TLS on loopback, with real training:
// each device runs the DeviceRunner loop (the loop of fedge-client) on its
// shard of Fashion-MNIST, and the global model must get better.
#include <torch/torch.h>

#include <atomic>
#include <thread>

#include "deploy_fixture.h"
#include "fedge/client/dataset_store.h"
#include "fedge/client/device_runner.h"
#include "fedge/data/dataset.h"
#include "fedge/data/partition.h"
#include "fedge/models/model_instance.h"
#include "fedge/proto/status_macros.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDevice;
using ::fedge::testing_util::ScratchDir;

double Accuracy(const models::ModelSpec& spec, const std::vector<float>& parameters,
                const client::ExampleStore& test) {
  auto model = models::ModelInstance::Create(spec, 0);
  EXPECT_TRUE(model.ok());
  std::copy(parameters.begin(), parameters.end(), (*model)->parameters().values().begin());
  auto metrics = client::Evaluate(**model, test, 0, 2000, 500);
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  return metrics->accuracy;
}

// Fashion-MNIST split iid over the five devices, the mlp spec for it, and an
// aggregator state directory with the devices enrolled by certificate.
class FederationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    models::SetComputeThreads(1);
    auto data = data::ReadIdxDataset(data::kDefaultFashionMnistDir, "fashion-mnist");
    ASSERT_TRUE(data.ok()) << data.status();
    data::PartitionOptions partition;
    partition.method = "iid";
    partition.num_clients = static_cast<int>(ids_.size());
    partition.seed = 1;
    auto shards = data::PartitionExamples(data->train.labels, data->train.num_classes, partition);
    ASSERT_TRUE(shards.ok());
    shards_ = *std::move(shards);
    spec_.architecture = "mlp";
    spec_.input_shape = data->train.example_shape;
    spec_.num_classes = data->train.num_classes;
    auto train = client::MakeExampleStore(std::move(data->train));
    auto test = client::MakeExampleStore(std::move(data->test));
    ASSERT_TRUE(train.ok() && test.ok());
    train_ = *std::move(train);
    test_ = *std::move(test);
    state_ = ScratchDir() / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(state_);
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state_));
    for (const std::string& id : ids_) FEDGE_ASSERT_OK(store->EnrollClient(id, ""));
  }

  // Aggregator options with the zoo's mlp (seed 1) as version 0, a round of
  // all five devices, and 32-example batches.
  aggregator::AggregatorServerOptions Options(int max_steps) {
    aggregator::AggregatorServerOptions options = testing_util::ServerOptions(state_);
    auto initial = models::ModelInstance::Create(spec_, 1);
    EXPECT_TRUE(initial.ok());
    auto artifact = models::BuildFp32Artifact(spec_, (*initial)->parameters().layout(),
                                              (*initial)->parameters().values(), {});
    EXPECT_TRUE(artifact.ok());
    options.initial_model = *std::move(artifact);
    options.policy.goal = static_cast<int>(ids_.size());
    options.policy.min_clients = static_cast<int>(ids_.size());
    options.policy.train.set_batch_size(32);
    options.policy.train.set_learning_rate(0.05f);
    options.policy.train.set_max_steps(max_steps);
    return options;
  }

  // Device i's DeviceRunner loop (what fedge-client runs) for `tasks` tasks.
  absl::Status RunDevice(size_t i, int port, int tasks) {
    FEDGE_ASSIGN_OR_RETURN(auto transport,
                           client::GrpcTransport::Create(CertDevice(ids_[i], port)));
    FEDGE_ASSIGN_OR_RETURN(auto model, models::ModelInstance::Create(spec_, 0));
    client::DeviceClient device(ids_[i], Shard(i));
    client::StaticKeyProvider key(client::StoreKey{static_cast<uint8_t>(i + 1)});
    client::PendingUpdateStore pending(state_ / ("pending-" + ids_[i]), &key);
    client::Trainer trainer;
    client::DeviceRunnerOptions options;
    options.max_tasks = tasks;
    options.seed = i;
    client::DeviceRunner runner(transport.get(), &pending, &device, model.get(), &trainer, options);
    std::atomic<bool> stop{false};
    return runner.Run(stop);
  }

  client::LocalDataset Shard(size_t i) const {
    return {train_, std::make_shared<const std::vector<int32_t>>(shards_[i])};
  }

  const std::vector<std::string> ids_ = {"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"};
  models::ModelSpec spec_;
  std::shared_ptr<const client::ExampleStore> train_;
  std::shared_ptr<const client::ExampleStore> test_;
  data::Partition shards_;
  std::filesystem::path state_;
};

TEST_F(FederationTest, FiveDevicesOverMutualTlsImproveTheModel) {
  aggregator::AggregatorServerOptions options = Options(40);
  options.policy.rounds = 3;
  options.policy.train.set_momentum(0.9f);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  const std::vector<float> initial_parameters = (*server->registry().Get(0))->parameters;

  std::vector<std::thread> devices;
  std::vector<absl::Status> results(ids_.size());
  for (size_t i = 0; i < ids_.size(); ++i) {
    devices.emplace_back([&, i] { results[i] = RunDevice(i, server->port(), 3); });
  }
  for (std::thread& t : devices) t.join();
  for (const absl::Status& result : results) FEDGE_EXPECT_OK(result);
  FEDGE_ASSERT_OK(server->Wait());
  EXPECT_EQ(server->closed_rounds(), 3u);

  const double before = Accuracy(spec_, initial_parameters, *test_);
  const double after = Accuracy(spec_, (*server->registry().Latest())->parameters, *test_);
  EXPECT_LT(before, 0.3);
  EXPECT_GT(after, 0.6);
  EXPECT_GT(after, before + 0.3);
  std::cout << "accuracy of version 0: " << before << ", after 3 rounds: " << after << "\n";
}

// Secure aggregation over gRPC: five devices start SecAgg+, one vanishes
// after sharing its keys; the phase deadline closes the masked-input phase
// without it, and the round still publishes the sum of the other four.
TEST_F(FederationTest, SecureAggregationOverTlsSurvivesADropout) {
  aggregator::AggregatorServerOptions options = Options(20);
  options.policy.rounds = 1;
  aggregator::SecureAggregationOptions secure;
  secure.protocol.protocol = v1::SecAggConfig::PROTOCOL_SECAGG_PLUS;
  secure.protocol.neighbours = 4;
  secure.protocol.threshold = 3;
  secure.protocol.clip_bound = 1.0;
  secure.max_weight = 60000;
  options.secure_aggregation = secure;
  options.secagg_phase_timeout = std::chrono::seconds(2);
  std::vector<aggregator::RoundOutcome> outcomes;
  std::mutex outcomes_mu;
  options.on_round_closed = [&](const aggregator::RoundOutcome& outcome) {
    std::lock_guard<std::mutex> lock(outcomes_mu);
    outcomes.push_back(outcome);
  };
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));

  std::vector<std::thread> devices;
  std::vector<absl::Status> results(ids_.size());
  for (size_t i = 0; i + 1 < ids_.size(); ++i) {
    devices.emplace_back([&, i] { results[i] = RunDevice(i, server->port(), 1); });
  }
  // The device that vanishes: trains, advertises its keys, shares them, then
  // is gone before sending its masked input.
  devices.emplace_back([&] {
    const size_t i = ids_.size() - 1;
    auto transport = client::GrpcTransport::Create(CertDevice(ids_[i], server->port()));
    auto model = models::ModelInstance::Create(spec_, 0);
    if (!transport.ok() || !model.ok()) {
      results[i] = absl::InternalError("cannot set up the vanishing device");
      return;
    }
    client::DeviceClient device(ids_[i], Shard(i));
    client::Trainer trainer;
    absl::StatusOr<client::TaskReport> report;
    do {
      report = device.RunTask(**transport, **model, trainer);
    } while (absl::IsNotFound(report.status()));
    if (!report.ok()) {
      results[i] = report.status();
      return;
    }
    for (int step = 0; step < 2;) {
      absl::StatusOr<uint64_t> sent = device.SecAggStep(**transport);
      if (sent.ok()) {
        ++step;
      } else if (!absl::IsUnavailable(sent.status())) {
        results[i] = sent.status();
        return;
      }
    }
  });
  for (std::thread& t : devices) t.join();
  for (const absl::Status& result : results) FEDGE_EXPECT_OK(result);
  FEDGE_ASSERT_OK(server->Wait());
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].participants, 4);  // the sum of the four survivors
  EXPECT_EQ(outcomes[0].cohort_size, 5);
  EXPECT_EQ(server->latest_version(), 1u);
  EXPECT_NE((*server->registry().Get(1))->parameters, (*server->registry().Get(0))->parameters);
  // Under secure aggregation the devices' training figures stay on them: a
  // loss in the clear next to a masked update would say what the mask hides
  // (the DeviceRunner used to report train_loss and train_accuracy).
  FEDGE_ASSERT_OK_AND_ASSIGN(aggregator::DevicePage page, server->fleet().Devices({}));
  ASSERT_EQ(page.devices.size(), ids_.size());
  for (const aggregator::DeviceStatus& d : page.devices) {
    EXPECT_FALSE(d.last_metrics.contains("train_loss")) << d.id;
    EXPECT_FALSE(d.last_metrics.contains("train_accuracy")) << d.id;
  }
}

// The device holds the line: a device whose floor requires secure
// aggregation and a minimum noise refuses the plain, noiseless task of this
// aggregator before training, and the aggregator records its reason as an
// event. The other four devices complete the round without it.
TEST_F(FederationTest, ADeviceWithAPrivacyFloorRefusesAWeakerTaskAndTheAggregatorRecordsWhy) {
  aggregator::AggregatorServerOptions options = Options(5);
  options.policy.rounds = 1;
  options.policy.min_updates = 4;
  options.policy.deadline = std::chrono::seconds(4);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  std::vector<std::thread> devices;
  std::vector<absl::Status> results(ids_.size());
  for (size_t i = 0; i + 1 < ids_.size(); ++i) {
    devices.emplace_back([&, i] { results[i] = RunDevice(i, server->port(), 1); });
  }
  const size_t strict = ids_.size() - 1;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto transport,
                             client::GrpcTransport::Create(CertDevice(ids_[strict], server->port())));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto model, models::ModelInstance::Create(spec_, 0));
  client::DeviceClientOptions floor;
  floor.floor.require_secure_aggregation = true;
  client::DeviceClient device(ids_[strict], Shard(strict), floor);
  client::Trainer trainer;
  absl::StatusOr<client::TaskReport> report;
  do {
    report = device.RunTask(*transport, *model, trainer);
  } while (absl::IsNotFound(report.status()));
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(report.status().message()),
              ::testing::HasSubstr("require_secure_aggregation"));
  for (std::thread& t : devices) t.join();
  for (size_t i = 0; i + 1 < ids_.size(); ++i) FEDGE_EXPECT_OK(results[i]);
  FEDGE_ASSERT_OK(server->Wait());
  bool recorded = false;
  for (const aggregator::FleetEvent& e : server->events().Since(0, 1000)) {
    if (e.kind != "task_refused") continue;
    recorded = true;
    EXPECT_EQ(e.fields.at("client"), ids_[strict]);
    EXPECT_EQ(e.fields.at("round"), "1");
    EXPECT_THAT(e.fields.at("reason"), ::testing::HasSubstr("require_secure_aggregation"));
  }
  EXPECT_TRUE(recorded) << "no task_refused event";
  // Without secure aggregation the devices that trained did report their
  // figures: what SecureAggregationOverTlsSurvivesADropout finds absent is
  // really sent otherwise.
  FEDGE_ASSERT_OK_AND_ASSIGN(aggregator::DevicePage page, server->fleet().Devices({}));
  int with_loss = 0;
  for (const aggregator::DeviceStatus& d : page.devices) {
    with_loss += d.last_metrics.contains("train_loss") ? 1 : 0;
  }
  EXPECT_EQ(with_loss, 4);
  EXPECT_EQ(server->events().CountsByKind().at("task_refused"), 1u);
}

}  // namespace
}  // namespace fedge
