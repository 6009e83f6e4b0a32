#include "fedge/simulations/simulation.h"

#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "fedge/aggregator/model_registry.h"
#include "fedge/aggregator/round_manager.h"
#include "fedge/client/device_client.h"
#include "fedge/client/trainer.h"
#include "fedge/models/artifact.h"
#include "fedge/models/distillation.h"
#include "fedge/models/inference.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/quantization.h"
#include "fedge/proto/status_macros.h"
#include "fedge/simulations/inproc_transport.h"
#include "fedge/simulations/worker_pool.h"

namespace fedge::simulations {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::string ClientId(size_t i) { return absl::StrCat("client-", i); }

// Calibrates `artifact`'s activation ranges on `sample`, running `scratch`
// (same architecture) with the artifact's weights as a device decodes them.
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

// `published` (the version as devices download it) through the fp32 engine
// and, with eval.int8, its int8 form (the same tensors quantized per channel,
// sparsity kept, activations calibrated on `calibration`) through the int8
// engine; batch-1 latencies of the two engines measured alternately.
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

}  // namespace

absl::StatusOr<std::shared_ptr<const client::ExampleStore>> MakeExampleStore(Dataset dataset) {
  std::vector<int64_t> shape = {dataset.num_examples()};
  shape.insert(shape.end(), dataset.example_shape.begin(), dataset.example_shape.end());
  torch::Tensor features;
  if (!dataset.pixels.empty()) {
    auto* owned = new std::vector<uint8_t>(std::move(dataset.pixels));
    features = torch::from_blob(
        owned->data(), shape, [owned](void*) { delete owned; }, torch::kUInt8);
  } else {
    auto* owned = new std::vector<float>(std::move(dataset.values));
    features = torch::from_blob(
        owned->data(), shape, [owned](void*) { delete owned; }, torch::kFloat32);
  }
  torch::Tensor labels =
      torch::from_blob(dataset.labels.data(), {dataset.num_examples()}, torch::kInt32)
          .to(torch::kInt64);
  return client::ExampleStore::Create(std::move(features), std::move(labels), dataset.num_classes,
                                      dataset.mean, dataset.stddev);
}

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
  const Clock::time_point run_start = Clock::now();

  // --- data and clients --------------------------------------------------------
  // The aggregator's proxy set: a seeded sample of the training examples
  // that no client gets.
  const int64_t train_size = data.train.num_examples();
  if (config.proxy.examples >= train_size) {
    return absl::InvalidArgumentError(absl::StrCat("proxy.examples (", config.proxy.examples,
                                                   ") must be fewer than the ", train_size,
                                                   " training examples"));
  }
  std::vector<int32_t> proxy_indices;
  std::vector<uint8_t> is_proxy(static_cast<size_t>(train_size), 0);
  if (config.proxy.examples > 0) {
    std::vector<int32_t> order(static_cast<size_t>(train_size));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(config.run.seed ^ 0x50524F5859ULL);
    for (int i = 0; i < config.proxy.examples; ++i) {
      std::uniform_int_distribution<size_t> pick(static_cast<size_t>(i), order.size() - 1);
      std::swap(order[static_cast<size_t>(i)], order[pick(rng)]);
      proxy_indices.push_back(order[static_cast<size_t>(i)]);
      is_proxy[static_cast<size_t>(order[static_cast<size_t>(i)])] = 1;
    }
    std::sort(proxy_indices.begin(), proxy_indices.end());
  }

  Partition partition;
  if (config.partition.method == "natural") {
    if (data.natural_partition.empty()) {
      return absl::InvalidArgumentError("partition.method 'natural': the dataset has no devices");
    }
    partition = std::move(data.natural_partition);
    for (auto& device : partition) {
      std::erase_if(device, [&](int32_t i) { return is_proxy[static_cast<size_t>(i)] != 0; });
    }
  } else {
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
    if (!proxy_indices.empty()) {
      for (auto& client : partition) {
        for (int32_t& i : client) i = remaining[static_cast<size_t>(i)];
      }
    }
  }
  models::ModelSpec spec = config.model;
  spec.input_shape = data.train.example_shape;
  spec.num_classes = data.train.num_classes;
  const int64_t test_size = data.test.num_examples();
  if (test_size == 0) return absl::InvalidArgumentError("the test split is empty");

  FEDGE_ASSIGN_OR_RETURN(auto train_store, MakeExampleStore(std::move(data.train)));
  FEDGE_ASSIGN_OR_RETURN(auto test_store, MakeExampleStore(std::move(data.test)));
  // Features only: the aggregator's proxy set is unlabeled.
  torch::Tensor proxy;
  if (!proxy_indices.empty()) {
    proxy = train_store->GatherFeatures(
        torch::from_blob(proxy_indices.data(), {static_cast<int64_t>(proxy_indices.size())},
                         torch::kInt32)
            .to(torch::kInt64));
  }
  const torch::Tensor calibration =
      proxy.defined()
          ? proxy.narrow(0, 0, std::min<int64_t>(proxy.size(0), config.proxy.calibration_examples))
          : torch::Tensor();

  client::DeviceClientOptions client_options;
  client_options.codec = config.codec;
  client_options.codec_options = config.codec_options;
  client_options.codec_options.seed = config.run.seed;
  client_options.error_feedback = UsesErrorFeedback(config);
  client_options.clip_norm = config.clip_norm;
  client_options.seeded_noise = config.privacy.random == "seeded";
  std::vector<client::DeviceClient> clients;
  std::vector<std::string> candidates;
  clients.reserve(partition.size());
  for (size_t i = 0; i < partition.size(); ++i) {
    if (partition[i].empty()) continue;  // a client without data never trains
    auto indices = std::make_shared<const std::vector<int32_t>>(std::move(partition[i]));
    clients.emplace_back(ClientId(i), client::LocalDataset{train_store, std::move(indices)},
                         client_options);
    candidates.push_back(clients.back().id());
  }
  partition.clear();
  int64_t client_examples = 0;
  for (const auto& device : clients) client_examples += device.data().size();
  const int per_round = ClientsPerRound(config);
  if (static_cast<size_t>(per_round) > candidates.size()) {
    return absl::FailedPreconditionError(absl::StrCat("only ", candidates.size(),
                                                      " clients received examples, fewer than the ",
                                                      per_round, " sampled per round"));
  }
  std::unordered_map<std::string, size_t> client_index;
  for (size_t i = 0; i < clients.size(); ++i) client_index.emplace(clients[i].id(), i);

  // --- models: the global one, and one replica per worker -----------------------
  const int workers = config.run.threads > 0
                          ? config.run.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  models::SetComputeThreads(config.run.intra_op_threads);
  FEDGE_ASSIGN_OR_RETURN(auto initial, models::ModelInstance::Create(spec, config.run.seed));
  std::vector<std::unique_ptr<models::ModelInstance>> replicas;
  for (int w = 0; w < workers; ++w) {
    FEDGE_ASSIGN_OR_RETURN(auto replica, models::ModelInstance::Create(spec, config.run.seed));
    replicas.push_back(std::move(replica));
  }

  // Only the version being trained and the newest are needed in memory.
  aggregator::ModelRegistryOptions registry_options;
  registry_options.keep_latest = 2;
  FEDGE_ASSIGN_OR_RETURN(registry_options.encoding, ArtifactEncodingFor(config));
  // int8 versions carry activation ranges for devices that run them in int8,
  // calibrated on the proxy set with the weights as devices decode them.
  std::unique_ptr<models::ModelInstance> calibration_model;
  if (registry_options.encoding.precision != models::ArtifactEncoding::Precision::kFp32 &&
      calibration.defined()) {
    FEDGE_ASSIGN_OR_RETURN(calibration_model, models::ModelInstance::Create(spec, config.run.seed));
    registry_options.annotate = [&calibration_model, &calibration](std::span<const float>,
                                                                   v1::ModelArtifact& artifact) {
      return AddActivationRanges(*calibration_model, calibration, artifact);
    };
  }
  aggregator::ModelRegistry registry(spec, initial->parameters().layout(), registry_options);
  FEDGE_RETURN_IF_ERROR(registry.Publish(initial->parameters().values(), 0).status());
  initial.reset();
  FEDGE_ASSIGN_OR_RETURN(auto strategy,
                         aggregator::CreateStrategy(config.strategy, config.strategy_options));
  aggregator::RoundManagerOptions round_options;
  round_options.codec = config.codec;
  round_options.pruning = PruningOptionsFor(config);
  std::unique_ptr<aggregator::PrivateAggregation> private_aggregation;
  if (config.privacy.mode != "none") {
    FEDGE_ASSIGN_OR_RETURN(
        auto options, PrivateAggregationOptionsFor(config, static_cast<int>(candidates.size())));
    FEDGE_ASSIGN_OR_RETURN(private_aggregation,
                           aggregator::PrivateAggregation::Create(
                               options, static_cast<size_t>(registry.num_parameters())));
  }
  const double sampling_rate =
      std::min(1.0, static_cast<double>(per_round) / static_cast<double>(candidates.size()));
  FEDGE_ASSIGN_OR_RETURN(
      auto rounds, aggregator::RoundManager::Create(std::move(strategy), &registry, round_options,
                                                    std::move(private_aggregation)));
  InProcTransport transport(rounds.get(), &registry);
  client::Trainer trainer;

  const int intra_op = config.run.intra_op_threads;
  WorkerPool pool(workers, [intra_op](int) { models::SetComputeThreads(intra_op); });

  SimulationResult result;
  result.client_examples = client_examples;
  result.proxy_indices = proxy_indices;
  result.summary.experiment = config.run.name;
  result.summary.num_parameters = registry.num_parameters();
  result.summary.config = DescribeConfig(config);
  result.summary.privacy_mode = config.privacy.mode;
  if (config.privacy.mode != "none") result.summary.delta = config.privacy.delta;

  for (int r = 1; r <= config.round.rounds; ++r) {
    const Clock::time_point round_start = Clock::now();
    std::vector<std::string> cohort;
    if (UsesPoissonSampling(config)) {
      FEDGE_ASSIGN_OR_RETURN(cohort, aggregator::RoundManager::SelectPoissonCohort(
                                         candidates, sampling_rate, config.run.seed, r));
      if (cohort.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("round ", r, ": Poisson sampling with rate ", sampling_rate,
                         " drew no client; raise round.clients_per_round or use more clients"));
      }
    } else {
      FEDGE_ASSIGN_OR_RETURN(cohort, aggregator::RoundManager::SelectCohort(candidates, per_round,
                                                                            config.run.seed, r));
    }
    v1::TrainConfig train = config.train;
    train.set_seed(config.run.seed * 1'000'003ULL + static_cast<uint64_t>(r));
    train.set_learning_rate(
        static_cast<float>(config.train.learning_rate() * std::pow(config.lr_decay, r - 1)));
    if (absl::Status opened = rounds->OpenRound(r, cohort, train); !opened.ok()) {
      if (absl::IsResourceExhausted(opened) && !result.rounds.empty()) {
        // The privacy budget allows no further round: the run ends here.
        result.summary.stop_reason = std::string(opened.message());
        break;
      }
      return opened;
    }

    std::vector<absl::StatusOr<client::TaskReport>> reports(cohort.size(),
                                                            absl::UnknownError("not run"));
    pool.ParallelFor(static_cast<int64_t>(cohort.size()), [&](int64_t task, int worker) {
      client::DeviceClient& device = clients[client_index.at(cohort[task])];
      reports[task] = device.RunTask(transport, *replicas[worker], trainer);
    });
    for (size_t i = 0; i < reports.size(); ++i) {
      if (!reports[i].ok()) {
        (void)rounds->CloseRound();
        return absl::Status(
            reports[i].status().code(),
            absl::StrCat("round ", r, ", ", cohort[i], ": ", reports[i].status().message()));
      }
    }
    FEDGE_ASSIGN_OR_RETURN(aggregator::RoundOutcome outcome, rounds->CloseRound());

    RoundRecord record;
    record.round = r;
    record.participants = outcome.participants;
    record.train_loss = outcome.train_loss;
    record.sparsity = outcome.sparsity;
    record.artifact_bytes = outcome.artifact_bytes;
    if (outcome.privacy.has_value()) {
      record.epsilon = outcome.privacy->epsilon;
      record.clip_norm = outcome.privacy->clip_norm;
    } else {
      record.clip_norm = config.clip_norm;
    }
    for (const auto& report : reports) {
      record.bytes_up += report->bytes_up;
      record.bytes_down += report->bytes_down;
    }

    const bool evaluate = (r % config.eval.every == 0) || r == config.round.rounds;
    if (evaluate) {
      FEDGE_ASSIGN_OR_RETURN(auto version, registry.Get(outcome.new_version));
      const int64_t shards = std::min<int64_t>(workers, test_size);
      std::vector<absl::StatusOr<client::EvalMetrics>> parts(shards, absl::UnknownError("not run"));
      pool.ParallelFor(shards, [&](int64_t shard, int worker) {
        models::ModelInstance& model = *replicas[worker];
        if (absl::Status s = model.parameters().CopyFrom(version->parameters); !s.ok()) {
          parts[shard] = s;
          return;
        }
        const int64_t begin = test_size * shard / shards;
        const int64_t end = test_size * (shard + 1) / shards;
        parts[shard] = client::Evaluate(model, *test_store, begin, end, config.eval.batch_size);
      });
      double loss = 0.0, correct = 0.0;
      for (const auto& part : parts) {
        if (!part.ok()) return part.status();
        loss += part->loss * static_cast<double>(part->examples);
        correct += part->accuracy * static_cast<double>(part->examples);
      }
      record.test_loss = loss / static_cast<double>(test_size);
      record.test_accuracy = correct / static_cast<double>(test_size);
    } else if (!result.rounds.empty()) {
      record.test_loss = result.rounds.back().test_loss;
      record.test_accuracy = result.rounds.back().test_accuracy;
    }
    record.wall_seconds = Seconds(round_start);
    record.elapsed_seconds = Seconds(run_start);
    result.rounds.push_back(record);
    if (on_round) on_round(record);
  }

  RunSummary& summary = result.summary;
  summary.rounds = static_cast<int>(result.rounds.size());
  summary.final_accuracy = result.rounds.back().test_accuracy;
  summary.final_loss = result.rounds.back().test_loss;
  summary.epsilon = result.rounds.back().epsilon;
  for (const RoundRecord& record : result.rounds) {
    summary.best_accuracy = std::max(summary.best_accuracy, record.test_accuracy);
    summary.bytes_up += record.bytes_up;
    summary.bytes_down += record.bytes_down;
  }
  summary.wall_seconds = Seconds(run_start);
  summary.peak_rss_mb = PeakRssMb();
  FEDGE_ASSIGN_OR_RETURN(auto final_version, registry.Latest());
  result.final_parameters = final_version->parameters;
  result.final_artifact = final_version->artifact;
  summary.artifact_bytes = final_version->artifact_bytes;
  summary.fp32_artifact_bytes = final_version->fp32_artifact_bytes;
  summary.sparsity = result.rounds.back().sparsity;
  if (config.eval.int8) {
    FEDGE_ASSIGN_OR_RETURN(
        summary.device_model,
        EvaluateDeviceModel(*final_version->artifact, calibration, *test_store, config));
  }
  if (config.distill.student != "none") {
    // The aggregator distills the global model into the student on its
    // unlabeled proxy set and publishes the student as the device model.
    models::ModelInstance& teacher = *replicas[0];
    FEDGE_RETURN_IF_ERROR(teacher.parameters().CopyFrom(final_version->parameters));
    models::ModelSpec student_spec = spec;
    student_spec.architecture = config.distill.student;
    FEDGE_ASSIGN_OR_RETURN(auto student,
                           models::ModelInstance::Create(student_spec, config.run.seed));
    models::DistillationOptions options;
    options.temperature = config.distill.temperature;
    options.epochs = config.distill.epochs;
    options.batch_size = config.distill.batch_size;
    options.learning_rate = config.distill.learning_rate;
    options.seed = config.run.seed;
    FEDGE_RETURN_IF_ERROR(models::Distill(teacher.network(), *student, proxy, options).status());
    models::ArtifactOptions artifact_options;
    artifact_options.version = final_version->version;
    artifact_options.parent_version = final_version->version;
    models::ArtifactEncoding encoding = registry_options.encoding;
    encoding.sparse = false;  // the student is dense
    FEDGE_ASSIGN_OR_RETURN(
        v1::ModelArtifact artifact,
        models::BuildArtifact(student_spec, student->parameters().layout(),
                              student->parameters().values(), artifact_options, encoding));
    if (encoding.precision != models::ArtifactEncoding::Precision::kFp32) {
      FEDGE_RETURN_IF_ERROR(AddActivationRanges(*student, calibration, artifact));
    }
    FEDGE_ASSIGN_OR_RETURN(summary.student,
                           EvaluateDeviceModel(artifact, calibration, *test_store, config));
    result.student_artifact = std::make_shared<const v1::ModelArtifact>(std::move(artifact));
  }
  return result;
}

}  // namespace fedge::simulations
