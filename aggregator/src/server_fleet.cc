// AggregatorServer's operator view (FleetControl): the device table, the
// round history, versions, metrics and the admin actions, which the
// coordinator carries out.
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "fedge/aggregator/metrics.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "ops_api.h"
#include "server_impl.h"

namespace fedge::aggregator {

absl::Status AggregatorServer::Impl::RestoreFleet() {
  FEDGE_ASSIGN_OR_RETURN(std::vector<ClientRecord> clients, store_->Clients());
  FEDGE_ASSIGN_OR_RETURN(std::vector<v1::DriftReport> drift, store_->DriftReports());
  FEDGE_ASSIGN_OR_RETURN(std::vector<RoundRecord> rounds, store_->Rounds());
  FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, store_->Versions());
  std::map<uint64_t, const VersionRecord*> by_version;
  for (const VersionRecord& v : versions) by_version[v.version] = &v;
  std::lock_guard<std::mutex> lock(fleet_mu_);
  for (const ClientRecord& c : clients) {
    DeviceStatus& d = devices_[c.id];
    d.id = c.id;
    d.auth = c.token_sha256.empty() ? "certificate" : "token";
    d.enrolled_at_ms = c.enrolled_at_ms;
    if (c.revoked) d.status = "revoked";
  }
  for (const v1::DriftReport& report : drift) {
    auto it = devices_.find(report.client_id());
    if (it == devices_.end() || report.events_size() == 0) continue;
    it->second.drift_reports += 1;
    // Devices stamp events in ms since the epoch (simulations: a round number).
    const int64_t time = report.events(0).time();
    it->second.last_drift_ms = time > 100'000'000'000 ? time : 0;
    it->second.last_drift_detector = report.events(0).detector();
    it->second.last_drift_stream = report.events(0).stream();
  }
  for (const RoundRecord& r : rounds) {
    for (const std::string& id : r.cohort) {
      if (auto it = devices_.find(id); it != devices_.end()) it->second.rounds_selected += 1;
    }
    if (r.state == RoundState::kOpen) continue;
    RoundSummary summary{.round = r.round,
                         .model_version = r.model_version,
                         .outcome = r.state == RoundState::kClosed ? "closed" : "failed",
                         .opened_at_ms = r.opened_at_ms,
                         .closed_at_ms = r.deadline_at_ms,  // failed rounds: at their deadline
                         .selected = r.cohort.size(),
                         .reported = static_cast<uint64_t>(std::max(r.participants, 0)),
                         .new_version = r.new_version,
                         .reason = r.reason};
    summary.dropped = summary.selected > summary.reported ? summary.selected - summary.reported : 0;
    if (auto it = by_version.find(r.new_version);
        r.state == RoundState::kClosed && it != by_version.end()) {
      const VersionRecord& v = *it->second;
      summary.closed_at_ms = v.created_at_ms;
      if (auto m = v.metrics.find("bytes_up"); m != v.metrics.end()) summary.bytes_up = m->second;
      if (auto m = v.metrics.find("bytes_down"); m != v.metrics.end()) {
        summary.bytes_down = m->second;
      }
    }
    history_.push_back(summary);
  }
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::StartOps() {
  OpsOptions ops = options_.ops;
  if (ops.listen.empty() && !options_.metrics_listen.empty()) {
    ops.listen = options_.metrics_listen;
    ops.metrics_public = true;
  }
  if (ops.listen.empty()) return absl::OkStatus();
  if (ops.active_window.count() <= 0) {
    return absl::InvalidArgumentError("ops.active_window must be > 0");
  }
  if (!ops.token.empty()) {
    ops_token = ops.token;
  } else {
    FEDGE_ASSIGN_OR_RETURN(
        ops_token, LoadOrCreateOpsToken(ops.token_file.empty() ? options_.state_dir / "ops.token"
                                                               : ops.token_file));
  }
  OpsServerOptions server;
  server.listen = ops.listen;
  server.token = ops_token;
  server.threads = ops.threads;
  if (!options_.tls.insecure) {
    server.cert_file = options_.tls.cert_file;
    server.key_file = options_.tls.key_file;
  }
  FEDGE_ASSIGN_OR_RETURN(ops_server,
                         OpsHttpServer::Start(server, FleetOpsRoutes(this, ops.metrics_public)));
  LogEvent("info", "ops_listening",
           {{"port", std::to_string(ops_server->port())},
            {"tls", ops_server->tls() ? "on" : "off"},
            {"metrics_public", ops.metrics_public ? "true" : "false"}});
  return absl::OkStatus();
}

void AggregatorServer::Impl::UpdateDevice(const std::string& client_id,
                                          const std::function<void(DeviceStatus&)>& update,
                                          bool heartbeat) {
  const int64_t now = WallMs();
  std::lock_guard<std::mutex> lock(fleet_mu_);
  auto it = devices_.find(client_id);
  if (it == devices_.end()) return;  // only enrolled devices get this far
  it->second.last_seen_ms = now;
  if (!heartbeat) it->second.last_work_ms = now;
  gone_.erase(client_id);
  update(it->second);
}

void AggregatorServer::Impl::NoteDevice(const std::string& client_id,
                                        const std::function<void(DeviceStatus&)>& update) {
  std::lock_guard<std::mutex> lock(fleet_mu_);
  if (auto it = devices_.find(client_id); it != devices_.end()) update(it->second);
}

void AggregatorServer::Impl::NoteJoined(const std::string& client_id) {
  std::lock_guard<std::mutex> lock(fleet_mu_);
  if (auto it = devices_.find(client_id); it != devices_.end()) it->second.heartbeats = false;
}

void AggregatorServer::Impl::LeaveFor(const std::string& client_id, const std::string& reason) {
  const int64_t now = WallMs();
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    auto it = devices_.find(client_id);
    if (it == devices_.end()) return;
    it->second.last_seen_ms = now;
    it->second.left_at_ms = now;
    it->second.left_reason = reason;
    gone_.insert(client_id);
  }
  const std::optional<uint64_t> dropped = DropFromRound(client_id);
  event_log.Record("info", "client_left",
                   absl::StrCat("device ", client_id, " left",
                                dropped ? absl::StrCat(" (dropped from round ", *dropped, ")") : "",
                                reason.empty() ? "" : ": " + reason),
                   {{"client", client_id}, {"reason", reason}});
}

