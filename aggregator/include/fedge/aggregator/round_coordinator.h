// RoundCoordinator: the whole life of a federated round, written once for
// every runner (simulations, the gRPC aggregator, later MQTT and MPI). It
// knows no transport, no timer and no thread of its own: a runner calls it
// (a device polled, an update arrived, time passed) and it tells the runner,
// through a CoordinatorListener, what changed so held polls can be answered.
//
//   Start                   restore the model (or publish the initial one),
//                           the strategy's state and an open round from the
//                           StateStore (checkpoint + journal replay)
//   MarkAvailable(device)   a device polled or sent a heartbeat
//   Tick()                  open a round when enough devices are available
//                           (cohort: goal x (1 + over_selection), drawn by
//                           the cohort sampler), start or decide a canary,
//                           close what passed its deadline on the Clock
//   TaskFor(device)         the one place a task is built: training (with
//                           the DP and secure-aggregation sections) or a
//                           canary evaluation
//   Submit(update)          validate, journal, fold (RoundManager); the
//                           round closes, on the calling thread, when the
//                           goal is reached
//   SecAggReceive/Poll      the four secure-aggregation phases; a phase
//                           closes when every device of the phase before
//                           answered, or at its deadline
//   CloseRound              aggregate (privacy through RoundManager's
//                           PrivateAggregation), publish the signed version
//                           through the ModelRegistry, validate it, gate it
//                           (RolloutGate), store it, raise alerts, evaluate
//                           the drift policy
//   RecordDrift/RecordMetrics   device reports (drift, canary evaluations)
//   RollBackTo/Promote      operator actions on versions
//
// Deadlines: a round's deadline is `options.deadline` after it opened, on
// the injected Clock; a secure-aggregation phase after the first has
// `secagg_phase_timeout`. Nothing happens at a deadline until the runner
// calls Tick() (a deployment every few tens of ms, a simulation when its
// clock advances).
//
// Durability: the round is recorded in the StateStore before any task is
// handed out; every accepted update is journaled before it is folded, and
// the partial aggregate is checkpointed every `checkpoint_every` updates.
// A coordinator started over the same store continues the open round with
// the same floats folded in the same order, so its final model is bit for
// bit the one an uninterrupted run publishes. A secure-aggregation round
// does not survive a restart (its secrets live only in memory): it is
// failed and the next round starts.
//
// Thread safety: every public method may be called concurrently. One lock
// guards the coordinator's state; round lifecycle changes (open, phase
// close, close, rollout, rollback) are serialized by a second lock.
// Decoding updates runs outside both (RoundManager's own lock folds).
// Listener callbacks run on the calling thread after every coordinator lock
// is released; they may call any method.
#ifndef FEDGE_AGGREGATOR_ROUND_COORDINATOR_H_
#define FEDGE_AGGREGATOR_ROUND_COORDINATOR_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/aggregator/alerts.h"
#include "fedge/aggregator/drift_tracker.h"
#include "fedge/aggregator/event_log.h"
#include "fedge/aggregator/metrics.h"
#include "fedge/aggregator/model_registry.h"
#include "fedge/aggregator/private_aggregation.h"
#include "fedge/aggregator/rollout.h"
#include "fedge/aggregator/round_manager.h"
#include "fedge/aggregator/secure_aggregation.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/aggregator/strategy.h"
#include "fedge/proto/log.h"
#include "fedge/models/artifact.h"
#include "fedge/models/pruning.h"
#include "fedge/models/signing.h"
#include "fedge/v1/drift.pb.h"
#include "fedge/v1/federation.pb.h"
#include "fedge/v1/model.pb.h"
#include "fedge/v1/secagg.pb.h"

namespace fedge::aggregator {

// The coordinator's notion of time. Now() orders deadlines (monotonic in a
// deployment); WallMs() stamps records (ms since the Unix epoch).
//
// Thread safety: implementations must allow concurrent calls.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() const = 0;
  virtual int64_t WallMs() const = 0;
};

// The process clocks: steady_clock and system_clock.
class SystemClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override;
  int64_t WallMs() const override;
};

// A clock that moves only when told to (tests, simulations: a simulated
// round takes the time the simulation says). Both readings advance together.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t wall_ms = 1'700'000'000'000);
  std::chrono::steady_clock::time_point Now() const override;
  int64_t WallMs() const override;
  void Advance(std::chrono::milliseconds by);

 private:
  mutable std::mutex mu_;
  std::chrono::milliseconds elapsed_{0};
  const int64_t wall_start_ms_;
};

