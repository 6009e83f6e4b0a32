// RoundCoordinator: opening rounds, accepting updates, deadlines, closing
// and publishing.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "fedge/aggregator/round_coordinator.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {

absl::StatusOr<std::vector<std::string>> RoundCoordinator::DrawCohort(
    const std::vector<std::string>& available, uint64_t round, size_t& goal) const {
  goal = options_.goal > 0 ? static_cast<size_t>(options_.goal)
                           : static_cast<size_t>(std::ceil(options_.fraction *
                                                           static_cast<double>(available.size())));
  goal = std::clamp<size_t>(goal, 1, available.size());
  const size_t selected = std::min(
      available.size(),
      static_cast<size_t>(std::ceil(static_cast<double>(goal) * (1.0 + options_.over_selection))));
  absl::StatusOr<std::vector<std::string>> drawn =
      options_.cohort_sampler
          ? options_.cohort_sampler(available, static_cast<int>(selected), round)
          : RoundManager::SelectCohort(available, static_cast<int>(selected), options_.seed, round);
  if (drawn.ok()) goal = std::min(goal, drawn->size());
  return drawn;
}

void RoundCoordinator::MaybeOpenRound(Pending& pending) {
  std::vector<std::string> available;
  std::vector<std::string> extra;
  uint64_t round;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_ || round_open_ || paused_) return;
    // Rounds train from the live version only: none opens during a canary.
    if (canary_waiting_.has_value() || (rollout_ != nullptr && rollout_->canary_active())) return;
    available = AvailableLocked();
    round = next_round_;
    extra = ExtraCohortLocked(available, round);
  }
  std::vector<std::string> cohort;
  size_t goal;
  const bool drift_extra = !extra.empty();
  if (drift_extra) {
    // The drift policy's extra round: the devices that asked to join.
    cohort = extra;
    goal = cohort.size();
  } else {
    if (available.size() < static_cast<size_t>(options_.min_clients)) return;
    absl::StatusOr<std::vector<std::string>> drawn = DrawCohort(available, round, goal);
    if (!drawn.ok()) return Fatal(drawn.status(), pending);
    cohort = *std::move(drawn);
    if (cohort.empty() ||
        (secure_ != nullptr && cohort.size() < secure_->min_cohort())) {
      // A sampler may draw nobody, or too few for secure aggregation to
      // hide them (Poisson sampling): the next Tick draws for the next round
      // id. Which draws are skipped depends on the coin flips only.
      if (!cohort.empty()) {
        Log("warning", "cohort_too_small",
            {{"round", std::to_string(round)}, {"drawn", std::to_string(cohort.size())},
             {"needed", std::to_string(secure_->min_cohort())}},
            "secure aggregation needs a larger cohort; drawing again");
      }
      std::lock_guard<std::mutex> lock(mu_);
      next_round_ = round + 1;
      return;
    }
  }
  if (const PrivateAggregation* privacy = rounds_->privacy(); privacy != nullptr) {
    if (absl::Status budget = privacy->CheckBudget(cohort); !budget.ok()) {
      StopForBudget(round, budget);
      return;
    }
  }
  v1::TrainConfig train = options_.train;
  train.set_seed(options_.train.seed() ^ (0x9E3779B97F4A7C15ULL * round));
  train.set_learning_rate(
      static_cast<float>(options_.train.learning_rate() *
                         std::pow(options_.lr_decay, static_cast<double>(round - 1))));
  RoundRecord record;
  record.round = round;
  record.cohort = cohort;
  record.train = train;
  record.opened_at_ms = clock_->WallMs();
  record.deadline_at_ms = record.opened_at_ms + options_.deadline.count();
  absl::StatusOr<std::shared_ptr<const ModelVersion>> base = registry_->Latest();
  if (!base.ok()) return Fatal(base.status(), pending);
  record.model_version = (*base)->version;
  // Durable first: a round the store does not know of hands out no task.
  if (absl::Status s = store_->BeginRound(record); !s.ok()) return Fatal(s, pending);
  if (absl::Status s = rounds_->OpenRound(round, cohort, train); !s.ok()) {
    return Fatal(s, pending);
  }
  if (secure_ != nullptr) {
    absl::StatusOr<v1::Task> task = rounds_->TaskFor(cohort.front());
    absl::StatusOr<v1::SecAggConfig> started =
        task.ok()
            ? secure_->StartRound(round, cohort, static_cast<uint64_t>(registry_->num_parameters()),
                                  task->privacy(),
                                  rounds_->privacy() != nullptr && rounds_->privacy()->needs_counts())
            : task.status();
    if (!started.ok()) return Fatal(started.status(), pending);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (drift_extra && --extra_rounds_left_ <= 0) {
      extra_rounds_left_ = 0;
      extra_round_devices_.clear();
    }
    drift_extra_ = drift_extra;
    phase_senders_.clear();
    phase_expected_ = cohort.size();
    secagg_bytes_up_ = 0;
    bytes_down_ = 0;
    round_open_ = true;
    round_ = round;
    round_version_ = record.model_version;
    next_round_ = round + 1;
    goal_ = goal;
    opened_at_ms_ = record.opened_at_ms;
    deadline_at_ms_ = record.deadline_at_ms;
    deadline_ = clock_->Now() + options_.deadline;
    cohort_ = {cohort.begin(), cohort.end()};
    submitted_.clear();
    round_metrics_.clear();
  }
  if (metrics_ != nullptr) {
    metrics_->rounds_opened += 1;
    metrics_->clients_selected += cohort.size();
    metrics_->clients_available = available.size();
    metrics_->round_open = 1;
  }
  Record("info", "round_opened",
         absl::StrCat("round ", round, " opened on version ", record.model_version, " with ",
                      cohort.size(), " of ", available.size(), " devices",
                      drift_extra ? " (the drift policy's extra round)" : ""),
         {{"round", std::to_string(round)},
          {"drift_extra", drift_extra ? "true" : "false"},
          {"model_version", std::to_string(record.model_version)},
          {"available", std::to_string(available.size())},
          {"selected", std::to_string(cohort.size())},
          {"goal", std::to_string(goal)},
          {"deadline_ms", std::to_string(options_.deadline.count())}});
  pending.opened = RoundOpened{.round = round,
                               .model_version = record.model_version,
                               .cohort = cohort,
                               .available = available.size(),
                               .goal = goal,
                               .opened_at_ms = record.opened_at_ms,
                               .deadline_at_ms = record.deadline_at_ms,
                               .drift_extra = drift_extra};
  pending.tasks = true;
}

