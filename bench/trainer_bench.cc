// Local training overhead: fedge's Trainer against a plain LibTorch training
// loop on the same model architecture, data, batch order and thread count,
// measured alternately in the same run. Prints the median epoch time of
// each and their ratio (target: <= 1.05).
//
//   fedge_trainer_bench [--model cnn] [--examples 3000] [--reps 7]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "bench_data.h"
#include "fedge/client/trainer.h"
#include "fedge/models/model_instance.h"

namespace {

using Clock = std::chrono::steady_clock;

// What a LibTorch user writes by hand: model, SGD, shuffled minibatches.
double PlainEpoch(fedge::models::Network& net, const fedge::client::ExampleStore& store,
                  const torch::Tensor& local_indices, const fedge::v1::TrainConfig& config) {
  const Clock::time_point start = Clock::now();
  net.train();
  torch::optim::SGD optimizer(net.parameters(), torch::optim::SGDOptions(config.learning_rate())
                                                    .momentum(config.momentum())
                                                    .weight_decay(config.weight_decay()));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(config.seed());
  const int64_t n = local_indices.size(0);
  const torch::Tensor order =
      local_indices.index_select(0, torch::randperm(n, generator, torch::kInt64));
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t s = 0; s < n; s += config.batch_size()) {
    torch::Tensor idx = order.narrow(0, s, std::min<int64_t>(config.batch_size(), n - s));
    torch::Tensor x = store.GatherFeatures(idx);
    torch::Tensor y = store.GatherLabels(idx);
    optimizer.zero_grad();
    torch::Tensor logits = net.forward(x);
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
    loss.backward();
    optimizer.step();
    loss_sum += loss.item<double>() * idx.size(0);
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  volatile double sink = loss_sum + correct;
  (void)sink;
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "cnn";
  int64_t examples = 3000;
  int reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--model") model = argv[i + 1];
    if (flag == "--examples") examples = std::stoll(argv[i + 1]);
    if (flag == "--reps") reps = std::stoi(argv[i + 1]);
  }
  fedge::models::SetComputeThreads(1);
  fedge::bench::BenchData data = fedge::bench::LoadBenchData();
  examples = std::min<int64_t>(examples, data.train->size());

  const fedge::models::ModelSpec spec{model, {1, 28, 28}, 10};
  auto fedge_model = fedge::models::ModelInstance::Create(spec, 1);
  auto plain_model = fedge::models::CreateModel(spec, 1);
  if (!fedge_model.ok() || !plain_model.ok()) {
    std::fprintf(stderr, "cannot build model '%s'\n", model.c_str());
    return 1;
  }
  auto indices = std::make_shared<std::vector<int32_t>>(examples);
  std::iota(indices->begin(), indices->end(), 0);
  const fedge::client::LocalDataset local{data.train, indices};
  const torch::Tensor local_indices = torch::arange(examples, torch::kInt64);

  fedge::v1::TrainConfig config;
  config.set_local_epochs(1);
  config.set_batch_size(32);
  config.set_learning_rate(0.01f);
  config.set_seed(3);

  const fedge::client::Trainer trainer;
  std::vector<double> fedge_times, plain_times;
  // One warm-up of each, then alternate so drift in machine speed hits both.
  PlainEpoch(**plain_model, *data.train, local_indices, config);
  (void)trainer.Fit(**fedge_model, local, config);
  for (int r = 0; r < reps; ++r) {
    plain_times.push_back(PlainEpoch(**plain_model, *data.train, local_indices, config));
    const Clock::time_point start = Clock::now();
    auto update = trainer.Fit(**fedge_model, local, config);
    fedge_times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    if (!update.ok()) {
      std::fprintf(stderr, "Trainer failed: %s\n", std::string(update.status().message()).c_str());
      return 1;
    }
  }
  const double fedge_median = Median(fedge_times);
  const double plain_median = Median(plain_times);
  std::printf("trainer_overhead model=%s data=%s examples=%lld batch=32 threads=1 reps=%d\n",
              model.c_str(), data.source.c_str(), static_cast<long long>(examples), reps);
  std::printf("  plain LibTorch epoch: %.4f s (median)\n", plain_median);
  std::printf("  fedge Trainer epoch:  %.4f s (median)\n", fedge_median);
  std::printf("  ratio fedge/plain:    %.3f (target <= 1.05)\n", fedge_median / plain_median);
  return 0;
}
