// InProcTransport: the client transport of simulations. It hands a virtual
// client's calls straight to the aggregator's RoundManager and ModelRegistry
// in the same process: the same objects a gRPC service calls in a
// deployment. Artifacts are shared, never copied.
//
// Thread safety: safe for concurrent use (the aggregator objects are).
#ifndef FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_
#define FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_

#include "fedge/aggregator/model_registry.h"
#include "fedge/aggregator/round_manager.h"
#include "fedge/client/transport.h"

namespace fedge::simulations {

class InProcTransport final : public client::ClientTransport {
 public:
  // Both must outlive the transport.
  InProcTransport(aggregator::RoundManager* rounds, const aggregator::ModelRegistry* registry)
      : rounds_(rounds), registry_(registry) {}

  absl::StatusOr<v1::Task> PollTask(const std::string& client_id) override {
    return rounds_->TaskFor(client_id);
  }

  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) override {
    absl::StatusOr<std::shared_ptr<const aggregator::ModelVersion>> v = registry_->Get(version);
    if (!v.ok()) return v.status();
    return (*v)->artifact;
  }

  absl::Status SubmitUpdate(const v1::EncodedUpdate& update) override {
    return rounds_->Submit(update);
  }

 private:
  aggregator::RoundManager* rounds_;
  const aggregator::ModelRegistry* registry_;
};

}  // namespace fedge::simulations

#endif  // FEDGE_SIMULATIONS_INPROC_TRANSPORT_H_
