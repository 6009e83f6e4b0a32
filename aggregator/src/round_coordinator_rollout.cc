// RoundCoordinator: validation, the canary stage, rollbacks and promotions,
// alerts, and the devices' drift and metrics reports.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "fedge/aggregator/round_coordinator.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {

absl::Status RoundCoordinator::RestoreRollout(Pending& pending) {
  FEDGE_ASSIGN_OR_RETURN(VersionRecord latest, store_->LatestVersion());
  FEDGE_ASSIGN_OR_RETURN(VersionRecord live, store_->LatestLiveVersion());
  live_version_ = live.version;
  if (auto it = live.metrics.find("validation_accuracy"); it != live.metrics.end()) {
    live_accuracy_ = it->second;
  } else if (options_.validate) {
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(live.version));
    absl::StatusOr<std::pair<double, double>> evaluated = Validate(master);
    if (!evaluated.ok()) {
      return absl::Status(evaluated.status().code(),
                          absl::StrCat("validating the live model version ", live.version, ": ",
                                       evaluated.status().message()));
    }
    live_accuracy_ = evaluated->first;
  }
  if (latest.status == "canary") {
    if (rollout_ != nullptr) {
      // The canary's reports lived in memory: it starts over.
      candidate_round_ = latest.round;
      auto it = latest.metrics.find("validation_accuracy");
      if (it != latest.metrics.end()) candidate_accuracy_ = it->second;
      canary_waiting_ = latest.version;
    } else {
      FEDGE_RETURN_IF_ERROR(
          store_->SetVersionStatus(latest.version, "live", "the rollout gate was turned off"));
      GoLive(latest.version, std::numeric_limits<double>::quiet_NaN());
    }
  } else if (latest.status != "live") {
    // Stopped between refusing a version and publishing the live one again.
    FEDGE_RETURN_IF_ERROR(RollBackLocked(live.version,
                                         absl::StrCat("rollback to ", live.version, ": version ",
                                                      latest.version, " ", latest.status),
                                         pending)
                              .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<double, double>> RoundCoordinator::Validate(
    const v1::ModelArtifact& master) {
  absl::StatusOr<std::map<std::string, double>> evaluated = options_.validate(master);
  if (!evaluated.ok()) return evaluated.status();
  auto accuracy = evaluated->find("accuracy");
  auto loss = evaluated->find("loss");
  if (accuracy == evaluated->end() || loss == evaluated->end() ||
      !(accuracy->second >= 0.0 && accuracy->second <= 1.0) || !std::isfinite(loss->second)) {
    return absl::InternalError(
        "the validation hook must return an accuracy in [0, 1] and a finite loss");
  }
  Log("info", "version_validated",
           {{"version", std::to_string(master.header().version())},
            {"accuracy", std::to_string(accuracy->second)},
            {"loss", std::to_string(loss->second)}});
  return std::make_pair(accuracy->second, loss->second);
}

void RoundCoordinator::GoLive(uint64_t version, double accuracy) {
  std::lock_guard<std::mutex> lock(mu_);
  live_version_ = version;
  live_accuracy_ = accuracy;
}

void RoundCoordinator::AdvanceRollout(Pending& pending) {
  if (rollout_ == nullptr) return;
  RolloutDecision decision;
  uint64_t candidate = 0;
  uint64_t baseline = 0;
  double candidate_accuracy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (canary_waiting_.has_value()) {
      const std::vector<std::string> available = AvailableLocked();
      if (available.empty()) return;
      if (absl::Status s =
              rollout_->StartCanary(*canary_waiting_, live_version_, available, clock_->Now());
          !s.ok()) {
        Log("error", "canary_not_started", {}, s.ToString());
        return;
      }
      canary_waiting_.reset();
      Record("info", "rollout_canary",
             absl::StrCat("version ", rollout_->candidate(), " goes to ",
                          rollout_->canary_devices().size(), " of ", available.size(),
                          " devices for evaluation against version ", live_version_),
             {{"version", std::to_string(rollout_->candidate())},
              {"devices", std::to_string(rollout_->canary_devices().size())}});
      pending.tasks = true;  // the canary devices get evaluation tasks
      return;
    }
    if (!rollout_->canary_active()) return;
    candidate = rollout_->candidate();
    baseline = rollout_->baseline();
    candidate_accuracy = candidate_accuracy_;
    decision = rollout_->Decide(clock_->Now());
  }
  if (decision.kind == RolloutDecision::Kind::kPending) return;
  const std::map<std::string, std::string> fields = {
      {"version", std::to_string(candidate)},
      {"stage", "canary"},
      {"reports", std::to_string(decision.reports)},
      {"accuracy_change", std::to_string(decision.accuracy_change)},
      {"loss_change", std::to_string(decision.loss_change)}};
  if (decision.kind == RolloutDecision::Kind::kPromote) {
    if (absl::Status s = store_->SetVersionStatus(candidate, "live", decision.reason); !s.ok()) {
      return Fatal(s, pending);
    }
    if (metrics_ != nullptr) metrics_->rollouts_promoted += 1;
    Record("info", "rollout_promoted", decision.reason, fields);
    GoLive(candidate, candidate_accuracy);
  } else {
    if (absl::Status s = store_->SetVersionStatus(candidate, "rolled_back", decision.reason);
        !s.ok()) {
      return Fatal(s, pending);
    }
    if (metrics_ != nullptr) metrics_->rollouts_rolled_back += 1;
    Record("warning", "rollout_rolled_back", decision.reason, fields);
    absl::StatusOr<uint64_t> republished = RollBackLocked(
        baseline,
        absl::StrCat("rollback to ", baseline, ": canary of version ", candidate, " regressed"),
        pending);
    if (!republished.ok()) return Fatal(republished.status(), pending);
  }
  pending.tasks = true;
}

absl::StatusOr<v1::Task> RoundCoordinator::EvaluationTaskLocked(const std::string& device) const {
  v1::Task task;
  task.set_kind(v1::Task::KIND_EVALUATE);
  task.set_round(candidate_round_);
  task.set_model_version(rollout_->candidate());
  task.set_baseline_version(rollout_->baseline());
  task.set_client_id(device);
  task.mutable_train()->set_batch_size(
      std::max<uint32_t>(options_.train.batch_size(), options_.min_evaluation_batch));
  return task;
}

void RoundCoordinator::RaiseAlerts(const std::vector<Alert>& alerts) {
  for (const Alert& alert : alerts) {
    if (metrics_ != nullptr) metrics_->CountAlert(alert.rule);
    Record("warning", "alert", alert.message,
           {{"rule", alert.rule},
            {"value", std::to_string(alert.value)},
            {"threshold", std::to_string(alert.threshold)}});
  }
}

absl::StatusOr<uint64_t> RoundCoordinator::RollBackTo(uint64_t version, const std::string& reason) {
  Pending pending;
  absl::StatusOr<uint64_t> published;
  {
    std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
    published = RollBackLocked(version, reason, pending);
    pending.tasks = pending.tasks || published.ok();
  }
  Deliver(pending);
  return published;
}

absl::StatusOr<uint64_t> RoundCoordinator::RollBackLocked(uint64_t target,
                                                          const std::string& reason,
                                                          Pending& pending) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (round_open_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "round ", round_,
          " is open and would publish a version built on the one being withdrawn: pause rounds, "
          "let the round finish, then roll back (and resume)"));
    }
  }
  FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, store_->Versions());
  auto it = std::find_if(versions.begin(), versions.end(),
                         [&](const VersionRecord& v) { return v.version == target; });
  if (it == versions.end()) {
    return absl::NotFoundError(absl::StrCat(
        "unknown model version ", target,
        versions.empty() ? std::string()
                         : absl::StrCat(" (the newest is ", versions.back().version, ")")));
  }
  if (target == versions.back().version) {
    return absl::FailedPreconditionError(
        absl::StrCat("version ", target, " is the newest version already"));
  }
  // A running (or waiting) canary is withdrawn with the rollback.
  std::optional<uint64_t> withdrawn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (rollout_ != nullptr && rollout_->canary_active()) {
      withdrawn = rollout_->candidate();
      rollout_->Cancel();
    } else if (canary_waiting_.has_value()) {
      withdrawn = canary_waiting_;
    }
    canary_waiting_.reset();
  }
  if (withdrawn.has_value()) {
    FEDGE_RETURN_IF_ERROR(store_->SetVersionStatus(
        *withdrawn, "rolled_back", reason.empty() ? "rolled back by an operator" : reason));
  }
  const models::SigningKey& key = *options_.signing_key;
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(target));
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact, store_->ReadArtifact(target));
  VersionRecord record;
  record.version = versions.back().version + 1;
  record.parent = target;
  record.created_at_ms = clock_->WallMs();
  record.note = absl::StrCat("rollback to ", target);
  record.metrics = it->metrics;  // the same parameters, the same figures
  record.metrics["rollback_of"] = static_cast<double>(target);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!record.metrics.contains("validation_accuracy") && target == live_version_ &&
        !std::isnan(live_accuracy_)) {
      record.metrics["validation_accuracy"] = live_accuracy_;  // evaluated at start
    }
  }
  record.status_reason = reason.empty() ? "rolled back by an operator" : reason;
  for (v1::ModelArtifact* a : {&master, &artifact}) {
    if (absl::Status s = models::VerifySignedArtifact(*a, key.public_key()); !s.ok()) {
      return absl::DataLossError(
          absl::StrCat("stored version ", target, " does not verify: ", s.message()));
    }
    a->mutable_header()->set_version(record.version);
    a->mutable_header()->set_parent_version(target);
    a->mutable_header()->set_created_at_unix_ms(record.created_at_ms);
    (*a->mutable_header()->mutable_metrics())["rollback_of"] = static_cast<double>(target);
    FEDGE_RETURN_IF_ERROR(models::SignArtifact(*a, key));
  }
  record.master_bytes = master.ByteSizeLong();
  record.artifact_bytes = artifact.ByteSizeLong();
  ModelVersion adopted;
  adopted.version = record.version;
  adopted.parent_version = target;
  adopted.parameters.resize(static_cast<size_t>(models::LayoutSize(layout_)));
  FEDGE_RETURN_IF_ERROR(models::DecodeArtifact(master, layout_, adopted.parameters));
  adopted.artifact_bytes = record.artifact_bytes;
  adopted.fp32_artifact_bytes = record.master_bytes;
  adopted.artifact = std::make_shared<const v1::ModelArtifact>(artifact);
  FEDGE_RETURN_IF_ERROR(store_->AddVersion(record, master, artifact));
  if (absl::Status s = registry_->Adopt(std::move(adopted)); !s.ok()) {
    Fatal(s, pending);  // the store and the registry disagree: restart from the store
    return s;
  }
  pending.stored.push_back(record.version);
  if (metrics_ != nullptr) metrics_->model_version = record.version;
  auto accuracy = record.metrics.find("validation_accuracy");
  GoLive(record.version, accuracy != record.metrics.end()
                             ? accuracy->second
                             : std::numeric_limits<double>::quiet_NaN());
  Record("warning", "version_rolled_back",
         absl::StrCat("rolled back to version ", target, ", published as version ", record.version,
                      reason.empty() ? "" : ": " + reason),
         {{"target", std::to_string(target)},
          {"version", std::to_string(record.version)},
          {"reason", reason}});
  return record.version;
}

