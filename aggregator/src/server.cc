#include "fedge/aggregator/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "fedge/aggregator/sqlite_state_store.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "server_impl.h"

namespace fedge::aggregator {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace {

std::string Sha256(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

}  // namespace

AggregatorServer::Impl::Impl(AggregatorServerOptions options) : options_(std::move(options)) {}
AggregatorServer::Impl::~Impl() { Shutdown(); }

// --- start-up --------------------------------------------------------------------

RoundCoordinatorOptions AggregatorServer::Impl::CoordinatorOptions() const {
  const RoundPolicy& policy = options_.policy;
  RoundCoordinatorOptions o;
  static_cast<RoundPolicy&>(o) = policy;
  // Available: polled within the longest poll wait plus a second of grace.
  o.availability_window = options_.max_poll_wait + std::chrono::seconds(1);
  o.strategy = options_.strategy;
  o.strategy_options = options_.strategy_options;
  o.codec = options_.codec;
  o.checkpoint_every = options_.checkpoint_every;
  o.secure_aggregation = options_.secure_aggregation;
  o.secagg_phase_timeout = options_.secagg_phase_timeout;
  o.precision = options_.precision;
  o.signing_key = key_.has_value() ? &*key_ : nullptr;
  o.initial_model = options_.initial_model;
  o.validate = options_.validate;
  o.rollout = options_.rollout;
  o.alerts = options_.alerts;
  o.privacy = options_.privacy;
  o.drift = options_.drift;
  return o;
}

absl::Status AggregatorServer::Impl::Init() {
  if (options_.workers < 1 || options_.max_concurrent_uploads < 1 || options_.chunk_bytes < 1024) {
    return absl::InvalidArgumentError(
        "workers and max_concurrent_uploads must be >= 1 and chunk_bytes >= 1024");
  }
  if (options_.signing_key_file.empty()) {
    return absl::InvalidArgumentError("the aggregator needs a model-signing key (signing_key)");
  }
  const LivenessOptions& liveness = options_.liveness;
  if (liveness.heartbeat_interval.count() < 0 || liveness.heartbeat_interval.count() > 3'600'000 ||
      (liveness.heartbeat_interval.count() > 0 &&
       liveness.gone_after <= liveness.heartbeat_interval)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "devices.heartbeat_interval_s must be in [0, 3600] and devices.gone_after_s longer than "
        "it (got ",
        liveness.heartbeat_interval.count() / 1000.0, " s and ",
        liveness.gone_after.count() / 1000.0, " s)"));
  }
  // Refuse bad round options before the state directory is touched.
  FEDGE_RETURN_IF_ERROR(RoundCoordinator::CheckOptions(CoordinatorOptions()));
  if (options_.rollout.enabled && !options_.validate) {
    return absl::InvalidArgumentError(
        "rollout.enabled needs a validation set to evaluate new versions on (validation.*)");
  }
  FEDGE_RETURN_IF_ERROR(LoadKeys());
  FEDGE_ASSIGN_OR_RETURN(store_, StateStore::Open(options_.state_dir));
  RoundCoordinatorOptions coordinator_options = CoordinatorOptions();
  FEDGE_ASSIGN_OR_RETURN(std::vector<ClientRecord> clients, store_->Clients());
  const int64_t enrolled = std::max<int64_t>(1, std::ssize(clients));
  if (options_.drift.has_value()) coordinator_options.drift_population = enrolled;
  // A round's devices (the goal, or the fraction of the fleet) over the
  // enrolled devices, as a simulation takes its clients per round over its
  // clients.
  const RoundPolicy& policy = options_.policy;
  const double cohort =
      policy.goal > 0 ? policy.goal : std::ceil(policy.fraction * static_cast<double>(enrolled));
  const double rate = std::min(1.0, cohort / static_cast<double>(enrolled));
  if (std::optional<PrivateAggregationOptions>& privacy = coordinator_options.privacy) {
    if (privacy->expected_cohort <= 0.0) privacy->expected_cohort = cohort;
    if (privacy->sampling_rate <= 0.0) privacy->sampling_rate = rate;
  }
  if (options_.sampling == "poisson") {
    // Every drawn device counts: the round's goal is its whole cohort.
    coordinator_options.goal = static_cast<int>(enrolled);
    coordinator_options.fraction = 0.0;
    coordinator_options.cohort_sampler = options_.seeded_sampling
                                             ? SeededPoissonCohortSampler(rate, policy.seed)
                                             : PoissonCohortSampler(rate);
  } else if (options_.sampling != "fixed") {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling '", options_.sampling, "': expected fixed or poisson"));
  } else if (options_.secure_aggregation.has_value() && policy.goal > 0 &&
             policy.goal < std::max(3, options_.secure_aggregation->protocol.min_survivors)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rounds.goal ", policy.goal, " with secure aggregation: below its minimum cohort of ",
        std::max(3, options_.secure_aggregation->protocol.min_survivors),
        " (secure_aggregation.min_survivors, and a threshold of at least 2), no round could run"));
  } else if (!options_.seeded_sampling) {
    // Nobody, the operator included, can predict who is asked next.
    coordinator_options.cohort_sampler = UniformCohortSampler();
  }
  absl::StatusOr<std::unique_ptr<RoundCoordinator>> coordinator = RoundCoordinator::Start(
      std::move(coordinator_options), store_.get(), &clock_, this, &metrics, &event_log);
  if (!coordinator.ok()) {
    if (coordinator.status().code() == absl::StatusCode::kFailedPrecondition &&
        !options_.initial_model.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("state directory ", options_.state_dir.string(),
                       " holds no model version and no initial model was given"));
    }
    return coordinator.status();
  }
  coordinator_ = *std::move(coordinator);
  // Devices download the newest version and the live one (they differ while
  // a candidate is held back).
  FEDGE_ASSIGN_OR_RETURN(VersionRecord latest, store_->LatestVersion());
  FEDGE_RETURN_IF_ERROR(ServeStored(latest.version));
  if (coordinator_->live_version() != latest.version) {
    FEDGE_RETURN_IF_ERROR(ServeStored(coordinator_->live_version()));
  }
  LogEvent("info", "state_restored",
           {{"state_dir", options_.state_dir.string()},
            {"latest_version", std::to_string(latest.version)},
            {"live_version", std::to_string(coordinator_->live_version())}});
  if (const CoordinatorRoundStatus round = coordinator_->round_status(); round.open) {
    std::lock_guard<std::mutex> lock(fleet_mu_);  // a round resumed from the journal
    round_summary_.round = round.round;
    round_summary_.model_version = round.model_version;
    round_summary_.outcome = "open";
    round_summary_.opened_at_ms = round.opened_at_ms;
    round_summary_.selected = round.cohort;
  }
  workers_ = std::make_unique<asio::thread_pool>(options_.workers);
  FEDGE_RETURN_IF_ERROR(RestoreFleet());
  FEDGE_RETURN_IF_ERROR(StartGrpc());
  FEDGE_RETURN_IF_ERROR(StartOps());

  work_.emplace(io_.get_executor());
  tick_timer_.emplace(io_);
  io_thread_ = std::thread([this] { io_.run(); });
  asio::post(io_, [this] { ScheduleTick(); });
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::StartGrpc() {
  const ServerTlsOptions& tls = options_.tls;
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                         ServerCredentials());
  service_ = NewFederationService(this);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen_address, credentials, &port);
  builder.RegisterService(service_.get());
  // Masked vectors of secure aggregation arrive in one message (4 bytes per
  // parameter, plus the weight).
  const int64_t secagg_bytes =
      options_.secure_aggregation.has_value()
          ? 4 * (coordinator_->registry().num_parameters() + 1) + (64 << 10)
          : 0;
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::max<int64_t>(static_cast<int64_t>(options_.chunk_bytes) + (64 << 10), secagg_bytes)));
  builder.SetMaxSendMessageSize(static_cast<int>(options_.chunk_bytes) + (64 << 10));
  // Flow control: with gRPC's BDP probe on, every stream's receive window
  // grows to about twice the connection's bandwidth-delay product, which on a
  // fast link is megabytes, so an upload waiting for a slot (see
  // max_concurrent_uploads) would be received anyway and sit in memory: with
  // 1,000 devices submitting 2.3 MB updates at once, RSS rose by ~1.4 GB in
  // seconds (bench/load.sh). Without the probe a stream nobody reads holds at
  // most the default 64 KiB window; a stream being read still gets the window
  // of the message it reads.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address,
                     " (address in use, or a certificate or key that does not load)"));
  }
  LogEvent("info", "listening",
           {{"address", options_.listen_address},
            {"port", std::to_string(port)},
            {"tls", tls.insecure ? "off" : (tls.client_ca_file.empty() ? "server" : "mutual")}});
  return absl::OkStatus();
}

