// Magnitude pruning of a model's flat parameter vector, applied gradually
// over federated rounds by the aggregator. LibTorch-free.
//
// Unstructured (the default): the weights with the smallest magnitudes
// across all weight tensors (rank >= 2; biases are never pruned) are set to
// zero, one global threshold for the whole model (magnitude pruning, Han et
// al. 2015, "Learning both weights and connections for efficient neural
// networks"; a global rather than per-layer threshold lets layers with many
// redundant weights, such as cnn's fc1, give up more).
//
// Structured: whole output channels (rows along axis 0 of a weight tensor,
// with their bias entries) are removed, the same fraction from every layer,
// those of smallest L2 norm within their layer (Li et al. 2017, "Pruning
// filters for efficient ConvNets", rank filters per layer likewise; a single
// ranking across layers would compare norms of different fan-ins and, on the
// zoo's cnn, strip the cheap fc1 and leave the costly conv2 whole). The
// classifier (the last weight tensor) keeps all its outputs, and every layer
// keeps at least one channel. A channel-pruned model can be run physically
// smaller (models/inference.h drops the dead channels), which is what makes
// it faster on a CPU; unstructured sparsity saves bytes, not time.
//
// The sparsity rises along the cubic schedule of Zhu & Gupta 2017 ("To prune,
// or not to prune"), eq. 1:
//   s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n Δt))^3,  t = t_0, t_0 + Δt, ...
// with t_0 = begin_round, t_0 + nΔt = end_round, Δt = frequency: it prunes
// fast while many weights are redundant and slowly near the target. Between
// pruning steps the model trains (the devices fine-tune with the mask), so the
// remaining weights recover. Masks only grow: an entry pruned once stays
// pruned, and Prune zeroes it again every round (a server optimizer's
// momentum could otherwise revive it).
//
// Thread safety: a MagnitudePruner is not thread-safe (the aggregator calls
// it under its round lock).
#ifndef FEDGE_MODELS_PRUNING_H_
#define FEDGE_MODELS_PRUNING_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/models/model_spec.h"

namespace fedge::models {

struct PruningOptions {
  // s_f: the final fraction pruned: of all weights (unstructured) or of the
  // output channels of each prunable layer (structured). Default: 0 (off).
  // REQUIRES: 0 <= target_sparsity < 1.
  double target_sparsity = 0.0;
  // s_i: the fraction pruned at begin_round. Default: 0.
  // REQUIRES: 0 <= initial_sparsity <= target_sparsity.
  double initial_sparsity = 0.0;
  // t_0 and t_0 + nΔt: the rounds at which pruning starts and reaches the
  // target. Defaults: 1 and 1 (all at once). REQUIRES: 1 <= begin_round <=
  // end_round.
  int64_t begin_round = 1;
  int64_t end_round = 1;
  // Δt: rounds between pruning steps. Default: 1. REQUIRES: >= 1.
  int64_t frequency = 1;
  // Default: false (unstructured).
  bool structured = false;
};

// INVALID_ARGUMENT naming the offending field.
absl::Status ValidatePruningOptions(const PruningOptions& options);

// s_t for `round` (0 before begin_round, target_sparsity from end_round on,
// held constant between pruning steps). REQUIRES: valid options.
double ScheduledSparsity(const PruningOptions& options, int64_t round);

class MagnitudePruner {
 public:
  // INVALID_ARGUMENT for bad options or a layout without weight tensors (or,
  // structured, without any layer but the classifier).
  static absl::StatusOr<MagnitudePruner> Create(const PruningOptions& options,
                                                std::vector<ParameterLayout> layout);

  // Prunes `parameters` in place to ScheduledSparsity(round): keeps every
  // earlier pruning, adds the smallest remaining weights (or each layer's
  // smallest channels) until the scheduled fraction is pruned, and zeroes
  // every pruned entry. INVALID_ARGUMENT (nothing changed) if the size does
  // not match the layout.
  absl::Status Prune(int64_t round, std::span<float> parameters);

  // One flag per parameter: 1 kept, 0 pruned.
  std::span<const uint8_t> kept() const { return kept_; }
  // Fraction of the weights (entries of rank >= 2 tensors) pruned so far.
  double sparsity() const;
  // Output channels pruned so far (structured; 0 otherwise).
  int64_t pruned_channels() const { return pruned_channels_; }
  const PruningOptions& options() const { return options_; }

 private:
  // A structured unit: one row of a weight tensor (and its bias entry).
  struct Channel {
    int64_t weight_offset = 0;
    int64_t row_size = 0;
    int64_t bias_offset = -1;  // -1: the layer has no bias
    int tensor = 0;            // index into layout_
  };

  MagnitudePruner(const PruningOptions& options, std::vector<ParameterLayout> layout,
                  std::vector<Channel> channels);

  void PruneWeights(double sparsity, std::span<const float> parameters);
  void PruneChannels(double sparsity, std::span<const float> parameters);

  PruningOptions options_;
  std::vector<ParameterLayout> layout_;
  std::vector<Channel> channels_;        // structured only
  std::vector<uint8_t> channel_pruned_;  // structured only
  std::vector<uint8_t> kept_;
  int64_t num_weights_ = 0;
  int64_t pruned_weights_ = 0;
  int64_t pruned_channels_ = 0;
};

}  // namespace fedge::models

#endif  // FEDGE_MODELS_PRUNING_H_
