#include "fedge/privacy/mechanism.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fedge/privacy/accountant.h"
#include "fedge/privacy/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kSamples = 100000;
// Kolmogorov–Smirnov critical value at significance 0.001: 1.949 / sqrt(n).
const double kKsCritical = 1.949 / std::sqrt(static_cast<double>(kSamples));

double KolmogorovSmirnov(std::vector<double> samples, const std::function<double(double)>& cdf) {
  std::sort(samples.begin(), samples.end());
  const double n = static_cast<double>(samples.size());
  double d = 0.0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const double f = cdf(samples[i]);
    d = std::max({d, f - static_cast<double>(i) / n, static_cast<double>(i + 1) / n - f});
  }
  return d;
}

struct Moments {
  double mean = 0.0;
  double variance = 0.0;
};

template <typename T>
Moments MomentsOf(const std::vector<T>& samples) {
  Moments m;
  for (T x : samples) m.mean += static_cast<double>(x);
  m.mean /= static_cast<double>(samples.size());
  for (T x : samples) m.variance += (static_cast<double>(x) - m.mean) * (x - m.mean);
  m.variance /= static_cast<double>(samples.size() - 1);
  return m;
}

std::vector<float> NoiseOnZeros(const Mechanism& mechanism, uint64_t seed) {
  std::vector<float> values(kSamples, 0.0f);
  SeededRandom random(seed);
  EXPECT_TRUE(mechanism.AddNoise(std::span<float>(values), random).ok());
  return values;
}

std::vector<int64_t> IntegerNoiseOnZeros(const Mechanism& mechanism, uint64_t seed, int n) {
  std::vector<int64_t> values(n, 0);
  SeededRandom random(seed);
  EXPECT_TRUE(mechanism.AddNoise(std::span<int64_t>(values), random).ok());
  return values;
}

TEST(RandomTest, SecureRandomIsNotConstant) {
  SecureRandom random;
  std::set<uint64_t> words;
  int ones = 0;
  for (int i = 0; i < 1000; ++i) {  // crosses several buffer refills
    const uint64_t word = random.Next();
    words.insert(word);
    ones += __builtin_popcountll(word);
  }
  EXPECT_EQ(words.size(), 1000u);
  EXPECT_NEAR(ones / 64000.0, 0.5, 0.01);
}

TEST(RandomTest, DefaultRandomIsAPerThreadSecureRandom) {
  RandomSource& random = DefaultRandom();
  EXPECT_NE(dynamic_cast<SecureRandom*>(&random), nullptr);
  EXPECT_EQ(&random, &DefaultRandom());
  EXPECT_NE(random.Next(), random.Next());
}

TEST(RandomTest, SeededRandomIsReproducible) {
  SeededRandom a(7), b(7), c(8);
  const uint64_t first = a.Next();
  EXPECT_EQ(first, b.Next());
  EXPECT_NE(first, c.Next());
}

TEST(RandomTest, UniformBelowIsInRangeAndCoversIt) {
  SeededRandom random(3);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[UniformBelow(random, 7)];
  for (int count : counts) EXPECT_NEAR(count, 10000, 500);
}

TEST(RandomTest, BernoulliExpMinusHasTheRightMean) {
  SeededRandom random(11);
  for (auto [num, den] : {std::pair{1, 3}, std::pair{5, 2}, std::pair{0, 1}}) {
    const int n = 100000;
    int hits = 0;
    for (int i = 0; i < n; ++i) hits += BernoulliExpMinus(random, num, den) ? 1 : 0;
    const double p = std::exp(-static_cast<double>(num) / den);
    EXPECT_NEAR(hits / static_cast<double>(n), p, 5 * std::sqrt(p * (1 - p) / n) + 1e-12);
  }
}

