// The client's view of the aggregator: everything a device says to it and
// asks of it. Implementations: the in-process transport of simulations
// (InProcTransport, in fedge::sim) and, for deployments, gRPC
// (fedge/client/grpc_transport.h); transports are chosen by name through
// fedge/client/transport_registry.h. DeviceClient and DeviceRunner are
// written against this interface only, so the code a simulation exercises is
// the code that serves real devices.
#ifndef FEDGE_CLIENT_TRANSPORT_H_
#define FEDGE_CLIENT_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/v1/drift.pb.h"
#include "fedge/v1/federation.pb.h"
#include "fedge/v1/model.pb.h"
#include "fedge/v1/secagg.pb.h"
#include "fedge/v1/service.pb.h"

namespace fedge::client {

// Implementations must be safe to call from several threads at once (a
// simulation drives many virtual clients through one transport).
//
// Errors keep the aggregator's meaning: UNAVAILABLE / DEADLINE_EXCEEDED when
// it cannot be reached (see IsUnreachable in offline_transport.h),
// UNAUTHENTICATED / PERMISSION_DENIED when it refuses the device. The
// optional calls below default to UNIMPLEMENTED, with a message naming the
// call, for transports whose aggregator lacks them.
class ClientTransport {
 public:
  virtual ~ClientTransport() = default;

  // Announces `client_id` to the federation; the answer carries the model
  // spec the federation trains and its latest model version. A transport
  // whose identity is fixed at creation (a TLS certificate, an enrollment
  // token) may refuse another id with INVALID_ARGUMENT.
  virtual absl::StatusOr<v1::JoinResponse> Join(const std::string& client_id) {
    return absl::UnimplementedError("this transport cannot join a federation");
  }

  // The task this client should run now. NOT_FOUND when it has none (not
  // selected, or no round open).
  virtual absl::StatusOr<v1::Task> PollTask(const std::string& client_id) = 0;

  // The model artifact of `version`. Artifacts are immutable; the pointer may
  // be shared with other clients.
  virtual absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) = 0;

  // Hands an update to the aggregator; the status is the aggregator's verdict.
  virtual absl::Status SubmitUpdate(const v1::EncodedUpdate& update) = 0;

  // Sends a drift report (see fedge/client/drift_monitor.h); the status is
  // the aggregator's verdict.
  virtual absl::Status ReportDrift(const v1::DriftReport& report) {
    return absl::UnimplementedError("this aggregator takes no drift reports");
  }

  // A device's figures for a round or model version (training metrics, the
  // evaluation of a canary); the status is the aggregator's verdict.
  virtual absl::Status ReportMetrics(const v1::MetricsReport& report) {
    return absl::UnimplementedError("this aggregator takes no metrics reports");
  }

  // "Still here": the aggregator's latest model version and whether a round
  // is open.
  virtual absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& client_id) {
    return absl::UnimplementedError("this aggregator takes no heartbeats");
  }

  // "Stopping now" (`reason` is free text, at most 200 bytes): the
  // aggregator counts the device gone at once and stops waiting for it.
  virtual absl::Status Leave(const std::string& client_id, const std::string& reason) {
    return absl::UnimplementedError("this aggregator takes no leave messages");
  }

  // Secure aggregation (fedge/privacy/secagg/protocol.h): one protocol
  // message to the aggregator; the status is its verdict (a refused message
  // also counts the client as dropped).
  virtual absl::Status SecAggSend(const v1::SecAggClientMessage& message) {
    return absl::UnimplementedError("this aggregator runs no secure aggregation");
  }

  // The aggregator's answer to `phase` of `round` for this client.
  // UNAVAILABLE until the aggregator has closed that phase (poll again);
  // NOT_FOUND when the client has dropped out (or the round is unknown);
  // ABORTED when the round aborted.
  virtual absl::StatusOr<v1::SecAggServerMessage> SecAggPoll(const std::string& client_id,
                                                             uint64_t round,
                                                             v1::SecAggPhase phase) {
    return absl::UnimplementedError("this aggregator runs no secure aggregation");
  }
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_TRANSPORT_H_
