#include "fedge/aggregator/secure_aggregation.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {

namespace secagg = privacy::secagg;

absl::StatusOr<std::unique_ptr<SecureAggregation>> SecureAggregation::Create(
    const SecureAggregationOptions& options, const Strategy& strategy) {
  if (!strategy.NewAccumulator(1)->streaming()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy '", std::string(strategy.name()),
        "' needs every individual update, but secure aggregation reveals only their sum; use "
        "fedavg, fedprox, fedavgm, fedadam, fedyogi or fedadagrad"));
  }
  const double threshold = options.protocol.threshold;
  if (!(threshold > 0.0) || (threshold >= 1.0 && threshold < 2.0) ||
      (threshold >= 1.0 && threshold != std::floor(threshold))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secure_aggregation.threshold must be a fraction in (0, 1) or a whole count >= 2 (with 1, "
        "a single neighbour could rebuild a device's masks), got ",
        threshold));
  }
  if (options.protocol.min_survivors < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secure_aggregation.min_survivors must be >= 2, got ", options.protocol.min_survivors));
  }
  // Validate the other protocol options on a cohort just large enough (k
  // and t are checked again against each round's cohort).
  secagg::SecAggOptions probe = options.protocol;
  probe.weighted = false;
  std::vector<std::string> cohort;
  for (int i = 0; i < std::max(3, probe.min_survivors); ++i) cohort.push_back(absl::StrCat(i));
  if (absl::Status s = secagg::MakeSecAggConfig(probe, cohort, 1, options.graph_seed).status();
      !s.ok() && s.message().find("threshold") == absl::string_view::npos &&
      s.message().find("neighbours") == absl::string_view::npos) {
    return s;
  }
  return std::unique_ptr<SecureAggregation>(new SecureAggregation(options));
}

absl::StatusOr<v1::SecAggConfig> SecureAggregation::StartRound(
    uint64_t round, const std::vector<std::string>& cohort, uint64_t model_dimension,
    const v1::PrivacyConfig& privacy, bool clip_count) {
  secagg::SecAggOptions options = options_.protocol;
  options.weighted = false;
  options.max_weight = 0;
  options.scale = 0.0;
  if (privacy.mode() != v1::PrivacyConfig::MODE_NONE) {
    if (privacy.integer_scale() > 0.0) {
      options.scale = privacy.integer_scale();  // integers noised at scale gamma
    } else if (privacy.clip_norm() > 0.0) {
      options.clip_bound = privacy.clip_norm();
    }
  } else if (options_.max_weight > 0) {
    options.weighted = true;
    options.max_weight = options_.max_weight;
  }
  // The count needs a bound to scale the bits to: the clip norm.
  options.clip_count = clip_count && privacy.clip_norm() > 0.0 && options.scale == 0.0;
  if (clip_count && !options.clip_count) {
    return absl::InvalidArgumentError(
        "secure aggregation: adaptive clipping needs the count of updates within the clip norm, "
        "which is summed in fixed point scaled to the clip norm; this round has no clip norm or "
        "a fixed integer scale");
  }
  const uint64_t dimension =
      model_dimension + (options.weighted ? 1 : 0) + (options.clip_count ? 1 : 0);
  FEDGE_ASSIGN_OR_RETURN(
      v1::SecAggConfig config,
      secagg::MakeSecAggConfig(options, cohort, dimension,
                               options_.graph_seed ^ (0x9E3779B97F4A7C15ULL * (round + 1))));
  FEDGE_ASSIGN_OR_RETURN(auto server, secagg::SecAggServer::Create(config, round));
  std::lock_guard<std::mutex> lock(mu_);
  round_ = round;
  config_ = config;
  server_ = std::move(server);
  return config;
}

absl::StatusOr<v1::SecAggConfig> SecureAggregation::ConfigFor(uint64_t round) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (server_ == nullptr || round != round_) {
    return absl::NotFoundError(absl::StrCat("no secure aggregation for round ", round));
  }
  return config_;
}

absl::Status SecureAggregation::Receive(const v1::SecAggClientMessage& message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (server_ == nullptr) {
    return absl::FailedPreconditionError("no secure-aggregation round is running");
  }
  return server_->Receive(message);
}

absl::StatusOr<v1::SecAggServerMessage> SecureAggregation::Poll(const std::string& client_id,
                                                                uint64_t round,
                                                                v1::SecAggPhase phase) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (server_ == nullptr || round != round_) {
    return absl::NotFoundError(
        absl::StrCat("no secure aggregation for round ", round, " is running"));
  }
  return server_->MessageFor(client_id, phase);
}

absl::Status SecureAggregation::ClosePhase() {
  std::lock_guard<std::mutex> lock(mu_);
  if (server_ == nullptr) {
    return absl::FailedPreconditionError("no secure-aggregation round is running");
  }
  return server_->ClosePhase();
}

std::vector<std::string> SecureAggregation::MaskedInputs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return server_ == nullptr ? std::vector<std::string>() : server_->MaskedInputs();
}

v1::SecAggPhase SecureAggregation::phase() const {
  std::lock_guard<std::mutex> lock(mu_);
  return server_ == nullptr ? v1::SECAGG_PHASE_UNSPECIFIED : server_->phase();
}

absl::StatusOr<SecureRoundOutcome> SecureAggregation::Finish(RoundManager& rounds) {
  std::unique_ptr<secagg::SecAggServer> server;
  v1::SecAggConfig config;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (server_ == nullptr) {
      return absl::FailedPreconditionError("no secure-aggregation round is running");
    }
    server = std::move(server_);
    config = config_;
  }
  SecureRoundOutcome outcome;
  outcome.stats = server->stats();
  outcome.abort_reason = server->abort_reason();
  outcome.aborted = !outcome.abort_reason.empty();
  if (outcome.aborted) {
    return absl::AbortedError(
        absl::StrCat("secure aggregation of round ", round_, " aborted: ", outcome.abort_reason));
  }
  FEDGE_ASSIGN_OR_RETURN(std::vector<uint32_t> sum, server->TakeSum());
  const std::vector<std::string>& contributors = server->contributors();
  FEDGE_ASSIGN_OR_RETURN(secagg::FixedPointCodec codec, secagg::CodecFor(config));
  std::vector<float> decoded(sum.size());
  FEDGE_RETURN_IF_ERROR(codec.DecodeSum(sum, static_cast<int>(contributors.size()), decoded));
  AggregateContribution contribution;
  contribution.contributors = contributors;
  if (config.clip_count()) {
    // Each contributor sent clip_bound or 0; the fixed-point sum is exact up
    // to the rounding of the encoding, far below one bit.
    const double count = std::round(decoded.back() / config.clip_bound());
    decoded.pop_back();
    contribution.within_bound = static_cast<int64_t>(
        std::clamp(count, 0.0, static_cast<double>(contributors.size())));
  }
  if (config.weighted()) {
    contribution.total_weight = decoded.back();
    decoded.pop_back();
  } else {
    contribution.total_weight = static_cast<double>(contributors.size());
  }
  if (!(contribution.total_weight > 0.0)) {
    return absl::DataLossError(absl::StrCat("the secure sum of round ", round_,
                                            " carries a total weight of ",
                                            contribution.total_weight));
  }
  contribution.total_examples =
      config.weighted() ? static_cast<uint64_t>(contribution.total_weight + 0.5) : 0;
  contribution.sum = std::move(decoded);
  FEDGE_RETURN_IF_ERROR(rounds.SubmitAggregate(contribution));
  return outcome;
}

}  // namespace fedge::aggregator
