// Baseline for the simulation-overhead benchmark: one FedAvg round done with
// plain LibTorch loops and std::threads, no fedge machinery: K clients with
// IID shards (the same shards fedge-sim draws for the same seed) train
// locally for E epochs on `threads` threads, their models are averaged by
// example count, and the result is evaluated on the test split, split over
// the same threads. Prints each round's wall time and the process's peak RSS.
//
//   fedge_plain_round [--clients 10] [--model cnn-large] [--threads 2]
//                     [--rounds 3] [--epochs 1] [--batch 32] [--lr 0.05]
//                     [--seed 42] [--eval-batch 256]
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_data.h"
#include "fedge/data/partition.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/model_zoo.h"

namespace {

using Clock = std::chrono::steady_clock;

void LoadInto(torch::nn::Module& net, const std::vector<torch::Tensor>& weights) {
  torch::NoGradGuard no_grad;
  auto params = net.parameters();
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(weights[i]);
}

}  // namespace

int main(int argc, char** argv) {
  int clients = 10, threads = 2, rounds = 3, epochs = 1, batch = 32, eval_batch = 256;
  float lr = 0.05f;
  uint64_t seed = 42;
  std::string model = "cnn-large";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--clients") clients = std::stoi(value);
    if (flag == "--model") model = value;
    if (flag == "--threads") threads = std::stoi(value);
    if (flag == "--rounds") rounds = std::stoi(value);
    if (flag == "--epochs") epochs = std::stoi(value);
    if (flag == "--batch") batch = std::stoi(value);
    if (flag == "--lr") lr = std::stof(value);
    if (flag == "--seed") seed = std::stoull(value);
    if (flag == "--eval-batch") eval_batch = std::stoi(value);
  }
  fedge::models::SetComputeThreads(1);
  fedge::bench::BenchData data = fedge::bench::LoadBenchData();

  std::vector<int32_t> labels(data.train->size());
  auto label_tensor = data.train->labels().to(torch::kInt32);
  std::copy_n(label_tensor.data_ptr<int32_t>(), labels.size(), labels.begin());
  fedge::data::PartitionOptions partition_options;
  partition_options.method = "iid";
  partition_options.num_clients = clients;
  partition_options.seed = seed;
  auto shards = fedge::data::PartitionExamples(labels, 10, partition_options);
  if (!shards.ok()) return 1;

  const fedge::models::ModelSpec spec{model, {1, 28, 28}, 10};
  std::vector<fedge::models::NetworkPtr> nets;
  for (int t = 0; t < threads; ++t) nets.push_back(*fedge::models::CreateModel(spec, seed));
  std::vector<torch::Tensor> global;
  for (const auto& p : nets[0]->parameters()) global.push_back(p.detach().clone());

  std::printf("plain_round model=%s clients=%d threads=%d epochs=%d batch=%d data=%s\n",
              model.c_str(), clients, threads, epochs, batch, data.source.c_str());
  for (int r = 1; r <= rounds; ++r) {
    const Clock::time_point start = Clock::now();
    std::vector<torch::Tensor> sum;
    for (const auto& g : global) sum.push_back(torch::zeros_like(g));
    double total = 0;
    std::mutex mu;
    std::atomic<int> next{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        fedge::models::SetComputeThreads(1);
        torch::nn::Module& net = *nets[t];
        for (int c = next++; c < clients; c = next++) {
          LoadInto(net, global);
          net.train();
          torch::optim::SGD sgd(net.parameters(), torch::optim::SGDOptions(lr));
          const auto& shard = (*shards)[c];
          torch::Tensor own = torch::from_blob(const_cast<int32_t*>(shard.data()),
                                               {static_cast<int64_t>(shard.size())}, torch::kInt32)
                                  .to(torch::kInt64);
          auto generator = at::make_generator<at::CPUGeneratorImpl>(seed + r * 1000 + c);
          const int64_t n = own.size(0);
          for (int e = 0; e < epochs; ++e) {
            torch::Tensor order = own.index_select(0, torch::randperm(n, generator, torch::kInt64));
            for (int64_t s = 0; s < n; s += batch) {
              torch::Tensor idx = order.narrow(0, s, std::min<int64_t>(batch, n - s));
              torch::Tensor x = data.train->GatherFeatures(idx);
              torch::Tensor y = data.train->GatherLabels(idx);
              sgd.zero_grad();
              torch::Tensor loss = torch::nn::functional::cross_entropy(nets[t]->forward(x), y);
              loss.backward();
              sgd.step();
            }
          }
          std::lock_guard<std::mutex> lock(mu);
          torch::NoGradGuard no_grad;
          auto params = net.parameters();
          for (size_t i = 0; i < params.size(); ++i) sum[i].add_(params[i], static_cast<double>(n));
          total += static_cast<double>(n);
        }
      });
    }
    for (auto& w : workers) w.join();
    for (size_t i = 0; i < global.size(); ++i) global[i] = sum[i] / total;

    // Evaluate the averaged model on the test split, split over the threads.
    std::atomic<int64_t> correct{0};
    workers.clear();
    const int64_t test_n = data.test->size();
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        fedge::models::SetComputeThreads(1);
        torch::NoGradGuard no_grad;
        LoadInto(*nets[t], global);
        nets[t]->eval();
        const int64_t begin = test_n * t / threads, end = test_n * (t + 1) / threads;
        for (int64_t s = begin; s < end; s += eval_batch) {
          torch::Tensor idx = torch::arange(s, std::min<int64_t>(s + eval_batch, end), torch::kInt64);
          torch::Tensor logits = nets[t]->forward(data.test->GatherFeatures(idx));
          torch::Tensor y = data.test->GatherLabels(idx);
          torch::nn::functional::cross_entropy(logits, y);
          correct += logits.argmax(1).eq(y).sum().item<int64_t>();
        }
      });
    }
    for (auto& w : workers) w.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("round %d: %.3f s, test accuracy %.4f\n", r, seconds,
                static_cast<double>(correct) / static_cast<double>(test_n));
  }
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("peak RSS %.1f MB\n", usage.ru_maxrss / 1024.0);
  return 0;
}
