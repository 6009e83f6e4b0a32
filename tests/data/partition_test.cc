#include "fedge/data/partition.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::data {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// `per_class` examples of each of `num_classes` classes, in a seeded random
// order.
std::vector<int32_t> BalancedLabels(int num_classes, int per_class, uint64_t seed) {
  std::vector<int32_t> labels;
  for (int c = 0; c < num_classes; ++c) labels.insert(labels.end(), per_class, c);
  std::mt19937_64 rng(seed);
  std::shuffle(labels.begin(), labels.end(), rng);
  return labels;
}

// Fails unless every index in [0, n) appears in exactly one client.
void ExpectEachExampleOnce(const Partition& partition, size_t n) {
  std::vector<int> seen(n, 0);
  for (const std::vector<int32_t>& client : partition) {
    for (int32_t i : client) {
      ASSERT_GE(i, 0);
      ASSERT_LT(static_cast<size_t>(i), n);
      ++seen[i];
    }
  }
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1) << "example " << i;
}

PartitionOptions Options(const std::string& method, int num_clients, uint64_t seed) {
  PartitionOptions options;
  options.method = method;
  options.num_clients = num_clients;
  options.seed = seed;
  return options;
}

TEST(PartitionMethodsTest, ListsEveryBuiltInSorted) {
  EXPECT_THAT(PartitionMethods(), ElementsAre("dirichlet", "iid", "quantity-skew", "shards"));
}

class EveryMethodTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryMethodTest, AssignsEveryExampleExactlyOnce) {
  const std::vector<int32_t> labels = BalancedLabels(10, 300, /*seed=*/1);
  absl::StatusOr<Partition> partition = PartitionExamples(labels, 10, Options(GetParam(), 20, 5));
  ASSERT_THAT(partition, IsOk());
  EXPECT_EQ(partition->size(), 20u);
  ExpectEachExampleOnce(*partition, labels.size());
}

TEST_P(EveryMethodTest, DeterministicForASeed) {
  const std::vector<int32_t> labels = BalancedLabels(10, 300, /*seed=*/2);
  absl::StatusOr<Partition> a = PartitionExamples(labels, 10, Options(GetParam(), 20, 11));
  absl::StatusOr<Partition> b = PartitionExamples(labels, 10, Options(GetParam(), 20, 11));
  absl::StatusOr<Partition> c = PartitionExamples(labels, 10, Options(GetParam(), 20, 12));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
}

TEST_P(EveryMethodTest, OneClientGetsEverything) {
  const std::vector<int32_t> labels = BalancedLabels(3, 10, /*seed=*/3);
  absl::StatusOr<Partition> partition = PartitionExamples(labels, 3, Options(GetParam(), 1, 0));
  ASSERT_THAT(partition, IsOk());
  ASSERT_EQ(partition->size(), 1u);
  ExpectEachExampleOnce(*partition, labels.size());
}

TEST_P(EveryMethodTest, FashionMnistSizedCaseGivesEveryClientExamples) {
  // Fashion-MNIST-sized: 60,000 labels over 10,000 clients. (How long this
  // takes is measured by the simulation benchmarks, not asserted here.)
  const std::vector<int32_t> labels = BalancedLabels(10, 6000, /*seed=*/4);
  // Defaults otherwise: alpha 0.5, 2 shards per client, at least 1 example.
  const PartitionOptions options = Options(GetParam(), 10000, 9);
  absl::StatusOr<Partition> partition = PartitionExamples(labels, 10, options);
  ASSERT_THAT(partition, IsOk());
  ASSERT_EQ(partition->size(), 10000u);
  ExpectEachExampleOnce(*partition, labels.size());
  for (const std::vector<int32_t>& client : *partition) ASSERT_FALSE(client.empty());
}

