// Shared set-up for the LibTorch benchmarks: Fashion-MNIST when the Debian
// package is installed, otherwise a generated stand-in of the same shape
// (the benchmark says which it used).
#ifndef FEDGE_BENCH_BENCH_DATA_H_
#define FEDGE_BENCH_BENCH_DATA_H_

#include <torch/torch.h>

#include <iostream>
#include <memory>
#include <string>

#include "fedge/client/dataset_store.h"
#include "fedge/client/local_data.h"
#include "fedge/data/dataset.h"

namespace fedge::bench {

struct BenchData {
  std::shared_ptr<const client::ExampleStore> train;
  std::shared_ptr<const client::ExampleStore> test;
  std::string source;
};

inline BenchData LoadBenchData() {
  BenchData data;
  auto fmnist = data::ReadIdxDataset(data::kDefaultFashionMnistDir, "fashion-mnist");
  if (fmnist.ok()) {
    data.train = *client::MakeExampleStore(std::move(fmnist->train));
    data.test = *client::MakeExampleStore(std::move(fmnist->test));
    data.source = "Fashion-MNIST";
    return data;
  }
  std::cerr << "bench: Fashion-MNIST unavailable (" << fmnist.status().message()
            << "); using generated 28x28 images\n";
  torch::manual_seed(0);
  auto make = [](int64_t n) {
    torch::Tensor x = torch::randint(0, 256, {n, 1, 28, 28}, torch::kUInt8);
    torch::Tensor y = torch::randint(0, 10, {n}, torch::kInt64);
    return *client::ExampleStore::Create(x, y, 10, 0.5f, 0.3f);
  };
  data.train = make(60000);
  data.test = make(10000);
  data.source = "generated";
  return data;
}

}  // namespace fedge::bench

#endif  // FEDGE_BENCH_BENCH_DATA_H_
