// RoundCoordinator: clocks, start-up and restore, notifications, the
// device-facing queries. Rounds, secure aggregation and the rollout live in
// round_coordinator_{rounds,secagg,rollout}.cc.
#include "fedge/aggregator/round_coordinator.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {

// --- clocks ------------------------------------------------------------------

std::chrono::steady_clock::time_point SystemClock::Now() const {
  return std::chrono::steady_clock::now();
}

int64_t SystemClock::WallMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ManualClock::ManualClock(int64_t wall_ms) : wall_start_ms_(wall_ms) {}

std::chrono::steady_clock::time_point ManualClock::Now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::chrono::steady_clock::time_point(elapsed_);
}

int64_t ManualClock::WallMs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wall_start_ms_ + elapsed_.count();
}

void ManualClock::Advance(std::chrono::milliseconds by) {
  std::lock_guard<std::mutex> lock(mu_);
  elapsed_ += by;
}

// --- cohort samplers -----------------------------------------------------------

CohortSampler PoissonCohortSampler(double rate) {
  return [rate](const std::vector<std::string>& available, int,
                uint64_t) -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> cohort;
    std::vector<uint64_t> draws(available.size());
    if (!draws.empty() &&
        RAND_bytes(reinterpret_cast<unsigned char*>(draws.data()),
                   static_cast<int>(draws.size() * sizeof(uint64_t))) != 1) {
      return absl::InternalError("OpenSSL's RAND_bytes failed while drawing a cohort");
    }
    for (size_t i = 0; i < available.size(); ++i) {
      // The top 53 bits as a uniform double in [0, 1).
      if (static_cast<double>(draws[i] >> 11) * 0x1.0p-53 < rate) cohort.push_back(available[i]);
    }
    return cohort;
  };
}

CohortSampler UniformCohortSampler() {
  return [](const std::vector<std::string>& available, int count,
            uint64_t) -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> pool = available;
    const size_t take = std::min(pool.size(), static_cast<size_t>(std::max(count, 0)));
    // A partial Fisher-Yates shuffle; each index by rejection sampling, so
    // every position is exactly equally likely.
    for (size_t i = 0; i < take; ++i) {
      const uint64_t span = pool.size() - i;
      const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
      uint64_t draw = 0;
      do {
        if (RAND_bytes(reinterpret_cast<unsigned char*>(&draw), sizeof(draw)) != 1) {
          return absl::InternalError("OpenSSL's RAND_bytes failed while drawing a cohort");
        }
      } while (draw >= limit);
      std::swap(pool[i], pool[i + draw % span]);
    }
    pool.resize(take);
    std::sort(pool.begin(), pool.end());
    return pool;
  };
}

CohortSampler SeededPoissonCohortSampler(double rate, uint64_t seed) {
  return [rate, seed](const std::vector<std::string>& available, int, uint64_t round) {
    return RoundManager::SelectPoissonCohort(available, rate, seed, round);
  };
}

// --- start-up ----------------------------------------------------------------

