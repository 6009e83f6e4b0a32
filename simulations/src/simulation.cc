// RunSimulation: data, partition, N simulated devices, the deployment's
// round coordinator behind an in-process transport, and the report.
//
//   PrepareClients   proxy split, partition, drift set-up, example stores,
//                    one DeviceClient per partition entry with data
//   StartModels      the initial model, one replica per worker, the
//                    coordinator (federation.cc), the drift monitors
//   RunRounds        regular rounds, each preceded by the drift policy's
//                    extra rounds; evaluation; monitoring (drift_streams.cc)
//   Finish           summary, int8 and distilled device models
//                    (device_model_eval.cc)
#include "fedge/simulations/simulation.h"

#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "device_model_eval.h"
#include "drift_streams.h"
#include "federation.h"
#include "fedge/client/dataset_store.h"
#include "fedge/client/device_client.h"
#include "fedge/client/device_runner.h"
#include "fedge/client/trainer.h"
#include "fedge/data/partition.h"
#include "fedge/models/model_instance.h"
#include "fedge/proto/status_macros.h"
#include "fedge/data/drift_scenario.h"
#include "fedge/simulations/worker_pool.h"

namespace fedge::simulations {

using client::MakeExampleStore;
using data::MakeSyntheticDataset;
using data::Partition;
using data::PartitionExamples;
using data::PartitionOptions;
using data::ReadIdxDataset;
using data::SyntheticOptions;
using data::TrainTest;

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// The ids fedge-sim --mode multiprocess enrolls its devices with, so both
// modes draw the same cohorts from the same sorted candidates.
std::string ClientId(size_t i) { return absl::StrFormat("client-%05d", i); }

// Everything one run holds.
struct Run {
  explicit Run(const SimulationConfig& c) : config(c) {}

