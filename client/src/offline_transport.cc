#include "fedge/client/offline_transport.h"

#include <algorithm>

#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"

namespace fedge::client {

bool IsUnreachable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

absl::Status OfflineTransport::SubmitUpdate(const v1::EncodedUpdate& update) {
  absl::Status status = inner_->SubmitUpdate(update);
  if (!IsUnreachable(status) || store_ == nullptr) return status;
  FEDGE_RETURN_IF_ERROR(store_->Put(update));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++buffered_;
  }
  LogEvent("warning", "update_buffered",
           {{"client", update.client_id()}, {"round", std::to_string(update.round())}},
           status.ToString());
  return absl::OkStatus();
}

absl::StatusOr<FlushReport> OfflineTransport::Flush() {
  std::lock_guard<std::mutex> flush_lock(flush_mu_);
  if (store_ == nullptr) return FlushReport{};
  FEDGE_ASSIGN_OR_RETURN(std::vector<v1::EncodedUpdate> pending, store_->List());
  std::sort(
      pending.begin(), pending.end(),
      [](const v1::EncodedUpdate& a, const v1::EncodedUpdate& b) { return a.round() < b.round(); });
  FlushReport report;
  for (size_t i = 0; i < pending.size(); ++i) {
    const v1::EncodedUpdate& update = pending[i];
    absl::Status status = inner_->SubmitUpdate(update);
    if (IsUnreachable(status)) {
      report.kept += static_cast<int>(pending.size() - i);
      break;
    }
    const LogFields fields = {{"client", update.client_id()},
                              {"round", std::to_string(update.round())}};
    if (status.ok() || status.code() == absl::StatusCode::kAlreadyExists) {
      ++report.delivered;
      LogEvent("info", "buffered_update_delivered", fields);
    } else {
      ++report.discarded;
      LogEvent("warning", "buffered_update_discarded", fields, status.ToString());
    }
    FEDGE_RETURN_IF_ERROR(store_->Remove(update.round()));
  }
  return report;
}

int OfflineTransport::buffered() const {
  std::lock_guard<std::mutex> lock(mu_);
  return buffered_;
}

}  // namespace fedge::client