namespace {

absl::Status ValidateOptions(const RoundCoordinatorOptions& o) {
  if (o.goal < 0 || (o.goal == 0 && !(o.fraction > 0.0 && o.fraction <= 1.0))) {
    return absl::InvalidArgumentError(
        "round policy: set goal >= 1 updates per round, or a fraction in (0, 1]");
  }
  if (o.min_clients < 1)
    return absl::InvalidArgumentError("round policy: min_clients must be >= 1");
  if (o.min_updates < 1)
    return absl::InvalidArgumentError("round policy: min_updates must be >= 1");
  if (!(o.over_selection >= 0.0)) {
    return absl::InvalidArgumentError("round policy: over_selection must be >= 0");
  }
  if (!(o.lr_decay > 0.0 && o.lr_decay <= 1.0)) {
    return absl::InvalidArgumentError("round policy: lr_decay must be in (0, 1]");
  }
  if (o.deadline.count() <= 0) {
    return absl::InvalidArgumentError("round policy: the deadline must be > 0");
  }
  if (o.secagg_phase_timeout.count() <= 0) {
    return absl::InvalidArgumentError("secagg_phase_timeout must be > 0");
  }
  if (o.availability_window.count() <= 0) {
    return absl::InvalidArgumentError("availability_window must be > 0");
  }
  if (o.checkpoint_every < 0) return absl::InvalidArgumentError("checkpoint_every must be >= 0");
  FEDGE_RETURN_IF_ERROR(ValidateRolloutPolicy(o.rollout));
  FEDGE_RETURN_IF_ERROR(ValidateAlertRules(o.alerts));
  if (o.rollout.enabled && !o.validate) {
    return absl::InvalidArgumentError(
        "rollout.enabled needs a validation function to evaluate new versions with");
  }
  if (o.privacy.has_value() && o.privacy->mode == privacy::PrivacyMode::kDistributed &&
      !o.secure_aggregation.has_value()) {
    return absl::InvalidArgumentError(
        "privacy mode 'distributed' without secure aggregation: each device adds only a share of "
        "the noise, which protects it only inside a sum the aggregator cannot see apart; in the "
        "clear every update would arrive almost unnoised and the epsilon reported (the sum's) "
        "would not hold. Turn secure aggregation on, or use mode 'local' or 'central'");
  }
  if (o.drift.has_value() && o.drift_population < 1) {
    return absl::InvalidArgumentError("drift_population must be >= 1");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RoundCoordinator::CheckOptions(const RoundCoordinatorOptions& options) {
  return ValidateOptions(options);
}

RoundCoordinator::RoundCoordinator(RoundCoordinatorOptions options, StateStore* store,
                                   const Clock* clock, CoordinatorListener* listener,
                                   AggregatorMetrics* metrics, EventLog* events)
    : options_(std::move(options)),
      store_(store),
      clock_(clock),
      listener_(listener),
      metrics_(metrics),
      events_(events) {}

RoundCoordinator::~RoundCoordinator() = default;

absl::StatusOr<std::unique_ptr<RoundCoordinator>> RoundCoordinator::Start(
    RoundCoordinatorOptions options, StateStore* store, const Clock* clock,
    CoordinatorListener* listener, AggregatorMetrics* metrics, EventLog* events) {
  if (store == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("the coordinator needs a state store and a clock");
  }
  FEDGE_RETURN_IF_ERROR(CheckOptions(options));
  if (options.signing_key == nullptr) {
    return absl::InvalidArgumentError("the coordinator needs a model-signing key (signing_key)");
  }
  std::unique_ptr<RoundCoordinator> coordinator(
      new RoundCoordinator(std::move(options), store, clock, listener, metrics, events));
  FEDGE_RETURN_IF_ERROR(coordinator->Init());
  return coordinator;
}

absl::Status RoundCoordinator::Init() {
  if (options_.rollout.enabled) rollout_ = std::make_unique<RolloutGate>(options_.rollout);
  alerts_ = std::make_unique<AlertMonitor>(options_.alerts);
  if (options_.drift.has_value()) {
    FEDGE_ASSIGN_OR_RETURN(drift_,
                           DriftTracker::Create(*options_.drift, options_.drift_population));
  }
  // Everything that can refuse the options runs before the store changes.
  FEDGE_ASSIGN_OR_RETURN(std::unique_ptr<Strategy> strategy,
                         CreateStrategy(options_.strategy, options_.strategy_options));
  if (options_.secure_aggregation.has_value()) {
    FEDGE_ASSIGN_OR_RETURN(secure_,
                           SecureAggregation::Create(*options_.secure_aggregation, *strategy));
  }
  FEDGE_RETURN_IF_ERROR(RestoreOrInitModel());
  Pending pending;  // nobody listens for start-up changes yet
  FEDGE_RETURN_IF_ERROR(RestoreRollout(pending));
  FEDGE_RETURN_IF_ERROR(CreateRounds(std::move(strategy)));
  FEDGE_ASSIGN_OR_RETURN(std::vector<RoundRecord> history, store_->Rounds());
  for (const RoundRecord& record : history) {
    if (record.state == RoundState::kClosed) ++closed_rounds_;
  }
  FEDGE_ASSIGN_OR_RETURN(uint64_t last_round, store_->LastRoundId());
  next_round_ = last_round + 1;
  FEDGE_ASSIGN_OR_RETURN(std::string paused, store_->GetSetting("rounds_paused"));
  paused_ = paused == "1";
  FEDGE_RETURN_IF_ERROR(RestoreOpenRound());
  if (options_.rounds > 0 && closed_rounds_ >= options_.rounds) finished_ = true;
  if (metrics_ != nullptr) {
    if (auto latest = registry_->Latest(); latest.ok())
      metrics_->model_version = (*latest)->version;
  }
  return absl::OkStatus();
}

absl::Status RoundCoordinator::RestoreOrInitModel() {
  const models::SigningKey& key = *options_.signing_key;
  ModelRegistryOptions registry_options;
  registry_options.keep_latest = 4;
  registry_options.encoding.precision = options_.precision;
  registry_options.encoding.sparse = options_.sparse_artifacts;
  registry_options.annotate = [this, &key](std::span<const float> parameters,
                                           v1::ModelArtifact& artifact) {
    if (options_.annotate) FEDGE_RETURN_IF_ERROR(options_.annotate(parameters, artifact));
    return models::SignArtifact(artifact, key);
  };
  absl::StatusOr<VersionRecord> latest = store_->LatestVersion();
  if (latest.ok()) {
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(latest->version));
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact, store_->ReadArtifact(latest->version));
    for (const v1::ModelArtifact* stored : {&master, &artifact}) {
      if (absl::Status s = models::VerifySignedArtifact(*stored, key.public_key()); !s.ok()) {
        return absl::DataLossError(
            absl::StrCat("stored model version ", latest->version,
                         " does not verify with the signing key: ", s.message()));
      }
    }
    FEDGE_ASSIGN_OR_RETURN(spec_, models::FromProto(master.header().model()));
    FEDGE_ASSIGN_OR_RETURN(layout_, models::LayoutOfArtifact(master));
    ModelVersion version;
    version.version = latest->version;
    version.parent_version = latest->parent;
    version.parameters.resize(static_cast<size_t>(models::LayoutSize(layout_)));
    FEDGE_RETURN_IF_ERROR(models::DecodeArtifact(master, layout_, version.parameters));
    version.artifact_bytes = artifact.ByteSizeLong();
    version.fp32_artifact_bytes = master.ByteSizeLong();
    version.artifact = std::make_shared<const v1::ModelArtifact>(std::move(artifact));
    registry_ = std::make_unique<ModelRegistry>(spec_, layout_, registry_options);
    return registry_->Adopt(std::move(version));
  }
  if (latest.status().code() != absl::StatusCode::kNotFound) return latest.status();
  if (!options_.initial_model.has_value()) {
    return absl::FailedPreconditionError(
        "the state store holds no model version and no initial model was given");
  }
  const v1::ModelArtifact& initial = *options_.initial_model;
  FEDGE_RETURN_IF_ERROR(models::VerifyArtifact(initial));
  FEDGE_ASSIGN_OR_RETURN(spec_, models::FromProto(initial.header().model()));
  FEDGE_ASSIGN_OR_RETURN(layout_, models::LayoutOfArtifact(initial));
  std::vector<float> parameters(static_cast<size_t>(models::LayoutSize(layout_)));
  FEDGE_RETURN_IF_ERROR(models::DecodeArtifact(initial, layout_, parameters));
  registry_ = std::make_unique<ModelRegistry>(spec_, layout_, registry_options);
  FEDGE_ASSIGN_OR_RETURN(auto published, registry_->Publish(parameters, 0, {}));
  models::ArtifactOptions master_options;
  master_options.version = published->version;
  master_options.created_at_unix_ms = published->artifact->header().created_at_unix_ms();
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master,
                         models::BuildFp32Artifact(spec_, layout_, parameters, master_options));
  FEDGE_RETURN_IF_ERROR(models::SignArtifact(master, key));
  VersionRecord record;
  record.version = published->version;
  record.created_at_ms = master_options.created_at_unix_ms;
  record.note = "initial model";
  record.master_bytes = master.ByteSizeLong();
  record.artifact_bytes = published->artifact_bytes;
  if (options_.validate) {
    // The first version is validated like every later one, and its figures
    // are stored with it (the rollout gate compares the next against them).
    absl::StatusOr<std::pair<double, double>> evaluated = Validate(master);
    if (evaluated.ok()) {
      record.metrics["validation_accuracy"] = evaluated->first;
      record.metrics["validation_loss"] = evaluated->second;
    } else {
      Log("error", "validation_failed", {{"version", std::to_string(record.version)}},
          std::string(evaluated.status().message()));
    }
  }
  return store_->AddVersion(record, master, *published->artifact);
}

