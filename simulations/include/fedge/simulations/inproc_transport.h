// InProcTransport: the client transport of simulated devices. It hands a
// device's calls straight to a RoundCoordinator in the same process, the
// one a deployment's gRPC service calls: tasks, models, updates,
// secure-aggregation messages, drift and metrics reports all go through the
// coordinator's own checks. Artifacts are shared, never copied.
//
// Thread safety: safe for concurrent use (the coordinator is).
#ifndef FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_
#define FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_

#include <map>
#include <memory>
#include <string>

#include "fedge/aggregator/round_coordinator.h"
#include "fedge/client/transport.h"

namespace fedge::simulations {

class InProcTransport final : public client::ClientTransport {
 public:
  // `coordinator` must outlive the transport.
  explicit InProcTransport(aggregator::RoundCoordinator* coordinator)
      : coordinator_(coordinator) {}

  // Marks the device available; answers with the live version's model spec
  // and signing key id.
  absl::StatusOr<v1::JoinResponse> Join(const std::string& client_id) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& client_id) override;
  absl::Status ReportMetrics(const v1::MetricsReport& report) override;
  absl::StatusOr<v1::Task> PollTask(const std::string& client_id) override;
  // The version's artifact as devices download it (counted as a download).
  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) override;
  absl::Status SubmitUpdate(const v1::EncodedUpdate& update) override;
  absl::Status SecAggSend(const v1::SecAggClientMessage& message) override;
  absl::StatusOr<v1::SecAggServerMessage> SecAggPoll(const std::string& client_id, uint64_t round,
                                                     v1::SecAggPhase phase) override;
  absl::Status ReportDrift(const v1::DriftReport& report) override;

 private:
  aggregator::RoundCoordinator* coordinator_;
};

}  // namespace fedge::simulations

#endif  // FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_