RoundEnded RoundCoordinator::EndedLocked(uint64_t round, const std::string& why) const {
  RoundEnded ended;
  ended.outcome.round = round;
  ended.outcome.cohort_size = static_cast<int>(cohort_.size());
  ended.why = why;
  ended.drift_extra = drift_extra_;
  ended.model_version = round_version_;
  ended.cohort.assign(cohort_.begin(), cohort_.end());
  if (secure_ == nullptr) {
    for (const std::string& id : cohort_) {
      if (!submitted_.contains(id)) ended.missing.push_back(id);
    }
  }
  ended.opened_at_ms = opened_at_ms_;
  ended.closed_at_ms = clock_->WallMs();
  ended.bytes_up = secagg_bytes_up_;
  ended.bytes_down = bytes_down_;
  return ended;
}

void RoundCoordinator::CheckDeadlines(Pending& pending) {
  uint64_t round;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!round_open_ || clock_->Now() < deadline_) return;
    round = round_;
  }
  if (secure_ != nullptr) {
    CloseSecAggPhase("deadline", /*only_if_complete=*/false, pending);
  } else {
    CloseRound(round, "deadline", pending);
  }
}

absl::Status RoundCoordinator::Submit(const v1::EncodedUpdate& update) {
  if (secure_ != nullptr) {
    return absl::FailedPreconditionError(
        "this aggregator runs secure aggregation: updates arrive masked, through its phases");
  }
  FEDGE_RETURN_IF_ERROR(rounds_->Submit(update));
  if (metrics_ != nullptr) {
    metrics_->updates_accepted += 1;
    metrics_->update_bytes_received += update.ByteSizeLong();
  }
  bool checkpoint = false;
  bool close = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!round_open_ || round_ != update.round()) return absl::OkStatus();  // closing now
    submitted_.insert(update.client_id());
    const size_t accepted = submitted_.size();
    close = accepted >= goal_;
    checkpoint = !close && options_.checkpoint_every > 0 &&
                 accepted % static_cast<size_t>(options_.checkpoint_every) == 0 &&
                 rounds_->privacy() == nullptr;
  }
  if (checkpoint) Checkpoint();
  if (close) {
    Pending pending;
    {
      std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
      CloseRound(update.round(), "goal reached", pending);
    }
    Deliver(pending);
  }
  return absl::OkStatus();
}

void RoundCoordinator::Checkpoint() {
  absl::StatusOr<v1::RoundCheckpoint> checkpoint = rounds_->Checkpoint();
  if (!checkpoint.ok()) return;  // the round closed meanwhile
  if (absl::Status s = store_->WriteCheckpoint(*checkpoint); !s.ok()) {
    Pending pending;
    Fatal(s, pending);
    Deliver(pending);
  }
}