std::optional<uint64_t> AggregatorServer::Impl::DropFromRound(const std::string& id) {
  const CoordinatorRoundStatus before = coordinator_->round_status();
  coordinator_->Forget(id);
  const CoordinatorRoundStatus after = coordinator_->round_status();
  if (before.open && (after.round != before.round || after.cohort < before.cohort)) {
    return before.round;
  }
  return std::nullopt;
}

void AggregatorServer::Impl::SweepLiveness() {
  const int64_t now = WallMs();
  const auto& liveness = options_.liveness;
  if (liveness.heartbeat_interval.count() <= 0 || now - last_sweep_ms_ < 250) return;
  last_sweep_ms_ = now;
  std::vector<std::pair<std::string, int64_t>> silent;  // id, ms since last heard
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    for (const auto& [id, device] : devices_) {
      if (device.heartbeats && device.status != "revoked" && !gone_.contains(id) &&
          now - device.last_seen_ms > liveness.gone_after.count()) {
        silent.emplace_back(id, now - device.last_seen_ms);
        gone_.insert(id);
      }
    }
  }
  for (const auto& [id, quiet_ms] : silent) {
    const std::optional<uint64_t> dropped = DropFromRound(id);
    event_log.Record(
        "warning", "client_gone",
        absl::StrCat("device ", id, " is gone: no heartbeat for ", quiet_ms / 1000, " s",
                     dropped ? absl::StrCat(" (dropped from round ", *dropped, ")") : ""),
        {{"client", id}, {"silent_ms", std::to_string(quiet_ms)}});
  }
}