  const SimulationConfig& config;
  Clock::time_point start = Clock::now();
  models::ModelSpec spec;
  std::vector<int64_t> example_shape;
  std::shared_ptr<const client::ExampleStore> train;
  std::shared_ptr<const client::ExampleStore> test;
  // The aggregator's unlabeled proxy set (features only) and the part of it
  // int8 activation ranges are calibrated on.
  torch::Tensor proxy;
  torch::Tensor calibration;
  internal::DriftSetup drift;
  std::vector<client::DeviceClient> clients;
  // What each simulated device runs, as fedge-client and the C API do:
  // join, poll, fetch and verify against the pinned key, train, submit,
  // report; on the worker's model replica.
  std::vector<std::unique_ptr<client::DeviceRunner>> runners;
  client::DeviceRunnerOptions runner_options;
  std::vector<std::string> ids;
  std::vector<size_t> partition_of;  // clients[k] is partition entry partition_of[k]
  std::unordered_map<std::string, size_t> client_index;
  int per_round = 0;
  int workers = 1;
  std::vector<std::unique_ptr<models::ModelInstance>> replicas;
  std::unique_ptr<models::ModelInstance> calibration_model;
  std::unique_ptr<WorkerPool> pool;
  client::Trainer trainer;
  std::unique_ptr<internal::Federation> federation;
  SimulationResult result;
};

// A seeded sample of the training examples that no client gets (sorted).
std::vector<int32_t> ProxyIndices(const SimulationConfig& config, int64_t train_size) {
  std::vector<int32_t> proxy;
  if (config.proxy.examples <= 0) return proxy;
  std::vector<int32_t> order(static_cast<size_t>(train_size));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(config.run.seed ^ 0x50524F5859ULL);
  for (int i = 0; i < config.proxy.examples; ++i) {
    std::uniform_int_distribution<size_t> pick(static_cast<size_t>(i), order.size() - 1);
    std::swap(order[static_cast<size_t>(i)], order[pick(rng)]);
    proxy.push_back(order[static_cast<size_t>(i)]);
  }
  std::sort(proxy.begin(), proxy.end());
  return proxy;
}

// The clients' store indices: the natural partition, or the configured
// partitioner over the examples outside the proxy set.
absl::StatusOr<Partition> PartitionData(const SimulationConfig& config, TrainTest& data,
                                        const std::vector<int32_t>& proxy) {
  const int64_t train_size = data.train.num_examples();
  std::vector<uint8_t> is_proxy(static_cast<size_t>(train_size), 0);
  for (int32_t i : proxy) is_proxy[static_cast<size_t>(i)] = 1;
  Partition partition;
  if (config.partition.method == "natural") {
    if (data.natural_partition.empty()) {
      return absl::InvalidArgumentError("partition.method 'natural': the dataset has no devices");
    }
    partition = std::move(data.natural_partition);
    for (auto& device : partition) {
      std::erase_if(device, [&](int32_t i) { return is_proxy[static_cast<size_t>(i)] != 0; });
    }
    return partition;
  }
  PartitionOptions options = config.partition;
  options.seed = config.run.seed;
  // Partition the remaining examples, then map back to store indices.
  std::vector<int32_t> remaining;
  std::vector<int32_t> remaining_labels;
  for (int64_t i = 0; i < train_size; ++i) {
    if (is_proxy[static_cast<size_t>(i)]) continue;
    remaining.push_back(static_cast<int32_t>(i));
    remaining_labels.push_back(data.train.labels[static_cast<size_t>(i)]);
  }
  FEDGE_ASSIGN_OR_RETURN(partition,
                         PartitionExamples(remaining_labels, data.train.num_classes, options));
  if (!proxy.empty()) {
    for (auto& client : partition) {
      for (int32_t& i : client) i = remaining[static_cast<size_t>(i)];
    }
  }
  return partition;
}

absl::Status PrepareClients(Run& run, TrainTest data) {
  const SimulationConfig& config = run.config;
  const int64_t train_size = data.train.num_examples();
  if (config.proxy.examples >= train_size) {
    return absl::InvalidArgumentError(absl::StrCat("proxy.examples (", config.proxy.examples,
                                                   ") must be fewer than the ", train_size,
                                                   " training examples"));
  }
  if (data.test.num_examples() == 0) return absl::InvalidArgumentError("the test split is empty");
  std::vector<int32_t> proxy_indices = ProxyIndices(config, train_size);
  FEDGE_ASSIGN_OR_RETURN(Partition partition, PartitionData(config, data, proxy_indices));
  run.spec = config.model;
  run.spec.input_shape = data.train.example_shape;
  run.spec.num_classes = data.train.num_classes;
  FEDGE_RETURN_IF_ERROR(internal::PrepareDrift(config, partition, data, run.drift));
  run.example_shape = data.train.example_shape;
  FEDGE_ASSIGN_OR_RETURN(run.train, MakeExampleStore(std::move(data.train)));
  FEDGE_ASSIGN_OR_RETURN(run.test, MakeExampleStore(std::move(data.test)));
  if (!proxy_indices.empty()) {
    run.proxy = run.train->GatherFeatures(
        torch::from_blob(proxy_indices.data(), {static_cast<int64_t>(proxy_indices.size())},
                         torch::kInt32)
            .to(torch::kInt64));
    run.calibration = run.proxy.narrow(
        0, 0, std::min<int64_t>(run.proxy.size(0), config.proxy.calibration_examples));
  }
  run.result.proxy_indices = std::move(proxy_indices);

  client::DeviceClientOptions options;
  options.codec = config.codec;
  options.codec_options = config.codec_options;
  options.codec_options.seed = config.run.seed;
  options.error_feedback = UsesErrorFeedback(config);
  options.clip_norm = config.clip_norm;
  options.seeded_noise = config.privacy.random == "seeded";
  run.clients.reserve(partition.size());
  for (size_t i = 0; i < partition.size(); ++i) {
    if (partition[i].empty()) continue;  // a client without data never trains
    auto indices = std::make_shared<const std::vector<int32_t>>(std::move(partition[i]));
    run.clients.emplace_back(ClientId(i), client::LocalDataset{run.train, std::move(indices)},
                             options);
    run.ids.push_back(run.clients.back().id());
    run.partition_of.push_back(i);
    run.client_index.emplace(run.ids.back(), run.clients.size() - 1);
    run.result.client_examples += run.clients.back().data().size();
  }
  run.per_round = ClientsPerRound(config);
  if (static_cast<size_t>(run.per_round) > run.ids.size()) {
    return absl::FailedPreconditionError(absl::StrCat("only ", run.ids.size(),
                                                      " clients received examples, fewer than the ",
                                                      run.per_round, " sampled per round"));
  }
  return absl::OkStatus();
}

// The initial model, the workers' replicas, the coordinator, the monitors.
absl::Status StartModels(Run& run) {
  const SimulationConfig& config = run.config;
  run.workers = config.run.threads > 0
                    ? config.run.threads
                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  models::SetComputeThreads(config.run.intra_op_threads);
  FEDGE_ASSIGN_OR_RETURN(auto initial, models::ModelInstance::Create(run.spec, config.run.seed));
  for (int w = 0; w < run.workers; ++w) {
    FEDGE_ASSIGN_OR_RETURN(auto replica, models::ModelInstance::Create(run.spec, config.run.seed));
    run.replicas.push_back(std::move(replica));
  }
  const int intra_op = config.run.intra_op_threads;
  run.pool = std::make_unique<WorkerPool>(run.workers,
                                          [intra_op](int) { models::SetComputeThreads(intra_op); });

  internal::FederationInputs inputs;
  inputs.config = &config;
  inputs.spec = run.spec;
  inputs.layout = initial->parameters().layout();
  inputs.initial = initial->parameters().values();
  inputs.clients = run.clients.size();
  inputs.clients_per_round = run.per_round;
  for (const client::DeviceClient& device : run.clients) {
    inputs.max_client_examples =
        std::max<uint64_t>(inputs.max_client_examples, static_cast<uint64_t>(device.data().size()));
  }
  FEDGE_ASSIGN_OR_RETURN(const models::ArtifactEncoding encoding, ArtifactEncodingFor(config));
  if (encoding.precision != models::ArtifactEncoding::Precision::kFp32 &&
      run.calibration.defined()) {
    // int8 versions carry activation ranges for devices that run them in
    // int8, calibrated on the proxy set with the weights as devices decode them.
    FEDGE_ASSIGN_OR_RETURN(run.calibration_model,
                           models::ModelInstance::Create(run.spec, config.run.seed));
    inputs.annotate = [&run](std::span<const float>, v1::ModelArtifact& artifact) {
      return internal::AddActivationRanges(*run.calibration_model, run.calibration, artifact);
    };
  }
  FEDGE_ASSIGN_OR_RETURN(run.federation, internal::StartFederation(inputs, run.ids));
  run.runner_options.log_events = false;
  run.runner_options.keep_model = false;
  run.runner_options.pinned_key = run.federation->key->public_key();
  run.runners.resize(run.clients.size());  // each made when its device is first selected
  if (config.monitor.enabled) {
    FEDGE_RETURN_IF_ERROR(internal::CreateMonitors(config, run.ids, run.partition_of, *run.train,
                                                   run.example_shape, run.drift));
  }
  run.result.summary.experiment = config.run.name;
  run.result.summary.num_parameters = run.federation->coordinator->registry().num_parameters();
  run.result.summary.config = DescribeConfig(config);
  run.result.summary.privacy_mode = config.privacy.mode;
  if (config.privacy.mode != "none") run.result.summary.delta = config.privacy.delta;
  return absl::OkStatus();
}

// Device k's runner, made when the device is first selected (a cohort's
// devices are distinct, so no two workers make the same one).
client::DeviceRunner& RunnerOf(Run& run, size_t k) {
  std::unique_ptr<client::DeviceRunner>& runner = run.runners[k];
  if (runner == nullptr) {
    runner = std::make_unique<client::DeviceRunner>(run.federation->transport.get(),
                                                    /*pending=*/nullptr, &run.clients[k],
                                                    /*model=*/nullptr, &run.trainer,
                                                    run.runner_options);
  }
  return *runner;
}

// Secure aggregation after the task step (which trained, masked and
// advertised keys): phases 2-4 in lockstep, every device still in stepping
// its runner once; a phase some device did not answer closes when the
// simulation moves the clock past its deadline. A device that drops at phase
// 1 never ran its task. Fills the reports of the devices that finished.
void RunSecurePhases(Run& run, const aggregator::RoundOpened& opened,
                     const std::vector<int>& drop_at,
                     std::vector<absl::StatusOr<client::StepResult>>& steps) {
  const std::vector<std::string>& cohort = opened.cohort;
  aggregator::RoundCoordinator& coordinator = *run.federation->coordinator;
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::max(coordinator.options().deadline, coordinator.options().secagg_phase_timeout) +
      std::chrono::milliseconds(1));
  for (int phase = 1; phase <= 4 && !run.federation->watcher.ended(); ++phase) {
    if (phase > 1) {
      run.pool->ParallelFor(static_cast<int64_t>(cohort.size()), [&](int64_t task, int worker) {
        const size_t k = run.client_index.at(cohort[task]);
        if (drop_at[static_cast<size_t>(task)] <= phase || !run.clients[k].secagg_pending()) return;
        steps[task] = RunnerOf(run, k).RunOnce(*run.replicas[worker]);
      });
    }
    const aggregator::CoordinatorRoundStatus status = coordinator.round_status();
    if (status.open && status.round == opened.round && status.secagg_phase == phase) {
      run.federation->clock.Advance(wait);
      coordinator.Tick();  // the phase's deadline passed: it closes with who answered
    }
  }
  // Devices that dropped out still hold their session: the ended round's
  // protocol tells them so at their next step.
  run.pool->ParallelFor(static_cast<int64_t>(cohort.size()), [&](int64_t task, int worker) {
    const size_t k = run.client_index.at(cohort[task]);
    if (run.clients[k].secagg_pending()) (void)RunnerOf(run, k).RunOnce(*run.replicas[worker]);
  });
}

