#include "fedge/client/local_data.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"

namespace fedge::client {

absl::StatusOr<std::shared_ptr<const ExampleStore>> ExampleStore::Create(torch::Tensor features,
                                                                         torch::Tensor labels,
                                                                         int64_t num_classes,
                                                                         float mean, float stddev) {
  if (features.dim() < 2) {
    return absl::InvalidArgumentError("ExampleStore features need shape [N, ...]");
  }
  if (features.scalar_type() != torch::kUInt8 && features.scalar_type() != torch::kFloat32) {
    return absl::InvalidArgumentError("ExampleStore features must be uint8 or float32");
  }
  if (labels.dim() != 1 || labels.scalar_type() != torch::kInt64) {
    return absl::InvalidArgumentError("ExampleStore labels must be a 1-D int64 tensor");
  }
  if (labels.size(0) != features.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat("ExampleStore has ", features.size(0),
                                                   " examples but ", labels.size(0), " labels"));
  }
  if (num_classes < 2) return absl::InvalidArgumentError("ExampleStore needs num_classes >= 2");
  if (labels.numel() > 0 &&
      (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= num_classes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ExampleStore labels must lie in [0, ", num_classes, ")"));
  }
  if (!(stddev > 0.0f)) return absl::InvalidArgumentError("ExampleStore stddev must be > 0");
  return std::shared_ptr<const ExampleStore>(
      new ExampleStore(features.contiguous(), labels.contiguous(), num_classes, mean, stddev));
}

ExampleStore::ExampleStore(torch::Tensor features, torch::Tensor labels, int64_t num_classes,
                           float mean, float stddev)
    : features_(std::move(features)),
      labels_(std::move(labels)),
      num_classes_(num_classes),
      scale_(1.0f / (255.0f * stddev)),
      shift_(-mean / stddev) {}

torch::Tensor ExampleStore::GatherFeatures(const torch::Tensor& indices) const {
  torch::Tensor batch = features_.index_select(0, indices);
  if (batch.scalar_type() == torch::kUInt8) {
    batch = batch.to(torch::kFloat32).mul_(scale_).add_(shift_);
  }
  return batch;
}

torch::Tensor ExampleStore::GatherLabels(const torch::Tensor& indices) const {
  return labels_.index_select(0, indices);
}

}  // namespace fedge::client
