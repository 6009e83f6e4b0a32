// OfflineTransport: keeps a device working while its aggregator is out of
// reach. It wraps any ClientTransport and passes every call to it; when an update
// cannot be delivered because the aggregator is unreachable (UNAVAILABLE,
// DEADLINE_EXCEEDED), it stores the update encrypted in a
// PendingUpdateStore instead and reports it as buffered. Flush() sends the
// stored updates once the aggregator answers again: an update whose round
// is still open lands; one the aggregator refuses (its round closed, the
// device left the cohort, ...) is discarded with its reason logged.
//
// Thread safety: calls may run concurrently; Flush runs one at a time.
#ifndef FEDGE_CLIENT_OFFLINE_TRANSPORT_H_
#define FEDGE_CLIENT_OFFLINE_TRANSPORT_H_

#include <mutex>

#include "fedge/client/offline_store.h"
#include "fedge/client/transport.h"

namespace fedge::client {

struct FlushReport {
  int delivered = 0;  // accepted now (or found already accepted)
  int discarded = 0;  // refused by the aggregator: dropped, reason logged
  int kept = 0;       // still unreachable: kept for the next flush
};

// True for the statuses that mean "the aggregator could not be reached"
// rather than "the aggregator said no".
bool IsUnreachable(const absl::Status& status);

class OfflineTransport : public ClientTransport {
 public:
  // Both must outlive this object. A null `store` buffers nothing: an
  // unreachable aggregator's error is returned as it is.
  OfflineTransport(ClientTransport* inner, PendingUpdateStore* store)
      : inner_(inner), store_(store) {}

  absl::StatusOr<v1::JoinResponse> Join(const std::string& client_id) override {
    return inner_->Join(client_id);
  }
  absl::StatusOr<v1::Task> PollTask(const std::string& client_id) override {
    return inner_->PollTask(client_id);
  }
  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) override {
    return inner_->FetchModel(version);
  }
  absl::Status ReportDrift(const v1::DriftReport& report) override {
    return inner_->ReportDrift(report);
  }
  absl::Status ReportMetrics(const v1::MetricsReport& report) override {
    return inner_->ReportMetrics(report);
  }
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& client_id) override {
    return inner_->Heartbeat(client_id);
  }
  absl::Status Leave(const std::string& client_id, const std::string& reason) override {
    return inner_->Leave(client_id, reason);
  }
  // Secure-aggregation messages are not buffered: a masked input sent after
  // its phase closed is worthless, so they pass through as they are.
  absl::Status SecAggSend(const v1::SecAggClientMessage& message) override {
    return inner_->SecAggSend(message);
  }
  absl::StatusOr<v1::SecAggServerMessage> SecAggPoll(const std::string& client_id, uint64_t round,
                                                     v1::SecAggPhase phase) override {
    return inner_->SecAggPoll(client_id, round, phase);
  }

  // OK when the aggregator accepted the update or it is buffered (see
  // buffered()); the aggregator's refusal otherwise. An error storing the
  // update is returned as it is.
  absl::Status SubmitUpdate(const v1::EncodedUpdate& update) override;

  // Sends what is stored, oldest round first; stops at the first
  // unreachable answer. DATA_LOSS when a stored file does not decrypt (it is
  // left in place; see PendingUpdateStore).
  absl::StatusOr<FlushReport> Flush();

  // Updates buffered by SubmitUpdate since this object was made.
  int buffered() const;

 private:
  ClientTransport* inner_;
  PendingUpdateStore* store_;
  std::mutex flush_mu_;
  mutable std::mutex mu_;
  int buffered_ = 0;
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_OFFLINE_TRANSPORT_H_