// --- the round thread: the timer that drives the coordinator ---------------------

void AggregatorServer::Impl::ScheduleTick() {
  SweepLiveness();
  coordinator_->Tick();
  if (options_.policy.rounds > 0 && coordinator_->fatal().ok() && coordinator_->finished() &&
      !coordinator_->stop_reason().empty()) {
    // Rounds stopped before their count (the privacy budget is spent): no
    // round can open again, so a run that counts rounds is over.
    std::lock_guard<std::mutex> lock(mu_);
    if (!finished_) {
      LogEvent("warning", "rounds_stopped", {}, coordinator_->stop_reason());
      finished_ = true;
      done_cv_.notify_all();
    }
  }
  tick_timer_->expires_after(std::chrono::milliseconds(50));
  tick_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) ScheduleTick();
  });
}

// --- served versions -------------------------------------------------------------

absl::Status AggregatorServer::Impl::ServeStored(uint64_t version) {
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(version));
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact, store_->ReadArtifact(version));
  Serve(version, artifact, master);
  return absl::OkStatus();
}

void AggregatorServer::Impl::Serve(uint64_t version, const v1::ModelArtifact& artifact,
                                   const v1::ModelArtifact& master) {
  ServedVersion served;
  auto bytes = std::make_shared<std::string>(artifact.SerializeAsString());
  served.artifact_sha256 = Sha256(*bytes);
  served.artifact = std::move(bytes);
  served.master = std::make_shared<const std::string>(master.SerializeAsString());
  const uint64_t live = coordinator_ != nullptr ? coordinator_->live_version() : version;
  std::lock_guard<std::mutex> lock(mu_);
  served_[version] = std::move(served);
  // The four newest stay served, and the live version always.
  for (auto it = served_.begin(); served_.size() > 4 && it != served_.end();) {
    it = it->first == live ? std::next(it) : served_.erase(it);
  }
}

