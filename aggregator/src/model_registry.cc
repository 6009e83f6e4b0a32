#include "fedge/aggregator/model_registry.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "fedge/models/artifact.h"
#include "fedge/models/quantization.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {

namespace {

ModelRegistryOptions KeepLatest(size_t keep_latest) {
  ModelRegistryOptions options;
  options.keep_latest = keep_latest;
  return options;
}

}  // namespace

ModelRegistry::ModelRegistry(models::ModelSpec spec, std::vector<models::ParameterLayout> layout,
                             size_t keep_latest)
    : ModelRegistry(std::move(spec), std::move(layout), KeepLatest(keep_latest)) {}

ModelRegistry::ModelRegistry(models::ModelSpec spec, std::vector<models::ParameterLayout> layout,
                             ModelRegistryOptions options)
    : spec_(std::move(spec)), layout_(std::move(layout)), options_(std::move(options)) {}

absl::StatusOr<std::shared_ptr<const ModelVersion>> ModelRegistry::Publish(
    std::span<const float> parameters, uint64_t parent_version,
    const std::map<std::string, double>& metrics) {
  if (static_cast<int64_t>(parameters.size()) != num_parameters()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot publish ", parameters.size(), " parameters for a model with ", num_parameters()));
  }
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (!std::isfinite(parameters[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("refusing to publish a model whose parameter ", i, " is not finite"));
    }
  }
  auto version = std::make_shared<ModelVersion>();
  version->parameters.assign(parameters.begin(), parameters.end());

  std::lock_guard<std::mutex> lock(mu_);
  version->version = next_version_;
  if (next_version_ > 0 && !versions_.contains(parent_version)) {
    return absl::NotFoundError(
        absl::StrCat("parent model version ", parent_version, " is unknown"));
  }
  version->parent_version = next_version_ == 0 ? 0 : parent_version;
  models::ArtifactOptions options;
  options.version = version->version;
  options.parent_version = version->parent_version;
  options.metrics = metrics;
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact,
                         models::BuildFp32Artifact(spec_, layout_, version->parameters, options));
  version->fp32_artifact_bytes = artifact.ByteSizeLong();
  if (options_.encoding.sparse) {
    FEDGE_ASSIGN_OR_RETURN(artifact, models::SparsifyArtifact(artifact));
  }
  if (options_.encoding.precision != models::ArtifactEncoding::Precision::kFp32) {
    models::QuantizeOptions quantize;
    quantize.per_channel =
        options_.encoding.precision == models::ArtifactEncoding::Precision::kInt8PerChannel;
    FEDGE_ASSIGN_OR_RETURN(artifact, models::QuantizeArtifact(artifact, quantize));
  }
  if (options_.annotate) FEDGE_RETURN_IF_ERROR(options_.annotate(version->parameters, artifact));
  version->artifact_bytes = artifact.ByteSizeLong();
  version->artifact = std::make_shared<const v1::ModelArtifact>(std::move(artifact));
  std::shared_ptr<const ModelVersion> published = version;
  versions_.emplace(published->version, published);
  ++next_version_;
  while (options_.keep_latest > 0 && versions_.size() > options_.keep_latest) {
    versions_.erase(versions_.begin());
  }
  return published;
}

absl::Status ModelRegistry::Adopt(ModelVersion version) {
  if (static_cast<int64_t>(version.parameters.size()) != num_parameters()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model version ", version.version, " has ", version.parameters.size(),
                     " parameters, the model has ", num_parameters()));
  }
  if (version.artifact == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("model version ", version.version, " has no artifact"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (version.version < next_version_ && !versions_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot adopt model version ", version.version,
                                                   ": version ", next_version_ - 1,
                                                   " is already held"));
  }
  next_version_ = version.version + 1;
  const uint64_t id = version.version;
  versions_[id] = std::make_shared<const ModelVersion>(std::move(version));
  while (options_.keep_latest > 0 && versions_.size() > options_.keep_latest) {
    versions_.erase(versions_.begin());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ModelVersion>> ModelRegistry::Get(uint64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = versions_.find(version);
  if (it == versions_.end()) {
    return absl::NotFoundError(
        absl::StrCat("model version ", version,
                     version < next_version_ ? " is no longer held" : " does not exist"));
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<const ModelVersion>> ModelRegistry::Latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (versions_.empty()) return absl::FailedPreconditionError("no model version published yet");
  return versions_.rbegin()->second;
}

}  // namespace fedge::aggregator
