// RoundManager: runs federated rounds on the aggregator side.
//
//   OpenRound(cohort)    pick the clients, make their tasks for the latest
//                        model version
//   TaskFor(client)      what a selected client should do
//   Submit(update)       validate and fold one client's update into the
//                        round's accumulator (streaming where the strategy
//                        allows: memory O(d), not O(n*d))
//   CloseRound()         aggregate, apply the server step, prune (when
//                        configured), publish v+1
//
// Every submitted update is checked before it touches any state: open round,
// round and model-version ids, client in the cohort, not submitted before,
// codec accepted, dimension, example count, finite values. A refused update
// changes nothing.
//
// Thread safety: all methods may be called concurrently. Decoding runs
// outside the lock; folding into the accumulator runs under it.
#ifndef FEDGE_AGGREGATOR_ROUND_MANAGER_H_
#define FEDGE_AGGREGATOR_ROUND_MANAGER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/aggregator/model_registry.h"
#include "fedge/aggregator/private_aggregation.h"
#include "fedge/aggregator/strategy.h"
#include "fedge/models/pruning.h"
#include "fedge/models/update_codec.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::aggregator {

struct RoundManagerOptions {
  // Codec clients must use. Default: "fp32". REQUIRES: registered.
  std::string codec = "fp32";
  // Fewest accepted updates with which CloseRound aggregates; with fewer it
  // fails and publishes nothing. Default: 1. REQUIRES: >= 1.
  int min_updates = 1;
  // Largest example count a client may claim (guards the weights).
  // Default: 10^9. REQUIRES: >= 1.
  uint64_t max_examples_per_update = 1'000'000'000;
  // Magnitude pruning of the global model after each round's server step,
  // on the schedule these options give with round ids as t (see
  // fedge/models/pruning.h). Devices keep the pruned entries at zero when
  // the registry stores artifacts sparsely. Default: none.
  std::optional<models::PruningOptions> pruning;
  // Called for each update that passed every check, under the manager's
  // lock, just before it is folded, with its position among the round's
  // accepted updates (1, 2, ...). An error refuses the update: it is not
  // folded, and Submit returns the error. Deployments journal the update
  // here, so the journal's order is the folding order and a replay after a
  // crash folds the same floats in the same order. Default: none.
  std::function<absl::Status(const v1::EncodedUpdate& update, uint64_t sequence)> on_accept;
};

struct RoundOutcome {
  uint64_t round = 0;
  uint64_t new_version = 0;
  int participants = 0;  // updates aggregated
  int cohort_size = 0;
  uint64_t total_examples = 0;
  double train_loss = 0.0;  // example-weighted mean of reported train_loss
  uint64_t bytes_up = 0;    // serialized size of the accepted updates
  // Fraction of the weights pruned in the new version (0 without pruning),
  // and the size of its artifact as devices download it.
  double sparsity = 0.0;
  uint64_t artifact_bytes = 0;
  // What the round spent, when differential privacy is on.
  std::optional<RoundPrivacy> privacy;
};

// What secure aggregation hands the round (see SubmitAggregate).
struct AggregateContribution {
  std::vector<float> sum;
  double total_weight = 0.0;
  std::vector<std::string> contributors;
  uint64_t total_examples = 0;
  uint64_t bytes_up = 0;
  // How many contributors' updates were within the clip norm, when they sent
  // it summed (SecAggConfig.clip_count: adaptive clipping).
  std::optional<int64_t> within_bound;
};

class RoundManager {
 public:
  // `registry` must already hold a version; it must outlive the manager.
  // With `privacy`, rounds are differentially private (see
  // private_aggregation.h): every update weighs the same, is clipped, the
  // sum is noised and divided by the expected cohort size, and a round that
  // would exceed the privacy budget is refused. The strategy must then
  // aggregate by a sum (fedavg, fedprox and the server optimizers);
  // median, trimmed-mean and krum are refused (INVALID_ARGUMENT), and so is
  // a lossy codec with distributed DP (the noise shares must add up
  // exactly; central and local DP work with every codec).
  static absl::StatusOr<std::unique_ptr<RoundManager>> Create(
      std::unique_ptr<Strategy> strategy, ModelRegistry* registry, RoundManagerOptions options,
      std::unique_ptr<PrivateAggregation> privacy = nullptr);

  // Draws a Poisson sample: each candidate independently with probability
  // `rate`, reproducibly for a given `seed` and round (the sampling
  // DP-FedAvg's accounting assumes). May be empty. INVALID_ARGUMENT unless
  // 0 < rate <= 1.
  static absl::StatusOr<std::vector<std::string>> SelectPoissonCohort(
      const std::vector<std::string>& candidates, double rate, uint64_t seed, uint64_t round);

  // Draws `count` distinct clients from `candidates`, uniformly, reproducibly
  // for a given `seed` and round. INVALID_ARGUMENT if count is out of
  // [1, candidates.size()].
  static absl::StatusOr<std::vector<std::string>> SelectCohort(
      const std::vector<std::string>& candidates, int count, uint64_t seed, uint64_t round);

