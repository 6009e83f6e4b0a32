// The client's view of the aggregator. Implementations: the in-process
// transport of simulations (InProcTransport, in fedge::sim) and, for
// deployments, gRPC. A DeviceClient is written against this interface only,
// so the code a simulation exercises is the code that serves real devices.
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

namespace fedge::client {

// Implementations must be safe to call from several threads at once (a
// simulation drives many virtual clients through one transport).
class ClientTransport {
 public:
  virtual ~ClientTransport() = default;

  // The task this client should run now. NOT_FOUND when it has none (not
  // selected, or no round open).
  virtual absl::StatusOr<v1::Task> PollTask(const std::string& client_id) = 0;

  // The model artifact of `version`. Artifacts are immutable; the pointer may
  // be shared with other clients.
  virtual absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) = 0;

  // Hands an update to the aggregator; the status is the aggregator's verdict.
  virtual absl::Status SubmitUpdate(const v1::EncodedUpdate& update) = 0;

  // Sends a drift report (see fedge/client/drift_monitor.h); the status is
  // the aggregator's verdict. Transports to aggregators that take no drift
  // reports keep this default: UNIMPLEMENTED.
  virtual absl::Status ReportDrift(const v1::DriftReport& report) {
    return absl::UnimplementedError("this aggregator takes no drift reports");
  }

  // Secure aggregation (fedge/privacy/secagg/protocol.h): one protocol
  // message to the aggregator; the status is its verdict (a refused message
  // also counts the client as dropped). Transports to aggregators without
  // secure aggregation keep this default: UNIMPLEMENTED.
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
