// Update codecs: encode and decode throughput of each built-in codec for one
// cnn-large update (d = 582,026), against a memcpy of the same fp32 bytes
// measured in the same run, plus the encoded size.
//
// Throughput is fp32 update bytes (4 * d) per second for every benchmark, so
// the ratios to memcpy compare like with like. "topk+ef" is one
// ErrorFeedback::Encode (encode + decode + residual update), what a device
// pays per round with error feedback. Codec parameters are the defaults
// (qsgd 8 bits, topk density 0.01).
//
// Runs in about 10 s; pass the usual --benchmark_* flags to change that.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "capturing_reporter.h"
#include "fedge/models/error_feedback.h"
#include "fedge/models/update_codec.h"

namespace {

constexpr std::int64_t kCnnLargeDimension = 582026;
// Every benchmark here runs at d = kCnnLargeDimension; the reporter keys runs by it.
const std::string kArgs = std::to_string(kCnnLargeDimension);
constexpr double kMinTimeSeconds = 0.3;
const char* const kCodecs[] = {"fp32", "fp16", "int8", "qsgd", "topk"};

// Small deltas, as a client update would hold; fixed seed.
std::vector<float> RandomUpdate(std::size_t dimension) {
  std::mt19937 rng(1);
  std::normal_distribution<float> value(0.0f, 1e-2f);
  std::vector<float> update(dimension);
  for (float& v : update) v = value(rng);
  return update;
}

std::unique_ptr<fedge::models::UpdateCodec> MustCreate(const std::string& name) {
  auto codec = fedge::models::CreateUpdateCodec(name);
  if (!codec.ok()) {
    std::fprintf(stderr, "%s\n", codec.status().ToString().c_str());
    std::abort();
  }
  return std::move(*codec);
}

void SetThroughput(benchmark::State& state, std::size_t dimension) {
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(dimension * 4));
}

void BM_Memcpy(benchmark::State& state) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  const std::vector<float> source = RandomUpdate(dimension);
  std::vector<float> destination(dimension, 0.0f);
  for (auto _ : state) {
    std::memcpy(destination.data(), source.data(), dimension * sizeof(float));
    benchmark::DoNotOptimize(destination.data());
    benchmark::ClobberMemory();
  }
  SetThroughput(state, dimension);
}

void BM_Encode(benchmark::State& state, const std::string& name) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  const auto codec = MustCreate(name);
  const std::vector<float> delta = RandomUpdate(dimension);
  fedge::v1::EncodedUpdate update;
  for (auto _ : state) {
    const absl::Status status = codec->Encode(delta, &update);
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(update.payload().data());
  }
  SetThroughput(state, dimension);
  state.counters["encoded_bytes"] = static_cast<double>(update.payload().size());
}

void BM_Decode(benchmark::State& state, const std::string& name) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  const auto codec = MustCreate(name);
  fedge::v1::EncodedUpdate update;
  if (const absl::Status s = codec->Encode(RandomUpdate(dimension), &update); !s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  std::vector<float> out(dimension);
  for (auto _ : state) {
    const absl::Status status = codec->Decode(update, out);
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  SetThroughput(state, dimension);
}

void BM_TopKErrorFeedbackEncode(benchmark::State& state) {
  const auto dimension = static_cast<std::size_t>(state.range(0));
  fedge::models::ErrorFeedback feedback(MustCreate("topk"), dimension);
  const std::vector<float> delta = RandomUpdate(dimension);
  fedge::v1::EncodedUpdate update;
  for (auto _ : state) {
    const absl::Status status = feedback.Encode(delta, &update);
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(update.payload().data());
  }
  SetThroughput(state, dimension);
  state.counters["encoded_bytes"] = static_cast<double>(update.payload().size());
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("memcpy", BM_Memcpy)
      ->Arg(kCnnLargeDimension)
      ->MinTime(kMinTimeSeconds);
  for (const char* codec : kCodecs) {
    const std::string name = codec;
    benchmark::RegisterBenchmark(("encode/" + name).c_str(), BM_Encode, name)
        ->Arg(kCnnLargeDimension)
        ->MinTime(kMinTimeSeconds);
    benchmark::RegisterBenchmark(("decode/" + name).c_str(), BM_Decode, name)
        ->Arg(kCnnLargeDimension)
        ->MinTime(kMinTimeSeconds);
  }
  benchmark::RegisterBenchmark("encode/topk+ef", BM_TopKErrorFeedbackEncode)
      ->Arg(kCnnLargeDimension)
      ->MinTime(kMinTimeSeconds);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fedge::bench::CapturingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const double copy = reporter.Counter("memcpy", "bytes_per_second", kArgs) / 1e9;
  const double fp32_bytes = 4.0 * kCnnLargeDimension;
  std::printf("\nupdate codecs, d = %lld (GB/s = 1e9 fp32 update bytes/s; memcpy %.2f GB/s)\n",
              static_cast<long long>(kCnnLargeDimension), copy);
  std::printf("%-8s %13s %8s %11s %11s %11s %11s\n", "codec", "encoded B", "x fp32", "enc GB/s",
              "enc/memcpy", "dec GB/s", "dec/memcpy");
  bool complete = copy > 0.0;
  std::vector<std::string> rows(std::begin(kCodecs), std::end(kCodecs));
  rows.emplace_back("topk+ef");
  for (const std::string& codec : rows) {
    const double encode = reporter.Counter("encode/" + codec, "bytes_per_second", kArgs) / 1e9;
    const double decode = reporter.Counter("decode/" + codec, "bytes_per_second", kArgs) / 1e9;
    const double bytes = reporter.Counter("encode/" + codec, "encoded_bytes", kArgs);
    if (encode <= 0.0 || bytes <= 0.0) {
      std::printf("%-8s %13s\n", codec.c_str(), "n/a");
      complete = false;
      continue;
    }
    std::printf("%-8s %13.0f %8.4f %11.2f %11.3f", codec.c_str(), bytes, bytes / fp32_bytes, encode,
                copy > 0 ? encode / copy : 0.0);
    if (decode > 0.0) {
      std::printf(" %11.2f %11.3f\n", decode, copy > 0 ? decode / copy : 0.0);
    } else {
      std::printf(" %11s %11s\n", "-", "-");
    }
  }
  return complete ? 0 : 1;
}