  // Opens round `round` (must be greater than every earlier round) for
  // `cohort` on the latest model version. FAILED_PRECONDITION if a round is
  // open; INVALID_ARGUMENT for an empty cohort, duplicates or a bad config;
  // RESOURCE_EXHAUSTED (saying so) when the round would exceed the privacy
  // budget.
  absl::Status OpenRound(uint64_t round, const std::vector<std::string>& cohort,
                         const v1::TrainConfig& train);

  // Re-opens round `round` after a restart, exactly as it was: on model
  // version `model_version` (which the registry must hold), for `cohort`,
  // and, when `checkpoint` is given, with the accepted updates it recorded
  // already folded (see Checkpoint). Updates accepted after the checkpoint
  // are then re-submitted in their original order. The same errors as
  // OpenRound, plus NOT_FOUND for an unknown version and INVALID_ARGUMENT
  // for a checkpoint of another round or version, or one that does not
  // parse; nothing changes on error.
  absl::Status ResumeRound(uint64_t round, uint64_t model_version,
                           const std::vector<std::string>& cohort, const v1::TrainConfig& train,
                           const v1::RoundCheckpoint* checkpoint);

  // A consistent snapshot of the open round's partial aggregate and its
  // bookkeeping. FAILED_PRECONDITION when no round is open; UNIMPLEMENTED
  // with differential privacy (its per-round clipping statistics are not in
  // the snapshot: such rounds resume by replaying every accepted update).
  absl::StatusOr<v1::RoundCheckpoint> Checkpoint() const;

  // NOT_FOUND if no round is open or the client is not in its cohort;
  // ALREADY_EXISTS if it already submitted.
  absl::StatusOr<v1::Task> TaskFor(const std::string& client_id) const;

  // Validates and folds one update (see the class comment). Errors:
  // FAILED_PRECONDITION (no round open / wrong round or version),
  // PERMISSION_DENIED (client not in the cohort), ALREADY_EXISTS (second
  // update), INVALID_ARGUMENT (codec, dimension, examples, values).
  absl::Status Submit(const v1::EncodedUpdate& update);

  // Folds the securely aggregated contribution of several cohort members at
  // once (fedge/aggregator/secure_aggregation.h): `sum` is the sum over
  // `contributors` of weight times update, `total_weight` the sum of their
  // weights (with DP: one each). They count as submitted. Errors as Submit,
  // plus INVALID_ARGUMENT when the strategy needs individual updates.
  absl::Status SubmitAggregate(const AggregateContribution& contribution);

  // Aggregates the accepted updates, applies the strategy's server step and
  // publishes the next version. FAILED_PRECONDITION (with the counts) when
  // fewer than min_updates arrived; the round is then closed without a new
  // version. With a privacy budget, RESOURCE_EXHAUSTED (closed, nothing
  // released) when the updates that arrived would take ε beyond it
  // (PrivateAggregation::CheckBudgetFor).
  absl::StatusOr<RoundOutcome> CloseRound();

  bool round_open() const;
  // The open (or last) round's id, and how many updates it accepted.
  uint64_t round() const;
  size_t accepted() const;
  // The open round's cohort (empty when none is open).
  std::vector<std::string> cohort() const;
  const ModelRegistry& registry() const { return *registry_; }
  // The strategy's server-optimizer state (Strategy::SerializeState), taken
  // under the lock, e.g. to store it with the version it produced.
  std::string StrategyState() const;
  // Null when differential privacy is off.
  const PrivateAggregation* privacy() const { return privacy_.get(); }

 private:
  RoundManager(std::unique_ptr<Strategy> strategy, ModelRegistry* registry,
               RoundManagerOptions options, std::unique_ptr<models::UpdateCodec> codec,
               std::unique_ptr<PrivateAggregation> privacy);

  // Checks and state changes shared by OpenRound and ResumeRound; mu_ held.
  absl::Status OpenLocked(uint64_t round, std::shared_ptr<const ModelVersion> base,
                          std::set<std::string, std::less<>> members, const v1::TrainConfig& train);

  std::unique_ptr<Strategy> strategy_;
  ModelRegistry* registry_;
  const RoundManagerOptions options_;
  std::unique_ptr<models::UpdateCodec> codec_;
  std::unique_ptr<PrivateAggregation> privacy_;
  std::optional<models::MagnitudePruner> pruner_;

  mutable std::mutex mu_;
  bool open_ = false;
  uint64_t round_ = 0;
  bool any_round_ = false;
  std::shared_ptr<const ModelVersion> base_;
  v1::TrainConfig train_;
  std::set<std::string, std::less<>> cohort_;
  std::set<std::string, std::less<>> submitted_;
  std::unique_ptr<UpdateAccumulator> accumulator_;
  double loss_weighted_sum_ = 0.0;
  double loss_weight_ = 0.0;
  uint64_t total_examples_ = 0;
  uint64_t bytes_up_ = 0;
  // Contributions folded by SubmitAggregate, and the clients in them.
  int aggregate_parts_ = 0;
  int aggregate_clients_ = 0;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_ROUND_MANAGER_H_
