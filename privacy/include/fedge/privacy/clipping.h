// Norm clipping of updates, on plain spans (no LibTorch, no I/O).
//
// Clipping bounds each client's contribution: after ClipL2(v, C),
// ||v||_2 <= C, so replacing one client's update changes a sum of clipped
// updates by at most 2C in L2 norm (C when a client is added or removed).
// That bound is the sensitivity the DP mechanisms are calibrated to.
#ifndef FEDGE_PRIVACY_CLIPPING_H_
#define FEDGE_PRIVACY_CLIPPING_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "fedge/privacy/random.h"

namespace fedge::privacy {

// Euclidean norm, accumulated in double.
double L2Norm(std::span<const float> values);

// Sum of absolute values, accumulated in double.
double L1Norm(std::span<const float> values);

// As ClipL2, in the L1 norm (for mechanisms with L1 sensitivity: laplace).
absl::StatusOr<double> ClipL1(std::span<float> values, double max_norm);

// Scales `values` in place so that their L2 norm is at most `max_norm`
// (unchanged when already within). Returns the factor applied, in (0, 1].
// The bound often comes from the network (a task's clip norm): one that is
// not finite and > 0 is INVALID_ARGUMENT, naming it, and `values` is left
// unchanged.
absl::StatusOr<double> ClipL2(std::span<float> values, double max_norm);

struct AdaptiveClipperOptions {
  // Clipping norm C used in the first round. Default: 0.1. REQUIRES: > 0.
  double initial_clip_norm = 0.1;
  // Target quantile γ of the update norms that C should track.
  // Default: 0.5 (the median). REQUIRES: 0 <= value <= 1.
  double target_quantile = 0.5;
  // Geometric learning rate η_C. Default: 0.2 (Andrew et al. 2021).
  // REQUIRES: > 0.
  double learning_rate = 0.2;
  // Std σ_b of the Gaussian noise added to the centred count of updates whose
  // norm was within C, before it is divided by the expected number of updates.
  // Default: 0 (no noise: the clip norm itself is then NOT private).
  // REQUIRES: >= 0.
  double count_noise_stddev = 0.0;
};

// Adaptive quantile clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021,
// "Differentially Private Learning with Adaptive Clipping"). Each round, every
// update is clipped to the current norm C and contributes one bit
// b_i = [||Δ_i||_2 <= C]. At the end of the round, with m̄ the expected
// number of updates (the cohort size, or qN under Poisson sampling),
//   b̄ = 1/2 + (Σ (b_i - 1/2) + N(0, σ_b²)) / m̄,   C <- C · exp(-η_C · (b̄ - γ)),
// so C moves geometrically towards the γ-quantile of the update norms.
//
// Privacy: the released quantity is the centred sum Σ (b_i - 1/2) plus
// noise (m̄ is public), whose sensitivity under add/remove of one update's
// owner is 1/2 -- not 1, as an uncentred count would have. Andrew et al.
// (Theorem 1) show that releasing the noised sum of updates with noise
// multiplier σ_Δ together with this count is equivalent to one Gaussian
// mechanism with noise multiplier z where σ_Δ = (z^-2 - (2σ_b)^-2)^(-1/2);
// account the round with z in the RdpAccountant (Clipper::SumNoiseMultiplier).
//
// Thread safety: not thread-safe; callers serialize access.
class AdaptiveClipper {
 public:
  // INVALID_ARGUMENT names the offending options field.
  static absl::StatusOr<AdaptiveClipper> Create(const AdaptiveClipperOptions& options);

  // The clipping norm of the current round.
  double clip_norm() const { return clip_norm_; }

  // Clips `update` in place to clip_norm() and records its bit. Returns the
  // factor applied, in (0, 1].
  absl::StatusOr<double> ClipAndRecord(std::span<float> update);

  // Records the bit of an update clipped elsewhere (e.g. on the device).
  void Record(bool norm_within_clip);

  // Records `updates` bits of which `within_clip` were 1, e.g. a count that
  // arrived securely summed. Negative counts count as 0; within_clip is
  // capped at updates.
  void RecordCounts(int64_t updates, int64_t within_clip);

  // Updates of this round so far, and how many were within clip_norm().
  int64_t updates() const { return updates_; }
  int64_t within_clip() const { return within_clip_; }

  // Ends the round: draws the count noise from `random`, updates clip_norm()
  // and resets the counts. Returns the noised fraction b̄ (above). Nothing
  // changes on an error: FAILED_PRECONDITION when no update was recorded this
  // round, INVALID_ARGUMENT when expected_updates is not finite and > 0.
  absl::StatusOr<double> EndRound(RandomSource& random, double expected_updates);

  // The clip norm and this round's counts (not the options, which come from
  // configuration), exactly; and the inverse. Restore leaves the clipper
  // unchanged and returns INVALID_ARGUMENT when the bytes are not a state.
  std::string Serialize() const;
  absl::Status Restore(std::string_view serialized);

 private:
  explicit AdaptiveClipper(const AdaptiveClipperOptions& options)
      : options_(options), clip_norm_(options.initial_clip_norm) {}

  AdaptiveClipperOptions options_;
  double clip_norm_;
  int64_t updates_ = 0;
  int64_t within_clip_ = 0;
};

}  // namespace fedge::privacy

#endif  // FEDGE_PRIVACY_CLIPPING_H_
