#include "fedge/privacy/accountant.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Independent reference: log A_α = log E_{x~N(0,σ²)}[((1-q) + q·e^{(2x-1)/(2σ²)})^α]
// by composite Simpson integration on a fine grid, in log space.
double IntegratedLogA(double q, double sigma, double alpha) {
  const double lo = -40.0 * sigma;
  const double hi = alpha + 40.0 * sigma;
  const int n = 2 * static_cast<int>(std::ceil((hi - lo) / (sigma / 400.0)) / 2 + 1);
  const double h = (hi - lo) / n;
  auto log_integrand = [&](double x) {
    const double u = (2.0 * x - 1.0) / (2.0 * sigma * sigma);
    const double a = std::log1p(-q);
    const double b = std::log(q) + u;
    const double m = std::max(a, b);
    const double log_mix = m + std::log(std::exp(a - m) + std::exp(b - m));
    return -x * x / (2.0 * sigma * sigma) - 0.5 * std::log(2.0 * M_PI * sigma * sigma) +
           alpha * log_mix;
  };
  std::vector<double> logs(n + 1);
  double max_log = -std::numeric_limits<double>::infinity();
  for (int i = 0; i <= n; ++i) {
    logs[i] = log_integrand(lo + i * h);
    max_log = std::max(max_log, logs[i]);
  }
  double sum = 0.0;
  for (int i = 0; i <= n; ++i) {
    const double weight = (i == 0 || i == n) ? 1.0 : (i % 2 == 1 ? 4.0 : 2.0);
    sum += weight * std::exp(logs[i] - max_log);
  }
  return max_log + std::log(sum * h / 3.0);
}

double IntegratedRdp(double q, double sigma, double alpha) {
  return IntegratedLogA(q, sigma, alpha) / (alpha - 1.0);
}

double StdNormalCdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// Exact ε at δ of the (full-batch) Gaussian mechanism with sensitivity 1 and
// std `sigma` (Balle & Wang 2018, Theorem 8), by bisection on ε.
double ExactGaussianEpsilon(double sigma, double delta) {
  auto delta_of = [&](double eps) {
    return StdNormalCdf(0.5 / sigma - eps * sigma) -
           std::exp(eps) * StdNormalCdf(-0.5 / sigma - eps * sigma);
  };
  double lo = 0.0;
  double hi = 1000.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (delta_of(mid) > delta ? lo : hi) = mid;
  }
  return hi;
}

TEST(SubsampledGaussianRdpTest, FullBatchIsClosedForm) {
  for (double sigma : {0.5, 1.0, 3.0}) {
    for (double alpha : {1.5, 2.0, 7.25, 32.0}) {
      FEDGE_ASSERT_OK_AND_ASSIGN(double rdp, SubsampledGaussianRdp(1.0, sigma, alpha));
      const double expected = alpha / (2.0 * sigma * sigma);
      EXPECT_GE(rdp, expected);
      EXPECT_NEAR(rdp, expected, 1e-8 * expected + 1e-10) << sigma << " " << alpha;
    }
  }
}

struct RdpCase {
  double q;
  double sigma;
  double alpha;
};

class RdpAgainstIntegrationTest : public ::testing::TestWithParam<RdpCase> {};

TEST_P(RdpAgainstIntegrationTest, MatchesNumericIntegration) {
  const RdpCase c = GetParam();
  FEDGE_ASSERT_OK_AND_ASSIGN(double rdp, SubsampledGaussianRdp(c.q, c.sigma, c.alpha));
  const double reference = IntegratedRdp(c.q, c.sigma, c.alpha);
  EXPECT_NEAR(rdp, reference, 1e-6 * reference + 1e-10);
  // Rounded up: never below the reference beyond the integration error.
  EXPECT_GE(rdp, reference - 1e-12 * reference);
}

INSTANTIATE_TEST_SUITE_P(IntegerAndFractionalOrders, RdpAgainstIntegrationTest,
                         ::testing::Values(RdpCase{0.01, 1.0, 2.0}, RdpCase{0.01, 1.0, 8.0},
                                           RdpCase{0.01, 1.0, 32.0}, RdpCase{0.1, 0.8, 3.0},
                                           RdpCase{0.5, 2.0, 16.0}, RdpCase{0.001, 0.6, 5.0},
                                           RdpCase{0.01, 1.0, 1.1}, RdpCase{0.01, 1.0, 1.5},
                                           RdpCase{0.01, 1.0, 7.25}, RdpCase{0.1, 0.8, 2.5},
                                           RdpCase{0.5, 2.0, 9.75}, RdpCase{0.7, 1.5, 3.25},
                                           RdpCase{0.001, 0.6, 4.75}, RdpCase{0.05, 4.0, 24.5}));