void RoundCoordinator::StopForBudget(uint64_t round, const absl::Status& budget) {
  Record("warning", "privacy_budget_exhausted", std::string(budget.message()),
         {{"round", std::to_string(round)}});
  std::lock_guard<std::mutex> lock(mu_);
  finished_ = true;
  stop_reason_ = absl::StrCat("round ", round, " refused: ", budget.message());
}

void RoundCoordinator::CloseRound(uint64_t round, const std::string& why, Pending& pending,
                                  const std::string& failure) {
  int selected;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!round_open_ || round_ != round) return;
    round_open_ = false;
    selected = static_cast<int>(cohort_.size());
  }
  if (metrics_ != nullptr) metrics_->round_open = 0;
  const auto close_start = std::chrono::steady_clock::now();
  absl::StatusOr<RoundOutcome> outcome = rounds_->CloseRound();
  if (!outcome.ok() && absl::IsResourceExhausted(outcome.status())) {
    // The updates that arrived would take ε over the budget: nothing is
    // released, and the federation stops.
    StopForBudget(round, outcome.status());
    return FailRound(round, std::string(outcome.status().message()), "privacy budget", pending);
  }
  if (!outcome.ok()) {
    if (outcome.status().code() != absl::StatusCode::kFailedPrecondition) {
      return Fatal(outcome.status(), pending);
    }
    return FailRound(round, failure.empty() ? std::string(outcome.status().message()) : failure,
                     why, pending);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    RaiseAlerts(alerts_->OnRound(round, false, selected, outcome->participants));
  }
  if (absl::Status s = PublishClosed(*outcome, why, pending); !s.ok()) return Fatal(s, pending);
  if (metrics_ != nullptr) {
    // Process time, not the injected clock: this measures the work itself.
    metrics_->last_close_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - close_start).count();
    metrics_->close_seconds_sum =
        metrics_->close_seconds_sum.load() + metrics_->last_close_seconds.load();
  }
}

void RoundCoordinator::FailRound(uint64_t round, const std::string& reason, const std::string& why,
                                 Pending& pending) {
  int selected;
  RoundEnded ended;
  {
    std::lock_guard<std::mutex> lock(mu_);
    selected = static_cast<int>(cohort_.size());
    RaiseAlerts(alerts_->OnRound(round, true, selected, static_cast<int>(submitted_.size())));
    ended = EndedLocked(round, why);
    cohort_.clear();
    submitted_.clear();
  }
  ended.failed = true;
  ended.reason = reason;
  ended.bytes_up = 0;
  if (metrics_ != nullptr) {
    metrics_->rounds_failed += 1;
    metrics_->clients_dropped += static_cast<uint64_t>(selected);
    metrics_->last_round_seconds = (ended.closed_at_ms - ended.opened_at_ms) / 1000.0;
  }
  Record("warning", "round_failed", absl::StrCat("round ", round, " failed (", why, "): ", reason),
         {{"round", std::to_string(round)}, {"why", why}});
  if (absl::Status s = store_->FailRound(round, reason); !s.ok()) return Fatal(s, pending);
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_ended_round_ = round;
  }
  pending.ended.push_back(std::move(ended));
  if (secure_ != nullptr) pending.phases.emplace_back(round, v1::SECAGG_PHASE_UNSPECIFIED);
  pending.tasks = true;
}