// Opens the coordinator's next round (a Poisson draw may select nobody: the
// next round id draws again). nullopt when the coordinator opens no more.
absl::StatusOr<std::optional<aggregator::RoundOpened>> OpenRound(Run& run) {
  aggregator::RoundCoordinator& coordinator = *run.federation->coordinator;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    coordinator.Tick();
    FEDGE_RETURN_IF_ERROR(coordinator.fatal());
    if (std::optional<aggregator::RoundOpened> opened = run.federation->watcher.TakeOpened()) {
      return opened;
    }
    if (coordinator.finished()) return std::nullopt;
  }
  return absl::FailedPreconditionError(
      "1000 rounds in a row drew no client; raise round.clients_per_round or use more clients");
}

// One coordinator round: open it, run the cohort's tasks on the workers
// through the in-process transport (the last update closes it), drive
// secure aggregation, and add what it did to `record`.
absl::StatusOr<std::optional<aggregator::RoundOpened>> RunCoordinatedRound(Run& run,
                                                                           RoundRecord& record) {
  FEDGE_ASSIGN_OR_RETURN(std::optional<aggregator::RoundOpened> opened, OpenRound(run));
  if (!opened.has_value()) return opened;
  const std::vector<std::string>& cohort = opened->cohort;
  const bool secure = run.config.secure_aggregation.protocol != "none";
  const std::vector<int> drop_at =
      secure ? SecAggDropPhases(run.config, opened->round, cohort.size())
             : std::vector<int>(cohort.size(), 5);
  std::vector<absl::StatusOr<client::StepResult>> steps(cohort.size(),
                                                        absl::UnknownError("not run"));
  run.pool->ParallelFor(static_cast<int64_t>(cohort.size()), [&](int64_t task, int worker) {
    if (drop_at[static_cast<size_t>(task)] <= 1) return;  // gone before its task
    steps[task] = RunnerOf(run, run.client_index.at(cohort[task])).RunOnce(*run.replicas[worker]);
  });
  for (size_t i = 0; i < steps.size(); ++i) {
    if (drop_at[i] <= 1) continue;
    absl::Status failed = steps[i].status();
    if (failed.ok() && steps[i]->kind != client::StepResult::Kind::kTaskDone &&
        steps[i]->kind != client::StepResult::Kind::kSecAggWaiting) {
      failed = absl::InternalError("the device found no task in its round");
    }
    if (!failed.ok()) {
      return absl::Status(failed.code(), absl::StrCat("round ", opened->round, ", ", cohort[i],
                                                      ": ", failed.message()));
    }
  }
  if (secure) RunSecurePhases(run, *opened, drop_at, steps);
  FEDGE_RETURN_IF_ERROR(run.federation->coordinator->fatal());
  std::optional<aggregator::RoundEnded> ended = run.federation->watcher.TakeEnded();
  if (!ended.has_value()) {
    return absl::InternalError(absl::StrCat("round ", opened->round, " did not close"));
  }
  // What the devices that finished their task sent and received (a device
  // that dropped out of secure aggregation reports nothing).
  for (const absl::StatusOr<client::StepResult>& step : steps) {
    if (!step.ok() || !step->report.has_value()) continue;
    record.bytes_up += step->report->bytes_up;
    record.bytes_down += step->report->bytes_down;
  }
  if (ended->failed) {
    if (!secure) {
      return absl::InternalError(
          absl::StrCat("round ", opened->round, " published nothing: ", ended->reason));
    }
    record.secagg_aborted = true;  // publishes nothing
    record.secagg_abort_reason = ended->reason;
    // Nothing was released: ε stays what the rounds before spent.
    if (run.config.privacy.mode != "none") {
      record.epsilon = run.federation->coordinator->epsilon_spent();
    }
    return opened;
  }
  // Devices whose masked input is not in the sum.
  const int dropped = static_cast<int>(
      std::count_if(drop_at.begin(), drop_at.end(), [](int at) { return at <= 3; }));
  const aggregator::RoundOutcome& outcome = ended->outcome;
  record.participants += outcome.participants;
  record.train_loss = outcome.train_loss;
  record.sparsity = outcome.sparsity;
  record.artifact_bytes = outcome.artifact_bytes;
  if (secure) record.secagg_dropped += dropped;
  if (outcome.privacy.has_value()) {
    record.epsilon = outcome.privacy->epsilon;
    record.clip_norm = outcome.privacy->clip_norm;
  } else {
    record.clip_norm = run.config.clip_norm;
  }
  return opened;
}