TEST(ComputeEpsilonTest, FullBatchIsAnUpperBoundOnTheExactGaussianEpsilon) {
  // T full-batch Gaussian steps with std σ are one Gaussian step with std σ/√T.
  for (double sigma : {1.0, 2.0, 5.0}) {
    for (int64_t steps : {1, 10, 100}) {
      const double delta = 1e-5;
      FEDGE_ASSERT_OK_AND_ASSIGN(double epsilon, ComputeEpsilon(1.0, sigma, steps, delta));
      const double exact =
          ExactGaussianEpsilon(sigma / std::sqrt(static_cast<double>(steps)), delta);
      EXPECT_GE(epsilon, exact) << sigma << " " << steps;
      EXPECT_LE(epsilon, 1.3 * exact) << sigma << " " << steps;
    }
  }
}

TEST(ComputeEpsilonTest, ConversionIsTheMinimumOverOrders) {
  const double q = 0.01, sigma = 1.1, delta = 1e-5;
  const int64_t steps = 1000;
  FEDGE_ASSERT_OK_AND_ASSIGN(double epsilon, ComputeEpsilon(q, sigma, steps, delta));
  double best = std::numeric_limits<double>::infinity();
  for (double alpha : DefaultRdpOrders()) {
    const double rdp = steps * IntegratedRdp(q, sigma, alpha);
    best = std::min(
        best, rdp + std::log1p(-1.0 / alpha) - (std::log(delta) + std::log(alpha)) / (alpha - 1.0));
  }
  EXPECT_GE(epsilon, best - 1e-9);
  EXPECT_NEAR(epsilon, best, 1e-6 * best);
}

TEST(ComputeEpsilonTest, ZeroStepsIsZero) { EXPECT_EQ(*ComputeEpsilon(0.1, 1.0, 0, 1e-5), 0.0); }

TEST(ComputeEpsilonTest, DecreasesWithNoise) {
  double previous = std::numeric_limits<double>::infinity();
  for (double sigma : {0.6, 0.8, 1.0, 1.5, 2.0, 4.0, 8.0}) {
    FEDGE_ASSERT_OK_AND_ASSIGN(double epsilon, ComputeEpsilon(0.01, sigma, 1000, 1e-5));
    EXPECT_LT(epsilon, previous) << sigma;
    previous = epsilon;
  }
}

TEST(ComputeEpsilonTest, IncreasesWithStepsAndSamplingRate) {
  double previous = 0.0;
  for (int64_t steps : {1, 10, 100, 1000, 10000}) {
    FEDGE_ASSERT_OK_AND_ASSIGN(double epsilon, ComputeEpsilon(0.01, 1.0, steps, 1e-5));
    EXPECT_GT(epsilon, previous) << steps;
    previous = epsilon;
  }
  previous = 0.0;
  for (double q : {0.001, 0.01, 0.05, 0.2, 0.5, 1.0}) {
    FEDGE_ASSERT_OK_AND_ASSIGN(double epsilon, ComputeEpsilon(q, 1.0, 100, 1e-5));
    EXPECT_GT(epsilon, previous) << q;
    previous = epsilon;
  }
}

