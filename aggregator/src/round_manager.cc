#include "fedge/aggregator/round_manager.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "fedge/proto/status_macros.h"
#include "update_accumulators.h"

namespace fedge::aggregator {
namespace {

// Basic config checks the aggregator can make before handing a config to
// clients (the client validates it again, completely).
absl::Status CheckTrainConfig(const v1::TrainConfig& train) {
  if (train.local_epochs() < 1)
    return absl::InvalidArgumentError("TrainConfig.local_epochs must be >= 1");
  if (train.batch_size() < 1)
    return absl::InvalidArgumentError("TrainConfig.batch_size must be >= 1");
  if (!(train.learning_rate() > 0.0f)) {
    return absl::InvalidArgumentError("TrainConfig.learning_rate must be > 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::set<std::string, std::less<>>> CheckCohort(
    const std::vector<std::string>& cohort) {
  if (cohort.empty()) return absl::InvalidArgumentError("cannot open a round with an empty cohort");
  std::set<std::string, std::less<>> members(cohort.begin(), cohort.end());
  if (members.size() != cohort.size()) {
    return absl::InvalidArgumentError("the cohort lists a client more than once");
  }
  return members;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RoundManager>> RoundManager::Create(
    std::unique_ptr<Strategy> strategy, ModelRegistry* registry, RoundManagerOptions options,
    std::unique_ptr<PrivateAggregation> privacy) {
  if (strategy == nullptr || registry == nullptr) {
    return absl::InvalidArgumentError("RoundManager needs a strategy and a registry");
  }
  if (options.min_updates < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("RoundManagerOptions.min_updates must be >= 1, got ", options.min_updates));
  }
  if (options.max_examples_per_update < 1) {
    return absl::InvalidArgumentError("RoundManagerOptions.max_examples_per_update must be >= 1");
  }
  FEDGE_RETURN_IF_ERROR(registry->Latest().status());
  FEDGE_ASSIGN_OR_RETURN(auto codec, models::CreateUpdateCodec(options.codec));
  if (privacy != nullptr && privacy->mode() == privacy::PrivacyMode::kDistributed &&
      codec->name() != "fp32") {
    return absl::InvalidArgumentError(absl::StrCat(
        "codec '", options.codec,
        "' with distributed DP: each client's noise share is private only inside the exact sum "
        "of all shares, which a lossy per-client codec would change; use codec 'fp32'"));
  }
  if (privacy != nullptr && !strategy->NewAccumulator(1)->streaming()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy '", std::string(strategy->name()),
        "' needs every individual update, but differential privacy adds its noise to the sum of "
        "clipped updates; use fedavg, fedprox, fedavgm, fedadam, fedyogi or fedadagrad"));
  }
  std::optional<models::MagnitudePruner> pruner;
  if (options.pruning.has_value()) {
    absl::StatusOr<models::MagnitudePruner> created =
        models::MagnitudePruner::Create(*options.pruning, registry->layout());
    if (!created.ok()) {
      return absl::Status(created.status().code(), absl::StrCat("RoundManagerOptions.pruning: ",
                                                                created.status().message()));
    }
    pruner.emplace(*std::move(created));
  }
  auto manager = std::unique_ptr<RoundManager>(new RoundManager(
      std::move(strategy), registry, std::move(options), std::move(codec), std::move(privacy)));
  manager->pruner_ = std::move(pruner);
  return manager;
}

RoundManager::RoundManager(std::unique_ptr<Strategy> strategy, ModelRegistry* registry,
                           RoundManagerOptions options, std::unique_ptr<models::UpdateCodec> codec,
                           std::unique_ptr<PrivateAggregation> privacy)
    : strategy_(std::move(strategy)),
      registry_(registry),
      options_(std::move(options)),
      codec_(std::move(codec)),
      privacy_(std::move(privacy)) {}

absl::StatusOr<std::vector<std::string>> RoundManager::SelectCohort(
    const std::vector<std::string>& candidates, int count, uint64_t seed, uint64_t round) {
  if (count < 1 || static_cast<size_t>(count) > candidates.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot select ", count, " clients out of ", candidates.size()));
  }
  // Partial Fisher-Yates over an index permutation: O(n) memory for the
  // indices, O(count) swaps.
  std::mt19937_64 rng(seed ^ (0x9E3779B97F4A7C15ULL * (round + 1)));
  std::vector<uint32_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0u);
  std::vector<std::string> cohort;
  cohort.reserve(static_cast<size_t>(count));
  for (size_t i = 0; i < static_cast<size_t>(count); ++i) {
    std::uniform_int_distribution<size_t> pick(i, order.size() - 1);
    std::swap(order[i], order[pick(rng)]);
    cohort.push_back(candidates[order[i]]);
  }
  return cohort;
}

absl::StatusOr<std::vector<std::string>> RoundManager::SelectPoissonCohort(
    const std::vector<std::string>& candidates, double rate, uint64_t seed, uint64_t round) {
  if (!(rate > 0.0 && rate <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Poisson sampling rate must be in (0, 1], got ", rate));
  }
  std::mt19937_64 rng(seed ^ (0xD1B54A32D192ED03ULL * (round + 1)));
  std::bernoulli_distribution join(rate);
  std::vector<std::string> cohort;
  for (const std::string& candidate : candidates) {
    if (join(rng)) cohort.push_back(candidate);
  }
  return cohort;
}

absl::Status RoundManager::OpenRound(uint64_t round, const std::vector<std::string>& cohort,
                                     const v1::TrainConfig& train) {
  FEDGE_ASSIGN_OR_RETURN(auto members, CheckCohort(cohort));
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<const ModelVersion> base, registry_->Latest());
  std::lock_guard<std::mutex> lock(mu_);
  return OpenLocked(round, std::move(base), std::move(members), train);
}

absl::Status RoundManager::ResumeRound(uint64_t round, uint64_t model_version,
                                       const std::vector<std::string>& cohort,
                                       const v1::TrainConfig& train,
                                       const v1::RoundCheckpoint* checkpoint) {
  FEDGE_ASSIGN_OR_RETURN(auto members, CheckCohort(cohort));
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<const ModelVersion> base, registry_->Get(model_version));
  std::unique_ptr<UpdateAccumulator> restored;
  if (checkpoint != nullptr) {
    if (checkpoint->round() != round || checkpoint->model_version() != model_version) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the checkpoint is of round ", checkpoint->round(), " on version ",
          checkpoint->model_version(), ", not round ", round, " on version ", model_version));
    }
    if (privacy_ != nullptr) {
      return absl::InvalidArgumentError(
          "rounds with differential privacy resume by replaying their updates, not from a "
          "checkpoint");
    }
    absl::StatusOr<std::unique_ptr<UpdateAccumulator>> accumulator =
        strategy_->Restore(checkpoint->accumulator());
    if (!accumulator.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", round, " checkpoint: ", accumulator.status().message()));
    }
    if ((*accumulator)->dimension() != base->parameters.size() ||
        (*accumulator)->count() != checkpoint->accepted() ||
        checkpoint->submitted_size() != static_cast<int>(checkpoint->accepted())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, " checkpoint is inconsistent: ", (*accumulator)->count(),
          " folded updates of dimension ", (*accumulator)->dimension(), ", ",
          checkpoint->submitted_size(), " submitters, ", checkpoint->accepted(), " recorded"));
    }
    for (const std::string& client : checkpoint->submitted()) {
      if (!members.contains(client)) {
        return absl::InvalidArgumentError(absl::StrCat("round ", round, " checkpoint: client '",
                                                       client, "' is not in the cohort"));
      }
    }
    restored = *std::move(accumulator);
  }
  std::lock_guard<std::mutex> lock(mu_);
  FEDGE_RETURN_IF_ERROR(OpenLocked(round, std::move(base), std::move(members), train));
  if (checkpoint != nullptr) {
    accumulator_ = std::move(restored);
    submitted_.insert(checkpoint->submitted().begin(), checkpoint->submitted().end());
    loss_weighted_sum_ = checkpoint->loss_weighted_sum();
    loss_weight_ = checkpoint->loss_weight();
    total_examples_ = checkpoint->total_examples();
    bytes_up_ = checkpoint->bytes_up();
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::RoundCheckpoint> RoundManager::Checkpoint() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!open_) return absl::FailedPreconditionError("no round is open");
  if (privacy_ != nullptr) {
    return absl::UnimplementedError(
        "rounds with differential privacy are not checkpointed; they resume by replaying every "
        "accepted update");
  }
  v1::RoundCheckpoint checkpoint;
  checkpoint.set_round(round_);
  checkpoint.set_model_version(base_->version);
  checkpoint.set_accepted(accumulator_->count());
  checkpoint.set_accumulator(accumulator_->Serialize());
  for (const std::string& client : submitted_) checkpoint.add_submitted(client);
  checkpoint.set_loss_weighted_sum(loss_weighted_sum_);
  checkpoint.set_loss_weight(loss_weight_);
  checkpoint.set_total_examples(total_examples_);
  checkpoint.set_bytes_up(bytes_up_);
  return checkpoint;
}