void AggregatorServer::Impl::NoteDownload(const std::string& client_id, uint64_t version,
                                          uint64_t bytes) {
  metrics.model_bytes_served += bytes;
  coordinator_->RecordDownload(bytes);
  UpdateDevice(client_id, [version](DeviceStatus& d) {
    d.model_version = version;
    d.has_model_version = true;
  });
}

void AggregatorServer::Impl::NoteRefused(const std::string& client_id) {
  UpdateDevice(client_id, [](DeviceStatus& d) { d.updates_refused += 1; });
}

std::string AggregatorServer::Impl::DeviceState(const DeviceStatus& device, int64_t now_ms) const {
  if (device.status == "revoked") return "revoked";
  if (device.last_seen_ms == 0 || gone_.contains(device.id)) return "gone";
  if (device.heartbeats && options_.liveness.heartbeat_interval.count() > 0 &&
      now_ms - device.last_seen_ms > options_.liveness.gone_after.count()) {
    return "gone";  // silent: SweepLiveness records it within a moment
  }
  return now_ms - device.last_work_ms <= options_.ops.active_window.count() ? "active" : "idle";
}

CurrentRound AggregatorServer::Impl::Round() const {
  const CoordinatorRoundStatus status = coordinator_->round_status();
  CurrentRound current;
  current.open = status.open;
  current.paused = status.paused;
  current.min_clients = static_cast<uint64_t>(options_.policy.min_clients);
  current.next_round = status.next_round;
  current.closed_rounds = status.closed_rounds;
  current.devices_available = coordinator_->available_devices();
  bool finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished = finished_;
  }
  if (status.open) {
    {
      // The listener's summary adds what only the edge counts (bytes); the
      // coordinator's status is the truth about which round is open, since
      // the summary may still describe the round before it.
      std::lock_guard<std::mutex> lock(fleet_mu_);
      if (round_summary_.round == status.round) current.round = round_summary_;
    }
    current.round.round = status.round;
    current.round.model_version = status.model_version;
    current.round.outcome = "open";
    current.round.opened_at_ms = status.opened_at_ms;
    current.round.selected = status.cohort;
    current.round.reported = status.reported;
    current.goal = status.goal;
    current.deadline_at_ms = status.deadline_at_ms;
    current.phase = options_.secure_aggregation.has_value()
                        ? v1::SecAggPhase_Name(status.secagg_phase)
                        : "training";
  } else if (finished) {
    current.phase = "finished";
  } else {
    current.phase = status.paused ? "paused" : "waiting";
  }
  return current;
}

std::vector<RoundSummary> AggregatorServer::Impl::RoundHistory(size_t limit,
                                                               uint64_t before) const {
  std::vector<RoundSummary> out;
  std::lock_guard<std::mutex> lock(fleet_mu_);
  for (auto it = history_.rbegin(); it != history_.rend() && out.size() < limit; ++it) {
    if (before == 0 || it->round < before) out.push_back(*it);
  }
  return out;
}

absl::StatusOr<DevicePage> AggregatorServer::Impl::Devices(const DeviceQuery& query) const {
  if (query.limit < 1 || query.limit > 1000) {
    return absl::InvalidArgumentError("limit must be in [1, 1000]");
  }
  if (!query.status.empty() && !ValidDeviceStatus(query.status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("status '", query.status, "' is not active, idle, gone or revoked"));
  }
  DevicePage page;
  page.offset = query.offset;
  const int64_t now = WallMs();
  std::lock_guard<std::mutex> lock(fleet_mu_);
  for (const auto& [id, device] : devices_) {
    if (!query.id_contains.empty() && id.find(query.id_contains) == std::string::npos) continue;
    if (query.drift.has_value() && (device.drift_reports > 0) != *query.drift) continue;
    std::string state = DeviceState(device, now);
    if (!query.status.empty() && state != query.status) continue;
    if (page.total++ < query.offset || page.devices.size() >= query.limit) continue;
    page.devices.push_back(device);
    page.devices.back().status = std::move(state);
  }
  return page;
}