TEST(ComputeEpsilonTest, ValidatesEachArgument) {
  using absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(ComputeEpsilon(0.0, 1.0, 10, 1e-5),
              StatusIs(kInvalidArgument, HasSubstr("sampling_rate")));
  EXPECT_THAT(ComputeEpsilon(1.5, 1.0, 10, 1e-5),
              StatusIs(kInvalidArgument, HasSubstr("sampling_rate")));
  EXPECT_THAT(ComputeEpsilon(std::nan(""), 1.0, 10, 1e-5),
              StatusIs(kInvalidArgument, HasSubstr("sampling_rate")));
  EXPECT_THAT(ComputeEpsilon(0.1, 0.0, 10, 1e-5),
              StatusIs(kInvalidArgument, HasSubstr("noise_multiplier")));
  EXPECT_THAT(ComputeEpsilon(0.1, -1.0, 10, 1e-5),
              StatusIs(kInvalidArgument, HasSubstr("noise_multiplier")));
  EXPECT_THAT(ComputeEpsilon(0.1, 1.0, -1, 1e-5), StatusIs(kInvalidArgument, HasSubstr("steps")));
  EXPECT_THAT(ComputeEpsilon(0.1, 1.0, 10, 0.0), StatusIs(kInvalidArgument, HasSubstr("delta")));
  EXPECT_THAT(ComputeEpsilon(0.1, 1.0, 10, 1.0), StatusIs(kInvalidArgument, HasSubstr("delta")));
  EXPECT_THAT(SubsampledGaussianRdp(0.1, 1.0, 1.0), StatusIs(kInvalidArgument, HasSubstr("order")));
  const std::vector<double> orders = {2.0, 3.0};
  const std::vector<double> one = {1.0};
  EXPECT_THAT(RdpToEpsilon(orders, one, 1e-5), StatusIs(kInvalidArgument, HasSubstr("length")));
  const std::vector<double> bad_orders = {1.0, 3.0};
  const std::vector<double> two = {1.0, 1.0};
  EXPECT_THAT(RdpToEpsilon(bad_orders, two, 1e-5), StatusIs(kInvalidArgument, HasSubstr("orders")));
  const std::vector<double> negative = {1.0, -1.0};
  EXPECT_THAT(RdpToEpsilon(orders, negative, 1e-5), StatusIs(kInvalidArgument, HasSubstr("rdp")));
}

TEST(CalibrateNoiseMultiplierTest, InvertsComputeEpsilon) {
  struct Case {
    double q;
    int64_t steps;
    double epsilon;
  };
  for (const Case& c :
       {Case{0.01, 1000, 1.0}, Case{0.01, 10000, 8.0}, Case{0.1, 100, 3.0}, Case{1.0, 10, 2.0}}) {
    const double delta = 1e-5;
    FEDGE_ASSERT_OK_AND_ASSIGN(double sigma,
                               CalibrateNoiseMultiplier(c.q, c.steps, delta, c.epsilon));
    FEDGE_ASSERT_OK_AND_ASSIGN(double achieved, ComputeEpsilon(c.q, sigma, c.steps, delta));
    EXPECT_LE(achieved, c.epsilon);
    FEDGE_ASSERT_OK_AND_ASSIGN(double smaller, ComputeEpsilon(c.q, 0.99 * sigma, c.steps, delta));
    EXPECT_GT(smaller, c.epsilon);
    // Within the documented relative tolerance of the threshold.
    FEDGE_ASSERT_OK_AND_ASSIGN(
        double just_below,
        ComputeEpsilon(c.q, sigma * (1.0 - 2 * kCalibrationRelativeTolerance), c.steps, delta));
    EXPECT_GT(just_below, c.epsilon);
  }
}

TEST(CalibrateNoiseMultiplierTest, ValidatesEachArgument) {
  using absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(CalibrateNoiseMultiplier(0.0, 10, 1e-5, 1.0),
              StatusIs(kInvalidArgument, HasSubstr("sampling_rate")));
  EXPECT_THAT(CalibrateNoiseMultiplier(1.01, 10, 1e-5, 1.0),
              StatusIs(kInvalidArgument, HasSubstr("sampling_rate")));
  EXPECT_THAT(CalibrateNoiseMultiplier(0.1, 0, 1e-5, 1.0),
              StatusIs(kInvalidArgument, HasSubstr("steps")));
  EXPECT_THAT(CalibrateNoiseMultiplier(0.1, 10, 0.0, 1.0),
              StatusIs(kInvalidArgument, HasSubstr("delta")));
  EXPECT_THAT(CalibrateNoiseMultiplier(0.1, 10, 1.0, 1.0),
              StatusIs(kInvalidArgument, HasSubstr("delta")));
  EXPECT_THAT(CalibrateNoiseMultiplier(0.1, 10, 1e-5, 0.0),
              StatusIs(kInvalidArgument, HasSubstr("target_epsilon")));
}

