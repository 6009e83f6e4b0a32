// Streaming aggregation at memory bandwidth: how fast the fedavg accumulator
// folds one client update (validation included), against a memcpy of the
// same number of floats measured in the same run.
//
// Throughput is update bytes (4 * d) per second for Accumulate and copied
// bytes (4 * d) per second for memcpy. Sizes: d = 582,026 (cnn-large, cache
// resident) and d = 16,777,216 (64 MB, out of cache). The summary at the end
// prints both and their ratio per d; the target is accumulate/memcpy >= 0.5.
//
// Runs in about 10 s; pass the usual --benchmark_* flags to change that.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "capturing_reporter.h"
#include "fedge/aggregator/strategy.h"

namespace {

constexpr std::int64_t kCnnLargeDimension = 582026;
constexpr std::int64_t kOutOfCacheDimension = 16777216;
constexpr double kMinTimeSeconds = 0.5;

// Small deltas, as a client update would hold; fixed seed per buffer.
std::vector<float> RandomUpdate(std::size_t dimension, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-1e-2f, 1e-2f);
  std::vector<float> update(dimension);
  for (float& v : update) v = value(rng);
  return update;
}

void BM_Memcpy(benchmark::State& state) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  const std::vector<float> source = RandomUpdate(dimension, 1);
  std::vector<float> destination(dimension, 0.0f);
  for (auto _ : state) {
    std::memcpy(destination.data(), source.data(), dimension * sizeof(float));
    benchmark::DoNotOptimize(destination.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(dimension * 4));
}

void BM_StreamingFold(benchmark::State& state) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  auto strategy = fedge::aggregator::CreateStrategy("fedavg", {});
  if (!strategy.ok()) {
    state.SkipWithError(strategy.status().ToString().c_str());
    return;
  }
  std::unique_ptr<fedge::aggregator::UpdateAccumulator> accumulator =
      (*strategy)->NewAccumulator(dimension);
  const std::vector<float> update = RandomUpdate(dimension, 2);
  for (auto _ : state) {
    const absl::Status status = accumulator->Accumulate(update, 1.0);
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(dimension * 4));
}

}  // namespace

int main(int argc, char** argv) {
  // memcpy and fold of the same d run back to back, under the same conditions.
  for (const std::int64_t dimension : {kCnnLargeDimension, kOutOfCacheDimension}) {
    benchmark::RegisterBenchmark("memcpy", BM_Memcpy)->Arg(dimension)->MinTime(kMinTimeSeconds);
    benchmark::RegisterBenchmark("streaming_fold", BM_StreamingFold)
        ->Arg(dimension)
        ->MinTime(kMinTimeSeconds);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fedge::bench::CapturingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\nstreaming weighted-mean Accumulate vs memcpy (GB/s = 1e9 update bytes/s)\n");
  std::printf("%12s %16s %12s %8s\n", "d", "accumulate GB/s", "memcpy GB/s", "ratio");
  bool complete = true;
  std::vector<std::string> lines;
  for (const std::int64_t dimension : {kCnnLargeDimension, kOutOfCacheDimension}) {
    const double fold =
        reporter.Counter("streaming_fold", "bytes_per_second", std::to_string(dimension)) / 1e9;
    const double copy =
        reporter.Counter("memcpy", "bytes_per_second", std::to_string(dimension)) / 1e9;
    if (fold <= 0.0 || copy <= 0.0) {
      std::printf("%12lld %16s %12s %8s\n", static_cast<long long>(dimension), "n/a", "n/a", "n/a");
      complete = false;
      continue;
    }
    const double ratio = fold / copy;
    std::printf("%12lld %16.2f %12.2f %8.2f\n", static_cast<long long>(dimension), fold, copy,
                ratio);
    char line[160];
    std::snprintf(
        line, sizeof(line),
        "streaming_fold d=%lld: %.1f GB/s, memcpy %.1f GB/s, ratio %.2f (target >= 0.5%s)",
        static_cast<long long>(dimension), fold, copy, ratio, ratio >= 0.5 ? "" : ", MISSED");
    lines.emplace_back(line);
  }
  for (const std::string& line : lines) std::printf("%s\n", line.c_str());
  return complete ? 0 : 1;
}