absl::Status RoundCoordinator::CreateRounds(std::unique_ptr<Strategy> strategy) {
  FEDGE_ASSIGN_OR_RETURN(std::string strategy_state, store_->GetSetting("strategy_state"));
  if (!strategy_state.empty()) {
    if (absl::Status s = strategy->RestoreState(strategy_state); !s.ok()) {
      return absl::DataLossError(
          absl::StrCat("the stored state of strategy '", options_.strategy,
                       "' does not restore (was the strategy changed?): ", s.message()));
    }
  }
  std::unique_ptr<PrivateAggregation> privacy;
  if (options_.privacy.has_value()) {
    FEDGE_ASSIGN_OR_RETURN(
        privacy, PrivateAggregation::Create(*options_.privacy,
                                            static_cast<size_t>(registry_->num_parameters())));
    FEDGE_ASSIGN_OR_RETURN(std::string privacy_state, store_->GetSetting("privacy_state"));
    if (!privacy_state.empty()) {
      if (absl::Status s = privacy->Restore(privacy_state); !s.ok()) {
        return absl::DataLossError(absl::StrCat(
            "the stored privacy state does not restore (were the privacy options changed?): ",
            s.message()));
      }
    }
  }
  RoundManagerOptions round_options;
  round_options.codec = options_.codec;
  round_options.min_updates = options_.min_updates;
  round_options.pruning = options_.pruning;
  // Runs under RoundManager's lock, in folding order: the journal's order is
  // the order a replay folds in.
  round_options.on_accept = [this](const v1::EncodedUpdate& update, uint64_t sequence) {
    if (replaying_) return absl::OkStatus();
    return store_->JournalUpdate(update.round(), sequence, update);
  };
  FEDGE_ASSIGN_OR_RETURN(
      rounds_, RoundManager::Create(std::move(strategy), registry_.get(), std::move(round_options),
                                    std::move(privacy)));
  return absl::OkStatus();
}

