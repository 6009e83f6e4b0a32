// DP noise mechanisms, pluggable by name.
//
// A Mechanism adds noise to an aggregate (a sum of clipped updates) in place.
// Its guarantee depends on the sensitivity of that aggregate: how far, in L2
// (gaussian, discrete-gaussian) or L1 (laplace) norm, it can move when the
// data changes to a neighbouring dataset. The caller states the sensitivity
// (e.g. the clipping bound C for add/remove neighbours, 2C for replace-one)
// and which unit the neighbouring relation is about: one example, or all the
// data of one device (user-level DP). Built-ins:
//
//  name               noise per coordinate            one application
//  "none"             nothing                         no privacy (ε = ∞)
//  "gaussian"         N(0, (σ·Δ₂)²), float            (α/(2σ²))-RDP for all α
//  "laplace"          Laplace(σ·Δ₁), float            (1/σ, 0)-DP
//  "discrete-gaussian" N_Z(0, (σ·Δ₂)²), int64, exact  (1/(2σ²))-zCDP
//
// The discrete Gaussian bound (Canonne, Kamath, Steinke 2020, Theorem 14,
// via the product of per-coordinate Rényi divergences) needs the neighbouring
// aggregates to differ by an INTEGER vector of L2 norm <= Δ₂. Its variance
// (σ·Δ₂)² is rounded UP to a multiple of 2^-20 for the exact integer sampler
// (more noise, so the guarantee still holds). Guarantees in RDP/zCDP form are
// reported as (ε, δ) at MechanismOptions::delta via RdpToEpsilon.
//
// where σ = MechanismOptions::noise_multiplier. The floating-point samplers
// (gaussian, laplace) are subject to the floating-point attacks of Mironov
// 2012; use discrete-gaussian on integer-encoded updates (as secure
// aggregation needs anyway) when that matters.
//
//   FEDGE_ASSIGN_OR_RETURN(auto mechanism, CreateMechanism("gaussian", options));
//   FEDGE_RETURN_IF_ERROR(mechanism->AddNoise(sum, DefaultRandom()));  // SecureRandom
//
// Simulations pass a SeededRandom instead, for reproducible runs.
//
// Mechanisms are immutable after creation and thread-safe (the random source
// is passed per call; it is not thread-safe itself).
#ifndef FEDGE_PRIVACY_MECHANISM_H_
#define FEDGE_PRIVACY_MECHANISM_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/privacy/random.h"

namespace fedge::privacy {

// What one unit of privacy protects.
enum class NeighbouringRelation {
  kExample,  // datasets differ in one training example
  kDevice,   // datasets differ in all the data of one device (user-level DP)
};

std::string_view NeighbouringRelationName(NeighbouringRelation relation);

struct MechanismOptions {
  // Noise standard deviation (gaussian, discrete-gaussian) or scale (laplace)
  // in units of the sensitivity. Default: 1.0. REQUIRES: finite, > 0
  // (not read by "none").
  double noise_multiplier = 1.0;
  // L2 sensitivity Δ₂ of the aggregate (gaussian, discrete-gaussian; for the
  // latter in integer units). Default: 1.0. REQUIRES: finite, > 0.
  double l2_sensitivity = 1.0;
  // L1 sensitivity Δ₁ of the aggregate (laplace). Default: 1.0.
  // REQUIRES: finite, > 0.
  double l1_sensitivity = 1.0;
  // The neighbouring relation the sensitivities refer to. Default: kExample.
  NeighbouringRelation relation = NeighbouringRelation::kExample;
  // δ at which Guarantee() reports ε for the gaussian mechanisms.
  // Default: 1e-5. REQUIRES: 0 < delta < 1.
  double delta = 1e-5;
  // A plug-in's own parameters: the config keys it declared
  // (config::RegisterPluginKeys in fedge/proto/plugin.h), by full key name,
  // as validated text with their defaults filled in. Empty for built-ins.
  std::map<std::string, std::string> params;
};

// The privacy of ONE application of a mechanism (compose over rounds with an
// Accountant).
struct Guarantee {
  double epsilon = 0.0;      // +infinity for "none"
  double delta = 0.0;        // 0 for pure DP
  double sensitivity = 0.0;  // Δ₂ or Δ₁, as the mechanism uses
  NeighbouringRelation relation = NeighbouringRelation::kExample;
  std::string description;  // human-readable summary of the above
};

// How one application of a mechanism composes over rounds, as the mechanism
// itself states it: the Accountant that bounds it from above, and the noise
// multiplier to step that accountant with. Everything fedge reports or
// enforces about ε (the round records, the budget, fedge-sim's summary)
// comes from this statement, never from the configured noise multiplier
// alone: a mechanism that adds less noise than it was asked to states so
// here, and is accounted for what it adds.
struct MechanismAccounting {
  // A registered Accountant (accountant.h): "rdp" (the Poisson-subsampled
  // Gaussian), "zcdp" (a Gaussian without amplification by sampling),
  // "laplace". Empty: the mechanism gives no privacy (ε = +infinity).
  std::string accountant;
  // The noise the mechanism adds per application, as a multiple of the
  // sensitivity it was created for (options().l2_sensitivity, or
  // l1_sensitivity for an L1 mechanism): the σ of that accountant's
  // Step(sampling_rate, σ). REQUIRES: finite, > 0 (unless `accountant` is
  // empty).
  double noise_multiplier = 0.0;
};

class Mechanism {
 public:
  virtual ~Mechanism() = default;