TEST(RandomTest, DiscreteLaplaceMatchesItsPmf) {
  // P[x] = (1 - e^{-1/t}) / (1 + e^{-1/t}) · e^{-|x|/t}; Var = 2e^{-1/t} / (1 - e^{-1/t})².
  for (uint64_t scale : {1u, 4u}) {
    SeededRandom random(12);
    const int n = 50000;
    std::vector<int64_t> samples(n);
    for (int64_t& x : samples) x = SampleDiscreteLaplace(random, scale);
    const double r = std::exp(-1.0 / static_cast<double>(scale));
    const double variance = 2 * r / ((1 - r) * (1 - r));
    const Moments m = MomentsOf(samples);
    EXPECT_NEAR(m.mean, 0.0, 5 * std::sqrt(variance / n)) << scale;
    EXPECT_NEAR(m.variance, variance, 0.05 * variance) << scale;
    const double p0 = (1 - r) / (1 + r);
    const double zeros = static_cast<double>(std::count(samples.begin(), samples.end(), 0));
    EXPECT_NEAR(zeros / n, p0, 5 * std::sqrt(p0 * (1 - p0) / n)) << scale;
  }
}

TEST(MechanismRegistryTest, ListsBuiltInsAndRejectsUnknown) {
  EXPECT_THAT(RegisteredMechanisms(),
              ElementsAre("discrete-gaussian", "gaussian", "laplace", "none"));
  EXPECT_THAT(CreateMechanism("skellam", MechanismOptions{}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("discrete-gaussian, gaussian, laplace, none")));
}

TEST(MechanismOptionsTest, ValidatesEachField) {
  using absl::StatusCode::kInvalidArgument;
  MechanismOptions options;
  options.noise_multiplier = 0.0;
  for (const char* name : {"gaussian", "laplace", "discrete-gaussian"}) {
    EXPECT_THAT(CreateMechanism(name, options),
                StatusIs(kInvalidArgument, HasSubstr("noise_multiplier")))
        << name;
  }
  FEDGE_EXPECT_OK(CreateMechanism("none", options));
  options = MechanismOptions{};
  options.noise_multiplier = std::numeric_limits<double>::infinity();
  EXPECT_THAT(CreateMechanism("gaussian", options),
              StatusIs(kInvalidArgument, HasSubstr("noise_multiplier")));

  options = MechanismOptions{};
  options.l2_sensitivity = -1.0;
  EXPECT_THAT(CreateMechanism("gaussian", options),
              StatusIs(kInvalidArgument, HasSubstr("l2_sensitivity")));
  EXPECT_THAT(CreateMechanism("discrete-gaussian", options),
              StatusIs(kInvalidArgument, HasSubstr("l2_sensitivity")));
  FEDGE_EXPECT_OK(CreateMechanism("laplace", options));  // laplace reads l1 only

  options = MechanismOptions{};
  options.l1_sensitivity = 0.0;
  EXPECT_THAT(CreateMechanism("laplace", options),
              StatusIs(kInvalidArgument, HasSubstr("l1_sensitivity")));

  options = MechanismOptions{};
  options.delta = 1.0;
  EXPECT_THAT(CreateMechanism("gaussian", options), StatusIs(kInvalidArgument, HasSubstr("delta")));
  EXPECT_THAT(CreateMechanism("discrete-gaussian", options),
              StatusIs(kInvalidArgument, HasSubstr("delta")));

  options = MechanismOptions{};
  options.relation = static_cast<NeighbouringRelation>(7);
  EXPECT_THAT(CreateMechanism("gaussian", options),
              StatusIs(kInvalidArgument, HasSubstr("relation")));

  options = MechanismOptions{};
  options.noise_multiplier = 2e4;
  EXPECT_THAT(CreateMechanism("discrete-gaussian", options),
              StatusIs(kInvalidArgument, HasSubstr("noise_multiplier * l2_sensitivity")));
}

TEST(NoneMechanismTest, AddsNothing) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto mechanism, CreateMechanism("none", MechanismOptions{}));
  std::vector<float> floats = {1.5f, -2.0f, 3.25f};
  std::vector<int64_t> ints = {7, -9};
  SeededRandom random(1);
  FEDGE_ASSERT_OK(mechanism->AddNoise(std::span<float>(floats), random));
  FEDGE_ASSERT_OK(mechanism->AddNoise(std::span<int64_t>(ints), random));
  EXPECT_THAT(floats, ElementsAre(1.5f, -2.0f, 3.25f));
  EXPECT_THAT(ints, ElementsAre(7, -9));
  EXPECT_TRUE(std::isinf(mechanism->GetGuarantee().epsilon));
}