absl::Status RoundCoordinator::Promote(uint64_t version, const std::string& reason) {
  Pending pending;
  absl::Status status = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
    FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, store_->Versions());
    auto it = std::find_if(versions.begin(), versions.end(),
                           [&](const VersionRecord& v) { return v.version == version; });
    if (it == versions.end()) {
      return absl::NotFoundError(absl::StrCat("unknown model version ", version));
    }
    if (it->status == "live") {
      return absl::FailedPreconditionError(absl::StrCat("version ", version, " is live already"));
    }
    const std::string from = it->status;
    FEDGE_RETURN_IF_ERROR(store_->SetVersionStatus(
        version, "live", reason.empty() ? "promoted by an operator" : reason));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (rollout_ != nullptr && rollout_->canary_active() && rollout_->candidate() == version) {
        rollout_->Cancel();
      }
      if (canary_waiting_ == version) canary_waiting_.reset();
    }
    auto accuracy = it->metrics.find("validation_accuracy");
    GoLive(version, accuracy != it->metrics.end() ? accuracy->second
                                                  : std::numeric_limits<double>::quiet_NaN());
    pending.stored.push_back(version);
    pending.tasks = true;
    Record("info", "version_promoted",
           absl::StrCat("version ", version, " promoted from ", from, " to live",
                        reason.empty() ? "" : ": " + reason),
           {{"version", std::to_string(version)}, {"from", from}, {"reason", reason}});
    return absl::OkStatus();
  }();
  Deliver(pending);
  return status;
}