absl::Status RoundCoordinator::RestoreOpenRound() {
  FEDGE_ASSIGN_OR_RETURN(std::optional<OpenRoundState> open, store_->LoadOpenRound());
  if (!open.has_value()) return absl::OkStatus();
  const RoundRecord& record = open->record;
  if (secure_ != nullptr) {
    // The protocol's secrets lived in the stopped process: nothing of the
    // round was aggregated, so nothing is lost by failing it.
    Log("warning", "round_failed", {{"round", std::to_string(record.round)}},
             "a secure-aggregation round does not survive a restart");
    return store_->FailRound(record.round,
                             "interrupted by a restart (secure aggregation keeps no state)");
  }
  FEDGE_RETURN_IF_ERROR(rounds_->ResumeRound(record.round, record.model_version, record.cohort,
                                             record.train,
                                             open->checkpoint ? &*open->checkpoint : nullptr));
  replaying_ = true;
  for (const v1::EncodedUpdate& update : open->journal) {
    if (absl::Status s = rounds_->Submit(update); !s.ok()) {
      replaying_ = false;
      return absl::DataLossError(absl::StrCat("replaying round ", record.round,
                                              "'s journal: the update of '", update.client_id(),
                                              "' is refused: ", s.message()));
    }
  }
  replaying_ = false;
  FEDGE_ASSIGN_OR_RETURN(std::vector<std::string> accepted, store_->AcceptedClients(record.round));
  std::lock_guard<std::mutex> lock(mu_);
  round_open_ = true;
  round_ = record.round;
  round_version_ = record.model_version;
  opened_at_ms_ = record.opened_at_ms;
  // The deadline restarts in full: the devices' clocks went on meanwhile.
  deadline_ = clock_->Now() + options_.deadline;
  deadline_at_ms_ = clock_->WallMs() + options_.deadline.count();
  cohort_ = {record.cohort.begin(), record.cohort.end()};
  submitted_ = {accepted.begin(), accepted.end()};
  goal_ = GoalFor(cohort_.size());
  Log("info", "round_resumed",
           {{"round", std::to_string(record.round)},
            {"accepted", std::to_string(rounds_->accepted())},
            {"replayed", std::to_string(open->journal.size())}});
  return absl::OkStatus();
}

