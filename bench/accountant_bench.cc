// RDP accounting cost: ε of 10,000 rounds of the subsampled Gaussian mechanism
// (q = 0.01, σ = 1.0, δ = 1e-5), through ComputeEpsilon and through an
// RdpAccountant stepped once per round. The target is under 10 ms for either.
// The baseline measured in the same run is one round's ε (the RDP curve
// evaluation dominates, so the ratio should be close to 1: composition is a
// multiplication). The summary at the end prints the times and ratios.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>

#include "fedge/privacy/accountant.h"

namespace {

constexpr double kSamplingRate = 0.01;
constexpr double kNoiseMultiplier = 1.0;
constexpr double kDelta = 1e-5;
constexpr int64_t kRounds = 10000;

double EpsilonFor(int64_t rounds) {
  return *fedge::privacy::ComputeEpsilon(kSamplingRate, kNoiseMultiplier, rounds, kDelta);
}

double AccountantEpsilon() {
  std::unique_ptr<fedge::privacy::Accountant> accountant = fedge::privacy::MakeRdpAccountant();
  for (int64_t round = 0; round < kRounds; ++round) {
    if (!accountant->Step(kSamplingRate, kNoiseMultiplier).ok()) return -1.0;
  }
  return *accountant->Epsilon(kDelta);
}

void BM_EpsilonOneRound(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(EpsilonFor(1));
}

void BM_ComputeEpsilon10kRounds(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(EpsilonFor(kRounds));
}

void BM_RdpAccountant10kSteps(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(AccountantEpsilon());
}

BENCHMARK(BM_EpsilonOneRound)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ComputeEpsilon10kRounds)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RdpAccountant10kSteps)->Unit(benchmark::kMillisecond);

// Best of `repeats` wall-clock runs, in milliseconds.
template <typename F>
double BestMillis(F f, int repeats) {
  double best = 1e300;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(f());
    const std::chrono::duration<double, std::milli> elapsed =
        std::chrono::steady_clock::now() - start;
    best = std::min(best, elapsed.count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  const double one = BestMillis([] { return EpsilonFor(1); }, 20);
  const double direct = BestMillis([] { return EpsilonFor(kRounds); }, 20);
  const double stepped = BestMillis(AccountantEpsilon, 20);
  std::printf(
      "\nRDP accountant: epsilon = %.6f for %lld rounds (q=%g, sigma=%g, delta=%g)\n"
      "  ComputeEpsilon: %.3f ms, RdpAccountant (10k Step calls): %.3f ms  [target < 10 ms: %s]\n"
      "  ratio to one round (baseline %.3f ms): %.2fx direct, %.2fx stepped\n",
      EpsilonFor(kRounds), static_cast<long long>(kRounds), kSamplingRate, kNoiseMultiplier, kDelta,
      direct, stepped, std::max(direct, stepped) < 10.0 ? "met" : "MISSED", one, direct / one,
      stepped / one);
  return 0;
}