// --- device reports -------------------------------------------------------------------

absl::Status RoundCoordinator::RecordDrift(const std::string& device,
                                           const v1::DriftReport& report) {
  if (report.events_size() == 0) {
    return absl::InvalidArgumentError("a drift report must carry at least one event");
  }
  v1::DriftReport stored = report;
  stored.set_client_id(device);
  if (drift_ != nullptr) {
    uint64_t round;
    {
      std::lock_guard<std::mutex> lock(mu_);
      round = round_open_ ? round_ : next_round_ - 1;
    }
    absl::StatusOr<std::shared_ptr<const ModelVersion>> latest = registry_->Latest();
    FEDGE_RETURN_IF_ERROR(latest.status());
    FEDGE_RETURN_IF_ERROR(drift_->Record(stored, round, (*latest)->version));
  }
  FEDGE_RETURN_IF_ERROR(store_->RecordDrift(stored));
  if (metrics_ != nullptr) metrics_->drift_reports += 1;
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = clock_->Now();
  last_drift_[device] = now;
  const auto horizon = now - options_.alerts.drift_window;
  size_t drifting = 0;
  for (const auto& [id, at] : last_drift_) drifting += at >= horizon ? 1 : 0;
  size_t seen = 0;
  for (const auto& [id, at] : last_seen_) seen += at >= horizon ? 1 : 0;
  RaiseAlerts(alerts_->OnDrift(drifting, std::max(seen, drifting)));
  return absl::OkStatus();
}