absl::StatusOr<std::vector<VersionStatus>> AggregatorServer::Impl::Versions() const {
  FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> records, store_->Versions());
  std::vector<VersionStatus> out;
  out.reserve(records.size());
  const uint64_t live = live_version();
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    VersionStatus status;
    status.record = *it;
    if (it->status == "live" && it->version != live) status.record.status = "superseded";
    {
      std::lock_guard<std::mutex> lock(mu_);
      status.served = served_.contains(it->version);
    }
    // Files never change once written, so each version is verified once
    // (outside fleet_mu_: reading a large model must not hold up devices).
    std::optional<std::string> cached;
    {
      std::lock_guard<std::mutex> lock(fleet_mu_);
      if (auto found = signatures_.find(it->version); found != signatures_.end()) {
        cached = found->second;
      }
    }
    if (!cached.has_value()) {
      std::string verdict = "verified";
      for (bool master : {true, false}) {
        absl::StatusOr<v1::ModelArtifact> artifact =
            master ? store_->ReadMaster(it->version) : store_->ReadArtifact(it->version);
        if (!artifact.ok()) {
          verdict = absl::StrCat("missing: ", artifact.status().message());
          break;
        }
        if (absl::Status s = models::VerifySignedArtifact(*artifact, key_->public_key()); !s.ok()) {
          verdict = absl::StrCat("invalid: ", s.message());
          break;
        }
      }
      std::lock_guard<std::mutex> lock(fleet_mu_);
      cached = signatures_.emplace(it->version, std::move(verdict)).first->second;
    }
    status.signature = *cached;
    out.push_back(std::move(status));
  }
  return out;
}

FleetOverview AggregatorServer::Impl::Overview() const {
  FleetOverview overview;
  overview.round = Round();
  if (auto latest = coordinator_->registry().Latest(); latest.ok())
    overview.latest_version = (*latest)->version;
  absl::StatusOr<VersionRecord> live = absl::NotFoundError("no live version");
  if (absl::StatusOr<std::vector<VersionRecord>> versions = store_->Versions(); versions.ok()) {
    const uint64_t served = live_version();
    for (const VersionRecord& v : *versions) {
      if (v.version == served) live = v;
    }
  }
  if (live.ok()) {
    overview.live_version = live->version;
    auto metric = [&](const char* key) -> std::optional<double> {
      auto it = live->metrics.find(key);
      if (it == live->metrics.end() || !std::isfinite(it->second)) return std::nullopt;
      return it->second;
    };
    overview.accuracy = metric("validation_accuracy");
    overview.accuracy_source = "validation_accuracy";
    if (!overview.accuracy.has_value()) {
      overview.accuracy = metric("clients_train_accuracy");
      overview.accuracy_source = overview.accuracy.has_value() ? "clients_train_accuracy" : "";
    }
    overview.loss = metric("validation_loss");
    if (!overview.loss.has_value()) overview.loss = metric("clients_train_loss");
    overview.epsilon_spent = metric("epsilon_spent").value_or(0.0);
    overview.epsilon_budget = metric("epsilon_budget");
  }
  const std::map<std::string, uint64_t> counts = event_log.CountsByKind();
  if (auto it = counts.find("alert"); it != counts.end()) overview.alerts = it->second;
  overview.last_event = event_log.last_sequence();
  overview.rounds_failed = metrics.rounds_failed.load();
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    const int64_t now = WallMs();
    for (std::string_view s : kDeviceStatuses) overview.devices_by_status[std::string(s)] = 0;
    for (const auto& [id, device] : devices_) {
      overview.devices_by_status[DeviceState(device, now)] += 1;
      overview.devices_with_drift += device.drift_reports > 0 ? 1 : 0;
    }
    overview.devices = devices_.size();
  }
  return overview;
}

