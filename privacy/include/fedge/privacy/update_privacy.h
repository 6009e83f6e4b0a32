// Where differential-privacy noise is added, and what a client does to its
// own update (plain spans; no I/O).
//
//  mode          client                          aggregator
//  central       sends its update                clips each update, adds the
//                                                full noise to the sum
//                                                (DP-FedAvg, McMahan et al.
//                                                2018)
//  local         clips, adds the full noise      sums
//  distributed   clips, adds 1/√m of the noise   sums: m shares add up to the
//                (its share of m)                full noise (Kairouz et al.
//                                                2021); with secure
//                                                aggregation no one sees a
//                                                single share
//
// Integer-valued mechanisms (discrete-gaussian) work on fixed-point
// updates: the clipped update is scaled by γ (integer_scale) and rounded
// stochastically, each coordinate up or down with the probabilities that
// keep its mean, so its integer L2 norm is at most γ·C + √d; the noise is
// calibrated to that bound, added in the integers, and the result divided by
// γ again.
#ifndef FEDGE_PRIVACY_UPDATE_PRIVACY_H_
#define FEDGE_PRIVACY_UPDATE_PRIVACY_H_

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "fedge/privacy/random.h"

namespace fedge::privacy {

enum class PrivacyMode { kNone, kCentral, kLocal, kDistributed };

// "none", "central", "local", "distributed".
std::string_view PrivacyModeName(PrivacyMode mode);
// INVALID_ARGUMENT lists the valid names.
absl::StatusOr<PrivacyMode> ParsePrivacyMode(std::string_view name);

// Integer L2 sensitivity of a d-dimensional update clipped to `clip_norm`,
// scaled by `integer_scale` and stochastically rounded: γ·C + √d.
double IntegerSensitivity(double clip_norm, double integer_scale, std::size_t dimension);

// What a client does to its update this round.
struct ClientPrivacy {
  // Bound to clip to (0: no clipping) and its norm (1 or 2).
  double clip_norm = 0.0;
  int norm = 2;
  // Registered mechanism; "" or "none": no noise.
  std::string mechanism;
  // Std of this client's noise in units of its sensitivity (the clip norm,
  // or IntegerSensitivity() for integer mechanisms). REQUIRES: > 0 when a
  // mechanism is set.
  double noise_multiplier = 0.0;
  // Fixed-point scale γ for integer mechanisms. REQUIRES: > 0 for them.
  double integer_scale = 0.0;
};

struct PrivatizedUpdate {
  double norm_before_clip = 0.0;  // in the clipping norm
  bool within_bound = true;       // norm_before_clip <= clip_norm (or no clipping)
};

// Clips `update` in place, then adds the client's noise, drawing from
// `random`. INVALID_ARGUMENT (update unchanged) for bad parameters, an
// unknown mechanism, or integer magnitudes beyond 2^52.
absl::StatusOr<PrivatizedUpdate> PrivatizeUpdate(const ClientPrivacy& privacy,
                                                 std::span<float> update, RandomSource& random);

}  // namespace fedge::privacy

#endif  // FEDGE_PRIVACY_UPDATE_PRIVACY_H_
