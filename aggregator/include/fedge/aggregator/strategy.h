// Aggregation strategies: how a round's client updates become the next
// global model.
//
// A strategy has two halves, kept apart so each can be tested on its own:
//
//  * an UpdateAccumulator collects one round's client updates (deltas
//    w_local - w_global, with a weight = the client's example count). Rules
//    that only need a weighted sum (mean) fold each update into one O(d)
//    buffer as it arrives ("streaming"); robust rules (median, trimmed mean,
//    krum) must see every update and keep them, O(n*d).
//  * the server step applies the aggregated delta to the global parameters:
//    plain averaging (FedAvg), server momentum (FedAvgM), or the adaptive
//    server optimizers of Reddi et al. 2021, "Adaptive Federated
//    Optimization" (FedAdagrad, FedAdam, FedYogi).
//
// Everything works on plain spans of floats: no LibTorch, no I/O.
//
// Strategies are created by name through a registry:
//
//   FEDGE_ASSIGN_OR_RETURN(auto strategy, CreateStrategy("fedadam", options));
//
// An unknown name is NOT_FOUND and the message lists the known names.
#ifndef FEDGE_AGGREGATOR_STRATEGY_H_
#define FEDGE_AGGREGATOR_STRATEGY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::aggregator {

// Options for every built-in strategy; each strategy reads the fields it
// needs and ignores the rest. CreateStrategy validates the fields the chosen
// strategy reads and names the offending field in its error.
struct StrategyOptions {
  // Server learning rate eta applied to the aggregated delta.
  // Default: 1.0 (FedAvg: the new model is the weighted mean of client models).
  // REQUIRES: > 0.
  double server_learning_rate = 1.0;
  // FedAvgM server momentum beta. Default: 0.9. REQUIRES: 0 <= value < 1.
  double server_momentum = 0.9;
  // Adaptive optimizers (Reddi et al. 2021): first/second moment decay and the
  // adaptivity tau. Defaults follow the paper's recommendations.
  // REQUIRES: 0 <= beta1 < 1, 0 <= beta2 < 1, tau > 0.
  double beta1 = 0.9;
  double beta2 = 0.99;
  double tau = 1e-3;
  // trimmed-mean: fraction of updates dropped at EACH end per coordinate.
  // Default: 0.1. REQUIRES: 0 <= value < 0.5.
  double trim_fraction = 0.1;
  // krum: number of Byzantine clients f tolerated (Blanchard et al. 2017).
  // Default: 1. REQUIRES: >= 0 and n > 2f + 2 at aggregation time.
  int krum_byzantine = 1;
  // krum: how many of the best-scored updates are averaged (Multi-Krum).
  // Default: 1 (plain Krum). REQUIRES: >= 1.
  int krum_select = 1;
};

// Collects one round's client updates. Not thread-safe: callers serialize
// Accumulate / MergeWith (the round manager holds a lock).
class UpdateAccumulator {
 public:
  virtual ~UpdateAccumulator() = default;

  // Folds one client's update. `delta` must have dimension() entries, all
  // finite; `weight` (the client's example count) must be > 0.
  // INVALID_ARGUMENT otherwise, and the accumulator is left unchanged.
  virtual absl::Status Accumulate(std::span<const float> delta, double weight) = 0;

  // Merges another accumulator of the same kind and dimension into this one
  // (hierarchical aggregation, parallel folding). `other` is left unspecified.
  virtual absl::Status MergeWith(UpdateAccumulator& other) = 0;

  // Writes the aggregated delta into `out` (dimension() entries).
  // FAILED_PRECONDITION if nothing was accumulated or the rule's requirements
  // on the number of updates are not met (e.g. krum with n <= 2f + 2).
  virtual absl::Status Aggregate(std::span<float> out) const = 0;

  // Serialized state, so a round can survive a restart. The bytes are
  // opaque but stable for a given fedge version; see Strategy::Restore.
  virtual std::string Serialize() const = 0;

  virtual std::size_t dimension() const = 0;
  virtual std::size_t count() const = 0;        // updates folded so far
  virtual double total_weight() const = 0;      // sum of their weights
  // True when memory is O(d) regardless of the number of updates.
  virtual bool streaming() const = 0;
};

class Strategy {
 public:
  virtual ~Strategy() = default;

  virtual std::string_view name() const = 0;

  // A fresh accumulator for a round over `dimension` parameters.
  virtual std::unique_ptr<UpdateAccumulator> NewAccumulator(std::size_t dimension) const = 0;

  // Rebuilds an accumulator from UpdateAccumulator::Serialize() output.
  // INVALID_ARGUMENT if the bytes are not a valid state of this strategy.
  virtual absl::StatusOr<std::unique_ptr<UpdateAccumulator>> Restore(
      std::string_view serialized) const = 0;

  // Applies the round's aggregated delta to `global` in place (the server
  // optimizer step) and advances the optimizer state. Sizes must match and
  // stay the same from round to round.
  virtual absl::Status Apply(std::span<const float> aggregated_delta,
                             std::span<float> global) = 0;

  // Serialized server-optimizer state (momentum, moments), and its inverse.
  virtual std::string SerializeState() const = 0;
  virtual absl::Status RestoreState(std::string_view serialized) = 0;
};

using StrategyFactory =
    std::function<absl::StatusOr<std::unique_ptr<Strategy>>(const StrategyOptions&)>;

// Creates a registered strategy. NOT_FOUND lists the known names;
// INVALID_ARGUMENT names the offending options field.
absl::StatusOr<std::unique_ptr<Strategy>> CreateStrategy(std::string_view name,
                                                         const StrategyOptions& options);

// Registers a strategy under `name`; returns true so it can initialize a
// static (one registration line per implementation file). Registering the
// same name twice aborts (programmer error).
bool RegisterStrategy(std::string_view name, StrategyFactory factory);

// Sorted names of all registered strategies.
std::vector<std::string> RegisteredStrategies();

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_STRATEGY_H_