// A round that opened (see CoordinatorListener::OnRoundOpened).
struct RoundOpened {
  uint64_t round = 0;
  uint64_t model_version = 0;
  std::vector<std::string> cohort;
  size_t available = 0;  // devices available when it opened
  size_t goal = 0;
  int64_t opened_at_ms = 0;
  int64_t deadline_at_ms = 0;
  // The drift policy's extra round (its cohort: devices that asked to join).
  bool drift_extra = false;
};

// A round that ended: closed with a version, or failed.
struct RoundEnded {
  RoundOutcome outcome;  // failed: round and cohort_size only
  bool failed = false;
  std::string why;             // what ended it: "goal reached", "deadline", ...
  std::string reason;          // failed rounds: why nothing was published
  bool drift_extra = false;    // the drift policy's extra round
  uint64_t model_version = 0;  // the version the round trained from
  std::vector<std::string> cohort;
  // Cohort devices whose update was not counted (empty for a secure round:
  // its protocol reveals no individual contribution).
  std::vector<std::string> missing;
  int64_t opened_at_ms = 0;
  int64_t closed_at_ms = 0;
  uint64_t bytes_up = 0;    // updates and secure-aggregation messages
  uint64_t bytes_down = 0;  // model downloads reported with RecordDownload
};

// What the coordinator tells its runner. Every method has an empty default.
// Called with no coordinator lock held, on the thread of the call that made
// the change.
class CoordinatorListener {
 public:
  virtual ~CoordinatorListener() = default;
  // Devices may have a task now (a round opened, a canary started, a
  // round ended so held polls learn there is none): re-ask TaskFor.
  virtual void OnTasksChanged() {}
  // Secure aggregation: `phase` of `round` closed, or the round ended
  // (phase SECAGG_PHASE_UNSPECIFIED): re-ask SecAggPoll.
  virtual void OnSecAggPhaseClosed(uint64_t round, v1::SecAggPhase phase) {}
  // A round opened: its cohort may fetch tasks (OnTasksChanged follows).
  virtual void OnRoundOpened(const RoundOpened& opened) {}
  // A round closed with a new version, or failed (outcome.new_version == 0,
  // outcome.participants == 0).
  virtual void OnRoundEnded(const RoundEnded& ended) {}
  // `version` is stored and may be served (a round's version, a rollback's
  // republished one, a promoted one).
  virtual void OnVersionStored(uint64_t version) {}
  // The coordinator hit an error it cannot continue after (the store
  // refused a write); every later lifecycle call does nothing.
  virtual void OnFatal(const absl::Status& status) {}
};

// Draws a round's cohort: `count` of `available` (sorted), for `round`.
// The default is RoundManager::SelectCohort seeded with options.seed
// (reproducible, what simulations compare against). A deployment that must
// keep the cohort unpredictable (secure aggregation with an adversarial
// server model) supplies a sampler drawing from OpenSSL's RAND_bytes. With
// differential privacy, the accountant assumes Poisson sampling at
// privacy.sampling_rate: a runner that needs that guarantee supplies a
// sampler built on RoundManager::SelectPoissonCohort (the default draws
// `count` uniformly, which the accounting does not cover).
using CohortSampler = std::function<absl::StatusOr<std::vector<std::string>>(
    const std::vector<std::string>& available, int count, uint64_t round)>;

// Poisson cohorts: each available device independently with probability
// `rate` (the count is ignored; a round's goal should be its whole cohort).
// Drawn from OpenSSL's generator, so nobody can predict a cohort, which
// amplification by sampling assumes. REQUIRES: 0 < rate <= 1.
CohortSampler PoissonCohortSampler(double rate);
// The same, reproducible from `seed` (RoundManager::SelectPoissonCohort):
// simulations and tests.
CohortSampler SeededPoissonCohortSampler(double rate, uint64_t seed);
// Fixed-size cohorts: `count` of the available devices, uniformly without
// replacement, drawn from OpenSSL's generator (sorted, as the default's).
// What deployments use for rounds.sampling=fixed.
CohortSampler UniformCohortSampler();