absl::Status RoundManager::OpenLocked(uint64_t round, std::shared_ptr<const ModelVersion> base,
                                      std::set<std::string, std::less<>> members,
                                      const v1::TrainConfig& train) {
  FEDGE_RETURN_IF_ERROR(CheckTrainConfig(train));
  if (open_) {
    return absl::FailedPreconditionError(
        absl::StrCat("round ", round_, " is still open; close it before opening round ", round));
  }
  if (any_round_ && round <= round_) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ids must increase: round ", round, " after round ", round_));
  }
  if (privacy_ != nullptr) {
    const std::vector<std::string> cohort(members.begin(), members.end());
    if (absl::Status s = privacy_->CheckBudget(cohort); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("round ", round, " refused: ", s.message()));
    }
  }
  open_ = true;
  any_round_ = true;
  round_ = round;
  base_ = std::move(base);
  train_ = train;
  cohort_ = std::move(members);
  submitted_.clear();
  accumulator_ = strategy_->NewAccumulator(base_->parameters.size());
  loss_weighted_sum_ = 0.0;
  loss_weight_ = 0.0;
  total_examples_ = 0;
  bytes_up_ = 0;
  aggregate_parts_ = 0;
  aggregate_clients_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<v1::Task> RoundManager::TaskFor(const std::string& client_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!open_) return absl::NotFoundError("no round is open");
  if (!cohort_.contains(client_id)) {
    return absl::NotFoundError(
        absl::StrCat("client '", client_id, "' is not in the cohort of round ", round_));
  }
  if (submitted_.contains(client_id)) {
    return absl::AlreadyExistsError(
        absl::StrCat("client '", client_id, "' already submitted for round ", round_));
  }
  v1::Task task;
  task.set_round(round_);
  task.set_model_version(base_->version);
  task.set_client_id(client_id);
  *task.mutable_train() = train_;
  // Each client shuffles with its own stream: derive the seed from the round
  // seed and the client id.
  task.mutable_train()->set_seed(train_.seed() ^ std::hash<std::string>{}(client_id));
  if (privacy_ != nullptr) *task.mutable_privacy() = privacy_->TaskConfig(cohort_.size());
  return task;
}

