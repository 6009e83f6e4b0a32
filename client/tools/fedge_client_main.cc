// fedge-client: one device process. Trains on its shard of an IDX dataset
// (e.g. Debian's Fashion-MNIST) for an aggregator reached over gRPC + TLS.
//
//   fedge-client --aggregator localhost:7443 --id dev-1 \
//       --ca certs/ca.pem --cert certs/client-dev-1.pem --key certs/client-dev-1.key \
//       --pinned-key certs/signing.pub --shard 0 --num-shards 2 --state dev-1-state
#include <atomic>
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "fedge/client/dataset_store.h"
#include "fedge/client/device_runner.h"
#include "fedge/client/grpc_transport.h"
#include "fedge/client/transport_registry.h"
#include "fedge/data/dataset.h"
#include "fedge/data/partition.h"
#include "fedge/models/model_instance.h"
#include "fedge/proto/log.h"

namespace {

std::atomic<bool> g_stop{false};

constexpr char kHelp[] = R"(fedge-client: a fedge device process.

Usage:
  fedge-client --aggregator HOST:PORT --id ID --pinned-key signing.pub
               (--ca ca.pem (--cert C --key K | --token T) | --insecure)
               [--data DIR] [--shard I --num-shards N] [--partition iid|dirichlet|shards]
               [--alpha A] [--shards-per-client K] [--min-examples M] [--partition-seed S] [--state DIR] [--tasks N] [--codec NAME]
               [--threads T] [--poll-wait-ms MS] [--transport NAME]

  --aggregator     the aggregator's address (its certificate must name the host)
  --id             this device's id (the CN of its certificate, or its enrolled id)
  --pinned-key     the aggregator's Ed25519 public key: models it did not sign are refused
  --ca             CA of the aggregator's certificate
  --cert, --key    this device's certificate and key (mutual TLS)
  --token          enrollment token (devices without a certificate)
  --insecure       plaintext (aggregators started with --insecure; tests only)
  --data           IDX dataset directory (default /usr/share/datasets/fashion-mnist)
  --shard, --num-shards, --partition, --alpha, --shards-per-client,
  --min-examples, --partition-seed
                   which part of the training split is this device's: the
                   partition fedge-sim makes of it for num-shards clients
                   (default: shard 0 of 1, dirichlet, alpha 0.5, seed 1)
  --state          device state directory: encrypted pending updates, their key
                   (store.key, 0600) and the current model (default ./fedge-device-ID)
  --tasks          stop after N completed tasks (default: run until SIGINT/SIGTERM)
  --codec          update codec (default fp32)
  --threads        LibTorch intra-op threads (default 1)
  --transport      how to reach the aggregator, by name (default grpc)
)";

