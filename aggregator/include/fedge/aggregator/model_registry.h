// ModelRegistry: the model versions an aggregator has published.
//
// Each version keeps its fp32 master parameters (what the next round starts
// from) and the artifact devices download, encoded as the registry's options
// say (fp32, or int8 to download about a quarter of the bytes; sparse for a
// pruned model). Versions are immutable once published and are handed out as
// shared pointers, so serving a version to many clients copies nothing. This registry lives in
// memory; deployments also write each version to their StateStore (state_store.h) and, after a
// restart, Adopt the latest one back.
//
// Thread safety: all methods may be called concurrently.
#ifndef FEDGE_AGGREGATOR_MODEL_REGISTRY_H_
#define FEDGE_AGGREGATOR_MODEL_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_spec.h"
#include "fedge/v1/model.pb.h"

namespace fedge::aggregator {

struct ModelVersion {
  uint64_t version = 0;
  uint64_t parent_version = 0;
  std::vector<float> parameters;  // fp32 master copy
  std::shared_ptr<const v1::ModelArtifact> artifact;
  uint64_t artifact_bytes = 0;       // serialized size of `artifact`
  uint64_t fp32_artifact_bytes = 0;  // what a dense fp32 artifact would take
};

struct ModelRegistryOptions {
  // How many of the newest versions stay in memory (older ones are dropped
  // once published versions exceed it; holders of a dropped version's
  // pointer keep it alive). Default: 0, every version.
  size_t keep_latest = 0;
  // How artifacts are stored for devices. Default: dense fp32.
  models::ArtifactEncoding encoding;
  // Called with each version's parameters and its encoded artifact before it
  // is published, e.g. to record activation ranges for int8 inference
  // (models/inference.h; code this LibTorch-free library does not link). An
  // error fails the Publish. It must not change the tensors. Default: none.
  std::function<absl::Status(std::span<const float> parameters, v1::ModelArtifact& artifact)>
      annotate;
};

class ModelRegistry {
 public:
  // `keep_latest` as in ModelRegistryOptions.
  ModelRegistry(models::ModelSpec spec, std::vector<models::ParameterLayout> layout,
                size_t keep_latest = 0);
  ModelRegistry(models::ModelSpec spec, std::vector<models::ParameterLayout> layout,
                ModelRegistryOptions options);

  const models::ModelSpec& spec() const { return spec_; }
  const std::vector<models::ParameterLayout>& layout() const { return layout_; }
  int64_t num_parameters() const { return models::LayoutSize(layout_); }

  // Publishes `parameters` as a new version derived from `parent_version`
  // (ignored for the first version) and returns it. The first version is 0,
  // then 1, 2, ... INVALID_ARGUMENT on a size mismatch or non-finite values;
  // NOT_FOUND for an unknown parent.
  absl::StatusOr<std::shared_ptr<const ModelVersion>> Publish(
      std::span<const float> parameters, uint64_t parent_version,
      const std::map<std::string, double>& metrics = {});

  // Adds a version published earlier, e.g. read back from disk after a
  // restart, as it is (its artifact is not re-encoded); later Publish calls
  // continue from its id + 1. INVALID_ARGUMENT if its parameters do not fit
  // the layout, it has no artifact, or it is not newer than every version
  // held.
  absl::Status Adopt(ModelVersion version);

  // NOT_FOUND when the version was never published or has been dropped.
  absl::StatusOr<std::shared_ptr<const ModelVersion>> Get(uint64_t version) const;
  // FAILED_PRECONDITION when nothing was published yet.
  absl::StatusOr<std::shared_ptr<const ModelVersion>> Latest() const;

 private:
  const models::ModelSpec spec_;
  const std::vector<models::ParameterLayout> layout_;
  const ModelRegistryOptions options_;
  mutable std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<const ModelVersion>> versions_;
  uint64_t next_version_ = 0;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_MODEL_REGISTRY_H_