absl::Status RoundManager::Submit(const v1::EncodedUpdate& update) {
  size_t dimension = 0;
  double bound = 0.0;  // the round's DP clipping bound
  // Cheap identity checks first, so a stale or foreign update is refused
  // before it is decoded.
  auto check_identity = [&]() -> absl::Status {
    if (!open_) return absl::FailedPreconditionError("no round is open");
    if (update.round() != round_) {
      return absl::FailedPreconditionError(
          absl::StrCat("update is for round ", update.round(), ", the open round is ", round_));
    }
    if (update.model_version() != base_->version) {
      return absl::FailedPreconditionError(absl::StrCat("update was trained from model version ",
                                                        update.model_version(), ", round ", round_,
                                                        " uses version ", base_->version));
    }
    if (!cohort_.contains(update.client_id())) {
      return absl::PermissionDeniedError(
          absl::StrCat("client '", update.client_id(), "' is not in the cohort of round ", round_));
    }
    if (submitted_.contains(update.client_id())) {
      return absl::AlreadyExistsError(absl::StrCat(
          "client '", update.client_id(), "' already submitted an update for round ", round_));
    }
    return absl::OkStatus();
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    FEDGE_RETURN_IF_ERROR(check_identity());
    dimension = base_->parameters.size();
    if (privacy_ != nullptr) bound = privacy_->clip_norm();
  }
  if (update.num_examples() < 1 || update.num_examples() > options_.max_examples_per_update) {
    return absl::InvalidArgumentError(absl::StrCat("update claims ", update.num_examples(),
                                                   " examples; allowed: 1 to ",
                                                   options_.max_examples_per_update));
  }
  if (update.codec() != codec_->name()) {
    return absl::InvalidArgumentError(absl::StrCat("update uses codec '", update.codec(),
                                                   "'; this aggregator accepts '",
                                                   std::string(codec_->name()), "'"));
  }
  thread_local std::vector<float> delta;
  delta.resize(dimension);
  FEDGE_RETURN_IF_ERROR(codec_->Decode(update, delta));
  // With DP every update weighs the same (example counts are private data)
  // and, in central mode, is clipped here. The bound does not change while
  // the round is open, so clipping runs outside the lock.
  bool within_bound = true;
  if (privacy_ != nullptr) {
    FEDGE_ASSIGN_OR_RETURN(within_bound, privacy_->ClipUpdate(delta, bound));
  }
  const double weight = privacy_ != nullptr ? 1.0 : static_cast<double>(update.num_examples());

  std::lock_guard<std::mutex> lock(mu_);
  FEDGE_RETURN_IF_ERROR(check_identity());  // the round may have moved on meanwhile
  if (options_.on_accept) {
    FEDGE_RETURN_IF_ERROR(ValidateUpdate(delta, weight, dimension).status());
    FEDGE_RETURN_IF_ERROR(options_.on_accept(update, accumulator_->count() + 1));
  }
  FEDGE_RETURN_IF_ERROR(accumulator_->Accumulate(delta, weight));
  if (privacy_ != nullptr) privacy_->Record(within_bound);
  submitted_.insert(update.client_id());
  total_examples_ += update.num_examples();
  bytes_up_ += update.ByteSizeLong();
  // A device's loss is its word, not data the round depends on: one that is
  // not a finite, non-negative number (NaN, inf) is left out of the mean.
  if (auto it = update.metrics().find("train_loss");
      it != update.metrics().end() && std::isfinite(it->second) && it->second >= 0.0) {
    loss_weighted_sum_ += it->second * static_cast<double>(update.num_examples());
    loss_weight_ += static_cast<double>(update.num_examples());
  }
  return absl::OkStatus();
}