std::string AggregatorServer::Impl::RenderMetrics() const {
  std::string out = metrics.RenderPrometheus();
  const FleetOverview overview = Overview();
  std::map<std::string, double> by_status, by_version;
  for (const auto& [status, count] : overview.devices_by_status) by_status[status] = count;
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    for (const auto& [id, device] : devices_) {
      if (device.has_model_version) by_version[std::to_string(device.model_version)] += 1;
    }
  }
  AppendMetricFamily(out, "fedge_devices", "gauge",
                     "Enrolled devices by status (active, idle, gone, revoked).", "status",
                     by_status);
  AppendMetric(out, "fedge_clients_connected", "gauge",
               "Devices connected now (active or idle; gone and revoked ones excluded).",
               by_status["active"] + by_status["idle"]);
  AppendMetricFamily(out, "fedge_devices_by_model_version", "gauge",
                     "Devices by the model version they last downloaded or trained on.",
                     "model_version", by_version);
  std::map<std::string, double> events;
  for (const auto& [kind, count] : event_log.CountsByKind()) events[kind] = count;
  AppendMetricFamily(out, "fedge_events_total", "counter", "Fleet events by kind.", "kind", events);
  AppendMetric(out, "fedge_live_model_version", "gauge", "Newest live (served) model version.",
               static_cast<double>(overview.live_version.value_or(0)));
  std::map<std::string, double> accuracy, loss;
  if (overview.accuracy.has_value()) accuracy[overview.accuracy_source] = *overview.accuracy;
  if (overview.loss.has_value()) loss[overview.accuracy_source] = *overview.loss;
  AppendMetricFamily(out, "fedge_model_accuracy", "gauge",
                     "Accuracy of the live version: its validation accuracy, else the mean "
                     "train accuracy devices reported in the round that produced it.",
                     "source", accuracy);
  AppendMetricFamily(out, "fedge_model_loss", "gauge",
                     "Loss of the live version (same sources as fedge_model_accuracy).", "source",
                     loss);
  AppendMetric(out, "fedge_privacy_epsilon_spent", "gauge",
               "Differential-privacy epsilon spent (0 without differential privacy).",
               overview.epsilon_spent);
  std::map<std::string, double> budget;
  if (overview.epsilon_budget.has_value()) budget["total"] = *overview.epsilon_budget;
  AppendMetricFamily(out, "fedge_privacy_epsilon_budget", "gauge",
                     "Differential-privacy epsilon budget (no sample without one).", "budget",
                     budget);
  AppendMetric(out, "fedge_rounds_paused", "gauge", "1 while an operator has paused rounds.",
               overview.round.paused ? 1 : 0);
  return out;
}

absl::Status AggregatorServer::Impl::RevokeDevice(const std::string& id,
                                                  const std::string& reason) {
  absl::StatusOr<ClientRecord> client = store_->GetClient(id);
  if (absl::IsNotFound(client.status())) {
    return absl::NotFoundError(absl::StrCat("unknown device '", id, "'"));
  }
  FEDGE_RETURN_IF_ERROR(client.status());
  if (client->revoked) {
    return absl::FailedPreconditionError(absl::StrCat("device '", id, "' is revoked already"));
  }
  FEDGE_RETURN_IF_ERROR(store_->RevokeClient(id));
  revoked_->Add(id);  // its next TLS handshake is refused (server_tls.cc)
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    if (auto it = devices_.find(id); it != devices_.end()) it->second.status = "revoked";
  }
  const std::optional<uint64_t> dropped = DropFromRound(id);
  event_log.Record(
      "warning", "device_revoked",
      absl::StrCat("device ", id, " revoked",
                   dropped ? absl::StrCat(" and dropped from round ", *dropped) : "",
                   reason.empty() ? "" : ": " + reason),
      {{"device", id}, {"reason", reason}});
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::PauseRounds(const std::string& reason) {
  return coordinator_->PauseRounds(reason);
}

absl::Status AggregatorServer::Impl::ResumeRounds(const std::string& reason) {
  return coordinator_->ResumeRounds(reason);
}

absl::Status AggregatorServer::Impl::Promote(uint64_t version, const std::string& reason) {
  return coordinator_->Promote(version, reason);
}

absl::StatusOr<uint64_t> AggregatorServer::Impl::RollBackTo(uint64_t version,
                                                            const std::string& reason) {
  return coordinator_->RollBackTo(version, reason);
}

}  // namespace fedge::aggregator