  virtual std::string_view name() const = 0;

  // Adds independent noise to every entry of `values` in place, drawing from
  // `random`. UNIMPLEMENTED when the mechanism does not work on this type
  // (floats for discrete-gaussian, integers for gaussian and laplace).
  virtual absl::Status AddNoise(std::span<float> values, RandomSource& random) const = 0;
  virtual absl::Status AddNoise(std::span<int64_t> values, RandomSource& random) const = 0;

  // Guarantee of one application, whatever the dimension. Never understates ε.
  virtual Guarantee GetGuarantee() const = 0;

  // How repeated applications compose (see MechanismAccounting). An error
  // (UNIMPLEMENTED, say) means the mechanism states no bound an accountant
  // can compose: it then runs only without an ε budget, and ε is reported
  // as +infinity. Built-ins: "rdp" for gaussian, "zcdp" for
  // discrete-gaussian, "laplace" for laplace, each at the noise multiplier
  // it was created with; "none" states no privacy.
  virtual absl::StatusOr<MechanismAccounting> accounting() const = 0;

  // The norm its sensitivity is measured in: 2 (L2) or 1 (L1). Updates are
  // clipped in this norm before the mechanism sees them.
  virtual int sensitivity_norm() const { return 2; }

  // True when the mechanism noises integers (fixed-point encoded updates,
  // AddNoise(span<int64_t>)) rather than floats.
  virtual bool integer_valued() const { return false; }

  // True when n independent applications with noise multiplier σ/√n sum to
  // the noise of one application with σ, so n clients can each add a share
  // (distributed DP, Kairouz et al. 2021). Exact for the Gaussian; for the
  // discrete Gaussian the sum is close to, not equal to, a discrete Gaussian
  // and callers add the divergence slack of Kairouz et al. (Theorem 1).
  virtual bool divisible() const { return false; }

  const MechanismOptions& options() const { return options_; }

 protected:
  explicit Mechanism(const MechanismOptions& options) : options_(options) {}

 private:
  MechanismOptions options_;
};

using MechanismFactory =
    std::function<absl::StatusOr<std::unique_ptr<Mechanism>>(const MechanismOptions&)>;

// Creates a registered mechanism. NOT_FOUND lists the known names;
// INVALID_ARGUMENT names the offending options field.
absl::StatusOr<std::unique_ptr<Mechanism>> CreateMechanism(std::string_view name,
                                                           const MechanismOptions& options);

// Registers a mechanism; returns true so it can initialize a static (one
// registration line per implementation). A name registered twice aborts.
bool RegisterMechanism(std::string_view name, MechanismFactory factory);

// Sorted names of all registered mechanisms.
std::vector<std::string> RegisteredMechanisms();

}  // namespace fedge::privacy

#endif  // FEDGE_PRIVACY_MECHANISM_H_
