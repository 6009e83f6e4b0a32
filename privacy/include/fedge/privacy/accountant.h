// Privacy accounting: how much (ε, δ)-differential privacy a sequence of
// noisy aggregation rounds has spent.
//
// Two accountants, both behind the Accountant interface:
//
//  * "rdp": Rényi DP of the Poisson-subsampled Gaussian mechanism (Mironov,
//    Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
//    Mechanism"). One step releases sum_i clip(x_i) + N(0, σ²C²) over a
//    Poisson sample where each record is included with probability q; C is
//    the L2 sensitivity of one record's contribution and σ the noise
//    multiplier. Neighbouring datasets differ by adding or removing one
//    record (an example or a whole device, whichever the clipping bounds).
//    RDP composes additively over steps; the total is converted to (ε, δ)
//    with the conversion of Balle et al. 2020 / Canonne, Kamath, Steinke 2020
//    (Proposition 12): ε = rdp(α) + log1p(-1/α) - (log δ + log α)/(α - 1),
//    minimized over a fixed list of orders α (DefaultRdpOrders()).
//  * "laplace": basic (linear) composition of pure ε-DP Laplace steps. A step
//    with noise multiplier b (Laplace scale b·Δ₁ for L1 sensitivity Δ₁) is
//    (1/b, 0)-DP; with Poisson sampling rate q < 1 it is amplified to
//    log(1 + q(e^{1/b} - 1)) (Balle, Barthe, Gaboardi 2018, "Privacy
//    Amplification by Subsampling", Poisson sampling; add/remove neighbours).
//    Total ε = sum over steps, δ = 0.
//  * "zcdp": as "rdp" but without amplification by sampling (each step is
//    full-batch: α / (2σ²)), for the discrete Gaussian, which is
//    1/(2σ²)-zCDP (Canonne, Kamath, Steinke 2020) but whose subsampled RDP
//    this library does not bound.
//
// Every ε reported is an upper bound on the true value: each floating-point
// RDP value and ε is rounded up (by kEpsilonSafetyMargin relative to the
// magnitude of the terms involved, plus 1e-11 absolute, plus one ulp), and an
// order whose computation fails or overflows counts as +infinity (it can only
// make the minimum larger). When no order gives a finite bound, ε is
// +infinity.
//
// Thread safety: accountants are not thread-safe; callers serialize access.
// The free functions are thread-safe.
#ifndef FEDGE_PRIVACY_ACCOUNTANT_H_
#define FEDGE_PRIVACY_ACCOUNTANT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::privacy {

// Relative amount by which every reported ε (and RDP value) is rounded up to
// cover floating-point error and the truncation of the fractional-order series.
inline constexpr double kEpsilonSafetyMargin = 1e-9;

// The orders α at which the RDP accountant evaluates the RDP curve:
// 1.1, 1.25, 1.5, ..., 10 in steps of 0.25, then 11, 12, 14, 16, 18, 20, 24,
// 28, 32, 40, 48, 64, 96, 128, 256, 512.
std::span<const double> DefaultRdpOrders();

// RDP at order `order` (> 1) of ONE step of the Poisson-subsampled Gaussian
// mechanism with sampling rate `sampling_rate` in (0, 1] and noise multiplier
// `noise_multiplier` > 0 (noise std / L2 sensitivity). Integer orders use the
// binomial expansion, fractional orders the two-sided series of Mironov et al.
// 2019 (Section 3.3), both in log space. With sampling_rate == 1 it is the
// closed form α / (2σ²). Rounded up; +infinity when it overflows.
// INVALID_ARGUMENT names the offending argument.
absl::StatusOr<double> SubsampledGaussianRdp(double sampling_rate, double noise_multiplier,
                                             double order);

// ε of `steps` steps of the subsampled Gaussian mechanism at `delta`,
// via RDP over DefaultRdpOrders(). steps == 0 gives 0.
// REQUIRES: 0 < sampling_rate <= 1, noise_multiplier > 0, steps >= 0,
// 0 < delta < 1; INVALID_ARGUMENT names the argument otherwise.
absl::StatusOr<double> ComputeEpsilon(double sampling_rate, double noise_multiplier, int64_t steps,
                                      double delta);