void AggregatorServer::Impl::Fatal(const absl::Status& status) {
  LogEvent("error", "fatal", {}, status.ToString());
  std::lock_guard<std::mutex> lock(mu_);
  if (fatal_.ok()) fatal_ = status;
  finished_ = true;
  done_cv_.notify_all();
}

// --- CoordinatorListener -------------------------------------------------------------

void AggregatorServer::Impl::OnTasksChanged() { WakeWaiters(); }

void AggregatorServer::Impl::OnSecAggPhaseClosed(uint64_t, v1::SecAggPhase) { WakeWaiters(); }

void AggregatorServer::Impl::OnRoundOpened(const RoundOpened& opened) {
  for (const std::string& id : opened.cohort) {
    // The aggregator's own bookkeeping: not a sign of life from the device.
    NoteDevice(id, [](DeviceStatus& d) { d.rounds_selected += 1; });
  }
  std::lock_guard<std::mutex> lock(fleet_mu_);
  round_summary_ = RoundSummary{};
  round_summary_.round = opened.round;
  round_summary_.model_version = opened.model_version;
  round_summary_.outcome = "open";
  round_summary_.opened_at_ms = opened.opened_at_ms;
  round_summary_.selected = opened.cohort.size();
}

void AggregatorServer::Impl::OnRoundEnded(const RoundEnded& ended) {
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    RoundSummary summary = round_summary_;
    if (summary.round != ended.outcome.round) {
      summary = RoundSummary{};
      summary.round = ended.outcome.round;
      summary.model_version = ended.model_version;
      summary.opened_at_ms = ended.opened_at_ms;
      summary.selected = ended.cohort.size();
    }
    const uint64_t reported = static_cast<uint64_t>(ended.outcome.participants);
    summary.outcome = ended.failed ? "failed" : "closed";
    summary.closed_at_ms = ended.closed_at_ms;
    summary.reported = reported;
    summary.dropped = summary.selected > reported ? summary.selected - reported : 0;
    summary.new_version = ended.outcome.new_version;
    summary.reason = ended.failed ? ended.reason : ended.why;
    summary.bytes_up = ended.bytes_up;
    summary.bytes_down = ended.bytes_down;
    for (const std::string& id : ended.missing) {
      if (auto it = devices_.find(id); it != devices_.end()) it->second.tasks_failed += 1;
    }
    history_.push_back(summary);
    while (history_.size() > 10'000) history_.pop_front();
    // The next round may have opened (on the Tick thread) before this
    // callback ran on the thread that closed this one: keep its summary.
    if (round_summary_.round == ended.outcome.round) round_summary_ = RoundSummary{};
  }
  if (options_.on_round_closed) options_.on_round_closed(ended.outcome);
  if (!ended.failed && options_.policy.rounds > 0 &&
      coordinator_->closed_rounds() >= options_.policy.rounds) {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    done_cv_.notify_all();
  }
}

