// On-device inference: examples per second of the fp32 engine and of the
// int8 engine on each quantized engine LibTorch offers (QNNPACK, ONEDNN),
// for cnn, mobilenet-tiny and cnn pruned to half its channels, at batch 1
// (an app classifying what it sees) and batch 32, on one thread; every
// figure is also printed as a ratio to fp32 dense cnn measured in the same
// run.
//
// The weights are a fresh initialization calibrated on random images: speed
// does not depend on the values (the accuracy side is bench/compression.sh).
// Runs in about 30 s.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "capturing_reporter.h"
#include "fedge/models/artifact.h"
#include "fedge/models/inference.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/pruning.h"

namespace {

using fedge::models::InferenceModel;
using fedge::models::InferenceOptions;

constexpr double kMinTimeSeconds = 0.5;

template <typename T>
T Must(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::fprintf(stderr, "%s\n", value.status().ToString().c_str());
    std::abort();
  }
  return *std::move(value);
}

// "cnn", "mobilenet-tiny", or "cnn-channels50" (cnn with half its channels
// pruned), with calibrated activation ranges.
fedge::v1::ModelArtifact Artifact(const std::string& model) {
  const bool pruned = model == "cnn-channels50";
  auto instance = Must(fedge::models::ModelInstance::Create(
      fedge::models::ModelSpec{pruned ? "cnn" : model, {1, 28, 28}, 10}, 1));
  if (pruned) {
    fedge::models::PruningOptions options;
    options.target_sparsity = 0.5;
    options.structured = true;
    auto pruner =
        Must(fedge::models::MagnitudePruner::Create(options, instance->parameters().layout()));
    if (!pruner.Prune(1, instance->parameters().values()).ok()) std::abort();
  }
  auto artifact = Must(fedge::models::BuildFp32Artifact(
      instance->spec(), instance->parameters().layout(), instance->parameters().values(), {}));
  torch::manual_seed(2);
  const auto ranges = Must(fedge::models::CalibrateActivations(
      instance->network(), torch::rand({256, 1, 28, 28}) * 3.0 - 1.0));
  for (const auto& r : ranges) *artifact.mutable_header()->add_activation_ranges() = r;
  return artifact;
}

void BM_Inference(benchmark::State& state, const std::string& model, const std::string& engine) {
  fedge::models::SetComputeThreads(1);  // LibTorch and OpenBLAS
  InferenceOptions options;
  options.int8 = engine != "fp32";
  if (options.int8) options.engine = engine;
  auto inference = InferenceModel::Create(Artifact(model), options);
  if (!inference.ok()) {
    state.SkipWithError(inference.status().ToString().c_str());
    return;
  }
  const int64_t batch = state.range(0);
  torch::manual_seed(3);
  const torch::Tensor x = torch::rand({batch, 1, 28, 28}) * 3.0 - 1.0;
  for (auto _ : state) {
    auto logits = (*inference)->Forward(x);
    if (!logits.ok()) {
      state.SkipWithError(logits.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(logits->data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["parameters"] = static_cast<double>((*inference)->num_parameters());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> engines = {"fp32"};
  for (const std::string& e : fedge::models::QuantizedEngines()) engines.push_back("int8-" + e);
  const std::vector<std::string> models = {"cnn", "cnn-channels50", "mobilenet-tiny"};
  for (const std::string& model : models) {
    for (const std::string& engine : engines) {
      const std::string name = model + "/" + engine;
      const std::string kind = engine == "fp32" ? "fp32" : engine.substr(5);
      benchmark::RegisterBenchmark(name.c_str(), BM_Inference, model, kind)
          ->Arg(1)
          ->Arg(32)
          ->MinTime(kMinTimeSeconds);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fedge::bench::CapturingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\nexamples per second, one thread; x = speed-up over fp32 cnn at the same batch\n");
  std::printf("%-16s %-14s %12s %8s %12s %8s\n", "model", "engine", "batch 1", "x", "batch 32",
              "x");
  bool complete = true;
  for (const std::string& model : models) {
    for (const std::string& engine : engines) {
      std::printf("%-16s %-14s", model.c_str(), engine.c_str());
      for (const char* batch : {"1", "32"}) {
        const double base = reporter.Counter("cnn/fp32", "items_per_second", batch);
        const double speed = reporter.Counter(model + "/" + engine, "items_per_second", batch);
        if (speed <= 0.0 || base <= 0.0) {
          std::printf(" %12s %8s", "n/a", "");
          complete = false;
        } else {
          std::printf(" %12.0f %8.2f", speed, speed / base);
        }
      }
      std::printf("\n");
    }
  }
  return complete ? 0 : 1;
}
