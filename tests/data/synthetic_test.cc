#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "fedge/data/dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::data {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

SyntheticOptions SmallOptions() {
  SyntheticOptions options;
  options.alpha = 1.0;
  options.beta = 1.0;
  options.num_devices = 12;
  options.dimension = 20;
  options.num_classes = 5;
  options.test_fraction = 0.25;
  options.seed = 7;
  return options;
}

TEST(SyntheticTest, ShapesAndLabels) {
  const SyntheticOptions options = SmallOptions();
  absl::StatusOr<TrainTest> data = MakeSyntheticDataset(options);
  ASSERT_THAT(data, IsOk());
  for (const Dataset* split : {&data->train, &data->test}) {
    EXPECT_THAT(split->example_shape, ElementsAre(20));
    EXPECT_EQ(split->example_size(), 20);
    EXPECT_EQ(split->num_classes, 5);
    EXPECT_TRUE(split->pixels.empty());
    EXPECT_GT(split->num_examples(), 0);
    EXPECT_EQ(split->values.size(), static_cast<size_t>(split->num_examples()) * 20);
    for (int32_t label : split->labels) {
      ASSERT_GE(label, 0);
      ASSERT_LT(label, 5);
    }
    for (float v : split->values) ASSERT_TRUE(std::isfinite(v));
  }
  // The generator gives each device at least 50 examples.
  EXPECT_GE(data->train.num_examples() + data->test.num_examples(), 12 * 50);
}

TEST(SyntheticTest, TestFractionIsHeldOut) {
  const SyntheticOptions options = SmallOptions();
  absl::StatusOr<TrainTest> data = MakeSyntheticDataset(options);
  ASSERT_THAT(data, IsOk());
  const double total = static_cast<double>(data->train.num_examples() + data->test.num_examples());
  // Each device rounds its own share, so the overall fraction is off by at
  // most half an example per device.
  EXPECT_NEAR(static_cast<double>(data->test.num_examples()) / total, 0.25,
              0.5 * options.num_devices / total + 1e-12);
}

TEST(SyntheticTest, NaturalPartitionCoversTrainExactlyOnce) {
  const SyntheticOptions options = SmallOptions();
  absl::StatusOr<TrainTest> data = MakeSyntheticDataset(options);
  ASSERT_THAT(data, IsOk());
  ASSERT_EQ(data->natural_partition.size(), 12u);
  std::vector<int> seen(static_cast<size_t>(data->train.num_examples()), 0);
  for (const std::vector<int32_t>& device : data->natural_partition) {
    EXPECT_FALSE(device.empty());
    for (int32_t i : device) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, data->train.num_examples());
      ++seen[i];
    }
  }
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "train example " << i;
}

TEST(SyntheticTest, DeterministicForASeed) {
  const SyntheticOptions options = SmallOptions();
  absl::StatusOr<TrainTest> a = MakeSyntheticDataset(options);
  absl::StatusOr<TrainTest> b = MakeSyntheticDataset(options);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->train.values, b->train.values);
  EXPECT_EQ(a->train.labels, b->train.labels);
  EXPECT_EQ(a->test.values, b->test.values);
  EXPECT_EQ(a->test.labels, b->test.labels);
  EXPECT_EQ(a->natural_partition, b->natural_partition);

  SyntheticOptions other = options;
  other.seed = 8;
  absl::StatusOr<TrainTest> c = MakeSyntheticDataset(other);
  ASSERT_THAT(c, IsOk());
  EXPECT_NE(a->train.values, c->train.values);
}

// Pooled within-device variance of feature j over the train split.
double WithinDeviceVariance(const TrainTest& data, int j) {
  const int64_t dim = data.train.example_size();
  double sum_squares = 0.0;
  int64_t count = 0;
  for (const std::vector<int32_t>& device : data.natural_partition) {
    double mean = 0.0;
    for (int32_t i : device) mean += data.train.values[i * dim + j];
    mean /= static_cast<double>(device.size());
    for (int32_t i : device) {
      const double d = data.train.values[i * dim + j] - mean;
      sum_squares += d * d;
    }
    count += static_cast<int64_t>(device.size()) - 1;
  }
  return sum_squares / static_cast<double>(count);
}

