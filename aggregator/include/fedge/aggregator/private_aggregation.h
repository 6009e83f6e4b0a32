// PrivateAggregation: the aggregator's half of differential privacy — what
// clients are told to do, the clipping and noise applied to the sum, the
// privacy accountant, and the budget.
//
// DP-FedAvg (McMahan, Ramage, Talwar, Zhang 2018): each round the cohort is
// a Poisson sample (every client independently with probability q), every
// participant's update counts equally (example counts would leak data), each
// is clipped to norm C, and the round's model delta is the
// fixed-denominator estimate
//
//     Δ = (Σ_i clip(Δ_i) + N(0, (z·C)²)) / (q·N)
//
// whose sensitivity to adding or removing one device is C. One round is then
// the Poisson-subsampled Gaussian mechanism with noise multiplier z, which
// the "rdp" accountant bounds. The noise goes on at the aggregator
// ("central"), on each device ("local": every device adds the full noise to
// its own update; ε is then per device, for the device that took part most
// often, against replacing its data, i.e. sensitivity 2C, with no
// amplification by sampling), or is split among the cohort ("distributed":
// each of the m clients adds noise with multiplier z/√m, so the sum carries
// z; Kairouz, Liu, Steinke 2021). In distributed mode a round that loses
// clients carries less noise, and is accounted with what it carried:
// z·√(k/m) for k of m updates.
//
// The discrete Gaussian (integer updates, for secure aggregation) is
// accounted without amplification by sampling ("zcdp"), plus, in
// distributed mode, the slack τ·d of Kairouz et al. 2021 (Theorem 1) for the
// sum of discrete Gaussians not being exactly one.
//
// Thread safety: ClipUpdate() and the accessors may run concurrently; the
// other methods need external serialization (the RoundManager's lock).
#ifndef FEDGE_AGGREGATOR_PRIVATE_AGGREGATION_H_
#define FEDGE_AGGREGATOR_PRIVATE_AGGREGATION_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/privacy/accountant.h"
#include "fedge/privacy/clipper.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/privacy/random.h"
#include "fedge/privacy/update_privacy.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::aggregator {

struct PrivateAggregationOptions {
  privacy::PrivacyMode mode = privacy::PrivacyMode::kCentral;
  // Registered mechanism. Default: "gaussian".
  std::string mechanism = "gaussian";
  // z: std of the noise on the round's sum, in units of the clip norm (the
  // value accounted). REQUIRES: finite, > 0.
  double noise_multiplier = 1.0;
  // Registered clipper and its options (clip norm, adaptive settings); the
  // clipping norm type is taken from the mechanism.
  std::string clipper = "fixed";
  privacy::ClipperOptions clipper_options;
  // q: the probability with which each client joins a round (Poisson
  // sampling), and q·N, the expected cohort size used as the fixed
  // denominator. REQUIRES: 0 < q <= 1, expected_cohort > 0.
  double sampling_rate = 1.0;
  double expected_cohort = 1.0;
  // δ at which ε is reported. Default: 1e-5. REQUIRES: 0 < δ < 1.
  double delta = 1e-5;
  // Largest ε the federation may spend; a round that would go beyond it is
  // refused. 0: no budget. REQUIRES: >= 0.
  // The plug-in keys' values (fedge/proto/plugin.h), defaults filled in:
  // passed to the mechanism as MechanismOptions::params.
  std::map<std::string, std::string> mechanism_params;
  double epsilon_budget = 0.0;
  // Integer mechanisms: fixed-point scale γ; 0 picks γ = 20·√d / C, so the
  // rounding adds at most 5% to the sensitivity. REQUIRES: >= 0.
  double integer_scale = 0.0;
  // Where the aggregator's noise comes from: OpenSSL (false, the default)
  // or a std::mt19937_64 seeded with `seed` (simulations only).
  bool seeded_random = false;
  uint64_t seed = 0;
};

// What a round spent.
struct RoundPrivacy {
  double clip_norm = 0.0;         // the bound of the round just closed
  double noise_multiplier = 0.0;  // z accounted for it
  double epsilon = 0.0;           // total ε so far, at delta
  double delta = 0.0;
};

class PrivateAggregation {
 public:
  // INVALID_ARGUMENT names the offending option, including combinations that
  // cannot be made private (a non-divisible mechanism in distributed mode, an
  // integer mechanism in central mode, adaptive clipping with a non-Gaussian
  // mechanism or too little count noise). `dimension`: model size.
  static absl::StatusOr<std::unique_ptr<PrivateAggregation>> Create(
      const PrivateAggregationOptions& options, std::size_t dimension);

