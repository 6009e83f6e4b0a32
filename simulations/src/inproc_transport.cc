#include "fedge/simulations/inproc_transport.h"

namespace fedge::simulations {

absl::StatusOr<v1::JoinResponse> InProcTransport::Join(const std::string& client_id) {
  coordinator_->MarkAvailable(client_id);
  absl::StatusOr<std::shared_ptr<const aggregator::ModelVersion>> live =
      coordinator_->registry().Get(coordinator_->live_version());
  if (!live.ok()) return live.status();
  v1::JoinResponse response;
  response.set_protocol_version(1);
  response.set_latest_version((*live)->version);
  if ((*live)->artifact != nullptr) {
    *response.mutable_model() = (*live)->artifact->header().model();
    response.set_signing_key_id((*live)->artifact->signing_key_id());
  }
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> InProcTransport::Heartbeat(const std::string& client_id) {
  coordinator_->MarkAvailable(client_id);
  v1::HeartbeatResponse response;
  response.set_latest_version(coordinator_->live_version());
  response.set_round_open(coordinator_->round_status().open);
  return response;
}

absl::Status InProcTransport::ReportMetrics(const v1::MetricsReport& report) {
  if (!report.task_refused().empty()) {
    coordinator_->RecordRefusal(report.client_id(), report.round(), report.task_refused());
    return absl::OkStatus();
  }
  coordinator_->RecordMetrics(report.client_id(), report.round(), report.model_version(),
                              {report.metrics().begin(), report.metrics().end()});
  return absl::OkStatus();
}

absl::StatusOr<v1::Task> InProcTransport::PollTask(const std::string& client_id) {
  coordinator_->MarkAvailable(client_id);
  return coordinator_->TaskFor(client_id);
}

absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> InProcTransport::FetchModel(
    uint64_t version) {
  absl::StatusOr<std::shared_ptr<const aggregator::ModelVersion>> v =
      coordinator_->registry().Get(version);
  if (!v.ok()) return v.status();
  coordinator_->RecordDownload((*v)->artifact_bytes);
  return (*v)->artifact;
}

absl::Status InProcTransport::SubmitUpdate(const v1::EncodedUpdate& update) {
  return coordinator_->Submit(update);
}

absl::Status InProcTransport::SecAggSend(const v1::SecAggClientMessage& message) {
  return coordinator_->SecAggReceive(message);
}

absl::StatusOr<v1::SecAggServerMessage> InProcTransport::SecAggPoll(const std::string& client_id,
                                                                    uint64_t round,
                                                                    v1::SecAggPhase phase) {
  return coordinator_->SecAggPoll(client_id, round, phase);
}

absl::Status InProcTransport::ReportDrift(const v1::DriftReport& report) {
  return coordinator_->RecordDrift(report.client_id(), report);
}

}  // namespace fedge::simulations
