// Synthetic(alpha, beta) of Li et al. 2020 (FedProx), section 5.1.
//
// Draw order (which fixes the dataset for a seed): all device sizes, then per
// device u_k and B_k, then per device v_k, then per device W_k, b_k and its
// examples. N(m, s) below names mean m and standard deviation s, the
// parameterization of the paper's reference generator (numpy's scale).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "fedge/data/dataset.h"
#include "sampling.h"

namespace fedge::data {
namespace {

using internal::Normal;
using internal::StandardNormal;

// Examples per device: floor(lognormal(kLogMean, kLogStddev)) + kMinExamples,
// a heavy (power-law-like) tail as in the FedProx generator.
constexpr double kLogMean = 4.0;
constexpr double kLogStddev = 2.0;
constexpr int64_t kMinExamples = 50;

absl::Status ValidateOptions(const SyntheticOptions& options) {
  if (!(options.alpha >= 0.0) || !std::isfinite(options.alpha)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SyntheticOptions.alpha = %g: must be a finite value >= 0", options.alpha));
  }
  if (!(options.beta >= 0.0) || !std::isfinite(options.beta)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SyntheticOptions.beta = %g: must be a finite value >= 0", options.beta));
  }
  if (options.num_devices < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SyntheticOptions.num_devices = %d: must be >= 1", options.num_devices));
  }
  if (options.dimension < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SyntheticOptions.dimension = %d: must be >= 1", options.dimension));
  }
  if (options.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SyntheticOptions.num_classes = %d: must be >= 2", options.num_classes));
  }
  if (!(options.test_fraction > 0.0 && options.test_fraction < 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SyntheticOptions.test_fraction = %g: must be in (0, 1)", options.test_fraction));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainTest> Generate(const SyntheticOptions& options) {
  const int num_devices = options.num_devices;
  const int dim = options.dimension;
  const int num_classes = options.num_classes;
  std::mt19937_64 rng(options.seed);

  std::vector<int64_t> sizes(num_devices);
  std::vector<int64_t> test_sizes(num_devices);
  int64_t total_train = 0;
  int64_t total_test = 0;
  constexpr double kMaxExamples = std::numeric_limits<int32_t>::max();
  for (int k = 0; k < num_devices; ++k) {
    const double draw = std::floor(std::exp(Normal(rng, kLogMean, kLogStddev)));
    if (draw > kMaxExamples) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "Synthetic: device %d drew %g examples (lognormal tail); more than 2^31 - 1. Try "
          "another SyntheticOptions.seed = %d",
          k, draw, options.seed));
    }
    const int64_t n = static_cast<int64_t>(draw) + kMinExamples;
    const int64_t test =
        std::clamp<int64_t>(std::llround(options.test_fraction * static_cast<double>(n)), 1, n - 1);
    sizes[k] = n;
    test_sizes[k] = test;
    total_train += n - test;
    total_test += test;
    if (total_train > kMaxExamples || total_test > kMaxExamples) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("Synthetic: %d devices hold more than 2^31 - 1 examples; lower "
                          "SyntheticOptions.num_devices = %d",
                          k + 1, num_devices));
    }
  }

  std::vector<double> u(num_devices);       // mean of W_k and b_k entries
  std::vector<double> b_mean(num_devices);  // B_k, mean of v_k entries
  for (int k = 0; k < num_devices; ++k) u[k] = Normal(rng, 0.0, options.alpha);
  for (int k = 0; k < num_devices; ++k) b_mean[k] = Normal(rng, 0.0, options.beta);
  std::vector<double> v(static_cast<size_t>(num_devices) * dim);
  for (int k = 0; k < num_devices; ++k) {
    for (int j = 0; j < dim; ++j) v[static_cast<size_t>(k) * dim + j] = Normal(rng, b_mean[k], 1.0);
  }
  // Sigma_jj = (j + 1)^-1.2 for 0-based j, so x_j has stddev (j + 1)^-0.6.
  std::vector<double> x_stddev(dim);
  for (int j = 0; j < dim; ++j) x_stddev[j] = std::pow(static_cast<double>(j + 1), -0.6);

  TrainTest result;
  const std::string name = absl::StrFormat("synthetic(%g,%g)", options.alpha, options.beta);
  for (Dataset* split : {&result.train, &result.test}) {
    split->name = name;
    split->example_shape = {dim};
    split->num_classes = num_classes;
  }
  result.train.values.reserve(static_cast<size_t>(total_train) * dim);
  result.train.labels.reserve(static_cast<size_t>(total_train));
  result.test.values.reserve(static_cast<size_t>(total_test) * dim);
  result.test.labels.reserve(static_cast<size_t>(total_test));
  result.natural_partition.resize(num_devices);

  std::vector<double> weights(static_cast<size_t>(dim) * num_classes);  // W_k, row-major [j][c]
  std::vector<double> bias(num_classes);
  std::vector<double> x(dim);
  std::vector<double> logits(num_classes);
  for (int k = 0; k < num_devices; ++k) {
    for (double& w : weights) w = Normal(rng, u[k], 1.0);
    for (double& b : bias) b = Normal(rng, u[k], 1.0);
    const int64_t num_train = sizes[k] - test_sizes[k];
    std::vector<int32_t>& device_indices = result.natural_partition[k];
    device_indices.reserve(static_cast<size_t>(num_train));
    for (int64_t i = 0; i < sizes[k]; ++i) {
      for (int j = 0; j < dim; ++j) {
        x[j] = v[static_cast<size_t>(k) * dim + j] + x_stddev[j] * StandardNormal(rng);
      }
      logits = bias;
      for (int j = 0; j < dim; ++j) {
        const double* row = weights.data() + static_cast<size_t>(j) * num_classes;
        for (int c = 0; c < num_classes; ++c) logits[c] += row[c] * x[j];
      }
      // softmax is monotone, so its argmax is the logits' argmax.
      const int32_t label =
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      Dataset& split = i < num_train ? result.train : result.test;
      if (i < num_train) device_indices.push_back(static_cast<int32_t>(split.labels.size()));
      for (int j = 0; j < dim; ++j) split.values.push_back(static_cast<float>(x[j]));
      split.labels.push_back(label);
    }
  }
  return result;
}

}  // namespace

absl::StatusOr<TrainTest> MakeSyntheticDataset(const SyntheticOptions& options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  try {
    return Generate(options);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "Synthetic: out of memory generating %d devices x %d features (SyntheticOptions)",
        options.num_devices, options.dimension));
  }
}

}  // namespace fedge::data