int Fail(const std::string& message) {
  std::cerr << "fedge-client: error: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  fedge::client::ClientTransportOptions transport;
  std::string transport_name = fedge::client::GrpcTransportName();
  std::string data_dir = fedge::data::kDefaultFashionMnistDir;
  std::string state_dir;
  std::string codec = "fp32";
  fedge::data::PartitionOptions partition;
  partition.num_clients = 1;
  partition.seed = 1;
  int shard = 0;
  int tasks = 0;
  int threads = 1;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kHelp;
      return 0;
    }
    if (arg == "--insecure") {
      transport.insecure = true;
      continue;
    }
    if (i + 1 >= args.size()) return Fail(absl::StrCat(arg, " needs a value (see --help)"));
    const std::string value = args[++i];
    auto integer = [&](int& out, int min) -> bool {
      return absl::SimpleAtoi(value, &out) && out >= min;
    };
    if (arg == "--aggregator") {
      transport.target = value;
    } else if (arg == "--id") {
      transport.client_id = value;
    } else if (arg == "--pinned-key") {
      transport.pinned_key_file = value;
    } else if (arg == "--ca") {
      transport.ca_file = value;
    } else if (arg == "--cert") {
      transport.cert_file = value;
    } else if (arg == "--key") {
      transport.key_file = value;
    } else if (arg == "--token") {
      transport.token = value;
    } else if (arg == "--transport") {
      transport_name = value;
    } else if (arg == "--data") {
      data_dir = value;
    } else if (arg == "--state") {
      state_dir = value;
    } else if (arg == "--codec") {
      codec = value;
    } else if (arg == "--partition") {
      partition.method = value;
    } else if (arg == "--alpha") {
      if (!absl::SimpleAtod(value, &partition.alpha)) return Fail("--alpha needs a number");
    } else if (arg == "--partition-seed") {
      if (!absl::SimpleAtoi(value, &partition.seed))
        return Fail("--partition-seed needs an integer");
    } else if (arg == "--shards-per-client") {
      if (!integer(partition.shards_per_client, 1)) {
        return Fail("--shards-per-client needs an integer >= 1");
      }
    } else if (arg == "--min-examples") {
      if (!integer(partition.min_examples_per_client, 0)) {
        return Fail("--min-examples needs an integer >= 0");
      }
    } else if (arg == "--shard") {
      if (!integer(shard, 0)) return Fail("--shard needs an integer >= 0");
    } else if (arg == "--num-shards") {
      if (!integer(partition.num_clients, 1)) return Fail("--num-shards needs an integer >= 1");
    } else if (arg == "--tasks") {
      if (!integer(tasks, 0)) return Fail("--tasks needs an integer >= 0");
    } else if (arg == "--threads") {
      if (!integer(threads, 1)) return Fail("--threads needs an integer >= 1");
    } else if (arg == "--poll-wait-ms") {
      int ms;
      if (!integer(ms, 1)) return Fail("--poll-wait-ms needs an integer >= 1");
      transport.poll_wait = std::chrono::milliseconds(ms);
    } else {
      return Fail(absl::StrCat("unknown flag ", arg, " (see --help)"));
    }
  }
  if (shard >= partition.num_clients) {
    return Fail(
        absl::StrCat("--shard ", shard, " is not below --num-shards ", partition.num_clients));
  }
  if (state_dir.empty()) state_dir = "fedge-device-" + transport.client_id;
  fedge::models::SetComputeThreads(threads);

  auto created = fedge::client::CreateClientTransport(transport_name, transport);
  if (!created.ok()) return Fail(std::string(created.status().message()));
  fedge::client::ClientTransport& client_transport = **created;
  auto pinned = fedge::models::VerifyingKey::LoadPem(transport.pinned_key_file);
  if (!pinned.ok()) return Fail(std::string(pinned.status().message()));

  // The device's data: its shard of the training split.
  auto data = fedge::data::ReadIdxDataset(data_dir, "fashion-mnist");
  if (!data.ok()) return Fail(std::string(data.status().message()));
  auto parts =
      fedge::data::PartitionExamples(data->train.labels, data->train.num_classes, partition);
  if (!parts.ok()) return Fail(std::string(parts.status().message()));
  auto indices = std::make_shared<const std::vector<int32_t>>((*parts)[shard]);
  const std::vector<int64_t> example_shape = data->train.example_shape;
  const int64_t num_classes = data->train.num_classes;
  auto store = fedge::client::MakeExampleStore(std::move(data->train));
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
  fedge::client::DeviceClient device(transport.client_id, local, device_options);
  fedge::client::FileKeyProvider keys(std::filesystem::path(state_dir) / "store.key");
  fedge::client::PendingUpdateStore pending(std::filesystem::path(state_dir) / "pending", &keys);
  fedge::client::Trainer trainer;
  fedge::client::DeviceRunnerOptions runner_options;
  runner_options.max_tasks = tasks;
  runner_options.seed = std::hash<std::string>{}(transport.client_id);
  runner_options.model_file = std::filesystem::path(state_dir) / "model.fedge";
  runner_options.pinned_key = *std::move(pinned);
  std::filesystem::create_directories(state_dir);
  fedge::client::DeviceRunner runner(&client_transport, &pending, &device, model->get(), &trainer,
                                     runner_options);
  std::signal(SIGINT, [](int) { g_stop = true; });
  std::signal(SIGTERM, [](int) { g_stop = true; });
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