// Accuracy and loss of `parameters` on a whole store, in parallel.
absl::StatusOr<client::EvalMetrics> Evaluate(Run& run, const client::ExampleStore& store,
                                             const std::vector<float>& parameters) {
  const int64_t size = store.size();
  const int64_t shards = std::min<int64_t>(run.workers, size);
  std::vector<absl::StatusOr<client::EvalMetrics>> parts(shards, absl::UnknownError("not run"));
  run.pool->ParallelFor(shards, [&](int64_t shard, int worker) {
    models::ModelInstance& model = *run.replicas[worker];
    if (absl::Status s = model.parameters().CopyFrom(parameters); !s.ok()) {
      parts[shard] = s;
      return;
    }
    const int64_t begin = size * shard / shards;
    const int64_t end = size * (shard + 1) / shards;
    parts[shard] = client::Evaluate(model, store, begin, end, run.config.eval.batch_size);
  });
  client::EvalMetrics total;
  for (const auto& part : parts) {
    if (!part.ok()) return part.status();
    total.loss += part->loss * static_cast<double>(part->examples);
    total.accuracy += part->accuracy * static_cast<double>(part->examples);
  }
  total.examples = size;
  total.loss /= static_cast<double>(size);
  total.accuracy /= static_cast<double>(size);
  return total;
}