  const PrivateAggregationOptions& options() const { return options_; }
  privacy::PrivacyMode mode() const { return options_.mode; }
  double clip_norm() const { return clipper_->clip_norm(); }
  // ε spent so far at options().delta (+inf for the "none" mechanism).
  double epsilon() const { return epsilon_; }
  int64_t rounds() const { return rounds_; }

  // RESOURCE_EXHAUSTED, saying how much, when one more round with
  // `cohort_size` clients would take ε beyond the budget. Changes nothing.
  absl::Status CheckBudget(const std::vector<std::string>& cohort) const;
  // The same for a round of `cohort_size` whose sum holds the updates of
  // `participants` only: decided on the noise actually present (distributed
  // mode: the shares of the survivors), before anything is released, so ε
  // never ends above the budget.
  absl::Status CheckBudgetFor(std::size_t cohort_size,
                              const std::vector<std::string>& participants) const;

  // The privacy section of the tasks of a round with `cohort_size` clients.
  v1::PrivacyConfig TaskConfig(std::size_t cohort_size) const;

  // Central mode: clips the decoded `delta` in place to `bound`, the
  // round's clip_norm() as read when the update was admitted (the caller
  // reads it under its lock; the clipper moves between rounds). Other modes:
  // checks nothing (the client clipped before noising; only the fixed
  // clipper is allowed, so no bit is needed). Returns whether the update was
  // within the bound. Thread-safe.
  // INVALID_ARGUMENT when `bound` is not a usable bound.
  absl::StatusOr<bool> ClipUpdate(std::span<float> delta, double bound) const;
  // Records the bit ClipUpdate returned (adaptive clipping).
  void Record(bool within_bound);
  // Records a securely summed count: `updates` updates, `within_bound` of
  // them within the bound (central mode under secure aggregation, where the
  // devices clip and send their bit inside the masked vector).
  void RecordCounts(int64_t updates, int64_t within_bound);
  // Whether the clipper moves with the within-bound counts (adaptive).
  bool needs_counts() const { return clipper_->name() != "fixed"; }

  // Turns the mean of `participants` equally weighted updates into the
  // round's private estimate: (participants·mean + noise) / expected_cohort,
  // noise added here only in central mode.
  absl::Status Finalize(std::span<float> mean, int participants);

  // Accounts the round (cohort of `cohort_size`, `participants` of whom were
  // aggregated) and moves the clipper to the next round's bound.
  absl::StatusOr<RoundPrivacy> EndRound(std::size_t cohort_size,
                                        const std::vector<std::string>& participants);

  // The state that must survive a restart (accountant, clipper, rounds,
  // participations), and its inverse. Restore replaces the whole state or,
  // on bytes that are not a state for these options (INVALID_ARGUMENT),
  // changes nothing. The options themselves come from configuration.
  std::string Serialize() const;
  absl::Status Restore(std::string_view serialized);

 private:
  PrivateAggregation(const PrivateAggregationOptions& options, std::size_t dimension,
                     std::unique_ptr<privacy::Mechanism> mechanism,
                     std::unique_ptr<privacy::Clipper> clipper,
                     std::unique_ptr<privacy::RandomSource> random);

  // The z a round with k of m updates is accounted with (and the zCDP slack).
  absl::StatusOr<double> AccountedNoise(std::size_t cohort_size, std::size_t participants) const;
  // ε after adding one round accounted with `z` (and `extra` participations
  // for local mode).
  absl::StatusOr<double> EpsilonAfter(double z, int64_t local_participations) const;

  PrivateAggregationOptions options_;
  std::size_t dimension_;
  double integer_scale_ = 0.0;
  std::unique_ptr<privacy::Mechanism> mechanism_;
  std::unique_ptr<privacy::Clipper> clipper_;
  std::unique_ptr<privacy::RandomSource> random_;
  // The accountant the mechanism's accounting() names; null when it states
  // no privacy ("none") or no bound at all (then ε is +infinity).
  std::unique_ptr<privacy::Accountant> accountant_;
  // The noise the mechanism states it adds over the noise it was asked for
  // (1 for the built-ins): every accounted noise multiplier is scaled by it.
  double accounting_scale_ = 1.0;
  std::map<std::string, int64_t, std::less<>> participations_;  // local mode
  int64_t max_participations_ = 0;
  double epsilon_ = 0.0;
  int64_t rounds_ = 0;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_PRIVATE_AGGREGATION_H_
