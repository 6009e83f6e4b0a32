// RDP accounting of the Poisson-subsampled Gaussian mechanism (Mironov,
// Talwar, Zhang 2019) and the accountant registry. See accountant.h for the
// guarantees.
//
// Numerics: A_α = E_{z~N(0,σ²)}[((1-q) + q·exp((2z-1)/(2σ²)))^α] is computed
// as log A_α, so no intermediate overflows; RDP(α) = log A_α / (α - 1).
//  * integer α: log-sum-exp of the α + 1 binomial terms (exact up to rounding);
//  * fractional α: the two series of Section 3.3, summed until both terms
//    fall below e^-30 (and past i > α, where the terms alternate in sign and
//    shrink, so the tail is below the last term). Since A_α >= 1, the
//    truncation changes log A_α by less than ~1e-13; the RDP is then rounded
//    up by a relative kEpsilonSafetyMargin plus kRdpAbsoluteMargin, which
//    covers it. A series that does not settle within kMaxSeriesTerms terms
//    yields +infinity (that order is then ignored: conservative).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fedge/privacy/accountant.h"
#include "fedge/proto/registry.h"
#include "fedge/proto/status_macros.h"
#include "step_log.h"

namespace fedge::privacy {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kRdpAbsoluteMargin = 1e-11;
constexpr int64_t kMaxSeriesTerms = 1'000'000;
constexpr double kSeriesCutoffLog = -30.0;

constexpr std::array<double, 53> kDefaultOrders = {
    1.1,  1.25, 1.5,  1.75, 2.0,  2.25, 2.5,  2.75, 3.0,  3.25, 3.5,  3.75, 4.0,  4.25,
    4.5,  4.75, 5.0,  5.25, 5.5,  5.75, 6.0,  6.25, 6.5,  6.75, 7.0,  7.25, 7.5,  7.75,
    8.0,  8.25, 8.5,  8.75, 9.0,  9.25, 9.5,  9.75, 10.0, 11.0, 12.0, 14.0, 16.0, 18.0,
    20.0, 24.0, 28.0, 32.0, 40.0, 48.0, 64.0, 96.0, 128., 256., 512.};

// Rounds a non-negative quantity up so that floating-point error and series
// truncation can only overstate it.
double RoundUp(double value, double magnitude) {
  if (!std::isfinite(value)) return value;
  const double up = value + kEpsilonSafetyMargin * std::abs(magnitude) + kRdpAbsoluteMargin;
  return std::nextafter(up, kInf);
}

// log(exp(a) + exp(b)).
double LogAdd(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  const double hi = std::max(a, b);
  return hi + std::log1p(std::exp(std::min(a, b) - hi));
}

// log(exp(a) - exp(b)); NaN when b > a (the caller treats that as failure).
double LogSub(double a, double b) {
  if (b == -kInf) return a;
  if (b > a) return std::numeric_limits<double>::quiet_NaN();
  if (a == b) return -kInf;
  return a + std::log(-std::expm1(b - a));
}

// log(erfc(x)), accurate also where erfc underflows (asymptotic expansion).
double LogErfc(double x) {
  if (x < 20.0) return std::log(std::erfc(x));
  const double inv_x2 = 1.0 / (x * x);
  const double series =
      1.0 - 0.5 * inv_x2 + 0.75 * inv_x2 * inv_x2 - 1.875 * inv_x2 * inv_x2 * inv_x2;
  return -x * x - std::log(x) - 0.5 * std::log(M_PI) + std::log(series);
}

double LogAInteger(double q, double sigma, int64_t alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double two_sigma2 = 2.0 * sigma * sigma;
  const double lg_alpha = std::lgamma(static_cast<double>(alpha) + 1.0);
  double log_a = -kInf;
  for (int64_t i = 0; i <= alpha; ++i) {
    const double di = static_cast<double>(i);
    const double log_coef =
        lg_alpha - std::lgamma(di + 1.0) - std::lgamma(static_cast<double>(alpha - i) + 1.0);
    const double term = log_coef + di * log_q + static_cast<double>(alpha - i) * log_1mq +
                        (di * di - di) / two_sigma2;
    log_a = LogAdd(log_a, term);
  }
  return log_a;
}

double LogAFractional(double q, double sigma, double alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double sigma2 = sigma * sigma;
  const double z0 = sigma2 * std::log(1.0 / q - 1.0) + 0.5;
  const double sqrt2_sigma = std::sqrt(2.0) * sigma;
  double log_a0 = -kInf;
  double log_a1 = -kInf;
  // binom(alpha, i) tracked as sign * exp(log_abs_coef).
  double log_abs_coef = 0.0;
  bool positive = true;
  for (int64_t i = 0; i < kMaxSeriesTerms; ++i) {
    const double di = static_cast<double>(i);
    if (i > 0) {
      const double factor = (alpha - di + 1.0) / di;
      if (factor == 0.0) break;  // cannot happen for fractional alpha
      if (factor < 0.0) positive = !positive;
      log_abs_coef += std::log(std::abs(factor));
    }
    const double j = alpha - di;
    const double log_t0 = log_abs_coef + di * log_q + j * log_1mq;
    const double log_t1 = log_abs_coef + j * log_q + di * log_1mq;
    const double log_e0 = std::log(0.5) + LogErfc((di - z0) / sqrt2_sigma);
    const double log_e1 = std::log(0.5) + LogErfc((z0 - j) / sqrt2_sigma);
    const double log_s0 = log_t0 + (di * di - di) / (2.0 * sigma2) + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / (2.0 * sigma2) + log_e1;
    if (positive) {
      log_a0 = LogAdd(log_a0, log_s0);
      log_a1 = LogAdd(log_a1, log_s1);
    } else {
      log_a0 = LogSub(log_a0, log_s0);
      log_a1 = LogSub(log_a1, log_s1);
    }
    if (std::isnan(log_a0) || std::isnan(log_a1)) return kInf;
    if (di > alpha && std::max(log_s0, log_s1) < kSeriesCutoffLog) {
      return LogAdd(log_a0, log_a1);
    }
  }
  return kInf;
}

absl::Status ValidateDelta(double delta) {
  if (!(delta > 0.0 && delta < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("delta must be in (0, 1), got ", delta));
  }
  return absl::OkStatus();
}

absl::Status ValidateGaussian(double sampling_rate, double noise_multiplier) {
  if (!(sampling_rate > 0.0 && sampling_rate <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling_rate must be in (0, 1], got ", sampling_rate));
  }
  if (!(noise_multiplier > 0.0) || !std::isfinite(noise_multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise_multiplier must be finite and > 0, got ", noise_multiplier));
  }
  return absl::OkStatus();
}

// RDP of one step at every default order; validated arguments.
std::vector<double> RdpCurve(double q, double sigma) {
  std::vector<double> rdp;
  rdp.reserve(kDefaultOrders.size());
  for (double order : kDefaultOrders) rdp.push_back(*SubsampledGaussianRdp(q, sigma, order));
  return rdp;
}

double TotalEpsilon(const std::vector<double>& rdp_per_step, int64_t steps, double delta) {
  std::vector<double> total(rdp_per_step.size());
  for (std::size_t i = 0; i < total.size(); ++i) {
    total[i] = RoundUp(rdp_per_step[i] * static_cast<double>(steps), rdp_per_step[i] * steps);
  }
  return *RdpToEpsilon(kDefaultOrders, total, delta);
}

// "rdp" evaluates the subsampled Gaussian RDP of every step; "zcdp" claims
// no amplification by sampling: every step costs the full-batch curve
// α / (2σ²) whatever its recorded sampling rate (for mechanisms, like the
// discrete Gaussian, whose subsampled RDP is not the continuous one's).
class RdpAccountant final : public Accountant {
 public:
  explicit RdpAccountant(bool amplify = true)
      : amplify_(amplify), log_(amplify ? "fedge.rdp_accountant.v1" : "fedge.zcdp_accountant.v1") {}
  std::string_view name() const override { return amplify_ ? "rdp" : "zcdp"; }

  absl::Status Step(double sampling_rate, double noise_multiplier, int64_t count) override {
    return log_.Add(sampling_rate, noise_multiplier, count);
  }
  absl::Status Step(int64_t count) override { return log_.Repeat(count); }

  absl::StatusOr<double> Epsilon(double delta) const override {
    FEDGE_RETURN_IF_ERROR(ValidateDelta(delta));
    if (log_.steps() == 0) return 0.0;
    std::vector<double> total(kDefaultOrders.size(), 0.0);
    for (const internal::StepEntry& entry : log_.entries()) {
      if (entry.count == 0) continue;
      const std::vector<double> rdp =
          RdpCurve(amplify_ ? entry.sampling_rate : 1.0, entry.noise_multiplier);
      for (std::size_t i = 0; i < total.size(); ++i) {
        const double added = rdp[i] * static_cast<double>(entry.count);
        total[i] = RoundUp(total[i] + added, total[i] + added);
      }
    }
    return RdpToEpsilon(kDefaultOrders, total, delta);
  }

  int64_t steps() const override { return log_.steps(); }
  std::string Serialize() const override { return log_.Serialize(); }
  absl::Status Restore(std::string_view serialized) override { return log_.Restore(serialized); }

 private:
  bool amplify_;
  internal::StepLog log_;
};

class LaplaceAccountant final : public Accountant {
 public:
  std::string_view name() const override { return "laplace"; }

  absl::Status Step(double sampling_rate, double noise_multiplier, int64_t count) override {
    return log_.Add(sampling_rate, noise_multiplier, count);
  }
  absl::Status Step(int64_t count) override { return log_.Repeat(count); }

  absl::StatusOr<double> Epsilon(double delta) const override {
    if (!(delta >= 0.0 && delta < 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat("delta must be in [0, 1), got ", delta));
    }
    double epsilon = 0.0;
    for (const internal::StepEntry& entry : log_.entries()) {
      const double per_step = 1.0 / entry.noise_multiplier;
      const double amplified = entry.sampling_rate == 1.0
                                   ? per_step
                                   : std::log1p(entry.sampling_rate * std::expm1(per_step));
      const double added = amplified * static_cast<double>(entry.count);
      epsilon = RoundUp(epsilon + added, epsilon + added);
    }
    return epsilon;
  }

  int64_t steps() const override { return log_.steps(); }
  std::string Serialize() const override { return log_.Serialize(); }
  absl::Status Restore(std::string_view serialized) override { return log_.Restore(serialized); }

 private:
  internal::StepLog log_{"fedge.laplace_accountant.v1"};
};

Registry<AccountantFactory>& Accountants() {
  static auto* registry = new Registry<AccountantFactory>("accountant");
  return *registry;
}

[[maybe_unused]] const bool kRdpRegistered = RegisterAccountant("rdp", MakeRdpAccountant);
[[maybe_unused]] const bool kLaplaceRegistered =
    RegisterAccountant("laplace", MakeLaplaceAccountant);
[[maybe_unused]] const bool kZcdpRegistered = RegisterAccountant("zcdp", MakeZcdpAccountant);

}  // namespace

std::span<const double> DefaultRdpOrders() { return kDefaultOrders; }

absl::StatusOr<double> SubsampledGaussianRdp(double sampling_rate, double noise_multiplier,
                                             double order) {
  FEDGE_RETURN_IF_ERROR(ValidateGaussian(sampling_rate, noise_multiplier));
  if (!(order > 1.0) || !std::isfinite(order)) {
    return absl::InvalidArgumentError(absl::StrCat("order must be finite and > 1, got ", order));
  }
  const double sigma2 = noise_multiplier * noise_multiplier;
  if (sampling_rate == 1.0) {
    const double rdp = order / (2.0 * sigma2);
    return RoundUp(rdp, rdp);
  }
  double log_a;
  if (order == std::floor(order) && order <= 1e6) {
    log_a = LogAInteger(sampling_rate, noise_multiplier, static_cast<int64_t>(order));
  } else {
    log_a = LogAFractional(sampling_rate, noise_multiplier, order);
  }
  if (!std::isfinite(log_a)) return kInf;
  const double rdp = std::max(0.0, log_a / (order - 1.0));
  return RoundUp(rdp, rdp);
}

absl::StatusOr<double> RdpToEpsilon(std::span<const double> orders, std::span<const double> rdp,
                                    double delta) {
  FEDGE_RETURN_IF_ERROR(ValidateDelta(delta));
  if (orders.size() != rdp.size() || orders.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("orders and rdp must be non-empty and of equal length, got ", orders.size(),
                     " and ", rdp.size()));
  }
  const double log_delta = std::log(delta);
  double best = kInf;
  for (std::size_t i = 0; i < orders.size(); ++i) {
    const double alpha = orders[i];
    if (!(alpha > 1.0) || !std::isfinite(alpha)) {
      return absl::InvalidArgumentError(
          absl::StrCat("orders must be finite and > 1, got ", alpha, " at index ", i));
    }
    if (std::isnan(rdp[i]) || rdp[i] < 0.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("rdp must be >= 0, got ", rdp[i], " at index ", i));
    }
    if (!std::isfinite(rdp[i])) continue;
    const double conversion = std::log1p(-1.0 / alpha);
    const double tail = (log_delta + std::log(alpha)) / (alpha - 1.0);
    const double epsilon = rdp[i] + conversion - tail;
    const double magnitude = std::abs(rdp[i]) + std::abs(conversion) + std::abs(tail);
    best = std::min(best, RoundUp(epsilon, magnitude));
  }
  return std::max(0.0, best);
}