size_t RoundCoordinator::GoalFor(size_t cohort) const {
  // A resumed (or shrunk) cohort: the goal it was drawn for.
  const size_t goal = options_.goal > 0
                          ? std::min<size_t>(static_cast<size_t>(options_.goal), cohort)
                          : static_cast<size_t>(std::ceil(static_cast<double>(cohort) /
                                                          (1.0 + options_.over_selection)));
  return std::max<size_t>(goal, 1);
}

// --- notifications -------------------------------------------------------------

void RoundCoordinator::Deliver(Pending& pending) {
  if (listener_ == nullptr) return;
  if (pending.fatal.has_value()) listener_->OnFatal(*pending.fatal);
  for (uint64_t version : pending.stored) listener_->OnVersionStored(version);
  for (const auto& [round, phase] : pending.phases) listener_->OnSecAggPhaseClosed(round, phase);
  for (const RoundEnded& ended : pending.ended) listener_->OnRoundEnded(ended);
  if (pending.opened.has_value()) listener_->OnRoundOpened(*pending.opened);
  if (pending.tasks) listener_->OnTasksChanged();
}

void RoundCoordinator::Fatal(const absl::Status& status, Pending& pending) {
  Log("error", "fatal", {}, status.ToString());
  std::lock_guard<std::mutex> lock(mu_);
  if (fatal_.ok()) fatal_ = status;
  finished_ = true;
  pending.fatal = status;
}

void RoundCoordinator::Log(std::string_view level, std::string_view event,
                           const LogFields& fields, std::string_view message) const {
  if (options_.log_events) LogEvent(level, event, fields, message);
}

void RoundCoordinator::Record(const std::string& level, const std::string& kind,
                              const std::string& message,
                              std::map<std::string, std::string> fields) {
  if (events_ != nullptr) {
    events_->Record(level, kind, message, std::move(fields));
  } else {
    Log(level, kind, LogFields(fields.begin(), fields.end()), message);
  }
}

// --- devices ---------------------------------------------------------------------

void RoundCoordinator::MarkAvailable(const std::string& device) {
  std::lock_guard<std::mutex> lock(mu_);
  last_seen_[device] = clock_->Now();
}

void RoundCoordinator::Forget(const std::string& device) {
  Pending pending;
  {
    std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
    bool close = false;
    uint64_t round = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_seen_.erase(device);
      if (round_open_ && !submitted_.contains(device) && cohort_.erase(device) > 0) {
        goal_ = std::max<size_t>(1, std::min(goal_, cohort_.size()));
        close = secure_ == nullptr && !submitted_.empty() && submitted_.size() >= goal_;
        round = round_;
      }
    }
    if (close) CloseRound(round, "goal reached after a device left", pending);
  }
  Deliver(pending);
}

std::vector<std::string> RoundCoordinator::AvailableLocked() const {
  std::vector<std::string> available;
  const auto horizon = clock_->Now() - options_.availability_window;
  for (const auto& [id, seen] : last_seen_) {
    if (seen >= horizon) available.push_back(id);
  }
  return available;
}

void RoundCoordinator::Tick() {
  Pending pending;
  {
    std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
    CheckDeadlines(pending);
    AdvanceRollout(pending);
    (void)ApplyDriftPolicy();
    MaybeOpenRound(pending);
  }
  Deliver(pending);
}