absl::StatusOr<RoundOutcome> RoundManager::CloseRound() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!open_) return absl::FailedPreconditionError("no round is open");
  open_ = false;
  // A securely aggregated contribution is one fold but several clients.
  const int participants =
      static_cast<int>(accumulator_->count()) - aggregate_parts_ + aggregate_clients_;
  if (participants < options_.min_updates) {
    return absl::FailedPreconditionError(absl::StrCat(
        "round ", round_, " closed with ", participants, " of ", cohort_.size(),
        " updates, fewer than the ", options_.min_updates, " required; no new model version"));
  }
  if (privacy_ != nullptr) {
    // On the updates that did arrive, before anything is released.
    const std::vector<std::string> ids(submitted_.begin(), submitted_.end());
    FEDGE_RETURN_IF_ERROR(privacy_->CheckBudgetFor(cohort_.size(), ids));
  }
  std::vector<float> aggregated(base_->parameters.size());
  FEDGE_RETURN_IF_ERROR(accumulator_->Aggregate(aggregated));
  if (privacy_ != nullptr) FEDGE_RETURN_IF_ERROR(privacy_->Finalize(aggregated, participants));
  std::vector<float> next = base_->parameters;
  FEDGE_RETURN_IF_ERROR(strategy_->Apply(aggregated, next));
  if (pruner_.has_value())
    FEDGE_RETURN_IF_ERROR(pruner_->Prune(static_cast<int64_t>(round_), next));

  RoundOutcome outcome;
  outcome.round = round_;
  outcome.participants = participants;
  outcome.cohort_size = static_cast<int>(cohort_.size());
  outcome.total_examples = total_examples_;
  outcome.train_loss = loss_weight_ > 0.0 ? loss_weighted_sum_ / loss_weight_ : 0.0;
  outcome.bytes_up = bytes_up_;
  if (privacy_ != nullptr) {
    const std::vector<std::string> participants_ids(submitted_.begin(), submitted_.end());
    FEDGE_ASSIGN_OR_RETURN(outcome.privacy, privacy_->EndRound(cohort_.size(), participants_ids));
  }
  const uint64_t parent = base_->version;
  accumulator_.reset();
  // Publish under the lock so that no round can open on the previous version.

  // The clients' mean train loss is not private: with DP on, only the
  // model is published.
  std::map<std::string, double> metadata = {{"round", static_cast<double>(outcome.round)}};
  if (privacy_ == nullptr) metadata.emplace("train_loss", outcome.train_loss);
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<const ModelVersion> published,
                         registry_->Publish(next, parent, metadata));
  outcome.new_version = published->version;
  outcome.artifact_bytes = published->artifact_bytes;
  if (pruner_.has_value()) outcome.sparsity = pruner_->sparsity();
  return outcome;
}