absl::Status RoundCoordinator::PublishClosed(const RoundOutcome& outcome, const std::string& why,
                                             Pending& pending) {
  const uint64_t round = outcome.round;
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<const ModelVersion> version,
                         registry_->Get(outcome.new_version));
  models::ArtifactOptions master_options;
  master_options.version = version->version;
  master_options.parent_version = version->parent_version;
  master_options.created_at_unix_ms = version->artifact->header().created_at_unix_ms();
  for (const auto& [key, value] : version->artifact->header().metrics()) {
    master_options.metrics[key] = value;
  }
  FEDGE_ASSIGN_OR_RETURN(
      v1::ModelArtifact master,
      models::BuildFp32Artifact(spec_, layout_, version->parameters, master_options));
  FEDGE_RETURN_IF_ERROR(models::SignArtifact(master, *options_.signing_key));
  VersionRecord record;
  record.version = version->version;
  record.parent = version->parent_version;
  record.created_at_ms = master_options.created_at_unix_ms;
  record.round = round;
  record.master_bytes = master.ByteSizeLong();
  record.artifact_bytes = version->artifact_bytes;
  record.metrics = master_options.metrics;
  record.metrics["participants"] = outcome.participants;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, values] : round_metrics_) {
      double sum = 0.0;
      for (const auto& [client, value] : values) sum += value;
      if (!values.empty()) record.metrics["clients_" + key] = sum / values.size();
    }
    record.metrics["bytes_up"] = static_cast<double>(outcome.bytes_up + secagg_bytes_up_);
    record.metrics["bytes_down"] = static_cast<double>(bytes_down_);
  }
  // The rollout's first gate (validation) now; the canary in AdvanceRollout.
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  const std::optional<RolloutDecision> decision = GateVersion(record, master, accuracy);
  if (const PrivateAggregation* privacy = rounds_->privacy(); privacy != nullptr) {
    // Before the round's close: a crash in between accounts the round twice
    // after the restart (an overestimate of ε, never an underestimate).
    FEDGE_RETURN_IF_ERROR(store_->PutSetting("privacy_state", privacy->Serialize()));
    record.metrics["epsilon_spent"] = privacy->epsilon();
    if (outcome.privacy.has_value()) record.metrics["clip_norm"] = outcome.privacy->clip_norm;
    if (privacy->options().epsilon_budget > 0.0) {
      record.metrics["epsilon_budget"] = privacy->options().epsilon_budget;
    }
    std::lock_guard<std::mutex> lock(mu_);
    RaiseAlerts(alerts_->OnPrivacy(privacy->epsilon(), privacy->options().epsilon_budget));
  }
  FEDGE_RETURN_IF_ERROR(store_->CloseRound(round, outcome.participants, record, master,
                                           *version->artifact, rounds_->StrategyState()));
  pending.stored.push_back(record.version);
  if (metrics_ != nullptr) {
    metrics_->rounds_closed += 1;
    metrics_->model_version = record.version;
    metrics_->clients_reported += static_cast<uint64_t>(outcome.participants);
    metrics_->clients_dropped +=
        static_cast<uint64_t>(std::max(0, outcome.cohort_size - outcome.participants));
  }
  FEDGE_RETURN_IF_ERROR(ActOnGate(decision, record, accuracy, pending));
  RoundEnded ended;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_ended_round_ = round;
    ended = EndedLocked(round, why);
    ++closed_rounds_;
    if (options_.rounds > 0 && closed_rounds_ >= options_.rounds) finished_ = true;
    cohort_.clear();
    submitted_.clear();
  }
  ended.outcome = outcome;
  ended.bytes_up += outcome.bytes_up;
  if (metrics_ != nullptr) {
    metrics_->last_round_seconds = (ended.closed_at_ms - ended.opened_at_ms) / 1000.0;
  }
  Record("info", "round_closed",
         absl::StrCat("round ", round, " closed (", why, ") with ", outcome.participants, " of ",
                      outcome.cohort_size, " updates: version ", record.version),
         {{"round", std::to_string(round)},
          {"why", why},
          {"participants", std::to_string(outcome.participants)},
          {"cohort", std::to_string(outcome.cohort_size)},
          {"new_version", std::to_string(record.version)},
          {"train_loss", std::to_string(outcome.train_loss)}});
  pending.ended.push_back(std::move(ended));
  if (secure_ != nullptr) pending.phases.emplace_back(round, v1::SECAGG_PHASE_UNSPECIFIED);
  pending.tasks = true;
  return absl::OkStatus();
}

std::optional<RolloutDecision> RoundCoordinator::GateVersion(VersionRecord& record,
                                                             const v1::ModelArtifact& master,
                                                             double& accuracy) {
  std::optional<RolloutDecision> decision;
  std::string validation_error;
  if (options_.validate) {
    absl::StatusOr<std::pair<double, double>> evaluated = Validate(master);
    if (evaluated.ok()) {
      accuracy = evaluated->first;
      record.metrics["validation_accuracy"] = evaluated->first;
      record.metrics["validation_loss"] = evaluated->second;
      std::lock_guard<std::mutex> lock(mu_);
      RaiseAlerts(alerts_->OnVersion(record.version, accuracy, live_accuracy_));
    } else {
      validation_error = std::string(evaluated.status().message());
      Log("error", "validation_failed", {{"version", std::to_string(record.version)}},
               validation_error);
    }
  }
  if (rollout_ != nullptr) {
    decision =
        !validation_error.empty()
            ? RolloutDecision{.kind = RolloutDecision::Kind::kReject,
                              .reason = absl::StrCat("version ", record.version,
                                                     " could not be validated: ", validation_error)}
            : rollout_->Validate(record.version, accuracy, live_accuracy_);
    record.status = decision->kind == RolloutDecision::Kind::kReject    ? "rejected"
                    : decision->kind == RolloutDecision::Kind::kPending ? "canary"
                                                                        : "live";
    record.status_reason = decision->reason;
  }
  return decision;
}

