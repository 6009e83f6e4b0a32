#include "fedge/simulations/simulation.h"

#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "fedge/aggregator/drift_tracker.h"
#include "fedge/aggregator/model_registry.h"
#include "fedge/aggregator/round_manager.h"
#include "fedge/client/dataset_store.h"
#include "fedge/client/device_client.h"
#include "fedge/client/drift_monitor.h"
#include "fedge/client/trainer.h"
#include "fedge/data/partition.h"
#include "fedge/models/artifact.h"
#include "fedge/models/distillation.h"
#include "fedge/models/inference.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/quantization.h"
#include "fedge/proto/status_macros.h"
#include "fedge/simulations/drift_scenario.h"
#include "fedge/simulations/inproc_transport.h"
#include "fedge/simulations/worker_pool.h"

namespace fedge::simulations {

using client::MakeExampleStore;
using data::Dataset;
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

// --- drift ----------------------------------------------------------------------
//
// With drift or monitoring on, the train store holds the clean split followed
// by its drifted copy (indices n..2n-1), so a drifted client's data moves by
// re-pointing its indices. What a client's model sees at inference (its
// stream) is fresh data from the client's own distribution: examples of the
// whole train split drawn with the client's class mix (the label-shifted mix
// once a label-shift drift has started), moved to the drifted copy like the
// client's own data. With a natural partition (devices that differ in their
// inputs, not only in their labels) the stream resamples the client's own
// examples instead. Reference windows come from the client's own examples.

struct ClientDrift {
  std::vector<int32_t> train;         // clean indices
  std::vector<double> class_weights;  // the client's class mix
  std::vector<int32_t> shifted;       // label-shift: replacements of train, by position
  bool drifted = false;
  std::vector<int32_t> reference;  // reference window (store indices)
  std::unique_ptr<client::DriftMonitor> monitor;
  uint64_t samples_at_injection = 0;
  struct Alarm {
    std::string key;
    int round;
    uint64_t samples;
  };
  std::vector<Alarm> alarms;
  // Stream accuracy of the global model and of the fine-tuned one, per fine-tune.
  std::vector<std::pair<double, double>> fine_tunes;
};

struct DriftSetup {
  bool active = false;  // drift injected or monitoring on
  bool label_shift = false;
  // Streams resample the client's own examples instead of its class mix
  // (natural partitions, whose devices differ in their inputs too).
  bool own_stream = false;
  int64_t clean_size = 0;  // n: size of the clean half
  uint64_t seed = 0;
  std::vector<ClientDrift> clients;
  std::shared_ptr<const client::ExampleStore> drifted_test;
  std::vector<std::vector<int32_t>> by_class;  // clean train indices of each class
  int features = 0;
};

std::vector<int32_t> CurrentIndices(const DriftSetup& setup, const ClientDrift& c, double share) {
  std::vector<int32_t> out(c.train.size());
  for (size_t k = 0; k < c.train.size(); ++k) {
    out[k] = c.train[k];
    if (c.drifted && share > 0.0 && ExampleDrifted(c.train[k], share, setup.seed)) {
      out[k] =
          setup.label_shift ? c.shifted[k] : c.train[k] + static_cast<int32_t>(setup.clean_size);
    }
  }
  return out;
}

// `count` stream examples of client `c` in a round where `share` of its data
// is drifted.
std::vector<int64_t> SampleStream(const DriftSetup& setup, const ClientDrift& c, double share,
                                  int count, std::mt19937_64& rng) {
  std::discrete_distribution<int> pick_class(c.class_weights.begin(), c.class_weights.end());
  std::vector<int64_t> out(count);
  for (int64_t& index : out) {
    if (setup.label_shift && c.drifted && share > 0.0 &&
        std::uniform_real_distribution<double>(0.0, 1.0)(rng) < share) {
      index = c.shifted[rng() % c.shifted.size()];
      continue;
    }
    const std::vector<int32_t>& pool = setup.own_stream ? c.train : setup.by_class[pick_class(rng)];
    const int32_t base = pool[rng() % pool.size()];
    index = base;
    if (!setup.label_shift && c.drifted && share > 0.0 && ExampleDrifted(base, share, setup.seed)) {
      index = base + setup.clean_size;
    }
  }
  return out;
}

// Input summaries: images average-pooled to grid x grid per channel, vectors
// pooled to at most 64 values.
torch::Tensor Summarize(const torch::Tensor& x, int grid) {
  if (x.dim() == 4) return torch::adaptive_avg_pool2d(x, {grid, grid}).flatten(1).contiguous();
  const torch::Tensor flat = x.flatten(1);
  if (flat.size(1) <= 64) return flat.contiguous();
  return torch::adaptive_avg_pool1d(flat.unsqueeze(1), 64).squeeze(1).contiguous();
}

int SummarySize(const std::vector<int64_t>& shape, int grid) {
  if (shape.size() == 3) return static_cast<int>(shape[0]) * grid * grid;
  int64_t size = 1;
  for (int64_t d : shape) size *= d;
  return static_cast<int>(std::min<int64_t>(size, 64));
}

std::span<const float> Span(const torch::Tensor& t) {
  return {t.data_ptr<float>(), static_cast<size_t>(t.numel())};
}

Dataset Concatenate(Dataset a, const Dataset& b) {
  a.pixels.insert(a.pixels.end(), b.pixels.begin(), b.pixels.end());
  a.values.insert(a.values.end(), b.values.begin(), b.values.end());
  a.labels.insert(a.labels.end(), b.labels.begin(), b.labels.end());
  return a;
}

Dataset Subset(const Dataset& d, const std::vector<int32_t>& indices) {
  Dataset out = d;
  const int64_t size = d.example_size();
  out.pixels.clear();
  out.values.clear();
  out.labels.clear();
  for (int32_t i : indices) {
    if (!d.pixels.empty()) {
      out.pixels.insert(out.pixels.end(), d.pixels.begin() + i * size,
                        d.pixels.begin() + (i + 1) * size);
    } else {
      out.values.insert(out.values.end(), d.values.begin() + i * size,
                        d.values.begin() + (i + 1) * size);
    }
    out.labels.push_back(d.labels[i]);
  }
  return out;
}

DetectorDriftStats DetectorStats(const std::string& key, const DriftSetup& setup, int injection) {
  DetectorDriftStats stats;
  stats.detector = key;
  std::vector<double> delays_samples;
  double delay_rounds = 0.0;
  for (const ClientDrift& c : setup.clients) {
    if (c.monitor == nullptr) continue;
    const ClientDrift::Alarm* first_after = nullptr;
    bool early = false;
    for (const ClientDrift::Alarm& a : c.alarms) {
      if (a.key != key) continue;
      if (a.round < injection) early = true;
      if (a.round >= injection && first_after == nullptr) first_after = &a;
    }
    if (!c.drifted) {
      ++stats.clean_clients;
      if (early || first_after != nullptr) ++stats.clean_with_alarm;
      continue;
    }
    ++stats.drifted_clients;
    if (early) ++stats.drifted_with_early_alarm;
    if (first_after == nullptr) continue;
    ++stats.detected;
    if (first_after->round <= injection + 1) ++stats.detected_within_one_round;
    delay_rounds += first_after->round - injection;
    delays_samples.push_back(static_cast<double>(first_after->samples - c.samples_at_injection));
  }
  if (!delays_samples.empty()) {
    stats.mean_delay_rounds = delay_rounds / static_cast<double>(delays_samples.size());
    double sum = 0.0;
    for (double d : delays_samples) sum += d;
    stats.mean_delay_samples = sum / static_cast<double>(delays_samples.size());
    std::sort(delays_samples.begin(), delays_samples.end());
    const size_t m = delays_samples.size();
    stats.median_delay_samples = m % 2 == 1
                                     ? delays_samples[m / 2]
                                     : 0.5 * (delays_samples[m / 2 - 1] + delays_samples[m / 2]);
  }
  return stats;
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

  DriftSetup drift;
  drift.active = config.drift.type != "none" || config.monitor.enabled;
  drift.label_shift = config.drift.type == "label-shift";
  drift.own_stream = config.partition.method == "natural";
  drift.seed = config.run.seed;
  drift.clean_size = data.train.num_examples();
  if (drift.active) {
    if (config.drift.type != "none") {
      const size_t with_data = static_cast<size_t>(std::count_if(
          partition.begin(), partition.end(), [](const auto& p) { return !p.empty(); }));
      const std::vector<bool> chosen =
          ChooseDriftedClients(with_data, config.drift.fraction, config.run.seed);
      size_t k = 0;
      drift.clients.resize(partition.size());
      for (size_t i = 0; i < partition.size(); ++i) {
        if (!partition[i].empty()) drift.clients[i].drifted = chosen[k++];
      }
    } else {
      drift.clients.resize(partition.size());
    }
    drift.by_class.assign(data.train.num_classes, {});
    for (int32_t t = 0; t < static_cast<int32_t>(data.train.labels.size()); ++t) {
      drift.by_class[data.train.labels[t]].push_back(t);
    }
    for (size_t i = 0; i < partition.size(); ++i) {
      ClientDrift& c = drift.clients[i];
      c.train = partition[i];
      c.class_weights.assign(data.train.num_classes, 0.0);
      for (int32_t t : c.train) c.class_weights[data.train.labels[t]] += 1.0;
      if (c.drifted && drift.label_shift) {
        c.shifted = LabelShiftIndices(data.train.labels, data.train.num_classes, c.train.size(),
                                      config.drift.label_shift_alpha, config.run.seed * 7919 + i);
      }
    }
    if (config.drift.type != "none") {
      std::vector<int32_t> shifted_test;
      if (drift.label_shift) {
        // The drifted clients' new class mix, drawn from the test split.
        std::vector<double> class_weight(data.test.num_classes, 0.0);
        for (const ClientDrift& c : drift.clients) {
          for (int32_t idx : c.shifted) class_weight[data.train.labels[idx]] += 1.0;
        }
        std::vector<std::vector<int32_t>> by_class(data.test.num_classes);
        for (int32_t t = 0; t < static_cast<int32_t>(data.test.labels.size()); ++t) {
          by_class[data.test.labels[t]].push_back(t);
        }
        std::discrete_distribution<int> pick(class_weight.begin(), class_weight.end());
        std::mt19937_64 rng(config.run.seed ^ 0x7465737431ULL);
        for (int64_t t = 0; t < data.test.num_examples(); ++t) {
          const auto& pool = by_class[pick(rng)];
          if (!pool.empty()) shifted_test.push_back(pool[rng() % pool.size()]);
        }
        FEDGE_ASSIGN_OR_RETURN(drift.drifted_test,
                               MakeExampleStore(Subset(data.test, shifted_test)));
      } else {
        FEDGE_ASSIGN_OR_RETURN(Dataset drifted_test,
                               MakeDriftedCopy(data.test, config.drift, config.run.seed + 1));
        FEDGE_ASSIGN_OR_RETURN(drift.drifted_test, MakeExampleStore(std::move(drifted_test)));
        FEDGE_ASSIGN_OR_RETURN(Dataset drifted_train,
                               MakeDriftedCopy(data.train, config.drift, config.run.seed + 2));
        data.train = Concatenate(std::move(data.train), drifted_train);
      }
    }
    for (size_t i = 0; i < partition.size(); ++i) partition[i] = drift.clients[i].train;
  }
  const std::vector<int64_t> example_shape = data.train.example_shape;

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
  std::vector<size_t> partition_of;  // clients[k] is partition entry partition_of[k]
  clients.reserve(partition.size());
  for (size_t i = 0; i < partition.size(); ++i) {
    if (partition[i].empty()) continue;  // a client without data never trains
    auto indices = std::make_shared<const std::vector<int32_t>>(std::move(partition[i]));
    clients.emplace_back(ClientId(i), client::LocalDataset{train_store, std::move(indices)},
                         client_options);
    candidates.push_back(clients.back().id());
    partition_of.push_back(i);
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
  uint64_t round_id = 0;  // RoundManager round ids: regular and extra rounds
  std::unique_ptr<aggregator::DriftTracker> tracker;
  if (config.monitor.enabled) {
    FEDGE_ASSIGN_OR_RETURN(tracker,
                           aggregator::DriftTracker::Create(config.reaction.policy,
                                                            static_cast<int64_t>(clients.size())));
    drift.features = SummarySize(example_shape, config.monitor.summary_grid);
    client::DriftMonitorOptions monitor_options = config.monitor.options;
    monitor_options.features = drift.features;
    for (size_t k = 0; k < clients.size(); ++k) {
      ClientDrift& c = drift.clients[partition_of[k]];
      FEDGE_ASSIGN_OR_RETURN(c.monitor,
                             client::DriftMonitor::Create(clients[k].id(), monitor_options));
      c.reference.assign(
          c.train.begin(),
          c.train.begin() + std::min<size_t>(c.train.size(), config.monitor.reference_size));
      if (c.reference.size() < 2) {
        c.monitor.reset();  // too little data to watch
        continue;
      }
      try {
        torch::NoGradGuard no_grad;
        const torch::Tensor idx =
            torch::tensor(std::vector<int64_t>(c.reference.begin(), c.reference.end()));
        const torch::Tensor summary =
            Summarize(train_store->GatherFeatures(idx), config.monitor.summary_grid);
        FEDGE_RETURN_IF_ERROR(c.monitor->SetReference(Span(summary), {}));
      } catch (const std::exception& e) {
        return absl::InternalError(absl::StrCat("drift monitor reference: ", e.what()));
      }
    }
  }
  uint64_t drift_round = 0;  // drift reports are filed under the regular round
  InProcTransport transport(rounds.get(), &registry, tracker.get(), &drift_round);
  // Secure aggregation: the aggregator sees only each round's sum.
  std::unique_ptr<aggregator::SecureAggregation> secure;
  if (config.secure_aggregation.protocol != "none") {
    aggregator::SecureAggregationOptions options;
    FEDGE_ASSIGN_OR_RETURN(options.protocol.protocol,
                           privacy::secagg::ParseProtocol(config.secure_aggregation.protocol));
    options.protocol.threshold = config.secure_aggregation.threshold;
    options.protocol.neighbours = config.secure_aggregation.neighbours;
    options.protocol.clip_bound =
        config.clip_norm > 0.0 ? config.clip_norm : config.secure_aggregation.bound;
    // Without DP, updates are weighted by example count as in plain FedAvg:
    // the cap is the largest client, so no weight is cut.
    if (config.privacy.mode == "none") {
      for (const auto& device : clients) {
        options.max_weight =
            std::max<uint64_t>(options.max_weight, static_cast<uint64_t>(device.data().size()));
      }
    }
    options.graph_seed = config.run.seed;
    FEDGE_ASSIGN_OR_RETURN(auto check,
                           aggregator::CreateStrategy(config.strategy, config.strategy_options));
    FEDGE_ASSIGN_OR_RETURN(secure, aggregator::SecureAggregation::Create(options, *check));
    transport.set_secure_aggregation(secure.get());
  }
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

  // Drives the four secure-aggregation phases in lockstep for `cohort`,
  // whose sessions RunTask opened: every device still in runs its step,
  // then the aggregator closes the phase. Simulated dropouts stop a seeded
  // share of the cohort, each at a uniformly drawn phase. Returns false when
  // the round aborted (nothing is submitted).
  auto run_secure_phases = [&](const std::vector<std::string>& cohort, std::vector<uint64_t>& bytes,
                               RoundRecord& record) -> absl::StatusOr<bool> {
    std::vector<int> drop_at(cohort.size(), 5);
    std::mt19937_64 rng(config.run.seed ^ (0x44524F50ULL * (round_id + 1)));
    std::vector<size_t> order(cohort.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    const auto drops = static_cast<size_t>(
        std::llround(config.secure_aggregation.dropout * static_cast<double>(cohort.size())));
    for (size_t j = 0; j < drops; ++j) drop_at[order[j]] = 1 + static_cast<int>(rng() % 4);
    for (int phase = 1; phase <= 4; ++phase) {
      pool.ParallelFor(static_cast<int64_t>(cohort.size()), [&](int64_t task, int) {
        client::DeviceClient& device = clients[client_index.at(cohort[task])];
        if (drop_at[static_cast<size_t>(task)] <= phase || !device.secagg_pending()) return;
        absl::StatusOr<uint64_t> sent = device.SecAggStep(transport);
        if (sent.ok()) bytes[static_cast<size_t>(task)] += *sent;
      });
      if (absl::Status closed = secure->ClosePhase(); !closed.ok()) {
        if (absl::IsAborted(closed)) {
          record.secagg_abort_reason = std::string(closed.message());
          return false;
        }
        return closed;
      }
    }
    absl::StatusOr<aggregator::SecureRoundOutcome> finished = secure->Finish(*rounds);
    if (absl::IsAborted(finished.status())) {
      record.secagg_abort_reason = std::string(finished.status().message());
      return false;
    }
    if (!finished.ok()) return finished.status();
    record.secagg_dropped = finished->stats.cohort - finished->stats.masked;
    return true;
  };

  // Runs one round (regular or extra) for `cohort`.
  auto run_round = [&](const std::vector<std::string>& cohort, const v1::TrainConfig& train,
                       RoundRecord& record) -> absl::Status {
    ++round_id;
    FEDGE_RETURN_IF_ERROR(rounds->OpenRound(round_id, cohort, train));
    if (secure != nullptr) {
      const v1::PrivacyConfig privacy_task = rounds->privacy() != nullptr
                                                 ? rounds->privacy()->TaskConfig(cohort.size())
                                                 : v1::PrivacyConfig();
      if (absl::StatusOr<v1::SecAggConfig> started = secure->StartRound(
              round_id, cohort, static_cast<uint64_t>(registry.num_parameters()), privacy_task);
          !started.ok()) {
        (void)rounds->CloseRound();
        return absl::Status(
            started.status().code(),
            absl::StrCat("round ", round_id, ": secure aggregation: ", started.status().message()));
      }
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
            absl::StrCat("round ", round_id, ", ", cohort[i], ": ", reports[i].status().message()));
      }
    }
    std::vector<uint64_t> secagg_bytes(cohort.size(), 0);
    if (secure != nullptr) {
      FEDGE_ASSIGN_OR_RETURN(bool aggregated, run_secure_phases(cohort, secagg_bytes, record));
      if (!aggregated) {
        (void)rounds->CloseRound();  // publishes nothing
        record.secagg_aborted = true;
        for (size_t i = 0; i < reports.size(); ++i) {
          record.bytes_up += secagg_bytes[i];
          record.bytes_down += reports[i]->bytes_down;
        }
        return absl::OkStatus();
      }
    }
    FEDGE_ASSIGN_OR_RETURN(aggregator::RoundOutcome outcome, rounds->CloseRound());
    record.participants += outcome.participants;
    record.train_loss = outcome.train_loss;
    record.sparsity = outcome.sparsity;
    record.artifact_bytes = outcome.artifact_bytes;
    if (outcome.privacy.has_value()) {
      record.epsilon = outcome.privacy->epsilon;
      record.clip_norm = outcome.privacy->clip_norm;
    } else {
      record.clip_norm = config.clip_norm;
    }
    for (size_t i = 0; i < reports.size(); ++i) {
      record.bytes_up += reports[i]->bytes_up + secagg_bytes[i];
      record.bytes_down += reports[i]->bytes_down;
    }
    return absl::OkStatus();
  };

  // Accuracy and loss of `parameters` on a whole store, in parallel.
  auto evaluate = [&](const client::ExampleStore& store,
                      const std::vector<float>& parameters) -> absl::StatusOr<client::EvalMetrics> {
    const int64_t size = store.size();
    const int64_t shards = std::min<int64_t>(workers, size);
    std::vector<absl::StatusOr<client::EvalMetrics>> parts(shards, absl::UnknownError("not run"));
    pool.ParallelFor(shards, [&](int64_t shard, int worker) {
      models::ModelInstance& model = *replicas[worker];
      if (absl::Status s = model.parameters().CopyFrom(parameters); !s.ok()) {
        parts[shard] = s;
        return;
      }
      const int64_t begin = size * shard / shards;
      const int64_t end = size * (shard + 1) / shards;
      parts[shard] = client::Evaluate(model, store, begin, end, config.eval.batch_size);
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
  };

  // Every monitored client runs the newest model on its stream and feeds its
  // DriftMonitor; reports go to the aggregator through the transport.
  auto monitor_clients = [&](int r, const aggregator::ModelVersion& version) -> absl::Status {
    const double share = DriftedShare(config.drift, r);
    std::vector<absl::Status> status(clients.size());
    pool.ParallelFor(static_cast<int64_t>(clients.size()), [&](int64_t k, int worker) {
      ClientDrift& c = drift.clients[partition_of[k]];
      if (c.monitor == nullptr) return;
      if (r == config.drift.round) c.samples_at_injection = c.monitor->samples();
      try {
        torch::NoGradGuard no_grad;
        models::ModelInstance& model = *replicas[worker];
        if (absl::Status s = model.parameters().CopyFrom(version.parameters); !s.ok()) {
          status[k] = s;
          return;
        }
        model.network().eval();
        auto to_tensor = [](const std::vector<int32_t>& v) {
          return torch::tensor(std::vector<int64_t>(v.begin(), v.end()));
        };
        // Confidence reference: the current model on the reference window.
        const torch::Tensor ref_probs = torch::softmax(
            model.network().forward(train_store->GatherFeatures(to_tensor(c.reference))), 1);
        const torch::Tensor ref_conf = std::get<0>(ref_probs.max(1)).contiguous();
        if (absl::Status s = c.monitor->SetReference({}, Span(ref_conf)); !s.ok()) {
          status[k] = s;
          return;
        }
        std::mt19937_64 rng(config.run.seed * 1'000'003ULL + partition_of[k] * 7919ULL + r);
        const std::vector<int64_t> picked =
            SampleStream(drift, c, share, config.monitor.samples_per_round, rng);
        const torch::Tensor idx = torch::tensor(picked);
        const torch::Tensor x = train_store->GatherFeatures(idx);
        const torch::Tensor y = train_store->GatherLabels(idx);
        const torch::Tensor logits = model.network().forward(x);
        const torch::Tensor confidence = std::get<0>(torch::softmax(logits, 1).max(1)).contiguous();
        const torch::Tensor summary = Summarize(x, config.monitor.summary_grid);
        const int64_t labelled = static_cast<int64_t>(
            std::llround(config.monitor.label_fraction * static_cast<double>(picked.size())));
        const torch::Tensor loss =
            torch::nn::functional::cross_entropy(
                logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                .narrow(0, 0, labelled)
                .contiguous();
        const torch::Tensor error =
            logits.argmax(1).ne(y).to(torch::kFloat32).narrow(0, 0, labelled).contiguous();
        std::optional<v1::DriftReport> report;
        for (int part = 0; part < 2; ++part) {
          if (part == 1 && labelled == 0) break;
          absl::StatusOr<client::MonitorOutcome> outcome =
              part == 0
                  ? c.monitor->ObserveInference(Span(summary), Span(confidence), version.version, r)
                  : c.monitor->ObserveFeedback(Span(loss), Span(error), version.version, r);
          if (!outcome.ok()) {
            status[k] = outcome.status();
            return;
          }
          for (const v1::DriftEvent& e : outcome->alarms) {
            c.alarms.push_back(
                {absl::StrCat(e.detector(), ":", e.stream()), r, e.monitor_samples()});
          }
          if (outcome->report && !report) report = std::move(outcome->report);
        }
        if (report) {
          if (absl::Status s = transport.ReportDrift(*report); !s.ok()) {
            status[k] = s;
            return;
          }
          // The device fine-tunes on its recent data and takes it as its new
          // reference (its training data now looks like this).
          const std::vector<int32_t> now = CurrentIndices(drift, c, share);
          if (config.monitor.fine_tune_epochs > 0) {
            // Both models are scored on the same fresh stream sample.
            const torch::Tensor probe =
                torch::tensor(SampleStream(drift, c, share, config.monitor.samples_per_round, rng));
            const torch::Tensor px = train_store->GatherFeatures(probe);
            const torch::Tensor py = train_store->GatherLabels(probe);
            auto accuracy = [&] {
              torch::NoGradGuard guard;
              model.network().eval();
              return model.network()
                  .forward(px)
                  .argmax(1)
                  .eq(py)
                  .to(torch::kFloat64)
                  .mean()
                  .item<double>();
            };
            const double before = accuracy();
            v1::TrainConfig tune = config.train;
            tune.set_local_epochs(static_cast<uint32_t>(config.monitor.fine_tune_epochs));
            tune.set_seed(config.run.seed ^ (partition_of[k] * 104729ULL + r));
            tune.set_learning_rate(static_cast<float>(config.train.learning_rate() *
                                                      std::pow(config.lr_decay, r - 1)));
            torch::AutoGradMode with_gradients(true);  // the task runs without them
            absl::StatusOr<client::LocalUpdate> tuned =
                trainer.Fit(model,
                            client::LocalDataset{train_store,
                                                 std::make_shared<const std::vector<int32_t>>(now)},
                            tune);
            if (!tuned.ok()) {
              status[k] = tuned.status();
              return;
            }
            c.fine_tunes.push_back({before, accuracy()});
          }
          c.reference.assign(
              now.begin(),
              now.begin() + std::min<size_t>(now.size(), config.monitor.reference_size));
          const torch::Tensor ref_summary = Summarize(
              train_store->GatherFeatures(to_tensor(c.reference)), config.monitor.summary_grid);
          if (absl::Status s = c.monitor->SetReference(Span(ref_summary), {}); !s.ok()) {
            status[k] = s;
            return;
          }
          c.monitor->ResetDetectors();
        }
      } catch (const std::exception& e) {
        status[k] =
            absl::InternalError(absl::StrCat("drift monitor of ", clients[k].id(), ": ", e.what()));
      }
    });
    for (const absl::Status& s : status) FEDGE_RETURN_IF_ERROR(s);
    return absl::OkStatus();
  };

  // A round the privacy budget refuses ends the run (after at least one
  // round; a budget too small for any round is an error).
  auto budget_spent = [&](const absl::Status& status) {
    if (!absl::IsResourceExhausted(status) || result.rounds.empty()) return false;
    result.summary.stop_reason = std::string(status.message());
    return true;
  };

  DriftRunSummary drift_summary;
  bool pending_extra = false;
  int extra_left = 0;
  std::set<std::string> joiners;  // clients served by the current reaction
  double last_share = 0.0;
  for (int r = 1; r <= config.round.rounds; ++r) {
    const Clock::time_point round_start = Clock::now();
    // Drifted clients' data moves when the drifted share changes.
    const double share = DriftedShare(config.drift, r);
    if (drift.active && share != last_share) {
      for (size_t k = 0; k < clients.size(); ++k) {
        const ClientDrift& c = drift.clients[partition_of[k]];
        if (!c.drifted) continue;
        auto indices =
            std::make_shared<const std::vector<int32_t>>(CurrentIndices(drift, c, share));
        clients[k].SetData(client::LocalDataset{train_store, std::move(indices)});
      }
      last_share = share;
    }
    v1::TrainConfig train = config.train;
    train.set_seed(config.run.seed * 1'000'003ULL + static_cast<uint64_t>(r));
    train.set_learning_rate(
        static_cast<float>(config.train.learning_rate() * std::pow(config.lr_decay, r - 1)));

    RoundRecord record;
    record.round = r;
    drift_round = static_cast<uint64_t>(r);
    DriftRoundRecord drift_record;
    drift_record.round = r;
    if (pending_extra) {
      // The aggregator's reaction: an extra round with the clients that asked
      // to join, filled up with a random draw.
      const size_t want = config.reaction.extra_round_clients > 0
                              ? static_cast<size_t>(config.reaction.extra_round_clients)
                              : static_cast<size_t>(per_round);
      for (const std::string& id : tracker->TakeJoinRequests()) {
        if (client_index.contains(id)) joiners.insert(id);
      }
      // Those that asked to join first, in a random order, then a random fill.
      std::vector<std::string> cohort;
      FEDGE_ASSIGN_OR_RETURN(
          std::vector<std::string> order,
          aggregator::RoundManager::SelectCohort(candidates, static_cast<int>(candidates.size()),
                                                 config.run.seed ^ 0x6A6F696EULL, r));
      for (const std::string& id : order) {
        if (cohort.size() < want && joiners.contains(id)) cohort.push_back(id);
      }
      std::set<std::string> in(cohort.begin(), cohort.end());
      FEDGE_ASSIGN_OR_RETURN(
          std::vector<std::string> fill,
          aggregator::RoundManager::SelectCohort(candidates, static_cast<int>(candidates.size()),
                                                 config.run.seed ^ 0x6578747261ULL, r));
      for (const std::string& id : fill) {
        if (cohort.size() >= want) break;
        if (!in.contains(id)) cohort.push_back(id);
      }
      v1::TrainConfig extra = train;
      extra.set_seed(train.seed() ^ 0x5EED5EEDULL);
      if (absl::Status ran = run_round(cohort, extra, record); !ran.ok()) {
        if (budget_spent(ran)) break;
        return ran;
      }
      drift_record.extra_round = true;
      ++drift_summary.extra_rounds;
      if (--extra_left == 0) {
        pending_extra = false;
        joiners.clear();
      }
    }
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
    if (absl::Status ran = run_round(cohort, train, record); !ran.ok()) {
      if (budget_spent(ran)) break;
      return ran;
    }
    FEDGE_ASSIGN_OR_RETURN(auto latest, registry.Latest());

    const bool evaluate_now =
        (r % config.eval.every == 0) || r == config.round.rounds || config.drift.type != "none";
    if (evaluate_now) {
      FEDGE_ASSIGN_OR_RETURN(client::EvalMetrics clean, evaluate(*test_store, latest->parameters));
      record.test_loss = clean.loss;
      record.test_accuracy = clean.accuracy;
      if (drift.drifted_test != nullptr) {
        FEDGE_ASSIGN_OR_RETURN(client::EvalMetrics drifted,
                               evaluate(*drift.drifted_test, latest->parameters));
        drift_record.drifted_accuracy = drifted.accuracy;
      }
    } else if (!result.rounds.empty()) {
      record.test_loss = result.rounds.back().test_loss;
      record.test_accuracy = result.rounds.back().test_accuracy;
    }
    drift_record.clean_accuracy = record.test_accuracy;
    if (tracker != nullptr) {
      FEDGE_RETURN_IF_ERROR(monitor_clients(r, *latest));
      drift_record.reports = static_cast<int>(tracker->ReportsInRound(r));
      const aggregator::DriftPolicyDecision decision = tracker->Evaluate(r);
      drift_record.reporting_share = decision.share;
      drift_record.alert = decision.alert;
      drift_summary.alerts += decision.alert ? 1 : 0;
      if (decision.extra_round) {
        pending_extra = true;
        extra_left = config.reaction.extra_rounds;
      } else if (!pending_extra) {
        (void)tracker->TakeJoinRequests();  // not served: dropped
      }
    }
    if (drift.active) drift_summary.rounds.push_back(drift_record);
    record.wall_seconds = Seconds(round_start);
    record.elapsed_seconds = Seconds(run_start);
    result.rounds.push_back(record);
    if (on_round) on_round(record);
  }

  if (drift.active) {
    DriftRunSummary& d = drift_summary;
    d.type = config.drift.type;
    d.injection_round = config.drift.type != "none" ? config.drift.round : 0;
    d.clients = static_cast<int>(clients.size());
    for (size_t k = 0; k < clients.size(); ++k)
      d.drifted_clients += drift.clients[partition_of[k]].drifted;
    d.reaction = config.reaction.policy.reaction;
    if (d.injection_round > 1) {
      d.pre_drift_accuracy = d.rounds[d.injection_round - 2].clean_accuracy;
      d.recovery_target = d.pre_drift_accuracy - config.reaction.recovery_tolerance;
      for (int r = d.injection_round; r <= config.round.rounds; ++r) {
        if (d.rounds[r - 1].drifted_accuracy >= d.recovery_target) {
          d.recovery_rounds = r - d.injection_round + 1;
          break;
        }
      }
    }
    for (const ClientDrift& c : drift.clients) {
      for (const auto& [before, after] : c.fine_tunes) {
        ++d.fine_tunes;
        d.fine_tune_accuracy_before += before;
        d.fine_tune_accuracy_after += after;
      }
    }
    if (d.fine_tunes > 0) {
      d.fine_tune_accuracy_before /= d.fine_tunes;
      d.fine_tune_accuracy_after /= d.fine_tunes;
    }
    if (tracker != nullptr) {
      std::vector<std::string> keys;
      for (const ClientDrift& c : drift.clients) {
        if (c.monitor != nullptr) {
          keys = c.monitor->detector_keys();
          break;
        }
      }
      for (const std::string& key : keys) {
        d.detectors.push_back(DetectorStats(key, drift, std::max(1, d.injection_round)));
      }
      d.reports_by_version = tracker->ReportsByVersion();
    }
    result.drift = std::move(drift_summary);
  }

  RunSummary& summary = result.summary;
  SummarizeRounds(result.rounds, summary);
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
