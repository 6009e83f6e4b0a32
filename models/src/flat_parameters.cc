#include "fedge/models/flat_parameters.h"

#include <cstring>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"

namespace fedge::models {

absl::StatusOr<FlatParameters> FlatParameters::Bind(torch::nn::Module& module) {
  std::vector<ParameterLayout> layout;
  std::vector<torch::Tensor> params;
  int64_t total = 0;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    const torch::Tensor& p = item.value();
    if (p.scalar_type() != torch::kFloat32 || !p.device().is_cpu() || p.is_sparse()) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", item.key(), "' is not a dense fp32 CPU tensor"));
    }
    ParameterLayout entry;
    entry.name = item.key();
    entry.shape.assign(p.sizes().begin(), p.sizes().end());
    entry.offset = total;
    entry.numel = p.numel();
    total += entry.numel;
    layout.push_back(std::move(entry));
    params.push_back(p);
  }
  if (total == 0) return absl::InvalidArgumentError("module has no parameters to flatten");

  torch::Tensor buffer = torch::empty({total}, torch::kFloat32);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor view = buffer.narrow(0, layout[i].offset, layout[i].numel).view(params[i].sizes());
    view.copy_(params[i]);
    params[i].set_data(view);
  }
  return FlatParameters(std::move(buffer), std::move(layout));
}

FlatParameters::FlatParameters(torch::Tensor buffer, std::vector<ParameterLayout> layout)
    : buffer_(std::move(buffer)),
      values_(buffer_.data_ptr<float>(), static_cast<size_t>(buffer_.numel())),
      layout_(std::move(layout)) {}

absl::Status FlatParameters::CopyFrom(std::span<const float> source) {
  if (source.size() != values_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot load ", source.size(),
                                                   " values into a model with ", values_.size(),
                                                   " parameters"));
  }
  std::memcpy(values_.data(), source.data(), source.size_bytes());
  return absl::OkStatus();
}

absl::Status FlatParameters::CopyTo(std::span<float> destination) const {
  if (destination.size() != values_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot copy ", values_.size(),
                                                   " parameters into a buffer of ",
                                                   destination.size()));
  }
  std::memcpy(destination.data(), values_.data(), values_.size_bytes());
  return absl::OkStatus();
}

}  // namespace fedge::models