TEST(RdpAccountantTest, ComposesLikeComputeEpsilon) {
  std::unique_ptr<Accountant> accountant = MakeRdpAccountant();
  EXPECT_EQ(accountant->name(), "rdp");
  EXPECT_EQ(*accountant->Epsilon(1e-5), 0.0);
  for (int i = 0; i < 50; ++i) FEDGE_ASSERT_OK(accountant->Step(0.01, 1.0));
  FEDGE_ASSERT_OK(accountant->Step(50));
  EXPECT_EQ(accountant->steps(), 100);
  FEDGE_ASSERT_OK_AND_ASSIGN(double epsilon, accountant->Epsilon(1e-5));
  FEDGE_ASSERT_OK_AND_ASSIGN(double expected, ComputeEpsilon(0.01, 1.0, 100, 1e-5));
  EXPECT_NEAR(epsilon, expected, 1e-8 * expected);
  EXPECT_GE(epsilon, expected * (1 - 1e-12));
}

TEST(RdpAccountantTest, HeterogeneousStepsAddRdp) {
  std::unique_ptr<Accountant> accountant = MakeRdpAccountant();
  FEDGE_ASSERT_OK(accountant->Step(0.01, 1.0, 100));
  FEDGE_ASSERT_OK(accountant->Step(0.05, 2.0, 30));
  FEDGE_ASSERT_OK_AND_ASSIGN(double epsilon, accountant->Epsilon(1e-6));
  double best = std::numeric_limits<double>::infinity();
  for (double alpha : DefaultRdpOrders()) {
    const double rdp = 100 * *SubsampledGaussianRdp(0.01, 1.0, alpha) +
                       30 * *SubsampledGaussianRdp(0.05, 2.0, alpha);
    best = std::min(
        best, rdp + std::log1p(-1.0 / alpha) - (std::log(1e-6) + std::log(alpha)) / (alpha - 1.0));
  }
  EXPECT_NEAR(epsilon, best, 1e-8 * best);
}