void AggregatorServer::Impl::OnVersionStored(uint64_t version) {
  if (absl::Status s = ServeStored(version); !s.ok()) Fatal(s);
}

void AggregatorServer::Impl::OnFatal(const absl::Status& status) { Fatal(status); }

// --- shutdown -------------------------------------------------------------------------

void AggregatorServer::Impl::Shutdown() {
  // A second caller waits until the first one has finished.
  std::lock_guard<std::mutex> shutdown_lock(shutdown_mu_);
  std::map<uint64_t, Waiter> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    finished_ = true;
    waiters.swap(waiters_);
    done_cv_.notify_all();
  }
  ops_server.reset();  // no admin action starts from here on
  for (auto& [id, waiter] : waiters) {
    waiter.timer->cancel();
    waiter.abort(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the aggregator is shutting down"));
  }
  // Uploads waiting for a slot start now, so that they see the shutdown and
  // finish.
  std::deque<std::function<void()>> queued;
  {
    std::lock_guard<std::mutex> lock(upload_mu_);
    queued.swap(upload_queue_);
    uploads_active_ += static_cast<int>(queued.size());
  }
  for (auto& start : queued) start();
  if (server_ != nullptr)
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (workers_ != nullptr) workers_->join();
  work_.reset();
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
  if (server_ != nullptr) server_->Wait();
}

absl::Status AggregatorServer::Impl::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return finished_; });
  return fatal_;
}

// --- AggregatorServer -----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<AggregatorServer>> AggregatorServer::Start(
    AggregatorServerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  FEDGE_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<AggregatorServer>(new AggregatorServer(std::move(impl)));
}

AggregatorServer::AggregatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AggregatorServer::~AggregatorServer() { Shutdown(); }

int AggregatorServer::port() const { return impl_->port; }
int AggregatorServer::ops_port() const {
  return impl_->ops_server != nullptr ? impl_->ops_server->port() : 0;
}
int AggregatorServer::metrics_port() const { return ops_port(); }
const std::string& AggregatorServer::ops_token() const { return impl_->ops_token; }
FleetControl& AggregatorServer::fleet() { return *impl_; }
EventLog& AggregatorServer::events() { return impl_->event_log; }
absl::Status AggregatorServer::Promote(uint64_t version, const std::string& reason) {
  return impl_->Promote(version, reason);
}
absl::StatusOr<uint64_t> AggregatorServer::RollBackTo(uint64_t version, const std::string& reason) {
  return impl_->RollBackTo(version, reason);
}
absl::Status AggregatorServer::Wait() { return impl_->Wait(); }
void AggregatorServer::Shutdown() { impl_->Shutdown(); }

uint64_t AggregatorServer::latest_version() const {
  absl::StatusOr<std::shared_ptr<const ModelVersion>> latest = impl_->registry().Latest();
  return latest.ok() ? (*latest)->version : 0;
}

uint64_t AggregatorServer::live_version() const { return impl_->live_version(); }

const AggregatorMetrics& AggregatorServer::metrics() const { return impl_->metrics; }

uint64_t AggregatorServer::closed_rounds() const { return impl_->closed_rounds(); }

const ModelRegistry& AggregatorServer::registry() const { return impl_->registry(); }

}  // namespace fedge::aggregator