void RoundCoordinator::RecordMetrics(const std::string& device, uint64_t round,
                                     uint64_t model_version,
                                     const std::map<std::string, double>& metrics) {
  std::lock_guard<std::mutex> lock(mu_);
  if (rollout_ != nullptr && rollout_->canary_active() && model_version == rollout_->candidate() &&
      metrics.contains("eval_accuracy")) {
    auto figure = [&](const char* key) {
      auto it = metrics.find(key);
      return it == metrics.end() ? std::numeric_limits<double>::quiet_NaN() : it->second;
    };
    CanaryReport canary{.accuracy = figure("eval_accuracy"),
                        .loss = figure("eval_loss"),
                        .baseline_accuracy = figure("baseline_accuracy"),
                        .baseline_loss = figure("baseline_loss"),
                        .examples = static_cast<int64_t>(figure("eval_examples"))};
    absl::Status added = rollout_->AddReport(device, model_version, canary);
    Log(added.ok() ? "info" : "warning", "canary_report",
             {{"client", device},
              {"version", std::to_string(model_version)},
              {"accuracy", std::to_string(canary.accuracy)},
              {"baseline_accuracy", std::to_string(canary.baseline_accuracy)}},
             added.ok() ? std::string() : std::string(added.message()));
    return;
  }
  if (!round_open_ || round != round_) return;
  for (const auto& [key, value] : metrics) {
    if (std::isfinite(value)) round_metrics_[key][device] = value;
  }
}

void RoundCoordinator::RecordRefusal(const std::string& device, uint64_t round,
                                     const std::string& reason) {
  // The reason comes from the device: bounded, so a report cannot flood
  // the event log.
  const std::string shown = reason.substr(0, 500);
  {
    std::lock_guard<std::mutex> lock(mu_);
    refusals_.push_back({device, round, shown});
    if (refusals_.size() > 256) refusals_.pop_front();
  }
  Record("warning", "task_refused",
         absl::StrCat("device ", device, " refused its task of round ", round, ": ", shown),
         {{"client", device}, {"round", std::to_string(round)}, {"reason", shown}});
}

std::vector<RoundCoordinator::TaskRefusal> RoundCoordinator::refusals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {refusals_.begin(), refusals_.end()};
}

}  // namespace fedge::aggregator