TEST(GaussianMechanismTest, MatchesNormalDistribution) {
  MechanismOptions options;
  options.noise_multiplier = 1.5;
  options.l2_sensitivity = 2.0;  // std 3
  FEDGE_ASSERT_OK_AND_ASSIGN(auto mechanism, CreateMechanism("gaussian", options));
  const std::vector<float> noise = NoiseOnZeros(*mechanism, 42);
  const double sigma = 3.0;
  const Moments m = MomentsOf(noise);
  EXPECT_NEAR(m.mean, 0.0, 5 * sigma / std::sqrt(kSamples));
  EXPECT_NEAR(m.variance, sigma * sigma, 5 * sigma * sigma * std::sqrt(2.0 / kSamples));
  const double ks =
      KolmogorovSmirnov(std::vector<double>(noise.begin(), noise.end()),
                        [&](double x) { return 0.5 * std::erfc(-x / (sigma * M_SQRT2)); });
  EXPECT_LT(ks, kKsCritical);

  std::vector<int64_t> ints(3);
  SeededRandom random(1);
  EXPECT_THAT(mechanism->AddNoise(std::span<int64_t>(ints), random),
              StatusIs(absl::StatusCode::kUnimplemented));
}

TEST(GaussianMechanismTest, GuaranteeDescribesTheMechanism) {
  MechanismOptions options;
  options.noise_multiplier = 2.0;
  options.l2_sensitivity = 0.5;
  options.relation = NeighbouringRelation::kDevice;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto mechanism, CreateMechanism("gaussian", options));
  const Guarantee guarantee = mechanism->GetGuarantee();
  FEDGE_ASSERT_OK_AND_ASSIGN(double expected, ComputeEpsilon(1.0, 2.0, 1, 1e-5));
  EXPECT_NEAR(guarantee.epsilon, expected, 1e-6 * expected);
  EXPECT_GE(guarantee.epsilon, expected * (1 - 1e-6));
  EXPECT_EQ(guarantee.delta, 1e-5);
  EXPECT_EQ(guarantee.sensitivity, 0.5);
  EXPECT_EQ(guarantee.relation, NeighbouringRelation::kDevice);
  EXPECT_THAT(guarantee.description, HasSubstr("device"));
}

TEST(LaplaceMechanismTest, MatchesLaplaceDistribution) {
  MechanismOptions options;
  options.noise_multiplier = 0.5;
  options.l1_sensitivity = 4.0;  // scale 2
  FEDGE_ASSERT_OK_AND_ASSIGN(auto mechanism, CreateMechanism("laplace", options));
  const std::vector<float> noise = NoiseOnZeros(*mechanism, 43);
  const double b = 2.0;
  const Moments m = MomentsOf(noise);
  const double variance = 2 * b * b;
  EXPECT_NEAR(m.mean, 0.0, 5 * std::sqrt(variance / kSamples));
  // Var of the sample variance ≈ (μ4 - σ⁴)/n with μ4 = 24b⁴.
  EXPECT_NEAR(m.variance, variance, 5 * std::sqrt((24 - 4) * std::pow(b, 4) / kSamples));
  const double ks = KolmogorovSmirnov(
      std::vector<double>(noise.begin(), noise.end()),
      [&](double x) { return x < 0 ? 0.5 * std::exp(x / b) : 1 - 0.5 * std::exp(-x / b); });
  EXPECT_LT(ks, kKsCritical);

  const Guarantee guarantee = mechanism->GetGuarantee();
  EXPECT_NEAR(guarantee.epsilon, 2.0, 1e-12);
  EXPECT_GE(guarantee.epsilon, 2.0);
  EXPECT_EQ(guarantee.delta, 0.0);
  EXPECT_EQ(guarantee.sensitivity, 4.0);
}