TEST(SyntheticTest, FeatureVarianceFollowsTheDiagonalCovariance) {
  SyntheticOptions options = SmallOptions();
  options.dimension = 60;
  options.num_devices = 30;
  absl::StatusOr<TrainTest> data = MakeSyntheticDataset(options);
  ASSERT_THAT(data, IsOk());
  ASSERT_GT(data->train.num_examples(), 1000);
  // Sigma_jj = j^-1.2 for 1-based j: 1 for the first feature, 60^-1.2 for
  // the last.
  EXPECT_NEAR(WithinDeviceVariance(*data, 0), 1.0, 0.1);
  EXPECT_NEAR(WithinDeviceVariance(*data, 59), std::pow(60.0, -1.2), 0.1 * std::pow(60.0, -1.2));
}

// Variance across devices of each device's mean feature value.
double SpreadOfDeviceMeans(const TrainTest& data) {
  const int64_t dim = data.train.example_size();
  std::vector<double> means;
  for (const std::vector<int32_t>& device : data.natural_partition) {
    double sum = 0.0;
    for (int32_t i : device) {
      for (int64_t j = 0; j < dim; ++j) sum += data.train.values[i * dim + j];
    }
    means.push_back(sum / static_cast<double>(device.size() * dim));
  }
  const double mean = std::accumulate(means.begin(), means.end(), 0.0) / means.size();
  double variance = 0.0;
  for (double m : means) variance += (m - mean) * (m - mean);
  return variance / static_cast<double>(means.size() - 1);
}

TEST(SyntheticTest, BetaControlsInputHeterogeneity) {
  SyntheticOptions options = SmallOptions();
  options.num_devices = 30;
  options.beta = 0.0;
  absl::StatusOr<TrainTest> homogeneous = MakeSyntheticDataset(options);
  options.beta = 10.0;
  absl::StatusOr<TrainTest> heterogeneous = MakeSyntheticDataset(options);
  ASSERT_THAT(homogeneous, IsOk());
  ASSERT_THAT(heterogeneous, IsOk());
  // B_k ~ N(0, beta) shifts every feature of device k: with beta = 0 the
  // device means vary by ~1/dimension, with beta = 10 by ~100.
  EXPECT_LT(SpreadOfDeviceMeans(*homogeneous), 1.0);
  EXPECT_GT(SpreadOfDeviceMeans(*heterogeneous), 10.0);
}

TEST(SyntheticTest, NameRecordsAlphaAndBeta) {
  SyntheticOptions options = SmallOptions();
  options.alpha = 0.5;
  options.beta = 0.5;
  absl::StatusOr<TrainTest> data = MakeSyntheticDataset(options);
  ASSERT_THAT(data, IsOk());
  EXPECT_THAT(data->train.name, HasSubstr("0.5"));
  EXPECT_EQ(data->train.name, data->test.name);
}

TEST(SyntheticTest, RejectsBadOptions) {
  struct Case {
    const char* field;
    void (*mutate)(SyntheticOptions&);
  };
  const Case cases[] = {
      {"SyntheticOptions.alpha", [](SyntheticOptions& o) { o.alpha = -0.1; }},
      {"SyntheticOptions.alpha", [](SyntheticOptions& o) { o.alpha = NAN; }},
      {"SyntheticOptions.beta", [](SyntheticOptions& o) { o.beta = -1.0; }},
      {"SyntheticOptions.beta", [](SyntheticOptions& o) { o.beta = INFINITY; }},
      {"SyntheticOptions.num_devices", [](SyntheticOptions& o) { o.num_devices = 0; }},
      {"SyntheticOptions.dimension", [](SyntheticOptions& o) { o.dimension = 0; }},
      {"SyntheticOptions.num_classes", [](SyntheticOptions& o) { o.num_classes = 1; }},
      {"SyntheticOptions.test_fraction", [](SyntheticOptions& o) { o.test_fraction = 0.0; }},
      {"SyntheticOptions.test_fraction", [](SyntheticOptions& o) { o.test_fraction = 1.0; }},
  };
  for (const Case& c : cases) {
    SyntheticOptions options = SmallOptions();
    c.mutate(options);
    EXPECT_THAT(MakeSyntheticDataset(options),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)))
        << c.field;
  }
}

TEST(SyntheticTest, AcceptsTheFedProxSettings) {
  for (double ab : {0.0, 0.5, 1.0}) {
    SyntheticOptions options;  // defaults: 30 devices, 60 features, 10 classes
    options.alpha = ab;
    options.beta = ab;
    options.seed = 3;
    absl::StatusOr<TrainTest> data = MakeSyntheticDataset(options);
    ASSERT_THAT(data, IsOk()) << ab;
    EXPECT_EQ(data->natural_partition.size(), 30u);
    EXPECT_THAT(data->train.example_shape, ElementsAre(60));
  }
}

}  // namespace
}  // namespace fedge::data
