// Adding a differential-privacy mechanism to fedge: one class and one
// registration line in a shared library that fedge-sim loads with --plugin.
//
//   build/release/simulations/fedge-sim \
//       --plugin build/release/examples/libfedge_polar_gaussian.so \
//       --config examples/custom_mechanism/polar_gaussian.yaml
//
// "polar-gaussian" adds the same N(0, (z·C)²) noise as the built-in
// "gaussian", drawn with Marsaglia's polar method instead of the library's
// sampler: the kind of change a researcher makes to compare samplers (speed,
// floating-point behaviour) while the guarantee, and so the accounting, stay
// those of the Gaussian mechanism. A mechanism states four things besides
// its noise: its guarantee for one application, the accountant that
// composes it over rounds, the norm its sensitivity is measured in, and
// whether per-client shares of it add up to it (distributed DP).
//
// It also has a parameter of its own, declared once with its type, range,
// default and help (config::RegisterPluginKeys): privacy.polar-gaussian.
// noise_scale multiplies the noise. It appears in every tool's --help once
// the plug-in is loaded, is validated like a built-in key, and reaches the
// mechanism in MechanismOptions::params, where the noise and the accounting
// read the same value.
#include <cmath>
#include <cstdlib>
#include <memory>
#include <span>

#include "absl/strings/str_format.h"
#include "fedge/privacy/accountant.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/privacy/random.h"
#include "fedge/proto/plugin.h"

namespace {

using fedge::privacy::Guarantee;
using fedge::privacy::Mechanism;
using fedge::privacy::MechanismOptions;
using fedge::privacy::RandomSource;

class PolarGaussian final : public Mechanism {
 public:
  explicit PolarGaussian(const MechanismOptions& options)
      : Mechanism(options), sigma_(options.noise_multiplier * Scale(options)) {}

  std::string_view name() const override { return "polar-gaussian"; }

  absl::Status AddNoise(std::span<float> values, RandomSource& random) const override {
    const double std_dev = sigma_ * options().l2_sensitivity;
    std::size_t i = 0;
    while (i < values.size()) {
      // A uniform point in the unit disc gives two independent N(0, 1).
      const double u = 2.0 * fedge::privacy::UniformOpen01(random) - 1.0;
      const double v = 2.0 * fedge::privacy::UniformOpen01(random) - 1.0;
      const double s = u * u + v * v;
      if (s >= 1.0 || s == 0.0) continue;
      const double factor = std::sqrt(-2.0 * std::log(s) / s);
      values[i] = static_cast<float>(values[i] + std_dev * u * factor);
      if (++i < values.size()) {
        values[i] = static_cast<float>(values[i] + std_dev * v * factor);
        ++i;
      }
    }
    return absl::OkStatus();
  }

  absl::Status AddNoise(std::span<int64_t>, RandomSource&) const override {
    return absl::UnimplementedError("polar-gaussian adds noise to floats only");
  }

  // One application is the Gaussian mechanism: (α / (2σ²))-RDP for all α,
  // converted to (ε, δ) at options().delta with the library's conversion.
  Guarantee GetGuarantee() const override {
    const double sigma = sigma_;
    std::vector<double> rdp;
    for (double order : fedge::privacy::DefaultRdpOrders()) {
      rdp.push_back(order / (2.0 * sigma * sigma));
    }
    const double epsilon =
        *fedge::privacy::RdpToEpsilon(fedge::privacy::DefaultRdpOrders(), rdp, options().delta);
    return {epsilon, options().delta, options().l2_sensitivity, options().relation,
            absl::StrFormat("polar-gaussian: noise std %g; (%g, %g)-DP per application",
                            sigma * options().l2_sensitivity, epsilon, options().delta)};
  }

  // What ε is computed from: the subsampled-Gaussian RDP accountant, stepped
  // with the noise this mechanism really adds (std σ·Δ₂, so σ).
  absl::StatusOr<fedge::privacy::MechanismAccounting> accounting() const override {
    return fedge::privacy::MechanismAccounting{"rdp", sigma_};
  }
  bool divisible() const override { return true; }  // sums of Gaussians are Gaussian

 private:
  static constexpr char kScaleKey[] = "privacy.polar-gaussian.noise_scale";
  // The config checked the value; a mechanism made in code without it gets 1.
  static double Scale(const MechanismOptions& options) {
    auto it = options.params.find(kScaleKey);
    return it == options.params.end() ? 1.0 : std::strtod(it->second.c_str(), nullptr);
  }

  const double sigma_;  // the noise std over the sensitivity
};

[[maybe_unused]] const bool kKeys = fedge::config::RegisterPluginKeys(
    {fedge::config::PluginDouble("privacy.polar-gaussian.noise_scale",
                                 "polar-gaussian: noise std = noise_scale x noise_multiplier x "
                                 "clip norm (accounted as such)",
                                 1.0)
         .AtLeast(1.0)
         .AtMost(100.0)});

// The one registration line. It runs when the library is loaded.
[[maybe_unused]] const bool kRegistered = fedge::privacy::RegisterMechanism(
    "polar-gaussian",
    [](const MechanismOptions& options) -> absl::StatusOr<std::unique_ptr<Mechanism>> {
      if (!(options.noise_multiplier > 0.0) || !(options.l2_sensitivity > 0.0)) {
        return absl::InvalidArgumentError(
            "polar-gaussian: noise_multiplier and l2_sensitivity must be > 0");
      }
      return std::make_unique<PolarGaussian>(options);
    });

}  // namespace
