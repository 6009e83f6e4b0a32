// InProcTransport: the client transport of simulations. It hands a virtual
// client's calls straight to the aggregator's RoundManager and ModelRegistry
// in the same process: the same objects a gRPC service calls in a
// deployment. Artifacts are shared, never copied.
//
// Thread safety: safe for concurrent use (the aggregator objects are).
#ifndef FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_
#define FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_

#include "fedge/aggregator/drift_tracker.h"
#include "fedge/aggregator/model_registry.h"
#include "fedge/aggregator/round_manager.h"
#include "fedge/aggregator/secure_aggregation.h"
#include "fedge/client/transport.h"

namespace fedge::simulations {

class InProcTransport final : public client::ClientTransport {
 public:
  // All must outlive the transport; `drift` may be null (drift reports are
  // then refused as UNIMPLEMENTED). `round` is read when a drift report
  // arrives, to file it under the current round.
  InProcTransport(aggregator::RoundManager* rounds, const aggregator::ModelRegistry* registry,
                  aggregator::DriftTracker* drift = nullptr, const uint64_t* round = nullptr)
      : rounds_(rounds), registry_(registry), drift_(drift), round_(round) {}

  // Secure aggregation of the rounds (null: off). Must outlive the transport.
  void set_secure_aggregation(aggregator::SecureAggregation* secure) { secure_ = secure; }

  // Answers with the model spec and version of the registry's latest model
  // (and its signing key id, when the artifact is signed).
  absl::StatusOr<v1::JoinResponse> Join(const std::string& client_id) override {
    absl::StatusOr<std::shared_ptr<const aggregator::ModelVersion>> latest = registry_->Latest();
    if (!latest.ok()) return latest.status();
    v1::JoinResponse response;
    response.set_protocol_version(1);
    response.set_latest_version((*latest)->version);
    if ((*latest)->artifact != nullptr) {
      *response.mutable_model() = (*latest)->artifact->header().model();
      response.set_signing_key_id((*latest)->artifact->signing_key_id());
    }
    return response;
  }

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& client_id) override {
    absl::StatusOr<std::shared_ptr<const aggregator::ModelVersion>> latest = registry_->Latest();
    if (!latest.ok()) return latest.status();
    v1::HeartbeatResponse response;
    response.set_latest_version((*latest)->version);
    response.set_round_open(rounds_->round_open());
    return response;
  }

  // The simulation's report is built from the rounds themselves: device
  // metrics are accepted and not kept.
  absl::Status ReportMetrics(const v1::MetricsReport& report) override { return absl::OkStatus(); }

  absl::StatusOr<v1::Task> PollTask(const std::string& client_id) override {
    absl::StatusOr<v1::Task> task = rounds_->TaskFor(client_id);
    if (!task.ok() || secure_ == nullptr) return task;
    absl::StatusOr<v1::SecAggConfig> config = secure_->ConfigFor(task->round());
    if (!config.ok()) return config.status();
    *task->mutable_secagg() = *std::move(config);
    return task;
  }

  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) override {
    absl::StatusOr<std::shared_ptr<const aggregator::ModelVersion>> v = registry_->Get(version);
    if (!v.ok()) return v.status();
    return (*v)->artifact;
  }

  absl::Status SubmitUpdate(const v1::EncodedUpdate& update) override {
    return rounds_->Submit(update);
  }

  absl::Status SecAggSend(const v1::SecAggClientMessage& message) override {
    if (secure_ == nullptr) return ClientTransport::SecAggSend(message);
    return secure_->Receive(message);
  }

  absl::StatusOr<v1::SecAggServerMessage> SecAggPoll(const std::string& client_id, uint64_t round,
                                                     v1::SecAggPhase phase) override {
    if (secure_ == nullptr) return ClientTransport::SecAggPoll(client_id, round, phase);
    return secure_->Poll(client_id, round, phase);
  }

  absl::Status ReportDrift(const v1::DriftReport& report) override {
    if (drift_ == nullptr) return ClientTransport::ReportDrift(report);
    absl::StatusOr<std::shared_ptr<const aggregator::ModelVersion>> latest = registry_->Latest();
    if (!latest.ok()) return latest.status();
    return drift_->Record(report, round_ != nullptr ? *round_ : 0, (*latest)->version);
  }

 private:
  aggregator::RoundManager* rounds_;
  const aggregator::ModelRegistry* registry_;
  aggregator::DriftTracker* drift_;
  aggregator::SecureAggregation* secure_ = nullptr;
  const uint64_t* round_;
};

}  // namespace fedge::simulations

#endif  // FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_
