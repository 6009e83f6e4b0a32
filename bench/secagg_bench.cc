// Secure-aggregation mask expansion: how fast the AES-256-CTR PRG turns a
// 32-byte seed into d uint32 mask words, against a memcpy of the same 4 * d
// bytes measured in the same run.
//
// prg_fill:    AesCtrPrg::Create + Fill(d words) (a fresh stream per call,
//              as each pairwise or self mask is).
// prg_add:     AesCtrPrg::Create + AddTo(d words): expanding a mask into an
//              update, the client's per-peer cost and the server's per-dropout
//              cost.
// memcpy:      copying 4 * d bytes.
// Sizes: d = 10^5 and 10^6. The summary prints words/s and the ratio
// PRG / memcpy per d (both in bytes per second).
//
// Runs in a few seconds; pass the usual --benchmark_* flags to change that.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "capturing_reporter.h"
#include "fedge/privacy/secagg/crypto.h"

namespace {

namespace secagg = fedge::privacy::secagg;

constexpr std::int64_t kDimensions[] = {100000, 1000000};
constexpr double kMinTimeSeconds = 0.5;

secagg::Seed BenchSeed() {
  secagg::Seed seed;
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i * 7 + 1);
  return seed;
}

void SetCounters(benchmark::State& state, std::size_t dimension) {
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(dimension));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(dimension * 4));
}

void BM_Memcpy(benchmark::State& state) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  const std::vector<std::uint32_t> source(dimension, 0x9E3779B9u);
  std::vector<std::uint32_t> destination(dimension, 0);
  for (auto _ : state) {
    std::memcpy(destination.data(), source.data(), dimension * sizeof(std::uint32_t));
    benchmark::DoNotOptimize(destination.data());
    benchmark::ClobberMemory();
  }
  SetCounters(state, dimension);
}

void BM_PrgFill(benchmark::State& state) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  const secagg::Seed seed = BenchSeed();
  std::vector<std::uint32_t> mask(dimension, 0);
  for (auto _ : state) {
    absl::StatusOr<secagg::AesCtrPrg> prg = secagg::AesCtrPrg::Create(seed);
    if (!prg.ok() || !prg->Fill(mask).ok()) {
      state.SkipWithError("AesCtrPrg failed");
      break;
    }
    benchmark::DoNotOptimize(mask.data());
    benchmark::ClobberMemory();
  }
  SetCounters(state, dimension);
}

void BM_PrgAdd(benchmark::State& state) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  const secagg::Seed seed = BenchSeed();
  std::vector<std::uint32_t> values(dimension, 12345u);
  for (auto _ : state) {
    absl::StatusOr<secagg::AesCtrPrg> prg = secagg::AesCtrPrg::Create(seed);
    if (!prg.ok() || !prg->AddTo(values).ok()) {
      state.SkipWithError("AesCtrPrg failed");
      break;
    }
    benchmark::DoNotOptimize(values.data());
    benchmark::ClobberMemory();
  }
  SetCounters(state, dimension);
}

}  // namespace

int main(int argc, char** argv) {
  // memcpy and the PRG of the same d run back to back, under the same conditions.
  for (const std::int64_t dimension : kDimensions) {
    benchmark::RegisterBenchmark("memcpy", BM_Memcpy)->Arg(dimension)->MinTime(kMinTimeSeconds);
    benchmark::RegisterBenchmark("prg_fill", BM_PrgFill)->Arg(dimension)->MinTime(kMinTimeSeconds);
    benchmark::RegisterBenchmark("prg_add", BM_PrgAdd)->Arg(dimension)->MinTime(kMinTimeSeconds);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fedge::bench::CapturingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\nAES-256-CTR mask expansion vs memcpy of the same bytes (M = 1e6 uint32/s)\n");
  std::printf("%10s %10s %14s %14s %8s\n", "d", "prg", "prg Mwords/s", "memcpy Mw/s", "ratio");
  bool complete = true;
  for (const std::int64_t dimension : kDimensions) {
    const double copy =
        reporter.Counter("memcpy", "items_per_second", std::to_string(dimension)) / 1e6;
    for (const char* name : {"prg_fill", "prg_add"}) {
      const double prg =
          reporter.Counter(name, "items_per_second", std::to_string(dimension)) / 1e6;
      if (prg <= 0.0 || copy <= 0.0) {
        std::printf("%10lld %10s %14s %14s %8s\n", static_cast<long long>(dimension), name, "n/a",
                    "n/a", "n/a");
        complete = false;
        continue;
      }
      std::printf("%10lld %10s %14.1f %14.1f %8.3f\n", static_cast<long long>(dimension), name, prg,
                  copy, prg / copy);
    }
  }
  return complete ? 0 : 1;
}