// After regular round `r`: the test figures of the newest version, the
// devices' drift monitoring, and the drift policy over their reports.
absl::Status AfterRound(Run& run, int r, RoundRecord& record, DriftRoundRecord& drift_record) {
  const SimulationConfig& config = run.config;
  aggregator::RoundCoordinator& coordinator = *run.federation->coordinator;
  FEDGE_ASSIGN_OR_RETURN(auto latest, coordinator.registry().Latest());
  const bool evaluate_now =
      (r % config.eval.every == 0) || r == config.round.rounds || config.drift.type != "none";
  if (evaluate_now) {
    FEDGE_ASSIGN_OR_RETURN(client::EvalMetrics clean, Evaluate(run, *run.test, latest->parameters));
    record.test_loss = clean.loss;
    record.test_accuracy = clean.accuracy;
    if (run.drift.drifted_test != nullptr) {
      FEDGE_ASSIGN_OR_RETURN(client::EvalMetrics drifted,
                             Evaluate(run, *run.drift.drifted_test, latest->parameters));
      drift_record.drifted_accuracy = drifted.accuracy;
    }
  } else if (!run.result.rounds.empty()) {
    record.test_loss = run.result.rounds.back().test_loss;
    record.test_accuracy = run.result.rounds.back().test_accuracy;
  }
  drift_record.clean_accuracy = record.test_accuracy;
  if (!config.monitor.enabled) return absl::OkStatus();
  internal::MonitorRound monitor{.config = &config,
                                 .train = run.train,
                                 .clients = &run.clients,
                                 .partition_of = &run.partition_of,
                                 .replicas = &run.replicas,
                                 .pool = run.pool.get(),
                                 .transport = run.federation->transport.get(),
                                 .trainer = &run.trainer};
  FEDGE_ASSIGN_OR_RETURN(drift_record.reports,
                         internal::MonitorClients(monitor, r, latest->version, latest->parameters,
                                                  run.drift));
  // Every report is in: the policy need not wait for the next round to open.
  if (std::optional<aggregator::DriftPolicyDecision> decision = coordinator.EvaluateDrift()) {
    drift_record.reporting_share = decision->share;
    drift_record.alert = decision->alert;
  }
  return absl::OkStatus();
}