// Converts a total RDP curve (rdp[i] at orders[i]) to ε at `delta`, taking
// the minimum over orders of the Balle et al. 2020 conversion; never below 0.
// Orders must be > 1 and the spans of equal length (INVALID_ARGUMENT).
absl::StatusOr<double> RdpToEpsilon(std::span<const double> orders, std::span<const double> rdp,
                                    double delta);

// Relative tolerance of CalibrateNoiseMultiplier: the σ returned is within
// this fraction above the smallest σ that meets the target.
inline constexpr double kCalibrationRelativeTolerance = 1e-6;

// The smallest noise multiplier σ (to kCalibrationRelativeTolerance, rounded
// up) such that ComputeEpsilon(sampling_rate, σ, steps, delta) <= target_epsilon.
// Found by bracketing (doubling/halving from σ = 1), then bisection until the
// bracket is narrower than the relative tolerance; the upper end is returned,
// so the σ returned always meets the target. Searches σ in [1e-3, 1e6] and
// returns 1e-3 when even that meets the target.
// REQUIRES: as ComputeEpsilon, steps >= 1 and target_epsilon > 0.
// INVALID_ARGUMENT names the argument; OUT_OF_RANGE when even σ = 1e6 does
// not meet the target.
absl::StatusOr<double> CalibrateNoiseMultiplier(double sampling_rate, int64_t steps, double delta,
                                                double target_epsilon);

// Tracks the privacy spent by a sequence of mechanism applications.
class Accountant {
 public:
  virtual ~Accountant() = default;

  virtual std::string_view name() const = 0;

  // Records `count` applications of a mechanism run on a Poisson sample with
  // rate `sampling_rate` in (0, 1] and noise multiplier `noise_multiplier` > 0
  // (Gaussian: std / L2 sensitivity; Laplace: scale / L1 sensitivity).
  // count >= 0. INVALID_ARGUMENT names the argument; the state is unchanged.
  virtual absl::Status Step(double sampling_rate, double noise_multiplier, int64_t count) = 0;
  absl::Status Step(double sampling_rate, double noise_multiplier) {
    return Step(sampling_rate, noise_multiplier, 1);
  }

  // Repeats the most recent Step(q, σ) `count` more times.
  // FAILED_PRECONDITION if no step was recorded yet.
  virtual absl::Status Step(int64_t count) = 0;

  // ε spent so far at `delta` (in (0, 1) for "rdp"; [0, 1) for "laplace",
  // which is pure DP and ignores it). 0 before any step.
  virtual absl::StatusOr<double> Epsilon(double delta) const = 0;

  // Total number of steps recorded.
  virtual int64_t steps() const = 0;

  // Opaque but version-stable bytes of the state (exact: doubles are written
  // in their shortest round-trip form), and their inverse. Restore replaces
  // the whole state; INVALID_ARGUMENT (state unchanged) if the bytes are not
  // a state of this accountant kind.
  virtual std::string Serialize() const = 0;
  virtual absl::Status Restore(std::string_view serialized) = 0;
};

// The RDP accountant for the subsampled Gaussian mechanism.
std::unique_ptr<Accountant> MakeRdpAccountant();
// RDP accounting without amplification by sampling: each step costs
// α / (2σ²) at every order, whatever its sampling rate. For mechanisms that
// are ρ-zCDP with ρ = 1/(2σ²) (the discrete Gaussian) when no subsampled
// bound is proven for them.
std::unique_ptr<Accountant> MakeZcdpAccountant();
// Basic composition of (subsampled) Laplace steps.
std::unique_ptr<Accountant> MakeLaplaceAccountant();

using AccountantFactory = std::function<std::unique_ptr<Accountant>()>;

// Creates a registered accountant ("rdp", "zcdp", "laplace"). NOT_FOUND lists the
// known names.
absl::StatusOr<std::unique_ptr<Accountant>> CreateAccountant(std::string_view name);

// Registers an accountant; returns true so it can initialize a static.
// Registering a name twice aborts (programmer error).
bool RegisterAccountant(std::string_view name, AccountantFactory factory);

// Sorted names of all registered accountants.
std::vector<std::string> RegisteredAccountants();

}  // namespace fedge::privacy

#endif  // FEDGE_PRIVACY_ACCOUNTANT_H_
