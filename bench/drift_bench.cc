// Drift detectors: the cost of one observation for every built-in detector,
// against the model inference a device runs anyway, measured in the same run.
//
//  * stream detectors (page-hinkley, adwin, ddm, confidence): one Add of a
//    scalar; target <= 1 us per observation;
//  * window detectors (ks, psi): one Add of a feature row, with the window
//    test (every `window` = 64 rows) amortized over the rows, for 49 features
//    (a 7x7 pooled 28x28 image, what fedge-sim's monitor feeds them) and 784
//    (every pixel). Per inference batch of 32 the cost is 32 rows, compared
//    with the forward pass of the `mlp` and `cnn` models on that batch (one
//    LibTorch thread).
//
// Streams are stationary (the common case on a device: no alarm, no reset),
// fixed seeds. Runs in about 15 s.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "capturing_reporter.h"
#include "fedge/client/drift_detector.h"
#include "fedge/models/model_instance.h"

namespace {

constexpr double kMinTimeSeconds = 0.3;
constexpr int kBatch = 32;
const char* const kStreamDetectors[] = {"page-hinkley", "adwin", "ddm", "confidence"};
const char* const kWindowDetectors[] = {"ks", "psi"};
const int kFeatureCounts[] = {49, 784};

std::unique_ptr<fedge::client::DriftDetector> MustCreate(const std::string& name, int features) {
  fedge::client::DriftDetectorOptions options;
  options.features = features;
  auto detector = fedge::client::CreateDriftDetector(name, options);
  if (!detector.ok()) {
    std::fprintf(stderr, "%s\n", detector.status().ToString().c_str());
    std::abort();
  }
  return std::move(*detector);
}

void BM_StreamObservation(benchmark::State& state, const std::string& name) {
  auto detector = MustCreate(name, 0);
  std::mt19937_64 rng(1);
  std::vector<float> values(1 << 16);
  std::bernoulli_distribution error(0.15);
  std::normal_distribution<float> confidence(0.85f, 0.05f);
  for (float& v : values) v = name == "confidence" ? confidence(rng) : (error(rng) ? 1.0f : 0.0f);
  if (name == "confidence") {
    if (!detector->SetReference(std::span<const float>(values).first(1000)).ok()) std::abort();
  }
  size_t i = 0;
  for (auto _ : state) {
    auto decision = detector->Add(values[i]);
    benchmark::DoNotOptimize(decision);
    i = (i + 1) & (values.size() - 1);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_WindowRow(benchmark::State& state, const std::string& name) {
  const int features = static_cast<int>(state.range(0));
  auto detector = MustCreate(name, features);
  std::mt19937_64 rng(2);
  std::gamma_distribution<float> value(2.0f, 1.0f);  // skewed, like pooled pixels
  std::vector<float> reference(static_cast<size_t>(500) * features);
  for (float& v : reference) v = value(rng);
  if (!detector->SetReference(reference).ok()) std::abort();
  const size_t rows = 4096;
  std::vector<float> stream(rows * features);
  for (float& v : stream) v = value(rng);
  size_t i = 0;
  for (auto _ : state) {
    auto decision = detector->Add(std::span<const float>(stream).subspan(i * features, features));
    benchmark::DoNotOptimize(decision);
    i = (i + 1) % rows;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_InferenceBatch(benchmark::State& state, const std::string& architecture) {
  fedge::models::SetComputeThreads(1);
  const fedge::models::ModelSpec spec{architecture, {1, 28, 28}, 10};
  auto model = fedge::models::ModelInstance::Create(spec, 1);
  if (!model.ok()) std::abort();
  torch::manual_seed(3);
  const torch::Tensor batch = torch::rand({kBatch, 1, 28, 28});
  torch::NoGradGuard no_grad;
  (*model)->network().eval();
  for (auto _ : state) {
    torch::Tensor logits = (*model)->network().forward(batch);
    torch::Tensor probabilities = torch::softmax(logits, 1);
    benchmark::DoNotOptimize(probabilities.data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

int main(int argc, char** argv) {
  for (const char* name : kStreamDetectors) {
    benchmark::RegisterBenchmark("stream", BM_StreamObservation, std::string(name))
        ->Name(std::string("stream/") + name)
        ->MinTime(kMinTimeSeconds);
  }
  for (const char* name : kWindowDetectors) {
    auto* b = benchmark::RegisterBenchmark("window", BM_WindowRow, std::string(name))
                  ->Name(std::string("window/") + name)
                  ->MinTime(kMinTimeSeconds);
    for (int f : kFeatureCounts) b->Arg(f);
  }
  for (const char* architecture : {"mlp", "cnn"}) {
    benchmark::RegisterBenchmark("inference", BM_InferenceBatch, std::string(architecture))
        ->Name(std::string("inference32/") + architecture)
        ->MinTime(kMinTimeSeconds);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fedge::bench::CapturingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  auto ns_per_item = [&](const std::string& name, const std::string& args = "") {
    const double rate = reporter.Counter(name, "items_per_second", args);
    return rate > 0.0 ? 1e9 / rate : 0.0;
  };
  std::printf("\ndrift detector cost per observation (target <= 1000 ns for stream detectors)\n");
  std::printf("  %-14s %12s\n", "detector", "ns/obs");
  for (const char* name : kStreamDetectors) {
    std::printf("  %-14s %12.1f\n", name, ns_per_item(std::string("stream/") + name));
  }
  const double mlp = ns_per_item("inference32/mlp");
  const double cnn = ns_per_item("inference32/cnn");
  std::printf("\nwindow detectors per inference batch of %d rows (test every 64 rows amortized)\n",
              kBatch);
  std::printf("  inference of the batch: mlp %.1f us, cnn %.1f us\n", mlp / 1e3, cnn / 1e3);
  std::printf("  %-10s %8s %10s %12s %12s %12s\n", "detector", "features", "ns/row", "us/batch",
              "batch/mlp", "batch/cnn");
  for (const char* name : kWindowDetectors) {
    for (int f : kFeatureCounts) {
      const double row = ns_per_item(std::string("window/") + name, std::to_string(f));
      const double batch = row * kBatch;
      std::printf("  %-10s %8d %10.1f %12.2f %12.3f %12.3f\n", name, f, row, batch / 1e3,
                  mlp > 0 ? batch / mlp : 0.0, cnn > 0 ? batch / cnn : 0.0);
    }
  }
  return 0;
}