absl::StatusOr<double> ComputeEpsilon(double sampling_rate, double noise_multiplier, int64_t steps,
                                      double delta) {
  FEDGE_RETURN_IF_ERROR(ValidateGaussian(sampling_rate, noise_multiplier));
  if (steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat("steps must be >= 0, got ", steps));
  }
  FEDGE_RETURN_IF_ERROR(ValidateDelta(delta));
  if (steps == 0) return 0.0;
  return TotalEpsilon(RdpCurve(sampling_rate, noise_multiplier), steps, delta);
}

absl::StatusOr<double> CalibrateNoiseMultiplier(double sampling_rate, int64_t steps, double delta,
                                                double target_epsilon) {
  if (!(sampling_rate > 0.0 && sampling_rate <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling_rate must be in (0, 1], got ", sampling_rate));
  }
  if (steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat("steps must be >= 1, got ", steps));
  }
  FEDGE_RETURN_IF_ERROR(ValidateDelta(delta));
  if (!(target_epsilon > 0.0) || !std::isfinite(target_epsilon)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target_epsilon must be finite and > 0, got ", target_epsilon));
  }
  constexpr double kMinSigma = 1e-3;
  constexpr double kMaxSigma = 1e6;
  auto meets = [&](double sigma) {
    return TotalEpsilon(RdpCurve(sampling_rate, sigma), steps, delta) <= target_epsilon;
  };
  // Bracket [lo, hi] with meets(hi) and !meets(lo), by doubling / halving.
  double hi = 1.0;
  while (!meets(hi)) {
    hi *= 2.0;
    if (hi > kMaxSigma) {
      return absl::OutOfRangeError(absl::StrCat("no noise_multiplier <= ", kMaxSigma,
                                                " reaches target_epsilon ", target_epsilon));
    }
  }
  double lo = hi / 2.0;
  while (meets(lo)) {
    hi = lo;
    if (hi <= kMinSigma) return kMinSigma;
    lo = std::max(kMinSigma, hi / 2.0);
  }
  while (hi - lo > kCalibrationRelativeTolerance * hi) {
    const double mid = 0.5 * (lo + hi);
    if (meets(mid)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return hi;
}

std::unique_ptr<Accountant> MakeRdpAccountant() { return std::make_unique<RdpAccountant>(); }
std::unique_ptr<Accountant> MakeZcdpAccountant() {
  return std::make_unique<RdpAccountant>(/*amplify=*/false);
}
std::unique_ptr<Accountant> MakeLaplaceAccountant() {
  return std::make_unique<LaplaceAccountant>();
}

absl::StatusOr<std::unique_ptr<Accountant>> CreateAccountant(std::string_view name) {
  FEDGE_ASSIGN_OR_RETURN(AccountantFactory factory, Accountants().Find(name));
  return factory();
}

bool RegisterAccountant(std::string_view name, AccountantFactory factory) {
  return Accountants().Add(name, std::move(factory));
}

std::vector<std::string> RegisteredAccountants() { return Accountants().Names(); }

}  // namespace fedge::privacy
