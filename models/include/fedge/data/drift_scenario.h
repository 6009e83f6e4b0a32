// Drift scenarios: what changes in a drifted client's data, from which
// round, and how fast. Simulations inject them into simulated devices, and
// fedge-client into its own shard (fault.drift_*, for tests that drift a
// real device process).
//
//  * covariate shift (inputs change, labels do not):
//      rotation             images rotated by rotation_degrees about their
//                           centre (bilinear, background fill); vector
//                           features rotated pairwise by the same angle
//      noise                additive Gaussian noise, noise_std in units of the
//                           value range (255 for pixels)
//      brightness-contrast  x -> contrast * (x - mid) + mid + brightness * range
//      occlusion            an occlusion_size square (a block of features for
//                           vectors) set to 0 at a random place per example
//  * label shift (class priors change): the client's examples are redrawn
//    from the whole train split with class shares ~ Dirichlet(label_shift_alpha)
//  * concept drift (the same input means another class): labels swap_a and
//    swap_b exchanged.
//
// Drift starts at `round` in a `fraction` of the clients; sudden drift moves
// all of a drifted client's data at once, gradual drift a growing share
// (1/gradual_rounds more each round). Every choice is deterministic for a
// seed. Nothing here depends on LibTorch.
#ifndef FEDGE_DATA_DRIFT_SCENARIO_H_
#define FEDGE_DATA_DRIFT_SCENARIO_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/data/dataset.h"

namespace fedge::data {

struct DriftScenarioOptions {
  // "none", "rotation", "noise", "brightness-contrast", "occlusion",
  // "label-shift" or "label-swap". Default: "none".
  std::string type = "none";
  // First round whose data is drifted. Default: 10. REQUIRES: >= 1.
  int round = 10;
  // Share of clients drifted. Default: 0.3. REQUIRES: 0 < value <= 1.
  double fraction = 0.3;
  // "sudden" or "gradual". Default: "sudden".
  std::string mode = "sudden";
  // Gradual drift reaches all of a client's data after this many rounds.
  // Default: 5. REQUIRES: >= 1.
  int gradual_rounds = 5;
  double rotation_degrees = 60.0;
  double noise_std = 0.3;   // REQUIRES: >= 0
  double brightness = 0.3;  // REQUIRES: in [-1, 1]
  double contrast = 0.6;    // REQUIRES: > 0
  int occlusion_size = 14;  // REQUIRES: >= 1
  int swap_a = 0;           // REQUIRES: different classes of the dataset
  int swap_b = 6;
  double label_shift_alpha = 0.2;  // REQUIRES: > 0
};

// Names accepted for `type` and `mode`.
std::vector<std::string> DriftTypes();
std::vector<std::string> DriftModes();

// A copy of `data` with the scenario's change applied to every example
// (label-shift changes no example: the copy equals the input).
// INVALID_ARGUMENT names the option that does not fit the dataset (a swap
// class out of range; occlusion larger than the image).
absl::StatusOr<Dataset> MakeDriftedCopy(const Dataset& data,
                                              const DriftScenarioOptions& options, uint64_t seed);

// Exactly round(fraction * num_clients) (at least one) of the clients,
// chosen uniformly: drifted[i] says whether client i drifts.
std::vector<bool> ChooseDriftedClients(size_t num_clients, double fraction, uint64_t seed);

// The share of a drifted client's data that is drifted in `round`: 0 before
// options.round; then 1 (sudden) or min(1, (round - options.round + 1) /
// gradual_rounds) (gradual).
double DriftedShare(const DriftScenarioOptions& options, int round);

// Whether example `index` is among the drifted ones when `share` of the data
// is: a fixed pseudo-random threshold per example, so the drifted set only
// grows with the share.
bool ExampleDrifted(int32_t index, double share, uint64_t seed);

// `count` example indices drawn (with replacement) from `labels` so that class
// shares follow one Dirichlet(alpha) draw.
std::vector<int32_t> LabelShiftIndices(std::span<const int32_t> labels, int64_t num_classes,
                                       size_t count, double alpha, uint64_t seed);

}  // namespace fedge::data

#endif  // FEDGE_DATA_DRIFT_SCENARIO_H_
