// RoundCoordinator: the secure-aggregation phases of a round.
#include "absl/strings/str_cat.h"
#include "fedge/aggregator/round_coordinator.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {

absl::Status RoundCoordinator::SecAggReceive(const v1::SecAggClientMessage& message) {
  if (secure_ == nullptr) {
    return absl::FailedPreconditionError("this aggregator runs no secure aggregation");
  }
  bool complete;
  {
    // Under mu_, so a phase cannot close between the protocol accepting the
    // message and the message being counted for it.
    std::lock_guard<std::mutex> lock(mu_);
    FEDGE_RETURN_IF_ERROR(secure_->Receive(message));
    secagg_bytes_up_ += message.ByteSizeLong();
    phase_senders_.insert(message.client_id());
    complete = phase_senders_.size() >= phase_expected_;
  }
  if (metrics_ != nullptr) {
    metrics_->secagg_messages += 1;
    metrics_->update_bytes_received += message.ByteSizeLong();
  }
  if (complete) {
    Pending pending;
    {
      std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
      CloseSecAggPhase("every device answered", /*only_if_complete=*/true, pending);
    }
    Deliver(pending);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SecAggServerMessage> RoundCoordinator::SecAggPoll(const std::string& device,
                                                                     uint64_t round,
                                                                     v1::SecAggPhase phase) const {
  if (secure_ == nullptr) {
    return absl::FailedPreconditionError("this aggregator runs no secure aggregation");
  }
  return secure_->Poll(device, round, phase);
}

void RoundCoordinator::CloseSecAggPhase(const std::string& why, bool only_if_complete,
                                        Pending& pending) {
  v1::SecAggPhase closing;
  absl::Status closed;
  size_t answered;
  uint64_t round;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing = secure_->phase();
    if (!round_open_ || closing == v1::SECAGG_PHASE_UNSPECIFIED) return;
    if (only_if_complete && phase_senders_.size() < phase_expected_) return;
    round = round_;
    closed = secure_->ClosePhase();
    answered = phase_senders_.size();
    phase_expected_ = answered;
    phase_senders_.clear();
    deadline_ = clock_->Now() + options_.secagg_phase_timeout;
  }
  Log(closed.ok() ? "info" : "warning", "secagg_phase_closed",
           {{"round", std::to_string(round)},
            {"phase", v1::SecAggPhase_Name(closing)},
            {"answered", std::to_string(answered)},
            {"why", why}},
           closed.ok() ? std::string() : std::string(closed.message()));
  pending.phases.emplace_back(round, closing);
  if (!closed.ok()) {
    return CloseRound(round, "secure aggregation aborted", pending,
                      absl::StrCat("secure aggregation: ", closed.message()));
  }
  if (closing == v1::SECAGG_PHASE_MASKED_INPUT) {
    // The noise the sum will carry is now known (distributed DP: the
    // survivors' shares). Decide on it before unmasking releases anything.
    if (const PrivateAggregation* privacy = rounds_->privacy(); privacy != nullptr) {
      std::size_t cohort_size;
      {
        std::lock_guard<std::mutex> lock(mu_);
        cohort_size = cohort_.size();
      }
      if (absl::Status budget = privacy->CheckBudgetFor(cohort_size, secure_->MaskedInputs());
          !budget.ok()) {
        StopForBudget(round, budget);
        return CloseRound(round, "privacy budget", pending,
                          absl::StrCat("not unmasked: ", budget.message()));
      }
    }
  }
  if (closing == v1::SECAGG_PHASE_UNMASKING) {
    absl::StatusOr<SecureRoundOutcome> finished = secure_->Finish(*rounds_);
    if (!finished.ok()) {
      Log("warning", "secagg_aborted", {{"round", std::to_string(round)}},
               std::string(finished.status().message()));
      return CloseRound(round, "secure aggregation aborted", pending,
                        absl::StrCat("secure aggregation: ", finished.status().message()));
    }
    return CloseRound(round, "secure aggregation finished", pending);
  }
}

}  // namespace fedge::aggregator
