// fedge-client: one device process. Trains on its shard of an IDX dataset
// (e.g. Debian's Fashion-MNIST) for an aggregator reached over gRPC + TLS.
//
//   fedge-client --aggregator localhost:7443 --id dev-1
//       --ca certs/ca.pem --cert certs/client-dev-1.pem --key certs/client-dev-1.key
//       --pinned-key certs/signing.pub --shard 0 --num-shards 2 --state dev-1-state
//   (one command line)
//   fedge-client --config device.yaml --set partition.shard=1
//
// Flags, --config and --set all go through one key table (client_config.h).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <optional>
#include <csignal>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client_config.h"
#include "fedge/proto/plugin.h"
#include "fedge/client/dataset_store.h"
#include "fedge/client/device_runner.h"
#include "fedge/client/grpc_transport.h"
#include "fedge/client/transport_registry.h"
#include "fedge/data/dataset.h"
#include "fedge/data/partition.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/signing.h"
#include "fedge/proto/log.h"
#include "fedge/proto/version.h"

namespace {

std::atomic<bool> g_stop{false};

// First SIGINT/SIGTERM: finish the current step and stop (the runner checks
// g_stop between steps). A second one: exit at once.
void OnStopSignal(int signo) {
  if (g_stop.exchange(true)) {
    constexpr char kMessage[] = "fedge-client: second signal, exiting now\n";
    (void)!::write(2, kMessage, sizeof(kMessage) - 1);
    std::_Exit(128 + signo);
  }
}

int Fail(const std::string& message) {
  std::cerr << "fedge-client: error: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("fedge-client %s\n", FEDGE_VERSION_STRING);
    return 0;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  // Plug-ins first: what they register is then a valid config value.
  if (absl::Status s = fedge::config::LoadPluginFlags(args); !s.ok()) {
    std::cerr << "fedge-client: error: " << s.message() << "\n";
    return 2;
  }
  if (std::find(args.begin(), args.end(), "--help") != args.end() ||
      std::find(args.begin(), args.end(), "-h") != args.end()) {
    std::cout << fedge::client::tools::ClientToolHelp();
    return 0;
  }
  absl::StatusOr<fedge::client::tools::ClientToolConfig> config =
      fedge::client::tools::LoadClientToolConfig(args);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  const fedge::client::ClientTransportOptions& transport = config->device.transport;
  const std::string& data_dir = config->data_dir;
  const std::string state_dir = config->device.state_dir.string();
  const std::string& codec = config->device.codec;
  const fedge::data::PartitionOptions& partition = config->partition;
  const int shard = config->shard;
  const int64_t tasks = config->device.max_tasks;
  const int threads = config->device.threads;
  fedge::models::SetComputeThreads(threads);

  // The gRPC transport is linked in; naming it keeps its registration.
  (void)fedge::client::GrpcTransportName();
  auto created = fedge::client::CreateClientTransport(config->transport, transport);
  if (!created.ok()) return Fail(std::string(created.status().message()));
  fedge::client::ClientTransport& client_transport = **created;
  auto pinned = fedge::models::VerifyingKey::LoadPem(transport.pinned_key_file);
  if (!pinned.ok()) return Fail(std::string(pinned.status().message()));

  // The device's data: its shard of the training split, and nothing else
  // (no test split; the images file is streamed and only the shard kept).
  std::optional<fedge::data::Dataset> shard_data;
  std::optional<fedge::data::Dataset> drifted_data;
  {
    auto labels = fedge::data::ReadIdxTrainLabels(data_dir);
    if (!labels.ok()) return Fail(std::string(labels.status().message()));
    auto parts = fedge::data::PartitionExamples(*labels, 10, partition);
    if (!parts.ok()) return Fail(std::string(parts.status().message()));
    auto own = fedge::data::ReadIdxTrainExamples(data_dir, "fashion-mnist", (*parts)[shard]);
    if (!own.ok()) return Fail(std::string(own.status().message()));
    shard_data = *std::move(own);
    // Injected drift (tests): a drifted copy of the shard, swapped in from
    // the task of round fault.drift_round on.
    if (config->drift.type != "none") {
      auto copy = fedge::data::MakeDriftedCopy(*shard_data, config->drift, partition.seed + 2);
      if (!copy.ok()) return Fail(std::string(copy.status().message()));
      drifted_data = *std::move(copy);
    }
  }
  const std::vector<int64_t> example_shape = shard_data->example_shape;
  const int64_t num_classes = shard_data->num_classes;
  const int32_t shard_size = static_cast<int32_t>(shard_data->num_examples());
  auto indices = std::make_shared<std::vector<int32_t>>(static_cast<size_t>(shard_size));
  std::iota(indices->begin(), indices->end(), 0);
  std::optional<fedge::client::LocalDataset> drifted;
  if (drifted_data.has_value()) {
    auto drifted_store = fedge::client::MakeExampleStore(*std::move(drifted_data));
    if (!drifted_store.ok()) return Fail(std::string(drifted_store.status().message()));
    drifted = fedge::client::LocalDataset{*drifted_store, indices};
  }
  auto store = fedge::client::MakeExampleStore(*std::move(shard_data));
  if (!store.ok()) return Fail(std::string(store.status().message()));
  fedge::client::LocalDataset local{*store, indices};

  // The model the federation trains (its spec comes from the aggregator).
  absl::StatusOr<fedge::v1::JoinResponse> join;
  for (int attempt = 0; attempt < 60 && !g_stop; ++attempt) {
    join = client_transport.Join(transport.client_id);
    if (join.ok() || !fedge::client::IsUnreachable(join.status())) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (!join.ok()) return Fail(std::string(join.status().message()));
  auto spec = fedge::models::FromProto(join->model());
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  if (spec->input_shape != example_shape || spec->num_classes != num_classes) {
    return Fail(absl::StrCat("the federation's model '", spec->architecture,
                             "' does not take this device's examples"));
  }
  auto model = fedge::models::ModelInstance::Create(*spec, /*seed=*/0);
  if (!model.ok()) return Fail(std::string(model.status().message()));

  fedge::client::DeviceClientOptions device_options;
  device_options.codec = codec;
  device_options.floor = config->device.privacy_floor;
  device_options.seeded_noise = config->device.seeded_noise;
  fedge::client::DeviceClient device(transport.client_id, local, device_options);
  fedge::client::FileKeyProvider keys(std::filesystem::path(state_dir) / "store.key");
  fedge::client::PendingUpdateStore pending(std::filesystem::path(state_dir) / "pending", &keys);
  fedge::client::Trainer trainer;
  fedge::client::DeviceRunnerOptions runner_options;
  runner_options.max_tasks = tasks;
  runner_options.seed = std::hash<std::string>{}(transport.client_id);
  runner_options.model_file = std::filesystem::path(state_dir) / "model.fedge";
  runner_options.pinned_key = *std::move(pinned);
  runner_options.secagg_drops = config->secagg_drops;
  runner_options.already_joined = *join;  // joined above, for the model spec
  runner_options.state_dir = state_dir;
  if (config->monitor) {
    fedge::client::DriftMonitorOptions monitor;
    monitor.detectors = config->monitor_detectors;  // checked when the runner starts
    monitor.features = 16;  // input summaries: each image cut into 16 chunks
    runner_options.drift = monitor;
  }
  if (drifted.has_value()) {
    const uint64_t from = static_cast<uint64_t>(config->drift.round);
    // After the task of round r, the next task (round r + 1 or later) sees
    // the drifted data; the monitor scores it right away.
    runner_options.on_task = [&device, &drifted, from](const fedge::client::TaskReport& report) {
      if (report.round + 1 >= from && drifted.has_value()) {
        device.SetData(*drifted);
        drifted.reset();
        fedge::LogEvent("info", "drift_injected", {{"client", device.id()}});
      }
    };
  }
  std::filesystem::create_directories(state_dir);
  fedge::client::DeviceRunner runner(&client_transport, &pending, &device, model->get(), &trainer,
                                     runner_options);
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  fedge::LogEvent("info", "device_started",
                  {{"client", transport.client_id},
                   {"examples", std::to_string(local.size())},
                   {"architecture", spec->architecture}});
  absl::Status status = runner.Run(g_stop);
  if (!status.ok()) return Fail(std::string(status.message()));
  fedge::LogEvent(
      "info", "device_stopped",
      {{"client", transport.client_id}, {"tasks", std::to_string(runner.tasks_done())}});
  return 0;
}