absl::StatusOr<v1::Task> RoundCoordinator::TaskFor(const std::string& device) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (rollout_ != nullptr && rollout_->AwaitingReport(device)) {
      return EvaluationTaskLocked(device);
    }
  }
  FEDGE_ASSIGN_OR_RETURN(v1::Task task, rounds_->TaskFor(device));
  if (secure_ != nullptr) {
    // Only while the first phase collects: a later device cannot join.
    if (secure_->phase() != v1::SECAGG_PHASE_ADVERTISE_KEYS) {
      return absl::NotFoundError(
          absl::StrCat("round ", task.round(), " no longer takes devices into its protocol"));
    }
    FEDGE_ASSIGN_OR_RETURN(*task.mutable_secagg(), secure_->ConfigFor(task.round()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!round_open_ || task.round() != round_) {
    return absl::NotFoundError(absl::StrCat("round ", task.round(), " is closing"));
  }
  return task;
}

absl::Status RoundCoordinator::CheckSubmission(const std::string& device, uint64_t round,
                                               uint64_t model_version) const {
  if (secure_ != nullptr) {
    return absl::FailedPreconditionError(
        "this aggregator runs secure aggregation: devices send their masked updates through "
        "the secure-aggregation phases, never in the clear");
  }
  absl::StatusOr<v1::Task> task = rounds_->TaskFor(device);
  if (!task.ok()) {
    if (task.status().code() != absl::StatusCode::kNotFound) return task.status();
    const uint64_t open = rounds_->round();
    if (rounds_->round_open() && round == open) {
      return absl::PermissionDeniedError(
          absl::StrCat("client '", device, "' is not in the cohort of round ", open));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "update is for round ", round, ", which is not open (",
        rounds_->round_open() ? absl::StrCat("round ", open, " is") : std::string("none is"), ")"));
  }
  if (round != task->round() || model_version != task->model_version()) {
    return absl::FailedPreconditionError(
        absl::StrCat("update is for round ", round, " on version ", model_version,
                     "; the open round is ", task->round(), " on version ", task->model_version()));
  }
  return absl::OkStatus();
}

// --- state -------------------------------------------------------------------------

uint64_t RoundCoordinator::live_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_version_;
}

uint64_t RoundCoordinator::closed_rounds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_rounds_;
}

std::string RoundCoordinator::stop_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_reason_;
}

std::optional<DriftPolicyDecision> RoundCoordinator::EvaluateDrift() {
  std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
  return ApplyDriftPolicy();
}

bool RoundCoordinator::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

absl::Status RoundCoordinator::fatal() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fatal_;
}

double RoundCoordinator::epsilon_spent() const {
  const PrivateAggregation* privacy = rounds_->privacy();
  return privacy != nullptr ? privacy->epsilon() : 0.0;
}

CoordinatorRoundStatus RoundCoordinator::round_status() const {
  CoordinatorRoundStatus status;
  status.accepted = rounds_->accepted();
  if (secure_ != nullptr) status.secagg_phase = secure_->phase();
  std::lock_guard<std::mutex> lock(mu_);
  status.open = round_open_;
  status.round = round_;
  status.model_version = round_version_;
  status.cohort = cohort_.size();
  status.goal = goal_;
  status.opened_at_ms = opened_at_ms_;
  status.deadline_at_ms = deadline_at_ms_;
  status.paused = paused_;
  status.finished = finished_;
  status.next_round = next_round_;
  status.closed_rounds = closed_rounds_;
  if (!round_open_) status.accepted = 0;
  status.reported = !round_open_         ? 0
                    : secure_ != nullptr ? phase_senders_.size()
                                         : submitted_.size();
  return status;
}

size_t RoundCoordinator::available_devices() const {
  std::lock_guard<std::mutex> lock(mu_);
  return AvailableLocked().size();
}

void RoundCoordinator::RecordDownload(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (round_open_) bytes_down_ += bytes;
}

// --- operator: pause -----------------------------------------------------------------

absl::Status RoundCoordinator::PauseRounds(const std::string& reason) {
  bool open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (paused_) return absl::FailedPreconditionError("rounds are paused already");
    paused_ = true;
    open = round_open_;
  }
  FEDGE_RETURN_IF_ERROR(store_->PutSetting("rounds_paused", "1"));
  Record("info", "rounds_paused",
         absl::StrCat("rounds paused", open ? " (the open round finishes)" : "",
                      reason.empty() ? "" : ": " + reason),
         {{"reason", reason}});
  return absl::OkStatus();
}

absl::Status RoundCoordinator::ResumeRounds(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!paused_) return absl::FailedPreconditionError("rounds are not paused");
    paused_ = false;
  }
  FEDGE_RETURN_IF_ERROR(store_->PutSetting("rounds_paused", "0"));
  Record("info", "rounds_resumed",
         absl::StrCat("rounds resumed", reason.empty() ? "" : ": " + reason), {{"reason", reason}});
  return absl::OkStatus();
}

}  // namespace fedge::aggregator