// P[k] ∝ exp(-k²/(2σ²)), normalized over |k| <= 60σ.
std::map<int64_t, double> DiscreteGaussianPmf(double sigma) {
  std::map<int64_t, double> pmf;
  double total = 0.0;
  const int64_t limit = static_cast<int64_t>(60 * sigma) + 10;
  for (int64_t k = -limit; k <= limit; ++k) {
    pmf[k] = std::exp(-static_cast<double>(k * k) / (2 * sigma * sigma));
    total += pmf[k];
  }
  for (auto& [k, p] : pmf) p /= total;
  return pmf;
}

TEST(DiscreteGaussianMechanismTest, MatchesPmfByChiSquare) {
  MechanismOptions options;
  options.noise_multiplier = 3.0;  // σ = 3, σ² = 9 exactly representable
  FEDGE_ASSERT_OK_AND_ASSIGN(auto mechanism, CreateMechanism("discrete-gaussian", options));
  const std::vector<int64_t> noise = IntegerNoiseOnZeros(*mechanism, 44, kSamples);
  const std::map<int64_t, double> pmf = DiscreteGaussianPmf(3.0);
  // Bins: (-inf, -11], -10..10, [11, inf): 23 bins, 22 degrees of freedom.
  std::map<int64_t, double> expected, observed;
  for (const auto& [k, p] : pmf) expected[std::clamp<int64_t>(k, -11, 11)] += p * kSamples;
  for (int64_t x : noise) observed[std::clamp<int64_t>(x, -11, 11)] += 1;
  double chi2 = 0.0;
  for (const auto& [bin, e] : expected) chi2 += (observed[bin] - e) * (observed[bin] - e) / e;
  EXPECT_LT(chi2, 48.27);  // chi-square(22) critical value at significance 0.001

  // KS on integers: compare the empirical CDF with the pmf's CDF at each k.
  std::map<int64_t, double> counts;
  for (int64_t x : noise) counts[x] += 1;
  double cdf = 0.0, empirical = 0.0, ks = 0.0;
  for (const auto& [k, p] : pmf) {
    cdf += p;
    empirical += counts.count(k) ? counts[k] / kSamples : 0.0;
    ks = std::max(ks, std::abs(cdf - empirical));
  }
  EXPECT_LT(ks, kKsCritical);

  std::vector<float> floats(3);
  SeededRandom random(1);
  EXPECT_THAT(mechanism->AddNoise(std::span<float>(floats), random),
              StatusIs(absl::StatusCode::kUnimplemented));
}

TEST(DiscreteGaussianMechanismTest, MeanAndVarianceAcrossScales) {
  for (double sigma : {0.6, 1.0, 7.3, 40.0}) {
    MechanismOptions options;
    options.noise_multiplier = sigma;
    FEDGE_ASSERT_OK_AND_ASSIGN(auto mechanism, CreateMechanism("discrete-gaussian", options));
    const int n = 50000;
    const std::vector<int64_t> noise = IntegerNoiseOnZeros(*mechanism, 45, n);
    double variance = 0.0;
    for (const auto& [k, p] : DiscreteGaussianPmf(sigma)) variance += p * k * k;
    const Moments m = MomentsOf(noise);
    EXPECT_NEAR(m.mean, 0.0, 5 * std::sqrt(variance / n)) << sigma;
    // The fourth moment of a (discrete) Gaussian is about 3σ⁴.
    EXPECT_NEAR(m.variance, variance, 5 * variance * std::sqrt(2.0 / n)) << sigma;
  }
}

TEST(DiscreteGaussianMechanismTest, AddsToExistingValues) {
  MechanismOptions options;
  options.noise_multiplier = 0.01;  // essentially no noise
  FEDGE_ASSERT_OK_AND_ASSIGN(auto mechanism, CreateMechanism("discrete-gaussian", options));
  std::vector<int64_t> values = {5, -3, 1000};
  SeededRandom random(9);
  FEDGE_ASSERT_OK(mechanism->AddNoise(std::span<int64_t>(values), random));
  EXPECT_THAT(values, ElementsAre(5, -3, 1000));
  const Guarantee guarantee = mechanism->GetGuarantee();
  EXPECT_GT(guarantee.epsilon, 100.0);
  EXPECT_THAT(guarantee.description, HasSubstr("zCDP"));
}

}  // namespace
}  // namespace fedge::privacy