absl::Status RoundManager::SubmitAggregate(const AggregateContribution& contribution) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!open_) return absl::FailedPreconditionError("no round is open");
  if (!accumulator_->streaming()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy '", std::string(strategy_->name()),
        "' needs every individual update, but secure aggregation reveals only their sum; use "
        "fedavg, fedprox, fedavgm, fedadam, fedyogi or fedadagrad"));
  }
  if (contribution.contributors.empty() || !(contribution.total_weight > 0.0)) {
    return absl::InvalidArgumentError(
        "an aggregate contribution needs contributors and weight > 0");
  }
  if (contribution.sum.size() != base_->parameters.size()) {
    return absl::InvalidArgumentError(absl::StrCat("aggregate has dimension ",
                                                   contribution.sum.size(), ", the model has ",
                                                   base_->parameters.size()));
  }
  std::set<std::string, std::less<>> ids;
  for (const std::string& id : contribution.contributors) {
    if (!cohort_.contains(id)) {
      return absl::PermissionDeniedError(
          absl::StrCat("client '", id, "' is not in the cohort of round ", round_));
    }
    if (submitted_.contains(id) || !ids.insert(id).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("client '", id, "' already submitted an update for round ", round_));
    }
  }
  std::vector<float> mean(contribution.sum.size());
  const double inverse = 1.0 / contribution.total_weight;
  for (size_t k = 0; k < mean.size(); ++k) {
    mean[k] = static_cast<float>(contribution.sum[k] * inverse);
  }
  FEDGE_RETURN_IF_ERROR(accumulator_->Accumulate(mean, contribution.total_weight));
  if (privacy_ != nullptr && contribution.within_bound.has_value()) {
    privacy_->RecordCounts(static_cast<int64_t>(ids.size()), *contribution.within_bound);
  }
  submitted_.insert(ids.begin(), ids.end());
  ++aggregate_parts_;
  aggregate_clients_ += static_cast<int>(ids.size());
  total_examples_ += contribution.total_examples;
  bytes_up_ += contribution.bytes_up;
  return absl::OkStatus();
}

bool RoundManager::round_open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

std::string RoundManager::StrategyState() const {
  std::lock_guard<std::mutex> lock(mu_);
  return strategy_->SerializeState();
}

uint64_t RoundManager::round() const {
  std::lock_guard<std::mutex> lock(mu_);
  return round_;
}

size_t RoundManager::accepted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return submitted_.size();
}

std::vector<std::string> RoundManager::cohort() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!open_) return {};
  return {cohort_.begin(), cohort_.end()};
}

}  // namespace fedge::aggregator