INSTANTIATE_TEST_SUITE_P(Partition, EveryMethodTest,
                         ::testing::Values("iid", "dirichlet", "shards", "quantity-skew"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(IidPartitionTest, SizesDifferByAtMostOne) {
  const std::vector<int32_t> labels = BalancedLabels(10, 601, /*seed=*/5);  // 6010 examples
  absl::StatusOr<Partition> partition = PartitionExamples(labels, 10, Options("iid", 7, 1));
  ASSERT_THAT(partition, IsOk());
  size_t smallest = labels.size();
  size_t largest = 0;
  for (const std::vector<int32_t>& client : *partition) {
    smallest = std::min(smallest, client.size());
    largest = std::max(largest, client.size());
  }
  EXPECT_LE(largest - smallest, 1u);
  EXPECT_EQ(smallest, 6010u / 7);
  EXPECT_LT(MeanLabelSkew(*partition, labels, 10), 0.05);
}

TEST(DirichletPartitionTest, LabelSkewGrowsAsAlphaShrinks) {
  const std::vector<int32_t> labels = BalancedLabels(10, 600, /*seed=*/6);
  double previous = -1.0;
  for (double alpha : {100.0, 1.0, 0.1}) {
    PartitionOptions options = Options("dirichlet", 20, 3);
    options.alpha = alpha;
    absl::StatusOr<Partition> partition = PartitionExamples(labels, 10, options);
    ASSERT_THAT(partition, IsOk()) << alpha;
    const double skew = MeanLabelSkew(*partition, labels, 10);
    EXPECT_GT(skew, previous) << "alpha " << alpha;
    previous = skew;
  }
  // Dir(0.1) over 20 clients: most of a client's data comes from one or two
  // classes.
  EXPECT_GT(previous, 0.5);
}

TEST(DirichletPartitionTest, HonoursMinimumClientSize) {
  const std::vector<int32_t> labels = BalancedLabels(10, 100, /*seed=*/7);
  PartitionOptions options = Options("dirichlet", 10, 4);
  options.alpha = 1.0;
  options.min_examples_per_client = 40;
  absl::StatusOr<Partition> partition = PartitionExamples(labels, 10, options);
  ASSERT_THAT(partition, IsOk());
  for (const std::vector<int32_t>& client : *partition) EXPECT_GE(client.size(), 40u);
  ExpectEachExampleOnce(*partition, labels.size());
}

TEST(DirichletPartitionTest, FailsWhenTheMinimumCannotBeMet) {
  // Dir(0.01) puts nearly a whole class on one client; 100 clients with
  // at least 59 of 6000 examples each is practically never drawn.
  const std::vector<int32_t> labels = BalancedLabels(10, 600, /*seed=*/8);
  PartitionOptions options = Options("dirichlet", 100, 1);
  options.alpha = 0.01;
  options.min_examples_per_client = 59;
  EXPECT_THAT(PartitionExamples(labels, 10, options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("min_examples_per_client = 59"), HasSubstr("alpha"))));
}

TEST(DirichletPartitionTest, TinyAlphaStillPartitions) {
  // Gamma(0.001) draws underflow as plain doubles.
  const std::vector<int32_t> labels = BalancedLabels(4, 50, /*seed=*/9);
  PartitionOptions options = Options("dirichlet", 5, 2);
  options.alpha = 0.001;
  options.min_examples_per_client = 0;
  absl::StatusOr<Partition> partition = PartitionExamples(labels, 4, options);
  ASSERT_THAT(partition, IsOk());
  ExpectEachExampleOnce(*partition, labels.size());
}

TEST(ShardsPartitionTest, EachClientSeesAtMostKClasses) {
  // Labels already sorted; 600 per class cut into 100 shards of 60, so no
  // shard straddles two classes.
  std::vector<int32_t> labels;
  for (int c = 0; c < 10; ++c) labels.insert(labels.end(), 600, c);
  struct Case {
    int shards_per_client;
    int num_clients;
  };
  // 100, 100 and 60 shards: 60, 60 and 100 examples each.
  for (const Case& c : {Case{1, 100}, Case{2, 50}, Case{3, 20}}) {
    const int k = c.shards_per_client;
    PartitionOptions options = Options("shards", c.num_clients, 5);
    options.shards_per_client = k;
    absl::StatusOr<Partition> partition = PartitionExamples(labels, 10, options);
    ASSERT_THAT(partition, IsOk()) << k;
    ExpectEachExampleOnce(*partition, labels.size());
    for (const std::vector<int32_t>& client : *partition) {
      std::set<int32_t> classes;
      for (int32_t i : client) classes.insert(labels[i]);
      EXPECT_LE(classes.size(), static_cast<size_t>(k));
      EXPECT_EQ(client.size(), labels.size() / (options.num_clients * k) * k);
    }
  }
}

TEST(ShardsPartitionTest, UnsortedInputIsSortedFirst) {
  const std::vector<int32_t> labels = BalancedLabels(10, 600, /*seed=*/10);
  PartitionOptions options = Options("shards", 50, 6);
  options.shards_per_client = 2;
  absl::StatusOr<Partition> partition = PartitionExamples(labels, 10, options);
  ASSERT_THAT(partition, IsOk());
  for (const std::vector<int32_t>& client : *partition) {
    std::set<int32_t> classes;
    for (int32_t i : client) classes.insert(labels[i]);
    EXPECT_LE(classes.size(), 2u);
  }
}

TEST(QuantitySkewPartitionTest, SizesVaryButLabelsStayIid) {
  const std::vector<int32_t> labels = BalancedLabels(10, 1000, /*seed=*/11);
  PartitionOptions options = Options("quantity-skew", 20, 7);
  options.alpha = 1.0;
  options.min_examples_per_client = 100;
  absl::StatusOr<Partition> partition = PartitionExamples(labels, 10, options);
  ASSERT_THAT(partition, IsOk());
  size_t smallest = labels.size();
  size_t largest = 0;
  for (const std::vector<int32_t>& client : *partition) {
    smallest = std::min(smallest, client.size());
    largest = std::max(largest, client.size());
  }
  EXPECT_GE(smallest, 100u);
  EXPECT_GT(largest, 3 * smallest);

  PartitionOptions label_skewed = options;
  label_skewed.method = "dirichlet";
  label_skewed.alpha = 0.1;
  label_skewed.min_examples_per_client = 1;
  absl::StatusOr<Partition> skewed = PartitionExamples(labels, 10, label_skewed);
  ASSERT_THAT(skewed, IsOk());
  const double quantity_skew = MeanLabelSkew(*partition, labels, 10);
  EXPECT_LT(quantity_skew, 0.15);
  EXPECT_LT(quantity_skew, MeanLabelSkew(*skewed, labels, 10) / 3);
}

TEST(MeanLabelSkewTest, HandComputedValues) {
  // Global distribution: half class 0, half class 1.
  const std::vector<int32_t> labels = {0, 0, 1, 1};
  // Each client holds one class: TV = 0.5 * (|1 - 0.5| + |0 - 0.5|) = 0.5.
  EXPECT_DOUBLE_EQ(MeanLabelSkew({{0, 1}, {2, 3}}, labels, 2), 0.5);
  // Each client mirrors the global mix.
  EXPECT_DOUBLE_EQ(MeanLabelSkew({{0, 2}, {1, 3}}, labels, 2), 0.0);
  // Global 3/4 class 0: an all-0 client is 0.25 away, an all-1 client 0.75;
  // the empty client is left out of the mean.
  EXPECT_DOUBLE_EQ(MeanLabelSkew({{0, 1}, {}, {2}, {3}}, std::vector<int32_t>{0, 0, 1, 0}, 2),
                   (0.25 + 0.75 + 0.25) / 3);
  EXPECT_DOUBLE_EQ(MeanLabelSkew({}, labels, 2), 0.0);
}

TEST(PartitionValidationTest, NumClients) {
  const std::vector<int32_t> labels = BalancedLabels(2, 5, 0);
  EXPECT_THAT(
      PartitionExamples(labels, 2, Options("iid", 0, 0)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PartitionOptions.num_clients = 0")));
  EXPECT_THAT(PartitionExamples(labels, 2, Options("dirichlet", 11, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("PartitionOptions.num_clients = 11"), HasSubstr("10"))));
  EXPECT_THAT(
      PartitionExamples({}, 2, Options("iid", 1, 0)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PartitionOptions.num_clients = 1")));
}

TEST(PartitionValidationTest, Alpha) {
  const std::vector<int32_t> labels = BalancedLabels(2, 5, 0);
  for (const char* method : {"dirichlet", "quantity-skew"}) {
    for (double alpha : {0.0, -1.0, std::nan(""), HUGE_VAL}) {
      PartitionOptions options = Options(method, 2, 0);
      options.alpha = alpha;
      EXPECT_THAT(PartitionExamples(labels, 2, options),
                  StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PartitionOptions.alpha")))
          << method << " alpha " << alpha;
    }
  }
  // Methods that do not use alpha ignore it.
  PartitionOptions iid = Options("iid", 2, 0);
  iid.alpha = 0.0;
  EXPECT_THAT(PartitionExamples(labels, 2, iid), IsOk());
}

TEST(PartitionValidationTest, MinExamplesPerClient) {
  const std::vector<int32_t> labels = BalancedLabels(2, 5, 0);
  PartitionOptions negative = Options("dirichlet", 2, 0);
  negative.min_examples_per_client = -1;
  EXPECT_THAT(PartitionExamples(labels, 2, negative),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PartitionOptions.min_examples_per_client = -1")));
  PartitionOptions impossible = Options("quantity-skew", 3, 0);
  impossible.min_examples_per_client = 4;  // 3 * 4 > 10 examples
  EXPECT_THAT(PartitionExamples(labels, 2, impossible),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PartitionOptions.min_examples_per_client = 4")));
}

TEST(PartitionValidationTest, ShardsPerClient) {
  const std::vector<int32_t> labels = BalancedLabels(2, 5, 0);
  PartitionOptions zero = Options("shards", 2, 0);
  zero.shards_per_client = 0;
  EXPECT_THAT(PartitionExamples(labels, 2, zero),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PartitionOptions.shards_per_client = 0")));
  PartitionOptions too_many = Options("shards", 4, 0);
  too_many.shards_per_client = 3;  // 12 shards of 10 examples
  EXPECT_THAT(
      PartitionExamples(labels, 2, too_many),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("PartitionOptions.shards_per_client = 3"), HasSubstr("12"))));
}

TEST(PartitionValidationTest, UnknownMethodListsKnownOnes) {
  const std::vector<int32_t> labels = BalancedLabels(2, 5, 0);
  EXPECT_THAT(PartitionExamples(labels, 2, Options("pathological", 2, 0)),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("pathological"),
                             HasSubstr("dirichlet, iid, quantity-skew, shards"))));
}

TEST(PartitionValidationTest, Labels) {
  EXPECT_THAT(PartitionExamples(std::vector<int32_t>{0, 1, 2}, 2, Options("iid", 1, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels[2] = 2")));
  EXPECT_THAT(PartitionExamples(std::vector<int32_t>{0, -1}, 2, Options("iid", 1, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels[1] = -1")));
  EXPECT_THAT(PartitionExamples(std::vector<int32_t>{0}, 0, Options("iid", 1, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_classes = 0")));
}

}  // namespace
}  // namespace fedge::data
