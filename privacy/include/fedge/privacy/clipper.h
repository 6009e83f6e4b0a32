// Clippers: how each round's bound on a client's contribution is chosen,
// pluggable by name like mechanisms and accountants.
//
//  name        bound                                   state
//  "fixed"     clip_norm, every round                   none
//  "adaptive"  tracks the target_quantile of update     the clip norm and this
//              norms (Andrew et al. 2021, see           round's counts
//              AdaptiveClipper in clipping.h)
//
// A round uses a clipper like this (the aggregator's DP pipeline does it):
//
//   const double bound = clipper->clip_norm();   // fixed for the round
//   FEDGE_ASSIGN_OR_RETURN(bool within, clipper->Clip(update));  // Clip is const
//   clipper->Record(within);                     // per update
//   ...
//   FEDGE_RETURN_IF_ERROR(clipper->EndRound(random, expected).status());  // next bound
//
// The noise on the sum of updates must be calibrated to the bound; an
// adaptive clipper also releases a noised count each round, so the sum gets
// a little more noise for the pair to cost the same as one Gaussian release
// with the configured noise multiplier: SumNoiseMultiplier().
//
// Thread safety: Clip() and the accessors are safe to call concurrently;
// Record(), EndRound() and Restore() need external serialization.
#ifndef FEDGE_PRIVACY_CLIPPER_H_
#define FEDGE_PRIVACY_CLIPPER_H_

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/privacy/random.h"

namespace fedge::privacy {

struct ClipperOptions {
  // The bound ("fixed") or the first round's bound ("adaptive").
  // Default: 1.0. REQUIRES: finite, > 0.
  double clip_norm = 1.0;
  // The norm clipped in: 2 (L2, for gaussian mechanisms) or 1 (L1, laplace).
  // Default: 2.
  int norm = 2;
  // "adaptive" only (see AdaptiveClipperOptions): target quantile γ in
  // [0, 1], geometric learning rate η > 0, and the std σ_b of the noise on
  // the count of updates within the bound (> 0: the bound is then private).
  double target_quantile = 0.5;
  double learning_rate = 0.2;
  double count_noise_stddev = 5.0;
};

class Clipper {
 public:
  virtual ~Clipper() = default;

  virtual std::string_view name() const = 0;

  // The bound of the current round.
  virtual double clip_norm() const = 0;

  // Clips `update` in place to clip_norm() in the configured norm. Returns
  // true when its norm was already within the bound; INVALID_ARGUMENT (the
  // update unchanged) when the bound is not finite and > 0.
  absl::StatusOr<bool> Clip(std::span<float> update) const;

  // Records whether one update of this round was within the bound.
  void Record(bool within_bound) { RecordCounts(1, within_bound ? 1 : 0); }

  // Records `updates` updates of which `within_bound` were within the bound
  // (a count that arrived securely summed, when the server sees no update).
  virtual void RecordCounts(int64_t updates, int64_t within_bound) = 0;

  // Ends the round (adaptive: moves the bound, drawing the count noise from
  // `random`; `expected_updates` is the public expected cohort size it
  // divides by). Returns the next round's bound. A round without any
  // recorded update leaves the bound as it was.
  virtual absl::StatusOr<double> EndRound(RandomSource& random, double expected_updates) = 0;

  // The noise multiplier to put on the SUM of clipped updates so that the
  // round, including whatever the clipper itself releases, is as private as
  // one Gaussian release with noise multiplier `target` (the one accounted).
  // "fixed": target. "adaptive": (target^-2 - (2σ_b)^-2)^(-1/2) (Andrew et
  // al. 2021, Theorem 1); INVALID_ARGUMENT when 2σ_b <= target (the count
  // alone would cost more than the target allows).
  virtual absl::StatusOr<double> SumNoiseMultiplier(double target) const = 0;

  // The state (not the options), exactly; and its inverse, which leaves the
  // clipper unchanged and returns INVALID_ARGUMENT on bytes that are not one.
  virtual std::string Serialize() const = 0;
  virtual absl::Status Restore(std::string_view serialized) = 0;

  int norm() const { return norm_; }

 protected:
  explicit Clipper(int norm) : norm_(norm) {}

 private:
  int norm_;
};

using ClipperFactory =
    std::function<absl::StatusOr<std::unique_ptr<Clipper>>(const ClipperOptions&)>;

// Creates a registered clipper. NOT_FOUND lists the known names;
// INVALID_ARGUMENT names the offending options field.
absl::StatusOr<std::unique_ptr<Clipper>> CreateClipper(std::string_view name,
                                                       const ClipperOptions& options);

// Registers a clipper; returns true so it can initialize a static. A name
// registered twice aborts.
bool RegisterClipper(std::string_view name, ClipperFactory factory);

// Sorted names of all registered clippers.
std::vector<std::string> RegisteredClippers();

}  // namespace fedge::privacy

#endif  // FEDGE_PRIVACY_CLIPPER_H_