// How rounds are scheduled: the part of a coordinator's options a
// deployment's operator sets (fedge-aggregator's rounds.* and train.* keys).
struct RoundPolicy {
  // Updates that close a round early. 0: use `fraction` instead.
  int goal = 0;
  // Goal as a fraction of the devices available when the round opens, in
  // (0, 1]; used when goal == 0.
  double fraction = 0.0;
  // Devices that must be available before a round opens. REQUIRES: >= 1.
  int min_clients = 1;
  // Devices selected beyond the goal, as a fraction of it, to absorb
  // stragglers (Bonawitz et al. 2019, "Towards federated learning at scale",
  // select 130% of the goal). REQUIRES: >= 0.
  double over_selection = 0.0;
  // Fewest accepted updates with which a round closes at its deadline;
  // with fewer it fails. REQUIRES: >= 1.
  int min_updates = 1;
  // From a round's opening to its deadline. REQUIRES: > 0. Default: 60 s.
  std::chrono::milliseconds deadline{60'000};
  // Rounds to close before finished() turns true; 0: no limit.
  uint64_t rounds = 0;
  v1::TrainConfig train;
  // Round r's tasks use learning rate train.learning_rate * lr_decay^(r-1)
  // and seed train.seed ^ (0x9E3779B97F4A7C15 * r). REQUIRES: (0, 1].
  double lr_decay = 1.0;
  // Seed of the default cohort sampler.
  uint64_t seed = 1;
};

struct RoundCoordinatorOptions : RoundPolicy {
  // A device is available while it was seen within this window.
  // Default: 31 s (the longest held poll and a second).
  std::chrono::milliseconds availability_window{31'000};
  // Default: RoundManager::SelectCohort with `seed` (see CohortSampler).
  CohortSampler cohort_sampler;

  // --- aggregation ---
  std::string strategy = "fedavg";
  StrategyOptions strategy_options;
  std::string codec = "fp32";
  std::optional<models::PruningOptions> pruning;
  // Differential privacy, applied by RoundManager (private_aggregation.h).
  // Its state (accountant, clipper) is stored with each version and
  // restored at start. Default: off.
  std::optional<PrivateAggregationOptions> privacy;
  // Checkpoint the open round every this many accepted updates (0: never;
  // the journal alone restores it). Rounds with privacy are never
  // checkpointed (RoundManager::Checkpoint refuses them).
  int checkpoint_every = 64;
  // Secure aggregation (secure_aggregation.h). Default: off.
  std::optional<SecureAggregationOptions> secure_aggregation;
  std::chrono::milliseconds secagg_phase_timeout{30'000};

  // --- versions ---
  // What devices download. Default: int8 per channel.
  models::ArtifactEncoding::Precision precision =
      models::ArtifactEncoding::Precision::kInt8PerChannel;
  // Downloads list only the non-zero weights (pruned models). Default: false.
  bool sparse_artifacts = false;
  // Adds to every artifact devices download, before it is signed (e.g. the
  // activation ranges an int8 engine needs, calibrated on proxy data):
  // called with the version's fp32 parameters on the publishing thread.
  // Empty: nothing is added.
  std::function<absl::Status(std::span<const float> parameters, v1::ModelArtifact& artifact)>
      annotate;
  // Signs every artifact; stored artifacts must verify with it. REQUIRES:
  // set. Not owned; must outlive the coordinator.
  const models::SigningKey* signing_key = nullptr;
  // The model of version 0 for an empty store: an fp32 artifact.
  std::optional<v1::ModelArtifact> initial_model;
  // Evaluates a version's fp32 master: at least "accuracy" in [0, 1] and a
  // finite "loss". Called on the closing thread. Empty: no validation.
  std::function<absl::StatusOr<std::map<std::string, double>>(const v1::ModelArtifact& master)>
      validate;
  // Gated rollout; REQUIRES: `validate` when enabled. Default: off.
  RolloutPolicy rollout;
  // Evaluation tasks' batch size is max(train.batch_size, this).
  uint32_t min_evaluation_batch = 32;

  // --- fleet reactions ---
  AlertRules alerts;
  // Events without an EventLog, and the coordinator's own log lines, go to
  // the process log (LogEvent). Off: they are dropped (simulations, whose
  // report says what happened). Default: on.
  bool log_events = true;
  // The drift reaction policy (drift_tracker.h) over `drift_population`
  // devices, applied once per ended round, before the next one opens (or
  // when the runner calls EvaluateDrift), over the reports filed under the
  // ended round: devices report while they run the version it published.
  // "extra-round" precedes each of the next `drift_extra_rounds` regular
  // rounds by an extra round with the devices that asked to join (even
  // below min_clients), filled up to
  // `drift_extra_round_devices` with the cohort sampler's draw (0: the
  // devices that asked, no fill). Default: none.
  std::optional<DriftPolicyOptions> drift;
  int64_t drift_population = 1;
  int drift_extra_rounds = 1;
  int drift_extra_round_devices = 0;
};

// What an open round looks like (for status pages and tests).
struct CoordinatorRoundStatus {
  bool open = false;
  uint64_t round = 0;
  uint64_t model_version = 0;
  size_t cohort = 0;
  size_t goal = 0;
  size_t accepted = 0;
  int64_t opened_at_ms = 0;
  int64_t deadline_at_ms = 0;
  // Devices heard from in the collecting phase (secure aggregation), else
  // accepted updates.
  size_t reported = 0;
  v1::SecAggPhase secagg_phase = v1::SECAGG_PHASE_UNSPECIFIED;
  bool paused = false;
  bool finished = false;
  uint64_t next_round = 1;
  uint64_t closed_rounds = 0;
};

class RoundCoordinator {
 public:
  // Validates the options (INVALID_ARGUMENT naming the field), restores or
  // initializes the store (DATA_LOSS when a stored artifact does not verify
  // or the strategy's state does not restore). `store`, `clock` and
  // `listener` (may be null), `metrics` and `events` (may be null) are not
  // owned and must outlive the coordinator.
  static absl::StatusOr<std::unique_ptr<RoundCoordinator>> Start(
      RoundCoordinatorOptions options, StateStore* store, const Clock* clock,
      CoordinatorListener* listener = nullptr, AggregatorMetrics* metrics = nullptr,
      EventLog* events = nullptr);
  // The option checks Start makes, except the signing key's (a runner may
  // check its configuration before it loads the key). INVALID_ARGUMENT
  // naming the field.
  static absl::Status CheckOptions(const RoundCoordinatorOptions& options);
  ~RoundCoordinator();
  RoundCoordinator(const RoundCoordinator&) = delete;
  RoundCoordinator& operator=(const RoundCoordinator&) = delete;

  // --- driven by the runner ---
  void MarkAvailable(const std::string& device);
  // Forgets a device (revoked): it is no longer available and leaves the
  // open round's cohort if it has not submitted; the goal shrinks to what
  // the remaining cohort can deliver.
  void Forget(const std::string& device);
  void Tick();

  // The device's task now: a canary evaluation, or its training task while
  // its round waits for updates (with secure aggregation only while keys
  // are advertised). NOT_FOUND when there is none.
  absl::StatusOr<v1::Task> TaskFor(const std::string& device) const;
  // Checks an update's header before its bytes are received (client,
  // round, version); the errors Submit would give.
  absl::Status CheckSubmission(const std::string& device, uint64_t round,
                               uint64_t model_version) const;
  // Validates, journals and folds an update (RoundManager::Submit errors).
  // Closes the round when it reaches the goal.
  absl::Status Submit(const v1::EncodedUpdate& update);

  // Secure aggregation. FAILED_PRECONDITION without it.
  absl::Status SecAggReceive(const v1::SecAggClientMessage& message);
  absl::StatusOr<v1::SecAggServerMessage> SecAggPoll(const std::string& device, uint64_t round,
                                                     v1::SecAggPhase phase) const;

  // A device's drift report: stored, fed to the drift policy and the
  // drift-share alert. INVALID_ARGUMENT for a report without events.
  absl::Status RecordDrift(const std::string& device, const v1::DriftReport& report);
  // A device's metrics about `model_version` in `round` (the transport's
  // metrics report): canary evaluations (eval_accuracy, eval_loss,
  // baseline_accuracy, baseline_loss, eval_examples) go to the rollout
  // gate; others are averaged over the round's devices into its version's
  // metrics ("clients_<key>"). Non-finite values are ignored.
  void RecordMetrics(const std::string& device, uint64_t round, uint64_t model_version,
                     const std::map<std::string, double>& metrics);
  // A device refused its task in `round` (MetricsReport.task_refused: the
  // task fell below the device's privacy floor): an event ("task_refused",
  // warning) with the device's reason, kept in refusals().
  void RecordRefusal(const std::string& device, uint64_t round, const std::string& reason);
  struct TaskRefusal {
    std::string device;
    uint64_t round = 0;
    std::string reason;
  };
  // The newest refusals (at most 256), oldest first.
  std::vector<TaskRefusal> refusals() const;

  // `bytes` of model were sent to a device; counted into the open round's
  // bytes_down (its version's metrics).
  void RecordDownload(uint64_t bytes);

  // --- operator actions ---
  absl::Status PauseRounds(const std::string& reason);
  absl::Status ResumeRounds(const std::string& reason);
  // Publishes `version`'s stored model as a new live version; returns its
  // id. FAILED_PRECONDITION while a round is open or for the newest
  // version; NOT_FOUND for an unknown one.
  absl::StatusOr<uint64_t> RollBackTo(uint64_t version, const std::string& reason);
  // Makes a held (canary, rejected, rolled back) version live.
  absl::Status Promote(uint64_t version, const std::string& reason);

  // --- state ---
  const ModelRegistry& registry() const { return *registry_; }
  const models::ModelSpec& spec() const { return spec_; }
  uint64_t live_version() const;
  uint64_t closed_rounds() const;
  // True once `rounds` rounds closed, or after a fatal error.
  bool finished() const;
  // OK, or the error that stopped the coordinator.
  absl::Status fatal() const;
  // Cheap (constant time in the fleet's size): safe to call per poll.
  CoordinatorRoundStatus round_status() const;
  // Devices seen within the availability window (linear in the fleet).
  size_t available_devices() const;
  // ε spent so far (0 without privacy).
  double epsilon_spent() const;
  // Why rounds stopped before `rounds` closed ("round 4 refused: privacy
  // budget: ..."); empty while they go on, or after a fatal error.
  std::string stop_reason() const;

  // Applies the drift policy for the last ended round now, if it has not
  // been applied yet (Tick applies it before the next round opens; a runner
  // that knows every report is in, a simulation, may call this earlier).
  // nullopt without a drift policy or when already applied.
  std::optional<DriftPolicyDecision> EvaluateDrift();
  const RoundCoordinatorOptions& options() const { return options_; }

 private:
  RoundCoordinator(RoundCoordinatorOptions options, StateStore* store, const Clock* clock,
                   CoordinatorListener* listener, AggregatorMetrics* metrics, EventLog* events);

  // Notifications collected under the locks and delivered after them.
  struct Pending {
    bool tasks = false;
    std::vector<std::pair<uint64_t, v1::SecAggPhase>> phases;
    std::optional<RoundOpened> opened;
    std::vector<RoundEnded> ended;
    std::vector<uint64_t> stored;
    std::optional<absl::Status> fatal;
  };
  void Deliver(Pending& pending);

  // Start-up (round_coordinator.cc).
  absl::Status Init();
  absl::Status RestoreOrInitModel();
  absl::Status CreateRounds(std::unique_ptr<Strategy> strategy);
  absl::Status RestoreOpenRound();
  absl::Status RestoreRollout(Pending& pending);

  // Rounds (round_coordinator_rounds.cc); lifecycle_mu_ held.
  void MaybeOpenRound(Pending& pending);
  // The cohort of `round` from `available` (non-empty) and its goal, which
  // never exceeds the cohort drawn.
  absl::StatusOr<std::vector<std::string>> DrawCohort(const std::vector<std::string>& available,
                                                      uint64_t round, size_t& goal) const;
  void CheckDeadlines(Pending& pending);
  // Closes round `round` if it is the open one. A round that publishes
  // nothing fails with `failure`, when given, as its reason.
  // Records the budget refusal and stops the federation (no round opens).
  void StopForBudget(uint64_t round, const absl::Status& budget);
  void CloseRound(uint64_t round, const std::string& why, Pending& pending,
                  const std::string& failure = "");
  void FailRound(uint64_t round, const std::string& reason, const std::string& why,
                 Pending& pending);
  // The RoundEnded of the round being closed, taken from the state; mu_ held.
  RoundEnded EndedLocked(uint64_t round, const std::string& why) const;
  absl::Status PublishClosed(const RoundOutcome& outcome, const std::string& why, Pending& pending);
  // Validation and the rollout's first gate for a new version (sets its
  // status and validation metrics in `record`, its accuracy in `accuracy`);
  // nullopt without a rollout gate.
  std::optional<RolloutDecision> GateVersion(VersionRecord& record, const v1::ModelArtifact& master,
                                             double& accuracy);
  // Makes a stored version live, republishes the live one over a rejected
  // version, or holds it for its canary.
  absl::Status ActOnGate(const std::optional<RolloutDecision>& decision,
                         const VersionRecord& record, double accuracy, Pending& pending);
  // The drift reaction policy for the last ended round, once; lifecycle_mu_
  // held.
  std::optional<DriftPolicyDecision> ApplyDriftPolicy();
  // The extra round's cohort from `available`, when one is due (mu_ held).
  std::vector<std::string> ExtraCohortLocked(const std::vector<std::string>& available,
                                             uint64_t round) const;
  void Checkpoint();
  void Fatal(const absl::Status& status, Pending& pending);
  std::vector<std::string> AvailableLocked() const;
  size_t GoalFor(size_t cohort) const;
  // Secure aggregation (round_coordinator_secagg.cc); lifecycle_mu_ held.
  // Closes the collecting phase; with `only_if_complete`, only when every
  // expected device answered (a concurrent sender may have closed it).
  void CloseSecAggPhase(const std::string& why, bool only_if_complete, Pending& pending);

  // Versions and rollout (round_coordinator_rollout.cc); lifecycle_mu_ held.
  absl::StatusOr<std::pair<double, double>> Validate(const v1::ModelArtifact& master);
  void AdvanceRollout(Pending& pending);
  void GoLive(uint64_t version, double accuracy);
  absl::StatusOr<uint64_t> RollBackLocked(uint64_t target, const std::string& reason,
                                          Pending& pending);
  absl::StatusOr<v1::Task> EvaluationTaskLocked(const std::string& device) const;
  void RaiseAlerts(const std::vector<Alert>& alerts);
  void Record(const std::string& level, const std::string& kind, const std::string& message,
              std::map<std::string, std::string> fields = {});
  // The process log (JSON lines on stderr), unless options_.log_events is off.
  void Log(std::string_view level, std::string_view event, const LogFields& fields,
           std::string_view message = {}) const;

  const RoundCoordinatorOptions options_;
  StateStore* const store_;
  const Clock* const clock_;
  CoordinatorListener* const listener_;
  AggregatorMetrics* const metrics_;
  EventLog* const events_;

  models::ModelSpec spec_;
  std::vector<models::ParameterLayout> layout_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<RoundManager> rounds_;
  std::unique_ptr<SecureAggregation> secure_;
  std::unique_ptr<DriftTracker> drift_;

  // Serializes round lifecycle changes; taken before mu_, never after it.
  std::mutex lifecycle_mu_;
  mutable std::mutex mu_;
  absl::Status fatal_;
  bool finished_ = false;
  bool paused_ = false;
  bool replaying_ = false;
  bool round_open_ = false;
  uint64_t round_ = 0;
  uint64_t next_round_ = 1;
  uint64_t closed_rounds_ = 0;
  uint64_t round_version_ = 0;
  size_t goal_ = 0;
  int64_t opened_at_ms_ = 0;
  int64_t deadline_at_ms_ = 0;  // of the round, on the wall clock
  std::chrono::steady_clock::time_point deadline_;
  std::set<std::string, std::less<>> cohort_;
  std::set<std::string, std::less<>> submitted_;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> last_seen_;
  std::map<std::string, std::map<std::string, double>, std::less<>> round_metrics_;
  std::deque<TaskRefusal> refusals_;
  // Secure aggregation: who answered the collecting phase, how many are
  // expected to, and the protocol bytes received this round.
  std::set<std::string, std::less<>> phase_senders_;
  size_t phase_expected_ = 0;
  uint64_t secagg_bytes_up_ = 0;
  uint64_t bytes_down_ = 0;  // the open round's model downloads
  // Drift: devices the policy asked into the next rounds, how many extra
  // rounds are still due, and the last ended round the policy was applied
  // for.
  std::set<std::string> extra_round_devices_;
  int extra_rounds_left_ = 0;
  bool drift_extra_ = false;  // the open round is an extra one
  uint64_t last_ended_round_ = 0;
  uint64_t drift_applied_round_ = 0;
  std::string stop_reason_;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> last_drift_;

  // Rollout: the live version and its validation accuracy (NaN when not
  // evaluated), and a validated candidate whose canary has not started.
  uint64_t live_version_ = 0;
  double live_accuracy_ = std::numeric_limits<double>::quiet_NaN();
  std::unique_ptr<RolloutGate> rollout_;
  std::optional<uint64_t> canary_waiting_;
  uint64_t candidate_round_ = 0;
  double candidate_accuracy_ = std::numeric_limits<double>::quiet_NaN();
  std::unique_ptr<AlertMonitor> alerts_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_ROUND_COORDINATOR_H_