absl::Status RunRounds(Run& run, const RoundCallback& on_round) {
  const SimulationConfig& config = run.config;
  DriftRunSummary drift_summary;
  double last_share = 0.0;
  for (int r = 1; r <= config.round.rounds; ++r) {
    const Clock::time_point round_start = Clock::now();
    // Drifted clients' data moves when the drifted share changes.
    const double share = DriftedShare(config.drift, r);
    if (run.drift.active && share != last_share) {
      for (size_t k = 0; k < run.clients.size(); ++k) {
        const internal::ClientDrift& c = run.drift.clients[run.partition_of[k]];
        if (!c.drifted) continue;
        auto indices = std::make_shared<const std::vector<int32_t>>(
            internal::CurrentIndices(run.drift, c, share));
        run.clients[k].SetData(client::LocalDataset{run.train, std::move(indices)});
      }
      last_share = share;
    }
    RoundRecord record;
    record.round = r;
    DriftRoundRecord drift_record;
    drift_record.round = r;
    // The drift policy's extra rounds come first; then the regular round.
    bool stopped = false;
    for (;;) {
      FEDGE_ASSIGN_OR_RETURN(std::optional<aggregator::RoundOpened> opened,
                             RunCoordinatedRound(run, record));
      if (!opened.has_value()) {
        // A round the privacy budget refuses ends the run (after at least
        // one round; a budget too small for any round is an error).
        const std::string why = run.federation->coordinator->stop_reason();
        if (run.result.rounds.empty()) {
          return absl::ResourceExhaustedError(why.empty() ? "no round could open" : why);
        }
        run.result.summary.stop_reason = why;
        stopped = true;
        break;
      }
      if (!opened->drift_extra) break;
      drift_record.extra_round = true;
      ++drift_summary.extra_rounds;
    }
    if (stopped) break;
    FEDGE_RETURN_IF_ERROR(AfterRound(run, r, record, drift_record));
    if (run.drift.active) drift_summary.rounds.push_back(drift_record);
    record.wall_seconds = Seconds(round_start);
    record.elapsed_seconds = Seconds(run.start);
    run.result.rounds.push_back(record);
    if (on_round) on_round(record);
  }
  if (run.drift.active) {
    internal::FinishDriftSummary(config, run.drift, run.partition_of, drift_summary);
    FEDGE_ASSIGN_OR_RETURN(std::vector<v1::DriftReport> reports,
                           run.federation->store.DriftReports());
    for (const v1::DriftReport& report : reports) {
      ++drift_summary.reports_by_version[report.model_version()];
    }
    run.result.drift = std::move(drift_summary);
  }
  return absl::OkStatus();
}