absl::Status RoundCoordinator::ActOnGate(const std::optional<RolloutDecision>& decision,
                                         const VersionRecord& record, double accuracy,
                                         Pending& pending) {
  if (!decision.has_value()) {
    GoLive(record.version, accuracy);
  } else if (decision->kind == RolloutDecision::Kind::kPromote) {
    if (metrics_ != nullptr) metrics_->rollouts_promoted += 1;
    Record("info", "rollout_promoted", decision->reason,
           {{"version", std::to_string(record.version)}, {"stage", "validation"}});
    GoLive(record.version, accuracy);
  } else if (decision->kind == RolloutDecision::Kind::kReject) {
    if (metrics_ != nullptr) metrics_->rollouts_rejected += 1;
    Record("warning", "rollout_rejected", decision->reason,
           {{"version", std::to_string(record.version)}, {"stage", "validation"}});
    const uint64_t live = live_version();
    FEDGE_RETURN_IF_ERROR(
        RollBackLocked(
            live, absl::StrCat("rollback to ", live, ": version ", record.version, " rejected"),
            pending)
            .status());
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    canary_waiting_ = record.version;
    candidate_round_ = record.round;
    candidate_accuracy_ = accuracy;
  }
  return absl::OkStatus();
}

std::optional<DriftPolicyDecision> RoundCoordinator::ApplyDriftPolicy() {
  if (drift_ == nullptr) return std::nullopt;
  uint64_t round;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (round_open_ || last_ended_round_ == 0 || drift_applied_round_ >= last_ended_round_) {
      return std::nullopt;
    }
    round = drift_applied_round_ = last_ended_round_;
  }
  const DriftPolicyDecision drift = drift_->Evaluate(round);
  if (drift.alert) {
    Record("warning", "drift_reaction",
           absl::StrCat(drift.reporting_clients, " devices (", drift.share,
                        " of the population) reported drift by round ", round,
                        drift.extra_round ? ": an extra round follows" : ""),
           {{"round", std::to_string(round)}, {"share", std::to_string(drift.share)}});
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (drift.extra_round) extra_rounds_left_ = std::max(1, options_.drift_extra_rounds);
  if (extra_rounds_left_ > 0) {
    // Requests that arrive while a reaction runs join its remaining rounds.
    for (std::string& id : drift_->TakeJoinRequests()) extra_round_devices_.insert(std::move(id));
  } else {
    (void)drift_->TakeJoinRequests();  // not served: dropped
  }
  return drift;
}

std::vector<std::string> RoundCoordinator::ExtraCohortLocked(
    const std::vector<std::string>& available, uint64_t round) const {
  std::vector<std::string> cohort;
  // Extra rounds alternate with regular ones: each of the next
  // drift_extra_rounds regular rounds is preceded by one.
  if (extra_rounds_left_ <= 0 || drift_extra_) return cohort;
  const size_t want = options_.drift_extra_round_devices > 0
                          ? static_cast<size_t>(options_.drift_extra_round_devices)
                          : available.size();
  // Those that asked first, in a seeded random order, then a draw of the rest.
  std::vector<std::string> asked;
  for (const std::string& id : extra_round_devices_) {
    if (std::binary_search(available.begin(), available.end(), id)) asked.push_back(id);
  }
  if (asked.empty()) return cohort;
  absl::StatusOr<std::vector<std::string>> order = RoundManager::SelectCohort(
      asked, static_cast<int>(asked.size()), options_.seed ^ 0x6A6F696EULL, round);
  if (!order.ok()) return cohort;
  for (std::string& id : *order) {
    if (cohort.size() < want) cohort.push_back(std::move(id));
  }
  if (options_.drift_extra_round_devices > 0 && cohort.size() < want) {
    std::vector<std::string> rest;
    const std::set<std::string> in(cohort.begin(), cohort.end());
    for (const std::string& id : available) {
      if (!in.contains(id)) rest.push_back(id);
    }
    absl::StatusOr<std::vector<std::string>> fill =
        RoundManager::SelectCohort(rest, static_cast<int>(std::min(rest.size(), want - cohort.size())),
                                   options_.seed ^ 0x6578747261ULL, round);
    if (fill.ok()) cohort.insert(cohort.end(), fill->begin(), fill->end());
  }
  std::sort(cohort.begin(), cohort.end());
  return cohort;
}

}  // namespace fedge::aggregator