TEST(RdpAccountantTest, ValidatesSteps) {
  using absl::StatusCode::kInvalidArgument;
  std::unique_ptr<Accountant> accountant = MakeRdpAccountant();
  EXPECT_THAT(accountant->Step(3), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(accountant->Step(0.0, 1.0), StatusIs(kInvalidArgument, HasSubstr("sampling_rate")));
  EXPECT_THAT(accountant->Step(0.1, 0.0),
              StatusIs(kInvalidArgument, HasSubstr("noise_multiplier")));
  EXPECT_THAT(accountant->Step(0.1, 1.0, -1), StatusIs(kInvalidArgument, HasSubstr("count")));
  EXPECT_EQ(accountant->steps(), 0);
  EXPECT_THAT(accountant->Epsilon(0.0), StatusIs(kInvalidArgument, HasSubstr("delta")));
}

TEST(RdpAccountantTest, SerializeRoundTrip) {
  std::unique_ptr<Accountant> accountant = MakeRdpAccountant();
  FEDGE_ASSERT_OK(accountant->Step(0.0123456789, 1.1, 7));
  FEDGE_ASSERT_OK(accountant->Step(0.3, 2.5, 2));
  const std::string bytes = accountant->Serialize();
  std::unique_ptr<Accountant> restored = MakeRdpAccountant();
  FEDGE_ASSERT_OK(restored->Restore(bytes));
  EXPECT_EQ(restored->steps(), 9);
  EXPECT_EQ(restored->Serialize(), bytes);
  EXPECT_EQ(*restored->Epsilon(1e-5), *accountant->Epsilon(1e-5));
  // Step(count) repeats the last recorded step after a restore too.
  FEDGE_ASSERT_OK(restored->Step(1));
  FEDGE_ASSERT_OK(accountant->Step(0.3, 2.5, 1));
  EXPECT_EQ(restored->Serialize(), accountant->Serialize());
}

TEST(RdpAccountantTest, RestoreRejectsGarbageAndKeepsState) {
  using absl::StatusCode::kInvalidArgument;
  std::unique_ptr<Accountant> accountant = MakeRdpAccountant();
  FEDGE_ASSERT_OK(accountant->Step(0.1, 1.0, 3));
  const std::string before = accountant->Serialize();
  EXPECT_THAT(accountant->Restore("nonsense"), StatusIs(kInvalidArgument));
  EXPECT_THAT(accountant->Restore("fedge.rdp_accountant.v1\n0.1 x 3\n"),
              StatusIs(kInvalidArgument, HasSubstr("line 2")));
  EXPECT_THAT(accountant->Restore("fedge.rdp_accountant.v1\n1.5 1 3\n"),
              StatusIs(kInvalidArgument, HasSubstr("sampling_rate")));
  EXPECT_THAT(accountant->Restore(MakeLaplaceAccountant()->Serialize()),
              StatusIs(kInvalidArgument));
  EXPECT_EQ(accountant->Serialize(), before);
}

TEST(LaplaceAccountantTest, BasicComposition) {
  std::unique_ptr<Accountant> accountant = MakeLaplaceAccountant();
  EXPECT_EQ(accountant->name(), "laplace");
  FEDGE_ASSERT_OK(accountant->Step(1.0, 2.0, 10));  // ε = 1/2 per step
  FEDGE_ASSERT_OK_AND_ASSIGN(double epsilon, accountant->Epsilon(0.0));
  EXPECT_GE(epsilon, 5.0);
  EXPECT_NEAR(epsilon, 5.0, 1e-8);
  FEDGE_ASSERT_OK(accountant->Step(0.1, 1.0));  // amplified: log(1 + 0.1(e - 1))
  FEDGE_ASSERT_OK(accountant->Step(1));
  FEDGE_ASSERT_OK_AND_ASSIGN(double total, accountant->Epsilon(1e-5));
  EXPECT_NEAR(total, 5.0 + 2.0 * std::log(1.0 + 0.1 * (std::exp(1.0) - 1.0)), 1e-7);
  EXPECT_EQ(accountant->steps(), 12);
  EXPECT_THAT(accountant->Epsilon(1.0), StatusIs(absl::StatusCode::kInvalidArgument));

  std::unique_ptr<Accountant> restored = MakeLaplaceAccountant();
  FEDGE_ASSERT_OK(restored->Restore(accountant->Serialize()));
  EXPECT_EQ(*restored->Epsilon(0.0), total);
}

TEST(AccountantRegistryTest, ListsBuiltInsAndRejectsUnknown) {
  EXPECT_THAT(RegisteredAccountants(), ElementsAre("laplace", "rdp", "zcdp"));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Accountant> rdp, CreateAccountant("rdp"));
  EXPECT_EQ(rdp->name(), "rdp");
  EXPECT_THAT(CreateAccountant("moments"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("laplace, rdp, zcdp")));
}

TEST(ZcdpAccountantTest, IgnoresSamplingAndMatchesFullBatch) {
  // "zcdp" claims no amplification: a step at any sampling rate costs what a
  // full-batch step does, i.e. ComputeEpsilon at q = 1.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Accountant> zcdp, CreateAccountant("zcdp"));
  ASSERT_THAT(zcdp->Step(0.01, 2.0, 30), IsOk());
  FEDGE_ASSERT_OK_AND_ASSIGN(const double epsilon, zcdp->Epsilon(1e-5));
  FEDGE_ASSERT_OK_AND_ASSIGN(const double full_batch, ComputeEpsilon(1.0, 2.0, 30, 1e-5));
  EXPECT_DOUBLE_EQ(epsilon, full_batch);
  FEDGE_ASSERT_OK_AND_ASSIGN(const double amplified, ComputeEpsilon(0.01, 2.0, 30, 1e-5));
  EXPECT_GT(epsilon, amplified);
  // Closed form check at one order: 30 steps of rho = 1/8 is 3.75-zCDP, so
  // epsilon <= 3.75 + 2 sqrt(3.75 log(1/delta)) (Bun & Steinke 2016).
  EXPECT_LE(epsilon, 3.75 + 2.0 * std::sqrt(3.75 * std::log(1e5)));
  // Round trip keeps the kind.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Accountant> restored, CreateAccountant("zcdp"));
  ASSERT_THAT(restored->Restore(zcdp->Serialize()), IsOk());
  EXPECT_DOUBLE_EQ(*restored->Epsilon(1e-5), epsilon);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Accountant> rdp, CreateAccountant("rdp"));
  EXPECT_THAT(rdp->Restore(zcdp->Serialize()), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace fedge::privacy