absl::Status Finish(Run& run) {
  const SimulationConfig& config = run.config;
  SimulationResult& result = run.result;
  RunSummary& summary = result.summary;
  SummarizeRounds(result.rounds, summary);
  summary.wall_seconds = Seconds(run.start);
  summary.peak_rss_mb = PeakRssMb();
  FEDGE_ASSIGN_OR_RETURN(auto final_version, run.federation->coordinator->registry().Latest());
  result.final_parameters = final_version->parameters;
  result.final_artifact = final_version->artifact;
  summary.artifact_bytes = final_version->artifact_bytes;
  summary.fp32_artifact_bytes = final_version->fp32_artifact_bytes;
  summary.sparsity = result.rounds.back().sparsity;
  if (config.eval.int8) {
    FEDGE_ASSIGN_OR_RETURN(summary.device_model,
                           internal::EvaluateDeviceModel(*final_version->artifact, run.calibration,
                                                         *run.test, config));
  }
  if (config.distill.student != "none") {
    models::ModelInstance& teacher = *run.replicas[0];
    FEDGE_RETURN_IF_ERROR(teacher.parameters().CopyFrom(final_version->parameters));
    FEDGE_ASSIGN_OR_RETURN(const models::ArtifactEncoding encoding, ArtifactEncodingFor(config));
    FEDGE_ASSIGN_OR_RETURN(internal::DistilledStudent student,
                           internal::DistillStudent(teacher, run.proxy, run.calibration, *run.test,
                                                    config, final_version->version, encoding));
    summary.student = student.summary;
    result.student_artifact = std::move(student.artifact);
  }
  return absl::OkStatus();
}

}  // namespace

double PeakRssMb() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

absl::StatusOr<TrainTest> LoadData(const SimulationConfig& config) {
  if (config.data.dataset == "synthetic") {
    SyntheticOptions options = config.data.synthetic;
    options.seed = config.run.seed;
    return MakeSyntheticDataset(options);
  }
  return ReadIdxDataset(config.data.dir, config.data.dataset);
}

absl::StatusOr<SimulationResult> RunSimulation(const SimulationConfig& config, TrainTest data,
                                               const RoundCallback& on_round) {
  FEDGE_RETURN_IF_ERROR(ValidateConfig(config));
  Run run(config);
  FEDGE_RETURN_IF_ERROR(PrepareClients(run, std::move(data)));
  FEDGE_RETURN_IF_ERROR(StartModels(run));
  FEDGE_RETURN_IF_ERROR(RunRounds(run, on_round));
  FEDGE_RETURN_IF_ERROR(Finish(run));
  return std::move(run.result);
}

}  // namespace fedge::simulations
