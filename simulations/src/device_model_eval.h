// What devices run at the end of a simulation: the published version through
// the fp32 and int8 inference engines, and the distilled student. Internal
// to fedge::sim.
#ifndef FEDGE_SIMULATIONS_SRC_DEVICE_MODEL_EVAL_H_
#define FEDGE_SIMULATIONS_SRC_DEVICE_MODEL_EVAL_H_

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/client/local_data.h"
#include "fedge/models/model_instance.h"
#include "fedge/simulations/config.h"
#include "fedge/simulations/report.h"
#include "fedge/v1/model.pb.h"

namespace fedge::simulations::internal {

// Calibrates `artifact`'s activation ranges on `sample`, running `scratch`
// (same architecture) with the artifact's weights as a device decodes them.
absl::Status AddActivationRanges(models::ModelInstance& scratch, const torch::Tensor& sample,
                                 v1::ModelArtifact& artifact);

// `published` (the version as devices download it) through the fp32 engine
// and, with eval.int8, its int8 form (the same tensors quantized per channel,
// sparsity kept, activations calibrated on `calibration`) through the int8
// engine; batch-1 latencies of the two engines measured alternately.
absl::StatusOr<DeviceModelSummary> EvaluateDeviceModel(const v1::ModelArtifact& published,
                                                       const torch::Tensor& calibration,
                                                       const client::ExampleStore& test,
                                                       const SimulationConfig& config);

struct DistilledStudent {
  DeviceModelSummary summary;
  std::shared_ptr<const v1::ModelArtifact> artifact;
};

// The aggregator distills `teacher` (holding the final version's
// parameters) into config.distill.student on its unlabeled `proxy` set and
// publishes the student as the device model (version `version`, encoded as
// `encoding`, dense).
absl::StatusOr<DistilledStudent> DistillStudent(models::ModelInstance& teacher,
                                                const torch::Tensor& proxy,
                                                const torch::Tensor& calibration,
                                                const client::ExampleStore& test,
                                                const SimulationConfig& config, uint64_t version,
                                                models::ArtifactEncoding encoding);

}  // namespace fedge::simulations::internal

#endif  // FEDGE_SIMULATIONS_SRC_DEVICE_MODEL_EVAL_H_
