// SecureAggregation: the aggregator's side of secure aggregation for one
// round at a time (protocol in fedge/privacy/secagg/protocol.h). It runs the
// server state machine, answers the clients' polls, and when the last phase
// closes decodes the unmasked SUM and hands it to the RoundManager
// (RoundManager::SubmitAggregate). The aggregator never holds an individual
// unmasked update.
//
//   StartRound(round, cohort, dim, privacy)  -> the SecAggConfig for the tasks
//   Receive(message) / Poll(client, round, phase)   (from the transport)
//   ClosePhase() x 4                           (the round driver: lockstep in
//                                               simulations, a deadline in
//                                               deployments)
//   Finish(rounds)                             decode + RoundManager::SubmitAggregate
//
// Encoding (set in the config, applied by DeviceClient):
//  - integer DP mechanism (distributed discrete Gaussian): the scale is the
//    mechanism's gamma, so the encoded integers are exactly the noised ones;
//    every update weighs the same.
//  - other DP modes: bound B = the clip norm (the client L2-clips, so every
//    coordinate is within B); every update weighs the same.
//  - no DP: updates are weighted by their example count, capped at
//    `max_weight`: a client sends w * update and w (one extra coordinate),
//    so the sum gives the weighted mean exactly as plain FedAvg would
//    (weights above the cap count as the cap). max_weight = 0 gives every
//    update the same weight instead. B is `clip_bound`.
//
// With `clip_count` (adaptive clipping in central mode) every device also
// sends one more coordinate, the clip norm when its update was within it and
// 0 otherwise, so the aggregator learns how many were within only as a sum
// (AggregateContribution::within_bound).
//
// Strategies that need individual updates (median, trimmed-mean, krum) are
// refused by Create.
//
// Thread safety: all methods may be called concurrently (one lock).
#ifndef FEDGE_AGGREGATOR_SECURE_AGGREGATION_H_
#define FEDGE_AGGREGATOR_SECURE_AGGREGATION_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/aggregator/round_manager.h"
#include "fedge/aggregator/strategy.h"
#include "fedge/privacy/secagg/protocol.h"
#include "fedge/v1/federation.pb.h"
#include "fedge/v1/secagg.pb.h"

namespace fedge::aggregator {

struct SecureAggregationOptions {
  // protocol, threshold, neighbours, clip_bound, headroom_bits; weighted,
  // scale and max_weight are set per round (see the header comment).
  privacy::secagg::SecAggOptions protocol;
  // Cap on a client's weight (example count) without DP; 0: equal weights.
  uint64_t max_weight = 0;
  // Seed of the SecAgg+ graphs (mixed with the round id).
  uint64_t graph_seed = 0;
};

// What one round's secure aggregation did, for reports.
struct SecureRoundOutcome {
  privacy::secagg::SecAggServerStats stats;
  bool aborted = false;
  std::string abort_reason;
};

class SecureAggregation {
 public:
  // INVALID_ARGUMENT when the strategy needs individual updates, or the
  // options are bad (naming the field).
  static absl::StatusOr<std::unique_ptr<SecureAggregation>> Create(
      const SecureAggregationOptions& options, const Strategy& strategy);

  // Starts round `round` for `cohort` over a model of `model_dimension`
  // parameters, encoding as `privacy` (the tasks' privacy section) requires.
  // Replaces any unfinished round.
  absl::StatusOr<v1::SecAggConfig> StartRound(uint64_t round,
                                              const std::vector<std::string>& cohort,
                                              uint64_t model_dimension,
                                              const v1::PrivacyConfig& privacy,
                                              bool clip_count = false);

  // The current round's config; NOT_FOUND when no round runs.
  absl::StatusOr<v1::SecAggConfig> ConfigFor(uint64_t round) const;

  // A client's message; the status is the server's verdict (see
  // SecAggServer::Receive). FAILED_PRECONDITION when no round runs.
  absl::Status Receive(const v1::SecAggClientMessage& message);

  // The server's answer after `phase` closed. UNAVAILABLE until then;
  // NOT_FOUND when the client dropped or the round is another one.
  absl::StatusOr<v1::SecAggServerMessage> Poll(const std::string& client_id, uint64_t round,
                                               v1::SecAggPhase phase) const;

  // Closes the collecting phase (ABORTED, with the reason, when the round
  // cannot finish).
  absl::Status ClosePhase();
  v1::SecAggPhase phase() const;
  // The smallest cohort a round can run with: min_survivors, and at least 3
  // (a threshold of 2 needs two neighbours).
  size_t min_cohort() const {
    return static_cast<size_t>(std::max(3, options_.protocol.min_survivors));
  }
  // The devices whose masked inputs the sum holds, once the masked-input
  // phase closed (empty before): the updates, and noise shares, unmasking
  // will release.
  std::vector<std::string> MaskedInputs() const;

  // After the four phases: decodes the sum and submits it with its weight
  // and contributors to `rounds` (RoundManager::SubmitAggregate). ABORTED
  // when the round aborted: nothing is submitted.
  absl::StatusOr<SecureRoundOutcome> Finish(RoundManager& rounds);

 private:
  explicit SecureAggregation(SecureAggregationOptions options) : options_(std::move(options)) {}

  const SecureAggregationOptions options_;
  mutable std::mutex mu_;
  uint64_t round_ = 0;
  v1::SecAggConfig config_;
  std::unique_ptr<privacy::secagg::SecAggServer> server_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SECURE_AGGREGATION_H_
