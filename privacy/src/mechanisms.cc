// Built-in DP mechanisms and the mechanism registry. Guarantees: see
// mechanism.h.
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/privacy/accountant.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/privacy/random.h"
#include "fedge/proto/registry.h"
#include "fedge/proto/status_macros.h"

namespace fedge::privacy {
namespace {

// Denominator of the rational variance used by the exact discrete sampler.
constexpr uint64_t kVarianceDenominator = uint64_t{1} << 20;
// Largest noise std (integer units) the discrete sampler supports.
constexpr double kMaxDiscreteStd = 1e4;

absl::Status RequirePositive(double value, const char* field) {
  if (!(value > 0.0) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MechanismOptions.", field, " must be finite and > 0, got ", value));
  }
  return absl::OkStatus();
}

absl::Status ValidateCommon(const MechanismOptions& options) {
  if (options.relation != NeighbouringRelation::kExample &&
      options.relation != NeighbouringRelation::kDevice) {
    return absl::InvalidArgumentError(absl::StrCat("MechanismOptions.relation is not valid: ",
                                                   static_cast<int>(options.relation)));
  }
  return absl::OkStatus();
}

absl::Status ValidateDelta(const MechanismOptions& options) {
  if (!(options.delta > 0.0 && options.delta < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MechanismOptions.delta must be in (0, 1), got ", options.delta));
  }
  return absl::OkStatus();
}

absl::Status Unsupported(std::string_view mechanism, std::string_view type) {
  return absl::UnimplementedError(absl::StrCat("mechanism '", std::string(mechanism),
                                               "' does not add noise to ", std::string(type)));
}

// (ε, δ) of a mechanism that is (α·rho)-RDP for every α > 1 (rho-zCDP).
double ZcdpEpsilon(double rho, double delta) {
  std::vector<double> rdp;
  for (double order : DefaultRdpOrders()) rdp.push_back(order * rho);
  return *RdpToEpsilon(DefaultRdpOrders(), rdp, delta);
}

class NoMechanism final : public Mechanism {
 public:
  explicit NoMechanism(const MechanismOptions& options) : Mechanism(options) {}
  std::string_view name() const override { return "none"; }
  absl::StatusOr<MechanismAccounting> accounting() const override {
    return MechanismAccounting{};  // no privacy
  }
  absl::Status AddNoise(std::span<float>, RandomSource&) const override { return absl::OkStatus(); }
  absl::Status AddNoise(std::span<int64_t>, RandomSource&) const override {
    return absl::OkStatus();
  }
  Guarantee GetGuarantee() const override {
    return {std::numeric_limits<double>::infinity(), 1.0, 0.0, options().relation,
            "none: no noise, no differential privacy"};
  }
};

class GaussianMechanism final : public Mechanism {
 public:
  explicit GaussianMechanism(const MechanismOptions& options) : Mechanism(options) {}
  std::string_view name() const override { return "gaussian"; }
  absl::StatusOr<MechanismAccounting> accounting() const override {
    return MechanismAccounting{"rdp", options().noise_multiplier};
  }
  bool divisible() const override { return true; }

  absl::Status AddNoise(std::span<float> values, RandomSource& random) const override {
    const double std_dev = options().noise_multiplier * options().l2_sensitivity;
    for (float& value : values) {
      value = static_cast<float>(value + std_dev * SampleStandardGaussian(random));
    }
    return absl::OkStatus();
  }
  absl::Status AddNoise(std::span<int64_t>, RandomSource&) const override {
    return Unsupported(name(), "integers (use discrete-gaussian)");
  }

  Guarantee GetGuarantee() const override {
    const double sigma = options().noise_multiplier;
    const double rho = 1.0 / (2.0 * sigma * sigma);
    Guarantee guarantee{ZcdpEpsilon(rho, options().delta), options().delta,
                        options().l2_sensitivity, options().relation, ""};
    guarantee.description = absl::StrFormat(
        "gaussian: noise std %g (noise multiplier %g x L2 sensitivity %g per %s); "
        "%g-zCDP, (%g, %g)-DP per application",
        sigma * options().l2_sensitivity, sigma, options().l2_sensitivity,
        std::string(NeighbouringRelationName(options().relation)), rho, guarantee.epsilon,
        guarantee.delta);
    return guarantee;
  }
};

class LaplaceMechanism final : public Mechanism {
 public:
  explicit LaplaceMechanism(const MechanismOptions& options) : Mechanism(options) {}
  std::string_view name() const override { return "laplace"; }
  absl::StatusOr<MechanismAccounting> accounting() const override {
    return MechanismAccounting{"laplace", options().noise_multiplier};
  }
  int sensitivity_norm() const override { return 1; }

  absl::Status AddNoise(std::span<float> values, RandomSource& random) const override {
    const double scale = options().noise_multiplier * options().l1_sensitivity;
    for (float& value : values) {
      value = static_cast<float>(value + scale * SampleStandardLaplace(random));
    }
    return absl::OkStatus();
  }
  absl::Status AddNoise(std::span<int64_t>, RandomSource&) const override {
    return Unsupported(name(), "integers");
  }

  Guarantee GetGuarantee() const override {
    const double epsilon =
        std::nextafter(1.0 / options().noise_multiplier, std::numeric_limits<double>::infinity());
    Guarantee guarantee{epsilon, 0.0, options().l1_sensitivity, options().relation, ""};
    guarantee.description = absl::StrFormat(
        "laplace: noise scale %g (noise multiplier %g x L1 sensitivity %g per %s); "
        "(%g, 0)-DP per application",
        options().noise_multiplier * options().l1_sensitivity, options().noise_multiplier,
        options().l1_sensitivity, std::string(NeighbouringRelationName(options().relation)),
        epsilon);
    return guarantee;
  }
};

class DiscreteGaussianMechanism final : public Mechanism {
 public:
  explicit DiscreteGaussianMechanism(const MechanismOptions& options) : Mechanism(options) {
    const double std_dev = options.noise_multiplier * options.l2_sensitivity;
    variance_numerator_ = static_cast<uint64_t>(
        std::ceil(std_dev * std_dev * static_cast<double>(kVarianceDenominator)));
    if (variance_numerator_ == 0) variance_numerator_ = 1;
  }
  std::string_view name() const override { return "discrete-gaussian"; }
  absl::StatusOr<MechanismAccounting> accounting() const override {
    return MechanismAccounting{"zcdp", options().noise_multiplier};
  }
  bool integer_valued() const override { return true; }
  bool divisible() const override { return true; }

  absl::Status AddNoise(std::span<float>, RandomSource&) const override {
    return Unsupported(name(), "floats (encode the update as integers first)");
  }
  absl::Status AddNoise(std::span<int64_t> values, RandomSource& random) const override {
    for (int64_t& value : values) {
      value += SampleDiscreteGaussian(random, variance_numerator_, kVarianceDenominator);
    }
    return absl::OkStatus();
  }

  // The variance actually sampled, >= (noise_multiplier * l2_sensitivity)².
  double variance() const {
    return static_cast<double>(variance_numerator_) / static_cast<double>(kVarianceDenominator);
  }

  Guarantee GetGuarantee() const override {
    const double sigma = options().noise_multiplier;
    const double rho = 1.0 / (2.0 * sigma * sigma);
    Guarantee guarantee{ZcdpEpsilon(rho, options().delta), options().delta,
                        options().l2_sensitivity, options().relation, ""};
    guarantee.description = absl::StrFormat(
        "discrete-gaussian: integer noise variance %g (noise multiplier %g x integer L2 "
        "sensitivity %g per %s); %g-zCDP, (%g, %g)-DP per application",
        variance(), sigma, options().l2_sensitivity,
        std::string(NeighbouringRelationName(options().relation)), rho, guarantee.epsilon,
        guarantee.delta);
    return guarantee;
  }

 private:
  uint64_t variance_numerator_ = 1;
};

absl::StatusOr<std::unique_ptr<Mechanism>> MakeNone(const MechanismOptions& options) {
  FEDGE_RETURN_IF_ERROR(ValidateCommon(options));
  return std::make_unique<NoMechanism>(options);
}

absl::StatusOr<std::unique_ptr<Mechanism>> MakeGaussian(const MechanismOptions& options) {
  FEDGE_RETURN_IF_ERROR(ValidateCommon(options));
  FEDGE_RETURN_IF_ERROR(RequirePositive(options.noise_multiplier, "noise_multiplier"));
  FEDGE_RETURN_IF_ERROR(RequirePositive(options.l2_sensitivity, "l2_sensitivity"));
  FEDGE_RETURN_IF_ERROR(ValidateDelta(options));
  return std::make_unique<GaussianMechanism>(options);
}

absl::StatusOr<std::unique_ptr<Mechanism>> MakeLaplace(const MechanismOptions& options) {
  FEDGE_RETURN_IF_ERROR(ValidateCommon(options));
  FEDGE_RETURN_IF_ERROR(RequirePositive(options.noise_multiplier, "noise_multiplier"));
  FEDGE_RETURN_IF_ERROR(RequirePositive(options.l1_sensitivity, "l1_sensitivity"));
  return std::make_unique<LaplaceMechanism>(options);
}

absl::StatusOr<std::unique_ptr<Mechanism>> MakeDiscreteGaussian(const MechanismOptions& options) {
  FEDGE_RETURN_IF_ERROR(ValidateCommon(options));
  FEDGE_RETURN_IF_ERROR(RequirePositive(options.noise_multiplier, "noise_multiplier"));
  FEDGE_RETURN_IF_ERROR(RequirePositive(options.l2_sensitivity, "l2_sensitivity"));
  FEDGE_RETURN_IF_ERROR(ValidateDelta(options));
  const double std_dev = options.noise_multiplier * options.l2_sensitivity;
  if (!(std_dev <= kMaxDiscreteStd)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MechanismOptions.noise_multiplier * l2_sensitivity (the integer noise "
                     "std) must be <= ",
                     kMaxDiscreteStd, ", got ", std_dev));
  }
  return std::make_unique<DiscreteGaussianMechanism>(options);
}

Registry<MechanismFactory>& Mechanisms() {
  static auto* registry = new Registry<MechanismFactory>("mechanism");
  return *registry;
}

[[maybe_unused]] const bool kNoneRegistered = RegisterMechanism("none", MakeNone);
[[maybe_unused]] const bool kGaussianRegistered = RegisterMechanism("gaussian", MakeGaussian);
[[maybe_unused]] const bool kLaplaceRegistered = RegisterMechanism("laplace", MakeLaplace);
[[maybe_unused]] const bool kDiscreteGaussianRegistered =
    RegisterMechanism("discrete-gaussian", MakeDiscreteGaussian);

}  // namespace

std::string_view NeighbouringRelationName(NeighbouringRelation relation) {
  switch (relation) {
    case NeighbouringRelation::kExample:
      return "example";
    case NeighbouringRelation::kDevice:
      return "device";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Mechanism>> CreateMechanism(std::string_view name,
                                                           const MechanismOptions& options) {
  FEDGE_ASSIGN_OR_RETURN(MechanismFactory factory, Mechanisms().Find(name));
  return factory(options);
}

bool RegisterMechanism(std::string_view name, MechanismFactory factory) {
  return Mechanisms().Add(name, std::move(factory));
}

std::vector<std::string> RegisteredMechanisms() { return Mechanisms().Names(); }

}  // namespace fedge::privacy
